//! The interface between the source loop and a connector's reading: the
//! `Reader` trait each connector implements, the capabilities a reader may
//! offer (`Handoff`, `Intake`) with the types they exchange, what every
//! reader shares with its source (`ReadState`), and where a source stands
//! for a checkpoint (`SourceState`, an rkyv archive in the manifest; its
//! layout is an on-disk format). Connectors import this module and
//! `record`; the registry (`source::open`) imports the connectors.

use std::cell::RefCell;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;

use laminar_exec::batch::Batch;
use laminar_exec::types::Value;

use crate::error::RunError;
pub use crate::net::ingest::Arrival;
use crate::net::ingest::Inbox;

/// Longest record accepted (a multi-line CSV record counts as a whole).
pub const RECORD_BYTES_MAX: usize = 1 << 20;
/// Reports of bad records printed per source before the rest are only
/// counted (the dead-letter file still gets every one).
pub const MALFORMED_REPORTS_MAX: u64 = 100;

/// One bad record, for the caller to report.
#[derive(Debug, Clone)]
pub struct MalformedRecord<'a> {
    pub source: &'a str,
    pub location: &'a str,
    pub line: u64,
    pub reason: &'a str,
}

/// Where a source stands, for a checkpoint: enough to resume reading
/// exactly after the last record before the barrier. Stored in the
/// manifest as an rkyv archive (`SourcePosition::state`), opaque to it.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SourceState {
    /// File: the byte offset of the next record; generator: the next
    /// event index; tcp: the LSN of the shard's WAL after what the source
    /// applied (recovery replays the log from there).
    pub offset: u64,
    /// File: physical lines consumed (for the line numbers of errors).
    pub line: u64,
    pub rows: u64,
    pub malformed: u64,
    pub bytes_read: u64,
    pub max_time: i64,
    pub watermark: i64,
    pub exhausted: bool,
    pub done: bool,
    /// Committed length of the dead-letter file, if there is one.
    pub dead_letter_bytes: u64,
    /// tcp: the connections open at the checkpoint, so that the WAL after
    /// it replays onto them (see `tcp`).
    pub live_connections: Vec<ConnState>,
    /// A followed file: which file `offset` is in, and how its records
    /// were being read (see `follow`).
    pub follow: Option<FollowState>,
}

/// Where a followed file stands besides its offset: the file it was
/// reading (rotation renames it; a checkpoint must find it again) and
/// what it had decided about that file's first line.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FollowState {
    /// The file's device and inode numbers (`st_dev`, `st_ino`).
    pub device: u64,
    pub inode: u64,
    /// CSV: the file's header line, if its first line was one (a resumed
    /// reader decodes by it without reading the line again).
    pub header: Option<Vec<u8>>,
    /// Inside a record over `RECORD_BYTES_MAX`, skipping to its end.
    pub skipping: bool,
}

/// What a reader contributes to its source's `SourceState`.
pub struct ReaderPosition {
    pub offset: u64,
    pub line: u64,
    pub dead_letter_bytes: u64,
    pub max_time: i64,
    pub live_connections: Vec<ConnState>,
    pub follow: Option<FollowState>,
}

/// What every reader of a source shares with it: the counters a
/// checkpoint keeps and the row being decoded.
pub struct ReadState {
    pub name: String,
    pub width: usize,
    pub rows: u64,
    pub malformed: u64,
    pub bytes_read: u64,
    /// The input has no more records.
    pub exhausted: bool,
    /// The row being decoded (moved into the batch, so reused).
    pub scratch: Vec<Value>,
}

