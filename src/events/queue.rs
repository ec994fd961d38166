//! One SQS queue of change events: long-poll receives, batched deletes, and whether the queue
//! can be reached. Whether a failed call is retried is [`SqsRetryLogic`]'s call (one
//! classifier for this service); how long to wait is the one [`Backoff`] policy.
//!
//! Must never delete a message on its own initiative: the caller deletes what it has made
//! durable, and leaves the rest to reappear (or to reach the dead-letter queue).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};

use crate::config::EventsSettings;
use crate::retry::{Backoff, Retry, RetryLogic, retry_after_seconds};

/// The most messages one receive returns, and one batch delete takes (SQS's limits).
pub const MAX_MESSAGES: usize = 10;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// SQS's message id: what logs name a message by.
    pub id: String,
    /// The handle that deletes this delivery of it.
    pub receipt: String,
    pub body: String,
    /// When the queue first received it.
    pub sent_at: Option<DateTime<Utc>>,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// Why a queue call failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFailure {
    /// Still throttled after `events.retry.throttle_patience_secs`.
    Throttled,
    /// 5xx, timeouts or connection failures past `events.retry.max_attempts`.
    Unavailable,
    /// Access denied or bad credentials.
    Denied,
    /// Anything else SQS refused (a queue that does not exist, a bad request).
    Rejected,
}

serde_plain::derive_display_from_serialize!(QueueFailure);

#[derive(Debug, Clone, thiserror::Error)]
#[error("SQS {operation} on {queue} failed ({kind}): {message}")]
pub struct QueueError {
    pub operation: &'static str,
    pub queue: String,
    pub kind: QueueFailure,
    pub message: String,
}

/// SQS's classifier: throttling codes and 429 are throttled, 5xx and transport failures are
/// transient, access problems are denied, the rest is final.
pub struct SqsRetryLogic;

impl<E: ProvideErrorMetadata> RetryLogic<SdkError<E, HttpResponse>> for SqsRetryLogic {
    type Final = QueueFailure;

    fn classify(&self, err: &SdkError<E, HttpResponse>) -> Retry<QueueFailure> {
        match err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let retry_after = ctx
                    .raw()
                    .headers()
                    .get("retry-after")
                    .and_then(retry_after_seconds);
                match ctx.err().code().unwrap_or_default() {
                    "RequestThrottled" | "ThrottlingException" | "Throttling" | "KmsThrottled" => {
                        Retry::Throttled { retry_after }
                    }
                    "AccessDenied"
                    | "AccessDeniedException"
                    | "InvalidClientTokenId"
                    | "UnrecognizedClientException"
                    | "ExpiredToken"
                    | "ExpiredTokenException"
                    | "KmsAccessDenied" => Retry::Final(QueueFailure::Denied),
                    _ if status == 429 => Retry::Throttled { retry_after },
                    _ if status >= 500 => Retry::Transient,
                    _ if status == 401 || status == 403 => Retry::Final(QueueFailure::Denied),
                    _ => Retry::Final(QueueFailure::Rejected),
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Retry::Transient,
            _ => Retry::Final(QueueFailure::Rejected),
        }
    }
}

/// One queue and its client.
#[derive(Clone)]
pub struct Queue {
    url: String,
    client: aws_sdk_sqs::Client,
    backoff: Backoff,
    wait_time_secs: i32,
    visibility_timeout_secs: i32,
    throttles: Arc<AtomicU64>,
}

