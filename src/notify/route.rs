//! Which backends hear an intent: the first route whose owners match its owner, else the
//! default route. A route that names no backend logs.

use std::sync::Arc;
use std::time::Duration;

use crate::config::notify::{NotifySettings, Route, owner_matches};
use crate::lifecycle::Intent;

use super::backend::{Backend, LogBackend};
use super::pagerduty::PagerDutyBackend;
use super::webhook::WebhookBackend;

/// The backends of one route.
type Backends = Vec<Arc<dyn Backend>>;

/// The routes (their owner patterns), each with its backends built.
pub struct Routes {
    routes: Vec<(Vec<String>, Backends)>,
    default: Backends,
}

impl Routes {
    pub fn new(settings: &NotifySettings) -> Routes {
        let timeout = Duration::from_secs(settings.timeout_secs);
        Routes {
            routes: settings
                .routes
                .iter()
                .map(|r| (r.owners.clone(), backends(settings, r, timeout)))
                .collect(),
            default: backends(settings, &settings.default_route, timeout),
        }
    }

    /// The backends that hear `intent`. An intent without an owner (an unowned certificate,
    /// a whole account and region) goes to the default route.
    pub fn for_intent(&self, intent: &Intent) -> &[Arc<dyn Backend>] {
        intent
            .owner
            .as_deref()
            .and_then(|owner| {
                self.routes
                    .iter()
                    .find(|(owners, _)| owners.iter().any(|p| owner_matches(p, owner)))
            })
            .map_or(&self.default[..], |(_, backends)| &backends[..])
    }
}

fn backends(settings: &NotifySettings, route: &Route, timeout: Duration) -> Backends {
    let mut out: Backends = Vec::new();
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
