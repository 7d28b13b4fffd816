//! The checkpoint manifest: which checkpoint is the newest complete one,
//! and where every shard, source and sink stood at it.
//!
//! A checkpoint is complete exactly when its manifest has replaced the
//! previous one: the manifest is written last, atomically
//! (`wal::write_atomic`: temporary file, fsync, rename, fsync of the
//! directory). Recovery reads it, restores the RocksDB state it names,
//! replays each shard's WAL from its LSN, seeks sources to their offsets
//! and truncates file sinks to their committed lengths.
//!
//! # Format (version `FORMAT_VERSION`), integers little-endian
//!
//! File `MANIFEST` in the state directory:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 8 | magic `LAMINMAN` |
//! | 8 | 4 | `FORMAT_VERSION` |
//! | 12 | 4 | payload length `n` (at most `MANIFEST_BYTES_MAX`) |
//! | 16 | 4 | CRC32C of the payload |
//! | 20 | 4 | zero |
//! | 24 | n | payload: an rkyv 0.8 archive of `Manifest` |

use std::path::{Path, PathBuf};

use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{PersistError, Result};
use crate::fault::Faults;
use crate::wal::write_atomic;

/// 2: identities of streams, nodes, sources and sinks (what a restart
/// with changed SQL keeps).
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST_MAGIC: &[u8; 8] = b"LAMINMAN";
pub const MANIFEST_FILE: &str = "MANIFEST";
/// A manifest is small (positions, not state); this bounds what a
/// damaged length field can make recovery allocate.
pub const MANIFEST_BYTES_MAX: usize = 64 << 20;
const HEADER_BYTES: usize = 24;

/// Where one source instance stood at the checkpoint.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The source's name in the plan.
    pub name: String,
    /// The shard reading it.
    pub shard: u32,
    /// Bytes (files) or events (generators) consumed.
    pub offset: u64,
    /// Records (lines) consumed, for error messages after a restart.
    pub records: u64,
    /// The source's own state, opaque here: the reactor's `SourceState`
    /// as an rkyv archive (offset or WAL LSN, counters, watermark, and for
    /// a tcp source the connections open at the checkpoint).
    pub state: Vec<u8>,
}

/// Where one sink's committed output ends.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SinkPosition {
    pub name: String,
    /// The sink's identity (its name, connector and the stream it
    /// writes): a restart resumes the position only into the same.
    pub identity: u64,
    /// Committed bytes of its file (recovery truncates to this).
    pub bytes: u64,
    pub rows: u64,
    /// Shards whose input to the sink had ended (sent its end of input).
    pub ended_senders: Vec<u32>,
}

/// A definition that keeps state (a stream, a view, a table) as the
/// checkpoint's pipeline had it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub name: String,
    /// `stream` or `table`.
    pub kind: String,
    /// Its nodes' identities taken together.
    pub identity: u64,
    /// The statement in one line, for saying what a new one changed.
    pub text: String,
    /// Its nodes: (part number in the checkpoint store, identity).
    pub nodes: Vec<NodeRecord>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's part number in the store (its index in that plan).
    pub part: u32,
    pub identity: u64,
}

/// A source as the checkpoint's pipeline defined it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub name: String,
    /// Its index in that plan (what the WAL's records name).
    pub index: u32,
    /// Everything about it; and what its positions depend on.
    pub identity: u64,
    pub position_key: u64,
    pub text: String,
}

/// One complete checkpoint.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub epoch: u64,
    /// One hash of every identity in the pipeline, for people (`state
    /// show`); what a restart keeps is decided stream by stream from
    /// `streams`, `source_defs` and the sinks' identities.
    pub plan_fingerprint: u64,
    pub shards: u32,
    /// The key groups keyed state is spread over (fixed for the state
    /// directory's life; a shard owns a range of them).
    pub key_groups: u32,
    /// Per shard: the WAL position replay starts from. `laminar run`
    /// reads replayable files and logs nothing, so its entries are 0; the
    /// service's network sources are what the WAL is for.
    pub wal_lsns: Vec<u64>,
    pub sources: Vec<SourcePosition>,
    pub sinks: Vec<SinkPosition>,
    /// The pipeline's definitions, by identity (see `laminar_exec::identity`).
    pub streams: Vec<StreamRecord>,
    pub source_defs: Vec<SourceRecord>,
    /// Bytes of operator state the checkpoint holds, and how many of them
    /// this checkpoint wrote (the rest were unchanged since the previous).
    pub state_bytes: u64,
    pub state_bytes_written: u64,
    pub created_unix_ms: i64,
}

pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

/// Encodes a manifest in the file format above.
pub fn encode(manifest: &Manifest) -> Result<Vec<u8>> {
    let payload = rkyv::to_bytes::<rkyv::rancor::Error>(manifest).map_err(|e| PersistError::Store {
        path: PathBuf::from(MANIFEST_FILE),
        reason: format!("cannot encode the manifest: {e}"),
    })?;
    if payload.len() > MANIFEST_BYTES_MAX {
        return Err(PersistError::TooLarge {
            what: "the manifest",
            got: payload.len(),
            max: MANIFEST_BYTES_MAX,
        });
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(MANIFEST_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a manifest file's bytes; `path` is for the error messages.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    let corrupt = |offset: u64, reason: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(0, format!("{} bytes, shorter than the header", bytes.len())));
    }
    if &bytes[0..8] != MANIFEST_MAGIC {
        return Err(corrupt(0, "not a laminar manifest (bad magic)".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(PersistError::Version {
            path: path.to_path_buf(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    if len > MANIFEST_BYTES_MAX || HEADER_BYTES + len != bytes.len() {
        return Err(corrupt(
            12,
            format!("payload length {len} does not match the file ({} bytes)", bytes.len()),
        ));
    }
    let payload = &bytes[HEADER_BYTES..];
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if crc32c::crc32c(payload) != crc {
        return Err(corrupt(16, "payload CRC mismatch".into()));
    }
    crate::from_archive::<Manifest>(payload)
        .map_err(|e| corrupt(HEADER_BYTES as u64, format!("payload does not decode: {e}")))
}

/// Replaces the manifest in `dir` atomically.
pub fn write(dir: &Path, manifest: &Manifest, faults: &Faults) -> Result<()> {
    write_atomic(&manifest_path(dir), &encode(manifest)?, faults)
}

/// The newest complete manifest in `dir`, if a checkpoint was ever
/// completed there.
pub fn read(dir: &Path) -> Result<Option<Manifest>> {
    let path = manifest_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PersistError::io(path)(e)),
    }
}
