//! Delivering the outbox: every intent the engine decided reaches the backends of the route
//! its owner falls in, once. This module owns routing, the backends (`log`, `webhook`, `pagerduty`, `jira`, `email`), and
//! the dispatcher that drains the outbox. It must never deliver what the store has not made
//! durable, never drop an intent for lack of a route, and never decide anything: what to say
//! is the engine's, how to keep it the store's.
//!
//! Backends follow Vector's sinks: each says *whether* a failure is worth retrying (its
//! classifier), [`crate::retry::Backoff`] says *how*; the dispatcher records each outcome
//! durably before moving on.

pub mod backend;
pub mod dispatcher;
pub mod email;
pub mod jira;
pub mod pagerduty;
pub mod route;
pub mod webhook;

pub use backend::{Backend, DeliveryError, LogBackend};
pub use dispatcher::{Dispatcher, Drained};
pub use route::Routes;

/// Why delivery cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Setup(String),
}
