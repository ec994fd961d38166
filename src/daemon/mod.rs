//! Wiring: runs the pipeline's stages in order and owns nothing of their logic.
//!
//! - [`scan_once`] is one step of the scan worker: scan, reconcile into the store, durably.
//!   `certsentinel scan --once` is exactly this step; the daemon repeats it on its schedule.
//! - [`Daemon`] is the long-running service, shaped to be driven by tests as well as by the
//!   binary: [`Daemon::build`] from settings, then [`Daemon::run_until_stopped`] with a
//!   shutdown future (the binary passes SIGTERM/Ctrl-C, tests their own). Its tasks run in one
//!   `JoinSet`, each holding a clone of one shutdown token, so change events, the outbox
//!   dispatcher and the HTTP listener join as siblings of the scan worker.
//!
//! It must never hold business logic: what a scan means is `observe` and `lifecycle`'s, how it
//! is kept is `store`'s.

mod app;
pub mod changes;
pub mod http;
pub mod reconcile;
pub mod state_api;
mod step;

pub use app::{Daemon, DaemonError};
pub use step::{
    ScanOutcome, ScanStore, Tally, not_scanned, open_store, record_scan, scan_and_record, scan_once,
};
