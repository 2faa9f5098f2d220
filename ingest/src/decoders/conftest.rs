//! Policy evaluation results: Conftest `--output json` (one row per failure,
//! warning, exception and success, so compliance is successes over all rows)
//! and OPA decision-log upload bodies (one row per decision).
//!
//! Specifications: Conftest JSON output <https://www.conftest.dev/options/#json>;
//! OPA decision logs <https://www.openpolicyagent.org/docs/management-decision-logs>.

use chrono::{DateTime, Utc};
use pipewatch_schema::{Category, Event, Severity};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::util::{parse_time, str_at};
use super::{DecodeOutput, Decoder, Format, Input, framing};
use crate::dead_letter::DeadLetterReason;

/// The Conftest / OPA decoder.
#[derive(Debug)]
pub(crate) struct Conftest;

pub(crate) static DECODER: Conftest = Conftest;

const FORMAT: Format = Format::Conftest;

/// Most success rows one file result may expand to; a larger count is
/// not a real policy run.
const MAX_SUCCESSES: u64 = 100_000;

/// The result lists of a Conftest file result, with each list's outcome.
const LISTS: &[(&str, &str)] = &[
    ("failures", "failure"),
    ("warnings", "warning"),
    ("exceptions", "skipped"),
    ("skipped", "skipped"),
];

fn is_conftest(record: &Value) -> bool {
    record.get("filename").is_some_and(Value::is_string)
        && (record.get("successes").is_some_and(Value::is_u64)
            || LISTS
                .iter()
                .any(|(key, _)| record.get(*key).is_some_and(Value::is_array)))
}

fn is_decision(record: &Value) -> bool {
    record.get("decision_id").is_some_and(Value::is_string)
        && ["path", "result", "timestamp", "input"]
            .iter()
            .any(|k| record.get(*k).is_some())
}

impl Decoder for Conftest {
    fn sniff(&self, record: &Value) -> bool {
        is_conftest(record) || is_decision(record)
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in out.parsed(FORMAT, input, framing::records(input)) {
            let record = framed.value;
            let raw = || record.to_string().into_bytes();
            let decoded = if record.get("decision_id").is_some() {
                decision(&record, input.observed_at).map(|e| vec![e])
            } else if record.get("filename").is_some() {
                file_result(&record, input.observed_at)
            } else {
                Err((
                    DeadLetterReason::UnknownShape,
                    "record has neither filename (Conftest result) nor decision_id (OPA decision)"
                        .into(),
                ))
            };
            match decoded {
                Ok(events) => out.events.extend(events),
                Err((reason, detail)) => {
                    out.reject(FORMAT, input, framed.position, reason, detail, &raw())
                }
            }
        }
    }
}

type Problem = (DeadLetterReason, String);

/// Key of one file checked under one policy namespace in one run. Conftest
/// output has no run id, so the run is told apart by when its output was
/// observed: re-ingesting the same output keeps its ids, a later run of the
/// same checks gets new ones instead of being taken for a replay.
fn file_key(filename: &str, namespace: &str, run_time: DateTime<Utc>) -> String {
    let digest = Sha256::digest(
        format!("{filename}\0{namespace}\0{}", run_time.timestamp_micros()).as_bytes(),
    );
    hex::encode(digest).chars().take(16).collect()
}

