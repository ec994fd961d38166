//! The sled implementation of [`Store`]: one database directory, four trees.
//!
//! - default tree: `schema_version` (u32, big-endian);
//! - `records`: `account\0region\0id` -> JSON [`CertificateRecord`] (episodes and history
//!   inside, so a certificate's whole state is one value and one write);
//! - `outbox`: outbox id (u64, big-endian, so iteration is commit order) -> JSON
//!   [`OutboxEntry`];
//! - `intent_keys`: idempotency key -> outbox id; kept after delivery so a key is enqueued at
//!   most once in the life of the database.

use std::io::Write;
use std::path::{Path, PathBuf};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{OutboxEntry, OutboxId, SCHEMA_VERSION, Store, StoreError};
use crate::lifecycle::{CertificateKey, CertificateRecord, Decision};

/// Enough for the hot part of a 100,000-certificate store while keeping the process well
/// under 64 MB resident; sled's default (1 GB) would grow with the database instead.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

const VERSION_KEY: &[u8] = b"schema_version";
const RECORDS: &str = "records";
const OUTBOX: &str = "outbox";
const INTENT_KEYS: &str = "intent_keys";

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    records: sled::Tree,
    outbox: sled::Tree,
    pub(crate) intent_keys: sled::Tree,
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

fn decode_id(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

impl SledStore {
    /// Opens (creating if needed) the database in `path`, with sled's page cache bounded to
    /// `cache_bytes`, checks its schema version and migrates an older one.
    pub fn open(path: impl AsRef<Path>, cache_bytes: u64) -> Result<SledStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
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
        let store = SledStore {
            records: db.open_tree(RECORDS)?,
            outbox: db.open_tree(OUTBOX)?,
            intent_keys: db.open_tree(INTENT_KEYS)?,
            path,
            db,
        };
        store.migrate(found.unwrap_or(SCHEMA_VERSION))?;
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

    fn commit_one(&self, decision: &Decision) -> Result<Vec<OutboxId>, StoreError> {
        if decision.stale {
            return Ok(Vec::new());
        }
        let rec = &decision.record;
        let certificate = rec.key.to_string();
        let key = record_key(&rec.key);
        // Encoded outside the transaction: sled may run the closure more than once.
        let value = serde_json::to_vec(rec).map_err(|source| StoreError::Encode {
            certificate: certificate.clone(),
            source,
        })?;
        let stale_check = |stored: Option<sled::IVec>| -> Result<(), StoreError> {
            let Some(stored) = stored else { return Ok(()) };
            let stored_at = serde_json::from_slice::<StoredAt>(&stored)
                .map_err(|source| StoreError::Corrupt {
                    what: "record",
                    key: certificate.clone(),
                    source,
                })?
                .last_observed_at;
            if stored_at > rec.last_observed_at {
                return Err(StoreError::Conflict {
                    certificate: certificate.clone(),
                    stored: stored_at,
                    decided: rec.last_observed_at,
                });
            }
            Ok(())
        };
        if decision.intents.is_empty() {
            // Most observations of a scan change no one's tickets: a one-tree transaction is
            // enough and costs less than the three-tree one.
            return self
                .records
                .transaction(|records| {
                    stale_check(records.get(&key)?).map_err(ConflictableTransactionError::Abort)?;
                    records.insert(key.as_slice(), value.as_slice())?;
                    Ok(Vec::new())
                })
                .map_err(|e| match e {
                    TransactionError::Abort(e) => e,
                    TransactionError::Storage(e) => StoreError::Sled(e),
                });
        }
        let result = (&self.records, &self.outbox, &self.intent_keys).transaction(
            |(records, outbox, keys)| {
                stale_check(records.get(&key)?).map_err(ConflictableTransactionError::Abort)?;
                records.insert(key.as_slice(), value.as_slice())?;
                let mut ids = Vec::new();
                for intent in &decision.intents {
                    if keys.get(intent.key.as_bytes())?.is_some() {
                        continue;
                    }
                    let id = outbox.generate_id()?;
                    let entry = OutboxEntry {
                        id,
                        intent: intent.clone(),
                    };
                    let bytes = serde_json::to_vec(&entry).map_err(|source| {
                        ConflictableTransactionError::Abort(StoreError::Encode {
                            certificate: certificate.clone(),
                            source,
                        })
                    })?;
                    outbox.insert(&id.to_be_bytes(), bytes)?;
                    keys.insert(intent.key.as_bytes(), &id.to_be_bytes())?;
                    ids.push(id);
                }
                Ok(ids)
            },
        );
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        })
    }
}

/// The one field the conflict check needs, without decoding a whole record.
#[derive(serde::Deserialize)]
struct StoredAt {
    last_observed_at: chrono::DateTime<chrono::Utc>,
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
        let ids = self.commit_one(decision)?;
        self.flush()?;
        Ok(ids)
    }

    fn commit_batch(&self, decisions: &[Decision]) -> Result<Vec<OutboxId>, StoreError> {
        let mut ids = Vec::new();
        for d in decisions {
            match self.commit_one(d) {
                Ok(mut more) => ids.append(&mut more),
                Err(e) => {
                    self.flush()?;
                    return Err(e);
                }
            }
        }
        self.flush()?;
        Ok(ids)
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
                key: String::from_utf8_lossy(&k).replace('\0', "/"),
                source,
            })
        }))
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

    fn mark_delivered(&self, ids: &[OutboxId]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.to_be_bytes());
        }
        self.outbox.apply_batch(batch)?;
        self.flush()
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
