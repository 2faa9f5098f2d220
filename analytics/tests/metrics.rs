//! Golden tests of the hardening metrics: each metric's SQL runs over a
//! small hand-built lake whose expected numbers are worked out by hand in
//! the comments, plus the runner's window cut-off and org/repo grouping.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::{assert_batches_eq, assert_batches_sorted_eq};
use pipewatch_analytics::metrics::{
    self, MetricValue, MetricsReport, Scope, Window, render_json, render_table, run_detail,
    run_metrics,
};
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_schema::{Category, Event, IdentityKind, Severity};

#[path = "support/lake.rs"]
mod support_lake;
use support_lake::{at, lake};

// ---------------------------------------------------------------- fixtures

/// One event with the envelope set; `edit` fills the rest.
fn event(
    source: &str,
    id: &str,
    time: &str,
    category: Category,
    action: &str,
    outcome: &str,
    edit: impl FnOnce(&mut Event),
) -> Event {
    let mut e = Event::new(
        source,
        id,
        at(time),
        category,
        action,
        serde_json::json!({}),
    );
    e.outcome = outcome.to_owned();
    edit(&mut e);
    e
}

fn owned(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn sql_of(name: &str) -> &'static str {
    metrics::metric(name)
        .map(|m| m.sql)
        .or_else(|| metrics::detail(name).map(|d| d.sql))
        .unwrap_or_else(|| panic!("{name} is not registered"))
}

async fn rows(service: &QueryService, sql: &str) -> Vec<RecordBatch> {
    service
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .batches
}

/// A ratio or mean metric's rows summed per day, org and repo.
async fn ratio_rows(service: &QueryService, name: &str) -> Vec<RecordBatch> {
    let sql = format!(
        "SELECT CAST(CAST(day AS DATE) AS VARCHAR) AS day, org, repo, \
         sum(numerator) AS num, sum(denominator) AS den \
         FROM (\n{}\n) AS m GROUP BY CAST(CAST(day AS DATE) AS VARCHAR), org, repo",
        sql_of(name)
    );
    rows(service, &sql).await
}

fn value_of<'a>(report: &'a MetricsReport, name: &str, scope: &str) -> &'a MetricValue {
    report
        .values
        .iter()
        .find(|v| v.metric.name == name && v.scope.as_deref() == Some(scope))
        .unwrap_or_else(|| panic!("no {name} for {scope}"))
}

fn scopes_of(report: &MetricsReport, name: &str) -> Vec<Option<String>> {
    report
        .values
        .iter()
        .filter(|v| v.metric.name == name)
        .map(|v| v.scope.clone())
        .collect()
}

fn window(text: &str) -> Window {
    text.parse().expect("window")
}

fn close(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("a value");
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

// ------------------------------------------------- ephemeral runners, drill-down

const DONE: &str = "workflow_job.completed";
const SPAN: &str = "cicd.pipeline.task.run";
const RUNNING: &str = "workflow_job.in_progress";
const BUILD: &str = "build.success";

/// `(source, time, repo, task run id, action, outcome, runner_ephemeral)`.
type JobRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<bool>,
);

#[rustfmt::skip]
const JOBS: &[JobRow] = &[
    // j1: two sources, one knows it was ephemeral -> one ephemeral job.
    ("github_webhook", "2026-10-01T10:00:00Z", "acme/api", "j1", DONE,    "success",     Some(true)),
    ("otlp",           "2026-10-01T10:00:01Z", "acme/api", "j1", SPAN,    "success",     None),
    // j2: persistent runner -> known, not ephemeral.
    ("github_webhook", "2026-10-01T11:00:00Z", "acme/api", "j2", DONE,    "failure",     Some(false)),
    // j3: nobody knows -> left out.
    ("github_webhook", "2026-10-01T12:00:00Z", "acme/api", "j3", DONE,    "success",     None),
    ("otlp",           "2026-10-01T12:00:01Z", "acme/api", "j3", SPAN,    "success",     None),
    // j4: skipped -> never ran on a runner, left out.
    ("github_webhook", "2026-10-01T13:00:00Z", "acme/api", "j4", DONE,    "skipped",     Some(true)),
    // j5: still running -> not completed, left out.
    ("github_webhook", "2026-10-01T14:00:00Z", "acme/api", "j5", RUNNING, "in_progress", Some(true)),
    // j7: the sources disagree -> not ephemeral.
    ("github_webhook", "2026-10-01T15:00:00Z", "acme/api", "j7", DONE,    "success",     Some(true)),
    ("gitlab",         "2026-10-01T15:00:01Z", "acme/api", "j7", BUILD,   "success",     Some(false)),
    // j1 of another repository is another job.
    ("gitlab",         "2026-10-01T16:00:00Z", "acme/web", "j1", BUILD,   "success",     Some(true)),
    // j6: cancelled the next day, ephemeral.
    ("github_webhook", "2026-10-02T09:00:00Z", "acme/api", "j6", DONE,    "cancelled",   Some(true)),
];

