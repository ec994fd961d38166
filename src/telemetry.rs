//! Logging set-up: one `tracing` subscriber writing to stderr (stdout carries command output),
//! pretty for people or JSON lines for collectors. The level comes from `RUST_LOG` when set,
//! else from `telemetry.level`. Nothing here decides what is logged; secrets are kept out of
//! logs by the types that hold them (`config::Secret`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Call once, at start-up.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
