//! Reading one large file on every shard at once, with exactly the results
//! of reading it in order.
//!
//! SPEC makes a file one partition: a record is late against `W = max(event
//! time of the records before it) - delay`. To read a file in parallel and
//! keep that:
//!
//! - `plan` cuts the file into chunks of about `chunk_bytes` after a
//!   newline, without reading the file (only a seek and a short read per
//!   bound). Readers take chunks in file order, `TAKE_CHUNKS` at a time,
//!   from a dispenser (an atomic counter, `FileSplit::take`), whoever asks
//!   first: a reader on a
//!   slower core takes fewer instead of holding the others back, and the
//!   shards still move through the file together, so event times in
//!   flight stay close and window and join state stay as small as
//!   in-order reading keeps them. Each reader may hold up to
//!   `READ_AHEAD_CHUNKS` decoded chunks while it waits for the first
//!   one's token. **Invariant:** the dispenser and its owner table are the
//!   only state the shards share for a split; everything else (tokens,
//!   claims, rows) travels on the mesh.
//! - In CSV a newline inside a quoted field ends no record, so a bound may
//!   fall inside one. A reader decodes a chunk without a `"` byte in one
//!   pass (`Decoder::decode_lines`); a chunk with one, record by record with
//!   the in-order reader's `read_record`, going on past the next bound if
//!   its last record does. The token (below) says where the chunk's
//!   records really start: the end of the record before. If that is not
//!   where the reader started, it decodes the chunk again from there
//!   (rare: a quoted newline across a bound). By induction every chunk's
//!   records are the in-order reader's, without scanning the file for
//!   quotes before the first byte is decoded (that scan was a serial
//!   tenth of a 10M-row run).
//! - A reader decodes a whole chunk (bounded by `chunk_bytes`) before it
//!   emits it, noting its largest event time, the rows where its own
//!   maximum rose (the only ones a watermark mark can follow) and its
//!   line count. To emit
//!   chunk `c` it needs the *prefix* of the chunks before it: their
//!   largest event time, their lines, and where their last record ended.
//!   That comes as a token, a mesh
//!   message from the reader of chunk `c - 1`, which sends it on once it
//!   has both its own prefix and its chunk decoded, to the shard that took
//!   chunk `c`. If nobody has taken `c` yet, it holds the token until a
//!   reader says it took `c` (a `SplitClaim` to every peer). Chunk 0's
//!   prefix is the header's, held by shard 0 the same way. So tokens pass
//!   around the shards in chunk order while the decoding, the costly
//!   part, runs in parallel.
//! - With the prefix a reader places the exact file-order watermark in
//!   band before each record (the prefix's first, then every advance), and
//!   reports malformed records with their true line numbers. Operators fed
//!   by such a source (directly or through projections) judge each row
//!   against the watermark of the port it came on (`Driven::set_port_exact`),
//!   which is the file-order one; their own watermark, the minimum over the
//!   readers, only closes windows. A row is never judged against a
//!   watermark its file position had not reached, and a window is never
//!   closed while a row that belongs to it can still come: the minimum is
//!   never above any port's.
//!
//! Not split: files under `min_bytes`, runs of one shard, sources with a
//! dead-letter file (one file, one writer), and sources whose results
//! could depend on the order rows of one key arrive in (see
//! `PhysicalPlan::order_insensitive`): with several readers, rows of a key arrive from
//! several ports, in an order no longer the file's.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use laminar_exec::batch::Batch;
use laminar_exec::format::{names_columns, Decoder, Format, Lines};
use laminar_exec::plan::{SourceConnector, SourceNode, WatermarkSpec};

use super::reader::{
    io_error, ChunkCounts, Handoff, MalformedRecord, Prefix, ReadState, Reader, ReaderPosition, SourceState,
    RECORD_BYTES_MAX,
};
use super::record::{read_record, strip_newline};
use crate::error::RunError;

/// Files smaller than this are read by one shard (`RunOptions` can say
/// otherwise): splitting costs a scan of the file and a token per chunk.
pub const SPLIT_BYTES_MIN_DEFAULT: u64 = 32 << 20;
/// Chunk size: big enough that a token per chunk is nothing, small enough
/// that a decoded chunk (its rows wait for the token) is a few MiB.
pub const SPLIT_CHUNK_BYTES_DEFAULT: u64 = 1 << 20;

/// Events per chunk of a split generator: about a millisecond of events
/// at a million per second, so paced readers take turns finely.
pub const GENERATOR_CHUNK_EVENTS: u64 = 1024;