/// `(repo, run id, outcome, secret)` of Vault reads at 10-01 11:00:30.
/// r1 of acme/api reads a secret (the request half, 'pending', is not a
/// second access); r2 reads one only in acme/web.
#[rustfmt::skip]
const RUN_SECRET_READS: &[(&str, &str, &str, &str)] = &[
    ("acme/api", "r1", "success", "secret/data/api"),
    ("acme/api", "r1", "pending", "secret/data/api"),
    ("acme/web", "r2", "success", "secret/data/web"),
];

fn job_events() -> Vec<Event> {
    let mut events: Vec<Event> = JOBS
        .iter()
        .enumerate()
        .map(
            |(i, &(source, time, repo, task, action, outcome, ephemeral))| {
                let id = format!("job-{i}");
                event(
                    source,
                    &id,
                    time,
                    Category::PipelineJob,
                    action,
                    outcome,
                    |e| {
                        // Run ids and runners for the drill-down: j2 runs in r1, j7 in r2.
                        let (run, runner) = match task {
                            "j2" => ("r1", "ci-builder-01"),
                            "j7" => ("r2", "ci-builder-02"),
                            _ => ("r0", "hosted"),
                        };
                        e.org = owned("acme");
                        e.repo = owned(repo);
                        e.cicd_pipeline_task_run_id = owned(task);
                        e.cicd_pipeline_task_name = owned("build");
                        e.cicd_pipeline_run_id = owned(run);
                        e.cicd_worker_name = owned(runner);
                        e.runner_ephemeral = ephemeral;
                    },
                )
            },
        )
        .collect();
    for (i, &(repo, run, outcome, secret)) in RUN_SECRET_READS.iter().enumerate() {
        let id = format!("read-{i}");
        let time = "2026-10-01T11:00:30Z";
        events.push(event(
            "vault_audit",
            &id,
            time,
            Category::SecretAccess,
            "secret.read",
            outcome,
            |e| {
                e.org = owned("acme");
                e.repo = owned(repo);
                e.cicd_pipeline_run_id = owned(run);
                e.target_name = owned(secret);
                e.identity_kind = IdentityKind::Oidc;
            },
        ));
    }
    events
}

// ------------------------------------------------------------ identities

/// `(source, time, category, outcome, identity kind, identity id, repo)`.
type IdentityRow = (
    &'static str,
    &'static str,
    Category,
    &'static str,
    IdentityKind,
    &'static str,
    &'static str,
);

const D3: &str = "2026-10-03T08:00:00Z";
const D4: &str = "2026-10-04T08:00:00Z";

#[rustfmt::skip]
const IDENTITIES: &[IdentityRow] = {
    use Category::{Auth, ConfigChange, SecretAccess};
    use IdentityKind::{Oidc, StaticKey, Token, Unknown};
    &[
        ("cloudtrail",   D3, SecretAccess, "success", Oidc,      "ASIA1", ""),
        ("cloudtrail",   D3, Auth,         "success", StaticKey, "AKIA1", ""),
        // The request half of a Vault entry is not an authentication of its own.
        ("vault_audit",  D3, SecretAccess, "pending", Oidc,      "hmac1", "acme/api"),
        ("vault_audit",  D3, SecretAccess, "success", Oidc,      "hmac1", "acme/api"),
        ("vault_audit",  D3, Auth,         "success", Token,     "hmac2", ""),
        // Denied, but still an authentication with a token.
        ("k8s_audit",    D3, SecretAccess, "denied",  Token,     "sa",    ""),
        // Unknown identity, another source, another category: all left out.
        ("k8s_audit",    D3, SecretAccess, "success", Unknown,   "",      ""),
        ("github_audit", D3, Auth,         "success", Token,     "pat",   ""),
        ("cloudtrail",   D3, ConfigChange, "success", Oidc,      "ASIA2", ""),
        // Static keys: AKIA1 again and AKIA2 on 10-04, and one without an id.
        ("cloudtrail",   D4, SecretAccess, "success", StaticKey, "AKIA1", ""),
        ("cloudtrail",   D4, SecretAccess, "success", StaticKey, "AKIA2", ""),
        ("cloudtrail",   D4, Auth,         "success", StaticKey, "",      ""),
    ]
};

