//! SARIF 2.1.0 logs from scanners run in pipelines (CodeQL, Trivy, gitleaks,
//! zizmor, `conftest --output sarif`, …): one finding row per result of
//! every run, with rule, severity, location and suppression state resolved.
//!
//! Specification: OASIS SARIF 2.1.0,
//! <https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html>.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use pipewatch_schema::{Category, Event, Severity};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::util::{Lookup, org_of, parse_time_str, str_at, text_at};
use super::{DecodeOutput, Decoder, Format, Input, Position, framing};
use crate::dead_letter::DeadLetterReason;

/// The SARIF decoder.
#[derive(Debug)]
pub(crate) struct Sarif;

pub(crate) static DECODER: Sarif = Sarif;

const FORMAT: Format = Format::Sarif;

impl Decoder for Sarif {
    fn sniff(&self, record: &Value) -> bool {
        let schema =
            str_at(record, "/$schema").is_some_and(|s| s.to_ascii_lowercase().contains("sarif"));
        let version = str_at(record, "/version") == Some("2.1.0");
        record.get("runs").is_some_and(Value::is_array) && (schema || version)
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        let mut ids = HashSet::new();
        for framed in out.parsed(FORMAT, input, framing::json_records(input)) {
            let log = framed.value;
            let Some(runs) = log.get("runs").and_then(Value::as_array) else {
                out.reject(
                    FORMAT,
                    input,
                    framed.position,
                    DeadLetterReason::UnknownShape,
                    "record has no runs array: not a SARIF log",
                    framed.bytes,
                );
                continue;
            };
            for (r, run) in runs.iter().enumerate() {
                let position = match framed.position {
                    Position::Whole => Position::Record(r),
                    other => other,
                };
                let mut reject = |reason, detail: String| {
                    let raw = run.to_string();
                    out.reject(
                        FORMAT,
                        input,
                        position,
                        reason,
                        format!("runs[{r}]: {detail}"),
                        raw.as_bytes(),
                    );
                };
                let Some(tool) = str_at(run, "/tool/driver/name") else {
                    reject(
                        DeadLetterReason::MissingField,
                        "run has no tool.driver.name".into(),
                    );
                    continue;
                };
                let event_time = match run_time(run, input.observed_at) {
                    Ok(t) => t,
                    Err((reason, detail)) => {
                        reject(reason, detail);
                        continue;
                    }
                };
                let results = run
                    .get("results")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice);
                for (i, result) in results.iter().enumerate() {
                    let ctx = RunContext {
                        run,
                        tool,
                        event_time,
                        run_index: r,
                    };
                    out.events.push(finding(&ctx, result, i, &mut ids));
                }
            }
        }
    }
}

struct RunContext<'a> {
    run: &'a Value,
    tool: &'a str,
    event_time: DateTime<Utc>,
    run_index: usize,
}

type Problem = (DeadLetterReason, String);

/// When the scan ran: the first invocation's end (else start), else when
/// the log was observed.
fn run_time(run: &Value, observed_at: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, Problem> {
    let mut unparsable = None;
    for pointer in ["/invocations/0/endTimeUtc", "/invocations/0/startTimeUtc"] {
        if let Some(text) = str_at(run, pointer) {
            match parse_time_str(text) {
                Some(t) => return Ok(t),
                None => {
                    unparsable = Some(format!(
                        "{} {text:?} is not a time",
                        pointer.trim_start_matches('/')
                    ))
                }
            }
        }
    }
    if let Some(detail) = unparsable {
        return Err((DeadLetterReason::InvalidValue, detail));
    }
    observed_at.ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            "run has no invocations[0].endTimeUtc/startTimeUtc and the input no observed time"
                .into(),
        )
    })
}

/// The reporting descriptor a result points at: `rule.toolComponent` picks
/// an extension's rules, `ruleIndex`/`rule.index` the entry, else the id.
fn rule_of<'a>(run: &'a Value, result: &Value) -> Option<&'a Value> {
    let component = result
        .at("/rule/toolComponent/index")
        .and_then(Value::as_u64)
        .and_then(|i| run.at(&format!("/tool/extensions/{i}")))
        .unwrap_or_else(|| run.at("/tool/driver").unwrap_or(&Value::Null));
    let rules = component.get("rules").and_then(Value::as_array)?;
    let index = result
        .get("ruleIndex")
        .or_else(|| result.at("/rule/index"))
        .and_then(Value::as_u64)
        .and_then(|i| usize::try_from(i).ok());
    if let Some(rule) = index.and_then(|i| rules.get(i)) {
        return Some(rule);
    }
    let id = str_at(result, "/ruleId").or_else(|| str_at(result, "/rule/id"))?;
    rules.iter().find(|rule| str_at(rule, "/id") == Some(id))
}

