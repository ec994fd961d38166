//! Rendering a scan for people (a table) and for programs (JSON). The JSON shape is a contract:
//! it is documented in README.md ("Scan output") and changes only with `schema_version`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::StageKind;
use crate::inventory::model::{Certificate, CertificateKind, ExpirySource, Owner, StageUse};
use crate::inventory::scan::{Scan, TargetReport, TargetStatus};
use crate::lifecycle::policy::{Band, Policy, days_left};
use crate::lifecycle::{
    CertState, CertificateRecord, Intent, IntentKind, PartnerEmailKind, RenewalOutlook, Resolution,
    StageUser, TargetHealth, at_risk,
};
use crate::observe::renewal_outlook;
use crate::store::{Delivery, OutboxEntry, StoredRegion};

/// Version of the JSON document below; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct ScanDocument<'a> {
    pub schema_version: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// True when every account and region was read in full.
    pub complete: bool,
    pub policy: PolicySummary,
    pub targets: &'a [TargetReport],
    pub certificates: Vec<CertificateView<'a>>,
    pub dangling: Vec<DanglingView<'a>>,
    pub summary: Summary,
    /// What the lifecycle engine decided from this scan, when it was reconciled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileView<'a>>,
    /// Accounts and regions with stored certificates that this scan did not cover: kept as
    /// they were, never taken for an all-clear.
    pub not_scanned: Vec<StoredRegion>,
}

#[derive(Debug, Serialize)]
pub struct ReconcileView<'a> {
    /// False for `--dry-run`: decided, not committed.
    pub committed: bool,
    pub observations: usize,
    pub stale_observations: usize,
    pub intents: &'a [Intent],
}

#[derive(Debug, Serialize)]
pub struct PolicySummary {
    pub window_days: u32,
    pub critical_days: u32,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub certificates: usize,
    pub by_band: BTreeMap<String, usize>,
    pub dangling_references: usize,
    pub incomplete_targets: usize,
}

#[derive(Debug, Serialize)]
pub struct CertificateView<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub id: &'a str,
    #[serde(flatten)]
    pub kind: &'a CertificateKind,
    pub description: Option<&'a str>,
    pub created_at: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub not_after_source: Option<ExpirySource>,
    pub days_left: Option<i64>,
    /// healthy, expiring, critical, expired, unused; "unknown" when no expiry could be read.
    pub band: String,
    /// For a managed ACM certificate in the window: whether people must act.
    pub at_risk_reason: Option<String>,
    pub fingerprint_sha256: Option<&'a str>,
    pub warnings: &'a [String],
    pub owners: Vec<Owner>,
    pub partners: Vec<String>,
    pub stages: Vec<StageView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct StageView<'a> {
    pub kind: StageKind,
    pub api_id: &'a str,
    pub api_name: &'a str,
    pub stage_name: &'a str,
    pub owner: Option<&'a Owner>,
    pub partner: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct DanglingView<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub certificate_ref: &'a str,
    pub reason: &'a str,
    pub stage: StageView<'a>,
}

fn stage_view(u: &StageUse) -> StageView<'_> {
    StageView {
        kind: u.stage.kind,
        api_id: &u.stage.api_id,
        api_name: &u.api_name,
        stage_name: &u.stage.stage_name,
        owner: u.owner.as_ref(),
        partner: u.partner.as_deref(),
    }
}

/// The band shown for a certificate, or "unknown" when its expiry could not be read.
pub fn band_of(c: &Certificate, policy: &Policy, now: DateTime<Utc>) -> Option<Band> {
    c.not_after.map(|na| policy.band(na, c.in_use(), now))
}

