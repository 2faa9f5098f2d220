//! Organisation, access and configuration incidents: a token touching many
//! repositories within minutes, branch protection removed (and a deploy
//! slipped in meanwhile), audit logging or the 2FA requirement switched
//! off, and new long-lived credentials.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::{clamp, foreign_ip, person, repo_where, work_moment};
use crate::calendar::utc;
use crate::formats::cloudtrail::{self, Caller};
use crate::formats::{audit, github};
use crate::labels::{Incident, IncidentKind, ev};
use crate::org::{AWS_ACCOUNT, Provider, Role, WfKind};
use crate::rng::{aws_key, between, hashed_token, hex, index, uniform};
use crate::sim::{self, World, run, sso_session};

fn shuffled_github_repos(w: &mut World) -> Vec<usize> {
    let mut repos: Vec<usize> = w
        .org
        .repos_of(Provider::GitHub)
        .into_iter()
        .filter(|r| w.org.repos[*r].created_day.is_none())
        .collect();
    for k in (1..repos.len()).rev() {
        let j = index(&mut w.ctx.rng, k + 1);
        repos.swap(k, j);
    }
    repos
}

pub(crate) fn account_burst(w: &mut World, i: usize) -> Option<Incident> {
    let (who, entity, description_who, at) = if i.is_multiple_of(2) {
        let bot = w.org.bots.release.clone();
        let day = super::pick_day(w, true);
        let hour = uniform(&mut w.ctx.rng, 19.5, 22.5);
        let at = clamp(w, utc(w.date(day), hour));
        let ip = foreign_ip(w);
        let who = audit::Who::app(&bot, crate::sim::run::bot_token(&bot, at), Some(ip));
        (
            who,
            bot.login.clone(),
            format!("{} (installation token of the release app)", bot.login),
            at,
        )
    } else {
        let pi = person(w, &[Role::Developer], None);
        let at = work_moment(w, pi, true) + Duration::hours(2);
        let p = w.org.people[pi].clone();
        (
            audit::Who::git(&p),
            p.login.clone(),
            format!("{}'s OAuth token", p.login),
            clamp(w, at),
        )
    };
    let repos = shuffled_github_repos(w);
    let count = repos.len().min(between(&mut w.ctx.rng, 14, 19) as usize);
    let mut t = at;
    let mut evidence = Vec::new();
    for ri in repos.into_iter().take(count) {
        t += Duration::seconds(between(&mut w.ctx.rng, 6, 16));
        let repo = w.org.repos[ri].clone();
        evidence.push(ev(
            "github_audit",
            audit::git(&mut w.ctx, t, "git.clone", &who, &repo),
        ));
    }
    Some(Incident {
        kind: IncidentKind::AccountBurst,
        start: at,
        end: t,
        entity,
        description: format!(
            "{description_who} cloned {count} repositories within {} minutes; it normally touches one repository at a time.",
            (t - at).num_minutes().max(1)
        ),
        evidence,
    })
}

/// Removes protection from `main` of a repository; returns the audit id.
fn remove_protection(w: &mut World, ri: usize, pi: usize, at: DateTime<Utc>) -> String {
    let p = w.org.people[pi].clone();
    let repo = w.org.repos[ri].clone();
    let rule = w.ctx.rule_id(ri, repo.id);
    let doc = audit::entry(
        &mut w.ctx,
        at,
        "protected_branch.destroy",
        &audit::Who::web(&p),
        Some(&repo),
        json!({"name": "main"}),
    );
    github::protection_rule(&mut w.ctx, &repo, &p.actor(), "deleted", rule, at);
    doc
}

