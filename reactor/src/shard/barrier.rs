//! Checkpoint barriers on a shard (Chandy-Lamport with aligned barriers):
//! a node snapshots when every input port has delivered barrier `e` (or
//! ended), holding what arrives on a port behind its barrier until then;
//! shard 0's sinks commit their position likewise. Once every node, sink
//! and source here has reached `e`, the shard reports its piece to the
//! coordinator (see `checkpoint`).

use std::sync::Arc;

use laminar_exec::batch::{Batch, WATERMARK_END};
use laminar_exec::plan::Input;

use super::core::ShardCore;
use super::message::MeshMsg;
use super::support::{exec_error, ShardEvent};
use crate::checkpoint::{Held, HeldQueue, Piece};
use crate::error::RunError;
use crate::topology::Placement;

impl ShardCore {
    /// Barrier `epoch` arrived on input `input` of `node` from `sender`.
    pub(super) fn barrier_to_node(
        &mut self,
        node: usize,
        input: usize,
        sender: usize,
        epoch: u64,
    ) -> Result<(), RunError> {
        let port = self.topo.ports[node][input].port_of(sender);
        let ck = self.ck();
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
    pub(super) fn try_align_node(&mut self, node: usize) -> Result<(), RunError> {
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
        self.wake_source();
        self.try_report()
    }

    /// A source held back by rows behind a barrier may go on.
    fn wake_source(&self) {
        if let Some(w) = &self.source_wake {
            w.notify();
        }
    }

    /// Snapshots `node` into checkpoint `epoch`'s piece and aligns it
    /// there; returns what waited behind its ports' barriers.
    pub(super) fn snapshot_node(&mut self, node: usize, epoch: u64) -> Result<HeldQueue, RunError> {
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
    pub(super) fn commit_sink(&mut self, sink: usize, epoch: u64) -> Result<HeldQueue, RunError> {
        let target = self.sinks.get(sink);
        let (bytes, rows) = target.commit_position()?;
        let ck = self.ckpt.as_mut().expect("commits only when checkpoints are taken");
        ck.start(epoch);
        ck.sink_positions[sink] = Some(laminar_persistence::manifest::SinkPosition {
            name: target.name.clone(),
            // The coordinator fills it in (it has the plan's identities).
            identity: 0,
            bytes,
            rows,
            ended_senders: ck.sinks[sink].ended_senders(),
        });
        Ok(ck.sinks[sink].align.align(epoch))
    }

    /// Sends barrier `epoch` to everything that reads `from`, on the paths
    /// its rows and marks take (see `topology::partition`).
    pub(super) fn deliver_barrier(&mut self, from: Input, epoch: u64) -> Result<(), RunError> {
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
    pub(super) fn sink_rows(&mut self, sink: usize, sender: usize, batch: &Batch) -> Result<(), RunError> {
        let target = self.sinks.get(sink);
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

    pub(super) fn sink_barrier(&mut self, sink: usize, sender: usize, epoch: u64) -> Result<(), RunError> {
        let ck = self.ck();
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
    pub(super) fn try_align_sink(&mut self, sink: usize) -> Result<(), RunError> {
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
        self.wake_source();
        self.try_report()
    }

    /// Sends this shard's piece of the checkpoint in flight once every
    /// node, source and sink here has reached it. Nodes and sinks that
    /// have ended are complete with their final state.
    pub(super) fn try_report(&mut self) -> Result<(), RunError> {
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
    pub(super) fn inject_barrier(
        &mut self,
        epoch: u64,
        positions: Vec<laminar_persistence::manifest::SourcePosition>,
        live: &[usize],
    ) -> Result<(), RunError> {
        let ck = self.ck();
        ck.start(epoch);
        ck.sources = Some(positions);
        for &i in live {
            self.deliver_barrier(Input::Source(i), epoch)?;
        }
        self.try_report()
    }

    /// The coordinator asked for `requested`; a shard whose source loop
    /// has finished takes part with its final positions.
    pub(super) fn on_checkpoint_request(&mut self, requested: u64) -> Result<(), RunError> {
        let Some(ck) = &mut self.ckpt else { return Ok(()) };
        if requested > ck.epoch && ck.final_sources.is_some() {
            ck.start(requested);
        }
        self.try_report()
    }

    /// The source loop has ended: these positions hold from now on.
    pub(super) fn sources_finished(
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
}
