//! Watching the local clock against AWS's. Every decision is stamped with the local clock, so a
//! host whose clock runs ahead would stamp records in the future and make every honest scan
//! after it look stale. This interceptor reads the `Date` of each answer and keeps the largest
//! difference seen; the daemon refuses to decide beyond a configured skew.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use chrono::{DateTime, Utc};

/// No answer seen yet.
const UNSEEN: i64 = i64::MIN;

/// The largest difference between the local clock and the `Date` of the service's answers,
/// in seconds, local minus service (positive: the local clock is ahead). Shared by clones.
#[derive(Debug, Clone)]
pub struct ClockWatch {
    skew_seconds: Arc<AtomicI64>,
}

impl Default for ClockWatch {
    fn default() -> Self {
        ClockWatch {
            skew_seconds: Arc::new(AtomicI64::new(UNSEEN)),
        }
    }
}

impl ClockWatch {
    /// The skew of largest magnitude seen, if any answer carried a readable `Date`.
    pub fn skew_seconds(&self) -> Option<i64> {
        Some(self.skew_seconds.load(Ordering::Relaxed)).filter(|s| *s != UNSEEN)
    }

    /// Records one answer's `Date` header (an HTTP date), read at `local`; anything that is
    /// not a date is ignored.
    pub fn observe(&self, date: &str, local: DateTime<Utc>) {
        let Ok(service) = DateTime::parse_from_rfc2822(date.trim()) else {
            return;
        };
        let skew = (local - service.with_timezone(&Utc)).num_seconds();
        let _ = self
            .skew_seconds
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seen| {
                (seen == UNSEEN || skew.abs() > seen.abs()).then_some(skew)
            });
    }
}

impl Intercept for ClockWatch {
    fn name(&self) -> &'static str {
        "ClockWatch"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            self.observe(date, Utc::now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_skew_either_way_is_kept() {
        let watch = ClockWatch::default();
        assert_eq!(watch.skew_seconds(), None);
        let local = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        watch.observe("Tue, 01 Dec 2026 11:59:58 GMT", local);
        assert_eq!(watch.skew_seconds(), Some(2));
        watch.observe("Tue, 01 Dec 2026 13:00:00 GMT", local);
        assert_eq!(watch.skew_seconds(), Some(-3600));
        watch.observe("Tue, 01 Dec 2026 12:00:01 GMT", local);
        watch.observe("not a date", local);
        assert_eq!(watch.skew_seconds(), Some(-3600));
    }
}
