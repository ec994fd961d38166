//! The KPIs, computed one record at a time ([`ReportBuilder::add`]), so a report over a large
//! store never holds it whole.
//!
//! Definitions (DOMAIN.md, "The KPIs"):
//! - **Expiring within 30 days**: certificates a stage presents (now) with fewer than 30 days
//!   left; expired ones still presented count too, and are also counted apart.
//! - **Owner coverage**: of the certificates a stage presents, the share whose every such
//!   stage has an owner from tags.
//! - **MTTR**: of rotation episodes only (the owner's stages moved to a certificate outside
//!   the window, or the certificate was renewed in place), from when the episode opened to
//!   when it ended; an episode handed over by an owner change keeps its predecessor's start.
//!   Episodes ended otherwise (owner change, a switch to another expiring certificate, a
//!   deletion) are counted apart, never as fast rotations; open episodes are counted as open
//!   (censored), with their age, never as fast either. Grouped by the quarter it ended in.
//! - **Incidents**: certificates that expired while a stage presented them, once per
//!   certificate and expiry, in the quarter of the expiry (`not_after`), not of when it was
//!   noticed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

use crate::lifecycle::{
    CertState, CertificateRecord, Episode, Policy, Resolution, TransitionEvent,
};

/// What a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// Episodes that ended, and incidents that began, at or after this; `None`: from the start.
    pub since: Option<DateTime<Utc>>,
    /// ... and before this; `None`: until `now`.
    pub until: Option<DateTime<Utc>>,
    /// Only this team's episodes and certificates.
    pub team: Option<String>,
    /// The report's "now": the same records and `now` give the same report.
    pub now: DateTime<Utc>,
    /// The policy the records were decided by: its rotation window (an open episode no step
    /// fired for is at the window's opening), its escalation steps (the page's timeline) and
    /// its big-bang threshold.
    pub policy: Policy,
}

impl ReportOptions {
    /// Refuses a range that ends before it starts (it would make an empty report that looks
    /// like a quiet one).
    pub fn check(&self) -> Result<(), String> {
        let until = self.until.unwrap_or(self.now);
        match self.since {
            Some(since) if since >= until => Err(format!(
                "--since ({}) is not before --until ({})",
                since.to_rfc3339(),
                until.to_rfc3339()
            )),
            _ => Ok(()),
        }
    }
}

/// Mean, median and 90th percentile of durations, in hours, and how many they rest on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mttr {
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub episodes: usize,
}

impl Mttr {
    fn of(hours: &[f64]) -> Mttr {
        let mut sorted = hours.to_vec();
        sorted.sort_by(f64::total_cmp);
        let pick = |p: f64| -> Option<f64> {
            // Nearest rank: the smallest value with at least p of the values at or below it.
            let n = sorted.len();
            (n > 0).then(|| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Mttr {
            mean: (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64),
            median: pick(0.5),
            p90: pick(0.9),
            episodes: sorted.len(),
        }
    }
}

/// The four KPIs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    /// Certificates a stage presents with fewer than 30 days left (expired ones included).
    pub expiring_within_30_days: usize,
    /// ... of which already expired.
    pub expired_in_use: usize,
    /// Certificates a stage presents whose every such stage has an owner, in percent; `None`
    /// when no certificate is in use.
    pub owner_coverage_percent: Option<f64>,
    /// The certificates in use it rests on.
    pub certificates_in_use: usize,
    pub mttr_hours: Mttr,
    pub incidents: usize,
}

/// How episodes ended, beyond rotations: counted, never in the MTTR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Endings {
    pub rotated: usize,
    pub owner_changed: usize,
    pub switched_to_expiring: usize,
    pub deleted: usize,
    pub stopped_presenting: usize,
    /// Still open at `now` (censored): not in the MTTR.
    pub open: usize,
}

/// One team's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamRow {
    /// The owning team; `(no owner)` for stages without an owner tag.
    pub team: String,
    pub mttr_hours: Mttr,
    pub endings: Endings,
    /// The oldest open episode's age, hours.
    pub oldest_open_hours: Option<f64>,
    pub incidents: usize,
    /// Rotations in which a stage moved to a certificate younger than the big-bang threshold.
    pub big_bang_cut_overs: usize,
}

/// One quarter's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarterRow {
    /// `2026-Q4`.
    pub quarter: String,
    pub mttr_hours: Mttr,
    pub rotations: usize,
    pub incidents: usize,
}

/// One team in one quarter: what the MTTR chart shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamQuarterRow {
    pub team: String,
    pub quarter: String,
    pub mttr_hours: Mttr,
}

/// Open episodes that reached one escalation step (or none yet), counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenByStep {
    /// The most advanced step fired by `now`, as days left (the policy's `window_days` for
    /// the window's opening when no step fired yet); `null` for an incident (expired while
    /// presented).
    pub step_days: Option<u32>,
    pub episodes: usize,
    /// The oldest such episode's age, days.
    pub oldest_days: f64,
}

/// A certificate a stage presents that expires within the next 90 days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpcomingExpiry {
    pub team: String,
    /// `account/region/id`.
    pub certificate: String,
    pub not_after: DateTime<Utc>,
    pub days_left: i64,
}

