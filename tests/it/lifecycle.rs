//! The lifecycle through the user's path: `certsentinel scan --once` reconciles what it finds
//! into the state database, and changes made with the AWS CLI drive the transitions.

use std::io::BufRead;
use std::process::Stdio;

use crate::helpers::*;
use serde_json::{Value, json};

/// The intents of a scan document, as (type, owner, certificate id) plus the whole intent.
fn intents(doc: &Value) -> Vec<Value> {
    doc["reconcile"]["intents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn kinds(doc: &Value) -> Vec<(String, String, String)> {
    intents(doc)
        .iter()
        .map(|i| {
            (
                i["kind"]["type"].as_str().unwrap().to_string(),
                i["owner"].as_str().unwrap_or("-").to_string(),
                i["certificate"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(doc: &Value, kind: &str, owner: &str, cert: &str) -> bool {
    kinds(doc)
        .iter()
        .any(|(k, o, c)| k == kind && o == owner && c == cert)
}

fn state_cmd(config: &ConfigFile, args: &[&str]) -> String {
    certsentinel_ok(config, None, &[&["state"], args].concat())
}

/// `state show` of a certificate, parsed.
fn show(config: &ConfigFile, certificate: &str) -> Value {
    serde_json::from_str(&state_cmd(config, &["show", certificate])).unwrap()
}

fn estate(fake: &FakeControlPlane) {
    fake.seed(json!({
        "certificates": [{"id": "oldcert001", "not_after": days_from_now(20), "created_date": days_from_now(-345)}],
        "rest_apis": [{"id": "orders0001", "name": "orders-api", "stages": [
            {"name": "prod", "client_certificate_id": "oldcert001", "tags": {"owner": "payments", "partner": "acme"}},
            {"name": "search", "client_certificate_id": "oldcert001", "tags": {"owner": "search"}}]}]
    }));
}

#[test]
fn a_scan_commits_its_intents_once_and_the_state_commands_read_them() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);

    let (code, first, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["reconcile"]["committed"], true);
    for owner in ["payments", "search"] {
        assert!(
            has(&first, "open_ticket", owner, "oldcert001"),
            "{:?}",
            kinds(&first)
        );
        assert!(
            has(&first, "escalate", owner, "oldcert001"),
            "{:?}",
            kinds(&first)
        );
    }
    assert!(has(&first, "partner_email", "payments", "oldcert001"));
    let open = intents(&first)
        .into_iter()
        .find(|i| i["kind"]["type"] == "open_ticket" && i["owner"] == "payments")
        .unwrap();
    let stage = &open["kind"]["stages"][0];
    assert_eq!(
        stage["api_name"], "orders-api",
        "a ticket names the API: {open}"
    );
    assert_eq!(stage["stage"]["kind"], "rest");
    assert_eq!(stage["stage"]["api_id"], "orders0001");
    assert_eq!(stage["stage"]["stage_name"], "prod");

    let (code, second, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        intents(&second),
        Vec::<Value>::new(),
        "nothing is decided twice"
    );

    let listed = state_cmd(&config, &["list", "--format", "json"]);
    let rows: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(rows[0]["id"], "oldcert001");
    assert_eq!(rows[0]["band"], "expiring");
    assert_eq!(rows[0]["open_episodes"], 2);
    assert_eq!(rows[0]["owners"], json!(["payments", "search"]));
    let filtered = state_cmd(&config, &["list", "--band", "healthy", "--format", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&filtered).unwrap(), json!([]));
    let by_owner = state_cmd(&config, &["list", "--owner", "search"]);
    assert!(by_owner.contains("oldcert001"), "{by_owner}");

    let shown = show(&config, "oldcert001");
    let episodes = shown["record"]["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 2);
    assert!(!shown["record"]["history"].as_array().unwrap().is_empty());
    assert_eq!(
        shown["pending_intents"].as_array().unwrap().len()
            + shown["delivered_intents"].as_array().unwrap().len(),
        intents(&first).len(),
        "every committed intent is in the outbox, waiting or delivered"
    );

    let export = state_cmd(&config, &["export"]);
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["key"]["id"], "oldcert001");
}

#[test]
fn a_dry_run_decides_the_same_and_commits_nothing() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    let mut cmd = certsentinel(Some(&fake), None);
    cmd.arg("--config")
        .arg(&config.path)
        .args(["scan", "--once", "--format", "json", "--dry-run"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["reconcile"]["committed"], false);
    assert!(!intents(&dry).is_empty());
    let (_, real, _) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(kinds(&dry), kinds(&real), "a dry run left nothing behind");
}

#[test]
fn a_rotation_done_with_the_aws_cli_resolves_one_owners_ticket_and_flags_the_big_bang() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    let (code, _, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");

    // The payments team generates a successor and switches its stage at once.
    let new = aws(
        &fake.url,
        &[
            "apigateway",
            "generate-client-certificate",
            "--description",
            "successor",
        ],
    );
    let new_id = new["clientCertificateId"].as_str().unwrap();
    aws(
        &fake.url,
        &[
            "apigateway",
            "update-stage",
            "--rest-api-id",
            "orders0001",
            "--stage-name",
            "prod",
            "--patch-operations",
            &format!("op=replace,path=/clientCertificateId,value={new_id}"),
        ],
    );
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    let resolve = intents(&doc)
        .into_iter()
        .find(|i| i["kind"]["type"] == "resolve_ticket")
        .expect("a resolve intent");
    assert_eq!(resolve["owner"], "payments");
    assert_eq!(resolve["certificate"]["id"], "oldcert001");
    assert_eq!(resolve["kind"]["how"]["how"], "switched_to", "{resolve}");
    assert_eq!(
        resolve["kind"]["how"]["certificate"]["id"], new_id,
        "{resolve}"
    );
    assert!(
        has(&doc, "comment_big_bang", "payments", "oldcert001"),
        "{:?}",
        kinds(&doc)
    );
    assert!(
        !has(&doc, "resolve_ticket", "search", "oldcert001"),
        "search still depends on it"
    );
    assert!(
        has(&doc, "partner_email", "payments", "oldcert001"),
        "cut-over email to the partner"
    );

    // Then search's stage is deleted: its ticket closes, and the old certificate waits for clean-up.
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-stage",
            "--rest-api-id",
            "orders0001",
            "--stage-name",
            "search",
        ],
    );
    let (_, doc, _) = scan_json(certsentinel(Some(&fake), None), &config);
    let resolve = intents(&doc)
        .into_iter()
        .find(|i| i["kind"]["type"] == "resolve_ticket")
        .expect("search's ticket resolves");
    assert_eq!(resolve["owner"], "search");
    assert_eq!(resolve["kind"]["how"]["how"], "stage_deleted", "{resolve}");
    let shown = show(&config, "oldcert001");
    assert_eq!(shown["record"]["state"]["state"], "rotated_away");
}

#[test]
fn a_tag_change_moves_the_ticket_to_the_new_owner() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    scan_json(certsentinel(Some(&fake), None), &config);
    let arn = "arn:aws:apigateway:us-east-1::/restapis/orders0001/stages/search";
    aws(
        &fake.url,
        &[
            "apigateway",
            "tag-resource",
            "--resource-arn",
            arn,
            "--tags",
            "owner=discovery",
        ],
    );
    let (_, doc, _) = scan_json(certsentinel(Some(&fake), None), &config);
    assert!(
        has(&doc, "resolve_ticket", "search", "oldcert001"),
        "{:?}",
        kinds(&doc)
    );
    assert!(
        has(&doc, "open_ticket", "discovery", "oldcert001"),
        "{:?}",
        kinds(&doc)
    );
    assert!(!has(&doc, "resolve_ticket", "payments", "oldcert001"));
}

#[test]
fn what_a_failed_scan_could_not_read_is_never_resolved_or_deleted() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    scan_json(certsentinel(Some(&fake), None), &config);

    // The certificate and its stages really are gone, but the region cannot be read in full.
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-rest-api",
            "--rest-api-id",
            "orders0001",
        ],
    );
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-client-certificate",
            "--client-certificate-id",
            "oldcert001",
        ],
    );
    fake.fault("GetRestApis", "error", 1000, 0);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(intents(&doc), Vec::<Value>::new());
    let shown = show(&config, "oldcert001");
    assert_eq!(shown["record"]["state"]["state"], "expiring");

    // Once the region reads again, the deletion is observed and both tickets resolve.
    ureq::delete(&format!("{}/_fake/faults", fake.url))
        .call()
        .unwrap();
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        has(&doc, "resolve_ticket", "payments", "oldcert001"),
        "{:?}",
        kinds(&doc)
    );
    assert!(has(&doc, "resolve_ticket", "search", "oldcert001"));
    let shown = show(&config, "oldcert001");
    assert_eq!(shown["record"]["state"]["state"], "deleted");
}

