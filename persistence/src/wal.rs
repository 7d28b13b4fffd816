//! The per-shard write-ahead log.
//!
//! Each shard appends to its own log, a sequence of *segment* files in
//! the state directory, written through glommio DMA files (O_DIRECT) on
//! the shard's own executor. Appends are buffered; *group commit* makes
//! them durable with one `fdatasync` per group, when the unsynced bytes
//! reach `WalConfig::group_commit_bytes` or when the shard's housekeeping
//! finds the oldest unsynced append older than `group_commit_interval`.
//! A segment is closed and the next one started when it passes
//! `segment_bytes_max`; segments that a checkpoint covers are deleted.
//!
//! Positions in the log are *LSNs*: the byte position in the logical log
//! (segment headers excluded), so LSN order is append order across
//! segments.
//!
//! # Format (version `FORMAT_VERSION`), all integers little-endian
//!
//! File name: `wal-SSSS-QQQQQQQQQQQQQQQQ.log`, shard `S` (4 decimal
//! digits) and segment sequence number `Q` (16 hex digits).
//!
//! Segment header, one 4096-byte block:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 8 | magic `LAMINWAL` |
//! | 8 | 4 | `FORMAT_VERSION` |
//! | 12 | 4 | shard |
//! | 16 | 8 | segment sequence number |
//! | 24 | 8 | LSN of the first record |
//! | 32 | 8 | unsynced window: the most bytes the writer ever left unsynced |
//! | 40 | 4 | CRC32C of bytes 0..40 |
//! | 44 | 4052 | zero |
//!
//! Records follow from offset 4096, each starting at a multiple of 8:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4 | payload length `n` (at most `RECORD_PAYLOAD_BYTES_MAX`) |
//! | 4 | 4 | CRC32C of bytes 0..4 followed by bytes 8..24+n |
//! | 8 | 8 | epoch (the checkpoint epoch the record belongs to) |
//! | 16 | 1 | kind (1..=255; never 0) |
//! | 17 | 7 | zero |
//! | 24 | n | payload (opaque here; the reactor writes rkyv archives) |
//! | 24+n | 0..7 | zero padding to a multiple of 8 |
//!
//! An all-zero record header ends the segment's data. A closed segment is
//! truncated to its last record; the newest one ends in the padding of its
//! last group commit's DMA block, which glommio fills with whatever its
//! buffer held: recovery reads that as a torn tail (it starts within the
//! unsynced window) and cuts it, never as records (a CRC guards each).
//!
//! # What recovery trusts
//!
//! A record is valid when its header is plausible (kind non-zero, length
//! within bounds and within the file) and its CRC matches. Reading stops
//! at the first invalid record of a segment. In the *last* segment, an
//! invalid record that starts within the header's unsynced window of the
//! end of the file is a torn write: the file is truncated there (the data
//! was never acknowledged as durable) and reading ends. Anywhere else
//! (an earlier segment, or further from the end than any write can have
//! been left unsynced) it is corruption: `PersistError::Corrupt`, naming
//! the file and offset, and recovery stops instead of guessing.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_lite::io::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriter, DmaStreamWriterBuilder};

use crate::error::{PersistError, Result};
use crate::fault::{FaultPoint, Faults};

/// The version of the segment and record layout above.
pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_MAGIC: &[u8; 8] = b"LAMINWAL";
pub const SEGMENT_HEADER_BYTES: u64 = 4096;
pub const RECORD_HEADER_BYTES: usize = 24;
/// The largest payload of one record; callers split larger data.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// DMA writes are whole blocks of this size.
const BLOCK_BYTES: u64 = 4096;

/// A position in a shard's log.
pub type Lsn = u64;

/// What a record holds. The WAL only stores the byte; the meaning is the
/// reactor's, listed here so the format is written down in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// What a live (tcp) source applied in one batch: the reactor's
    /// `live::LoggedBatch` as an rkyv archive (the arrivals, the applied
    /// part of each, and the clock reading they were applied at).
    Rows = 1,
    /// A source's offset and watermark after the rows before it.
    SourceProgress = 2,
    /// Checkpoint barrier `epoch` was injected here.
    Barrier = 3,
}

impl RecordKind {
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Rows),
            2 => Some(RecordKind::SourceProgress),
            3 => Some(RecordKind::Barrier),
            _ => None,
        }
    }
}

