//! The lifecycle benchmark: a synthetic scan of a large estate driven through the real path,
//! `certsentinel::daemon::reconcile::reconcile_scan` (observations, the engine, durable commits
//! into a `SledStore`), and the costs of a process that holds such a store.
//!
//! ```sh
//! cargo bench --bench lifecycle
//! cargo bench --bench lifecycle -- --certificates 100000 --regions 8 --reps 5 --cache-mb 16 \
//!     --ready-runs 5 [--dir DIR] [--keep DIR]
//! ```
//!
//! It prints figures and asserts nothing about time. Each repetition starts from an empty store
//! and times, in observations per second (engine + durable commit, flushes included):
//! - (a) the first scan into the empty store;
//! - (b) two steady-state re-scans (an hour apart; nothing changed);
//! - (c) a re-scan one day later, in which certificates cross escalation steps.
//!
//! The medians are reported. Then, on the last repetition's store, the bench starts itself as
//! a child process (the store closed in the parent first: sled locks it):
//! - `--ready PATH`, several times, each time right after the parent reconciled one more
//!   steady-state scan and closed the store (as a daemon restart finds it), then once more at
//!   once (a warm reopen): process start -> store opened (schema checked) -> first `load`
//!   answered, timed by the parent from before the spawn to the child's READY line;
//! - `--hold PATH`: opens the store and reports VmRSS / VmHWM (/proc/self/status) after the
//!   open, after a load, after building the scan (the scan's own memory), after one
//!   steady-state reconcile, and after dropping the scan and returning free heap to the system
//!   (what stays live while the store is held).
//!
//! - `--hold-streamed PATH`: the same steady-state scan reconciled one region at a time, each
//!   built, reconciled and dropped before the next, as the daemon records a scan; its peak
//!   is compared with the whole scan's. The peak grows with the largest account and region,
//!   not with the estate.
//!
//! `--keep DIR` also leaves a populated store in DIR, to measure the `--hold` mode from outside
//! (e.g. `/usr/bin/time -v target/release/deps/lifecycle-* --hold DIR`).

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use certsentinel::daemon::reconcile::{Reconciled, reconcile_scan};
use certsentinel::ids::{CertificateKey, StageKey, StageKind};
use certsentinel::inventory::model::{
    Certificate, CertificateKind, Owner, RegionInventory, StageUse, TagLevel,
};
use certsentinel::inventory::scan::{Scan, TargetCounts, TargetReport, TargetStatus};
use certsentinel::lifecycle::Policy;
use certsentinel::store::{SledStore, Store};
use chrono::{DateTime, Duration, TimeZone, Utc};

const ACCOUNT: &str = "111122223333";
const REGIONS: [&str; 8] = [
    "eu-west-1",
    "us-east-1",
    "eu-central-1",
    "ap-southeast-2",
    "us-west-2",
    "eu-north-1",
    "ap-northeast-1",
    "sa-east-1",
];

// ------------------------------------------------------------------------------------------
// Arguments
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mode {
    Bench,
    /// Child: open, load once, say READY, exit.
    Ready(PathBuf),
    /// Child: open, report memory, reconcile a steady-state scan, report memory.
    Hold(PathBuf),
    /// Child: the same scan reconciled one region at a time, each built, reconciled and
    /// dropped before the next, as the daemon does; reports the peak.
    HoldStreamed(PathBuf),
}

