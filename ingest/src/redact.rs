//! Redaction: secret values never reach the lake, the dead-letter store or
//! logs. Anything that looks like a credential is replaced by
//! `redacted:<rule>:<keyed hash>`, so the same secret still correlates
//! across events without being readable.

use std::path::Path;
use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use pipewatch_schema::{Event, SharedSeals};
use rand::RngCore;
use regex::{Regex, RegexSet};
use serde_json::Value;
use sha2::Sha256;

use crate::IngestError;

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "redaction.key";
/// Prefix of every replacement, so analysts can search for them.
pub const REDACTED_PREFIX: &str = "redacted:";

/// One detection rule: a name (shown in the replacement) and a pattern
/// whose capture group 1, when present, is the secret part.
struct Rule {
    name: &'static str,
    pattern: &'static str,
}

/// Ordered from most to least specific: the first rule that matches a span wins.
const RULES: &[Rule] = &[
    Rule {
        name: "private_key",
        pattern: r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY-----[\s\S]*?-----END[A-Z ]{0,40} PRIVATE KEY-----",
    },
    Rule {
        name: "github_token",
        pattern: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})\b",
    },
    Rule {
        name: "gitlab_token",
        pattern: r"\bglpat-[A-Za-z0-9_-]{20,}\b",
    },
    Rule {
        name: "slack_webhook",
        pattern: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+",
    },
    Rule {
        name: "slack_token",
        pattern: r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    },
    Rule {
        name: "jwt",
        pattern: r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    },
    Rule {
        name: "aws_access_key_id",
        pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
    },
    Rule {
        name: "aws_secret_access_key",
        pattern: r#"(?i)aws.{0,24}?(?:secret|sk)[a-z_ ]{0,16}["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})\b"#,
    },
    Rule {
        name: "secret_assignment",
        pattern: r#"(?i)\b[a-z0-9_.-]{0,32}?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|client[_-]?secret|private[_-]?key|credentials?|auth[_-]?token|session[_-]?token)[a-z0-9_-]{0,24}["']?\s*[:=]\s*["']?([^\s"'&,;}{]{8,})"#,
    },
];

/// JSON keys whose string values are secrets whatever they look like.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "secret_key",
    "secretaccesskey",
    "secret_access_key",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "api_key",
    "apikey",
    "private_key",
    "sessiontoken",
    "session_token",
    "webhook_url",
    "secretstring",
    "secret_string",
    "secretbinary",
];

/// Values a source already made safe, kept as they are (Vault HMACs them).
fn already_safe(value: &str) -> bool {
    value.starts_with("hmac-sha256:") || value.starts_with(REDACTED_PREFIX)
}

/// The byte after the closing quote of the JSON string whose content
/// starts at `from`, and whether the string holds escapes.
fn string_end(bytes: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut at = from;
    let mut escaped = false;
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes[found] == b'"' {
            return Some((found + 1, escaped));
        }
        escaped = true;
        at = found + 2;
    }
}

fn skip_whitespace(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|b| !b.is_ascii_whitespace()))
        .map_or(bytes.len(), |p| from + p)
}

/// Shannon entropy in bits per character.
fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut total = 0u32;
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    let total = f64::from(total);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

/// Whether a `secret_assignment` match spanning `start..value` is one
/// segment of a colon-delimited identifier rather than an assignment:
/// `system:serviceaccount:external-secrets:external-secrets` or
/// `arn:aws:secretsmanager:...:secret:prod/db` name a secret, they hold none.
/// It is when the match follows a `:` and its separator is a bare `:`,
/// with no quote or whitespace around it.
fn is_identifier_segment(text: &str, start: usize, value: usize) -> bool {
    let bytes = text.as_bytes();
    let follows_colon = start > 0 && bytes.get(start - 1) == Some(&b':');
    let bare_colon = value >= 2
        && bytes.get(value - 1) == Some(&b':')
        && bytes
            .get(value - 2)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    follows_colon && bare_colon
}

/// Literals at least one of which every rule's match contains, matched
/// case-insensitively: a string with none of them cannot hold a secret any
/// rule finds, so the regular expressions are skipped for it (most strings).
const TRIGGERS: &[&str] = &[
    "private key",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "hooks.slack.com",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxo-",
    "xoxs-",
    "xoxr-",
    "eyj",
    "akia",
    "asia",
    "abia",
    "acca",
    "aws",
    "passw",
    "pwd",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "access_key",
    "access-key",
    "private_key",
    "private-key",
    "credential",
];

