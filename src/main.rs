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
use certsentinel::daemon::reconcile::reconcile_scan;
use certsentinel::inventory::scan::{self, Progress};
use certsentinel::lifecycle::{Band, CertificateRecord};
use certsentinel::store::{SledStore, Store};
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
enum StateCommand {
    /// One line per certificate.
    List {
        /// Only certificates in this band (healthy, expiring, critical, expired, unused).
        #[arg(long)]
        band: Option<Band>,
        /// Only certificates one of whose stages this team owns.
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// A certificate's full record (episodes, history) and its undelivered intents, as JSON.
    Show {
        /// The certificate id (or ACM ARN), or account/region/id when ids repeat.
        certificate: String,
    },
    /// Every record as JSON lines: complete enough to rebuild any report.
    Export,
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
        /// Decide what the scan means without committing anything to the state database.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read the state database: certificates, their episodes and history.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Run as a daemon: scan on `daemon.schedule`, reconcile into the store, until SIGTERM.
    Run,
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
        Command::Scan {
            once: _,
            format,
            dry_run,
        } => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(EXIT_FAILURE);
            };
            runtime.block_on(scan_once(&settings, format, dry_run))
        }
        Command::Run => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(EXIT_FAILURE);
            };
            let store = match open_store(&settings) {
                Ok(s) => std::sync::Arc::new(s),
                Err(e) => {
                    eprintln!("certsentinel: {e:#}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            match runtime.block_on(certsentinel::daemon::run::run(
                std::sync::Arc::new(settings),
                store,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("certsentinel: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        Command::State { command } => match state(&settings, command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("certsentinel: {e:#}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}

fn open_store(settings: &Settings) -> anyhow::Result<SledStore> {
    Ok(SledStore::open(
        &settings.store.path,
        settings.store.cache_mb * 1024 * 1024,
    )?)
}

fn state(settings: &Settings, command: StateCommand) -> anyhow::Result<ExitCode> {
    if !settings.store.path.exists() {
        anyhow::bail!(
            "no state database at {} (store.path): run `certsentinel scan --once` first",
            settings.store.path.display()
        );
    }
    let store = open_store(settings)?;
    let now = chrono::Utc::now();
    match command {
        StateCommand::List {
            band,
            owner,
            format,
        } => {
            let records: Vec<CertificateRecord> = store.records().collect::<Result<_, _>>()?;
            let rows: Vec<output::StateRow<'_>> = records
                .iter()
                .map(|r| output::state_row(r, &settings.policy, now))
                .filter(|row| band.is_none_or(|b| row.band == b.as_str()))
                .filter(|row| owner.as_ref().is_none_or(|o| row.owners.contains(o)))
                .collect();
            match format {
                OutputFormat::Table => print!("{}", output::state_table(&rows)),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            }
        }
        StateCommand::Show { certificate } => {
            let matches: Vec<CertificateRecord> = store
                .records()
                .filter(|r| {
                    r.as_ref().map_or(true, |r| {
                        r.key.id == certificate || r.key.to_string() == certificate
                    })
                })
                .collect::<Result<_, _>>()?;
            match matches.as_slice() {
                [] => anyhow::bail!("no certificate {certificate} in the state database"),
                [record] => {
                    let pending: Vec<_> = store
                        .outbox_pending()?
                        .into_iter()
                        .filter(|e| e.intent.certificate == record.key)
                        .collect();
                    let doc = serde_json::json!({"record": record, "pending_intents": pending});
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                }
                many => anyhow::bail!(
                    "{certificate} names {} certificates; give account/region/id: {}",
                    many.len(),
                    many.iter()
                        .map(|r| r.key.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        StateCommand::Export => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            store.export_jsonl(&mut lock)?;
            std::io::Write::flush(&mut lock)?;
        }
    }
    Ok(ExitCode::SUCCESS)
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

async fn scan_once(settings: &Settings, format: OutputFormat, dry_run: bool) -> ExitCode {
    // A dry run against a database that does not exist yet decides against an empty one and
    // creates nothing.
    let scratch = match tempfile_dir_if(dry_run && !settings.store.path.exists()) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("certsentinel: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let store = match &scratch {
        Some(dir) => SledStore::open(dir.path(), settings.store.cache_mb * 1024 * 1024),
        None => SledStore::open(&settings.store.path, settings.store.cache_mb * 1024 * 1024),
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certsentinel: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
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
    let reconciled = match reconcile_scan(&store, &result, &settings.policy, now, dry_run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certsentinel: the scan could not be recorded: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    for key in &reconciled.unjudged {
        tracing::warn!(certificate = %key, "expiry unknown: not judged by the lifecycle engine");
    }
    let mut doc = output::document(&result, &settings.policy, now);
    doc.reconcile = Some(output::ReconcileView {
        committed: reconciled.committed,
        observations: reconciled.observations,
        stale_observations: reconciled.stale,
        intents: &reconciled.intents,
    });
    match format {
        OutputFormat::Json => match serde_json::to_string_pretty(&doc) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("certsentinel: could not render JSON: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        OutputFormat::Table => {
            print!("{}", output::table(&doc));
            print!(
                "{}",
                output::intents_text(&reconciled.intents, reconciled.committed)
            );
        }
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

fn tempfile_dir_if(condition: bool) -> std::io::Result<Option<tempfile::TempDir>> {
    if condition {
        tempfile::tempdir().map(Some)
    } else {
        Ok(None)
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .map_err(|e| eprintln!("certsentinel: could not start the async runtime: {e}"))
        .ok()
}
