//! GitLab webhooks (`gitlab/hooks.ndjson`): Push, Pipeline (with
//! `builds[]`), Job (`object_kind: build`) and Deployment hooks, times in
//! GitLab's `YYYY-MM-DD HH:MM:SS UTC`, runners with `runner_type`,
//! `is_shared` and `tags`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{gitlab_time, iso};
use crate::ctx::Ctx;
use crate::facts::{JobFact, RunFact};
use crate::org::{GITLAB_HOST, Org, Repo};

const FILE: &str = "gitlab/hooks.ndjson";

fn project(repo: &Repo) -> Value {
    json!({
        "id": repo.id,
        "name": repo.name,
        "description": repo.description,
        "web_url": repo.url(),
        "avatar_url": null,
        "git_ssh_url": format!("git@{GITLAB_HOST}:{}.git", repo.full_name),
        "git_http_url": format!("{}.git", repo.url()),
        "namespace": "Acme Platform",
        "visibility_level": 0,
        "path_with_namespace": repo.full_name,
        "default_branch": "main",
        "ci_config_path": "",
    })
}

fn user(run: &RunFact) -> Value {
    json!({
        "id": run.actor.id,
        "name": run.author_name,
        "username": run.actor.login,
        "avatar_url": format!("https://secure.gravatar.com/avatar/{}?s=80&d=identicon", &crate::rng::sha256_hex(&run.author_email)[..32]),
        "email": run.author_email,
    })
}

fn runner(job: &JobFact) -> Value {
    match &job.runner {
        Some(r) if job.conclusion != "skipped" => json!({
            "id": r.id,
            "description": r.name,
            "runner_type": r.gitlab_type,
            "active": true,
            "is_shared": r.gitlab_type == "instance_type",
            "tags": r.labels,
        }),
        _ => Value::Null,
    }
}

fn status(conclusion: &str) -> &'static str {
    match conclusion {
        "success" => "success",
        "failure" => "failed",
        "cancelled" => "canceled",
        "skipped" => "skipped",
        _ => "running",
    }
}

