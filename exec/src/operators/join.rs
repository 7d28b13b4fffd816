//! The interval join: `a JOIN b ON a.k = b.k AND b.ts BETWEEN a.ts + lo AND
//! a.ts + hi` (INNER or LEFT), over append-only inputs.
//!
//! Semantics, chosen so that the result never depends on how the two
//! inputs interleave (which varies with shards and timing):
//! - A row is late when its event time is below its own input's watermark
//!   (the watermark promises nothing earlier comes); late rows, and rows
//!   with a NULL time, are dropped and counted. A row with a NULL key
//!   never matches.
//! - Every pair of non-late rows with equal keys, `lo <= r.ts - l.ts <=
//!   hi`, and the residual ON condition true is emitted exactly once, when
//!   the second of the two arrives.
//! - A left row is kept until the right watermark passes `l.ts + hi` (no
//!   non-late right row can match it any more); a right row until the left
//!   watermark passes `r.ts - lo`. A LEFT join emits a left row that never
//!   matched, padded with NULLs, when it is dropped from state.
//! - Output rows carry both inputs' columns; the output watermark is held
//!   at `min(W_left, W_right - hi - 1)`, so no output row (whose time is
//!   the left row's) is ever behind it and downstream windows lose nothing.

use std::collections::BTreeMap;

use crate::batch::{Batch, Op, RowsRef, WATERMARK_END, WATERMARK_START};
use crate::error::ExecError;
use crate::expr::Expr;
use crate::operator::{Operator, OperatorMetrics};
use crate::operators::{admit_time, check_join_state, eval_join_key};
use crate::state::{GroupKey, KeyedState};
use crate::types::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntervalJoinSpec {
    /// The stream's name, for errors.
    pub name: String,
    pub kind: JoinKind,
    /// Equi-join keys over each input's row, pairwise.
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    pub left_time: usize,
    pub right_time: usize,
    pub left_width: usize,
    pub right_width: usize,
    /// `r.ts - l.ts` must lie in `[lower_ms, upper_ms]`.
    pub lower_ms: i64,
    pub upper_ms: i64,
    /// The rest of ON, over `left ++ right`.
    pub residual: Option<Expr>,
    /// A regular join bounded by a state TTL: rows dropped from state are
    /// counted as evicted.
    pub count_evictions: bool,
    pub entries_max: usize,
}

#[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Buffered {
    ts: i64,
    row: Box<[Value]>,
    /// Left rows only: whether some right row matched (LEFT join).
    matched: bool,
}

/// One input's rows by key, and when each key's rows can go.
#[derive(Default)]
struct Side {
    rows: Option<KeyedState<Vec<Buffered>>>,
    /// Eviction order: (time, key) of every buffered row.
    by_time: BTreeMap<(i64, u64), GroupKey>,
    len: usize,
    watermark: i64,
}

/// What a checkpoint keeps of one side of an `IntervalJoin`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SideSnapshot {
    rows: Vec<(GroupKey, Vec<Buffered>)>,
    by_time: crate::snapshot::ByTimeEntries<GroupKey>,
    len: u64,
    watermark: i64,
}

impl Side {
    fn state_bytes(&self) -> usize {
        self.rows.as_ref().map_or(0, KeyedState::approx_bytes) + self.by_time.len() * crate::state::HEAP_BYTES_PER_ENTRY
    }

    fn snapshot(&self) -> SideSnapshot {
        SideSnapshot {
            rows: self.rows.as_ref().map(crate::snapshot::entries).unwrap_or_default(),
            by_time: self.by_time.iter().map(|(k, v)| (*k, v.clone())).collect(),
            len: self.len as u64,
            watermark: self.watermark,
        }
    }

    fn restore(s: SideSnapshot, entries_max: usize, name: &str) -> Result<Side, ExecError> {
        Ok(Side {
            rows: Some(crate::snapshot::rebuild(s.rows, entries_max, name)?),
            by_time: s.by_time.into_iter().collect(),
            len: s.len as usize,
            watermark: s.watermark,
        })
    }
}

pub struct IntervalJoin {
    spec: IntervalJoinSpec,
    left: Side,
    right: Side,
    seq: u64,
    key: Vec<Value>,
    joined: Vec<Value>,
    metrics: OperatorMetrics,
}

