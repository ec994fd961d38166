//! Unit tests: one per transition and per edge case named in the issue.

use chrono::Duration;

use super::*;
use crate::test_support::{at, cert, present, stage, user};

fn with_departed(mut obs: Observation, fates: Vec<(&str, StageFate)>) -> Observation {
    if let Seen::Present { departed, .. } = &mut obs.seen {
        for (s, f) in fates {
            departed.insert(stage(s), f);
        }
    }
    obs
}

fn with_renewal(mut obs: Observation, r: RenewalOutlook) -> Observation {
    if let Seen::Present { renewal, .. } = &mut obs.seen {
        *renewal = r;
    }
    obs
}

fn gone(c: &str, t: f64) -> Observation {
    Observation {
        certificate: cert(c),
        observed_at: at(t),
        source: ObservationSource::TargetedRead,
        seen: Seen::Gone,
    }
}

fn switched_to(c: &str, created: Option<f64>) -> StageFate {
    StageFate::SwitchedTo {
        certificate: cert(c),
        certificate_created_at: created.map(at),
        certificate_not_after: created.map(|d| at(d + 365.0)),
    }
}

/// Feeds observations one by one, like the daemon would, keeping the record.
#[derive(Default)]
struct Run {
    record: Option<CertificateRecord>,
}

impl Run {
    fn feed(&mut self, obs: &Observation) -> Vec<Intent> {
        let d = decide(
            self.record.as_ref(),
            obs,
            &Policy::default(),
            obs.observed_at,
        );
        self.record = Some(d.record);
        d.intents
    }
    fn rec(&self) -> &CertificateRecord {
        self.record.as_ref().unwrap()
    }
    fn state(&self) -> CertState {
        self.rec().state
    }
    fn episode(&self, owner: Option<&str>) -> &Episode {
        self.rec()
            .episodes
            .iter()
            .rev()
            .find(|e| e.owner.as_deref() == owner)
            .unwrap()
    }
}

