//! Background life outside pipelines: running services reading their Vault
//! secrets through Kubernetes auth, engineers using Vault through OIDC,
//! External Secrets syncing Kubernetes secrets, security tooling and
//! engineers in AWS, routine organisation settings changes in the audit
//! log, a new repository created mid-period (cold start) and a GitHub App
//! installed by an admin.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, Weekday};
use serde_json::json;

use super::World;
use super::effects::stable_uuid;
use crate::calendar::{is_weekend, utc, work_time};
use crate::formats::cloudtrail::{self, Caller, Session};
use crate::formats::{audit, github, k8s, vault};
use crate::org::{AWS_ACCOUNT, Provider, Role, TEAMS};
use crate::rng::{aws_key, between, chance, index, pick, poisson, uniform};

/// Background of day `day`.
pub(crate) fn day(w: &mut World, day: u32) {
    services(w, day);
    engineers_in_vault(w, day);
    aws_noise(w, day);
    settings_changes(w, day);
    cold_start(w, day);
}

/// One-off background events.
pub(crate) fn once(w: &mut World) {
    let admins = w.org.admins();
    let Some(&admin) = admins.first() else { return };
    let p = w.org.people[admin].clone();
    let date = w.date(1.min(w.ctx.days - 1));
    let at = work_time(&mut w.ctx.rng, p.tz, date, p.hours);
    let repos: Vec<usize> = w
        .org
        .repos_of(Provider::GitHub)
        .into_iter()
        .filter(|i| w.org.repos[*i].public || i % 3 == 0)
        .collect();
    let refs: Vec<&crate::org::Repo> = repos.iter().map(|i| &w.org.repos[*i]).collect();
    github::installation(&mut w.ctx, &refs, &p.actor(), ("codecov", 254), at);
    let names: Vec<&str> = refs.iter().map(|r| r.full_name.as_str()).collect();
    let ids: Vec<u64> = refs.iter().map(|r| r.id).collect();
    audit::entry(
        &mut w.ctx,
        at + Duration::seconds(1),
        "integration_installation.create",
        &audit::Who::web(&p),
        None,
        json!({"integration": "Codecov", "name": "Codecov", "repository_selection": "selected", "repositories_added": ids, "repositories_added_names": names}),
    );
}

/// Running services: a Kubernetes-auth login per pod start, reads every
/// six hours; External Secrets refreshes the Kubernetes copies.
fn services(w: &mut World, day: u32) {
    let date = w.date(day);
    for ri in 0..w.org.repos.len() {
        let repo = &w.org.repos[ri];
        let Some(service) = repo.service.clone() else {
            continue;
        };
        if !repo.exists_on(day) {
            continue;
        }
        let pod_ip = format!("10.42.{}.{}", 1 + ri % 14, between(&mut w.ctx.rng, 2, 250));
        let ns = service.namespace("production");
        let mut md = BTreeMap::new();
        md.insert("role".to_owned(), service.app.clone());
        md.insert("service_account_name".to_owned(), service.app.clone());
        md.insert("service_account_namespace".to_owned(), ns.clone());
        md.insert(
            "service_account_uid".to_owned(),
            stable_uuid(&format!("sa-{}", service.app)),
        );
        md.insert("service_account_secret_name".to_owned(), String::new());
        let login_at = utc(date, uniform(&mut w.ctx.rng, 0.0, 5.5));
        let token = vault::token(
            &mut w.ctx.rng,
            format!("kubernetes-{ns}-{}", service.app),
            vec!["default".to_owned(), format!("app-{}", service.app)],
            Some(md),
            stable_uuid(&format!("entity-k8s-{}", service.app)),
            86_400,
            login_at,
        );
        vault::login(
            &mut w.ctx,
            login_at,
            "kubernetes",
            &service.app,
            &token,
            &pod_ip,
        );
        for slot in 0..4 {
            let at = login_at + Duration::minutes(2 + slot * 360 + between(&mut w.ctx.rng, 0, 20));
            for path in &service.vault_runtime {
                let t = at + Duration::milliseconds(between(&mut w.ctx.rng, 50, 900));
                vault::call(
                    &mut w.ctx,
                    t,
                    &token,
                    "read",
                    path,
                    vault::secret_keys(path),
                    &pod_ip,
                    false,
                );
            }
            let name = format!("{}-secrets", service.app);
            let call = k8s::Call {
                verb: "get",
                resource: "secrets",
                api_group: "",
                api_version: "v1",
                namespace: &ns,
                name: &name,
                user: k8s::ESO,
                groups: k8s::ESO_GROUPS,
                source_ip: "10.42.3.18",
                user_agent: "external-secrets/v0.19.2 (linux/amd64) kubernetes/$Format",
                code: 200,
                request_object: None,
                reason: "RBAC: allowed by ClusterRoleBinding \"external-secrets-controller\" of ClusterRole \"external-secrets-controller\" to ServiceAccount \"external-secrets/external-secrets\"",
            };
            let t = at + Duration::seconds(between(&mut w.ctx.rng, 5, 50));
            k8s::event(&mut w.ctx, t, call);
        }
    }
}

