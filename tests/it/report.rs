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

use crate::helpers::certsentinel_ok as run;

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
    // The same report, but for the failed deliveries: an export has no outbox, so they are
    // unknown (null) rather than none ([]).
    let mut again: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(again["failed_deliveries"], Value::Null);
    assert_eq!(doc["failed_deliveries"], json!([]));
    again["failed_deliveries"] = json!([]);
    assert_eq!(again, doc);

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
        [
            "kpi",
            "team",
            "quarter",
            "team",
            "step_days",
            "team",
            "team",
            "partner",
            "backend"
        ]
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

/// A year of an estate's history, each observation decided by the engine at the time it
/// happened and committed to the store at `path`, as scans would have: teams that rotate in
/// days, in weeks, and one that let a certificate expire; unowned stages; a partner; and what
/// expires in the next 90 days as of [`HISTORY_NOW`].
mod history {
    use std::collections::BTreeMap;

    use certsentinel::ids::{CertificateKey, StageKey, StageKind};
    use certsentinel::lifecycle::{
        Observation, ObservationSource, Policy, RenewalOutlook, Seen, StageFate, StageUser, decide,
    };
    use certsentinel::store::{SledStore, Store};
    use chrono::{DateTime, Duration, TimeZone, Utc};

    pub const HISTORY_NOW: &str = "2026-11-20T12:00:00Z";
    /// A team named like markup, as a tag value may be: the page must show it as text.
    pub const ODD_TEAM: &str = "web & mobile <core>";

    fn now() -> DateTime<Utc> {
        HISTORY_NOW.parse().unwrap()
    }

    fn key(id: &str) -> CertificateKey {
        CertificateKey {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            id: id.into(),
        }
    }

    fn stage(name: &str) -> StageKey {
        StageKey {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            kind: StageKind::Rest,
            api_id: format!("api{name}"),
            stage_name: "prod".into(),
        }
    }

    struct Estate {
        store: SledStore,
        policy: Policy,
    }

    impl Estate {
        fn observe(
            &self,
            id: &str,
            at: DateTime<Utc>,
            not_after: DateTime<Utc>,
            users: Vec<StageUser>,
            departed: BTreeMap<StageKey, StageFate>,
        ) {
            let previous = self.store.load(&key(id)).unwrap();
            let observation = Observation {
                certificate: key(id),
                observed_at: at,
                source: ObservationSource::FullScan,
                seen: Seen::Present {
                    not_after,
                    created_at: Some(not_after - Duration::days(365)),
                    renewal: RenewalOutlook::Manual,
                    users,
                    departed,
                    successor: None,
                },
            };
            let decision = decide(previous.as_ref(), &observation, &self.policy, at);
            self.store.commit(&decision).unwrap();
        }

        /// Certificate `id` of `owner`'s stage `name` (with `partner`) enters the window at
        /// `opened`; after `days` its stage moves to a certificate `age_hours` old. Past its
        /// expiry, a scan sees it expired in use first.
        #[allow(clippy::too_many_arguments)]
        fn rotation(
            &self,
            id: &str,
            name: &str,
            owner: Option<&str>,
            partner: Option<&str>,
            opened: DateTime<Utc>,
            days: f64,
            age_hours: i64,
        ) {
            let not_after = opened + Duration::days(59);
            let user = StageUser {
                stage: stage(name),
                api_name: format!("{name}-api"),
                owner: owner.map(str::to_string),
                partner: partner.map(str::to_string),
            };
            self.observe(id, opened, not_after, vec![user.clone()], BTreeMap::new());
            let moved = opened + Duration::minutes((days * 1440.0) as i64);
            // Nothing is observed after the report's now: the history ends there, open.
            if moved > now() {
                return;
            }
            if moved > not_after {
                self.observe(
                    id,
                    not_after + Duration::hours(20),
                    not_after,
                    vec![user],
                    BTreeMap::new(),
                );
            }
            let departed = BTreeMap::from([(
                stage(name),
                StageFate::SwitchedTo {
                    certificate: key(&format!("{id}-next")),
                    certificate_created_at: Some(moved - Duration::hours(age_hours)),
                    certificate_not_after: Some(moved + Duration::days(365)),
                },
            )]);
            self.observe(id, moved, not_after, vec![], departed);
            // A scan after the stabilisation period: the clean-up reminder, and partners told
            // the old certificate may leave their trust store.
            let later = moved + Duration::days(15);
            if later < now() {
                self.observe(id, later, not_after, vec![], BTreeMap::new());
            }
        }

