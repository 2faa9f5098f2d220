//! The pages behind sign-in: the overview (hardening metrics, open alerts,
//! ingest health), alert triage (list, detail, actions) and the audit log.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use pipewatch_analytics::QueryOutput;
use pipewatch_analytics::alerts::{Alert, AlertError, AlertFilter, AlertStatus, Assignee};
use pipewatch_analytics::metrics::{EVENT_COUNTS, MetricValue, Scope, Window};
use pipewatch_analytics::notify::{NotificationRecord, notifications, notifications_of_alert};
use pipewatch_schema::Severity;
use serde::Deserialize;

use super::view::{self, Moment, Nav, format_value, render};
use super::{AppState, ClientAddress};
use crate::audit::{AuditEntry, AuditFilter};
use crate::charts;
use crate::sessions::Session;
use crate::users::Role;

/// Rows a metric card lists (scopes and breakdowns); the CLI has them all.
const CARD_ROWS: usize = 6;
/// Alerts one list page shows.
const ALERT_PAGE: usize = 200;

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    view::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{what}. Try again shortly."),
    )
}

/// The rows of a small query result as text, column by column.
fn text_rows(output: &QueryOutput) -> Vec<Vec<String>> {
    view::result_rows(output, usize::MAX, usize::MAX)
}

struct MetricRow {
    label: String,
    value: String,
    met: Option<bool>,
}

struct MetricCard {
    title: String,
    description: String,
    value: String,
    target: Option<String>,
    met: Option<bool>,
    chart: String,
    rows: Vec<MetricRow>,
}

struct SeverityCount {
    severity: &'static str,
    count: usize,
}

struct SourceHealth {
    source: String,
    events: u64,
    chart: String,
}

struct DeadLetterReason {
    reason: String,
    count: u64,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: Nav,
    cards: Vec<MetricCard>,
    window: String,
    newest: Option<Moment>,
    /// When the daily rollups behind the figures were built.
    figures_as_of: Moment,
    /// The lake changed since, and newer figures are being computed.
    refreshing: bool,
    /// Kafka consumer lag per partition; `None` when ingest runs elsewhere.
    kafka: Option<Vec<LagRow>>,
    kafka_total: i64,
    open_alerts: Vec<SeverityCount>,
    open_total: usize,
    sources: Vec<SourceHealth>,
    dead_letters: Vec<DeadLetterReason>,
    dead_letter_total: u64,
}

struct LagRow {
    topic: String,
    partition: i64,
    messages: i64,
    seen: Moment,
}

fn row_label(value: &MetricValue) -> String {
    let mut parts = vec![
        value
            .scope
            .clone()
            .unwrap_or_else(|| "(no data)".to_owned()),
    ];
    parts.extend(value.breakdown.iter().map(|(_, v)| v.clone()));
    parts.join(" · ")
}

fn cards(values: &[MetricValue]) -> Vec<MetricCard> {
    let mut by_metric: Vec<(&str, Vec<&MetricValue>)> = Vec::new();
    for value in values {
        match by_metric
            .iter_mut()
            .find(|(name, _)| *name == value.metric.name)
        {
            Some((_, list)) => list.push(value),
            None => by_metric.push((value.metric.name, vec![value])),
        }
    }
    by_metric
        .into_iter()
        .filter_map(|(_, list)| {
            let first = *list.first()?;
            let metric = first.metric;
            let met = |v: Option<f64>| metric.target.zip(v).map(|(t, v)| t.is_met(v));
            let series: Vec<Option<f64>> = first.series.iter().map(|p| p.value).collect();
            Some(MetricCard {
                title: metric.title.to_owned(),
                description: metric.description.to_owned(),
                value: format_value(first.value, metric.unit),
                target: metric.target.map(|t| {
                    let sign = if t.direction() == "at_least" {
                        "≥"
                    } else {
                        "≤"
                    };
                    format!(
                        "target {sign} {}",
                        format_value(Some(t.value()), metric.unit)
                    )
                }),
                met: met(first.value),
                chart: charts::trend(&series, metric.target.map(|t| t.value())),
                rows: list
                    .iter()
                    .take(CARD_ROWS)
                    .map(|v| MetricRow {
                        label: row_label(v),
                        value: format_value(v.value, metric.unit),
                        met: met(v.value),
                    })
                    .collect(),
            })
        })
        .collect()
}