/// `Some(text)` unless empty.
fn given(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn identity_events() -> Vec<Event> {
    IDENTITIES
        .iter()
        .enumerate()
        .map(|(i, &(source, time, category, outcome, kind, key, repo))| {
            event(
                source,
                &format!("id-{i}"),
                time,
                category,
                "x.y",
                outcome,
                |e| {
                    e.identity_kind = kind;
                    e.identity_id = given(key);
                    e.repo = given(repo);
                    e.org = e.repo.as_ref().map(|_| "acme".to_owned());
                },
            )
        })
        .collect()
}

// ---------------------------------------------------- findings and rotations

/// `(time, repo, tool, rule id, message)`; every finding is at src/a.py:1,
/// severity high.
type FindingRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn finding_events(rows: &[FindingRow]) -> Vec<Event> {
    rows.iter()
        .enumerate()
        .map(|(i, &(time, repo, tool, rule, message))| {
            let id = format!("finding-{i}");
            event(
                "sarif",
                &id,
                time,
                Category::Finding,
                "finding.reported",
                "failure",
                |e| {
                    e.org = owned("acme");
                    e.repo = owned(repo);
                    e.tool_name = owned(tool);
                    e.rule_id = owned(rule);
                    e.message = owned(message);
                    e.code_location = owned("src/a.py:1");
                    e.severity = Some(Severity::High);
                },
            )
        })
        .collect()
}

#[rustfmt::skip]
const EXPOSURES: &[FindingRow] = &[
    // acme/api: leaked at 10-01 00:00 and re-reported the next day: one exposure.
    ("2026-10-01T00:00:00Z", "acme/api", "gitleaks",   "aws-access-token", "AWS key"),
    ("2026-10-02T00:00:00Z", "acme/api", "gitleaks",   "aws-access-token", "AWS key"),
    // acme/web: a rule naming a token, at 10-01 12:00.
    ("2026-10-01T12:00:00Z", "acme/web", "semgrep",    "hardcoded-token",  "Hard-coded credential"),
    // acme/ops: trufflehog at 10-02 00:00, never rotated.
    ("2026-10-02T00:00:00Z", "acme/ops", "trufflehog", "Slack",            "Slack webhook"),
    // Not exposures: a dependency CVE whose text names a key, a SQL injection.
    ("2026-10-01T00:00:00Z", "acme/ops", "trivy",      "CVE-2024-1234",    "leaks the private key"),
    ("2026-10-01T00:00:00Z", "acme/ops", "CodeQL",     "py/sql-injection", "SQL injection"),
];

/// `(source, time, category, action, outcome, repo)` of secret writes and reads.
type WriteRow = (
    &'static str,
    &'static str,
    Category,
    &'static str,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const SECRET_WRITES: &[WriteRow] = &[
    // acme/api: a read is no rotation; the repository secret is updated at 06:00.
    ("vault_audit",  "2026-10-01T01:00:00Z", Category::SecretAccess, "secret.read",                "success", "acme/api"),
    ("github_audit", "2026-10-01T06:00:00Z", Category::ConfigChange, "repo.update_actions_secret", "success", "acme/api"),
    // acme/web: a write before the exposure and a denied one do not count; 10-02 00:00 does.
    ("vault_audit",  "2026-10-01T10:00:00Z", Category::SecretAccess, "secret.update",              "success", "acme/web"),
    ("vault_audit",  "2026-10-01T13:00:00Z", Category::SecretAccess, "secret.update",              "denied",  "acme/web"),
    ("vault_audit",  "2026-10-02T00:00:00Z", Category::SecretAccess, "secret.update",              "success", "acme/web"),
];

fn rotation_events() -> Vec<Event> {
    let mut events = finding_events(EXPOSURES);
    for (i, &(source, time, category, action, outcome, repo)) in SECRET_WRITES.iter().enumerate() {
        events.push(event(
            source,
            &format!("write-{i}"),
            time,
            category,
            action,
            outcome,
            |e| {
                e.org = owned("acme");
                e.repo = owned(repo);
                e.target_type = owned("secret");
            },
        ));
    }
    events
}

// ------------------------------------------------------------- deployments

/// `(source, action, repo, run id, environment, revision, strategy,
/// vcs_ref_is_default, approval_state)`; empty text is unknown.
type DeployRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<bool>,
    &'static str,
);

const GH: &str = "github_webhook";
const CREATED: &str = "deployment.created";
const STATUS: &str = "deployment_status.created";
const APPROVED: &str = "deployment_review.approved";

#[rustfmt::skip]
const DEPLOYMENTS: &[DeployRow] = &[
    // D1: production canary from the default branch, approved on its run
    // (twice: a second review must not count it twice).
    (GH, CREATED,  "acme/api", "r1", "production", "aaa", "canary", Some(true), ""),
    (GH, STATUS,   "acme/api", "r1", "production", "aaa", "canary", None, ""),
    (GH, APPROVED, "acme/api", "r1", "production", "aaa", "", Some(true), "approved"),
    (GH, APPROVED, "acme/api", "r1", "production", "aaa", "", Some(true), "approved"),
    // D2: production rolling from another branch (its status row claims the
    // default branch: the rows disagree); a review was only requested.
    (GH, CREATED,  "acme/api", "r2", "production", "bbb", "rolling", Some(false), ""),
    (GH, STATUS,   "acme/api", "r2", "production", "bbb", "rolling", Some(true), ""),
    (GH, "deployment_review.requested", "acme/api", "r2", "production", "bbb", "", Some(false), "pending"),
    // D3: GitLab production, two status rows, approved by environment and revision.
    ("gitlab", "deployment.running",  "acme-platform/edge", "", "production", "ccc", "", None, ""),
    ("gitlab", "deployment.success",  "acme-platform/edge", "", "production", "ccc", "", None, ""),
    ("gitlab", "deployment.approved", "acme-platform/edge", "", "production", "ccc", "", None, "approved"),
    // D4: staging blue/green from the default branch.
    (GH, CREATED, "acme/api", "r3", "staging", "ddd", "blue_green", Some(true), ""),
    // D6: preprod is not production-like.
    ("argocd", "argocd.deployed", "acme/api", "", "preprod-api", "eee", "", None, ""),
    // D7: eu-prod rolling from the default branch, approved on a re-run r9
    // for the same environment and revision.
    (GH, CREATED,  "acme/api", "r4", "eu-prod", "fff", "rolling", Some(true), ""),
    (GH, APPROVED, "acme/api", "r9", "eu-prod", "fff", "", Some(true), "approved"),
];

