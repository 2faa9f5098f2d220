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
            Format::from_name("k8s_policy").unwrap_or(Format::Sarif),
            input,
            Position::Whole,
            DeadLetterReason::UnknownShape,
            "decoder not available",
            input.bytes,
        );
    }
}