/// The knobs of a shard's log; units in the names.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub shard: u32,
    /// A segment is closed and the next one started past this size.
    pub segment_bytes_max: u64,
    /// Unsynced bytes that force a commit at the next append.
    pub group_commit_bytes: usize,
    /// The oldest unsynced append is made durable after this long (by
    /// whoever calls `commit_due` / `commit`; the shard's housekeeping).
    pub group_commit_interval: Duration,
    /// DMA buffer size and how many buffers may be in flight.
    pub buffer_bytes: usize,
    pub write_behind: usize,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>, shard: u32) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            shard,
            segment_bytes_max: 64 << 20,
            group_commit_bytes: 256 << 10,
            group_commit_interval: Duration::from_millis(2),
            buffer_bytes: 128 << 10,
            write_behind: 2,
        }
    }

    /// The most bytes a writer with this configuration can leave
    /// unsynced: a full group, the record that overflowed it, and the
    /// block padding of the last sync on either side.
    pub fn unsynced_window_bytes(&self) -> u64 {
        (self.group_commit_bytes + RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX) as u64
            + (self.buffer_bytes * self.write_behind.max(1)) as u64
            + 2 * BLOCK_BYTES
    }
}

pub fn segment_path(dir: &Path, shard: u32, seq: u64) -> PathBuf {
    dir.join(format!("wal-{shard:04}-{seq:016x}.log"))
}

fn parse_segment_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    let (shard, seq) = rest.split_once('-')?;
    if shard.len() != 4 || seq.len() != 16 {
        return None;
    }
    Some((shard.parse().ok()?, u64::from_str_radix(seq, 16).ok()?))
}

/// A segment file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub seq: u64,
    pub first_lsn: Lsn,
    pub unsynced_window_bytes: u64,
}

