//! Reads of one account and region's API Gateway control plane (v1 and v2) and of ACM, each
//! through the region's `CallGate`. Every read says one of three things: here it is, it is
//! gone (the service answered NotFound), or the read failed (`CallError::Failed`), which is
//! never taken for "gone".

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};

use super::call::{CallError, CallGate, FailureKind};
use super::clock::ClockWatch;
use super::model::{Api, RawCertificate, Stage, Tags};
use crate::ids::{StageKey, StageKind};

/// The largest page GetClientCertificates and GetRestApis accept.
pub const V1_PAGE_LIMIT: i32 = 500;
/// The largest page v2 GetApis and GetStages accept (`maxResults` is a string there).
pub const V2_PAGE_LIMIT: &str = "500";

/// Facts ACM gives about a certificate presented by a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmFacts {
    pub arn: String,
    pub not_after: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub acm_type: String,
    pub status: Option<String>,
    pub renewal_eligible: bool,
    pub renewal_status: Option<String>,
    pub domain_name: Option<String>,
}

/// What listing v2 APIs found: the WebSocket ones (which can present certificates) and how
/// many HTTP APIs were skipped at no further cost.
#[derive(Debug, Clone, Default)]
pub struct V2Listing {
    pub websocket: Vec<Api>,
    pub http_skipped: usize,
}

