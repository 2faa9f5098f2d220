//! GitHub webhook payload bodies (what GitHub POSTs with `X-GitHub-Event`):
//! picks the event type from the header hint or the payload's shape and
//! maps workflow runs/jobs, deployments and their reviews, pushes, manual
//! dispatches, branch protection edits and App installations to events.
//!
//! Specification: "Webhook events and payloads",
//! <https://docs.github.com/en/webhooks/webhook-events-and-payloads>, and the
//! payload JSON schemas of `octokit/webhooks`.

mod actions;
mod deployments;
mod repository;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use pipewatch_schema::{ActorKind, Category, Event};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::prune::Keep;
use super::util::{Lookup, org_of, outcome_word, str_at};
use super::{DecodeOutput, Decoder, Format, Input, framing};
use crate::dead_letter::DeadLetterReason;

/// The GitHub webhook decoder.
#[derive(Debug)]
pub(crate) struct GithubWebhook;

pub(crate) static DECODER: GithubWebhook = GithubWebhook;

const FORMAT: Format = Format::GithubWebhook;

/// The webhook event types this decoder maps, named as in `X-GitHub-Event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventType {
    WorkflowRun,
    WorkflowJob,
    Deployment,
    DeploymentStatus,
    DeploymentReview,
    Push,
    WorkflowDispatch,
    BranchProtectionRule,
    Installation,
}

impl EventType {
    const ALL: &'static [EventType] = &[
        EventType::WorkflowRun,
        EventType::WorkflowJob,
        EventType::Deployment,
        EventType::DeploymentStatus,
        EventType::DeploymentReview,
        EventType::Push,
        EventType::WorkflowDispatch,
        EventType::BranchProtectionRule,
        EventType::Installation,
    ];

    fn name(self) -> &'static str {
        match self {
            EventType::WorkflowRun => "workflow_run",
            EventType::WorkflowJob => "workflow_job",
            EventType::Deployment => "deployment",
            EventType::DeploymentStatus => "deployment_status",
            EventType::DeploymentReview => "deployment_review",
            EventType::Push => "push",
            EventType::WorkflowDispatch => "workflow_dispatch",
            EventType::BranchProtectionRule => "branch_protection_rule",
            EventType::Installation => "installation",
        }
    }

    /// Payloads with no native id: their events are identified by a hash
    /// of the whole payload.
    fn identified_by_content(self) -> bool {
        matches!(
            self,
            EventType::WorkflowDispatch | EventType::BranchProtectionRule | EventType::Installation
        )
    }

    fn from_header(header: &str) -> Option<EventType> {
        let header = header.trim();
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(header))
    }

    /// Guesses the type from the payload's top-level keys. Order matters:
    /// a job payload may carry a `deployment`, a deployment may carry a
    /// `workflow_run`, so the most specific object wins.
    fn from_shape(record: &Value) -> Option<EventType> {
        let object = record.as_object()?;
        // GitLab hooks share push's ref/before/after keys.
        if object.contains_key("object_kind") || object.contains_key("event_name") {
            return None;
        }
        let has_object = |key: &str| object.get(key).is_some_and(Value::is_object);
        let has = |key: &str| object.get(key).is_some_and(|v| !v.is_null());
        if has_object("workflow_job") {
            Some(EventType::WorkflowJob)
        } else if has_object("deployment_status") {
            Some(EventType::DeploymentStatus)
        } else if has_object("workflow_run")
            && (has("reviewers")
                || has("approver")
                || has("requestor")
                || has("workflow_job_run")
                || has("workflow_job_runs"))
        {
            Some(EventType::DeploymentReview)
        } else if has_object("deployment") {
            Some(EventType::Deployment)
        } else if has_object("workflow_run") {
            Some(EventType::WorkflowRun)
        } else if has("ref") && has("before") && has("after") && (has("pusher") || has("commits")) {
            Some(EventType::Push)
        } else if has("workflow") && has("ref") && object.contains_key("inputs") {
            Some(EventType::WorkflowDispatch)
        } else if has_object("rule") && has("action") {
            Some(EventType::BranchProtectionRule)
        } else if object
            .get("installation")
            .is_some_and(|i| i.get("account").is_some() || i.get("app_id").is_some())
        {
            // Every payload delivered to an App has `installation{id}`; only
            // the installation event carries the full object.
            Some(EventType::Installation)
        } else {
            None
        }
    }
}

/// Why one payload could not become events.
#[derive(Debug)]
struct Reject {
    reason: DeadLetterReason,
    detail: String,
}

impl Reject {
    fn missing(detail: impl Into<String>) -> Self {
        Reject {
            reason: DeadLetterReason::MissingField,
            detail: detail.into(),
        }
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Reject {
            reason: DeadLetterReason::InvalidValue,
            detail: detail.into(),
        }
    }
}

