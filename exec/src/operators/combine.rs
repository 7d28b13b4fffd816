//! Combining rows before the exchange: the first phase of a two-phase
//! aggregation. A shard that sends an aggregate's input rows to the shards
//! owning their keys first folds the rows of one batch that share a group
//! and a window set into one partial aggregate (a row `key ++ [event time,
//! rows]` with the group's accumulators, see `Batch::combined`), and sends
//! those; the aggregate merges them (`Aggregate::on_rows`). On the Nexmark
//! bids a 2048-row batch holds about 130 auctions, so the exchange and the
//! aggregate's per-row work shrink about fifteenfold. A run of one shard
//! combines too: there is no exchange, but the state lookups shrink alike.
//!
//! The answer, the emission order, the late-row decisions and the counters
//! stay exactly those of sending every row:
//! - Only folds that are exact in any grouping are used (`combinable`):
//!   COUNT, COUNT DISTINCT, integer SUM/AVG, MIN/MAX, over an append-only
//!   input, with bare-column keys and arguments and no filter (nothing can
//!   fail to evaluate), emitted when windows close (`Changes` and `Every`
//!   would show the intermediate steps, and `LATE DATA TO` needs the rows).
//! - Rows fold only with rows of the same window set (all windows a row
//!   belongs to), so the aggregate's late decision for the partial, made
//!   with the representative time, is the one it makes for each row.
//! - That decision, and which windows close when, depend on the watermark
//!   marks between the rows. A mark is significant when a window could
//!   close at it: some window end plus the allowed lateness lies between
//!   the mark before and it (the first mark of a batch counts as
//!   significant, as the one before is not known here). Every pending
//!   partial is let out before a significant mark, so the aggregate holds
//!   the same groups when a window closes, and each row is judged at a
//!   watermark that closes the same windows as the one before it. Marks
//!   that are not significant are held back (which is what makes
//!   combining worth it: a split file carries a mark at every advance of
//!   event time); each destination's partials are let out after the mark
//!   that was in force at its last row, which is the mark the aggregate
//!   would hold when the next significant one comes (the ones between,
//!   with none of its rows after them, fold into that one at the
//!   aggregate too), so its output marks stand where they would.
//! - Partials go out in the order their groups first appeared, which is
//!   the order the aggregate's state then holds them in (and emits them).
//! - Nothing is kept across batches: a batch is combined on its own, so
//!   checkpoints see no state here, and a batch may as well go as rows
//!   (the aggregate takes either): after a batch whose rows did not fold
//!   at least two to a partial, the next sixteen go as rows, as the table
//!   would cost more than it saves (a key that hardly repeats, such as a
//!   price).

use std::hash::{Hash, Hasher};

use fxhash::FxHasher;

use crate::agg::{Accumulator, AggKind};
use crate::batch::{Batch, Segment, WATERMARK_END};
use crate::expr::Expr;
use crate::operators::aggregate::AggregateSpec;
use crate::operators::{accumulate, new_accumulators, row_time, EmitMode, Scratch};
use crate::types::Value;
use crate::window::{FloorCache, WindowSpec};

/// Whether an aggregate's input may be combined before the exchange (see
/// the module doc for each condition).
pub fn combinable(spec: &AggregateSpec) -> bool {
    let bare = |e: &Expr| matches!(e, Expr::Column(_));
    !spec.keys.is_empty()
        && spec.keys.iter().all(bare)
        && spec.filter.is_none()
        && !spec.retractable
        && !spec.late_rows
        && matches!(spec.emit, EmitMode::OnWindowClose | EmitMode::Final)
        && spec.window.is_none_or(|w| w.size_ms().is_some())
        && spec
            .calls
            .iter()
            .all(|c| c.filter.is_none() && c.arg.as_ref().is_none_or(bare))
        && new_accumulators::<Vec<_>>(&spec.calls, false)
            .iter()
            .all(Accumulator::combinable)
}

/// A group waiting in the combiner; its key and accumulators are in the
/// combiner's flat arrays at its position.
struct Pending {
    hash: u64,
    dest: usize,
    /// The window set: first and last start (NULL time: both `i64::MIN`
    /// with `null_time`).
    first: i64,
    last: i64,
    null_time: bool,
    /// The event time of its first row (NULL when it has none).
    time: Value,
    rows: i64,
}

