//! The native record an event keeps beside its normalized columns: the
//! JSON tree a decoder built, the record's own JSON text as it was read, or
//! JSON values set in a fixed frame; once redacted it is held as text.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

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
    Framed(Framed),
}

/// JSON values written into a fixed frame: `frame[0] values[0] frame[1] …
/// values[n-1] frame[n]`. Values may be shared with other records (the
/// resource every span of a trace carries), so a record costs its own
/// value's text, not a copy of the shared ones.
#[derive(Debug, Clone)]
struct Framed {
    frame: &'static [&'static str],
    values: Box<[Arc<str>]>,
}

impl Framed {
    fn pieces(&self) -> impl Iterator<Item = &str> {
        let values = self.values.iter().map(|v| &**v).chain([""]);
        self.frame
            .iter()
            .copied()
            .zip(values)
            .flat_map(|(f, v)| [f, v])
    }
}

/// Framed values that [`Raw::seal_sharing`] has already rewritten, so that a
/// value several records share is rewritten once. It remembers the last few
/// by identity, which is enough for records that arrive grouped (the spans
/// of one request).
#[derive(Debug, Default)]
pub struct SharedSeals {
    /// (value as read, value as rewritten), most recent last.
    recent: Vec<(Arc<str>, Arc<str>)>,
}

impl SharedSeals {
    const REMEMBERED: usize = 8;

    fn seal(
        &mut self,
        value: &Arc<str>,
        rewrite: &mut impl FnMut(&str) -> Option<String>,
    ) -> Arc<str> {
        if let Some((_, sealed)) = self
            .recent
            .iter()
            .find(|(read, _)| Arc::ptr_eq(read, value))
        {
            return Arc::clone(sealed);
        }
        let sealed: Arc<str> = rewrite(value).map_or_else(|| Arc::clone(value), Arc::from);
        // Only shared values are worth remembering; holding the value as
        // read keeps its address from being reused by another while remembered.
        if Arc::strong_count(value) > 1 {
            if self.recent.len() == Self::REMEMBERED {
                self.recent.remove(0);
            }
            self.recent.push((Arc::clone(value), Arc::clone(&sealed)));
        }
        sealed
    }
}

impl Raw {
    /// A record kept as JSON text that a JSON parser accepted or a JSON
    /// serializer wrote: no tree is built or copied for it.
    pub fn from_parsed_text(text: impl Into<Box<str>>) -> Self {
        Raw(Form::Read(text.into()))
    }

