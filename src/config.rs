//! The configuration file of `pipewatch serve` (and `detect`): process
//! settings in `[server]`, `[intake]` and `[online]`, the `[[sources]]` to
//! run, detection in `[detect]` / `[detectors.*]`, and alert delivery in
//! `[notify]`. Unknown keys are refused by name.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use pipewatch_analytics::detect::DetectConfig;
use pipewatch_analytics::notify::{NotifyConfig, Routing};
use pipewatch_ingest::intake::IntakeSettings;
use pipewatch_ingest::lake::CompactionPolicy;
use pipewatch_ingest::source::SourceConfig;
use pipewatch_ingest::source::secret::SecretRef;
use serde::Deserialize;

/// Everything one configuration file says.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Config {
    pub(crate) process: ProcessConfig,
    pub(crate) detection: DetectConfig,
    pub(crate) notify: NotifyConfig,
}

/// The tables other than detection.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProcessConfig {
    pub(crate) server: ServerConfig,
    pub(crate) intake: IntakeConfig,
    pub(crate) online: OnlineConfig,
    pub(crate) compaction: CompactionConfig,
    pub(crate) telemetry: crate::telemetry::TelemetryConfig,
    pub(crate) dashboard: DashboardConfig,
    pub(crate) pgwire: PgwireConfig,
    pub(crate) sources: Vec<SourceConfig>,
}

/// `[pgwire]`: SQL over the PostgreSQL protocol, for psql, DBeaver, Grafana.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PgwireConfig {
    pub(crate) enabled: bool,
    pub(crate) listen: SocketAddr,
    /// PEM certificate chain and key; with both set, plain connections are refused.
    pub(crate) tls_cert: String,
    pub(crate) tls_key: String,
}

