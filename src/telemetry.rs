//! Logging set-up: one `tracing` subscriber writing to stderr (stdout carries command output),
//! pretty for people or JSON lines for collectors. The level comes from `RUST_LOG` when set,
//! else from `telemetry.level`, and it governs everything: no library logs more than asked.
//! Two kinds of targets are held lower still, never raised: those whose verbose levels trace
//! whole requests (never below debug, so no secret reaches a log), and chatter that tells an
//! operator nothing (the scheduler's own bookkeeping, unless asked for by name). Nothing here
//! decides what is logged; secrets are kept out of logs by the types that hold them
//! (`config::Secret`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::config::LogFormat;

/// Targets whose trace level logs whole requests: an STS body carries an account's external
/// id, signed headers a session token. Never below debug, whatever is asked.
const SECRET_BEARING: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_runtime",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
];

/// Targets that chatter at info about their own bookkeeping ("Uninited", "Job creator
/// created"): held at warn unless a directive names them.
const CHATTY: &[&str] = &["tokio_cron_scheduler"];

/// The filter for `level` (or `RUST_LOG`, when it is a valid filter).
pub fn filter(level: &str) -> EnvFilter {
    let asked = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| level.to_string());
    EnvFilter::try_new(directives(&asked)).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// `asked` with every secret-bearing target held at debug or below and chatty ones at warn,
/// each never above what was asked for everything else.
fn directives(asked: &str) -> String {
    let mut global = LevelFilter::ERROR;
    let mut out: Vec<String> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    for directive in asked.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            None => match directive.parse::<LevelFilter>() {
                Ok(level) => {
                    global = level;
                    out.push(directive.to_string());
                }
                // A bare target: everything of it.
                Err(_) => {
                    named.push(directive);
                    out.push(capped(directive, LevelFilter::TRACE));
                }
            },
            Some((target, level)) => {
                named.push(target);
                match level.parse::<LevelFilter>() {
                    Ok(level) => out.push(capped(target, level)),
                    Err(_) => out.push(directive.to_string()),
                }
            }
        }
    }
    for target in SECRET_BEARING {
        if !named.iter().any(|n| n.starts_with(target)) {
            out.push(format!("{target}={}", global.min(LevelFilter::DEBUG)));
        }
    }
    for target in CHATTY {
        if !named.iter().any(|n| n.starts_with(target)) {
            out.push(format!("{target}={}", global.min(LevelFilter::WARN)));
        }
    }
    out.join(",")
}

/// `target=level`, held at debug for a secret-bearing target.
fn capped(target: &str, level: LevelFilter) -> String {
    let level = if SECRET_BEARING.iter().any(|t| target.starts_with(t)) {
        level.min(LevelFilter::DEBUG)
    } else {
        level
    };
    format!("{target}={level}")
}

/// Installs the global subscriber. Call once, at start-up.
pub fn init(format: LogFormat, level: &str) {
    let filter = filter(level);
    // Colours only for a person at a terminal, never in a file or a collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asked_level_governs_every_target() {
        let d = directives("info");
        assert!(d.contains("aws_smithy_runtime=info"), "{d}");
        assert!(d.contains("tokio_cron_scheduler=warn"), "{d}");
        assert!(!d.contains("=debug"), "nothing is raised above info: {d}");
    }

    #[test]
    fn secret_bearing_targets_never_go_below_debug() {
        let d = directives("trace");
        assert!(d.contains("aws_sigv4=debug"), "{d}");
        assert!(d.contains("tokio_cron_scheduler=warn"), "{d}");
        let d = directives("warn,aws_smithy_runtime=trace,certsentinel=debug");
        assert!(d.contains("aws_smithy_runtime=debug"), "{d}");
        assert!(d.contains("certsentinel=debug"), "{d}");
        assert!(d.contains("aws_config=warn"), "{d}");
        assert!(!d.contains("aws_smithy_runtime=trace"), "{d}");
    }

    #[test]
    fn a_chatty_target_asked_for_by_name_is_heard() {
        let d = directives("info,tokio_cron_scheduler=debug");
        assert!(d.contains("tokio_cron_scheduler=debug"), "{d}");
        assert!(!d.contains("tokio_cron_scheduler=warn"), "{d}");
    }
}
