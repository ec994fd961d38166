//! The report benchmark: `certsentinel report`'s computation (and its JSON and HTML) over a store of 100,000
//! certificates whose histories hold 1,000,000 transitions, compared in the same run with a
//! bare pass that only reads and decodes every record the same way, one at a time through the
//! location index (`Store::each_record`): the floor, what the store costs.
//!
//! ```sh
//! cargo bench --bench report
//! cargo bench --bench report -- --certificates 100000 --transitions 10 --reps 3
//! ```
//!
//! The store is built once; each pass runs in a child process of its own (`--pass report` or
//! `--pass bare`), so each peak (VmHWM) is that pass's alone. It prints figures and asserts
//! nothing about time; it checks that the report saw every certificate.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use certsentinel::daemon::report_page::report_from_store;
use certsentinel::ids::{CertificateKey, StageKey, StageKind};
use certsentinel::lifecycle::{
    CertState, CertificateRecord, Decision, Episode, ObservationSource, Resolution, StageDeparture,
    StageUser, Transition, TransitionEvent,
};
use certsentinel::report::{ReportBuilder, ReportOptions};
use certsentinel::store::{DEFAULT_CACHE_BYTES, SledStore, Store};
use chrono::{DateTime, Duration, TimeZone, Utc};

struct Args {
    certificates: usize,
    transitions: usize,
    reps: usize,
    pass: Option<(String, String)>,
}

