//! Who owns a stage, and which partner trusts it, from tags. Precedence: the stage's tags,
//! then its API's, then the certificate's; within a level, the configured keys in order.

use super::model::{Owner, TagLevel, Tags};
use crate::config::OwnershipSettings;

/// Resolves owners and partners with the configured tag keys.
#[derive(Debug, Clone)]
pub struct OwnershipRules {
    owner_keys: Vec<String>,
    partner_key: String,
    successor_key: String,
}

impl OwnershipRules {
    pub fn new(settings: &OwnershipSettings) -> Self {
        OwnershipRules {
            owner_keys: settings.owner_tag_keys.clone(),
            partner_key: settings.partner_tag_key.clone(),
            successor_key: settings.successor_tag_key.clone(),
        }
    }

    /// The id of the certificate a certificate's tags say it succeeds; blank does not count.
    pub fn successor_of(&self, certificate_tags: &Tags) -> Option<String> {
        certificate_tags
            .get(&self.successor_key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The owner named by one level's tags, if any; blank values do not count.
    pub fn owner_at(&self, level: TagLevel, tags: &Tags) -> Option<Owner> {
        self.owner_keys.iter().find_map(|key| {
            tags.get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|team| Owner {
                    team: team.to_string(),
                    level,
                    tag_key: key.clone(),
                })
        })
    }

    /// The owner of a stage: stage > API > certificate.
    pub fn owner(&self, stage: &Tags, api: &Tags, certificate: &Tags) -> Option<Owner> {
        self.owner_at(TagLevel::Stage, stage)
            .or_else(|| self.owner_at(TagLevel::Api, api))
            .or_else(|| self.owner_at(TagLevel::Certificate, certificate))
    }

    /// The partner named on the stage, else on its API.
    pub fn partner(&self, stage: &Tags, api: &Tags) -> Option<String> {
        [stage, api].into_iter().find_map(|tags| {
            tags.get(&self.partner_key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rules() -> OwnershipRules {
        OwnershipRules::new(&OwnershipSettings {
            owner_tag_keys: vec!["owner".into(), "team".into()],
            partner_tag_key: "partner".into(),
            successor_tag_key: "certsentinel:successor-of".into(),
        })
    }

    #[test]
    fn stage_beats_api_beats_certificate() {
        let r = rules();
        let stage = tags(&[("owner", "payments")]);
        let api = tags(&[("owner", "platform")]);
        let cert = tags(&[("owner", "security")]);
        let o = r.owner(&stage, &api, &cert).unwrap();
        assert_eq!((o.team.as_str(), o.level), ("payments", TagLevel::Stage));
        let o = r.owner(&Tags::new(), &api, &cert).unwrap();
        assert_eq!((o.team.as_str(), o.level), ("platform", TagLevel::Api));
        let o = r.owner(&Tags::new(), &Tags::new(), &cert).unwrap();
        assert_eq!(
            (o.team.as_str(), o.level),
            ("security", TagLevel::Certificate)
        );
        assert!(r.owner(&Tags::new(), &Tags::new(), &Tags::new()).is_none());
    }

    #[test]
    fn key_order_within_a_level_and_blank_values() {
        let r = rules();
        let o = r
            .owner(
                &tags(&[("team", "search"), ("owner", " ")]),
                &Tags::new(),
                &Tags::new(),
            )
            .unwrap();
        assert_eq!((o.team.as_str(), o.tag_key.as_str()), ("search", "team"));
    }

    #[test]
    fn partner_from_stage_then_api() {
        let r = rules();
        assert_eq!(
            r.partner(&Tags::new(), &tags(&[("partner", "acme")])),
            Some("acme".into())
        );
        assert_eq!(
            r.partner(
                &tags(&[("partner", "globex")]),
                &tags(&[("partner", "acme")])
            ),
            Some("globex".into())
        );
    }
}
