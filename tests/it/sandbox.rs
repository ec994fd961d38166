//! `tests/sandbox.sh`, the README's first command, as a newcomer runs it: twice.

use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

fn sandbox(state: &std::path::Path) -> (i32, Value, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("tests/sandbox.sh"))
        .args(["--format", "json"])
        .env("CERTSENTINEL_BIN", env!("CARGO_BIN_EXE_certsentinel"))
        .env("CERTSENTINEL__STORE__PATH", state)
        .env("CERTSENTINEL_VENV", venv());
    sandbox_env(&mut cmd);
    let out = cmd.output().expect("run tests/sandbox.sh");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("sandbox output is not JSON ({e}); stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), doc, stderr)
}

#[test]
fn the_sandbox_decides_everything_once_and_nothing_on_its_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, first, stderr) = sandbox(&state);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["complete"], true);
    assert!(first["summary"]["certificates"].as_u64().unwrap() >= 30);
    assert!(!first["reconcile"]["intents"].as_array().unwrap().is_empty());
    let (code, second, stderr) = sandbox(&state);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        second["reconcile"]["intents"].as_array().unwrap().len(),
        0,
        "{}",
        second["reconcile"]["intents"]
    );
}
