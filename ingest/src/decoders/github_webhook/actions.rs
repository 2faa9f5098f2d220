//! GitHub Actions payloads: `workflow_run`, `workflow_job` and
//! `workflow_dispatch`.

use pipewatch_schema::{Category, RunnerHosting};
use serde_json::Value;

use super::{
    Decoded, Reject, action_of, base_event, content_id, first_time, id_at, is_default_branch,
    run_outcome, set_actor, short_ref,
};
use crate::decoders::Input;
use crate::decoders::util::{Lookup, i64_at, str_at, text_at, time_at};

/// One event per run state change (`requested`, `in_progress`, `completed`).
pub(super) fn workflow_run(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "workflow_run";
    let id = id_at(record, "/workflow_run/id", KIND)?;
    let action = action_of(record, KIND)?;
    let attempt = i64_at(record, "/workflow_run/run_attempt");
    let time = first_time(
        KIND,
        &[
            time_at(record, "/workflow_run/updated_at"),
            time_at(record, "/workflow_run/run_started_at"),
            time_at(record, "/workflow_run/created_at"),
        ],
        input,
    )?;
    // A re-run reuses the run id and replays every action, so the attempt
    // is part of the identity.
    let source_event_id = match attempt {
        Some(n) => format!("{id}:{action}:attempt{n}"),
        None => format!("{id}:{action}"),
    };
    let mut event = base_event(
        record,
        source_event_id,
        time,
        Category::PipelineRun,
        format!("workflow_run.{action}"),
    );
    let status = str_at(record, "/workflow_run/status");
    event.outcome = run_outcome(str_at(record, "/workflow_run/conclusion"), status).to_owned();
    fill_run_context(&mut event, record);
    if let Some(actor) = ["/workflow_run/triggering_actor", "/workflow_run/actor"]
        .iter()
        .find_map(|p| record.at(p).filter(|u| str_at(u, "/login").is_some()))
    {
        set_actor(&mut event, Some(actor));
    }
    event.start_time = time_at(record, "/workflow_run/run_started_at");
    if status.is_some_and(|s| s.eq_ignore_ascii_case("completed")) {
        event.end_time = time_at(record, "/workflow_run/updated_at");
    }
    // The title is the commit message or PR title: attacker-controlled text
    // that template-injection detectors want to see.
    event.message = str_at(record, "/workflow_run/display_title").map(str::to_owned);
    Ok(vec![event])
}

/// Copies the run identity, trigger and VCS columns from an embedded
/// `workflow_run` object (workflow_run, deployment and review payloads).
pub(super) fn fill_run_context(event: &mut pipewatch_schema::Event, record: &Value) {
    let Some(run) = record.get("workflow_run").filter(|r| r.is_object()) else {
        return;
    };
    event.cicd_pipeline_name = str_at(run, "/name")
        .or_else(|| str_at(record, "/workflow/name"))
        .or_else(|| str_at(run, "/path"))
        .map(str::to_owned);
    event.cicd_pipeline_run_id = text_at(run, "/id");
    event.cicd_pipeline_run_attempt = i64_at(run, "/run_attempt");
    event.cicd_pipeline_trigger = str_at(run, "/event").map(str::to_owned);
    let branch = str_at(run, "/head_branch");
    event.vcs_ref_head_name = branch.map(str::to_owned);
    event.vcs_ref_head_revision = str_at(run, "/head_sha").map(str::to_owned);
    event.vcs_ref_is_default = is_default_branch(record, branch);
    let base =
        str_at(run, "/repository/full_name").or_else(|| str_at(record, "/repository/full_name"));
    if let (Some(head), Some(base)) = (str_at(run, "/head_repository/full_name"), base) {
        event.vcs_from_fork = Some(!head.eq_ignore_ascii_case(base));
    }
    event.url_full = str_at(run, "/html_url").map(str::to_owned);
}

