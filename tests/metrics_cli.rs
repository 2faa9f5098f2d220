//! End-to-end test of `pipewatch metrics`: the demo organisation is
//! ingested through the real binary, and every registered metric must come
//! out with a value within its valid range.

use std::process::{Command, Output};

use pipewatch_analytics::metrics::METRICS;

fn pipewatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipewatch"))
        .env_remove("PIPEWATCH_DATA_DIR")
        .env_remove("PIPEWATCH_DEMO_DIR")
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .expect("pipewatch runs")
}

fn succeeded(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn metrics_on_the_demo_organisation_are_all_within_range() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8");
    succeeded(
        &pipewatch(&["demo", "--no-serve", "--data-dir", dir]),
        "demo",
    );

    let text = succeeded(
        &pipewatch(&["metrics", "--data-dir", dir, "--output", "json"]),
        "metrics --output json",
    );
    let values: serde_json::Value = serde_json::from_str(&text).expect("json output");
    let values = values.as_array().expect("an array of values");
    for metric in METRICS {
        let entries: Vec<&serde_json::Value> = values
            .iter()
            .filter(|v| v["metric"] == metric.name)
            .collect();
        assert!(!entries.is_empty(), "{} is missing", metric.name);
        let (low, high) = metric.kind.valid_range();
        for entry in &entries {
            let value = entry["value"]
                .as_f64()
                .unwrap_or_else(|| panic!("{} has no value: {entry}", metric.name));
            assert!(
                value >= low && high.is_none_or(|h| value <= h),
                "{} = {value} is outside [{low}, {high:?}]",
                metric.name
            );
            assert!(entry["scope"].is_string(), "{entry}");
            let series = entry["series"].as_array().expect("series");
            assert_eq!(series.len(), 30, "default window is 30 days: {entry}");
            for point in series {
                if let Some(v) = point["value"].as_f64() {
                    assert!(
                        v >= low && high.is_none_or(|h| v <= h),
                        "{}: {point}",
                        metric.name
                    );
                }
            }
        }
    }

    // Grouped by repository, as a table, with a short window.
    let table = succeeded(
        &pipewatch(&[
            "metrics",
            "--data-dir",
            dir,
            "--by",
            "repo",
            "--window",
            "2w",
        ]),
        "metrics --by repo",
    );
    assert!(table.contains("by repo, window 2w"), "{table}");
    assert!(table.contains("ephemeral_runner_share"), "{table}");

    // The drill-down runs and prints rows (possibly none) as JSON.
    let detail = succeeded(
        &pipewatch(&[
            "metrics",
            "--data-dir",
            dir,
            "--detail",
            "persistent_runners_with_secrets",
            "--output",
            "json",
        ]),
        "metrics --detail",
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&detail)
            .expect("json")
            .is_array()
    );

    // Bad input is refused with a clear message.
    let bad = pipewatch(&["metrics", "--data-dir", dir, "--window", "30x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("12h, 30d, 2w"));
    let bad = pipewatch(&["metrics", "--data-dir", dir, "--detail", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("persistent_runners_with_secrets"));
}
