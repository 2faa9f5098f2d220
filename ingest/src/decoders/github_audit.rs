//! GitHub organization and enterprise audit log: the REST / streaming
//! shape (`@timestamp` epoch ms, `_document_id`, flat fields) and the older
//! export shape (`created_at`, action details under `data{}`), as one
//! entry, a JSON array or NDJSON. Every entry becomes one event.
//!
//! Specification: "Reviewing the audit log for your organization" and
//! "Audit log events for your organization",
//! <https://docs.github.com/en/organizations/keeping-your-organization-secure/managing-security-settings-for-your-organization/reviewing-the-audit-log-for-your-organization>,
//! and the audit-log streaming schema (same fields, NDJSON).
//!
//! The audit log has hundreds of actions; those not named below are kept
//! as config changes rather than dropped, since most of them are.

use chrono::{DateTime, Utc};
use pipewatch_schema::{ActorKind, Category, Event, IdentityKind, RunnerHosting};
use serde_json::Value;

use super::github_webhook::{content_id, login_kind};
use super::util::{org_of, outcome_word, parse_time};
use super::{DecodeOutput, Decoder, Format, Input, framing};
use crate::dead_letter::DeadLetterReason;

/// The GitHub audit-log decoder.
#[derive(Debug)]
pub(crate) struct GithubAudit;

pub(crate) static DECODER: GithubAudit = GithubAudit;

const FORMAT: Format = Format::GithubAudit;

impl Decoder for GithubAudit {
    fn sniff(&self, record: &Value) -> bool {
        let Some(object) = record.as_object() else {
            return false;
        };
        let dotted_action = object
            .get("action")
            .and_then(Value::as_str)
            .is_some_and(|a| a.contains('.'));
        // Webhooks name their sender; audit entries name an actor instead.
        let webhook = object.get("sender").is_some_and(Value::is_object);
        let audit_keys = object.contains_key("@timestamp")
            || object.contains_key("_document_id")
            || (object.contains_key("created_at") && object.contains_key("actor"));
        dotted_action && !webhook && audit_keys
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in framing::json_records(input) {
            let (position, bytes) = (framed.position, framed.bytes);
            let result = framed
                .parsed()
                .map_err(|e| (DeadLetterReason::Syntax, e))
                .and_then(|record| {
                    let mut event = decode_entry(&record, input)?;
                    event.raw = framing::native_raw(position, bytes, || record);
                    Ok(event)
                });
            match result {
                Ok(event) => out.events.push(event),
                Err((reason, detail)) => {
                    out.reject(FORMAT, input, position, reason, detail, bytes);
                }
            }
        }
    }
}

/// A field of the entry: top level (current shape) or under `data{}` (older shape).
fn field<'v>(entry: &'v Value, name: &str) -> Option<&'v Value> {
    entry
        .get(name)
        .filter(|v| !v.is_null())
        .or_else(|| entry.get("data")?.get(name).filter(|v| !v.is_null()))
}

fn text(entry: &Value, name: &str) -> Option<String> {
    match field(entry, name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(entry: &Value, name: &str) -> Option<DateTime<Utc>> {
    field(entry, name).and_then(parse_time)
}

fn strings(entry: &Value, name: &str) -> Vec<String> {
    match field(entry, name) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => {
            s.split(',').map(|p| p.trim().to_owned()).collect()
        }
        _ => Vec::new(),
    }
}

type Rejected = (DeadLetterReason, String);

fn decode_entry(entry: &Value, input: &Input<'_>) -> Result<Event, Rejected> {
    if !entry.is_object() {
        return Err((
            DeadLetterReason::UnknownShape,
            "audit-log entry is not a JSON object".to_owned(),
        ));
    }
    let action = text(entry, "action").ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            "audit-log entry has no action".to_owned(),
        )
    })?;
    let event_time = entry_time(entry, input)?;
    // Entries without `_document_id` (older exports, some git.* lines) get
    // a content hash, identical on every re-ingest of the same line.
    let source_event_id = text(entry, "_document_id").unwrap_or_else(|| content_id(entry));
    let category = category_of(&action);
    let mut event = Event::new(
        FORMAT.name(),
        source_event_id,
        event_time,
        category,
        action.clone(),
        Value::Null,
    );
    event.outcome = outcome_of(&action, entry).to_owned();
    fill_who(&mut event, entry, &action);
    fill_target(&mut event, entry, &action);
    if action.starts_with("workflows.") {
        fill_workflow(&mut event, entry);
    }
    event.fill_duration();
    Ok(event)
}

