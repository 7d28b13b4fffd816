//! The operator contract and the little driver that feeds an operator from
//! batches.
//!
//! An operator is a synchronous state machine. The driver splits each input
//! batch at its watermark marks, calls `on_rows` for each run of rows and
//! `on_watermark` whenever the operator's input watermark (the minimum over
//! its inputs) advances, and then places the new watermark in band in the
//! output batch, after whatever rows the operator emitted for it. Operators
//! never see a watermark go backwards and never await.

use crate::batch::{Batch, RowsRef, Segment, WATERMARK_START};
use crate::error::ExecError;

/// Counters every operator keeps; the runner sums them into the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorMetrics {
    pub rows_in: u64,
    pub rows_out: u64,
    /// Records dropped because every window they belong to had closed.
    pub late_rows_dropped: u64,
    /// Records a windowed operator dropped because their time was NULL.
    pub null_time_dropped: u64,
    /// Rows for which an expression failed and NULL was used instead.
    pub eval_errors: u64,
    /// Live state entries (groups, windows, sessions) right now.
    pub state_entries: u64,
}

/// A synchronous streaming operator.
pub trait Operator {
    /// A short name for EXPLAIN and metrics ("filter", "window_agg", …).
    fn name(&self) -> &'static str;

    /// Processes a run of rows from input `input`. The current input
    /// watermark is the one last passed to `on_watermark` (or
    /// `WATERMARK_START`). Output rows are appended to `out`.
    fn on_rows(&mut self, input: usize, rows: RowsRef<'_>, out: &mut Batch) -> Result<(), ExecError>;

    /// The input watermark advanced to `watermark` (the minimum over all
    /// inputs). Emits whatever that closes. `WATERMARK_END` means the end of
    /// every input: everything must be emitted.
    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<(), ExecError>;

    /// Serializes the operator's state. The persistence issue gives this a
    /// durable home; for now it is exercised by round-trip tests.
    fn checkpoint(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores state written by `checkpoint`.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(ExecError::Restore {
                reason: format!("{} keeps no state", self.name()),
            })
        }
    }

    fn metrics(&self) -> OperatorMetrics;
}

/// An operator plus the watermark bookkeeping of its inputs.
pub struct Driven {
    operator: Box<dyn Operator>,
    input_watermarks: Vec<i64>,
    watermark: i64,
}

impl Driven {
    pub fn new(operator: Box<dyn Operator>, inputs: usize) -> Driven {
        assert!(inputs > 0, "an operator has at least one input");
        Driven {
            operator,
            input_watermarks: vec![WATERMARK_START; inputs],
            watermark: WATERMARK_START,
        }
    }

    pub fn operator(&self) -> &dyn Operator {
        self.operator.as_ref()
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Feeds one input batch through the operator, appending output rows
    /// and marks to `out`.
    pub fn push(&mut self, input: usize, batch: &Batch, out: &mut Batch) -> Result<(), ExecError> {
        for segment in batch.segments() {
            match segment {
                Segment::Rows(rows) => self.operator.on_rows(input, rows, out)?,
                Segment::Watermark(w) => {
                    let slot = &mut self.input_watermarks[input];
                    if w <= *slot {
                        continue;
                    }
                    *slot = w;
                    let min = *self.input_watermarks.iter().min().expect("at least one input");
                    if min > self.watermark {
                        self.watermark = min;
                        self.operator.on_watermark(min, out)?;
                        out.push_mark(min);
                    }
                }
            }
        }
        Ok(())
    }
}
