//! Errors of the execution layer. `EvalError` is a per-row expression
//! failure (division by zero, a failed cast): the operator that meets one
//! counts it and substitutes NULL, so one bad value never stops a pipeline.
//! `ExecError` is everything else, with enough context to act on.

use thiserror::Error;

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