/// The 4096-byte header of segment `seq` of `shard` (see the format).
pub fn encode_segment_header(shard: u32, seq: u64, first_lsn: Lsn, window: u64) -> Vec<u8> {
    let mut h = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&shard.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..32].copy_from_slice(&first_lsn.to_le_bytes());
    h[32..40].copy_from_slice(&window.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..40]);
    h[40..44].copy_from_slice(&crc.to_le_bytes());
    h
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn decode_segment_header(path: &Path, shard: u32, seq: u64, h: &[u8]) -> Result<Segment> {
    let corrupt = |reason: &str| PersistError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.to_string(),
    };
    if h.len() < 44 {
        return Err(corrupt("shorter than a segment header"));
    }
    if &h[0..8] != SEGMENT_MAGIC {
        return Err(corrupt("not a laminar WAL segment (bad magic)"));
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return Err(PersistError::Version {
            path: path.to_path_buf(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    if crc32c::crc32c(&h[0..40]) != u32_at(h, 40) {
        return Err(corrupt("segment header CRC mismatch"));
    }
    if u32_at(h, 12) != shard || u64_at(h, 16) != seq {
        return Err(corrupt(
            "segment header names another shard or sequence than its file name",
        ));
    }
    Ok(Segment {
        path: path.to_path_buf(),
        seq,
        first_lsn: u64_at(h, 24),
        unsynced_window_bytes: u64_at(h, 32),
    })
}

/// The segments of `shard` in `dir`, oldest first, headers checked. A
/// newest segment whose header never became durable is removed.
pub fn list_segments(dir: &Path, shard: u32) -> Result<Vec<Segment>> {
    scan_segments(dir, shard, true)
}

/// Lists the segments; `recovering`: a newest segment torn before its
/// first commit is removed (at start, when no writer can be writing it).
/// Otherwise (a live writer may have its header still in its buffer) it
/// is only left out.
fn scan_segments(dir: &Path, shard: u32, recovering: bool) -> Result<Vec<Segment>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(PersistError::io(dir)(e)),
    };
    let mut named = Vec::new();
    for entry in entries {
        let entry = entry.map_err(PersistError::io(dir))?;
        let name = entry.file_name();
        let Some((s, seq)) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        if s == shard {
            named.push((seq, entry.path()));
        }
    }
    named.sort();
    let count = named.len();
    for (i, (seq, path)) in named.into_iter().enumerate() {
        let mut header = Vec::with_capacity(44);
        fs::File::open(&path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 44), &mut header))
            .map_err(PersistError::io(&path))?;
        match decode_segment_header(&path, shard, seq, &header) {
            Ok(segment) => found.push(segment),
            // The newest segment's header is synced with its first
            // commit: a crash before that leaves it short or damaged, and
            // it holds nothing that was durable. It goes.
            Err(PersistError::Corrupt { reason, .. }) if i + 1 == count => {
                if recovering {
                    tracing::warn!(file = %path.display(), "WAL: removing a segment torn before its first commit ({reason})");
                    fs::remove_file(&path).map_err(PersistError::io(&path))?;
                    sync_dir(dir)?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    for pair in found.windows(2) {
        if pair[1].first_lsn < pair[0].first_lsn {
            return Err(PersistError::Corrupt {
                path: pair[1].path.clone(),
                offset: 24,
                reason: format!(
                    "first LSN {} is before the previous segment's {}",
                    pair[1].first_lsn, pair[0].first_lsn
                ),
            });
        }
    }
    Ok(found)
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Encodes one record (header, payload, padding) onto `out`.
pub fn encode_record(epoch: u64, kind: RecordKind, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
        return Err(PersistError::TooLarge {
            what: "a WAL record payload",
            got: payload.len(),
            max: RECORD_PAYLOAD_BYTES_MAX,
        });
    }
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&[0; 7]);
    out.extend_from_slice(payload);
    let mut crc = crc32c::crc32c(&out[start..start + 4]);
    crc = crc32c::crc32c_append(crc, &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let padded = align8(out.len() - start);
    out.resize(start + padded, 0);
    Ok(())
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub lsn: Lsn,
    pub epoch: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

/// What decoding at one offset of a segment's bytes gives.
enum Decoded {
    Record {
        epoch: u64,
        kind: RecordKind,
        payload_len: usize,
        next: usize,
    },
    /// An all-zero header, or fewer bytes than a header of zeros: the end.
    End,
    Invalid(String),
}

fn decode_at(data: &[u8], at: usize) -> Decoded {
    let rest = &data[at..];
    if rest.len() < RECORD_HEADER_BYTES {
        return if rest.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Invalid("a record header cut short by the end of the file".into())
        };
    }
    let header = &rest[..RECORD_HEADER_BYTES];
    if header.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let len = u32_at(header, 0) as usize;
    let Some(kind) = RecordKind::from_u8(header[16]) else {
        return Decoded::Invalid(format!("unknown record kind {}", header[16]));
    };
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Decoded::Invalid(format!("record length {len} over the limit {RECORD_PAYLOAD_BYTES_MAX}"));
    }
    if header[17..24].iter().any(|&b| b != 0) {
        return Decoded::Invalid("reserved header bytes are not zero".into());
    }
    if RECORD_HEADER_BYTES + len > rest.len() {
        return Decoded::Invalid(format!("record length {len} runs past the end of the file"));
    }
    let mut crc = crc32c::crc32c(&header[0..4]);
    crc = crc32c::crc32c_append(crc, &rest[8..RECORD_HEADER_BYTES + len]);
    if crc != u32_at(header, 4) {
        return Decoded::Invalid("record CRC mismatch".into());
    }
    Decoded::Record {
        epoch: u64_at(header, 8),
        kind,
        payload_len: len,
        next: at + align8(RECORD_HEADER_BYTES + len),
    }
}

/// What `read_log` found besides the records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadReport {
    /// The LSN just past the last valid record (where a writer resumes).
    pub end_lsn: Lsn,
    /// A torn tail cut off the last segment: (file, offset, bytes cut).
    pub truncated: Option<(PathBuf, u64, u64)>,
    pub segments: usize,
}

/// Reads shard `shard`'s log from `from_lsn` on, calling `each` for every
/// record at or after it, in order. A torn tail of the last segment is
/// truncated on disk (and reported); corruption anywhere else is an error.
pub fn read_log(
    dir: &Path,
    shard: u32,
    from_lsn: Lsn,
    mut each: impl FnMut(WalRecord) -> Result<()>,
) -> Result<ReadReport> {
    let segments = list_segments(dir, shard)?;
    let mut report = ReadReport {
        end_lsn: from_lsn,
        segments: segments.len(),
        ..ReadReport::default()
    };
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        // Segments wholly before `from_lsn` are skipped unread.
        if let Some(next) = segments.get(i + 1) {
            if next.first_lsn <= from_lsn {
                continue;
            }
        }
        let data = fs::read(&segment.path).map_err(PersistError::io(&segment.path))?;
        let header = SEGMENT_HEADER_BYTES as usize;
        let mut at = header.min(data.len());
        loop {
            match decode_at(&data, at) {
                Decoded::Record {
                    epoch,
                    kind,
                    payload_len,
                    next,
                } => {
                    let lsn = segment.first_lsn + (at - header) as u64;
                    if lsn >= from_lsn {
                        each(WalRecord {
                            lsn,
                            epoch,
                            kind,
                            payload: data[at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + payload_len].to_vec(),
                        })?;
                    }
                    at = next.min(data.len());
                }
                Decoded::End => break,
                Decoded::Invalid(reason) => {
                    let from_end = (data.len() - at) as u64;
                    if last && from_end <= segment.unsynced_window_bytes {
                        cut_tail(&segment.path, at as u64)?;
                        report.truncated = Some((segment.path.clone(), at as u64, from_end));
                        tracing::warn!(
                            file = %segment.path.display(),
                            offset = at,
                            bytes = from_end,
                            "WAL: torn tail ({reason}) truncated"
                        );
                        break;
                    }
                    return Err(PersistError::Corrupt {
                        path: segment.path.clone(),
                        offset: at as u64,
                        reason,
                    });
                }
            }
        }
        report.end_lsn = report.end_lsn.max(segment.first_lsn + (at - header) as u64);
    }
    Ok(report)
}

