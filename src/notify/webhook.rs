//! The webhook backend: each intent POSTed as one JSON document
//! (`schemas/webhook-v1.schema.json`), signed with HMAC-SHA256 over the body as GitHub's
//! webhooks are, so the receiver can tell it came from here and was not altered.
//!
//! Headers: `X-Certsentinel-Signature-256: sha256=<hex>`, `X-Certsentinel-Event: <type>`,
//! `X-Certsentinel-Delivery: <the first 32 hex digits of SHA-256 of the intent's key>` (the
//! same for every attempt of one intent, so a receiver can deduplicate).

use std::time::Duration;

use futures::future::BoxFuture;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::backend::{Backend, DeliveryError, send};
use crate::config::Secret;
use crate::lifecycle::Intent;

/// Version of the body; bumped on any incompatible change.
pub const WEBHOOK_SCHEMA_VERSION: u32 = 1;

pub struct WebhookBackend {
    url: String,
    secret: Secret,
    client: reqwest::Client,
}

impl WebhookBackend {
    pub fn new(url: &str, secret: Secret, timeout: Duration) -> WebhookBackend {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("certsentinel/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        WebhookBackend {
            url: url.to_string(),
            secret,
            client,
        }
    }
}

/// The body of one intent's webhook.
pub fn body(intent: &Intent, summary: &str) -> serde_json::Value {
    serde_json::json!({
        "schema_version": WEBHOOK_SCHEMA_VERSION,
        "key": intent.key,
        "summary": summary,
        "intent": intent,
    })
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery id that is the same for every attempt of one intent, and safe in a header.
pub fn delivery_id(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..32].to_string()
}

impl Backend for WebhookBackend {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(
        &'a self,
        intent: &'a Intent,
        summary: &'a str,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(async move {
            let payload = serde_json::to_vec(&body(intent, summary))
                .map_err(|e| DeliveryError::Permanent(format!("cannot encode the body: {e}")))?;
            let event = serde_json::to_value(&intent.kind)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                .unwrap_or_default();
            let request = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-certsentinel-event", event)
                .header("x-certsentinel-delivery", delivery_id(&intent.key))
                .header(
                    "x-certsentinel-signature-256",
                    signature(&self.secret, &payload),
                )
                .body(payload);
            let (status, _) = send(request).await?;
            Ok(format!("HTTP {status}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_githubs() {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload
        // "Hello, World!".
        assert_eq!(
            signature(&Secret::new("It's a Secret to Everybody"), b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn a_delivery_id_is_header_safe_and_stable() {
        assert_eq!(delivery_id("a|b").len(), 32);
        assert_eq!(delivery_id("a|b"), delivery_id("a|b"));
    }
}
