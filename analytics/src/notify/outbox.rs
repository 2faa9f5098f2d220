//! The durable outbox: one row per message to send, written in the same
//! SQLite transaction as the alert or status change it announces, and
//! moved through pending → delivered | failed | folded by the deliverers.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::config::{DestinationKind, Routing};
use crate::alerts::{Alert, AlertStatus, from_micros, micros};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    notification_id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT,
    route TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt_at INTEGER,
    last_attempt_at INTEGER,
    delivered_at INTEGER,
    response_status INTEGER,
    last_error TEXT,
    digest_id INTEGER,
    digest_alerts TEXT
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (destination, status, due_at);
CREATE INDEX IF NOT EXISTS notifications_by_alert ON notifications (alert_id, destination);
";

/// Creates the outbox tables if needed.
pub(crate) fn create(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(SCHEMA)
}

/// What a notification does at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new (or escalated) alert.
    Trigger,
    /// Someone acknowledged the alert in pipewatch.
    Acknowledge,
    /// The alert was resolved in pipewatch.
    Resolve,
    /// Several alerts in one message (a storm, or a grouping route).
    Digest,
}

impl Action {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
            Action::Digest => "digest",
        }
    }

    fn parse(text: &str) -> Action {
        match text {
            "acknowledge" => Action::Acknowledge,
            "resolve" => Action::Resolve,
            "digest" => Action::Digest,
            _ => Action::Trigger,
        }
    }
}

/// One row of the outbox, as a deliverer sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub notification_id: i64,
    pub alert_id: Option<String>,
    pub route: String,
    pub destination: String,
    pub action: Action,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub attempts: u32,
    /// For digests: the alerts they carry.
    pub digest_alerts: Vec<String>,
}

/// Queues `alert` for every route it matches and every destination of
/// those routes that has not been sent a trigger for it yet. Suppressed or
/// resolved alerts are not announced.
pub(crate) fn enqueue_alert(
    tx: &Transaction<'_>,
    routing: &Routing,
    alert: &Alert,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    if !matches!(alert.status, AlertStatus::Open | AlertStatus::Acknowledged) {
        return Ok(0);
    }
    let mut queued = 0;
    for route in routing.routes.iter().filter(|r| r.matches(alert)) {
        for name in &route.destinations {
            let Some(destination) = routing.destination(name) else {
                continue;
            };
            let already: Option<i64> = tx
                .query_row(
                    "SELECT notification_id FROM notifications
                     WHERE alert_id = ?1 AND destination = ?2 AND action = 'trigger' LIMIT 1",
                    params![alert.alert_id, name],
                    |row| row.get(0),
                )
                .optional()?;
            if already.is_some() {
                continue;
            }
            let mut due = micros(now);
            if route.group_window_secs > 0 {
                // Join the group that is already waiting, or open one.
                let waiting: Option<i64> = tx
                    .query_row(
                        "SELECT min(due_at) FROM notifications
                         WHERE route = ?1 AND destination = ?2 AND action = 'trigger'
                           AND status = 'pending' AND due_at > ?3",
                        params![route.name, name, due],
                        |row| row.get(0),
                    )
                    .optional()?
                    .flatten();
                due = waiting.unwrap_or(due + secs_micros(route.group_window_secs));
            }
            if route.min_interval_secs > 0 {
                let last: Option<i64> = tx
                    .query_row(
                        "SELECT max(first_attempt_at) FROM notifications
                         WHERE route = ?1 AND destination = ?2 AND action IN ('trigger', 'digest')
                           AND status IN ('pending', 'delivered', 'failed') AND first_attempt_at IS NOT NULL",
                        params![route.name, name],
                        |row| row.get(0),
                    )
                    .optional()?
                    .flatten();
                if let Some(last) = last {
                    due = due.max(last + secs_micros(route.min_interval_secs));
                }
            }
            tx.execute(
                "INSERT INTO notifications
                    (alert_id, route, destination, kind, action, status, created_at, due_at)
                 VALUES (?1, ?2, ?3, ?4, 'trigger', 'pending', ?5, ?6)",
                params![
                    alert.alert_id,
                    route.name,
                    name,
                    destination.kind.as_str(),
                    micros(now),
                    due
                ],
            )?;
            queued += 1;
        }
    }
    Ok(queued)
}

