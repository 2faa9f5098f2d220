//! The PostgreSQL endpoint driven by the real `psql` (Debian's
//! `postgresql-client`) and by tokio-postgres for the extended protocol:
//! SCRAM sign-in, read-only SQL, the refusal list, limits, the audit log,
//! psql's own catalog queries, and TLS with channel binding.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use pipewatch_analytics::QueryLimits;
use pipewatch_analytics::alerts::AlertStore;
use pipewatch_analytics::detect::{Explanation, Finding, FindingScope};
use pipewatch_dashboard::audit::{AuditFilter, AuditLog};
use pipewatch_dashboard::pgwire::{PgSettings, PgTls, serve_pg};
use pipewatch_dashboard::users::{Role, UserStore};
use pipewatch_schema::Severity;
use tokio::sync::watch;

const PASSWORD: &str = "correct horse battery staple";

/// A PostgreSQL endpoint on loopback over a fresh data directory with a
/// viewer `vera`, an admin `ada`, a user `olga` whose password predates
/// SCRAM verifiers, and one alert.
struct Server {
    port: u16,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Asks the server to stop and waits until `serve_pg` has returned.
    async fn stop(&mut self) {
        self.shutdown.send(true).expect("server running");
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve_pg returns on shutdown")
            .expect("serve_pg returned Ok");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

fn seed(data_dir: &Path) {
    let mut users = UserStore::open(data_dir).expect("users");
    for (name, role) in [
        ("vera", Role::Viewer),
        ("ada", Role::Admin),
        ("olga", Role::Viewer),
    ] {
        users
            .add(name, role, PASSWORD, Utc::now())
            .expect("add user");
    }
    rusqlite::Connection::open(data_dir.join(pipewatch_analytics::alerts::CONTROL_DB))
        .expect("control db")
        .execute(
            "UPDATE users SET scram_verifier = NULL WHERE name = 'olga'",
            [],
        )
        .expect("olga predates verifiers");
    alert(data_dir, "mallory");
}

/// Records an alert about `entity`.
fn alert(data_dir: &Path, entity: &str) {
    let finding = Finding {
        detector: "secret_bulk_read",
        severity: Severity::High,
        score: 9.5,
        event_time: Utc::now() - chrono::Duration::hours(1),
        entity: entity.to_owned(),
        title: format!("{entity} read 40 secrets"),
        explanation: Explanation {
            expected: "a few reads".into(),
            observed: "40 reads".into(),
            unusual: "very".into(),
        },
        evidence: vec!["evt-1".to_owned()],
        scope: FindingScope {
            category: None,
            organisation: Some("acme".into()),
            repository: Some("acme/api".into()),
        },
    };
    AlertStore::open(data_dir)
        .expect("alerts")
        .record(&[finding], chrono::Duration::hours(1), Utc::now())
        .expect("record");
}

async fn start_with(configure: impl FnOnce(&mut PgSettings, &Path)) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    seed(&data_dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mut settings = PgSettings {
        listen: ([127, 0, 0, 1], port).into(),
        ..PgSettings::default()
    };
    configure(&mut settings, dir.path());
    let (shutdown, stop) = watch::channel(false);
    let serve_dir = data_dir.clone();
    let task = tokio::spawn(async move {
        serve_pg(serve_dir, settings, listener, stop)
            .await
            .expect("serves");
    });
    Server {
        port,
        data_dir,
        _dir: dir,
        shutdown,
        task,
    }
}

async fn start() -> Server {
    start_with(|_, _| {}).await
}

/// The outcome of one psql run.
#[derive(Debug)]
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Fails, rather than skips, when psql is missing: these tests are the
/// proof that a real PostgreSQL client works.
fn require_psql() {
    let found = Command::new("psql").arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "the `psql` binary is required by the PostgreSQL endpoint tests and was not found \
         ({found:?}); install it with `apt-get install -y postgresql-client`"
    );
}

/// Runs psql against `port` as `user` with unaligned, tuples-only output.
async fn psql(port: u16, user: &str, password: &str, conninfo: &str, args: &[&str]) -> Run {
    require_psql();
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={user} dbname=pipewatch connect_timeout=10 {conninfo}"
    );
    let password = password.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new("psql")
            .env_clear()
            .env("PGPASSWORD", password)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg(conninfo)
            .args([
                "-X",
                "-w",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",
            ])
            .args(args)
            .output()
            .expect("run psql");
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("psql task")
}

