//! The seam between reading and deciding: what a complete scan of one account and region
//! found, turned into the engine's observations, and what ACM says of a certificate turned into
//! its renewal outlook. It owns that translation only. Pure: the caller supplies the previous
//! record (so the fate of a stage that stopped presenting a certificate can be told) and does
//! the store I/O. It sits after `inventory` and `lifecycle` in the flow, so neither of them
//! needs to know the other.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::ids::{CertificateKey, StageKey, is_acm_arn};
use crate::inventory::model::{Certificate, CertificateKind, RegionInventory, StageUse};
use crate::lifecycle::{
    CertState, CertificateRecord, Observation, ObservationSource, RenewalOutlook, Seen, StageFate,
    StageUser, Successor,
};

/// What a complete region scan says about every stage and certificate in it.
pub struct RegionIndex<'a> {
    /// Every stage read, with the certificate reference it presents (if any).
    stages: HashMap<&'a StageKey, Option<&'a str>>,
    /// Every certificate read, by id.
    certificates: HashMap<&'a str, &'a Certificate>,
    /// Stages whose reference resolves to nothing, by that reference.
    dangling: HashMap<&'a str, Vec<&'a StageUse>>,
    account: &'a str,
    region: &'a str,
    /// Stages absent from the listing that a targeted read confirmed gone.
    confirmed_gone: &'a HashSet<StageKey>,
    /// Certificates tagged as successors, by the id of the certificate each succeeds (the
    /// newest when several name the same one).
    successors: HashMap<&'a str, &'a Certificate>,
}

/// Stages a certificate's record names that the scan no longer lists, not yet confirmed gone
/// by a targeted read: until they are, nothing about them may be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDoubt(pub Vec<StageKey>);

impl<'a> RegionIndex<'a> {
    /// What `inventory` says; a stage it does not list counts as deleted only if it is in
    /// `confirmed_gone`.
    pub fn new(inventory: &'a RegionInventory, confirmed_gone: &'a HashSet<StageKey>) -> Self {
        RegionIndex {
            // Every stage read: those presenting a certificate are in its `used_by`.
            stages: inventory
                .stages
                .iter()
                .map(|s| (&s.key, s.certificate_ref.as_deref()))
                .chain(inventory.certificates.iter().flat_map(|c| {
                    c.used_by
                        .iter()
                        .map(move |u| (&u.stage, Some(c.key.id.as_str())))
                }))
                .collect(),
            certificates: inventory
                .certificates
                .iter()
                .map(|c| (c.key.id.as_str(), c))
                .collect(),
            dangling: inventory.dangling.iter().fold(HashMap::new(), |mut m, d| {
                m.entry(d.certificate_ref.as_str())
                    .or_insert_with(Vec::new)
                    .push(&d.stage);
                m
            }),
            account: &inventory.account,
            region: &inventory.region,
            confirmed_gone,
            successors: inventory
                .certificates
                .iter()
                .fold(HashMap::new(), |mut m, c| {
                    if let Some(of) = c.successor_of.as_deref() {
                        let newer = m
                            .get(of)
                            .is_none_or(|seen: &&Certificate| c.created_at > seen.created_at);
                        if newer {
                            m.insert(of, c);
                        }
                    }
                    m
                }),
        }
    }

    /// The successor the scan found for certificate `id`, if any.
    fn successor(&self, id: &str) -> Option<Successor> {
        self.successors.get(id).map(|c| Successor {
            certificate: c.key.clone(),
            not_after: c.not_after,
            pem: c.pem.clone(),
        })
    }

