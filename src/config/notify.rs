//! How the outbox is delivered (`[notify]`): routes chosen by owner, the backends each route
//! names, and the secrets they need. Secrets are never written in a configuration file: a
//! secret value names an environment variable (`"${NAME}"`) or comes from a file
//! (`*_file`); a literal is refused with the key and the fix.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, RetrySettings, Secret, invalid};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Episodes delivered at once; intents of one episode go out one after another, in order.
    pub parallel_episodes: usize,
    /// Longest time one delivery attempt may take, seconds.
    pub timeout_secs: u64,
    /// How often `run` tries the outbox again between scans, seconds (it also drains right
    /// after each scan).
    pub interval_secs: u64,
    /// Retrying a delivery; the same shape as every retry section.
    pub retry: RetrySettings,
    /// The PagerDuty Events API v2 endpoint.
    pub pagerduty: PagerDutySettings,
    /// Jira Cloud or Data Center.
    pub jira: JiraSettings,
    /// Partner e-mail over SMTP.
    pub email: EmailSettings,
    /// Routes tried in order; the first whose `owners` match the intent's owner takes it.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Everything no route takes, unowned certificates and whole accounts and regions
    /// included: nothing is dropped for lack of a route.
    pub default_route: Route,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network).
    None,
    /// Upgraded with STARTTLS, required.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server; empty: no e-mail.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    /// The sender of partner e-mails.
    pub from: String,
    /// The SMTP login, if the server asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password: `"${ENV_VAR}"`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Or a file holding it.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A directory with `partner.txt.j2` and `partner.html.j2` to use instead of the
    /// embedded templates (config/templates/ in the repository).
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
}

/// Which Jira: Cloud (REST v3, Atlassian Document Format, e-mail + API token) or Data Center
/// (REST v2, text, personal access token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JiraFlavour {
    Cloud,
    Datacenter,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraSettings {
    pub flavour: JiraFlavour,
    /// `https://your-domain.atlassian.net`; empty: no Jira.
    pub base_url: String,
    /// Cloud: the account's e-mail, for Basic auth with the API token. Data Center: unused.
    pub user: String,
    /// Cloud: the API token; Data Center: the personal access token. `"${ENV_VAR}"`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Or a file holding it.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The issue type of the tickets.
    pub issue_type: String,
    /// A resolved episode's issue moves to a status of this category (Jira's statusCategory
    /// key: `new`, `indeterminate` or `done`).
    pub done_category: String,
    /// A create whose answer was lost is searched for this long before it is tried again,
    /// seconds: Cloud's search finds a new issue only after a while.
    pub settle_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySettings {
    /// Where events are sent (`https://events.pagerduty.com/v2/enqueue`).
    pub url: String,
}

/// Where the intents of some owners go. A route that names no backend logs what it would
/// send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Owner names or globs (`team-*`, `?`); ignored on the default route.
    #[serde(default)]
    pub owners: Vec<String>,
    /// A URL each intent is POSTed to as JSON (schemas/webhook-v1.schema.json).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key that signs webhook bodies: `"${ENV_VAR}"`.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// Or a file holding that key (its content, trailing newline removed).
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    /// The Jira project the route's tickets go to.
    #[serde(default)]
    pub jira_project: Option<String>,
    /// Components set on its tickets.
    #[serde(default)]
    pub jira_components: Vec<String>,
    /// Labels added to its tickets (no spaces: Jira refuses them).
    #[serde(default)]
    pub jira_labels: Vec<String>,
    /// The PagerDuty Events API v2 integration key pages go to: `"${ENV_VAR}"`.
    #[serde(default)]
    pub pagerduty_routing_key: Option<Secret>,
    /// Or a file holding it.
    #[serde(default)]
    pub pagerduty_routing_key_file: Option<PathBuf>,
}

