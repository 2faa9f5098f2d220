//! Workflows and their jobs: for each kind of repository, which workflows
//! it has, which jobs they run in which stage, on which runners, with which
//! stable resource profile, which hosts they talk to, and which secrets,
//! cloud roles, scanners and policy checks they use.

use super::{Lang, RepoKind, Strategy};

/// What a workflow is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WfKind {
    Ci,
    CodeQl,
    Release,
    Deploy,
    Labeler,
    Nightly,
    LegacyExport,
    BackupSync,
    Maintenance,
    /// A GitLab project's `.gitlab-ci.yml` pipeline.
    Pipeline,
}

/// Where a job asks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunnerKind {
    /// GitHub-hosted, ephemeral.
    Hosted,
    /// Self-hosted, ephemeral (Actions Runner Controller pods).
    Arc,
    /// A persistent self-hosted machine (index into `Org::hosts`).
    Persistent(usize),
    /// GitLab.com SaaS shared runners.
    GitlabShared,
    /// The group's own Kubernetes runner.
    GitlabGroup,
}

/// When a job is part of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Always,
    DefaultBranch,
    /// Only in runs that target this environment (manual GitLab jobs).
    Env(&'static str),
}

/// Which environment a job deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvUse {
    None,
    /// The environment chosen for the run (GitHub `deploy` workflow input).
    FromRun,
    Fixed(&'static str),
}

/// How a job reaches AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwsUse {
    None,
    /// GitHub OIDC into the service's deploy role, then Secrets Manager.
    Deploy,
    /// GitHub OIDC into the read-only Terraform plan role.
    TerraformPlan,
    /// GitLab OIDC into the Terraform role.
    GitlabTerraform,
    /// A long-lived IAM user key (index into `Org::iam_users`).
    LegacyKey(usize),
}

/// A scanner that writes SARIF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tool {
    CodeQl,
    Trivy,
    Gitleaks,
}

impl Tool {
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Tool::CodeQl => "codeql",
            Tool::Trivy => "trivy",
            Tool::Gitleaks => "gitleaks",
        }
    }
}

/// A job's stable resource profile: medians of its log-normal noise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profile {
    pub(crate) dur_s: f64,
    pub(crate) queue_s: f64,
    pub(crate) cores: f64,
    pub(crate) mem_mb: f64,
    pub(crate) egress_mb: f64,
}

const fn prof(dur_s: f64, cores: f64, mem_mb: f64, egress_mb: f64) -> Profile {
    Profile {
        dur_s,
        queue_s: 6.0,
        cores,
        mem_mb,
        egress_mb,
    }
}

/// One job of a workflow.
#[derive(Debug, Clone)]
pub(crate) struct JobSpec {
    pub(crate) name: String,
    pub(crate) stage: u8,
    pub(crate) when: When,
    pub(crate) runner: RunnerKind,
    pub(crate) profile: Profile,
    /// Hosts the job downloads from (GET).
    pub(crate) downloads: Vec<&'static str>,
    /// Hosts the job sends to, with the HTTP method.
    pub(crate) uploads: Vec<(&'static str, &'static str)>,
    /// Vault KV paths read (`secret/data/...`).
    pub(crate) vault: Vec<String>,
    pub(crate) aws: AwsUse,
    pub(crate) env: EnvUse,
    pub(crate) scan: Option<Tool>,
    pub(crate) policy: bool,
    pub(crate) fail_rate: f64,
    pub(crate) steps: Vec<&'static str>,
    /// GitHub Actions secrets handed to the job (audit `secrets_passed`).
    pub(crate) secrets_passed: Vec<&'static str>,
}

