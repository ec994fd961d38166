//! What a delivery backend is, and the one that only logs.

use futures::future::BoxFuture;

use crate::lifecycle::Intent;
use crate::retry::{Retry, RetryLogic, retry_after_seconds};

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

/// Sends an HTTP request and reads the answer: `Ok((status, body))` for a 2xx, else the
/// failure classified. The request's URL never appears in an error (it may carry a token).
pub async fn send(request: reqwest::RequestBuilder) -> Result<(u16, String), DeliveryError> {
    let answer = request
        .send()
        .await
        .map_err(|e| DeliveryError::Transient(e.without_url().to_string()))?;
    let status = answer.status().as_u16();
    let retry_after = answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let said = answer.text().await.unwrap_or_default();
    classify(status, retry_after.as_deref(), &said).map(|()| (status, said))
}

/// What an answer means: 2xx accepted, 429 throttled (with or without `Retry-After`), 408 and
/// 5xx may pass, any other 4xx refused for good (with the first 300 characters said).
pub fn classify(status: u16, retry_after: Option<&str>, said: &str) -> Result<(), DeliveryError> {
    let said: String = said.chars().take(300).collect();
    match status {
        200..=299 => Ok(()),
        429 => Err(DeliveryError::Throttled {
            retry_after: retry_after.and_then(retry_after_seconds),
        }),
        408 | 500..=599 => Err(DeliveryError::Transient(format!("HTTP {status}: {said}"))),
        _ => Err(DeliveryError::Permanent(format!("HTTP {status}: {said}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(202, None, ""), Ok(()));
        assert!(
            matches!(classify(429, Some("3"), ""), Err(DeliveryError::Throttled { retry_after: Some(d) }) if d.as_secs() == 3)
        );
        assert!(matches!(
            classify(429, None, ""),
            Err(DeliveryError::Throttled { retry_after: None })
        ));
        assert!(matches!(
            classify(429, Some("1e20"), ""),
            Err(DeliveryError::Throttled { retry_after: None })
        ));
        assert!(matches!(
            classify(503, None, ""),
            Err(DeliveryError::Transient(_))
        ));
        assert!(
            matches!(classify(400, None, "bad field"), Err(DeliveryError::Permanent(r)) if r.contains("bad field"))
        );
    }
}