type Decoded = Result<Vec<Event>, Reject>;

impl Decoder for GithubWebhook {
    fn sniff(&self, record: &Value) -> bool {
        // Every webhook names its sender; audit-log entries never carry a
        // sender object, so this keeps the two GitHub formats apart.
        record.get("sender").is_some_and(Value::is_object)
            && EventType::from_shape(record).is_some()
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        let hinted = input.type_hint.map(|h| (h, EventType::from_header(h)));
        for framed in framing::json_records(input) {
            let (position, bytes) = (framed.position, framed.bytes);
            let read_in_part = framed.unparsed().is_some();
            let record = match framed.parsed_keeping(&READ) {
                Ok(record) => record,
                Err(detail) => {
                    let reason = DeadLetterReason::Syntax;
                    out.reject(FORMAT, input, position, reason, detail, bytes);
                    continue;
                }
            };
            let kind = match hinted {
                Some((header, None)) => Err(Reject {
                    reason: DeadLetterReason::UnknownShape,
                    detail: format!(
                        "GitHub event type `{}` is not decoded (supported: {})",
                        header.trim(),
                        supported()
                    ),
                }),
                Some((_, Some(kind))) => Ok(kind),
                None => EventType::from_shape(&record).ok_or_else(|| unknown_shape(&record)),
            };
            let result = kind.and_then(|kind| {
                if read_in_part && kind.identified_by_content() {
                    let whole: Value = serde_json::from_slice(bytes)
                        .map_err(|e| Reject::invalid(format!("invalid JSON: {e}")))?;
                    decode_payload(kind, &whole, input)
                } else {
                    decode_payload(kind, &record, input)
                }
            });
            match result {
                Ok(events) => {
                    // Every event of a payload keeps the payload as its
                    // record; the last (usually the only) one takes it
                    // without a copy.
                    let raw = framing::native_raw(position, bytes, || record);
                    let mut events = events.into_iter();
                    let last = events.next_back();
                    out.events.extend(events.map(|mut event| {
                        event.raw = raw.clone();
                        event
                    }));
                    if let Some(mut last) = last {
                        last.raw = raw;
                        out.events.push(last);
                    }
                }
                Err(reject) => {
                    out.reject(FORMAT, input, position, reject.reason, reject.detail, bytes)
                }
            }
        }
    }
}

/// A GitHub user object as the decoder reads it.
const USER: Keep = Keep::Fields(&[
    ("login", Keep::All),
    ("name", Keep::All),
    ("type", Keep::All),
]);

/// What a payload line is read into: everything but the repository,
/// organisation and user objects every payload repeats, of which only
/// the fields the decoder reads are kept. Payloads identified by a hash of
/// their content are read again whole (see [`EventType::identified_by_content`]).
static READ: Keep = Keep::Every(&[
    (
        "repository",
        Keep::Fields(&[
            ("full_name", Keep::All),
            ("default_branch", Keep::All),
            ("pushed_at", Keep::All),
            ("owner", Keep::Fields(&[("login", Keep::All)])),
        ]),
    ),
    ("organization", Keep::Fields(&[("login", Keep::All)])),
    ("sender", USER),
    (
        "workflow_run",
        Keep::Every(&[
            ("repository", Keep::Fields(&[("full_name", Keep::All)])),
            ("head_repository", Keep::Fields(&[("full_name", Keep::All)])),
            ("head_commit", Keep::Fields(&[])),
            ("actor", USER),
            ("triggering_actor", USER),
        ]),
    ),
]);

/// Whether payloads sent with this `X-GitHub-Event` header are decoded.
pub(in crate::decoders) fn decodes_event_type(header: &str) -> bool {
    EventType::from_header(header).is_some()
}

