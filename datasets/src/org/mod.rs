//! The organisation being simulated: people (time zone, working hours,
//! habits), bots, teams, repositories with their workflows and services,
//! runner hosts, secrets and cloud identities. Built once from the seed and
//! read-only afterwards.

mod catalog;
mod workflows;

use chrono::{DateTime, Duration, Utc};

pub(crate) use catalog::{
    AWS_ACCOUNT, AWS_REGION, BUSINESS, BUSINESS_ID, GITLAB_GROUP, GITLAB_HOST,
    GITLAB_RUNNER_PREFIXES, HOSTED_RUNNER_PREFIXES, ORG, ORG_ID, TEAMS, VAULT_ADDR,
};
pub(crate) use workflows::{AwsUse, EnvUse, JobSpec, RunnerKind, Tool, WfKind, When, Workflow};

use crate::calendar::{Hours, Tz};
use crate::rng::{Rng, aws_key, between, chance, hashed_token, hex, index, pick, uniform, uuid};

/// Which forge hosts a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    GitHub,
    GitLab,
}

/// A repository's main language: decides registries, CodeQL and Dependabot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Go,
    Node,
    Python,
    Java,
    Terraform,
    Swift,
}

impl Lang {
    /// Package registries its builds download from.
    pub(crate) fn registries(self) -> &'static [&'static str] {
        match self {
            Lang::Go => &["proxy.golang.org", "sum.golang.org"],
            Lang::Node => &["registry.npmjs.org"],
            Lang::Python => &["pypi.org", "files.pythonhosted.org"],
            Lang::Java => &["repo.maven.apache.org", "plugins.gradle.org"],
            Lang::Terraform => &["registry.terraform.io", "releases.hashicorp.com"],
            Lang::Swift => &["cdn.cocoapods.org"],
        }
    }

    /// The CodeQL language, when CodeQL supports it.
    pub(crate) fn codeql(self) -> Option<&'static str> {
        match self {
            Lang::Go => Some("go"),
            Lang::Node => Some("javascript-typescript"),
            Lang::Python => Some("python"),
            Lang::Java => Some("java-kotlin"),
            Lang::Swift => Some("swift"),
            Lang::Terraform => None,
        }
    }

    /// Dependabot's ecosystem directory and a few dependencies it bumps.
    pub(crate) fn ecosystem(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Lang::Go => (
                "go_modules",
                &[
                    "golang.org/x/net",
                    "google.golang.org/grpc",
                    "github.com/stretchr/testify",
                ],
            ),
            Lang::Node => ("npm_and_yarn", &["axios", "vite", "typescript", "eslint"]),
            Lang::Python => ("pip", &["requests", "boto3", "pydantic", "urllib3"]),
            Lang::Java => (
                "gradle",
                &[
                    "com.fasterxml.jackson.core-jackson-databind",
                    "org.junit.jupiter-junit-jupiter",
                ],
            ),
            Lang::Terraform => ("terraform", &["hashicorp/aws", "hashicorp/helm"]),
            Lang::Swift => ("swift", &["Alamofire", "swift-log"]),
        }
    }
}

/// How a service rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    Canary,
    Rolling,
}

impl Strategy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::Rolling => "rolling",
        }
    }
}

/// What a repository is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepoKind {
    Service(Strategy),
    Library,
    Data,
    Ml,
    Infra,
    Charts,
    Docs,
    Mobile,
    Ops,
}

/// What a person does, which sets their habits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Developer,
    Lead,
    Sre,
    Security,
    Admin,
}

/// A GitHub/GitLab identity as it appears in payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    pub(crate) login: String,
    pub(crate) id: u64,
    pub(crate) bot: bool,
}

/// One member of staff.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) login: String,
    pub(crate) id: u64,
    pub(crate) gitlab_id: u64,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) team: usize,
    pub(crate) role: Role,
    pub(crate) tz: Tz,
    pub(crate) hours: Hours,
    /// Pushes per working day.
    pub(crate) push_rate: f64,
    /// Weekend activity relative to a weekday.
    pub(crate) weekend_rate: f64,
    pub(crate) ip: String,
    pub(crate) browser: &'static str,
    pub(crate) git_agent: &'static str,
    /// `hashed_token` of the OAuth token their git client uses.
    pub(crate) git_token: String,
}

