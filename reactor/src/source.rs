//! Sources: read records, decode them into rows, and compute the
//! per-partition watermark after every record.
//!
//! A file is one partition; so is the whole generator stream. The
//! watermark is `max(event time seen) - delay`, advanced after each good
//! record and placed in band in the batch right after that record, so
//! operators can decide lateness against exactly the watermark that held
//! before each record. End of input is the watermark `+∞`.
//!
//! A malformed record is reported (path, line, reason), written to the
//! dead-letter file when one is configured, counted, and skipped; the
//! records around it are processed.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use laminar_bench::nexmark::{EventKind, Generator, NexmarkConfig};
use laminar_exec::batch::{Batch, Op, WATERMARK_END};
use laminar_exec::format::{csv_record_incomplete_with, Decoder, Format};
use laminar_exec::plan::{SourceConnector, SourceNode, WatermarkSpec};
use laminar_exec::types::Value;

use crate::split::{ChunkCounts, FileSplit, Prefix, SplitReader};
use crate::RunError;

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

/// Tracks `max(event time) - delay` for one partition.
struct WatermarkTracker {
    spec: Option<WatermarkSpec>,
    max_time: i64,
    current: i64,
}

impl WatermarkTracker {
    fn new(spec: Option<WatermarkSpec>) -> WatermarkTracker {
        WatermarkTracker {
            spec,
            max_time: i64::MIN,
            current: i64::MIN,
        }
    }

    /// Takes `time` as the largest event time seen so far (events before
    /// this reader's part of a split source); returns the new watermark
    /// if it advanced.
    fn advance_to(&mut self, time: i64) -> Option<i64> {
        let spec = self.spec?;
        if time <= self.max_time {
            return None;
        }
        self.max_time = time;
        let w = time.saturating_sub(spec.delay_ms);
        (w > self.current).then(|| {
            self.current = w;
            w
        })
    }

    /// Observes a row; returns the new watermark if it advanced.
    fn observe(&mut self, row: &[Value]) -> Option<i64> {
        match row[self.spec?.column] {
            Value::Ts(t) | Value::Int(t) => self.advance_to(t),
            _ => None,
        }
    }
}

/// A source's dead-letter file: every malformed record, one per line.
pub(crate) struct DeadLetter {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl DeadLetter {
    /// Creates (or, resuming, opens without truncating: `cut_to` then
    /// cuts it back) the file.
    fn open(path: &Path, resuming: bool) -> Result<DeadLetter, RunError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error("creating dead-letter directory", parent))?;
        }
        let file = if resuming {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        } else {
            File::create(path)
        }
        .map_err(io_error("creating dead-letter file", path))?;
        Ok(DeadLetter {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    fn write(&mut self, record: &[u8]) -> Result<(), RunError> {
        self.writer
            .write_all(record)
            .and_then(|_| self.writer.write_all(b"\n"))
            .map_err(io_error("writing dead-letter file", &self.path))
    }

    fn flush(&mut self) -> Result<(), RunError> {
        self.writer
            .flush()
            .map_err(io_error("writing dead-letter file", &self.path))
    }

    /// Flushes and returns the length on disk (what a checkpoint commits).
    fn committed_len(&mut self) -> Result<u64, RunError> {
        self.flush()?;
        Ok(self
            .writer
            .get_ref()
            .metadata()
            .map_err(io_error("writing dead-letter file", &self.path))?
            .len())
    }

    /// Cuts the file back to a checkpoint's committed length.
    fn cut_to(&mut self, len: u64) -> Result<(), RunError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io_error("opening dead-letter file", &self.path))?;
        file.set_len(len)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
            .map_err(io_error("writing dead-letter file", &self.path))?;
        self.writer = BufWriter::new(file);
        Ok(())
    }
}