fn secs_micros(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 2_000_000) * 1_000_000
}

/// Queues the follow-up of a status change for every destination that
/// tracks alert state (PagerDuty, webhooks) and was sent, or is about to be
/// sent, this alert's trigger. Needs no configuration, so a status change
/// made by any process is announced.
pub(crate) fn enqueue_status_change(
    tx: &Transaction<'_>,
    alert_id: &str,
    to: AlertStatus,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let action = match to {
        AlertStatus::Acknowledged => Action::Acknowledge,
        AlertStatus::Resolved => Action::Resolve,
        AlertStatus::Open | AlertStatus::Suppressed => return Ok(0),
    };
    tx.execute(
        "INSERT INTO notifications
            (alert_id, route, destination, kind, action, status, created_at, due_at)
         SELECT DISTINCT alert_id, route, destination, kind, ?2, 'pending', ?3, ?3
         FROM notifications
         WHERE alert_id = ?1 AND action = 'trigger' AND status IN ('pending', 'delivered')
           AND kind IN (?4, ?5)",
        params![
            alert_id,
            action.as_str(),
            micros(now),
            DestinationKind::Pagerduty.as_str(),
            DestinationKind::Webhook.as_str()
        ],
    )
}

fn read_pending(row: &rusqlite::Row<'_>) -> rusqlite::Result<Pending> {
    let action: String = row.get("action")?;
    let digest: Option<String> = row.get("digest_alerts")?;
    Ok(Pending {
        notification_id: row.get("notification_id")?,
        alert_id: row.get("alert_id")?,
        route: row.get("route")?,
        destination: row.get("destination")?,
        action: Action::parse(&action),
        created_at: from_micros(row.get("created_at")?),
        due_at: from_micros(row.get("due_at")?),
        attempts: row.get("attempts")?,
        digest_alerts: digest
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_default(),
    })
}

