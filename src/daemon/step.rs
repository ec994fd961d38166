//! One step of the scan worker, public so the CLI and tests call exactly what the daemon runs:
//! scan every target, then reconcile the scan into the store on a blocking thread.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::DaemonError;
use super::reconcile::{Reconciled, reconcile_certificates, reconcile_scan, reconcile_sight};
use crate::config::{ENABLED_REGIONS, Settings};
use crate::ids::{CertificateKey, StageKey, StageKind};
use crate::inventory::call::FailureKind;
use crate::inventory::scan::{Progress, Scan, scan_all};
use crate::inventory::scan::{Readers, TargetStatus};
use crate::store::{SledStore, Store, StoreError, StoredRegion};

/// A scan and what reconciling it decided.
#[derive(Debug)]
pub struct ScanOutcome {
    /// The scan: every target; the inventories too, unless it was recorded one account and
    /// region at a time ([`scan_and_record`]), when they were dropped as they were recorded.
    pub scan: Scan,
    pub reconciled: Reconciled,
    /// Accounts and regions with certificates in the store that this scan did not cover
    /// (excluded, suspended, removed from the configuration, no longer enabled): kept as they
    /// were, reported so that nobody takes their silence for an all-clear.
    pub not_scanned: Vec<StoredRegion>,
    /// What the scan found, counted as it was recorded.
    pub tally: Tally,
}

/// The certificates a scan read, counted: for metrics, without keeping the scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub certificates: usize,
    /// Certificates by band (`unknown` when the expiry could not be read).
    pub by_band: BTreeMap<String, u64>,
    /// The earliest expiry among certificates a stage presents.
    pub nearest_in_use: Option<DateTime<Utc>>,
}

impl Tally {
    /// Counts the certificates of `scan`'s inventories.
    pub fn add(&mut self, scan: &Scan, policy: &crate::lifecycle::Policy, now: DateTime<Utc>) {
        for c in scan.certificates() {
            self.certificates += 1;
            let band = c.not_after.map_or_else(
                || "unknown".to_string(),
                |na| policy.band(na, c.in_use(), now).to_string(),
            );
            *self.by_band.entry(band).or_insert(0) += 1;
            if let (Some(na), true) = (c.not_after, c.in_use()) {
                self.nearest_in_use = Some(self.nearest_in_use.map_or(na, |n| n.min(na)));
            }
        }
    }
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

/// Runs store work on a blocking thread: it decodes and writes, and must not stall the
/// runtime. Once started it runs to its end, even if the caller's future is dropped.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DaemonError::Task(format!("the reconcile task failed: {e}")))
}

/// What targeted reads said of the stages the listings lost.
#[derive(Debug, Default)]
struct Confirmation {
    /// Stages a read found gone (their API, or the stage itself).
    gone: HashSet<StageKey>,
    /// Accounts and regions where a lost stage still exists, or could not be read: why.
    doubtful: BTreeMap<(String, String), String>,
}

/// Reads once more each stage the listings lost: one read of its API (gone: every stage of
/// it is), then, for an API still there, one read per stage.
async fn confirm_gone(
    readers: &Readers,
    doubts: &[(CertificateKey, Vec<StageKey>)],
) -> Confirmation {
    let mut apis: BTreeMap<(String, String, StageKind, String), BTreeSet<StageKey>> =
        BTreeMap::new();
    for stage in doubts.iter().flat_map(|(_, stages)| stages) {
        apis.entry((
            stage.account.clone(),
            stage.region.clone(),
            stage.kind,
            stage.api_id.clone(),
        ))
        .or_default()
        .insert(stage.clone());
    }
    let mut confirmed = Confirmation::default();
    for ((account, region, kind, api_id), stages) in apis {
        let target = (account.clone(), region.clone());
        if confirmed.doubtful.contains_key(&target) {
            continue;
        }
        let Some(plane) = readers.get(&account, &region) else {
            confirmed
                .doubtful
                .insert(target, "no reader for this account and region".into());
            continue;
        };
        match plane.api_exists(kind, &api_id).await {
            Ok(false) => {
                confirmed.gone.extend(stages);
                continue;
            }
            Ok(true) => {}
            Err(e) => {
                confirmed.doubtful.insert(target, e.to_string());
                continue;
            }
        }
        for stage in stages {
            match plane.stage_exists(&stage).await {
                Ok(false) => {
                    confirmed.gone.insert(stage);
                }
                Ok(true) => {
                    confirmed.doubtful.insert(
                        target,
                        format!("the listing lost stage {stage}, which still exists"),
                    );
                    break;
                }
                Err(e) => {
                    confirmed.doubtful.insert(target, e.to_string());
                    break;
                }
            }
        }
    }
    confirmed
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
    check_clock(settings, &scan)?;
    let mut tally = Tally::default();
    tally.add(&scan, &settings.policy, Utc::now());
    let (scan, reconciled) = record_inventories(settings, store.clone(), scan, dry_run).await?;
    record_sight(settings, store, scan, reconciled, tally, dry_run).await
}

