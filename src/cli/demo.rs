//! `pipewatch demo`: ingests the demo organisation (the committed set, or
//! a freshly generated one) and shows what it holds and how to ask.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pipewatch_analytics::query::OutputFormat;
use pipewatch_analytics::{QueryLimits, QueryService, render};

/// Queries shown (and run) at the end of the demo.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "What the lake holds, per category",
        "SELECT category, count(*) AS events, min(event_time) AS first, max(event_time) AS last \
         FROM events GROUP BY category ORDER BY events DESC",
    ),
    (
        "Share of jobs on ephemeral runners, per hosting",
        "SELECT runner_hosting, count(*) AS jobs, \
         round(avg(CASE WHEN runner_ephemeral THEN 1.0 ELSE 0.0 END), 3) AS ephemeral_share \
         FROM pipeline_jobs WHERE action LIKE '%completed' GROUP BY runner_hosting ORDER BY jobs DESC",
    ),
    (
        "How secrets are reached: OIDC versus long-lived credentials",
        "SELECT identity_kind, count(*) AS reads, count(DISTINCT identity_id) AS identities \
         FROM secret_access GROUP BY identity_kind ORDER BY reads DESC",
    ),
    (
        "Denied secret reads, most recent first",
        "SELECT event_time, actor, target_name, client_address FROM secret_access \
         WHERE outcome = 'denied' ORDER BY event_time DESC LIMIT 5",
    ),
];

/// The user the demo signs in with.
const DEMO_USER: &str = "demo";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the demo lake is written.
    #[arg(long, env = "PIPEWATCH_DEMO_DIR", default_value = "./pipewatch-demo")]
    data_dir: PathBuf,
    /// Native files to ingest instead of the committed demo set.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Where the dashboard listens once the demo is ingested and analysed.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Where SQL over the PostgreSQL protocol listens (skipped if taken).
    #[arg(long, default_value = "127.0.0.1:5433")]
    pg_listen: std::net::SocketAddr,
    /// Stop after printing the results instead of serving the dashboard.
    #[arg(long)]
    no_serve: bool,
}

