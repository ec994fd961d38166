//! The scan benchmark: a full scan of a large estate through the library
//! (`certsentinel::inventory::scan::scan_all`, the real AWS SDK) against the fake API Gateway
//! control plane and moto's ACM and STS, compared with a bare HTTP loop that makes the same
//! calls at the same concurrency against the same servers. The bare loop is the floor: what
//! the servers and the network cost. The ratio of the two is the scanner's own overhead (SDK
//! serialization, signing, JSON parsing, PEM parsing, the join).
//!
//! ```sh
//! cargo bench --bench scan
//! cargo bench --bench scan -- --certificates 10000 --rest-apis 2000 --stages-per-api 3 \
//!     --websocket-apis 500 --http-apis 500 --acm 50 --concurrency 8 --reps 5 \
//!     [--mode both|scan|bare] [--no-breakdown]
//! ```
//!
//! Runs are interleaved (scan, bare, scan, bare, ...) after one warm-up of each, so drift on a
//! shared machine affects both. Every run is checked: the scan must be complete and find every
//! certificate; both must make exactly the floor number of calls, counted by the fake itself.

// The integration tests' harness; the benchmark uses only its spawn helpers.
#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use certsentinel::config::Settings;
use certsentinel::inventory::scan::{NoProgress, scan_all};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use support::{FakeControlPlane, Moto, days_from_now, venv};
use tokio::sync::Semaphore;

// ------------------------------------------------------------------------------------------
// Arguments
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Both,
    Scan,
    Bare,
}

#[derive(Debug, Clone)]
struct Args {
    certificates: usize,
    rest_apis: usize,
    stages_per_api: usize,
    websocket_apis: usize,
    http_apis: usize,
    acm: usize,
    concurrency: usize,
    reps: usize,
    mode: Mode,
    /// After the runs, time the scanner's parts in process (`--no-breakdown` skips it).
    breakdown: bool,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            certificates: 10_000,
            rest_apis: 2_000,
            stages_per_api: 3,
            websocket_apis: 500,
            http_apis: 500,
            acm: 50,
            concurrency: 8,
            reps: 5,
            mode: Mode::Both,
            breakdown: true,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            // `cargo bench` passes `--bench` to every bench binary.
            if flag == "--bench" {
                continue;
            }
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            let mut number = || -> Result<usize> {
                let v = value()?;
                v.parse()
                    .with_context(|| format!("{flag}: '{v}' is not a number"))
            };
            match flag.as_str() {
                "--certificates" => args.certificates = number()?,
                "--rest-apis" => args.rest_apis = number()?,
                "--stages-per-api" => args.stages_per_api = number()?,
                "--websocket-apis" => args.websocket_apis = number()?,
                "--http-apis" => args.http_apis = number()?,
                "--acm" => args.acm = number()?,
                "--concurrency" => args.concurrency = number()?,
                "--reps" => args.reps = number()?,
                "--mode" => {
                    args.mode = match value()?.as_str() {
                        "both" => Mode::Both,
                        "scan" => Mode::Scan,
                        "bare" => Mode::Bare,
                        other => bail!("--mode: '{other}' is not both, scan or bare"),
                    }
                }
                "--no-breakdown" => args.breakdown = false,
                "-h" | "--help" => {
                    println!(
                        "cargo bench --bench scan -- [--certificates N] [--rest-apis N] \
                         [--stages-per-api N] [--websocket-apis N] [--http-apis N] [--acm N] \
                         [--concurrency C] [--reps R] [--mode both|scan|bare] [--no-breakdown]"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other} (try --help)"),
            }
        }
        ensure!(args.certificates > 0, "--certificates must be at least 1");
        ensure!(args.concurrency > 0, "--concurrency must be at least 1");
        ensure!(args.reps > 0, "--reps must be at least 1");
        ensure!(
            args.acm == 0 || args.rest_apis > 0,
            "ACM certificates are presented by REST stages: --rest-apis must be at least 1"
        );
        Ok(args)
    }

    /// The floor on the fake: ceil(C/500) + ceil(A/500) + A + ceil((W+H)/500) + W (an empty
    /// listing still costs one call).
    fn fake_floor(&self) -> u64 {
        let pages = |n: usize| n.div_ceil(500).max(1) as u64;
        pages(self.certificates)
            + pages(self.rest_apis)
            + self.rest_apis as u64
            + pages(self.websocket_apis + self.http_apis)
            + self.websocket_apis as u64
    }
}

// ------------------------------------------------------------------------------------------
// The estate
// ------------------------------------------------------------------------------------------

const TEAMS: [&str; 4] = ["payments", "identity", "search", "platform"];

fn stage_name(s: usize) -> String {
    match s {
        0 => "prod".into(),
        1 => "staging".into(),
        2 => "dev".into(),
        n => format!("stage{n}"),
    }
}

