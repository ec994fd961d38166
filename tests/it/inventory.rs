//! The inventory through the user's path: the `certsentinel scan --once` binary, the real AWS
//! SDK, the fake control plane (and moto's STS where accounts are assumed).

use crate::helpers::*;
use serde_json::{Value, json};

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

#[test]
fn pagination_reads_everything_with_the_floor_number_of_calls() {
    let fake = FakeControlPlane::start();
    let certificates: Vec<Value> = (0..1234)
        .map(|i| json!({"id": format!("cert{i:06}"), "not_after": days_from_now(10 + (i % 400))}))
        .collect();
    let apis: Vec<Value> = (0..700)
        .map(|i| {
            json!({"id": format!("api{i:07}"), "name": format!("api-{i}"),
                   "stages": [{"name": "prod", "client_certificate_id": format!("cert{:06}", i)}]})
        })
        .collect();
    fake.seed(json!({"certificates": certificates, "rest_apis": apis}));
    fake.reset_calls();

    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["certificates"].as_array().unwrap().len(), 1234);
    let used = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["stages"].as_array().unwrap().is_empty())
        .count();
    assert_eq!(used, 700, "every API's stage joined to its certificate");
    let last = certificate(&doc, "cert000699");
    assert_eq!(last["stages"][0]["api_id"], "api0000699");
    assert_eq!(last["stages"][0]["kind"], "rest");

    let calls = fake.calls();
    let by_op = &calls["by_operation"];
    assert_eq!(by_op["GetClientCertificates"], ceil_div(1234, 500));
    assert_eq!(by_op["GetRestApis"], ceil_div(700, 500));
    assert_eq!(by_op["GetStages"], 700);
    assert_eq!(
        by_op["v2:GetApis"], 1,
        "one v2 listing page, no WebSocket APIs"
    );
    let floor = ceil_div(1234, 500) + ceil_div(700, 500) + 700 + 1;
    assert_eq!(fake.control_plane_calls(), floor, "calls: {by_op}");
    // The scanner's own count agrees with the server's.
    let reported: u64 = doc["targets"][0]["calls"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(reported, floor);
}

#[test]
fn throttling_and_server_errors_are_retried_until_success() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(20)}],
        "rest_apis": [{"id": "api0000001", "name": "orders",
                       "stages": [{"name": "prod", "client_certificate_id": "aaaaaaaaaa"}]}]
    }));
    fake.reset_calls();
    fake.fault("GetClientCertificates", "throttle", 5, 0);
    fake.fault("GetStages", "error", 2, 0);

    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["complete"], true);
    assert_eq!(certificate(&doc, "aaaaaaaaaa")["band"], "expiring");
    assert_eq!(fake.calls_of("GetClientCertificates"), 6, "5 throttled + 1");
    assert_eq!(fake.calls_of("GetStages"), 3, "2 failed + 1");
}

