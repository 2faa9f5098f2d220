//! The dashboard's access rules over real HTTP on loopback: sign-in,
//! sessions, CSRF, roles, throttling, security headers, the audit log, and
//! escaping of hostile values on every page.

mod support;

use std::path::Path;

use chrono::{Duration, Utc};
use pipewatch_analytics::alerts::{AlertStatus, AlertStore};
use pipewatch_analytics::detect::{Explanation, Finding, FindingScope};
use pipewatch_dashboard::{DashboardSettings, POLICY};
use pipewatch_schema::Severity;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use support::{PASSWORD, Visitor, hidden, start};

fn finding(title: &str, entity: &str, repository: &str, evidence: &str) -> Finding {
    Finding {
        detector: "secret_bulk_read",
        severity: Severity::High,
        score: 9.5,
        event_time: Utc::now() - Duration::hours(1),
        entity: entity.to_owned(),
        title: title.to_owned(),
        explanation: Explanation {
            expected: "a few reads".into(),
            observed: title.to_owned(),
            unusual: "very".into(),
        },
        evidence: vec![evidence.to_owned()],
        scope: FindingScope {
            category: None,
            organisation: Some("acme".into()),
            repository: Some(repository.to_owned()),
        },
    }
}

fn seed_alert(data_dir: &Path, finding: Finding) -> String {
    let mut store = AlertStore::open(data_dir).expect("alerts");
    store
        .record(
            std::slice::from_ref(&finding),
            Duration::hours(1),
            Utc::now(),
        )
        .expect("record");
    store
        .list(&Default::default())
        .expect("list")
        .into_iter()
        .find(|a| a.entity == finding.entity)
        .expect("the alert")
        .alert_id
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .expect("ascii");
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(
        headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{what}"
    );
    assert!(headers.contains_key("referrer-policy"), "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_need_a_session_and_every_response_carries_the_security_headers() {
    let site = start(DashboardSettings::default()).await;
    let mut stranger = Visitor::default();
    for (method, path, _) in POLICY.iter().filter(|(m, _, _)| m == "GET") {
        let path = path.replace("{alert_id}", "abc");
        let (status, headers, _) = site.get(&mut stranger, &path).await;
        assert_security_headers(&headers, &format!("{method} {path}"));
        if path == "/login" || path.starts_with("/static") {
            assert_eq!(status, StatusCode::OK, "{path}");
        } else if path.starts_with("/api/") {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        } else {
            assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
            let location = headers
                .get(LOCATION)
                .expect("location")
                .to_str()
                .expect("ascii");
            assert!(location.starts_with("/login?next="), "{path}: {location}");
        }
    }
    let (status, headers, _) = site.get(&mut stranger, "/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_security_headers(&headers, "404");
    // State changes without a session are refused outright.
    let (status, _, _) = site
        .post(
            &mut stranger,
            "/alerts/actions",
            &[("action", "resolve")],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_rotates_the_session_and_sign_out_ends_it_on_the_server() {
    let site = start(DashboardSettings::default()).await;
    // A session token planted before sign-in is not the one that comes out.
    let mut visitor = Visitor {
        cookies: vec![("pipewatch-session".into(), "planted-by-attacker".into())],
    };
    let (_, _, page) = site.get(&mut visitor, "/login").await;
    let nonce = hidden(&page, "nonce");
    let origin = site.base.clone();
    let (status, headers, _) = site
        .post(
            &mut visitor,
            "/login",
            &[
                ("user", "rory"),
                ("password", PASSWORD),
                ("nonce", &nonce),
                ("next", "/alerts?status=open"),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers.get(LOCATION).map(|v| v.as_bytes()),
        Some(&b"/alerts?status=open"[..])
    );
    let set_cookie: Vec<&str> = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    let session_cookie = set_cookie
        .iter()
        .find(|c| c.starts_with("pipewatch-session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    let token = visitor
        .cookie("pipewatch-session")
        .expect("session")
        .to_owned();
    assert_ne!(token, "planted-by-attacker");
    let (status, _, page) = site.get(&mut visitor, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("rory"), "the overview names who is signed in");

    let csrf = site.csrf(&mut visitor).await;
    let (status, headers, _) = site
        .post(&mut visitor, "/logout", &[("csrf", &csrf)], Some(&origin))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers.get(LOCATION).map(|v| v.as_bytes()),
        Some(&b"/login"[..])
    );
    // The old token, replayed, no longer opens anything.
    let mut replay = Visitor {
        cookies: vec![("pipewatch-session".into(), token)],
    };
    let (status, _, _) = site.get(&mut replay, "/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // An outside `next` is not followed after sign-in.
    let mut visitor = Visitor::default();
    let (_, _, page) = site.get(&mut visitor, "/login?next=//evil.example/").await;
    assert!(!page.contains("evil.example"));
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_the_cookie_is_host_prefixed_and_secure_with_hsts() {
    let site = start(DashboardSettings {
        secure_cookies: true,
        ..DashboardSettings::default()
    })
    .await;
    let mut visitor = Visitor::default();
    let (_, headers, page) = site.get(&mut visitor, "/login").await;
    assert!(headers.contains_key("strict-transport-security"));
    let nonce = hidden(&page, "nonce");
    let origin = site.base.clone();
    let (status, headers, _) = site
        .post(
            &mut visitor,
            "/login",
            &[("user", "vera"), ("password", PASSWORD), ("nonce", &nonce)],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .find(|c| c.starts_with("__Host-pipewatch-session="))
        .expect("a __Host- session cookie")
        .to_owned();
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_need_the_sessions_csrf_token_and_the_same_origin() {
    let site = start(DashboardSettings::default()).await;
    let alert = seed_alert(
        &site.data_dir,
        finding("Bulk read", "vault:ci", "acme/api", "e1"),
    );
    let mut rory = site.signed_in("rory").await;
    let csrf = site.csrf(&mut rory).await;
    let origin = site.base.clone();
    for (form, from, why) in [
        (
            vec![("alert_id", alert.as_str()), ("action", "acknowledge")],
            Some(origin.as_str()),
            "no token",
        ),
        (
            vec![
                ("alert_id", alert.as_str()),
                ("action", "acknowledge"),
                ("csrf", "forged"),
            ],
            Some(origin.as_str()),
            "a wrong token",
        ),
        (
            vec![
                ("alert_id", alert.as_str()),
                ("action", "acknowledge"),
                ("csrf", csrf.as_str()),
            ],
            Some("http://evil.example"),
            "another origin",
        ),
    ] {
        let (status, _, _) = site.post(&mut rory, "/alerts/actions", &form, from).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}");
    }
    let status_now = |dir: &Path| {
        AlertStore::open(dir)
            .expect("alerts")
            .get(&alert)
            .expect("alert")
            .status
    };
    assert_eq!(status_now(&site.data_dir), AlertStatus::Open);
    let (status, _, _) = site
        .post(
            &mut rory,
            "/alerts/actions",
            &[
                ("alert_id", alert.as_str()),
                ("action", "acknowledge"),
                ("csrf", csrf.as_str()),
                ("back", "/alerts?status=open"),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(status_now(&site.data_dir), AlertStatus::Acknowledged);
    // Another session's token is worthless here.
    let mut other = site.signed_in("ada").await;
    let other_csrf = site.csrf(&mut other).await;
    assert_ne!(other_csrf, csrf);
    let (status, _, _) = site
        .post(
            &mut rory,
            "/alerts/actions",
            &[
                ("alert_id", alert.as_str()),
                ("action", "resolve"),
                ("csrf", other_csrf.as_str()),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Sign-in itself needs the form's token.
    let mut fresh = Visitor::default();
    let (status, _, _) = site
        .post(
            &mut fresh,
            "/login",
            &[("user", "rory"), ("password", PASSWORD), ("nonce", "x")],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(fresh.cookie("pipewatch-session").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_limit_what_a_user_may_do_and_the_audit_log_records_it() {
    let site = start(DashboardSettings::default()).await;
    let alert = seed_alert(
        &site.data_dir,
        finding("Bulk read", "vault:ci", "acme/api", "e1"),
    );
    let origin = site.base.clone();

    let mut vera = site.signed_in("vera").await;
    let (status, _, page) = site.get(&mut vera, "/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Bulk read"));
    assert!(
        !page.contains("value=\"acknowledge\""),
        "a viewer sees no actions"
    );
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = site
        .post(
            &mut vera,
            "/alerts/actions",
            &[
                ("alert_id", alert.as_str()),
                ("action", "resolve"),
                ("csrf", csrf.as_str()),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = site.get(&mut vera, "/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut rory = site.signed_in("rory").await;
    let (status, _, _) = site.get(&mut rory, "/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = site.csrf(&mut rory).await;
    // Suppressing needs a reason; the refusal says so.
    let (status, _, page) = site
        .post(
            &mut rory,
            "/alerts/actions",
            &[
                ("alert_id", alert.as_str()),
                ("action", "suppress"),
                ("hours", "24"),
                ("csrf", csrf.as_str()),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("reason"), "{page}");
    let (status, _, _) = site
        .post(
            &mut rory,
            "/alerts/actions",
            &[
                ("alert_id", alert.as_str()),
                ("action", "suppress"),
                ("hours", "24"),
                ("reason", "known migration"),
                ("csrf", csrf.as_str()),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, detail) = site.get(&mut rory, &format!("/alerts/{alert}")).await;
    assert!(
        detail.contains("known migration") && detail.contains("rory"),
        "{detail}"
    );

    let mut ada = site.signed_in("ada").await;
    let (status, _, audit) = site.get(&mut ada, "/audit").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "alert.suppress",
        "denied",
        "needs role responder",
        "needs role admin",
        "login",
    ] {
        assert!(audit.contains(expected), "the audit log shows {expected}");
    }
    assert!(audit.contains("vera") && audit.contains("rory") && audit.contains("ada"));
    assert!(audit.contains("127.0.0.1"), "with the client address");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_sign_ins_lock_the_user_out_for_a_while() {
    let site = start(DashboardSettings::default()).await;
    let mut visitor = Visitor::default();
    for _ in 0..5 {
        assert_eq!(
            site.sign_in(&mut visitor, "ada", "not the password at all")
                .await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused until the window passes.
    assert_eq!(
        site.sign_in(&mut visitor, "ada", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(visitor.cookie("pipewatch-session").is_none());
    // Other users are not locked out by someone guessing at `ada`.
    site.signed_in("rory").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_are_shown_as_text_on_every_page() {
    let site = start(DashboardSettings::default()).await;
    let hostile = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
    let alert = seed_alert(
        &site.data_dir,
        finding(
            hostile,
            &format!("javascript:alert(3)//{hostile}"),
            hostile,
            hostile,
        ),
    );
    let mut visitor = Visitor::default();
    // Hostile input reaches the audit log through a failed sign-in too.
    site.sign_in(&mut visitor, hostile, "whatever it is").await;
    let mut ada = site.signed_in("ada").await;
    let detail = format!("/alerts/{alert}");
    let login_next = format!(
        "/login?next={}",
        form_urlencoded::byte_serialize("/\"><script>alert(4)</script>".as_bytes())
            .collect::<String>()
    );
    for path in [
        "/",
        "/alerts",
        "/alerts?status=open&repository=%3Cscript%3E",
        &detail,
        "/audit",
        "/sql?q=SELECT+title%2C+entity%2C+repository+FROM+alerts",
    ] {
        let (status, _, page) = site.get(&mut ada, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!page.contains("<script"), "{path} injects a script tag");
        assert!(!page.contains("<img"), "{path} injects markup");
        assert!(
            !page.contains("href=\"javascript:"),
            "{path} links to javascript:"
        );
        assert!(
            !page.contains("onerror=alert(2)>"),
            "{path} breaks out of an attribute"
        );
    }
    let (_, _, page) = site.get(&mut ada, &detail).await;
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "shown, as text: {page}"
    );
    let mut stranger = Visitor::default();
    let (_, _, page) = site.get(&mut stranger, &login_next).await;
    assert!(!page.contains("<script"), "the login page's next field");
}

#[tokio::test(flavor = "multi_thread")]
async fn times_are_shown_in_the_chosen_timezone_with_utc_on_hover() {
    let site = start(DashboardSettings::default()).await;
    let alert = seed_alert(
        &site.data_dir,
        finding("Bulk read", "vault:ci", "acme/api", "e1"),
    );
    let origin = site.base.clone();
    let mut vera = site.signed_in("vera").await;
    let detail = format!("/alerts/{alert}");
    let (_, _, page) = site.get(&mut vera, &detail).await;
    assert!(page.contains(" UTC</time>"), "UTC until chosen");
    let (_, _, prefs) = site.get(&mut vera, "/preferences").await;
    let csrf = hidden(&prefs, "csrf");
    let (status, _, _) = site
        .post(
            &mut vera,
            "/preferences",
            &[("csrf", csrf.as_str()), ("timezone", "Not/AZone")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = site
        .post(
            &mut vera,
            "/preferences",
            &[("csrf", csrf.as_str()), ("timezone", "Asia/Tokyo")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = site.get(&mut vera, &detail).await;
    assert!(page.contains(" JST</time>"), "{page}");
    // The exact instant in UTC stays on hover.
    assert!(page.contains("Z\">") && page.contains("title=\""), "{page}");
    // Another user's choice is theirs alone.
    let mut rory = site.signed_in("rory").await;
    let (_, _, page) = site.get(&mut rory, &detail).await;
    assert!(page.contains(" UTC</time>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_signs_users_in_and_its_header_is_ignored_from_anywhere_else() {
    use pipewatch_dashboard::ProxyAuth;
    let proxied = |trusted: &str| DashboardSettings {
        proxy_auth: Some(ProxyAuth {
            header: "x-forwarded-user".parse().expect("header"),
            trusted: vec![trusted.parse().expect("network")],
        }),
        ..DashboardSettings::default()
    };
    let site = start(proxied("127.0.0.1/32")).await;
    let get_as = |user: &'static str, path: &'static str, cookie: String| {
        site.client
            .get(format!("{}{path}", site.base))
            .header("x-forwarded-user", user)
            .header("x-forwarded-for", "203.0.113.9")
            .header("cookie", cookie)
            .send()
    };
    let response = get_as("rory", "/alerts", String::new()).await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("pipewatch-session="))
        .and_then(|v| v.split(';').next())
        .expect("a session for the proxied user")
        .to_owned();
    let page = response.text().await.expect("page");
    assert!(
        page.contains("rory <small>(responder)</small>"),
        "signed in as the responder: {page}"
    );
    // The session carries on; the role is pipewatch's, not the proxy's.
    let response = get_as("rory", "/audit", cookie.clone()).await.expect("GET");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A user unknown to pipewatch is refused, with how to fix it.
    let response = get_as("mallory", "/", String::new()).await.expect("GET");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("pipewatch users add")
    );
    // The audit log names the client behind the proxy.
    let mut ada = site.signed_in("ada").await;
    let (_, _, audit) = site.get(&mut ada, "/audit").await;
    assert!(audit.contains("signed in by the trusted proxy") && audit.contains("203.0.113.9"));

    // From an address that is not the proxy, the header means nothing.
    let elsewhere = start(proxied("10.0.0.0/8")).await;
    let response = elsewhere
        .client
        .get(format!("{}/alerts", elsewhere.base))
        .header("x-forwarded-user", "ada")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers().get(SET_COOKIE).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn responders_assign_alerts_to_someone_who_can_act_on_them() {
    let site = start(DashboardSettings::default()).await;
    let first = seed_alert(
        &site.data_dir,
        finding("Bulk read", "vault:ci", "acme/api", "e1"),
    );
    let second = seed_alert(
        &site.data_dir,
        finding("Odd deploy", "deploy:prod", "acme/web", "e2"),
    );
    let origin = site.base.clone();
    let mut rory = site.signed_in("rory").await;
    let (_, _, page) = site.get(&mut rory, "/alerts").await;
    assert!(
        page.contains("value=\"assign\"") && page.contains("<option value=\"ada\">ada</option>"),
        "the alerts page offers assignment to responders and admins"
    );
    assert!(
        !page.contains("<option value=\"vera\">"),
        "viewers are not offered: they cannot act on alerts"
    );
    let csrf = site.csrf(&mut rory).await;
    let assign = |to: &'static str| {
        vec![
            ("alert_id", first.clone()),
            ("alert_id", second.clone()),
            ("action", "assign".to_owned()),
            ("assignee", to.to_owned()),
            ("csrf", csrf.clone()),
        ]
    };

    // A viewer, or someone unknown, cannot be given alerts.
    for nobody in ["vera", "mallory"] {
        let pairs = assign(nobody);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, page) = site
            .post(&mut rory, "/alerts/actions", &pairs, Some(&origin))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{nobody}");
        assert!(
            page.contains("is not a user who can act on alerts"),
            "{page}"
        );
    }

    // Both selected alerts go to rory at once.
    let pairs = assign("rory");
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = site
        .post(&mut rory, "/alerts/actions", &pairs, Some(&origin))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, mine) = site.get(&mut rory, "/alerts?assignee=me").await;
    assert!(
        mine.contains("Bulk read") && mine.contains("Odd deploy"),
        "{mine}"
    );
    let (_, _, unassigned) = site.get(&mut rory, "/alerts?assignee=nobody").await;
    assert!(!unassigned.contains("Bulk read"), "{unassigned}");
    let (_, _, detail) = site.get(&mut rory, &format!("/alerts/{first}")).await;
    assert!(
        detail.contains("assigned to rory"),
        "the history says who got it"
    );
    assert!(
        detail.contains("<option value=\"rory\" selected>"),
        "the detail page shows the assignee"
    );
    // The status is untouched; unassigning leaves the alert to nobody.
    assert!(detail.contains("<dd>open</dd>"), "{detail}");
    let pairs = vec![
        ("alert_id", first.as_str()),
        ("action", "assign"),
        ("assignee", ""),
        ("csrf", csrf.as_str()),
    ];
    let (status, _, _) = site
        .post(&mut rory, "/alerts/actions", &pairs, Some(&origin))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, unassigned) = site.get(&mut rory, "/alerts?assignee=nobody").await;
    assert!(
        unassigned.contains("Bulk read") && !unassigned.contains("Odd deploy"),
        "{unassigned}"
    );

    // The JSON API and the SQL `alerts` table carry the assignee too.
    let (_, _, json) = site.get(&mut rory, "/api/alerts?assignee=rory").await;
    let alerts: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(alerts[0]["assignee"], "rory");

    let mut ada = site.signed_in("ada").await;
    let (_, _, audit) = site.get(&mut ada, "/audit").await;
    assert!(
        audit.contains("alert.assign") && audit.contains("to rory"),
        "audited"
    );
}

/// A form's fields with the session's CSRF token.
fn with_csrf<'a>(pairs: &[(&'a str, &'a str)], csrf: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut pairs = pairs.to_vec();
    pairs.push(("csrf", csrf));
    pairs
}

/// The password shown once on the admin page after adding or resetting.
fn issued_password(page: &str) -> String {
    let marker = "<code class=\"password\">";
    let start = page.find(marker).expect("a password shown") + marker.len();
    page[start..start + page[start..].find('<').expect("end")].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_manage_users_and_tokens_from_the_dashboard() {
    let site = start(DashboardSettings::default()).await;
    let origin = site.base.clone();
    for user in ["vera", "rory"] {
        let mut visitor = site.signed_in(user).await;
        for path in ["/admin/users", "/admin/settings"] {
            let (status, _, _) = site.get(&mut visitor, path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{user} {path}");
        }
    }
    let mut ada = site.signed_in("ada").await;
    let (status, _, page) = site.get(&mut ada, "/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("vera") && page.contains("rory"), "{page}");
    let csrf = hidden(&page, "csrf");

    // Adding shows a generated password once; the new user signs in with it.
    let (status, headers, page) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(
                &[("action", "add"), ("name", "nia"), ("role", "responder")],
                &csrf,
            ),
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "a page with a password is never cached"
    );
    let password = issued_password(&page);
    assert!(password.len() >= 16, "{password}");
    let mut nia = Visitor::default();
    assert_eq!(
        site.sign_in(&mut nia, "nia", &password).await,
        StatusCode::SEE_OTHER
    );
    let (_, _, again) = site.get(&mut ada, "/admin/users").await;
    assert!(!again.contains(&password), "shown only once");

    // A new role applies to the open session; a reset ends it.
    let (status, _, _) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(
                &[("action", "role"), ("name", "nia"), ("role", "admin")],
                &csrf,
            ),
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = site.get(&mut nia, "/admin/settings").await;
    assert_eq!(status, StatusCode::OK, "nia is an admin now");
    let (_, _, page) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(&[("action", "password"), ("name", "nia")], &csrf),
            Some(&origin),
        )
        .await;
    let reset = issued_password(&page);
    assert_ne!(reset, password);
    let (status, _, _) = site.get(&mut nia, "/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the old session ended");
    let mut nia = Visitor::default();
    assert_eq!(
        site.sign_in(&mut nia, "nia", &password).await,
        StatusCode::UNAUTHORIZED,
        "the old password no longer works"
    );
    assert_eq!(
        site.sign_in(&mut nia, "nia", &reset).await,
        StatusCode::SEE_OTHER
    );

    // Removing needs the confirmation, never removes oneself, and ends sessions.
    let (status, _, _) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(&[("action", "remove"), ("name", "nia")], &csrf),
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(
                &[("action", "remove"), ("name", "ada"), ("confirm", "yes")],
                &csrf,
            ),
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(
                &[("action", "remove"), ("name", "nia"), ("confirm", "yes")],
                &csrf,
            ),
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = site.get(&mut nia, "/").await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a removed user is signed out"
    );
    // The last admin keeps the role.
    let (status, _, page) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(
                &[("action", "role"), ("name", "ada"), ("role", "viewer")],
                &csrf,
            ),
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{page}");

    // Tokens are listed and revoked here.
    pipewatch_dashboard::tokens::TokenStore::open(&site.data_dir)
        .expect("tokens")
        .issue(
            "notebook",
            "rory",
            &[pipewatch_dashboard::tokens::TokenScope::Sql],
            None,
            Utc::now(),
        )
        .expect("token");
    let (_, _, page) = site.get(&mut ada, "/admin/users").await;
    assert!(page.contains("notebook"), "{page}");
    let (status, _, _) = site
        .post(
            &mut ada,
            "/admin/users",
            &with_csrf(&[("action", "revoke_token"), ("name", "notebook")], &csrf),
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = site.get(&mut ada, "/admin/users").await;
    assert!(!page.contains("notebook"), "{page}");

    // The settings page shows what is in force and who may use each path.
    let (_, _, settings) = site.get(&mut ada, "/admin/settings").await;
    for expected in [
        "Session idle timeout",
        "30 min",
        "/admin/users",
        "admin and above",
    ] {
        assert!(settings.contains(expected), "{expected} in {settings}");
    }
    let (_, _, audit) = site.get(&mut ada, "/audit").await;
    for expected in [
        "admin.add",
        "admin.role",
        "admin.password",
        "admin.remove",
        "admin.revoke_token",
    ] {
        assert!(audit.contains(expected), "{expected} audited");
    }
}
