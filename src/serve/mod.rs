//! `pipewatch serve`: one process that takes events from the configured
//! sources, commits them to the lake, scores every committed batch with the
//! detectors, and answers health, readiness and metrics. Shutdown runs in
//! order: stop intake, commit what was acknowledged, score it, exit.

mod compaction;
mod detection;
mod grpc;
mod listener;
mod notify;
mod ops;
mod signal;

pub(crate) use listener::serve as serve_http;
pub(crate) use signal::ShutdownSignal;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use pipewatch_analytics::alerts::AlertStore;
use pipewatch_analytics::notify::{Notifier, control_db};
use pipewatch_ingest::Redactor;
use pipewatch_ingest::intake::Intake;
use pipewatch_ingest::metrics::IngestMetrics;
use pipewatch_ingest::source::SourceConfig;
use pipewatch_ingest::source::http::{HttpSource, HttpSourceConfig};
use pipewatch_ingest::source::kafka::KafkaSource;
use pipewatch_ingest::source::otlp::OtlpReceiver;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::Config;
use detection::{DetectionMetrics, OnlineDetection, warmed_engine};
use ops::{Readiness, ServeState};

/// What `pipewatch serve` was asked to do.
#[derive(Debug)]
pub(crate) struct ServeSettings {
    pub(crate) config: Config,
    pub(crate) data_dir: PathBuf,
    /// Verbosity flags, for logging.
    pub(crate) verbose: u8,
}

