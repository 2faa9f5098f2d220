//! The demo in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): sign in, the morning review,
//! triage and an investigation end to end. Screenshots of every page land
//! in `target/browser-screenshots/`; the browser console must stay clean.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the driver and the browser said last tells where it stuck.
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("chromedriver log, last lines:");
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
        // chromedriver and the Chromium it started share a process group;
        // ending the group leaves no browser behind when a test fails.
        // `--` keeps procps' kill from reading the negative group id as
        // options (it would signal every process).
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start_driver(dir: &Path) -> Driver {
    let port = free_port();
    let log = dir.join("chromedriver.log");
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .arg("--log-level=INFO")
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("chromedriver is needed for the browser tests (apt-get install chromium chromium-driver): {e}")
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    }
}

/// The browser's console entries (chromedriver's log endpoint).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

async fn console_errors(client: &Client) -> Vec<String> {
    let entries = client.issue_cmd(BrowserLog).await.expect("browser log");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

struct Browser {
    client: Client,
    shots: PathBuf,
    downloads: PathBuf,
    base: String,
}

impl Browser {
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The path once it satisfies `done` and that page has loaded
    /// (navigation after a click completes after the click returns).
    async fn path_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let path = self.path().await;
            if done(&path) && self.loaded().await || Instant::now() > deadline {
                return path;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn loaded(&self) -> bool {
        self.client
            .execute("return document.readyState;", vec![])
            .await
            .is_ok_and(|state| state == "complete")
    }

    /// The page's text once it contains `needle` (or the last text seen).
    async fn text_when(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Mid-navigation the old body may be gone: try again.
            let text = match self.client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) && self.loaded().await || Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .expect("text")
    }

    /// Saves a screenshot and checks the console stayed clean.
    async fn checkpoint(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("screenshot saved");
        let errors = console_errors(&self.client).await;
        assert!(errors.is_empty(), "{name}: the console shows {errors:#?}");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// Chromium as a test browser on a closed network: no sandbox (CI runs as
/// root), a fresh profile, nothing that phones home or waits on a desktop
/// keyring or a proxy.
fn chromium_args(profile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--password-store=basic",
        "--use-mock-keychain",
        "--no-proxy-server",
        "--window-size=1280,1000",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

async fn browser(driver: &Driver, base: &str, dir: &Path, downloads: &Path) -> Browser {
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).expect("browser profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": chromium_args(&profile),
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false
            }
        }),
    );
    caps.insert(
        "goog:loggingPrefs".into(),
        serde_json::json!({ "browser": "ALL" }),
    );
    let client = tokio::time::timeout(
        Duration::from_secs(90),
        ClientBuilder::native()
            .capabilities(caps)
            .connect(&driver.url),
    )
    .await
    .expect("Chromium did not start within 90 s")
    .expect("a Chromium session");
    // Every navigation and script fails on its own rather than waiting on
    // WebDriver's five-minute default.
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(30)),
            Some(Duration::ZERO),
        ))
        .await
        .expect("timeouts set");
    Browser {
        client,
        shots: screenshots_dir(),
        downloads: downloads.to_path_buf(),
        base: base.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_signs_in_reviews_triages_and_investigates_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("demo");
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");
    let (_printed, address, password, _demo) =
        tokio::task::block_in_place(|| support::demo::demo_serving(&lake));
    let driver = start_driver(dir.path());
    let b = browser(&driver, &address, dir.path(), &downloads).await;
    // A stalled browser fails the test with the driver's log (see `Driver`)
    // instead of holding up the suite.
    tokio::time::timeout(Duration::from_secs(240), journey(&b, &password))
        .await
        .expect("the browser journey did not finish within 240 s");
    b.client.close().await.expect("browser closed");
}

