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
pub mod control;
pub mod cow;
pub mod error;
pub mod evolve;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod pace;
mod rescale;
pub mod runner;
pub mod shard;
pub mod sink;
pub mod source;
pub mod tap;
pub mod topology;
pub mod view;

pub use error::{MeshFailure, RunError};
pub use net::ingest::LiveLimits;
pub use runner::{run, Malformed, Pacing, Progress, RunOptions, RunSummary};
