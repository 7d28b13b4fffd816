//! SQL errors. Every error names the statement it belongs to, the line
//! and column in the script, and what was wrong or expected.

use std::fmt;

use sqlparser::tokenizer::{Location, Span};

/// A statement error with its place in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// e.g. `CREATE STREAM hot_items`, or `statement 3` before the kind is known.
    pub statement: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: in {}: {}",
            self.line, self.column, self.statement, self.message
        )
    }
}

impl std::error::Error for SqlError {}

/// A planning error before it is tied to a statement: a message and,
/// where the AST knows it, the span of the offending SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    pub message: String,
    pub location: Option<Location>,
}

impl PlanError {
    pub fn new(message: impl Into<String>) -> PlanError {
        PlanError {
            message: message.into(),
            location: None,
        }
    }

    /// An error at `span` (ignored when sqlparser left the span empty).
    pub fn at(span: Span, message: impl Into<String>) -> PlanError {
        let location = (span.start.line > 0).then_some(span.start);
        PlanError {
            message: message.into(),
            location,
        }
    }

    /// Adds a location if the error has none yet.
    pub fn or_at(mut self, span: Span) -> PlanError {
        if self.location.is_none() && span.start.line > 0 {
            self.location = Some(span.start);
        }
        self
    }
}

pub type PlanResult<T> = Result<T, PlanError>;

/// Splits sqlparser's "… at Line: 3, Column: 14" suffix off a parser
/// error message.
pub fn split_parser_location(message: &str) -> (String, Option<Location>) {
    let message = message.strip_prefix("sql parser error: ").unwrap_or(message);
    if let Some(at) = message.rfind(" at Line: ") {
        let tail = &message[at + " at Line: ".len()..];
        let mut parts = tail.split(", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse::<u64>().ok());
        let column = parts.next().and_then(|c| c.trim().parse::<u64>().ok());
        if let (Some(line), Some(column)) = (line, column) {
            return (message[..at].to_string(), Some(Location { line, column }));
        }
    }
    (message.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_locations_are_split_off() {
        let (m, l) = split_parser_location("sql parser error: Expected: ), found: x at Line: 3, Column: 14");
        assert_eq!(m, "Expected: ), found: x");
        assert_eq!(l, Some(Location { line: 3, column: 14 }));
        let (m, l) = split_parser_location("sql parser error: Expected: an expression, found: EOF");
        assert_eq!(m, "Expected: an expression, found: EOF");
        assert_eq!(l, None);
    }
}
