//! Static tables the organisation is drawn from: names, teams, the
//! repository catalogue, runner hosts, client software strings, IP ranges.

use crate::calendar::Tz;

use super::{Lang, RepoKind, Strategy};

/// GitHub organisation login (and enterprise slug) of the modelled company.
pub(crate) const ORG: &str = "acme";
pub(crate) const ORG_ID: u64 = 92_417_305;
pub(crate) const BUSINESS: &str = "acme-corp";
pub(crate) const BUSINESS_ID: u64 = 31_877;
/// GitLab group holding the few GitLab projects.
pub(crate) const GITLAB_GROUP: &str = "acme-platform";
pub(crate) const GITLAB_HOST: &str = "gitlab.com";
/// The AWS account CI deploys into, and its region.
pub(crate) const AWS_ACCOUNT: &str = "482916037154";
pub(crate) const AWS_REGION: &str = "us-east-1";
pub(crate) const VAULT_ADDR: &str = "vault.acme.internal";

/// Teams, in the order people are dealt to them.
pub(crate) const TEAMS: &[(&str, &[Tz])] = &[
    ("payments", &[Tz::Berlin, Tz::Berlin, Tz::NewYork]),
    ("platform", &[Tz::Berlin, Tz::NewYork, Tz::Berlin]),
    ("web", &[Tz::NewYork, Tz::SanFrancisco, Tz::NewYork]),
    ("identity", &[Tz::Bangalore, Tz::Bangalore, Tz::Berlin]),
    ("data", &[Tz::SanFrancisco, Tz::NewYork, Tz::Bangalore]),
    ("security", &[Tz::Berlin, Tz::NewYork]),
];

/// Team index of the n-th person (cycles for larger organisations). The
/// first six cover every team, so even a small organisation has all teams.
pub(crate) const TEAM_PATTERN: [usize; 40] = [
    0, 1, 2, 3, 4, 5, 1, 2, 0, 4, 1, 2, 0, 3, 1, 2, 4, 0, 1, 2, 3, 0, 1, 4, 2, 5, 0, 1, 2, 3, 4, 2,
    0, 1, 3, 4, 2, 1, 0, 2,
];

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Anna", "Lukas", "Priya", "Marcus", "Sofia", "Daniel", "Mei", "Jonas", "Aisha", "Tom", "Elena",
    "Ravi", "Laura", "Kevin", "Nadia", "Felix", "Grace", "Omar", "Julia", "Samir", "Hannah",
    "Diego", "Chloe", "Arjun", "Maria", "Ben", "Yuki", "Leon", "Fatima", "Chris", "Ines", "Noah",
    "Sara", "Viktor", "Emily", "Karan", "Lena", "Mateo", "Olivia", "Paul", "Zoe", "Hugo",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Schmidt",
    "Nair",
    "Keller",
    "Chen",
    "Rossi",
    "Weber",
    "Okafor",
    "Fischer",
    "Patel",
    "Novak",
    "Becker",
    "Garcia",
    "Hoffmann",
    "Kim",
    "Larsen",
    "Iyer",
    "Wagner",
    "Moreau",
    "Brennan",
    "Tanaka",
    "Schulz",
    "Costa",
    "Meyer",
    "Reddy",
    "Murphy",
    "Kowalski",
    "Jansen",
    "Silva",
    "Richter",
    "Haddad",
    "Lindqvist",
    "Sharma",
    "Nguyen",
    "Bauer",
    "Ortiz",
    "Wolf",
    "Fernandes",
    "Kaur",
    "Lange",
    "Dubois",
];

/// One repository of the catalogue: name, owning team (index into TEAMS),
/// language, what it is, whether it is public, relative activity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RepoDef {
    pub(crate) name: &'static str,
    pub(crate) team: usize,
    pub(crate) lang: Lang,
    pub(crate) kind: RepoKind,
    pub(crate) public: bool,
    pub(crate) weight: f64,
    pub(crate) description: &'static str,
}

const fn repo(
    name: &'static str,
    team: usize,
    lang: Lang,
    kind: RepoKind,
    public: bool,
    weight: f64,
    description: &'static str,
) -> RepoDef {
    RepoDef {
        name,
        team,
        lang,
        kind,
        public,
        weight,
        description,
    }
}

