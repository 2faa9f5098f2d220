//! `pipewatch alerts`: list and read alerts, and change their status
//! (acknowledge, resolve, suppress with a reason and an expiry, reopen),
//! each change recorded with who and when; and send a test notification
//! through a configured route.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use pipewatch_analytics::alerts::{Alert, AlertFilter, AlertStatus, AlertStore};
use pipewatch_analytics::notify::Scrub;
use pipewatch_schema::Severity;

use super::DataDir;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only alerts with this status.
    #[arg(long, value_parser = parse_status)]
    status: Option<AlertStatus>,
    /// Only alerts at least this severe (info, low, medium, high, critical).
    #[arg(long, value_parser = parse_severity)]
    min_severity: Option<Severity>,
    /// Only alerts of this detector.
    #[arg(long)]
    detector: Option<String>,
    /// At most this many alerts.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// How to print them.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct Who {
    #[command(flatten)]
    data: DataDir,
    /// The alert.
    alert_id: String,
    /// Who makes the change (default: the login name).
    #[arg(long = "by", env = "PIPEWATCH_USER")]
    by: Option<String>,
    /// Why.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// One alert with its explanation, evidence and status history.
    Show {
        #[command(flatten)]
        data: DataDir,
        alert_id: String,
    },
    /// Someone is looking at it.
    Ack(Who),
    /// It is handled.
    Resolve(Who),
    /// Open it again.
    Reopen(Who),
    /// Silence it (and new findings about the same entity) until an expiry.
    Suppress {
        #[command(flatten)]
        who: Who,
        /// How long: an age like 12h, 7d, 2w.
        #[arg(long = "for", value_name = "AGE")]
        duration: String,
    },
    /// Give it to a user who can act on alerts (a responder or an admin),
    /// or to nobody.
    Assign {
        #[command(flatten)]
        data: DataDir,
        /// The alert.
        alert_id: String,
        /// The user who works on it.
        #[arg(long, required_unless_present = "nobody", conflicts_with = "nobody")]
        to: Option<String>,
        /// Take it back from whoever has it.
        #[arg(long)]
        nobody: bool,
        /// Who makes the change (default: the login name).
        #[arg(long = "by", env = "PIPEWATCH_USER")]
        by: Option<String>,
    },
    /// Send a clearly marked test notification through a route's
    /// destinations and print each one's answer.
    TestRoute {
        /// The route's name (`[[notify.routes]] name`).
        route: String,
        /// The configuration file with `[notify]`.
        #[arg(long, env = "PIPEWATCH_CONFIG")]
        config: PathBuf,
    },
}

fn parse_status(text: &str) -> Result<AlertStatus, String> {
    AlertStatus::parse(text)
        .ok_or_else(|| format!("`{text}`: use open, acknowledged, resolved or suppressed"))
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    Severity::parse(text)
        .ok_or_else(|| format!("`{text}`: use info, low, medium, high or critical"))
}

fn parse_age(text: &str) -> anyhow::Result<chrono::Duration> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let amount: i64 = number
        .parse()
        .with_context(|| format!("`{text}` is not an age like 12h, 7d or 2w"))?;
    match unit {
        "h" => Ok(chrono::Duration::hours(amount)),
        "d" => Ok(chrono::Duration::days(amount)),
        "w" => Ok(chrono::Duration::weeks(amount)),
        _ => anyhow::bail!("`{text}`: an age ends in h, d or w"),
    }
}

/// Alerts with their explanations, for terminals.
pub(crate) fn explained(alerts: &[Alert]) -> String {
    if alerts.is_empty() {
        return "No open alerts.".into();
    }
    let mut out = String::new();
    for alert in alerts {
        out.push_str(&format!(
            "[{}] {}  ({}, score {:.1}, {} finding{}, {})\n    {}\n    evidence: {}\n    id: {}\n\n",
            alert.severity.as_str().to_uppercase(),
            alert.title,
            alert.detector,
            alert.score,
            alert.findings,
            if alert.findings == 1 { "" } else { "s" },
            alert.event_time.format("%Y-%m-%d %H:%M UTC"),
            alert.explanation,
            evidence_text(alert),
            alert.alert_id,
        ));
    }
    out.trim_end().to_owned()
}

