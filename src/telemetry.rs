//! Logging set-up: one `tracing` subscriber writing to stderr (stdout carries command output),
//! pretty for people or JSON lines for collectors. The level comes from `RUST_LOG` when set,
//! else from `telemetry.level`. Nothing here decides what is logged; secrets are kept out of
//! logs by the types that hold them (`config::Secret`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The SDK's HTTP and signing layers trace whole requests at trace level: STS bodies carry
/// an account's external id, signed headers a session token. Whatever level is asked for,
/// they never log below debug, so no secret reaches a log.
const SECRET_SAFE_CAPS: &[&str] = &[
    "aws_smithy_runtime=debug",
    "aws_smithy_runtime_api=debug",
    "aws_smithy_http_client=debug",
    "aws_sigv4=debug",
    "aws_runtime=debug",
    "aws_config=debug",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "rustls=info",
];

/// The filter for `level` (or `RUST_LOG`), with the caps above.
pub fn filter(level: &str) -> EnvFilter {
    let asked = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| level.to_string());
    let directives = std::iter::once(asked.as_str())
        .chain(SECRET_SAFE_CAPS.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber. Call once, at start-up.
pub fn init(format: LogFormat, level: &str) {
    let filter = filter(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
