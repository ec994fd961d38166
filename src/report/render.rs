//! A report in words: JSON (the documented schema, `schemas/report-v1.schema.json`), CSV (one
//! table per section, each with its own header row, sections apart by an empty line), and a
//! table for the terminal.

use std::fmt::Write as _;

use serde::Serialize;

use super::kpis::{Mttr, Report, Waiting};

/// The JSON layout's version, in `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    #[serde(flatten)]
    report: &'a Report,
}

/// The report as JSON, described by `schemas/report-v1.schema.json`.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(&Document {
        schema_version: SCHEMA_VERSION,
        report,
    })
    .expect("a report always serializes")
        + "\n"
}

fn figure(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.1}"))
}

fn mttr_fields(m: &Mttr) -> [String; 4] {
    [
        figure(m.mean),
        figure(m.median),
        figure(m.p90),
        m.episodes.to_string(),
    ]
}

/// The report as CSV: sections `kpis`, `teams`, `quarters`, `team_quarters`, `open_by_step`,
/// `upcoming_expiries`, `big_bang_cut_overs`, `partners_waiting` and `failed_deliveries` (left
/// out when the source has no outbox), each a table
/// whose first column names the section, with its own header row; an empty line between
/// sections. Empty fields are figures with nothing to rest on.
pub fn csv(report: &Report) -> Result<String, csv::Error> {
    let mut out = Vec::new();
    let mut section = |rows: Vec<Vec<String>>| -> Result<(), csv::Error> {
        if !out.is_empty() {
            out.push(b'\n');
        }
        let mut w = csv::WriterBuilder::new()
            .flexible(false)
            .from_writer(Vec::new());
        for row in rows {
            w.write_record(row)?;
        }
        out.extend(w.into_inner().map_err(|e| e.into_error())?);
        Ok(())
    };
    let k = &report.kpis;
    let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    section(vec![
        row(&["table", "kpi", "value", "rests_on"]),
        row(&[
            "kpis",
            "expiring_within_30_days",
            &k.expiring_within_30_days.to_string(),
            &k.certificates_in_use.to_string(),
        ]),
        row(&[
            "kpis",
            "expired_in_use",
            &k.expired_in_use.to_string(),
            &k.certificates_in_use.to_string(),
        ]),
        row(&[
            "kpis",
            "owner_coverage_percent",
            &figure(k.owner_coverage_percent),
            &k.certificates_in_use.to_string(),
        ]),
        row(&[
            "kpis",
            "mttr_hours_mean",
            &figure(k.mttr_hours.mean),
            &k.mttr_hours.episodes.to_string(),
        ]),
        row(&[
            "kpis",
            "mttr_hours_median",
            &figure(k.mttr_hours.median),
            &k.mttr_hours.episodes.to_string(),
        ]),
        row(&[
            "kpis",
            "mttr_hours_p90",
            &figure(k.mttr_hours.p90),
            &k.mttr_hours.episodes.to_string(),
        ]),
        row(&["kpis", "incidents", &k.incidents.to_string(), ""]),
        row(&[
            "kpis",
            "observed_after_now",
            &report.observed_after_now.to_string(),
            "",
        ]),
    ])?;
    let mut teams = vec![row(&[
        "table",
        "team",
        "mttr_hours_mean",
        "mttr_hours_median",
        "mttr_hours_p90",
        "rotations",
        "owner_changed",
        "switched_to_expiring",
        "deleted",
        "stopped_presenting",
        "open",
        "oldest_open_hours",
        "incidents",
        "big_bang_cut_overs",
    ])];
    for t in &report.teams {
        let e = &t.endings;
        let mut r = vec!["teams".to_string(), t.team.clone()];
        r.extend(mttr_fields(&t.mttr_hours).into_iter().take(3));
        r.extend(
            [
                e.rotated,
                e.owner_changed,
                e.switched_to_expiring,
                e.deleted,
                e.stopped_presenting,
                e.open,
            ]
            .map(|n| n.to_string()),
        );
        r.push(figure(t.oldest_open_hours));
        r.push(t.incidents.to_string());
        r.push(t.big_bang_cut_overs.to_string());
        teams.push(r);
    }
    section(teams)?;
    let mut quarters = vec![row(&[
        "table",
        "quarter",
        "mttr_hours_mean",
        "mttr_hours_median",
        "mttr_hours_p90",
        "rotations",
        "incidents",
    ])];
    for q in &report.quarters {
        let mut r = vec!["quarters".to_string(), q.quarter.clone()];
        r.extend(mttr_fields(&q.mttr_hours).into_iter().take(3));
        r.push(q.rotations.to_string());
        r.push(q.incidents.to_string());
        quarters.push(r);
    }
    section(quarters)?;
    let mut team_quarters = vec![row(&[
        "table",
        "team",
        "quarter",
        "mttr_hours_mean",
        "mttr_hours_median",
        "mttr_hours_p90",
        "rotations",
    ])];
    for tq in &report.team_quarters {
        let mut r = vec![
            "team_quarters".to_string(),
            tq.team.clone(),
            tq.quarter.clone(),
        ];
        r.extend(mttr_fields(&tq.mttr_hours));
        team_quarters.push(r);
    }
    section(team_quarters)?;
    let mut open = vec![row(&["table", "step_days", "episodes", "oldest_days"])];
    for o in &report.open_by_step {
        open.push(vec![
            "open_by_step".to_string(),
            o.step_days
                .map_or_else(|| "incident".to_string(), |d| d.to_string()),
            o.episodes.to_string(),
            format!("{:.1}", o.oldest_days),
        ]);
    }
    section(open)?;
    let mut upcoming = vec![row(&[
        "table",
        "team",
        "certificate",
        "not_after",
        "days_left",
    ])];
    for u in &report.upcoming_expiries {
        upcoming.push(vec![
            "upcoming_expiries".to_string(),
            u.team.clone(),
            u.certificate.clone(),
            time(u.not_after),
            u.days_left.to_string(),
        ]);
    }
    section(upcoming)?;
    let mut big_bang = vec![row(&[
        "table",
        "team",
        "certificate",
        "rotated_at",
        "new_certificate",
        "new_certificate_age_hours",
        "stages",
    ])];
    for b in &report.big_bang_cut_overs {
        big_bang.push(vec![
            "big_bang_cut_overs".to_string(),
            b.team.clone(),
            b.certificate.clone(),
            time(b.rotated_at),
            b.new_certificate.clone(),
            b.new_certificate_age_hours.to_string(),
            b.stages.to_string(),
        ]);
    }
    section(big_bang)?;
    let mut partners = vec![row(&[
        "table",
        "partner",
        "team",
        "certificate",
        "waiting_for",
        "since",
        "not_after",
    ])];
    for p in &report.partners_waiting {
        partners.push(vec![
            "partners_waiting".to_string(),
            p.partner.clone(),
            p.team.clone(),
            p.certificate.clone(),
            serde_plain::to_string(&p.waiting_for).expect("a unit variant"),
            time(p.since),
            p.not_after.map_or_else(String::new, time),
        ]);
    }
    section(partners)?;
    // Unknown (a report from an export, which has no outbox): the section is left out rather
    // than shown empty, which would say "none".
    if let Some(failed) = &report.failed_deliveries {
        let mut rows = vec![row(&[
            "table",
            "backend",
            "intent",
            "certificate",
            "team",
            "at",
            "reason",
        ])];
        for f in failed {
            rows.push(vec![
                "failed_deliveries".to_string(),
                f.backend.clone(),
                f.intent.clone(),
                f.certificate.clone(),
                f.team.clone(),
                time(f.at),
                f.reason.clone(),
            ]);
        }
        section(rows)?;
    }
    Ok(String::from_utf8(out).expect("CSV of UTF-8 fields is UTF-8"))
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn hours(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |h| format!("{h:.1} h"))
}