#[test]
fn retry_after_is_honoured() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({"certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(90)}]}));
    fake.fault("GetClientCertificates", "throttle", 1, 2);
    let config = config_file(FAST);
    let started = std::time::Instant::now();
    let (code, _doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    // The fake asked for 2 s; back-off alone (at most 200 ms here) would be far shorter.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
}

#[test]
fn a_retry_after_no_duration_can_hold_is_no_hint_and_no_panic() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({"certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(90)}]}));
    for retry_after in ["1e20", "-5", "NaN", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        fake.fault_spec(
            json!({"operation": "GetClientCertificates", "kind": "throttle",
                               "count": 1, "retry_after_seconds": retry_after}),
        );
    }
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["complete"], true);
    assert_eq!(fake.calls_of("GetClientCertificates"), 6, "5 throttled + 1");
}

/// Runs a scan in JSON, killed if it has not ended within `secs` (a scan that pages for ever
/// must fail this test, not hang it).
fn scan_json_within(secs: u64, config: &ConfigFile, fake: &FakeControlPlane) -> (i32, Value) {
    let mut child = certsentinel(Some(fake), None)
        .arg("--config")
        .arg(&config.path)
        .args(["scan", "--once", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the scan did not end within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn a_page_token_that_never_ends_fails_the_region_instead_of_paging_for_ever() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({"certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(90)}]}));
    let config = config_file(FAST);
    for (operation, kind) in [
        ("GetClientCertificates", "repeat_token"),
        ("GetRestApis", "endless_token"),
        ("v2:GetApis", "repeat_token"),
    ] {
        fake.fault_spec(json!({"operation": operation, "kind": kind, "count": 1_000_000}));
        fake.reset_calls();
        let (code, doc) = scan_json_within(60, &config, &fake);
        assert_eq!(code, 3, "{operation} {kind}: the scan is partial");
        let target = &doc["targets"][0];
        assert_eq!(target["reason_kind"], "inconsistent", "{target}");
        assert!(
            fake.calls_of(operation) <= 1_000,
            "{operation}: stopped at the page bound, not after {} calls",
            fake.calls_of(operation)
        );
        assert!(doc["certificates"].as_array().unwrap().is_empty());
        fake.admin_delete("faults");
    }
}

#[test]
fn a_target_past_its_deadline_fails_and_the_scan_is_partial() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({"certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(90)}]}));
    // Throttled for ever, each time asking for 30 s: only the deadline ends it.
    fake.fault_spec(
        json!({"operation": "GetClientCertificates", "kind": "throttle",
                           "count": 1_000_000, "retry_after_seconds": 30}),
    );
    let config = config_file(&FAST.replace("[aws]\n", "[aws]\ntarget_deadline_secs = 2\n"));
    let started = std::time::Instant::now();
    let (code, doc) = scan_json_within(20, &config, &fake);
    assert_eq!(code, 3);
    assert_eq!(
        doc["targets"][0]["reason_kind"], "timed_out",
        "{}",
        doc["targets"][0]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn an_account_without_a_role_is_checked_against_the_ambient_credentials() {
    let fake = FakeControlPlane::start();
    // The ambient credentials reach 123456789012 (the fake's default account); its
    // certificate was recorded earlier under the right account.
    fake.seed(
        json!({"certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(20)}],
                     "rest_apis": [{"id": "api0000001", "name": "orders",
                       "stages": [{"name": "prod", "client_certificate_id": "aaaaaaaaaa"}]}]}),
    );
    let config = config_file(FAST);
    let (code, _, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        fake.calls_of("sts:GetCallerIdentity"),
        1,
        "the account was checked"
    );

    // An entry without role_arn for another account: the ambient credentials are not that
    // account, so nothing is read or reconciled as if they were.
    let wrong = config_file(&FAST.replace("123456789012", "999999999999"));
    let (code, doc, _) = scan_json(certsentinel(Some(&fake), None), &wrong);
    assert_eq!(code, 3);
    let target = &doc["targets"][0];
    assert_eq!(target["reason_kind"], "unreachable", "{target}");
    assert!(
        target["error"]
            .as_str()
            .unwrap()
            .contains("reach account 123456789012, not 999999999999"),
        "{target}"
    );
    assert!(doc["certificates"].as_array().unwrap().is_empty());
    assert_eq!(
        fake.calls_of("GetClientCertificates"),
        1,
        "only the first scan listed"
    );
}

#[test]
fn a_region_that_keeps_failing_makes_the_scan_partial_not_empty() {
    let fake = FakeControlPlane::start();
    for region in ["us-east-1", "eu-west-1"] {
        fake.seed(json!({"region": region,
            "certificates": [{"id": format!("cert-{region}"), "not_after": days_from_now(40)}]}));
    }
    // eu-west-1 answers 500 to every listing of REST APIs.
    let admin = format!("{}/_fake/faults", fake.url);
    ureq::post(&admin)
        .send_json(
            json!({"operation": "GetRestApis", "kind": "error", "count": 1000,
                          "region": "eu-west-1"}),
        )
        .unwrap();
    let config = config_file(&FAST.replace(
        "regions = [\"us-east-1\"]",
        "regions = [\"us-east-1\", \"eu-west-1\"]",
    ));
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 3, "partial scans exit 3: {stderr}");
    assert_eq!(doc["complete"], false);
    let targets = doc["targets"].as_array().unwrap();
    let eu = targets.iter().find(|t| t["region"] == "eu-west-1").unwrap();
    assert_eq!(eu["status"], "failed");
    assert_eq!(eu["reason_kind"], "unavailable");
    let us = targets.iter().find(|t| t["region"] == "us-east-1").unwrap();
    assert_eq!(us["status"], "complete");
    // What could not be read is absent, not reported as gone or unused.
    let ids: Vec<&str> = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["cert-us-east-1"]);
}

#[test]
fn resources_deleted_mid_scan_are_gone_not_errors() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(20)},
                         {"id": "bbbbbbbbbb", "not_after": days_from_now(20)}],
        "rest_apis": [
            {"id": "api0000001", "name": "orders",
             "stages": [{"name": "prod", "client_certificate_id": "aaaaaaaaaa"}]},
            {"id": "api0000002", "name": "ledger",
             "stages": [{"name": "prod", "client_certificate_id": "bbbbbbbbbb"}]}]
    }));
    // Between the listing and the stage reads, the ledger API is deleted.
    fake.hook(json!({"operation": "GetStages", "nth": 1,
                     "delete": {"kind": "rest_api", "id": "api0000002"}}));
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["complete"], true);
    assert_eq!(certificate(&doc, "aaaaaaaaaa")["band"], "expiring");
    assert_eq!(certificate(&doc, "bbbbbbbbbb")["band"], "unused");
    assert_eq!(fake.calls_of("GetStages"), 2);
}