/// One event per job state change (`queued`, `waiting`, `in_progress`, `completed`).
pub(super) fn workflow_job(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "workflow_job";
    let id = id_at(record, "/workflow_job/id", KIND)?;
    let action = action_of(record, KIND)?;
    let job = record.get("workflow_job").unwrap_or(&Value::Null);
    let status = str_at(job, "/status");
    let started = matches!(status, Some("in_progress" | "completed"));
    // Before a runner picks the job up GitHub echoes created_at into
    // started_at, so that value is only a start time once the job runs.
    let event_times = match action {
        "completed" => [time_at(job, "/completed_at"), time_at(job, "/started_at")],
        "in_progress" => [time_at(job, "/started_at"), None],
        _ => [None, None],
    };
    let time = first_time(
        KIND,
        &[event_times[0], event_times[1], time_at(job, "/created_at")],
        input,
    )?;
    let mut event = base_event(
        record,
        format!("{id}:{action}"),
        time,
        Category::PipelineJob,
        format!("workflow_job.{action}"),
    );
    event.outcome = run_outcome(str_at(job, "/conclusion"), status).to_owned();
    event.cicd_pipeline_name = str_at(job, "/workflow_name").map(str::to_owned);
    event.cicd_pipeline_run_id = text_at(job, "/run_id");
    event.cicd_pipeline_run_attempt = i64_at(job, "/run_attempt");
    event.cicd_pipeline_task_name = str_at(job, "/name").map(str::to_owned);
    event.cicd_pipeline_task_run_id = Some(id);
    let branch = str_at(job, "/head_branch");
    event.vcs_ref_head_name = branch.map(str::to_owned);
    event.vcs_ref_head_revision = str_at(job, "/head_sha").map(str::to_owned);
    event.vcs_ref_is_default = is_default_branch(record, branch);
    event.url_full = str_at(job, "/html_url").map(str::to_owned);

    event.cicd_worker_name = str_at(job, "/runner_name").map(str::to_owned);
    event.cicd_worker_id = text_at(job, "/runner_id");
    event.cicd_worker_group = str_at(job, "/runner_group_name").map(str::to_owned);
    event.cicd_worker_labels = job
        .get("labels")
        .and_then(Value::as_array)
        .map(|labels| {
            labels
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let (hosting, ephemeral) = runner_hosting(
        event.cicd_worker_group.as_deref(),
        event.cicd_worker_name.as_deref(),
        &event.cicd_worker_labels,
    );
    event.runner_hosting = hosting;
    event.runner_ephemeral = ephemeral;

    if started {
        event.start_time = time_at(job, "/started_at");
        if let (Some(start), Some(created)) = (event.start_time, time_at(job, "/created_at")) {
            let queued = (start - created).num_milliseconds();
            event.queue_ms = (queued >= 0).then_some(queued);
        }
    }
    event.end_time = time_at(job, "/completed_at");
    event.deployment_environment_name =
        str_at(record, "/deployment/environment").map(str::to_owned);
    // `waiting` is the environment protection gate: a reviewer or timer must release the job.
    if status == Some("waiting") || action == "waiting" {
        event.approval_state = Some("pending".to_owned());
    }
    Ok(vec![event])
}

/// Classifies the runner a job ran on. GitHub's own fleet runs in the
/// "GitHub Actions" group with runners named `GitHub Actions <n>` (older
/// payloads: "Hosted Agent"), each a fresh VM; a `self-hosted` label is the
/// only say-so for the organisation's own machines, which are reused unless
/// a label declares them ephemeral.
pub(super) fn runner_hosting(
    group: Option<&str>,
    name: Option<&str>,
    labels: &[String],
) -> (Option<RunnerHosting>, Option<bool>) {
    let hosted_name =
        name.is_some_and(|n| n.starts_with("GitHub Actions") || n.starts_with("Hosted Agent"));
    if group == Some("GitHub Actions") || hosted_name {
        return (Some(RunnerHosting::Hosted), Some(true));
    }
    if labels.iter().any(|l| l.eq_ignore_ascii_case("self-hosted")) {
        let ephemeral = labels
            .iter()
            .any(|l| l.to_ascii_lowercase().contains("ephemeral"))
            .then_some(true);
        return (Some(RunnerHosting::SelfHosted), ephemeral);
    }
    (None, None)
}

/// A manual trigger request. The payload has no id and no time: the id is
/// a content hash (redeliveries hash the same) and the time is when the
/// input was observed.
pub(super) fn workflow_dispatch(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "workflow_dispatch";
    let workflow = str_at(record, "/workflow")
        .ok_or_else(|| Reject::missing("workflow_dispatch payload has no workflow"))?;
    let time = first_time(KIND, &[], input)?;
    let mut event = base_event(
        record,
        content_id(record),
        time,
        Category::PipelineRun,
        KIND.to_owned(),
    );
    event.outcome = "pending".to_owned();
    event.cicd_pipeline_name = Some(workflow.to_owned());
    event.cicd_pipeline_trigger = Some(KIND.to_owned());
    let reference = str_at(record, "/ref");
    event.vcs_ref_head_name = reference.map(|r| short_ref(r).to_owned());
    event.vcs_ref_is_default = reference
        .filter(|r| !r.starts_with("refs/tags/"))
        .and_then(|r| is_default_branch(record, Some(r)));
    // Input names only: values are free text that may hold secrets.
    if let Some(inputs) = record.get("inputs").and_then(Value::as_object)
        && !inputs.is_empty()
    {
        let names: Vec<&str> = inputs.keys().map(String::as_str).collect();
        event.message = Some(format!("inputs: {}", names.join(", ")));
    }
    Ok(vec![event])
}
