//! Runs laminar pipelines: sources read and decode records, the shard loop
//! drives operators with batches, sinks encode and write results.
//!
//! This is the only crate that does I/O for the pipeline. Today it runs a
//! plan on the calling thread (`run`); the reactor issue replaces the loop
//! with one glommio executor per core and a channel mesh between them,
//! behind the same `run` entry point and with the same results.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod runner;
pub mod sink;
pub mod source;

use std::path::PathBuf;

use thiserror::Error;

pub use runner::{run, Malformed, Progress, RunOptions, RunSummary};

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
    #[error("stream {stream}: {source}")]
    Exec {
        stream: String,
        #[source]
        source: laminar_exec::ExecError,
    },
    #[error("writing to stdout failed: {0}")]
    Stdout(std::io::Error),
}
