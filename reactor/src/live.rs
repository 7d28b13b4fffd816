//! Live TCP sources (`laminar serve`): connections feed an inbox, the
//! source turns the inbox into batches with per-connection watermarks.
//!
//! Every connection is a partition: it has its own watermark
//! `max(event time) - delay`, and the source's watermark is the minimum
//! over the connections that are open and not idle. Two rules keep a
//! live watermark honest:
//! - **Skew bound.** An event time further than `skew_ms` ahead of the
//!   wall clock counts only as `now + skew_ms` for the watermark (the row
//!   itself is kept as it is); such rows are counted and logged as
//!   outliers. One record stamped in the year 3000 cannot make every
//!   honest record late.
//! - **Idle timeout.** A connection that sent nothing for `idle_timeout_ms`
//!   leaves the minimum until it sends again; a closed one leaves it for
//!   good. With no connection in the minimum the watermark is the largest
//!   any connection reached. The watermark never goes back: a connection
//!   that comes back, or a new one, with older data sees its rows judged
//!   late against it.
//!
//! The split of work: connection tasks (async, on the shard that owns the
//! source) only move bytes into the inbox and answer the client; the
//! source (`LiveReader`, synchronous, called by the source loop) splits
//! lines, decodes, tracks watermarks and counts. Given the same arrivals
//! and the same clock readings it produces the same batches.
//!
//! **The WAL.** What the source applies, batch by batch, goes to its
//! shard's write-ahead log (`LoggedBatch`: the arrivals applied and the
//! clock reading they were applied at) before the batch's rows travel on.
//! A checkpoint records the log position of its barrier; recovery
//! restores the checkpoint and replays the log after it through the same
//! code, which gives the same rows and watermarks.
//!
//! **Acknowledgement.** When a client has sent everything it half-closes
//! its socket; the connection answers `OK <rows> rows <malformed>
//! malformed` once the WAL holds its last line on disk (a group commit,
//! about a millisecond), then closes. An acknowledged row survives kill
//! -9; a connection that ends without the answer (the server stopped or
//! crashed) must be sent again.
//!
//! **Backpressure.** The inbox holds at most `inbox_bytes_max` bytes; a
//! connection that finds it full stops reading its socket, so TCP flow
//! control slows the client instead of memory growing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use fxhash::FxHashMap;
use laminar_exec::batch::{Batch, Op};
use laminar_exec::format::{Decoder, Framed, LineFramer};
use laminar_exec::plan::WatermarkSpec;
use laminar_exec::time::Clock;
use laminar_exec::types::Value;

use crate::mesh::Signal;

/// The limits and timeouts of live sources (from the serve config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// Open connections per source; more are refused with a message.
    pub connections_max: usize,
    /// Longest line accepted; a longer one is malformed (its first
    /// `line_bytes_max` bytes are dead-lettered).
    pub line_bytes_max: usize,
    /// Bytes received and not yet decoded, per source, before its
    /// connections stop reading their sockets.
    pub inbox_bytes_max: usize,
    /// A connection silent this long leaves the watermark minimum.
    pub idle_timeout_ms: i64,
    /// How far ahead of the wall clock an event time may move a watermark.
    pub skew_ms: i64,
}

impl Default for LiveLimits {
    fn default() -> LiveLimits {
        LiveLimits {
            connections_max: 256,
            line_bytes_max: 1 << 20,
            inbox_bytes_max: 8 << 20,
            idle_timeout_ms: 10_000,
            skew_ms: 300_000,
        }
    }
}

/// Bytes a connection reads from its socket at a time.
const READ_BYTES: usize = 64 << 10;
/// Outliers (event times beyond the skew bound) logged per source; the
/// rest are only counted.
const OUTLIER_REPORTS_MAX: u64 = 10;

/// What a connection task hands to the source; also what the WAL holds
/// of what the source applied (an rkyv archive of `LoggedBatch`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Arrival {
    Open { conn: u64, peer: String },
    Bytes { conn: u64, bytes: Vec<u8> },
    Close { conn: u64 },
}

/// What a live source applied in one batch, and the clock reading it
/// applied it at: replaying these gives the same rows and watermarks.
/// The payload of a WAL record of kind `Rows`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LoggedBatch {
    /// The source's plan index.
    pub source: u32,
    pub now_ms: i64,
    /// Arrivals, a `Bytes` cut to the part applied.
    pub entries: Vec<Arrival>,
}

/// Bytes of arrivals one batch applies at most when logging, so that its
/// WAL record stays under the record limit (an arrival is at most
/// `READ_BYTES`, a peer name short).
pub const LOG_BATCH_BYTES_MAX: usize = 512 << 10;

/// What one connection amounted to, for its acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub rows: u64,
    pub malformed: u64,
}

