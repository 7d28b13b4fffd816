//! The synchronous heart of a shard: a batch is delivered depth-first
//! through the DAG (`deliver`). Where an edge is an exchange the batch is
//! partitioned (or combined into partial aggregates first); the part for
//! this shard continues at once, the others go to the outboxes (`send`).
//! Messages from peers come back in through `on_message`. Barrier
//! alignment and the split-token protocol are `barrier` and `tokens`.
//!
//! **Invariant:** nothing here awaits: every method runs to completion on
//! the shard's thread, so the order of rows and marks on every path is
//! the order they were produced in.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fxhash::FxHashMap;
use glommio::channels::local_channel;
use laminar_exec::batch::{Batch, WATERMARK_END};
use laminar_exec::operator::Driven;
use laminar_exec::operators::combine::Combiner;
use laminar_exec::plan::{Input, OperatorSpec, PhysicalPlan};
use laminar_exec::types::Value;

use super::config::ShardConfig;
use super::message::MeshMsg;
use super::support::{exec_error, ShardEvent};
use crate::checkpoint::{Held, ShardCheckpoint};
use crate::error::RunError;
use crate::mesh::{MeshReceiver, Signal, TryRecv};
use crate::sink::Sink;
use crate::source::Prefix;
use crate::topology::{partition, partition_combined, Placement, Topology};

/// The sinks of the plan, which all live on shard 0: there they are open,
/// on every other shard this is empty and rows for a sink travel to shard
/// 0 (see `ShardCore::deliver`).
pub(super) struct Sinks(Vec<Sink>);

impl Sinks {
    /// Shard 0's sinks.
    pub fn owned(sinks: Vec<Sink>) -> Sinks {
        Sinks(sinks)
    }

    /// Another shard's: none.
    pub fn remote() -> Sinks {
        Sinks(Vec::new())
    }

