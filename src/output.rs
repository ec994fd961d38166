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
    CertState, CertificateRecord, Intent, IntentKind, RenewalOutlook, StageUser, at_risk,
};
use crate::observe::renewal_outlook;

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
        "\n{} certificates: {}",
        doc.summary.certificates,
        bands.join(", ")
    );
    for t in doc.targets {
        let _ = writeln!(out, "{}", target_line(t));
    }
    out
}

/// One certificate's row of the scan table.
fn certificate_cells(c: &CertificateView<'_>) -> [String; 9] {
    let id = if c.id.len() > 40 {
        format!("…{}", &c.id[c.id.len() - 39..])
    } else {
        c.id.to_string()
    };
    let owners = if c.owners.is_empty() {
        "(none)".to_string()
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
            "{}/{}: complete, {} API calls ({} certificates, {} REST APIs, {} WebSocket APIs, {} HTTP APIs, {} stages)",
            t.account,
            t.region,
            calls,
            t.counts.certificates,
            t.counts.rest_apis,
            t.counts.websocket_apis,
            t.counts.http_apis,
            t.counts.stages
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

/// One line describing an intent, for people.
pub fn describe_intent(intent: &Intent) -> String {
    let owner = intent.owner.as_deref().unwrap_or("(unowned)");
    let what = match &intent.kind {
        IntentKind::OpenTicket {
            priority,
            days_left,
            stages,
            ..
        } => format!(
            "open ticket ({priority:?}, {days_left} days left) for {}",
            stage_list(stages)
        ),
        IntentKind::Escalate {
            step_days,
            priority,
            page,
            days_left,
        } => format!(
            "escalate to the {step_days}-day step ({priority:?}{}, {days_left} days left)",
            page.map(|p| format!(", page {p:?}")).unwrap_or_default()
        ),
        IntentKind::Incident { expired_at } => {
            format!("INCIDENT: expired {} while in use", expired_at.to_rfc3339())
        }
        IntentKind::CommentBigBang {
            stage,
            new_certificate,
            new_certificate_age_hours,
            ..
        } => format!(
            "comment: big-bang cut-over, {stage} switched to {new_certificate} created {new_certificate_age_hours} h earlier"
        ),
        IntentKind::UpdateStages { stages, .. } => {
            format!("update ticket stages: {}", stage_list(stages))
        }
        IntentKind::ResolveTicket { how } => format!("resolve ticket: {how:?}"),
        IntentKind::PartnerEmail { partner, email, .. } => {
            format!("email partner {partner}: {email:?}")
        }
        IntentKind::CleanupReminder { rotated_away_since } => format!(
            "clean-up reminder: unused since {}",
            rotated_away_since.format("%Y-%m-%d")
        ),
    };
    format!("{}  {owner}  {what}", intent.certificate)
}

/// The intents section after a scan's table.
pub fn intents_text(intents: &[Intent], committed: bool) -> String {
    let mut out = String::new();
    let verb = if committed {
        "committed to the outbox"
    } else {
        "decided (dry run: nothing committed)"
    };
    let _ = writeln!(out, "\n{} intents {verb}", intents.len());
    for intent in intents {
        let _ = writeln!(out, "  {}", describe_intent(intent));
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
        .map(|u| u.owner.clone().unwrap_or_else(|| "(unowned)".into()))
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
    }
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
