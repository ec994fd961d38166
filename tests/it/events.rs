//! Change events end to end: a change made through the AWS CLI against the fake control plane
//! is published (as CloudTrail and EventBridge would) to an SQS queue on moto_server; the
//! daemon receives it, reads again just what it names, decides, commits, and tells Jira.

use std::process::Stdio;
use std::time::Duration;

use certsentinel::ids::CertificateKey;
use certsentinel::lifecycle::CertificateRecord;
use certsentinel::store::Store;
use serde_json::{Value, json};

use crate::helpers::*;

/// Certificate oldcert001, 20 days left, presented by orders0001/prod (payments, partner acme)
/// and orders0001/search (search).
fn estate(fake: &FakeControlPlane) {
    fake.seed(json!({
        "certificates": [{"id": "oldcert001", "not_after": days_from_now(20)}],
        "rest_apis": [{"id": "orders0001", "name": "orders-api", "stages": [
            {"name": "prod", "client_certificate_id": "oldcert001", "tags": {"owner": "payments", "partner": "acme"}},
            {"name": "search", "client_certificate_id": "oldcert001", "tags": {"owner": "search"}}]}]
    }));
}

/// Events only (no schedule; one scan at start), Jira for payments and the rest.
fn events_config(queue: &str, jira: &JiraFake) -> ConfigFile {
    config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"\"\nscan_on_start = true\nlisten = \"127.0.0.1:0\"\n\
         [events]\nqueue_url = \"{queue}\"\nwait_time_secs = 1\nvisibility_timeout_secs = 1\n\
         [events.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 100\n\
         [notify]\ninterval_secs = 1\n\
         [notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\nmax_attempts = 4\n\
         [notify.jira]\nflavour = \"cloud\"\nbase_url = \"{}\"\nuser = \"{JIRA_USER}\"\n\
         token = \"${{JIRA_TOKEN}}\"\n\
         [[notify.routes]]\nowners = [\"payments\"]\njira_project = \"PROJ\"\njira_labels = [\"team-payments\"]\n\
         [notify.default_route]\njira_project = \"PROJ\"\n",
        jira.url
    ))
}

const ENV: &[(&str, &str)] = &[("JIRA_TOKEN", JIRA_TOKEN)];

/// moto with the queue `events` (its dead-letter queue `events-dlq` after `dlq_after`
/// receives, if any), and the fake control plane seeded with [`estate`].
fn moto_and_estate(dlq_after: Option<u32>) -> (Moto, String, FakeControlPlane) {
    let moto = Moto::start();
    let queue = moto.queue("events", 1, dlq_after.map(|n| ("events-dlq", n)));
    let fake = FakeControlPlane::start();
    estate(&fake);
    (moto, queue, fake)
}

/// Jira and the daemon on `queue` (`events_config`), reading `fake`, once the first scan has
/// opened `issues` Jira issues.
fn start_daemon(fake: &FakeControlPlane, queue: &str, issues: usize) -> (JiraFake, RunningDaemon) {
    let jira = JiraFake::start("cloud", 0.0);
    let daemon = RunningDaemon::start(&events_config(queue, &jira), ENV, fake);
    eventually(30, "the first scan's issues", || {
        jira.issues().len() == issues
    });
    (jira, daemon)
}

fn key(id: &str) -> CertificateKey {
    CertificateKey {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        id: id.into(),
    }
}

fn record(daemon: &RunningDaemon, id: &str) -> CertificateRecord {
    daemon.store.load(&key(id)).unwrap().expect("a record")
}

/// Whether payments' issue (its route labels it `team-payments`) is done.
fn payments_done(jira: &JiraFake) -> bool {
    done_issues(jira).iter().any(|i| {
        i["fields"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "team-payments")
    })
}

fn done_issues(jira: &JiraFake) -> Vec<Value> {
    jira.issues()
        .into_iter()
        .filter(|i| i["fields"]["status"]["statusCategory"]["key"] == "done")
        .collect()
}

/// The owners of the open episodes, sorted (no owner first).
fn open_owners(r: &CertificateRecord) -> Vec<Option<String>> {
    let mut owners: Vec<Option<String>> = r.open_episodes().map(|e| e.owner.clone()).collect();
    owners.sort();
    owners
}