/// The GitHub repositories. The last one is created mid-period (cold start).
#[rustfmt::skip]
pub(crate) const GITHUB_REPOS: &[RepoDef] = &[
    repo("api-gateway", 1, Lang::Go, RepoKind::Service(Strategy::Canary), false, 1.2, "Edge API gateway"),
    repo("payments-service", 0, Lang::Go, RepoKind::Service(Strategy::Canary), false, 1.3, "Payment orchestration"),
    repo("ledger", 0, Lang::Java, RepoKind::Service(Strategy::Canary), false, 0.9, "Double-entry ledger"),
    repo("billing-worker", 0, Lang::Python, RepoKind::Service(Strategy::Rolling), false, 0.8, "Invoice and dunning jobs"),
    repo("web-frontend", 2, Lang::Node, RepoKind::Service(Strategy::Rolling), false, 1.5, "Customer web app"),
    repo("checkout-ui", 2, Lang::Node, RepoKind::Service(Strategy::Canary), false, 1.0, "Checkout micro-frontend"),
    repo("auth-service", 3, Lang::Go, RepoKind::Service(Strategy::Canary), false, 1.0, "Login, sessions and tokens"),
    repo("user-profile", 3, Lang::Node, RepoKind::Service(Strategy::Rolling), false, 0.8, "Profile API"),
    repo("notification-service", 1, Lang::Python, RepoKind::Service(Strategy::Rolling), false, 0.7, "Email, SMS and push"),
    repo("search-indexer", 4, Lang::Python, RepoKind::Service(Strategy::Rolling), false, 0.7, "Catalogue search indexing"),
    repo("data-pipelines", 4, Lang::Python, RepoKind::Data, false, 1.0, "Batch ETL into the warehouse"),
    repo("ml-models", 4, Lang::Python, RepoKind::Ml, false, 0.6, "Ranking and fraud models"),
    repo("infra-terraform", 1, Lang::Terraform, RepoKind::Infra, false, 0.8, "AWS accounts and shared infrastructure"),
    repo("helm-charts", 1, Lang::Terraform, RepoKind::Charts, false, 0.5, "Helm charts for every service"),
    repo("sdk-js", 2, Lang::Node, RepoKind::Library, true, 0.7, "Public JavaScript SDK"),
    repo("docs-site", 2, Lang::Node, RepoKind::Docs, true, 0.5, "Public developer documentation"),
    repo("mobile-app", 2, Lang::Swift, RepoKind::Mobile, false, 0.8, "iOS app"),
    repo("shared-go", 1, Lang::Go, RepoKind::Library, false, 0.5, "Shared Go libraries"),
    repo("ops-scripts", 1, Lang::Python, RepoKind::Ops, false, 0.3, "Runbooks and maintenance jobs"),
    repo("design-system", 2, Lang::Node, RepoKind::Library, true, 0.5, "UI components"),
    repo("fraud-scoring", 0, Lang::Python, RepoKind::Service(Strategy::Rolling), false, 0.8, "Real-time fraud scoring"),
];

/// The GitLab projects of the platform group.
#[rustfmt::skip]
pub(crate) const GITLAB_PROJECTS: &[RepoDef] = &[
    repo("infra-live", 1, Lang::Terraform, RepoKind::Infra, false, 0.6, "Live Terraform stacks"),
    repo("terraform-modules", 1, Lang::Terraform, RepoKind::Library, false, 0.4, "Reusable Terraform modules"),
    repo("edge-proxy", 1, Lang::Go, RepoKind::Service(Strategy::Rolling), false, 0.6, "Envoy edge proxy"),
];

/// Persistent self-hosted runners: name, labels, and private IP.
pub(crate) const PERSISTENT_HOSTS: &[(&str, &[&str], &str)] = &[
    (
        "ci-builder-01",
        &["self-hosted", "linux", "x64", "large"],
        "10.20.4.11",
    ),
    (
        "ci-builder-02",
        &["self-hosted", "linux", "x64", "gpu"],
        "10.20.4.12",
    ),
    (
        "mac-mini-01",
        &["self-hosted", "macOS", "ARM64"],
        "10.20.6.21",
    ),
];

/// Browser user agents people use on github.com.
pub(crate) const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:143.0) Gecko/20100101 Firefox/143.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0",
];

/// Git client user agents.
pub(crate) const GIT_AGENTS: &[&str] = &[
    "git/2.51.0",
    "git/2.39.5 (Apple Git-154)",
    "git/2.50.1.windows.1",
    "git/2.43.0",
];

/// Public IP prefixes of home and office connections, per time zone.
pub(crate) fn home_prefixes(tz: Tz) -> &'static [&'static str] {
    match tz {
        Tz::Berlin => &["91.64", "84.160", "93.199", "62.226"],
        Tz::NewYork => &["71.190", "98.113", "108.41", "24.193"],
        Tz::SanFrancisco => &["73.162", "24.6", "67.169", "76.102"],
        Tz::Bangalore => &["49.207", "106.51", "122.171", "183.82"],
    }
}

/// Egress prefixes of GitHub-hosted runners (Azure ranges).
pub(crate) const HOSTED_RUNNER_PREFIXES: &[&str] = &[
    "20.57", "20.84", "20.102", "40.84", "52.225", "13.105", "172.183", "4.227", "20.171", "52.247",
];

/// Egress prefixes of GitLab.com SaaS runners (Google Cloud ranges).
pub(crate) const GITLAB_RUNNER_PREFIXES: &[&str] = &["34.74", "35.231", "34.23", "35.185"];
