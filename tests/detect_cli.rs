//! End-to-end tests of detection through the binary: a generated
//! organisation ingested, `pipewatch detect` run over it, the alerts read
//! back with SQL and `pipewatch alerts`, and scored with `pipewatch eval`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pipewatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewatch"));
    cmd.env_remove("PIPEWATCH_DATA_DIR")
        .env_remove("PIPEWATCH_CONFIG")
        .env("RUST_LOG", "warn");
    cmd
}

fn run(args: &[&str]) -> Output {
    let out = pipewatch().args(args).output().expect("pipewatch runs");
    assert!(
        out.status.success(),
        "pipewatch {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lake holding the organisation generated with `seed`, and its labels.
struct Org {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    labels: PathBuf,
}

impl Org {
    fn generate(seed: u64) -> Org {
        let dir = tempfile::tempdir().expect("temp dir");
        let native = dir.path().join("native");
        let lake = dir.path().join("lake");
        let seed = seed.to_string();
        run(&["generate", "--seed", &seed, "--out", path(&native)]);
        let labels = dir.path().join("labels.json");
        std::fs::rename(native.join("labels.json"), &labels).expect("move labels");
        run(&["ingest", "--data-dir", path(&lake), path(&native)]);
        Org {
            _dir: dir,
            lake,
            labels,
        }
    }

    fn lake(&self) -> &str {
        path(&self.lake)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn sql(lake: &str, query: &str) -> Vec<serde_json::Value> {
    let out = run(&["sql", "--data-dir", lake, "--output", "json", query]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("json")
        .as_array()
        .cloned()
        .expect("rows")
}

fn eval(org: &Org) -> serde_json::Value {
    let out = run(&[
        "eval",
        "--data-dir",
        org.lake(),
        "--labels",
        path(&org.labels),
        "--output",
        "json",
    ]);
    serde_json::from_slice(&out.stdout).expect("eval json")
}

fn assert_quality(org: &Org, seed: u64) {
    let report = eval(org);
    let incidents = report["incidents"].as_f64().expect("incidents");
    let detected = report["detected"].as_f64().expect("detected");
    let alerts = report["alerts"].as_f64().expect("alerts");
    let true_alerts = report["true_alerts"].as_f64().expect("true alerts");
    let false_alerts = report["false_alerts"].as_f64().expect("false alerts");
    let benign = report["benign_events"].as_f64().expect("benign events");
    let recall = detected / incidents;
    let precision = true_alerts / alerts.max(1.0);
    let false_per_10k = false_alerts * 10_000.0 / benign;
    let summary = serde_json::to_string_pretty(&report).unwrap_or_default();
    assert!(recall >= 0.9, "seed {seed}: recall {recall:.3}\n{summary}");
    assert!(
        precision >= 0.7,
        "seed {seed}: precision {precision:.3}\n{summary}"
    );
    assert!(
        false_per_10k <= 5.0,
        "seed {seed}: {false_per_10k:.2} false alerts per 10k benign events\n{summary}"
    );
}

#[test]
fn detection_meets_its_quality_targets_and_a_rerun_adds_nothing() {
    let org = Org::generate(7);
    let first = text(&run(&["detect", "--data-dir", org.lake()]));
    assert!(first.contains("new alerts"), "{first}");
    // The top alerts explain themselves.
    assert!(
        first.contains("Expected:") && first.contains("Seen:"),
        "{first}"
    );
    let count = |lake: &str| sql(lake, "SELECT count(*) AS n FROM alerts")[0]["n"].as_i64();
    let alerts = count(org.lake()).expect("alert count");
    assert!(alerts > 0);
    let again = text(&run(&["detect", "--data-dir", org.lake(), "--top", "0"]));
    assert!(again.contains(" 0 new alerts, 0 grouped"), "{again}");
    assert_eq!(
        count(org.lake()),
        Some(alerts),
        "a rerun must not duplicate alerts"
    );

    let rows = sql(
        org.lake(),
        "SELECT alert_id, detector, severity, title, explanation, entity, evidence_event_ids, status \
         FROM alerts ORDER BY score DESC LIMIT 5",
    );
    for row in &rows {
        assert_eq!(row["status"], "open");
        let evidence = row["evidence_event_ids"].as_array().expect("evidence list");
        assert!(!evidence.is_empty(), "{row}");
        // Evidence ids are events of the lake.
        let id = evidence[0].as_str().expect("id");
        let found = sql(
            org.lake(),
            &format!("SELECT count(*) AS n FROM events WHERE event_id = '{id}'"),
        );
        assert_eq!(found[0]["n"], 1, "{row}");
    }
    assert_quality(&org, 7);
}

#[test]
fn detection_generalizes_to_another_organisation() {
    let org = Org::generate(23);
    run(&["detect", "--data-dir", org.lake(), "--top", "0"]);
    assert_quality(&org, 23);
}

#[test]
fn scoring_from_a_point_in_time_matches_scoring_everything() {
    // With a learning window longer than the history, the baselines at any
    // instant are the same whether detection started at the beginning or
    // warmed up to `--since`: the alerts after it must be the same.
    let org = Org::generate(11);
    let other = tempfile::tempdir().expect("temp dir");
    let copy = other.path().join("lake");
    copy_dir(&org.lake, &copy);
    run(&["detect", "--data-dir", org.lake(), "--top", "0"]);
    run(&[
        "detect",
        "--data-dir",
        path(&copy),
        "--since",
        "2026-10-12",
        "--top",
        "0",
    ]);
    let later = "SELECT detector, entity, evidence_event_ids[1] AS first FROM alerts \
                 WHERE event_time >= TIMESTAMP '2026-10-12T02:00:00Z' ORDER BY 1, 2, 3";
    let full = sql(org.lake(), later);
    let since = sql(path(&copy), later);
    assert!(!full.is_empty());
    assert_eq!(full, since);
    let earlier = sql(
        path(&copy),
        "SELECT count(*) AS n FROM alerts WHERE last_event_time < TIMESTAMP '2026-10-12T00:00:00Z'",
    );
    assert_eq!(earlier[0]["n"], 0, "nothing before --since is scored");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn alert_status_changes_are_kept_with_who_and_why() {
    let org = Org::generate(7);
    run(&["detect", "--data-dir", org.lake(), "--top", "0"]);
    let listed = text(&run(&[
        "alerts",
        "--data-dir",
        org.lake(),
        "--min-severity",
        "high",
        "--output",
        "json",
    ]));
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&listed).expect("json");
    let id = alerts[0]["alert_id"].as_str().expect("an alert").to_owned();
    run(&[
        "alerts",
        "ack",
        "--data-dir",
        org.lake(),
        &id,
        "--by",
        "ana",
    ]);
    let refused = pipewatch()
        .args([
            "alerts",
            "suppress",
            "--data-dir",
            org.lake(),
            &id,
            "--by",
            "ana",
            "--for",
            "7d",
        ])
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("reason"));
    run(&[
        "alerts",
        "suppress",
        "--data-dir",
        org.lake(),
        &id,
        "--by",
        "bo",
        "--reason",
        "planned red-team exercise",
        "--for",
        "7d",
    ]);
    // Assignment: only to someone who can act on alerts.
    let refused = pipewatch()
        .args([
            "alerts",
            "assign",
            "--data-dir",
            org.lake(),
            &id,
            "--to",
            "cy",
        ])
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cy is not a user who can act on alerts"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let added = pipewatch()
        .args([
            "users",
            "add",
            "cy",
            "--role",
            "responder",
            "--data-dir",
            org.lake(),
        ])
        .output()
        .expect("runs");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    run(&[
        "alerts",
        "assign",
        "--data-dir",
        org.lake(),
        &id,
        "--to",
        "cy",
        "--by",
        "bo",
    ]);
    let shown = text(&run(&["alerts", "show", "--data-dir", org.lake(), &id]));
    assert!(shown.contains("assigned to: cy"), "{shown}");
    assert!(shown.contains("by bo: assigned to cy"), "{shown}");
    assert!(shown.contains("open -> acknowledged by ana"), "{shown}");
    assert!(
        shown.contains("acknowledged -> suppressed by bo: planned red-team exercise"),
        "{shown}"
    );
    let status = sql(
        org.lake(),
        &format!("SELECT status, status_reason FROM alerts WHERE alert_id = '{id}'"),
    );
    assert_eq!(status[0]["status"], "suppressed");
    // A rerun keeps the status.
    run(&["detect", "--data-dir", org.lake(), "--top", "0"]);
    let status = sql(
        org.lake(),
        &format!("SELECT status FROM alerts WHERE alert_id = '{id}'"),
    );
    assert_eq!(status[0]["status"], "suppressed");
}

#[test]
fn a_broken_detection_config_is_refused_with_the_parameter_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pipewatch.toml");
    std::fs::write(&config, "[detect]\nlearning_window_days = 0\n").expect("write");
    let out = pipewatch()
        .args([
            "detect",
            "--data-dir",
            path(dir.path()),
            "--config",
            path(&config),
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("learning_window_days"), "{error}");
}

#[test]
fn the_example_configuration_parses() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/pipewatch.example.toml");
    let dir = tempfile::tempdir().expect("temp dir");
    // An empty lake: detection runs and finds nothing, with the example's settings.
    let out = run(&[
        "detect",
        "--data-dir",
        path(dir.path()),
        "--config",
        path(&example),
    ]);
    assert!(text(&out).contains("0 events scored"), "{}", text(&out));
}