/// One connector's reading on one shard. Synchronous: it reads what is
/// there and returns; the source loop decides when to call again.
pub trait Reader {
    /// Reads up to `rows_max` rows into `batch` (a generator: only events
    /// before `index_limit`), counting into `st`; sets `st.exhausted` at
    /// the end of input.
    fn read(
        &mut self,
        st: &mut ReadState,
        batch: &mut Batch,
        rows_max: usize,
        index_limit: u64,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError>;

    /// Rows to reserve in the batch `read` fills; 0 for readers that
    /// hand over batches of their own.
    fn capacity(&self, rows_max: usize, _index_limit: u64) -> usize {
        rows_max
    }

    /// The watermark so far (`i64::MIN` before the first, or without a
    /// WATERMARK clause).
    fn watermark(&self) -> i64;

    /// Where it stands between batches, for a checkpoint.
    fn position(&mut self, st: &ReadState) -> Result<ReaderPosition, RunError>;

    /// Continues from a checkpointed position (just opened on the same
    /// input); the shared counters are restored by `Source::resume`.
    fn resume(&mut self, name: &str, state: &SourceState) -> Result<(), RunError>;

    fn dead_letter_path(&self) -> Option<&Path> {
        None
    }

    /// Whether the input's first line was taken as its header because it
    /// names the declared columns (no `header` option), for the summary.
    fn header_detected(&self) -> bool {
        false
    }

    /// Whether the input ends by itself (a file, a generator) or only
    /// when the service stops (a tcp source may be silent for hours).
    fn bounded(&self) -> bool {
        true
    }

    /// Whether a read now would produce anything (an unbounded source
    /// may have nothing received and no watermark to move).
    fn ready(&self) -> bool {
        true
    }

    /// One shard's part of a source every shard reads: its parts keep
    /// their own pace and its watermark takes no part in cross-shard
    /// alignment (see `shard::source_loop`).
    fn spread(&self) -> bool {
        false
    }

    /// Paced runs: the index of the next event, for readers whose events
    /// have an intended send time (the generator).
    fn next_event_index(&self) -> Option<u64> {
        None
    }

    /// Ends a paced reader at its next event (a closed-loop deadline).
    fn stop(&mut self) {}

    /// `laminar serve` is stopping: an unbounded reader without intake of
    /// its own (a followed file) reads nothing more, so that nothing is
    /// read after the final checkpoint. It does not end: its windows stay
    /// open in the state for the next start.
    fn close(&mut self) {}

    fn handoff(&mut self) -> Option<&mut dyn Handoff> {
        None
    }

    fn handoff_ref(&self) -> Option<&dyn Handoff> {
        None
    }

    fn intake(&mut self) -> Option<&mut dyn Intake> {
        None
    }

    fn intake_ref(&self) -> Option<&dyn Intake> {
        None
    }
}

/// A reader whose chunks are passed between shards in order: a chunk's
/// rows go out only once the chunk before it says where it ended (its
/// `Prefix` token, carried on the mesh; see `split`).
pub trait Handoff {
    /// The chunk whose token this reader waits for, if it does.
    fn wants_token(&self) -> Option<usize>;
    /// Whether reading would decode another chunk ahead meanwhile.
    fn can_read_ahead(&self) -> bool;
    /// The first chunk of a block taken since the last call, if any: its
    /// holder must be told (`SplitClaim`).
    fn take_claim(&mut self) -> Option<usize>;
    /// Takes the awaited chunk's token; returns the next chunk's token
    /// and the shard that took that chunk (None if nobody has yet).
    fn accept(
        &mut self,
        prefix: Prefix,
        source_name: &str,
        counts: &mut ChunkCounts,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Option<(Option<usize>, usize, Prefix)>, RunError>;
}

/// A reader fed by connections of the shard's own (`net::ingest`), whose
/// intake is logged to the shard's WAL before its rows travel on, and
/// acknowledged once the log is on disk.
pub trait Intake {
    /// The queue its connections fill.
    fn inbox(&self) -> &Rc<RefCell<Inbox>>;
    /// Where the shard's WAL stands after what it applied.
    fn wal_lsn(&self) -> u64;
    fn set_wal_lsn(&mut self, lsn: u64);
    /// What the last batch applied, if it must be logged.
    fn take_log(&mut self) -> Option<LoggedBatch>;
    /// Batches read back from the WAL, applied before anything new.
    fn replay(&mut self, batches: Vec<LoggedBatch>);
    /// Batches still to replay.
    fn replaying(&self) -> usize;
    /// Event times held to the skew bound.
    fn outliers(&self) -> u64;
    /// The task that accepts its connections, once (the shard runs it on
    /// the event queue and drops it when intake stops).
    fn take_accept_task(&mut self) -> Option<Pin<Box<dyn std::future::Future<Output = ()>>>>;
}

/// What the chunks before one chunk add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Their largest event time (`i64::MIN` if none).
    pub max_time: i64,
    /// Their physical lines, header included.
    pub lines: u64,
    /// Where this chunk's first record really starts: its bound, unless
    /// the last record before it (a quoted field holding newlines) ran
    /// past the bound.
    pub start: u64,
}

/// What decoding a chunk adds to the source's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChunkCounts {
    pub rows: u64,
    pub malformed: u64,
    pub bytes: u64,
}

/// What a live source applied in one batch, and the clock reading it
/// applied it at: replaying these gives the same rows and watermarks.
/// The payload of a WAL record of kind `Rows`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LoggedBatch {
    /// The source's plan index.
    pub source: u32,
    pub now_ms: i64,
    /// Arrivals, a `Bytes` cut to the part applied.
    pub entries: Vec<Arrival>,
}

/// A connection as a checkpoint keeps it: what the WAL after the
/// checkpoint replays onto.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConnState {
    pub conn: u64,
    pub peer: String,
    /// The unfinished line, whether it is too long, lines completed.
    pub partial: Vec<u8>,
    pub skipping: bool,
    pub lines: u64,
    pub max_time: i64,
    pub watermark: i64,
    pub last_active_ms: i64,
    pub rows: u64,
    pub malformed: u64,
}

pub(crate) fn io_error<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}
