//! The operators: synchronous state machines driven by `operator::Driven`.
//!
//! - `map`: WHERE and projection, row by row; passes changelog ops through.
//! - `window_tvf`: TUMBLE/HOP used without aggregation: appends
//!   `window_start`/`window_end` to each row (one row per window for HOP).
//! - `aggregate`: GROUP BY, unwindowed or over tumbling/hopping windows,
//!   under every emit mode; HAVING and the SELECT list are applied inside,
//!   so changelog ops are derived from what the user actually sees.
//! - `session`: GROUP BY over session windows, merging sessions.
//! - `upsert`: a reference table's rows, latest per primary key.
//! - `join`: the interval join (INNER and LEFT) of two append-only inputs.
//! - `asof`: the ASOF join, each left row with the latest right row of its
//!   key at or before it.
//! - `topn`: ROW_NUMBER()/RANK() top-N per partition, windowed or as a
//!   changelog.
//! - `late`: the `LATE DATA TO` stream of a windowed aggregate's late rows.

pub mod aggregate;
pub mod asof;
pub mod combine;
pub mod join;
pub mod late;
pub mod leaders;
pub mod map;
pub mod session;
pub mod topn;
pub mod upsert;
pub mod window_tvf;

use crate::agg::{Accumulator, AggKind};
use crate::expr::Expr;
use crate::types::{DataType, Value};

/// How a windowed or grouped result is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// Final rows when the window closes (append-only). For an unwindowed
    /// GROUP BY the "window" is the whole input, closed at its end.
    OnWindowClose,
    /// A changelog: every update retracts the old row and adds the new.
    Changes,
    /// Like `OnWindowClose`, but lateness is ignored (the planner sets it
    /// to zero).
    Final,
    /// A changelog like `Changes`, coalesced over processing time: the
    /// groups that changed are emitted (`-U/+U`, `+I`, `-D` against what
    /// was last emitted for them) on the first tick at least `interval_ms`
    /// after the previous emission, and when their window closes.
    Every { interval_ms: i64 },
}

impl EmitMode {
    /// Whether the output is a changelog (updates retract what was
    /// emitted before).
    pub fn is_changelog(self) -> bool {
        matches!(self, EmitMode::Changes | EmitMode::Every { .. })
    }
}

/// One aggregate call of a GROUP BY.
#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub kind: AggKind,
    /// The argument (None for COUNT(*)).
    pub arg: Option<Expr>,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Expr>,
    pub input_type: DataType,
}

/// What the user sees of a group: the SELECT list and HAVING, both over the
/// intermediate row `keys ++ [window_start, window_end] ++ aggregates`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOutput {
    pub select: Vec<Expr>,
    pub having: Option<Expr>,
}

/// `e` over `row`, a bare column (the usual key) cloned without the
/// evaluator; a failure is counted in `errors` and gives NULL.
pub(crate) fn eval_or_null(e: &Expr, row: &[Value], errors: &mut u64) -> Value {
    if let Expr::Column(c) = e {
        return row[*c].clone();
    }
    e.eval(row).unwrap_or_else(|_| {
        *errors += 1;
        Value::Null
    })
}

/// Per-row evaluation scratch and counters shared by the grouped operators.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub key: Vec<Value>,
    pub intermediate: Vec<Value>,
    pub eval_errors: u64,
}

impl Scratch {
    /// Evaluates `e`, counting a failure and yielding NULL for it. A bare
    /// column (the usual GROUP BY key) is cloned without the evaluator.
    pub fn eval(&mut self, e: &Expr, row: &[Value]) -> Value {
        eval_or_null(e, row, &mut self.eval_errors)
    }

    pub fn predicate(&mut self, e: &Expr, row: &[Value]) -> bool {
        match e.eval_predicate(row) {
            Ok(b) => b,
            Err(_) => {
                self.eval_errors += 1;
                false
            }
        }
    }

    /// Builds the visible output row of a group into `out`, or returns false
    /// when HAVING rejects it. `window` is `Some((start, end))` for windowed
    /// groups.
    pub fn output_row(
        &mut self,
        output: &GroupOutput,
        key: &[Value],
        window: Option<(i64, i64)>,
        accumulators: &[Accumulator],
        out: &mut Vec<Value>,
    ) -> bool {
        let mut inter = std::mem::take(&mut self.intermediate);
        inter.clear();
        inter.extend_from_slice(key);
        if let Some((start, end)) = window {
            inter.push(Value::Ts(start));
            inter.push(Value::Ts(end));
        }
        inter.extend(accumulators.iter().map(Accumulator::finish));
        let pass = match &output.having {
            Some(h) => self.predicate(h, &inter),
            None => true,
        };
        if pass {
            out.clear();
            for e in &output.select {
                let v = self.eval(e, &inter);
                out.push(v);
            }
        }
        self.intermediate = inter;
        pass
    }
}

