//! The lifecycle engine: pure decisions about each certificate's state. It owns the rotation
//! policy and, in time, the transitions and intents; it performs no I/O and reads no clock.

pub mod policy;
