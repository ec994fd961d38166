//! The long-running daemon: built from settings, run until a shutdown future resolves.
//! The scan worker repeats [`super::scan_and_record`] (each account and region recorded as
//! it is read); the event receivers repeat [`Changes::handle`].
//!
//! Tasks, siblings in one `JoinSet`, each with a clone of the one shutdown token: the scan
//! worker (scans on the cron schedule, if there is one, and reconciles each scan into the
//! store), the event receivers (`events.receivers` per queue, each long-polling and handing
//! its batch to [`Changes::handle`]), the delivery worker (drains the outbox), and the HTTP
//! listener.
//!
//! Shutdown: receivers stop receiving; a batch already received is read, decided, committed
//! and deleted to its end. A scan still reading from AWS is abandoned (nothing of it was
//! committed); a scan whose decisions are being committed is allowed to finish, so the store
//! is left exactly as a completed scan leaves it. All of it within `daemon.stop_timeout_secs`;
//! past it the tasks are dropped (what they committed is durable: every commit flushes). The
//! scheduler only signals ticks; scans run one at a time in the worker. While a scan runs, one
//! tick may wait to run after it; further ticks are skipped, logged and counted, so a slow
//! scan never piles up scans behind it. A task that fails stops the daemon with its error
//! (the supervisor restarts it), never silently.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use super::changes::{Changes, Outcome};
use super::http::{Observatory, router, two_periods};
use super::step::{ScanOutcome, open_store, scan_and_record};
use crate::config::Settings;
use crate::events::Queue;
use crate::inventory::aws;
use crate::inventory::call::Paces;
use crate::inventory::scan::TargetStatus;
use crate::notify::Dispatcher;
use crate::output;
use crate::store::{SledStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the scan schedule could not be set up: {0}")]
    Schedule(#[from] JobSchedulerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Task(String),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// `skew_seconds` is the local clock minus AWS's.
    #[error(
        "this host's clock is {} s {} AWS's (more than aws.max_clock_skew_secs = {limit}): nothing was decided; set the clock right (NTP)",
        .skew_seconds.abs(),
        if *.skew_seconds > 0 { "ahead of" } else { "behind" }
    )]
    ClockSkew { skew_seconds: i64, limit: u64 },
}

impl DaemonError {
    /// Whether the daemon must stop rather than try again at the next scan. A conflict is
    /// decided again next time; anything else from the store (a full disk, an I/O error)
    /// leaves sled failing every later write until it is reopened, so the daemon exits and
    /// its supervisor restarts it, never wedged in a loop of failed commits.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            DaemonError::Store(StoreError::Conflict { .. }) | DaemonError::ClockSkew { .. }
        )
    }
}

/// The daemon, built and ready to run.
pub struct Daemon {
    settings: Arc<Settings>,
    store: Arc<SledStore>,
    aws: SdkConfig,
    /// The HTTP listener's socket, bound at build so that a port in use fails the start.
    listener: Option<std::net::TcpListener>,
}

impl Daemon {
    /// Opens the store and loads the ambient AWS configuration (default credential chain).
    pub async fn build(settings: Settings) -> Result<Daemon, DaemonError> {
        let aws = aws::base_config(&settings.aws).await;
        Self::build_with_aws(settings, aws)
    }

    /// As [`Daemon::build`], reaching AWS through `aws` (tests point it at their fakes).
    pub fn build_with_aws(settings: Settings, aws: SdkConfig) -> Result<Daemon, DaemonError> {
        let store = Arc::new(open_store(&settings)?);
        let listener = if settings.daemon.listen.is_empty() {
            None
        } else {
            let listener = std::net::TcpListener::bind(&settings.daemon.listen).map_err(|e| {
                DaemonError::Task(format!(
                    "cannot listen on {} (daemon.listen): {e}",
                    settings.daemon.listen
                ))
            })?;
            listener
                .set_nonblocking(true)
                .map_err(|e| DaemonError::Task(format!("daemon.listen: {e}")))?;
            Some(listener)
        };
        Ok(Daemon {
            settings: Arc::new(settings),
            store,
            aws,
            listener,
        })
    }

    /// Where the HTTP listener listens (a `:0` port resolved), if there is one.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The store the daemon writes, for readers in the same process.
    pub fn store(&self) -> Arc<SledStore> {
        self.store.clone()
    }