/// Text at least this long is searched for trigger words with SIMD on a
/// lower-cased copy; shorter text goes through the automaton directly.
const PACKED_SEARCH_MIN_LEN: usize = 128;

/// Finds whether text holds any of a set of words, ignoring ASCII case.
struct TriggerWords {
    automaton: aho_corasick::AhoCorasick,
    /// The same words lower-cased, searched with SIMD (Teddy) where the CPU
    /// has it: several times faster than the automaton on long text, even
    /// with the copy that lower-cases it. `None` on CPUs without it.
    packed: Option<aho_corasick::packed::Searcher>,
}

impl TriggerWords {
    fn new<'a>(words: impl Iterator<Item = &'a str> + Clone) -> Result<Self, IngestError> {
        let automaton = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(words.clone())
            .map_err(|e| IngestError::Config(e.to_string()))?;
        let mut lower: Vec<String> = words.map(str::to_ascii_lowercase).collect();
        lower.sort();
        lower.dedup();
        let packed = aho_corasick::packed::Config::new()
            .builder()
            .extend(&lower)
            .build();
        Ok(TriggerWords { automaton, packed })
    }

    fn found_in(&self, text: &str) -> bool {
        match &self.packed {
            Some(packed) if text.len() >= PACKED_SEARCH_MIN_LEN => {
                thread_local! {
                    static LOWERED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                LOWERED.with_borrow_mut(|lowered| {
                    lowered.clear();
                    lowered.extend_from_slice(text.as_bytes());
                    lowered.make_ascii_lowercase();
                    packed.find(lowered.as_slice()).is_some()
                })
            }
            _ => self.automaton.is_match(text),
        }
    }
}

