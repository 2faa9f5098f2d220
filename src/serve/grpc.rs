//! The OTLP/gRPC listener: tonic's server with the trace and logs
//! services, a per-request deadline, and the same ordered shutdown as HTTP.

use std::time::Duration;

use anyhow::Context;
use pipewatch_ingest::source::otlp::OtlpReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::ServerConfig;

/// Binds `listen` and serves OTLP/gRPC until `stop` turns true.
pub(crate) async fn start(
    listen: &str,
    receiver: &OtlpReceiver,
    config: &ServerConfig,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for OTLP/gRPC on {listen}"))?;
    let address = listener
        .local_addr()
        .context("cannot read the OTLP/gRPC address")?;
    eprintln!("receiving OTLP/gRPC on {address}");
    let router = Server::builder()
        .timeout(Duration::from_secs(config.request_timeout_secs))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(receiver.trace_service())
        .add_service(receiver.logs_service());
    Ok(tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(e) = router
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
            .await
        {
            tracing::error!(error = %e, "the OTLP/gRPC server stopped with an error");
        }
    }))
}