/// Intent keys without their certificate (and a partner email's expiry): `owner|eN|what`, or
/// `partner|name:what`.
fn kinds(intents: &[Intent]) -> Vec<String> {
    intents
        .iter()
        .map(|i| {
            i.key
                .split('|')
                .skip(1)
                .map(|part| {
                    if part.starts_with("partner@") {
                        "partner"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

const A: Option<&str> = Some("team-a");
const B: Option<&str> = Some("team-b");

#[test]
fn healthy_then_window_opens_one_ticket_per_owner() {
    let mut r = Run::default();
    assert!(
        r.feed(&present("c1", 0.0, 100.0, vec![user("s1", A, None)]))
            .is_empty()
    );
    assert_eq!(r.state(), CertState::Healthy);
    let i = r.feed(&present(
        "c1",
        41.0,
        100.0,
        vec![user("s1", A, None), user("s2", B, None)],
    ));
    assert_eq!(kinds(&i), ["team-a|e1|open", "team-b|e2|open"]);
    assert_eq!(r.state(), CertState::Expiring { step_days: None });
    let ep = r.episode(A);
    assert_eq!(ep.detected_at, at(41.0));
    assert!(ep.is_open());
    assert!(r.rec().history.iter().any(|t| t.at == at(41.0)
        && matches!(&t.event, TransitionEvent::Detected { episode: 1, owner } if owner.as_deref() == A)));
}

#[test]
fn each_step_fires_once_in_order() {
    let mut r = Run::default();
    let u = vec![user("s1", A, Some("acme"))];
    assert_eq!(
        kinds(&r.feed(&present("c1", 50.0, 100.0, u.clone()))),
        ["team-a|e1|open", "partner|acme:window"]
    );
    assert!(r.feed(&present("c1", 60.0, 100.0, u.clone())).is_empty());
    let i = r.feed(&present("c1", 70.5, 100.0, u.clone()));
    assert_eq!(kinds(&i), ["team-a|e1|escalate:30", "partner|acme:step30"]);
    match &i[0].kind {
        IntentKind::Escalate { priority, page, .. } => {
            assert_eq!(*priority, Priority::Medium);
            assert_eq!(*page, None);
        }
        k => panic!("{k:?}"),
    }
    assert!(r.feed(&present("c1", 71.0, 100.0, u.clone())).is_empty());
    assert_eq!(
        kinds(&r.feed(&present("c1", 86.5, 100.0, u.clone())))[0],
        "team-a|e1|escalate:14"
    );
    assert_eq!(
        r.state(),
        CertState::Expiring {
            step_days: Some(14)
        }
    );
    let i = r.feed(&present("c1", 93.5, 100.0, u.clone()));
    assert!(matches!(
        i[0].kind,
        IntentKind::Escalate {
            step_days: 7,
            priority: Priority::Highest,
            page: Some(PageSeverity::Critical),
            ..
        }
    ));
    assert!(r.feed(&present("c1", 99.0, 100.0, u)).is_empty());
    let steps: Vec<u32> = r.episode(A).steps.iter().map(|s| s.days_left).collect();
    assert_eq!(steps, [30, 14, 7]);
    assert_eq!(r.episode(A).steps[1].at, at(86.5));
}

#[test]
fn a_scan_that_skips_steps_fires_only_the_highest() {
    let mut r = Run::default();
    let i = r.feed(&present("c1", 90.0, 100.0, vec![user("s1", A, None)]));
    assert_eq!(kinds(&i), ["team-a|e1|open", "team-a|e1|escalate:14"]);
    assert!(r.rec().history.iter().any(|t| matches!(
        &t.event,
        TransitionEvent::StepReached { days_left: 14, skipped, .. } if skipped == &vec![30]
    )));
    // Later the 30-day step is never fired retroactively; the 7-day one still is.
    let i = r.feed(&present("c1", 95.0, 100.0, vec![user("s1", A, None)]));
    assert_eq!(kinds(&i), ["team-a|e1|escalate:7"]);
}

#[test]
fn steps_do_not_refire_across_a_restart() {
    let mut r = Run::default();
    r.feed(&present("c1", 75.0, 100.0, vec![user("s1", A, None)]));
    // The store keeps JSON: a restart decides from the deserialised record.
    let json = serde_json::to_string(r.rec()).unwrap();
    r.record = Some(serde_json::from_str(&json).unwrap());
    assert!(
        r.feed(&present("c1", 76.0, 100.0, vec![user("s1", A, None)]))
            .is_empty()
    );
}

#[test]
fn expiry_in_use_is_an_incident_once_and_supersedes_steps() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    let i = r.feed(&present("c1", 100.5, 100.0, vec![user("s1", A, None)]));
    assert_eq!(kinds(&i), ["team-a|e1|incident"]);
    assert_eq!(r.state(), CertState::ExpiredInUse);
    let inc = r.episode(A).incident.clone().unwrap();
    assert_eq!((inc.started_at, inc.detected_at), (at(100.0), at(100.5)));
    assert!(
        r.feed(&present("c1", 101.0, 100.0, vec![user("s1", A, None)]))
            .is_empty()
    );
    // Rotating ends the incident's episode.
    let i = r.feed(&with_departed(
        present("c1", 101.5, 100.0, vec![]),
        vec![("s1", switched_to("c2", Some(90.0)))],
    ));
    assert_eq!(kinds(&i), ["team-a|e1|resolve"]);
}

#[test]
fn switching_resolves_then_cleanup_reminder_then_deletion() {
    let mut r = Run::default();
    r.feed(&present(
        "c1",
        50.0,
        100.0,
        vec![user("s1", A, Some("acme"))],
    ));
    let i = r.feed(&with_departed(
        present("c1", 60.0, 100.0, vec![]),
        vec![("s1", switched_to("c2", Some(55.0)))],
    ));
    assert_eq!(
        kinds(&i),
        [
            "partner|acme:cutover:111122223333/eu-west-1/c2",
            "team-a|e1|resolve"
        ]
    );
    let ep = r.episode(A);
    assert_eq!(ep.resolved_at, Some(at(60.0)));
    assert_eq!(
        ep.resolution,
        Some(Resolution::SwitchedTo {
            certificate: cert("c2"),
            still_at_risk: false,
        })
    );
    assert_eq!(ep.resolved_at.unwrap() - ep.detected_at, Duration::days(10));
    assert_eq!(
        r.state(),
        CertState::RotatedAway {
            since: at(60.0),
            reminded: false
        }
    );
    assert!(r.feed(&present("c1", 73.0, 100.0, vec![])).is_empty());
    let i = r.feed(&present("c1", 74.0, 100.0, vec![]));
    assert_eq!(kinds(&i), ["team-a|e1|cleanup", "partner|acme:release"]);
    assert_eq!(
        r.state(),
        CertState::RotatedAway {
            since: at(60.0),
            reminded: true
        }
    );
    assert!(r.feed(&present("c1", 80.0, 100.0, vec![])).is_empty());
    assert!(r.feed(&gone("c1", 81.0)).is_empty());
    assert_eq!(r.state(), CertState::Deleted);
    assert_eq!(r.episode(A).cleanup_done_at, Some(at(81.0)));
}

#[test]
fn deletion_before_the_reminder_still_releases_partners() {
    let mut r = Run::default();
    r.feed(&present(
        "c1",
        50.0,
        100.0,
        vec![user("s1", A, Some("acme"))],
    ));
    r.feed(&with_departed(
        present("c1", 60.0, 100.0, vec![]),
        vec![("s1", StageFate::Deleted)],
    ));
    assert_eq!(r.episode(A).resolution, Some(Resolution::StageDeleted));
    let i = r.feed(&gone("c1", 62.0));
    assert_eq!(kinds(&i), ["partner|acme:release"]);
    assert!(
        r.rec()
            .history
            .iter()
            .any(|t| matches!(t.event, TransitionEvent::CleanupDone { episode: 1 }))
    );
}

#[test]
fn a_stage_that_leaves_without_a_known_fate_stopped_presenting() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    let i = r.feed(&present("c1", 51.0, 100.0, vec![]));
    assert_eq!(kinds(&i), ["team-a|e1|resolve"]);
    assert_eq!(r.episode(A).resolution, Some(Resolution::StoppedPresenting));
}

#[test]
fn certificate_deleted_while_in_use_resolves_without_cleanup() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    let i = r.feed(&gone("c1", 51.0));
    assert_eq!(kinds(&i), ["team-a|e1|resolve"]);
    assert_eq!(
        r.episode(A).resolution,
        Some(Resolution::CertificateDeleted)
    );
    assert_eq!(r.state(), CertState::Deleted);
    assert!(r.rec().users.is_empty());
}

#[test]
fn big_bang_cut_over_gets_a_comment_and_a_mature_one_does_not() {
    let mut r = Run::default();
    r.feed(&present(
        "c1",
        50.0,
        100.0,
        vec![user("s1", A, None), user("s2", A, None)],
    ));
    let i = r.feed(&with_departed(
        present("c1", 60.0, 100.0, vec![]),
        vec![
            ("s1", switched_to("c2", Some(59.9))),
            ("s2", switched_to("c3", Some(55.0))),
        ],
    ));
    assert_eq!(kinds(&i)[0], format!("team-a|e1|bigbang:{}:0", stage("s1")));
    assert_eq!(i.len(), 2, "{:?}", kinds(&i));
    assert!(matches!(
        i[0].kind,
        IntentKind::CommentBigBang {
            new_certificate_age_hours: 2,
            ..
        }
    ));
    // The record keeps each switch's new-certificate age, so reports need no outbox.
    let ages: Vec<Option<i64>> = r
        .episode(A)
        .departures
        .iter()
        .map(|d| d.new_certificate_age_hours)
        .collect();
    assert_eq!(ages, [Some(2), Some(120)]);
}

#[test]
fn moving_a_stage_to_another_expiring_certificate_closes_one_and_opens_the_other() {
    let mut old = Run::default();
    let mut new = Run::default();
    let opened = old.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    new.feed(&present("c2", 50.0, 80.0, vec![]));
    assert_eq!(new.state(), CertState::Unused);
    // c2 (notAfter day 80) is itself inside the window on day 55.
    let i = old.feed(&with_departed(
        present("c1", 55.0, 100.0, vec![]),
        vec![(
            "s1",
            StageFate::SwitchedTo {
                certificate: cert("c2"),
                certificate_created_at: Some(at(-285.0)),
                certificate_not_after: Some(at(80.0)),
            },
        )],
    ));
    assert_eq!(kinds(&i), ["team-a|e1|resolve"]);
    assert_eq!(
        old.episode(A).resolution,
        Some(Resolution::SwitchedTo {
            certificate: cert("c2"),
            still_at_risk: true,
        }),
        "moving to another expiring certificate is no rotation done"
    );
    let i = new.feed(&present("c2", 55.0, 80.0, vec![user("s1", A, None)]));
    assert_eq!(kinds(&i), ["team-a|e1|open", "team-a|e1|escalate:30"]);
    assert_ne!(i[0].key, opened[0].key, "a ticket of its own for c2");
    assert_eq!(i[0].certificate, cert("c2"));
    assert_eq!(
        new.state(),
        CertState::Expiring {
            step_days: Some(30)
        }
    );
}

#[test]
fn two_owners_one_rotates_the_other_stays_open() {
    let mut r = Run::default();
    r.feed(&present(
        "c1",
        50.0,
        100.0,
        vec![user("s1", A, None), user("s2", B, None)],
    ));
    let i = r.feed(&with_departed(
        present("c1", 55.0, 100.0, vec![user("s2", B, None)]),
        vec![("s1", switched_to("c2", Some(40.0)))],
    ));
    assert_eq!(kinds(&i), ["team-a|e1|resolve"]);
    assert!(!r.episode(A).is_open());
    assert!(r.episode(B).is_open());
    assert_eq!(r.state(), CertState::Expiring { step_days: None });
    let i = r.feed(&present("c1", 71.0, 100.0, vec![user("s2", B, None)]));
    assert_eq!(kinds(&i), ["team-b|e2|escalate:30"]);
}

#[test]
fn an_older_observation_is_ignored() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    let before = r.rec().clone();
    let d = decide(
        Some(&before),
        &present("c1", 49.0, 100.0, vec![]),
        &Policy::default(),
        at(60.0),
    );
    assert!(d.stale);
    assert!(d.intents.is_empty());
    assert_eq!(d.record, before);
}

#[test]
fn replaying_the_same_observation_changes_nothing() {
    let mut r = Run::default();
    let obs = with_departed(
        present("c1", 90.0, 100.0, vec![user("s2", B, Some("p"))]),
        vec![("s1", switched_to("c2", Some(89.5)))],
    );
    r.feed(&present(
        "c1",
        50.0,
        100.0,
        vec![user("s1", A, Some("p")), user("s2", B, Some("p"))],
    ));
    assert!(!r.feed(&obs).is_empty());
    let before = r.rec().clone();
    assert!(r.feed(&obs).is_empty());
    // A decision all the same: only its revision moves.
    assert_eq!(
        r.rec(),
        &CertificateRecord {
            revision: before.revision + 1,
            ..before
        }
    );
}

#[test]
fn a_certificate_that_disappears_and_reappears_gets_a_new_episode() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    r.feed(&gone("c1", 51.0));
    let i = r.feed(&present("c1", 52.0, 100.0, vec![user("s1", A, None)]));
    assert_eq!(kinds(&i), ["team-a|e2|open"]);
    assert_eq!(r.state(), CertState::Expiring { step_days: None });
    let changes: Vec<String> = r
        .rec()
        .history
        .iter()
        .filter_map(|t| match &t.event {
            TransitionEvent::StateChanged { to, .. } => Some(to.name()),
            _ => None,
        })
        .collect();
    assert_eq!(changes, ["expiring", "deleted", "expiring"]);
    // Gone then gone again: nothing new.
    r.feed(&gone("c1", 53.0));
    assert!(r.feed(&gone("c1", 54.0)).is_empty());
}

#[test]
fn gone_first_records_a_deleted_certificate() {
    let mut r = Run::default();
    assert!(r.feed(&gone("c9", 1.0)).is_empty());
    assert_eq!(r.state(), CertState::Deleted);
    assert_eq!(r.rec().not_after, None);
}

#[test]
fn a_tag_change_moves_the_ticket_to_the_new_owner() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    let i = r.feed(&present("c1", 52.0, 100.0, vec![user("s1", B, None)]));
    assert_eq!(kinds(&i), ["team-a|e1|resolve", "team-b|e2|open"]);
    assert_eq!(
        r.episode(A).resolution,
        Some(Resolution::OwnerChanged {
            to: B.map(str::to_string)
        })
    );
    // Not a rotation: the certificate is still in use, so no clean-up is owed.
    assert_eq!(r.state(), CertState::Expiring { step_days: None });
}

