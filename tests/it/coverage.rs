//! Complete coverage: a certificate is "unused" only if no stage anywhere presents it. WebSocket
//! stages, ACM certificates, dangling references and every account of an organization, through
//! the `certsentinel` binary against the fake control plane and moto.

use crate::helpers::*;
use serde_json::{Value, json};

#[test]
fn a_certificate_presented_only_by_a_websocket_stage_is_in_use_with_that_stages_owner() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "wscert0001", "not_after": days_from_now(20)},
                         {"id": "idle000001", "not_after": days_from_now(20)}],
        "v2_apis": [{"id": "chat000001", "name": "chat-ws", "protocol_type": "WEBSOCKET",
                     "tags": {"owner": "messaging"},
                     "stages": [{"name": "prod", "client_certificate_id": "wscert0001",
                                 "tags": {"owner": "realtime"}},
                                {"name": "dev", "client_certificate_id": "wscert0001"}]}]
    }));
    fake.reset_calls();
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    let cert = certificate(&doc, "wscert0001");
    assert_eq!(
        cert["band"], "expiring",
        "presented by a WebSocket stage: in use"
    );
    let stages = cert["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    let prod = stages.iter().find(|s| s["stage_name"] == "prod").unwrap();
    assert_eq!(prod["kind"], "websocket");
    assert_eq!(prod["api_id"], "chat000001");
    assert_eq!(prod["api_name"], "chat-ws");
    assert_eq!(prod["owner"]["team"], "realtime");
    assert_eq!(prod["owner"]["level"], "stage");
    let dev = stages.iter().find(|s| s["stage_name"] == "dev").unwrap();
    assert_eq!(dev["owner"]["team"], "messaging");
    assert_eq!(dev["owner"]["level"], "api");
    assert_eq!(certificate(&doc, "idle000001")["band"], "unused");
    assert_eq!(
        fake.calls_of("v2:GetStages"),
        1,
        "one stage read per WebSocket API"
    );
}

#[test]
fn http_apis_cost_one_listing_and_nothing_more() {
    let fake = FakeControlPlane::start();
    let http: Vec<Value> = (0..30)
        .map(|i| {
            json!({"name": format!("http-{i}"), "protocol_type": "HTTP",
                        "stages": [{"name": "$default"}]})
        })
        .collect();
    fake.seed(json!({"v2_apis": http,
                     "certificates": [{"id": "cert000001", "not_after": days_from_now(100)}]}));
    fake.reset_calls();
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["targets"][0]["counts"]["http_apis"], 30);
    assert_eq!(fake.calls_of("v2:GetApis"), 1);
    assert_eq!(fake.calls_of("v2:GetStages"), 0);
    assert_eq!(
        fake.control_plane_calls(),
        3,
        "certificates + REST APIs + v2 APIs: one page each"
    );
}

#[test]
fn an_acm_certificate_on_a_stage_has_its_acm_expiry_band_and_owner() {
    let moto = Moto::start();
    let fake = FakeControlPlane::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_certificate_pem(10, dir.path());
    let imported = aws(
        &moto.url,
        &[
            "acm",
            "import-certificate",
            "--certificate",
            &format!("fileb://{}", cert.display()),
            "--private-key",
            &format!("fileb://{}", key.display()),
        ],
    );
    let arn = imported["CertificateArn"].as_str().unwrap().to_string();
    let missing =
        arn.rsplit_once('/').unwrap().0.to_string() + "/00000000-dead-beef-0000-000000000000";
    let elsewhere = arn.replace("us-east-1", "eu-west-1");
    fake.seed(json!({
        "rest_apis": [{"id": "gw00000001", "name": "platform-gateway", "tags": {"owner": "platform"},
            "stages": [{"name": "edge", "client_certificate_id": arn},
                       {"name": "old", "client_certificate_id": missing},
                       {"name": "eu", "client_certificate_id": elsewhere}]}]
    }));
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), Some(&moto)), &config);
    assert_eq!(code, 0, "{stderr}");
    let acm = certificate(&doc, &arn);
    assert_eq!(acm["kind"], "acm");
    assert_eq!(acm["acm_type"], "IMPORTED");
    assert_eq!(acm["band"], "critical");
    let days = acm["days_left"].as_i64().unwrap();
    assert!((9..=10).contains(&days), "{days}");
    assert_eq!(acm["owners"][0]["team"], "platform");
    assert!(acm["at_risk_reason"].as_str().unwrap().contains("imported"));
    assert_eq!(acm["stages"][0]["stage_name"], "edge");

    // References that resolve to nothing are findings, never dropped.
    let dangling = doc["dangling"].as_array().unwrap();
    assert_eq!(dangling.len(), 2, "{dangling:?}");
    let reason = |stage: &str| {
        dangling
            .iter()
            .find(|d| d["stage"]["stage_name"] == stage)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason("old").contains("no such certificate"),
        "{}",
        reason("old")
    );
    assert!(reason("eu").contains("eu-west-1"), "{}", reason("eu"));
    assert_eq!(doc["summary"]["dangling_references"], 2);
}