/// Why an ACM certificate presented by a stage needs people, when the engine holds it at risk;
/// `None` otherwise and for generated certificates (their band says it all).
fn acm_reason(c: &Certificate, policy: &Policy, now: DateTime<Utc>) -> Option<String> {
    let CertificateKind::Acm { acm_type, .. } = &c.kind else {
        return None;
    };
    let not_after = c.not_after?;
    let renewal = renewal_outlook(&c.kind);
    if !c.in_use() || !at_risk(policy, not_after, renewal, now) {
        return None;
    }
    Some(
        match renewal {
            RenewalOutlook::Manual if acm_type == "IMPORTED" => {
                "imported: people must import a renewed certificate"
            }
            RenewalOutlook::Manual => "not renewed by ACM: people must replace it",
            RenewalOutlook::Managed {
                renewal_failing: true,
                ..
            } => "managed renewal failed",
            RenewalOutlook::Managed {
                renewal_in_progress: true,
                ..
            } => "managed renewal still pending this close to expiry",
            RenewalOutlook::Managed { .. } => "inside the window with no renewal in progress",
        }
        .to_string(),
    )
}

pub fn document<'a>(scan: &'a Scan, policy: &Policy, now: DateTime<Utc>) -> ScanDocument<'a> {
    let mut by_band: BTreeMap<String, usize> = BTreeMap::new();
    let certificates: Vec<CertificateView<'a>> = scan
        .certificates()
        .map(|c| {
            let band = band_of(c, policy, now).map_or_else(|| "unknown".into(), |b| b.to_string());
            *by_band.entry(band.clone()).or_insert(0) += 1;
            CertificateView {
                account: &c.key.account,
                region: &c.key.region,
                id: &c.key.id,
                kind: &c.kind,
                description: c.description.as_deref(),
                created_at: c.created_at,
                not_after: c.not_after,
                not_after_source: c.not_after_source,
                days_left: c.not_after.map(|na| days_left(na, now)),
                band,
                at_risk_reason: acm_reason(c, policy, now),
                fingerprint_sha256: c.fingerprint_sha256.as_deref(),
                warnings: &c.warnings,
                owners: c.owners(),
                partners: c.partners(),
                stages: c.used_by.iter().map(stage_view).collect(),
            }
        })
        .collect();
    let dangling: Vec<DanglingView<'a>> = scan
        .dangling()
        .map(|d| DanglingView {
            account: &d.stage.stage.account,
            region: &d.stage.stage.region,
            certificate_ref: &d.certificate_ref,
            reason: &d.reason,
            stage: stage_view(&d.stage),
        })
        .collect();
    ScanDocument {
        schema_version: SCHEMA_VERSION,
        started_at: scan.started_at,
        finished_at: scan.finished_at,
        complete: scan.complete(),
        policy: PolicySummary {
            window_days: policy.window_days,
            critical_days: policy.critical_days,
        },
        targets: &scan.targets,
        summary: Summary {
            certificates: certificates.len(),
            by_band,
            dangling_references: dangling.len(),
            incomplete_targets: scan
                .targets
                .iter()
                .filter(|t| !matches!(t.status, TargetStatus::Complete))
                .count(),
        },
        certificates,
        dangling,
        reconcile: None,
        not_scanned: Vec::new(),
    }
}

fn describe_stage(s: &StageView<'_>) -> String {
    let name = if s.api_name.is_empty() {
        s.api_id
    } else {
        s.api_name
    };
    format!("{}:{}({})/{}", s.kind, name, s.api_id, s.stage_name)
}

