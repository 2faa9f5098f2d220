//! Whether a service scans text as string views (interactive queries) or
//! as plain strings (history reads), every answer holds plain strings and
//! the same values, collected or streamed.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use pipewatch_analytics::{QueryLimits, QueryService};

#[path = "support/lake.rs"]
mod support_lake;
use support_lake::lake;

#[path = "support/jobs.rs"]
mod support_jobs;
use support_jobs::job;

const SQL: &str = "SELECT source_event_id, actor, repo, category, \
     array_agg(action) OVER (PARTITION BY repo) AS actions \
     FROM events ORDER BY event_time, event_id";

/// Every text column of `batches` as plain strings, row by row.
fn texts(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut values = Vec::new();
            for column in batch.columns() {
                match column.data_type() {
                    DataType::Utf8 => {
                        let text = column.as_string::<i32>();
                        values.push((!text.is_null(row)).then(|| text.value(row).to_owned()));
                    }
                    DataType::List(item) => {
                        assert_eq!(
                            item.data_type(),
                            &DataType::Utf8,
                            "lists hold plain strings"
                        );
                        let list = column.as_list::<i32>().value(row);
                        let joined: Vec<&str> = list.as_string::<i32>().iter().flatten().collect();
                        values.push(Some(joined.join(",")));
                    }
                    other => panic!("an answer column of type {other}"),
                }
            }
            rows.push(values);
        }
    }
    rows
}

#[tokio::test]
async fn views_and_history_reads_give_the_same_plain_strings() {
    let (dir, interactive) = lake(&[
        job("a", "2026-10-05T10:00:00Z"),
        job("b", "2026-10-06T10:00:00Z"),
        job("c", "2026-10-06T11:00:00Z"),
    ])
    .await;
    let history = QueryService::open_for_history(dir.path(), QueryLimits::default())
        .await
        .expect("opens for history");

    let collected = interactive.query(SQL).await.expect("answers");
    for field in collected.schema.fields().iter().take(4) {
        assert_eq!(field.data_type(), &DataType::Utf8, "{}", field.name());
    }
    let expected = texts(&collected.batches);
    assert_eq!(expected.len(), 3);
    assert_eq!(expected[0][0].as_deref(), Some("a"));
    assert_eq!(expected[2][0].as_deref(), Some("c"));

    for service in [&interactive, &history] {
        let mut stream = service.stream(SQL).await.expect("streams");
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch.expect("a batch"));
        }
        assert_eq!(texts(&batches), expected);
        let again = service.query(SQL).await.expect("answers");
        assert_eq!(texts(&again.batches), expected);
    }
}