#[test]
fn unowned_stages_share_one_default_route_episode() {
    let mut r = Run::default();
    let i = r.feed(&present(
        "c1",
        50.0,
        100.0,
        vec![user("s1", None, None), user("s2", None, None)],
    ));
    assert_eq!(kinds(&i), ["-|e1|open"]);
    assert_eq!(i[0].owner, None);
}

#[test]
fn stages_joining_and_leaving_an_open_ticket_update_it() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    let i = r.feed(&present(
        "c1",
        51.0,
        100.0,
        vec![user("s1", A, None), user("s2", A, Some("acme"))],
    ));
    assert_eq!(kinds(&i), ["team-a|e1|stages:1", "partner|acme:window"]);
    let i = r.feed(&with_departed(
        present("c1", 52.0, 100.0, vec![user("s2", A, Some("acme"))]),
        vec![("s1", StageFate::Deleted)],
    ));
    assert_eq!(kinds(&i), ["team-a|e1|stages:2"]);
    assert_eq!(r.episode(A).departures.len(), 1);
}

#[test]
fn unused_certificates_never_alarm() {
    let mut r = Run::default();
    assert!(r.feed(&present("c1", 50.0, 100.0, vec![])).is_empty());
    assert!(r.feed(&present("c1", 101.0, 100.0, vec![])).is_empty());
    assert_eq!(r.state(), CertState::Unused);
}

