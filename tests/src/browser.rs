//! A real headless Chromium for the dashboard tests: starts its own `chromedriver` on a free
//! loopback port (killed on drop), opens a WebDriver session through `fantoccini` (plain http to
//! the local driver), and reads the browser's console log (chromedriver's `se/log`, which also
//! carries CSP violations, failed requests and uncaught exceptions).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ci, free_port, skip, wait_for};

/// Debian's `chromium` package.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver` package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long one element or page may take to appear.
const WAIT: Duration = Duration::from_secs(15);

/// One console entry.
#[derive(Debug, Clone, Deserialize)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, …
    pub level: String,
    /// The text (with the source URL in front for network errors).
    pub message: String,
}

/// A running chromedriver and one browser session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    /// The WebDriver session.
    pub client: Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width` × `height`. `None` (with a SKIP
    /// line) when Chromium is not installed outside CI; with `CI` set a missing Chromium panics.
    pub async fn start(width: u32, height: u32) -> Option<Self> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(path).exists() {
                assert!(
                    !ci(),
                    "{path} is not installed but CI is set: apt-get install chromium chromium-driver (.ci/run does)"
                );
                skip("dashboard", &format!("{path} is not installed"));
                return None;
            }
        }
        let port = free_port();
        let log = std::env::temp_dir().join(format!("watchstand-chromedriver-{port}.log"));
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let status = format!("http://127.0.0.1:{port}/status");
        wait_for("chromedriver", WAIT, || async {
            let r = reqwest::get(&status).await.ok()?;
            let v: Value = r.json().await.ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let profile = tempfile::tempdir().expect("browser profile dir");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session id");
        client
            .set_window_size(width, height)
            .await
            .expect("window size");
        Some(Self {
            driver,
            port,
            client,
            session,
            _profile: profile,
        })
    }

    /// The console entries since the last call (chromedriver hands each entry out once).
    pub async fn console(&self) -> Vec<LogEntry> {
        let url = format!(
            "http://127.0.0.1:{}/session/{}/se/log",
            self.port, self.session
        );
        let r = reqwest::Client::new()
            .post(&url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("read the browser log");
        let v: Value = r.json().await.expect("browser log JSON");
        serde_json::from_value(v["value"].clone())
            .unwrap_or_else(|e| panic!("browser log not as expected ({e}): {v}"))
    }

    /// The console's SEVERE entries since the last read.
    pub async fn errors(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| e.message)
            .collect()
    }

    /// Waits for `css` to match an element.
    pub async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {WAIT:?}: {e}"))
    }

    /// Runs a script and returns its JSON value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// Writes a PNG screenshot of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Writes a PNG screenshot of the whole page (the window made as tall as the page, at most
    /// 4,000 px, for the shot) to `path`.
    pub async fn screenshot_page(&self, path: &Path) {
        let (width, height) = self.client.get_window_size().await.expect("window size");
        let page = self
            .eval("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(height);
        let tall = u32::try_from((page + 160).clamp(height, 4_000)).unwrap_or(4_000);
        let width = u32::try_from(width).unwrap_or(1_280);
        self.client
            .set_window_size(width, tall)
            .await
            .expect("window size");
        self.screenshot(path).await;
        self.client
            .set_window_size(width, u32::try_from(height).unwrap_or(1_000))
            .await
            .expect("window size");
    }

    /// Ends the session; the driver is killed on drop.
    pub async fn close(self) {
        let _ended = self.client.clone().close().await.is_ok();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _killed = self.driver.kill().is_ok();
        let _reaped = self.driver.wait().is_ok();
    }
}

/// `target/dashboard-screenshots` (next to the built binaries' profile directory), created.
pub fn screenshot_dir() -> PathBuf {
    let dir = crate::bin_dir()
        .parent()
        .map_or_else(|| crate::bin_dir().to_path_buf(), Path::to_path_buf)
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}
