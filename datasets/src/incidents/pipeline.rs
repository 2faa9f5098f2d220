//! Run-shaped incidents: runs at odd hours or from forks, deploys that skip
//! their controls, jobs whose resources, destinations, registries, policy
//! results or findings leave their own profile, and jobs on runners that
//! should not run them.

use chrono::{DateTime, Duration, Utc};

use super::{night_moment, outsider, person, repo_where, work_moment};
use crate::facts::RunnerAssign;
use crate::formats::audit;
use crate::labels::{Evidence, Incident, IncidentKind, ev};
use crate::org::{Lang, Provider, RepoKind, Role, WfKind};
use crate::rng::{between, index, pick};
use crate::sim::{self, RunIds, RunPlan, World, run};

pub(super) fn local(w: &World, person: usize, t: DateTime<Utc>) -> String {
    let h = w.org.people[person].tz.local_hour(t);
    format!(
        "{:02}:{:02}",
        h.floor() as u32,
        ((h.fract() * 60.0).round() as u32).min(59)
    )
}

pub(super) fn incident(
    kind: IncidentKind,
    ids: &RunIds,
    at: DateTime<Utc>,
    entity: String,
    description: String,
    evidence: Vec<Evidence>,
) -> Incident {
    Incident {
        kind,
        start: ids.started.unwrap_or(at).min(at),
        end: ids.completed.unwrap_or(at),
        entity,
        description,
        evidence,
    }
}

pub(super) fn run_evidence(ids: &RunIds, format: &'static str) -> Vec<Evidence> {
    let mut out = vec![ev(format, ids.run_id)];
    out.extend(ids.jobs.iter().map(|(_, id, _)| ev(format, id)));
    out
}

pub(super) fn tweaked_job(ids: &RunIds) -> (String, u64, String) {
    ids.tweaked_job()
        .cloned()
        .or_else(|| ids.jobs.first().cloned())
        .unwrap_or_default()
}

/// A plan for a person's run of a repository's workflow.
pub(super) fn person_plan(
    w: &World,
    person: usize,
    repo: usize,
    kind: WfKind,
    event: &'static str,
    at: DateTime<Utc>,
    branch: &str,
) -> Option<RunPlan> {
    let wf = w.org.repos[repo].workflow(kind)?;
    let p = &w.org.people[person];
    let message = match kind {
        WfKind::Deploy => format!("Deploy {}", w.org.repos[repo].name),
        _ => "fix: handle empty responses".to_owned(),
    };
    let mut pl = sim::plan(
        repo,
        wf,
        event,
        p.actor(),
        sim::author(p),
        at,
        branch,
        message,
    );
    pl.tweak.succeed = true;
    Some(pl)
}

pub(crate) fn off_hours_run(w: &mut World, i: usize) -> Option<Incident> {
    if !i.is_multiple_of(2)
        && let Some(ri) = w
            .org
            .repos
            .iter()
            .position(|r| r.provider == Provider::GitLab && r.kind == RepoKind::Infra)
    {
        let pi = person(
            w,
            &[Role::Developer, Role::Lead],
            Some(w.org.repos[ri].team),
        );
        let at = night_moment(w, pi);
        let p = w.org.people[pi].clone();
        let mut pl = sim::plan(
            ri,
            0,
            "web",
            sim::gitlab_actor(&p),
            sim::author(&p),
            at,
            "main",
            "Run pipeline".into(),
        );
        pl.tweak.succeed = true;
        let ids = run::run(&w.org, &mut w.ctx, pl);
        let description = format!(
            "{} started a {} pipeline by hand at {} local time; they never work at night.",
            p.login,
            w.org.repos[ri].full_name,
            local(w, pi, at)
        );
        return Some(incident(
            IncidentKind::OffHoursRun,
            &ids,
            at,
            p.login.clone(),
            description,
            run_evidence(&ids, "gitlab"),
        ));
    }
    let ri = repo_where(w, |r| matches!(r.kind, RepoKind::Service(_)))?;
    let pi = person(w, &[Role::Developer], Some(w.org.repos[ri].team));
    let at = night_moment(w, pi);
    let mut pl = person_plan(w, pi, ri, WfKind::Deploy, "workflow_dispatch", at, "main")?;
    pl.env = Some("staging");
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let login = w.org.people[pi].login.clone();
    let description = format!(
        "{login} dispatched the Deploy workflow of {} at {} local time; their runs all fall in their working day.",
        w.org.repos[ri].full_name,
        local(w, pi, at)
    );
    Some(incident(
        IncidentKind::OffHoursRun,
        &ids,
        at,
        login,
        description,
        run_evidence(&ids, "github_webhook"),
    ))
}