#[test]
fn managed_acm_certificates_follow_their_renewal() {
    let managed = |p: bool, f: bool| RenewalOutlook::Managed {
        renewal_in_progress: p,
        renewal_failing: f,
    };
    let mut r = Run::default();
    let u = || vec![user("s1", A, None)];
    // In the window but renewing: fine.
    assert!(
        r.feed(&with_renewal(
            present("c1", 50.0, 100.0, u()),
            managed(true, false)
        ))
        .is_empty()
    );
    assert_eq!(r.state(), CertState::Healthy);
    // Renewal failing, even far from expiry: at risk.
    let mut r = Run::default();
    let i = r.feed(&with_renewal(
        present("c1", 0.0, 100.0, u()),
        managed(false, true),
    ));
    assert_eq!(kinds(&i), ["team-a|e1|open"]);
    // A renewal under way does not close the ticket by itself...
    assert!(
        r.feed(&with_renewal(
            present("c1", 50.0, 100.0, u()),
            managed(true, false)
        ))
        .is_empty()
    );
    // ...the new not_after does.
    let i = r.feed(&with_renewal(
        present("c1", 51.0, 465.0, u()),
        managed(false, false),
    ));
    assert_eq!(kinds(&i), ["team-a|e1|resolve"]);
    assert_eq!(
        r.episode(A).resolution,
        Some(Resolution::Renewed {
            not_after: at(465.0)
        })
    );
    assert_eq!(r.state(), CertState::Healthy);
    assert!(
        r.rec()
            .history
            .iter()
            .any(|t| matches!(t.event, TransitionEvent::NotAfterChanged { .. }))
    );
}

