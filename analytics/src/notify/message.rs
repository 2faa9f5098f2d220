//! What each destination is sent: Slack Block Kit messages, PagerDuty
//! Events v2 events and signed webhook JSON, for one alert, a status
//! change, a digest of several alerts, or a test. Sizes are kept under the
//! providers' published limits; text passes the scrubber first.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use pipewatch_schema::Severity;
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::{DeliverySettings, Destination, Target};
use super::outbox::Action;
use crate::alerts::Alert;

/// Scrubs secrets out of text bound for a third party (the ingest side's
/// redactor, handed in by the process that wires both).
pub type Scrub = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// The `schema` field of every webhook body.
pub const WEBHOOK_SCHEMA: &str = "pipewatch.notification/v1";
/// Header carrying `v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Pipewatch-Signature";
/// Header carrying the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Pipewatch-Timestamp";
/// Header carrying the delivery id, the same on every retry.
pub const DELIVERY_HEADER: &str = "X-Pipewatch-Delivery";

/// PagerDuty's limits.
const PAGERDUTY_SUMMARY_CHARS: usize = 1024;
const PAGERDUTY_DEDUP_KEY_CHARS: usize = 255;
/// Slack's Block Kit limits.
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_TEXT_CHARS: usize = 3000;
const SLACK_FIELD_CHARS: usize = 2000;
/// Alerts listed by name in a digest; the rest are counted.
const DIGEST_LISTED: usize = 10;
/// Evidence ids quoted in a message.
const EVIDENCE_QUOTED: usize = 5;

/// What a message is about.
#[derive(Debug, Clone)]
pub enum Content {
    /// One alert (trigger, acknowledge or resolve).
    Alert { action: Action, alert: Box<Alert> },
    /// Several alerts folded into one message.
    Digest { alerts: Vec<Alert>, reason: String },
    /// A test through a route.
    Test { route: String },
}

/// An HTTP request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack mrkdwn treats these three as control characters.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn scrubbed(scrub: &Scrub, text: &str) -> String {
    let mut value = Value::String(text.to_owned());
    scrub(&mut value);
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The alert with every free-text field scrubbed.
fn clean(alert: &Alert, scrub: &Scrub) -> Alert {
    let mut alert = alert.clone();
    alert.title = scrubbed(scrub, &alert.title);
    alert.explanation = scrubbed(scrub, &alert.explanation);
    alert.entity = scrubbed(scrub, &alert.entity);
    alert.status_reason = alert.status_reason.as_deref().map(|r| scrubbed(scrub, r));
    alert.evidence_event_ids = alert
        .evidence_event_ids
        .iter()
        .map(|e| scrubbed(scrub, e))
        .collect();
    alert.scope.organisation = alert
        .scope
        .organisation
        .as_deref()
        .map(|o| scrubbed(scrub, o));
    alert.scope.repository = alert
        .scope
        .repository
        .as_deref()
        .map(|r| scrubbed(scrub, r));
    alert
}

fn alert_url(settings: &DeliverySettings, alert_id: &str) -> String {
    format!("{}/alerts/{alert_id}", settings.dashboard_url)
}

/// The PagerDuty `dedup_key` of an alert: stable across retries, restarts
/// and escalations, so PagerDuty keeps one incident per alert group.
pub fn dedup_key(alert_id: &str) -> String {
    truncate(&format!("pipewatch/{alert_id}"), PAGERDUTY_DEDUP_KEY_CHARS)
}

fn digest_dedup_key(notification_id: i64) -> String {
    format!("pipewatch/digest/{notification_id}")
}

fn pagerduty_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "info",
    }
}

fn severity_marker(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":red_circle:",
        Severity::High => ":large_orange_circle:",
        Severity::Medium => ":large_yellow_circle:",
        Severity::Low | Severity::Info => ":white_circle:",
    }
}

