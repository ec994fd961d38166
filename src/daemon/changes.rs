//! The change-event step: a batch of SQS messages in, durable decisions out, and the messages
//! that may now be deleted. [`Changes::handle`] is public so tests drive exactly what each
//! receiver of the daemon runs.
//!
//! An event is a hint. Per account and region, the events of one batch are merged (a burst on
//! one resource is one read), widened with what the store knows (the certificates the named
//! stages and APIs presented, and every stage those certificates' records name, so that no
//! stage of theirs is left unread and taken for gone), read again through the API, observed,
//! decided and committed through the same engine, store and compare-and-swap as a scan.
//!
//! At-least-once: a message is reported done only when the decisions it caused are durable (or
//! it asked for nothing); a message whose read failed is kept, to reappear after its
//! visibility timeout; a message that is no event is kept for the queue's redrive policy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::DaemonError;
use super::reconcile::{Batch, Reconciled};
use crate::config::Settings;
use crate::events::{Action, Message, Target, decode};
use crate::ids::{CertificateKey, StageKey, StageKind};
use crate::inventory::aws::{self, AccountSession};
use crate::inventory::call::{CallGate, Paces};
use crate::inventory::control_plane::ControlPlane;
use crate::inventory::owner::OwnershipRules;
use crate::inventory::reread::{Reread, Wanted, reread};
use crate::lifecycle::Policy;
use crate::lifecycle::{CertificateRecord, Intent, ObservationSource};
use crate::observe::{InDoubt, RegionIndex, missing, present};
use crate::store::{SledStore, Store, StoreError};

/// How long an account found not scanned is taken as such before asking again (an account
/// may join the organization meanwhile).
const NOT_SCANNED_TTL: Duration = Duration::from_secs(3600);
/// How long an account that could not be opened is left before trying again, so that one
/// batch does not ask STS once per message.
const UNREACHABLE_TTL: Duration = Duration::from_secs(30);
/// Rounds of widening after a re-read found certificates the store did not point to.
const WIDEN_ROUNDS: usize = 2;

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Read again and decided durably.
    Reread,
    /// Acknowledged and counted, never read (a failed or read-only call, another service, a
    /// change that cannot touch a certificate).
    Ignored,
    /// An account or region certsentinel does not scan: acknowledged, not read.
    NotScanned,
    /// No event: left for the dead-letter queue.
    Rejected,
    /// What it names could not be read or decided now: left to reappear.
    Retried,
}

serde_plain::derive_display_from_serialize!(Outcome);

/// What became of one event, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    pub message_id: String,
    /// CloudTrail's event name; empty for a message that is no event.
    pub event_name: String,
    pub outcome: Outcome,
    /// Why it was ignored, rejected or retried; empty otherwise.
    pub reason: String,
}

/// What one batch of messages came to.
#[derive(Debug, Default)]
pub struct Handled {
    /// Messages whose decisions are durable, or that asked for nothing: to delete.
    pub done: Vec<Message>,
    /// Messages left to reappear (a failed read) or for the dead-letter queue (no event).
    pub kept: Vec<Message>,
    /// The intents decided, committed to the outbox.
    pub intents: Vec<Intent>,
    pub events: Vec<EventOutcome>,
    /// The AWS calls the re-reads made, by (operation, outcome).
    pub calls: BTreeMap<(String, String), u64>,
}

/// What is known of one account: its session (`Some`), not scanned (`None`), or why it could
/// not be opened; and since when.
type AccountLookup = (Result<Option<AccountSession>, String>, Instant);

/// The change-event step, with what it keeps between batches: each account's session (its
/// credentials refresh themselves). Each re-read has a reader of its own (its clock watch and
/// call counter), keeping to the account and region's shared pace.
pub struct Changes {
    settings: Arc<Settings>,
    base: SdkConfig,
    store: Arc<SledStore>,
    rules: OwnershipRules,
    accounts: Mutex<HashMap<String, AccountLookup>>,
    /// Each account and region's pace, shared with the scans of the same process.
    paces: Arc<Paces>,
}

/// One account and region's share of a batch.
#[derive(Default)]
struct Group {
    messages: Vec<usize>,
    wanted: Wanted,
}

impl Changes {
    /// `paces`: each account and region's pace, shared with whatever else reads them.
    pub fn new(
        settings: Arc<Settings>,
        base: SdkConfig,
        store: Arc<SledStore>,
        paces: Arc<Paces>,
    ) -> Changes {
        Changes {
            rules: OwnershipRules::new(&settings.ownership),
            settings,
            base,
            store,
            accounts: Mutex::new(HashMap::new()),
            paces,
        }
    }

