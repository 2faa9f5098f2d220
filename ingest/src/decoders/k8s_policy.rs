//! Kubernetes policy results: `wgpolicyk8s.io` PolicyReport and
//! ClusterPolicyReport (Kyverno, ValidatingAdmissionPolicy via Kyverno;
//! also the `openreports.io` successor), Gatekeeper constraints with
//! `status.violations`, and Gatekeeper export messages; one row per result.
//! Specifications: <https://kyverno.io/docs/policy-reports/>,
//! <https://github.com/kubernetes-sigs/wg-policy-prototypes/tree/master/policy-report>,
//! <https://open-policy-agent.github.io/gatekeeper/website/docs/audit> and
//! <https://open-policy-agent.github.io/gatekeeper/website/docs/export>.
//!
//! A report is rewritten in place on every scan, so ids carry the observed
//! version (`resourceVersion`, Gatekeeper's `auditTimestamp`) next to the
//! uid: re-ingesting one version gives the same ids, a later scan new ones.
//! `raw` is the report (or constraint) holding only the row's own result.

use chrono::{DateTime, TimeZone, Utc};
use pipewatch_schema::{ActorKind, Category, Event, Severity};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::util::{Lookup, i64_at, parse_time_str, str_at, time_at};
use super::{DecodeOutput, Decoder, Format, Input, Position, framing};
use crate::dead_letter::DeadLetterReason;

/// Decoder for policy reports and Gatekeeper violations.
#[derive(Debug)]
pub(crate) struct K8sPolicy;

pub(crate) static DECODER: K8sPolicy = K8sPolicy;

const FORMAT: Format = Format::K8sPolicy;

const REPORT_APIS: &[&str] = &["wgpolicyk8s.io/", "openreports.io/"];
const REPORT_KINDS: &[&str] = &[
    "PolicyReport",
    "ClusterPolicyReport",
    "Report",
    "ClusterReport",
];
const CONSTRAINT_API: &str = "constraints.gatekeeper.sh/";
const EXPORT_TYPES: &[&str] = &["violation_audited", "violation_admission"];

