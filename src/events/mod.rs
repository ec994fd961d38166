//! Change events: what an SQS message says happened in API Gateway, turned into the resources
//! worth reading again.
//!
//! Owns decoding (EventBridge "AWS API Call via CloudTrail" events, the same event wrapped by
//! SNS, and bare CloudTrail records) into [`Decoded`]: re-read these targets, ignore for a
//! counted reason, or reject a body that is no event; and the [`Queue`] the events come from
//! (long-poll receive, batched delete, a reachability check, with SQS's own retry classifier).
//!
//! Must never: trust an event's payload as the state of a resource (an event is a hint; the
//! re-read through the API is the truth), read certificate data from an event, delete a
//! message of its own accord, or reach into the inventory, the engine or the store. Decoding
//! is pure: no I/O, no clock.

mod decode;
mod queue;

pub use decode::{Action, Decoded, Envelope, Ignored, Rejected, Target, decode};
pub use queue::{MAX_MESSAGES, Message, Queue, QueueError, QueueFailure, SqsRetryLogic};
