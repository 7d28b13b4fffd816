//! What a shard builds before it runs: its sources (through the connector
//! registry, `source::open`), shard 0's sinks, the plan's nodes restored
//! from a checkpoint, and the alignment state of checkpoints.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use laminar_exec::operator::Driven;
use laminar_exec::plan::{Input, PhysicalPlan};

use super::config::ShardConfig;
use super::core::Sinks;
use super::support::exec_error;
use crate::checkpoint::{Align, ShardCheckpoint, ShardRestore, SinkAlign};
use crate::error::RunError;
use crate::net::ingest::LiveLimits;
use crate::net::subscribe::Hub;
use crate::source::split::SourceSplit;
use crate::source::Source;
use crate::topology::Topology;

/// `laminar serve`'s part of a shard's set-up: what it listens on and the
/// live limits (defaults, no listeners, for `laminar run`).
pub(super) struct Listening {
    pub source_listeners: Vec<Option<std::net::TcpListener>>,
    pub sink_listeners: Vec<Option<std::net::TcpListener>>,
    pub limits: LiveLimits,
    pub subscriber_buffer_bytes: usize,
}

/// Opens the sources shard `id` reads: those it owns and its part of
/// every spread one.
pub(super) fn open_sources(
    id: usize,
    plan: &PhysicalPlan,
    topo: &Topology,
    config: &ShardConfig,
    splits: &[Option<SourceSplit>],
    restore: Option<&ShardRestore>,
    listening: &mut Listening,
) -> Result<Vec<(usize, Source)>, RunError> {
    let mut sources = Vec::new();
    for (i, node) in plan.sources.iter().enumerate() {
        if splits[i].is_none() && topo.source_owner[i] != id {
            continue;
        }
        let cx = crate::source::OpenContext {
            index: i,
            shard: id,
            shards: config.shards,
            split: splits[i].as_ref(),
            resume: restore.and_then(|r| r.sources[i].as_ref()),
            listener: listening.source_listeners.get_mut(i).and_then(Option::take),
            limits: listening.limits,
            clock: Arc::clone(&config.clock),
            logged: config.wal_dir.is_some(),
        };
        sources.push((i, crate::source::open(node, cx)?));
    }
    Ok(sources)
}

/// A tcp sink's subscribers and the listener they connect to.
pub(super) type Subscribers = (usize, Rc<RefCell<Hub>>, std::net::TcpListener);

/// Opens the sinks (on shard 0; none elsewhere), each continuing from its
/// committed position when resuming; returns them and the subscriber
/// hubs of tcp sinks.
pub(super) async fn open_sinks(
    id: usize,
    plan: &PhysicalPlan,
    config: &ShardConfig,
    restore: Option<&ShardRestore>,
    listening: &mut Listening,
) -> Result<(Sinks, Vec<Subscribers>), RunError> {
    if id != 0 {
        return Ok((Sinks::remote(), Vec::new()));
    }
    let stdout_sinks = crate::sink::stdout_sinks(&plan.sinks);
    let mut hubs = Vec::new();
    let mut sinks = Vec::with_capacity(plan.sinks.len());
    for (k, s) in plan.sinks.iter().enumerate() {
        let cx = crate::sink::SinkContext {
            stdout_sinks,
            pace: config.pace,
            resume: restore.and_then(|r| r.sinks[k].as_ref()).map(|p| (p.bytes, p.rows)),
            listener: listening.sink_listeners.get_mut(k).and_then(Option::take),
            subscriber_buffer_bytes: listening.subscriber_buffer_bytes,
        };
        let (sink, subscribers) = crate::sink::open(s, cx)?;
        if let Some((hub, listener)) = subscribers {
            hubs.push((k, hub, listener));
        }
        sinks.push(sink);
    }
    if config.direct_file_sinks {
        for s in &mut sinks {
            s.go_direct().await?;
        }
    }
    Ok((Sinks::owned(sinks), hubs))
}

/// The plan's nodes as this shard drives them, restored from the
/// checkpoint when resuming.
pub(super) fn build_nodes(
    plan: &PhysicalPlan,
    topo: &Topology,
    restore: Option<&ShardRestore>,
) -> Result<Vec<Driven>, RunError> {
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
    if let Some(r) = restore {
        for (part, bytes) in &r.parts {
            let n = *part as usize;
            let node = nodes.get_mut(n).ok_or_else(|| RunError::Recovery {
                dir: r.dir.clone(),
                reason: format!(
                    "the checkpoint has state for node {n}, the plan has {}",
                    plan.nodes.len()
                ),
            })?;
            node.restore(bytes).map_err(exec_error(plan, n))?;
        }
    }
    Ok(nodes)
}

/// The alignment state of a run that takes checkpoints: every node's
/// ports, and on shard 0 every sink's senders.
pub(super) fn checkpoint_state(
    id: usize,
    plan: &PhysicalPlan,
    topo: &Topology,
    config: &ShardConfig,
    restore: Option<&ShardRestore>,
) -> Option<ShardCheckpoint> {
    if !config.checkpoints {
        return None;
    }
    let restored_epoch = restore.map_or(0, |r| r.epoch);
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
                if let Some(p) = restore.and_then(|r| r.sinks[k].as_ref()) {
                    align.restore_ended(&p.ended_senders);
                }
                align
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(ShardCheckpoint::new(
        restored_epoch,
        node_align,
        sink_align,
        config.snapshot_fork_bytes_min,
    ))
}
