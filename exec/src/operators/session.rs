//! GROUP BY over session windows.
//!
//! A session of a key is `[first event, last event + gap)`; two events of
//! a key are in the same session when they are at most `gap` apart. An
//! event at `t` joins every open session `[s, e)` of its key with
//! `s - gap <= t <= e`; when it joins several, they merge into one (this
//! can only happen when the event arrives out of order). A session closes
//! when `W >= e + lateness`. An event is late when it falls in a closed
//! session of its key (`s - gap <= t <= e`: it would have extended a
//! session that is already out), or when no open session takes it and its
//! own session `[t, t + gap)` would already be closed; it is dropped and
//! counted, or with `LATE DATA TO` sent to that stream (see `late`), as is
//! an event whose time is NULL. So a key never has two overlapping
//! sessions in the output.
//!
//! A closed session stays listed under its key as a *tombstone* (no rows,
//! no accumulators: only its extent) while an event that is not late by
//! its own time could still fall in it, that is until `W >= e + gap +
//! lateness`; then it is forgotten. Closing order is kept in a `BTreeSet`
//! of `(end, session id)`, forgetting order in another, so both are pops
//! from the front; the ids map back to their key.

use std::collections::BTreeSet;

use fxhash::FxHashMap;

use crate::agg::Accumulator;
use crate::batch::{Batch, Op, RowsRef, WATERMARK_START};
use crate::error::ExecError;
use crate::expr::Expr;
use crate::operator::{Operator, OperatorMetrics};
use crate::operators::late::{LateRows, REASON_NULL_TIME, REASON_WINDOW_CLOSED};
use crate::operators::{accumulate, emit_change, new_accumulators, row_time, AggCall, EmitMode, GroupOutput, Scratch};
use crate::state::{GroupKey, KeyedState};
use crate::types::Value;
use crate::window::is_closed;

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    pub name: String,
    pub filter: Option<Expr>,
    pub keys: Vec<Expr>,
    pub calls: Vec<AggCall>,
    pub gap_ms: i64,
    pub time_column: usize,
    pub emit: EmitMode,
    pub lateness_ms: i64,
    pub output: GroupOutput,
    pub retractable: bool,
    pub entries_max: usize,
    /// Late and NULL-time rows go to a `LATE DATA TO` stream.
    pub late_rows: bool,
}

#[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Session {
    id: u64,
    start: i64,
    end: i64,
    /// Rows in the session; 0 for a tombstone (an open session with no
    /// rows left is removed, so 0 means closed).
    rows: i64,
    accumulators: Vec<Accumulator>,
}

impl Session {
    /// A closed session kept only for its extent (see the module doc).
    fn is_tombstone(&self) -> bool {
        self.rows == 0
    }
}

/// What a checkpoint keeps of a `SessionAggregate`; the close queue and
/// the key of each session id are rebuilt from the sessions.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SessionSnapshot {
    sessions: Vec<(GroupKey, Vec<Session>)>,
    next_id: u64,
    watermark: i64,
    seq: u64,
    late_diverted: u64,
    metrics: OperatorMetrics,
}

pub struct SessionAggregate {
    spec: SessionSpec,
    /// Open sessions of each key, unordered (a key rarely has more than a
    /// few open at once).
    sessions: KeyedState<Vec<Session>>,
    closing: BTreeSet<(i64, u64)>,
    /// Tombstones by the watermark at which they are forgotten: `(end +
    /// gap, id)`, judged with the lateness like a close.
    forgetting: BTreeSet<(i64, u64)>,
    keys_by_id: FxHashMap<u64, GroupKey>,
    next_id: u64,
    live_sessions: usize,
    watermark: i64,
    seq: u64,
    scratch: Scratch,
    old_row: Vec<Value>,
    new_row: Vec<Value>,
    late: LateRows,
    metrics: OperatorMetrics,
}

impl SessionAggregate {
    pub fn new(spec: SessionSpec) -> SessionAggregate {
        assert!(spec.gap_ms > 0 && spec.lateness_ms >= 0);
        let entries_max = spec.entries_max;
        SessionAggregate {
            late: LateRows::new(spec.late_rows),
            spec,
            sessions: KeyedState::new(entries_max),
            closing: BTreeSet::new(),
            forgetting: BTreeSet::new(),
            keys_by_id: FxHashMap::default(),
            next_id: 0,
            live_sessions: 0,
            watermark: WATERMARK_START,
            seq: 0,
            scratch: Scratch::default(),
            old_row: Vec::new(),
            new_row: Vec::new(),
            metrics: OperatorMetrics::default(),
        }
    }

    fn visible(&mut self, key: &[Value], s: &Session, new: bool) -> bool {
        let out = if new { &mut self.new_row } else { &mut self.old_row };
        self.scratch
            .output_row(&self.spec.output, key, Some((s.start, s.end)), &s.accumulators, out)
    }