/// `sql` as vera over a plain connection.
async fn vera(server: &Server, sql: &str) -> Run {
    psql(
        server.port,
        "vera",
        PASSWORD,
        "sslmode=disable",
        &["-c", sql],
    )
    .await
}

fn audit(data_dir: &Path, actor: &str) -> Vec<pipewatch_dashboard::audit::AuditEntry> {
    AuditLog::open(data_dir)
        .expect("audit log")
        .recent(&AuditFilter {
            actor: Some(actor.to_owned()),
            limit: 500,
            ..AuditFilter::default()
        })
        .expect("audit entries")
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_answers_queries_over_the_lake_and_logins_and_statements_are_audited() {
    let server = start().await;
    let run = vera(&server, "SELECT 41 + 1 AS answer").await;
    assert!(run.ok, "{run:?}");
    assert_eq!(run.stdout, "42");

    let run = vera(&server, "SELECT unnest(range(0, 3)) AS n").await;
    assert_eq!(run.lines(), ["0", "1", "2"], "{run:?}");

    let run = vera(
        &server,
        "SELECT entity, severity, evidence_event_ids, findings FROM alerts",
    )
    .await;
    assert_eq!(run.stdout, "mallory|high|[evt-1]|1", "{run:?}");

    let run = vera(
        &server,
        "SELECT count(*), true, 2.5, NULL, TIMESTAMP '2024-05-01 12:00:00' FROM events",
    )
    .await;
    assert_eq!(run.stdout, "0|t|2.5||2024-05-01 12:00:00", "{run:?}");

    // Admins also see the audit log, as on the dashboard; viewers do not.
    let run = psql(
        server.port,
        "ada",
        PASSWORD,
        "sslmode=disable",
        &[
            "-c",
            "SELECT count(*) > 0 FROM pipewatch_audit WHERE actor = 'vera'",
        ],
    )
    .await;
    assert_eq!(run.stdout, "t", "{run:?}");
    let run = vera(&server, "SELECT count(*) FROM pipewatch_audit").await;
    assert!(!run.ok, "{run:?}");

    let entries = audit(&server.data_dir, "vera");
    let login = entries
        .iter()
        .find(|e| e.action == "login")
        .expect("a login entry");
    assert_eq!(login.outcome, "ok");
    assert_eq!(login.address.as_deref(), Some("127.0.0.1"));
    let answer = entries
        .iter()
        .find(|e| e.target.as_deref() == Some("SELECT 41 + 1 AS answer"))
        .expect("the statement is audited");
    assert_eq!(
        (answer.action.as_str(), answer.outcome.as_str()),
        ("sql", "ok")
    );
    assert!(
        answer
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("1 rows")),
        "{answer:?}"
    );
    let refused = entries
        .iter()
        .find(|e| e.target.as_deref() == Some("SELECT count(*) FROM pipewatch_audit"))
        .expect("the failed statement is audited");
    assert_ne!(refused.outcome, "ok", "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_unknown_users_and_users_without_a_verifier_are_refused() {
    let server = start().await;
    let run = psql(
        server.port,
        "vera",
        "not the password at all",
        "sslmode=disable",
        &["-c", "SELECT 1"],
    )
    .await;
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("password authentication failed for user \"vera\""),
        "{run:?}"
    );
    let run = psql(
        server.port,
        "nobody",
        PASSWORD,
        "sslmode=disable",
        &["-c", "SELECT 1"],
    )
    .await;
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("password authentication failed for user \"nobody\""),
        "{run:?}"
    );
    let run = psql(
        server.port,
        "olga",
        PASSWORD,
        "sslmode=disable",
        &["-c", "SELECT 1"],
    )
    .await;
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr.contains("no SCRAM-SHA-256 verifier")
            && run.stderr.contains("pipewatch users passwd olga"),
        "{run:?}"
    );

    // A new password gives olga a verifier.
    UserStore::open(&server.data_dir)
        .expect("users")
        .set_password("olga", "a passphrase for psql", Utc::now())
        .expect("passwd");
    let run = psql(
        server.port,
        "olga",
        "a passphrase for psql",
        "sslmode=disable",
        &["-c", "SELECT 'in'"],
    )
    .await;
    assert_eq!(run.stdout, "in", "{run:?}");

    let run = vera(&server, "SELECT 1").await;
    assert_eq!(run.stdout, "1", "{run:?}");
    let entries = audit(&server.data_dir, "vera");
    let outcomes: Vec<&str> = entries
        .iter()
        .filter(|e| e.action == "login")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["ok", "failed"], "newest first: {entries:?}");
    assert_eq!(audit(&server.data_dir, "nobody")[0].outcome, "failed");
}