pub(crate) fn deploy_after_protection_removed(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |r| {
        r.service.is_some() && r.workflow(WfKind::Deploy).is_some()
    })?;
    let team = w.org.repos[ri].team;
    let pi = person(w, &[Role::Lead, Role::Developer], Some(team));
    let at = work_moment(w, pi, true);
    let doc = remove_protection(w, ri, pi, at);
    let p = w.org.people[pi].clone();
    let ci = w.org.repos[ri].workflow(WfKind::Ci)?;
    let push_at = at + Duration::minutes(between(&mut w.ctx.rng, 6, 20));
    let mut pl = sim::plan(
        ri,
        ci,
        "push",
        p.actor(),
        sim::author(&p),
        push_at,
        "main",
        "fix: bypass flaky check".into(),
    );
    pl.push = true;
    pl.tweak.succeed = true;
    run::run(&w.org, &mut w.ctx, pl);
    let deploy_at = push_at + Duration::minutes(between(&mut w.ctx.rng, 15, 35));
    let dw = w.org.repos[ri].workflow(WfKind::Deploy)?;
    let mut pl = sim::plan(
        ri,
        dw,
        "workflow_dispatch",
        p.actor(),
        sim::author(&p),
        deploy_at,
        "main",
        format!("Deploy {}", w.org.repos[ri].name),
    );
    pl.env = Some("production");
    pl.tweak.succeed = true;
    let lead = w.org.team_lead(team);
    let reviewer = if lead == pi {
        w.org.team_lead((team + 1) % crate::org::TEAMS.len())
    } else {
        lead
    };
    pl.reviewer = Some(w.org.people[reviewer].actor());
    let ids = run::run(&w.org, &mut w.ctx, pl);
    // Protection comes back a few hours later, as a new rule.
    let delay = Duration::hours(between(&mut w.ctx.rng, 2, 5));
    let back = clamp(w, deploy_at + delay);
    let repo = w.org.repos[ri].clone();
    let new_rule = w.ctx.ids.gh_rule.next(&mut w.ctx.rng, back);
    w.ctx.rules.insert(ri, new_rule);
    audit::entry(
        &mut w.ctx,
        back,
        "protected_branch.create",
        &audit::Who::web(&p),
        Some(&repo),
        json!({"name": "main"}),
    );
    github::protection_rule(&mut w.ctx, &repo, &p.actor(), "created", new_rule, back);
    let mut evidence = vec![ev("github_audit", doc)];
    evidence.extend(ids.deployments.iter().map(|d| ev("github_webhook", d)));
    Some(Incident {
        kind: IncidentKind::DeployAfterProtectionRemoved,
        start: at,
        end: ids.completed.unwrap_or(deploy_at),
        entity: repo.full_name.clone(),
        description: format!(
            "{} removed branch protection from main of {}, pushed straight to main and deployed to production before protection was restored.",
            p.login, repo.full_name
        ),
        evidence,
    })
}

pub(crate) fn branch_protection_removed(w: &mut World, _i: usize) -> Option<Incident> {
    let ri = repo_where(w, |_| true)?;
    let pi = person(w, &[Role::Lead, Role::Admin], None);
    let at = work_moment(w, pi, true) + Duration::hours(3);
    let at = clamp(w, at);
    let doc = remove_protection(w, ri, pi, at);
    Some(Incident {
        kind: IncidentKind::BranchProtectionRemoved,
        start: at,
        end: at,
        entity: w.org.repos[ri].full_name.clone(),
        description: format!(
            "{} deleted the protection rule of main in {}.",
            w.org.people[pi].login, w.org.repos[ri].full_name
        ),
        evidence: vec![ev("github_audit", doc)],
    })
}

pub(crate) fn audit_logging_disabled(w: &mut World, i: usize) -> Option<Incident> {
    let pi = person(w, &[Role::Admin, Role::Sre], None);
    let at = work_moment(w, pi, true);
    let p = w.org.people[pi].clone();
    if i.is_multiple_of(2) {
        let doc = audit::entry(
            &mut w.ctx,
            at,
            "audit_log_streaming.destroy",
            &audit::Who::web(&p),
            None,
            json!({"stream_type": "Amazon S3"}),
        );
        return Some(Incident {
            kind: IncidentKind::AuditLoggingDisabled,
            start: at,
            end: at,
            entity: crate::org::BUSINESS.into(),
            description: format!(
                "{} deleted the enterprise's audit-log stream to S3.",
                p.login
            ),
            evidence: vec![ev("github_audit", doc)],
        });
    }
    let session = sso_session(w, pi, at, "AdministratorAccess");
    let trail = format!("arn:aws:cloudtrail:us-east-1:{AWS_ACCOUNT}:trail/org-trail");
    let mut stop = cloudtrail::simple(
        "cloudtrail.amazonaws.com",
        "StopLogging",
        json!({"name": trail}),
        &p.ip,
        cloudtrail::UA_CONSOLE,
    );
    stop.read_only = false;
    let id = cloudtrail::record(&mut w.ctx, at, &Caller::Session(&session), stop);
    let delay = Duration::minutes(between(&mut w.ctx.rng, 25, 70));
    let back = clamp(w, at + delay);
    let mut start = cloudtrail::simple(
        "cloudtrail.amazonaws.com",
        "StartLogging",
        json!({"name": trail}),
        &p.ip,
        cloudtrail::UA_CONSOLE,
    );
    start.read_only = false;
    cloudtrail::record(&mut w.ctx, back, &Caller::Session(&session), start);
    Some(Incident {
        kind: IncidentKind::AuditLoggingDisabled,
        start: at,
        end: back,
        entity: "org-trail".into(),
        description: format!(
            "{} stopped CloudTrail logging of org-trail for {} minutes.",
            p.login,
            (back - at).num_minutes()
        ),
        evidence: vec![ev("cloudtrail", id)],
    })
}

