//! `LATE DATA TO name`: the stream of rows a windowed aggregate could not
//! use, instead of dropping them.
//!
//! The aggregate keeps such rows, unchanged and with their changelog op,
//! plus a `late_reason` column, in a `LateRows` buffer. The shard takes
//! that buffer after each batch it feeds the aggregate and hands it to
//! the late stream's node (`LateStream::on_side_rows`) before the
//! aggregate's own output goes on, so the late stream's rows follow the
//! same path through the mesh as any stream's. The node's regular input
//! is the aggregate's output: its rows are ignored, its watermark marks
//! pass through, so the late stream ends when the aggregate does.
//!
//! A late row is behind the watermark by definition, so the late stream
//! has no event-time column: readers can project, filter, aggregate
//! without windows, or write it to a sink.

use crate::batch::{Batch, Op, RowsRef};
use crate::error::ExecError;
use crate::operator::{Operator, OperatorMetrics};
use crate::types::Value;

/// `late_reason` of a row every window of which had closed.
pub const REASON_WINDOW_CLOSED: &str = "window closed";
/// `late_reason` of a row whose event time is NULL (it has no window).
pub const REASON_NULL_TIME: &str = "event time is NULL";

/// Rows an operator diverts to its late stream, when it has one.
#[derive(Debug, Default)]
pub(crate) struct LateRows {
    enabled: bool,
    rows: Option<Batch>,
    /// Rows diverted so far (the operator's `late_rows_diverted`).
    diverted: u64,
}

impl LateRows {
    pub fn new(enabled: bool) -> LateRows {
        LateRows {
            enabled,
            rows: None,
            diverted: 0,
        }
    }

    /// Keeps `row` with `reason` if there is a late stream; false when the
    /// caller must drop (and count) it instead.
    pub fn divert(&mut self, op: Op, row: &[Value], reason: &'static str) -> bool {
        if !self.enabled {
            return false;
        }
        let batch = self.rows.get_or_insert_with(|| Batch::new(row.len() + 1));
        debug_assert_eq!(batch.width(), row.len() + 1, "one input width");
        batch.push_owned(op, row.iter().cloned().chain([Value::str(reason)]));
        self.diverted += 1;
        true
    }

    pub fn diverted(&self) -> u64 {
        self.diverted
    }

    /// Restores the count from a checkpoint. The buffer itself is empty
    /// at every checkpoint: the runtime takes it after each batch.
    pub fn restore_diverted(&mut self, diverted: u64) {
        self.diverted = diverted;
    }

    /// Whether rows wait to be taken (never at a checkpoint).
    pub fn is_pending(&self) -> bool {
        self.rows.as_ref().is_some_and(|b| !b.is_empty())
    }

    /// The rows diverted since the last call, if any.
    pub fn take(&mut self) -> Option<Batch> {
        self.rows.take().filter(|b| !b.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LateStreamSpec {
    /// The late stream's name, for EXPLAIN.
    pub name: String,
}

/// The node of a `LATE DATA TO` stream.
pub struct LateStream {
    metrics: OperatorMetrics,
}

impl LateStream {
    pub fn new(_spec: LateStreamSpec) -> LateStream {
        LateStream {
            metrics: OperatorMetrics::default(),
        }
    }
}

impl Operator for LateStream {
    fn name(&self) -> &'static str {
        "late_rows"
    }

    /// The aggregate's own output: only its marks matter (the driver
    /// forwards them).
    fn on_rows(
        &mut self,
        _input: usize,
        _rows: RowsRef<'_>,
        _watermark: i64,
        _out: &mut Batch,
    ) -> Result<(), ExecError> {
        Ok(())
    }

    fn on_side_rows(&mut self, rows: RowsRef<'_>, out: &mut Batch) -> Result<(), ExecError> {
        for (op, row) in rows.iter() {
            out.push(op, row);
        }
        self.metrics.rows_in += rows.len() as u64;
        self.metrics.rows_out += rows.len() as u64;
        Ok(())
    }

    fn on_watermark(&mut self, _watermark: i64, _out: &mut Batch) -> Result<(), ExecError> {
        Ok(())
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn metrics(&self) -> OperatorMetrics {
        self.metrics
    }
}
