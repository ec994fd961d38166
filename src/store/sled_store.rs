//! The sled implementation of [`Store`]: one database directory, five trees.
//!
//! - default tree: `schema_version` (u32, big-endian);
//! - `records`: `account\0region\0id` -> JSON [`CertificateRecord`] (episodes and history
//!   inside, so a certificate's whole state is one value and one write);
//! - `locations`: the same key -> 13 bytes: whether the record is `Deleted` (1 byte), then
//!   its `last_observed_at` (i64 seconds and u32 nanoseconds, big-endian). Written in the
//!   transaction that writes the record, so it always agrees with it. It answers
//!   [`Store::keys_in`] (a prefix scan of small values instead of decoding every record) and
//!   the conflict check of a commit (without decoding the stored record);
//! - `outbox`: outbox id (u64, big-endian, so iteration is commit order) -> JSON
//!   [`OutboxEntry`];
//! - `intent_keys`: idempotency key -> outbox id; kept after delivery so a key is enqueued at
//!   most once in the life of the database.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use super::{Delivery, OutboxEntry, OutboxId, SCHEMA_VERSION, Store, StoreError, StoredRegion};
use crate::ids::{CertificateKey, StageKey, StageKind};
use crate::lifecycle::{
    CertState, CertificateRecord, Decision, Intent, TargetDecision, TargetHealth,
};

/// Enough for the hot part of a 100,000-certificate store while keeping the process well
/// under 64 MB resident; sled's default (1 GB) would grow with the database instead.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

const VERSION_KEY: &[u8] = b"schema_version";
const RECORDS: &str = "records";
const OUTBOX: &str = "outbox";
const INTENT_KEYS: &str = "intent_keys";
const LOCATIONS: &str = "locations";
const TARGETS: &str = "targets";
const DELIVERED: &str = "delivered";
const NOTES: &str = "notes";
const PRESENTERS: &str = "presenters";

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    records: sled::Tree,
    outbox: sled::Tree,
    pub(crate) intent_keys: sled::Tree,
    pub(crate) locations: sled::Tree,
    targets: sled::Tree,
    delivered: sled::Tree,
    notes: sled::Tree,
    presenters: sled::Tree,
}

/// `account\0region\0`: the prefix of every key of one account and region.
fn region_prefix(account: &str, region: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(account.len() + region.len() + 2);
    k.extend_from_slice(account.as_bytes());
    k.push(0);
    k.extend_from_slice(region.as_bytes());
    k.push(0);
    k
}

/// `account\0region\0kind\0api\0`, then `stage\0` for one stage: the prefix of the
/// `presenters` entries of one API or one stage.
fn stage_prefix(
    account: &str,
    region: &str,
    kind: StageKind,
    api_id: &str,
    stage_name: Option<&str>,
) -> Vec<u8> {
    let mut k = region_prefix(account, region);
    k.extend_from_slice(kind.to_string().as_bytes());
    k.push(0);
    k.extend_from_slice(api_id.as_bytes());
    k.push(0);
    if let Some(stage) = stage_name {
        k.extend_from_slice(stage.as_bytes());
        k.push(0);
    }
    k
}

/// The `presenters` key saying that `stage` presented certificate `id`.
fn presenter_key(stage: &StageKey, id: &str) -> Vec<u8> {
    let mut k = stage_prefix(
        &stage.account,
        &stage.region,
        stage.kind,
        &stage.api_id,
        Some(&stage.stage_name),
    );
    k.extend_from_slice(id.as_bytes());
    k
}

fn record_key(key: &CertificateKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.account.len() + key.region.len() + key.id.len() + 2);
    k.extend_from_slice(key.account.as_bytes());
    k.push(0);
    k.extend_from_slice(key.region.as_bytes());
    k.push(0);
    k.extend_from_slice(key.id.as_bytes());
    k
}

const LOCATION_LEN: usize = 21;
/// A location written by schema 4: no revision.
const LOCATION_LEN_V4: usize = 13;

