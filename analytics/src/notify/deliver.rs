//! The deliverers: one thread per destination takes due notifications from
//! the outbox in order, keeps the destination's pace, folds a backlog into
//! one digest, sends, and records the outcome: retried with backoff and
//! jitter on 5xx, timeouts and dropped connections, held back for
//! `Retry-After` on 429, failed at once on other 4xx.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use rusqlite::Connection;

use super::NotifyError;
use super::config::{DeliverySettings, Destination, Routing};
use super::message::{Content, Request, Scrub, render};
use super::outbox::{self, Action, Pending, Settled};
use crate::alerts::{Alert, read_alert};

/// Longest a deliverer sleeps before looking at the outbox again, so rows
/// queued by another process (a status change from the CLI) go out.
const POLL: Duration = Duration::from_millis(500);
/// Alerts carried by one digest at most.
const DIGEST_MAX: usize = 200;
/// Response text kept with a failed attempt.
const ERROR_CHARS: usize = 300;

/// Hears about every attempt; the process exports it as metrics.
pub trait DeliveryObserver: Send + Sync {
    /// An attempt ended. `outcome` is `delivered`, `retry`, `rate_limited`
    /// or `failed`; `alert_to_request` is set on a trigger's first attempt.
    fn attempted(
        &self,
        destination: &str,
        action: Action,
        outcome: &'static str,
        alert_to_request: Option<Duration>,
    );
    /// Notifications were folded into one digest.
    fn folded(&self, destination: &str, notifications: usize);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl DeliveryObserver for NoObserver {
    fn attempted(&self, _: &str, _: Action, _: &'static str, _: Option<Duration>) {}
    fn folded(&self, _: &str, _: usize) {}
}

/// Wakes sleeping deliverers when new rows were queued.
#[derive(Debug, Default)]
struct Wake {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Wake {
    fn notify(&self) {
        let mut generation = self
            .generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *generation += 1;
        self.changed.notify_all();
    }

    fn current(&self) -> u64 {
        *self
            .generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sleeps up to `timeout` unless woken after `seen`.
    fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self
            .generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *guard != seen {
            return;
        }
        let _ = self
            .changed
            .wait_timeout_while(guard, timeout, |g| *g == seen);
    }
}

/// Lets the alert side wake the deliverers.
#[derive(Debug, Clone)]
pub struct NotifierHandle {
    wake: Arc<Wake>,
}

impl NotifierHandle {
    /// Something was queued: look now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify();
    }
}

/// The running deliverers.
pub struct Notifier {
    wake: Arc<Wake>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("destinations", &self.threads.len())
            .finish_non_exhaustive()
    }
}

/// Everything one deliverer needs.
struct Deliverer {
    destination: Destination,
    routing: Arc<Routing>,
    connection: Connection,
    client: reqwest::blocking::Client,
    scrub: Scrub,
    observer: Arc<dyn DeliveryObserver>,
    wake: Arc<Wake>,
    stop: Arc<AtomicBool>,
    pace: Pace,
    /// A 429 holds the whole destination back until then.
    held_until: Option<DateTime<Utc>>,
}

/// A token bucket: `burst` messages at once, refilled at `per_minute`.
#[derive(Debug)]
struct Pace {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl Pace {
    fn new(per_minute: u32, burst: u32) -> Self {
        Pace {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
    }

    /// How long until a message may leave.
    fn wait(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }

    fn take(&mut self) {
        self.refill();
        self.tokens -= 1.0;
    }
}

/// Opens a connection to the control database for a deliverer.
fn open(path: &Path) -> Result<Connection, NotifyError> {
    let connection = Connection::open(path).map_err(|e| NotifyError::database(path, e))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(|e| NotifyError::database(path, e))?;
    outbox::create(&connection).map_err(|e| NotifyError::database(path, e))?;
    Ok(connection)
}

/// An HTTP client for the providers: TLS through the system's OpenSSL and
/// certificate store, no redirects (a webhook that redirects is
/// misconfigured), the configured timeout.
pub fn http_client(settings: &DeliverySettings) -> Result<reqwest::blocking::Client, NotifyError> {
    reqwest::blocking::Client::builder()
        .timeout(settings.request_timeout)
        .connect_timeout(settings.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pipewatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| NotifyError::Http(e.to_string()))
}

impl Notifier {
    /// Starts one deliverer per destination over the control database at
    /// `control_db`. Pending rows left by an earlier run go out first.
    pub fn start(
        control_db: &Path,
        routing: Arc<Routing>,
        scrub: Scrub,
        observer: Arc<dyn DeliveryObserver>,
    ) -> Result<Notifier, NotifyError> {
        let wake = Arc::new(Wake::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client = http_client(&routing.settings)?;
        let mut threads = Vec::new();
        for destination in &routing.destinations {
            let deliverer = Deliverer {
                destination: destination.clone(),
                routing: routing.clone(),
                connection: open(control_db)?,
                client: client.clone(),
                scrub: scrub.clone(),
                observer: observer.clone(),
                wake: wake.clone(),
                stop: stop.clone(),
                pace: Pace::new(destination.per_minute, destination.burst),
                held_until: None,
            };
            let thread = std::thread::Builder::new()
                .name(format!("notify-{}", destination.name))
                .spawn(move || deliverer.run())
                .map_err(|e| NotifyError::Http(format!("cannot start a deliverer: {e}")))?;
            threads.push(thread);
        }
        Ok(Notifier {
            wake,
            stop,
            threads,
        })
    }

    /// A handle that wakes the deliverers.
    pub fn handle(&self) -> NotifierHandle {
        NotifierHandle {
            wake: self.wake.clone(),
        }
    }

    /// Stops after the sends in flight; what is still pending stays in the
    /// outbox for the next start.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// How a provider answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx.
    Accepted { status: u16, body: String },
    /// 429, with the provider's `Retry-After` when given.
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, 408, a timeout or a dropped connection: worth another try.
    Transient { status: Option<u16>, error: String },
    /// Any other 4xx (or a redirect): the request itself is wrong.
    Rejected { status: u16, body: String },
}

impl Answer {
    /// One line for people: the status and what the provider said.
    pub fn describe(&self) -> String {
        match self {
            Answer::Accepted { status, body } => format!("{status} accepted: {}", body.trim()),
            Answer::RateLimited { retry_after } => match retry_after {
                Some(after) => format!("429 rate limited; retry after {} s", after.as_secs()),
                None => "429 rate limited".into(),
            },
            Answer::Transient { status, error } => match status {
                Some(status) => format!("{status}: {}", error.trim()),
                None => error.clone(),
            },
            Answer::Rejected { status, body } => format!("{status} refused: {}", body.trim()),
        }
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(ERROR_CHARS).collect()
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok().or(Some(Duration::ZERO))
}

/// Sends one request and classifies the answer.
pub fn send(client: &reqwest::blocking::Client, request: &Request) -> Answer {
    let mut builder = client.post(&request.url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    match builder.send() {
        Ok(response) => {
            let status = response.status();
            let code = status.as_u16();
            let after = retry_after(response.headers(), Utc::now());
            let body = response.text().map(|t| excerpt(&t)).unwrap_or_default();
            if status.is_success() {
                Answer::Accepted { status: code, body }
            } else if code == 429 {
                Answer::RateLimited { retry_after: after }
            } else if status.is_server_error() || code == 408 {
                Answer::Transient {
                    status: Some(code),
                    error: body,
                }
            } else {
                Answer::Rejected { status: code, body }
            }
        }
        Err(e) => {
            // The URL of a Slack webhook is a credential: report the kind
            // of failure, not the request.
            let kind = if e.is_timeout() {
                "no answer within the request timeout"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "the connection failed before an answer"
            };
            Answer::Transient {
                status: None,
                error: kind.to_owned(),
            }
        }
    }
}

/// Exponential backoff with jitter: between half and all of
/// `initial · 2^(attempt-1)`, capped.
fn backoff(settings: &DeliverySettings, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = settings
        .retry_initial
        .saturating_mul(1u32 << exponent)
        .min(settings.retry_max);
    let half = full / 2;
    half + full
        .saturating_sub(half)
        .mul_f64(rand::rng().random::<f64>())
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Deliverer {
    fn run(mut self) {
        let name = self.destination.name.clone();
        while !self.stop.load(Ordering::SeqCst) {
            let seen = self.wake.current();
            match self.step() {
                Ok(Some(sleep)) => self.wake.wait(seen, sleep.min(POLL)),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(destination = %name, error = %e, "notification outbox failed; retrying");
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    /// Sends at most one message; returns how long to sleep when there was
    /// nothing to send yet.
    fn step(&mut self) -> Result<Option<Duration>, rusqlite::Error> {
        let now = Utc::now();
        if let Some(until) = self.held_until {
            if until > now {
                return Ok(Some((until - now).to_std().unwrap_or(POLL)));
            }
            self.held_until = None;
        }
        let due = outbox::due(
            &self.connection,
            &self.destination.name,
            now,
            DIGEST_MAX + 1,
        )?;
        let Some(head) = due.first().cloned() else {
            let next = outbox::next_due(&self.connection, &self.destination.name)?;
            return Ok(Some(
                next.and_then(|at| (at - now).to_std().ok()).unwrap_or(POLL),
            ));
        };
        let wait = self.pace.wait();
        if !wait.is_zero() {
            return Ok(Some(wait));
        }
        let row = match self.fold_if_needed(&head, &due, now)? {
            Some(digest) => digest,
            None => head,
        };
        self.deliver(&row)?;
        Ok(None)
    }

    /// A grouping route's alerts leave together; beyond the destination's
    /// burst, every waiting alert leaves together.
    fn fold_if_needed(
        &mut self,
        head: &Pending,
        due: &[Pending],
        now: DateTime<Utc>,
    ) -> Result<Option<Pending>, rusqlite::Error> {
        if head.action != Action::Trigger {
            return Ok(None);
        }
        let triggers: Vec<Pending> = due
            .iter()
            .filter(|p| p.action == Action::Trigger)
            .take(DIGEST_MAX)
            .cloned()
            .collect();
        let grouping = self.routing.route(&head.route).is_some_and(|r| r.groups());
        let same_route: Vec<Pending> = triggers
            .iter()
            .filter(|p| p.route == head.route)
            .cloned()
            .collect();
        let folded = if grouping && same_route.len() > 1 {
            same_route
        } else if triggers.len() > self.destination.burst as usize {
            triggers
        } else {
            return Ok(None);
        };
        self.observer.folded(&self.destination.name, folded.len());
        outbox::fold(&mut self.connection, &folded, now)
    }

    fn load_alert(&self, alert_id: &str) -> Result<Option<Alert>, rusqlite::Error> {
        use rusqlite::OptionalExtension;
        self.connection
            .query_row(
                "SELECT * FROM alerts WHERE alert_id = ?1",
                [alert_id],
                read_alert,
            )
            .optional()
    }

    fn content(&self, row: &Pending) -> Result<Option<Content>, rusqlite::Error> {
        Ok(match row.action {
            Action::Digest => {
                let mut alerts = Vec::new();
                for id in &row.digest_alerts {
                    if let Some(alert) = self.load_alert(id)? {
                        alerts.push(alert);
                    }
                }
                let reason = if row.route == "*" {
                    format!(
                        "{} alerts arrived faster than `{}` accepts messages; they are sent together.",
                        alerts.len(),
                        self.destination.name
                    )
                } else {
                    format!("Grouped by route `{}`.", row.route)
                };
                Some(Content::Digest { alerts, reason })
            }
            action => match row.alert_id.as_deref() {
                Some(id) => self.load_alert(id)?.map(|alert| Content::Alert {
                    action,
                    alert: Box::new(alert),
                }),
                None => None,
            },
        })
    }

    fn deliver(&mut self, row: &Pending) -> Result<(), rusqlite::Error> {
        let Some(content) = self.content(row)? else {
            outbox::settle(
                &self.connection,
                row.notification_id,
                &Settled::Failed,
                None,
                Some("the alert no longer exists"),
                Utc::now(),
            )?;
            return Ok(());
        };
        let started = Utc::now();
        let request = render(
            &self.destination,
            &self.routing.settings,
            &content,
            &row.notification_id.to_string(),
            &self.scrub,
            started,
        );
        outbox::attempt_started(&self.connection, row.notification_id, started)?;
        let alert_to_request = match (&content, row.attempts) {
            (Content::Alert { alert, .. }, 0) if row.action == Action::Trigger => (started
                - alert.updated_at.max(row.created_at))
            .to_std()
            .ok(),
            _ => None,
        };
        self.pace.take();
        let answer = send(&self.client, &request);
        let now = Utc::now();
        let attempts = row.attempts + 1;
        let settings = &self.routing.settings;
        let (settled, status, error, outcome) = match &answer {
            Answer::Accepted { status, .. } => {
                (Settled::Delivered, Some(*status), None, "delivered")
            }
            Answer::RateLimited { retry_after } => {
                let wait = retry_after.unwrap_or_else(|| backoff(settings, attempts));
                let at = now + to_chrono(wait);
                self.held_until = Some(at);
                let settled = if attempts >= settings.max_attempts {
                    Settled::Failed
                } else {
                    Settled::RetryAt(at)
                };
                (settled, Some(429), Some(answer.describe()), "rate_limited")
            }
            Answer::Transient { status, .. } => {
                let settled = if attempts >= settings.max_attempts {
                    Settled::Failed
                } else {
                    Settled::RetryAt(now + to_chrono(backoff(settings, attempts)))
                };
                (settled, *status, Some(answer.describe()), "retry")
            }
            Answer::Rejected { status, .. } => (
                Settled::Failed,
                Some(*status),
                Some(answer.describe()),
                "failed",
            ),
        };
        let outcome = if settled == Settled::Failed {
            "failed"
        } else {
            outcome
        };
        if settled == Settled::Failed {
            tracing::warn!(
                destination = %self.destination.name,
                notification = row.notification_id,
                attempts,
                answer = %answer.describe(),
                "notification failed; see the notifications table"
            );
        }
        outbox::settle(
            &self.connection,
            row.notification_id,
            &settled,
            status,
            error.as_deref().map(excerpt).as_deref(),
            now,
        )?;
        self.observer.attempted(
            &self.destination.name,
            row.action,
            outcome,
            alert_to_request,
        );
        Ok(())
    }
}

/// What a test through one destination got back.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub destination: String,
    pub kind: &'static str,
    /// Each request and its answer, in order (PagerDuty gets a trigger and
    /// then a resolve, so no incident stays open).
    pub answers: Vec<(String, Answer)>,
}

impl TestResult {
    /// Whether every request was accepted.
    pub fn ok(&self) -> bool {
        self.answers
            .iter()
            .all(|(_, a)| matches!(a, Answer::Accepted { .. }))
    }
}

/// Sends a clearly marked test message through every destination of
/// `route`, once, without the outbox, and reports the answers.
pub fn test_route(
    routing: &Routing,
    route: &str,
    scrub: &Scrub,
) -> Result<Vec<TestResult>, NotifyError> {
    let config = routing.route(route).ok_or_else(|| {
        NotifyError::Config(format!(
            "no route is called `{route}` (known: {})",
            routing
                .routes
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let client = http_client(&routing.settings)?;
    let delivery = format!("test-{}", Utc::now().timestamp_millis());
    let mut results = Vec::new();
    for name in &config.destinations {
        let Some(destination) = routing.destination(name) else {
            continue;
        };
        let content = Content::Test {
            route: route.to_owned(),
        };
        let request = render(
            destination,
            &routing.settings,
            &content,
            &delivery,
            scrub,
            Utc::now(),
        );
        let mut answers = vec![("test message".to_owned(), send(&client, &request))];
        if destination.kind == super::config::DestinationKind::Pagerduty
            && matches!(answers[0].1, Answer::Accepted { .. })
        {
            let resolve = resolve_test_incident(&request);
            answers.push(("resolve test incident".to_owned(), send(&client, &resolve)));
        }
        results.push(TestResult {
            destination: destination.name.clone(),
            kind: destination.kind.as_str(),
            answers,
        });
    }
    Ok(results)
}

fn resolve_test_incident(trigger: &Request) -> Request {
    let event: serde_json::Value = serde_json::from_slice(&trigger.body).unwrap_or_default();
    let body = serde_json::json!({
        "routing_key": event["routing_key"],
        "event_action": "resolve",
        "dedup_key": event["dedup_key"],
    });
    Request {
        url: trigger.url.clone(),
        headers: trigger.headers.clone(),
        body: body.to_string().into_bytes(),
    }
}

/// The control database of a data directory.
pub fn control_db(data_dir: &Path) -> PathBuf {
    data_dir.join(crate::alerts::CONTROL_DB)
}