/// Waits until the daemon has handled everything in the queue.
fn drained(moto: &Moto, queue: &str) {
    eventually(20, "the queue drained", || {
        moto.queue_depth(queue) == (0, 0)
    });
}

#[test]
fn a_stage_switched_through_the_aws_cli_closes_its_owners_issue_and_replays_change_nothing() {
    let (moto, queue, fake) = moto_and_estate(Some(3));
    // At-least-once from the start: every event arrives twice.
    fake.publish_events(&queue, true);
    let (jira, daemon) = start_daemon(&fake, &queue, 2);
    eventually(10, "ready: the queue answered", || {
        daemon.get("/readyz").0 == 200
    });
    assert_eq!(
        open_owners(&record(&daemon, "oldcert001")),
        vec![Some("payments".into()), Some("search".into())]
    );
    let calls_before = fake.control_plane_calls();

    // Payments rotates through the AWS CLI: a new certificate, the stage switched to it.
    let new = aws(&fake.url, &["apigateway", "generate-client-certificate"]);
    let new_id = new["clientCertificateId"].as_str().unwrap().to_string();
    switch_stage(&fake, "orders0001", "prod", &new_id);
    let took = eventually(10, "payments' issue done", || payments_done(&jira));
    eprintln!(
        "stage switch event to Jira issue done: {} ms",
        took.as_millis()
    );
    let old = record(&daemon, "oldcert001");
    assert_eq!(open_owners(&old), vec![Some("search".into())], "{old:?}");
    assert!(record(&daemon, &new_id).in_use());
    assert_eq!(done_issues(&jira).len(), 1, "search's issue stays open");
    assert_eq!(jira.issues().len(), 2, "no new issue");
    // The KPI gauges follow the event, with no scheduled scan: payments' rotation is the one
    // rotation the MTTR rests on.
    eventually(10, "the KPIs computed after the event", || {
        daemon.metric("certsentinel_kpi_mttr_episodes", &[]) == 1.0
    });
    drained(&moto, &queue);
    // A targeted re-read, not a scan: no listing was called.
    let listings = ["GetClientCertificates", "GetRestApis", "v2:GetApis"];
    assert!(
        listings
            .iter()
            .all(|op| fake.calls()["by_operation"][op].as_u64() == Some(1)),
        "only the start-up scan listed: {}",
        fake.calls()
    );
    assert!(fake.control_plane_calls() - calls_before < 30);

    // Every event again, oldest first and then out of order: nothing is decided twice.
    let outbox = |d: &RunningDaemon| {
        d.store.outbox_pending().unwrap().len() + d.store.delivered(1000).unwrap().len()
    };
    let intents = outbox(&daemon);
    let jira_requests = jira.requests().len();
    let revision = record(&daemon, &new_id).revision;
    let handled = daemon.metric("certsentinel_events_total", &[("outcome", "reread")]);
    let published = fake.published();
    assert!(published.len() >= 2, "{published:?}");
    for event in published.iter().chain(published.iter().rev()) {
        moto.send(&queue, event["body"].as_str().unwrap());
    }
    eventually(20, "the replays handled", || {
        daemon.metric("certsentinel_events_total", &[("outcome", "reread")])
            >= handled + 2.0 * published.len() as f64
    });
    drained(&moto, &queue);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(outbox(&daemon), intents, "no intent decided twice");
    assert_eq!(
        jira.requests().len(),
        jira_requests,
        "Jira heard nothing more"
    );
    assert!(
        record(&daemon, &new_id).revision > revision,
        "the certificate prod presents is decided again from each replay"
    );
    assert_eq!(
        open_owners(&record(&daemon, "oldcert001")),
        vec![Some("search".into())]
    );
    assert!(
        jira.requests().iter().all(|r| r["valid"] == true),
        "every request valid against the definition"
    );
    daemon.stop().expect("stops cleanly");
}

