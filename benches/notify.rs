//! The delivery benchmark: 10,000 intents drained from a real store by the dispatcher
//! (`certsentinel::notify::Dispatcher`, webhook backend: signing, HTTP, a durable record of
//! each outcome) against a local receiver that answers every request after 20 ms, compared in
//! the same run with a bare HTTP loop that POSTs the same bodies at the same concurrency to the
//! same receiver. The bare loop is the floor: what the receiver's latency allows. The ratio of
//! the rates (dispatcher / bare) is what the dispatcher keeps of it (target >= 0.8).
//!
//! ```sh
//! cargo bench --bench notify
//! cargo bench --bench notify -- --intents 10000 --latency-ms 20 --parallel 8
//! ```
//!
//! It prints figures and asserts nothing about time; it checks that every intent was delivered
//! once. Peak memory is the process's VmHWM.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use certsentinel::config::Settings;
use certsentinel::ids::{CertificateKey, StageKey, StageKind};
use certsentinel::lifecycle::{
    Observation, ObservationSource, Policy, RenewalOutlook, Seen, StageUser, decide,
};
use certsentinel::notify::Dispatcher;
use certsentinel::store::{DEFAULT_CACHE_BYTES, SledStore, Store};
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Args {
    intents: usize,
    latency_ms: u64,
    parallel: usize,
}

fn args() -> Result<Args> {
    let mut args = Args {
        intents: 10_000,
        latency_ms: 20,
        parallel: 8,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--intents" => args.intents = value()?.parse()?,
            "--latency-ms" => args.latency_ms = value()?.parse()?,
            "--parallel" => args.parallel = value()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// A receiver that reads one HTTP/1.1 request at a time per connection, waits `latency`,
/// and answers 200; counts the requests it answered.
async fn receiver(latency: Duration) -> Result<(String, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let count = Arc::new(AtomicU64::new(0));
    let answered = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    // Read one request: headers, then Content-Length bytes of body.
                    let (head_end, length) = loop {
                        if let Some(end) = find(&buffer, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buffer.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..head_end + length);
                    tokio::time::sleep(latency).await;
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    Ok((url, count))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A store with `intents` pending intents: certificates in the window, each with its own
/// owner's episode (an open ticket and the 30-day step: two intents each).
fn populated(dir: &std::path::Path, intents: usize) -> Result<SledStore> {
    let store = SledStore::open(dir, DEFAULT_CACHE_BYTES)?;
    let now = Utc::now();
    let policy = Policy::default();
    let mut decisions = Vec::new();
    for i in 0..intents.div_ceil(2) {
        let stage = StageKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            kind: StageKind::Rest,
            api_id: format!("api{i:07}"),
            stage_name: "prod".into(),
        };
        let observation = Observation {
            certificate: CertificateKey {
                account: "111122223333".into(),
                region: "eu-west-1".into(),
                id: format!("cert{i:07}"),
            },
            observed_at: now,
            source: ObservationSource::FullScan,
            seen: Seen::Present {
                not_after: now + chrono::Duration::days(20),
                created_at: None,
                renewal: RenewalOutlook::Manual,
                users: vec![StageUser {
                    stage,
                    api_name: "orders".into(),
                    owner: Some(format!("team-{}", i % 50)),
                    partner: None,
                }],
                departed: BTreeMap::new(),
                successor: None,
            },
        };
        decisions.push(decide(None, &observation, &policy, now));
        if decisions.len() == 1_000 {
            store.commit_batch(&decisions)?;
            decisions.clear();
        }
    }
    store.commit_batch(&decisions)?;
    Ok(store)
}

fn main() -> Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (url, answered) = receiver(Duration::from_millis(args.latency_ms)).await?;
        let dir = tempfile::tempdir()?;
        let store = Arc::new(populated(dir.path(), args.intents)?);
        let pending = store.outbox_pending()?;
        let bodies: Vec<Vec<u8>> = pending
            .iter()
            .map(|e| serde_json::to_vec(&certsentinel::notify::webhook::body(&e.intent, "summary")))
            .collect::<Result<_, _>>()?;
        println!(
            "{} intents in {} episodes; receiver answers after {} ms; {} episodes at once",
            pending.len(),
            pending.len() / 2,
            args.latency_ms,
            args.parallel
        );

        // The bare loop: the same number of bodies, the same concurrency, one keep-alive
        // client, nothing recorded.
        let client = reqwest::Client::new();
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(bodies);
        let mut tasks = Vec::new();
        for _ in 0..args.parallel {
            let (client, url, next, bodies) = (client.clone(), url.clone(), next.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = bodies.get(i) else { break };
                    let _ = client.post(format!("{url}/bare")).body(body.clone()).send().await;
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let bare = started.elapsed();
        let bare_answered = answered.swap(0, Ordering::Relaxed);
        ensure!(bare_answered as usize == pending.len(), "the bare loop delivered {bare_answered}");

        // The dispatcher, through the settings a user writes.
        let config = format!(
            "[notify]\nparallel_episodes = {}\n[notify.default_route]\nwebhook_url = \"{url}/hooks\"\nwebhook_secret = \"${{BENCH_SECRET}}\"\n",
            args.parallel
        );
        let file = dir.path().join("bench.toml");
        std::fs::write(&file, config)?;
        let settings = Settings::load_with_env(
            Some(&file),
            [("BENCH_SECRET".to_string(), "bench-secret".to_string())],
        )?;
        let dispatcher = Dispatcher::new(store.clone(), &settings)?;
        let started = Instant::now();
        let drained = dispatcher.drain().await?;
        let took = started.elapsed();
        let delivered = answered.load(Ordering::Relaxed);
        ensure!(
            drained.completed == pending.len() && delivered as usize == pending.len(),
            "the dispatcher completed {} and the receiver answered {delivered} of {}",
            drained.completed,
            pending.len()
        );
        ensure!(store.outbox_pending()?.is_empty(), "the outbox is empty after the drain");

        let rate = |d: Duration| pending.len() as f64 / d.as_secs_f64();
        println!("bare loop     {:8.2} s  {:8.0} intents/s", bare.as_secs_f64(), rate(bare));
        println!(
            "dispatcher    {:8.2} s  {:8.0} intents/s  (each outcome recorded and flushed before the next of its episode)",
            took.as_secs_f64(),
            rate(took)
        );
        println!(
            "ratio of rates dispatcher/bare: {:.2} (target >= 0.8: {})",
            rate(took) / rate(bare),
            if rate(took) / rate(bare) >= 0.8 { "met" } else { "NOT met" }
        );
        println!("peak RSS of the bench process (VmHWM): {:.1} MiB", common::peak_mib());
        Ok(())
    })
}