impl Queue {
    /// A client for `url`, in the queue's region (from its host, or `sdk`'s). A queue URL
    /// outside amazonaws.com (a local SQS such as moto or ElasticMQ) is its own endpoint.
    pub fn new(sdk: &SdkConfig, url: &str, settings: &EventsSettings) -> Queue {
        let origin = url_origin(url);
        let mut config = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(region) = origin.and_then(region_of_host) {
            config = config.region(Region::new(region));
        }
        if let Some(origin) = origin.filter(|o| !o.contains(".amazonaws.com")) {
            config = config.endpoint_url(origin);
        }
        Queue {
            url: url.to_string(),
            client: aws_sdk_sqs::Client::from_conf(config.build()),
            backoff: Backoff::new(&settings.retry),
            wait_time_secs: settings.wait_time_secs as i32,
            visibility_timeout_secs: settings.visibility_timeout_secs as i32,
            throttles: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls SQS throttled so far, retries included.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// Waits (long poll) for up to [`MAX_MESSAGES`] messages; none when the wait ends empty.
    pub async fn receive(&self) -> Result<Vec<Message>, QueueError> {
        let out = self
            .call("ReceiveMessage", || {
                self.client
                    .receive_message()
                    .queue_url(&self.url)
                    .max_number_of_messages(MAX_MESSAGES as i32)
                    .wait_time_seconds(self.wait_time_secs)
                    .visibility_timeout(self.visibility_timeout_secs)
                    .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                    .message_system_attribute_names(
                        MessageSystemAttributeName::ApproximateReceiveCount,
                    )
                    .send()
            })
            .await?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let attribute = |name: MessageSystemAttributeName| {
                    m.attributes()
                        .and_then(|a| a.get(&name))
                        .map(String::as_str)
                };
                Some(Message {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    sent_at: attribute(MessageSystemAttributeName::SentTimestamp)
                        .and_then(|ms| ms.parse::<i64>().ok())
                        .and_then(DateTime::from_timestamp_millis),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    /// Deletes the given deliveries, [`MAX_MESSAGES`] per call. Returns the ids SQS would not
    /// delete, with its reason (they reappear and are decided again, which changes nothing).
    pub async fn delete(&self, messages: &[&Message]) -> Result<Vec<(String, String)>, QueueError> {
        let mut refused = Vec::new();
        for chunk in messages.chunks(MAX_MESSAGES) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .call("DeleteMessageBatch", || {
                    self.client
                        .delete_message_batch()
                        .queue_url(&self.url)
                        .set_entries(Some(entries.clone()))
                        .send()
                })
                .await?;
            for failed in out.failed() {
                let id = failed
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .map_or_else(|| failed.id().to_string(), |m| m.id.clone());
                refused.push((id, failed.message().unwrap_or(failed.code()).to_string()));
            }
        }
        Ok(refused)
    }

    /// Keeps the given deliveries hidden for another visibility timeout from now, while they
    /// are still being handled (ChangeMessageVisibilityBatch), so a slow read (throttled, say)
    /// is not handed to another receiver meanwhile. Best effort: a message that reappears is
    /// decided again, which changes nothing.
    pub async fn keep_hidden(&self, messages: &[Message]) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
        for chunk in messages.chunks(MAX_MESSAGES) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .visibility_timeout(self.visibility_timeout_secs)
                        .build()
                        .ok()
                })
                .collect();
            self.call("ChangeMessageVisibilityBatch", || {
                self.client
                    .change_message_visibility_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries.clone()))
                    .send()
            })
            .await?;
        }
        Ok(())
    }

    /// How long a received message stays hidden.
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout_secs.max(1) as u64)
    }

    /// Whether the queue answers (GetQueueAttributes): what `/readyz` asks first, before the
    /// first receive (which may wait its whole long poll) has answered.
    pub async fn check(&self) -> Result<(), QueueError> {
        self.call("GetQueueAttributes", || {
            self.client
                .get_queue_attributes()
                .queue_url(&self.url)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn call<T, E, F, Fut>(&self, operation: &'static str, send: F) -> Result<T, QueueError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let mut attempts = self.backoff.start();
        loop {
            let err = match send().await {
                Ok(out) => return Ok(out),
                Err(err) => err,
            };
            let fail = |kind| QueueError {
                operation,
                queue: self.url.clone(),
                kind,
                message: DisplayErrorContext(&err).to_string(),
            };
            let wait: Duration = match SqsRetryLogic.classify(&err) {
                Retry::Final(kind) => return Err(fail(kind)),
                Retry::Throttled { retry_after } => {
                    self.throttles.fetch_add(1, Ordering::Relaxed);
                    attempts
                        .after_throttle(retry_after)
                        .map_err(|_| fail(QueueFailure::Throttled))?
                }
                Retry::Transient => attempts
                    .after_transient()
                    .map_err(|_| fail(QueueFailure::Unavailable))?,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// `scheme://host[:port]` of a URL, if it has one.
fn url_origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() {
        return None;
    }
    let host_len = rest.find('/').unwrap_or(rest.len());
    (host_len > 0).then(|| &url[..scheme.len() + 3 + host_len])
}

/// The region in an SQS host: `sqs.REGION.amazonaws.com` or `REGION.queue.amazonaws.com`.
fn region_of_host(origin: &str) -> Option<String> {
    let host = origin.split_once("://")?.1;
    let host = host.split(':').next()?;
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        ["sqs", region, "amazonaws", ..] | [region, "queue", "amazonaws", ..] => {
            Some((*region).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_names_its_region_and_endpoint() {
        let aws = "https://sqs.eu-west-1.amazonaws.com/111122223333/events";
        assert_eq!(url_origin(aws), Some("https://sqs.eu-west-1.amazonaws.com"));
        assert_eq!(
            region_of_host(url_origin(aws).unwrap()).as_deref(),
            Some("eu-west-1")
        );
        let legacy = "https://ap-south-1.queue.amazonaws.com/111122223333/events";
        assert_eq!(
            region_of_host(url_origin(legacy).unwrap()).as_deref(),
            Some("ap-south-1")
        );
        let local = "http://127.0.0.1:4566/111122223333/events";
        assert_eq!(url_origin(local), Some("http://127.0.0.1:4566"));
        assert_eq!(region_of_host("http://127.0.0.1:4566"), None);
        assert_eq!(url_origin("no scheme"), None);
        assert_eq!(url_origin("https:///path"), None);
    }
}