fn deployment_events() -> Vec<Event> {
    let mut events: Vec<Event> = DEPLOYMENTS
        .iter()
        .enumerate()
        .map(
            |(
                i,
                &(source, action, repo, run, environment, revision, strategy, is_default, approval),
            )| {
                let id = format!("deploy-{i}");
                let time = "2026-10-01T10:00:00Z";
                event(
                    source,
                    &id,
                    time,
                    Category::Deployment,
                    action,
                    "success",
                    |e| {
                        e.repo = given(repo);
                        e.org = given(repo).and_then(|r| r.split('/').next().map(str::to_owned));
                        e.cicd_pipeline_run_id = given(run);
                        e.deployment_environment_name = given(environment);
                        e.vcs_ref_head_revision = given(revision);
                        e.deploy_strategy = given(strategy);
                        e.vcs_ref_is_default = is_default;
                        e.approval_state = given(approval);
                        e.correlation_id = Some(format!("c-{i}"));
                    },
                )
            },
        )
        .collect();
    // Kubernetes rollouts on 10-02: no repository, one per audit id.
    for (id, action, strategy) in [
        ("k1", "rollout.patch", "canary"),
        ("k2", "deployment.patch", "rolling"),
    ] {
        events.push(event(
            "k8s_audit",
            id,
            "2026-10-02T10:00:00Z",
            Category::Deployment,
            action,
            "success",
            |e| {
                e.deploy_strategy = owned(strategy);
                e.correlation_id = owned(id);
            },
        ));
    }
    events
}

// ------------------------------------------------------------------ policy

/// `(time, org, repo, outcome)` of policy results over several days.
#[rustfmt::skip]
const POLICY_RESULTS: &[(&str, &str, &str, &str)] = &[
    ("2026-10-01T09:00:00Z", "acme",  "acme/api", "success"),
    ("2026-10-01T09:00:00Z", "acme",  "acme/api", "failure"),
    ("2026-10-05T09:00:00Z", "acme",  "acme/api", "success"),
    ("2026-10-05T09:00:00Z", "acme",  "acme/web", "success"),
    ("2026-10-05T09:00:00Z", "acme",  "acme/web", "failure"),
    ("2026-10-05T09:00:00Z", "acme",  "acme/web", "failure"),
    ("2026-10-05T09:00:00Z", "other", "other/x",  "success"),
    ("2026-10-10T09:00:00Z", "acme",  "acme/web", "success"),
];

fn policy_events(rows: &[(&str, &str, &str, &str)]) -> Vec<Event> {
    rows.iter()
        .enumerate()
        .map(|(i, &(time, org, repo, outcome))| {
            let id = format!("policy-{i}");
            event(
                "conftest",
                &id,
                time,
                Category::PolicyResult,
                "policy.evaluated",
                outcome,
                |e| {
                    e.org = owned(org);
                    e.repo = owned(repo);
                },
            )
        })
        .collect()
}

/// The policy results plus the newest event of the lake, a pipeline run
/// on 10-12, which anchors the window.
fn runner_events() -> Vec<Event> {
    let mut events = policy_events(POLICY_RESULTS);
    let time = "2026-10-12T08:00:00Z";
    events.push(event(
        "github_webhook",
        "run",
        time,
        Category::PipelineRun,
        "workflow_run.completed",
        "success",
        |_| {},
    ));
    events
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn ephemeral_runner_share_counts_each_completed_job_once() {
    let (_dir, service) = lake(&job_events()).await;
    // 10-01 acme/api: j1 ephemeral (1), j2 persistent (0), j7 disputed (0);
    //   j3 unknown, j4 skipped, j5 running are left out -> 1 / 3.
    // 10-01 acme/web: its own j1 -> 1 / 1.   10-02 acme/api: j6 -> 1 / 1.
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-----+-----+",
            "| day        | org  | repo     | num | den |",
            "+------------+------+----------+-----+-----+",
            "| 2026-10-01 | acme | acme/api | 1.0 | 3.0 |",
            "| 2026-10-01 | acme | acme/web | 1.0 | 1.0 |",
            "| 2026-10-02 | acme | acme/api | 1.0 | 1.0 |",
            "+------------+------+----------+-----+-----+",
        ],
        &ratio_rows(&service, "ephemeral_runner_share").await
    );
}

#[tokio::test]
async fn a_self_hosted_runner_name_that_took_several_jobs_is_persistent() {
    // No source says whether these runners are single-use. mac-mini-01 took
    // two jobs (k1, k2): persistent. jit-7f3a took one (k3): still unknown.
    let jobs = [
        ("k1", "mac-mini-01", "2026-10-05T09:00:00Z"),
        ("k2", "mac-mini-01", "2026-10-05T10:00:00Z"),
        ("k3", "jit-7f3a", "2026-10-05T11:00:00Z"),
    ];
    let events: Vec<Event> = jobs
        .iter()
        .map(|&(task, runner, time)| {
            event(
                "github_webhook",
                task,
                time,
                Category::PipelineJob,
                DONE,
                "success",
                |e| {
                    e.org = owned("acme");
                    e.repo = owned("acme/ios");
                    e.cicd_pipeline_task_run_id = owned(task);
                    e.cicd_worker_name = owned(runner);
                    e.runner_hosting = Some(pipewatch_schema::RunnerHosting::SelfHosted);
                },
            )
        })
        .collect();
    let (_dir, service) = lake(&events).await;
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-----+-----+",
            "| day        | org  | repo     | num | den |",
            "+------------+------+----------+-----+-----+",
            "| 2026-10-05 | acme | acme/ios | 0.0 | 2.0 |",
            "+------------+------+----------+-----+-----+",
        ],
        &ratio_rows(&service, "ephemeral_runner_share").await
    );
}

