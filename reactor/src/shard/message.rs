//! What travels on the mesh between shards, and how a backlog of
//! messages for one place is merged into fuller ones.

use laminar_exec::batch::Batch;

use crate::source::Prefix;

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

impl crate::mesh::Weigh for MeshMsg {
    fn weight(&self) -> usize {
        let body = match self {
            MeshMsg::Node { batch, .. } | MeshMsg::Sink { batch, .. } => batch.approx_bytes(),
            MeshMsg::SinkEncoded { bytes, .. } => bytes.len(),
            _ => 0,
        };
        std::mem::size_of::<MeshMsg>() + body
    }
}

/// Rows in one mesh message at most when outbox messages are coalesced.
const MERGED_ROWS_MAX: usize = 4096;
/// Bytes of encoded sink rows in one mesh message at most, likewise.
const MERGED_BYTES_MAX: usize = 1 << 20;

/// Appends `next` to `msg` when both carry rows for the same place and the
/// result stays under `MERGED_ROWS_MAX` rows; otherwise hands `next` back.
/// Messages are only ever merged with the one right before them, so the
/// order of rows and marks on the channel is unchanged.
pub(super) fn merge(msg: &mut MeshMsg, next: MeshMsg) -> Option<MeshMsg> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_exec::agg::Accumulator;
    use laminar_exec::batch::Op;
    use laminar_exec::types::Value;

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
