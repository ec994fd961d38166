//! Every AWS call of a scan goes through here: a client-side rate limit and a bound on calls in
//! flight per account and region, and retries that tell throttling from real failure.
//!
//! Why our own retry rather than the SDK's: the SDK's standard mode gives up after three
//! attempts and does not read API Gateway's `Retry-After`. A scan must never give up on a
//! throttled call (the quota is shared with CI pipelines, so throttling is routine), while a
//! denied or malformed call must fail at once. So the SDK clients are built with retries off;
//! [`AwsRetryLogic`] classifies each failure and [`crate::retry::Backoff`] says how long to
//! wait.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_apigateway::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::aws::error_chain;
use crate::config::{RateLimitSettings, RetrySettings};
use crate::retry::{Backoff, GiveUp, Retry, RetryLogic, retry_after_seconds};

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
    /// The account could not be reached at all: its role could not be assumed, or the
    /// organization's accounts could not be listed.
    Unreachable,
    /// The service's answers contradict each other or never end: a page token that repeats,
    /// a listing past [`MAX_PAGES`], an API listed and then not found.
    Inconsistent,
    /// The account and region were not read within `aws.target_deadline_secs`.
    TimedOut,
}

/// Pages one listing may take: at 500 items a page, half a million resources, far beyond any
/// quota API Gateway grants in one account and region. A listing that goes on is broken.
pub const MAX_PAGES: usize = 1_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The service answered that the resource does not exist: a successful read of absence.
    #[error("{operation}: not found: {message}")]
    NotFound {
        operation: &'static str,
        message: String,
    },
    /// The call could not be completed; says nothing about the resource.
    #[error("{operation} failed ({kind}) after {attempts} attempt(s): {message}")]
    Failed {
        operation: &'static str,
        kind: FailureKind,
        attempts: u32,
        message: String,
    },
}

// Spelled as serde spells it: `denied`, `throttled`, ... in logs, tables and JSON alike.
serde_plain::derive_display_from_serialize!(FailureKind);

impl CallError {
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            CallError::NotFound { .. } => None,
            CallError::Failed { kind, .. } => Some(*kind),
        }
    }
}

/// How an AWS call failed for good, when retrying cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFinal {
    /// The service said the resource does not exist.
    NotFound,
    Denied,
    Rejected,
}

/// The AWS classifier: throttling codes (and 429) are throttled, 5xx and transport failures
/// are transient, NotFound codes are a successful read of absence, and the rest is final.
pub struct AwsRetryLogic;

impl<E: ProvideErrorMetadata> RetryLogic<SdkError<E, HttpResponse>> for AwsRetryLogic {
    type Final = AwsFinal;

    fn classify(&self, err: &SdkError<E, HttpResponse>) -> Retry<AwsFinal> {
        match err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().unwrap_or_default();
                let retry_after = ctx
                    .raw()
                    .headers()
                    .get("retry-after")
                    .and_then(retry_after_seconds);
                match code {
                    "TooManyRequestsException"
                    | "ThrottlingException"
                    | "Throttling"
                    | "ThrottledException"
                    | "RequestLimitExceeded"
                    | "LimitExceededException" => Retry::Throttled { retry_after },
                    "NotFoundException" | "ResourceNotFoundException" => {
                        Retry::Final(AwsFinal::NotFound)
                    }
                    "AccessDeniedException"
                    | "AccessDenied"
                    | "UnauthorizedException"
                    | "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "ExpiredTokenException"
                    | "ExpiredToken"
                    | "AWSOrganizationsNotInUseException" => Retry::Final(AwsFinal::Denied),
                    _ if status == 429 => Retry::Throttled { retry_after },
                    _ if status >= 500 => Retry::Transient,
                    // A 404 without the service's NotFound code came from something in between
                    // (a proxy, a wrong endpoint): it says nothing about the resource.
                    _ if status == 401 || status == 403 => Retry::Final(AwsFinal::Denied),
                    _ => Retry::Final(AwsFinal::Rejected),
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Retry::Transient,
            _ => Retry::Final(AwsFinal::Rejected),
        }
    }
}

