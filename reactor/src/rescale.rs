//! A restart on another shard count (`--shards`, `shards.count`), made
//! atomic.
//!
//! Keyed state lives where its key group's owner is (`topology`): on
//! another shard count, most groups have another owner. The coordinator
//! moves them before any shard starts: it reads every old shard's node
//! snapshots, makes each new shard's from the old shards whose key groups
//! overlap (`Driven::rescaled`, through `Operator::rescale`: snapshots
//! merged and filtered as snapshots, never restored into operators here)
//! and writes them as a new checkpoint of the new shard count: parts, then a manifest (epoch + 1)
//! with the same source positions (each source on the shard that reads
//! it now; a tcp source's at the start of a new WAL) and the same sink
//! positions. Only then is the old WAL deleted (the checkpoint covers all
//! of it: `evolve::prepare_rescale` refused otherwise). A crash before
//! the new manifest leaves the old checkpoint and WAL as they were; one
//! after it leaves a plain checkpoint of the new shard count. The run then
//! restores from it as from any other.

use std::path::Path;

use laminar_exec::operator::Driven;
use laminar_exec::plan::PhysicalPlan;
use laminar_persistence::manifest::{self, Manifest, SinkPosition, SourcePosition};
use laminar_persistence::store::{CheckpointStore, ReadParts, ShardIndex};
use laminar_persistence::Faults;

use crate::error::RunError;
use crate::evolve::Evolution;
use crate::topology::Topology;

/// A node whose state could not be moved, and why.
type NodeFailure = (usize, laminar_exec::error::ExecError);

/// What `rewrite` needs of the coordinator.
pub(crate) struct Rewrite<'a> {
    pub dir: &'a Path,
    pub store: &'a CheckpointStore,
    pub faults: &'a Faults,
    pub plan: &'a PhysicalPlan,
    pub shards: usize,
    /// Names of the tcp sources (their positions are WAL positions).
    pub live_sources: &'a [String],
}

/// Writes the checkpoint of `manifest`, taken on `manifest.shards`
/// shards, again for `w.shards` shards (see the module doc); returns the
/// new manifest. `old_parts`: each old shard's node snapshots, numbered
/// by this plan's nodes (dropped and reset streams left out).
pub(crate) fn rewrite(
    w: &Rewrite<'_>,
    manifest: &Manifest,
    evolution: &Evolution,
    old_parts: &[ReadParts],
) -> Result<Manifest, RunError> {
    let (plan, shards) = (w.plan, w.shards);
    let old = manifest.shards as usize;
    let topo = Topology::new(plan, shards, &vec![false; plan.sources.len()]);
    let epoch = manifest.epoch + 1;
    let (mut state_bytes, mut written) = (0, 0);
    for id in 0..shards {
        let nodes: Vec<Driven> = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| Driven::with_inputs(n.spec.build(), &topo.port_inputs(i)))
            .collect();
        let parts = rescaled_parts(plan, id, shards, &nodes, old, old_parts).map_err(|(n, e)| RunError::Recovery {
            dir: w.dir.to_path_buf(),
            reason: format!(
                "moving the state of stream {} from {old} shard(s) to {shards}: {e}",
                plan.nodes[n].name
            ),
        })?;
        let stats = w.store.write(epoch, id as u32, &parts, &mut ShardIndex::default())?;
        state_bytes += stats.state_bytes;
        written += stats.bytes_written;
    }
    w.store.make_durable()?;
    let mut sources = Vec::new();
    for p in &manifest.sources {
        let Some(i) = evolution.restored_source(&p.name) else {
            continue;
        };
        let mut p: SourcePosition = p.clone();
        p.shard = topo.source_owner[i] as u32;
        if w.live_sources.contains(&p.name) {
            // Its WAL goes: a new one starts at 0 where it is read now.
            let mut state = crate::checkpoint::decode_source_state(w.dir, &p)?;
            state.offset = 0;
            p.offset = 0;
            p.state = crate::checkpoint::encode_source_state(&p.name, &state)?;
        }
        sources.push(p);
    }
    let id = plan.identity();
    let sinks: Vec<SinkPosition> = manifest
        .sinks
        .iter()
        .filter_map(|p| {
            let k = evolution.restored_sink(&p.name)?;
            let mut p = p.clone();
            p.identity = id.sinks[k];
            p.ended_senders = crate::checkpoint::rescaled_ended_senders(plan, k, old, shards, &p.ended_senders);
            Some(p)
        })
        .collect();
    let (streams, source_defs) = crate::checkpoint::plan_records(plan);
    let new = Manifest {
        epoch,
        plan_fingerprint: id.fingerprint(),
        shards: shards as u32,
        key_groups: crate::topology::KEY_GROUPS,
        wal_lsns: vec![0; shards],
        sources,
        sinks,
        streams,
        source_defs,
        state_bytes,
        state_bytes_written: written,
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    };
    manifest::write(w.dir, &new, w.faults)?;
    w.store.collect(epoch, shards as u32)?;
    let wal = w.dir.join(crate::checkpoint::WAL_DIR);
    if wal.exists() {
        std::fs::remove_dir_all(&wal).map_err(|source| RunError::Io {
            operation: "removing the WAL the moved checkpoint covers",
            path: wal.clone(),
            source,
        })?;
    }
    Ok(new)
}

/// The node snapshots of shard `id` of `shards` (node index, bytes) made
/// from a checkpoint taken on another shard count: a keyed node from the old shards whose key groups overlap
/// its own, keeping the keys it owns now; a node on shard 0 alone (no
/// keys) from the old shard 0; any other node (stateless: counters and
/// watermarks) from the old shards whose first key group it owns now.
/// Each old shard's counters go to the new owner of its first key group.
fn rescaled_parts(
    plan: &PhysicalPlan,
    id: usize,
    shards: usize,
    nodes: &[Driven],
    old: usize,
    old_parts: &[ReadParts],
) -> Result<Vec<(u32, Vec<u8>)>, NodeFailure> {
    use crate::topology::{group_range, owner_of_group, shard_of};
    use laminar_exec::plan::Placement;
    let mine = group_range(id, shards);
    let counters_here = |o: usize| owner_of_group(group_range(o, old).start, shards) == id;
    let mut out = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let placements = plan.nodes[n].input_placements();
        let keyed = placements.iter().any(|p| matches!(p, Placement::Keyed(_)));
        let single = placements.iter().all(|p| matches!(p, Placement::Single));
        let from: Vec<usize> = (0..old)
            .filter(|&o| {
                if keyed {
                    let theirs = group_range(o, old);
                    theirs.start < mine.end && mine.start < theirs.end
                } else if single {
                    id == 0 && o == 0
                } else {
                    counters_here(o)
                }
            })
            .collect();
        let parts: Vec<laminar_exec::rescale::Part<'_>> = from
            .iter()
            .filter_map(|&o| {
                let (_, bytes) = old_parts[o].iter().find(|(part, _)| *part as usize == n)?;
                Some(laminar_exec::rescale::Part {
                    bytes: &bytes[..],
                    counters: !keyed || counters_here(o),
                })
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        let keep = |key: &[laminar_exec::types::Value]| !keyed || shard_of(key, shards) == id;
        out.push((n as u32, node.rescaled(&parts, &keep).map_err(|e| (n, e))?));
    }
    Ok(out)
}
