//! Secret values never reach the data directory: 1,000 generated secrets
//! of every supported shape, hidden in every kind of field (text columns,
//! worker labels, nested raw JSON, JSON keys, secret-named fields, bad
//! records), are ingested; afterwards no secret appears anywhere under the
//! data directory, in Parquet cells or in any other file. The false-positive
//! rate on git SHAs, UUIDs and ordinary base64 is measured and bounded.

use std::fs::File;
use std::path::Path;

use arrow_array::{Array, ListArray, StringArray};
use chrono::{TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipewatch_ingest::decoders::Position;
use pipewatch_ingest::{DeadLetter, DeadLetterReason, DeadLetterStore, LakeWriter, Redactor};
use pipewatch_schema::{Category, Event};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn pick(rng: &mut StdRng, alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// A secret of one of the supported shapes, with the text it hides in.
fn secret(rng: &mut StdRng, i: usize) -> (String, String) {
    let upper: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    match i % 10 {
        0 => {
            let s = format!("ghp_{}", pick(rng, ALNUM, 36));
            (
                s.clone(),
                format!("git clone https://x-access-token:{s}@github.com/acme/api"),
            )
        }
        1 => {
            let s = format!("github_pat_{}", pick(rng, ALNUM, 60));
            (s.clone(), format!("GH_TOKEN {s}"))
        }
        2 => {
            let s = format!("AKIA{}", pick(rng, upper, 16));
            (s.clone(), format!("used key {s} from runner"))
        }
        3 => {
            let s = pick(rng, BASE64, 40);
            (s.clone(), format!("aws_secret_access_key={s}"))
        }
        4 => {
            let s = format!("xoxb-{}-{}", pick(rng, ALNUM, 12), pick(rng, ALNUM, 24));
            (s.clone(), format!("slack {s}"))
        }
        5 => {
            let s = format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                pick(rng, upper, 8),
                pick(rng, upper, 8),
                pick(rng, ALNUM, 24)
            );
            (s.clone(), format!("notify {s} on failure"))
        }
        6 => {
            let s = format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----",
                pick(rng, BASE64, 64),
                pick(rng, BASE64, 32)
            );
            (s.clone(), format!("key file:\n{s}\n"))
        }
        7 => {
            let s = format!(
                "eyJ{}.eyJ{}.{}",
                pick(rng, ALNUM, 20),
                pick(rng, ALNUM, 40),
                pick(rng, ALNUM, 43)
            );
            (s.clone(), format!("Authorization: Bearer {s}"))
        }
        8 => {
            let s = pick(rng, ALNUM, 24);
            (s.clone(), format!("DB_PASSWORD={s} ./migrate"))
        }
        _ => {
            let s = format!("glpat-{}", pick(rng, ALNUM, 20));
            (s.clone(), format!("token {s}"))
        }
    }
}

fn event_with(i: usize, hidden: &str, secret: &str) -> Event {
    let time = Utc
        .timestamp_opt(1_760_000_000 + i as i64 * 60, 0)
        .single()
        .expect("time");
    // Every kind of field carries the secret somewhere across the 1,000 events.
    let raw = match i % 4 {
        0 => serde_json::json!({"step": {"run": hidden}}),
        1 => serde_json::json!({"env": [hidden, "ok"]}),
        2 => serde_json::json!({"inputs": {"password": secret}}),
        _ => serde_json::json!({ hidden: "value in a key" }),
    };
    let mut e = Event::new(
        "test",
        format!("id-{i}"),
        time,
        Category::PipelineJob,
        "job.completed",
        raw,
    );
    let text = hidden.to_owned();
    match i % 8 {
        0 => e.message = Some(text),
        1 => e.actor = Some(text),
        2 => e.target_name = Some(text),
        3 => e.url_full = Some(text),
        4 => e.cicd_worker_labels = vec!["linux".into(), text],
        5 => e.identity_id = Some(text),
        6 => e.code_location = Some(text),
        _ => e.cicd_pipeline_task_name = Some(text),
    }
    e
}