/// `@timestamp`, else `created_at` (both epoch ms), else the observation time.
fn entry_time(entry: &Value, input: &Input<'_>) -> Result<DateTime<Utc>, Rejected> {
    for name in ["@timestamp", "created_at"] {
        if let Some(value) = field(entry, name) {
            return parse_time(value).ok_or_else(|| {
                (
                    DeadLetterReason::InvalidValue,
                    format!("audit-log entry has an unreadable {name}: {value}"),
                )
            });
        }
    }
    input.observed_at.ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            "audit-log entry has no @timestamp or created_at and the input has no observation time"
                .to_owned(),
        )
    })
}

/// Category by action prefix, see the module docs for the default.
fn category_of(action: &str) -> Category {
    let (prefix, verb) = action.split_once('.').unwrap_or((action, ""));
    match prefix {
        "workflows" if verb.contains("workflow_job") => Category::PipelineJob,
        "workflows" => Category::PipelineRun,
        "git" if verb == "push" => Category::CodeChange,
        // Clones and fetches are reads made with a credential.
        "git" => Category::Auth,
        "pull_request" | "pull_request_review" | "pull_request_review_comment" => {
            Category::CodeChange
        }
        "user" if matches!(verb, "login" | "failed_login" | "logout") => Category::Auth,
        "personal_access_token" | "org_credential_authorization" | "public_key" | "deploy_key" => {
            Category::Auth
        }
        p if p.starts_with("oauth_") => Category::Auth,
        _ if verb.contains("token") && !verb.contains("secret") => Category::Auth,
        _ => Category::ConfigChange,
    }
}

/// The run's conclusion for workflow entries; otherwise the audited
/// action happened, except for the actions that record a refusal.
fn outcome_of(action: &str, entry: &Value) -> &'static str {
    if let Some(conclusion) = text(entry, "conclusion") {
        return outcome_word(&conclusion);
    }
    match action {
        "user.failed_login" => "failure",
        "protected_branch.rejected_ref_update" | "workflows.actions_policy_violation" => "denied",
        "workflows.reject_workflow_job" => "denied",
        "workflows.cancel_workflow_run" => "cancelled",
        "workflows.created_workflow_run"
        | "workflows.prepared_workflow_job"
        | "workflows.rerun_workflow_run" => "pending",
        _ => "success",
    }
}

/// Actor, organisation, repository and how the actor authenticated.
fn fill_who(event: &mut Event, entry: &Value, action: &str) {
    event.repo = text(entry, "repo").or_else(|| text(entry, "repository"));
    event.org = text(entry, "org").or_else(|| event.repo.as_deref().and_then(org_of));
    event.client_address = text(entry, "actor_ip");
    event.user_agent_original = text(entry, "user_agent");
    event.identity_id = text(entry, "hashed_token");

    let access = text(entry, "programmatic_access_type");
    event.identity_kind = match access.as_deref() {
        Some(kind) => identity_kind(kind),
        None if is_interactive(entry, action) => IdentityKind::Session,
        None => IdentityKind::Unknown,
    };
    if let Some(actor) = text(entry, "actor") {
        let bot = field(entry, "actor_is_bot").and_then(Value::as_bool) == Some(true)
            || event.identity_kind == IdentityKind::App;
        event.actor_kind = Some(login_kind(&actor, bot));
        event.actor = Some(actor);
    } else if event.identity_kind == IdentityKind::App {
        event.actor_kind = Some(ActorKind::Bot);
    }
}

/// Maps `programmatic_access_type` to the identity vocabulary.
fn identity_kind(access: &str) -> IdentityKind {
    let access = access.to_ascii_lowercase();
    if access.contains("server-to-server") {
        // An App installation token acting as the App itself.
        IdentityKind::App
    } else if access.contains("token") {
        // PATs (classic, fine-grained, pre-2021), OAuth and App user-to-server tokens.
        IdentityKind::Token
    } else {
        IdentityKind::Unknown
    }
}

