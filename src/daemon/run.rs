//! The long-running daemon: scans on a cron schedule (tokio-cron-scheduler), reconciles each
//! complete scan into the store, and shuts down gracefully on SIGTERM or Ctrl-C.
//!
//! Shutdown: a scan still reading from AWS is abandoned (nothing of it was committed); a scan
//! whose decisions are being committed is allowed to finish, so the store is left exactly as a
//! completed scan leaves it. The scheduler only signals ticks; scans run one at a time in this
//! task. While a scan runs, one tick may wait to run after it; further ticks are skipped with
//! a warning, so a slow scan never piles up scans behind it.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::config::Settings;
use crate::daemon::reconcile::reconcile_scan;
use crate::inventory::scan::{self, NoProgress};
use crate::store::{SledStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the scan schedule could not be set up: {0}")]
    Schedule(#[from] JobSchedulerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Waits for SIGTERM or Ctrl-C.
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

/// Runs until a shutdown signal arrives.
pub async fn run(settings: Arc<Settings>, store: Arc<SledStore>) -> Result<(), DaemonError> {
    let (tick_tx, mut tick_rx) = mpsc::channel::<()>(1);
    let mut scheduler = JobScheduler::new().await?;
    let ticks = tick_tx.clone();
    scheduler
        .add(Job::new_async(
            settings.daemon.schedule.as_str(),
            move |_, _| {
                let ticks = ticks.clone();
                Box::pin(async move {
                    if ticks.try_send(()).is_err() {
                        tracing::warn!("a scan is still running; this scheduled scan is skipped");
                    }
                })
            },
        )?)
        .await?;
    scheduler.start().await?;
    if settings.daemon.scan_on_start {
        let _ = tick_tx.try_send(());
    }
    tracing::info!(schedule = %settings.daemon.schedule, store = %settings.store.path.display(), "certsentinel is running");

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = tick_rx.recv() => {
                let started = Instant::now();
                // Reading is cancellable: nothing has been committed yet.
                let result = tokio::select! {
                    result = scan::scan_all(&settings, Arc::new(NoProgress)) => result,
                    _ = &mut shutdown => {
                        tracing::info!("shutting down: the scan in progress is abandoned before committing anything");
                        break;
                    }
                };
                // Committing is not: it runs to the end even if a signal arrives meanwhile.
                let (settings_c, store_c) = (settings.clone(), store.clone());
                let committed = tokio::task::spawn_blocking(move || {
                    let now = chrono::Utc::now();
                    let reconciled = reconcile_scan(store_c.as_ref(), &result, &settings_c.policy, now, false);
                    (result, reconciled)
                })
                .await;
                match committed {
                    Ok((result, Ok(reconciled))) => tracing::info!(
                        complete = result.complete(),
                        targets = result.targets.len(),
                        incomplete_targets = result.targets.iter().filter(|t| !matches!(t.status, scan::TargetStatus::Complete)).count(),
                        certificates = result.certificates().count(),
                        intents = reconciled.intents.len(),
                        seconds = started.elapsed().as_secs_f64(),
                        "scan finished"
                    ),
                    Ok((_, Err(e))) => tracing::error!(error = %e, "the scan could not be recorded; the next scan will decide again"),
                    Err(e) => tracing::error!(error = %e, "the reconcile task failed"),
                }
                release_freed_memory();
            }
        }
    }
    scheduler.shutdown().await?;
    store.flush()?;
    tracing::info!("certsentinel stopped");
    Ok(())
}