        /// Certificate `id` presented by `owner`'s stage `name`, `days_left` days from now.
        fn in_use(&self, id: &str, name: &str, owner: Option<&str>, days_left: f64) {
            let user = StageUser {
                stage: stage(name),
                api_name: format!("{name}-api"),
                owner: owner.map(str::to_string),
                partner: None,
            };
            let not_after = now() + Duration::minutes((days_left * 1440.0) as i64);
            self.observe(
                id,
                now() - Duration::hours(1),
                not_after,
                vec![user],
                BTreeMap::new(),
            );
        }
    }

    pub fn build(path: &std::path::Path) {
        let estate = Estate {
            store: SledStore::open(path, 8 << 20).unwrap(),
            policy: Policy::default(),
        };
        let quarter_starts = [(2026, 1), (2026, 4), (2026, 7), (2026, 10)];
        for (q, (year, month)) in quarter_starts.iter().enumerate() {
            let start = Utc.with_ymd_and_hms(*year, *month, 3, 9, 0, 0).unwrap();
            let day = |d: i64| start + Duration::days(d);
            let n = q as f64;
            // Payments rotates within days, faster each quarter.
            for i in 0..3 {
                estate.rotation(
                    &format!("pay{q}{i}"),
                    &format!("pay{q}{i}"),
                    Some("payments"),
                    None,
                    day(i * 9),
                    4.0 - n * 0.7 + i as f64,
                    72,
                );
            }
            // Search takes weeks.
            for i in 0..2 {
                estate.rotation(
                    &format!("sea{q}{i}"),
                    &format!("sea{q}{i}"),
                    Some("search"),
                    Some("acme-bank"),
                    day(5 + i * 20),
                    18.0 + 6.0 * i as f64 + 3.0 * n,
                    200,
                );
            }
            // Identity: slow, once too slow (an incident in Q2), once a big-bang cut-over.
            if q < 3 {
                estate.rotation(
                    &format!("idn{q}"),
                    &format!("idn{q}"),
                    Some("identity"),
                    None,
                    day(12),
                    if q == 1 { 62.0 } else { 35.0 },
                    if q == 2 { 3 } else { 100 },
                );
            }
            // An API nobody tagged, and the team with an odd name (first three quarters).
            if q < 3 {
                estate.rotation(
                    &format!("unt{q}"),
                    &format!("unt{q}"),
                    None,
                    None,
                    day(30),
                    12.0,
                    48,
                );
                estate.rotation(
                    &format!("odd{q}"),
                    &format!("odd{q}"),
                    Some(ODD_TEAM),
                    None,
                    day(40),
                    9.0 + n,
                    30,
                );
            }
        }
        // What is in use now: the timeline, open episodes, owner coverage.
        for (id, owner, days_left) in [
            ("now-pay-1", Some("payments"), 4.5),
            ("now-pay-2", Some("payments"), 52.0),
            ("now-sea-1", Some("search"), 11.0),
            ("now-sea-2", Some("search"), 11.2),
            ("now-sea-3", Some("search"), 80.0),
            ("now-idn-1", Some("identity"), 26.0),
            ("now-odd-1", Some(ODD_TEAM), 67.0),
            ("now-unt-1", None, 33.0),
            ("now-ok-1", Some("payments"), 200.0),
            ("now-ok-2", Some("identity"), 300.0),
        ] {
            estate.in_use(id, id, owner, days_left);
        }
        estate.store.flush().unwrap();
    }
}