fn capitalized(severity: Severity) -> String {
    let text = severity.as_str();
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The webhook/PagerDuty view of an alert: everything a receiver needs,
/// nothing it must not see.
fn alert_json(alert: &Alert, settings: &DeliverySettings) -> Value {
    json!({
        "alert_id": alert.alert_id,
        "url": alert_url(settings, &alert.alert_id),
        "detector": alert.detector,
        "severity": alert.severity.as_str(),
        "score": alert.score,
        "status": alert.status.as_str(),
        "title": alert.title,
        "explanation": alert.explanation,
        "entity": alert.entity,
        "organisation": alert.scope.organisation,
        "repository": alert.scope.repository,
        "category": alert.scope.category.map(|c| c.as_str()),
        "first_event_time": alert.event_time.to_rfc3339(),
        "last_event_time": alert.last_event_time.to_rfc3339(),
        "created_at": alert.created_at.to_rfc3339(),
        "findings": alert.findings,
        "evidence_event_ids": alert.evidence_event_ids.iter().take(50).collect::<Vec<_>>(),
        "evidence_total": alert.evidence_event_ids.len(),
    })
}

fn test_alert(route: &str, now: DateTime<Utc>) -> Alert {
    Alert {
        alert_id: format!("test-{}", now.timestamp_millis()),
        detector: "test".into(),
        severity: Severity::Info,
        score: 0.0,
        created_at: now,
        updated_at: now,
        event_time: now,
        last_event_time: now,
        title: format!("[TEST] pipewatch test notification through route `{route}`"),
        explanation: "This is a test sent by `pipewatch alerts test-route`. No alert was raised and nothing needs doing.".into(),
        entity: "pipewatch".into(),
        evidence_event_ids: Vec::new(),
        findings: 0,
        status: crate::alerts::AlertStatus::Open,
        status_reason: None,
        suppressed_until: None,
        scope: Default::default(),
        assignee: None,
    }
}

/// Builds the request for `destination`. `delivery_id` is the outbox row
/// (the same on every retry); `now` stamps webhook signatures.
pub fn render(
    destination: &Destination,
    settings: &DeliverySettings,
    content: &Content,
    delivery_id: &str,
    scrub: &Scrub,
    now: DateTime<Utc>,
) -> Request {
    match &destination.target {
        Target::Slack { webhook_url } => Request {
            url: webhook_url.expose().to_owned(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: slack(settings, content, scrub, now)
                .to_string()
                .into_bytes(),
        },
        Target::Pagerduty {
            events_url,
            routing_key,
        } => {
            let mut event = pagerduty(settings, content, delivery_id, scrub, now);
            if let Value::Object(map) = &mut event {
                map.insert(
                    "routing_key".into(),
                    Value::String(routing_key.expose().to_owned()),
                );
            }
            Request {
                url: events_url.clone(),
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: event.to_string().into_bytes(),
            }
        }
        Target::Webhook { url, secret } => {
            let body = webhook(settings, content, delivery_id, scrub, now)
                .to_string()
                .into_bytes();
            let timestamp = now.timestamp().to_string();
            Request {
                url: url.clone(),
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    (TIMESTAMP_HEADER.into(), timestamp.clone()),
                    (
                        SIGNATURE_HEADER.into(),
                        webhook_signature(secret.expose().as_bytes(), &timestamp, &body),
                    ),
                    (DELIVERY_HEADER.into(), delivery_id.to_owned()),
                ],
                body,
            }
        }
    }
}

/// `v0=<hex HMAC-SHA256 over "v0:<timestamp>:<body>">`.
pub fn webhook_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a webhook call was refused by [`verify_webhook`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("the timestamp is missing or not a number")]
    BadTimestamp,
    #[error("the timestamp is {0} s away from now; the call is stale or replayed")]
    Stale(i64),
    #[error("the signature does not match the body")]
    BadSignature,
}

/// How a receiver checks a pipewatch webhook: the timestamp within
/// `tolerance_secs` of `now`, and the signature compared in constant time.
pub fn verify_webhook(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: DateTime<Utc>,
    tolerance_secs: i64,
) -> Result<(), WebhookRejection> {
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookRejection::BadTimestamp)?;
    let skew = now.timestamp() - sent;
    if skew.abs() > tolerance_secs {
        return Err(WebhookRejection::Stale(skew));
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(WebhookRejection::BadSignature)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .map_err(|_| WebhookRejection::BadSignature)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| WebhookRejection::BadSignature)
}