    /// A record written as JSON `values` set in a fixed `frame` of JSON
    /// syntax: `frame[0] values[0] frame[1] … frame[n]`. Each value must be
    /// JSON text a parser accepted or a serializer wrote, and the frame must
    /// hold one piece more than there are values.
    pub fn framed(frame: &'static [&'static str], values: impl Into<Box<[Arc<str>]>>) -> Self {
        Raw(Form::Framed(Framed {
            frame,
            values: values.into(),
        }))
    }

    /// Whether the record is a JSON object.
    pub fn is_object(&self) -> bool {
        match &self.0 {
            Form::Tree(value) => value.is_object(),
            Form::Read(text) | Form::Sealed(text) => text.trim_start().starts_with('{'),
            Form::Framed(framed) => framed
                .pieces()
                .map(str::trim_start)
                .find(|p| !p.is_empty())
                .is_some_and(|p| p.starts_with('{')),
        }
    }

    /// Passes the record's JSON text through `rewrite` (which returns the
    /// new text, or `None` to keep it) and keeps the result as text.
    /// `rewrite` must return JSON. A framed record's values are rewritten
    /// one by one and the frame is kept.
    pub fn seal(&mut self, rewrite: impl FnMut(&str) -> Option<String>) {
        self.seal_sharing(&mut SharedSeals::default(), rewrite);
    }

    /// [`seal`](Self::seal), rewriting a framed value that other records
    /// share only once while `shared` remembers it.
    pub fn seal_sharing(
        &mut self,
        shared: &mut SharedSeals,
        mut rewrite: impl FnMut(&str) -> Option<String>,
    ) {
        let text: Box<str> = match std::mem::replace(&mut self.0, Form::Tree(Value::Null)) {
            Form::Tree(value) => value.to_string().into(),
            Form::Read(text) | Form::Sealed(text) => text,
            Form::Framed(mut framed) => {
                for value in framed.values.iter_mut() {
                    *value = shared.seal(value, &mut rewrite);
                }
                self.0 = Form::Framed(framed);
                return;
            }
        };
        let sealed = rewrite(&text).map_or(text, String::into_boxed_str);
        self.0 = Form::Sealed(sealed);
    }

    /// The record as JSON text.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Form::Tree(value) => Cow::Owned(value.to_string()),
            Form::Read(text) | Form::Sealed(text) => Cow::Borrowed(text),
            Form::Framed(framed) => Cow::Owned(framed.pieces().collect()),
        }
    }

    /// Length in bytes of the record's JSON text.
    pub fn json_len(&self) -> usize {
        match &self.0 {
            Form::Tree(value) => value.to_string().len(),
            Form::Read(text) | Form::Sealed(text) => text.len(),
            Form::Framed(framed) => framed.pieces().map(str::len).sum(),
        }
    }

    /// Writes the record's JSON text to `out` without building it first.
    pub fn write_json(&self, out: &mut impl Write) -> std::fmt::Result {
        match &self.0 {
            Form::Tree(value) => write!(out, "{value}"),
            Form::Read(text) | Form::Sealed(text) => out.write_str(text),
            Form::Framed(framed) => framed.pieces().try_for_each(|p| out.write_str(p)),
        }
    }

    /// The record as a JSON tree.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Form::Tree(value) => value.clone(),
            Form::Read(text) | Form::Sealed(text) => {
                serde_json::from_str(text).unwrap_or(Value::Null)
            }
            Form::Framed(_) => serde_json::from_str(&self.json()).unwrap_or(Value::Null),
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
            Form::Read(_) | Form::Sealed(_) | Form::Framed(_) => &self.to_value() == other,
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
            Form::Read(_) | Form::Sealed(_) | Form::Framed(_) => {
                RawValue::from_string(self.json().into_owned())
                    .map_err(serde::ser::Error::custom)?
                    .serialize(serializer)
            }
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

    const FRAME: &[&str] = &[r#"{"shared":"#, r#","own":"#, "}"];

    #[test]
    fn a_framed_record_reads_as_its_joined_text_and_seals_value_by_value() {
        let shared: Arc<str> = Arc::from(r#"{"token":"s3cret"}"#);
        let records = |own: &[&str]| -> Vec<Raw> {
            own.iter()
                .map(|o| Raw::framed(FRAME, [Arc::clone(&shared), Arc::from(*o)]))
                .collect()
        };
        let mut raws = records(&["1", r#""s3cret too""#, "[3]"]);
        assert_eq!(raws[0].json(), r#"{"shared":{"token":"s3cret"},"own":1}"#);
        assert_eq!(raws[1].json_len(), raws[1].json().len());
        assert!(raws[2].is_object());
        assert_eq!(raws[2], json!({"shared": {"token": "s3cret"}, "own": [3]}));
        let mut written = String::new();
        raws[2].write_json(&mut written).expect("written");
        assert_eq!(written, raws[2].json());

        let mut seen = Vec::new();
        let mut memo = SharedSeals::default();
        for raw in &mut raws {
            raw.seal_sharing(&mut memo, |text| {
                seen.push(text.to_owned());
                text.contains("s3cret")
                    .then(|| text.replace("s3cret", "hidden"))
            });
        }
        // The shared value is rewritten once; each record's own value once.
        assert_eq!(
            seen.iter().filter(|t| t.contains("token")).count(),
            1,
            "{seen:?}"
        );
        assert_eq!(seen.len(), 4, "{seen:?}");
        for raw in &raws {
            assert!(!raw.json().contains("s3cret"), "{raw}");
        }
        assert_eq!(
            serde_json::to_string(&raws[1]).expect("serializes"),
            r#"{"shared":{"token":"hidden"},"own":"hidden too"}"#
        );
        // Without a memo every record rewrites its values itself.
        let mut alone = records(&["1"]);
        alone[0].seal(|text| Some(text.replace("s3cret", "gone")));
        assert_eq!(alone[0].json(), r#"{"shared":{"token":"gone"},"own":1}"#);
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
