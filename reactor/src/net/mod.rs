//! The network edges of `laminar serve`: connections that feed live
//! sources (`ingest`) and subscribers of tcp sinks (`subscribe`). Both run
//! as tasks on the shard that owns the source or sink; the connectors
//! (`source::tcp`, `sink`) read and write through what these tasks share
//! with them.

pub mod ingest;
pub mod subscribe;
