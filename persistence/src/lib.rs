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

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::Strategy;

/// Validates and deserializes an rkyv archive that may sit anywhere in
/// memory: rkyv reads from an aligned buffer, so the bytes are copied
/// into one first.
pub fn from_archive<T>(bytes: &[u8]) -> Result<T, rkyv::rancor::Error>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, Strategy<Pool, rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned)
}