/// Logins are interactive by definition; otherwise a current-shape entry
/// with no programmatic access and a browser user agent came from a web
/// session. Older entries predate those fields, so they say nothing.
fn is_interactive(entry: &Value, action: &str) -> bool {
    if matches!(action, "user.login" | "user.failed_login" | "user.logout") {
        return true;
    }
    let current_shape = entry.get("@timestamp").is_some() || entry.get("_document_id").is_some();
    let browser = text(entry, "user_agent").is_some_and(|ua| ua.starts_with("Mozilla/"));
    let bot = text(entry, "actor").is_some_and(|a| a.ends_with("[bot]"));
    current_shape && browser && !bot && field(entry, "hashed_token").is_none()
}

/// What the action changed, and a short summary of how.
fn fill_target(event: &mut Event, entry: &Value, action: &str) {
    let (prefix, verb) = action.split_once('.').unwrap_or((action, ""));
    let secret = verb.ends_with("_secret") || prefix.ends_with("_secret");
    let (kind, name) = if secret {
        ("secret", text(entry, "key"))
    } else {
        match prefix {
            "protected_branch" => (
                "branch_protection",
                text(entry, "name").or_else(|| text(entry, "branch")),
            ),
            "hook" => ("webhook", text(entry, "hook_id")),
            "integration_installation" | "integration" => (
                "github_app",
                text(entry, "integration").or_else(|| text(entry, "name")),
            ),
            "environment" => ("environment", text(entry, "environment_name")),
            "repo" | "git" => ("repository", event.repo.clone()),
            "org" => ("organization", text(entry, "org")),
            "business" => ("enterprise", text(entry, "business")),
            "team" => ("team", text(entry, "team")),
            "personal_access_token" | "oauth_access" | "oauth_authorization" => (
                "token",
                text(entry, "user_programmatic_access_name").or_else(|| text(entry, "token_id")),
            ),
            "audit_log_streaming" => ("audit_log_stream", None),
            "workflows" => ("workflow", text(entry, "name")),
            p if p.starts_with("secret_scanning") => ("secret_scanning", event.repo.clone()),
            "user" | "two_factor_authentication" => ("user", text(entry, "user")),
            _ => return fill_message(event, entry),
        }
    };
    event.target_type = Some(kind.to_owned());
    event.target_name = name;
    event.deployment_environment_name = text(entry, "environment_name");
    fill_message(event, entry);
}

/// A one-line summary of the details security reviewers read first.
fn fill_message(event: &mut Event, entry: &Value) {
    let mut parts = Vec::new();
    let added = strings(entry, "repositories_added_names");
    if !added.is_empty() {
        parts.push(format!("repositories added: {}", added.join(", ")));
    }
    let removed = strings(entry, "repositories_removed_names");
    if !removed.is_empty() {
        parts.push(format!("repositories removed: {}", removed.join(", ")));
    }
    if let Some(selection) = text(entry, "repository_selection") {
        parts.push(format!("repository selection: {selection}"));
    }
    match (text(entry, "old_permission"), text(entry, "permission")) {
        (Some(old), Some(new)) => parts.push(format!("permission {old} -> {new}")),
        (None, Some(new)) => parts.push(format!("permission {new}")),
        _ => {}
    }
    let events = strings(entry, "events");
    if !events.is_empty() {
        parts.push(format!("events: {}", events.join(", ")));
    }
    if let Some(scopes) = text(entry, "token_scopes") {
        parts.push(format!("token scopes: {scopes}"));
    }
    let overridden = strings(entry, "overridden_codes");
    if !overridden.is_empty() {
        parts.push(format!("overridden: {}", overridden.join(", ")));
    }
    if let Some(access) = text(entry, "programmatic_access_type") {
        parts.push(format!("via {access}"));
    }
    event.message = (!parts.is_empty()).then(|| parts.join("; "));
}

