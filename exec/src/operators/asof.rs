//! The ASOF join: `a ASOF JOIN b MATCH_CONDITION(a.ts >= b.ts) ON a.k =
//! b.k`. Each left row is joined with the right row of its key that has
//! the latest time at or before its own (`>`: strictly before), or with
//! NULLs when there is none. Ties in time go to the right row that arrived
//! last.
//!
//! Event time decides, not arrival: a left row is emitted once the right
//! watermark has passed its time (no non-late right row can then match it
//! better), so the result does not depend on how the inputs interleave.
//! Late rows (below their own input's watermark) and rows with a NULL time
//! are dropped and counted; a left row with a NULL key is emitted with
//! NULLs at once. Per key, right rows older than the newest one at or
//! before `min(left watermark, oldest waiting left row)` can never be a
//! match again and are dropped.

use std::collections::BTreeMap;

use crate::batch::{Batch, Op, RowsRef, WATERMARK_END};
use crate::error::ExecError;
use crate::expr::Expr;
use crate::operator::{Operator, OperatorMetrics};
use crate::operators::{admit_time, check_join_state, eval_join_key};
use crate::state::{GroupKey, KeyedState};
use crate::types::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct AsofJoinSpec {
    pub name: String,
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    pub left_time: usize,
    /// None: right rows have no time and are valid from the start (a
    /// reference table read from a file).
    pub right_time: Option<usize>,
    /// The right input is a table's changelog: `-D` ends a key's row (a
    /// lookup join), `-U` is superseded by its `+U`.
    pub right_changelog: bool,
    /// Left rows without a match: padded with NULLs (ASOF, LEFT lookup)
    /// or dropped (an INNER lookup join).
    pub keep_unmatched: bool,
    pub left_width: usize,
    pub right_width: usize,
    /// `>` rather than `>=`: the right row must be strictly earlier.
    pub strict: bool,
    pub entries_max: usize,
}

/// Rows ordered by (event time, arrival).
type ByTime<T> = BTreeMap<(i64, u64), T>;

/// What a checkpoint keeps of an `AsofJoin`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct AsofSnapshot {
    right: crate::snapshot::Entries<crate::snapshot::ByTimeEntries<Option<Box<[Value]>>>>,
    right_rows: u64,
    waiting: crate::snapshot::ByTimeEntries<(GroupKey, Box<[Value]>)>,
    left_watermark: i64,
    right_watermark: i64,
    seq: u64,
    metrics: OperatorMetrics,
}

pub struct AsofJoin {
    spec: AsofJoinSpec,
    /// Right rows per key, by (time, arrival); None marks a deletion.
    right: KeyedState<ByTime<Option<Box<[Value]>>>>,
    right_rows: usize,
    /// Left rows waiting for the right watermark, by (time, arrival).
    waiting: ByTime<(GroupKey, Box<[Value]>)>,
    left_watermark: i64,
    right_watermark: i64,
    seq: u64,
    key: Vec<Value>,
    joined: Vec<Value>,
    metrics: OperatorMetrics,
}

