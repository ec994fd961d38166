//! The full scan: for each account and region, list every client certificate, every REST API
//! and its stages, every WebSocket API and its stages, read each ACM certificate a stage names,
//! and join stages to certificates. The number of control-plane calls is the floor:
//! max(1, ceil(C/500)) + max(1, ceil(A/500)) + A + max(1, ceil((W+H)/500)) + W, plus one DescribeCertificate per
//! distinct ACM certificate.
//!
//! Isolation: each account and region is scanned on its own; one that fails is reported as
//! incomplete with its reason and yields no inventory, so nothing downstream can mistake what
//! it failed to read for something that is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use super::aws::{self, AccountFailure, AccountSession};
use super::call::{CallError, CallGate, FailureKind, Pace, Paces};
use super::control_plane::{AcmFacts, ControlPlane};
use super::model::{
    Api, Certificate, CertificateKind, DanglingReference, ExpirySource, RawCertificate,
    RegionInventory, Stage, StageUse, TagLevel,
};
use super::owner::OwnershipRules;
use super::pem::{Expiry, effective_expiry};
use crate::config::{AccountSettings, Discovery, ENABLED_REGIONS, Settings};
use crate::ids::{CertificateKey, StageKind, arn_region, is_acm_arn};

/// Receives progress of a long scan (the CLI draws a bar on a terminal).
pub trait Progress: Send + Sync {
    /// More reads became known (APIs whose stages must be read).
    fn add_work(&self, n: u64);
    /// Reads finished.
    fn work_done(&self, n: u64);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn add_work(&self, _: u64) {}
    fn work_done(&self, _: u64) {}
}

/// Whether one account and region was read in full.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TargetStatus {
    Complete,
    Failed {
        /// denied, throttled, unavailable, rejected, or unreachable (the account).
        reason_kind: FailureKind,
        error: String,
    },
}

/// One account and region's result.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub account: String,
    pub account_name: Option<String>,
    pub region: String,
    #[serde(flatten)]
    pub status: TargetStatus,
    /// Requests sent per operation, retries included.
    pub calls: BTreeMap<String, u64>,
    /// The same requests by (operation, outcome), for metrics.
    #[serde(skip)]
    pub call_outcomes: BTreeMap<(String, String), u64>,
    pub counts: TargetCounts,
    /// The local clock minus the service's (`Date` of its answers), seconds, at its largest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetCounts {
    pub certificates: usize,
    pub rest_apis: usize,
    pub websocket_apis: usize,
    pub http_apis: usize,
    pub stages: usize,
    pub acm_certificates: usize,
}

/// A whole scan.
#[derive(Debug, Clone)]
pub struct Scan {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub targets: Vec<TargetReport>,
    /// Inventories of the complete targets only, in target order.
    pub inventories: Vec<RegionInventory>,
    /// The readers of the complete targets, for the targeted reads that settle what the
    /// listings left in doubt.
    pub readers: Readers,
}

/// The control plane of each complete account and region of a scan, by (account, region).
/// Not data: kept so that a stage a listing lost can be read once more, with the same
/// credentials, rate limit and call counter.
#[derive(Clone, Default)]
pub struct Readers(BTreeMap<(String, String), Arc<ControlPlane>>);