/// Run, job and runner columns of `workflows.*` entries.
fn fill_workflow(event: &mut Event, entry: &Value) {
    event.cicd_pipeline_name = text(entry, "name").or_else(|| text(entry, "job_workflow_ref"));
    event.cicd_pipeline_run_id = text(entry, "workflow_run_id");
    event.cicd_pipeline_run_attempt = field(entry, "run_attempt").and_then(Value::as_i64);
    event.cicd_pipeline_task_name = text(entry, "job_name");
    event.cicd_pipeline_task_run_id = text(entry, "job_id").or_else(|| text(entry, "check_run_id"));
    event.cicd_pipeline_trigger = text(entry, "event");
    event.vcs_ref_head_name = text(entry, "head_branch");
    event.vcs_ref_head_revision = text(entry, "head_sha");
    event.start_time = time(entry, "started_at");
    event.end_time = time(entry, "completed_at");
    event.cicd_worker_name = text(entry, "runner_name");
    event.cicd_worker_id = text(entry, "runner_id");
    event.cicd_worker_group = text(entry, "runner_group_name");
    event.cicd_worker_labels = strings(entry, "runner_labels");
    // `is_hosted_runner` is GitHub's own statement, unlike the webhook heuristics.
    match field(entry, "is_hosted_runner").and_then(Value::as_bool) {
        Some(true) => {
            event.runner_hosting = Some(RunnerHosting::Hosted);
            event.runner_ephemeral = Some(true);
        }
        Some(false) => event.runner_hosting = Some(RunnerHosting::SelfHosted),
        None => {}
    }
    event.approval_state = match event.action.as_str() {
        "workflows.approve_workflow_job" => Some("approved".to_owned()),
        "workflows.reject_workflow_job" => Some("rejected".to_owned()),
        _ => None,
    };
    if event.target_type.is_none() {
        event.target_type = Some("workflow".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decoders::Position;

    fn decode(bytes: &[u8]) -> DecodeOutput {
        let mut out = DecodeOutput::default();
        DECODER.decode(&Input::new("test", bytes), &mut out);
        out
    }

    #[test]
    fn a_bad_line_is_dead_lettered_and_the_others_still_decode() {
        let input = concat!(
            r#"{"@timestamp":1725456356934,"_document_id":"a","action":"hook.destroy","actor":"u","org":"o","hook_id":7}"#,
            "\n{broken\n",
            r#"{"@timestamp":1725456356934,"_document_id":"b","actor":"u"}"#,
            "\n",
            r#"{"@timestamp":"yesterday","_document_id":"c","action":"repo.create"}"#,
            "\n",
            r#"{"actor":"u","action":"org.add_member","created_at":1583365350878}"#,
            "\n"
        );
        let out = decode(input.as_bytes());
        let ids: Vec<_> = out.events.iter().map(|e| e.source_event_id.len()).collect();
        // `a`, then a 64-hex content hash for the entry without `_document_id`.
        assert_eq!(ids, vec![1, 64]);
        let reasons: Vec<_> = out
            .dead_letters
            .iter()
            .map(|d| (d.position, d.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (Position::Line(2), DeadLetterReason::Syntax),
                (Position::Line(3), DeadLetterReason::MissingField),
                (Position::Line(4), DeadLetterReason::InvalidValue),
            ]
        );
        assert_eq!(out.events[0].target_type.as_deref(), Some("webhook"));
        assert_eq!(out.events[0].target_name.as_deref(), Some("7"));
    }

    #[test]
    fn content_ids_are_stable_across_key_order() {
        let a = decode(br#"{"actor":"u","action":"git.clone","@timestamp":1655872622832}"#);
        let b = decode(br#"{"@timestamp":1655872622832,"action":"git.clone","actor":"u"}"#);
        assert_eq!(a.events[0].source_event_id, b.events[0].source_event_id);
    }

    #[test]
    fn categories_follow_the_action_prefix() {
        let cases = [
            ("workflows.completed_workflow_run", Category::PipelineRun),
            ("workflows.prepared_workflow_job", Category::PipelineJob),
            ("git.push", Category::CodeChange),
            ("git.clone", Category::Auth),
            ("user.login", Category::Auth),
            ("personal_access_token.create", Category::Auth),
            ("oauth_access.create", Category::Auth),
            ("protected_branch.destroy", Category::ConfigChange),
            ("repo.create_actions_secret", Category::ConfigChange),
            ("integration_installation.create", Category::ConfigChange),
            ("some_new_area.changed", Category::ConfigChange),
        ];
        for (action, category) in cases {
            assert_eq!(category_of(action), category, "{action}");
        }
    }

    #[test]
    fn programmatic_access_decides_the_identity_kind() {
        let entry = |access: Value, agent: &str| {
            json!({"@timestamp": 1, "_document_id": "x", "action": "repo.create", "actor": "u",
                   "programmatic_access_type": access, "user_agent": agent,
                   "hashed_token": if access.is_null() { Value::Null } else { json!("h=") }})
        };
        let kind = |e: Value| {
            let event = decode_entry(&e, &Input::new("t", b"")).expect("decodes");
            (event.identity_kind, event.actor_kind, event.identity_id)
        };
        assert_eq!(
            kind(entry(json!("GitHub App server-to-server token"), "x")),
            (
                IdentityKind::App,
                Some(ActorKind::Bot),
                Some("h=".to_owned())
            )
        );
        for token in [
            "OAuth access token",
            "Personal access token (classic)",
            "Fine-grained personal access token",
            "Authentication token created before 2021-04-05",
        ] {
            assert_eq!(
                kind(entry(json!(token), "git/2.4")).0,
                IdentityKind::Token,
                "{token}"
            );
        }
        assert_eq!(
            kind(entry(Value::Null, "Mozilla/5.0 (X11)")).0,
            IdentityKind::Session
        );
        assert_eq!(kind(entry(Value::Null, "curl/8")).0, IdentityKind::Unknown);
    }

    #[test]
    fn workflow_entries_fill_run_columns_from_either_shape() {
        let old = json!({"actor": "u", "action": "workflows.delete_workflow_run", "created_at": 1614296047285_i64,
                         "repo": "o/r", "data": {"workflow_run_id": 601065160, "head_branch": "main",
                         "head_sha": "c2b5", "event": "push", "started_at": "2021-02-25T23:29:00.000Z"}});
        let event = decode_entry(&old, &Input::new("t", b"")).expect("decodes");
        assert_eq!(event.category, Category::PipelineRun);
        assert_eq!(event.cicd_pipeline_run_id.as_deref(), Some("601065160"));
        assert_eq!(event.cicd_pipeline_trigger.as_deref(), Some("push"));
        assert_eq!(event.vcs_ref_head_name.as_deref(), Some("main"));
        assert_eq!(event.org.as_deref(), Some("o"));

        let job = json!({"@timestamp": 1, "_document_id": "j", "action": "workflows.prepared_workflow_job",
                         "is_hosted_runner": false, "runner_labels": ["self-hosted", "gpu"],
                         "environment_name": "prod", "conclusion": null});
        let event = decode_entry(&job, &Input::new("t", b"")).expect("decodes");
        assert_eq!(event.category, Category::PipelineJob);
        assert_eq!(event.runner_hosting, Some(RunnerHosting::SelfHosted));
        assert_eq!(event.runner_ephemeral, None);
        assert_eq!(event.deployment_environment_name.as_deref(), Some("prod"));
        assert_eq!(event.outcome, "pending");
    }

    #[test]
    fn refusals_and_conclusions_set_the_outcome() {
        let outcome = |e: Value| {
            decode_entry(&e, &Input::new("t", b""))
                .expect("decodes")
                .outcome
        };
        assert_eq!(
            outcome(json!({"@timestamp": 1, "action": "user.failed_login"})),
            "failure"
        );
        assert_eq!(
            outcome(json!({"@timestamp": 1, "action": "protected_branch.rejected_ref_update"})),
            "denied"
        );
        assert_eq!(
            outcome(
                json!({"@timestamp": 1, "action": "workflows.completed_workflow_run", "conclusion": "cancelled"})
            ),
            "cancelled"
        );
        assert_eq!(
            outcome(json!({"@timestamp": 1, "action": "repo.create"})),
            "success"
        );
    }

    #[test]
    fn sniffing_keeps_webhooks_out() {
        assert!(DECODER.sniff(&json!({"action": "git.clone", "@timestamp": 1, "actor": "u"})));
        assert!(
            DECODER.sniff(
                &json!({"action": "team.create", "created_at": 1, "actor": "u", "data": {}})
            )
        );
        assert!(!DECODER.sniff(&json!({"action": "completed", "sender": {}, "workflow_job": {}})));
        assert!(!DECODER.sniff(
            &json!({"action": "a.b", "sender": {"login": "x"}, "created_at": 1, "actor": "u"})
        ));
    }
}
