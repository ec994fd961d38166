//! The e-mail backend: a partner's coordination e-mails over SMTP (lettre), text and HTML
//! parts from templates (minijinja; the embedded ones, or `notify.email.templates_dir`).
//! Each message has a Message-ID derived from its intent's key, so a resent message is the
//! same message; and each certificate's e-mails to one partner thread under the first one
//! (`In-Reply-To`, `References`). Only partner e-mails are for this backend.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::Environment;
use sha2::{Digest, Sha256};

use super::backend::{Backend, DeliveryError};
use crate::config::PartnerSettings;
use crate::config::notify::{EmailSettings, SmtpTls};
use crate::ids::CertificateKey;
use crate::lifecycle::{Intent, IntentKind, PartnerEmailKind, days_left};
use crate::output;

const TEXT: &str = include_str!("../../config/templates/partner.txt.j2");
const HTML: &str = include_str!("../../config/templates/partner.html.j2");

pub struct EmailBackend {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    partners: BTreeMap<String, PartnerSettings>,
    templates: Environment<'static>,
}

impl EmailBackend {
    /// `None` when no SMTP server is configured; an error names what cannot be used.
    pub fn new(
        settings: &EmailSettings,
        partners: &BTreeMap<String, PartnerSettings>,
        timeout: Duration,
    ) -> Result<Option<EmailBackend>, String> {
        if settings.smtp_host.is_empty() {
            return Ok(None);
        }
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let parameters = TlsParameters::new(settings.smtp_host.clone())
                    .map_err(|e| format!("notify.email: TLS cannot be set up: {e}"))?;
                if settings.tls == SmtpTls::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.smtp_host)
                .port(settings.smtp_port)
                .tls(tls)
                .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("notify.email.from: {e}"))?;
        let mut templates = Environment::new();
        let (text, html) = match &settings.templates_dir {
            Some(dir) => (
                std::fs::read_to_string(dir.join("partner.txt.j2"))
                    .map_err(|e| format!("notify.email.templates_dir: {e}"))?,
                std::fs::read_to_string(dir.join("partner.html.j2")).unwrap_or_default(),
            ),
            None => (TEXT.to_string(), HTML.to_string()),
        };
        templates
            .add_template_owned("text", text)
            .map_err(|e| format!("the partner text template: {e}"))?;
        if !html.is_empty() {
            templates
                .add_template_owned("html", html)
                .map_err(|e| format!("the partner HTML template: {e}"))?;
        }
        Ok(Some(EmailBackend {
            transport: builder.build(),
            from,
            partners: partners.clone(),
            templates,
        }))
    }

    fn message(
        &self,
        intent: &Intent,
        partner: &str,
        email: &PartnerEmailKind,
        not_after: chrono::DateTime<chrono::Utc>,
    ) -> Result<Message, DeliveryError> {
        let contacts = self.partners.get(partner).ok_or_else(|| {
            DeliveryError::Permanent(format!(
                "no contacts for partner '{partner}': add [partners.{partner}] contacts = [...]"
            ))
        })?;
        let certificate = &intent.certificate;
        let (kind, subject) = match email {
            PartnerEmailKind::Window => (
                "window",
                format!(
                    "Client certificate rotation: {} expires {}",
                    certificate.id,
                    not_after.format("%Y-%m-%d")
                ),
            ),
            PartnerEmailKind::Step { days_left } => (
                "step",
                format!("Reminder: {} expires in {days_left} days", certificate.id),
            ),
            PartnerEmailKind::CutOver { .. } => (
                "cut_over",
                format!(
                    "Cut-over done: trust the new certificate replacing {}",
                    certificate.id
                ),
            ),
            PartnerEmailKind::OldMayBeRemoved => (
                "old_may_be_removed",
                format!(
                    "The old certificate {} may leave your trust store",
                    certificate.id
                ),
            ),
            PartnerEmailKind::Successor { successor, .. } => (
                "successor",
                format!(
                    "The successor of {}: please trust {} alongside it",
                    certificate.id, successor.id
                ),
            ),
        };
        let (new_certificate, pem) = match email {
            PartnerEmailKind::CutOver { new_certificate } => {
                (new_certificate.to_string(), String::new())
            }
            PartnerEmailKind::Successor { successor, pem } => {
                (successor.to_string(), pem.clone().unwrap_or_default())
            }
            _ => (String::new(), String::new()),
        };
        let context = minijinja::context! {
            partner => partner,
            kind => kind,
            certificate => certificate.to_string(),
            not_after => not_after.format("%Y-%m-%d %H:%M UTC").to_string(),
            days_left => days_left(not_after, intent.decided_at),
            new_certificate => new_certificate,
            pem => pem,
            owner => intent.owner.as_deref().unwrap_or(output::NO_OWNER),
        };
        let render = |name: &str| {
            self.templates
                .get_template(name)
                .and_then(|t| t.render(&context))
                .map_err(|e| DeliveryError::Permanent(format!("the {name} template: {e}")))
        };
        let text = render("text")?;
        let html = if self.templates.get_template("html").is_ok() {
            Some(render("html")?)
        } else {
            None
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id(&intent.key)));
        for contact in &contacts.contacts {
            let to: Mailbox = contact.parse().map_err(|e| {
                DeliveryError::Permanent(format!("partners.{partner}.contacts: '{contact}': {e}"))
            })?;
            builder = builder.to(to);
        }
        // Every e-mail about this certificate (and expiry) to this partner threads under the
        // first one, the timeline.
        let root = thread_root(certificate, not_after, partner);
        if !matches!(email, PartnerEmailKind::Window) {
            builder = builder.in_reply_to(root.clone()).references(root);
        }
        let body = match html {
            Some(html) => MultiPart::alternative_plain_html(text, html),
            None => MultiPart::mixed().singlepart(
                lettre::message::SinglePart::builder()
                    .header(header::ContentType::TEXT_PLAIN)
                    .body(text),
            ),
        };
        builder
            .multipart(body)
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the e-mail: {e}")))
    }
}

/// A Message-ID that is the same for every attempt of one intent.
pub fn message_id(key: &str) -> String {
    format!(
        "<{}@certsentinel.invalid>",
        &hex::encode(Sha256::digest(key.as_bytes()))[..32]
    )
}

/// The Message-ID of the timeline e-mail a certificate's thread to a partner starts with.
pub fn thread_root(
    certificate: &CertificateKey,
    not_after: chrono::DateTime<chrono::Utc>,
    partner: &str,
) -> String {
    message_id(&format!(
        "{certificate}|partner@{}|{partner}:window",
        not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ))
}

impl Backend for EmailBackend {
    fn name(&self) -> &'static str {
        "email"
    }

    fn deliver<'a>(
        &'a self,
        intent: &'a Intent,
        _summary: &'a str,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(async move {
            let IntentKind::PartnerEmail {
                partner,
                email,
                not_after,
            } = &intent.kind
            else {
                return Ok("not for e-mail".to_string());
            };
            let message = self.message(intent, partner, email, *not_after)?;
            let id = message_id(&intent.key);
            self.transport.send(message).await.map_err(|e| {
                if e.is_permanent() {
                    DeliveryError::Permanent(e.to_string())
                } else {
                    DeliveryError::Transient(e.to_string())
                }
            })?;
            Ok(id)
        })
    }
}
