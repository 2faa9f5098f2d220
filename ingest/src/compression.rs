//! Transparent gzip: CloudTrail delivers `.json.gz`, OPA uploads gzip
//! bodies, and people pipe compressed logs. Detected by magic bytes.

use std::io::{BufRead, BufReader, Read};

/// The gzip magic number.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether the bytes start a gzip stream.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Reads `stored` decompressed (all members) when it starts as gzip, else
/// as it is.
pub fn gunzip_stream_if_needed<'a>(stored: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut stored = BufReader::with_capacity(1 << 16, stored);
    if is_gzip(stored.fill_buf()?) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(stored)))
    } else {
        Ok(Box::new(stored))
    }
}
