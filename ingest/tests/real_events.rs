//! Every real sample under `shared/real-events/` decodes without dead
//! letters, is recognised from its content alone, and yields the
//! normalized rows pinned in the snapshots beside this file.

use std::path::{Path, PathBuf};

use pipewatch_ingest::DeadLetterReason;
use pipewatch_ingest::Redactor;
use pipewatch_ingest::decoders::{self, Format, Input};
use pipewatch_ingest::source::file;

/// Where the samples live: `PIPEWATCH_REAL_EVENTS`, else `shared/` beside the repository.
fn samples_root() -> PathBuf {
    if let Ok(dir) = std::env::var("PIPEWATCH_REAL_EVENTS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/real-events");
    assert!(
        root.is_dir(),
        "real event samples not found at {}; set PIPEWATCH_REAL_EVENTS",
        root.display()
    );
    root
}

/// Valid OTLP traces that carry no CI/CD span (the protocol's own generic example).
const NOT_CICD: &[&str] = &["otlp-json.ExportTraceServiceRequest.opentelemetry-proto-example.json"];

/// Files that are not events: Argo CD notification templates and triggers.
fn is_event_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with("notifications-")
}

fn sample_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples_root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && is_event_file(p))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {dir}");
    files
}

/// Decodes every sample of `dir`, checks detection agrees with `expected`
/// (a function of the file name), and snapshots the rows without `raw`.
fn check_dir(dir: &str, expected: impl Fn(&str) -> Format) {
    for path in sample_files(dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_owned();
        let bytes = file::read(&path)
            .map(|read| read.bytes)
            .expect("readable, decompressible sample");
        let format = expected(&name);
        let detected = decoders::detect(&bytes);
        assert_eq!(
            detected,
            Some(format),
            "{dir}/{name}: detected as {detected:?}"
        );

        let mut input = Input::new(&name, &bytes);
        input.observed_at = Some(chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000));
        let (_, out) = decoders::decode(Some(format), &input);
        if NOT_CICD.contains(&name.as_str()) {
            // A valid trace with no CI/CD span: nothing stored, and the
            // reason recorded rather than dropped silently.
            assert!(out.events.is_empty(), "{dir}/{name}: stored non-CI spans");
            assert_eq!(out.dead_letters.len(), 1, "{dir}/{name}");
            assert_eq!(out.dead_letters[0].reason, DeadLetterReason::UnknownShape);
            continue;
        }
        assert!(
            out.dead_letters.is_empty(),
            "{dir}/{name}: dead letters: {:#?}",
            out.dead_letters
        );
        assert!(!out.events.is_empty(), "{dir}/{name}: no events");
        let redactor = Redactor::with_key(b"real-events".to_vec()).expect("redactor");
        for event in &out.events {
            // Redacting the record's JSON text gives what redacting its tree gives.
            let mut expected = event.raw.to_value();
            redactor.redact_json(&mut expected);
            let text = event.raw.json();
            let via_text = redactor.redact_json_text(&text).map_or_else(
                || event.raw.to_value(),
                |t| serde_json::from_str(&t).expect("JSON"),
            );
            assert_eq!(via_text, expected, "{dir}/{name}: text redaction differs");
            assert_eq!(event.source, format.name(), "{dir}/{name}: wrong source");
            assert!(
                !event.source_event_id.is_empty(),
                "{dir}/{name}: empty source_event_id"
            );
            assert!(
                event.raw.is_object(),
                "{dir}/{name}: raw must keep the native record"
            );
        }
        let mut ids: Vec<_> = out.events.iter().map(|e| e.event_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            out.events.len(),
            "{dir}/{name}: duplicate event ids"
        );

        let sample = format!("{dir}/{name}");
        if format.decoder().lines_stand_alone() {
            same_as_ndjson_lines(&sample, format, &input, &out.events, None);
        } else if format == Format::Otlp {
            // Spans of one request refer to each other, so the request is
            // not repeated: an empty one makes the input NDJSON.
            let empty = r#"{"resourceSpans":[]}"#;
            same_as_ndjson_lines(&sample, format, &input, &out.events, Some(empty));
        }

        let rows: Vec<serde_json::Value> = out
            .events
            .iter()
            .map(|e| {
                let mut row = serde_json::to_value(e).expect("serializable event");
                if let Some(object) = row.as_object_mut() {
                    object.remove("raw");
                    object.retain(|_, v| !v.is_null() && v != &serde_json::json!([]));
                }
                row
            })
            .collect();
        let snapshot = format!("{}__{}", dir, name.replace('.', "_"));
        insta::with_settings!({ snapshot_path => "snapshots/real_events", prepend_module_to_snapshot => false }, {
            insta::assert_yaml_snapshot!(snapshot, rows);
        });
    }
}

