//! One shard: a glommio executor pinned to a core, running every node of
//! the plan over the rows it owns.
//!
//! Inside a shard everything is synchronous and single-threaded: a batch
//! is delivered depth-first through the DAG (`ShardCore::deliver`). Where
//! an edge is an exchange, the batch is partitioned; the part for this
//! shard continues at once, the others go to per-destination outboxes.
//! Sender tasks move outbox messages onto the bounded mesh channels (a
//! message merged with those already queued behind it for the same node
//! input or sink, so a backlog travels in full batches) and receiver tasks
//! feed arriving batches back into `deliver`.
//!
//! Processing never awaits a send, so two shards that send to each other
//! cannot deadlock; backpressure is applied where rows enter: a source
//! stops reading while its shard's outboxes hold more than
//! `outbox_messages_max` messages, and a full mesh channel stops the
//! sender task, so a slow consumer slows every source feeding it.
//!
//! Completion: when every node of a shard has seen the end-of-input
//! watermark, the shard sends `Done` to every peer after its last rows
//! (the channels are FIFO). A shard finishes when it is itself complete
//! and has every peer's `Done`; shard 0, which owns the sinks, has then
//! written every row. A channel that closes before its `Done` means the
//! peer failed, and the run stops.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fxhash::FxHashMap;
use glommio::channels::local_channel;
use glommio::{Latency, Shares};
use laminar_exec::batch::{Batch, WATERMARK_END};
use laminar_exec::operator::{Driven, OperatorMetrics};
use laminar_exec::operators::combine::Combiner;
use laminar_exec::plan::{Input, OperatorSpec, PhysicalPlan, SinkConnector, SourceConnector};
use laminar_exec::time::Clock;
use laminar_exec::types::Value;

use crate::checkpoint::{Align, Held, HeldQueue, Piece, ShardCheckpoint, ShardRestore, SinkAlign};
use crate::clock::SystemClock;
use crate::mesh::{MeshEnds, MeshReceiver, Signal, TryRecv};
use crate::pace::{Pace, PaceStep};
use crate::sink::Sink;
use crate::source::{MalformedRecord, Source};
use crate::split::{Prefix, SourceSplit};
use crate::topology::{partition, partition_combined, Placement, Topology};
use crate::RunError;

/// The knobs of the shard runtime, in one place, units in the names.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub shards: usize,
    /// Core of each shard (shard i runs on `cpus[i % cpus.len()]`).
    pub cpus: Vec<usize>,
    pub batch_rows: usize,
    /// Messages each mesh channel holds before the sender waits.
    pub channel_messages_max: usize,
    /// Outbox messages at which a shard stops reading its sources.
    pub outbox_messages_max: usize,
    /// Shares of the event queue (sources, operators, exchanges).
    pub event_shares: usize,
    /// Shares of the main queue (sink flushes and housekeeping).
    pub main_shares: usize,
    /// Preemption target of the event queue.
    pub event_latency_ms: u64,
    /// Memory glommio registers for io_uring, per executor.
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
    /// How long an idle executor polls before it parks. Parking costs a
    /// `membarrier` and the next cross-core wake an eventfd round trip
    /// (tens of microseconds on a VM); a shard that is about to get a
    /// message back from its peers should not pay that.
    pub spin_before_park: Duration,
    /// Processing time for `EMIT EVERY` ticks.
    pub clock: Arc<dyn Clock>,
    /// `laminar bench`: generator sources paced in real time, latency
    /// recorded at the sinks (see `pace`).
    pub pace: Option<Pace>,
    /// Checkpoints are taken (`laminar run --state-dir`): barriers flow
    /// and nodes align on them (see `checkpoint`).
    pub checkpoints: bool,
    /// See `Durability::every_rows`.
    pub checkpoint_every_rows: Option<u64>,
    /// See `Durability::fork_bytes_min`.
    pub snapshot_fork_bytes_min: Option<usize>,
    /// `laminar serve`: where the shards that own tcp sources keep their
    /// WALs (see `live`).
    pub wal_dir: Option<std::path::PathBuf>,
    /// File sinks write with `O_DIRECT` where the file system allows (see
    /// `direct`); only for bounded runs without checkpoints.
    pub direct_file_sinks: bool,
}

impl ShardConfig {
    pub fn new(shards: usize, cpus: Vec<usize>, batch_rows: usize) -> ShardConfig {
        assert!(shards >= 1 && !cpus.is_empty() && batch_rows >= 1);
        ShardConfig {
            shards,
            cpus,
            batch_rows,
            channel_messages_max: 64,
            outbox_messages_max: 256,
            event_shares: 1000,
            main_shares: 100,
            event_latency_ms: 1,
            io_memory_bytes: 512 << 10,
            ring_depth: 64,
            spin_before_park: if shards > 1 { SPIN_BEFORE_PARK } else { Duration::ZERO },
            clock: Arc::new(SystemClock::default()),
            pace: None,
            checkpoints: false,
            checkpoint_every_rows: None,
            snapshot_fork_bytes_min: None,
            wal_dir: None,
            direct_file_sinks: false,
        }
    }
}

/// `ShardConfig::spin_before_park` for multi-shard runs.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_micros(200);

/// What travels on the mesh.
pub enum MeshMsg {
    /// Rows (and marks) for input `input` of node `node`.
    Node { node: u32, input: u32, batch: Batch },
    /// Rows for a sink (sinks live on shard 0).
    Sink { sink: u32, batch: Batch },
    /// `rows` rows for a file or stdout sink, already encoded by the
    /// sender (so formatting is spread over the shards; see
    /// `ShardCore::encoders`).
    SinkEncoded { sink: u32, rows: u64, bytes: Vec<u8> },
    /// The prefix of chunk `chunk` of split source `source`, for the
    /// shard that reads that chunk (see `split`).
    SplitToken { source: u32, chunk: u32, prefix: Prefix },
    /// The sender took chunk `chunk` of split source `source`: whoever
    /// holds that chunk's token sends it on (see `ShardCore::held_tokens`).
    SplitClaim { source: u32, chunk: u32 },
    /// Checkpoint barrier `epoch` for input `input` of `node`, after the
    /// sender's rows before it.
    Barrier { node: u32, input: u32, epoch: u64 },
    /// Checkpoint barrier `epoch` for a sink (on shard 0).
    SinkBarrier { sink: u32, epoch: u64 },
    /// The sender has finished; nothing follows.
    Done,
}

/// Rows in one mesh message at most when outbox messages are coalesced.
const MERGED_ROWS_MAX: usize = 4096;
/// Bytes of encoded sink rows in one mesh message at most, likewise.
const MERGED_BYTES_MAX: usize = 1 << 20;

/// Appends `next` to `msg` when both carry rows for the same place and the
/// result stays under `MERGED_ROWS_MAX` rows; otherwise hands `next` back.
/// Messages are only ever merged with the one right before them, so the
/// order of rows and marks on the channel is unchanged.
fn merge(msg: &mut MeshMsg, next: MeshMsg) -> Option<MeshMsg> {
    if let (
        MeshMsg::SinkEncoded { sink, rows, bytes },
        MeshMsg::SinkEncoded {
            sink: s2,
            rows: r2,
            bytes: b2,
        },
    ) = (&mut *msg, &next)
    {
        if sink != s2 || bytes.len() + b2.len() > MERGED_BYTES_MAX {
            return Some(next);
        }
        bytes.extend_from_slice(b2);
        *rows += r2;
        return None;
    }
    let (into, from) = match (&mut *msg, &next) {
        (
            MeshMsg::Node { node, input, batch },
            MeshMsg::Node {
                node: n2,
                input: i2,
                batch: b2,
            },
        ) if node == n2 && input == i2 => (batch, b2),
        (MeshMsg::Sink { sink, batch }, MeshMsg::Sink { sink: s2, batch: b2 }) if sink == s2 => (batch, b2),
        _ => return Some(next),
    };
    // A combined input takes partial aggregates and rows, batch by batch,
    // but never in one batch.
    if into.len() + from.len() > MERGED_ROWS_MAX || !into.appends(from) {
        return Some(next);
    }
    into.append(from);
    None
}

/// Events a shard reports to the thread that started the run.
pub enum ShardEvent {
    Malformed {
        source: String,
        location: String,
        line: u64,
        reason: String,
    },
    Finished {
        shard: usize,
    },
    /// This shard's piece of a checkpoint (see `checkpoint`).
    Checkpoint(Piece),
}

/// Counters shared with the starting thread, for progress.
#[derive(Default)]
pub struct SharedProgress {
    pub rows_in: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Set when any shard fails: every shard stops.
    pub abort: AtomicBool,
    /// What each shard is doing (a `Phase` as u8), for stall reports.
    pub phase: Vec<AtomicU8>,
    /// Each shard's executor thread id (0 until it starts), for kicks.
    pub thread_ids: Vec<AtomicI32>,
    /// Each source's watermark (by plan index; `i64::MAX` once done or
    /// for a source without one): sources read ahead of the slowest by
    /// more than `SOURCE_DRIFT_MS_MAX` wait (see the source loop).
    pub source_watermarks: Vec<std::sync::atomic::AtomicI64>,
    /// Rounds of each shard's watchdog: a count that stops moving means
    /// the executor is not running (see `runner::kick_stalled`).
    pub heartbeats: Vec<AtomicU64>,
    /// The newest checkpoint epoch requested (by the coordinator, or by
    /// a shard under `Durability::every_rows`).
    pub checkpoint_requested: AtomicU64,
    /// The newest checkpoint whose manifest is durable.
    pub checkpoint_completed: AtomicU64,
    /// Source instances still reading, over all shards.
    pub sources_live: AtomicUsize,
    /// Live counters for `laminar serve`'s admin endpoint.
    pub metrics: crate::metrics::Metrics,
    /// `laminar serve`: the operator asked to stop (SIGTERM). The runner
    /// then stops intake, has every accepted record processed, takes a
    /// final checkpoint and stops the shards.
    pub shutdown: AtomicBool,
    /// Intake has stopped: live sources take no more arrivals.
    pub intake_stopped: AtomicBool,
    /// Shards whose live sources are drained since intake stopped.
    pub drained: AtomicUsize,
    /// The checkpoint that ends a stopping run (0: none yet).
    pub final_epoch: AtomicU64,
    /// Shards that answered their connections after the final checkpoint.
    pub ready_to_stop: AtomicUsize,
    /// Live sources still replaying their WAL (not ready before it ends).
    pub replaying: AtomicUsize,
}

