//! JSON lines: one JSON object per record, fields by name.
//!
//! The decoder is a single-pass parser that goes straight from bytes to
//! typed values: it never builds a generic JSON tree, so a record costs no
//! allocation beyond long strings. Keys are matched to columns exactly
//! first, then case-insensitively; producers usually write keys in schema
//! order, so the next column is tried first. Values of unknown keys are
//! validated and skipped; nesting is limited to `NESTING_DEPTH_MAX` (the
//! same limit serde_json applies) so hostile input cannot exhaust the
//! stack. The grammar is strict RFC 8259 (no trailing commas, no raw
//! control characters in strings, no lone surrogates), so that what we
//! accept any other JSON tool accepts too.

use std::borrow::Cow;

use super::error::{position, NullInput, ValueError};
use super::{
    null_for, parse_i64, parse_ts_text, write_i64, write_scalar, DecodeError, Decoder, Encoder, Expected, Found,
    IntError, JsonError, TimestampWriter,
};
use crate::batch::Op;
use crate::types::{DataType, Field, Schema, Str, Value};

/// How deeply arrays and objects may nest inside a record.
pub(super) const NESTING_DEPTH_MAX: usize = 128;

/// The largest magnitude up to which every integer is an exact f64: a JSON
/// number like `3.0` or `1e3` is accepted for BIGINT only below it.
const F64_EXACT_INT_MAX: f64 = 9_007_199_254_740_992.0;

/// A position in the record being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[cold]
    fn error(&self, expected: Expected) -> JsonError {
        match self.peek() {
            None => JsonError::EndOfRecord { expected },
            Some(_) => JsonError::Unexpected {
                at: position(self.pos),
                expected,
            },
        }
    }

    fn expect(&mut self, b: u8, expected: Expected) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(Expected::Value))
        }
    }

    /// Scans a number token, validating the JSON grammar; returns its text
    /// and whether it is an integer (no fraction, no exponent).
    fn number(&mut self) -> Result<(&'a [u8], bool), JsonError> {
        let start = self.pos;
        let digits = |c: &mut Self| {
            let from = c.pos;
            while let Some(b'0'..=b'9') = c.peek() {
                c.pos += 1;
            }
            c.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error(Expected::Digit)),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            if !digits(self) {
                return Err(self.error(Expected::DigitAfterPoint));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error(Expected::DigitInExponent));
            }
        }
        Ok((&self.bytes[start..self.pos], integer))
    }
}

/// Parses a string whose opening quote has been consumed. Strings without
/// escapes are returned as a slice of the record; others are unescaped
/// into `scratch`.
fn parse_string<'a: 's, 's>(c: &mut Cursor<'a>, scratch: &'s mut Vec<u8>) -> Result<&'s [u8], JsonError> {
    let bytes = c.bytes;
    let start = c.pos;
    let mut i = start;
    loop {
        match bytes.get(i) {
            None => return Err(JsonError::UnterminatedString),
            Some(b'"') => {
                c.pos = i + 1;
                return Ok(&bytes[start..i]);
            }
            Some(b'\\') => break,
            Some(&b) if b < 0x20 => return Err(JsonError::ControlCharacter { at: position(i) }),
            Some(_) => i += 1,
        }
    }
    scratch.clear();
    scratch.extend_from_slice(&bytes[start..i]);
    loop {
        match bytes.get(i) {
            None => return Err(JsonError::UnterminatedString),
            Some(b'"') => {
                c.pos = i + 1;
                return Ok(scratch);
            }
            Some(b'\\') => {
                let escape = bytes.get(i + 1).copied();
                let simple = match escape {
                    Some(b'"') => Some(b'"'),
                    Some(b'\\') => Some(b'\\'),
                    Some(b'/') => Some(b'/'),
                    Some(b'b') => Some(0x08),
                    Some(b'f') => Some(0x0c),
                    Some(b'n') => Some(b'\n'),
                    Some(b'r') => Some(b'\r'),
                    Some(b't') => Some(b'\t'),
                    _ => None,
                };
                if let Some(b) = simple {
                    scratch.push(b);
                    i += 2;
                    continue;
                }
                if escape != Some(b'u') {
                    return Err(JsonError::InvalidEscape { at: position(i) });
                }
                let unit = hex4(bytes, i + 2).ok_or(JsonError::InvalidUnicodeEscape { at: position(i) })?;
                i += 6;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low one.
                        let low = (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(bytes, i + 2))
                            .flatten()
                            .filter(|low| (0xDC00..=0xDFFF).contains(low))
                            .ok_or(JsonError::LoneSurrogate { at: position(i) })?;
                        i += 6;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(JsonError::LoneSurrogate { at: position(i) }),
                    _ => unit,
                };
                let ch = char::from_u32(code).ok_or(JsonError::InvalidUnicodeEscape { at: position(i) })?;
                let mut buf = [0u8; 4];
                scratch.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            Some(&b) if b < 0x20 => return Err(JsonError::ControlCharacter { at: position(i) }),
            Some(&b) => {
                scratch.push(b);
                i += 1;
            }
        }
    }
}

