//! A finished pipeline job event at a given time, for the tests that only
//! need events to land on known days.

use pipewatch_schema::{Category, Event};

pub(crate) fn job(id: &str, time: &str) -> Event {
    Event::new(
        "github_webhook",
        id,
        crate::support_lake::at(time),
        Category::PipelineJob,
        "completed",
        serde_json::json!({}),
    )
}