/// A rotation in which stages moved to a certificate made only hours before: the backend had
/// little or no time to learn to trust it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BigBangCutOver {
    pub team: String,
    /// The certificate rotated away from, `account/region/id`.
    pub certificate: String,
    pub rotated_at: DateTime<Utc>,
    /// The youngest certificate a stage of the episode moved to, and its age then.
    pub new_certificate: String,
    pub new_certificate_age_hours: i64,
    /// How many of the episode's stages moved to a certificate that young.
    pub stages: usize,
}

/// What a partner's trust store waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// The certificate is at risk and no successor was announced: nothing to add yet.
    Successor,
    /// The successor's PEM was sent: the partner must trust it before the cut-over.
    CutOver,
    /// The stages moved on; the old certificate may leave the trust store only once the
    /// stabilisation period ends.
    Removal,
}

/// A partner whose trust store has an update ahead, as of `now`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartnerWaiting {
    pub partner: String,
    pub team: String,
    /// `account/region/id`.
    pub certificate: String,
    pub waiting_for: Waiting,
    /// Since when: the episode's opening, the successor's announcement, or the cut-over.
    pub since: DateTime<Utc>,
    pub not_after: Option<DateTime<Utc>>,
}

/// A backend that refused an intent for good: it waits for `certsentinel notify --retry`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedDelivery {
    pub backend: String,
    /// The intent's idempotency key.
    pub intent: String,
    /// `account/region/id`.
    pub certificate: String,
    pub team: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub now: DateTime<Utc>,
    pub since: Option<DateTime<Utc>>,
    pub until: DateTime<Utc>,
    pub team: Option<String>,
    pub kpis: Kpis,
    pub teams: Vec<TeamRow>,
    pub quarters: Vec<QuarterRow>,
    pub team_quarters: Vec<TeamQuarterRow>,
    /// Open episodes by the escalation step they reached; incidents (`null`) first.
    pub open_by_step: Vec<OpenByStep>,
    /// What expires in the next 90 days, by team, soonest first: the timeline.
    pub upcoming_expiries: Vec<UpcomingExpiry>,
    /// Rotations (ended in the range) that were big-bang cut-overs, latest first.
    pub big_bang_cut_overs: Vec<BigBangCutOver>,
    /// Partners with a trust-store update ahead, as of `now`.
    pub partners_waiting: Vec<PartnerWaiting>,
    /// Deliveries refused for good and not yet retried; `None` when the source has no outbox
    /// (a `state export` file holds records only).
    pub failed_deliveries: Option<Vec<FailedDelivery>>,
    /// Certificates last observed after `now`: what a report as of a past date takes from
    /// their latest observation (in use, expiring, owner coverage, the timeline) is later
    /// than `now`. Zero for a report as of the present.
    pub observed_after_now: usize,
    /// The policy it was made with (for the page's thresholds); not part of the JSON.
    #[serde(skip)]
    pub policy: Policy,
}

/// The owner name reports use for stages without an owner tag.
pub const NO_OWNER: &str = "(no owner)";

/// `2026-Q4` for a time in October to December 2026.
pub fn quarter_of(t: DateTime<Utc>) -> String {
    format!("{}-Q{}", t.year(), t.month0() / 3 + 1)
}

fn hours(d: Duration) -> f64 {
    d.num_seconds() as f64 / 3600.0
}

#[derive(Default)]
struct TeamAcc {
    endings: Endings,
    rotations: Vec<f64>,
    oldest_open: Option<f64>,
    incidents: usize,
    big_bang: usize,
}

/// Builds a report one record at a time.
pub struct ReportBuilder {
    options: ReportOptions,
    until: DateTime<Utc>,
    expiring: usize,
    expired: usize,
    in_use: usize,
    owned: usize,
    teams: BTreeMap<String, TeamAcc>,
    /// Rotation durations (hours) by quarter, and by (team, quarter).
    by_quarter: BTreeMap<String, Vec<f64>>,
    by_team_quarter: BTreeMap<(String, String), Vec<f64>>,
    incidents_by_quarter: BTreeMap<String, usize>,
    incidents: usize,
    /// By step (`None`: an incident): how many, the oldest age in days.
    open_by_step: BTreeMap<Option<u32>, (usize, f64)>,
    upcoming: Vec<UpcomingExpiry>,
    big_bang: Vec<BigBangCutOver>,
    partners: Vec<PartnerWaiting>,
    failed: Option<Vec<FailedDelivery>>,
    observed_after_now: usize,
}

/// How far ahead the expiry timeline looks.
const UPCOMING_DAYS: i64 = 90;

impl ReportBuilder {
    pub fn new(options: ReportOptions) -> ReportBuilder {
        ReportBuilder {
            until: options.until.unwrap_or(options.now),
            options,
            expiring: 0,
            expired: 0,
            in_use: 0,
            owned: 0,
            teams: BTreeMap::new(),
            by_quarter: BTreeMap::new(),
            by_team_quarter: BTreeMap::new(),
            incidents_by_quarter: BTreeMap::new(),
            incidents: 0,
            open_by_step: BTreeMap::new(),
            upcoming: Vec::new(),
            big_bang: Vec::new(),
            partners: Vec::new(),
            failed: None,
            observed_after_now: 0,
        }
    }

