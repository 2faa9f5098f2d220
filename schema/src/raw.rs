//! The native record an event keeps beside its normalized columns. Decoders
//! build it as a JSON tree; once redacted it is held as its JSON text,
//! a fraction of the tree's memory while it waits for a commit.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A native record: a JSON tree until it is sealed, its JSON text after.
#[derive(Debug, Clone)]
pub struct Raw(Form);

#[derive(Debug, Clone)]
enum Form {
    Tree(Value),
    /// Only [`Raw::seal`] makes this form, so the text has been through
    /// the function it was given (the redactor).
    Sealed(Box<RawValue>),
}

impl Raw {
    /// Whether the record is a JSON object, sealed or not.
    pub fn is_object(&self) -> bool {
        match &self.0 {
            Form::Tree(value) => value.is_object(),
            Form::Sealed(text) => text.get().starts_with('{'),
        }
    }

    /// Applies `rewrite` to the tree (read back from the text if the record
    /// was sealed before), then keeps only the tree's JSON text.
    pub fn seal(&mut self, rewrite: impl FnOnce(&mut Value)) {
        let mut tree = match &mut self.0 {
            Form::Tree(value) => std::mem::take(value),
            Form::Sealed(_) => self.to_value(),
        };
        rewrite(&mut tree);
        self.0 = match serde_json::value::to_raw_value(&tree) {
            Ok(text) => Form::Sealed(text),
            Err(_) => Form::Tree(tree),
        };
    }

    /// The record as JSON text.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Form::Tree(value) => Cow::Owned(value.to_string()),
            Form::Sealed(text) => Cow::Borrowed(text.get()),
        }
    }

    /// The record as a tree, read back from the text if it was sealed.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Form::Tree(value) => value.clone(),
            // The text was written from a tree, so it reads back.
            Form::Sealed(text) => serde_json::from_str(text.get()).unwrap_or(Value::Null),
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
            Form::Sealed(_) => &self.to_value() == other,
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
            Form::Sealed(text) => text.serialize(serializer),
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
        raw.seal(|tree| tree["token"] = json!("hidden"));
        assert!(matches!(raw.0, Form::Sealed(_)));
        assert!(raw.is_object());
        assert_eq!(raw, json!({"n": 1, "token": "hidden"}));
        assert!(!raw.json().contains("s3cret"));
        assert_eq!(
            serde_json::to_value(&raw).expect("serializes"),
            json!({"n": 1, "token": "hidden"})
        );
        // Sealing again rewrites the text's tree.
        raw.seal(|tree| tree["n"] = json!(2));
        assert_eq!(raw, json!({"n": 2, "token": "hidden"}));
    }
}