/// Every chart of the page is drawn with content in headless Chromium (Debian's chromium,
/// through ChromeDriver) at desktop and phone widths, the page prints, and the screenshots and
/// the PDF are saved under `target/report-artifacts/` (the README shows the desktop one).
#[test]
fn the_report_page_draws_every_chart_in_headless_chromium_on_a_desktop_a_phone_and_paper() {
    let config = config_file(FAST);
    history::build(&config.store_path());
    let artifacts = repo_root().join("target/report-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let page = artifacts.join("report.html");
    run(
        &config,
        None,
        &[
            "report",
            "--format",
            "html",
            "--now",
            history::HISTORY_NOW,
            "--since",
            "2026-01-01",
            "--out",
            page.to_str().unwrap(),
        ],
    );

    let browser = crate::browser::Browser::start(1100, 900);
    browser.open(&page);
    let look = || {
        browser.run(
            "const charts = [...document.querySelectorAll('svg[data-chart]')].map(svg => {
               const r = svg.getBoundingClientRect();
               const marks = [...svg.querySelectorAll('.mark')].filter(m => {
                 const b = m.getBBox(); return b.width > 0 && b.height > 0; }).length;
               const text = svg.querySelector('text');
               return {chart: svg.dataset.chart, width: r.width, height: r.height, marks,
                       desc: svg.querySelector('desc').textContent,
                       font: text ? parseFloat(getComputedStyle(text).fontSize) * r.width / 720 : 0};
             });
             return {charts,
                     overflow: document.documentElement.scrollWidth - window.innerWidth,
                     height: document.documentElement.scrollHeight,
                     scripts: document.scripts.length,
                     loaded: [...document.querySelectorAll('[src], link[href]')].length,
                     odd_elements: document.getElementsByTagName('core').length,
                     text: document.body.innerText};",
        )
    };
    let desktop = look();
    let charts = desktop["charts"].as_array().unwrap();
    let found: Vec<&str> = charts
        .iter()
        .map(|c| c["chart"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["mttr", "timeline", "incidents", "coverage"]);
    // What each chart must draw, at least: a bar per team and quarter with rotations, a
    // marker per team and day of the ten in use within 90 days (two of search's share a day),
    // a column per quarter, both shares of the coverage.
    let least = [
        ("mttr", 12),
        ("timeline", 6),
        ("incidents", 4),
        ("coverage", 2),
    ];
    for (chart, (name, marks)) in charts.iter().zip(least) {
        assert!(
            chart["marks"].as_u64().unwrap() >= marks,
            "{name} draws at least {marks} marks: {chart}"
        );
        assert!(
            chart["width"].as_f64().unwrap() > 600.0 && chart["height"].as_f64().unwrap() > 40.0,
            "{name} is laid out: {chart}"
        );
        assert!(!chart["desc"].as_str().unwrap().is_empty(), "{name}");
    }
    // What each chart says, in its marks' titles (what a screen reader and a hover read):
    // identity's incident in 2026-Q2, payments' fastest quarter, search's two certificates
    // 11 days out, and the one certificate of eleven in use without an owner.
    let titles = |chart: &str| -> Vec<String> {
        browser
            .run(&format!(
                "return [...document.querySelectorAll('svg[data-chart=\"{chart}\"] .mark title')]
               .map(t => t.textContent);"
            ))
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        titles("incidents").contains(&"2026-Q2: 1 incident(s)".to_string()),
        "{:?}",
        titles("incidents")
    );
    let q2_height = browser.run(
        "const t = [...document.querySelectorAll('svg[data-chart=\"incidents\"] .mark')]
           .find(m => m.querySelector('title').textContent.startsWith('2026-Q2'));
         return t.querySelector('rect').getBBox().height;",
    );
    assert!(
        q2_height.as_f64().unwrap() > 100.0,
        "the incident's column stands: {q2_height}"
    );
    assert!(
        titles("mttr")
            .iter()
            .any(|t| t.starts_with("payments · 2026-Q4: median 70 h")),
        "{:?}",
        titles("mttr")
    );
    assert!(
        titles("timeline")
            .iter()
            .any(|t| t.starts_with("search in 11 days")),
        "{:?}",
        titles("timeline")
    );
    assert!(
        titles("coverage").contains(&"owner known: 10 (90.9 %)".to_string()),
        "{:?}",
        titles("coverage")
    );
    assert_eq!(desktop["scripts"], 0, "no script");
    assert_eq!(desktop["loaded"], 0, "nothing loaded from elsewhere");
    assert_eq!(
        desktop["odd_elements"], 0,
        "a tag value never becomes markup"
    );
    let text = desktop["text"].as_str().unwrap();
    assert!(text.contains(history::ODD_TEAM), "shown as text");
    assert!(
        text.contains("2026-Q2"),
        "the quarter of identity's incident"
    );
    browser.resize(1100, desktop["height"].as_u64().unwrap() as u32 + 40);
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(artifacts.join("report-desktop.png"), &png).unwrap();

    // A phone: the page never scrolls sideways (wide tables and charts scroll in their own
    // box), and chart text stays at least 9 px.
    browser.resize(390, 844);
    let phone = look();
    assert!(
        phone["overflow"].as_f64().unwrap() <= 0.0,
        "no sideways scroll: {}",
        phone["overflow"]
    );
    for chart in phone["charts"].as_array().unwrap() {
        assert!(
            chart["font"].as_f64().unwrap() >= 9.0,
            "legible on a phone: {chart}"
        );
    }
    browser.resize(390, phone["height"].as_u64().unwrap() as u32 + 40);
    std::fs::write(artifacts.join("report-phone.png"), browser.screenshot()).unwrap();

    let pdf = browser.print();
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    std::fs::write(artifacts.join("report.pdf"), &pdf).unwrap();
}

