//! The change-event benchmark: stage switches made against the fake control plane, which
//! publishes each one (as CloudTrail and EventBridge would) to an SQS queue on moto_server,
//! received by the daemon, read again, decided, committed and told to a webhook.
//!
//! ```sh
//! cargo bench --bench events
//! cargo bench --bench events -- --events 1000 --rate 50 --apis 100
//! ```
//!
//! - Latency: the daemon runs in process (two receivers, as configured by default); the
//!   bench switches `--events` stages, one every 1/`--rate` s, each from a certificate with an
//!   open episode to a new one, and times each from just before its switch is sent to the
//!   control plane until the webhook receives the episode's resolution: p50, p99, max.
//! - Throughput: the same messages, queued again, drained by one loop of the daemon's step
//!   (`Changes::handle`: decode, re-read, decide, commit, then delete), compared in the same
//!   run with a bare loop that only receives and deletes them from the same queue. The bare
//!   loop is the floor: what moto's SQS allows. The ratio (daemon / bare) is what the daemon
//!   keeps of it (target >= 0.8).
//!
//! It prints figures and asserts nothing about time; it checks that every switch was told
//! once and every message handled. Peak memory is the process's VmHWM (the daemon included).

// The integration tests' harness; the benchmark uses only its spawn helpers.
#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use certsentinel::config::Settings;
use certsentinel::daemon::changes::Changes;
use certsentinel::events::Queue;
use serde_json::{Value, json};
use support::{FakeControlPlane, Moto, RunningDaemon, config_file, days_from_now, sdk_config};

struct Args {
    events: usize,
    rate: f64,
    apis: usize,
}