impl Default for PgwireConfig {
    fn default() -> Self {
        PgwireConfig {
            enabled: false,
            listen: pipewatch_dashboard::pgwire::PgSettings::default().listen,
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl PgwireConfig {
    /// The endpoint's settings, with the TLS files checked.
    pub(crate) fn settings(&self) -> anyhow::Result<pipewatch_dashboard::pgwire::PgSettings> {
        let tls = match (self.tls_cert.trim(), self.tls_key.trim()) {
            ("", "") => None,
            ("", _) | (_, "") => {
                anyhow::bail!("pgwire.tls_cert and pgwire.tls_key go together: set both or neither")
            }
            (cert, key) => {
                let tls = pipewatch_dashboard::pgwire::PgTls {
                    cert: cert.into(),
                    key: key.into(),
                };
                tls.check().context("in [pgwire]")?;
                Some(tls)
            }
        };
        Ok(pipewatch_dashboard::pgwire::PgSettings {
            listen: self.listen,
            tls,
            ..pipewatch_dashboard::pgwire::PgSettings::default()
        })
    }
}

/// `[dashboard]`: the pages and their sign-in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DashboardConfig {
    /// Serve the dashboard beside the ingest endpoints.
    pub(crate) enabled: bool,
    /// Users reach pipewatch over HTTPS (a TLS-terminating proxy): cookies
    /// become `Secure` and `__Host-` prefixed, and HSTS is sent.
    pub(crate) secure_cookies: bool,
    /// A session ends after this long without a request.
    pub(crate) session_idle_minutes: u64,
    /// A session ends this long after sign-in, however busy.
    pub(crate) session_absolute_hours: u64,
    /// Failed sign-ins tolerated per user name in `throttle_window_minutes`.
    pub(crate) failed_logins_per_user: usize,
    /// Failed sign-ins tolerated per client address in the window.
    pub(crate) failed_logins_per_address: usize,
    pub(crate) throttle_window_minutes: u64,
    /// The header a trusted reverse proxy names the signed-in user in
    /// (`X-Forwarded-User` for oauth2-proxy); "" turns proxy sign-in off.
    pub(crate) proxy_user_header: String,
    /// Addresses or networks of that proxy; the header is ignored from
    /// anywhere else.
    pub(crate) trusted_proxies: Vec<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        let defaults = pipewatch_dashboard::DashboardSettings::default();
        DashboardConfig {
            enabled: true,
            secure_cookies: defaults.secure_cookies,
            session_idle_minutes: defaults.sessions.idle.as_secs() / 60,
            session_absolute_hours: defaults.sessions.absolute.as_secs() / 3_600,
            failed_logins_per_user: defaults.throttle.per_user,
            failed_logins_per_address: defaults.throttle.per_address,
            throttle_window_minutes: defaults.throttle.window.as_secs() / 60,
            proxy_user_header: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl DashboardConfig {
    /// Proxy sign-in as configured, checked.
    fn proxy_auth(&self) -> anyhow::Result<Option<pipewatch_dashboard::ProxyAuth>> {
        let header = self.proxy_user_header.trim();
        if header.is_empty() {
            anyhow::ensure!(
                self.trusted_proxies.is_empty(),
                "dashboard.trusted_proxies is set but dashboard.proxy_user_header is not"
            );
            return Ok(None);
        }
        let header = header.parse().with_context(|| {
            format!("dashboard.proxy_user_header `{header}` is not a header name")
        })?;
        anyhow::ensure!(
            !self.trusted_proxies.is_empty(),
            "dashboard.proxy_user_header needs dashboard.trusted_proxies: the addresses the header is believed from"
        );
        let trusted = self
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| {
                        format!("dashboard.trusted_proxies: `{text}` is not an address or network")
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(pipewatch_dashboard::ProxyAuth { header, trusted }))
    }

    pub(crate) fn settings(&self) -> pipewatch_dashboard::DashboardSettings {
        let defaults = pipewatch_dashboard::DashboardSettings::default();
        pipewatch_dashboard::DashboardSettings {
            // Checked when the configuration was parsed.
            proxy_auth: self.proxy_auth().ok().flatten(),
            secure_cookies: self.secure_cookies,
            warm_rollups: true,
            sessions: pipewatch_dashboard::sessions::SessionLimits {
                idle: Duration::from_secs(self.session_idle_minutes.saturating_mul(60)),
                absolute: Duration::from_secs(self.session_absolute_hours.saturating_mul(3_600)),
            },
            throttle: pipewatch_dashboard::throttle::ThrottleLimits {
                per_user: self.failed_logins_per_user,
                per_address: self.failed_logins_per_address,
                window: Duration::from_secs(self.throttle_window_minutes.saturating_mul(60)),
            },
            ..defaults
        }
    }
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServerConfig {
    /// Address to listen on; `--listen` / `PIPEWATCH_LISTEN` override it.
    pub(crate) listen: SocketAddr,
    /// Connections served at once; more wait in the kernel's backlog.
    pub(crate) max_connections: usize,
    /// A client must send its request headers within this time.
    pub(crate) header_read_timeout_secs: u64,
    /// A request (body included) must be answered within this time.
    pub(crate) request_timeout_secs: u64,
    /// On SIGTERM or ctrl-c, in-flight work gets this long to finish.
    pub(crate) shutdown_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 1024,
            header_read_timeout_secs: 10,
            request_timeout_secs: 60,
            shutdown_timeout_secs: 30,
        }
    }
}

/// `[intake]`: how received events are grouped into lake commits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct IntakeConfig {
    pub(crate) batch_events: usize,
    pub(crate) linger_ms: u64,
    pub(crate) queue_events: usize,
    pub(crate) feed_batches: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        let defaults = IntakeSettings::default();
        IntakeConfig {
            batch_events: defaults.batch_events,
            linger_ms: u64::try_from(defaults.linger.as_millis()).unwrap_or(20),
            queue_events: defaults.queue_events,
            feed_batches: defaults.feed_batches,
        }
    }
}

impl IntakeConfig {
    pub(crate) fn settings(&self) -> IntakeSettings {
        IntakeSettings {
            batch_events: self.batch_events,
            linger: Duration::from_millis(self.linger_ms),
            queue_events: self.queue_events,
            feed_batches: self.feed_batches,
        }
    }
}

/// `[compaction]`: small files merged in the background.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CompactionConfig {
    pub(crate) enabled: bool,
    /// How often the lake is looked over, in seconds.
    pub(crate) interval_secs: u64,
    /// Partitions that received a file this recently are left for later.
    pub(crate) quiet_minutes: u64,
    /// Rows a merged file holds at most.
    pub(crate) target_rows: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        let defaults = CompactionPolicy::default();
        CompactionConfig {
            enabled: true,
            interval_secs: 300,
            quiet_minutes: defaults.quiet.as_secs() / 60,
            target_rows: defaults.target_rows,
        }
    }
}

