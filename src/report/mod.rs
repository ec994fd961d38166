//! Reports: the KPIs managers ask for (DOMAIN.md), computed from the lifecycle records, where
//! every transition is timestamped. It owns the definitions of the figures and their
//! computation, one record at a time so a large store is never held whole, and their renderings
//! (JSON described by `schemas/report-v1.schema.json`, CSV, a table, and a self-contained HTML
//! page with inline SVG charts).
//!
//! Must never guess: a figure is computed from recorded facts only, says how many episodes it
//! rests on, and counts what is not a rotation (an owner change, a switch to another expiring
//! certificate, a deletion) and what is still open apart from the rotations. Pure: no I/O, no
//! clock (`now` is an argument, so the same records give the same report).

mod html;
mod kpis;
mod render;

pub use html::{HtmlError, html};
pub use render::{SCHEMA_VERSION, csv, json, table};

pub use kpis::{
    BigBangCutOver, Endings, FailedDelivery, Kpis, Mttr, NO_OWNER, OpenByStep, PartnerWaiting,
    QuarterRow, Report, ReportBuilder, ReportOptions, TeamQuarterRow, TeamRow, UpcomingExpiry,
    Waiting, quarter_of,
};

/// A report's time argument: a date (`2026-10-01`, midnight UTC) or an RFC 3339 time, in
/// the years 1970 to 9999 (quarters are named with four-digit years, and nothing certsentinel
/// records lies outside them).
pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::Datelike;
    let t = match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&chrono::Utc),
        Err(_) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
            .map_err(|_| format!("'{text}' is neither a date (2026-10-01) nor an RFC 3339 time"))?,
    };
    if !(1970..=9999).contains(&t.year()) {
        return Err(format!("'{text}' is outside the years 1970 to 9999"));
    }
    Ok(t)
}
