//! GitLab webhook payloads: pipeline (plus one row per embedded build), job,
//! deployment, push / tag push, and project/group access token expiry hooks.
//! The event type comes from the `X-Gitlab-Event` hint, else `object_kind`.
//! Spec: <https://docs.gitlab.com/user/project/integrations/webhook_events/>

use chrono::{DateTime, Utc};
use pipewatch_schema::{ActorKind, Category, Event, IdentityKind, RunnerHosting};
use serde_json::Value;

use super::framing;
use super::util::{Lookup, bool_at, org_of, outcome_word, str_at, text_at, time_at};
use super::{DecodeOutput, Decoder, Format, Input};
use crate::dead_letter::DeadLetterReason;

const FORMAT: Format = Format::Gitlab;

#[derive(Debug)]
pub(crate) struct Gitlab;

pub(crate) static DECODER: Gitlab = Gitlab;

/// The object kinds this decoder reads (`build` is GitLab's name for a job).
const KINDS: &[&str] = &[
    "pipeline",
    "build",
    "deployment",
    "push",
    "tag_push",
    "access_token",
    "deploy_token",
];

impl Decoder for Gitlab {
    fn sniff(&self, record: &Value) -> bool {
        // Other GitLab hooks are claimed too, so they dead-letter as an unknown
        // GitLab shape instead of an unknown format.
        str_at(record, "/object_kind").is_some_and(|k| {
            KINDS.contains(&k)
                || ["project", "project_id", "group", "object_attributes"]
                    .iter()
                    .any(|key| record.get(key).is_some())
        })
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in out.parsed(FORMAT, input, framing::json_records(input)) {
            let value = framed.value;
            match decode_payload(&value, input) {
                Ok(events) => out.events.extend(events),
                Err((reason, detail)) => {
                    let bytes = match framed.position {
                        // Array elements share the whole body; keep only this one.
                        framing::Position::Record(_) => {
                            serde_json::to_vec(&value).unwrap_or_default()
                        }
                        _ => framed.bytes.to_vec(),
                    };
                    out.reject(FORMAT, input, framed.position, reason, detail, &bytes);
                }
            }
        }
    }
}

type Reject = (DeadLetterReason, String);

fn missing(what: &str) -> Reject {
    (DeadLetterReason::MissingField, what.to_owned())
}

/// Whether hooks sent with this `X-Gitlab-Event` header are decoded.
/// System hooks name no kind in the header, so their bodies decide.
pub(super) fn decodes_event_type(header: &str) -> bool {
    kind_of_hint(header).is_some() || header.trim().eq_ignore_ascii_case("system hook")
}

/// The object kind named by an `X-Gitlab-Event` header value.
fn kind_of_hint(hint: &str) -> Option<&'static str> {
    Some(match hint.trim().to_ascii_lowercase().as_str() {
        "pipeline hook" => "pipeline",
        "job hook" | "build hook" => "build",
        "deployment hook" => "deployment",
        "push hook" => "push",
        "tag push hook" => "tag_push",
        "resource access token hook" => "access_token",
        _ => return None,
    })
}

fn decode_payload(payload: &Value, input: &Input<'_>) -> Result<Vec<Event>, Reject> {
    if !payload.is_object() {
        return Err((
            DeadLetterReason::UnknownShape,
            "GitLab webhook payload is not a JSON object".into(),
        ));
    }
    // System hooks and unknown headers say nothing about the body: fall back to it.
    let kind = input
        .type_hint
        .and_then(kind_of_hint)
        .or_else(|| str_at(payload, "/object_kind"))
        .or_else(|| str_at(payload, "/event_name"))
        .ok_or((
            DeadLetterReason::UnknownShape,
            "GitLab payload has no object_kind or event_name".to_owned(),
        ))?;
    let ctx = Context::new(payload);
    match kind {
        "pipeline" => pipeline(payload, &ctx, input),
        "build" => job(payload, &ctx, input).map(|e| vec![e]),
        "deployment" => deployment(payload, &ctx, input).map(|e| vec![e]),
        "push" | "tag_push" => push(payload, &ctx, kind, input).map(|e| vec![e]),
        "access_token" | "deploy_token" => {
            token_expiry(payload, &ctx, kind, input).map(|e| vec![e])
        }
        other => Err((
            DeadLetterReason::UnknownShape,
            format!("GitLab {other} events are not decoded"),
        )),
    }
}

