//! SQL through the dashboard over real HTTP: the console, CSV export, saved
//! queries, `POST /api/sql` in JSON, CSV and Arrow IPC for sessions and API
//! tokens, the refusal list, and the limits.

mod support;

use std::time::Duration;

use chrono::Utc;
use datafusion::arrow::ipc::reader::StreamReader;
use pipewatch_analytics::QueryLimits;
use pipewatch_dashboard::DashboardSettings;
use pipewatch_dashboard::tokens::{TokenScope, TokenStore};
use pipewatch_dashboard::users::{Role, UserStore};
use reqwest::StatusCode;
use support::{PASSWORD, Site, hidden, start};

/// `POST /api/sql` with a bearer token.
async fn api(
    site: &Site,
    token: &str,
    body: serde_json::Value,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut request = site
        .client
        .post(format!("{}/api/sql", site.base))
        .bearer_auth(token)
        .json(&body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.expect("POST /api/sql")
}

fn token(site: &Site, name: &str, user: &str, scopes: &[TokenScope]) -> String {
    TokenStore::open(&site.data_dir)
        .expect("tokens")
        .issue(name, user, scopes, None, Utc::now())
        .expect("issue")
}

fn console(sql: &str) -> String {
    format!(
        "/sql?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("q", sql)
            .finish()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_runs_a_query_exports_csv_and_both_are_audited() {
    let site = start(DashboardSettings::default()).await;
    let mut vera = site.signed_in("vera").await;
    let query = "SELECT 'mallory' AS actor, 41 + 1 AS answer UNION ALL SELECT 'trent', 7 ORDER BY answer DESC";
    let (status, _, page) = site.get(&mut vera, &console(query)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<td>mallory</td>") && page.contains("<td>42</td>"),
        "{page}"
    );
    assert!(page.contains("2 row(s)"), "{page}");
    let (status, headers, csv) = site
        .get(
            &mut vera,
            &console(query).replacen("/sql?", "/sql/export?", 1),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/csv")
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment")
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines, ["actor,answer", "mallory,42", "trent,7"]);
    // A bad query shows its error in the page and the console keeps working.
    let (status, _, page) = site.get(&mut vera, &console("SELEC nonsense")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("invalid query"), "{page}");

    let mut ada = site.signed_in("ada").await;
    let (status, _, page) = site
        .get(
            &mut ada,
            &console("SELECT actor, action, outcome FROM pipewatch_audit WHERE actor = 'vera' ORDER BY at"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for action in ["<td>login</td>", "<td>sql</td>", "<td>export</td>"] {
        assert!(
            page.contains(action),
            "the audit log in SQL shows {action}: {page}"
        );
    }
    // Only admins read the audit log, in SQL as on its page.
    let (status, _, page) = site
        .get(&mut vera, &console("SELECT * FROM pipewatch_audit"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("pipewatch_audit&#39; not found"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_statements_and_exceeded_limits_end_with_a_clear_error_and_the_server_keeps_serving()
 {
    let site = start(DashboardSettings {
        query_limits: QueryLimits {
            timeout: Duration::from_secs(1),
            max_rows: 1_000,
            ..QueryLimits::default()
        },
        ..DashboardSettings::default()
    })
    .await;
    let secret = token(&site, "script", "ada", &[TokenScope::Sql]);
    let refused = [
        ("CREATE TABLE stolen (a INT)", "refused"),
        ("INSERT INTO alerts (alert_id) VALUES ('x')", "refused"),
        ("DELETE FROM alerts", "refused"),
        ("DROP TABLE events", "refused"),
        ("COPY events TO '/tmp/pipewatch-copy.csv'", "refused"),
        ("SET datafusion.execution.batch_size = 1", "refused"),
        (
            "CREATE EXTERNAL TABLE passwd STORED AS CSV LOCATION '/etc/passwd'",
            "refused",
        ),
        ("SELECT * FROM '/etc/passwd'", ""),
        ("SELECT 1; SELECT 2", "one statement"),
    ];
    for (sql, says) in refused {
        let response = api(&site, &secret, serde_json::json!({ "sql": sql }), None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{sql}");
        let body: serde_json::Value = response.json().await.expect("json error");
        let error = body["error"].as_str().expect("error text");
        assert!(error.contains(says), "{sql}: {error}");
    }
    assert!(!std::path::Path::new("/tmp/pipewatch-copy.csv").exists());
    let limited = [
        (
            "SELECT count(*) FROM unnest(range(0, 200000)) AS a(x) CROSS JOIN unnest(range(0, 200000)) AS b(y)",
            "time limit",
        ),
        ("SELECT * FROM unnest(range(0, 5000)) AS t(x)", "1000 rows"),
    ];
    for (sql, says) in limited {
        let response = api(&site, &secret, serde_json::json!({ "sql": sql }), None).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{sql}");
        let body: serde_json::Value = response.json().await.expect("json error");
        let error = body["error"].as_str().expect("error text");
        assert!(error.contains(says), "{sql}: {error}");
        let after = api(
            &site,
            &secret,
            serde_json::json!({ "sql": "SELECT 1 AS ok" }),
            None,
        )
        .await;
        assert_eq!(after.status(), StatusCode::OK, "serving after {sql}");
    }
    // The console says the same.
    let mut vera = site.signed_in("vera").await;
    let (status, _, page) = site.get(&mut vera, &console("DROP TABLE events")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("refused"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_json_csv_and_arrow_to_tokens_and_to_sessions_with_their_csrf_token() {
    let site = start(DashboardSettings::default()).await;
    let sql_token = token(&site, "notebook", "vera", &[TokenScope::Sql]);
    let read_token = token(&site, "reader", "vera", &[TokenScope::Read]);
    let query = "SELECT x, x * 2 AS doubled FROM unnest(range(0, 3)) AS t(x) ORDER BY x";

    let json: serde_json::Value = api(&site, &sql_token, serde_json::json!({ "sql": query }), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        json,
        serde_json::json!([
            {"x": 0, "doubled": 0}, {"x": 1, "doubled": 2}, {"x": 2, "doubled": 4}
        ])
    );
    let csv = api(
        &site,
        &sql_token,
        serde_json::json!({ "sql": query, "format": "csv" }),
        None,
    )
    .await
    .text()
    .await
    .expect("csv");
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        ["x,doubled", "0,0", "1,2", "2,4"]
    );
    let arrow = api(
        &site,
        &sql_token,
        serde_json::json!({ "sql": query }),
        Some("application/vnd.apache.arrow.stream"),
    )
    .await;
    assert_eq!(
        arrow.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = arrow.bytes().await.expect("bytes");
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).expect("ipc");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, 3);

    // Scopes hold: a read token cannot run SQL, an SQL token cannot read alerts.
    let refused = api(
        &site,
        &read_token,
        serde_json::json!({ "sql": query }),
        None,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let alerts = site
        .client
        .get(format!("{}/api/alerts?status=open", site.base))
        .bearer_auth(&read_token)
        .send()
        .await
        .expect("GET /api/alerts");
    assert_eq!(alerts.status(), StatusCode::OK);
    assert!(
        alerts
            .json::<serde_json::Value>()
            .await
            .expect("json")
            .is_array()
    );
    let alerts = site
        .client
        .get(format!("{}/api/alerts", site.base))
        .bearer_auth(&sql_token)
        .send()
        .await
        .expect("GET /api/alerts");
    assert_eq!(alerts.status(), StatusCode::FORBIDDEN);
    // A token opens no page, and a revoked or made-up one nothing at all.
    let page = site
        .client
        .get(format!("{}/", site.base))
        .bearer_auth(&sql_token)
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    TokenStore::open(&site.data_dir)
        .expect("tokens")
        .revoke("notebook")
        .expect("revoke");
    for bad in [sql_token.as_str(), "pwt_made-up"] {
        let response = api(&site, bad, serde_json::json!({ "sql": query }), None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    // From a browser session the API needs the session's CSRF token.
    let mut vera = site.signed_in("vera").await;
    let csrf = site.csrf(&mut vera).await;
    for (header, expected) in [
        (None, StatusCode::FORBIDDEN),
        (Some(csrf.as_str()), StatusCode::OK),
    ] {
        let mut request = site
            .client
            .post(format!("{}/api/sql", site.base))
            .header("cookie", vera.header())
            .header("content-type", "text/plain")
            .body(query);
        if let Some(csrf) = header {
            request = request.header("x-csrf-token", csrf);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(response.status(), expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_queries_are_shared_and_only_their_owner_or_an_admin_deletes_them() {
    let site = start(DashboardSettings::default()).await;
    UserStore::open(&site.data_dir)
        .expect("users")
        .add("sam", Role::Responder, PASSWORD, Utc::now())
        .expect("sam");
    let origin = site.base.clone();
    let hostile_name = "<script>alert(1)</script>";
    let mut rory = site.signed_in("rory").await;
    let (_, _, page) = site.get(&mut rory, &console("SELECT 1 AS one")).await;
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = site
        .post(
            &mut rory,
            "/sql/saved",
            &[
                ("csrf", &csrf),
                ("name", hostile_name),
                ("q", "SELECT '<img src=x onerror=alert(2)>' AS x"),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let mut vera = site.signed_in("vera").await;
    let (_, _, page) = site.get(&mut vera, "/sql").await;
    assert!(
        page.contains("&#60;script&#62;alert(1)"),
        "shared, escaped: {page}"
    );
    assert!(
        !page.contains("<script") && !page.contains("<img"),
        "{page}"
    );
    assert!(!page.contains("Save for the team"), "a viewer cannot save");
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = site
        .post(
            &mut vera,
            "/sql/saved",
            &[("csrf", &csrf), ("name", "mine"), ("q", "SELECT 2")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let saved = pipewatch_dashboard::saved::SavedQueries::open(&site.data_dir)
        .expect("saved")
        .list()
        .expect("list");
    assert_eq!(saved.len(), 1);
    let id = saved[0].query_id.to_string();
    let mut sam = site.signed_in("sam").await;
    let csrf = site.csrf(&mut sam).await;
    let (status, _, _) = site
        .post(
            &mut sam,
            "/sql/saved/delete",
            &[("csrf", &csrf), ("query_id", &id)],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not sam's to delete");
    let mut ada = site.signed_in("ada").await;
    let csrf = site.csrf(&mut ada).await;
    let (status, _, _) = site
        .post(
            &mut ada,
            "/sql/saved/delete",
            &[("csrf", &csrf), ("query_id", &id)],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = site.get(&mut ada, "/sql").await;
    assert!(page.contains("None yet."));
}