    /// Adds a delivery refused for good (from the outbox). A report to which none is added,
    /// not even an empty list through [`ReportBuilder::outbox_read`], says failed deliveries
    /// are unknown rather than none.
    pub fn add_failed_delivery(&mut self, failed: FailedDelivery) {
        if self.wanted(&failed.team) && failed.at <= self.options.now {
            self.failed.get_or_insert_with(Vec::new).push(failed);
        }
    }

    /// Says the outbox was read, so no failed delivery added means none.
    pub fn outbox_read(&mut self) {
        self.failed.get_or_insert_with(Vec::new);
    }

    fn in_range(&self, t: DateTime<Utc>) -> bool {
        self.options.since.is_none_or(|s| t >= s) && t < self.until
    }

    fn wanted(&self, owner: &str) -> bool {
        self.options.team.as_deref().is_none_or(|t| t == owner)
    }

    /// Adds what one record says.
    pub fn add(&mut self, record: &CertificateRecord) {
        self.add_current(record);
        let mut incident_teams: BTreeSet<String> = BTreeSet::new();
        let mut incident_at: Option<DateTime<Utc>> = None;
        for episode in &record.episodes {
            let team = episode.owner.clone().unwrap_or_else(|| NO_OWNER.into());
            if let Some(incident) = &episode.incident {
                incident_at = Some(incident.started_at);
                incident_teams.insert(team.clone());
            }
            if !self.wanted(&team) {
                continue;
            }
            self.add_partners(record, episode, &team);
            self.add_episode(record, episode, team);
        }
        // One incident per certificate and expiry, whoever's stages presented it.
        if let Some(at) = incident_at
            && self.in_range(at)
            && incident_teams.iter().any(|t| self.wanted(t))
        {
            self.incidents += 1;
            *self.incidents_by_quarter.entry(quarter_of(at)).or_insert(0) += 1;
            let teams: Vec<String> = incident_teams
                .into_iter()
                .filter(|t| self.wanted(t))
                .collect();
            for team in teams {
                self.teams.entry(team).or_default().incidents += 1;
            }
        }
    }

    /// The certificate as last observed: in use, expiring, owned. A record observed after the
    /// report's `now` is counted apart, so a report as of a past date says how many of these
    /// figures describe a later observation.
    fn add_current(&mut self, record: &CertificateRecord) {
        if record.last_observed_at > self.options.now {
            self.observed_after_now += 1;
        }
        if record.state == CertState::Deleted || !record.in_use() {
            return;
        }
        let owners: Vec<&str> = record
            .users
            .iter()
            .map(|u| u.owner.as_deref().unwrap_or(NO_OWNER))
            .collect();
        if !owners.iter().any(|o| self.wanted(o)) {
            return;
        }
        self.in_use += 1;
        if record.users.iter().all(|u| u.owner.is_some()) {
            self.owned += 1;
        }
        let Some(not_after) = record.not_after else {
            return;
        };
        let left = not_after - self.options.now;
        if left < Duration::days(30) {
            self.expiring += 1;
            if not_after <= self.options.now {
                self.expired += 1;
            }
        }
        if left >= Duration::zero() && left < Duration::days(UPCOMING_DAYS) {
            let mut teams: Vec<&str> = owners.into_iter().filter(|o| self.wanted(o)).collect();
            teams.sort_unstable();
            teams.dedup();
            for team in teams {
                self.upcoming.push(UpcomingExpiry {
                    team: team.to_string(),
                    certificate: record.key.to_string(),
                    not_after,
                    days_left: crate::lifecycle::days_left(not_after, self.options.now),
                });
            }
        }
    }

    fn add_episode(&mut self, record: &CertificateRecord, episode: &Episode, team: String) {
        let now = self.options.now;
        if episode.detected_at > now {
            // Not yet begun as of the report's `now`.
            return;
        }
        let Some(resolved_at) = episode.resolved_at.filter(|at| *at <= now) else {
            // Open (censored): its age so far, never a duration.
            let age = hours(now - handed_over_start(record, episode));
            let acc = self.teams.entry(team).or_default();
            acc.endings.open += 1;
            acc.oldest_open = Some(acc.oldest_open.map_or(age, |o: f64| o.max(age)));
            // What had happened by `now`: steps fired and an incident seen by then.
            let step = match episode.incident.as_ref().filter(|i| i.detected_at <= now) {
                Some(_) => None,
                None => Some(
                    episode
                        .steps
                        .iter()
                        .filter(|s| s.at <= now)
                        .map(|s| s.days_left)
                        .min()
                        .unwrap_or(self.options.policy.window_days),
                ),
            };
            let (count, oldest) = self.open_by_step.entry(step).or_insert((0, 0.0));
            *count += 1;
            *oldest = oldest.max(age / 24.0);
            return;
        };
        if !self.in_range(resolved_at) {
            return;
        }
        let acc = self.teams.entry(team.clone()).or_default();
        match episode.resolution.as_ref() {
            Some(Resolution::SwitchedTo {
                still_at_risk: false,
                ..
            })
            | Some(Resolution::Renewed { .. }) => {
                let took = hours(resolved_at - handed_over_start(record, episode));
                acc.endings.rotated += 1;
                acc.rotations.push(took);
                if let Some(cut_over) = big_bang(
                    record,
                    episode,
                    &team,
                    resolved_at,
                    self.options.policy.big_bang_hours,
                ) {
                    acc.big_bang += 1;
                    self.big_bang.push(cut_over);
                }
                let quarter = quarter_of(resolved_at);
                self.by_quarter
                    .entry(quarter.clone())
                    .or_default()
                    .push(took);
                self.by_team_quarter
                    .entry((team, quarter))
                    .or_default()
                    .push(took);
            }
            Some(Resolution::SwitchedTo {
                still_at_risk: true,
                ..
            }) => acc.endings.switched_to_expiring += 1,
            Some(Resolution::OwnerChanged { .. }) => acc.endings.owner_changed += 1,
            Some(Resolution::StageDeleted) | Some(Resolution::CertificateDeleted) => {
                acc.endings.deleted += 1
            }
            Some(Resolution::StoppedPresenting) | None => acc.endings.stopped_presenting += 1,
        }
    }

