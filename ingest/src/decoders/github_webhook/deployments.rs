//! Deployment payloads: `deployment` (created), `deployment_status` (each
//! state a deployment reports) and `deployment_review` (the environment's
//! human-approval gate).

use pipewatch_schema::{Category, Event};
use serde_json::Value;

use super::actions::fill_run_context;
use super::{
    Decoded, Reject, action_of, base_event, first_time, id_at, is_default_branch, set_actor,
    short_ref,
};
use crate::decoders::Input;
use crate::decoders::util::{Lookup, outcome_word, str_at, text_at, time_at};

/// A deployment was created.
pub(super) fn deployment(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "deployment";
    let id = id_at(record, "/deployment/id", KIND)?;
    let action = action_of(record, KIND)?;
    let time = first_time(
        KIND,
        &[
            time_at(record, "/deployment/created_at"),
            time_at(record, "/deployment/updated_at"),
        ],
        input,
    )?;
    let mut event = base_event(
        record,
        format!("{id}:{action}"),
        time,
        Category::Deployment,
        format!("deployment.{action}"),
    );
    // A created deployment has not run yet; its statuses say how it went.
    event.outcome = "pending".to_owned();
    fill_deployment(&mut event, record);
    event.message = str_at(record, "/deployment/description").map(str::to_owned);
    Ok(vec![event])
}

/// A deployment reported a state (`queued`, `in_progress`, `success`, `failure`, …).
pub(super) fn deployment_status(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "deployment_status";
    let id = id_at(record, "/deployment_status/id", KIND)?;
    let action = action_of(record, KIND)?;
    let state = str_at(record, "/deployment_status/state").ok_or_else(|| {
        Reject::missing("deployment_status payload has no deployment_status.state")
    })?;
    let time = first_time(
        KIND,
        &[
            time_at(record, "/deployment_status/created_at"),
            time_at(record, "/deployment_status/updated_at"),
        ],
        input,
    )?;
    // Status ids and deployment ids are separate sequences; the state
    // suffix keeps a status from ever sharing a deployment's event id.
    let mut event = base_event(
        record,
        format!("{id}:{action}:{state}"),
        time,
        Category::Deployment,
        format!("deployment_status.{action}"),
    );
    event.outcome = outcome_word(state).to_owned();
    fill_deployment(&mut event, record);
    if let Some(environment) = str_at(record, "/deployment_status/environment") {
        event.deployment_environment_name = Some(environment.to_owned());
    }
    if record.at("/deployment_status/creator/login").is_some() {
        set_actor(&mut event, record.at("/deployment_status/creator"));
    }
    event.url_full = str_at(record, "/deployment_status/target_url")
        .or_else(|| str_at(record, "/deployment_status/log_url"))
        .map(str::to_owned)
        .or(event.url_full);
    event.message = str_at(record, "/deployment_status/description").map(str::to_owned);
    Ok(vec![event])
}

/// Columns from the `deployment` object and an embedded workflow run.
fn fill_deployment(event: &mut Event, record: &Value) {
    fill_run_context(event, record);
    event.deployment_environment_name =
        str_at(record, "/deployment/environment").map(str::to_owned);
    let reference = str_at(record, "/deployment/ref");
    event.vcs_ref_head_name = reference.map(|r| short_ref(r).to_owned());
    event.vcs_ref_head_revision = str_at(record, "/deployment/sha").map(str::to_owned);
    event.vcs_ref_is_default = is_default_branch(record, reference);
    event.correlation_id = text_at(record, "/deployment/id");
    event.deploy_strategy = deployment_strategy(record);
    if record.at("/deployment/creator/login").is_some() {
        set_actor(event, record.at("/deployment/creator"));
    }
}