/// How a source is shared by the shards.
#[derive(Debug, Clone)]
pub enum SourceSplit {
    /// A file, cut after newlines, with prefix tokens (see the module doc).
    File(Arc<FileSplit>),
    /// The Nexmark generator: shard `r` makes the events of chunks `r`,
    /// `r + shards`, …. Event time grows with the event index, so the
    /// prefix of a chunk is known without a token: the time of the last
    /// event of the source's kind before it.
    Generator { chunk_events: u64 },
}

/// Whether a generator source can be split: its watermark, if any, is on
/// the generator's `date_time` (which grows with the event index, so
/// every reader knows the watermark before any index).
pub fn generator_splittable(node: &SourceNode) -> bool {
    let SourceConnector::Nexmark { kind, columns, .. } = &node.connector else {
        return false;
    };
    let Some(kind) = laminar_nexmark::EventKind::from_name(kind) else {
        return false;
    };
    match node.watermark {
        None => true,
        Some(w) => laminar_nexmark::schema(kind).index_of("date_time") == Some(columns[w.column]),
    }
}

/// How one file is cut.
#[derive(Debug)]
pub struct FileSplit {
    pub path: PathBuf,
    /// Where each chunk starts; the last entry is the file's length.
    pub bounds: Vec<u64>,
    /// The CSV header line (without its newline), when the file has one.
    pub header: Option<Vec<u8>>,
    /// No `header` option, and line 1 named the declared columns.
    pub header_detected: bool,
    /// Lines before the first chunk.
    pub header_lines: u64,
    /// The chunk dispenser: the next chunk nobody has taken.
    next: AtomicUsize,
    /// By chunk: the shard that took it, plus one (0: not taken yet).
    owners: Box<[AtomicUsize]>,
}

impl FileSplit {
    pub fn chunks(&self) -> usize {
        self.bounds.len() - 1
    }

    /// Takes the next block of `TAKE_CHUNKS` chunks (fewer at the end) for
    /// shard `me`: None once all are taken. Blocks go out in file order to
    /// whichever reader asks first, so a reader on a slower core (a busy
    /// hyperthread sibling, a host that takes the vCPU) reads fewer,
    /// rather than holding its peers back.
    fn take(&self, me: usize) -> Option<std::ops::Range<usize>> {
        let first = self.next.fetch_add(TAKE_CHUNKS, Ordering::AcqRel);
        let end = (first + TAKE_CHUNKS).min(self.chunks());
        if first >= end {
            return None;
        }
        for owner in &self.owners[first..end] {
            owner.store(me + 1, Ordering::Release);
        }
        Some(first..end)
    }

    /// The shard that took `chunk`, if one has.
    pub fn owner(&self, chunk: usize) -> Option<usize> {
        self.owners[chunk].load(Ordering::Acquire).checked_sub(1)
    }
}

