//! Moving a node's state to another shard count (a restart with another
//! `--shards`).
//!
//! Each keyed node's instances hold the keys their shard owns
//! (`shard_of` in the reactor: a key's group, one of `KEY_GROUPS`, and a
//! shard owns a range of groups). After a restart on another shard count,
//! each new instance is restored from the snapshots of the old instances
//! whose groups overlap its own, keeping only the keys it now owns:
//! `Operator::rescale` merges those snapshots into one, in the operator's
//! own snapshot format, which `restore` then reads as usual.
//!
//! Merging follows three rules: keyed entries are filtered by the new
//! owner and concatenated (a key was held by exactly one old instance);
//! watermarks take the minimum (the instances of a keyed node hold the
//! same one at a barrier, and for the others the lower is the safe one);
//! sequence numbers that order entries across keys are renumbered in
//! (time, old instance, old sequence) order, which keeps each key's
//! entries in their order, and counters (`OperatorMetrics`) are summed
//! over the parts flagged `counters`, each old instance's going to exactly
//! one new instance, so the totals stay as they were.

use crate::error::ExecError;
use crate::operator::OperatorMetrics;
use crate::snapshot::ByTimeEntries;
use crate::types::Value;

/// One old instance's snapshot of a node, and whether the new instance
/// takes its counters.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub bytes: &'a [u8],
    pub counters: bool,
}

/// Whether the new instance owns a key.
pub type Keep<'a> = &'a dyn Fn(&[Value]) -> bool;

/// Sums counters into `into` (rows too, unlike `add_counts`).
pub(crate) fn add_metrics(into: &mut OperatorMetrics, m: &OperatorMetrics) {
    into.rows_in += m.rows_in;
    into.rows_out += m.rows_out;
    into.add_counts(m);
}

/// The default `Operator::rescale`: a stateless operator's snapshot is its
/// counters.
pub(crate) fn rescale_metrics(operator: &str, parts: &[Part<'_>]) -> Result<Vec<u8>, ExecError> {
    let mut total = OperatorMetrics::default();
    for p in parts.iter().filter(|p| p.counters) {
        let m: OperatorMetrics = crate::snapshot::decode(operator, p.bytes)?;
        add_metrics(&mut total, &m);
    }
    crate::snapshot::encode(operator, &total)
}

/// Time-ordered entries of several instances (in part order), filtered by
/// `keep` and renumbered 0.. in (time, instance, old sequence) order.
/// Returns the entries and the next free sequence number.
pub(crate) fn merge_by_time<V>(
    lists: Vec<ByTimeEntries<V>>,
    mut keep: impl FnMut(&V) -> bool,
) -> (ByTimeEntries<V>, u64) {
    let mut all: Vec<(i64, usize, u64, V)> = Vec::new();
    for (instance, list) in lists.into_iter().enumerate() {
        for ((t, seq), v) in list {
            if keep(&v) {
                all.push((t, instance, seq, v));
            }
        }
    }
    all.sort_by_key(|e| (e.0, e.1, e.2));
    let n = all.len() as u64;
    let merged = all
        .into_iter()
        .enumerate()
        .map(|(i, (t, _, _, v))| ((t, i as u64), v))
        .collect();
    (merged, n)
}

/// The minimum of watermarks over parts (the first part's if one).
pub(crate) fn min_watermark(acc: &mut Option<i64>, w: i64) {
    *acc = Some(acc.map_or(w, |a| a.min(w)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_time_entries_keep_each_instances_order_and_get_unique_sequences() {
        let a = vec![((5, 0), "a0"), ((5, 1), "a1"), ((9, 2), "a2")];
        let b = vec![((5, 0), "b0"), ((7, 1), "skip"), ((8, 2), "b2")];
        let (m, next) = merge_by_time(vec![a, b], |v| *v != "skip");
        assert_eq!(
            m,
            vec![
                ((5, 0), "a0"),
                ((5, 1), "a1"),
                ((5, 2), "b0"),
                ((8, 3), "b2"),
                ((9, 4), "a2")
            ]
        );
        assert_eq!(next, 5);
    }
}