    /// Where a stage that no longer presents `certificate` went, when the scan can tell:
    /// deleted (confirmed), or switched to another certificate. `Ok(None)` when it now presents
    /// nothing, or a reference that resolves to nothing: that is no rotation. `Err` when the
    /// listing lacks it and no read has confirmed it gone.
    fn fate(
        &self,
        stage: &StageKey,
        certificate: &CertificateKey,
    ) -> Result<Option<StageFate>, StageKey> {
        Ok(match self.stages.get(stage) {
            None if self.confirmed_gone.contains(stage) => Some(StageFate::Deleted),
            None => return Err(stage.clone()),
            Some(Some(reference)) if self.dangling.contains_key(reference) => None,
            Some(Some(reference)) if *reference != certificate.id => Some(StageFate::SwitchedTo {
                certificate: CertificateKey {
                    account: self.account.to_string(),
                    region: self.region.to_string(),
                    id: reference.to_string(),
                },
                certificate_created_at: self.certificates.get(reference).and_then(|c| c.created_at),
                certificate_not_after: self.certificates.get(reference).and_then(|c| c.not_after),
            }),
            Some(_) => None,
        })
    }

    /// The fates of the stages in `before` that `now` lacks; every stage the listing lost and
    /// no read confirmed gone, as the doubt.
    fn departures<'u>(
        &self,
        before: impl Iterator<Item = &'u StageUser>,
        now: &[StageUser],
        certificate: &CertificateKey,
    ) -> Result<BTreeMap<StageKey, StageFate>, InDoubt> {
        let mut departed = BTreeMap::new();
        let mut doubts = Vec::new();
        for old in before.filter(|old| !now.iter().any(|u| u.stage == old.stage)) {
            match self.fate(&old.stage, certificate) {
                Ok(Some(fate)) => {
                    departed.insert(old.stage.clone(), fate);
                }
                Ok(None) => {}
                Err(stage) => doubts.push(stage),
            }
        }
        if doubts.is_empty() {
            Ok(departed)
        } else {
            Err(InDoubt(doubts))
        }
    }
}

fn stage_user(u: &StageUse) -> StageUser {
    StageUser {
        stage: u.stage.clone(),
        api_name: u.api_name.clone(),
        owner: u.owner.as_ref().map(|o| o.team.clone()),
        partner: u.partner.clone(),
    }
}

/// How a certificate gets renewed, from what ACM says of it.
pub fn renewal_outlook(kind: &CertificateKind) -> RenewalOutlook {
    match kind {
        CertificateKind::Acm {
            acm_type,
            renewal_eligible: true,
            renewal_status,
            ..
        } if acm_type == "PRIVATE" => RenewalOutlook::Managed {
            renewal_in_progress: matches!(
                renewal_status.as_deref(),
                Some("PENDING_AUTO_RENEWAL") | Some("PENDING_VALIDATION")
            ),
            renewal_failing: renewal_status.as_deref() == Some("FAILED"),
        },
        _ => RenewalOutlook::Manual,
    }
}

/// The observation of a certificate the scan read. `Ok(None)` when its expiry is unknown (no
/// readable date): the engine cannot judge it, and it is surely not gone. `Err` while a stage
/// it had is missing from the listing without a read confirming it gone.
pub fn present(
    certificate: &Certificate,
    index: &RegionIndex<'_>,
    previous: Option<&CertificateRecord>,
    observed_at: DateTime<Utc>,
) -> Result<Option<Observation>, InDoubt> {
    let Some(not_after) = certificate.not_after else {
        return Ok(None);
    };
    let users: Vec<StageUser> = certificate.used_by.iter().map(stage_user).collect();
    let before = previous.map(|r| r.users.as_slice()).unwrap_or_default();
    let departed = index.departures(before.iter(), &users, &certificate.key)?;
    Ok(Some(Observation {
        certificate: certificate.key.clone(),
        observed_at,
        source: ObservationSource::FullScan,
        seen: Seen::Present {
            not_after,
            created_at: certificate.created_at,
            renewal: renewal_outlook(&certificate.kind),
            users,
            departed,
            successor: index.successor(&certificate.key.id),
        },
    }))
}

