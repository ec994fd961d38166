//! `certsentinel run`: scheduled scans reconciled into the store, and a graceful stop, both in
//! process (the library's `Daemon` with a shutdown future of the test's own) and as the binary
//! on SIGTERM.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use certsentinel::config::Settings;
use certsentinel::daemon::Daemon;
use certsentinel::ids::CertificateKey;
use certsentinel::store::{SledStore, Store};
use serde_json::{Value, json};

use crate::helpers::*;

fn one_certificate_in_the_window(fake: &FakeControlPlane) {
    fake.seed(json!({
        "certificates": [{"id": "cert000001", "not_after": days_from_now(20)}],
        "rest_apis": [{"id": "api0000001", "name": "orders",
                       "stages": [{"name": "prod", "client_certificate_id": "cert000001"}]}]
    }));
}

#[test]
fn the_daemon_runs_in_process_until_its_shutdown_future_resolves() {
    let fake = FakeControlPlane::start();
    one_certificate_in_the_window(&fake);
    let config = config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"*/1 * * * * *\"\nscan_on_start = true\nlisten = \"127.0.0.1:0\"\n"
    ));
    let settings = Settings::load_with_env(Some(&config.path), Vec::new()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let daemon = Daemon::build_with_aws(settings, runtime.block_on(sdk_config(&fake.url))).unwrap();
    let store = daemon.store();
    let listen = daemon.listen_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runtime.spawn(daemon.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // It scans at start and again on its schedule, and commits what it decided.
    eventually(30, "two scans", || {
        fake.calls_of("GetClientCertificates") >= 2
    });
    let key = CertificateKey {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        id: "cert000001".into(),
    };
    let record = store.load(&key).unwrap().expect("the first scan's record");
    assert_eq!(record.open_episodes().count(), 1);

    // Its listener: alive, ready after a complete scan, and metrics a Prometheus parser reads.
    let base = format!("http://{}", listen.expect("a listener"));
    let get = |path: &str| http_get(&format!("{base}{path}"));
    assert_eq!(get("/healthz").0, 200);
    assert_eq!(get("/readyz").0, 200, "{}", get("/readyz").1);
    let (status, text) = get("/metrics");
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum::<f64>()
    };
    assert!(value("certsentinel_scans_total") >= 1.0, "{text}");
    assert!(value("certsentinel_aws_calls_total") >= 3.0, "{text}");
    assert_eq!(value("certsentinel_certificates"), 1.0, "{text}");
    assert!(
        value("certsentinel_nearest_expiry_in_use_days") >= 19.0,
        "{text}"
    );
    assert!(
        value("certsentinel_last_complete_scan_timestamp_seconds") > 0.0,
        "{text}"
    );
    assert_eq!(
        value("certsentinel_kpi_expiring_within_30_days"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value("certsentinel_kpi_owner_coverage_percent"),
        0.0,
        "{text}"
    );
    assert!(
        !store.outbox_pending().unwrap().is_empty() || !store.delivered(10).unwrap().is_empty(),
        "its intents are in the outbox, pending or delivered"
    );

    // The test's own shutdown future stops it: it returns Ok, and scans no more.
    stop.send(()).unwrap();
    let outcome = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), running).await })
        .expect("the daemon stops within 10 s of its shutdown future")
        .expect("the daemon task did not panic");
    outcome.expect("the daemon stops cleanly");
    let listings = fake.calls_of("GetClientCertificates");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        fake.calls_of("GetClientCertificates"),
        listings,
        "no scan after the stop"
    );
    drop(runtime);
}