/// Combines an aggregate's input rows per batch (see the module doc).
pub struct Combiner {
    keys: Vec<usize>,
    time_column: Option<usize>,
    window: Option<WindowSpec>,
    lateness_ms: i64,
    calls: Vec<crate::operators::AggCall>,
    scratch: Scratch,
    floors: FloorCache,
    pending: Vec<Pending>,
    /// The pending groups' keys, `keys.len()` values each.
    pending_keys: Vec<Value>,
    /// The pending groups' accumulators, `calls.len()` each.
    pending_accumulators: Vec<Accumulator>,
    /// Open addressing over `pending`: position + 1, 0 for an empty slot;
    /// a power of two, at least twice the groups.
    slots: Vec<u32>,
    /// Every call is COUNT(*): a group's accumulators are its row count,
    /// set when it is let out, not counted row by row.
    count_only: bool,
    /// Batches still to send as rows (see `partition`).
    raw_batches: u32,
}

/// Rows a partial must stand for on average for folding to pay (the
/// combiner's table costs about what the exchange and the aggregate save
/// per row).
const FOLD_MIN: usize = 2;

/// Batches sent as rows after one whose folding did not pay, before
/// trying again.
const RAW_BATCHES: u32 = 16;

/// Slots of a fresh combiner's table.
const SLOTS_MIN: usize = 256;

/// A hash's first slot in a table of `slots` (a power of two): from its
/// top bits, which FxHash's last multiplication mixes well; its low bits
/// repeat across small integer keys and made long probe runs.
#[inline]
fn home(hash: u64, slots: usize) -> usize {
    (hash >> (64 - slots.trailing_zeros())) as usize
}

impl Combiner {
    pub fn new(spec: &AggregateSpec) -> Combiner {
        assert!(
            combinable(spec),
            "combining an aggregate whose folds are not exact in any grouping"
        );
        Combiner {
            keys: (spec.keys.iter())
                .map(|k| match k {
                    Expr::Column(c) => *c,
                    _ => unreachable!("combinable: keys are columns"),
                })
                .collect(),
            time_column: spec.time_column,
            window: spec.window,
            lateness_ms: spec.lateness_ms,
            calls: spec.calls.clone(),
            scratch: Scratch::default(),
            floors: FloorCache::default(),
            pending: Vec::new(),
            pending_keys: Vec::new(),
            pending_accumulators: Vec::new(),
            slots: vec![0; SLOTS_MIN],
            count_only: spec.calls.iter().all(|c| c.kind == AggKind::CountStar),
            raw_batches: 0,
        }
    }

    /// The width of a partial row.
    pub fn width(&self) -> usize {
        self.keys.len() + 2
    }

    /// `batch`'s rows as partial aggregates for `shards` destinations,
    /// each row going where `dest_of` sends it; every mark goes to every
    /// destination. None when the batch should go as rows instead: while
    /// folding has lately not paid.
    pub fn partition(
        &mut self,
        batch: &Batch,
        shards: usize,
        mut dest_of: impl FnMut(&[Value]) -> usize,
    ) -> Option<Vec<Batch>> {
        if self.raw_batches > 0 {
            self.raw_batches -= 1;
            return None;
        }
        let mut out: Vec<Batch> = (0..shards)
            .map(|_| {
                let mut b = Batch::combined(self.width(), self.calls.len());
                b.set_origin_ns(batch.origin_ns());
                b
            })
            .collect();
        // The last mark of this batch so far, and per destination the mark
        // in force at its last row since partials were last let out.
        let mut in_force: Option<i64> = None;
        let mut row_marks: Vec<Option<i64>> = vec![None; shards];
        for segment in batch.segments() {
            match segment {
                Segment::Rows(rows) => {
                    for (op, row) in rows.iter() {
                        assert!(op.is_addition(), "a retraction in an append-only aggregate input");
                        let dest = self.add(row, &mut dest_of);
                        row_marks[dest] = in_force;
                    }
                }
                Segment::Watermark(w) => {
                    if in_force.is_none_or(|before| self.significant(before, w)) {
                        self.flush(&mut out, &mut row_marks);
                        out.iter_mut().for_each(|b| b.push_mark(w));
                    }
                    in_force = Some(w);
                }
            }
        }
        self.flush(&mut out, &mut row_marks);
        if let Some(w) = in_force {
            out.iter_mut().for_each(|b| b.push_mark(w));
        }
        // Folding must pay: at fewer than `FOLD_MIN` rows a partial, the
        // next `RAW_BATCHES` batches go as rows (the aggregate takes
        // either, batch by batch, and nothing is kept across batches).
        let partials: usize = out.iter().map(Batch::len).sum();
        if batch.len() < FOLD_MIN * partials {
            self.raw_batches = RAW_BATCHES;
        }
        Some(out)
    }