/// Scans and records one account and region at a time, as each is read: its inventory is
/// reconciled (stages in doubt confirmed) and dropped before the next is taken, so the
/// daemon's memory does not grow with the estate. Then, as [`record_scan`], each account and
/// region's read health and what was not scanned. `stop` abandons the scan between two
/// accounts and regions: those recorded stay recorded (each whole), nothing else is decided.
/// `None` when it was abandoned. Each account and region keeps to its pace in `paces`,
/// shared with the change events' re-reads.
pub async fn scan_and_record(
    settings: &Settings,
    aws: &SdkConfig,
    store: Arc<SledStore>,
    paces: Arc<crate::inventory::call::Paces>,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Option<ScanOutcome>, DaemonError> {
    use futures::StreamExt;
    let mut whole = Scan::empty(Utc::now());
    let each = crate::inventory::scan::scan_each(
        settings,
        aws,
        Arc::new(crate::inventory::scan::NoProgress),
        paces,
    );
    // Opening accounts and listing regions is reading too: a stop abandons it.
    let (failed, mut regions) = tokio::select! {
        biased;
        _ = stop.cancelled() => return Ok(None),
        each = each => each,
    };
    whole.targets = failed;
    let mut reconciled = Reconciled {
        committed: true,
        ..Reconciled::default()
    };
    let mut tally = Tally::default();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(None),
            next = regions.next() => next,
        };
        let Some(one) = next else { break };
        let mut region = Scan::empty(whole.started_at);
        region.absorb(one);
        check_clock(settings, &region)?;
        tally.add(&region, &settings.policy, Utc::now());
        let (region, decided) = record_inventories(settings, store.clone(), region, false).await?;
        reconciled.absorb(decided);
        whole.targets.extend(region.targets);
        // Its inventory and reader are dropped here.
    }
    whole.finished_at = Utc::now();
    record_sight(settings, store, whole, reconciled, tally, false)
        .await
        .map(Some)
}

/// Observations are stamped with the local clock: one that AWS says is wrong would make
/// records from the future, and every honest scan after them stale.
fn check_clock(settings: &Settings, scan: &Scan) -> Result<(), DaemonError> {
    if let Some(skew_seconds) = scan.clock_skew_seconds()
        && skew_seconds.unsigned_abs() > settings.aws.max_clock_skew_secs
    {
        return Err(DaemonError::ClockSkew {
            skew_seconds,
            limit: settings.aws.max_clock_skew_secs,
        });
    }
    Ok(())
}

/// Reconciles the inventories of `scan` (one account and region, or all of them), confirms
/// the stages the listings lost and decides the certificates that named them.
async fn record_inventories(
    settings: &Settings,
    store: Arc<SledStore>,
    scan: Scan,
    dry_run: bool,
) -> Result<(Scan, Reconciled), DaemonError> {
    let policy = settings.policy.clone();
    let pass_store = store.clone();
    let (mut scan, reconciled) = blocking(move || {
        let reconciled = reconcile_scan(pass_store.as_ref(), &scan, &policy, Utc::now(), dry_run);
        (scan, reconciled)
    })
    .await?;
    let mut reconciled = reconciled?;

    // Stages the listings lost: confirmed gone by a targeted read, the certificates that
    // named them are decided; otherwise their account and region is in doubt, fails, and
    // nothing of those certificates is decided.
    let doubts = std::mem::take(&mut reconciled.in_doubt);
    if !doubts.is_empty() {
        let confirmed = confirm_gone(&scan.readers, &doubts).await;
        for target in &mut scan.targets {
            if let Some(reason) = confirmed
                .doubtful
                .get(&(target.account.clone(), target.region.clone()))
            {
                tracing::warn!(account = %target.account, region = %target.region, %reason, "account and region in doubt: nothing that depends on it is decided");
                target.status = TargetStatus::Failed {
                    reason_kind: FailureKind::Inconsistent,
                    error: reason.clone(),
                };
            }
            if let Some(plane) = scan.readers.get(&target.account, &target.region) {
                target.calls = plane.calls();
                target.call_outcomes = plane.call_outcomes();
            }
        }
        let region_of = |k: &CertificateKey| (k.account.clone(), k.region.clone());
        let (decidable, undecided): (Vec<_>, Vec<_>) = doubts
            .into_iter()
            .partition(|(k, _)| !confirmed.doubtful.contains_key(&region_of(k)));
        let only: HashSet<CertificateKey> = decidable.into_iter().map(|(k, _)| k).collect();
        let gone = confirmed.gone;
        let policy = settings.policy.clone();
        let pass_store = store.clone();
        let (returned, second) = blocking(move || {
            let second = reconcile_certificates(
                pass_store.as_ref(),
                &scan,
                &policy,
                Utc::now(),
                dry_run,
                &only,
                &gone,
            );
            (scan, second)
        })
        .await?;
        scan = returned;
        reconciled.absorb(second?);
        reconciled.in_doubt.extend(undecided);
    }
    Ok((scan, reconciled))
}

/// What the targets of `scan` say of sight (each account and region's read health, the
/// unconfirmed decisions of those that could not be read) and what was not scanned at all.
async fn record_sight(
    settings: &Settings,
    store: Arc<SledStore>,
    scan: Scan,
    mut reconciled: Reconciled,
    tally: Tally,
    dry_run: bool,
) -> Result<ScanOutcome, DaemonError> {
    let policy = settings.policy.clone();
    let report_store = store.clone();
    let (scan, sight, not_scanned) = blocking(move || {
        let sight = reconcile_sight(report_store.as_ref(), &scan, &policy, Utc::now(), dry_run);
        let not_scanned = not_scanned(report_store.as_ref(), &scan);
        (scan, sight, not_scanned)
    })
    .await?;
    reconciled.absorb(sight?);
    let not_scanned = not_scanned?;
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
        tally,
    })
}
