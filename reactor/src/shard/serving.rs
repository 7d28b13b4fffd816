//! A shard's housekeeping, on the main queue beside the event path: the
//! watchdog (heartbeat, nudges, channel rescue, checkpoint requests for a
//! shard whose sources are done, metrics publication), its part in
//! `laminar serve`'s stop, and the processing-time ticker of `EMIT EVERY`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::TaskQueueHandle;

use super::core::ShardCore;
use super::support::check_abort;
use crate::control::Control;
use crate::error::RunError;
use crate::mesh::{ChannelProbe, Side, Signal};
use crate::net::ingest::Inbox;
use crate::net::subscribe::Hub;
use crate::source::Source;

/// How often a shard's watchdog ticks: heartbeat, nudge, channel rescue.
const MESH_WATCHDOG_INTERVAL: Duration = Duration::from_millis(5);

/// A shard's part in `laminar serve`'s stop: close intake, report when
/// its live sources are drained, and when every finished connection has
/// its answer after the final checkpoint (see `runner`).
pub(super) struct Serving {
    pub inboxes: Vec<(usize, Rc<RefCell<Inbox>>)>,
    pub hubs: Vec<(usize, Rc<RefCell<Hub>>)>,
    pub accept_tasks: Rc<RefCell<Vec<glommio::Task<()>>>>,
    closed: bool,
    drained: bool,
    ready: bool,
    /// When this shard saw the final checkpoint complete.
    final_seen_at: Option<std::time::Instant>,
}

/// How long a stop waits, after the final checkpoint, for subscribers to
/// take what they were sent; one that reads slower than this loses the
/// rest (a live feed: the file sinks are the record).
const SUBSCRIBER_DRAIN_WAIT: Duration = Duration::from_secs(2);