/// The seed body: certificates with varied notAfter (some expired), REST APIs whose stages
/// mostly present a certificate (every fifth stage presents none), `acm` of those stages
/// presenting an ACM certificate instead, WebSocket APIs with one certificate-bearing stage,
/// and HTTP APIs. Owner tags on a third of the stages and half of the APIs. Written item by
/// item into one string, so that seeding leaves no large heap behind to blur the RSS figures.
fn estate(args: &Args, acm_arns: &[String]) -> String {
    fn push(out: &mut String, first: &mut bool, item: Value) {
        if !std::mem::take(first) {
            out.push(',');
        }
        out.push_str(&item.to_string());
    }
    let certs = args.certificates;
    let mut out = String::with_capacity(certs * 120 + args.rest_apis * 300 + 1024);
    out.push_str(r#"{"account":"123456789012","region":"us-east-1","certificates":["#);
    let mut first = true;
    for i in 0..certs {
        let days = (i as i64 * 37) % 760 - 30;
        let mut c = json!({"id": format!("c{i:09}"), "not_after": days_from_now(days),
                           "description": format!("backend mTLS {i}")});
        if i.is_multiple_of(7) {
            c["tags"] = json!({"owner": TEAMS[i % 4]});
        }
        push(&mut out, &mut first, c);
    }
    // REST API index -> the ACM certificate its prod stage presents.
    let mut acm_of_api = vec![None; args.rest_apis];
    for (k, arn) in acm_arns.iter().enumerate() {
        acm_of_api[k * args.rest_apis / acm_arns.len()] = Some(arn.as_str());
    }
    out.push_str(r#"],"rest_apis":["#);
    let mut first = true;
    for (a, acm) in acm_of_api.iter().enumerate() {
        let stages: Vec<Value> = (0..args.stages_per_api)
            .map(|s| {
                let g = a * args.stages_per_api + s;
                let mut stage = json!({"name": stage_name(s)});
                if s == 0
                    && let Some(arn) = acm
                {
                    stage["client_certificate_id"] = json!(arn);
                } else if g % 5 != 4 {
                    stage["client_certificate_id"] = json!(format!("c{:09}", g % certs));
                }
                if g.is_multiple_of(3) {
                    stage["tags"] = json!({"owner": TEAMS[g % 4]});
                }
                stage
            })
            .collect();
        let mut api = json!({"id": format!("r{a:09}"), "name": format!("rest-api-{a}"),
                             "stages": stages});
        if a.is_multiple_of(2) {
            api["tags"] = json!({"owner": TEAMS[a % 4], "cost-center": format!("cc-{}", a % 17)});
        }
        push(&mut out, &mut first, api);
    }
    let rest_stage_refs = args.rest_apis * args.stages_per_api;
    out.push_str(r#"],"v2_apis":["#);
    let mut first = true;
    for w in 0..args.websocket_apis {
        let certificate = format!("c{:09}", (rest_stage_refs + w) % certs);
        push(
            &mut out,
            &mut first,
            json!({"id": format!("w{w:09}"), "name": format!("ws-api-{w}"),
                   "protocol_type": "WEBSOCKET",
                   "route_selection_expression": "$request.body.action",
                   "tags": {"owner": TEAMS[w % 4]},
                   "stages": [{"name": "production", "client_certificate_id": certificate}]}),
        );
    }
    for h in 0..args.http_apis {
        push(
            &mut out,
            &mut first,
            json!({"id": format!("h{h:09}"), "name": format!("http-api-{h}"),
                   "protocol_type": "HTTP", "stages": [{"name": "$default"}]}),
        );
    }
    out.push_str("]}");
    out
}

/// Seeds the fake with `body` and checks how many certificates and APIs it created.
fn seed(fake: &FakeControlPlane, body: &str, args: &Args) -> Result<()> {
    #[derive(Deserialize)]
    struct Answer {
        certificates: Vec<IgnoredAny>,
        rest_apis: Vec<IgnoredAny>,
        v2_apis: Vec<IgnoredAny>,
    }
    let mut response = ureq::post(&format!("{}/_fake/seed", fake.url))
        .header("content-type", "application/json")
        .send(body)
        .context("seed the fake")?;
    let text = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()?;
    let answer: Answer = serde_json::from_str(&text)
        .with_context(|| format!("seed answer: {}", &text[..text.len().min(500)]))?;
    ensure!(
        answer.certificates.len() == args.certificates
            && answer.rest_apis.len() == args.rest_apis
            && answer.v2_apis.len() == args.websocket_apis + args.http_apis,
        "the fake seeded something else than asked"
    );
    Ok(())
}

/// One certificate and key PEM for ACM imports, made with the venv's `cryptography`.
fn acm_pem(dir: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let script = r#"
import datetime as dt, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.platform.example.com")])
now = dt.datetime.now(dt.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=300)).not_valid_after(now + dt.timedelta(days=65))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256()))
open(sys.argv[1] + "/acm.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[1] + "/acm.key", "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    let status = Command::new(venv().join("bin/python"))
        .args(["-c", script])
        .arg(dir)
        .status()
        .context("run the venv's python")?;
    ensure!(status.success(), "generating the ACM PEM failed");
    Ok((
        std::fs::read(dir.join("acm.pem"))?,
        std::fs::read(dir.join("acm.key"))?,
    ))
}

/// Imports the same certificate `n` times into moto's ACM (each import gets a new ARN).
async fn import_acm(n: usize, pem: &[u8], key: &[u8]) -> Result<Vec<String>> {
    use aws_sdk_acm::primitives::Blob;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let acm = aws_sdk_acm::Client::new(&config);
    let mut arns = Vec::with_capacity(n);
    for _ in 0..n {
        let out = acm
            .import_certificate()
            .certificate(Blob::new(pem))
            .private_key(Blob::new(key))
            .send()
            .await
            .context("ACM ImportCertificate on moto")?;
        arns.push(
            out.certificate_arn()
                .context("ImportCertificate returned no ARN")?
                .to_string(),
        );
    }
    Ok(arns)
}

// ------------------------------------------------------------------------------------------
// Measuring
// ------------------------------------------------------------------------------------------

/// user + system CPU seconds of a process, from /proc/PID/stat (USER_HZ is 100 on Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// When the fake received its most recent call (its log keeps the last 500).
fn last_call_time(fake: &FakeControlPlane) -> Option<std::time::SystemTime> {
    #[derive(Deserialize)]
    struct Logged {
        time: f64,
    }
    #[derive(Deserialize)]
    struct Calls {
        recent: Vec<Logged>,
    }
    let calls: Calls = ureq::get(&format!("{}/_fake/calls?log=1", fake.url))
        .call()
        .ok()?
        .body_mut()
        .read_json()
        .ok()?;
    let last = calls.recent.iter().map(|c| c.time).fold(f64::NAN, f64::max);
    last.is_finite()
        .then(|| std::time::UNIX_EPOCH + Duration::from_secs_f64(last))
}

/// Busy CPU seconds of the whole machine (all cores), from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().next() else {
        return f64::NAN;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 8 {
        return f64::NAN;
    }
    (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100.0
}

/// Pid of our child process whose command line contains `needle`.
fn child_pid(needle: &str) -> Option<String> {
    let me = std::process::id();
    let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
    children
        .split_whitespace()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .map(str::to_string)
}

/// A field of /proc/self/status in kB (VmHWM, VmRSS).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so a run's own peak can be read.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[derive(Debug, Clone)]
struct Run {
    wall: Duration,
    cpu_self: f64,
    cpu_fake: f64,
    /// CPU used meanwhile by everything else on the machine (not us, the fake or moto).
    cpu_others: f64,
    /// From the last control-plane call the fake received to the end of the run: the serial
    /// tail (ACM reads, then, for the scan, the join: PEM parsing, owners, sorting).
    tail: Duration,
    /// Calls the fake counted.
    fake_calls: u64,
    /// DescribeCertificate calls sent to moto.
    describe: u64,
}

struct Probe {
    started: Instant,
    cpu_self: f64,
    cpu_fake: f64,
    cpu_moto: f64,
    cpu_machine: f64,
    pids: Pids,
}

/// The fake's and moto's pids, to read their CPU.
#[derive(Clone)]
struct Pids {
    fake: Option<String>,
    moto: Option<String>,
}

fn cpu_of(pid: &Option<String>) -> f64 {
    pid.as_deref().map_or(f64::NAN, cpu_seconds)
}

impl Probe {
    fn start(pids: &Pids) -> Probe {
        Probe {
            cpu_self: cpu_seconds("self"),
            cpu_fake: cpu_of(&pids.fake),
            cpu_moto: cpu_of(&pids.moto),
            cpu_machine: machine_busy_seconds(),
            pids: pids.clone(),
            started: Instant::now(),
        }
    }

    fn stop(self, fake: &FakeControlPlane, describe: u64) -> Run {
        let wall = self.started.elapsed();
        let ended = std::time::SystemTime::now();
        let cpu_self = cpu_seconds("self") - self.cpu_self;
        let cpu_fake = cpu_of(&self.pids.fake) - self.cpu_fake;
        let cpu_moto = cpu_of(&self.pids.moto) - self.cpu_moto;
        let cpu_machine = machine_busy_seconds() - self.cpu_machine;
        Run {
            wall,
            cpu_self,
            cpu_fake,
            cpu_others: (cpu_machine - cpu_self - cpu_fake - cpu_moto).max(0.0),
            tail: last_call_time(fake)
                .and_then(|t| ended.duration_since(t).ok())
                .unwrap_or_default(),
            fake_calls: fake.control_plane_calls(),
            describe,
        }
    }
}

// ------------------------------------------------------------------------------------------
// The scan, through the library
// ------------------------------------------------------------------------------------------

fn scan_settings(concurrency: usize) -> Result<Settings> {
    let env: Vec<(String, String)> = [
        ("CERTSENTINEL__AWS__REGIONS", "us-east-1".to_string()),
        (
            "CERTSENTINEL__AWS__RATE_LIMIT__REQUESTS_PER_SECOND",
            "1000000".to_string(),
        ),
        (
            "CERTSENTINEL__AWS__RATE_LIMIT__BURST",
            "1000000".to_string(),
        ),
        (
            "CERTSENTINEL__AWS__RATE_LIMIT__MAX_CONCURRENCY",
            concurrency.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(Settings::load_with_env(None, env)?)
}

fn scan_once(
    rt: &tokio::runtime::Runtime,
    settings: &Settings,
    fake: &FakeControlPlane,
    pids: &Pids,
    args: &Args,
) -> Result<Run> {
    fake.reset_calls();
    let probe = Probe::start(pids);
    // The SDK configuration is loaded per scan, as every scan did before the daemon kept one.
    let scan = rt.block_on(async {
        let base = certsentinel::inventory::aws::base_config(&settings.aws).await;
        scan_all(settings, &base, Arc::new(NoProgress)).await
    });
    let describe = scan
        .targets
        .iter()
        .map(|t| t.calls.get("DescribeCertificate").copied().unwrap_or(0))
        .sum();
    let run = probe.stop(fake, describe);
    ensure!(
        scan.complete(),
        "the scan is incomplete: {:?}",
        scan.targets
    );
    let certificates = scan.certificates().count();
    ensure!(
        certificates == args.certificates + args.acm,
        "the scan found {certificates} certificates, expected {}",
        args.certificates + args.acm
    );
    let acm_used = scan
        .certificates()
        .filter(|c| c.key.id.starts_with("arn:aws:acm:") && c.in_use())
        .count();
    ensure!(
        acm_used == args.acm,
        "{acm_used} ACM certificates in use, expected {}",
        args.acm
    );
    ensure!(
        scan.dangling().count() == 0,
        "dangling references in a clean estate"
    );
    drop(scan);
    Ok(run)
}

// ------------------------------------------------------------------------------------------
// The bare loop: the same calls, the same concurrency, a keep-alive client, minimal parsing
// ------------------------------------------------------------------------------------------

const APIGW_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/apigateway/aws4_request, SignedHeaders=host, Signature=0";
const ACM_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/acm/aws4_request, SignedHeaders=host, Signature=0";
const STS_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0";

/// Percent-encodes a query value (paging tokens are urlsafe base64, possibly padded).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct CertPage {
    item: Vec<IgnoredAny>,
    position: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct RestPage {
    item: Vec<IdOnly>,
    position: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2Api {
    api_id: String,
    protocol_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2Page {
    items: Vec<V2Api>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StageRef {
    client_certificate_id: Option<String>,
}

#[derive(Deserialize)]
struct RestStages {
    item: Vec<StageRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2Stages {
    items: Vec<StageRef>,
    next_token: Option<String>,
}

struct Bare {
    client: reqwest::Client,
    fake: String,
    moto: String,
    /// Bounds what is in flight across all reads, like the scanner's gate.
    gate: Semaphore,
}

#[derive(Debug, Default)]
struct BareFound {
    certificates: usize,
    rest_apis: usize,
    websocket_apis: usize,
    http_apis: usize,
    stages: usize,
    acm: usize,
}

impl Bare {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: String) -> Result<T> {
        let _permit = self.gate.acquire().await?;
        let url = format!("{}{path}", self.fake);
        let response = self
            .client
            .get(&url)
            .header("authorization", APIGW_AUTH)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status.is_success(),
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(serde_json::from_slice(&body)?)
    }

    async fn post_moto(&self, auth: &str, headers: &[(&str, &str)], body: String) -> Result<()> {
        let _permit = self.gate.acquire().await?;
        let mut request = self
            .client
            .post(format!("{}/", self.moto))
            .header("authorization", auth);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.body(body).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status.is_success(),
            "moto: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }

    async fn certificates(&self) -> Result<usize> {
        let mut n = 0;
        let mut position = String::new();
        loop {
            let page: CertPage = self
                .get(format!("/clientcertificates?limit=500&position={position}"))
                .await?;
            n += page.item.len();
            match page.position {
                Some(p) if !p.is_empty() => position = enc(&p),
                _ => return Ok(n),
            }
        }
    }

    async fn rest(&self, concurrency: usize) -> Result<(usize, Vec<String>)> {
        let mut apis = Vec::new();
        let mut position = String::new();
        loop {
            let page: RestPage = self
                .get(format!("/restapis?limit=500&position={position}"))
                .await?;
            apis.extend(page.item.into_iter().map(|a| a.id));
            match page.position {
                Some(p) if !p.is_empty() => position = enc(&p),
                _ => break,
            }
        }
        let refs: Vec<Vec<String>> = stream::iter(apis.iter())
            .map(|id| async move {
                let stages: RestStages = self.get(format!("/restapis/{id}/stages")).await?;
                Ok::<_, anyhow::Error>(
                    stages
                        .item
                        .into_iter()
                        .map(|s| s.client_certificate_id.unwrap_or_default())
                        .collect(),
                )
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        Ok((apis.len(), refs.into_iter().flatten().collect()))
    }

    async fn v2(&self, concurrency: usize) -> Result<(usize, usize, Vec<String>)> {
        let mut websocket = Vec::new();
        let mut http = 0;
        let mut token = String::new();
        loop {
            let page: V2Page = self
                .get(format!("/v2/apis?maxResults=500&nextToken={token}"))
                .await?;
            for api in page.items {
                if api.protocol_type == "WEBSOCKET" {
                    websocket.push(api.api_id);
                } else {
                    http += 1;
                }
            }
            match page.next_token {
                Some(t) if !t.is_empty() => token = enc(&t),
                _ => break,
            }
        }
        let refs: Vec<Vec<String>> = stream::iter(websocket.iter())
            .map(|id| async move {
                let mut refs = Vec::new();
                let mut token = String::new();
                loop {
                    let page: V2Stages = self
                        .get(format!(
                            "/v2/apis/{id}/stages?maxResults=500&nextToken={token}"
                        ))
                        .await?;
                    refs.extend(
                        page.items
                            .into_iter()
                            .map(|s| s.client_certificate_id.unwrap_or_default()),
                    );
                    match page.next_token {
                        Some(t) if !t.is_empty() => token = enc(&t),
                        _ => return Ok::<_, anyhow::Error>(refs),
                    }
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        Ok((websocket.len(), http, refs.into_iter().flatten().collect()))
    }

    /// The whole floor: identify the account (STS, as the scanner does with ambient
    /// credentials), the three listings in parallel with their stage reads, then one
    /// DescribeCertificate per distinct ACM certificate.
    async fn run(&self, concurrency: usize) -> Result<BareFound> {
        self.post_moto(
            STS_AUTH,
            &[("content-type", "application/x-www-form-urlencoded")],
            "Action=GetCallerIdentity&Version=2011-06-15".into(),
        )
        .await?;
        let (certificates, (rest_apis, rest_refs), (websocket_apis, http_apis, ws_refs)) = tokio::try_join!(
            self.certificates(),
            self.rest(concurrency),
            self.v2(concurrency)
        )?;
        let stages = rest_refs.len() + ws_refs.len();
        let arns: BTreeSet<&str> = rest_refs
            .iter()
            .chain(ws_refs.iter())
            .map(String::as_str)
            .filter(|r| r.starts_with("arn:aws:acm:"))
            .collect();
        let acm = arns.len();
        stream::iter(arns)
            .map(|arn| {
                self.post_moto(
                    ACM_AUTH,
                    &[
                        ("x-amz-target", "CertificateManager.DescribeCertificate"),
                        ("content-type", "application/x-amz-json-1.1"),
                    ],
                    format!("{{\"CertificateArn\":\"{arn}\"}}"),
                )
            })
            // The scanner reads ACM 8 at a time, under its gate.
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(BareFound {
            certificates,
            rest_apis,
            websocket_apis,
            http_apis,
            stages,
            acm,
        })
    }
}

fn bare_once(
    rt: &tokio::runtime::Runtime,
    fake: &FakeControlPlane,
    moto: &Moto,
    pids: &Pids,
    args: &Args,
) -> Result<Run> {
    fake.reset_calls();
    let probe = Probe::start(pids);
    let found = rt.block_on(async {
        let bare = Bare {
            client: reqwest::Client::builder().build()?,
            fake: fake.url.clone(),
            moto: moto.url.clone(),
            gate: Semaphore::new(args.concurrency),
        };
        bare.run(args.concurrency).await
    })?;
    let run = probe.stop(fake, found.acm as u64);
    ensure!(
        found.certificates == args.certificates
            && found.rest_apis == args.rest_apis
            && found.websocket_apis == args.websocket_apis
            && found.http_apis == args.http_apis
            && found.stages == args.rest_apis * args.stages_per_api + args.websocket_apis
            && found.acm == args.acm,
        "the bare loop read something else than the estate: {found:?}"
    );
    Ok(run)
}

// ------------------------------------------------------------------------------------------
// Breakdown: the scanner's CPU per operation, in process, without the network or the fake
// ------------------------------------------------------------------------------------------

/// An HTTP client for the SDK that answers every request with the same 200 body, at once.
#[derive(Debug, Clone)]
struct Canned(Arc<Vec<u8>>);

impl aws_smithy_runtime_api::client::http::HttpConnector for Canned {
    fn call(
        &self,
        _request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let response = aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
            200.try_into().expect("200 is a status"),
            aws_smithy_types::body::SdkBody::from(self.0.as_ref().clone()),
        );
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(response))
    }
}

/// The scanner's SDK configuration (`inventory::aws::base_config`), answering with `body`.
async fn canned_config(settings: &Settings, body: Vec<u8>) -> aws_config::SdkConfig {
    use aws_smithy_runtime_api::client::http::{SharedHttpConnector, http_client_fn};
    let base = certsentinel::inventory::aws::base_config(&settings.aws).await;
    let canned = Canned(Arc::new(body));
    base.to_builder()
        .http_client(http_client_fn(move |_, _| {
            SharedHttpConnector::new(canned.clone())
        }))
        .build()
}

/// Batches timed per measurement; the fastest batch counts (the others met interference).
const BATCHES: usize = 5;

/// Mean time of one of `n` sequential runs of `f`, in the fastest of `BATCHES` batches.
async fn mean_time<F, Fut>(n: usize, f: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await; // warm
    let mut best = Duration::MAX;
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..n {
            f().await;
        }
        best = best.min(started.elapsed() / n as u32);
    }
    best
}

fn mean_time_sync(n: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut best = Duration::MAX;
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(started.elapsed() / n as u32);
    }
    best
}

fn fetch(fake: &FakeControlPlane, path: &str) -> Result<Vec<u8>> {
    let mut response = ureq::get(&format!("{}{path}", fake.url))
        .header("authorization", APIGW_AUTH)
        .call()
        .with_context(|| format!("GET {path}"))?;
    Ok(response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()?)
}

/// Per-operation CPU of the scanner's SDK calls (canned answers: no network, no fake), of
/// the bare loop's parsing of the same bodies, and of reading every PEM; scaled to one scan.
fn breakdown(rt: &tokio::runtime::Runtime, fake: &FakeControlPlane, args: &Args) -> Result<()> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PemItem {
        pem_encoded_certificate: String,
        expiration_date: i64,
    }
    #[derive(Deserialize)]
    struct PemPage {
        item: Vec<PemItem>,
        position: Option<String>,
    }

    if args.rest_apis == 0 || args.websocket_apis == 0 {
        println!("breakdown skipped: it needs at least one REST and one WebSocket API");
        return Ok(());
    }
    let settings = scan_settings(args.concurrency)?;
    let cert_page = fetch(fake, "/clientcertificates?limit=500")?;
    let rest_page = fetch(fake, "/restapis?limit=500")?;
    let rest_stages = fetch(fake, "/restapis/r000000000/stages")?;
    let v2_page = fetch(fake, "/v2/apis?maxResults=500")?;
    let ws_id = format!("w{:09}", 0);
    let v2_stages = fetch(fake, &format!("/v2/apis/{ws_id}/stages?maxResults=500"))?;

    // Every PEM, as the certificate listing gives them.
    let mut pems: Vec<(Option<chrono::DateTime<chrono::Utc>>, String)> = Vec::new();
    let mut position = String::new();
    loop {
        let page: PemPage = serde_json::from_slice(&fetch(
            fake,
            &format!("/clientcertificates?limit=500&position={position}"),
        )?)?;
        pems.extend(page.item.into_iter().map(|c| {
            (
                chrono::DateTime::from_timestamp(c.expiration_date, 0),
                c.pem_encoded_certificate,
            )
        }));
        match page.position {
            Some(p) if !p.is_empty() => position = enc(&p),
            _ => break,
        }
    }

    let reps = |n: usize| n.clamp(20, 2000);
    let (empty_call, certs_call, rest_call, stages_call, v2_call, v2_stages_call) =
        rt.block_on(async {
            let v1 = |body: Vec<u8>| {
                let settings = &settings;
                async move { aws_sdk_apigateway::Client::new(&canned_config(settings, body).await) }
            };
            let v2 = |body: Vec<u8>| {
                let settings = &settings;
                async move {
                    aws_sdk_apigatewayv2::Client::new(&canned_config(settings, body).await)
                }
            };
            let empty = v1(br#"{"item":[]}"#.to_vec()).await;
            let certs = v1(cert_page.clone()).await;
            let rest = v1(rest_page.clone()).await;
            let stages = v1(rest_stages.clone()).await;
            let apis = v2(v2_page.clone()).await;
            let ws = v2(v2_stages.clone()).await;
            let empty_call = mean_time(2000, || async {
                empty.get_stages().rest_api_id("r000000000").send().await.unwrap();
            })
            .await;
            let certs_call = mean_time(50, || async {
                certs
                    .get_client_certificates()
                    .limit(500)
                    .send()
                    .await
                    .unwrap();
            })
            .await;
            let rest_call = mean_time(50, || async {
                rest.get_rest_apis().limit(500).send().await.unwrap();
            })
            .await;
            let stages_call = mean_time(reps(args.rest_apis), || async {
                stages.get_stages().rest_api_id("r000000000").send().await.unwrap();
            })
            .await;
            let v2_call = mean_time(50, || async {
                apis.get_apis().max_results("500").send().await.unwrap();
            })
            .await;
            let v2_stages_call = mean_time(reps(args.websocket_apis), || async {
                ws.get_stages()
                    .api_id(&ws_id)
                    .max_results("500")
                    .send()
                    .await
                    .unwrap();
            })
            .await;
            (empty_call, certs_call, rest_call, stages_call, v2_call, v2_stages_call)
        });

    // The bare loop's parsing of the same bodies.
    let bare_certs = mean_time_sync(50, || {
        let _: CertPage = serde_json::from_slice(&cert_page).unwrap();
    });
    let bare_rest = mean_time_sync(50, || {
        let _: RestPage = serde_json::from_slice(&rest_page).unwrap();
    });
    let bare_stages = mean_time_sync(2000, || {
        let _: RestStages = serde_json::from_slice(&rest_stages).unwrap();
    });
    let bare_v2 = mean_time_sync(50, || {
        let _: V2Page = serde_json::from_slice(&v2_page).unwrap();
    });
    let bare_v2_stages = mean_time_sync(2000, || {
        let _: V2Stages = serde_json::from_slice(&v2_stages).unwrap();
    });
    // Reading every PEM (what `scan::join` does for each certificate).
    let mut warnings = 0;
    let pem_all = mean_time_sync(1, || {
        warnings = 0;
        for (expiration, pem) in &pems {
            let e = certsentinel::inventory::pem::effective_expiry(*expiration, Some(pem.as_str()));
            warnings += e.warnings.len();
        }
    });
    ensure!(warnings == 0, "{warnings} PEM warnings in a clean estate");

    let pages = |n: usize| n.div_ceil(500).max(1);
    let rows: [(&str, usize, Duration, Duration); 5] = [
        (
            "GetClientCertificates (500/page)",
            pages(args.certificates),
            certs_call,
            bare_certs,
        ),
        (
            "GetRestApis (500/page)",
            pages(args.rest_apis),
            rest_call,
            bare_rest,
        ),
        ("GetStages (REST)", args.rest_apis, stages_call, bare_stages),
        (
            "v2 GetApis (500/page)",
            pages(args.websocket_apis + args.http_apis),
            v2_call,
            bare_v2,
        ),
        (
            "v2 GetStages",
            args.websocket_apis,
            v2_stages_call,
            bare_v2_stages,
        ),
    ];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration, n: usize| d.as_secs_f64() * 1e3 * n as f64;
    println!();
    println!(
        "where the scanner's CPU goes (in process, canned answers: no network, no fake; one thread; \
         fastest of {BATCHES} batches)"
    );
    println!(
        "{:<34} {:>6} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "operation",
        "calls",
        "SDK µs/call",
        "of which",
        "bare parse",
        "SDK ms/scan",
        "bare ms/scan"
    );
    println!(
        "{:<34} {:>6} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "", "", "", "body (µs)", "µs/call", "", ""
    );
    let (mut sdk_total, mut bare_total, mut calls) = (0.0, 0.0, 0);
    for (name, n, sdk, bare) in rows {
        let body = sdk.saturating_sub(empty_call);
        println!(
            "{name:<34} {n:>6} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            us(sdk),
            us(body),
            us(bare),
            ms(sdk, n),
            ms(bare, n)
        );
        sdk_total += ms(sdk, n);
        bare_total += ms(bare, n);
        calls += n;
    }
    println!(
        "{:<34} {calls:>6} {:>12} {:>12} {:>12} {sdk_total:>12.1} {bare_total:>12.1}",
        "all control-plane calls", "", "", ""
    );
    println!(
        "SDK fixed cost per call (GetStages answered with an empty list: orchestrator, \
         interceptors, endpoint, SigV4 signing, request serialization): {:.1} µs, {:.1} ms per scan",
        us(empty_call),
        ms(empty_call, calls)
    );
    println!(
        "PEM: effective_expiry of {} certificates: {:.1} ms ({:.1} µs each), on a blocking thread while the stage reads go on",
        pems.len(),
        pem_all.as_secs_f64() * 1e3,
        us(pem_all) / pems.len().max(1) as f64
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

struct Summary {
    min: f64,
    median: f64,
    cpu_self: f64,
    cpu_fake: f64,
    cpu_others: f64,
    tail_ms: f64,
}

fn summarize(runs: &[Run]) -> Summary {
    let walls: Vec<f64> = runs.iter().map(|r| r.wall.as_secs_f64()).collect();
    Summary {
        min: min(&walls),
        median: common::median(&walls),
        cpu_self: common::median(&runs.iter().map(|r| r.cpu_self).collect::<Vec<_>>()),
        cpu_fake: common::median(&runs.iter().map(|r| r.cpu_fake).collect::<Vec<_>>()),
        cpu_others: common::median(&runs.iter().map(|r| r.cpu_others).collect::<Vec<_>>()),
        tail_ms: common::median(
            &runs
                .iter()
                .map(|r| r.tail.as_secs_f64() * 1e3)
                .collect::<Vec<_>>(),
        ),
    }
}

fn calls_line(what: &str, runs: &[Run], fake_floor: u64, acm: usize) -> String {
    let floor = fake_floor + acm as u64;
    let all_equal = runs
        .iter()
        .all(|r| r.fake_calls == fake_floor && r.describe == acm as u64);
    let r = &runs[runs.len() - 1];
    format!(
        "{what:<5} calls: fake {} + DescribeCertificate {} = {} vs floor {fake_floor} + {acm} = {floor}: {} (in {} of {} runs)",
        r.fake_calls,
        r.describe,
        r.fake_calls + r.describe,
        if all_equal { "EQUAL" } else { "NOT EQUAL" },
        runs.iter()
            .filter(|r| r.fake_calls == fake_floor && r.describe == acm as u64)
            .count(),
        runs.len()
    )
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    println!("scan benchmark: {args:?}");
    let rss_at_start = status_kb("VmRSS:");

    let fake = FakeControlPlane::start();
    let moto = Moto::start();
    let pids = Pids {
        fake: child_pid("apigateway_fake.py"),
        moto: child_pid("moto_server"),
    };

    // The SDK reads its endpoints and credentials from the environment. No other thread of
    // ours exists yet (the runtime is built below), so changing the environment is sound.
    unsafe {
        for var in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            std::env::remove_var(var);
        }
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_API_GATEWAY", fake.url.as_str()),
            ("AWS_ENDPOINT_URL_APIGATEWAYV2", fake.url.as_str()),
            ("AWS_ENDPOINT_URL_ACM", moto.url.as_str()),
            ("AWS_ENDPOINT_URL_STS", moto.url.as_str()),
        ] {
            std::env::set_var(k, v);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // ---- seed --------------------------------------------------------------------------
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let arns = if args.acm > 0 {
        let (pem, key) = acm_pem(dir.path())?;
        rt.block_on(import_acm(args.acm, &pem, &key))?
    } else {
        Vec::new()
    };
    let body = estate(&args, &arns);
    seed(&fake, &body, &args)?;
    drop(body);
    println!(
        "seeded {} certificates, {} REST APIs x {} stages, {} WebSocket + {} HTTP APIs, {} ACM \
         certificates in {:.1} s",
        args.certificates,
        args.rest_apis,
        args.stages_per_api,
        args.websocket_apis,
        args.http_apis,
        args.acm,
        started.elapsed().as_secs_f64()
    );
    let rss_after_seed = status_kb("VmRSS:");
    // The peak so far is seeding's; reset it so that the first run's own peak can be read.
    let seeding_peak = status_kb("VmHWM:");
    let peak_was_reset = reset_peak_rss();

    let settings = scan_settings(args.concurrency)?;
    let fake_floor = args.fake_floor();
    let do_scan = args.mode != Mode::Bare;
    let do_bare = args.mode != Mode::Scan;

    // ---- warm up (the fake caches each resource's JSON on first read), then A B A B ----
    let mut scans = Vec::new();
    let mut bares = Vec::new();
    let mut warm = Vec::new();
    // VmHWM after the first run: that run's peak RSS (the scan's in modes both and scan).
    let mut first_run_peak = None;
    if do_scan {
        let r = scan_once(&rt, &settings, &fake, &pids, &args)?;
        first_run_peak = Some(("scan", status_kb("VmHWM:")));
        warm.push(format!("scan {:.3} s", r.wall.as_secs_f64()));
    }
    if do_bare {
        let r = bare_once(&rt, &fake, &moto, &pids, &args)?;
        first_run_peak.get_or_insert(("bare", status_kb("VmHWM:")));
        warm.push(format!("bare {:.3} s", r.wall.as_secs_f64()));
    }
    println!("warm-up: {}", warm.join(", "));
    for rep in 0..args.reps {
        let mut line = format!("rep {}:", rep + 1);
        if do_scan {
            let r = scan_once(&rt, &settings, &fake, &pids, &args)?;
            line += &format!(
                " scan {:.3} s (tail {:.0} ms; cpu {:.2} s, fake {:.2} s, others {:.2} s)",
                r.wall.as_secs_f64(),
                r.tail.as_secs_f64() * 1e3,
                r.cpu_self,
                r.cpu_fake,
                r.cpu_others
            );
            scans.push(r);
        }
        if do_bare {
            let r = bare_once(&rt, &fake, &moto, &pids, &args)?;
            line += &format!(
                " | bare {:.3} s (tail {:.0} ms; cpu {:.2} s, fake {:.2} s, others {:.2} s)",
                r.wall.as_secs_f64(),
                r.tail.as_secs_f64() * 1e3,
                r.cpu_self,
                r.cpu_fake,
                r.cpu_others
            );
            bares.push(r);
        }
        println!("{line}");
    }

    // ---- report ------------------------------------------------------------------------
    println!();
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>12} {:>12} {:>14}",
        "", "wall min", "wall med", "tail", "cpu (ours)", "cpu (fake)", "cpu (others)"
    );
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>12} {:>12} {:>14}",
        "", "", "", "median", "median", "median", "median"
    );
    let row = |name: &str, s: &Summary| {
        println!(
            "{name:<6} {:>8.3} s {:>8.3} s {:>7.0} ms {:>10.2} s {:>10.2} s {:>12.2} s",
            s.min, s.median, s.tail_ms, s.cpu_self, s.cpu_fake, s.cpu_others
        )
    };
    let scan_summary = (!scans.is_empty()).then(|| summarize(&scans));
    let bare_summary = (!bares.is_empty()).then(|| summarize(&bares));
    if let Some(s) = &scan_summary {
        row("scan", s);
    }
    if let Some(s) = &bare_summary {
        row("bare", s);
    }
    if let (Some(s), Some(b)) = (&scan_summary, &bare_summary) {
        let ratio = s.median / b.median;
        println!(
            "ratio of medians scan/bare: {ratio:.2} (target <= 1.3: {}); ratio of the minima {:.2}; \
             median of the per-rep ratios {:.2}",
            if ratio <= 1.3 { "met" } else { "NOT met" },
            s.min / b.min,
            common::median(
                &scans
                    .iter()
                    .zip(&bares)
                    .map(|(s, b)| s.wall.as_secs_f64() / b.wall.as_secs_f64())
                    .collect::<Vec<_>>()
            )
        );
    }
    println!(
        "(tail: from the last call the fake received to the end of the run: the {} ACM reads on \
         moto in both, then, in the scan, the join: PEM parsing, owners, sorting)",
        args.acm
    );
    if !scans.is_empty() {
        println!("{}", calls_line("scan", &scans, fake_floor, args.acm));
    }
    if !bares.is_empty() {
        println!("{}", calls_line("bare", &bares, fake_floor, args.acm));
    }
    println!(
        "(both also make one sts:GetCallerIdentity to moto: the scanner identifies the ambient \
         account with it)"
    );
    let mb = |kb: u64| kb as f64 / 1024.0;
    let runs_peak = status_kb("VmHWM:");
    println!(
        "peak RSS of the bench process (VmHWM): {:.1} MB over all runs{}; {:.1} MB while seeding; \
         RSS {:.1} MB at start, {:.1} MB after seeding",
        mb(runs_peak),
        first_run_peak.map_or(String::new(), |(what, kb)| format!(
            " ({:.1} MB after the first run, a {what})",
            mb(kb)
        )),
        mb(seeding_peak),
        mb(rss_at_start),
        mb(rss_after_seed),
    );
    if !peak_was_reset {
        println!(
            "(VmHWM could not be reset after seeding: the run figures include seeding's peak)"
        );
    }
    if args.breakdown {
        breakdown(&rt, &fake, &args)?;
    }
    Ok(())
}
