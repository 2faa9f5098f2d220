//! HashiCorp Vault audit device lines (file, socket and syslog devices write
//! one JSON object a line, `type` request or response). Each line becomes one
//! event; HMAC-ed values are kept exactly as Vault wrote them.
//! Spec: <https://developer.hashicorp.com/vault/docs/audit>

use pipewatch_schema::{ActorKind, Category, Event, IdentityKind};
use serde_json::Value;

use super::framing;
use super::prune::Keep;
use super::util::{Lookup, record_time, str_at};
use super::{DecodeOutput, Decoder, Format, Input};
use crate::dead_letter::DeadLetterReason;

const FORMAT: Format = Format::VaultAudit;

#[derive(Debug)]
pub(crate) struct VaultAudit;

pub(crate) static DECODER: VaultAudit = VaultAudit;

impl Decoder for VaultAudit {
    fn sniff(&self, record: &Value) -> bool {
        matches!(str_at(record, "/type"), Some("request" | "response"))
            && record.get("request").is_some_and(Value::is_object)
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in framing::json_records(input) {
            let (position, bytes) = (framed.position, framed.bytes);
            let value = match framed.parsed_keeping(&READ) {
                Ok(value) => value,
                Err(error) => {
                    let reason = DeadLetterReason::Syntax;
                    out.reject(FORMAT, input, position, reason, error, bytes);
                    continue;
                }
            };
            match decode_line(&value, input) {
                Ok(mut event) => {
                    event.raw = framing::native_raw(position, bytes, || value);
                    out.events.push(event);
                }
                Err((reason, detail)) => {
                    let bytes = match position {
                        // Array elements share the whole body; keep only this one.
                        framing::Position::Record(_) => {
                            serde_json::to_vec(&value).unwrap_or_default()
                        }
                        _ => bytes.to_vec(),
                    };
                    out.reject(FORMAT, input, position, reason, detail, &bytes);
                }
            }
        }
    }
}

/// The fields of a line the decoder reads; request and response data,
/// the bulk of a line, are skipped when a line is read from its text.
static READ: Keep = Keep::Fields(&[
    ("time", Keep::All),
    ("type", Keep::All),
    ("error", Keep::All),
    (
        "auth",
        Keep::Fields(&[
            ("accessor", Keep::All),
            ("display_name", Keep::All),
            ("metadata", Keep::All),
            ("policies", Keep::All),
            ("token_policies", Keep::All),
        ]),
    ),
    (
        "request",
        Keep::Fields(&[
            ("id", Keep::All),
            ("path", Keep::All),
            ("operation", Keep::All),
            ("mount_type", Keep::All),
            ("namespace", Keep::All),
            ("remote_address", Keep::All),
            ("headers", Keep::Fields(&[("user-agent", Keep::All)])),
            ("client_token", Keep::All),
            ("client_token_accessor", Keep::All),
        ]),
    ),
    (
        "response",
        Keep::Fields(&[("auth", Keep::Fields(&[("accessor", Keep::All)]))]),
    ),
]);

type Reject = (DeadLetterReason, String);