/// A property of the result, else of its rule.
fn property<'a>(result: &'a Value, rule: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let pick = |v: &'a Value| {
        v.get("properties")
            .and_then(|p| p.get(key))
            .filter(|v| !v.is_null())
    };
    pick(result).or_else(|| rule.and_then(pick))
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Severity, most specific first: a CVSS `security-severity`, then
/// CodeQL's `problem.severity`, then a tool's own severity word, then the level.
fn severity(result: &Value, rule: Option<&Value>, level: &str) -> Severity {
    if let Some(score) = property(result, rule, "security-severity").and_then(number) {
        return match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Info,
        };
    }
    if let Some(word) = property(result, rule, "problem.severity").and_then(Value::as_str) {
        match word.to_ascii_lowercase().as_str() {
            "error" => return Severity::High,
            "warning" => return Severity::Medium,
            "recommendation" => return Severity::Low,
            _ => {}
        }
    }
    for key in ["zizmor/severity", "severity"] {
        if let Some(word) = property(result, rule, key).and_then(Value::as_str) {
            match word.to_ascii_lowercase().as_str() {
                "critical" => return Severity::Critical,
                "high" | "error" => return Severity::High,
                "medium" | "moderate" | "warning" => return Severity::Medium,
                "low" => return Severity::Low,
                "informational" | "info" | "note" | "none" => return Severity::Info,
                _ => {}
            }
        }
    }
    match level {
        "error" => Severity::High,
        "warning" => Severity::Medium,
        "note" => Severity::Low,
        _ => Severity::Info,
    }
}

/// The effective level (SARIF §3.27.10): the result's, else the rule's
/// default, else `warning` for failures and `none` for other kinds.
fn level<'a>(result: &'a Value, rule: Option<&'a Value>, kind: &str) -> &'a str {
    str_at(result, "/level")
        .or_else(|| rule.and_then(|r| str_at(r, "/defaultConfiguration/level")))
        .unwrap_or(if kind == "fail" { "warning" } else { "none" })
}

/// `failure` for a finding, unless the result is suppressed, gone from the
/// baseline, or of a kind that is not a failure.
fn outcome(result: &Value, kind: &str) -> &'static str {
    if let Some(suppressions) = result.get("suppressions").and_then(Value::as_array) {
        let status = |s: &Value| {
            str_at(s, "/status")
                .unwrap_or("accepted")
                .to_ascii_lowercase()
        };
        if suppressions.iter().any(|s| status(s) == "accepted") {
            return "skipped";
        }
        if suppressions.iter().any(|s| status(s) == "underreview") {
            return "pending";
        }
    }
    if str_at(result, "/baselineState") == Some("absent") {
        return "success";
    }
    match kind {
        "pass" => "success",
        "notApplicable" => "skipped",
        "open" | "review" => "pending",
        "informational" => "warning",
        _ => "failure",
    }
}

/// The message text, from the result, its rule's message strings, or the
/// rule's short description; `{n}` placeholders take the arguments.
fn message(run: &Value, result: &Value, rule: Option<&Value>) -> Option<String> {
    let message = result.get("message");
    let template = message
        .and_then(|m| str_at(m, "/text"))
        .map(str::to_owned)
        .or_else(|| {
            let id = message.and_then(|m| str_at(m, "/id"))?;
            rule.and_then(|r| r.at(&format!("/messageStrings/{id}/text")))
                .or_else(|| run.at(&format!("/tool/driver/globalMessageStrings/{id}/text")))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            rule.and_then(|r| str_at(r, "/shortDescription/text"))
                .map(str::to_owned)
        })?;
    let arguments = message
        .and_then(|m| m.get("arguments"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut text = template;
    for (n, argument) in arguments.iter().enumerate() {
        if let Some(argument) = argument.as_str() {
            text = text.replace(&format!("{{{n}}}"), argument);
        }
    }
    Some(text)
}

/// `uri:startLine` of the first physical location (the uri alone when the
/// result has no region), else the first logical location's name.
fn code_location(run: &Value, result: &Value) -> Option<String> {
    let location = result.at("/locations/0")?;
    if let Some(physical) = location.get("physicalLocation") {
        let uri = str_at(physical, "/artifactLocation/uri")
            .map(str::to_owned)
            .or_else(|| {
                let index = physical
                    .at("/artifactLocation/index")
                    .and_then(Value::as_u64)?;
                str_at(run, &format!("/artifacts/{index}/location/uri")).map(str::to_owned)
            });
        if let Some(uri) = uri {
            return Some(
                match physical.at("/region/startLine").and_then(Value::as_u64) {
                    Some(line) => format!("{uri}:{line}"),
                    None => uri,
                },
            );
        }
    }
    str_at(location, "/logicalLocations/0/fullyQualifiedName")
        .or_else(|| str_at(location, "/logicalLocations/0/name"))
        .map(str::to_owned)
}

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize()).chars().take(32).collect()
}