fn demo_source(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(from) = &args.from {
        return Ok(from.clone());
    }
    // Generated afresh rather than read from the committed copy: some native
    // formats (Conftest output, some webhooks) carry no time of their own and
    // are dated by file time, which a checkout does not preserve. The
    // generator is deterministic, so this is the committed set, byte for byte.
    let generated = args.data_dir.join("native");
    println!(
        "generating the demo organisation into {}",
        generated.display()
    );
    pipewatch_datasets::generate(&pipewatch_datasets::GenerateOptions::default(), &generated)
        .context("cannot generate the demo organisation")?;
    Ok(generated)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = demo_source(&args)?;
    println!(
        "ingesting {} into {}",
        source.display(),
        args.data_dir.display()
    );
    // Everything but the labels file (answers for the detectors' evaluation).
    let inputs: Vec<PathBuf> = std::fs::read_dir(&source)
        .with_context(|| format!("cannot list {}", source.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.file_name().is_none_or(|name| name != "labels.json"))
        .collect();
    let outcome = super::ingest::ingest_paths(
        &args.data_dir,
        None,
        &inputs,
        pipewatch_ingest::pipeline::DEFAULT_BATCH_EVENTS,
        None,
    )?;
    super::ingest::print_summary(&outcome);

    let runtime = super::runtime()?;
    runtime.block_on(async {
        let service = QueryService::open(&args.data_dir, QueryLimits::default())
            .await
            .context("cannot open the demo lake")?;
        for (title, sql) in EXAMPLES {
            println!("\n-- {title}\n{sql}");
            let output = service.query(sql).await?;
            println!("{}", render(&output, OutputFormat::Table)?);
        }
        anyhow::Ok(())
    })?;

    println!("\n-- Detection: every detector over the demo history");
    let config = pipewatch_analytics::detect::DetectConfig::default();
    let outcome = runtime.block_on(super::detect::detect(
        &args.data_dir,
        None,
        &config,
        None,
        true,
    ))?;
    println!("{}", super::detect::summary_text(&outcome));
    println!(
        "\n-- Top alerts\n{}",
        super::detect::top_alerts_text(&args.data_dir, 10)?
    );

    println!("\n-- Hardening metrics, last 30 days, per organisation");
    let report = runtime.block_on(async {
        let service = QueryService::open(&args.data_dir, QueryLimits::default())
            .await
            .context("cannot open the demo lake")?;
        anyhow::Ok(
            pipewatch_analytics::metrics::run_metrics(
                &service,
                pipewatch_analytics::Scope::Org,
                "30d".parse().context("window")?,
            )
            .await?,
        )
    })?;
    println!("{}", pipewatch_analytics::metrics::render_table(&report));

    let dir = args.data_dir.display();
    println!("\nAsk your own questions:");
    println!(
        "  pipewatch sql --data-dir {dir} \"SELECT * FROM audit_log ORDER BY event_time DESC LIMIT 20\""
    );
    println!(
        "  pipewatch sql --data-dir {dir} --output json \"SELECT repo, count(*) FROM pipeline_runs GROUP BY repo\""
    );
    println!(
        "  pipewatch sql --data-dir {dir} \"SELECT detector, severity, title FROM alerts WHERE status = 'open' ORDER BY score DESC\""
    );
    println!("  pipewatch alerts --data-dir {dir} --min-severity medium");
    if args.from.is_none() {
        println!(
            "  pipewatch eval --data-dir {dir} --labels {}",
            args.data_dir.join("native").join("labels.json").display()
        );
    }
    if args.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    let password = demo_login(&args.data_dir)?;
    runtime.block_on(serve_dashboard(&args, &password))?;
    Ok(ExitCode::SUCCESS)
}

/// The demo's sign-in: user `demo` (an admin) with a fresh password each run.
fn demo_login(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use pipewatch_dashboard::users::{Role, UserStore, generate_password};
    let mut users = UserStore::open(data_dir).context("cannot open the demo's users")?;
    let password = generate_password();
    let now = chrono::Utc::now();
    if users.list()?.iter().any(|u| u.name == DEMO_USER) {
        users.set_password(DEMO_USER, &password, now)?;
    } else {
        users.add(DEMO_USER, Role::Admin, &password, now)?;
    }
    Ok(password)
}

/// Serves the dashboard over the demo lake until ctrl-c.
async fn serve_dashboard(args: &Args, password: &str) -> anyhow::Result<()> {
    let app = pipewatch_dashboard::standalone(
        &args.data_dir,
        pipewatch_dashboard::DashboardSettings {
            warm_rollups: true,
            ..pipewatch_dashboard::DashboardSettings::default()
        },
    )
    .context("cannot open the dashboard")?;
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (try --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    let address = tcp
        .local_addr()
        .context("cannot read the listening address")?;
    println!("\n-- Dashboard");
    println!("  open    http://{address}/");
    println!("  sign in as `{DEMO_USER}` with password {password}");
    let shutdown = crate::serve::ShutdownSignal::listen()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pg = crate::config::PgwireConfig {
        enabled: true,
        listen: args.pg_listen,
        ..crate::config::PgwireConfig::default()
    };
    let pg_server = match crate::serve::start_pgwire(&pg, &args.data_dir, stop_rx.clone()).await {
        Ok((server, pg_address)) => {
            println!(
                "  psql    psql \"host={} port={} user={DEMO_USER} dbname=pipewatch\" (same password)",
                pg_address.ip(),
                pg_address.port()
            );
            Some(server)
        }
        Err(e) => {
            eprintln!("warning: no PostgreSQL endpoint: {e:#}");
            None
        }
    };
    println!("  stop with ctrl-c");
    use std::io::Write;
    std::io::stdout().flush().ok();
    let server = tokio::spawn(crate::serve::serve_http(
        tcp,
        app,
        crate::config::ServerConfig::default(),
        stop_rx,
    ));
    shutdown.received().await;
    let _ = stop_tx.send(true);
    server.await.context("the dashboard server failed")?;
    if let Some(pg) = pg_server {
        pg.await.context("the PostgreSQL endpoint failed")?;
    }
    Ok(())
}
