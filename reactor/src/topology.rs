//! How a plan is spread over shards: which edges are exchanges, where each
//! row goes, and which input ports each node has.
//!
//! Every shard runs every node. A node that keeps keyed state (a GROUP BY
//! with keys, a session window, a table) receives its input through an
//! exchange: each row goes to the shard that owns its key, by a fixed hash.
//! A GROUP BY without keys, and every sink, live on shard 0. Stateless
//! nodes (projection, window annotation) run wherever their input is.
//!
//! A node instance is *active* on a shard when rows can ever reach it
//! there: a source only on the shard that reads it (every shard for a
//! split file, see `split`), a keyed node on every
//! shard, a single-shard node on shard 0, a local node wherever its inputs
//! are active. A node's input watermark is the minimum over its ports: one
//! port per active sending shard for an exchange, one for a local edge.
//! Exchanges copy every watermark mark to every active destination, so
//! each destination sees, for each sender, exactly that sender's marks in
//! order. Inactive instances neither send nor are waited for: a shard that
//! never reads a source must not hold a consumer's watermark back, or
//! late-row decisions would depend on timing.

use std::hash::{Hash, Hasher};

use laminar_exec::batch::{Batch, Segment};
use laminar_exec::expr::Expr;
use laminar_exec::operators::combine::{self, Combiner};
use laminar_exec::plan::{Input, OperatorSpec, PhysicalPlan};
use laminar_exec::types::Value;

pub use laminar_exec::plan::Placement;

/// The ports of one node input: `base + k` is the port of the k-th
/// sending shard in `senders` (a local edge has one port, `base`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub base: usize,
    pub senders: Vec<usize>,
    pub local: bool,
}

impl Topology {
    /// The logical input of each of node `node`'s ports, for `Driven`.
    pub fn port_inputs(&self, node: usize) -> Vec<usize> {
        let mut inputs = vec![0; self.port_count[node]];
        for (k, p) in self.ports[node].iter().enumerate() {
            let width = if p.local { 1 } else { p.senders.len() };
            for slot in &mut inputs[p.base..p.base + width] {
                *slot = k;
            }
        }
        inputs
    }
}

impl Ports {
    pub fn port_of(&self, sender: usize) -> usize {
        if self.local {
            return self.base;
        }
        let k = self
            .senders
            .iter()
            .position(|&s| s == sender)
            .expect("messages come from active senders");
        self.base + k
    }
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub shards: usize,
    /// Per node, per input: how rows reach that input.
    pub input_placement: Vec<Vec<Placement>>,
    /// Per node, per input.
    pub ports: Vec<Vec<Ports>>,
    /// Per node: total ports.
    pub port_count: Vec<usize>,
    /// Consumers (node, input index) of each source and node.
    pub node_consumers_of_source: Vec<Vec<(usize, usize)>>,
    pub node_consumers_of_node: Vec<Vec<(usize, usize)>>,
    pub sink_consumers_of_source: Vec<Vec<usize>>,
    pub sink_consumers_of_node: Vec<Vec<usize>>,
    /// The shard that reads each source.
    pub source_owner: Vec<usize>,
    /// Whether each source / node instance is active on each shard.
    pub source_active: Vec<Vec<bool>>,
    pub node_active: Vec<Vec<bool>>,
    /// Per node, per input: judge rows against their port's watermark
    /// (`Driven::set_port_exact`).
    pub port_exact: Vec<Vec<bool>>,
    /// Per node: an aggregate whose input rows are combined before they
    /// cross shards (`combine`, `partition_combined`), also on one shard,
    /// where the folding alone saves state lookups.
    pub combine: Vec<bool>,
}