pub(crate) async fn overview(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let lake = match state.lake().await {
        Ok(lake) => lake,
        Err(e) => return unavailable("The lake cannot be read", e),
    };
    let rollups = match state.rollups().await {
        Ok(rollups) => rollups,
        Err(e) => return unavailable("The hardening metrics cannot be computed", e),
    };
    let window = Window::days(30);
    let report = match rollups.report(Scope::Org, window).await {
        Ok(report) => report,
        Err(e) => return unavailable("The hardening metrics cannot be computed", e),
    };
    let open = match state.alerts().list(&AlertFilter {
        status: Some(AlertStatus::Open),
        ..AlertFilter::default()
    }) {
        Ok(open) => open,
        Err(e) => return unavailable("The alerts cannot be read", e),
    };
    let open_alerts = Severity::ALL
        .iter()
        .rev()
        .map(|severity| SeverityCount {
            severity: severity.as_str(),
            count: open.iter().filter(|a| a.severity == *severity).count(),
        })
        .collect();

    // Ingest health over the last day of data, hour by hour.
    let hourly = rollups
        .service()
        .query(&format!(
            "WITH newest AS (SELECT max(hour) AS h FROM {EVENT_COUNTS})
             SELECT source, hour, CAST(sum(events) AS BIGINT) AS n
             FROM {EVENT_COUNTS}, newest WHERE hour > newest.h - 24
             GROUP BY source, hour ORDER BY source, hour"
        ))
        .await;
    let hourly = match hourly {
        Ok(out) => text_rows(&out),
        Err(e) => return unavailable("Ingest rates cannot be read", e),
    };
    let sources: Vec<SourceHealth> = super::explore::source_rates(&hourly, 24)
        .into_iter()
        .map(|rate| SourceHealth {
            source: rate.source,
            events: rate.total,
            chart: rate.chart,
        })
        .collect();
    let dead = lake
        .query("SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY n DESC LIMIT 10")
        .await;
    let dead_letters: Vec<DeadLetterReason> = match dead {
        Ok(out) => text_rows(&out)
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [reason, n] => Some(DeadLetterReason {
                    reason: reason.clone(),
                    count: n.parse().unwrap_or(0),
                }),
                _ => None,
            })
            .collect(),
        Err(e) => return unavailable("Dead letters cannot be read", e),
    };
    let kafka = state.kafka_lags().map(|lags| {
        lags.into_iter()
            .map(|lag| LagRow {
                topic: lag.topic,
                partition: lag.partition,
                messages: lag.messages,
                seen: Moment::new(lag.seen_at, session.timezone),
            })
            .collect::<Vec<_>>()
    });
    let page = OverviewPage {
        nav: Nav::new(&session, "overview"),
        cards: cards(&report.values),
        window: window.to_string(),
        newest: report
            .newest_event_micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| Moment::new(t, session.timezone)),
        figures_as_of: Moment::new(rollups.built_at(), session.timezone),
        refreshing: state.rollups_refreshing(),
        kafka_total: kafka.iter().flatten().map(|l| l.messages).sum(),
        kafka,
        open_total: open.len(),
        open_alerts,
        sources,
        dead_letter_total: dead_letters.iter().map(|d| d.count).sum(),
        dead_letters,
    };
    render(&page)
}

/// Filters of the alerts page, as the query string carries them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AlertQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    detector: String,
    #[serde(default)]
    repository: String,
    /// Days back from now; empty for all time.
    #[serde(default)]
    days: String,
    /// `me`, `nobody` or a user; empty for anyone.
    #[serde(default)]
    assignee: String,
}

struct AlertRow {
    assignee: String,
    alert_id: String,
    severity: &'static str,
    title: String,
    detector: String,
    repository: String,
    entity: String,
    last_seen: Moment,
    status: &'static str,
    delivery: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: Nav,
    filter: AlertQuery,
    statuses: Vec<&'static str>,
    severities: Vec<&'static str>,
    detectors: Vec<String>,
    /// Users alerts can be assigned to.
    assignees: Vec<String>,
    rows: Vec<AlertRow>,
    back: String,
}

