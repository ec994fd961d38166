//! The rotation policy: when a certificate counts as at risk, and what each escalation step
//! asks for. Pure data plus the band function; no I/O, so the engine and the inventory output
//! agree on every threshold.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Ticket priority requested by an escalation step, highest last so that `max` picks the most
/// urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
    Highest,
}

/// Severity of a PagerDuty page (the Events API v2 values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageSeverity {
    Info,
    Warning,
    Error,
    Critical,
}

/// One escalation step: fires once per episode when the days left reach `days_left` or fewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// Fires when this many days or fewer remain before `notAfter`.
    pub days_left: u32,
    /// Priority the owner's ticket is raised to.
    pub priority: Priority,
    /// Page the owner with this severity, if set.
    #[serde(default)]
    pub page: Option<PageSeverity>,
    /// Send the partner coordination email at this step.
    #[serde(default)]
    pub partner_email: bool,
}

/// Everything the engine and the bands need to know about the organisation's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A used certificate with this many days or fewer left is in the rotation window.
    pub window_days: u32,
    /// Days left at or below which the band is `critical` rather than `expiring`.
    pub critical_days: u32,
    /// Priority of the ticket opened when a certificate enters the window.
    pub open_priority: Priority,
    /// Escalation steps; validated to be strictly inside the window and distinct.
    pub escalation: Vec<EscalationStep>,
    /// Days an old certificate may stay unused before a clean-up reminder.
    pub cleanup_after_days: u32,
    /// A stage switched to a certificate younger than this is a big-bang cut-over risk.
    pub big_bang_hours: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            window_days: 60,
            critical_days: 14,
            open_priority: Priority::Medium,
            escalation: vec![
                EscalationStep {
                    days_left: 30,
                    priority: Priority::Medium,
                    page: None,
                    partner_email: true,
                },
                EscalationStep {
                    days_left: 14,
                    priority: Priority::High,
                    page: Some(PageSeverity::Warning),
                    partner_email: true,
                },
                EscalationStep {
                    days_left: 7,
                    priority: Priority::Highest,
                    page: Some(PageSeverity::Critical),
                    partner_email: true,
                },
            ],
            cleanup_after_days: 14,
            big_bang_hours: 24,
        }
    }
}

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

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Healthy => "healthy",
            Band::Expiring => "expiring",
            Band::Critical => "critical",
            Band::Expired => "expired",
            Band::Unused => "unused",
        }
    }
}

impl std::fmt::Display for Band {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Band {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "healthy" => Ok(Band::Healthy),
            "expiring" => Ok(Band::Expiring),
            "critical" => Ok(Band::Critical),
            "expired" => Ok(Band::Expired),
            "unused" => Ok(Band::Unused),
            other => Err(format!(
                "unknown band '{other}': expected healthy, expiring, critical, expired or unused"
            )),
        }
    }
}

/// Whole days left before `not_after`, rounded down; negative once expired.
pub fn days_left(not_after: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (not_after - now).num_seconds().div_euclid(86_400)
}

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

    /// Checks the rules a policy must obey; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.window_days == 0 {
            return Err("policy.window_days must be at least 1 day".into());
        }
        if self.critical_days > self.window_days {
            return Err(format!(
                "policy.critical_days ({}) must not exceed policy.window_days ({})",
                self.critical_days, self.window_days
            ));
        }
        let mut previous: Option<u32> = None;
        for (i, step) in self.escalation.iter().enumerate() {
            if step.days_left >= self.window_days {
                return Err(format!(
                    "policy.escalation[{i}].days_left ({}) must be below policy.window_days ({})",
                    step.days_left, self.window_days
                ));
            }
            if let Some(p) = previous
                && step.days_left >= p
            {
                return Err(format!(
                    "policy.escalation[{i}].days_left ({}) must be strictly smaller than the step before it ({p}): list steps from the earliest to the latest",
                    step.days_left
                ));
            }
            previous = Some(step.days_left);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(days: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(days)
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

    #[test]
    fn validation_names_the_key() {
        let mut p = Policy::default();
        p.escalation[1].days_left = 40;
        let err = p.validate().unwrap_err();
        assert!(err.contains("policy.escalation[1].days_left"), "{err}");
        let p = Policy {
            window_days: 0,
            ..Policy::default()
        };
        assert!(p.validate().unwrap_err().contains("policy.window_days"));
    }
}