/// The queue between a source's connection tasks and the source, shared
/// on the owning shard (`Rc`, never across threads).
#[derive(Default)]
pub struct Inbox {
    /// Arrivals not yet fully applied, each with its sequence number; the
    /// front one may be partly applied (`front_offset` bytes of it).
    queue: VecDeque<(u64, Arrival)>,
    front_offset: usize,
    /// Bytes of `Bytes` arrivals in the queue.
    bytes: usize,
    next_seq: u64,
    /// Every arrival with a smaller sequence number is applied.
    applied_seq: u64,
    /// Intake stopped (shutdown): arrivals are refused.
    closed: bool,
    next_conn: u64,
    open: usize,
    /// Connections whose `Close` is applied, waiting for their
    /// acknowledgement: their counts and the sequence of the `Close`.
    finished: FxHashMap<u64, (ConnCounts, u64)>,
    /// Connections that ended and wait for the log to hold them.
    awaiting_ack: usize,
    /// Connections that failed (their client gets no answer): nothing is
    /// kept for them when their `Close` is applied.
    unanswered: fxhash::FxHashSet<u64>,
    /// Logged batches: (`applied_seq` after the batch, the LSN just past
    /// its WAL record), oldest first.
    logged: VecDeque<(u64, u64)>,
    /// Everything before this LSN of the shard's WAL is on disk.
    synced_lsn: u64,
    /// Connections waiting for room (backpressure), and how many times
    /// one had to.
    room_waiters: Vec<Rc<Signal>>,
    backpressure_waits: u64,
    /// Finished connections waiting for the log to reach the disk.
    ack_waiters: Vec<Rc<Signal>>,
    /// Wakes the source loop.
    wake: Option<Rc<Signal>>,
}

impl Inbox {
    /// Sets the signal that wakes the source loop on arrivals.
    pub fn set_wake(&mut self, wake: Rc<Signal>) {
        self.wake = Some(wake);
    }

    /// Queues an arrival; false once intake has stopped.
    fn push(&mut self, arrival: Arrival) -> Option<u64> {
        if self.closed {
            return None;
        }
        if let Arrival::Bytes { bytes, .. } = &arrival {
            self.bytes += bytes.len();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back((seq, arrival));
        if let Some(w) = &self.wake {
            w.notify();
        }
        Some(seq)
    }

    /// Stops intake: later arrivals are refused.
    pub fn close(&mut self) {
        self.closed = true;
        for w in self.room_waiters.drain(..) {
            w.notify();
        }
    }

    /// Intake has stopped and every accepted arrival is applied.
    pub fn drained(&self) -> bool {
        self.closed && self.queue.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn open_connections(&self) -> usize {
        self.open
    }

    /// Times a connection found the inbox full and stopped reading.
    pub fn backpressure_waits(&self) -> u64 {
        self.backpressure_waits
    }

    /// Bytes received and not yet applied.
    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    pub fn awaiting_ack(&self) -> usize {
        self.awaiting_ack
    }

    /// Records that what was applied so far is in the WAL up to `lsn_end`.
    pub fn on_logged(&mut self, lsn_end: u64) {
        self.logged.push_back((self.applied_seq, lsn_end));
    }

    /// The WAL is on disk up to `lsn`.
    pub fn on_synced(&mut self, lsn: u64) {
        self.synced_lsn = self.synced_lsn.max(lsn);
        self.forget_superseded();
        for w in self.ack_waiters.drain(..) {
            w.notify();
        }
    }

    /// Only the newest logged batch on disk matters for the answers (and
    /// those not on disk yet): connections that never ask must not make
    /// the list grow.
    fn forget_superseded(&mut self) {
        while self.logged.len() >= 2 && self.logged[1].1 <= self.synced_lsn {
            self.logged.pop_front();
        }
    }

    /// Whether the arrival `seq` is applied and its WAL record on disk;
    /// forgets logged batches that a later synced one supersedes.
    fn covered(&mut self, seq: u64) -> bool {
        self.forget_superseded();
        self.logged
            .iter()
            .any(|&(applied, lsn_end)| lsn_end <= self.synced_lsn && applied > seq)
    }

    fn pop_front(&mut self) {
        let (seq, arrival) = self.queue.pop_front().expect("an arrival to pop");
        if let Arrival::Bytes { bytes, .. } = &arrival {
            self.bytes -= bytes.len();
        }
        self.front_offset = 0;
        self.applied_seq = seq + 1;
    }

    fn notify_room(&mut self, inbox_bytes_max: usize) {
        if self.bytes < inbox_bytes_max / 2 || self.queue.is_empty() {
            for w in self.room_waiters.drain(..) {
                w.notify();
            }
        }
    }
}

/// A connection as a checkpoint keeps it: what the WAL after the
/// checkpoint replays onto.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConnState {
    pub conn: u64,
    pub peer: String,
    /// The unfinished line, whether it is too long, lines completed.
    pub partial: Vec<u8>,
    pub skipping: bool,
    pub lines: u64,
    pub max_time: i64,
    pub watermark: i64,
    pub last_active_ms: i64,
    pub rows: u64,
    pub malformed: u64,
}

/// One connection as the source sees it.
struct Conn {
    peer: String,
    framer: LineFramer,
    max_time: i64,
    watermark: i64,
    last_active_ms: i64,
    counts: ConnCounts,
}

/// A bad line, for the source to report and dead-letter.
pub struct BadLine<'a> {
    pub peer: &'a str,
    pub conn: u64,
    pub line: u64,
    pub reason: String,
    pub bytes: &'a [u8],
}