#[derive(Debug, Clone)]
struct Args {
    certificates: usize,
    regions: usize,
    reps: usize,
    cache_mb: u64,
    ready_runs: usize,
    dir: Option<PathBuf>,
    keep: Option<PathBuf>,
    /// Hours after T0 of the scan a `--hold` child reconciles.
    at_hours: i64,
    mode: Mode,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            certificates: 100_000,
            // 12,500 certificates per account and region by default: already twice what AWS's
            // quotas let one hold (600 regional REST APIs of 10 stages, not raisable).
            regions: 8,
            reps: 5,
            cache_mb: 16,
            ready_runs: 5,
            dir: None,
            keep: None,
            at_hours: 0,
            mode: Mode::Bench,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if flag == "--bench" {
                continue;
            }
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            let mut number = || -> Result<u64> {
                let v = value()?;
                v.parse()
                    .with_context(|| format!("{flag}: '{v}' is not a number"))
            };
            match flag.as_str() {
                "--certificates" => args.certificates = number()? as usize,
                "--regions" => args.regions = number()? as usize,
                "--reps" => args.reps = number()? as usize,
                "--cache-mb" => args.cache_mb = number()?,
                "--ready-runs" => args.ready_runs = number()? as usize,
                "--at-hours" => args.at_hours = number()? as i64,
                "--dir" => args.dir = Some(value()?.into()),
                "--keep" => args.keep = Some(value()?.into()),
                "--ready" => args.mode = Mode::Ready(value()?.into()),
                "--hold" => args.mode = Mode::Hold(value()?.into()),
                "--hold-streamed" => args.mode = Mode::HoldStreamed(value()?.into()),
                "-h" | "--help" => {
                    println!(
                        "cargo bench --bench lifecycle -- [--certificates N] [--regions R] \
                         [--reps K] [--cache-mb M] [--ready-runs K] [--dir DIR] [--keep DIR]\n\
                         child modes: --ready PATH | --hold PATH | --hold-streamed PATH [--at-hours H] \
                         (with the same --certificates, --regions and --cache-mb)"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other} (try --help)"),
            }
        }
        ensure!(args.certificates > 0, "--certificates must be at least 1");
        ensure!(
            (1..=REGIONS.len()).contains(&args.regions),
            "--regions must be 1..={}",
            REGIONS.len()
        );
        ensure!(args.reps > 0, "--reps must be at least 1");
        ensure!(args.cache_mb > 0, "--cache-mb must be at least 1");
        Ok(args)
    }

    fn cache_bytes(&self) -> u64 {
        self.cache_mb * 1024 * 1024
    }

    /// The flags a child needs to rebuild the same estate and open the store the same way.
    fn child_flags(&self) -> Vec<String> {
        vec![
            "--certificates".into(),
            self.certificates.to_string(),
            "--regions".into(),
            self.regions.to_string(),
            "--cache-mb".into(),
            self.cache_mb.to_string(),
        ]
    }
}

// ------------------------------------------------------------------------------------------
// The synthetic estate
// ------------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).unwrap()
}

/// What certificate `i` is, decided once from a seeded generator so every process (parent and
/// children) builds the same estate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// Presented by stages of 1-3 owners, inside the 60-day window.
    AtRisk { owners: usize, days: i64 },
    /// Presented by 1-2 stages of one owner, outside the window.
    Healthy { stages: usize, days: i64 },
    /// No stage presents it.
    Unused { days: i64 },
}

struct Estate {
    profiles: Vec<Profile>,
    partners: Vec<Option<u32>>,
    teams: Vec<u32>,
}

impl Estate {
    fn new(n: usize) -> Estate {
        let mut rng = fastrand::Rng::with_seed(0x5eed_cafe);
        let mut profiles = Vec::with_capacity(n);
        let mut partners = Vec::with_capacity(n);
        let mut teams = Vec::with_capacity(n);
        for _ in 0..n {
            let roll = rng.u32(0..100);
            // Expiry at a whole number of days plus a half from T0: a day later, exactly the
            // certificates at 60.5 / 30.5 / 14.5 / 7.5 days enter the window or cross a step,
            // and scans an hour or two apart cross nothing.
            profiles.push(if roll < 10 {
                Profile::AtRisk {
                    owners: [1, 1, 1, 2, 2, 3][rng.usize(0..6)],
                    days: rng.i64(1..60),
                }
            } else if roll < 85 {
                Profile::Healthy {
                    stages: if rng.u32(0..5) == 0 { 2 } else { 1 },
                    days: rng.i64(60..800),
                }
            } else {
                Profile::Unused {
                    days: rng.i64(-30..800),
                }
            });
            partners.push((rng.u32(0..5) == 0).then(|| rng.u32(0..50)));
            teams.push(rng.u32(0..40));
        }
        Estate {
            profiles,
            partners,
            teams,
        }
    }