impl AsofJoin {
    pub fn new(spec: AsofJoinSpec) -> AsofJoin {
        assert!(!spec.left_keys.is_empty() && spec.left_keys.len() == spec.right_keys.len());
        AsofJoin {
            right: KeyedState::new(spec.entries_max),
            spec,
            right_rows: 0,
            waiting: BTreeMap::new(),
            left_watermark: crate::batch::WATERMARK_START,
            right_watermark: crate::batch::WATERMARK_START,
            seq: 0,
            key: Vec::new(),
            joined: Vec::new(),
            metrics: OperatorMetrics::default(),
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

    /// Emits `left` joined with its match among `key`'s right rows.
    fn emit(&mut self, key: Option<&[Value]>, ts: i64, left: &[Value], out: &mut Batch) {
        self.joined.clear();
        self.joined.extend_from_slice(left);
        let bound = if self.spec.strict { ts.saturating_sub(1) } else { ts };
        let found = key
            .and_then(|k| self.right.get(k))
            .and_then(|rows| rows.range(..=(bound, u64::MAX)).next_back())
            .and_then(|(_, r)| r.clone());
        match found {
            Some(r) => self.joined.extend_from_slice(&r),
            None if self.spec.keep_unmatched => self
                .joined
                .extend(std::iter::repeat_n(Value::Null, self.spec.right_width)),
            None => return,
        }
        out.push(Op::Insert, &self.joined);
        self.metrics.rows_out += 1;
    }

    /// Drops right rows of `key` that no waiting or future left row can
    /// match: all but the newest at or before the oldest time still asked.
    fn prune(&mut self, key: &[Value]) {
        let oldest_waiting = self.waiting.first_key_value().map_or(i64::MAX, |(&(t, _), _)| t);
        // A strict match needs a row before the time asked, so keep one
        // more step back.
        let threshold = self
            .left_watermark
            .min(oldest_waiting)
            .saturating_sub(i64::from(self.spec.strict));
        let Some(rows) = self.right.get_mut(key) else { return };
        let keep_from = rows.range(..=(threshold, u64::MAX)).next_back().map(|(&k, _)| k);
        if let Some(first_kept) = keep_from {
            let before = rows.len();
            *rows = rows.split_off(&first_kept);
            self.right_rows -= before - rows.len();
        }
    }

    /// Emits the waiting left rows whose time the right watermark passed.
    fn release(&mut self, out: &mut Batch) {
        while let Some((&(ts, seq), _)) = self.waiting.first_key_value() {
            if self.right_watermark != WATERMARK_END && ts >= self.right_watermark {
                break;
            }
            let (key, row) = self.waiting.remove(&(ts, seq)).expect("present");
            self.emit(Some(&key), ts, &row, out);
            self.prune(&key);
        }
    }
}

impl Operator for AsofJoin {
    fn name(&self) -> &'static str {
        "asof_join"
    }

    fn on_rows(&mut self, input: usize, rows: RowsRef<'_>, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            if input == 0 {
                debug_assert_eq!(op, Op::Insert, "the left input is append-only");
                let Some(ts) = admit_time(row, Some(self.spec.left_time), watermark, &mut self.metrics) else {
                    continue;
                };
                if !self.eval_key(true, row) {
                    self.emit(None, ts, row, out);
                    continue;
                }
                if ts < self.right_watermark {
                    let key = std::mem::take(&mut self.key);
                    self.emit(Some(&key), ts, row, out);
                    self.key = key;
                } else {
                    check_join_state(
                        &self.spec.name,
                        self.waiting.len() + self.right_rows,
                        self.spec.entries_max,
                    )?;
                    self.waiting
                        .insert((ts, self.seq), (self.key.as_slice().into(), row.into()));
                    self.seq += 1;
                }
            } else {
                let Some(ts) = admit_time(row, self.spec.right_time, watermark, &mut self.metrics) else {
                    continue;
                };
                if op == Op::UpdateBefore {
                    // Its +U follows and supersedes it.
                    continue;
                }
                if !self.eval_key(false, row) {
                    continue;
                }
                check_join_state(
                    &self.spec.name,
                    self.waiting.len() + self.right_rows,
                    self.spec.entries_max,
                )?;
                let seq = self.seq;
                self.seq += 1;
                let rows = self
                    .right
                    .get_or_insert_with(&self.key, 0, &self.spec.name, BTreeMap::new)?;
                let version = (op != Op::Delete).then(|| Box::<[Value]>::from(row));
                rows.insert((ts, seq), version);
                self.right_rows += 1;
                let key = std::mem::take(&mut self.key);
                self.prune(&key);
                self.key = key;
            }
        }
        self.metrics.state_entries = (self.waiting.len() + self.right_rows) as u64;
        Ok(())
    }

    fn on_input_watermark(&mut self, input: usize, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        if input == 0 {
            self.left_watermark = watermark;
        } else {
            self.right_watermark = watermark;
            self.release(out);
        }
        self.metrics.state_entries = (self.waiting.len() + self.right_rows) as u64;
        Ok(())
    }

    fn on_watermark(&mut self, _watermark: i64, _out: &mut Batch) -> Result<(), ExecError> {
        Ok(())
    }

    fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        let snapshot = AsofSnapshot {
            right: self
                .right
                .iter()
                .map(|(k, by_time)| (k.clone(), by_time.iter().map(|(t, r)| (*t, r.clone())).collect()))
                .collect(),
            right_rows: self.right_rows as u64,
            waiting: self.waiting.iter().map(|(t, w)| (*t, w.clone())).collect(),
            left_watermark: self.left_watermark,
            right_watermark: self.right_watermark,
            seq: self.seq,
            metrics: self.metrics,
        };
        Ok(crate::snapshot::defer(&self.spec.name, snapshot))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let s: AsofSnapshot = crate::snapshot::decode(&self.spec.name, bytes)?;
        let right = s.right.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect();
        self.right = crate::snapshot::rebuild(right, self.spec.entries_max, &self.spec.name)?;
        self.right_rows = s.right_rows as usize;
        self.waiting = s.waiting.into_iter().collect();
        self.left_watermark = s.left_watermark;
        self.right_watermark = s.right_watermark;
        self.seq = s.seq;
        self.metrics = s.metrics;
        Ok(())
    }

    fn rescale(
        &self,
        parts: &[crate::rescale::Part<'_>],
        keep: crate::rescale::Keep<'_>,
    ) -> Result<Vec<u8>, ExecError> {
        let mut right = Vec::new();
        let mut waiting = Vec::new();
        let mut metrics = OperatorMetrics::default();
        let (mut left_watermark, mut right_watermark) = (None, None);
        let mut seq = 0;
        for p in parts {
            let s: AsofSnapshot = crate::snapshot::decode(&self.spec.name, p.bytes)?;
            // A key's right rows keep their sequences (one old instance
            // held the key); new rows must come after them.
            right.extend(s.right.into_iter().filter(|(k, _)| keep(k)));
            waiting.push(s.waiting);
            crate::rescale::min_watermark(&mut left_watermark, s.left_watermark);
            crate::rescale::min_watermark(&mut right_watermark, s.right_watermark);
            seq = seq.max(s.seq);
            if p.counters {
                crate::rescale::add_metrics(&mut metrics, &s.metrics);
            }
        }
        let (waiting, next) = crate::rescale::merge_by_time(waiting, |(k, _)| keep(k));
        let out = AsofSnapshot {
            right_rows: right
                .iter()
                .map(|(_, rows): &(GroupKey, crate::snapshot::ByTimeEntries<Option<Box<[Value]>>>)| rows.len() as u64)
                .sum(),
            right,
            waiting,
            left_watermark: left_watermark.unwrap_or(crate::batch::WATERMARK_START),
            right_watermark: right_watermark.unwrap_or(crate::batch::WATERMARK_START),
            seq: seq.max(next),
            metrics,
        };
        crate::snapshot::encode(&self.spec.name, &out)
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn state_bytes(&self) -> usize {
        self.right.approx_bytes()
    }

    fn metrics(&self) -> OperatorMetrics {
        self.metrics
    }
}