enum Reader {
    File {
        path: PathBuf,
        reader: BufReader<File>,
        decoder: Box<dyn Decoder>,
        delimiter: u8,
        format: Format,
        line: u64,
        dead_letter: Option<DeadLetter>,
    },
    /// A live TCP source (`laminar serve`, see `live`).
    Live {
        reader: Box<crate::live::LiveReader>,
        location: String,
        dead_letter: Option<DeadLetter>,
    },
    Nexmark {
        generator: Generator,
        kind: EventKind,
        columns: Vec<usize>,
        next: u64,
        end: u64,
        /// Split over shards: (events per chunk, readers); this shard's
        /// `next` only ever points into its own chunks.
        stride: Option<(u64, u64)>,
    },
    /// This shard's chunks of a file read by every shard (see `split`).
    Split { path: PathBuf, reader: SplitReader },
}

/// Where a source stands, for a checkpoint: enough to resume reading
/// exactly after the last record before the barrier.
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
    /// it replays onto them (see `live`).
    pub live_connections: Vec<crate::live::ConnState>,
}

/// A running source.
pub struct Source {
    pub name: String,
    width: usize,
    reader: Reader,
    watermark: WatermarkTracker,
    scratch: Vec<Value>,
    /// A full generator row, before the declared columns are picked.
    generated: Vec<Value>,
    record: Vec<u8>,
    pub rows: u64,
    pub malformed: u64,
    pub bytes_read: u64,
    /// Total input size where known (files), for progress.
    pub bytes_total: Option<u64>,
    /// The input has no more records.
    exhausted: bool,
    /// The end-of-input mark has been returned.
    done: bool,
    /// Return the end-of-input mark in a batch of its own (paced runs:
    /// what the end flushes is not a result of the last events).
    end_apart: bool,
}

pub(crate) fn io_error<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

impl Source {
    pub fn open(node: &SourceNode) -> Result<Source, RunError> {
        Source::open_inner(node, false)
    }

    /// Opens a source and continues from a checkpointed position (see
    /// `resume`); its dead-letter file is kept, not recreated.
    pub fn open_resumed(node: &SourceNode, state: &SourceState) -> Result<Source, RunError> {
        let mut source = Source::open_inner(node, true)?;
        source.resume(state)?;
        Ok(source)
    }