    fn on_row(&mut self, op: Op, row: &[Value], ts: i64, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        let gap = self.spec.gap_ms;
        let key = std::mem::take(&mut self.scratch.key);
        let list = self.sessions.get_or_insert_with(&key, 0, &self.spec.name, Vec::new)?;
        let falls_in = |s: &Session| s.start.saturating_sub(gap) <= ts && ts <= s.end;
        // A session closed at this row's watermark is out, whether or not
        // the operator's own watermark (the minimum over its inputs, which
        // may lag behind a row's) has emitted it yet: the answer must not
        // depend on which shard read what.
        let lateness = self.spec.lateness_ms;
        let out_at = |s: &Session| s.is_tombstone() || is_closed(s.end, lateness, watermark);
        if list.iter().any(|s| out_at(s) && falls_in(s)) {
            // It would extend (or bridge into) a session that is out: late.
            if !self.late.divert(op, row, REASON_WINDOW_CLOSED) {
                self.metrics.late_rows_dropped += op.is_addition() as u64;
            }
            self.scratch.key = key;
            return Ok(());
        }
        // Sessions this event belongs to (all open).
        let mut hits: Vec<Session> = Vec::new();
        let mut i = 0;
        while i < list.len() {
            if falls_in(&list[i]) {
                hits.push(list.swap_remove(i));
            } else {
                i += 1;
            }
        }
        let add = op.is_addition();
        let own_end = ts.saturating_add(gap);
        if hits.is_empty() && (!add || is_closed(own_end, self.spec.lateness_ms, watermark)) {
            // Late, or a retraction of a row whose session is gone.
            if list.is_empty() {
                self.sessions.remove(&key);
            }
            if !self.late.divert(op, row, REASON_WINDOW_CLOSED) {
                self.metrics.late_rows_dropped += add as u64;
            }
            self.scratch.key = key;
            return Ok(());
        }
        let changes = self.spec.emit == EmitMode::Changes;
        // Retract what the user saw of the sessions being replaced.
        let single = hits.len() == 1;
        for s in &hits {
            self.closing.remove(&(s.end, s.id));
            self.keys_by_id.remove(&s.id);
        }
        let mut had_old_single = false;
        if changes {
            for s in &hits {
                if self.visible(&key, s, false) {
                    if single {
                        had_old_single = true;
                    } else {
                        out.push(Op::Delete, &self.old_row);
                        self.metrics.rows_out += 1;
                    }
                }
            }
        }
        let mut merged = match hits.pop() {
            Some(s) => s,
            None => {
                self.live_sessions += 1;
                self.next_id += 1;
                Session {
                    id: self.next_id,
                    start: ts,
                    end: own_end,
                    rows: 0,
                    accumulators: new_accumulators(&self.spec.calls, self.spec.retractable),
                }
            }
        };
        for other in hits {
            self.live_sessions -= 1;
            merged.start = merged.start.min(other.start);
            merged.end = merged.end.max(other.end);
            merged.rows += other.rows;
            for (a, b) in merged.accumulators.iter_mut().zip(other.accumulators) {
                a.merge(b);
            }
        }
        if add {
            merged.start = merged.start.min(ts);
            merged.end = merged.end.max(own_end);
        }
        self.seq += 1;
        accumulate(
            &mut self.scratch,
            &self.spec.calls,
            &mut merged.accumulators,
            row,
            ts,
            self.seq,
            add,
        );
        merged.rows += if add { 1 } else { -1 };
        assert!(merged.rows >= 0, "retraction of a row never added to a session");
        if changes {
            let has_new = merged.rows > 0 && self.visible(&key, &merged, true);
            let old = had_old_single.then_some(self.old_row.as_slice());
            let new = has_new.then_some(self.new_row.as_slice());
            self.metrics.rows_out += emit_change(out, old, new);
        }
        let list = self.sessions.get_mut(&key).expect("inserted above");
        if merged.rows > 0 {
            self.closing.insert((merged.end, merged.id));
            self.keys_by_id.insert(merged.id, key.as_slice().into());
            list.push(merged);
        } else {
            self.live_sessions -= 1;
            if list.is_empty() {
                self.sessions.remove(&key);
            }
        }
        self.scratch.key = key;
        Ok(())
    }
}

impl SessionAggregate {
    /// Drops the tombstones no event that is not late could fall in any
    /// more (`W >= end + gap + lateness`).
    fn forget(&mut self, watermark: i64) {
        while let Some(&(at, id)) = self.forgetting.first() {
            if !is_closed(at, self.spec.lateness_ms, watermark) {
                break;
            }
            self.forgetting.pop_first();
            let key = self.keys_by_id.remove(&id).expect("every tombstone has a key");
            let list = self.sessions.get_mut(&key).expect("every tombstone is listed");
            let at = list
                .iter()
                .position(|s| s.id == id)
                .expect("tombstone listed under its key");
            debug_assert!(list[at].is_tombstone());
            list.swap_remove(at);
            if list.is_empty() {
                self.sessions.remove(&key);
            }
        }
    }
}