    fn region_of(i: usize, regions: usize) -> &'static str {
        REGIONS[i % regions]
    }

    fn key(i: usize, regions: usize) -> CertificateKey {
        CertificateKey {
            account: ACCOUNT.into(),
            region: Estate::region_of(i, regions).into(),
            id: format!("c{i:09x}"),
        }
    }

    /// The scan started at `T0 + hours`: one account, `regions` complete regions.
    fn scan(&self, regions: usize, hours: i64) -> Scan {
        self.scan_of(regions, hours, 0..regions)
    }

    /// The same scan's regions `only` (indices into the `regions` the estate spans).
    fn scan_of(&self, regions: usize, hours: i64, only: std::ops::Range<usize>) -> Scan {
        let started_at = t0() + Duration::hours(hours);
        let mut inventories: Vec<RegionInventory> = only
            .clone()
            .map(|r| RegionInventory {
                account: ACCOUNT.into(),
                region: REGIONS[r].into(),
                ..RegionInventory::default()
            })
            .collect();
        for (i, profile) in self.profiles.iter().enumerate() {
            if !only.contains(&(i % regions)) {
                continue;
            }
            let key = Estate::key(i, regions);
            let inventory = &mut inventories[i % regions - only.start];
            let (days, stage_owners): (i64, Vec<u32>) = match *profile {
                Profile::AtRisk { owners, days } => (
                    days,
                    (0..owners as u32)
                        .map(|o| (self.teams[i] + o) % 40)
                        .collect(),
                ),
                Profile::Healthy { stages, days } => (days, vec![self.teams[i]; stages]),
                Profile::Unused { days } => (days, vec![]),
            };
            let mut used_by = Vec::with_capacity(stage_owners.len());
            for (s, team) in stage_owners.into_iter().enumerate() {
                let stage = StageKey {
                    account: ACCOUNT.into(),
                    region: key.region.clone(),
                    kind: if i % 10 == 9 {
                        StageKind::WebSocket
                    } else {
                        StageKind::Rest
                    },
                    api_id: format!("a{i:08x}{s}"),
                    stage_name: "prod".into(),
                };
                // As a scan holds it: a stage presenting a certificate is in its `used_by` only.
                let api_name = format!("api-{i}-{s}");
                used_by.push(StageUse {
                    stage,
                    api_name,
                    owner: Some(Owner {
                        team: format!("team-{team:02}"),
                        level: TagLevel::Stage,
                        tag_key: "owner".into(),
                    }),
                    partner: self.partners[i].map(|p| format!("partner-{p:02}")),
                });
            }
            let not_after = t0() + Duration::days(days) + Duration::hours(12);
            inventory.certificates.push(Certificate {
                key,
                kind: CertificateKind::Generated,
                description: None,
                created_at: Some(not_after - Duration::days(365)),
                not_after: Some(not_after),
                not_after_source: None,
                fingerprint_sha256: None,
                warnings: Vec::new(),
                tags: Default::default(),
                certificate_owner: None,
                successor_of: None,
                pem: None,
                used_by,
            });
        }
        let targets = inventories
            .iter()
            .map(|inv| TargetReport {
                account: inv.account.clone(),
                account_name: None,
                region: inv.region.clone(),
                status: TargetStatus::Complete,
                calls: BTreeMap::new(),
                call_outcomes: BTreeMap::new(),
                counts: TargetCounts {
                    certificates: inv.certificates.len(),
                    rest_apis: inv.certificates.iter().map(|c| c.used_by.len()).sum(),
                    stages: inv.certificates.iter().map(|c| c.used_by.len()).sum(),
                    ..TargetCounts::default()
                },
                clock_skew_seconds: None,
            })
            .collect();
        Scan {
            started_at,
            finished_at: started_at + Duration::minutes(5),
            targets,
            inventories,
            readers: Default::default(),
        }
    }

    fn describe(&self) -> String {
        let mut at_risk = 0;
        let mut owners = [0usize; 4];
        let mut healthy = 0;
        let mut unused = 0;
        let mut crossing = 0;
        for p in &self.profiles {
            match *p {
                Profile::AtRisk { owners: o, days } => {
                    at_risk += 1;
                    owners[o] += 1;
                    if [30, 14, 7].contains(&days) {
                        crossing += 1;
                    }
                }
                Profile::Healthy { days, .. } => {
                    healthy += 1;
                    if days == 60 {
                        crossing += 1;
                    }
                }
                Profile::Unused { .. } => unused += 1,
            }
        }
        format!(
            "{} certificates: {at_risk} in the window (1/2/3 owners: {}/{}/{}), {healthy} healthy \
             and used, {unused} unused; {crossing} enter the window or cross a step a day later",
            self.profiles.len(),
            owners[1],
            owners[2],
            owners[3]
        )
    }
}

