//! The state, read-only, over the daemon's listener: what `certsentinel state …` reads when the
//! running daemon holds the store's lock, so an operator's commands work the same whether it
//! runs or not. The answers are the store's own types as JSON (records, accounts and regions,
//! read health, outbox entries), so the command renders them exactly as it renders the store.
//!
//! Must never write: no route here changes anything, and none serves configuration (secrets
//! live there).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::store::{OutboxEntry, SledStore, Store, StoreError, StoredRegion};

/// `GET /state/certificate?name=`: the records a name matches (an id, an ARN, or
/// account/region/id), each with its intents.
#[derive(Debug, Serialize, Deserialize)]
pub struct Found {
    pub record: crate::lifecycle::CertificateRecord,
    pub pending_intents: Vec<OutboxEntry>,
    pub delivered_intents: Vec<OutboxEntry>,
}

/// `GET /state/outbox?delivered=N`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outbox {
    pub pending: Vec<OutboxEntry>,
    pub delivered: Vec<OutboxEntry>,
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

#[derive(Deserialize)]
struct OutboxQuery {
    #[serde(default = "twenty")]
    delivered: usize,
}

fn twenty() -> usize {
    20
}

/// The read-only state routes, over `store`.
pub fn routes(store: Arc<SledStore>) -> Router {
    Router::new()
        .route("/state/records", get(records))
        .route("/state/regions", get(regions))
        .route("/state/targets", get(targets))
        .route("/state/certificate", get(certificate))
        .route("/state/outbox", get(outbox))
        .with_state(store)
}