impl Operator for SessionAggregate {
    fn name(&self) -> &'static str {
        "session_aggregate"
    }

    fn on_rows(&mut self, _input: usize, rows: RowsRef<'_>, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        for (op, row) in rows.iter() {
            self.metrics.rows_in += 1;
            if let Some(f) = &self.spec.filter {
                if !self.scratch.predicate(f, row) {
                    continue;
                }
            }
            let Some(ts) = row_time(row, Some(self.spec.time_column)) else {
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
            self.scratch.key = key;
            self.on_row(op, row, ts, watermark, out)?;
        }
        self.metrics.eval_errors = self.scratch.eval_errors;
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<(), ExecError> {
        assert!(watermark > self.watermark, "watermarks only advance");
        self.watermark = watermark;
        while let Some(&(end, id)) = self.closing.first() {
            if !is_closed(end, self.spec.lateness_ms, watermark) {
                break;
            }
            self.closing.pop_first();
            // The id keeps its key: the session stays as a tombstone.
            let key = self.keys_by_id.get(&id).expect("every open session has a key").clone();
            let list = self.sessions.get_mut(&key).expect("every open session is listed");
            let at = list
                .iter()
                .position(|s| s.id == id)
                .expect("session listed under its key");
            let session = &mut list[at];
            self.live_sessions -= 1;
            let (start, end) = (session.start, session.end);
            let rows = std::mem::take(&mut session.rows);
            let accumulators = std::mem::take(&mut session.accumulators);
            self.forgetting.insert((end.saturating_add(self.spec.gap_ms), id));
            if self.spec.emit != EmitMode::Changes {
                let closed = Session {
                    id,
                    start,
                    end,
                    rows,
                    accumulators,
                };
                if self.visible(&key, &closed, true) {
                    out.push(Op::Insert, &self.new_row);
                    self.metrics.rows_out += 1;
                }
            }
        }
        self.forget(watermark);
        self.metrics.eval_errors = self.scratch.eval_errors;
        Ok(())
    }

    fn take_late_rows(&mut self) -> Option<Batch> {
        self.late.take()
    }

    fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        assert!(!self.late.is_pending(), "late rows are taken after every batch");
        let snapshot = SessionSnapshot {
            sessions: crate::snapshot::entries(&self.sessions),
            next_id: self.next_id,
            watermark: self.watermark,
            seq: self.seq,
            late_diverted: self.late.diverted(),
            metrics: self.metrics,
        };
        Ok(crate::snapshot::defer(&self.spec.name, snapshot))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let s: SessionSnapshot = crate::snapshot::decode(&self.spec.name, bytes)?;
        self.closing.clear();
        self.forgetting.clear();
        self.keys_by_id.clear();
        self.live_sessions = 0;
        for (key, list) in &s.sessions {
            for session in list {
                let queued = if session.is_tombstone() {
                    self.forgetting
                        .insert((session.end.saturating_add(self.spec.gap_ms), session.id))
                } else {
                    self.closing.insert((session.end, session.id))
                };
                if session.id > s.next_id || !queued {
                    return Err(ExecError::Restore {
                        reason: format!("{}: session ids in the snapshot are inconsistent", self.spec.name),
                    });
                }
                self.keys_by_id.insert(session.id, key.clone());
                self.live_sessions += usize::from(!session.is_tombstone());
            }
        }
        self.sessions = crate::snapshot::rebuild(s.sessions, self.spec.entries_max, &self.spec.name)?;
        self.next_id = s.next_id;
        self.watermark = s.watermark;
        self.seq = s.seq;
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
        let mut out = SessionSnapshot {
            sessions: Vec::new(),
            next_id: 0,
            watermark: 0,
            seq: 0,
            late_diverted: 0,
            metrics: OperatorMetrics::default(),
        };
        let mut watermark = None;
        for p in parts {
            let s: SessionSnapshot = crate::snapshot::decode(&self.spec.name, p.bytes)?;
            for (key, mut list) in s.sessions {
                if !keep(&key) {
                    continue;
                }
                // Ids are unique per instance only: numbered afresh.
                for session in &mut list {
                    session.id = out.next_id;
                    out.next_id += 1;
                }
                out.sessions.push((key, list));
            }
            crate::rescale::min_watermark(&mut watermark, s.watermark);
            out.seq = out.seq.max(s.seq);
            if p.counters {
                out.late_diverted += s.late_diverted;
                crate::rescale::add_metrics(&mut out.metrics, &s.metrics);
            }
        }
        out.watermark = watermark.unwrap_or(crate::batch::WATERMARK_START);
        crate::snapshot::encode(&self.spec.name, &out)
    }

    fn set_metrics(&mut self, metrics: OperatorMetrics) {
        self.metrics = metrics;
    }

    fn state_bytes(&self) -> usize {
        self.sessions.approx_bytes()
    }

    fn metrics(&self) -> OperatorMetrics {
        OperatorMetrics {
            state_entries: self.live_sessions as u64,
            late_rows_diverted: self.late.diverted(),
            ..self.metrics
        }
    }
}
