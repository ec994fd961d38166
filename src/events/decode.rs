//! One SQS message body in, one [`Decoded`] (or a [`Rejected`] reason) out. Pure.
//!
//! The shapes, and what each must cause, are recorded in `tests/fixtures/cloudtrail/`
//! (`expected.json`); the tests below hold this decoder to every one of them.

use serde::Serialize;
use serde_json::Value;

/// How the CloudTrail record reached the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// An EventBridge rule with the queue as its target: the body is the event.
    #[serde(rename = "eventbridge")]
    EventBridge,
    /// EventBridge to SNS to SQS without raw delivery: the event is a string in `Message`.
    Sns,
    /// A CloudTrail record with no envelope (a trail file, a hand-made message).
    None,
}

/// A resource worth reading again. A stage carries its API, so the API is not listed apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// An API Gateway-generated client certificate, by its id.
    ClientCertificate { id: String },
    /// An ACM certificate a stage was pointed at, by its ARN (read through ACM, not API Gateway).
    AcmCertificate { arn: String },
    /// A REST API stage.
    Stage {
        rest_api_id: String,
        stage_name: String,
    },
    /// A whole REST API: deleted (every stage of it stops presenting its certificate), or its
    /// tags changed (the owner of each of its stages may have).
    RestApi { rest_api_id: String },
    /// A stage of an API Gateway v2 API (`apiId`). certsentinel reads the WebSocket ones; a
    /// re-read that finds an HTTP API finds nothing to decide.
    WebsocketStage { api_id: String, stage_name: String },
    /// A whole API Gateway v2 API: deleted, or its tags changed.
    WebsocketApi { api_id: String },
}

/// Why an event is acknowledged and counted but never acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// The call failed (`errorCode`): nothing changed.
    FailedCall { error_code: String },
    /// A read (`readOnly: true`): nothing changed.
    ReadOnly,
    /// An event from another service than API Gateway.
    OtherService { source: String },
    /// A deployment that names no stage: nothing is created or re-pointed.
    NoStageAffected,
    /// An API Gateway change that cannot touch a client certificate or who owns one.
    NotRelevant,
}

impl Ignored {
    /// The reason as metrics and logs name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ignored::FailedCall { .. } => "failed_call",
            Ignored::ReadOnly => "read_only",
            Ignored::OtherService { .. } => "other_service",
            Ignored::NoStageAffected => "no_stage_affected",
            Ignored::NotRelevant => "not_relevant",
        }
    }
}

/// What the message asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read these again (never empty) and let the engine decide from what the API says.
    Reread(Vec<Target>),
    Ignore(Ignored),
}

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// CloudTrail's `eventID`: the same change delivered twice carries the same one.
    pub event_id: String,
    pub event_name: String,
    /// The account and region the change happened in (`recipientAccountId`, `awsRegion`).
    pub account: String,
    pub region: String,
    pub envelope: Envelope,
    pub action: Action,
}

/// A body that is not an event this decoder can read: logged with the message id and left
/// for the queue's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the message is not valid JSON: {0}")]
    Malformed(String),
    #[error("the message is JSON but no CloudTrail event (no eventName, eventSource and eventID)")]
    NotAnEvent,
    #[error("the {event_name} event {event_id} has no {field}: cannot tell what it changed")]
    Incomplete {
        event_name: String,
        event_id: String,
        field: &'static str,
    },
}

impl Rejected {
    /// The reason as metrics and logs name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Rejected::Malformed(_) => "malformed",
            Rejected::NotAnEvent => "not_an_event",
            Rejected::Incomplete { .. } => "incomplete",
        }
    }
}

const API_GATEWAY_SOURCE: &str = "aws.apigateway";
const API_GATEWAY_EVENT_SOURCE: &str = "apigateway.amazonaws.com";
const CERTIFICATE_PATH: &str = "/clientCertificateId";

/// Decodes one SQS message body.
pub fn decode(body: &str) -> Result<Decoded, Rejected> {
    let decoded = decode_any(body)?;
    // A change that cannot be placed in an account and region cannot be read again: it goes
    // to the dead-letter queue, where someone can see it, rather than be dropped.
    if matches!(decoded.action, Action::Reread(_)) {
        for (value, field) in [
            (&decoded.account, "recipientAccountId"),
            (&decoded.region, "awsRegion"),
        ] {
            if value.is_empty() {
                return Err(Rejected::Incomplete {
                    event_name: decoded.event_name,
                    event_id: decoded.event_id,
                    field,
                });
            }
        }
    }
    Ok(decoded)
}