/// The rows of one Conftest file result.
fn file_result(record: &Value, observed_at: Option<DateTime<Utc>>) -> Result<Vec<Event>, Problem> {
    let filename = record
        .get("filename")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            (
                DeadLetterReason::InvalidValue,
                "filename is not a string".to_owned(),
            )
        })?;
    // Conftest output carries no time: the run is dated by when it was observed.
    let event_time = observed_at.ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            format!("Conftest result for {filename:?} has no time and the input no observed time"),
        )
    })?;
    let namespace = str_at(record, "/namespace");
    let key = file_key(filename, namespace.unwrap_or_default(), event_time);
    let successes = match record.get("successes") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            (
                DeadLetterReason::InvalidValue,
                format!("successes {v} is not a count"),
            )
        })?,
    };
    if successes > MAX_SUCCESSES {
        return Err((
            DeadLetterReason::TooLarge,
            format!("successes {successes} exceeds the {MAX_SUCCESSES} rows one file may yield"),
        ));
    }

    let row = |id: String, kind: &str, outcome: &str, raw: Value| {
        let mut e = Event::new(
            FORMAT.name(),
            id,
            event_time,
            Category::PolicyResult,
            format!("conftest.{kind}"),
            raw,
        );
        e.outcome = outcome.to_owned();
        e.tool_name = Some("conftest".to_owned());
        e.target_type = Some("file".to_owned());
        e.target_name = Some(filename.to_owned());
        e
    };
    let mut events = Vec::new();
    for (list, outcome) in LISTS {
        let Some(items) = record.get(*list) else {
            continue;
        };
        let Some(items) = items.as_array() else {
            if items.is_null() {
                continue;
            }
            return Err((
                DeadLetterReason::InvalidValue,
                format!("{list} is not an array"),
            ));
        };
        let kind = list.trim_end_matches('s');
        for (i, item) in items.iter().enumerate() {
            let msg = str_at(item, "/msg").map(str::to_owned);
            let mut e = row(format!("{key}:{kind}:{i}"), kind, outcome, item.clone());
            e.rule_id = str_at(item, "/metadata/query")
                .map(str::to_owned)
                .or_else(|| msg.clone());
            e.severity = str_at(item, "/metadata/severity").and_then(severity);
            e.message = msg;
            events.push(e);
        }
    }
    let summary: Map<String, Value> = ["filename", "namespace", "successes"]
        .iter()
        .filter_map(|k| record.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    for i in 0..successes {
        let mut e = row(
            format!("{key}:success:{i}"),
            "success",
            "success",
            Value::Object(summary.clone()),
        );
        e.message = Some("check passed".to_owned());
        events.push(e);
    }
    Ok(events)
}

fn severity(word: &str) -> Option<Severity> {
    Severity::parse(&word.to_ascii_lowercase())
}

/// The outcome a decision's result stands for: a boolean, `allow`, or a
/// non-empty `deny`/`violations` set.
fn decision_outcome(result: Option<&Value>) -> &'static str {
    let boolean = |v: &Value| match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" || s == "false" => Some(s == "true"),
        _ => None,
    };
    let Some(result) = result else {
        return "unknown";
    };
    if let Some(b) = boolean(result) {
        return if b { "success" } else { "failure" };
    }
    if let Some(allow) = result.get("allow").and_then(boolean) {
        return if allow { "success" } else { "failure" };
    }
    let non_empty = |v: &Value| match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        _ => false,
    };
    if ["deny", "violations", "violation"]
        .iter()
        .any(|k| result.get(*k).is_some_and(non_empty))
    {
        return "failure";
    }
    "unknown"
}