    /// Runs every task until `shutdown` resolves or a task fails; then stops them all, waits
    /// for them, and flushes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let settings = self.settings.clone();
        let on_schedule = settings.daemon.scans_on_schedule();
        let observatory = Observatory::new(
            self.store.clone(),
            on_schedule.then(|| two_periods(&settings.daemon.schedule)),
            &settings.events.queue_url,
        );
        let (tick_tx, tick_rx) = mpsc::channel::<()>(1);
        let schedule = if on_schedule {
            let (scheduler, job) = schedule_ticks(
                &settings.daemon.schedule,
                tick_tx.clone(),
                observatory.clone(),
            )
            .await?;
            Some(Schedule { scheduler, job })
        } else {
            None
        };
        if settings.daemon.scan_on_start {
            let _ = tick_tx.try_send(());
        }
        drop(tick_tx);
        let next_scan = next_scan(schedule.as_ref()).await;
        if !on_schedule {
            tracing::warn!("{}", crate::config::EVENTS_ONLY_WARNING);
        }
        tracing::info!(
            mode = %settings.mode(),
            store = %settings.store.path.display(),
            %next_scan,
            "certsentinel is running"
        );

        let stop = CancellationToken::new();
        let decided = Arc::new(Notify::new());
        // Scans and event re-reads of one account and region keep to one rate limit.
        let paces = Arc::new(Paces::default());
        let mut tasks: JoinSet<Result<(), DaemonError>> = JoinSet::new();
        let scheduler = schedule.as_ref().map(|s| s.scheduler.clone());
        tasks.spawn(scan_worker(
            ScanWorker {
                settings: settings.clone(),
                aws: self.aws.clone(),
                store: self.store.clone(),
                ticks: tick_rx,
                schedule,
                decided: decided.clone(),
                observatory: observatory.clone(),
                paces: paces.clone(),
            },
            stop.clone(),
        ));
        if settings.events.enabled() {
            let changed = Arc::new(Notify::new());
            tasks.spawn(kpi_worker(
                self.store.clone(),
                settings.clone(),
                observatory.clone(),
                changed.clone(),
                stop.clone(),
            ));
            let changes = Arc::new(Changes::new(
                settings.clone(),
                self.aws.clone(),
                self.store.clone(),
                paces.clone(),
            ));
            for url in &settings.events.queue_url {
                let queue = Queue::new(&self.aws, url, &settings.events);
                for _ in 0..settings.events.receivers {
                    tasks.spawn(event_receiver(
                        EventReceiver {
                            queue: queue.clone(),
                            changes: changes.clone(),
                            observatory: observatory.clone(),
                            decided: decided.clone(),
                            changed: changed.clone(),
                        },
                        stop.clone(),
                    ));
                }
            }
        }
        if let Some(listener) = self.listener {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| DaemonError::Task(format!("daemon.listen: {e}")))?;
            tracing::info!(listen = %self.settings.daemon.listen, "serving /healthz, /readyz and /metrics");
            let stopped = stop.clone();
            let policy = settings.policy.clone();
            tasks.spawn(async move {
                axum::serve(listener, router(observatory, policy))
                    .with_graceful_shutdown(stopped.cancelled_owned())
                    .await
                    .map_err(|e| DaemonError::Task(format!("the HTTP listener failed: {e}")))
            });
        }
        tasks.spawn(delivery_worker(
            Dispatcher::new(self.store.clone(), &self.settings)?,
            Duration::from_secs(self.settings.notify.interval_secs),
            decided,
            stop.clone(),
        ));

        let mut outcome = Ok(());
        tokio::select! {
            _ = shutdown => tracing::info!("shutting down: no more events are received; the work in flight is finished"),
            Some(ended) = tasks.join_next() => outcome = task_result(ended),
        }
        stop.cancel();
        let bound = Duration::from_secs(settings.daemon.stop_timeout_secs);
        let joined = tokio::time::timeout(bound, async {
            let mut outcome = Ok(());
            while let Some(ended) = tasks.join_next().await {
                if let Err(e) = task_result(ended) {
                    outcome = outcome.and(Err(e));
                }
            }
            outcome
        })
        .await;
        match joined {
            Ok(joined) => outcome = outcome.and(joined),
            Err(_) => {
                tracing::warn!(
                    seconds = bound.as_secs(),
                    "the work in flight did not finish within daemon.stop_timeout_secs: stopping anyway (what was committed is durable; messages not deleted reappear)"
                );
                tasks.abort_all();
            }
        }
        if let Some(mut scheduler) = scheduler {
            scheduler.shutdown().await?;
        }
        self.store.flush()?;
        tracing::info!("certsentinel stopped");
        outcome
    }
}