/// The report for the terminal.
pub fn table(report: &Report) -> String {
    let k = &report.kpis;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "certsentinel report as of {} ({} to {}{})",
        report.now.format("%Y-%m-%d %H:%M UTC"),
        report.since.map_or_else(
            || "the start".to_string(),
            |s| s.format("%Y-%m-%d").to_string()
        ),
        report.until.format("%Y-%m-%d"),
        report
            .team
            .as_deref()
            .map_or_else(String::new, |t| format!(", team {t}"))
    );
    let _ = writeln!(
        out,
        "  in use with fewer than 30 days left: {} ({} already expired)",
        k.expiring_within_30_days, k.expired_in_use
    );
    let _ = writeln!(
        out,
        "  owner known from tags: {} of {} certificates in use",
        k.owner_coverage_percent
            .map_or_else(|| "-".to_string(), |p| format!("{p:.1} %")),
        k.certificates_in_use
    );
    let _ = writeln!(
        out,
        "  MTTR of rotations: mean {}, median {}, p90 {} ({} episodes)",
        hours(k.mttr_hours.mean),
        hours(k.mttr_hours.median),
        hours(k.mttr_hours.p90),
        k.mttr_hours.episodes
    );
    let _ = writeln!(out, "  incidents: {}", k.incidents);
    if report.observed_after_now > 0 {
        let _ = writeln!(
            out,
            "  as of a past date: {} certificate(s) were observed after it; in use, expiring and\n  owned are as of their latest observation",
            report.observed_after_now
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>10} {:>9} {:>6} {:>9} {:>5} {:>9}",
        "TEAM", "MTTR p50", "MTTR p90", "ROTATED", "OPEN", "NOT ROT.", "INC.", "EPISODES"
    );
    for t in &report.teams {
        let e = &t.endings;
        let not_rotation =
            e.owner_changed + e.switched_to_expiring + e.deleted + e.stopped_presenting;
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:>10} {:>9} {:>6} {:>9} {:>5} {:>9}",
            t.team,
            hours(t.mttr_hours.median),
            hours(t.mttr_hours.p90),
            e.rotated,
            e.open,
            not_rotation,
            t.incidents,
            e.rotated + e.open + not_rotation
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>10} {:>9} {:>5}",
        "QUARTER", "MTTR p50", "MTTR p90", "ROTATED", "INC."
    );
    for q in &report.quarters {
        let _ = writeln!(
            out,
            "{:<8} {:>10} {:>10} {:>9} {:>5}",
            q.quarter,
            hours(q.mttr_hours.median),
            hours(q.mttr_hours.p90),
            q.rotations,
            q.incidents
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "open episodes by step:");
    for o in &report.open_by_step {
        let _ = writeln!(
            out,
            "  {:<16} {:>6} (oldest {:.0} days)",
            match o.step_days {
                None => "INCIDENT".to_string(),
                Some(d) if d == report.policy.window_days => "window opened".to_string(),
                Some(d) => format!("{d}-day step"),
            },
            o.episodes,
            o.oldest_days
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "expiring in the next 90 days:");
    for u in &report.upcoming_expiries {
        let _ = writeln!(
            out,
            "  {}  {:>3} days  {:<20} {}",
            u.not_after.format("%Y-%m-%d"),
            u.days_left,
            u.team,
            u.certificate
        );
    }
    if !report.big_bang_cut_overs.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "big-bang cut-overs (rotations to a certificate hours old):"
        );
        for b in &report.big_bang_cut_overs {
            let _ = writeln!(
                out,
                "  {}  {:<20} {} -> {} ({} h old, {} stage(s))",
                b.rotated_at.format("%Y-%m-%d"),
                b.team,
                b.certificate,
                b.new_certificate,
                b.new_certificate_age_hours,
                b.stages
            );
        }
    }
    if !report.partners_waiting.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "partners waiting on a trust-store update:");
        for p in &report.partners_waiting {
            let _ = writeln!(
                out,
                "  {:<16} {:<12} since {}  {:<20} {}",
                p.partner,
                waiting_words(p.waiting_for),
                p.since.format("%Y-%m-%d"),
                p.team,
                p.certificate
            );
        }
    }
    let _ = writeln!(out);
    match &report.failed_deliveries {
        None => {
            let _ = writeln!(
                out,
                "failed deliveries: unknown (a state export has no outbox)"
            );
        }
        Some(failed) => {
            let _ = writeln!(out, "failed deliveries: {}", failed.len());
            for f in failed {
                let _ = writeln!(
                    out,
                    "  {}  {:<10} {}  {}",
                    f.at.format("%Y-%m-%d %H:%M"),
                    f.backend,
                    f.intent,
                    f.reason
                );
            }
        }
    }
    out
}

/// What a partner waits for, in words.
pub fn waiting_words(w: Waiting) -> &'static str {
    match w {
        Waiting::Successor => "the successor",
        Waiting::CutOver => "the cut-over",
        Waiting::Removal => "removal",
    }
}
