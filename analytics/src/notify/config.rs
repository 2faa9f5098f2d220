//! The `[notify]` configuration: destinations (Slack, PagerDuty, signed
//! webhook) with their pace, and routes that pick which alerts go where.
//! Checked by name before anything is sent; secrets stay references until
//! the caller resolves them.

use std::time::Duration;

use pipewatch_schema::{Category, Severity};
use serde::Deserialize;

use super::NotifyError;
use crate::alerts::Alert;
use crate::detect::DetectorKind;

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Base URL of the dashboard; alert links point to `<base>/alerts/<id>`.
    /// Without it, links use the server's own listen address.
    pub dashboard_url: Option<String>,
    /// A provider must answer within this time or the attempt is retried.
    pub request_timeout_ms: u64,
    /// Attempts per notification before it is marked failed.
    pub max_attempts: u32,
    /// First retry delay; each retry doubles it (with jitter).
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts.
    pub retry_max_secs: u64,
    pub destinations: Vec<DestinationConfig>,
    pub routes: Vec<RouteConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            dashboard_url: None,
            request_timeout_ms: 10_000,
            max_attempts: 20,
            retry_initial_ms: 1_000,
            retry_max_secs: 600,
            destinations: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// One `[[notify.destinations]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DestinationConfig {
    /// A Slack incoming webhook. The URL itself is the credential.
    Slack {
        name: String,
        /// `env:NAME` or `file:/path` holding the webhook URL.
        webhook_url: String,
        /// Slack accepts about one message per second per webhook.
        #[serde(default = "slack_per_minute")]
        per_minute: u32,
        #[serde(default = "slack_burst")]
        burst: u32,
    },
    /// PagerDuty Events API v2.
    Pagerduty {
        name: String,
        /// `env:NAME` or `file:/path` holding the integration's routing key.
        routing_key: String,
        #[serde(default = "pagerduty_url")]
        events_url: String,
        /// PagerDuty accepts about 120 events per minute per routing key.
        #[serde(default = "pagerduty_per_minute")]
        per_minute: u32,
        #[serde(default = "pagerduty_burst")]
        burst: u32,
    },
    /// A JSON POST signed with HMAC-SHA256 (see `docs/notifications.md`).
    Webhook {
        name: String,
        url: String,
        /// `env:NAME` or `file:/path` holding the signing secret.
        secret: String,
        #[serde(default = "webhook_per_minute")]
        per_minute: u32,
        #[serde(default = "webhook_burst")]
        burst: u32,
    },
}

fn slack_per_minute() -> u32 {
    60
}
fn slack_burst() -> u32 {
    3
}
fn pagerduty_url() -> String {
    PAGERDUTY_EVENTS_URL.to_owned()
}
fn pagerduty_per_minute() -> u32 {
    120
}
fn pagerduty_burst() -> u32 {
    10
}
fn webhook_per_minute() -> u32 {
    600
}
fn webhook_burst() -> u32 {
    20
}

/// The three destination kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    Slack,
    Pagerduty,
    Webhook,
}

impl DestinationKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Slack => "slack",
            DestinationKind::Pagerduty => "pagerduty",
            DestinationKind::Webhook => "webhook",
        }
    }
}

impl DestinationConfig {
    /// The destination's name, as routes refer to it.
    pub fn name(&self) -> &str {
        match self {
            DestinationConfig::Slack { name, .. }
            | DestinationConfig::Pagerduty { name, .. }
            | DestinationConfig::Webhook { name, .. } => name,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> DestinationKind {
        match self {
            DestinationConfig::Slack { .. } => DestinationKind::Slack,
            DestinationConfig::Pagerduty { .. } => DestinationKind::Pagerduty,
            DestinationConfig::Webhook { .. } => DestinationKind::Webhook,
        }
    }

    /// The settings that hold secret references, with their values.
    pub fn secret_references(&self) -> Vec<(&'static str, &str)> {
        match self {
            DestinationConfig::Slack { webhook_url, .. } => vec![("webhook_url", webhook_url)],
            DestinationConfig::Pagerduty { routing_key, .. } => vec![("routing_key", routing_key)],
            DestinationConfig::Webhook { secret, .. } => vec![("secret", secret)],
        }
    }

    fn pace(&self) -> (u32, u32) {
        match self {
            DestinationConfig::Slack {
                per_minute, burst, ..
            }
            | DestinationConfig::Pagerduty {
                per_minute, burst, ..
            }
            | DestinationConfig::Webhook {
                per_minute, burst, ..
            } => (*per_minute, *burst),
        }
    }
}

/// One `[[notify.routes]]` table: which alerts, and where they go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Alerts below this severity do not take the route.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Detector names; empty means every detector.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// Organisations (exact or `prefix*`); empty means any.
    #[serde(default)]
    pub organisations: Vec<String>,
    /// Repositories (exact or `prefix*`, e.g. `acme/*`); empty means any.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Event categories; empty means any.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Destination names.
    pub destinations: Vec<String>,
    /// At most one message per destination in this time; alerts in between
    /// wait and leave together as one digest. 0 sends each at once.
    #[serde(default)]
    pub min_interval_secs: u64,
    /// Alerts arriving within this time of the first one leave together as
    /// one digest. 0 sends each at once.
    #[serde(default)]
    pub group_window_secs: u64,
}

fn default_min_severity() -> Severity {
    Severity::Medium
}

fn pattern_matches(patterns: &[String], value: Option<&str>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let Some(value) = value else { return false };
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => p == value,
    })
}