    /// Sink `k`. **Invariant:** only shard 0 is asked (rows, barriers and
    /// commits for sinks are sent there).
    pub fn get(&mut self, k: usize) -> &mut Sink {
        self.0.get_mut(k).expect("sinks live on shard 0")
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Sink> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn into_vec(self) -> Vec<Sink> {
        self.0
    }
}

pub(super) struct ShardCore {
    pub(super) id: usize,
    pub(super) plan: Arc<PhysicalPlan>,
    pub(super) topo: Arc<Topology>,
    pub(super) nodes: Vec<Driven>,
    pub(super) sinks: Sinks,
    /// Messages for each peer with their weights (`Weigh`), until its
    /// sender task moves them onto the mesh.
    pub(super) outboxes: Vec<Option<local_channel::LocalSender<(MeshMsg, usize)>>>,
    /// What the messages in the outboxes weigh, in bytes.
    pub(super) outbox_bytes: Rc<Cell<usize>>,
    pub(super) outbox_len: Rc<Cell<usize>>,
    pub(super) done_received: usize,
    /// Whether each peer's `Done` has been received.
    pub(super) done_from: Vec<bool>,
    pub(super) key: Vec<Value>,
    /// The `LATE DATA TO` node of each node that has one.
    pub(super) late_stream_of: Vec<Option<usize>>,
    /// Time spent processing so far.
    pub(super) busy: Duration,
    /// The run's shared state: this shard counts its progress there.
    control: Arc<crate::control::Control>,
    /// The most bytes seen waiting behind barriers (`held_bytes`), and
    /// the time the source loop waited for room.
    pub(super) held_bytes_peak: usize,
    pub(super) held_back: Duration,
    /// Prefix tokens of split sources' chunks that arrived, by (source,
    /// chunk), until the source loop takes them.
    pub(super) split_tokens: FxHashMap<(usize, usize), Prefix>,
    /// Tokens for chunks nobody had taken when they were made (chunks go
    /// to whichever reader asks first, see `FileSplit::take`), until the
    /// reader that takes one says so (`SplitClaim`).
    pub(super) held_tokens: FxHashMap<(usize, usize), Prefix>,
    /// Per node: its combiner, for an aggregate whose input is combined
    /// before the exchange (`Topology::combine`).
    pub(super) combiners: Vec<Option<Combiner>>,
    /// Wakes the source loop (a token came).
    pub(super) source_wake: Option<Rc<Signal>>,
    /// Checkpoint alignment, when the run takes checkpoints.
    pub(super) ckpt: Option<ShardCheckpoint>,
    /// On shards other than 0, per sink: the encoder rows for it are
    /// written with here, before they cross the mesh. Only in runs without
    /// checkpoints (a sink's alignment reads the rows' marks) or latency
    /// measurement (which reads their origin), and only for sinks that
    /// write encoded bytes.
    pub(super) encoders: Vec<Option<Box<dyn laminar_exec::format::Encoder>>>,
    /// Bytes per row of the last batch encoded here.
    pub(super) encoded_row_bytes: usize,
    /// `SUBSCRIBE`'s taps on this shard's node outputs.
    pub(super) taps: crate::tap::ShardTaps,
    /// Where pieces of checkpoints go (the coordinator).
    pub(super) events: mpsc::Sender<ShardEvent>,
}

/// What a shard set up for its core.
pub(super) struct Parts {
    pub nodes: Vec<Driven>,
    pub sinks: Sinks,
    pub ckpt: Option<ShardCheckpoint>,
    pub outbox_len: Rc<Cell<usize>>,
    pub outbox_bytes: Rc<Cell<usize>>,
    pub events: mpsc::Sender<ShardEvent>,
    /// Where this shard counts what it processes (`Liveness::progress`).
    pub control: Arc<crate::control::Control>,
}

/// Messages `drain_inbound` takes from one peer before it returns (a
/// mesh channel's worth).
const DRAIN_MESSAGES_MAX: usize = 64;

impl ShardCore {
    pub(super) fn new(
        id: usize,
        plan: &Arc<PhysicalPlan>,
        topo: &Arc<Topology>,
        config: &ShardConfig,
        parts: Parts,
    ) -> ShardCore {
        let Parts {
            nodes,
            sinks,
            ckpt,
            outbox_len,
            outbox_bytes,
            events,
            control,
        } = parts;
        ShardCore {
            id,
            plan: Arc::clone(plan),
            topo: Arc::clone(topo),
            nodes,
            outboxes: Vec::new(),
            outbox_len,
            outbox_bytes,
            done_received: 0,
            done_from: vec![false; config.shards],
            key: Vec::new(),
            late_stream_of: plan.late_stream_of(),
            busy: Duration::ZERO,
            control,
            held_bytes_peak: 0,
            held_back: Duration::ZERO,
            split_tokens: FxHashMap::default(),
            held_tokens: FxHashMap::default(),
            combiners: (plan.nodes.iter().zip(&topo.combine))
                .map(|(n, &c)| match &n.spec {
                    OperatorSpec::Aggregate(a) if c => Some(Combiner::new(a)),
                    _ => None,
                })
                .collect(),
            source_wake: None,
            // On shards other than 0: encoders for sinks that write encoded
            // bytes, in runs without checkpoints (a sink's alignment reads
            // the rows' marks) or latency measurement (which reads their
            // origin).
            encoders: plan
                .sinks
                .iter()
                .map(|s| {
                    let remote = id != 0 && ckpt.is_none() && config.pace.is_none();
                    remote.then(|| Sink::encoder_for(s)).flatten()
                })
                .collect(),
            encoded_row_bytes: 0,
            taps: crate::tap::ShardTaps::new(plan.nodes.len()),
            sinks,
            ckpt,
            events,
        }
    }

    /// Bytes of rows waiting behind checkpoint barriers here (see
    /// `Align`).
    pub(super) fn held_bytes(&self) -> usize {
        self.ckpt
            .as_ref()
            .map_or(0, crate::checkpoint::ShardCheckpoint::held_bytes)
    }

    pub(super) fn send(&mut self, dest: usize, msg: MeshMsg) {
        let outbox = self.outboxes[dest].as_ref().expect("an outbox per peer");
        let weight = crate::mesh::Weigh::weight(&msg);
        self.outbox_len.set(self.outbox_len.get() + 1);
        self.outbox_bytes.set(self.outbox_bytes.get() + weight);
        if outbox.try_send((msg, weight)).is_err() {
            // The sender task has gone: the run is being torn down.
            self.outbox_len.set(self.outbox_len.get() - 1);
            self.outbox_bytes.set(self.outbox_bytes.get() - weight);
        }
    }

