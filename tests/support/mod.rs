//! Shared by the end-to-end tests of `pipewatch serve`: starting the real
//! binary on a free loopback port, stopping it by signal, querying the lake
//! it wrote with `pipewatch sql`, and signing webhooks as GitHub does.

#![allow(dead_code)]

pub(crate) mod demo;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A `pipewatch` command with no settings inherited from the environment.
pub(crate) fn pipewatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewatch"));
    cmd.env_remove("PIPEWATCH_DATA_DIR")
        .env_remove("PIPEWATCH_CONFIG")
        .env_remove("PIPEWATCH_LISTEN")
        .env("RUST_LOG", "warn");
    cmd
}

/// A running `pipewatch serve`.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: PathBuf,
    /// What the server printed until it was ready.
    pub(crate) startup: Vec<String>,
    /// Everything the server wrote to stderr afterwards, line by line.
    pub(crate) log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `pipewatch serve` with `config` (TOML) and extra environment,
    /// on a free port, and waits until it is ready.
    pub(crate) fn start(data_dir: &Path, config: &str, env: &[(&str, &str)]) -> Server {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let config_path = data_dir.with_extension("toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut cmd = pipewatch();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("pipewatch serve starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut addr = None;
        let mut seen = Vec::new();
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(wait) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("pipewatch serve did not get ready:\n{}", seen.join("\n"));
                }
            };
            if let Some(rest) = line.strip_prefix("pipewatch listening on http://") {
                let text = rest.split_whitespace().next().unwrap_or_default();
                addr = text.parse().ok();
            }
            let ready = line.starts_with("pipewatch ready");
            seen.push(line);
            if ready {
                break;
            }
        }
        Server {
            child: Some(child),
            addr: addr.expect("the listening address is printed"),
            data_dir: data_dir.to_owned(),
            startup: seen,
            log: rx,
        }
    }

    /// The address printed after `prefix` at start-up (other listeners).
    pub(crate) fn printed_address(&self, prefix: &str) -> SocketAddr {
        self.startup
            .iter()
            .find_map(|line| {
                line.strip_prefix(prefix)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no `{prefix}` line in {:?}", self.startup))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM without waiting.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit (after [`terminate`](Self::terminate)).
    pub(crate) fn wait(mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pipewatch serve did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit; an unclean exit prints what the
    /// server said, so a failing test shows why.
    pub(crate) fn stop(mut self) -> ExitStatus {
        self.terminate();
        let startup = self.startup.clone();
        let log = std::mem::replace(&mut self.log, mpsc::channel().1);
        let status = self.wait(Duration::from_secs(60));
        if !status.success() {
            // The reader thread ends at the pipe's end, after the last line.
            let mut rest = Vec::new();
            while let Ok(line) = log.recv_timeout(Duration::from_secs(5)) {
                rest.push(line);
            }
            eprintln!(
                "pipewatch serve exited with {status}:\n{}\n{}",
                startup.join("\n"),
                rest.join("\n")
            );
        }
        status
    }

    /// SIGKILL: no chance to flush anything.
    pub(crate) fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Rows of a read-only query over `data_dir`, as JSON objects.
pub(crate) fn sql(data_dir: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = pipewatch()
        .args(["sql", "--output", "json", "--data-dir"])
        .arg(data_dir)
        .arg(query)
        .output()
        .expect("pipewatch sql runs");
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `SELECT count(*) …` as a number.
pub(crate) fn count(data_dir: &Path, query: &str) -> u64 {
    let rows = sql(data_dir, query);
    rows.first()
        .and_then(|row| row.as_object())
        .and_then(|row| row.values().next())
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{query}: no count in {rows:?}"))
}

/// Waits until `query` (a count) reaches `expected` or `within` passes;
/// returns the last count.
pub(crate) fn wait_for_count(data_dir: &Path, query: &str, expected: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let found = if data_dir.join("events").exists() {
            count(data_dir, query)
        } else {
            0
        };
        if found >= expected || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of every `/metrics` sample whose line starts with `series`
/// (a name, optionally with the first labels).
pub(crate) fn metric_sum(server: &Server, series: &str) -> f64 {
    let text = reqwest::blocking::get(server.url("/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GitHub's `X-Hub-Signature-256` value for `body`.
pub(crate) fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The real event samples beside the repository.
pub(crate) fn real_events() -> PathBuf {
    std::env::var_os("PIPEWATCH_REAL_EVENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/real-events"))
}

/// Files under `root` whose path ends with `suffix`.
pub(crate) fn walkdir_count(root: &Path, suffix: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                n += 1;
            }
        }
    }
    n
}