/// Per destination, the latest state of an alert's notifications.
fn delivery_summary(records: &[&NotificationRecord]) -> String {
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    for record in records {
        latest.insert(record.destination.as_str(), record.status.as_str());
    }
    latest
        .into_iter()
        .map(|(destination, status)| format!("{destination}: {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn alert_filter(query: &AlertQuery, user: &str) -> AlertFilter {
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    AlertFilter {
        status: AlertStatus::parse(&query.status),
        min_severity: Severity::parse(&query.severity),
        detector: nonempty(&query.detector),
        repository: nonempty(&query.repository),
        since: query
            .days
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=3_650).contains(d))
            .map(|d| Utc::now() - Duration::days(d)),
        assignee: match query.assignee.trim() {
            "" => None,
            "nobody" => Some(Assignee::Nobody),
            "me" => Some(Assignee::User(user.to_owned())),
            other => Some(Assignee::User(other.to_owned())),
        },
        limit: Some(ALERT_PAGE),
    }
}

pub(crate) async fn alerts(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<AlertQuery>,
) -> Response {
    let (listed, all) = {
        let store = state.alerts();
        let listed = store.list(&alert_filter(&query, &session.user));
        let all = store.list(&AlertFilter::default());
        (listed, all)
    };
    let (listed, all) = match (listed, all) {
        (Ok(listed), Ok(all)) => (listed, all),
        (Err(e), _) | (_, Err(e)) => return unavailable("The alerts cannot be read", e),
    };
    let records = match notifications(state.data_dir()) {
        Ok(records) => records,
        Err(e) => return unavailable("Delivery states cannot be read", e),
    };
    let mut by_alert: HashMap<&str, Vec<&NotificationRecord>> = HashMap::new();
    for record in &records {
        if let Some(id) = &record.alert_id {
            by_alert.entry(id.as_str()).or_default().push(record);
        }
    }
    let mut detectors: Vec<String> = all.iter().map(|a| a.detector.clone()).collect();
    detectors.sort();
    detectors.dedup();
    let rows = listed
        .iter()
        .map(|alert| AlertRow {
            alert_id: alert.alert_id.clone(),
            severity: alert.severity.as_str(),
            title: alert.title.clone(),
            detector: alert.detector.clone(),
            repository: alert.scope.repository.clone().unwrap_or_default(),
            entity: alert.entity.clone(),
            last_seen: Moment::new(alert.last_event_time, session.timezone),
            status: alert.status.as_str(),
            assignee: alert.assignee.clone().unwrap_or_default(),
            delivery: by_alert
                .get(alert.alert_id.as_str())
                .map(|r| delivery_summary(r))
                .unwrap_or_default(),
        })
        .collect();
    let back = format!(
        "/alerts?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("status", &query.status)
            .append_pair("severity", &query.severity)
            .append_pair("detector", &query.detector)
            .append_pair("repository", &query.repository)
            .append_pair("days", &query.days)
            .append_pair("assignee", &query.assignee)
            .finish()
    );
    let page = AlertsPage {
        nav: Nav::new(&session, "alerts"),
        filter: query,
        statuses: AlertStatus::ALL.iter().map(|s| s.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        detectors,
        assignees: assignable(&state),
        rows,
        back,
    };
    render(&page)
}

struct HistoryRow {
    at: Moment,
    actor: String,
    from: &'static str,
    to: &'static str,
    reason: String,
}

struct DeliveryRow {
    destination: String,
    kind: String,
    action: String,
    status: String,
    attempts: i64,
    delivered_at: Option<Moment>,
    last_error: String,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    nav: Nav,
    alert: Alert,
    severity: &'static str,
    status: &'static str,
    first_seen: Moment,
    last_seen: Moment,
    created: Moment,
    repository: String,
    organisation: String,
    evidence: Vec<String>,
    history: Vec<HistoryRow>,
    deliveries: Vec<DeliveryRow>,
    back: String,
    /// Users the alert can be assigned to.
    assignees: Vec<String>,
    /// Who works on it now (empty: nobody).
    assignee: String,
    /// The console, prepared with the evidence events.
    sql_link: String,
    /// Links to the same actor, secret, runner, run and repository.
    pivots: Vec<Pivot>,
    /// Daily events like the first evidence's over the 30 days up to the alert.
    baseline: Option<Baseline>,
    /// The evidence events, and what the same actor or repository did around them.
    sections: Vec<super::explore::Section>,
}

struct Pivot {
    label: String,
    link: String,
}

struct Baseline {
    what: String,
    chart: String,
    usual: String,
    on_the_day: String,
}

/// The first evidence event's pivots: who, what, where.
#[derive(Default)]
struct EvidenceKeys {
    actor: Option<String>,
    repo: Option<String>,
    action: Option<String>,
    secret: Option<String>,
    runner: Option<String>,
    run: Option<String>,
}

/// The lake partitions (UTC days) from `from` to `to`: a filter that keeps
/// a query from opening the files of other days.
fn days_between(from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>) -> String {
    format!(
        "\"date\" BETWEEN '{}' AND '{}'",
        from.format("%Y-%m-%d"),
        to.format("%Y-%m-%d")
    )
}

/// The days an alert's evidence events lie in.
fn evidence_days(alert: &Alert) -> String {
    days_between(alert.event_time, alert.last_event_time)
}

async fn evidence_keys(state: &AppState, alert: &Alert) -> EvidenceKeys {
    let Some(first) = alert.evidence_event_ids.first() else {
        return EvidenceKeys::default();
    };
    let sql = format!(
        "SELECT actor, repo, action, CASE WHEN category = 'secret_access' THEN target_name END AS secret,
           cicd_worker_name, cicd_pipeline_run_id FROM events WHERE event_id = {} AND {} LIMIT 1",
        super::explore::literal(first),
        evidence_days(alert)
    );
    let rows = match state.lake().await {
        Ok(lake) => lake.query(&sql).await.map(|out| text_rows(&out)),
        Err(e) => Err(e),
    };
    let row = match rows {
        Ok(rows) => rows.into_iter().next().unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read an alert's evidence");
            Vec::new()
        }
    };
    let get = |i: usize| row.get(i).filter(|v| !v.is_empty()).cloned();
    EvidenceKeys {
        actor: get(0),
        repo: get(1),
        action: get(2),
        secret: get(3),
        runner: get(4),
        run: get(5),
    }
}