    /// Feeds `batch` to input `input` of `node`, as sent by shard `sender`.
    pub(super) fn feed(&mut self, node: usize, input: usize, sender: usize, batch: &Batch) -> Result<(), RunError> {
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
        let width = self.plan.nodes[node].schema.len();
        let mut out = Batch::with_capacity(width, self.nodes[node].output_rows_hint(batch.len()));
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

    /// Delivers a batch produced here to everything that reads `from`.
    pub(super) fn deliver(&mut self, from: Input, batch: &Batch) -> Result<(), RunError> {
        self.control.liveness.progress[self.id].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Input::Node(n) = from {
            self.taps.publish(&self.control.taps, n, batch);
        }
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
                    if combined.is_none() && topo.shards == 1 {
                        // One shard: every key is here, so the exchange
                        // would copy the batch to itself (8% of q7's time).
                        self.feed(node, input, self.id, batch)?;
                        continue;
                    }
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

    pub(super) fn on_message(&mut self, sender: usize, msg: MeshMsg) -> Result<(), RunError> {
        let started = std::time::Instant::now();
        let result = self.on_message_untimed(sender, msg);
        self.busy += started.elapsed();
        result
    }

    pub(super) fn on_message_untimed(&mut self, sender: usize, msg: MeshMsg) -> Result<(), RunError> {
        match msg {
            MeshMsg::Node { node, input, batch } => self.feed(node as usize, input as usize, sender, &batch),
            MeshMsg::Sink { sink, batch } => self.sink_rows(sink as usize, sender, &batch),
            MeshMsg::SinkEncoded { sink, rows, bytes } => {
                debug_assert!(
                    self.ckpt.is_none(),
                    "encoded rows only flow in runs without checkpoints"
                );
                let target = self.sinks.get(sink as usize);
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

    /// Takes messages already queued on the inbound channels, up to
    /// `DRAIN_MESSAGES_MAX` per peer or until glommio asks for
    /// preemption, and processes them; true if some may be left (the
    /// caller yields, then drains again). The shard's main
    /// task calls this whenever it wakes, so progress never depends on
    /// the receiver tasks alone being scheduled (see
    /// `yield_if_preempted`). Both consume on this thread and process
    /// each message before taking the next: order holds.
    ///
    /// The bound matters: a shard slower than its peers (a busy core)
    /// always finds a message waiting, and an unbounded loop here never
    /// returned while they sent: its watchdog stopped, so it took no
    /// part in checkpoints, and the peers' sinks held everything behind
    /// the barrier it never answered.
    pub(super) fn drain_inbound(&mut self, inbound: &[Option<Rc<MeshReceiver<MeshMsg>>>]) -> Result<bool, RunError> {
        let mut taken = 0;
        let mut more = false;
        for (peer, r) in inbound.iter().enumerate() {
            let Some(r) = r else { continue };
            let mut from_peer = 0;
            while let TryRecv::Message(msg) = r.try_recv() {
                taken += 1;
                from_peer += 1;
                self.on_message(peer, msg)?;
                // A message may hold thousands of rows: past the event
                // queue's latency slice, let the caller yield.
                if from_peer == DRAIN_MESSAGES_MAX || glommio::executor().need_preempt() {
                    more = true;
                    break;
                }
            }
        }
        if taken > 0 {
            self.control.liveness.progress[self.id].fetch_add(taken as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(more)
    }

    /// The shortest tick interval of the nodes active here, if any wants
    /// processing-time ticks.
    pub(super) fn tick_interval(&self) -> Option<Duration> {
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
    pub(super) fn tick(&mut self, now_ms: i64) -> Result<(), RunError> {
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
    pub(super) fn nodes_complete(&self) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .all(|(i, n)| !self.topo.node_active[i][self.id] || n.watermark() == WATERMARK_END)
    }

    /// The checkpoint state. **Invariant:** only asked for while
    /// checkpoints are taken (barriers, snapshots and commits flow only
    /// then).
    pub(super) fn ck(&mut self) -> &mut ShardCheckpoint {
        self.ckpt
            .as_mut()
            .expect("barriers flow only when checkpoints are taken")
    }
}
