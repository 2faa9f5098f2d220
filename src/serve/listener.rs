//! The HTTP listener: hyper with a cap on open connections, a deadline for
//! request headers and for whole requests, and graceful shutdown that lets
//! in-flight requests finish.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_http::timeout::TimeoutLayer;

use crate::config::ServerConfig;

/// Serves `app` until `stop` turns true, then waits for open requests
/// (up to the shutdown timeout).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(config.request_timeout_secs),
    ));
    let header_timeout = Duration::from_secs(config.header_read_timeout_secs);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        // Past the cap, connections wait in the kernel's backlog instead of
        // taking memory and file descriptors here.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        // Handlers that need the client's address (sign-in throttling, the
        // audit log) read it from the request.
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .map_request(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request
                            .extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer));
                        request
                    },
                )
                .service(app.clone()),
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The header deadline only starts once a request begins; a
            // client that connects and sends nothing gets the same deadline.
            let mut first_byte = [0u8; 1];
            let opened = tokio::time::timeout(header_timeout, stream.peek(&mut first_byte)).await;
            if matches!(opened, Ok(Ok(n)) if n > 0) {
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let deadline = Duration::from_secs(config.shutdown_timeout_secs);
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = deadline.as_secs(),
            "open connections did not finish in time; closing them"
        );
    }
}