impl Readers {
    pub fn get(&self, account: &str, region: &str) -> Option<&Arc<ControlPlane>> {
        self.0.get(&(account.to_string(), region.to_string()))
    }
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Scan {
    /// A scan started at `started_at` holding nothing yet.
    pub fn empty(started_at: DateTime<Utc>) -> Scan {
        Scan {
            started_at,
            finished_at: started_at,
            targets: Vec::new(),
            inventories: Vec::new(),
            readers: Readers::default(),
        }
    }

    /// Adds one account and region's scan.
    pub fn absorb(&mut self, (report, complete): TargetScan) {
        if let Some((inventory, plane)) = complete {
            self.readers
                .0
                .insert((report.account.clone(), report.region.clone()), plane);
            self.inventories.push(inventory);
        }
        self.targets.push(report);
        self.finished_at = Utc::now();
    }

    pub fn complete(&self) -> bool {
        self.targets
            .iter()
            .all(|t| matches!(t.status, TargetStatus::Complete))
    }

    pub fn certificates(&self) -> impl Iterator<Item = &Certificate> {
        self.inventories.iter().flat_map(|i| i.certificates.iter())
    }

    pub fn dangling(&self) -> impl Iterator<Item = &DanglingReference> {
        self.inventories.iter().flat_map(|i| i.dangling.iter())
    }

    /// The largest difference between the local clock and AWS's seen in this scan, seconds
    /// (positive: the local clock is ahead).
    pub fn clock_skew_seconds(&self) -> Option<i64> {
        self.targets
            .iter()
            .filter_map(|t| t.clock_skew_seconds)
            .max_by_key(|s| s.abs())
    }
}

/// Scans every configured account and region, reaching AWS through `base` (the ambient SDK
/// configuration, [`aws::base_config`]). Accounts that cannot be opened and regions that fail
/// are reported in `targets`; the rest are scanned regardless.
///
/// The daemon spawns this future, so it must be provably `Send`: the streams inside map owned
/// items (or indices), never borrowed ones, which rustc cannot prove `Send` for every lifetime
/// (rust-lang/rust#102211).
pub async fn scan_all(settings: &Settings, base: &SdkConfig, progress: Arc<dyn Progress>) -> Scan {
    let mut scan = Scan::empty(Utc::now());
    let work = targets_to_scan(settings, base, &mut scan.targets).await;
    let paces = Paces::default();
    // In target order, so that reports read the same from one scan to the next.
    let results: Vec<TargetScan> = stream::iter(work)
        .map(|(session, region)| {
            let pace = paces.of(&session.id, &region, &settings.aws.rate_limit);
            scan_target(settings, session, region, pace, progress.clone())
        })
        .buffered(settings.aws.parallel_targets)
        .collect()
        .await;
    for one in results {
        scan.absorb(one);
    }
    scan
}

/// Every account (opened) and region to read; those that cannot be are reported in `failed`.
async fn targets_to_scan(
    settings: &Settings,
    base: &SdkConfig,
    failed: &mut Vec<TargetReport>,
) -> Vec<(AccountSession, String)> {
    let opened = open_accounts(settings, base, failed).await;
    regions_of(settings, opened, failed).await
}

/// One account and region's scan: its report, and what it holds when it was read in full.
pub type TargetScan = (TargetReport, Option<ReadTarget>);

/// Scans as [`scan_all`] does, but hands over each account and region as soon as it is read
/// (in no particular order), so a caller can reconcile and drop it before the next: a large
/// estate is never held whole in memory. Returns the targets that failed before any read
/// (accounts that could not be opened, an organization that could not be listed), and the
/// stream of the others. Each account and region keeps to its pace in `paces`, which other
/// readers of the same process (change events) share.
pub async fn scan_each<'a>(
    settings: &'a Settings,
    base: &SdkConfig,
    progress: Arc<dyn Progress>,
    paces: Arc<Paces>,
) -> (
    Vec<TargetReport>,
    futures::stream::BoxStream<'a, TargetScan>,
) {
    let mut failed = Vec::new();
    let work = targets_to_scan(settings, base, &mut failed).await;
    let regions = stream::iter(work)
        .map(move |(session, region)| {
            let pace = paces.of(&session.id, &region, &settings.aws.rate_limit);
            scan_target(settings, session, region, pace, progress.clone())
        })
        .buffer_unordered(settings.aws.parallel_targets)
        .boxed();
    (failed, regions)
}

/// The report of a target that could not be reached at all.
fn unreachable(account: &str, name: Option<String>, region: &str, reason: String) -> TargetReport {
    TargetReport {
        account: account.to_string(),
        account_name: name,
        region: region.to_string(),
        status: TargetStatus::Failed {
            reason_kind: FailureKind::Unreachable,
            error: reason,
        },
        calls: BTreeMap::new(),
        call_outcomes: BTreeMap::new(),
        counts: TargetCounts::default(),
        clock_skew_seconds: None,
    }
}

