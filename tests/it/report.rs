//! `certsentinel report`: the KPIs from the state database (or a `state export` file), as
//! JSON valid against `schemas/report-v1.schema.json`, as CSV a CSV parser reads back, and
//! as a table.

use serde_json::{Value, json};

use crate::helpers::*;

fn estate(fake: &FakeControlPlane) {
    fake.seed(json!({
        "certificates": [{"id": "oldcert001", "not_after": days_from_now(20)},
                         {"id": "newcert001", "not_after": days_from_now(300)}],
        "rest_apis": [{"id": "orders0001", "name": "orders-api", "stages": [
            {"name": "prod", "client_certificate_id": "oldcert001", "tags": {"owner": "payments"}},
            {"name": "search", "client_certificate_id": "oldcert001", "tags": {"owner": "search"}},
            {"name": "misc", "client_certificate_id": "newcert001"}]}]
    }));
}

fn run(config: &ConfigFile, fake: Option<&FakeControlPlane>, args: &[&str]) -> String {
    let out = certsentinel(fake, None)
        .arg("--config")
        .arg(&config.path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_report_of_a_rotation_is_valid_json_csv_a_parser_reads_and_the_same_from_an_export() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let config = config_file(FAST);
    run(&config, Some(&fake), &["scan", "--once"]);
    switch_stage(&fake, "orders0001", "prod", "newcert001");
    run(&config, Some(&fake), &["scan", "--once"]);

    let now = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let text = run(
        &config,
        None,
        &["report", "--format", "json", "--now", &now],
    );
    let doc: Value = serde_json::from_str(&text).unwrap();
    let kpis = &doc["kpis"];
    assert_eq!(kpis["mttr_hours"]["episodes"], 1, "payments rotated: {doc}");
    assert_eq!(
        kpis["expiring_within_30_days"], 1,
        "search still presents it"
    );
    assert_eq!(kpis["certificates_in_use"], 2);
    assert_eq!(kpis["owner_coverage_percent"], 50.0, "misc has no owner");
    let search = doc["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["team"] == "search")
        .unwrap();
    assert_eq!(search["endings"]["open"], 1);
    assert_eq!(search["mttr_hours"]["episodes"], 0);

    // Valid against the published schema (Python's jsonschema, from the test venv).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, &text).unwrap();
    let check = std::process::Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[2]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             jsonschema.Draft202012Validator(schema).validate(json.load(open(sys.argv[1])))",
        ])
        .arg(&path)
        .arg(repo_root().join("schemas/report-v1.schema.json"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // The same from a `state export` file, written to a file.
    let export = dir.path().join("export.jsonl");
    std::fs::write(&export, run(&config, None, &["state", "export"])).unwrap();
    let out = dir.path().join("again.json");
    run(
        &config,
        None,
        &[
            "report",
            "--format",
            "json",
            "--now",
            &now,
            "--from",
            export.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

    // CSV: each section a table with its own header, read back by a CSV parser.
    let csv_text = run(&config, None, &["report", "--format", "csv", "--now", &now]);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let mut width = 0;
    let mut sections = Vec::new();
    for row in &rows {
        if &row[0] == "table" {
            width = row.len();
            sections.push(row[1].to_string());
        } else {
            assert_eq!(row.len(), width, "{row:?}");
        }
    }
    assert_eq!(
        sections,
        ["kpi", "team", "quarter", "team", "step_days", "team"]
    );
    assert!(
        rows.iter()
            .any(|r| &r[0] == "upcoming_expiries" && &r[1] == "search"),
        "the timeline names search's certificate"
    );
    let mttr = rows
        .iter()
        .find(|r| &r[0] == "kpis" && &r[1] == "mttr_hours_mean")
        .unwrap();
    assert_eq!(&mttr[3], "1", "rests on one episode");

    let table = run(
        &config,
        None,
        &["report", "--now", &now, "--team", "search"],
    );
    assert!(table.contains("team search"), "{table}");
    assert!(table.contains("search"), "{table}");
    assert!(!table.contains("payments"), "{table}");
}
