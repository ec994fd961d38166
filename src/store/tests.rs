use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

// Load, decide, commit: what the daemon's reconcile does, in its smallest form. Deciding is
// the engine's, so these live with the tests, not in the store.
/// Loads, decides and commits one observation durably.
fn observe<S: Store + ?Sized>(
    store: &S,
    obs: &Observation,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Decision, StoreError> {
    let record = store.load(&obs.certificate)?;
    let decision = decide(record.as_ref(), obs, policy, now);
    store.commit(&decision)?;
    Ok(decision)
}

/// Decides a batch of observations (a scan) and commits them with one flush. Several
/// observations of one certificate are decided in order, each from the previous decision.
fn observe_batch<S: Store + ?Sized>(
    store: &S,
    observations: &[Observation],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Vec<Decision>, StoreError> {
    let mut latest: std::collections::HashMap<&CertificateKey, usize> = Default::default();
    let mut decisions: Vec<Decision> = Vec::with_capacity(observations.len());
    for obs in observations {
        let previous = match latest.get(&obs.certificate) {
            Some(&i) => Some(decisions[i].record.clone()),
            None => store.load(&obs.certificate)?,
        };
        decisions.push(decide(previous.as_ref(), obs, policy, now));
        latest.insert(&obs.certificate, decisions.len() - 1);
    }
    store.commit_batch(&decisions)?;
    Ok(decisions)
}

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::ids::{CertificateKey, StageKey};
use crate::lifecycle::*;
use crate::test_support::{self, at};

fn cert(i: usize) -> CertificateKey {
    test_support::cert(&format!("cert{i:06}"))
}

fn stage(i: usize) -> StageKey {
    test_support::stage(&format!("{i:06}"))
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
                certificate_not_after: Some(at(365.0)),
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
            successor: None,
        },
    }
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Opens a database that this process just closed: sled's background threads may hold the
/// directory's lock for a moment after the last handle is dropped.
fn open_again(path: &std::path::Path) -> Result<SledStore, StoreError> {
    for _ in 0..100 {
        match SledStore::open(path, DEFAULT_CACHE_BYTES) {
            Err(StoreError::Locked { .. }) => std::thread::sleep(StdDuration::from_millis(20)),
            other => return other,
        }
    }
    panic!("{} stays locked", path.display());
}

/// [`SledStore::open_read_only`], waiting out the lock a store dropped a moment ago may still
/// hold (sled's flusher thread lets go of it shortly after).
fn open_read_only_again(path: &std::path::Path) -> Result<SledStore, StoreError> {
    for _ in 0..100 {
        match SledStore::open_read_only(path, DEFAULT_CACHE_BYTES) {
            Err(StoreError::Locked { .. }) => std::thread::sleep(StdDuration::from_millis(20)),
            other => return other,
        }
    }
    panic!("{} stays locked", path.display());
}

fn reopen(path: &std::path::Path) -> SledStore {
    open_again(path).unwrap()
}

/// [`open_again`] for sled itself.
fn sled_open_again(path: &std::path::Path) -> sled::Db {
    for _ in 0..100 {
        match sled::open(path) {
            Err(e) if e.to_string().contains("lock") => {
                std::thread::sleep(StdDuration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stays locked", path.display());
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
    let s = reopen(dir.path());
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
    s.complete(pending[0].id, at(0.2)).unwrap();
    assert!(s.outbox_pending().unwrap().is_empty());
    assert_eq!(s.delivered(10).unwrap()[0].completed_at, Some(at(0.2)));
    // A decision committed twice is refused the second time (the record moved on)...
    let mut d = decide(None, &generation_obs(1, 0), &policy, at(0.0));
    assert!(matches!(
        s.commit(&d).unwrap_err(),
        StoreError::Conflict { .. }
    ));
    // ... and one that decides the same intents again from the current record does not
    // enqueue them again, even delivered.
    d.record.revision = s.load(&cert(1)).unwrap().unwrap().revision + 1;
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
fn a_later_observation_decided_from_a_record_that_moved_on_is_refused_not_written_over() {
    // A scan and a targeted re-read load the same record; the scan commits first. The re-read's
    // observation is newer, but its decision was made from the record before the scan's: it
    // is refused, and decided again from the scan's record it loses nothing the scan decided.
    let dir = temp();
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let policy = Policy::default();
    observe(&s, &generation_obs(1, 0), &policy, at(0.0)).unwrap();
    let loaded = s.load(&cert(1)).unwrap();
    let scan = decide(loaded.as_ref(), &generation_obs(1, 1), &policy, at(0.0));
    let reread = decide(loaded.as_ref(), &generation_obs(1, 2), &policy, at(0.0));
    s.commit(&scan).unwrap();
    let err = s.commit(&reread).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                stored: 2,
                decided_from: 1,
                ..
            }
        ),
        "{err}"
    );
    let current = s.load(&cert(1)).unwrap();
    assert_eq!(current.as_ref(), Some(&scan.record));
    let again = decide(current.as_ref(), &generation_obs(1, 2), &policy, at(0.0));
    s.commit(&again).unwrap();
    assert_eq!(s.load(&cert(1)).unwrap().unwrap().revision, 3);
}

#[test]
fn the_certificates_a_stage_or_an_api_presented_are_found_without_reading_every_record() {
    let dir = temp();
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let policy = Policy::default();
    observe_batch(
        &s,
        &(0..50).map(|i| generation_obs(i, 0)).collect::<Vec<_>>(),
        &policy,
        at(0.0),
    )
    .unwrap();
    let st = stage(7);
    let of_stage = |name: Option<&str>| {
        s.presenters(&st.account, &st.region, st.kind, &st.api_id, name)
            .unwrap()
    };
    assert_eq!(of_stage(Some(&st.stage_name)), [cert(7)].into());
    assert_eq!(of_stage(None), [cert(7)].into());
    assert!(of_stage(Some("other")).is_empty());
    // An entry the record still names is not pruned.
    assert!(!s.prune_presenter(&st, &cert(7)).unwrap());
    // Switched away, the entry stays (the record says it is no longer presented there)
    // until it is pruned...
    observe(&s, &generation_obs(7, 1), &policy, at(0.0)).unwrap();
    assert_eq!(of_stage(Some(&st.stage_name)), [cert(7)].into());
    assert!(!s.load(&cert(7)).unwrap().unwrap().in_use());
    assert!(s.prune_presenter(&st, &cert(7)).unwrap());
    assert!(of_stage(Some(&st.stage_name)).is_empty());
    // ... or the account and region is forgotten.
    let other = stage(8);
    assert_eq!(
        s.presenters(
            &other.account,
            &other.region,
            other.kind,
            &other.api_id,
            None
        )
        .unwrap(),
        [cert(8)].into()
    );
    s.forget(&st.account, Some(&st.region)).unwrap();
    assert!(
        s.presenters(
            &other.account,
            &other.region,
            other.kind,
            &other.api_id,
            None
        )
        .unwrap()
        .is_empty()
    );
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
    let err = open_again(dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 99") && msg.contains("newer"),
        "{msg}"
    );
    let db = sled_open_again(dir.path());
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
    let msg = open_again(dir.path()).err().unwrap().to_string();
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
            deliveries: Default::default(),
            completed_at: None,
        };
        outbox
            .insert(7u64.to_be_bytes(), serde_json::to_vec(&entry).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let s = reopen(dir.path());
    // Migrated one version at a time, through 2, to the current one.
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.load(&cert(5)).unwrap().unwrap(), decision.record);
    assert_eq!(
        s.keys_in("111122223333", "eu-west-1").unwrap(),
        vec![(cert(5), false)]
    );
    assert!(
        s.intent_keys
            .contains_key(decision.intents[0].key.as_bytes())
            .unwrap()
    );
    // The stages it names are indexed.
    let st = stage(5);
    assert_eq!(
        s.presenters(
            &st.account,
            &st.region,
            st.kind,
            &st.api_id,
            Some(&st.stage_name)
        )
        .unwrap(),
        [cert(5)].into()
    );
    // The rebuilt index stops the same intent being enqueued again (decided again from the
    // migrated record, which reads as revision 1).
    let mut again = decision.clone();
    again.record.revision = 2;
    assert!(s.commit(&again).unwrap().is_empty());
}

fn gone_obs(i: usize, g: u64) -> Observation {
    Observation {
        certificate: cert(i),
        observed_at: at(0.0) + Duration::minutes(g as i64),
        source: ObservationSource::FullScan,
        seen: Seen::Gone,
    }
}

fn in_region(key: CertificateKey, region: &str) -> CertificateKey {
    CertificateKey {
        region: region.into(),
        ..key
    }
}

#[test]
fn a_version_2_database_gets_a_complete_location_index() {
    let dir = temp();
    let policy = Policy::default();
    // Live certificates in two regions, one of them deleted since, and one in another account.
    let mut stored: Vec<CertificateRecord> = Vec::new();
    for i in 0..300 {
        let mut obs = generation_obs(i, 0);
        if i % 3 == 0 {
            obs.certificate = in_region(obs.certificate, "us-east-1");
        }
        let mut record = decide(None, &obs, &policy, at(0.0)).record;
        if i % 10 == 0 {
            let mut gone = gone_obs(i, 1);
            gone.certificate = record.key.clone();
            record = decide(Some(&record), &gone, &policy, at(0.0)).record;
        }
        stored.push(record);
    }
    let mut other = decide(None, &generation_obs(1, 0), &policy, at(0.0)).record;
    other.key.account = "444455556666".into();
    stored.push(other);
    {
        // The version 2 layout: records, outbox and the idempotency index; no locations.
        let db = sled::open(dir.path()).unwrap();
        db.insert("schema_version", &2u32.to_be_bytes()).unwrap();
        let records = db.open_tree("records").unwrap();
        db.open_tree("outbox").unwrap();
        db.open_tree("intent_keys").unwrap();
        for r in &stored {
            let key = format!("{}\0{}\0{}", r.key.account, r.key.region, r.key.id);
            records
                .insert(key.as_bytes(), serde_json::to_vec(r).unwrap())
                .unwrap();
        }
        db.flush().unwrap();
        assert!(!db.tree_names().iter().any(|n| &n[..] == b"locations"));
    }
    {
        let s = reopen(dir.path());
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.locations.len(), stored.len());
    }
    // Reopened: the migration was flushed and is not needed again.
    let s = reopen(dir.path());
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    for (account, region) in [
        ("111122223333", "eu-west-1"),
        ("111122223333", "us-east-1"),
        ("444455556666", "eu-west-1"),
    ] {
        let mut expected: Vec<(CertificateKey, bool)> = stored
            .iter()
            .filter(|r| r.key.account == account && r.key.region == region)
            .map(|r| (r.key.clone(), r.state == CertState::Deleted))
            .collect();
        expected.sort();
        assert!(!expected.is_empty());
        assert_eq!(
            s.keys_in(account, region).unwrap(),
            expected,
            "{account}/{region}"
        );
    }
    assert!(s.keys_in("111122223333", "eu-west").unwrap().is_empty());
    assert!(s.keys_in("999", "eu-west-1").unwrap().is_empty());
    // The index carries the observation time: an outdated decision is refused through it.
    let early = decide(None, &generation_obs(10, 0), &policy, at(0.0));
    let err = s.commit(&early).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
}

#[test]
fn the_location_index_follows_every_commit() {
    let dir = temp();
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let policy = Policy::default();
    let obs: Vec<Observation> = (0..50).map(|i| generation_obs(i, 0)).collect();
    observe_batch(&s, &obs, &policy, at(0.0)).unwrap();
    let keys = s.keys_in("111122223333", "eu-west-1").unwrap();
    assert_eq!(keys.len(), 50);
    assert!(keys.iter().all(|(_, deleted)| !deleted));
    // Certificate 7 goes, then comes back; 8 goes for good.
    observe(&s, &gone_obs(7, 1), &policy, at(0.0)).unwrap();
    observe(&s, &gone_obs(8, 1), &policy, at(0.0)).unwrap();
    let deleted = |s: &SledStore| -> Vec<CertificateKey> {
        s.keys_in("111122223333", "eu-west-1")
            .unwrap()
            .into_iter()
            .filter(|(_, d)| *d)
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(deleted(&s), vec![cert(7), cert(8)]);
    observe(&s, &generation_obs(7, 2), &policy, at(0.0)).unwrap();
    assert_eq!(deleted(&s), vec![cert(8)]);
    // A stale decision changes nothing, the index included.
    let stale = decide(
        s.load(&cert(8)).unwrap().as_ref(),
        &generation_obs(8, 0),
        &policy,
        at(0.0),
    );
    assert!(stale.stale);
    s.commit(&stale).unwrap();
    assert_eq!(deleted(&s), vec![cert(8)]);
    // A record whose index entry went missing is still protected from an outdated decision.
    s.locations
        .remove(b"111122223333\0eu-west-1\0cert000008")
        .unwrap();
    let early = decide(None, &generation_obs(8, 0), &policy, at(0.0));
    assert!(matches!(
        s.commit(&early).unwrap_err(),
        StoreError::Conflict { .. }
    ));
}

#[test]
fn a_conflict_in_a_batch_commits_every_decision_before_it_and_none_after() {
    let dir = temp();
    let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let policy = Policy::default();
    // Certificate 300 moved on before the batch was decided.
    observe(&s, &generation_obs(300, 5), &policy, at(0.0)).unwrap();
    // Several transaction groups, with intents, the outdated decision in the middle of one.
    let decisions: Vec<Decision> = (0..700)
        .map(|i| decide(None, &generation_obs(i, 0), &policy, at(0.0)))
        .collect();
    let err = s.commit_batch(&decisions).unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { certificate, .. } if certificate.ends_with("cert000300")),
        "{err}"
    );
    for (i, decision) in decisions.iter().enumerate() {
        let rec = s.load(&cert(i)).unwrap();
        match i {
            0..300 => assert_eq!(rec.as_ref(), Some(&decision.record), "{i}"),
            300 => assert_eq!(
                rec.unwrap().last_observed_at,
                at(0.0) + Duration::minutes(5)
            ),
            _ => assert!(
                rec.is_none(),
                "{i} was committed after the failing decision"
            ),
        }
    }
    let emitted: u64 = s.records().map(|r| r.unwrap().intents_emitted).sum();
    assert_eq!(s.outbox_pending().unwrap().len() as u64, emitted);
    assert_eq!(s.keys_in("111122223333", "eu-west-1").unwrap().len(), 301);
    // The decisions after the conflict commit on their own afterwards, record and intents.
    let retry: Vec<Decision> = decisions[301..].to_vec();
    s.commit_batch(&retry).unwrap();
    let emitted: u64 = s.records().map(|r| r.unwrap().intents_emitted).sum();
    assert_eq!(s.outbox_pending().unwrap().len() as u64, emitted);
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
        // What observe_batch does, with a word to the parent when the commit begins.
        let decisions: Vec<Decision> = (0..CERTS)
            .map(|i| {
                let obs = generation_obs(i, g);
                decide(s.load(&cert(i)).unwrap().as_ref(), &obs, &policy, at(0.0))
            })
            .collect();
        println!("CHILD-COMMITTING {g}");
        s.commit_batch(&decisions).unwrap();
        // Printed only once commit_batch has returned: from here on, generation g is promised
        // durable.
        println!("CHILD-COMMITTED {g}");
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
    let mut durability_checked = false;
    // Delays from the start of the child's first commit (3,000 certificates in transaction
    // groups): round 0 lands inside that first commit, the others in later ones.
    for (round, delay_ms) in [400u64, 1_200, 2_000].into_iter().enumerate() {
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
        assert!(
            lines.any(|l| l.unwrap().contains("CHILD-COMMITTING")),
            "child never began a commit"
        );
        std::thread::sleep(StdDuration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // What the child said before it died: the last generation whose commit_batch returned.
        let promised: Option<u64> = lines
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("CHILD-COMMITTED ")?.trim().parse().ok())
            .max();

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
        // The location index names exactly the records, each with its state.
        let indexed = s.keys_in("111122223333", "eu-west-1").unwrap();
        assert_eq!(
            indexed.len(),
            checked,
            "round {round}: location index incomplete"
        );
        for (key, deleted) in indexed {
            let rec = s.load(&key).unwrap().expect("an indexed key has a record");
            assert_eq!(
                deleted,
                rec.state == CertState::Deleted,
                "round {round}: {key}"
            );
        }
        assert!(
            checked > 0,
            "round {round}: the child committed nothing before being killed"
        );
        // Durable, not only whole: every certificate is at least at the generation of the
        // last commit_batch that returned before the kill.
        if let Some(g) = promised {
            let promised_at = at(0.0) + Duration::minutes(g as i64);
            for rec in s.records() {
                let rec = rec.unwrap();
                assert!(
                    rec.last_observed_at >= promised_at,
                    "round {round}: {} is at {} although generation {g} ({promised_at}) was committed",
                    rec.key,
                    rec.last_observed_at
                );
            }
            assert_eq!(
                checked, CERTS,
                "round {round}: every certificate of generation {g}"
            );
            durability_checked = true;
        }
        eprintln!(
            "round {round}: killed after {delay_ms} ms, {checked} records consistent, {} distinct generations",
            generations.len()
        );
    }
    assert!(
        durability_checked,
        "no round outlived a whole commit: lengthen the delays"
    );
}

