//! The process's own telemetry over OTLP/gRPC when an endpoint is
//! configured: tracing spans (lake commits, online scoring, requests) as
//! OpenTelemetry traces, and every Prometheus metric of `/metrics` as an
//! OpenTelemetry metric, read from the same registry on each export.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use pipewatch_ingest::source::secret::SecretRef;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `[telemetry]`: where pipewatch sends its own traces and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TelemetryConfig {
    /// An OTLP/gRPC endpoint such as `http://collector:4317`; `""` for none.
    pub(crate) otlp_endpoint: String,
    /// `service.name` of the exported telemetry.
    pub(crate) service_name: String,
    /// Metrics are exported this often.
    pub(crate) export_interval_secs: u64,
    /// Sent as `authorization: Bearer <token>` when set.
    pub(crate) token: Option<SecretRef>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: String::new(),
            service_name: "pipewatch".into(),
            export_interval_secs: 30,
            token: None,
        }
    }
}

/// The exporters, flushed on shutdown.
#[derive(Debug)]
pub(crate) struct Telemetry {
    traces: SdkTracerProvider,
    metrics: SdkMeterProvider,
}

impl Telemetry {
    /// Sends what is buffered and stops the exporters.
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.traces.shutdown() {
            tracing::warn!(error = %e, "cannot flush traces to the OTLP endpoint");
        }
        if let Err(e) = self.metrics.shutdown() {
            tracing::warn!(error = %e, "cannot flush metrics to the OTLP endpoint");
        }
    }
}

/// Sets up logging to stderr (filtered by `RUST_LOG` or `verbose`) and,
/// when an endpoint is configured, OTLP export of spans and of the
/// registry's metrics. Must run inside the Tokio runtime.
pub(crate) fn init(
    config: &TelemetryConfig,
    verbose: u8,
    registry: Arc<Registry>,
) -> anyhow::Result<Option<Telemetry>> {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(crate::cli::log_filter(verbose));
    if config.otlp_endpoint.is_empty() {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        return Ok(None);
    }
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(token) = &config.token {
        let secret = token.resolve().context("cannot read the telemetry token")?;
        let value = format!("Bearer {}", secret.expose_text())
            .parse()
            .context("the telemetry token is not a valid header value")?;
        metadata.insert("authorization", value);
    }
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let span_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&config.otlp_endpoint)
        .with_metadata(metadata.clone())
        .build()
        .context("cannot set up the OTLP trace exporter")?;
    let traces = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter)
        .with_resource(resource.clone())
        .build();
    let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(&config.otlp_endpoint)
        .with_metadata(metadata)
        .build()
        .context("cannot set up the OTLP metric exporter")?;
    let reader = PeriodicReader::builder(metric_exporter)
        .with_interval(Duration::from_secs(config.export_interval_secs.max(1)))
        .build();
    let metrics = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    let interval = Duration::from_secs(config.export_interval_secs.max(1));
    bridge_registry(&metrics, registry, interval);

    let spans = tracing_opentelemetry::layer()
        .with_tracer(traces.tracer("pipewatch"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(spans)
        .try_init();
    eprintln!(
        "exporting pipewatch's own traces and metrics to {}",
        config.otlp_endpoint
    );
    Ok(Some(Telemetry { traces, metrics }))
}

/// One sample of the Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Declares one observable instrument per sample name of the registry
/// (counters, histogram sums and counts as counters; gauges as gauges),
/// each reading the registry when the exporter collects. Families appear
/// in the text once they have a sample, so new ones are looked for on
/// every export interval.
fn bridge_registry(provider: &SdkMeterProvider, registry: Arc<Registry>, interval: Duration) {
    let meter = provider.meter("pipewatch");
    tokio::spawn(async move {
        let mut bridged: HashSet<String> = HashSet::new();
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
                continue;
            }
            for (name, kind) in families(&text) {
                let names = match kind.as_str() {
                    "counter" => vec![format!("{name}_total")],
                    "histogram" => vec![format!("{name}_sum"), format!("{name}_count")],
                    "gauge" => vec![name.clone()],
                    _ => continue,
                };
                for sample_name in names {
                    if bridged.insert(sample_name.clone()) {
                        observe(&meter, registry.clone(), sample_name, kind == "gauge");
                    }
                }
            }
        }
    });
}

fn observe(
    meter: &opentelemetry::metrics::Meter,
    registry: Arc<Registry>,
    name: String,
    gauge: bool,
) {
    let wanted = name.clone();
    let read = move || -> Vec<(f64, Vec<KeyValue>)> {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            return Vec::new();
        }
        samples(&text)
            .into_iter()
            .filter(|s| s.name == wanted)
            .map(|s| {
                let attributes = s
                    .labels
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect();
                (s.value, attributes)
            })
            .collect()
    };
    if gauge {
        meter
            .f64_observable_gauge(name)
            .with_callback(move |observer| {
                for (value, attributes) in read() {
                    observer.observe(value, &attributes);
                }
            })
            .build();
    } else {
        meter
            .f64_observable_counter(name)
            .with_callback(move |observer| {
                for (value, attributes) in read() {
                    observer.observe(value, &attributes);
                }
            })
            .build();
    }
}

/// `(family, type)` from the `# TYPE` lines.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// Every sample line: `name{label="value",…} value` or `name value`.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        None => (head.to_owned(), Vec::new()),
        Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return Some(labels);
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_samples_are_read_with_their_labels() {
        let text = "# TYPE pipewatch_x counter\n\
                    pipewatch_x_total{source=\"http\",reason=\"a \\\"quoted\\\" one\"} 3\n\
                    pipewatch_y 1.5\n# EOF\n";
        assert_eq!(
            families(text),
            vec![("pipewatch_x".to_owned(), "counter".to_owned())]
        );
        assert_eq!(
            samples(text),
            vec![
                Sample {
                    name: "pipewatch_x_total".into(),
                    labels: vec![
                        ("source".into(), "http".into()),
                        ("reason".into(), "a \"quoted\" one".into())
                    ],
                    value: 3.0
                },
                Sample {
                    name: "pipewatch_y".into(),
                    labels: Vec::new(),
                    value: 1.5
                },
            ]
        );
    }
}
