//! The `certsentinel` command line: the binary's edge, where library errors become exit codes.
//!
//! Exit codes: 0 success; 1 an unexpected error; 2 the configuration is invalid; 3 the scan
//! was partial (some account or region could not be read in full; the output says which);
//! 64 the command line is wrong (sysexits' EX_USAGE).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use certsentinel::config::{ConfigError, LogFormat, Settings};
use certsentinel::daemon::report_page;
use certsentinel::daemon::state_api::{self, Found, Outbox, StateClient};
use certsentinel::daemon::{Daemon, ScanStore, scan_once};
use certsentinel::inventory::{aws, scan};
use certsentinel::lifecycle::{Band, CertificateRecord};
use certsentinel::notify::{Dispatcher, Drained};
use certsentinel::report::{self, ReportBuilder, ReportOptions};
use certsentinel::store::{SledStore, Store, StoreError};
use certsentinel::{output, telemetry};

const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_PARTIAL: u8 = 3;
const EXIT_USAGE: u8 = 64;
/// A second stop signal during a stop: exit at once (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: i32 = 130;

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
    /// A certificate's full record (episodes, history) and its intents, pending and
    /// delivered, as JSON.
    Show {
        /// The certificate id (or ACM ARN), or account/region/id when ids repeat.
        certificate: String,
    },
    /// Every record as JSON lines: complete enough to rebuild any report.
    Export,
    /// Intents waiting for delivery (with what each backend made of them) and those
    /// delivered lately.
    Outbox {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Drop everything stored for an account (or one of its regions) that is no longer
    /// scanned: records, history, undelivered intents.
    Forget {
        /// ACCOUNT or ACCOUNT/REGION, as `state list` and `scan` name them.
        target: String,
    },
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
    /// Run as a daemon: scan on `daemon.schedule`, reconcile into the store, deliver the
    /// outbox, until SIGTERM.
    Run,
    /// Deliver the outbox to the backends of each intent's route.
    Notify {
        /// Deliver what is pending once and exit.
        #[arg(long, required_unless_present = "retry")]
        once: bool,
        /// Forget the failures recorded for the intent with this key, then deliver.
        #[arg(long, value_name = "KEY")]
        retry: Option<String>,
    },
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig,
    /// The KPIs (MTTR, expiring certificates, owner coverage, incidents) per team and per
    /// quarter, from the state database (or a `state export` file), never from the network.
    Report {
        /// Episodes that ended, and incidents that began, from this date or time (UTC).
        #[arg(long, value_parser = report::parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// ... until this one (default: now).
        #[arg(long, value_parser = report::parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this team.
        #[arg(long)]
        team: Option<String>,
        /// The report's now (default: the clock), so a report can be made again identically.
        #[arg(long, value_parser = report::parse_time)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Write it to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Read the records from this `state export` file instead of the state database.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
    /// One self-contained page with its charts inline (no script, font or style from
    /// elsewhere); the daemon serves the same at `/report`.
    Html,
}

/// How a command that did not fail ended.
enum Outcome {
    Done,
    /// A scan that could not read some account or region (the output says which).
    PartialScan,
}

fn main() -> ExitCode {
    // clap exits with 2 on a usage error, which is this program's code for an invalid
    // configuration: misuse gets its own code.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::PartialScan) => {
            eprintln!(
                "certsentinel: the scan is partial: some accounts or regions could not be read (see above)"
            );
            ExitCode::from(EXIT_PARTIAL)
        }
        // A reader that went away (`| head`) is no failure: stop quietly.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certsentinel: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes command output to stdout; unlike `print!`, a closed pipe is an error to return, not
/// a panic.
fn out(text: impl AsRef<str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_ref().as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The one place where an error becomes an exit code.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ConfigError>().is_some() {
        EXIT_CONFIG
    } else {
        EXIT_FAILURE
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let settings = Settings::load(cli.config.as_deref())?;
    let format = match cli.log_format {
        Some(LogFormatArg::Pretty) => LogFormat::Pretty,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => settings.telemetry.format,
    };
    telemetry::init(format, &settings.telemetry.level);

    match cli.command {
        Command::CheckConfig => {
            certsentinel::store::check_path(&settings.store.path).map_err(|e| {
                ConfigError::Invalid {
                    key: "store.path".into(),
                    reason: e.to_string(),
                }
            })?;
            let warning = if settings.daemon.scans_on_schedule() {
                String::new()
            } else {
                format!("# warning: {}\n", certsentinel::config::EVENTS_ONLY_WARNING)
            };
            out(format!(
                "# certsentinel run will run: {}\n{warning}{}",
                settings.mode(),
                settings.to_redacted_toml()
            ))?;
            Ok(Outcome::Done)
        }
        Command::Scan {
            once: _,
            format,
            dry_run,
        } => runtime()?.block_on(scan_command(&settings, format, dry_run)),
        Command::Run => {
            runtime()?.block_on(async {
                let daemon = Daemon::build(settings).await?;
                // The first signal stops the daemon cleanly; a second one exits at once. Every
                // commit is flushed before it returns, so nothing committed is lost.
                let (first, stopped) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = first.send(());
                    shutdown_signal().await;
                    eprintln!("certsentinel: a second stop signal: exiting at once");
                    std::process::exit(EXIT_INTERRUPTED);
                });
                daemon
                    .run_until_stopped(async {
                        let _ = stopped.await;
                    })
                    .await
            })?;
            Ok(Outcome::Done)
        }
        Command::State { command } => state_command(&settings, command),
        Command::Report {
            since,
            until,
            team,
            now,
            format,
            out,
            from,
        } => {
            let options = ReportOptions {
                since,
                until,
                team,
                now: now.unwrap_or_else(chrono::Utc::now),
                policy: settings.policy.clone(),
            };
            if let Err(why) = options.check() {
                anyhow::bail!("{why}");
            }
            report_command(&settings, options, format, out, from)
        }
        Command::Notify { once: _, retry } => {
            runtime()?.block_on(notify_command(&settings, retry.as_deref()))
        }
    }
}

