//! Reconciling a scan into the store: every certificate of every *complete* account and region
//! becomes an observation, the engine decides, and the decisions are committed durably in
//! batches. Certificates stored for a complete region but not found again are observed gone;
//! regions that failed are not touched at all, so nothing is resolved on what could not be read.
//!
//! A stage that a certificate's record names and the listing lacks is not taken for deleted on
//! the listing's word: the certificate is left undecided and reported `in_doubt`, the caller
//! confirms those stages with targeted reads, and [`reconcile_certificates`] decides just those
//! certificates with the stages confirmed gone.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::config::ENABLED_REGIONS;
use crate::ids::{CertificateKey, StageKey};
use crate::inventory::scan::{Scan, TargetReport, TargetStatus};
use crate::lifecycle::{
    CertificateRecord, Decision, Intent, Observation, Policy, Seen, TargetRead, decide,
    decide_target,
};
use crate::observe::{InDoubt, RegionIndex, missing, present, unconfirmed};
use crate::store::{Store, StoreError, StoredRegion};

/// Decisions are committed (and flushed) this many at a time, bounding memory on large estates.
const BATCH: usize = 2_000;

/// What a reconcile did.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Observations made (certificates read, plus stored ones found missing).
    pub observations: usize,
    /// Observations older than the stored state, ignored.
    pub stale: usize,
    /// The intents decided, in order; committed to the outbox unless `dry_run`.
    pub intents: Vec<Intent>,
    /// Certificates whose expiry could not be read: not judged, not taken for gone.
    pub unjudged: Vec<CertificateKey>,
    /// Certificates left undecided because stages their record names are missing from the
    /// listing and not yet confirmed gone, with those stages.
    pub in_doubt: Vec<(CertificateKey, Vec<StageKey>)>,
    pub committed: bool,
}

impl Reconciled {
    /// Adds what a later pass over some of the same scan's certificates decided.
    pub fn absorb(&mut self, later: Reconciled) {
        self.observations += later.observations;
        self.stale += later.stale;
        self.intents.extend(later.intents);
        self.unjudged.extend(later.unjudged);
        self.in_doubt.extend(later.in_doubt);
    }
}

