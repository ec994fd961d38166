//! Durable lifecycle state: certificate records (their episodes and history inside them), the
//! outbox of intents not yet delivered, an index of where certificates are, and the schema
//! version. This module owns persistence only; what the state means is [`crate::lifecycle`]'s.
//! It depends on `lifecycle`, never the reverse.
//!
//! # Atomicity
//!
//! A certificate's new record, its entry in the location index and the outbox entries of its
//! intents are written in one transaction: after any crash a reader finds all of them or
//! none. [`Store::commit_batch`] puts up to a few hundred certificates in one transaction (a
//! group; sled's per-transaction cost is two log writes, which one transaction per certificate
//! made the bulk of a scan's time). Across groups there is no atomicity: a batch interrupted
//! halfway leaves some certificates updated and the others as they were, each of them whole,
//! and the next scan decides the rest again. A decision that cannot commit (a conflict) fails
//! as if each certificate had had its own transaction: those before it in the batch are
//! committed, it and those after it are not. Each intent is enqueued once per idempotency key,
//! so a decision committed twice (a retry after an error) does not enqueue it twice.
//!
//! A commit is a compare-and-swap: it is refused ([`StoreError::Conflict`]) unless the stored
//! record is still the revision the decision was made from (a scan and a targeted re-read
//! decided the same certificate at once; the loser loads again and decides again). The check
//! reads the revision from the location index, inside the transaction, so it costs no decoding
//! of the stored record.
//!
//! # Durability (flush policy)
//!
//! sled writes to its log in memory and fsyncs in the background every 500 ms (kept at that
//! default). That is not enough to tell anyone: an intent must be durable before it is sent,
//! and a decision must be durable before its observation is acknowledged (an SQS message
//! deleted, a scan marked done). So:
//! - [`Store::commit`] commits one certificate and flushes before it returns;
//! - [`Store::commit_batch`] commits the batch in groups, then flushes once for the whole
//!   batch (also before returning an error, so what was committed is durable too); nothing in
//!   the batch may be acted on before it returns;
//! - [`Store::record_delivery`] and [`Store::complete`] flush, so a delivered intent is not
//!   delivered again after a restart (a lost record would only cause a repeat, which each
//!   backend absorbs by the intent's idempotency key).
//!
//! What a flush guarantees: a process crash (panic, SIGKILL, OOM kill) loses nothing that was
//! flushed. A power loss or kernel crash may: sled's flush relies on `sync_file_range`, which
//! does not persist file metadata (sled issue 1452). Deployments that need power-loss
//! durability need a second [`Store`] implementation; the trait exists for that.
//!
//! # The location index
//!
//! For every record, keyed like it (`account\0region\0id`), a 21-byte value: whether the
//! record is `Deleted`, its `last_observed_at` and its revision. [`Store::keys_in`] answers from it which
//! certificates are stored for an account and region, so a reconcile finds the certificates a
//! complete scan no longer found without decoding every record, and loads only those. (A walk
//! of every record through a sled 0.34 iterator also keeps the pages it read resident beyond
//! the cache bound: about 50 MB more at 100,000 certificates, for as long as the store is
//! open.) [`Store::records`] remains for reports and exports.
//!
//! # Schema
//!
//! Version [`SCHEMA_VERSION`] is stored under `schema_version`. Opening a database of a newer
//! version fails and changes nothing; an older one is migrated in place, one version at a
//! time, and flushed before use; the new version is written only after its migration is
//! complete, so a migration interrupted by a crash runs again whole at the next open.
//!
//! | version | adds | migration from the previous version |
//! |---|---|---|
//! | 1 | `records`, `outbox` | — |
//! | 2 | `intent_keys`: idempotency key -> outbox id | rebuilt from the pending outbox entries |
//! | 3 | `locations`: the location index | built from the records (their state and observation time only) |
//! | 4 | `targets`: each account and region's read health; `delivered`: intents every backend has; `notes`: what backends must remember (an episode's issue key, a create under way) | none: they start empty |
//! | 5 | the record's revision in each location entry (21 bytes instead of 13); `presenters`: `account\0region\0kind\0api\0stage\0id` for every stage a committed record names, so a change event finds the certificates a stage presented without reading every record | `presenters` built from the records; a 13-byte location entry reads as revision 1 and is rewritten at its next commit |

mod sled_store;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CertificateKey, StageKind};
use crate::lifecycle::{CertificateRecord, Decision, Intent, TargetDecision, TargetHealth};