fn slack(
    settings: &DeliverySettings,
    content: &Content,
    scrub: &Scrub,
    now: DateTime<Utc>,
) -> Value {
    match content {
        Content::Alert { action, alert } => {
            let alert = clean(alert, scrub);
            slack_alert(settings, &alert, *action)
        }
        Content::Test { route } => slack_alert(settings, &test_alert(route, now), Action::Trigger),
        Content::Digest { alerts, reason } => {
            let alerts: Vec<Alert> = alerts.iter().map(|a| clean(a, scrub)).collect();
            slack_digest(settings, &alerts, reason)
        }
    }
}

fn slack_alert(settings: &DeliverySettings, alert: &Alert, action: Action) -> Value {
    let verb = match action {
        Action::Acknowledge => "Acknowledged: ",
        Action::Resolve => "Resolved: ",
        Action::Trigger | Action::Digest => "",
    };
    let header = truncate(
        &format!(
            "{}{verb}{}",
            capitalized(alert.severity) + " · ",
            alert.title
        ),
        SLACK_HEADER_CHARS,
    );
    let url = alert_url(settings, &alert.alert_id);
    let evidence: Vec<String> = alert
        .evidence_event_ids
        .iter()
        .take(EVIDENCE_QUOTED)
        .map(|e| format!("`{}`", slack_escape(e)))
        .collect();
    let more = alert
        .evidence_event_ids
        .len()
        .saturating_sub(EVIDENCE_QUOTED);
    let mut evidence_text = evidence.join("\n");
    if more > 0 {
        evidence_text.push_str(&format!("\n…and {more} more"));
    }
    let field = |label: &str, value: &str| json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{}", slack_escape(value)), SLACK_FIELD_CHARS)});
    let mut fields = vec![
        field("Severity", alert.severity.as_str()),
        field("Detector", &alert.detector),
        field("Entity", &alert.entity),
    ];
    if let Some(repo) = &alert.scope.repository {
        fields.push(field("Repository", repo));
    } else if let Some(org) = &alert.scope.organisation {
        fields.push(field("Organisation", org));
    }
    fields.push(field(
        "First seen",
        &alert.event_time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    ));
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&slack_escape(&alert.explanation), SLACK_TEXT_CHARS)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if !evidence_text.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("*Evidence*\n{evidence_text}"), SLACK_TEXT_CHARS)}}));
    }
    blocks.push(json!({"type": "actions", "elements": [{
        "type": "button",
        "text": {"type": "plain_text", "text": "Open in pipewatch"},
        "url": url,
    }]}));
    blocks.push(json!({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": format!("{} pipewatch alert `{}` · {} finding(s)", severity_marker(alert.severity), alert.alert_id, alert.findings),
    }]}));
    json!({
        "text": truncate(&format!("[{}] {verb}{}", alert.severity.as_str().to_uppercase(), alert.title), SLACK_TEXT_CHARS),
        "blocks": blocks,
    })
}

fn severity_counts(alerts: &[Alert]) -> String {
    Severity::ALL
        .iter()
        .rev()
        .filter_map(|s| {
            let n = alerts.iter().filter(|a| a.severity == *s).count();
            (n > 0).then(|| format!("{n} {}", s.as_str()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most severe first, then highest score.
fn ranked(alerts: &[Alert]) -> Vec<&Alert> {
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.score.total_cmp(&a.score))
    });
    sorted
}

fn slack_digest(settings: &DeliverySettings, alerts: &[Alert], reason: &str) -> Value {
    let header = truncate(
        &format!(
            "{} pipewatch alerts ({})",
            alerts.len(),
            severity_counts(alerts)
        ),
        SLACK_HEADER_CHARS,
    );
    let lines: Vec<String> = ranked(alerts)
        .iter()
        .take(DIGEST_LISTED)
        .map(|a| {
            format!(
                "{} <{}|{}>",
                severity_marker(a.severity),
                alert_url(settings, &a.alert_id),
                slack_escape(&truncate(&a.title, 200))
            )
        })
        .collect();
    let more = alerts.len().saturating_sub(DIGEST_LISTED);
    let mut list = lines.join("\n");
    if more > 0 {
        list.push_str(&format!("\n…and {more} more on the dashboard"));
    }
    json!({
        "text": header,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&list, SLACK_TEXT_CHARS)}},
            {"type": "actions", "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open alerts in pipewatch"},
                "url": format!("{}/alerts", settings.dashboard_url),
            }]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&slack_escape(reason), SLACK_FIELD_CHARS)}]},
        ],
    })
}

