//! Batches: the unit of work between operators and, later, across the
//! shard mesh.
//!
//! A batch is row-major (`width` values per row, one allocation for the
//! whole batch), every row carries a changelog `Op`, and watermark `Mark`s
//! sit in band between rows. A mark at position `p` means "after the first
//! `p` rows of this batch, the sender's watermark is `watermark`". Keeping
//! marks at row granularity is what makes late-row decisions exact (SPEC:
//! the watermark advances after every record) while rows still travel in
//! large batches.

use crate::agg::Accumulator;
use crate::types::Value;

/// The changelog operation of a row. Append-only streams carry only
/// `Insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `+I`: a new row.
    Insert,
    /// `-U`: the old version of an updated row, retracted.
    UpdateBefore,
    /// `+U`: the new version of an updated row.
    UpdateAfter,
    /// `-D`: a row retracted for good.
    Delete,
}

impl Op {
    /// The changelog spelling used in sink output.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "+I",
            Op::UpdateBefore => "-U",
            Op::UpdateAfter => "+U",
            Op::Delete => "-D",
        }
    }

    /// Whether the row is added (+I, +U) rather than retracted (-U, -D).
    pub fn is_addition(self) -> bool {
        matches!(self, Op::Insert | Op::UpdateAfter)
    }

    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "+I" => Some(Op::Insert),
            "-U" => Some(Op::UpdateBefore),
            "+U" => Some(Op::UpdateAfter),
            "-D" => Some(Op::Delete),
            _ => None,
        }
    }
}

/// A watermark advance in band: after `position` rows, the watermark is
/// `watermark` (milliseconds; `i64::MAX` means end of input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub position: u32,
    pub watermark: i64,
}

/// The end-of-input watermark: every window closes.
pub const WATERMARK_END: i64 = i64::MAX;
/// The watermark before any record is seen.
pub const WATERMARK_START: i64 = i64::MIN;

/// Rows, their ops, and in-band watermark marks.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    width: usize,
    values: Vec<Value>,
    ops: Vec<Op>,
    marks: Vec<Mark>,
    /// For `laminar bench`: when (ns on the run's monotonic clock, plus
    /// one) the earliest source event behind this batch was meant to be
    /// sent; 0 when nobody measures. The runtime copies it from each input
    /// batch to what an operator emits for it; operators never look.
    origin_ns: u64,
    /// A batch of partial aggregates (see `operators::combine`): each row
    /// is `group key ++ [event time, rows]`, with `calls` accumulators per
    /// row in `partials`. Only an aggregate's combined input carries one.
    combined: bool,
    calls: usize,
    partials: Vec<Accumulator>,
}

impl Batch {
    pub fn new(width: usize) -> Batch {
        Batch {
            width,
            values: Vec::new(),
            ops: Vec::new(),
            marks: Vec::new(),
            origin_ns: 0,
            combined: false,
            calls: 0,
            partials: Vec::new(),
        }
    }

    pub fn with_capacity(width: usize, rows: usize) -> Batch {
        Batch {
            width,
            values: Vec::with_capacity(width * rows),
            ops: Vec::with_capacity(rows),
            marks: Vec::new(),
            origin_ns: 0,
            combined: false,
            calls: 0,
            partials: Vec::new(),
        }
    }

    /// An empty batch of partial aggregates with `calls` accumulators per
    /// row (see the `combined` field).
    pub fn combined(width: usize, calls: usize) -> Batch {
        Batch {
            combined: true,
            calls,
            ..Batch::new(width)
        }
    }

    /// Whether the rows are partial aggregates (see `Batch::combined`).
    pub fn is_combined(&self) -> bool {
        self.combined
    }

    /// Whether `other` may be appended to this batch: the same width, and
    /// both rows or both partial aggregates of one shape.
    pub fn appends(&self, other: &Batch) -> bool {
        (self.width, self.combined, self.calls) == (other.width, other.combined, other.calls)
    }

    /// Appends a partial aggregate: its row and its accumulators.
    pub fn push_partial(
        &mut self,
        row: impl IntoIterator<Item = Value>,
        accumulators: impl IntoIterator<Item = Accumulator>,
    ) {
        assert!(self.combined, "a partial aggregate in a batch of rows");
        let before = self.partials.len();
        self.partials.extend(accumulators);
        assert_eq!(self.partials.len() - before, self.calls, "accumulators per partial row");
        self.push_owned(Op::Insert, row);
    }

    /// See the field: the intended send time behind this batch, 0 if none.
    pub fn origin_ns(&self) -> u64 {
        self.origin_ns
    }

