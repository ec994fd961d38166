//! What a delivery backend is, and the one that only logs.

use futures::future::BoxFuture;

use crate::lifecycle::Intent;
use crate::retry::{Retry, RetryLogic};

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The service asked to slow down (429), with its hint if it gave one.
    #[error("throttled")]
    Throttled {
        retry_after: Option<std::time::Duration>,
    },
    /// A failure that may pass: 5xx, a timeout, a reset connection.
    #[error("{0}")]
    Transient(String),
    /// Refused for good (a 4xx other than 429): the service's reason.
    #[error("{0}")]
    Permanent(String),
}

/// The classifier every backend's failures go through: the error already says which it is.
pub struct DeliveryRetryLogic;

impl RetryLogic<DeliveryError> for DeliveryRetryLogic {
    type Final = String;

    fn classify(&self, error: &DeliveryError) -> Retry<String> {
        match error {
            DeliveryError::Throttled { retry_after } => Retry::Throttled {
                retry_after: *retry_after,
            },
            DeliveryError::Transient(_) => Retry::Transient,
            DeliveryError::Permanent(reason) => Retry::Final(reason.clone()),
        }
    }
}

/// A place intents are delivered to.
pub trait Backend: Send + Sync {
    /// The name its outcomes are recorded under (`webhook`, `log`, ...).
    fn name(&self) -> &'static str;

    /// Delivers one intent (`summary` is it in words). `Ok` carries what the service answered
    /// that identifies the delivery (a status, an issue key). Must be idempotent by
    /// `intent.key`: a delivery whose answer was lost is attempted again.
    fn deliver<'a>(
        &'a self,
        intent: &'a Intent,
        summary: &'a str,
    ) -> BoxFuture<'a, Result<String, DeliveryError>>;
}

/// Writes each intent to the log, one line: what the routes that name no backend get, so
/// nothing is dropped and the sandbox and dry runs show what would be sent.
pub struct LogBackend;

impl Backend for LogBackend {
    fn name(&self) -> &'static str {
        "log"
    }

    fn deliver<'a>(
        &'a self,
        intent: &'a Intent,
        summary: &'a str,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(async move {
            tracing::info!(
                target: "certsentinel::notify",
                key = %intent.key,
                "would tell: {summary}"
            );
            Ok("logged".to_string())
        })
    }
}