/// What every hook says about the project it was sent for.
struct Context {
    /// Full project path, `group/sub/name`.
    repo: Option<String>,
    /// The project's web address.
    web_url: Option<String>,
    default_branch: Option<String>,
    /// Host of the GitLab instance, to tell GitLab.com from self-managed.
    host: Option<String>,
}

impl Context {
    fn new(payload: &Value) -> Self {
        let web_url = str_at(payload, "/project/web_url")
            .or_else(|| str_at(payload, "/repository/homepage"))
            .map(|u| u.trim_end_matches('/').to_owned());
        let url_path = web_url.as_deref().and_then(|u| {
            let rest = u.split_once("://").map_or(u, |(_, rest)| rest);
            rest.split_once('/').map(|(_, path)| path.to_owned())
        });
        let host = web_url.as_deref().and_then(|u| {
            let rest = u.split_once("://").map_or(u, |(_, rest)| rest);
            rest.split(['/', ':']).next().map(str::to_ascii_lowercase)
        });
        Context {
            repo: str_at(payload, "/project/path_with_namespace")
                .map(str::to_owned)
                .or(url_path),
            web_url,
            default_branch: str_at(payload, "/project/default_branch").map(str::to_owned),
            host,
        }
    }

    /// A new event with the project columns filled.
    fn event(
        &self,
        id: String,
        time: DateTime<Utc>,
        category: Category,
        action: String,
        raw: &Value,
    ) -> Event {
        let mut event = Event::new(FORMAT.name(), id, time, category, action, raw.clone());
        event.org = self.repo.as_deref().and_then(org_of);
        event.repo = self.repo.clone();
        event
    }

    fn is_default(&self, ref_name: Option<&str>, tag: Option<bool>) -> Option<bool> {
        match (ref_name, &self.default_branch, tag) {
            (_, _, Some(true)) => Some(false),
            (Some(r), Some(default), _) => Some(r == default),
            _ => None,
        }
    }
}

/// GitLab statuses the shared mapping does not know.
fn outcome(status: &str) -> &'static str {
    match status {
        "waiting_for_resource" | "waiting_for_callback" => "pending",
        "canceling" => "in_progress",
        other => outcome_word(other),
    }
}

/// The time a status was reached: finish for final states, start while running, else creation.
fn status_time(
    status: &str,
    created: Option<DateTime<Utc>>,
    started: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match outcome(status) {
        "success" | "failure" | "cancelled" | "skipped" => finished.or(started).or(created),
        "in_progress" => started.or(created),
        _ => created.or(started).or(finished),
    }
}

fn event_time(
    found: Option<DateTime<Utc>>,
    input: &Input<'_>,
    what: &str,
) -> Result<DateTime<Utc>, Reject> {
    found.or(input.observed_at).ok_or_else(|| {
        missing(&format!(
            "{what} has no usable time and no receipt time was given"
        ))
    })
}

/// Seconds (GitLab sends floats) as whole milliseconds.
fn seconds_ms(value: &Value, pointer: &str) -> Option<i64> {
    value
        .at(pointer)
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0).round() as i64)
}

fn actor_kind(username: &str) -> ActorKind {
    // Project/group access tokens act through generated bot users.
    let generated = (username.starts_with("project_") || username.starts_with("group_"))
        && username.contains("_bot");
    if generated || username.ends_with("[bot]") || username.ends_with("-bot") {
        ActorKind::Bot
    } else {
        ActorKind::User
    }
}

fn set_actor(event: &mut Event, username: Option<&str>) {
    if let Some(name) = username {
        event.actor = Some(name.to_owned());
        event.actor_kind = Some(actor_kind(name));
    }
}