    pub fn set_origin_ns(&mut self, origin_ns: u64) {
        self.origin_ns = origin_ns;
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// About what the batch holds in memory: its values, the strings
    /// they point to, its ops and marks (for byte bounds on queues).
    pub fn approx_bytes(&self) -> usize {
        let strings: usize = self
            .values
            .iter()
            .map(|v| match v {
                Value::Str(s) if s.is_heap_allocated() => s.len(),
                _ => 0,
            })
            .sum();
        self.values.len() * std::mem::size_of::<Value>()
            + strings
            + self.ops.len() * std::mem::size_of::<Op>()
            + self.marks.len() * std::mem::size_of::<Mark>()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// No rows (there may still be watermark marks).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Neither rows nor marks: nothing worth delivering downstream.
    pub fn is_inert(&self) -> bool {
        self.ops.is_empty() && self.marks.is_empty()
    }

    #[inline]
    pub fn row(&self, i: usize) -> &[Value] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    #[inline]
    pub fn op(&self, i: usize) -> Op {
        self.ops[i]
    }

    pub fn marks(&self) -> &[Mark] {
        &self.marks
    }

    pub fn rows(&self) -> impl Iterator<Item = (Op, &[Value])> {
        self.ops
            .iter()
            .copied()
            .zip(self.values.chunks_exact(self.width.max(1)))
    }

    /// Appends a row; `row` must have exactly `width` values.
    #[inline]
    pub fn push(&mut self, op: Op, row: &[Value]) {
        debug_assert!(!self.combined, "a row in a batch of partial aggregates");
        assert_eq!(row.len(), self.width, "row width does not match the batch");
        self.values.extend_from_slice(row);
        self.ops.push(op);
    }

    /// Appends a row by moving its values in.
    pub fn push_owned(&mut self, op: Op, row: impl IntoIterator<Item = Value>) {
        let before = self.values.len();
        self.values.extend(row);
        assert_eq!(
            self.values.len() - before,
            self.width,
            "row width does not match the batch"
        );
        self.ops.push(op);
    }

    /// Appends a row that `fill` writes straight into the batch's values
    /// (a decoder, say), saving a copy through a scratch row. `fill` must
    /// append exactly `width` values on success; on error whatever it
    /// appended is dropped and the batch is as before.
    pub fn push_with<E>(&mut self, op: Op, fill: impl FnOnce(&mut Vec<Value>) -> Result<(), E>) -> Result<(), E> {
        let before = self.values.len();
        match fill(&mut self.values) {
            Ok(()) => {
                assert_eq!(
                    self.values.len() - before,
                    self.width,
                    "row width does not match the batch"
                );
                self.ops.push(op);
                Ok(())
            }
            Err(e) => {
                self.values.truncate(before);
                Err(e)
            }
        }
    }

    /// `push_mark` for a batch whose rows are already in: the watermark
    /// holds after the first `position` rows. Positions must not go
    /// backwards and cannot pass the rows there are.
    pub fn push_mark_at(&mut self, position: usize, watermark: i64) {
        assert!(position <= self.len(), "a mark after rows the batch does not have");
        if let Some(last) = self.marks.last_mut() {
            assert!(position >= last.position as usize, "marks out of order");
            if watermark <= last.watermark {
                return;
            }
            if last.position as usize == position {
                last.watermark = watermark;
                return;
            }
        }
        let position = u32::try_from(position).expect("batch row count fits u32");
        self.marks.push(Mark { position, watermark });
    }

    /// Records a watermark advance after the rows pushed so far. A mark
    /// that does not advance the last one is dropped: watermarks never go
    /// backwards within a stream.
    pub fn push_mark(&mut self, watermark: i64) {
        self.push_mark_at(self.len(), watermark);
    }

    /// Appends `other`'s rows and marks after this batch's (the two are
    /// consecutive parts of one stream, so marks stay in order). The origin
    /// kept is the earlier one, so a latency charged from it stays an
    /// upper bound.
    pub fn append(&mut self, other: &Batch) {
        assert_eq!(self.width, other.width, "appending a batch of another width");
        assert_eq!(
            (self.combined, self.calls),
            (other.combined, other.calls),
            "appending partial aggregates to rows, or of another shape"
        );
        self.partials.extend_from_slice(&other.partials);
        let base = self.ops.len();
        self.values.extend_from_slice(&other.values);
        self.ops.extend_from_slice(&other.ops);
        for m in &other.marks {
            self.push_mark_at(base + m.position as usize, m.watermark);
        }
        self.origin_ns = match (self.origin_ns, other.origin_ns) {
            (0, o) | (o, 0) => o,
            (a, b) => a.min(b),
        };
    }

    /// The last watermark carried by this batch, if any.
    pub fn last_watermark(&self) -> Option<i64> {
        self.marks.last().map(|m| m.watermark)
    }

    pub fn clear(&mut self) {
        self.partials.clear();
        self.values.clear();
        self.ops.clear();
        self.marks.clear();
    }

    /// Every row of the batch as one run (its marks ignored): a batch
    /// with no marks, outside a run.
    pub fn all_rows(&self) -> RowsRef<'_> {
        RowsRef {
            batch: self,
            start: 0,
            end: self.len(),
        }
    }

    /// Drops the watermark marks, keeping the rows.
    pub fn clear_marks(&mut self) {
        self.marks.clear();
    }

    /// Splits the batch into its runs of rows and the marks between them,
    /// in order, for the shard loop to drive an operator with.
    pub fn segments(&self) -> Segments<'_> {
        Segments {
            batch: self,
            row: 0,
            mark: 0,
        }
    }
}

