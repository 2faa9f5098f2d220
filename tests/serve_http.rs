//! End-to-end tests of `pipewatch serve`'s HTTP intake through the real
//! binary on loopback: signed GitHub webhooks (with redeliveries across a
//! restart), GitLab and per-format endpoints, limits, overload, ordered
//! shutdown, online detection, background compaction and the operational
//! endpoints.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::{Server, count, github_signature, real_events, sql, walkdir_count};

const GITHUB_SECRET: &str = "it-is-a-webhook-secret";
const NEXT_GITHUB_SECRET: &str = "the-rotated-in-secret";
const GITLAB_TOKEN: &str = "gitlab-hook-token";
const INGEST_TOKEN: &str = "ingest-bearer-token";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TEST_GITHUB_SECRET", GITHUB_SECRET),
        ("TEST_GITHUB_SECRET_NEXT", NEXT_GITHUB_SECRET),
        ("TEST_GITLAB_TOKEN", GITLAB_TOKEN),
        ("TEST_INGEST_TOKEN", INGEST_TOKEN),
    ]
}

/// A configuration with every HTTP endpoint enabled and `extra` appended.
fn config(extra: &str) -> String {
    format!(
        r#"
[[sources]]
kind = "http"
github_secrets = ["env:TEST_GITHUB_SECRET", "env:TEST_GITHUB_SECRET_NEXT"]
gitlab_tokens = ["env:TEST_GITLAB_TOKEN"]
ingest_tokens = ["env:TEST_INGEST_TOKEN"]
max_body_bytes = 65536
{extra}
"#
    )
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

fn sample(path: &str) -> Vec<u8> {
    let file = real_events().join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn post_github(
    server: &Server,
    event: &str,
    delivery: &str,
    body: &[u8],
    secret: &str,
) -> (StatusCode, Value) {
    let response = client()
        .post(server.url("/ingest/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", github_signature(secret, body))
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .expect("request sent");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn post_format(server: &Server, format: &str, body: &[u8]) -> reqwest::blocking::Response {
    client()
        .post(server.url(&format!("/ingest/{format}")))
        .bearer_auth(INGEST_TOKEN)
        .body(body.to_vec())
        .send()
        .expect("request sent")
}

fn metrics(server: &Server) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics")
}

/// The value of one sample line of `/metrics`, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn signed_github_webhooks_are_stored_once_even_when_redelivered_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let job = sample("github-webhooks/workflow_job.completed.success.json");
    let run = sample("github-webhooks/workflow_run.completed.json");

    let server = Server::start(&lake, &config(""), &env());
    let (status, body) = post_github(&server, "workflow_job", "delivery-1", &job, GITHUB_SECRET);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    // The second secret of a rotation is accepted too.
    let (status, body) = post_github(
        &server,
        "workflow_run",
        "delivery-2",
        &run,
        NEXT_GITHUB_SECRET,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    // GitHub redelivers with the same delivery id: acknowledged, not stored.
    let (status, body) = post_github(&server, "workflow_job", "delivery-1", &job, GITHUB_SECRET);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["note"]
            .as_str()
            .unwrap_or_default()
            .contains("delivery-1"),
        "{body}"
    );
    assert!(server.stop().success());

    let stored = "SELECT count(*) AS n FROM events WHERE source = 'github_webhook'";
    let after_first_run = count(&lake, stored);
    assert!(after_first_run >= 2, "{after_first_run}");

    // After a restart the delivery log still knows both deliveries.
    let server = Server::start(&lake, &config(""), &env());
    for (event, delivery, body) in [
        ("workflow_job", "delivery-1", &job),
        ("workflow_run", "delivery-2", &run),
    ] {
        let (status, answer) = post_github(&server, event, delivery, body, GITHUB_SECRET);
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(answer.get("accepted").is_none(), "stored again: {answer}");
    }
    // A new delivery id carrying an already stored event is a duplicate by event id.
    let (status, answer) = post_github(&server, "workflow_job", "delivery-3", &job, GITHUB_SECRET);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["duplicates"], 1, "{answer}");
    assert!(server.stop().success());
    assert_eq!(count(&lake, stored), after_first_run);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) - count(DISTINCT event_id) AS n FROM events"
        ),
        0
    );
}

