//! certsentinel keeps AWS API Gateway client certificates (the certificates a stage presents
//! to its mTLS backend) from expiring in service.
//!
//! The pipeline, one way only: `inventory` (scheduled scans) and `events` (CloudTrail change
//! events) produce observations; `lifecycle` is the pure engine that turns them into
//! state and intended actions; the store persists both; notifiers act on the outbox; reports
//! read the store. `config` and `telemetry` stand apart. See ARCHITECTURE.md.

pub mod config;
pub mod daemon;
pub mod events;
pub mod ids;
pub mod inventory;
pub mod lifecycle;
pub mod notify;
pub mod observe;
pub mod output;
pub mod permissions;
pub mod report;
pub mod retry;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod test_support;