fn decode_any(body: &str) -> Result<Decoded, Rejected> {
    let outer = parse(body)?;
    let (event, envelope) = match sns_message(&outer) {
        Some(inner) => (parse(inner)?, Envelope::Sns),
        None => (outer, Envelope::EventBridge),
    };
    if let (Some(detail), Some(source)) = (event.get("detail"), text(&event, "source")) {
        // EventBridge: the record is `detail`; the envelope says where it happened when the
        // record does not.
        let mut decoded = match record(detail, envelope) {
            // Another service's event need not carry a CloudTrail record at all.
            Err(Rejected::NotAnEvent) if source != API_GATEWAY_SOURCE => Decoded {
                event_id: text(&event, "id").unwrap_or_default().to_owned(),
                event_name: text(&event, "detail-type").unwrap_or_default().to_owned(),
                account: String::new(),
                region: String::new(),
                envelope,
                action: Action::Ignore(Ignored::NotRelevant),
            },
            other => other?,
        };
        if decoded.account.is_empty() {
            decoded.account = text(&event, "account").unwrap_or_default().to_owned();
        }
        if decoded.region.is_empty() {
            decoded.region = text(&event, "region").unwrap_or_default().to_owned();
        }
        if source != API_GATEWAY_SOURCE {
            decoded.action = Action::Ignore(Ignored::OtherService {
                source: source.to_owned(),
            });
        }
        return Ok(decoded);
    }
    let envelope = match envelope {
        Envelope::Sns => Envelope::Sns,
        _ => Envelope::None,
    };
    record(&event, envelope)
}

fn parse(body: &str) -> Result<Value, Rejected> {
    serde_json::from_str(body).map_err(|e| Rejected::Malformed(e.to_string()))
}

/// The event inside an SNS notification, if `outer` is one.
fn sns_message(outer: &Value) -> Option<&str> {
    (text(outer, "Type")? == "Notification")
        .then(|| text(outer, "Message"))
        .flatten()
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key)?.as_str()
}

/// A string at a path of keys, `None` when absent, not a string, or empty.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut here = value;
    for key in path {
        here = here.get(key)?;
    }
    here.as_str().filter(|s| !s.is_empty())
}

/// One CloudTrail record.
fn record(record: &Value, envelope: Envelope) -> Result<Decoded, Rejected> {
    let (Some(event_name), Some(event_source), Some(event_id)) = (
        text(record, "eventName"),
        text(record, "eventSource"),
        text(record, "eventID"),
    ) else {
        return Err(Rejected::NotAnEvent);
    };
    let mut decoded = Decoded {
        event_id: event_id.to_owned(),
        event_name: event_name.to_owned(),
        account: text(record, "recipientAccountId")
            .unwrap_or_default()
            .to_owned(),
        region: text(record, "awsRegion").unwrap_or_default().to_owned(),
        envelope,
        action: Action::Ignore(Ignored::NotRelevant),
    };
    decoded.action = if event_source != API_GATEWAY_EVENT_SOURCE {
        Action::Ignore(Ignored::OtherService {
            source: event_source.to_owned(),
        })
    } else if let Some(code) = text(record, "errorCode") {
        Action::Ignore(Ignored::FailedCall {
            error_code: code.to_owned(),
        })
    } else if record.get("readOnly").and_then(Value::as_bool) == Some(true) {
        Action::Ignore(Ignored::ReadOnly)
    } else {
        let missing = |field: &'static str| Rejected::Incomplete {
            event_name: event_name.to_owned(),
            event_id: event_id.to_owned(),
            field,
        };
        api_gateway_action(event_name, record, missing)?
    };
    Ok(decoded)
}