/// Cuts a file source into chunks for `readers` shards, or None when it is
/// not to be split.
pub fn plan(
    node: &SourceNode,
    readers: usize,
    min_bytes: u64,
    chunk_bytes: u64,
) -> Result<Option<FileSplit>, RunError> {
    let SourceConnector::File {
        path,
        format,
        header,
        delimiter,
        dead_letter,
        follow,
    } = &node.connector
    else {
        return Ok(None);
    };
    // A followed file has no end to split at, and is read in order.
    if follow.is_some() {
        return Ok(None);
    }
    let len = std::fs::metadata(path)
        .map_err(io_error("opening source file", path))?
        .len();
    if readers < 2 || dead_letter.is_some() || len < min_bytes.max(1) {
        return Ok(None);
    }
    let chunk_bytes = chunk_bytes.max(1);
    let file = File::open(path).map_err(io_error("opening source file", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (header_bytes, data_start) = if *header != Some(false) && *format == Format::Csv {
        let mut h = Vec::new();
        let n = reader.read_until(b'\n', &mut h).map_err(io_error("reading", path))?;
        strip_newline(&mut h);
        match header.is_some() || names_columns(&h, *delimiter, &node.declared) {
            true => (Some(h), n as u64),
            // No header option and a first line of data.
            false => (None, 0),
        }
    } else {
        (None, 0)
    };
    let header_detected = header.is_none() && header_bytes.is_some();
    // Bounds go after the first newline at or past each target. In CSV a
    // newline inside a quoted field is no record end, so a bound can fall
    // inside a record: readers find out and correct it (see `accept`), so
    // the file need not be scanned for quotes before reading starts.
    let mut bounds = vec![data_start];
    let mut file = reader.into_inner();
    let mut target = data_start + chunk_bytes;
    // A line is rarely longer than this: one short read finds the next
    // newline (64 KiB reads made planning a 1 GB file a serial 62 MB).
    let mut buf = vec![0u8; 4 << 10];
    while target < len {
        file.seek(SeekFrom::Start(target - 1))
            .map_err(io_error("reading", path))?;
        let mut at = target - 1;
        let found = loop {
            let n = file.read(&mut buf).map_err(io_error("reading", path))?;
            if n == 0 {
                break None;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                break Some(at + i as u64 + 1);
            }
            at += n as u64;
        };
        match found {
            Some(b) if b < len => {
                bounds.push(b);
                target = b + chunk_bytes;
            }
            _ => break,
        }
    }
    bounds.push(len);
    if bounds.len() < 3 {
        return Ok(None); // one chunk: nothing to share
    }
    let owners = (0..bounds.len() - 1).map(|_| AtomicUsize::new(0)).collect();
    Ok(Some(FileSplit {
        path: path.clone(),
        bounds,
        header_lines: u64::from(header_bytes.is_some()),
        header: header_bytes,
        header_detected,
        next: AtomicUsize::new(0),
        owners,
    }))
}

/// A decoded chunk, waiting for its prefix.
struct Decoded {
    chunk: usize,
    /// Where decoding started (the chunk's bound, or the corrected start
    /// a token brought) and where its last record ended (at or past the
    /// next bound).
    start: u64,
    end: u64,
    /// The rows in batches of at most `EMIT_ROWS`, the lines, the largest
    /// event time and where it rose, and the malformed records by line.
    lines: Lines,
    /// Bytes read, up to `end`.
    bytes: u64,
}

/// Decoded chunks a reader may hold while it waits for the first one's
/// token. More than one lets a reader on a faster core go on decoding while
/// a slower peer finishes the chunk before, instead of the two taking
/// strict turns; each holds at most a chunk's rows. Twelve hid most of the
/// waits for tokens in a 10M-row projection (4: 300-350 ms a shard of a
/// 2.2 s run; 12: 80-360 ms) for about 30 MB a shard.
pub const READ_AHEAD_CHUNKS: usize = 12;

/// Chunks a reader takes at once. Within a block the token stays on its
/// shard; between blocks it crosses to a peer, which takes it up only
/// between its own chunks and batches (up to a chunk's decoding, ~2 ms):
/// with single chunks the token crossed at almost every chunk and the
/// faster shard waited 100-200 ms of a 0.7 s run.
pub const TAKE_CHUNKS: usize = 4;

/// Rows per batch a chunk is emitted in. The shard takes tokens between
/// batches: a chunk emitted whole (a projection and its encoding, several
/// milliseconds) kept the next token waiting that long, and the token
/// chain, not the cores, set the pace. The rows are decoded straight into
/// batches of this size, so the split costs no copy.
pub const EMIT_ROWS: usize = 2048;

/// One shard's part of a split file.
pub struct SplitReader {
    split: Arc<FileSplit>,
    /// This shard.
    me: usize,
    /// The first chunk of the block this reader took last, until the shard
    /// has told its peers (see `take_claim`). The block's other chunks
    /// need no claim: their owner is known before the chunk before them
    /// is accepted, so their tokens are never held.
    claimed: Option<usize>,
    /// The rest of the block of chunks this reader took.
    block: std::ops::Range<usize>,
    file: File,
    /// The chunk being decoded, read whole (at most a chunk's bytes).
    buf: Vec<u8>,
    decoder: Box<dyn Decoder>,
    format: Format,
    delimiter: u8,
    width: usize,
    watermark: Option<WatermarkSpec>,
    /// Decoded chunks in the order taken (so in file order), waiting for
    /// the first one's token; at most `READ_AHEAD_CHUNKS`.
    decoded: VecDeque<Decoded>,
    /// The rows of the chunks whose tokens came, with their marks, in
    /// batches of at most `EMIT_ROWS`.
    emitting: VecDeque<Batch>,
    /// Every chunk is taken.
    taken_all: bool,
    record: Vec<u8>,
    /// The watermark this reader last placed (for the source loop).
    pub current: i64,
}

impl SplitReader {
    pub fn open(node: &SourceNode, split: Arc<FileSplit>, me: usize) -> Result<SplitReader, RunError> {
        let SourceConnector::File {
            path,
            format,
            delimiter,
            ..
        } = &node.connector
        else {
            unreachable!("only files are split");
        };
        let decoder = node
            .decoder(*format, split.header.as_deref(), *delimiter)
            .map_err(|e| RunError::Source {
                source_name: node.name.clone(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let file = File::open(path).map_err(io_error("opening source file", path))?;
        Ok(SplitReader {
            me,
            claimed: None,
            block: 0..0,
            file,
            buf: Vec::new(),
            decoder,
            format: *format,
            delimiter: *delimiter,
            width: node.schema.len(),
            watermark: node.watermark,
            decoded: VecDeque::new(),
            emitting: VecDeque::new(),
            taken_all: false,
            record: Vec::new(),
            current: i64::MIN,
            split,
        })
    }

    /// The next batch to emit: a chunk's rows once its token came, else an
    /// inert one after decoding another chunk ahead (the caller then asks
    /// `wants_token`) or while waiting. None once every chunk of this
    /// reader is out.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, RunError> {
        if let Some(b) = self.emitting.pop_front() {
            return Ok(Some(b));
        }
        if self.can_read_ahead() {
            if self.block.is_empty() {
                self.block = self.split.take(self.me).unwrap_or(0..0);
                self.claimed = (!self.block.is_empty()).then_some(self.block.start);
            }
            match self.block.next() {
                Some(chunk) => {
                    let decoded = self.decode(chunk, self.split.bounds[chunk])?;
                    self.decoded.push_back(decoded);
                }
                None => self.taken_all = true,
            }
        }
        if self.taken_all && self.decoded.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch::new(self.width)))
    }

    /// Decodes the records of chunk `chunk` that start at `start` (its
    /// bound, or a corrected start inside it) or later and before the
    /// next bound; the last one may run past that bound.
    fn decode(&mut self, chunk: usize, start: u64) -> Result<Decoded, RunError> {
        let path = &self.split.path;
        let bound = self.split.bounds[chunk + 1];
        let (watermark, width) = (self.watermark, self.width);
        let mut d = Decoded {
            chunk,
            start,
            end: start.max(bound),
            lines: Lines::new(width, EMIT_ROWS, watermark.map(|w| w.column), RECORD_BYTES_MAX),
            bytes: 0,
        };
        if start >= bound {
            return Ok(d); // a record before ran over the whole chunk
        }
        let len = usize::try_from(bound - start).expect("a chunk is bounded by the split's chunk size");
        // Zeroed only when it grows: the read overwrites what it keeps.
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let buf = &mut self.buf[..len];
        self.file.read_exact_at(buf, start).map_err(io_error("reading", path))?;
        let buf = &self.buf[..len];
        let decoder = self.decoder.as_mut();
        let quoted = self.format == Format::Csv && memchr::memchr(b'"', buf).is_some();
        if self.format == Format::Csv && !quoted {
            // No quote in these bytes: a record is a line, and the decoder
            // takes them all at once.
            d.bytes = len as u64;
            decoder.decode_lines(buf, &mut d.lines);
        } else {
            // Records as the in-order reader reads them; a quoted field may
            // carry the last one past the bound, so the file goes on behind
            // the chunk's bytes.
            let rest = BufReader::with_capacity(
                64 << 10,
                FileFrom {
                    file: &self.file,
                    at: bound,
                },
            );
            let mut input = buf.chain(rest);
            let mut at = start;
            while at < bound {
                let Some(r) = read_record(&mut input, &mut self.record, self.format, self.delimiter)
                    .map_err(io_error("reading", path))?
                else {
                    break;
                };
                at += r.bytes;
                d.bytes += r.bytes;
                let first_line = d.lines.lines + 1;
                d.lines.lines += r.lines;
                if r.blank {
                    continue;
                }
                let record = &self.record;
                d.lines.record(first_line, r.too_long, |values| {
                    decoder.decode(record, values).map_err(|e| decoder.explain(record, e))
                });
            }
            d.end = at.max(bound);
        }
        Ok(d)
    }
}

impl Reader for SplitReader {
    fn capacity(&self, _rows_max: usize, _index_limit: u64) -> usize {
        0
    }

    fn read(
        &mut self,
        st: &mut ReadState,
        batch: &mut Batch,
        _rows_max: usize,
        _index_limit: u64,
        _on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        // Rows, counts and malformed records come with each chunk's token
        // (`Source::accept_token`); here a chunk is decoded ahead or its
        // rows handed out.
        match self.next_batch()? {
            Some(b) => *batch = b,
            None => st.exhausted = true,
        }
        Ok(())
    }

    fn watermark(&self) -> i64 {
        self.current
    }

    fn spread(&self) -> bool {
        true
    }

    fn header_detected(&self) -> bool {
        self.split.header_detected
    }

    fn position(&mut self, st: &ReadState) -> Result<ReaderPosition, RunError> {
        Err(RunError::Source {
            source_name: st.name.clone(),
            path: self.split.path.clone(),
            reason: "a file read in parallel by several shards cannot be checkpointed".into(),
        })
    }

    fn resume(&mut self, name: &str, _state: &SourceState) -> Result<(), RunError> {
        Err(RunError::Source {
            source_name: name.to_string(),
            path: self.split.path.clone(),
            reason: "a file read in parallel by several shards cannot be resumed".into(),
        })
    }

    fn handoff(&mut self) -> Option<&mut dyn Handoff> {
        Some(self)
    }

    fn handoff_ref(&self) -> Option<&dyn Handoff> {
        Some(self)
    }
}

impl Handoff for SplitReader {
    /// The first chunk of a block this reader took since the last call:
    /// the shard tells its peers, one of which may hold that chunk's token
    /// (see `Source::accept_token`).
    fn take_claim(&mut self) -> Option<usize> {
        self.claimed.take()
    }

    /// The chunk whose prefix token this reader waits for, if it does.
    fn wants_token(&self) -> Option<usize> {
        self.decoded.front().map(|d| d.chunk)
    }

    /// Whether `next_batch` would take and decode another chunk.
    fn can_read_ahead(&self) -> bool {
        self.emitting.is_empty() && !self.taken_all && self.decoded.len() < READ_AHEAD_CHUNKS
    }

    /// Takes the prefix of the awaited chunk: places the marks, reports
    /// the chunk's malformed records, and returns the token for the next
    /// chunk with the shard that reads it (None after the last chunk).
    fn accept(
        &mut self,
        prefix: Prefix,
        source_name: &str,
        counts: &mut ChunkCounts,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Option<(Option<usize>, usize, Prefix)>, RunError> {
        let Some(mut d) = self.decoded.pop_front() else {
            panic!("a token arrived for a chunk this reader does not wait for");
        };
        if d.start != prefix.start {
            // The record before this chunk ran past its bound (a quoted
            // field with newlines): the chunk was decoded from a point
            // inside a record. Decode it again from where records really
            // start. Rare, and bounded by the chunk's size.
            debug_assert!(
                prefix.start > d.start,
                "a record cannot end before the bound it ran past"
            );
            d = self.decode(d.chunk, prefix.start)?;
        }
        let Lines {
            mut batches,
            max_time: chunk_max_time,
            advances,
            lines,
            rows,
            bad,
            ..
        } = d.lines;
        counts.rows += rows;
        counts.malformed += bad.len() as u64;
        counts.bytes += d.bytes;
        let location = self.split.path.display().to_string();
        for (line_in_chunk, reason) in &bad {
            on_malformed(MalformedRecord {
                source: source_name,
                location: &location,
                line: prefix.lines + line_in_chunk,
                reason,
            });
        }
        // The file-order watermark: the prefix's, then every advance,
        // placed among the chunk's rows where they stand.
        let mut max_time = prefix.max_time;
        if let Some(spec) = self.watermark {
            let delay = spec.delay_ms;
            let current = &mut self.current;
            if max_time > i64::MIN {
                let w = max_time.saturating_sub(delay);
                if w > *current {
                    *current = w;
                    batches[0].push_mark_at(0, w);
                }
            }
            // Only where the chunk's own maximum rose can the file's.
            for (b, i, t) in advances {
                if t > max_time {
                    max_time = t;
                    let w = t.saturating_sub(delay);
                    if w > *current {
                        *current = w;
                        batches[b].push_mark_at(i + 1, w);
                    }
                }
            }
        }
        self.emitting.extend(batches.into_iter().filter(|b| !b.is_inert()));
        let next = d.chunk + 1;
        Ok((next < self.split.chunks()).then(|| {
            (
                self.split.owner(next),
                next,
                Prefix {
                    max_time: prefix.max_time.max(chunk_max_time),
                    lines: prefix.lines + lines,
                    start: d.end,
                },
            )
        }))
    }
}

/// Reads a file from a position on, with positioned reads (the reader's
/// file handle has no cursor to share).
struct FileFrom<'a> {
    file: &'a File,
    at: u64,
}

impl Read for FileFrom<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_exec::types::{DataType, Field, Schema};

    fn node(path: &std::path::Path, header: bool) -> SourceNode {
        SourceNode {
            name: "s".into(),
            schema: Schema::new(vec![Field::new("k", DataType::Str), Field::new("ts", DataType::Int)]),
            connector: SourceConnector::File {
                path: path.to_path_buf(),
                format: Format::Csv,
                header: Some(header),
                delimiter: b',',
                dead_letter: None,
                follow: None,
            },
            watermark: Some(WatermarkSpec { column: 1, delay_ms: 0 }),
            used_columns: vec![true, true],
            validate_all: false,
            declared: Schema::new(vec![Field::new("k", DataType::Str), Field::new("ts", DataType::Int)]),
        }
    }

    /// Where the in-order reader starts each record.
    fn record_starts(text: &[u8], header: bool) -> Vec<u64> {
        let mut reader = BufReader::new(text);
        let mut pos = 0u64;
        let mut record = Vec::new();
        if header {
            pos += reader.read_until(b'\n', &mut record).unwrap() as u64;
        }
        let mut starts = vec![pos];
        while let Some(r) = read_record(&mut reader, &mut record, Format::Csv, b',').unwrap() {
            pos += r.bytes;
            starts.push(pos);
        }
        starts
    }

    #[test]
    fn bounds_fall_on_line_starts_and_on_record_starts_without_quotes() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text, header) in [
            (
                "plain.csv",
                "k,ts\na,1\nbb,2\nccc,3\nd,4\neeeee,5\nf,6\n".to_string(),
                true,
            ),
            (
                "quoted.csv",
                "\"a\nb\",1\n\"x,\"\"y\"\"\nz\",2\nplain,3\n\"q\",4\n\"long\n\n\n\",5\nlast,6".to_string(),
                false,
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &text).unwrap();
            let starts = record_starts(text.as_bytes(), header);
            let line_starts: Vec<u64> = std::iter::once(0)
                .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i as u64 + 1))
                .collect();
            for chunk_bytes in [1, 3, 7, 20] {
                let split = plan(&node(&path, header), 2, 0, chunk_bytes).unwrap().expect("split");
                assert_eq!(*split.bounds.last().unwrap(), text.len() as u64);
                for b in &split.bounds[..split.bounds.len() - 1] {
                    // Readers correct a bound inside a quoted record; one
                    // in a file without quotes is always a record start.
                    let expected = if name == "plain.csv" { &starts } else { &line_starts };
                    assert!(
                        expected.contains(b),
                        "{name} @{chunk_bytes}: bound {b} is not a start {expected:?}"
                    );
                }
                assert!(split.bounds.windows(2).all(|w| w[0] < w[1]), "{:?}", split.bounds);
            }
        }
    }

    #[test]
    fn every_chunk_is_taken_once_and_its_owner_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        let text: String = (0..3000).map(|i| format!("k{i},{i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let split = Arc::new(plan(&node(&path, false), 3, 0, 16).unwrap().expect("split"));
        assert!(split.chunks() > 1000);
        let taken: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|me| {
                    let split = &split;
                    scope.spawn(move || std::iter::from_fn(|| split.take(me)).flatten().collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<usize> = taken.concat();
        all.sort_unstable();
        assert_eq!(all, (0..split.chunks()).collect::<Vec<_>>(), "each chunk once");
        for (me, chunks) in taken.iter().enumerate() {
            assert!(
                chunks.windows(2).all(|w| w[0] < w[1]),
                "a reader takes chunks in file order"
            );
            assert!(chunks.iter().all(|&c| split.owner(c) == Some(me)));
        }
        assert_eq!(split.take(0), None, "nothing after the last chunk");
    }

    #[test]
    fn small_files_and_single_chunks_are_not_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, "k,ts\na,1\n").unwrap();
        assert!(
            plan(&node(&path, true), 2, 1 << 20, 1).unwrap().is_none(),
            "under min_bytes"
        );
        assert!(plan(&node(&path, true), 2, 0, 1 << 20).unwrap().is_none(), "one chunk");
        assert!(plan(&node(&path, true), 1, 0, 1).unwrap().is_none(), "one reader");
    }
}