#[test]
fn a_stage_coming_back_after_rotation_leaves_rotated_away() {
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, vec![user("s1", A, None)]));
    r.feed(&present("c1", 51.0, 100.0, vec![]));
    assert!(matches!(r.state(), CertState::RotatedAway { .. }));
    let i = r.feed(&present("c1", 52.0, 100.0, vec![user("s1", A, None)]));
    assert_eq!(kinds(&i), ["team-a|e2|open"]);
    r.feed(&present("c1", 53.0, 100.0, vec![]));
    assert_eq!(
        r.state(),
        CertState::RotatedAway {
            since: at(53.0),
            reminded: false
        }
    );
    let i = r.feed(&present("c1", 67.0, 100.0, vec![]));
    assert_eq!(kinds(&i), ["team-a|e1|cleanup", "team-a|e2|cleanup"]);
}

#[test]
fn decisions_are_deterministic_and_keys_stable() {
    let obs = present(
        "c1",
        90.0,
        100.0,
        vec![user("s1", A, Some("x")), user("s2", B, None)],
    );
    let p = Policy::default();
    let a = decide(None, &obs, &p, at(90.1));
    let b = decide(None, &obs, &p, at(90.1));
    assert_eq!(a, b);
    assert!(
        a.intents
            .iter()
            .all(|i| i.key.starts_with("111122223333/eu-west-1/c1|"))
    );
    assert_eq!(a.record.intents_emitted, a.intents.len() as u64);
}