fn pivots(keys: &EvidenceKeys) -> Vec<Pivot> {
    let literal = super::explore::literal;
    let console = super::explore::console_link;
    let recent = |filter: String| {
        console(&format!(
            "SELECT event_time, category, action, outcome, actor, repo, target_name, cicd_pipeline_run_id\n\
             FROM events\nWHERE {filter}\nORDER BY event_time DESC\nLIMIT 200"
        ))
    };
    let mut pivots = Vec::new();
    if let Some(actor) = &keys.actor {
        pivots.push(Pivot {
            label: format!("Everything {actor} did"),
            link: recent(format!("actor = {}", literal(actor))),
        });
    }
    if let Some(secret) = &keys.secret {
        pivots.push(Pivot {
            label: format!("Who else reads {secret}"),
            link: format!(
                "/secrets?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("name", secret)
                    .finish()
            ),
        });
    }
    if let Some(runner) = &keys.runner {
        pivots.push(Pivot {
            label: format!("Everything on runner {runner}"),
            link: recent(format!("cicd_worker_name = {}", literal(runner))),
        });
    }
    if let Some(run) = &keys.run {
        pivots.push(Pivot {
            label: format!("The whole run {run}"),
            link: console(&format!(
                "SELECT event_time, category, action, outcome, actor, cicd_pipeline_task_name, target_name\n\
                 FROM events\nWHERE cicd_pipeline_run_id = {}\nORDER BY event_time",
                literal(run)
            )),
        });
    }
    if let Some(repo) = &keys.repo {
        pivots.push(Pivot {
            label: format!("Repository {repo}"),
            link: format!(
                "/repo?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("name", repo)
                    .finish()
            ),
        });
    }
    pivots
}

