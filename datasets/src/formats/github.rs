//! GitHub webhook payloads (`github-webhooks/<event>.ndjson`): workflow_run,
//! workflow_job, deployment, deployment_status, deployment_review, push,
//! branch_protection_rule and installation, trimmed of URL fields but with
//! the real names and types of every field kept.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::{iso, iso_ms};
use crate::ctx::Ctx;
use crate::facts::{DeployFact, JobFact, RunFact};
use crate::org::{Actor, ORG, ORG_ID, Org, Repo};

fn file(event: &str) -> String {
    format!("github-webhooks/{event}.ndjson")
}

/// `sender`, `actor`, `creator` objects.
pub(crate) fn user(actor: &Actor) -> Value {
    json!({
        "login": actor.login,
        "id": actor.id,
        "type": if actor.bot { "Bot" } else { "User" },
        "html_url": format!("https://github.com/{}", actor.login.trim_end_matches("[bot]")),
    })
}

pub(crate) fn organization() -> Value {
    json!({"login": ORG, "id": ORG_ID, "description": "Acme engineering"})
}

/// The trimmed `repository` object.
pub(crate) fn repository(repo: &Repo) -> Value {
    json!({
        "id": repo.id,
        "name": repo.name,
        "full_name": repo.full_name,
        "private": !repo.public,
        "owner": {"login": ORG, "id": ORG_ID, "type": "Organization"},
        "html_url": repo.url(),
        "description": repo.description,
        "fork": false,
        "created_at": iso(repo.created_at),
        "default_branch": "main",
        "visibility": if repo.public { "public" } else { "private" },
    })
}

fn short_repo(repo: &Repo) -> Value {
    json!({
        "id": repo.id,
        "name": repo.name,
        "full_name": repo.full_name,
        "private": !repo.public,
        "owner": {"login": ORG, "id": ORG_ID, "type": "Organization"},
        "fork": false,
    })
}

fn head_repo(repo: &Repo, fork: Option<&Actor>) -> Value {
    match fork {
        Some(owner) => json!({
            "id": 900_000_000 + (repo.id ^ owner.id) % 90_000_000,
            "name": repo.name,
            "full_name": format!("{}/{}", owner.login, repo.name),
            "private": false,
            "owner": user(owner),
            "fork": true,
        }),
        None => short_repo(repo),
    }
}

fn workflow_obj(org: &Org, run: &RunFact) -> Value {
    let repo = &org.repos[run.repo];
    let wf = &repo.workflows[run.workflow];
    json!({
        "id": wf.id,
        "name": wf.name,
        "path": wf.path,
        "state": "active",
        "created_at": iso_ms(repo.created_at),
        "updated_at": iso_ms(repo.created_at + Duration::days(30)),
    })
}

/// The `workflow_run` object in a given state.
pub(crate) fn workflow_run(
    org: &Org,
    run: &RunFact,
    status: &str,
    conclusion: Option<&str>,
    updated: DateTime<Utc>,
) -> Value {
    let repo = &org.repos[run.repo];
    let wf = &repo.workflows[run.workflow];
    let pull_requests = match (run.pr_number, &run.fork) {
        (Some(number), None) => json!([{
            "id": 2_870_000_000u64 + number * 7919 % 1_000_000,
            "number": number,
            "head": {"ref": run.branch, "sha": run.sha, "repo": {"id": repo.id, "name": repo.name}},
            "base": {"ref": "main", "sha": run.before_sha, "repo": {"id": repo.id, "name": repo.name}},
        }]),
        _ => json!([]),
    };
    let title = run.message.lines().next().unwrap_or_default();
    let committer = if run.event == "push" && !run.actor.bot {
        json!({"name": "GitHub", "email": "noreply@github.com"})
    } else {
        json!({"name": run.author_name, "email": run.author_email})
    };
    json!({
        "id": run.id,
        "name": wf.name,
        "head_branch": run.branch,
        "head_sha": run.sha,
        "path": wf.path,
        "display_title": title,
        "run_number": run.number,
        "event": run.event,
        "status": status,
        "conclusion": conclusion,
        "workflow_id": wf.id,
        "check_suite_id": run.check_suite_id,
        "html_url": format!("{}/actions/runs/{}", repo.url(), run.id),
        "pull_requests": pull_requests,
        "created_at": iso(run.created),
        "updated_at": iso(updated),
        "actor": user(&run.actor),
        "run_attempt": run.attempt,
        "run_started_at": iso(run.created),
        "triggering_actor": user(&run.actor),
        "head_commit": {
            "id": run.sha,
            "tree_id": crate::rng::sha256_hex(&run.sha)[..40].to_owned(),
            "message": run.message,
            "timestamp": iso(run.created - Duration::seconds(40)),
            "author": {"name": run.author_name, "email": run.author_email},
            "committer": committer,
        },
        "repository": short_repo(repo),
        "head_repository": head_repo(repo, run.fork.as_ref()),
    })
}

