//! The Arrow schema of the `events` table (the single source of truth for
//! column names and types) and the builder that turns normalized events
//! into record batches.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};

use crate::{Event, SchemaError};

/// Column names that are partition keys of the lake: present in the table,
/// encoded in the path, absent from the Parquet files themselves.
pub const PARTITION_COLUMNS: [&str; 2] = ["category", "date"];

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// Schema of the Parquet data files: every column but the partition keys,
/// in a fixed order. Readers rely on names, never on positions.
pub fn file_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let opt = |n: &str| text(n, true);
        let fields = vec![
            text("event_id", false),
            text("source", false),
            text("source_event_id", false),
            Field::new("event_time", utc_micros(), false),
            text("action", false),
            text("outcome", false),
            opt("org"),
            opt("repo"),
            opt("actor"),
            opt("actor_kind"),
            text("identity_kind", false),
            opt("identity_id"),
            opt("client_address"),
            opt("user_agent_original"),
            opt("cicd_pipeline_name"),
            opt("cicd_pipeline_run_id"),
            Field::new("cicd_pipeline_run_attempt", DataType::Int64, true),
            opt("cicd_pipeline_task_name"),
            opt("cicd_pipeline_task_run_id"),
            opt("cicd_pipeline_trigger"),
            opt("vcs_ref_head_name"),
            opt("vcs_ref_head_revision"),
            Field::new("vcs_ref_is_default", DataType::Boolean, true),
            Field::new("vcs_from_fork", DataType::Boolean, true),
            opt("cicd_worker_name"),
            opt("cicd_worker_id"),
            opt("cicd_worker_group"),
            Field::new(
                "cicd_worker_labels",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            opt("runner_hosting"),
            Field::new("runner_ephemeral", DataType::Boolean, true),
            opt("target_type"),
            opt("target_name"),
            opt("target_namespace"),
            opt("deployment_environment_name"),
            opt("deploy_strategy"),
            opt("approval_state"),
            Field::new("start_time", utc_micros(), true),
            Field::new("end_time", utc_micros(), true),
            Field::new("duration_ms", DataType::Int64, true),
            Field::new("queue_ms", DataType::Int64, true),
            Field::new("cpu_seconds", DataType::Float64, true),
            Field::new("memory_bytes", DataType::Int64, true),
            Field::new("egress_bytes", DataType::Int64, true),
            opt("egress_destination"),
            opt("tool_name"),
            opt("rule_id"),
            opt("severity"),
            opt("message"),
            opt("code_location"),
            opt("cloud_provider"),
            opt("cloud_account_id"),
            opt("cloud_region"),
            opt("trace_id"),
            opt("span_id"),
            opt("parent_span_id"),
            opt("correlation_id"),
            opt("url_full"),
            text("raw", false),
        ];
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// Schema of the `events` table as SQL sees it: the file columns followed
/// by the partition keys `category` and `date`.
pub fn table_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields: Vec<Field> = file_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(text("category", false));
        fields.push(text("date", false));
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// A batch in [`file_schema`] from one partition, as the `events` table
/// shows it: the partition's `category` and `date` appended as columns.
pub fn with_partition_columns(
    batch: &RecordBatch,
    partition: crate::PartitionPath,
) -> Result<RecordBatch, SchemaError> {
    let rows = batch.num_rows();
    let category: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![
        partition
            .category
            .as_str();
        rows
    ]));
    let date = partition.date.format("%Y-%m-%d").to_string();
    let date: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![date.as_str(); rows]));
    let mut columns = batch.columns().to_vec();
    columns.push(category);
    columns.push(date);
    RecordBatch::try_new(table_schema(), columns).map_err(|e| SchemaError::Arrow(e.to_string()))
}

fn s(v: &Option<String>) -> Option<&str> {
    v.as_deref()
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Accumulates events and produces one record batch in [`file_schema`].
#[derive(Debug)]
pub struct EventBatchBuilder {
    text: Vec<StringBuilder>,
    times: Vec<TimestampMicrosecondBuilder>,
    ints: Vec<Int64Builder>,
    bools: Vec<BooleanBuilder>,
    floats: Vec<Float64Builder>,
    labels: ListBuilder<StringBuilder>,
    rows: usize,
}

/// Where each file column lives inside the builder.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Text(usize),
    Time(usize),
    Int(usize),
    Bool(usize),
    Float(usize),
    Labels,
}