impl Decoder for K8sPolicy {
    fn sniff(&self, record: &Value) -> bool {
        if shape(record).is_some() {
            return true;
        }
        is_list(record)
            && record
                .at("/items/0")
                .is_some_and(|item| shape(item).is_some())
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in out.parsed(FORMAT, input, framing::records(input)) {
            let value = framed.value;
            match value.get("items").and_then(Value::as_array) {
                Some(items) if is_list(&value) => {
                    for (i, item) in items.iter().enumerate() {
                        let bytes = serde_json::to_vec(item).unwrap_or_default();
                        let mut ctx = Ctx::new(input, out, Position::Record(i), &bytes);
                        ctx.object(item);
                    }
                }
                _ => Ctx::new(input, out, framed.position, framed.bytes).object(&value),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Report,
    Constraint,
    Export,
}

fn shape(value: &Value) -> Option<Shape> {
    let api = str_at(value, "/apiVersion").unwrap_or_default();
    let kind = str_at(value, "/kind").unwrap_or_default();
    if REPORT_APIS.iter().any(|p| api.starts_with(p)) && REPORT_KINDS.contains(&kind) {
        Some(Shape::Report)
    } else if api.starts_with(CONSTRAINT_API) {
        Some(Shape::Constraint)
    } else if value.get("eventType").is_some()
        && str_at(value, "/group") == Some("constraints.gatekeeper.sh")
    {
        Some(Shape::Export)
    } else {
        None
    }
}

/// `kubectl get -o yaml` wraps objects in `kind: List`; typed lists end in `List`.
fn is_list(value: &Value) -> bool {
    value.get("items").is_some_and(Value::is_array)
        && str_at(value, "/kind").is_some_and(|k| k.ends_with("List"))
}

type Rejection = (DeadLetterReason, String);

/// One object being decoded: where it sits and where its rows go.
struct Ctx<'a, 'o> {
    input: &'a Input<'a>,
    out: &'o mut DecodeOutput,
    position: Position,
    bytes: &'a [u8],
}

impl<'a, 'o> Ctx<'a, 'o> {
    fn new(
        input: &'a Input<'a>,
        out: &'o mut DecodeOutput,
        position: Position,
        bytes: &'a [u8],
    ) -> Self {
        Ctx {
            input,
            out,
            position,
            bytes,
        }
    }

    fn reject(&mut self, (reason, detail): Rejection) {
        self.out.reject(
            FORMAT,
            self.input,
            self.position,
            reason,
            detail,
            self.bytes,
        );
    }

    fn object(&mut self, value: &Value) {
        match shape(value) {
            Some(Shape::Report) => self.report(value),
            Some(Shape::Constraint) => self.constraint(value),
            Some(Shape::Export) => match self.export(value) {
                Ok(event) => self.out.events.push(event),
                Err(e) => self.reject(e),
            },
            None => self.reject((
                DeadLetterReason::UnknownShape,
                format!(
                    "{} {} is not a policy report, Gatekeeper constraint or Gatekeeper export message",
                    str_at(value, "/apiVersion").unwrap_or("(no apiVersion)"),
                    str_at(value, "/kind").unwrap_or("(no kind)")
                ),
            )),
        }
    }

    /// The time a record says, else when the input was seen.
    fn fallback_time(
        &self,
        found: Option<DateTime<Utc>>,
        what: &str,
    ) -> Result<DateTime<Utc>, Rejection> {
        found.or(self.input.observed_at).ok_or_else(|| {
            (
                DeadLetterReason::MissingField,
                format!("{what} has no timestamp and the input has no observation time"),
            )
        })
    }

    fn report(&mut self, report: &Value) {
        let kind = str_at(report, "/kind").unwrap_or("PolicyReport");
        let name = str_at(report, "/metadata/name").unwrap_or("(unnamed)");
        let results = report.get("results").and_then(Value::as_array);
        let Some(results) = results.filter(|r| !r.is_empty()) else {
            return self.reject((
                DeadLetterReason::MissingField,
                format!("{kind} {name} has no results"),
            ));
        };
        let prefix = object_prefix(report);
        let created = time_at(report, "/metadata/creationTimestamp");
        let managed_by = str_at(report, "/metadata/labels/app.kubernetes.io~1managed-by");
        for (i, result) in results.iter().enumerate() {
            let Some(word) = str_at(result, "/result") else {
                self.reject((
                    DeadLetterReason::MissingField,
                    format!("{kind} {name} results[{i}] has no result"),
                ));
                continue;
            };
            let time = match self.fallback_time(
                result_time(result).or(created),
                &format!("{kind} {name} results[{i}]"),
            ) {
                Ok(t) => t,
                Err(e) => {
                    self.reject(e);
                    continue;
                }
            };
            let mut raw = report.clone();
            if let Some(object) = raw.as_object_mut() {
                object.insert("results".into(), json!([result]));
            }
            // Older reports name the checked objects per result instead of a report scope.
            let resources: Vec<&Value> = match result.get("resources").and_then(Value::as_array) {
                Some(list) if !list.is_empty() => list.iter().collect(),
                _ => vec![report.get("scope").unwrap_or(&Value::Null)],
            };
            let many = resources.len() > 1;
            for (j, resource) in resources.into_iter().enumerate() {
                let id = if many {
                    format!("{prefix}:{i}.{j}")
                } else {
                    format!("{prefix}:{i}")
                };
                let mut event = Event::new(
                    FORMAT.name(),
                    id,
                    time,
                    Category::PolicyResult,
                    format!("policy_report.{}", word.to_ascii_lowercase()),
                    raw.clone(),
                );
                event.outcome = result_outcome(word).to_owned();
                event.tool_name = Some(
                    str_at(result, "/source")
                        .or(managed_by)
                        .unwrap_or("policy-report")
                        .to_owned(),
                );
                let policy = str_at(result, "/policy");
                event.rule_id = match (policy, str_at(result, "/rule")) {
                    (Some(p), Some(r)) => Some(format!("{p}/{r}")),
                    (p, r) => p.or(r).map(str::to_owned),
                };
                event.severity = str_at(result, "/severity")
                    .and_then(|s| Severity::parse(&s.to_ascii_lowercase()));
                event.message = str_at(result, "/message").map(str::to_owned);
                set_target(
                    &mut event,
                    str_at(resource, "/kind"),
                    str_at(resource, "/name"),
                    str_at(resource, "/namespace").or(str_at(report, "/metadata/namespace")),
                );
                event.correlation_id = str_at(resource, "/uid").map(str::to_owned);
                self.out.events.push(event);
            }
        }
    }

    fn constraint(&mut self, constraint: &Value) {
        let kind = str_at(constraint, "/kind").unwrap_or("Constraint");
        let name = str_at(constraint, "/metadata/name").unwrap_or("(unnamed)");
        let audited = str_at(constraint, "/status/auditTimestamp");
        let Some(audit_text) = audited else {
            return self.reject((
                DeadLetterReason::MissingField,
                format!("Gatekeeper constraint {kind}/{name} has no status.auditTimestamp (not audited yet)"),
            ));
        };
        let time = match parse_time_str(audit_text) {
            Some(t) => t,
            None => {
                return self.reject((
                    DeadLetterReason::InvalidValue,
                    format!("Gatekeeper constraint {kind}/{name} status.auditTimestamp {audit_text:?} is not a time"),
                ));
            }
        };
        let prefix = format!("{}:{audit_text}", object_prefix(constraint));
        let rule_id = format!("{kind}/{name}");
        let default_action = str_at(constraint, "/spec/enforcementAction").unwrap_or("deny");
        let violations = constraint
            .at("/status/violations")
            .and_then(Value::as_array);
        let Some(violations) = violations.filter(|v| !v.is_empty()) else {
            // An audited constraint with nothing listed passed on every object.
            let mut event = Event::new(
                FORMAT.name(),
                format!("{prefix}:pass"),
                time,
                Category::PolicyResult,
                "gatekeeper.audit.pass",
                constraint.clone(),
            );
            event.outcome = "success".to_owned();
            event.tool_name = Some("gatekeeper".to_owned());
            event.rule_id = Some(rule_id);
            event.message = Some("no violations at the last audit".to_owned());
            self.out.events.push(event);
            return;
        };
        for (i, violation) in violations.iter().enumerate() {
            let action = str_at(violation, "/enforcementAction").unwrap_or(default_action);
            let mut raw = constraint.clone();
            if let Some(status) = raw.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("violations".into(), json!([violation]));
            }
            let mut event = Event::new(
                FORMAT.name(),
                format!("{prefix}:{i}"),
                time,
                Category::PolicyResult,
                format!("gatekeeper.violation.{action}"),
                raw,
            );
            event.outcome = violation_outcome(action).to_owned();
            event.tool_name = Some("gatekeeper".to_owned());
            event.rule_id = Some(rule_id.clone());
            event.message = str_at(violation, "/message").map(str::to_owned);
            set_target(
                &mut event,
                str_at(violation, "/kind"),
                str_at(violation, "/name"),
                str_at(violation, "/namespace"),
            );
            self.out.events.push(event);
        }
    }

    fn export(&self, message: &Value) -> Result<Event, Rejection> {
        let event_type = str_at(message, "/eventType").unwrap_or_default();
        if !EXPORT_TYPES.contains(&event_type) {
            return Err((
                DeadLetterReason::UnknownShape,
                format!("Gatekeeper export message of type {event_type:?} carries no violation"),
            ));
        }
        let id = str_at(message, "/id").ok_or_else(|| {
            (
                DeadLetterReason::MissingField,
                format!("Gatekeeper {event_type} message has no id"),
            )
        })?;
        let kind = str_at(message, "/kind").unwrap_or("Constraint");
        let name = str_at(message, "/name").unwrap_or_default();
        let resource_kind = str_at(message, "/resourceKind");
        let resource_namespace = str_at(message, "/resourceNamespace");
        let resource_name = str_at(message, "/resourceName");
        // Audit ids are the audit run's start time; admission ids are request uids.
        let time = time_at(message, "/timestamp").or_else(|| parse_time_str(id));
        let time = self.fallback_time(time, &format!("Gatekeeper {event_type} message {id}"))?;
        // The id names a whole audit run, so the constraint and object make the row unique.
        let source_event_id = format!(
            "{id}:{kind}/{name}:{}/{}/{}",
            resource_kind.unwrap_or_default(),
            resource_namespace.unwrap_or_default(),
            resource_name.unwrap_or_default()
        );
        let action = str_at(message, "/enforcementAction").unwrap_or("deny");
        let mut event = Event::new(
            FORMAT.name(),
            source_event_id,
            time,
            Category::PolicyResult,
            format!("gatekeeper.{event_type}.{action}"),
            message.clone(),
        );
        event.outcome = violation_outcome(action).to_owned();
        event.tool_name = Some("gatekeeper".to_owned());
        event.rule_id = Some(format!("{kind}/{name}"));
        event.message = str_at(message, "/message").map(str::to_owned);
        event.correlation_id = Some(id.to_owned());
        set_target(&mut event, resource_kind, resource_name, resource_namespace);
        if let Some(user) = str_at(message, "/requestUsername") {
            event.actor = Some(user.to_owned());
            event.actor_kind = Some(if user.starts_with("system:") {
                ActorKind::Bot
            } else {
                ActorKind::User
            });
        }
        Ok(event)
    }
}

fn set_target(event: &mut Event, kind: Option<&str>, name: Option<&str>, namespace: Option<&str>) {
    event.target_type = kind.map(str::to_ascii_lowercase);
    event.target_name = name.map(str::to_owned);
    event.target_namespace = namespace.map(str::to_owned);
}

/// `result.timestamp` is a protobuf Timestamp: `{seconds, nanos}`.
fn result_time(result: &Value) -> Option<DateTime<Utc>> {
    let seconds = i64_at(result, "/timestamp/seconds")?;
    let nanos = i64_at(result, "/timestamp/nanos")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    Utc.timestamp_opt(seconds, nanos).single()
}

fn result_outcome(word: &str) -> &'static str {
    match word.to_ascii_lowercase().as_str() {
        "pass" => "success",
        "fail" | "error" => "failure",
        "warn" => "warning",
        "skip" => "skipped",
        _ => "unknown",
    }
}

fn violation_outcome(enforcement_action: &str) -> &'static str {
    match enforcement_action {
        "warn" => "warning",
        _ => "failure",
    }
}

