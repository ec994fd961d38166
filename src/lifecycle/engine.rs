//! The decision function: (record, observation, policy, now) -> (record, intents). Pure: no
//! I/O, no clock, no randomness, so a replay or a restart decides exactly what it decided
//! before. Facts are judged at `observation.observed_at` (the instant the read saw them), not at
//! `now`, so re-deciding an old observation later cannot fire a step that was not due when the
//! certificate was seen; `now` only stamps the record and the intents.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::model::*;
use super::policy::{Policy, days_left};
use crate::ids::{CertificateKey, StageKey};

type Instant = DateTime<Utc>;

/// Decides what `obs` means for the certificate whose stored record is `record`.
///
/// An observation older than the record's last one is ignored: the returned decision carries
/// the record unchanged, no intents, and `stale: true`. Deciding the same observation again
/// yields no intents.
pub fn decide(
    record: Option<&CertificateRecord>,
    obs: &Observation,
    policy: &Policy,
    now: Instant,
) -> Decision {
    if let Some(r) = record
        && obs.observed_at < r.last_observed_at
    {
        return Decision {
            record: r.clone(),
            intents: Vec::new(),
            stale: true,
        };
    }
    let t = obs.observed_at;
    let mut rec = record.cloned().unwrap_or_else(|| CertificateRecord {
        key: obs.certificate.clone(),
        state: CertState::Unused,
        not_after: None,
        created_at: None,
        renewal: None,
        first_seen_at: t,
        last_observed_at: t,
        last_source: obs.source,
        updated_at: now,
        users: Vec::new(),
        episodes: Vec::new(),
        history: Vec::new(),
        next_episode_id: 1,
        intents_emitted: 0,
        partner_emails: BTreeSet::new(),
        revision: 0,
    });
    let previous_state = record.map(|r| r.state);
    let unconfirmed = obs.source == ObservationSource::Unconfirmed;
    let mut step = Step {
        rec: &mut rec,
        policy,
        t,
        now,
        intents: Vec::new(),
        unconfirmed,
        successor: None,
    };
    let state = match &obs.seen {
        Seen::Gone => step.gone(),
        Seen::Present {
            not_after,
            created_at,
            renewal,
            users,
            departed,
            successor,
        } => {
            step.successor = successor.clone();
            step.present(
                *not_after,
                *created_at,
                *renewal,
                users,
                departed,
                previous_state,
            )
        }
    };
    let mut intents = step.intents;
    for intent in &mut intents {
        intent.unconfirmed = unconfirmed;
    }
    if previous_state != Some(state) {
        rec.history.push(Transition {
            at: t,
            event: TransitionEvent::StateChanged {
                from: previous_state,
                to: state,
            },
        });
    }
    rec.state = state;
    // What was read last stays what was read last: an unconfirmed observation read nothing.
    if !unconfirmed || record.is_none() {
        rec.last_observed_at = t;
        rec.last_source = obs.source;
    }
    rec.updated_at = now;
    rec.intents_emitted += intents.len() as u64;
    rec.revision += 1;
    Decision {
        record: rec,
        intents,
        stale: false,
    }
}

/// Whether a certificate presented by some stage needs rotating. An expired one always does;
/// a managed ACM one when its renewal fails, when it is in the window and no renewal is under
/// way (ACM starts renewing private certificates well before the window ends), or when a
/// renewal is still pending `pending_renewal_escalates_at_days` before expiry.
pub fn at_risk(policy: &Policy, not_after: Instant, renewal: RenewalOutlook, t: Instant) -> bool {
    if not_after <= t {
        return true;
    }
    let in_window = policy.in_window(not_after, t);
    match renewal {
        RenewalOutlook::Manual => in_window,
        RenewalOutlook::Managed {
            renewal_in_progress,
            renewal_failing,
        } => {
            renewal_failing
                || (in_window && (!renewal_in_progress || renewal_overdue(policy, not_after, t)))
        }
    }
}

/// A managed renewal still pending this close to expiry no longer holds escalation back.
pub fn renewal_overdue(policy: &Policy, not_after: Instant, t: Instant) -> bool {
    not_after - t <= Duration::days(i64::from(policy.pending_renewal_escalates_at_days))
}