#[test]
fn a_deleted_stage_and_an_untagged_owner_are_decided_from_their_events() {
    let (moto, queue, fake) = moto_and_estate(None);
    fake.publish_events(&queue, false);
    let (jira, daemon) = start_daemon(&fake, &queue, 2);

    // Search's stage loses its owner tag: search's episode ends, nobody's opens.
    aws(
        &fake.url,
        &[
            "apigateway",
            "untag-resource",
            "--resource-arn",
            "arn:aws:apigateway:us-east-1::/restapis/orders0001/stages/search",
            "--tag-keys",
            "owner",
        ],
    );
    eventually(10, "search's episode handed over", || {
        open_owners(&record(&daemon, "oldcert001")) == vec![None, Some("payments".into())]
    });

    // Payments deletes its stage: its episode ends and its issue is done.
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-stage",
            "--rest-api-id",
            "orders0001",
            "--stage-name",
            "prod",
        ],
    );
    eventually(10, "payments' issue done", || payments_done(&jira));
    let old = record(&daemon, "oldcert001");
    assert_eq!(open_owners(&old), vec![None], "{old:?}");
    assert_eq!(old.users.len(), 1, "only search's stage presents it");
    drained(&moto, &queue);
    assert_eq!(
        daemon.metric("certsentinel_events_total", &[("outcome", "reread")]),
        2.0
    );
    daemon.stop().expect("stops cleanly");
}

#[test]
fn a_poison_message_reaches_the_dead_letter_queue_while_good_ones_keep_flowing() {
    let (moto, queue, fake) = moto_and_estate(Some(2));
    let dlq = queue.replace("/events", "/events-dlq");
    fake.publish_events(&queue, false);
    let (jira, daemon) = start_daemon(&fake, &queue, 2);

    moto.send(&queue, "{\"detail-type\": \"AWS API Call via Cloud");
    moto.send(&queue, "[1, 2, 3]");
    let new = aws(&fake.url, &["apigateway", "generate-client-certificate"]);
    switch_stage(
        &fake,
        "orders0001",
        "prod",
        new["clientCertificateId"].as_str().unwrap(),
    );
    eventually(10, "payments' issue done", || payments_done(&jira));
    eventually(20, "both poison messages in the dead-letter queue", || {
        moto.queue_depth(&queue) == (0, 0) && moto.queue_depth(&dlq).0 == 2
    });
    let dead = moto.peek(&dlq);
    assert!(dead.iter().any(|b| b == "[1, 2, 3]"), "{dead:?}");
    assert!(
        daemon.metric("certsentinel_events_total", &[("outcome", "rejected")]) >= 4.0,
        "each poison message rejected at each of its two receives"
    );
    assert_eq!(
        daemon.metric(
            "certsentinel_events_total",
            &[("outcome", "rejected"), ("reason", "malformed")]
        ) + daemon.metric(
            "certsentinel_events_total",
            &[("outcome", "rejected"), ("reason", "not_an_event")]
        ),
        daemon.metric("certsentinel_events_total", &[("outcome", "rejected")])
    );
    daemon.stop().expect("stops cleanly");
}

#[test]
fn the_daemon_is_unready_while_its_queue_cannot_be_reached() {
    let moto = Moto::start();
    let fake = FakeControlPlane::start();
    estate(&fake);
    let jira = JiraFake::start("cloud", 0.0);
    let missing = format!("{}/123456789012/no-such-queue", moto.url);
    let daemon = RunningDaemon::start(&events_config(&missing, &jira), ENV, &fake);
    eventually(10, "the queue's failure seen", || {
        daemon.metric("certsentinel_event_queue_up", &[]) == 0.0 && daemon.get("/readyz").0 == 503
    });
    let (_, why) = daemon.get("/readyz");
    assert!(why.contains("no-such-queue"), "{why}");
    // Scans still run: the first scan's issues are there.
    eventually(30, "the first scan's two issues", || {
        jira.issues().len() == 2
    });
    daemon.stop().expect("stops cleanly");
}

