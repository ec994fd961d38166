//! The Jira backend: one issue per owner's episode (and per unreadable account and region),
//! in Jira Cloud (REST v3, Atlassian Document Format bodies, Basic e-mail + API token) or Data
//! Center (REST v2, text bodies, Bearer personal access token).
//!
//! Never two issues for one episode. Cloud's search is eventually consistent, so a create
//! whose answer was lost cannot be found at once. Before the POST, "about to create, at T" is
//! noted durably under the episode's dedup label; after it, the issue key. An episode with a
//! create noted but no key is settled by searching the label, and created again only once
//! `notify.jira.settle_secs` have passed without it appearing; never while in doubt.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::backend::{Backend, DeliveryError, send};
use crate::config::Secret;
use crate::config::notify::{JiraFlavour, JiraSettings, Route};
use crate::lifecycle::{Intent, IntentKind, Priority, days_left};
use crate::output;
use crate::store::Store;

/// The zero-downtime rotation playbook (the seed's checklist), on every ticket.
const PLAYBOOK: &[&str] = &[
    "Inventory every backend and partner that trusts the current certificate.",
    "Generate the successor certificate in API Gateway, well before the expiry.",
    "Add the successor to every backend and partner trust store, keeping the old one: both trusted.",
    "Once every trust store is confirmed, switch the stages to the successor.",
    "Watch the API logs for successful connections.",
    "After the stabilisation period, remove the old certificate from the trust stores and delete it.",
];

pub struct JiraBackend {
    flavour: JiraFlavour,
    api: String,
    authorization: Secret,
    client: reqwest::Client,
    project: String,
    components: Vec<String>,
    labels: Vec<String>,
    issue_type: String,
    done_category: String,
    settle: chrono::Duration,
    store: Arc<dyn Store + Send + Sync>,
}