pub(crate) fn twofa_requirement_disabled(w: &mut World, _i: usize) -> Option<Incident> {
    let pi = person(w, &[Role::Admin], None);
    let at = work_moment(w, pi, true);
    let p = w.org.people[pi].clone();
    let doc = audit::entry(
        &mut w.ctx,
        at,
        "org.disable_two_factor_requirement",
        &audit::Who::web(&p),
        None,
        json!({}),
    );
    let delay = Duration::minutes(between(&mut w.ctx.rng, 40, 180));
    let back = clamp(w, at + delay);
    audit::entry(
        &mut w.ctx,
        back,
        "org.enable_two_factor_requirement",
        &audit::Who::web(&p),
        None,
        json!({}),
    );
    Some(Incident {
        kind: IncidentKind::TwofaRequirementDisabled,
        start: at,
        end: back,
        entity: crate::org::ORG.into(),
        description: format!(
            "{} turned off the organisation's two-factor requirement and turned it back on {} minutes later.",
            p.login,
            (back - at).num_minutes()
        ),
        evidence: vec![ev("github_audit", doc)],
    })
}

pub(crate) fn new_long_lived_token(w: &mut World, i: usize) -> Option<Incident> {
    if i.is_multiple_of(2) {
        let pi = person(w, &[Role::Sre, Role::Admin], None);
        let at = work_moment(w, pi, true);
        let p = w.org.people[pi].clone();
        let user = w.org.iam_users.first()?.clone();
        let session = sso_session(w, pi, at, "AdministratorAccess");
        let key = aws_key(&mut w.ctx.rng, "AKIA");
        let mut call = cloudtrail::simple(
            "iam.amazonaws.com",
            "CreateAccessKey",
            json!({"userName": user.name}),
            &p.ip,
            cloudtrail::UA_CONSOLE,
        );
        call.read_only = false;
        call.response = json!({"accessKey": {"userName": user.name, "accessKeyId": key, "status": "Active", "createDate": at.format("%b %-d, %Y, %-I:%M:%S %p").to_string()}});
        let id = cloudtrail::record(&mut w.ctx, at, &Caller::Session(&session), call);
        return Some(Incident {
            kind: IncidentKind::NewLongLivedToken,
            start: at,
            end: at,
            entity: user.name.clone(),
            description: format!(
                "{} created a second long-lived access key for IAM user {}.",
                p.login, user.name
            ),
            evidence: vec![ev("cloudtrail", id)],
        });
    }
    let pi = person(w, &[Role::Developer, Role::Lead], None);
    let at = work_moment(w, pi, true);
    let p = w.org.people[pi].clone();
    let token = hashed_token(&format!("github_pat_{}", hex(&mut w.ctx.rng, 30)));
    let mut who = audit::Who::web(&p);
    who.token = None;
    let doc = audit::entry(
        &mut w.ctx,
        at,
        "personal_access_token.create",
        &who,
        None,
        json!({
            "hashed_token": token,
            "programmatic_access_type": "Fine-grained personal access token",
            "repository_selection": "all",
            "user": p.login,
            "user_id": p.id,
            "user_programmatic_access_name": "ci-migration",
        }),
    );
    Some(Incident {
        kind: IncidentKind::NewLongLivedToken,
        start: at,
        end: at,
        entity: p.login.clone(),
        description: format!(
            "{} created a fine-grained personal access token with access to all repositories and no expiry.",
            p.login
        ),
        evidence: vec![ev("github_audit", doc)],
    })
}
