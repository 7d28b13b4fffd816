//! Top-N: `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o) <= n` (or
//! `RANK()`) over an append-only input or a changelog. Over a changelog
//! every row of a partition is kept (retracting a top row lets the next
//! one up) and `-U`/`-D` remove the equal row.
//!
//! - Partitioned by a window (`window_end` among the partition columns):
//!   each partition's top rows are emitted once, as `+I` with their
//!   number, when the watermark reaches the window end; a row whose window
//!   has already ended at the watermark before it is late (dropped,
//!   counted), as for a windowed aggregate.
//! - Otherwise a changelog: after each row, every position of its
//!   partition's top-n whose row or number changed emits `-U`/`+U` (or
//!   `+I` when the position was empty, `-D` when it empties).
//!
//! Ties: rows equal in the ORDER BY keys are ordered by the values of the
//! whole row, column by column, never by arrival, so ROW_NUMBER picks the
//! same rows whatever order they come in and however many shards there
//! are. RANK gives tied rows one rank and keeps every row whose rank is at
//! most n (in the same order).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::batch::{Batch, Op, RowsRef};
use crate::error::ExecError;
use crate::expr::Expr;
use crate::operator::{Operator, OperatorMetrics};
use crate::operators::{emit_change, eval_or_null};
use crate::state::{GroupKey, KeyedState};
use crate::types::Value;

/// The largest n accepted: the partition's rows are kept sorted in a vector.
pub const TOP_N_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankKind {
    RowNumber,
    Rank,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopNSpec {
    pub name: String,
    pub partition: Vec<Expr>,
    /// Sort keys and whether each is descending.
    pub order: Vec<(Expr, bool)>,
    pub n: usize,
    pub kind: RankKind,
    /// The input's `window_end` column, when the partition includes it.
    pub window_end: Option<usize>,
    pub entries_max: usize,
    /// The input is a changelog: every row of a partition is kept (a
    /// retracted top row lets the next one up), and `-U`/`-D` remove.
    pub retractable: bool,
}

#[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Ranked {
    sort: Box<[Value]>,
    row: Box<[Value]>,
}

/// What a checkpoint keeps of a `TopN`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct TopNSnapshot {
    partitions: Vec<(GroupKey, Vec<Ranked>)>,
    closing: crate::snapshot::ByTimeEntries<GroupKey>,
    watermark: i64,
    seq: u64,
    metrics: OperatorMetrics,
}

pub struct TopN {
    spec: TopNSpec,
    partitions: KeyedState<Vec<Ranked>>,
    /// Windowed: partitions by window end, for closing.
    closing: BTreeMap<(i64, u64), GroupKey>,
    watermark: i64,
    seq: u64,
    key: Vec<Value>,
    /// The current row's sort keys (kept rows copy them).
    sort: Vec<Value>,
    before: Vec<Vec<Value>>,
    metrics: OperatorMetrics,
}

