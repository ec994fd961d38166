//! The names of things, shared by every stage of the pipeline: how a certificate and a stage
//! are identified across accounts and regions, and how an ACM ARN is told from an API Gateway
//! certificate id. It owns identity only; it must never carry what was read about a thing
//! (expiry, tags) or what was decided about it. Their serialized form is stable: records,
//! intents and idempotency keys are built from it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Names one certificate everywhere: the API Gateway certificate id, or an ACM ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CertificateKey {
    pub account: String,
    pub region: String,
    pub id: String,
}

impl fmt::Display for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.account, self.region, self.id)
    }
}

/// Which API Gateway flavour a stage belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    /// A REST API stage (API Gateway v1).
    Rest,
    /// A WebSocket API stage (API Gateway v2).
    WebSocket,
}

// Spelled as serde spells it, so logs, keys and JSON agree.
serde_plain::derive_display_from_serialize!(StageKind);

/// Names one stage everywhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StageKey {
    pub account: String,
    pub region: String,
    pub kind: StageKind,
    pub api_id: String,
    pub stage_name: String,
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}/{}",
            self.account, self.region, self.kind, self.api_id, self.stage_name
        )
    }
}

/// Whether a stage's certificate reference names an ACM certificate (rather than an API
/// Gateway client certificate id).
pub fn is_acm_arn(reference: &str) -> bool {
    reference.starts_with("arn:aws:acm:")
        || reference.starts_with("arn:aws-us-gov:acm:")
        || reference.starts_with("arn:aws-cn:acm:")
}

/// The region field of an ARN (`arn:partition:service:region:account:resource`).
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}