    fn open_inner(node: &SourceNode, resuming: bool) -> Result<Source, RunError> {
        let (reader, bytes_total) = match &node.connector {
            SourceConnector::File {
                path,
                format,
                header,
                delimiter,
                dead_letter,
            } => {
                let file = File::open(path).map_err(io_error("opening source file", path))?;
                let bytes_total = file.metadata().ok().map(|m| m.len());
                let mut reader = BufReader::with_capacity(1 << 20, file);
                let mut line = 0u64;
                let header_bytes = if *header && *format == Format::Csv {
                    let mut h = Vec::new();
                    reader.read_until(b'\n', &mut h).map_err(io_error("reading", path))?;
                    line += 1;
                    strip_newline(&mut h);
                    Some(h)
                } else {
                    None
                };
                let decoder = match (&header_bytes, *header) {
                    (Some(h), _) if h.is_empty() => {
                        // An empty file: no header, no rows.
                        node.decoder(*format, None, *delimiter)
                    }
                    (h, _) => node.decoder(*format, h.as_deref(), *delimiter),
                }
                .map_err(|e| RunError::Source {
                    source_name: node.name.clone(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let dead_letter = dead_letter
                    .as_deref()
                    .map(|p| DeadLetter::open(p, resuming))
                    .transpose()?;
                let reader = Reader::File {
                    path: path.clone(),
                    reader,
                    decoder,
                    delimiter: *delimiter,
                    format: *format,
                    line,
                    dead_letter,
                };
                (reader, bytes_total)
            }
            SourceConnector::Nexmark {
                kind,
                columns,
                events,
                rate_per_sec,
                seed,
            } => {
                let kind = EventKind::from_name(kind).expect("the planner validated the kind");
                let generator = Generator::new(NexmarkConfig {
                    seed: *seed,
                    events: *events,
                    rate_per_sec: *rate_per_sec,
                    ..NexmarkConfig::default()
                });
                (
                    Reader::Nexmark {
                        generator,
                        kind,
                        columns: columns.clone(),
                        next: 0,
                        end: *events,
                        stride: None,
                    },
                    None,
                )
            }
            SourceConnector::Tcp { .. } => {
                return Err(RunError::Source {
                    source_name: node.name.clone(),
                    path: PathBuf::from("tcp"),
                    reason: "a tcp source is served by `laminar serve`".into(),
                })
            }
        };
        Ok(Source::with_reader(node, reader, bytes_total))
    }

    /// Opens a live TCP source over `inbox` (its connections are the
    /// caller's tasks; see `live`), continuing from `resume` if given.
    #[allow(clippy::too_many_arguments)]
    pub fn open_live(
        node: &SourceNode,
        index: usize,
        inbox: Rc<RefCell<crate::live::Inbox>>,
        limits: crate::live::LiveLimits,
        clock: Arc<dyn laminar_exec::time::Clock>,
        location: String,
        resume: Option<&SourceState>,
        logged: bool,
    ) -> Result<Source, RunError> {
        let SourceConnector::Tcp {
            format,
            delimiter,
            dead_letter,
            ..
        } = &node.connector
        else {
            panic!("open_live takes a tcp source");
        };
        let decoder = node.decoder(*format, None, *delimiter).map_err(|e| RunError::Source {
            source_name: node.name.clone(),
            path: PathBuf::from(&location),
            reason: e.to_string(),
        })?;
        let dead_letter = dead_letter
            .as_deref()
            .map(|p| DeadLetter::open(p, resume.is_some()))
            .transpose()?;
        let mut reader = crate::live::LiveReader::new(index, inbox, decoder, node.watermark, limits, clock);
        if logged {
            reader.enable_log();
        }
        let mut source = Source::with_reader(
            node,
            Reader::Live {
                reader: Box::new(reader),
                location,
                dead_letter,
            },
            None,
        );
        if let Some(state) = resume {
            source.resume(state)?;
        }
        Ok(source)
    }

    /// A live source: it never ends by itself, and may have nothing to
    /// read now.
    pub fn is_live(&self) -> bool {
        matches!(self.reader, Reader::Live { .. })
    }

    /// Whether a read now would produce anything (always, but for a live
    /// source with nothing received and no watermark to move).
    pub fn ready(&self) -> bool {
        match &self.reader {
            Reader::Live { reader, .. } => reader.ready(),
            _ => true,
        }
    }

    /// A live source's reader (its inbox, WAL log and replay, counters).
    pub fn live(&self) -> Option<&crate::live::LiveReader> {
        match &self.reader {
            Reader::Live { reader, .. } => Some(reader),
            _ => None,
        }
    }

    pub fn live_mut(&mut self) -> Option<&mut crate::live::LiveReader> {
        match &mut self.reader {
            Reader::Live { reader, .. } => Some(reader),
            _ => None,
        }
    }

    /// Whether a live source still has WAL batches to replay.
    pub fn replaying(&self) -> bool {
        self.live().is_some_and(|l| l.replaying() > 0)
    }

    /// Opens this shard's part of a file split over every shard.
    pub fn open_split(node: &SourceNode, split: Arc<FileSplit>, me: usize) -> Result<Source, RunError> {
        let path = split.path.clone();
        let bytes_total = std::fs::metadata(&path).ok().map(|m| m.len());
        let reader = SplitReader::open(node, split, me)?;
        Ok(Source::with_reader(node, Reader::Split { path, reader }, bytes_total))
    }

    fn with_reader(node: &SourceNode, reader: Reader, bytes_total: Option<u64>) -> Source {
        let width = node.schema.len();
        Source {
            name: node.name.clone(),
            width,
            reader,
            watermark: WatermarkTracker::new(node.watermark),
            scratch: Vec::with_capacity(width),
            generated: Vec::new(),
            record: Vec::new(),
            rows: 0,
            malformed: 0,
            bytes_read: 0,
            bytes_total,
            exhausted: false,
            done: false,
            end_apart: false,
        }
    }

    /// Opens this shard's part of a generator split over `readers` shards
    /// in chunks of `chunk_events` events (see `split::SourceSplit`).
    pub fn open_generator_split(
        node: &SourceNode,
        me: usize,
        readers: usize,
        chunk_events: u64,
    ) -> Result<Source, RunError> {
        let mut source = Source::open(node)?;
        let Reader::Nexmark { next, stride, .. } = &mut source.reader else {
            unreachable!("only generators split this way");
        };
        assert!(readers >= 2 && chunk_events >= 1 && me < readers);
        *next = me as u64 * chunk_events;
        *stride = Some((chunk_events, readers as u64));
        Ok(source)
    }

    /// Whether this is one shard's part of a split source.
    pub fn is_split(&self) -> bool {
        matches!(
            self.reader,
            Reader::Split { .. } | Reader::Nexmark { stride: Some(_), .. }
        )
    }

    /// A split part: the chunk whose prefix token it waits for.
    pub fn split_wants_token(&self) -> Option<usize> {
        match &self.reader {
            Reader::Split { reader, .. } => reader.wants_token(),
            _ => None,
        }
    }

    /// A split part: whether reading would decode another chunk ahead
    /// (it may while it waits for a token).
    pub fn split_can_read_ahead(&self) -> bool {
        match &self.reader {
            Reader::Split { reader, .. } => reader.can_read_ahead(),
            _ => false,
        }
    }

    /// A split part: the first chunk of a block it took since the last
    /// call, if any.
    pub fn split_take_claim(&mut self) -> Option<usize> {
        match &mut self.reader {
            Reader::Split { reader, .. } => reader.take_claim(),
            _ => None,
        }
    }

    /// A split part: takes the awaited chunk's prefix; returns the token
    /// to send on (to the shard that took the chunk, None if nobody has
    /// yet, for chunk), if any.
    pub fn split_accept(
        &mut self,
        prefix: Prefix,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Option<(Option<usize>, usize, Prefix)>, RunError> {
        let Reader::Split { reader, .. } = &mut self.reader else {
            panic!("a split token for a source that is not split");
        };
        let mut counts = ChunkCounts::default();
        let next = reader.accept(prefix, &self.name, &mut counts, on_malformed)?;
        self.rows += counts.rows;
        self.malformed += counts.malformed;
        self.bytes_read += counts.bytes;
        Ok(next)
    }

    /// The watermark so far (`i64::MIN` before the first, or without a
    /// WATERMARK clause).
    pub fn watermark(&self) -> i64 {
        match &self.reader {
            Reader::Split { reader, .. } => reader.current,
            Reader::Live { reader, .. } => reader.watermark,
            _ => self.watermark.current,
        }
    }

    /// Whether the source has a WATERMARK clause.
    pub fn has_watermark(&self) -> bool {
        self.watermark.spec.is_some()
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Makes the end-of-input mark come in a batch of its own.
    pub fn set_end_apart(&mut self) {
        self.end_apart = true;
    }

    /// Ends a generator here, at the next event index: no more events
    /// (a closed-loop run's deadline).
    pub fn stop(&mut self) {
        if let Reader::Nexmark { next, end, .. } = &mut self.reader {
            *end = *next;
        }
    }

    /// Where the source stands now (between batches), for a checkpoint.
    /// Flushes the dead-letter file so its committed length is on disk
    /// before the checkpoint that names it (the coordinator syncs it).
    pub fn position(&mut self) -> Result<SourceState, RunError> {
        let (offset, line, dead_letter_bytes) = match &mut self.reader {
            Reader::File {
                path,
                reader,
                line,
                dead_letter,
                ..
            } => {
                let offset = reader.stream_position().map_err(io_error("reading", path))?;
                let dl = dead_letter.as_mut().map(DeadLetter::committed_len).transpose()?;
                (offset, *line, dl.unwrap_or(0))
            }
            Reader::Live {
                reader, dead_letter, ..
            } => {
                let dl = dead_letter.as_mut().map(DeadLetter::committed_len).transpose()?;
                (reader.wal_lsn, 0, dl.unwrap_or(0))
            }
            Reader::Nexmark { next, .. } => (*next, 0, 0),
            Reader::Split { path, .. } => {
                return Err(RunError::Source {
                    source_name: self.name.clone(),
                    path: path.clone(),
                    reason: "a file read in parallel by several shards cannot be checkpointed".into(),
                })
            }
        };
        Ok(SourceState {
            offset,
            line,
            rows: self.rows,
            malformed: self.malformed,
            bytes_read: self.bytes_read,
            max_time: match &self.reader {
                Reader::Live { reader, .. } => reader.max_seen,
                _ => self.watermark.max_time,
            },
            watermark: self.watermark(),
            exhausted: self.exhausted,
            done: self.done,
            dead_letter_bytes,
            live_connections: match &self.reader {
                Reader::Live { reader, .. } => reader.connection_states(),
                _ => Vec::new(),
            },
        })
    }

    /// The dead-letter file of a file source, if it has one.
    pub fn dead_letter_path(&self) -> Option<&Path> {
        match &self.reader {
            Reader::File {
                dead_letter: Some(d), ..
            }
            | Reader::Live {
                dead_letter: Some(d), ..
            } => Some(&d.path),
            _ => None,
        }
    }

    /// Continues from a checkpointed position (a source just opened on
    /// the same input): seeks past what was read, restores the watermark
    /// and counters, and cuts the dead-letter file back to its committed
    /// length.
    pub fn resume(&mut self, state: &SourceState) -> Result<(), RunError> {
        match &mut self.reader {
            Reader::File {
                path,
                reader,
                line,
                dead_letter,
                ..
            } => {
                let len = reader.get_ref().metadata().map_err(io_error("reading", path))?.len();
                if state.offset > len {
                    return Err(RunError::Recovery {
                        dir: path.clone(),
                        reason: format!(
                            "the checkpoint read {} bytes of this file, which now has {len}: the input changed",
                            state.offset
                        ),
                    });
                }
                reader
                    .seek(SeekFrom::Start(state.offset))
                    .map_err(io_error("reading", path))?;
                *line = state.line;
                if let Some(d) = dead_letter {
                    d.cut_to(state.dead_letter_bytes)?;
                }
            }
            Reader::Live {
                reader, dead_letter, ..
            } => {
                reader.resume(state.offset, state.watermark, state.max_time, &state.live_connections);
                if let Some(d) = dead_letter {
                    d.cut_to(state.dead_letter_bytes)?;
                }
            }
            Reader::Nexmark { next, end, .. } => {
                if state.offset > *end {
                    return Err(RunError::Recovery {
                        dir: PathBuf::from(&self.name),
                        reason: format!("the checkpoint is at event {}, past the generator's end", state.offset),
                    });
                }
                *next = state.offset;
            }
            Reader::Split { path, .. } => {
                return Err(RunError::Source {
                    source_name: self.name.clone(),
                    path: path.clone(),
                    reason: "a file read in parallel by several shards cannot be resumed".into(),
                })
            }
        }
        self.rows = state.rows;
        self.malformed = state.malformed;
        self.bytes_read = state.bytes_read;
        self.watermark.max_time = state.max_time;
        self.watermark.current = state.watermark;
        self.exhausted = state.exhausted;
        self.done = state.done;
        Ok(())
    }

    /// Reads up to `rows_max` rows into a new batch. At the end of input the
    /// batch carries the final watermark and the source is done.
    pub fn next_batch(
        &mut self,
        rows_max: usize,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Batch, RunError> {
        self.next_batch_until(rows_max, u64::MAX, on_malformed)
    }

    /// The index of the next generator event (for pacing); None for a
    /// file.
    pub fn next_event_index(&self) -> Option<u64> {
        match &self.reader {
            Reader::Nexmark { next, .. } => Some(*next),
            Reader::File { .. } | Reader::Split { .. } | Reader::Live { .. } => None,
        }
    }

    /// Like `next_batch`, but a generator stops before event index
    /// `index_limit` (the events due so far in a paced run).
    pub fn next_batch_until(
        &mut self,
        rows_max: usize,
        index_limit: u64,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Batch, RunError> {
        // A paced generator reads only the events due, often one or two.
        let capacity = match &self.reader {
            Reader::Nexmark { next, .. } => {
                rows_max.min(usize::try_from(index_limit.saturating_sub(*next)).unwrap_or(usize::MAX))
            }
            Reader::File { .. } => rows_max,
            Reader::Split { .. } | Reader::Live { .. } => 0,
        };
        let mut batch = Batch::with_capacity(self.width, capacity);
        match &mut self.reader {
            Reader::File {
                path,
                reader,
                decoder,
                delimiter,
                format,
                line,
                dead_letter,
            } => {
                while batch.len() < rows_max {
                    let Some(record) = read_record(reader, &mut self.record, *format, *delimiter)
                        .map_err(io_error("reading", path))?
                    else {
                        self.exhausted = true;
                        break;
                    };
                    let first_line = *line + 1;
                    *line += record.lines;
                    self.bytes_read += record.bytes;
                    if record.blank {
                        continue; // blank lines are not records
                    }
                    let result = record.decode(&self.record, decoder.as_mut(), &mut self.scratch);
                    match result {
                        Ok(()) => {
                            debug_assert_eq!(self.scratch.len(), self.width);
                            // Moved, not cloned, into the batch.
                            let advanced = self.watermark.observe(&self.scratch);
                            batch.push_owned(Op::Insert, self.scratch.drain(..));
                            self.rows += 1;
                            if let Some(w) = advanced {
                                batch.push_mark(w);
                            }
                        }
                        Err(reason) => {
                            self.malformed += 1;
                            let location = path.display().to_string();
                            if self.malformed <= MALFORMED_REPORTS_MAX {
                                on_malformed(MalformedRecord {
                                    source: &self.name,
                                    location: &location,
                                    line: first_line,
                                    reason: &reason,
                                });
                            }
                            if let Some(d) = dead_letter {
                                d.write(&self.record)?;
                            }
                        }
                    }
                }
                if self.exhausted {
                    if let Some(d) = dead_letter {
                        d.flush()?;
                    }
                }
            }
            Reader::Live {
                reader,
                location,
                dead_letter,
                ..
            } => {
                let name = &self.name;
                let mut seen = self.malformed;
                let mut on_bad = |bad: crate::live::BadLine<'_>| {
                    seen += 1;
                    if seen <= MALFORMED_REPORTS_MAX {
                        let at = format!("{location} connection {} from {}", bad.conn, bad.peer);
                        on_malformed(MalformedRecord {
                            source: name,
                            location: &at,
                            line: bad.line,
                            reason: &bad.reason,
                        });
                    }
                    match dead_letter {
                        Some(d) => d.write(bad.bytes),
                        None => Ok(()),
                    }
                };
                batch = reader.next_batch(
                    self.width,
                    rows_max,
                    &mut self.scratch,
                    (&mut self.rows, &mut self.malformed),
                    &mut on_bad,
                )?;
                self.bytes_read = reader.bytes_read;
            }
            Reader::Split { reader, .. } => match reader.next()? {
                Some(b) => batch = b,
                None => self.exhausted = true,
            },
            Reader::Nexmark {
                generator,
                kind,
                columns,
                next,
                end,
                stride,
            } => {
                while batch.len() < rows_max && *next < (*end).min(index_limit) {
                    let i = *next;
                    if let Some((chunk, _)) = *stride {
                        if i % chunk == 0 {
                            // A chunk of this shard begins: the watermark
                            // in file order is that of the last event of
                            // this kind before it (times grow with i).
                            if let Some(prev) = Generator::last_of_kind_before(i, *kind) {
                                if let Some(w) = self.watermark.advance_to(generator.event_time_ms(prev)) {
                                    batch.push_mark(w);
                                }
                            }
                        }
                    }
                    *next += 1;
                    if let Some((chunk, readers)) = *stride {
                        if *next % chunk == 0 {
                            // Past this shard's chunk: on to its next one.
                            *next = next.saturating_add((readers - 1) * chunk);
                        }
                    }
                    // Both buffers are reused: generating a row allocates
                    // nothing (strings stay inline).
                    self.generated.clear();
                    if generator.fill_row(i, *kind, &mut self.generated) {
                        self.scratch.clear();
                        self.scratch
                            .extend(columns.iter().map(|&c| std::mem::take(&mut self.generated[c])));
                        let advanced = self.watermark.observe(&self.scratch);
                        batch.push_owned(Op::Insert, self.scratch.drain(..));
                        self.rows += 1;
                        if let Some(w) = advanced {
                            batch.push_mark(w);
                        }
                    }
                }
                if *next >= *end {
                    self.exhausted = true;
                }
            }
        }
        if self.exhausted && (!self.end_apart || batch.is_empty()) {
            self.done = true;
            batch.push_mark(WATERMARK_END);
        }
        Ok(batch)
    }
}

/// What `read_record` read.
pub(crate) struct RecordRead {
    /// Physical lines it spans.
    pub lines: u64,
    pub bytes: u64,
    /// Empty (or, in JSON, only whitespace): not a record.
    pub blank: bool,
    /// Longer than `RECORD_BYTES_MAX`: malformed.
    pub too_long: bool,
}

impl RecordRead {
    /// Decodes the record read into `out` (cleared first), or says why it
    /// is malformed (the decoder's error rendered into its message: the
    /// caller reports it).
    pub fn decode(&self, record: &[u8], decoder: &mut dyn Decoder, out: &mut Vec<Value>) -> Result<(), String> {
        if self.too_long {
            return Err(too_long_reason());
        }
        out.clear();
        decoder.decode(record, out).map_err(|e| decoder.explain(record, e))
    }
}

/// Why a record over `RECORD_BYTES_MAX` is malformed.
pub(crate) fn too_long_reason() -> String {
    laminar_exec::format::too_long_reason(RECORD_BYTES_MAX)
}

/// Reads the next record into `record` (without its final newline): one
/// line, or for CSV as many as a quoted field spans (bounded by
/// `RECORD_BYTES_MAX`). None at the end of input. Every reader of a file
/// goes through here, so that records and line numbers are the same
/// whichever shard reads which part (see `split`).
pub(crate) fn read_record(
    reader: &mut impl BufRead,
    record: &mut Vec<u8>,
    format: Format,
    delimiter: u8,
) -> std::io::Result<Option<RecordRead>> {
    record.clear();
    let n = reader.read_until(b'\n', record)?;
    if n == 0 {
        return Ok(None);
    }
    let mut read = RecordRead {
        lines: 1,
        bytes: n as u64,
        blank: false,
        too_long: false,
    };
    // A quoted CSV field may span lines: keep reading until the quotes
    // balance.
    if format == Format::Csv {
        while csv_record_incomplete_with(trimmed(record), delimiter) {
            if record.len() > RECORD_BYTES_MAX {
                read.too_long = true;
                break;
            }
            let more = reader.read_until(b'\n', record)?;
            if more == 0 {
                break;
            }
            read.lines += 1;
            read.bytes += more as u64;
        }
    }
    strip_newline(record);
    read.too_long |= record.len() > RECORD_BYTES_MAX;
    read.blank = record.is_empty() || (format == Format::Json && record.iter().all(u8::is_ascii_whitespace));
    Ok(Some(read))
}

pub(crate) fn strip_newline(v: &mut Vec<u8>) {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
}

fn trimmed(v: &[u8]) -> &[u8] {
    let v = v.strip_suffix(b"\n").unwrap_or(v);
    v.strip_suffix(b"\r").unwrap_or(v)
}