impl IntervalJoin {
    pub fn new(spec: IntervalJoinSpec) -> IntervalJoin {
        assert!(spec.lower_ms <= spec.upper_ms, "an empty interval is a planning error");
        assert_eq!(spec.left_keys.len(), spec.right_keys.len());
        assert!(!spec.left_keys.is_empty(), "an interval join has equi-join keys");
        let side = || Side {
            rows: Some(KeyedState::new(spec.entries_max)),
            by_time: BTreeMap::new(),
            len: 0,
            watermark: WATERMARK_START,
        };
        IntervalJoin {
            left: side(),
            right: side(),
            seq: 0,
            key: Vec::new(),
            joined: Vec::new(),
            metrics: OperatorMetrics::default(),
            spec,
        }
    }

    /// Evaluates the key of `row` (a left row when `left`) into `self.key`.
    fn eval_key(&mut self, left: bool, row: &[Value]) -> bool {
        let keys = if left {
            &self.spec.left_keys
        } else {
            &self.spec.right_keys
        };
        eval_join_key(keys, row, &mut self.key, &mut self.metrics.eval_errors)
    }

    fn emit_pair(&mut self, l: &[Value], r: &[Value], out: &mut Batch) -> bool {
        self.joined.clear();
        self.joined.extend_from_slice(l);
        self.joined.extend_from_slice(r);
        if let Some(f) = &self.spec.residual {
            match f.eval_predicate(&self.joined) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(_) => {
                    self.metrics.eval_errors += 1;
                    return false;
                }
            }
        }
        out.push(Op::Insert, &self.joined);
        self.metrics.rows_out += 1;
        true
    }

    fn emit_padded(&mut self, l: &[Value], out: &mut Batch) {
        self.joined.clear();
        self.joined.extend_from_slice(l);
        self.joined
            .extend(std::iter::repeat_n(Value::Null, self.spec.right_width));
        out.push(Op::Insert, &self.joined);
        self.metrics.rows_out += 1;
    }

    fn buffer(&mut self, is_left: bool, ts: i64, row: &[Value], matched: bool) -> Result<(), ExecError> {
        check_join_state(&self.spec.name, self.left.len + self.right.len, self.spec.entries_max)?;
        let seq = self.seq;
        self.seq += 1;
        let side = if is_left { &mut self.left } else { &mut self.right };
        let rows = side.rows.as_mut().expect("state present");
        let entry = rows.get_or_insert_with(&self.key, 0, &self.spec.name, Vec::new)?;
        entry.push(Buffered {
            ts,
            row: row.into(),
            matched,
        });
        side.by_time.insert((ts, seq), self.key.as_slice().into());
        side.len += 1;
        Ok(())
    }

    fn on_left(&mut self, row: &[Value], watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        let Some(ts) = admit_time(row, Some(self.spec.left_time), watermark, &mut self.metrics) else {
            return Ok(());
        };
        if !self.eval_key(true, row) {
            if self.spec.kind == JoinKind::Left {
                self.emit_padded(row, out);
            }
            return Ok(());
        }
        let (lo, hi) = (self.spec.lower_ms, self.spec.upper_ms);
        let mut matched = false;
        let rights = self.right.rows.take().expect("state present");
        if let Some(rs) = rights.get(&self.key) {
            for r in rs {
                let d = r.ts.saturating_sub(ts);
                if d >= lo && d <= hi && self.emit_pair(row, &r.row, out) {
                    matched = true;
                }
            }
        }
        self.right.rows = Some(rights);
        // Keep it while a non-late right row could still match it.
        if self.right.watermark <= ts.saturating_add(hi) {
            self.buffer(true, ts, row, matched)?;
        } else if !matched && self.spec.kind == JoinKind::Left {
            self.emit_padded(row, out);
        }
        Ok(())
    }

    fn on_right(&mut self, row: &[Value], watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        let Some(ts) = admit_time(row, Some(self.spec.right_time), watermark, &mut self.metrics) else {
            return Ok(());
        };
        if !self.eval_key(false, row) {
            return Ok(());
        }
        let (lo, hi) = (self.spec.lower_ms, self.spec.upper_ms);
        let mut lefts = self.left.rows.take().expect("state present");
        if let Some(ls) = lefts.get_mut(&self.key) {
            for l in ls.iter_mut() {
                let d = ts.saturating_sub(l.ts);
                if d >= lo && d <= hi && self.emit_pair(&l.row, row, out) {
                    l.matched = true;
                }
            }
        }
        self.left.rows = Some(lefts);
        if self.left.watermark <= ts.saturating_sub(lo) {
            self.buffer(false, ts, row, true)?;
        }
        Ok(())
    }

    /// Drops the rows of one side that can no longer match: those with
    /// time below `bound`. Unmatched left rows of a LEFT join are emitted.
    fn evict(&mut self, is_left: bool, bound: i64, out: &mut Batch) {
        let pad = is_left && self.spec.kind == JoinKind::Left;
        loop {
            let side = if is_left { &mut self.left } else { &mut self.right };
            let Some((&(ts, seq), _)) = side.by_time.first_key_value() else {
                break;
            };
            if ts >= bound {
                break;
            }
            let key = side.by_time.remove(&(ts, seq)).expect("present");
            let rows = side.rows.as_mut().expect("state present");
            let Some(list) = rows.get_mut(&key) else { continue };
            let mut padded = Vec::new();
            let before = list.len();
            list.retain_mut(|b| {
                if b.ts < bound {
                    if pad && !b.matched {
                        padded.push(std::mem::take(&mut b.row));
                    }
                    false
                } else {
                    true
                }
            });
            let dropped = before - list.len();
            side.len -= dropped;
            // The end of input empties the state; that is not an eviction.
            if self.spec.count_evictions && bound != WATERMARK_END {
                self.metrics.state_evicted += dropped as u64;
            }
            if list.is_empty() {
                rows.remove(&key);
            }
            for row in padded {
                self.emit_padded(&row, out);
            }
        }
    }
}