/// The source side of a live TCP source.
pub struct LiveReader {
    pub inbox: Rc<RefCell<Inbox>>,
    decoder: Box<dyn Decoder>,
    limits: LiveLimits,
    spec: Option<WatermarkSpec>,
    clock: Arc<dyn Clock>,
    conns: FxHashMap<u64, Conn>,
    /// The source's watermark (monotone).
    pub watermark: i64,
    /// The largest watermark any connection reached.
    pub max_seen: i64,
    /// Event times beyond the skew bound.
    pub outliers: u64,
    /// Where the shard's WAL stands after what this source applied: its
    /// position in a checkpoint, and where a recovery replays from.
    pub wal_lsn: u64,
    pub bytes_read: u64,
    line: Vec<u8>,
    /// The source's plan index (for its WAL records).
    index: u32,
    /// Logging (serve): what the current batch applied, for the WAL.
    log: Option<Vec<Arrival>>,
    log_bytes: usize,
    /// The current batch must be logged (it applied arrivals or moved
    /// the watermark), with this clock reading.
    log_due: Option<i64>,
    /// Batches read back from the WAL, applied before any new arrival.
    replay: VecDeque<LoggedBatch>,
    replay_inbox: Rc<RefCell<Inbox>>,
}

impl LiveReader {
    pub fn new(
        index: usize,
        inbox: Rc<RefCell<Inbox>>,
        decoder: Box<dyn Decoder>,
        spec: Option<WatermarkSpec>,
        limits: LiveLimits,
        clock: Arc<dyn Clock>,
    ) -> LiveReader {
        LiveReader {
            inbox,
            decoder,
            limits,
            spec,
            clock,
            conns: FxHashMap::default(),
            watermark: i64::MIN,
            max_seen: i64::MIN,
            outliers: 0,
            wal_lsn: 0,
            bytes_read: 0,
            line: Vec::new(),
            index: u32::try_from(index).expect("a plan has fewer than 2^32 sources"),
            log: None,
            log_bytes: 0,
            log_due: None,
            replay: VecDeque::new(),
            replay_inbox: Rc::new(RefCell::new(Inbox::default())),
        }
    }

    /// Keeps what each batch applies for the WAL (`take_log`).
    pub fn enable_log(&mut self) {
        self.log = Some(Vec::new());
    }

    /// What the last batch applied, if it must be logged; the source
    /// loop appends it to the WAL.
    pub fn take_log(&mut self) -> Option<LoggedBatch> {
        let now_ms = self.log_due.take()?;
        let entries = std::mem::take(self.log.as_mut()?);
        self.log_bytes = 0;
        Some(LoggedBatch {
            source: self.index,
            now_ms,
            entries,
        })
    }

    /// Batches read back from the WAL (after the checkpoint resumed from):
    /// they are applied, with their clock readings, before anything new.
    /// Connection ids of new connections start after theirs.
    pub fn replay(&mut self, batches: Vec<LoggedBatch>) {
        let last_conn = batches
            .iter()
            .flat_map(|b| &b.entries)
            .map(|a| match a {
                Arrival::Open { conn, .. } | Arrival::Bytes { conn, .. } | Arrival::Close { conn } => *conn,
            })
            .max();
        let restored = self.conns.keys().copied().max();
        if let Some(c) = last_conn.max(restored) {
            let mut ib = self.inbox.borrow_mut();
            ib.next_conn = ib.next_conn.max(c + 1);
        }
        self.replay.extend(batches);
        if self.replay.is_empty() {
            self.end_replay();
        }
    }

    /// Batches still to replay.
    pub fn replaying(&self) -> usize {
        self.replay.len()
    }

    /// Replay is over: the connections it reopened died with the process
    /// that had them (their clients were never answered); they leave the
    /// minimum as closed ones do.
    fn end_replay(&mut self) {
        for (_, c) in self.conns.drain() {
            self.max_seen = self.max_seen.max(c.watermark);
        }
        *self.replay_inbox.borrow_mut() = Inbox::default();
    }

    /// Continues from a checkpoint: the watermark stands where it stood,
    /// and the connections open then are back for the WAL's replay (which
    /// ends them: their process is gone).
    pub fn resume(&mut self, wal_lsn: u64, watermark: i64, max_seen: i64, conns: &[ConnState]) {
        self.wal_lsn = wal_lsn;
        self.watermark = watermark;
        self.max_seen = max_seen.max(watermark);
        for c in conns {
            self.conns.insert(
                c.conn,
                Conn {
                    peer: c.peer.clone(),
                    framer: LineFramer::restored(self.limits.line_bytes_max, &c.partial, c.skipping, c.lines),
                    max_time: c.max_time,
                    watermark: c.watermark,
                    last_active_ms: c.last_active_ms,
                    counts: ConnCounts {
                        rows: c.rows,
                        malformed: c.malformed,
                    },
                },
            );
        }
    }

    /// The open connections, for a checkpoint.
    pub fn connection_states(&self) -> Vec<ConnState> {
        let mut states: Vec<ConnState> = self
            .conns
            .iter()
            .map(|(&conn, c)| {
                let (partial, skipping, lines) = c.framer.state();
                ConnState {
                    conn,
                    peer: c.peer.clone(),
                    partial: partial.to_vec(),
                    skipping,
                    lines,
                    max_time: c.max_time,
                    watermark: c.watermark,
                    last_active_ms: c.last_active_ms,
                    rows: c.counts.rows,
                    malformed: c.counts.malformed,
                }
            })
            .collect();
        states.sort_by_key(|s| s.conn);
        states
    }

