//! The failures that stop a run. Bad records never do: they are counted,
//! reported and dead-lettered.

use std::path::PathBuf;

use thiserror::Error;

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
    Mesh(MeshFailure),
    #[error("shard mesh: shard {shard} stopped receiving")]
    PeerStopped { shard: usize },
    #[error("shard mesh: shard {shard} closed its channel before finishing")]
    PeerClosed { shard: usize },
    #[error("stopped because another shard failed")]
    Aborted,
    #[error(
        "stopping: it did not finish within {timeout:?} (drained shards {drained}/{shards}, final checkpoint {}, answered {answered}/{shards})",
        .final_epoch.map_or_else(|| "not started".to_string(), |e| format!("epoch {e}"))
    )]
    StopTimeout {
        timeout: std::time::Duration,
        shards: usize,
        drained: usize,
        final_epoch: Option<u64>,
        answered: usize,
    },
    #[error("encoding {what}: {reason}")]
    Encode { what: String, reason: String },
    #[error("durable state: {0}")]
    Persist(#[from] laminar_persistence::PersistError),
    #[error("recovery from {dir}: {reason}")]
    Recovery { dir: PathBuf, reason: String },
}

/// How the mesh between shards failed a shard.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MeshFailure {
    #[error("no input is left open but this shard has not seen the end of input")]
    InputsClosedEarly,
    #[error("a peer closed its channel before finishing")]
    PeerClosedEarly,
}
