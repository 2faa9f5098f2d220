//! HashiCorp Vault file audit device (`vault/vault_audit.log`): one request
//! line and one response line per call, sensitive strings HMAC-ed, logins
//! through `auth/<mount>/login` whose response carries the issued token,
//! KV v2 reads of `secret/data/...`, and denials with the real error texts.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rand::Rng as _;
use serde_json::{Map, Value, json};

use super::iso_ns;
use crate::ctx::Ctx;
use crate::facts::VaultToken;
use crate::rng::{Rng, between, hex, uuid, vault_hmac};

const FILE: &str = "vault/vault_audit.log";

/// A fresh token for an auth method and its claims.
pub(crate) fn token(
    rng: &mut Rng,
    display_name: String,
    policies: Vec<String>,
    metadata: Option<BTreeMap<String, String>>,
    entity_id: String,
    ttl: u64,
    issued: DateTime<Utc>,
) -> VaultToken {
    let raw = format!("hvs.{}", hex(rng, 24));
    VaultToken {
        display_name,
        policies,
        metadata,
        client_token: vault_hmac(&raw),
        accessor: vault_hmac(&format!("accessor-{raw}")),
        entity_id,
        ttl,
        issue_time: issued,
    }
}

fn auth_block(t: &VaultToken) -> Value {
    let mut policies = t.policies.clone();
    policies.sort();
    json!({
        "client_token": t.client_token,
        "accessor": t.accessor,
        "display_name": t.display_name,
        "policies": policies,
        "token_policies": policies,
        "metadata": t.metadata,
        "entity_id": t.entity_id,
        "token_type": "service",
        "token_ttl": t.ttl,
        "token_issue_time": super::iso(t.issue_time),
    })
}

fn mount(path: &str) -> (&'static str, &'static str, &'static str, &'static str) {
    // (mount_point, mount_type, mount_accessor, mount_class)
    if path.starts_with("auth/jwt/") {
        ("auth/jwt/", "jwt", "auth_jwt_4f8a21c3", "auth")
    } else if path.starts_with("auth/oidc/") {
        ("auth/oidc/", "oidc", "auth_oidc_9b1e0d57", "auth")
    } else if path.starts_with("auth/kubernetes/") {
        (
            "auth/kubernetes/",
            "kubernetes",
            "auth_kubernetes_2c7d93aa",
            "auth",
        )
    } else if path.starts_with("sys/") {
        ("sys/", "system", "system_6e1f2a90", "")
    } else {
        ("secret/", "kv", "kv_1d3c5e7f", "secret")
    }
}

fn request(
    id: &str,
    operation: &str,
    path: &str,
    token: Option<&VaultToken>,
    remote: &str,
    port: i64,
    data: Option<Value>,
) -> Value {
    let (point, kind, accessor, class) = mount(path);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("operation".into(), json!(operation));
    m.insert("mount_point".into(), json!(point));
    m.insert("mount_type".into(), json!(kind));
    m.insert("mount_accessor".into(), json!(accessor));
    if kind == "kv" {
        m.insert("mount_running_version".into(), json!("v0.24.0+builtin"));
    }
    if !class.is_empty() {
        m.insert("mount_class".into(), json!(class));
    }
    if let Some(t) = token {
        m.insert("client_token".into(), json!(t.client_token));
        m.insert("client_token_accessor".into(), json!(t.accessor));
    }
    m.insert("namespace".into(), json!({"id": "root"}));
    m.insert("path".into(), json!(path));
    if let Some(d) = data {
        m.insert("data".into(), d);
    }
    m.insert("remote_address".into(), json!(remote));
    m.insert("remote_port".into(), json!(port));
    Value::Object(m)
}

/// A login through `auth/<mount>/login`; the response carries `issued`.
/// Returns the request id.
pub(crate) fn login(
    ctx: &mut Ctx,
    at: DateTime<Utc>,
    method: &str,
    role: &str,
    issued: &VaultToken,
    remote: &str,
) -> String {
    let at = at + Duration::nanoseconds(ctx.rng.random_range(0..999_999));
    let id = uuid(&mut ctx.rng);
    let port = between(&mut ctx.rng, 32_768, 60_999);
    let path = format!("auth/{method}/login");
    let data = match method {
        "oidc" => json!({"role": vault_hmac(role)}),
        _ => json!({"jwt": vault_hmac(&format!("jwt-{id}")), "role": vault_hmac(role)}),
    };
    let req = request(&id, "update", &path, None, remote, port, Some(data));
    let line = json!({"time": iso_ns(at), "type": "request", "auth": {"token_type": "default"}, "request": req});
    ctx.sink.line(FILE, at, &line);
    let (point, kind, accessor, class) = mount(&path);
    let done = at + Duration::nanoseconds(ctx.rng.random_range(1_500_000..9_000_000));
    let response = json!({
        "time": iso_ns(done),
        "type": "response",
        "auth": {"token_type": "default"},
        "request": req,
        "response": {
            "mount_point": point,
            "mount_type": kind,
            "mount_accessor": accessor,
            "mount_class": class,
            "auth": auth_block(issued),
        },
    });
    ctx.sink.line(FILE, done, &response);
    id
}

