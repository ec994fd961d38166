//! Layered configuration: the embedded `config/default.toml` (every key, documented), then an
//! optional file given with `--config`, then `CERTSENTINEL__SECTION__KEY` environment
//! variables. This module owns loading, validation (unknown keys, wrong types, impossible
//! values) and the redacted rendering that `check-config` prints. It stands apart from the
//! pipeline: every module may read it, and it imports none of them (the policy's shape lives
//! here, in [`policy`]; what the policy means is the engine's).

pub mod notify;
pub mod policy;

use std::path::Path;

use serde::{Deserialize, Serialize};

use policy::Policy;

/// The embedded defaults; also the documentation of every key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of environment overrides; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "CERTSENTINEL";

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "aws.regions",
    "aws.accounts.exclude",
    "ownership.owner_tag_keys",
    "events.queue_url",
];

/// The `aws.regions` entry that means "every region enabled for the account".
pub const ENABLED_REGIONS: &str = "enabled";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(String),
    /// A value that is present but wrong; `key` is its full dotted path, such as
    /// `policy.escalation[1].days_left`.
    #[error("configuration key `{key}` is invalid: {reason}")]
    Invalid { key: String, reason: String },
}

/// The error for an invalid value of `key`.
pub(crate) fn invalid<T>(key: &str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    })
}

fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.chars().all(|c| c.is_ascii_digit())
}

/// AWS's shape of a region name: `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`.
fn is_region_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    (3..=5).contains(&parts.len())
        && parts[0].len() == 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()))
        && (1..=2).contains(&number.len())
        && number.chars().all(|c| c.is_ascii_digit())
}

/// A value that must never reach a log or an output: it prints as `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub aws: AwsSettings,
    pub ownership: OwnershipSettings,
    pub policy: Policy,
    pub store: StoreSettings,
    pub daemon: DaemonSettings,
    pub events: EventsSettings,
    pub telemetry: TelemetrySettings,
    pub notify: notify::NotifySettings,
    /// Partners (named by the stage's partner tag) and who to write to.
    #[serde(default)]
    pub partners: std::collections::BTreeMap<String, PartnerSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerSettings {
    /// The addresses a partner's coordination e-mails go to.
    pub contacts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Cron expression with seconds, UTC; empty: no scheduled scans (change events only).
    pub schedule: String,
    pub scan_on_start: bool,
    /// Where the HTTP listener (`/healthz`, `/readyz`, `/metrics`) listens; empty: none.
    pub listen: String,
    /// How long a stop (SIGTERM, Ctrl-C) may take to finish the work in flight, commit and
    /// flush; past it the daemon exits anyway, losing nothing it committed.
    pub stop_timeout_secs: u64,
}

impl DaemonSettings {
    /// Whether `certsentinel run` scans on a schedule.
    pub fn scans_on_schedule(&self) -> bool {
        !self.schedule.trim().is_empty()
    }
}

/// Said by `check-config` and at start when the daemon has no schedule: what it gives up.
pub const EVENTS_ONLY_WARNING: &str = "without daemon.schedule, certificates are decided only when a change event names them: a window entered, a step reached or an expiry passes unnoticed until then, and an account that cannot be read is never reported; keep a schedule (a daily scan is enough) unless another certsentinel scans the same store";

/// The change events the daemon consumes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// SQS queues of CloudTrail change events: one URL, or a list (one queue per region).
    /// Empty: no events.
    #[serde(deserialize_with = "one_or_many")]
    pub queue_url: Vec<String>,
    /// Receivers per queue, each long-polling for up to 10 messages at a time.
    pub receivers: usize,
    /// The long poll: how long one receive waits for messages (SQS allows 0 to 20).
    pub wait_time_secs: u32,
    /// How long a received message stays hidden from other receivers; a message whose change
    /// could not be read and decided reappears after it (and goes to the dead-letter queue
    /// after the queue's maxReceiveCount).
    pub visibility_timeout_secs: u32,
    /// How SQS calls are retried: the same shape as every section that retries.
    pub retry: RetrySettings,
}