#[test]
fn the_daemon_scans_on_its_schedule_and_stops_cleanly_on_sigterm() {
    let fake = FakeControlPlane::start();
    one_certificate_in_the_window(&fake);
    let config = config_file(&format!(
        r#"
[aws]
regions = ["us-east-1"]
[aws.accounts]
list = [{{ id = "123456789012" }}]
[aws.rate_limit]
requests_per_second = 1000.0
burst = 100
[daemon]
schedule = "*/2 * * * * *"
scan_on_start = true
listen = "127.0.0.1:{}"
"#,
        free_port()
    ));
    let mut child = certsentinel(Some(&fake), None)
        .arg("--config")
        .arg(&config.path)
        .args(["--log-format", "json", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut finished = Vec::new();
    let mut events = Vec::new();
    while finished.len() < 2 {
        let event = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon logs a finished scan within 30 s");
        if event["message"] == "scan finished" {
            finished.push(event.clone());
        }
        events.push(event);
    }
    assert_eq!(finished[0]["complete"], true);
    assert_eq!(finished[0]["certificates"], 1);
    assert!(
        finished[0]["intents"].as_u64().unwrap() >= 2,
        "open + escalate: {}",
        finished[0]
    );
    assert_eq!(
        finished[1]["intents"], 0,
        "the next scan decides nothing new"
    );
    // A readable log at the default level: nothing below info from anyone, no scheduler
    // bookkeeping, each decided intent on one line in words, and when the next scan is.
    for event in &events {
        assert!(
            event["level"] == "INFO" || event["level"] == "WARN" || event["level"] == "ERROR",
            "{event}"
        );
        let message = event["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("Uninited") && !message.contains("Job creator"),
            "{event}"
        );
    }
    // The decided intents, not the log backend's "would tell" lines that deliver them.
    let intents: Vec<&Value> = events
        .iter()
        .filter(|e| e["key"].is_string() && e["target"] != "certsentinel::notify")
        .collect();
    assert_eq!(
        intents.len() as u64,
        finished[0]["intents"].as_u64().unwrap()
    );
    assert!(
        intents.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with("open a medium priority ticket: expires")),
        "{intents:?}"
    );
    assert!(
        finished[0]["next_scan"].as_str().unwrap().ends_with('Z'),
        "{}",
        finished[0]
    );

    // While it runs it holds the store's lock: the state commands read through its listener,
    // and say so; a command that writes is refused with the way out.
    let state = |args: &[&str]| {
        let out = certsentinel(None, None)
            .arg("--config")
            .arg(&config.path)
            .arg("state")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let reads: &[&[&str]] = &[
        &["list", "--format", "json"],
        &["list"],
        &["show", "cert000001"],
        &["outbox", "--format", "json"],
        &["export"],
    ];
    let while_running: Vec<String> = reads
        .iter()
        .map(|args| {
            let (code, stdout, stderr) = state(args);
            assert_eq!(code, Some(0), "state {args:?}: {stderr}");
            assert!(
                stderr.contains("reading its state through http://127.0.0.1:"),
                "{stderr}"
            );
            stdout
        })
        .collect();
    let (code, _, stderr) = state(&["forget", "123456789012"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("stop it first"), "{stderr}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stopped = false;
    for _ in 0..100 {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !stopped {
        let _ = child.kill();
        panic!("the daemon did not stop within 10 s of SIGTERM");
    }
    let messages: Vec<Value> = rx.try_iter().collect();
    assert!(
        messages
            .iter()
            .any(|m| m["message"] == "certsentinel stopped"),
        "{messages:?}"
    );

    // What it committed is there for the state commands.
    let out = certsentinel(None, None)
        .arg("--config")
        .arg(&config.path)
        .args(["state", "list", "--format", "json"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], "cert000001");
    assert_eq!(rows[0]["open_episodes"], 1);
    // The same answers as through the daemon, but for what a scan since then moved (when it
    // observed and decided, the revision, the days left).
    for (args, before) in reads.iter().zip(&while_running) {
        let (code, stdout, stderr) = state(args);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("reading its state through"), "{stderr}");
        if args == &["list"] {
            assert_eq!(stdout.lines().count(), before.lines().count());
        } else {
            assert_eq!(settled(&stdout), settled(before), "state {args:?}");
        }
    }
}

/// JSON (or JSON lines) without the fields each scan moves.
fn settled(text: &str) -> Vec<Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for k in ["last_observed_at", "updated_at", "revision", "days_left"] {
                    map.remove(k);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut values: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect(),
    };
    values.iter_mut().for_each(strip);
    values
}

#[test]
fn a_bad_schedule_is_a_configuration_error() {
    let config = config_file("[daemon]\nschedule = \"every tuesday\"\n");
    let out = certsentinel(None, None)
        .arg("--config")
        .arg(&config.path)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon.schedule"));
}

#[test]
fn a_full_disk_stops_the_daemon_with_an_error_instead_of_wedging_it() {
    let fake = FakeControlPlane::start();
    let certificates: Vec<Value> = (0..3_000)
        .map(|i| json!({"id": format!("k{i:09}"), "not_after": days_from_now(20)}))
        .collect();
    let apis: Vec<Value> = (0..30)
        .map(|j| {
            let stages: Vec<Value> = (0..100)
                .map(|k| json!({"name": format!("s{k}"), "client_certificate_id": format!("k{:09}", j * 100 + k)}))
                .collect();
            json!({"id": format!("a{j:09}"), "name": format!("api-{j}"), "stages": stages})
        })
        .collect();
    fake.seed(json!({"certificates": certificates, "rest_apis": apis}));
    let config = config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"*/1 * * * * *\"\nscan_on_start = true\nlisten = \"127.0.0.1:0\"\n"
    ));
    // Writing past RLIMIT_FSIZE fails with EFBIG as writing to a full disk fails with ENOSPC
    // (SIGXFSZ ignored, so the write fails instead of killing the process). The limit leaves
    // room to open the database, not to commit thousands of decisions.
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_certsentinel"))
        .arg("--config")
        .arg(&config.path)
        .args(["--log-format", "json", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    aim(&mut cmd, Some(&fake), None);
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running with a store it cannot write");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = reader.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("the state database failed"), "{log}");
}

#[test]
fn observations_older_than_the_store_are_said_not_silently_dropped() {
    use certsentinel::lifecycle::{
        Observation, ObservationSource, Policy, RenewalOutlook, Seen, decide,
    };

    let fake = FakeControlPlane::start();
    one_certificate_in_the_window(&fake);
    let config = config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nscan_on_start = true\nlisten = \"127.0.0.1:0\"\n"
    ));
    // A host whose clock ran a day ahead recorded this certificate "tomorrow".
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    {
        let store = SledStore::open(config.store_path(), 8 << 20).unwrap();
        let observation = Observation {
            certificate: CertificateKey {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                id: "cert000001".into(),
            },
            observed_at: tomorrow,
            source: ObservationSource::FullScan,
            seen: Seen::Present {
                not_after: tomorrow + chrono::Duration::days(19),
                created_at: None,
                renewal: RenewalOutlook::Manual,
                users: vec![],
                departed: Default::default(),
                successor: None,
            },
        };
        store
            .commit(&decide(None, &observation, &Policy::default(), tomorrow))
            .unwrap();
    }
    let mut child = certsentinel(Some(&fake), None)
        .arg("--config")
        .arg(&config.path)
        .args(["--log-format", "json", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut warned = None;
    for line in std::io::BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["stale"].is_number() {
            warned = Some(event.clone());
        }
        if event["message"] == "scan finished" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let warned = warned.expect("the ignored observation is logged");
    assert_eq!(warned["level"], "WARN");
    assert_eq!(warned["stale"], 1);
}

#[test]
fn the_daemon_is_not_ready_before_a_complete_scan() {
    let config = config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nscan_on_start = false\nlisten = \"127.0.0.1:0\"\n"
    ));
    let settings = Settings::load_with_env(Some(&config.path), Vec::new()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let daemon =
        Daemon::build_with_aws(settings, runtime.block_on(sdk_config("http://127.0.0.1:9")))
            .unwrap();
    let base = format!("http://{}", daemon.listen_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runtime.spawn(daemon.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let get = |path: &str| {
        let mut answer = ureq::get(&format!("{base}{path}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call();
        while answer.is_err() {
            std::thread::sleep(Duration::from_millis(20));
            answer = ureq::get(&format!("{base}{path}"))
                .config()
                .http_status_as_error(false)
                .build()
                .call();
        }
        let mut answer = answer.unwrap();
        (
            answer.status().as_u16(),
            answer.body_mut().read_to_string().unwrap(),
        )
    };
    assert_eq!(get("/healthz").0, 200);
    let (status, why) = get("/readyz");
    assert_eq!(status, 503);
    assert!(
        why.contains("no scan has read every account and region yet"),
        "{why}"
    );
    stop.send(()).unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), running).await })
        .expect("stops")
        .expect("no panic")
        .expect("clean stop");
}

#[test]
fn the_daemon_turns_unready_when_its_last_complete_scan_is_too_old() {
    let fake = FakeControlPlane::start();
    one_certificate_in_the_window(&fake);
    // Scans every second: two periods are two seconds.
    let config = config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"*/1 * * * * *\"\nscan_on_start = true\nlisten = \"127.0.0.1:0\"\n"
    ));
    let daemon = RunningDaemon::start(&config, &[], &fake);
    eventually(20, "ready after a complete scan", || {
        daemon.get("/readyz").0 == 200
    });
    // From now on every read is denied: scans go on, none is complete.
    fake.fault("*", "access_denied", 1_000_000, 0);
    eventually(20, "unready once the last complete scan is too old", || {
        daemon.get("/readyz").0 == 503
    });
    let (_, why) = daemon.get("/readyz");
    assert!(why.contains("more than two schedule periods ago"), "{why}");
    assert!(daemon.metric("certsentinel_scans_total", &[("outcome", "partial")]) >= 1.0);
    assert_eq!(daemon.get("/healthz").0, 200, "alive all the same");
    daemon.stop().expect("stops cleanly");
}

