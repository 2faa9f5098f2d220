//! Kubernetes API server audit events: `audit.k8s.io/v1` `Event` lines from
//! the log backend (NDJSON), single events, `EventList`s, and the older
//! `v1beta1`/`v1alpha1` shape (no `apiVersion`, a `timestamp` field).
//! Specification: <https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/>.

use chrono::{DateTime, Utc};
use pipewatch_schema::{ActorKind, Category, Event, IdentityKind};
use serde_json::Value;

use super::util::{Lookup, i64_at, str_at, time_at};
use super::{DecodeOutput, Decoder, Format, Input, Position, framing};
use crate::dead_letter::DeadLetterReason;

/// Decoder for Kubernetes audit events.
#[derive(Debug)]
pub(crate) struct K8sAudit;

pub(crate) static DECODER: K8sAudit = K8sAudit;

const FORMAT: Format = Format::K8sAudit;

/// Subresources that open an interactive channel into a running container.
const INTERACTIVE: &[&str] = &["exec", "attach", "portforward"];

/// Workload kinds whose spec changes roll out new code.
const WORKLOADS: &[&str] = &[
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    // Argo Rollouts: progressive delivery (canary, blue-green) of a workload.
    "rollouts",
];

const MUTATIONS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// Timestamps in order of preference: when the stage was reached, when the
/// request arrived, then the legacy fields.
const TIME_FIELDS: &[&str] = &[
    "/stageTimestamp",
    "/requestReceivedTimestamp",
    "/timestamp",
    "/metadata/creationTimestamp",
];

impl Decoder for K8sAudit {
    fn sniff(&self, record: &Value) -> bool {
        let api_version = str_at(record, "/apiVersion");
        let audit_api = api_version.is_some_and(|v| v.starts_with("audit.k8s.io/"));
        match str_at(record, "/kind") {
            Some("EventList") => audit_api,
            Some("Event") => {
                // Core `v1 Event`s also say `kind: Event`; only audit events carry an auditID.
                record.get("auditID").is_some()
                    && (audit_api || (api_version.is_none() && record.get("verb").is_some()))
            }
            _ => false,
        }
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in out.parsed(FORMAT, input, framing::records(input)) {
            let value = framed.value;
            if str_at(&value, "/kind") == Some("EventList") {
                let Some(items) = value.get("items").and_then(Value::as_array) else {
                    out.reject(
                        FORMAT,
                        input,
                        framed.position,
                        DeadLetterReason::MissingField,
                        "audit EventList has no items array",
                        framed.bytes,
                    );
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let bytes = serde_json::to_vec(item).unwrap_or_default();
                    decode_event(input, out, item, Position::Record(i), &bytes);
                }
            } else {
                decode_event(input, out, &value, framed.position, framed.bytes);
            }
        }
    }
}

fn decode_event(
    input: &Input<'_>,
    out: &mut DecodeOutput,
    record: &Value,
    position: Position,
    bytes: &[u8],
) {
    match event_of(input, record) {
        Ok(event) => out.events.push(event),
        Err((reason, detail)) => out.reject(FORMAT, input, position, reason, detail, bytes),
    }
}

type Rejection = (DeadLetterReason, String);