pub(crate) fn fork_pull_request_target(w: &mut World, i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| r.public && r.workflow(WfKind::Ci).is_some())?;
    let pi = person(w, &[Role::Developer], None);
    let at = work_moment(w, pi, i.is_multiple_of(2));
    let fork = outsider(w);
    let ci = w.org.repos[ri].workflow(WfKind::Ci)?;
    let branch = pick(
        &mut w.ctx.rng,
        &["patch-1", "fix-typo", "update-readme", "main"],
    )
    .to_string();
    let author = (
        fork.login.clone(),
        format!("{}+{}@users.noreply.github.com", fork.id, fork.login),
    );
    let mut pl = sim::plan(
        ri,
        ci,
        "pull_request_target",
        fork.clone(),
        author,
        at,
        &branch,
        "Update build script".into(),
    );
    pl.fork = Some(fork.clone());
    pl.pr = true;
    pl.tweak.succeed = true;
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let repo = &w.org.repos[ri].full_name;
    let description = format!(
        "First-time contributor {} opened a pull request from the fork {}/{}; the CI workflow, which checks out the pull request code, ran on pull_request_target with the base repository's permissions — in {repo} only the Labeler ever ran on that trigger.",
        fork.login, fork.login, w.org.repos[ri].name
    );
    Some(incident(
        IncidentKind::ForkPullRequestTarget,
        &ids,
        at,
        repo.clone(),
        description,
        run_evidence(&ids, "github_webhook"),
    ))
}

pub(crate) fn resource_anomaly(w: &mut World, i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| matches!(r.kind, RepoKind::Service(_)))?;
    let pi = person(
        w,
        &[Role::Developer, Role::Lead],
        Some(w.org.repos[ri].team),
    );
    let at = work_moment(w, pi, true);
    let mut pl = person_plan(w, pi, ri, WfKind::Ci, "push", at, "main")?;
    pl.push = true;
    let (job, m, what) = if i.is_multiple_of(2) {
        (
            "build",
            [4.5, 10.0, 1.6, 2.5],
            "ran 4-5x longer at full CPU on every core",
        )
    } else {
        (
            "test",
            [1.4, 1.5, 3.2, 90.0],
            "sent ~90x its usual egress and used 3x its memory",
        )
    };
    pl.tweak.job = Some(job.to_owned());
    pl.tweak.resource = Some(m);
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (name, id, span) = tweaked_job(&ids);
    let entity = format!("{}/{name}", w.org.repos[ri].full_name);
    let description = format!(
        "The {name} job of {} {what} compared with its own history.",
        w.org.repos[ri].full_name
    );
    let evidence = vec![ev("github_webhook", id), ev("otlp", span)];
    Some(incident(
        IncidentKind::ResourceAnomaly,
        &ids,
        at,
        entity,
        description,
        evidence,
    ))
}

pub(crate) fn new_egress_destination(w: &mut World, i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| {
        matches!(r.kind, RepoKind::Service(_) | RepoKind::Library)
    })?;
    let pi = person(w, &[Role::Developer], Some(w.org.repos[ri].team));
    let at = work_moment(w, pi, true);
    let mut pl = person_plan(w, pi, ri, WfKind::Ci, "pull_request", at, "fix/flaky-tests")?;
    pl.pr = true;
    pl.push = true;
    let host = [
        "storage.googleapis.com",
        "content.dropboxapi.com",
        "api.backblazeb2.com",
    ][i % 3];
    pl.tweak.job = Some("test".into());
    pl.tweak.extra_clients = vec![(host.to_owned(), "PUT")];
    pl.tweak.resource = Some([1.1, 1.1, 1.0, 6.0]);
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (name, _, _) = tweaked_job(&ids);
    let entity = format!("{}/{name}", w.org.repos[ri].full_name);
    let description = format!(
        "The {name} job of {} uploaded data to {host}, a destination none of its runs ever contacted.",
        w.org.repos[ri].full_name
    );
    let evidence = ids.clients_extra.iter().map(|s| ev("otlp", s)).collect();
    Some(incident(
        IncidentKind::NewEgressDestination,
        &ids,
        at,
        entity,
        description,
        evidence,
    ))
}