impl NotifySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.parallel_episodes == 0 {
            return invalid("notify.parallel_episodes", "must be at least 1");
        }
        if self.timeout_secs == 0 {
            return invalid("notify.timeout_secs", "must be at least 1 second");
        }
        if self.interval_secs == 0 {
            return invalid("notify.interval_secs", "must be at least 1 second");
        }
        self.retry.validate("notify.retry")?;
        if !(self.pagerduty.url.starts_with("https://")
            || self.pagerduty.url.starts_with("http://"))
        {
            return invalid(
                "notify.pagerduty.url",
                format!("'{}' is not an http(s) URL", self.pagerduty.url),
            );
        }
        let jira_used = self
            .routes
            .iter()
            .chain([&self.default_route])
            .any(|r| r.jira_project.is_some());
        if jira_used {
            if !(self.jira.base_url.starts_with("https://")
                || self.jira.base_url.starts_with("http://"))
            {
                return invalid(
                    "notify.jira.base_url",
                    "a route names a jira_project: give Jira's URL, such as \"https://example.atlassian.net\"",
                );
            }
            if self.jira.token.is_none() && self.jira.token_file.is_none() {
                return invalid(
                    "notify.jira.token",
                    "a route names a jira_project: set token = \"${ENV_VAR}\" or token_file",
                );
            }
            if self.jira.flavour == JiraFlavour::Cloud && self.jira.user.is_empty() {
                return invalid(
                    "notify.jira.user",
                    "Jira Cloud authenticates with the account's e-mail and an API token",
                );
            }
        }
        if !self.email.smtp_host.is_empty() {
            if !self.email.from.contains('@') {
                return invalid(
                    "notify.email.from",
                    format!("'{}' is not an e-mail address", self.email.from),
                );
            }
            if self.email.password.is_some() && self.email.username.is_none() {
                return invalid(
                    "notify.email.username",
                    "a password is given: give the login it goes with",
                );
            }
            if let Some(dir) = &self.email.templates_dir
                && !dir.join("partner.txt.j2").is_file()
            {
                return invalid(
                    "notify.email.templates_dir",
                    format!("{} has no partner.txt.j2", dir.display()),
                );
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let key = format!("notify.routes[{i}]");
            if route.owners.is_empty() || route.owners.iter().any(|o| o.is_empty()) {
                return invalid(
                    &format!("{key}.owners"),
                    "give the owners it takes, names or globs such as [\"team-*\"]",
                );
            }
            route.validate(&key)?;
        }
        if !self.default_route.owners.is_empty() {
            return invalid(
                "notify.default_route.owners",
                "the default route takes every owner no route takes: remove `owners`",
            );
        }
        self.default_route.validate("notify.default_route")
    }

    /// Replaces every secret reference with its value: `"${NAME}"` from `env`, `*_file` from
    /// the file. A literal secret, a missing variable or an unreadable file is an error that
    /// names the key.
    pub(super) fn resolve_secrets(
        &mut self,
        env: &HashMap<String, String>,
    ) -> Result<(), ConfigError> {
        for (i, route) in self.routes.iter_mut().enumerate() {
            route.resolve_secrets(&format!("notify.routes[{i}]"), env)?;
        }
        resolve(
            "notify.jira.token",
            &mut self.jira.token,
            &self.jira.token_file,
            env,
        )?;
        resolve(
            "notify.email.password",
            &mut self.email.password,
            &self.email.password_file,
            env,
        )?;
        self.default_route
            .resolve_secrets("notify.default_route", env)
    }
}