fn envelope(org: &Org, run: &RunFact, mut body: Value, sender: &Actor) -> Value {
    let repo = &org.repos[run.repo];
    if let Some(map) = body.as_object_mut() {
        map.insert("repository".into(), repository(repo));
        map.insert("organization".into(), organization());
        map.insert("sender".into(), user(sender));
    }
    body
}

/// `workflow_run` requested / in_progress / completed.
pub(crate) fn run_events(ctx: &mut Ctx, org: &Org, run: &RunFact) {
    let states = [
        ("requested", "queued", None, run.created),
        ("in_progress", "in_progress", None, run.started),
        (
            "completed",
            "completed",
            Some(run.conclusion),
            run.completed,
        ),
    ];
    for (action, status, conclusion, at) in states {
        let body = json!({
            "action": action,
            "workflow": workflow_obj(org, run),
            "workflow_run": workflow_run(org, run, status, conclusion, at),
        });
        let payload = envelope(org, run, body, &run.actor);
        ctx.sink.line(&file("workflow_run"), at, &payload);
    }
}

fn steps(job: &JobFact, upto: usize) -> Value {
    let mut names = vec!["Set up job", "Run actions/checkout@v4"];
    names.extend(job.steps.iter().copied());
    names.push("Post Run actions/checkout@v4");
    names.push("Complete job");
    let total = (job.completed - job.started).num_milliseconds().max(1);
    let main = names.len() - 3;
    let mut out = Vec::new();
    let mut at = job.started;
    for (i, name) in names.iter().enumerate().take(upto) {
        let share = match i {
            0 => total / 40,
            1 => total / 20,
            n if n == names.len() - 2 => total / 60,
            n if n == names.len() - 1 => total / 100,
            _ => total * 8 / 10 / (main.max(1) as i64),
        };
        let end = (at + Duration::milliseconds(share)).min(job.completed);
        let conclusion = if job.conclusion == "failure" && i + 3 == names.len() {
            "failure"
        } else {
            "success"
        };
        out.push(json!({
            "name": name,
            "status": "completed",
            "conclusion": conclusion,
            "number": i + 1,
            "started_at": iso_ms(at),
            "completed_at": iso_ms(end),
        }));
        at = end;
    }
    Value::Array(out)
}

/// The `workflow_job` object in a given action.
fn workflow_job(org: &Org, run: &RunFact, job: &JobFact, action: &str) -> Value {
    let repo = &org.repos[run.repo];
    let wf = &repo.workflows[run.workflow];
    let assigned = matches!(action, "in_progress" | "completed") && job.conclusion != "skipped";
    let runner = job.runner.as_ref().filter(|_| assigned);
    let (status, conclusion, completed_at) = match action {
        "completed" => ("completed", Some(job.conclusion), Some(iso(job.completed))),
        other => (other, None, None),
    };
    let step_list = match action {
        "completed" if job.conclusion != "skipped" => steps(job, usize::MAX),
        "in_progress" => json!([{
            "name": "Set up job", "status": "in_progress", "conclusion": null, "number": 1,
            "started_at": iso(job.started), "completed_at": null,
        }]),
        _ => json!([]),
    };
    let started = if assigned { job.started } else { job.created };
    json!({
        "id": job.id,
        "run_id": run.id,
        "workflow_name": wf.name,
        "head_branch": run.branch,
        "run_attempt": run.attempt,
        "head_sha": run.sha,
        "html_url": format!("{}/actions/runs/{}/job/{}", repo.url(), run.id, job.id),
        "status": status,
        "conclusion": conclusion,
        "created_at": iso(job.created),
        "started_at": iso(started),
        "completed_at": completed_at,
        "name": job.name,
        "steps": step_list,
        "labels": job.labels,
        "runner_id": runner.map(|r| r.id),
        "runner_name": runner.map(|r| r.name.clone()),
        "runner_group_id": runner.map(|r| r.group_id),
        "runner_group_name": runner.map(|r| r.group_name.clone()),
    })
}

