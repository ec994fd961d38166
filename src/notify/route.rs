//! Which backends hear an intent: the first route whose owners match its owner, else the
//! default route. A route that names no backend logs.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use super::NotifyError;
use super::email::EmailBackend;
use crate::config::PartnerSettings;
use crate::config::notify::{NotifySettings, Route, owner_matches};
use crate::lifecycle::{Intent, IntentKind};

use super::backend::{Backend, LogBackend};
use super::jira::JiraBackend;
use super::pagerduty::PagerDutyBackend;
use super::webhook::WebhookBackend;
use crate::store::Store;

/// The backends of one route.
type Backends = Vec<Arc<dyn Backend>>;

/// The routes (their owner patterns), each with its backends built, and the e-mail backend
/// that every partner e-mail goes to besides its route.
pub struct Routes {
    routes: Vec<(Vec<String>, Backends)>,
    default: Backends,
    email: Option<Arc<dyn Backend>>,
}

impl Routes {
    pub fn new(
        settings: &NotifySettings,
        partners: &BTreeMap<String, PartnerSettings>,
        store: Arc<dyn Store + Send + Sync>,
    ) -> Result<Routes, NotifyError> {
        let timeout = Duration::from_secs(settings.timeout_secs);
        let email = EmailBackend::new(&settings.email, partners, timeout)
            .map_err(NotifyError::Setup)?
            .map(|e| Arc::new(e) as Arc<dyn Backend>);
        Ok(Routes {
            email,
            routes: settings
                .routes
                .iter()
                .map(|r| (r.owners.clone(), backends(settings, r, timeout, &store)))
                .collect(),
            default: backends(settings, &settings.default_route, timeout, &store),
        })
    }

    /// The backends that hear `intent`. An intent without an owner (an unowned certificate,
    /// a whole account and region) goes to the default route; a partner e-mail goes to the
    /// partner as well, when e-mail is configured.
    pub fn for_intent(&self, intent: &Intent) -> Backends {
        let route = intent
            .owner
            .as_deref()
            .and_then(|owner| {
                self.routes
                    .iter()
                    .find(|(owners, _)| owners.iter().any(|p| owner_matches(p, owner)))
            })
            .map_or(&self.default, |(_, backends)| backends);
        let mut backends = route.clone();
        if let (IntentKind::PartnerEmail { .. }, Some(email)) = (&intent.kind, &self.email) {
            backends.retain(|b| b.name() != "log");
            backends.push(email.clone());
        }
        backends
    }
}

fn backends(
    settings: &NotifySettings,
    route: &Route,
    timeout: Duration,
    store: &Arc<dyn Store + Send + Sync>,
) -> Backends {
    let mut out: Backends = Vec::new();
    // The ticket first: the episode's intents open, escalate and close it in order.
    if let Some(jira) = JiraBackend::new(&settings.jira, route, timeout, store.clone()) {
        out.push(Arc::new(jira));
    }
    if let Some(key) = &route.pagerduty_routing_key {
        out.push(Arc::new(PagerDutyBackend::new(
            &settings.pagerduty.url,
            key.clone(),
            timeout,
        )));
    }
    if let (Some(url), Some(secret)) = (&route.webhook_url, &route.webhook_secret) {
        out.push(Arc::new(WebhookBackend::new(url, secret.clone(), timeout)));
    }
    if out.is_empty() {
        out.push(Arc::new(LogBackend));
    }
    out
}
