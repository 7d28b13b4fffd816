//! The errors of record decoding, and their messages.
//!
//! `DecodeError` is what a decoder returns for a record it refuses. It is
//! `Copy` and a dozen bytes: a decoder is the ingest hot path, and building
//! a message (a `String`, with the column's name and the offending text
//! quoted) for every refusal would cost an allocation where the good path
//! costs none. So the error says only what went wrong, which column, and
//! where in the record the offending value starts; the message is rendered
//! from that, the schema and the record's bytes when the record is
//! reported, by `Decoder::explain`. Errors of the record as a whole (its
//! CSV field structure, its JSON syntax) need no context and display
//! their full message themselves.
//!
//! `FormatError` is the other kind: a decoder or format that cannot be set
//! up (an unknown format name, a bad delimiter, a header that lacks a
//! column). It happens once, at planning or open time, so it carries
//! owned text.
//!
//! Byte positions are `u32`: every reader in the reactor refuses records
//! over a mebibyte (its `RECORD_BYTES_MAX`) unread, far below 4 GiB; a
//! longer record would show a saturated position in its message, never a
//! wrong row.

use std::borrow::Cow;
use std::fmt;

use thiserror::Error;

use super::RECORD_FIELDS_MAX;
use crate::types::{DataType, Field};

/// How much of an offending input value an error message quotes.
const ERROR_TEXT_CHARS_MAX: usize = 40;

/// How many header names an error message lists before eliding the rest.
const ERROR_HEADER_NAMES_MAX: usize = 32;

/// Timestamps longer than this are refused before parsing, so the error
/// message (which quotes the input) stays short.
pub(super) const TIMESTAMP_TEXT_BYTES_MAX: usize = 64;

/// Why a decoder refused a record. Cheap to return and to copy; the
/// message is `Decoder::explain`'s (see the module doc). `Display` gives
/// the full message of the record-level kinds, and for `Value` a shorter
/// one without the column's name or the offending text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The CSV record could not be split into fields.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// The CSV record has the wrong number of fields.
    #[error("expected {expected} fields, found {found}")]
    FieldCount { expected: u32, found: u32 },
    /// The JSON record is not a well-formed object.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The value of schema column `column`, which starts at byte `at` of
    /// the record (a CSV field's first byte, its opening quote if quoted;
    /// a JSON value's first byte; the record's end for a missing value),
    /// does not fit the column.
    #[error("column {column} (at byte {at}): {error}")]
    Value { column: u32, at: u32, error: ValueError },
}

// Returned per record on the hot path, so it stays within two registers'
// worth of bytes.
const _: () = assert!(std::mem::size_of::<DecodeError>() <= 16);
const _: () = assert!(std::mem::size_of::<Result<(), DecodeError>>() <= 16);

/// Why one value does not fit its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("NOT NULL but the value is {0}")]
    NotNull(NullInput),
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("invalid integer")]
    InvalidInteger,
    #[error("integer out of range")]
    IntegerOutOfRange,
    #[error("invalid number")]
    InvalidNumber,
    #[error("number out of range")]
    NumberOutOfRange,
    #[error("invalid boolean")]
    InvalidBoolean,
    #[error("invalid timestamp")]
    InvalidTimestamp,
    /// A JSON value of another type than the column's.
    #[error("found {0}")]
    Mismatch(Found),
}

/// What stood where a NOT NULL column's value should have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullInput {
    /// An empty (or blank) CSV field.
    Empty,
    /// A JSON `null`.
    Null,
    /// No JSON key for the column.
    Missing,
}

impl fmt::Display for NullInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NullInput::Empty => "empty",
            NullInput::Null => "null",
            NullInput::Missing => "missing",
        })
    }
}

/// The JSON value found where a column of another type wanted its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Boolean,
    String,
    Number,
    Object,
    Array,
    /// A number that is not what the column holds (`1.5` for BIGINT),
    /// quoted in the message.
    Token,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Found::Boolean => "a boolean",
            Found::String => "a string",
            Found::Number => "a number",
            Found::Object => "an object",
            Found::Array => "an array",
            Found::Token => "another value",
        })
    }
}

/// Why a CSV record (or header line) could not be split into fields.
/// Fields are numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SplitError {
    #[error("record has more than {RECORD_FIELDS_MAX} fields")]
    TooManyFields,
    #[error("field {field}: unterminated quoted field")]
    UnterminatedQuote { field: u32 },
    #[error("field {field}: unexpected character after the closing quote")]
    AfterClosingQuote { field: u32 },
}

/// Why a JSON record is not a well-formed object. Positions are bytes
/// from the record's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum JsonError {
    #[error("empty record")]
    EmptyRecord,
    #[error("expected a JSON object")]
    NotAnObject,
    #[error("invalid JSON: unexpected end of record, expected {expected}")]
    EndOfRecord { expected: Expected },
    #[error("invalid JSON at byte {at}: expected {expected}")]
    Unexpected { at: u32, expected: Expected },
    #[error("invalid JSON: unterminated string")]
    UnterminatedString,
    #[error("invalid JSON at byte {at}: control character in a string")]
    ControlCharacter { at: u32 },
    #[error("invalid JSON at byte {at}: invalid escape")]
    InvalidEscape { at: u32 },
    #[error("invalid JSON at byte {at}: invalid \\u escape")]
    InvalidUnicodeEscape { at: u32 },
    #[error("invalid JSON at byte {at}: lone surrogate in \\u escape")]
    LoneSurrogate { at: u32 },
    #[error("invalid JSON: nested more than {} levels deep", super::json::NESTING_DEPTH_MAX)]
    TooDeep,
    #[error("invalid JSON at byte {at}: trailing characters after the object")]
    TrailingCharacters { at: u32 },
}