/// `workflow_job` queued (or waiting) / in_progress / completed.
pub(crate) fn job_events(
    ctx: &mut Ctx,
    org: &Org,
    run: &RunFact,
    job: &JobFact,
    deploy: Option<&DeployFact>,
) {
    if job.conclusion == "skipped" {
        let body = json!({"action": "completed", "workflow_job": workflow_job(org, run, job, "completed")});
        ctx.sink.line(
            &file("workflow_job"),
            job.completed,
            &envelope(org, run, body, &run.actor),
        );
        return;
    }
    let waiting = deploy.is_some_and(|d| d.review.is_some());
    let mut queued =
        json!({"action": "queued", "workflow_job": workflow_job(org, run, job, "queued")});
    if let (Some(d), Some(map)) = (deploy, queued.as_object_mut()) {
        map.insert("deployment".into(), deployment_obj(org, run, d, d.created));
    }
    ctx.sink.line(
        &file("workflow_job"),
        job.created,
        &envelope(org, run, queued, &run.actor),
    );
    if let (true, Some(d)) = (waiting, deploy) {
        let mut body =
            json!({"action": "waiting", "workflow_job": workflow_job(org, run, job, "waiting")});
        if let Some(map) = body.as_object_mut() {
            map.insert("deployment".into(), deployment_obj(org, run, d, d.created));
        }
        let at = job.created + Duration::seconds(1);
        ctx.sink.line(
            &file("workflow_job"),
            at,
            &envelope(org, run, body, &run.actor),
        );
    }
    for (action, at) in [("in_progress", job.started), ("completed", job.completed)] {
        let body = json!({"action": action, "workflow_job": workflow_job(org, run, job, action)});
        ctx.sink.line(
            &file("workflow_job"),
            at,
            &envelope(org, run, body, &run.actor),
        );
    }
}

fn actions_app() -> Value {
    json!({
        "id": 15368,
        "slug": "github-actions",
        "owner": {"login": "github", "id": 9919, "type": "Organization"},
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2025-03-07T16:35:00Z",
    })
}

fn deployment_obj(org: &Org, run: &RunFact, d: &DeployFact, updated: DateTime<Utc>) -> Value {
    let repo = &org.repos[run.repo];
    json!({
        "url": format!("https://api.github.com/repos/{}/deployments/{}", repo.full_name, d.id),
        "id": d.id,
        "sha": run.sha,
        "ref": run.branch,
        "task": "deploy",
        "payload": {"strategy": d.strategy},
        "original_environment": d.env,
        "environment": d.env,
        "description": null,
        "creator": user(&d.creator),
        "created_at": iso(d.created),
        "updated_at": iso(updated),
        "transient_environment": false,
        "production_environment": d.env == "production",
        "performed_via_github_app": actions_app(),
    })
}

fn short_run(org: &Org, run: &RunFact, status: &str, at: DateTime<Utc>) -> Value {
    let repo = &org.repos[run.repo];
    json!({
        "id": run.id,
        "name": repo.workflows[run.workflow].name,
        "head_branch": run.branch,
        "head_sha": run.sha,
        "run_number": run.number,
        "event": run.event,
        "status": status,
        "conclusion": null,
        "workflow_id": repo.workflows[run.workflow].id,
        "run_attempt": run.attempt,
        "created_at": iso(run.created),
        "updated_at": iso(at),
        "actor": user(&run.actor),
        "triggering_actor": user(&run.actor),
    })
}

