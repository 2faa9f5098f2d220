//! The OTLP receiver: OTLP/HTTP `POST /v1/traces` and `/v1/logs`
//! (protobuf or JSON, optionally gzip) and the OTLP/gRPC trace and logs
//! services. CI/CD spans become pipeline rows; other spans and every log
//! record are counted with a reason and dropped. Overload answers 503
//! (gRPC `UNAVAILABLE`), bad input 400 (`INVALID_ARGUMENT`).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::Deserialize;

use super::secret::{Secret, SecretRef, resolve_all, token_matches};
use crate::IngestError;
use crate::decoders::{Input, SpanTally, decode_otlp_export};
use crate::intake::{IntakeHandle, Submission, SubmitError, redact_output};
use crate::metrics::IngestMetrics;
use crate::redact::Redactor;

const SOURCE: &str = "otlp";
const FORMAT: &str = "otlp";

/// The `[[sources]] kind = "otlp"` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpSourceConfig {
    /// Where OTLP/gRPC listens; `""` for OTLP/HTTP only (on the main
    /// listener, `/v1/traces` and `/v1/logs`).
    pub grpc_listen: String,
    /// Bearer tokens exporters send (`Authorization: Bearer …` header or
    /// gRPC metadata).
    pub tokens: Vec<SecretRef>,
    /// Accept exports without a token: only for a collector on loopback.
    pub allow_unauthenticated: bool,
    /// Larger bodies (after decompression) are refused.
    pub max_body_bytes: usize,
}

