//! pipewatch's own telemetry: with `[telemetry] otlp_endpoint` set, its
//! spans and the metrics of `/metrics` reach an OTLP/gRPC collector (here
//! one on loopback built from the OTLP service definitions).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use support::Server;

/// A metric data point: name, value, attributes.
type Point = (String, f64, Vec<(String, String)>);

#[derive(Debug, Clone, Default)]
struct Collector {
    /// (service.name, span name)
    spans: Arc<Mutex<Vec<(String, String)>>>,
    metrics: Arc<Mutex<Vec<Point>>>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("lock");
        for resource in &request.get_ref().resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| text(a.value.as_ref()))
                .unwrap_or_default();
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    spans.push((service.clone(), span.name.clone()));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().expect("lock");
        for resource in &request.get_ref().resource_metrics {
            for scope in &resource.scope_metrics {
                for metric in &scope.metrics {
                    let points = match &metric.data {
                        Some(Data::Sum(sum)) => &sum.data_points,
                        Some(Data::Gauge(gauge)) => &gauge.data_points,
                        _ => continue,
                    };
                    for point in points {
                        let value = match point.value {
                            Some(Number::AsDouble(v)) => v,
                            Some(Number::AsInt(v)) => v as f64,
                            None => continue,
                        };
                        let attributes = point
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(a.value.as_ref())))
                            .collect();
                        metrics.push((metric.name.clone(), value, attributes));
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[test]
fn spans_and_metrics_reach_the_configured_otlp_endpoint() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let collector = Collector::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let service = collector.clone();
    runtime.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(service.clone()))
            .add_service(MetricsServiceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let config = format!(
        r#"
[telemetry]
otlp_endpoint = "http://{address}"
export_interval_secs = 1

[[sources]]
kind = "http"
ingest_tokens = ["env:TEST_INGEST_TOKEN"]
"#
    );
    let server = Server::start(&lake, &config, &[("TEST_INGEST_TOKEN", "t")]);
    let line = std::fs::read_to_string(
        support::real_events().join("vault-audit/vault_audit.file-device.log"),
    )
    .expect("vault sample");
    let response = reqwest::blocking::Client::new()
        .post(server.url("/ingest/vault_audit"))
        .bearer_auth("t")
        .body(line)
        .send()
        .expect("sent");
    assert!(response.status().is_success());

    let committed = |metrics: &[Point]| {
        metrics.iter().any(|(name, value, attributes)| {
            name == "pipewatch_ingest_committed_events_total"
                && *value >= 1.0
                && attributes.contains(&("format".to_owned(), "vault_audit".to_owned()))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !committed(&collector.metrics.lock().expect("lock")) {
        assert!(
            Instant::now() < deadline,
            "no committed-events metric arrived: {:?}",
            collector.metrics.lock().expect("lock")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Shutdown flushes the spans still buffered.
    assert!(server.stop().success());
    let spans = collector.spans.lock().expect("lock").clone();
    for name in ["lake_commit", "score_batch"] {
        assert!(
            spans.contains(&("pipewatch".to_owned(), name.to_owned())),
            "no {name} span: {spans:?}"
        );
    }
}