/// What an API Gateway change names. An id an event should carry and does not rejects it:
/// a change that cannot be placed is visible in the dead-letter queue, not dropped.
fn api_gateway_action(
    event_name: &str,
    record: &Value,
    missing: impl Fn(&'static str) -> Rejected,
) -> Result<Action, Rejected> {
    let params = record.get("requestParameters").unwrap_or(&Value::Null);
    // API Gateway v2 (WebSocket and HTTP APIs) logs under the same source and names, with
    // `apiId` where v1 has `restApiId`.
    if at(params, &["apiId"]).is_some() && at(params, &["restApiId"]).is_none() {
        return v2_action(event_name, params, missing);
    }
    let rest_api_id = || {
        at(params, &["restApiId"])
            .map(str::to_owned)
            .ok_or_else(|| missing("requestParameters.restApiId"))
    };
    let stage = |stage_name: Option<&str>, field: &'static str| -> Result<Target, Rejected> {
        Ok(Target::Stage {
            rest_api_id: rest_api_id()?,
            stage_name: stage_name.ok_or_else(|| missing(field))?.to_owned(),
        })
    };
    let certificate = |id: Option<&str>, field: &'static str| -> Result<Target, Rejected> {
        Ok(Target::ClientCertificate {
            id: id.ok_or_else(|| missing(field))?.to_owned(),
        })
    };
    let targets = match event_name {
        "GenerateClientCertificate" => vec![certificate(
            at(record, &["responseElements", "clientCertificateId"]),
            "responseElements.clientCertificateId",
        )?],
        "UpdateClientCertificate" | "DeleteClientCertificate" => vec![certificate(
            at(params, &["clientCertificateId"]),
            "requestParameters.clientCertificateId",
        )?],
        "CreateStage" => vec![stage(
            at(params, &["createStageInput", "stageName"]),
            "requestParameters.createStageInput.stageName",
        )?],
        "DeleteStage" => vec![stage(
            at(params, &["stageName"]),
            "requestParameters.stageName",
        )?],
        "UpdateStage" => {
            let mut targets = vec![stage(
                at(params, &["stageName"]),
                "requestParameters.stageName",
            )?];
            targets.extend(attached_certificate(params));
            targets
        }
        "CreateDeployment" => match at(params, &["createDeploymentInput", "stageName"]) {
            Some(name) => vec![stage(Some(name), "")?],
            None => return Ok(Action::Ignore(Ignored::NoStageAffected)),
        },
        "DeleteRestApi" => vec![Target::RestApi {
            rest_api_id: rest_api_id()?,
        }],
        "TagResource" | "UntagResource" => return tag_change(params, &missing),
        _ => return Ok(Action::Ignore(Ignored::NotRelevant)),
    };
    Ok(Action::Reread(targets))
}

