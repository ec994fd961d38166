//! Test harness: starts the real parts a test needs on 127.0.0.1 (free ports), one spawn
//! helper each ([`FakeControlPlane::start`], [`Moto::start`]), talks to their admin APIs,
//! runs the `certsentinel` binary or the library against them, and stops everything on drop.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Rate limits out of the way, so tests measure behaviour, not waiting.
pub const FAST: &str = r#"
[aws]
regions = ["us-east-1"]
[aws.accounts]
list = [{ id = "123456789012" }]
[aws.rate_limit]
requests_per_second = 10000.0
burst = 1000
max_concurrency = 16
[aws.retry]
initial_backoff_ms = 10
max_backoff_ms = 200
"#;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv with the fake's, moto's and the AWS CLI's packages; created on first use (under a
/// lock, since tests run in parallel) so that `cargo test` works on a fresh machine.
pub fn venv() -> PathBuf {
    let root = repo_root();
    let venv = std::env::var_os("CERTSENTINEL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let lock_path = std::env::temp_dir().join("certsentinel-venv.lock");
    let lock = File::create(&lock_path).expect("create venv lock");
    lock.lock().expect("lock venv");
    let status = Command::new("bash")
        .arg(root.join("tests/fakes/bootstrap-venv.sh"))
        .env("CERTSENTINEL_VENV", &venv)
        .status()
        .expect("run tests/fakes/bootstrap-venv.sh");
    assert!(status.success(), "tests/fakes/bootstrap-venv.sh failed");
    drop(lock);
    venv
}

/// Every `.rs` file below `dir`.
pub fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port_file(path: &Path, child: &mut Child, what: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(port) = text.trim().parse()
        {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_http(url: &str, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ureq::get(url).call().is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before answering: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
pub struct Guard(Child);

impl Guard {
    pub fn new(child: Child) -> Guard {
        Guard(child)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python fake of `tests/fakes/` running on a free port of 127.0.0.1; it stops (and its
/// temporary directory goes) when this is dropped.
pub struct Spawned {
    pub port: u16,
    /// Holds the port file; kept until the fake stops.
    _dir: tempfile::TempDir,
    _child: Guard,
}

impl Spawned {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts `tests/fakes/<script>` with `--port 0 --port-file` and `args`, and waits until it
/// listens; `what` names it in a failure.
pub fn spawn_fake<I, S>(script: &str, args: I, what: &str) -> Spawned
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut child = Command::new(venv.join("bin/python"))
        .arg(repo_root().join("tests/fakes").join(script))
        .args(["--port", "0", "--port-file"])
        .arg(&port_file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let port = wait_for_port_file(&port_file, &mut child, what);
    Spawned {
        port,
        _dir: dir,
        _child: Guard(child),
    }
}

/// The fake API Gateway control plane (v1 and v2), `tests/fakes/apigateway_fake.py`.
pub struct FakeControlPlane {
    pub url: String,
    _fake: Spawned,
}

impl FakeControlPlane {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let fake = spawn_fake("apigateway_fake.py", extra, "the fake control plane");
        FakeControlPlane {
            url: fake.url(),
            _fake: fake,
        }
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_fake/{path}", self.url);
        let result = match (method, body) {
            ("GET", _) => ureq::get(&url).call(),
            (_, Some(b)) => ureq::post(&url).send_json(b),
            (_, None) => ureq::post(&url).send_empty(),
        };
        let mut response = result.unwrap_or_else(|e| panic!("fake admin {path}: {e}"));
        response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_json()
            .unwrap_or(Value::Null)
    }

    pub fn seed(&self, spec: Value) -> Value {
        self.admin("POST", "seed", Some(spec))
    }

    pub fn calls(&self) -> Value {
        self.admin("GET", "calls", None)
    }

    pub fn calls_of(&self, operation: &str) -> u64 {
        self.calls()["by_operation"][operation]
            .as_u64()
            .unwrap_or(0)
    }

    /// Calls to API Gateway and the Account service, the quota the call floor is about: the
    /// fake's total without the STS identity checks it also answers.
    pub fn control_plane_calls(&self) -> u64 {
        let calls = self.calls();
        calls["total"].as_u64().unwrap_or(0)
            - calls["by_operation"]["sts:GetCallerIdentity"]
                .as_u64()
                .unwrap_or(0)
    }

    pub fn reset_calls(&self) {
        self.admin("POST", "calls/reset", None);
    }

    pub fn fault(&self, operation: &str, kind: &str, count: u32, retry_after_seconds: u32) {
        self.fault_spec(json!({"operation": operation, "kind": kind, "count": count,
                               "retry_after_seconds": retry_after_seconds}));
    }

    /// Puts the fake's clock `offset_seconds` away from the real time in its `Date` headers.
    pub fn clock_offset(&self, offset_seconds: i64) {
        self.admin(
            "POST",
            "clock",
            Some(json!({"offset_seconds": offset_seconds})),
        );
    }

    /// `DELETE /_fake/<what>`: clears pending faults or hooks.
    pub fn admin_delete(&self, what: &str) {
        ureq::delete(&format!("{}/_fake/{what}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("fake admin DELETE {what}: {e}"));
    }

    /// A fault given as the fake's admin API takes it (any `Retry-After` text, any status).
    pub fn fault_spec(&self, spec: Value) {
        self.admin("POST", "faults", Some(spec));
    }

    pub fn hook(&self, spec: Value) {
        self.admin("POST", "hooks", Some(spec));
    }

    /// From now on, each change made through the fake is published to `queue_url` (moto's
    /// SQS) as the CloudTrail record AWS writes, wrapped as EventBridge does; `duplicate`
    /// sends each twice, as at-least-once delivery may.
    pub fn publish_events(&self, queue_url: &str, duplicate: bool) {
        self.admin(
            "POST",
            "events",
            Some(json!({"queue_url": queue_url, "duplicate": duplicate})),
        );
    }

    /// Every event published so far: `{event_id, event_name, body, sent}`, in order.
    pub fn published(&self) -> Vec<Value> {
        self.admin("GET", "events", None)["published"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The webhook receiver (`tests/fakes/webhook_fake.py`): records each delivery, checks its
/// signature with `secret` and its body against `schemas/webhook-v1.schema.json`.
pub struct WebhookReceiver {
    pub url: String,
    _fake: Spawned,
}

impl WebhookReceiver {
    pub fn start(secret: &str) -> Self {
        let schema = repo_root().join("schemas/webhook-v1.schema.json");
        let args: [&std::ffi::OsStr; 4] = [
            "--secret".as_ref(),
            secret.as_ref(),
            "--schema".as_ref(),
            schema.as_os_str(),
        ];
        let fake = spawn_fake("webhook_fake.py", args, "the webhook receiver");
        WebhookReceiver {
            url: fake.url(),
            _fake: fake,
        }
    }

    /// Every delivery received, in order.
    pub fn deliveries(&self) -> Vec<Value> {
        let mut answer = ureq::get(&format!("{}/_fake/deliveries", self.url))
            .call()
            .expect("webhook receiver deliveries");
        let doc: Value = answer.body_mut().read_json().unwrap();
        doc["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Answers the next `count` deliveries with `status` (and `Retry-After`, if given).
    pub fn fault(&self, status: u16, count: u32, retry_after: Option<&str>) {
        ureq::post(&format!("{}/_fake/faults", self.url))
            .send_json(json!({"status": status, "count": count, "retry_after": retry_after}))
            .expect("webhook receiver fault");
    }
}

/// The PagerDuty Events API v2 fake (`tests/fakes/pagerduty_fake.py`): checks each event
/// against the published definition and keeps alerts by dedup key.
pub struct PagerDutyFake {
    pub url: String,
    _fake: Spawned,
}

impl PagerDutyFake {
    pub fn start() -> Self {
        let spec = vendor_spec("pagerduty-events-v2.openapiv3.json");
        let fake = spawn_fake(
            "pagerduty_fake.py",
            [std::ffi::OsStr::new("--spec"), spec.as_os_str()],
            "the PagerDuty fake",
        );
        PagerDutyFake {
            url: fake.url(),
            _fake: fake,
        }
    }

    fn get(&self, what: &str) -> Value {
        let mut answer = ureq::get(&format!("{}/_fake/{what}", self.url))
            .call()
            .expect("PagerDuty fake admin");
        answer.body_mut().read_json().unwrap()
    }

    /// Every event received, in order, with whether it was valid.
    pub fn events(&self) -> Vec<Value> {
        self.get("events")["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every alert ever opened, in order.
    pub fn alerts(&self) -> Vec<Value> {
        self.get("alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Answers the next `count` events with `status` (and `Retry-After` if given).
    pub fn fault(&self, status: u16, count: u32, retry_after: Option<&str>) {
        ureq::post(&format!("{}/_fake/faults", self.url))
            .send_json(json!({"status": status, "count": count, "retry_after": retry_after}))
            .expect("PagerDuty fake fault");
    }
}

/// The Jira fake (`tests/fakes/jira_fake.py`), Cloud or Data Center: checks every request
/// against the published definitions and keeps issues.
pub struct JiraFake {
    pub url: String,
    _fake: Spawned,
}

pub const JIRA_USER: &str = "robot@example.com";
pub const JIRA_TOKEN: &str = "jira-token-canary-5d1e";

impl JiraFake {
    /// `flavour` is "cloud" or "datacenter"; Cloud's search lags new issues by `lag` seconds.
    pub fn start(flavour: &str, lag: f64) -> Self {
        let mut args: Vec<std::ffi::OsString> = ["--flavour", flavour, "--search-lag-seconds"]
            .iter()
            .map(Into::into)
            .collect();
        args.push(lag.to_string().into());
        if flavour == "cloud" {
            args.push("--cloud-spec".into());
            args.push(vendor_spec("jira-cloud-platform.swagger-v3.v3.json").into());
            args.push("--adf-schema".into());
            args.push(vendor_spec("adf-schema-full.v1.json").into());
            args.extend(["--user", JIRA_USER, "--token", JIRA_TOKEN].map(Into::into));
        } else {
            args.push("--dc-spec".into());
            args.push(vendor_spec("jira-software-dc-10.3.24.swagger.v3.json").into());
            args.extend(["--pat", JIRA_TOKEN].map(Into::into));
        }
        let fake = spawn_fake("jira_fake.py", args, "the Jira fake");
        JiraFake {
            url: fake.url(),
            _fake: fake,
        }
    }

    fn get(&self, what: &str) -> Value {
        let mut answer = ureq::get(&format!("{}/_fake/{what}", self.url))
            .call()
            .expect("Jira fake admin");
        answer
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .unwrap()
    }

    /// Every request received, with whether it was valid against the definition.
    pub fn requests(&self) -> Vec<Value> {
        self.get("requests")["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every issue, with its fields, comments and status.
    pub fn issues(&self) -> Vec<Value> {
        self.get("issues")["issues"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Queues a fault (the fake's admin API body).
    pub fn fault(&self, spec: Value) {
        ureq::post(&format!("{}/_fake/faults", self.url))
            .send_json(spec)
            .expect("Jira fake fault");
    }
}

/// A real SMTP server (`tests/fakes/smtp_sink.py`, aiosmtpd) writing what it accepts to a
/// directory; `extra` are its fault flags (`--reject-first N`, `--refuse-first N`).
pub struct SmtpSink {
    pub port: u16,
    mail: tempfile::TempDir,
    _sink: Spawned,
}

impl SmtpSink {
    pub fn start(extra: &[&str]) -> Self {
        let mail = tempfile::tempdir().unwrap();
        let mut args: Vec<std::ffi::OsString> = vec!["--dir".into(), mail.path().into()];
        args.extend(extra.iter().map(Into::into));
        let sink = spawn_fake("smtp_sink.py", args, "the SMTP sink");
        SmtpSink {
            port: sink.port,
            mail,
            _sink: sink,
        }
    }

    /// Every message accepted, as received, in arrival order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mail = self.mail.path();
        let mut names: Vec<PathBuf> = std::fs::read_dir(mail)
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }
}

/// A published API definition, as stored in `tests/vendor-specs/` (SOURCES.md there says
/// where each comes from).
pub fn vendor_spec(name: &str) -> PathBuf {
    repo_root().join("tests/vendor-specs").join(name)
}

/// A moto server (STS, ACM, Organizations, SQS) on a free port.
pub struct Moto {
    pub url: String,
    _child: Guard,
}

impl Moto {
    pub fn start() -> Self {
        let venv = venv();
        let port = free_port();
        let mut child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        wait_for_http(&format!("{url}/moto-api/"), &mut child, "moto_server");
        Moto {
            url,
            _child: Guard(child),
        }
    }
}

impl Moto {
    /// Creates SQS queue `name` whose messages stay hidden `visibility_secs` once received;
    /// with `dead_letter = (name, max)`, a message received `max` times moves to that queue
    /// (created too). Returns the queue's URL.
    pub fn queue(
        &self,
        name: &str,
        visibility_secs: u32,
        dead_letter: Option<(&str, u32)>,
    ) -> String {
        let mut attributes = json!({"VisibilityTimeout": visibility_secs.to_string()});
        if let Some((dlq, max)) = dead_letter {
            let dlq_url = aws(&self.url, &["sqs", "create-queue", "--queue-name", dlq])["QueueUrl"]
                .as_str()
                .unwrap()
                .to_string();
            let arn = aws(
                &self.url,
                &[
                    "sqs",
                    "get-queue-attributes",
                    "--queue-url",
                    &dlq_url,
                    "--attribute-names",
                    "QueueArn",
                ],
            )["Attributes"]["QueueArn"]
                .as_str()
                .unwrap()
                .to_string();
            attributes["RedrivePolicy"] =
                json!({"deadLetterTargetArn": arn, "maxReceiveCount": max.to_string()})
                    .to_string()
                    .into();
        }
        aws(
            &self.url,
            &[
                "sqs",
                "create-queue",
                "--queue-name",
                name,
                "--attributes",
                &attributes.to_string(),
            ],
        )["QueueUrl"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A queue's messages: (visible, received and not yet deleted).
    pub fn queue_depth(&self, url: &str) -> (u64, u64) {
        let attributes = aws(
            &self.url,
            &[
                "sqs",
                "get-queue-attributes",
                "--queue-url",
                url,
                "--attribute-names",
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
            .clone();
        let n = |k: &str| attributes[k].as_str().unwrap_or("0").parse().unwrap();
        (
            n("ApproximateNumberOfMessages"),
            n("ApproximateNumberOfMessagesNotVisible"),
        )
    }

    /// Sends one message as anyone may (an old event again, or something that is no event).
    pub fn send(&self, url: &str, body: &str) {
        aws(
            &self.url,
            &[
                "sqs",
                "send-message",
                "--queue-url",
                url,
                "--message-body",
                body,
            ],
        );
    }

    /// Receives (and leaves) up to 10 messages' bodies: for reading a dead-letter queue.
    pub fn peek(&self, url: &str) -> Vec<String> {
        let got = aws(
            &self.url,
            &[
                "sqs",
                "receive-message",
                "--queue-url",
                url,
                "--max-number-of-messages",
                "10",
                "--visibility-timeout",
                "0",
            ],
        );
        got["Messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["Body"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The daemon running in this process, on its own runtime, stopped on drop.
pub struct RunningDaemon {
    pub store: std::sync::Arc<certsentinel::store::SledStore>,
    /// `http://` and the listener's address.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<Result<(), certsentinel::daemon::DaemonError>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RunningDaemon {
    /// Builds the daemon from `config` (with `env` for its secrets), reaching the control
    /// plane through `fake`, and runs it until [`RunningDaemon::stop`] or drop.
    pub fn start(config: &ConfigFile, env: &[(&str, &str)], fake: &FakeControlPlane) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let settings =
            certsentinel::config::Settings::load_with_env(Some(&config.path), env).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let daemon = certsentinel::daemon::Daemon::build_with_aws(
            settings,
            runtime.block_on(sdk_config(&fake.url)),
        )
        .unwrap();
        let store = daemon.store();
        let base = format!(
            "http://{}",
            daemon.listen_addr().expect("daemon.listen set")
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = runtime.spawn(daemon.run_until_stopped(async {
            let _ = stopped.await;
        }));
        RunningDaemon {
            store,
            base,
            stop: Some(stop),
            running: Some(running),
            runtime: Some(runtime),
        }
    }

    /// GETs `path` from the listener: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.base))
    }

    /// The sum of a metric's samples whose labels include every `labels` pair.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.get("/metrics");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("Prometheus text format");
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// Stops it through its shutdown future; what `run_until_stopped` returned.
    pub fn stop(mut self) -> Result<(), certsentinel::daemon::DaemonError> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Result<(), certsentinel::daemon::DaemonError> {
        let (Some(stop), Some(running), Some(runtime)) =
            (self.stop.take(), self.running.take(), self.runtime.take())
        else {
            return Ok(());
        };
        let _ = stop.send(());
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), running).await })
            .expect("the daemon stops within 30 s")
            .expect("the daemon task did not panic")
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.stop_now();
        }
    }
}

/// GETs `url`: (status, body), whatever the status.
pub fn http_get(url: &str) -> (u16, String) {
    let mut answer = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    (
        answer.status().as_u16(),
        answer.body_mut().read_to_string().unwrap(),
    )
}

/// Polls `done` every 50 ms for up to `secs` seconds; how long it took.
pub fn eventually(secs: u64, what: &str, done: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// An SDK configuration for the library, every service at `endpoint`, with test credentials
/// and retries off (certsentinel retries itself), as `inventory::aws::base_config` builds.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTESTING",
            "testing-secret",
            None,
            None,
            "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// Environment that keeps the SDK (or the AWS CLI) away from real AWS and real credentials.
pub fn sandbox_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDTESTING")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// The `certsentinel` binary, kept away from real AWS, aimed at the given real parts.
pub fn certsentinel(fake: Option<&FakeControlPlane>, moto: Option<&Moto>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certsentinel"));
    aim(&mut cmd, fake, moto);
    cmd
}

/// Runs certsentinel with `config` and `args` (aimed at `fake`, if any), asserts that it
/// succeeded (showing its stderr when not), and returns its standard output.
pub fn certsentinel_ok(
    config: &ConfigFile,
    fake: Option<&FakeControlPlane>,
    args: &[&str],
) -> String {
    let out = certsentinel(fake, None)
        .arg("--config")
        .arg(&config.path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Keeps `cmd` away from real AWS and aims it at the given real parts.
pub fn aim<'c>(
    cmd: &'c mut Command,
    fake: Option<&FakeControlPlane>,
    moto: Option<&Moto>,
) -> &'c mut Command {
    sandbox_env(cmd);
    if let Some(fake) = fake {
        // The fake also answers sts:GetCallerIdentity with the account it gives the caller's
        // key; moto takes STS over when it is there (roles are assumed through it).
        cmd.env("AWS_ENDPOINT_URL_API_GATEWAY", &fake.url)
            .env("AWS_ENDPOINT_URL_APIGATEWAYV2", &fake.url)
            .env("AWS_ENDPOINT_URL_ACCOUNT", &fake.url)
            .env("AWS_ENDPOINT_URL_STS", &fake.url);
    }
    if let Some(moto) = moto {
        cmd.env("AWS_ENDPOINT_URL_STS", &moto.url)
            .env("AWS_ENDPOINT_URL_ACM", &moto.url)
            .env("AWS_ENDPOINT_URL_ORGANIZATIONS", &moto.url)
            .env("AWS_ENDPOINT_URL_SQS", &moto.url);
    }
    cmd
}

/// A config file in a temp dir; the dir lives as long as the returned value.
pub struct ConfigFile {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConfigFile {
    /// Where [`config_file`] puts the state database (when the TOML has no `[store]`).
    pub fn store_path(&self) -> PathBuf {
        self.path.parent().unwrap().join("state")
    }
}

/// Unless the TOML has its own `[store]`, the state database goes in the same temp dir, so tests
/// never share one (or leave one in the repository).
pub fn config_file(toml: &str) -> ConfigFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certsentinel.toml");
    let mut text = toml.to_string();
    if !text.contains("[store]") {
        text.push_str(&format!(
            "\n[store]\npath = {:?}\n",
            dir.path().join("state").display().to_string()
        ));
    }
    std::fs::write(&path, text).unwrap();
    ConfigFile { path, _dir: dir }
}

/// Runs a scan in JSON and returns (exit code, document, stderr).
pub fn scan_json(mut cmd: Command, config: &ConfigFile) -> (i32, Value, String) {
    let out: Output = cmd
        .arg("--config")
        .arg(&config.path)
        .args(["scan", "--once", "--format", "json"])
        .output()
        .expect("run certsentinel");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scan output is not JSON ({e}); stdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), doc, stderr)
}

/// The certificate entry with this id in a scan document.
pub fn certificate<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("certificate {id} not in the scan output"))
}

/// ISO 8601 for `days` from now, for seeding certificates.
pub fn days_from_now(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Runs the venv's AWS CLI against `endpoint` with sandbox credentials; returns parsed JSON
/// output (or `Value::Null` for commands that print nothing). Panics with stderr on failure.
pub fn aws(endpoint: &str, args: &[&str]) -> Value {
    let out = aws_raw(endpoint, args);
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).expect("aws CLI printed JSON")
    }
}

/// Points stage `stage` of REST API `api` at `certificate`, as a team switching it with the
/// AWS CLI does.
pub fn switch_stage(fake: &FakeControlPlane, api: &str, stage: &str, certificate: &str) {
    aws(
        &fake.url,
        &[
            "apigateway",
            "update-stage",
            "--rest-api-id",
            api,
            "--stage-name",
            stage,
            "--patch-operations",
            &format!("op=replace,path=/clientCertificateId,value={certificate}"),
        ],
    );
}

/// As [`aws`], returning the raw output whatever the exit code.
pub fn aws_raw(endpoint: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(venv().join("bin/aws"));
    sandbox_env(&mut cmd);
    cmd.args(["--endpoint-url", endpoint, "--output", "json"])
        .args(args)
        .output()
        .expect("run the AWS CLI")
}

/// A certificate and key PEM pair whose notAfter is `days` from now, made with the venv's
/// Python `cryptography` (the same library the fake signs with).
pub fn make_certificate_pem(days: i64, dir: &Path) -> (PathBuf, PathBuf) {
    let script = r#"
import datetime as dt, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
days, out = int(sys.argv[1]), sys.argv[2]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backend-client.example.com")])
now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256()))
open(out + "/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(out + "/key.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    let status = Command::new(venv().join("bin/python"))
        .args(["-c", script, &days.to_string()])
        .arg(dir)
        .status()
        .expect("run python");
    assert!(status.success());
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// A proxy in front of moto's STS that denies AssumeRole into one account, the way STS does
/// when the role is missing or its trust policy refuses us (moto assumes any role). Everything
/// else is forwarded unchanged.
pub struct AssumeRoleDenier {
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
}

impl AssumeRoleDenier {
    pub fn start(upstream: &str, denied_account: &str) -> Self {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let upstream = upstream.to_string();
        let denied = denied_account.to_string();
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let upstream = upstream.clone();
                let denied = denied.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    let mut headers = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            headers.push((k.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    let text = String::from_utf8_lossy(&body).to_string();
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .to_string();
                    let (status, content_type, payload) = if text.contains("AssumeRole")
                        && text.contains(&denied)
                    {
                        (403, "text/xml".to_string(), format!(
                                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/scanner is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::{denied}:role/certsentinel-read</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
                            ).into_bytes())
                    } else {
                        let mut req = ureq::post(&format!("{upstream}{path}"));
                        for (k, v) in &headers {
                            let skip = ["host", "content-length", "connection"];
                            if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
                                req = req.header(k.as_str(), v.as_str());
                            }
                        }
                        let mut resp = req
                            .config()
                            .http_status_as_error(false)
                            .build()
                            .send(&body[..])
                            .unwrap();
                        let ct = resp
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("text/xml")
                            .to_string();
                        (
                            resp.status().as_u16(),
                            ct,
                            resp.body_mut().read_to_vec().unwrap(),
                        )
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        payload.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&payload);
                });
            }
        });
        AssumeRoleDenier {
            url: format!("http://127.0.0.1:{port}"),
            stop,
            port,
        }
    }
}

impl Drop for AssumeRoleDenier {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