/// `certsentinel run` on events alone, as the binary, with its re-reads slowed down.
fn run_events_only(
    config_extra: &str,
    queue: &str,
    fake: &FakeControlPlane,
    moto: &Moto,
    config_dir: &ConfigFile,
) -> std::process::Child {
    let path = config_dir
        .path
        .with_file_name(format!("run-{}.toml", fastrand_suffix()));
    let base = std::fs::read_to_string(&config_dir.path).unwrap();
    std::fs::write(
        &path,
        format!(
            "{base}\n[daemon]\nschedule = \"\"\nscan_on_start = false\nlisten = \"\"\n{config_extra}\n\
             [events]\nqueue_url = \"{queue}\"\nwait_time_secs = 1\nvisibility_timeout_secs = 2\nreceivers = 1\n"
        ),
    )
    .unwrap();
    certsentinel(Some(fake), Some(moto))
        .env("AWS_ENDPOINT_URL_STS", &fake.url)
        .arg("--config")
        .arg(&path)
        .args(["--log-format", "json", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn sigterm(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut std::process::Child, secs: u64) -> (i32, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("certsentinel did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stages s0..s7 of orders0001, each presenting its own certificate old0..old7 (20 days
/// left), each owned by team-N; new0..new7 (a year left) wait to replace them.
fn eight_stages(fake: &FakeControlPlane) {
    let certificates: Vec<Value> = (0..8)
        .flat_map(|i| {
            [
                json!({"id": format!("old{i}"), "not_after": days_from_now(20)}),
                json!({"id": format!("new{i}"), "not_after": days_from_now(365)}),
            ]
        })
        .collect();
    let stages: Vec<Value> = (0..8)
        .map(|i| {
            json!({"name": format!("s{i}"), "client_certificate_id": format!("old{i}"),
                         "tags": {"owner": format!("team-{i}")}})
        })
        .collect();
    fake.seed(json!({"certificates": certificates,
                     "rest_apis": [{"id": "orders0001", "name": "orders", "stages": stages}]}));
}

/// How many of old0..old7 the store shows switched away from (their episode resolved).
fn switched_away(config: &ConfigFile) -> usize {
    let out = certsentinel_ok(config, None, &["state", "list", "--format", "json"]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    let rows = doc
        .as_array()
        .cloned()
        .unwrap_or_else(|| doc["certificates"].as_array().cloned().unwrap_or_default());
    rows.iter()
        .filter(|r| {
            r["id"].as_str().unwrap_or_default().starts_with("old") && r["open_episodes"] == 0
        })
        .count()
}

#[test]
fn sigterm_mid_batch_deletes_no_message_whose_decision_was_not_committed() {
    let moto = Moto::start();
    let queue = moto.queue("events", 2, None);
    let fake = FakeControlPlane::start();
    eight_stages(&fake);
    let config = config_file(FAST);
    // The estate as the store knows it: eight episodes open.
    let (code, _, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(switched_away(&config), 0);
    // Eight rotations, eight events waiting.
    fake.publish_events(&queue, false);
    for i in 0..8 {
        switch_stage(&fake, "orders0001", &format!("s{i}"), &format!("new{i}"));
    }
    assert_eq!(moto.queue_depth(&queue).0, 8);

    // 1. Stopped with a bound shorter than the batch's reads: the batch is dropped mid-read.
    fake.fault_spec(
        json!({"operation": "GetStage", "kind": "slow", "seconds": 0.5, "count": 1000}),
    );
    let mut child = run_events_only("stop_timeout_secs = 1", &queue, &fake, &moto, &config);
    eventually(20, "the batch being read", || {
        fake.calls_of("GetStage") >= 1
    });
    sigterm(&child);
    let (code, stderr) = wait_exit(&mut child, 15);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("did not finish within daemon.stop_timeout_secs"),
        "{stderr}"
    );
    let (visible, in_flight) = moto.queue_depth(&queue);
    let deleted = 8 - (visible + in_flight) as usize;
    let committed = switched_away(&config);
    assert!(
        deleted <= committed,
        "deleted {deleted} messages, committed {committed} decisions"
    );
    assert_eq!(deleted, 0, "nothing committed, nothing deleted");

    // 2. Stopped with room to finish: the batch in flight is read, committed, then deleted.
    fake.admin_delete("faults");
    fake.fault_spec(
        json!({"operation": "GetStage", "kind": "slow", "seconds": 0.2, "count": 1000}),
    );
    let before = fake.calls_of("GetStage");
    let mut child = run_events_only("stop_timeout_secs = 60", &queue, &fake, &moto, &config);
    eventually(20, "the batch being read", || {
        fake.calls_of("GetStage") > before
    });
    sigterm(&child);
    let (code, stderr) = wait_exit(&mut child, 60);
    assert_eq!(code, 0, "{stderr}");
    let (visible, in_flight) = moto.queue_depth(&queue);
    let deleted = 8 - (visible + in_flight) as usize;
    let committed = switched_away(&config);
    assert!(
        deleted <= committed,
        "deleted {deleted} messages, committed {committed} decisions"
    );
    assert!(deleted > 0, "the batch in flight was finished: {stderr}");

    // 3. A second signal exits at once. A new rotation makes sure there is a batch to read,
    // whatever the runs above left in the queue.
    fake.admin_delete("faults");
    switch_stage(&fake, "orders0001", "s0", "old0");
    fake.fault_spec(json!({"operation": "GetStage", "kind": "slow", "seconds": 5, "count": 1000}));
    let before = fake.calls_of("GetStage");
    let mut child = run_events_only("stop_timeout_secs = 60", &queue, &fake, &moto, &config);
    eventually(20, "the batch being read", || {
        fake.calls_of("GetStage") > before
    });
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&child);
    let (code, stderr) = wait_exit(&mut child, 3);
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("second stop signal"), "{stderr}");
}

#[test]
fn a_websocket_stage_switched_and_an_api_tag_changed_are_read_again_from_their_events() {
    let moto = Moto::start();
    let queue = moto.queue("events", 1, None);
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "wscert0001", "not_after": days_from_now(20)},
                         {"id": "wscert0002", "not_after": days_from_now(300)}],
        "v2_apis": [{"id": "chat000001", "name": "chat-ws", "protocol_type": "WEBSOCKET",
                     "tags": {"owner": "messaging"},
                     "stages": [{"name": "prod", "client_certificate_id": "wscert0001",
                                 "tags": {"owner": "payments"}},
                                {"name": "dev", "client_certificate_id": "wscert0001"}]}]
    }));
    fake.publish_events(&queue, false);
    let (jira, daemon) = start_daemon(&fake, &queue, 2);
    assert_eq!(
        open_owners(&record(&daemon, "wscert0001")),
        vec![Some("messaging".into()), Some("payments".into())]
    );

    // The API's owner tag changes: dev's owner (from the API) is read again.
    aws(
        &fake.url,
        &[
            "apigatewayv2",
            "tag-resource",
            "--resource-arn",
            "arn:aws:apigateway:us-east-1::/apis/chat000001",
            "--tags",
            "owner=chat-team",
        ],
    );
    eventually(10, "messaging's episode handed to chat-team", || {
        open_owners(&record(&daemon, "wscert0001"))
            == vec![Some("chat-team".into()), Some("payments".into())]
    });

    // Payments switches its WebSocket stage: its issue is done.
    aws(
        &fake.url,
        &[
            "apigatewayv2",
            "update-stage",
            "--api-id",
            "chat000001",
            "--stage-name",
            "prod",
            "--client-certificate-id",
            "wscert0002",
        ],
    );
    eventually(10, "payments' issue done", || payments_done(&jira));
    assert_eq!(
        open_owners(&record(&daemon, "wscert0001")),
        vec![Some("chat-team".into())]
    );
    assert!(record(&daemon, "wscert0002").in_use());
    drained(&moto, &queue);
    assert_eq!(
        fake.calls()["by_operation"]["v2:GetApis"].as_u64(),
        Some(1),
        "no listing after the start-up scan: {}",
        fake.calls()
    );
    daemon.stop().expect("stops cleanly");
}

