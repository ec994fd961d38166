//! Targeted re-reads: what a change event names (a certificate, a stage, a whole API) read
//! again through the API, and nothing else, so a change is seen within a second at a few calls
//! instead of a region's listing. The caller says what to read, including every stage the
//! stored records of the affected certificates name (this module knows no store); the answer
//! is a partial [`RegionInventory`] joined exactly as a scan joins one, plus what the service
//! said is gone.
//!
//! Like every read, a re-read answers found, gone (NotFound) or failed; a failure fails the
//! whole re-read, and nothing of it is decided.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::call::CallError;
use super::control_plane::ControlPlane;
use super::model::{Api, RegionInventory, Stage};
use super::owner::OwnershipRules;
use super::scan::{ReadCertificate, join};
use crate::ids::{StageKey, StageKind, arn_region, is_acm_arn};

/// What to read again in one account and region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Certificate ids (API Gateway) or ARNs (ACM).
    pub certificates: BTreeSet<String>,
    pub stages: BTreeSet<StageKey>,
    /// APIs read whole (every stage of them), by kind and id.
    pub apis: BTreeSet<(StageKind, String)>,
}

impl Wanted {
    /// Adds everything `other` wants.
    pub fn merge(&mut self, other: Wanted) {
        self.certificates.extend(other.certificates);
        self.stages.extend(other.stages);
        self.apis.extend(other.apis);
    }
}

/// What a targeted re-read found.
#[derive(Debug, Clone, Default)]
pub struct Reread {
    /// The stages read (with their owners' tags), the certificates wanted or named by those
    /// stages, joined as a scan joins them. Not a region's whole inventory.
    pub inventory: RegionInventory,
    /// Wanted stages the service said do not exist (the stage, or its API).
    pub gone_stages: HashSet<StageKey>,
    /// Wanted certificates the service said do not exist.
    pub gone_certificates: BTreeSet<String>,
}

/// Reads again what `wanted` names in `plane`'s account and region.
pub async fn reread(
    plane: &ControlPlane,
    rules: &OwnershipRules,
    wanted: &Wanted,
) -> Result<Reread, CallError> {
    let mut out = Reread::default();
    let mut by_api: BTreeMap<(StageKind, &str), Vec<&StageKey>> = BTreeMap::new();
    for (kind, id) in &wanted.apis {
        by_api.entry((*kind, id.as_str())).or_default();
    }
    for stage in &wanted.stages {
        by_api
            .entry((stage.kind, stage.api_id.as_str()))
            .or_default()
            .push(stage);
    }
    let mut apis: Vec<Api> = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ((kind, api_id), named) in by_api {
        let Some(api) = plane.get_api(kind, api_id).await? else {
            out.gone_stages.extend(named.into_iter().cloned());
            continue;
        };
        // A whole API: its listing; a stage named elsewhere that the listing lacks is read
        // on its own before it counts as gone (nothing is gone on a listing's word).
        let mut unread = named;
        if wanted.apis.contains(&(kind, api_id.to_string())) {
            let listed = plane.api_stages(&api).await?.unwrap_or_default();
            unread.retain(|k| !listed.iter().any(|s| &s.key == *k));
            stages.extend(listed);
        }
        for key in unread {
            match plane.get_stage(&api, &key.stage_name).await? {
                Some(stage) => stages.push(stage),
                None => {
                    out.gone_stages.insert(key.clone());
                }
            }
        }
        apis.push(api);
    }

    let mut listed = Vec::new();
    let mut acm: BTreeSet<&str> = BTreeSet::new();
    for id in &wanted.certificates {
        if is_acm_arn(id) {
            acm.insert(id);
        } else {
            match plane.certificate(id).await? {
                Some(raw) => listed.push(raw),
                None => {
                    out.gone_certificates.insert(id.clone());
                }
            }
        }
    }
    // Reading PEMs is CPU work, but a re-read holds a handful: no blocking thread needed.
    let listed = listed.into_iter().map(ReadCertificate::new).collect();
    let api_index: HashMap<(StageKind, &str), &Api> =
        apis.iter().map(|a| ((a.kind, a.id.as_str()), a)).collect();
    out.inventory = join(plane, rules, listed, &api_index, stages, &acm).await?;
    // An ARN of this region that ACM did not describe: ACM says it has no such certificate.
    out.gone_certificates.extend(
        acm.into_iter()
            .filter(|arn| arn_region(arn) == Some(plane.region.as_str()))
            .filter(|arn| !out.inventory.certificates.iter().any(|c| c.key.id == *arn))
            .map(str::to_string),
    );
    Ok(out)
}