/// A call with a token: `read` of `secret/data/...` (returning `keys`),
/// `list` of `secret/metadata/...`, or `update` of a `sys/` path.
/// Denied calls carry the real error strings. Returns the request id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn call(
    ctx: &mut Ctx,
    at: DateTime<Utc>,
    token: &VaultToken,
    operation: &str,
    path: &str,
    keys: &[&str],
    remote: &str,
    denied: bool,
) -> String {
    let at = at + Duration::nanoseconds(ctx.rng.random_range(0..999_999));
    let id = uuid(&mut ctx.rng);
    let port = between(&mut ctx.rng, 32_768, 60_999);
    let data =
        (operation == "update").then(|| json!({"policy": vault_hmac(&format!("policy-{id}"))}));
    let req = request(&id, operation, path, Some(token), remote, port, data);
    let mut auth = auth_block(token);
    if let Some(map) = auth.as_object_mut() {
        let granting: Vec<Value> = token
            .policies
            .iter()
            .filter(|p| *p != "default")
            .take(1)
            .map(
                |p| json!({"name": p, "namespace_id": "root", "namespace_path": "", "type": "acl"}),
            )
            .collect();
        let results = if denied {
            json!({"allowed": false})
        } else {
            json!({"allowed": true, "granting_policies": granting})
        };
        map.insert("policy_results".into(), results);
    }
    let mut line = json!({"time": iso_ns(at), "type": "request", "auth": auth, "request": req});
    if let (true, Some(map)) = (denied, line.as_object_mut()) {
        map.insert("error".into(), json!("permission denied"));
    }
    ctx.sink.line(FILE, at, &line);

    let (point, kind, accessor, class) = mount(path);
    let payload = if denied {
        json!({"error": vault_hmac("permission denied")})
    } else if operation == "list" {
        json!({"keys": keys.iter().map(|k| vault_hmac(k)).collect::<Vec<_>>()})
    } else if kind == "kv" {
        let fields: Map<String, Value> = keys
            .iter()
            .map(|k| ((*k).to_owned(), json!(vault_hmac(&format!("{path}:{k}")))))
            .collect();
        json!({
            "data": fields,
            "metadata": {
                "created_time": vault_hmac(&format!("{path}:created")),
                "custom_metadata": null,
                "deletion_time": vault_hmac(""),
                "destroyed": false,
                "version": 1 + (path.len() % 7),
            },
        })
    } else {
        Value::Null
    };
    let mut response = Map::new();
    response.insert("mount_point".into(), json!(point));
    response.insert("mount_type".into(), json!(kind));
    response.insert("mount_accessor".into(), json!(accessor));
    if kind == "kv" {
        response.insert("mount_running_version".into(), json!("v0.24.0+builtin"));
    }
    if !class.is_empty() {
        response.insert("mount_class".into(), json!(class));
    }
    if !payload.is_null() {
        response.insert("data".into(), payload);
    }
    let done = at + Duration::nanoseconds(ctx.rng.random_range(600_000..6_000_000));
    let mut line = json!({
        "time": iso_ns(done),
        "type": "response",
        "auth": auth_block(token),
        "request": req,
        "response": Value::Object(response),
    });
    if let (true, Some(map)) = (denied, line.as_object_mut()) {
        map.insert(
            "error".into(),
            json!("1 error occurred:\n\t* permission denied\n\n"),
        );
    }
    ctx.sink.line(FILE, done, &line);
    id
}

/// The field names a KV secret returns, from its path's last segment.
pub(crate) fn secret_keys(path: &str) -> &'static [&'static str] {
    let name = path.rsplit('/').next().unwrap_or_default();
    match name {
        "database" | "ci-test-db" | "db-migrations" | "db-maintenance" | "db-admin" => {
            &["host", "password", "username"]
        }
        "api-keys" => &["primary", "secondary"],
        "cosign-key" => &["cosign.key", "cosign.password"],
        "publish-token" => &["token"],
        "ci-deployer-token" => &["token"],
        "stripe-api-key" => &["secret_key"],
        "state-encryption" => &["passphrase"],
        _ => &["value"],
    }
}