fn args() -> Result<Args> {
    let mut args = Args {
        events: 1000,
        rate: 50.0,
        apis: 100,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => args.events = value()?.parse()?,
            "--rate" => args.rate = value()?.parse()?,
            "--apis" => args.apis = value()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    ensure!(
        args.events >= args.apis && args.apis > 0,
        "--events >= --apis >= 1"
    );
    Ok(args)
}

/// What the webhook received: when, for which certificate, which intent (its key).
type Received = Arc<Mutex<Vec<(Instant, String, String)>>>;

async fn webhook() -> Result<(String, Received)> {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(r): State<Received>, Json(body): Json<Value>| async move {
                    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    let id = text(&body["intent"]["certificate"]["id"]);
                    r.lock()
                        .unwrap()
                        .push((Instant::now(), id, text(&body["key"])));
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

/// Stage `s{i}` of API `api{i % apis}` presents `old{i}` (20 days left, owner team-{i % 40});
/// `new{i}` (a year left) waits to replace it.
fn seed(fake: &FakeControlPlane, args: &Args) {
    let mut certificates = Vec::new();
    let mut apis: Vec<Vec<Value>> = vec![Vec::new(); args.apis];
    for i in 0..args.events {
        certificates.push(json!({"id": format!("old{i:05}"), "not_after": days_from_now(20)}));
        certificates.push(json!({"id": format!("new{i:05}"), "not_after": days_from_now(365)}));
        apis[i % args.apis].push(json!({"name": format!("s{i:05}"),
            "client_certificate_id": format!("old{i:05}"),
            "tags": {"owner": format!("team-{:02}", i % 40)}}));
    }
    let rest_apis: Vec<Value> = apis
        .into_iter()
        .enumerate()
        .map(|(a, stages)| json!({"id": format!("api{a:07}"), "name": format!("api-{a}"), "stages": stages}))
        .collect();
    fake.seed(json!({"certificates": certificates, "rest_apis": rest_apis}));
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sends `bodies` to the queue, ten at a time.
async fn enqueue(sqs: &aws_sdk_sqs::Client, queue: &str, bodies: &[String]) -> Result<()> {
    for (n, chunk) in bodies.chunks(10).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("{n}-{i}"))
                    .message_body(b)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let moto = Moto::start();
    let queue = moto.queue("events", 30, None);
    let fake = FakeControlPlane::start();
    seed(&fake, &args);
    fake.publish_events(&queue, false);
    let (hook, received) = runtime.block_on(webhook())?;
    let config = config_file(&format!(
        r#"
[aws]
regions = ["us-east-1"]
[aws.accounts]
list = [{{ id = "123456789012" }}]
[aws.rate_limit]
requests_per_second = 10000.0
burst = 1000
max_concurrency = 16
[daemon]
schedule = ""
scan_on_start = true
listen = "127.0.0.1:0"
[events]
queue_url = "{queue}"
wait_time_secs = 2
[notify]
interval_secs = 60
parallel_episodes = 16
[notify.default_route]
webhook_url = "{hook}"
webhook_secret = "${{HOOK_SECRET}}"
"#
    ));
    let env = [("HOOK_SECRET", "bench-secret-0123456789")];

    // The estate as the store knows it: every old certificate's episode open and told.
    let daemon = RunningDaemon::start(&config, &env, &fake);
    let started = Instant::now();
    while received.lock().unwrap().len() < args.events {
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the first scan's {} tickets were not all told",
            args.events
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let told_before = received.lock().unwrap().len();
    println!(
        "{} stages in {} REST APIs, each presenting a certificate with an open episode; \
         first scan and its {told_before} tickets in {:.1} s",
        args.events,
        args.apis,
        started.elapsed().as_secs_f64()
    );

    // Latency: switches at the given rate, each timed to its resolution at the webhook.
    let sdk = runtime.block_on(sdk_config(&fake.url));
    let apigateway = aws_sdk_apigateway::Client::new(&sdk);
    // The first receive of each receiver is a 2 s long poll that began before any switch:
    // let the receivers settle into their polls.
    std::thread::sleep(Duration::from_secs(3));
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let phase = Instant::now();
    runtime.block_on(async {
        let mut next = tokio::time::Instant::now();
        for i in 0..args.events {
            tokio::time::sleep_until(next).await;
            next += gap;
            sent_at.insert(format!("old{i:05}"), Instant::now());
            apigateway
                .update_stage()
                .rest_api_id(format!("api{:07}", i % args.apis))
                .stage_name(format!("s{i:05}"))
                .patch_operations(
                    aws_sdk_apigateway::types::PatchOperation::builder()
                        .op(aws_sdk_apigateway::types::Op::Replace)
                        .path("/clientCertificateId")
                        .value(format!("new{i:05}"))
                        .build(),
                )
                .send()
                .await?;
        }
        anyhow::Ok(())
    })?;
    let sending = phase.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let latencies: Vec<f64> = loop {
        let got = received.lock().unwrap()[told_before..].to_vec();
        let mut first: HashMap<&str, Instant> = HashMap::new();
        for (at, id, _) in &got {
            first.entry(id.as_str()).or_insert(*at);
        }
        if sent_at.keys().all(|id| first.contains_key(id.as_str())) {
            break sent_at
                .iter()
                .map(|(id, t)| (first[id.as_str()] - *t).as_secs_f64() * 1e3)
                .collect();
        }
        ensure!(
            Instant::now() < deadline,
            "not every switch was told within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let told = received.lock().unwrap().len() - told_before;
    let keys: std::collections::HashSet<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, key)| key.clone())
        .collect();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    println!();
    println!(
        "latency, switch sent -> its resolution received by the webhook ({} switches sent at {:.0}/s in {:.1} s; {told} requests):",
        args.events,
        args.rate,
        sending.as_secs_f64()
    );
    println!(
        "  p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms   (target p99 < 100 ms)",
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        percentile(&sorted, 0.99),
        sorted[sorted.len() - 1]
    );
    ensure!(
        keys.len() == received.lock().unwrap().len(),
        "an intent was delivered twice"
    );
    std::thread::sleep(Duration::from_secs(1));
    daemon.stop().map_err(|e| anyhow::anyhow!("{e}"))?;
    // A long poll the stopped daemon gave up on still runs in the queue until its wait ends,
    // and would hide the next messages for a visibility timeout: let it end first.
    std::thread::sleep(Duration::from_secs(3));

    // Throughput: the same messages again, drained by a bare loop, then by the daemon's step.
    let bodies: Vec<String> = fake
        .published()
        .iter()
        .filter(|e| e["event_name"] == "UpdateStage")
        .map(|e| e["body"].as_str().unwrap().to_string())
        .collect();
    ensure!(bodies.len() == args.events, "one event per switch");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let settings = Arc::new(Settings::load_with_env(Some(&config.path), env)?);
    let sqs_sdk = runtime.block_on(sdk_config(&moto.url));
    let sqs = aws_sdk_sqs::Client::new(&sqs_sdk);
    let events_queue = Queue::new(&sdk, &queue, &settings.events);
    // The daemon just closed the store; sled's threads may hold its lock a moment longer.
    let store = Arc::new(loop {
        match certsentinel::daemon::open_store(&settings) {
            Err(certsentinel::store::StoreError::Locked { .. }) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => break other?,
        }
    });
    let changes = Changes::new(
        settings.clone(),
        sdk.clone(),
        store.clone(),
        Arc::new(certsentinel::inventory::call::Paces::default()),
    );
    let (bare, daemon_step) = runtime.block_on(async {
        enqueue(&sqs, &queue, &bodies).await?;
        let t = Instant::now();
        let mut seen = 0;
        let mut receives = 0;
        while seen < bodies.len() {
            let batch = events_queue.receive().await?;
            receives += 1;
            seen += batch.len();
            let refs: Vec<&certsentinel::events::Message> = batch.iter().collect();
            events_queue.delete(&refs).await?;
        }
        let bare = bodies.len() as f64 / t.elapsed().as_secs_f64();
        let bare_receives = receives;

        enqueue(&sqs, &queue, &bodies).await?;
        let t = Instant::now();
        let mut handled = 0;
        let mut receives = 0;
        while handled < bodies.len() {
            let batch = events_queue.receive().await?;
            receives += 1;
            let done = changes
                .handle(batch)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(
                done.kept.is_empty(),
                "a message was kept: {:?}",
                done.events
            );
            handled += done.done.len();
            let refs: Vec<&certsentinel::events::Message> = done.done.iter().collect();
            events_queue.delete(&refs).await?;
        }
        let step = bodies.len() as f64 / t.elapsed().as_secs_f64();
        println!();
        println!(
            "throughput over {} messages, one loop each on the same queue ({bare_receives} and {receives} receives):",
            bodies.len()
        );
        anyhow::Ok((bare, step))
    })?;
    println!("  bare receive + delete           {bare:8.1} messages/s");
    println!("  daemon step (read, decide, commit, delete) {daemon_step:8.1} events/s");
    println!("  ratio {:.2} (target >= 0.8)", daemon_step / bare);
    println!();
    println!(
        "peak resident memory of this process (daemon included): {:.1} MiB",
        common::peak_mib()
    );
    Ok(())
}