#[test]
fn unsigned_or_badly_signed_requests_are_refused_with_401() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &config(""), &env());
    let body = sample("github-webhooks/workflow_job.completed.success.json");
    let good = github_signature(GITHUB_SECRET, &body);
    let sha1 = "sha1=0123456789abcdef0123456789abcdef01234567".to_owned();
    let truncated = good[..good.len() - 4].to_owned();
    let wrong = github_signature("not-the-secret", &body);
    for signature in [None, Some(sha1), Some(truncated), Some(wrong)] {
        let mut request = client()
            .post(server.url("/ingest/github"))
            .header("X-GitHub-Event", "workflow_job")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        let response = request.send().expect("sent");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{signature:?}");
    }
    let gitlab = client()
        .post(server.url("/ingest/gitlab"))
        .header("X-Gitlab-Token", "guess")
        .body(sample("gitlab/job_hook.created.json"))
        .send()
        .expect("sent");
    assert_eq!(gitlab.status(), StatusCode::UNAUTHORIZED);
    let no_bearer = client()
        .post(server.url("/ingest/vault_audit"))
        .body("{}")
        .send()
        .expect("sent");
    assert_eq!(no_bearer.status(), StatusCode::UNAUTHORIZED);

    let text = metrics(&server);
    let refused = |reason: &str| {
        metric(
            &text,
            &format!(
                "pipewatch_ingest_refused_requests_total{{source=\"http\",format=\"github_webhook\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(refused("signature_missing"), 1.0, "{text}");
    assert_eq!(refused("signature_scheme"), 1.0, "{text}");
    assert_eq!(refused("signature_malformed"), 1.0, "{text}");
    assert_eq!(refused("signature_mismatch"), 1.0, "{text}");
    assert!(server.stop().success());
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM events"), 0);
}

#[test]
fn gitlab_and_format_endpoints_store_events_and_explain_bad_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &config(""), &env());

    let response = client()
        .post(server.url("/ingest/gitlab"))
        .header("X-Gitlab-Token", GITLAB_TOKEN)
        .header("X-Gitlab-Event", "Job Hook")
        .body(sample("gitlab/job_hook.created.json"))
        .send()
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    // Event types pipewatch does not decode are acknowledged and counted, not dead-lettered.
    let response = client()
        .post(server.url("/ingest/gitlab"))
        .header("X-Gitlab-Token", GITLAB_TOKEN)
        .header("X-Gitlab-Event", "Issue Hook")
        .body(r#"{"object_kind":"issue"}"#)
        .send()
        .expect("sent");
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // NDJSON with one good and one broken line: the good one is stored.
    let vault = sample("vault-audit/vault_audit.file-device.log");
    let first_line = vault
        .split(|b| *b == b'\n')
        .next()
        .expect("a line")
        .to_vec();
    let mut mixed = first_line.clone();
    mixed.extend_from_slice(b"\n{\"type\": \"request\", \"broken\n");
    let response = post_format(&server, "vault_audit", &mixed);
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().expect("json");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["dead_lettered"], 1, "{answer}");
    assert_eq!(answer["errors"][0]["record"], "line 2", "{answer}");

    // Nothing decodable: 400 with the reason, and the record in the dead-letter store.
    let response = post_format(&server, "cloudtrail", b"this is not json");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().expect("json");
    assert_eq!(answer["errors"][0]["reason"], "syntax", "{answer}");

    let response = post_format(&server, "not_a_format", b"{}");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.text().expect("text").contains("github_webhook"));

    let too_large = vec![b' '; 70_000];
    let response = post_format(&server, "vault_audit", &too_large);
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let text = metrics(&server);
    assert_eq!(
        metric(
            &text,
            "pipewatch_ingest_dead_lettered_records_total{source=\"http\",format=\"cloudtrail\",reason=\"syntax\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "pipewatch_ingest_ignored_records_total{source=\"http\",format=\"gitlab\",reason=\"event_type_not_decoded\"}"
        ),
        1.0,
        "{text}"
    );
    assert!(server.stop().success());

    assert_eq!(
        count(
            &lake,
            "SELECT count(*) AS n FROM events WHERE source = 'gitlab'"
        ),
        1
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) AS n FROM events WHERE source = 'vault_audit'"
        ),
        1
    );
    let letters = sql(
        &lake,
        "SELECT source, reason FROM dead_letters ORDER BY source",
    );
    assert_eq!(
        letters,
        vec![
            json!({"source": "cloudtrail", "reason": "syntax"}),
            json!({"source": "vault_audit", "reason": "syntax"}),
        ]
    );
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    // One queued event fills the queue, and the committer holds it 1.5 s.
    let server = Server::start(
        &lake,
        &config("[intake]\nqueue_events = 1\nlinger_ms = 1500\n"),
        &env(),
    );
    let body = sample("github-webhooks/workflow_job.completed.success.json");
    let url = server.url("/ingest/github");
    let signature = github_signature(GITHUB_SECRET, &body);
    let first = {
        let (body, signature) = (body.clone(), signature.clone());
        std::thread::spawn(move || {
            client()
                .post(url)
                .header("X-GitHub-Event", "workflow_job")
                .header("X-Hub-Signature-256", signature)
                .body(body)
                .send()
                .expect("sent")
                .status()
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    let run = sample("github-webhooks/workflow_run.completed.json");
    let second = client()
        .post(server.url("/ingest/github"))
        .header("X-GitHub-Event", "workflow_run")
        .header("X-Hub-Signature-256", github_signature(GITHUB_SECRET, &run))
        .body(run)
        .send()
        .expect("sent");
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        second
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(first.join().expect("first request"), StatusCode::OK);
    assert!(server.stop().success());
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM events"), 1);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_before_the_process_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &config("[intake]\nlinger_ms = 1500\n"), &env());
    let body = sample("github-webhooks/workflow_job.completed.success.json");
    let url = server.url("/ingest/github");
    let signature = github_signature(GITHUB_SECRET, &body);
    let in_flight = std::thread::spawn(move || {
        let response = client()
            .post(url)
            .header("X-GitHub-Event", "workflow_job")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .expect("sent");
        (response.status(), response.text().unwrap_or_default())
    });
    std::thread::sleep(Duration::from_millis(400));
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    // Intake has stopped: new connections are not taken.
    let late = Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .get(server.url("/healthz"))
        .send();
    assert!(late.is_err(), "a new request was served after SIGTERM");
    let (status, text) = in_flight.join().expect("in-flight request");
    assert_eq!(status, StatusCode::OK, "{text}");
    let exit = server.wait(Duration::from_secs(60));
    assert!(exit.success(), "{exit:?}");
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM events"), 1);
}

#[test]
fn committed_batches_are_scored_online_and_their_alerts_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &config(""), &env());
    let now_ms = chrono::Utc::now().timestamp_millis();
    let removal = json!({
        "@timestamp": now_ms,
        "_document_id": "online-test-protection-removed",
        "action": "protected_branch.destroy",
        "actor": "someone",
        "org": "example-org",
        "repo": "example-org/payments",
        "name": "main",
    });
    let response = post_format(&server, "github_audit", removal.to_string().as_bytes());
    assert_eq!(response.status(), StatusCode::OK);

    // The alert is stored shortly after the commit, without running `detect`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics(&server);
        if metric(&text, "pipewatch_detect_alerts_total{outcome=\"new\"}") >= 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no alert was raised:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        metric(&text, "pipewatch_detect_events_total"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "pipewatch_detect_commit_to_alert_seconds_count"),
        1.0,
        "{text}"
    );
    assert!(server.stop().success());

    let alerts = sql(
        &lake,
        "SELECT a.detector, a.status, e.action FROM alerts a \
         JOIN events e ON array_has(a.evidence_event_ids, e.event_id)",
    );
    assert_eq!(
        alerts,
        vec![
            json!({"detector": "protection_weakened", "status": "open", "action": "protected_branch.destroy"})
        ]
    );
}

