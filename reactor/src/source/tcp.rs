//! The tcp connector (`laminar serve`): connections feed an inbox
//! (`net::ingest`), the source turns the inbox into batches with
//! per-connection watermarks.
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

use fxhash::FxHashMap;
use laminar_exec::batch::{Batch, Op};
use laminar_exec::format::{Decoder, Framed, LineFramer};
use laminar_exec::plan::WatermarkSpec;
use laminar_exec::time::Clock;
use laminar_exec::types::Value;

pub use crate::net::ingest::{Arrival, ConnCounts, Inbox, LiveLimits};

use laminar_exec::plan::{SourceConnector, SourceNode};

use super::reader::{
    ConnState, Intake, LoggedBatch, MalformedRecord, ReadState, Reader, ReaderPosition, SourceState,
    MALFORMED_REPORTS_MAX,
};
use super::record::DeadLetter;
use crate::error::RunError;

/// Outliers (event times beyond the skew bound) logged per source; the
/// rest are only counted.
const OUTLIER_REPORTS_MAX: u64 = 10;

/// Bytes of arrivals one batch applies at most when logging, so that its
/// WAL record stays under the record limit (an arrival is at most
/// `READ_BYTES`, a peer name short).
pub const LOG_BATCH_BYTES_MAX: usize = 512 << 10;
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
        on_bad: &mut dyn FnMut(BadLine<'_>) -> Result<(), crate::error::RunError>,
    ) -> Result<Batch, crate::error::RunError> {
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
        on_bad: &mut dyn FnMut(BadLine<'_>) -> Result<(), crate::error::RunError>,
    ) -> Result<(), crate::error::RunError> {
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

/// Opens a tcp source on the shard that owns it: a reader over a new
/// inbox, and the task that accepts connections into it on `listener`
/// (taken by the shard through `Intake::take_accept_task`). `logged`:
/// what it applies goes to the shard's WAL.
pub(crate) fn open(
    node: &SourceNode,
    index: usize,
    listener: std::net::TcpListener,
    limits: LiveLimits,
    clock: Arc<dyn Clock>,
    logged: bool,
    resuming: bool,
) -> Result<TcpReader, RunError> {
    let SourceConnector::Tcp {
        format,
        delimiter,
        dead_letter,
        ..
    } = &node.connector
    else {
        unreachable!("the registry opens tcp sources only here");
    };
    let location = listener
        .local_addr()
        .map_or_else(|_| "tcp".to_string(), |a| format!("tcp {a}"));
    let decoder = node.decoder(*format, None, *delimiter).map_err(|e| RunError::Source {
        source_name: node.name.clone(),
        path: std::path::PathBuf::from(&location),
        reason: e.to_string(),
    })?;
    let dead_letter = dead_letter
        .as_deref()
        .map(|p| DeadLetter::open(p, resuming))
        .transpose()?;
    let inbox = Rc::new(RefCell::new(Inbox::default()));
    let mut reader = LiveReader::new(index, Rc::clone(&inbox), decoder, node.watermark, limits, clock);
    if logged {
        reader.enable_log();
    }
    let listener = glommio_listener(listener);
    let name = node.name.clone();
    Ok(TcpReader {
        reader: Box::new(reader),
        location,
        dead_letter,
        accept: Some(Box::pin(crate::net::ingest::accept_loop(listener, inbox, limits, name))),
    })
}

/// Takes a bound std listener onto this executor.
pub(crate) fn glommio_listener(listener: std::net::TcpListener) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is a listening TCP socket we own (taken out of the std
    // listener, which no longer closes it); the glommio listener takes
    // ownership of it.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}

/// The tcp connector's reader: `LiveReader` and what the source adds
/// around it (where it listens, its dead-letter file).
pub(crate) struct TcpReader {
    reader: Box<LiveReader>,
    location: String,
    dead_letter: Option<DeadLetter>,
    accept: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>,
}

impl Reader for TcpReader {
    fn capacity(&self, _rows_max: usize, _index_limit: u64) -> usize {
        0
    }

    fn read(
        &mut self,
        st: &mut ReadState,
        batch: &mut Batch,
        rows_max: usize,
        _index_limit: u64,
        on_malformed: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        let (name, location, dead_letter) = (&st.name, &self.location, &mut self.dead_letter);
        let mut seen = st.malformed;
        let mut on_bad = |bad: BadLine<'_>| {
            seen += 1;
            if seen <= MALFORMED_REPORTS_MAX {
                let at = format!("{location} connection {} from {}", bad.conn, bad.peer);
                on_malformed(MalformedRecord {
                    source: name,
                    location: &at,
                    line: bad.line,
                    reason: &bad.reason,
                });
            }
            match dead_letter {
                Some(d) => d.write(bad.bytes),
                None => Ok(()),
            }
        };
        *batch = self.reader.next_batch(
            st.width,
            rows_max,
            &mut st.scratch,
            (&mut st.rows, &mut st.malformed),
            &mut on_bad,
        )?;
        st.bytes_read = self.reader.bytes_read;
        Ok(())
    }

    fn watermark(&self) -> i64 {
        self.reader.watermark
    }

    fn bounded(&self) -> bool {
        false
    }

    fn ready(&self) -> bool {
        self.reader.ready()
    }

    fn position(&mut self, _st: &ReadState) -> Result<ReaderPosition, RunError> {
        let dl = self.dead_letter.as_mut().map(DeadLetter::committed_len).transpose()?;
        Ok(ReaderPosition {
            offset: self.reader.wal_lsn,
            line: 0,
            dead_letter_bytes: dl.unwrap_or(0),
            max_time: self.reader.max_seen,
            live_connections: self.reader.connection_states(),
            follow: None,
        })
    }

    fn resume(&mut self, _name: &str, state: &SourceState) -> Result<(), RunError> {
        self.reader
            .resume(state.offset, state.watermark, state.max_time, &state.live_connections);
        if let Some(d) = &mut self.dead_letter {
            d.cut_to(state.dead_letter_bytes)?;
        }
        Ok(())
    }

    fn dead_letter_path(&self) -> Option<&std::path::Path> {
        self.dead_letter.as_ref().map(|d| d.path.as_path())
    }

    fn intake(&mut self) -> Option<&mut dyn Intake> {
        Some(self)
    }

    fn intake_ref(&self) -> Option<&dyn Intake> {
        Some(self)
    }
}

impl Intake for TcpReader {
    fn inbox(&self) -> &Rc<RefCell<Inbox>> {
        &self.reader.inbox
    }

    fn wal_lsn(&self) -> u64 {
        self.reader.wal_lsn
    }

    fn set_wal_lsn(&mut self, lsn: u64) {
        self.reader.wal_lsn = lsn;
    }

    fn take_log(&mut self) -> Option<LoggedBatch> {
        self.reader.take_log()
    }

    fn replay(&mut self, batches: Vec<LoggedBatch>) {
        self.reader.replay(batches);
    }

    fn replaying(&self) -> usize {
        self.reader.replaying()
    }

    fn outliers(&self) -> u64 {
        self.reader.outliers
    }

    fn take_accept_task(&mut self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> {
        self.accept.take()
    }
}

#[cfg(test)]
mod tests;