/// Leads, SREs and security engineers look at secrets in working hours.
fn engineers_in_vault(w: &mut World, day: u32) {
    let date = w.date(day);
    if is_weekend(date) {
        return;
    }
    for pi in 0..w.org.people.len() {
        let p = w.org.people[pi].clone();
        let rate = match p.role {
            Role::Sre => 0.5,
            Role::Security => 0.4,
            Role::Lead => 0.2,
            _ => 0.0,
        };
        if !chance(&mut w.ctx.rng, rate) {
            continue;
        }
        let at = work_time(&mut w.ctx.rng, p.tz, date, p.hours);
        if !w.in_period(at) {
            continue;
        }
        let token = human_token(w, pi, at);
        vault::login(&mut w.ctx, at, "oidc", "engineer", &token, &p.ip);
        let team = TEAMS[p.team].0;
        let apps: Vec<String> = w
            .org
            .repos
            .iter()
            .filter(|r| r.team == p.team && r.service.is_some())
            .map(|r| r.name.clone())
            .collect();
        let mut t = at + Duration::seconds(between(&mut w.ctx.rng, 10, 90));
        vault::call(
            &mut w.ctx,
            t,
            &token,
            "list",
            &format!("secret/metadata/{team}/"),
            &["database", "api-keys"],
            &p.ip,
            false,
        );
        if let Some(app) = apps.get(index(&mut w.ctx.rng, apps.len().max(1))) {
            t += Duration::seconds(between(&mut w.ctx.rng, 5, 60));
            let path = format!("secret/data/{team}/{app}/api-keys");
            vault::call(
                &mut w.ctx,
                t,
                &token,
                "read",
                &path,
                vault::secret_keys(&path),
                &p.ip,
                false,
            );
        }
    }
}

