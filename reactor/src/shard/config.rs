//! The knobs of the shard runtime, in one place, units in the names.

use std::sync::Arc;
use std::time::Duration;

use laminar_exec::time::Clock;

use crate::clock::SystemClock;
use crate::pace::Pace;

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
    /// Bytes of rows waiting behind checkpoint barriers (for a slower
    /// shard's barrier) at which a shard stops reading its sources.
    pub held_bytes_max: usize,
    /// Bytes in this shard's outboxes and the mesh channels it sends on
    /// at which it stops reading its sources.
    pub mesh_bytes_max: usize,
    /// Shares of the event queue (sources, operators, exchanges).
    pub event_shares: usize,
    /// Shares of the main queue (sink flushes and housekeeping).
    pub main_shares: usize,
    /// Preemption target of the event queue: how long the main queue may
    /// wait while the event queue is busy. glommio arms its preemption
    /// timer at the shortest target of the queues with work, the event
    /// queue's own included, so it also sets how often the event path is
    /// interrupted (see `EVENT_LATENCY_MS_DEFAULT`).
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

/// Default `ShardConfig::event_latency_ms`. Each expiry of glommio's
/// preemption timer cost the event path about 16 µs on this VM (a timer
/// interrupt, the executor's io_uring poll, the timer re-armed): at 1 ms,
/// 1.5 such gaps per millisecond, and q2's p99 at 1 M events/s was 25 µs
/// where the host's own stalls allow 1 µs; at 20 ms it was 4.7 µs. Only
/// housekeeping (watchdog, metrics, subscriber writes) runs on the main
/// queue, and it runs at once whenever the event queue is idle; a shard's
/// own mesh messages are taken by the source loop between batches, not
/// left for the executor's poll.
pub const EVENT_LATENCY_MS_DEFAULT: u64 = 20;

/// Default `ShardConfig::held_bytes_max`: 32 MiB, some 64 batches of
/// 4096 narrow rows. Without a bound, a shard whose peer is slow (a busy
/// core) went on reading while its sink held everything behind the
/// peer's late barrier: 1.2 GB in seconds.
pub const HELD_BYTES_MAX_DEFAULT: usize = 32 << 20;
/// Default `ShardConfig::mesh_bytes_max`: 32 MiB. The message bounds
/// alone (`outbox_messages_max`, `channel_messages_max`, rows per merged
/// message) let wide rows take ten times that.
pub const MESH_BYTES_MAX_DEFAULT: usize = 32 << 20;

impl ShardConfig {
    pub fn new(shards: usize, cpus: Vec<usize>, batch_rows: usize) -> ShardConfig {
        assert!(shards >= 1 && !cpus.is_empty() && batch_rows >= 1);
        ShardConfig {
            shards,
            cpus,
            batch_rows,
            channel_messages_max: 64,
            outbox_messages_max: 256,
            held_bytes_max: HELD_BYTES_MAX_DEFAULT,
            mesh_bytes_max: MESH_BYTES_MAX_DEFAULT,
            event_shares: 1000,
            main_shares: 100,
            event_latency_ms: EVENT_LATENCY_MS_DEFAULT,
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