/// A table for a terminal: the most urgent first, then warnings, dangling references, the
/// count by band and each target's status.
pub fn table(doc: &ScanDocument<'_>) -> String {
    let mut rows: Vec<&CertificateView<'_>> = doc.certificates.iter().collect();
    let urgency = |b: &str| match b {
        "expired" => 0,
        "critical" => 1,
        "expiring" => 2,
        "unknown" => 3,
        "healthy" => 4,
        _ => 5,
    };
    rows.sort_by_key(|c| (urgency(&c.band), c.days_left.unwrap_or(i64::MIN), c.id));
    let header = [
        "ACCOUNT",
        "REGION",
        "CERTIFICATE",
        "BAND",
        "NOT AFTER",
        "DAYS",
        "OWNER",
        "PARTNER",
        "STAGES",
    ];
    let mut cells: Vec<[String; 9]> = vec![header.map(str::to_string)];
    cells.extend(rows.iter().map(|c| certificate_cells(c)));
    let mut out = aligned(&cells);
    for c in rows.iter().filter(|c| !c.warnings.is_empty()) {
        for w in c.warnings {
            let _ = writeln!(out, "warning: {}/{}/{}: {w}", c.account, c.region, c.id);
        }
    }
    for d in &doc.dangling {
        let _ = writeln!(
            out,
            "dangling: {}/{} {} presents {}: {}",
            d.account,
            d.region,
            describe_stage(&d.stage),
            d.certificate_ref,
            d.reason
        );
    }
    let bands: Vec<String> = doc
        .summary
        .by_band
        .iter()
        .map(|(b, n)| format!("{n} {b}"))
        .collect();
    let _ = writeln!(
        out,
        "\n{}: {}",
        count(
            doc.summary.certificates as i64,
            "certificate",
            "certificates"
        ),
        bands.join(", ")
    );
    for t in doc.targets {
        let _ = writeln!(out, "{}", target_line(t));
    }
    for r in &doc.not_scanned {
        let _ = writeln!(out, "{}", not_scanned_line(r));
    }
    out
}

/// A stored account and region that scans no longer cover.
fn not_scanned_line(r: &StoredRegion) -> String {
    format!(
        "{}/{}: NOT SCANNED since {} ({} kept as they were; `certsentinel state forget {}/{}` drops them)",
        r.account,
        r.region,
        r.last_observed_at.format("%Y-%m-%d %H:%M UTC"),
        count(r.certificates as i64, "certificate", "certificates"),
        r.account,
        r.region
    )
}

/// The stored accounts and regions that the latest scan did not read: their latest
/// observation is older than the latest observation anywhere (one scan stamps every region
/// it reads completely with the same time).
pub fn regions_not_read_lately(regions: &[StoredRegion]) -> Vec<&StoredRegion> {
    let Some(latest) = regions.iter().map(|r| r.last_observed_at).max() else {
        return Vec::new();
    };
    regions
        .iter()
        .filter(|r| r.certificates > 0 && r.last_observed_at < latest)
        .collect()
}

/// One certificate's row of the scan table.
fn certificate_cells(c: &CertificateView<'_>) -> [String; 9] {
    let id = if c.id.len() > 40 {
        format!("…{}", &c.id[c.id.len() - 39..])
    } else {
        c.id.to_string()
    };
    let owners = if c.owners.is_empty() {
        NO_OWNER.to_string()
    } else {
        c.owners
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut band = c.band.to_string();
    if !c.warnings.is_empty() {
        band.push('!');
    }
    [
        c.account.to_string(),
        c.region.to_string(),
        id,
        band,
        c.not_after
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "?".into()),
        c.days_left
            .map(|d| d.to_string())
            .unwrap_or_else(|| "?".into()),
        owners,
        c.partners.join(", "),
        if c.stages.is_empty() {
            "-".into()
        } else {
            c.stages
                .iter()
                .map(describe_stage)
                .collect::<Vec<_>>()
                .join(" ")
        },
    ]
}