/// Runs a store read on a blocking thread and answers it as JSON.
async fn read<T: Serialize + Send + 'static>(
    store: Arc<SledStore>,
    work: impl FnOnce(&SledStore) -> Result<T, StoreError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || work(&store)).await {
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Every record as JSON lines (the export format), streamed: a large estate is never held
/// whole in memory.
async fn records(State(store): State<Arc<SledStore>>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(64 * 1024);
        for record in store.records() {
            let line = record
                .map_err(std::io::Error::other)
                .and_then(|r| serde_json::to_vec(&r).map_err(std::io::Error::other));
            match line {
                Ok(line) => {
                    chunk.extend_from_slice(&line);
                    chunk.push(b'\n');
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            if chunk.len() >= 64 * 1024 && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
            {
                return;
            }
        }
        let _ = tx.blocking_send(Ok(chunk));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn regions(State(store): State<Arc<SledStore>>) -> Response {
    read(store, |s| -> Result<Vec<StoredRegion>, StoreError> {
        s.regions()
    })
    .await
}

async fn targets(State(store): State<Arc<SledStore>>) -> Response {
    read(store, |s| s.targets()).await
}

/// The records `name` matches (an id, an ARN, or account/region/id), each with its intents:
/// what `state show` prints, from the store or through the daemon.
pub fn find(store: &dyn Store, name: &str) -> Result<Vec<Found>, StoreError> {
    store
        .find(name)?
        .into_iter()
        .map(|record| {
            Ok(Found {
                pending_intents: store.pending_for(&record.key)?,
                delivered_intents: store.delivered_for(&record.key)?,
                record,
            })
        })
        .collect()
}

async fn certificate(State(store): State<Arc<SledStore>>, Query(q): Query<NameQuery>) -> Response {
    read(store, move |s| find(s, &q.name)).await
}

async fn outbox(State(store): State<Arc<SledStore>>, Query(q): Query<OutboxQuery>) -> Response {
    read(store, move |s| {
        Ok(Outbox {
            pending: s.outbox_pending()?,
            delivered: s.delivered(q.delivered)?,
        })
    })
    .await
}

/// Why the running daemon's state could not be read through its listener.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the running daemon's state at {url}: {message}")]
pub struct StateApiError {
    pub url: String,
    pub message: String,
}

/// A client of these routes: how `certsentinel state` reads the state while the daemon runs.
pub struct StateClient {
    base: String,
    client: reqwest::Client,
}

impl StateClient {
    /// The client of a daemon listening on `listen` (`daemon.listen`); `None` without a
    /// listener. A wildcard address is reached on the loopback.
    pub fn for_listen(listen: &str) -> Option<StateClient> {
        let addr: std::net::SocketAddr = listen.parse().ok()?;
        let host = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Some(StateClient {
            base: format!("http://{host}:{}", addr.port()),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(300))
                .build()
                .ok()?,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, StateApiError> {
        let url = format!("{}{path}", self.base);
        let fail = |message: String| StateApiError {
            url: url.clone(),
            message,
        };
        let answer = self
            .client
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|e| fail(format!("{e} (is the daemon's listener at daemon.listen?)")))?;
        if !answer.status().is_success() {
            let status = answer.status();
            let text = answer.text().await.unwrap_or_default();
            return Err(fail(format!("HTTP {status}: {}", text.trim())));
        }
        Ok(answer)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, StateApiError> {
        let url = format!("{}{path}", self.base);
        self.get(path, query)
            .await?
            .json()
            .await
            .map_err(|e| StateApiError {
                url,
                message: format!("unreadable answer: {e}"),
            })
    }

    /// Every record, as JSON lines, written to `out` as they come; how many.
    pub async fn export(&self, out: &mut dyn std::io::Write) -> Result<u64, StateApiError> {
        let mut answer = self.get("/state/records", &[]).await?;
        let mut lines = 0;
        let broken = |message: String| StateApiError {
            url: format!("{}/state/records", self.base),
            message,
        };
        while let Some(chunk) = answer.chunk().await.map_err(|e| broken(e.to_string()))? {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            out.write_all(&chunk).map_err(|e| broken(e.to_string()))?;
        }
        Ok(lines)
    }

    /// Every record.
    pub async fn records(&self) -> Result<Vec<crate::lifecycle::CertificateRecord>, StateApiError> {
        let mut records = Vec::new();
        self.each_record(&mut |record| records.push(record)).await?;
        Ok(records)
    }

    /// Hands each record to `each` as it arrives, holding one at a time (a report over a large
    /// estate through the daemon); how many.
    pub async fn each_record(
        &self,
        each: &mut (dyn FnMut(crate::lifecycle::CertificateRecord) + Send),
    ) -> Result<u64, StateApiError> {
        let mut answer = self.get("/state/records", &[]).await?;
        let broken = |message: String| StateApiError {
            url: format!("{}/state/records", self.base),
            message,
        };
        let mut lines = Lines::default();
        let mut n = 0;
        let mut line = |bytes: &[u8]| -> Result<(), StateApiError> {
            let record = serde_json::from_slice(bytes)
                .map_err(|e| broken(format!("unreadable record: {e}")))?;
            each(record);
            n += 1;
            Ok(())
        };
        while let Some(chunk) = answer.chunk().await.map_err(|e| broken(e.to_string()))? {
            for l in lines.push(&chunk) {
                line(&l)?;
            }
        }
        if let Some(last) = lines.finish() {
            line(&last)?;
        }
        Ok(n)
    }

    pub async fn regions(&self) -> Result<Vec<StoredRegion>, StateApiError> {
        self.json("/state/regions", &[]).await
    }

    pub async fn targets(&self) -> Result<Vec<crate::lifecycle::TargetHealth>, StateApiError> {
        self.json("/state/targets", &[]).await
    }

    /// The records `name` matches, with their intents.
    pub async fn find(&self, name: &str) -> Result<Vec<Found>, StateApiError> {
        self.json("/state/certificate", &[("name", name)]).await
    }

    pub async fn outbox(&self, delivered: usize) -> Result<Outbox, StateApiError> {
        self.json("/state/outbox", &[("delivered", &delivered.to_string())])
            .await
    }
}

/// JSON lines out of chunks that may cut a line anywhere: each whole line once, as soon as its
/// end has arrived.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// The lines `chunk` completes (empty lines skipped).
    fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.pending.split_off(end + 1);
        let done = std::mem::replace(&mut self.pending, rest);
        done.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// A last line without its newline, if any.
    fn finish(self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then_some(self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn lines_cut_anywhere_by_chunks_come_out_whole_and_once() {
        let text = b"{\"a\":1}\n\n{\"b\":22}\n{\"c\":333}";
        for cut in 1..text.len() {
            let mut lines = Lines::default();
            let mut got = lines.push(&text[..cut]);
            got.extend(lines.push(&text[cut..]));
            got.extend(lines.finish());
            assert_eq!(
                got,
                [&b"{\"a\":1}"[..], b"{\"b\":22}", b"{\"c\":333}"],
                "cut at {cut}"
            );
        }
    }
}
