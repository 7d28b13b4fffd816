//! The checkpoint store: operator state in RocksDB, written incrementally.
//!
//! At a checkpoint each shard hands in its state as *parts* (one opaque
//! blob per operator instance, source or sink; the reactor numbers them).
//! A blob is cut into `CHUNK_BYTES` chunks. A chunk whose length, CRC32C
//! and FxHash64 equal those of the same chunk at the previous checkpoint
//! is not written again: the new checkpoint's index points at the epoch
//! that wrote it. So a checkpoint writes what changed (at chunk grain),
//! and an operator whose state did not change writes nothing.
//!
//! Chunks are never overwritten: a checkpoint that dies half-way leaves
//! the previous one intact. Once a newer manifest is durable, `collect`
//! deletes index entries of other epochs and chunks no index refers to.
//!
//! # Keys and values (all integers big-endian in keys, so RocksDB's
//! byte order is numeric order)
//!
//! | key | value |
//! |-----|-------|
//! | `k` shard:u32 part:u32 chunk:u32 epoch:u64 | the chunk's bytes |
//! | `i` epoch:u64 shard:u32 | rkyv 0.8 archive of `ShardIndex`, prefixed by `FORMAT_VERSION` (u32 LE) |
//!
//! Writes skip RocksDB's own WAL (the chunks would be written twice);
//! `make_durable` flushes the memtables into synced SST files, and the
//! coordinator calls it before it writes the manifest, so a checkpoint's
//! state is durable before anything names it. What a crash loses from
//! the memtable belongs to a checkpoint no manifest names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::{Archive, Deserialize, Serialize};
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::error::{PersistError, Result};
use crate::fault::{FaultPoint, Faults};

pub const FORMAT_VERSION: u32 = 1;
/// The grain of incremental checkpoints.
pub const CHUNK_BYTES: usize = 64 << 10;

/// One chunk of a part as a checkpoint refers to it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// The checkpoint that wrote these bytes.
    pub epoch: u64,
    pub len: u32,
    pub crc: u32,
    pub hash: u64,
}

impl ChunkRef {
    fn of(epoch: u64, bytes: &[u8]) -> ChunkRef {
        ChunkRef {
            epoch,
            len: bytes.len() as u32,
            crc: crc32c::crc32c(bytes),
            hash: fxhash::hash64(bytes),
        }
    }

    fn same_bytes(&self, other: &ChunkRef) -> bool {
        (self.len, self.crc, self.hash) == (other.len, other.crc, other.hash)
    }

    /// Whether `bytes` read back are the chunk written: length and
    /// CRC32C (the hash serves change detection when writing; computing
    /// it again on every read doubled the cost of a restart's read).
    fn holds(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.len as usize && crc32c::crc32c(bytes) == self.crc
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PartIndex {
    pub part: u32,
    pub len: u64,
    pub chunks: Vec<ChunkRef>,
}

/// What one shard's state is at one checkpoint.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardIndex {
    pub parts: Vec<PartIndex>,
}

/// Most bytes a read reserves for a part up front (it grows past this if
/// the part is larger).
const PART_RESERVE_BYTES_MAX: usize = 1 << 30;

/// State parts: (part id, bytes).
pub type Parts = Vec<(u32, Vec<u8>)>;

/// A part's bytes as `read` returns them: 16-byte aligned, so a snapshot
/// whose archive starts 16 bytes in can be read in place (see
/// `laminar_exec::snapshot`) instead of copied once more.
pub type AlignedPart = rkyv::util::AlignedVec<16>;

/// State parts as read back: (part id, aligned bytes).
pub type ReadParts = Vec<(u32, AlignedPart)>;

/// What a `write` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub state_bytes: u64,
    pub bytes_written: u64,
    pub chunks_written: u64,
}

fn chunk_key(shard: u32, part: u32, chunk: u32, epoch: u64) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[0] = b'k';
    k[1..5].copy_from_slice(&shard.to_be_bytes());
    k[5..9].copy_from_slice(&part.to_be_bytes());
    k[9..13].copy_from_slice(&chunk.to_be_bytes());
    k[13..21].copy_from_slice(&epoch.to_be_bytes());
    k
}

fn index_key(epoch: u64, shard: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = b'i';
    k[1..9].copy_from_slice(&epoch.to_be_bytes());
    k[9..13].copy_from_slice(&shard.to_be_bytes());
    k
}

/// The RocksDB database of one state directory, shared by its shards
/// (RocksDB is thread-safe; each shard writes only its own keys).
#[derive(Clone)]
pub struct CheckpointStore {
    db: Arc<DB>,
    path: PathBuf,
    faults: Faults,
}

