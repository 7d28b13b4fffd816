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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
    /// Rows a join dropped from its state because they aged past its
    /// retention bound (a regular join's state TTL).
    pub state_evicted: u64,
    /// Late (or NULL-time) rows sent to the `LATE DATA TO` stream instead
    /// of being dropped.
    pub late_rows_diverted: u64,
    /// Rows in no window at all: a HOP whose slide exceeds its size has
    /// gaps between its windows, and a row there belongs to none (it is
    /// not late: no window of it ever existed).
    pub rows_in_no_window: u64,
}

impl OperatorMetrics {
    /// Adds `other`'s drops, errors and state to these (not rows in and
    /// out, which the caller combines as its sum needs).
    pub fn add_counts(&mut self, other: &OperatorMetrics) {
        self.late_rows_dropped += other.late_rows_dropped;
        self.late_rows_diverted += other.late_rows_diverted;
        self.null_time_dropped += other.null_time_dropped;
        self.eval_errors += other.eval_errors;
        self.state_entries += other.state_entries;
        self.state_evicted += other.state_evicted;
        self.rows_in_no_window += other.rows_in_no_window;
    }
}

/// A synchronous streaming operator.
pub trait Operator {
    /// A short name for EXPLAIN and metrics ("filter", "window_agg", …).
    fn name(&self) -> &'static str;

    /// Processes a run of rows from input `input` (the node's logical
    /// input: 0, or 1 for a join's right side). `watermark` is what these
    /// rows are judged late against: their input's watermark (for a
    /// single-input operator the one last passed to `on_watermark`), or,
    /// for rows of a file read in parallel by several shards, the
    /// watermark their position in the file gives them (their port's),
    /// which is never below the input's. Windows still close on
    /// `on_watermark`. Output rows are appended to `out`.
    fn on_rows(&mut self, input: usize, rows: RowsRef<'_>, watermark: i64, out: &mut Batch) -> Result<(), ExecError>;

    /// The input watermark advanced to `watermark` (the minimum over all
    /// inputs). Emits whatever that closes. `WATERMARK_END` means the end of
    /// every input: everything must be emitted.
    fn on_watermark(&mut self, watermark: i64, out: &mut Batch) -> Result<(), ExecError>;

    /// Input `input`'s own watermark advanced (called before
    /// `on_watermark`). Operators with several inputs that treat them
    /// differently (joins) use it; others need not.
    fn on_input_watermark(&mut self, _input: usize, _watermark: i64, _out: &mut Batch) -> Result<(), ExecError> {
        Ok(())
    }

    /// The watermark this operator's output carries, given its input
    /// watermark; an operator that can still emit rows older than its
    /// input watermark holds it back. Must never go backwards.
    fn output_watermark(&self, input_watermark: i64) -> i64 {
        input_watermark
    }

    /// How often this operator wants `on_tick` (processing time), if at
    /// all: only `EMIT EVERY` aggregates do.
    fn tick_interval_ms(&self) -> Option<i64> {
        None
    }

    /// Processing time is now `now_ms` (from the clock the runtime was
    /// given, so tests can drive it). Emits rows only, never marks: event
    /// time is unaffected. Times passed in never go backwards.
    fn on_tick(&mut self, _now_ms: i64, _out: &mut Batch) -> Result<(), ExecError> {
        Ok(())
    }

    /// Rows of the operator's `LATE DATA TO` stream since the last call
    /// (see `operators::late`); None when there are none.
    fn take_late_rows(&mut self) -> Option<Batch> {
        None
    }

    /// Rows another operator diverted to this one, a `LATE DATA TO`
    /// stream. Only that operator is ever given any.
    fn on_side_rows(&mut self, _rows: RowsRef<'_>, _out: &mut Batch) -> Result<(), ExecError> {
        unreachable!("{} takes no diverted rows: a planner bug", self.name())
    }

    /// About how many rows a batch of `input_rows` rows makes this
    /// operator emit, for sizing its output batch once: a projection's
    /// batch grown by doubling was an eighth of a run in `memmove`. Only
    /// operators whose output follows their input say more than 0 (an
    /// aggregate's output buffer sized for its input would be wasted).
    fn output_rows_hint(&self, _input_rows: usize) -> usize {
        0
    }

    /// About how many bytes of state the operator holds (see
    /// `KeyedState::approx_bytes`): the runtime snapshots a large state in
    /// a forked process instead of copying it on the shard. Stateless
    /// operators hold none, the default.
    fn state_bytes(&self) -> usize {
        0
    }

    /// Copies the operator's state for a checkpoint, to be serialized
    /// later (see `snapshot`). A stateless operator keeps only its
    /// counters, the default.
    fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        Ok(crate::snapshot::defer(self.name(), self.metrics()))
    }

