//! Kubernetes API-server audit log (`k8s-audit/audit.log`, NDJSON
//! `audit.k8s.io/v1` Events at stage ResponseComplete): rollouts and
//! deployments patched by Argo CD or a CI identity, with the applied object
//! (and its `spec.strategy`) as `requestObject`, and secrets read by
//! service accounts.

use chrono::{DateTime, Duration, Utc};
use rand::Rng as _;
use serde_json::{Value, json};

use super::iso_us;
use crate::ctx::Ctx;
use crate::org::Strategy;
use crate::rng::uuid;

const FILE: &str = "k8s-audit/audit.log";

/// One API call.
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    pub(crate) verb: &'static str,
    pub(crate) resource: &'static str,
    pub(crate) api_group: &'static str,
    pub(crate) api_version: &'static str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) user: &'a str,
    pub(crate) groups: &'a [&'a str],
    pub(crate) source_ip: &'a str,
    pub(crate) user_agent: &'a str,
    pub(crate) code: u16,
    pub(crate) request_object: Option<Value>,
    pub(crate) reason: &'a str,
}

/// Writes one audit Event; returns its auditID.
pub(crate) fn event(ctx: &mut Ctx, at: DateTime<Utc>, call: Call<'_>) -> String {
    let audit_id = uuid(&mut ctx.rng);
    let base = if call.api_group.is_empty() {
        format!("/api/{}", call.api_version)
    } else {
        format!("/apis/{}/{}", call.api_group, call.api_version)
    };
    let mut uri = format!(
        "{base}/namespaces/{}/{}/{}",
        call.namespace, call.resource, call.name
    );
    if call.verb == "patch" {
        let manager = call.user_agent.split('/').next().unwrap_or("kubectl");
        uri.push_str(&format!("?fieldManager={manager}&force=true"));
    }
    let mut object_ref = json!({
        "resource": call.resource,
        "namespace": call.namespace,
        "name": call.name,
        "apiVersion": call.api_version,
    });
    if let (false, Some(map)) = (call.api_group.is_empty(), object_ref.as_object_mut()) {
        map.insert("apiGroup".into(), json!(call.api_group));
    }
    let done = at + Duration::microseconds(ctx.rng.random_range(2_000..40_000));
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": if call.request_object.is_some() { "Request" } else { "Metadata" },
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": call.verb,
        "user": {"username": call.user, "groups": call.groups},
        "sourceIPs": [call.source_ip],
        "userAgent": call.user_agent,
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": call.code},
        "requestReceivedTimestamp": iso_us(at),
        "stageTimestamp": iso_us(done),
        "annotations": {
            "authorization.k8s.io/decision": if call.code == 403 { "forbid" } else { "allow" },
            "authorization.k8s.io/reason": call.reason,
        },
    });
    if let (Some(obj), Some(map)) = (call.request_object, event.as_object_mut()) {
        map.insert("requestObject".into(), obj);
    }
    ctx.sink.line(FILE, at, &event);
    audit_id
}

/// The applied object of a deploy: an Argo Rollout with canary steps, or a
/// Deployment with a rolling update (`big_bang` replaces every pod at once).
pub(crate) fn workload(
    app: &str,
    namespace: &str,
    image: &str,
    replicas: u32,
    strategy: Strategy,
    big_bang: bool,
) -> (&'static str, &'static str, &'static str, Value) {
    let template = json!({
        "metadata": {"labels": {"app.kubernetes.io/name": app}},
        "spec": {
            "serviceAccountName": app,
            "containers": [{"name": app, "image": image, "ports": [{"containerPort": 8080}]}],
        },
    });
    match (strategy, big_bang) {
        (Strategy::Canary, false) => (
            "rollouts",
            "argoproj.io",
            "v1alpha1",
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "metadata": {"name": app, "namespace": namespace},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                    "strategy": {"canary": {"steps": [
                        {"setWeight": 10}, {"pause": {"duration": "2m"}},
                        {"setWeight": 50}, {"pause": {"duration": "5m"}},
                    ]}},
                    "template": template,
                },
            }),
        ),
        (_, big) => (
            "deployments",
            "apps",
            "v1",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": app, "namespace": namespace},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                    "strategy": if big {
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "100%"}})
                    } else {
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}})
                    },
                    "template": template,
                },
            }),
        ),
    }
}

pub(crate) const ARGO_CONTROLLER: &str =
    "system:serviceaccount:argocd:argocd-application-controller";
pub(crate) const ESO: &str = "system:serviceaccount:external-secrets:external-secrets";
pub(crate) const SA_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:argocd",
    "system:authenticated",
];
pub(crate) const ESO_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:external-secrets",
    "system:authenticated",
];
pub(crate) const GITLAB_AGENT: &str = "system:serviceaccount:gitlab-agent:gitlab-agent";
pub(crate) const AGENT_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:gitlab-agent",
    "system:authenticated",
];
