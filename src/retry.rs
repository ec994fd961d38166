//! Retrying, in two halves kept apart: *whether* a failure is worth another attempt and what
//! the service asked for (a [`RetryLogic`], one per service: AWS today, Jira, PagerDuty, SMTP
//! and webhooks as they arrive), and *how* to wait (one [`Backoff`] for all of them:
//! exponential with equal jitter, a cap, an attempt limit for transient failures, and patience
//! for throttling). Every section that retries is configured with the same
//! [`RetrySettings`](crate::config::RetrySettings) shape.
//!
//! This module stands apart from the pipeline: it knows no service, sends nothing and never
//! sleeps itself; callers sleep for the delay it returns, so a caller may also hold back other
//! work meanwhile (the AWS call gate pauses a whole account and region).

use std::time::{Duration, Instant};

use crate::config::RetrySettings;

/// What one failed attempt means, as a service's [`RetryLogic`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry<F> {
    /// The service asked to slow down: retry, honouring its hint, until patience runs out.
    /// Throttling is routine against shared quotas, so it has no attempt limit.
    Throttled { retry_after: Option<Duration> },
    /// A failure that may pass (5xx, timeout, reset connection): retry up to the attempt limit.
    Transient,
    /// Another attempt would fail the same way; `F` says how the service failed.
    Final(F),
}

/// A service's classifier of failed attempts (what Vector calls retry logic).
pub trait RetryLogic<E> {
    /// How a final failure is described to the caller (not found, denied, ...).
    type Final;
    fn classify(&self, error: &E) -> Retry<Self::Final>;
}

/// Why retrying stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Still throttled after the configured patience.
    Patience { waited: Duration },
    /// Transient failures reached the attempt limit.
    Attempts { failures: u32 },
}

/// How to wait between attempts; built from a retry section of the configuration.
#[derive(Debug, Clone)]
pub struct Backoff {
    max_attempts: u32,
    initial: Duration,
    max: Duration,
    patience: Duration,
}

impl Backoff {
    pub fn new(settings: &RetrySettings) -> Self {
        let initial = Duration::from_millis(settings.initial_backoff_ms.max(1));
        Backoff {
            max_attempts: settings.max_attempts.max(1),
            initial,
            max: Duration::from_millis(settings.max_backoff_ms).max(initial),
            patience: Duration::from_secs(settings.throttle_patience_secs),
        }
    }

    /// The state of one operation's retries; start one per operation, not per attempt.
    pub fn start(&self) -> Attempts<'_> {
        Attempts {
            policy: self,
            transient_failures: 0,
            throttles: 0,
            throttled_since: None,
        }
    }

    /// The `retry`-th delay (from 1): exponential, capped, with "equal jitter" (half fixed,
    /// half random) so that callers throttled together do not come back together.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self.initial.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << retry.saturating_sub(1).min(20));
        let capped = exp.min(self.max.as_millis() as u64);
        let half = capped / 2;
        Duration::from_millis(half + fastrand::u64(0..=capped - half))
    }
}

/// One operation's retries so far.
#[derive(Debug)]
pub struct Attempts<'a> {
    policy: &'a Backoff,
    transient_failures: u32,
    throttles: u32,
    /// The patience clock starts at the first throttle, not while queued behind others.
    throttled_since: Option<Instant>,
}

impl Attempts<'_> {
    /// After a throttled attempt: how long to wait before the next one, or why to stop.
    pub fn after_throttle(&mut self, retry_after: Option<Duration>) -> Result<Duration, GiveUp> {
        self.throttles += 1;
        let backoff = self.policy.delay(self.throttles);
        let since = *self.throttled_since.get_or_insert_with(Instant::now);
        let waited = since.elapsed();
        let left = self.policy.patience.saturating_sub(waited);
        if left.is_zero() {
            return Err(GiveUp::Patience { waited });
        }
        // The service's hint wins over our own guess, but never below half of it (a hint of
        // 0 from a busy service would otherwise make a hot loop); the last wait is cut to
        // what patience has left, then tried once more.
        Ok(retry_after
            .map_or(backoff, |hint| hint.max(backoff / 2))
            .min(left))
    }

    /// After a transient failure: how long to wait before the next attempt, or why to stop.
    pub fn after_transient(&mut self) -> Result<Duration, GiveUp> {
        self.transient_failures += 1;
        if self.transient_failures >= self.policy.max_attempts {
            return Err(GiveUp::Attempts {
                failures: self.transient_failures,
            });
        }
        Ok(self.policy.delay(self.transient_failures))
    }
}

/// A `Retry-After` header given in seconds, read defensively: anything that is not a finite,
/// non-negative number of seconds that fits a `Duration` is no hint at all.
pub fn retry_after_seconds(value: &str) -> Option<Duration> {
    let seconds = value.trim().parse::<f64>().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(max_attempts: u32, patience_secs: u64) -> Backoff {
        Backoff::new(&RetrySettings {
            max_attempts,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            throttle_patience_secs: patience_secs,
        })
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let policy = backoff(3, 1);
        for _ in 0..50 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let late = policy.delay(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn transient_failures_stop_at_the_attempt_limit() {
        let policy = backoff(3, 60);
        let mut attempts = policy.start();
        assert!(attempts.after_transient().is_ok());
        assert!(attempts.after_transient().is_ok());
        assert_eq!(
            attempts.after_transient(),
            Err(GiveUp::Attempts { failures: 3 })
        );
    }

    #[test]
    fn throttling_honours_the_hint_and_has_no_attempt_limit() {
        let policy = backoff(1, 60);
        let mut attempts = policy.start();
        for _ in 0..20 {
            let delay = attempts
                .after_throttle(Some(Duration::from_secs(7)))
                .unwrap();
            assert_eq!(delay, Duration::from_secs(7));
        }
    }

    #[test]
    fn throttling_stops_when_patience_is_spent() {
        let policy = backoff(5, 0);
        let mut attempts = policy.start();
        assert!(matches!(
            attempts.after_throttle(None),
            Err(GiveUp::Patience { .. })
        ));
    }

    #[test]
    fn retry_after_is_read_defensively() {
        assert_eq!(retry_after_seconds(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(retry_after_seconds("0.5"), Some(Duration::from_millis(500)));
        for hostile in ["1e20", "-1", "NaN", "inf", "", "soon"] {
            assert_eq!(retry_after_seconds(hostile), None, "{hostile}");
        }
    }
}
