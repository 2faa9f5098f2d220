//! The HTTP source: signed GitHub webhooks, GitLab webhooks, and any
//! decoder's format behind a bearer token. A request is answered 2xx only
//! once its events are durable; overload answers 503 with `Retry-After`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde::Serialize;

use super::deliveries::DeliveryLog;
use super::secret::{Secret, SecretRef, resolve_all, token_matches, verify_github_signature};
use crate::IngestError;
use crate::dead_letter::DeadLetter;
use crate::decoders::{self, Format, Input};
use crate::intake::{Ack, IntakeHandle, Submission, SubmitError, decode_redacted};
use crate::metrics::IngestMetrics;
use crate::redact::Redactor;

const SOURCE: &str = "http";

/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// The `[[sources]] kind = "http"` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Secrets GitHub signs webhooks with; two are accepted during a rotation.
    pub github_secrets: Vec<SecretRef>,
    /// Values GitLab sends in `X-Gitlab-Token`.
    pub gitlab_tokens: Vec<SecretRef>,
    /// Bearer tokens for `POST /ingest/{format}`.
    pub ingest_tokens: Vec<SecretRef>,
    /// Larger bodies are answered 413.
    pub max_body_bytes: usize,
}

impl Default for HttpSourceConfig {
    fn default() -> Self {
        HttpSourceConfig {
            github_secrets: Vec::new(),
            gitlab_tokens: Vec::new(),
            ingest_tokens: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl HttpSourceConfig {
    /// Refuses settings that cannot work.
    pub fn check(&self) -> Result<(), IngestError> {
        if self.max_body_bytes == 0 {
            return Err(IngestError::Config(
                "sources.http.max_body_bytes must be above 0".into(),
            ));
        }
        if self.github_secrets.len() > 2 {
            return Err(IngestError::Config(
                "sources.http.github_secrets takes at most two secrets (the current one and the one being rotated out)".into(),
            ));
        }
        Ok(())
    }
}

/// The HTTP source's shared state; [`HttpSource::router`] serves it.
#[derive(Debug, Clone)]
pub struct HttpSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    intake: IntakeHandle,
    redactor: Arc<Redactor>,
    deliveries: DeliveryLog,
    metrics: Arc<IngestMetrics>,
    github_secrets: Vec<Secret>,
    gitlab_tokens: Vec<Secret>,
    ingest_tokens: Vec<Secret>,
    max_body_bytes: usize,
}

impl HttpSource {
    /// Resolves the configured secrets and opens the delivery log.
    pub fn new(
        config: &HttpSourceConfig,
        data_dir: &std::path::Path,
        intake: IntakeHandle,
        redactor: Arc<Redactor>,
        metrics: Arc<IngestMetrics>,
    ) -> Result<Self, IngestError> {
        config.check()?;
        Ok(HttpSource {
            inner: Arc::new(Inner {
                intake,
                redactor,
                deliveries: DeliveryLog::open(data_dir)?,
                metrics,
                github_secrets: resolve_all(&config.github_secrets)?,
                gitlab_tokens: resolve_all(&config.gitlab_tokens)?,
                ingest_tokens: resolve_all(&config.ingest_tokens)?,
                max_body_bytes: config.max_body_bytes,
            }),
        })
    }

    /// `POST /ingest/github`, `POST /ingest/gitlab`, `POST /ingest/{format}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ingest/github", post(github))
            .route("/ingest/gitlab", post(gitlab))
            .route("/ingest/{format}", post(any_format))
            .layer(DefaultBodyLimit::max(self.inner.max_body_bytes))
            .with_state(self.clone())
    }
}

/// The body of every answer.
#[derive(Debug, Default, Serialize)]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    ack: Option<Ack>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<RecordError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct RecordError {
    record: String,
    reason: &'static str,
    detail: String,
}

fn answer(status: StatusCode, body: Answer) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    answer(
        status,
        Answer {
            error: Some(message.into()),
            ..Answer::default()
        },
    )
}

fn retry_later(message: String, seconds: u32) -> Response {
    let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn text_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What one request carries once authenticated.
struct Request<'a> {
    format: Option<Format>,
    label: &'static str,
    type_hint: Option<&'a str>,
    delivery: Option<&'a str>,
    body: Bytes,
}

async fn github(State(source): State<HttpSource>, headers: HeaderMap, body: Bytes) -> Response {
    let inner = &source.inner;
    let label = Format::GithubWebhook.name();
    if inner.github_secrets.is_empty() {
        return refuse(
            StatusCode::NOT_FOUND,
            "GitHub webhooks are not configured here: set github_secrets in the http source",
        );
    }
    if let Err(e) = verify_github_signature(
        &inner.github_secrets,
        &body,
        text_header(&headers, "x-hub-signature-256"),
    ) {
        inner.metrics.refuse(SOURCE, label, e.reason());
        return refuse(StatusCode::UNAUTHORIZED, e.to_string());
    }
    let Some(event_type) = text_header(&headers, "x-github-event") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the X-GitHub-Event header is missing",
        );
    };
    if event_type.trim().eq_ignore_ascii_case("ping") {
        return answer(
            StatusCode::OK,
            Answer {
                note: Some("pong: this hook reaches pipewatch and its signature is valid".into()),
                ..Answer::default()
            },
        );
    }
    let request = Request {
        format: Some(Format::GithubWebhook),
        label,
        type_hint: Some(event_type),
        delivery: text_header(&headers, "x-github-delivery"),
        body,
    };
    store(&source, request).await
}

