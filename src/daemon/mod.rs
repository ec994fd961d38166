//! Wiring: runs the pipeline's stages in order and owns nothing of their logic. Today it
//! reconciles a scan into the store; the scheduler, change events and notifiers are wired
//! here as they arrive.

pub mod reconcile;
pub mod run;
