//! GROUP BY, unwindowed or over tumbling/hopping windows.
//!
//! State: one `KeyedState` of groups per open window, the windows ordered
//! by start in a `BTreeMap` (all windows of one operator have the same
//! size, so start order is end order and closing is a pop from the front).
//! An unwindowed aggregate has a single "window" that closes at the end of
//! input.
//!
//! Emission:
//! - `Changes`: after every input row, the group's visible row before and
//!   after the update are compared and `-U/+U`, `+I` or `-D` emitted
//!   (nothing when the visible row did not change). HAVING can turn an
//!   update into an insert or a delete.
//! - `OnWindowClose`/`Final`: when `W >= end + lateness`, each group's final
//!   row is emitted once as `+I`, and the window's state is freed.
//! - `Every`: a group that changes is marked dirty (once, in a list of
//!   dirty groups); on a processing-time tick at least the interval after
//!   the previous emission, each dirty group's visible row is compared with
//!   the row last emitted for it and the difference emitted as under
//!   `Changes`. A closing window flushes its dirty groups first, so the
//!   folded changelog always ends at the batch answer. A group emptied by
//!   retractions stays (with fresh accumulators) until its `-D` is out.
//!
//! A record is late (dropped and counted) when every window it belongs to
//! is closed at the watermark in force before it; with `LATE DATA TO` it
//! goes to that stream instead (see `late`), as does a record whose event
//! time is NULL.

use std::collections::BTreeMap;

use crate::agg::Accumulator;
use crate::batch::{Batch, Op, RowsRef, WATERMARK_END, WATERMARK_START};
use crate::error::ExecError;
use crate::expr::Expr;
use crate::operator::{Operator, OperatorMetrics};
use crate::operators::late::{LateRows, REASON_NULL_TIME, REASON_WINDOW_CLOSED};
use crate::operators::leaders::{rank_value, Leaders, TopPrune};
use crate::operators::{accumulate, emit_change, new_accumulators, row_time, AggCall, EmitMode, GroupOutput, Scratch};
use crate::state::{Emptying, KeyedState};
use crate::types::Value;
use crate::window::{is_closed, window_end, FloorCache, WindowSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSpec {
    /// The stream's name, for errors.
    pub name: String,
    /// WHERE, applied to input rows before grouping.
    pub filter: Option<Expr>,
    pub keys: Vec<Expr>,
    pub calls: Vec<AggCall>,
    /// Tumble or hop; None for an unwindowed GROUP BY.
    pub window: Option<WindowSpec>,
    /// Event-time column of the input: windows are assigned by it, and
    /// FIRST_VALUE/LAST_VALUE order by it (arrival order when None).
    pub time_column: Option<usize>,
    pub emit: EmitMode,
    pub lateness_ms: i64,
    pub output: GroupOutput,
    /// The input is a changelog, so accumulators must retract exactly.
    pub retractable: bool,
    pub entries_max: usize,
    /// Late and NULL-time rows go to a `LATE DATA TO` stream.
    pub late_rows: bool,
    /// Set by the plan (`prune`) when the only reader is a top-N over the
    /// windows ranking by a value that only grows: a window's close emits
    /// only the groups that can rank (see `leaders`).
    pub top: Option<TopPrune>,
}

/// The windows a row falls in, as `open_windows` finds them.
enum Windows {
    /// This many are open (their starts written out).
    Open(usize),
    /// Every one has closed: the row is late.
    Closed,
    /// None at all: the row is in a gap between HOP windows.
    None,
}

/// A group's accumulators: one inline (most GROUP BYs rank or report one
/// aggregate: q5's COUNT), more on the heap.
type Accumulators = smallvec::SmallVec<[Accumulator; 1]>;

#[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Group {
    accumulators: Accumulators,
    /// Net rows in the group (adds minus retractions); at 0 the group is
    /// gone (under `Every`, once its deletion is emitted).
    rows: i64,
    /// `Every` only (boxed: the other modes, q5's millions of groups
    /// among them, keep 8 bytes a group for it instead of 32).
    every: Option<Box<EveryMark>>,
}

/// What `Every` keeps of a group between emissions.
#[derive(Clone, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct EveryMark {
    /// The visible row last emitted, if any.
    emitted: Option<Vec<Value>>,
    /// Changed since the last emission (and listed in `dirty`).
    dirty: bool,
}

