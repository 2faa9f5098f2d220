//! The Kafka source: one consumer in a consumer group over the configured
//! topics, each mapped to a format (or detected per message). Offsets are
//! committed only after the lake commit holding their records is durable;
//! lake files are named after the partition's offset range, so a replay
//! after a crash finds its events stored and adds nothing. Records that
//! cannot be decoded also go to a dead-letter topic with the reason in
//! headers. Before partitions are revoked, what is buffered for them is
//! committed and their offsets with it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pipewatch_schema::Event;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;

use super::secret::SecretRef;
use crate::IngestError;
use crate::dead_letter::DeadLetter;
use crate::decoders::{Format, Input};
use crate::intake::{AckReceiver, IntakeHandle, Submission, decode_redacted};
use crate::metrics::IngestMetrics;
use crate::redact::Redactor;

const SOURCE: &str = "kafka";

/// Settings pipewatch manages itself; `properties` may not override them.
const MANAGED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
];

/// The `[[sources]] kind = "kafka"` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group; processes with the same group share partitions.
    pub group_id: String,
    pub topics: Vec<KafkaTopicConfig>,
    /// Where undecodable records are copied, with the reason in headers;
    /// empty for none (they still go to the dead-letter store).
    pub dead_letter_topic: String,
    /// Most records buffered per commit.
    pub batch_records: usize,
    /// Longest a record waits in the buffer before a commit.
    pub linger_ms: u64,
    /// Further librdkafka settings (`security.protocol`, `sasl.mechanism`…).
    pub properties: BTreeMap<String, String>,
    /// librdkafka settings whose values are secrets (`sasl.password`), by reference.
    pub secret_properties: BTreeMap<String, SecretRef>,
}

/// One topic and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopicConfig {
    pub name: String,
    /// A format name (`pipewatch formats`), or `auto` to detect per message.
    #[serde(default = "auto")]
    pub format: String,
}

fn auto() -> String {
    "auto".into()
}

impl Default for KafkaSourceConfig {
    fn default() -> Self {
        KafkaSourceConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "pipewatch".into(),
            topics: Vec::new(),
            dead_letter_topic: "pipewatch-dead-letters".into(),
            batch_records: 5_000,
            linger_ms: 200,
            properties: BTreeMap::new(),
            secret_properties: BTreeMap::new(),
        }
    }
}

impl KafkaSourceConfig {
    /// Refuses settings that cannot work, naming them.
    pub fn check(&self) -> Result<(), IngestError> {
        let bad = |what: String| Err(IngestError::Config(format!("sources.kafka.{what}")));
        if self.brokers.trim().is_empty() {
            return bad("brokers is empty".into());
        }
        if self.group_id.trim().is_empty() {
            return bad("group_id is empty".into());
        }
        if self.topics.is_empty() {
            return bad("topics lists no topic".into());
        }
        for topic in &self.topics {
            if topic.format != "auto" && Format::from_name(&topic.format).is_none() {
                return bad(format!(
                    "topics: `{}` names the unknown format `{}` (see `pipewatch formats`, or use auto)",
                    topic.name, topic.format
                ));
            }
        }
        if self.batch_records == 0 {
            return bad("batch_records must be above 0".into());
        }
        for key in self.properties.keys().chain(self.secret_properties.keys()) {
            if MANAGED_PROPERTIES.contains(&key.as_str()) {
                return bad(format!(
                    "properties: `{key}` is set by pipewatch (use brokers / group_id)"
                ));
            }
        }
        Ok(())
    }

    fn client_config(&self) -> Result<ClientConfig, IngestError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        for (key, secret) in &self.secret_properties {
            config.set(key, secret.resolve()?.expose_text());
        }
        Ok(config)
    }
}