impl SharedProgress {
    pub fn new(shards: usize, sources: usize) -> SharedProgress {
        SharedProgress::with_metrics(shards, sources, 0, 0)
    }

    /// With counters for the plan's nodes and sinks as well.
    pub fn with_metrics(shards: usize, sources: usize, nodes: usize, sinks: usize) -> SharedProgress {
        SharedProgress {
            metrics: crate::metrics::Metrics::new(shards, sources, nodes, sinks),
            source_watermarks: (0..sources)
                .map(|_| std::sync::atomic::AtomicI64::new(i64::MIN))
                .collect(),
            phase: (0..shards).map(|_| AtomicU8::new(Phase::Starting as u8)).collect(),
            thread_ids: (0..shards).map(|_| AtomicI32::new(0)).collect(),
            heartbeats: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            ..SharedProgress::default()
        }
    }
}

/// What a shard is doing, as reported when a run stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Reading = 1,
    /// Sources done; waiting for the end of input from its peers.
    Draining = 2,
    /// Sending what is left and waiting for its peers to close.
    Closing = 3,
    Flushing = 4,
    Finished = 5,
}

impl Phase {
    pub fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Starting,
            1 => Phase::Reading,
            2 => Phase::Draining,
            3 => Phase::Closing,
            4 => Phase::Flushing,
            _ => Phase::Finished,
        }
    }
}

fn set_phase(progress: &SharedProgress, id: usize, phase: Phase) {
    progress.phase[id].store(phase as u8, Ordering::Relaxed);
}

/// What a shard did.
#[derive(Debug, Default)]
pub struct ShardReport {
    pub sources: Vec<(usize, String, u64, u64)>,
    pub nodes: Vec<OperatorMetrics>,
    pub sinks: Vec<(usize, String, u64)>,
    /// Time spent processing (source batches, mesh messages, ticks).
    pub busy: Duration,
    /// Paced runs: latency of every row the sinks received (shard 0),
    /// and the events read later than `BEHIND_SCHEDULE_NS` after their
    /// intended send time.
    pub latency: Option<hdrhistogram::Histogram<u64>>,
    pub behind_schedule: u64,
    /// The furthest position its generators reached in the Nexmark stream.
    pub events_generated: u64,
    /// Paced runs: when (ns after the run's start) its sources were done.
    pub read_ns: u64,
    /// Restoring its nodes from a checkpoint.
    pub restore: Duration,
}

/// An operator failure of node `node`, named by its stream.
fn exec_error(plan: &PhysicalPlan, node: usize) -> impl FnOnce(laminar_exec::ExecError) -> RunError + '_ {
    move |source| RunError::Exec {
        stream: plan.nodes[node].name.clone(),
        source,
    }
}

struct ShardCore {
    id: usize,
    plan: Arc<PhysicalPlan>,
    topo: Arc<Topology>,
    nodes: Vec<Driven>,
    sinks: Vec<Option<Sink>>,
    outboxes: Vec<Option<local_channel::LocalSender<MeshMsg>>>,
    outbox_len: Rc<Cell<usize>>,
    done_received: usize,
    /// Whether each peer's `Done` has been received.
    done_from: Vec<bool>,
    key: Vec<Value>,
    /// The `LATE DATA TO` node of each node that has one.
    late_stream_of: Vec<Option<usize>>,
    /// Time spent processing so far.
    busy: Duration,
    /// Prefix tokens of split sources' chunks that arrived, by (source,
    /// chunk), until the source loop takes them.
    split_tokens: FxHashMap<(usize, usize), Prefix>,
    /// Tokens for chunks nobody had taken when they were made (chunks go
    /// to whichever reader asks first, see `FileSplit::take`), until the
    /// reader that takes one says so (`SplitClaim`).
    held_tokens: FxHashMap<(usize, usize), Prefix>,
    /// Per node: its combiner, for an aggregate whose input is combined
    /// before the exchange (`Topology::combine`).
    combiners: Vec<Option<Combiner>>,
    /// Wakes the source loop (a token came).
    source_wake: Option<Rc<Signal>>,
    /// Checkpoint alignment, when the run takes checkpoints.
    ckpt: Option<ShardCheckpoint>,
    /// On shards other than 0, per sink: the encoder rows for it are
    /// written with here, before they cross the mesh. Only in runs without
    /// checkpoints (a sink's alignment reads the rows' marks) or latency
    /// measurement (which reads their origin), and only for sinks that
    /// write encoded bytes.
    encoders: Vec<Option<Box<dyn laminar_exec::format::Encoder>>>,
    /// Bytes per row of the last batch encoded here.
    encoded_row_bytes: usize,
    /// Where pieces of checkpoints go (the coordinator).
    events: mpsc::Sender<ShardEvent>,
}

impl ShardCore {
    /// A token for chunk `chunk` of split source `source` is here.
    fn token_here(&mut self, source: usize, chunk: usize, prefix: Prefix) {
        let previous = self.split_tokens.insert((source, chunk), prefix);
        assert!(previous.is_none(), "one token per chunk");
        if let Some(wake) = &self.source_wake {
            wake.notify();
        }
    }

    /// Sends a chunk's token to the shard that took the chunk, or holds it
    /// until one does (`owner` None).
    fn pass_token(&mut self, source: usize, chunk: usize, prefix: Prefix, owner: Option<usize>) {
        match owner {
            Some(o) if o == self.id => self.token_here(source, chunk, prefix),
            Some(o) => self.send(
                o,
                MeshMsg::SplitToken {
                    source: source as u32,
                    chunk: chunk as u32,
                    prefix,
                },
            ),
            None => {
                let previous = self.held_tokens.insert((source, chunk), prefix);
                assert!(previous.is_none(), "one token per chunk");
            }
        }
    }

    /// This shard took a block of chunks of split source `source` starting
    /// at `chunk`: that chunk's token is here already, or the peer holding
    /// it is told (the block's later tokens stay on this shard).
    fn took_chunk(&mut self, source: usize, chunk: usize) {
        if let Some(prefix) = self.held_tokens.remove(&(source, chunk)) {
            self.token_here(source, chunk, prefix);
            return;
        }
        let me = self.id;
        for peer in (0..self.outboxes.len()).filter(|&p| p != me) {
            self.send(
                peer,
                MeshMsg::SplitClaim {
                    source: source as u32,
                    chunk: chunk as u32,
                },
            );
        }
    }

    fn send(&mut self, dest: usize, msg: MeshMsg) {
        let outbox = self.outboxes[dest].as_ref().expect("an outbox per peer");
        self.outbox_len.set(self.outbox_len.get() + 1);
        if outbox.try_send(msg).is_err() {
            // The sender task has gone: the run is being torn down.
            self.outbox_len.set(self.outbox_len.get() - 1);
        }
    }

    /// Feeds `batch` to input `input` of `node`, as sent by shard `sender`.
    fn feed(&mut self, node: usize, input: usize, sender: usize, batch: &Batch) -> Result<(), RunError> {
        let port = self.topo.ports[node][input].port_of(sender);
        let mut aligning = false;
        if let Some(ck) = &mut self.ckpt {
            let a = &mut ck.nodes[node];
            if a.blocked(port) {
                // Behind this port's barrier: after the snapshot.
                a.hold(input, sender, Held::Rows(batch.clone()));
                return Ok(());
            }
            aligning = a.waiting();
        }
        let mut out = Batch::new(self.plan.nodes[node].schema.len());
        out.set_origin_ns(batch.origin_ns());
        self.nodes[node]
            .push(port, batch, &mut out)
            .map_err(exec_error(&self.plan, node))?;
        if let Some(late_node) = self.late_stream_of[node] {
            // Before the node's own output, which carries the marks that
            // may end the late stream.
            if let Some(late) = self.nodes[node].take_late_rows() {
                let mut late_out = Batch::new(self.plan.nodes[late_node].schema.len());
                late_out.set_origin_ns(batch.origin_ns());
                self.nodes[late_node]
                    .push_side(&late, &mut late_out)
                    .map_err(exec_error(&self.plan, late_node))?;
                self.deliver(Input::Node(late_node), &late_out)?;
            }
        }
        if !out.is_inert() {
            self.deliver(Input::Node(node), &out)?;
        }
        if aligning {
            // This batch may have ended the last port the node waited for.
            self.try_align_node(node)?;
        }
        Ok(())
    }

    /// Barrier `epoch` arrived on input `input` of `node` from `sender`.
    fn barrier_to_node(&mut self, node: usize, input: usize, sender: usize, epoch: u64) -> Result<(), RunError> {
        let port = self.topo.ports[node][input].port_of(sender);
        let ck = self
            .ckpt
            .as_mut()
            .expect("barriers flow only when checkpoints are taken");
        let a = &mut ck.nodes[node];
        if a.blocked(port) {
            a.hold(input, sender, Held::Barrier(epoch));
            return Ok(());
        }
        a.arrive(port, epoch);
        self.try_align_node(node)
    }

    /// Aligns `node` on its next epoch if every port has delivered that
    /// barrier or ended: snapshot, barrier on, then what waited.
    fn try_align_node(&mut self, node: usize) -> Result<(), RunError> {
        let Some(ck) = &self.ckpt else { return Ok(()) };
        let driven = &self.nodes[node];
        let Some(next) = ck.nodes[node].ready(|port| driven.port_ended(port)) else {
            return Ok(());
        };
        let held = self.snapshot_node(node, next)?;
        self.deliver_barrier(Input::Node(node), next)?;
        for (input, sender, h) in held {
            match h {
                Held::Rows(batch) => self.feed(node, input, sender, &batch)?,
                Held::Barrier(epoch) => self.barrier_to_node(node, input, sender, epoch)?,
            }
        }
        self.try_report()
    }