impl RouteConfig {
    /// Whether `alert` takes this route.
    pub fn matches(&self, alert: &Alert) -> bool {
        alert.severity >= self.min_severity
            && (self.detectors.is_empty() || self.detectors.iter().any(|d| d == &alert.detector))
            && pattern_matches(&self.organisations, alert.scope.organisation.as_deref())
            && pattern_matches(&self.repositories, alert.scope.repository.as_deref())
            && (self.categories.is_empty()
                || alert
                    .scope
                    .category
                    .is_some_and(|c| self.categories.contains(&c)))
    }

    /// Whether alerts of this route wait to leave together.
    pub fn groups(&self) -> bool {
        self.min_interval_secs > 0 || self.group_window_secs > 0
    }
}

/// A secret resolved from its reference; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a resolved secret.
    pub fn new(value: impl Into<String>) -> Self {
        SecretText(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(…)")
    }
}

/// Where and how a destination is reached, secrets resolved.
#[derive(Debug, Clone)]
pub enum Target {
    Slack {
        webhook_url: SecretText,
    },
    Pagerduty {
        events_url: String,
        routing_key: SecretText,
    },
    Webhook {
        url: String,
        secret: SecretText,
    },
}

/// A destination ready to send to.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub kind: DestinationKind,
    pub target: Target,
    /// Sustained pace.
    pub per_minute: u32,
    /// Messages that may leave at once; a backlog beyond it is folded
    /// into one digest.
    pub burst: u32,
}

/// Settings shared by every destination.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub dashboard_url: String,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// The checked configuration with secrets resolved: what the outbox and
/// the deliverers work from.
#[derive(Debug, Clone)]
pub struct Routing {
    pub routes: Vec<RouteConfig>,
    pub destinations: Vec<Destination>,
    pub settings: DeliverySettings,
}

impl Routing {
    /// The destination called `name`.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Whether anything is configured to send.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn config_error(text: impl Into<String>) -> NotifyError {
    NotifyError::Config(text.into())
}