impl JiraBackend {
    /// `None` when the route names no Jira project.
    pub fn new(
        settings: &JiraSettings,
        route: &Route,
        timeout: Duration,
        store: Arc<dyn Store + Send + Sync>,
    ) -> Option<JiraBackend> {
        let project = route.jira_project.clone()?;
        let token = settings.token.clone()?;
        let authorization = match settings.flavour {
            JiraFlavour::Cloud => Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    settings.user,
                    token.expose()
                ))
            )),
            JiraFlavour::Datacenter => Secret::new(format!("Bearer {}", token.expose())),
        };
        let version = match settings.flavour {
            JiraFlavour::Cloud => 3,
            JiraFlavour::Datacenter => 2,
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("certsentinel/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Some(JiraBackend {
            flavour: settings.flavour,
            api: format!(
                "{}/rest/api/{version}",
                settings.base_url.trim_end_matches('/')
            ),
            authorization,
            client,
            project,
            components: route.jira_components.clone(),
            labels: route.jira_labels.clone(),
            issue_type: settings.issue_type.clone(),
            done_category: settings.done_category.clone(),
            settle: chrono::Duration::seconds(settings.settle_secs as i64),
            store,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/{path}", self.api))
            .header("authorization", self.authorization.expose())
            .header("accept", "application/json")
    }

    /// A body in the flavour's format: ADF in Cloud, text in Data Center.
    fn body(&self, paragraphs: &[String], checklist: &[&str]) -> Value {
        match self.flavour {
            JiraFlavour::Datacenter => {
                let mut text = paragraphs.join("\n\n");
                if !checklist.is_empty() {
                    text.push_str("\n\n");
                    for item in checklist {
                        text.push_str(&format!("* [ ] {item}\n"));
                    }
                }
                Value::String(text)
            }
            JiraFlavour::Cloud => {
                let mut content: Vec<Value> = paragraphs
                    .iter()
                    .map(|p| json!({"type": "paragraph", "content": [{"type": "text", "text": p}]}))
                    .collect();
                if !checklist.is_empty() {
                    content.push(json!({
                        "type": "bulletList",
                        "content": checklist.iter().map(|item| json!({
                            "type": "listItem",
                            "content": [{"type": "paragraph", "content": [{"type": "text", "text": format!("[ ] {item}")}]}],
                        })).collect::<Vec<_>>(),
                    }));
                }
                json!({"type": "doc", "version": 1, "content": content})
            }
        }
    }

    /// The issue key of `intent`'s episode, creating the issue when `create` and none exists.
    async fn issue(&self, intent: &Intent, create: bool) -> Result<Option<String>, DeliveryError> {
        let label = dedup_label(intent);
        match self.note(&label).await? {
            Some(noted) if noted.starts_with("issue:") => return Ok(Some(noted[6..].to_string())),
            Some(noted) if noted.starts_with("creating:") => {
                if let Some(key) = self.search(&label).await? {
                    self.set_note(&label, &format!("issue:{key}")).await?;
                    return Ok(Some(key));
                }
                let since = DateTime::parse_from_rfc3339(&noted[9..])
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                if Utc::now() - since < self.settle {
                    return Err(DeliveryError::Transient(format!(
                        "a create of {label} may have happened at {since} and is not found yet: not creating again before notify.jira.settle_secs"
                    )));
                }
            }
            _ if !create => {
                let found = self.search(&label).await?;
                if let Some(key) = &found {
                    self.set_note(&label, &format!("issue:{key}")).await?;
                }
                return Ok(found);
            }
            _ => {}
        }
        if !create {
            return Ok(None);
        }
        self.set_note(&label, &format!("creating:{}", Utc::now().to_rfc3339()))
            .await?;
        match self.create(intent, &label).await {
            Ok(key) => {
                self.set_note(&label, &format!("issue:{key}")).await?;
                Ok(Some(key))
            }
            // Throttled or refused: Jira said it did nothing, so there is nothing to settle.
            // A server error or a lost answer leaves the create noted: it may have happened.
            Err(e @ (DeliveryError::Throttled { .. } | DeliveryError::Permanent(_))) => {
                self.set_note(&label, "none").await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn create(&self, intent: &Intent, label: &str) -> Result<String, DeliveryError> {
        let (summary, paragraphs, priority, checklist) = ticket(intent);
        let mut labels = vec!["certsentinel".to_string(), label.to_string()];
        labels.extend(self.labels.iter().cloned());
        let mut fields = json!({
            "project": {"key": self.project},
            "issuetype": {"name": self.issue_type},
            "summary": summary,
            "description": self.body(&paragraphs, if checklist { PLAYBOOK } else { &[] }),
            "labels": labels,
            "priority": {"name": jira_priority(priority)},
        });
        if !self.components.is_empty() {
            fields["components"] = self.components.iter().map(|c| json!({"name": c})).collect();
        }
        let request = self
            .request(reqwest::Method::POST, "issue")
            .json(&json!({"fields": fields}));
        let (_, said) = send(request).await?;
        serde_json::from_str::<Value>(&said)
            .ok()
            .and_then(|v| v["key"].as_str().map(str::to_string))
            .ok_or_else(|| {
                DeliveryError::Permanent(format!("Jira created an issue but named no key: {said}"))
            })
    }

    /// The issue labelled `label`, if search finds it (Cloud's search may lag a create).
    async fn search(&self, label: &str) -> Result<Option<String>, DeliveryError> {
        let jql = format!("labels = \"{label}\"");
        let path = match self.flavour {
            JiraFlavour::Cloud => "search/jql",
            JiraFlavour::Datacenter => "search",
        };
        let request = self
            .request(reqwest::Method::POST, path)
            .json(&json!({"jql": jql, "fields": ["key"], "maxResults": 1}));
        let (_, said) = send(request).await?;
        Ok(serde_json::from_str::<Value>(&said).ok().and_then(|v| {
            v["issues"]
                .as_array()
                .and_then(|issues| issues.first())
                .and_then(|i| i["key"].as_str().map(str::to_string))
        }))
    }

    async fn comment(&self, key: &str, text: &str) -> Result<(), DeliveryError> {
        let request = self
            .request(reqwest::Method::POST, &format!("issue/{key}/comment"))
            .json(&json!({"body": self.body(&[text.to_string()], &[])}));
        send(request).await.map(|_| ())
    }

    async fn raise(&self, key: &str, priority: Priority) -> Result<(), DeliveryError> {
        let request = self
            .request(reqwest::Method::PUT, &format!("issue/{key}"))
            .json(&json!({"fields": {"priority": {"name": jira_priority(priority)}}}));
        send(request).await.map(|_| ())
    }

    /// Moves the issue to a status of the configured category (`done`).
    async fn close(&self, key: &str) -> Result<(), DeliveryError> {
        let (_, said) =
            send(self.request(reqwest::Method::GET, &format!("issue/{key}/transitions"))).await?;
        let transitions: Value = serde_json::from_str(&said).unwrap_or(Value::Null);
        let Some(id) = transitions["transitions"].as_array().and_then(|ts| {
            ts.iter()
                .find(|t| t["to"]["statusCategory"]["key"] == self.done_category.as_str())
                .and_then(|t| t["id"].as_str().map(str::to_string))
        }) else {
            return Err(DeliveryError::Permanent(format!(
                "issue {key} has no transition to a status of category '{}' (notify.jira.done_category)",
                self.done_category
            )));
        };
        let request = self
            .request(reqwest::Method::POST, &format!("issue/{key}/transitions"))
            .json(&json!({"transition": {"id": id}}));
        send(request).await.map(|_| ())
    }

    async fn note(&self, label: &str) -> Result<Option<String>, DeliveryError> {
        let store = self.store.clone();
        let label = label.to_string();
        tokio::task::spawn_blocking(move || store.note("jira", &label))
            .await
            .map_err(|e| DeliveryError::Transient(e.to_string()))?
            .map_err(|e| DeliveryError::Transient(e.to_string()))
    }

    async fn set_note(&self, label: &str, value: &str) -> Result<(), DeliveryError> {
        let store = self.store.clone();
        let (label, value) = (label.to_string(), value.to_string());
        tokio::task::spawn_blocking(move || store.set_note("jira", &label, &value))
            .await
            .map_err(|e| DeliveryError::Transient(e.to_string()))?
            .map_err(|e| DeliveryError::Transient(e.to_string()))
    }
}

/// The label that names one episode's issue: Jira labels take no spaces, so a hash.
pub fn dedup_label(intent: &Intent) -> String {
    let identity = match &intent.kind {
        IntentKind::TargetUnreadable { .. } | IntentKind::TargetReadable { .. } => format!(
            "unreadable|{}|{}",
            intent.certificate.account, intent.certificate.region
        ),
        _ => format!(
            "{}|{}|e{}",
            intent.certificate,
            intent.owner.as_deref().unwrap_or("-"),
            intent.episode
        ),
    };
    format!(
        "certsentinel-{}",
        &hex::encode(Sha256::digest(identity.as_bytes()))[..24]
    )
}

fn jira_priority(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "Low",
        Priority::Medium => "Medium",
        Priority::High => "High",
        Priority::Highest => "Highest",
    }
}

/// A new ticket: summary, description paragraphs, priority, whether the playbook goes in.
fn ticket(intent: &Intent) -> (String, Vec<String>, Priority, bool) {
    let cert = &intent.certificate;
    let show = format!("certsentinel state show {cert}");
    match &intent.kind {
        IntentKind::TargetUnreadable {
            unreadable_since,
            error,
            ..
        } => (
            format!("certsentinel cannot see account {} / region {}", cert.account, cert.region),
            vec![
                format!(
                    "certsentinel has not been able to read account {} / region {} since {}: {error}",
                    cert.account,
                    cert.region,
                    unreadable_since.format("%Y-%m-%d %H:%M UTC")
                ),
                "Its certificates keep escalating on their last known expiry, marked unconfirmed; nothing there is resolved until it can be read again (check the role and its permissions).".to_string(),
            ],
            Priority::High,
            false,
        ),
        IntentKind::OpenTicket {
            priority,
            not_after,
            days_left,
            stages,
        } => (
            format!(
                "Rotate API Gateway client certificate {} ({}/{}): expires {}",
                cert.id,
                cert.account,
                cert.region,
                not_after.format("%Y-%m-%d")
            ),
            vec![
                format!(
                    "The client certificate {} presented to mTLS backends expires on {} ({} days left). When it expires, the backends reject every call.",
                    cert,
                    not_after.format("%Y-%m-%d %H:%M UTC"),
                    days_left
                ),
                format!(
                    "Stages of {} presenting it: {}.",
                    intent.owner.as_deref().unwrap_or(output::NO_OWNER),
                    stages
                        .iter()
                        .map(|s| format!("{}:{}({})/{}", s.stage.kind, s.api_name, s.stage.api_id, s.stage.stage_name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "Partners trusting it: {}.",
                    {
                        let mut partners: Vec<&str> = stages.iter().filter_map(|s| s.partner.as_deref()).collect();
                        partners.sort_unstable();
                        partners.dedup();
                        if partners.is_empty() { "none".to_string() } else { partners.join(", ") }
                    }
                ),
                format!("This ticket closes by itself once none of these stages presents the certificate. Its full record: `{show}`."),
                "Rotate without downtime:".to_string(),
            ],
            *priority,
            true,
        ),
        _ => (
            format!("certsentinel: {}", output::intent_words(intent)),
            vec![output::intent_words(intent), format!("Its full record: `{show}`.")],
            Priority::Medium,
            false,
        ),
    }
}

impl Backend for JiraBackend {
    fn name(&self) -> &'static str {
        "jira"
    }

    fn deliver<'a>(
        &'a self,
        intent: &'a Intent,
        _summary: &'a str,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(async move {
            let words = output::intent_words(intent);
            let words = if intent.unconfirmed {
                format!(
                    "(unconfirmed: decided from what was last known, the account and region cannot be read) {words}"
                )
            } else {
                words
            };
            match &intent.kind {
                IntentKind::OpenTicket { .. } | IntentKind::TargetUnreadable { .. } => {
                    let key = self.issue(intent, true).await?.unwrap_or_default();
                    Ok(key)
                }
                IntentKind::ResolveTicket { .. } | IntentKind::TargetReadable { .. } => {
                    let Some(key) = self.issue(intent, false).await? else {
                        return Ok("no issue to close".to_string());
                    };
                    self.comment(&key, &words).await?;
                    self.close(&key).await?;
                    Ok(key)
                }
                kind => {
                    let Some(key) = self.issue(intent, true).await? else {
                        return Ok("no issue".to_string());
                    };
                    match kind {
                        IntentKind::Escalate { priority, .. } => {
                            self.raise(&key, *priority).await?
                        }
                        // An outage: the ticket goes to the top.
                        IntentKind::Incident { .. } => self.raise(&key, Priority::Highest).await?,
                        _ => {}
                    }
                    let text = match kind {
                        IntentKind::Incident { expired_at } => format!(
                            "{words}. It expired {} days ago.",
                            -days_left(*expired_at, intent.decided_at)
                        ),
                        IntentKind::AnnounceSuccessor { pem: Some(pem), .. } => {
                            format!("{words}.\n\n{pem}")
                        }
                        _ => words,
                    };
                    self.comment(&key, &text).await?;
                    Ok(key)
                }
            }
        })
    }
}
