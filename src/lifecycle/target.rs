//! Whether each account and region can be read, and what to say when it cannot for long:
//! blindness is not an all-clear. Pure, like the engine: (health, read, policy, time) →
//! (health, intents).
//!
//! An account and region whose reads keep failing (a deleted role, a revoked permission, a
//! region switched off) raises its own intent once it has been unreadable for
//! `policy.unreadable_alert_after_hours`, to the default route; the first complete read after
//! that closes it. Meanwhile its known certificates keep escalating on what was last known
//! (see `ObservationSource::Unconfirmed`).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Intent, IntentKind};
use super::policy::Policy;
use crate::ids::CertificateKey;

/// What is known of one account and region's reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub account: String,
    pub region: String,
    /// The last complete read.
    pub last_read_at: Option<DateTime<Utc>>,
    /// The first failure of the current run of failures; `None` while reads succeed.
    pub unreadable_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The unreadable intent of the current run of failures was decided.
    pub alerted: bool,
}

/// How one scan's read of an account and region went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRead<'a> {
    Complete,
    Failed { error: &'a str },
}

/// The health to store and what to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDecision {
    pub health: TargetHealth,
    pub intents: Vec<Intent>,
}

/// The name under which intents about a whole account and region go: the id `*`.
pub fn whole_target(account: &str, region: &str) -> CertificateKey {
    CertificateKey {
        account: account.to_string(),
        region: region.to_string(),
        id: "*".to_string(),
    }
}

/// Decides what a read at `at` means for an account and region last known as `previous`.
pub fn decide_target(
    previous: Option<&TargetHealth>,
    account: &str,
    region: &str,
    read: TargetRead<'_>,
    at: DateTime<Utc>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> TargetDecision {
    let mut health = previous.cloned().unwrap_or_else(|| TargetHealth {
        account: account.to_string(),
        region: region.to_string(),
        last_read_at: None,
        unreadable_since: None,
        last_error: None,
        alerted: false,
    });
    let mut intents = Vec::new();
    let tell = |kind: IntentKind| Intent::for_target(account, region, now, kind);
    match read {
        TargetRead::Complete => {
            if let (true, Some(since)) = (health.alerted, health.unreadable_since) {
                intents.push(tell(IntentKind::TargetReadable {
                    unreadable_since: since,
                }));
            }
            health.last_read_at = Some(at);
            health.unreadable_since = None;
            health.last_error = None;
            health.alerted = false;
        }
        TargetRead::Failed { error } => {
            let since = *health.unreadable_since.get_or_insert(at);
            health.last_error = Some(error.to_string());
            let patience = Duration::hours(i64::from(policy.unreadable_alert_after_hours));
            if !health.alerted && at - since >= patience {
                health.alerted = true;
                intents.push(tell(IntentKind::TargetUnreadable {
                    unreadable_since: since,
                    last_read_at: health.last_read_at,
                    error: error.to_string(),
                }));
            }
        }
    }
    TargetDecision { health, intents }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at;

    fn read(previous: Option<&TargetHealth>, read: TargetRead<'_>, day: f64) -> TargetDecision {
        decide_target(
            previous,
            "111122223333",
            "eu-west-1",
            read,
            at(day),
            &Policy::default(),
            at(day),
        )
    }

    #[test]
    fn unreadable_past_the_patience_is_said_once_and_closed_by_the_next_read() {
        let denied = TargetRead::Failed {
            error: "AccessDenied",
        };
        let ok = read(None, TargetRead::Complete, 0.0);
        assert!(ok.intents.is_empty());
        let first = read(Some(&ok.health), denied, 1.0);
        assert!(first.intents.is_empty(), "within the patience");
        assert_eq!(first.health.unreadable_since, Some(at(1.0)));
        let later = read(Some(&first.health), denied, 1.9);
        assert!(later.intents.is_empty());
        let long = read(Some(&later.health), denied, 2.0);
        assert_eq!(long.intents.len(), 1);
        let intent = &long.intents[0];
        assert_eq!(intent.owner, None, "the default route");
        assert_eq!(intent.certificate.id, "*");
        assert!(matches!(
            &intent.kind,
            IntentKind::TargetUnreadable { unreadable_since, last_read_at: Some(_), error }
                if *unreadable_since == at(1.0) && error == "AccessDenied"
        ));
        assert!(
            read(Some(&long.health), denied, 5.0).intents.is_empty(),
            "said once"
        );
        let back = read(Some(&long.health), TargetRead::Complete, 6.0);
        assert_eq!(back.intents.len(), 1);
        assert!(matches!(
            back.intents[0].kind,
            IntentKind::TargetReadable { unreadable_since } if unreadable_since == at(1.0)
        ));
        assert_eq!(back.health.unreadable_since, None);
        // A short failure later is not an alert, and a readable intent only follows one.
        let blip = read(Some(&back.health), denied, 7.0);
        let fine = read(Some(&blip.health), TargetRead::Complete, 7.1);
        assert!(blip.intents.is_empty() && fine.intents.is_empty());
    }
}