/// The stages `keys`, as the observation's users name them (kind, API id and name, owner).
fn named<'a>(users: &[StageUser], keys: impl Iterator<Item = &'a StageKey>) -> Vec<StageUser> {
    keys.filter_map(|k| users.iter().find(|u| &u.stage == k).cloned())
        .collect()
}

/// Resolutions after which somebody should delete the old certificate.
fn wants_cleanup(ep: &Episode) -> bool {
    ep.cleanup_done_at.is_none()
        && matches!(
            ep.resolution,
            Some(
                Resolution::SwitchedTo { .. }
                    | Resolution::StageDeleted
                    | Resolution::StoppedPresenting
            )
        )
}

/// When several stages leave in the same observation, the episode is said to end the most
/// deliberate way; every stage's own reason stays in `departures`.
fn rank(how: &Resolution) -> u8 {
    match how {
        Resolution::SwitchedTo { .. } => 5,
        Resolution::StageDeleted => 4,
        Resolution::Renewed { .. } => 3,
        Resolution::StoppedPresenting => 2,
        Resolution::OwnerChanged { .. } => 1,
        Resolution::CertificateDeleted => 0,
    }
}

struct OwnerGroup {
    stages: BTreeSet<StageKey>,
    partners: BTreeSet<String>,
}

/// An observation's users, grouped by owner.
struct Owners {
    /// Sorted by stage, each stage once: input order must not matter (a replay may list
    /// stages differently), and a stage listed twice is still one stage.
    users: Vec<StageUser>,
    groups: BTreeMap<Option<String>, OwnerGroup>,
    owner_of: BTreeMap<StageKey, Option<String>>,
}

impl Owners {
    fn of(users: &[StageUser]) -> Owners {
        let mut users: Vec<StageUser> = users.to_vec();
        users.sort_by(|a, b| a.stage.cmp(&b.stage));
        users.dedup_by(|a, b| a.stage == b.stage);
        let mut groups: BTreeMap<Option<String>, OwnerGroup> = BTreeMap::new();
        let mut owner_of = BTreeMap::new();
        for u in &users {
            let g = groups.entry(u.owner.clone()).or_insert_with(|| OwnerGroup {
                stages: BTreeSet::new(),
                partners: BTreeSet::new(),
            });
            g.stages.insert(u.stage.clone());
            g.partners.extend(u.partner.clone());
            owner_of.insert(u.stage.clone(), u.owner.clone());
        }
        Owners {
            users,
            groups,
            owner_of,
        }
    }
}

struct Step<'a> {
    rec: &'a mut CertificateRecord,
    policy: &'a Policy,
    t: Instant,
    now: Instant,
    intents: Vec<Intent>,
    /// Deciding from what was last known, without a read: partners are told nothing (a
    /// partner only hears what a read confirmed) and learn of the episode once one does.
    unconfirmed: bool,
    /// The successor the read found, if any.
    successor: Option<Successor>,
}

