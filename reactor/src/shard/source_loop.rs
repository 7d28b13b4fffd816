//! The source loop of a shard, on the event queue with the operators: it
//! picks the source to read next, reads a batch and delivers it through
//! the DAG, and places checkpoint barriers after what was read.
//!
//! Watermark-aligned reading: always the open source furthest behind in
//! event time, so that sources sharing a shard advance together and joins
//! and windows over several of them hold little state (reading one source
//! to its end first would buffer all of it in a join). Across shards the
//! slowest source anywhere sets the pace: a source that reads alone and
//! ends by itself waits while it is more than `SOURCE_DRIFT_MS_MAX` of
//! event time ahead (`Control::alignment`).
//!
//! It knows no connector: it drives `Source` and the capabilities a
//! reader offers (`Handoff` tokens, `Intake` with its WAL).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use laminar_exec::plan::Input;

use super::core::ShardCore;
use super::support::{check_abort, yield_if_preempted, ShardEvent};
use super::wal::wal_commit;
use crate::control::Control;
use crate::error::RunError;
use crate::mesh::{MeshReceiver, Signal};
use crate::pace::{Pace, PaceStep};
use crate::source::{Handoff, Intake, MalformedRecord, Source};

use super::message::MeshMsg;

/// How far (event time) a source may read ahead of the slowest source of
/// the run before it waits: bounds join and window state when sources on
/// different shards read at different speeds.
pub const SOURCE_DRIFT_MS_MAX: i64 = 1_000;

/// A paced source that must wait longer than this for its next event
/// sleeps on a timer (waking a little early); a shorter wait spins.
const PACE_SLEEP_NS_MIN: u64 = 200_000;

/// What the source loop hands back when its sources are done.
pub(super) struct SourcesDone {
    pub sources: Vec<(usize, Source)>,
    /// Paced runs: events read over `BEHIND_SCHEDULE_NS` late.
    pub behind_schedule: u64,
    /// Paced runs: when (ns after the start) everything was read.
    pub read_ns: u64,
    /// Open-loop runs: how long each event waited, after its intended
    /// send time, to be read (see `pace::record_read_delays`).
    pub read_delay: Option<hdrhistogram::Histogram<u64>>,
}

/// The source loop's state.
pub(super) struct SourceLoop {
    pub id: usize,
    pub sources: Vec<(usize, Source)>,
    pub core: Rc<RefCell<ShardCore>>,
    pub control: Arc<Control>,
    pub events: mpsc::Sender<ShardEvent>,
    pub outbox_len: Rc<Cell<usize>>,
    /// Wakes the loop: room in the outboxes, a token, an arrival, the
    /// watchdog's nudge.
    pub wake: Rc<Signal>,
    pub wal: Option<laminar_persistence::wal::WalWriter>,
    pub batch_rows: usize,
    pub outbox_max: usize,
    pub has_peers: bool,
    pub pace: Option<Pace>,
    pub checkpoints: bool,
    /// See `Durability::every_rows`.
    pub every_rows: Option<u64>,
    /// The last checkpoint epoch whose barriers this loop placed.
    pub injected: u64,
    pub metrics_read: bool,
    /// A paced source spins between events; it takes the mesh's messages
    /// itself meanwhile, since the receiver tasks' wakes from other cores
    /// are only seen when the executor polls (up to the 1 ms preemption
    /// slice later: a multi-shard bench showed p99 1.1 ms until this).
    pub inbound: Vec<Option<Rc<MeshReceiver<MeshMsg>>>>,
    /// The sources were told that intake stopped (`Source::close`).
    pub intake_closed: bool,
    /// See `ShardConfig::held_bytes_max`.
    pub held_bytes_max: usize,
    /// See `ShardConfig::mesh_bytes_max`; what the outboxes weigh, and
    /// the channels this shard sends on.
    pub mesh_bytes_max: usize,
    pub outbox_bytes: Rc<Cell<usize>>,
    pub outbound: Vec<Arc<dyn crate::mesh::ChannelProbe>>,
}