/// The observation of a stored certificate that a complete scan of its region did not find.
///
/// A generated certificate missing from a complete listing is gone. An ACM certificate is read
/// only when a stage presents it, so its absence says only that no stage presents it any
/// more: it is observed present, with its last known expiry and no users.
pub fn missing(
    record: &CertificateRecord,
    index: &RegionIndex<'_>,
    observed_at: DateTime<Utc>,
) -> Result<Option<Observation>, InDoubt> {
    // Stages that still name it although it cannot be read depend on it whatever happened
    // to it: their owners' episodes stay open and an expiry is an incident. An ACM
    // certificate nobody names is unused, not gone (it was simply not read).
    let still_named = index.dangling.get(record.key.id.as_str());
    let seen = if still_named.is_some() || is_acm_arn(&record.key.id) {
        let users: Vec<StageUser> = still_named
            .map(|stages| stages.iter().copied().map(stage_user).collect())
            .unwrap_or_default();
        let departed = index.departures(record.users.iter(), &users, &record.key)?;
        let Some(not_after) = record.not_after else {
            return Ok(None);
        };
        Seen::Present {
            not_after,
            created_at: record.created_at,
            renewal: record.renewal.unwrap_or(RenewalOutlook::Manual),
            users,
            departed,
            successor: index.successor(&record.key.id),
        }
    } else {
        Seen::Gone
    };
    Ok(Some(Observation {
        certificate: record.key.clone(),
        observed_at,
        source: ObservationSource::FullScan,
        seen,
    }))
}