// ------------------------------------------------------------------------------------------
// Measuring
// ------------------------------------------------------------------------------------------

/// Gives the allocator's free memory back to the system, so that RSS shows what is live
/// rather than what glibc keeps for reuse after a large structure (the scan) is freed.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

struct Timed {
    observations: usize,
    intents: usize,
    seconds: f64,
}

impl Timed {
    fn per_second(&self) -> f64 {
        self.observations as f64 / self.seconds
    }
}

fn reconcile_timed(store: &SledStore, scan: &Scan, policy: &Policy) -> Result<Timed> {
    let now = scan.finished_at;
    let start = Instant::now();
    let out: Reconciled = reconcile_scan(store, scan, policy, now, false)?;
    let seconds = start.elapsed().as_secs_f64();
    ensure!(out.committed && out.stale == 0 && out.unjudged.is_empty());
    Ok(Timed {
        observations: out.observations,
        intents: out.intents.len(),
        seconds,
    })
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Child modes
// ------------------------------------------------------------------------------------------

fn ready_child(args: &Args, path: &Path) -> Result<()> {
    let start = Instant::now();
    let store = SledStore::open(path, args.cache_bytes())?;
    let opened = start.elapsed();
    let record = store.load(&Estate::key(0, args.regions))?;
    let loaded = start.elapsed();
    ensure!(record.is_some(), "certificate 0 is not in the store");
    println!(
        "READY open_ms={:.1} load_ms={:.1}",
        opened.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3
    );
    Ok(())
}

fn hold_child(args: &Args, path: &Path) -> Result<()> {
    let report = |what: &str| {
        let (rss, hwm) = common::memory_mib();
        println!("MEM {what:<36} VmRSS {rss:6.1} MiB  VmHWM {hwm:6.1} MiB");
    };
    report("at start");
    let store = SledStore::open(path, args.cache_bytes())?;
    report("store opened");
    ensure!(store.load(&Estate::key(0, args.regions))?.is_some());
    report("first load answered");
    let estate = Estate::new(args.certificates);
    let scan = estate.scan(args.regions, args.at_hours);
    drop(estate);
    report("scan built (the scan's own memory)");
    let timed = reconcile_timed(&store, &scan, &Policy::default())?;
    report("after a steady-state reconcile");
    drop(scan);
    report("scan dropped, store still open");
    trim();
    report("free heap returned (malloc_trim)");
    // For comparison: what finding the absent certificates cost before the location index.
    let walked = store.records().count();
    report(&format!("after walking {walked} records"));
    trim();
    report("free heap returned (malloc_trim)");
    drop(store);
    trim();
    report("store closed (malloc_trim)");
    println!(
        "RECONCILED {} observations, {} intents, {:.0}/s",
        timed.observations,
        timed.intents,
        timed.per_second()
    );
    Ok(())
}

/// The daemon's way: each region built, reconciled and dropped before the next is built.
fn hold_streamed_child(args: &Args, path: &Path) -> Result<()> {
    let report = |what: &str| {
        let (rss, hwm) = common::memory_mib();
        println!("MEM {what:<36} VmRSS {rss:6.1} MiB  VmHWM {hwm:6.1} MiB");
    };
    report("at start");
    let store = SledStore::open(path, args.cache_bytes())?;
    ensure!(store.load(&Estate::key(0, args.regions))?.is_some());
    report("store opened, first load answered");
    let estate = Estate::new(args.certificates);
    let started = Instant::now();
    let (mut observations, mut intents) = (0, 0);
    for r in 0..args.regions {
        let region = estate.scan_of(args.regions, args.at_hours, r..r + 1);
        let timed = reconcile_timed(&store, &region, &Policy::default())?;
        observations += timed.observations;
        intents += timed.intents;
        drop(region);
        trim();
    }
    report("every region reconciled, one at a time");
    println!(
        "RECONCILED {observations} observations, {intents} intents, {:.0}/s",
        observations as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The peak (VmHWM, MiB) a child's report ends with.
fn peak_of(report: &str) -> Option<f64> {
    report
        .lines()
        .filter_map(|l| l.split("VmHWM").nth(1))
        .filter_map(|v| v.trim().trim_end_matches("MiB").trim().parse::<f64>().ok())
        .reduce(f64::max)
}

// ------------------------------------------------------------------------------------------
// The bench
// ------------------------------------------------------------------------------------------

/// Hours after T0 of the scans of one repetition: first, two steady re-scans, a day later.
/// Later scans (before the children) are steady-state ones, an hour apart.
const FIRST: i64 = 0;
const STEADY: [i64; 2] = [1, 2];
const DAY_LATER: i64 = 26;

/// Runs this bench as a `mode` child on the store at `path` as of `hour`, prints its report
/// indented, and returns it.
fn run_child(me: &Path, mode: &str, path: &Path, hour: i64, args: &Args) -> Result<String> {
    let output = Command::new(me)
        .arg(mode)
        .arg(path)
        .args(["--at-hours", &hour.to_string()])
        .args(args.child_flags())
        .output()?;
    ensure!(
        output.status.success(),
        "the {mode} child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    for line in report.lines() {
        println!("  {line}");
    }
    Ok(report)
}

fn bench(args: &Args) -> Result<()> {
    let policy = Policy::default();
    let estate = Estate::new(args.certificates);
    println!("{}", estate.describe());
    println!(
        "{} regions of account {ACCOUNT}; sled cache {} MiB; {} repetitions",
        args.regions, args.cache_mb, args.reps
    );
    let build = Instant::now();
    let scans: Vec<(i64, Scan)> = [FIRST, STEADY[0], STEADY[1], DAY_LATER]
        .into_iter()
        .map(|h| (h, estate.scan(args.regions, h)))
        .collect();
    println!(
        "scans built in {:.1} s (not timed below)",
        build.elapsed().as_secs_f64()
    );

    let parent = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("lifecycle-bench")
                .tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("lifecycle-bench")
            .tempdir()?,
    };
    let mut first = Vec::new();
    let mut steady = Vec::new();
    let mut later = Vec::new();
    let mut last_path = None;
    println!();
    println!("rep  scan          observations  intents   seconds     obs/s");
    for rep in 0..args.reps {
        let path = parent.path().join(format!("rep{rep}"));
        let store = SledStore::open(&path, args.cache_bytes())?;
        for (hours, scan) in &scans {
            let t = reconcile_timed(&store, scan, &policy)?;
            let (label, into) = match *hours {
                FIRST => ("(a) first", &mut first),
                DAY_LATER => ("(c) day later", &mut later),
                _ => ("(b) steady", &mut steady),
            };
            println!(
                "{rep:>3}  {label:<13} {:>12} {:>8} {:>9.2} {:>9.0}",
                t.observations,
                t.intents,
                t.seconds,
                t.per_second()
            );
            into.push(t.per_second());
        }
        drop(store);
        if let Some(old) = last_path.replace(path) {
            std::fs::remove_dir_all(old)?;
        }
    }
    let path = last_path.expect("at least one repetition");
    println!();
    println!(
        "observations per second (engine + durable commit), median [min, max] of {} runs:",
        args.reps
    );
    for (label, values) in [
        ("(a) first scan into an empty store", &first),
        ("(b) steady-state re-scan", &steady),
        ("(c) re-scan a day later", &later),
    ] {
        let (min, max) = spread(values);
        println!(
            "  {label:<36} {:>8.0}/s  [{min:.0}, {max:.0}]",
            common::median(values)
        );
    }
    println!(
        "store on disk after {} scans: {:.1} MiB",
        scans.len(),
        dir_size(&path) as f64 / (1024.0 * 1024.0)
    );
    // From here on, one scan is reused at later hours: nothing changes but the time.
    let mut steady_scan = scans.into_iter().next().expect("the first scan").1;
    let mut hour = DAY_LATER;

    // Children: the store is closed first (sled holds a lock on it while open).
    let me = std::env::current_exe()?;
    let ready_child = || -> Result<(f64, String)> {
        let start = Instant::now();
        let mut child = Command::new(&me)
            .arg("--ready")
            .arg(&path)
            .args(args.child_flags())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        ensure!(child.wait()?.success(), "the --ready child failed");
        ensure!(line.starts_with("READY"), "the child said {line:?}");
        Ok((
            elapsed,
            line.trim_start_matches("READY ").trim().to_string(),
        ))
    };
    println!();
    println!(
        "start to ready (process start -> store opened, schema checked -> first load answered);"
    );
    println!(
        "each run after a process that reconciled a steady-state scan and exited (a restart of \
         the daemon), then once more at once (a warm reopen):"
    );
    let mut after_writer = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..args.ready_runs {
        hour += 1;
        {
            let store = SledStore::open(&path, args.cache_bytes())?;
            steady_scan.started_at = t0() + Duration::hours(hour);
            steady_scan.finished_at = steady_scan.started_at + Duration::minutes(5);
            reconcile_timed(&store, &steady_scan, &policy)?;
        }
        let (ms, child) = ready_child()?;
        let (warm_ms, warm_child) = ready_child()?;
        println!(
            "  after the writer {ms:7.1} ms (child: {child});  warm {warm_ms:6.1} ms (child: \
             {warm_child})"
        );
        after_writer.push(ms);
        warm.push(warm_ms);
    }
    for (label, values) in [("after the writer", &after_writer), ("warm reopen", &warm)] {
        let (min, max) = spread(values);
        println!(
            "  median {label:<17} {:7.1} ms [{min:.1}, {max:.1}]",
            common::median(values)
        );
    }
    drop(steady_scan);

    hour += 1;
    println!();
    println!("resident memory of a process holding the store (--hold child):");
    let whole = run_child(&me, "--hold", &path, hour, args)?;

    hour += 1;
    println!();
    println!(
        "the daemon's way, each region reconciled and dropped before the next (--hold-streamed child):"
    );
    let streamed = run_child(&me, "--hold-streamed", &path, hour, args)?;
    if let (Some(whole), Some(streamed)) = (peak_of(&whole), peak_of(&streamed)) {
        println!();
        println!(
            "peak resident memory reconciling {} certificates in {} regions: whole scan {whole:.1} MiB, \
             region by region {streamed:.1} MiB ({:.2} of the whole; target <= 64 MB = {:.1} MiB)",
            args.certificates,
            args.regions,
            streamed / whole,
            64e6 / (1024.0 * 1024.0)
        );
    }

    if let Some(keep) = &args.keep {
        if keep.exists() {
            std::fs::remove_dir_all(keep)?;
        }
        std::fs::rename(&path, keep)
            .or_else(|_| copy_dir(&path, keep))
            .with_context(|| format!("cannot keep the store in {}", keep.display()))?;
        println!();
        println!(
            "store kept in {} (its last scan was at T0+{hour}h): hold it with --hold {} \
             --at-hours {} {}",
            keep.display(),
            keep.display(),
            hour + 1,
            args.child_flags().join(" ")
        );
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    match &args.mode {
        Mode::Bench => bench(&args),
        Mode::Ready(path) => ready_child(&args, path),
        Mode::Hold(path) => hold_child(&args, path),
        Mode::HoldStreamed(path) => hold_streamed_child(&args, path),
    }
}
