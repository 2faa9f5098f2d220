//! End-to-end checks of the generator through its public API: byte-identical
//! output for equal options, every incident kind labelled with evidence that
//! exists in the written files, a working-hours rhythm, readable gzip files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use pipewatch_datasets::{GenerateOptions, IncidentKind, Summary, generate};
use serde_json::Value;

/// The default dataset, generated once for all tests of this binary.
fn default_dataset() -> &'static (tempfile::TempDir, Summary) {
    static DATA: OnceLock<(tempfile::TempDir, Summary)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let summary = generate(&GenerateOptions::default(), dir.path()).expect("generate");
        (dir, summary)
    })
}

/// Every written file, decompressed when it starts with the gzip magic.
fn read_all(root: &Path, summary: &Summary) -> BTreeMap<String, String> {
    summary
        .files
        .iter()
        .map(|(path, _)| {
            let bytes = std::fs::read(root.join(path)).expect("read");
            let text = if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut out = String::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut out)
                    .expect("gunzip");
                out
            } else {
                String::from_utf8(bytes).expect("utf-8")
            };
            (path.to_string_lossy().into_owned(), text)
        })
        .collect()
}

#[test]
fn output_is_byte_identical_for_the_same_options() {
    let options = GenerateOptions {
        days: 4,
        seed: 11,
        scale: 0.5,
        ..GenerateOptions::default()
    };
    let a = tempfile::tempdir().expect("temp dir");
    let b = tempfile::tempdir().expect("temp dir");
    let first = generate(&options, a.path()).expect("first run");
    let second = generate(&options, b.path()).expect("second run");
    assert_eq!(first, second);
    for (path, _) in &first.files {
        let left = std::fs::read(a.path().join(path)).expect("read a");
        let right = std::fs::read(b.path().join(path)).expect("read b");
        assert!(left == right, "{} differs between runs", path.display());
    }
    let other = tempfile::tempdir().expect("temp dir");
    let reseeded = generate(
        &GenerateOptions {
            seed: 12,
            ..options
        },
        other.path(),
    )
    .expect("other seed");
    assert_ne!(first, reseeded, "a different seed must give different data");
}

#[test]
fn every_incident_kind_is_labelled_with_evidence_found_in_the_files() {
    let (dir, summary) = default_dataset();
    let files = read_all(dir.path(), summary);
    let labels: Value = serde_json::from_str(&files["labels.json"]).expect("labels.json");
    let incidents = labels["incidents"].as_array().expect("incidents");
    assert_eq!(incidents.len(), summary.incidents);
    let dir_of = |format: &str| match format {
        "github_webhook" => "github-webhooks/",
        "github_audit" => "github-audit/",
        "gitlab" => "gitlab/",
        "vault_audit" => "vault/",
        "cloudtrail" => "cloudtrail/",
        "k8s_audit" => "k8s-audit/",
        "argocd" => "argocd/",
        "otlp" => "otlp/",
        "sarif" => "sarif/",
        "conftest" => "conftest/",
        other => panic!("unknown evidence format {other}"),
    };
    let mut found_per_kind: BTreeMap<String, usize> = BTreeMap::new();
    for incident in incidents {
        let kind = incident["kind"].as_str().expect("kind").to_owned();
        let evidence = incident["evidence"].as_array().expect("evidence");
        assert!(!evidence.is_empty(), "{kind} has no evidence");
        for e in evidence {
            let format = e["format"].as_str().expect("format");
            let id = e["native_id"].as_str().expect("native_id");
            let needles: Vec<&str> = if format == "otlp" {
                id.split(':').collect()
            } else {
                vec![id]
            };
            let found = match e["file"].as_str() {
                Some(file) => needles.iter().all(|n| files[file].contains(n)),
                None => files
                    .iter()
                    .filter(|(path, _)| path.starts_with(dir_of(format)))
                    .any(|(_, text)| needles.iter().all(|n| text.contains(n))),
            };
            assert!(
                found,
                "{kind}: evidence {format} {id} not in the written files"
            );
            *found_per_kind.entry(kind.clone()).or_default() += 1;
        }
    }
    for kind in IncidentKind::ALL {
        let n = found_per_kind.get(kind.name()).copied().unwrap_or(0);
        assert!(n >= 2, "{} has {n} evidence records", kind.name());
    }
    let per_kind = incidents
        .iter()
        .filter(|i| i["kind"] == "account_burst")
        .count();
    assert!(per_kind >= 2, "at least two incidents per kind");
}

#[test]
fn runs_follow_the_working_week() {
    let (dir, summary) = default_dataset();
    let files = read_all(dir.path(), summary);
    let runs = files
        .iter()
        .find(|(p, _)| p.starts_with("github-webhooks/workflow_run"))
        .map(|(_, t)| t)
        .expect("workflow_run file");
    let mut weekday_all = 0usize;
    let mut weekday_day = 0usize;
    let mut weekday_night = 0usize;
    let mut weekend = 0usize;
    for line in runs.lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        if v["action"] != "requested" {
            continue;
        }
        let created = v["workflow_run"]["created_at"]
            .as_str()
            .expect("created_at");
        let t = chrono::DateTime::parse_from_rfc3339(created).expect("time");
        use chrono::{Datelike, Timelike};
        if t.weekday().num_days_from_monday() >= 5 {
            weekend += 1;
            continue;
        }
        weekday_all += 1;
        if (13..17).contains(&t.hour()) {
            weekday_day += 1;
        } else if t.hour() < 2 {
            weekday_night += 1;
        }
    }
    // 13-17 UTC is the shared working day of Berlin and New York; 00-02 UTC
    // is night in Europe and evening in America. Compare hourly rates.
    assert!(
        weekday_day / 4 > 3 * (weekday_night / 2),
        "day {weekday_day} vs night {weekday_night}"
    );
    // The default period has ten weekdays and four weekend days.
    assert!(
        weekday_all / 10 > 3 * (weekend / 4),
        "weekdays {weekday_all} vs weekend {weekend}"
    );
}

#[test]
fn gzip_files_decompress_into_parseable_records() {
    let (dir, summary) = default_dataset();
    let mut gz = 0;
    for (path, records) in &summary.files {
        let bytes = std::fs::read(dir.path().join(path)).expect("read");
        let name = path.to_string_lossy();
        assert_eq!(
            name.ends_with(".gz"),
            bytes.starts_with(&[0x1f, 0x8b]),
            "{name}: name and magic disagree"
        );
        if !name.ends_with(".gz") {
            continue;
        }
        gz += 1;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("gunzip");
        if name.starts_with("cloudtrail/") {
            let doc: Value = serde_json::from_str(&text).expect("cloudtrail json");
            assert_eq!(
                doc["Records"].as_array().map(Vec::len),
                Some(*records as usize)
            );
        } else {
            for line in text.lines() {
                serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
    assert!(gz >= 5, "the large files are gzipped");
    let total: u64 = summary.files.iter().map(|(_, n)| n).sum();
    assert_eq!(total, summary.events_approx);
    assert!((30_000..90_000).contains(&total), "volume {total}");
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let zero = GenerateOptions {
        days: 0,
        ..GenerateOptions::default()
    };
    assert!(generate(&zero, dir.path()).is_err());
    let scale = GenerateOptions {
        scale: f64::NAN,
        ..GenerateOptions::default()
    };
    assert!(generate(&scale, dir.path()).is_err());
}