fn evidence_text(alert: &Alert) -> String {
    let shown: Vec<&str> = alert
        .evidence_event_ids
        .iter()
        .take(3)
        .map(String::as_str)
        .collect();
    let more = alert.evidence_event_ids.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more event(s)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn table(alerts: &[Alert]) -> String {
    let mut out = format!(
        "{:<32}  {:<8}  {:<13}  {:<17}  {:<26}  title\n",
        "alert_id", "severity", "status", "event_time", "detector"
    );
    for a in alerts {
        out.push_str(&format!(
            "{:<32}  {:<8}  {:<13}  {:<17}  {:<26}  {}\n",
            a.alert_id,
            a.severity.as_str(),
            a.status.as_str(),
            a.event_time.format("%Y-%m-%d %H:%M"),
            a.detector,
            a.title
        ));
    }
    out.push_str(&format!("({} alerts)", alerts.len()));
    out
}

fn test_route(route: &str, config: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let routing = config.routing()?;
    // A test message carries no event data; nothing to scrub.
    let scrub: Scrub = std::sync::Arc::new(|_| {});
    let results = pipewatch_analytics::notify::test_route(&routing, route, &scrub)?;
    let mut all_ok = true;
    for result in &results {
        for (what, answer) in &result.answers {
            println!(
                "{} ({}): {what}: {}",
                result.destination,
                result.kind,
                answer.describe()
            );
        }
        all_ok &= result.ok();
    }
    if all_ok {
        println!(
            "route `{route}`: every destination accepted the test ({} destination(s))",
            results.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("route `{route}`: a destination refused or did not answer; see above");
        Ok(ExitCode::FAILURE)
    }
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn change(w: Who, to: AlertStatus, expires_at: Option<DateTime<Utc>>) -> anyhow::Result<ExitCode> {
    let mut store = AlertStore::open(&w.data.data_dir).context("cannot open the alert store")?;
    let actor = who(w.by);
    let change = store
        .change_status(
            &w.alert_id,
            to,
            &actor,
            w.reason.as_deref(),
            expires_at,
            Utc::now(),
        )
        .with_context(|| format!("cannot change alert {}", w.alert_id))?;
    println!(
        "alert {} is now {} (was {}), by {}{}",
        change.alert_id,
        change.to,
        change.from,
        change.actor,
        change
            .expires_at
            .map(|t| format!(", until {}", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn assign(
    data_dir: &std::path::Path,
    alert_id: &str,
    to: Option<&str>,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    use pipewatch_dashboard::users::{Role, UserStore};
    if let Some(user) = to {
        let users = UserStore::open(data_dir).context("cannot open the user store")?;
        let can_act = users
            .list()
            .context("cannot list the users")?
            .iter()
            .any(|u| u.name == user && u.role.allows(Role::Responder));
        if !can_act {
            anyhow::bail!(
                "{user} is not a user who can act on alerts (add one with `pipewatch users add {user} --role responder`)"
            );
        }
    }
    let mut store = AlertStore::open(data_dir).context("cannot open the alert store")?;
    let change = store
        .assign(alert_id, to, &who(by), Utc::now())
        .with_context(|| format!("cannot assign alert {alert_id}"))?;
    println!(
        "alert {} {}, by {}",
        change.alert_id,
        change.reason.unwrap_or_default(),
        change.actor
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        None => {
            let l = args.list;
            let store =
                AlertStore::open(&l.data.data_dir).context("cannot open the alert store")?;
            let alerts = store
                .list(&AlertFilter {
                    status: l.status,
                    min_severity: l.min_severity,
                    detector: l.detector,
                    limit: Some(l.limit),
                    ..AlertFilter::default()
                })
                .context("cannot list alerts")?;
            match l.output {
                Output::Table => println!("{}", table(&alerts)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&alerts)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Action::Show { data, alert_id }) => {
            let store = AlertStore::open(&data.data_dir).context("cannot open the alert store")?;
            let alert = store.get(&alert_id)?;
            println!("{}", explained(std::slice::from_ref(&alert)));
            println!(
                "status: {}{}",
                alert.status,
                alert
                    .status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            println!(
                "assigned to: {}",
                alert.assignee.as_deref().unwrap_or("nobody")
            );
            println!("evidence event ids: {}", alert.evidence_event_ids.join(" "));
            for change in store.history(&alert_id)? {
                println!(
                    "{}  {} -> {} by {}{}",
                    change.changed_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    change.from,
                    change.to,
                    change.actor,
                    change.reason.map(|r| format!(": {r}")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Action::Ack(w)) => change(w, AlertStatus::Acknowledged, None),
        Some(Action::Resolve(w)) => change(w, AlertStatus::Resolved, None),
        Some(Action::Reopen(w)) => change(w, AlertStatus::Open, None),
        Some(Action::Suppress { who, duration }) => {
            let until = Utc::now() + parse_age(&duration)?;
            change(who, AlertStatus::Suppressed, Some(until))
        }
        Some(Action::Assign {
            data,
            alert_id,
            to,
            nobody: _,
            by,
        }) => assign(&data.data_dir, &alert_id, to.as_deref(), by),
        Some(Action::TestRoute { route, config }) => test_route(&route, &config),
    }
}