#[test]
fn organization_discovery_scans_every_account_and_reports_the_one_it_cannot_reach() {
    let moto = Moto::start();
    let fake = FakeControlPlane::start_with(&["--sts-endpoint", &moto.url]);
    aws(
        &moto.url,
        &[
            "organizations",
            "create-organization",
            "--feature-set",
            "ALL",
        ],
    );
    let mut members = Vec::new();
    for name in ["payments-prod", "search-prod", "legacy"] {
        let created = aws(
            &moto.url,
            &[
                "organizations",
                "create-account",
                "--email",
                &format!("{name}@example.com"),
                "--account-name",
                name,
            ],
        );
        members.push(
            created["CreateAccountStatus"]["AccountId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for (i, account) in members.iter().enumerate() {
        fake.seed(json!({"account": account,
            "certificates": [{"id": format!("orgcert{i:03}"), "not_after": days_from_now(20)}]}));
    }
    // The role cannot be assumed in the third account.
    let denier = AssumeRoleDenier::start(&moto.url, &members[2]);
    let config = config_file(
        r#"
[aws]
regions = ["us-east-1"]
[aws.accounts]
discover = "organization"
role_name = "certsentinel-read"
exclude = ["123456789012"]
[aws.rate_limit]
requests_per_second = 10000.0
burst = 1000
"#,
    );
    let mut cmd = certsentinel(Some(&fake), Some(&moto));
    cmd.env("AWS_ENDPOINT_URL_STS", &denier.url);
    let (code, doc, stderr) = scan_json(cmd, &config);
    assert_eq!(code, 3, "partial: {stderr}");
    assert_eq!(doc["complete"], false);
    let targets = doc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3, "{targets:?}");
    for (i, account) in members.iter().enumerate() {
        let t = targets.iter().find(|t| &t["account"] == account).unwrap();
        if i < 2 {
            assert_eq!(t["status"], "complete", "{t}");
            assert_eq!(
                certificate(&doc, &format!("orgcert{i:03}"))["account"],
                *account
            );
        } else {
            assert_eq!(t["status"], "failed");
            assert_eq!(t["reason_kind"], "unreachable");
            assert!(t["error"].as_str().unwrap().contains("AccessDenied"), "{t}");
            assert_eq!(t["account_name"], "legacy");
        }
    }
    assert_eq!(doc["certificates"].as_array().unwrap().len(), 2);
}

#[test]
fn enabled_regions_are_read_per_account_and_scanned() {
    let fake = FakeControlPlane::start();
    // The fake's account service: us-east-1 enabled by default, ap-east-1 opted in,
    // af-south-1 not opted in.
    for region in ["us-east-1", "ap-east-1", "af-south-1"] {
        fake.seed(json!({"region": region,
            "certificates": [{"id": format!("c-{region}"), "not_after": days_from_now(50)}]}));
    }
    let config = config_file(&FAST.replace("regions = [\"us-east-1\"]", "regions = [\"enabled\"]"));
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    let regions: Vec<&str> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["region"].as_str().unwrap())
        .collect();
    assert!(
        regions.contains(&"ap-east-1") && regions.contains(&"us-east-1"),
        "{regions:?}"
    );
    assert!(!regions.contains(&"af-south-1"), "{regions:?}");
    assert_eq!(
        regions.len(),
        7,
        "the six default regions and the opted-in one"
    );
    let ids: Vec<&str> = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"c-ap-east-1") && ids.contains(&"c-us-east-1"));
    assert_eq!(fake.calls_of("account:ListRegions"), 1);
}
