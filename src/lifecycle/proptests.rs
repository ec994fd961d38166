//! Property tests over random observation sequences of one certificate.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use proptest::prelude::*;

use super::*;
use crate::test_support::{at, cert, stage, user};

const OWNERS: [Option<&str>; 3] = [Some("team-a"), Some("team-b"), None];
const NOT_AFTERS: [f64; 3] = [100.0, 130.0, 465.0];

#[derive(Debug, Clone)]
enum Op {
    Present {
        minutes: i64,
        not_after: usize,
        managed: Option<(bool, bool)>,
        /// Per stage: absent, or (owner index, has partner).
        users: Vec<Option<(usize, bool)>>,
        /// Per stage that left: 0 unknown, 1 deleted, 2 switched to an old cert, 3 to a new one.
        fates: Vec<u8>,
    },
    Gone {
        minutes: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly forward in time, sometimes backwards (late observations), in steps up to ~12 days.
    let minutes = -3_000i64..18_000;
    prop_oneof![
        8 => (
            minutes.clone(),
            0..3usize,
            proptest::option::of((any::<bool>(), any::<bool>())),
            proptest::collection::vec(proptest::option::of((0..3usize, any::<bool>())), 4),
            proptest::collection::vec(0..4u8, 4),
        )
            .prop_map(|(minutes, not_after, managed, users, fates)| Op::Present {
                minutes,
                not_after,
                managed,
                users,
                fates
            }),
        1 => minutes.prop_map(|minutes| Op::Gone { minutes }),
    ]
}

fn observation(op: &Op, t: chrono::DateTime<chrono::Utc>) -> Observation {
    let seen = match op {
        Op::Gone { .. } => Seen::Gone,
        Op::Present {
            not_after,
            managed,
            users,
            fates,
            ..
        } => {
            let mut us = Vec::new();
            let mut departed = BTreeMap::new();
            for (i, u) in users.iter().enumerate() {
                let name = format!("s{i}");
                match u {
                    Some((o, p)) => us.push(user(&name, OWNERS[*o], p.then_some("partner"))),
                    None => {
                        let fate = match fates[i] {
                            1 => Some(StageFate::Deleted),
                            2 => Some(StageFate::SwitchedTo {
                                certificate: cert("old"),
                                certificate_created_at: Some(at(-100.0)),
                                certificate_not_after: Some(at(265.0)),
                            }),
                            3 => Some(StageFate::SwitchedTo {
                                certificate: cert("fresh"),
                                certificate_created_at: Some(t - Duration::hours(1)),
                                certificate_not_after: Some(t + Duration::days(365)),
                            }),
                            _ => None,
                        };
                        if let Some(f) = fate {
                            departed.insert(stage(&name), f);
                        }
                    }
                }
            }
            Seen::Present {
                not_after: at(NOT_AFTERS[*not_after]),
                created_at: Some(at(NOT_AFTERS[*not_after] - 365.0)),
                renewal: match managed {
                    None => RenewalOutlook::Manual,
                    Some((p, f)) => RenewalOutlook::Managed {
                        renewal_in_progress: *p,
                        renewal_failing: *f,
                    },
                },
                users: us,
                departed,
                successor: None,
            }
        }
    };
    Observation {
        certificate: cert("c1"),
        observed_at: t,
        source: ObservationSource::FullScan,
        seen,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_over_random_sequences(ops in proptest::collection::vec(op(), 1..40)) {
        let policy = Policy::default();
        let mut record: Option<CertificateRecord> = None;
        let mut t = at(0.0);
        let mut keys = BTreeSet::new();
        for op in &ops {
            let minutes = match op { Op::Present { minutes, .. } | Op::Gone { minutes } => *minutes };
            t += Duration::minutes(minutes);
            let obs = observation(op, t);
            let now = t + Duration::seconds(5);
            let d = decide(record.as_ref(), &obs, &policy, now);
            if let Some(r) = &record && t < r.last_observed_at {
                prop_assert!(d.stale);
                prop_assert!(d.intents.is_empty());
                prop_assert_eq!(&d.record, r);
                continue;
            }
            prop_assert!(!d.stale);
            // Every intent is new: no key is ever decided twice, so no step fires twice.
            for i in &d.intents {
                prop_assert!(keys.insert(i.key.clone()), "intent decided twice: {}", i.key);
            }
            let rec = d.record;
            prop_assert_eq!(rec.intents_emitted, keys.len() as u64);

            // Replaying the same observation, even later, decides nothing and changes nothing
            // but the decision time (and the revision: it is a decision).
            let again = decide(Some(&rec), &obs, &policy, now + Duration::hours(1));
            prop_assert!(again.intents.is_empty(), "replay decided {:?}", again.intents);
            let mut replayed = again.record;
            prop_assert_eq!(replayed.revision, rec.revision + 1);
            replayed.updated_at = rec.updated_at;
            replayed.revision = rec.revision;
            prop_assert_eq!(&replayed, &rec);

            let mut open_owners = BTreeSet::new();
            for e in &rec.episodes {
                if e.is_open() {
                    prop_assert!(open_owners.insert(e.owner.clone()), "two open episodes for {:?}", e.owner);
                    prop_assert!(!e.stages.is_empty());
                }
                if let Some(r) = e.resolved_at {
                    prop_assert!(r >= e.detected_at);
                    prop_assert!(e.resolution.is_some());
                }
                let days: Vec<u32> = e.steps.iter().map(|s| s.days_left).collect();
                prop_assert!(days.windows(2).all(|w| w[0] > w[1]), "steps not each once, in order: {:?}", days);
            }
            // The state agrees with the facts it is derived from.
            match rec.state {
                CertState::Deleted => prop_assert!(matches!(obs.seen, Seen::Gone)),
                CertState::Expiring { .. } => prop_assert!(!open_owners.is_empty() && rec.in_use()),
                CertState::Healthy => prop_assert!(open_owners.is_empty() && rec.in_use()),
                CertState::ExpiredInUse => prop_assert!(rec.in_use()),
                CertState::Unused | CertState::RotatedAway { .. } => prop_assert!(open_owners.is_empty() && !rec.in_use()),
            }
            // A restart decides from the deserialised record exactly as from the live one.
            let back: CertificateRecord = serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
            prop_assert_eq!(&back, &rec);
            record = Some(rec);
        }
    }
}
