//! Inventory: what exists in AWS right now. It owns reaching each account and region, the
//! rate-limited and retried calls, reading certificates (PEM, expiry, fingerprint), resolving
//! owners from tags, and joining stages to the certificates they present. It produces facts,
//! never decisions: bands, tickets and states belong to `lifecycle`.

pub mod aws;
pub mod call;
pub mod clock;
pub mod control_plane;
pub mod model;
pub mod owner;
pub mod pem;
pub mod reread;
pub mod scan;
