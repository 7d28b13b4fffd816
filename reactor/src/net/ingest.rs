//! The network side of live TCP sources (`laminar serve`): accept
//! connections, move their bytes into the source's `Inbox`, answer each
//! client once what it sent is durable, and push back when the inbox is
//! full. What the bytes mean (lines, rows, watermarks, the WAL) is the
//! tcp connector's part (`source::tcp`).
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
//!
//! **Fair service.** Each open connection may hold at most its share of
//! the inbox (`inbox_bytes_max / open connections`, at least one read's
//! worth) queued: a connection over its share stops reading until the
//! source has applied half of what it holds, whatever the others do. So
//! connections that push at once are read, and applied, in turn, a slow
//! one is not starved by a fast one, and the watermark, the minimum over
//! the open connections, moves for all of them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use fxhash::FxHashMap;

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

/// What a connection task hands to the source; also what the WAL holds
/// of what the source applied (an rkyv archive of `LoggedBatch`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Arrival {
    Open { conn: u64, peer: String },
    Bytes { conn: u64, bytes: Vec<u8> },
    Close { conn: u64 },
}

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
    pub(crate) queue: VecDeque<(u64, Arrival)>,
    pub(crate) front_offset: usize,
    /// Bytes of `Bytes` arrivals in the queue.
    pub(crate) bytes: usize,
    pub(crate) next_seq: u64,
    /// Every arrival with a smaller sequence number is applied.
    pub(crate) applied_seq: u64,
    /// Intake stopped (shutdown): arrivals are refused.
    pub(crate) closed: bool,
    pub(crate) next_conn: u64,
    pub(crate) open: usize,
    /// Connections whose `Close` is applied, waiting for their
    /// acknowledgement: their counts and the sequence of the `Close`.
    pub(crate) finished: FxHashMap<u64, (ConnCounts, u64)>,
    /// Connections that ended and wait for the log to hold them.
    pub(crate) awaiting_ack: usize,
    /// Connections that failed (their client gets no answer): nothing is
    /// kept for them when their `Close` is applied.
    pub(crate) unanswered: fxhash::FxHashSet<u64>,
    /// Logged batches: (`applied_seq` after the batch, the LSN just past
    /// its WAL record), oldest first.
    pub(crate) logged: VecDeque<(u64, u64)>,
    /// Everything before this LSN of the shard's WAL is on disk.
    pub(crate) synced_lsn: u64,
    /// Bytes of `Bytes` arrivals in the queue, per connection (those
    /// with any).
    pub(crate) conn_bytes: FxHashMap<u64, usize>,
    /// Connections waiting for room (backpressure), and how many times
    /// one had to.
    pub(crate) room_waiters: Vec<(u64, Rc<Signal>)>,
    pub(crate) backpressure_waits: u64,
    /// Time connections spent waiting for room, summed over them.
    pub(crate) backpressure: Duration,
    /// Finished connections waiting for the log to reach the disk.
    pub(crate) ack_waiters: Vec<Rc<Signal>>,
    /// Wakes the source loop.
    pub(crate) wake: Option<Rc<Signal>>,
}

impl Inbox {
    /// Sets the signal that wakes the source loop on arrivals.
    pub fn set_wake(&mut self, wake: Rc<Signal>) {
        self.wake = Some(wake);
    }

    /// Queues an arrival; false once intake has stopped.
    pub(crate) fn push(&mut self, arrival: Arrival) -> Option<u64> {
        if self.closed {
            return None;
        }
        if let Arrival::Bytes { conn, bytes } = &arrival {
            self.bytes += bytes.len();
            *self.conn_bytes.entry(*conn).or_default() += bytes.len();
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
        for (_, w) in self.room_waiters.drain(..) {
            w.notify();
        }
    }

    /// The most bytes one connection may hold queued: its share of the
    /// inbox, at least one read.
    fn share(&self, inbox_bytes_max: usize) -> usize {
        (inbox_bytes_max / self.open.max(1)).max(READ_BYTES)
    }

    /// Whether connection `conn` must wait before reading more: the inbox
    /// is full, or the connection holds its share.
    pub(crate) fn must_wait(&self, conn: u64, inbox_bytes_max: usize) -> bool {
        !self.closed
            && (self.bytes >= inbox_bytes_max
                || self.conn_bytes.get(&conn).copied().unwrap_or(0) >= self.share(inbox_bytes_max))
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

    /// Time connections spent not reading their sockets for want of
    /// room, summed over the connections.
    pub fn backpressure_time(&self) -> Duration {
        self.backpressure
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
    pub(crate) fn forget_superseded(&mut self) {
        while self.logged.len() >= 2 && self.logged[1].1 <= self.synced_lsn {
            self.logged.pop_front();
        }
    }

    /// Whether the arrival `seq` is applied and its WAL record on disk;
    /// forgets logged batches that a later synced one supersedes.
    pub(crate) fn covered(&mut self, seq: u64) -> bool {
        self.forget_superseded();
        self.logged
            .iter()
            .any(|&(applied, lsn_end)| lsn_end <= self.synced_lsn && applied > seq)
    }

    pub(crate) fn pop_front(&mut self) {
        let (seq, arrival) = self.queue.pop_front().expect("an arrival to pop");
        if let Arrival::Bytes { conn, bytes } = &arrival {
            self.bytes -= bytes.len();
            let held = self.conn_bytes.get_mut(conn).expect("a connection's bytes are counted");
            *held -= bytes.len();
            if *held == 0 {
                self.conn_bytes.remove(conn);
            }
        }
        self.front_offset = 0;
        self.applied_seq = seq + 1;
    }

    /// Wakes the connections that may read again: the inbox is under
    /// half full and the connection holds under half its share (or
    /// nothing is queued at all).
    pub(crate) fn notify_room(&mut self, inbox_bytes_max: usize) {
        let half_share = self.share(inbox_bytes_max) / 2;
        let (bytes, empty) = (self.bytes, self.queue.is_empty());
        let conn_bytes = &self.conn_bytes;
        self.room_waiters.retain(|(conn, w)| {
            let room =
                empty || (bytes < inbox_bytes_max / 2 && conn_bytes.get(conn).copied().unwrap_or(0) < half_share);
            if room {
                w.notify();
            }
            !room
        });
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
        // Backpressure: a full inbox, or this connection's full share of
        // it, is not read into; the socket's buffers fill and TCP slows
        // the client.
        while {
            let mut ib = inbox.borrow_mut();
            let wait = ib.must_wait(conn, limits.inbox_bytes_max);
            if wait {
                ib.room_waiters.push((conn, Rc::clone(&room)));
                ib.backpressure_waits += 1;
            }
            wait
        } {
            let started = std::time::Instant::now();
            room.wait().await;
            inbox.borrow_mut().backpressure += started.elapsed();
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