fn cut_tail(path: &Path, offset: u64) -> Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(PersistError::io(path))?;
    file.set_len(offset).map_err(PersistError::io(path))?;
    file.sync_all().map_err(PersistError::io(path))
}

/// Deletes shard `shard`'s segments that hold nothing at or after
/// `lsn` (a checkpoint covers them). The newest segment is always kept.
/// Returns how many were deleted.
/// Deletes the segments wholly before `lsn` (never the newest). Safe
/// while the shard's writer appends: the newest segment, whose header may
/// not be on disk yet, is never touched.
pub fn delete_segments_before(dir: &Path, shard: u32, lsn: Lsn) -> Result<usize> {
    let segments = scan_segments(dir, shard, false)?;
    let mut deleted = 0;
    for pair in segments.windows(2) {
        if pair[1].first_lsn <= lsn {
            fs::remove_file(&pair[0].path).map_err(PersistError::io(&pair[0].path))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

/// fsyncs a directory, making renames and deletions in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PersistError::io(dir))
}

/// Appends to one shard's log on the shard's glommio executor.
pub struct WalWriter {
    config: WalConfig,
    faults: Faults,
    writer: Option<DmaStreamWriter>,
    segment_path: PathBuf,
    segment_seq: u64,
    /// Bytes of records in the current segment (after its header).
    segment_bytes: u64,
    next_lsn: Lsn,
    synced_lsn: Lsn,
    /// When the oldest unsynced append happened.
    unsynced_since: Option<Instant>,
    scratch: Vec<u8>,
    /// fdatasync durations, for the metrics and the benchmark.
    pub sync_latency: Option<hdrhistogram::Histogram<u64>>,
}

impl WalWriter {
    /// Starts a new segment after the shard's existing ones, continuing
    /// at `next_lsn` (from `read_log`'s `end_lsn`, or 0 for a new log).
    pub async fn open(config: WalConfig, next_lsn: Lsn, faults: Faults) -> Result<WalWriter> {
        assert!(config.group_commit_bytes >= 1 && config.buffer_bytes.is_multiple_of(BLOCK_BYTES as usize));
        fs::create_dir_all(&config.dir).map_err(PersistError::io(&config.dir))?;
        let seq = list_segments(&config.dir, config.shard)?
            .last()
            .map(|s| s.seq + 1)
            .unwrap_or(0);
        let mut wal = WalWriter {
            config,
            faults,
            writer: None,
            segment_path: PathBuf::new(),
            segment_seq: seq,
            segment_bytes: 0,
            next_lsn,
            synced_lsn: next_lsn,
            unsynced_since: None,
            scratch: Vec::new(),
            sync_latency: None,
        };
        wal.start_segment(seq).await?;
        Ok(wal)
    }

    async fn start_segment(&mut self, seq: u64) -> Result<()> {
        let path = segment_path(&self.config.dir, self.config.shard, seq);
        let file = DmaFile::create(&path).await.map_err(|e| PersistError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        let mut writer = DmaStreamWriterBuilder::new(file)
            .with_buffer_size(self.config.buffer_bytes)
            .with_write_behind(self.config.write_behind)
            .build();
        let header = encode_segment_header(
            self.config.shard,
            seq,
            self.next_lsn,
            self.config.unsynced_window_bytes(),
        );
        writer.write_all(&header).await.map_err(PersistError::io(&path))?;
        // The header is synced with the segment's first commit; until
        // then the segment may vanish, which loses only unsynced data.
        self.writer = Some(writer);
        self.segment_path = path;
        self.segment_seq = seq;
        self.segment_bytes = 0;
        sync_dir(&self.config.dir)
    }

    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Everything before this LSN is on disk.
    pub fn synced_lsn(&self) -> Lsn {
        self.synced_lsn
    }

    pub fn segment_path(&self) -> &Path {
        &self.segment_path
    }

    /// Appends a record; returns its LSN. It is durable once
    /// `synced_lsn()` passes it. Commits first when the group is full.
    pub async fn append(&mut self, epoch: u64, kind: RecordKind, payload: &[u8]) -> Result<Lsn> {
        self.faults.check(FaultPoint::WalAppend)?;
        if self.segment_bytes >= self.config.segment_bytes_max {
            self.rotate().await?;
        }
        self.scratch.clear();
        encode_record(epoch, kind, payload, &mut self.scratch)?;
        let writer = self.writer.as_mut().expect("an open segment");
        writer
            .write_all(&self.scratch)
            .await
            .map_err(PersistError::io(&self.segment_path))?;
        let lsn = self.next_lsn;
        self.next_lsn += self.scratch.len() as u64;
        self.segment_bytes += self.scratch.len() as u64;
        self.unsynced_since.get_or_insert_with(Instant::now);
        if (self.next_lsn - self.synced_lsn) as usize >= self.config.group_commit_bytes {
            self.commit().await?;
        }
        Ok(lsn)
    }

    /// Whether the oldest unsynced append has waited `group_commit_interval`.
    pub fn commit_due(&self, now: Instant) -> bool {
        self.unsynced_since
            .is_some_and(|t| now.duration_since(t) >= self.config.group_commit_interval)
    }

    /// Makes every append so far durable (one fdatasync for the group).
    pub async fn commit(&mut self) -> Result<Lsn> {
        if self.synced_lsn == self.next_lsn {
            return Ok(self.synced_lsn);
        }
        self.faults.check(FaultPoint::WalSync)?;
        let started = Instant::now();
        let writer = self.writer.as_ref().expect("an open segment");
        writer.sync().await.map_err(|e| PersistError::Io {
            path: self.segment_path.clone(),
            source: e.into(),
        })?;
        if let Some(h) = &mut self.sync_latency {
            h.saturating_record(started.elapsed().as_nanos() as u64);
        }
        self.synced_lsn = self.next_lsn;
        self.unsynced_since = None;
        Ok(self.synced_lsn)
    }

    async fn rotate(&mut self) -> Result<()> {
        self.commit().await?;
        self.faults.check(FaultPoint::WalRotate)?;
        let mut writer = self.writer.take().expect("an open segment");
        writer.close().await.map_err(PersistError::io(&self.segment_path))?;
        self.start_segment(self.segment_seq + 1).await
    }

    /// Commits and closes the segment (trimming its block padding).
    pub async fn close(mut self) -> Result<Lsn> {
        let lsn = self.commit().await?;
        if let Some(mut writer) = self.writer.take() {
            writer.close().await.map_err(PersistError::io(&self.segment_path))?;
        }
        Ok(lsn)
    }
}

/// Writes `bytes` to `path` durably and atomically: a temporary file in
/// the same directory, fsync, rename over `path`, fsync of the directory.
/// A crash leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], faults: &Faults) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    faults.check(FaultPoint::ManifestWrite)?;
    {
        let mut file = fs::File::create(&tmp).map_err(PersistError::io(&tmp))?;
        file.write_all(bytes).map_err(PersistError::io(&tmp))?;
        file.sync_all().map_err(PersistError::io(&tmp))?;
    }
    faults.check(FaultPoint::ManifestRename)?;
    fs::rename(&tmp, path).map_err(PersistError::io(path))?;
    sync_dir(dir)
}
