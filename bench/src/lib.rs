//! laminar's benchmark harness, above the runtime: the microbenchmarks
//! behind `laminar bench arena|mesh|jitter|wal` (`micro`). The query
//! benchmark's options and report live in the binary (`bin/src/query_bench.rs`);
//! the open-loop pacing it drives is the runtime's own (`laminar_reactor::pace`),
//! since every shard and sink takes part in it. Nothing in the runtime
//! depends on this crate.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod micro;

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