impl Topology {
    /// `split[s]`: source `s` is read by every shard (a split file or
    /// generator, see `split`).
    pub fn new(plan: &PhysicalPlan, shards: usize, split: &[bool]) -> Topology {
        assert_eq!(split.len(), plan.sources.len());
        assert!(shards >= 1);
        // Per node, per input: where that input's rows must be. Only a join
        // keys its inputs differently (each side by its own key columns).
        let input_placement: Vec<Vec<Placement>> = plan.nodes.iter().map(|n| n.input_placements()).collect();
        // Where each node's instances run: as its first input's rows.
        let placement: Vec<&Placement> = input_placement.iter().map(|p| &p[0]).collect();
        let source_owner: Vec<usize> = (0..plan.sources.len()).map(|i| i % shards).collect();
        let source_active: Vec<Vec<bool>> = source_owner
            .iter()
            .zip(split)
            .map(|(&owner, &split)| (0..shards).map(|k| split || k == owner).collect())
            .collect();
        // Rows that still carry a split file's per-position watermark on
        // their port: the source itself, through projections and window
        // annotation (which pass marks on as they come).
        let mut exact_node: Vec<bool> = Vec::new();
        let mut port_exact: Vec<Vec<bool>> = Vec::new();
        for node in &plan.nodes {
            let exact_of = |input: Input, exact_node: &Vec<bool>| match input {
                Input::Source(s) => split[s],
                Input::Node(n) => exact_node[n],
            };
            let flags: Vec<bool> = node.inputs.iter().map(|&i| exact_of(i, &exact_node)).collect();
            let passes_marks = matches!(node.spec, OperatorSpec::Map(_) | OperatorSpec::WindowTvf(_));
            exact_node.push(passes_marks && flags.iter().all(|&f| f));
            port_exact.push(flags);
        }
        let mut node_active: Vec<Vec<bool>> = Vec::new();
        let mut ports = Vec::new();
        let mut port_count = Vec::new();
        for (i, node) in plan.nodes.iter().enumerate() {
            let active_of = |input: Input, active: &Vec<Vec<bool>>| match input {
                Input::Source(s) => source_active[s].clone(),
                Input::Node(n) => active[n].clone(),
            };
            let here: Vec<bool> = match placement[i] {
                Placement::Keyed(_) => vec![true; shards],
                Placement::Single => (0..shards).map(|k| k == 0).collect(),
                Placement::Local => (0..shards)
                    .map(|k| node.inputs.iter().any(|&input| active_of(input, &node_active)[k]))
                    .collect(),
            };
            let mut base = 0;
            let mut node_ports = Vec::new();
            for &input in &node.inputs {
                let local = *placement[i] == Placement::Local;
                let senders: Vec<usize> = if local {
                    Vec::new()
                } else {
                    active_of(input, &node_active)
                        .iter()
                        .enumerate()
                        .filter(|(_, &a)| a)
                        .map(|(k, _)| k)
                        .collect()
                };
                let width = if local { 1 } else { senders.len() };
                node_ports.push(Ports { base, senders, local });
                base += width;
            }
            ports.push(node_ports);
            port_count.push(base.max(1));
            node_active.push(here);
        }
        let combine = (plan.nodes.iter().zip(&input_placement))
            .map(|(n, p)| match &n.spec {
                OperatorSpec::Aggregate(a) => matches!(p[0], Placement::Keyed(_)) && combine::combinable(a),
                _ => false,
            })
            .collect();
        let mut t = Topology {
            shards,
            input_placement,
            ports,
            port_count,
            node_consumers_of_source: vec![Vec::new(); plan.sources.len()],
            node_consumers_of_node: vec![Vec::new(); plan.nodes.len()],
            sink_consumers_of_source: vec![Vec::new(); plan.sources.len()],
            sink_consumers_of_node: vec![Vec::new(); plan.nodes.len()],
            // Spread sources over shards; a source is read by one shard.
            source_owner,
            source_active,
            node_active,
            port_exact,
            combine,
        };
        for (i, node) in plan.nodes.iter().enumerate() {
            for (k, &input) in node.inputs.iter().enumerate() {
                match input {
                    Input::Source(s) => t.node_consumers_of_source[s].push((i, k)),
                    Input::Node(n) => t.node_consumers_of_node[n].push((i, k)),
                }
            }
        }
        for (i, sink) in plan.sinks.iter().enumerate() {
            match sink.input {
                Input::Source(s) => t.sink_consumers_of_source[s].push(i),
                Input::Node(n) => t.sink_consumers_of_node[n].push(i),
            }
        }
        t
    }

    pub fn node_consumers(&self, from: Input) -> &[(usize, usize)] {
        match from {
            Input::Source(s) => &self.node_consumers_of_source[s],
            Input::Node(n) => &self.node_consumers_of_node[n],
        }
    }