/// A run of rows, or a watermark advance.
#[derive(Debug, Clone, Copy)]
pub enum Segment<'a> {
    Rows(RowsRef<'a>),
    Watermark(i64),
}

/// A borrowed run of consecutive rows of a batch.
#[derive(Debug, Clone, Copy)]
pub struct RowsRef<'a> {
    batch: &'a Batch,
    start: usize,
    end: usize,
}

impl<'a> RowsRef<'a> {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn iter(&self) -> impl Iterator<Item = (Op, &'a [Value])> + 'a {
        let batch = self.batch;
        (self.start..self.end).map(move |i| (batch.ops[i], batch.row(i)))
    }

    /// Whether these are partial aggregates (see `Batch::combined`).
    pub fn is_combined(&self) -> bool {
        self.batch.combined
    }

    /// The partial aggregates' rows with their accumulators, in order.
    pub fn partials(&self) -> impl Iterator<Item = (&'a [Value], &'a [Accumulator])> + 'a {
        let batch = self.batch;
        assert!(batch.combined, "partials of a batch of rows");
        (self.start..self.end).map(move |i| (batch.row(i), &batch.partials[i * batch.calls..(i + 1) * batch.calls]))
    }
}

pub struct Segments<'a> {
    batch: &'a Batch,
    row: usize,
    mark: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        let next_mark = self.batch.marks.get(self.mark);
        let rows_end = next_mark.map_or(self.batch.len(), |m| m.position as usize);
        if self.row < rows_end {
            let rows = RowsRef {
                batch: self.batch,
                start: self.row,
                end: rows_end,
            };
            self.row = rows_end;
            return Some(Segment::Rows(rows));
        }
        let mark = next_mark?;
        self.mark += 1;
        Some(Segment::Watermark(mark.watermark))
    }
}

#[cfg(test)]
mod append_tests {
    use super::*;

    #[test]
    fn appended_batches_keep_rows_marks_and_the_earlier_origin() {
        let mut a = Batch::new(1);
        a.push(Op::Insert, &[Value::Int(1)]);
        a.push_mark(10);
        a.set_origin_ns(500);
        let mut b = Batch::new(1);
        b.push_mark(5); // behind: dropped
        b.push(Op::Insert, &[Value::Int(2)]);
        b.push_mark(20);
        b.push(Op::Delete, &[Value::Int(3)]);
        b.set_origin_ns(300);
        a.append(&b);
        assert_eq!(
            a.rows().map(|(o, r)| (o, r[0].clone())).collect::<Vec<_>>(),
            vec![
                (Op::Insert, Value::Int(1)),
                (Op::Insert, Value::Int(2)),
                (Op::Delete, Value::Int(3)),
            ]
        );
        let marks: Vec<(u32, i64)> = a.marks().iter().map(|m| (m.position, m.watermark)).collect();
        assert_eq!(marks, vec![(1, 10), (2, 20)]);
        assert_eq!(a.origin_ns(), 300);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_interleave_rows_and_marks_in_order() {
        let mut b = Batch::new(1);
        b.push(Op::Insert, &[Value::Int(1)]);
        b.push_mark(10);
        b.push_mark(11); // folds into the previous mark: no row between
        b.push(Op::Insert, &[Value::Int(2)]);
        b.push(Op::Insert, &[Value::Int(3)]);
        b.push_mark(5); // never backwards
        b.push_mark(20);
        let seen: Vec<String> = b
            .segments()
            .map(|s| match s {
                Segment::Rows(r) => format!("rows{}", r.len()),
                Segment::Watermark(w) => format!("wm{w}"),
            })
            .collect();
        assert_eq!(seen, ["rows1", "wm11", "rows2", "wm20"]);
    }
}
