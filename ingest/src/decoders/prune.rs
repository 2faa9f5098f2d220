//! Reading only the fields a decoder looks at: a record's JSON text is
//! parsed into a tree that keeps the declared fields and skips the rest
//! (still checked as JSON), so large payloads cost a scan, not a tree.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Which parts of a JSON value to keep.
#[derive(Debug)]
pub(crate) enum Keep {
    /// The whole value, however deep.
    All,
    /// Of an object, only these fields (each kept as its own `Keep` says);
    /// of an array, every element as this `Keep` says. Scalars are kept.
    Fields(&'static [(&'static str, Keep)]),
    /// Of an object, every field, the named ones kept as their own `Keep`
    /// says; of an array, every element likewise. Scalars are kept.
    Every(&'static [(&'static str, Keep)]),
}

/// Parses `text` keeping only what `keep` names. The tree answers every
/// lookup of a kept path as the whole tree would.
pub(crate) fn parse(text: &str, keep: &'static Keep) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    keep.deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| format!("invalid JSON: {e}"))
}

impl<'de> DeserializeSeed<'de> for &'static Keep {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Keep::All => serde::Deserialize::deserialize(deserializer),
            Keep::Fields(fields) => deserializer.deserialize_any(Pruning {
                fields,
                others: false,
            }),
            Keep::Every(fields) => deserializer.deserialize_any(Pruning {
                fields,
                others: true,
            }),
        }
    }
}

#[derive(Clone, Copy)]
struct Pruning {
    fields: &'static [(&'static str, Keep)],
    /// Whether fields not named are kept whole (else skipped).
    others: bool,
}

impl<'de> Visitor<'de> for Pruning {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(found) = map.next_key_seed(FieldIndex(self))? {
            match found {
                Field::Named(index) => {
                    let (name, keep) = &self.fields[index];
                    object.insert((*name).to_owned(), map.next_value_seed(keep)?);
                }
                Field::Other(name) => {
                    object.insert(name, map.next_value::<Value>()?);
                }
                Field::Skipped => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Each element of an array met where fields were named is kept with
/// those fields (arrays of labels, steps, attribute lists).
impl<'de> DeserializeSeed<'de> for Pruning {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An object key: one of the named fields, another field that is kept
/// (its name), or one that is skipped.
enum Field {
    Named(usize),
    Other(String),
    Skipped,
}

/// Matches an object key against the named fields, allocating only for
/// other fields that are kept.
#[derive(Clone, Copy)]
struct FieldIndex(Pruning);

impl<'de> DeserializeSeed<'de> for FieldIndex {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldIndex {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Field, E> {
        Ok(
            match self.0.fields.iter().position(|(name, _)| *name == key) {
                Some(index) => Field::Named(index),
                None if self.0.others => Field::Other(key.to_owned()),
                None => Field::Skipped,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static KEEP: Keep = Keep::Fields(&[
        ("id", Keep::All),
        (
            "request",
            Keep::Fields(&[("path", Keep::All), ("headers", Keep::All)]),
        ),
        ("labels", Keep::Fields(&[("name", Keep::All)])),
    ]);

    #[test]
    fn kept_paths_read_as_in_the_whole_tree_and_the_rest_is_dropped() {
        let text = r#"{"id":"a\"b","big":{"x":[1,2,{"y":"z"}]},"request":{"path":"p","data":{"k":"v"},
            "headers":{"user-agent":["curl"]}},"labels":[{"name":"n","color":"c"},"plain",3]}"#;
        let pruned = parse(text, &KEEP).expect("parses");
        assert_eq!(
            pruned,
            json!({"id": "a\"b", "request": {"path": "p", "headers": {"user-agent": ["curl"]}},
                   "labels": [{"name": "n"}, "plain", 3]})
        );
        let whole: Value = serde_json::from_str(text).expect("JSON");
        for pointer in [
            "/id",
            "/request/path",
            "/request/headers/user-agent/0",
            "/labels/0/name",
        ] {
            assert_eq!(pruned.pointer(pointer), whole.pointer(pointer), "{pointer}");
        }
    }

    #[test]
    fn every_keeps_the_fields_not_named_whole() {
        static EVERY: Keep = Keep::Every(&[("sender", Keep::Fields(&[("login", Keep::All)]))]);
        let text = r#"{"action":"queued","sender":{"login":"octo","url":"u"},"job":{"steps":[1]}}"#;
        let pruned = parse(text, &EVERY).expect("parses");
        assert_eq!(
            pruned,
            json!({"action": "queued", "sender": {"login": "octo"}, "job": {"steps": [1]}})
        );
    }

    #[test]
    fn skipped_parts_are_still_checked_as_json() {
        for broken in [
            r#"{"id":"a","big":{"x":[1,2}}"#,
            r#"{"id":"a","big":"unterminated}"#,
            r#"{"id":"a"} trailing"#,
            r#"{"id":"a","big":"bad \q escape"}"#,
        ] {
            let error = parse(broken, &KEEP).expect_err(broken);
            assert!(error.starts_with("invalid JSON"), "{error}");
        }
    }
}
