//! Live counters of a running pipeline, for `laminar serve`'s admin
//! endpoint: shards publish, any thread reads.
//!
//! Every counter is a relaxed atomic written by one shard (or by the
//! coordinator) and read by the admin thread. Shards publish only when
//! there is a reader (`laminar serve`): sources after each batch, the
//! watchdog node, sink and shard figures every `PUBLISH_EVERY_BEATS`
//! beats (about every 100 ms); the coordinator after each checkpoint.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};

/// Watchdog beats (5 ms each) between two publications of node, sink and
/// shard figures.
pub const PUBLISH_EVERY_BEATS: u64 = 20;

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// Per source (plan index).
#[derive(Debug)]
pub struct SourceCounters {
    pub rows: AtomicU64,
    pub malformed: AtomicU64,
    pub bytes: AtomicU64,
    /// Event-time watermark (`i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Event times held to the skew bound (live sources).
    pub outliers: AtomicU64,
    pub connections: AtomicU64,
    /// Live sources: bytes received and not yet decoded, and times a
    /// connection stopped reading because that was at its limit.
    pub inbox_bytes: AtomicU64,
    pub backpressure_waits: AtomicU64,
    /// Time its connections spent waiting for room, in nanoseconds.
    pub backpressure_ns: AtomicU64,
}

impl Default for SourceCounters {
    fn default() -> SourceCounters {
        SourceCounters {
            rows: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            outliers: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            inbox_bytes: AtomicU64::new(0),
            backpressure_waits: AtomicU64::new(0),
            backpressure_ns: AtomicU64::new(0),
        }
    }
}

/// Per node (plan index), per shard: summed when read.
#[derive(Debug)]
pub struct NodeCounters {
    pub rows_in: Vec<AtomicU64>,
    pub rows_out: Vec<AtomicU64>,
    pub late_dropped: Vec<AtomicU64>,
}

/// Per sink (plan index; sinks live on shard 0).
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub rows: AtomicU64,
    pub subscribers: AtomicU64,
    pub subscribers_dropped: AtomicU64,
}

/// Per shard.
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Time spent processing, in nanoseconds.
    pub busy_ns: AtomicU64,
    /// Messages waiting in the shard's outboxes to its peers.
    pub queue_depth: AtomicU64,
    /// Bytes of rows waiting behind checkpoint barriers for a slower
    /// shard's, now and at most so far.
    pub held_bytes: AtomicU64,
    pub held_bytes_peak: AtomicU64,
    /// Bytes in its outboxes and the mesh channels it sends on.
    pub mesh_bytes: AtomicU64,
    /// Time its source loop waited for room (full outboxes, too many
    /// rows behind a barrier), in nanoseconds.
    pub held_back_ns: AtomicU64,
    /// Time the shard made no progress while input waited for it, in
    /// nanoseconds (measured by the runner; see `runner::StallWatch`).
    pub stall_ns: AtomicU64,
    /// Group commits of the shard's WAL (fdatasync), their total and
    /// longest duration in nanoseconds.
    pub wal_syncs: AtomicU64,
    pub wal_sync_ns_total: AtomicU64,
    pub wal_sync_ns_max: AtomicU64,
}

/// Everything the admin endpoint shows.
#[derive(Debug)]
pub struct Metrics {
    pub sources: Vec<SourceCounters>,
    pub nodes: Vec<NodeCounters>,
    pub sinks: Vec<SinkCounters>,
    pub shards: Vec<ShardCounters>,
    pub checkpoints_completed: AtomicU64,
    /// The last checkpoint: request to manifest, in nanoseconds.
    pub checkpoint_last_ns: AtomicU64,
    pub checkpoint_last_state_bytes: AtomicU64,
    pub checkpoint_last_written_bytes: AtomicU64,
    /// Every shard restored its state, replayed its WAL and reads its
    /// sources.
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new(shards: usize, sources: usize, nodes: usize, sinks: usize) -> Metrics {
        Metrics {
            sources: (0..sources).map(|_| SourceCounters::default()).collect(),
            nodes: (0..nodes)
                .map(|_| NodeCounters {
                    rows_in: zeros(shards),
                    rows_out: zeros(shards),
                    late_dropped: zeros(shards),
                })
                .collect(),
            sinks: (0..sinks).map(|_| SinkCounters::default()).collect(),
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
            checkpoints_completed: AtomicU64::new(0),
            checkpoint_last_ns: AtomicU64::new(0),
            checkpoint_last_state_bytes: AtomicU64::new(0),
            checkpoint_last_written_bytes: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(0, 0, 0, 0)
    }
}

/// The sum over shards of one per-shard counter.
pub fn sum(counters: &[AtomicU64]) -> u64 {
    counters
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}
