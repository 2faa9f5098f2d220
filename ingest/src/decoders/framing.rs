//! Splitting an input into records: one JSON document, a JSON array,
//! NDJSON lines, or YAML documents; and positions that tell a person where
//! a bad record sits.

use pipewatch_schema::Raw;
use serde_json::Value;

use super::Input;
use super::prune::{self, Keep};

/// Where a record sits inside its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Position {
    /// The input as a whole.
    Whole,
    /// A 1-based line (NDJSON, log files).
    Line(usize),
    /// A 0-based element of a JSON array or a list field.
    Record(usize),
    /// A 0-based YAML document in a multi-document stream.
    Document(usize),
    /// A byte offset (binary inputs).
    Offset(u64),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Whole => f.write_str("whole input"),
            Position::Line(n) => write!(f, "line {n}"),
            Position::Record(n) => write!(f, "record {n}"),
            Position::Document(n) => write!(f, "document {n}"),
            Position::Offset(n) => write!(f, "byte {n}"),
        }
    }
}

/// One framed record: its position, its own bytes (for the dead-letter
/// store), and its tree or why it did not parse. An NDJSON line is parsed
/// only when its tree is asked for, so a decoder with a typed view of the
/// format can read the line's text directly instead.
#[derive(Debug)]
pub struct Framed<'a> {
    pub position: Position,
    pub bytes: &'a [u8],
    tree: Tree,
}

#[derive(Debug)]
enum Tree {
    Parsed(Result<Value, String>),
    /// A line whose bytes are the whole record, not parsed yet.
    Deferred,
}

impl<'a> Framed<'a> {
    fn parsed_as(position: Position, bytes: &'a [u8], parsed: Result<Value, String>) -> Self {
        Framed {
            position,
            bytes,
            tree: Tree::Parsed(parsed),
        }
    }

    /// The record's own JSON text when it has not been parsed into a tree
    /// (an NDJSON line).
    pub fn unparsed(&self) -> Option<&'a [u8]> {
        matches!(self.tree, Tree::Deferred).then_some(self.bytes)
    }

    /// The record's tree keeping only what `keep` names when the record is
    /// still its own text (an NDJSON line); a record parsed already (a
    /// whole document, an array element) keeps its whole tree.
    pub(crate) fn parsed_keeping(self, keep: &'static Keep) -> Result<Value, String> {
        match (&self.tree, std::str::from_utf8(self.bytes)) {
            (Tree::Deferred, Ok(text)) => prune::parse(text, keep),
            _ => self.parsed(),
        }
    }

    /// The record's tree, parsed now if it was not yet; or why it is not JSON.
    pub fn parsed(self) -> Result<Value, String> {
        match self.tree {
            Tree::Parsed(parsed) => parsed,
            Tree::Deferred => {
                serde_json::from_slice(self.bytes).map_err(|e| format!("invalid JSON: {e}"))
            }
        }
    }
}

/// An event's native record for a parsed record at `position` whose bytes
/// are `bytes`: its own JSON text when those bytes are the record alone (a
/// line, or a whole input), else the tree `tree` gives (an array element
/// shares its bytes with the others).
pub(crate) fn native_raw(position: Position, bytes: &[u8], tree: impl FnOnce() -> Value) -> Raw {
    let own_text = match position {
        Position::Line(_) | Position::Whole => std::str::from_utf8(bytes).ok(),
        Position::Record(_) | Position::Document(_) | Position::Offset(_) => None,
    };
    match own_text {
        Some(text) => Raw::from_parsed_text(text),
        None => Raw::from(tree()),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &bytes[start..end.max(start)]
}

/// Whether the input starts like JSON (`{` or `[`).
pub fn looks_like_json(bytes: &[u8]) -> bool {
    matches!(trim(bytes).first(), Some(b'{') | Some(b'['))
}

/// Splits a JSON input: a top-level array yields its elements, a single
/// document yields itself, anything else is read as NDJSON (one record a
/// non-blank line). A line that is not JSON is its own failed record, so
/// one bad line never hides the others. A piece of a larger NDJSON input
/// (see [`super::pieces::PieceReader`]) is read a line at a time, numbered as in the whole.
pub fn json_records<'a>(input: &Input<'a>) -> Records<'a> {
    let bytes = input.bytes;
    if let Some(first_line) = input.lines_from {
        return Records::Lines(Lines::new(bytes, first_line));
    }
    let body = trim(bytes);
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let framed: Vec<Framed<'a>> = match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| Framed::parsed_as(Position::Record(i), body, Ok(v)))
                .collect(),
            other => vec![Framed::parsed_as(Position::Whole, body, Ok(other))],
        };
        return Records::Parsed(framed.into_iter());
    }
    Records::Lines(Lines::new(bytes, 1))
}