#[tokio::test]
async fn persistent_runners_with_secrets_lists_jobs_whose_run_read_a_secret() {
    let (_dir, service) = lake(&job_events()).await;
    let detail = metrics::detail("persistent_runners_with_secrets").expect("registered");
    let output = run_detail(&service, detail, window("30d"))
        .await
        .expect("runs");
    // Only j2: persistent, and its run r1 of acme/api read one secret (the
    // pending request half is not a second access). j7 is persistent but
    // r2 read a secret only in acme/web.
    assert_batches_eq!(
        [
            "+------------+------+----------+--------+--------+-------+---------------+-----------------+-------------------+",
            "| day        | org  | repo     | run_id | job_id | job   | runner        | secret_accesses | secrets           |",
            "+------------+------+----------+--------+--------+-------+---------------+-----------------+-------------------+",
            "| 2026-10-01 | acme | acme/api | r1     | j2     | build | ci-builder-01 | 1               | [secret/data/api] |",
            "+------------+------+----------+--------+--------+-------+---------------+-----------------+-------------------+",
        ],
        &output.batches
    );
    let report = run_metrics(&service, Scope::Org, Window::default())
        .await
        .expect("runs");
    assert_eq!(report.details.len(), 1);
    assert_eq!(report.details[0].1, 1);
    assert!(render_table(&report).contains("persistent_runners_with_secrets: 1 row(s)"));
}

#[tokio::test]
async fn oidc_auth_share_divides_oidc_by_known_identities_of_the_stores() {
    let (_dir, service) = lake(&identity_events()).await;
    // 10-03 unattributed: c1 oidc (1), c2 static (0), v3 token (0), k1 token
    //   denied (0) -> 1 / 4; v1 pending, k2 unknown, g1 github, c3 config
    //   change are left out.  10-03 acme/api: v2 oidc -> 1 / 1.
    // 10-04 unattributed: c4, c5, c6 static keys -> 0 / 3.
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-----+-----+",
            "| day        | org  | repo     | num | den |",
            "+------------+------+----------+-----+-----+",
            "| 2026-10-03 |      |          | 1.0 | 4.0 |",
            "| 2026-10-03 | acme | acme/api | 1.0 | 1.0 |",
            "| 2026-10-04 |      |          | 0.0 | 3.0 |",
            "+------------+------+----------+-----+-----+",
        ],
        &ratio_rows(&service, "oidc_auth_share").await
    );
}

#[tokio::test]
async fn static_keys_in_use_counts_distinct_keys_per_day_and_over_the_window() {
    let (_dir, service) = lake(&identity_events()).await;
    // 10-03: AKIA1 -> 1.  10-04: AKIA1, AKIA2 -> 2 (c6 has no id).
    let sql = format!(
        "SELECT CAST(CAST(day AS DATE) AS VARCHAR) AS day, count(DISTINCT key) AS keys \
         FROM (\n{}\n) AS m GROUP BY CAST(CAST(day AS DATE) AS VARCHAR)",
        sql_of("static_keys_in_use")
    );
    assert_batches_sorted_eq!(
        [
            "+------------+------+",
            "| day        | keys |",
            "+------------+------+",
            "| 2026-10-03 | 1    |",
            "| 2026-10-04 | 2    |",
            "+------------+------+",
        ],
        &rows(&service, &sql).await
    );
    // Over the window: 2 distinct keys, not 1 + 2.
    let report = run_metrics(&service, Scope::Org, window("30d"))
        .await
        .expect("runs");
    let keys = value_of(&report, "static_keys_in_use", metrics::UNATTRIBUTED);
    close(keys.value, 2.0);
    assert_eq!(keys.denominator, None);
    let last_two: Vec<Option<f64>> = keys.series.iter().rev().take(2).map(|p| p.value).collect();
    assert_eq!(last_two, [Some(2.0), Some(1.0)]);
    // OIDC by org over the window: unattributed 1 / 7, acme 1 / 1.
    close(
        value_of(&report, "oidc_auth_share", metrics::UNATTRIBUTED).value,
        1.0 / 7.0,
    );
    close(value_of(&report, "oidc_auth_share", "acme").value, 1.0);
}

