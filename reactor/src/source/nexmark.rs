//! The nexmark connector: one kind of event of the deterministic Nexmark
//! stream (`laminar_nexmark`), the declared columns picked from each. The
//! whole stream is one partition; event time grows with the event index.
//!
//! Spread over shards (`SourceSplit::Generator`), shard `r` makes the
//! events of chunks `r`, `r + shards`, … and places the watermark of the
//! events before each of its chunks in band first, so every reader knows
//! the in-order watermark without a token.

use laminar_exec::batch::{Batch, Op};
use laminar_exec::plan::{SourceConnector, SourceNode};
use laminar_exec::types::Value;
use laminar_nexmark::{EventKind, Generator, NexmarkConfig};

use super::reader::{MalformedRecord, ReadState, Reader, ReaderPosition, SourceState};
use super::record::WatermarkTracker;
use crate::error::RunError;

pub(crate) struct NexmarkReader {
    generator: Generator,
    kind: EventKind,
    columns: Vec<usize>,
    /// `columns` as a bit set, for `Generator::fill_row_columns`.
    wanted: u64,
    next: u64,
    end: u64,
    /// Split over shards: (events per chunk, readers); this shard's
    /// `next` only ever points into its own chunks.
    stride: Option<(u64, u64)>,
    watermark: WatermarkTracker,
    /// A full generator row, before the declared columns are picked.
    generated: Vec<Value>,
}

/// Opens a generator source; `spread` = (this shard, readers, events per
/// chunk) when it is split over the shards.
pub(crate) fn open(node: &SourceNode, spread: Option<(usize, usize, u64)>) -> NexmarkReader {
    let SourceConnector::Nexmark {
        kind,
        columns,
        events,
        rate_per_sec,
        seed,
    } = &node.connector
    else {
        unreachable!("the registry opens generators only here");
    };
    let kind = EventKind::from_name(kind).expect("the planner validated the kind");
    let generator = Generator::new(NexmarkConfig {
        seed: *seed,
        events: *events,
        rate_per_sec: *rate_per_sec,
        ..NexmarkConfig::default()
    });
    let mut reader = NexmarkReader {
        generator,
        kind,
        columns: columns.clone(),
        wanted: columns.iter().fold(0u64, |m, &c| m | (1u64 << c.min(63))),
        next: 0,
        end: *events,
        stride: None,
        watermark: WatermarkTracker::new(node.watermark),
        generated: Vec::new(),
    };
    if let Some((me, readers, chunk_events)) = spread {
        assert!(readers >= 2 && chunk_events >= 1 && me < readers);
        reader.next = me as u64 * chunk_events;
        reader.stride = Some((chunk_events, readers as u64));
    }
    reader
}

impl Reader for NexmarkReader {
    fn capacity(&self, rows_max: usize, index_limit: u64) -> usize {
        // A paced generator reads only the events due, often one or two.
        rows_max.min(usize::try_from(index_limit.saturating_sub(self.next)).unwrap_or(usize::MAX))
    }

    fn read(
        &mut self,
        st: &mut ReadState,
        batch: &mut Batch,
        rows_max: usize,
        index_limit: u64,
        _on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        while batch.len() < rows_max && self.next < self.end.min(index_limit) {
            let i = self.next;
            if let Some((chunk, _)) = self.stride {
                if i.is_multiple_of(chunk) {
                    // A chunk of this shard begins: the watermark in file
                    // order is that of the last event of this kind before
                    // it (times grow with i).
                    if let Some(prev) = Generator::last_of_kind_before(i, self.kind) {
                        if let Some(w) = self.watermark.advance_to(self.generator.event_time_ms(prev)) {
                            batch.push_mark(w);
                        }
                    }
                }
            }
            self.next += 1;
            if let Some((chunk, readers)) = self.stride {
                if self.next.is_multiple_of(chunk) {
                    // Past this shard's chunk: on to its next one.
                    self.next = self.next.saturating_add((readers - 1) * chunk);
                }
            }
            // Both buffers are reused: generating a row allocates nothing
            // (strings stay inline).
            self.generated.clear();
            if self
                .generator
                .fill_row_columns(i, self.kind, self.wanted, &mut self.generated)
            {
                // The read columns go straight into the batch.
                let generated = &mut self.generated;
                batch.push_owned(
                    Op::Insert,
                    self.columns.iter().map(|&c| std::mem::take(&mut generated[c])),
                );
                let advanced = self.watermark.observe(batch.row(batch.len() - 1));
                st.rows += 1;
                if let Some(w) = advanced {
                    batch.push_mark(w);
                }
            }
        }
        if self.next >= self.end {
            st.exhausted = true;
        }
        Ok(())
    }

    fn watermark(&self) -> i64 {
        self.watermark.current
    }

    fn spread(&self) -> bool {
        self.stride.is_some()
    }

    fn next_event_index(&self) -> Option<u64> {
        Some(self.next)
    }

    fn stop(&mut self) {
        self.end = self.next;
    }

    fn position(&mut self, _st: &ReadState) -> Result<ReaderPosition, RunError> {
        Ok(ReaderPosition {
            offset: self.next,
            line: 0,
            dead_letter_bytes: 0,
            max_time: self.watermark.max_time,
            live_connections: Vec::new(),
            follow: None,
        })
    }

    fn resume(&mut self, name: &str, state: &SourceState) -> Result<(), RunError> {
        if state.offset > self.end {
            return Err(RunError::Recovery {
                dir: std::path::PathBuf::from(name),
                reason: format!("the checkpoint is at event {}, past the generator's end", state.offset),
            });
        }
        self.next = state.offset;
        self.watermark.max_time = state.max_time;
        self.watermark.current = state.watermark;
        Ok(())
    }
}
