use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::lifecycle::*;

fn at(days: f64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes((days * 1440.0) as i64)
}

fn cert(i: usize) -> CertificateKey {
    CertificateKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        id: format!("cert{i:06}"),
    }
}

fn stage(i: usize) -> StageKey {
    StageKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        kind: StageKind::Rest,
        api_id: format!("api{i:06}"),
        stage_name: "prod".into(),
    }
}

/// Generation `g` of certificate `i`: even generations put it in use inside the window (an
/// episode opens), odd ones switch the stage away (it resolves): every generation decides
/// intents, which is what the crash test needs.
fn generation_obs(i: usize, g: u64) -> Observation {
    let used = g.is_multiple_of(2);
    let mut departed = BTreeMap::new();
    if !used {
        departed.insert(
            stage(i),
            StageFate::SwitchedTo {
                certificate: cert(i + 1_000_000),
                certificate_created_at: Some(at(0.0)),
            },
        );
    }
    Observation {
        certificate: cert(i),
        observed_at: at(0.0) + Duration::minutes(g as i64),
        source: ObservationSource::FullScan,
        seen: Seen::Present {
            not_after: at(50.0),
            created_at: Some(at(-300.0)),
            renewal: RenewalOutlook::Manual,
            users: if used {
                vec![StageUser {
                    stage: stage(i),
                    api_name: format!("api {i}"),
                    owner: Some(format!("team-{}", i % 7)),
                    partner: i.is_multiple_of(3).then(|| "acme".to_string()),
                }]
            } else {
                vec![]
            },
            departed,
        },
    }
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn commit_stores_record_and_outbox_together_and_reopens() {
    let dir = temp();
    let policy = Policy::default();
    {
        let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let d = observe(&s, &generation_obs(1, 0), &policy, at(0.0)).unwrap();
        assert_eq!(d.intents.len(), 1);
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    }
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let rec = s.load(&cert(1)).unwrap().unwrap();
    assert_eq!(rec.state, CertState::Expiring { step_days: None });
    let pending = s.outbox_pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].intent.key,
        "111122223333/eu-west-1/cert000001|team-1|e1|open"
    );
    // Replaying the observation enqueues nothing.
    observe(&s, &generation_obs(1, 0), &policy, at(0.1)).unwrap();
    assert_eq!(s.outbox_pending().unwrap().len(), 1);
    s.mark_delivered(&[pending[0].id]).unwrap();
    assert!(s.outbox_pending().unwrap().is_empty());
    // A decision committed twice (a retry) does not enqueue its intents again, even delivered.
    let d = decide(None, &generation_obs(1, 0), &policy, at(0.0));
    assert!(s.commit(&d).unwrap().is_empty());
    assert_eq!(s.records().count(), 1);
}

#[test]
fn a_decision_from_an_outdated_record_is_refused() {
    let dir = temp();
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let policy = Policy::default();
    let early = decide(None, &generation_obs(1, 0), &policy, at(0.0));
    observe(&s, &generation_obs(1, 1), &policy, at(0.0)).unwrap();
    let err = s.commit(&early).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("load it again"), "{err}");
    // A stale decision is not an error: there is nothing to store.
    let stale = decide(
        s.load(&cert(1)).unwrap().as_ref(),
        &generation_obs(1, 0),
        &policy,
        at(0.0),
    );
    assert!(stale.stale);
    assert!(s.commit(&stale).unwrap().is_empty());
}

#[test]
fn batch_commits_many_and_observe_batch_chains_one_certificate() {
    let dir = temp();
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let obs: Vec<Observation> = (0..100)
        .map(|i| generation_obs(i, 0))
        .chain((0..10).map(|i| generation_obs(i, 1)))
        .collect();
    let decisions = observe_batch(&s, &obs, &Policy::default(), at(0.0)).unwrap();
    assert_eq!(decisions.len(), 110);
    let rec = s.load(&cert(3)).unwrap().unwrap();
    assert!(matches!(rec.state, CertState::RotatedAway { .. }));
    let total: u64 = s.records().map(|r| r.unwrap().intents_emitted).sum();
    assert_eq!(s.outbox_pending().unwrap().len() as u64, total);
    let mut out = Vec::new();
    assert_eq!(s.export_jsonl(&mut out).unwrap(), 100);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 100);
    let first: CertificateRecord = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first.key, cert(0));
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = temp();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert("schema_version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 99") && msg.contains("newer"),
        "{msg}"
    );
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(
        db.tree_names().len(),
        1,
        "no tree may be created in a newer database"
    );
}