#[test]
fn a_certificate_found_through_a_stage_is_decided_on_every_stage_its_record_names() {
    let moto = Moto::start();
    let queue = moto.queue("events", 1, None);
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "oldcert001", "not_after": days_from_now(20)},
                         {"id": "newcert001", "not_after": days_from_now(300)}],
        "rest_apis": [{"id": "orders0001", "name": "orders-api", "stages": [
            {"name": "prod", "client_certificate_id": "oldcert001", "tags": {"owner": "payments"}},
            {"name": "dev", "client_certificate_id": "newcert001", "tags": {"owner": "payments"}}]}]
    }));
    let (jira, daemon) = start_daemon(&fake, &queue, 1);
    // prod is switched while no event is published (one lost on the way, say) ...
    switch_stage(&fake, "orders0001", "prod", "newcert001");
    // ... and the next event names only the stage: a deployment to it.
    fake.publish_events(&queue, false);
    aws(
        &fake.url,
        &[
            "apigateway",
            "create-deployment",
            "--rest-api-id",
            "orders0001",
            "--stage-name",
            "prod",
        ],
    );
    eventually(10, "payments' issue done", || payments_done(&jira));
    let new = record(&daemon, "newcert001");
    let mut stages: Vec<&str> = new
        .users
        .iter()
        .map(|u| u.stage.stage_name.as_str())
        .collect();
    stages.sort();
    assert_eq!(
        stages,
        ["dev", "prod"],
        "decided on both its stages, dev read too"
    );
    assert!(open_owners(&record(&daemon, "oldcert001")).is_empty());
    drained(&moto, &queue);
    assert_eq!(
        daemon.metric("certsentinel_events_total", &[("outcome", "retried")]),
        0.0
    );
    daemon.stop().expect("stops cleanly");
}

