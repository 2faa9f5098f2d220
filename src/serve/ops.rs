//! The operational endpoints (`/healthz`, `/readyz`, `/metrics`) and the
//! gate in front of the ingest routes, which answers 503 until the
//! detectors are warm and the intake is open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

/// What the process can do right now.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    pub(crate) detectors_warm: AtomicBool,
    pub(crate) intake_open: AtomicBool,
    pub(crate) shutting_down: AtomicBool,
}

impl Readiness {
    /// Why the process is not ready, if it is not.
    fn not_ready(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.detectors_warm.load(Ordering::Acquire) {
            Some("learning detector baselines from the lake")
        } else if !self.intake_open.load(Ordering::Acquire) {
            Some("opening the intake")
        } else {
            None
        }
    }
}

/// Shared by the operational handlers.
#[derive(Debug, Clone)]
pub(crate) struct ServeState {
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) registry: Arc<Registry>,
    /// The ingest routes, set once intake opens.
    pub(crate) gate: Arc<OnceLock<Router>>,
}

/// `/healthz`, `/readyz`, `/metrics`, and everything else through the gate.
pub(crate) fn router(state: ServeState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(gate)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<ServeState>) -> Response {
    match state.readiness.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<ServeState>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        tracing::error!(error = %e, "cannot encode metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn gate(State(state): State<ServeState>, request: Request) -> Response {
    match state.gate.get() {
        Some(routes) if state.readiness.not_ready().is_none() => {
            match routes.clone().oneshot(request).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            }
        }
        _ => {
            let reason = state.readiness.not_ready().unwrap_or("starting");
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({ "error": format!("not ready: {reason}; retry shortly") }),
                ),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}