#[test]
fn a_certificate_deleted_while_a_stage_still_presents_it_keeps_its_tickets_open() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    scan_json(certsentinel(Some(&fake), None), &config);
    // API Gateway lets it be deleted; both stages still name it.
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-client-certificate",
            "--client-certificate-id",
            "oldcert001",
        ],
    );
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["dangling"].as_array().unwrap().len(), 2);
    assert!(
        !kinds(&doc).iter().any(|(k, _, _)| k == "resolve_ticket"),
        "nothing is resolved while stages still depend on it: {:?}",
        kinds(&doc)
    );
    let shown = show(&config, "oldcert001");
    assert_eq!(shown["record"]["state"]["state"], "expiring");
    assert_eq!(shown["record"]["users"].as_array().unwrap().len(), 2);
}

#[test]
fn sigkill_in_the_middle_of_a_large_reconcile_leaves_every_certificate_whole() {
    use certsentinel::store::{SledStore, Store};

    let fake = FakeControlPlane::start();
    const N: usize = 6_000;
    let certificates: Vec<Value> = (0..N)
        .map(|i| json!({"id": format!("k{i:09}"), "not_after": days_from_now(20)}))
        .collect();
    let apis: Vec<Value> = (0..N / 100)
        .map(|j| {
            let stages: Vec<Value> = (0..100)
                .map(|k| json!({"name": format!("s{k}"), "client_certificate_id": format!("k{:09}", j * 100 + k),
                                "tags": {"owner": format!("team{}", k % 7)}}))
                .collect();
            json!({"id": format!("a{j:09}"), "name": format!("api-{j}"), "stages": stages})
        })
        .collect();
    fake.seed(json!({"certificates": certificates, "rest_apis": apis}));

    let mut landed_mid_commit = false;
    for attempt in 0..4u64 {
        let config = config_file(FAST);
        let mut child = certsentinel(Some(&fake), None)
            .arg("--config")
            .arg(&config.path)
            .args(["--log-format", "json", "scan", "--once", "--format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        for line in stderr.lines() {
            if line.unwrap().contains("reconciling the scan") {
                break;
            }
        }
        // Somewhere inside the commit phase, which lasts seconds at this size.
        std::thread::sleep(std::time::Duration::from_millis(300 + 400 * attempt));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store_path = config.store_path();
        let store = SledStore::open(&store_path, 8 << 20).expect("the store reopens after SIGKILL");
        let records: Vec<_> = store.records().collect::<Result<_, _>>().unwrap();
        let pending = store.outbox_pending().unwrap();
        for record in &records {
            let queued = pending
                .iter()
                .filter(|e| e.intent.certificate == record.key)
                .count() as u64;
            assert_eq!(
                queued, record.intents_emitted,
                "{}: its record and its intents are committed together or not at all",
                record.key
            );
            assert!(record.intents_emitted > 0);
        }
        assert!(
            pending
                .iter()
                .all(|e| records.iter().any(|r| r.key == e.intent.certificate)),
            "no intent without its record"
        );
        if !records.is_empty() && records.len() < N {
            landed_mid_commit = true;
            break;
        }
    }
    assert!(landed_mid_commit, "no kill landed inside the commit phase");
}

#[test]
fn a_host_clock_far_from_aws_decides_nothing_and_says_why() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    // AWS's clock an hour behind this host's: this host is an hour ahead.
    fake.clock_offset(-3600);
    let (code, stdout, stderr) = {
        let out = certsentinel(Some(&fake), None)
            .arg("--config")
            .arg(&config.path)
            .args(["scan", "--once"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("s ahead of AWS's"), "{stderr}");
    assert!(stderr.contains("aws.max_clock_skew_secs"), "{stderr}");
    assert!(
        stdout.is_empty(),
        "nothing decided, nothing printed: {stdout}"
    );
    assert_eq!(state_cmd(&config, &["list", "--format", "json"]), "[]\n");

    // Within the limit, the same scan decides.
    fake.clock_offset(-60);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(!intents(&doc).is_empty());
    let skew = doc["targets"][0]["clock_skew_seconds"].as_i64().unwrap();
    assert!((55..=65).contains(&skew), "{skew}");
}

#[test]
fn a_region_no_longer_scanned_is_reported_until_it_is_forgotten_on_purpose() {
    let fake = FakeControlPlane::start();
    for region in ["us-east-1", "eu-west-1"] {
        fake.seed(json!({"region": region,
            "certificates": [{"id": format!("c{}", &region[..2]), "not_after": days_from_now(20)}],
            "rest_apis": [{"id": "orders0001", "name": "orders", "stages": [
                {"name": "prod", "client_certificate_id": format!("c{}", &region[..2]),
                 "tags": {"owner": "payments"}}]}]}));
    }
    let both = config_file(&FAST.replace(
        "regions = [\"us-east-1\"]",
        "regions = [\"us-east-1\", \"eu-west-1\"]",
    ));
    let (code, _, stderr) = scan_json(certsentinel(Some(&fake), None), &both);
    assert_eq!(code, 0, "{stderr}");

    // eu-west-1 leaves the configuration: the same database, one region scanned.
    let text = std::fs::read_to_string(&both.path).unwrap();
    std::fs::write(&both.path, text.replace(", \"eu-west-1\"", "")).unwrap();
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &both);
    assert_eq!(code, 0, "{stderr}");
    let not_scanned = doc["not_scanned"].as_array().unwrap();
    assert_eq!(not_scanned.len(), 1, "{doc}");
    assert_eq!(not_scanned[0]["region"], "eu-west-1");
    assert_eq!(not_scanned[0]["certificates"], 1);
    assert!(
        intents(&doc).is_empty(),
        "nothing there is resolved or closed"
    );
    assert!(stderr.contains("not scanned any more"), "{stderr}");
    let table = state_cmd(&both, &["list"]);
    assert!(
        table.contains("123456789012/eu-west-1: NOT SCANNED since"),
        "{table}"
    );
    let rows: Value =
        serde_json::from_str(&state_cmd(&both, &["list", "--format", "json"])).unwrap();
    let eu = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "eu-west-1")
        .unwrap();
    assert!(eu["not_scanned_since"].is_string(), "{eu}");
    assert_eq!(
        eu["open_episodes"], 1,
        "its episode is kept open, not resolved"
    );

    // Forgotten on purpose: gone from the state, and a later scan of it starts anew.
    let said = state_cmd(&both, &["forget", "123456789012/eu-west-1"]);
    assert!(
        said.contains("forgot 1 certificate of 123456789012/eu-west-1"),
        "{said}"
    );
    let rows: Value =
        serde_json::from_str(&state_cmd(&both, &["list", "--format", "json"])).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["region"] == "us-east-1"),
        "{rows}"
    );
    let out = certsentinel(None, None)
        .arg("--config")
        .arg(&both.path)
        .args(["state", "forget", "123456789012/eu-west-1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "forgetting twice says there is nothing"
    );
    std::fs::write(&both.path, text).unwrap();
    let (code, doc, _) = scan_json(certsentinel(Some(&fake), None), &both);
    assert_eq!(code, 0);
    assert!(
        intents(&doc).iter().any(
            |i| i["kind"]["type"] == "open_ticket" && i["certificate"]["region"] == "eu-west-1"
        ),
        "{}",
        doc["reconcile"]
    );
    // ...and its intents are queued again: forgetting dropped their idempotency keys too.
    let record = show(&both, "123456789012/eu-west-1/ceu");
    assert!(
        !record["pending_intents"].as_array().unwrap().is_empty()
            || !record["delivered_intents"].as_array().unwrap().is_empty(),
        "{record}"
    );
}