/// Seconds since the epoch as an SQL timestamp literal in UTC.
fn time_literal(seconds: i64) -> String {
    let t = chrono::DateTime::from_timestamp(seconds, 0).unwrap_or_default();
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// Daily counts of events like the first evidence's (same action by the
/// same actor, or in the same repository) over the 30 days up to the alert.
async fn baseline(state: &AppState, alert: &Alert, keys: &EvidenceKeys) -> Option<Baseline> {
    let literal = super::explore::literal;
    let action = keys.action.as_ref()?;
    let (who, filter) = match (&keys.actor, &keys.repo) {
        (Some(actor), _) => (actor.clone(), format!("actor = {}", literal(actor))),
        (None, Some(repo)) => (repo.clone(), format!("repo = {}", literal(repo))),
        (None, None) => return None,
    };
    let last_day = alert.last_event_time.timestamp().div_euclid(86_400);
    // The action belongs to the evidence's category: only its partitions are read.
    let category = alert
        .scope
        .category
        .map(|c| format!(" AND category = {}", literal(c.as_str())))
        .unwrap_or_default();
    let sql = format!(
        "SELECT CAST(floor(date_part('epoch', event_time) / 86400) AS BIGINT) AS day, count(*) AS n
         FROM events WHERE action = {} AND {filter}{category} AND {}
           AND event_time >= {} AND event_time < {}
         GROUP BY day",
        literal(action),
        days_between(
            alert.last_event_time - Duration::days(29),
            alert.last_event_time
        ),
        time_literal((last_day - 29) * 86_400),
        time_literal((last_day + 1) * 86_400)
    );
    let lake = state.lake().await.ok()?;
    let rows = text_rows(&lake.query(&sql).await.ok()?);
    let counts: HashMap<i64, f64> = rows
        .iter()
        .filter_map(|r| Some((r.first()?.parse().ok()?, r.get(1)?.parse().ok()?)))
        .collect();
    let series: Vec<Option<f64>> = (last_day - 29..=last_day)
        .map(|d| Some(counts.get(&d).copied().unwrap_or(0.0)))
        .collect();
    let mut before: Vec<f64> = series[..29].iter().flatten().copied().collect();
    before.sort_by(f64::total_cmp);
    let median = before.get(before.len() / 2).copied().unwrap_or(0.0);
    Some(Baseline {
        what: format!("{action} by {who}, per day"),
        chart: crate::charts::trend(&series, None),
        usual: format!("{median:.0}"),
        on_the_day: format!("{:.0}", series.last().copied().flatten().unwrap_or(0.0)),
    })
}

/// A query listing `alert`'s evidence events, oldest first.
fn evidence_sql(alert: &Alert) -> String {
    let ids: Vec<String> = alert
        .evidence_event_ids
        .iter()
        .take(200)
        .map(|id| format!("'{}'", id.replace('\'', "''")))
        .collect();
    format!(
        "SELECT event_time, category, source, action, outcome, actor, repo, target_name, event_id\nFROM events\nWHERE event_id IN ({})\n  AND {}\nORDER BY event_time",
        if ids.is_empty() {
            "NULL".to_owned()
        } else {
            ids.join(", ")
        },
        evidence_days(alert)
    )
}

pub(crate) async fn alert_detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(alert_id): Path<String>,
) -> Response {
    let (alert, history) = {
        let store = state.alerts();
        (store.get(&alert_id), store.history(&alert_id))
    };
    let alert = match alert {
        Ok(alert) => alert,
        Err(AlertError::NotFound(_)) => {
            return view::error_page(StatusCode::NOT_FOUND, "No such alert.");
        }
        Err(e) => return unavailable("The alert cannot be read", e),
    };
    let history = match history {
        Ok(history) => history,
        Err(e) => return unavailable("The alert's history cannot be read", e),
    };
    let deliveries = match notifications_of_alert(state.data_dir(), &alert_id) {
        Ok(records) => records,
        Err(e) => return unavailable("Delivery states cannot be read", e),
    };
    let keys = evidence_keys(&state, &alert).await;
    let baseline = baseline(&state, &alert, &keys).await;
    let mut sections = Vec::new();
    let ids: Vec<String> = alert
        .evidence_event_ids
        .iter()
        .take(50)
        .map(|id| super::explore::literal(id))
        .collect();
    if !ids.is_empty() {
        let shown = super::explore::Shown {
            title: "Evidence events",
            note: "",
            sql: format!(
                "SELECT event_time, category, source, action, outcome, actor, repo, target_name, event_id
                 FROM events WHERE event_id IN ({}) AND {} ORDER BY event_time",
                ids.join(", "),
                evidence_days(&alert)
            ),
            links: &[],
        };
        match super::explore::section(&state, session.timezone, shown).await {
            Ok(section) => sections.push(section),
            Err(response) => return response,
        }
    }
    let around = match (&keys.actor, &keys.repo) {
        (Some(actor), _) => Some(("actor", actor.clone())),
        (None, Some(repo)) => Some(("repo", repo.clone())),
        _ => None,
    };
    if let Some((column, value)) = around {
        let from = time_literal(alert.event_time.timestamp() - 6 * 3_600);
        let to = time_literal(alert.last_event_time.timestamp() + 6 * 3_600);
        let days = days_between(
            alert.event_time - Duration::hours(6),
            alert.last_event_time + Duration::hours(6),
        );
        let shown = super::explore::Shown {
            title: "Around the alert",
            note: "Everything the same actor (or repository) did from six hours before the first evidence to six hours after the last.",
            sql: format!(
                "SELECT event_time, category, action, outcome, actor, repo, target_name, cicd_pipeline_run_id AS run
                 FROM events WHERE {column} = {} AND {days} AND event_time >= {from}
                   AND event_time <= {to}
                 ORDER BY event_time LIMIT 100",
                super::explore::literal(&value)
            ),
            links: &[],
        };
        match super::explore::section(&state, session.timezone, shown).await {
            Ok(section) => sections.push(section),
            Err(response) => return response,
        }
    }
    let page = AlertPage {
        nav: Nav::new(&session, "alerts"),
        assignees: assignable(&state),
        assignee: alert.assignee.clone().unwrap_or_default(),
        severity: alert.severity.as_str(),
        status: alert.status.as_str(),
        first_seen: Moment::new(alert.event_time, session.timezone),
        last_seen: Moment::new(alert.last_event_time, session.timezone),
        created: Moment::new(alert.created_at, session.timezone),
        repository: alert.scope.repository.clone().unwrap_or_default(),
        organisation: alert.scope.organisation.clone().unwrap_or_default(),
        evidence: alert.evidence_event_ids.iter().take(50).cloned().collect(),
        history: history
            .into_iter()
            .map(|change| HistoryRow {
                at: Moment::new(change.changed_at, session.timezone),
                actor: change.actor,
                from: change.from.as_str(),
                to: change.to.as_str(),
                reason: change.reason.unwrap_or_default(),
            })
            .collect(),
        deliveries: deliveries
            .into_iter()
            .map(|r| DeliveryRow {
                destination: r.destination,
                kind: r.kind,
                action: r.action,
                status: r.status,
                attempts: r.attempts,
                delivered_at: r.delivered_at.map(|t| Moment::new(t, session.timezone)),
                last_error: r.last_error.unwrap_or_default(),
            })
            .collect(),
        back: format!("/alerts/{}", alert.alert_id),
        sql_link: format!(
            "/sql?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("q", &evidence_sql(&alert))
                .finish()
        ),
        pivots: pivots(&keys),
        baseline,
        sections,
        alert,
    };
    render(&page)
}