impl CompactionConfig {
    pub(crate) fn policy(&self) -> CompactionPolicy {
        CompactionPolicy {
            target_rows: self.target_rows.max(2),
            quiet: Duration::from_secs(self.quiet_minutes.saturating_mul(60)),
        }
    }
}

/// `[online]`: detection on committed batches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct OnlineConfig {
    /// Score every committed batch as it arrives.
    pub(crate) enabled: bool,
    /// Baselines are rebuilt from the lake's learning window this often,
    /// so history older than the window stops counting.
    pub(crate) baseline_refresh_secs: u64,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            enabled: true,
            baseline_refresh_secs: 86_400,
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid configuration {}", path.display()))
    }

    /// The configuration at `path`, or the defaults without one.
    pub(crate) fn load_or_default(path: Option<&Path>) -> anyhow::Result<Config> {
        path.map_or_else(|| Ok(Config::default()), Config::load)
    }

    /// Parses a TOML document and checks every setting.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Config> {
        let mut table: toml::Table = text.parse().context("not valid TOML")?;
        // Detection settings are the analytics crate's to check; the rest is ours.
        let mut detection = toml::Table::new();
        for key in ["detect", "detectors"] {
            if let Some(value) = table.remove(key) {
                detection.insert(key.to_owned(), value);
            }
        }
        let detection = DetectConfig::from_toml(&toml::to_string(&detection)?)?;
        let notify: NotifyConfig = match table.remove("notify") {
            Some(value) => value.try_into().context("in [notify]")?,
            None => NotifyConfig::default(),
        };
        notify.check()?;
        for destination in &notify.destinations {
            for (setting, reference) in destination.secret_references() {
                SecretRef::try_from(reference.to_owned()).map_err(|e| {
                    anyhow::anyhow!(
                        "notify.destinations `{}` {setting}: {e}",
                        destination.name()
                    )
                })?;
            }
        }
        let process: ProcessConfig = table.try_into()?;
        process.check()?;
        Ok(Config {
            process,
            detection,
            notify,
        })
    }

    /// The notification routes with their secrets resolved; links point
    /// at this server unless `[notify] dashboard_url` says otherwise.
    pub(crate) fn routing(&self) -> anyhow::Result<Routing> {
        let listen = self.process.server.listen;
        let host = if listen.ip().is_unspecified() {
            format!("127.0.0.1:{}", listen.port())
        } else {
            listen.to_string()
        };
        Ok(self
            .notify
            .resolve(&format!("http://{host}"), &resolve_secret)?)
    }
}

/// Reads an `env:` or `file:` reference; literal secrets are refused.
fn resolve_secret(reference: &str) -> Result<String, String> {
    let secret = SecretRef::try_from(reference.to_owned()).map_err(|e| e.to_string())?;
    let value = secret.resolve().map_err(|e| e.to_string())?;
    Ok(value.expose_text().trim().to_owned())
}

