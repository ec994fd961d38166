//! The AWS permissions certsentinel needs: `src/permissions.rs` lists every operation the code
//! calls; here the list is held to the code (every SDK call in `src/` is listed, every listed
//! call is made) and the IAM policies in `deploy/iam/` to the list (every operation allowed,
//! nothing allowed that no operation needs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use certsentinel::permissions::{AWS_OPERATIONS, Principal};
use serde_json::Value;

use crate::helpers::{repo_root, rust_sources};

/// The operations (as the SDK's snake_case client methods) of each `aws-sdk-*` crate this
/// package depends on, read from the crates' sources (`src/operation/<method>/`).
fn sdk_methods() -> BTreeMap<String, BTreeSet<String>> {
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // This platform's packages only: they are the ones the build has fetched.
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "certsentinel")
        .unwrap();
    let direct: BTreeSet<&str> = ours["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .filter(|n| n.starts_with("aws-sdk-"))
        .collect();
    let mut methods = BTreeMap::new();
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if !direct.contains(name) {
            continue;
        }
        let dir = Path::new(package["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .join("src/operation");
        let ops: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        methods.insert(name.trim_start_matches("aws-sdk-").to_string(), ops);
    }
    assert!(methods.len() >= 7, "every SDK crate found: {methods:?}");
    methods
}

/// Whether `text` calls the SDK client method `method`: a call with no argument followed by
/// the request's builder (`.get_stages().rest_api_id(..)`, `.list_accounts().send()`). Our
/// own functions of the same names take arguments or are awaited at once.
fn sdk_call(text: &str, method: &str) -> bool {
    let call = format!(".{method}()");
    text.match_indices(&call).any(|(i, _)| {
        let after = text[i + call.len()..].trim_start();
        after.starts_with('.') && !after.starts_with(".await")
    })
}

#[test]
fn every_aws_call_in_the_code_is_listed_and_every_listed_call_is_made() {
    let methods = sdk_methods();
    let text: String = rust_sources(&repo_root().join("src"))
        .iter()
        .filter(|f| !f.ends_with("permissions.rs"))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut called: BTreeSet<(String, String)> = BTreeSet::new();
    for (service, ops) in &methods {
        for op in ops {
            if sdk_call(&text, op) {
                called.insert((service.clone(), op.clone()));
            }
        }
    }
    let listed: BTreeSet<(String, String)> = AWS_OPERATIONS
        .iter()
        .filter_map(|o| o.sdk_method.map(|m| (o.service.to_string(), m.to_string())))
        .collect();
    for (service, method) in &listed {
        assert!(
            methods[service].contains(method),
            "aws-sdk-{service} has no operation {method}"
        );
        assert!(
            sdk_call(&text, method),
            "src/permissions.rs lists {service} {method}, which the code never calls"
        );
    }
    // A method both API Gateway crates have (`get_stages`) counts as called by each listed.
    let unlisted: Vec<&(String, String)> = called
        .iter()
        .filter(|(service, method)| {
            !listed.contains(&(service.clone(), method.clone()))
                && !listed
                    .iter()
                    .any(|(s, m)| m == method && methods[s].contains(method))
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "AWS calls in src/ that src/permissions.rs does not list: {unlisted:?}"
    );
    // The one call the SDK makes for us.
    assert!(
        text.contains("AssumeRoleProvider"),
        "sts:AssumeRole is made by aws-config's AssumeRoleProvider"
    );
}

/// IAM's wildcard match: `*` any run of characters (slashes included), `?` any one.
fn iam_match(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // Classic glob by dynamic programming: matched[j] = p[..i] matches v[..j].
    let mut matched = vec![false; v.len() + 1];
    matched[0] = true;
    for c in &p {
        let mut next = vec![false; v.len() + 1];
        for j in 0..=v.len() {
            next[j] = match c {
                '*' => matched[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && matched[j - 1],
                c => j > 0 && matched[j - 1] && v[j - 1] == *c,
            };
        }
        matched = next;
    }
    matched[v.len()]
}

/// A statement's `Action` or `Resource`, one value or a list.
fn values(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// Which policy document grants each principal's operations, and what its placeholders stand
/// for in this check (an account, a region, the queue, the role): the operations' resources
/// are made concrete with the same values.
struct Grant {
    file: &'static str,
    principal: Principal,
    account: &'static str,
    region: &'static str,
    id: &'static str,
}

const GRANTS: &[Grant] = &[
    Grant {
        file: "member-read-policy.json",
        principal: Principal::MemberReadRole,
        account: "111122223333",
        region: "eu-west-1",
        id: "abc123",
    },
    Grant {
        file: "daemon-policy.json",
        principal: Principal::Daemon,
        account: "CENTRAL_ACCOUNT_ID",
        region: "CENTRAL_REGION",
        id: "certsentinel-events",
    },
];

#[test]
fn the_iam_policies_allow_every_operation_the_code_calls_and_nothing_more() {
    for grant in GRANTS {
        let path = repo_root().join("deploy/iam").join(grant.file);
        // `${aws:PrincipalAccount}` is the member account the role lives in.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("${aws:PrincipalAccount}", grant.account);
        let policy: Value = serde_json::from_str(&text).unwrap();
        let statements: Vec<(Vec<String>, Vec<String>)> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["Effect"], "Allow", "{}: {s}", grant.file);
                assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
                (values(&s["Action"]), values(&s["Resource"]))
            })
            .collect();
        let needed: Vec<(&str, String)> = AWS_OPERATIONS
            .iter()
            .filter(|o| o.principal == grant.principal)
            .filter_map(|o| {
                let resource = o
                    .resource
                    .replace("{partition}", "aws")
                    .replace("{region}", grant.region)
                    .replace("{account}", grant.account)
                    .replace(
                        "{id}",
                        if o.operation == "AssumeRole" {
                            "certsentinel-read"
                        } else {
                            grant.id
                        },
                    );
                o.iam_action.map(|action| (action, resource))
            })
            .collect();
        // Every operation is allowed.
        for (action, resource) in &needed {
            assert!(
                statements.iter().any(|(actions, resources)| {
                    actions.iter().any(|a| iam_match(a, action))
                        && resources.iter().any(|r| iam_match(r, resource))
                }),
                "{} does not allow {action} on {resource}",
                grant.file
            );
        }
        // Nothing more: each action and each resource of each statement serves an operation.
        for (actions, resources) in &statements {
            for a in actions {
                assert!(
                    !a.contains('*'),
                    "{}: a wildcard action ({a}) allows more than is needed",
                    grant.file
                );
                assert!(
                    needed.iter().any(|(action, _)| action == a),
                    "{}: {a} is allowed, and no operation of the code needs it",
                    grant.file
                );
            }
            for r in resources {
                assert!(
                    needed
                        .iter()
                        .any(|(action, resource)| actions.iter().any(|a| a == action)
                            && iam_match(r, resource)),
                    "{}: {r} is granted ({actions:?}), and no operation of the code acts on it",
                    grant.file
                );
            }
        }
    }
}

#[test]
fn iam_wildcards_match_as_iam_does() {
    assert!(iam_match(
        "arn:aws:apigateway:*::/restapis/*",
        "arn:aws:apigateway:eu-west-1::/restapis/a1/stages/prod"
    ));
    assert!(!iam_match(
        "arn:aws:apigateway:*::/restapis/*",
        "arn:aws:apigateway:eu-west-1::/restapis"
    ));
    assert!(iam_match("sqs:?eceiveMessage", "sqs:ReceiveMessage"));
    assert!(!iam_match("sqs:Receive", "sqs:ReceiveMessage"));
}
