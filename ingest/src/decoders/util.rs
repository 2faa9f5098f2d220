//! Small helpers shared by decoders: typed reads from JSON values and
//! timestamp parsing in the shapes native formats use.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

/// JSON pointer lookup (RFC 6901) that borrows each token, where
/// `Value::pointer` allocates two unescaped copies per token: decoders read
/// dozens of fields per record, so this is on the ingest hot path.
pub(crate) trait Lookup {
    /// The value at `pointer`, with the same answers as `Value::pointer`.
    fn at(&self, pointer: &str) -> Option<&Value>;
}

impl Lookup for Value {
    fn at(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let tokens = pointer.strip_prefix('/')?;
        tokens.split('/').try_fold(self, |target, token| {
            let token = unescape_token(token);
            match target {
                Value::Object(map) => map.get(token.as_ref()),
                Value::Array(list) => array_index(&token).and_then(|i| list.get(i)),
                _ => None,
            }
        })
    }
}

fn unescape_token(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An array index as RFC 6901 writes it: no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// The string at a JSON pointer (`/a/b/0`), if present and a non-empty string.
pub(crate) fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value
        .at(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The owned string at a pointer; numbers are rendered as text (native ids are often numbers).
pub(crate) fn text_at(value: &Value, pointer: &str) -> Option<String> {
    match value.at(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The integer at a pointer; numeric strings are accepted.
pub(crate) fn i64_at(value: &Value, pointer: &str) -> Option<i64> {
    match value.at(pointer)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The boolean at a pointer.
pub(crate) fn bool_at(value: &Value, pointer: &str) -> Option<bool> {
    value.at(pointer).and_then(Value::as_bool)
}

/// Parses a time as native formats write it: RFC 3339 (any offset),
/// `YYYY-MM-DD HH:MM:SS UTC` (GitLab), or epoch seconds, milliseconds,
/// microseconds or nanoseconds (told apart by magnitude).
pub(crate) fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => parse_time_str(s),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .and_then(epoch_any),
        _ => None,
    }
}

/// The time at a pointer, see [`parse_time`].
pub(crate) fn time_at(value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    value.at(pointer).and_then(parse_time)
}

/// The record's own time at `field`, else the input's observation time.
/// A missing time with no observation time, or an unreadable one, is the
/// record's dead-letter reason, worded as "`subject` has no `field`".
pub(crate) fn record_time(
    record: &Value,
    field: &str,
    observed_at: Option<DateTime<Utc>>,
    subject: &str,
) -> Result<DateTime<Utc>, (crate::dead_letter::DeadLetterReason, String)> {
    use crate::dead_letter::DeadLetterReason;
    match record.get(field) {
        Some(Value::Null) | None => observed_at.ok_or_else(|| {
            (
                DeadLetterReason::MissingField,
                format!("{subject} has no {field}"),
            )
        }),
        Some(value) => parse_time(value).ok_or_else(|| {
            (
                DeadLetterReason::InvalidValue,
                format!("{subject} has an unreadable {field}"),
            )
        }),
    }
}

/// Parses a textual time, see [`parse_time`].
pub(crate) fn parse_time_str(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for pattern in ["%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S%.f %z"] {
        if let Ok(t) = DateTime::parse_from_str(s, pattern) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Some(rest) = s.strip_suffix(" UTC")
        && let Ok(t) = chrono::NaiveDateTime::parse_from_str(rest, "%Y-%m-%d %H:%M:%S")
    {
        return Some(t.and_utc());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    s.parse::<i64>().ok().and_then(epoch_any)
}

/// Epoch time in seconds, milliseconds, microseconds or nanoseconds.
pub(crate) fn epoch_any(n: i64) -> Option<DateTime<Utc>> {
    let abs = n.unsigned_abs();
    if abs < 100_000_000_000 {
        Utc.timestamp_opt(n, 0).single()
    } else if abs < 100_000_000_000_000 {
        Utc.timestamp_millis_opt(n).single()
    } else if abs < 100_000_000_000_000_000 {
        Some(Utc.timestamp_nanos(n.saturating_mul(1000)))
    } else {
        Some(Utc.timestamp_nanos(n))
    }
}

/// Splits `owner/name` into the organisation and keeps the full name as the repository.
pub(crate) fn org_of(full_name: &str) -> Option<String> {
    full_name
        .split_once('/')
        .map(|(org, _)| org.to_owned())
        .filter(|o| !o.is_empty())
}

/// Normalizes a rollout strategy name as deployers spell it
/// (`Canary`, `blueGreen`, `RollingUpdate`, `deploy:canary`, ...).
pub(crate) fn deploy_strategy_word(native: &str) -> Option<&'static str> {
    let word = native
        .rsplit(':')
        .next()
        .unwrap_or(native)
        .to_ascii_lowercase()
        .replace(['-', '_', ' '], "");
    match word.as_str() {
        "canary" | "progressive" => Some("canary"),
        "bluegreen" => Some("blue_green"),
        "rolling" | "rollingupdate" => Some("rolling"),
        "recreate" => Some("recreate"),
        "allatonce" | "bigbang" | "direct" => Some("all_at_once"),
        _ => None,
    }
}

/// Lower-cased copy of a native outcome word mapped to the shared vocabulary.
pub(crate) fn outcome_word(native: &str) -> &'static str {
    match native.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "successful" | "passed" | "pass" | "ok" | "completed"
        | "healthy" | "synced" | "allow" | "allowed" | "true" => "success",
        "failure" | "failed" | "fail" | "error" | "errored" | "timed_out" | "degraded"
        | "startup_failure" => "failure",
        "cancelled" | "canceled" | "aborted" | "terminated" => "cancelled",
        "skipped" | "neutral" | "stale" | "manual" => "skipped",
        "denied" | "deny" | "forbidden" | "rejected" | "unauthorized" => "denied",
        "pending" | "queued" | "waiting" | "requested" | "created" | "scheduled" | "preparing"
        | "action_required" | "blocked" => "pending",
        "in_progress" | "running" | "progressing" | "started" => "in_progress",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_lookup_answers_as_rfc_6901_does() {
        let doc = serde_json::json!({
            "a": {"b/c": 1, "m~n": 2, "~1": 3, "": {"": 4}},
            "list": [10, 11, 12],
            "0": "zero",
        });
        let pointers = [
            "",
            "/",
            "//",
            "/a",
            "/a/b~1c",
            "/a/m~0n",
            "/a/~01",
            "/a/~1",
            "/a/b/c",
            "/list/0",
            "/list/2",
            "/list/3",
            "/list/01",
            "/list/+1",
            "/list/-1",
            "/list/",
            "/0",
            "a",
            "/a/b~1c/x",
            "/missing",
            "/list/0/x",
        ];
        for pointer in pointers {
            assert_eq!(doc.at(pointer), doc.pointer(pointer), "pointer {pointer:?}");
        }
        assert_eq!(doc.at("/a/b~1c"), Some(&serde_json::json!(1)));
        assert_eq!(doc.at("/a/~01"), Some(&serde_json::json!(3)));
        assert_eq!(doc.at("/list/01"), None);
        assert_eq!(doc.at("a"), None);
    }

    #[test]
    fn native_time_shapes_parse() {
        let rfc = parse_time_str("2020-12-01T20:29:04.356625452Z").expect("rfc3339");
        assert_eq!(rfc.timestamp(), 1_606_854_544);
        let gitlab = parse_time_str("2021-02-23 02:41:37 UTC").expect("gitlab");
        assert_eq!(gitlab.timestamp(), 1_614_048_097);
        let offset = parse_time_str("2016-08-12 15:23:28 +0200").expect("offset");
        assert_eq!(offset.timestamp(), 1_471_008_208);
        let millis = parse_time(&serde_json::json!(1_606_854_544_356_i64)).expect("millis");
        assert_eq!(millis.timestamp_millis(), 1_606_854_544_356);
        let nanos = parse_time(&serde_json::json!("1769641490000000000")).expect("nanos");
        assert_eq!(nanos.timestamp(), 1_769_641_490);
        assert!(parse_time_str("yesterday").is_none());
    }

    #[test]
    fn a_record_without_its_own_time_takes_the_observed_time_or_is_refused() {
        use crate::dead_letter::DeadLetterReason;
        let observed = parse_time_str("2026-01-02T03:04:05Z");
        let own = serde_json::json!({"time": "2020-12-01T20:29:04Z"});
        assert_eq!(
            record_time(&own, "time", observed, "line 1").map(|t| t.timestamp()),
            Ok(1_606_854_544)
        );
        let none = serde_json::json!({"time": null});
        assert_eq!(
            record_time(&none, "time", observed, "line 1"),
            Ok(observed.expect("time"))
        );
        let missing = record_time(&none, "time", None, "line 1").expect_err("refused");
        assert_eq!(
            missing,
            (DeadLetterReason::MissingField, "line 1 has no time".into())
        );
        let bad = serde_json::json!({"time": "yesterday"});
        let unreadable = record_time(&bad, "time", observed, "line 1").expect_err("refused");
        assert_eq!(unreadable.0, DeadLetterReason::InvalidValue);
    }

    #[test]
    fn rollout_strategies_normalize() {
        assert_eq!(deploy_strategy_word("blueGreen"), Some("blue_green"));
        assert_eq!(deploy_strategy_word("RollingUpdate"), Some("rolling"));
        assert_eq!(deploy_strategy_word("deploy:canary"), Some("canary"));
        assert_eq!(deploy_strategy_word("deploy"), None);
    }

    #[test]
    fn outcomes_map_to_the_shared_vocabulary() {
        assert_eq!(outcome_word("Succeeded"), "success");
        assert_eq!(outcome_word("timed_out"), "failure");
        assert_eq!(outcome_word("weird"), "unknown");
    }
}