#[tokio::test]
async fn secret_rotation_mttr_measures_exposure_to_next_rotation() {
    let (_dir, service) = lake(&rotation_events()).await;
    let sql = format!(
        "SELECT CAST(CAST(day AS DATE) AS VARCHAR) AS day, org, repo, \
         sum(numerator) AS hours, sum(denominator) AS rotated, sum(open) AS open \
         FROM (\n{}\n) AS m GROUP BY CAST(CAST(day AS DATE) AS VARCHAR), org, repo",
        sql_of("secret_rotation_mttr_hours")
    );
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-------+---------+------+",
            "| day        | org  | repo     | hours | rotated | open |",
            "+------------+------+----------+-------+---------+------+",
            "| 2026-10-01 | acme | acme/api | 6.0   | 1.0     | 0    |",
            "| 2026-10-01 | acme | acme/web | 12.0  | 1.0     | 0    |",
            "| 2026-10-02 | acme | acme/ops | 0.0   | 0.0     | 1    |",
            "+------------+------+----------+-------+---------+------+",
        ],
        &rows(&service, &sql).await
    );
    // By org: mean of 6 h and 12 h = 9 h, one exposure still open.
    let report = run_metrics(&service, Scope::Org, window("30d"))
        .await
        .expect("runs");
    let mttr = value_of(&report, "secret_rotation_mttr_hours", "acme");
    close(mttr.value, 9.0);
    assert_eq!(mttr.open, Some(1));
    assert_eq!(mttr.denominator, Some(2.0));
}

#[tokio::test]
async fn policy_compliance_rate_counts_success_among_verdicts() {
    let outcomes = [
        "success", "success", "success", "failure", "warning", "denied", "skipped", "unknown",
    ];
    let rows: Vec<(&str, &str, &str, &str)> = outcomes
        .iter()
        .map(|&outcome| ("2026-10-01T00:00:00Z", "acme", "acme/api", outcome))
        .collect();
    let (_dir, service) = lake(&policy_events(&rows)).await;
    // 3 successes out of 6 verdicts; skipped and unknown have none.
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-----+-----+",
            "| day        | org  | repo     | num | den |",
            "+------------+------+----------+-----+-----+",
            "| 2026-10-01 | acme | acme/api | 3.0 | 6.0 |",
            "+------------+------+----------+-----+-----+",
        ],
        &ratio_rows(&service, "policy_compliance_rate").await
    );
}

#[tokio::test]
async fn progressive_delivery_share_counts_each_deployment_once() {
    let (_dir, service) = lake(&deployment_events()).await;
    // 10-01 acme/api: D1 canary (1), D2 rolling (0), D4 blue_green (1), D7
    //   rolling (0) -> 2 / 4; D3 and D6 have no strategy, reviews are not
    //   deployments.  10-02 unattributed: canary (1), rolling (0) -> 1 / 2.
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-----+-----+",
            "| day        | org  | repo     | num | den |",
            "+------------+------+----------+-----+-----+",
            "| 2026-10-01 | acme | acme/api | 2.0 | 4.0 |",
            "| 2026-10-02 |      |          | 1.0 | 2.0 |",
            "+------------+------+----------+-----+-----+",
        ],
        &ratio_rows(&service, "progressive_delivery_share").await
    );
}

#[tokio::test]
async fn approved_deployments_share_matches_approvals_by_run_or_revision() {
    let (_dir, service) = lake(&deployment_events()).await;
    // Production-like: D1 (approved on run r1), D2 (only requested), D7
    //   (eu-prod, approved by environment + revision) -> acme/api 2 / 3;
    //   D3 (approved by environment + revision) -> acme-platform/edge 1 / 1.
    //   Staging D4, preprod D6 and the Kubernetes rollouts are not production-like.
    assert_batches_sorted_eq!(
        [
            "+------------+---------------+--------------------+-----+-----+",
            "| day        | org           | repo               | num | den |",
            "+------------+---------------+--------------------+-----+-----+",
            "| 2026-10-01 | acme          | acme/api           | 2.0 | 3.0 |",
            "| 2026-10-01 | acme-platform | acme-platform/edge | 1.0 | 1.0 |",
            "+------------+---------------+--------------------+-----+-----+",
        ],
        &ratio_rows(&service, "approved_deployments_share").await
    );
}

#[tokio::test]
async fn protected_branch_deployment_share_counts_known_refs() {
    let (_dir, service) = lake(&deployment_events()).await;
    // Known: D1 true (its status row does not say), D2 false (one row says
    //   true, one false), D4 true, D7 true -> 3 / 4. D3, D6 and the rollouts do not say.
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-----+-----+",
            "| day        | org  | repo     | num | den |",
            "+------------+------+----------+-----+-----+",
            "| 2026-10-01 | acme | acme/api | 3.0 | 4.0 |",
            "+------------+------+----------+-----+-----+",
        ],
        &ratio_rows(&service, "protected_branch_deployment_share").await
    );
}