fn pagerduty(
    settings: &DeliverySettings,
    content: &Content,
    delivery_id: &str,
    scrub: &Scrub,
    now: DateTime<Utc>,
) -> Value {
    match content {
        Content::Alert { action, alert } => {
            let alert = clean(alert, scrub);
            match action {
                Action::Acknowledge | Action::Resolve => json!({
                    "event_action": action.as_str(),
                    "dedup_key": dedup_key(&alert.alert_id),
                }),
                Action::Trigger | Action::Digest => pagerduty_trigger(settings, &alert),
            }
        }
        Content::Test { route } => {
            let mut event = pagerduty_trigger(settings, &test_alert(route, now));
            if let Value::Object(map) = &mut event {
                map.insert(
                    "dedup_key".into(),
                    Value::String(format!("pipewatch/test/{delivery_id}")),
                );
            }
            event
        }
        Content::Digest { alerts, reason } => {
            let alerts: Vec<Alert> = alerts.iter().map(|a| clean(a, scrub)).collect();
            let top = ranked(&alerts);
            let severity = top.first().map_or(Severity::Info, |a| a.severity);
            let listed: Vec<Value> = top
                .iter()
                .take(50)
                .map(|a| {
                    json!({
                        "alert_id": a.alert_id,
                        "severity": a.severity.as_str(),
                        "title": a.title,
                        "url": alert_url(settings, &a.alert_id),
                    })
                })
                .collect();
            let titles: Vec<&str> = top.iter().take(3).map(|a| a.title.as_str()).collect();
            json!({
                "event_action": "trigger",
                "dedup_key": digest_dedup_key(delivery_id.parse().unwrap_or_default()),
                "client": "pipewatch",
                "client_url": format!("{}/alerts", settings.dashboard_url),
                "payload": {
                    "summary": truncate(&format!("{} pipewatch alerts ({}): {}", alerts.len(), severity_counts(&alerts), titles.join("; ")), PAGERDUTY_SUMMARY_CHARS),
                    "source": "pipewatch",
                    "severity": pagerduty_severity(severity),
                    "timestamp": now.to_rfc3339(),
                    "class": "digest",
                    "custom_details": {"reason": reason, "alerts": listed, "total": alerts.len()},
                },
                "links": [{"href": format!("{}/alerts", settings.dashboard_url), "text": "Open alerts in pipewatch"}],
            })
        }
    }
}

fn pagerduty_trigger(settings: &DeliverySettings, alert: &Alert) -> Value {
    let url = alert_url(settings, &alert.alert_id);
    let source = alert
        .scope
        .repository
        .clone()
        .or_else(|| alert.scope.organisation.clone())
        .unwrap_or_else(|| alert.entity.clone());
    json!({
        "event_action": "trigger",
        "dedup_key": dedup_key(&alert.alert_id),
        "client": "pipewatch",
        "client_url": url,
        "payload": {
            "summary": truncate(&format!("[{}] {}", alert.severity.as_str(), alert.title), PAGERDUTY_SUMMARY_CHARS),
            "source": truncate(&source, 255),
            "severity": pagerduty_severity(alert.severity),
            "timestamp": alert.event_time.to_rfc3339(),
            "component": truncate(&alert.entity, 255),
            "group": alert.scope.organisation,
            "class": alert.detector,
            "custom_details": {
                "explanation": alert.explanation,
                "entity": alert.entity,
                "detector": alert.detector,
                "score": alert.score,
                "findings": alert.findings,
                "evidence_event_ids": alert.evidence_event_ids.iter().take(20).collect::<Vec<_>>(),
                "evidence_total": alert.evidence_event_ids.len(),
            },
        },
        "links": [{"href": url, "text": "Open in pipewatch"}],
    })
}

