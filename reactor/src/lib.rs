//! Runs laminar pipelines: sources read and decode records, the shard loop
//! drives operators with batches, sinks encode and write results.
//!
//! This is the only crate that does I/O for the pipeline and the only one
//! that knows glommio: `run` starts one glommio executor per shard, pinned
//! to its core, joins them with a channel mesh (`shard`), and spreads the
//! plan over them by key (`topology`).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod checkpoint;
pub mod clock;
pub mod cow;
pub mod direct;
pub mod live;
pub mod mesh;
pub mod metrics;
pub mod microbench;
pub mod pace;
pub mod runner;
pub mod shard;
pub mod sink;
pub mod source;
pub mod split;
pub mod subscribe;
pub mod topology;

use std::path::PathBuf;

use thiserror::Error;

pub use runner::{run, Malformed, Pacing, Progress, RunOptions, RunSummary};

/// A failure that stops a run. Bad records never do: they are counted,
/// reported and dead-lettered.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("{operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("source {source_name} ({path}): {reason}")]
    Source {
        source_name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("stream {stream}")]
    Exec {
        stream: String,
        #[source]
        source: laminar_exec::ExecError,
    },
    #[error("writing to stdout failed: {0}")]
    Stdout(std::io::Error),
    #[error("starting shard {shard}: {reason}")]
    Executor { shard: usize, reason: String },
    #[error("shard mesh: {0}")]
    Mesh(String),
    #[error("stopped because another shard failed")]
    Aborted,
    #[error("stopping: {0}")]
    Stop(String),
    #[error("encoding {what}: {reason}")]
    Encode { what: String, reason: String },
    #[error("durable state: {0}")]
    Persist(#[from] laminar_persistence::PersistError),
    #[error("recovery from {dir}: {reason}")]
    Recovery { dir: PathBuf, reason: String },
}