pub struct Aggregate {
    spec: AggregateSpec,
    /// Open windows by start (unwindowed: a single entry at i64::MIN).
    windows: BTreeMap<i64, KeyedState<Group>>,
    live_groups: usize,
    watermark: i64,
    seq: u64,
    scratch: Scratch,
    old_row: Vec<Value>,
    new_row: Vec<Value>,
    /// `Every`: groups changed since the last emission, as (window start,
    /// key). Entries of windows closed since are stale and skipped.
    dirty: Vec<(i64, Vec<Value>)>,
    /// `Every`: processing time of the next emission (None before the
    /// first tick).
    next_emit_ms: Option<i64>,
    late: LateRows,
    /// A closed window's state, emptied but still mapped, for the next
    /// window to open (one is enough: windows open as others close).
    spare: Option<KeyedState<Group>>,
    /// A closed window's state being emptied, a slice per input batch
    /// (see `tidy`); then the spare.
    emptying: Option<Emptying<Group>>,
    /// Window assignment's last floor (see `FloorCache`).
    floors: FloorCache,
    /// Whether partial aggregates may come (`combine::combinable`).
    combinable: bool,
    /// Under `AggregateSpec::top`: each open window's groups that can
    /// rank, by window start.
    leaders: BTreeMap<i64, Leaders>,
    metrics: OperatorMetrics,
}

/// What a checkpoint keeps of an `Aggregate` (see `snapshot`).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct AggregateSnapshot {
    /// Open windows by start, each group in the state's entry order (so
    /// a restored operator emits in the same order).
    windows: Vec<(i64, crate::snapshot::Entries<Group>)>,
    watermark: i64,
    seq: u64,
    dirty: Vec<(i64, Vec<Value>)>,
    next_emit_ms: Option<i64>,
    late_diverted: u64,
    metrics: OperatorMetrics,
}

const UNWINDOWED: i64 = i64::MIN;

/// The fewest entries of a closed window `tidy` drops per input batch
/// (~100 ns each: a few microseconds).
const EMPTYING_ENTRIES_MIN: usize = 64;

impl Group {
    fn new(calls: &[AggCall], retractable: bool, every: bool) -> Group {
        Group {
            accumulators: new_accumulators(calls, retractable),
            rows: 0,
            every: every.then(Box::default),
        }
    }

    /// The group's `Every` state; only ever asked under `Every`.
    fn every(&mut self) -> &mut EveryMark {
        self.every
            .as_mut()
            .expect("an `Every` aggregate's groups have an EveryMark")
    }
}

/// The groups of the window starting at `start`, opened (from the spare
/// state if there is one) when it is new.
fn window_groups<'a>(
    windows: &'a mut BTreeMap<i64, KeyedState<Group>>,
    spare: &mut Option<KeyedState<Group>>,
    entries_max: usize,
    start: i64,
) -> &'a mut KeyedState<Group> {
    windows
        .entry(start)
        .or_insert_with(|| spare.take().unwrap_or_else(|| KeyedState::new(entries_max)))
}

impl Aggregate {
    pub fn new(spec: AggregateSpec) -> Aggregate {
        if let Some(w) = spec.window {
            assert!(w.size_ms().is_some(), "sessions have their own operator");
            assert!(spec.time_column.is_some(), "a window needs a time column");
        }
        assert!(spec.lateness_ms >= 0);
        let combinable = crate::operators::combine::combinable(&spec);
        Aggregate {
            late: LateRows::new(spec.late_rows),
            spec,
            windows: BTreeMap::new(),
            live_groups: 0,
            watermark: WATERMARK_START,
            seq: 0,
            scratch: Scratch::default(),
            old_row: Vec::new(),
            new_row: Vec::new(),
            dirty: Vec::new(),
            next_emit_ms: None,
            spare: None,
            emptying: None,
            floors: FloorCache::default(),
            combinable,
            leaders: BTreeMap::new(),
            metrics: OperatorMetrics::default(),
        }
    }

    /// Empties some of a closed window's state: as many entries as the
    /// batch has rows (at least `EMPTYING_ENTRIES_MIN`), so each input row
    /// pays for at most one old group and the event path never waits for
    /// a whole window's drop (600,000 groups took 60-75 ms in one go).
    fn tidy(&mut self, rows: usize) {
        if let Some(e) = &mut self.emptying {
            if e.step(rows.max(EMPTYING_ENTRIES_MIN)) {
                self.spare = self.emptying.take().map(Emptying::into_empty);
            }
        }
    }

