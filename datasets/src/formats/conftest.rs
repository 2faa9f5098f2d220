//! Conftest results (`conftest/<repo>-<YYYY-MM-DD>-<n>.json`, the
//! `conftest test --output json` array of per-file results). Conftest
//! output carries no time: the file name holds the date, the file's
//! modification time is set to the check's time, and the ingester takes the
//! event time from the modification time (the name's date survives copies
//! that reset it, such as a git checkout).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::DatasetError;
use crate::ctx::Ctx;
use crate::rng::{chance, index};

const DENY: &[&str] = &[
    "Containers must not run as root in {kind} {app}",
    "{kind} {app} must set securityContext.readOnlyRootFilesystem",
    "Image of {kind} {app} must come from ghcr.io/acme",
    "{kind} {app} must not mount the service account token",
    "{kind} {app} must set resources.limits.memory",
    "{kind} {app} must provide app.kubernetes.io/name and app.kubernetes.io/version labels",
    "Container {app} must drop ALL capabilities",
];

const WARN: &[&str] = &[
    "{kind} {app} should define a PodDisruptionBudget",
    "{kind} {app} should set topologySpreadConstraints",
    "Service {app} exposes port 8080 without a NetworkPolicy",
];

/// The outcome of one `conftest test` over a service's rendered manifests.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Path of the written file, relative to the output directory.
    pub(crate) file: String,
    /// The `filename` of the first checked manifest.
    pub(crate) filename: String,
}

fn messages(
    templates: &[&str],
    count: usize,
    start: usize,
    kind: &str,
    app: &str,
    query: &str,
) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let msg = templates[(start + i) % templates.len()]
                .replace("{kind}", kind)
                .replace("{app}", app);
            json!({"msg": msg, "metadata": {"query": query}})
        })
        .collect()
}

/// Runs conftest for `app` in `env` at `at`; `forced_failures` overrides
/// the usual (mostly clean) result.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    ctx: &mut Ctx,
    repo_idx: usize,
    repo_name: &str,
    app: &str,
    env: &str,
    workload_kind: &str,
    at: DateTime<Utc>,
    forced_failures: Option<usize>,
) -> Result<Outcome, DatasetError> {
    let date = at.date_naive();
    let seq = ctx.conftest_seq.entry((repo_idx, date)).or_insert(0);
    *seq += 1;
    let file = format!(
        "conftest/{repo_name}-{}-{}.json",
        date.format("%Y-%m-%d"),
        *seq
    );
    let manifests = [
        (
            format!(
                "manifests/{env}/{app}/{}.yaml",
                workload_kind.to_lowercase()
            ),
            workload_kind,
        ),
        (format!("manifests/{env}/{app}/service.yaml"), "Service"),
        (
            format!("manifests/{env}/{app}/networkpolicy.yaml"),
            "NetworkPolicy",
        ),
    ];
    let failures = match forced_failures {
        Some(n) => n,
        None => usize::from(chance(&mut ctx.rng, 0.06)),
    };
    let offset = index(&mut ctx.rng, DENY.len());
    let mut results = Vec::new();
    for (i, (filename, kind)) in manifests.iter().enumerate() {
        let mut m = Map::new();
        m.insert("filename".into(), json!(filename));
        m.insert("namespace".into(), json!("main"));
        let (deny, warn) = if i == 0 {
            (failures, usize::from(chance(&mut ctx.rng, 0.25)))
        } else {
            (0, usize::from(chance(&mut ctx.rng, 0.05)))
        };
        m.insert("successes".into(), json!(8 - deny.min(7)));
        if warn > 0 {
            m.insert(
                "warnings".into(),
                json!(messages(WARN, warn, i, kind, app, "data.main.warn")),
            );
        }
        if deny > 0 {
            m.insert(
                "failures".into(),
                json!(messages(DENY, deny, offset, kind, app, "data.main.deny")),
            );
        }
        results.push(Value::Object(m));
    }
    let count = results.len() as u64;
    ctx.sink
        .document_at(&file, &Value::Array(results), count, Some(at))?;
    Ok(Outcome {
        file,
        filename: manifests[0].0.clone(),
    })
}
