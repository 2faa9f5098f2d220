//! Side effects of a job in the systems around CI: Vault logins and KV
//! reads (JWT/OIDC claims in the auth metadata), AWS sessions through OIDC
//! or a legacy key and the calls made with them, Argo CD syncs and the
//! Kubernetes writes they cause, Conftest checks and SARIF scans.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::run::{RunIds, RunPlan};
use crate::ctx::{ArgoSync, Ctx};
use crate::facts::{JobFact, RunFact, RunnerAssign};
use crate::formats::cloudtrail::{self, Caller, Oidc};
use crate::formats::{conftest, k8s, sarif, vault};
use crate::org::{AwsUse, JobSpec, Org, Provider, Repo, Strategy};
use crate::rng::{between, chance, sha256_hex};

/// A stable UUID-shaped id derived from a name (Vault entity ids).
pub(crate) fn stable_uuid(name: &str) -> String {
    let h = sha256_hex(name);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The GitHub OIDC `sub` claim of a job.
pub(crate) fn github_sub(repo: &Repo, run: &RunFact, env: Option<&str>) -> String {
    match env {
        Some(e) => format!("repo:{}:environment:{e}", repo.full_name),
        None if run.event.starts_with("pull_request") => {
            format!("repo:{}:pull_request", repo.full_name)
        }
        None if run.tag => format!("repo:{}:ref:refs/tags/{}", repo.full_name, run.branch),
        None => format!("repo:{}:ref:refs/heads/{}", repo.full_name, run.branch),
    }
}

/// The GitLab ID token `sub` claim of a job.
pub(crate) fn gitlab_sub(repo: &Repo, run: &RunFact) -> String {
    let kind = if run.tag { "tag" } else { "branch" };
    format!(
        "project_path:{}:ref_type:{kind}:ref:{}",
        repo.full_name, run.branch
    )
}

/// The public address a runner's traffic to AWS comes from.
pub(crate) fn egress_ip(runner: &RunnerAssign) -> String {
    if runner.hosted {
        runner.ip.clone()
    } else if runner.ephemeral {
        "3.214.55.120".to_owned()
    } else {
        "81.173.201.66".to_owned()
    }
}

/// The Vault token a CI job gets from `auth/jwt/login`.
pub(crate) fn ci_token(
    ctx: &mut Ctx,
    org: &Org,
    run: &RunFact,
    job: &JobFact,
    at: DateTime<Utc>,
) -> (String, crate::facts::VaultToken) {
    let repo = &org.repos[run.repo];
    let mut md = BTreeMap::new();
    let (role, sub) = match repo.provider {
        Provider::GitHub => {
            let role = format!("ci-{}", repo.name);
            let git_ref = if run.tag {
                format!("refs/tags/{}", run.branch)
            } else {
                format!("refs/heads/{}", run.branch)
            };
            md.insert("repository".to_owned(), repo.full_name.clone());
            md.insert("ref".to_owned(), git_ref);
            md.insert("run_id".to_owned(), run.id.to_string());
            md.insert("job".to_owned(), job.name.clone());
            md.insert(
                "workflow".to_owned(),
                repo.workflows[run.workflow].name.clone(),
            );
            md.insert("actor".to_owned(), run.actor.login.clone());
            md.insert("event_name".to_owned(), run.event.to_owned());
            if let Some(env) = job.env {
                md.insert("environment".to_owned(), env.to_owned());
            }
            (role, github_sub(repo, run, job.env))
        }
        Provider::GitLab => {
            let role = format!("gitlab-{}", repo.name);
            md.insert("project_path".to_owned(), repo.full_name.clone());
            md.insert("pipeline_id".to_owned(), run.id.to_string());
            md.insert("job_id".to_owned(), job.id.to_string());
            md.insert("ref".to_owned(), run.branch.clone());
            md.insert("user_login".to_owned(), run.actor.login.clone());
            (role, gitlab_sub(repo, run))
        }
    };
    md.insert("role".to_owned(), role.clone());
    let token = vault::token(
        &mut ctx.rng,
        format!("jwt-{sub}"),
        vec!["default".to_owned(), role.clone()],
        Some(md),
        stable_uuid(&format!("entity-{role}")),
        600,
        at,
    );
    (role, token)
}

/// Everything a job does outside the CI system.
#[allow(clippy::too_many_arguments)]
pub(crate) fn job_effects(
    org: &Org,
    ctx: &mut Ctx,
    plan: &RunPlan,
    run: &RunFact,
    job: &JobFact,
    spec: &JobSpec,
    tweaked: bool,
    ids: &mut RunIds,
) {
    let Some(runner) = &job.runner else { return };
    let repo = &org.repos[plan.repo];
    let extra: &[String] = if tweaked {
        &plan.tweak.extra_vault
    } else {
        &[]
    };
    let denied: &[String] = if tweaked {
        &plan.tweak.denied_vault
    } else {
        &[]
    };
    if !spec.vault.is_empty() || !extra.is_empty() || !denied.is_empty() {
        let mut at = job.started + Duration::seconds(between(&mut ctx.rng, 5, 15));
        let (role, token) = ci_token(ctx, org, run, job, at);
        ids.vault
            .push(vault::login(ctx, at, "jwt", &role, &token, &runner.ip));
        for path in &spec.vault {
            at += Duration::milliseconds(between(&mut ctx.rng, 300, 2_500));
            let id = vault::call(
                ctx,
                at,
                &token,
                "read",
                path,
                vault::secret_keys(path),
                &runner.ip,
                false,
            );
            ids.vault.push(id);
        }
        if extra.len() > 5 {
            let prefix = common_prefix(extra).replace("secret/data/", "secret/metadata/");
            at += Duration::milliseconds(between(&mut ctx.rng, 200, 900));
            let keys: Vec<&str> = extra.iter().filter_map(|p| p.rsplit('/').next()).collect();
            let id = vault::call(ctx, at, &token, "list", &prefix, &keys, &runner.ip, false);
            ids.vault_extra.push(id);
        }
        for (paths, refused) in [(extra, false), (denied, true)] {
            for path in paths {
                at += Duration::milliseconds(between(&mut ctx.rng, 150, 1_800));
                let id = vault::call(
                    ctx,
                    at,
                    &token,
                    "read",
                    path,
                    vault::secret_keys(path),
                    &runner.ip,
                    refused,
                );
                ids.vault_extra.push(id);
            }
        }
    }
    aws_effects(org, ctx, run, job, spec, runner, ids);
    deploy_effects(org, ctx, plan, run, job, tweaked, ids);
    if spec.policy
        && let Some(service) = &repo.service
    {
        let kind = if service.strategy == Strategy::Canary && !(tweaked && plan.tweak.big_bang) {
            "Rollout"
        } else {
            "Deployment"
        };
        let forced = if tweaked {
            plan.tweak.conftest_failures
        } else {
            None
        };
        let env = plan.env.unwrap_or("staging");
        let at = job.completed - Duration::seconds(2);
        if let Ok(outcome) = conftest::check(
            ctx,
            plan.repo,
            &repo.name,
            &service.app,
            env,
            kind,
            at,
            forced,
        ) {
            ids.conftest.push(outcome);
        }
    }
    if let Some(tool) = spec.scan {
        let mut findings: Vec<_> = sarif::baseline(ctx, plan.repo, repo, tool)
            .into_iter()
            .filter(|_| chance(&mut ctx.rng, 0.95))
            .collect();
        if tweaked {
            for _ in 0..plan.tweak.extra_findings {
                let f = sarif::new_finding(&mut ctx.rng, repo, tool);
                ids.findings.push(f.fingerprint.clone());
                findings.push(f);
            }
        }
        sarif::scan(
            ctx,
            repo,
            tool,
            &findings,
            &run.sha,
            &run.branch,
            job.started,
            job.completed,
        );
    }
}

fn common_prefix(paths: &[String]) -> String {
    let first = paths.first().cloned().unwrap_or_default();
    let mut prefix = first
        .rsplit_once('/')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    while !paths.iter().all(|p| p.starts_with(&format!("{prefix}/"))) {
        match prefix.rsplit_once('/') {
            Some((p, _)) => prefix = p.to_owned(),
            None => break,
        }
    }
    prefix
}

const DESCRIBES: &[(&str, &str)] = &[
    ("ec2.amazonaws.com", "DescribeVpcs"),
    ("ec2.amazonaws.com", "DescribeSubnets"),
    ("ec2.amazonaws.com", "DescribeSecurityGroups"),
    ("iam.amazonaws.com", "GetRole"),
    ("iam.amazonaws.com", "ListAttachedRolePolicies"),
    ("rds.amazonaws.com", "DescribeDBInstances"),
    ("eks.amazonaws.com", "DescribeCluster"),
    ("kms.amazonaws.com", "DescribeKey"),
];

fn aws_effects(
    org: &Org,
    ctx: &mut Ctx,
    run: &RunFact,
    job: &JobFact,
    spec: &JobSpec,
    runner: &RunnerAssign,
    ids: &mut RunIds,
) {
    let repo = &org.repos[run.repo];
    let ip = egress_ip(runner);
    let mut at = job.started + Duration::seconds(between(&mut ctx.rng, 6, 14));
    match spec.aws {
        AwsUse::None => {}
        AwsUse::Deploy => {
            let Some(service) = &repo.service else { return };
            let env = job.env.unwrap_or("staging");
            let role = if env == "production" {
                service.deploy_role.clone()
            } else {
                format!("{}-staging", service.deploy_role)
            };
            let sub = github_sub(repo, run, Some(env));
            let (id, session) = cloudtrail::assume_web_identity(
                ctx,
                at,
                Oidc::GitHub,
                &sub,
                &role,
                "GitHubActions",
                &ip,
                cloudtrail::UA_CONFIGURE,
            );
            ids.aws.push(id);
            let secrets = if env == "production" {
                service.aws_secrets.clone()
            } else {
                vec![format!("staging/{}/config", service.app)]
            };
            for name in secrets {
                at += Duration::seconds(between(&mut ctx.rng, 1, 4));
                let call = cloudtrail::get_secret(&name, &ip, cloudtrail::UA_CLI, false);
                ids.aws.push(cloudtrail::record(
                    ctx,
                    at,
                    &Caller::Session(&session),
                    call,
                ));
            }
            at += Duration::seconds(between(&mut ctx.rng, 1, 3));
            let call = cloudtrail::simple(
                "ecr.amazonaws.com",
                "GetAuthorizationToken",
                json!({}),
                &ip,
                cloudtrail::UA_CLI,
            );
            ids.aws.push(cloudtrail::record(
                ctx,
                at,
                &Caller::Session(&session),
                call,
            ));
        }
        AwsUse::TerraformPlan | AwsUse::GitlabTerraform => {
            let (oidc, sub, role, session_name) = if spec.aws == AwsUse::TerraformPlan {
                (
                    Oidc::GitHub,
                    github_sub(repo, run, None),
                    "gha-terraform-plan".to_owned(),
                    "GitHubActions".to_owned(),
                )
            } else {
                let kind = if job.name == "apply" { "apply" } else { "plan" };
                (
                    Oidc::GitLab,
                    gitlab_sub(repo, run),
                    format!("gitlab-{}-{kind}", repo.name),
                    format!("gitlab-{}", job.id),
                )
            };
            let (id, session) = cloudtrail::assume_web_identity(
                ctx,
                at,
                oidc,
                &sub,
                &role,
                &session_name,
                &ip,
                cloudtrail::UA_TERRAFORM,
            );
            ids.aws.push(id);
            let n = between(&mut ctx.rng, 3, 6) as usize;
            let first = between(&mut ctx.rng, 0, DESCRIBES.len() as i64 - 1) as usize;
            for k in 0..n {
                let (source, name) = DESCRIBES[(first + k) % DESCRIBES.len()];
                at += Duration::milliseconds(between(&mut ctx.rng, 200, 3_000));
                let call =
                    cloudtrail::simple(source, name, json!({}), &ip, cloudtrail::UA_TERRAFORM);
                ids.aws.push(cloudtrail::record(
                    ctx,
                    at,
                    &Caller::Session(&session),
                    call,
                ));
            }
        }
        AwsUse::LegacyKey(i) => {
            let Some(user) = org.iam_users.get(i) else {
                return;
            };
            let secret = if i == 0 {
                "reports/warehouse-readonly"
            } else {
                "ops/backup-encryption-key"
            };
            let calls = [
                cloudtrail::simple(
                    "sts.amazonaws.com",
                    "GetCallerIdentity",
                    json!({}),
                    &ip,
                    cloudtrail::UA_BOTO,
                ),
                cloudtrail::get_secret(secret, &ip, cloudtrail::UA_BOTO, false),
                cloudtrail::simple(
                    "s3.amazonaws.com",
                    "ListBuckets",
                    json!({"Host": "s3.amazonaws.com"}),
                    &ip,
                    cloudtrail::UA_BOTO,
                ),
            ];
            for call in calls {
                at += Duration::milliseconds(between(&mut ctx.rng, 300, 4_000));
                ids.aws
                    .push(cloudtrail::record(ctx, at, &Caller::User(user), call));
            }
        }
    }
}

fn deploy_effects(
    org: &Org,
    ctx: &mut Ctx,
    plan: &RunPlan,
    run: &RunFact,
    job: &JobFact,
    tweaked: bool,
    ids: &mut RunIds,
) {
    let repo = &org.repos[run.repo];
    let (Some(env), Some(service)) = (job.env, &repo.service) else {
        return;
    };
    if job.conclusion != "success" {
        return;
    }
    let big_bang = tweaked && plan.tweak.big_bang;
    let namespace = service.namespace(env);
    let image = format!("ghcr.io/acme/{}:{}", service.app, &run.sha[..12]);
    let (resource, group, version, object) = k8s::workload(
        &service.app,
        &namespace,
        &image,
        service.replicas,
        service.strategy,
        big_bang,
    );
    let start = job.started + Duration::seconds(between(&mut ctx.rng, 30, 60));
    let (user, groups, ip, agent) = match repo.provider {
        Provider::GitHub => (
            k8s::ARGO_CONTROLLER,
            k8s::SA_GROUPS,
            "10.42.0.37",
            "argocd-controller/v3.1.5+3f0f2c7 (linux/amd64) kubernetes/v1.33.4",
        ),
        Provider::GitLab => (
            k8s::GITLAB_AGENT,
            k8s::AGENT_GROUPS,
            "10.42.9.15",
            "gitlab-agent/v18.4.0 (linux/amd64)",
        ),
    };
    let reason = format!(
        "RBAC: allowed by ClusterRoleBinding \"{0}\" of ClusterRole \"{0}\"",
        user.rsplit(':').next().unwrap_or(user)
    );
    let call = k8s::Call {
        verb: "patch",
        resource,
        api_group: group,
        api_version: version,
        namespace: &namespace,
        name: &service.app,
        user,
        groups,
        source_ip: ip,
        user_agent: agent,
        code: 200,
        request_object: Some(object),
        reason: &reason,
    };
    ids.k8s
        .push(k8s::event(ctx, start + Duration::seconds(2), call));
    if let Some(app) = service.argo.iter().find(|a| a.env == env) {
        let rollout = service.strategy == Strategy::Canary && !big_bang;
        let secs = if rollout {
            between(&mut ctx.rng, 180, 330)
        } else {
            between(&mut ctx.rng, 15, 60)
        };
        let sync = ArgoSync {
            revision: run.sha.clone(),
            started: start,
            finished: start + Duration::seconds(secs),
            initiated_by: (env == "production").then(|| "ci-deployer".to_owned()),
            succeeded: true,
            resource_kind: if rollout { "Rollout" } else { "Deployment" },
        };
        ctx.argo.entry(app.uid.clone()).or_default().push(sync);
    }
}