/// The intents of a scan document of one kind.
fn of_kind<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    doc["reconcile"]["intents"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["kind"]["type"] == kind).collect())
        .unwrap_or_default()
}

#[test]
fn stages_a_scan_could_not_find_are_confirmed_gone_before_anything_is_resolved() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(of_kind(&doc, "open_ticket").len(), 2, "payments and search");

    // The API was listed, but its stages answer NotFound: one read of the API says it is
    // still there, so the region is in doubt and nothing is resolved.
    fake.fault_spec(json!({"operation": "GetStages", "kind": "error", "status": 404,
                           "error_type": "NotFoundException", "message": "Invalid API identifier specified"}));
    let (code, doc, _) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 3, "{}", doc["targets"]);
    assert_eq!(doc["targets"][0]["reason_kind"], "inconsistent");
    assert!(intents(&doc).is_empty(), "{}", doc["reconcile"]);

    // A page of the API listing lost the API: its stages are missing; a read of the API
    // finds it, so the region is in doubt and nothing is resolved, no partner told.
    fake.fault_spec(json!({"operation": "GetRestApis", "kind": "omit_item", "id": "orders0001"}));
    fake.reset_calls();
    let (code, doc, _) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 3, "{}", doc["targets"]);
    assert_eq!(doc["targets"][0]["reason_kind"], "inconsistent");
    assert!(
        doc["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("still exists"),
        "{}",
        doc["targets"][0]
    );
    assert!(intents(&doc).is_empty(), "{}", doc["reconcile"]);
    assert_eq!(
        fake.calls_of("GetRestApi"),
        1,
        "one read of the API settles it"
    );
    let record = show(&config, "oldcert001");
    assert_eq!(
        record["record"]["episodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resolved_at"].is_null())
            .count(),
        2,
        "both episodes stay open: {record}"
    );

    // A scan that reads everything again decides nothing: nothing was lost on the way.
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(intents(&doc).is_empty(), "{}", doc["reconcile"]);

    // Really deleted: the read confirms it, and the episodes close as stage_deleted.
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-rest-api",
            "--rest-api-id",
            "orders0001",
        ],
    );
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    let resolved = of_kind(&doc, "resolve_ticket");
    assert_eq!(resolved.len(), 2, "{}", doc["reconcile"]);
    assert!(
        resolved
            .iter()
            .all(|r| r["kind"]["how"]["how"] == "stage_deleted")
    );
}