/// deployment, deployment_review and deployment_status events of a deploy job.
pub(crate) fn deployment_events(
    ctx: &mut Ctx,
    org: &Org,
    run: &RunFact,
    job: &JobFact,
    d: &DeployFact,
) {
    let body = json!({
        "action": "created",
        "deployment": deployment_obj(org, run, d, d.created),
        "workflow": workflow_obj(org, run),
        "workflow_run": short_run(org, run, "in_progress", d.created),
    });
    ctx.sink.line(
        &file("deployment"),
        d.created,
        &envelope(org, run, body, &d.creator),
    );
    if let Some(review) = &d.review {
        let team = org.repos[run.repo].team;
        let reviewers = json!([{
            "type": "Team",
            "reviewer": {
                "name": format!("{}-leads", crate::org::TEAMS[team].0),
                "id": 7_400_000 + team as u64 * 1_301,
                "slug": format!("{}-leads", crate::org::TEAMS[team].0),
                "privacy": "closed",
                "permission": "pull",
            },
        }]);
        let job_run = |status: &str, at: DateTime<Utc>| {
            json!({
                "id": job.id,
                "name": job.name,
                "status": status,
                "conclusion": null,
                "created_at": iso(job.created),
                "updated_at": iso(at),
                "environment": d.env,
            })
        };
        let requested = json!({
            "action": "requested",
            "workflow_run": workflow_run(org, run, "waiting", None, review.requested),
            "since": iso(review.requested),
            "workflow_job_run": job_run("waiting", review.requested),
            "environment": d.env,
            "reviewers": reviewers,
            "requestor": user(&run.actor),
        });
        ctx.sink.line(
            &file("deployment_review"),
            review.requested,
            &envelope(org, run, requested, &run.actor),
        );
        let approved = json!({
            "action": "approved",
            "approver": user(&review.reviewer),
            "comment": "",
            "since": iso(review.requested),
            "environment": d.env,
            "reviewers": reviewers,
            "workflow_run": workflow_run(org, run, "waiting", None, review.approved),
            "workflow_job_run": job_run("waiting", review.approved),
            "workflow_job_runs": [job_run("waiting", review.approved)],
        });
        ctx.sink.line(
            &file("deployment_review"),
            review.approved,
            &envelope(org, run, approved, &review.reviewer),
        );
    }
    let repo = &org.repos[run.repo];
    for (id, state, at) in &d.statuses {
        let body = json!({
            "action": "created",
            "deployment_status": {
                "id": id,
                "state": state,
                "creator": user(&org.bots.actions),
                "description": "",
                "environment": d.env,
                "target_url": format!("{}/actions/runs/{}/job/{}", repo.url(), run.id, job.id),
                "log_url": format!("{}/actions/runs/{}/job/{}", repo.url(), run.id, job.id),
                "created_at": iso(*at),
                "updated_at": iso(*at),
                "performed_via_github_app": actions_app(),
            },
            "deployment": deployment_obj(org, run, d, *at),
            "workflow": workflow_obj(org, run),
            "workflow_run": short_run(org, run, "in_progress", *at),
        });
        ctx.sink.line(
            &file("deployment_status"),
            *at,
            &envelope(org, run, body, &org.bots.actions),
        );
    }
}