fn task_result(
    ended: Result<Result<(), DaemonError>, tokio::task::JoinError>,
) -> Result<(), DaemonError> {
    ended.map_err(|e| DaemonError::Task(format!("a daemon task failed: {e}")))?
}

/// A cron job that only signals a tick; a tick that finds the channel full (a scan running, one
/// already waiting) is skipped.
async fn schedule_ticks(
    schedule: &str,
    ticks: mpsc::Sender<()>,
    observatory: Arc<Observatory>,
) -> Result<(JobScheduler, uuid::Uuid), JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let job = scheduler
        .add(Job::new_async(schedule, move |_, _| {
            let ticks = ticks.clone();
            let observatory = observatory.clone();
            Box::pin(async move {
                if ticks.try_send(()).is_err() {
                    observatory.scan_skipped();
                    tracing::warn!("a scan is still running; this scheduled scan is skipped");
                }
            })
        })?)
        .await?;
    scheduler.start().await?;
    Ok((scheduler, job))
}

/// The scan schedule, to say when the next scan is.
struct Schedule {
    scheduler: JobScheduler,
    job: uuid::Uuid,
}

/// When the next scheduled scan is, in words.
async fn next_scan(schedule: Option<&Schedule>) -> String {
    let Some(schedule) = schedule else {
        return "none scheduled".to_string();
    };
    let mut scheduler = schedule.scheduler.clone();
    match scheduler.next_tick_for_job(schedule.job).await {
        Ok(Some(at)) => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        _ => "unknown".to_string(),
    }
}

/// What the scan worker works with.
struct ScanWorker {
    settings: Arc<Settings>,
    aws: SdkConfig,
    store: Arc<SledStore>,
    ticks: mpsc::Receiver<()>,
    schedule: Option<Schedule>,
    /// Woken after each recorded scan: the delivery worker drains the outbox.
    decided: Arc<Notify>,
    observatory: Arc<Observatory>,
    paces: Arc<Paces>,
}

/// Scans on each tick until `stop` is cancelled. A scan that cannot be recorded is logged and
/// decided again at the next tick.
async fn scan_worker(worker: ScanWorker, stop: CancellationToken) -> Result<(), DaemonError> {
    let ScanWorker {
        settings,
        aws,
        store,
        mut ticks,
        schedule,
        decided,
        observatory,
        paces,
    } = worker;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            tick = ticks.recv() => if tick.is_none() {
                // No schedule, and the scan at start is done: events carry on alone.
                stop.cancelled().await;
                return Ok(());
            },
        }
        let started = Instant::now();
        // Each account and region is recorded as soon as it is read, then dropped. Waiting
        // for the next is cancellable; recording one is not: a stop leaves each account and
        // region either recorded whole or untouched.
        let recorded = match scan_and_record(&settings, &aws, store.clone(), paces.clone(), &stop)
            .await
        {
            Ok(None) => {
                tracing::info!(
                    "shutting down: the scan in progress is abandoned; the accounts and regions it recorded stay recorded"
                );
                return Ok(());
            }
            Ok(Some(done)) => Ok(done),
            Err(e) => Err(e),
        };
        match recorded {
            Ok(done) => {
                observatory.scan_recorded(&done, started.elapsed().as_secs_f64());
                // The KPIs, for Grafana: one read of every record, after each scan.
                refresh_kpis(&store, &settings.policy, &observatory).await;
                report(&done, started, schedule.as_ref()).await;
                decided.notify_one();
            }
            Err(e) if e.is_fatal() => {
                observatory.scan_failed();
                tracing::error!(
                    error = %e,
                    "the state database failed: stopping, so that the supervisor restarts certsentinel with the database reopened"
                );
                return Err(e);
            }
            Err(e) => {
                observatory.scan_failed();
                let next_scan = next_scan(schedule.as_ref()).await;
                tracing::warn!(
                    error = %e,
                    %next_scan,
                    "the scan could not be recorded; the next scan will decide again"
                );
            }
        }
        release_freed_memory();
    }
}