fn args() -> Result<Args> {
    let mut args = Args {
        certificates: 100_000,
        transitions: 10,
        reps: 3,
        pass: None,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--certificates" => args.certificates = value()?.parse()?,
            "--transitions" => args.transitions = value()?.parse()?,
            "--reps" => args.reps = value()?.parse()?,
            "--pass" => {
                let which = value()?;
                let path = value()?;
                args.pass = Some((which, path));
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// Certificate `i`: presented by one stage of team `i % 40`; `transitions` recorded
/// transitions; every tenth has had a rotation episode (its stage's switch recorded, one in
/// three to a certificate hours old, a partner on every other) and one in twenty an open one.
fn record(i: usize, transitions: usize) -> CertificateRecord {
    let key = CertificateKey {
        account: "111122223333".into(),
        region: ["eu-west-1", "us-east-1", "eu-central-1", "ap-southeast-2"][i % 4].into(),
        id: format!("c{i:09x}"),
    };
    let team = format!("team-{:02}", i % 40);
    let start = t0() + Duration::hours((i % 8760) as i64);
    let mut episodes = Vec::new();
    if i.is_multiple_of(10) {
        let resolved = start + Duration::hours((i % 500) as i64);
        let mut rotated = episode(1, &team, start, Some(resolved));
        rotated.departures.push(StageDeparture {
            stage: stage(&key, i),
            at: resolved,
            how: rotated.resolution.clone().expect("resolved"),
            new_certificate_age_hours: Some(if i.is_multiple_of(3) { 2 } else { 200 }),
        });
        if i.is_multiple_of(20) {
            rotated.partners.insert(format!("partner-{}", i % 7));
        }
        episodes.push(rotated);
    }
    if i % 20 == 5 {
        episodes.push(episode(2, &team, start, None));
    }
    let history = (0..transitions)
        .map(|n| Transition {
            at: start + Duration::hours(n as i64),
            event: TransitionEvent::StateChanged {
                from: Some(CertState::Healthy),
                to: CertState::Healthy,
            },
        })
        .collect();
    CertificateRecord {
        state: CertState::Healthy,
        not_after: Some(start + Duration::days(400)),
        created_at: Some(start),
        renewal: None,
        first_seen_at: start,
        last_observed_at: start,
        last_source: ObservationSource::FullScan,
        updated_at: start,
        users: vec![StageUser {
            stage: stage(&key, i),
            api_name: format!("api-{i}"),
            owner: Some(team),
            partner: None,
        }],
        episodes,
        history,
        next_episode_id: 3,
        intents_emitted: 0,
        partner_emails: Default::default(),
        revision: 1,
        key,
    }
}

fn stage(key: &CertificateKey, i: usize) -> StageKey {
    StageKey {
        account: key.account.clone(),
        region: key.region.clone(),
        kind: StageKind::Rest,
        api_id: format!("a{i:08x}"),
        stage_name: "prod".into(),
    }
}

fn episode(id: u32, team: &str, at: DateTime<Utc>, resolved: Option<DateTime<Utc>>) -> Episode {
    let mut episode = Episode::opened(
        id,
        Some(team.to_string()),
        Default::default(),
        Default::default(),
        at,
        at + Duration::days(60),
    );
    episode.resolved_at = resolved;
    episode.resolution = resolved.map(|_| Resolution::SwitchedTo {
        certificate: CertificateKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            id: "next".into(),
        },
        still_at_risk: false,
    });
    episode
}

fn build(path: &Path, args: &Args) -> Result<()> {
    let store = SledStore::open(path, DEFAULT_CACHE_BYTES)?;
    let mut batch = Vec::with_capacity(2_000);
    for i in 0..args.certificates {
        batch.push(Decision {
            record: record(i, args.transitions),
            intents: Vec::new(),
            stale: false,
        });
        if batch.len() == 2_000 {
            store.commit_batch(&batch)?;
            batch.clear();
        }
    }
    store.commit_batch(&batch)?;
    store.flush()?;
    Ok(())
}

/// One pass in this (child) process: prints `PASS seconds peak_mib records`.
fn pass(which: &str, path: &str) -> Result<()> {
    let store = SledStore::open_read_only(path, DEFAULT_CACHE_BYTES)?;
    let started = Instant::now();
    let n;
    match which {
        "bare" => {
            n = store.each_record(&mut |record| {
                std::hint::black_box(record);
            })?;
        }
        "report" | "walk" => {
            let options = ReportOptions {
                since: None,
                until: None,
                team: None,
                now: t0() + Duration::days(500),
                policy: certsentinel::lifecycle::Policy::default(),
            };
            let mut builder = ReportBuilder::new(options.clone());
            let report = if which == "walk" {
                // For comparison: the same report over a walk of sled's iterator.
                let mut walked = 0;
                for record in store.records() {
                    builder.add(&record?);
                    walked += 1;
                }
                n = walked;
                let report = builder.finish();
                ensure!(
                    report.kpis.certificates_in_use == n,
                    "every certificate counted"
                );
                report
            } else {
                // What `certsentinel report` and the daemon's `/report` do: every record one
                // at a time, then the outbox; then the page as well as the JSON.
                let report = report_from_store(&store, options)?;
                n = report.kpis.certificates_in_use;
                std::hint::black_box(certsentinel::report::html(&report)?);
                report
            };
            std::hint::black_box(certsentinel::report::json(&report));
        }
        other => bail!("no pass {other}"),
    }
    println!(
        "PASS {:.3} {:.1} {n}",
        started.elapsed().as_secs_f64(),
        common::peak_mib()
    );
    Ok(())
}

fn child(which: &str, path: &Path) -> Result<(f64, f64, usize)> {
    let out = Command::new(std::env::current_exe()?)
        .args(["--pass", which])
        .arg(path)
        .output()?;
    ensure!(
        out.status.success(),
        "{which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("PASS "))
        .context("no PASS line")?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Ok((f[1].parse()?, f[2].parse()?, f[3].parse()?))
}

fn main() -> Result<()> {
    let args = args()?;
    if let Some((which, path)) = &args.pass {
        return pass(which, path);
    }
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    build(dir.path(), &args)?;
    println!(
        "{} certificates, {} transitions, built in {:.1} s",
        args.certificates,
        args.certificates * args.transitions,
        started.elapsed().as_secs_f64()
    );
    let (mut report_s, mut bare_s, mut report_peak, mut bare_peak) = (vec![], vec![], 0f64, 0f64);
    let (mut walk_s, mut walk_peak) = (vec![], 0f64);
    for _ in 0..args.reps {
        let (s, peak, n) = child("report", dir.path())?;
        ensure!(n == args.certificates, "the report read {n} records");
        report_s.push(s);
        report_peak = report_peak.max(peak);
        let (s, peak, _) = child("bare", dir.path())?;
        bare_s.push(s);
        bare_peak = bare_peak.max(peak);
        let (s, peak, _) = child("walk", dir.path())?;
        walk_s.push(s);
        walk_peak = walk_peak.max(peak);
    }
    let (r, b) = (common::median(&report_s), common::median(&bare_s));
    println!("median of {} runs each, interleaved:", args.reps);
    println!(
        "  report (read, decode, compute, JSON + HTML)  {r:.2} s   peak {report_peak:.1} MiB   (target < 2 s)"
    );
    println!("  bare (read and decode every record)          {b:.2} s   peak {bare_peak:.1} MiB");
    println!("  ratio report / bare {:.2}", r / b);
    println!(
        "  the same report over a walk of Store::records(): {:.2} s   peak {walk_peak:.1} MiB",
        common::median(&walk_s)
    );
    Ok(())
}
