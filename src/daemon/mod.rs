//! Wiring: runs the pipeline's stages in order and owns nothing of their logic.
//!
//! - [`scan_once`] scans, then reconciles into the store, durably: `certsentinel scan
//!   --once`. [`scan_and_record`] is the daemon's scan step: the same, one account and region
//!   at a time as each is read, so the estate is never held whole.
//! - [`changes::Changes::handle`] is the event step: a batch of messages read again, decided,
//!   committed, and which of them may be deleted.
//! - [`Daemon`] is the long-running service, shaped to be driven by tests as well as by the
//!   binary: [`Daemon::build`] from settings, then [`Daemon::run_until_stopped`] with a
//!   shutdown future (the binary passes SIGTERM/Ctrl-C, tests their own). Its tasks run in one
//!   `JoinSet`, each holding a clone of one shutdown token: the scan worker, the event
//!   receivers, the outbox dispatcher and the HTTP listener.
//!
//! It must never hold business logic: what a scan means is `observe` and `lifecycle`'s, how it
//! is kept is `store`'s.

mod app;
pub mod changes;
pub mod http;
pub mod reconcile;
pub mod report_page;
pub mod state_api;
mod step;

pub use app::{Daemon, DaemonError};
pub use step::{
    ScanOutcome, ScanStore, Tally, not_scanned, open_store, record_scan, scan_and_record, scan_once,
};