/// What one event receiver works with.
struct EventReceiver {
    queue: Queue,
    changes: Arc<Changes>,
    observatory: Arc<Observatory>,
    /// Woken after each batch that decided intents: the delivery worker drains the outbox.
    decided: Arc<Notify>,
    /// Woken after each batch that read something again: the KPI worker computes them.
    changed: Arc<Notify>,
}

/// Receives from one queue until `stop`, handing each batch to [`Changes::handle`]. A batch
/// received is finished (read, decided, committed, its messages deleted) even if `stop`
/// comes meanwhile; only the wait for the next batch is cancelled. A queue that cannot be
/// reached is retried with growing pauses (up to a minute) and reported by `/readyz`.
async fn event_receiver(
    receiver: EventReceiver,
    stop: CancellationToken,
) -> Result<(), DaemonError> {
    let EventReceiver {
        queue,
        changes,
        observatory,
        decided,
        changed,
    } = receiver;
    let mut throttles_seen = queue.throttles();
    let mut failures: u32 = 0;
    let mut answered = |observatory: &Observatory, answer: Result<(), String>| {
        let throttles = queue.throttles();
        observatory.queue_answered(queue.url(), answer, throttles - throttles_seen);
        throttles_seen = throttles;
    };
    tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        checked = queue.check() => answered(&observatory, checked.map_err(|e| e.to_string())),
    }
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            received = queue.receive() => received,
        };
        let messages = match received {
            Ok(messages) => {
                failures = 0;
                answered(&observatory, Ok(()));
                messages
            }
            Err(e) => {
                failures += 1;
                answered(&observatory, Err(e.to_string()));
                let pause =
                    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60));
                tracing::warn!(error = %e, retry_in_secs = pause.as_secs(), "cannot receive change events");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        if messages.is_empty() {
            continue;
        }
        observatory.messages_received(messages.iter().filter_map(|m| m.sent_at).min());
        // From here the batch is finished whatever `stop` says: decisions are committed
        // before any message is deleted. Meanwhile its messages are kept hidden, however long
        // the reads take (a throttled account waits its patience out).
        let handling = changes.handle(messages.clone());
        tokio::pin!(handling);
        let half = queue.visibility_timeout() / 2;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
        let handled = loop {
            tokio::select! {
                handled = &mut handling => break handled?,
                _ = beat.tick() => {
                    if let Err(e) = queue.keep_hidden(&messages).await {
                        tracing::warn!(error = %e, "could not keep the messages in hand hidden: they may be handled twice, which changes nothing");
                    }
                }
            }
        };
        observatory.events_handled(&handled.events);
        observatory.calls_made(&handled.calls);
        for event in handled
            .events
            .iter()
            .filter(|e| e.outcome == Outcome::Reread)
        {
            tracing::info!(message_id = %event.message_id, event = %event.event_name, "change read again and decided");
        }
        log_intents(&handled.intents);
        if !handled.intents.is_empty() {
            decided.notify_one();
        }
        if handled.events.iter().any(|e| e.outcome == Outcome::Reread) {
            changed.notify_one();
        }
        if handled.done.is_empty() {
            continue;
        }
        let done: Vec<&crate::events::Message> = handled.done.iter().collect();
        match queue.delete(&done).await {
            Ok(refused) => {
                for (id, why) in refused {
                    tracing::warn!(message_id = %id, reason = %why, "SQS did not delete a handled message: it reappears and is decided again, which changes nothing");
                }
            }
            Err(e) => {
                answered(&observatory, Err(e.to_string()));
                tracing::warn!(error = %e, messages = done.len(), "could not delete handled messages: they reappear and are decided again, which changes nothing");
            }
        }
    }
}