/// Users who may be assigned alerts: those who may act on them.
fn assignable(state: &AppState) -> Vec<String> {
    match state.users().list() {
        Ok(users) => users
            .into_iter()
            .filter(|u| u.role.allows(Role::Responder))
            .map(|u| u.name)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the users alerts can be assigned to");
            Vec::new()
        }
    }
}

/// `/alerts/actions`: one action on one or more alerts.
pub(crate) async fn alert_actions(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    body: Bytes,
) -> Response {
    let mut ids = Vec::new();
    let (mut action, mut reason, mut hours, mut back, mut assignee) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "alert_id" => ids.push(value.into_owned()),
            "action" => action = value.into_owned(),
            "reason" => reason = value.trim().to_owned(),
            "hours" => hours = value.into_owned(),
            "back" => back = value.into_owned(),
            "assignee" => assignee = value.trim().to_owned(),
            _ => {}
        }
    }
    let to = match action.as_str() {
        "acknowledge" => Some(AlertStatus::Acknowledged),
        "resolve" => Some(AlertStatus::Resolved),
        "suppress" => Some(AlertStatus::Suppressed),
        "reopen" => Some(AlertStatus::Open),
        "assign" => None,
        _ => return view::error_page(StatusCode::BAD_REQUEST, "Choose an action."),
    };
    if ids.is_empty() {
        return view::error_page(StatusCode::BAD_REQUEST, "Select at least one alert.");
    }
    if to.is_none() && !assignee.is_empty() && !assignable(&state).contains(&assignee) {
        return view::error_page(
            StatusCode::BAD_REQUEST,
            &format!("{assignee} is not a user who can act on alerts."),
        );
    }
    let detail = match to {
        None if assignee.is_empty() => Some("unassigned".to_owned()),
        None => Some(format!("to {assignee}")),
        Some(_) => (!reason.is_empty()).then(|| reason.clone()),
    };
    let now = Utc::now();
    let expires = (to == Some(AlertStatus::Suppressed))
        .then(|| {
            hours
                .parse::<i64>()
                .ok()
                .filter(|h| (1..=24 * 90).contains(h))
        })
        .flatten()
        .map(|h| now + Duration::hours(h));
    let mut changed = 0usize;
    let mut refused = Vec::new();
    for id in &ids {
        let result = match to {
            Some(to) => state.alerts().change_status(
                id,
                to,
                &session.user,
                (!reason.is_empty()).then_some(reason.as_str()),
                expires,
                now,
            ),
            None => state.alerts().assign(
                id,
                (!assignee.is_empty()).then_some(assignee.as_str()),
                &session.user,
                now,
            ),
        };
        let audit_action = format!("alert.{action}");
        match result {
            Ok(_) => {
                changed += 1;
                state.audit(
                    &session.actor(),
                    &address,
                    &audit_action,
                    Some(id),
                    "ok",
                    detail.as_deref(),
                );
            }
            Err(e) => {
                state.audit(
                    &session.actor(),
                    &address,
                    &audit_action,
                    Some(id),
                    "refused",
                    Some(&e.to_string()),
                );
                refused.push(e.to_string());
            }
        }
    }
    if changed == 0 {
        return view::error_page(StatusCode::CONFLICT, &refused.join("; "));
    }
    let back = if back.starts_with("/alerts") && !back.starts_with("//") {
        back
    } else {
        "/alerts".to_owned()
    };
    Redirect::to(&back).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
}

