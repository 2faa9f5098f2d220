//! Incident injection. Every kind is injected at least twice (more for
//! longer periods) after a warm-up of about a third of the period, so each
//! entity has a baseline first. Incidents reuse existing people, bots,
//! repositories, runners and secrets and go through the same builders as
//! normal activity: they differ from normal life only as deviations from
//! an entity's own history, never by a telltale name or value.
//!
//! `pipeline` holds the run-shaped incidents, `deploys` the deployment ones,
//! `secrets` the Vault and AWS ones, `config` the organisation and access
//! changes.

mod config;
mod deploys;
mod pipeline;
mod secrets;

use chrono::{DateTime, Duration, Utc};

use crate::calendar::{is_weekend, night_time, work_time};
use crate::labels::{Incident, IncidentKind};
use crate::org::{Actor, Provider, Role};
use crate::rng::{between, index};
use crate::sim::World;

/// Injects every kind of incident; returns them sorted by start time.
pub(crate) fn inject(w: &mut World) -> Vec<Incident> {
    w.incident_rng();
    let per_kind = (2.0 * f64::from(w.ctx.days) / 14.0).round().max(2.0) as usize;
    let mut out = Vec::new();
    for kind in IncidentKind::ALL {
        for i in 0..per_kind {
            if let Some(incident) = one(w, *kind, i) {
                out.push(incident);
            }
        }
    }
    out.sort_by_key(|a| (a.start, a.kind));
    out
}

fn one(w: &mut World, kind: IncidentKind, i: usize) -> Option<Incident> {
    use IncidentKind::*;
    match kind {
        OffHoursRun => pipeline::off_hours_run(w, i),
        ForkPullRequestTarget => pipeline::fork_pull_request_target(w, i),
        NonDefaultBranchDeploy => deploys::non_default_branch_deploy(w, i),
        ResourceAnomaly => pipeline::resource_anomaly(w, i),
        NewEgressDestination => pipeline::new_egress_destination(w, i),
        NewDependencyRegistry => pipeline::new_dependency_registry(w, i),
        PolicyFailureSpike => deploys::policy_failure_spike(w, i),
        FindingSpike => pipeline::finding_spike(w, i),
        DeployWithoutApproval => deploys::deploy_without_approval(w, i),
        BigBangDeploy => deploys::big_bang_deploy(w, i),
        NewSelfHostedRunner => pipeline::new_self_hosted_runner(w, i),
        PersistentRunnerWithSecrets => pipeline::persistent_runner_with_secrets(w, i),
        SecretNewConsumer => secrets::secret_new_consumer(w, i),
        SecretOffHoursRead => secrets::secret_off_hours_read(w, i),
        SecretBulkRead => secrets::secret_bulk_read(w, i),
        SecretDeniedBurst => secrets::secret_denied_burst(w, i),
        StaticKeyWhereOidc => secrets::static_key_where_oidc(w, i),
        VaultRootToken => secrets::vault_root_token(w, i),
        AccountBurst => config::account_burst(w, i),
        DeployAfterProtectionRemoved => config::deploy_after_protection_removed(w, i),
        BranchProtectionRemoved => config::branch_protection_removed(w, i),
        AuditLoggingDisabled => config::audit_logging_disabled(w, i),
        TwofaRequirementDisabled => config::twofa_requirement_disabled(w, i),
        NewLongLivedToken => config::new_long_lived_token(w, i),
    }
}

/// A day after the warm-up; a weekday when asked and possible.
pub(crate) fn pick_day(w: &mut World, weekday: bool) -> u32 {
    let days = w.ctx.days;
    let lo =
        ((f64::from(days) * 0.35).ceil() as u32).clamp(u32::from(days > 1), days.saturating_sub(1));
    let mut day = lo;
    for _ in 0..20 {
        day = lo + index(&mut w.ctx.rng, (days - lo).max(1) as usize) as u32;
        if !weekday || !is_weekend(w.date(day)) {
            break;
        }
    }
    day
}

/// Clamps a time into the simulated period.
pub(crate) fn clamp(w: &World, t: DateTime<Utc>) -> DateTime<Utc> {
    t.clamp(w.ctx.start, w.ctx.end() - Duration::minutes(90))
}

/// A moment in a person's working hours on a day after warm-up.
pub(crate) fn work_moment(w: &mut World, person: usize, weekday: bool) -> DateTime<Utc> {
    let day = pick_day(w, weekday);
    let p = w.org.people[person].clone();
    let mut hours = p.hours;
    hours.evening = 0.0;
    let date = w.date(day);
    let t = work_time(&mut w.ctx.rng, p.tz, date, hours);
    clamp(w, t)
}

/// A moment deep in a person's night on a day after warm-up.
pub(crate) fn night_moment(w: &mut World, person: usize) -> DateTime<Utc> {
    let day = pick_day(w, true);
    let tz = w.org.people[person].tz;
    let date = w.date(day);
    let t = night_time(&mut w.ctx.rng, tz, date);
    clamp(w, t)
}

/// Picks one of `candidates`, preferring entities incidents used least.
fn fresh(w: &mut World, kind: &str, candidates: &[usize]) -> Option<usize> {
    let uses = |w: &World, i: usize| w.used.get(&format!("{kind}:{i}")).copied().unwrap_or(0);
    let least = candidates.iter().map(|i| uses(w, *i)).min()?;
    let pool: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|i| uses(w, *i) == least)
        .collect();
    let chosen = *pool.get(index(&mut w.ctx.rng, pool.len()))?;
    *w.used.entry(format!("{kind}:{chosen}")).or_default() += 1;
    Some(chosen)
}

/// A person with a role, in a team when given, never the on-call SRE.
pub(crate) fn person(w: &mut World, roles: &[Role], team: Option<usize>) -> usize {
    let candidates: Vec<usize> = (0..w.org.people.len())
        .filter(|i| *i != w.org.oncall)
        .filter(|i| roles.contains(&w.org.people[*i].role))
        .filter(|i| team.is_none_or(|t| w.org.people[*i].team == t))
        .collect();
    if candidates.is_empty() {
        return (0..w.org.people.len())
            .find(|i| *i != w.org.oncall)
            .unwrap_or_default();
    }
    fresh(w, "person", &candidates).unwrap_or_default()
}

/// A GitHub repository matching `pred` (existing before the warm-up ends).
pub(crate) fn repo_where(w: &mut World, pred: impl Fn(&crate::org::Repo) -> bool) -> Option<usize> {
    let candidates: Vec<usize> = (0..w.org.repos.len())
        .filter(|i| {
            w.org.repos[*i].provider == Provider::GitHub && w.org.repos[*i].created_day.is_none()
        })
        .filter(|i| pred(&w.org.repos[*i]))
        .collect();
    fresh(w, "repo", &candidates)
}

/// An outside contributor: not a member of the organisation.
pub(crate) fn outsider(w: &mut World) -> Actor {
    crate::sim::outsider(&mut w.ctx.rng)
}

/// A new public IP in a hosting range nobody in the organisation uses.
pub(crate) fn foreign_ip(w: &mut World) -> String {
    const PREFIXES: &[&str] = &["146.70", "185.213", "91.132", "45.134"];
    let prefix = PREFIXES[index(&mut w.ctx.rng, PREFIXES.len())];
    format!(
        "{prefix}.{}.{}",
        between(&mut w.ctx.rng, 1, 254),
        between(&mut w.ctx.rng, 1, 254)
    )
}