impl Default for OtlpSourceConfig {
    fn default() -> Self {
        OtlpSourceConfig {
            grpc_listen: "127.0.0.1:4317".into(),
            tokens: Vec::new(),
            allow_unauthenticated: false,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

impl OtlpSourceConfig {
    /// Refuses settings that cannot work or would accept anyone silently.
    pub fn check(&self) -> Result<(), IngestError> {
        if self.tokens.is_empty() && !self.allow_unauthenticated {
            return Err(IngestError::Config(
                "sources.otlp: set tokens (exporters send them as a bearer token), or allow_unauthenticated = true for a collector on loopback".into(),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(IngestError::Config(
                "sources.otlp.max_body_bytes must be above 0".into(),
            ));
        }
        if !self.grpc_listen.is_empty() && self.grpc_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(IngestError::Config(format!(
                "sources.otlp.grpc_listen `{}` is not an address like 127.0.0.1:4317",
                self.grpc_listen
            )));
        }
        Ok(())
    }
}

/// Why an export was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Unauthenticated,
    Invalid(String),
    /// Retryable: the queue is full or pipewatch is stopping.
    Unavailable(String),
}

/// What a trace export became.
#[derive(Debug, Clone, Copy, Default)]
struct Stored {
    rejected_spans: usize,
}

/// The receiver shared by OTLP/HTTP and OTLP/gRPC.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    intake: IntakeHandle,
    redactor: Arc<Redactor>,
    metrics: Arc<IngestMetrics>,
    tokens: Vec<Secret>,
    allow_unauthenticated: bool,
    max_body_bytes: usize,
}

impl OtlpReceiver {
    /// Checks the configuration and resolves the tokens.
    pub fn new(
        config: &OtlpSourceConfig,
        intake: IntakeHandle,
        redactor: Arc<Redactor>,
        metrics: Arc<IngestMetrics>,
    ) -> Result<Self, IngestError> {
        config.check()?;
        Ok(OtlpReceiver {
            inner: Arc::new(Inner {
                intake,
                redactor,
                metrics,
                tokens: resolve_all(&config.tokens)?,
                allow_unauthenticated: config.allow_unauthenticated,
                max_body_bytes: config.max_body_bytes,
            }),
        })
    }

    /// `POST /v1/traces` and `POST /v1/logs`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/logs", post(http_logs))
            .layer(DefaultBodyLimit::max(self.inner.max_body_bytes))
            .with_state(self.clone())
    }

    /// The OTLP/gRPC trace service.
    pub fn trace_service(&self) -> TraceServiceServer<OtlpReceiver> {
        TraceServiceServer::new(self.clone()).max_decoding_message_size(self.inner.max_body_bytes)
    }

    /// The OTLP/gRPC logs service.
    pub fn logs_service(&self) -> LogsServiceServer<OtlpReceiver> {
        LogsServiceServer::new(self.clone()).max_decoding_message_size(self.inner.max_body_bytes)
    }

    fn authorized(&self, authorization: Option<&str>) -> bool {
        if self.inner.allow_unauthenticated {
            return true;
        }
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        token_matches(&self.inner.tokens, token.trim().as_bytes())
    }

    /// Decodes, stores and waits for durability.
    async fn export_traces(&self, body: Bytes, protobuf: bool) -> Result<Stored, Refusal> {
        let inner = &self.inner;
        if !inner.intake.is_open() {
            return Err(Refusal::Unavailable("pipewatch is shutting down".into()));
        }
        let redactor = inner.redactor.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            let mut input = Input::new("otlp export", &body);
            input.observed_at = Some(Utc::now());
            let (mut out, tally) = decode_otlp_export(&input, protobuf);
            redact_output(&mut out, &redactor);
            (out, tally)
        })
        .await;
        let (out, tally) =
            decoded.map_err(|e| Refusal::Invalid(format!("decoding failed: {e}")))?;
        self.count_dropped(&tally);
        if out.events.is_empty() && !out.dead_letters.is_empty() && tally.spans == 0 {
            let reasons: Vec<String> = out.dead_letters.iter().map(|l| l.detail.clone()).collect();
            // Stored for the record, then refused as a whole.
            if let Ok(receiver) = inner.intake.submit(Submission::new(SOURCE, out)) {
                let _ = receiver.await;
            }
            return Err(Refusal::Invalid(reasons.join("; ")));
        }
        let rejected_spans = out.dead_letters.len();
        if out.events.is_empty() && out.dead_letters.is_empty() {
            return Ok(Stored { rejected_spans });
        }
        let receiver = match inner.intake.submit(Submission::new(SOURCE, out)) {
            Ok(receiver) => receiver,
            Err(SubmitError::Busy { .. }) => {
                inner.metrics.refuse(SOURCE, FORMAT, "queue_full");
                return Err(Refusal::Unavailable(
                    "pipewatch is busy committing earlier events; retry shortly".into(),
                ));
            }
            Err(SubmitError::Closed) => {
                return Err(Refusal::Unavailable("pipewatch is shutting down".into()));
            }
        };
        match receiver.await {
            Ok(Ok(_)) => Ok(Stored { rejected_spans }),
            Ok(Err(failure)) => Err(Refusal::Unavailable(failure.to_string())),
            Err(_) => Err(Refusal::Unavailable(
                "pipewatch stopped before storing this export".into(),
            )),
        }
    }

    fn count_dropped(&self, tally: &SpanTally) {
        let metrics = &self.inner.metrics;
        for (reason, count) in [
            ("span_not_cicd", tally.non_cicd),
            ("span_is_step", tally.steps),
        ] {
            if count > 0 {
                metrics.ignore(SOURCE, FORMAT, reason, count as u64);
            }
        }
    }

    /// Logs carry nothing pipewatch stores; they are counted and dropped.
    fn drop_logs(&self, records: usize) {
        if records > 0 {
            self.inner
                .metrics
                .ignore(SOURCE, FORMAT, "log_records_not_stored", records as u64);
        }
    }
}

/// Counts the log records of an export without keeping them.
fn count_log_records(body: &[u8], protobuf: bool) -> Result<usize, String> {
    if protobuf {
        let request = ExportLogsServiceRequest::decode(body)
            .map_err(|e| format!("not an OTLP protobuf ExportLogsServiceRequest: {e}"))?;
        return Ok(log_records(&request));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let resource_logs = value
        .get("resourceLogs")
        .and_then(serde_json::Value::as_array)
        .ok_or("record has no resourceLogs array: not an OTLP ExportLogsServiceRequest")?;
    Ok(resource_logs
        .iter()
        .flat_map(|r| {
            r.get("scopeLogs")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|s| s.get("logRecords").and_then(serde_json::Value::as_array))
        .map(Vec::len)
        .sum())
}

fn log_records(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

// ---- OTLP/HTTP ----

/// Protobuf or JSON, from `Content-Type`.
fn http_encoding(headers: &HeaderMap) -> Option<bool> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-protobuf") {
        Some(true)
    } else if content_type.starts_with("application/json") {
        Some(false)
    } else {
        None
    }
}

/// The body, gunzipped when `Content-Encoding: gzip`, at most `limit` bytes.
fn http_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, Box<Response>> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            let read = flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            match read {
                Ok(n) if n > limit => Err(Box::new(status_text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the decompressed body exceeds {limit} bytes"),
                ))),
                Ok(_) => Ok(Bytes::from(out)),
                Err(e) => Err(Box::new(status_text(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not valid gzip: {e}"),
                ))),
            }
        }
        other => Err(Box::new(status_text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding `{other}` is not supported; use gzip or none"),
        ))),
    }
}

