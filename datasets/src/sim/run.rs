//! The run builder: turns a plan (repository, workflow, trigger, actor,
//! time, optional incident tweaks) into a complete pipeline run — jobs on
//! runners with their stable resource profiles and noise, outbound calls,
//! approvals and deployments, every side effect in other systems — and
//! renders it in every format that would see it. Normal activity and
//! incidents use the same builder, so injected runs look like real ones.

use chrono::{DateTime, Duration, Utc};

use super::effects;
use super::runners::{assign_runner, calls, requested_labels, stage_name};
use crate::ctx::Ctx;
use crate::facts::{DeployFact, JobFact, ReviewFact, RunFact, RunnerAssign};
use crate::formats::{audit, conftest, github, gitlab, otlp};
use crate::org::{Actor, EnvUse, JobSpec, Org, Provider, RunnerKind, When};
use crate::rng::{between, chance, hashed_token, hex, lognormal};

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct RunPlan {
    pub(crate) repo: usize,
    pub(crate) workflow: usize,
    pub(crate) event: &'static str,
    pub(crate) actor: Actor,
    /// Commit author (name, email).
    pub(crate) author: (String, String),
    pub(crate) at: DateTime<Utc>,
    pub(crate) branch: String,
    pub(crate) tag: bool,
    /// Target environment of a deploy run.
    pub(crate) env: Option<&'static str>,
    pub(crate) fork: Option<Actor>,
    pub(crate) pr: bool,
    pub(crate) message: String,
    /// Who approves a production deployment.
    pub(crate) reviewer: Option<Actor>,
    /// Whether a push precedes the run (webhook + audit `git.push`).
    pub(crate) push: bool,
    pub(crate) tweak: Tweak,
}

/// Deviations an incident asks for; the default is none.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tweak {
    /// Name prefix of the job the per-job tweaks apply to (else the first job).
    pub(crate) job: Option<String>,
    /// Multipliers of duration, CPU, memory and egress.
    pub(crate) resource: Option<[f64; 4]>,
    pub(crate) extra_clients: Vec<(String, &'static str)>,
    pub(crate) extra_vault: Vec<String>,
    pub(crate) denied_vault: Vec<String>,
    pub(crate) runner: Option<RunnerAssign>,
    pub(crate) skip_review: bool,
    pub(crate) big_bang: bool,
    pub(crate) conftest_failures: Option<usize>,
    pub(crate) extra_findings: usize,
    /// Force every job to succeed.
    pub(crate) succeed: bool,
}

/// Native ids of what a run produced, for labels.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunIds {
    pub(crate) run_id: u64,
    /// (job name, job id, OTLP `<traceId>:<spanId>`).
    pub(crate) jobs: Vec<(String, u64, String)>,
    /// Index into `jobs` of the tweaked job.
    pub(crate) tweaked: Option<usize>,
    pub(crate) vault: Vec<String>,
    pub(crate) vault_extra: Vec<String>,
    pub(crate) clients_extra: Vec<String>,
    pub(crate) deployments: Vec<u64>,
    pub(crate) statuses: Vec<u64>,
    pub(crate) k8s: Vec<String>,
    pub(crate) aws: Vec<String>,
    pub(crate) conftest: Vec<conftest::Outcome>,
    pub(crate) findings: Vec<String>,
    pub(crate) started: Option<DateTime<Utc>>,
    pub(crate) completed: Option<DateTime<Utc>>,
}

impl RunIds {
    /// `<traceId>:<spanId>` and id of the tweaked job.
    pub(crate) fn tweaked_job(&self) -> Option<&(String, u64, String)> {
        self.tweaked.and_then(|i| self.jobs.get(i))
    }
}

fn applies(spec: &JobSpec, plan: &RunPlan) -> bool {
    match spec.when {
        When::Always => true,
        When::DefaultBranch => plan.branch == "main",
        When::Env(env) => plan.env == Some(env),
    }
}

