//! Signing in and out: the login form (with its own double-submit token, as
//! there is no session yet), throttled password checks, session rotation,
//! and logout that ends the session on the server.

use std::time::Instant;

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::Utc;
use serde::Deserialize;

use super::view::{self, render};
use super::{AppState, ClientAddress, tokens_match};
use crate::sessions::{Session, random_token};

const SECURE_LOGIN_COOKIE: &str = "__Host-pipewatch-login";
const PLAIN_LOGIN_COOKIE: &str = "pipewatch-login";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nonce: String,
    next: String,
    user: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    user: String,
    password: String,
    nonce: String,
    next: Option<String>,
}

/// Only paths of this site: never `//host`, `\\host` or a full URL.
fn local_target(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

pub(super) fn cookie(state: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::new(name, value);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_path("/");
    cookie.set_secure(state.0.settings.secure_cookies);
    cookie
}

fn login_cookie_name(state: &AppState) -> &'static str {
    if state.0.settings.secure_cookies {
        SECURE_LOGIN_COOKIE
    } else {
        PLAIN_LOGIN_COOKIE
    }
}

fn login_form(
    state: &AppState,
    jar: CookieJar,
    status: StatusCode,
    next: String,
    user: String,
    error: Option<String>,
) -> Response {
    let nonce = random_token();
    let jar = jar.add(cookie(state, login_cookie_name(state), nonce.clone()));
    let page = LoginPage {
        nonce,
        next,
        user,
        error,
    };
    (status, jar, render(&page)).into_response()
}

pub(crate) async fn login_page(
    State(state): State<AppState>,
    session: Option<Extension<Session>>,
    Query(query): Query<LoginQuery>,
    jar: CookieJar,
) -> Response {
    let next = local_target(query.next.as_deref());
    if session.is_some() {
        return Redirect::to(&next).into_response();
    }
    login_form(&state, jar, StatusCode::OK, next, String::new(), None)
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Extension(address): Extension<ClientAddress>,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_target(form.next.as_deref());
    let user = form.user.trim().to_owned();
    let nonce_ok = jar
        .get(login_cookie_name(&state))
        .is_some_and(|c| tokens_match(c.value(), &form.nonce));
    if !nonce_ok {
        state.audit(
            &user,
            &address,
            "login",
            None,
            "refused",
            Some("missing or wrong login form token"),
        );
        return login_form(
            &state,
            jar,
            StatusCode::FORBIDDEN,
            next,
            user,
            Some("The sign-in form expired; please try again.".into()),
        );
    }
    if let Some(wait) = state.0.throttle.check(&user, &address.0, Instant::now()) {
        state.audit(
            &user,
            &address,
            "login",
            None,
            "refused",
            Some("too many failed sign-ins"),
        );
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return login_form(
            &state,
            jar,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            user,
            Some(format!(
                "Too many failed sign-ins. Try again in {minutes} minute(s)."
            )),
        );
    }
    let checker = state.clone();
    let (name, password) = (user.clone(), form.password);
    // argon2 is deliberately slow: off the reactor.
    let verdict =
        tokio::task::spawn_blocking(move || checker.users().authenticate(&name, &password)).await;
    let account = match verdict {
        Ok(Ok(account)) => account,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot check a password");
            return view::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in is unavailable.");
        }
        Err(e) => {
            tracing::error!(error = %e, "the password check failed");
            return view::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in is unavailable.");
        }
    };
    let Some(account) = account else {
        state.0.throttle.failed(&user, &address.0, Instant::now());
        state.audit(
            &user,
            &address,
            "login",
            None,
            "failed",
            Some("wrong user name or password"),
        );
        return login_form(
            &state,
            jar,
            StatusCode::UNAUTHORIZED,
            next,
            user,
            Some("Wrong user name or password.".into()),
        );
    };
    state.0.throttle.succeeded(&account.name);
    let previous = jar
        .get(state.session_cookie())
        .map(|c| c.value().to_owned());
    let created = state.sessions().create(
        &account.name,
        account.role,
        previous.as_deref(),
        Some(&address.0),
        Utc::now(),
    );
    let new = match created {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, "cannot open a session");
            return view::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in is unavailable.");
        }
    };
    state.audit(
        &account.name,
        &address,
        "login",
        None,
        "ok",
        Some(account.role.as_str()),
    );
    let jar = jar
        .remove(Cookie::build(login_cookie_name(&state)).path("/"))
        .add(cookie(&state, state.session_cookie(), new.token));
    (jar, Redirect::to(&next)).into_response()
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(address): Extension<ClientAddress>,
    Extension(session): Extension<Session>,
    jar: CookieJar,
) -> Response {
    if let Some(token) = jar
        .get(state.session_cookie())
        .map(|c| c.value().to_owned())
        && let Err(e) = state.sessions().end(&token)
    {
        tracing::error!(error = %e, "cannot end a session");
        return view::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-out failed; try again.",
        );
    }
    state.audit(&session.user, &address, "logout", None, "ok", None);
    let jar = jar.remove(Cookie::build(state.session_cookie()).path("/"));
    (jar, Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::local_target;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(
            local_target(Some("/alerts?status=open")),
            "/alerts?status=open"
        );
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "javascript:alert(1)",
            "/\nx",
        ] {
            assert_eq!(local_target(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(local_target(None), "/");
    }
}