/// What `record` last knew, observed again at `t` without a read, for a certificate whose
/// account and region cannot be read: the same stages, the same expiry, nobody departed, so
/// that its steps and incident still come on time (marked unconfirmed) and nothing resolves.
/// `None` when nothing could escalate: deleted, presented by no stage, or no known expiry.
pub fn unconfirmed(record: &CertificateRecord, t: DateTime<Utc>) -> Option<Observation> {
    if record.state == CertState::Deleted || record.users.is_empty() {
        return None;
    }
    Some(Observation {
        certificate: record.key.clone(),
        observed_at: t,
        source: ObservationSource::Unconfirmed,
        seen: Seen::Present {
            not_after: record.not_after?,
            created_at: record.created_at,
            renewal: record.renewal.unwrap_or(RenewalOutlook::Manual),
            users: record.users.clone(),
            departed: BTreeMap::new(),
            successor: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::{DanglingReference, Stage};
    use crate::lifecycle::{Policy, decide};
    use crate::test_support::{at, cert as key, stage as named_stage};

    fn stage(api: &str, name: &str) -> StageKey {
        named_stage(&format!("{api}-{name}"))
    }

    fn cert(id: &str, users: Vec<StageKey>) -> Certificate {
        Certificate {
            key: key(id),
            kind: CertificateKind::Generated,
            description: None,
            created_at: Some(at(-365.0)),
            not_after: Some(at(365.0)),
            not_after_source: None,
            fingerprint_sha256: None,
            warnings: vec![],
            tags: Default::default(),
            certificate_owner: None,
            successor_of: None,
            pem: None,
            used_by: users
                .into_iter()
                .map(|s| StageUse {
                    stage: s,
                    api_name: "api".into(),
                    owner: None,
                    partner: None,
                })
                .collect(),
        }
    }

    #[test]
    fn departed_stages_are_told_apart() {
        let old = cert("old", vec![]);
        let new = cert("new", vec![stage("a", "prod")]);
        let inventory = RegionInventory {
            account: crate::test_support::ACCOUNT.into(),
            region: crate::test_support::REGION.into(),
            certificates: vec![old.clone(), new],
            stages: vec![
                Stage {
                    key: stage("a", "prod"),
                    api_name: "api".into(),
                    certificate_ref: Some("new".into()),
                    tags: Default::default(),
                },
                Stage {
                    key: stage("a", "dev"),
                    api_name: "api".into(),
                    certificate_ref: None,
                    tags: Default::default(),
                },
            ],
            dangling: vec![],
        };
        // beta was confirmed deleted by a targeted read.
        let confirmed = HashSet::from([stage("a", "beta")]);
        let index = RegionIndex::new(&inventory, &confirmed);
        let now = at(0.0);
        // Previously presented by prod (now switched), dev (now presents nothing) and beta
        // (deleted).
        let previous_obs = present(
            &cert(
                "old",
                vec![stage("a", "prod"), stage("a", "dev"), stage("a", "beta")],
            ),
            &index,
            None,
            now,
        )
        .unwrap()
        .unwrap();
        let previous = decide(None, &previous_obs, &Policy::default(), now).record;
        let obs = present(&old, &index, Some(&previous), now)
            .unwrap()
            .unwrap();
        let Seen::Present { departed, .. } = obs.seen else {
            panic!()
        };
        assert_eq!(departed.len(), 2);
        assert_eq!(departed[&stage("a", "beta")], StageFate::Deleted);
        assert!(matches!(
            &departed[&stage("a", "prod")],
            StageFate::SwitchedTo { certificate, certificate_created_at: Some(_), certificate_not_after: Some(_) } if certificate.id == "new"
        ));

        // Unconfirmed, beta's absence from the listing is a doubt, not a deletion: the
        // certificate is not observed at all.
        let unconfirmed = HashSet::new();
        let index = RegionIndex::new(&inventory, &unconfirmed);
        assert_eq!(
            present(&old, &index, Some(&previous), now),
            Err(InDoubt(vec![stage("a", "beta")]))
        );
    }

    #[test]
    fn a_deleted_certificate_that_a_stage_still_names_is_not_gone() {
        let now = at(0.0);
        let used = cert("old", vec![stage("a", "prod")]);
        let empty = RegionInventory {
            account: crate::test_support::ACCOUNT.into(),
            region: crate::test_support::REGION.into(),
            certificates: vec![used.clone()],
            stages: vec![],
            dangling: vec![],
        };
        let none = HashSet::new();
        let first = present(&used, &RegionIndex::new(&empty, &none), None, now)
            .unwrap()
            .unwrap();
        let record = decide(None, &first, &Policy::default(), now).record;
        // Deleted from API Gateway, while prod still names it.
        let after = RegionInventory {
            account: crate::test_support::ACCOUNT.into(),
            region: crate::test_support::REGION.into(),
            certificates: vec![],
            stages: vec![Stage {
                key: stage("a", "prod"),
                api_name: "api".into(),
                certificate_ref: Some("old".into()),
                tags: Default::default(),
            }],
            dangling: vec![DanglingReference {
                stage: used.used_by[0].clone(),
                certificate_ref: "old".into(),
                reason: "deleted".into(),
            }],
        };
        let obs = missing(&record, &RegionIndex::new(&after, &none), now)
            .unwrap()
            .unwrap();
        let Seen::Present {
            users, departed, ..
        } = obs.seen
        else {
            panic!(
                "a certificate a stage still names is not gone: {:?}",
                obs.seen
            )
        };
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].stage, stage("a", "prod"));
        assert!(departed.is_empty());

        // Without the dangling stage, the same absence is a deletion.
        let gone = RegionInventory {
            dangling: vec![],
            stages: vec![],
            ..after
        };
        assert_eq!(
            missing(&record, &RegionIndex::new(&gone, &none), now)
                .unwrap()
                .unwrap()
                .seen,
            Seen::Gone
        );
    }

    #[test]
    fn managed_renewal_only_for_eligible_private_acm() {
        let private = CertificateKind::Acm {
            acm_type: "PRIVATE".into(),
            status: None,
            renewal_eligible: true,
            renewal_status: Some("FAILED".into()),
        };
        assert_eq!(
            renewal_outlook(&private),
            RenewalOutlook::Managed {
                renewal_in_progress: false,
                renewal_failing: true
            }
        );
        let imported = CertificateKind::Acm {
            acm_type: "IMPORTED".into(),
            status: None,
            renewal_eligible: false,
            renewal_status: None,
        };
        assert_eq!(renewal_outlook(&imported), RenewalOutlook::Manual);
    }
}
