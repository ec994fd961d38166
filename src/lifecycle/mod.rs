//! The certificate lifecycle: what an observation of a certificate means, as durable state and
//! intended actions. This module owns the rules (the policy), the data (records, episodes,
//! intents) and the pure decision function. It does no I/O and never reads the clock: time is
//! a parameter, so the same input always gives the same output. Storing decisions is
//! [`crate::store`]'s job; telling people is the notifier's.
//!
//! # States of a certificate
//!
//! ```text
//!                      first observation / reappears after deletion
//!                                      |
//!            +------------------+------+-------------------+
//!            v                  v                          v
//!        Healthy <--------> Unused                 (any state) --Gone--> Deleted
//!          |   ^  at risk      ^                                            |
//!          |   |  gone, or     | never at risk:                  Present:   |
//!          |   |  renewed      | last stage leaves               recomputed |
//!          v   |               |                                 (new ids)  v
//!        Expiring{step} ------ + ----- last stage leaves -----> RotatedAway{since, reminded}
//!          |   step 30 -> 14 -> 7 (each once per episode)        | cleanup_after_days later:
//!          v                                                     | CleanupReminder (once)
//!        ExpiredInUse (incident) -- last stage leaves ---------->+
//!                                                               stage comes back: Healthy/
//!                                                               Expiring/ExpiredInUse again
//! ```
//!
//! The state is derived after every observation from the users and the episodes:
//! `Deleted` if the read says gone; else, with users: `ExpiredInUse` if past `not_after`,
//! `Expiring` if an episode is open, `Healthy` otherwise; without users: `RotatedAway` while an
//! episode that ended by switching, deleting or dropping the stage awaits clean-up, `Unused`
//! otherwise. Every change is recorded in the record's history with the observation time.
//!
//! # Episodes (one ticket each)
//!
//! At risk = in use and (expired, or: manual certificate in the window; managed ACM
//! certificate whose renewal fails, or in the window with no renewal under way). While at risk,
//! every owner (`None` = unowned) whose stages present the certificate has exactly one open
//! episode. Transitions of an episode, each timestamped and logged:
//!
//! ```text
//! Detected --(StepReached 30/14/7, most advanced only)--> ... --IncidentStarted-->
//!    \_____________________________________________________________/
//!                               | last of the owner's stages leaves, the certificate is
//!                               v deleted, or not_after moves out of the window
//!                  Resolved{switched_to | stage_deleted | stopped_presenting |
//!                           owner_changed | certificate_deleted | renewed}
//!                               |  (switched / stage deleted / stopped presenting only)
//!                               v
//!                  CleanupReminded (cleanup_after_days after RotatedAway) -> CleanupDone (Gone)
//! ```
//!
//! Decisions worth knowing:
//! - Facts are judged at the observation's time, not at `now`; an observation older than the
//!   record's last one is ignored whole.
//! - A scan that skips several steps fires only the most advanced; an expiry fires the incident
//!   and no step. Steps are remembered by their `days_left`, so no step fires twice in an
//!   episode, also across restarts and policy edits.
//! - An open episode stays open while a managed renewal is under way; it resolves as
//!   `renewed` only when `not_after` actually moves out of the window.
//! - A stage whose owner tag changes resolves the old owner's episode (`owner_changed`, not a
//!   rotation) and opens the new owner's.
//! - A certificate that is deleted and reappears keeps its history; new episodes get new ids.
//! - Big-bang: the switch time is not observable, so the new certificate's age is measured at
//!   the observation that shows the switch (an upper bound of its age at the switch).

pub mod engine;
pub mod model;
pub mod policy;
pub mod target;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use engine::{at_risk, decide};
pub use model::*;
pub use policy::{Band, EscalationStep, PageSeverity, Policy, Priority, days_left};
pub use target::{TargetDecision, TargetHealth, TargetRead, decide_target, whole_target};