/// Runner columns. Only GitLab.com's own shared runners are vendor-hosted
/// (single-use VMs); an instance runner on a self-managed GitLab is run by
/// the organisation itself.
fn set_runner(event: &mut Event, runner: Option<&Value>, ctx: &Context) {
    let Some(runner) = runner.filter(|r| r.is_object()) else {
        return;
    };
    event.cicd_worker_name = str_at(runner, "/description").map(str::to_owned);
    event.cicd_worker_id = text_at(runner, "/id");
    event.cicd_worker_group = str_at(runner, "/runner_type").map(str::to_owned);
    event.cicd_worker_labels = runner
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let shared = bool_at(runner, "/is_shared")
        .unwrap_or(str_at(runner, "/runner_type") == Some("instance_type"));
    let gitlab_com = ctx.host.as_deref() == Some("gitlab.com")
        || event
            .cicd_worker_name
            .as_deref()
            .is_some_and(|d| d.contains(".gitlab.com"));
    if shared && gitlab_com {
        event.runner_hosting = Some(RunnerHosting::Hosted);
        event.runner_ephemeral = Some(true);
    } else {
        event.runner_hosting = Some(RunnerHosting::SelfHosted);
    }
}

fn pipeline(payload: &Value, ctx: &Context, input: &Input<'_>) -> Result<Vec<Event>, Reject> {
    let attrs = payload
        .get("object_attributes")
        .filter(|a| a.is_object())
        .ok_or_else(|| missing("pipeline payload has no object_attributes"))?;
    let id = text_at(attrs, "/id")
        .ok_or_else(|| missing("pipeline payload has no object_attributes.id"))?;
    let status = str_at(attrs, "/status").unwrap_or("unknown");
    let created = time_at(attrs, "/created_at");
    let started = time_at(attrs, "/started_at");
    let finished = time_at(attrs, "/finished_at");
    let time = event_time(
        status_time(status, created, started, finished),
        input,
        "pipeline payload",
    )?;

    let mut run = ctx.event(
        format!("{id}:{status}"),
        time,
        Category::PipelineRun,
        format!("pipeline.{status}"),
        payload,
    );
    run.outcome = outcome(status).to_owned();
    run.cicd_pipeline_name = str_at(attrs, "/name").map(str::to_owned);
    run.cicd_pipeline_run_id = Some(id.clone());
    run.cicd_pipeline_trigger = str_at(attrs, "/source").map(str::to_owned);
    let ref_name = str_at(attrs, "/ref");
    let tag = bool_at(attrs, "/tag");
    run.vcs_ref_head_name = ref_name.map(str::to_owned);
    run.vcs_ref_head_revision = str_at(attrs, "/sha").map(str::to_owned);
    run.vcs_ref_is_default = ctx.is_default(ref_name, tag);
    if let (Some(source), Some(target)) = (
        text_at(payload, "/merge_request/source_project_id"),
        text_at(payload, "/merge_request/target_project_id"),
    ) {
        run.vcs_from_fork = Some(source != target);
    }
    run.start_time = started.or(created);
    run.end_time = finished;
    run.duration_ms = seconds_ms(attrs, "/duration");
    run.queue_ms = seconds_ms(attrs, "/queued_duration");
    run.url_full = str_at(attrs, "/url").map(str::to_owned).or_else(|| {
        ctx.web_url
            .as_ref()
            .map(|u| format!("{u}/-/pipelines/{id}"))
    });
    if let Some(mr) = payload.get("merge_request").filter(|m| m.is_object()) {
        run.message = Some(format!(
            "merge request !{} {} -> {}: {}",
            text_at(mr, "/iid").unwrap_or_default(),
            str_at(mr, "/source_branch").unwrap_or("?"),
            str_at(mr, "/target_branch").unwrap_or("?"),
            str_at(mr, "/title").unwrap_or_default(),
        ));
    }
    set_actor(&mut run, str_at(payload, "/user/username"));

    let mut events = vec![run];
    let builds = payload.get("builds").and_then(Value::as_array);
    for build in builds.into_iter().flatten() {
        // A build without an id cannot be keyed; the pipeline row still stands.
        if let Some(build_event) = pipeline_build(build, payload, &events[0], ctx) {
            events.push(build_event);
        }
    }
    Ok(events)
}