/// The daemon serves the page at `/report`, the command (reading through the daemon while it
/// holds the store) prints the same bytes, a refused delivery is listed, and bad arguments
/// get a 400 that says which.
#[test]
fn the_daemon_serves_the_report_the_command_prints_with_a_refused_delivery_listed() {
    let fake = FakeControlPlane::start();
    estate(&fake);
    let jira = JiraFake::start("cloud", 0.0);
    // A comment on the first issue is refused for good.
    jira.fault(json!({"status": 400, "count": 1, "method": "POST", "path_prefix": "/rest/api/3/issue/PROJ-1/comment"}));
    let port = free_port();
    let config = config_file(&format!(
        "{FAST}\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nscan_on_start = true\n\
         listen = \"127.0.0.1:{port}\"\n\
         [notify]\ninterval_secs = 1\n\
         [notify.retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\nmax_attempts = 2\n\
         [notify.jira]\nflavour = \"cloud\"\nbase_url = \"{}\"\nuser = \"{JIRA_USER}\"\n\
         token = \"${{JIRA_TOKEN}}\"\n\
         [notify.default_route]\njira_project = \"PROJ\"\n",
        jira.url
    ));
    let daemon = RunningDaemon::start(&config, &[("JIRA_TOKEN", JIRA_TOKEN)], &fake);
    let now = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let query = |extra: &str| format!("/report?now={}{extra}", now.replace('+', "%2B"));
    eventually(30, "a comment refused, both issues created", || {
        let (status, body) = daemon.get(&query("&format=json"));
        status == 200
            && serde_json::from_str::<Value>(&body).is_ok_and(|doc| {
                doc["failed_deliveries"]
                    .as_array()
                    .is_some_and(|f| f.len() == 1)
            })
            && jira.issues().len() == 2
    });
    let (_, body) = daemon.get(&query("&format=json"));
    let doc: Value = serde_json::from_str(&body).unwrap();
    let failed = &doc["failed_deliveries"][0];
    assert_eq!(failed["backend"], "jira");
    assert!(
        failed["reason"].as_str().unwrap().contains("400"),
        "{failed}"
    );

    let mut answer = ureq::get(&format!("{}{}", daemon.base, query("")))
        .call()
        .unwrap();
    let headers = answer.headers().clone();
    let page = answer.body_mut().read_to_string().unwrap();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"),
        "the page may load nothing from elsewhere"
    );
    assert!(page.contains("data-chart=\"mttr\""));
    assert!(page.contains("HTTP 400"), "the refusal is on the page");
    let out = certsentinel(None, None)
        .env("JIRA_TOKEN", JIRA_TOKEN)
        .arg("--config")
        .arg(&config.path)
        .args(["report", "--format", "html", "--now", &now])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a running daemon holds the state database"),
        "read through the daemon"
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), page);

    let (status, why) = daemon.get("/report?since=yesterday");
    assert_eq!(status, 400);
    assert!(why.contains("since") && why.contains("yesterday"), "{why}");
    let (status, why) = daemon.get("/report?since=2027-01-01&until=2026-01-01");
    assert_eq!(status, 400);
    assert!(why.contains("is not before"), "{why}");
    let (status, why) = daemon.get("/report?until=-262143-01-01");
    assert_eq!(status, 400, "an absurd date is refused, not a panic: {why}");
    let (status, why) = daemon.get("/report?format=pdf");
    assert_eq!(
        (status, why.contains("html, json, csv")),
        (400, true),
        "{why}"
    );
    let (status, page) = daemon.get("/report?team=%3Cscript%3Ealert(1)%3C/script%3E");
    assert_eq!(status, 200);
    assert!(!page.contains("<script"), "a query never becomes markup");
    daemon.stop().expect("stops cleanly");
}
