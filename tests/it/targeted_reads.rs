//! Targeted reads (what change events will use): one certificate, one API's stages, one stage.
//! Each answers found, gone (the service said NotFound) or failed; a failed read is never
//! taken for "gone". Driven through the library against the fake control plane.

use crate::helpers::*;
use certsentinel::config::{RateLimitSettings, RetrySettings};
use certsentinel::ids::StageKind;
use certsentinel::inventory::call::{CallError, CallGate, FailureKind};
use certsentinel::inventory::control_plane::ControlPlane;
use certsentinel::inventory::model::Api;
use serde_json::json;

async fn plane(fake: &FakeControlPlane) -> ControlPlane {
    let sdk = sdk_config(&fake.url).await;
    let gate = CallGate::new(
        &RateLimitSettings {
            requests_per_second: 1000.0,
            burst: 100,
            max_concurrency: 4,
        },
        &RetrySettings {
            max_attempts: 3,
            initial_backoff_ms: 5,
            max_backoff_ms: 50,
            throttle_patience_secs: 30,
        },
    );
    ControlPlane::new("123456789012", "us-east-1", &sdk, gate)
}

fn orders() -> Api {
    Api {
        kind: StageKind::Rest,
        id: "orders0001".into(),
        name: "orders".into(),
        tags: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn found_gone_and_failed_are_three_different_answers() {
    let fake = FakeControlPlane::start();
    fake.seed(json!({
        "certificates": [{"id": "cert000001", "not_after": days_from_now(30), "tags": {"owner": "payments"}}],
        "rest_apis": [{"id": "orders0001", "name": "orders", "tags": {"owner": "platform"},
                       "stages": [{"name": "prod", "client_certificate_id": "cert000001"}]}]
    }));
    let plane = plane(&fake).await;

    // Found.
    let cert = plane.certificate("cert000001").await.unwrap().unwrap();
    assert_eq!(cert.tags["owner"], "payments");
    assert!(cert.pem.unwrap().contains("BEGIN CERTIFICATE"));
    let api = plane.get_rest_api("orders0001").await.unwrap().unwrap();
    assert_eq!(api.tags["owner"], "platform");
    let stages = plane.rest_stages(&orders()).await.unwrap().unwrap();
    assert_eq!(stages[0].certificate_ref.as_deref(), Some("cert000001"));
    let stage = plane
        .get_rest_stage(&orders(), "prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stage.key.stage_name, "prod");

    // Failed: 500s past the retries, or access denied, say nothing about the resource.
    fake.fault("GetClientCertificate", "error", 10, 0);
    match plane.certificate("cert000001").await {
        Err(CallError::Failed { kind, attempts, .. }) => {
            assert_eq!(kind, FailureKind::Unavailable);
            assert_eq!(attempts, 3);
        }
        other => panic!("a failing read must be an error, not {other:?}"),
    }
    ureq::post(&format!("{}/_fake/reset", fake.url))
        .send_empty()
        .unwrap();
    fake.seed(json!({
        "certificates": [{"id": "cert000001", "not_after": days_from_now(30)}],
        "rest_apis": [{"id": "orders0001", "name": "orders",
                       "stages": [{"name": "prod", "client_certificate_id": "cert000001"}]}]
    }));
    fake.fault("GetStage", "access_denied", 1, 0);
    let denied = plane.get_rest_stage(&orders(), "prod").await.unwrap_err();
    assert_eq!(denied.kind(), Some(FailureKind::Denied));
    assert_eq!(fake.calls_of("GetStage"), 1, "a denial is not retried");

    // Throttled: retried until it succeeds.
    fake.reset_calls();
    fake.fault("GetStages", "throttle", 5, 0);
    assert!(plane.rest_stages(&orders()).await.unwrap().is_some());
    assert_eq!(fake.calls_of("GetStages"), 6);

    // Gone: the service says so.
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
    assert_eq!(plane.get_rest_stage(&orders(), "prod").await.unwrap(), None);
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-rest-api",
            "--rest-api-id",
            "orders0001",
        ],
    );
    assert_eq!(plane.rest_stages(&orders()).await.unwrap(), None);
    assert_eq!(plane.get_rest_api("orders0001").await.unwrap(), None);
    aws(
        &fake.url,
        &[
            "apigateway",
            "delete-client-certificate",
            "--client-certificate-id",
            "cert000001",
        ],
    );
    assert_eq!(plane.certificate("cert000001").await.unwrap(), None);
}
