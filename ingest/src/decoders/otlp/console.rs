//! A tolerant reader for the JavaScript object-literal subset that Node's
//! `util.inspect` prints, which is what the OpenTelemetry JS
//! `ConsoleSpanExporter` writes: unquoted keys, `'`/`"`/`` ` `` strings joined
//! with `+`, `undefined`, and elisions such as `[Object]` or `... 2 more items`.

use serde_json::{Map, Value};

/// Deepest nesting accepted; `util.inspect` prints depth 3 by default.
const MAX_DEPTH: usize = 64;

/// One top-level object of a dump: the 1-based line it starts on and its text.
#[derive(Debug)]
pub(super) struct Chunk<'a> {
    pub(super) line: usize,
    pub(super) text: &'a str,
}

/// Splits a dump into its top-level objects. Each printed span starts with a
/// `{` in the first column, so a damaged object never swallows the next one.
pub(super) fn chunks(text: &str) -> Vec<Chunk<'_>> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with('{') {
            starts.push((index + 1, offset));
        }
        offset += line.len();
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &(line, start)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |&(_, next)| next);
        if let Some(chunk) = text.get(start..end) {
            out.push(Chunk { line, text: chunk });
        }
    }
    out
}

/// Parses one object literal into JSON. Properties whose value is
/// `undefined` are left out, as `JSON.stringify` would.
pub(super) fn parse_object(text: &str) -> Result<Value, String> {
    let mut parser = Parser {
        text: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    parser.skip_ws();
    if parser.peek() != Some(b'{') {
        return Err(parser.error("expected `{`"));
    }
    let value = parser.value()?.unwrap_or(Value::Null);
    parser.skip_ws();
    if parser.pos < parser.text.len() {
        return Err(parser.error("unexpected text after the object"));
    }
    Ok(value)
}

/// Whether the text starts like a console dump rather than JSON: an object
/// whose first key is unquoted.
pub(super) fn looks_like_dump(text: &str) -> bool {
    let rest = text.trim_start().strip_prefix('{').map(str::trim_start);
    rest.and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$' || c == '\'')
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn line(&self) -> usize {
        let end = self.pos.min(self.text.len());
        1 + self
            .text
            .get(..end)
            .map_or(0, |t| t.iter().filter(|b| **b == b'\n').count())
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at line {} of the object", self.line())
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// A value; `None` for `undefined`.
    fn value(&mut self) -> Result<Option<Value>, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.nested(Self::object).map(Some),
            Some(b'[') if self.bracket_tag_ahead() => self.bracket_tag().map(Some),
            Some(b'[') => self.nested(Self::array).map(Some),
            Some(b'\'' | b'"' | b'`') => self.concatenated_string().map(|s| Some(Value::String(s))),
            Some(b'-' | b'0'..=b'9') => self.number().map(Some),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'$' => self.word_value(),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of text")),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Value, String>) -> Result<Value, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        let value = f(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<Value, String> {
        self.pos += 1; // `{`
        let mut map = Map::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                None => return Err(self.error("unterminated object")),
                _ => {}
            }
            let key = self.key()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error(&format!("expected `:` after key `{key}`")));
            }
            self.pos += 1;
            if let Some(value) = self.value()? {
                map.insert(key, value);
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn key(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(b'\'' | b'"' | b'`') => self.string(),
            Some(b'[') => {
                // Symbol keys such as `[Symbol(foo)]`.
                let start = self.pos;
                while self.peek().is_some_and(|b| b != b']') {
                    self.pos += 1;
                }
                self.pos += 1;
                Ok(
                    String::from_utf8_lossy(self.text.get(start..self.pos).unwrap_or_default())
                        .into_owned(),
                )
            }
            _ => {
                let word = self.word();
                if word.is_empty() {
                    Err(self.error("expected a property name"))
                } else {
                    Ok(word)
                }
            }
        }
    }

    fn array(&mut self) -> Result<Value, String> {
        self.pos += 1; // `[`
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                Some(b'.') if self.text.get(self.pos..self.pos + 3) == Some(b"...") => {
                    // `... 3 more items`: the elided rest of a long array.
                    while self.peek().is_some_and(|b| b != b',' && b != b']') {
                        self.pos += 1;
                    }
                    continue;
                }
                None => return Err(self.error("unterminated array")),
                _ => {}
            }
            items.push(self.value()?.unwrap_or(Value::Null));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// Whether `[` opens an inspect tag such as `[Object]` or `[Circular *1]`.
    fn bracket_tag_ahead(&self) -> bool {
        const TAGS: [&[u8]; 7] = [
            b"Object",
            b"Array",
            b"Function",
            b"Getter",
            b"Setter",
            b"Circular",
            b"class",
        ];
        let rest = self.text.get(self.pos + 1..).unwrap_or_default();
        TAGS.iter().any(|tag| rest.starts_with(tag))
    }

    /// `[Object]` and friends become their text; `[Object: null prototype] {…}` the object.
    fn bracket_tag(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b']') {
            self.pos += 1;
        }
        if self.peek().is_none() {
            return Err(self.error("unterminated `[` tag"));
        }
        self.pos += 1;
        let tag = String::from_utf8_lossy(self.text.get(start..self.pos).unwrap_or_default())
            .into_owned();
        let after = self.pos;
        self.skip_ws();
        if matches!(self.peek(), Some(b'{' | b'[')) && !tag.ends_with("Object]") {
            return self.value().map(|v| v.unwrap_or(Value::Null));
        }
        self.pos = after;
        Ok(Value::String(tag))
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(self.text.get(start..self.pos).unwrap_or_default()).into_owned()
    }

    fn word_value(&mut self) -> Result<Option<Value>, String> {
        let word = self.word();
        match word.as_str() {
            "undefined" => Ok(None),
            "null" | "NaN" | "Infinity" => Ok(Some(Value::Null)),
            "true" => Ok(Some(Value::Bool(true))),
            "false" => Ok(Some(Value::Bool(false))),
            _ => {
                // A class-tagged container (`Map(1) {…}`, `Uint8Array(2) […]`) or a bare word.
                let after = self.pos;
                self.skip_ws();
                if self.peek() == Some(b'(') {
                    while self.peek().is_some_and(|b| b != b')') {
                        self.pos += 1;
                    }
                    self.pos += 1;
                    self.skip_ws();
                }
                if matches!(self.peek(), Some(b'{' | b'[')) {
                    return self.value();
                }
                self.pos = after;
                Ok(Some(Value::String(word)))
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
            if self.text.get(self.pos..self.pos + 8) == Some(b"Infinity") {
                self.pos += 8;
                return Ok(Value::Null);
            }
        }
        while self.peek().is_some_and(|b| {
            b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_')
        }) {
            self.pos += 1;
        }
        let text: String =
            String::from_utf8_lossy(self.text.get(start..self.pos).unwrap_or_default())
                .chars()
                .filter(|c| *c != '_')
                .collect();
        if self.peek() == Some(b'n') {
            self.pos += 1; // BigInt suffix
        }
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Ok(Value::from(u));
        }
        text.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| self.error(&format!("invalid number `{text}`")))
    }

    /// A string, and any strings joined to it with `+` (how inspect breaks long text).
    fn concatenated_string(&mut self) -> Result<String, String> {
        let mut out = self.string()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.peek() != Some(b'+') {
                self.pos = save;
                return Ok(out);
            }
            self.pos += 1;
            self.skip_ws();
            if !matches!(self.peek(), Some(b'\'' | b'"' | b'`')) {
                return Err(self.error("expected a string after `+`"));
            }
            out.push_str(&self.string()?);
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let Some(quote) = self.peek() else {
            return Err(self.error("expected a string"));
        };
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            if b == quote {
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
            if b != b'\\' {
                bytes.push(b);
                continue;
            }
            let Some(escaped) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            let c = match escaped {
                b'n' => '\n',
                b't' => '\t',
                b'r' => '\r',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'v' => '\u{b}',
                b'0' => '\0',
                b'x' => self.hex_char(2)?,
                b'u' => self.unicode_escape()?,
                other => char::from(other),
            };
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }

    fn hex_digits(&mut self, count: usize) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.pos..self.pos + count)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("invalid escape"))?;
        self.pos += count;
        Ok(digits)
    }

    fn hex_char(&mut self, count: usize) -> Result<char, String> {
        Ok(char::from_u32(self.hex_digits(count)?).unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        if self.peek() == Some(b'{') {
            self.pos += 1;
            let start = self.pos;
            while self.peek().is_some_and(|b| b != b'}') {
                self.pos += 1;
            }
            let code = std::str::from_utf8(self.text.get(start..self.pos).unwrap_or_default())
                .ok()
                .and_then(|d| u32::from_str_radix(d, 16).ok())
                .ok_or_else(|| self.error("invalid escape"))?;
            self.pos += 1;
            return Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
        let high = self.hex_digits(4)?;
        if (0xD800..0xDC00).contains(&high) && self.text.get(self.pos..self.pos + 2) == Some(b"\\u")
        {
            let save = self.pos;
            self.pos += 2;
            let low = self.hex_digits(4)?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            self.pos = save;
        }
        Ok(char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inspect_output_parses_to_json() {
        let text = "{\n  name: 'it''s',\n  'a.b': \"it's\",\n  n: -12.5,\n  big: 21458831126,\n  u: undefined,\n  ok: true,\n  list: [ 1, [Object], ... 2 more items ],\n  msg: 'line\\n' +\n    'next'\n}\n";
        // `'it''s'` is not valid JS: the parser must say where it broke.
        let err = parse_object(text).expect_err("two adjacent strings are an error");
        assert!(err.contains("line 2"), "{err}");

        let text = text.replace("'it''s'", "`it's`");
        let value = parse_object(&text).expect("parses");
        assert_eq!(
            value,
            json!({"name": "it's", "a.b": "it's", "n": -12.5, "big": 21458831126_i64,
                   "ok": true, "list": [1, "[Object]"], "msg": "line\nnext"})
        );
    }

    #[test]
    fn chunks_start_at_column_one_braces() {
        let text = "{\n  a: { b: 1 }\n}\n{\n  a: 2\n}\n";
        let chunks = chunks(text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].line, 4);
        assert_eq!(
            parse_object(chunks[1].text).expect("parses"),
            json!({"a": 2})
        );
    }

    #[test]
    fn unicode_escapes_combine_surrogates() {
        let value = parse_object("{ s: '\\ud83d\\ude00 \\x41\\u{1F600}' }").expect("parses");
        assert_eq!(value, json!({"s": "\u{1F600} A\u{1F600}"}));
    }
}
