//! Placeholder decoder, replaced by the real one.

use serde_json::Value;

use super::{DecodeOutput, Decoder, Format, Input, Position};
use crate::dead_letter::DeadLetterReason;

#[derive(Debug)]
pub(crate) struct Native;

pub(crate) static DECODER: Native = Native;

impl Decoder for Native {
    fn sniff(&self, _record: &Value) -> bool {
        false
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        out.reject(
            Format::from_name("otlp").unwrap_or(Format::Sarif),
            input,
            Position::Whole,
            DeadLetterReason::UnknownShape,
            "decoder not available",
            input.bytes,
        );
    }
}

/// First span of a console-exporter dump, for detection.
pub(crate) fn console_dump_first_record(_body: &[u8]) -> Option<Value> {
    None
}