#[tokio::test]
async fn findings_by_severity_counts_distinct_findings() {
    #[rustfmt::skip]
    let findings: [FindingRow; 6] = [
        // Seen by two scans on 10-01 and again on 10-02: one finding a day.
        ("2026-10-01T01:00:00Z", "acme/api", "gitleaks", "aws",   "AWS key"),
        ("2026-10-01T02:00:00Z", "acme/api", "gitleaks", "aws",   "AWS key"),
        ("2026-10-02T01:00:00Z", "acme/api", "gitleaks", "aws",   "AWS key"),
        // Critical, in two repositories: two findings.
        ("2026-10-01T01:00:00Z", "acme/api", "CodeQL",   "q1",    "SSRF"),
        ("2026-10-01T01:00:00Z", "acme/web", "CodeQL",   "q2",    "SSRF"),
        // No severity said.
        ("2026-10-02T01:00:00Z", "acme/web", "Trivy",    "CVE-1", "vuln"),
    ];
    let mut events = finding_events(&findings);
    for e in &mut events {
        match e.tool_name.as_deref() {
            Some("CodeQL") => e.severity = Some(Severity::Critical),
            Some("Trivy") => e.severity = None,
            _ => {}
        }
    }
    let (_dir, service) = lake(&events).await;
    let sql = format!(
        "SELECT CAST(CAST(day AS DATE) AS VARCHAR) AS day, org, severity, tool_name, \
         count(DISTINCT key) AS findings FROM (\n{}\n) AS m \
         GROUP BY CAST(CAST(day AS DATE) AS VARCHAR), org, severity, tool_name",
        sql_of("findings_by_severity")
    );
    assert_batches_sorted_eq!(
        [
            "+------------+------+----------+-----------+----------+",
            "| day        | org  | severity | tool_name | findings |",
            "+------------+------+----------+-----------+----------+",
            "| 2026-10-01 | acme | critical | CodeQL    | 2        |",
            "| 2026-10-01 | acme | high     | gitleaks  | 1        |",
            "| 2026-10-02 | acme | high     | gitleaks  | 1        |",
            "| 2026-10-02 | acme | unknown  | Trivy     | 1        |",
            "+------------+------+----------+-----------+----------+",
        ],
        &rows(&service, &sql).await
    );
    // Over the window, the gitleaks finding seen on two days is one finding.
    let report = run_metrics(&service, Scope::Org, window("30d"))
        .await
        .expect("runs");
    type Row = (Vec<(&'static str, String)>, Option<f64>);
    let breakdown: Vec<Row> = report
        .values
        .iter()
        .filter(|v| v.metric.name == "findings_by_severity")
        .map(|v| (v.breakdown.clone(), v.value))
        .collect();
    let row = |severity: &str, tool: &str, n: f64| {
        (
            vec![
                ("severity", severity.to_owned()),
                ("tool_name", tool.to_owned()),
            ],
            Some(n),
        )
    };
    assert_eq!(
        breakdown,
        [
            row("critical", "CodeQL", 2.0),
            row("high", "gitleaks", 1.0),
            row("unknown", "Trivy", 1.0),
        ]
    );
    let json = render_json(&report);
    let entry = json
        .as_array()
        .expect("array")
        .iter()
        .find(|o| {
            o["metric"] == "findings_by_severity" && o["breakdown"]["tool_name"] == "gitleaks"
        })
        .expect("gitleaks row");
    assert_eq!(entry["value"], 1.0);
    assert_eq!(entry["breakdown"]["severity"], "high");
    assert!(render_table(&report).contains("findings_by_severity"));
}

const POLICY: &str = "policy_compliance_rate";

#[tokio::test]
async fn the_window_ends_at_the_newest_event_and_cuts_whole_days() {
    let (_dir, service) = lake(&runner_events()).await;

    // 30d: everything. acme: successes 1+1+1+1 = 4 of 2+1+3+1 = 7; other 1/1.
    let all = run_metrics(&service, Scope::Org, window("30d"))
        .await
        .expect("runs");
    assert_eq!(metrics::format_day(all.last_day), "2026-10-12");
    assert_eq!(metrics::format_day(all.first_day), "2026-09-13");
    let acme = value_of(&all, POLICY, "acme");
    close(acme.value, 4.0 / 7.0);
    assert_eq!((acme.numerator, acme.denominator), (4.0, Some(7.0)));
    close(value_of(&all, POLICY, "other").value, 1.0);
    assert_eq!(acme.series.len(), 30);

    // 8d: 10-05 ..= 10-12 drops 10-01. acme: 10-05 api 1/1 + web 1/3, 10-10 web 1/1 = 3/5.
    let eight = run_metrics(&service, Scope::Org, window("8d"))
        .await
        .expect("runs");
    assert_eq!(metrics::format_day(eight.first_day), "2026-10-05");
    let acme = value_of(&eight, POLICY, "acme");
    close(acme.value, 3.0 / 5.0);
    let series: Vec<(String, Option<f64>)> = acme
        .series
        .iter()
        .map(|p| (metrics::format_day(p.day), p.value))
        .collect();
    assert_eq!(
        series,
        [
            ("2026-10-05".to_owned(), Some(0.5)),
            ("2026-10-06".to_owned(), None),
            ("2026-10-07".to_owned(), None),
            ("2026-10-08".to_owned(), None),
            ("2026-10-09".to_owned(), None),
            ("2026-10-10".to_owned(), Some(1.0)),
            ("2026-10-11".to_owned(), None),
            ("2026-10-12".to_owned(), None),
        ]
    );

    // 3d: 10-10 ..= 10-12: acme 1/1, other has nothing in the window.
    let three = run_metrics(&service, Scope::Org, window("3d"))
        .await
        .expect("runs");
    close(value_of(&three, POLICY, "acme").value, 1.0);
    assert_eq!(scopes_of(&three, POLICY), [Some("acme".to_owned())]);

    // 12h: the newest day alone, which has no policy results: one empty entry.
    let half = run_metrics(&service, Scope::Org, window("12h"))
        .await
        .expect("runs");
    assert_eq!(half.first_day, half.last_day);
    let empty: Vec<&MetricValue> = half
        .values
        .iter()
        .filter(|v| v.metric.name == POLICY)
        .collect();
    assert_eq!(empty.len(), 1);
    assert_eq!((empty[0].scope.clone(), empty[0].value), (None, None));
}

#[tokio::test]
async fn values_group_by_org_or_by_repo() {
    let (_dir, service) = lake(&runner_events()).await;
    let by_org = run_metrics(&service, Scope::Org, window("8d"))
        .await
        .expect("runs");
    assert_eq!(
        scopes_of(&by_org, POLICY),
        [Some("acme".to_owned()), Some("other".to_owned())]
    );
    // acme/api 10-05: 1/1; acme/web 10-05 + 10-10: 2/4; other/x 1/1.
    let by_repo = run_metrics(&service, Scope::Repo, window("8d"))
        .await
        .expect("runs");
    assert_eq!(
        scopes_of(&by_repo, POLICY),
        [
            Some("acme/api".to_owned()),
            Some("acme/web".to_owned()),
            Some("other/x".to_owned())
        ]
    );
    close(value_of(&by_repo, POLICY, "acme/api").value, 1.0);
    close(value_of(&by_repo, POLICY, "acme/web").value, 0.5);
    let web = value_of(&by_repo, POLICY, "acme/web");
    assert_eq!((web.numerator, web.denominator), (2.0, Some(4.0)));

    // JSON: one object per metric and scope with its series.
    let json = render_json(&by_repo);
    let web = json
        .as_array()
        .expect("array")
        .iter()
        .find(|o| o["metric"] == POLICY && o["scope"] == "acme/web")
        .expect("acme/web");
    assert_eq!(web["value"], 0.5);
    assert_eq!(web["numerator"], 2.0);
    assert_eq!(web["denominator"], 4.0);
    assert_eq!(web["target"], 0.95);
    assert_eq!(web["series"].as_array().map(Vec::len), Some(8));
    // acme/web on 10-05: 1 success of 3.
    assert_eq!(web["series"][0]["day"], "2026-10-05");
    close(web["series"][0]["value"].as_f64(), 1.0 / 3.0);
    assert_eq!(web["series"][1]["value"], serde_json::Value::Null);
    // Table: one line per metric and scope.
    let table = render_table(&by_repo);
    assert!(
        table.contains("window 8d (2026-10-05 .. 2026-10-12"),
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.starts_with(POLICY) && l.contains("acme/web"))
        .expect("a line for acme/web");
    assert!(line.contains("0.500") && line.contains("2/4"), "{line}");
}

#[tokio::test]
async fn an_empty_lake_has_nothing_to_measure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = QueryService::open(dir.path(), QueryLimits::default())
        .await
        .expect("opens");
    let report = run_metrics(&service, Scope::Org, Window::default())
        .await
        .expect("runs");
    assert!(report.values.is_empty());
    assert!(render_table(&report).contains("no events"));
    assert_eq!(render_json(&report), serde_json::json!([]));
}

#[tokio::test]
async fn rollups_give_the_same_report_as_the_lake_for_every_scope_and_window() {
    let mut events = job_events();
    events.extend(identity_events());
    events.extend(finding_events(EXPOSURES));
    events.extend(rotation_events());
    events.extend(deployment_events());
    events.extend(runner_events());
    let (dir, service) = lake(&events).await;
    let version = pipewatch_analytics::query::lake_version(dir.path());
    let rollups = metrics::Rollups::build(&service, version)
        .await
        .expect("rollups build");
    assert_eq!(rollups.lake_version(), version);
    let mut compared = 0;
    for scope in [Scope::Org, Scope::Repo] {
        for text in ["1d", "3d", "8d", "30d", "365d"] {
            let from_lake = run_metrics(&service, scope, window(text))
                .await
                .expect("from the lake");
            let from_rollups = rollups
                .report(scope, window(text))
                .await
                .expect("from the rollups");
            assert_eq!(
                render_json(&from_rollups),
                render_json(&from_lake),
                "{scope:?} over {text}"
            );
            assert_eq!(from_rollups.details, from_lake.details, "{scope:?} {text}");
            compared += from_lake.values.len();
        }
    }
    assert!(
        compared > 50,
        "the fixtures exercise the metrics: {compared}"
    );

    // Events per source and hour add up to the lake's rows.
    let counted = rollups
        .service()
        .count(&format!(
            "SELECT CAST(sum(events) AS BIGINT) FROM {}",
            metrics::EVENT_COUNTS
        ))
        .await
        .expect("counts");
    assert_eq!(counted, events.len() as u64);

    // A new file changes the lake's version, so the rollups read as stale.
    std::fs::write(dir.path().join("events").join("extra.parquet"), b"PAR1").expect("a new file");
    assert_ne!(
        pipewatch_analytics::query::lake_version(dir.path()),
        version
    );
}
