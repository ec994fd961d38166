//! `deploy/`: the member rule's EventBridge pattern matches exactly the recorded CloudTrail
//! events the daemon acts on (moto's EventBridge matcher, in `deploy/tests/check_deploy.py`),
//! the templates' policies are the documents of `deploy/iam/`, and the manifests, unit,
//! image and example configuration agree (the configuration passes `check-config` of this
//! build). The linters themselves (cfn-lint, parliament, kubernetes-validate, hadolint,
//! shellcheck, systemd-analyze) run in `.ci/run` through `deploy/lint.sh`.

use crate::helpers::{repo_root, venv};

#[test]
fn the_event_rule_forwards_exactly_what_the_daemon_acts_on_and_deploy_agrees_with_itself() {
    let out = std::process::Command::new(venv().join("bin/python"))
        .arg(repo_root().join("deploy/tests/check_deploy.py"))
        .arg("--fixtures")
        .arg(repo_root().join("tests/fixtures/cloudtrail"))
        .env("CERTSENTINEL_BIN", env!("CARGO_BIN_EXE_certsentinel"))
        .output()
        .expect("run deploy/tests/check_deploy.py");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(" 0 failed"), "{said}");
    assert!(
        said.contains("accepts the ConfigMap's configuration"),
        "the example configuration was checked by this build: {said}"
    );
}