#[test]
fn a_message_whose_read_is_slow_is_kept_hidden_and_handled_once() {
    // Received messages hide for one second only; the re-read will take three.
    let (moto, queue, fake) = moto_and_estate(None);
    fake.publish_events(&queue, false);
    let (_jira, daemon) = start_daemon(&fake, &queue, 2);
    fake.fault_spec(json!({"operation": "GetStage", "kind": "slow", "seconds": 3, "count": 1}));
    switch_stage(&fake, "orders0001", "prod", "oldcert001");
    eventually(20, "the event handled", || {
        daemon.metric("certsentinel_events_total", &[("outcome", "reread")]) >= 1.0
    });
    drained(&moto, &queue);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        daemon.metric("certsentinel_events_total", &[("outcome", "reread")]),
        1.0,
        "the other receiver never got it while it was being read"
    );
    daemon.stop().expect("stops cleanly");
}

#[test]
fn events_that_ask_for_nothing_are_acknowledged_and_counted_never_read() {
    let (moto, queue, fake) = moto_and_estate(None);
    let (_jira, daemon) = start_daemon(&fake, &queue, 2);
    let calls = fake.control_plane_calls();
    let fixture = |name: &str| {
        std::fs::read_to_string(repo_root().join("tests/fixtures/cloudtrail").join(name)).unwrap()
    };
    // Account 111122223333 is not one certsentinel scans here (it scans 123456789012).
    for name in [
        "UpdateStage-client-certificate.json",
        "UpdateStage-failed.json",
        "GetStages.json",
        "OtherService-s3.json",
    ] {
        moto.send(&queue, &fixture(name));
    }
    drained(&moto, &queue);
    let count = |labels: &[(&str, &str)]| daemon.metric("certsentinel_events_total", labels);
    assert_eq!(
        count(&[("outcome", "not_scanned"), ("event", "UpdateStage")]),
        1.0
    );
    assert_eq!(
        count(&[("outcome", "ignored"), ("reason", "failed_call")]),
        1.0
    );
    assert_eq!(
        count(&[("outcome", "ignored"), ("reason", "read_only")]),
        1.0
    );
    assert_eq!(
        count(&[
            ("outcome", "ignored"),
            ("reason", "other_service"),
            ("event", "other")
        ]),
        1.0,
        "another service's event names are not labels"
    );
    assert_eq!(count(&[("outcome", "reread")]), 0.0);
    assert_eq!(fake.control_plane_calls(), calls, "nothing was read");
    daemon.stop().expect("stops cleanly");
}
