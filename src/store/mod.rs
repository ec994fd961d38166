//! Durable lifecycle state: certificate records (their episodes and history inside them), the
//! outbox of intents not yet delivered, and the schema version. This module owns persistence
//! only; what the state means is [`crate::lifecycle`]'s. It depends on `lifecycle`, never the
//! reverse.
//!
//! # Atomicity
//!
//! A certificate's new record and the outbox entries of its intents are written in one
//! transaction: after any crash a reader finds either both or neither. Across certificates
//! there is no atomicity: a batch interrupted halfway leaves some certificates updated and
//! the others as they were, each of them whole, and the next scan decides the rest again.
//! Each intent is enqueued once per idempotency key, so a decision committed twice (a retry
//! after an error) does not enqueue it twice.
//!
//! # Durability (flush policy)
//!
//! sled writes to its log in memory and fsyncs in the background every 500 ms (kept at that
//! default). That is not enough to tell anyone: an intent must be durable before it is sent,
//! and a decision must be durable before its observation is acknowledged (an SQS message
//! deleted, a scan marked done). So:
//! - [`Store::commit`] commits one certificate and flushes before it returns;
//! - [`Store::commit_batch`] commits each certificate in its own transaction, then flushes
//!   once for the whole batch (also before returning an error, so what was committed is
//!   durable too); nothing in the batch may be acted on before it returns;
//! - [`Store::mark_delivered`] flushes, so a delivered intent is not delivered again after a
//!   restart (a lost mark would only cause a duplicate, which the idempotency key absorbs).
//!
//! What a flush guarantees: a process crash (panic, SIGKILL, OOM kill) loses nothing that was
//! flushed. A power loss or kernel crash may: sled's flush relies on `sync_file_range`, which
//! does not persist file metadata (sled issue 1452). Deployments that need power-loss
//! durability need a second [`Store`] implementation; the trait exists for that.
//!
//! # Schema
//!
//! Version [`SCHEMA_VERSION`] is stored under `schema_version`. Opening a database of a newer
//! version fails and changes nothing; an older one is migrated in place, one version at a
//! time, and flushed before use.

mod sled_store;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{
    CertificateKey, CertificateRecord, Decision, Intent, Observation, Policy, decide,
};

pub use sled_store::{DEFAULT_CACHE_BYTES, SledStore};

/// The on-disk layout this build writes. 1: records and outbox. 2: adds the index from
/// idempotency key to outbox entry, so re-committing a decision cannot enqueue twice.
pub const SCHEMA_VERSION: u32 = 2;

/// Position of an intent in the outbox; increasing in commit order.
pub type OutboxId = u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: OutboxId,
    pub intent: Intent,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "the state database at {path} has schema version {found}, newer than version {supported} that this certsentinel understands: run a newer certsentinel, or point store.path at another directory"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "the directory {path} holds a database that is not certsentinel's ({detail}): point store.path at an empty or certsentinel directory"
    )]
    NotOurs { path: PathBuf, detail: String },
    #[error("state database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("the stored {what} under {key} cannot be read ({source}); the database may be damaged")]
    Corrupt {
        what: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the record of {certificate}: {source}")]
    Encode {
        certificate: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the record of {certificate} moved on while this decision was made (stored observation {stored}, decision from {decided}): load it again and decide again"
    )]
    Conflict {
        certificate: String,
        stored: DateTime<Utc>,
        decided: DateTime<Utc>,
    },
    #[error("cannot write the export: {0}")]
    Export(#[from] std::io::Error),
}

/// Where lifecycle state lives. Implementations must make each certificate's commit atomic
/// and everything a method returned durable, as described in the module documentation.
pub trait Store {
    fn load(&self, key: &CertificateKey) -> Result<Option<CertificateRecord>, StoreError>;

    /// Commits one certificate's decision (record and intents together), then flushes.
    /// Returns the outbox ids of the intents enqueued; a stale decision commits nothing.
    fn commit(&self, decision: &Decision) -> Result<Vec<OutboxId>, StoreError>;

    /// Commits each decision in its own transaction, then flushes once.
    fn commit_batch(&self, decisions: &[Decision]) -> Result<Vec<OutboxId>, StoreError>;

    fn flush(&self) -> Result<(), StoreError>;

    /// Every record, in key order.
    fn records(&self) -> Box<dyn Iterator<Item = Result<CertificateRecord, StoreError>> + '_>;

    /// Intents not yet delivered, oldest first.
    fn outbox_pending(&self) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Removes delivered entries from the outbox (their keys stay known), then flushes.
    fn mark_delivered(&self, ids: &[OutboxId]) -> Result<(), StoreError>;

    /// Writes every record as one JSON object per line; returns how many.
    fn export_jsonl(&self, out: &mut dyn Write) -> Result<u64, StoreError>;
}

/// Loads, decides and commits one observation durably.
pub fn observe<S: Store + ?Sized>(
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
pub fn observe_batch<S: Store + ?Sized>(
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
