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
use datafusion::arrow::util::display::array_value_to_string;
use pipewatch_analytics::QueryOutput;
use pipewatch_analytics::alerts::{Alert, AlertError, AlertFilter, AlertStatus};
use pipewatch_analytics::metrics::{MetricValue, Scope, Window, run_metrics};
use pipewatch_analytics::notify::{NotificationRecord, notifications, notifications_of_alert};
use pipewatch_schema::Severity;
use serde::Deserialize;

use super::view::{self, Moment, Nav, format_value, render};
use super::{AppState, ClientAddress};
use crate::audit::{AuditEntry, AuditFilter};
use crate::charts;
use crate::sessions::Session;

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
    let mut rows = Vec::new();
    for batch in &output.batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| array_value_to_string(column, row).unwrap_or_default())
                    .collect(),
            );
        }
    }
    rows
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
    open_alerts: Vec<SeverityCount>,
    open_total: usize,
    sources: Vec<SourceHealth>,
    dead_letters: Vec<DeadLetterReason>,
    dead_letter_total: u64,
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
    let window = Window::days(30);
    let report = match run_metrics(&lake, Scope::Org, window).await {
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
    let hourly = lake
        .query(
            "WITH newest AS (SELECT max(event_time) AS t FROM events)
             SELECT source, CAST(floor(date_part('epoch', event_time) / 3600) AS BIGINT) AS hour, count(*) AS n
             FROM events, newest WHERE event_time > newest.t - INTERVAL '1 day'
             GROUP BY source, hour ORDER BY source, hour",
        )
        .await;
    let hourly = match hourly {
        Ok(out) => text_rows(&out),
        Err(e) => return unavailable("Ingest rates cannot be read", e),
    };
    let mut per_source: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for row in &hourly {
        if let [source, hour, n] = row.as_slice() {
            per_source
                .entry(source.clone())
                .or_default()
                .insert(hour.parse().unwrap_or(0), n.parse().unwrap_or(0));
        }
    }
    let last_hour = per_source
        .values()
        .filter_map(|h| h.keys().max().copied())
        .max()
        .unwrap_or(0);
    let mut sources: Vec<SourceHealth> = per_source
        .into_iter()
        .map(|(source, hours)| {
            let series: Vec<Option<f64>> = (last_hour - 23..=last_hour)
                .map(|h| Some(hours.get(&h).copied().unwrap_or(0) as f64))
                .collect();
            SourceHealth {
                source,
                events: hours.values().sum(),
                chart: charts::trend(&series, None),
            }
        })
        .collect();
    sources.sort_by_key(|s| std::cmp::Reverse(s.events));
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
    let page = OverviewPage {
        nav: Nav::new(&session, "overview"),
        cards: cards(&report.values),
        window: window.to_string(),
        newest: report
            .newest_event_micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(Moment::new),
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
}

struct AlertRow {
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

fn alert_filter(query: &AlertQuery) -> AlertFilter {
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
        let listed = store.list(&alert_filter(&query));
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
            last_seen: Moment::new(alert.last_event_time),
            status: alert.status.as_str(),
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
            .finish()
    );
    let page = AlertsPage {
        nav: Nav::new(&session, "alerts"),
        filter: query,
        statuses: AlertStatus::ALL.iter().map(|s| s.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        detectors,
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
    /// The console, prepared with the evidence events.
    sql_link: String,
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
        "SELECT event_time, category, source, action, outcome, actor, repo, target_name, event_id\nFROM events\nWHERE event_id IN ({})\nORDER BY event_time",
        if ids.is_empty() {
            "NULL".to_owned()
        } else {
            ids.join(", ")
        }
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
    let page = AlertPage {
        nav: Nav::new(&session, "alerts"),
        severity: alert.severity.as_str(),
        status: alert.status.as_str(),
        first_seen: Moment::new(alert.event_time),
        last_seen: Moment::new(alert.last_event_time),
        created: Moment::new(alert.created_at),
        repository: alert.scope.repository.clone().unwrap_or_default(),
        organisation: alert.scope.organisation.clone().unwrap_or_default(),
        evidence: alert.evidence_event_ids.iter().take(50).cloned().collect(),
        history: history
            .into_iter()
            .map(|change| HistoryRow {
                at: Moment::new(change.changed_at),
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
                delivered_at: r.delivered_at.map(Moment::new),
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
        alert,
    };
    render(&page)
}

/// `/alerts/actions`: one action on one or more alerts.
pub(crate) async fn alert_actions(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    body: Bytes,
) -> Response {
    let mut ids = Vec::new();
    let (mut action, mut reason, mut hours, mut back) =
        (String::new(), String::new(), String::new(), String::new());
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "alert_id" => ids.push(value.into_owned()),
            "action" => action = value.into_owned(),
            "reason" => reason = value.trim().to_owned(),
            "hours" => hours = value.into_owned(),
            "back" => back = value.into_owned(),
            _ => {}
        }
    }
    let to = match action.as_str() {
        "acknowledge" => AlertStatus::Acknowledged,
        "resolve" => AlertStatus::Resolved,
        "suppress" => AlertStatus::Suppressed,
        "reopen" => AlertStatus::Open,
        _ => return view::error_page(StatusCode::BAD_REQUEST, "Choose an action."),
    };
    if ids.is_empty() {
        return view::error_page(StatusCode::BAD_REQUEST, "Select at least one alert.");
    }
    let now = Utc::now();
    let expires = (to == AlertStatus::Suppressed)
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
        let result = state.alerts().change_status(
            id,
            to,
            &session.user,
            (!reason.is_empty()).then_some(reason.as_str()),
            expires,
            now,
        );
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
                    (!reason.is_empty()).then_some(reason.as_str()),
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
                at: Moment::new(entry.at),
                entry,
            })
            .collect(),
    };
    render(&page)
}

/// `GET /api/alerts`: the alerts page's filters, answered as JSON.
pub(crate) async fn api_alerts(
    State(state): State<AppState>,
    Query(query): Query<AlertQuery>,
) -> Response {
    let alerts = state.alerts().list(&alert_filter(&query));
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