/// `notify --once` / `notify --retry KEY`: one drain of the outbox.
async fn notify_command(settings: &Settings, retry: Option<&str>) -> anyhow::Result<Outcome> {
    let store = Arc::new(certsentinel::daemon::open_store(settings)?);
    if let Some(key) = retry
        && !store.retry(key)?
    {
        anyhow::bail!(
            "no pending intent has the key {key}: `certsentinel state outbox` lists them"
        );
    }
    let drained = Dispatcher::new(store, settings)?.drain().await?;
    out(delivery_line(&drained))?;
    Ok(Outcome::Done)
}

fn delivery_line(d: &Drained) -> String {
    format!(
        "{} delivered, {} completed, {} failed, {} waiting\n",
        output::count(d.delivered as i64, "delivery", "deliveries"),
        output::count(d.completed as i64, "intent", "intents"),
        d.failed,
        d.waiting
    )
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("could not start the async runtime")
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn scan_command(
    settings: &Settings,
    format: OutputFormat,
    dry_run: bool,
) -> anyhow::Result<Outcome> {
    let store = ScanStore::open(settings, dry_run)?;
    let aws = aws::base_config(&settings.aws).await;
    let progress = progress_bar();
    let done = scan_once(settings, &aws, store.store.clone(), progress, dry_run)
        .await
        .context("the scan could not be recorded")?;
    let mut doc = output::document(&done.scan, &settings.policy, chrono::Utc::now());
    doc.not_scanned = done.not_scanned.clone();
    doc.reconcile = Some(output::ReconcileView {
        committed: done.reconciled.committed,
        observations: done.reconciled.observations,
        stale_observations: done.reconciled.stale,
        intents: &done.reconciled.intents,
    });
    match format {
        OutputFormat::Json => out(format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).context("could not render JSON")?
        ))?,
        OutputFormat::Table => {
            out(output::table(&doc))?;
            out(output::intents_text(
                &done.reconciled.intents,
                done.reconciled.committed,
            ))?;
        }
    }
    // What was committed is delivered before exiting, so a cron-style deployment works; a
    // delivery failure never fails the scan (the intents stay in the outbox).
    if !dry_run {
        let delivered = match Dispatcher::new(store.store.clone(), settings) {
            Ok(dispatcher) => dispatcher.drain().await.map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match delivered {
            Ok(drained) => tracing::info!("{}", delivery_line(&drained).trim_end()),
            Err(e) => {
                tracing::error!(error = %e, "the outbox could not be delivered; it is kept for the next run")
            }
        }
    }
    Ok(if done.scan.complete() {
        Outcome::Done
    } else {
        Outcome::PartialScan
    })
}