impl EventsSettings {
    /// Whether `certsentinel run` consumes change events.
    pub fn enabled(&self) -> bool {
        !self.queue_url.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (i, url) in self.queue_url.iter().enumerate() {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(' ') {
                return invalid(
                    &format!("events.queue_url[{i}]"),
                    format!(
                        "'{url}' is not a queue URL, such as \"https://sqs.eu-west-1.amazonaws.com/111122223333/certsentinel-events\""
                    ),
                );
            }
        }
        if !(1..=16).contains(&self.receivers) {
            return invalid(
                "events.receivers",
                format!("{} is outside 1..=16", self.receivers),
            );
        }
        if self.wait_time_secs > 20 {
            return invalid(
                "events.wait_time_secs",
                format!("{} is more than SQS allows (20)", self.wait_time_secs),
            );
        }
        if !(1..=43_200).contains(&self.visibility_timeout_secs) {
            return invalid(
                "events.visibility_timeout_secs",
                format!(
                    "{} is outside 1..=43200 (SQS's bounds)",
                    self.visibility_timeout_secs
                ),
            );
        }
        self.retry.validate("events.retry")
    }
}

/// A string or a list of strings, as a list; an empty string is an empty list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) if one.trim().is_empty() => Vec::new(),
        OneOrMany::One(one) => vec![one.trim().to_string()],
        OneOrMany::Many(many) => many.into_iter().filter(|u| !u.trim().is_empty()).collect(),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Directory of the sled database.
    pub path: std::path::PathBuf,
    /// Upper bound of sled's page cache, MiB.
    pub cache_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub regions: Vec<String>,
    pub accounts: AccountsSettings,
    pub role_session_name: String,
    pub call_timeout_secs: u64,
    /// Longest time one account and region may take to read, seconds.
    pub target_deadline_secs: u64,
    /// Largest difference between the local clock and AWS's at which scans are decided.
    pub max_clock_skew_secs: u64,
    pub parallel_targets: usize,
    pub rate_limit: RateLimitSettings,
    pub retry: RetrySettings,
}

/// How the accounts to scan are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// The accounts in `aws.accounts.list` (none: the ambient credentials' account).
    List,
    /// Every active account of the AWS Organization, each reached through `role_name`.
    Organization,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsSettings {
    pub discover: Discovery,
    pub list: Vec<AccountSettings>,
    /// Organization discovery: the role assumed in every discovered account.
    pub role_name: String,
    /// Organization discovery: the external id that role requires, if any.
    #[serde(default)]
    pub external_id: Option<Secret>,
    /// Organization discovery: account ids not to scan.
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// The 12-digit account id.
    pub id: String,
    /// Role to assume in the account; absent means the ambient credentials reach it.
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<Secret>,
    /// A human label for output.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub requests_per_second: f64,
    pub burst: u32,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub throttle_patience_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipSettings {
    pub owner_tag_keys: Vec<String>,
    pub partner_tag_key: String,
    /// Tag key, on a client certificate, that names the certificate it succeeds.
    pub successor_tag_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub level: String,
    pub format: LogFormat,
}

impl Settings {
    /// Loads defaults < `file` < environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        use config::{Config, Environment, File, FileFormat};

        let env: Vec<(String, String)> = env.into_iter().collect();
        let variables: std::collections::HashMap<String, String> = env.iter().cloned().collect();
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "the file {} given with --config does not exist",
                    path.display()
                )));
            }
            check_toml_syntax(path)?;
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        // Values stay strings (the config crate converts them where a key wants a number or a
        // boolean), so an account id such as 012345678901 keeps its leading zero; list keys
        // are split here, because the crate only splits lists when it also parses numbers.
        let mut ours: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let mut lists = Vec::new();
        for key in LIST_KEYS {
            let var = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
            if let Some(value) = ours.remove(&var) {
                let items: Vec<String> = value
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                lists.push((*key, items));
            }
        }
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(ours)),
        );
        for (key, items) in lists {
            builder = builder
                .set_override(key, items)
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }

        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut settings: Settings = raw.try_deserialize().map_err(explain_deserialize_error)?;
        settings.validate()?;
        settings.notify.resolve_secrets(&variables)?;
        Ok(settings)
    }

    /// Checks the values that types alone cannot: each error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.aws.validate_regions()?;
        self.aws.accounts.validate()?;
        self.aws.validate_calls()?;
        self.ownership.validate()?;
        self.policy.validate()?;
        self.store.validate()?;
        self.daemon.validate()?;
        self.events.validate()?;
        if self.events.enabled()
            && self.aws.call_timeout_secs <= u64::from(self.events.wait_time_secs)
        {
            return invalid(
                "aws.call_timeout_secs",
                format!(
                    "{} s is not longer than events.wait_time_secs ({} s): every long poll would time out",
                    self.aws.call_timeout_secs, self.events.wait_time_secs
                ),
            );
        }
        if !self.daemon.scans_on_schedule() && !self.events.enabled() {
            return invalid(
                "daemon.schedule",
                "is empty and so is events.queue_url: `certsentinel run` would do nothing; give a schedule, a queue, or both",
            );
        }
        self.notify.validate()?;
        for (name, partner) in &self.partners {
            if partner.contacts.is_empty() || partner.contacts.iter().any(|c| !c.contains('@')) {
                return invalid(
                    &format!("partners.{name}.contacts"),
                    "give the partner's e-mail addresses, such as [\"pki@partner.example\"]",
                );
            }
        }
        self.telemetry.validate()
    }

    /// What `certsentinel run` will do, in words: scans on a schedule, change events, or both.
    pub fn mode(&self) -> String {
        let scans = self
            .daemon
            .scans_on_schedule()
            .then(|| format!("scheduled scans ({})", self.daemon.schedule));
        let events = self.events.enabled().then(|| {
            let n = self.events.queue_url.len();
            format!(
                "change events from {n} SQS queue{}",
                if n == 1 { "" } else { "s" }
            )
        });
        match (scans, events) {
            (Some(s), Some(e)) => format!("{s} and {e}"),
            (Some(s), None) => format!("{s} only (no events.queue_url)"),
            (None, Some(e)) => format!("{e} only (no daemon.schedule)"),
            (None, None) => "nothing".to_string(),
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not render: {e}\n"))
    }
}