/// Which accounts, opened: the configured list, the ambient account, or the organization's.
/// A failed organization listing is reported in `targets` and scans nothing.
async fn open_accounts(
    settings: &Settings,
    base: &SdkConfig,
    targets: &mut Vec<TargetReport>,
) -> Vec<Result<AccountSession, AccountFailure>> {
    let accounts: Vec<AccountSettings> = match settings.aws.accounts.discover {
        Discovery::List if settings.aws.accounts.list.is_empty() => {
            return vec![aws::open_ambient(base).await];
        }
        Discovery::List => settings.aws.accounts.list.clone(),
        Discovery::Organization => {
            let gate = CallGate::new(&settings.aws.rate_limit, &settings.aws.retry);
            match aws::discover_organization(base, &gate, &settings.aws.accounts).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, "organization discovery failed");
                    targets.push(unreachable(
                        "organization",
                        None,
                        "*",
                        format!("could not list the organization's accounts: {e}"),
                    ));
                    Vec::new()
                }
            }
        }
    };
    let session_name = settings.aws.role_session_name.as_str();
    stream::iter(accounts)
        .map(|a| async move { aws::open_account(base, &a, session_name).await })
        .buffered(settings.aws.parallel_targets)
        .collect()
        .await
}

/// Each opened account with each of its regions: the configured list, or the regions enabled
/// for it. Accounts that could not be opened are reported in `targets`, once per region.
async fn regions_of(
    settings: &Settings,
    opened: Vec<Result<AccountSession, AccountFailure>>,
    targets: &mut Vec<TargetReport>,
) -> Vec<(AccountSession, String)> {
    let mut work = Vec::new();
    let discover_regions = settings.aws.regions.iter().any(|r| r == ENABLED_REGIONS);
    for account in opened {
        let session = match account {
            Ok(session) => session,
            Err(failure) => {
                tracing::warn!(account = %failure.id, reason = %failure.reason, "account skipped");
                for region in &settings.aws.regions {
                    targets.push(unreachable(
                        &failure.id,
                        failure.name.clone(),
                        region,
                        failure.reason.clone(),
                    ));
                }
                continue;
            }
        };
        let regions = if discover_regions {
            let gate = CallGate::new(&settings.aws.rate_limit, &settings.aws.retry);
            match aws::enabled_regions(&session, &gate).await {
                Ok(regions) => regions,
                Err(e) => {
                    targets.push(unreachable(
                        &session.id,
                        session.name.clone(),
                        ENABLED_REGIONS,
                        format!("could not list the account's enabled regions: {e}"),
                    ));
                    continue;
                }
            }
        } else {
            settings.aws.regions.clone()
        };
        work.extend(regions.into_iter().map(|r| (session.clone(), r)));
    }
    work
}

/// A complete account and region: what it holds, and the reader that read it.
pub type ReadTarget = (RegionInventory, Arc<ControlPlane>);

/// Scans one account and region with its own call gate; a failure is reported, not raised.
async fn scan_target(
    settings: &Settings,
    session: AccountSession,
    region: String,
    pace: Arc<Pace>,
    progress: Arc<dyn Progress>,
) -> (TargetReport, Option<ReadTarget>) {
    let sdk = aws::in_region(&session.sdk, &region);
    let gate = CallGate::paced(pace, &settings.aws.retry);
    let plane = Arc::new(ControlPlane::new(&session.id, &region, &sdk, gate));
    let rules = OwnershipRules::new(&settings.ownership);
    // A target that keeps answering slowly (or throttling for ever) must not hold the scan
    // hostage: past its deadline it fails, and the scan is partial.
    let deadline = Duration::from_secs(settings.aws.target_deadline_secs);
    let outcome = match tokio::time::timeout(
        deadline,
        scan_region(&plane, &rules, progress.as_ref()),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(CallError::Failed {
            operation: "scan",
            kind: FailureKind::TimedOut,
            attempts: 0,
            message: format!(
                "not read within aws.target_deadline_secs ({}s)",
                deadline.as_secs()
            ),
        }),
    };
    let report = |status, counts| TargetReport {
        account: session.id.clone(),
        account_name: session.name.clone(),
        region: region.clone(),
        status,
        calls: plane.calls(),
        call_outcomes: plane.call_outcomes(),
        counts,
        clock_skew_seconds: plane.clock_skew_seconds(),
    };
    match outcome {
        Ok((inventory, counts)) => (
            report(TargetStatus::Complete, counts),
            Some((inventory, plane.clone())),
        ),
        Err(e) => {
            tracing::warn!(account = %session.id, %region, error = %e, "region scan incomplete");
            let status = TargetStatus::Failed {
                // A NotFound here is a listing's own failure.
                reason_kind: e.kind().unwrap_or(FailureKind::Rejected),
                error: e.to_string(),
            };
            (report(status, TargetCounts::default()), None)
        }
    }
}

