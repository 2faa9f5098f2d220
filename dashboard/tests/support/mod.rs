//! A dashboard on loopback with three users (viewer `vera`, responder
//! `rory`, admin `ada`) and a browser-like client that keeps cookies.
#![allow(dead_code)]

use std::net::SocketAddr;

use chrono::Utc;
use pipewatch_dashboard::DashboardSettings;
use pipewatch_dashboard::users::{Role, UserStore};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) struct Site {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    _dir: tempfile::TempDir,
    pub(crate) data_dir: std::path::PathBuf,
}

/// A browser-like session: the cookies it holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Visitor {
    pub(crate) cookies: Vec<(String, String)>,
}

impl Visitor {
    pub(crate) fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) fn absorb(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().expect("ascii cookie");
            let pair = text.split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_owned()
}

pub(crate) async fn start(settings: DashboardSettings) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_path_buf();
    let mut users = UserStore::open(&data_dir).expect("users");
    for (name, role) in [
        ("vera", Role::Viewer),
        ("rory", Role::Responder),
        ("ada", Role::Admin),
    ] {
        users
            .add(name, role, PASSWORD, Utc::now())
            .expect("add user");
    }
    let app = pipewatch_dashboard::standalone(&data_dir, settings).expect("dashboard");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    Site {
        base: format!("http://{address}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        _dir: dir,
        data_dir,
    }
}

impl Site {
    pub(crate) async fn get(
        &self,
        visitor: &mut Visitor,
        path: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", visitor.header())
            .send()
            .await
            .expect("GET");
        let (status, headers) = (response.status(), response.headers().clone());
        visitor.absorb(&headers);
        (status, headers, response.text().await.expect("body"))
    }

    pub(crate) async fn post(
        &self,
        visitor: &mut Visitor,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", visitor.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.expect("POST");
        let (status, headers) = (response.status(), response.headers().clone());
        visitor.absorb(&headers);
        (status, headers, response.text().await.expect("body"))
    }

    /// Signs in through the form, as a browser would.
    pub(crate) async fn sign_in(
        &self,
        visitor: &mut Visitor,
        user: &str,
        password: &str,
    ) -> StatusCode {
        let (_, _, page) = self.get(visitor, "/login").await;
        let nonce = hidden(&page, "nonce");
        let origin = self.base.clone();
        let (status, _, _) = self
            .post(
                visitor,
                "/login",
                &[
                    ("user", user),
                    ("password", password),
                    ("nonce", &nonce),
                    ("next", "/"),
                ],
                Some(&origin),
            )
            .await;
        status
    }

    pub(crate) async fn signed_in(&self, user: &str) -> Visitor {
        let mut visitor = Visitor::default();
        assert_eq!(
            self.sign_in(&mut visitor, user, PASSWORD).await,
            StatusCode::SEE_OTHER,
            "{user} signs in"
        );
        visitor
    }

    pub(crate) async fn csrf(&self, visitor: &mut Visitor) -> String {
        let (status, _, page) = self.get(visitor, "/alerts").await;
        assert_eq!(status, StatusCode::OK);
        hidden(&page, "csrf")
    }
}