impl ProcessConfig {
    fn check(&self) -> anyhow::Result<()> {
        let positive = [
            ("server.max_connections", self.server.max_connections as u64),
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
            ("intake.batch_events", self.intake.batch_events as u64),
            ("intake.queue_events", self.intake.queue_events as u64),
            ("intake.feed_batches", self.intake.feed_batches as u64),
            (
                "online.baseline_refresh_secs",
                self.online.baseline_refresh_secs,
            ),
            ("compaction.interval_secs", self.compaction.interval_secs),
            ("compaction.target_rows", self.compaction.target_rows as u64),
            (
                "dashboard.session_idle_minutes",
                self.dashboard.session_idle_minutes,
            ),
            (
                "dashboard.session_absolute_hours",
                self.dashboard.session_absolute_hours,
            ),
            (
                "dashboard.failed_logins_per_user",
                self.dashboard.failed_logins_per_user as u64,
            ),
            (
                "dashboard.failed_logins_per_address",
                self.dashboard.failed_logins_per_address as u64,
            ),
            (
                "dashboard.throttle_window_minutes",
                self.dashboard.throttle_window_minutes,
            ),
        ];
        for (name, value) in positive {
            anyhow::ensure!(value > 0, "{name} must be above 0");
        }
        self.dashboard.proxy_auth()?;
        if self.pgwire.enabled {
            self.pgwire.settings()?;
        }
        let kinds: Vec<&str> = self.sources.iter().map(SourceConfig::kind).collect();
        for (index, kind) in kinds.iter().enumerate() {
            anyhow::ensure!(
                !kinds[..index].contains(kind),
                "sources: the `{kind}` source is listed twice; one table per kind"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example configuration shipped with pipewatch parses, spells out
    /// the defaults of every setting, and lists a source of every kind.
    #[test]
    fn the_example_configuration_spells_out_the_defaults() {
        let example = include_str!("../deploy/config/pipewatch.example.toml");
        let parsed = Config::parse(example).expect("the example parses and checks");
        assert_eq!(parsed.detection, DetectConfig::default());
        assert_eq!(parsed.process.server, ServerConfig::default());
        assert_eq!(parsed.process.intake, IntakeConfig::default());
        assert_eq!(parsed.process.online, OnlineConfig::default());
        assert_eq!(parsed.process.compaction, CompactionConfig::default());
        assert_eq!(parsed.process.dashboard, DashboardConfig::default());
        assert_eq!(parsed.process.pgwire, PgwireConfig::default());
        assert_eq!(
            parsed.process.telemetry,
            crate::telemetry::TelemetryConfig::default()
        );
        assert_eq!(parsed.notify, NotifyConfig::default());
        let kinds: Vec<&str> = parsed.process.sources.iter().map(|s| s.kind()).collect();
        assert_eq!(kinds, ["http", "otlp"]);
        for source in &parsed.process.sources {
            match source {
                SourceConfig::Http(http) => assert_eq!(
                    http.max_body_bytes,
                    pipewatch_ingest::source::http::HttpSourceConfig::default().max_body_bytes
                ),
                SourceConfig::Otlp(otlp) => {
                    let defaults = pipewatch_ingest::source::otlp::OtlpSourceConfig {
                        tokens: otlp.tokens.clone(),
                        ..Default::default()
                    };
                    assert_eq!(otlp, &defaults);
                }
                SourceConfig::Kafka(_) => {}
            }
        }
    }

    /// The destinations and routes the example shows, commented out, are
    /// valid once uncommented.
    #[test]
    fn the_example_notification_routes_work_when_uncommented() {
        let example = include_str!("../deploy/config/pipewatch.example.toml");
        let setting = is_setting_line;
        let mut in_notify = false;
        let text: Vec<String> = example
            .lines()
            .map(|line| {
                if line.starts_with("[notify]") {
                    in_notify = true;
                } else if line.starts_with("[detect]") {
                    in_notify = false;
                }
                match line.strip_prefix("# ") {
                    Some(rest) if in_notify && (rest.starts_with("[[") || setting(rest)) => {
                        rest.to_owned()
                    }
                    _ => line.to_owned(),
                }
            })
            .collect();
        let parsed = Config::parse(&text.join("\n")).expect("the uncommented example parses");
        let notify = &parsed.notify;
        assert_eq!(notify.destinations.len(), 3);
        assert_eq!(notify.routes.len(), 3);
        let routing = notify
            .resolve("http://127.0.0.1:8080", &|_| {
                Ok("https://hooks.example.com/x".into())
            })
            .expect("the example resolves");
        assert_eq!(
            routing.settings.dashboard_url,
            "https://pipewatch.example.com"
        );
    }

    /// `name = value` at the start of a line.
    fn is_setting_line(line: &str) -> bool {
        line.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }

    #[test]
    fn the_kafka_example_configuration_parses() {
        let example = include_str!("../deploy/config/pipewatch.kafka.example.toml");
        let parsed = Config::parse(example).expect("the Kafka example parses and checks");
        let kinds: Vec<&str> = parsed.process.sources.iter().map(|s| s.kind()).collect();
        assert_eq!(kinds, ["http", "kafka"]);
        let Some(SourceConfig::Kafka(kafka)) = parsed.process.sources.get(1) else {
            panic!("the second source is Kafka");
        };
        assert!(kafka.check().is_ok());
        assert_eq!(kafka.topics.len(), 4);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let error = Config::parse("[server]\nlisten_on = \"x\"\n").expect_err("refused");
        assert!(format!("{error:#}").contains("listen_on"), "{error:#}");
        let error = Config::parse("[dashboard]\nproxy_user_header = \"X-Forwarded-User\"\n")
            .expect_err("refused");
        assert!(
            format!("{error:#}").contains("trusted_proxies"),
            "{error:#}"
        );
        let error = Config::parse(
            "[dashboard]\nproxy_user_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"10.0.0.300\"]\n",
        )
        .expect_err("refused");
        assert!(format!("{error:#}").contains("10.0.0.300"), "{error:#}");
        let proxied = Config::parse(
            "[dashboard]\nproxy_user_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"10.0.0.7\", \"192.168.0.0/16\"]\n",
        )
        .expect("a proxy with its addresses");
        let proxy = proxied
            .process
            .dashboard
            .settings()
            .proxy_auth
            .expect("proxy sign-in");
        assert_eq!(proxy.trusted.len(), 2);
        let error = Config::parse("[intake]\nqueue_events = 0\n").expect_err("refused");
        assert!(
            format!("{error:#}").contains("intake.queue_events"),
            "{error:#}"
        );
        let error = Config::parse("[[sources]]\nkind = \"carrier-pigeon\"\n").expect_err("refused");
        assert!(format!("{error:#}").contains("carrier-pigeon"), "{error:#}");
        let error = Config::parse("[[sources]]\nkind = \"http\"\ngithub_secrets = [\"hunter2\"]\n")
            .expect_err("literal secrets are refused");
        assert!(format!("{error:#}").contains("env:"), "{error:#}");
        let error = Config::parse(
            "[[notify.destinations]]\nkind = \"slack\"\nname = \"s\"\nwebhook_url = \"https://hooks.slack.com/services/T/B/x\"\n",
        )
        .expect_err("a literal webhook URL is refused");
        let text = format!("{error:#}");
        assert!(
            text.contains("`s` webhook_url") && text.contains("env:"),
            "{text}"
        );
        assert!(
            !text.contains("hooks.slack.com"),
            "the secret is not echoed: {text}"
        );
        let error = Config::parse("[notify]\nmax_attempts = 0\n").expect_err("refused");
        assert!(
            format!("{error:#}").contains("notify.max_attempts"),
            "{error:#}"
        );
        let error = Config::parse("[detect]\ngroup_window_minutes = 0\n").expect_err("refused");
        assert!(
            format!("{error:#}").contains("group_window_minutes"),
            "{error:#}"
        );
    }
}