#[test]
fn the_daemon_records_each_region_as_it_is_read_and_a_failed_one_as_unreadable() {
    let fake = FakeControlPlane::start();
    one_certificate_in_the_window(&fake);
    fake.seed(json!({"region": "eu-west-1",
                     "certificates": [{"id": "cert000002", "not_after": days_from_now(200)}]}));
    fake.fault_spec(
        json!({"operation": "*", "kind": "access_denied", "count": 1_000_000,
                           "region": "eu-west-1"}),
    );
    let config = config_file(
        &format!(
            "{FAST}\n[aws]\nregions = [\"us-east-1\", \"eu-west-1\"]\n\
         [daemon]\nschedule = \"0 0 0 1 1 *\"\nscan_on_start = true\nlisten = \"127.0.0.1:0\"\n"
        )
        .replacen("[aws]\nregions = [\"us-east-1\"]\n", "", 1),
    );
    let daemon = RunningDaemon::start(&config, &[], &fake);
    eventually(20, "the scan recorded", || {
        daemon.metric("certsentinel_scans_total", &[("outcome", "partial")]) == 1.0
    });
    let key = CertificateKey {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        id: "cert000001".into(),
    };
    assert_eq!(
        daemon
            .store
            .load(&key)
            .unwrap()
            .unwrap()
            .open_episodes()
            .count(),
        1,
        "the readable region is decided"
    );
    let health = daemon
        .store
        .target("123456789012", "eu-west-1")
        .unwrap()
        .expect("the failed region's read health");
    assert!(health.unreadable_since.is_some(), "{health:?}");
    assert!(
        daemon
            .store
            .keys_in("123456789012", "eu-west-1")
            .unwrap()
            .is_empty(),
        "nothing decided where nothing was read"
    );
    assert_eq!(
        daemon.metric("certsentinel_certificates", &[]),
        1.0,
        "counted as it was recorded"
    );
    daemon.stop().expect("stops cleanly");
}