/// The object's uid with its observed version, or a hash of its content where
/// it has no uid (manifests trimmed by `kubectl neat`, documentation copies).
fn object_prefix(object: &Value) -> String {
    let base = match str_at(object, "/metadata/uid") {
        Some(uid) => uid.to_owned(),
        None => content_hash(object),
    };
    match str_at(object, "/metadata/resourceVersion") {
        // Gatekeeper prefixes add the audit time instead, which is what changes per audit.
        Some(version) if shape(object) == Some(Shape::Report) => format!("{base}:{version}"),
        _ => base,
    }
}

/// Hex SHA-256 of the object serialized with sorted keys, so JSON and YAML
/// renderings of the same object hash alike.
fn content_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    hash_canonical(value, &mut hasher);
    hex::encode(hasher.finalize())
}

fn hash_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(serde_json::to_string(key).unwrap_or_default().as_bytes());
                hasher.update(b":");
                if let Some(v) = map.get(key) {
                    hash_canonical(v, hasher);
                }
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                hash_canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        other => hasher.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> DecodeOutput {
        let mut out = DecodeOutput::default();
        let mut input = Input::new("test", text.as_bytes());
        input.observed_at = Utc.timestamp_opt(1_700_000_000, 0).single();
        DECODER.decode(&input, &mut out);
        out
    }

    const REPORT: &str = r#"
apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata: {name: r, namespace: apps, uid: u-1, resourceVersion: "7"}
scope: {apiVersion: v1, kind: Pod, name: web, namespace: apps, uid: pod-1}
results:
- {policy: disallow-privileged, rule: privileged, result: fail, severity: high, source: kyverno,
   message: privileged containers are not allowed, timestamp: {seconds: 1701868762, nanos: 0}}
- {policy: require-labels, result: skip, source: kyverno}
- {policy: broken, source: kyverno}
- {policy: p, rule: r, result: warn, source: kyverno}
"#;

    #[test]
    fn report_results_become_rows_and_a_result_without_verdict_is_dead_lettered() {
        let out = decode(REPORT);
        assert_eq!(out.events.len(), 3);
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
        assert!(out.dead_letters[0].detail.contains("results[2]"));

        let fail = &out.events[0];
        assert_eq!(fail.source_event_id, "u-1:7:0");
        assert_eq!(fail.outcome, "failure");
        assert_eq!(
            fail.rule_id.as_deref(),
            Some("disallow-privileged/privileged")
        );
        assert_eq!(fail.severity, Some(Severity::High));
        assert_eq!(fail.target_type.as_deref(), Some("pod"));
        assert_eq!(fail.event_time.timestamp(), 1_701_868_762);
        assert_eq!(
            fail.raw.to_value()["results"].as_array().map(Vec::len),
            Some(1)
        );

        let skip = &out.events[1];
        assert_eq!(skip.outcome, "skipped");
        assert_eq!(skip.rule_id.as_deref(), Some("require-labels"));
        // No result time and no creationTimestamp: the observation time.
        assert_eq!(skip.event_time.timestamp(), 1_700_000_000);
        assert_eq!(out.events[2].outcome, "warning");
    }

    #[test]
    fn detects_reports_lists_constraints_and_exports_only() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "ClusterPolicyReport"}]});
        assert!(DECODER.sniff(&list));
        assert!(DECODER.sniff(
            &json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sRequiredLabels"})
        ));
        assert!(DECODER.sniff(
            &json!({"eventType": "violation_audited", "group": "constraints.gatekeeper.sh"})
        ));
        assert!(
            !DECODER
                .sniff(&json!({"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod"}]}))
        );
        assert!(!DECODER.sniff(&json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy"})));
    }

    #[test]
    fn constraint_violations_fail_and_warn_and_unaudited_constraints_are_dead_lettered() {
        let out = decode(
            r#"{"apiVersion": "v1", "kind": "List", "items": [
              {"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sRequiredLabels",
               "metadata": {"name": "need-owner", "uid": "c-1"},
               "status": {"auditTimestamp": "2024-05-01T00:00:00Z", "violations": [
                 {"enforcementAction": "deny", "kind": "Namespace", "name": "default", "message": "no owner"},
                 {"enforcementAction": "warn", "kind": "Pod", "namespace": "a", "name": "b"}]}},
              {"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sRequiredLabels",
               "metadata": {"name": "new"}}]}"#,
        );
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.events[0].source_event_id, "c-1:2024-05-01T00:00:00Z:0");
        assert_eq!(out.events[0].outcome, "failure");
        assert_eq!(out.events[0].action, "gatekeeper.violation.deny");
        assert_eq!(
            out.events[0].rule_id.as_deref(),
            Some("K8sRequiredLabels/need-owner")
        );
        assert_eq!(out.events[1].outcome, "warning");
        assert_eq!(out.events[1].target_namespace.as_deref(), Some("a"));
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].position, Position::Record(1));
    }

    #[test]
    fn export_messages_key_on_audit_id_constraint_and_object() {
        let line = json!({"id": "2023-07-18T21:21:52Z", "eventType": "violation_audited",
            "group": "constraints.gatekeeper.sh", "kind": "K8sRequiredLabels", "name": "need-test",
            "enforcementAction": "dryrun", "resourceKind": "Pod", "resourceNamespace": "nginx", "resourceName": "web"});
        let started =
            json!({"id": "x", "eventType": "audit_started", "group": "constraints.gatekeeper.sh"});
        let out = decode(&format!("{line}\n{started}\n"));
        assert_eq!(out.events.len(), 1);
        let event = &out.events[0];
        assert_eq!(
            event.source_event_id,
            "2023-07-18T21:21:52Z:K8sRequiredLabels/need-test:Pod/nginx/web"
        );
        assert_eq!(event.event_time.timestamp(), 1_689_715_312);
        assert_eq!(event.outcome, "failure");
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::UnknownShape);
        assert_eq!(out.dead_letters[0].position, Position::Line(2));
    }

    #[test]
    fn reports_without_uid_get_a_stable_content_id() {
        let yaml = "apiVersion: wgpolicyk8s.io/v1alpha2\nkind: PolicyReport\nmetadata: {name: a}\nresults: [{policy: p, result: pass}]\n";
        let json = r#"{"results": [{"result": "pass", "policy": "p"}], "metadata": {"name": "a"}, "kind": "PolicyReport", "apiVersion": "wgpolicyk8s.io/v1alpha2"}"#;
        let a = decode(yaml);
        let b = decode(json);
        assert_eq!(a.events[0].source_event_id, b.events[0].source_event_id);
        assert_eq!(a.events[0].source_event_id.len(), 64 + 2);
    }
}