fn decode_line(line: &Value, input: &Input<'_>) -> Result<Event, Reject> {
    let kind = match str_at(line, "/type") {
        Some(kind @ ("request" | "response")) => kind,
        Some(other) => {
            return Err((
                DeadLetterReason::UnknownShape,
                format!("vault audit line has unknown type {other:?}"),
            ));
        }
        None => {
            return Err((
                DeadLetterReason::UnknownShape,
                "vault audit line has no type (request or response)".into(),
            ));
        }
    };
    let request_id = str_at(line, "/request/id").ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            format!("vault audit {kind} line has no request.id"),
        )
    })?;
    let event_time = record_time(
        line,
        "time",
        input.observed_at,
        &format!("vault audit {kind} {request_id}"),
    )?;

    let path = str_at(line, "/request/path").unwrap_or_default();
    let operation = str_at(line, "/request/operation").unwrap_or("unknown");
    let mount_type = str_at(line, "/request/mount_type");
    let class = classify(path, operation, mount_type);

    let mut event = Event::new(
        FORMAT.name(),
        format!("{request_id}:{kind}"),
        event_time,
        class.category,
        class.action,
        // The decoder's loop sets the line itself as the record.
        Value::Null,
    );
    event.correlation_id = Some(request_id.to_owned());
    event.target_type = Some(class.target_type.to_owned());
    event.target_name = Some(path.to_owned()).filter(|p| !p.is_empty());
    event.target_namespace = str_at(line, "/request/namespace/path")
        .or_else(|| str_at(line, "/request/namespace/id"))
        .map(str::to_owned);
    event.client_address = str_at(line, "/request/remote_address").map(str::to_owned);
    event.user_agent_original = str_at(line, "/request/headers/user-agent/0").map(str::to_owned);

    let error = str_at(line, "/error").map(clean_error);
    event.outcome = outcome(kind, error.as_deref()).to_owned();
    apply_identity(&mut event, line, class.login_method);

    let mut notes = Vec::new();
    if is_root_token(line) {
        notes.push("request made with a root token".to_owned());
    }
    notes.extend(error);
    event.message = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(event)
}

/// How a request path is filed.
struct Class {
    category: Category,
    action: String,
    target_type: &'static str,
    /// The auth method type when the request is a login.
    login_method: Option<String>,
}

fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "create" | "update" | "delete" | "patch" | "revoke" | "rollback"
    )
}

/// Files a request by its path: Vault mounts every secrets engine outside
/// `sys/`, `auth/` and `identity/`, so all other paths are secret access.
fn classify(path: &str, operation: &str, mount_type: Option<&str>) -> Class {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let class = |category, action: String, target_type| Class {
        category,
        action,
        target_type,
        login_method: None,
    };
    match segments.first().copied() {
        Some("auth") => {
            let mount = segments.get(1).copied().unwrap_or_default();
            let method = mount_type
                .filter(|m| !m.is_empty() && *m != "system")
                .unwrap_or(mount)
                .to_owned();
            let login = segments.contains(&"login")
                || path.contains("/oidc/callback")
                || path.ends_with("/callback");
            if login {
                return Class {
                    category: Category::Auth,
                    action: "auth.login".to_owned(),
                    target_type: "auth_method",
                    login_method: Some(method),
                };
            }
            if method == "token" {
                let verb = segments.get(2).copied().unwrap_or(operation);
                return if verb == "roles" && is_write(operation) {
                    class(
                        Category::ConfigChange,
                        format!("token.roles.{operation}"),
                        "token",
                    )
                } else {
                    class(Category::Auth, format!("token.{verb}"), "token")
                };
            }
            if segments.contains(&"secret-id") || !is_write(operation) {
                // Reading auth config, or minting an AppRole secret ID (credential issuance).
                let what = if segments.contains(&"secret-id") {
                    "secret-id"
                } else {
                    "config"
                };
                return class(
                    Category::Auth,
                    format!("auth.{what}.{operation}"),
                    "auth_method",
                );
            }
            class(
                Category::ConfigChange,
                format!("auth.config.{operation}"),
                "auth_method",
            )
        }
        Some("sys") => {
            let area = segments.get(1).copied().unwrap_or("root");
            let action = format!("sys.{area}.{operation}");
            // Capability checks and lookups are POSTs but change nothing.
            let inspects = matches!(
                area,
                "capabilities"
                    | "capabilities-self"
                    | "capabilities-accessor"
                    | "internal"
                    | "wrapping"
                    | "tools"
                    | "health"
                    | "seal-status"
                    | "leader"
            ) || (area == "leases" && segments.get(2) == Some(&"lookup"));
            if is_write(operation) && !inspects {
                class(Category::ConfigChange, action, "system")
            } else {
                class(Category::Auth, action, "system")
            }
        }
        Some("identity") => {
            let category = if is_write(operation) {
                Category::ConfigChange
            } else {
                Category::Auth
            };
            class(category, format!("identity.{operation}"), "identity")
        }
        _ => class(
            Category::SecretAccess,
            format!("secret.{operation}"),
            "secret",
        ),
    }
}

