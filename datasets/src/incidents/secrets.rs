//! Secret-access incidents: a secret read by a new consumer, at night, in
//! bulk or with a burst of denials; a static AWS key used where OIDC is the
//! norm; Vault used with a root token.

use chrono::{DateTime, Duration, Utc};

use super::{clamp, night_moment, person, repo_where, work_moment};
use crate::formats::cloudtrail::{self, Caller};
use crate::formats::vault;
use crate::labels::{Evidence, Incident, IncidentKind, ev};
use crate::org::{HOSTED_RUNNER_PREFIXES, RepoKind, Role, TEAMS, WfKind};
use crate::rng::{between, index, pick};
use crate::sim::{self, RunIds, World, run};

fn vault_evidence(ids: &[String]) -> Vec<Evidence> {
    ids.iter().map(|id| ev("vault_audit", id)).collect()
}

fn span(ids: &RunIds, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (ids.started.unwrap_or(at), ids.completed.unwrap_or(at))
}

/// Every KV path a service reads or is read for, across the organisation.
fn service_paths(w: &World, except_team: Option<usize>) -> Vec<String> {
    w.org
        .repos
        .iter()
        .filter(|r| r.created_day.is_none() && except_team.is_none_or(|t| r.team != t))
        .filter_map(|r| r.service.as_ref())
        .flat_map(|s| s.vault_runtime.iter().cloned())
        .collect()
}

fn ci_plan(
    w: &mut World,
    ri: usize,
    weekday: bool,
) -> Option<(crate::sim::RunPlan, DateTime<Utc>, usize)> {
    let pi = person(w, &[Role::Developer], Some(w.org.repos[ri].team));
    let at = work_moment(w, pi, weekday);
    let wf = w.org.repos[ri].workflow(WfKind::Ci)?;
    let p = w.org.people[pi].clone();
    let mut pl = sim::plan(
        ri,
        wf,
        "push",
        p.actor(),
        sim::author(&p),
        at,
        "main",
        "test: extend fixtures".into(),
    );
    pl.push = true;
    pl.tweak.succeed = true;
    Some((pl, at, pi))
}

pub(crate) fn secret_new_consumer(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| {
        matches!(
            r.kind,
            RepoKind::Service(_) | RepoKind::Library | RepoKind::Docs
        )
    })?;
    let paths = service_paths(w, Some(w.org.repos[ri].team));
    let path = paths.get(index(&mut w.ctx.rng, paths.len()))?.clone();
    let (mut pl, at, _) = ci_plan(w, ri, true)?;
    pl.tweak.job = Some("test".into());
    pl.tweak.extra_vault = vec![path.clone()];
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (start, end) = span(&ids, at);
    Some(Incident {
        kind: IncidentKind::SecretNewConsumer,
        start,
        end,
        entity: path.clone(),
        description: format!(
            "CI of {} read {path}, a secret that only its owning service and deploys had ever read.",
            w.org.repos[ri].full_name
        ),
        evidence: vault_evidence(&ids.vault_extra),
    })
}

pub(crate) fn secret_off_hours_read(w: &mut World, _i: usize) -> Option<Incident> {
    let pi = person(w, &[Role::Lead], None);
    let at = night_moment(w, pi);
    let p = w.org.people[pi].clone();
    let team = TEAMS[p.team].0;
    let apps: Vec<String> = w
        .org
        .repos
        .iter()
        .filter(|r| r.team == p.team && r.service.is_some() && r.created_day.is_none())
        .map(|r| r.name.clone())
        .collect();
    let app = apps
        .get(index(&mut w.ctx.rng, apps.len().max(1)))
        .cloned()
        .unwrap_or_else(|| "api-gateway".to_owned());
    let token = sim_human_token(w, pi, at);
    vault::login(&mut w.ctx, at, "oidc", "engineer", &token, &p.ip);
    let mut ids = Vec::new();
    let mut t = at;
    for name in ["database", "api-keys"] {
        t += Duration::seconds(between(&mut w.ctx.rng, 20, 120));
        let path = format!("secret/data/{team}/{app}/{name}");
        ids.push(vault::call(
            &mut w.ctx,
            t,
            &token,
            "read",
            &path,
            vault::secret_keys(&path),
            &p.ip,
            false,
        ));
    }
    let local = p.tz.local_hour(at);
    Some(Incident {
        kind: IncidentKind::SecretOffHoursRead,
        start: at,
        end: t,
        entity: format!("secret/data/{team}/{app}/database"),
        description: format!(
            "{} read the production secrets of {app} by hand at {:02}:{:02} local time; people read them only during the working day.",
            p.login,
            local.floor() as u32,
            ((local.fract() * 60.0) as u32).min(59)
        ),
        evidence: vault_evidence(&ids),
    })
}

fn sim_human_token(w: &mut World, person: usize, at: DateTime<Utc>) -> crate::facts::VaultToken {
    crate::sim::human_token(w, person, at)
}