pub(crate) fn new_dependency_registry(w: &mut World, i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| {
        matches!(r.lang, Lang::Node | Lang::Python | Lang::Go)
            && matches!(r.kind, RepoKind::Service(_) | RepoKind::Library)
    })?;
    let pi = person(w, &[Role::Developer], Some(w.org.repos[ri].team));
    let at = work_moment(w, pi, i.is_multiple_of(2));
    let mut pl = person_plan(
        w,
        pi,
        ri,
        WfKind::Ci,
        "pull_request",
        at,
        "chore/lockfile-refresh",
    )?;
    pl.pr = true;
    pl.push = true;
    let host = match w.org.repos[ri].lang {
        Lang::Node => "registry.npmmirror.com",
        Lang::Python => "pypi.tuna.tsinghua.edu.cn",
        _ => "goproxy.cn",
    };
    pl.tweak.job = Some("lint".into());
    pl.tweak.extra_clients = vec![(host.to_owned(), "GET")];
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (name, _, _) = tweaked_job(&ids);
    let entity = format!("{}/{name}", w.org.repos[ri].full_name);
    let description = format!(
        "The {name} job of {} fetched packages from {host}; it only ever used its usual registries.",
        w.org.repos[ri].full_name
    );
    let evidence = ids.clients_extra.iter().map(|s| ev("otlp", s)).collect();
    Some(incident(
        IncidentKind::NewDependencyRegistry,
        &ids,
        at,
        entity,
        description,
        evidence,
    ))
}

pub(crate) fn finding_spike(w: &mut World, i: usize) -> Option<Incident> {
    let (ri, ids, at, tool) = if i.is_multiple_of(2) {
        let ri = repo_where(w, |r| r.service.is_some())?;
        let bot = w.org.bots.release.clone();
        let pi = person(w, &[Role::Lead], Some(w.org.repos[ri].team));
        let at = work_moment(w, pi, true);
        let wf = w.org.repos[ri].workflow(WfKind::Release)?;
        let mut pl = sim::plan(
            ri,
            wf,
            "push",
            bot.clone(),
            sim::bot_author(&bot),
            at,
            "v2.0.0",
            "chore(release): v2.0.0".into(),
        );
        pl.tag = true;
        pl.tweak.succeed = true;
        pl.tweak.job = Some("trivy-scan".into());
        pl.tweak.extra_findings = between(&mut w.ctx.rng, 14, 24) as usize;
        (ri, run::run(&w.org, &mut w.ctx, pl), at, "trivy")
    } else {
        let ri = repo_where(w, |r| {
            r.workflow(WfKind::CodeQl).is_some() && matches!(r.kind, RepoKind::Service(_))
        })?;
        let pi = person(w, &[Role::Developer], Some(w.org.repos[ri].team));
        let at = work_moment(w, pi, true);
        let mut pl = person_plan(w, pi, ri, WfKind::CodeQl, "push", at, "main")?;
        pl.tweak.extra_findings = between(&mut w.ctx.rng, 8, 13) as usize;
        (ri, run::run(&w.org, &mut w.ctx, pl), at, "codeql")
    };
    let repo = &w.org.repos[ri];
    let file = format!(
        "sarif/{tool}-{}-{}.sarif",
        repo.name,
        ids.started.unwrap_or(at).format("%Y-%m-%d")
    );
    let evidence = ids
        .findings
        .iter()
        .map(|f| Evidence {
            format: "sarif",
            native_id: f.clone(),
            file: Some(file.clone()),
        })
        .collect();
    let description = format!(
        "A {tool} scan of {} reported {} new results at once; its scans usually repeat a handful of known ones.",
        repo.full_name,
        ids.findings.len()
    );
    Some(incident(
        IncidentKind::FindingSpike,
        &ids,
        at,
        repo.full_name.clone(),
        description,
        evidence,
    ))
}