    /// Restores state written by `checkpoint` into a freshly built
    /// operator of the same plan.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let metrics: OperatorMetrics = crate::snapshot::decode(self.name(), bytes)?;
        self.set_metrics(metrics);
        Ok(())
    }

    /// Merges the snapshots of several instances of this node (the old
    /// shards', a rescale) into one snapshot, in `checkpoint`'s format,
    /// for an instance that owns the keys `keep` accepts (see `rescale`).
    /// A stateless operator's is its counters summed, the default;
    /// every operator with keyed state overrides it.
    fn rescale(
        &self,
        parts: &[crate::rescale::Part<'_>],
        _keep: crate::rescale::Keep<'_>,
    ) -> Result<Vec<u8>, ExecError> {
        crate::rescale::rescale_metrics(self.name(), parts)
    }

    /// What the operator's output changelog folds to now, as `+I` rows
    /// written to `out`: a query's view of its stream (`SELECT` over
    /// pgwire). An operator whose state *is* that fold answers (an
    /// unwindowed aggregate, a table, an unwindowed top-N); the others
    /// say why their output is not kept as a table (append-only rows, or
    /// windows whose closed rows are gone). Stateless operators are not
    /// asked: their input's contents go through `on_rows`.
    fn contents(&mut self, _out: &mut Batch) -> Result<(), String> {
        Err(format!("its {} operator keeps no table of its output", self.name()))
    }

    /// `contents` of the state `checkpoint` wrote (a fresh operator's
    /// query of a checkpoint): by default the state restored, then asked.
    /// An operator may read its rows from the snapshot without building
    /// its state. The outer error is a snapshot that does not decode.
    fn snapshot_contents(&mut self, bytes: &[u8], out: &mut Batch) -> Result<Result<(), String>, ExecError> {
        self.restore(bytes)?;
        Ok(self.contents(out))
    }

    /// Sets the counters (restoring a stateless operator).
    fn set_metrics(&mut self, metrics: OperatorMetrics);

    fn metrics(&self) -> OperatorMetrics;
}

/// What a checkpoint keeps of a `Driven` besides the operator's own
/// state: its watermarks. The node's bytes are the length of this
/// snapshot's encoding (u32, little-endian), that encoding, then the
/// operator's bytes as they are (not re-serialized: they can be large).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct DrivenSnapshot {
    port_watermarks: Vec<i64>,
    input_watermarks: Vec<i64>,
    watermark: i64,
    output_watermark: i64,
}

/// An operator plus the watermark bookkeeping of its inputs.
///
/// Rows arrive on *ports* (one per sending shard of each input); each port
/// belongs to one logical input of the operator. An input's watermark is
/// the minimum over its ports, the operator's the minimum over its inputs.
pub struct Driven {
    operator: Box<dyn Operator>,
    /// The logical input of each port.
    port_inputs: Vec<usize>,
    port_watermarks: Vec<i64>,
    input_watermarks: Vec<i64>,
    /// Per input: whether its rows are judged against their port's
    /// watermark (rows straight from a file read in parallel, whose
    /// ports carry the file-order watermark) rather than the input's.
    port_exact: Vec<bool>,
    watermark: i64,
    /// The last mark written to the output.
    output_watermark: i64,
}

impl Driven {
    /// An operator whose `ports` ports all feed its one input.
    pub fn new(operator: Box<dyn Operator>, ports: usize) -> Driven {
        Driven::with_inputs(operator, &vec![0; ports])
    }

    /// An operator whose port `p` feeds input `port_inputs[p]`.
    pub fn with_inputs(operator: Box<dyn Operator>, port_inputs: &[usize]) -> Driven {
        assert!(!port_inputs.is_empty(), "an operator has at least one input");
        let inputs = port_inputs.iter().max().expect("non-empty") + 1;
        assert!((0..inputs).all(|i| port_inputs.contains(&i)), "every input has a port");
        Driven {
            operator,
            port_inputs: port_inputs.to_vec(),
            port_watermarks: vec![WATERMARK_START; port_inputs.len()],
            input_watermarks: vec![WATERMARK_START; inputs],
            port_exact: vec![false; inputs],
            watermark: WATERMARK_START,
            output_watermark: WATERMARK_START,
        }
    }

