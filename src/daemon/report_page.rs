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
    big_bang_hours: u32,
}

/// The `/report` route over `store`; `big_bang_hours` is the policy's.
pub fn routes(store: Arc<SledStore>, big_bang_hours: u32) -> Router {
    Router::new()
        .route("/report", get(page))
        .with_state(PageState {
            store,
            big_bang_hours,
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
            big_bang_hours: state.big_bang_hours,
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad_request(e),
    };
    let format = query.format.unwrap_or_else(|| "html".to_string());
    if !["html", "json", "csv"].contains(&format.as_str()) {
        return bad_request(format!("format: '{format}' is not one of html, json, csv"));
    }
    let store = state.store.clone();
    let built =
        tokio::task::spawn_blocking(move || report_from_store(store.as_ref(), options)).await;
    let report = match built {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let rendered = match format.as_str() {
        "json" => Ok(("application/json", report::json(&report))),
        "csv" => report::csv(&report)
            .map(|text| ("text/csv; charset=utf-8", text))
            .map_err(|e| e.to_string()),
        _ => report::html(&report)
            .map(|text| ("text/html; charset=utf-8", text))
            .map_err(|e| e.to_string()),
    };
    match rendered {
        Ok((content_type, body)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type),
                // The page is whole: nothing it may load from elsewhere.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