fn environment(job: &JobFact) -> Value {
    match job.env {
        Some(env) => json!({"name": env, "action": "start", "deployment_tier": env}),
        None => Value::Null,
    }
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// A Push Hook.
pub(crate) fn push(ctx: &mut Ctx, org: &Org, run: &RunFact, at: DateTime<Utc>) {
    let repo = &org.repos[run.repo];
    let title = run.message.lines().next().unwrap_or_default();
    let body = json!({
        "object_kind": "push",
        "event_name": "push",
        "before": run.before_sha,
        "after": run.sha,
        "ref": format!("refs/heads/{}", run.branch),
        "ref_protected": run.branch == "main",
        "checkout_sha": run.sha,
        "message": null,
        "user_id": run.actor.id,
        "user_name": run.author_name,
        "user_username": run.actor.login,
        "user_email": "",
        "user_avatar": format!("https://secure.gravatar.com/avatar/{}?s=80&d=identicon", &crate::rng::sha256_hex(&run.author_email)[..32]),
        "project_id": repo.id,
        "project": project(repo),
        "commits": [{
            "id": run.sha,
            "message": run.message,
            "title": title,
            "timestamp": iso(at),
            "url": format!("{}/-/commit/{}", repo.url(), run.sha),
            "author": {"name": run.author_name, "email": "[REDACTED]"},
            "added": [],
            "modified": ["main.tf"],
            "removed": [],
        }],
        "total_commits_count": 1,
        "push_options": {},
        "repository": {
            "name": repo.name,
            "url": format!("git@{GITLAB_HOST}:{}.git", repo.full_name),
            "description": repo.description,
            "homepage": repo.url(),
            "git_http_url": format!("{}.git", repo.url()),
            "git_ssh_url": format!("git@{GITLAB_HOST}:{}.git", repo.full_name),
            "visibility_level": 0,
        },
    });
    ctx.sink.line(FILE, at, &body);
}

fn build_entry(job: &JobFact, run: &RunFact) -> Value {
    let started = (job.conclusion != "skipped").then(|| gitlab_time(job.started));
    json!({
        "id": job.id,
        "stage": job.stage,
        "name": job.name,
        "status": status(job.conclusion),
        "created_at": gitlab_time(job.created),
        "started_at": started,
        "finished_at": gitlab_time(job.completed),
        "duration": secs(job.started, job.completed),
        "queued_duration": secs(job.created, job.started),
        "failure_reason": if job.conclusion == "failure" { json!("script_failure") } else { Value::Null },
        "when": if job.env == Some("production") { "manual" } else { "on_success" },
        "manual": job.env == Some("production"),
        "allow_failure": false,
        "user": user(run),
        "runner": runner(job),
        "artifacts_file": {"filename": null, "size": null},
        "environment": environment(job),
    })
}

/// A Pipeline Hook in a given status (`running` or the final one).
pub(crate) fn pipeline(
    ctx: &mut Ctx,
    org: &Org,
    run: &RunFact,
    jobs: &[JobFact],
    final_state: bool,
) {
    let repo = &org.repos[run.repo];
    let mut stages: Vec<String> = Vec::new();
    for j in jobs {
        if !stages.contains(&j.stage) {
            stages.push(j.stage.clone());
        }
    }
    let (state, at, finished) = if final_state {
        (
            status(run.conclusion),
            run.completed,
            json!(gitlab_time(run.completed)),
        )
    } else {
        ("running", run.started, Value::Null)
    };
    let builds: Vec<Value> = jobs.iter().map(|j| build_entry(j, run)).collect();
    let body = json!({
        "object_kind": "pipeline",
        "object_attributes": {
            "id": run.id,
            "iid": run.number,
            "name": null,
            "ref": run.branch,
            "tag": run.tag,
            "sha": run.sha,
            "before_sha": run.before_sha,
            "source": run.event,
            "status": state,
            "detailed_status": if state == "success" { "passed" } else { state },
            "stages": stages,
            "created_at": gitlab_time(run.created),
            "finished_at": finished,
            "duration": if final_state { json!((run.completed - run.started).num_seconds()) } else { Value::Null },
            "queued_duration": (run.started - run.created).num_seconds(),
            "variables": [],
            "url": format!("{}/-/pipelines/{}", repo.url(), run.id),
        },
        "merge_request": null,
        "user": user(run),
        "project": project(repo),
        "commit": {
            "id": run.sha,
            "message": run.message,
            "title": run.message.lines().next().unwrap_or_default(),
            "timestamp": iso(run.created),
            "url": format!("{}/-/commit/{}", repo.url(), run.sha),
            "author": {"name": run.author_name, "email": run.author_email},
        },
        "builds": builds,
    });
    ctx.sink.line(FILE, at, &body);
}

/// A Job Hook (`object_kind: build`) for a job's final state.
pub(crate) fn build(ctx: &mut Ctx, org: &Org, run: &RunFact, job: &JobFact) {
    let repo = &org.repos[run.repo];
    let started = (job.conclusion != "skipped").then(|| gitlab_time(job.started));
    let body = json!({
        "object_kind": "build",
        "ref": run.branch,
        "tag": run.tag,
        "before_sha": run.before_sha,
        "sha": run.sha,
        "build_id": job.id,
        "build_name": job.name,
        "build_stage": job.stage,
        "build_status": status(job.conclusion),
        "build_created_at": gitlab_time(job.created),
        "build_started_at": started,
        "build_finished_at": gitlab_time(job.completed),
        "build_duration": secs(job.started, job.completed),
        "build_queued_duration": secs(job.created, job.started),
        "build_allow_failure": false,
        "build_failure_reason": if job.conclusion == "failure" { "script_failure" } else { "unknown_failure" },
        "retries_count": 0,
        "pipeline_id": run.id,
        "project_id": repo.id,
        "project_name": format!("Acme Platform / {}", repo.name),
        "user": user(run),
        "commit": {
            "id": run.id,
            "name": null,
            "sha": run.sha,
            "message": run.message,
            "author_name": run.author_name,
            "author_email": run.author_email,
            "author_url": format!("https://{GITLAB_HOST}/{}", run.actor.login),
            "status": "running",
            "duration": null,
            "started_at": gitlab_time(run.started),
            "finished_at": null,
        },
        "repository": {
            "name": repo.name,
            "url": format!("git@{GITLAB_HOST}:{}.git", repo.full_name),
            "description": repo.description,
            "homepage": repo.url(),
            "git_http_url": format!("{}.git", repo.url()),
            "git_ssh_url": format!("git@{GITLAB_HOST}:{}.git", repo.full_name),
            "visibility_level": 0,
        },
        "project": project(repo),
        "runner": runner(job),
        "environment": environment(job),
    });
    ctx.sink.line(FILE, job.completed, &body);
}

/// A Deployment Hook.
pub(crate) fn deployment(
    ctx: &mut Ctx,
    org: &Org,
    run: &RunFact,
    job: &JobFact,
    deployment_id: u64,
    state: &str,
    at: DateTime<Utc>,
) {
    let repo = &org.repos[run.repo];
    let env = job.env.unwrap_or("staging");
    let body = json!({
        "object_kind": "deployment",
        "status": state,
        "status_changed_at": at.format("%Y-%m-%d %H:%M:%S +0000").to_string(),
        "deployment_id": deployment_id,
        "deployable_id": job.id,
        "deployable_url": format!("{}/-/jobs/{}", repo.url(), job.id),
        "environment": env,
        "environment_tier": env,
        "environment_slug": env,
        "environment_external_url": format!("https://{}{}.acme.io", if env == "production" { "" } else { "staging." }, repo.name),
        "project": project(repo),
        "short_sha": &run.sha[..8],
        "user": user(run),
        "user_url": format!("https://{GITLAB_HOST}/{}", run.actor.login),
        "commit_url": format!("{}/-/commit/{}", repo.url(), run.sha),
        "commit_title": run.message.lines().next().unwrap_or_default(),
        "ref": run.branch,
    });
    ctx.sink.line(FILE, at, &body);
}