    /// The watermark the connections allow at `now_ms`: the minimum over
    /// the open, non-idle ones, or the largest reached when none is.
    fn candidate(&self, now_ms: i64) -> i64 {
        let active = self
            .conns
            .values()
            .filter(|c| now_ms.saturating_sub(c.last_active_ms) <= self.limits.idle_timeout_ms)
            .map(|c| c.watermark)
            .min();
        active.unwrap_or(self.max_seen)
    }

    /// Whether reading now would produce anything: arrivals wait, or the
    /// watermark can move (a connection went idle).
    pub fn ready(&self) -> bool {
        if !self.replay.is_empty() || !self.inbox.borrow().is_empty() {
            return true;
        }
        self.spec.is_some() && self.candidate(self.clock.now_ms()) > self.watermark
    }

    /// Keeps what was applied of an arrival for the WAL (`bytes`: about
    /// what it adds to the record).
    fn log_entry(&mut self, entry: Arrival, bytes: usize) {
        if let Some(log) = self.log.as_mut() {
            log.push(entry);
            self.log_bytes += bytes;
        }
    }

    /// Moves the watermark to what the connections allow; pushes the mark
    /// when it advanced.
    fn advance(&mut self, now_ms: i64, batch: &mut Batch) {
        if self.spec.is_none() {
            return;
        }
        let w = self.candidate(now_ms);
        if w > self.watermark {
            self.watermark = w;
            batch.push_mark(w);
        }
    }

