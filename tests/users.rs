//! `pipewatch users` and `pipewatch tokens` through the real binary: adding
//! users with a given or generated password, listing, changing roles, the
//! guard on the last admin, and issuing, listing and revoking API tokens.

mod support;

use std::io::Write;
use std::process::{Output, Stdio};

use support::pipewatch;

fn users(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    command(data, "users", args, stdin)
}

fn command(data: &std::path::Path, name: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = pipewatch();
    cmd.arg(name).args(args).arg("--data-dir").arg(data);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("pipewatch runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("password written");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("pipewatch exits")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn users_are_added_listed_and_guarded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();

    let added = users(data, &["add", "root", "--role", "admin"], None);
    assert!(added.status.success(), "{}", text(&added));
    let printed = text(&added);
    let password = printed
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password is printed");
    assert_eq!(password.len(), 20);

    let added = users(
        data,
        &["add", "ana", "--role", "responder", "--password-stdin"],
        Some("a long passphrase for ana\n"),
    );
    assert!(added.status.success(), "{}", text(&added));
    assert!(
        !text(&added).contains("password:"),
        "a given password is not echoed"
    );

    let short = users(
        data,
        &["add", "bo", "--role", "viewer", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!short.status.success());
    assert!(
        text(&short).contains("at least 12 characters"),
        "{}",
        text(&short)
    );

    let twice = users(data, &["add", "ana", "--role", "viewer"], None);
    assert!(!twice.status.success());
    assert!(
        text(&twice).contains("`ana` already exists"),
        "{}",
        text(&twice)
    );

    let bad_role = users(data, &["add", "cy", "--role", "owner"], None);
    assert!(!bad_role.status.success());
    assert!(
        text(&bad_role).contains("viewer, responder or admin"),
        "{}",
        text(&bad_role)
    );

    let last_admin = users(data, &["remove", "root"], None);
    assert!(!last_admin.status.success());
    assert!(
        text(&last_admin).contains("no admin"),
        "{}",
        text(&last_admin)
    );

    let promoted = users(data, &["set-role", "ana", "admin"], None);
    assert!(promoted.status.success(), "{}", text(&promoted));
    let removed = users(data, &["remove", "root"], None);
    assert!(removed.status.success(), "{}", text(&removed));

    let listed = text(&users(data, &["list"], None));
    assert!(
        listed.contains("ana") && listed.contains("admin"),
        "{listed}"
    );
    assert!(!listed.contains("root"), "{listed}");
    assert!(listed.contains("(1 users)"), "{listed}");
}

#[test]
fn tokens_are_issued_once_listed_without_their_secret_and_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    assert!(
        users(data, &["add", "nora", "--role", "viewer"], None)
            .status
            .success()
    );
    let issued = command(
        data,
        "tokens",
        &[
            "add", "notebook", "--user", "nora", "--scope", "sql", "--scope", "read",
        ],
        None,
    );
    assert!(issued.status.success(), "{}", text(&issued));
    let secret = text(&issued)
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("the token is printed once")
        .to_owned();
    assert!(secret.starts_with("pwt_"), "{secret}");
    let listed = text(&command(data, "tokens", &["list"], None));
    assert!(
        listed.contains("notebook") && listed.contains("read,sql"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "the list never shows the secret");
    let unknown_user = command(
        data,
        "tokens",
        &["add", "x", "--user", "nobody", "--scope", "sql"],
        None,
    );
    assert!(!unknown_user.status.success());
    assert!(
        text(&unknown_user).contains("nobody"),
        "{}",
        text(&unknown_user)
    );
    let bad_scope = command(
        data,
        "tokens",
        &["add", "y", "--user", "nora", "--scope", "admin"],
        None,
    );
    assert!(!bad_scope.status.success());
    assert!(
        text(&bad_scope).contains("use sql or read"),
        "{}",
        text(&bad_scope)
    );
    assert!(
        command(data, "tokens", &["revoke", "notebook"], None)
            .status
            .success()
    );
    let again = command(data, "tokens", &["revoke", "notebook"], None);
    assert!(!again.status.success());
    assert!(text(&command(data, "tokens", &["list"], None)).contains("(0 tokens)"));
}