impl Operator for IntervalJoin {
    fn name(&self) -> &'static str {
        "interval_join"
    }

    fn on_rows(&mut self, input: usize, rows: RowsRef<'_>, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        debug_assert!(input < 2);
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            // The planner only joins append-only inputs.
            debug_assert_eq!(op, Op::Insert);
            if input == 0 {
                debug_assert_eq!(row.len(), self.spec.left_width);
                self.on_left(row, watermark, out)?;
            } else {
                debug_assert_eq!(row.len(), self.spec.right_width);
                self.on_right(row, watermark, out)?;
            }
        }
        self.metrics.state_entries = (self.left.len + self.right.len) as u64;
        Ok(())
    }

    fn on_input_watermark(&mut self, input: usize, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        let (lo, hi) = (self.spec.lower_ms, self.spec.upper_ms);
        if input == 0 {
            assert!(watermark >= self.left.watermark, "watermarks never go back");
            self.left.watermark = watermark;
            // A right row r can match future left rows l (l.ts >= W_left)
            // only while r.ts - lo >= W_left.
            let bound = if watermark == WATERMARK_END {
                WATERMARK_END
            } else {
                watermark.saturating_add(lo)
            };
            self.evict(false, bound, out);
        } else {
            assert!(watermark >= self.right.watermark, "watermarks never go back");
            self.right.watermark = watermark;
            let bound = if watermark == WATERMARK_END {
                WATERMARK_END
            } else {
                watermark.saturating_sub(hi)
            };
            self.evict(true, bound, out);
        }
        self.metrics.state_entries = (self.left.len + self.right.len) as u64;
        Ok(())
    }

    fn on_watermark(&mut self, _watermark: i64, _out: &mut Batch) -> Result<(), ExecError> {
        Ok(())
    }

    fn output_watermark(&self, _input_watermark: i64) -> i64 {
        if self.left.watermark == WATERMARK_END && self.right.watermark == WATERMARK_END {
            return WATERMARK_END;
        }
        let right_bound = if self.right.watermark == WATERMARK_END {
            WATERMARK_END
        } else {
            self.right
                .watermark
                .saturating_sub(self.spec.upper_ms)
                .saturating_sub(1)
        };
        self.left.watermark.min(right_bound)
    }

    fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        Ok(crate::snapshot::defer(
            &self.spec.name,
            (self.left.snapshot(), self.right.snapshot(), self.seq, self.metrics),
        ))
    }

    fn rescale(
        &self,
        parts: &[crate::rescale::Part<'_>],
        keep: crate::rescale::Keep<'_>,
    ) -> Result<Vec<u8>, ExecError> {
        let mut sides: [Vec<SideSnapshot>; 2] = [Vec::new(), Vec::new()];
        let mut metrics = OperatorMetrics::default();
        for p in parts {
            let (left, right, _, m): (SideSnapshot, SideSnapshot, u64, OperatorMetrics) =
                crate::snapshot::decode(&self.spec.name, p.bytes)?;
            sides[0].push(left);
            sides[1].push(right);
            if p.counters {
                crate::rescale::add_metrics(&mut metrics, &m);
            }
        }
        let mut seq = 0;
        let [left, right] = sides.map(|list| {
            let mut rows = Vec::new();
            let mut by_time = Vec::new();
            let mut watermark = None;
            for s in list {
                rows.extend(s.rows.into_iter().filter(|(k, _)| keep(k)));
                by_time.push(s.by_time);
                crate::rescale::min_watermark(&mut watermark, s.watermark);
            }
            let (by_time, next) = crate::rescale::merge_by_time(by_time, |k| keep(k));
            seq = seq.max(next);
            SideSnapshot {
                len: rows
                    .iter()
                    .map(|(_, r): &(GroupKey, Vec<Buffered>)| r.len() as u64)
                    .sum(),
                rows,
                by_time,
                watermark: watermark.unwrap_or(WATERMARK_START),
            }
        });
        crate::snapshot::encode(&self.spec.name, &(left, right, seq, metrics))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let (left, right, seq, metrics): (SideSnapshot, SideSnapshot, u64, OperatorMetrics) =
            crate::snapshot::decode(&self.spec.name, bytes)?;
        self.left = Side::restore(left, self.spec.entries_max, &self.spec.name)?;
        self.right = Side::restore(right, self.spec.entries_max, &self.spec.name)?;
        self.seq = seq;
        self.metrics = metrics;
        Ok(())
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn state_bytes(&self) -> usize {
        self.left.state_bytes() + self.right.state_bytes()
    }

    fn metrics(&self) -> OperatorMetrics {
        self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Driven;

    fn spec(kind: JoinKind, lower_ms: i64, upper_ms: i64) -> IntervalJoinSpec {
        IntervalJoinSpec {
            name: "j".into(),
            kind,
            left_keys: vec![Expr::col(0)],
            right_keys: vec![Expr::col(0)],
            left_time: 1,
            right_time: 1,
            left_width: 2,
            right_width: 2,
            lower_ms,
            upper_ms,
            residual: None,
            count_evictions: false,
            entries_max: 1000,
        }
    }

    fn batch(rows: &[(i64, i64)], mark: Option<i64>) -> Batch {
        let mut b = Batch::new(2);
        for &(k, t) in rows {
            b.push(Op::Insert, &[Value::Int(k), Value::Ts(t)]);
        }
        if let Some(w) = mark {
            b.push_mark(w);
        }
        b
    }

    fn rows(out: &Batch) -> Vec<Vec<Value>> {
        let mut v: Vec<Vec<Value>> = out.rows().map(|(_, r)| r.to_vec()).collect();
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    }

    #[test]
    fn pairs_within_the_interval_match_whichever_side_comes_first() {
        let mut d = Driven::with_inputs(Box::new(IntervalJoin::new(spec(JoinKind::Inner, -10, 10))), &[0, 1]);
        let mut out = Batch::new(4);
        d.push(0, &batch(&[(1, 100), (2, 100)], None), &mut out).unwrap();
        d.push(1, &batch(&[(1, 105), (1, 111), (3, 100)], None), &mut out)
            .unwrap();
        d.push(0, &batch(&[(1, 101)], None), &mut out).unwrap();
        let got = rows(&out);
        // (1,100)-(1,105), (1,101)-(1,105), (1,101)-(1,111); 111-100 > 10.
        assert_eq!(got.len(), 3, "{got:?}");
    }

    #[test]
    fn left_join_pads_once_the_right_watermark_passes() {
        let mut d = Driven::with_inputs(Box::new(IntervalJoin::new(spec(JoinKind::Left, 0, 5))), &[0, 1]);
        let mut out = Batch::new(4);
        d.push(0, &batch(&[(1, 100), (2, 100)], Some(100)), &mut out).unwrap();
        d.push(1, &batch(&[(1, 103)], Some(104)), &mut out).unwrap();
        assert_eq!(rows(&out).len(), 1, "the match, no padding yet");
        d.push(1, &batch(&[], Some(106)), &mut out).unwrap();
        let got = rows(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().any(|r| r[0] == Value::Int(2) && r[2] == Value::Null));
        // The output watermark stays behind the left rows still possible.
        assert!(out.last_watermark().unwrap() <= 100);
    }

    #[test]
    fn late_rows_and_null_keys_are_counted_not_matched() {
        let mut d = Driven::with_inputs(Box::new(IntervalJoin::new(spec(JoinKind::Inner, -5, 5))), &[0, 1]);
        let mut out = Batch::new(4);
        d.push(0, &batch(&[(1, 100)], Some(200)), &mut out).unwrap();
        d.push(0, &batch(&[(1, 150)], None), &mut out).unwrap();
        let mut nullkey = Batch::new(2);
        nullkey.push(Op::Insert, &[Value::Null, Value::Ts(100)]);
        d.push(1, &nullkey, &mut out).unwrap();
        d.push(1, &batch(&[(1, 100)], None), &mut out).unwrap();
        assert_eq!(rows(&out).len(), 1);
        assert_eq!(d.operator().metrics().late_rows_dropped, 1);
    }
}