/// What the JSON grammar wanted where it found something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    KeyString,
    Colon,
    CommaOrBrace,
    CommaOrBracket,
    Value,
    Digit,
    DigitAfterPoint,
    DigitInExponent,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::KeyString => "a key string",
            Expected::Colon => "':'",
            Expected::CommaOrBrace => "',' or '}'",
            Expected::CommaOrBracket => "',' or ']'",
            Expected::Value => "a JSON value",
            Expected::Digit => "a digit",
            Expected::DigitAfterPoint => "a digit after '.'",
            Expected::DigitInExponent => "a digit in the exponent",
        })
    }
}

/// A format or decoder that cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error("unknown format '{name}' (expected 'csv' or 'json')")]
    UnknownFormat { name: String },
    #[error("invalid CSV delimiter {:?}", char::from(*.delimiter))]
    InvalidDelimiter { delimiter: u8 },
    #[error("schema has {columns} columns; at most {RECORD_FIELDS_MAX} are supported")]
    SchemaTooWide { columns: usize },
    #[error("header: {0}")]
    Header(SplitError),
    #[error("header has no column '{column}' (columns: {})", HeaderNames(.names))]
    HeaderLacksColumn { column: String, names: Vec<String> },
}

/// A header's names as an error message lists them: the first
/// `ERROR_HEADER_NAMES_MAX`, then an ellipsis.
struct HeaderNames<'a>(&'a [String]);

impl fmt::Display for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().take(ERROR_HEADER_NAMES_MAX).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        if self.0.len() > ERROR_HEADER_NAMES_MAX {
            f.write_str(", …")?;
        }
        Ok(())
    }
}

/// A byte position as an error stores it (see the module doc).
#[inline]
pub(super) fn position(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

impl DecodeError {
    /// The message of this error, for a decoder of `fields`: `text(at)`
    /// gives the text of the value that starts at byte `at` of the record
    /// as the decoder read it (a CSV field unquoted and trimmed, a JSON
    /// number token or string contents). Only what the message quotes is
    /// asked for.
    pub(super) fn render<'a>(self, fields: &[Field], text: impl FnOnce(usize) -> Cow<'a, [u8]>) -> String {
        let DecodeError::Value { column, at, error } = self else {
            return self.to_string();
        };
        let field = &fields[column as usize];
        let at = at as usize;
        let quoted = |what: &str, text: Cow<'_, [u8]>| column_error(field, format_args!("{what} {}", Shown(&text)));
        match error {
            ValueError::NotNull(input) => format!("column '{}' is NOT NULL but the value is {input}", field.name),
            ValueError::InvalidUtf8 => column_error(field, format_args!("invalid UTF-8")),
            ValueError::InvalidInteger => quoted("invalid integer", text(at)),
            ValueError::IntegerOutOfRange => quoted("integer out of range", text(at)),
            ValueError::InvalidNumber => quoted("invalid number", text(at)),
            ValueError::NumberOutOfRange => quoted("number out of range", text(at)),
            ValueError::InvalidBoolean => column_error(
                field,
                format_args!(
                    "invalid boolean {} (expected true/false, t/f, 1/0 or yes/no)",
                    Shown(&text(at))
                ),
            ),
            ValueError::InvalidTimestamp => timestamp_error(field, &text(at)),
            ValueError::Mismatch(found) => {
                let found = match found {
                    Found::Token => Shown(&text(at)).to_string(),
                    other => other.to_string(),
                };
                column_error(
                    field,
                    format_args!("expected {}, found {found}", expected_kind(field.data_type)),
                )
            }
        }
    }
}

/// The message for TIMESTAMP text that `parse_ts_text` refused: the
/// parser's own reason, unless the text was too long or not UTF-8 to
/// hand to it.
fn timestamp_error(field: &Field, text: &[u8]) -> String {
    let invalid = || column_error(field, format_args!("invalid timestamp {}", Shown(text)));
    if text.len() > TIMESTAMP_TEXT_BYTES_MAX {
        return invalid();
    }
    let Ok(s) = std::str::from_utf8(text) else {
        return invalid();
    };
    match crate::time::parse_timestamp(s) {
        Err(e) => column_error(field, format_args!("{e}")),
        // Not reached: the decoder refused this text with the same parser.
        Ok(_) => invalid(),
    }
}

/// What a column of each type wants, for type-mismatch errors.
fn expected_kind(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Int => "an integer",
        DataType::Double => "a number",
        DataType::Bool => "a boolean",
        DataType::Str => "a string",
        DataType::Ts => "a timestamp string or epoch milliseconds",
        DataType::Null => "null",
    }
}

/// `column 'name' (TYPE): reason`, the prefix every value error carries.
fn column_error(field: &Field, reason: fmt::Arguments<'_>) -> String {
    format!("column '{}' ({}): {}", field.name, field.data_type.sql_name(), reason)
}

/// A bounded, printable rendering of offending input for error messages.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(self.0);
        let mut chars = text.chars();
        let head: String = chars.by_ref().take(ERROR_TEXT_CHARS_MAX).collect();
        if chars.next().is_some() {
            write!(f, "{:?}…", head)
        } else {
            write!(f, "{:?}", head)
        }
    }
}