    pub fn sink_consumers(&self, from: Input) -> &[usize] {
        match from {
            Input::Source(s) => &self.sink_consumers_of_source[s],
            Input::Node(n) => &self.sink_consumers_of_node[n],
        }
    }
}

/// Keys fall into this many key groups, fixed for a state directory's
/// life (the manifest records it); a shard owns a range of them, so a
/// restart on another shard count moves whole groups between shards.
pub const KEY_GROUPS: u32 = 4096;

/// The key group of a key: the top 12 bits of FxHash of its values after
/// a multiplicative mix. **Invariant:** the mapping never changes between
/// releases (a checkpoint holds each key's state where this puts it);
/// `KEY_GROUPS` is recorded in the manifest.
pub fn group_of(key: &[Value]) -> u32 {
    group_of_values(key.iter())
}

#[inline]
fn group_of_values<'a>(key: impl Iterator<Item = &'a Value>) -> u32 {
    let mut h = fxhash::FxHasher::default();
    for v in key {
        v.hash(&mut h);
    }
    (h.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as u32
}

/// The shard that owns key group `group` on `shards` shards: shard `s`
/// owns the groups `group_range(s, shards)`.
#[inline]
pub fn owner_of_group(group: u32, shards: usize) -> usize {
    (group as usize * shards) / KEY_GROUPS as usize
}

/// The key groups shard `shard` of `shards` owns.
pub fn group_range(shard: usize, shards: usize) -> std::ops::Range<u32> {
    let first = |s: usize| (s * KEY_GROUPS as usize).div_ceil(shards) as u32;
    first(shard)..first(shard + 1)
}

/// The shard that owns a key: the owner of its key group.
pub fn shard_of(key: &[Value], shards: usize) -> usize {
    shard_of_values(key.iter(), shards)
}

/// `shard_of` of the values in order, read in place.
#[inline]
fn shard_of_values<'a>(key: impl Iterator<Item = &'a Value>, shards: usize) -> usize {
    owner_of_group(group_of_values(key), shards)
}

/// Splits a batch by destination shard. Rows keep their order within each
/// destination; every watermark mark goes to every destination at the
/// matching position.
pub fn partition(batch: &Batch, placement: &Placement, shards: usize, key: &mut Vec<Value>) -> Vec<Batch> {
    // A destination's share of the rows, with room for an uneven split:
    // growing a batch row by row copied it several times over.
    let share = batch.len() / shards + batch.len() / (4 * shards) + 1;
    let mut out: Vec<Batch> = (0..shards)
        .map(|_| {
            let mut b = Batch::with_capacity(batch.width(), share);
            b.set_origin_ns(batch.origin_ns());
            b
        })
        .collect();
    // Keys that are bare columns (the usual GROUP BY) are hashed where they
    // are, without a clone into `key`.
    let bare_columns =
        matches!(placement, Placement::Keyed(exprs) if exprs.iter().all(|e| matches!(e, Expr::Column(_))));
    for segment in batch.segments() {
        match segment {
            Segment::Rows(rows) => {
                for (op, row) in rows.iter() {
                    let dest = match placement {
                        Placement::Local => unreachable!("local edges are not partitioned"),
                        Placement::Single => 0,
                        Placement::Keyed(exprs) if bare_columns => shard_of_values(
                            exprs.iter().map(|e| match e {
                                Expr::Column(c) => &row[*c],
                                _ => unreachable!("checked above: every key is a column"),
                            }),
                            shards,
                        ),
                        Placement::Keyed(exprs) => {
                            key.clear();
                            // A failing key expression is NULL, as in the
                            // operator itself.
                            key.extend(exprs.iter().map(|e| e.eval(row).unwrap_or(Value::Null)));
                            shard_of(key, shards)
                        }
                    };
                    out[dest].push(op, row);
                }
            }
            Segment::Watermark(w) => match placement {
                // Only shard 0 holds a single-shard node.
                Placement::Single => out[0].push_mark(w),
                _ => out.iter_mut().for_each(|b| b.push_mark(w)),
            },
        }
    }
    out
}