impl JobSpec {
    fn new(name: impl Into<String>, stage: u8, runner: RunnerKind, profile: Profile) -> Self {
        JobSpec {
            name: name.into(),
            stage,
            when: When::Always,
            runner,
            profile,
            downloads: Vec::new(),
            uploads: Vec::new(),
            vault: Vec::new(),
            aws: AwsUse::None,
            env: EnvUse::None,
            scan: None,
            policy: false,
            fail_rate: 0.01,
            steps: Vec::new(),
            secrets_passed: Vec::new(),
        }
    }

    fn get(mut self, hosts: &[&'static str]) -> Self {
        self.downloads.extend_from_slice(hosts);
        self
    }

    fn send(mut self, host: &'static str, method: &'static str) -> Self {
        self.uploads.push((host, method));
        self
    }

    fn steps(mut self, steps: &[&'static str]) -> Self {
        self.steps = steps.to_vec();
        self
    }

    fn fail(mut self, rate: f64) -> Self {
        self.fail_rate = rate;
        self
    }
}

/// One workflow (GitHub) or pipeline definition (GitLab).
#[derive(Debug, Clone)]
pub(crate) struct Workflow {
    pub(crate) kind: WfKind,
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) jobs: Vec<JobSpec>,
}

/// What the workflow builders need to know about the repository.
#[derive(Debug, Clone)]
pub(crate) struct RepoFacts<'a> {
    pub(crate) team: &'a str,
    pub(crate) name: &'a str,
    pub(crate) lang: Lang,
    pub(crate) kind: RepoKind,
    pub(crate) public: bool,
    /// Whether its integration tests read a Vault test database secret.
    pub(crate) integration_secret: bool,
    pub(crate) vault_deploy: Vec<String>,
}

fn wf(kind: WfKind, name: &str, file: &str, jobs: Vec<JobSpec>) -> Workflow {
    Workflow {
        kind,
        id: 0,
        name: name.to_owned(),
        path: format!(".github/workflows/{file}"),
        jobs,
    }
}

const CHECKOUT: &[&str] = &["github.com", "codeload.github.com"];