/// Decides every observation of `scan` against `store`, committing unless `dry_run`.
/// Certificates with stages in doubt are left undecided (see the module documentation).
pub fn reconcile_scan(
    store: &dyn Store,
    scan: &Scan,
    policy: &Policy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Reconciled, StoreError> {
    reconcile(store, scan, policy, now, dry_run, None, &HashSet::new())
}

/// Decides only the certificates `only` of `scan`, counting the stages in `confirmed_gone` as
/// deleted: the second pass, once the stages in doubt have been read.
pub fn reconcile_certificates(
    store: &dyn Store,
    scan: &Scan,
    policy: &Policy,
    now: DateTime<Utc>,
    dry_run: bool,
    only: &HashSet<CertificateKey>,
    confirmed_gone: &HashSet<StageKey>,
) -> Result<Reconciled, StoreError> {
    reconcile(
        store,
        scan,
        policy,
        now,
        dry_run,
        Some(only),
        confirmed_gone,
    )
}

fn reconcile(
    store: &dyn Store,
    scan: &Scan,
    policy: &Policy,
    now: DateTime<Utc>,
    dry_run: bool,
    only: Option<&HashSet<CertificateKey>>,
    confirmed_gone: &HashSet<StageKey>,
) -> Result<Reconciled, StoreError> {
    let observed_at = scan.started_at;
    let wanted = |key: &CertificateKey| only.is_none_or(|only| only.contains(key));
    tracing::info!(
        certificates = only.map_or_else(|| scan.certificates().count(), HashSet::len),
        dry_run,
        "reconciling the scan into the state database"
    );
    let mut out = Reconciled {
        committed: !dry_run,
        ..Reconciled::default()
    };
    let mut batch = Batch::new(store, policy, now, dry_run);

    let complete: HashSet<(&str, &str)> = scan
        .targets
        .iter()
        .filter(|t| matches!(t.status, TargetStatus::Complete))
        .map(|t| (t.account.as_str(), t.region.as_str()))
        .collect();
    let mut seen: HashSet<&CertificateKey> = HashSet::new();

    for inventory in &scan.inventories {
        let index = RegionIndex::new(inventory, confirmed_gone);
        for certificate in &inventory.certificates {
            seen.insert(&certificate.key);
            if !wanted(&certificate.key) {
                continue;
            }
            let previous = store.load(&certificate.key)?;
            match present(certificate, &index, previous.as_ref(), observed_at) {
                Ok(Some(obs)) => {
                    out.observations += 1;
                    batch.push(obs, previous.as_ref(), &mut out)?;
                }
                Ok(None) => out.unjudged.push(certificate.key.clone()),
                Err(InDoubt(stages)) => out.in_doubt.push((certificate.key.clone(), stages)),
            }
        }
    }

    // Stored certificates of complete regions that the scan did not find: their keys come from
    // the store's location index, and only their records are loaded, one at a time.
    let mut absent: Vec<(CertificateKey, usize)> = Vec::new();
    let mut regions_done: HashSet<(&str, &str)> = HashSet::new();
    for (i, inventory) in scan.inventories.iter().enumerate() {
        let region = (inventory.account.as_str(), inventory.region.as_str());
        if !complete.contains(&region) || !regions_done.insert(region) {
            continue;
        }
        for (key, deleted) in store.keys_in(region.0, region.1)? {
            if !deleted && !seen.contains(&key) && wanted(&key) {
                absent.push((key, i));
            }
        }
    }
    // Key order across regions, as a walk of the whole store would give.
    absent.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    drop(seen);
    let mut indexes: Vec<Option<RegionIndex<'_>>> = Vec::new();
    indexes.resize_with(scan.inventories.len(), || None);
    for (key, i) in absent {
        let Some(record) = store.load(&key)? else {
            continue;
        };
        let index = indexes[i]
            .get_or_insert_with(|| RegionIndex::new(&scan.inventories[i], confirmed_gone));
        match missing(&record, index, observed_at) {
            Ok(Some(obs)) => {
                out.observations += 1;
                batch.push(obs, Some(&record), &mut out)?;
            }
            Ok(None) => {}
            Err(InDoubt(stages)) => out.in_doubt.push((key, stages)),
        }
    }
    batch.flush(&mut out)?;
    tracing::info!(
        observations = out.observations,
        intents = out.intents.len(),
        in_doubt = out.in_doubt.len(),
        committed = out.committed,
        "reconciled"
    );
    Ok(out)
}

/// What the scan says of sight: each account and region's read health (an unreadable one
/// raises its own intent once it has been so for long, and another once it reads again), and,
/// for every account and region this scan could not read, its known certificates decided
/// again on what was last known (`Unconfirmed`), so that their steps and incidents still come
/// on time while nobody can see. Nothing is resolved on that basis.
pub fn reconcile_sight(
    store: &dyn Store,
    scan: &Scan,
    policy: &Policy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Reconciled, StoreError> {
    let at = scan.started_at;
    let mut out = Reconciled {
        committed: !dry_run,
        ..Reconciled::default()
    };
    let mut health = Vec::with_capacity(scan.targets.len());
    for t in &scan.targets {
        let read = match &t.status {
            TargetStatus::Complete => TargetRead::Complete,
            TargetStatus::Failed { error, .. } => TargetRead::Failed { error },
        };
        let previous = store.target(&t.account, &t.region)?;
        health.push(decide_target(
            previous.as_ref(),
            &t.account,
            &t.region,
            read,
            at,
            policy,
            now,
        ));
    }
    if !dry_run {
        store.commit_targets(&health)?;
    }
    out.intents
        .extend(health.into_iter().flat_map(|d| d.intents));

    let stored = store.regions()?;
    let mut batch = Batch::new(store, policy, now, dry_run);
    let failed = scan
        .targets
        .iter()
        .filter(|t| !matches!(t.status, TargetStatus::Complete));
    let mut done: HashSet<(&str, &str)> = HashSet::new();
    for target in failed {
        for region in behind(target, &stored) {
            if !done.insert((region.account.as_str(), region.region.as_str())) {
                continue;
            }
            for (key, deleted) in store.keys_in(&region.account, &region.region)? {
                let Some(record) = (!deleted).then(|| store.load(&key)).transpose()?.flatten()
                else {
                    continue;
                };
                // Read by this very scan (a certificate decided before its region fell in
                // doubt): what it said stands.
                if record.last_observed_at >= at {
                    continue;
                }
                if let Some(obs) = unconfirmed(&record, at) {
                    out.observations += 1;
                    batch.push(obs, Some(&record), &mut out)?;
                }
            }
        }
    }
    batch.flush(&mut out)?;
    Ok(out)
}

/// How many times a certificate is decided again after its commit was refused because its
/// record moved on; past it, it is left undecided (the next read decides it).
const CONFLICT_RETRIES: u32 = 8;

/// Decisions waiting to be committed together, [`BATCH`] at a time, with the observations
/// they were decided from: a decision refused because its record moved on (a targeted re-read
/// committed in between) is decided again from the record as it is now.
pub struct Batch<'s> {
    store: &'s dyn Store,
    policy: &'s Policy,
    now: DateTime<Utc>,
    dry_run: bool,
    observations: Vec<Observation>,
    pending: Vec<Decision>,
}

impl<'s> Batch<'s> {
    pub fn new(
        store: &'s dyn Store,
        policy: &'s Policy,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Self {
        Batch {
            store,
            policy,
            now,
            dry_run,
            observations: Vec::with_capacity(BATCH),
            pending: Vec::with_capacity(BATCH),
        }
    }

    /// Decides `obs` against `previous` (the record as loaded) and queues the decision.
    pub fn push(
        &mut self,
        obs: Observation,
        previous: Option<&CertificateRecord>,
        out: &mut Reconciled,
    ) -> Result<(), StoreError> {
        self.pending
            .push(decide(previous, &obs, self.policy, self.now));
        self.observations.push(obs);
        if self.pending.len() >= BATCH {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Commits what is pending (unless a dry run), deciding again each decision refused as a
    /// conflict, then counts it as decided. A certificate whose current record names a stage
    /// its observation says nothing of (someone else read it since) is not decided again from
    /// that observation: it is left in doubt, as are those still refused after
    /// [`CONFLICT_RETRIES`] tries.
    pub fn flush(&mut self, out: &mut Reconciled) -> Result<(), StoreError> {
        let mut from = 0;
        let mut retries = 0;
        let mut undecided = vec![false; self.pending.len()];
        while !self.dry_run && from < self.pending.len() {
            match self.store.commit_batch(&self.pending[from..]) {
                Ok(_) => break,
                Err(StoreError::Conflict { certificate, .. }) => {
                    // Everything before it is committed; it and the rest are not.
                    let Some(i) = self.pending[from..]
                        .iter()
                        .position(|d| d.record.key.to_string() == certificate)
                    else {
                        return Err(StoreError::Interrupted(format!(
                            "a conflict on {certificate}, which this batch does not hold"
                        )));
                    };
                    if i > 0 {
                        retries = 0;
                    }
                    from += i;
                    let current = self.store.load(&self.pending[from].record.key)?;
                    let unexplained =
                        unexplained_stages(&self.observations[from], current.as_ref());
                    if retries >= CONFLICT_RETRIES || !unexplained.is_empty() {
                        tracing::debug!(%certificate, "the record moved on while deciding: left for the next read");
                        out.in_doubt
                            .push((self.pending[from].record.key.clone(), unexplained));
                        let d = &mut self.pending[from];
                        d.stale = true;
                        d.intents.clear();
                        undecided[from] = true;
                        from += 1;
                        retries = 0;
                        continue;
                    }
                    retries += 1;
                    tracing::debug!(%certificate, "the record moved on while deciding: deciding again");
                    self.pending[from] = decide(
                        current.as_ref(),
                        &self.observations[from],
                        self.policy,
                        self.now,
                    );
                }
                Err(e) => return Err(e),
            }
        }
        self.observations.clear();
        for (d, undecided) in self.pending.drain(..).zip(undecided) {
            if undecided {
                continue;
            }
            if d.stale {
                out.stale += 1;
            }
            out.intents.extend(d.intents);
        }
        Ok(())
    }
}

/// The stages `current` names that `obs` neither sees nor accounts for (departed): what
/// someone read after `obs`'s own reading was decided against an older record.
fn unexplained_stages(obs: &Observation, current: Option<&CertificateRecord>) -> Vec<StageKey> {
    let (
        Some(current),
        Seen::Present {
            users, departed, ..
        },
    ) = (current, &obs.seen)
    else {
        return Vec::new();
    };
    current
        .users
        .iter()
        .map(|u| &u.stage)
        .filter(|s| !users.iter().any(|u| &u.stage == *s) && !departed.contains_key(*s))
        .cloned()
        .collect()
}

/// The stored accounts and regions a failed target stands for: itself, every region of an
/// account whose regions could not be listed, everything when the organization could not be.
fn behind<'s>(target: &TargetReport, stored: &'s [StoredRegion]) -> Vec<&'s StoredRegion> {
    stored
        .iter()
        .filter(|r| {
            target.account == "organization"
                || r.account == target.account
                    && (target.region == ENABLED_REGIONS || r.region == target.region)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::{Certificate, CertificateKind, RegionInventory, Stage, StageUse};
    use crate::inventory::scan::TargetReport;
    use crate::lifecycle::CertState;
    use crate::store::{DEFAULT_CACHE_BYTES, SledStore};
    use crate::test_support::{ACCOUNT, at, cert_in as key, stage_in};

    fn t(hours: i64) -> DateTime<Utc> {
        at(hours as f64 / 24.0)
    }

    /// Certificate `id`, presented by one stage, far from expiry.
    fn inventory(region: &str, ids: &[&str]) -> RegionInventory {
        let stage = |id: &str| stage_in(region, id);
        RegionInventory {
            account: ACCOUNT.into(),
            region: region.into(),
            certificates: ids
                .iter()
                .map(|id| Certificate {
                    key: key(region, id),
                    kind: CertificateKind::Generated,
                    description: None,
                    created_at: Some(t(-24)),
                    not_after: Some(t(24 * 365)),
                    not_after_source: None,
                    fingerprint_sha256: None,
                    warnings: vec![],
                    tags: Default::default(),
                    certificate_owner: None,
                    successor_of: None,
                    pem: None,
                    used_by: vec![StageUse {
                        stage: stage(id),
                        api_name: "api".into(),
                        owner: None,
                        partner: None,
                    }],
                })
                .collect(),
            stages: ids
                .iter()
                .map(|id| Stage {
                    key: stage(id),
                    api_name: "api".into(),
                    certificate_ref: Some(id.to_string()),
                    tags: Default::default(),
                })
                .collect(),
            dangling: vec![],
        }
    }

    /// A scan of `regions`; `None` is a region that failed.
    fn scan(at: DateTime<Utc>, regions: &[(&str, Option<&[&str]>)]) -> Scan {
        let target = |region: &str, status: TargetStatus| TargetReport {
            account: ACCOUNT.into(),
            account_name: None,
            region: region.into(),
            status,
            calls: Default::default(),
            call_outcomes: Default::default(),
            counts: Default::default(),
            clock_skew_seconds: None,
        };
        Scan {
            started_at: at,
            finished_at: at,
            targets: regions
                .iter()
                .map(|(region, ids)| match ids {
                    Some(_) => target(region, TargetStatus::Complete),
                    None => target(
                        region,
                        TargetStatus::Failed {
                            reason_kind: crate::inventory::call::FailureKind::Throttled,
                            error: "slow down".into(),
                        },
                    ),
                })
                .collect(),
            inventories: regions
                .iter()
                .filter_map(|(region, ids)| ids.map(|ids| inventory(region, ids)))
                .collect(),
            readers: Default::default(),
        }
    }

    fn state(store: &SledStore, region: &str, id: &str) -> (CertState, DateTime<Utc>) {
        let r = store.load(&key(region, id)).unwrap().unwrap();
        (r.state, r.last_observed_at)
    }

    #[test]
    fn a_decision_refused_for_a_record_that_moved_on_is_decided_again_or_left_in_doubt() {
        use crate::test_support::{cert, present, user};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let policy = Policy::default();
        let first = present("c1", 0.0, 100.0, vec![user("s1", Some("a"), None)]);
        store
            .commit(&decide(None, &first, &policy, at(0.0)))
            .unwrap();
        let loaded = store.load(&cert("c1")).unwrap();

        // A scan decides from `loaded`; meanwhile an event commits a later read of the same
        // stages: the scan's decision is refused, decided again, and is stale (older).
        let mut out = Reconciled::default();
        let mut batch = Batch::new(&store, &policy, at(1.0), false);
        batch
            .push(
                present("c1", 0.5, 100.0, vec![user("s1", Some("a"), None)]),
                loaded.as_ref(),
                &mut out,
            )
            .unwrap();
        let event = present("c1", 0.7, 100.0, vec![user("s1", Some("a"), None)]);
        store
            .commit(&decide(loaded.as_ref(), &event, &policy, at(0.7)))
            .unwrap();
        batch.flush(&mut out).unwrap();
        assert_eq!(out.stale, 1, "decided again: older than what is stored");
        assert!(out.in_doubt.is_empty());
        assert_eq!(
            store.load(&cert("c1")).unwrap().unwrap().last_observed_at,
            at(0.7)
        );

        // This time the event saw a second stage, s2, that the scan's observation says nothing
        // of: deciding again from it would drop s2 unread. It is left in doubt, untouched.
        let loaded = store.load(&cert("c1")).unwrap();
        let mut out = Reconciled::default();
        let mut batch = Batch::new(&store, &policy, at(2.0), false);
        batch
            .push(
                present("c1", 1.5, 100.0, vec![user("s1", Some("a"), None)]),
                loaded.as_ref(),
                &mut out,
            )
            .unwrap();
        let both = vec![user("s1", Some("a"), None), user("s2", Some("b"), None)];
        store
            .commit(&decide(
                loaded.as_ref(),
                &present("c1", 1.0, 100.0, both),
                &policy,
                at(1.0),
            ))
            .unwrap();
        batch.flush(&mut out).unwrap();
        assert_eq!(out.in_doubt.len(), 1, "{out:?}");
        assert_eq!(out.in_doubt[0].1, vec![crate::test_support::stage("s2")]);
        assert_eq!(out.stale, 0);
        let kept = store.load(&cert("c1")).unwrap().unwrap();
        assert_eq!(kept.users.len(), 2, "s2 kept");
        assert_eq!(kept.last_observed_at, at(1.0));
    }

    #[test]
    fn only_complete_regions_lose_certificates_and_deleted_ones_are_not_observed_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let policy = Policy::default();
        let run = |s: &Scan| reconcile_scan(&store, s, &policy, s.started_at, false).unwrap();

        let all: &[&str] = &["a", "b", "c"];
        let out = run(&scan(
            t(0),
            &[("eu-west-1", Some(all)), ("us-east-1", Some(&["x", "y"]))],
        ));
        assert_eq!(out.observations, 5);

        // b and c are gone from a complete region; us-east-1 could not be read.
        let out = run(&scan(
            t(1),
            &[("eu-west-1", Some(&["a"])), ("us-east-1", None)],
        ));
        assert_eq!(out.observations, 3);
        assert_eq!(state(&store, "eu-west-1", "b"), (CertState::Deleted, t(1)));
        assert_eq!(state(&store, "eu-west-1", "c"), (CertState::Deleted, t(1)));
        assert_eq!(state(&store, "us-east-1", "x"), (CertState::Healthy, t(0)));
        assert_eq!(state(&store, "us-east-1", "y"), (CertState::Healthy, t(0)));
        assert_eq!(
            store.keys_in(ACCOUNT, "eu-west-1").unwrap(),
            vec![
                (key("eu-west-1", "a"), false),
                (key("eu-west-1", "b"), true),
                (key("eu-west-1", "c"), true)
            ]
        );

        // Deleted certificates are not observed gone again; y is gone now.
        let out = run(&scan(
            t(2),
            &[("eu-west-1", Some(&["a"])), ("us-east-1", Some(&["x"]))],
        ));
        assert_eq!(out.observations, 3);
        assert_eq!(state(&store, "eu-west-1", "b"), (CertState::Deleted, t(1)));
        assert_eq!(state(&store, "us-east-1", "y"), (CertState::Deleted, t(2)));

        // A dry run decides the same and commits nothing.
        let out = reconcile_scan(
            &store,
            &scan(t(3), &[("eu-west-1", Some(&[])), ("us-east-1", Some(&[]))]),
            &policy,
            t(3),
            true,
        )
        .unwrap();
        assert_eq!(out.observations, 2);
        assert!(!out.committed);
        assert_eq!(state(&store, "eu-west-1", "a"), (CertState::Healthy, t(2)));
    }
}
