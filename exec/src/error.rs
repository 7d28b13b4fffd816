//! Errors of the execution layer. `EvalError` is a per-row expression
//! failure (division by zero, a failed cast): the operator that meets one
//! counts it and substitutes NULL, so one bad value never stops a pipeline.
//! `TypeError` is the plan-time one: an expression that does not
//! type-check. `ExecError` is everything else, with enough context to act
//! on. (Record decoding has its own, `format::DecodeError`, and time
//! parsing its own in `time`.)

use std::fmt;

use thiserror::Error;

use crate::func::{DateFormatError, GroupError, UnknownTruncUnit};
use crate::types::DataType;

/// A scalar expression could not be evaluated for one row.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    #[error("division by zero")]
    DivisionByZero,
    #[error("integer overflow in {operation}")]
    Overflow { operation: &'static str },
    #[error("cannot cast {value:?} to {target}")]
    Cast { value: String, target: &'static str },
    #[error("{function}: {reason}")]
    Function { function: &'static str, reason: String },
}

/// An operator, function or aggregate applied to arguments it does not
/// take: found while planning, so a query that would fail on every row is
/// refused before it runs. Messages are plain sentences; the SQL layer
/// adds the statement and position.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TypeError {
    /// A string literal that does not convert to the type it is used as.
    #[error("cannot convert '{text}' to {to}")]
    Literal { text: String, to: DataType },
    /// Operands of `context` (a function name, "CASE") that must share a
    /// type and do not.
    #[error("{context}: cannot mix {left} and {right}")]
    Mix {
        context: String,
        left: DataType,
        right: DataType,
    },
    #[error("cannot compare {left} with {right}")]
    Compare { left: DataType, right: DataType },
    /// Arithmetic (`op` is its symbol) on operands that are not numbers.
    #[error("cannot apply {op} to {left} and {right}{}", timestamp_hint(*.left, *.right))]
    Arithmetic {
        op: &'static str,
        left: DataType,
        right: DataType,
    },
    #[error("cannot negate {0}")]
    Negate(DataType),
    #[error("NOT expects BOOLEAN, got {0}")]
    Not(DataType),
    #[error("cannot cast {from} to {to}")]
    Cast { from: DataType, to: DataType },
    /// A literal that its CAST refuses, found when folding it.
    #[error(transparent)]
    CastLiteral(EvalError),
    /// A call whose arguments do not fit: `expected` is the signature in
    /// words ("(VARCHAR[, BIGINT])"), `got` the argument types.
    #[error("{function} expects {expected}, got ({})", TypeList(.got))]
    Arguments {
        function: String,
        expected: String,
        got: Vec<DataType>,
    },
    #[error("{function}() is not allowed: results must not depend on processing time")]
    ProcessingTime { function: String },
    #[error("{function}() is not allowed: results must be the same on every run")]
    Nondeterministic { function: String },
    #[error("{function}: invalid regex {pattern:?}: {error}")]
    Regex {
        function: String,
        pattern: String,
        error: regex::Error,
    },
    #[error("{function}: {error}")]
    Group { function: String, error: GroupError },
    #[error("{function}: the field must be a literal such as 'hour'")]
    FieldNotLiteral { function: String },
    #[error(
        "unknown EXTRACT field '{field}' (expected YEAR, ISOYEAR, QUARTER, MONTH, WEEK, DAY, DOW, ISODOW, DOY, \
         HOUR, MINUTE, SECOND, MILLISECOND, MICROSECOND or EPOCH)"
    )]
    ExtractField { field: String },
    #[error(transparent)]
    TruncUnit(#[from] UnknownTruncUnit),
    #[error("date_format: {0}")]
    DateFormat(#[from] DateFormatError),
    #[error("unknown function: {name}")]
    UnknownFunction { name: String },
    /// SUM or AVG (`aggregate`) of a type that is not a number.
    #[error("{aggregate} expects BIGINT or DOUBLE, got {input}")]
    Aggregate { aggregate: &'static str, input: DataType },
}

/// What `TypeError::Arithmetic` adds when a TIMESTAMP was an operand.
fn timestamp_hint(left: DataType, right: DataType) -> &'static str {
    if left == DataType::Ts || right == DataType::Ts {
        " (add or subtract an INTERVAL to shift a TIMESTAMP)"
    } else {
        ""
    }
}

/// Argument types as a call's error lists them: `BIGINT, VARCHAR`.
struct TypeList<'a>(&'a [DataType]);

impl fmt::Display for TypeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(t.sql_name())?;
        }
        Ok(())
    }
}

/// A failure of the execution layer that is not tied to one row's value.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("record decode error: {reason}")]
    Decode { reason: String },
    #[error("state limit exceeded in {operator}: {what} exceeds {limit}; raise the limit (laminar run --state-entries-max) or bound the state with a window")]
    StateLimit {
        operator: String,
        what: &'static str,
        limit: usize,
    },
    #[error("checkpoint state: {reason}")]
    Restore { reason: String },
}
