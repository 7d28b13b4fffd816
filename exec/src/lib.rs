//! The execution layer of laminar: values and rows, batches that carry
//! watermarks in band, compiled scalar expressions, aggregate accumulators,
//! window assignment and the operators themselves.
//!
//! Everything here is synchronous and deterministic: no I/O, no threads, no
//! wall clock. Operators are plain state machines (`on_rows`,
//! `on_watermark`, `checkpoint`, `restore`) driven by a shard loop that lives
//! in the `reactor` crate. Record decoding and encoding (`format`) is here
//! too because it is pure byte-to-row work; reading the bytes is not.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod agg;
pub mod arena;
pub mod batch;
pub mod error;
pub mod explain;
pub mod expr;
pub mod format;
pub mod func;
pub mod identity;
pub mod operator;
pub mod operators;
pub mod plan;
pub mod rescale;
pub mod snapshot;
pub mod state;
pub mod time;
pub mod types;
pub mod window;

pub use batch::{Batch, Mark, Op};
pub use error::{EvalError, ExecError, TypeError};
pub use types::{DataType, Field, Schema, Value};
