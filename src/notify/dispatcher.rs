//! Draining the outbox. At least once, and idempotent per intent key: every outcome is
//! recorded durably before the next intent of its episode, and each backend deduplicates by
//! the key. Within one owner's episode intents go out in the order they were decided;
//! episodes go in parallel, up to `notify.parallel_episodes`. A permanent refusal marks that
//! backend's delivery failed (visible in `state outbox`) and never blocks other episodes; a
//! failure that may pass leaves the episode's remaining intents for the next drain, in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::NotifyError;
use super::backend::{Backend, DeliveryRetryLogic};
use super::route::Routes;
use crate::config::Settings;
use crate::ids::CertificateKey;
use crate::lifecycle::Intent;
use crate::output;
use crate::retry::{Backoff, Retry, RetryLogic};
use crate::store::{Delivery, OutboxEntry, OutboxId, Store, StoreError};

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Drained {
    /// Backend deliveries accepted.
    pub delivered: usize,
    /// Intents every backend has now: they left the outbox.
    pub completed: usize,
    /// Backend deliveries refused for good in this drain.
    pub failed: usize,
    /// Intents left for the next drain: their backend could not be reached, or an earlier
    /// intent of the same episode could not.
    pub waiting: usize,
}

impl Drained {
    fn add(&mut self, other: Drained) {
        self.delivered += other.delivered;
        self.completed += other.completed;
        self.failed += other.failed;
        self.waiting += other.waiting;
    }
}

/// How one backend's attempts at one intent ended.
enum Attempts {
    Delivered(String),
    Refused(String),
    /// Retries spent on failures that may pass: try again at the next drain.
    NotNow(String),
}

pub struct Dispatcher {
    store: Arc<dyn Store + Send + Sync>,
    routes: Routes,
    backoff: Backoff,
    parallel: usize,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store + Send + Sync>,
        settings: &Settings,
    ) -> Result<Dispatcher, NotifyError> {
        Ok(Dispatcher {
            routes: Routes::new(&settings.notify, &settings.partners, store.clone())?,
            store,
            backoff: Backoff::new(&settings.notify.retry),
            parallel: settings.notify.parallel_episodes,
        })
    }

    /// One drain of the outbox: what the daemon repeats, `notify --once` and `scan --once`
    /// run once.
    pub async fn drain(&self) -> Result<Drained, StoreError> {
        let pending = self.blocking(|store| store.outbox_pending()).await?;
        // One owner's episode on one certificate, in outbox order (the order decided).
        let mut episodes: BTreeMap<(CertificateKey, Option<String>, u32), Vec<OutboxEntry>> =
            BTreeMap::new();
        for entry in pending {
            let intent = &entry.intent;
            episodes
                .entry((
                    intent.certificate.clone(),
                    intent.owner.clone(),
                    intent.episode,
                ))
                .or_default()
                .push(entry);
        }
        let results: Vec<Result<Drained, StoreError>> = stream::iter(episodes.into_values())
            .map(|entries| self.episode(entries))
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        let mut drained = Drained::default();
        for r in results {
            drained.add(r?);
        }
        if drained != Drained::default() {
            tracing::info!(
                delivered = drained.delivered,
                completed = drained.completed,
                failed = drained.failed,
                waiting = drained.waiting,
                "outbox drained"
            );
        }
        Ok(drained)
    }

    async fn episode(&self, entries: Vec<OutboxEntry>) -> Result<Drained, StoreError> {
        let mut drained = Drained::default();
        let total = entries.len();
        for (n, entry) in entries.into_iter().enumerate() {
            let summary = output::describe_intent(&entry.intent);
            let mut everyone = true;
            for backend in &self.routes.for_intent(&entry.intent) {
                match entry.deliveries.get(backend.name()) {
                    Some(Delivery::Delivered { .. }) => continue,
                    Some(Delivery::Failed { .. }) => {
                        everyone = false;
                        continue;
                    }
                    None => {}
                }
                let delivery = match self
                    .attempts(backend.as_ref(), &entry.intent, &summary)
                    .await
                {
                    Attempts::Delivered(reference) => {
                        drained.delivered += 1;
                        Delivery::Delivered {
                            at: Utc::now(),
                            reference,
                        }
                    }
                    Attempts::Refused(reason) => {
                        tracing::warn!(
                            key = %entry.intent.key,
                            backend = backend.name(),
                            %reason,
                            "delivery refused; the intent is marked failed (`certsentinel notify --retry KEY` tries again)"
                        );
                        drained.failed += 1;
                        everyone = false;
                        Delivery::Failed {
                            at: Utc::now(),
                            reason,
                        }
                    }
                    Attempts::NotNow(why) => {
                        tracing::warn!(
                            key = %entry.intent.key,
                            backend = backend.name(),
                            error = %why,
                            "delivery failed for now; it and the rest of its episode wait for the next drain"
                        );
                        drained.waiting += total - n;
                        return Ok(drained);
                    }
                };
                self.record(entry.id, backend.name(), delivery).await?;
            }
            if everyone {
                let id = entry.id;
                self.blocking(move |store| store.complete(id, Utc::now()))
                    .await?;
                drained.completed += 1;
            }
        }
        Ok(drained)
    }

    /// Delivers with retries: throttling honoured until patience runs out, failures that may
    /// pass retried up to the attempt limit, a refusal at once.
    async fn attempts(&self, backend: &dyn Backend, intent: &Intent, summary: &str) -> Attempts {
        let mut tries = self.backoff.start();
        loop {
            let error = match backend.deliver(intent, summary).await {
                Ok(reference) => return Attempts::Delivered(reference),
                Err(error) => error,
            };
            let next = match DeliveryRetryLogic.classify(&error) {
                Retry::Final(reason) => return Attempts::Refused(reason),
                Retry::Throttled { retry_after } => tries.after_throttle(retry_after),
                Retry::Transient => tries.after_transient(),
            };
            match next {
                Ok(delay) => tokio::time::sleep(delay).await,
                Err(_) => return Attempts::NotNow(error.to_string()),
            }
        }
    }

    async fn record(
        &self,
        id: OutboxId,
        backend: &'static str,
        delivery: Delivery,
    ) -> Result<(), StoreError> {
        self.blocking(move |store| store.record_delivery(id, backend, &delivery))
            .await
    }

    /// Store work (it flushes to disk) off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|e| StoreError::Interrupted(e.to_string()))?
    }
}