/// A `push` event.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push(
    ctx: &mut Ctx,
    repo: &Repo,
    sender: &Actor,
    author: (&str, &str),
    git_ref: &str,
    before: &str,
    after: &str,
    message: &str,
    at: DateTime<Utc>,
) {
    let commit = json!({
        "id": after,
        "tree_id": crate::rng::sha256_hex(after)[..40].to_owned(),
        "distinct": true,
        "message": message,
        "timestamp": iso(at - Duration::seconds(30)),
        "url": format!("{}/commit/{after}", repo.url()),
        "author": {"name": author.0, "email": author.1, "username": sender.login},
        "committer": {"name": author.0, "email": author.1, "username": sender.login},
        "added": [],
        "removed": [],
        "modified": [format!("src/{}.go", &after[..6])],
    });
    let mut repository = repository(repo);
    if let Some(map) = repository.as_object_mut() {
        // Push payloads carry these two as epoch seconds, unlike every other event.
        map.insert("created_at".into(), json!(repo.created_at.timestamp()));
        map.insert("pushed_at".into(), json!(at.timestamp()));
    }
    let body = json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "repository": repository,
        "pusher": {"name": sender.login, "email": author.1},
        "organization": organization(),
        "sender": user(sender),
        "created": before.starts_with("000000"),
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("{}/compare/{}...{}", repo.url(), &before[..12], &after[..12]),
        "commits": [commit.clone()],
        "head_commit": commit,
    });
    ctx.sink.line(&file("push"), at, &body);
}

/// The protection settings of `main`, strict or relaxed.
fn rule_settings(id: u64, repo: &Repo, at: DateTime<Utc>, reviews: u32) -> Value {
    json!({
        "id": id,
        "repository_id": repo.id,
        "name": "main",
        "created_at": iso(at),
        "updated_at": iso(at),
        "pull_request_reviews_enforcement_level": "non_admins",
        "required_approving_review_count": reviews,
        "dismiss_stale_reviews_on_push": true,
        "require_code_owner_review": false,
        "authorized_dismissal_actors_only": false,
        "ignore_approvals_from_contributors": false,
        "required_status_checks": ["CI / lint", "CI / test"],
        "required_status_checks_enforcement_level": "non_admins",
        "strict_required_status_checks_policy": true,
        "signature_requirement_enforcement_level": "off",
        "linear_history_requirement_enforcement_level": "off",
        "admin_enforced": false,
        "allow_force_pushes_enforcement_level": "off",
        "allow_deletions_enforcement_level": "off",
        "merge_queue_enforcement_level": "off",
        "required_deployments_enforcement_level": "off",
        "required_conversation_resolution_level": "off",
        "authorized_actors_only": false,
        "authorized_actor_names": [],
    })
}

/// A `branch_protection_rule` event (created, edited with `changes`, deleted).
pub(crate) fn protection_rule(
    ctx: &mut Ctx,
    repo: &Repo,
    sender: &Actor,
    action: &str,
    rule_id: u64,
    at: DateTime<Utc>,
) {
    let mut body = json!({
        "action": action,
        "rule": rule_settings(rule_id, repo, at, if action == "edited" { 2 } else { 1 }),
        "repository": repository(repo),
        "organization": organization(),
        "sender": user(sender),
    });
    if let (true, Some(map)) = (action == "edited", body.as_object_mut()) {
        map.insert(
            "changes".into(),
            json!({"required_approving_review_count": {"from": 1}}),
        );
    }
    ctx.sink.line(&file("branch_protection_rule"), at, &body);
}

/// An `installation` created event for a GitHub App installed by an admin.
pub(crate) fn installation(
    ctx: &mut Ctx,
    repos: &[&Repo],
    sender: &Actor,
    app: (&str, u64),
    at: DateTime<Utc>,
) {
    let body = json!({
        "action": "created",
        "installation": {
            "id": 61_000_000 + app.1 % 1_000_000,
            "account": {"login": ORG, "id": ORG_ID, "type": "Organization"},
            "repository_selection": "selected",
            "app_id": app.1,
            "app_slug": app.0,
            "target_id": ORG_ID,
            "target_type": "Organization",
            "permissions": {"checks": "write", "contents": "read", "metadata": "read", "pull_requests": "write", "statuses": "write"},
            "events": ["pull_request", "push"],
            "created_at": at.timestamp(),
            "updated_at": at.timestamp(),
            "single_file_name": null,
            "suspended_at": null,
            "suspended_by": null,
        },
        "repositories": repos.iter().map(|r| json!({"id": r.id, "name": r.name, "full_name": r.full_name, "private": !r.public})).collect::<Vec<_>>(),
        "sender": user(sender),
    });
    ctx.sink.line(&file("installation"), at, &body);
}
