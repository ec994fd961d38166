//! Fixtures shared by the unit tests of every module: one fixed epoch, one account and region,
//! certificates and stages named by a short string. Compiled for tests only.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::ids::{CertificateKey, StageKey, StageKind};
use crate::lifecycle::{Observation, ObservationSource, RenewalOutlook, Seen, StageUser};

pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "eu-west-1";

/// `days` after 2026-01-01T00:00Z, to the minute.
pub fn at(days: f64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes((days * 1440.0) as i64)
}

/// Certificate `id` in `region` of the test account.
pub fn cert_in(region: &str, id: &str) -> CertificateKey {
    CertificateKey {
        account: ACCOUNT.into(),
        region: region.into(),
        id: id.into(),
    }
}

/// Certificate `id` in the test account and region.
pub fn cert(id: &str) -> CertificateKey {
    cert_in(REGION, id)
}

/// REST stage `name` of API `api-<name>` in `region`.
pub fn stage_in(region: &str, name: &str) -> StageKey {
    StageKey {
        account: ACCOUNT.into(),
        region: region.into(),
        kind: StageKind::Rest,
        api_id: format!("api-{name}"),
        stage_name: name.into(),
    }
}

/// REST stage `name` of API `api-<name>` in the test account and region.
pub fn stage(name: &str) -> StageKey {
    stage_in(REGION, name)
}

/// Stage `name` presenting a certificate for `owner`, with `partner` trusting it.
pub fn user(name: &str, owner: Option<&str>, partner: Option<&str>) -> StageUser {
    StageUser {
        stage: stage(name),
        api_name: format!("API {name}"),
        owner: owner.map(str::to_string),
        partner: partner.map(str::to_string),
    }
}

/// A full-scan observation of certificate `c` at day `t`, expiring at day `not_after`,
/// generated a year before it, presented by `users`.
pub fn present(c: &str, t: f64, not_after: f64, users: Vec<StageUser>) -> Observation {
    Observation {
        certificate: cert(c),
        observed_at: at(t),
        source: ObservationSource::FullScan,
        seen: Seen::Present {
            not_after: at(not_after),
            created_at: Some(at(not_after - 365.0)),
            renewal: RenewalOutlook::Manual,
            users,
            departed: BTreeMap::new(),
            successor: None,
        },
    }
}