/// Sign in, the morning review, triage, and an investigation ending in a CSV.
async fn journey(b: &Browser, password: &str) {
    // Sign in from the page every visitor lands on.
    b.open("/").await;
    assert!(b.path().await.starts_with("/login"), "sent to sign in");
    b.checkpoint("01-login").await;
    let form = b
        .client
        .form(Locator::Css("form.login"))
        .await
        .expect("login form");
    form.set_by_name("user", "demo").await.expect("user");
    form.set_by_name("password", password)
        .await
        .expect("password");
    b.click("form.login button[type=submit]").await;
    assert_eq!(b.path_when(|p| p == "/").await, "/");

    // The morning review: metrics with targets and trends, open alerts, ingest health.
    let overview = b.text().await;
    for expected in [
        "Jobs on ephemeral runners",
        "Open alerts",
        "Ingest health",
        "target",
    ] {
        assert!(overview.contains(expected), "the overview shows {expected}");
    }
    let charts = b
        .client
        .find_all(Locator::Css(".card svg"))
        .await
        .expect("charts");
    assert!(charts.len() >= 5, "trend charts drawn: {}", charts.len());
    b.checkpoint("02-overview").await;

    // Triage: filter to open high-severity alerts, open one, acknowledge it.
    b.open("/alerts").await;
    let filters = b
        .client
        .form(Locator::Css("form.filters"))
        .await
        .expect("filters");
    filters.set_by_name("status", "open").await.expect("status");
    filters
        .set_by_name("severity", "high")
        .await
        .expect("severity");
    b.click("form.filters button[type=submit]").await;
    let filtered = b.path_when(|p| p.contains("severity=")).await;
    assert!(
        filtered.contains("status=open") && filtered.contains("severity=high"),
        "{filtered}"
    );
    b.checkpoint("03-alerts-filtered").await;
    b.click("table.alerts tbody tr td a").await;
    assert!(
        b.path_when(|p| p.starts_with("/alerts/"))
            .await
            .starts_with("/alerts/")
    );
    let detail = b.text().await;
    for expected in ["Expected:", "Evidence events", "History", "Notifications"] {
        assert!(detail.contains(expected), "the alert shows {expected}");
    }
    b.checkpoint("04-alert").await;
    b.click("form.actions button[value=acknowledge]").await;
    let after = b.text_when("acknowledged").await;
    assert!(
        after.contains("acknowledged"),
        "the status changed: {after}"
    );
    assert!(after.contains("demo"), "and says who");
    b.checkpoint("05-alert-acknowledged").await;

    // Investigation: the evidence in SQL, then a query of one's own and its CSV.
    b.click("a[href^='/sql?q=']").await;
    b.path_when(|p| p.starts_with("/sql?q=")).await;
    let evidence = b.text_when("row(s) in").await;
    assert!(
        evidence.contains("row(s) in"),
        "the evidence query ran: {evidence}"
    );
    b.open("/sql").await;
    let editor = b
        .client
        .find(Locator::Css("textarea[name=q]"))
        .await
        .expect("editor");
    editor
        .send_keys("SELECT category, count(*) AS events FROM events GROUP BY category ORDER BY events DESC")
        .await
        .expect("typed");
    b.click("form.sql button[type=submit]").await;
    b.path_when(|p| p.starts_with("/sql?q=")).await;
    let results = b
        .client
        .find_all(Locator::Css("table.results tbody tr"))
        .await
        .expect("rows");
    assert!(
        results.len() >= 9,
        "one row per category: {}",
        results.len()
    );
    b.checkpoint("06-sql").await;
    b.click("a[download]").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let csv = loop {
        let done = std::fs::read_dir(&b.downloads)
            .expect("downloads")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "csv"));
        if let Some(path) = done {
            break std::fs::read_to_string(path).expect("csv");
        }
        assert!(Instant::now() < deadline, "the CSV download did not arrive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(csv.starts_with("category,events\n"), "{csv}");
    assert!(csv.lines().count() >= 10, "{csv}");

    // The other pages, and a phone-sized screen without sideways scrolling.
    for (name, path) in [
        ("07-repos", "/repos"),
        ("08-secrets", "/secrets"),
        ("09-ingestion", "/ingestion"),
        ("10-audit", "/audit"),
        ("12-admin-users", "/admin/users"),
        ("13-admin-settings", "/admin/settings"),
    ] {
        b.open(path).await;
        assert!(!b.text().await.contains("Service Unavailable"), "{path}");
        b.checkpoint(name).await;
    }
    b.client.set_window_size(390, 844).await.expect("narrow");
    b.open("/").await;
    let overflow = b
        .client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .expect("measured");
    assert!(
        overflow.as_i64().unwrap_or(i64::MAX) <= 1,
        "the overview scrolls sideways by {overflow}px"
    );
    b.checkpoint("11-overview-narrow").await;
}