/// A running consumer thread.
#[derive(Debug)]
pub struct KafkaSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KafkaSource {
    /// Connects, subscribes and starts consuming on a thread of its own.
    pub fn start(
        config: &KafkaSourceConfig,
        intake: IntakeHandle,
        redactor: Arc<Redactor>,
        metrics: Arc<IngestMetrics>,
    ) -> Result<Self, IngestError> {
        config.check()?;
        let kafka = |e: rdkafka::error::KafkaError| IngestError::Config(format!("kafka: {e}"));
        let client = config.client_config()?;
        let stop = Arc::new(AtomicBool::new(false));
        let producer = if config.dead_letter_topic.is_empty() {
            None
        } else {
            let producer: BaseProducer<DeadLetterDelivery> = client
                .clone()
                .set("enable.idempotence", "true")
                .create_with_context(DeadLetterDelivery::default())
                .map_err(kafka)?;
            Some(producer)
        };
        let formats = config
            .topics
            .iter()
            .map(|t| (t.name.clone(), Format::from_name(&t.format)))
            .collect();
        let context = KafkaContext {
            buffers: Mutex::new(HashMap::new()),
            formats,
            intake,
            redactor,
            metrics,
            producer,
            dead_letter_topic: config.dead_letter_topic.clone(),
            stop: stop.clone(),
        };
        let consumer: BaseConsumer<KafkaContext> =
            client.create_with_context(context).map_err(kafka)?;
        let topics: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
        consumer.subscribe(&topics).map_err(kafka)?;
        let batch_records = config.batch_records;
        let linger = Duration::from_millis(config.linger_ms);
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pipewatch-kafka".into())
            .spawn(move || consume(&consumer, batch_records, linger, &thread_stop))
            .map_err(|e| IngestError::Config(format!("cannot start the Kafka thread: {e}")))?;
        Ok(KafkaSource {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops polling, commits what is buffered (and its offsets), leaves
    /// the group. Blocks until done.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the Kafka consumer thread panicked");
        }
    }
}

fn consume(
    consumer: &BaseConsumer<KafkaContext>,
    batch_records: usize,
    linger: Duration,
    stop: &AtomicBool,
) {
    let context = consumer.context();
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => context.buffer(&message),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Kafka consumer error");
                context.metrics.refuse(SOURCE, "-", "consumer_error");
            }
        }
        if context.due(batch_records, linger)
            && let Err(e) = context.flush(consumer, None)
        {
            tracing::error!(error = %e, "cannot commit Kafka records; they will be read again");
        }
    }
    if let Err(e) = context.flush(consumer, None) {
        tracing::error!(error = %e, "cannot commit the last Kafka records; they will be read again");
    }
    consumer.unsubscribe();
}

/// Records of one partition read since its last commit.
#[derive(Debug)]
struct Buffer {
    first_offset: i64,
    last_offset: i64,
    events: Vec<Event>,
    dead_letters: Vec<DeadLetter>,
    rejected: Vec<Rejected>,
    records: usize,
    opened: Instant,
}

/// A message that produced dead letters, for the dead-letter topic.
#[derive(Debug)]
struct Rejected {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    format: String,
    reason: &'static str,
    detail: String,
    dead_letters: usize,
}

type PartitionKey = (String, i32);

/// A partition's records that reached the lake, awaiting their offset commit.
#[derive(Debug)]
struct Durable {
    key: PartitionKey,
    first: i64,
    last: i64,
    rejected: Vec<Rejected>,
}

struct KafkaContext {
    buffers: Mutex<HashMap<PartitionKey, Buffer>>,
    formats: HashMap<String, Option<Format>>,
    intake: IntakeHandle,
    redactor: Arc<Redactor>,
    metrics: Arc<IngestMetrics>,
    producer: Option<BaseProducer<DeadLetterDelivery>>,
    dead_letter_topic: String,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for KafkaContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaContext")
            .field("topics", &self.formats.keys().collect::<Vec<_>>())
            .field("dead_letter_topic", &self.dead_letter_topic)
            .finish_non_exhaustive()
    }
}

impl ClientContext for KafkaContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                // -1 is librdkafka's internal "unassigned" partition; a lag of
                // -1 means not known yet.
                if partition < 0 || stats.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .set_kafka_lag(&topic, i64::from(partition), stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for KafkaContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        if let Ok(assigned) = consumer.assignment() {
            tracing::info!(partitions = assigned.count(), "Kafka partitions assigned");
            self.metrics
                .kafka_partitions
                .set(i64::try_from(assigned.count()).unwrap_or(i64::MAX));
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let revoked: HashSet<PartitionKey> = revoked
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(
                partitions = revoked.len(),
                "partitions revoked; committing what is buffered for them"
            );
            if let Err(e) = self.flush(consumer, Some(&revoked)) {
                tracing::warn!(error = %e, "cannot commit before the rebalance; the next owner reads those records again");
            }
        }
    }
}

