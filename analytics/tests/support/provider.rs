//! A loopback HTTP server that behaves like Slack's, PagerDuty's or a
//! webhook receiver's endpoint as the test asks: the real status codes,
//! 429 with `Retry-After`, slow answers and dropped connections. It records
//! every request with its arrival time and the answer it got.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the server answers one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Behavior {
    /// A status, a body and extra headers.
    Answer {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Waits, then answers 200 (a client with a shorter timeout gives up).
    Slow(Duration),
    /// Reads the request, then closes the connection without a word.
    Drop,
}

impl Behavior {
    pub(crate) fn status(status: u16, body: &str) -> Behavior {
        Behavior::Answer {
            status,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn rate_limited(retry_after: &str) -> Behavior {
        Behavior::Answer {
            status: 429,
            body: r#"{"status":"throttle event","message":"Requests for this service are arriving too quickly."}"#.into(),
            headers: vec![("Retry-After".into(), retry_after.into())],
        }
    }

    /// Whether the client got a 2xx.
    pub(crate) fn accepted(&self) -> bool {
        matches!(self, Behavior::Answer { status, .. } if (200..300).contains(status))
    }
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) at: Instant,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) behavior: Behavior,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Plan = dyn Fn(usize, &[u8]) -> Behavior + Send + Sync;

/// The running server.
pub(crate) struct Provider {
    pub(crate) addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Provider {
    /// Starts a server that answers request number `n` (from 0) with
    /// `plan(n, body)`.
    pub(crate) fn start(
        plan: impl Fn(usize, &[u8]) -> Behavior + Send + Sync + 'static,
    ) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let plan: Arc<Plan> = Arc::new(plan);
        let counter = Arc::new(Mutex::new(0usize));
        {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let received = received.clone();
                    let plan = plan.clone();
                    let counter = counter.clone();
                    std::thread::spawn(move || serve(stream, &plan, &counter, &received));
                }
            });
        }
        Provider {
            addr,
            received,
            stop,
        }
    }

    /// Always answers `status` with `body`.
    pub(crate) fn answering(status: u16, body: &str) -> Provider {
        let body = body.to_owned();
        Provider::start(move |_, _| Behavior::status(status, &body))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Requests the client saw accepted.
    pub(crate) fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.behavior.accepted())
            .collect()
    }

    /// PagerDuty's view: one incident per distinct `dedup_key` of a
    /// trigger it processed (answered, or too slowly for the client).
    pub(crate) fn incidents(&self) -> HashSet<String> {
        self.received()
            .iter()
            .filter(|r| r.behavior.accepted() || matches!(r.behavior, Behavior::Slow(_)))
            .map(Received::json)
            .filter(|e| e["event_action"] == "trigger")
            .filter_map(|e| e["dedup_key"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until `done` holds for the requests received, or panics.
    pub(crate) fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.received()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {} request(s)",
                self.received().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serves requests on one connection (keep-alive) until the client closes it.
fn serve(
    stream: TcpStream,
    plan: &Arc<Plan>,
    counter: &Mutex<usize>,
    received: &Mutex<Vec<Received>>,
) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at = Instant::now();
        let number = {
            let mut n = counter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += 1;
            *n - 1
        };
        let behavior = plan(number, &body);
        received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Received {
                at,
                path,
                headers,
                body,
                behavior: behavior.clone(),
            });
        let (status, text, extra) = match behavior {
            Behavior::Drop => return,
            Behavior::Slow(delay) => {
                std::thread::sleep(delay);
                (200, "ok".to_owned(), Vec::new())
            }
            Behavior::Answer {
                status,
                body,
                headers,
            } => (status, body, headers),
        };
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n",
            reason(status),
            text.len()
        );
        for (name, value) in extra {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&text);
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