#[test]
fn health_readiness_and_metrics_answer_without_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &config(""), &env());
    for (path, expected) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = client().get(server.url(path)).send().expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().expect("text").trim(), expected);
    }
    let text = metrics(&server);
    for family in [
        "pipewatch_ingest_queued_events",
        "pipewatch_ingest_commit_seconds",
        "pipewatch_detect_commit_to_alert_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "{family}:\n{text}"
        );
    }
    assert!(server.stop().success());
}

#[test]
fn idle_and_slow_clients_cannot_hold_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(
        &lake,
        &config("[server]\nmax_connections = 2\nheader_read_timeout_secs = 1\n"),
        &env(),
    );
    // A client that starts a request and never finishes its headers is cut off.
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.write_all(b"POST /ingest/github HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a slow client held its connection for {:?}",
        started.elapsed()
    );

    // With the connection cap reached, a third client waits for a free slot.
    let first = TcpStream::connect(server.addr).expect("connect");
    let second = TcpStream::connect(server.addr).expect("connect");
    let started = Instant::now();
    let answer = client().get(server.url("/healthz")).send().expect("served");
    assert_eq!(answer.status(), StatusCode::OK);
    // Both idle connections are cut off by the header deadline, freeing slots.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "served at once despite the cap: {:?}",
        started.elapsed()
    );
    drop((first, second));
    assert!(server.stop().success());
}