/// Rows as columns padded to their widest cell; the last column is not padded.
fn aligned<const N: usize>(cells: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{:width$}  ", cell, width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One target's status under the scan table.
fn target_line(t: &TargetReport) -> String {
    let calls: u64 = t.calls.values().sum();
    match &t.status {
        TargetStatus::Complete => format!(
            "{}/{}: complete, {} ({}, {}, {}, {}, {})",
            t.account,
            t.region,
            count(calls as i64, "API call", "API calls"),
            count(t.counts.certificates as i64, "certificate", "certificates"),
            count(t.counts.rest_apis as i64, "REST API", "REST APIs"),
            count(
                t.counts.websocket_apis as i64,
                "WebSocket API",
                "WebSocket APIs"
            ),
            count(t.counts.http_apis as i64, "HTTP API", "HTTP APIs"),
            count(t.counts.stages as i64, "stage", "stages")
        ),
        TargetStatus::Failed { reason_kind, error } => format!(
            "{}/{}: INCOMPLETE ({reason_kind}): {error}",
            t.account, t.region
        ),
    }
}

/// Stages as people find them in the console: kind, API name (id), stage.
fn stage_list(stages: &[StageUser]) -> String {
    stages
        .iter()
        .map(|u| {
            format!(
                "{}:{}({})/{}",
                u.stage.kind, u.api_name, u.stage.api_id, u.stage.stage_name
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the command line spells a missing owner, everywhere.
pub const NO_OWNER: &str = "(no owner)";

/// `n` and the noun, singular or plural: "1 day", "3 days".
pub fn count(n: impl Into<i64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// "in 3 days", "today", "1 day ago": a number of days relative to a decision.
fn days_phrase(days: i64) -> String {
    match days {
        0 => "today".to_string(),
        d if d > 0 => format!("in {}", count(d, "day", "days")),
        d => format!("{} ago", count(-d, "day", "days")),
    }
}

fn resolution_words(how: &Resolution) -> String {
    match how {
        Resolution::SwitchedTo {
            certificate,
            still_at_risk: false,
        } => format!("its stages switched to {}", certificate.id),
        Resolution::SwitchedTo {
            certificate,
            still_at_risk: true,
        } => format!(
            "its stages switched to {}, which is itself expiring",
            certificate.id
        ),
        Resolution::StageDeleted => "its stages were deleted".into(),
        Resolution::StoppedPresenting => "its stages no longer present it".into(),
        Resolution::OwnerChanged { to } => format!(
            "its stages now belong to {}",
            to.as_deref().unwrap_or(NO_OWNER)
        ),
        Resolution::CertificateDeleted => "the certificate was deleted".into(),
        Resolution::Renewed { not_after } => {
            format!("renewed, now valid until {}", not_after.format("%Y-%m-%d"))
        }
    }
}

fn partner_email_words(email: &PartnerEmailKind) -> String {
    match email {
        PartnerEmailKind::Window => "the rotation timeline".into(),
        PartnerEmailKind::Step { days_left } => format!("the {days_left}-day reminder"),
        PartnerEmailKind::CutOver { new_certificate } => format!(
            "trust the new certificate {} before the cut-over",
            new_certificate.id
        ),
        PartnerEmailKind::OldMayBeRemoved => "the old certificate may leave the trust store".into(),
        PartnerEmailKind::Successor { successor, .. } => format!(
            "trust the successor {} alongside the current certificate",
            successor.id
        ),
    }
}

/// How urgent an intent is, most urgent first: an outage, a page, an escalation, a new ticket,
/// then what only informs.
fn urgency(kind: &IntentKind) -> u8 {
    match kind {
        IntentKind::Incident { .. } => 0,
        IntentKind::TargetUnreadable { .. } => 1,
        IntentKind::Escalate { page: Some(_), .. } => 1,
        IntentKind::Escalate { .. } => 2,
        IntentKind::OpenTicket { .. } => 3,
        IntentKind::CommentBigBang { .. } => 4,
        IntentKind::AnnounceSuccessor { .. } => 4,
        IntentKind::PartnerEmail { .. } => 5,
        IntentKind::UpdateStages { .. } => 6,
        IntentKind::ResolveTicket { .. } => 7,
        IntentKind::CleanupReminder { .. } => 8,
        IntentKind::TargetReadable { .. } => 8,
    }
}

/// What an intent asks for, in words.
pub fn intent_words(intent: &Intent) -> String {
    match &intent.kind {
        IntentKind::OpenTicket {
            priority,
            not_after,
            days_left,
            stages,
        } => format!(
            "open a {priority} priority ticket: expires {} ({}), presented by {}",
            not_after.format("%Y-%m-%d"),
            days_phrase(*days_left),
            stage_list(stages)
        ),
        IntentKind::Escalate {
            step_days,
            priority,
            page,
            days_left,
        } => format!(
            "escalate to the {step_days}-day step: {priority} priority{}, {} left",
            page.map(|p| format!(", page ({p})")).unwrap_or_default(),
            count(*days_left, "day", "days")
        ),
        IntentKind::Incident { expired_at } => format!(
            "INCIDENT: expired {} ({}) while a stage still presents it",
            days_phrase(days_left(*expired_at, intent.decided_at)),
            expired_at.format("%Y-%m-%d %H:%M UTC")
        ),
        IntentKind::CommentBigBang {
            stage,
            new_certificate,
            new_certificate_age_hours,
            ..
        } => format!(
            "comment on the ticket: big-bang cut-over, {} switched to {} created {} earlier",
            stage_name(stage),
            new_certificate.id,
            count(*new_certificate_age_hours, "hour", "hours")
        ),
        IntentKind::UpdateStages { stages, .. } => {
            format!("update the ticket's stages: {}", stage_list(stages))
        }
        IntentKind::ResolveTicket { how } => {
            format!("resolve the ticket: {}", resolution_words(how))
        }
        IntentKind::PartnerEmail { partner, email, .. } => {
            format!("email partner {partner}: {}", partner_email_words(email))
        }
        IntentKind::CleanupReminder { rotated_away_since } => format!(
            "remind to delete it: no stage has presented it since {}",
            rotated_away_since.format("%Y-%m-%d")
        ),
        IntentKind::AnnounceSuccessor {
            successor,
            not_after,
            ..
        } => format!(
            "the successor {} exists{}: its certificate goes to the partners and the ticket before any stage switches",
            successor.id,
            not_after
                .map(|na| format!(" (valid until {})", na.format("%Y-%m-%d")))
                .unwrap_or_default()
        ),
        IntentKind::TargetUnreadable {
            unreadable_since,
            last_read_at,
            error,
        } => format!(
            "cannot see account {} / region {} since {} (last read {}): {error}",
            intent.certificate.account,
            intent.certificate.region,
            unreadable_since.format("%Y-%m-%d %H:%M UTC"),
            last_read_at.map_or_else(
                || "never".to_string(),
                |at| at.format("%Y-%m-%d %H:%M UTC").to_string()
            ),
        ),
        IntentKind::TargetReadable { unreadable_since } => format!(
            "can see account {} / region {} again (unreadable since {})",
            intent.certificate.account,
            intent.certificate.region,
            unreadable_since.format("%Y-%m-%d %H:%M UTC")
        ),
    }
}

fn stage_name(stage: &crate::ids::StageKey) -> String {
    format!("{}:{}/{}", stage.kind, stage.api_id, stage.stage_name)
}

/// One line describing an intent, for people: certificate, owner, what; "(unconfirmed)"
/// when it was decided from what was last known, without a read.
pub fn describe_intent(intent: &Intent) -> String {
    format!(
        "{}  {}  {}{}",
        intent.certificate,
        intent.owner.as_deref().unwrap_or(NO_OWNER),
        if intent.unconfirmed {
            "(unconfirmed) "
        } else {
            ""
        },
        intent_words(intent)
    )
}

/// The intents section after a scan's table, the most urgent first.
pub fn intents_text(intents: &[Intent], committed: bool) -> String {
    let mut out = String::new();
    let verb = if committed {
        "committed to the outbox"
    } else {
        "decided (dry run: nothing committed)"
    };
    let n = intents.len() as i64;
    let _ = writeln!(out, "\n{} {verb}", count(n, "intent", "intents"));
    let mut sorted: Vec<&Intent> = intents.iter().collect();
    sorted.sort_by_key(|i| urgency(&i.kind));
    for intent in sorted {
        let _ = writeln!(out, "  {}", describe_intent(intent));
    }
    out
}

/// `state outbox`: what waits (failed deliveries first, with the service's reason), then what
/// was delivered lately.
pub fn outbox_table(pending: &[OutboxEntry], delivered: &[OutboxEntry]) -> String {
    let mut out = String::new();
    let failed: Vec<&OutboxEntry> = pending
        .iter()
        .filter(|e| {
            e.deliveries
                .values()
                .any(|d| matches!(d, Delivery::Failed { .. }))
        })
        .collect();
    let _ = writeln!(
        out,
        "{} pending, {} of them failed",
        count(pending.len() as i64, "intent", "intents"),
        failed.len()
    );
    for e in failed.iter().copied().chain(pending.iter().filter(|e| {
        !e.deliveries
            .values()
            .any(|d| matches!(d, Delivery::Failed { .. }))
    })) {
        let _ = writeln!(out, "  {}", describe_intent(&e.intent));
        for (backend, d) in &e.deliveries {
            let _ = match d {
                Delivery::Failed { at, reason } => writeln!(
                    out,
                    "      {backend}: FAILED {}: {reason}",
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
                Delivery::Delivered { at, reference } => writeln!(
                    out,
                    "      {backend}: delivered {} ({reference})",
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
            };
        }
        let _ = writeln!(out, "      key: {}", e.intent.key);
    }
    let _ = writeln!(
        out,
        "\n{} lately:",
        count(
            delivered.len() as i64,
            "delivered intent",
            "delivered intents"
        )
    );
    for e in delivered {
        let _ = writeln!(
            out,
            "  {}  {}",
            e.completed_at
                .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            describe_intent(&e.intent)
        );
    }
    out
}

/// A stored certificate, summarised for `state list`.
#[derive(Debug, Serialize)]
pub struct StateRow<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub id: &'a str,
    pub state: &'a CertState,
    pub band: String,
    pub not_after: Option<DateTime<Utc>>,
    pub days_left: Option<i64>,
    pub owners: Vec<String>,
    pub open_episodes: usize,
    pub last_observed_at: DateTime<Utc>,
    /// Set when the latest scan did not read this certificate's account and region: the
    /// row is what was known then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_scanned_since: Option<DateTime<Utc>>,
}

pub fn state_row<'a>(
    record: &'a CertificateRecord,
    policy: &Policy,
    now: DateTime<Utc>,
) -> StateRow<'a> {
    let band = match (&record.state, record.not_after) {
        (CertState::Deleted, _) => "deleted".to_string(),
        (_, Some(na)) => policy.band(na, record.in_use(), now).to_string(),
        (_, None) => "unknown".to_string(),
    };
    let mut owners: Vec<String> = record
        .users
        .iter()
        .map(|u| u.owner.clone().unwrap_or_else(|| NO_OWNER.into()))
        .collect();
    owners.sort();
    owners.dedup();
    StateRow {
        account: &record.key.account,
        region: &record.key.region,
        id: &record.key.id,
        state: &record.state,
        band,
        not_after: record.not_after,
        days_left: record.not_after.map(|na| days_left(na, now)),
        owners,
        open_episodes: record.open_episodes().count(),
        last_observed_at: record.last_observed_at,
        not_scanned_since: None,
    }
}

/// `rows` as a table, then a line per account and region that cannot be read, and one per
/// account and region the latest scan did not cover.
pub fn state_table_with(
    rows: &[StateRow<'_>],
    not_read: &[&StoredRegion],
    health: &[TargetHealth],
) -> String {
    let mut out = state_table(rows);
    for h in health {
        if let Some(since) = h.unreadable_since {
            let _ = writeln!(
                out,
                "{}/{}: UNREADABLE since {}: {}",
                h.account,
                h.region,
                since.format("%Y-%m-%d %H:%M UTC"),
                h.last_error.as_deref().unwrap_or("?")
            );
        }
    }
    for r in not_read {
        let _ = writeln!(out, "{}", not_scanned_line(r));
    }
    out
}

pub fn state_table(rows: &[StateRow<'_>]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<12} {:<42} {:<16} {:<9} {:>5}  {:<5} OWNERS",
        "ACCOUNT", "REGION", "CERTIFICATE", "STATE", "BAND", "DAYS", "OPEN"
    );
    for r in rows {
        // The state's one name (as stored and in JSON), with the step reached or a mark
        // once the clean-up reminder went out.
        let state = match r.state {
            CertState::Expiring { step_days: Some(d) } => format!("{}@{d}d", r.state.name()),
            CertState::RotatedAway { reminded: true, .. } => format!("{}*", r.state.name()),
            _ => r.state.name(),
        };
        let _ = writeln!(
            out,
            "{:<14} {:<12} {:<42} {:<16} {:<9} {:>5}  {:<5} {}",
            r.account,
            r.region,
            r.id,
            state,
            r.band,
            r.days_left
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".into()),
            r.open_episodes,
            r.owners.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Episode, Policy, decide};
    use crate::test_support::{at, cert, present, user};

    /// The intents of one certificate, opened in the window, then expired 41 days ago.
    fn intents() -> Vec<Intent> {
        let policy = Policy::default();
        let users = vec![
            user("s1", Some("payments"), Some("acme")),
            user("s2", None, None),
        ];
        let first = decide(
            None,
            &present("c1", 50.0, 100.0, users.clone()),
            &policy,
            at(50.0),
        );
        let later = decide(
            Some(&first.record),
            &present("c1", 141.0, 100.0, users),
            &policy,
            at(141.0),
        );
        first.intents.into_iter().chain(later.intents).collect()
    }

    #[test]
    fn intents_are_said_in_words_most_urgent_first() {
        let text = intents_text(&intents(), true);
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert!(
            lines[0].ends_with("intents committed to the outbox"),
            "{text}"
        );
        assert!(
            lines[1].contains("INCIDENT: expired 41 days ago (2026-04-11 00:00 UTC)"),
            "{text}"
        );
        assert!(
            text.contains("open a medium priority ticket: expires 2026-04-11 (in 50 days)"),
            "{text}"
        );
        assert!(
            text.contains("email partner acme: the rotation timeline"),
            "{text}"
        );
        assert!(text.contains(NO_OWNER), "{text}");
        for debug in [
            "Some(",
            "CertificateKey",
            "Step {",
            "Critical",
            "Medium",
            "None",
        ] {
            assert!(!text.contains(debug), "{debug} in {text}");
        }
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        let one = &intents()[..1];
        assert!(intents_text(one, false).contains("\n1 intent decided (dry run"));
        assert_eq!(count(1, "day", "days"), "1 day");
        assert_eq!(count(0, "day", "days"), "0 days");
        assert_eq!(days_phrase(-1), "1 day ago");
        assert_eq!(days_phrase(0), "today");
    }

    #[test]
    fn escalations_say_their_page_and_resolutions_their_reason() {
        let episode = Episode::opened(
            1,
            None,
            Default::default(),
            Default::default(),
            at(0.0),
            at(10.0),
        );
        let say = |kind| intent_words(&Intent::new(&cert("c1"), &episode, at(0.0), kind));
        assert_eq!(
            say(IntentKind::Escalate {
                step_days: 7,
                priority: crate::lifecycle::Priority::Highest,
                page: Some(crate::lifecycle::PageSeverity::Critical),
                days_left: 1,
            }),
            "escalate to the 7-day step: highest priority, page (critical), 1 day left"
        );
        assert_eq!(
            say(IntentKind::ResolveTicket {
                how: Resolution::OwnerChanged { to: None }
            }),
            "resolve the ticket: its stages now belong to (no owner)"
        );
    }
}