impl Person {
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            login: self.login.clone(),
            id: self.id,
            bot: false,
        }
    }
}

/// The bots that act in the organisation.
#[derive(Debug, Clone)]
pub(crate) struct Bots {
    pub(crate) dependabot: Actor,
    pub(crate) renovate: Actor,
    pub(crate) release: Actor,
    pub(crate) actions: Actor,
}

/// An Argo CD Application of a service in one environment.
#[derive(Debug, Clone)]
pub(crate) struct ArgoApp {
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) env: &'static str,
    pub(crate) namespace: String,
}

/// A deployable service behind a repository.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) app: String,
    pub(crate) strategy: Strategy,
    pub(crate) replicas: u32,
    pub(crate) deploy_role: String,
    /// Secrets Manager names its production deploys read.
    pub(crate) aws_secrets: Vec<String>,
    /// Vault KV paths the running service reads (Kubernetes auth).
    pub(crate) vault_runtime: Vec<String>,
    /// Staging and production Applications (GitHub services only).
    pub(crate) argo: Vec<ArgoApp>,
}

impl Service {
    /// The Kubernetes namespace of an environment.
    pub(crate) fn namespace(&self, env: &str) -> String {
        if env == "production" {
            self.app.clone()
        } else {
            format!("{}-{env}", self.app)
        }
    }
}

/// A repository (GitHub) or project (GitLab).
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    pub(crate) provider: Provider,
    pub(crate) name: String,
    pub(crate) full_name: String,
    pub(crate) id: u64,
    pub(crate) team: usize,
    pub(crate) lang: Lang,
    pub(crate) kind: RepoKind,
    pub(crate) public: bool,
    pub(crate) description: &'static str,
    pub(crate) weight: f64,
    /// Day of the period on which it is created (cold start), if not before.
    pub(crate) created_day: Option<u32>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) service: Option<Service>,
    pub(crate) workflows: Vec<Workflow>,
}

impl Repo {
    pub(crate) fn workflow(&self, kind: WfKind) -> Option<usize> {
        self.workflows.iter().position(|w| w.kind == kind)
    }

    pub(crate) fn url(&self) -> String {
        match self.provider {
            Provider::GitHub => format!("https://github.com/{}", self.full_name),
            Provider::GitLab => format!("https://{GITLAB_HOST}/{}", self.full_name),
        }
    }

    /// Whether the repository exists on day `day`.
    pub(crate) fn exists_on(&self, day: u32) -> bool {
        self.created_day.is_none_or(|d| day >= d)
    }
}

/// A persistent self-hosted runner machine.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) labels: Vec<String>,
    pub(crate) ip: String,
}

/// A long-lived IAM user key used by a legacy job.
#[derive(Debug, Clone)]
pub(crate) struct IamUser {
    pub(crate) name: String,
    pub(crate) key_id: String,
    pub(crate) principal_id: String,
}

/// The whole organisation.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub(crate) people: Vec<Person>,
    pub(crate) bots: Bots,
    pub(crate) repos: Vec<Repo>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) iam_users: Vec<IamUser>,
    /// The SRE whose night-time maintenance runs are routine.
    pub(crate) oncall: usize,
}

