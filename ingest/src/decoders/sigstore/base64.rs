//! Base64 as Sigstore bundles write it: protobuf JSON emits the standard
//! alphabet and accepts URL-safe, padding is optional, and PEM bodies are
//! wrapped at 64 columns.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Decodes `text` in either alphabet, ignoring ASCII whitespace.
pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&compact)
        .or_else(|_| URL_SAFE.decode(&compact))
        .ok()
}

/// The DER body of the first PEM block in `text`, if it is PEM.
pub(super) fn pem_body(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN ")?;
    let after_header = text.get(start..)?.find('\n')? + start + 1;
    let end = text.get(after_header..)?.find("-----END ")? + after_header;
    decode(text.get(after_header..end)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_padded_unpadded_and_url_safe_text() {
        assert_eq!(decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode("aGVs\nbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(decode("-_8=").as_deref(), Some(&[0xFB, 0xFF][..]));
        assert_eq!(decode(""), Some(Vec::new()));
        assert_eq!(decode("a"), None);
        assert_eq!(decode("aGVs*G8="), None);
    }

    #[test]
    fn reads_pem_bodies() {
        let pem = "-----BEGIN CERTIFICATE-----\naGVs\nbG8=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_body(pem).as_deref(), Some(&b"hello"[..]));
        assert_eq!(pem_body("aGVsbG8="), None);
    }
}