/// Reads one account and region completely, or fails.
pub async fn scan_region(
    plane: &ControlPlane,
    rules: &OwnershipRules,
    progress: &dyn Progress,
) -> Result<(RegionInventory, TargetCounts), CallError> {
    // The three listings are independent; stage reads fan out as soon as their listing is in.
    let rest = async {
        let apis = plane.list_rest_apis().await?;
        progress.add_work(apis.len() as u64);
        let stages = read_stages(
            &apis,
            |api| stages_unless_gone(plane, api, plane.rest_stages(api)),
            progress,
        )
        .await?;
        Ok::<_, CallError>((apis, stages))
    };
    let websocket = async {
        let listing = plane.list_v2_apis().await?;
        progress.add_work(listing.websocket.len() as u64);
        let stages = read_stages(
            &listing.websocket,
            |api| stages_unless_gone(plane, api, plane.websocket_stages(api)),
            progress,
        )
        .await?;
        Ok::<_, CallError>((listing, stages))
    };
    // Reading PEMs is CPU work: done on a blocking thread while the stage reads go on.
    let certificates = async {
        let listed = plane.list_certificates().await?;
        let read = tokio::task::spawn_blocking(move || {
            listed
                .into_iter()
                .map(ReadCertificate::new)
                .collect::<Vec<_>>()
        })
        .await
        .expect("reading PEMs does not panic");
        Ok::<_, CallError>(read)
    };
    let (certificates, (rest_apis, rest_stages), (v2, ws_stages)) =
        tokio::try_join!(certificates, rest, websocket)?;

    let mut counts = TargetCounts {
        certificates: certificates.len(),
        rest_apis: rest_apis.len(),
        websocket_apis: v2.websocket.len(),
        http_apis: v2.http_skipped,
        ..TargetCounts::default()
    };
    let apis: HashMap<(StageKind, &str), &Api> = rest_apis
        .iter()
        .chain(v2.websocket.iter())
        .map(|a| ((a.kind, a.id.as_str()), a))
        .collect();
    let stages: Vec<Stage> = rest_stages.into_iter().chain(ws_stages).collect();
    counts.stages = stages.len();

    let mut inventory = join(plane, rules, certificates, &apis, stages, &BTreeSet::new()).await?;
    counts.acm_certificates = inventory
        .certificates
        .iter()
        .filter(|c| matches!(c.kind, CertificateKind::Acm { .. }))
        .count();
    inventory.certificates.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((inventory, counts))
}

/// The stages of `api` as `read` gives them, or `None` when the API is confirmed gone. The
/// listing just named it, so a NotFound for its stages is checked with one read of the API
/// itself: gone, it was deleted in between; still there, the answers contradict each other and
/// the account and region fails rather than lose the API's stages.
async fn stages_unless_gone(
    plane: &ControlPlane,
    api: &Api,
    read: impl std::future::Future<Output = Result<Option<Vec<Stage>>, CallError>>,
) -> Result<Option<Vec<Stage>>, CallError> {
    match read.await? {
        Some(stages) => Ok(Some(stages)),
        None if plane.api_exists(api.kind, &api.id).await? => Err(CallError::Failed {
            operation: "GetStages",
            kind: FailureKind::Inconsistent,
            attempts: 1,
            message: format!(
                "the {} API {} was listed and still exists, but its stages were answered NotFound",
                api.kind, api.id
            ),
        }),
        None => Ok(None),
    }
}