/// A JSON or YAML sample's records written one a line, as a log or a stream
/// delivers them, decode to what the sample gives read whole (decoders read
/// a line from its text, keeping only the fields they look at). A sample of
/// one record is followed by `filler`, or else written twice, so that the
/// input is NDJSON, not one document.
fn same_as_ndjson_lines(
    sample: &str,
    format: Format,
    whole: &Input<'_>,
    expected: &[pipewatch_schema::Event],
    filler: Option<&str>,
) {
    use decoders::framing;
    let records: Vec<serde_json::Value> = if framing::looks_like_json(whole.bytes) {
        match serde_json::from_slice(whole.bytes) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(other) => vec![other],
            // A console dump: JavaScript object syntax, not JSON.
            Err(_) => return,
        }
    } else {
        // YAML documents, as collectors' golden files are written.
        let documents = framing::yaml_documents(whole.bytes)
            .into_iter()
            .map(|framed| framed.parsed())
            .collect::<Result<_, _>>();
        documents.unwrap_or_else(|e| panic!("{sample}: YAML: {e}"))
    };
    let mut lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    let mut expected = expected.to_vec();
    match filler {
        Some(filler) => lines.push_str(filler),
        None if records.len() == 1 => {
            lines = lines.repeat(2);
            expected.extend_from_slice(&expected.clone());
        }
        None => {}
    }
    let input = Input {
        bytes: lines.as_bytes(),
        ..*whole
    };
    let (_, out) = decoders::decode(Some(format), &input);
    assert!(
        out.dead_letters.is_empty(),
        "{sample} as NDJSON: dead letters: {:#?}",
        out.dead_letters
    );
    let as_rows = |events: &[pipewatch_schema::Event]| -> Vec<serde_json::Value> {
        events
            .iter()
            .map(|e| {
                let mut row = serde_json::to_value(e).expect("serializable event");
                row["raw"] = e.raw.to_value();
                row
            })
            .collect()
    };
    assert_eq!(
        as_rows(&out.events),
        as_rows(&expected),
        "{sample}: its records read as NDJSON lines decode differently"
    );
}

#[test]
fn github_webhooks() {
    check_dir("github-webhooks", |_| Format::GithubWebhook);
}

#[test]
fn github_audit() {
    check_dir("github-audit", |_| Format::GithubAudit);
}

#[test]
fn gitlab() {
    check_dir("gitlab", |_| Format::Gitlab);
}

#[test]
fn vault_audit() {
    check_dir("vault-audit", |_| Format::VaultAudit);
}

#[test]
fn cloudtrail() {
    check_dir("cloudtrail", |_| Format::Cloudtrail);
}

#[test]
fn k8s_audit() {
    check_dir("k8s-audit", |_| Format::K8sAudit);
}

#[test]
fn argocd() {
    check_dir("argocd", |_| Format::ArgoCd);
}

#[test]
fn k8s_policy() {
    check_dir("k8s-policy", |_| Format::K8sPolicy);
}

#[test]
fn otel_cicd() {
    check_dir("otel-cicd", |_| Format::Otlp);
}

#[test]
fn sarif() {
    check_dir("sarif", |_| Format::Sarif);
}

#[test]
fn conftest() {
    check_dir("conftest", |name| {
        if name.ends_with(".sarif") {
            Format::Sarif
        } else {
            Format::Conftest
        }
    });
}

#[test]
fn sigstore() {
    check_dir("cosign", |_| Format::Sigstore);
}