/// Counters of one run of the loop.
#[derive(Default)]
struct Tally {
    rows_at_request: u64,
    behind_schedule: u64,
    read_ns: u64,
    /// Time the sources waited for a token or a peer's input (nothing
    /// could be read), and for room in the outboxes.
    waited_for_input: Duration,
    waited_for_room: Duration,
    bytes_seen: Vec<u64>,
    read_delay: Option<hdrhistogram::Histogram<u64>>,
}

/// What the loop does next.
enum Step {
    Read(usize),
    /// Go round again.
    Again,
    Finished,
}

impl SourceLoop {
    pub async fn run(mut self) -> Result<SourcesDone, RunError> {
        let mut tally = Tally {
            bytes_seen: vec![0; self.sources.len()],
            read_delay: self
                .pace
                .and_then(|p| p.rate_per_sec)
                .map(|_| crate::pace::latency_histogram()),
            ..Tally::default()
        };
        if self.pace.is_some() {
            for (_, s) in &mut self.sources {
                s.set_end_apart();
            }
        }
        for (i, s) in &self.sources {
            // Nothing waits for a source that does not take part in the
            // alignment (an unbounded one may be silent for hours).
            let w = &self.control.alignment.watermarks[*i];
            if !s.has_watermark() || s.is_done() || !s.bounded() {
                w.store(i64::MAX, Ordering::Relaxed);
            } else if s.watermark() > i64::MIN {
                // Resumed from a checkpoint: where it stands, so no
                // source waits for this one to catch up.
                w.store(s.watermark(), Ordering::Relaxed);
            }
        }
        let events = self.events.clone();
        let mut report = |m: MalformedRecord<'_>| {
            let _ = events.send(ShardEvent::Malformed {
                source: m.source.to_string(),
                location: m.location.to_string(),
                line: m.line,
                reason: m.reason.to_string(),
            });
        };
        loop {
            if self.every_rows_wait(&mut tally).await? {
                continue;
            }
            if self.place_barriers()? && self.every_rows.is_some() {
                // Read on only once this checkpoint is complete.
                continue;
            }
            let k = match self.pick(&mut tally).await? {
                Step::Read(k) => k,
                Step::Again => continue,
                Step::Finished => break,
            };
            check_abort(&self.control)?;
            if self.take_token(k, &mut report)? {
                // Let the sender tasks take the token (and any claim) to
                // the peer now: a peer waits for it.
                if self.has_peers {
                    futures_lite::future::yield_now().await;
                }
                continue;
            }
            if self.held_back(k, &mut tally).await {
                continue;
            }
            self.read(k, &mut tally, &mut report).await?;
        }
        if self.checkpoints {
            let positions = self.positions()?;
            self.core.borrow_mut().sources_finished(positions)?;
        }
        // Where a shard's sources stood still: the first figure to look
        // at when one shard of a run is less busy than another.
        tracing::debug!(
            shard = self.id,
            waited_for_input_ms = tally.waited_for_input.as_millis() as u64,
            waited_for_room_ms = tally.waited_for_room.as_millis() as u64,
            "sources done"
        );
        Ok(SourcesDone {
            sources: self.sources,
            behind_schedule: tally.behind_schedule,
            read_ns: tally.read_ns,
            read_delay: tally.read_delay,
        })
    }

    /// Under `Durability::every_rows`: requests a checkpoint every that
    /// many rows, and reads nothing more while one is in flight (so
    /// positions are deterministic). True: wait and go round again.
    async fn every_rows_wait(&mut self, tally: &mut Tally) -> Result<bool, RunError> {
        let Some(every) = self.every_rows else {
            return Ok(false);
        };
        let epochs = &self.control.epochs;
        let rows: u64 = self.sources.iter().map(|(_, s)| s.rows() + s.malformed()).sum();
        if rows >= tally.rows_at_request + every {
            // Unless one is in flight (another shard's): then again once
            // that one is complete.
            let completed = epochs.completed.load(Ordering::Acquire);
            if epochs
                .requested
                .compare_exchange(completed, completed + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tally.rows_at_request = rows;
            }
        }
        let requested = epochs.requested.load(Ordering::Acquire);
        if self.injected == requested && epochs.completed.load(Ordering::Acquire) < requested {
            check_abort(&self.control)?;
            self.wake.wait().await;
            return Ok(true);
        }
        Ok(false)
    }

    /// A checkpoint requested: barriers after what was read. True when it
    /// placed them.
    fn place_barriers(&mut self) -> Result<bool, RunError> {
        let requested = self.control.epochs.requested.load(Ordering::Acquire);
        // Not while a source replays its WAL: the barrier's log position
        // must follow everything the state holds.
        let replaying = self.sources.iter().any(|(_, s)| s.replaying());
        if !self.checkpoints || requested <= self.injected || replaying {
            return Ok(false);
        }
        self.injected = requested;
        if let Some(w) = &self.wal {
            // Recovery replays the log from here.
            let lsn = w.next_lsn();
            for (_, s) in &mut self.sources {
                if let Some(intake) = s.intake() {
                    intake.set_wal_lsn(lsn);
                }
            }
        }
        let positions = self.positions()?;
        let live: Vec<usize> = self
            .sources
            .iter()
            .filter(|(_, s)| !s.is_done())
            .map(|(i, _)| *i)
            .collect();
        self.core.borrow_mut().inject_barrier(requested, positions, &live)?;
        Ok(true)
    }

    /// Where each of this shard's sources stands, for a checkpoint.
    fn positions(&mut self) -> Result<Vec<laminar_persistence::manifest::SourcePosition>, RunError> {
        let id = self.id;
        self.sources
            .iter_mut()
            .map(|(_, s)| crate::checkpoint::source_position(id, s))
            .collect()
    }

    /// The source to read next: the furthest behind in event time of
    /// those that can go on (a handoff reader waiting for a token that
    /// has not come cannot, unless it can decode ahead).
    async fn pick(&mut self, tally: &mut Tally) -> Result<Step, RunError> {
        if !self.intake_closed && self.control.stop.intake_stopped.load(Ordering::Acquire) {
            // `laminar serve` is stopping: a followed file reads no more
            // (a tcp source's inbox is closed by the watchdog).
            self.intake_closed = true;
            self.sources.iter_mut().for_each(|(_, s)| s.close());
        }
        let pick = {
            let c = self.core.borrow();
            let sources = &self.sources;
            (0..sources.len())
                .filter(|&k| !sources[k].1.is_done() && sources[k].1.ready())
                .filter(|&k| {
                    sources[k].1.handoff_ref().is_none_or(|h| {
                        h.wants_token()
                            .is_none_or(|chunk| c.split_tokens.contains_key(&(sources[k].0, chunk)))
                            || h.can_read_ahead()
                    })
                })
                .min_by_key(|&k| (sources[k].1.watermark(), k))
        };
        if let Some(k) = pick {
            return Ok(Step::Read(k));
        }
        // Done, unless a token still waits here for the peer that takes
        // its chunk (its claim wakes this).
        if self.sources.iter().all(|(_, s)| s.is_done()) && self.core.borrow().held_tokens.is_empty() {
            return Ok(Step::Finished);
        }
        check_abort(&self.control)?;
        // Nothing to read: make what was logged durable (its connections
        // wait for that to be answered).
        if let Some(w) = &mut self.wal {
            wal_commit(w, self.id, &self.sources, &self.control).await?;
        }
        // A token will come (its arrival, and the watchdog, wake this).
        let started = std::time::Instant::now();
        self.wake.wait().await;
        tally.waited_for_input += started.elapsed();
        Ok(Step::Again)
    }

    /// A handoff reader's token first, if it has come: it lets the peers
    /// go on too. True when it took one.
    fn take_token(&mut self, k: usize, report: &mut dyn FnMut(MalformedRecord<'_>)) -> Result<bool, RunError> {
        let (i, source) = &mut self.sources[k];
        let token = source
            .handoff_ref()
            .and_then(Handoff::wants_token)
            .and_then(|chunk| self.core.borrow_mut().split_tokens.remove(&(*i, chunk)));
        let Some(prefix) = token else {
            return Ok(false);
        };
        if let Some((owner, next, prefix)) = source.accept_token(prefix, report)? {
            self.core.borrow_mut().pass_token(*i, next, prefix, owner);
        }
        Ok(true)
    }

    /// Whether source `k` must wait: ahead of the slowest source of the
    /// run (the watchdog's nudge re-checks), the outboxes and the mesh
    /// channels it sends on hold more than their bounds in messages or
    /// bytes (backpressure: wait for the sender tasks and the peers), or
    /// too many rows wait behind a checkpoint barrier for a slower shard's
    /// (it must catch up first; the barrier's alignment, or the watchdog,
    /// wakes this).
    async fn held_back(&mut self, k: usize, tally: &mut Tally) -> bool {
        let source = &self.sources[k].1;
        let slowest = self.control.alignment.slowest();
        if source.aligned() && source.watermark() > slowest.saturating_add(SOURCE_DRIFT_MS_MAX) {
            self.wake.wait().await;
            return true;
        }
        let held_bytes = {
            let mut c = self.core.borrow_mut();
            let held = c.held_bytes();
            c.held_bytes_peak = c.held_bytes_peak.max(held);
            held
        };
        let mesh_bytes = self.outbox_bytes.get() + self.outbound.iter().map(|c| c.bytes()).sum::<usize>();
        if self.outbox_len.get() > self.outbox_max
            || mesh_bytes > self.mesh_bytes_max
            || held_bytes > self.held_bytes_max
        {
            let started = std::time::Instant::now();
            self.wake.wait().await;
            let waited = started.elapsed();
            tally.waited_for_room += waited;
            self.core.borrow_mut().held_back += waited;
            return true;
        }
        false
    }

    /// Reads one batch of source `k` and delivers it.
    async fn read(
        &mut self,
        k: usize,
        tally: &mut Tally,
        report: &mut dyn FnMut(MalformedRecord<'_>),
    ) -> Result<(), RunError> {
        let before = self.sources[k].1.rows();
        // Paced (laminar bench): read only the events whose send time has
        // come; the batch carries its first one's.
        let first = self.sources[k].1.next_event_index();
        let (index_limit, origin_ns, behind_before, decided_ns) = match (self.pace, first) {
            (Some(p), Some(first)) => match p.step(first) {
                PaceStep::Wait(wait) => {
                    self.core.borrow_mut().drain_inbound(&self.inbound)?;
                    if wait > PACE_SLEEP_NS_MIN {
                        glommio::timer::sleep(Duration::from_nanos(wait - PACE_SLEEP_NS_MIN / 2)).await;
                    } else {
                        futures_lite::future::yield_now().await;
                    }
                    return Ok(());
                }
                PaceStep::Read {
                    index_limit,
                    origin_ns,
                    behind_before,
                    stop,
                    now_ns,
                } => {
                    if stop {
                        self.sources[k].1.stop();
                    }
                    (index_limit, origin_ns, behind_before, now_ns)
                }
            },
            _ => (u64::MAX, 0, None, 0),
        };
        let started = std::time::Instant::now();
        let (i, source) = &mut self.sources[k];
        let i = *i;
        let was_replaying = source.replaying();
        let mut batch = source.next_batch_until(self.batch_rows, index_limit, report)?;
        if let Some(chunk) = source.handoff().and_then(Handoff::take_claim) {
            self.core.borrow_mut().took_chunk(i, chunk);
        }
        if was_replaying && !source.replaying() {
            self.control.stop.replaying.fetch_sub(1, Ordering::AcqRel);
        }
        let logged = source.intake().and_then(Intake::take_log);
        if let (Some(w), Some(logged)) = (&mut self.wal, logged) {
            // Logged before its rows travel on; answered once the group
            // that holds it is on disk.
            let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&logged).map_err(|e| RunError::Encode {
                what: format!("a WAL record of source {}", source.name()),
                reason: e.to_string(),
            })?;
            w.append(self.injected, laminar_persistence::wal::RecordKind::Rows, &payload)
                .await?;
            if let Some(intake) = source.intake_ref() {
                intake.inbox().borrow_mut().on_logged(w.next_lsn());
            }
        }
        let rows = source.rows() - before;
        self.control.run.rows_in.fetch_add(rows, Ordering::Relaxed);
        if let (Some(behind), Some(first), Some(last)) = (behind_before, first, source.next_event_index()) {
            // The batch's events (of this source's kind) spread evenly
            // over indexes first..last; those before `behind` were due
            // over a millisecond ago.
            let span = (last - first).max(1);
            let late = behind.clamp(first, last) - first;
            tally.behind_schedule += rows * late / span;
            if let (Some(h), Some(p)) = (&mut tally.read_delay, self.pace) {
                let rate = p.rate_per_sec.expect("a read delay histogram only in open loop");
                crate::pace::record_read_delays(h, &p, rate, first, last, rows, decided_ns);
            }
        }
        self.control
            .run
            .bytes_read
            .fetch_add(source.bytes_read() - tally.bytes_seen[k], Ordering::Relaxed);
        tally.bytes_seen[k] = source.bytes_read();
        if self.metrics_read {
            super::serving::publish_source(&self.control.metrics.sources[i], source);
        }
        let published = if source.is_done() || !source.aligned() {
            i64::MAX
        } else {
            source.watermark()
        };
        self.control.alignment.watermarks[i].store(published, Ordering::Relaxed);
        if source.is_done() {
            self.control.alignment.reading.fetch_sub(1, Ordering::Relaxed);
        }
        // A batch of no rows is the end mark alone: what it flushes is
        // not a result of any event.
        batch.set_origin_ns(if batch.is_empty() { 0 } else { origin_ns });
        if let (Some(p), true) = (self.pace, source.is_done()) {
            // Read everything; what follows is the final flush.
            tally.read_ns = tally.read_ns.max(p.now_ns());
        }
        if batch.is_inert() {
            // A handoff reader decoded a chunk; its token decides. The
            // claim it sent goes out now, not after the chunks it may
            // decode next: without this yield a reader decoding ahead held
            // its peers' tokens and claims in the outbox for up to twelve
            // chunks, and the watchdog's 5 ms rounds set the pace.
            self.core.borrow_mut().busy += started.elapsed();
            if self.has_peers {
                futures_lite::future::yield_now().await;
            }
            return Ok(());
        }
        let delivered = self.core.borrow_mut().deliver(Input::Source(i), &batch);
        self.core.borrow_mut().busy += started.elapsed();
        delivered?;
        if let Some(w) = &mut self.wal {
            if w.commit_due(std::time::Instant::now()) {
                wal_commit(w, self.id, &self.sources, &self.control).await?;
            }
        }
        if self.has_peers {
            // Take what the peers sent: a receiver task woken from another
            // core runs only after the executor's next poll, which a busy
            // event queue reaches once per preemption slice (20 ms).
            self.core.borrow_mut().drain_inbound(&self.inbound)?;
            // Let this queue's mesh tasks run after every batch: glommio
            // preempts between queues, not between tasks of one queue, so
            // a busy source would otherwise hold back the receivers and
            // senders that share its queue.
            futures_lite::future::yield_now().await;
        } else {
            yield_if_preempted().await;
        }
        Ok(())
    }
}