impl Route {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if let Some(label) = self
            .jira_labels
            .iter()
            .find(|l| l.is_empty() || l.contains(' '))
        {
            return invalid(
                &format!("{key}.jira_labels"),
                format!("'{label}' is not a Jira label: labels take no spaces"),
            );
        }
        if let Some(url) = &self.webhook_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return invalid(
                &format!("{key}.webhook_url"),
                format!("'{url}' is not an http(s) URL"),
            );
        }
        if self.webhook_url.is_some()
            && self.webhook_secret.is_none()
            && self.webhook_secret_file.is_none()
        {
            return invalid(
                &format!("{key}.webhook_secret"),
                "a webhook is signed: set webhook_secret = \"${ENV_VAR}\" or webhook_secret_file",
            );
        }
        if self.webhook_secret.is_some() && self.webhook_secret_file.is_some() {
            return invalid(
                &format!("{key}.webhook_secret_file"),
                "give webhook_secret or webhook_secret_file, not both",
            );
        }
        if self.pagerduty_routing_key.is_some() && self.pagerduty_routing_key_file.is_some() {
            return invalid(
                &format!("{key}.pagerduty_routing_key_file"),
                "give pagerduty_routing_key or pagerduty_routing_key_file, not both",
            );
        }
        Ok(())
    }

    fn resolve_secrets(
        &mut self,
        key: &str,
        env: &HashMap<String, String>,
    ) -> Result<(), ConfigError> {
        resolve(
            &format!("{key}.webhook_secret"),
            &mut self.webhook_secret,
            &self.webhook_secret_file,
            env,
        )?;
        resolve(
            &format!("{key}.pagerduty_routing_key"),
            &mut self.pagerduty_routing_key,
            &self.pagerduty_routing_key_file,
            env,
        )
    }
}

/// A secret from its file (`<key>_file`) or its `${NAME}` reference.
fn resolve(
    key: &str,
    secret: &mut Option<Secret>,
    file: &Option<PathBuf>,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    if let Some(path) = file {
        *secret = Some(secret_from_file(&format!("{key}_file"), path)?);
    } else if let Some(reference) = secret {
        *secret = Some(expand(key, reference.expose(), env)?);
    }
    Ok(())
}

/// `value` with every `${NAME}` replaced from `env`; a value without any is a literal secret.
pub fn expand(
    key: &str,
    value: &str,
    env: &HashMap<String, String>,
) -> Result<Secret, ConfigError> {
    let mut out = String::new();
    let mut rest = value;
    let mut referenced = false;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            return invalid(key, "an unclosed ${ in the value: write \"${NAME}\"");
        };
        let name = &rest[start + 2..start + 2 + len];
        let Some(found) = env.get(name) else {
            return invalid(
                key,
                format!("names the environment variable {name}, which is not set"),
            );
        };
        out.push_str(&rest[..start]);
        out.push_str(found);
        rest = &rest[start + 2 + len + 1..];
        referenced = true;
    }
    out.push_str(rest);
    if !referenced {
        // The value itself is never repeated: it is a secret.
        return invalid(
            key,
            "is written literally in the configuration: put the secret in an environment variable and write \"${NAME}\", or in a file named by the matching *_file key",
        );
    }
    Ok(Secret::new(out))
}

fn secret_from_file(key: &str, path: &std::path::Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key: key.to_string(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return invalid(key, format!("{} is empty", path.display()));
    }
    Ok(Secret::new(secret))
}

/// Whether `owner` matches `pattern`: `*` any run of characters, `?` any one, the rest as
/// written (case-sensitive, as owner tags are).
pub fn owner_matches(pattern: &str, owner: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = owner.chars().collect();
    go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_owner_names() {
        assert!(owner_matches("team-stage-*", "team-stage-payments"));
        assert!(owner_matches("team-?", "team-a"));
        assert!(owner_matches("payments", "payments"));
        assert!(!owner_matches("payments", "Payments"));
        assert!(!owner_matches("team-?", "team-ab"));
        assert!(owner_matches("*", ""));
    }

    #[test]
    fn secrets_come_from_the_environment_never_literally() {
        let env: HashMap<String, String> = [("HOOK_KEY".to_string(), "s3cret".to_string())].into();
        assert_eq!(expand("k", "${HOOK_KEY}", &env).unwrap().expose(), "s3cret");
        let ConfigError::Invalid { key, reason } = expand("k", "hunter2", &env).unwrap_err() else {
            panic!()
        };
        assert_eq!(key, "k");
        assert!(!reason.contains("hunter2"), "{reason}");
        assert!(reason.contains("${NAME}"), "{reason}");
        assert!(
            expand("k", "${MISSING}", &env)
                .unwrap_err()
                .to_string()
                .contains("MISSING")
        );
    }
}