    /// A closed window's state, to be emptied by `tidy`; one still being
    /// emptied (several windows closed at once) is finished first.
    fn retire(&mut self, groups: KeyedState<Group>) {
        if let Some(e) = self.emptying.take() {
            self.spare = Some(e.finish());
        }
        self.emptying = Some(groups.into_emptying());
    }

    /// Before the lookups of one key in several windows: each misses the
    /// cache two or three times in a row; started together, the misses of
    /// the windows overlap (`KeyedState::prefetch`).
    #[inline]
    fn prefetch(&self, starts: &[i64], hash: u64) {
        if starts.len() < 2 {
            return;
        }
        for step in 0..2 {
            for start in starts {
                if let Some(groups) = self.windows.get(start) {
                    groups.prefetch(hash, step);
                }
            }
        }
    }

    /// Under `AggregateSpec::top`: offers a group's new ranking value to
    /// its window's leaders.
    #[inline]
    fn offer(
        leaders: &mut BTreeMap<i64, Leaders>,
        top: Option<TopPrune>,
        start: i64,
        key: &[Value],
        accumulators: &[Accumulator],
    ) {
        if let Some(top) = top {
            leaders
                .entry(start)
                .or_insert_with(|| Leaders::new(top.n))
                .offer(key, rank_value(&accumulators[top.call]));
        }
    }

    fn window_bounds(&self, start: i64) -> Option<(i64, i64)> {
        let size = self.spec.window?.size_ms().expect("fixed window");
        Some((start, window_end(start, size)))
    }

    /// The starts of `ts`'s windows that are open at `watermark`: the
    /// first eight in `open` (their count returned), any more in
    /// `overflow` (a hop of many windows).
    fn open_windows(
        &mut self,
        window: WindowSpec,
        ts: i64,
        watermark: i64,
        open: &mut [i64; 8],
        overflow: &mut Vec<i64>,
    ) -> Windows {
        let size = window.size_ms().expect("fixed window");
        let lateness = self.spec.lateness_ms;
        let mut open_count = 0;
        let mut any = false;
        window.for_each_start_cached(ts, &mut self.floors, |start| {
            any = true;
            if !is_closed(window_end(start, size), lateness, watermark) {
                if open_count < open.len() {
                    open[open_count] = start;
                    open_count += 1;
                } else {
                    overflow.push(start);
                }
            }
        });
        match open_count {
            _ if !any => Windows::None,
            0 => Windows::Closed,
            n => Windows::Open(n),
        }
    }

