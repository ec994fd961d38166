//! The daemon's HTTP listener (`daemon.listen`): `/healthz` (the process answers), `/readyz`
//! (the store is open, the last complete scan is younger than two schedule periods when there
//! is a schedule, and every event queue answered its last call), and
//! `/metrics` in the Prometheus text format (prometheus-client). It reads what the workers
//! publish and the store; it never decides or changes anything.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::daemon::ScanOutcome;
use crate::lifecycle::days_left;
use crate::store::{Delivery, SledStore, Store};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
    outcome: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatLabel {
    stat: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BandLabel {
    band: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

/// What the workers publish for the listener, and the store it reads at scrape time.
pub struct Observatory {
    registry: Mutex<Registry>,
    scans: Family<Outcome, Counter>,
    scan_seconds: Histogram,
    calls: Family<Operation, Counter>,
    certificates: Family<BandLabel, Gauge>,
    nearest_expiry_days: Gauge,
    last_complete_scan: Gauge,
    intents_pending: Family<BackendLabel, Gauge>,
    intents_failed: Family<BackendLabel, Gauge>,
    scans_skipped: Counter,
    events: Family<EventLabel, Counter>,
    oldest_message_age: Gauge,
    queue_throttles: Family<QueueLabel, Counter>,
    queue_up: Family<QueueLabel, Gauge>,
    kpi_expiring: Gauge,
    kpi_owner_coverage: Gauge<f64, std::sync::atomic::AtomicU64>,
    kpi_mttr: Family<StatLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    kpi_mttr_episodes: Gauge,
    kpi_incidents: Gauge,
    last_complete_at: Mutex<Option<DateTime<Utc>>>,
    /// Each event queue and what its last call said: `None` before the first answer.
    queues: Mutex<std::collections::BTreeMap<String, Option<Result<(), String>>>>,
    store: Arc<SledStore>,
    /// The longest a complete scan may be old for the daemon to be ready; `None` without a
    /// schedule (events only).
    stale_after: Option<Duration>,
}

impl Observatory {
    pub fn new(
        store: Arc<SledStore>,
        stale_after: Option<Duration>,
        queues: &[String],
    ) -> Arc<Observatory> {
        let mut registry = Registry::with_prefix("certsentinel");
        let scans = Family::<Outcome, Counter>::default();
        registry.register(
            "scans",
            "Scans, by outcome (complete, partial, failed)",
            scans.clone(),
        );
        let scan_seconds = Histogram::new([1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0]);
        registry.register(
            "scan_duration_seconds",
            "How long scans take",
            scan_seconds.clone(),
        );
        let calls = Family::<Operation, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS calls sent, retries included, by operation and outcome (ok, not_found, throttled, transient, denied, rejected)",
            calls.clone(),
        );
        let certificates = Family::<BandLabel, Gauge>::default();
        registry.register(
            "certificates",
            "Certificates of the last scan, by band",
            certificates.clone(),
        );
        let nearest_expiry_days = Gauge::default();
        registry.register(
            "nearest_expiry_in_use_days",
            "Days left before the earliest expiry among certificates a stage presents (last scan)",
            nearest_expiry_days.clone(),
        );
        let last_complete_scan = Gauge::default();
        registry.register(
            "last_complete_scan_timestamp_seconds",
            "When the last scan that read every account and region started (Unix time)",
            last_complete_scan.clone(),
        );
        let intents_pending = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "intents_pending",
            "Intents in the outbox not yet delivered, by the backends that already failed them (\"none\" when none did)",
            intents_pending.clone(),
        );
        let intents_failed = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "intents_failed",
            "Pending intents a backend refused for good, by backend",
            intents_failed.clone(),
        );
        let scans_skipped = Counter::default();
        registry.register(
            "scans_skipped",
            "Scheduled scans skipped because a scan was still running",
            scans_skipped.clone(),
        );
        let events = Family::<EventLabel, Counter>::default();
        registry.register(
            "events",
            "Change events received, by CloudTrail event name and outcome (reread, ignored, not_scanned, rejected, retried) with its reason",
            events.clone(),
        );
        let oldest_message_age = Gauge::default();
        registry.register(
            "oldest_event_message_age_seconds",
            "Age of the oldest message in the last batch received from an event queue",
            oldest_message_age.clone(),
        );
        let queue_throttles = Family::<QueueLabel, Counter>::default();
        registry.register(
            "event_queue_throttles",
            "SQS calls throttled, by queue",
            queue_throttles.clone(),
        );
        let queue_up = Family::<QueueLabel, Gauge>::default();
        registry.register(
            "event_queue_up",
            "Whether the event queue answered its last call (1) or not (0)",
            queue_up.clone(),
        );
        let kpi_expiring = Gauge::default();
        registry.register(
            "kpi_expiring_within_30_days",
            "Certificates a stage presents with fewer than 30 days left (as of the last scan)",
            kpi_expiring.clone(),
        );
        let kpi_owner_coverage = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "kpi_owner_coverage_percent",
            "Certificates a stage presents whose every such stage has an owner from tags, percent",
            kpi_owner_coverage.clone(),
        );
        let kpi_mttr = Family::<StatLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "kpi_mttr_hours",
            "Time to rotate, hours, over every recorded rotation episode (stat: mean, median, p90)",
            kpi_mttr.clone(),
        );
        let kpi_mttr_episodes = Gauge::default();
        registry.register(
            "kpi_mttr_episodes",
            "The rotation episodes kpi_mttr_hours rests on",
            kpi_mttr_episodes.clone(),
        );
        let kpi_incidents = Gauge::default();
        registry.register(
            "kpi_incidents",
            "Certificates that expired while a stage presented them, ever recorded",
            kpi_incidents.clone(),
        );
        Arc::new(Observatory {
            registry: Mutex::new(registry),
            kpi_expiring,
            kpi_owner_coverage,
            kpi_mttr,
            kpi_mttr_episodes,
            kpi_incidents,
            scans_skipped,
            events,
            oldest_message_age,
            queue_throttles,
            queue_up,
            queues: Mutex::new(queues.iter().map(|q| (q.clone(), None)).collect()),
            scans,
            scan_seconds,
            calls,
            certificates,
            nearest_expiry_days,
            last_complete_scan,
            intents_pending,
            intents_failed,
            last_complete_at: Mutex::new(None),
            store,
            stale_after,
        })
    }

    /// A scan was recorded.
    pub fn scan_recorded(&self, done: &ScanOutcome, seconds: f64) {
        let outcome = if done.scan.complete() {
            "complete"
        } else {
            "partial"
        };
        self.scans
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
        self.scan_seconds.observe(seconds);
        for target in &done.scan.targets {
            self.calls_made(&target.call_outcomes);
        }
        self.certificates.clear();
        for (band, n) in &done.tally.by_band {
            self.certificates
                .get_or_create(&BandLabel { band: band.clone() })
                .set(*n as i64);
        }
        if let Some(nearest) = done.tally.nearest_in_use {
            self.nearest_expiry_days.set(days_left(nearest, Utc::now()));
        }
        if done.scan.complete() {
            self.last_complete_scan
                .set(done.scan.started_at.timestamp());
            *self.last_complete_at.lock().expect("not poisoned") = Some(done.scan.started_at);
        }
    }

    /// The KPIs of a report over the whole store, for Grafana.
    pub fn kpis(&self, kpis: &crate::report::Kpis) {
        self.kpi_expiring.set(kpis.expiring_within_30_days as i64);
        if let Some(p) = kpis.owner_coverage_percent {
            self.kpi_owner_coverage.set(p);
        }
        for (stat, value) in [
            ("mean", kpis.mttr_hours.mean),
            ("median", kpis.mttr_hours.median),
            ("p90", kpis.mttr_hours.p90),
        ] {
            if let Some(v) = value {
                self.kpi_mttr
                    .get_or_create(&StatLabel { stat: stat.into() })
                    .set(v);
            }
        }
        self.kpi_mttr_episodes.set(kpis.mttr_hours.episodes as i64);
        self.kpi_incidents.set(kpis.incidents as i64);
    }

    /// AWS calls made, by (operation, outcome).
    pub fn calls_made(&self, outcomes: &std::collections::BTreeMap<(String, String), u64>) {
        for ((operation, outcome), n) in outcomes {
            self.calls
                .get_or_create(&Operation {
                    operation: operation.clone(),
                    outcome: outcome.clone(),
                })
                .inc_by(*n);
        }
    }

    /// A scheduled scan was skipped: the previous one was still running.
    pub fn scan_skipped(&self) {
        self.scans_skipped.inc();
    }

    /// What became of the events of one batch.
    pub fn events_handled(&self, events: &[super::changes::EventOutcome]) {
        use super::changes::Outcome;
        for e in events {
            // Label values stay few: other services' event names and the text of a retry's
            // reason are not labels.
            let other = e.outcome == Outcome::Ignored && e.reason == "other_service";
            self.events
                .get_or_create(&EventLabel {
                    event: if other {
                        "other".to_string()
                    } else {
                        e.event_name.clone()
                    },
                    outcome: e.outcome.to_string(),
                    reason: if e.outcome == Outcome::Retried {
                        String::new()
                    } else {
                        e.reason.clone()
                    },
                })
                .inc();
        }
    }

    /// A batch came in from `queue`, its oldest message sent at `oldest`.
    pub fn messages_received(&self, oldest: Option<DateTime<Utc>>) {
        if let Some(at) = oldest {
            self.oldest_message_age
                .set((Utc::now() - at).num_seconds().max(0));
        }
    }

    /// What `queue`'s last call said, and how many of its calls were throttled since the last
    /// report.
    pub fn queue_answered(&self, queue: &str, answer: Result<(), String>, throttled: u64) {
        let label = QueueLabel {
            queue: queue.to_string(),
        };
        self.queue_throttles.get_or_create(&label).inc_by(throttled);
        self.queue_up
            .get_or_create(&label)
            .set(i64::from(answer.is_ok()));
        self.queues
            .lock()
            .expect("not poisoned")
            .insert(queue.to_string(), Some(answer));
    }

    /// A scan could not be recorded at all.
    pub fn scan_failed(&self) {
        self.scans
            .get_or_create(&Outcome {
                outcome: "failed".into(),
            })
            .inc();
    }

    /// Why the daemon is not ready, if it is not.
    fn unready(&self) -> Option<String> {
        for (queue, answer) in self.queues.lock().expect("not poisoned").iter() {
            match answer {
                None => return Some(format!("the event queue {queue} has not answered yet")),
                Some(Err(e)) => {
                    return Some(format!("the event queue {queue} is unreachable: {e}"));
                }
                Some(Ok(())) => {}
            }
        }
        let stale_after = self.stale_after?;
        match *self.last_complete_at.lock().expect("not poisoned") {
            None => Some("no scan has read every account and region yet".into()),
            Some(at) if Utc::now() - at > stale_after => Some(format!(
                "the last complete scan started at {at}, more than two schedule periods ago"
            )),
            Some(_) => None,
        }
    }

    fn render(&self) -> Result<String, String> {
        // The outbox is read at scrape time: it changes between scans.
        self.intents_pending.clear();
        self.intents_failed.clear();
        let pending = self.store.outbox_pending().map_err(|e| e.to_string())?;
        for entry in &pending {
            let failed: Vec<&String> = entry
                .deliveries
                .iter()
                .filter(|(_, d)| matches!(d, Delivery::Failed { .. }))
                .map(|(b, _)| b)
                .collect();
            if failed.is_empty() {
                self.intents_pending
                    .get_or_create(&BackendLabel {
                        backend: "none".into(),
                    })
                    .inc();
            }
            for backend in failed {
                let label = BackendLabel {
                    backend: backend.clone(),
                };
                self.intents_pending.get_or_create(&label).inc();
                self.intents_failed.get_or_create(&label).inc();
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(
            &mut text,
            &self.registry.lock().expect("not poisoned"),
        )
        .map_err(|e| e.to_string())?;
        Ok(text)
    }
}

/// The routes of the listener: health, readiness, metrics, and the state read-only
/// ([`super::state_api`]).
pub fn router(observatory: Arc<Observatory>, policy: crate::lifecycle::Policy) -> Router {
    let state = super::state_api::routes(observatory.store.clone());
    let report = super::report_page::routes(observatory.store.clone(), policy);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(observatory)
        .merge(state)
        .merge(report)
}

async fn readyz(State(o): State<Arc<Observatory>>) -> impl IntoResponse {
    match o.unready() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(o): State<Arc<Observatory>>) -> impl IntoResponse {
    match tokio::task::spawn_blocking(move || o.render()).await {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Two periods of a cron schedule with seconds: the next two occurrences' gap, doubled.
pub fn two_periods(schedule: &str) -> Duration {
    use croner::parser::{CronParser, Seconds};
    let parsed = CronParser::builder()
        .seconds(Seconds::Required)
        .build()
        .parse(schedule);
    let now = Utc::now();
    let gap = parsed.ok().and_then(|cron| {
        let first = cron.find_next_occurrence(&now, false).ok()?;
        let second = cron.find_next_occurrence(&first, false).ok()?;
        Some(second - first)
    });
    gap.map_or(Duration::hours(12), |g| g * 2)
}