/// The GitHub workflows of a repository.
pub(crate) fn github_workflows(r: &RepoFacts<'_>) -> Vec<Workflow> {
    use RunnerKind::*;
    let reg = r.lang.registries();
    let mut ci = vec![
        JobSpec::new("lint", 0, Hosted, prof(70.0, 1.1, 700.0, 3.0))
            .get(CHECKOUT)
            .get(reg)
            .steps(&["Install dependencies", "Run linters"]),
    ];
    let heavy = match r.kind {
        RepoKind::Data => Some(Persistent(0)),
        RepoKind::Ml => Some(Persistent(1)),
        RepoKind::Mobile => Some(Persistent(2)),
        _ => None,
    };
    match r.kind {
        RepoKind::Infra => ci.push({
            let mut j = JobSpec::new("plan", 1, Hosted, prof(180.0, 0.9, 900.0, 4.0))
                .get(CHECKOUT)
                .get(reg)
                .send("sts.amazonaws.com", "POST")
                .steps(&["terraform init", "terraform plan"])
                .fail(0.05);
            j.aws = AwsUse::TerraformPlan;
            j
        }),
        RepoKind::Charts => ci.push(
            JobSpec::new("template", 1, Hosted, prof(90.0, 0.8, 600.0, 2.0))
                .get(CHECKOUT)
                .get(&["get.helm.sh", "ghcr.io"])
                .steps(&["helm template", "kubeconform"]),
        ),
        RepoKind::Mobile => {
            ci.push(
                JobSpec::new(
                    "unit-tests",
                    0,
                    Persistent(2),
                    prof(600.0, 3.0, 5200.0, 6.0),
                )
                .get(CHECKOUT)
                .get(reg)
                .steps(&["xcodebuild test"])
                .fail(0.06),
            );
            ci.push(
                JobSpec::new(
                    "build-ios",
                    1,
                    Persistent(2),
                    prof(900.0, 3.4, 6400.0, 15.0),
                )
                .get(CHECKOUT)
                .get(reg)
                .steps(&["xcodebuild archive"]),
            );
        }
        RepoKind::Docs => ci.push(
            JobSpec::new("build-docs", 0, Hosted, prof(150.0, 1.2, 1100.0, 4.0))
                .get(CHECKOUT)
                .get(reg)
                .steps(&["npm run build"]),
        ),
        _ => {
            ci.push(
                JobSpec::new(
                    "test",
                    0,
                    heavy.unwrap_or(Hosted),
                    prof(300.0, 1.7, 1900.0, 8.0),
                )
                .get(CHECKOUT)
                .get(reg)
                .send("codecov.io", "POST")
                .steps(&["Install dependencies", "Run unit tests", "Upload coverage"])
                .fail(0.07),
            );
        }
    }
    if let RepoKind::Service(_) = r.kind {
        ci.push(
            JobSpec::new("build", 1, Hosted, prof(260.0, 1.9, 2600.0, 30.0))
                .get(CHECKOUT)
                .get(reg)
                .get(&["registry-1.docker.io", "production.cloudflare.docker.com"])
                .steps(&["Set up Docker Buildx", "Build image"]),
        );
        if r.integration_secret {
            let mut j = JobSpec::new("integration-test", 1, Arc, prof(540.0, 1.5, 3200.0, 12.0))
                .get(CHECKOUT)
                .get(reg)
                .get(&["registry-1.docker.io"])
                .send(super::VAULT_ADDR, "POST")
                .steps(&["Start dependencies", "Run integration tests"])
                .fail(0.05);
            j.vault = vec![format!("secret/data/{}/{}/ci-test-db", r.team, r.name)];
            ci.push(j);
        }
        let mut leaks = JobSpec::new("gitleaks", 0, Hosted, prof(35.0, 0.8, 300.0, 1.0))
            .get(CHECKOUT)
            .get(&["ghcr.io"])
            .steps(&["Run gitleaks"]);
        leaks.when = When::DefaultBranch;
        leaks.scan = Some(Tool::Gitleaks);
        ci.push(leaks);
    }
    let mut out = vec![wf(WfKind::Ci, "CI", "ci.yml", ci)];

    if let Some(lang) = r.lang.codeql() {
        let dur = match r.lang {
            Lang::Java => 900.0,
            Lang::Swift => 1100.0,
            Lang::Go => 420.0,
            _ => 520.0,
        };
        let runner = if r.kind == RepoKind::Mobile {
            Persistent(2)
        } else {
            Hosted
        };
        let mut j = JobSpec::new(
            format!("analyze ({lang})"),
            0,
            runner,
            prof(dur, 1.9, 3500.0, 20.0),
        )
        .get(CHECKOUT)
        .get(reg)
        .send("api.github.com", "POST")
        .steps(&["Initialize CodeQL", "Autobuild", "Perform CodeQL Analysis"]);
        j.scan = Some(Tool::CodeQl);
        out.push(wf(WfKind::CodeQl, "CodeQL", "codeql.yml", vec![j]));
    }

    match r.kind {
        RepoKind::Service(strategy) => {
            let mut publish = JobSpec::new(
                "build-and-publish",
                0,
                Hosted,
                prof(420.0, 1.9, 3000.0, 350.0),
            )
            .get(CHECKOUT)
            .get(reg)
            .get(&["registry-1.docker.io"])
            .send(super::VAULT_ADDR, "POST")
            .send("ghcr.io", "PUT")
            .steps(&["Build image", "Sign image", "Push image"]);
            publish.vault = vec!["secret/data/platform/release/cosign-key".to_owned()];
            let mut trivy = JobSpec::new("trivy-scan", 1, Hosted, prof(120.0, 1.2, 1200.0, 3.0))
                .get(&["ghcr.io", "mirror.gcr.io"])
                .steps(&["Run Trivy vulnerability scanner", "Upload SARIF"]);
            trivy.scan = Some(Tool::Trivy);
            out.push(wf(
                WfKind::Release,
                "Release",
                "release.yml",
                vec![publish, trivy],
            ));

            let mut policy = JobSpec::new("policy-check", 0, Hosted, prof(45.0, 0.6, 400.0, 1.0))
                .get(CHECKOUT)
                .get(&["objects.githubusercontent.com"])
                .steps(&["Render manifests", "conftest test"]);
            policy.policy = true;
            let dur = if strategy == Strategy::Canary {
                420.0
            } else {
                180.0
            };
            let mut deploy = JobSpec::new("deploy", 1, Hosted, prof(dur, 0.5, 500.0, 2.0))
                .get(CHECKOUT)
                .send(super::VAULT_ADDR, "POST")
                .send("sts.amazonaws.com", "POST")
                .send("argocd.acme.internal", "POST")
                .send("hooks.slack.com", "POST")
                .steps(&[
                    "Configure AWS credentials",
                    "Import secrets",
                    "argocd app sync",
                    "Notify",
                ])
                .fail(0.02);
            deploy.env = EnvUse::FromRun;
            deploy.aws = AwsUse::Deploy;
            deploy.vault = r.vault_deploy.clone();
            deploy.secrets_passed = vec!["SLACK_WEBHOOK_URL"];
            out.push(wf(
                WfKind::Deploy,
                "Deploy",
                "deploy.yml",
                vec![policy, deploy],
            ));
        }
        RepoKind::Library => {
            let mut publish = JobSpec::new("publish", 0, Hosted, prof(150.0, 1.0, 900.0, 6.0))
                .get(CHECKOUT)
                .get(reg)
                .send(super::VAULT_ADDR, "POST")
                .send(reg[0], "PUT")
                .steps(&["Build package", "Publish package"]);
            publish.vault = vec![format!("secret/data/{}/packages/publish-token", r.team)];
            out.push(wf(WfKind::Release, "Release", "release.yml", vec![publish]));
        }
        RepoKind::Data => {
            let etl = JobSpec::new("etl", 0, Persistent(0), prof(2400.0, 3.2, 12000.0, 900.0))
                .get(CHECKOUT)
                .get(reg)
                .send("acme.snowflakecomputing.com", "PUT")
                .steps(&["Extract", "Transform", "Load"])
                .fail(0.03);
            out.push(wf(WfKind::Nightly, "Nightly ETL", "nightly.yml", vec![etl]));
            let mut export = JobSpec::new(
                "export-reports",
                0,
                Persistent(0),
                prof(600.0, 1.1, 2500.0, 140.0),
            )
            .get(CHECKOUT)
            .get(reg)
            .send("s3.amazonaws.com", "PUT")
            .send("secretsmanager.us-east-1.amazonaws.com", "POST")
            .steps(&["Query warehouse", "Upload reports"]);
            export.aws = AwsUse::LegacyKey(0);
            out.push(wf(
                WfKind::LegacyExport,
                "Legacy report export",
                "legacy-export.yml",
                vec![export],
            ));
        }
        RepoKind::Ml => {
            let train = JobSpec::new("train", 0, Persistent(1), prof(3600.0, 3.8, 14000.0, 60.0))
                .get(CHECKOUT)
                .get(reg)
                .get(&["cdn-lfs.huggingface.co"])
                .steps(&["Prepare features", "Train", "Evaluate"])
                .fail(0.04);
            out.push(wf(
                WfKind::Nightly,
                "Nightly training",
                "train.yml",
                vec![train],
            ));
        }
        RepoKind::Ops => {
            let mut m = JobSpec::new("maintenance", 0, Arc, prof(240.0, 0.6, 500.0, 2.0))
                .get(CHECKOUT)
                .get(reg)
                .send(super::VAULT_ADDR, "POST")
                .steps(&["Import secrets", "Run runbook"]);
            m.vault = vec!["secret/data/platform/ops/db-maintenance".to_owned()];
            out.push(wf(
                WfKind::Maintenance,
                "Maintenance",
                "maintenance.yml",
                vec![m],
            ));
            let mut b = JobSpec::new(
                "backup-sync",
                0,
                Persistent(0),
                prof(900.0, 0.9, 1200.0, 2200.0),
            )
            .get(CHECKOUT)
            .send("s3.amazonaws.com", "PUT")
            .send("secretsmanager.us-east-1.amazonaws.com", "POST")
            .steps(&["Sync backups"]);
            b.aws = AwsUse::LegacyKey(1);
            out.push(wf(
                WfKind::BackupSync,
                "Backup sync",
                "backup-sync.yml",
                vec![b],
            ));
        }
        _ => {}
    }
    if r.public {
        let j = JobSpec::new("label", 0, Hosted, prof(15.0, 0.3, 200.0, 0.2))
            .send("api.github.com", "POST")
            .steps(&["Apply labels"]);
        out.push(wf(WfKind::Labeler, "Labeler", "labeler.yml", vec![j]));
    }
    out
}