/// One job as embedded in a pipeline hook. The id gets a `:pipeline` suffix
/// so it never replaces the richer row of the job's own hook.
fn pipeline_build(build: &Value, payload: &Value, run: &Event, ctx: &Context) -> Option<Event> {
    let build_id = text_at(build, "/id")?;
    let status = str_at(build, "/status").unwrap_or("unknown");
    let created = time_at(build, "/created_at");
    let started = time_at(build, "/started_at");
    let finished = time_at(build, "/finished_at");
    let time = status_time(status, created, started, finished).unwrap_or(run.event_time);
    let mut event = ctx.event(
        format!("{build_id}:{status}:pipeline"),
        time,
        Category::PipelineJob,
        "pipeline.build".to_owned(),
        payload,
    );
    event.outcome = outcome(status).to_owned();
    event.cicd_pipeline_name = run.cicd_pipeline_name.clone();
    event.cicd_pipeline_run_id = run.cicd_pipeline_run_id.clone();
    event.cicd_pipeline_trigger = run.cicd_pipeline_trigger.clone();
    event.cicd_pipeline_task_name = str_at(build, "/name").map(str::to_owned);
    event.cicd_pipeline_task_run_id = Some(build_id.clone());
    event.vcs_ref_head_name = run.vcs_ref_head_name.clone();
    event.vcs_ref_head_revision = run.vcs_ref_head_revision.clone();
    event.vcs_ref_is_default = run.vcs_ref_is_default;
    event.vcs_from_fork = run.vcs_from_fork;
    event.start_time = started;
    event.end_time = finished;
    event.duration_ms = seconds_ms(build, "/duration");
    event.queue_ms = seconds_ms(build, "/queued_duration");
    event.deployment_environment_name = str_at(build, "/environment/name").map(str::to_owned);
    event.message = str_at(build, "/stage").map(|s| format!("stage {s}"));
    event.url_full = ctx
        .web_url
        .as_ref()
        .map(|u| format!("{u}/-/jobs/{build_id}"));
    set_runner(&mut event, build.get("runner"), ctx);
    set_actor(&mut event, str_at(build, "/user/username"));
    Some(event)
}

fn job(payload: &Value, ctx: &Context, input: &Input<'_>) -> Result<Event, Reject> {
    let build_id =
        text_at(payload, "/build_id").ok_or_else(|| missing("job payload has no build_id"))?;
    let status = str_at(payload, "/build_status").unwrap_or("unknown");
    let created = time_at(payload, "/build_created_at");
    let started = time_at(payload, "/build_started_at");
    let finished = time_at(payload, "/build_finished_at");
    let time = event_time(
        status_time(status, created, started, finished),
        input,
        "job payload",
    )?;

    let mut event = ctx.event(
        format!("{build_id}:{status}"),
        time,
        Category::PipelineJob,
        format!("build.{status}"),
        payload,
    );
    event.outcome = outcome(status).to_owned();
    event.cicd_pipeline_run_id = text_at(payload, "/pipeline_id");
    event.cicd_pipeline_task_name = str_at(payload, "/build_name").map(str::to_owned);
    event.cicd_pipeline_task_run_id = Some(build_id.clone());
    let ref_name = str_at(payload, "/ref");
    event.vcs_ref_head_name = ref_name.map(str::to_owned);
    event.vcs_ref_head_revision = str_at(payload, "/sha").map(str::to_owned);
    event.vcs_ref_is_default = ctx.is_default(ref_name, bool_at(payload, "/tag"));
    event.start_time = started;
    event.end_time = finished;
    event.duration_ms = seconds_ms(payload, "/build_duration");
    event.queue_ms = seconds_ms(payload, "/build_queued_duration");
    event.deployment_environment_name = str_at(payload, "/environment/name").map(str::to_owned);
    let mut notes: Vec<String> = str_at(payload, "/build_stage")
        .map(|s| format!("stage {s}"))
        .into_iter()
        .collect();
    // GitLab fills failure_reason on every job; it only means something on failures.
    if event.outcome == "failure"
        && let Some(reason) = str_at(payload, "/build_failure_reason")
    {
        notes.push(format!("failure reason {reason}"));
    }
    event.message = (!notes.is_empty()).then(|| notes.join("; "));
    event.url_full = ctx
        .web_url
        .as_ref()
        .map(|u| format!("{u}/-/jobs/{build_id}"));
    set_runner(&mut event, payload.get("runner"), ctx);
    set_actor(&mut event, str_at(payload, "/user/username"));
    Ok(event)
}

