//! The PagerDuty backend (Events API v2): an escalation step that asks for a page, and an
//! incident, trigger an alert whose `dedup_key` is the owner's episode, so every page of one
//! episode updates one alert; the episode's resolution resolves it. An account and region
//! that cannot be read pages the default route the same way until it can be read again.
//! Other intents are not for PagerDuty.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::backend::{Backend, DeliveryError, send};
use crate::config::Secret;
use crate::lifecycle::{Intent, IntentKind};

/// PagerDuty's bound on `dedup_key`.
const DEDUP_KEY_MAX: usize = 255;
/// PagerDuty's bound on `payload.summary`.
const SUMMARY_MAX: usize = 1024;

pub struct PagerDutyBackend {
    url: String,
    routing_key: Secret,
    client: reqwest::Client,
}

impl PagerDutyBackend {
    pub fn new(url: &str, routing_key: Secret, timeout: Duration) -> PagerDutyBackend {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("certsentinel/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        PagerDutyBackend {
            url: url.to_string(),
            routing_key,
            client,
        }
    }
}

/// One alert per owner's episode (or per unreadable account and region), within PagerDuty's
/// 255 characters.
pub fn dedup_key(intent: &Intent) -> String {
    let key = match &intent.kind {
        IntentKind::TargetUnreadable { .. } | IntentKind::TargetReadable { .. } => format!(
            "certsentinel/unreadable/{}/{}",
            intent.certificate.account, intent.certificate.region
        ),
        _ => format!(
            "certsentinel/{}/{}/e{}",
            intent.certificate,
            intent.owner.as_deref().unwrap_or("-"),
            intent.episode
        ),
    };
    if key.len() <= DEDUP_KEY_MAX {
        key
    } else {
        format!(
            "certsentinel/{}",
            hex::encode(Sha256::digest(key.as_bytes()))
        )
    }
}

/// The event an intent sends, if it is for PagerDuty at all.
pub fn event(intent: &Intent, summary: &str, routing_key: &str) -> Option<serde_json::Value> {
    let (action, severity) = match &intent.kind {
        IntentKind::Escalate {
            page: Some(severity),
            ..
        } => ("trigger", severity.to_string()),
        IntentKind::Incident { .. } => ("trigger", "critical".to_string()),
        IntentKind::TargetUnreadable { .. } => ("trigger", "error".to_string()),
        IntentKind::ResolveTicket { .. } | IntentKind::TargetReadable { .. } => {
            ("resolve", String::new())
        }
        _ => return None,
    };
    let dedup_key = dedup_key(intent);
    if action == "resolve" {
        return Some(json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }));
    }
    let summary: String = summary.chars().take(SUMMARY_MAX).collect();
    let region = &intent.certificate.region;
    Some(json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "certsentinel",
        "links": [{
            "href": format!("https://{region}.console.aws.amazon.com/apigateway/main/client-certificates?region={region}"),
            "text": format!("API Gateway client certificates in {region}"),
        }],
        "payload": {
            "summary": summary,
            "source": intent.certificate.to_string(),
            "severity": severity,
            "timestamp": intent.decided_at.to_rfc3339(),
            "component": "api-gateway-client-certificate",
            "group": intent.owner.as_deref().unwrap_or("(no owner)"),
            "class": serde_json::to_value(&intent.kind)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                .unwrap_or_default(),
            "custom_details": {
                "certificate": intent.certificate,
                "owner": intent.owner,
                "episode": intent.episode,
                "unconfirmed": intent.unconfirmed,
                "intent": intent.kind,
                "state": format!("certsentinel state show {}", intent.certificate),
            },
        },
    }))
}

impl Backend for PagerDutyBackend {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn deliver<'a>(
        &'a self,
        intent: &'a Intent,
        summary: &'a str,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(async move {
            let Some(event) = event(intent, summary, self.routing_key.expose()) else {
                return Ok("not for paging".to_string());
            };
            let request = self.client.post(&self.url).json(&event);
            send(request).await?;
            Ok(format!("dedup_key {}", dedup_key(intent)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Episode, PageSeverity, Priority};
    use crate::test_support::{at, cert};

    fn intent(owner: Option<&str>, kind: IntentKind) -> Intent {
        let episode = Episode::opened(
            3,
            owner.map(str::to_string),
            Default::default(),
            Default::default(),
            at(0.0),
            at(10.0),
        );
        Intent::new(&cert("c1"), &episode, at(0.0), kind)
    }

    #[test]
    fn pages_trigger_and_resolve_one_alert_per_episode() {
        let page = intent(
            Some("payments"),
            IntentKind::Escalate {
                step_days: 7,
                priority: Priority::Highest,
                page: Some(PageSeverity::Critical),
                days_left: 6,
            },
        );
        let trigger = event(&page, "escalate", "KEY").unwrap();
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["payload"]["severity"], "critical");
        let resolve = event(
            &intent(
                Some("payments"),
                IntentKind::ResolveTicket {
                    how: crate::lifecycle::Resolution::StageDeleted,
                },
            ),
            "resolve",
            "KEY",
        )
        .unwrap();
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        // A step without a page is not for PagerDuty.
        let quiet = intent(
            Some("payments"),
            IntentKind::Escalate {
                step_days: 30,
                priority: Priority::Medium,
                page: None,
                days_left: 29,
            },
        );
        assert!(event(&quiet, "", "KEY").is_none());
    }

    #[test]
    fn dedup_keys_stay_within_255_characters() {
        let mut long = intent(
            Some(&"x".repeat(300)),
            IntentKind::Incident {
                expired_at: at(1.0),
            },
        );
        assert!(dedup_key(&long).len() <= DEDUP_KEY_MAX);
        long.owner = Some("payments".into());
        assert!(dedup_key(&long).ends_with("/payments/e3"));
    }
}