pub use sled_store::{DEFAULT_CACHE_BYTES, SledStore, check_path};

/// The on-disk layout this build writes (see the table in the module documentation).
/// 1: records and outbox. 2: adds the index from idempotency key to outbox entry, so
/// re-committing a decision cannot enqueue twice. 3: adds the location index (which
/// certificates are stored where, deleted or not, last observed when), so reconciling a region
/// need not decode every record. 4: adds each account and region's read health, so that one
/// unreadable for long is said once, and said again when it can be read.
/// 5: each location entry carries its record's revision, the token of the commit's
/// compare-and-swap.
pub const SCHEMA_VERSION: u32 = 5;

/// Position of an intent in the outbox; increasing in commit order.
pub type OutboxId = u64;

/// What is stored for one account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRegion {
    pub account: String,
    pub region: String,
    /// Certificates stored there and not deleted.
    pub certificates: usize,
    /// When the latest of its certificates (deleted or not) was observed: the last time a
    /// scan read this account and region in full.
    pub last_observed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: OutboxId,
    pub intent: Intent,
    /// What each backend that takes this intent made of it so far, by backend name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deliveries: BTreeMap<String, Delivery>,
    /// When every backend had it: set once the entry leaves the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// One backend's outcome for one intent, recorded durably before anything else happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Delivery {
    /// Accepted: when, and what the service answered (a status, an issue key, a dedup key, a
    /// Message-ID): the timestamps reports are computed from.
    Delivered {
        at: DateTime<Utc>,
        reference: String,
    },
    /// Refused for good (a permanent 4xx): the service's reason. Tried again only on request
    /// (`certsentinel notify --retry KEY`).
    Failed { at: DateTime<Utc>, reason: String },
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
    #[error(
        "no state database at {path} (store.path): run `certsentinel scan --once` or the daemon first"
    )]
    Missing { path: PathBuf },
    #[error(
        "another certsentinel holds the state database at {path} (store.path): stop it first, or read its state through it"
    )]
    Locked { path: PathBuf },
    #[error(
        "the state database at {path} has schema version {found}; this command only reads and does not migrate it to version {supported}: run `certsentinel scan --once` (or the daemon) once"
    )]
    NeedsMigration {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("store.path {path} cannot hold the state database: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("state database error: {0}")]
    Sled(#[from] sled::Error),
    /// The thread doing store work panicked or was cancelled before it answered; what it
    /// wrote, if anything, is whole (every write is one transaction), so a retry is safe.
    #[error("a state database task stopped before it answered: {0}")]
    Interrupted(String),
    #[error("the stored {what} under {key} cannot be read ({source}); the database may be damaged")]
    Corrupt {
        what: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the location index entry {key} cannot be read ({detail}); the database may be damaged"
    )]
    Index { key: String, detail: String },
    #[error("cannot encode the record of {certificate}: {source}")]
    Encode {
        certificate: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the record of {certificate} moved on while this decision was made (stored revision {stored}, decided from revision {decided_from}): load it again and decide again"
    )]
    Conflict {
        certificate: String,
        stored: u64,
        decided_from: u64,
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

    /// Every record, in key order. Decodes every record: for reports and exports, not for the
    /// daemon's hot path (see [`Store::keys_in`]).
    fn records(&self) -> Box<dyn Iterator<Item = Result<CertificateRecord, StoreError>> + '_>;

    /// The key of every certificate stored for one account and region, in key order, with
    /// whether its record is `Deleted`. Reads the location index only, never a record.
    fn keys_in(
        &self,
        account: &str,
        region: &str,
    ) -> Result<Vec<(CertificateKey, bool)>, StoreError>;

    /// The certificates whose committed records named `stage_name` of this API (with `None`,
    /// any stage of it) among the stages presenting them: what a change to a stage or an API
    /// may have touched. Entries are added by each commit and dropped by
    /// [`Store::prune_presenter`] and [`Store::forget`], so this may name certificates that
    /// have since stopped being presented there (load their records to know); it never
    /// misses one whose committed record names the stage.
    fn presenters(
        &self,
        account: &str,
        region: &str,
        kind: StageKind,
        api_id: &str,
        stage_name: Option<&str>,
    ) -> Result<std::collections::BTreeSet<CertificateKey>, StoreError>;
    /// Drops the `presenters` entry saying that `stage` presented `certificate`, if the
    /// certificate's committed record no longer names that stage (checked in the same
    /// transaction, so an entry a concurrent commit needs is never lost). Returns whether it
    /// was dropped.
    fn prune_presenter(
        &self,
        stage: &crate::ids::StageKey,
        certificate: &CertificateKey,
    ) -> Result<bool, StoreError>;
    /// Hands every record to `each`, one at a time, region by region through the location
    /// index: memory stays within the page cache, where a walk of [`Store::records`] keeps
    /// the pages it read resident (about 130 MiB more at 100,000 records of ten transitions,
    /// measured by `cargo bench --bench report`). For reports.
    fn each_record(&self, each: &mut dyn FnMut(CertificateRecord)) -> Result<usize, StoreError> {
        let mut n = 0;
        for region in self.regions()? {
            for (key, _) in self.keys_in(&region.account, &region.region)? {
                if let Some(record) = self.load(&key)? {
                    each(record);
                    n += 1;
                }
            }
        }
        Ok(n)
    }
    /// Every account and region with stored certificates, in key order, with how many are not
    /// deleted and when the latest of them was observed. Reads the location index only.
    fn regions(&self) -> Result<Vec<StoredRegion>, StoreError>;

    /// Drops everything stored for one account (every region, or only `region`): records,
    /// their location entries, their undelivered intents and their idempotency keys, in one
    /// transaction, then flushes. For accounts and regions no longer scanned; a certificate
    /// seen again afterwards starts a new history. Returns how many certificates it dropped.
    fn forget(&self, account: &str, region: Option<&str>) -> Result<usize, StoreError>;

    /// The read health of one account and region, if it was ever scanned.
    fn target(&self, account: &str, region: &str) -> Result<Option<TargetHealth>, StoreError>;

    /// The read health of every account and region ever scanned, in key order.
    fn targets(&self) -> Result<Vec<TargetHealth>, StoreError>;

    /// Commits accounts' and regions' read health with their intents, in one transaction,
    /// then flushes. Returns the outbox ids of the intents enqueued.
    fn commit_targets(&self, decisions: &[TargetDecision]) -> Result<Vec<OutboxId>, StoreError>;

    /// What a backend noted under `key` (an issue key for an episode, a create under way),
    /// if anything.
    fn note(&self, backend: &str, key: &str) -> Result<Option<String>, StoreError>;

    /// Notes `value` for a backend under `key`, durably (flushed), before the backend acts
    /// on it: "about to create", then "created as PROJ-12".
    fn set_note(&self, backend: &str, key: &str, value: &str) -> Result<(), StoreError>;

    /// Intents not yet delivered, oldest first.
    fn outbox_pending(&self) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Records what one backend made of one pending intent, then flushes.
    fn record_delivery(
        &self,
        id: OutboxId,
        backend: &str,
        delivery: &Delivery,
    ) -> Result<(), StoreError>;

    /// Moves a pending intent that every backend has to the delivered ones (its key stays
    /// known, so it is never enqueued again), then flushes.
    fn complete(&self, id: OutboxId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Delivered intents, the most recently completed first, at most `limit`.
    fn delivered(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Forgets the failures recorded for the pending intent whose key is `key`, so that the
    /// next delivery tries those backends again; false when no pending intent has that key.
    fn retry(&self, key: &str) -> Result<bool, StoreError>;

    /// Writes every record as one JSON object per line; returns how many.
    fn export_jsonl(&self, out: &mut dyn Write) -> Result<u64, StoreError>;

    /// The records of the certificate called `name`: its id or ARN (one per account and
    /// region that has it), or `account/region/id`. Walks every record: for people, not for
    /// the daemon's hot path.
    fn find(&self, name: &str) -> Result<Vec<CertificateRecord>, StoreError> {
        self.records()
            .filter(|r| {
                r.as_ref()
                    .map_or(true, |r| r.key.id == name || r.key.to_string() == name)
            })
            .collect()
    }

    /// The delivered intents of one certificate, most recent first. Walks every delivered
    /// intent: for people, not for the daemon's hot path.
    fn delivered_for(&self, key: &CertificateKey) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .delivered(usize::MAX)?
            .into_iter()
            .filter(|e| &e.intent.certificate == key)
            .collect())
    }

    /// The undelivered intents of one certificate, oldest first.
    fn pending_for(&self, key: &CertificateKey) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .outbox_pending()?
            .into_iter()
            .filter(|e| &e.intent.certificate == key)
            .collect())
    }
}
