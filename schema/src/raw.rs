//! The native record an event keeps beside its normalized columns: the
//! JSON tree a decoder built, or the record's own JSON text as it was read;
//! once redacted it is held as JSON text until the commit.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A native record: a JSON tree or text until it is sealed, its JSON text after.
#[derive(Debug, Clone)]
pub struct Raw(Form);

#[derive(Debug, Clone)]
enum Form {
    Tree(Value),
    /// Text a JSON parser accepted or a serializer wrote; not yet redacted.
    Read(Box<str>),
    /// Only [`Raw::seal`] makes this form, so the text has been through
    /// the function it was given (the redactor).
    Sealed(Box<str>),
}

impl Raw {
    /// A record kept as JSON text that a JSON parser accepted or a JSON
    /// serializer wrote: no tree is built or copied for it.
    pub fn from_parsed_text(text: impl Into<Box<str>>) -> Self {
        Raw(Form::Read(text.into()))
    }

    /// Whether the record is a JSON object.
    pub fn is_object(&self) -> bool {
        match &self.0 {
            Form::Tree(value) => value.is_object(),
            Form::Read(text) | Form::Sealed(text) => text.trim_start().starts_with('{'),
        }
    }

    /// Passes the record's JSON text through `rewrite` (which returns the
    /// new text, or `None` to keep it) and keeps the result as text.
    /// `rewrite` must return JSON.
    pub fn seal(&mut self, rewrite: impl FnOnce(&str) -> Option<String>) {
        let text: Box<str> = match std::mem::replace(&mut self.0, Form::Tree(Value::Null)) {
            Form::Tree(value) => value.to_string().into(),
            Form::Read(text) | Form::Sealed(text) => text,
        };
        let sealed = rewrite(&text).map_or(text, String::into_boxed_str);
        self.0 = Form::Sealed(sealed);
    }

    /// The record as JSON text.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Form::Tree(value) => Cow::Owned(value.to_string()),
            Form::Read(text) | Form::Sealed(text) => Cow::Borrowed(text),
        }
    }

    /// The record as a JSON tree.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Form::Tree(value) => value.clone(),
            Form::Read(text) | Form::Sealed(text) => {
                serde_json::from_str(text).unwrap_or(Value::Null)
            }
        }
    }
}

impl From<Value> for Raw {
    fn from(value: Value) -> Self {
        Raw(Form::Tree(value))
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Form::Tree(a), Form::Tree(b)) => a == b,
            _ => self.to_value() == other.to_value(),
        }
    }
}

impl PartialEq<Value> for Raw {
    fn eq(&self, other: &Value) -> bool {
        match &self.0 {
            Form::Tree(value) => value == other,
            Form::Read(_) | Form::Sealed(_) => &self.to_value() == other,
        }
    }
}

impl std::fmt::Display for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.json())
    }
}

impl Serialize for Raw {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Form::Tree(value) => value.serialize(serializer),
            Form::Read(text) | Form::Sealed(text) => RawValue::from_string(text.to_string())
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Raw::from)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_sealed_record_keeps_what_the_rewrite_left_and_reads_back() {
        let mut raw = Raw::from(json!({"token": "s3cret", "n": 1}));
        raw.seal(|text| Some(text.replace("s3cret", "hidden")));
        assert!(matches!(raw.0, Form::Sealed(_)));
        assert!(raw.is_object());
        assert_eq!(raw, json!({"n": 1, "token": "hidden"}));
        assert!(!raw.json().contains("s3cret"));
        assert_eq!(
            serde_json::to_value(&raw).expect("serializes"),
            json!({"n": 1, "token": "hidden"})
        );
        // Sealing again rewrites the text's tree.
        raw.seal(|text| Some(text.replace("\"n\":1", "\"n\":2")));
        assert_eq!(raw, json!({"n": 2, "token": "hidden"}));
    }

    #[test]
    fn a_record_read_as_text_keeps_its_text_until_sealed() {
        let text = r#"{"z": 1, "a": "s3cret"}"#;
        let mut raw = Raw::from_parsed_text(text);
        assert!(raw.is_object());
        assert_eq!(raw.json(), text);
        assert_eq!(raw, json!({"a": "s3cret", "z": 1}));
        raw.seal(|_| None);
        assert!(matches!(raw.0, Form::Sealed(_)));
        assert_eq!(raw.json(), text);
        assert_eq!(
            serde_json::to_string(&raw).expect("serializes"),
            r#"{"z": 1, "a": "s3cret"}"#
        );
    }
}