/// Deny messages, when the policy gave them as text.
fn decision_message(result: Option<&Value>) -> Option<String> {
    let result = result?;
    let texts: Vec<&str> = ["deny", "violations", "reason", "msg"]
        .iter()
        .filter_map(|k| result.get(*k))
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => vec![s.as_str()],
            _ => Vec::new(),
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

/// The row of one OPA decision.
fn decision(record: &Value, observed_at: Option<DateTime<Utc>>) -> Result<Event, Problem> {
    let id = str_at(record, "/decision_id").ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            "decision has an empty decision_id".to_owned(),
        )
    })?;
    let event_time = match record.get("timestamp").or_else(|| record.get("time")) {
        Some(v) => parse_time(v).ok_or_else(|| {
            (
                DeadLetterReason::InvalidValue,
                format!("decision {id}: timestamp {v} is not a time"),
            )
        })?,
        None => observed_at.ok_or_else(|| {
            (
                DeadLetterReason::MissingField,
                format!("decision {id} has no timestamp and the input no observed time"),
            )
        })?,
    };
    let result = record.get("result").filter(|v| !v.is_null());
    let mut e = Event::new(
        FORMAT.name(),
        id,
        event_time,
        Category::PolicyResult,
        "opa.decision",
        record.clone(),
    );
    e.outcome = decision_outcome(result).to_owned();
    e.tool_name = Some("opa".to_owned());
    e.rule_id = str_at(record, "/path")
        .or_else(|| str_at(record, "/query"))
        .map(str::to_owned);
    e.message = decision_message(result);
    e.client_address = str_at(record, "/requested_by").map(str::to_owned);
    e.trace_id = str_at(record, "/trace_id").map(str::to_owned);
    e.span_id = str_at(record, "/span_id").map(str::to_owned);
    e.correlation_id = str_at(record, "/req_id").map(str::to_owned);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoders::Position;
    use serde_json::json;

    fn decode(body: &Value, observed: bool) -> DecodeOutput {
        let bytes = body.to_string();
        let mut input = Input::new("results.json", bytes.as_bytes());
        if observed {
            input.observed_at = Some(DateTime::UNIX_EPOCH);
        }
        let mut out = DecodeOutput::default();
        DECODER.decode(&input, &mut out);
        out
    }

    #[test]
    fn a_later_run_of_the_same_checks_is_not_taken_for_a_replay() {
        let body = br#"[{"filename": "deploy.yaml", "namespace": "main", "successes": 1}]"#;
        let ids_at = |seconds: i64| {
            let mut input = Input::new("conftest.json", body);
            input.observed_at = DateTime::from_timestamp(seconds, 0);
            let mut out = DecodeOutput::default();
            DECODER.decode(&input, &mut out);
            out.events
                .iter()
                .map(|e| e.event_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids_at(1_000), ids_at(1_000), "same output, same ids");
        assert_ne!(ids_at(1_000), ids_at(2_000), "a new run, new ids");
    }

    #[test]
    fn conftest_and_opa_bodies_are_detected() {
        let conftest = br#"[{"filename":"a.yaml","namespace":"main","successes":1}]"#;
        assert_eq!(crate::decoders::detect(conftest), Some(Format::Conftest));
        let opa = br#"[{"decision_id":"d1","path":"authz/allow","result":true}]"#;
        assert_eq!(crate::decoders::detect(opa), Some(Format::Conftest));
    }

    #[test]
    fn every_check_is_a_row_and_a_bad_record_stays_alone() {
        let out = decode(
            &json!([
                { "filename": "deploy.yaml", "namespace": "main", "successes": 2,
                  "failures": [{ "msg": "runs as root", "metadata": { "query": "data.main.deny", "severity": "HIGH" } }],
                  "warnings": [{ "msg": "no labels" }],
                  "exceptions": [{ "msg": "allowed" }] },
                { "filename": "svc.yaml", "successes": "many" },
                { "something": "else" }
            ]),
            true,
        );
        let outcomes: Vec<&str> = out.events.iter().map(|e| e.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            ["failure", "warning", "skipped", "success", "success"]
        );
        let failure = &out.events[0];
        assert_eq!(failure.rule_id.as_deref(), Some("data.main.deny"));
        assert_eq!(failure.severity, Some(Severity::High));
        assert_eq!(failure.target_name.as_deref(), Some("deploy.yaml"));
        assert_eq!(out.events[1].rule_id.as_deref(), Some("no labels"));
        let key = file_key("deploy.yaml", "main", out.events[4].event_time);
        assert_eq!(out.events[4].source_event_id, format!("{key}:success:1"));

        let reasons: Vec<(DeadLetterReason, Position)> = out
            .dead_letters
            .iter()
            .map(|d| (d.reason, d.position))
            .collect();
        assert_eq!(
            reasons,
            [
                (DeadLetterReason::InvalidValue, Position::Record(1)),
                (DeadLetterReason::UnknownShape, Position::Record(2))
            ]
        );
    }

    #[test]
    fn conftest_needs_an_observed_time() {
        let out = decode(&json!([{ "filename": "a.yaml", "successes": 1 }]), false);
        assert!(out.events.is_empty());
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
    }

    #[test]
    fn decisions_map_results_to_outcomes() {
        assert_eq!(decision_outcome(Some(&json!(true))), "success");
        assert_eq!(decision_outcome(Some(&json!("false"))), "failure");
        assert_eq!(
            decision_outcome(Some(&json!({ "allow": false }))),
            "failure"
        );
        assert_eq!(
            decision_outcome(Some(&json!({ "deny": ["no"] }))),
            "failure"
        );
        assert_eq!(decision_outcome(Some(&json!({ "deny": [] }))), "unknown");
        assert_eq!(decision_outcome(None), "unknown");

        let out = decode(
            &json!([
                { "decision_id": "d1", "path": "k8s/admission", "timestamp": "2024-01-01T00:00:00Z",
                  "result": { "allow": false, "deny": ["privileged pod"] } },
                { "decision_id": "d2", "path": "x", "timestamp": "not a time" }
            ]),
            false,
        );
        assert_eq!(out.events.len(), 1);
        let e = &out.events[0];
        assert_eq!(e.source_event_id, "d1");
        assert_eq!(e.outcome, "failure");
        assert_eq!(e.message.as_deref(), Some("privileged pod"));
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::InvalidValue);
        assert_eq!(out.dead_letters[0].position, Position::Record(1));
    }
}