/// A tag change (REST and WebSocket alike name the resource by ARN): the resource it tags,
/// when one whose tags matter (a stage, an API, a client certificate).
fn tag_change(
    params: &Value,
    missing: &impl Fn(&'static str) -> Rejected,
) -> Result<Action, Rejected> {
    let arn =
        at(params, &["resourceArn"]).ok_or_else(|| missing("requestParameters.resourceArn"))?;
    Ok(match tagged(arn) {
        Some(target) => Action::Reread(vec![target]),
        None => Action::Ignore(Ignored::NotRelevant),
    })
}

/// What an API Gateway v2 change names: its parameters are the request's path ids and body
/// fields (`apiId`, `stageName`, `clientCertificateId`), not patch operations.
fn v2_action(
    event_name: &str,
    params: &Value,
    missing: impl Fn(&'static str) -> Rejected,
) -> Result<Action, Rejected> {
    let api_id = at(params, &["apiId"]).unwrap_or_default().to_owned();
    let stage = || -> Result<Target, Rejected> {
        Ok(Target::WebsocketStage {
            api_id: api_id.clone(),
            stage_name: at(params, &["stageName"])
                .ok_or_else(|| missing("requestParameters.stageName"))?
                .to_owned(),
        })
    };
    let targets = match event_name {
        "CreateStage" | "UpdateStage" | "DeleteStage" => {
            let mut targets = vec![stage()?];
            if event_name != "DeleteStage" {
                targets.extend(at(params, &["clientCertificateId"]).map(certificate_named));
            }
            targets
        }
        "CreateDeployment" => match at(params, &["stageName"]) {
            Some(_) => vec![stage()?],
            None => return Ok(Action::Ignore(Ignored::NoStageAffected)),
        },
        "DeleteApi" => vec![Target::WebsocketApi { api_id }],
        "TagResource" | "UntagResource" => return tag_change(params, &missing),
        _ => return Ok(Action::Ignore(Ignored::NotRelevant)),
    };
    Ok(Action::Reread(targets))
}

/// A certificate reference as a stage holds it: an ACM ARN or an API Gateway id.
fn certificate_named(value: &str) -> Target {
    if value.starts_with("arn:") {
        Target::AcmCertificate {
            arn: value.to_owned(),
        }
    } else {
        Target::ClientCertificate {
            id: value.to_owned(),
        }
    }
}

/// The certificate an UpdateStage points the stage at, if it sets one. The patch sits under
/// `updateStageInput` as recorded, or at the top of the parameters; the stage is re-read
/// either way, so a patch in neither place loses nothing.
fn attached_certificate(params: &Value) -> Option<Target> {
    let operations = params
        .get("updateStageInput")
        .and_then(|input| input.get("patchOperations"))
        .or_else(|| params.get("patchOperations"))?
        .as_array()?;
    let value = operations
        .iter()
        .filter(|op| at(op, &["path"]) == Some(CERTIFICATE_PATH))
        .filter(|op| matches!(at(op, &["op"]), Some("replace" | "add")))
        .filter_map(|op| at(op, &["value"]))
        .next_back()?;
    Some(certificate_named(value))
}

/// The resource a tag change names: a stage, an API (its tags name the owner of stages that
/// have none of their own) or a client certificate, REST (`/restapis/ID[/stages/NAME]`) or v2
/// (`/apis/ID[/stages/NAME]`). Tags elsewhere (a domain name, a usage plan) name no owner
/// certsentinel reads.
fn tagged(arn: &str) -> Option<Target> {
    let path = arn.split_once("::")?.1;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["restapis", api, "stages", stage] if !api.is_empty() && !stage.is_empty() => {
            Some(Target::Stage {
                rest_api_id: (*api).to_owned(),
                stage_name: (*stage).to_owned(),
            })
        }
        ["restapis", api] if !api.is_empty() => Some(Target::RestApi {
            rest_api_id: (*api).to_owned(),
        }),
        ["apis", api, "stages", stage] if !api.is_empty() && !stage.is_empty() => {
            Some(Target::WebsocketStage {
                api_id: (*api).to_owned(),
                stage_name: (*stage).to_owned(),
            })
        }
        ["apis", api] if !api.is_empty() => Some(Target::WebsocketApi {
            api_id: (*api).to_owned(),
        }),
        ["clientcertificates", id] if !id.is_empty() => Some(Target::ClientCertificate {
            id: (*id).to_owned(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloudtrail")
    }

    fn expected() -> Vec<Value> {
        let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["fixtures"].as_array().unwrap().clone()
    }

    fn body(file: &str) -> String {
        std::fs::read_to_string(fixtures().join(file)).unwrap()
    }

    #[test]
    fn every_recorded_shape_causes_what_it_must() {
        let fixtures = expected();
        assert!(fixtures.len() >= 22, "every fixture file is listed");
        for want in fixtures {
            let file = want["file"].as_str().unwrap();
            let got = decode(&body(file));
            match want["action"].as_str().unwrap() {
                "reject" => {
                    let err = got.expect_err(file);
                    assert_eq!(err.as_str(), want["reason"], "{file}: {err}");
                }
                action => {
                    let got = got.unwrap_or_else(|e| panic!("{file}: {e}"));
                    assert_eq!(got.event_name, want["event_name"], "{file}");
                    assert_eq!(got.event_id, want["event_id"], "{file}");
                    assert_eq!(got.account, want["account"], "{file}");
                    assert_eq!(got.region, want["region"], "{file}");
                    assert_eq!(
                        serde_json::to_value(got.envelope).unwrap(),
                        want["envelope"],
                        "{file}"
                    );
                    match (action, &got.action) {
                        ("reread", Action::Reread(targets)) => assert_eq!(
                            serde_json::to_value(targets).unwrap(),
                            want["targets"],
                            "{file}"
                        ),
                        ("ignore", Action::Ignore(reason)) => {
                            assert_eq!(reason.as_str(), want["reason"], "{file}")
                        }
                        (want, got) => panic!("{file}: expected {want}, decoded {got:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_failed_call_keeps_its_error_code() {
        let got = decode(&body("UpdateStage-failed.json")).unwrap();
        assert_eq!(
            got.action,
            Action::Ignore(Ignored::FailedCall {
                error_code: "NotFoundException".into()
            })
        );
    }

    #[test]
    fn a_relevant_event_without_its_ids_is_rejected_not_dropped() {
        let mut event: Value = serde_json::from_str(&body("DeleteStage.json")).unwrap();
        event["detail"]["requestParameters"]
            .as_object_mut()
            .unwrap()
            .remove("stageName");
        let err = decode(&event.to_string()).unwrap_err();
        assert_eq!(err.as_str(), "incomplete");
        assert!(
            err.to_string().contains("requestParameters.stageName"),
            "{err}"
        );
    }

    #[test]
    fn a_change_without_its_account_or_region_is_rejected_not_dropped() {
        let mut event: Value = serde_json::from_str(&body("UpdateStage-bare-record.json")).unwrap();
        event.as_object_mut().unwrap().remove("awsRegion");
        let err = decode(&event.to_string()).unwrap_err();
        assert!(err.to_string().contains("awsRegion"), "{err}");
        // An EventBridge envelope supplies what the record lacks.
        let mut event: Value = serde_json::from_str(&body("DeleteStage.json")).unwrap();
        event["detail"]
            .as_object_mut()
            .unwrap()
            .remove("recipientAccountId");
        assert_eq!(decode(&event.to_string()).unwrap().account, "111122223333");
        event.as_object_mut().unwrap().remove("account");
        let err = decode(&event.to_string()).unwrap_err();
        assert!(err.to_string().contains("recipientAccountId"), "{err}");
    }

    #[test]
    fn a_patch_at_the_top_of_the_parameters_is_read_too() {
        let mut event: Value =
            serde_json::from_str(&body("UpdateStage-client-certificate.json")).unwrap();
        let params = &mut event["detail"]["requestParameters"];
        let ops = params["updateStageInput"]["patchOperations"].take();
        params.as_object_mut().unwrap().remove("updateStageInput");
        params["patchOperations"] = ops;
        let got = decode(&event.to_string()).unwrap();
        assert!(
            matches!(&got.action, Action::Reread(t) if t.len() == 2),
            "{got:?}"
        );
    }

    #[test]
    fn another_services_event_without_a_cloudtrail_record_is_ignored_not_rejected() {
        let event = serde_json::json!({
            "version": "0", "id": "e1", "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "account": "111122223333", "region": "eu-west-1",
            "resources": [], "detail": {"instance-id": "i-1", "state": "running"}
        });
        let got = decode(&event.to_string()).unwrap();
        assert_eq!(
            got.action,
            Action::Ignore(Ignored::OtherService {
                source: "aws.ec2".into()
            })
        );
        assert_eq!(
            (got.account.as_str(), got.region.as_str()),
            ("111122223333", "eu-west-1")
        );
    }

    #[test]
    fn tags_on_something_other_than_a_stage_api_or_certificate_are_not_relevant() {
        assert_eq!(
            tagged("arn:aws:apigateway:us-east-1::/restapis/a1b2c3d4e5"),
            Some(Target::RestApi {
                rest_api_id: "a1b2c3d4e5".into()
            })
        );
        assert_eq!(
            tagged("arn:aws:apigateway:us-east-1::/apis/w1/stages/live"),
            Some(Target::WebsocketStage {
                api_id: "w1".into(),
                stage_name: "live".into()
            })
        );
        assert_eq!(tagged("arn:aws:apigateway:us-east-1::/domainnames/x"), None);
        assert_eq!(
            tagged("arn:aws:apigateway:us-east-1::/restapis//stages/"),
            None
        );
        assert_eq!(tagged("not an arn"), None);
    }

    /// A v2 call as CloudTrail records it: the recorded REST shape with `apiId` parameters.
    fn v2_event(event_name: &str, params: Value) -> String {
        let mut event: Value = serde_json::from_str(&body("DeleteStage.json")).unwrap();
        event["detail"]["eventName"] = event_name.into();
        event["detail"]["requestParameters"] = params;
        event.to_string()
    }

    #[test]
    fn websocket_stage_changes_name_the_v2_stage_and_its_certificate() {
        let got = decode(&v2_event(
            "UpdateStage",
            serde_json::json!({"apiId": "w1", "stageName": "live", "clientCertificateId": "abc123"}),
        ))
        .unwrap();
        assert_eq!(
            got.action,
            Action::Reread(vec![
                Target::WebsocketStage {
                    api_id: "w1".into(),
                    stage_name: "live".into()
                },
                Target::ClientCertificate {
                    id: "abc123".into()
                }
            ])
        );
        let got = decode(&v2_event("DeleteApi", serde_json::json!({"apiId": "w1"}))).unwrap();
        assert_eq!(
            got.action,
            Action::Reread(vec![Target::WebsocketApi {
                api_id: "w1".into()
            }])
        );
        let err = decode(&v2_event("DeleteStage", serde_json::json!({"apiId": "w1"}))).unwrap_err();
        assert_eq!(err.as_str(), "incomplete");
        let got = decode(&v2_event(
            "CreateDeployment",
            serde_json::json!({"apiId": "w1"}),
        ))
        .unwrap();
        assert_eq!(got.action, Action::Ignore(Ignored::NoStageAffected));
        let got = decode(&v2_event("CreateRoute", serde_json::json!({"apiId": "w1"}))).unwrap();
        assert_eq!(got.action, Action::Ignore(Ignored::NotRelevant));
    }

    #[test]
    fn no_prefix_of_any_recorded_body_panics() {
        // A message cut anywhere (or a hostile one) gets an answer, never a panic.
        for want in expected() {
            let text = body(want["file"].as_str().unwrap());
            for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                let _ = decode(&text[..end]);
            }
        }
    }
}