/// Builds and renders one run.
pub(crate) fn run(org: &Org, ctx: &mut Ctx, plan: RunPlan) -> RunIds {
    let repo = &org.repos[plan.repo];
    let wf = &repo.workflows[plan.workflow];
    let gh = repo.provider == Provider::GitHub;
    let id = if gh {
        ctx.ids.gh_run.next(&mut ctx.rng, plan.at)
    } else {
        ctx.ids.gl_pipeline.next(&mut ctx.rng, plan.at)
    };
    let mut run = RunFact {
        repo: plan.repo,
        workflow: plan.workflow,
        id,
        number: ctx.run_number(plan.repo, plan.workflow),
        attempt: 1,
        event: plan.event,
        branch: plan.branch.clone(),
        tag: plan.tag,
        sha: hex(&mut ctx.rng, 20),
        before_sha: hex(&mut ctx.rng, 20),
        message: plan.message.clone(),
        actor: plan.actor.clone(),
        author_name: plan.author.0.clone(),
        author_email: plan.author.1.clone(),
        fork: plan.fork.clone(),
        pr_number: plan.pr.then(|| between(&mut ctx.rng, 120, 4_800) as u64),
        check_suite_id: ctx.ids.gh_check_suite.next(&mut ctx.rng, plan.at),
        created: plan.at,
        started: plan.at,
        completed: plan.at,
        conclusion: "success",
        trace_id: otlp::trace_id(id, 1),
        span_id: otlp::run_span_id(id, 1),
    };
    if plan.push {
        push_events(org, ctx, &plan, &run);
    }

    let mut ids = RunIds {
        run_id: id,
        ..RunIds::default()
    };
    let specs: Vec<(usize, &JobSpec)> = wf
        .jobs
        .iter()
        .enumerate()
        .filter(|(_, s)| applies(s, &plan))
        .collect();
    let tweak_target = plan
        .tweak
        .job
        .as_ref()
        .and_then(|prefix| {
            specs
                .iter()
                .find(|(_, s)| s.name.starts_with(prefix.as_str()))
        })
        .or(specs.first())
        .map(|(i, _)| *i);
    let max_stage = specs.iter().map(|(_, s)| s.stage).max().unwrap_or(0);
    let mut jobs: Vec<JobFact> = Vec::new();
    let mut deploys: Vec<(usize, DeployFact)> = Vec::new();
    let mut gl_deploys: Vec<(usize, u64)> = Vec::new();
    let mut stage_start = plan.at + Duration::seconds(between(&mut ctx.rng, 2, 8));
    let mut failed = false;
    for stage in 0..=max_stage {
        let mut stage_end = stage_start;
        for (si, spec) in specs.iter().filter(|(_, s)| s.stage == stage) {
            let created = stage_start + Duration::milliseconds(between(&mut ctx.rng, 0, 2_500));
            let job_id = if gh {
                ctx.ids.gh_job.next(&mut ctx.rng, created)
            } else {
                ctx.ids.gl_build.next(&mut ctx.rng, created)
            };
            let env = match spec.env {
                EnvUse::FromRun => Some(plan.env.unwrap_or("staging")),
                EnvUse::Fixed(e) => Some(e),
                EnvUse::None => None,
            };
            let tweaked = Some(*si) == tweak_target;
            let labels = match (&plan.tweak.runner, tweaked) {
                (Some(r), true) => r.labels.clone(),
                _ => requested_labels(org, spec.runner, repo.lang == crate::org::Lang::Swift),
            };
            let mut job = JobFact {
                id: job_id,
                name: spec.name.clone(),
                created,
                started: created,
                completed: created,
                conclusion: "skipped",
                labels,
                runner: None,
                stage: stage_name(stage, &spec.name),
                steps: spec.steps.clone(),
                env,
                cpu_s: 0.0,
                mem_bytes: 0,
                egress_bytes: 0,
                span_id: otlp::job_span_id(job_id),
                clients: Vec::new(),
            };
            if failed {
                jobs.push(job);
                continue;
            }
            let runner = match (&plan.tweak.runner, tweaked) {
                (Some(r), true) => r.clone(),
                _ => assign_runner(org, ctx, spec.runner, &job.labels),
            };
            let queue_factor = match spec.runner {
                RunnerKind::Arc => 3.5,
                RunnerKind::Persistent(_) => 1.6,
                RunnerKind::GitlabShared => 2.2,
                _ => 1.0,
            };
            let queue =
                lognormal(&mut ctx.rng, spec.profile.queue_s * queue_factor, 0.6).min(900.0);
            let mut started = created + Duration::milliseconds((queue * 1000.0) as i64);
            let mut review = None;
            if gh && env == Some("production") && !plan.tweak.skip_review {
                let reviewer = plan
                    .reviewer
                    .clone()
                    .unwrap_or_else(|| org.people[org.team_lead(repo.team)].actor());
                let wait = lognormal(&mut ctx.rng, 420.0, 0.7).clamp(40.0, 5_400.0);
                let approved = created + Duration::seconds(wait as i64);
                review = Some(ReviewFact {
                    requested: created + Duration::seconds(2),
                    approved,
                    reviewer,
                });
                started = approved + Duration::milliseconds((queue * 1000.0) as i64);
            }
            let m = if tweaked {
                plan.tweak.resource.unwrap_or([1.0; 4])
            } else {
                [1.0; 4]
            };
            let p = spec.profile;
            let dur_s = (lognormal(&mut ctx.rng, p.dur_s, 0.22) * m[0]).max(3.0);
            job.started = started;
            job.completed = started + Duration::milliseconds((dur_s * 1000.0) as i64);
            let fails = !plan.tweak.succeed && chance(&mut ctx.rng, spec.fail_rate);
            job.conclusion = if fails { "failure" } else { "success" };
            job.cpu_s = dur_s * p.cores * lognormal(&mut ctx.rng, 1.0, 0.1) * m[1];
            job.mem_bytes = (lognormal(&mut ctx.rng, p.mem_mb, 0.08) * m[2] * 1_048_576.0) as u64;
            job.egress_bytes =
                (lognormal(&mut ctx.rng, p.egress_mb, 0.25) * m[3] * 1_000_000.0) as u64;
            let downloads: Vec<(String, &'static str)> = spec
                .downloads
                .iter()
                .map(|h| ((*h).to_owned(), "GET"))
                .collect();
            let uploads: Vec<(String, &'static str)> = spec
                .uploads
                .iter()
                .map(|(h, m)| ((*h).to_owned(), *m))
                .collect();
            job.clients = calls(
                ctx,
                job_id,
                &downloads,
                started,
                dur_s,
                true,
                job.egress_bytes,
                0,
            );
            job.clients.extend(calls(
                ctx,
                job_id,
                &uploads,
                started,
                dur_s,
                false,
                job.egress_bytes,
                downloads.len(),
            ));
            if tweaked && !plan.tweak.extra_clients.is_empty() {
                let first = job.clients.len();
                let extra = calls(
                    ctx,
                    job_id,
                    &plan.tweak.extra_clients,
                    started,
                    dur_s,
                    false,
                    job.egress_bytes,
                    first,
                );
                ids.clients_extra.extend(
                    extra
                        .iter()
                        .map(|c| format!("{}:{}", run.trace_id, c.span_id)),
                );
                job.clients.extend(extra);
            }
            job.clients.sort_by_key(|c| c.start);
            job.runner = Some(runner);

            if gh && env.is_some() {
                let strategy = repo.service.as_ref().map_or("rolling", |s| {
                    if tweaked && plan.tweak.big_bang {
                        "rolling"
                    } else {
                        s.strategy.as_str()
                    }
                });
                let d_id = ctx.ids.gh_deployment.next(&mut ctx.rng, created);
                let mut statuses = Vec::new();
                if review.is_some() {
                    statuses.push((
                        ctx.ids.gh_status.next(&mut ctx.rng, created),
                        "waiting",
                        created + Duration::seconds(1),
                    ));
                }
                let t = started + Duration::seconds(3);
                statuses.push((ctx.ids.gh_status.next(&mut ctx.rng, t), "in_progress", t));
                let final_state = if fails { "failure" } else { "success" };
                statuses.push((
                    ctx.ids.gh_status.next(&mut ctx.rng, job.completed),
                    final_state,
                    job.completed,
                ));
                ids.deployments.push(d_id);
                ids.statuses.extend(statuses.iter().map(|s| s.0));
                deploys.push((
                    jobs.len(),
                    DeployFact {
                        id: d_id,
                        env: env.unwrap_or("staging"),
                        strategy,
                        creator: plan.actor.clone(),
                        created,
                        statuses,
                        review,
                    },
                ));
            } else if env.is_some() {
                ctx.gl_deployment += between(&mut ctx.rng, 1, 4) as u64;
                gl_deploys.push((jobs.len(), ctx.gl_deployment));
                ids.deployments.push(ctx.gl_deployment);
            }
            effects::job_effects(org, ctx, &plan, &run, &job, spec, tweaked, &mut ids);
            if tweaked {
                ids.tweaked = Some(jobs.len());
            }
            stage_end = stage_end.max(job.completed);
            failed |= fails;
            jobs.push(job);
        }
        stage_start = stage_end + Duration::seconds(between(&mut ctx.rng, 1, 6));
    }
    run.started = jobs
        .iter()
        .filter(|j| j.runner.is_some())
        .map(|j| j.started)
        .min()
        .unwrap_or(plan.at);
    run.completed = jobs.iter().map(|j| j.completed).max().unwrap_or(plan.at)
        + Duration::seconds(between(&mut ctx.rng, 1, 5));
    run.conclusion = if jobs.iter().any(|j| j.conclusion == "failure") {
        "failure"
    } else {
        "success"
    };
    ids.started = Some(run.started);
    ids.completed = Some(run.completed);
    ids.jobs = jobs
        .iter()
        .map(|j| {
            (
                j.name.clone(),
                j.id,
                format!("{}:{}", run.trace_id, j.span_id),
            )
        })
        .collect();
    if ids.tweaked.is_none() {
        ids.tweaked =
            tweak_target.and_then(|t| jobs.iter().position(|j| j.name == wf.jobs[t].name));
    }

    if gh {
        github::run_events(ctx, org, &run);
        for (i, job) in jobs.iter().enumerate() {
            let deploy = deploys.iter().find(|(j, _)| *j == i).map(|(_, d)| d);
            github::job_events(ctx, org, &run, job, deploy);
            if let Some(d) = deploy {
                github::deployment_events(ctx, org, &run, job, d);
            }
            if let (Some(r), Some(spec)) =
                (&job.runner, wf.jobs.iter().find(|s| s.name == job.name))
            {
                prepared_job(ctx, org, &run, job, r, spec);
            }
        }
    } else {
        gitlab::pipeline(ctx, org, &run, &jobs, false);
        for (i, job) in jobs.iter().enumerate() {
            gitlab::build(ctx, org, &run, job);
            if let Some((_, dep_id)) = gl_deploys.iter().find(|(j, _)| *j == i) {
                gitlab::deployment(
                    ctx,
                    org,
                    &run,
                    job,
                    *dep_id,
                    "running",
                    job.started + Duration::seconds(2),
                );
                let state = if job.conclusion == "success" {
                    "success"
                } else {
                    "failed"
                };
                gitlab::deployment(ctx, org, &run, job, *dep_id, state, job.completed);
            }
        }
        gitlab::pipeline(ctx, org, &run, &jobs, true);
    }
    otlp::trace(ctx, org, &run, &jobs);
    ids
}

fn prepared_job(
    ctx: &mut Ctx,
    org: &Org,
    run: &RunFact,
    job: &JobFact,
    r: &RunnerAssign,
    spec: &JobSpec,
) {
    let repo = &org.repos[run.repo];
    let wf = &repo.workflows[run.workflow];
    let git_ref = if run.tag {
        format!("refs/tags/{}", run.branch)
    } else {
        format!("refs/heads/{}", run.branch)
    };
    audit::entry(
        ctx,
        job.started - Duration::seconds(1),
        "workflows.prepared_workflow_job",
        &audit::Who::system(&run.actor),
        Some(repo),
        serde_json::json!({
            "calling_workflow_refs": [],
            "calling_workflow_shas": [],
            "environment_name": job.env.unwrap_or(""),
            "is_hosted_runner": r.hosted,
            "job_name": job.name,
            "job_workflow_ref": format!("{}/{}@{git_ref}", repo.full_name, wf.path),
            "runner_group_id": r.group_id,
            "runner_group_name": r.group_name,
            "runner_id": r.id,
            "runner_labels": job.labels,
            "runner_name": r.name,
            "secrets_passed": spec.secrets_passed,
            "workflow_run_id": run.id,
        }),
    );
}

/// Hourly-rotating installation token of a GitHub App bot.
pub(crate) fn bot_token(actor: &Actor, at: DateTime<Utc>) -> String {
    hashed_token(&format!("ghs_{}_{}", actor.login, at.format("%Y%m%d%H")))
}

fn push_events(org: &Org, ctx: &mut Ctx, plan: &RunPlan, run: &RunFact) {
    let repo = &org.repos[plan.repo];
    let at = plan.at - Duration::seconds(between(&mut ctx.rng, 2, 9));
    match repo.provider {
        Provider::GitHub => {
            let git_ref = if plan.tag {
                format!("refs/tags/{}", plan.branch)
            } else {
                format!("refs/heads/{}", plan.branch)
            };
            let before = if plan.tag {
                "0".repeat(40)
            } else {
                run.before_sha.clone()
            };
            let after = run.sha.clone();
            github::push(
                ctx,
                repo,
                &plan.actor,
                (&plan.author.0, &plan.author.1),
                &git_ref,
                &before,
                &after,
                &plan.message,
                at,
            );
            let who = match org.people.iter().find(|p| p.login == plan.actor.login) {
                Some(p) => audit::Who::git(p),
                None => audit::Who::app(&plan.actor, bot_token(&plan.actor, at), None),
            };
            audit::git(ctx, at, "git.push", &who, repo);
        }
        Provider::GitLab => gitlab::push(ctx, org, run, at),
    }
}