#[test]
fn a_managed_renewal_under_way_pauses_escalation_until_it_fails() {
    let managed = |p: bool, f: bool| RenewalOutlook::Managed {
        renewal_in_progress: p,
        renewal_failing: f,
    };
    let u = || vec![user("s1", A, None)];
    let mut r = Run::default();
    let i = r.feed(&with_renewal(
        present("c1", 0.0, 100.0, u()),
        managed(false, true),
    ));
    assert_eq!(kinds(&i), ["team-a|e1|open"]);
    // Twenty days left (more than `pending_renewal_escalates_at_days`), renewal running
    // again: no step, no page.
    let i = r.feed(&with_renewal(
        present("c1", 80.0, 100.0, u()),
        managed(true, false),
    ));
    assert!(i.is_empty(), "{:?}", kinds(&i));
    // It fails: escalation resumes at the highest step reached.
    let i = r.feed(&with_renewal(
        present("c1", 91.0, 100.0, u()),
        managed(false, true),
    ));
    assert_eq!(kinds(&i), ["team-a|e1|escalate:14"]);
}

/// The partner emails among `intents`, as `partner|what` (the certificate part stripped).
fn partner_emails(intents: &[Intent]) -> Vec<String> {
    kinds(intents)
        .into_iter()
        .filter(|k| k.starts_with("partner|"))
        .collect()
}