/// Counts requests sent, per operation (the cost that matters against a low quota), and
/// their outcomes: `ok`, `not_found`, `throttled`, `transient`, `denied`, `rejected`.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    outcomes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl CallCounter {
    fn add(&self, operation: &'static str) {
        let mut counts = self.counts.lock().expect("call counter poisoned");
        *counts.entry(operation).or_insert(0) += 1;
    }

    fn answered(&self, operation: &'static str, outcome: &'static str) {
        let mut outcomes = self.outcomes.lock().expect("call counter poisoned");
        *outcomes.entry((operation, outcome)).or_insert(0) += 1;
    }

    /// Requests by (operation, outcome).
    pub fn outcomes(&self) -> BTreeMap<(String, String), u64> {
        self.outcomes
            .lock()
            .expect("call counter poisoned")
            .iter()
            .map(|((op, outcome), n)| ((op.to_string(), outcome.to_string()), *n))
            .collect()
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

/// The pace of one account and region's calls: its rate limit, its bound on calls in flight,
/// and the pause a throttled call imposes. Shared by everything that reads the account and
/// region at once (a scan and change events), so that together they keep to
/// `aws.rate_limit`, and a throttle one of them meets slows the others too.
pub struct Pace {
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    /// Set by a throttled call: no call at this pace is sent before then.
    resume_at: Mutex<Option<Instant>>,
}

impl Pace {
    pub fn new(rate: &RateLimitSettings) -> Arc<Pace> {
        let period = Duration::from_secs_f64(1.0 / rate.requests_per_second);
        let burst = std::num::NonZeroU32::new(rate.burst.max(1)).expect("burst >= 1");
        let quota = Quota::with_period(period)
            .expect("positive period")
            .allow_burst(burst);
        Arc::new(Pace {
            limiter: RateLimiter::direct(quota),
            in_flight: Semaphore::new(rate.max_concurrency.max(1)),
            resume_at: Mutex::new(None),
        })
    }
}

/// The pace of each account and region a process reads, made on first use.
#[derive(Default)]
pub struct Paces(Mutex<BTreeMap<(String, String), Arc<Pace>>>);

impl Paces {
    /// The pace of `account` and `region`, at `rate` when it is new.
    pub fn of(&self, account: &str, region: &str, rate: &RateLimitSettings) -> Arc<Pace> {
        self.0
            .lock()
            .expect("paces poisoned")
            .entry((account.to_string(), region.to_string()))
            .or_insert_with(|| Pace::new(rate))
            .clone()
    }
}

/// The gate calls to one account and region pass through: its pace (perhaps shared), how to
/// retry, and a counter of its own calls.
pub struct CallGate {
    pace: Arc<Pace>,
    backoff: Backoff,
    counter: Arc<CallCounter>,
}

impl CallGate {
    /// A gate with a pace of its own.
    pub fn new(rate: &RateLimitSettings, retry: &RetrySettings) -> Self {
        Self::paced(Pace::new(rate), retry)
    }

    /// A gate keeping to `pace`, which others may share; it counts its own calls.
    pub fn paced(pace: Arc<Pace>, retry: &RetrySettings) -> Self {
        CallGate {
            pace,
            backoff: Backoff::new(retry),
            counter: Arc::new(CallCounter::default()),
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
        let mut retries = self.backoff.start();
        let mut attempts: u32 = 0;
        loop {
            let result = {
                let _permit = self
                    .pace
                    .in_flight
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                self.pace.limiter.until_ready().await;
                // While the service has asked this account and region to back off, no call
                // at this pace goes out, not only the one that was throttled.
                let resume_at = *self.pace.resume_at.lock().expect("resume_at poisoned");
                if let Some(at) = resume_at {
                    tokio::time::sleep_until(at.into()).await;
                }
                self.counter.add(operation);
                attempts += 1;
                attempt().await
            };
            let err = match result {
                Ok(value) => {
                    self.counter.answered(operation, "ok");
                    return Ok(value);
                }
                Err(err) => err,
            };
            let retry = AwsRetryLogic.classify(&err);
            self.counter.answered(
                operation,
                match &retry {
                    Retry::Final(AwsFinal::NotFound) => "not_found",
                    Retry::Final(AwsFinal::Denied) => "denied",
                    Retry::Final(AwsFinal::Rejected) => "rejected",
                    Retry::Throttled { .. } => "throttled",
                    Retry::Transient => "transient",
                },
            );
            // One line, each cause once: the SDK's own rendering nests debug output.
            let message = || error_chain(&err);
            let failed = |kind: FailureKind, message: String| CallError::Failed {
                operation,
                kind,
                attempts,
                message,
            };
            let delay = match retry {
                Retry::Final(AwsFinal::NotFound) => {
                    return Err(CallError::NotFound {
                        operation,
                        message: message(),
                    });
                }
                Retry::Final(AwsFinal::Denied) => {
                    return Err(failed(FailureKind::Denied, message()));
                }
                Retry::Final(AwsFinal::Rejected) => {
                    return Err(failed(FailureKind::Rejected, message()));
                }
                Retry::Throttled { retry_after } => match retries.after_throttle(retry_after) {
                    Ok(delay) => {
                        let until = Instant::now() + delay;
                        let mut resume_at = self.pace.resume_at.lock().expect("resume_at poisoned");
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
                    Err(give_up) => {
                        return Err(failed(
                            FailureKind::Throttled,
                            format!("{}: {}", give_up_text(give_up), message()),
                        ));
                    }
                },
                Retry::Transient => match retries.after_transient() {
                    Ok(delay) => {
                        tracing::debug!(operation, attempts, delay_ms = delay.as_millis() as u64, error = %message(), "transient failure; retrying");
                        delay
                    }
                    Err(_) => return Err(failed(FailureKind::Unavailable, message())),
                },
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Calls a paged operation until a page carries no next token: `fetch` gets the token
    /// (`None` first), `on_page` takes each page's items and returns its next token. A token
    /// that comes back a second time, or a listing past [`MAX_PAGES`], fails the listing as
    /// inconsistent rather than paging forever.
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
        let inconsistent = |message: String, pages: usize| CallError::Failed {
            operation,
            kind: FailureKind::Inconsistent,
            attempts: pages as u32,
            message,
        };
        let mut token: Option<String> = None;
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for page in 1..=MAX_PAGES {
            let answer = self.call(operation, || fetch(token.clone())).await?;
            match on_page(&answer).filter(|t| !t.is_empty()) {
                None => return Ok(()),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(inconsistent(
                        format!(
                            "page {page} handed back a page token already followed: the listing would never end"
                        ),
                        page,
                    ));
                }
                Some(next) => token = Some(next),
            }
        }
        Err(inconsistent(
            format!("the listing still had a next page after {MAX_PAGES} pages"),
            MAX_PAGES,
        ))
    }
}

fn give_up_text(give_up: GiveUp) -> String {
    match give_up {
        GiveUp::Patience { waited } => {
            format!("still throttled after {}s of retries", waited.as_secs())
        }
        GiveUp::Attempts { failures } => format!("failed {failures} times"),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_apigateway::operation::get_rest_apis::GetRestApisError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use proptest::prelude::*;

    use super::*;

    /// A throttling answer as the SDK hands it over, with `retry_after` as the header.
    fn throttled(retry_after: &str) -> SdkError<GetRestApisError, HttpResponse> {
        let mut raw = HttpResponse::new(429.try_into().unwrap(), SdkBody::empty());
        // A value HTTP cannot carry never reaches us; the rest is the service's to choose.
        let _ = raw
            .headers_mut()
            .try_insert("retry-after", retry_after.to_string());
        let err = GetRestApisError::generic(
            ErrorMetadata::builder()
                .code("TooManyRequestsException")
                .build(),
        );
        SdkError::service_error(err, raw)
    }

    /// The most calls in flight at once when each of `gates` makes one call, together.
    fn most_in_flight(gates: &[CallGate]) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(futures::future::join_all(gates.iter().map(|gate| {
            gate.call("GetRestApis", || async {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), SdkError<GetRestApisError, HttpResponse>>(())
            })
        })));
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn gates_sharing_a_pace_keep_to_it_together_and_count_their_own_calls() {
        let rate = RateLimitSettings {
            requests_per_second: 1000.0,
            burst: 100,
            max_concurrency: 1,
        };
        let retry = RetrySettings {
            max_attempts: 1,
            initial_backoff_ms: 1,
            max_backoff_ms: 1,
            throttle_patience_secs: 1,
        };
        let paces = Paces::default();
        let shared = [
            CallGate::paced(paces.of("111122223333", "eu-west-1", &rate), &retry),
            CallGate::paced(paces.of("111122223333", "eu-west-1", &rate), &retry),
        ];
        assert_eq!(
            most_in_flight(&shared),
            1,
            "one call in flight between them"
        );
        for gate in &shared {
            assert_eq!(gate.counter().snapshot()["GetRestApis"], 1);
        }
        let apart = [
            CallGate::paced(paces.of("111122223333", "eu-west-1", &rate), &retry),
            CallGate::paced(paces.of("111122223333", "us-east-1", &rate), &retry),
        ];
        assert_eq!(
            most_in_flight(&apart),
            2,
            "another region keeps its own pace"
        );
    }

    #[test]
    fn hostile_retry_after_values_are_no_hint() {
        for value in [
            "1e20",
            "1e308",
            "-1",
            "NaN",
            "inf",
            "",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(
                AwsRetryLogic.classify(&throttled(value)),
                Retry::Throttled { retry_after: None },
                "{value}"
            );
        }
        assert_eq!(
            AwsRetryLogic.classify(&throttled("3")),
            Retry::Throttled {
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    proptest! {
        /// Whatever a service puts in `Retry-After`, classifying the answer never panics, and
        /// any hint taken from it is a real, finite duration.
        #[test]
        fn no_retry_after_header_panics(value in prop_oneof![
            any::<String>(),
            "[-+]?[0-9]{0,30}(\\\\.[0-9]{0,10})?([eE][-+]?[0-9]{1,4})?",
            any::<f64>().prop_map(|f| f.to_string()),
        ]) {
            if let Retry::Throttled { retry_after: Some(hint) } = AwsRetryLogic.classify(&throttled(&value)) {
                prop_assert!(hint < Duration::MAX);
            }
        }
    }
}
