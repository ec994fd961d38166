//! The rotation policy as configured (`[policy]`): the window, the escalation steps and what
//! each asks for. Plain settings and their validation; what they mean for a certificate (bands,
//! steps reached) is `lifecycle::policy`'s, which reads this type and never the reverse.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

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

// Spelled as serde spells them (`high`, `warning`), in logs and messages alike.
serde_plain::derive_display_from_serialize!(Priority);
serde_plain::derive_display_from_serialize!(PageSeverity);

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
    /// A managed ACM renewal under way holds escalation back only while more days than this
    /// are left; from then on the certificate escalates like any other.
    pub pending_renewal_escalates_at_days: u32,
    /// An account and region unreadable this long raises its own intent, hours.
    pub unreadable_alert_after_hours: u32,
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
            pending_renewal_escalates_at_days: 14,
            unreadable_alert_after_hours: 24,
        }
    }
}

impl Policy {
    /// Checks the rules a policy must obey; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_days == 0 {
            return invalid("policy.window_days", "must be at least 1 day");
        }
        if self.critical_days > self.window_days {
            return invalid(
                "policy.critical_days",
                format!(
                    "{} must not exceed policy.window_days ({})",
                    self.critical_days, self.window_days
                ),
            );
        }
        if self.pending_renewal_escalates_at_days > self.window_days {
            return invalid(
                "policy.pending_renewal_escalates_at_days",
                format!(
                    "{} must not exceed policy.window_days ({})",
                    self.pending_renewal_escalates_at_days, self.window_days
                ),
            );
        }
        let mut previous: Option<u32> = None;
        for (i, step) in self.escalation.iter().enumerate() {
            let key = format!("policy.escalation[{i}].days_left");
            if step.days_left >= self.window_days {
                return invalid(
                    &key,
                    format!(
                        "{} must be below policy.window_days ({})",
                        step.days_left, self.window_days
                    ),
                );
            }
            if let Some(p) = previous
                && step.days_left >= p
            {
                return invalid(
                    &key,
                    format!(
                        "{} must be strictly smaller than the step before it ({p}): list steps from the earliest to the latest",
                        step.days_left
                    ),
                );
            }
            previous = Some(step.days_left);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let mut p = Policy::default();
        p.escalation[1].days_left = 40;
        let ConfigError::Invalid { key, .. } = p.validate().unwrap_err() else {
            panic!("not an invalid value")
        };
        assert_eq!(key, "policy.escalation[1].days_left");
        let p = Policy {
            window_days: 0,
            ..Policy::default()
        };
        let ConfigError::Invalid { key, .. } = p.validate().unwrap_err() else {
            panic!("not an invalid value")
        };
        assert_eq!(key, "policy.window_days");
    }
}