    /// Applies arrivals until `rows_max` rows are in the batch or the
    /// inbox is empty. `rows` and `malformed` are the source's counters.
    pub fn next_batch(
        &mut self,
        width: usize,
        rows_max: usize,
        scratch: &mut Vec<Value>,
        counters: (&mut u64, &mut u64),
        on_bad: &mut dyn FnMut(BadLine<'_>) -> Result<(), crate::RunError>,
    ) -> Result<Batch, crate::RunError> {
        let (rows, malformed) = counters;
        // A replayed batch: exactly its arrivals, at its clock reading.
        let (now, inbox, rows_max, replayed) = match self.replay.pop_front() {
            Some(logged) => {
                let mut ib = self.replay_inbox.borrow_mut();
                for a in logged.entries {
                    ib.push(a);
                }
                drop(ib);
                (logged.now_ms, Rc::clone(&self.replay_inbox), usize::MAX, true)
            }
            None => (self.clock.now_ms(), Rc::clone(&self.inbox), rows_max, false),
        };
        let logging = !replayed && self.log.is_some();
        let mut batch = Batch::with_capacity(width, rows_max.min(1024));
        self.advance(now, &mut batch);
        while batch.len() < rows_max && self.log_bytes < LOG_BATCH_BYTES_MAX {
            let mut ib = inbox.borrow_mut();
            let Some((seq, front)) = ib.queue.front() else { break };
            let seq = *seq;
            match front {
                Arrival::Open { conn, peer } => {
                    let id = *conn;
                    if logging {
                        self.log_entry(
                            Arrival::Open {
                                conn: id,
                                peer: peer.clone(),
                            },
                            peer.len() + 16,
                        );
                    }
                    let conn = Conn {
                        peer: peer.clone(),
                        framer: LineFramer::new(self.limits.line_bytes_max),
                        max_time: i64::MIN,
                        watermark: i64::MIN,
                        last_active_ms: now,
                        counts: ConnCounts::default(),
                    };
                    self.conns.insert(id, conn);
                    ib.pop_front();
                }
                Arrival::Bytes { conn, bytes } => {
                    let id = *conn;
                    // As many lines as the batch has room for; the rest of
                    // the arrival stays for the next call.
                    let (start, end) = (ib.front_offset, bytes.len());
                    let mut pos = start;
                    while pos < end && batch.len() < rows_max {
                        let Some(conn) = self.conns.get_mut(&id) else {
                            // Arrivals of a connection are queued in order:
                            // its bytes never come before its open.
                            debug_assert!(false, "bytes of an unknown connection {id}");
                            pos = end;
                            break;
                        };
                        conn.last_active_ms = now;
                        let (n, framed) = conn.framer.push(&bytes[pos..end]);
                        pos += n;
                        let too_long = match framed {
                            None => continue,
                            Some(Framed::Line(b)) => {
                                self.line.clear();
                                self.line.extend_from_slice(b);
                                false
                            }
                            Some(Framed::TooLong(b)) => {
                                self.line.clear();
                                self.line.extend_from_slice(b);
                                true
                            }
                        };
                        let line_no = conn.framer.lines();
                        self.take_line(
                            id,
                            line_no,
                            too_long,
                            now,
                            width,
                            scratch,
                            &mut batch,
                            (&mut *rows, &mut *malformed),
                            on_bad,
                        )?;
                    }
                    self.bytes_read += (pos - start) as u64;
                    if logging {
                        let applied = bytes[start..pos].to_vec();
                        self.log_entry(
                            Arrival::Bytes {
                                conn: id,
                                bytes: applied,
                            },
                            pos - start,
                        );
                    }
                    if pos == end {
                        ib.pop_front();
                    } else {
                        ib.front_offset = pos;
                    }
                }
                Arrival::Close { conn } => {
                    let id = *conn;
                    ib.pop_front();
                    drop(ib);
                    if logging {
                        self.log_entry(Arrival::Close { conn: id }, 16);
                    }
                    // An unterminated last line is a line.
                    let last = self.conns.get_mut(&id).and_then(|c| {
                        let framed = c.framer.finish()?;
                        let too_long = matches!(framed, Framed::TooLong(_));
                        let (Framed::Line(b) | Framed::TooLong(b)) = framed;
                        self.line.clear();
                        self.line.extend_from_slice(b);
                        Some((c.framer.lines(), too_long))
                    });
                    if let Some((line_no, too_long)) = last {
                        self.take_line(
                            id,
                            line_no,
                            too_long,
                            now,
                            width,
                            scratch,
                            &mut batch,
                            (&mut *rows, &mut *malformed),
                            on_bad,
                        )?;
                    }
                    if let Some(c) = self.conns.remove(&id) {
                        self.max_seen = self.max_seen.max(c.watermark);
                        let mut ib = inbox.borrow_mut();
                        // Only a connection that waits for its answer
                        // keeps its counts (a failed one never asks).
                        if !ib.unanswered.remove(&id) {
                            ib.finished.insert(id, (c.counts, seq));
                        }
                        ib.open = ib.open.saturating_sub(1);
                    }
                    self.advance(now, &mut batch);
                }
            }
        }
        inbox.borrow_mut().notify_room(self.limits.inbox_bytes_max);
        if logging && (self.log.as_ref().is_some_and(|l| !l.is_empty()) || !batch.marks().is_empty()) {
            self.log_due = Some(now);
        }
        if replayed && self.replay.is_empty() {
            self.end_replay();
        }
        Ok(batch)
    }

    /// Takes line `line_no` of connection `id` (in `self.line`): a row,
    /// or a bad line reported.
    #[allow(clippy::too_many_arguments)]
    fn take_line(
        &mut self,
        id: u64,
        line_no: u64,
        too_long: bool,
        now: i64,
        width: usize,
        scratch: &mut Vec<Value>,
        batch: &mut Batch,
        counters: (&mut u64, &mut u64),
        on_bad: &mut dyn FnMut(BadLine<'_>) -> Result<(), crate::RunError>,
    ) -> Result<(), crate::RunError> {
        let (rows, malformed) = counters;
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if too_long {
            conn.counts.malformed += 1;
            *malformed += 1;
            let reason = format!("line longer than {} bytes", self.limits.line_bytes_max);
            return on_bad(BadLine {
                peer: &conn.peer,
                conn: id,
                line: line_no,
                reason,
                bytes: &self.line,
            });
        }
        if self.line.is_empty() || self.line.iter().all(u8::is_ascii_whitespace) {
            return Ok(()); // blank lines are not records
        }
        scratch.clear();
        match self.decoder.decode(&self.line, scratch) {
            Ok(()) => {
                debug_assert_eq!(scratch.len(), width);
                conn.counts.rows += 1;
                *rows += 1;
                let mut moved = false;
                if let Some(spec) = self.spec {
                    if let Value::Ts(t) | Value::Int(t) = scratch[spec.column] {
                        let bound = now.saturating_add(self.limits.skew_ms);
                        let t = if t > bound {
                            self.outliers += 1;
                            if self.outliers <= OUTLIER_REPORTS_MAX {
                                tracing::warn!(
                                    peer = %conn.peer,
                                    line = line_no,
                                    event_time_ms = t,
                                    bound_ms = bound,
                                    "event time beyond the wall clock plus the skew bound: it moves the watermark only to the bound"
                                );
                            }
                            bound
                        } else {
                            t
                        };
                        if t > conn.max_time {
                            conn.max_time = t;
                            let w = t.saturating_sub(spec.delay_ms);
                            // Only a connection at or below the source's
                            // watermark can be holding it back.
                            moved = conn.watermark <= self.watermark && w > conn.watermark;
                            conn.watermark = conn.watermark.max(w);
                            self.max_seen = self.max_seen.max(conn.watermark);
                        }
                    }
                }
                batch.push_owned(Op::Insert, scratch.drain(..));
                if moved {
                    self.advance(now, batch);
                }
                Ok(())
            }
            Err(error) => {
                conn.counts.malformed += 1;
                *malformed += 1;
                on_bad(BadLine {
                    peer: &conn.peer,
                    conn: id,
                    line: line_no,
                    reason: self.decoder.explain(&self.line, error),
                    bytes: &self.line,
                })
            }
        }
    }
}

/// The next connection of a listener and its peer's address. A failed
/// accept (out of descriptors, say) is logged and tried again after a
/// pause rather than in a spin.
pub(crate) async fn accept(listener: &glommio::net::TcpListener, what: &str) -> (glommio::net::TcpStream, String) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(listener = %what, error = %e, "accepting a connection failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tells a refused client why (one `ERR …` line) and closes, in a task
/// of its own so the accept loop goes on.
pub(crate) fn refuse(mut stream: glommio::net::TcpStream, message: String) {
    glommio::spawn_local(async move {
        let _ = stream.write_all(message.as_bytes()).await;
        let _ = stream.close().await;
    })
    .detach();
}

/// Accepts connections of one source until the task is dropped (intake
/// stops). Each connection gets its own task.
pub async fn accept_loop(
    listener: glommio::net::TcpListener,
    inbox: Rc<RefCell<Inbox>>,
    limits: LiveLimits,
    source_name: String,
) {
    loop {
        let (stream, peer) = accept(&listener, &source_name).await;
        let refused = {
            let ib = inbox.borrow();
            if ib.closed {
                Some("ERR the server is stopping\n".to_string())
            } else if ib.open >= limits.connections_max {
                Some(format!(
                    "ERR source {source_name} has {} connections, its limit\n",
                    limits.connections_max
                ))
            } else {
                None
            }
        };
        if let Some(message) = refused {
            tracing::warn!(source = %source_name, %peer, "refused a connection: {}", message.trim_end());
            refuse(stream, message);
            continue;
        }
        let conn = {
            let mut ib = inbox.borrow_mut();
            let conn = ib.next_conn;
            ib.next_conn += 1;
            ib.open += 1;
            ib.push(Arrival::Open {
                conn,
                peer: peer.clone(),
            });
            conn
        };
        tracing::debug!(source = %source_name, %peer, conn, "connection opened");
        glommio::spawn_local(connection(stream, conn, Rc::clone(&inbox), limits)).detach();
    }
}

/// One connection: bytes into the inbox until the client half-closes,
/// then the acknowledgement once a checkpoint covers them.
async fn connection(mut stream: glommio::net::TcpStream, conn: u64, inbox: Rc<RefCell<Inbox>>, limits: LiveLimits) {
    let room = Rc::new(Signal::default());
    let mut buf = vec![0u8; READ_BYTES];
    let ended_well = loop {
        // Backpressure: a full inbox is not read into; the socket's
        // buffers fill and TCP slows the client.
        while {
            let mut ib = inbox.borrow_mut();
            let full = !ib.closed && ib.bytes >= limits.inbox_bytes_max;
            if full {
                ib.room_waiters.push(Rc::clone(&room));
                ib.backpressure_waits += 1;
            }
            full
        } {
            room.wait().await;
        }
        match stream.read(&mut buf).await {
            Ok(0) => break true,
            Ok(n) => {
                let pushed = inbox.borrow_mut().push(Arrival::Bytes {
                    conn,
                    bytes: buf[..n].to_vec(),
                });
                if pushed.is_none() {
                    // Intake stopped mid-stream: no acknowledgement.
                    let _ = stream.write_all(b"ERR the server is stopping; send again\n").await;
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(conn, error = %e, "connection failed");
                break false;
            }
        }
    };
    if !ended_well {
        let mut ib = inbox.borrow_mut();
        if ib.push(Arrival::Close { conn }).is_some() {
            ib.unanswered.insert(conn);
        }
        return;
    }
    let Some(close_seq) = inbox.borrow_mut().push(Arrival::Close { conn }) else {
        return;
    };
    inbox.borrow_mut().awaiting_ack += 1;
    // Woken by every group commit (`Inbox::on_synced`).
    let synced = Rc::new(Signal::default());
    let counts = loop {
        {
            let mut ib = inbox.borrow_mut();
            if ib.covered(close_seq) {
                if let Some((counts, _)) = ib.finished.remove(&conn) {
                    ib.awaiting_ack -= 1;
                    break counts;
                }
            }
            ib.ack_waiters.push(Rc::clone(&synced));
        }
        synced.wait().await;
    };
    let answer = format!("OK {} rows {} malformed\n", counts.rows, counts.malformed);
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_exec::format::Format;
    use laminar_exec::types::{DataType, Field, Schema};
    use std::sync::atomic::{AtomicI64, Ordering};

    #[derive(Debug, Default)]
    struct ManualClock(AtomicI64);

    impl Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// A reader of `k BIGINT, ts BIGINT` with watermark `ts - 10`.
    struct Fixture {
        reader: LiveReader,
        clock: Arc<ManualClock>,
        rows: u64,
        malformed: u64,
        bad: Vec<(u64, u64, String, Vec<u8>)>,
        /// What each batch logged, when logging.
        logged: Vec<LoggedBatch>,
    }

    impl Fixture {
        fn new(limits: LiveLimits) -> Fixture {
            let schema = Schema::new(vec![Field::new("k", DataType::Int), Field::new("ts", DataType::Int)]);
            let decoder = Format::Csv.decoder(&schema, None, b',', &[], false).unwrap();
            let clock = Arc::new(ManualClock::default());
            let reader = LiveReader::new(
                0,
                Rc::new(RefCell::new(Inbox::default())),
                decoder,
                Some(WatermarkSpec {
                    column: 1,
                    delay_ms: 10,
                }),
                limits,
                Arc::clone(&clock) as Arc<dyn Clock>,
            );
            Fixture {
                reader,
                clock,
                rows: 0,
                malformed: 0,
                bad: Vec::new(),
                logged: Vec::new(),
            }
        }

        fn arrive(&self, a: Arrival) -> u64 {
            let mut ib = self.reader.inbox.borrow_mut();
            if let Arrival::Open { .. } = a {
                ib.open += 1;
            }
            ib.push(a).expect("intake open")
        }

        fn open(&self, conn: u64) {
            self.arrive(Arrival::Open {
                conn,
                peer: format!("peer{conn}"),
            });
        }

        fn send(&self, conn: u64, text: &str) {
            self.arrive(Arrival::Bytes {
                conn,
                bytes: text.as_bytes().to_vec(),
            });
        }

        /// Reads everything queued: rows as (k, ts), and the marks.
        fn read(&mut self, rows_max: usize) -> (Vec<(i64, i64)>, Vec<i64>) {
            let mut rows = Vec::new();
            let mut marks = Vec::new();
            loop {
                let mut scratch = Vec::new();
                let bad = &mut self.bad;
                let batch = self
                    .reader
                    .next_batch(
                        2,
                        rows_max,
                        &mut scratch,
                        (&mut self.rows, &mut self.malformed),
                        &mut |b| {
                            bad.push((b.conn, b.line, b.reason.clone(), b.bytes.to_vec()));
                            Ok(())
                        },
                    )
                    .unwrap();
                for (_, row) in batch.rows() {
                    let int = |v: &Value| match v {
                        Value::Int(i) => *i,
                        other => panic!("{other:?}"),
                    };
                    rows.push((int(&row[0]), int(&row[1])));
                }
                marks.extend(batch.marks().iter().map(|m| m.watermark));
                self.logged.extend(self.reader.take_log());
                if self.reader.inbox.borrow().is_empty() {
                    return (rows, marks);
                }
            }
        }
    }

    #[test]
    fn the_watermark_is_the_minimum_over_open_connections() {
        let mut f = Fixture::new(LiveLimits::default());
        f.open(1);
        f.open(2);
        f.send(1, "1,100\n1,200\n");
        let (rows, marks) = f.read(100);
        assert_eq!(rows, vec![(1, 100), (1, 200)]);
        assert!(marks.is_empty(), "connection 2 has said nothing: {marks:?}");
        f.send(2, "2,150\n");
        let (_, marks) = f.read(100);
        assert_eq!(marks, vec![140], "min(190, 140)");
        // Closing 2 leaves 1 alone in the minimum.
        f.arrive(Arrival::Close { conn: 2 });
        let (_, marks) = f.read(100);
        assert_eq!(marks, vec![190]);
        // All closed: the largest reached; a new connection cannot pull
        // it back.
        f.arrive(Arrival::Close { conn: 1 });
        f.open(3);
        f.send(3, "3,50\n");
        let (rows, marks) = f.read(100);
        assert_eq!(rows, vec![(3, 50)]);
        assert!(marks.is_empty());
        assert_eq!(f.reader.watermark, 190);
    }

    #[test]
    fn an_idle_connection_leaves_the_minimum_until_it_speaks() {
        let mut f = Fixture::new(LiveLimits {
            idle_timeout_ms: 1000,
            ..LiveLimits::default()
        });
        f.open(1);
        f.open(2);
        f.send(1, "1,100\n");
        f.send(2, "2,500\n");
        assert_eq!(f.read(100).1, vec![90]);
        // 1 is silent for longer than the timeout; 2 speaks.
        f.clock.0.store(1001, Ordering::Relaxed);
        assert!(f.reader.ready(), "the watermark can move without any arrival");
        f.send(2, "2,600\n");
        // Both were idle when the read began (the largest reached, 490),
        // then 2's row made it the only active one.
        assert_eq!(f.read(100).1, vec![490, 590]);
        // 1 comes back with old rows: they are kept as rows (the
        // operators judge them late), the watermark does not go back.
        f.send(1, "1,120\n");
        let (rows, marks) = f.read(100);
        assert_eq!(rows, vec![(1, 120)]);
        assert!(marks.is_empty());
        assert_eq!(f.reader.watermark, 590);
    }

    #[test]
    fn a_record_from_the_future_moves_the_watermark_only_to_the_skew_bound() {
        let mut f = Fixture::new(LiveLimits {
            skew_ms: 1000,
            ..LiveLimits::default()
        });
        f.clock.0.store(10_000, Ordering::Relaxed);
        f.open(1);
        f.send(1, "1,9000\n1,99999999\n1,10500\n");
        let (rows, marks) = f.read(100);
        assert_eq!(rows.len(), 3, "the outlier is kept as a row");
        assert_eq!(marks, vec![8990, 10_990], "bounded at now + skew - delay");
        assert_eq!(f.reader.outliers, 1);
    }

    #[test]
    fn lines_split_across_arrivals_and_batches_are_whole() {
        let mut f = Fixture::new(LiveLimits::default());
        f.open(7);
        f.send(7, "1,1");
        f.send(7, "0\n2,20\r\n\n3,");
        f.send(7, "30\n4,40");
        f.arrive(Arrival::Close { conn: 7 });
        let (rows, _) = f.read(1);
        assert_eq!(rows, vec![(1, 10), (2, 20), (3, 30), (4, 40)]);
        let ib = f.reader.inbox.borrow();
        assert_eq!(ib.finished[&7].0, ConnCounts { rows: 4, malformed: 0 });
    }

    #[test]
    fn bad_and_long_lines_are_reported_with_connection_and_line() {
        let mut f = Fixture::new(LiveLimits {
            line_bytes_max: 8,
            ..LiveLimits::default()
        });
        f.open(1);
        f.send(1, "1,10\nnope\n123456789");
        f.send(1, "0123\n2,20\n");
        let (rows, _) = f.read(100);
        assert_eq!(rows, vec![(1, 10), (2, 20)]);
        assert_eq!((f.rows, f.malformed), (2, 2));
        assert_eq!(f.bad.len(), 2);
        assert_eq!((f.bad[0].0, f.bad[0].1, f.bad[0].3.as_slice()), (1, 2, &b"nope"[..]));
        assert_eq!((f.bad[1].1, f.bad[1].3.as_slice()), (3, &b"12345678"[..]));
        assert!(f.bad[1].2.contains("longer than 8 bytes"), "{}", f.bad[1].2);
    }

    #[test]
    fn an_arrival_is_covered_once_a_log_record_after_it_is_on_disk() {
        let mut f = Fixture::new(LiveLimits::default());
        f.open(1);
        f.send(1, "1,10\n");
        f.reader.inbox.borrow_mut().on_logged(100); // before the close was applied
        let close = f.arrive(Arrival::Close { conn: 1 });
        f.read(100);
        f.reader.inbox.borrow_mut().on_logged(200);
        let mut ib = f.reader.inbox.borrow_mut();
        ib.on_synced(199);
        assert!(!ib.covered(close), "its record is not on disk yet");
        ib.on_synced(200);
        assert_eq!(ib.logged.len(), 1, "superseded records are forgotten at each commit");
        assert!(ib.covered(close));
    }

    /// Logs what a reader applies, then replays the log into a fresh
    /// reader: the same rows and the same watermarks come out.
    #[test]
    fn a_replayed_log_gives_the_same_rows_and_watermarks() {
        let limits = LiveLimits {
            idle_timeout_ms: 50,
            ..LiveLimits::default()
        };
        let mut f = Fixture::new(limits);
        f.reader.enable_log();
        let mut expected = (Vec::new(), Vec::new());
        let mut step = |f: &mut Fixture, rows_max: usize| {
            let (rows, marks) = f.read(rows_max);
            expected.0.extend(rows);
            expected.1.extend(marks);
        };
        f.open(1);
        f.open(2);
        f.send(1, "1,100\n1,200\nbad\n1,3");
        f.send(2, "2,150\n");
        step(&mut f, 2);
        f.send(1, "00\n");
        f.clock.0.store(60, Ordering::Relaxed); // 2 goes idle
        step(&mut f, 100);
        f.arrive(Arrival::Close { conn: 1 });
        step(&mut f, 100);
        let logged = std::mem::take(&mut f.logged);
        assert!(logged.len() >= 4, "{logged:?}");
        assert!(!expected.1.is_empty());

        // A new reader, as after a restart: nothing arrives but the log.
        let mut g = Fixture::new(limits);
        g.clock.0.store(1_000_000, Ordering::Relaxed); // later, in wall time
        let total: usize = logged.len();
        // Through the WAL's encoding, as recovery reads it.
        let logged: Vec<LoggedBatch> = logged
            .iter()
            .map(|b| {
                let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap();
                laminar_persistence::from_archive::<LoggedBatch>(&bytes).unwrap()
            })
            .collect();
        g.reader.replay(logged);
        assert_eq!(g.reader.replaying(), total);
        let mut got = (Vec::new(), Vec::new());
        while g.reader.replaying() > 0 {
            let (rows, marks) = g.read(100);
            got.0.extend(rows);
            got.1.extend(marks);
        }
        assert_eq!(got, expected);
        assert_eq!((g.rows, g.malformed), (f.rows, f.malformed));
        assert!(g.reader.conns.is_empty(), "replayed connections are gone");
        assert_eq!(g.reader.inbox.borrow().next_conn, 3, "new connections get new ids");
    }

    #[test]
    fn a_failed_connection_leaves_nothing_behind() {
        let mut f = Fixture::new(LiveLimits::default());
        f.open(1);
        f.send(1, "1,10\n");
        {
            let mut ib = f.reader.inbox.borrow_mut();
            ib.push(Arrival::Close { conn: 1 });
            ib.unanswered.insert(1);
        }
        f.read(100);
        let ib = f.reader.inbox.borrow();
        assert!(ib.finished.is_empty() && ib.unanswered.is_empty());
        assert_eq!(ib.open, 0);
        assert!(f.reader.conns.is_empty());
    }

    #[test]
    fn a_full_inbox_refuses_nothing_but_closed_intake_refuses_all() {
        let f = Fixture::new(LiveLimits::default());
        f.open(1);
        f.reader.inbox.borrow_mut().close();
        assert!(f.reader.inbox.borrow_mut().push(Arrival::Close { conn: 1 }).is_none());
        assert!(!f.reader.inbox.borrow().drained(), "the open is still queued");
    }
}