/// Sends a startup message and returns the authentication request code and
/// its SASL mechanisms.
fn authentication_request(port: u16) -> (i32, Vec<String>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut body = 196_608_i32.to_be_bytes().to_vec();
    for (key, value) in [("user", "vera"), ("database", "pipewatch")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let length = i32::try_from(body.len() + 4).expect("small");
    stream.write_all(&length.to_be_bytes()).expect("send");
    stream.write_all(&body).expect("send");
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).expect("answer");
    assert_eq!(header[0], b'R', "an authentication request");
    let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let mut payload = vec![0u8; usize::try_from(length - 4).expect("length")];
    stream.read_exact(&mut payload).expect("payload");
    let code = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let mechanisms = payload[4..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    (code, mechanisms)
}

/// The answer to an SSLRequest: `S` to go on with TLS, `N` to stay plain.
fn ssl_request_answer(port: u16) -> u8 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .expect("send");
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).expect("answer");
    answer[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn only_scram_sha_256_is_offered() {
    let server = start().await;
    let port = server.port;
    let (code, mechanisms) = tokio::task::spawn_blocking(move || authentication_request(port))
        .await
        .expect("task");
    // 10 is AuthenticationSASL; cleartext (3) and MD5 (5) are never asked for.
    assert_eq!(code, 10);
    assert_eq!(mechanisms, ["SCRAM-SHA-256"]);
    let answer = tokio::task::spawn_blocking(move || ssl_request_answer(port))
        .await
        .expect("task");
    assert_eq!(answer, b'N', "no TLS configured: SSLRequest is declined");

    // And the real client completes that exchange.
    let run = psql(
        port,
        "vera",
        PASSWORD,
        "sslmode=disable",
        &["-c", "SELECT 1"],
    )
    .await;
    assert_eq!(run.stdout, "1", "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_data_shows_up_after_the_lake_refresh_and_shutdown_stops_serving() {
    let mut server = start_with(|settings, _| {
        settings.lake_refresh = Duration::from_millis(500);
    })
    .await;
    let count = "SELECT count(*) FROM alerts";
    assert_eq!(vera(&server, count).await.stdout, "1");
    alert(&server.data_dir, "trudy");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(vera(&server, count).await.stdout, "2");

    server.stop().await;
    let port = server.port;
    let refused = tokio::task::spawn_blocking(move || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await
    .expect("task");
    assert!(refused, "the listener is closed after shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_settings_and_files_are_refused_with_the_guards_message_and_serving_goes_on() {
    let server = start().await;
    let target = server._dir.path().join("copied");
    let statements = [
        "DROP TABLE events".to_owned(),
        "INSERT INTO events (event_id) VALUES ('x')".to_owned(),
        format!("COPY events TO '{}'", target.display()),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        "CREATE EXTERNAL TABLE secrets STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        "SELECT 1; SELECT 2".to_owned(),
    ];
    for sql in &statements {
        let run = vera(&server, sql).await;
        assert!(!run.ok, "{sql}: {run:?}");
        assert!(
            run.stderr.contains("ERROR:  42501: refused: "),
            "{sql}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("is not allowed") || run.stderr.contains("exactly one statement"),
            "{sql}: {}",
            run.stderr
        );
        let after = vera(&server, "SELECT 'still here'").await;
        assert_eq!(after.stdout, "still here", "after {sql}: {after:?}");
    }
    assert!(!target.exists(), "COPY wrote a file");
    let refused = audit(&server.data_dir, "vera")
        .into_iter()
        .filter(|e| e.action == "sql" && e.outcome == "refused")
        .count();
    assert_eq!(refused, statements.len());

    // Unknown tables and bad SQL are errors of their own kind.
    let run = vera(&server, "SELECT * FROM no_such_table").await;
    assert!(run.stderr.contains("ERROR:  42P01"), "{run:?}");
    let run = vera(&server, "SELEC 1").await;
    assert!(run.stderr.contains("ERROR:  42601"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn row_and_time_limits_end_a_query_with_a_clear_error() {
    let server = start_with(|settings, _| {
        settings.query_limits = QueryLimits {
            max_rows: 5,
            timeout: Duration::from_secs(1),
            ..QueryLimits::default()
        };
    })
    .await;
    let run = vera(&server, "SELECT unnest(range(0, 100))").await;
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("ERROR:  53000: result exceeds the limit of 5 rows"),
        "{run:?}"
    );
    let run = vera(&server, SLOW_QUERY).await;
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("ERROR:  57014: query exceeded its time limit of 1s"),
        "{run:?}"
    );
    let run = vera(&server, "SELECT 'after the limits'").await;
    assert_eq!(run.stdout, "after the limits", "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_meta_commands_and_session_statements_do_not_break_the_server() {
    let server = start().await;
    for command in ["\\dt", "\\d events", "\\l", "\\conninfo"] {
        let run = psql(
            server.port,
            "vera",
            PASSWORD,
            "sslmode=disable",
            &["-c", command],
        )
        .await;
        assert!(
            !run.stderr.contains("server closed the connection"),
            "{command}: {run:?}"
        );
    }
    let run = psql(
        server.port,
        "vera",
        PASSWORD,
        "sslmode=disable",
        &["-c", "\\dt"],
    )
    .await;
    assert!(
        run.stderr.contains("HINT:  pipewatch has no pg_catalog"),
        "{run:?}"
    );
    let run = vera(&server, "SHOW TABLES").await;
    assert!(run.stdout.contains("|public|alerts|"), "{run:?}");
    // Statements drivers send while connecting are answered without running.
    let run = psql(
        server.port,
        "vera",
        PASSWORD,
        "sslmode=disable",
        &[
            "-c",
            "SET extra_float_digits = 3",
            "-c",
            "SET application_name = 'DBeaver'",
            "-c",
            "SHOW TRANSACTION ISOLATION LEVEL",
            "-c",
            "BEGIN",
            "-c",
            "SELECT 7",
            "-c",
            "COMMIT",
        ],
    )
    .await;
    assert!(run.ok, "{run:?}");
    assert_eq!(
        run.lines(),
        ["SET", "SET", "read committed", "BEGIN", "7", "COMMIT"],
        "{run:?}"
    );
    let run = vera(&server, "SELECT 'served'").await;
    assert_eq!(run.stdout, "served", "{run:?}");
}

/// A tokio-postgres client signed in as vera, and its connection task.
async fn connect(server: &Server) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=vera password='{PASSWORD}' dbname=pipewatch",
            server.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connects with SCRAM");
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, connection)
}

/// Runs for minutes unless stopped: 4·10¹⁰ joined rows.
const SLOW_QUERY: &str = "SELECT count(*) FROM (SELECT unnest(range(0, 200000)) AS a) x \
                          CROSS JOIN (SELECT unnest(range(0, 200000)) AS b) y";

#[tokio::test(flavor = "multi_thread")]
async fn extended_protocol_clients_get_typed_results_and_errors() {
    let server = start().await;
    let (client, connection) = connect(&server).await;

    // tokio-postgres asks for every column in binary.
    let rows = client
        .query(
            "SELECT 41 + 1 AS answer, 'x' AS s, true AS b, 2.5 AS f, \
             TIMESTAMP '1970-01-01 00:00:01' AS t, CAST(NULL AS BIGINT) AS missing",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("query: {e:?}"));
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, i64>("answer"), 42);
    assert_eq!(row.get::<_, &str>("s"), "x");
    assert!(row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, f64>("f"), 2.5);
    assert_eq!(
        row.get::<_, std::time::SystemTime>("t"),
        std::time::UNIX_EPOCH + Duration::from_secs(1)
    );
    assert_eq!(row.get::<_, Option<i64>>("missing"), None);

    let error = client
        .query("DROP TABLE events", &[])
        .await
        .expect_err("refused");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let error = client
        .query("SELECT 1 WHERE 1 = $1", &[&1_i64])
        .await
        .expect_err("parameters are refused");
    let message = error.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("parameters")),
        "{error:?}"
    );

    client
        .simple_query("SET extra_float_digits = 3")
        .await
        .expect("no-op setting");
    let rows = client
        .query("SELECT entity FROM alerts", &[])
        .await
        .expect("query after errors");
    assert_eq!(rows[0].get::<_, &str>(0), "mallory");
    drop(client);
    let _ = connection.await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_request_stops_the_running_statement_and_it_is_audited() {
    let server = start_with(|settings, _| {
        settings.query_limits.timeout = Duration::from_secs(120);
    })
    .await;
    let (client, connection) = connect(&server).await;
    let cancel = client.cancel_token();
    let slow = tokio::spawn(async move {
        let result = client.simple_query(SLOW_QUERY).await;
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel request sent");
    let (client, result) = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the statement stops well before its time limit")
        .expect("query task");
    let error = result.expect_err("cancelled");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{error:?}"
    );
    let rows = client
        .simple_query("SELECT 'next'")
        .await
        .expect("the session goes on");
    assert!(
        rows.iter().any(|m| matches!(
            m,
            tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("next")
        )),
        "{rows:?}"
    );
    drop(client);
    let _ = connection.await;

    // The entry of a cancelled statement is written after the fact.
    let mut audited = None;
    for _ in 0..50 {
        audited = audit(&server.data_dir, "vera")
            .into_iter()
            .find(|e| e.target.as_deref() == Some(SLOW_QUERY));
        if audited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audited = audited.expect("the cancelled statement is audited");
    assert_eq!(audited.outcome, "failed");
    assert_eq!(
        audited.detail.as_deref(),
        Some("cancelled by the client (pgwire)")
    );
}

/// A self-signed P-256 certificate for localhost, made with openssl.
fn certificate(dir: &Path) -> PgTls {
    let tls = PgTls {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&tls.key)
        .arg("-out")
        .arg(&tls.cert)
        .output();
    assert!(
        made.as_ref().is_ok_and(|o| o.status.success()),
        "the TLS test makes its certificate with the `openssl` binary: {made:?}"
    );
    tls
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_configured_clients_connect_over_tls_with_channel_binding_and_plain_is_refused() {
    let server = start_with(|settings, dir| {
        let tls = certificate(dir);
        tls.check().expect("certificate and key load");
        settings.tls = Some(tls);
    })
    .await;
    let run = psql(
        server.port,
        "vera",
        PASSWORD,
        "sslmode=require",
        &["-c", "SELECT 'over tls'"],
    )
    .await;
    assert_eq!(run.stdout, "over tls", "{run:?}");
    // channel_binding=require makes libpq use SCRAM-SHA-256-PLUS.
    let run = psql(
        server.port,
        "vera",
        PASSWORD,
        "sslmode=require channel_binding=require",
        &["-c", "SELECT 'bound'"],
    )
    .await;
    assert_eq!(run.stdout, "bound", "{run:?}");
    let run = psql(
        server.port,
        "vera",
        PASSWORD,
        "sslmode=disable",
        &["-c", "SELECT 1"],
    )
    .await;
    assert!(!run.ok, "{run:?}");
    assert!(run.stderr.contains("over TLS only"), "{run:?}");

    let missing = PgTls {
        cert: server.data_dir.join("nope.pem"),
        key: server.data_dir.join("nope.key"),
    };
    let error = missing.check().expect_err("missing files");
    assert!(error.to_string().contains("nope.pem"), "{error}");
}
