//! End-to-end tests of the `pipewatch` binary: native files in, SQL
//! answers out, through the real command line.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::walkdir_count;

fn pipewatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewatch"));
    cmd.env_remove("PIPEWATCH_DATA_DIR").env("RUST_LOG", "warn");
    cmd
}

fn run(args: &[&str]) -> Output {
    pipewatch().args(args).output().expect("pipewatch runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn real_events() -> PathBuf {
    if let Ok(dir) = std::env::var("PIPEWATCH_REAL_EVENTS") {
        return PathBuf::from(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/real-events");
    assert!(dir.is_dir(), "real events not found at {}", dir.display());
    dir
}

/// Runs a query and returns the rows of its JSON output.
fn sql(data: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = run(&[
        "sql",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--output",
        "json",
        query,
    ]);
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("json output")
        .as_array()
        .cloned()
        .expect("array of rows")
}

/// The numbers of one row of the ingest summary: inputs, accepted,
/// duplicates, dead-lettered.
fn summary_row(summary: &str, name: &str) -> Vec<i64> {
    let line = summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` row in:\n{summary}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn count(data: &Path, query: &str) -> i64 {
    sql(data, query)[0]["n"].as_i64().expect("count column n")
}

#[test]
fn real_samples_ingest_and_reingest_changes_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_str().expect("utf-8");
    let samples = real_events();
    for sub in [
        "github-webhooks",
        "github-audit",
        "gitlab",
        "vault-audit",
        "cloudtrail",
        "k8s-audit",
        "sarif",
        "conftest",
    ] {
        let out = run(&[
            "ingest",
            "--data-dir",
            data_dir,
            samples.join(sub).to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "{sub}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout(&out).contains("total"), "summary printed");
    }
    let total = count(data.path(), "SELECT count(*) AS n FROM events");
    assert!(total > 100, "events stored: {total}");
    assert_eq!(
        total,
        count(
            data.path(),
            "SELECT count(DISTINCT event_id) AS n FROM events"
        )
    );

    // The same inputs again: nothing new, everything counted as a duplicate.
    let out = run(&[
        "ingest",
        "--data-dir",
        data_dir,
        samples.join("cloudtrail").to_str().expect("utf-8"),
    ]);
    assert!(out.status.success());
    let summary = stdout(&out);
    let numbers = summary_row(&summary, "cloudtrail");
    assert_eq!(numbers[1], 0, "accepted on replay: {summary}");
    assert!(numbers[2] > 0, "duplicates on replay: {summary}");
    assert_eq!(
        total,
        count(data.path(), "SELECT count(*) AS n FROM events")
    );

    // The views read naturally.
    assert!(count(data.path(), "SELECT count(*) AS n FROM pipeline_jobs") > 0);
    assert!(count(data.path(), "SELECT count(*) AS n FROM secret_access") > 0);
    let oidc = count(
        data.path(),
        "SELECT count(*) AS n FROM audit_log WHERE identity_kind = 'oidc'",
    );
    assert!(
        oidc > 0,
        "the GitHub OIDC web-identity sign-in is classified"
    );
}

#[test]
fn bad_records_are_dead_lettered_and_good_ones_still_land() {
    let data = tempfile::tempdir().expect("temp dir");
    let input = data.path().join("mixed.ndjson");
    let good =
        std::fs::read_to_string(real_events().join("vault-audit/vault_audit.file-device.log"))
            .expect("vault sample");
    let mut lines: Vec<&str> = good.lines().collect();
    let good_count = lines.len();
    lines.insert(
        1,
        "{\"time\": \"2020-12-01T20:29:04Z\", \"type\": \"request\", \"request\": {truncated",
    );
    std::fs::write(&input, lines.join("\n")).expect("write input");
    let lake = data.path().join("lake");
    let out = run(&[
        "ingest",
        "--data-dir",
        lake.to_str().expect("utf-8"),
        input.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(&lake, "SELECT count(*) AS n FROM events"),
        good_count as i64
    );
    let letters = sql(
        &lake,
        "SELECT source, origin, position, reason, raw_sha256 FROM dead_letters",
    );
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "syntax");
    assert_eq!(letters[0]["position"]["kind"], "line");
    assert_eq!(letters[0]["position"]["at"], 2);
    assert_eq!(letters[0]["raw_sha256"].as_str().map(str::len), Some(64));
}

#[test]
fn sql_is_read_only_and_says_why() {
    let data = tempfile::tempdir().expect("temp dir");
    let out = run(&[
        "sql",
        "--data-dir",
        data.path().to_str().expect("utf-8"),
        "DROP VIEW pipeline_runs",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused") && err.contains("read-only"),
        "{err}"
    );
}

#[test]
fn nothing_readable_is_a_failure() {
    let data = tempfile::tempdir().expect("temp dir");
    let out = run(&[
        "ingest",
        "--data-dir",
        data.path().to_str().expect("utf-8"),
        "/nonexistent/input.json",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"));
}

/// Writes `n` Vault audit response lines with distinct request ids.
fn big_vault_log(path: &Path, n: usize) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..n {
        let day = 1 + (i % 28);
        writeln!(
            file,
            r#"{{"time":"2026-02-{day:02}T10:{:02}:{:02}.000Z","type":"response","auth":{{"accessor":"hmac-sha256:ab","display_name":"jwt-ci","policies":["default"],"token_type":"service"}},"request":{{"id":"00000000-0000-4000-8000-{i:012}","operation":"read","mount_type":"kv","path":"secret/data/team/app{}","remote_address":"10.0.0.{}"}},"response":{{"mount_type":"kv"}}}}"#,
            i % 60,
            (i / 60) % 60,
            i % 97,
            i % 250
        )
        .expect("write");
    }
}

#[test]
fn killing_ingest_mid_write_leaves_a_queryable_lake_and_loses_nothing_after_a_rerun() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("vault.log");
    let n = 120_000;
    big_vault_log(&input, n);
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_str().expect("utf-8");
    let input_arg = input.to_str().expect("utf-8");
    let events_dir = lake.join("events");
    let mut partial_kills = 0;
    for round in 0..4u64 {
        let mut child = pipewatch()
            .args([
                "ingest",
                "--data-dir",
                lake_arg,
                "--batch-events",
                "5000",
                input_arg,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ingest");
        // Wait until this run has committed something new, then a little
        // longer each round, so kills land between and during commits.
        let before = walkdir_count(&events_dir, ".parquet");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while walkdir_count(&events_dir, ".parquet") == before
            && std::time::Instant::now() < deadline
            && child.try_wait().expect("poll child").is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(round * 40));
        let _ = child.kill(); // SIGKILL: no chance to clean up
        let _ = child.wait();
        // Whatever was committed is readable, and nothing is half-visible or doubled.
        let stored = count(&lake, "SELECT count(*) AS n FROM events");
        assert_eq!(
            stored,
            count(&lake, "SELECT count(DISTINCT event_id) AS n FROM events")
        );
        assert!(stored <= n as i64);
        if stored > 0 && stored < n as i64 {
            partial_kills += 1;
        }
    }
    assert!(
        partial_kills > 0,
        "no kill landed mid-import; the test proved nothing"
    );
    let out = pipewatch()
        .args([
            "ingest",
            "--data-dir",
            lake_arg,
            "--batch-events",
            "5000",
            input_arg,
        ])
        .output()
        .expect("rerun");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM events"), n as i64);
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT event_id) AS n FROM events"),
        n as i64
    );
    let leftovers = walkdir_count(&lake, ".inprogress");
    assert_eq!(
        leftovers, 0,
        "temporary files are cleaned at the next start"
    );
}

#[test]
fn compact_merges_small_files_and_a_kill_midway_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("vault.log");
    let n = 60_000;
    big_vault_log(&input, n);
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_str().expect("utf-8");
    let out = run(&[
        "ingest",
        "--data-dir",
        lake_arg,
        "--batch-events",
        "1000",
        input.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each piece of the input spreads its records over all 28 days, so
    // every day is committed several times.
    let small_files = walkdir_count(&lake.join("events"), ".parquet");
    assert!(small_files >= 28 * 4, "{small_files} files");

    let dry = run(&["compact", "--dry-run", "--data-dir", lake_arg]);
    assert!(dry.status.success());
    assert!(
        stdout(&dry).contains(&format!("would merge {small_files} files in 28 partitions")),
        "{}",
        stdout(&dry)
    );
    assert_eq!(walkdir_count(&lake.join("events"), ".parquet"), small_files);

    // Kill once a partition's journal shows a merge under way, then a little
    // later each round, so the kills land in different phases of a merge
    // whatever the machine's speed.
    let journals = lake.join("compaction");
    let mut cut_short = 0;
    for round in 0..4u64 {
        let mut child = pipewatch()
            .args(["compact", "--data-dir", lake_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn compact");
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while walkdir_count(&journals, ".json") == 0
            && child.try_wait().expect("poll compact").is_none()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(round * 7));
        let _ = child.kill(); // SIGKILL: no chance to clean up
        let _ = child.wait();
        if walkdir_count(&journals, ".json") > 0 {
            cut_short += 1;
        }
    }
    assert!(
        cut_short > 0,
        "no kill landed mid-compaction; the test proved nothing"
    );

    let out = run(&["compact", "--data-dir", lake_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remaining = walkdir_count(&lake.join("events"), ".parquet");
    assert_eq!(remaining, 28, "one file per day:\n{}", stdout(&out));
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM events"), n as i64);
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT event_id) AS n FROM events"),
        n as i64
    );
    assert_eq!(walkdir_count(&lake, ".inprogress"), 0);
    assert_eq!(walkdir_count(&lake.join("compaction"), ".json"), 0);

    let again = run(&["compact", "--data-dir", lake_arg]);
    assert!(
        stdout(&again).contains("nothing to compact"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn stdin_and_gzip_inputs_are_read_and_formats_can_be_forced() {
    use std::io::Write;
    let data = tempfile::tempdir().expect("temp dir");
    let lake = data.path().join("lake");
    let lake_arg = lake.to_str().expect("utf-8");
    let sample =
        std::fs::read(real_events().join("k8s-audit/create_secret.v1.json")).expect("sample");

    // `-` reads standard input.
    let mut child = pipewatch()
        .args(["ingest", "--data-dir", lake_arg, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&sample)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(stdout(&out).contains("k8s_audit"), "{}", stdout(&out));

    // A gzip file is decompressed by its magic bytes, whatever its name.
    let gz = data.path().join("vault.bin");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(
            &std::fs::read(real_events().join("vault-audit/vault_audit.file-device.log"))
                .expect("vault"),
        )
        .expect("compress");
    std::fs::write(&gz, encoder.finish().expect("gzip")).expect("write gz");
    let out = run(&[
        "ingest",
        "--data-dir",
        lake_arg,
        "--format",
        "vault_audit",
        gz.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        count(
            &lake,
            "SELECT count(*) AS n FROM events WHERE source = 'vault_audit'"
        ) > 0
    );

    // An unknown --format is refused with the list of names.
    let out = run(&[
        "ingest",
        "--data-dir",
        lake_arg,
        "--format",
        "nope",
        gz.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("github_webhook"));
}

#[test]
fn formats_lists_every_decoder_with_an_example() {
    let out = run(&["formats"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for name in [
        "github_webhook",
        "github_audit",
        "gitlab",
        "vault_audit",
        "cloudtrail",
        "k8s_audit",
        "argocd",
        "otlp",
        "sarif",
        "conftest",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("example:"));
}

#[test]
fn demo_ingests_the_whole_organisation_without_a_dead_letter_answers_and_serves_the_dashboard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("demo");
    let (text, address, password, mut child) = support::demo::demo_serving(&lake);
    let session = support::demo::dashboard_session(&address, &password);
    let dashboard_page = support::demo::dashboard_page;
    let overview = dashboard_page(&session, &address, "/");
    assert!(overview.contains("Jobs on ephemeral runners"), "{overview}");
    assert!(overview.contains("<svg"), "trend charts are drawn");
    let alerts = dashboard_page(&session, &address, "/alerts?status=open&severity=high");
    assert!(alerts.contains("/alerts/"), "open high alerts are listed");
    // An alert shows its evidence events, found in the days they lie in.
    let alert_link = alerts
        .split("href=\"")
        .skip(1)
        .find(|s| s.starts_with("/alerts/") && !s.starts_with("/alerts/actions"))
        .and_then(|s| s.split('"').next())
        .expect("an alert link")
        .to_owned();
    let alert = dashboard_page(&session, &address, &alert_link);
    let evidence = alert
        .split("Evidence events")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_default();
    assert!(
        evidence.matches("<tr>").count() >= 2,
        "{alert_link} lists its evidence events: {alert}"
    );
    // Every page answers on real data, and each links to the next level.
    let repos = dashboard_page(&session, &address, "/repos");
    let repo_link = repos
        .split("href=\"")
        .skip(1)
        .find(|s| s.starts_with("/repo?name="))
        .and_then(|s| s.split('"').next())
        .expect("a repository link")
        .replace("&amp;", "&");
    let repo = dashboard_page(&session, &address, &repo_link);
    for section in [
        "Latest runs",
        "Runners",
        "Secrets touched",
        "Deployments",
        "Scanner findings",
        "Policy results",
    ] {
        assert!(repo.contains(section), "{repo_link} shows {section}");
    }
    assert!(repo.contains("<td>success</td>"), "{repo_link} lists runs");
    let secrets = dashboard_page(&session, &address, "/secrets");
    assert!(secrets.contains("via oidc"), "{secrets}");
    let secret_link = secrets
        .split("href=\"")
        .skip(1)
        .find(|s| s.starts_with("/secrets?name="))
        .and_then(|s| s.split('"').next())
        .expect("a secret link")
        .replace("&amp;", "&");
    let secret = dashboard_page(&session, &address, &secret_link);
    assert!(secret.contains("Who reads it") && secret.contains("From which runs"));
    let ingestion = dashboard_page(&session, &address, "/ingestion");
    assert!(
        ingestion.contains("github_webhook") && ingestion.contains("<svg"),
        "{ingestion}"
    );
    let admin = dashboard_page(&session, &address, "/admin/users");
    assert!(admin.contains("<td>demo</td>"), "the demo user is an admin");
    let settings = dashboard_page(&session, &address, "/admin/settings");
    assert!(settings.contains("Daily rollups"), "{settings}");
    let console = dashboard_page(&session, &address, "/sql");
    let examples: Vec<String> = console
        .split("href=\"")
        .skip(1)
        .filter(|s| s.starts_with("/sql?q="))
        .filter_map(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect();
    assert!(examples.len() >= 5, "example investigations are offered");
    for example in &examples {
        let page = dashboard_page(&session, &address, example);
        assert!(!page.contains("class=\"error\""), "{example} runs: {page}");
        assert!(page.contains("row(s) in"), "{example}");
    }
    // Analysts' SQL clients reach the same lake over the PostgreSQL protocol.
    let conninfo = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("psql    psql \""))
        .and_then(|l| l.split('"').next())
        .expect("the demo prints how to connect with psql")
        .to_owned();
    let psql = Command::new("psql")
        .arg(format!("{conninfo} sslmode=disable"))
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM events"])
        .env("PGPASSWORD", &password)
        .output()
        .expect("psql runs (apt-get install postgresql-client)");
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let events: u64 = String::from_utf8_lossy(&psql.stdout)
        .trim()
        .parse()
        .expect("a count");
    assert!(events > 20_000, "psql sees the demo lake: {events}");
    // SIGTERM: the demo stops cleanly.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let status = child.0.wait().expect("demo exits");
    assert!(status.success(), "demo exit status {status}");
    let numbers = summary_row(&text, "total");
    assert!(numbers[1] > 20_000, "accepted: {text}");
    assert_eq!(numbers[3], 0, "every generated record decodes: {text}");
    assert!(text.contains("OIDC versus long-lived credentials"));
    // Every category the generator models is present, and times stay in the simulated period.
    let categories = sql(
        &lake,
        "SELECT DISTINCT category FROM events ORDER BY category",
    );
    assert!(categories.len() >= 9, "{categories:?}");
    let late = count(
        &lake,
        "SELECT count(*) AS n FROM events WHERE event_time > '2026-11-01T00:00:00Z'",
    );
    assert_eq!(late, 0, "events dated outside the demo period");
}

#[test]
fn a_truncated_gzip_file_keeps_what_was_read_and_the_next_file_still_lands() {
    use std::io::Write;
    let data = tempfile::tempdir().expect("temp dir");
    let lake = data.path().join("lake");
    let lake_arg = lake.to_str().expect("utf-8");
    // Several MiB of Vault audit lines, so the file is read in pieces.
    let lines: String = (0..30_000)
        .map(|i| {
            let line = serde_json::json!({
                "time": "2024-05-01T10:00:00Z", "type": "response",
                "auth": {"accessor": format!("hmac-sha256:{i:06}"), "display_name": "ci-runner"},
                "request": {"id": format!("req-{i}"), "path": "kv/data/app", "operation": "read"},
            });
            format!("{line}\n")
        })
        .collect();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(lines.as_bytes()).expect("compress");
    let compressed = encoder.finish().expect("gzip");
    let cut = data.path().join("cut.log.gz");
    std::fs::write(&cut, &compressed[..compressed.len() * 4 / 5]).expect("write");
    let good = real_events().join("vault-audit/vault_audit.file-device.log");

    let out = run(&[
        "ingest",
        "--data-dir",
        lake_arg,
        cut.to_str().expect("utf-8"),
        good.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cut.log.gz") && stderr.contains("bytes were stored"),
        "{stderr}"
    );
    let from_cut = count(
        &lake,
        "SELECT count(*) AS n FROM events WHERE source_event_id LIKE 'req-%'",
    );
    assert!(from_cut > 1_000 && from_cut < 30_000, "{from_cut} stored");
    assert!(
        count(&lake, "SELECT count(*) AS n FROM events") > from_cut,
        "the file after the truncated one landed"
    );
}
