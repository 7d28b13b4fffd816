//! What the shards of one run and the thread that started it share: a
//! handful of atomics, grouped by the protocol they serve.
//!
//! - `RunControl`: the abort flag (any failure stops every shard) and the
//!   run-wide intake counters the progress bar reads.
//! - `EpochClock`: the checkpoint epochs, `requested` (by the coordinator,
//!   or by a shard under `Durability::every_rows`), `completed` (its
//!   manifest is durable) and `final_` (the one that ends a stopping
//!   `laminar serve`). **Invariant:** `completed <= requested`, and both
//!   only grow.
//! - `SourceAlignment`: each source's published watermark, so that no
//!   source reads more than `SOURCE_DRIFT_MS_MAX` of event time ahead of
//!   the slowest (see `shard::source_loop`), and how many source instances
//!   still read.
//! - `Liveness`: what each shard is doing (`Phase`), its executor thread
//!   and its watchdog's heartbeat, for stall reports and kicks (see
//!   `runner::kick_stalled`).
//! - `StopProtocol`: `laminar serve`'s orderly stop (SIGTERM): stop
//!   intake, drain, final checkpoint, answer connections, stop.
//!
//! Everything here is written by shards and read by anyone; nothing on
//! the per-row path touches it.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::metrics::Metrics;

/// Everything a run's threads share (see the module doc).
#[derive(Default)]
pub struct Control {
    pub run: RunControl,
    pub epochs: EpochClock,
    pub alignment: SourceAlignment,
    pub liveness: Liveness,
    pub stop: StopProtocol,
    /// Live counters for `laminar serve`'s admin endpoint.
    pub metrics: Metrics,
    /// `SUBSCRIBE`'s taps on streams (`tap.rs`).
    pub taps: crate::tap::Taps,
}

impl Control {
    pub fn new(shards: usize, sources: usize) -> Control {
        Control::with_metrics(shards, sources, 0, 0)
    }

    /// With counters for the plan's nodes and sinks as well.
    pub fn with_metrics(shards: usize, sources: usize, nodes: usize, sinks: usize) -> Control {
        Control {
            taps: crate::tap::Taps::default(),
            metrics: Metrics::new(shards, sources, nodes, sinks),
            alignment: SourceAlignment {
                watermarks: (0..sources).map(|_| AtomicI64::new(i64::MIN)).collect(),
                reading: AtomicUsize::new(0),
            },
            liveness: Liveness {
                phase: (0..shards).map(|_| AtomicU8::new(Phase::Starting as u8)).collect(),
                thread_ids: (0..shards).map(|_| AtomicI32::new(0)).collect(),
                heartbeats: (0..shards).map(|_| AtomicU64::new(0)).collect(),
                progress: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            },
            ..Control::default()
        }
    }
}

/// Whether the run goes on, and how much it has taken in.
#[derive(Default)]
pub struct RunControl {
    /// Set when any shard fails: every shard stops.
    pub abort: AtomicBool,
    pub rows_in: AtomicU64,
    pub bytes_read: AtomicU64,
}

impl RunControl {
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    pub fn set_abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }
}

/// Checkpoint epochs (see the module doc).
#[derive(Default)]
pub struct EpochClock {
    /// The newest checkpoint epoch requested.
    pub requested: AtomicU64,
    /// The newest checkpoint whose manifest is durable.
    pub completed: AtomicU64,
    /// The checkpoint that ends a stopping run (0: none yet).
    pub final_: AtomicU64,
}

/// How far each source has read, in event time.
#[derive(Default)]
pub struct SourceAlignment {
    /// Each source's watermark (by plan index; `i64::MAX` once done, or
    /// for a source that does not take part: no watermark, spread over
    /// shards, or unbounded).
    pub watermarks: Vec<AtomicI64>,
    /// Source instances still reading, over all shards.
    pub reading: AtomicUsize,
}

impl SourceAlignment {
    /// The slowest source's watermark (`i64::MAX` when none holds back).
    pub fn slowest(&self) -> i64 {
        self.watermarks
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// Whether each shard's executor runs, and what it does.
#[derive(Default)]
pub struct Liveness {
    /// What each shard is doing (a `Phase` as u8), for stall reports.
    pub phase: Vec<AtomicU8>,
    /// Each shard's executor thread id (0 until it starts), for kicks.
    pub thread_ids: Vec<AtomicI32>,
    /// Rounds of each shard's watchdog: a count that stops moving means
    /// the executor is not running.
    pub heartbeats: Vec<AtomicU64>,
    /// Batches and messages each shard has processed: a count that stops
    /// moving while input waits for the shard is a stall (`runner`).
    pub progress: Vec<AtomicU64>,
}

impl Liveness {
    pub fn set_phase(&self, shard: usize, phase: Phase) {
        self.phase[shard].store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self, shard: usize) -> Phase {
        Phase::from_u8(self.phase[shard].load(Ordering::Relaxed))
    }
}

/// `laminar serve`'s orderly stop.
#[derive(Default)]
pub struct StopProtocol {
    /// The operator asked to stop (SIGTERM). The runner then stops
    /// intake, has every accepted record processed, takes a final
    /// checkpoint and stops the shards.
    pub shutdown: AtomicBool,
    /// Intake has stopped: live sources take no more arrivals.
    pub intake_stopped: AtomicBool,
    /// Shards whose live sources are drained since intake stopped.
    pub drained: AtomicUsize,
    /// Shards that answered their connections after the final checkpoint.
    pub ready_to_stop: AtomicUsize,
    /// Live sources still replaying their WAL (not ready before it ends).
    pub replaying: AtomicUsize,
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
