//! The `certsentinel` command line: the binary's edge, where library errors become exit codes.
//!
//! Exit codes: 0 success; 1 an unexpected error; 2 the configuration is invalid; 3 the scan
//! was partial (some account or region could not be read in full; the output says which).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use certsentinel::config::{LogFormat, Settings};
use certsentinel::inventory::scan::{self, Progress};
use certsentinel::{output, telemetry};

const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_PARTIAL: u8 = 3;

#[derive(Parser)]
#[command(
    name = "certsentinel",
    version,
    about = "Keeps API Gateway client certificates from expiring in service"
)]
struct Cli {
    /// A TOML file layered over the embedded defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr; overrides telemetry.format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Scan every configured account and region and print the inventory.
    Scan {
        /// Scan once and exit.
        #[arg(long, required = true)]
        once: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certsentinel: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = match cli.log_format {
        Some(LogFormatArg::Pretty) => LogFormat::Pretty,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => settings.telemetry.format,
    };
    telemetry::init(format, &settings.telemetry.level);

    match cli.command {
        Command::CheckConfig => {
            print!("{}", settings.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Command::Scan { once: _, format } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("certsentinel: could not start the async runtime: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            runtime.block_on(scan_once(&settings, format))
        }
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn add_work(&self, n: u64) {
        self.0.inc_length(n);
    }
    fn work_done(&self, n: u64) {
        self.0.inc(n);
    }
}

async fn scan_once(settings: &Settings, format: OutputFormat) -> ExitCode {
    let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} reading stages {pos}/{len} APIs [{elapsed}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Arc::new(Bar(bar))
    } else {
        Arc::new(scan::NoProgress)
    };
    let result = scan::scan_all(settings, progress.clone()).await;
    drop(progress);
    let now = chrono::Utc::now();
    let doc = output::document(&result, &settings.policy, now);
    match format {
        OutputFormat::Json => match serde_json::to_string_pretty(&doc) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("certsentinel: could not render JSON: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        OutputFormat::Table => print!("{}", output::table(&doc)),
    }
    if result.complete() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "certsentinel: the scan is partial: some accounts or regions could not be read (see above)"
        );
        ExitCode::from(EXIT_PARTIAL)
    }
}