impl AwsSettings {
    fn validate_regions(&self) -> Result<(), ConfigError> {
        if self.regions.is_empty() {
            return invalid(
                "aws.regions",
                "the list is empty; give at least one region, such as [\"us-east-1\"]",
            );
        }
        for (i, region) in self.regions.iter().enumerate() {
            if region != ENABLED_REGIONS && !is_region_name(region) {
                return invalid(
                    &format!("aws.regions[{i}]"),
                    format!("'{region}' is not a region name (expected e.g. us-east-1)"),
                );
            }
            if self.regions[..i].contains(region) {
                return invalid(
                    &format!("aws.regions[{i}]"),
                    format!("'{region}' is listed twice"),
                );
            }
        }
        if self.regions.len() > 1 && self.regions.iter().any(|r| r == ENABLED_REGIONS) {
            return invalid(
                "aws.regions",
                format!(
                    "\"{ENABLED_REGIONS}\" stands alone: it means every region enabled for each account"
                ),
            );
        }
        Ok(())
    }

    fn validate_calls(&self) -> Result<(), ConfigError> {
        if self.role_session_name.is_empty() || self.role_session_name.len() > 64 {
            return invalid("aws.role_session_name", "must be 1 to 64 characters");
        }
        if self.parallel_targets == 0 {
            return invalid("aws.parallel_targets", "must be at least 1");
        }
        if self.call_timeout_secs == 0 {
            return invalid("aws.call_timeout_secs", "must be at least 1 second");
        }
        if self.target_deadline_secs == 0 {
            return invalid("aws.target_deadline_secs", "must be at least 1 second");
        }
        let rl = &self.rate_limit;
        if !(rl.requests_per_second.is_finite() && rl.requests_per_second > 0.0) {
            return invalid(
                "aws.rate_limit.requests_per_second",
                format!(
                    "{} is not a positive number of calls per second",
                    rl.requests_per_second
                ),
            );
        }
        if rl.burst == 0 {
            return invalid("aws.rate_limit.burst", "must be at least 1 call");
        }
        if rl.max_concurrency == 0 {
            return invalid("aws.rate_limit.max_concurrency", "must be at least 1");
        }
        self.retry.validate("aws.retry")
    }
}