    /// The partners of `episode` whose trust store has an update ahead, as of `now`.
    fn add_partners(&mut self, record: &CertificateRecord, episode: &Episode, team: &str) {
        let now = self.options.now;
        if episode.partners.is_empty() || episode.detected_at > now {
            return;
        }
        let waiting = match episode.resolved_at.filter(|at| *at <= now) {
            None => {
                let announced = record.history.iter().find(|t| {
                    t.at <= now
                        && matches!(t.event, TransitionEvent::SuccessorAnnounced { episode: id, .. } if id == episode.id)
                });
                match announced {
                    Some(t) => (Waiting::CutOver, t.at),
                    None => (Waiting::Successor, episode.detected_at),
                }
            }
            Some(resolved_at) => {
                // Released with the clean-up reminder, or when the certificate is deleted.
                let released = [episode.cleanup_reminded_at, episode.cleanup_done_at]
                    .into_iter()
                    .flatten()
                    .any(|at| at <= now);
                let moved_on = matches!(episode.resolution, Some(Resolution::SwitchedTo { .. }));
                if released || !moved_on {
                    return;
                }
                (Waiting::Removal, resolved_at)
            }
        };
        for partner in &episode.partners {
            self.partners.push(PartnerWaiting {
                partner: partner.clone(),
                team: team.to_string(),
                certificate: record.key.to_string(),
                waiting_for: waiting.0,
                since: waiting.1,
                not_after: record.not_after,
            });
        }
    }

    pub fn finish(self) -> Report {
        let all: Vec<f64> = self
            .teams
            .values()
            .flat_map(|t| t.rotations.iter().copied())
            .collect();
        let mut quarters: BTreeSet<String> = self.by_quarter.keys().cloned().collect();
        quarters.extend(self.incidents_by_quarter.keys().cloned());
        Report {
            now: self.options.now,
            since: self.options.since,
            until: self.until,
            team: self.options.team.clone(),
            kpis: Kpis {
                expiring_within_30_days: self.expiring,
                expired_in_use: self.expired,
                owner_coverage_percent: (self.in_use > 0)
                    .then(|| 100.0 * self.owned as f64 / self.in_use as f64),
                certificates_in_use: self.in_use,
                mttr_hours: Mttr::of(&all),
                incidents: self.incidents,
            },
            teams: self
                .teams
                .iter()
                .map(|(team, acc)| TeamRow {
                    team: team.clone(),
                    mttr_hours: Mttr::of(&acc.rotations),
                    endings: acc.endings.clone(),
                    oldest_open_hours: acc.oldest_open,
                    incidents: acc.incidents,
                    big_bang_cut_overs: acc.big_bang,
                })
                .collect(),
            quarters: quarters
                .into_iter()
                .map(|quarter| {
                    let rotations = self.by_quarter.get(&quarter).map_or(&[][..], |v| v);
                    QuarterRow {
                        mttr_hours: Mttr::of(rotations),
                        rotations: rotations.len(),
                        incidents: self
                            .incidents_by_quarter
                            .get(&quarter)
                            .copied()
                            .unwrap_or(0),
                        quarter,
                    }
                })
                .collect(),
            team_quarters: self
                .by_team_quarter
                .iter()
                .map(|((team, quarter), v)| TeamQuarterRow {
                    team: team.clone(),
                    quarter: quarter.clone(),
                    mttr_hours: Mttr::of(v),
                })
                .collect(),
            open_by_step: self
                .open_by_step
                .iter()
                .map(|(step, (episodes, oldest))| OpenByStep {
                    step_days: *step,
                    episodes: *episodes,
                    oldest_days: *oldest,
                })
                .collect(),
            upcoming_expiries: {
                let mut upcoming = self.upcoming;
                upcoming.sort_by(|a, b| {
                    (a.not_after, &a.team, &a.certificate).cmp(&(
                        b.not_after,
                        &b.team,
                        &b.certificate,
                    ))
                });
                upcoming
            },
            big_bang_cut_overs: {
                let mut rows = self.big_bang;
                rows.sort_by(|a, b| {
                    (b.rotated_at, &a.team, &a.certificate).cmp(&(
                        a.rotated_at,
                        &b.team,
                        &b.certificate,
                    ))
                });
                rows
            },
            partners_waiting: {
                let mut rows = self.partners;
                rows.sort_by(|a, b| {
                    (a.waiting_for, a.since, &a.partner, &a.certificate).cmp(&(
                        b.waiting_for,
                        b.since,
                        &b.partner,
                        &b.certificate,
                    ))
                });
                rows
            },
            observed_after_now: self.observed_after_now,
            policy: self.options.policy.clone(),
            failed_deliveries: self.failed.map(|mut rows| {
                rows.sort_by(|a, b| {
                    (a.at, &a.intent, &a.backend).cmp(&(b.at, &b.intent, &b.backend))
                });
                rows
            }),
        }
    }
}

