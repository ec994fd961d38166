//! One step of the scan worker, public so the CLI and tests call exactly what the daemon runs:
//! scan every target, then reconcile the scan into the store on a blocking thread.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::Utc;

use super::DaemonError;
use super::reconcile::{Reconciled, reconcile_scan};
use crate::config::{ENABLED_REGIONS, Settings};
use crate::inventory::scan::{Progress, Scan, scan_all};
use crate::store::{SledStore, Store, StoreError, StoredRegion};

/// A scan and what reconciling it decided.
#[derive(Debug)]
pub struct ScanOutcome {
    pub scan: Scan,
    pub reconciled: Reconciled,
    /// Accounts and regions with certificates in the store that this scan did not cover
    /// (excluded, suspended, removed from the configuration, no longer enabled): kept as they
    /// were, reported so that nobody takes their silence for an all-clear.
    pub not_scanned: Vec<StoredRegion>,
}

/// The stored accounts and regions with live certificates that `scan` had no target for. An
/// account whose region list could not be read, or an organization that could not be listed,
/// covers everything under it (it was tried, and failed).
pub fn not_scanned(store: &dyn Store, scan: &Scan) -> Result<Vec<StoredRegion>, StoreError> {
    let covered = |r: &StoredRegion| {
        scan.targets.iter().any(|t| {
            t.account == "organization"
                || t.account == r.account && (t.region == r.region || t.region == ENABLED_REGIONS)
        })
    };
    Ok(store
        .regions()?
        .into_iter()
        .filter(|r| r.certificates > 0 && !covered(r))
        .collect())
}

/// Opens the state database at `store.path` (created if absent).
pub fn open_store(settings: &Settings) -> Result<SledStore, StoreError> {
    SledStore::open(&settings.store.path, settings.store.cache_mb * 1024 * 1024)
}

/// The store a one-off scan decides against. A dry run reads the database without migrating
/// or writing it; against a database that does not exist yet it decides against an empty
/// scratch one, deleted on drop, and creates nothing.
pub struct ScanStore {
    pub store: Arc<SledStore>,
    _scratch: Option<tempfile::TempDir>,
}

impl ScanStore {
    pub fn open(settings: &Settings, dry_run: bool) -> Result<ScanStore, StoreError> {
        if !dry_run {
            return Ok(ScanStore {
                store: Arc::new(open_store(settings)?),
                _scratch: None,
            });
        }
        if settings.store.path.exists() {
            let store = SledStore::open_read_only(
                &settings.store.path,
                settings.store.cache_mb * 1024 * 1024,
            )?;
            return Ok(ScanStore {
                store: Arc::new(store),
                _scratch: None,
            });
        }
        let scratch = tempfile::tempdir().map_err(|source| StoreError::Open {
            path: std::env::temp_dir(),
            source: source.into(),
        })?;
        let store = SledStore::open(scratch.path(), settings.store.cache_mb * 1024 * 1024)?;
        Ok(ScanStore {
            store: Arc::new(store),
            _scratch: Some(scratch),
        })
    }
}

/// Scans, then decides every observation against `store`; commits durably unless `dry_run`.
pub async fn scan_once(
    settings: &Settings,
    aws: &SdkConfig,
    store: Arc<SledStore>,
    progress: Arc<dyn Progress>,
    dry_run: bool,
) -> Result<ScanOutcome, DaemonError> {
    let scan = scan_all(settings, aws, progress).await;
    record_scan(settings, store, scan, dry_run).await
}

/// Decides every observation of `scan` against `store` on a blocking thread, committing
/// durably unless `dry_run`. Once called it runs to its end even if the future is dropped, so
/// a commit is never cut short; reading (before it) is what may be cancelled.
pub async fn record_scan(
    settings: &Settings,
    store: Arc<SledStore>,
    scan: Scan,
    dry_run: bool,
) -> Result<ScanOutcome, DaemonError> {
    // Observations are stamped with the local clock: one that AWS says is wrong would make
    // records from the future, and every honest scan after them stale.
    if let Some(skew_seconds) = scan.clock_skew_seconds()
        && skew_seconds.unsigned_abs() > settings.aws.max_clock_skew_secs
    {
        return Err(DaemonError::ClockSkew {
            skew_seconds,
            limit: settings.aws.max_clock_skew_secs,
        });
    }
    let policy = settings.policy.clone();
    let (scan, reconciled, not_scanned) = tokio::task::spawn_blocking(move || {
        let reconciled = reconcile_scan(store.as_ref(), &scan, &policy, Utc::now(), dry_run);
        let not_scanned = not_scanned(store.as_ref(), &scan);
        (scan, reconciled, not_scanned)
    })
    .await
    .map_err(|e| DaemonError::Task(format!("the reconcile task failed: {e}")))?;
    let (reconciled, not_scanned) = (reconciled?, not_scanned?);
    for key in &reconciled.unjudged {
        tracing::warn!(certificate = %key, "expiry unknown: not judged by the lifecycle engine");
    }
    for r in &not_scanned {
        tracing::warn!(
            account = %r.account,
            region = %r.region,
            certificates = r.certificates,
            since = %r.last_observed_at,
            "not scanned any more: its certificates are kept as they were (`certsentinel state forget` drops them)"
        );
    }
    Ok(ScanOutcome {
        scan,
        reconciled,
        not_scanned,
    })
}