impl AccountsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.discover == Discovery::Organization && !self.list.is_empty() {
            return invalid(
                "aws.accounts.list",
                "must be empty when aws.accounts.discover = \"organization\" (the organization gives the accounts; use aws.accounts.exclude to skip some)",
            );
        }
        let role_name_ok = !self.role_name.is_empty()
            && self.role_name.len() <= 64
            && self
                .role_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c));
        if !role_name_ok {
            return invalid(
                "aws.accounts.role_name",
                format!("'{}' is not an IAM role name", self.role_name),
            );
        }
        for (i, id) in self.exclude.iter().enumerate() {
            if !is_account_id(id) {
                return invalid(
                    &format!("aws.accounts.exclude[{i}]"),
                    format!("'{id}' is not a 12-digit AWS account id"),
                );
            }
            if self.exclude[..i].contains(id) {
                return invalid(
                    &format!("aws.accounts.exclude[{i}]"),
                    format!("account {id} is listed twice"),
                );
            }
        }
        for (i, account) in self.list.iter().enumerate() {
            account.validate(i)?;
            if self.list[..i].iter().any(|a| a.id == account.id) {
                return invalid(
                    &format!("aws.accounts.list[{i}].id"),
                    format!(
                        "account {} is listed twice: one entry per account (its role, external id and name)",
                        account.id
                    ),
                );
            }
        }
        Ok(())
    }
}

impl AccountSettings {
    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        if !is_account_id(&self.id) {
            return invalid(
                &format!("aws.accounts.list[{i}].id"),
                format!("'{}' is not a 12-digit AWS account id", self.id),
            );
        }
        if let Some(arn) = &self.role_arn {
            let expected = format!("arn:aws:iam::{}:role/", self.id);
            let in_partition = ["arn:aws:", "arn:aws-us-gov:", "arn:aws-cn:"]
                .iter()
                .any(|p| arn.starts_with(&expected.replacen("arn:aws:", p, 1)));
            if !in_partition {
                return invalid(
                    &format!("aws.accounts.list[{i}].role_arn"),
                    format!(
                        "'{arn}' is not a role of account {} ({expected}NAME)",
                        self.id
                    ),
                );
            }
        }
        Ok(())
    }
}

impl RetrySettings {
    /// Checks a retry section; `section` is where it sits (`aws.retry`, later every section
    /// that retries has the same shape).
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return invalid(
                &format!("{section}.max_attempts"),
                "must be at least 1 attempt",
            );
        }
        if self.initial_backoff_ms == 0 || self.initial_backoff_ms > self.max_backoff_ms {
            return invalid(
                &format!("{section}.initial_backoff_ms"),
                format!(
                    "must be between 1 and {section}.max_backoff_ms ({})",
                    self.max_backoff_ms
                ),
            );
        }
        Ok(())
    }
}

impl OwnershipSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.owner_tag_keys.is_empty() || self.owner_tag_keys.iter().any(|k| k.is_empty()) {
            return invalid(
                "ownership.owner_tag_keys",
                "give at least one non-empty tag key, such as [\"owner\"]",
            );
        }
        if self.partner_tag_key.is_empty() {
            return invalid("ownership.partner_tag_key", "must not be empty");
        }
        Ok(())
    }
}

impl StoreSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return invalid("store.path", "give the directory of the state database");
        }
        if self.cache_mb == 0 || self.cache_mb > 4096 {
            return invalid(
                "store.cache_mb",
                format!("{} is outside 1..=4096 MiB", self.cache_mb),
            );
        }
        Ok(())
    }
}