fn deployment(payload: &Value, ctx: &Context, input: &Input<'_>) -> Result<Event, Reject> {
    let id = text_at(payload, "/deployment_id")
        .ok_or_else(|| missing("deployment payload has no deployment_id"))?;
    let status = str_at(payload, "/status").unwrap_or("unknown");
    let time = event_time(
        time_at(payload, "/status_changed_at"),
        input,
        "deployment payload",
    )?;
    let mut event = ctx.event(
        format!("{id}:{status}"),
        time,
        Category::Deployment,
        format!("deployment.{status}"),
        payload,
    );
    event.outcome = outcome(status).to_owned();
    let environment = str_at(payload, "/environment").map(str::to_owned);
    event.deployment_environment_name = environment.clone();
    event.target_type = environment.as_ref().map(|_| "environment".to_owned());
    event.target_name = environment;
    event.vcs_ref_head_name = str_at(payload, "/ref").map(str::to_owned);
    // The payload gives only the short sha; the commit link ends in the full one.
    event.vcs_ref_head_revision = str_at(payload, "/commit_url")
        .and_then(|u| u.rsplit('/').next())
        .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .or_else(|| str_at(payload, "/short_sha"))
        .map(str::to_owned);
    event.cicd_pipeline_task_run_id = text_at(payload, "/deployable_id");
    event.url_full = str_at(payload, "/deployable_url").map(str::to_owned);
    event.message = str_at(payload, "/commit_title").map(str::to_owned);
    set_actor(&mut event, str_at(payload, "/user/username"));
    Ok(event)
}

fn push(payload: &Value, ctx: &Context, kind: &str, input: &Input<'_>) -> Result<Event, Reject> {
    let after =
        str_at(payload, "/after").ok_or_else(|| missing("push payload has no after sha"))?;
    let git_ref = str_at(payload, "/ref").ok_or_else(|| missing("push payload has no ref"))?;
    let before = str_at(payload, "/before").unwrap_or_default();
    let project = text_at(payload, "/project_id")
        .or_else(|| text_at(payload, "/project/id"))
        .unwrap_or_default();
    // A push carries no push time, only author times of its commits; the
    // receipt time is closer to the fact, the head commit time a last resort.
    let head_time = payload
        .get("commits")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| str_at(c, "/id") == Some(after)))
        .and_then(|c| time_at(c, "/timestamp"));
    let time = input
        .observed_at
        .or(head_time)
        .ok_or_else(|| missing("push payload has no time and no receipt time was given"))?;

    // Same after sha may land on several refs or projects; before tells re-pushes apart.
    let mut event = ctx.event(
        format!("{after}:{before}:{project}:{git_ref}"),
        time,
        Category::CodeChange,
        kind.to_owned(),
        payload,
    );
    event.outcome = "success".to_owned();
    let (target_type, short) = if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        ("branch", branch)
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        ("tag", tag)
    } else {
        ("ref", git_ref)
    };
    event.target_type = Some(target_type.to_owned());
    event.target_name = Some(short.to_owned());
    event.vcs_ref_head_name = Some(short.to_owned());
    event.vcs_ref_head_revision = Some(after.to_owned());
    event.vcs_ref_is_default = ctx.is_default(Some(short), Some(target_type == "tag"));
    let deleted = after.bytes().all(|b| b == b'0');
    let count = payload
        .get("total_commits_count")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let head_title = payload
        .get("commits")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| str_at(c, "/id") == Some(after)))
        .and_then(|c| str_at(c, "/title"));
    event.message = Some(if deleted {
        format!("{target_type} {short} deleted")
    } else if let Some(title) = head_title {
        format!("{count} commit(s); head: {title}")
    } else {
        format!("{count} commit(s)")
    });
    set_actor(&mut event, str_at(payload, "/user_username"));
    event.url_full = ctx
        .web_url
        .as_ref()
        .map(|u| format!("{u}/-/commit/{after}"));
    Ok(event)
}