impl Org {
    /// Builds the organisation: `scale` multiplies the head count (40 at 1.0).
    pub(crate) fn build(rng: &mut Rng, scale: f64, start: DateTime<Utc>, days: u32) -> Org {
        let people = build_people(rng, scale);
        let oncall = people
            .iter()
            .position(|p| p.role == Role::Sre)
            .unwrap_or_default();
        let hosts = catalog::PERSISTENT_HOSTS
            .iter()
            .enumerate()
            .map(|(i, (name, labels, ip))| Host {
                name: (*name).to_owned(),
                id: 40 + i as u64 * 3,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                ip: (*ip).to_owned(),
            })
            .collect();
        let iam_users = ["svc-reports-legacy", "svc-backup-sync"]
            .iter()
            .map(|name| IamUser {
                name: (*name).to_owned(),
                key_id: aws_key(rng, "AKIA"),
                principal_id: aws_key(rng, "AIDA"),
            })
            .collect();
        let mut repos = Vec::new();
        let cold_start_day = (days * 9 / 20).max(1);
        for (i, def) in catalog::GITHUB_REPOS.iter().enumerate() {
            let last = i + 1 == catalog::GITHUB_REPOS.len();
            repos.push(build_repo(
                rng,
                def,
                Provider::GitHub,
                start,
                last.then_some(cold_start_day),
            ));
        }
        for def in catalog::GITLAB_PROJECTS {
            repos.push(build_repo(rng, def, Provider::GitLab, start, None));
        }
        let mut next_wf = 118_000_000 + between(rng, 0, 900_000) as u64;
        for repo in &mut repos {
            for w in &mut repo.workflows {
                w.id = next_wf;
                next_wf += between(rng, 1_000, 400_000) as u64;
            }
        }
        let bot = |login: &str, id: u64| Actor {
            login: login.to_owned(),
            id,
            bot: true,
        };
        Org {
            people,
            bots: Bots {
                dependabot: bot("dependabot[bot]", 49_699_333),
                renovate: bot("renovate[bot]", 29_139_614),
                release: bot("acme-release[bot]", 151_408_372),
                actions: bot("github-actions[bot]", 41_898_282),
            },
            repos,
            hosts,
            iam_users,
            oncall,
        }
    }

    /// Indexes of people in a team.
    pub(crate) fn team_members(&self, team: usize) -> Vec<usize> {
        (0..self.people.len())
            .filter(|i| self.people[*i].team == team)
            .collect()
    }

    /// The lead of a team (or anyone in it).
    pub(crate) fn team_lead(&self, team: usize) -> usize {
        let members = self.team_members(team);
        members
            .iter()
            .copied()
            .find(|i| self.people[*i].role == Role::Lead)
            .or_else(|| members.first().copied())
            .unwrap_or_default()
    }

    /// People who change organisation settings.
    pub(crate) fn admins(&self) -> Vec<usize> {
        (0..self.people.len())
            .filter(|i| self.people[*i].role == Role::Admin)
            .collect()
    }

    pub(crate) fn repos_of(&self, provider: Provider) -> Vec<usize> {
        (0..self.repos.len())
            .filter(|i| self.repos[*i].provider == provider)
            .collect()
    }
}

fn build_people(rng: &mut Rng, scale: f64) -> Vec<Person> {
    let count = ((40.0 * scale).round() as usize).max(12);
    let mut people: Vec<Person> = Vec::with_capacity(count);
    let mut seen_team = [0usize; 6];
    for n in 0..count {
        let team = catalog::TEAM_PATTERN[n % catalog::TEAM_PATTERN.len()];
        let nth = seen_team[team];
        seen_team[team] += 1;
        let role = match (team, nth) {
            (5, _) => Role::Security,
            (_, 0) => Role::Lead,
            (1, 1) | (1, 3) => Role::Sre,
            (1, 2) | (2, 4) => Role::Admin,
            _ => Role::Developer,
        };
        let zones = TEAMS[team].1;
        let tz = zones[nth % zones.len()];
        let first = catalog::FIRST_NAMES[(n * 7 + 3) % catalog::FIRST_NAMES.len()];
        let last = catalog::LAST_NAMES[(n * 11 + 5) % catalog::LAST_NAMES.len()];
        let style = index(rng, 4);
        let mut login = match style {
            0 => format!("{}{}", first.to_lowercase(), &last[..1].to_lowercase()),
            1 => format!("{}{}", &first[..1].to_lowercase(), last.to_lowercase()),
            2 => format!("{}-{}", first.to_lowercase(), last.to_lowercase()),
            _ => format!(
                "{}{}{}",
                first.to_lowercase(),
                last.to_lowercase(),
                between(rng, 7, 99)
            ),
        };
        while people.iter().any(|p| p.login == login) {
            login.push_str(&between(rng, 1, 9).to_string());
        }
        let start_h = uniform(rng, 7.5, 10.0);
        let hours = Hours {
            start: start_h,
            end: start_h + uniform(rng, 8.0, 9.5),
            evening: uniform(rng, 0.02, 0.08),
        };
        let push_rate = match role {
            Role::Developer => uniform(rng, 1.8, 3.0),
            Role::Lead => uniform(rng, 0.9, 1.5),
            Role::Sre => uniform(rng, 1.0, 1.8),
            Role::Admin => uniform(rng, 0.5, 1.0),
            Role::Security => uniform(rng, 0.1, 0.3),
        };
        let prefix = pick(rng, catalog::home_prefixes(tz));
        let ip = format!("{prefix}.{}.{}", between(rng, 1, 254), between(rng, 1, 254));
        people.push(Person {
            id: between(rng, 1_200_000, 178_000_000) as u64,
            gitlab_id: between(rng, 900_000, 21_000_000) as u64,
            name: format!("{first} {last}"),
            email: format!("{}.{}@acme.io", first.to_lowercase(), last.to_lowercase()),
            team,
            role,
            tz,
            hours,
            push_rate,
            weekend_rate: if chance(rng, 0.15) {
                uniform(rng, 0.2, 0.4)
            } else {
                uniform(rng, 0.03, 0.1)
            },
            ip,
            browser: catalog::BROWSERS[index(rng, catalog::BROWSERS.len())],
            git_agent: catalog::GIT_AGENTS[index(rng, catalog::GIT_AGENTS.len())],
            git_token: hashed_token(&format!("gho_{}", hex(rng, 18))),
            login,
        });
    }
    people
}