fn compare(order: &[(Expr, bool)], a: &[Value], b: &[Value]) -> Ordering {
    for (i, (_, desc)) in order.iter().enumerate() {
        // NULLs sort last in either direction.
        let o = match (&a[i], &b[i]) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => return Ordering::Greater,
            (_, Value::Null) => return Ordering::Less,
            (x, y) if *desc => y.cmp(x),
            (x, y) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Where a kept row stands against a new one (`sort`, `row`): by the
/// ORDER BY keys, then by the whole row, a total order up to equal rows
/// (which are indistinguishable).
fn compare_ranked(order: &[(Expr, bool)], kept: &Ranked, sort: &[Value], row: &[Value]) -> Ordering {
    compare(order, &kept.sort, sort).then_with(|| kept.row.as_ref().cmp(row))
}

impl TopN {
    pub fn new(spec: TopNSpec) -> TopN {
        assert!(spec.n >= 1 && spec.n <= TOP_N_MAX, "n is checked by the planner");
        TopN {
            partitions: KeyedState::new(spec.entries_max),
            spec,
            closing: BTreeMap::new(),
            watermark: crate::batch::WATERMARK_START,
            seq: 0,
            key: Vec::new(),
            sort: Vec::new(),
            before: Vec::new(),
            metrics: OperatorMetrics::default(),
        }
    }

    /// The visible rows of a partition: each row followed by its number.
    fn visible(spec: &TopNSpec, rows: &[Ranked], out: &mut Vec<Vec<Value>>) {
        out.clear();
        let mut rank = 0usize;
        for (i, r) in rows.iter().enumerate() {
            let number = match spec.kind {
                RankKind::RowNumber => i + 1,
                RankKind::Rank => {
                    if i == 0 || compare(&spec.order, &rows[i - 1].sort, &r.sort) != Ordering::Equal {
                        rank = i + 1;
                    }
                    rank
                }
            };
            if number > spec.n {
                break;
            }
            let mut v = r.row.to_vec();
            v.push(Value::Int(number as i64));
            out.push(v);
        }
    }

    /// Emits how the visible rows moved from `self.before` to `after`.
    fn emit_moves(&mut self, after: &[Vec<Value>], out: &mut Batch) {
        for i in 0..self.before.len().max(after.len()) {
            self.metrics.rows_out += emit_change(
                out,
                self.before.get(i).map(Vec::as_slice),
                after.get(i).map(Vec::as_slice),
            );
        }
    }

    fn emit_partition(&mut self, rows: &mut [Ranked], out: &mut Batch) {
        if self.spec.kind == RankKind::Rank {
            // Ties were kept in arrival order (see `on_rows`).
            let order = &self.spec.order;
            rows.sort_by(|a, b| compare_ranked(order, a, &b.sort, &b.row));
        }
        let mut visible = Vec::new();
        TopN::visible(&self.spec, rows, &mut visible);
        for v in &visible {
            out.push(Op::Insert, v);
            self.metrics.rows_out += 1;
        }
    }
}

impl Operator for TopN {
    fn name(&self) -> &'static str {
        "top_n"
    }

    fn on_rows(&mut self, _input: usize, rows: RowsRef<'_>, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            debug_assert!(self.spec.retractable || op == Op::Insert, "append-only input");
            let window_end = match self.spec.window_end {
                Some(c) => match row[c] {
                    Value::Ts(t) | Value::Int(t) => Some(t),
                    _ => {
                        self.metrics.null_time_dropped += 1;
                        continue;
                    }
                },
                None => None,
            };
            if let Some(end) = window_end {
                if end <= watermark {
                    self.metrics.late_rows_dropped += 1;
                    continue;
                }
            }
            self.key.clear();
            for p in &self.spec.partition {
                self.key.push(eval_or_null(p, row, &mut self.metrics.eval_errors));
            }
            self.sort.clear();
            for (e, _) in &self.spec.order {
                self.sort.push(eval_or_null(e, row, &mut self.metrics.eval_errors));
            }
            let sort = self.sort.as_slice();
            if !op.is_addition() {
                // A retraction: remove the equal row (the earliest) and
                // report how the visible rows moved.
                let Some(list) = self.partitions.get_mut(&self.key) else {
                    continue;
                };
                if window_end.is_none() {
                    TopN::visible(&self.spec, list, &mut self.before);
                }
                if let Some(pos) = list.iter().position(|r| *r.row == *row) {
                    list.remove(pos);
                }
                let emptied = list.is_empty();
                if window_end.is_none() {
                    let mut after = Vec::new();
                    TopN::visible(&self.spec, list, &mut after);
                    self.emit_moves(&after, out);
                }
                if emptied && window_end.is_none() {
                    self.partitions.remove(&self.key);
                }
                continue;
            }
            let list = self
                .partitions
                .get_or_insert_with(&self.key, 0, &self.spec.name, Vec::new)?;
            // New, or emptied by retractions (a windowed partition stays
            // until its close): either way it may need a closing entry; a
            // second one for the same key finds nothing to emit.
            let is_new = list.is_empty();
            let n = self.spec.n;
            if !self.spec.retractable
                && list
                    .get(n - 1)
                    .is_some_and(|nth| compare(&self.spec.order, &nth.sort, sort) == Ordering::Less)
            {
                // Below the n-th row in the ORDER BY keys alone: it can
                // neither take a place nor tie with the n-th. Most rows of
                // a busy window end here, after one comparison.
                continue;
            }
            if is_new {
                if let Some(end) = window_end {
                    self.closing.insert((end, self.seq), self.key.as_slice().into());
                    self.seq += 1;
                }
            }
            let changelog = window_end.is_none();
            if changelog {
                TopN::visible(&self.spec, list, &mut self.before);
            }
            // After every row that sorts before or equal to it, in the
            // total order (ties by the row's values, not arrival). Under
            // RANK over windows, tied rows are all kept or all dropped and
            // only emitted at the close, which orders them (`emit_partition`):
            // a tie goes after its equals without comparing whole rows.
            let at = if self.spec.kind == RankKind::Rank && !changelog {
                list.partition_point(|r| compare(&self.spec.order, &r.sort, sort) != Ordering::Greater)
            } else {
                list.partition_point(|r| compare_ranked(&self.spec.order, r, sort, row) != Ordering::Greater)
            };
            // A row beyond position n (and, for RANK, not tied with the
            // n-th) can never become visible: it is not kept.
            let keep = self.spec.retractable
                || at < n
                || (self.spec.kind == RankKind::Rank
                    && list
                        .get(n - 1)
                        .is_some_and(|last| compare(&self.spec.order, &last.sort, sort) == Ordering::Equal));
            if !keep {
                continue;
            }
            list.insert(
                at,
                Ranked {
                    sort: sort.into(),
                    row: row.into(),
                },
            );
            // Trim rows that can no longer be visible (over a changelog a
            // retraction can bring any of them back up).
            while !self.spec.retractable && list.len() > n {
                let last = list.len() - 1;
                let tied = self.spec.kind == RankKind::Rank
                    && compare(&self.spec.order, &list[n - 1].sort, &list[last].sort) == Ordering::Equal;
                if tied {
                    break;
                }
                list.pop();
            }
            if changelog {
                let mut after = Vec::new();
                TopN::visible(&self.spec, list, &mut after);
                self.emit_moves(&after, out);
            }
        }
        self.metrics.state_entries = self.partitions.len() as u64;
        Ok(())
    }

    fn contents(&mut self, out: &mut Batch) -> Result<(), String> {
        if self.spec.window_end.is_some() {
            return Err("it ranks within windows and emits each window once, at its close".into());
        }
        let mut visible = Vec::new();
        for (_, rows) in self.partitions.iter() {
            let mut rows = rows.clone();
            if self.spec.kind == RankKind::Rank {
                let order = &self.spec.order;
                rows.sort_by(|a, b| compare_ranked(order, a, &b.sort, &b.row));
            }
            TopN::visible(&self.spec, &rows, &mut visible);
            visible.iter().for_each(|v| out.push(Op::Insert, v));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        self.watermark = watermark;
        while let Some((&(end, seq), _)) = self.closing.first_key_value() {
            if end > watermark {
                break;
            }
            let key = self.closing.remove(&(end, seq)).expect("present");
            if let Some(mut rows) = self.partitions.remove(&key) {
                self.emit_partition(&mut rows, out);
            }
        }
        self.metrics.state_entries = self.partitions.len() as u64;
        Ok(())
    }

    fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        let snapshot = TopNSnapshot {
            partitions: crate::snapshot::entries(&self.partitions),
            closing: self.closing.iter().map(|(k, v)| (*k, v.clone())).collect(),
            watermark: self.watermark,
            seq: self.seq,
            metrics: self.metrics,
        };
        Ok(crate::snapshot::defer(&self.spec.name, snapshot))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let s: TopNSnapshot = crate::snapshot::decode(&self.spec.name, bytes)?;
        self.partitions = crate::snapshot::rebuild(s.partitions, self.spec.entries_max, &self.spec.name)?;
        self.closing = s.closing.into_iter().collect();
        self.watermark = s.watermark;
        self.seq = s.seq;
        self.metrics = s.metrics;
        Ok(())
    }

    fn rescale(
        &self,
        parts: &[crate::rescale::Part<'_>],
        keep: crate::rescale::Keep<'_>,
    ) -> Result<Vec<u8>, ExecError> {
        let mut partitions = Vec::new();
        let mut closing = Vec::new();
        let mut metrics = OperatorMetrics::default();
        let mut watermark = None;
        for p in parts {
            let s: TopNSnapshot = crate::snapshot::decode(&self.spec.name, p.bytes)?;
            partitions.extend(s.partitions.into_iter().filter(|(k, _)| keep(k)));
            closing.push(s.closing);
            crate::rescale::min_watermark(&mut watermark, s.watermark);
            if p.counters {
                crate::rescale::add_metrics(&mut metrics, &s.metrics);
            }
        }
        let (closing, seq) = crate::rescale::merge_by_time(closing, |k| keep(k));
        let out = TopNSnapshot {
            partitions,
            closing,
            watermark: watermark.unwrap_or(crate::batch::WATERMARK_START),
            seq,
            metrics,
        };
        crate::snapshot::encode(&self.spec.name, &out)
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn state_bytes(&self) -> usize {
        self.partitions.approx_bytes()
    }

    fn metrics(&self) -> OperatorMetrics {
        self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Driven;

    fn spec(kind: RankKind, windowed: bool) -> TopNSpec {
        TopNSpec {
            name: "t".into(),
            partition: vec![Expr::col(0)],
            order: vec![(Expr::col(1), true)],
            n: 2,
            kind,
            window_end: windowed.then_some(0),
            entries_max: 100,
            retractable: false,
        }
    }

    fn input(rows: &[(i64, i64)]) -> Batch {
        let mut b = Batch::new(2);
        for &(p, v) in rows {
            b.push(Op::Insert, &[Value::Ts(p), Value::Int(v)]);
        }
        b
    }

    #[test]
    fn an_unwindowed_top_n_holds_what_its_changelog_folds_to() {
        for kind in [RankKind::RowNumber, RankKind::Rank] {
            let mut t = Driven::new(Box::new(TopN::new(spec(kind, false))), 1);
            let mut out = Batch::new(3);
            let mut x = 7u64;
            for _ in 0..20 {
                let rows: Vec<(i64, i64)> = (0..10)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (((x >> 33) % 3) as i64, ((x >> 40) % 6) as i64)
                    })
                    .collect();
                t.push(0, &input(&rows), &mut out).unwrap();
                let mut now = Batch::new(3);
                t.contents(&mut now).unwrap();
                let mut now: Vec<Vec<Value>> = now.rows().map(|(_, r)| r.to_vec()).collect();
                now.sort();
                assert_eq!(now, crate::operators::fold_changelog(&out), "{kind:?}");
            }
        }
        let mut windowed = Driven::new(Box::new(TopN::new(spec(RankKind::Rank, true))), 1);
        assert!(windowed.contents(&mut Batch::new(3)).is_err());
    }

    #[test]
    fn windowed_top_n_emits_on_close_with_row_numbers_and_ranks() {
        let mut t = Driven::new(Box::new(TopN::new(spec(RankKind::Rank, true))), 1);
        let mut out = Batch::new(3);
        let b = input(&[(10, 5), (10, 7), (10, 7), (10, 1), (20, 3)]);
        t.push(0, &b, &mut out).unwrap();
        assert!(out.is_empty());
        let mut mark = Batch::new(2);
        mark.push_mark(10);
        t.push(0, &mark, &mut out).unwrap();
        let got: Vec<Vec<Value>> = out.rows().map(|(_, r)| r.to_vec()).collect();
        // 7 and 7 tie at rank 1; 5 has rank 3 > 2.
        assert_eq!(
            got,
            vec![
                vec![Value::Ts(10), Value::Int(7), Value::Int(1)],
                vec![Value::Ts(10), Value::Int(7), Value::Int(1)],
            ]
        );
        // A row for the closed window is late.
        let late = input(&[(10, 100)]);
        t.push(0, &late, &mut out).unwrap();
        assert_eq!(t.operator().metrics().late_rows_dropped, 1);
    }

    #[test]
    fn unwindowed_top_n_is_a_changelog_of_positions() {
        let mut t = Driven::new(Box::new(TopN::new(spec(RankKind::RowNumber, false))), 1);
        let mut out = Batch::new(3);
        let b = input(&[(1, 5), (1, 7), (1, 6)]);
        t.push(0, &b, &mut out).unwrap();
        let got: Vec<(Op, Vec<Value>)> = out.rows().map(|(o, r)| (o, r.to_vec())).collect();
        let row = |v: i64, n: i64| vec![Value::Ts(1), Value::Int(v), Value::Int(n)];
        assert_eq!(
            got,
            vec![
                (Op::Insert, row(5, 1)),
                (Op::UpdateBefore, row(5, 1)),
                (Op::UpdateAfter, row(7, 1)),
                (Op::Insert, row(5, 2)),
                (Op::UpdateBefore, row(5, 2)),
                (Op::UpdateAfter, row(6, 2)),
            ]
        );
    }
}