/// Slots in [`file_schema`] order; checked against the schema by a test.
const SLOTS: [Slot; 57] = {
    use Slot::*;
    [
        Text(0),  // event_id
        Text(1),  // source
        Text(2),  // source_event_id
        Time(0),  // event_time
        Text(3),  // action
        Text(4),  // outcome
        Text(5),  // org
        Text(6),  // repo
        Text(7),  // actor
        Text(8),  // actor_kind
        Text(9),  // identity_kind
        Text(10), // identity_id
        Text(11), // client_address
        Text(12), // user_agent_original
        Text(13), // cicd_pipeline_name
        Text(14), // cicd_pipeline_run_id
        Int(0),   // cicd_pipeline_run_attempt
        Text(15), // cicd_pipeline_task_name
        Text(16), // cicd_pipeline_task_run_id
        Text(17), // cicd_pipeline_trigger
        Text(18), // vcs_ref_head_name
        Text(19), // vcs_ref_head_revision
        Bool(0),  // vcs_ref_is_default
        Bool(1),  // vcs_from_fork
        Text(20), // cicd_worker_name
        Text(21), // cicd_worker_id
        Text(22), // cicd_worker_group
        Labels,   // cicd_worker_labels
        Text(23), // runner_hosting
        Bool(2),  // runner_ephemeral
        Text(24), // target_type
        Text(25), // target_name
        Text(26), // target_namespace
        Text(27), // deployment_environment_name
        Text(28), // deploy_strategy
        Text(29), // approval_state
        Time(1),  // start_time
        Time(2),  // end_time
        Int(1),   // duration_ms
        Int(2),   // queue_ms
        Float(0), // cpu_seconds
        Int(3),   // memory_bytes
        Int(4),   // egress_bytes
        Text(30), // egress_destination
        Text(31), // tool_name
        Text(32), // rule_id
        Text(33), // severity
        Text(34), // message
        Text(35), // code_location
        Text(36), // cloud_provider
        Text(37), // cloud_account_id
        Text(38), // cloud_region
        Text(39), // trace_id
        Text(40), // span_id
        Text(41), // parent_span_id
        Text(42), // correlation_id
        Text(43), // url_full
    ]
};
const TEXT_COLUMNS: usize = 45; // 44 above + raw
const RAW_TEXT: usize = 44;