#[test]
fn a_partner_hears_each_step_once_per_certificate_whoever_owns_the_stages() {
    let mut r = Run::default();
    let owned = |owner: Option<&str>, name: &str| vec![user(name, owner, Some("acme"))];
    let mut told = Vec::new();
    // In the window under "payments": the timeline goes out.
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        50.0,
        100.0,
        owned(Some("payments"), "s1"),
    ))));
    // The owner tag is edited (`payments` -> `Payments`), then removed, then put back: each
    // change opens a new episode for the new owner, and none repeats the timeline.
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        51.0,
        100.0,
        owned(Some("Payments"), "s1"),
    ))));
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        52.0,
        100.0,
        owned(None, "s1"),
    ))));
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        53.0,
        100.0,
        owned(Some("payments"), "s1"),
    ))));
    assert_eq!(told, ["partner|acme:window"]);
    assert!(r.rec().episodes.len() >= 4, "one episode per owner change");

    // The 30-day step under one owner; the stage moves to another stage A -> B -> A.
    told.clear();
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        71.0,
        100.0,
        owned(Some("payments"), "s1"),
    ))));
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        72.0,
        100.0,
        owned(Some("payments"), "s2"),
    ))));
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        73.0,
        100.0,
        owned(Some("payments"), "s1"),
    ))));
    told.extend(partner_emails(&r.feed(&present(
        "c1",
        74.0,
        100.0,
        owned(Some("Payments"), "s1"),
    ))));
    assert_eq!(told, ["partner|acme:step30"]);
}

#[test]
fn a_renewed_certificate_is_a_new_certificate_to_its_partners() {
    // An ACM certificate re-imported under the same ARN with a later expiry, and later in its
    // own window: the partner hears its timeline again, once.
    let mut r = Run::default();
    let u = vec![user("s1", A, Some("acme"))];
    assert_eq!(
        partner_emails(&r.feed(&present("c1", 50.0, 100.0, u.clone()))),
        ["partner|acme:window"]
    );
    assert!(partner_emails(&r.feed(&present("c1", 60.0, 465.0, u.clone()))).is_empty());
    assert_eq!(
        partner_emails(&r.feed(&present("c1", 420.0, 465.0, u.clone()))),
        ["partner|acme:window"]
    );
    assert!(partner_emails(&r.feed(&present("c1", 421.0, 465.0, u))).is_empty());
}

#[test]
fn a_managed_renewal_still_pending_at_the_configured_point_escalates() {
    let pending = RenewalOutlook::Managed {
        renewal_in_progress: true,
        renewal_failing: false,
    };
    let u = || vec![user("s1", A, Some("acme"))];
    let mut r = Run::default();
    // In the window, renewing: held back.
    assert!(
        r.feed(&with_renewal(present("c1", 50.0, 100.0, u()), pending))
            .is_empty()
    );
    assert!(
        r.feed(&with_renewal(present("c1", 80.0, 100.0, u()), pending))
            .is_empty()
    );
    // Still pending inside the last 14 days (the default point): the ticket opens at the
    // 14-day step, pages, and the partner is told.
    let i = r.feed(&with_renewal(present("c1", 87.0, 100.0, u()), pending));
    assert_eq!(
        kinds(&i),
        [
            "team-a|e1|open",
            "partner|acme:window",
            "team-a|e1|escalate:14",
            "partner|acme:step14"
        ]
    );
    // Then the 7-day step, renewal still pending.
    let i = r.feed(&with_renewal(present("c1", 93.5, 100.0, u()), pending));
    assert_eq!(kinds(&i), ["team-a|e1|escalate:7", "partner|acme:step7"]);
    // The renewal lands: resolved as renewed.
    let i = r.feed(&with_renewal(
        present("c1", 94.0, 465.0, u()),
        RenewalOutlook::Managed {
            renewal_in_progress: false,
            renewal_failing: false,
        },
    ));
    assert_eq!(kinds(&i), ["team-a|e1|resolve"]);
}

#[test]
fn the_point_where_a_pending_renewal_escalates_is_configurable() {
    let policy = Policy {
        pending_renewal_escalates_at_days: 30,
        ..Policy::default()
    };
    let pending = RenewalOutlook::Managed {
        renewal_in_progress: true,
        renewal_failing: false,
    };
    assert!(!at_risk(&policy, at(100.0), pending, at(69.0)));
    assert!(at_risk(&policy, at(100.0), pending, at(70.0)));
    assert!(!at_risk(&Policy::default(), at(100.0), pending, at(70.0)));
}