/// A listed certificate with its PEM read.
pub(super) struct ReadCertificate {
    raw: RawCertificate,
    expiry: Expiry,
}

impl ReadCertificate {
    pub(super) fn new(raw: RawCertificate) -> Self {
        let expiry = effective_expiry(raw.expiration_date, raw.pem.as_deref());
        ReadCertificate { raw, expiry }
    }
}

/// Reads the stages of each API with the gate's concurrency; an API deleted since it was
/// listed has no stages.
async fn read_stages<'a, F, Fut>(
    apis: &'a [Api],
    read: F,
    progress: &dyn Progress,
) -> Result<Vec<Stage>, CallError>
where
    F: Fn(&'a Api) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Vec<Stage>>, CallError>>,
{
    // The gate bounds what is really in flight; this only bounds futures held in memory.
    let per_api: Vec<Option<Vec<Stage>>> = stream::iter(0..apis.len())
        .map(|i| {
            let fut = read(&apis[i]);
            async move {
                let r = fut.await;
                progress.work_done(1);
                r
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    Ok(per_api.into_iter().flatten().flatten().collect())
}

/// Joins stages to certificates, reading what the listings could not have known: certificates
/// created after the listing, and ACM certificates (those the stages name, and `also_acm`).
pub(super) async fn join(
    plane: &ControlPlane,
    rules: &OwnershipRules,
    listed: Vec<ReadCertificate>,
    apis: &HashMap<(StageKind, &str), &Api>,
    stages: Vec<Stage>,
    also_acm: &BTreeSet<&str>,
) -> Result<RegionInventory, CallError> {
    let mut generated: BTreeMap<String, ReadCertificate> =
        listed.into_iter().map(|c| (c.raw.id.clone(), c)).collect();
    let referenced: BTreeSet<&str> = stages
        .iter()
        .filter_map(|s| s.certificate_ref.as_deref())
        .collect();
    read_unlisted(plane, &referenced, &mut generated).await?;
    let acm = read_acm(plane, &referenced.union(also_acm).copied().collect()).await?;

    let empty = BTreeMap::new();
    let mut uses: BTreeMap<String, Vec<StageUse>> = BTreeMap::new();
    let mut dangling = Vec::new();
    // A stage that presents a certificate lives on in that certificate's `used_by`; only the
    // others are kept apart, so the inventory does not hold every stage twice.
    let mut others = Vec::new();
    for stage in stages {
        let Some(reference) = stage.certificate_ref.clone() else {
            others.push(stage);
            continue;
        };
        let api_tags = apis
            .get(&(stage.key.kind, stage.key.api_id.as_str()))
            .map(|a| &a.tags)
            .unwrap_or(&empty);
        let cert_tags = generated
            .get(&reference)
            .map(|c| &c.raw.tags)
            .unwrap_or(&empty);
        let owner = rules.owner(&stage.tags, api_tags, cert_tags);
        let partner = rules.partner(&stage.tags, api_tags);
        match resolve(plane, &reference, &generated, &acm) {
            Ok(()) => uses.entry(reference).or_default().push(StageUse {
                stage: stage.key,
                api_name: stage.api_name,
                owner,
                partner,
            }),
            Err(reason) => {
                dangling.push(DanglingReference {
                    stage: StageUse {
                        stage: stage.key.clone(),
                        api_name: stage.api_name.clone(),
                        owner,
                        partner,
                    },
                    certificate_ref: reference,
                    reason,
                });
                others.push(stage);
            }
        }
    }

    let key = |id: &str| CertificateKey {
        account: plane.account.clone(),
        region: plane.region.clone(),
        id: id.to_string(),
    };
    let mut certificates: Vec<Certificate> = generated
        .into_values()
        .map(|c| {
            let used_by = uses.remove(&c.raw.id).unwrap_or_default();
            generated_certificate(key(&c.raw.id), c, rules, used_by)
        })
        .collect();
    for (arn, facts) in acm {
        let Some(facts) = facts else { continue };
        let used_by = uses.remove(&arn).unwrap_or_default();
        certificates.push(acm_certificate(key(&arn), facts, used_by));
    }
    Ok(RegionInventory {
        account: plane.account.clone(),
        region: plane.region.clone(),
        certificates,
        stages: others,
        dangling,
    })
}

/// A stage may name a certificate generated after the certificate listing: read it once
/// rather than call it dangling.
async fn read_unlisted(
    plane: &ControlPlane,
    referenced: &BTreeSet<&str>,
    generated: &mut BTreeMap<String, ReadCertificate>,
) -> Result<(), CallError> {
    let unlisted: Vec<&str> = referenced
        .iter()
        .copied()
        .filter(|r| !is_acm_arn(r) && !generated.contains_key(*r))
        .collect();
    for id in unlisted {
        if let Some(c) = plane.certificate(id).await? {
            generated.insert(c.id.clone(), ReadCertificate::new(c));
        }
    }
    Ok(())
}

/// Every ACM certificate of this region a stage names, read once; `None` when ACM has none.
async fn read_acm(
    plane: &ControlPlane,
    referenced: &BTreeSet<&str>,
) -> Result<HashMap<String, Option<AcmFacts>>, CallError> {
    let arns: Vec<String> = referenced
        .iter()
        .filter(|r| is_acm_arn(r) && arn_region(r) == Some(plane.region.as_str()))
        .map(|r| r.to_string())
        .collect();
    stream::iter(arns)
        .map(|arn| async move { plane.acm_certificate(&arn).await.map(|f| (arn, f)) })
        .buffer_unordered(8)
        .try_collect()
        .await
}

/// Whether a stage's reference names a certificate that was read; why not, otherwise.
fn resolve(
    plane: &ControlPlane,
    reference: &str,
    generated: &BTreeMap<String, ReadCertificate>,
    acm: &HashMap<String, Option<AcmFacts>>,
) -> Result<(), String> {
    if !is_acm_arn(reference) {
        return if generated.contains_key(reference) {
            Ok(())
        } else {
            Err("API Gateway has no client certificate with this id (deleted?)".to_string())
        };
    }
    match arn_region(reference) {
        Some(r) if r != plane.region => Err(format!(
            "the ACM certificate is in region {r}, but the stage is in {}: API Gateway cannot present it",
            plane.region
        )),
        None => Err("the ACM ARN is malformed".to_string()),
        Some(_) => match acm.get(reference) {
            Some(Some(_)) => Ok(()),
            _ => Err("ACM has no such certificate (deleted?)".to_string()),
        },
    }
}

fn generated_certificate(
    key: CertificateKey,
    ReadCertificate { raw: c, expiry }: ReadCertificate,
    rules: &OwnershipRules,
    used_by: Vec<StageUse>,
) -> Certificate {
    Certificate {
        key,
        kind: CertificateKind::Generated,
        description: c.description,
        created_at: c.created_at,
        not_after: expiry.not_after,
        not_after_source: expiry.source,
        fingerprint_sha256: expiry.fingerprint_sha256,
        warnings: expiry.warnings,
        certificate_owner: rules.owner_at(TagLevel::Certificate, &c.tags),
        // Only a successor's certificate is kept: the partners of the one it replaces get it.
        pem: rules.successor_of(&c.tags).and(c.pem),
        successor_of: rules.successor_of(&c.tags),
        tags: c.tags,
        used_by,
    }
}

fn acm_certificate(key: CertificateKey, facts: AcmFacts, used_by: Vec<StageUse>) -> Certificate {
    let mut warnings = Vec::new();
    if facts.not_after.is_none() {
        warnings.push("ACM returned no NotAfter: the expiry is unknown".to_string());
    }
    Certificate {
        key,
        kind: CertificateKind::Acm {
            acm_type: facts.acm_type,
            status: facts.status,
            renewal_eligible: facts.renewal_eligible,
            renewal_status: facts.renewal_status,
        },
        description: facts.domain_name,
        created_at: facts.created_at,
        not_after: facts.not_after,
        not_after_source: facts.not_after.map(|_| ExpirySource::ExpirationDate),
        fingerprint_sha256: None,
        warnings,
        tags: Default::default(),
        certificate_owner: None,
        successor_of: None,
        pem: None,
        used_by,
    }
}