async fn gitlab(State(source): State<HttpSource>, headers: HeaderMap, body: Bytes) -> Response {
    let inner = &source.inner;
    let label = Format::Gitlab.name();
    if inner.gitlab_tokens.is_empty() {
        return refuse(
            StatusCode::NOT_FOUND,
            "GitLab webhooks are not configured here: set gitlab_tokens in the http source",
        );
    }
    let token = text_header(&headers, "x-gitlab-token").unwrap_or_default();
    if !token_matches(&inner.gitlab_tokens, token.as_bytes()) {
        inner.metrics.refuse(SOURCE, label, "token_mismatch");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the X-Gitlab-Token header is missing or wrong",
        );
    }
    // GitLab repeats the idempotency key when it retries a delivery.
    let delivery = text_header(&headers, "idempotency-key")
        .or_else(|| text_header(&headers, "x-gitlab-event-uuid"));
    let request = Request {
        format: Some(Format::Gitlab),
        label,
        type_hint: text_header(&headers, "x-gitlab-event"),
        delivery,
        body,
    };
    store(&source, request).await
}

async fn any_format(
    State(source): State<HttpSource>,
    Path(format): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &source.inner;
    let (format, label) = if format == "auto" {
        (None, "auto")
    } else {
        match Format::from_name(&format) {
            Some(f) => (Some(f), f.name()),
            None => {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                return refuse(
                    StatusCode::NOT_FOUND,
                    format!(
                        "unknown format `{format}`; POST to /ingest/auto or one of: {}",
                        names.join(", ")
                    ),
                );
            }
        }
    };
    if inner.ingest_tokens.is_empty() {
        return refuse(
            StatusCode::NOT_FOUND,
            "ingest by format is not configured here: set ingest_tokens in the http source",
        );
    }
    let token = text_header(&headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !token_matches(&inner.ingest_tokens, token.trim().as_bytes()) {
        inner.metrics.refuse(SOURCE, label, "token_mismatch");
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <ingest token>` header is required",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pipewatch ingest\""),
        );
        return response;
    }
    let request = Request {
        format,
        label,
        type_hint: None,
        delivery: None,
        body,
    };
    store(&source, request).await
}

/// Decodes, queues and waits for durability; answers with what happened.
async fn store(source: &HttpSource, request: Request<'_>) -> Response {
    let inner = &source.inner;
    if request.body.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "the request body is empty");
    }
    if let Some(hint) = request.type_hint
        && let Some(format) = request.format
        && !decoders::decodes_event_type(format, hint)
    {
        inner
            .metrics
            .ignore(SOURCE, request.label, "event_type_not_decoded", 1);
        return answer(
            StatusCode::ACCEPTED,
            Answer {
                note: Some(format!(
                    "`{}` events carry nothing pipewatch stores; acknowledged and dropped",
                    hint.trim()
                )),
                ..Answer::default()
            },
        );
    }
    if let Some(delivery) = request.delivery {
        match inner.deliveries.stored_at(request.label, delivery) {
            Ok(Some(at)) => {
                return answer(
                    StatusCode::OK,
                    Answer {
                        note: Some(format!(
                            "delivery {delivery} was stored at {}; nothing stored again",
                            at.to_rfc3339()
                        )),
                        ..Answer::default()
                    },
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the delivery log"),
        }
    }
    if !inner.intake.is_open() {
        return retry_later("pipewatch is shutting down; retry shortly".into(), 5);
    }

    let origin = match request.delivery {
        Some(id) => format!("http {} delivery {id}", request.label),
        None => format!("http {}", request.label),
    };
    let type_hint = request.type_hint.map(str::to_owned);
    let redactor = inner.redactor.clone();
    let format = request.format;
    let body = request.body;
    let decoded = tokio::task::spawn_blocking(move || {
        let mut input = Input::new(&origin, &body);
        input.type_hint = type_hint.as_deref();
        input.observed_at = Some(Utc::now());
        decode_redacted(format, &input, &redactor).1
    })
    .await;
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::error!(error = %e, "decoding a request failed");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "decoding failed");
        }
    };
    let errors: Vec<RecordError> = decoded.dead_letters.iter().map(record_error).collect();
    let bad_only = decoded.events.is_empty() && !decoded.dead_letters.is_empty();
    let receiver = match inner.intake.submit(Submission::new(SOURCE, decoded)) {
        Ok(receiver) => receiver,
        Err(SubmitError::Busy { .. }) => {
            inner.metrics.refuse(SOURCE, request.label, "queue_full");
            return retry_later(
                "pipewatch is busy committing earlier events; retry shortly".into(),
                1,
            );
        }
        Err(SubmitError::Closed) => {
            return retry_later("pipewatch is shutting down; retry shortly".into(), 5);
        }
    };
    let ack = match receiver.await {
        Ok(Ok(ack)) => ack,
        Ok(Err(failure)) => {
            return retry_later(format!("{failure}; nothing was stored, retry shortly"), 5);
        }
        Err(_) => {
            return retry_later(
                "pipewatch stopped before storing this request; retry".into(),
                5,
            );
        }
    };
    if let Some(delivery) = request.delivery
        && !bad_only
        && let Err(e) = inner.deliveries.record(
            request.label,
            delivery,
            ack.accepted + ack.duplicates,
            Utc::now(),
        )
    {
        // The events are durable; a redelivery would only find duplicates.
        tracing::warn!(error = %e, delivery, "cannot record the delivery id");
    }
    let status = if bad_only {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    answer(
        status,
        Answer {
            error: bad_only.then(|| {
                "no record could be decoded; each is in the dead-letter store with its reason"
                    .to_owned()
            }),
            ack: Some(ack),
            errors,
            note: None,
        },
    )
}

fn record_error(letter: &DeadLetter) -> RecordError {
    RecordError {
        record: letter.position.to_string(),
        reason: letter.reason.as_str(),
        detail: letter.detail.clone(),
    }
}