#[test]
fn while_nobody_can_see_steps_still_fire_unconfirmed_and_nothing_resolves_or_reaches_a_partner() {
    let mut r = Run::default();
    let u = vec![user("s1", A, Some("acme")), user("s2", B, None)];
    let i = r.feed(&present("c1", 50.0, 100.0, u.clone()));
    assert_eq!(
        kinds(&i),
        ["team-a|e1|open", "partner|acme:window", "team-b|e2|open"]
    );
    let read_at = r.rec().last_observed_at;
    // The region cannot be read: what was last known, at later times.
    let blind = |t: f64, rec: &CertificateRecord| {
        let mut obs = present("c1", t, 100.0, rec.users.clone());
        obs.source = ObservationSource::Unconfirmed;
        obs
    };
    let rec = r.rec().clone();
    let i = r.feed(&blind(71.0, &rec));
    assert_eq!(
        kinds(&i),
        ["team-a|e1|escalate:30", "team-b|e2|escalate:30"]
    );
    assert!(i.iter().all(|i| i.unconfirmed), "marked unconfirmed");
    let i = r.feed(&blind(101.0, &rec));
    assert_eq!(kinds(&i), ["team-a|e1|incident", "team-b|e2|incident"]);
    assert!(i.iter().all(|i| i.unconfirmed));
    assert_eq!(r.state(), CertState::ExpiredInUse);
    assert_eq!(r.rec().last_observed_at, read_at, "no read happened");
    assert!(r.rec().open_episodes().count() == 2, "nothing resolved");

    // Sight returns before expiry in another run: the partner gets the step it missed.
    let mut r = Run::default();
    r.feed(&present("c1", 50.0, 100.0, u.clone()));
    let rec = r.rec().clone();
    let i = r.feed(&blind(71.0, &rec));
    assert!(partner_emails(&i).is_empty(), "no partner hears of a doubt");
    let i = r.feed(&present("c1", 72.0, 100.0, u));
    assert_eq!(partner_emails(&i), ["partner|acme:step30"]);
    assert!(i.iter().all(|i| !i.unconfirmed));
}

#[test]
fn a_successor_is_announced_once_to_the_ticket_and_the_partners_before_any_switch() {
    let mut r = Run::default();
    let u = vec![user("s1", A, Some("acme"))];
    r.feed(&present("c1", 50.0, 100.0, u.clone()));
    let with_successor = |t: f64| {
        let mut obs = present("c1", t, 100.0, u.clone());
        if let Seen::Present { successor, .. } = &mut obs.seen {
            *successor = Some(Successor {
                certificate: cert("c2"),
                not_after: Some(at(465.0)),
                pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
            });
        }
        obs
    };
    let i = r.feed(&with_successor(51.0));
    assert_eq!(
        kinds(&i),
        [
            "team-a|e1|successor:111122223333/eu-west-1/c2",
            "partner|acme:successor:111122223333/eu-west-1/c2"
        ]
    );
    assert!(matches!(
        &i[1].kind,
        IntentKind::PartnerEmail { email: PartnerEmailKind::Successor { pem: Some(pem), .. }, .. } if pem.contains("BEGIN CERTIFICATE")
    ));
    assert!(r.feed(&with_successor(52.0)).is_empty(), "announced once");
    // A partner whose stage joins after the announcement gets the successor too.
    let mut late = with_successor(52.5);
    if let Seen::Present { users, .. } = &mut late.seen {
        users.push(user("s2", A, Some("globex")));
    }
    let i = r.feed(&late);
    assert!(
        kinds(&i).contains(&"partner|globex:successor:111122223333/eu-west-1/c2".to_string()),
        "{:?}",
        kinds(&i)
    );
    // Without a read, nothing is announced.
    let mut blind = with_successor(53.0);
    blind.source = ObservationSource::Unconfirmed;
    let mut fresh = Run::default();
    fresh.feed(&present("c1", 50.0, 100.0, u.clone()));
    assert!(
        fresh
            .feed(&blind)
            .iter()
            .all(|i| !matches!(i.kind, IntentKind::AnnounceSuccessor { .. }))
    );
}
