//! The command line as a newcomer meets it: misuse and bad configuration tell apart by exit
//! code, read-only commands write nothing, a closed pipe is no crash, a held store is named.

use std::io::Read;
use std::process::Stdio;

use certsentinel::store::{DEFAULT_CACHE_BYTES, SledStore};
use serde_json::json;

use crate::helpers::*;

fn run(config: &ConfigFile, args: &[&str]) -> (i32, String, String) {
    let out = certsentinel(None, None)
        .arg("--config")
        .arg(&config.path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn misuse_of_the_command_line_and_an_invalid_configuration_exit_differently() {
    let config = config_file(FAST);
    let (code, _, stderr) = run(&config, &["scan"]);
    assert_eq!(code, 64, "a missing --once is misuse: {stderr}");
    let (code, _, _) = run(&config, &["--no-such-flag", "check-config"]);
    assert_eq!(code, 64);
    let (code, _, _) = run(&config, &["--help"]);
    assert_eq!(code, 0);
    let bad = config_file("[policy]\nwindow_days = \"soon\"\n");
    let (code, _, stderr) = run(&bad, &["check-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("policy.window_days"), "{stderr}");
}

#[test]
fn check_config_refuses_a_store_path_that_cannot_hold_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").unwrap();
    let config = config_file(&format!(
        "{FAST}\n[store]\npath = {:?}\n",
        file.display().to_string()
    ));
    let (code, _, stderr) = run(&config, &["check-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("store.path"), "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
}

#[test]
fn reading_the_state_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let somewhere = dir.path().join("somewhere-else");
    std::fs::create_dir(&somewhere).unwrap();
    std::fs::write(somewhere.join("README"), "not a store").unwrap();
    for path in [somewhere.clone(), dir.path().join("absent")] {
        let config = config_file(&format!(
            "{FAST}\n[store]\npath = {:?}\n",
            path.display().to_string()
        ));
        for args in [
            &["state", "list"][..],
            &["state", "export"],
            &["state", "show", "x"],
        ] {
            let (code, _, stderr) = run(&config, args);
            assert_eq!(code, 1, "{args:?}: {stderr}");
            assert!(stderr.contains("no state database"), "{stderr}");
        }
    }
    let names: Vec<_> = std::fs::read_dir(&somewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["README"],
        "nothing was created in {}",
        somewhere.display()
    );
    assert!(!dir.path().join("absent").exists());
}

#[test]
fn a_reader_that_goes_away_is_no_crash() {
    let fake = FakeControlPlane::start();
    let certificates: Vec<_> = (0..300)
        .map(|i| json!({"id": format!("cert{i:06}"), "not_after": days_from_now(20)}))
        .collect();
    fake.seed(json!({"certificates": certificates}));
    let config = config_file(FAST);
    let (code, _, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    for args in [&["state", "export"][..], &["state", "list"]] {
        // The reader takes a few bytes and closes its end, as `| head -c 10` does.
        let mut child = certsentinel(None, None)
            .arg("--config")
            .arg(&config.path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 10];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn a_store_held_by_another_certsentinel_is_named_as_such() {
    let config = config_file(FAST);
    let path = config.store_path();
    let held = SledStore::open(&path, DEFAULT_CACHE_BYTES).unwrap();
    let (code, _, stderr) = run(&config, &["state", "list"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("another certsentinel holds the state database"),
        "{stderr}"
    );
    assert!(stderr.lines().count() <= 3, "short: {stderr}");
    drop(held);
    let (code, _, stderr) = run(&config, &["state", "list"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn check_config_says_whether_the_daemon_scans_consumes_events_or_both() {
    let scans = config_file(FAST);
    let (code, stdout, stderr) = run(&scans, &["check-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(
            "# certsentinel run will run: scheduled scans (0 0 */6 * * *) only (no events.queue_url)\n"
        ),
        "{stdout}"
    );
    let both = config_file(&format!(
        "{FAST}\n[events]\nqueue_url = [\"https://sqs.eu-west-1.amazonaws.com/111122223333/a\", \"https://sqs.us-east-1.amazonaws.com/111122223333/b\"]\n"
    ));
    let (_, stdout, _) = run(&both, &["check-config"]);
    assert!(
        stdout.contains("scheduled scans (0 0 */6 * * *) and change events from 2 SQS queues"),
        "{stdout}"
    );
    let events = config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"\"\n[events]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/111122223333/a\"\n"
    ));
    let (_, stdout, _) = run(&events, &["check-config"]);
    assert!(
        stdout.contains("change events from 1 SQS queue only (no daemon.schedule)"),
        "{stdout}"
    );
    let nothing = config_file(&format!("{FAST}\n[daemon]\nschedule = \"\"\n"));
    let (code, _, stderr) = run(&nothing, &["check-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("daemon.schedule"), "{stderr}");
    let bad = config_file(&format!(
        "{FAST}\n[events]\nqueue_url = \"sqs://nowhere\"\n"
    ));
    let (code, _, stderr) = run(&bad, &["check-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("events.queue_url[0]"), "{stderr}");
    // From the environment, a comma-separated list.
    let out = certsentinel(None, None)
        .env(
            "CERTSENTINEL__EVENTS__QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/a, https://sqs.eu-west-1.amazonaws.com/1/b",
        )
        .arg("--config")
        .arg(&scans.path)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("change events from 2 SQS queues"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_scan_at_the_default_level_logs_a_few_lines_and_no_debug() {
    let fake = FakeControlPlane::start();
    fake.seed(
        json!({"certificates": [{"id": "aaaaaaaaaa", "not_after": days_from_now(20)}],
                     "rest_apis": [{"id": "api0000001", "name": "orders",
                       "stages": [{"name": "prod", "client_certificate_id": "aaaaaaaaaa"}]}]}),
    );
    let config = config_file(FAST);
    let (code, _, stderr) = scan_json(certsentinel(Some(&fake), None), &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains("DEBUG") && !stderr.contains("TRACE"),
        "{stderr}"
    );
    assert!(stderr.lines().count() <= 10, "a few lines: {stderr}");
    // Asked for, debug is there, and still nothing of the SDK below it.
    let mut cmd = certsentinel(Some(&fake), None);
    cmd.env("RUST_LOG", "trace").args(["--log-format", "json"]);
    let (code, _, stderr) = scan_json(cmd, &config);
    assert_eq!(code, 0);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(events.iter().any(|e| e["level"] == "DEBUG"));
    let below_debug = events.iter().filter(|e| {
        e["level"] == "TRACE"
            && [
                "aws_smithy",
                "aws_sigv4",
                "aws_runtime",
                "aws_config",
                "hyper",
            ]
            .iter()
            .any(|t| e["target"].as_str().unwrap_or_default().starts_with(t))
    });
    assert_eq!(below_debug.count(), 0, "the SDK never logs below debug");
}

#[test]
fn a_failed_call_is_said_in_one_line_without_the_sdk_debug_dump() {
    // The account is checked, then nothing listens where API Gateway should answer: every
    // call of the scan fails to connect, and is retried first.
    let fake = FakeControlPlane::start();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = config_file(&FAST.replace(
        "max_backoff_ms = 200",
        "max_backoff_ms = 20\nmax_attempts = 2",
    ));
    let mut cmd = certsentinel(Some(&fake), None);
    cmd.env("AWS_ENDPOINT_URL_API_GATEWAY", &closed)
        .env("AWS_ENDPOINT_URL_APIGATEWAYV2", &closed);
    let (code, doc, stderr) = scan_json(cmd, &config);
    assert_eq!(code, 3, "{stderr}");
    let error = doc["targets"][0]["error"].as_str().unwrap();
    assert!(!error.contains('\n'), "{error}");
    for dump in ["DispatchFailure(", "ConnectorError", "source: ", "{ "] {
        assert!(!error.contains(dump), "{dump} in {error}");
    }
    assert!(error.to_lowercase().contains("connect"), "{error}");
    assert!(
        error.contains("after 2 attempt(s)"),
        "retried first: {error}"
    );
}

#[test]
fn reading_commands_never_migrate_an_older_database() {
    let config = config_file(FAST);
    let path = config.store_path();
    {
        // A database as an older certsentinel left it (schema 3: no read health yet).
        let db = sled::open(&path).unwrap();
        db.insert("schema_version", &3u32.to_be_bytes()).unwrap();
        for tree in ["records", "outbox", "intent_keys", "locations"] {
            db.open_tree(tree).unwrap();
        }
        db.flush().unwrap();
    }
    let fake = FakeControlPlane::start();
    for args in [&["state", "list"][..], &["scan", "--once", "--dry-run"]] {
        let out = certsentinel(Some(&fake), None)
            .arg("--config")
            .arg(&config.path)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("does not migrate"), "{args:?}: {stderr}");
    }
    let db = sled::open(&path).unwrap();
    assert_eq!(
        db.get("schema_version").unwrap().unwrap().as_ref(),
        3u32.to_be_bytes(),
        "still version 3"
    );
    assert!(!db.tree_names().iter().any(|n| &n[..] == b"targets"));
}
