//! `pipewatch tokens`: API tokens for scripts and notebooks. A token acts as
//! its user (with the user's current role) within its scopes, and is shown
//! once; only its hash is kept.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{Duration, Utc};
use pipewatch_dashboard::tokens::{TokenScope, TokenStore};

use super::DataDir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Issue a token for a user: `sql` opens POST /api/sql, `read` the
    /// JSON API (GET /api/alerts).
    Add {
        #[command(flatten)]
        data: DataDir,
        /// A name to recognise and revoke the token by.
        name: String,
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// What the token may do (repeat for several).
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<TokenScope>,
        /// Days until the token stops working (0: never).
        #[arg(long, default_value_t = 90)]
        expires_days: u32,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke a token at once.
    Revoke {
        #[command(flatten)]
        data: DataDir,
        name: String,
    },
}

fn parse_scope(text: &str) -> Result<TokenScope, String> {
    TokenScope::parse(text).ok_or_else(|| format!("`{text}`: use sql or read"))
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Add {
            data,
            name,
            user,
            scopes,
            expires_days,
        } => {
            let store = TokenStore::open(&data.data_dir)?;
            let now = Utc::now();
            let expires = (expires_days > 0).then(|| now + Duration::days(i64::from(expires_days)));
            let secret = store
                .issue(&name, &user, &scopes, expires, now)
                .with_context(|| format!("cannot issue the token `{name}`"))?;
            println!("token {name} issued for {user}");
            println!("token: {secret}");
            println!("(shown once; send it as `Authorization: Bearer <token>`)");
        }
        Action::List { data } => {
            let store = TokenStore::open(&data.data_dir)?;
            let tokens = store.list()?;
            println!(
                "{:<24}  {:<16}  {:<10}  {:<17}  last used",
                "name", "user", "scopes", "expires"
            );
            let when = |t: Option<chrono::DateTime<Utc>>, none: &str| {
                t.map_or_else(
                    || none.to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M").to_string(),
                )
            };
            for token in &tokens {
                let scopes: Vec<&str> = token.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:<24}  {:<16}  {:<10}  {:<17}  {}",
                    token.name,
                    token.user,
                    scopes.join(","),
                    when(token.expires_at, "never"),
                    when(token.last_used_at, "never")
                );
            }
            println!("({} tokens)", tokens.len());
        }
        Action::Revoke { data, name } => {
            let store = TokenStore::open(&data.data_dir)?;
            store.revoke(&name)?;
            println!("token {name} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