fn event_of(input: &Input<'_>, record: &Value) -> Result<Event, Rejection> {
    if !record.is_object() {
        return Err((
            DeadLetterReason::UnknownShape,
            "audit record is not a JSON object".into(),
        ));
    }
    if str_at(record, "/kind").is_some_and(|k| k != "Event") {
        return Err((
            DeadLetterReason::UnknownShape,
            format!(
                "audit record has kind {:?}, expected Event",
                str_at(record, "/kind").unwrap_or_default()
            ),
        ));
    }
    let audit_id = str_at(record, "/auditID").ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            "audit event has no auditID".to_owned(),
        )
    })?;
    let event_time = event_time(input, record)?;
    let stage = str_at(record, "/stage");
    let source_event_id = match stage {
        Some(stage) => format!("{audit_id}:{stage}"),
        None => audit_id.to_owned(),
    };

    let verb = str_at(record, "/verb")
        .unwrap_or("unknown")
        .to_ascii_lowercase();
    let resource = str_at(record, "/objectRef/resource");
    let subresource = str_at(record, "/objectRef/subresource");
    let namespace = str_at(record, "/objectRef/namespace");
    let name = str_at(record, "/objectRef/name");
    let class = classify(resource, subresource, &verb);

    let mut event = Event::new(
        FORMAT.name(),
        source_event_id,
        event_time,
        class.category,
        class.action,
        record.clone(),
    );
    event.outcome = outcome(record).to_owned();
    event.correlation_id = Some(audit_id.to_owned());
    event.url_full = str_at(record, "/requestURI").map(str::to_owned);
    event.client_address = str_at(record, "/sourceIPs/0").map(str::to_owned);
    event.user_agent_original = str_at(record, "/userAgent").map(str::to_owned);
    event.target_type = resource.map(singular);
    event.target_name = name.map(str::to_owned);
    event.target_namespace = namespace.map(str::to_owned);
    event.start_time = time_at(record, "/requestReceivedTimestamp");
    event.end_time = time_at(record, "/stageTimestamp");
    event.fill_duration();
    if event.category == Category::Deployment {
        event.deploy_strategy = rollout_strategy(record);
    }

    if let Some(username) = str_at(record, "/user/username") {
        event.actor = Some(username.to_owned());
        event.actor_kind = Some(if username.starts_with("system:") {
            ActorKind::Bot
        } else {
            ActorKind::User
        });
        let (kind, id) = identity(record, username);
        event.identity_kind = kind;
        event.identity_id = id;
    }

    let target = match (namespace, name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_owned(),
        _ => resource.unwrap_or("cluster").to_owned(),
    };
    let mut message = if class.interactive {
        let mut m = format!(
            "interactive {} access to pod {target}",
            subresource.unwrap_or_default()
        );
        let commands = query_values(str_at(record, "/requestURI"), "command");
        if !commands.is_empty() {
            m.push_str(&format!(" (command: {})", commands.join(" ")));
        }
        Some(m)
    } else {
        None
    };
    if let Some(as_user) = str_at(record, "/impersonatedUser/username") {
        let note = format!("impersonating {as_user}");
        message = Some(match message {
            Some(m) => format!("{m}; {note}"),
            None => note,
        });
    }
    if let Some(status) = str_at(record, "/responseStatus/message") {
        message = Some(match message {
            Some(m) => format!("{m}; {status}"),
            None => status.to_owned(),
        });
    }
    event.message = message;
    Ok(event)
}

fn event_time(input: &Input<'_>, record: &Value) -> Result<DateTime<Utc>, Rejection> {
    if let Some(t) = TIME_FIELDS.iter().find_map(|p| time_at(record, p)) {
        return Ok(t);
    }
    if let Some(bad) = TIME_FIELDS.iter().find(|p| record.at(p).is_some()) {
        return Err((
            DeadLetterReason::InvalidValue,
            format!("audit event {bad} is not a timestamp"),
        ));
    }
    input.observed_at.ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            "audit event has no stageTimestamp, requestReceivedTimestamp or timestamp".to_owned(),
        )
    })
}

struct Class {
    category: Category,
    action: String,
    interactive: bool,
}

fn classify(resource: Option<&str>, subresource: Option<&str>, verb: &str) -> Class {
    let mutation = MUTATIONS.contains(&verb);
    let Some(resource) = resource else {
        // Non-resource URLs (/healthz, /version, /metrics).
        return Class {
            category: if mutation {
                Category::ConfigChange
            } else {
                Category::Auth
            },
            action: format!("nonresource.{verb}"),
            interactive: false,
        };
    };
    let noun = singular(resource);
    let class = |category, action| Class {
        category,
        action,
        interactive: false,
    };
    match subresource {
        _ if resource == "secrets" => class(Category::SecretAccess, format!("secret.{verb}")),
        Some(sub) if resource == "pods" && INTERACTIVE.contains(&sub) => Class {
            category: Category::Auth,
            action: format!("pod.{sub}"),
            interactive: true,
        },
        // Minting a service-account token is credential issuance, not configuration.
        Some("token") if resource == "serviceaccounts" => {
            class(Category::Auth, format!("serviceaccount.token.{verb}"))
        }
        // Status and scale writes do not roll out a new spec.
        None if WORKLOADS.contains(&resource) && matches!(verb, "create" | "update" | "patch") => {
            class(Category::Deployment, format!("{noun}.{verb}"))
        }
        Some(sub) if mutation => class(Category::ConfigChange, format!("{noun}.{sub}.{verb}")),
        None if mutation => class(Category::ConfigChange, format!("{noun}.{verb}")),
        Some(sub) => class(Category::Auth, format!("{noun}.{sub}.{verb}")),
        None => class(Category::Auth, format!("{noun}.{verb}")),
    }
}