#[test]
fn a_certificate_deleted_mid_scan_is_confirmed_gone_and_its_stage_reported() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(20)},
                         {"id": "bbbbbbbbbb", "not_after": days_from_now(20)}],
        "rest_apis": [{"id": "api0000001", "name": "orders", "stages": [
            {"name": "prod", "client_certificate_id": "aaaaaaaaaa"},
            {"name": "beta", "client_certificate_id": "bbbbbbbbbb"}]}]
    }));
    fake.reset_calls();
    // The scan has started (the REST API listing is served first or concurrently) when
    // bbbbbbbbbb is deleted, just before the certificate listing is answered.
    fake.hook(json!({"operation": "GetClientCertificates", "nth": 1,
                     "delete": {"kind": "client_certificate", "id": "bbbbbbbbbb"}}));
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "a deletion is not an error: {stderr}");
    assert_eq!(doc["complete"], true);
    let ids: Vec<&str> = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["aaaaaaaaaa"]);
    // The stage still names it: one targeted read confirms it is gone.
    assert_eq!(fake.calls_of("GetClientCertificate"), 1);
    assert_eq!(doc["dangling"][0]["certificate_ref"], "bbbbbbbbbb");
    assert_eq!(doc["dangling"][0]["stage"]["stage_name"], "beta");
}

#[test]
fn a_reference_to_a_certificate_that_does_not_exist_is_read_once_and_reported_dangling() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(20)}],
        "rest_apis": [{"id": "api0000001", "name": "orders", "stages": [
            {"name": "prod", "client_certificate_id": "aaaaaaaaaa"},
            {"name": "beta", "client_certificate_id": "zzzzzzzzzz", "tags": {"owner": "search"}}]}]
    }));
    fake.reset_calls();
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    // Not in the listing: it may have been generated since, so it is read once before the
    // reference is called dangling.
    assert_eq!(fake.calls_of("GetClientCertificate"), 1);
    let dangling = doc["dangling"].as_array().unwrap();
    assert_eq!(dangling.len(), 1);
    assert_eq!(dangling[0]["certificate_ref"], "zzzzzzzzzz");
    assert_eq!(dangling[0]["stage"]["stage_name"], "beta");
    assert_eq!(dangling[0]["stage"]["owner"]["team"], "search");
    assert_eq!(
        certificate(&doc, "aaaaaaaaaa")["stages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_bad_pem_or_a_date_mismatch_is_a_warning_and_the_earlier_date_counts() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [
            {"id": "badpem0001", "not_after": days_from_now(100), "pem_override": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"},
            {"id": "mismatch01", "not_after": days_from_now(10), "expiration_date_override": days_from_now(200)},
            {"id": "goodcert01", "not_after": days_from_now(100)}],
        "rest_apis": [{"id": "api0000001", "name": "orders", "stages": [
            {"name": "a", "client_certificate_id": "badpem0001"},
            {"name": "b", "client_certificate_id": "mismatch01"},
            {"name": "c", "client_certificate_id": "goodcert01"}]}]
    }));
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    let bad = certificate(&doc, "badpem0001");
    assert_eq!(bad["band"], "healthy");
    assert_eq!(bad["not_after_source"], "expiration_date");
    assert!(bad["fingerprint_sha256"].is_null());
    assert_eq!(bad["warnings"].as_array().unwrap().len(), 1);
    let mismatch = certificate(&doc, "mismatch01");
    assert_eq!(mismatch["not_after_source"], "earlier_of_two");
    assert_eq!(
        mismatch["band"], "critical",
        "the PEM's 10 days count, not the API's 200"
    );
    assert_eq!(mismatch["days_left"].as_i64().unwrap(), 9);
    let good = certificate(&doc, "goodcert01");
    assert_eq!(good["not_after_source"], "both");
    assert_eq!(good["fingerprint_sha256"].as_str().unwrap().len(), 64);
    assert!(good["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn owner_precedence_is_stage_then_api_then_certificate() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [
            {"id": "cert000001", "not_after": days_from_now(20), "tags": {"owner": "security"}},
            {"id": "cert000002", "not_after": days_from_now(20), "tags": {"owner": "security"}},
            {"id": "cert000003", "not_after": days_from_now(20), "tags": {"owner": "security"}},
            {"id": "cert000004", "not_after": days_from_now(20)}],
        "rest_apis": [
            {"id": "api0000001", "name": "orders", "tags": {"owner": "platform"}, "stages": [
                {"name": "prod", "client_certificate_id": "cert000001",
                 "tags": {"team": "payments", "partner": "acme-payments"}},
                {"name": "dev", "client_certificate_id": "cert000002"}]},
            {"id": "api0000002", "name": "ledger", "stages": [
                {"name": "prod", "client_certificate_id": "cert000003"},
                {"name": "dev", "client_certificate_id": "cert000004"}]}]
    }));
    let config = config_file(&format!(
        "{FAST}\n[ownership]\nowner_tag_keys = [\"team\", \"owner\"]\n"
    ));
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    let owner = |id: &str| certificate(&doc, id)["stages"][0]["owner"].clone();
    assert_eq!(
        owner("cert000001"),
        json!({"team": "payments", "level": "stage", "tag_key": "team"})
    );
    assert_eq!(
        certificate(&doc, "cert000001")["partners"],
        json!(["acme-payments"])
    );
    assert_eq!(
        owner("cert000002"),
        json!({"team": "platform", "level": "api", "tag_key": "owner"})
    );
    assert_eq!(
        owner("cert000003"),
        json!({"team": "security", "level": "certificate", "tag_key": "owner"})
    );
    assert_eq!(owner("cert000004"), Value::Null);
    assert_eq!(certificate(&doc, "cert000004")["owners"], json!([]));
}