/// The tool's own fingerprint: `fingerprints`, else `partialFingerprints`;
/// one entry is kept verbatim, several are hashed together.
fn fingerprint(result: &Value) -> Option<String> {
    let map = ["fingerprints", "partialFingerprints"]
        .into_iter()
        .filter_map(|k| result.get(k).and_then(Value::as_object))
        .find(|m| !m.is_empty())?;
    let mut entries: Vec<(String, String)> = map
        .iter()
        .filter_map(|(k, v)| text_at(v, "").map(|v| (k.clone(), v)))
        .collect();
    entries.sort();
    match entries.as_slice() {
        [] => None,
        [(_, value)] => Some(value.clone()),
        many => {
            let joined: Vec<String> = many.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Some(short_hash(&[&joined.join("\n")]))
        }
    }
}

/// `owner/name` from a repository URI (`https://host/owner/name(.git)`).
fn repo_from_uri(uri: &str) -> Option<String> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (_, path) = rest.split_once(['/', ':'])?;
    let path = path.trim_matches('/').trim_end_matches(".git");
    path.contains('/').then(|| path.to_owned())
}

/// The row for one result; `ids` holds the ids already used in this input.
fn finding(ctx: &RunContext<'_>, result: &Value, index: usize, ids: &mut HashSet<String>) -> Event {
    let run = ctx.run;
    let rule = rule_of(run, result);
    let rule_id = str_at(result, "/ruleId")
        .or_else(|| str_at(result, "/rule/id"))
        .or_else(|| rule.and_then(|r| str_at(r, "/id")))
        .map(str::to_owned);
    let kind = str_at(result, "/kind").unwrap_or("fail");
    let level = level(result, rule, kind);
    let message = message(run, result, rule);
    let location = code_location(run, result);
    let source_event_id = match fingerprint(result) {
        Some(fp) => format!("{}:{}:{fp}", ctx.tool, rule_id.as_deref().unwrap_or("-")),
        None => short_hash(&[
            ctx.tool,
            rule_id.as_deref().unwrap_or_default(),
            location.as_deref().unwrap_or_default(),
            message.as_deref().unwrap_or_default(),
            &format!("{}/{index}", ctx.run_index),
        ]),
    };
    // Two results with one fingerprint (gitleaks fingerprints by commit):
    // their position keeps them apart, the same way on every ingest.
    let source_event_id = if ids.contains(&source_event_id) {
        format!("{source_event_id}:{}.{index}", ctx.run_index)
    } else {
        source_event_id
    };
    ids.insert(source_event_id.clone());
    let mut e = Event::new(
        FORMAT.name(),
        source_event_id,
        ctx.event_time,
        Category::Finding,
        "sarif.result",
        result.clone(),
    );
    e.outcome = outcome(result, kind).to_owned();
    e.tool_name = Some(ctx.tool.to_owned());
    e.severity = Some(severity(result, rule, level));
    e.rule_id = rule_id;
    e.message = message;
    e.code_location = location;
    e.url_full = rule.and_then(|r| str_at(r, "/helpUri")).map(str::to_owned);
    if let Some(vcs) = run.at("/versionControlProvenance/0") {
        e.repo = str_at(vcs, "/repositoryUri").and_then(repo_from_uri);
        e.org = e.repo.as_deref().and_then(org_of);
        e.vcs_ref_head_revision = str_at(vcs, "/revisionId").map(str::to_owned);
        e.vcs_ref_head_name =
            str_at(vcs, "/branch").map(|b| b.trim_start_matches("refs/heads/").to_owned());
    }
    e.correlation_id = str_at(run, "/automationDetails/guid")
        .or_else(|| str_at(run, "/automationDetails/id"))
        .map(str::to_owned);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(log: &Value, observed: bool) -> DecodeOutput {
        let bytes = log.to_string();
        let mut input = Input::new("test.sarif", bytes.as_bytes());
        if observed {
            input.observed_at = Some(DateTime::UNIX_EPOCH);
        }
        let mut out = DecodeOutput::default();
        DECODER.decode(&input, &mut out);
        out
    }

    fn log(runs: Value) -> Value {
        json!({ "version": "2.1.0", "runs": runs })
    }

    #[test]
    fn detection_needs_runs_and_a_sarif_marker() {
        let body = br#"{"$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[]}"#;
        assert_eq!(crate::decoders::detect(body), Some(Format::Sarif));
        assert!(!DECODER.sniff(&json!({"runs": []})));
    }

    #[test]
    fn results_resolve_rules_severity_location_and_outcome() {
        let out = decode(
            &log(json!([{
                "tool": { "driver": { "name": "trivy", "rules": [
                    { "id": "CVE-1", "helpUri": "https://avd/CVE-1", "properties": { "security-severity": "9.8" } },
                    { "id": "style", "defaultConfiguration": { "level": "note" },
                      "messageStrings": { "m": { "text": "bad {0} in {1}" } } }
                ] } },
                "invocations": [{ "startTimeUtc": "2024-05-01T10:00:00Z", "endTimeUtc": "2024-05-01T10:05:00Z" }],
                "artifacts": [{ "location": { "uri": "src/a.rs" } }],
                "versionControlProvenance": [{ "repositoryUri": "https://github.com/acme/app", "revisionId": "abc" }],
                "results": [
                    { "ruleId": "CVE-1", "ruleIndex": 0, "level": "warning", "message": { "text": "vuln" },
                      "locations": [{ "physicalLocation": { "artifactLocation": { "uri": "Dockerfile" }, "region": { "startLine": 3 } } }] },
                    { "ruleIndex": 1, "message": { "id": "m", "arguments": ["x", "y"] },
                      "locations": [{ "physicalLocation": { "artifactLocation": { "index": 0 } } }],
                      "suppressions": [{ "kind": "inSource" }] }
                ]
            }])),
            false,
        );
        assert!(out.dead_letters.is_empty(), "{:#?}", out.dead_letters);
        let [vuln, style] = &out.events[..] else {
            panic!("two findings expected");
        };
        assert_eq!(vuln.severity, Some(Severity::Critical));
        assert_eq!(vuln.code_location.as_deref(), Some("Dockerfile:3"));
        assert_eq!(vuln.outcome, "failure");
        assert_eq!(vuln.url_full.as_deref(), Some("https://avd/CVE-1"));
        assert_eq!(vuln.repo.as_deref(), Some("acme/app"));
        assert_eq!(vuln.event_time.to_rfc3339(), "2024-05-01T10:05:00+00:00");
        assert_eq!(style.rule_id.as_deref(), Some("style"));
        assert_eq!(style.severity, Some(Severity::Low));
        assert_eq!(style.message.as_deref(), Some("bad x in y"));
        assert_eq!(style.code_location.as_deref(), Some("src/a.rs"));
        assert_eq!(style.outcome, "skipped");
    }

    #[test]
    fn ids_are_fingerprints_or_stable_hashes_and_unique() {
        let run = json!([{
            "tool": { "driver": { "name": "gitleaks" } },
            "results": [
                { "ruleId": "aws", "message": { "text": "a" }, "partialFingerprints": { "commitSha": "c1" } },
                { "ruleId": "aws", "message": { "text": "b" }, "partialFingerprints": { "commitSha": "c1" } },
                { "ruleId": "pypi", "message": { "text": "c" } }
            ]
        }]);
        let first = decode(&log(run.clone()), true);
        let again = decode(&log(run), true);
        let ids: Vec<&str> = first
            .events
            .iter()
            .map(|e| e.source_event_id.as_str())
            .collect();
        assert_eq!(ids[0], "gitleaks:aws:c1");
        assert_eq!(ids[1], "gitleaks:aws:c1:0.1");
        assert_eq!(ids[2].len(), 32);
        let again: Vec<&str> = again
            .events
            .iter()
            .map(|e| e.source_event_id.as_str())
            .collect();
        assert_eq!(ids, again);
    }

    #[test]
    fn a_run_without_time_or_tool_is_dead_lettered_and_others_decode() {
        let runs = json!([
            { "tool": { "driver": {} }, "results": [{ "message": { "text": "x" } }] },
            { "tool": { "driver": { "name": "zizmor" } },
              "results": [{ "ruleId": "zizmor/x", "level": "error", "message": { "text": "y" },
                            "properties": { "zizmor/severity": "Medium" } }] },
            { "tool": { "driver": { "name": "late" } }, "invocations": [{ "endTimeUtc": "soon" }], "results": [] }
        ]);
        let out = decode(&log(runs.clone()), true);
        let reasons: Vec<(DeadLetterReason, Position)> = out
            .dead_letters
            .iter()
            .map(|d| (d.reason, d.position))
            .collect();
        assert_eq!(
            reasons,
            [
                (DeadLetterReason::MissingField, Position::Record(0)),
                (DeadLetterReason::InvalidValue, Position::Record(2))
            ]
        );
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].severity, Some(Severity::Medium));

        let out = decode(&log(runs), false);
        assert!(out.events.is_empty());
        assert!(
            out.dead_letters
                .iter()
                .any(|d| d.detail.contains("observed time"))
        );
    }
}
