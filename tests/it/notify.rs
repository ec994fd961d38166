//! Delivering the outbox: routes by owner, the webhook backend (signed, schema-valid bodies),
//! at least once and never twice, failures visible and retried on request.

use serde_json::{Value, json};

use crate::helpers::*;

const CANARY: &str = "canary-7f3a9c1e-never-in-a-log";

fn estate(fake: &FakeControlPlane) {
    fake.seed(json!({
        "certificates": [{"id": "oldcert001", "not_after": days_from_now(20)}],
        "rest_apis": [{"id": "orders0001", "name": "orders-api", "stages": [
            {"name": "prod", "client_certificate_id": "oldcert001", "tags": {"owner": "payments", "partner": "acme"}},
            {"name": "search", "client_certificate_id": "oldcert001", "tags": {"owner": "search"}}]}]
    }));
}

/// Payments' intents to /hooks/payments, everything else to /hooks/default.
fn routed(hooks: &WebhookReceiver) -> ConfigFile {
    config_file(&format!(
        "{FAST}\n[notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\nmax_attempts = 3\n\
         [[notify.routes]]\nowners = [\"pay*\"]\nwebhook_url = \"{0}/hooks/payments\"\nwebhook_secret = \"${{HOOK_SECRET}}\"\n\
         [notify.default_route]\nwebhook_url = \"{0}/hooks/default\"\nwebhook_secret = \"${{HOOK_SECRET}}\"\n",
        hooks.url
    ))
}

fn run(
    config: &ConfigFile,
    fake: Option<&FakeControlPlane>,
    args: &[&str],
) -> (i32, String, String) {
    let out = certsentinel(fake, None)
        .env("HOOK_SECRET", CANARY)
        .env("RUST_LOG", "trace")
        .arg("--config")
        .arg(&config.path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_scan_delivers_each_intent_to_its_owners_route_once_signed_and_valid() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let hooks = WebhookReceiver::start(CANARY);
    let config = routed(&hooks);
    let (code, stdout, stderr) = run(
        &config,
        Some(&fake),
        &["scan", "--once", "--format", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let decided = doc["reconcile"]["intents"].as_array().unwrap().len();
    let got = hooks.deliveries();
    assert_eq!(got.len(), decided, "each intent once: {got:?}");
    for d in &got {
        assert_eq!(d["signature_valid"], true, "{d}");
        assert_eq!(d["schema_errors"], json!([]), "{d}");
        let owner = &d["body"]["intent"]["owner"];
        let want = if owner == "payments" {
            "/hooks/payments"
        } else {
            "/hooks/default"
        };
        assert_eq!(d["path"], want, "{d}");
        assert_eq!(d["body"]["key"], d["body"]["intent"]["key"]);
    }
    assert!(got.iter().any(|d| d["path"] == "/hooks/default"));
    assert!(!stderr.contains(CANARY), "the secret never reaches a log");

    // Nothing decided again, nothing delivered again; the outbox is empty.
    let (code, _, stderr) = run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, said, _) = run(&config, None, &["notify", "--once"]);
    assert_eq!(code, 0);
    assert!(said.starts_with("0 deliveries"), "{said}");
    assert_eq!(hooks.deliveries().len(), decided);
    let (_, outbox, _) = run(&config, None, &["state", "outbox"]);
    assert!(outbox.starts_with("0 intents pending"), "{outbox}");
    assert!(
        outbox.contains(&format!("{decided} delivered intents lately")),
        "{outbox}"
    );
}

#[test]
fn failures_are_retried_refusals_are_visible_and_retried_on_request() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let hooks = WebhookReceiver::start(CANARY);
    let config = routed(&hooks);
    // The first answers: two server errors (retried), then a refusal for good.
    hooks.fault(500, 2, None);
    hooks.fault(400, 1, None);
    let (code, _, stderr) = run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, 0, "a delivery failure never fails the scan: {stderr}");
    let got = hooks.deliveries();
    let statuses: Vec<u64> = got.iter().map(|d| d["status"].as_u64().unwrap()).collect();
    assert_eq!(&statuses[..3], &[500, 500, 400], "{statuses:?}");
    assert!(
        statuses[3..].iter().all(|s| *s == 200),
        "the other episodes went on: {statuses:?}"
    );
    let refused = got[2]["body"]["key"].as_str().unwrap().to_string();

    let (_, outbox, _) = run(&config, None, &["state", "outbox", "--format", "json"]);
    let outbox: Value = serde_json::from_str(&outbox).unwrap();
    let pending = outbox["pending"].as_array().unwrap();
    assert!(
        pending
            .iter()
            .any(|e| e["intent"]["key"] == refused.as_str()
                && e["deliveries"]["webhook"]["status"] == "failed"
                && e["deliveries"]["webhook"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("HTTP 400")),
        "{outbox}"
    );
    // A plain drain does not hammer a refusal; a retry on request delivers it.
    let (_, said, _) = run(&config, None, &["notify", "--once"]);
    assert!(said.contains("0 failed"), "{said}");
    let before = hooks.deliveries().len();
    let (code, said, stderr) = run(&config, None, &["notify", "--retry", &refused]);
    assert_eq!(code, 0, "{stderr}");
    assert!(said.contains("1 intent completed"), "{said}");
    let after = hooks.deliveries();
    assert!(after.len() > before);
    assert!(
        after[before..]
            .iter()
            .any(|d| d["body"]["key"] == refused.as_str() && d["status"] == 200)
    );
    let (_, outbox, _) = run(&config, None, &["state", "outbox"]);
    assert!(outbox.starts_with("0 intents pending"), "{outbox}");

    // Throttled with Retry-After: delivered in the same drain once it has waited.
    fake.seed(json!({"certificates": [{"id": "newcert002", "not_after": days_from_now(10)}],
                     "rest_apis": [{"id": "billing001", "name": "billing", "stages": [
                        {"name": "prod", "client_certificate_id": "newcert002", "tags": {"owner": "payments"}}]}]}));
    hooks.fault(429, 1, Some("1"));
    let (code, _, stderr) = run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, outbox, _) = run(&config, None, &["state", "outbox"]);
    assert!(outbox.starts_with("0 intents pending"), "{outbox}");
}

