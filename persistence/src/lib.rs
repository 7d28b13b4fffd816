//! Durable state for laminar: the per-shard write-ahead log (`wal`), the
//! incremental RocksDB checkpoint store (`store`), the manifest that makes
//! a checkpoint complete (`manifest`), and fault injection at every
//! durable step (`fault`).
//!
//! This crate knows bytes, files and positions, not rows or operators:
//! the reactor decides what goes into a record or a state part, and
//! serializes it. Each on-disk format is specified byte by byte in its
//! module doc, with a `FORMAT_VERSION` checked when it is opened.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod error;
pub mod fault;
pub mod manifest;
#[cfg(feature = "store")]
pub mod store;
pub mod wal;

pub use error::PersistError;
pub use fault::{FaultPoint, Faults};