/// `partition` for an aggregate's combined input: the rows of `batch`
/// folded into partial aggregates (`Combiner`), each sent where its key's
/// rows would go; None when the combiner lets this batch go as rows.
pub fn partition_combined(
    batch: &Batch,
    combiner: &mut Combiner,
    placement: &Placement,
    shards: usize,
) -> Option<Vec<Batch>> {
    let Placement::Keyed(exprs) = placement else {
        unreachable!("only keyed inputs are combined")
    };
    combiner.partition(batch, shards, |row| {
        shard_of_values(
            exprs.iter().map(|e| match e {
                Expr::Column(c) => &row[*c],
                _ => unreachable!("combinable: keys are columns"),
            }),
            shards,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_exec::batch::Op;

    /// Every row must see, in its destination's batch, exactly the
    /// watermark that held before it in the original batch (marks with no
    /// row between them may fold into the last one).
    #[test]
    fn partition_keeps_marks_in_place_for_every_destination() {
        let mut b = Batch::new(1);
        for i in 0..6 {
            b.push(Op::Insert, &[Value::Int(i)]);
            if i % 2 == 1 {
                b.push_mark(i * 10);
            }
        }
        // Row v was preceded by the mark after the last odd row before it.
        // Marks follow rows 1, 3 and 5 (10, 30, 50): rows 2-3 see 10, 4-5 see 30.
        let expected_before = |v: i64| (v >= 2).then(|| (v / 2 * 2 - 1) * 10);
        let parts = partition(&b, &Placement::Keyed(vec![Expr::Column(0)]), 3, &mut Vec::new());
        let rows: usize = parts.iter().map(Batch::len).sum();
        assert_eq!(rows, 6);
        for p in &parts {
            assert_eq!(p.last_watermark(), Some(50), "every destination gets the last mark");
            for (k, (_, row)) in p.rows().enumerate() {
                let v = row[0].as_i64().unwrap();
                let before = p
                    .marks()
                    .iter()
                    .rfind(|m| (m.position as usize) <= k)
                    .map(|m| m.watermark);
                assert_eq!(before, expected_before(v), "watermark before row {v}");
            }
        }
    }

    #[test]
    fn shard_of_is_the_released_mapping_and_columns_hash_in_place() {
        // The formula, written out: checkpoints depend on it (key groups
        // since manifest format 2).
        let released = |key: &[Value], shards: usize| {
            let mut h = fxhash::FxHasher::default();
            key.iter().for_each(|v| v.hash(&mut h));
            let group = (h.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize;
            group * shards / 4096
        };
        let mut b = Batch::new(2);
        for i in -300..300 {
            b.push(Op::Insert, &[Value::Int(i * 7919), Value::Str(format!("k{i}").into())]);
        }
        // The same key, once as bare columns (hashed in place) and once
        // through the expression evaluator.
        let by_columns = Placement::Keyed(vec![Expr::Column(1), Expr::Column(0)]);
        let by_exprs = Placement::Keyed(vec![
            Expr::Column(1),
            Expr::Binary {
                op: laminar_exec::expr::BinaryOp::Add,
                left: Box::new(Expr::Column(0)),
                right: Box::new(Expr::Literal(Value::Int(0))),
            },
        ]);
        for shards in 1..=7 {
            for (_, row) in b.rows() {
                let key = [row[1].clone(), row[0].clone()];
                assert_eq!(shard_of(&key, shards), released(&key, shards));
            }
            let (a, e) = (
                partition(&b, &by_columns, shards, &mut Vec::new()),
                partition(&b, &by_exprs, shards, &mut Vec::new()),
            );
            for (dest, (a, e)) in a.iter().zip(&e).enumerate() {
                assert!(a.rows().eq(e.rows()), "shard {dest} of {shards}");
                for (_, row) in a.rows() {
                    assert_eq!(released(&[row[1].clone(), row[0].clone()], shards), dest);
                }
            }
        }
    }

    #[test]
    fn every_key_group_has_one_owner_and_ranges_tile_the_groups() {
        for shards in 1..=64 {
            let mut next = 0;
            for s in 0..shards {
                let r = group_range(s, shards);
                assert_eq!(r.start, next, "{s} of {shards}");
                for g in r.clone() {
                    assert_eq!(owner_of_group(g, shards), s);
                }
                next = r.end;
            }
            assert_eq!(next, KEY_GROUPS);
        }
    }

    #[test]
    fn shard_of_spreads_small_integers() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(&[Value::Int(i)], 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
