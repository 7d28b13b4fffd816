//! Sources: read records, decode them into rows, and compute the
//! per-partition watermark after every record.
//!
//! A file is one partition; so is the whole generator stream; a tcp
//! source has one per connection. The watermark is `max(event time seen)
//! - delay`, advanced after each good record and placed in band in the
//! batch right after that record, so operators can decide lateness
//! against exactly the watermark that held before each record. End of
//! input is the watermark `+∞`.
//!
//! A malformed record is reported (path, line, reason), written to the
//! dead-letter file when one is configured, counted, and skipped; the
//! records around it are processed.
//!
//! **Connectors.** Each connector is one module with a `Reader`: `file`
//! (one shard, in order), `split` (a large file read by every shard at
//! once), `follow` (a file tailed under `laminar serve`), `nexmark` (the
//! generator) and `tcp` (`laminar serve`'s live intake). `open` and `spread` below are the registry: the only places
//! that name connectors. The shard's source loop drives every source
//! through `Source` and the capabilities a reader may offer (`Handoff`:
//! chunks passed between shards in order; `Intake`: arrivals logged to
//! the shard's WAL and acknowledged), never by its kind. See
//! ARCHITECTURE.md, "Adding a connector".

pub mod file;
pub mod follow;
pub mod nexmark;
pub mod reader;
pub(crate) mod record;
pub mod split;
pub mod tcp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use laminar_exec::batch::{Batch, WATERMARK_END};
use laminar_exec::plan::{PhysicalPlan, SourceConnector, SourceNode};

use crate::error::RunError;
use crate::net::ingest::LiveLimits;
pub use reader::ReaderPosition;
pub use reader::{
    ChunkCounts, ConnState, FollowState, Handoff, Intake, LoggedBatch, MalformedRecord, Prefix, ReadState, Reader,
    SourceState, MALFORMED_REPORTS_MAX, RECORD_BYTES_MAX,
};
use split::SourceSplit;

/// What opening a source on a shard may need besides its plan node.
pub struct OpenContext<'a> {
    /// The source's plan index.
    pub index: usize,
    pub shard: usize,
    pub shards: usize,
    /// How the source is spread over the shards, if it is.
    pub split: Option<&'a SourceSplit>,
    /// The checkpointed position to continue from.
    pub resume: Option<&'a SourceState>,
    /// `laminar serve`: the listener bound for a tcp source.
    pub listener: Option<std::net::TcpListener>,
    pub limits: LiveLimits,
    pub clock: Arc<dyn laminar_exec::time::Clock>,
    /// Whether intake is logged to a WAL.
    pub logged: bool,
}

/// Opens source `node` on a shard: the connector registry. The caller
/// asks only on the shards that read the source (its owner, or every
/// shard when it is spread).
pub fn open(node: &SourceNode, cx: OpenContext<'_>) -> Result<Source, RunError> {
    let resuming = cx.resume.is_some();
    let reader: Box<dyn Reader> = match (&node.connector, cx.split) {
        (SourceConnector::File { .. }, Some(SourceSplit::File(split))) => {
            Box::new(split::SplitReader::open(node, Arc::clone(split), cx.shard)?)
        }
        (SourceConnector::File { follow: Some(_), .. }, _) => Box::new(follow::open(node, cx.clock, cx.resume)?),
        (SourceConnector::File { .. }, _) => Box::new(file::open(node, resuming)?),
        (SourceConnector::Nexmark { .. }, split) => {
            let spread = match split {
                Some(SourceSplit::Generator { chunk_events }) => Some((cx.shard, cx.shards, *chunk_events)),
                _ => None,
            };
            Box::new(nexmark::open(node, spread))
        }
        (SourceConnector::Tcp { .. }, _) => {
            let Some(listener) = cx.listener else {
                return Err(RunError::Source {
                    source_name: node.name.clone(),
                    path: PathBuf::from("tcp"),
                    reason: "a tcp source needs `laminar serve`".into(),
                });
            };
            Box::new(tcp::open(
                node, cx.index, listener, cx.limits, cx.clock, cx.logged, resuming,
            )?)
        }
    };
    let mut source = Source::new(node, reader);
    if let Some(state) = cx.resume {
        source.resume(state)?;
    }
    Ok(source)
}

