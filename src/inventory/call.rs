//! Every AWS call of a scan goes through here: a client-side rate limit and a bound on calls in
//! flight per account and region, and retries that tell throttling from real failure.
//!
//! Why our own retry rather than the SDK's: the SDK's standard mode gives up after three
//! attempts and does not read API Gateway's `Retry-After`. A scan must never give up on a
//! throttled call (the quota is shared with CI pipelines, so throttling is routine), while a
//! denied or malformed call must fail at once. So the SDK clients are built with retries off
//! and each call is classified here.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_apigateway::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::config::{RateLimitSettings, RetrySettings};

/// Why a call failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Still throttled after `throttle_patience_secs`.
    Throttled,
    /// 5xx, timeouts or connection failures past `max_attempts`.
    Unavailable,
    /// Access denied, unauthorized, expired or missing credentials.
    Denied,
    /// Anything else the service rejected (bad request, validation).
    Rejected,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The service answered that the resource does not exist: a successful read of absence.
    #[error("{operation}: not found: {message}")]
    NotFound {
        operation: &'static str,
        message: String,
    },
    /// The call could not be completed; says nothing about the resource.
    #[error("{operation} failed ({kind:?}) after {attempts} attempt(s): {message}")]
    Failed {
        operation: &'static str,
        kind: FailureKind,
        attempts: u32,
        message: String,
    },
}

impl CallError {
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            CallError::NotFound { .. } => None,
            CallError::Failed { kind, .. } => Some(*kind),
        }
    }
}

/// How one failed attempt should be treated.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Throttled { retry_after: Option<Duration> },
    Transient,
    NotFound,
    Denied,
    Rejected,
}

fn classify<E>(err: &SdkError<E, HttpResponse>) -> Verdict
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or_default();
            let retry_after = ctx
                .raw()
                .headers()
                .get("retry-after")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            match code {
                "TooManyRequestsException"
                | "ThrottlingException"
                | "Throttling"
                | "ThrottledException"
                | "RequestLimitExceeded"
                | "LimitExceededException" => Verdict::Throttled { retry_after },
                "NotFoundException" | "ResourceNotFoundException" => Verdict::NotFound,
                "AccessDeniedException"
                | "AccessDenied"
                | "UnauthorizedException"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "ExpiredTokenException"
                | "ExpiredToken"
                | "AWSOrganizationsNotInUseException" => Verdict::Denied,
                _ if status == 429 => Verdict::Throttled { retry_after },
                _ if status >= 500 => Verdict::Transient,
                // A 404 without the service's NotFound code came from something in between
                // (a proxy, a wrong endpoint): it says nothing about the resource.
                _ if status == 401 || status == 403 => Verdict::Denied,
                _ => Verdict::Rejected,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Verdict::Transient
        }
        _ => Verdict::Rejected,
    }
}

/// Counts requests sent, per operation: the cost that matters against a low quota.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl CallCounter {
    fn add(&self, operation: &'static str) {
        let mut counts = self.counts.lock().expect("call counter poisoned");
        *counts.entry(operation).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .expect("call counter poisoned")
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }
}

/// The gate all calls to one account and region pass through.
pub struct CallGate {
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    retry: RetrySettings,
    counter: Arc<CallCounter>,
    /// Set by a throttled call: no call of this gate is sent before then.
    resume_at: Mutex<Option<Instant>>,
}