struct AuditRow {
    at: Moment,
    entry: AuditEntry,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    filter: AuditQuery,
    rows: Vec<AuditRow>,
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let entries = state.audit_log().recent(&AuditFilter {
        actor: nonempty(&query.actor),
        action: nonempty(&query.action),
        limit: 500,
    });
    let entries = match entries {
        Ok(entries) => entries,
        Err(e) => return unavailable("The audit log cannot be read", e),
    };
    let page = AuditPage {
        nav: Nav::new(&session, "audit"),
        filter: query,
        rows: entries
            .into_iter()
            .map(|entry| AuditRow {
                at: Moment::new(entry.at, session.timezone),
                entry,
            })
            .collect(),
    };
    render(&page)
}

/// `GET /api/alerts`: the alerts page's filters, answered as JSON.
pub(crate) async fn api_alerts(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<AlertQuery>,
) -> Response {
    let alerts = state.alerts().list(&alert_filter(&query, &session.user));
    match alerts {
        Ok(alerts) => axum::Json(alerts).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot list alerts");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "error": "the alerts cannot be read" })),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "preferences.html")]
struct PreferencesPage {
    nav: Nav,
    zones: Vec<&'static str>,
    now: Moment,
}

/// `/preferences`: the timezone times are shown in.
pub(crate) async fn preferences(Extension(session): Extension<Session>) -> Response {
    let nav = Nav::new(&session, "preferences");
    let page = PreferencesPage {
        now: nav.moment(Utc::now()),
        zones: chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect(),
        nav,
    };
    render(&page)
}

/// `POST /preferences`: records the chosen timezone.
pub(crate) async fn save_preferences(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Response {
    let chosen = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "timezone")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let Ok(timezone) = chosen.parse::<chrono_tz::Tz>() else {
        return view::error_page(
            StatusCode::BAD_REQUEST,
            &format!("`{chosen}` is not a timezone of the IANA database."),
        );
    };
    match state.sessions().set_timezone(&session.user, timezone) {
        Ok(()) => Redirect::to("/preferences").into_response(),
        Err(e) => unavailable("The preference cannot be saved", e),
    }
}