    /// Folds `row` into its pending group; returns the group's
    /// destination.
    fn add(&mut self, row: &[Value], dest_of: &mut impl FnMut(&[Value]) -> usize) -> usize {
        let ts = row_time(row, self.time_column);
        // The window set, as its first and last start.
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        if let (Some(t), Some(window)) = (ts, self.window) {
            window.for_each_start_cached(t, &mut self.floors, |start| {
                first = first.min(start);
                last = last.max(start);
            });
        }
        let null_time = ts.is_none();
        let mut h = FxHasher::default();
        for &c in &self.keys {
            row[c].hash(&mut h);
        }
        (first, last, null_time).hash(&mut h);
        let hash = h.finish();
        let k = self.keys.len();
        let mask = self.slots.len() - 1;
        let mut i = home(hash, self.slots.len());
        let at = loop {
            match self.slots[i] {
                0 => break None,
                s => {
                    let at = s as usize - 1;
                    let p = &self.pending[at];
                    if p.hash == hash
                        && (p.first, p.last, p.null_time) == (first, last, null_time)
                        && self
                            .keys
                            .iter()
                            .zip(&self.pending_keys[at * k..(at + 1) * k])
                            .all(|(&c, v)| row[c] == *v)
                    {
                        break Some(at);
                    }
                }
            }
            i = (i + 1) & mask;
        };
        let at = match at {
            Some(at) => at,
            None => {
                let at = self.pending.len();
                self.slots[i] = u32::try_from(at + 1).expect("a batch's groups fit u32");
                self.pending.push(Pending {
                    hash,
                    dest: dest_of(row),
                    first,
                    last,
                    null_time,
                    time: match (ts, self.time_column) {
                        (Some(_), Some(c)) => row[c].clone(),
                        _ => Value::Null,
                    },
                    rows: 0,
                });
                self.pending_keys.extend(self.keys.iter().map(|&c| row[c].clone()));
                self.pending_accumulators
                    .extend(new_accumulators::<Vec<_>>(&self.calls, false));
                if 2 * self.pending.len() > self.slots.len() {
                    self.grow();
                }
                at
            }
        };
        self.pending[at].rows += 1;
        if self.count_only {
            // `flush` sets the counts from the group's rows.
            return self.pending[at].dest;
        }
        let n = self.calls.len();
        // FIRST/LAST_VALUE, the only folds that read the time and arrival
        // number, are not combinable.
        accumulate(
            &mut self.scratch,
            &self.calls,
            &mut self.pending_accumulators[at * n..(at + 1) * n],
            row,
            0,
            0,
            true,
        );
        self.pending[at].dest
    }

    /// Doubles the table and places the pending groups again.
    fn grow(&mut self) {
        let slots = self.slots.len() * 2;
        self.slots.clear();
        self.slots.resize(slots, 0);
        let mask = slots - 1;
        for (at, p) in self.pending.iter().enumerate() {
            let mut i = home(p.hash, slots);
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = (at + 1) as u32;
        }
    }