impl CallGate {
    pub fn new(rate: &RateLimitSettings, retry: &RetrySettings) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.requests_per_second);
        let burst = std::num::NonZeroU32::new(rate.burst.max(1)).expect("burst >= 1");
        let quota = Quota::with_period(period)
            .expect("positive period")
            .allow_burst(burst);
        CallGate {
            limiter: RateLimiter::direct(quota),
            in_flight: Semaphore::new(rate.max_concurrency.max(1)),
            retry: retry.clone(),
            counter: Arc::new(CallCounter::default()),
            resume_at: Mutex::new(None),
        }
    }

    pub fn counter(&self) -> Arc<CallCounter> {
        self.counter.clone()
    }

    /// Runs `attempt` until it succeeds, is found absent, or fails for good.
    pub async fn call<T, E, F, Fut>(
        &self,
        operation: &'static str,
        attempt: F,
    ) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let patience = Duration::from_secs(self.retry.throttle_patience_secs);
        // The patience clock starts at the first throttle, not while queued behind others.
        let mut throttled_since: Option<Instant> = None;
        let mut attempts: u32 = 0;
        let mut transient_failures: u32 = 0;
        let mut throttles: u32 = 0;
        loop {
            let result = {
                let _permit = self
                    .in_flight
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                self.limiter.until_ready().await;
                // While the service has asked this account and region to back off, no call
                // of this gate goes out, not only the one that was throttled.
                let resume_at = *self.resume_at.lock().expect("resume_at poisoned");
                if let Some(at) = resume_at {
                    tokio::time::sleep_until(at.into()).await;
                }
                self.counter.add(operation);
                attempts += 1;
                attempt().await
            };
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            let message = || DisplayErrorContext(&err).to_string();
            let delay = match classify(&err) {
                Verdict::NotFound => {
                    return Err(CallError::NotFound {
                        operation,
                        message: message(),
                    });
                }
                verdict @ (Verdict::Denied | Verdict::Rejected) => {
                    let kind = if verdict == Verdict::Denied {
                        FailureKind::Denied
                    } else {
                        FailureKind::Rejected
                    };
                    return Err(CallError::Failed {
                        operation,
                        kind,
                        attempts,
                        message: message(),
                    });
                }
                Verdict::Throttled { retry_after } => {
                    throttles += 1;
                    let backoff = self.backoff(throttles);
                    let since = *throttled_since.get_or_insert_with(Instant::now);
                    let left = patience.saturating_sub(since.elapsed());
                    if left.is_zero() {
                        return Err(CallError::Failed {
                            operation,
                            kind: FailureKind::Throttled,
                            attempts,
                            message: format!(
                                "still throttled after {}s of retries: {}",
                                since.elapsed().as_secs(),
                                message()
                            ),
                        });
                    }
                    // The last wait is cut to what patience has left, then tried once more.
                    let delay = retry_after
                        .map_or(backoff, |ra| ra.max(backoff / 2))
                        .min(left);
                    let until = Instant::now() + delay;
                    let mut resume_at = self.resume_at.lock().expect("resume_at poisoned");
                    if resume_at.is_none_or(|at| at < until) {
                        *resume_at = Some(until);
                    }
                    tracing::debug!(
                        operation,
                        attempts,
                        delay_ms = delay.as_millis() as u64,
                        "throttled; retrying"
                    );
                    delay
                }
                Verdict::Transient => {
                    transient_failures += 1;
                    if transient_failures >= self.retry.max_attempts {
                        return Err(CallError::Failed {
                            operation,
                            kind: FailureKind::Unavailable,
                            attempts,
                            message: message(),
                        });
                    }
                    let delay = self.backoff(transient_failures);
                    tracing::debug!(operation, attempts, delay_ms = delay.as_millis() as u64, error = %message(), "transient failure; retrying");
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Calls a paged operation until a page carries no next token: `fetch` gets the token
    /// (`None` first), `on_page` takes each page's items and returns its next token.
    pub async fn paged<O, E, F, Fut>(
        &self,
        operation: &'static str,
        fetch: F,
        mut on_page: impl FnMut(&O) -> Option<String>,
    ) -> Result<(), CallError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut token: Option<String> = None;
        loop {
            let page = self.call(operation, || fetch(token.clone())).await?;
            match on_page(&page).filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Exponential back-off with "equal jitter": half fixed, half random, capped.
    fn backoff(&self, retry: u32) -> Duration {
        let base = self.retry.initial_backoff_ms.max(1);
        let exp = base.saturating_mul(1u64 << retry.saturating_sub(1).min(20));
        let capped = exp.min(self.retry.max_backoff_ms.max(base));
        let half = capped / 2;
        Duration::from_millis(half + fastrand::u64(0..=capped - half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let gate = CallGate::new(
            &RateLimitSettings {
                requests_per_second: 10.0,
                burst: 1,
                max_concurrency: 1,
            },
            &RetrySettings {
                max_attempts: 3,
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
                throttle_patience_secs: 1,
            },
        );
        for _ in 0..50 {
            let first = gate.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let late = gate.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }
}