fn token_expiry(
    payload: &Value,
    ctx: &Context,
    kind: &str,
    input: &Input<'_>,
) -> Result<Event, Reject> {
    let attrs = payload
        .get("object_attributes")
        .filter(|a| a.is_object())
        .ok_or_else(|| missing("access token payload has no object_attributes"))?;
    let id = text_at(attrs, "/id")
        .ok_or_else(|| missing("access token payload has no object_attributes.id"))?;
    let event_name = str_at(payload, "/event_name").unwrap_or("access_token");
    let expires = str_at(attrs, "/expires_at").unwrap_or_default();
    // The hook is a notice sent when the token nears expiry and carries no time of its own.
    let time = input.observed_at.ok_or_else(|| {
        missing("access token notice carries no time and no receipt time was given")
    })?;
    let what = if kind == "deploy_token" {
        "deploy_token"
    } else {
        "access_token"
    };
    let action = match event_name.strip_suffix(&format!("_{what}")) {
        Some(verb) => format!("{what}.{verb}"),
        None => format!("{what}.{event_name}"),
    };
    let mut event = ctx.event(
        format!("{id}:{event_name}:{expires}"),
        time,
        Category::Auth,
        action,
        payload,
    );
    let owner = ctx
        .repo
        .clone()
        .or_else(|| str_at(payload, "/group/full_path").map(str::to_owned))
        .or_else(|| str_at(payload, "/group/group_path").map(str::to_owned));
    if ctx.repo.is_none() {
        // A group token: the group is the owner.
        event.org = owner
            .as_deref()
            .map(|o| o.split('/').next().unwrap_or(o).to_owned());
    }
    event.outcome = if event_name.starts_with("expiring") {
        "warning"
    } else {
        "unknown"
    }
    .to_owned();
    event.identity_kind = IdentityKind::Token;
    event.identity_id = Some(id);
    event.target_type = Some(what.to_owned());
    event.target_name = str_at(attrs, "/name").map(str::to_owned);
    event.target_namespace = owner;
    let scope = if ctx.repo.is_some() {
        "project"
    } else {
        "group"
    };
    let label = if kind == "deploy_token" {
        "deploy token"
    } else {
        "access token"
    };
    event.message = Some(format!(
        "{scope} {label} {:?} expires on {}",
        str_at(attrs, "/name").unwrap_or("?"),
        if expires.is_empty() {
            "an unknown date"
        } else {
            expires
        }
    ));
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoders::Position;

    fn decode_with(bytes: &[u8], hint: Option<&str>) -> DecodeOutput {
        let mut input = Input::new("test", bytes);
        input.type_hint = hint;
        input.observed_at = Some(DateTime::UNIX_EPOCH);
        let mut out = DecodeOutput::default();
        DECODER.decode(&input, &mut out);
        out
    }

    fn job_payload(runner: Value, web: &str) -> Value {
        serde_json::json!({
            "object_kind": "build", "build_id": 7, "build_status": "success",
            "build_name": "test", "build_stage": "test", "pipeline_id": 3,
            "build_started_at": "2024-01-01 10:00:00 UTC", "build_finished_at": "2024-01-01 10:01:00 UTC",
            "build_duration": 60.25, "build_queued_duration": 1.5,
            "repository": {"homepage": web}, "runner": runner,
        })
    }

    #[test]
    fn array_with_a_bad_payload_keeps_the_good_ones() {
        let good = job_payload(Value::Null, "https://gitlab.com/g/p");
        let no_id = serde_json::json!({"object_kind": "build", "build_status": "failed"});
        let unknown = serde_json::json!({"object_kind": "note"});
        let body = serde_json::json!([good, no_id, unknown]).to_string();
        let out = decode_with(body.as_bytes(), None);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].source_event_id, "7:success");
        assert_eq!(out.dead_letters.len(), 2);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
        assert_eq!(out.dead_letters[0].position, Position::Record(1));
        assert_eq!(out.dead_letters[1].reason, DeadLetterReason::UnknownShape);
    }

    #[test]
    fn gitlab_com_shared_runner_is_hosted_and_ephemeral() {
        let runner = serde_json::json!({"id": 1, "description": "runner", "is_shared": true,
            "runner_type": "instance_type", "tags": ["linux"]});
        let body = job_payload(runner, "https://gitlab.com/group/proj").to_string();
        let event = &decode_with(body.as_bytes(), None).events[0];
        assert_eq!(event.runner_hosting, Some(RunnerHosting::Hosted));
        assert_eq!(event.runner_ephemeral, Some(true));
        assert_eq!(event.cicd_worker_labels, vec!["linux".to_owned()]);
        assert_eq!(event.duration_ms, Some(60_250));
        assert_eq!(event.queue_ms, Some(1_500));
        assert_eq!(event.repo.as_deref(), Some("group/proj"));
        assert_eq!(event.org.as_deref(), Some("group"));
    }

    #[test]
    fn self_managed_and_project_runners_are_self_hosted() {
        let shared = serde_json::json!({"id": 2, "description": "ci-01", "is_shared": true});
        let body = job_payload(shared, "https://git.example.com/g/p").to_string();
        let event = &decode_with(body.as_bytes(), None).events[0];
        assert_eq!(event.runner_hosting, Some(RunnerHosting::SelfHosted));
        assert_eq!(event.runner_ephemeral, None);

        let project = serde_json::json!({"id": 3, "description": "x.gitlab.com", "is_shared": false,
            "runner_type": "project_type"});
        let body = job_payload(project, "https://gitlab.com/g/p").to_string();
        let event = &decode_with(body.as_bytes(), None).events[0];
        assert_eq!(event.runner_hosting, Some(RunnerHosting::SelfHosted));
    }

    #[test]
    fn hint_decides_the_type_and_unknown_kinds_are_rejected() {
        assert!(DECODER.sniff(&serde_json::json!({"object_kind": "pipeline"})));
        assert!(DECODER.sniff(&serde_json::json!({"object_kind": "note", "project": {}})));
        assert!(!DECODER.sniff(&serde_json::json!({"object_kind": "widget"})));
        assert!(!DECODER.sniff(&serde_json::json!({"action": "completed", "workflow_job": {}})));
        let body = job_payload(Value::Null, "https://gitlab.com/g/p").to_string();
        let out = decode_with(body.as_bytes(), Some("Pipeline Hook"));
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
        let out = decode_with(body.as_bytes(), Some("System Hook"));
        assert_eq!(out.events.len(), 1);
        let out = decode_with(br#"{"object_kind":"issue"}"#, None);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::UnknownShape);
    }

    #[test]
    fn token_expiry_needs_a_receipt_time() {
        let body = br#"{"object_kind":"access_token","event_name":"expiring_access_token",
            "group":{"group_path":"ops","full_path":"ops"},
            "object_attributes":{"id":5,"name":"deploy","expires_at":"2024-02-01"}}"#;
        let out = decode_with(body, None);
        let event = &out.events[0];
        assert_eq!(event.category, Category::Auth);
        assert_eq!(event.identity_kind, IdentityKind::Token);
        assert_eq!(event.outcome, "warning");
        assert_eq!(event.org.as_deref(), Some("ops"));

        let mut out = DecodeOutput::default();
        DECODER.decode(&Input::new("test", body), &mut out);
        assert!(out.events.is_empty());
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
    }

    #[test]
    fn pipeline_builds_get_their_own_suffixed_rows() {
        let body = serde_json::json!({
            "object_kind": "pipeline",
            "object_attributes": {"id": 9, "status": "failed", "ref": "main", "tag": false,
                "created_at": "2024-01-01 10:00:00 UTC", "finished_at": "2024-01-01 10:05:00 UTC"},
            "project": {"path_with_namespace": "g/p", "default_branch": "main"},
            "builds": [{"id": 11, "status": "failed", "name": "lint"}, {"status": "success"}],
        })
        .to_string();
        let out = decode_with(body.as_bytes(), None);
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.events[0].source_event_id, "9:failed");
        assert_eq!(out.events[0].outcome, "failure");
        assert_eq!(out.events[0].vcs_ref_is_default, Some(true));
        assert_eq!(out.events[1].source_event_id, "11:failed:pipeline");
        assert_eq!(out.events[1].action, "pipeline.build");
        assert_eq!(out.events[1].cicd_pipeline_run_id.as_deref(), Some("9"));
    }
}