/// One account and region's reads.
pub struct ControlPlane {
    pub account: String,
    pub region: String,
    v1: aws_sdk_apigateway::Client,
    v2: aws_sdk_apigatewayv2::Client,
    acm: aws_sdk_acm::Client,
    clock: ClockWatch,
    gate: CallGate,
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn to_tags(tags: Option<&HashMap<String, String>>) -> Tags {
    tags.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn raw_certificate(
    id: Option<&str>,
    description: Option<&str>,
    pem: Option<&str>,
    created: Option<&aws_smithy_types::DateTime>,
    expiration: Option<&aws_smithy_types::DateTime>,
    tags: Option<&HashMap<String, String>>,
) -> Option<RawCertificate> {
    Some(RawCertificate {
        id: id?.to_string(),
        description: description.map(str::to_string),
        pem: pem.map(str::to_string),
        created_at: to_chrono(created),
        expiration_date: to_chrono(expiration),
        tags: to_tags(tags),
    })
}

/// An answer that came back but lacks what it must carry: a failed read, never "gone".
fn malformed(operation: &'static str, what: &str) -> CallError {
    CallError::Failed {
        operation,
        kind: FailureKind::Inconsistent,
        attempts: 1,
        message: format!("the answer has no {what}"),
    }
}

/// Turns "the service says it does not exist" into `Ok(None)`.
fn absent_is_none<T>(result: Result<T, CallError>) -> Result<Option<T>, CallError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(CallError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl ControlPlane {
    /// `sdk` must already be aimed at `region`.
    pub fn new(account: &str, region: &str, sdk: &SdkConfig, gate: CallGate) -> Self {
        let clock = ClockWatch::default();
        ControlPlane {
            account: account.to_string(),
            region: region.to_string(),
            v1: aws_sdk_apigateway::Client::from_conf(
                aws_sdk_apigateway::config::Builder::from(sdk)
                    .interceptor(clock.clone())
                    .build(),
            ),
            v2: aws_sdk_apigatewayv2::Client::from_conf(
                aws_sdk_apigatewayv2::config::Builder::from(sdk)
                    .interceptor(clock.clone())
                    .build(),
            ),
            acm: aws_sdk_acm::Client::from_conf(
                aws_sdk_acm::config::Builder::from(sdk)
                    .interceptor(clock.clone())
                    .build(),
            ),
            gate,
            clock,
        }
    }

    /// How far the local clock is from the service's, in seconds (local minus service), as
    /// the answers so far tell.
    pub fn clock_skew_seconds(&self) -> Option<i64> {
        self.clock.skew_seconds()
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.gate.counter().snapshot()
    }

    /// Requests sent by (operation, outcome).
    pub fn call_outcomes(&self) -> BTreeMap<(String, String), u64> {
        self.gate.counter().outcomes()
    }

    fn raw_certificate(c: &aws_sdk_apigateway::types::ClientCertificate) -> Option<RawCertificate> {
        raw_certificate(
            c.client_certificate_id(),
            c.description(),
            c.pem_encoded_certificate(),
            c.created_date(),
            c.expiration_date(),
            c.tags(),
        )
    }

    /// Every client certificate, in pages of 500.
    pub async fn list_certificates(&self) -> Result<Vec<RawCertificate>, CallError> {
        let mut all = Vec::new();
        self.gate
            .paged(
                "GetClientCertificates",
                |position| {
                    self.v1
                        .get_client_certificates()
                        .limit(V1_PAGE_LIMIT)
                        .set_position(position)
                        .send()
                },
                |page| {
                    all.extend(page.items().iter().filter_map(Self::raw_certificate));
                    page.position().map(str::to_string)
                },
            )
            .await?;
        Ok(all)
    }

    /// One client certificate; `None` when the service says it does not exist.
    pub async fn certificate(&self, id: &str) -> Result<Option<RawCertificate>, CallError> {
        let out = absent_is_none(
            self.gate
                .call("GetClientCertificate", || {
                    self.v1
                        .get_client_certificate()
                        .client_certificate_id(id)
                        .send()
                })
                .await,
        )?;
        let Some(c) = out else { return Ok(None) };
        raw_certificate(
            c.client_certificate_id().or(Some(id)),
            c.description(),
            c.pem_encoded_certificate(),
            c.created_date(),
            c.expiration_date(),
            c.tags(),
        )
        .map(Some)
        .ok_or_else(|| malformed("GetClientCertificate", "certificate"))
    }

    fn rest_api(api: &aws_sdk_apigateway::types::RestApi) -> Option<Api> {
        Some(Api {
            kind: StageKind::Rest,
            id: api.id()?.to_string(),
            name: api.name().unwrap_or_default().to_string(),
            tags: to_tags(api.tags()),
        })
    }

    /// Every REST API, in pages of 500, tags inline.
    pub async fn list_rest_apis(&self) -> Result<Vec<Api>, CallError> {
        let mut all = Vec::new();
        self.gate
            .paged(
                "GetRestApis",
                |position| {
                    self.v1
                        .get_rest_apis()
                        .limit(V1_PAGE_LIMIT)
                        .set_position(position)
                        .send()
                },
                |page| {
                    all.extend(page.items().iter().filter_map(Self::rest_api));
                    page.position().map(str::to_string)
                },
            )
            .await?;
        Ok(all)
    }

    /// One REST API; `None` when it no longer exists.
    pub async fn get_rest_api(&self, api_id: &str) -> Result<Option<Api>, CallError> {
        let out = absent_is_none(
            self.gate
                .call("GetRestApi", || {
                    self.v1.get_rest_api().rest_api_id(api_id).send()
                })
                .await,
        )?;
        Ok(out.map(|a| Api {
            kind: StageKind::Rest,
            id: a.id().unwrap_or(api_id).to_string(),
            name: a.name().unwrap_or_default().to_string(),
            tags: to_tags(a.tags()),
        }))
    }

    /// A stage of `api` as listed; `None` without a name (never the case in practice).
    fn stage(
        &self,
        api: &Api,
        name: Option<&str>,
        certificate_ref: Option<&str>,
        tags: Option<&HashMap<String, String>>,
    ) -> Option<Stage> {
        Some(Stage {
            key: StageKey {
                account: self.account.clone(),
                region: self.region.clone(),
                kind: api.kind,
                api_id: api.id.clone(),
                stage_name: name?.to_string(),
            },
            api_name: api.name.clone(),
            certificate_ref: certificate_ref
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            tags: to_tags(tags),
        })
    }

    /// Every stage of a REST API in one call; `None` when the API no longer exists.
    pub async fn rest_stages(&self, api: &Api) -> Result<Option<Vec<Stage>>, CallError> {
        let out = absent_is_none(
            self.gate
                .call("GetStages", || {
                    self.v1.get_stages().rest_api_id(&api.id).send()
                })
                .await,
        )?;
        Ok(out.map(|o| {
            o.item()
                .iter()
                .filter_map(|s| {
                    self.stage(api, s.stage_name(), s.client_certificate_id(), s.tags())
                })
                .collect()
        }))
    }

    /// One REST stage; `None` when it (or its API) no longer exists.
    pub async fn get_rest_stage(&self, api: &Api, stage: &str) -> Result<Option<Stage>, CallError> {
        let out = absent_is_none(
            self.gate
                .call("GetStage", || {
                    self.v1
                        .get_stage()
                        .rest_api_id(&api.id)
                        .stage_name(stage)
                        .send()
                })
                .await,
        )?;
        let Some(s) = out else { return Ok(None) };
        self.stage(
            api,
            s.stage_name().or(Some(stage)),
            s.client_certificate_id(),
            s.tags(),
        )
        .map(Some)
        .ok_or_else(|| malformed("GetStage", "stage"))
    }

    /// Every v2 API, in the largest pages the service accepts; keeps the WebSocket ones.
    pub async fn list_v2_apis(&self) -> Result<V2Listing, CallError> {
        use aws_sdk_apigatewayv2::types::ProtocolType;
        let mut listing = V2Listing::default();
        self.gate
            .paged(
                "GetApis",
                |next| {
                    self.v2
                        .get_apis()
                        .max_results(V2_PAGE_LIMIT)
                        .set_next_token(next)
                        .send()
                },
                |page| {
                    for api in page.items() {
                        match (api.protocol_type(), api.api_id()) {
                            (Some(ProtocolType::Websocket), Some(id)) => {
                                listing.websocket.push(Api {
                                    kind: StageKind::WebSocket,
                                    id: id.to_string(),
                                    name: api.name().unwrap_or_default().to_string(),
                                    tags: to_tags(api.tags()),
                                })
                            }
                            _ => listing.http_skipped += 1,
                        }
                    }
                    page.next_token().map(str::to_string)
                },
            )
            .await?;
        Ok(listing)
    }

    /// Every stage of a WebSocket API (one call unless it has more than 500 stages); `None`
    /// when the API no longer exists.
    pub async fn websocket_stages(&self, api: &Api) -> Result<Option<Vec<Stage>>, CallError> {
        let mut stages = Vec::new();
        let read = self
            .gate
            .paged(
                "GetStagesV2",
                |next| {
                    self.v2
                        .get_stages()
                        .api_id(&api.id)
                        .max_results(V2_PAGE_LIMIT)
                        .set_next_token(next)
                        .send()
                },
                |page| {
                    stages.extend(page.items().iter().filter_map(|s| {
                        self.stage(api, s.stage_name(), s.client_certificate_id(), s.tags())
                    }));
                    page.next_token().map(str::to_string)
                },
            )
            .await;
        Ok(absent_is_none(read)?.map(|()| stages))
    }

    /// One API, REST or WebSocket, with its tags; `None` when it no longer exists (or, for
    /// v2, is an HTTP API, which cannot present a client certificate).
    pub async fn get_api(&self, kind: StageKind, api_id: &str) -> Result<Option<Api>, CallError> {
        use aws_sdk_apigatewayv2::types::ProtocolType;
        match kind {
            StageKind::Rest => self.get_rest_api(api_id).await,
            StageKind::WebSocket => {
                let out = absent_is_none(
                    self.gate
                        .call("GetApi", || self.v2.get_api().api_id(api_id).send())
                        .await,
                )?;
                let Some(a) = out else { return Ok(None) };
                match a.protocol_type() {
                    Some(ProtocolType::Websocket) => Ok(Some(Api {
                        kind,
                        id: a.api_id().unwrap_or(api_id).to_string(),
                        name: a.name().unwrap_or_default().to_string(),
                        tags: to_tags(a.tags()),
                    })),
                    // An HTTP API presents no client certificate: no stage of it is ours.
                    Some(ProtocolType::Http) => Ok(None),
                    _ => Err(malformed("GetApi", "protocol type")),
                }
            }
        }
    }

    /// Every stage of an API, REST or WebSocket; `None` when the API no longer exists.
    pub async fn api_stages(&self, api: &Api) -> Result<Option<Vec<Stage>>, CallError> {
        match api.kind {
            StageKind::Rest => self.rest_stages(api).await,
            StageKind::WebSocket => self.websocket_stages(api).await,
        }
    }

    /// One stage of an API, REST or WebSocket; `None` when it (or its API) no longer exists.
    pub async fn get_stage(&self, api: &Api, stage: &str) -> Result<Option<Stage>, CallError> {
        match api.kind {
            StageKind::Rest => self.get_rest_stage(api, stage).await,
            StageKind::WebSocket => {
                let out = absent_is_none(
                    self.gate
                        .call("GetStageV2", || {
                            self.v2.get_stage().api_id(&api.id).stage_name(stage).send()
                        })
                        .await,
                )?;
                let Some(s) = out else { return Ok(None) };
                self.stage(
                    api,
                    s.stage_name().or(Some(stage)),
                    s.client_certificate_id(),
                    s.tags(),
                )
                .map(Some)
                .ok_or_else(|| malformed("GetStageV2", "stage"))
            }
        }
    }

    /// Whether an API still exists, REST or WebSocket: a targeted read that confirms an
    /// absence before anything counts as gone.
    pub async fn api_exists(&self, kind: StageKind, api_id: &str) -> Result<bool, CallError> {
        Ok(self.get_api(kind, api_id).await?.is_some())
    }

    /// Whether a stage still exists, REST or WebSocket (see [`ControlPlane::api_exists`]).
    pub async fn stage_exists(&self, key: &StageKey) -> Result<bool, CallError> {
        // Only the ids matter to the read; the API's name and tags do not.
        let api = Api {
            kind: key.kind,
            id: key.api_id.clone(),
            name: String::new(),
            tags: Tags::new(),
        };
        Ok(self.get_stage(&api, &key.stage_name).await?.is_some())
    }

    /// An ACM certificate; `None` when ACM says it does not exist.
    pub async fn acm_certificate(&self, arn: &str) -> Result<Option<AcmFacts>, CallError> {
        let out = absent_is_none(
            self.gate
                .call("DescribeCertificate", || {
                    self.acm.describe_certificate().certificate_arn(arn).send()
                })
                .await,
        )?;
        Ok(out.and_then(|o| {
            let c = o.certificate()?;
            Some(AcmFacts {
                arn: c.certificate_arn().unwrap_or(arn).to_string(),
                not_after: to_chrono(c.not_after()),
                created_at: to_chrono(c.created_at().or(c.imported_at())),
                acm_type: c
                    .r#type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| "UNKNOWN".into()),
                status: c.status().map(|s| s.as_str().to_string()),
                renewal_eligible: c.renewal_eligibility().map(|r| r.as_str()) == Some("ELIGIBLE"),
                renewal_status: c
                    .renewal_summary()
                    .map(|r| r.renewal_status().as_str().to_string()),
                domain_name: c.domain_name().map(str::to_string),
            })
        }))
    }
}