/// The big-bang cut-over in a rotated `episode`, if a stage moved to a certificate younger
/// than `threshold_hours`. Departures recorded before their age was kept do not count.
fn big_bang(
    record: &CertificateRecord,
    episode: &Episode,
    team: &str,
    rotated_at: DateTime<Utc>,
    threshold_hours: u32,
) -> Option<BigBangCutOver> {
    let young: Vec<_> = episode
        .departures
        .iter()
        .filter_map(|d| match (&d.how, d.new_certificate_age_hours) {
            (Resolution::SwitchedTo { certificate, .. }, Some(age))
                if age < i64::from(threshold_hours) =>
            {
                Some((certificate, age))
            }
            _ => None,
        })
        .collect();
    let (youngest, age) = young.iter().min_by_key(|(_, age)| *age)?;
    Some(BigBangCutOver {
        team: team.to_string(),
        certificate: record.key.to_string(),
        rotated_at,
        new_certificate: youngest.to_string(),
        new_certificate_age_hours: *age,
        stages: young.len(),
    })
}

/// When the work on `episode` began: its own start, or, when it took over from another
/// owner's episode on the same certificate (ended by an owner change to this owner when this
/// one opened), that episode's start, and so on back.
fn handed_over_start(record: &CertificateRecord, episode: &Episode) -> DateTime<Utc> {
    let mut start = episode.detected_at;
    let mut current = episode;
    // Each step goes to an earlier episode: bounded by their number.
    for _ in 0..record.episodes.len() {
        let before = record.episodes.iter().find(|p| {
            p.id < current.id
                && p.resolved_at == Some(current.detected_at)
                && matches!(&p.resolution, Some(Resolution::OwnerChanged { to }) if *to == current.owner)
        });
        match before {
            Some(p) => {
                start = p.detected_at;
                current = p;
            }
            None => break,
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Incident, StageDeparture, StageUser};
    use crate::test_support::{at, cert, stage};
    use std::collections::BTreeSet;

    fn episode(id: u32, owner: Option<&str>, detected: f64) -> Episode {
        Episode::opened(
            id,
            owner.map(str::to_string),
            BTreeSet::new(),
            BTreeSet::new(),
            at(detected),
            at(detected + 60.0),
        )
    }

    fn ended(mut e: Episode, at_day: f64, how: Resolution) -> Episode {
        e.resolved_at = Some(at(at_day));
        e.resolution = Some(how);
        e
    }

    fn rotated() -> Resolution {
        Resolution::SwitchedTo {
            certificate: cert("next"),
            still_at_risk: false,
        }
    }

    fn record(
        id: &str,
        not_after: f64,
        users: &[Option<&str>],
        episodes: Vec<Episode>,
    ) -> CertificateRecord {
        let mut r = crate::lifecycle::decide(
            None,
            &crate::test_support::present(id, 0.0, not_after, vec![]),
            &crate::lifecycle::Policy::default(),
            at(0.0),
        )
        .record;
        r.users = users
            .iter()
            .enumerate()
            .map(|(i, o)| StageUser {
                stage: stage(&format!("{id}-{i}")),
                api_name: "api".into(),
                owner: o.map(str::to_string),
                partner: None,
            })
            .collect();
        r.state = if users.is_empty() {
            CertState::Unused
        } else {
            CertState::Healthy
        };
        r.episodes = episodes;
        r
    }

    fn report(records: &[CertificateRecord], options: ReportOptions) -> Report {
        let mut b = ReportBuilder::new(options);
        for r in records {
            b.add(r);
        }
        b.finish()
    }

    fn options(now: f64) -> ReportOptions {
        ReportOptions {
            since: None,
            until: None,
            team: None,
            now: at(now),
            policy: Policy::default(),
        }
    }

    #[test]
    fn a_range_that_ends_before_it_starts_is_refused_and_dates_stay_in_four_digit_years() {
        let backwards = ReportOptions {
            since: Some(at(10.0)),
            until: Some(at(5.0)),
            ..options(20.0)
        };
        assert!(backwards.check().unwrap_err().contains("is not before"));
        assert!(options(20.0).check().is_ok());
        assert!(crate::report::parse_time("0001-01-01").is_err());
        assert!(crate::report::parse_time("-262143-01-01").is_err());
        assert!(crate::report::parse_time("2026-10-01").is_ok());
        assert!(crate::report::parse_time("2026-10-01T12:00:00+02:00").is_ok());
    }

    #[test]
    fn a_report_as_of_a_past_date_counts_what_was_observed_after_it_and_no_later_step() {
        let mut ep = episode(1, Some("search"), 10.0);
        ep.steps = vec![
            crate::lifecycle::StepFired {
                days_left: 30,
                at: at(40.0),
            },
            crate::lifecycle::StepFired {
                days_left: 14,
                at: at(56.0),
            },
        ];
        let mut r = record("c1", 70.0, &[Some("search")], vec![ep]);
        r.last_observed_at = at(60.0);
        let then = report(std::slice::from_ref(&r), options(45.0));
        assert_eq!(then.observed_after_now, 1);
        assert_eq!(
            then.open_by_step
                .iter()
                .map(|o| o.step_days)
                .collect::<Vec<_>>(),
            [Some(30)],
            "the 14-day step fired after day 45"
        );
        assert_eq!(report(&[r], options(61.0)).observed_after_now, 0);
    }

    #[test]
    fn percentiles_are_nearest_rank_and_say_how_many_they_rest_on() {
        let m = Mttr::of(&[10.0, 1.0, 4.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!((m.median, m.p90, m.episodes), (Some(5.0), Some(9.0), 10));
        assert_eq!(m.mean, Some(5.5));
        let none = Mttr::of(&[]);
        assert_eq!(
            (none.mean, none.median, none.p90, none.episodes),
            (None, None, None, 0)
        );
        let one = Mttr::of(&[7.0]);
        assert_eq!(
            (one.mean, one.median, one.p90),
            (Some(7.0), Some(7.0), Some(7.0))
        );
    }

    #[test]
    fn the_kpis_of_a_constructed_history_are_the_known_answers() {
        // `at(d)` is day d from T0 (2025-01-01 or so; quarters follow from it).
        let records = vec![
            // Payments rotated c1 in 2 days; c1 is unused now.
            record(
                "c1",
                60.0,
                &[],
                vec![ended(episode(1, Some("payments"), 0.0), 2.0, rotated())],
            ),
            // Search: one rotation of 4 days, one open episode (censored), in use, 10 days left.
            record(
                "c2",
                110.0,
                &[Some("search")],
                vec![
                    ended(episode(1, Some("search"), 10.0), 14.0, rotated()),
                    episode(2, Some("search"), 90.0),
                ],
            ),
            // An owner change hands c3 from payments to search: the clock runs on, 6 days in
            // all, counted for search; payments' episode is not a rotation.
            record(
                "c3",
                400.0,
                &[Some("search")],
                vec![
                    ended(
                        episode(1, Some("payments"), 20.0),
                        23.0,
                        Resolution::OwnerChanged {
                            to: Some("search".into()),
                        },
                    ),
                    ended(episode(2, Some("search"), 23.0), 26.0, rotated()),
                ],
            ),
            // Switched to another expiring certificate, and a deleted stage: counted apart.
            record(
                "c4",
                500.0,
                &[None],
                vec![
                    ended(
                        episode(1, Some("payments"), 30.0),
                        31.0,
                        Resolution::SwitchedTo {
                            certificate: cert("also-expiring"),
                            still_at_risk: true,
                        },
                    ),
                    ended(episode(2, None, 30.0), 32.0, Resolution::StageDeleted),
                ],
            ),
        ];
        let r = report(&records, options(100.0));
        // c2 (10 days left) is expiring; c4 is in use without an owner.
        assert_eq!(r.kpis.expiring_within_30_days, 1);
        assert_eq!(r.kpis.certificates_in_use, 3);
        assert_eq!(r.kpis.owner_coverage_percent, Some(200.0 / 3.0));
        // Rotations: 2, 4 and 6 days.
        assert_eq!(r.kpis.mttr_hours.episodes, 3);
        assert_eq!(r.kpis.mttr_hours.mean, Some(96.0));
        assert_eq!(r.kpis.mttr_hours.median, Some(96.0));
        assert_eq!(r.kpis.mttr_hours.p90, Some(144.0));
        let team = |name: &str| r.teams.iter().find(|t| t.team == name).unwrap();
        assert_eq!(team("payments").endings.rotated, 1);
        assert_eq!(team("payments").endings.owner_changed, 1);
        assert_eq!(team("payments").endings.switched_to_expiring, 1);
        assert_eq!(team("search").endings.rotated, 2);
        assert_eq!(team("search").endings.open, 1);
        assert_eq!(team("search").oldest_open_hours, Some(240.0));
        assert_eq!(
            team("search").mttr_hours.median,
            Some(96.0),
            "4 and 6 days: nearest rank"
        );
        assert_eq!(team(NO_OWNER).endings.deleted, 1);
        assert_eq!(
            team("payments").mttr_hours.episodes,
            1,
            "a team with one episode"
        );
        assert_eq!(r.kpis.incidents, 0);
        // Search's open episode reached no step yet: the window's opening, 10 days old.
        assert_eq!(
            r.open_by_step,
            vec![OpenByStep {
                step_days: Some(60),
                episodes: 1,
                oldest_days: 10.0
            }]
        );
        // c2 expires within 90 days (10 days left), for search; the others later.
        assert_eq!(r.upcoming_expiries.len(), 1);
        assert_eq!(r.upcoming_expiries[0].team, "search");
        assert_eq!(r.upcoming_expiries[0].days_left, 10);
    }

    #[test]
    fn an_expiry_between_scans_is_an_incident_of_the_quarter_it_expired_in() {
        let mut e = episode(1, Some("payments"), 0.0);
        // Expired at day 85, noticed at day 95: the quarter is day 85's.
        e.incident = Some(Incident {
            started_at: at(85.0),
            detected_at: at(95.0),
        });
        let mut other = episode(2, Some("search"), 0.0);
        other.incident = e.incident.clone();
        let records = vec![record(
            "c1",
            85.0,
            &[Some("payments"), Some("search")],
            vec![e, other],
        )];
        let r = report(&records, options(200.0));
        assert_eq!(
            r.kpis.incidents, 1,
            "once per certificate, whoever's stages"
        );
        assert_eq!(r.kpis.expired_in_use, 1);
        let q = r.quarters.iter().find(|q| q.incidents == 1).unwrap();
        assert_eq!(q.quarter, quarter_of(at(85.0)));
        assert_ne!(
            quarter_of(at(85.0)),
            quarter_of(at(95.0)),
            "the fixture spans a quarter end"
        );
        // A team filter keeps what concerns that team.
        let only = report(
            &records,
            ReportOptions {
                team: Some("search".into()),
                ..options(200.0)
            },
        );
        assert_eq!(only.kpis.incidents, 1);
        assert_eq!(only.teams.len(), 1);
        assert_eq!(only.teams[0].incidents, 1);
        assert_eq!(
            only.open_by_step,
            vec![OpenByStep {
                step_days: None,
                episodes: 1,
                oldest_days: 200.0
            }],
            "an incident, not a step"
        );
        assert!(only.upcoming_expiries.is_empty(), "already expired");
    }

    #[test]
    fn a_range_and_now_make_the_report_reproducible_and_quarters_without_data_are_absent() {
        let records = vec![record(
            "c1",
            1000.0,
            &[Some("payments")],
            vec![
                ended(episode(1, Some("payments"), 0.0), 1.0, rotated()),
                ended(episode(2, Some("payments"), 300.0), 303.0, rotated()),
            ],
        )];
        let all = report(&records, options(400.0));
        assert_eq!(all.kpis.mttr_hours.episodes, 2);
        assert_eq!(
            all.quarters.len(),
            2,
            "only quarters with data: {:?}",
            all.quarters
        );
        let later = report(
            &records,
            ReportOptions {
                since: Some(at(100.0)),
                ..options(400.0)
            },
        );
        assert_eq!(later.kpis.mttr_hours.episodes, 1);
        assert_eq!(later.kpis.mttr_hours.mean, Some(72.0));
        // As of day 200, the second episode had not even begun.
        let then = report(&records, options(200.0));
        assert_eq!(then.kpis.mttr_hours.episodes, 1);
        assert_eq!(
            report(&records, options(400.0)),
            all,
            "same records, same now, same report"
        );
    }

    fn switched(stage_name: &str, day: f64, to: &str, age_hours: Option<i64>) -> StageDeparture {
        StageDeparture {
            stage: stage(stage_name),
            at: at(day),
            how: Resolution::SwitchedTo {
                certificate: cert(to),
                still_at_risk: false,
            },
            new_certificate_age_hours: age_hours,
        }
    }

    #[test]
    fn big_bang_cut_overs_are_rotations_to_a_certificate_hours_old() {
        let mut hasty = ended(episode(1, Some("payments"), 0.0), 5.0, rotated());
        hasty.departures = vec![
            switched("s1", 4.0, "new-a", Some(30)),
            switched("s2", 5.0, "new-b", Some(2)),
            switched("s3", 5.0, "new-b", Some(23)),
        ];
        let mut careful = ended(episode(1, Some("search"), 0.0), 5.0, rotated());
        careful.departures = vec![switched("s4", 5.0, "new-c", Some(24))];
        // Recorded before the age was kept: unknown, so not counted.
        let mut old = ended(episode(1, Some("search"), 10.0), 12.0, rotated());
        old.departures = vec![switched("s5", 12.0, "new-d", None)];
        let records = vec![
            record("c1", 60.0, &[], vec![hasty]),
            record("c2", 60.0, &[], vec![careful]),
            record("c3", 70.0, &[], vec![old]),
        ];
        let r = report(&records, options(30.0));
        assert_eq!(r.kpis.mttr_hours.episodes, 3, "all three are rotations");
        assert_eq!(r.big_bang_cut_overs.len(), 1);
        let b = &r.big_bang_cut_overs[0];
        assert_eq!(
            (b.team.as_str(), b.new_certificate_age_hours, b.stages),
            ("payments", 2, 2),
            "the youngest, and both stages under 24 h"
        );
        assert_eq!(b.new_certificate, cert("new-b").to_string());
        let teams: Vec<(&str, usize)> = r
            .teams
            .iter()
            .map(|t| (t.team.as_str(), t.big_bang_cut_overs))
            .collect();
        assert_eq!(teams, [("payments", 1), ("search", 0)]);
        // A stricter policy (12 h) still counts the 2-hour-old one; a laxer one (48 h) also
        // the 24-hour-old one.
        let strict = report(
            &records,
            ReportOptions {
                policy: Policy {
                    big_bang_hours: 12,
                    ..Policy::default()
                },
                ..options(30.0)
            },
        );
        assert_eq!(strict.big_bang_cut_overs.len(), 1);
        let lax = report(
            &records,
            ReportOptions {
                policy: Policy {
                    big_bang_hours: 48,
                    ..Policy::default()
                },
                ..options(30.0)
            },
        );
        assert_eq!(lax.big_bang_cut_overs.len(), 2);
        // A switch to another expiring certificate is no rotation, hence no big-bang one.
        let mut to_expiring = ended(
            episode(1, Some("payments"), 0.0),
            5.0,
            Resolution::SwitchedTo {
                certificate: cert("x"),
                still_at_risk: true,
            },
        );
        to_expiring.departures = vec![switched("s1", 5.0, "x", Some(1))];
        let r = report(&[record("c9", 60.0, &[], vec![to_expiring])], options(30.0));
        assert!(r.big_bang_cut_overs.is_empty());
    }

    #[test]
    fn partners_wait_for_the_successor_then_the_cut_over_then_the_removal_as_of_now() {
        let mut ep = episode(1, Some("payments"), 0.0);
        ep.partners = ["acme".to_string()].into();
        let mut c1 = record("c1", 60.0, &[Some("payments")], vec![ep.clone()]);
        let as_of = |rec: &CertificateRecord, now: f64| -> Vec<(Waiting, DateTime<Utc>)> {
            report(std::slice::from_ref(rec), options(now))
                .partners_waiting
                .iter()
                .map(|p| (p.waiting_for, p.since))
                .collect()
        };
        assert_eq!(as_of(&c1, 1.0), [(Waiting::Successor, at(0.0))]);
        c1.history.push(crate::lifecycle::Transition {
            at: at(3.0),
            event: TransitionEvent::SuccessorAnnounced {
                episode: 1,
                successor: cert("c2"),
            },
        });
        assert_eq!(
            as_of(&c1, 2.0),
            [(Waiting::Successor, at(0.0))],
            "not yet announced"
        );
        assert_eq!(as_of(&c1, 4.0), [(Waiting::CutOver, at(3.0))]);
        // The stage moved on day 10; the clean-up reminder (which releases partners) on day 24.
        let mut moved = ended(ep.clone(), 10.0, rotated());
        moved.cleanup_reminded_at = Some(at(24.0));
        moved.partners_released = true;
        c1.episodes = vec![moved];
        assert_eq!(
            as_of(&c1, 4.0),
            [(Waiting::CutOver, at(3.0))],
            "as of day 4"
        );
        assert_eq!(as_of(&c1, 11.0), [(Waiting::Removal, at(10.0))]);
        assert!(as_of(&c1, 25.0).is_empty(), "released");
        // Nobody waits after an owner change: the new owner's episode carries the partners.
        let handed = ended(ep.clone(), 10.0, Resolution::OwnerChanged { to: None });
        let c3 = record("c3", 60.0, &[], vec![handed]);
        assert!(as_of(&c3, 11.0).is_empty());
        // A team filter keeps its own partners only.
        let only = report(
            std::slice::from_ref(&c1),
            ReportOptions {
                team: Some("search".into()),
                ..options(11.0)
            },
        );
        assert!(only.partners_waiting.is_empty());
    }

    #[test]
    fn failed_deliveries_are_unknown_without_an_outbox_and_none_when_it_was_read() {
        let records = vec![record("c1", 60.0, &[Some("payments")], vec![])];
        assert_eq!(report(&records, options(1.0)).failed_deliveries, None);
        let mut b = ReportBuilder::new(options(1.0));
        b.outbox_read();
        assert_eq!(b.finish().failed_deliveries, Some(vec![]));
        let failed = |team: &str, at_day: f64| FailedDelivery {
            backend: "jira".into(),
            intent: format!("{team}|c1|open"),
            certificate: cert("c1").to_string(),
            team: team.into(),
            at: at(at_day),
            reason: "400: field 'priority' is not on the screen".into(),
        };
        let mut b = ReportBuilder::new(ReportOptions {
            team: Some("search".into()),
            ..options(5.0)
        });
        b.outbox_read();
        b.add_failed_delivery(failed("search", 2.0));
        b.add_failed_delivery(failed("payments", 1.0));
        b.add_failed_delivery(failed("search", 1.0));
        let got: Vec<DateTime<Utc>> = b
            .finish()
            .failed_deliveries
            .unwrap()
            .iter()
            .map(|f| f.at)
            .collect();
        assert_eq!(got, [at(1.0), at(2.0)], "the team's own, oldest first");
    }
}