/// The records of an input. NDJSON lines are parsed one at a time, when
/// their tree is asked for, so at most the record in hand is held as a tree.
#[derive(Debug)]
pub enum Records<'a> {
    Parsed(std::vec::IntoIter<Framed<'a>>),
    Lines(Lines<'a>),
}

impl<'a> Iterator for Records<'a> {
    type Item = Framed<'a>;

    fn next(&mut self) -> Option<Framed<'a>> {
        match self {
            Records::Parsed(framed) => framed.next(),
            Records::Lines(lines) => lines.next(),
        }
    }
}

/// The non-blank lines of an NDJSON input, each parsed when its tree is asked for.
#[derive(Debug)]
pub struct Lines<'a> {
    rest: &'a [u8],
    next_line: usize,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8], first_line: usize) -> Self {
        Lines {
            rest: bytes,
            next_line: first_line,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Framed<'a>;

    fn next(&mut self) -> Option<Framed<'a>> {
        while !self.rest.is_empty() {
            let (line, rest) = match memchr::memchr(b'\n', self.rest) {
                Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            let number = self.next_line;
            self.next_line += 1;
            let line = trim(line);
            if line.is_empty() {
                continue;
            }
            return Some(Framed {
                position: Position::Line(number),
                bytes: line,
                tree: Tree::Deferred,
            });
        }
        None
    }
}

/// Splits a YAML stream (or JSON, which YAML reads too) into documents.
/// Empty documents are skipped.
pub fn yaml_documents(bytes: &[u8]) -> Vec<Framed<'_>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_slice(bytes).enumerate() {
        let parsed = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("invalid YAML: {e}"))
            .and_then(|v| {
                yaml_to_json(v).map_err(|e| format!("YAML not representable as JSON: {e}"))
            });
        match parsed {
            Ok(Value::Null) => {}
            parsed => {
                let failed = parsed.is_err();
                out.push(Framed::parsed_as(Position::Document(i), bytes, parsed));
                // A syntax error ends the stream: the parser cannot resynchronise.
                if failed {
                    break;
                }
            }
        }
    }
    out
}

/// Converts a YAML value to JSON, turning non-string keys into strings.
pub fn yaml_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut object = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_owned(),
                    other => return Err(format!("unsupported mapping key {other:?}")),
                };
                object.insert(key, yaml_to_json(v)?);
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// Splits an input that may be JSON (any framing) or YAML.
pub fn records<'a>(input: &Input<'a>) -> Records<'a> {
    if input.lines_from.is_some() || looks_like_json(input.bytes) {
        json_records(input)
    } else {
        Records::Parsed(yaml_documents(input.bytes).into_iter())
    }
}

/// The first parsable record of an input, for format detection.
pub fn first_record(bytes: &[u8]) -> Option<Value> {
    let body = trim(bytes);
    if body.is_empty() {
        return None;
    }
    if looks_like_json(body) {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            return match value {
                Value::Array(mut items) if !items.is_empty() => Some(items.swap_remove(0)),
                Value::Array(_) => None,
                other => Some(other),
            };
        }
        let first_line = body.split(|b| *b == b'\n').next().unwrap_or(body);
        if let Ok(value) = serde_json::from_slice::<Value>(trim(first_line)) {
            return Some(value);
        }
        return crate::decoders::otlp::console_dump_first_record(body);
    }
    if std::str::from_utf8(body).is_err() {
        return None;
    }
    yaml_documents(body)
        .into_iter()
        .find_map(|framed| framed.parsed().ok())
        .filter(|v| v.is_object())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_keeps_good_lines_around_a_bad_one() {
        let input = b"{\"a\":1}\nnot json\n\n{\"a\":2}\n";
        let framed: Vec<(Position, bool)> = json_records(&Input::new("t", input))
            .map(|f| (f.position, f.parsed().is_ok()))
            .collect();
        assert_eq!(
            framed,
            [
                (Position::Line(1), true),
                (Position::Line(2), false),
                (Position::Line(4), true)
            ]
        );
    }

    #[test]
    fn arrays_yield_elements() {
        let framed: Vec<Framed<'_>> =
            json_records(&Input::new("t", b"[{\"a\":1},{\"a\":2}]")).collect();
        assert_eq!(framed.len(), 2);
        assert_eq!(framed[1].position, Position::Record(1));
    }

    #[test]
    fn yaml_streams_yield_documents() {
        let framed: Vec<Value> = yaml_documents(b"a: 1\n---\nb: [1, 2]\n")
            .into_iter()
            .map(|f| f.parsed().expect("parsed"))
            .collect();
        assert_eq!(framed.len(), 2);
        assert_eq!(framed[1], serde_json::json!({"b": [1, 2]}));
    }
}