#[test]
fn baselines_learn_from_history_that_ended_long_ago() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    // Vault audit lines from 2020: far outside a learning window ending now.
    let sample = real_events().join("vault-audit/vault_audit.file-device.log");
    let out = support::pipewatch()
        .args(["ingest", "--data-dir"])
        .arg(&lake)
        .arg(&sample)
        .output()
        .expect("ingest runs");
    assert!(out.status.success());
    // The learning window is the 30 days up to the newest event.
    let in_window = count(
        &lake,
        "SELECT count(*) AS n FROM events WHERE event_time >= \
         (SELECT max(event_time) FROM events) - INTERVAL '30 days'",
    );
    assert!(in_window > 0);
    let server = Server::start(&lake, &config(""), &env());
    let learned = server
        .startup
        .iter()
        .find_map(|line| {
            line.split("learned from ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .expect("the start-up line says what baselines learned from");
    assert_eq!(learned, in_window);
    assert!(server.stop().success());
}

#[test]
fn baselines_are_rebuilt_in_the_background_while_scoring_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(
        &lake,
        &config("[online]\nbaseline_refresh_secs = 1\n"),
        &env(),
    );
    let body = sample("github-webhooks/workflow_job.completed.success.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delivery = 0;
    loop {
        // Scoring keeps working across rebuilds.
        delivery += 1;
        let (status, _) = post_github(
            &server,
            "workflow_job",
            &format!("rebuild-{delivery}"),
            &body,
            GITHUB_SECRET,
        );
        assert_eq!(status, StatusCode::OK);
        let text = metrics(&server);
        if metric(&text, "pipewatch_detect_baseline_rebuilds_total") >= 2.0 {
            assert!(
                metric(&text, "pipewatch_detect_batches_total") >= 1.0,
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no rebuild happened:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.stop().success());
}

/// `n` Vault audit lines of one day, with ids `first..first + n`.
fn vault_lines(first: usize, n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in first..first + n {
        writeln!(
            body,
            r#"{{"time":"2026-03-04T10:{:02}:{:02}.000Z","type":"response","auth":{{"accessor":"hmac-sha256:ab","display_name":"jwt-ci","policies":["default"],"token_type":"service"}},"request":{{"id":"00000000-0000-4000-8000-{i:012}","operation":"read","mount_type":"kv","path":"secret/data/app","remote_address":"10.0.0.1"}},"response":{{"mount_type":"kv"}}}}"#,
            i % 60,
            (i / 60) % 60,
        )
        .expect("write");
    }
    body
}

#[test]
fn small_files_are_compacted_in_the_background_and_replays_still_find_their_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = Server::start(
        &lake,
        &config("[compaction]\ninterval_secs = 1\nquiet_minutes = 0\n[online]\nenabled = false\n"),
        &env(),
    );
    // Each request is its own commit, so the day gets one file per request.
    for request in 0..5 {
        let response = post_format(&server, "vault_audit", &vault_lines(request * 20, 20));
        assert_eq!(response.status(), StatusCode::OK);
    }
    let events = lake.join("events");
    let deadline = Instant::now() + Duration::from_secs(60);
    while walkdir_count(&events, ".parquet") != 1 {
        assert!(
            Instant::now() < deadline,
            "the day's {} files were not merged into one",
            walkdir_count(&events, ".parquet")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count(&lake, "SELECT count(*) FROM events"), 100);
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT event_id) FROM events"),
        100
    );
    let text = metrics(&server);
    assert!(
        metric(&text, "pipewatch_compaction_files_merged_total") >= 5.0,
        "{text}"
    );
    assert!(
        metric(&text, "pipewatch_compaction_passes_total{outcome=\"ok\"}") >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "pipewatch_compaction_last_success_timestamp_seconds") > 1.7e9,
        "{text}"
    );

    // The writer finds the merged events: a replay stores nothing.
    let response = post_format(&server, "vault_audit", &vault_lines(0, 100));
    let answer: Value = response.json().expect("json");
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["duplicates"], 100, "{answer}");
    assert!(server.stop().success());
    assert_eq!(count(&lake, "SELECT count(*) FROM events"), 100);
    assert!(
        walkdir_count(&lake.join("compaction"), ".json") == 0,
        "no compaction journal is left"
    );
}
