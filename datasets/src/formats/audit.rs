//! GitHub organization audit log in the streaming shape
//! (`github-audit/audit-log.ndjson`): `@timestamp` epoch milliseconds,
//! `_document_id`, `action`, actor fields, `org`/`business`, `repo`, and
//! `hashed_token` / `programmatic_access_type` when a token was used.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::epoch_ms;
use crate::calendar::Tz;
use crate::ctx::Ctx;
use crate::org::{Actor, BUSINESS, BUSINESS_ID, ORG, ORG_ID, Person, Repo};
use crate::rng::document_id;

const FILE: &str = "github-audit/audit-log.ndjson";

/// Who acted, from where, with what.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub(crate) actor: Actor,
    pub(crate) ip: Option<String>,
    pub(crate) country: Option<&'static str>,
    pub(crate) user_agent: Option<String>,
    /// (`hashed_token`, `programmatic_access_type`).
    pub(crate) token: Option<(String, &'static str)>,
}

impl Who {
    /// A person in their browser.
    pub(crate) fn web(p: &Person) -> Who {
        Who {
            actor: p.actor(),
            ip: Some(p.ip.clone()),
            country: Some(country(p.tz)),
            user_agent: Some(p.browser.to_owned()),
            token: None,
        }
    }

    /// A person's git client with their OAuth token.
    pub(crate) fn git(p: &Person) -> Who {
        Who {
            actor: p.actor(),
            ip: Some(p.ip.clone()),
            country: Some(country(p.tz)),
            user_agent: Some(p.git_agent.to_owned()),
            token: Some((p.git_token.clone(), "OAuth access token")),
        }
    }

    /// A GitHub App acting with an installation token.
    pub(crate) fn app(actor: &Actor, token: String, ip: Option<String>) -> Who {
        Who {
            actor: actor.clone(),
            ip,
            country: Some("US"),
            user_agent: Some("git/2.51.0".to_owned()),
            token: Some((token, "GitHub App server-to-server token")),
        }
    }

    /// A workflow run on behalf of an actor (no client of its own).
    pub(crate) fn system(actor: &Actor) -> Who {
        Who {
            actor: actor.clone(),
            ip: None,
            country: None,
            user_agent: None,
            token: None,
        }
    }
}

/// ISO country of a time zone's office.
pub(crate) fn country(tz: Tz) -> &'static str {
    match tz {
        Tz::Berlin => "DE",
        Tz::NewYork | Tz::SanFrancisco => "US",
        Tz::Bangalore => "IN",
    }
}

fn operation_type(action: &str) -> &'static str {
    let verb = action.rsplit('.').next().unwrap_or(action);
    if action.starts_with("git.") || verb.starts_with("download") {
        "access"
    } else if verb.contains("destroy") || verb.contains("remove") || verb.contains("delete") {
        "remove"
    } else if verb.contains("create")
        || verb.starts_with("register")
        || verb.starts_with("prepared")
        || verb.starts_with("add")
    {
        "create"
    } else if verb.contains("login") {
        "authentication"
    } else {
        "modify"
    }
}

/// Writes one audit entry and returns its `_document_id`.
pub(crate) fn entry(
    ctx: &mut Ctx,
    at: DateTime<Utc>,
    action: &str,
    who: &Who,
    repo: Option<&Repo>,
    extra: Value,
) -> String {
    let doc = document_id(&mut ctx.rng);
    let mut m = Map::new();
    m.insert("@timestamp".into(), json!(epoch_ms(at)));
    m.insert("_document_id".into(), json!(doc));
    m.insert("action".into(), json!(action));
    m.insert("actor".into(), json!(who.actor.login));
    m.insert("actor_id".into(), json!(who.actor.id));
    m.insert("actor_is_bot".into(), json!(who.actor.bot));
    if let Some(ip) = &who.ip {
        m.insert("actor_ip".into(), json!(ip));
    }
    if let Some(cc) = who.country {
        m.insert("actor_location".into(), json!({"country_code": cc}));
    }
    m.insert("business".into(), json!(BUSINESS));
    m.insert("business_id".into(), json!(BUSINESS_ID));
    m.insert("created_at".into(), json!(epoch_ms(at)));
    if let Some((hashed, kind)) = &who.token {
        m.insert("hashed_token".into(), json!(hashed));
        m.insert("programmatic_access_type".into(), json!(kind));
    }
    m.insert("operation_type".into(), json!(operation_type(action)));
    m.insert("org".into(), json!(ORG));
    m.insert("org_id".into(), json!(ORG_ID));
    if let Some(r) = repo {
        m.insert("public_repo".into(), json!(r.public));
        m.insert("repo".into(), json!(r.full_name));
        m.insert("repo_id".into(), json!(r.id));
    }
    if let Some(ua) = &who.user_agent {
        m.insert("user_agent".into(), json!(ua));
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            m.insert(k, v);
        }
    }
    ctx.sink.line(FILE, at, &Value::Object(m));
    doc
}

/// `git.clone` / `git.fetch` / `git.push` with the transport fields.
pub(crate) fn git(
    ctx: &mut Ctx,
    at: DateTime<Utc>,
    action: &str,
    who: &Who,
    repo: &Repo,
) -> String {
    entry(
        ctx,
        at,
        action,
        who,
        Some(repo),
        json!({
            "repository": repo.full_name,
            "repository_public": repo.public,
            "transport_protocol": 1,
            "transport_protocol_name": "http",
            "external_id": "",
            "user": "",
        }),
    )
}