impl NotifyConfig {
    /// Checks names, references and numbers; every problem names its setting.
    pub fn check(&self) -> Result<(), NotifyError> {
        for (name, value) in [
            ("notify.request_timeout_ms", self.request_timeout_ms),
            ("notify.max_attempts", u64::from(self.max_attempts)),
            ("notify.retry_initial_ms", self.retry_initial_ms),
            ("notify.retry_max_secs", self.retry_max_secs),
        ] {
            if value == 0 {
                return Err(config_error(format!("{name} must be above 0")));
            }
        }
        if let Some(url) = &self.dashboard_url {
            check_url("notify.dashboard_url", url)?;
        }
        let mut names: Vec<&str> = Vec::new();
        for destination in &self.destinations {
            let name = destination.name();
            if name.trim().is_empty() {
                return Err(config_error(
                    "notify.destinations: every destination needs a name",
                ));
            }
            if names.contains(&name) {
                return Err(config_error(format!(
                    "notify.destinations: `{name}` is defined twice"
                )));
            }
            names.push(name);
            let (per_minute, burst) = destination.pace();
            if per_minute == 0 || burst == 0 {
                return Err(config_error(format!(
                    "notify.destinations `{name}`: per_minute and burst must be above 0"
                )));
            }
            match destination {
                DestinationConfig::Pagerduty { events_url, .. } => check_url(
                    &format!("notify.destinations `{name}` events_url"),
                    events_url,
                )?,
                DestinationConfig::Webhook { url, .. } => {
                    check_url(&format!("notify.destinations `{name}` url"), url)?
                }
                DestinationConfig::Slack { .. } => {}
            }
        }
        let mut routes: Vec<&str> = Vec::new();
        for route in &self.routes {
            let name = route.name.as_str();
            if name.trim().is_empty() {
                return Err(config_error("notify.routes: every route needs a name"));
            }
            if routes.contains(&name) {
                return Err(config_error(format!(
                    "notify.routes: `{name}` is defined twice"
                )));
            }
            routes.push(name);
            if route.destinations.is_empty() {
                return Err(config_error(format!(
                    "notify.routes `{name}`: name at least one destination"
                )));
            }
            for destination in &route.destinations {
                if !names.contains(&destination.as_str()) {
                    return Err(config_error(format!(
                        "notify.routes `{name}`: no destination is called `{destination}` (known: {})",
                        names.join(", ")
                    )));
                }
            }
            for detector in &route.detectors {
                if DetectorKind::parse(detector).is_none() {
                    return Err(config_error(format!(
                        "notify.routes `{name}`: no detector is called `{detector}`"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks the configuration and resolves every secret reference with
    /// `resolve` (which knows `env:` and `file:`), naming the destination
    /// whose secret is missing.
    pub fn resolve(
        &self,
        default_dashboard_url: &str,
        resolve: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<Routing, NotifyError> {
        self.check()?;
        let secret = |name: &str, setting: &str, reference: &str| {
            resolve(reference).map(SecretText::new).map_err(|detail| {
                config_error(format!("notify.destinations `{name}` {setting}: {detail}"))
            })
        };
        let mut destinations = Vec::new();
        for config in &self.destinations {
            let name = config.name().to_owned();
            let target = match config {
                DestinationConfig::Slack { webhook_url, .. } => {
                    let url = secret(&name, "webhook_url", webhook_url)?;
                    check_url(
                        &format!("notify.destinations `{name}` webhook_url"),
                        url.expose(),
                    )?;
                    Target::Slack { webhook_url: url }
                }
                DestinationConfig::Pagerduty {
                    routing_key,
                    events_url,
                    ..
                } => Target::Pagerduty {
                    events_url: events_url.clone(),
                    routing_key: secret(&name, "routing_key", routing_key)?,
                },
                DestinationConfig::Webhook {
                    url, secret: key, ..
                } => Target::Webhook {
                    url: url.clone(),
                    secret: secret(&name, "secret", key)?,
                },
            };
            let (per_minute, burst) = config.pace();
            destinations.push(Destination {
                name,
                kind: config.kind(),
                target,
                per_minute,
                burst,
            });
        }
        let dashboard_url = self
            .dashboard_url
            .clone()
            .unwrap_or_else(|| default_dashboard_url.to_owned());
        Ok(Routing {
            routes: self.routes.clone(),
            destinations,
            settings: DeliverySettings {
                dashboard_url: dashboard_url.trim_end_matches('/').to_owned(),
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                max_attempts: self.max_attempts,
                retry_initial: Duration::from_millis(self.retry_initial_ms),
                retry_max: Duration::from_secs(self.retry_max_secs),
            },
        })
    }
}

fn check_url(setting: &str, url: &str) -> Result<(), NotifyError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        // The value may be a secret (a Slack webhook URL): never echo it.
        Err(config_error(format!(
            "{setting}: must be an http:// or https:// URL"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, String> {
        let config: NotifyConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn routes_must_name_known_destinations_and_detectors() {
        let base = r#"
[[destinations]]
kind = "slack"
name = "sec"
webhook_url = "env:SLACK"
"#;
        let error = parse(&format!(
            "{base}\n[[routes]]\nname = \"r\"\ndestinations = [\"pager\"]\n"
        ))
        .expect_err("unknown destination");
        assert!(
            error.contains("`pager`") && error.contains("sec"),
            "{error}"
        );
        let error = parse(&format!(
            "{base}\n[[routes]]\nname = \"r\"\ndestinations = [\"sec\"]\ndetectors = [\"nope\"]\n"
        ))
        .expect_err("unknown detector");
        assert!(error.contains("`nope`"), "{error}");
        let error = parse("[[destinations]]\nkind = \"sms\"\nname = \"x\"\n").expect_err("kind");
        assert!(error.contains("sms"), "{error}");
        let config = parse(&format!(
            "{base}\n[[routes]]\nname = \"r\"\ndestinations = [\"sec\"]\n"
        ))
        .expect("valid");
        assert_eq!(config.routes[0].min_severity, Severity::Medium);
    }

    #[test]
    fn secrets_are_resolved_by_reference_and_never_printed() {
        let config: NotifyConfig = toml::from_str(
            r#"
[[destinations]]
kind = "pagerduty"
name = "pd"
routing_key = "env:PD_KEY"
"#,
        )
        .expect("parses");
        let error = config
            .resolve("http://localhost", &|r| Err(format!("{r} is not set")))
            .expect_err("missing secret");
        assert!(error.to_string().contains("`pd` routing_key"), "{error}");
        let routing = config
            .resolve("http://localhost/", &|_| Ok("R0UTINGKEY".into()))
            .expect("resolves");
        assert!(!format!("{routing:?}").contains("R0UTINGKEY"));
        assert_eq!(routing.settings.dashboard_url, "http://localhost");
    }
}
