//! Secrets named in configuration by where they live (`env:NAME`,
//! `file:/path`), never by value, and the constant-time checks of webhook
//! signatures and tokens against them.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::IngestError;

/// Where a secret is read from. Literal values are refused so that a
/// configuration file can be reviewed and shared without leaking one.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct SecretRef {
    location: Location,
}

#[derive(Clone, PartialEq, Eq)]
enum Location {
    Env(String),
    File(std::path::PathBuf),
}

impl TryFrom<String> for SecretRef {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("env:").filter(|n| !n.is_empty()) {
            return Ok(SecretRef {
                location: Location::Env(name.to_owned()),
            });
        }
        if let Some(path) = text.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Ok(SecretRef {
                location: Location::File(path.into()),
            });
        }
        Err("a secret is named as `env:VARIABLE` or `file:/path/to/secret`, never written in the configuration".into())
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Env(name) => write!(f, "env:{name}"),
            Location::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl SecretRef {
    /// Reads the secret. Surrounding whitespace (a file's final newline) is
    /// not part of it; an empty secret is refused.
    pub fn resolve(&self) -> Result<Secret, IngestError> {
        let value = match &self.location {
            Location::Env(name) => std::env::var(name).map_err(|_| {
                IngestError::Config(format!("the environment variable {name} is not set"))
            })?,
            Location::File(path) => {
                std::fs::read_to_string(path).map_err(|e| IngestError::io(path, e))?
            }
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(IngestError::Config(format!(
                "the secret in {self} is empty"
            )));
        }
        Ok(Secret(value.as_bytes().to_vec()))
    }
}

/// A resolved secret. Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its bytes (tests, tokens created at run time).
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Secret(value.into())
    }

    /// The secret as text, for client libraries that take it so
    /// (`sasl.password`). Secrets are read from text, so this is lossless.
    pub fn expose_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Resolves every reference, naming the first that fails.
pub fn resolve_all(refs: &[SecretRef]) -> Result<Vec<Secret>, IngestError> {
    refs.iter().map(SecretRef::resolve).collect()
}

/// Whether `given` equals one of `expected`. Compares digests in constant
/// time and checks every candidate, so neither the length nor which secret
/// matched shows in the timing.
pub fn token_matches(expected: &[Secret], given: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let mut matched = subtle::Choice::from(0);
    for secret in expected {
        matched |= Sha256::digest(&secret.0).ct_eq(&given);
    }
    bool::from(matched)
}

/// Why a GitHub signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("only sha256= signatures (X-Hub-Signature-256) are accepted")]
    WrongScheme,
    #[error("the signature is not 64 hexadecimal digits")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// A short label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::WrongScheme => "signature_scheme",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Checks GitHub's `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256 of
/// the raw body) against every configured secret (two during a rotation).
pub fn verify_github_signature(
    secrets: &[Secret],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::WrongScheme)?;
    let given = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if given.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut valid = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
            continue;
        };
        mac.update(body);
        // verify_slice compares in constant time.
        valid |= mac.verify_slice(&given).is_ok();
    }
    if valid {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn githubs_published_test_vector_passes() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let secret = [Secret::new("It's a Secret to Everybody")];
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_github_signature(&secret, b"Hello, World!", Some(header)),
            Ok(())
        );
        assert_eq!(
            verify_github_signature(&secret, b"Hello, World?", Some(header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn either_secret_of_a_rotation_is_accepted() {
        let secrets = [Secret::new("old"), Secret::new("new")];
        let body = br#"{"action":"completed"}"#;
        assert!(verify_github_signature(&secrets, body, Some(&sign(b"old", body))).is_ok());
        assert!(verify_github_signature(&secrets, body, Some(&sign(b"new", body))).is_ok());
        assert_eq!(
            verify_github_signature(&secrets, body, Some(&sign(b"other", body))),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_sha1_and_truncated_signatures_are_refused() {
        let secrets = [Secret::new("s")];
        let body = b"{}";
        let good = sign(b"s", body);
        assert_eq!(
            verify_github_signature(&secrets, body, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_github_signature(
                &secrets,
                body,
                Some("sha1=0123456789abcdef0123456789abcdef01234567")
            ),
            Err(SignatureError::WrongScheme)
        );
        assert_eq!(
            verify_github_signature(&secrets, body, Some(&good[..good.len() - 2])),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_github_signature(&[], body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tokens_match_only_exactly() {
        let tokens = [Secret::new("token-a"), Secret::new("token-b")];
        assert!(token_matches(&tokens, b"token-b"));
        assert!(!token_matches(&tokens, b"token-"));
        assert!(!token_matches(&tokens, b"token-bb"));
        assert!(!token_matches(&[], b""));
    }

    #[test]
    fn secrets_are_named_by_location_never_by_value() {
        let parsed: Result<SecretRef, _> = SecretRef::try_from("hunter2".to_owned());
        assert!(parsed.is_err());
        let from_env = SecretRef::try_from("env:PIPEWATCH_TEST_UNSET_SECRET_VAR".to_owned())
            .expect("env reference");
        let error = from_env.resolve().expect_err("unset variable");
        assert!(
            error
                .to_string()
                .contains("PIPEWATCH_TEST_UNSET_SECRET_VAR")
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").expect("write");
        let from_file =
            SecretRef::try_from(format!("file:{}", path.display())).expect("file reference");
        let secret = from_file.resolve().expect("readable");
        assert!(token_matches(std::slice::from_ref(&secret), b"s3cret"));
        assert_eq!(format!("{secret:?}"), "Secret(redacted)");
    }
}