    /// Snapshots `node` into checkpoint `epoch`'s piece and aligns it
    /// there; returns what waited behind its ports' barriers.
    fn snapshot_node(&mut self, node: usize, epoch: u64) -> Result<HeldQueue, RunError> {
        let snapshotting = std::time::Instant::now();
        let fork_bytes_min = self
            .ckpt
            .as_ref()
            .expect("snapshots only when checkpoints are taken")
            .fork_bytes_min;
        let driven = &self.nodes[node];
        let state_bytes = driven.state_bytes();
        let forked = match fork_bytes_min {
            Some(min) if state_bytes >= min => {
                crate::cow::fork_snapshot(&self.plan.nodes[node].name, || driven.checkpoint()?.bytes())
                    .inspect_err(|e| {
                        tracing::warn!(
                            shard = self.id,
                            node,
                            "cannot fork to snapshot {} MB of state, copying it instead: {e}",
                            state_bytes >> 20
                        )
                    })
                    .ok()
            }
            _ => None,
        };
        let (snapshot, how) = match forked {
            Some(s) => (s, "forked"),
            None => (
                self.nodes[node].checkpoint().map_err(exec_error(&self.plan, node))?,
                "copied",
            ),
        };
        tracing::debug!(
            shard = self.id,
            node,
            epoch,
            state_mb = state_bytes >> 20,
            ms = snapshotting.elapsed().as_secs_f64() * 1e3,
            "node snapshot {how}"
        );
        let ck = self.ckpt.as_mut().expect("snapshots only when checkpoints are taken");
        ck.start(epoch);
        ck.parts.push((node as u32, snapshot));
        Ok(ck.nodes[node].align(epoch))
    }

    /// Writes out what sink `sink` buffered, notes its committed position
    /// as checkpoint `epoch`'s, and aligns it there; returns what waited.
    fn commit_sink(&mut self, sink: usize, epoch: u64) -> Result<HeldQueue, RunError> {
        let target = self.sinks[sink].as_mut().expect("sinks live on shard 0");
        let (bytes, rows) = target.commit_position()?;
        let ck = self.ckpt.as_mut().expect("commits only when checkpoints are taken");
        ck.start(epoch);
        ck.sink_positions[sink] = Some(laminar_persistence::manifest::SinkPosition {
            name: target.name.clone(),
            bytes,
            rows,
            ended_senders: ck.sinks[sink].ended_senders(),
        });
        Ok(ck.sinks[sink].align.align(epoch))
    }