pub(crate) fn secret_bulk_read(w: &mut World, i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| matches!(r.kind, RepoKind::Service(_)))?;
    let mut paths = service_paths(w, None);
    paths.push("secret/data/platform/argocd/ci-deployer-token".to_owned());
    paths.push("secret/data/platform/release/cosign-key".to_owned());
    let (mut pl, at, _) = ci_plan(w, ri, i.is_multiple_of(2))?;
    pl.event = "pull_request";
    pl.pr = true;
    pl.branch = "chore/update-test-env".into();
    pl.tweak.job = Some("test".into());
    pl.tweak.extra_vault = paths.clone();
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (start, end) = span(&ids, at);
    Some(Incident {
        kind: IncidentKind::SecretBulkRead,
        start,
        end,
        entity: w.org.repos[ri].full_name.clone(),
        description: format!(
            "One CI token of {} listed the KV mount and read {} secrets of every team within a minute.",
            w.org.repos[ri].full_name,
            paths.len()
        ),
        evidence: vault_evidence(&ids.vault_extra),
    })
}

pub(crate) fn secret_denied_burst(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| {
        matches!(r.kind, RepoKind::Service(_) | RepoKind::Library)
    })?;
    let mut paths = service_paths(w, Some(w.org.repos[ri].team));
    paths.truncate(between(&mut w.ctx.rng, 9, 14) as usize);
    let (mut pl, at, _) = ci_plan(w, ri, true)?;
    pl.tweak.job = Some("lint".into());
    pl.tweak.denied_vault = paths.clone();
    let ids = run::run(&w.org, &mut w.ctx, pl);
    let (start, end) = span(&ids, at);
    Some(Incident {
        kind: IncidentKind::SecretDeniedBurst,
        start,
        end,
        entity: w.org.repos[ri].full_name.clone(),
        description: format!(
            "A CI token of {} was denied {} reads of other teams' secrets in a row.",
            w.org.repos[ri].full_name,
            paths.len()
        ),
        evidence: vault_evidence(&ids.vault_extra),
    })
}

pub(crate) fn static_key_where_oidc(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| r.service.is_some())?;
    let service = w.org.repos[ri].service.clone()?;
    let user = w.org.iam_users.first()?.clone();
    let pi = person(w, &[Role::Developer], Some(w.org.repos[ri].team));
    let at = work_moment(w, pi, true);
    let prefix = pick(&mut w.ctx.rng, HOSTED_RUNNER_PREFIXES);
    let ip = format!(
        "{prefix}.{}.{}",
        between(&mut w.ctx.rng, 0, 255),
        between(&mut w.ctx.rng, 1, 254)
    );
    let mut t = at;
    let mut ids = Vec::new();
    let calls = [
        cloudtrail::simple(
            "sts.amazonaws.com",
            "GetCallerIdentity",
            serde_json::json!({}),
            &ip,
            cloudtrail::UA_CLI,
        ),
        cloudtrail::get_secret(&service.aws_secrets[0], &ip, cloudtrail::UA_CLI, false),
    ];
    for call in calls {
        t += Duration::seconds(between(&mut w.ctx.rng, 2, 9));
        ids.push(cloudtrail::record(
            &mut w.ctx,
            t,
            &Caller::User(&user),
            call,
        ));
    }
    Some(Incident {
        kind: IncidentKind::StaticKeyWhereOidc,
        start: at,
        end: t,
        entity: service.aws_secrets[0].clone(),
        description: format!(
            "{} was read with the long-lived key of IAM user {} from a GitHub-hosted runner; it is otherwise only read by {}'s OIDC deploy role.",
            service.aws_secrets[0], user.name, service.app
        ),
        evidence: ids.iter().map(|id| ev("cloudtrail", id)).collect(),
    })
}

pub(crate) fn vault_root_token(w: &mut World, i: usize) -> Option<Incident> {
    let pi = person(w, &[Role::Sre, Role::Admin], None);
    let at = if i.is_multiple_of(2) {
        night_moment(w, pi)
    } else {
        work_moment(w, pi, true)
    };
    let at = clamp(w, at);
    let issued = at - Duration::minutes(between(&mut w.ctx.rng, 3, 25));
    let token = vault::token(
        &mut w.ctx.rng,
        "root".into(),
        vec!["root".into()],
        None,
        String::new(),
        0,
        issued,
    );
    let ip = format!("10.20.1.{}", between(&mut w.ctx.rng, 5, 40));
    let mut ids = Vec::new();
    let mut t = at;
    let target = w
        .org
        .repos
        .iter()
        .find(|r| r.service.is_some())
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let steps: Vec<(&str, String)> = vec![
        ("read", "sys/auth".to_owned()),
        ("update", format!("sys/policies/acl/ci-{target}")),
        (
            "read",
            "secret/data/payments/payments-service/database".to_owned(),
        ),
    ];
    for (op, path) in steps {
        t += Duration::seconds(between(&mut w.ctx.rng, 15, 200));
        ids.push(vault::call(
            &mut w.ctx,
            t,
            &token,
            op,
            &path,
            vault::secret_keys(&path),
            &ip,
            false,
        ));
    }
    Some(Incident {
        kind: IncidentKind::VaultRootToken,
        start: at,
        end: t,
        entity: "root".into(),
        description: format!(
            "A root token was used from {ip} to change the ci-{target} policy and read a production database secret."
        ),
        evidence: vault_evidence(&ids),
    })
}