#[test]
fn reading_never_creates_migrates_or_writes() {
    // A directory that is not a state database stays exactly as it was.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    assert!(matches!(
        SledStore::open_read_only(dir.path(), DEFAULT_CACHE_BYTES),
        Err(StoreError::Missing { .. })
    ));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
    let missing = dir.path().join("nothing-here");
    assert!(matches!(
        SledStore::open_read_only(&missing, DEFAULT_CACHE_BYTES),
        Err(StoreError::Missing { .. })
    ));
    assert!(!missing.exists());

    // An older schema is refused, not migrated.
    let old = tempfile::tempdir().unwrap();
    {
        let db = sled::open(old.path()).unwrap();
        db.insert("schema_version", &2u32.to_be_bytes()).unwrap();
        db.open_tree("records").unwrap();
        db.open_tree("outbox").unwrap();
        db.open_tree("intent_keys").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        open_read_only_again(old.path()),
        Err(StoreError::NeedsMigration { found: 2, .. })
    ));
    let db = sled_open_again(old.path());
    assert_eq!(
        db.get("schema_version").unwrap().unwrap().as_ref(),
        2u32.to_be_bytes()
    );
    assert!(!db.tree_names().iter().any(|n| &n[..] == b"locations"));
    drop(db);

    // A current database opens and reads.
    let current = tempfile::tempdir().unwrap();
    drop(SledStore::open(current.path(), DEFAULT_CACHE_BYTES).unwrap());
    let s = open_read_only_again(current.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn the_store_path_is_checked_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(check_path(&dir.path().join("new/state")).is_ok());
    assert!(!dir.path().join("new").exists());
    assert!(check_path(dir.path()).is_ok(), "an empty directory");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        check_path(&file),
        Err(StoreError::Unusable { .. })
    ));
    assert!(matches!(
        check_path(&file.join("below")),
        Err(StoreError::Unusable { .. })
    ));
    assert!(
        matches!(check_path(dir.path()), Err(StoreError::Unusable { .. })),
        "other files"
    );
    let store = dir.path().join("store");
    drop(SledStore::open(&store, DEFAULT_CACHE_BYTES).unwrap());
    assert!(check_path(&store).is_ok());
}
