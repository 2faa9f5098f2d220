//! The ingest side's Prometheus metrics: records received, committed,
//! duplicate and dead-lettered per source and format (and reason), requests
//! refused, queue depth and commit latency. The binary owns the registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which intake and which native format a count is about.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `http`, `kafka`, `otlp`.
    pub source: String,
    /// The decoder's name, or `unknown`.
    pub format: String,
}

/// A count with a reason: dead letters, refusals, dropped records.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub source: String,
    pub format: String,
    pub reason: String,
}

/// One Kafka topic partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i64,
}

/// Counters and gauges shared by every long-running source.
#[derive(Debug)]
pub struct IngestMetrics {
    pub received: Family<SourceLabels, Counter>,
    pub committed: Family<SourceLabels, Counter>,
    pub duplicates: Family<SourceLabels, Counter>,
    pub dead_lettered: Family<ReasonLabels, Counter>,
    /// Records acknowledged and dropped on purpose (event types and spans
    /// that carry nothing pipewatch stores).
    pub ignored: Family<ReasonLabels, Counter>,
    /// Requests or messages refused before decoding (authentication,
    /// size, overload).
    pub refused: Family<ReasonLabels, Counter>,
    pub queued_events: Gauge,
    /// Messages behind the partition's end, as the consumer last saw it
    /// (set through [`IngestMetrics::set_kafka_lag`]).
    pub kafka_lag: Family<PartitionLabels, Gauge>,
    /// The same lags, readable in the process (the dashboard shows them).
    kafka_lag_now: std::sync::Mutex<std::collections::BTreeMap<(String, i64), KafkaLag>>,
    /// Kafka partitions this process consumes now.
    pub kafka_partitions: Gauge,
    pub commit_seconds: Histogram,
    pub commit_events: Histogram,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            received: Family::default(),
            committed: Family::default(),
            duplicates: Family::default(),
            dead_lettered: Family::default(),
            ignored: Family::default(),
            refused: Family::default(),
            queued_events: Gauge::default(),
            kafka_lag: Family::default(),
            kafka_lag_now: Default::default(),
            kafka_partitions: Gauge::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            commit_events: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
        }
    }
}

/// How far one Kafka partition's consumer is behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaLag {
    pub topic: String,
    pub partition: i64,
    /// Messages between the committed position and the partition's end.
    pub messages: i64,
    /// When the consumer last reported it.
    pub seen_at: chrono::DateTime<chrono::Utc>,
}

impl IngestMetrics {
    /// Records a partition's lag as the consumer reported it.
    pub fn set_kafka_lag(&self, topic: &str, partition: i64, messages: i64) {
        self.kafka_lag
            .get_or_create(&PartitionLabels {
                topic: topic.to_owned(),
                partition,
            })
            .set(messages);
        let mut now = self
            .kafka_lag_now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        now.insert(
            (topic.to_owned(), partition),
            KafkaLag {
                topic: topic.to_owned(),
                partition,
                messages,
                seen_at: chrono::Utc::now(),
            },
        );
    }

    /// The last lag reported for every partition, by topic and partition.
    pub fn kafka_lags(&self) -> Vec<KafkaLag> {
        self.kafka_lag_now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Creates the metrics and registers them under `pipewatch_ingest_*`.
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let metrics = IngestMetrics::default();
        let sub = registry.sub_registry_with_prefix("pipewatch_ingest");
        sub.register(
            "received_records",
            "Records received (events and bad records), per source and format",
            metrics.received.clone(),
        );
        sub.register(
            "committed_events",
            "Events durably committed to the lake",
            metrics.committed.clone(),
        );
        sub.register(
            "duplicate_events",
            "Events not stored again because their event_id is already in the lake",
            metrics.duplicates.clone(),
        );
        sub.register(
            "dead_lettered_records",
            "Records stored in the dead-letter store, per reason",
            metrics.dead_lettered.clone(),
        );
        sub.register(
            "ignored_records",
            "Records acknowledged and dropped on purpose, per reason",
            metrics.ignored.clone(),
        );
        sub.register(
            "refused_requests",
            "Requests refused before decoding, per reason",
            metrics.refused.clone(),
        );
        sub.register(
            "queued_events",
            "Events decoded and waiting for a lake commit",
            metrics.queued_events.clone(),
        );
        sub.register(
            "kafka_lag_messages",
            "Messages between the committed position and the end of each Kafka partition",
            metrics.kafka_lag.clone(),
        );
        sub.register(
            "kafka_assigned_partitions",
            "Kafka partitions assigned to this process by its consumer group",
            metrics.kafka_partitions.clone(),
        );
        sub.register(
            "commit_seconds",
            "Time to write and sync one lake commit",
            metrics.commit_seconds.clone(),
        );
        sub.register(
            "commit_batch_events",
            "Events per lake commit",
            metrics.commit_events.clone(),
        );
        std::sync::Arc::new(metrics)
    }

    /// Counts one refusal.
    pub fn refuse(&self, source: &str, format: &str, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabels {
                source: source.to_owned(),
                format: format.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts records dropped on purpose.
    pub fn ignore(&self, source: &str, format: &str, reason: &str, records: u64) {
        self.ignored
            .get_or_create(&ReasonLabels {
                source: source.to_owned(),
                format: format.to_owned(),
                reason: reason.to_owned(),
            })
            .inc_by(records);
    }
}