/// `state forget ACCOUNT[/REGION]`: the one state command that writes.
fn forget(settings: &Settings, target: &str) -> anyhow::Result<Outcome> {
    let (account, region) = match target.split_once('/') {
        Some((account, region)) => (account, Some(region)),
        None => (target, None),
    };
    let store = certsentinel::daemon::open_store(settings)?;
    let stored = store.regions()?;
    let known = stored
        .iter()
        .any(|r| r.account == account && region.is_none_or(|region| r.region == region));
    if !known {
        anyhow::bail!("nothing is stored for {target}: `certsentinel state list` shows what is");
    }
    let dropped = store.forget(account, region)?;
    out(format!(
        "forgot {} of {target}; a scan that reads it again starts anew\n",
        output::count(dropped as i64, "certificate", "certificates")
    ))?;
    Ok(Outcome::Done)
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
fn progress_bar() -> Arc<dyn scan::Progress> {
    if !std::io::stderr().is_terminal() {
        return Arc::new(scan::NoProgress);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} reading stages {pos}/{len} APIs [{elapsed}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Arc::new(Bar(bar))
}

/// A progress bar on stderr; cleared when the scan drops its progress.
struct Bar(indicatif::ProgressBar);

impl scan::Progress for Bar {
    fn add_work(&self, n: u64) {
        self.0.inc_length(n);
    }
    fn work_done(&self, n: u64) {
        self.0.inc(n);
    }
}

fn state_command(settings: &Settings, command: StateCommand) -> anyhow::Result<Outcome> {
    if let StateCommand::Forget { target } = &command {
        return forget(settings, target);
    }
    let store = StateSource::open(settings)?;
    let now = chrono::Utc::now();
    match command {
        StateCommand::List {
            band,
            owner,
            format,
        } => {
            let records: Vec<CertificateRecord> = store.records()?;
            let regions = store.regions()?;
            let not_read = output::regions_not_read_lately(&regions);
            let band = band.map(|b| b.to_string());
            let rows: Vec<output::StateRow<'_>> = records
                .iter()
                .map(|r| {
                    let mut row = output::state_row(r, &settings.policy, now);
                    row.not_scanned_since = not_read
                        .iter()
                        .find(|n| n.account == r.key.account && n.region == r.key.region)
                        .map(|n| n.last_observed_at);
                    row
                })
                .filter(|row| band.as_ref().is_none_or(|b| &row.band == b))
                .filter(|row| owner.as_ref().is_none_or(|o| row.owners.contains(o)))
                .collect();
            match format {
                OutputFormat::Table => out(output::state_table_with(
                    &rows,
                    &not_read,
                    &store.targets()?,
                ))?,
                OutputFormat::Json => out(format!("{}\n", serde_json::to_string_pretty(&rows)?))?,
            }
        }
        StateCommand::Show { certificate } => match store.find(&certificate)?.as_slice() {
            [] => anyhow::bail!("no certificate {certificate} in the state database"),
            [found] => out(format!("{}\n", serde_json::to_string_pretty(found)?))?,
            many => anyhow::bail!(
                "{certificate} names {} certificates; give account/region/id: {}",
                many.len(),
                many.iter()
                    .map(|f| f.record.key.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        StateCommand::Forget { .. } => unreachable!("handled above: it writes"),
        StateCommand::Outbox { format } => {
            let Outbox { pending, delivered } = store.outbox(20)?;
            match format {
                OutputFormat::Table => out(output::outbox_table(&pending, &delivered))?,
                OutputFormat::Json => out(format!(
                    "{}\n",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"pending": pending, "delivered": delivered})
                    )?
                ))?,
            }
        }
        StateCommand::Export => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            store.export(&mut out)?;
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(Outcome::Done)
}

/// Computes a report from the records, one at a time, and writes it.
fn report_command(
    settings: &Settings,
    options: ReportOptions,
    format: ReportFormat,
    out_file: Option<PathBuf>,
    from: Option<PathBuf>,
) -> anyhow::Result<Outcome> {
    let report = match from {
        // An export holds records only: failed deliveries stay unknown, and say so.
        Some(path) => {
            let mut builder = ReportBuilder::new(options);
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            for (n, line) in std::io::BufRead::lines(std::io::BufReader::new(file)).enumerate() {
                let line = line.with_context(|| format!("cannot read {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let record: CertificateRecord = serde_json::from_str(&line).with_context(|| {
                    format!(
                        "{} line {}: not a record of `certsentinel state export`",
                        path.display(),
                        n + 1
                    )
                })?;
                builder.add(&record);
            }
            builder.finish()
        }
        None => match StateSource::open(settings)? {
            StateSource::Store(store) => report_page::report_from_store(&store, options)?,
            StateSource::Daemon { client, runtime } => {
                // One record at a time as they stream in, as from the store.
                let mut builder = ReportBuilder::new(options);
                runtime.block_on(client.each_record(&mut |record| builder.add(&record)))?;
                let pending = runtime.block_on(client.outbox(0))?.pending;
                report_page::add_failed_deliveries(&mut builder, &pending);
                builder.finish()
            }
        },
    };
    let text = match format {
        ReportFormat::Table => report::table(&report),
        ReportFormat::Json => report::json(&report),
        ReportFormat::Csv => report::csv(&report)?,
        ReportFormat::Html => report::html(&report)?,
    };
    match out_file {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => out(text)?,
    }
    Ok(Outcome::Done)
}

/// Where `state` reads: the database itself (read-only: never created, migrated or written),
/// or, while a running daemon holds its lock, that daemon's listener, so the commands work
/// the same whether it runs or not.
enum StateSource {
    Store(SledStore),
    Daemon {
        client: StateClient,
        runtime: tokio::runtime::Runtime,
    },
}

impl StateSource {
    fn open(settings: &Settings) -> anyhow::Result<StateSource> {
        match SledStore::open_read_only(&settings.store.path, settings.store.cache_mb * 1024 * 1024)
        {
            Ok(store) => Ok(StateSource::Store(store)),
            Err(locked @ StoreError::Locked { .. }) => {
                let Some(client) = StateClient::for_listen(&settings.daemon.listen) else {
                    anyhow::bail!(
                        "{locked}; daemon.listen ({:?}) names no address to read its state through while it runs",
                        settings.daemon.listen
                    );
                };
                let runtime = runtime()?;
                if let Err(e) = runtime.block_on(client.regions()) {
                    anyhow::bail!("{locked}\n(and its listener did not answer: {e})");
                }
                eprintln!(
                    "certsentinel: a running daemon holds the state database; reading its state through {}",
                    client.base()
                );
                Ok(StateSource::Daemon { client, runtime })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn records(&self) -> anyhow::Result<Vec<CertificateRecord>> {
        Ok(match self {
            StateSource::Store(s) => s.records().collect::<Result<_, _>>()?,
            StateSource::Daemon { client, runtime } => runtime.block_on(client.records())?,
        })
    }

    fn regions(&self) -> anyhow::Result<Vec<certsentinel::store::StoredRegion>> {
        Ok(match self {
            StateSource::Store(s) => s.regions()?,
            StateSource::Daemon { client, runtime } => runtime.block_on(client.regions())?,
        })
    }

    fn targets(&self) -> anyhow::Result<Vec<certsentinel::lifecycle::TargetHealth>> {
        Ok(match self {
            StateSource::Store(s) => s.targets()?,
            StateSource::Daemon { client, runtime } => runtime.block_on(client.targets())?,
        })
    }

    fn find(&self, name: &str) -> anyhow::Result<Vec<Found>> {
        Ok(match self {
            StateSource::Store(s) => state_api::find(s, name)?,
            StateSource::Daemon { client, runtime } => runtime.block_on(client.find(name))?,
        })
    }

    fn outbox(&self, delivered: usize) -> anyhow::Result<Outbox> {
        Ok(match self {
            StateSource::Store(s) => Outbox {
                pending: s.outbox_pending()?,
                delivered: s.delivered(delivered)?,
            },
            StateSource::Daemon { client, runtime } => {
                runtime.block_on(client.outbox(delivered))?
            }
        })
    }

    fn export(&self, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
        Ok(match self {
            StateSource::Store(s) => s.export_jsonl(out)?,
            StateSource::Daemon { client, runtime } => runtime.block_on(client.export(out))?,
        })
    }
}