/// The value of four hex digits at `at`.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at.checked_add(4)?)?;
    let mut v = 0;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

/// Validates and skips one JSON value of a key no column wants.
fn skip_value(c: &mut Cursor<'_>, scratch: &mut Vec<u8>, depth: usize) -> Result<(), JsonError> {
    if depth > NESTING_DEPTH_MAX {
        return Err(JsonError::TooDeep);
    }
    match c.peek() {
        Some(b'"') => {
            c.pos += 1;
            parse_string(c, scratch).map(|_| ())
        }
        Some(b'{') => {
            c.pos += 1;
            c.skip_whitespace();
            if c.peek() == Some(b'}') {
                c.pos += 1;
                return Ok(());
            }
            loop {
                c.expect(b'"', Expected::KeyString)?;
                parse_string(c, scratch)?;
                c.skip_whitespace();
                c.expect(b':', Expected::Colon)?;
                c.skip_whitespace();
                skip_value(c, scratch, depth + 1)?;
                c.skip_whitespace();
                match c.peek() {
                    Some(b',') => {
                        c.pos += 1;
                        c.skip_whitespace();
                    }
                    Some(b'}') => {
                        c.pos += 1;
                        return Ok(());
                    }
                    _ => return Err(c.error(Expected::CommaOrBrace)),
                }
            }
        }
        Some(b'[') => {
            c.pos += 1;
            c.skip_whitespace();
            if c.peek() == Some(b']') {
                c.pos += 1;
                return Ok(());
            }
            loop {
                skip_value(c, scratch, depth + 1)?;
                c.skip_whitespace();
                match c.peek() {
                    Some(b',') => {
                        c.pos += 1;
                        c.skip_whitespace();
                    }
                    Some(b']') => {
                        c.pos += 1;
                        return Ok(());
                    }
                    _ => return Err(c.error(Expected::CommaOrBracket)),
                }
            }
        }
        Some(b't') => c.literal(b"true"),
        Some(b'f') => c.literal(b"false"),
        Some(b'n') => c.literal(b"null"),
        Some(b'-' | b'0'..=b'9') => c.number().map(|_| ()),
        _ => Err(c.error(Expected::Value)),
    }
}