fn webhook(
    settings: &DeliverySettings,
    content: &Content,
    delivery_id: &str,
    scrub: &Scrub,
    now: DateTime<Utc>,
) -> Value {
    let (event, alerts, reason) = match content {
        Content::Alert { action, alert } => {
            let event = match action {
                Action::Trigger | Action::Digest => "alert.triggered",
                Action::Acknowledge => "alert.acknowledged",
                Action::Resolve => "alert.resolved",
            };
            (event, vec![clean(alert, scrub)], None)
        }
        Content::Digest { alerts, reason } => (
            "alerts.digest",
            alerts.iter().map(|a| clean(a, scrub)).collect(),
            Some(reason.as_str()),
        ),
        Content::Test { route } => ("test", vec![test_alert(route, now)], None),
    };
    let listed: Vec<Value> = alerts.iter().map(|a| alert_json(a, settings)).collect();
    json!({
        "schema": WEBHOOK_SCHEMA,
        "delivery_id": delivery_id,
        "event": event,
        "sent_at": now.to_rfc3339(),
        "reason": reason,
        "alerts": listed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::{DestinationKind, SecretText};

    #[test]
    fn a_webhook_signature_verifies_and_rejects_tampering_and_staleness() {
        let now = Utc::now();
        let stamp = now.timestamp().to_string();
        let body = br#"{"event":"test"}"#;
        let signature = webhook_signature(b"shh", &stamp, body);
        assert_eq!(
            verify_webhook(b"shh", &stamp, body, &signature, now, 300),
            Ok(())
        );
        assert_eq!(
            verify_webhook(
                b"shh",
                &stamp,
                b"{\"event\":\"other\"}",
                &signature,
                now,
                300
            ),
            Err(WebhookRejection::BadSignature)
        );
        assert_eq!(
            verify_webhook(b"other", &stamp, body, &signature, now, 300),
            Err(WebhookRejection::BadSignature)
        );
        let later = now + chrono::Duration::seconds(301);
        assert!(matches!(
            verify_webhook(b"shh", &stamp, body, &signature, later, 300),
            Err(WebhookRejection::Stale(301))
        ));
    }

    #[test]
    fn pagerduty_limits_are_kept_for_long_titles() {
        let settings = DeliverySettings {
            dashboard_url: "http://pw".into(),
            request_timeout: std::time::Duration::from_secs(1),
            max_attempts: 1,
            retry_initial: std::time::Duration::from_secs(1),
            retry_max: std::time::Duration::from_secs(1),
        };
        let destination = Destination {
            name: "pd".into(),
            kind: DestinationKind::Pagerduty,
            target: Target::Pagerduty {
                events_url: "http://pd".into(),
                routing_key: SecretText::new("k"),
            },
            per_minute: 1,
            burst: 1,
        };
        let mut alert = test_alert("r", Utc::now());
        alert.title = "x".repeat(5000);
        let scrub: Scrub = Arc::new(|_| {});
        let request = render(
            &destination,
            &settings,
            &Content::Alert {
                action: Action::Trigger,
                alert: Box::new(alert),
            },
            "1",
            &scrub,
            Utc::now(),
        );
        let event: Value = serde_json::from_slice(&request.body).expect("json");
        let summary = event["payload"]["summary"].as_str().expect("summary");
        assert_eq!(summary.chars().count(), PAGERDUTY_SUMMARY_CHARS);
        assert_eq!(event["routing_key"], "k");
        assert!(event["dedup_key"].as_str().expect("key").len() <= PAGERDUTY_DEDUP_KEY_CHARS);
    }
}