/// How the connector of source `i` spreads it over `shards` shards: None
/// (one shard reads it) or a split that every shard reads a part of.
pub fn spread(
    plan: &PhysicalPlan,
    i: usize,
    shards: usize,
    options: &SpreadOptions,
) -> Result<Option<SourceSplit>, RunError> {
    let node = &plan.sources[i];
    // A source split over shards has no single position to resume from,
    // and results that depend on arrival order must read in order.
    if shards < 2 || options.checkpoints || !plan.order_insensitive(i) {
        return Ok(None);
    }
    match &node.connector {
        SourceConnector::Nexmark { .. } if split::generator_splittable(node) => Ok(Some(SourceSplit::Generator {
            chunk_events: options.generator_chunk_events,
        })),
        SourceConnector::File { .. } => {
            Ok(
                split::plan(node, shards, options.file_bytes_min, options.file_chunk_bytes)?
                    .map(|f| SourceSplit::File(Arc::new(f))),
            )
        }
        SourceConnector::Nexmark { .. } | SourceConnector::Tcp { .. } => Ok(None),
    }
}

/// The knobs of `spread`.
pub struct SpreadOptions {
    pub checkpoints: bool,
    pub file_bytes_min: u64,
    pub file_chunk_bytes: u64,
    pub generator_chunk_events: u64,
}

/// A running source on one shard: the counters and end-of-input rule
/// every connector shares, around its connector's reader.
pub struct Source {
    st: ReadState,
    reader: Box<dyn Reader>,
    has_watermark: bool,
    /// The end-of-input mark has been returned.
    done: bool,
    /// Return the end-of-input mark in a batch of its own (paced runs:
    /// what the end flushes is not a result of the last events).
    end_apart: bool,
}

