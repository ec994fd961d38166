//! Reconciling a scan into the store: every certificate of every *complete* account and region
//! becomes an observation, the engine decides, and the decisions are committed durably in
//! batches. Certificates stored for a complete region but not found again are observed gone;
//! regions that failed are not touched at all, so nothing is resolved on what could not be read.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::inventory::model::CertificateKey;
use crate::inventory::scan::{Scan, TargetStatus};
use crate::lifecycle::observations::{RegionIndex, missing, present};
use crate::lifecycle::{CertState, Decision, Intent, Policy, decide};
use crate::store::{Store, StoreError};

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
    pub committed: bool,
}

/// Decides every observation of `scan` against `store`, committing unless `dry_run`.
pub fn reconcile_scan(
    store: &dyn Store,
    scan: &Scan,
    policy: &Policy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Reconciled, StoreError> {
    let observed_at = scan.started_at;
    tracing::info!(
        certificates = scan.certificates().count(),
        dry_run,
        "reconciling the scan into the state database"
    );
    let mut out = Reconciled {
        committed: !dry_run,
        ..Reconciled::default()
    };
    let mut pending: Vec<Decision> = Vec::with_capacity(BATCH);
    let flush = |pending: &mut Vec<Decision>, out: &mut Reconciled| {
        if !dry_run {
            store.commit_batch(pending)?;
        }
        for d in pending.drain(..) {
            if d.stale {
                out.stale += 1;
            }
            out.intents.extend(d.intents);
        }
        Ok::<(), StoreError>(())
    };

    let complete: HashSet<(&str, &str)> = scan
        .targets
        .iter()
        .filter(|t| matches!(t.status, TargetStatus::Complete))
        .map(|t| (t.account.as_str(), t.region.as_str()))
        .collect();
    let mut seen: HashSet<&CertificateKey> = HashSet::new();

    for inventory in &scan.inventories {
        let index = RegionIndex::new(inventory);
        for certificate in &inventory.certificates {
            seen.insert(&certificate.key);
            let previous = store.load(&certificate.key)?;
            match present(certificate, &index, previous.as_ref(), observed_at) {
                Some(obs) => {
                    out.observations += 1;
                    pending.push(decide(previous.as_ref(), &obs, policy, now));
                }
                None => out.unjudged.push(certificate.key.clone()),
            }
            if pending.len() >= BATCH {
                flush(&mut pending, &mut out)?;
            }
        }
    }

    // Stored certificates of complete regions that the scan did not find.
    let indexes: Vec<RegionIndex<'_>> = scan.inventories.iter().map(RegionIndex::new).collect();
    let mut absent = Vec::new();
    for record in store.records() {
        let record = record?;
        let key = &record.key;
        if matches!(record.state, CertState::Deleted)
            || seen.contains(key)
            || !complete.contains(&(key.account.as_str(), key.region.as_str()))
        {
            continue;
        }
        absent.push(record);
    }
    for record in absent {
        let Some(index) = scan
            .inventories
            .iter()
            .position(|i| i.account == record.key.account && i.region == record.key.region)
            .map(|i| &indexes[i])
        else {
            continue;
        };
        if let Some(obs) = missing(&record, index, observed_at) {
            out.observations += 1;
            pending.push(decide(Some(&record), &obs, policy, now));
        }
        if pending.len() >= BATCH {
            flush(&mut pending, &mut out)?;
        }
    }
    flush(&mut pending, &mut out)?;
    tracing::info!(
        observations = out.observations,
        intents = out.intents.len(),
        committed = out.committed,
        "reconciled"
    );
    Ok(out)
}