/// The rollout strategy a deployment declares: `payload.strategy` (an
/// object, or the JSON string GitHub stores when created through the API),
/// else a `task` such as `deploy:canary`.
fn deployment_strategy(record: &Value) -> Option<String> {
    let payload = record.at("/deployment/payload");
    let from_payload = match payload {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("strategy").and_then(Value::as_str).map(str::to_owned)),
        Some(value) => str_at(value, "/strategy").map(str::to_owned),
        None => None,
    };
    from_payload
        .as_deref()
        .or_else(|| str_at(record, "/deployment/task"))
        .and_then(crate::decoders::util::deploy_strategy_word)
        .map(str::to_owned)
}

/// A review of a gated environment was requested, approved or rejected.
/// One event per environment, since one approval may release several.
pub(super) fn deployment_review(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "deployment_review";
    let run_id = id_at(record, "/workflow_run/id", KIND)?;
    let action = action_of(record, KIND)?;
    let job_runs: Vec<&Value> = record
        .get("workflow_job_run")
        .filter(|j| j.is_object())
        .into_iter()
        .chain(
            record
                .get("workflow_job_runs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .collect();
    let mut environments: Vec<&str> = Vec::new();
    for name in str_at(record, "/environment")
        .into_iter()
        .chain(job_runs.iter().filter_map(|j| str_at(j, "/environment")))
    {
        if !environments.contains(&name) {
            environments.push(name);
        }
    }
    if environments.is_empty() {
        return Err(Reject::missing(
            "deployment_review payload names no environment (environment, workflow_job_run.environment)",
        ));
    }
    let (approval, outcome, reviewer) = match action {
        "approved" => ("approved", "success", record.get("approver")),
        "rejected" => ("rejected", "denied", record.get("approver")),
        _ => ("pending", "pending", record.get("requestor")),
    };
    let attempt = record
        .at("/workflow_run/run_attempt")
        .and_then(Value::as_i64);
    let mut events = Vec::with_capacity(environments.len());
    for environment in environments {
        let job = job_runs
            .iter()
            .copied()
            .find(|j| str_at(j, "/environment") == Some(environment));
        let time = first_time(
            KIND,
            &[
                job.and_then(|j| time_at(j, "/updated_at")),
                time_at(record, "/workflow_run/updated_at"),
                time_at(record, "/since"),
            ],
            input,
        )?;
        let mut source_event_id = format!("{run_id}:review:{action}:{environment}");
        if let Some(n) = attempt {
            // A re-run asks for the same environment's approval again.
            source_event_id.push_str(&format!(":attempt{n}"));
        }
        let mut event = base_event(
            record,
            source_event_id,
            time,
            Category::Deployment,
            format!("deployment_review.{action}"),
        );
        fill_run_context(&mut event, record);
        event.outcome = outcome.to_owned();
        event.approval_state = Some(approval.to_owned());
        event.deployment_environment_name = Some(environment.to_owned());
        event.target_type = Some("environment".to_owned());
        event.target_name = Some(environment.to_owned());
        if let Some(job) = job {
            event.cicd_pipeline_task_name = str_at(job, "/name").map(str::to_owned);
            event.cicd_pipeline_task_run_id = text_at(job, "/id");
        }
        if reviewer.and_then(|r| str_at(r, "/login")).is_some() {
            set_actor(&mut event, reviewer);
        }
        event.message = str_at(record, "/comment")
            .map(str::to_owned)
            .or_else(|| reviewers_summary(record));
        events.push(event);
    }
    Ok(events)
}

/// "required reviewers: Team admins, User octocat" for review requests.
fn reviewers_summary(record: &Value) -> Option<String> {
    let names: Vec<String> = record
        .get("reviewers")?
        .as_array()?
        .iter()
        .filter_map(|r| {
            let name = str_at(r, "/reviewer/login").or_else(|| str_at(r, "/reviewer/name"))?;
            Some(match str_at(r, "/type") {
                Some(kind) => format!("{kind} {name}"),
                None => name.to_owned(),
            })
        })
        .collect();
    (!names.is_empty()).then(|| format!("required reviewers: {}", names.join(", ")))
}