/// Parses the value for `field`, schema column `column`, at the cursor.
fn parse_typed(c: &mut Cursor<'_>, column: usize, field: &Field, scratch: &mut Vec<u8>) -> Result<Value, DecodeError> {
    if field.data_type == DataType::Null {
        skip_value(c, scratch, 1)?;
        return Ok(Value::Null);
    }
    // Where the value starts: an error about it is rendered from there.
    let at = c.pos;
    let value_error = |error| DecodeError::Value {
        // Schemas come from SQL column lists, far below 2^32 columns.
        column: column as u32,
        at: position(at),
        error,
    };
    let mismatch = |found| value_error(ValueError::Mismatch(found));
    match c.peek() {
        Some(b'n') => {
            c.literal(b"null")?;
            null_for(field, NullInput::Null).map_err(value_error)
        }
        Some(b't') => {
            c.literal(b"true")?;
            match field.data_type {
                DataType::Bool => Ok(Value::Bool(true)),
                _ => Err(mismatch(Found::Boolean)),
            }
        }
        Some(b'f') => {
            c.literal(b"false")?;
            match field.data_type {
                DataType::Bool => Ok(Value::Bool(false)),
                _ => Err(mismatch(Found::Boolean)),
            }
        }
        Some(b'"') => {
            c.pos += 1;
            let text = parse_string(c, scratch)?;
            match field.data_type {
                DataType::Str => match std::str::from_utf8(text) {
                    Ok(s) => Ok(Value::Str(Str::new(s))),
                    Err(_) => Err(value_error(ValueError::InvalidUtf8)),
                },
                DataType::Ts => (parse_ts_text(text, &mut crate::time::DateCache::default()))
                    .map(Value::Ts)
                    .map_err(value_error),
                _ => Err(mismatch(Found::String)),
            }
        }
        Some(b'-' | b'0'..=b'9') => {
            let (text, integer) = c.number()?;
            match field.data_type {
                DataType::Int | DataType::Ts => {
                    let v = if integer {
                        match parse_i64(text) {
                            Ok(v) => v,
                            Err(IntError::Overflow | IntError::Invalid) => {
                                return Err(value_error(ValueError::IntegerOutOfRange))
                            }
                        }
                    } else {
                        // `3.0` and `1e3` are integers written loosely;
                        // `1.5` is not.
                        match parse_f64(text) {
                            Some(f) if f.fract() == 0.0 && f.abs() <= F64_EXACT_INT_MAX => f as i64,
                            _ => return Err(mismatch(Found::Token)),
                        }
                    };
                    Ok(if field.data_type == DataType::Int {
                        Value::Int(v)
                    } else {
                        Value::Ts(v)
                    })
                }
                DataType::Double => match parse_f64(text) {
                    // JSON has no infinity: a number beyond f64 is an error,
                    // as an integer beyond BIGINT is (found by fuzzing: it
                    // decoded to inf, which JSON output can only write as
                    // null).
                    Some(f) if f.is_finite() => Ok(Value::Double(f)),
                    Some(_) => Err(value_error(ValueError::NumberOutOfRange)),
                    None => Err(value_error(ValueError::InvalidNumber)),
                },
                _ => Err(mismatch(Found::Number)),
            }
        }
        Some(b'{') => Err(mismatch(Found::Object)),
        Some(b'[') => Err(mismatch(Found::Array)),
        _ => Err(c.error(Expected::Value).into()),
    }
}

/// The text of the value that starts at byte `at` of `record`, as
/// `parse_typed` saw it when it refused the value: a string's contents,
/// unescaped, or a number's token. The record parsed up to and through
/// that value when it was decoded, so both parse again.
fn value_text(record: &[u8], at: usize) -> Cow<'_, [u8]> {
    let mut c = Cursor { bytes: record, pos: at };
    if c.peek() == Some(b'"') {
        c.pos += 1;
        let mut scratch = Vec::new();
        return Cow::Owned(
            parse_string(&mut c, &mut scratch)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        );
    }
    match c.number() {
        Ok((token, _)) => Cow::Borrowed(token),
        Err(_) => Cow::Borrowed(&[]),
    }
}

fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Decodes JSON-lines records into rows of a schema.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    fields: Vec<Field>,
    scratch: Vec<u8>,
}

impl JsonDecoder {
    pub fn new(schema: &Schema) -> JsonDecoder {
        JsonDecoder {
            fields: schema.fields.clone(),
            scratch: Vec::new(),
        }
    }