fn status_text(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "message": message })),
    )
        .into_response()
}

fn http_refusal(receiver: &OtlpReceiver, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unauthenticated => {
            receiver
                .inner
                .metrics
                .refuse(SOURCE, FORMAT, "token_mismatch");
            status_text(
                StatusCode::UNAUTHORIZED,
                "a valid `Authorization: Bearer <token>` header is required".into(),
            )
        }
        Refusal::Invalid(message) => status_text(StatusCode::BAD_REQUEST, message),
        Refusal::Unavailable(message) => {
            let mut response = status_text(StatusCode::SERVICE_UNAVAILABLE, message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// Answers in the request's encoding, as OTLP/HTTP asks.
fn http_success(protobuf: bool, message: &impl Message, json: serde_json::Value) -> Response {
    if protobuf {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            message.encode_to_vec(),
        )
            .into_response()
    } else {
        axum::Json(json).into_response()
    }
}

/// Authenticates an OTLP/HTTP request and reads its encoding and body.
fn http_request(
    receiver: &OtlpReceiver,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(bool, Bytes), Box<Response>> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !receiver.authorized(authorization) {
        return Err(Box::new(http_refusal(receiver, Refusal::Unauthenticated)));
    }
    let Some(protobuf) = http_encoding(headers) else {
        return Err(Box::new(status_text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-protobuf or application/json".into(),
        )));
    };
    let body = http_body(headers, body, receiver.inner.max_body_bytes)?;
    Ok((protobuf, body))
}

async fn http_traces(
    State(receiver): State<OtlpReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (protobuf, body) = match http_request(&receiver, &headers, body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    match receiver.export_traces(body, protobuf).await {
        Ok(stored) => {
            let response = trace_response(stored);
            let json = match &response.partial_success {
                Some(partial) => serde_json::json!({
                    "partialSuccess": {
                        "rejectedSpans": partial.rejected_spans.to_string(),
                        "errorMessage": partial.error_message,
                    }
                }),
                None => serde_json::json!({}),
            };
            http_success(protobuf, &response, json)
        }
        Err(refusal) => http_refusal(&receiver, refusal),
    }
}

async fn http_logs(
    State(receiver): State<OtlpReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (protobuf, body) = match http_request(&receiver, &headers, body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    match count_log_records(&body, protobuf) {
        Ok(records) => {
            receiver.drop_logs(records);
            http_success(
                protobuf,
                &ExportLogsServiceResponse::default(),
                serde_json::json!({}),
            )
        }
        Err(message) => status_text(StatusCode::BAD_REQUEST, message),
    }
}

fn trace_response(stored: Stored) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (stored.rejected_spans > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(stored.rejected_spans).unwrap_or(i64::MAX),
            error_message: "some spans could not be decoded; they are in pipewatch's dead-letter store with the reason".into(),
        }),
    }
}

// ---- OTLP/gRPC ----

fn grpc_authorization<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

fn grpc_status(receiver: &OtlpReceiver, refusal: Refusal) -> tonic::Status {
    match refusal {
        Refusal::Unauthenticated => {
            receiver
                .inner
                .metrics
                .refuse(SOURCE, FORMAT, "token_mismatch");
            tonic::Status::unauthenticated("a valid `authorization: Bearer <token>` is required")
        }
        Refusal::Invalid(message) => tonic::Status::invalid_argument(message),
        Refusal::Unavailable(message) => tonic::Status::unavailable(message),
    }
}

#[tonic::async_trait]
impl TraceService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if !self.authorized(grpc_authorization(&request)) {
            return Err(grpc_status(self, Refusal::Unauthenticated));
        }
        // One decoding path for every transport: the protobuf bytes.
        let body = Bytes::from(request.into_inner().encode_to_vec());
        match self.export_traces(body, true).await {
            Ok(stored) => Ok(tonic::Response::new(trace_response(stored))),
            Err(refusal) => Err(grpc_status(self, refusal)),
        }
    }
}

#[tonic::async_trait]
impl LogsService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if !self.authorized(grpc_authorization(&request)) {
            return Err(grpc_status(self, Refusal::Unauthenticated));
        }
        self.drop_logs(log_records(request.get_ref()));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}