impl Default for EventBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        EventBatchBuilder {
            text: (0..TEXT_COLUMNS).map(|_| StringBuilder::new()).collect(),
            times: (0..3).map(|_| TimestampMicrosecondBuilder::new()).collect(),
            ints: (0..5).map(|_| Int64Builder::new()).collect(),
            bools: (0..3).map(|_| BooleanBuilder::new()).collect(),
            floats: vec![Float64Builder::new()],
            labels: ListBuilder::new(StringBuilder::new()),
            rows: 0,
        }
    }

    /// An empty builder with room for `rows` events whose raw records
    /// total `raw_bytes`, so that appending them never regrows a column.
    pub fn with_capacity(rows: usize, raw_bytes: usize) -> Self {
        // Most text columns are short names and ids; a longer one regrows.
        const TEXT_BYTES_PER_ROW: usize = 32;
        let text = |i| {
            let bytes = if i == RAW_TEXT {
                raw_bytes
            } else {
                rows * TEXT_BYTES_PER_ROW
            };
            StringBuilder::with_capacity(rows, bytes)
        };
        EventBatchBuilder {
            text: (0..TEXT_COLUMNS).map(text).collect(),
            times: (0..3)
                .map(|_| TimestampMicrosecondBuilder::with_capacity(rows))
                .collect(),
            ints: (0..5).map(|_| Int64Builder::with_capacity(rows)).collect(),
            bools: (0..3)
                .map(|_| BooleanBuilder::with_capacity(rows))
                .collect(),
            floats: vec![Float64Builder::with_capacity(rows)],
            labels: ListBuilder::with_capacity(StringBuilder::new(), rows),
            rows: 0,
        }
    }

    /// Number of events appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one event. The raw record must already be redacted.
    pub fn append(&mut self, e: &Event) -> Result<(), SchemaError> {
        let t = &mut self.text;
        t[0].append_value(e.event_id.as_str());
        t[1].append_value(&e.source);
        t[2].append_value(&e.source_event_id);
        t[3].append_value(&e.action);
        t[4].append_value(&e.outcome);
        t[5].append_option(s(&e.org));
        t[6].append_option(s(&e.repo));
        t[7].append_option(s(&e.actor));
        t[8].append_option(e.actor_kind.map(|k| k.as_str()));
        t[9].append_value(e.identity_kind.as_str());
        t[10].append_option(s(&e.identity_id));
        t[11].append_option(s(&e.client_address));
        t[12].append_option(s(&e.user_agent_original));
        t[13].append_option(s(&e.cicd_pipeline_name));
        t[14].append_option(s(&e.cicd_pipeline_run_id));
        t[15].append_option(s(&e.cicd_pipeline_task_name));
        t[16].append_option(s(&e.cicd_pipeline_task_run_id));
        t[17].append_option(s(&e.cicd_pipeline_trigger));
        t[18].append_option(s(&e.vcs_ref_head_name));
        t[19].append_option(s(&e.vcs_ref_head_revision));
        t[20].append_option(s(&e.cicd_worker_name));
        t[21].append_option(s(&e.cicd_worker_id));
        t[22].append_option(s(&e.cicd_worker_group));
        t[23].append_option(e.runner_hosting.map(|h| h.as_str()));
        t[24].append_option(s(&e.target_type));
        t[25].append_option(s(&e.target_name));
        t[26].append_option(s(&e.target_namespace));
        t[27].append_option(s(&e.deployment_environment_name));
        t[28].append_option(s(&e.deploy_strategy));
        t[29].append_option(s(&e.approval_state));
        t[30].append_option(s(&e.egress_destination));
        t[31].append_option(s(&e.tool_name));
        t[32].append_option(s(&e.rule_id));
        t[33].append_option(e.severity.map(|v| v.as_str()));
        t[34].append_option(s(&e.message));
        t[35].append_option(s(&e.code_location));
        t[36].append_option(s(&e.cloud_provider));
        t[37].append_option(s(&e.cloud_account_id));
        t[38].append_option(s(&e.cloud_region));
        t[39].append_option(s(&e.trace_id));
        t[40].append_option(s(&e.span_id));
        t[41].append_option(s(&e.parent_span_id));
        t[42].append_option(s(&e.correlation_id));
        t[43].append_option(s(&e.url_full));
        // Written in place: a framed record is never joined into a string of its own.
        e.raw
            .write_json(&mut t[RAW_TEXT])
            .map_err(|_| SchemaError::Arrow("raw record could not be written".into()))?;
        t[RAW_TEXT].append_value("");

        self.times[0].append_value(micros(e.event_time));
        self.times[1].append_option(e.start_time.map(micros));
        self.times[2].append_option(e.end_time.map(micros));
        self.ints[0].append_option(e.cicd_pipeline_run_attempt);
        self.ints[1].append_option(e.duration_ms);
        self.ints[2].append_option(e.queue_ms);
        self.ints[3].append_option(e.memory_bytes);
        self.ints[4].append_option(e.egress_bytes);
        self.bools[0].append_option(e.vcs_ref_is_default);
        self.bools[1].append_option(e.vcs_from_fork);
        self.bools[2].append_option(e.runner_ephemeral);
        self.floats[0].append_option(e.cpu_seconds);
        if e.cicd_worker_labels.is_empty() {
            self.labels.append_null();
        } else {
            for label in &e.cicd_worker_labels {
                self.labels.values().append_value(label);
            }
            self.labels.append(true);
        }
        self.rows += 1;
        Ok(())
    }

    /// Produces the batch in [`file_schema`] order and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, SchemaError> {
        let schema = file_schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for slot in SLOTS {
            let array: ArrayRef = match slot {
                Slot::Text(i) => Arc::new(self.text[i].finish()),
                Slot::Time(i) => Arc::new(self.times[i].finish().with_timezone("UTC")),
                Slot::Int(i) => Arc::new(self.ints[i].finish()),
                Slot::Bool(i) => Arc::new(self.bools[i].finish()),
                Slot::Float(i) => Arc::new(self.floats[i].finish()),
                Slot::Labels => Arc::new(self.labels.finish()),
            };
            columns.push(array);
        }
        columns.push(Arc::new(self.text[RAW_TEXT].finish()));
        self.rows = 0;
        RecordBatch::try_new(schema, columns).map_err(|e| SchemaError::Arrow(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Category, IdentityKind};
    use chrono::TimeZone;

    fn sample(i: i64) -> Event {
        let t = Utc
            .timestamp_opt(1_700_000_000 + i, 0)
            .single()
            .expect("valid time");
        let mut e = Event::new(
            "test",
            format!("id-{i}"),
            t,
            Category::PipelineJob,
            "job.completed",
            serde_json::json!({"n": i}),
        );
        e.repo = Some("acme/api".into());
        e.identity_kind = IdentityKind::Oidc;
        e.cicd_worker_labels = vec!["ubuntu-latest".into()];
        e.runner_ephemeral = Some(true);
        e.duration_ms = Some(i * 10);
        e
    }

    #[test]
    fn batches_match_the_file_schema() {
        let mut builder = EventBatchBuilder::new();
        for i in 0..3 {
            builder.append(&sample(i)).expect("append");
        }
        let batch = builder.finish().expect("batch");
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.schema(), file_schema());
        assert!(builder.is_empty());
    }

    #[test]
    fn table_schema_adds_partition_keys_last() {
        let names: Vec<_> = table_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(&names[names.len() - 2..], &PARTITION_COLUMNS);
        assert_eq!(names[0], "event_id");
        assert!(names.contains(&"identity_kind".to_string()));
        assert!(names.contains(&"runner_ephemeral".to_string()));
    }
}