/// The rollout strategy of a workload write, from the object sent:
/// Argo Rollouts `spec.strategy.canary|blueGreen`, or a Deployment's
/// `spec.strategy.type` (`RollingUpdate`, `Recreate`).
fn rollout_strategy(record: &Value) -> Option<String> {
    let strategy = record
        .at("/requestObject/spec/strategy")
        .or_else(|| record.at("/responseObject/spec/strategy"))?;
    // A rolling update that may take every replica down at once is a big-bang deploy.
    let all_at_once = strategy
        .at("/rollingUpdate/maxUnavailable")
        .and_then(Value::as_str)
        == Some("100%");
    if all_at_once {
        return Some("all_at_once".to_owned());
    }
    let named = strategy
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| strategy.as_object()?.keys().next().cloned())?;
    super::util::deploy_strategy_word(&named).map(str::to_owned)
}

/// The singular of a Kubernetes resource name (`networkpolicies` -> `networkpolicy`).
fn singular(resource: &str) -> String {
    if let Some(stem) = resource.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = resource.strip_suffix("sses") {
        format!("{stem}ss")
    } else if resource.ends_with("ss") {
        resource.to_owned()
    } else if let Some(stem) = resource.strip_suffix('s') {
        stem.to_owned()
    } else {
        resource.to_owned()
    }
}

fn outcome(record: &Value) -> &'static str {
    if str_at(record, "/annotations/authorization.k8s.io~1decision") == Some("forbid") {
        return "denied";
    }
    match i64_at(record, "/responseStatus/code") {
        // 101 is the protocol upgrade that starts an exec/attach/port-forward stream.
        Some(code) if (100..400).contains(&code) => "success",
        Some(401 | 403) => "denied",
        Some(code) if code >= 400 => "failure",
        _ => "unknown",
    }
}

fn identity(record: &Value, username: &str) -> (IdentityKind, Option<String>) {
    // Set by the API server since 1.29: `JTI=<token id>` for bound service-account
    // tokens, `X509SHA256=<fingerprint>` for client certificates.
    let credential = record
        .at("/user/extra/authentication.kubernetes.io~1credential-id/0")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(sa) = username.strip_prefix("system:serviceaccount:") {
        let id = credential.map_or_else(|| sa.replacen(':', "/", 1), str::to_owned);
        return (IdentityKind::Token, Some(id));
    }
    match credential {
        Some(c) if c.starts_with("X509SHA256=") => (IdentityKind::StaticKey, Some(c.to_owned())),
        Some(c) if c.starts_with("JTI=") => (IdentityKind::Token, Some(c.to_owned())),
        _ => (IdentityKind::Unknown, None),
    }
}