fn supported() -> String {
    EventType::ALL
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_shape(record: &Value) -> Reject {
    let detail = match record.as_object() {
        Some(object) => {
            let keys: Vec<&str> = object.keys().take(12).map(String::as_str).collect();
            format!(
                "payload matches no supported GitHub event type (top-level keys: {}); pass the X-GitHub-Event header as type hint",
                keys.join(", ")
            )
        }
        None => "webhook payload is not a JSON object".to_owned(),
    };
    Reject {
        reason: DeadLetterReason::UnknownShape,
        detail,
    }
}

fn decode_payload(kind: EventType, record: &Value, input: &Input<'_>) -> Decoded {
    if !record.is_object() {
        return Err(Reject {
            reason: DeadLetterReason::UnknownShape,
            detail: format!("{} payload is not a JSON object", kind.name()),
        });
    }
    let mut events = match kind {
        EventType::WorkflowRun => actions::workflow_run(record, input),
        EventType::WorkflowJob => actions::workflow_job(record, input),
        EventType::WorkflowDispatch => actions::workflow_dispatch(record, input),
        EventType::Deployment => deployments::deployment(record, input),
        EventType::DeploymentStatus => deployments::deployment_status(record, input),
        EventType::DeploymentReview => deployments::deployment_review(record, input),
        EventType::Push => repository::push(record, input),
        EventType::BranchProtectionRule => repository::branch_protection_rule(record, input),
        EventType::Installation => repository::installation(record, input),
    }?;
    for event in &mut events {
        event.fill_duration();
    }
    Ok(events)
}

/// A new event with the envelope and the who-columns every payload shares:
/// repository, organisation and sender.
fn base_event(
    record: &Value,
    source_event_id: String,
    event_time: DateTime<Utc>,
    category: Category,
    action: String,
) -> Event {
    let mut event = Event::new(
        FORMAT.name(),
        source_event_id,
        event_time,
        category,
        action,
        // The decoder's loop sets the payload itself as the record.
        Value::Null,
    );
    event.repo = str_at(record, "/repository/full_name").map(str::to_owned);
    event.org = str_at(record, "/organization/login")
        .or_else(|| str_at(record, "/repository/owner/login"))
        .map(str::to_owned)
        .or_else(|| event.repo.as_deref().and_then(org_of));
    set_actor(&mut event, record.get("sender"));
    event
}

/// Sets actor and actor kind from a GitHub user object, if it has a login.
fn set_actor(event: &mut Event, user: Option<&Value>) {
    let Some(user) = user else { return };
    let Some(login) = str_at(user, "/login").or_else(|| str_at(user, "/name")) else {
        return;
    };
    let bot = str_at(user, "/type").is_some_and(|t| t.eq_ignore_ascii_case("bot"));
    event.actor = Some(login.to_owned());
    event.actor_kind = Some(login_kind(login, bot));
}

/// Bot for App and Actions identities (`type: Bot`, `…[bot]` logins).
pub(super) fn login_kind(login: &str, declared_bot: bool) -> ActorKind {
    if declared_bot || login.ends_with("[bot]") {
        ActorKind::Bot
    } else {
        ActorKind::User
    }
}

/// The first time the payload offers, else when the input was observed.
fn first_time(
    kind: &str,
    candidates: &[Option<DateTime<Utc>>],
    input: &Input<'_>,
) -> Result<DateTime<Utc>, Reject> {
    candidates
        .iter()
        .flatten()
        .next()
        .copied()
        .or(input.observed_at)
        .ok_or_else(|| {
            Reject::missing(format!(
                "{kind} payload carries no usable time and the input has no observation time"
            ))
        })
}

/// The payload's `action`, which every event type except push and
/// workflow_dispatch must carry.
fn action_of<'v>(record: &'v Value, kind: &str) -> Result<&'v str, Reject> {
    str_at(record, "/action")
        .ok_or_else(|| Reject::missing(format!("{kind} payload has no action")))
}

/// Native id at `pointer` as text, or a MissingField reject naming it.
fn id_at(record: &Value, pointer: &str, kind: &str) -> Result<String, Reject> {
    match record.at(pointer) {
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::Null) | None => Err(Reject::missing(format!(
            "{kind} payload has no {}",
            pointer.trim_start_matches('/').replace('/', ".")
        ))),
        Some(other) => Err(Reject::invalid(format!(
            "{kind} payload has a {} that is not an id: {other}",
            pointer.trim_start_matches('/').replace('/', ".")
        ))),
    }
}

/// Outcome of a run or job: the conclusion once there is one, else the
/// status (`completed` without a conclusion says nothing about success).
fn run_outcome(conclusion: Option<&str>, status: Option<&str>) -> &'static str {
    match (conclusion, status) {
        (Some(conclusion), _) => outcome_word(conclusion),
        (None, Some(status)) if status.eq_ignore_ascii_case("completed") => "unknown",
        (None, Some(status)) => outcome_word(status),
        (None, None) => "unknown",
    }
}

/// Branch or tag name without the `refs/heads/` or `refs/tags/` prefix.
fn short_ref(reference: &str) -> &str {
    reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
        .unwrap_or(reference)
}

/// Whether `branch` is the repository's default branch, where both are known.
fn is_default_branch(record: &Value, branch: Option<&str>) -> Option<bool> {
    let default = str_at(record, "/repository/default_branch")?;
    branch.map(|b| short_ref(b) == default)
}

/// A stable id for payloads without a native one: hex SHA-256 of the
/// record serialized with sorted keys, so key order never changes it.
pub(super) fn content_id(record: &Value) -> String {
    let canonical = serde_json::to_vec(&canonical(record)).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut sorted = serde_json::Map::new();
            for key in keys {
                if let Some(v) = map.get(key) {
                    sorted.insert(key.clone(), canonical(v));
                }
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}