/// Replaces secrets in text and JSON with keyed hashes.
pub struct Redactor {
    key: Vec<u8>,
    triggers: TriggerWords,
    /// The triggers and every secret key: JSON text with none of them (and
    /// no `\u` escape to hide one) holds nothing to redact.
    json_triggers: TriggerWords,
    set: RegexSet,
    rules: Vec<(&'static str, Regex)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor with the given hashing key.
    pub fn with_key(key: Vec<u8>) -> Result<Self, IngestError> {
        let patterns: Vec<&str> = RULES.iter().map(|r| r.pattern).collect();
        let set = RegexSet::new(&patterns).map_err(|e| IngestError::Config(e.to_string()))?;
        let rules = RULES
            .iter()
            .map(|r| Regex::new(r.pattern).map(|re| (r.name, re)))
            .collect::<Result<_, _>>()
            .map_err(|e| IngestError::Config(e.to_string()))?;
        let triggers = TriggerWords::new(TRIGGERS.iter().copied())?;
        let json_triggers = TriggerWords::new(TRIGGERS.iter().chain(SECRET_KEYS).copied())?;
        Ok(Redactor {
            key,
            triggers,
            json_triggers,
            set,
            rules,
        })
    }

    /// The redactor of a data directory: its key is created on first use
    /// (random, owner-readable only) and kept, so hashes stay comparable
    /// across runs.
    pub fn for_data_dir(data_dir: &Path) -> Result<Self, IngestError> {
        let path = data_dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim())
                .map_err(|e| IngestError::Config(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(|e| IngestError::io(data_dir, e))?;
                let mut key = vec![0u8; 32];
                rand::rng().fill_bytes(&mut key);
                crate::lake::atomic_write(&path, hex::encode(&key).as_bytes())?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| IngestError::io(&path, e))?;
                }
                key
            }
            Err(e) => return Err(IngestError::io(&path, e)),
        };
        Self::with_key(key)
    }

    fn replacement(&self, rule: &str, secret: &str) -> String {
        // HMAC with a per-installation key: equal secrets give equal tokens,
        // and the token cannot be reversed or brute-forced without the key.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return format!("{REDACTED_PREFIX}{rule}"),
        };
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{REDACTED_PREFIX}{rule}:{}", hex::encode(&digest[..8]))
    }

    /// Redacts secrets inside free text. Returns `None` when nothing changed.
    pub fn redact_text(&self, text: &str) -> Option<String> {
        if text.len() < 8 || !self.triggers.found_in(text) {
            return None;
        }
        let matched = self.set.matches(text);
        if !matched.matched_any() {
            return None;
        }
        let mut out = text.to_owned();
        let mut changed = false;
        for (index, (name, regex)) in self.rules.iter().enumerate() {
            if !matched.matched(index) {
                continue;
            }
            let mut result = String::with_capacity(out.len());
            let mut last = 0;
            for caps in regex.captures_iter(&out) {
                let Some(whole) = caps.get(0) else { continue };
                let secret = caps.get(1).unwrap_or(whole);
                let value = secret.as_str();
                if already_safe(value) {
                    continue;
                }
                // Generic assignments must look random, so `password=changeme`
                // in a policy message stays readable while real secrets do not.
                if *name == "secret_assignment"
                    && (entropy(value) < 3.0
                        || is_identifier_segment(&out, whole.start(), secret.start()))
                {
                    continue;
                }
                result.push_str(&out[last..secret.start()]);
                result.push_str(&self.replacement(name, value));
                last = secret.end();
                changed = true;
            }
            result.push_str(&out[last..]);
            out = result;
        }
        changed.then_some(out)
    }

    /// Redacts a string in place.
    pub fn redact_string(&self, text: &mut String) {
        if let Some(clean) = self.redact_text(text) {
            *text = clean;
        }
    }

    /// Redacts every string in a JSON value, object keys included, and
    /// replaces whole values stored under secret-named keys.
    pub fn redact_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.redact_string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let renamed: Vec<(String, String)> = map
                    .keys()
                    .filter_map(|k| self.redact_text(k).map(|clean| (k.clone(), clean)))
                    .collect();
                for (old, new) in renamed {
                    if let Some(v) = map.remove(&old) {
                        map.insert(new, v);
                    }
                }
                for (key, v) in map.iter_mut() {
                    let secret_key = SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str());
                    match v {
                        Value::String(s) if secret_key && s.len() >= 8 && !already_safe(s) => {
                            *s = self.replacement("secret_field", s);
                        }
                        other => self.redact_json(other),
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// [`redact_json`](Self::redact_json) on JSON text, without building
    /// the tree: every string, keys included, is redacted where it stands,
    /// and strings stored under secret-named keys are replaced whole.
    /// Returns `None` when nothing changed. Text that turns out not to be
    /// JSON is redacted as free text rather than kept as it is.
    pub fn redact_json_text(&self, text: &str) -> Option<String> {
        // Escapes are the only way a trigger could hide from one scan of the
        // text. Looked for with a SIMD searcher: `str::contains` took 1.5 %
        // of ingest's CPU here.
        static UNICODE_ESCAPE: LazyLock<memchr::memmem::Finder<'static>> =
            LazyLock::new(|| memchr::memmem::Finder::new(b"\\u"));
        if UNICODE_ESCAPE.find(text.as_bytes()).is_none() && !self.json_triggers.found_in(text) {
            return None;
        }
        match self.redact_json_strings(text) {
            Some(redacted) => redacted,
            None => self.redact_text(text),
        }
    }

    /// The string-by-string pass of [`redact_json_text`](Self::redact_json_text);
    /// `None` when a string literal does not parse.
    fn redact_json_strings(&self, text: &str) -> Option<Option<String>> {
        let bytes = text.as_bytes();
        let mut out = String::new();
        let mut copied = 0;
        let mut at = 0;
        let mut secret_value_next = false;
        while let Some(found) = memchr::memchr(b'"', &bytes[at..]) {
            let start = at + found;
            let (end, escaped) = string_end(bytes, start + 1)?;
            let literal = &text[start..end];
            let content: std::borrow::Cow<'_, str> = if escaped {
                serde_json::from_str::<String>(literal).ok()?.into()
            } else {
                literal[1..literal.len() - 1].into()
            };
            let after = skip_whitespace(bytes, end);
            let replacement = if bytes.get(after) == Some(&b':') {
                let renamed = self.redact_text(&content);
                let key = renamed.as_deref().unwrap_or(&content);
                secret_value_next = SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
                    && bytes.get(skip_whitespace(bytes, after + 1)) == Some(&b'"');
                renamed
            } else if std::mem::take(&mut secret_value_next)
                && content.len() >= 8
                && !already_safe(&content)
            {
                Some(self.replacement("secret_field", &content))
            } else {
                self.redact_text(&content)
            };
            if let Some(clean) = replacement {
                out.push_str(&text[copied..start]);
                out.push_str(&Value::String(clean).to_string());
                copied = end;
            }
            at = end;
        }
        if copied == 0 {
            return Some(None);
        }
        out.push_str(&text[copied..]);
        Some(Some(out))
    }

    /// Redacts every text column and the raw record of an event, then
    /// seals the raw record as text: until its commit, the event holds the
    /// text rather than the much larger tree.
    pub fn redact_event(&self, event: &mut Event) {
        self.redact_event_sharing(event, &mut SharedSeals::default());
    }

    /// [`redact_event`](Self::redact_event) for one of several events whose
    /// native records share parts (the spans of a trace share its
    /// resource): `shared` carries each shared part's redaction to the next.
    pub fn redact_event_sharing(&self, event: &mut Event, shared: &mut SharedSeals) {
        if self.columns_may_hold_secrets(event) {
            event.for_each_text_mut(|s| self.redact_string(s));
        }
        event
            .raw
            .seal_sharing(shared, |text| self.redact_json_text(text));
    }

    /// Whether any text column of the event holds a trigger word, found
    /// with one search over all of them joined by newlines (no trigger
    /// holds one, so no match can span two columns) instead of one per
    /// column: most events hold none.
    fn columns_may_hold_secrets(&self, event: &mut Event) -> bool {
        thread_local! {
            static JOINED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        JOINED.with_borrow_mut(|joined| {
            joined.clear();
            event.for_each_text_mut(|s| {
                joined.push_str(s);
                joined.push('\n');
            });
            self.triggers.found_in(joined)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::with_key(b"test-key".to_vec()).expect("rules compile")
    }

    #[test]
    fn a_secret_spelled_with_unicode_escapes_is_still_redacted() {
        let r = redactor();
        let secret = "Zq8rT2vLm9Xc4Wb7";
        // "password" and "ghp_" written with \u escapes hold no trigger as typed.
        // Long enough for the SIMD search as well as the automaton.
        let filler = "a build of the billing worker ".repeat(8);
        let hidden_key = format!(r#"{{"about": "{filler}", "p\u0061ssword": "{secret}"}}"#);
        assert!(hidden_key.len() >= PACKED_SEARCH_MIN_LEN);
        let redacted = r.redact_json_text(&hidden_key).expect("redacted");
        assert!(!redacted.contains(secret), "{redacted}");
        assert!(redacted.contains("redacted:secret_field:"), "{redacted}");

        let token = "0123456789abcdefghijABCDEFGHIJ012345";
        let hidden_token = format!(r#"{{"note": "gh\u0070_{token}"}}"#);
        let redacted = r.redact_json_text(&hidden_token).expect("redacted");
        assert!(!redacted.contains(token), "{redacted}");
        assert!(redacted.contains("redacted:github_token:"), "{redacted}");

        // The escape alone changes nothing.
        assert_eq!(r.redact_json_text(r#"{"name": "caf\u00e9 build"}"#), None);
    }

    #[test]
    fn text_that_is_not_json_after_all_is_redacted_as_free_text() {
        let r = redactor();
        let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        // `\x` is no JSON escape, so the first string literal does not parse.
        let broken = format!(r#"{{"a": "bad \x escape", "b": "{token}"}}"#);
        let clean = r.redact_json_text(&broken).expect("redacted");
        assert!(!clean.contains(token), "{clean}");
        assert!(clean.contains("redacted:github_token:"));
    }

    #[test]
    fn known_credential_shapes_are_replaced_and_correlate() {
        let r = redactor();
        let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let a = r
            .redact_text(&format!("cloned with {token}"))
            .expect("redacted");
        let b = r
            .redact_text(&format!("token {token} again"))
            .expect("redacted");
        assert!(!a.contains(token) && !b.contains(token));
        let tag = a.split_whitespace().last().expect("tag").to_owned();
        assert!(tag.starts_with("redacted:github_token:"));
        assert!(b.contains(&tag), "same secret, same replacement");
    }

    #[test]
    fn a_secret_in_any_column_is_found_by_the_joined_search() {
        assert!(
            TRIGGERS
                .iter()
                .chain(SECRET_KEYS)
                .all(|t| !t.contains('\n')),
            "columns are joined by newlines, so no trigger may hold one"
        );
        let r = redactor();
        let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let fresh = || {
            pipewatch_schema::Event::new(
                "test",
                "e-1",
                chrono::Utc::now(),
                pipewatch_schema::Category::PipelineJob,
                "job",
                serde_json::json!({"note": "nothing here"}),
            )
        };
        let mut clean = fresh();
        clean.repo = Some("acme/web".into());
        r.redact_event(&mut clean);
        assert_eq!(clean.repo.as_deref(), Some("acme/web"));
        assert_eq!(clean.action, "job");

        let mut in_label = fresh();
        in_label.repo = Some("acme/web".into());
        in_label.cicd_worker_labels = vec!["linux".into(), format!("token {token}")];
        r.redact_event(&mut in_label);
        assert!(!in_label.cicd_worker_labels[1].contains(token));
        assert_eq!(in_label.cicd_worker_labels[0], "linux");

        let mut first = fresh();
        first.action = format!("push {token}");
        r.redact_event(&mut first);
        assert!(!first.action.contains(token), "{}", first.action);
    }

    #[test]
    fn every_rule_has_a_trigger_literal() {
        // A rule whose matches can avoid every trigger would be skipped silently.
        let r = redactor();
        for sample in [
            "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----",
            "ghs_0123456789abcdefghijABCDEFGHIJ012345",
            "github_pat_0123456789abcdefghijAB",
            "glpat-0123456789abcdefghij",
            "https://hooks.slack.com/services/T000/B000/XXXX",
            "xoxp-0123456789-abcdef",
            "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJlMTIz",
            "ASIAABCDEFGHIJKLMNOP",
            "AWS_SECRET=abcdefghijABCDEFGHIJ0123456789abcdefghij",
            "DB_PWD=Zq8xW3vR7tY2uP9s",
            "Credentials: Zq8xW3vR7tY2uP9s",
        ] {
            assert!(r.redact_text(sample).is_some(), "{sample} not redacted");
        }
    }

    #[test]
    fn vault_hmacs_and_ordinary_ids_are_kept() {
        let r = redactor();
        for keep in [
            "hmac-sha256:9cc3baa3c2bd7a4b233ca1fdcf69df91c8f2a9f14ddda54a4039190f581dd327",
            "6077d805b0fc49f65e6dbaefc1c5c4bb1b6e4bf2",
            "e4f5c67a-6f7e-789d-ae56-a1fe3ae23046",
            "password=changeme",
        ] {
            assert_eq!(r.redact_text(keep), None, "{keep} should stay");
        }
    }

    #[test]
    fn trigger_words_are_found_in_long_text_in_any_case() {
        let words = TriggerWords::new(TRIGGERS.iter().chain(SECRET_KEYS).copied())
            .expect("trigger words build");
        let filler = "{\"name\":\"build and deploy\",\"status\":\"completed\"} ".repeat(8);
        assert!(filler.len() >= PACKED_SEARCH_MIN_LEN);
        assert!(!words.found_in(&filler));
        for word in TRIGGERS.iter().chain(SECRET_KEYS) {
            let mixed: String = word
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for text in [
                format!("{filler}{mixed}"),
                format!("{mixed}{filler}"),
                format!("{filler}{mixed}{filler}"),
                mixed.clone(),
            ] {
                assert!(
                    words.found_in(&text),
                    "{mixed} not found in {} bytes",
                    text.len()
                );
            }
        }
    }

    #[test]
    fn identities_and_resource_names_that_mention_secrets_are_kept() {
        let r = redactor();
        for keep in [
            "system:serviceaccount:external-secrets:external-secrets",
            "system:serviceaccount:vault-secrets:token-reviewer-x9Qz",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-credentials-Ab3xZ9",
        ] {
            assert_eq!(r.redact_text(keep), None, "{keep} should stay");
        }
        // The same words in assignment form are still secrets.
        for secret in [
            "password:Xk9mQ2vL7pR4",
            "login with token: Xk9mQ2vL7pR4",
            "client_secret=Xk9mQ2vL7pR4",
            "api_key:\"Xk9mQ2vL7pR4\"",
            "cfg:password:Xk9mQ2vL7pR4 \"password\":\"Yk9mQ2vL7pR4\"",
        ] {
            let clean = r.redact_text(secret).unwrap_or_default();
            assert!(
                clean.contains("redacted:secret_assignment:"),
                "{secret} -> {clean}"
            );
            assert!(!clean.contains("Yk9mQ2vL7pR4"), "{secret} -> {clean}");
        }
    }

    #[test]
    fn secret_named_json_fields_are_replaced() {
        let r = redactor();
        let mut v = serde_json::json!({"data": {"password": "Tr0ub4dor&3xyz"}, "token_ttl": 3600});
        r.redact_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("Tr0ub4dor"));
        assert!(text.contains("redacted:secret_field:"));
        assert!(text.contains("3600"));
    }
}