impl KafkaContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, Buffer>> {
        // A panic while holding the lock leaves buffers that were never
        // acknowledged; reading them again is safe, so carry on.
        self.buffers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn buffer(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let topic = message.topic();
        let format = self.formats.get(topic).copied().flatten();
        let label = format.map_or("auto", Format::name);
        let Some(payload) = message.payload() else {
            self.metrics.ignore(SOURCE, label, "empty_message", 1);
            self.note_offset(message, |_| {});
            return;
        };
        let origin = format!("kafka {topic}/{}@{}", message.partition(), message.offset());
        let observed_at = message
            .timestamp()
            .to_millis()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        let mut input = Input::new(&origin, payload);
        input.observed_at = Some(observed_at);
        let (detected, decoded) = decode_redacted(format, &input, &self.redactor);
        if decoded.events.is_empty() && decoded.dead_letters.is_empty() {
            let label = detected.map_or(label, Format::name);
            self.metrics.ignore(SOURCE, label, "nothing_to_store", 1);
        }
        let rejected = decoded.dead_letters.first().map(|first| Rejected {
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            format: first.source.clone(),
            reason: first.reason.as_str(),
            detail: first.detail.clone(),
            dead_letters: decoded.dead_letters.len(),
        });
        self.note_offset(message, |buffer| {
            buffer.events.extend(decoded.events);
            buffer.dead_letters.extend(decoded.dead_letters);
            buffer.rejected.extend(rejected);
        });
    }

    fn note_offset(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        fill: impl FnOnce(&mut Buffer),
    ) {
        let mut buffers = self.lock();
        let buffer = buffers
            .entry((message.topic().to_owned(), message.partition()))
            .or_insert_with(|| Buffer {
                first_offset: message.offset(),
                last_offset: message.offset(),
                events: Vec::new(),
                dead_letters: Vec::new(),
                rejected: Vec::new(),
                records: 0,
                opened: Instant::now(),
            });
        buffer.last_offset = message.offset();
        buffer.records += 1;
        fill(buffer);
    }

    fn due(&self, batch_records: usize, linger: Duration) -> bool {
        let buffers = self.lock();
        let records: usize = buffers.values().map(|b| b.records).sum();
        records >= batch_records || buffers.values().any(|b| b.opened.elapsed() >= linger)
    }

