//! `pipewatch demo` serving its dashboard, and a client signed in to it as
//! a browser would be.

use std::path::Path;
use std::process::Stdio;

use super::pipewatch;

/// Runs `pipewatch demo` until it serves the dashboard; returns what it
/// printed, the dashboard's address and the demo password, and the process.
pub(crate) fn demo_serving(lake: &Path) -> (String, String, String, KillOnDrop) {
    use std::io::BufRead;
    let mut child = pipewatch()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(lake)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("pipewatch demo starts");
    let reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = reader.lines();
    let mut text = String::new();
    let (mut address, mut password) = (None, None);
    for line in lines.by_ref() {
        let line = line.expect("utf-8 output");
        if let Some(url) = line.trim().strip_prefix("open") {
            address = Some(url.trim().trim_end_matches('/').to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("sign in as `demo` with password ") {
            password = Some(rest.trim().to_owned());
        }
        text.push_str(&line);
        text.push('\n');
        if line.trim().starts_with("stop with ctrl-c") {
            break;
        }
    }
    // Whatever the demo prints later is drained, so it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let address = address.unwrap_or_else(|| panic!("no dashboard address in:\n{text}"));
    let password = password.unwrap_or_else(|| panic!("no demo login in:\n{text}"));
    (text, address, password, KillOnDrop(child))
}

/// A child process that does not outlive a failed test.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Signs in to the demo dashboard as a browser would; returns the client
/// and its session cookie.
pub(crate) fn dashboard_session(
    address: &str,
    password: &str,
) -> (reqwest::blocking::Client, String) {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .get(format!("{address}/login"))
        .send()
        .expect("login page");
    let nonce_cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("login cookie")
        .to_owned();
    let page = login.text().expect("login page text");
    let marker = "name=\"nonce\" value=\"";
    let start = page.find(marker).expect("nonce field") + marker.len();
    let nonce = &page[start..start + page[start..].find('"').expect("quote")];
    let signed_in = client
        .post(format!("{address}/login"))
        .header("cookie", &nonce_cookie)
        .form(&[("user", "demo"), ("password", password), ("nonce", nonce)])
        .send()
        .expect("sign in");
    assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER);
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("pipewatch-session="))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    (client, session)
}

pub(crate) fn dashboard_page(
    session: &(reqwest::blocking::Client, String),
    address: &str,
    path: &str,
) -> String {
    let (client, cookie) = session;
    let page = client
        .get(format!("{address}{path}"))
        .header("cookie", cookie)
        .send()
        .expect("page");
    assert_eq!(page.status(), reqwest::StatusCode::OK, "{path}");
    page.text().expect("page text")
}