#[test]
fn without_a_backend_the_default_route_logs_what_it_would_send() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    let (code, _, stderr) = run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("would tell:"), "{stderr}");
    let (_, outbox, _) = run(&config, None, &["state", "outbox"]);
    assert!(outbox.starts_with("0 intents pending"), "{outbox}");
}

#[test]
fn a_secret_written_literally_is_refused_with_the_fix() {
    let config = config_file(&format!(
        "{FAST}\n[notify.default_route]\nwebhook_url = \"http://127.0.0.1:9/x\"\nwebhook_secret = \"{CANARY}\"\n"
    ));
    let (code, _, stderr) = run(&config, None, &["check-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("notify.default_route.webhook_secret"),
        "{stderr}"
    );
    assert!(stderr.contains("${NAME}"), "{stderr}");
    assert!(!stderr.contains(CANARY), "{stderr}");
}

#[test]
fn pages_trigger_one_alert_per_episode_and_its_end_resolves_it() {
    let fake = FakeControlPlane::start();
    // Five days left: the 7-day step pages (critical) for payments.
    fake.seed(json!({
        "certificates": [{"id": "oldcert001", "not_after": days_from_now(5)}],
        "rest_apis": [{"id": "orders0001", "name": "orders-api", "stages": [
            {"name": "prod", "client_certificate_id": "oldcert001", "tags": {"owner": "payments"}}]}]
    }));
    let pd = PagerDutyFake::start();
    let config = config_file(&format!(
        "{FAST}\n[notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\
         [notify.pagerduty]\nurl = \"{}/v2/enqueue\"\n\
         [[notify.routes]]\nowners = [\"payments\"]\npagerduty_routing_key = \"${{PD_KEY}}\"\n",
        pd.url
    ));
    let run = |args: &[&str]| {
        let out = certsentinel(Some(&fake), None)
            .env("PD_KEY", "R0UT1NGKEY0000000000000000000000")
            .arg("--config")
            .arg(&config.path)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // PagerDuty throttles the first event without saying for how long: it goes out later.
    pd.fault(429, 1, None);
    let (code, stderr) = run(&["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let events = pd.events();
    assert!(events.iter().all(|e| e["valid"] == true), "{events:?}");
    assert_eq!(events.first().unwrap()["status"], 429);
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["status"], "triggered");
    assert_eq!(alerts[0]["severity"], "critical");

    // The stage switches to a new certificate: the episode ends, the alert resolves.
    let new = aws(&fake.url, &["apigateway", "generate-client-certificate"]);
    let new_id = new["clientCertificateId"].as_str().unwrap();
    switch_stage(&fake, "orders0001", "prod", new_id);
    let (code, stderr) = run(&["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 1, "still one alert: {alerts:?}");
    assert_eq!(alerts[0]["status"], "resolved", "{alerts:?}");
    assert!(pd.events().iter().all(|e| e["valid"] == true));
    assert!(
        !stderr.contains("R0UT1NGKEY"),
        "the routing key never reaches a log"
    );
}

/// Payments and search each hear the certificate through Jira project PROJ.
fn jira_config(jira: &JiraFake, flavour: &str, settle_secs: u64) -> ConfigFile {
    config_file(&format!(
        "{FAST}\n[notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\nmax_attempts = 4\n\
         [notify.jira]\nflavour = \"{flavour}\"\nbase_url = \"{}\"\nuser = \"{JIRA_USER}\"\n\
         token = \"${{JIRA_TOKEN}}\"\nsettle_secs = {settle_secs}\n\
         [[notify.routes]]\nowners = [\"payments\"]\njira_project = \"PROJ\"\njira_labels = [\"mtls\"]\n\
         [notify.default_route]\njira_project = \"PROJ\"\n",
        jira.url
    ))
}

fn jira_run(
    config: &ConfigFile,
    fake: Option<&FakeControlPlane>,
    args: &[&str],
) -> (Option<i32>, String) {
    let (code, _, stderr) = jira_run_out(config, fake, args);
    (code, stderr)
}

fn jira_run_out(
    config: &ConfigFile,
    fake: Option<&FakeControlPlane>,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let out = certsentinel(fake, None)
        .env("JIRA_TOKEN", JIRA_TOKEN)
        .env("RUST_LOG", "debug")
        .arg("--config")
        .arg(&config.path)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains(JIRA_TOKEN),
        "the token never reaches a log"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr,
    )
}

fn switch_payments_stage(fake: &FakeControlPlane) {
    let new = aws(&fake.url, &["apigateway", "generate-client-certificate"]);
    let new_id = new["clientCertificateId"].as_str().unwrap();
    switch_stage(fake, "orders0001", "prod", new_id);
}

fn jira_story(flavour: &str) {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let jira = JiraFake::start(flavour, 0.0);
    let config = jira_config(&jira, flavour, 60);
    let (code, stderr) = jira_run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let issues = jira.issues();
    assert_eq!(issues.len(), 2, "one issue per owner's episode: {issues:?}");
    for issue in &issues {
        let fields = &issue["fields"];
        let labels: Vec<&str> = fields["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        assert!(labels.contains(&"certsentinel"), "{labels:?}");
        assert!(
            labels.iter().any(|l| l.starts_with("certsentinel-")),
            "a dedup label: {labels:?}"
        );
        assert_eq!(
            fields["priority"]["name"], "Medium",
            "escalated to the 30-day step's priority"
        );
        assert!(fields["summary"].as_str().unwrap().contains("oldcert001"));
        let comments = fields["comment"]["comments"].as_array().unwrap();
        assert!(
            !comments.is_empty(),
            "the 30-day step is commented: {issue}"
        );
    }
    assert!(
        issues.iter().any(|i| i["fields"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "mtls")),
        "the payments route's label"
    );

    // Payments switches its stage: its issue is commented and moved to Done; search's stays.
    switch_payments_stage(&fake);
    let (code, stderr) = jira_run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let issues = jira.issues();
    assert_eq!(issues.len(), 2, "no new issue: {issues:?}");
    let done: Vec<&Value> = issues
        .iter()
        .filter(|i| i["fields"]["status"]["statusCategory"]["key"] == "done")
        .collect();
    assert_eq!(done.len(), 1, "{issues:?}");
    let requests = jira.requests();
    let invalid: Vec<&Value> = requests.iter().filter(|r| r["valid"] != true).collect();
    assert!(
        invalid.is_empty(),
        "every request is valid against the definition: {invalid:?}"
    );
    let (_, outbox, _) = jira_run_out(&config, None, &["state", "outbox"]);
    assert!(outbox.starts_with("0 intents pending"), "{outbox}");
}

#[test]
fn jira_cloud_gets_one_issue_per_episode_escalated_and_closed_when_rotated() {
    jira_story("cloud");
}

#[test]
fn jira_data_center_gets_the_same_with_text_bodies_and_a_token() {
    jira_story("datacenter");
}

#[test]
fn a_create_whose_answer_was_lost_never_becomes_two_issues() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    // Search finds a new issue only 2 s after it was created.
    let jira = JiraFake::start("cloud", 2.0);
    let config = jira_config(&jira, "cloud", 30);
    // Jira creates the first issue, and the answer never arrives (a crash or a lost
    // connection after Jira acted); then it is throttled twice and fails once.
    jira.fault(json!({"kind": "lose_answer", "count": 1, "method": "POST", "path_prefix": "/rest/api/3/issue"}));
    let (code, stderr) = jira_run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(
        code,
        Some(0),
        "a delivery failure never fails the scan: {stderr}"
    );
    assert_eq!(
        jira.issues().len(),
        2,
        "the lost create happened; the other episode went on"
    );
    settles_on_one_issue_per_episode(&config, &jira);
}

/// Two episodes, each one Jira issue created while search lags 2 s behind: a drain while
/// search still lags creates nothing again, and once search finds the issue every episode goes
/// on with its one issue until the outbox is empty.
fn settles_on_one_issue_per_episode(config: &ConfigFile, jira: &JiraFake) {
    let (code, stderr) = jira_run(config, None, &["notify", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        jira.issues().len(),
        2,
        "nothing is created again while search lags"
    );
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    let (code, stderr) = jira_run(config, None, &["notify", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(jira.issues().len(), 2, "exactly one issue per episode");
    let (_, outbox, _) = jira_run_out(config, None, &["state", "outbox"]);
    assert!(outbox.starts_with("0 intents pending"), "{outbox}");
}

#[test]
fn jira_throttling_and_server_errors_are_retried_and_a_refusal_is_visible() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let jira = JiraFake::start("cloud", 0.0);
    // A server error may hide a create: one second of settling, then it is created.
    let config = jira_config(&jira, "cloud", 1);
    for status in [429, 429, 500] {
        jira.fault(json!({"status": status, "count": 1, "method": "POST", "path_prefix": "/rest/api/3/issue"}));
    }
    let (code, stderr) = jira_run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let (code, stderr) = jira_run(&config, None, &["notify", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        jira.issues().len(),
        2,
        "429, 429, 500, then created: one issue each"
    );

    // A 400 on a comment: that intent is failed and visible, nothing else waits for it.
    let fake2 = FakeControlPlane::start();
    estate(&fake2);
    let jira2 = JiraFake::start("cloud", 0.0);
    let config2 = jira_config(&jira2, "cloud", 60);
    jira2.fault(json!({"status": 400, "count": 1, "method": "POST", "path_prefix": "/rest/api/3/issue/PROJ-1/comment"}));
    let (code, stderr) = jira_run(&config2, Some(&fake2), &["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, outbox, _) = jira_run_out(&config2, None, &["state", "outbox"]);
    assert!(outbox.contains("jira: FAILED"), "{outbox}");
    assert!(outbox.contains("HTTP 400"), "{outbox}");
    assert_eq!(jira2.issues().len(), 2, "the other episode went on");
}

#[test]
fn partners_get_their_emails_threaded_once_each_over_real_smtp() {
    use mail_parser::MessageParser;

    let fake = FakeControlPlane::start();
    estate(&fake);
    // The first message is answered "try again later": it is sent again.
    let smtp = SmtpSink::start(&["--reject-first", "1"]);
    let config = config_file(&format!(
        "{FAST}\n[notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\
         [notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\n\
         from = \"certsentinel@example.com\"\n\
         [partners.acme]\ncontacts = [\"pki@acme.example\"]\n",
        smtp.port
    ));
    let (code, stdout, stderr) = run(
        &config,
        Some(&fake),
        &["scan", "--once", "--format", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let partner_intents = doc["reconcile"]["intents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"]["type"] == "partner_email")
        .count();
    assert_eq!(partner_intents, 2, "the timeline and the 30-day reminder");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "each once, the rejected one sent again");
    let parsed: Vec<_> = messages
        .iter()
        .map(|m| MessageParser::default().parse(m).expect("a MIME message"))
        .collect();
    let window = &parsed[0];
    assert!(
        window.subject().unwrap().contains("oldcert001"),
        "{:?}",
        window.subject()
    );
    assert_eq!(
        window.to().unwrap().first().unwrap().address().unwrap(),
        "pki@acme.example"
    );
    let text = window.body_text(0).unwrap();
    assert!(text.contains("both trusted"), "{text}");
    assert!(window.body_html(0).is_some(), "an HTML part too");
    let reminder = &parsed[1];
    assert_eq!(
        reminder.in_reply_to().as_text(),
        window.message_id(),
        "the reminder threads under the timeline"
    );
    assert_ne!(reminder.message_id(), window.message_id());

    // Nothing is sent twice.
    let (code, _, _) = run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, 0);
    assert_eq!(smtp.messages().len(), 2);
}

#[test]
fn a_successor_reaches_the_partner_and_the_ticket_before_the_switch_and_the_switch_closes_it() {
    use mail_parser::MessageParser;

    let fake = FakeControlPlane::start();
    estate(&fake);
    let jira = JiraFake::start("cloud", 0.0);
    let smtp = SmtpSink::start(&[]);
    let config = config_file(&format!(
        "{FAST}\n[notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\
         [notify.jira]\nflavour = \"cloud\"\nbase_url = \"{}\"\nuser = \"{JIRA_USER}\"\ntoken = \"${{JIRA_TOKEN}}\"\n\
         [notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"certsentinel@example.com\"\n\
         [[notify.routes]]\nowners = [\"payments\"]\njira_project = \"PROJ\"\n\
         [partners.acme]\ncontacts = [\"pki@acme.example\"]\n",
        jira.url, smtp.port
    ));
    // Window entered: a Jira issue for payments, the timeline (and the 30-day reminder) to acme.
    let (code, stderr) = jira_run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        jira.issues().len(),
        1,
        "payments' ticket (search's intents are logged)"
    );
    assert_eq!(smtp.messages().len(), 2);

    // Payments generates the successor, tagged as such; no stage has switched yet.
    let successor = aws(
        &fake.url,
        &[
            "apigateway",
            "generate-client-certificate",
            "--description",
            "successor of oldcert001",
            "--tags",
            r#"{"certsentinel:successor-of": "oldcert001"}"#,
        ],
    );
    let successor_id = successor["clientCertificateId"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, stderr) = jira_run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 3, "the successor e-mail");
    let mail = MessageParser::default().parse(&messages[2]).unwrap();
    let text = mail.body_text(0).unwrap();
    assert!(text.contains(&successor_id), "{text}");
    assert!(
        text.contains("-----BEGIN CERTIFICATE-----"),
        "its PEM: {text}"
    );
    let issue = &jira.issues()[0];
    let comments = issue["fields"]["comment"]["comments"].to_string();
    assert!(comments.contains(&successor_id), "{comments}");
    assert!(
        comments.contains("BEGIN CERTIFICATE"),
        "the PEM on the ticket"
    );

    // The stage switches to the successor: the ticket is commented and done, the partner told.
    switch_stage(&fake, "orders0001", "prod", &successor_id);
    let (code, stderr) = jira_run(&config, Some(&fake), &["scan", "--once"]);
    assert_eq!(code, Some(0), "{stderr}");
    let issue = &jira.issues()[0];
    assert_eq!(issue["fields"]["status"]["statusCategory"]["key"], "done");
    let messages = smtp.messages();
    let cut_over = MessageParser::default()
        .parse(messages.last().unwrap())
        .unwrap();
    assert!(
        cut_over.subject().unwrap().contains("Cut-over"),
        "{:?}",
        cut_over.subject()
    );
    assert!(jira.requests().iter().all(|r| r["valid"] == true));
}

#[test]
fn sigkill_after_jira_created_an_issue_and_before_it_was_recorded_still_leaves_one_issue() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    // Search finds a new issue only 2 s after it is created.
    let jira = JiraFake::start("cloud", 2.0);
    let config = jira_config(&jira, "cloud", 60);
    // Jira creates the first issue at once but answers only after 30 s.
    jira.fault(json!({"kind": "delay_answer", "seconds": 30, "count": 1,
                      "method": "POST", "path_prefix": "/rest/api/3/issue"}));
    let mut child = certsentinel(Some(&fake), None)
        .env("JIRA_TOKEN", JIRA_TOKEN)
        .arg("--config")
        .arg(&config.path)
        .args(["scan", "--once"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while jira.issues().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "Jira never got both creates"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Jira acted; certsentinel is killed before it hears the answer.
    child.kill().unwrap();
    child.wait().unwrap();

    // Restarted while search still lags: nothing is created again, and once search finds
    // the issue, the episode goes on with it.
    settles_on_one_issue_per_episode(&config, &jira);
}

#[test]
fn the_whole_story_from_the_window_to_the_old_certificate_deleted() {
    use mail_parser::MessageParser;

    let fake = FakeControlPlane::start();
    // Ten days left: the window is entered at the 14-day step (a page, high priority).
    fake.seed(json!({
        "certificates": [{"id": "oldcert001", "not_after": days_from_now(10)}],
        "rest_apis": [{"id": "orders0001", "name": "orders-api", "stages": [
            {"name": "prod", "client_certificate_id": "oldcert001", "tags": {"owner": "payments", "partner": "acme"}}]}]
    }));
    let jira = JiraFake::start("cloud", 0.0);
    let pd = PagerDutyFake::start();
    let smtp = SmtpSink::start(&[]);
    // No stabilisation wait, so the whole story fits in one test.
    let config = config_file(&format!(
        "{FAST}\n[policy]\ncleanup_after_days = 0\n\
         [notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\
         [notify.jira]\nflavour = \"cloud\"\nbase_url = \"{}\"\nuser = \"{JIRA_USER}\"\ntoken = \"${{JIRA_TOKEN}}\"\n\
         [notify.pagerduty]\nurl = \"{}/v2/enqueue\"\n\
         [notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"certsentinel@example.com\"\n\
         [[notify.routes]]\nowners = [\"payments\"]\njira_project = \"PROJ\"\npagerduty_routing_key = \"${{PD_KEY}}\"\n\
         [partners.acme]\ncontacts = [\"pki@acme.example\"]\n",
        jira.url, pd.url, smtp.port
    ));
    let scan = || {
        let out = certsentinel(Some(&fake), None)
            .env("JIRA_TOKEN", JIRA_TOKEN)
            .env("PD_KEY", "R0UT1NGKEY0000000000000000000000")
            .arg("--config")
            .arg(&config.path)
            .args(["scan", "--once"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subjects = || -> Vec<String> {
        smtp.messages()
            .iter()
            .map(|m| {
                MessageParser::default()
                    .parse(m)
                    .unwrap()
                    .subject()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };

    // 1. Window entered at the 14-day step: a Jira issue (High), a page, the timeline.
    scan();
    let issue = &jira.issues()[0];
    assert_eq!(issue["fields"]["priority"]["name"], "High");
    assert_eq!(pd.alerts().len(), 1);
    assert_eq!(pd.alerts()[0]["severity"], "warning");
    assert!(
        subjects()
            .iter()
            .any(|s| s.starts_with("Client certificate rotation")),
        "{:?}",
        subjects()
    );

    // 2. The successor is tagged: its PEM to the partner and on the ticket.
    let successor = aws(
        &fake.url,
        &[
            "apigateway",
            "generate-client-certificate",
            "--tags",
            r#"{"certsentinel:successor-of": "oldcert001"}"#,
        ],
    );
    let successor_id = successor["clientCertificateId"]
        .as_str()
        .unwrap()
        .to_string();
    scan();
    assert!(
        subjects()
            .iter()
            .any(|s| s.starts_with("The successor of oldcert001")),
        "{:?}",
        subjects()
    );
    assert!(
        jira.issues()[0]["fields"]["comment"]
            .to_string()
            .contains("BEGIN CERTIFICATE")
    );

    // 3. The stage switches: the page resolves, the ticket is commented and done, the partner
    //    told; with no stabilisation wait, the clean-up reminder and the release follow.
    switch_stage(&fake, "orders0001", "prod", &successor_id);
    scan();
    assert_eq!(pd.alerts()[0]["status"], "resolved", "{:?}", pd.alerts());
    assert_eq!(
        jira.issues()[0]["fields"]["status"]["statusCategory"]["key"],
        "done"
    );
    let sent = subjects();
    assert!(
        sent.iter().any(|s| s.starts_with("Cut-over done")),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|s| s.contains("may leave your trust store")),
        "{sent:?}"
    );
    let comments = jira.issues()[0]["fields"]["comment"].to_string();
    assert!(comments.contains("remind to delete it"), "{comments}");

    // 4. The old certificate is deleted: the story ends; nothing more is sent.
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-client-certificate",
            "--client-certificate-id",
            "oldcert001",
        ],
    );
    let before = (
        jira.requests().len(),
        pd.events().len(),
        smtp.messages().len(),
    );
    scan();
    assert_eq!(jira.issues().len(), 1, "one issue for the whole story");
    assert_eq!(pd.alerts().len(), 1, "one alert for the whole story");
    assert!(jira.requests().iter().all(|r| r["valid"] == true));
    assert!(pd.events().iter().all(|e| e["valid"] == true));
    assert_eq!(
        smtp.messages().len(),
        before.2,
        "the partner heard everything once"
    );
    let _ = before;
}

#[test]
fn a_dry_run_sends_nothing_and_the_documented_configuration_is_accepted() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let hooks = WebhookReceiver::start(CANARY);
    let config = routed(&hooks);
    let (code, _, stderr) = run(&config, Some(&fake), &["scan", "--once", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(hooks.deliveries().is_empty(), "a dry run sends nothing");

    // The configuration the delivery issue gives, as it is written.
    let documented = config_file(&format!(
        "{FAST}\n\
[notify.jira]\nflavour = \"cloud\"\nbase_url = \"http://127.0.0.1:8089\"\nuser = \"robot@example.com\"\ntoken = \"${{JIRA_TOKEN}}\"\n\
[notify.pagerduty]\nurl = \"http://127.0.0.1:8089/v2/enqueue\"\n\
[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 2525\ntls = \"none\"\nfrom = \"certsentinel@example.com\"\n\
[[notify.routes]]\nowners = [\"team-stage-*\"]\njira_project = \"PROJ\"\npagerduty_routing_key = \"${{PD_KEY_STAGES}}\"\n\
[notify.default_route]\njira_project = \"PROJ\"\npagerduty_routing_key = \"${{PD_KEY_DEFAULT}}\"\n\
[partners.acme]\ncontacts = [\"pki@acme.example\"]\n"
    ));
    let out = certsentinel(None, None)
        .env("JIRA_TOKEN", "t0ken")
        .env("PD_KEY_STAGES", "k1")
        .env("PD_KEY_DEFAULT", "k2")
        .arg("--config")
        .arg(&documented.path)
        .arg("check-config")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("[redacted]") && !shown.contains("t0ken"),
        "{shown}"
    );
}