/// A RocksDB failure of the store at `path`.
fn store_error(path: &Path, e: rocksdb::Error) -> PersistError {
    PersistError::Store {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl CheckpointStore {
    pub fn open(path: &Path, faults: Faults) -> Result<CheckpointStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_max_background_jobs(2);
        opts.set_max_open_files(256);
        // Chunks are written once and read back only at recovery.
        opts.set_write_buffer_size(64 << 20);
        let db = DB::open(&opts, path).map_err(|e| store_error(path, e))?;
        Ok(CheckpointStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
            faults,
        })
    }

    /// Opens the store to look, not write (`laminar state show`):
    /// RocksDB's read-only mode takes no lock, so it works beside a
    /// running service, and never creates a store that is not there.
    pub fn open_read_only(path: &Path) -> Result<CheckpointStore> {
        let db = DB::open_for_read_only(&Options::default(), path, false).map_err(|e| store_error(path, e))?;
        Ok(CheckpointStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
            faults: Faults::none(),
        })
    }

    fn err(&self, e: rocksdb::Error) -> PersistError {
        store_error(&self.path, e)
    }

    /// Writes shard `shard`'s parts for checkpoint `epoch`. `previous` is
    /// the shard's index at its last checkpoint (empty at the first), and
    /// becomes this one's.
    pub fn write(
        &self,
        epoch: u64,
        shard: u32,
        parts: &[(u32, Vec<u8>)],
        previous: &mut ShardIndex,
    ) -> Result<WriteStats> {
        let mut batch = WriteBatch::default();
        let mut stats = WriteStats::default();
        let mut index = ShardIndex::default();
        for (part, blob) in parts {
            let before = previous.parts.iter().find(|p| p.part == *part);
            let mut chunks = Vec::with_capacity(blob.len().div_ceil(CHUNK_BYTES));
            for (i, bytes) in blob.chunks(CHUNK_BYTES).enumerate() {
                let mut chunk = ChunkRef::of(epoch, bytes);
                match before.and_then(|b| b.chunks.get(i)) {
                    Some(old) if old.same_bytes(&chunk) => chunk.epoch = old.epoch,
                    _ => {
                        batch.put(chunk_key(shard, *part, i as u32, epoch), bytes);
                        stats.bytes_written += bytes.len() as u64;
                        stats.chunks_written += 1;
                    }
                }
                chunks.push(chunk);
            }
            stats.state_bytes += blob.len() as u64;
            index.parts.push(PartIndex {
                part: *part,
                len: blob.len() as u64,
                chunks,
            });
        }
        let mut value = FORMAT_VERSION.to_le_bytes().to_vec();
        value.extend_from_slice(
            &rkyv::to_bytes::<rkyv::rancor::Error>(&index).map_err(|e| PersistError::Store {
                path: self.path.clone(),
                reason: format!("cannot encode an index: {e}"),
            })?,
        );
        batch.put(index_key(epoch, shard), value);
        self.faults.check(FaultPoint::StoreWrite)?;
        let mut wo = WriteOptions::default();
        // No RocksDB WAL: `make_durable` flushes the memtable to synced
        // SST files before the manifest names this checkpoint, so the
        // chunks are never written twice.
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.err(e))?;
        *previous = index;
        Ok(stats)
    }

    /// Shard `shard`'s index at checkpoint `epoch`.
    pub fn index(&self, epoch: u64, shard: u32) -> Result<ShardIndex> {
        let key = index_key(epoch, shard);
        let Some(value) = self.db.get(key).map_err(|e| self.err(e))? else {
            return Err(PersistError::Store {
                path: self.path.clone(),
                reason: format!("checkpoint {epoch} has no index for shard {shard} (the manifest names a checkpoint the store lacks)"),
            });
        };
        if value.len() < 4 {
            return Err(PersistError::Store {
                path: self.path.clone(),
                reason: format!("index of checkpoint {epoch}, shard {shard} is truncated"),
            });
        }
        let version = u32::from_le_bytes(value[0..4].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(PersistError::Version {
                path: self.path.clone(),
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        crate::from_archive::<ShardIndex>(&value[4..]).map_err(|e| PersistError::Store {
            path: self.path.clone(),
            reason: format!("index of checkpoint {epoch}, shard {shard} does not decode: {e}"),
        })
    }

    /// Reads back shard `shard`'s parts at checkpoint `epoch`, checking
    /// every chunk against its index entry. Returns the parts and the
    /// index (the `previous` of the shard's next `write`).
    pub fn read(&self, epoch: u64, shard: u32) -> Result<(ReadParts, ShardIndex)> {
        let index = self.index(epoch, shard)?;
        let mut parts = Vec::with_capacity(index.parts.len());
        for part in &index.parts {
            parts.push((part.part, self.read_indexed(epoch, shard, part)?));
        }
        Ok((parts, index))
    }

    /// Reads back one part (a node's snapshot) of shard `shard` at
    /// checkpoint `epoch`, checked as `read` checks it; None when that
    /// shard has no such part (the node is not active there).
    pub fn read_part(&self, epoch: u64, shard: u32, part: u32) -> Result<Option<AlignedPart>> {
        match self.part_index(epoch, shard, part)? {
            Some(p) => Ok(Some(self.read_indexed(epoch, shard, &p)?)),
            None => Ok(None),
        }
    }

    /// The index entry of one part of shard `shard` at checkpoint
    /// `epoch` (its chunks' lengths and checksums: equal entries are equal
    /// bytes), without reading the part.
    pub fn part_index(&self, epoch: u64, shard: u32, part: u32) -> Result<Option<PartIndex>> {
        Ok(self.index(epoch, shard)?.parts.into_iter().find(|p| p.part == part))
    }

    /// Reads back the part an index entry of checkpoint `epoch` names.
    pub fn read_indexed(&self, epoch: u64, shard: u32, part: &PartIndex) -> Result<AlignedPart> {
        // Reserved from the index, but bounded: a damaged index must
        // end in the length check below, not in an allocation failure.
        let reserve = part.len.min(PART_RESERVE_BYTES_MAX as u64) as usize;
        let mut blob = AlignedPart::with_capacity(reserve);
        for (i, chunk) in part.chunks.iter().enumerate() {
            let key = chunk_key(shard, part.part, i as u32, chunk.epoch);
            let bytes = self
                .db
                .get_pinned(key)
                .map_err(|e| self.err(e))?
                .ok_or_else(|| PersistError::Store {
                    path: self.path.clone(),
                    reason: format!(
                        "checkpoint {epoch}: chunk {i} of part {} of shard {shard} (written at {}) is missing",
                        part.part, chunk.epoch
                    ),
                })?;
            if !chunk.holds(&bytes) {
                return Err(PersistError::Store {
                    path: self.path.clone(),
                    reason: format!(
                        "checkpoint {epoch}: chunk {i} of part {} of shard {shard} fails its checksum",
                        part.part
                    ),
                });
            }
            blob.extend_from_slice(&bytes);
        }
        if blob.len() as u64 != part.len {
            return Err(PersistError::Store {
                path: self.path.clone(),
                reason: format!(
                    "checkpoint {epoch}: part {} of shard {shard} has the wrong length",
                    part.part
                ),
            });
        }
        Ok(blob)
    }

    /// Deletes everything checkpoint `keep` (the one the durable manifest
    /// names) does not need: other epochs' indexes and unreferenced
    /// chunks. Also what a checkpoint that died before its manifest left.
    pub fn collect(&self, keep: u64, shards: u32) -> Result<u64> {
        let mut referenced = fxhash::FxHashSet::default();
        for shard in 0..shards {
            let index = self.index(keep, shard)?;
            for part in &index.parts {
                for (i, c) in part.chunks.iter().enumerate() {
                    referenced.insert(chunk_key(shard, part.part, i as u32, c.epoch));
                }
            }
        }
        let mut batch = WriteBatch::default();
        let mut deleted = 0;
        for item in self.db.iterator(IteratorMode::From(b"i", Direction::Forward)) {
            let (key, _) = item.map_err(|e| self.err(e))?;
            if key.first() != Some(&b'i') {
                break;
            }
            if key.len() == 13 && u64::from_be_bytes(key[1..9].try_into().expect("8 bytes")) != keep {
                batch.delete(&key);
                deleted += 1;
            }
        }
        for item in self.db.iterator(IteratorMode::From(b"k", Direction::Forward)) {
            let (key, _) = item.map_err(|e| self.err(e))?;
            if key.first() != Some(&b'k') {
                break;
            }
            let known: Option<&[u8; 21]> = (*key).try_into().ok();
            if known.is_none_or(|k| !referenced.contains(k)) {
                batch.delete(&key);
                deleted += 1;
            }
        }
        self.db.write(batch).map_err(|e| self.err(e))?;
        Ok(deleted)
    }

    /// Makes every write so far durable (flushes the memtables to SST
    /// files and waits). Called before a manifest names a checkpoint.
    pub fn make_durable(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))
    }

    /// Bytes RocksDB holds on disk (live SST files), for reports.
    pub fn disk_bytes(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.live-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}