/// Runs until SIGTERM or ctrl-c, then shuts down in order.
pub(crate) async fn run(settings: ServeSettings) -> anyhow::Result<()> {
    let ServeSettings {
        config,
        data_dir,
        verbose,
    } = settings;
    let process = &config.process;
    let shutdown = ShutdownSignal::listen()?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;

    let mut registry = Registry::default();
    let ingest_metrics = IngestMetrics::register(&mut registry);
    let detection_metrics = DetectionMetrics::register(&mut registry);
    let notify_metrics = notify::NotifyMetrics::register(&mut registry);
    let compaction_metrics = compaction::CompactionMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let telemetry = crate::telemetry::init(&process.telemetry, verbose, registry.clone())?;
    let readiness = Arc::new(Readiness::default());
    let gate: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
    let state = ServeState {
        readiness: readiness.clone(),
        registry,
        gate: gate.clone(),
    };

    let mut app = ops::router(state);
    if config.process.dashboard.enabled {
        let mut settings = config.process.dashboard.settings();
        settings.ingest = pipewatch_dashboard::LiveIngest(Some(ingest_metrics.clone()));
        let dashboard = pipewatch_dashboard::router(&data_dir, settings)
            .context("cannot open the dashboard's stores")?;
        app = pipewatch_dashboard::security_headers(
            app.merge(dashboard),
            config.process.dashboard.secure_cookies,
        );
        warn_without_users(&data_dir);
    }

    // Listen first so probes get answers while baselines warm up.
    let tcp = tokio::net::TcpListener::bind(process.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", process.server.listen))?;
    let address = tcp
        .local_addr()
        .context("cannot read the listening address")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(listener::serve(tcp, app, process.server.clone(), stop_rx));
    eprintln!(
        "pipewatch listening on http://{address} (data in {})",
        data_dir.display()
    );

    let redactor =
        Arc::new(Redactor::for_data_dir(&data_dir).context("cannot load the redaction key")?);
    // Deliveries left pending by an earlier run go out as soon as this starts.
    let routing = Arc::new(config.routing()?);
    let notifier = if routing.is_empty() {
        None
    } else {
        let (db, routes, scrub) = (
            control_db(&data_dir),
            routing.clone(),
            notify::scrub(redactor.clone()),
        );
        // The deliverers' HTTP client blocks; it is built off the reactor.
        let notifier = tokio::task::spawn_blocking(move || {
            Notifier::start(&db, routes, scrub, notify_metrics)
        })
        .await
        .context("cannot start alert delivery")?
        .context("cannot start alert delivery")?;
        eprintln!(
            "delivering alerts through {} route(s) to {}",
            routing.routes.len(),
            routing
                .destinations
                .iter()
                .map(|d| format!("{} ({})", d.name, d.kind.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(notifier)
    };

    // Baselines learn from the lake as it is before anything new is
    // committed, so no event is both learned and scored.
    let online = if process.online.enabled {
        let started = Instant::now();
        let (engine, run) = warmed_engine(&data_dir, &config.detection).await?;
        eprintln!(
            "detectors ready: {} detectors learned from {} events in {:.1}s",
            engine.detector_names().len(),
            run.learned,
            started.elapsed().as_secs_f64()
        );
        let mut store = AlertStore::open(&data_dir).context("cannot open the alert store")?;
        if notifier.is_some() {
            store = store.with_routing(routing.clone());
        }
        Some(OnlineDetection {
            engine,
            store,
            notifier: notifier.as_ref().map(Notifier::handle),
            config: config.detection.clone(),
            data_dir: data_dir.clone(),
            refresh: Duration::from_secs(process.online.baseline_refresh_secs),
            metrics: detection_metrics,
        })
    } else {
        None
    };
    readiness.detectors_warm.store(true, Ordering::Release);

    let intake_settings = process.intake.settings();
    let (feed_tx, feed_rx) = tokio::sync::mpsc::channel(intake_settings.feed_batches);
    let detection = online.map(|online| tokio::spawn(online.run(feed_rx)));
    let intake = Intake::start(
        &data_dir,
        intake_settings,
        ingest_metrics.clone(),
        detection.is_some().then_some(feed_tx),
    )
    .context("cannot open the lake for writing")?;

    let compaction = process.compaction.enabled.then(|| {
        compaction::start(
            data_dir.clone(),
            process.compaction.policy(),
            Duration::from_secs(process.compaction.interval_secs),
            compaction_metrics,
            stop_tx.subscribe(),
        )
    });

    let mut sources = process.sources.clone();
    if sources.is_empty() {
        sources.push(SourceConfig::Http(HttpSourceConfig::default()));
    }
    let mut ingest_routes = Router::new();
    let mut consumers = Vec::new();
    let mut grpc_servers = Vec::new();
    for source in &sources {
        match source {
            SourceConfig::Otlp(otlp) => {
                let receiver = OtlpReceiver::new(
                    otlp,
                    intake.handle(),
                    redactor.clone(),
                    ingest_metrics.clone(),
                )
                .context("cannot start the otlp source")?;
                ingest_routes = ingest_routes.merge(receiver.router());
                if !otlp.grpc_listen.is_empty() {
                    let server = grpc::start(
                        &otlp.grpc_listen,
                        &receiver,
                        &process.server,
                        stop_tx.subscribe(),
                    )
                    .await?;
                    grpc_servers.push(server);
                }
                eprintln!("receiving OTLP/HTTP on http://{address}/v1/traces and /v1/logs");
            }
            SourceConfig::Kafka(kafka) => {
                let consumer = KafkaSource::start(
                    kafka,
                    intake.handle(),
                    redactor.clone(),
                    ingest_metrics.clone(),
                )
                .context("cannot start the kafka source")?;
                let topics: Vec<&str> = kafka.topics.iter().map(|t| t.name.as_str()).collect();
                eprintln!(
                    "consuming Kafka topics {} from {} as group {}",
                    topics.join(", "),
                    kafka.brokers,
                    kafka.group_id
                );
                consumers.push(consumer);
            }
            SourceConfig::Http(http) => {
                if http.github_secrets.is_empty()
                    && http.gitlab_tokens.is_empty()
                    && http.ingest_tokens.is_empty()
                {
                    eprintln!(
                        "warning: the http source has no github_secrets, gitlab_tokens or ingest_tokens; every /ingest endpoint answers 404 until one is configured"
                    );
                }
                let http = HttpSource::new(
                    http,
                    &data_dir,
                    intake.handle(),
                    redactor.clone(),
                    ingest_metrics.clone(),
                )
                .context("cannot start the http source")?;
                ingest_routes = ingest_routes.merge(http.router());
            }
        }
    }
    let pg_server = if config.process.pgwire.enabled {
        Some(
            start_pgwire(&config.process.pgwire, &data_dir, stop_tx.subscribe())
                .await?
                .0,
        )
    } else {
        None
    };
    let _ = gate.set(ingest_routes);
    readiness.intake_open.store(true, Ordering::Release);
    eprintln!(
        "pipewatch ready: POST events to http://{address}/ingest/…; stop with ctrl-c or SIGTERM"
    );

    shutdown.received().await;
    eprintln!("shutting down: no new requests; committing what was received");
    readiness.shutting_down.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    // In-flight requests finish (and are committed) before the server task ends.
    if let Err(e) = server.await {
        tracing::error!(error = %e, "the HTTP server task failed");
    }
    if let Some(pg) = pg_server
        && let Err(e) = pg.await
    {
        tracing::error!(error = %e, "the PostgreSQL endpoint task failed");
    }
    for grpc in grpc_servers {
        if let Err(e) = grpc.await {
            tracing::error!(error = %e, "the OTLP/gRPC server task failed");
        }
    }
    if let Some(compaction) = compaction
        && let Err(e) = compaction.await
    {
        tracing::error!(error = %e, "the compaction task failed");
    }
    // Consumers commit what they hold, and its offsets, before the intake closes.
    tokio::task::spawn_blocking(move || consumers.into_iter().for_each(KafkaSource::stop))
        .await
        .context("the Kafka consumers did not stop cleanly")?;
    tokio::task::spawn_blocking(move || intake.close())
        .await
        .context("the committer did not stop cleanly")?;
    if let Some(detection) = detection {
        let deadline = Duration::from_secs(process.server.shutdown_timeout_secs);
        if tokio::time::timeout(deadline, detection).await.is_err() {
            eprintln!(
                "warning: detection did not finish scoring within {}s; run `pipewatch detect --since` to score the rest",
                deadline.as_secs()
            );
        }
    }
    if let Some(notifier) = notifier {
        // Sends in flight finish; anything still pending stays in the
        // outbox and goes out on the next start.
        tokio::task::spawn_blocking(move || notifier.shutdown())
            .await
            .context("alert delivery did not stop cleanly")?;
    }
    if let Some(telemetry) = telemetry {
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .context("the telemetry exporters did not stop cleanly")?;
    }
    eprintln!("pipewatch stopped: everything acknowledged is in the lake");
    Ok(())
}

/// Starts SQL over the PostgreSQL protocol; it stops when `stop` turns true.
pub(crate) async fn start_pgwire(
    config: &crate::config::PgwireConfig,
    data_dir: &std::path::Path,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, std::net::SocketAddr)> {
    let settings = config.settings()?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for PostgreSQL clients on {}",
                settings.listen
            )
        })?;
    let address = listener
        .local_addr()
        .context("cannot read the PostgreSQL listening address")?;
    eprintln!(
        "answering SQL over the PostgreSQL protocol on {address}{}",
        if settings.tls.is_some() {
            " (TLS only)"
        } else {
            ""
        }
    );
    let data_dir = data_dir.to_path_buf();
    let task = tokio::spawn(async move {
        if let Err(e) =
            pipewatch_dashboard::pgwire::serve_pg(data_dir, settings, listener, stop).await
        {
            tracing::error!(error = %e, "the PostgreSQL endpoint stopped");
        }
    });
    Ok((task, address))
}

/// Nobody can sign in to a dashboard without users: say how to add one.
fn warn_without_users(data_dir: &std::path::Path) {
    let users = pipewatch_dashboard::users::UserStore::open(data_dir).and_then(|s| s.list());
    match users {
        Ok(users) if users.is_empty() => eprintln!(
            "warning: the dashboard has no users yet; add one with `pipewatch users add NAME --role admin --data-dir {}`",
            data_dir.display()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot read the dashboard's users: {e}"),
    }
}