    /// Parses one record into `row` (pre-filled with NULLs).
    fn decode_into(&mut self, record: &[u8], row: &mut [Value]) -> Result<(), DecodeError> {
        let mut c = Cursor { bytes: record, pos: 0 };
        c.skip_whitespace();
        match c.peek() {
            None => return Err(JsonError::EmptyRecord.into()),
            Some(b'{') => c.pos += 1,
            Some(_) => return Err(JsonError::NotAnObject.into()),
        }
        c.skip_whitespace();
        if c.peek() == Some(b'}') {
            c.pos += 1;
        } else {
            let mut next_column = 0;
            loop {
                c.expect(b'"', Expected::KeyString)?;
                let key = parse_string(&mut c, &mut self.scratch)?;
                let column = lookup(&self.fields, next_column, key);
                c.skip_whitespace();
                c.expect(b':', Expected::Colon)?;
                c.skip_whitespace();
                match column {
                    Some(col) => {
                        row[col] = parse_typed(&mut c, col, &self.fields[col], &mut self.scratch)?;
                        next_column = col + 1;
                    }
                    None => skip_value(&mut c, &mut self.scratch, 1)?,
                }
                c.skip_whitespace();
                match c.peek() {
                    Some(b',') => {
                        c.pos += 1;
                        c.skip_whitespace();
                    }
                    Some(b'}') => {
                        c.pos += 1;
                        break;
                    }
                    _ => return Err(c.error(Expected::CommaOrBrace).into()),
                }
            }
        }
        c.skip_whitespace();
        if c.pos != record.len() {
            return Err(JsonError::TrailingCharacters { at: position(c.pos) }.into());
        }
        // An explicit null was refused where it was met; a NULL left in a
        // NOT NULL column now can only be a key that never appeared.
        for (column, (field, v)) in self.fields.iter().zip(row.iter()).enumerate() {
            if v.is_null() {
                null_for(field, NullInput::Missing).map_err(|error| DecodeError::Value {
                    column: column as u32,
                    at: position(record.len()),
                    error,
                })?;
            }
        }
        Ok(())
    }
}

/// The column a key names: `hint` (the column after the previous key)
/// first, then an exact match, then a case-insensitive one.
fn lookup(fields: &[Field], hint: usize, key: &[u8]) -> Option<usize> {
    if fields.get(hint).is_some_and(|f| f.name.as_bytes() == key) {
        return Some(hint);
    }
    fields
        .iter()
        .position(|f| f.name.as_bytes() == key)
        .or_else(|| fields.iter().position(|f| f.name.as_bytes().eq_ignore_ascii_case(key)))
}

impl Decoder for JsonDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Value>) -> Result<(), DecodeError> {
        let base = out.len();
        out.extend(std::iter::repeat_with(|| Value::Null).take(self.fields.len()));
        let result = self.decode_into(record, &mut out[base..]);
        if result.is_err() {
            out.truncate(base);
        }
        result
    }

    fn explain(&self, record: &[u8], error: DecodeError) -> String {
        error.render(&self.fields, |at| value_text(record, at))
    }
}

/// Appends `s` as a JSON string literal.
fn write_json_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut run_start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]],
            _ => continue,
        };
        out.extend_from_slice(&s[run_start..i]);
        out.extend_from_slice(escape);
        run_start = i + 1;
    }
    out.extend_from_slice(&s[run_start..]);
    out.push(b'"');
}

/// Encodes rows as JSON objects, one per line, keys in schema order, with
/// `"op"` first for changelogs.
#[derive(Debug, Clone)]
pub struct JsonEncoder {
    /// Per column, `,"name":` with the name escaped, computed once.
    keys: Vec<Vec<u8>>,
    changelog: bool,
    timestamps: TimestampWriter,
}

impl JsonEncoder {
    pub fn new(schema: &Schema, changelog: bool) -> JsonEncoder {
        let keys = schema
            .fields
            .iter()
            .map(|f| {
                let mut key = vec![b','];
                write_json_string(f.name.as_bytes(), &mut key);
                key.push(b':');
                key
            })
            .collect();
        JsonEncoder {
            keys,
            changelog,
            timestamps: TimestampWriter::new(),
        }
    }
}

impl Encoder for JsonEncoder {
    fn header(&mut self, _out: &mut Vec<u8>) {}

