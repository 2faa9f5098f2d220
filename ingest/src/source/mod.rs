//! Where native inputs come from: files and standard input for imports,
//! and the long-running sources `pipewatch serve` runs, named by a closed
//! set of kinds in the configuration.

pub mod deliveries;
pub mod file;
pub mod http;
pub mod kafka;
pub mod otlp;
pub mod secret;

use serde::Deserialize;

/// One `[[sources]]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Webhooks and posted event files over HTTP.
    Http(http::HttpSourceConfig),
    /// A Kafka consumer group over topics of native events.
    Kafka(kafka::KafkaSourceConfig),
    /// OTLP/HTTP and OTLP/gRPC trace exports carrying CI/CD spans.
    Otlp(otlp::OtlpSourceConfig),
}

impl SourceConfig {
    /// The kind's name as the configuration spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Http(_) => "http",
            SourceConfig::Kafka(_) => "kafka",
            SourceConfig::Otlp(_) => "otlp",
        }
    }
}