/// Feeds one input row into a group's accumulators (add or retract).
#[inline]
pub(crate) fn accumulate(
    scratch: &mut Scratch,
    calls: &[AggCall],
    accumulators: &mut [Accumulator],
    row: &[Value],
    ts: i64,
    seq: u64,
    add: bool,
) {
    debug_assert_eq!(calls.len(), accumulators.len());
    for (call, acc) in calls.iter().zip(accumulators.iter_mut()) {
        if let Some(f) = &call.filter {
            if !scratch.predicate(f, row) {
                continue;
            }
        }
        let value = match &call.arg {
            Some(a) => scratch.eval(a, row),
            None => Value::Int(1),
        };
        if add {
            acc.add(&value, ts, seq);
        } else {
            acc.retract(&value, ts);
        }
    }
}

pub(crate) fn new_accumulators<C: FromIterator<Accumulator>>(calls: &[AggCall], retractable: bool) -> C {
    calls
        .iter()
        .map(|c| Accumulator::new(c.kind, c.input_type, retractable))
        .collect()
}

/// Reads a row's event time from `column` (TIMESTAMP or BIGINT epoch ms).
#[inline]
pub(crate) fn row_time(row: &[Value], column: Option<usize>) -> Option<i64> {
    match column {
        Some(c) => match row[c] {
            Value::Ts(t) | Value::Int(t) => Some(t),
            _ => None,
        },
        None => Some(i64::MIN),
    }
}

/// Fails with a state-limit error naming `operator` once a join holds
/// `buffered` rows of its `entries_max`.
pub(crate) fn check_join_state(
    operator: &str,
    buffered: usize,
    entries_max: usize,
) -> Result<(), crate::error::ExecError> {
    if buffered >= entries_max {
        return Err(crate::error::ExecError::StateLimit {
            operator: operator.to_string(),
            what: "buffered join rows",
            limit: entries_max,
        });
    }
    Ok(())
}

/// The event time of a join input row, if the row is on time: None (and
/// counted) when its time is NULL or below its input's `watermark`. A
/// `column` of None means rows without time, valid from the start.
pub(crate) fn admit_time(
    row: &[Value],
    column: Option<usize>,
    watermark: i64,
    metrics: &mut crate::operator::OperatorMetrics,
) -> Option<i64> {
    let Some(ts) = row_time(row, column) else {
        metrics.null_time_dropped += 1;
        return None;
    };
    if ts < watermark {
        metrics.late_rows_dropped += 1;
        return None;
    }
    Some(ts)
}

/// Evaluates a join key into `key`. False when a part is NULL (a NULL key
/// never matches) or fails (counted in `eval_errors`).
pub(crate) fn eval_join_key(keys: &[Expr], row: &[Value], key: &mut Vec<Value>, eval_errors: &mut u64) -> bool {
    key.clear();
    for k in keys {
        match k.eval(row) {
            Ok(Value::Null) => return false,
            Ok(v) => key.push(v),
            Err(_) => {
                *eval_errors += 1;
                return false;
            }
        }
    }
    true
}

/// Emits the changelog between an old and a new visible row of one group.
pub(crate) fn emit_change(out: &mut crate::batch::Batch, old: Option<&[Value]>, new: Option<&[Value]>) -> u64 {
    use crate::batch::Op;
    match (old, new) {
        (Some(o), Some(n)) if o == n => 0,
        (Some(o), Some(n)) => {
            out.push(Op::UpdateBefore, o);
            out.push(Op::UpdateAfter, n);
            2
        }
        (Some(o), None) => {
            out.push(Op::Delete, o);
            1
        }
        (None, Some(n)) => {
            out.push(Op::Insert, n);
            1
        }
        (None, None) => 0,
    }
}

/// A changelog folded to the rows it leaves (a multiset, sorted): what
/// `Operator::contents` must equal.
#[cfg(test)]
pub(crate) fn fold_changelog(changes: &crate::batch::Batch) -> Vec<Vec<Value>> {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for (op, row) in changes.rows() {
        if op.is_addition() {
            rows.push(row.to_vec());
        } else {
            let i = rows
                .iter()
                .position(|r| r.as_slice() == row)
                .expect("a retraction of an emitted row");
            rows.swap_remove(i);
        }
    }
    rows.sort();
    rows
}