    /// Decodes, reads again, decides and commits what `messages` ask. Fails only when the
    /// store does (the daemon stops); a failed read keeps its messages and is not an error.
    pub async fn handle(&self, messages: Vec<Message>) -> Result<Handled, DaemonError> {
        let mut out = Handled::default();
        let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
        let mut done = vec![false; messages.len()];
        let mut outcomes: Vec<Option<EventOutcome>> = vec![None; messages.len()];
        for (i, message) in messages.iter().enumerate() {
            let outcome = |event_name: &str, outcome, reason: &str| EventOutcome {
                message_id: message.id.clone(),
                event_name: event_name.to_string(),
                outcome,
                reason: reason.to_string(),
            };
            let decoded = match decode(&message.body) {
                Ok(decoded) => decoded,
                Err(rejected) => {
                    tracing::warn!(
                        message_id = %message.id,
                        receive_count = message.receive_count,
                        reason = rejected.as_str(),
                        error = %rejected,
                        "a message that is no change event is left for the queue's dead-letter queue"
                    );
                    outcomes[i] = Some(outcome("", Outcome::Rejected, rejected.as_str()));
                    continue;
                }
            };
            let name = decoded.event_name.as_str();
            let targets = match decoded.action {
                Action::Ignore(why) => {
                    tracing::debug!(message_id = %message.id, event = name, reason = why.as_str(), "event ignored");
                    done[i] = true;
                    outcomes[i] = Some(outcome(name, Outcome::Ignored, why.as_str()));
                    continue;
                }
                Action::Reread(targets) => targets,
            };
            if !aws::scans_region(&self.settings.aws, &decoded.region)
                || matches!(self.session(&decoded.account).await, Ok(None))
            {
                tracing::info!(message_id = %message.id, event = name, account = %decoded.account, region = %decoded.region, "event for an account or region certsentinel does not scan: acknowledged, not read");
                done[i] = true;
                outcomes[i] = Some(outcome(name, Outcome::NotScanned, ""));
                continue;
            }
            let group = groups
                .entry((decoded.account.clone(), decoded.region.clone()))
                .or_default();
            group.messages.push(i);
            group
                .wanted
                .merge(wanted(&decoded.account, &decoded.region, targets));
            outcomes[i] = Some(outcome(name, Outcome::Reread, ""));
        }

        for ((account, region), group) in groups {
            let (decided, calls) = self.decide(&account, &region, group.wanted).await;
            for (k, n) in calls {
                *out.calls.entry(k).or_insert(0) += n;
            }
            match decided {
                Ok(decided) => {
                    out.intents.extend(decided.intents);
                    for i in group.messages {
                        done[i] = true;
                    }
                }
                Err(Failure::Retry(why)) => {
                    tracing::warn!(%account, %region, reason = %why, messages = group.messages.len(), "not decided now: the messages reappear after the visibility timeout");
                    for i in group.messages {
                        if let Some(o) = outcomes[i].as_mut() {
                            o.outcome = Outcome::Retried;
                            o.reason = why.clone();
                        }
                    }
                }
                Err(Failure::Store(e)) => return Err(e.into()),
            }
        }
        for (message, is_done) in messages.into_iter().zip(done) {
            if is_done {
                out.done.push(message);
            } else {
                out.kept.push(message);
            }
        }
        out.events = outcomes.into_iter().flatten().collect();
        Ok(out)
    }

    /// The session of `account`, `None` when certsentinel does not scan it; cached (an
    /// account not scanned is asked about again after an hour, one that could not be opened
    /// after half a minute). No lock is held while AWS is asked.
    async fn session(&self, account: &str) -> Result<Option<AccountSession>, String> {
        if let Some((known, at)) = self.accounts.lock().await.get(account) {
            let fresh = match known {
                Ok(Some(_)) => true,
                Ok(None) => at.elapsed() < NOT_SCANNED_TTL,
                Err(_) => at.elapsed() < UNREACHABLE_TTL,
            };
            if fresh {
                return known.clone();
            }
        }
        let looked = aws::scanned_account(&self.settings.aws, &self.base, account)
            .await
            .map_err(|f| f.reason);
        self.accounts
            .lock()
            .await
            .insert(account.to_string(), (looked.clone(), Instant::now()));
        looked
    }