#[test]
fn roles_are_assumed_in_each_account() {
    let moto = Moto::start();
    let fake = FakeControlPlane::start_with(&["--sts-endpoint", &moto.url]);
    for (account, id) in [
        ("111111111111", "certaaaaaa"),
        ("222222222222", "certbbbbbb"),
    ] {
        fake.seed(json!({"account": account, "certificates": [{"id": id, "not_after": days_from_now(30)}]}));
    }
    fake.seed(json!({"account": "123456789012",
        "certificates": [{"id": "ambient123", "not_after": days_from_now(30)}]}));
    let config = config_file(&FAST.replace(
        "list = [{ id = \"123456789012\" }]",
        "list = [\n  { id = \"111111111111\", role_arn = \"arn:aws:iam::111111111111:role/certsentinel-read\", name = \"prod\" },\n  { id = \"222222222222\", role_arn = \"arn:aws:iam::222222222222:role/certsentinel-read\", external_id = \"s3cr3t-value\" },\n]",
    ));
    // Even at trace level (where the SDK logs whole requests) no secret reaches a log.
    let mut cmd = certsentinel(Some(&fake), Some(&moto));
    cmd.env("RUST_LOG", "trace");
    let (code, doc, stderr) = scan_json(cmd, &config);
    assert_eq!(code, 0, "{}", &stderr[stderr.len().saturating_sub(4000)..]);
    assert!(stderr.contains("TRACE"), "trace logging was on");
    let found: Vec<(String, String)> = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["account"].as_str().unwrap().into(),
                c["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("111111111111".into(), "certaaaaaa".into()),
            ("222222222222".into(), "certbbbbbb".into())
        ],
        "each account's own certificates, read with that account's assumed role"
    );
    assert_eq!(doc["targets"][0]["account_name"], "prod");
    assert!(
        !stderr.contains("s3cr3t-value"),
        "secrets never reach a log"
    );
}

#[test]
fn configuration_errors_exit_2_and_name_the_key() {
    let config = config_file("[policy]\nwindow_days = -3\n");
    let out = certsentinel(None, None)
        .arg("--config")
        .arg(&config.path)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policy.window_days"), "{stderr}");

    let out = certsentinel(None, None)
        .env("CERTSENTINEL__AWS__REGONS", "us-east-1")
        .args(["scan", "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("aws.regons") && stderr.contains("regions"),
        "{stderr}"
    );
}