#[test]
fn a_foreign_database_is_refused() {
    let dir = temp();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("something").unwrap().insert("a", "b").unwrap();
        db.flush().unwrap();
    }
    let msg = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("not certsentinel's"), "{msg}");
}

#[test]
fn a_version_1_database_is_migrated() {
    let dir = temp();
    let decision = decide(None, &generation_obs(5, 0), &Policy::default(), at(0.0));
    {
        // The version 1 layout: records and outbox, no idempotency index.
        let db = sled::open(dir.path()).unwrap();
        db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
        let records = db.open_tree("records").unwrap();
        let outbox = db.open_tree("outbox").unwrap();
        records
            .insert(
                b"111122223333\0eu-west-1\0cert000005",
                serde_json::to_vec(&decision.record).unwrap(),
            )
            .unwrap();
        let entry = OutboxEntry {
            id: 7,
            intent: decision.intents[0].clone(),
        };
        outbox
            .insert(7u64.to_be_bytes(), serde_json::to_vec(&entry).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(s.schema_version().unwrap(), 2);
    assert_eq!(s.load(&cert(5)).unwrap().unwrap(), decision.record);
    assert!(
        s.intent_keys
            .contains_key(decision.intents[0].key.as_bytes())
            .unwrap()
    );
    // The rebuilt index stops the same intent being enqueued again.
    assert!(s.commit(&decision).unwrap().is_empty());
}

const CHILD_DB: &str = "CERTSENTINEL_CRASH_TEST_DB";
const CERTS: usize = 3_000;

/// The child: commits generation after generation of a large reconcile until killed.
fn crash_child(path: &str) {
    let s = SledStore::open(path, 8 * 1024 * 1024).unwrap();
    let policy = Policy::default();
    // Certificate 0 is committed first in every batch, so it carries the latest generation.
    let mut g = s
        .load(&cert(0))
        .unwrap()
        .map(|r| (r.last_observed_at - at(0.0)).num_minutes() as u64 + 1)
        .unwrap_or(0);
    println!("CHILD-READY");
    loop {
        let obs: Vec<Observation> = (0..CERTS).map(|i| generation_obs(i, g)).collect();
        observe_batch(&s, &obs, &policy, at(0.0)).unwrap();
        g += 1;
    }
}

#[test]
fn sigkill_during_a_large_reconcile_leaves_each_certificate_whole() {
    if let Ok(path) = std::env::var(CHILD_DB) {
        crash_child(&path);
        return;
    }
    let dir = temp();
    let me = std::env::current_exe().unwrap();
    for (round, delay_ms) in [350u64, 900, 1_700].into_iter().enumerate() {
        let mut child = Command::new(&me)
            .args([
                "--exact",
                "store::tests::sigkill_during_a_large_reconcile_leaves_each_certificate_whole",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|l| l.unwrap().contains("CHILD-READY")),
            "child never got ready"
        );
        std::thread::sleep(StdDuration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let mut checked = 0;
        let mut generations = std::collections::BTreeSet::new();
        for rec in s.records() {
            let rec = rec.unwrap();
            let prefix = intent_key_prefix(&rec.key);
            let in_outbox = s.intent_keys.scan_prefix(prefix.as_bytes()).count() as u64;
            assert_eq!(
                in_outbox, rec.intents_emitted,
                "round {round}: {} has {} intents emitted in its record but {in_outbox} in the outbox",
                rec.key, rec.intents_emitted
            );
            generations.insert(rec.last_observed_at);
            checked += 1;
        }
        assert!(
            checked > 0,
            "round {round}: the child committed nothing before being killed"
        );
        eprintln!(
            "round {round}: killed after {delay_ms} ms, {checked} records consistent, {} distinct generations",
            generations.len()
        );
    }
}
