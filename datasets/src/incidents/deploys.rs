//! Deploy-shaped incidents: deploys from a non-default branch, without the
//! required approval, or without the canary rollout a service always uses,
//! and a spike of failing policy checks before deploys.

use chrono::Duration;

use super::pipeline::{incident, person_plan};
use super::{clamp, person, repo_where, work_moment};
use crate::labels::{Evidence, Incident, IncidentKind, ev};
use crate::org::{Role, Strategy, WfKind};
use crate::rng::between;
use crate::sim::{RunIds, World, run};

/// The Argo CD Application a production deploy synced (its history holds the sync).
fn production_app(w: &World, repo: usize) -> Option<Evidence> {
    let service = w.org.repos[repo].service.as_ref()?;
    let app = service.argo.iter().find(|a| a.env == "production")?;
    Some(ev("argocd", &app.uid))
}

pub(crate) fn non_default_branch_deploy(w: &mut World, i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| r.service.is_some())?;
    let team = w.org.repos[ri].team;
    let pi = person(w, &[Role::Developer], Some(team));
    let at = work_moment(w, pi, true);
    let login = w.org.people[pi].login.clone();
    let branch = if i.is_multiple_of(2) {
        format!("{login}/hotfix-timeouts")
    } else {
        "feat/retry-on-429".to_owned()
    };
    let mut pl = person_plan(w, pi, ri, WfKind::Deploy, "workflow_dispatch", at, &branch)?;
    pl.env = Some("production");
    pl.reviewer = Some(w.org.people[w.org.team_lead(team)].actor());
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let mut evidence: Vec<Evidence> = ids
        .deployments
        .iter()
        .map(|d| ev("github_webhook", d))
        .collect();
    evidence.push(ev("github_webhook", ids.run_id));
    evidence.extend(production_app(w, ri));
    let description = format!(
        "{login} deployed {} to production from branch {branch} instead of main.",
        w.org.repos[ri].full_name
    );
    Some(incident(
        IncidentKind::NonDefaultBranchDeploy,
        &ids,
        at,
        w.org.repos[ri].full_name.clone(),
        description,
        evidence,
    ))
}

pub(crate) fn policy_failure_spike(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| r.service.is_some())?;
    let team = w.org.repos[ri].team;
    let pi = person(w, &[Role::Developer, Role::Lead], Some(team));
    let first = work_moment(w, pi, true);
    let mut evidence = Vec::new();
    let mut last = RunIds::default();
    let runs = between(&mut w.ctx.rng, 3, 4);
    for k in 0..runs {
        let gap = Duration::minutes(k * between(&mut w.ctx.rng, 35, 70));
        let at = clamp(w, first + gap);
        let mut pl = person_plan(w, pi, ri, WfKind::Deploy, "push", at, "main")?;
        pl.env = Some("staging");
        pl.push = true;
        pl.tweak.job = Some("policy-check".into());
        pl.tweak.conftest_failures = Some(between(&mut w.ctx.rng, 3, 6) as usize);
        last = run::run(&w.org, &mut w.ctx, pl);
        for outcome in &last.conftest {
            evidence.push(Evidence {
                format: "conftest",
                native_id: outcome.filename.clone(),
                file: Some(outcome.file.clone()),
            });
        }
    }
    let repo = w.org.repos[ri].full_name.clone();
    let description = format!(
        "{runs} consecutive policy checks of {repo} failed 3-6 Conftest rules each; its checks almost never fail."
    );
    let mut inc = incident(
        IncidentKind::PolicyFailureSpike,
        &last,
        first,
        repo,
        description,
        evidence,
    );
    inc.start = first;
    Some(inc)
}

pub(crate) fn deploy_without_approval(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| r.service.is_some())?;
    let pi = person(
        w,
        &[Role::Developer, Role::Lead],
        Some(w.org.repos[ri].team),
    );
    let at = work_moment(w, pi, true);
    let mut pl = person_plan(w, pi, ri, WfKind::Deploy, "workflow_dispatch", at, "main")?;
    pl.env = Some("production");
    pl.tweak.skip_review = true;
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let mut evidence: Vec<Evidence> = ids
        .deployments
        .iter()
        .map(|d| ev("github_webhook", d))
        .collect();
    evidence.extend(ids.statuses.iter().map(|s| ev("github_webhook", s)));
    let description = format!(
        "{} deployed {} to production without the environment's required review; every other production deploy was approved.",
        w.org.people[pi].login, w.org.repos[ri].full_name
    );
    Some(incident(
        IncidentKind::DeployWithoutApproval,
        &ids,
        at,
        w.org.repos[ri].full_name.clone(),
        description,
        evidence,
    ))
}

pub(crate) fn big_bang_deploy(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| {
        r.service
            .as_ref()
            .is_some_and(|s| s.strategy == Strategy::Canary)
    })?;
    let team = w.org.repos[ri].team;
    let pi = person(w, &[Role::Developer], Some(team));
    let at = work_moment(w, pi, true);
    let mut pl = person_plan(w, pi, ri, WfKind::Deploy, "workflow_dispatch", at, "main")?;
    pl.env = Some("production");
    pl.reviewer = Some(w.org.people[w.org.team_lead(team)].actor());
    pl.tweak.job = Some("deploy".into());
    pl.tweak.big_bang = true;
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let mut evidence: Vec<Evidence> = ids
        .deployments
        .iter()
        .map(|d| ev("github_webhook", d))
        .collect();
    evidence.extend(ids.k8s.iter().map(|k| ev("k8s_audit", k)));
    evidence.extend(production_app(w, ri));
    let description = format!(
        "{} went to production as a rolling update replacing every pod at once (maxUnavailable 100%) instead of its usual canary rollout.",
        w.org.repos[ri].full_name
    );
    Some(incident(
        IncidentKind::BigBangDeploy,
        &ids,
        at,
        w.org.repos[ri].full_name.clone(),
        description,
        evidence,
    ))
}