impl DaemonSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "daemon.listen",
                format!(
                    "'{}' is not an address and port, such as \"127.0.0.1:9102\" (empty: no listener)",
                    self.listen
                ),
            );
        }
        if self.scans_on_schedule()
            && let Err(e) = tokio_cron_scheduler::Job::new_async(self.schedule.as_str(), |_, _| {
                Box::pin(async {})
            })
        {
            return invalid(
                "daemon.schedule",
                format!(
                    "'{}' is not a cron expression with seconds, such as \"0 0 */6 * * *\", or empty for no scheduled scans ({e})",
                    self.schedule
                ),
            );
        }
        if !(1..=3_600).contains(&self.stop_timeout_secs) {
            return invalid(
                "daemon.stop_timeout_secs",
                format!("{} is outside 1..=3600", self.stop_timeout_secs),
            );
        }
        Ok(())
    }
}

impl TelemetrySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return invalid(
                "telemetry.level",
                format!(
                    "'{}' is not a level (error, warn, info, debug, trace) or filter directive",
                    self.level
                ),
            );
        }
        Ok(())
    }
}

/// Makes serde's messages say which key is wrong and what it accepts, in the user's words.
fn explain_deserialize_error(e: config::ConfigError) -> ConfigError {
    let text = e.to_string();
    // The config crate appends " for key `a.b`" or " in <file>" when it knows where the value
    // came from; an unknown field is reported by serde with the list of accepted keys.
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let section = text
            .find("for key `")
            .map(|i| text[i + 9..].split('`').next().unwrap_or_default())
            .filter(|s| !s.is_empty());
        let key = match section {
            Some(section) => format!("{section}.{field}"),
            None => field.to_string(),
        };
        let accepted = text
            .find("expected ")
            .map(|i| text[i..].split(" for key").next().unwrap_or_default())
            .unwrap_or("see config/default.toml");
        return ConfigError::Invalid {
            key,
            reason: format!("no such key; {accepted} (config/default.toml lists every key)"),
        };
    }
    if let Some(idx) = text.find("for key `") {
        // The config crate writes an element of a list of tables as `a[0]b`.
        let key = text[idx + 9..]
            .split('`')
            .next()
            .unwrap_or_default()
            .replace("]", "].")
            .replace("].[", "][")
            .trim_end_matches('.')
            .to_string();
        let what = text[..idx].trim_end();
        let reason = match what
            .strip_prefix("enum ")
            .and_then(|rest| rest.split_once(" does not have variant constructor "))
        {
            Some((enum_name, given)) => match valid_values(enum_name) {
                Some(values) => format!("'{given}' is not one of {values}"),
                None => what.to_string(),
            },
            None => what.to_string(),
        };
        return ConfigError::Invalid { key, reason };
    }
    ConfigError::Load(text)
}

/// The values a configuration enum accepts, as serde spells them (`low`, `medium`, ...), for
/// the enums of the settings; `None` for any other name.
fn valid_values(enum_name: &str) -> Option<String> {
    fn of<T: serde::de::DeserializeOwned>() -> Option<String> {
        // serde's own message for an unknown variant lists every accepted one.
        let err = serde_json::from_str::<T>("\"\"").err()?.to_string();
        let list = err.split("expected one of ").nth(1)?;
        Some(list.split(" at line").next()?.to_string())
    }
    match enum_name {
        "Priority" => of::<policy::Priority>(),
        "PageSeverity" => of::<policy::PageSeverity>(),
        "LogFormat" => of::<LogFormat>(),
        "Discovery" => of::<Discovery>(),
        _ => None,
    }
}