/// Every string stored in every Parquet file under `dir`, lists included.
fn parquet_strings(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walk");
        if entry.path().extension().is_none_or(|x| x != "parquet") {
            continue;
        }
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(entry.path()).expect("open"))
                .expect("parquet")
                .build()
                .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            for column in batch.columns() {
                if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
                    out.extend(strings.iter().flatten().map(str::to_owned));
                } else if let Some(list) = column.as_any().downcast_ref::<ListArray>() {
                    let values = list.values();
                    if let Some(strings) = values.as_any().downcast_ref::<StringArray>() {
                        out.extend(strings.iter().flatten().map(str::to_owned));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn a_thousand_secrets_never_reach_the_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redactor = Redactor::for_data_dir(dir.path()).expect("redactor");
    let mut rng = StdRng::seed_from_u64(42);
    let mut secrets = Vec::new();
    let mut events = Vec::new();
    let mut letters = Vec::new();
    for i in 0..1000 {
        let (secret, hidden) = secret(&mut rng, i);
        let mut event = event_with(i, &hidden, &secret);
        redactor.redact_event(&mut event);
        events.push(event);
        if i % 10 == 0 {
            // A malformed record holding a secret goes to the dead-letter store.
            let raw = format!("{{\"broken\": \"{hidden}\"");
            let mut letter = DeadLetter::new(
                "test",
                "input.ndjson",
                Position::Line(i + 1),
                DeadLetterReason::Syntax,
                format!("invalid JSON near {hidden}"),
                raw.as_bytes(),
            );
            redactor.redact_string(&mut letter.sample);
            redactor.redact_string(&mut letter.detail);
            letters.push(letter);
        }
        secrets.push(secret);
    }
    LakeWriter::open(dir.path())
        .expect("lake")
        .commit(events)
        .expect("commit");
    DeadLetterStore::open(dir.path())
        .store(&letters)
        .expect("dead letters");

    let cells = parquet_strings(dir.path());
    assert!(
        cells.len() >= 8_000,
        "the lake holds the events ({} cells)",
        cells.len()
    );
    let mut other_files = String::new();
    for entry in walkdir::WalkDir::new(dir.path()) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() && entry.path().extension().is_none_or(|x| x != "parquet") {
            other_files.push_str(&String::from_utf8_lossy(
                &std::fs::read(entry.path()).expect("read"),
            ));
        }
    }
    assert!(
        other_files.contains("invalid JSON near"),
        "dead letters were stored"
    );

    let mut leaked = Vec::new();
    for secret in &secrets {
        // Long secrets are checked by a distinctive slice too, so a partial leak fails.
        let probe = if secret.len() > 48 {
            &secret[secret.len() - 32..]
        } else {
            secret.as_str()
        };
        if cells.iter().any(|c| c.contains(probe)) || other_files.contains(probe) {
            leaked.push(secret.clone());
        }
    }
    assert!(
        leaked.is_empty(),
        "{} secrets leaked, e.g. {:?}",
        leaked.len(),
        leaked.first()
    );

    // Equal secrets still correlate: a secret hidden in a text column and in a
    // secret-named raw field gets the same keyed hash in both places.
    let hash_of = |text: &str| -> Option<String> {
        let at = text.find("redacted:")?;
        let token: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ':' || *c == '_')
            .collect();
        token.rsplit(':').next().map(str::to_owned)
    };
    let (s, hidden) = secret(&mut StdRng::seed_from_u64(1), 0);
    let mut twice = event_with(2, &hidden, &s);
    redactor.redact_event(&mut twice);
    let in_column = twice
        .target_name
        .as_deref()
        .and_then(hash_of)
        .expect("column redacted");
    let in_raw = hash_of(&twice.raw.to_string()).expect("raw redacted");
    assert_eq!(in_column, in_raw);
    assert!(cells.iter().any(|c| c.contains("redacted:github_token:")));
}

#[test]
fn json_text_is_redacted_as_its_tree_is() {
    let redactor = Redactor::with_key(b"text-test".to_vec()).expect("redactor");
    let mut rng = StdRng::seed_from_u64(11);
    let mut texts: Vec<String> = (0..1000)
        .map(|i| {
            let (secret, hidden) = secret(&mut rng, i);
            let raw = event_with(i, &hidden, &secret).raw.to_value();
            if i % 3 == 0 {
                serde_json::to_string_pretty(&raw).expect("JSON")
            } else {
                raw.to_string()
            }
        })
        .collect();
    texts.extend(
        [
            // Escapes hide nothing: a secret-named key and a token spelt with them.
            r#"{"\u0070assword": "hunter2hunter2", "msg": "\u0067hp_0123456789abcdefghijABCDEFGHIJ012345"}"#,
            r#"{"a": {"Token" : "s3cr3t-v4lue-xyz"}, "b": ["x", {"token": 12345678901}]}"#,
            r#"{"token": "short", "secret": "hmac-sha256:abcdef0123456789", "k\"ey": "v\\"}"#,
            r#"{"key": "-----BEGIN RSA PRIVATE KEY-----\nMIIabc\n-----END RSA PRIVATE KEY-----"}"#,
            r#"["api_key=Zx8Qw2Lp9Vt4Rb7Nc1Kd", {"webhook_url": "https://example.com/hook/abc"}]"#,
            r#"{"plain": "nothing here", "n": [1, 2.5, true, null]}"#,
        ]
        .map(str::to_owned),
    );
    let mut changed = 0;
    for text in &texts {
        let mut expected: serde_json::Value = serde_json::from_str(text).expect("JSON");
        redactor.redact_json(&mut expected);
        let via_text: serde_json::Value = match redactor.redact_json_text(text) {
            Some(clean) => {
                changed += 1;
                serde_json::from_str(&clean).expect("redacted text is JSON")
            }
            None => serde_json::from_str(text).expect("JSON"),
        };
        assert_eq!(via_text, expected, "{text}");
    }
    assert!(changed >= 1000, "{changed} texts changed");
}

#[test]
fn ordinary_identifiers_are_almost_never_redacted() {
    let redactor = Redactor::with_key(b"fp-test".to_vec()).expect("redactor");
    let mut rng = StdRng::seed_from_u64(7);
    let hex: &[u8] = b"0123456789abcdef";
    let mut samples = Vec::new();
    for _ in 0..3000 {
        samples.push(pick(&mut rng, hex, 40)); // git SHA
        let u = pick(&mut rng, hex, 32);
        samples.push(format!(
            "{}-{}-{}-{}-{}",
            &u[..8],
            &u[8..12],
            &u[12..16],
            &u[16..20],
            &u[20..]
        ));
        samples.push(format!("{}==", pick(&mut rng, BASE64, 30))); // ordinary base64 blob
        samples.push(format!("sha256:{}", pick(&mut rng, hex, 64))); // image digest
    }
    let redacted = samples
        .iter()
        .filter(|s| redactor.redact_text(s).is_some())
        .count();
    let rate = redacted as f64 / samples.len() as f64;
    println!(
        "false-positive rate: {redacted}/{} = {rate:.5}",
        samples.len()
    );
    assert!(
        rate <= 0.001,
        "false-positive rate {rate} over {} samples",
        samples.len()
    );
}
