//! What the configured rotation policy (`config::policy::Policy`) means for a certificate: its
//! band, whether it is in the window, which escalation step it has reached. Pure functions of
//! the policy and a time, so the engine and the scan output agree on every threshold.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use crate::config::policy::{EscalationStep, PageSeverity, Policy, Priority};

/// Where a certificate stands under the policy, for display and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Healthy,
    Expiring,
    Critical,
    Expired,
    /// No stage presents it: whatever its date, nothing breaks when it expires.
    Unused,
}

// Spelled as serde spells it (also on the command line: `state list --band critical`).
serde_plain::derive_display_from_serialize!(Band);
serde_plain::derive_fromstr_from_deserialize!(Band);

/// Whole days left before `not_after`, rounded down; negative once expired.
pub fn days_left(not_after: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (not_after - now).num_seconds().div_euclid(86_400)
}

// The policy's shape and validation are configuration (`config::policy`); what it means
// for a certificate is the engine's, so these methods live beside the engine.
impl Policy {
    /// The band of a certificate expiring at `not_after`, used by `in_use` stages or not.
    pub fn band(&self, not_after: DateTime<Utc>, in_use: bool, now: DateTime<Utc>) -> Band {
        if !in_use {
            return Band::Unused;
        }
        if not_after <= now {
            return Band::Expired;
        }
        let left = days_left(not_after, now);
        if left < i64::from(self.critical_days) {
            Band::Critical
        } else if left < i64::from(self.window_days) {
            Band::Expiring
        } else {
            Band::Healthy
        }
    }

    /// True once `now` is inside the rotation window of a certificate expiring at `not_after`.
    pub fn in_window(&self, not_after: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        not_after - now < Duration::days(i64::from(self.window_days))
    }

    /// The most advanced escalation step reached `days_left` before expiry, by index into
    /// `escalation` sorted from the earliest step (most days left) to the latest.
    pub fn step_reached(&self, not_after: DateTime<Utc>, now: DateTime<Utc>) -> Option<usize> {
        let left = not_after - now;
        self.escalation
            .iter()
            .enumerate()
            .filter(|(_, s)| left < Duration::days(i64::from(s.days_left)))
            .map(|(i, _)| i)
            .next_back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        crate::test_support::at(days as f64)
    }

    #[test]
    fn bands_follow_the_thresholds() {
        let p = Policy::default();
        let now = at(0);
        assert_eq!(p.band(at(300), true, now), Band::Healthy);
        assert_eq!(p.band(at(60), true, now), Band::Healthy);
        assert_eq!(p.band(at(59), true, now), Band::Expiring);
        assert_eq!(p.band(at(14), true, now), Band::Expiring);
        assert_eq!(p.band(at(13), true, now), Band::Critical);
        assert_eq!(p.band(at(0), true, now), Band::Expired);
        assert_eq!(p.band(at(-5), false, now), Band::Unused);
    }

    #[test]
    fn step_reached_picks_the_most_advanced() {
        let p = Policy::default();
        let now = at(0);
        assert_eq!(p.step_reached(at(45), now), None);
        assert_eq!(p.step_reached(at(29), now), Some(0));
        assert_eq!(p.step_reached(at(10), now), Some(1));
        assert_eq!(p.step_reached(at(3), now), Some(2));
        assert_eq!(p.step_reached(at(-3), now), Some(2));
    }
}