/// Vault wraps errors as `1 error occurred:\n\t* permission denied\n\n`.
fn clean_error(error: &str) -> String {
    let body = match error.split_once("occurred:") {
        Some((head, rest)) if head.trim_end().ends_with("error") || head.contains("errors") => rest,
        _ => error,
    };
    body.split('\n')
        .map(|l| l.trim().trim_start_matches('*').trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Requests say `pending`: the decision is logged on the matching response
/// line, except for requests Vault rejected before handling them.
fn outcome(kind: &str, error: Option<&str>) -> &'static str {
    match error.filter(|e| !e.is_empty()) {
        Some(e) if e.to_ascii_lowercase().contains("permission denied") => "denied",
        Some(_) => "failure",
        None if kind == "response" => "success",
        None => "pending",
    }
}

fn policies(line: &Value) -> impl Iterator<Item = &str> {
    ["/auth/policies", "/auth/token_policies"]
        .into_iter()
        .filter_map(|p| line.at(p).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
}

fn is_root_token(line: &Value) -> bool {
    policies(line).any(|p| p == "root") || str_at(line, "/auth/display_name") == Some("root")
}

/// Identity kind of an auth method type (or display-name prefix, which Vault derives from it).
fn method_kind(method: &str) -> Option<IdentityKind> {
    Some(match method {
        "jwt" | "oidc" | "gcp" | "azure" => IdentityKind::Oidc,
        "approle" | "userpass" | "ldap" | "cert" | "aws" | "radius" | "okta" | "kerberos" => {
            IdentityKind::StaticKey
        }
        "token" | "root" | "kubernetes" | "github" => IdentityKind::Token,
        _ => return None,
    })
}

fn method_actor_kind(method: &str) -> Option<ActorKind> {
    match method {
        "oidc" | "userpass" | "ldap" | "github" | "okta" | "radius" => Some(ActorKind::User),
        "jwt" | "approle" | "kubernetes" | "aws" | "cert" | "gcp" | "azure" => {
            Some(ActorKind::Service)
        }
        _ => None,
    }
}

fn apply_identity(event: &mut Event, line: &Value, login_method: Option<String>) {
    let display = str_at(line, "/auth/display_name");
    // Vault names tokens `<method>-<name>`; the prefix tells how the token was obtained.
    let prefix = display.map(|d| d.split('-').next().unwrap_or(d));
    let method = prefix
        .filter(|p| method_kind(p).is_some())
        .map(str::to_owned)
        .or(login_method);

    event.identity_kind = if is_root_token(line) {
        IdentityKind::Token
    } else if let Some(kind) = method.as_deref().and_then(method_kind) {
        kind
    } else if display.is_some() || str_at(line, "/request/client_token").is_some() {
        IdentityKind::Token
    } else {
        IdentityKind::Unknown
    };
    event.identity_id = str_at(line, "/auth/accessor")
        .or_else(|| str_at(line, "/response/auth/accessor"))
        .or_else(|| str_at(line, "/request/client_token_accessor"))
        .map(str::to_owned);

    let metadata = |key: &str| str_at(line, &format!("/auth/metadata/{key}"));
    let generic = matches!(display, Some("token" | "root" | "approle"));
    event.actor = ["username", "email", "user"]
        .into_iter()
        .find_map(metadata)
        .or(display.filter(|_| !generic))
        .or_else(|| {
            ["role_name", "role", "service_account_name"]
                .into_iter()
                .find_map(metadata)
        })
        .or(display)
        .map(str::to_owned);

    // JWT display names carry the subject claim (`jwt-repo:owner/name:ref:...`).
    let ci = display
        .and_then(|d| d.strip_prefix("jwt-"))
        .and_then(super::cloudtrail::ci_subject);
    let repo = metadata("repository")
        .or_else(|| metadata("project_path"))
        .filter(|r| r.contains('/'))
        .map(str::to_owned)
        .or_else(|| ci.as_ref().map(|c| c.repo.clone()));
    event.actor_kind = if ci.is_some() || (repo.is_some() && method.as_deref() == Some("jwt")) {
        Some(ActorKind::Bot)
    } else {
        method.as_deref().and_then(method_actor_kind)
    };
    if let Some(repo) = repo {
        event.org = super::util::org_of(&repo);
        event.repo = Some(repo);
    }
    if let Some(ci) = ci {
        event.vcs_ref_head_name = ci.ref_name;
        event.deployment_environment_name = ci.environment;
    }
    // JWT roles map CI claims into metadata (Vault's `claim_mappings`); these
    // tie a secret read to the exact run and job that made it.
    let claim = |keys: &[&str]| keys.iter().find_map(|k| metadata(k)).map(str::to_owned);
    event.cicd_pipeline_run_id = claim(&["run_id", "pipeline_id"]);
    event.cicd_pipeline_task_run_id = claim(&["job_id"]);
    event.cicd_pipeline_task_name = claim(&["job"]);
    event.cicd_pipeline_name = claim(&["workflow"]);
    event.vcs_ref_head_revision = claim(&["sha"]);
    if let Some(environment) = claim(&["environment"]) {
        event.deployment_environment_name = Some(environment);
    }
    if event.vcs_ref_head_name.is_none() {
        event.vcs_ref_head_name = claim(&["ref"]).map(|r| {
            r.trim_start_matches("refs/heads/")
                .trim_start_matches("refs/tags/")
                .to_owned()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoders::Position;

    fn decode(bytes: &[u8]) -> DecodeOutput {
        let mut out = DecodeOutput::default();
        DECODER.decode(&Input::new("test", bytes), &mut out);
        out
    }

    fn line(kind: &str, id: &str, auth: Value, request: Value, error: &str) -> String {
        let mut request = request;
        if let Some(r) = request.as_object_mut() {
            r.insert("id".into(), Value::from(id));
        }
        serde_json::json!({
            "time": "2024-05-01T10:00:00Z", "type": kind, "auth": auth,
            "request": request, "error": error,
        })
        .to_string()
    }

    #[test]
    fn bad_line_is_dead_lettered_and_the_rest_decode() {
        let req = serde_json::json!({"path": "secret/data/app", "operation": "read"});
        // Spaced as a person or another tool might write it, unlike serde_json.
        let good = line("request", "r1", Value::Null, req.clone(), "").replace(",", ", ");
        let no_id = r#"{"time":"2024-05-01T10:00:00Z","type":"response","request":{"path":"x"}}"#;
        let resp = line("response", "r1", Value::Null, req, "");
        let body = format!("{good}\n{no_id}\n{{broken\n{resp}\n");
        let out = decode(body.as_bytes());
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.events[0].source_event_id, "r1:request");
        assert_eq!(out.events[1].source_event_id, "r1:response");
        // A line keeps its own text as the record; an array element its tree.
        assert_eq!(out.events[0].raw.json(), good);
        let array = decode(format!("[{good}]").as_bytes());
        let tree: Value = serde_json::from_str(&good).expect("JSON");
        assert_eq!(array.events[0].raw, tree);
        assert_eq!(out.dead_letters.len(), 2);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
        assert_eq!(out.dead_letters[0].position, Position::Line(2));
        assert_eq!(out.dead_letters[1].reason, DeadLetterReason::Syntax);
        assert_eq!(out.dead_letters[1].position, Position::Line(3));
    }

    #[test]
    fn sniffs_audit_lines() {
        let body = line("request", "x", Value::Null, serde_json::json!({}), "");
        let value: Value = serde_json::from_str(&body).expect("json");
        assert!(DECODER.sniff(&value));
        assert!(!DECODER.sniff(&serde_json::json!({"type": "request"})));
    }

    #[test]
    fn kv_read_by_approle_is_static_key_secret_access() {
        let auth = serde_json::json!({"display_name": "approle", "accessor": "hmac-sha256:ab",
            "metadata": {"role_name": "deployer"}, "policies": ["default"]});
        let req = serde_json::json!({"path": "kv/data/prod/db", "operation": "read", "mount_type": "kv",
            "namespace": {"id": "root"}, "remote_address": "10.0.0.1"});
        let out = decode(line("response", "r", auth, req, "").as_bytes());
        let event = &out.events[0];
        assert_eq!(event.category, Category::SecretAccess);
        assert_eq!(event.action, "secret.read");
        assert_eq!(event.outcome, "success");
        assert_eq!(event.identity_kind, IdentityKind::StaticKey);
        assert_eq!(event.identity_id.as_deref(), Some("hmac-sha256:ab"));
        assert_eq!(event.actor.as_deref(), Some("deployer"));
        assert_eq!(event.target_name.as_deref(), Some("kv/data/prod/db"));
        assert_eq!(event.target_namespace.as_deref(), Some("root"));
        assert_eq!(event.client_address.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn jwt_login_from_github_is_oidc_bot() {
        let auth = serde_json::json!({"display_name": "jwt-repo:octo/app:ref:refs/heads/main",
            "accessor": "hmac-sha256:cd", "metadata": {"role": "ci"}});
        let req = serde_json::json!({"path": "auth/jwt/login", "operation": "update", "mount_type": "jwt"});
        let out = decode(line("response", "l", auth, req, "").as_bytes());
        let event = &out.events[0];
        assert_eq!(event.category, Category::Auth);
        assert_eq!(event.action, "auth.login");
        assert_eq!(event.identity_kind, IdentityKind::Oidc);
        assert_eq!(event.repo.as_deref(), Some("octo/app"));
        assert_eq!(event.vcs_ref_head_name.as_deref(), Some("main"));
        assert_eq!(event.actor_kind, Some(ActorKind::Bot));

        // The request line of a login carries no token yet: the method decides.
        let req = serde_json::json!({"path": "auth/oidc/oidc/callback", "operation": "read", "mount_type": "oidc"});
        let out = decode(line("request", "o", Value::Null, req, "").as_bytes());
        assert_eq!(out.events[0].identity_kind, IdentityKind::Oidc);
        assert_eq!(out.events[0].outcome, "pending");
    }

    #[test]
    fn root_token_audit_disable_is_a_flagged_config_change() {
        let auth =
            serde_json::json!({"display_name": "root", "policies": ["root"], "accessor": "a"});
        let req = serde_json::json!({"path": "sys/audit/file", "operation": "delete"});
        let out = decode(line("response", "d", auth, req, "").as_bytes());
        let event = &out.events[0];
        assert_eq!(event.category, Category::ConfigChange);
        assert_eq!(event.action, "sys.audit.delete");
        assert_eq!(event.identity_kind, IdentityKind::Token);
        assert!(
            event
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("root token")
        );
    }

    #[test]
    fn errors_map_to_denied_and_failure() {
        let req = serde_json::json!({"path": "pki/issue/web", "operation": "update"});
        let denied = "1 error occurred:\n\t* permission denied\n\n";
        let out = decode(line("response", "p", Value::Null, req.clone(), denied).as_bytes());
        assert_eq!(out.events[0].outcome, "denied");
        assert_eq!(out.events[0].message.as_deref(), Some("permission denied"));
        let out = decode(line("response", "q", Value::Null, req, "backend down").as_bytes());
        assert_eq!(out.events[0].outcome, "failure");
        let caps = classify("sys/capabilities-self", "update", Some("system"));
        assert_eq!(caps.category, Category::Auth);
    }
}
