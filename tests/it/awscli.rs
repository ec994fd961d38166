//! The AWS CLI (v1, from the venv) agrees with the fake control plane, and a scan by
//! `certsentinel` sees what the CLI did: a certificate generated with the CLI, presented by a
//! REST stage (owner from a stage tag set with the CLI) and by a WebSocket stage.

use crate::helpers::*;
use serde_json::Value;

/// Exit code of AWS CLI v1 (PyPI's `awscli`) for a service error.
const CLI_SERVICE_ERROR: i32 = 255;

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

#[test]
fn the_aws_cli_drives_the_fake_and_the_scan_sees_what_it_did() {
    let fake = FakeControlPlane::start();
    let ok = |args: &[&str]| aws(&fake.url, args);

    // ---- v1 client certificates ---------------------------------------------------------
    let generated = ok(&[
        "apigateway",
        "generate-client-certificate",
        "--description",
        "payments backend mTLS",
    ]);
    let cert = str_of(&generated, "clientCertificateId").to_string();
    assert_eq!(cert.len(), 10, "{generated}");
    assert!(str_of(&generated, "pemEncodedCertificate").starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        generated["expirationDate"].is_i64(),
        "v1 timestamps are epoch seconds"
    );

    let doomed = ok(&["apigateway", "generate-client-certificate"]);
    let doomed = str_of(&doomed, "clientCertificateId").to_string();

    let listed = ok(&["apigateway", "get-client-certificates"]);
    let mut ids: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| str_of(c, "clientCertificateId"))
        .collect();
    ids.sort();
    let mut want = vec![cert.as_str(), doomed.as_str()];
    want.sort();
    assert_eq!(ids, want, "get-client-certificates lists both");

    // ---- a REST API, a deployment, a stage presenting the certificate, a stage tag --------
    let api = ok(&["apigateway", "create-rest-api", "--name", "orders-api"]);
    let api_id = str_of(&api, "id").to_string();
    let deployment = ok(&["apigateway", "create-deployment", "--rest-api-id", &api_id]);
    let deployment_id = str_of(&deployment, "id").to_string();
    let stage = ok(&[
        "apigateway",
        "create-stage",
        "--rest-api-id",
        &api_id,
        "--stage-name",
        "prod",
        "--deployment-id",
        &deployment_id,
    ]);
    assert_eq!(stage["stageName"], "prod");
    assert!(stage.get("clientCertificateId").is_none(), "{stage}");

    let patch = format!("op=replace,path=/clientCertificateId,value={cert}");
    let updated = ok(&[
        "apigateway",
        "update-stage",
        "--rest-api-id",
        &api_id,
        "--stage-name",
        "prod",
        "--patch-operations",
        &patch,
    ]);
    assert_eq!(updated["clientCertificateId"], cert.as_str());

    let stage_arn = format!("arn:aws:apigateway:us-east-1::/restapis/{api_id}/stages/prod");
    ok(&[
        "apigateway",
        "tag-resource",
        "--resource-arn",
        &stage_arn,
        "--tags",
        "owner=payments",
    ]);

    let stages = ok(&["apigateway", "get-stages", "--rest-api-id", &api_id]);
    let items = stages["item"].as_array().expect("item");
    assert_eq!(items.len(), 1, "{stages}");
    assert_eq!(items[0]["stageName"], "prod");
    assert_eq!(items[0]["clientCertificateId"], cert.as_str());
    assert_eq!(items[0]["tags"], serde_json::json!({"owner": "payments"}));

    // ---- a WebSocket API (v2) whose stage presents the same certificate --------------------
    let ws = ok(&[
        "apigatewayv2",
        "create-api",
        "--name",
        "chat-ws",
        "--protocol-type",
        "WEBSOCKET",
        "--route-selection-expression",
        "$request.body.action",
    ]);
    let ws_id = str_of(&ws, "ApiId").to_string();
    assert_eq!(ws["ProtocolType"], "WEBSOCKET");
    let ws_stage = ok(&[
        "apigatewayv2",
        "create-stage",
        "--api-id",
        &ws_id,
        "--stage-name",
        "production",
        "--client-certificate-id",
        &cert,
    ]);
    assert_eq!(ws_stage["ClientCertificateId"], cert.as_str());

    let apis = ok(&["apigatewayv2", "get-apis"]);
    let v2: Vec<(&str, &str)> = apis["Items"]
        .as_array()
        .expect("Items")
        .iter()
        .map(|a| (str_of(a, "ApiId"), str_of(a, "ProtocolType")))
        .collect();
    assert_eq!(v2, vec![(ws_id.as_str(), "WEBSOCKET")]);
    let ws_stages = ok(&["apigatewayv2", "get-stages", "--api-id", &ws_id]);
    let ws_items = ws_stages["Items"].as_array().expect("Items");
    assert_eq!(ws_items.len(), 1, "{ws_stages}");
    assert_eq!(ws_items[0]["StageName"], "production");
    assert_eq!(ws_items[0]["ClientCertificateId"], cert.as_str());

    // ---- deleting the other certificate: the CLI then gets NotFoundException -------------
    ok(&[
        "apigateway",
        "delete-client-certificate",
        "--client-certificate-id",
        &doomed,
    ]);
    let gone = aws_raw(
        &fake.url,
        &[
            "apigateway",
            "get-client-certificate",
            "--client-certificate-id",
            &doomed,
        ],
    );
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert_eq!(gone.status.code(), Some(CLI_SERVICE_ERROR), "{stderr}");
    assert!(stderr.contains("NotFoundException"), "{stderr}");

    // ---- certsentinel sees all of it --------------------------------------------------------
    let config = config_file(FAST);
    let (code, doc, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["complete"], true);
    let ids: Vec<&str> = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| str_of(c, "id"))
        .collect();
    assert_eq!(ids, vec![cert.as_str()], "the deleted certificate is gone");

    let found = certificate(&doc, &cert);
    assert_eq!(found["kind"], "generated");
    assert_eq!(found["description"], "payments backend mTLS");
    assert_eq!(
        found["band"], "healthy",
        "generated certificates last 365 days"
    );
    let mut stages: Vec<&Value> = found["stages"].as_array().unwrap().iter().collect();
    stages.sort_by_key(|s| s["kind"].as_str().unwrap_or_default().to_string());
    assert_eq!(stages.len(), 2, "{found}");

    let rest = stages[0];
    assert_eq!(rest["kind"], "rest");
    assert_eq!(rest["api_id"], api_id.as_str());
    assert_eq!(rest["api_name"], "orders-api");
    assert_eq!(rest["stage_name"], "prod");
    assert_eq!(rest["owner"]["team"], "payments");
    assert_eq!(rest["owner"]["level"], "stage");
    assert_eq!(rest["owner"]["tag_key"], "owner");

    let websocket = stages[1];
    assert_eq!(websocket["kind"], "websocket");
    assert_eq!(websocket["api_id"], ws_id.as_str());
    assert_eq!(websocket["api_name"], "chat-ws");
    assert_eq!(websocket["stage_name"], "production");
    assert!(websocket["owner"].is_null(), "{websocket}");

    let owners: Vec<&str> = found["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| str_of(o, "team"))
        .collect();
    assert_eq!(owners, vec!["payments"]);
    assert!(doc["dangling"].as_array().unwrap().is_empty());
}

/// The fake publishes, for each change made through the AWS CLI, the CloudTrail record AWS
/// would write, wrapped as EventBridge does, to an SQS queue on moto: the shapes the event
/// tests rely on (`tests/fakes/check_events.sh`, which checks them against the recorded
/// fixtures' structure).
#[test]
fn the_fake_publishes_what_cloudtrail_and_eventbridge_would() {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("tests/fakes/check_events.sh"))
        .env("VENV", venv())
        .output()
        .expect("run check_events.sh");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