/// The `locations` value of a record: deleted flag, `last_observed_at`, the record's revision.
fn location_value(
    deleted: bool,
    last_observed_at: DateTime<Utc>,
    revision: u64,
) -> [u8; LOCATION_LEN] {
    let mut v = [0u8; LOCATION_LEN];
    v[0] = u8::from(deleted);
    v[1..9].copy_from_slice(&last_observed_at.timestamp().to_be_bytes());
    v[9..13].copy_from_slice(&last_observed_at.timestamp_subsec_nanos().to_be_bytes());
    v[13..21].copy_from_slice(&revision.to_be_bytes());
    v
}

/// What a `locations` value says; `None` if it is malformed.
fn decode_location(v: &[u8]) -> Option<Location> {
    if !matches!(v.len(), LOCATION_LEN | LOCATION_LEN_V4) || v[0] > 1 {
        return None;
    }
    let secs = i64::from_be_bytes(v[1..9].try_into().ok()?);
    let nanos = u32::from_be_bytes(v[9..13].try_into().ok()?);
    let revision = match v.get(13..21) {
        Some(r) => u64::from_be_bytes(r.try_into().ok()?),
        // Written before revisions: the record reads as revision 1 too.
        None => 1,
    };
    Some(Location {
        deleted: v[0] == 1,
        last_observed_at: DateTime::from_timestamp(secs, nanos)?,
        revision,
    })
}

/// One entry of the location index.
struct Location {
    deleted: bool,
    last_observed_at: DateTime<Utc>,
    revision: u64,
}

fn key_text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\0', "/")
}

fn decode_id(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// Whether `dir` holds sled's files (its configuration and its log).
fn is_sled_directory(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// Checks, without writing anything, that `path` can hold the state database: an existing
/// state database, an empty directory, or a path to create under a directory this process
/// may write to.
pub fn check_path(path: &Path) -> Result<(), StoreError> {
    let unusable = |reason: String| StoreError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    if path.exists() {
        if !path.is_dir() {
            return Err(unusable("it is not a directory".into()));
        }
        let empty = std::fs::read_dir(path)
            .map_err(|e| unusable(format!("it cannot be read ({e})")))?
            .next()
            .is_none();
        if !empty && !is_sled_directory(path) {
            return Err(unusable(
                "it holds files that are not a state database: use an empty or new directory"
                    .into(),
            ));
        }
        return writable(path).map_err(unusable);
    }
    // sled creates the missing directories: the nearest existing one must take them.
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if dir.exists() {
            if !dir.is_dir() {
                return Err(unusable(format!("{} is not a directory", dir.display())));
            }
            return writable(dir).map_err(unusable);
        }
        ancestor = dir.parent();
    }
    Ok(())
}

/// Whether this process may create files in `dir` (access(2) with W_OK|X_OK: ownership,
/// mode, ACLs and a read-only mount all count).
fn writable(dir: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| "the path holds a NUL byte".to_string())?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let ok = unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "this process may not write to {} ({})",
            dir.display(),
            std::io::Error::last_os_error()
        ))
    }
}

impl SledStore {
    /// Opens (creating if needed) the database in `path`, with sled's page cache bounded to
    /// `cache_bytes`, checks its schema version and migrates an older one.
    pub fn open(path: impl AsRef<Path>, cache_bytes: u64) -> Result<SledStore, StoreError> {
        Self::open_mode(path.as_ref(), cache_bytes, false)
    }

    /// Opens an existing state database to read it, without creating, migrating or writing
    /// anything of certsentinel's: a directory that is not a state database is left as it was,
    /// and an older schema is refused rather than migrated.
    pub fn open_read_only(
        path: impl AsRef<Path>,
        cache_bytes: u64,
    ) -> Result<SledStore, StoreError> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        if !is_sled_directory(path) {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::open_mode(path, cache_bytes, true)
    }

