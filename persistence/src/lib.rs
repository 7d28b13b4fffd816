//! Durable state for laminar — placeholder until the durable-state issue.
//!
//! What will live here: the per-shard write-ahead log (length + CRC32C
//! framed records with epoch and kind, rkyv payloads, group commit with
//! fdatasync, torn-tail truncation), the RocksDB checkpoint store written at
//! barriers, and the atomically replaced manifest that records WAL
//! positions, source offsets, watermarks and sink commit positions. Each
//! on-disk format will be specified byte by byte in its module doc with a
//! `FORMAT_VERSION`. Until then `laminar run` keeps state in memory only.

#![deny(unsafe_op_in_unsafe_fn)]