    /// Sends barrier `epoch` to everything that reads `from`, on the paths
    /// its rows and marks take (see `topology::partition`).
    fn deliver_barrier(&mut self, from: Input, epoch: u64) -> Result<(), RunError> {
        let topo = Arc::clone(&self.topo);
        for &sink in topo.sink_consumers(from) {
            if self.id == 0 {
                self.sink_barrier(sink, 0, epoch)?;
            } else {
                self.send(
                    0,
                    MeshMsg::SinkBarrier {
                        sink: sink as u32,
                        epoch,
                    },
                );
            }
        }
        for &(node, input) in topo.node_consumers(from) {
            let dests: Vec<usize> = match &topo.input_placement[node][input] {
                Placement::Local => vec![self.id],
                Placement::Single => vec![0],
                Placement::Keyed(_) => (0..topo.shards).collect(),
            };
            for dest in dests {
                if dest == self.id {
                    self.barrier_to_node(node, input, self.id, epoch)?;
                } else {
                    self.send(
                        dest,
                        MeshMsg::Barrier {
                            node: node as u32,
                            input: input as u32,
                            epoch,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Rows (and marks) for sink `sink` from shard `sender`.
    fn sink_rows(&mut self, sink: usize, sender: usize, batch: &Batch) -> Result<(), RunError> {
        let target = self.sinks[sink].as_mut().expect("sinks live on shard 0");
        let Some(ck) = &mut self.ckpt else {
            return target.write(batch);
        };
        let a = &mut ck.sinks[sink];
        let slot = a.slot(sender);
        if a.align.blocked(slot) {
            a.align.hold(0, sender, Held::Rows(batch.clone()));
            return Ok(());
        }
        a.observe(slot, batch);
        let aligning = a.align.waiting();
        target.write(batch)?;
        if aligning {
            self.try_align_sink(sink)?;
        }
        Ok(())
    }

    fn sink_barrier(&mut self, sink: usize, sender: usize, epoch: u64) -> Result<(), RunError> {
        let ck = self
            .ckpt
            .as_mut()
            .expect("barriers flow only when checkpoints are taken");
        let a = &mut ck.sinks[sink];
        let slot = a.slot(sender);
        if a.align.blocked(slot) {
            a.align.hold(0, sender, Held::Barrier(epoch));
            return Ok(());
        }
        a.align.arrive(slot, epoch);
        self.try_align_sink(sink)
    }

    /// Commits `sink` at its next epoch once every sender delivered that
    /// barrier or ended.
    fn try_align_sink(&mut self, sink: usize) -> Result<(), RunError> {
        let Some(ck) = &self.ckpt else { return Ok(()) };
        let Some(epoch) = ck.sinks[sink].ready() else {
            return Ok(());
        };
        let held = self.commit_sink(sink, epoch)?;
        for (_, sender, h) in held {
            match h {
                Held::Rows(batch) => self.sink_rows(sink, sender, &batch)?,
                Held::Barrier(epoch) => self.sink_barrier(sink, sender, epoch)?,
            }
        }
        self.try_report()
    }

    /// Sends this shard's piece of the checkpoint in flight once every
    /// node, source and sink here has reached it. Nodes and sinks that
    /// have ended are complete with their final state.
    fn try_report(&mut self) -> Result<(), RunError> {
        let Some(ck) = &self.ckpt else { return Ok(()) };
        let epoch = ck.epoch;
        if epoch == ck.reported || ck.sources.is_none() {
            return Ok(());
        }
        let active: Vec<bool> = (0..self.nodes.len())
            .map(|n| self.topo.node_active[n][self.id])
            .collect();
        for (n, a) in ck.nodes.iter().enumerate() {
            if active[n] && a.aligned < epoch && self.nodes[n].watermark() != WATERMARK_END {
                return Ok(());
            }
        }
        if ck.sinks.iter().any(|a| a.align.aligned < epoch && !a.complete()) {
            return Ok(());
        }
        // What has ended is complete with its final state; nothing can
        // wait behind a barrier there.
        for (n, &here) in active.iter().enumerate() {
            if here && self.ckpt.as_ref().expect("checked").nodes[n].aligned < epoch {
                let held = self.snapshot_node(n, epoch)?;
                assert!(held.is_empty(), "an ended node holds nothing");
            }
        }
        for k in 0..self.sinks.len() {
            if self
                .ckpt
                .as_ref()
                .expect("checked")
                .sinks
                .get(k)
                .is_some_and(|a| a.align.aligned < epoch)
            {
                let held = self.commit_sink(k, epoch)?;
                assert!(held.is_empty(), "an ended sink holds nothing");
            }
        }
        let ck = self.ckpt.as_mut().expect("checked");
        let piece = Piece {
            shard: self.id,
            epoch,
            parts: std::mem::take(&mut ck.parts),
            sources: ck.sources.take().expect("checked"),
            sinks: ck
                .sink_positions
                .iter_mut()
                .map(|p| p.take().expect("every sink committed"))
                .collect(),
        };
        ck.reported = epoch;
        // The coordinator is gone only when the run is being torn down.
        let _ = self.events.send(ShardEvent::Checkpoint(piece));
        Ok(())
    }

    /// The source loop's side of checkpoint `epoch`: this shard's sources
    /// stand at `positions`; barriers go after their rows (`live` lists
    /// the sources that still read; the others have sent their end).
    fn inject_barrier(
        &mut self,
        epoch: u64,
        positions: Vec<laminar_persistence::manifest::SourcePosition>,
        live: &[usize],
    ) -> Result<(), RunError> {
        let ck = self
            .ckpt
            .as_mut()
            .expect("barriers flow only when checkpoints are taken");
        ck.start(epoch);
        ck.sources = Some(positions);
        for &i in live {
            self.deliver_barrier(Input::Source(i), epoch)?;
        }
        self.try_report()
    }

    /// The coordinator asked for `requested`; a shard whose source loop
    /// has finished takes part with its final positions.
    fn on_checkpoint_request(&mut self, requested: u64) -> Result<(), RunError> {
        let Some(ck) = &mut self.ckpt else { return Ok(()) };
        if requested > ck.epoch && ck.final_sources.is_some() {
            ck.start(requested);
        }
        self.try_report()
    }

    /// The source loop has ended: these positions hold from now on.
    fn sources_finished(
        &mut self,
        positions: Vec<laminar_persistence::manifest::SourcePosition>,
    ) -> Result<(), RunError> {
        let Some(ck) = &mut self.ckpt else { return Ok(()) };
        if ck.epoch > ck.reported && ck.sources.is_none() {
            ck.sources = Some(positions.clone());
        }
        ck.final_sources = Some(positions);
        self.try_report()
    }

    /// Delivers a batch produced here to everything that reads `from`.
    fn deliver(&mut self, from: Input, batch: &Batch) -> Result<(), RunError> {
        let topo = Arc::clone(&self.topo);
        for &sink in topo.sink_consumers(from) {
            // With checkpoints a sink also needs the end mark: a sender
            // that has ended owes no more barriers.
            let end = self.ckpt.is_some() && batch.last_watermark() == Some(WATERMARK_END);
            if batch.is_empty() && !end {
                continue;
            }
            if self.id == 0 {
                self.sink_rows(sink, 0, batch)?;
            } else if let Some(encoder) = &mut self.encoders[sink] {
                // Sized for rows of about the width the last batch had,
                // so the buffer rarely grows (each growth is a copy).
                let mut bytes = Vec::with_capacity(batch.len() * self.encoded_row_bytes.max(16) * 9 / 8);
                for (op, row) in batch.rows() {
                    encoder.row(op, row, &mut bytes);
                }
                self.encoded_row_bytes = bytes.len() / batch.len().max(1);
                self.send(
                    0,
                    MeshMsg::SinkEncoded {
                        sink: sink as u32,
                        rows: batch.len() as u64,
                        bytes,
                    },
                );
            } else {
                self.send(
                    0,
                    MeshMsg::Sink {
                        sink: sink as u32,
                        batch: batch.clone(),
                    },
                );
            }
        }
        for &(node, input) in topo.node_consumers(from) {
            match &topo.input_placement[node][input] {
                Placement::Local => self.feed(node, input, self.id, batch)?,
                placement => {
                    let combined = (self.combiners[node].as_mut())
                        .and_then(|combiner| partition_combined(batch, combiner, placement, topo.shards));
                    let parts = combined.unwrap_or_else(|| {
                        let mut key = std::mem::take(&mut self.key);
                        let parts = partition(batch, placement, topo.shards, &mut key);
                        self.key = key;
                        parts
                    });
                    for (dest, part) in parts.into_iter().enumerate() {
                        if part.is_inert() {
                            continue;
                        }
                        if dest == self.id {
                            self.feed(node, input, self.id, &part)?;
                        } else {
                            self.send(
                                dest,
                                MeshMsg::Node {
                                    node: node as u32,
                                    input: input as u32,
                                    batch: part,
                                },
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_message(&mut self, sender: usize, msg: MeshMsg) -> Result<(), RunError> {
        let started = std::time::Instant::now();
        let result = self.on_message_untimed(sender, msg);
        self.busy += started.elapsed();
        result
    }

    fn on_message_untimed(&mut self, sender: usize, msg: MeshMsg) -> Result<(), RunError> {
        match msg {
            MeshMsg::Node { node, input, batch } => self.feed(node as usize, input as usize, sender, &batch),
            MeshMsg::Sink { sink, batch } => self.sink_rows(sink as usize, sender, &batch),
            MeshMsg::SinkEncoded { sink, rows, bytes } => {
                debug_assert!(
                    self.ckpt.is_none(),
                    "encoded rows only flow in runs without checkpoints"
                );
                let target = self.sinks[sink as usize].as_mut().expect("sinks live on shard 0");
                target.write_encoded(&bytes, rows)
            }
            MeshMsg::Barrier { node, input, epoch } => {
                self.barrier_to_node(node as usize, input as usize, sender, epoch)
            }
            MeshMsg::SinkBarrier { sink, epoch } => self.sink_barrier(sink as usize, sender, epoch),
            MeshMsg::SplitToken { source, chunk, prefix } => {
                self.token_here(source as usize, chunk as usize, prefix);
                Ok(())
            }
            MeshMsg::SplitClaim { source, chunk } => {
                if let Some(prefix) = self.held_tokens.remove(&(source as usize, chunk as usize)) {
                    self.pass_token(source as usize, chunk as usize, prefix, Some(sender));
                    // The source loop may wait for its last held token to go.
                    if let Some(wake) = &self.source_wake {
                        wake.notify();
                    }
                }
                Ok(())
            }
            MeshMsg::Done => {
                assert!(!self.done_from[sender], "one Done per peer");
                self.done_from[sender] = true;
                self.done_received += 1;
                Ok(())
            }
        }
    }

    /// Takes every message already queued on the inbound channels and
    /// processes it. The shard's main task calls this whenever it wakes,
    /// so progress never depends on the receiver tasks alone being
    /// scheduled (see `yield_if_preempted`). Both consume on this thread
    /// and process each message before taking the next: order holds.
    fn drain_inbound(&mut self, inbound: &[Option<Rc<MeshReceiver<MeshMsg>>>]) -> Result<usize, RunError> {
        let mut taken = 0;
        for (peer, r) in inbound.iter().enumerate() {
            let Some(r) = r else { continue };
            while let TryRecv::Message(msg) = r.try_recv() {
                taken += 1;
                self.on_message(peer, msg)?;
            }
        }
        Ok(taken)
    }

    /// The shortest tick interval of the nodes active here, if any wants
    /// processing-time ticks.
    fn tick_interval(&self) -> Option<Duration> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.topo.node_active[*i][self.id])
            .filter_map(|(_, n)| n.operator().tick_interval_ms())
            .min()
            .map(|ms| Duration::from_millis(ms.max(1) as u64))
    }

    /// Passes processing time `now_ms` to every node that wants ticks and
    /// delivers what they emit.
    fn tick(&mut self, now_ms: i64) -> Result<(), RunError> {
        for node in 0..self.nodes.len() {
            if !self.topo.node_active[node][self.id]
                || self.nodes[node].operator().tick_interval_ms().is_none()
                || self.nodes[node].watermark() == WATERMARK_END
            {
                continue;
            }
            let mut out = Batch::new(self.plan.nodes[node].schema.len());
            self.nodes[node]
                .tick(now_ms, &mut out)
                .map_err(exec_error(&self.plan, node))?;
            if !out.is_inert() {
                self.deliver(Input::Node(node), &out)?;
            }
        }
        Ok(())
    }

    /// Whether every node active here has seen the end of every input.
    fn nodes_complete(&self) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .all(|(i, n)| !self.topo.node_active[i][self.id] || n.watermark() == WATERMARK_END)
    }
}

/// Everything a shard needs, sent to its executor thread.
pub struct ShardContext {
    pub id: usize,
    pub plan: Arc<PhysicalPlan>,
    pub topo: Arc<Topology>,
    pub config: ShardConfig,
    pub mesh: Option<MeshEnds<MeshMsg>>,
    pub progress: Arc<SharedProgress>,
    pub events: mpsc::Sender<ShardEvent>,
    /// Per source: how it is split over the shards, if it is.
    pub splits: Arc<Vec<Option<SourceSplit>>>,
    /// What to restore from the last checkpoint, when resuming one.
    pub restore: Option<ShardRestore>,
    /// `laminar serve`: this shard's listeners and the live limits.
    pub live: Option<ShardLive>,
}

/// What a shard of `laminar serve` listens on.
pub struct ShardLive {
    /// By source index: the listener of each tcp source this shard owns.
    pub source_listeners: Vec<Option<std::net::TcpListener>>,
    /// By sink index: the listener of each tcp sink (on shard 0).
    pub sink_listeners: Vec<Option<std::net::TcpListener>>,
    pub limits: crate::live::LiveLimits,
    pub subscriber_buffer_bytes: usize,
}

/// The listener `laminar serve` bound for tcp source or sink `i`.
fn take_listener(
    listeners: &mut [Option<std::net::TcpListener>],
    i: usize,
    name: &str,
    what: &str,
) -> Result<std::net::TcpListener, RunError> {
    listeners
        .get_mut(i)
        .and_then(Option::take)
        .ok_or_else(|| RunError::Source {
            source_name: name.to_string(),
            path: "tcp".into(),
            reason: format!("a tcp {what} needs `laminar serve`"),
        })
}

/// Takes a bound std listener onto this executor.
fn glommio_listener(listener: std::net::TcpListener) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is a listening TCP socket we own (taken out of the std
    // listener, which no longer closes it); the glommio listener takes
    // ownership of it.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}

/// Where each of this shard's sources stands, for a checkpoint.
fn source_positions(
    shard: usize,
    sources: &mut [(usize, Source)],
) -> Result<Vec<laminar_persistence::manifest::SourcePosition>, RunError> {
    sources
        .iter_mut()
        .map(|(_, s)| crate::checkpoint::source_position(shard, s))
        .collect()
}

/// Lets the other tasks of this queue run when glommio asks for
/// preemption. Unlike `glommio::yield_if_needed` it does not mark the task
/// queue as yielded: a multi-shard stress run once left a receiver task
/// unpolled after such a yield, with its message queued, while the shard's
/// other queue kept running. A plain task yield re-schedules the task
/// through its own waker.
async fn yield_if_preempted() {
    if glommio::executor().need_preempt() {
        futures_lite::future::yield_now().await;
    }
}

/// How far (event time) a source may read ahead of the slowest source of
/// the run before it waits: bounds join and window state when sources on
/// different shards read at different speeds.
pub const SOURCE_DRIFT_MS_MAX: i64 = 1_000;

/// A paced source that must wait longer than this for its next event
/// sleeps on a timer (waking a little early); a shorter wait spins.
const PACE_SLEEP_NS_MIN: u64 = 200_000;

/// How often a shard's watchdog ticks: heartbeat, nudge, channel rescue.
const MESH_WATCHDOG_INTERVAL: Duration = Duration::from_millis(5);

fn failed(progress: &SharedProgress, e: RunError) -> RunError {
    progress.abort.store(true, Ordering::Relaxed);
    e
}

fn check_abort(progress: &SharedProgress) -> Result<(), RunError> {
    if progress.abort.load(Ordering::Relaxed) {
        return Err(RunError::Aborted);
    }
    Ok(())
}

/// Reads this shard's WAL back from the position its live sources
/// resumed at, hands each source its batches to replay, and opens the
/// log for appending after them.
async fn open_wal(
    dir: &std::path::Path,
    id: usize,
    sources: &mut [(usize, Source)],
) -> Result<laminar_persistence::wal::WalWriter, RunError> {
    use laminar_persistence::wal;
    let shard = u32::try_from(id).expect("shard ids fit u32");
    let starts: FxHashMap<u32, u64> = sources
        .iter_mut()
        .filter_map(|(i, s)| Some((*i as u32, s.live()?.wal_lsn)))
        .collect();
    let from = starts.values().copied().min().unwrap_or(0);
    let mut batches: FxHashMap<u32, Vec<crate::live::LoggedBatch>> = FxHashMap::default();
    let mut read = 0usize;
    let report = wal::read_log(dir, shard, from, |record| {
        if record.kind != wal::RecordKind::Rows {
            return Ok(());
        }
        let logged: crate::live::LoggedBatch = laminar_persistence::from_archive(&record.payload).map_err(|e| {
            laminar_persistence::PersistError::Corrupt {
                path: wal::segment_path(dir, shard, 0).with_file_name(format!("wal-{shard:04}-*.log")),
                offset: record.lsn,
                reason: format!("a record at LSN {} does not decode: {e}", record.lsn),
            }
        })?;
        if starts.get(&logged.source).is_some_and(|&start| record.lsn >= start) {
            read += 1;
            batches.entry(logged.source).or_default().push(logged);
        }
        Ok(())
    })?;
    if let Some((path, offset, bytes)) = &report.truncated {
        tracing::warn!(
            shard = id,
            path = %path.display(),
            offset,
            bytes,
            "cut a torn tail off the WAL (never acknowledged)"
        );
    }
    if read > 0 {
        tracing::info!(
            shard = id,
            batches = read,
            from_lsn = from,
            "replaying the WAL after the checkpoint"
        );
    }
    for (i, live) in sources.iter_mut().filter_map(|(i, s)| Some((*i, s.live_mut()?))) {
        // Also with nothing to replay: the connections the checkpoint
        // kept are gone, and go.
        live.replay(batches.remove(&(i as u32)).unwrap_or_default());
    }
    let writer = wal::WalWriter::open(
        wal::WalConfig::new(dir, shard),
        report.end_lsn,
        laminar_persistence::Faults::none(),
    )
    .await?;
    for (_, s) in sources.iter_mut() {
        if let Some(live) = s.live_mut() {
            live.wal_lsn = report.end_lsn;
        }
    }
    Ok(writer)
}

/// Makes the WAL durable so far and tells the live sources' connections
/// (and the metrics) how far it is.
async fn wal_commit(
    wal: &mut laminar_persistence::wal::WalWriter,
    id: usize,
    sources: &[(usize, Source)],
    progress: &SharedProgress,
) -> Result<(), RunError> {
    if wal.synced_lsn() == wal.next_lsn() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let synced = wal.commit().await?;
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let shard = &progress.metrics.shards[id];
    shard.wal_syncs.fetch_add(1, Ordering::Relaxed);
    shard.wal_sync_ns_total.fetch_add(ns, Ordering::Relaxed);
    shard.wal_sync_ns_max.fetch_max(ns, Ordering::Relaxed);
    for (_, s) in sources {
        if let Some(live) = s.live() {
            live.inbox.borrow_mut().on_synced(synced);
        }
    }
    Ok(())
}

/// A shard's part in `laminar serve`'s stop: close intake, report when
/// its live sources are drained, and when every finished connection has
/// its answer after the final checkpoint (see `runner`).
struct Serving {
    inboxes: Vec<(usize, Rc<RefCell<crate::live::Inbox>>)>,
    hubs: Vec<(usize, Rc<RefCell<crate::subscribe::Hub>>)>,
    accept_tasks: Rc<RefCell<Vec<glommio::Task<()>>>>,
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
    fn step(&mut self, progress: &SharedProgress) {
        if !self.closed && progress.intake_stopped.load(Ordering::Acquire) {
            self.closed = true;
            // Dropping the accept tasks closes the listeners.
            self.accept_tasks.borrow_mut().clear();
            for (_, inbox) in &self.inboxes {
                inbox.borrow_mut().close();
            }
        }
        if self.closed && !self.drained && self.inboxes.iter().all(|(_, b)| b.borrow().drained()) {
            self.drained = true;
            progress.drained.fetch_add(1, Ordering::AcqRel);
        }
        let final_epoch = progress.final_epoch.load(Ordering::Acquire);
        if final_epoch == 0 || progress.checkpoint_completed.load(Ordering::Acquire) < final_epoch {
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
            progress.ready_to_stop.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Copies a source's counts into the shared counters (`laminar serve`'s
/// metrics). A served source is never split (checkpoints are on), so its
/// counts are this shard's alone and include a resumed run's.
fn publish_source(counters: &crate::metrics::SourceCounters, s: &Source) {
    debug_assert!(!s.is_split());
    counters.rows.store(s.rows, Ordering::Relaxed);
    counters.malformed.store(s.malformed, Ordering::Relaxed);
    counters.bytes.store(s.bytes_read, Ordering::Relaxed);
    counters.watermark.fetch_max(s.watermark(), Ordering::Relaxed);
    counters
        .outliers
        .store(s.live().map_or(0, |l| l.outliers), Ordering::Relaxed);
}

/// Copies this shard's node, sink and shard figures into the shared
/// counters (see `metrics`).
fn publish_metrics(id: usize, core: &ShardCore, serving: &Serving, progress: &SharedProgress) {
    let m = &progress.metrics;
    for (node, counters) in core.nodes.iter().zip(&m.nodes) {
        let om = node.operator().metrics();
        counters.rows_in[id].store(om.rows_in, Ordering::Relaxed);
        counters.rows_out[id].store(om.rows_out, Ordering::Relaxed);
        counters.late_dropped[id].store(om.late_rows_dropped, Ordering::Relaxed);
    }
    for (sink, counters) in core.sinks.iter().zip(&m.sinks) {
        if let Some(sink) = sink {
            counters.rows.store(sink.rows, Ordering::Relaxed);
        }
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
    }
    let shard = &m.shards[id];
    shard.busy_ns.store(
        u64::try_from(core.busy.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    shard.queue_depth.store(core.outbox_len.get() as u64, Ordering::Relaxed);
}

pub async fn shard_main(ctx: ShardContext) -> Result<ShardReport, RunError> {
    let ShardContext {
        id,
        plan,
        topo,
        config,
        mesh,
        progress,
        events,
        splits,
        restore,
        live,
    } = ctx;
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    progress.thread_ids[id].store(tid, Ordering::Release);
    // The first failure of a receiver task: reported instead of the
    // `Aborted` the shard's other tasks then see.
    let task_error: Rc<RefCell<Option<RunError>>> = Rc::new(RefCell::new(None));
    let shared = Shared {
        plan: &plan,
        topo: &topo,
        config: &config,
        progress: &progress,
        events: &events,
        task_error: &task_error,
        splits: &splits,
        restore,
        live,
    };
    let result = shard_body(id, mesh, shared).await;
    let result = match result {
        Err(RunError::Aborted) => Err(task_error.borrow_mut().take().unwrap_or(RunError::Aborted)),
        other => other,
    };
    set_phase(&progress, id, Phase::Finished);
    let _ = events.send(ShardEvent::Finished { shard: id });
    result.map_err(|e| failed(&progress, e))
}

/// What `shard_body` borrows from `shard_main`.
struct Shared<'a> {
    plan: &'a Arc<PhysicalPlan>,
    topo: &'a Arc<Topology>,
    config: &'a ShardConfig,
    progress: &'a Arc<SharedProgress>,
    events: &'a mpsc::Sender<ShardEvent>,
    task_error: &'a Rc<RefCell<Option<RunError>>>,
    splits: &'a [Option<SourceSplit>],
    restore: Option<ShardRestore>,
    live: Option<ShardLive>,
}

async fn shard_body(id: usize, mesh: Option<MeshEnds<MeshMsg>>, shared: Shared<'_>) -> Result<ShardReport, RunError> {
    let Shared {
        plan,
        topo,
        config,
        progress,
        events,
        task_error,
        splits,
        restore,
        live,
    } = shared;
    // Metrics have a reader only in `laminar serve`.
    let metrics_read = live.is_some();
    let (mut source_listeners, mut sink_listeners, live_limits, subscriber_buffer_bytes) = match live {
        Some(l) => (
            l.source_listeners,
            l.sink_listeners,
            l.limits,
            l.subscriber_buffer_bytes,
        ),
        None => (Vec::new(), Vec::new(), crate::live::LiveLimits::default(), 0),
    };
    let executor = glommio::executor();
    let event_queue = executor.create_task_queue(
        Shares::Static(config.event_shares),
        Latency::Matters(Duration::from_millis(config.event_latency_ms)),
        "events",
    );
    let main_queue = executor.create_task_queue(Shares::Static(config.main_shares), Latency::NotImportant, "main");

    // Sources this shard reads; sinks on shard 0.
    let mut sources: Vec<(usize, Source)> = Vec::new();
    // Live sources this shard owns: index, inbox, listener (taken when
    // the accept task starts).
    type LiveInbox = (usize, Rc<RefCell<crate::live::Inbox>>, Option<std::net::TcpListener>);
    let mut live_inboxes: Vec<LiveInbox> = Vec::new();
    // TCP sinks here (shard 0): index, subscribers, listener.
    type Subscribers = (usize, Rc<RefCell<crate::subscribe::Hub>>, Option<std::net::TcpListener>);
    let mut hubs: Vec<Subscribers> = Vec::new();
    for (i, node) in plan.sources.iter().enumerate() {
        match &splits[i] {
            Some(SourceSplit::File(split)) => sources.push((i, Source::open_split(node, Arc::clone(split), id)?)),
            Some(SourceSplit::Generator { chunk_events }) => {
                sources.push((i, Source::open_generator_split(node, id, config.shards, *chunk_events)?))
            }
            None if topo.source_owner[i] == id => {
                let state = restore.as_ref().and_then(|r| r.sources[i].as_ref());
                let source = match (&node.connector, state) {
                    (SourceConnector::Tcp { .. }, state) => {
                        let listener = take_listener(&mut source_listeners, i, &node.name, "source")?;
                        let location = listener
                            .local_addr()
                            .map_or_else(|_| "tcp".to_string(), |a| format!("tcp {a}"));
                        let inbox = Rc::new(RefCell::new(crate::live::Inbox::default()));
                        live_inboxes.push((i, Rc::clone(&inbox), Some(listener)));
                        Source::open_live(
                            node,
                            i,
                            inbox,
                            live_limits,
                            Arc::clone(&config.clock),
                            location,
                            state,
                            config.wal_dir.is_some(),
                        )?
                    }
                    (_, Some(state)) => Source::open_resumed(node, state)?,
                    (_, None) => Source::open(node)?,
                };
                sources.push((i, source));
            }
            None => {}
        }
    }
    // The WAL of this shard's live sources: what they applied after the
    // checkpoint resumed from is replayed first, then the log goes on.
    let wal = match (&config.wal_dir, live_inboxes.is_empty()) {
        (Some(dir), false) => Some(open_wal(dir, id, &mut sources).await?),
        _ => None,
    };
    let replaying = sources.iter().filter(|(_, s)| s.replaying()).count();
    progress.replaying.fetch_add(replaying, Ordering::AcqRel);
    if metrics_read {
        // A resumed source starts from its checkpointed counts.
        for (i, s) in &sources {
            publish_source(&progress.metrics.sources[*i], s);
        }
    }
    let live = sources.iter().filter(|(_, s)| !s.is_done()).count();
    progress.sources_live.fetch_add(live, Ordering::Relaxed);
    let stdout_sinks = plan
        .sinks
        .iter()
        .filter(|s| s.connector == SinkConnector::Stdout)
        .count();
    let sinks = if id == 0 {
        plan.sinks
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let resume = restore
                    .as_ref()
                    .and_then(|r| r.sinks[k].as_ref())
                    .map(|p| (p.bytes, p.rows));
                if let SinkConnector::Tcp { .. } = s.connector {
                    let listener = take_listener(&mut sink_listeners, k, &s.name, "sink")?;
                    let hub = Rc::new(RefCell::new(crate::subscribe::Hub::new(
                        &s.name,
                        subscriber_buffer_bytes,
                    )));
                    hubs.push((k, Rc::clone(&hub), Some(listener)));
                    return Ok(Some(Sink::open_tcp(s, hub, resume.map(|(_, rows)| rows))));
                }
                Sink::open_at(s, stdout_sinks, config.pace, resume).map(Some)
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        plan.sinks.iter().map(|_| None).collect()
    };
    let mut sinks = sinks;
    if config.direct_file_sinks {
        for s in sinks.iter_mut().flatten() {
            s.go_direct().await?;
        }
    }

    let mut nodes: Vec<Driven> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut d = Driven::with_inputs(n.spec.build(), &topo.port_inputs(i));
            d.set_port_exact(topo.port_exact[i].clone());
            d
        })
        .collect();
    let restored_epoch = restore.as_ref().map_or(0, |r| r.epoch);
    let restoring = std::time::Instant::now();
    if let Some(r) = &restore {
        for (part, bytes) in &r.parts {
            let n = *part as usize;
            let node = nodes.get_mut(n).ok_or_else(|| RunError::Recovery {
                dir: std::path::PathBuf::new(),
                reason: format!(
                    "the checkpoint has state for node {n}, the plan has {}",
                    plan.nodes.len()
                ),
            })?;
            node.restore(bytes).map_err(exec_error(plan, n))?;
        }
    }
    let restore_time = restoring.elapsed();
    let ckpt = config.checkpoints.then(|| {
        let node_align = (0..plan.nodes.len())
            .map(|i| Align::new(topo.port_count[i], restored_epoch))
            .collect();
        let sink_align = if id == 0 {
            plan.sinks
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let senders = (0..config.shards)
                        .filter(|&sh| match s.input {
                            Input::Node(n) => topo.node_active[n][sh],
                            Input::Source(i) => topo.source_active[i][sh],
                        })
                        .collect();
                    let mut align = SinkAlign::new(senders, restored_epoch);
                    if let Some(p) = restore.as_ref().and_then(|r| r.sinks[k].as_ref()) {
                        align.restore_ended(&p.ended_senders);
                    }
                    align
                })
                .collect()
        } else {
            Vec::new()
        };
        ShardCheckpoint::new(restored_epoch, node_align, sink_align, config.snapshot_fork_bytes_min)
    });

    let outbox_len = Rc::new(Cell::new(0usize));
    let mut outboxes: Vec<Option<local_channel::LocalSender<MeshMsg>>> = (0..config.shards).map(|_| None).collect();
    let mut sender_tasks = Vec::new();
    let mut receiver_tasks = Vec::new();
    let core = Rc::new(RefCell::new(ShardCore {
        id,
        plan: Arc::clone(plan),
        topo: Arc::clone(topo),
        nodes,
        sinks,
        outboxes: Vec::new(),
        outbox_len: Rc::clone(&outbox_len),
        done_received: 0,
        done_from: vec![false; config.shards],
        key: Vec::new(),
        late_stream_of: plan.late_stream_of(),
        busy: Duration::ZERO,
        split_tokens: FxHashMap::default(),
        held_tokens: FxHashMap::default(),
        combiners: (plan.nodes.iter().zip(&topo.combine))
            .map(|(n, &c)| match &n.spec {
                OperatorSpec::Aggregate(a) if c => Some(Combiner::new(a)),
                _ => None,
            })
            .collect(),
        source_wake: None,
        encoders: plan
            .sinks
            .iter()
            .map(|s| {
                let remote = id != 0 && ckpt.is_none() && config.pace.is_none();
                remote.then(|| Sink::encoder_for(s)).flatten()
            })
            .collect(),
        encoded_row_bytes: 0,
        ckpt,
        events: events.clone(),
    }));

    // Wakes the shard's main task when a peer's message may have
    // completed this shard's nodes, or a receiver has ended.
    let progressed = Rc::new(Signal::default());
    // Wakes a paused source when the outboxes have drained.
    let outbox_room = Rc::new(Signal::default());
    let receivers_live = Rc::new(Cell::new(0usize));
    let mut inbound: Vec<Option<Rc<MeshReceiver<MeshMsg>>>> = (0..config.shards).map(|_| None).collect();
    let rescued = Rc::new(Cell::new(0u64));
    // The watchdog: glommio's cross-executor wake was seen to lose a
    // wakeup in very rare cases (a receiver parked with a message queued),
    // so every `MESH_WATCHDOG_INTERVAL` each shard wakes its own stuck
    // channel sides. A wake from the shard's own thread takes glommio's
    // local path. Rescues are counted and logged. It also carries a peer's
    // failure (the abort flag) to this shard's waits.
    // Every shard has one, also a run of one shard: its heartbeat is what
    // the kicker watches (an executor can sleep through its timers with or
    // without a mesh).
    // `laminar serve`: connections of live sources on the event queue,
    // subscribers of tcp sinks on the main queue. The accept tasks end
    // (closing their listeners) when intake stops.
    let accept_tasks: Rc<RefCell<Vec<glommio::Task<()>>>> = Rc::new(RefCell::new(Vec::new()));
    for (i, inbox, listener) in &mut live_inboxes {
        inbox.borrow_mut().set_wake(Rc::clone(&outbox_room));
        let listener = glommio_listener(listener.take().expect("each listener is taken once"));
        let task = glommio::spawn_local_into(
            crate::live::accept_loop(listener, Rc::clone(inbox), live_limits, plan.sources[*i].name.clone()),
            event_queue,
        )
        .expect("the event queue exists");
        accept_tasks.borrow_mut().push(task);
    }
    for (_, hub, listener) in &mut hubs {
        let listener = glommio_listener(listener.take().expect("each listener is taken once"));
        let task = glommio::spawn_local_into(
            crate::subscribe::accept_loop(listener, Rc::clone(hub), main_queue),
            main_queue,
        )
        .expect("the main queue exists");
        task.detach();
    }
    let watchdog = {
        let probes = mesh.as_ref().map(MeshEnds::local_probes).unwrap_or_default();
        let rescued = Rc::clone(&rescued);
        let progress = Arc::clone(progress);
        let (progressed, outbox_room) = (Rc::clone(&progressed), Rc::clone(&outbox_room));
        let core = Rc::clone(&core);
        let task_error = Rc::clone(task_error);
        let mut serving = Serving {
            inboxes: live_inboxes.iter().map(|(i, b, _)| (*i, Rc::clone(b))).collect(),
            hubs: hubs.iter().map(|(k, h, _)| (*k, Rc::clone(h))).collect(),
            accept_tasks: Rc::clone(&accept_tasks),
            closed: false,
            drained: false,
            ready: false,
            final_seen_at: None,
        };
        glommio::spawn_local_into(
            async move {
                loop {
                    glommio::timer::sleep(MESH_WATCHDOG_INTERVAL).await;
                    let beat = progress.heartbeats[id].fetch_add(1, Ordering::Relaxed);
                    serving.step(&progress);
                    if metrics_read && beat % crate::metrics::PUBLISH_EVERY_BEATS == 0 {
                        publish_metrics(id, &core.borrow(), &serving, &progress);
                    }
                    // A checkpoint request reaches a shard whose sources
                    // are done here (the source loop sees its own).
                    let requested = progress.checkpoint_requested.load(Ordering::Acquire);
                    if let Err(e) = core.borrow_mut().on_checkpoint_request(requested) {
                        progress.abort.store(true, Ordering::Relaxed);
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
            main_queue,
        )
        .expect("the main queue exists")
    };
    if let Some(MeshEnds { senders, receivers }) = mesh {
        for (dest, (slot, sender)) in outboxes.iter_mut().zip(senders).enumerate() {
            let Some(sender) = sender else { continue };
            let (tx, rx) = local_channel::new_unbounded::<MeshMsg>();
            *slot = Some(tx);
            let outbox_len = Rc::clone(&outbox_len);
            let outbox_room = Rc::clone(&outbox_room);
            let progress = Arc::clone(progress);
            let low_water = config.outbox_messages_max / 2;
            sender_tasks.push(
                glommio::spawn_local_into(
                    async move {
                        let mut result = Ok(());
                        // A message taken from the outbox but not merged
                        // into the one before it: sent next.
                        let mut held: Option<MeshMsg> = None;
                        loop {
                            let mut msg = match held.take() {
                                Some(m) => m,
                                None => match rx.recv().await {
                                    Some(m) => m,
                                    None => break,
                                },
                            };
                            outbox_len.set(outbox_len.get() - 1);
                            // Coalesce what already waits behind it for the
                            // same place: fewer, fuller mesh messages when
                            // the mesh is the bottleneck (small batches
                            // from a paced source, say).
                            while let Some(Some(next)) = futures_lite::future::poll_once(rx.recv()).await {
                                outbox_len.set(outbox_len.get() - 1);
                                match merge(&mut msg, next) {
                                    None => {}
                                    Some(unmerged) => {
                                        outbox_len.set(outbox_len.get() + 1);
                                        held = Some(unmerged);
                                        break;
                                    }
                                }
                            }
                            if outbox_len.get() <= low_water {
                                outbox_room.notify();
                            }
                            if sender.send(msg).await.is_err() {
                                // The peer has gone: it failed, or the run
                                // is being torn down.
                                progress.abort.store(true, Ordering::Relaxed);
                                result = Err(RunError::Mesh(format!("shard {dest} stopped receiving")));
                                break;
                            }
                        }
                        // Dropping `sender` tells shard `dest` nothing follows.
                        outbox_room.notify();
                        result
                    },
                    event_queue,
                )
                .expect("the event queue exists"),
            );
        }
        for (peer, receiver) in receivers.into_iter().enumerate() {
            let Some(receiver) = receiver else { continue };
            let receiver = Rc::new(receiver);
            inbound[peer] = Some(Rc::clone(&receiver));
            let core = Rc::clone(&core);
            let progress = Arc::clone(progress);
            let progressed = Rc::clone(&progressed);
            let receivers_live = Rc::clone(&receivers_live);
            let task_error = Rc::clone(task_error);
            receivers_live.set(receivers_live.get() + 1);
            receiver_tasks.push(
                glommio::spawn_local_into(
                    async move {
                        let received = async {
                            while !core.borrow().done_from[peer] {
                                let Some(msg) = receiver.recv().await else { break };
                                check_abort(&progress)?;
                                core.borrow_mut().on_message(peer, msg)?;
                                progressed.notify();
                                yield_if_preempted().await;
                            }
                            // `Done` arrived (here, or taken by the main
                            // task), or the channel closed without it: the
                            // peer failed (and said why) or was torn down.
                            if core.borrow().done_from[peer] {
                                return Ok(());
                            }
                            check_abort(&progress)?;
                            Err(RunError::Mesh(format!(
                                "shard {peer} closed its channel before finishing"
                            )))
                        }
                        .await;
                        if let Err(e) = received {
                            progress.abort.store(true, Ordering::Relaxed);
                            if !matches!(e, RunError::Aborted) {
                                task_error.borrow_mut().get_or_insert(e);
                            }
                        }
                        receivers_live.set(receivers_live.get() - 1);
                        progressed.notify();
                    },
                    event_queue,
                )
                .expect("the event queue exists"),
            );
        }
    }
    core.borrow_mut().outboxes = outboxes;
    core.borrow_mut().source_wake = Some(Rc::clone(&outbox_room));
    // The first chunk of a split file needs no token: its prefix is the
    // header. Every other chunk's comes from the reader before it.
    for (i, split) in splits.iter().enumerate() {
        let Some(SourceSplit::File(split)) = split else {
            continue;
        };
        // Shard 0 holds it for whichever shard takes chunk 0.
        if id == 0 {
            let prefix = Prefix {
                max_time: i64::MIN,
                lines: split.header_lines,
                start: split.bounds[0],
            };
            core.borrow_mut().pass_token(i, 0, prefix, None);
        }
    }

    // Processing-time ticks for `EMIT EVERY`, on the event queue: a tick's
    // rows travel the event path like any other. It ends with the shard's
    // nodes (at the end of input every window has flushed anyway).
    let ticker = core.borrow().tick_interval().map(|interval| {
        let core = Rc::clone(&core);
        let progress = Arc::clone(progress);
        let task_error = Rc::clone(task_error);
        let clock = Arc::clone(&config.clock);
        glommio::spawn_local_into(
            async move {
                while !core.borrow().nodes_complete() {
                    glommio::timer::sleep(interval).await;
                    let ticked = check_abort(&progress).and_then(|()| core.borrow_mut().tick(clock.now_ms()));
                    if let Err(e) = ticked {
                        progress.abort.store(true, Ordering::Relaxed);
                        if !matches!(e, RunError::Aborted) {
                            task_error.borrow_mut().get_or_insert(e);
                        }
                        break;
                    }
                }
            },
            event_queue,
        )
        .expect("the event queue exists")
    });

    // The source loop, on the event queue with the operators.
    set_phase(progress, id, Phase::Reading);
    let source_task = {
        let core = Rc::clone(&core);
        let progress = Arc::clone(progress);
        let events = events.clone();
        let outbox_len = Rc::clone(&outbox_len);
        let outbox_room = Rc::clone(&outbox_room);
        let (batch_rows, outbox_max) = (config.batch_rows, config.outbox_messages_max);
        let has_peers = config.shards > 1;
        let pace = config.pace;
        let checkpoints = config.checkpoints;
        let every_rows = config.checkpoint_every_rows;
        let mut rows_at_request = 0u64;
        let mut injected = restored_epoch;
        let mut behind_schedule = 0u64;
        let mut read_ns = 0u64;
        // A paced source spins between events; it takes the mesh's
        // messages itself meanwhile, since the receiver tasks' wakes from
        // other cores are only seen when the executor polls (up to the
        // 1 ms preemption slice later: a multi-shard bench showed p99
        // 1.1 ms until this).
        let inbound_for_pacing = inbound.clone();
        glommio::spawn_local_into(
            async move {
                let mut wal = wal;
                // Watermark-aligned reading: always the open source furthest
                // behind in event time, so that sources sharing a shard
                // advance together and joins and windows over several of
                // them hold little state (reading one source to its end
                // first would buffer all of it in a join).
                let mut bytes_seen = vec![0; sources.len()];
                if pace.is_some() {
                    for (_, s) in &mut sources {
                        s.set_end_apart();
                    }
                }
                for (i, s) in &sources {
                    // Nothing waits for a live source: it may be silent
                    // for hours.
                    if !s.has_watermark() || s.is_done() || s.is_live() {
                        progress.source_watermarks[*i].store(i64::MAX, Ordering::Relaxed);
                    } else if s.watermark() > i64::MIN {
                        // Resumed from a checkpoint: where it stands, so no
                        // source waits for this one to catch up.
                        progress.source_watermarks[*i].store(s.watermark(), Ordering::Relaxed);
                    }
                }
                // Time the sources waited: for a token or a peer's input
                // (nothing could be read), and for room in the outboxes.
                let (mut waited_for_input, mut waited_for_room) = (Duration::ZERO, Duration::ZERO);
                let mut report = |m: MalformedRecord<'_>| {
                    let _ = events.send(ShardEvent::Malformed {
                        source: m.source.to_string(),
                        location: m.location.to_string(),
                        line: m.line,
                        reason: m.reason.to_string(),
                    });
                };
                loop {
                    if let Some(every) = every_rows {
                        let rows: u64 = sources.iter().map(|(_, s)| s.rows + s.malformed).sum();
                        if rows >= rows_at_request + every {
                            // Unless one is in flight (another shard's):
                            // then again once that one is complete.
                            let completed = progress.checkpoint_completed.load(Ordering::Acquire);
                            if progress
                                .checkpoint_requested
                                .compare_exchange(completed, completed + 1, Ordering::AcqRel, Ordering::Acquire)
                                .is_ok()
                            {
                                rows_at_request = rows;
                            }
                        }
                        // Deterministic positions: read nothing more until
                        // the checkpoint in flight is complete.
                        let requested = progress.checkpoint_requested.load(Ordering::Acquire);
                        if injected == requested && progress.checkpoint_completed.load(Ordering::Acquire) < requested {
                            check_abort(&progress)?;
                            outbox_room.wait().await;
                            continue;
                        }
                    }
                    // A checkpoint requested: barriers after what was read.
                    let requested = progress.checkpoint_requested.load(Ordering::Acquire);
                    // Not while a source replays its WAL: the barrier's log
                    // position must follow everything the state holds.
                    let replaying = sources.iter().any(|(_, s)| s.replaying());
                    if checkpoints && requested > injected && !replaying {
                        injected = requested;
                        if let Some(w) = &wal {
                            // Recovery replays the log from here.
                            for (_, s) in &mut sources {
                                if let Some(live) = s.live_mut() {
                                    live.wal_lsn = w.next_lsn();
                                }
                            }
                        }
                        let positions = source_positions(id, &mut sources)?;
                        let live: Vec<usize> = sources.iter().filter(|(_, s)| !s.is_done()).map(|(i, _)| *i).collect();
                        core.borrow_mut().inject_barrier(requested, positions, &live)?;
                        if every_rows.is_some() {
                            // Read on only once this checkpoint is complete.
                            continue;
                        }
                    }
                    // Sources that can go on: a split part waiting for a
                    // token that has not come cannot.
                    let pick = {
                        let c = core.borrow();
                        (0..sources.len())
                            .filter(|&k| !sources[k].1.is_done() && sources[k].1.ready())
                            .filter(|&k| {
                                let s = &sources[k].1;
                                s.split_wants_token()
                                    .is_none_or(|chunk| c.split_tokens.contains_key(&(sources[k].0, chunk)))
                                    || s.split_can_read_ahead()
                            })
                            .min_by_key(|&k| (sources[k].1.watermark(), k))
                    };
                    let Some(k) = pick else {
                        // Done, unless a token still waits here for the
                        // peer that takes its chunk (its claim wakes this).
                        if sources.iter().all(|(_, s)| s.is_done()) && core.borrow().held_tokens.is_empty() {
                            break;
                        }
                        check_abort(&progress)?;
                        // Nothing to read: make what was logged durable
                        // (its connections wait for that to be answered).
                        if let Some(w) = &mut wal {
                            wal_commit(w, id, &sources, &progress).await?;
                        }
                        // A token will come (its arrival, and the
                        // watchdog, wake this wait).
                        let started = std::time::Instant::now();
                        outbox_room.wait().await;
                        waited_for_input += started.elapsed();
                        continue;
                    };
                    let (i, source) = &mut sources[k];
                    check_abort(&progress)?;
                    // Its token first: it lets the peers go on too.
                    let token = source
                        .split_wants_token()
                        .and_then(|chunk| core.borrow_mut().split_tokens.remove(&(*i, chunk)));
                    if let Some(prefix) = token {
                        if let Some((owner, next, prefix)) = source.split_accept(prefix, &mut report)? {
                            core.borrow_mut().pass_token(*i, next, prefix, owner);
                        }
                        // Let the sender tasks take the token (and any
                        // claim) to the peer now: a peer waits for it.
                        if has_peers {
                            futures_lite::future::yield_now().await;
                        }
                        continue;
                    }
                    // Cross-shard alignment: the slowest source anywhere
                    // sets the pace; the watchdog's nudge re-checks. A
                    // split file's parts keep their own pace (they move
                    // through the file together).
                    let slowest = progress
                        .source_watermarks
                        .iter()
                        .map(|w| w.load(Ordering::Relaxed))
                        .min()
                        .unwrap_or(i64::MAX);
                    if !source.is_split()
                        && !source.is_live()
                        && source.watermark() > slowest.saturating_add(SOURCE_DRIFT_MS_MAX)
                    {
                        outbox_room.wait().await;
                        continue;
                    }
                    if outbox_len.get() > outbox_max {
                        // Backpressure: wait for the sender tasks.
                        let started = std::time::Instant::now();
                        outbox_room.wait().await;
                        waited_for_room += started.elapsed();
                        continue;
                    }
                    let before = source.rows;
                    // Paced (laminar bench): read only the events whose
                    // send time has come; the batch carries its first one's.
                    let first = source.next_event_index();
                    let (index_limit, origin_ns, behind_before) = match (pace, first) {
                        (Some(p), Some(first)) => match p.step(first) {
                            PaceStep::Wait(wait) => {
                                core.borrow_mut().drain_inbound(&inbound_for_pacing)?;
                                if wait > PACE_SLEEP_NS_MIN {
                                    glommio::timer::sleep(Duration::from_nanos(wait - PACE_SLEEP_NS_MIN / 2)).await;
                                } else {
                                    futures_lite::future::yield_now().await;
                                }
                                continue;
                            }
                            PaceStep::Read {
                                index_limit,
                                origin_ns,
                                behind_before,
                                stop,
                            } => {
                                if stop {
                                    source.stop();
                                }
                                (index_limit, origin_ns, behind_before)
                            }
                        },
                        _ => (u64::MAX, 0, None),
                    };
                    let started = std::time::Instant::now();
                    let was_replaying = source.replaying();
                    let mut batch = source.next_batch_until(batch_rows, index_limit, &mut report)?;
                    if let Some(chunk) = source.split_take_claim() {
                        core.borrow_mut().took_chunk(*i, chunk);
                    }
                    if was_replaying && !source.replaying() {
                        progress.replaying.fetch_sub(1, Ordering::AcqRel);
                    }
                    let logged = source.live_mut().and_then(crate::live::LiveReader::take_log);
                    if let (Some(w), Some(logged)) = (&mut wal, logged) {
                        // Logged before its rows travel on; answered once
                        // the group that holds it is on disk.
                        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&logged).map_err(|e| RunError::Encode {
                            what: format!("a WAL record of source {}", source.name),
                            reason: e.to_string(),
                        })?;
                        w.append(injected, laminar_persistence::wal::RecordKind::Rows, &payload)
                            .await?;
                        if let Some(live) = source.live() {
                            live.inbox.borrow_mut().on_logged(w.next_lsn());
                        }
                    }
                    progress.rows_in.fetch_add(source.rows - before, Ordering::Relaxed);
                    if let (Some(behind), Some(first), Some(last)) = (behind_before, first, source.next_event_index()) {
                        // The batch's events (of this source's kind) spread
                        // evenly over indexes first..last; those before
                        // `behind` were due over a millisecond ago.
                        let span = (last - first).max(1);
                        let late = behind.clamp(first, last) - first;
                        behind_schedule += (source.rows - before) * late / span;
                    }
                    progress
                        .bytes_read
                        .fetch_add(source.bytes_read - bytes_seen[k], Ordering::Relaxed);
                    bytes_seen[k] = source.bytes_read;
                    if metrics_read {
                        publish_source(&progress.metrics.sources[*i], source);
                    }
                    let published =
                        if source.is_done() || !source.has_watermark() || source.is_split() || source.is_live() {
                            i64::MAX
                        } else {
                            source.watermark()
                        };
                    progress.source_watermarks[*i].store(published, Ordering::Relaxed);
                    if source.is_done() {
                        progress.sources_live.fetch_sub(1, Ordering::Relaxed);
                    }
                    // A batch of no rows is the end mark alone: what it
                    // flushes is not a result of any event.
                    batch.set_origin_ns(if batch.is_empty() { 0 } else { origin_ns });
                    if let (Some(p), true) = (pace, source.is_done()) {
                        // Read everything; what follows is the final flush.
                        read_ns = read_ns.max(p.now_ns());
                    }
                    if batch.is_inert() {
                        // A split part decoded a chunk; its token decides.
                        // The claim it sent goes out now, not after the
                        // chunks it may decode next: without this yield a
                        // reader decoding ahead held its peers' tokens and
                        // claims in the outbox for up to twelve chunks,
                        // and the watchdog's 5 ms rounds set the pace.
                        core.borrow_mut().busy += started.elapsed();
                        if has_peers {
                            futures_lite::future::yield_now().await;
                        }
                        continue;
                    }
                    let delivered = core.borrow_mut().deliver(Input::Source(*i), &batch);
                    core.borrow_mut().busy += started.elapsed();
                    delivered?;
                    if let Some(w) = &mut wal {
                        if w.commit_due(std::time::Instant::now()) {
                            wal_commit(w, id, &sources, &progress).await?;
                        }
                    }
                    if has_peers {
                        // Let this queue's mesh tasks run after every
                        // batch: glommio preempts between queues, not
                        // between tasks of one queue, so a busy source
                        // would otherwise hold back the receivers and
                        // senders that share its queue.
                        futures_lite::future::yield_now().await;
                    } else {
                        yield_if_preempted().await;
                    }
                }
                if checkpoints {
                    let positions = source_positions(id, &mut sources)?;
                    core.borrow_mut().sources_finished(positions)?;
                }
                // Where a shard's sources stood still: the first figure to
                // look at when one shard of a run is less busy than another.
                tracing::debug!(
                    shard = id,
                    waited_for_input_ms = waited_for_input.as_millis() as u64,
                    waited_for_room_ms = waited_for_room.as_millis() as u64,
                    "sources done"
                );
                Ok::<_, RunError>((sources, behind_schedule, read_ns))
            },
            event_queue,
        )
        .expect("the event queue exists")
    };
    let (sources, behind_schedule, read_ns) = source_task.await?;

    // Wait until every node here has seen the end of every input; only a
    // peer's message can change that, and each one notifies `progressed`.
    set_phase(progress, id, Phase::Draining);
    loop {
        core.borrow_mut().drain_inbound(&inbound)?;
        if core.borrow().nodes_complete() {
            break;
        }
        check_abort(progress)?;
        if receivers_live.get() == 0 {
            return Err(RunError::Mesh(
                "no input is left open but this shard has not seen the end of input".into(),
            ));
        }
        progressed.wait().await;
    }
    set_phase(progress, id, Phase::Closing);
    // No tick may emit after `Done`.
    drop(ticker);
    // `Done` is the last message to every peer, so a channel that closes
    // without it means the peer failed.
    for peer in (0..config.shards).filter(|&p| p != id) {
        core.borrow_mut().send(peer, MeshMsg::Done);
    }
    // Close the outboxes: sender tasks drain them, then drop their mesh
    // senders, which closes the channels.
    core.borrow_mut().outboxes.iter_mut().for_each(|o| *o = None);
    for t in sender_tasks {
        t.await?;
    }
    // Wait for every peer's `Done`, taking messages here too. The
    // receiver tasks are not awaited: one that was never scheduled again
    // must not hold the shard (they are cancelled when dropped).
    loop {
        core.borrow_mut().drain_inbound(&inbound)?;
        if core.borrow().done_received == config.shards - 1 {
            break;
        }
        if let Some(e) = task_error.borrow_mut().take() {
            return Err(e);
        }
        check_abort(progress)?;
        if receivers_live.get() == 0 {
            return Err(RunError::Mesh("a peer closed its channel before finishing".into()));
        }
        progressed.wait().await;
    }
    drop(receiver_tasks);
    if let Some(e) = task_error.borrow_mut().take() {
        return Err(e);
    }
    check_abort(progress)?;
    assert_eq!(
        core.borrow().done_received,
        config.shards - 1,
        "every receiver ended on Done"
    );
    drop(watchdog);
    if rescued.get() > 0 {
        // Late (a long synchronous step held the shard) or lost (glommio's
        // cross-executor wake); either way the watchdog moved it on.
        tracing::debug!(
            shard = id,
            count = rescued.get(),
            "the mesh watchdog woke channel ends that waited two rounds although they could go on"
        );
    }

    // Flush sinks on the main queue (housekeeping, not the event path).
    set_phase(progress, id, Phase::Flushing);
    // Cancelled tasks may still hold the core until the executor drops
    // them: take what is needed out of it instead of unwrapping it.
    let (mut sinks, nodes, busy) = {
        let mut c = core.borrow_mut();
        (std::mem::take(&mut c.sinks), std::mem::take(&mut c.nodes), c.busy)
    };
    let mut sinks = glommio::spawn_local_into(
        async move {
            for s in sinks.iter_mut().flatten() {
                s.close().await?;
            }
            Ok::<_, RunError>(sinks)
        },
        main_queue,
    )
    .expect("the main queue exists")
    .await?;
    Ok(ShardReport {
        sources: sources
            .iter()
            .map(|(i, s)| (*i, s.name.clone(), s.rows, s.malformed))
            .collect(),
        nodes: nodes.iter().map(|d| d.operator().metrics()).collect(),
        sinks: sinks
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s.name.clone(), s.rows)))
            .collect(),
        busy,
        latency: crate::pace::merge(sinks.iter_mut().flatten().filter_map(Sink::take_latency)),
        behind_schedule,
        events_generated: sources
            .iter()
            .filter_map(|(_, s)| s.next_event_index())
            .max()
            .unwrap_or(0),
        read_ns,
        restore: restore_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_exec::agg::Accumulator;
    use laminar_exec::batch::Op;

    fn node_msg(batch: Batch) -> MeshMsg {
        MeshMsg::Node {
            node: 3,
            input: 0,
            batch,
        }
    }

    /// Queued batches for one node input merge, but partial aggregates and
    /// rows never share a batch: an aggregate's combined input carries
    /// both, batch by batch (`Combiner::partition`).
    #[test]
    fn merging_keeps_partial_aggregates_and_rows_apart() {
        let rows = || {
            let mut b = Batch::new(3);
            b.push(Op::Insert, &[Value::Int(1), Value::Ts(5), Value::Int(1)]);
            b
        };
        let partials = || {
            let mut b = Batch::combined(3, 1);
            b.push_partial(
                [Value::Int(1), Value::Ts(5), Value::Int(2)],
                [Accumulator::CountStar { rows: 2 }],
            );
            b
        };
        let mut msg = node_msg(partials());
        assert!(
            merge(&mut msg, node_msg(rows())).is_some(),
            "rows stay out of a batch of partials"
        );
        assert!(
            merge(&mut msg, node_msg(partials())).is_none(),
            "partials merge with partials"
        );
        let mut msg = node_msg(rows());
        assert!(
            merge(&mut msg, node_msg(partials())).is_some(),
            "partials stay out of a batch of rows"
        );
        assert!(merge(&mut msg, node_msg(rows())).is_none(), "rows merge with rows");
        let MeshMsg::Node { batch, .. } = msg else {
            unreachable!()
        };
        assert_eq!(batch.len(), 2);
    }
}