    /// Partial aggregates from a combined input (see `combine`): each
    /// stands for `rows` rows of one group and window set, and is judged
    /// and applied as each of them would be.
    fn on_partials(&mut self, partials: RowsRef<'_>, watermark: i64) -> Result<(), ExecError> {
        assert!(
            self.combinable,
            "partial aggregates for an aggregate that cannot merge them"
        );
        self.tidy(partials.len());
        let k = self.spec.keys.len();
        for (row, accumulators) in partials.partials() {
            let Value::Int(rows) = row[k + 1] else {
                unreachable!("a partial row ends with its row count")
            };
            debug_assert!(rows > 0);
            self.metrics.rows_in += rows as u64;
            // The representative time sits after the key. Rows without
            // one count in an unwindowed aggregate (they need no window).
            let time = row_time(row, self.spec.time_column.map(|_| k));
            let Some(ts) = time.or(self.spec.window.is_none().then_some(i64::MIN)) else {
                self.metrics.null_time_dropped += rows as u64;
                continue;
            };
            let mut key = std::mem::take(&mut self.scratch.key);
            key.clear();
            key.extend_from_slice(&row[..k]);
            let hash = crate::state::key_hash(&key);
            self.scratch.key = key;
            match self.spec.window {
                None => self.merge_partial(UNWINDOWED, hash, accumulators, rows)?,
                Some(window) => {
                    let mut open = [0i64; 8];
                    let mut overflow = Vec::new();
                    let open_count = match self.open_windows(window, ts, watermark, &mut open, &mut overflow) {
                        Windows::Open(n) => n,
                        Windows::Closed => {
                            self.metrics.late_rows_dropped += rows as u64;
                            continue;
                        }
                        Windows::None => {
                            self.metrics.rows_in_no_window += rows as u64;
                            continue;
                        }
                    };
                    self.prefetch(&open[..open_count], hash);
                    for &start in open[..open_count].iter().chain(overflow.iter()) {
                        self.merge_partial(start, hash, accumulators, rows)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `apply` for a partial aggregate of `rows` rows, under an emission
    /// at window close (nothing to emit now).
    fn merge_partial(
        &mut self,
        start: i64,
        hash: u64,
        accumulators: &[Accumulator],
        rows: i64,
    ) -> Result<(), ExecError> {
        let key = std::mem::take(&mut self.scratch.key);
        let groups = window_groups(&mut self.windows, &mut self.spare, self.spec.entries_max, start);
        let before = groups.len();
        let live_elsewhere = self.live_groups - before;
        let calls = &self.spec.calls;
        let group = groups.get_or_insert_hashed(&key, hash, live_elsewhere, &self.spec.name, || {
            Group::new(calls, false, false)
        })?;
        for (acc, partial) in group.accumulators.iter_mut().zip(accumulators) {
            acc.merge(partial.clone());
        }
        group.rows += rows;
        Self::offer(&mut self.leaders, self.spec.top, start, &key, &group.accumulators);
        // Arrival numbers as if the rows had come one by one.
        self.seq += rows as u64;
        self.live_groups = self.live_groups + groups.len() - before;
        self.scratch.key = key;
        Ok(())
    }

    /// Applies one row (add or retract) to the group of `key` in the window
    /// starting at `start`, emitting the change under `Changes`.
    fn apply(
        &mut self,
        start: i64,
        hash: u64,
        row: &[Value],
        ts: i64,
        add: bool,
        out: &mut Batch,
    ) -> Result<(), ExecError> {
        let bounds = self.window_bounds(start);
        let key = std::mem::take(&mut self.scratch.key);
        let groups = window_groups(&mut self.windows, &mut self.spare, self.spec.entries_max, start);
        let before = groups.len();
        let live_elsewhere = self.live_groups - before;
        let retractable = self.spec.retractable;
        let every = matches!(self.spec.emit, EmitMode::Every { .. });
        let calls = &self.spec.calls;
        let group = groups.get_or_insert_hashed(&key, hash, live_elsewhere, &self.spec.name, || {
            Group::new(calls, retractable, every)
        })?;
        let changes = self.spec.emit == EmitMode::Changes;
        let had_old = changes
            && group.rows > 0
            && self
                .scratch
                .output_row(&self.spec.output, &key, bounds, &group.accumulators, &mut self.old_row);
        self.seq += 1;
        accumulate(
            &mut self.scratch,
            calls,
            &mut group.accumulators,
            row,
            ts,
            self.seq,
            add,
        );
        group.rows += if add { 1 } else { -1 };
        Self::offer(&mut self.leaders, self.spec.top, start, &key, &group.accumulators);
        assert!(
            group.rows >= 0,
            "retraction of a row that was never added to group {key:?}"
        );
        let mut emptied = group.rows == 0;
        let has_new = changes
            && !emptied
            && self
                .scratch
                .output_row(&self.spec.output, &key, bounds, &group.accumulators, &mut self.new_row);
        if every {
            let mark = group.every();
            if !mark.dirty {
                mark.dirty = true;
                self.dirty.push((start, key.clone()));
            }
            if emptied && mark.emitted.is_some() {
                // Kept until the next emission says it is gone; a row
                // that comes back starts from empty accumulators.
                group.accumulators = new_accumulators(calls, retractable);
                emptied = false;
            }
        }
        if emptied {
            groups.remove(&key);
        }
        let after = groups.len();
        self.live_groups = self.live_groups + after - before;
        if changes {
            self.metrics.rows_out += emit_change(
                out,
                had_old.then_some(self.old_row.as_slice()),
                has_new.then_some(self.new_row.as_slice()),
            );
        }
        self.scratch.key = key;
        Ok(())
    }

    /// Emits the final rows of one closed window (not under `Changes`,
    /// where everything was emitted as it happened) and frees it.
    fn close(&mut self, start: i64, mut groups: KeyedState<Group>, out: &mut Batch) {
        self.live_groups -= groups.len();
        let bounds = self.window_bounds(start);
        let (scratch, output, row, metrics) = (
            &mut self.scratch,
            &self.spec.output,
            &mut self.new_row,
            &mut self.metrics,
        );
        match self.spec.emit {
            // Everything was emitted as it happened.
            EmitMode::Changes => {}
            EmitMode::Every { .. } => {
                groups.drain_keeping_pages(|key, mut group| {
                    if group.every().dirty {
                        metrics.rows_out += emit_group(scratch, output, &key, bounds, &mut group, row, out);
                    }
                });
                self.spare = Some(groups);
                return;
            }
            EmitMode::OnWindowClose | EmitMode::Final => {
                let mut emit = |key: &[Value], group: &Group| {
                    if scratch.output_row(output, key, bounds, &group.accumulators, row) {
                        out.push(Op::Insert, row);
                        metrics.rows_out += 1;
                    }
                };
                match self.spec.top {
                    // Only the groups that can rank.
                    Some(_) => {
                        if let Some(leaders) = self.leaders.remove(&start) {
                            for key in leaders.finish() {
                                emit(&key, groups.get(&key).expect("a leader is a group of its window"));
                            }
                        }
                    }
                    None => groups.iter().for_each(|(key, group)| emit(key, group)),
                }
            }
        }
        self.retire(groups);
    }
}

/// Why a windowed aggregate has no `contents`.
const WINDOWED_CONTENTS: &str = "it is windowed: a closed window's rows are not kept";

/// A group's row as its changelog folds to it (`contents`): under
/// `EMIT EVERY` the row last emitted, else the row of its accumulators
/// now (none when HAVING rejects it or it has no rows).
fn visible_row(
    scratch: &mut Scratch,
    output: &GroupOutput,
    key: &[Value],
    group: &Group,
    row: &mut Vec<Value>,
    out: &mut Batch,
) {
    match &group.every {
        Some(mark) => {
            if let Some(r) = &mark.emitted {
                out.push(Op::Insert, r);
            }
        }
        None => {
            if group.rows > 0 && scratch.output_row(output, key, None, &group.accumulators, row) {
                out.push(Op::Insert, row);
            }
        }
    }
}

/// `Every`: emits the change of one dirty group since its last emission
/// and clears its dirty mark. Returns the rows emitted.
fn emit_group(
    scratch: &mut Scratch,
    output: &GroupOutput,
    key: &[Value],
    bounds: Option<(i64, i64)>,
    group: &mut Group,
    row: &mut Vec<Value>,
    out: &mut Batch,
) -> u64 {
    let visible = group.rows > 0 && scratch.output_row(output, key, bounds, &group.accumulators, row);
    let mark = group.every();
    debug_assert!(mark.dirty);
    mark.dirty = false;
    let new = visible.then_some(row.as_slice());
    let n = emit_change(out, mark.emitted.as_deref(), new);
    match new {
        Some(r) if n > 0 => mark.emitted = Some(r.to_vec()),
        Some(_) => {}
        None => mark.emitted = None,
    }
    n
}

impl Operator for Aggregate {
    fn name(&self) -> &'static str {
        if self.spec.window.is_some() {
            "window_aggregate"
        } else {
            "aggregate"
        }
    }

    fn on_rows(&mut self, _input: usize, rows: RowsRef<'_>, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        if rows.is_combined() {
            return self.on_partials(rows, watermark);
        }
        self.tidy(rows.len());
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            if let Some(f) = &self.spec.filter {
                if !self.scratch.predicate(f, row) {
                    continue;
                }
            }
            // A row whose event time is NULL has no window, so a windowed
            // aggregate drops it (counted, or to `LATE DATA TO`); an
            // unwindowed one needs no time and counts it, ordered before
            // every timed row for FIRST_VALUE/LAST_VALUE (as rows of a
            // source without event time are).
            let time = row_time(row, self.spec.time_column);
            let Some(ts) = time.or(self.spec.window.is_none().then_some(i64::MIN)) else {
                if !self.late.divert(op, row, REASON_NULL_TIME) {
                    self.metrics.null_time_dropped += 1;
                }
                continue;
            };
            let mut key = std::mem::take(&mut self.scratch.key);
            key.clear();
            for k in &self.spec.keys {
                let v = self.scratch.eval(k, row);
                key.push(v);
            }
            let hash = crate::state::key_hash(&key);
            self.scratch.key = key;
            let add = op.is_addition();
            match self.spec.window {
                None => self.apply(UNWINDOWED, hash, row, ts, add, out)?,
                Some(window) => {
                    let mut open = [0i64; 8];
                    let mut overflow = Vec::new();
                    let open_count = match self.open_windows(window, ts, watermark, &mut open, &mut overflow) {
                        Windows::Open(n) => n,
                        Windows::Closed => {
                            if !self.late.divert(op, row, REASON_WINDOW_CLOSED) {
                                self.metrics.late_rows_dropped += 1;
                            }
                            continue;
                        }
                        Windows::None => {
                            self.metrics.rows_in_no_window += 1;
                            continue;
                        }
                    };
                    self.prefetch(&open[..open_count], hash);
                    for &start in open[..open_count].iter().chain(overflow.iter()) {
                        self.apply(start, hash, row, ts, add, out)?;
                    }
                }
            }
        }
        self.metrics.eval_errors = self.scratch.eval_errors;
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        assert!(watermark > self.watermark, "watermarks only advance");
        self.watermark = watermark;
        match self.spec.window {
            None => {
                if watermark == WATERMARK_END {
                    if let Some(groups) = self.windows.remove(&UNWINDOWED) {
                        self.close(UNWINDOWED, groups, out);
                    }
                }
            }
            Some(window) => {
                let size = window.size_ms().expect("fixed window");
                while let Some(entry) = self.windows.first_entry() {
                    if !is_closed(window_end(*entry.key(), size), self.spec.lateness_ms, watermark) {
                        break;
                    }
                    let (start, groups) = entry.remove_entry();
                    self.close(start, groups, out);
                }
            }
        }
        self.metrics.eval_errors = self.scratch.eval_errors;
        Ok(())
    }

    fn contents(&mut self, out: &mut Batch) -> Result<(), String> {
        if self.spec.window.is_some() {
            return Err(WINDOWED_CONTENTS.into());
        }
        let Some(groups) = self.windows.get(&UNWINDOWED) else {
            return Ok(());
        };
        let (scratch, output, row) = (&mut self.scratch, &self.spec.output, &mut self.new_row);
        groups
            .iter()
            .for_each(|(key, group)| visible_row(scratch, output, key, group, row, out));
        Ok(())
    }

    /// The rows straight from the snapshot's groups: a million groups
    /// restored into the keyed state first took twice as long.
    fn snapshot_contents(&mut self, bytes: &[u8], out: &mut Batch) -> Result<Result<(), String>, ExecError> {
        if self.spec.window.is_some() {
            return Ok(Err(WINDOWED_CONTENTS.into()));
        }
        let s: AggregateSnapshot = crate::snapshot::decode(&self.spec.name, bytes)?;
        let (scratch, output, row) = (&mut self.scratch, &self.spec.output, &mut self.new_row);
        for (_, groups) in s.windows.iter().filter(|(start, _)| *start == UNWINDOWED) {
            groups
                .iter()
                .for_each(|(key, group)| visible_row(scratch, output, key, group, row, out));
        }
        Ok(Ok(()))
    }

    fn take_late_rows(&mut self) -> Option<Batch> {
        self.late.take()
    }

    fn tick_interval_ms(&self) -> Option<i64> {
        match self.spec.emit {
            EmitMode::Every { interval_ms } => Some(interval_ms),
            _ => None,
        }
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Batch) -> Result<(), ExecError> {
        let Some(interval) = self.tick_interval_ms() else {
            return Ok(());
        };
        let due = *self.next_emit_ms.get_or_insert(now_ms.saturating_add(interval));
        if now_ms < due {
            return Ok(());
        }
        self.next_emit_ms = Some(now_ms.saturating_add(interval));
        let mut dirty = std::mem::take(&mut self.dirty);
        for (start, key) in dirty.drain(..) {
            let bounds = self.window_bounds(start);
            let Some(groups) = self.windows.get_mut(&start) else {
                continue; // The window closed, and flushed, since.
            };
            let Some(group) = groups.get_mut(&key) else {
                continue; // Emptied before it was ever emitted.
            };
            if !group.every().dirty {
                continue; // Listed twice (removed and re-created); done.
            }
            self.metrics.rows_out += emit_group(
                &mut self.scratch,
                &self.spec.output,
                &key,
                bounds,
                group,
                &mut self.new_row,
                out,
            );
            if group.rows == 0 {
                groups.remove(&key);
                self.live_groups -= 1;
            }
        }
        // Keep the list's allocation for the next interval.
        self.dirty = dirty;
        self.metrics.eval_errors = self.scratch.eval_errors;
        Ok(())
    }

    fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        assert!(!self.late.is_pending(), "late rows are taken after every batch");
        let snapshot = AggregateSnapshot {
            windows: self
                .windows
                .iter()
                .map(|(start, groups)| (*start, groups.iter().map(|(k, g)| (k.clone(), g.clone())).collect()))
                .collect(),
            watermark: self.watermark,
            seq: self.seq,
            dirty: self.dirty.clone(),
            next_emit_ms: self.next_emit_ms,
            late_diverted: self.late.diverted(),
            metrics: self.metrics,
        };
        Ok(crate::snapshot::defer(&self.spec.name, snapshot))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let s: AggregateSnapshot = crate::snapshot::decode(&self.spec.name, bytes)?;
        self.windows.clear();
        self.leaders.clear();
        self.live_groups = 0;
        for (start, groups) in s.windows {
            let mut state = self
                .spare
                .take()
                .unwrap_or_else(|| KeyedState::new(self.spec.entries_max));
            state.reserve(groups.len().min(self.spec.entries_max));
            for (key, group) in groups {
                // The leaders are not kept: they follow from the groups.
                Self::offer(&mut self.leaders, self.spec.top, start, &key, &group.accumulators);
                state.insert_new(key, group, self.live_groups, &self.spec.name)?;
                self.live_groups += 1;
            }
            self.windows.insert(start, state);
        }
        self.watermark = s.watermark;
        self.seq = s.seq;
        self.dirty = s.dirty;
        self.next_emit_ms = s.next_emit_ms;
        self.late.restore_diverted(s.late_diverted);
        self.metrics = s.metrics;
        self.scratch.eval_errors = s.metrics.eval_errors;
        Ok(())
    }

    fn rescale(
        &self,
        parts: &[crate::rescale::Part<'_>],
        keep: crate::rescale::Keep<'_>,
    ) -> Result<Vec<u8>, ExecError> {
        let mut windows: BTreeMap<i64, crate::snapshot::Entries<Group>> = BTreeMap::new();
        let mut out = AggregateSnapshot {
            windows: Vec::new(),
            watermark: 0,
            seq: 0,
            dirty: Vec::new(),
            next_emit_ms: None,
            late_diverted: 0,
            metrics: OperatorMetrics::default(),
        };
        let mut watermark = None;
        for p in parts {
            let s: AggregateSnapshot = crate::snapshot::decode(&self.spec.name, p.bytes)?;
            for (start, groups) in s.windows {
                let kept: Vec<_> = groups.into_iter().filter(|(k, _)| keep(k)).collect();
                if !kept.is_empty() {
                    windows.entry(start).or_default().extend(kept);
                }
            }
            crate::rescale::min_watermark(&mut watermark, s.watermark);
            // Accumulators order rows by it within a key: above all.
            out.seq = out.seq.max(s.seq);
            out.dirty.extend(s.dirty.into_iter().filter(|(_, k)| keep(k)));
            out.next_emit_ms = match (out.next_emit_ms, s.next_emit_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if p.counters {
                out.late_diverted += s.late_diverted;
                crate::rescale::add_metrics(&mut out.metrics, &s.metrics);
            }
        }
        out.windows = windows.into_iter().collect();
        out.watermark = watermark.unwrap_or(crate::batch::WATERMARK_START);
        crate::snapshot::encode(&self.spec.name, &out)
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn state_bytes(&self) -> usize {
        self.windows.values().map(KeyedState::approx_bytes).sum::<usize>()
            + (self.dirty.len() + self.leaders.values().map(Leaders::len).sum::<usize>())
                * crate::state::HEAP_BYTES_PER_ENTRY
    }

    fn metrics(&self) -> OperatorMetrics {
        OperatorMetrics {
            state_entries: self.live_groups as u64,
            late_rows_diverted: self.late.diverted(),
            ..self.metrics
        }
    }
}
