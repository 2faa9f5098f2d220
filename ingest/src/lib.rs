//! # pipewatch-ingest
//!
//! Everything between a native event and a committed row in the lake:
//! one decoder per native format ([`decoders`]), redaction of secret
//! values ([`redact`]), the dead-letter store ([`dead_letter`]), and the
//! Parquet lake writer with atomic commits ([`lake`]).
//!
//! ```text
//! bytes ─> decoders::decode ─> Event ─> redact ─> lake::LakeWriter ─> events/category=…/date=…/….parquet
//!              └─ bad record ─> DeadLetter ─> redact ─> dead-letter/….ndjson
//! ```

pub mod compression;
pub mod dead_letter;
pub mod decoders;

pub use dead_letter::{DeadLetter, DeadLetterReason};
pub use decoders::{DecodeOutput, Decoder, Format, Input, Position};