    /// Judges the rows of each input flagged here against their port's
    /// watermark (see `Operator::on_rows`).
    pub fn set_port_exact(&mut self, exact: Vec<bool>) {
        assert_eq!(exact.len(), self.input_watermarks.len(), "a flag per input");
        self.port_exact = exact;
    }

    /// The operator's `contents` (see `Operator::contents`).
    pub fn contents(&mut self, out: &mut Batch) -> Result<(), String> {
        self.operator.contents(out)
    }

    /// Feeds rows to the operator as input `input`, outside a run (a
    /// query pushing a view's contents through a stateless operator).
    pub fn apply(&mut self, input: usize, rows: &Batch, out: &mut Batch) -> Result<(), ExecError> {
        self.operator.on_rows(input, rows.all_rows(), self.watermark, out)
    }

    /// About how many bytes of state the node's operator holds.
    pub fn state_bytes(&self) -> usize {
        self.operator.state_bytes()
    }

    /// The node's state for a checkpoint: watermarks and operator state,
    /// the operator's serialized when the result is asked for its bytes.
    pub fn checkpoint(&self) -> Result<crate::snapshot::Deferred, ExecError> {
        let driven = crate::snapshot::encode(
            self.operator.name(),
            &DrivenSnapshot {
                port_watermarks: self.port_watermarks.clone(),
                input_watermarks: self.input_watermarks.clone(),
                watermark: self.watermark,
                output_watermark: self.output_watermark,
            },
        )?;
        let operator = self.operator.checkpoint()?;
        Ok(crate::snapshot::Deferred::new(move || {
            let operator = operator.bytes()?;
            let mut bytes = Vec::with_capacity(4 + driven.len() + operator.len());
            bytes.extend_from_slice(&(driven.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&driven);
            bytes.extend_from_slice(&operator);
            Ok(bytes)
        }))
    }

    /// This node's bytes, as `checkpoint` makes them, for an instance on
    /// another shard count, from the old instances' bytes: the operator's
    /// state merged by `Operator::rescale`, each input's watermark the
    /// minimum of the old instances' (every port of the input there), the
    /// node's and output watermarks likewise.
    pub fn rescaled(
        &self,
        parts: &[crate::rescale::Part<'_>],
        keep: crate::rescale::Keep<'_>,
    ) -> Result<Vec<u8>, ExecError> {
        let name = self.operator.name();
        let mut inputs: Vec<Option<i64>> = vec![None; self.input_watermarks.len()];
        let (mut watermark, mut output) = (None, None);
        let mut operator_parts = Vec::with_capacity(parts.len());
        for p in parts {
            let (s, operator) = Self::split(name, p.bytes)?;
            if s.input_watermarks.len() != inputs.len() {
                return Err(ExecError::Restore {
                    reason: format!(
                        "{name}: the checkpoint has {} inputs, the plan {}",
                        s.input_watermarks.len(),
                        inputs.len()
                    ),
                });
            }
            for (acc, w) in inputs.iter_mut().zip(&s.input_watermarks) {
                crate::rescale::min_watermark(acc, *w);
            }
            crate::rescale::min_watermark(&mut watermark, s.watermark);
            crate::rescale::min_watermark(&mut output, s.output_watermark);
            operator_parts.push(crate::rescale::Part {
                bytes: operator,
                counters: p.counters,
            });
        }
        let operator = self.operator.rescale(&operator_parts, keep)?;
        let input_watermarks: Vec<i64> = inputs.into_iter().map(|w| w.unwrap_or(WATERMARK_START)).collect();
        let driven = crate::snapshot::encode(
            name,
            &DrivenSnapshot {
                port_watermarks: self.port_inputs.iter().map(|&i| input_watermarks[i]).collect(),
                input_watermarks,
                watermark: watermark.unwrap_or(WATERMARK_START),
                output_watermark: output.unwrap_or(WATERMARK_START),
            },
        )?;
        let mut bytes = Vec::with_capacity(4 + driven.len() + operator.len());
        bytes.extend_from_slice(&(driven.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&driven);
        bytes.extend_from_slice(&operator);
        Ok(bytes)
    }

    /// A node's bytes: its watermarks, and the operator's bytes.
    fn split<'a>(name: &str, bytes: &'a [u8]) -> Result<(DrivenSnapshot, &'a [u8]), ExecError> {
        let len = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .filter(|&len| 4 + len <= bytes.len())
            .ok_or_else(|| ExecError::Restore {
                reason: format!("{name}: the node's state is cut short"),
            })?;
        let s: DrivenSnapshot = crate::snapshot::decode(name, &bytes[4..4 + len])?;
        Ok((s, &bytes[4 + len..]))
    }

    /// Restores what `checkpoint` wrote into a node built from the same
    /// plan on the same number of shards.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        let (s, operator) = Self::split(self.operator.name(), bytes)?;
        if s.port_watermarks.len() != self.port_watermarks.len()
            || s.input_watermarks.len() != self.input_watermarks.len()
        {
            return Err(ExecError::Restore {
                reason: format!(
                    "{}: the checkpoint has {} input ports, the plan {} (was the shard count changed?)",
                    self.operator.name(),
                    s.port_watermarks.len(),
                    self.port_watermarks.len()
                ),
            });
        }
        self.operator.restore(operator)?;
        self.port_watermarks = s.port_watermarks;
        self.input_watermarks = s.input_watermarks;
        self.watermark = s.watermark;
        self.output_watermark = s.output_watermark;
        Ok(())
    }

    /// The operator's `contents` as of `checkpoint`'s bytes (see
    /// `Operator::snapshot_contents`), whatever the port layout of the run
    /// that wrote them: the ports' watermarks are not read.
    pub fn snapshot_contents(&mut self, bytes: &[u8], out: &mut Batch) -> Result<Result<(), String>, ExecError> {
        let (_, operator) = Self::split(self.operator.name(), bytes)?;
        self.operator.snapshot_contents(operator, out)
    }

    /// See `Operator::output_rows_hint`.
    pub fn output_rows_hint(&self, input_rows: usize) -> usize {
        self.operator.output_rows_hint(input_rows)
    }

    pub fn operator(&self) -> &dyn Operator {
        self.operator.as_ref()
    }

    /// Whether port `port` has delivered the end of input.
    pub fn port_ended(&self, port: usize) -> bool {
        self.port_watermarks[port] == crate::batch::WATERMARK_END
    }

    /// The input watermark (minimum over every port).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Passes a processing-time tick to the operator (see
    /// `Operator::on_tick`); output rows go to `out`.
    pub fn tick(&mut self, now_ms: i64, out: &mut Batch) -> Result<(), ExecError> {
        self.operator.on_tick(now_ms, out)
    }

    /// The rows the operator diverted to its late stream, if any.
    pub fn take_late_rows(&mut self) -> Option<Batch> {
        self.operator.take_late_rows()
    }

    /// Feeds rows another node diverted here (a `LATE DATA TO` stream);
    /// marks in `batch` are ignored: this node's watermark comes from its
    /// input.
    pub fn push_side(&mut self, batch: &Batch, out: &mut Batch) -> Result<(), ExecError> {
        for segment in batch.segments() {
            if let Segment::Rows(rows) = segment {
                self.operator.on_side_rows(rows, out)?;
            }
        }
        Ok(())
    }

    /// Feeds one batch that arrived on `port` through the operator,
    /// appending output rows and marks to `out`.
    pub fn push(&mut self, port: usize, batch: &Batch, out: &mut Batch) -> Result<(), ExecError> {
        let input = self.port_inputs[port];
        for segment in batch.segments() {
            match segment {
                Segment::Rows(rows) => {
                    let watermark = if self.port_exact[input] {
                        self.port_watermarks[port]
                    } else {
                        self.input_watermarks[input]
                    };
                    debug_assert!(watermark >= self.input_watermarks[input]);
                    self.operator.on_rows(input, rows, watermark, out)?
                }
                Segment::Watermark(w) => {
                    let slot = &mut self.port_watermarks[port];
                    if w <= *slot {
                        continue;
                    }
                    *slot = w;
                    let input_min = self
                        .port_watermarks
                        .iter()
                        .zip(&self.port_inputs)
                        .filter(|(_, &i)| i == input)
                        .map(|(w, _)| *w)
                        .min()
                        .expect("the port's input has a port");
                    if input_min > self.input_watermarks[input] {
                        self.input_watermarks[input] = input_min;
                        self.operator.on_input_watermark(input, input_min, out)?;
                    }
                    let min = *self.input_watermarks.iter().min().expect("at least one input");
                    if min > self.watermark {
                        self.watermark = min;
                        self.operator.on_watermark(min, out)?;
                    }
                    let emitted = self.operator.output_watermark(self.watermark);
                    if emitted > self.output_watermark {
                        self.output_watermark = emitted;
                        out.push_mark(emitted);
                    }
                }
            }
        }
        Ok(())
    }
}