/// Values of a query parameter in a request URI, percent-decoded.
fn query_values(uri: Option<&str>, key: &str) -> Vec<String> {
    let Some((_, query)) = uri.and_then(|u| u.split_once('?')) else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes.get(i).copied().unwrap_or_default();
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(text: &str) -> DecodeOutput {
        let mut out = DecodeOutput::default();
        DECODER.decode(&Input::new("test", text.as_bytes()), &mut out);
        out
    }

    fn line(value: Value) -> String {
        serde_json::to_string(&value).unwrap_or_default()
    }

    fn audit(resource: &str, sub: Option<&str>, verb: &str, user: &str, code: i64) -> Value {
        let mut object_ref = json!({"resource": resource, "namespace": "ns", "name": "obj"});
        if let Some(sub) = sub {
            object_ref["subresource"] = json!(sub);
        }
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1",
            "stage": "ResponseComplete", "verb": verb, "user": {"username": user},
            "objectRef": object_ref, "responseStatus": {"code": code},
            "requestURI": "/api/v1/namespaces/ns/pods/obj/exec?command=sh&command=-c&command=id%20-u",
            "stageTimestamp": "2024-01-01T00:00:01Z",
            "requestReceivedTimestamp": "2024-01-01T00:00:00.5Z"
        })
    }

    #[test]
    fn bad_line_is_dead_lettered_and_the_rest_decode() {
        let good = line(audit("secrets", None, "get", "alice", 200));
        let no_id = line(json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "verb": "get"}));
        let out = decode(&format!("{good}\nnot json\n{no_id}\n{good}\n"));
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.dead_letters.len(), 2);
        assert_eq!(out.dead_letters[0].position, Position::Line(2));
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::Syntax);
        assert_eq!(out.dead_letters[1].position, Position::Line(3));
        assert_eq!(out.dead_letters[1].reason, DeadLetterReason::MissingField);
    }

    #[test]
    fn detects_audit_events_but_not_core_events() {
        assert!(DECODER.sniff(&audit("pods", None, "get", "bob", 200)));
        assert!(
            DECODER
                .sniff(&json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []}))
        );
        assert!(!DECODER.sniff(&json!({"kind": "Event", "apiVersion": "v1", "reason": "Pulled"})));
    }

    #[test]
    fn event_lists_yield_each_item() {
        let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
            audit("secrets", None, "list", "alice", 200), {"kind": "Event"}
        ]});
        let out = decode(&line(list));
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.dead_letters[0].position, Position::Record(1));
    }

    #[test]
    fn classifies_secrets_workloads_exec_and_rbac() {
        let cases = [
            (
                audit("secrets", None, "get", "u", 200),
                Category::SecretAccess,
                "secret.get",
            ),
            (
                audit("deployments", None, "patch", "u", 200),
                Category::Deployment,
                "deployment.patch",
            ),
            (
                audit("deployments", Some("status"), "update", "u", 200),
                Category::ConfigChange,
                "deployment.status.update",
            ),
            (
                audit("pods", Some("exec"), "create", "u", 101),
                Category::Auth,
                "pod.exec",
            ),
            (
                audit("clusterrolebindings", None, "create", "u", 201),
                Category::ConfigChange,
                "clusterrolebinding.create",
            ),
            (
                audit("configmaps", None, "list", "u", 200),
                Category::Auth,
                "configmap.list",
            ),
        ];
        for (record, category, action) in cases {
            let out = decode(&line(record));
            assert_eq!(out.events[0].category, category, "{action}");
            assert_eq!(out.events[0].action, action);
        }
        let exec = decode(&line(audit("pods", Some("exec"), "create", "u", 101)));
        let event = &exec.events[0];
        assert_eq!(event.outcome, "success");
        assert_eq!(
            event.message.as_deref(),
            Some("interactive exec access to pod ns/obj (command: sh -c id -u)")
        );
        assert_eq!(event.duration_ms, Some(500));
        assert_eq!(event.source_event_id, "a-1:ResponseComplete");
    }

    #[test]
    fn service_accounts_are_token_bots_and_codes_map_to_outcomes() {
        let sa = decode(&line(audit(
            "secrets",
            None,
            "get",
            "system:serviceaccount:ci:deployer",
            403,
        )));
        let event = &sa.events[0];
        assert_eq!(event.identity_kind, IdentityKind::Token);
        assert_eq!(event.identity_id.as_deref(), Some("ci/deployer"));
        assert_eq!(event.actor_kind, Some(ActorKind::Bot));
        assert_eq!(event.outcome, "denied");

        let person = decode(&line(audit("secrets", None, "get", "alice", 500)));
        assert_eq!(person.events[0].identity_kind, IdentityKind::Unknown);
        assert_eq!(person.events[0].actor_kind, Some(ActorKind::User));
        assert_eq!(person.events[0].outcome, "failure");

        let mut received = audit("secrets", None, "get", "alice", 200);
        received["responseStatus"] = Value::Null;
        assert_eq!(decode(&line(received)).events[0].outcome, "unknown");
    }

    #[test]
    fn legacy_events_use_their_timestamp() {
        let legacy = json!({"kind": "Event", "auditID": "x", "verb": "get", "timestamp": "2018-10-26T13:25:18Z",
            "objectRef": {"resource": "pods"}, "user": {"username": "minikube-user"}});
        assert!(DECODER.sniff(&legacy));
        let out = decode(&line(legacy));
        assert_eq!(out.events[0].event_time.timestamp(), 1_540_560_318);
        assert_eq!(out.events[0].source_event_id, "x");

        let bad_time = json!({"kind": "Event", "auditID": "y", "verb": "get", "timestamp": "soon"});
        let out = decode(&line(bad_time));
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::InvalidValue);
    }
}