impl Step<'_> {
    fn emit(&mut self, episode: usize, kind: IntentKind) {
        let intent = Intent::new(&self.rec.key, &self.rec.episodes[episode], self.now, kind);
        self.intents.push(intent);
    }

    fn log(&mut self, event: TransitionEvent) {
        self.rec.history.push(Transition { at: self.t, event });
    }

    fn gone(&mut self) -> CertState {
        for i in 0..self.rec.episodes.len() {
            if self.rec.episodes[i].is_open() {
                let stages: Vec<StageKey> = self.rec.episodes[i].stages.iter().cloned().collect();
                for stage in stages {
                    self.rec.episodes[i].departures.push(StageDeparture {
                        stage,
                        at: self.t,
                        how: Resolution::CertificateDeleted,
                        new_certificate_age_hours: None,
                    });
                }
                self.resolve(i, Resolution::CertificateDeleted);
            } else if wants_cleanup(&self.rec.episodes[i]) {
                self.rec.episodes[i].cleanup_done_at = Some(self.t);
                let id = self.rec.episodes[i].id;
                self.log(TransitionEvent::CleanupDone { episode: id });
                self.release_partners(i);
            }
        }
        self.rec.users.clear();
        CertState::Deleted
    }

    fn present(
        &mut self,
        not_after: Instant,
        created_at: Option<Instant>,
        renewal: RenewalOutlook,
        users: &[StageUser],
        departed: &BTreeMap<StageKey, StageFate>,
        previous_state: Option<CertState>,
    ) -> CertState {
        self.record_facts(not_after, created_at, renewal);
        let owners = Owners::of(users);
        let risky = !owners.users.is_empty() && at_risk(self.policy, not_after, renewal, self.t);
        // Open episodes first: stages leave, join, or the risk goes away.
        for i in 0..self.rec.episodes.len() {
            if self.rec.episodes[i].is_open() {
                self.update_episode(i, &owners, departed, risky, not_after);
            }
        }
        if risky {
            self.open_episodes(&owners, not_after);
        }
        // A successor is announced as soon as it exists, before any stage switches.
        for i in 0..self.rec.episodes.len() {
            if self.rec.episodes[i].is_open() {
                self.announce_successor(i);
            }
        }
        // Steps and incidents, for every episode still open, while the certificate is at risk:
        // a managed renewal under way pauses escalation (it resumes, at the highest step
        // reached, if the renewal fails).
        for i in 0..self.rec.episodes.len() {
            if self.rec.episodes[i].is_open() && risky {
                self.escalate(i, not_after);
            }
        }
        self.rec.users = owners.users;
        self.state_after(not_after, previous_state)
    }

    fn record_facts(
        &mut self,
        not_after: Instant,
        created_at: Option<Instant>,
        renewal: RenewalOutlook,
    ) {
        if let Some(old) = self.rec.not_after
            && old != not_after
        {
            self.log(TransitionEvent::NotAfterChanged {
                from: old,
                to: not_after,
            });
        }
        self.rec.not_after = Some(not_after);
        self.rec.created_at = created_at;
        self.rec.renewal = Some(renewal);
    }

    /// Open episode `i` against what the observation says of its owner's stages: stages that
    /// left (and why), the end of the episode when none is left or the risk went away, a
    /// changed stage list, partners who joined.
    fn update_episode(
        &mut self,
        i: usize,
        owners: &Owners,
        departed: &BTreeMap<StageKey, StageFate>,
        risky: bool,
        not_after: Instant,
    ) {
        let owner = self.rec.episodes[i].owner.clone();
        let now_stages = owners
            .groups
            .get(&owner)
            .map(|g| g.stages.clone())
            .unwrap_or_default();
        let leaving: Vec<StageKey> = self.rec.episodes[i]
            .stages
            .difference(&now_stages)
            .cloned()
            .collect();
        let mut last_how: Option<Resolution> = None;
        for stage in &leaving {
            let how = self.departure(i, stage, owners, departed);
            if last_how.as_ref().is_none_or(|h| rank(&how) > rank(h)) {
                last_how = Some(how.clone());
            }
            // The new certificate's age when the switch was seen (a scan sees it up to one
            // schedule period late, an event within a second), kept so reports can count
            // big-bang cut-overs from the record alone; never below zero on a clock behind
            // AWS's.
            let new_certificate_age_hours = match (&how, departed.get(stage)) {
                (
                    Resolution::SwitchedTo { .. },
                    Some(StageFate::SwitchedTo {
                        certificate_created_at: Some(created),
                        ..
                    }),
                ) => Some((self.t - *created).num_hours().max(0)),
                _ => None,
            };
            self.rec.episodes[i].departures.push(StageDeparture {
                stage: stage.clone(),
                at: self.t,
                how,
                new_certificate_age_hours,
            });
        }
        if now_stages.is_empty() {
            // `leaving` is non-empty here: an open episode always has stages.
            let how = last_how.unwrap_or(Resolution::StoppedPresenting);
            self.resolve(i, how);
            return;
        }
        if !risky && not_after > self.rec.episodes[i].not_after_at_detection {
            self.resolve(i, Resolution::Renewed { not_after });
            return;
        }
        if now_stages != self.rec.episodes[i].stages {
            let ep = &mut self.rec.episodes[i];
            ep.stages = now_stages.clone();
            ep.stages_revision += 1;
            let (id, revision) = (ep.id, ep.stages_revision);
            self.log(TransitionEvent::StagesChanged {
                episode: id,
                revision,
            });
            self.emit(
                i,
                IntentKind::UpdateStages {
                    revision,
                    stages: named(&owners.users, now_stages.iter()),
                },
            );
        }
        if let Some(g) = owners.groups.get(&owner) {
            let unconfirmed = self.unconfirmed;
            for p in g.partners.iter().filter(|_| !unconfirmed) {
                if self.rec.episodes[i].partners.insert(p.clone()) {
                    // A partner that joins late still needs the timeline, and the successor
                    // the others already have, or its trust store misses it at the switch.
                    self.partner_email(i, p.clone(), PartnerEmailKind::Window);
                    let announced = self.rec.episodes[i].successor_announced.clone();
                    if let Some(successor) = self
                        .successor
                        .clone()
                        .filter(|s| announced.as_ref() == Some(&s.certificate))
                    {
                        self.partner_email(
                            i,
                            p.clone(),
                            PartnerEmailKind::Successor {
                                successor: successor.certificate,
                                pem: successor.pem,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Why `stage` no longer counts for episode `i`: another owner took it, it was deleted,
    /// it switched to another certificate (warning of a big-bang, telling its partner), or it
    /// stopped presenting one for a reason the read could not tell.
    fn departure(
        &mut self,
        i: usize,
        stage: &StageKey,
        owners: &Owners,
        departed: &BTreeMap<StageKey, StageFate>,
    ) -> Resolution {
        match (owners.owner_of.get(stage), departed.get(stage)) {
            (Some(to), _) => Resolution::OwnerChanged { to: to.clone() },
            (None, Some(StageFate::Deleted)) => Resolution::StageDeleted,
            (
                None,
                Some(StageFate::SwitchedTo {
                    certificate,
                    certificate_created_at,
                    certificate_not_after,
                }),
            ) => {
                self.switched(i, stage, certificate, *certificate_created_at);
                Resolution::SwitchedTo {
                    certificate: certificate.clone(),
                    still_at_risk: certificate_not_after
                        .is_some_and(|na| self.policy.in_window(na, self.t)),
                }
            }
            (None, None) => Resolution::StoppedPresenting,
        }
    }

    /// Owners at risk without an open episode get one: a ticket, and the partners' timeline.
    fn open_episodes(&mut self, owners: &Owners, not_after: Instant) {
        let t = self.t;
        for (owner, g) in &owners.groups {
            if self
                .rec
                .episodes
                .iter()
                .any(|e| e.is_open() && &e.owner == owner)
            {
                continue;
            }
            let id = self.rec.next_episode_id;
            self.rec.next_episode_id += 1;
            self.rec.episodes.push(Episode::opened(
                id,
                owner.clone(),
                g.stages.clone(),
                // Unconfirmed, partners join the episode (and hear the timeline) only once a
                // read confirms it.
                if self.unconfirmed {
                    BTreeSet::new()
                } else {
                    g.partners.clone()
                },
                t,
                not_after,
            ));
            let i = self.rec.episodes.len() - 1;
            self.log(TransitionEvent::Detected {
                episode: id,
                owner: owner.clone(),
            });
            self.emit(
                i,
                IntentKind::OpenTicket {
                    priority: self.policy.open_priority,
                    not_after,
                    days_left: days_left(not_after, t),
                    stages: named(&owners.users, g.stages.iter()),
                },
            );
            let partners: Vec<String> = self.rec.episodes[i].partners.iter().cloned().collect();
            for p in partners {
                self.partner_email(i, p, PartnerEmailKind::Window);
            }
        }
    }

    /// The certificate's state once its users and episodes are up to date; without users
    /// after a rotation, the clean-up reminder once `cleanup_after_days` have passed.
    fn state_after(&mut self, not_after: Instant, previous_state: Option<CertState>) -> CertState {
        let t = self.t;
        if self.rec.in_use() {
            let open: Vec<&Episode> = self.rec.open_episodes().collect();
            return if not_after <= t {
                CertState::ExpiredInUse
            } else if open.is_empty() {
                CertState::Healthy
            } else {
                CertState::Expiring {
                    step_days: open.iter().filter_map(|e| e.last_step_days()).min(),
                }
            };
        }
        if !self.rec.episodes.iter().any(wants_cleanup) {
            return CertState::Unused;
        }
        let since = match previous_state {
            Some(CertState::RotatedAway { since, .. }) => since,
            _ => t,
        };
        if t - since >= Duration::days(i64::from(self.policy.cleanup_after_days)) {
            self.remind_cleanup(since);
        }
        let reminded = self
            .rec
            .episodes
            .iter()
            .filter(|e| wants_cleanup(e))
            .all(|e| e.cleanup_reminded_at.is_some());
        CertState::RotatedAway { since, reminded }
    }

    fn remind_cleanup(&mut self, since: Instant) {
        for i in 0..self.rec.episodes.len() {
            if wants_cleanup(&self.rec.episodes[i])
                && self.rec.episodes[i].cleanup_reminded_at.is_none()
            {
                self.rec.episodes[i].cleanup_reminded_at = Some(self.t);
                let id = self.rec.episodes[i].id;
                self.log(TransitionEvent::CleanupReminded { episode: id });
                self.emit(
                    i,
                    IntentKind::CleanupReminder {
                        rotated_away_since: since,
                    },
                );
                self.release_partners(i);
            }
        }
    }

    /// Fires the most advanced step due and not yet fired, or the incident once expired. Only
    /// the most advanced step fires when a scan skipped several; the incident supersedes any
    /// step still unfired.
    fn escalate(&mut self, i: usize, not_after: Instant) {
        self.partner_emails_held_back(i);
        let t = self.t;
        let id = self.rec.episodes[i].id;
        if not_after <= t {
            if self.rec.episodes[i].incident.is_none() {
                self.rec.episodes[i].incident = Some(Incident {
                    started_at: not_after,
                    detected_at: t,
                });
                self.log(TransitionEvent::IncidentStarted { episode: id });
                self.emit(
                    i,
                    IntentKind::Incident {
                        expired_at: not_after,
                    },
                );
            }
            return;
        }
        let Some(reached) = self.policy.step_reached(not_after, t) else {
            return;
        };
        let step = self.policy.escalation[reached].clone();
        let last = self.rec.episodes[i].last_step_days();
        if last.is_some_and(|d| step.days_left >= d) {
            return;
        }
        let skipped: Vec<u32> = self.policy.escalation[..reached]
            .iter()
            .map(|s| s.days_left)
            .filter(|d| last.is_none_or(|l| *d < l))
            .collect();
        self.rec.episodes[i].steps.push(StepFired {
            days_left: step.days_left,
            at: t,
        });
        self.log(TransitionEvent::StepReached {
            episode: id,
            days_left: step.days_left,
            skipped,
        });
        self.emit(
            i,
            IntentKind::Escalate {
                step_days: step.days_left,
                priority: step.priority,
                page: step.page,
                days_left: days_left(not_after, t),
            },
        );
        if step.partner_email {
            let partners: Vec<String> = self.rec.episodes[i].partners.iter().cloned().collect();
            for p in partners {
                self.partner_email(
                    i,
                    p,
                    PartnerEmailKind::Step {
                        days_left: step.days_left,
                    },
                );
            }
        }
    }

    /// A stage of episode `i` now presents `certificate`: warn about a big-bang cut-over and
    /// tell the stage's partner to expect the new certificate.
    fn switched(
        &mut self,
        i: usize,
        stage: &StageKey,
        certificate: &CertificateKey,
        created_at: Option<Instant>,
    ) {
        if let Some(created) = created_at {
            let age = self.t - created;
            if age < Duration::hours(i64::from(self.policy.big_bang_hours)) {
                self.emit(
                    i,
                    IntentKind::CommentBigBang {
                        stage: stage.clone(),
                        departure: self.rec.episodes[i].departures.len(),
                        new_certificate: certificate.clone(),
                        new_certificate_age_hours: age.num_hours(),
                    },
                );
            }
        }
        // The partner the stage had before this observation: `rec.users` still holds the
        // previous users while episodes are updated.
        let old_partner = self
            .rec
            .users
            .iter()
            .find(|u| &u.stage == stage)
            .and_then(|u| u.partner.clone());
        if let Some(partner) = old_partner {
            self.partner_email(
                i,
                partner,
                PartnerEmailKind::CutOver {
                    new_certificate: certificate.clone(),
                },
            );
        }
    }

    /// Tells episode `i`'s ticket and partners of the successor the read found, once per
    /// successor: its certificate goes with it, so trust stores hold both before the switch.
    fn announce_successor(&mut self, i: usize) {
        let Some(successor) = self.successor.clone().filter(|_| !self.unconfirmed) else {
            return;
        };
        if self.rec.episodes[i].successor_announced.as_ref() == Some(&successor.certificate) {
            return;
        }
        self.rec.episodes[i].successor_announced = Some(successor.certificate.clone());
        let id = self.rec.episodes[i].id;
        self.log(TransitionEvent::SuccessorAnnounced {
            episode: id,
            successor: successor.certificate.clone(),
        });
        self.emit(
            i,
            IntentKind::AnnounceSuccessor {
                successor: successor.certificate.clone(),
                not_after: successor.not_after,
                pem: successor.pem.clone(),
            },
        );
        let partners: Vec<String> = self.rec.episodes[i].partners.iter().cloned().collect();
        for p in partners {
            self.partner_email(
                i,
                p,
                PartnerEmailKind::Successor {
                    successor: successor.certificate.clone(),
                    pem: successor.pem.clone(),
                },
            );
        }
    }

    /// The partner email of the most advanced step fired, once a read confirms the episode: a
    /// step fired while the certificate could not be read told no partner. Decided once, like
    /// every partner email, so this is a no-op when it went out with its step.
    fn partner_emails_held_back(&mut self, i: usize) {
        if self.unconfirmed {
            return;
        }
        let Some(last) = self.rec.episodes[i].last_step_days() else {
            return;
        };
        let emails = self
            .policy
            .escalation
            .iter()
            .any(|s| s.days_left == last && s.partner_email);
        if !emails {
            return;
        }
        let partners: Vec<String> = self.rec.episodes[i].partners.iter().cloned().collect();
        for p in partners {
            self.partner_email(i, p, PartnerEmailKind::Step { days_left: last });
        }
    }

    /// Decides a partner email unless this certificate already told this partner this: one
    /// email per partner, certificate, expiry and step, even when several of the partner's
    /// stages switch, a stage switches, comes back and switches again, or the stages change
    /// owner.
    fn partner_email(&mut self, i: usize, partner: String, email: PartnerEmailKind) {
        let Some(not_after) = self.rec.not_after.filter(|_| !self.unconfirmed) else {
            return;
        };
        let intent = Intent::new(
            &self.rec.key,
            &self.rec.episodes[i],
            self.now,
            IntentKind::PartnerEmail {
                partner,
                email,
                not_after,
            },
        );
        if self.rec.partner_emails.insert(intent.key.clone()) {
            self.intents.push(intent);
        }
    }

    fn release_partners(&mut self, i: usize) {
        if self.rec.episodes[i].partners_released {
            return;
        }
        self.rec.episodes[i].partners_released = true;
        let partners: Vec<String> = self.rec.episodes[i].partners.iter().cloned().collect();
        for p in partners {
            self.partner_email(i, p, PartnerEmailKind::OldMayBeRemoved);
        }
    }

    fn resolve(&mut self, i: usize, how: Resolution) {
        let ep = &mut self.rec.episodes[i];
        ep.resolved_at = Some(self.t);
        ep.resolution = Some(how.clone());
        let id = ep.id;
        self.log(TransitionEvent::Resolved {
            episode: id,
            how: how.clone(),
        });
        self.emit(i, IntentKind::ResolveTicket { how });
    }
}