fn build_repo(
    rng: &mut Rng,
    def: &catalog::RepoDef,
    provider: Provider,
    start: DateTime<Utc>,
    created_day: Option<u32>,
) -> Repo {
    let team = TEAMS[def.team].0;
    let owner = match provider {
        Provider::GitHub => ORG,
        Provider::GitLab => GITLAB_GROUP,
    };
    let service = match def.kind {
        RepoKind::Service(strategy) => Some(Service {
            app: def.name.to_owned(),
            strategy,
            replicas: between(rng, 3, 12) as u32,
            deploy_role: format!("gha-deploy-{}", def.name),
            aws_secrets: if def.name == "payments-service" {
                vec![
                    format!("prod/{}/config", def.name),
                    format!("prod/{}/stripe-api-key", def.name),
                ]
            } else {
                vec![format!("prod/{}/config", def.name)]
            },
            vault_runtime: vec![
                format!("secret/data/{team}/{}/database", def.name),
                format!("secret/data/{team}/{}/api-keys", def.name),
            ],
            argo: match provider {
                Provider::GitHub => ["staging", "production"]
                    .iter()
                    .map(|env| ArgoApp {
                        name: format!(
                            "{}-{}",
                            def.name,
                            if *env == "production" { "prod" } else { env }
                        ),
                        uid: uuid(rng),
                        env,
                        namespace: if *env == "production" {
                            def.name.to_owned()
                        } else {
                            format!("{}-{env}", def.name)
                        },
                    })
                    .collect(),
                Provider::GitLab => Vec::new(),
            },
        }),
        _ => None,
    };
    let facts = workflows::RepoFacts {
        team,
        name: def.name,
        lang: def.lang,
        kind: def.kind,
        public: def.public,
        integration_secret: chance(rng, 0.6),
        vault_deploy: vec![
            format!("secret/data/{team}/{}/db-migrations", def.name),
            "secret/data/platform/argocd/ci-deployer-token".to_owned(),
        ],
    };
    let workflows = match provider {
        Provider::GitHub => workflows::github_workflows(&facts),
        Provider::GitLab => vec![workflows::gitlab_pipeline(&facts)],
    };
    let created_at = match created_day {
        Some(d) => start + Duration::days(i64::from(d)) + Duration::minutes(between(rng, 600, 840)),
        None => {
            start - Duration::days(between(rng, 200, 2400))
                + Duration::seconds(between(rng, 25_000, 70_000))
        }
    };
    Repo {
        provider,
        name: def.name.to_owned(),
        full_name: format!("{owner}/{}", def.name),
        id: match provider {
            Provider::GitHub => between(rng, 380_000_000, 1_020_000_000) as u64,
            Provider::GitLab => between(rng, 38_000_000, 71_000_000) as u64,
        },
        team: def.team,
        lang: def.lang,
        kind: def.kind,
        public: def.public,
        description: def.description,
        weight: def.weight,
        created_day,
        created_at,
        service,
        workflows,
    }
}