pub(crate) fn new_self_hosted_runner(w: &mut World, i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| matches!(r.kind, RepoKind::Service(_)))?;
    let pi = person(
        w,
        &[Role::Developer, Role::Lead],
        Some(w.org.repos[ri].team),
    );
    let at = work_moment(w, pi, true);
    let p = w.org.people[pi].clone();
    let first = p.name.split(' ').next().unwrap_or("dev").to_lowercase();
    let (name, labels, ip) = if i.is_multiple_of(2) {
        (
            "ci-builder-04".to_owned(),
            vec!["self-hosted", "linux", "x64"],
            "10.20.7.44".to_owned(),
        )
    } else {
        (
            format!("{first}-mbp"),
            vec!["self-hosted", "macOS", "ARM64"],
            p.ip.clone(),
        )
    };
    let runner = RunnerAssign {
        id: 90 + between(&mut w.ctx.rng, 0, 40) as u64,
        name: name.clone(),
        group_id: 1,
        group_name: "Default".into(),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        ip,
        hosted: false,
        ephemeral: false,
        gitlab_type: "",
    };
    let registered = at - Duration::minutes(between(&mut w.ctx.rng, 8, 40));
    let doc = audit::entry(
        &mut w.ctx,
        registered,
        "org.register_self_hosted_runner",
        &audit::Who::web(&p),
        None,
        serde_json::json!({"runner_id": runner.id, "runner_name": name, "runner_group_id": 1, "runner_group_name": "Default", "runner_labels": runner.labels}),
    );
    let mut pl = person_plan(
        w,
        pi,
        ri,
        WfKind::Ci,
        "pull_request",
        at,
        &format!("{}/build-cache", p.login),
    )?;
    pl.pr = true;
    pl.push = true;
    pl.tweak.job = Some("build".into());
    pl.tweak.runner = Some(runner);
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (_, job_id, span) = tweaked_job(&ids);
    let evidence = vec![
        ev("github_audit", doc),
        ev("github_webhook", job_id),
        ev("otlp", span),
    ];
    let description = format!(
        "{} registered a new persistent self-hosted runner {name} and a build of {} ran on it.",
        p.login, w.org.repos[ri].full_name
    );
    let mut inc = incident(
        IncidentKind::NewSelfHostedRunner,
        &ids,
        at,
        name,
        description,
        evidence,
    );
    inc.start = registered;
    Some(inc)
}

pub(crate) fn persistent_runner_with_secrets(w: &mut World, i: usize) -> Option<Incident> {
    let candidates: Vec<usize> = (0..w.org.repos.len())
        .filter(|r| {
            let repo = &w.org.repos[*r];
            repo.provider == Provider::GitHub
                && repo.created_day.is_none()
                && repo.workflows.iter().any(|wf| {
                    wf.kind == WfKind::Ci && wf.jobs.iter().any(|j| j.name == "integration-test")
                })
        })
        .collect();
    let (ri, job, extra, host) = if !i.is_multiple_of(2) && !candidates.is_empty() {
        let ri = candidates[index(&mut w.ctx.rng, candidates.len())];
        (ri, "integration-test", Vec::new(), 1usize)
    } else {
        let ri = w.org.repos.iter().position(|r| r.kind == RepoKind::Data)?;
        (
            ri,
            "test",
            vec!["secret/data/data/warehouse/loader-credentials".to_owned()],
            0usize,
        )
    };
    let pi = person(w, &[Role::Developer], Some(w.org.repos[ri].team));
    let at = work_moment(w, pi, true);
    let mut pl = person_plan(w, pi, ri, WfKind::Ci, "push", at, "main")?;
    pl.push = true;
    pl.tweak.job = Some(job.into());
    pl.tweak.extra_vault = extra;
    let runner = crate::sim::runners::assign_runner(
        &w.org,
        &mut w.ctx,
        crate::org::RunnerKind::Persistent(host),
        &[],
    );
    let name = runner.name.clone();
    pl.tweak.runner = Some(runner);
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (_, job_id, _) = tweaked_job(&ids);
    let mut evidence = vec![ev("github_webhook", job_id)];
    evidence.extend(
        ids.vault
            .iter()
            .chain(ids.vault_extra.iter())
            .skip(1)
            .map(|v| ev("vault_audit", v)),
    );
    let description = format!(
        "A {job} job of {} read Vault secrets while running on the persistent runner {name}, whose workspace outlives the job.",
        w.org.repos[ri].full_name
    );
    Some(incident(
        IncidentKind::PersistentRunnerWithSecrets,
        &ids,
        at,
        name,
        description,
        evidence,
    ))
}
