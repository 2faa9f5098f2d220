//! `pipewatch users`: local users of the dashboard and SQL endpoints, with
//! their roles. A password is read from standard input or generated and
//! printed once.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use pipewatch_dashboard::users::{Role, UserStore, generate_password};

use super::DataDir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Args)]
struct PasswordSource {
    /// Read the password from the first line of standard input instead of
    /// generating one.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Add a user: viewer (reads), responder (also acts on alerts) or admin
    /// (also manages users, routes and settings).
    Add {
        #[command(flatten)]
        data: DataDir,
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List users and their roles.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Change a user's role.
    SetRole {
        #[command(flatten)]
        data: DataDir,
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Replace a user's password.
    Passwd {
        #[command(flatten)]
        data: DataDir,
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Remove a user.
    Remove {
        #[command(flatten)]
        data: DataDir,
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("`{text}`: use viewer, responder or admin"))
}

/// The password from stdin, or a generated one (and whether it was generated).
fn password(source: &PasswordSource) -> anyhow::Result<(String, bool)> {
    if source.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
    } else {
        Ok((generate_password(), true))
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Add {
            data,
            name,
            role,
            password: source,
        } => {
            let mut store = UserStore::open(&data.data_dir)?;
            let (password, generated) = password(&source)?;
            let user = store.add(&name, role, &password, Utc::now())?;
            println!("user {} added as {}", user.name, user.role);
            if generated {
                println!("password: {password}");
                println!("(shown once; it is stored only as an argon2id hash)");
            }
        }
        Action::List { data } => {
            let store = UserStore::open(&data.data_dir)?;
            let users = store.list()?;
            println!("{:<32}  {:<9}  created", "name", "role");
            for user in &users {
                println!(
                    "{:<32}  {:<9}  {}",
                    user.name,
                    user.role,
                    user.created_at.format("%Y-%m-%d %H:%M UTC")
                );
            }
            println!("({} users)", users.len());
        }
        Action::SetRole { data, name, role } => {
            let mut store = UserStore::open(&data.data_dir)?;
            let user = store.set_role(&name, role)?;
            println!("user {} is now {}", user.name, user.role);
        }
        Action::Passwd {
            data,
            name,
            password: source,
        } => {
            let mut store = UserStore::open(&data.data_dir)?;
            let (password, generated) = password(&source)?;
            store.set_password(&name, &password, Utc::now())?;
            println!("password of {name} replaced");
            if generated {
                println!("password: {password}");
            }
        }
        Action::Remove { data, name } => {
            let mut store = UserStore::open(&data.data_dir)?;
            store.remove(&name)?;
            println!("user {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
