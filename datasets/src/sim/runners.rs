//! Runner assignment and outbound calls of a job: which runner takes a job
//! (GitHub-hosted, ARC ephemeral pods, persistent machines, GitLab shared and
//! group runners) with its labels and egress address, and the CLIENT calls
//! a job makes to registries and upload destinations during its run.

use chrono::{DateTime, Duration, Utc};

use crate::ctx::Ctx;
use crate::facts::{ClientCall, RunnerAssign};
use crate::formats::otlp;
use crate::org::{Org, RunnerKind};
use crate::rng::{between, hex, lognormal, pick, uniform};

/// The labels a job asks for.
pub(crate) fn requested_labels(org: &Org, kind: RunnerKind, swift: bool) -> Vec<String> {
    match kind {
        RunnerKind::Hosted if swift => vec!["macos-15".to_owned()],
        RunnerKind::Hosted => vec!["ubuntu-latest".to_owned()],
        RunnerKind::Arc => vec!["self-hosted".into(), "linux".into(), "ephemeral".into()],
        RunnerKind::Persistent(i) => org
            .hosts
            .get(i)
            .map(|h| h.labels.clone())
            .unwrap_or_default(),
        RunnerKind::GitlabShared => vec!["saas-linux-small-amd64".to_owned()],
        RunnerKind::GitlabGroup => vec!["k8s".to_owned(), "acme-platform".to_owned()],
    }
}

/// Picks the runner that takes a job.
pub(crate) fn assign_runner(
    org: &Org,
    ctx: &mut Ctx,
    kind: RunnerKind,
    labels: &[String],
) -> RunnerAssign {
    let rng = &mut ctx.rng;
    match kind {
        RunnerKind::Hosted => {
            let id = between(rng, 2, 999_999) as u64;
            let prefix = pick(rng, crate::org::HOSTED_RUNNER_PREFIXES);
            RunnerAssign {
                id,
                name: format!("GitHub Actions {id}"),
                group_id: 0,
                group_name: "GitHub Actions".into(),
                labels: labels.to_vec(),
                ip: format!("{prefix}.{}.{}", between(rng, 0, 255), between(rng, 1, 254)),
                hosted: true,
                ephemeral: true,
                gitlab_type: "",
            }
        }
        RunnerKind::Arc => {
            ctx.arc_runner += between(rng, 1, 3) as u64;
            let name = format!(
                "arc-runner-set-{}-runner-{}",
                &hex(rng, 3)[..5],
                &hex(rng, 3)[..5]
            );
            RunnerAssign {
                id: ctx.arc_runner,
                name,
                group_id: 3,
                group_name: "arc-k8s".into(),
                labels: labels.to_vec(),
                ip: format!("10.42.{}.{}", between(rng, 16, 31), between(rng, 2, 254)),
                hosted: false,
                ephemeral: true,
                gitlab_type: "",
            }
        }
        RunnerKind::Persistent(i) => {
            let host = &org.hosts[i.min(org.hosts.len().saturating_sub(1))];
            RunnerAssign {
                id: host.id,
                name: host.name.clone(),
                group_id: 1,
                group_name: "Default".into(),
                labels: host.labels.clone(),
                ip: host.ip.clone(),
                hosted: false,
                ephemeral: false,
                gitlab_type: "",
            }
        }
        RunnerKind::GitlabShared => {
            let (id, color) = *pick(
                rng,
                &[
                    (12_270_837u64, "blue-4"),
                    (12_270_840, "blue-5"),
                    (32_976_645, "green-2"),
                    (32_976_733, "green-3"),
                ],
            );
            let prefix = pick(rng, crate::org::GITLAB_RUNNER_PREFIXES);
            RunnerAssign {
                id,
                name: format!("{color}.saas-linux-small-amd64.runners-manager.gitlab.com/default"),
                group_id: 0,
                group_name: String::new(),
                labels: labels.to_vec(),
                ip: format!("{prefix}.{}.{}", between(rng, 0, 255), between(rng, 1, 254)),
                hosted: true,
                ephemeral: true,
                gitlab_type: "instance_type",
            }
        }
        RunnerKind::GitlabGroup => RunnerAssign {
            id: 31_244_170,
            name: "acme-platform-k8s-runner".into(),
            group_id: 0,
            group_name: String::new(),
            labels: labels.to_vec(),
            ip: format!("10.42.9.{}", between(rng, 2, 254)),
            hosted: false,
            ephemeral: true,
            gitlab_type: "group_type",
        },
    }
}

/// The GitLab stage of a job.
pub(crate) fn stage_name(stage: u8, name: &str) -> String {
    match (stage, name) {
        (0, _) => "validate",
        (_, "test") => "test",
        (_, n) if n.starts_with("deploy") || n == "apply" => "deploy",
        (1, _) => "build",
        _ => "deploy",
    }
    .to_owned()
}

/// The calls a job makes to `hosts`, early (downloads) or late (uploads) in its run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn calls(
    ctx: &mut Ctx,
    job_id: u64,
    hosts: &[(String, &'static str)],
    from: DateTime<Utc>,
    dur_s: f64,
    early: bool,
    egress: u64,
    first: usize,
) -> Vec<ClientCall> {
    let mut out = Vec::new();
    for (n, (host, method)) in hosts.iter().enumerate() {
        let (lo, hi) = if early { (0.03, 0.4) } else { (0.55, 0.97) };
        let start =
            from + Duration::milliseconds((uniform(&mut ctx.rng, lo, hi) * dur_s * 1000.0) as i64);
        let len = lognormal(&mut ctx.rng, if *method == "GET" { 1.8 } else { 3.0 }, 0.6)
            .min(dur_s.max(1.0));
        let bytes_out = if *method == "GET" {
            between(&mut ctx.rng, 400, 2_000) as u64
        } else {
            (egress as f64 * uniform(&mut ctx.rng, 0.3, 0.8) / hosts.len().max(1) as f64) as u64
        };
        out.push(ClientCall {
            host: host.clone(),
            method,
            start,
            end: start + Duration::milliseconds((len * 1000.0) as i64),
            span_id: otlp::client_span_id(job_id, first + n),
            bytes_out,
            status: 200,
        });
    }
    out
}
