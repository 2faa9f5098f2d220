//! Alert delivery inside `pipewatch serve`: starts the deliverers over the
//! control database, scrubs outgoing text with the lake's redactor, and
//! exports delivery outcomes and alert-to-request latency as metrics.

use std::sync::Arc;
use std::time::Duration;

use pipewatch_analytics::notify::{Action, DeliveryObserver, Scrub};
use pipewatch_ingest::Redactor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Delivery metrics: attempts by destination, action and outcome; folds;
/// and the time from an alert being stored to its first request.
#[derive(Debug)]
pub(crate) struct NotifyMetrics {
    attempts: Family<AttemptLabels, Counter>,
    folded: Family<DestinationLabel, Counter>,
    alert_to_request: Histogram,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    destination: String,
    action: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabel {
    destination: String,
}

impl NotifyMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = NotifyMetrics {
            attempts: Family::default(),
            folded: Family::default(),
            alert_to_request: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        };
        let sub = registry.sub_registry_with_prefix("pipewatch_notify");
        sub.register(
            "attempts",
            "Delivery attempts per destination, action and outcome (delivered, retry, rate_limited, failed)",
            metrics.attempts.clone(),
        );
        sub.register(
            "folded",
            "Notifications folded into digests, per destination",
            metrics.folded.clone(),
        );
        sub.register(
            "alert_to_request_seconds",
            "From an alert being stored to the first request announcing it",
            metrics.alert_to_request.clone(),
        );
        Arc::new(metrics)
    }
}

impl DeliveryObserver for NotifyMetrics {
    fn attempted(
        &self,
        destination: &str,
        action: Action,
        outcome: &'static str,
        alert_to_request: Option<Duration>,
    ) {
        self.attempts
            .get_or_create(&AttemptLabels {
                destination: destination.to_owned(),
                action: action.as_str(),
                outcome,
            })
            .inc();
        if let Some(latency) = alert_to_request {
            self.alert_to_request.observe(latency.as_secs_f64());
        }
    }

    fn folded(&self, destination: &str, notifications: usize) {
        self.folded
            .get_or_create(&DestinationLabel {
                destination: destination.to_owned(),
            })
            .inc_by(notifications as u64);
    }
}

/// Outgoing text passes the same redaction as the lake.
pub(crate) fn scrub(redactor: Arc<Redactor>) -> Scrub {
    Arc::new(move |value| redactor.redact_json(value))
}