#[test]
fn a_region_unreadable_for_long_is_said_once_and_its_certificates_keep_escalating_unconfirmed() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let steps = |middle: u32| {
        format!(
            "{FAST}\n[policy]\nunreadable_alert_after_hours = 0\n\
             [[policy.escalation]]\ndays_left = 30\npriority = \"medium\"\npartner_email = true\n\
             [[policy.escalation]]\ndays_left = {middle}\npriority = \"high\"\npartner_email = true\n\
             [[policy.escalation]]\ndays_left = 7\npriority = \"highest\"\npage = \"critical\"\n"
        )
    };
    let config = config_file(&steps(14));
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        of_kind(&doc, "escalate").len(),
        2,
        "the 30-day step, for each owner"
    );

    // The role loses its permissions: nothing there can be read any more.
    fake.fault_spec(json!({"operation": "*", "kind": "access_denied", "count": 1_000_000}));
    // Time passes into the next step; a policy edit stands in for it (20 days are left).
    let text = std::fs::read_to_string(&config.path).unwrap();
    std::fs::write(
        &config.path,
        text.replace("days_left = 14", "days_left = 21"),
    )
    .unwrap();
    let (code, doc, _) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 3);
    let blind = of_kind(&doc, "target_unreadable");
    assert_eq!(blind.len(), 1, "{}", doc["reconcile"]);
    assert!(
        blind[0]["owner"].is_null(),
        "the default route: {}",
        blind[0]
    );
    assert_eq!(blind[0]["certificate"]["id"], "*");
    assert!(
        blind[0]["kind"]["error"]
            .as_str()
            .unwrap()
            .contains("AccessDenied")
    );
    let escalations = of_kind(&doc, "escalate");
    assert_eq!(escalations.len(), 2, "{}", doc["reconcile"]);
    assert!(
        escalations
            .iter()
            .all(|e| e["unconfirmed"] == true && e["kind"]["step_days"] == 21)
    );
    assert!(
        of_kind(&doc, "partner_email").is_empty(),
        "no partner hears a doubt"
    );
    assert!(of_kind(&doc, "resolve_ticket").is_empty());

    // Still unreadable: said once, and the step already fired.
    let (code, doc, _) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 3);
    assert!(intents(&doc).is_empty(), "{}", doc["reconcile"]);
    let table = state_cmd(&config, &["list"]);
    assert!(
        table.contains("123456789012/us-east-1: UNREADABLE since"),
        "{table}"
    );

    // Readable again: said, and the partner gets the step it missed.
    fake.admin_delete("faults");
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        of_kind(&doc, "target_readable").len(),
        1,
        "{}",
        doc["reconcile"]
    );
    let emails = of_kind(&doc, "partner_email");
    assert_eq!(emails.len(), 1, "{}", doc["reconcile"]);
    assert_eq!(emails[0]["kind"]["email"]["days_left"], 21);
}