    /// Reads again what one account and region's events name, and decides it durably; with
    /// the calls the reads made. A reader of its own each time: its clock watch says what
    /// this read saw, not the worst of the process's life.
    async fn decide(
        &self,
        account: &str,
        region: &str,
        wanted: Wanted,
    ) -> (Result<Reconciled, Failure>, BTreeMap<(String, String), u64>) {
        let session = match self.session(account).await {
            Ok(Some(session)) => session,
            Ok(None) => {
                return (
                    Err(Failure::Retry(format!("account {account} is not scanned"))),
                    BTreeMap::new(),
                );
            }
            Err(why) => return (Err(Failure::Retry(why)), BTreeMap::new()),
        };
        let sdk = aws::in_region(&session.sdk, region);
        let pace = self
            .paces
            .of(&session.id, region, &self.settings.aws.rate_limit);
        let gate = CallGate::paced(pace, &self.settings.aws.retry);
        let plane = ControlPlane::new(&session.id, region, &sdk, gate);
        let decided = self.read_and_decide(&plane, wanted).await;
        (decided, plane.call_outcomes())
    }

    async fn read_and_decide(
        &self,
        plane: &ControlPlane,
        wanted: Wanted,
    ) -> Result<Reconciled, Failure> {
        let started = Utc::now();
        let retry = |e: crate::inventory::call::CallError| Failure::Retry(e.to_string());
        let store = self.store.clone();
        let (account, region) = (plane.account.clone(), plane.region.clone());
        let (mut wanted, mut records) =
            blocking(move || widen(store.as_ref(), &account, &region, wanted)).await??;
        let mut read = reread(plane, &self.rules, &wanted).await.map_err(retry)?;
        // The read found certificates the store did not point to (a stage switched to one, a
        // whole API read): every stage their records name is read too, or they would be
        // judged on part of their stages.
        for _ in 0..WIDEN_ROUNDS {
            let found: Vec<CertificateKey> = read
                .inventory
                .certificates
                .iter()
                .map(|c| c.key.clone())
                .filter(|k| !records.contains_key(k))
                .collect();
            if found.is_empty() {
                break;
            }
            let store = self.store.clone();
            let stages = wanted.stages.len();
            let (more, loaded) =
                blocking(move || widen_with(store.as_ref(), found, wanted, |_, _| true)).await??;
            wanted = more;
            let loaded_any = !loaded.is_empty();
            records.extend(loaded);
            if wanted.stages.len() == stages {
                if loaded_any {
                    continue;
                }
                break;
            }
            read = reread(plane, &self.rules, &wanted).await.map_err(retry)?;
        }
        if let Some(skew) = plane.clock_skew_seconds()
            && skew.unsigned_abs() > self.settings.aws.max_clock_skew_secs
        {
            return Err(Failure::Retry(format!(
                "this host's clock is {skew} s off AWS's (more than aws.max_clock_skew_secs): nothing was decided"
            )));
        }
        let store = self.store.clone();
        let policy = self.settings.policy.clone();
        let decided =
            blocking(move || decide_and_commit(store.as_ref(), &read, &records, &policy, started))
                .await?
                .map_err(Failure::Store)?;
        if let Some((certificate, stages)) = decided.in_doubt.first() {
            // Decided what could be; the rest when the messages reappear.
            return Err(Failure::Retry(format!(
                "{} certificate(s) not decided: stages of {certificate} were not read ({})",
                decided.in_doubt.len(),
                stages
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(decided)
    }
}

/// Why an account and region's events were not decided.
enum Failure {
    /// Not now (a read failed, the clock is off, stages of a certificate were not read, its
    /// record kept moving): the messages reappear and are decided then.
    Retry(String),
    /// The store failed: the daemon stops.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Store(e) => Failure::Store(e),
            other => Failure::Store(StoreError::Interrupted(other.to_string())),
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DaemonError::Store(StoreError::Interrupted(e.to_string())))
}

/// What an event's targets ask to read in its account and region.
fn wanted(account: &str, region: &str, targets: Vec<Target>) -> Wanted {
    let stage = |kind, api_id: String, stage_name: String| StageKey {
        account: account.to_string(),
        region: region.to_string(),
        kind,
        api_id,
        stage_name,
    };
    let mut wanted = Wanted::default();
    for target in targets {
        match target {
            Target::ClientCertificate { id } => {
                wanted.certificates.insert(id);
            }
            Target::AcmCertificate { arn } => {
                wanted.certificates.insert(arn);
            }
            Target::Stage {
                rest_api_id,
                stage_name,
            } => {
                wanted
                    .stages
                    .insert(stage(StageKind::Rest, rest_api_id, stage_name));
            }
            Target::WebsocketStage { api_id, stage_name } => {
                wanted
                    .stages
                    .insert(stage(StageKind::WebSocket, api_id, stage_name));
            }
            Target::RestApi { rest_api_id } => {
                wanted.apis.insert((StageKind::Rest, rest_api_id));
            }
            Target::WebsocketApi { api_id } => {
                wanted.apis.insert((StageKind::WebSocket, api_id));
            }
        }
    }
    wanted
}

/// Widens what events name with what the store knows: the certificates the named stages and
/// APIs presented, and every stage their records name (a certificate observed with only some
/// of its stages read would take the others for gone). Returns their records, as loaded.
fn widen(
    store: &dyn Store,
    account: &str,
    region: &str,
    wanted: Wanted,
) -> Result<(Wanted, HashMap<CertificateKey, CertificateRecord>), StoreError> {
    let mut certificates: BTreeSet<CertificateKey> = BTreeSet::new();
    for stage in &wanted.stages {
        for key in store.presenters(
            account,
            region,
            stage.kind,
            &stage.api_id,
            Some(&stage.stage_name),
        )? {
            // An entry a rotation left behind (the record names the stage no more) is dropped
            // here, so the index does not grow with every rotation.
            if !store.prune_presenter(stage, &key)? {
                certificates.insert(key);
            }
        }
    }
    for (kind, api_id) in &wanted.apis {
        certificates.extend(store.presenters(account, region, *kind, api_id, None)?);
    }
    certificates.extend(wanted.certificates.iter().map(|id| CertificateKey {
        account: account.to_string(),
        region: region.to_string(),
        id: id.clone(),
    }));
    let named = wanted.certificates.clone();
    // An entry left by a stage that moved on names a certificate no stage there presents:
    // nothing of it to read, unless the event names it.
    widen_with(store, certificates, wanted, |key, record| {
        record.in_use() || named.contains(&key.id)
    })
}

/// Widens `wanted` with the stored records of `keys` that `keep` keeps: every stage they name.
/// A key without a record is wanted as it is (a certificate new to the store). Returns the
/// records kept.
fn widen_with(
    store: &dyn Store,
    keys: impl IntoIterator<Item = CertificateKey>,
    mut wanted: Wanted,
    keep: impl Fn(&CertificateKey, &CertificateRecord) -> bool,
) -> Result<(Wanted, HashMap<CertificateKey, CertificateRecord>), StoreError> {
    let mut records = HashMap::new();
    for key in keys {
        let Some(record) = store.load(&key)? else {
            wanted.certificates.insert(key.id);
            continue;
        };
        if !keep(&key, &record) {
            continue;
        }
        wanted
            .stages
            .extend(record.users.iter().map(|u| u.stage.clone()));
        wanted.certificates.insert(key.id.clone());
        records.insert(key, record);
    }
    Ok((wanted, records))
}

/// Observes what a re-read found and decides it, committing durably (compare-and-swap on
/// each record, decided again on conflict).
fn decide_and_commit(
    store: &dyn Store,
    read: &Reread,
    records: &HashMap<CertificateKey, CertificateRecord>,
    policy: &Policy,
    observed_at: DateTime<Utc>,
) -> Result<Reconciled, StoreError> {
    let index = RegionIndex::new(&read.inventory, &read.gone_stages);
    let mut out = Reconciled {
        committed: true,
        ..Reconciled::default()
    };
    let mut batch = Batch::new(store, policy, Utc::now(), false);
    for certificate in &read.inventory.certificates {
        let loaded;
        let previous = match records.get(&certificate.key) {
            Some(r) => Some(r),
            None => {
                loaded = store.load(&certificate.key)?;
                loaded.as_ref()
            }
        };
        match present(certificate, &index, previous, observed_at) {
            Ok(Some(mut obs)) => {
                obs.source = ObservationSource::TargetedRead;
                out.observations += 1;
                batch.push(obs, previous, &mut out)?;
            }
            Ok(None) => out.unjudged.push(certificate.key.clone()),
            Err(InDoubt(stages)) => {
                // Stages its record names that this read did not cover: not decided from it.
                out.in_doubt.push((certificate.key.clone(), stages));
            }
        }
    }
    for id in &read.gone_certificates {
        let key = CertificateKey {
            account: read.inventory.account.clone(),
            region: read.inventory.region.clone(),
            id: id.clone(),
        };
        let Some(previous) = records.get(&key) else {
            continue;
        };
        if let Ok(Some(mut obs)) = missing(previous, &index, observed_at) {
            obs.source = ObservationSource::TargetedRead;
            out.observations += 1;
            batch.push(obs, Some(previous), &mut out)?;
        }
    }
    batch.flush(&mut out)?;
    Ok(out)
}