/// The Vault token of a person logged in through OIDC.
pub(crate) fn human_token(
    w: &mut World,
    person: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> crate::facts::VaultToken {
    let p = &w.org.people[person];
    let mut md = BTreeMap::new();
    md.insert("email".to_owned(), p.email.clone());
    md.insert("role".to_owned(), "engineer".to_owned());
    let team = TEAMS[p.team].0;
    let (display, policies, entity) = (
        format!("oidc-{}", p.email),
        vec![
            "default".to_owned(),
            format!("team-{team}"),
            "engineer".to_owned(),
        ],
        stable_uuid(&format!("entity-{}", p.login)),
    );
    vault::token(
        &mut w.ctx.rng,
        display,
        policies,
        Some(md),
        entity,
        28_800,
        at,
    )
}

/// An SSO console session of a person in AWS.
pub(crate) fn sso_session(
    w: &mut World,
    person: usize,
    at: chrono::DateTime<chrono::Utc>,
    permission_set: &str,
) -> Session {
    let email = w.org.people[person].email.clone();
    Session {
        role: format!(
            "aws-reserved/sso.amazonaws.com/AWSReservedSSO_{permission_set}_3f2a8c1d9e7b4a60"
        ),
        session_name: email,
        key: aws_key(&mut w.ctx.rng, "ASIA"),
        created: at - Duration::minutes(between(&mut w.ctx.rng, 2, 50)),
        web: None,
    }
}

fn aws_noise(w: &mut World, day: u32) {
    let date = w.date(day);
    // The security posture scanner's nightly pass.
    let at = utc(date, 0.2 + uniform(&mut w.ctx.rng, 0.0, 0.1));
    let scanner = Session {
        role: "security-posture-scanner".to_owned(),
        session_name: "posture-scan".to_owned(),
        key: aws_key(&mut w.ctx.rng, "ASIA"),
        created: at - Duration::seconds(5),
        web: None,
    };
    let ua = "Boto3/1.40.21 md/Botocore#1.40.21 ua/2.1 os/linux#6.1.147 md/arch#x86_64 lang/python#3.12.11 md/pyimpl#CPython exec-env/AWS_ECS_FARGATE";
    let mut t = at;
    for (source, name, request) in [
        (
            "cloudtrail.amazonaws.com",
            "DescribeTrails",
            json!({"includeShadowTrails": true}),
        ),
        (
            "cloudtrail.amazonaws.com",
            "GetTrailStatus",
            json!({"name": format!("arn:aws:cloudtrail:us-east-1:{AWS_ACCOUNT}:trail/org-trail")}),
        ),
        (
            "cloudtrail.amazonaws.com",
            "GetEventSelectors",
            json!({"trailName": "org-trail"}),
        ),
        ("iam.amazonaws.com", "GenerateCredentialReport", json!({})),
        ("secretsmanager.amazonaws.com", "ListSecrets", json!({})),
    ] {
        t += Duration::seconds(between(&mut w.ctx.rng, 1, 20));
        let call = cloudtrail::simple(source, name, request, "3.214.55.122", ua);
        cloudtrail::record(&mut w.ctx, t, &Caller::Session(&scanner), call);
    }
    if is_weekend(date) {
        return;
    }
    for pi in 0..w.org.people.len() {
        let p = w.org.people[pi].clone();
        if !(p.role == Role::Sre && chance(&mut w.ctx.rng, 0.6)) {
            continue;
        }
        let at = work_time(&mut w.ctx.rng, p.tz, date, p.hours);
        if !w.in_period(at) {
            continue;
        }
        let session = sso_session(w, pi, at, "PowerUserAccess");
        let mut t = at;
        for _ in 0..between(&mut w.ctx.rng, 2, 5) {
            let (source, name) = *pick(
                &mut w.ctx.rng,
                &[
                    ("ec2.amazonaws.com", "DescribeInstances"),
                    ("rds.amazonaws.com", "DescribeDBClusters"),
                    ("eks.amazonaws.com", "ListClusters"),
                    ("logs.amazonaws.com", "DescribeLogGroups"),
                    ("cloudwatch.amazonaws.com", "DescribeAlarms"),
                ],
            );
            t += Duration::seconds(between(&mut w.ctx.rng, 5, 240));
            let call = cloudtrail::simple(source, name, json!({}), &p.ip, cloudtrail::UA_CONSOLE);
            cloudtrail::record(&mut w.ctx, t, &Caller::Session(&session), call);
        }
    }
}

fn settings_changes(w: &mut World, day: u32) {
    let date = w.date(day);
    if is_weekend(date) {
        return;
    }
    let github: Vec<usize> = w
        .org
        .repos_of(Provider::GitHub)
        .into_iter()
        .filter(|r| w.org.repos[*r].exists_on(day))
        .collect();
    for _ in 0..poisson(&mut w.ctx.rng, 3.0) {
        let candidates: Vec<usize> = (0..w.org.people.len())
            .filter(|i| matches!(w.org.people[*i].role, Role::Admin | Role::Lead))
            .collect();
        let pi = candidates[index(&mut w.ctx.rng, candidates.len())];
        let p = w.org.people[pi].clone();
        let at = work_time(&mut w.ctx.rng, p.tz, date, p.hours);
        if !w.in_period(at) {
            continue;
        }
        let ri = github[index(&mut w.ctx.rng, github.len())];
        let repo = w.org.repos[ri].clone();
        let who = audit::Who::web(&p);
        match index(&mut w.ctx.rng, 7) {
            0 => {
                let key = pick(
                    &mut w.ctx.rng,
                    &["SLACK_WEBHOOK_URL", "CODECOV_TOKEN", "SONAR_TOKEN"],
                );
                audit::entry(
                    &mut w.ctx,
                    at,
                    "repo.update_actions_secret",
                    &who,
                    Some(&repo),
                    json!({"key": key}),
                );
            }
            1 => {
                let rule = w.ctx.rule_id(ri, repo.id);
                audit::entry(
                    &mut w.ctx,
                    at,
                    "protected_branch.update_required_approving_review_count",
                    &who,
                    Some(&repo),
                    json!({"name": "main", "required_approving_review_count": 2}),
                );
                github::protection_rule(&mut w.ctx, &repo, &p.actor(), "edited", rule, at);
            }
            2 => {
                let member = w.org.people[index(&mut w.ctx.rng, w.org.people.len())]
                    .login
                    .clone();
                audit::entry(
                    &mut w.ctx,
                    at,
                    "team.add_member",
                    &who,
                    None,
                    json!({"team": format!("acme/{}", TEAMS[p.team].0), "user": member}),
                );
            }
            3 => {
                audit::entry(
                    &mut w.ctx,
                    at,
                    "environment.update_protection_rule",
                    &who,
                    Some(&repo),
                    json!({"environment_name": "production", "name": "required_reviewers"}),
                );
            }
            4 => {
                audit::entry(
                    &mut w.ctx,
                    at,
                    "hook.config_changed",
                    &who,
                    Some(&repo),
                    json!({"hook_id": 480_000_000 + repo.id % 9_000_000, "name": "webhook", "config": {"content_type": "json", "insecure_ssl": "0"}}),
                );
            }
            5 => {
                audit::entry(
                    &mut w.ctx,
                    at,
                    "repo.add_topic",
                    &who,
                    Some(&repo),
                    json!({"topic": TEAMS[repo.team].0}),
                );
            }
            _ => {
                let key = pick(&mut w.ctx.rng, &["NPM_READ_TOKEN", "SENTRY_AUTH_TOKEN"]);
                audit::entry(
                    &mut w.ctx,
                    at,
                    "org.update_actions_secret",
                    &who,
                    None,
                    json!({"key": key, "visibility": "private"}),
                );
            }
        }
    }
    // Audit-log streaming health checks run weekly on Tuesdays.
    if date.weekday() == Weekday::Tue {
        let admins = w.org.admins();
        if let Some(&a) = admins.last() {
            let p = w.org.people[a].clone();
            let at = work_time(&mut w.ctx.rng, p.tz, date, p.hours);
            audit::entry(
                &mut w.ctx,
                at,
                "audit_log_streaming.check",
                &audit::Who::web(&p),
                None,
                json!({"stream_type": "Amazon S3"}),
            );
        }
    }
}

/// The repository created mid-period: created, protected, onboarded.
fn cold_start(w: &mut World, day: u32) {
    let Some(ri) = w.org.repos.iter().position(|r| r.created_day == Some(day)) else {
        return;
    };
    let repo = w.org.repos[ri].clone();
    let lead = w.org.people[w.org.team_lead(repo.team)].clone();
    let who = audit::Who::web(&lead);
    let at = repo.created_at;
    audit::entry(
        &mut w.ctx,
        at,
        "repo.create",
        &who,
        Some(&repo),
        json!({"visibility": "private", "request_category": "other"}),
    );
    let rule = w.ctx.rule_id(ri, repo.id);
    let t = at + Duration::minutes(between(&mut w.ctx.rng, 3, 12));
    audit::entry(
        &mut w.ctx,
        t,
        "protected_branch.create",
        &who,
        Some(&repo),
        json!({"name": "main"}),
    );
    github::protection_rule(&mut w.ctx, &repo, &lead.actor(), "created", rule, t);
    let t = t + Duration::minutes(between(&mut w.ctx.rng, 5, 30));
    audit::entry(
        &mut w.ctx,
        t,
        "integration_installation.repositories_added",
        &who,
        None,
        json!({
            "integration": "Renovate", "name": "Renovate", "repository_selection": "selected",
            "repositories_added": [repo.id], "repositories_added_names": [repo.full_name],
        }),
    );
}
