//! End-to-end tests of `pipewatch serve`'s OTLP receiver with the
//! OpenTelemetry SDK's own exporters (opentelemetry-otlp over gRPC and over
//! HTTP/protobuf) sending CI/CD spans, plus OTLP/JSON, logs, bad input and
//! overload through the generated OTLP clients and plain HTTP.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use reqwest::StatusCode;
use serde_json::json;
use support::{Server, count};

const TOKEN: &str = "otlp-test-token";

fn config(extra: &str) -> String {
    format!(
        r#"
[online]
enabled = false

[[sources]]
kind = "otlp"
grpc_listen = "127.0.0.1:0"
tokens = ["env:TEST_OTLP_TOKEN"]

{extra}
"#
    )
}

fn start(lake: &std::path::Path, extra: &str) -> Server {
    Server::start(lake, &config(extra), &[("TEST_OTLP_TOKEN", TOKEN)])
}

fn grpc_endpoint(server: &Server) -> String {
    format!(
        "http://{}",
        server.printed_address("receiving OTLP/gRPC on ")
    )
}

/// One CI trace (a run, two jobs, a step) and one unrelated trace, the way
/// an instrumented CI system would emit them through the SDK.
fn emit_pipeline(provider: &SdkTracerProvider, run_id: &str) {
    let tracer = provider.tracer("ci-runner");
    let run = tracer
        .span_builder("pipeline build")
        .with_attributes(vec![
            KeyValue::new("cicd.pipeline.name", "build"),
            KeyValue::new("cicd.pipeline.run.id", run_id.to_owned()),
            KeyValue::new("cicd.pipeline.result", "success"),
            KeyValue::new("vcs.repository.url.full", "https://example.com/acme/api"),
        ])
        .start(&tracer);
    let run_cx = Context::current_with_span(run);
    for (n, name) in ["compile", "test"].iter().enumerate() {
        let job = tracer
            .span_builder(format!("job {name}"))
            .with_attributes(vec![
                KeyValue::new("cicd.pipeline.task.name", (*name).to_owned()),
                KeyValue::new("cicd.pipeline.task.run.id", format!("{run_id}-{n}")),
                KeyValue::new("cicd.pipeline.task.run.result", "success"),
            ])
            .start_with_context(&tracer, &run_cx);
        let job_cx = run_cx.with_span(job);
        let mut step = tracer
            .span_builder("checkout")
            .with_attributes(vec![KeyValue::new("github.job.step.name", "checkout")])
            .start_with_context(&tracer, &job_cx);
        step.end();
        job_cx.span().end();
    }
    run_cx.span().end();
    let mut unrelated = tracer.span_builder("SELECT orders").start(&tracer);
    unrelated.set_attribute(KeyValue::new("db.system", "postgresql"));
    unrelated.end();
}

fn resource() -> Resource {
    Resource::builder().with_service_name("ci-runner").build()
}

fn wait_for(lake: &std::path::Path, query: &str, expected: u64) -> u64 {
    support::wait_for_count(lake, query, expected, Duration::from_secs(60))
}

fn metric(server: &Server, series: &str) -> f64 {
    support::metric_sum(server, series)
}

#[test]
fn the_sdk_grpc_exporter_delivers_ci_spans_as_pipeline_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = start(&lake, "");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _inside = runtime.enter();
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("metadata"),
    );
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(grpc_endpoint(&server))
        .with_metadata(metadata)
        .build()
        .expect("exporter");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    emit_pipeline(&provider, "9001");
    provider.force_flush().expect("exported");
    provider.shutdown().expect("shut down");

    assert_eq!(
        wait_for(&lake, "SELECT count(*) AS n FROM pipeline_jobs", 2),
        2
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) AS n FROM pipeline_runs WHERE cicd_pipeline_run_id = '9001'"
        ),
        1
    );
    assert!(
        metric(
            &server,
            "pipewatch_ingest_ignored_records_total{source=\"otlp\",format=\"otlp\",reason=\"span_not_cicd\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &server,
            "pipewatch_ingest_ignored_records_total{source=\"otlp\",format=\"otlp\",reason=\"span_is_step\"}"
        ) >= 2.0
    );
    assert!(server.stop().success());
    // Steps and the unrelated span were not stored.
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM events"), 3);
}

#[test]
fn the_sdk_http_exporter_delivers_and_a_wrong_token_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = start(&lake, "");
    let export = |token: &str, run_id: &str| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(server.url("/v1/traces"))
            .with_headers(HashMap::from([(
                "Authorization".to_owned(),
                format!("Bearer {token}"),
            )]))
            .build()
            .expect("exporter");
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(resource())
            .build();
        emit_pipeline(&provider, run_id);
        let _ = provider.shutdown();
    };
    export(TOKEN, "7001");
    export("not-the-token", "7002");
    assert_eq!(
        wait_for(&lake, "SELECT count(*) AS n FROM pipeline_runs", 1),
        1
    );
    assert!(
        metric(
            &server,
            "pipewatch_ingest_refused_requests_total{source=\"otlp\",format=\"otlp\",reason=\"token_mismatch\"}"
        ) >= 1.0
    );
    assert!(server.stop().success());
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) AS n FROM pipeline_runs WHERE cicd_pipeline_run_id = '7002'"
        ),
        0
    );
}