impl Serving {
    fn step(&mut self, progress: &Control) {
        if !self.closed && progress.stop.intake_stopped.load(Ordering::Acquire) {
            self.closed = true;
            // Dropping the accept tasks closes the listeners.
            self.accept_tasks.borrow_mut().clear();
            for (_, inbox) in &self.inboxes {
                inbox.borrow_mut().close();
            }
        }
        if self.closed && !self.drained && self.inboxes.iter().all(|(_, b)| b.borrow().drained()) {
            self.drained = true;
            progress.stop.drained.fetch_add(1, Ordering::AcqRel);
        }
        let final_epoch = progress.epochs.final_.load(Ordering::Acquire);
        if final_epoch == 0 || progress.epochs.completed.load(Ordering::Acquire) < final_epoch {
            return;
        }
        let since = *self.final_seen_at.get_or_insert_with(std::time::Instant::now);
        let subscribers_done =
            self.hubs.iter().all(|(_, h)| h.borrow().pending_bytes() == 0) || since.elapsed() >= SUBSCRIBER_DRAIN_WAIT;
        if self.drained
            && !self.ready
            && subscribers_done
            && self.inboxes.iter().all(|(_, b)| b.borrow().awaiting_ack() == 0)
        {
            self.ready = true;
            progress.stop.ready_to_stop.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Copies a source's counts into the shared counters (`laminar serve`'s
/// metrics). A served source is never split (checkpoints are on), so its
/// counts are this shard's alone and include a resumed run's.
pub(super) fn publish_source(counters: &crate::metrics::SourceCounters, s: &Source) {
    debug_assert!(!s.spread());
    counters.rows.store(s.rows(), Ordering::Relaxed);
    counters.malformed.store(s.malformed(), Ordering::Relaxed);
    counters.bytes.store(s.bytes_read(), Ordering::Relaxed);
    counters.watermark.fetch_max(s.watermark(), Ordering::Relaxed);
    counters
        .outliers
        .store(s.intake_ref().map_or(0, |i| i.outliers()), Ordering::Relaxed);
}

/// Copies this shard's node, sink and shard figures into the shared
/// counters (see `metrics`).
fn publish_metrics(id: usize, core: &ShardCore, serving: &Serving, progress: &Control) {
    let m = &progress.metrics;
    for (node, counters) in core.nodes.iter().zip(&m.nodes) {
        let om = node.operator().metrics();
        counters.rows_in[id].store(om.rows_in, Ordering::Relaxed);
        counters.rows_out[id].store(om.rows_out, Ordering::Relaxed);
        counters.late_dropped[id].store(om.late_rows_dropped, Ordering::Relaxed);
    }
    for (sink, counters) in core.sinks.iter().zip(&m.sinks) {
        counters.rows.store(sink.rows, Ordering::Relaxed);
    }
    for (k, hub) in &serving.hubs {
        let hub = hub.borrow();
        m.sinks[*k]
            .subscribers
            .store(hub.subscribers() as u64, Ordering::Relaxed);
        m.sinks[*k].subscribers_dropped.store(hub.dropped, Ordering::Relaxed);
    }
    for (i, inbox) in &serving.inboxes {
        let inbox = inbox.borrow();
        let counters = &m.sources[*i];
        counters
            .connections
            .store(inbox.open_connections() as u64, Ordering::Relaxed);
        counters
            .inbox_bytes
            .store(inbox.queued_bytes() as u64, Ordering::Relaxed);
        counters
            .backpressure_waits
            .store(inbox.backpressure_waits(), Ordering::Relaxed);
        counters.backpressure_ns.store(
            u64::try_from(inbox.backpressure_time().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
    let shard = &m.shards[id];
    shard.busy_ns.store(
        u64::try_from(core.busy.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    shard.queue_depth.store(core.outbox_len.get() as u64, Ordering::Relaxed);
    shard.held_bytes.store(core.held_bytes() as u64, Ordering::Relaxed);
    shard
        .held_bytes_peak
        .store(core.held_bytes_peak as u64, Ordering::Relaxed);
    shard.held_back_ns.store(
        u64::try_from(core.held_back.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// What the watchdog task needs.
pub(super) struct Watchdog {
    pub id: usize,
    pub core: Rc<RefCell<ShardCore>>,
    pub control: Arc<Control>,
    pub task_error: Rc<RefCell<Option<RunError>>>,
    pub progressed: Rc<Signal>,
    pub outbox_room: Rc<Signal>,
    /// This shard's ends of the mesh channels.
    pub probes: Vec<(Arc<dyn ChannelProbe>, Side)>,
    /// Metrics have a reader (`laminar serve`).
    pub metrics_read: bool,
    pub serving: Serving,
}

impl Watchdog {
    /// Starts the watchdog on `queue`; returns it and the count of channel
    /// ends it had to wake.
    ///
    /// Glommio's cross-executor wake was seen to lose a wakeup in very
    /// rare cases (a receiver parked with a message queued), so every
    /// `MESH_WATCHDOG_INTERVAL` each shard wakes its own stuck channel
    /// sides (a wake from the shard's own thread takes glommio's local
    /// path). It also carries a peer's failure (the abort flag) to this
    /// shard's waits. Every shard has one, also a run of one shard: its
    /// heartbeat is what the kicker watches (an executor can sleep
    /// through its timers with or without a mesh).
    pub fn spawn(self, queue: TaskQueueHandle) -> (glommio::Task<()>, Rc<std::cell::Cell<u64>>) {
        let rescued = Rc::new(std::cell::Cell::new(0u64));
        let counted = Rc::clone(&rescued);
        let Watchdog {
            id,
            core,
            control,
            task_error,
            progressed,
            outbox_room,
            probes,
            metrics_read,
            mut serving,
        } = self;
        let task = glommio::spawn_local_into(
            async move {
                loop {
                    glommio::timer::sleep(MESH_WATCHDOG_INTERVAL).await;
                    let beat = control.liveness.heartbeats[id].fetch_add(1, Ordering::Relaxed);
                    serving.step(&control);
                    if metrics_read && beat % crate::metrics::PUBLISH_EVERY_BEATS == 0 {
                        publish_metrics(id, &core.borrow(), &serving, &control);
                        let channels: usize = probes
                            .iter()
                            .filter(|(_, side)| *side == Side::Sender)
                            .map(|(p, _)| p.bytes())
                            .sum();
                        control.metrics.shards[id]
                            .mesh_bytes
                            .store((core.borrow().outbox_bytes.get() + channels) as u64, Ordering::Relaxed);
                    }
                    // A checkpoint request reaches a shard whose sources
                    // are done here (the source loop sees its own).
                    let requested = control.epochs.requested.load(Ordering::Acquire);
                    if let Err(e) = core.borrow_mut().on_checkpoint_request(requested) {
                        control.run.set_abort();
                        task_error.borrow_mut().get_or_insert(e);
                    }
                    // The main task drains the inbound channels when it
                    // wakes: a periodic nudge bounds any stall at a round.
                    progressed.notify();
                    // And the source loop, which may wait for slower
                    // sources or a token. These nudges also carry another
                    // shard's failure (the abort flag) to this shard's
                    // waits; its exit then closes its channels, which wakes
                    // its peers' waits in turn.
                    outbox_room.notify();
                    for (p, side) in &probes {
                        if p.rescue(*side) {
                            tracing::trace!(side = ?side, channel = %p.describe(), "watchdog rescue");
                            rescued.set(rescued.get() + 1);
                        }
                    }
                }
            },
            queue,
        )
        .expect("the main queue exists");
        (task, counted)
    }
}

/// Processing-time ticks for `EMIT EVERY`, on the event queue: a tick's
/// rows travel the event path like any other. It ends with the shard's
/// nodes (at the end of input every window has flushed anyway). None
/// when no node here wants ticks.
pub(super) fn spawn_ticker(
    core: &Rc<RefCell<ShardCore>>,
    control: &Arc<Control>,
    task_error: &Rc<RefCell<Option<RunError>>>,
    clock: Arc<dyn laminar_exec::time::Clock>,
    queue: TaskQueueHandle,
) -> Option<glommio::Task<()>> {
    let interval = core.borrow().tick_interval()?;
    let core = Rc::clone(core);
    let control = Arc::clone(control);
    let task_error = Rc::clone(task_error);
    let task = glommio::spawn_local_into(
        async move {
            while !core.borrow().nodes_complete() {
                glommio::timer::sleep(interval).await;
                let ticked = check_abort(&control).and_then(|()| core.borrow_mut().tick(clock.now_ms()));
                if let Err(e) = ticked {
                    control.run.set_abort();
                    if !matches!(e, RunError::Aborted) {
                        task_error.borrow_mut().get_or_insert(e);
                    }
                    break;
                }
            }
        },
        queue,
    )
    .expect("the event queue exists");
    Some(task)
}

/// The serving state of a shard's sources and sink hubs.
pub(super) fn serving(
    sources: &[(usize, Source)],
    hubs: Vec<(usize, Rc<RefCell<Hub>>)>,
    accept_tasks: &Rc<RefCell<Vec<glommio::Task<()>>>>,
) -> Serving {
    Serving {
        inboxes: sources
            .iter()
            .filter_map(|(i, s)| Some((*i, Rc::clone(s.intake_ref()?.inbox()))))
            .collect(),
        hubs,
        accept_tasks: Rc::clone(accept_tasks),
        closed: false,
        drained: false,
        ready: false,
        final_seen_at: None,
    }
}