    /// Commits the buffered records of `only` (all when `None`) to the
    /// lake, copies their bad records to the dead-letter topic, then
    /// commits their offsets. Partitions whose commit failed are rewound so
    /// their records are read again.
    fn flush(
        &self,
        consumer: &BaseConsumer<KafkaContext>,
        only: Option<&HashSet<PartitionKey>>,
    ) -> Result<(), IngestError> {
        let taken: Vec<(PartitionKey, Buffer)> = {
            let mut buffers = self.lock();
            let keys: Vec<PartitionKey> = buffers
                .keys()
                .filter(|k| only.is_none_or(|only| only.contains(*k)))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| buffers.remove(&k).map(|b| (k, b)))
                .collect()
        };
        if taken.is_empty() {
            return Ok(());
        }
        let mut waiting: Vec<(PartitionKey, i64, i64, Vec<Rejected>, AckReceiver)> = Vec::new();
        let mut failed: Vec<(PartitionKey, i64)> = Vec::new();
        for ((topic, partition), buffer) in taken {
            let stem = format!(
                "kafka-{}-{partition}-{:020}-{:020}",
                file_safe(&topic),
                buffer.first_offset,
                buffer.last_offset
            );
            let submission = Submission {
                source: SOURCE,
                events: buffer.events,
                dead_letters: buffer.dead_letters,
                file_stem: Some(stem),
            };
            match self.intake.submit_waiting(submission, &self.stop) {
                Ok(receiver) => waiting.push((
                    (topic, partition),
                    buffer.first_offset,
                    buffer.last_offset,
                    buffer.rejected,
                    receiver,
                )),
                Err(e) => {
                    tracing::warn!(error = %e, topic, partition, "records not committed; they will be read again");
                    failed.push(((topic, partition), buffer.first_offset));
                }
            }
        }
        let mut durable: Vec<Durable> = Vec::new();
        for (key, first, last, rejected, receiver) in waiting {
            match receiver.blocking_recv() {
                Ok(Ok(_)) => durable.push(Durable {
                    key,
                    first,
                    last,
                    rejected,
                }),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, topic = key.0, partition = key.1, "lake commit failed; the records will be read again");
                    failed.push((key, first));
                }
                Err(_) => failed.push((key, first)),
            }
        }
        let mut offsets = TopicPartitionList::new();
        if !durable.is_empty() {
            if self.send_dead_letters(&durable) {
                for done in &durable {
                    offsets
                        .add_partition_offset(
                            &done.key.0,
                            done.key.1,
                            Offset::Offset(done.last + 1),
                        )
                        .map_err(|e| IngestError::Config(format!("kafka: {e}")))?;
                }
            } else {
                // The lake holds them; reading them again only finds duplicates,
                // and the dead-letter topic gets its copies on the next try.
                failed.extend(durable.iter().map(|done| (done.key.clone(), done.first)));
            }
        }
        if offsets.count() > 0 {
            consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(|e| IngestError::Config(format!("kafka offset commit: {e}")))?;
        }
        if only.is_none() {
            for ((topic, partition), first) in failed {
                if let Err(e) = consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(first),
                    Duration::from_secs(10),
                ) {
                    tracing::warn!(error = %e, topic, partition, "cannot rewind; restart to read the records again");
                }
            }
        }
        Ok(())
    }

    /// Copies rejected messages to the dead-letter topic and waits for the
    /// broker to take them. True when every copy was delivered.
    fn send_dead_letters(&self, durable: &[Durable]) -> bool {
        let Some(producer) = &self.producer else {
            return true;
        };
        let before = producer.context().failures.load(Ordering::Acquire);
        let mut sent = 0;
        for Durable {
            key: (topic, partition),
            rejected,
            ..
        } in durable
        {
            for record in rejected {
                let partition_text = partition.to_string();
                let offset_text = record.offset.to_string();
                let count_text = record.dead_letters.to_string();
                let headers = OwnedHeaders::new()
                    .insert(header("pipewatch-reason", record.reason))
                    .insert(header("pipewatch-detail", &record.detail))
                    .insert(header("pipewatch-format", &record.format))
                    .insert(header("pipewatch-dead-letters", &count_text))
                    .insert(header("pipewatch-source-topic", topic))
                    .insert(header("pipewatch-source-partition", &partition_text))
                    .insert(header("pipewatch-source-offset", &offset_text));
                let mut message = BaseRecord::<Vec<u8>, Vec<u8>>::to(&self.dead_letter_topic)
                    .payload(&record.payload)
                    .headers(headers);
                if let Some(key) = &record.key {
                    message = message.key(key);
                }
                if let Err((e, _)) = producer.send(message) {
                    tracing::warn!(error = %e, "cannot queue a dead letter for Kafka");
                    return false;
                }
                sent += 1;
            }
        }
        if sent == 0 {
            return true;
        }
        if let Err(e) = producer.flush(Duration::from_secs(30)) {
            tracing::warn!(error = %e, "dead letters not delivered to Kafka in time");
            return false;
        }
        producer.context().failures.load(Ordering::Acquire) == before
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Topic names allow `.`, `_`, `-` and alphanumerics; keep file names plain.
fn file_safe(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Counts dead-letter copies the broker refused.
#[derive(Debug, Default)]
struct DeadLetterDelivery {
    failures: AtomicUsize,
}

impl ClientContext for DeadLetterDelivery {}

impl ProducerContext for DeadLetterDelivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "a dead letter was not delivered to Kafka");
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_pipewatch_manages_and_unknown_formats_are_refused() {
        let mut config = KafkaSourceConfig {
            topics: vec![KafkaTopicConfig {
                name: "ci".into(),
                format: "github_webhook".into(),
            }],
            ..KafkaSourceConfig::default()
        };
        assert!(config.check().is_ok());
        config
            .properties
            .insert("enable.auto.commit".into(), "true".into());
        let error = config.check().expect_err("refused").to_string();
        assert!(error.contains("enable.auto.commit"), "{error}");
        config.properties.clear();
        config.topics[0].format = "jenkins".into();
        let error = config.check().expect_err("refused").to_string();
        assert!(error.contains("jenkins"), "{error}");
        config.topics.clear();
        assert!(config.check().is_err());
    }

    #[test]
    fn file_names_keep_to_plain_characters() {
        assert_eq!(file_safe("ci.events_v1"), "ci_events_v1");
    }
}