#[test]
fn json_traces_are_stored_logs_counted_and_bad_input_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = start(&lake, "");
    let client = reqwest::blocking::Client::new();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let traces = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ci"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "name": "pipeline deploy",
            "kind": 1,
            "startTimeUnixNano": (now - 60_000_000_000_i64).to_string(),
            "endTimeUnixNano": now.to_string(),
            "attributes": [
                {"key": "cicd.pipeline.name", "value": {"stringValue": "deploy"}},
                {"key": "cicd.pipeline.run.id", "value": {"stringValue": "5150"}}
            ]
        }]}]
    }]});
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        client
            .post(server.url(path))
            .bearer_auth(TOKEN)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .expect("sent")
    };
    let response = post(
        "/v1/traces",
        "application/json",
        traces.to_string().into_bytes(),
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<serde_json::Value>().expect("json"),
        json!({})
    );

    let logs = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "a"}}, {"body": {"stringValue": "b"}}, {"body": {"stringValue": "c"}}
    ]}]}]});
    let response = post(
        "/v1/logs",
        "application/json",
        logs.to_string().into_bytes(),
    );
    assert_eq!(response.status(), StatusCode::OK);

    let response = post(
        "/v1/traces",
        "application/x-protobuf",
        vec![0xff, 0xff, 0xff, 0x0f],
    );
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = post("/v1/traces", "text/plain", b"hello".to_vec());
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Logs over gRPC with the generated OTLP client.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = grpc_endpoint(&server);
    runtime.block_on(async {
        let mut logs = LogsServiceClient::connect(endpoint).await.expect("connect");
        let mut request = tonic::Request::new(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(), LogRecord::default()],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {TOKEN}").parse().expect("metadata"),
        );
        logs.export(request).await.expect("logs accepted");
    });

    assert_eq!(
        metric(
            &server,
            "pipewatch_ingest_ignored_records_total{source=\"otlp\",format=\"otlp\",reason=\"log_records_not_stored\"}"
        ),
        5.0
    );
    assert!(server.stop().success());
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) AS n FROM pipeline_runs WHERE cicd_pipeline_run_id = '5150'"
        ),
        1
    );
}

/// A pipeline-run span with the given trace id.
fn run_span(run_id: &str, trace_id: Vec<u8>) -> opentelemetry_proto::tonic::trace::v1::Span {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id,
        span_id: run_id.bytes().cycle().take(8).collect(),
        name: "pipeline".into(),
        start_time_unix_nano: 1_764_000_000_000_000_000,
        end_time_unix_nano: 1_764_000_060_000_000_000,
        attributes: vec![KeyValue {
            key: "cicd.pipeline.run.id".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(run_id.into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn export_of(spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("metadata"),
    );
    request
}

#[test]
fn malformed_spans_are_invalid_argument_and_partial_exports_say_what_was_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = start(&lake, "");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = grpc_endpoint(&server);
    let (malformed, partial) = runtime.block_on(async {
        let mut client = TraceServiceClient::connect(endpoint)
            .await
            .expect("connect");
        // A trace id must be 16 bytes.
        let malformed = client
            .export(authorized(export_of(vec![run_span("31", vec![7; 3])])))
            .await;
        let partial = client
            .export(authorized(export_of(vec![
                run_span("32", vec![8; 16]),
                run_span("33", vec![9; 5]),
            ])))
            .await;
        (malformed, partial)
    });
    let status = malformed.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("traceId"), "{status:?}");
    let response = partial.expect("accepted in part").into_inner();
    assert_eq!(response.partial_success.map(|p| p.rejected_spans), Some(1));
    assert!(server.stop().success());
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM pipeline_runs"), 1);
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM dead_letters"), 2);
}

#[test]
fn overload_answers_grpc_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let server = start(&lake, "[intake]\nqueue_events = 1\nlinger_ms = 1500\n");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = grpc_endpoint(&server);
    let request = |run_id: &str| authorized(export_of(vec![run_span(run_id, vec![1; 16])]));
    let (first, second) = runtime.block_on(async {
        let client = TraceServiceClient::connect(endpoint)
            .await
            .expect("connect");
        let mut a = client.clone();
        let mut b = client.clone();
        let first = tokio::spawn(async move { a.export(request("1")).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = b.export(request("2")).await.map(|_| ());
        (first.await.expect("first task"), second)
    });
    assert!(first.is_ok(), "{first:?}");
    let status = second.expect_err("refused while the queue is full");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(server.stop().success());
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM pipeline_runs"), 1);
}