/// Pending notifications of `destination` due by `now`, oldest first.
pub(crate) fn due(
    connection: &Connection,
    destination: &str,
    now: DateTime<Utc>,
    limit: usize,
) -> rusqlite::Result<Vec<Pending>> {
    let mut statement = connection.prepare_cached(
        "SELECT * FROM notifications
         WHERE destination = ?1 AND status = 'pending' AND due_at <= ?2
         ORDER BY notification_id LIMIT ?3",
    )?;
    let rows = statement.query_map(
        params![
            destination,
            micros(now),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        read_pending,
    )?;
    rows.collect()
}

/// When the next pending notification of `destination` falls due.
pub(crate) fn next_due(
    connection: &Connection,
    destination: &str,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let due: Option<i64> = connection
        .query_row(
            "SELECT min(due_at) FROM notifications WHERE destination = ?1 AND status = 'pending'",
            params![destination],
            |row| row.get(0),
        )
        .optional()?
        .flatten();
    Ok(due.map(from_micros))
}

/// Replaces `triggers` with one pending digest carrying their alerts, in
/// one transaction, and returns it.
pub(crate) fn fold(
    connection: &mut Connection,
    triggers: &[Pending],
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<Pending>> {
    let Some(first) = triggers.first() else {
        return Ok(None);
    };
    let alerts: Vec<&str> = triggers
        .iter()
        .filter_map(|t| t.alert_id.as_deref())
        .collect();
    let same_route = triggers.iter().all(|t| t.route == first.route);
    let route = if same_route {
        first.route.as_str()
    } else {
        "*"
    };
    let tx = connection.transaction()?;
    tx.execute(
        "INSERT INTO notifications
            (alert_id, route, destination, kind, action, status, created_at, due_at, digest_alerts)
         SELECT NULL, ?1, destination, kind, 'digest', 'pending', ?2, ?2, ?3
         FROM notifications WHERE notification_id = ?4",
        params![
            route,
            micros(now),
            serde_json::to_string(&alerts).unwrap_or_else(|_| "[]".into()),
            first.notification_id
        ],
    )?;
    let digest = tx.last_insert_rowid();
    {
        let mut update = tx.prepare_cached(
            "UPDATE notifications SET status = 'folded', digest_id = ?2
             WHERE notification_id = ?1 AND status = 'pending'",
        )?;
        for trigger in triggers {
            update.execute(params![trigger.notification_id, digest])?;
        }
    }
    let row = tx.query_row(
        "SELECT * FROM notifications WHERE notification_id = ?1",
        params![digest],
        read_pending,
    )?;
    tx.commit()?;
    Ok(Some(row))
}

/// Records that an attempt starts now.
pub(crate) fn attempt_started(
    connection: &Connection,
    notification_id: i64,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    connection.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_attempt_at = ?2,
            first_attempt_at = coalesce(first_attempt_at, ?2)
         WHERE notification_id = ?1",
        params![notification_id, micros(now)],
    )?;
    Ok(())
}

/// Where an attempt left a notification.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Settled {
    Delivered,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// Records the outcome of an attempt.
pub(crate) fn settle(
    connection: &Connection,
    notification_id: i64,
    outcome: &Settled,
    response_status: Option<u16>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let (status, due, delivered) = match outcome {
        Settled::Delivered => ("delivered", None, Some(micros(now))),
        Settled::RetryAt(at) => ("pending", Some(micros(*at)), None),
        Settled::Failed => ("failed", None, None),
    };
    connection.execute(
        "UPDATE notifications SET status = ?2, due_at = coalesce(?3, due_at),
            delivered_at = ?4, response_status = ?5, last_error = ?6
         WHERE notification_id = ?1",
        params![
            notification_id,
            status,
            due,
            delivered,
            response_status,
            error
        ],
    )?;
    Ok(())
}

/// One notification as SQL's `notifications` table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub notification_id: i64,
    pub alert_id: Option<String>,
    pub route: String,
    pub destination: String,
    pub kind: String,
    pub action: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub attempts: i64,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub response_status: Option<i64>,
    pub last_error: Option<String>,
    pub digest_id: Option<i64>,
    pub digest_alerts: Vec<String>,
}

/// Every notification (or those of one alert, digests included), oldest first.
pub(crate) fn list(
    connection: &Connection,
    alert_id: Option<&str>,
) -> rusqlite::Result<Vec<NotificationRecord>> {
    let mut statement = connection.prepare(
        "SELECT * FROM notifications WHERE ?1 IS NULL OR alert_id = ?1
         OR (digest_alerts IS NOT NULL AND instr(digest_alerts, '\"' || ?1 || '\"') > 0)
         ORDER BY notification_id",
    )?;
    let rows = statement.query_map(rusqlite::params![alert_id], |row| {
        let time = |name: &str| -> rusqlite::Result<Option<DateTime<Utc>>> {
            Ok(row.get::<_, Option<i64>>(name)?.map(from_micros))
        };
        let digest: Option<String> = row.get("digest_alerts")?;
        Ok(NotificationRecord {
            notification_id: row.get("notification_id")?,
            alert_id: row.get("alert_id")?,
            route: row.get("route")?,
            destination: row.get("destination")?,
            kind: row.get("kind")?,
            action: row.get("action")?,
            status: row.get("status")?,
            created_at: from_micros(row.get("created_at")?),
            due_at: from_micros(row.get("due_at")?),
            attempts: row.get("attempts")?,
            first_attempt_at: time("first_attempt_at")?,
            last_attempt_at: time("last_attempt_at")?,
            delivered_at: time("delivered_at")?,
            response_status: row.get("response_status")?,
            last_error: row.get("last_error")?,
            digest_id: row.get("digest_id")?,
            digest_alerts: digest
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_default(),
        })
    })?;
    rows.collect()
}