/// Delivers the outbox right after each scan and every `interval` between them, until `stop`.
/// A drain under way when the daemon stops is abandoned: what it delivered is recorded, and
/// an answer it was waiting for is asked for again next time (deliveries are idempotent).
async fn delivery_worker(
    dispatcher: Dispatcher,
    interval: Duration,
    decided: Arc<Notify>,
    stop: CancellationToken,
) -> Result<(), DaemonError> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = decided.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            drained = dispatcher.drain() => {
                if let Err(e) = drained {
                    let e = DaemonError::Store(e);
                    if e.is_fatal() {
                        tracing::error!(error = %e, "the state database failed while delivering: stopping");
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Computes the KPIs over every record, off the async workers, and sets their gauges.
async fn refresh_kpis(
    store: &Arc<SledStore>,
    policy: &crate::lifecycle::Policy,
    observatory: &Observatory,
) {
    let reader = store.clone();
    let policy = policy.clone();
    match tokio::task::spawn_blocking(move || kpis_now(reader.as_ref(), &policy)).await {
        Ok(Ok(kpis)) => observatory.kpis(&kpis),
        Ok(Err(e)) => tracing::warn!(error = %e, "the KPIs could not be computed"),
        Err(e) => tracing::warn!(error = %e, "the KPIs could not be computed"),
    }
}

/// Keeps the KPI gauges current between scans (and in a daemon without a schedule): after a
/// batch of events read something again. Each computation walks every record (about a second
/// at 100,000 certificates), so a busy queue must not make that constant: after each, the
/// worker rests ten times as long as it took (at least a second, at most a minute), which
/// keeps it under a tenth of one core; a change during the rest is computed at its end.
async fn kpi_worker(
    store: Arc<SledStore>,
    settings: Arc<Settings>,
    observatory: Arc<Observatory>,
    changed: Arc<Notify>,
    stop: CancellationToken,
) -> Result<(), DaemonError> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = changed.notified() => {}
        }
        let started = tokio::time::Instant::now();
        refresh_kpis(&store, &settings.policy, &observatory).await;
        let rest = (started.elapsed() * 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(rest) => {}
        }
    }
}

/// The KPIs over every record, as of now.
fn kpis_now(
    store: &SledStore,
    policy: &crate::lifecycle::Policy,
) -> Result<crate::report::Kpis, StoreError> {
    let mut builder = crate::report::ReportBuilder::new(crate::report::ReportOptions {
        since: None,
        until: None,
        team: None,
        now: chrono::Utc::now(),
        policy: policy.clone(),
    });
    store.each_record(&mut |record| builder.add(&record))?;
    Ok(builder.finish().kpis)
}

/// Each decided intent on one line, in words.
fn log_intents(intents: &[crate::lifecycle::Intent]) {
    for intent in intents {
        tracing::info!(
            certificate = %intent.certificate,
            owner = intent.owner.as_deref().unwrap_or(output::NO_OWNER),
            key = %intent.key,
            "{}",
            output::intent_words(intent)
        );
    }
}

/// Logs what a scan did: each decided intent on one line, ignored stale observations, the
/// targets that could not be read, the totals, and when the next scan is.
async fn report(done: &ScanOutcome, started: Instant, schedule: Option<&Schedule>) {
    log_intents(&done.reconciled.intents);
    if done.reconciled.stale > 0 {
        tracing::warn!(
            stale = done.reconciled.stale,
            "observations older than what is stored were ignored (another scanner, or a clock that went back?)"
        );
    }
    for target in &done.scan.targets {
        if let TargetStatus::Failed { reason_kind, error } = &target.status {
            tracing::warn!(
                account = %target.account,
                region = %target.region,
                reason = %reason_kind,
                error = %error,
                "account and region not read; nothing there was decided"
            );
        }
    }
    let next_scan = next_scan(schedule).await;
    let incomplete = done
        .scan
        .targets
        .iter()
        .filter(|t| !matches!(t.status, TargetStatus::Complete))
        .count();
    tracing::info!(
        complete = done.scan.complete(),
        targets = done.scan.targets.len(),
        incomplete_targets = incomplete,
        certificates = done.tally.certificates,
        intents = done.reconciled.intents.len(),
        seconds = started.elapsed().as_secs_f64(),
        %next_scan,
        "scan finished"
    );
}

/// Gives the heap freed by a scan back to the operating system. The daemon sleeps for hours
/// between scans, and glibc would otherwise keep the peak of the last one resident (about
/// 80 MiB after a 100,000-certificate scan, measured by `cargo bench --bench lifecycle`).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes a byte count and has no other preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}