    /// Lets every pending group out, in the order they first appeared,
    /// each destination's after the mark in force at its last row (see the
    /// module doc).
    fn flush(&mut self, out: &mut [Batch], row_marks: &mut [Option<i64>]) {
        for (b, m) in out.iter_mut().zip(row_marks.iter_mut()) {
            if let Some(m) = m.take() {
                b.push_mark(m);
            }
        }
        if self.pending.is_empty() {
            return;
        }
        let (k, n) = (self.keys.len(), self.calls.len());
        let mut keys = self.pending_keys.drain(..);
        let mut accumulators = self.pending_accumulators.drain(..);
        let count_only = self.count_only;
        for p in self.pending.drain(..) {
            let rows = p.rows;
            let row = keys.by_ref().take(k).chain([p.time, Value::Int(rows)]);
            let accumulators = accumulators.by_ref().take(n).map(|a| match a {
                Accumulator::CountStar { .. } if count_only => Accumulator::CountStar { rows },
                a => a,
            });
            out[p.dest].push_partial(row, accumulators);
        }
        drop((keys, accumulators));
        self.slots.fill(0);
    }

    /// Whether a window could close at watermark `w` that was open at
    /// `before` (see the module doc): some window end plus the lateness
    /// lies in `(before, w]`. Window ends are a slide apart.
    fn significant(&self, before: i64, w: i64) -> bool {
        if w == WATERMARK_END {
            return true;
        }
        let Some(window) = self.window else {
            // The unwindowed "window" closes only at the end of input.
            return false;
        };
        let (slide, size) = match window {
            WindowSpec::Tumble { size_ms } => (size_ms, size_ms),
            WindowSpec::Hop { slide_ms, size_ms } => (slide_ms, size_ms),
            WindowSpec::Session { .. } => unreachable!("combinable: fixed windows"),
        };
        // Ends are `k * slide + size`; in i128, clear of overflow.
        let offset = i128::from(size) + i128::from(self.lateness_ms);
        let step = |t: i64| (i128::from(t) - offset).div_euclid(i128::from(slide));
        step(w) != step(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Op, WATERMARK_END};
    use crate::operator::Driven;
    use crate::operators::aggregate::Aggregate;
    use crate::operators::{AggCall, GroupOutput};
    use crate::types::DataType;
    use proptest::prelude::*;

    /// An aggregate over rows `[key, ts, v]`, showing its whole
    /// intermediate row (`key ++ [window start, end] ++ aggregates`).
    fn spec(window: Option<WindowSpec>, lateness_ms: i64, kinds: &[AggKind], emit: EmitMode) -> AggregateSpec {
        let calls: Vec<AggCall> = (kinds.iter())
            .map(|&kind| AggCall {
                kind,
                arg: (kind != AggKind::CountStar).then_some(Expr::Column(2)),
                filter: None,
                input_type: DataType::Int,
            })
            .collect();
        AggregateSpec {
            name: "q".into(),
            filter: None,
            keys: vec![Expr::Column(0)],
            output: GroupOutput {
                select: (0..1 + 2 * usize::from(window.is_some()) + calls.len())
                    .map(Expr::Column)
                    .collect(),
                having: None,
            },
            calls,
            window,
            time_column: Some(1),
            emit,
            lateness_ms,
            retractable: false,
            entries_max: 1 << 20,
            late_rows: false,
            top: None,
        }
    }

    /// What a final aggregate gave: its rows with the watermark in force
    /// before each, its last watermark, and its counters.
    type Seen = (
        Vec<(Op, Vec<Value>, Option<i64>)>,
        Option<i64>,
        crate::operator::OperatorMetrics,
    );

    fn run(spec: &AggregateSpec, inputs: &[Batch]) -> Seen {
        let mut driven = Driven::new(Box::new(Aggregate::new(spec.clone())), 1);
        let mut rows = Vec::new();
        let mut last = None;
        for input in inputs {
            let mut out = Batch::new(spec.output.select.len());
            driven.push(0, input, &mut out).unwrap();
            for segment in out.segments() {
                match segment {
                    Segment::Rows(r) => rows.extend(r.iter().map(|(op, row)| (op, row.to_vec(), last))),
                    Segment::Watermark(w) => last = Some(w),
                }
            }
        }
        let metrics = driven.operator().metrics();
        (rows, last, metrics)
    }

    /// `batch`'s rows for `shards` destinations by key, every mark to each:
    /// what the exchange sends without combining.
    fn split(batch: &Batch, shards: usize) -> Vec<Batch> {
        let mut out: Vec<Batch> = (0..shards).map(|_| Batch::new(batch.width())).collect();
        for segment in batch.segments() {
            match segment {
                Segment::Rows(rows) => {
                    for (op, row) in rows.iter() {
                        out[dest(row, shards)].push(op, row);
                    }
                }
                Segment::Watermark(w) => out.iter_mut().for_each(|b| b.push_mark(w)),
            }
        }
        out
    }

    fn dest(row: &[Value], shards: usize) -> usize {
        row[0].as_i64().map_or(0, |k| k.rem_euclid(shards as i64) as usize)
    }

    fn window() -> impl Strategy<Value = Option<WindowSpec>> {
        prop_oneof![
            Just(None),
            Just(Some(WindowSpec::Tumble { size_ms: 10 })),
            Just(Some(WindowSpec::Hop {
                slide_ms: 4,
                size_ms: 10
            })),
            // Gaps between windows: some times belong to none.
            Just(Some(WindowSpec::Hop {
                slide_ms: 8,
                size_ms: 6
            })),
        ]
    }

    proptest! {
        /// The final aggregates fed partial aggregates (for some batches,
        /// rows) answer exactly as when fed the rows: the same rows in the same order, at the same
        /// watermarks, and the same counters (rows in, late and NULL-time
        /// drops), whatever the marks between the rows (closing windows
        /// mid-batch or not) and however many destinations.
        #[test]
        fn combined_input_answers_as_the_rows(
            window in window(),
            lateness in 0i64..6,
            final_mode in any::<bool>(),
            kinds in prop::collection::vec(
                prop::sample::select(vec![
                    AggKind::CountStar, AggKind::Count, AggKind::CountDistinct, AggKind::Sum,
                    AggKind::Min, AggKind::Max, AggKind::Avg,
                ]),
                1..4,
            ),
            batches in prop::collection::vec(
                prop::collection::vec(
                    (0i64..5, prop::option::weighted(0.9, 0i64..80), prop::option::weighted(0.8, -3i64..4), 0u8..6),
                    0..40,
                ),
                1..5,
            ),
            shards in 1usize..4,
            // Per input batch, whether the combining side sends it as rows
            // anyway (as `partition` does when folding does not pay): the
            // aggregate takes either.
            as_rows in prop::collection::vec(prop::bool::weighted(0.3), 6),
        ) {
            let emit = if final_mode { EmitMode::Final } else { EmitMode::OnWindowClose };
            let lateness = if final_mode { 0 } else { lateness };
            let spec = spec(window, lateness, &kinds, emit);
            prop_assert!(combinable(&spec));
            // Rows in batches, a mark after some rows: the watermark rises
            // with the times seen, less a delay, as a source's does.
            let mut inputs = Vec::new();
            let mut max_time = i64::MIN;
            for rows in &batches {
                let mut b = Batch::new(3);
                for &(key, ts, v, mark) in rows {
                    b.push(Op::Insert, &[Value::Int(key), ts.map_or(Value::Null, Value::Ts), v.map_or(Value::Null, Value::Int)]);
                    if let Some(t) = ts {
                        max_time = max_time.max(t);
                    }
                    if mark < 3 && max_time > i64::MIN {
                        b.push_mark(max_time - 2 * i64::from(mark));
                    }
                }
                inputs.push(b);
            }
            let mut end = Batch::new(3);
            end.push_mark(WATERMARK_END);
            inputs.push(end);
            let mut combiner = Combiner::new(&spec);
            let mut by_rows: Vec<Vec<Batch>> = vec![Vec::new(); shards];
            let mut by_partials: Vec<Vec<Batch>> = vec![Vec::new(); shards];
            for (i, input) in inputs.iter().enumerate() {
                for (d, b) in split(input, shards).into_iter().enumerate() {
                    by_rows[d].push(b);
                }
                let combined = match as_rows[i % as_rows.len()] {
                    true => None,
                    false => combiner.partition(input, shards, |row| dest(row, shards)),
                };
                let parts = combined.unwrap_or_else(|| split(input, shards));
                for (d, b) in parts.into_iter().enumerate() {
                    by_partials[d].push(b);
                }
            }
            for d in 0..shards {
                prop_assert_eq!(run(&spec, &by_partials[d]), run(&spec, &by_rows[d]), "destination {}", d);
            }
        }
    }
}
