//! laminar's benchmark harness, above the runtime: the microbenchmarks
//! behind `laminar bench arena|mesh|jitter|wal` (`micro`), and the query
//! benchmark's built-in queries, measurements and reports (`query`). The
//! binary parses the options and drives the runs (`bin/src/bench.rs`,
//! `bin/src/query_bench.rs`); the open-loop pacing a query run uses is the
//! runtime's own (`laminar_reactor::pace`), since every shard and sink
//! takes part in it. Nothing in the runtime depends on this crate.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod micro;
pub mod query;

use thiserror::Error;

/// Why a microbenchmark could not run.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("starting an executor on cpu {cpu}: {reason}")]
    Executor { cpu: usize, reason: String },
    #[error("a benchmark thread panicked: {0}")]
    Thread(String),
    #[error("{0}")]
    Incomplete(String),
    #[error(transparent)]
    Persist(#[from] laminar_persistence::PersistError),
}
