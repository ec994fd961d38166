//! Reports: the KPIs managers ask for (DOMAIN.md), computed from the lifecycle records, where
//! every transition is timestamped. It owns the definitions of the figures and their
//! computation, one record at a time so a large store is never held whole, and their renderings
//! (JSON described by `schemas/report-v1.schema.json`, CSV, a table).
//!
//! Must never guess: a figure is computed from recorded facts only, says how many episodes it
//! rests on, and counts what is not a rotation (an owner change, a switch to another expiring
//! certificate, a deletion) and what is still open apart from the rotations. Pure: no I/O, no
//! clock (`now` is an argument, so the same records give the same report).

mod kpis;
mod render;

pub use render::{SCHEMA_VERSION, csv, json, table};

pub use kpis::{
    Endings, Kpis, Mttr, NO_OWNER, OpenByStep, QuarterRow, Report, ReportBuilder, ReportOptions,
    TeamQuarterRow, TeamRow, UpcomingExpiry, quarter_of,
};
