//! A headless Chromium driven through ChromeDriver's W3C WebDriver protocol (Debian's
//! `chromium` and `chromium-driver`, installed by `tests/bootstrap-chromium.sh` when missing):
//! loads a page, runs a script in it, resizes, screenshots and prints it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{Guard, free_port, repo_root};

/// Installs Chromium once per test run, under a lock.
fn chromium_installed() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*done {
        let status = Command::new("bash")
            .arg(repo_root().join("tests/bootstrap-chromium.sh"))
            .status()
            .expect("run tests/bootstrap-chromium.sh");
        assert!(
            status.success(),
            "tests/bootstrap-chromium.sh could not install chromium and chromium-driver"
        );
        *done = true;
    }
}

/// One browser session; the session and ChromeDriver end on drop.
pub struct Browser {
    base: String,
    session: String,
    _profile: tempfile::TempDir,
    _driver: Guard,
}

impl Browser {
    /// A headless Chromium with a window of `width` × `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        chromium_installed();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Guard::new(driver);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while call("GET", &format!("{base}/status"), None)
            .is_none_or(|v| v["value"]["ready"] != true)
        {
            assert!(Instant::now() < deadline, "chromedriver ready within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let created = call(
            "POST",
            &format!("{base}/session"),
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium_binary(),
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--hide-scrollbars",
                             "--force-device-scale-factor=1",
                             format!("--user-data-dir={}", profile.path().display()),
                             format!("--window-size={width},{height}")]
                }
            }}})),
        )
        .expect("a ChromeDriver session");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Browser {
            base,
            session,
            _profile: profile,
            _driver: driver,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let answer = call(method, &self.url(path), body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("{method} {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    pub fn open(&self, page: &Path) {
        self.command(
            "POST",
            "/url",
            Some(json!({"url": format!("file://{}", page.display())})),
        );
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// The window as a PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let data = self.command("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PNG"))
            .expect("base64")
    }

    /// The page printed (A4, as a browser's print does), as a PDF.
    pub fn print(&self) -> Vec<u8> {
        let data = self.command(
            "POST",
            "/print",
            Some(json!({"page": {"width": 21.0, "height": 29.7}, "background": true})),
        );
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PDF"))
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call("DELETE", &self.url(""), None);
    }
}

fn chromium_binary() -> String {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    "chromium".to_string()
}

/// One WebDriver call: its JSON answer, whatever its status (errors are in the body), or
/// `None` when nothing answered.
fn call(method: &str, url: &str, body: Option<Value>) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let answer = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, Some(body)) => agent.post(url).send_json(body),
        (_, None) => agent.post(url).send_json(json!({})),
    };
    answer.ok()?.body_mut().read_json().ok()
}