/// The pipeline of a GitLab project.
pub(crate) fn gitlab_pipeline(r: &RepoFacts<'_>) -> Workflow {
    use RunnerKind::*;
    let reg = r.lang.registries();
    const CLONE: &[&str] = &["gitlab.com"];
    let mut jobs = vec![
        JobSpec::new("validate", 0, GitlabShared, prof(60.0, 0.8, 500.0, 2.0))
            .get(CLONE)
            .get(reg),
    ];
    match r.kind {
        RepoKind::Infra => {
            let mut plan = JobSpec::new("plan", 1, GitlabGroup, prof(240.0, 0.9, 1000.0, 4.0))
                .get(CLONE)
                .get(reg)
                .send("sts.amazonaws.com", "POST")
                .send(super::VAULT_ADDR, "POST")
                .fail(0.05);
            plan.aws = AwsUse::GitlabTerraform;
            plan.vault = vec!["secret/data/platform/terraform/state-encryption".to_owned()];
            let mut apply = plan.clone();
            apply.name = "apply".to_owned();
            apply.stage = 2;
            apply.when = When::Env("production");
            apply.env = EnvUse::Fixed("production");
            apply.profile = prof(420.0, 0.9, 1100.0, 6.0);
            jobs.push(plan);
            jobs.push(apply);
        }
        RepoKind::Service(_) => {
            jobs.push(
                JobSpec::new("build", 1, GitlabShared, prof(240.0, 1.8, 2400.0, 40.0))
                    .get(CLONE)
                    .get(reg)
                    .send("registry.gitlab.com", "PUT"),
            );
            jobs.push(
                JobSpec::new("test", 1, GitlabShared, prof(200.0, 1.6, 1600.0, 5.0))
                    .get(CLONE)
                    .get(reg)
                    .fail(0.06),
            );
            for (env, stage, when) in [
                ("staging", 2, When::DefaultBranch),
                ("production", 3, When::Env("production")),
            ] {
                let mut d = JobSpec::new(
                    format!("deploy-{env}"),
                    stage,
                    GitlabGroup,
                    prof(150.0, 0.4, 400.0, 1.5),
                )
                .get(&["registry.gitlab.com"])
                .send("kas.gitlab.com", "POST");
                d.when = when;
                d.env = EnvUse::Fixed(env);
                jobs.push(d);
            }
        }
        _ => jobs.push(
            JobSpec::new("test", 1, GitlabShared, prof(300.0, 1.2, 1200.0, 4.0))
                .get(CLONE)
                .get(reg)
                .fail(0.05),
        ),
    }
    Workflow {
        kind: WfKind::Pipeline,
        id: 0,
        name: "pipeline".to_owned(),
        path: ".gitlab-ci.yml".to_owned(),
        jobs,
    }
}
