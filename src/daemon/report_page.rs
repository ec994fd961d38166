//! The report over a store: every record one at a time and the outbox's failed deliveries into
//! a [`ReportBuilder`] (what `certsentinel report` and the daemon share), and the daemon's
//! `GET /report` page.
//!
//! Must never write, and never hold the estate whole: records are read one at a time.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::lifecycle::Policy;
use crate::report::{self, FailedDelivery, NO_OWNER, Report, ReportBuilder, ReportOptions};
use crate::store::{Delivery, OutboxEntry, SledStore, Store, StoreError};

/// Adds the deliveries refused for good among `pending` (the outbox's pending entries), and
/// says the outbox was read.
pub fn add_failed_deliveries(builder: &mut ReportBuilder, pending: &[OutboxEntry]) {
    builder.outbox_read();
    for entry in pending {
        for (backend, delivery) in &entry.deliveries {
            if let Delivery::Failed { at, reason } = delivery {
                builder.add_failed_delivery(FailedDelivery {
                    backend: backend.clone(),
                    intent: entry.intent.key.clone(),
                    certificate: entry.intent.certificate.to_string(),
                    team: entry
                        .intent
                        .owner
                        .clone()
                        .unwrap_or_else(|| NO_OWNER.to_string()),
                    at: *at,
                    reason: reason.clone(),
                });
            }
        }
    }
}

/// The report over `store`: its records one at a time, then its outbox.
pub fn report_from_store(store: &dyn Store, options: ReportOptions) -> Result<Report, StoreError> {
    let mut builder = ReportBuilder::new(options);
    store.each_record(&mut |record| builder.add(&record))?;
    add_failed_deliveries(&mut builder, &store.outbox_pending()?);
    Ok(builder.finish())
}

/// `GET /report?since=&until=&team=&now=&format=html|json|csv`: the same arguments, and the
/// same page, as `certsentinel report`.
#[derive(Deserialize)]
struct ReportQuery {
    since: Option<String>,
    until: Option<String>,
    team: Option<String>,
    now: Option<String>,
    format: Option<String>,
}

#[derive(Clone)]
struct PageState {
    store: Arc<SledStore>,
    policy: Arc<Policy>,
    /// Held while a report is built.
    building: Arc<tokio::sync::Semaphore>,
}

/// The `/report` route over `store`, whose records `policy` decided.
pub fn routes(store: Arc<SledStore>, policy: Policy) -> Router {
    Router::new()
        .route("/report", get(page))
        .with_state(PageState {
            store,
            policy: Arc::new(policy),
            building: Arc::new(tokio::sync::Semaphore::new(1)),
        })
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

async fn page(State(state): State<PageState>, Query(query): Query<ReportQuery>) -> Response {
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(report::parse_time)
            .transpose()
            .map_err(|e| format!("{name}: {e}"))
    };
    let options = match (
        time("since", &query.since),
        time("until", &query.until),
        time("now", &query.now),
    ) {
        (Ok(since), Ok(until), Ok(now)) => ReportOptions {
            since,
            until,
            team: query.team.filter(|t| !t.is_empty()),
            now: now.unwrap_or_else(chrono::Utc::now),
            policy: (*state.policy).clone(),
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad_request(e),
    };
    if let Err(why) = options.check() {
        return bad_request(why);
    }
    let format = query.format.unwrap_or_else(|| "html".to_string());
    if !["html", "json", "csv"].contains(&format.as_str()) {
        return bad_request(format!("format: '{format}' is not one of html, json, csv"));
    }
    // One report at a time: each walks every record (tens of MiB at 100,000 certificates),
    // and the daemon's memory limit is sized for one; more callers wait for the next.
    let Ok(permit) = state.building.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "a report is being built; try again in a few seconds\n",
        )
            .into_response();
    };
    let store = state.store.clone();
    // Walked and rendered off the async workers: both take a second or more on a large store.
    let built = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let report = report_from_store(store.as_ref(), options).map_err(|e| e.to_string())?;
        match format.as_str() {
            "json" => Ok(("application/json", report::json(&report))),
            "csv" => report::csv(&report)
                .map(|text| ("text/csv; charset=utf-8", text))
                .map_err(|e| e.to_string()),
            _ => report::html(&report)
                .map(|text| ("text/html; charset=utf-8", text))
                .map_err(|e| e.to_string()),
        }
    })
    .await;
    match built {
        Ok(Ok((content_type, body))) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type),
                // The page is whole: nothing it may load from elsewhere.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