impl Source {
    fn new(node: &SourceNode, reader: Box<dyn Reader>) -> Source {
        let width = node.schema.len();
        Source {
            st: ReadState {
                name: node.name.clone(),
                width,
                rows: 0,
                malformed: 0,
                bytes_read: 0,
                exhausted: false,
                scratch: Vec::with_capacity(width),
            },
            reader,
            has_watermark: node.watermark.is_some(),
            done: false,
            end_apart: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.st.name
    }

    pub fn rows(&self) -> u64 {
        self.st.rows
    }

    pub fn malformed(&self) -> u64 {
        self.st.malformed
    }

    pub fn bytes_read(&self) -> u64 {
        self.st.bytes_read
    }

    /// See `Reader::bounded`.
    pub fn bounded(&self) -> bool {
        self.reader.bounded()
    }

    /// See `Reader::ready`.
    pub fn ready(&self) -> bool {
        self.reader.ready()
    }

    /// See `Reader::spread`.
    pub fn spread(&self) -> bool {
        self.reader.spread()
    }

    /// Whether its watermark holds back the sources of the run: it has
    /// one, reads alone and ends by itself (a tcp source may be silent for
    /// hours; a spread source's parts move through it together).
    pub fn aligned(&self) -> bool {
        self.has_watermark && self.bounded() && !self.spread()
    }

    pub fn handoff(&mut self) -> Option<&mut dyn Handoff> {
        self.reader.handoff()
    }

    pub fn handoff_ref(&self) -> Option<&dyn Handoff> {
        self.reader.handoff_ref()
    }

    pub fn intake(&mut self) -> Option<&mut dyn Intake> {
        self.reader.intake()
    }

    pub fn intake_ref(&self) -> Option<&dyn Intake> {
        self.reader.intake_ref()
    }

    /// Whether an intake still has WAL batches to replay.
    pub fn replaying(&self) -> bool {
        self.intake_ref().is_some_and(|i| i.replaying() > 0)
    }

    /// A handoff reader takes the awaited chunk's token; returns the
    /// token to send on (see `Handoff::accept`).
    pub fn accept_token(
        &mut self,
        prefix: Prefix,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Option<(Option<usize>, usize, Prefix)>, RunError> {
        let Some(handoff) = self.reader.handoff() else {
            panic!("a token for a source that takes none");
        };
        let mut counts = ChunkCounts::default();
        let next = handoff.accept(prefix, &self.st.name, &mut counts, on_malformed)?;
        self.st.rows += counts.rows;
        self.st.malformed += counts.malformed;
        self.st.bytes_read += counts.bytes;
        Ok(next)
    }

    /// The watermark so far (`i64::MIN` before the first, or without a
    /// WATERMARK clause).
    pub fn watermark(&self) -> i64 {
        self.reader.watermark()
    }

    /// Whether the source has a WATERMARK clause.
    pub fn has_watermark(&self) -> bool {
        self.has_watermark
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Makes the end-of-input mark come in a batch of its own.
    pub fn set_end_apart(&mut self) {
        self.end_apart = true;
    }

    /// Ends a paced source here, at the next event index.
    pub fn stop(&mut self) {
        self.reader.stop();
    }

    /// See `Reader::close`.
    pub fn close(&mut self) {
        self.reader.close();
    }

    /// See `Reader::next_event_index`.
    pub fn next_event_index(&self) -> Option<u64> {
        self.reader.next_event_index()
    }

    /// See `Reader::header_detected`.
    pub fn header_detected(&self) -> bool {
        self.reader.header_detected()
    }

    /// The dead-letter file, if it has one.
    pub fn dead_letter_path(&self) -> Option<&Path> {
        self.reader.dead_letter_path()
    }

    /// Where the source stands now (between batches), for a checkpoint.
    /// Flushes the dead-letter file so its committed length is on disk
    /// before the checkpoint that names it (the coordinator syncs it).
    pub fn position(&mut self) -> Result<SourceState, RunError> {
        let p = self.reader.position(&self.st)?;
        Ok(SourceState {
            offset: p.offset,
            line: p.line,
            rows: self.st.rows,
            malformed: self.st.malformed,
            bytes_read: self.st.bytes_read,
            max_time: p.max_time,
            watermark: self.watermark(),
            exhausted: self.st.exhausted,
            done: self.done,
            dead_letter_bytes: p.dead_letter_bytes,
            live_connections: p.live_connections,
            follow: p.follow,
        })
    }

    /// Continues from a checkpointed position (a source just opened on
    /// the same input): the reader seeks past what was read and restores
    /// its watermark and dead-letter file; the counters come back here.
    pub fn resume(&mut self, state: &SourceState) -> Result<(), RunError> {
        self.reader.resume(&self.st.name, state)?;
        self.st.rows = state.rows;
        self.st.malformed = state.malformed;
        self.st.bytes_read = state.bytes_read;
        self.st.exhausted = state.exhausted;
        self.done = state.done;
        Ok(())
    }

    /// Reads up to `rows_max` rows into a new batch. At the end of input
    /// the batch carries the final watermark and the source is done.
    pub fn next_batch(
        &mut self,
        rows_max: usize,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Batch, RunError> {
        self.next_batch_until(rows_max, u64::MAX, on_malformed)
    }

    /// Like `next_batch`, but a paced reader stops before event index
    /// `index_limit` (the events due so far).
    pub fn next_batch_until(
        &mut self,
        rows_max: usize,
        index_limit: u64,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<Batch, RunError> {
        let mut batch = Batch::with_capacity(self.st.width, self.reader.capacity(rows_max, index_limit));
        self.reader
            .read(&mut self.st, &mut batch, rows_max, index_limit, on_malformed)?;
        if self.st.exhausted && (!self.end_apart || batch.is_empty()) {
            self.done = true;
            batch.push_mark(WATERMARK_END);
        }
        Ok(batch)
    }
}