/// Parses a configuration file as TOML first, so that a syntax error is reported by line and
/// column without echoing the line: it may hold a secret.
fn check_toml_syntax(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Load(format!("cannot read {}: {e}", path.display())))?;
    let Err(e) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(" at line {line}, column {column}")
    });
    Err(ConfigError::Load(format!(
        "{}: TOML syntax error{}: {}",
        path.display(),
        at.unwrap_or_default(),
        e.message()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.policy, Policy::default());
        assert_eq!(s.aws.regions, vec!["us-east-1".to_string()]);
        assert_eq!(s.ownership.owner_tag_keys, vec!["owner", "team"]);
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[policy]\nwindow_days = 45\ncritical_days = 10\n").unwrap();
        let s = Settings::load_with_env(
            Some(&file),
            env(&[
                ("CERTSENTINEL__POLICY__WINDOW_DAYS", "50"),
                ("CERTSENTINEL__AWS__REGIONS", "us-east-1,eu-west-1"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.policy.window_days, 50);
        assert_eq!(s.policy.critical_days, 10);
        assert_eq!(s.aws.regions, vec!["us-east-1", "eu-west-1"]);
    }

    #[test]
    fn environment_values_keep_leading_zeros() {
        // Account ids may start with 0; numbers must stay numbers where the key wants one.
        let s = Settings::load_with_env(
            None,
            env(&[
                (
                    "CERTSENTINEL__AWS__ACCOUNTS__EXCLUDE",
                    "012345678901,000000000042",
                ),
                ("CERTSENTINEL__AWS__RATE_LIMIT__REQUESTS_PER_SECOND", "2.5"),
                ("CERTSENTINEL__DAEMON__SCAN_ON_START", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(s.aws.accounts.exclude, vec!["012345678901", "000000000042"]);
        assert_eq!(s.aws.rate_limit.requests_per_second, 2.5);
        assert!(!s.daemon.scan_on_start);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::load_with_env(None, env(&[("CERTSENTINEL__POLICY__WINDOW", "3")]))
            .unwrap_err();
        assert!(err.to_string().contains("`policy.window`"), "{err}");
    }

    #[test]
    fn negative_window_is_rejected_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[policy]\nwindow_days = -3\n").unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("policy.window_days"), "{err}");
    }

    #[test]
    fn empty_region_list_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[aws]\nregions = []\n").unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("aws.regions"), "{err}");
    }

    #[test]
    fn region_names_are_checked_and_duplicates_refused() {
        let key_of = |toml: &str| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("c.toml");
            std::fs::write(&file, toml).unwrap();
            match Settings::load_with_env(Some(&file), env(&[])) {
                Err(ConfigError::Invalid { key, .. }) => key,
                other => panic!("{toml}: {other:?}"),
            }
        };
        for good in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-5",
        ] {
            assert!(is_region_name(good), "{good}");
        }
        for bad in [
            "useast1",
            "us-east",
            "US-EAST-1",
            "us-east-1a",
            "u-east-1",
            "us--1",
            "-1",
        ] {
            assert!(!is_region_name(bad), "{bad}");
        }
        assert_eq!(
            key_of("[aws]\nregions = [\"us-east-1\", \"us-eats\"]\n"),
            "aws.regions[1]"
        );
        assert_eq!(
            key_of("[aws]\nregions = [\"us-east-1\", \"eu-west-1\", \"us-east-1\"]\n"),
            "aws.regions[2]"
        );
        assert_eq!(
            key_of(
                "[aws.accounts]\nlist = [{ id = \"111122223333\" }, { id = \"111122223333\", name = \"again\" }]\n"
            ),
            "aws.accounts.list[1].id"
        );
        assert_eq!(
            key_of(
                "[aws.accounts]\ndiscover = \"organization\"\nexclude = [\"111122223333\", \"111122223333\"]\n"
            ),
            "aws.accounts.exclude[1]"
        );
    }

    #[test]
    fn a_wrong_enum_value_names_its_key_and_the_valid_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[policy.escalation]]\ndays_left = 30\npriority = \"urgent\"\n",
        )
        .unwrap();
        let Err(ConfigError::Invalid { key, reason }) =
            Settings::load_with_env(Some(&file), env(&[]))
        else {
            panic!("not an invalid value");
        };
        assert_eq!(key, "policy.escalation[0].priority");
        assert_eq!(
            reason,
            "'urgent' is not one of `low`, `medium`, `high`, `highest`"
        );
    }

    #[test]
    fn a_toml_syntax_error_never_echoes_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[aws.accounts]\nlist = [{ id = \"111122223333\", external_id = \"hunter2 }]\n",
        )
        .unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("TOML syntax error at line 2"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[aws.accounts]\nlist = [{ id = \"111122223333\", role_arn = \"arn:aws:iam::111122223333:role/r\", external_id = \"hunter2\" }]\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&file), env(&[])).unwrap();
        let shown = s.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            s.aws.accounts.list[0]
                .external_id
                .as_ref()
                .unwrap()
                .expose(),
            "hunter2"
        );
    }
}