    fn open_mode(path: &Path, cache_bytes: u64, read_only: bool) -> Result<SledStore, StoreError> {
        let path = path.to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|source| match &source {
                // sled holds an exclusive lock on its directory while open.
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::Locked { path: path.clone() }
                }
                _ => StoreError::Open {
                    path: path.clone(),
                    source,
                },
            })?;
        let found = match db.get(VERSION_KEY)? {
            None => None,
            Some(v) if v.len() == 4 => Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            Some(v) => {
                return Err(StoreError::NotOurs {
                    path,
                    detail: format!("schema_version is {} bytes long", v.len()),
                });
            }
        };
        if let Some(found) = found
            && found > SCHEMA_VERSION
        {
            // Checked before opening any tree, so a newer database is left exactly as it was.
            return Err(StoreError::NewerSchema {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found.is_none() && db.tree_names().len() > 1 {
            return Err(StoreError::NotOurs {
                path,
                detail: "it has trees but no schema_version".into(),
            });
        }
        if read_only {
            match found {
                None => {
                    return Err(StoreError::NotOurs {
                        path,
                        detail: "no schema_version".into(),
                    });
                }
                Some(found) if found < SCHEMA_VERSION => {
                    return Err(StoreError::NeedsMigration {
                        path,
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
            }
        }
        let store = SledStore {
            records: db.open_tree(RECORDS)?,
            outbox: db.open_tree(OUTBOX)?,
            intent_keys: db.open_tree(INTENT_KEYS)?,
            locations: db.open_tree(LOCATIONS)?,
            targets: db.open_tree(TARGETS)?,
            delivered: db.open_tree(DELIVERED)?,
            notes: db.open_tree(NOTES)?,
            presenters: db.open_tree(PRESENTERS)?,
            path,
            db,
        };
        if !read_only {
            store.migrate(found.unwrap_or(SCHEMA_VERSION))?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version stored in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self
            .db
            .get(VERSION_KEY)?
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            .unwrap_or(0))
    }

    fn migrate(&self, mut version: u32) -> Result<(), StoreError> {
        while version < SCHEMA_VERSION {
            match version {
                1 => self.migrate_1_to_2()?,
                2 => self.migrate_2_to_3()?,
                // The targets tree starts empty: the next scan fills it.
                3 => {}
                // Locations of version 4 read as revision 1; each grows at its next commit.
                4 => self.migrate_4_to_5()?,
                v => {
                    return Err(StoreError::NotOurs {
                        path: self.path.clone(),
                        detail: format!("unknown schema version {v}"),
                    });
                }
            }
            version += 1;
        }
        self.db.insert(VERSION_KEY, &version.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Version 1 had no idempotency index: rebuild it from the entries still pending. Keys of
    /// entries delivered under version 1 are not recoverable; they were delivered already and
    /// the engine does not decide them again, because their record remembers them.
    fn migrate_1_to_2(&self) -> Result<(), StoreError> {
        for item in self.outbox.iter() {
            let (k, v) = item?;
            let entry: OutboxEntry =
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    what: "outbox entry",
                    key: decode_id(&k).to_string(),
                    source,
                })?;
            self.intent_keys
                .insert(entry.intent.key.as_bytes(), &entry.id.to_be_bytes())?;
        }
        Ok(())
    }

    /// Version 2 had no location index: build it from the records. Re-running it after a crash
    /// half-way is harmless (the version is written, and everything flushed, only after the
    /// whole index), and it rewrites every entry from its record.
    fn migrate_2_to_3(&self) -> Result<(), StoreError> {
        const CHUNK: usize = 4_096;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in self.records.iter() {
            let (k, v) = item?;
            let head: RecordHead =
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    what: "record",
                    key: key_text(&k),
                    source,
                })?;
            let deleted = matches!(head.state, CertState::Deleted);
            batch.insert(
                k,
                &location_value(deleted, head.last_observed_at, head.revision),
            );
            in_batch += 1;
            if in_batch == CHUNK {
                self.locations.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        self.locations.apply_batch(batch)?;
        Ok(())
    }

    /// Version 4 had no `presenters`: build it from the records' stages. Harmless to run again.
    fn migrate_4_to_5(&self) -> Result<(), StoreError> {
        #[derive(serde::Deserialize)]
        struct Users {
            key: CertificateKey,
            users: Vec<crate::lifecycle::StageUser>,
        }
        const CHUNK: usize = 4_096;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in self.records.iter() {
            let (k, v) = item?;
            let record: Users =
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    what: "record",
                    key: key_text(&k),
                    source,
                })?;
            for user in &record.users {
                batch.insert(presenter_key(&user.stage, &record.key.id), &[]);
                in_batch += 1;
            }
            if in_batch >= CHUNK {
                self.presenters.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        self.presenters.apply_batch(batch)?;
        Ok(())
    }

    /// The revision of the stored record of `key` (0: none), read inside a transaction: from
    /// the location index, or from the record itself if its index entry is missing or
    /// malformed (which no commit or migration leaves behind; the commit rewrites the entry).
    fn stored_revision(
        records: &TransactionalTree,
        locations: &TransactionalTree,
        key: &[u8],
    ) -> Result<u64, ConflictableTransactionError<StoreError>> {
        if let Some(loc) = locations.get(key)?
            && let Some(location) = decode_location(&loc)
        {
            return Ok(location.revision);
        }
        let Some(stored) = records.get(key)? else {
            return Ok(0);
        };
        let head: RecordHead = serde_json::from_slice(&stored).map_err(|source| {
            ConflictableTransactionError::Abort(StoreError::Corrupt {
                what: "record",
                key: key_text(key),
                source,
            })
        })?;
        Ok(head.revision)
    }

    /// Commits `decisions` in order, [`GROUP`] certificates per transaction. A group that
    /// cannot commit whole (a conflict, an encoding error) is committed again one decision per
    /// transaction, so every decision before the failing one is committed, as if each had had
    /// its own transaction, and the error is the failing decision's.
    fn commit_in_groups(&self, decisions: &[Decision]) -> Result<Vec<OutboxId>, StoreError> {
        let mut ids = Vec::new();
        let mut group: Vec<Prepared<'_>> = Vec::new();
        let mut bytes = 0;
        for decision in decisions.iter().filter(|d| !d.stale) {
            let prepared = match Prepared::new(decision) {
                Ok(p) => p,
                Err(e) => {
                    // The decisions before this one are committed, as one by one.
                    self.commit_group_or_each(&group)?;
                    return Err(e);
                }
            };
            bytes += prepared.value.len();
            group.push(prepared);
            if group.len() == GROUP || bytes >= GROUP_BYTES {
                ids.append(&mut self.commit_group_or_each(&group)?);
                group.clear();
                bytes = 0;
            }
        }
        if !group.is_empty() {
            ids.append(&mut self.commit_group_or_each(&group)?);
        }
        Ok(ids)
    }

    fn commit_group_or_each(&self, group: &[Prepared<'_>]) -> Result<Vec<OutboxId>, StoreError> {
        if group.is_empty() {
            return Ok(Vec::new());
        }
        match self.commit_group(group) {
            Err(StoreError::Sled(e)) => Err(StoreError::Sled(e)),
            Err(_) if group.len() > 1 => {
                let mut ids = Vec::new();
                for one in group {
                    ids.append(&mut self.commit_group(std::slice::from_ref(one))?);
                }
                Ok(ids)
            }
            other => other,
        }
    }

    /// One transaction: every record of `group`, its location and its intents, or nothing.
    fn commit_group(&self, group: &[Prepared<'_>]) -> Result<Vec<OutboxId>, StoreError> {
        let unwrap = |e: TransactionError<StoreError>| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        };
        if group.iter().all(|p| p.decision.intents.is_empty()) {
            // Most observations of a scan change no one's tickets: a transaction over the
            // records, locations and presenters is enough, and costs less than one that also
            // takes the outbox and its keys.
            return (&self.records, &self.locations, &self.presenters)
                .transaction(|(records, locations, presenters)| {
                    for p in group {
                        p.write(records, locations, presenters)?;
                    }
                    Ok(Vec::new())
                })
                .map_err(unwrap);
        }
        (
            &self.records,
            &self.locations,
            &self.presenters,
            &self.outbox,
            &self.intent_keys,
        )
            .transaction(|(records, locations, presenters, outbox, keys)| {
                let mut ids = Vec::new();
                for p in group {
                    p.write(records, locations, presenters)?;
                    ids.extend(enqueue(
                        outbox,
                        keys,
                        &p.decision.intents,
                        &p.decision.record.key.to_string(),
                    )?);
                }
                Ok(ids)
            })
            .map_err(unwrap)
    }
}

/// Certificates committed per transaction by [`Store::commit_batch`]. sled makes every
/// transaction atomic by sealing and writing its log buffer twice (two writes and two
/// `sync_file_range` calls), whatever its size: one transaction per certificate spends most
/// of a scan's time there. A group is atomic as a whole, which includes each certificate's
/// record and intents being atomic together.
const GROUP: usize = 256;
/// ... and at most about this many bytes of records, so a group of large records stays small.
const GROUP_BYTES: usize = 1 << 20;

/// A decision encoded for the store, outside any transaction (sled may run a transaction's
/// closure more than once).
struct Prepared<'a> {
    decision: &'a Decision,
    key: Vec<u8>,
    value: Vec<u8>,
    location: [u8; LOCATION_LEN],
}

impl<'a> Prepared<'a> {
    fn new(decision: &'a Decision) -> Result<Prepared<'a>, StoreError> {
        let rec = &decision.record;
        Ok(Prepared {
            decision,
            key: record_key(&rec.key),
            value: serde_json::to_vec(rec).map_err(|source| StoreError::Encode {
                certificate: rec.key.to_string(),
                source,
            })?,
            location: location_value(
                matches!(rec.state, CertState::Deleted),
                rec.last_observed_at,
                rec.revision,
            ),
        })
    }

    /// Checks that the stored record is still the one the decision was made from (its
    /// revision one less than the decision's: a compare-and-swap), then writes the record, its
    /// location, and an entry in `presenters` for each stage presenting it.
    fn write(
        &self,
        records: &TransactionalTree,
        locations: &TransactionalTree,
        presenters: &TransactionalTree,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        let decided_from = self.decision.record.revision.saturating_sub(1);
        let stored = SledStore::stored_revision(records, locations, &self.key)?;
        if stored != decided_from {
            return Err(ConflictableTransactionError::Abort(StoreError::Conflict {
                certificate: self.decision.record.key.to_string(),
                stored,
                decided_from,
            }));
        }
        records.insert(self.key.as_slice(), self.value.as_slice())?;
        locations.insert(self.key.as_slice(), &self.location)?;
        let id = &self.decision.record.key.id;
        for user in &self.decision.record.users {
            // Most commits (a re-scan) find the entry there: a read, not a log write.
            let key = presenter_key(&user.stage, id);
            if presenters.get(&key)?.is_none() {
                presenters.insert(key, &[])?;
            }
        }
        Ok(())
    }
}

fn note_key(backend: &str, key: &str) -> Vec<u8> {
    let mut k = backend.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn unwrap_transaction(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<OutboxEntry, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt {
        what: "outbox entry",
        key: decode_id(key).to_string(),
        source,
    })
}

fn encode_entry(entry: &OutboxEntry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(entry).map_err(|source| StoreError::Encode {
        certificate: entry.intent.certificate.to_string(),
        source,
    })
}

fn decode_target(key: &[u8], value: &[u8]) -> Result<TargetHealth, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt {
        what: "target health",
        key: key_text(key),
        source,
    })
}

/// Enqueues each intent whose idempotency key is new, inside a transaction; `whose` names
/// what they are about, for an encoding error.
fn enqueue(
    outbox: &TransactionalTree,
    keys: &TransactionalTree,
    intents: &[Intent],
    whose: &str,
) -> Result<Vec<OutboxId>, ConflictableTransactionError<StoreError>> {
    let mut ids = Vec::new();
    for intent in intents {
        if keys.get(intent.key.as_bytes())?.is_some() {
            continue;
        }
        let id = outbox.generate_id()?;
        let entry = OutboxEntry {
            id,
            intent: intent.clone(),
            deliveries: Default::default(),
            completed_at: None,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|source| {
            ConflictableTransactionError::Abort(StoreError::Encode {
                certificate: whose.to_string(),
                source,
            })
        })?;
        outbox.insert(&id.to_be_bytes(), bytes)?;
        keys.insert(intent.key.as_bytes(), &id.to_be_bytes())?;
        ids.push(id);
    }
    Ok(ids)
}

/// The fields of a stored record the store itself reads, without decoding the whole record.
#[derive(serde::Deserialize)]
struct RecordHead {
    state: CertState,
    last_observed_at: DateTime<Utc>,
    #[serde(default = "revision_before_revisions")]
    revision: u64,
}

fn revision_before_revisions() -> u64 {
    1
}

impl Store for SledStore {
    fn load(&self, key: &CertificateKey) -> Result<Option<CertificateRecord>, StoreError> {
        match self.records.get(record_key(key))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    what: "record",
                    key: key.to_string(),
                    source,
                }),
        }
    }

    fn commit(&self, decision: &Decision) -> Result<Vec<OutboxId>, StoreError> {
        let ids = self.commit_in_groups(std::slice::from_ref(decision))?;
        self.flush()?;
        Ok(ids)
    }

    fn commit_batch(&self, decisions: &[Decision]) -> Result<Vec<OutboxId>, StoreError> {
        match self.commit_in_groups(decisions) {
            Ok(ids) => {
                self.flush()?;
                Ok(ids)
            }
            Err(e) => {
                // What was committed before the error is made durable too.
                self.flush()?;
                Err(e)
            }
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn records(&self) -> Box<dyn Iterator<Item = Result<CertificateRecord, StoreError>> + '_> {
        Box::new(self.records.iter().map(|item| {
            let (k, v) = item?;
            serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                what: "record",
                key: key_text(&k),
                source,
            })
        }))
    }

    fn presenters(
        &self,
        account: &str,
        region: &str,
        kind: StageKind,
        api_id: &str,
        stage_name: Option<&str>,
    ) -> Result<BTreeSet<CertificateKey>, StoreError> {
        let prefix = stage_prefix(account, region, kind, api_id, stage_name);
        let mut out = BTreeSet::new();
        for key in self.presenters.scan_prefix(&prefix).keys() {
            let key = key?;
            // The id follows the stage name's NUL (ids and names hold none).
            let rest = &key[prefix.len()..];
            let id = match stage_name {
                Some(_) => rest,
                None => rest
                    .iter()
                    .position(|b| *b == 0)
                    .map(|i| &rest[i + 1..])
                    .ok_or_else(|| StoreError::Index {
                        key: key_text(&key),
                        detail: "a presenters entry without a stage".into(),
                    })?,
            };
            out.insert(CertificateKey {
                account: account.to_string(),
                region: region.to_string(),
                id: String::from_utf8_lossy(id).into_owned(),
            });
        }
        Ok(out)
    }

    fn prune_presenter(
        &self,
        stage: &StageKey,
        certificate: &CertificateKey,
    ) -> Result<bool, StoreError> {
        #[derive(serde::Deserialize)]
        struct Users {
            users: Vec<crate::lifecycle::StageUser>,
        }
        let entry = presenter_key(stage, &certificate.id);
        let record = record_key(certificate);
        (&self.records, &self.presenters)
            .transaction(|(records, presenters)| {
                if presenters.get(&entry)?.is_none() {
                    return Ok(false);
                }
                if let Some(v) = records.get(&record)? {
                    let named: Users = serde_json::from_slice(&v).map_err(|source| {
                        ConflictableTransactionError::Abort(StoreError::Corrupt {
                            what: "record",
                            key: certificate.to_string(),
                            source,
                        })
                    })?;
                    if named.users.iter().any(|u| &u.stage == stage) {
                        return Ok(false);
                    }
                }
                presenters.remove(entry.as_slice())?;
                Ok(true)
            })
            .map_err(unwrap_transaction)
    }

    fn keys_in(
        &self,
        account: &str,
        region: &str,
    ) -> Result<Vec<(CertificateKey, bool)>, StoreError> {
        let prefix = region_prefix(account, region);
        let mut keys = Vec::new();
        for item in self.locations.scan_prefix(&prefix) {
            let (k, v) = item?;
            let malformed = |detail: &str| StoreError::Index {
                key: key_text(&k),
                detail: detail.to_string(),
            };
            let deleted = decode_location(&v)
                .ok_or_else(|| malformed("bad value"))?
                .deleted;
            let id = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| malformed("the id is not UTF-8"))?;
            keys.push((
                CertificateKey {
                    account: account.to_string(),
                    region: region.to_string(),
                    id: id.to_string(),
                },
                deleted,
            ));
        }
        Ok(keys)
    }

    fn regions(&self) -> Result<Vec<StoredRegion>, StoreError> {
        let mut regions: Vec<StoredRegion> = Vec::new();
        for item in self.locations.iter() {
            let (k, v) = item?;
            let malformed = |detail: &str| StoreError::Index {
                key: key_text(&k),
                detail: detail.to_string(),
            };
            let Location {
                deleted,
                last_observed_at: observed,
                ..
            } = decode_location(&v).ok_or_else(|| malformed("bad value"))?;
            let mut parts = k.splitn(3, |b| *b == 0);
            let (Some(account), Some(region), Some(_)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed("not account/region/id"));
            };
            let text = |b: &[u8]| {
                std::str::from_utf8(b)
                    .map(str::to_string)
                    .map_err(|_| malformed("not UTF-8"))
            };
            let (account, region) = (text(account)?, text(region)?);
            // Keys are sorted: one account and region's entries are contiguous.
            match regions.last_mut() {
                Some(r) if r.account == account && r.region == region => {
                    r.certificates += usize::from(!deleted);
                    r.last_observed_at = r.last_observed_at.max(observed);
                }
                _ => regions.push(StoredRegion {
                    account,
                    region,
                    certificates: usize::from(!deleted),
                    last_observed_at: observed,
                }),
            }
        }
        Ok(regions)
    }

    fn forget(&self, account: &str, region: Option<&str>) -> Result<usize, StoreError> {
        let prefix = match region {
            Some(region) => region_prefix(account, region),
            None => {
                let mut p = account.as_bytes().to_vec();
                p.push(0);
                p
            }
        };
        let mut keys: Vec<CertificateKey> = Vec::new();
        for item in self.locations.scan_prefix(&prefix) {
            let (k, _) = item?;
            let text = String::from_utf8_lossy(&k).to_string();
            let mut parts = text.splitn(3, '\0');
            if let (Some(a), Some(r), Some(id)) = (parts.next(), parts.next(), parts.next()) {
                keys.push(CertificateKey {
                    account: a.to_string(),
                    region: r.to_string(),
                    id: id.to_string(),
                });
            }
        }
        let doomed: std::collections::HashSet<&CertificateKey> = keys.iter().collect();
        let outbox_ids: Vec<sled::IVec> = self
            .outbox_pending()?
            .into_iter()
            .filter(|e| doomed.contains(&e.intent.certificate))
            .map(|e| sled::IVec::from(&e.id.to_be_bytes()))
            .collect();
        let mut intent_keys: Vec<sled::IVec> = Vec::new();
        for key in &keys {
            let prefix = crate::lifecycle::intent_key_prefix(key);
            for item in self.intent_keys.scan_prefix(prefix.as_bytes()) {
                intent_keys.push(item?.0);
            }
        }
        (
            &self.records,
            &self.locations,
            &self.outbox,
            &self.intent_keys,
        )
            .transaction(|(records, locations, outbox, index)| {
                for key in &keys {
                    records.remove(record_key(key))?;
                    locations.remove(record_key(key))?;
                }
                for id in &outbox_ids {
                    outbox.remove(id)?;
                }
                for k in &intent_keys {
                    index.remove(k)?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<std::convert::Infallible>>(
                    (),
                )
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                // Nothing in this transaction aborts.
                sled::transaction::TransactionError::Abort(never) => match never {},
            })?;
        // Its read health goes too: a region scanned again starts as never read. So do its
        // stages' entries: certificates seen again write them again.
        for tree in [&self.targets, &self.presenters] {
            let doomed: Vec<sled::IVec> =
                tree.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
            for k in doomed {
                tree.remove(k)?;
            }
        }
        self.flush()?;
        Ok(keys.len())
    }

    fn target(&self, account: &str, region: &str) -> Result<Option<TargetHealth>, StoreError> {
        let key = region_prefix(account, region);
        self.targets
            .get(&key)?
            .map(|v| decode_target(&key, &v))
            .transpose()
    }

    fn targets(&self) -> Result<Vec<TargetHealth>, StoreError> {
        self.targets
            .iter()
            .map(|item| {
                let (k, v) = item?;
                decode_target(&k, &v)
            })
            .collect()
    }

    fn commit_targets(&self, decisions: &[TargetDecision]) -> Result<Vec<OutboxId>, StoreError> {
        let mut encoded = Vec::with_capacity(decisions.len());
        for d in decisions {
            let key = region_prefix(&d.health.account, &d.health.region);
            let value = serde_json::to_vec(&d.health).map_err(|source| StoreError::Encode {
                certificate: key_text(&key),
                source,
            })?;
            encoded.push((key, value, d));
        }
        let ids = (&self.targets, &self.outbox, &self.intent_keys)
            .transaction(|(targets, outbox, keys)| {
                let mut ids = Vec::new();
                for (key, value, d) in &encoded {
                    targets.insert(key.as_slice(), value.as_slice())?;
                    ids.extend(enqueue(outbox, keys, &d.intents, &key_text(key))?);
                }
                Ok(ids)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        self.flush()?;
        Ok(ids)
    }

    fn note(&self, backend: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .notes
            .get(note_key(backend, key))?
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    fn set_note(&self, backend: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.notes
            .insert(note_key(backend, key), value.as_bytes())?;
        self.flush()
    }

    fn outbox_pending(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox
            .iter()
            .map(|item| {
                let (k, v) = item?;
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    what: "outbox entry",
                    key: decode_id(&k).to_string(),
                    source,
                })
            })
            .collect()
    }

    fn record_delivery(
        &self,
        id: OutboxId,
        backend: &str,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let key = id.to_be_bytes();
        let updated = self
            .outbox
            .transaction(|outbox| {
                let Some(bytes) = outbox.get(key)? else {
                    return Ok(false);
                };
                let mut entry =
                    decode_entry(&key, &bytes).map_err(ConflictableTransactionError::Abort)?;
                entry
                    .deliveries
                    .insert(backend.to_string(), delivery.clone());
                outbox.insert(
                    &key,
                    encode_entry(&entry).map_err(ConflictableTransactionError::Abort)?,
                )?;
                Ok(true)
            })
            .map_err(unwrap_transaction)?;
        if updated {
            self.flush()?;
        }
        Ok(())
    }

    fn complete(&self, id: OutboxId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let key = id.to_be_bytes();
        (&self.outbox, &self.delivered)
            .transaction(|(outbox, delivered)| {
                let Some(bytes) = outbox.remove(&key)? else {
                    return Ok(());
                };
                let mut entry =
                    decode_entry(&key, &bytes).map_err(ConflictableTransactionError::Abort)?;
                entry.completed_at = Some(at);
                delivered.insert(
                    &key,
                    encode_entry(&entry).map_err(ConflictableTransactionError::Abort)?,
                )?;
                Ok(())
            })
            .map_err(unwrap_transaction)?;
        self.flush()
    }

    fn delivered(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        // Ids increase in commit order; completion follows closely enough for "recent".
        self.delivered
            .iter()
            .rev()
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                decode_entry(&k, &v)
            })
            .collect()
    }

    fn retry(&self, key: &str) -> Result<bool, StoreError> {
        let Some(id) = self.intent_keys.get(key.as_bytes())? else {
            return Ok(false);
        };
        let id = decode_id(&id);
        let found = self
            .outbox
            .transaction(|outbox| {
                let k = id.to_be_bytes();
                let Some(bytes) = outbox.get(k)? else {
                    return Ok(false);
                };
                let mut entry =
                    decode_entry(&k, &bytes).map_err(ConflictableTransactionError::Abort)?;
                entry
                    .deliveries
                    .retain(|_, d| !matches!(d, Delivery::Failed { .. }));
                outbox.insert(
                    &k,
                    encode_entry(&entry).map_err(ConflictableTransactionError::Abort)?,
                )?;
                Ok(true)
            })
            .map_err(unwrap_transaction)?;
        if found {
            self.flush()?;
        }
        Ok(found)
    }

    fn export_jsonl(&self, out: &mut dyn Write) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.records.iter() {
            let (_, v) = item?;
            // Records are stored as JSON already: copied as they are, one per line.
            out.write_all(&v)?;
            out.write_all(b"\n")?;
            n += 1;
        }
        out.flush()?;
        Ok(n)
    }
}