    fn row(&mut self, op: Op, row: &[Value], out: &mut Vec<u8>) {
        out.push(b'{');
        if self.changelog {
            out.extend_from_slice(b"\"op\":\"");
            out.extend_from_slice(op.as_str().as_bytes());
            out.push(b'"');
        }
        for (i, (key, v)) in self.keys.iter().zip(row).enumerate() {
            // The first key has no comma before it unless "op" came first.
            let skip_comma = i == 0 && !self.changelog;
            out.extend_from_slice(&key[skip_comma as usize..]);
            match v {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Double(d) if !d.is_finite() => out.extend_from_slice(b"null"),
                Value::Str(s) => write_json_string(s.as_bytes(), out),
                Value::Ts(ms) => {
                    out.push(b'"');
                    self.timestamps.write(*ms, out);
                    out.push(b'"');
                }
                Value::Int(n) => write_i64(*n, out),
                other => write_scalar(other, out),
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_beyond_f64_is_out_of_range_not_infinite() {
        let schema = crate::types::Schema::new(vec![crate::types::Field::new("d", DataType::Double)]);
        let mut d = JsonDecoder::new(&schema);
        let mut out = Vec::new();
        let record = b"{\"d\": 1e999}";
        let e = crate::format::Decoder::decode(&mut d, record, &mut out).unwrap_err();
        let e = d.explain(record, e);
        assert!(e.contains("number out of range"), "{e}");
        assert!(out.is_empty());
        crate::format::Decoder::decode(&mut d, b"{\"d\": -1.5e300}", &mut out).unwrap();
        assert_eq!(out, vec![Value::Double(-1.5e300)]);
    }

    use crate::format::fixtures::{field, sample_schema as schema};

    fn decode(d: &mut JsonDecoder, line: &str) -> Result<Vec<Value>, String> {
        crate::format::fixtures::decode_checked(d, line)
    }

    #[test]
    fn decodes_fields_by_name_in_any_order() {
        let mut d = JsonDecoder::new(&schema());
        assert_eq!(
            decode(
                &mut d,
                r#" { "ts": "2015-07-15 00:00:00.123", "NAME": "b\"o\u00e9\ud83d\ude00", "extra": {"x": [1, {"y": null}, "s"]},
                   "ok": true, "price": 2, "auction": -5 } "#
            )
            .unwrap(),
            vec![
                Value::Int(-5),
                Value::Double(2.0),
                Value::Bool(true),
                Value::str("b\"oé😀"),
                Value::Ts(1_436_918_400_123)
            ]
        );
        assert_eq!(
            decode(
                &mut d,
                r#"{"auction": 1e3, "price": -1.5e-3, "ok": null, "ts": 1436918400123}"#
            )
            .unwrap(),
            vec![
                Value::Int(1000),
                Value::Double(-0.0015),
                Value::Null,
                Value::Null,
                Value::Ts(1_436_918_400_123)
            ]
        );
        // An exact-case key wins over a case-insensitive one.
        let two = Schema::new(vec![field("a", DataType::Int, true), field("A", DataType::Int, true)]);
        let mut d2 = JsonDecoder::new(&two);
        assert_eq!(
            decode(&mut d2, r#"{"A": 2, "a": 1}"#).unwrap(),
            vec![Value::Int(1), Value::Int(2)]
        );
        assert_eq!(decode(&mut d2, "{}").unwrap(), vec![Value::Null, Value::Null]);
    }

    #[test]
    fn every_error_names_the_column_or_the_position() {
        let mut d = JsonDecoder::new(&schema());
        let cases = [
            ("", "empty record"),
            ("  \t ", "empty record"),
            ("[1]", "expected a JSON object"),
            ("\"x\"", "expected a JSON object"),
            (
                r#"{"price": 1}"#,
                "column 'auction' is NOT NULL but the value is missing",
            ),
            (
                r#"{"auction": null}"#,
                "column 'auction' is NOT NULL but the value is null",
            ),
            (
                r#"{"auction": 1.5}"#,
                "column 'auction' (BIGINT): expected an integer, found \"1.5\"",
            ),
            (
                r#"{"auction": "1"}"#,
                "column 'auction' (BIGINT): expected an integer, found a string",
            ),
            (
                r#"{"auction": 99999999999999999999}"#,
                "column 'auction' (BIGINT): integer out of range \"99999999999999999999\"",
            ),
            (
                r#"{"auction": 1, "price": "2"}"#,
                "column 'price' (DOUBLE): expected a number, found a string",
            ),
            (
                r#"{"auction": 1, "ok": 1}"#,
                "column 'ok' (BOOLEAN): expected a boolean, found a number",
            ),
            (
                r#"{"auction": 1, "name": 5}"#,
                "column 'name' (VARCHAR): expected a string, found a number",
            ),
            (
                r#"{"auction": 1, "name": {}}"#,
                "column 'name' (VARCHAR): expected a string, found an object",
            ),
            (
                r#"{"auction": 1, "name": []}"#,
                "column 'name' (VARCHAR): expected a string, found an array",
            ),
            (
                r#"{"auction": 1, "ts": true}"#,
                "column 'ts' (TIMESTAMP): expected a timestamp string or epoch milliseconds, found a boolean",
            ),
            (r#"{"auction": 1,}"#, "invalid JSON at byte 14: expected a key string"),
            (r#"{"auction" 1}"#, "invalid JSON at byte 11: expected ':'"),
            (
                r#"{"auction": 1"#,
                "invalid JSON: unexpected end of record, expected ',' or '}'",
            ),
            (
                r#"{"auction": 1} x"#,
                "invalid JSON at byte 15: trailing characters after the object",
            ),
            (r#"{"auction": 01}"#, "invalid JSON at byte 13: expected ',' or '}'"),
            (r#"{"auction": -}"#, "invalid JSON at byte 13: expected a digit"),
            (
                r#"{"auction": 1, "x": tru}"#,
                "invalid JSON at byte 20: expected a JSON value",
            ),
            (r#"{"auction": 1, "name": "a"#, "invalid JSON: unterminated string"),
            (
                r#"{"auction": 1, "name": "\q"}"#,
                "invalid JSON at byte 24: invalid escape",
            ),
            (
                r#"{"auction": 1, "name": "\ud800"}"#,
                "invalid JSON at byte 30: lone surrogate in \\u escape",
            ),
            (
                r#"{"auction": 1, "name": "\udc00"}"#,
                "invalid JSON at byte 30: lone surrogate in \\u escape",
            ),
            (
                r#"{"auction": 1, "name": "\u12"}"#,
                "invalid JSON at byte 24: invalid \\u escape",
            ),
            (
                "{\"auction\": 1, \"name\": \"a\tb\"}",
                "invalid JSON at byte 25: control character in a string",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(decode(&mut d, line).unwrap_err(), want, "line {line:?}");
        }
        let ts = decode(&mut d, r#"{"auction": 1, "ts": "yesterday"}"#).unwrap_err();
        assert!(
            ts.starts_with("column 'ts' (TIMESTAMP): invalid timestamp \"yesterday\""),
            "{ts}"
        );
        // The message quotes a string's contents unescaped.
        let ts = decode(&mut d, r#"{"auction": 1, "ts": "yes\u0022terday"}"#).unwrap_err();
        assert!(
            ts.starts_with(r#"column 'ts' (TIMESTAMP): invalid timestamp "yes\"terday""#),
            "{ts}"
        );
        let mut bad = br#"{"auction": 1, "name": ""#.to_vec();
        bad.extend_from_slice(&[0xff, b'"', b'}']);
        let e = d.decode(&bad, &mut Vec::new()).unwrap_err();
        assert_eq!(d.explain(&bad, e), "column 'name' (VARCHAR): invalid UTF-8");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut d = JsonDecoder::new(&schema());
        let deep = format!(
            r#"{{"auction": 1, "x": {}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(
            decode(&mut d, &deep).unwrap_err(),
            "invalid JSON: nested more than 128 levels deep"
        );
        let ok = format!(r#"{{"auction": 1, "x": {}{}}}"#, "[".repeat(100), "]".repeat(100));
        assert!(decode(&mut d, &ok).is_ok());
    }

    #[test]
    fn encoder_escapes_and_orders_keys() {
        let schema = Schema::new(vec![
            field("s", DataType::Str, true),
            field("q\"k", DataType::Int, true),
            field("d", DataType::Double, true),
            field("t", DataType::Ts, true),
            field("b", DataType::Bool, true),
        ]);
        let row = [
            Value::str("a\"b\\c\n\u{1}é"),
            Value::Int(i64::MIN),
            Value::Double(f64::NAN),
            Value::Ts(0),
            Value::Bool(false),
        ];
        let mut out = Vec::new();
        let mut e = JsonEncoder::new(&schema, false);
        e.header(&mut out);
        e.row(Op::Insert, &row, &mut out);
        JsonEncoder::new(&schema, true).row(
            Op::UpdateAfter,
            &[Value::Null, Value::Null, Value::Double(-0.5), Value::Null, Value::Null],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"s\":\"a\\\"b\\\\c\\n\\u0001é\",\"q\\\"k\":-9223372036854775808,\"d\":null,\"t\":\"1970-01-01 00:00:00.000\",\"b\":false}\n\
             {\"op\":\"+U\",\"s\":null,\"q\\\"k\":null,\"d\":-0.5,\"t\":null,\"b\":null}\n"
        );
    }
}
