//! Randomness and identifiers: the seeded generator, the few distributions
//! the model needs (normal, log-normal, Poisson), and identifiers in the
//! shapes the real systems use (UUIDs, git SHAs, HMAC-ed Vault values,
//! base64 audit document ids, numeric ids that grow with time).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The one random generator type used everywhere (seeded, portable).
pub(crate) type Rng = ChaCha8Rng;

/// A standard normal sample (Box-Muller).
pub(crate) fn normal(rng: &mut Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal sample with the given median and shape.
pub(crate) fn lognormal(rng: &mut Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// A Poisson sample (Knuth; the rates here are small).
pub(crate) fn poisson(rng: &mut Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= limit || k >= 200 {
            return k;
        }
        k += 1;
    }
}

/// True with probability `p`.
pub(crate) fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.random_bool(p.clamp(0.0, 1.0))
}

/// A uniformly chosen index below `len` (`len` must be positive).
pub(crate) fn index(rng: &mut Rng, len: usize) -> usize {
    rng.random_range(0..len.max(1))
}

/// A uniformly chosen element of a non-empty slice.
pub(crate) fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[index(rng, items.len())]
}

/// An integer in `lo..=hi`.
pub(crate) fn between(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    rng.random_range(lo..=hi.max(lo))
}

/// A uniform float in `lo..hi`.
pub(crate) fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    rng.random_range(lo..hi)
}

/// `n` random bytes as lower-case hex.
pub(crate) fn hex(rng: &mut Rng, n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rng.random::<u8>()).collect();
    hex::encode(bytes)
}

/// A random version-4 UUID.
pub(crate) fn uuid(rng: &mut Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// SHA-256 of a string, as hex.
pub(crate) fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// The value a Vault audit device writes for a sensitive string: a salted
/// HMAC, here a salted SHA-256 so equal inputs give equal outputs.
pub(crate) fn vault_hmac(input: &str) -> String {
    format!(
        "hmac-sha256:{}",
        sha256_hex(&format!("pipewatch-demo-salt:{input}"))
    )
}

/// GitHub's `hashed_token`: base64 of the SHA-256 of the token.
pub(crate) fn hashed_token(token: &str) -> String {
    base64(&Sha256::digest(token.as_bytes()), false, true)
}

/// A GitHub audit `_document_id`: 16 random bytes, base64url, unpadded.
pub(crate) fn document_id(rng: &mut Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    base64(&b, true, false)
}

/// Base64 (standard or URL-safe alphabet, with or without padding).
pub(crate) fn base64(bytes: &[u8], url_safe: bool, pad: bool) -> String {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let table = if url_safe { URL } else { STD };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(table[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// An upper-case alphanumeric string, as in AWS key ids (`AKIA…`, `ASIA…`).
pub(crate) fn aws_key(rng: &mut Rng, prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::from(prefix);
    while s.len() < 20 {
        s.push(char::from(*pick(rng, ALPHABET)));
    }
    s
}

/// Numeric ids that grow with time like GitHub's and GitLab's: a base, plus
/// a rate per second since the origin, plus jitter; never reused.
#[derive(Debug)]
pub(crate) struct IdSeq {
    base: u64,
    per_sec: u64,
    origin: DateTime<Utc>,
    used: BTreeSet<u64>,
}

impl IdSeq {
    pub(crate) fn new(base: u64, per_sec: u64, origin: DateTime<Utc>) -> Self {
        IdSeq {
            base,
            per_sec: per_sec.max(1),
            origin,
            used: BTreeSet::new(),
        }
    }

    /// The id of an object created at `at`.
    pub(crate) fn next(&mut self, rng: &mut Rng, at: DateTime<Utc>) -> u64 {
        let secs = u64::try_from((at - self.origin).num_seconds().max(0)).unwrap_or(0);
        let mut id = self.base + secs * self.per_sec + rng.random_range(0..self.per_sec);
        while !self.used.insert(id) {
            id += 1;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b"foobar", false, true), "Zm9vYmFy");
        assert_eq!(base64(b"fooba", false, true), "Zm9vYmE=");
        assert_eq!(base64(b"foob", false, true), "Zm9vYg==");
        assert_eq!(base64(b"foob", true, false), "Zm9vYg");
        assert_eq!(base64(&[0xfb, 0xff], true, false), "-_8");
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        use rand::SeedableRng;
        let mut rng = Rng::seed_from_u64(1);
        let id = uuid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
