//! Checkpoints: barriers in band, aligned snapshots, and the coordinator
//! that makes them durable.
//!
//! A checkpoint is an *epoch* `e` (1, 2, …). The coordinator (the thread
//! that started the run) requests it by raising
//! `Control::epochs`. Every shard's source loop, at
//! its next batch boundary, records where each of its sources stands and
//! sends *barrier* `e` after the rows it has read, to every consumer, on
//! the same paths (and mesh channels) the rows take. A node instance
//! *aligns* on `e` once every one of its ports has delivered barrier `e`
//! or ended (its watermark is the end of input): it snapshots its state
//! (`Driven::checkpoint`) and sends barrier `e` on. Rows that reach a port
//! after its barrier, while other ports still owe theirs, wait in the
//! node's queue and are fed after the snapshot; so every snapshot holds
//! exactly the effect of the input before the barriers. Sinks (shard 0)
//! align the same way over the shards that send to them, then write out
//! what they buffered and note their committed length.
//!
//! A shard whose nodes, sources and sinks have all reached `e` (a node
//! that has ended counts with its final state) sends its *piece* of the
//! checkpoint to the coordinator. The coordinator writes each piece to the
//! RocksDB store as it comes (`laminar_persistence::store`, incremental),
//! and once it has every shard's: syncs the sink and dead-letter files,
//! writes the manifest (the commit point), and lets the store drop what
//! no longer counts. Only then is `e + 1` requested, so one checkpoint is
//! in flight at a time. All durable I/O happens on the coordinator's
//! thread: shards only copy state into bytes.
//!
//! Recovery (`Coordinator::open` with an existing manifest): each shard
//! builds its nodes, restores their snapshots, seeks its sources to their
//! recorded positions, and cuts file sinks back to their committed length;
//! the run then continues as if it had never stopped.
//!
//! **Invariant:** a port that has delivered barrier `e` feeds nothing more
//! to its node until the node has aligned on `e` (`Align::blocked`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use laminar_exec::batch::{Batch, WATERMARK_END};
use laminar_exec::plan::{PhysicalPlan, SinkConnector, SourceConnector};
use laminar_persistence::manifest::{
    self, Manifest, NodeRecord, SinkPosition, SourcePosition, SourceRecord, StreamRecord,
};
use laminar_persistence::store::{CheckpointStore, ShardIndex};
use laminar_persistence::Faults;

use crate::control::Control;
use crate::error::RunError;
use crate::source::{Source, SourceState};

/// How a run keeps durable state (`laminar run --state-dir`).
#[derive(Debug, Clone)]
pub struct Durability {
    pub state_dir: PathBuf,
    /// Time from one completed checkpoint to the next request.
    pub interval: Duration,
    /// Checkpoint after every this many rows a shard's sources read
    /// instead (deterministic positions, for tests): the shard requests
    /// it and its sources wait until it is complete.
    pub every_rows: Option<u64>,
    /// A node whose state is at least this many bytes (about, see
    /// `Operator::state_bytes`) is snapshotted by a forked process
    /// (`cow`), so its shard stops only for the fork; smaller ones are
    /// copied on the shard. None: always copy.
    pub fork_bytes_min: Option<usize>,
    /// Fault injection (tests); `Faults::none()` otherwise.
    pub faults: Faults,
    /// Streams, tables and sources to start empty (or from their
    /// beginning) although the checkpoint has them (`--reset NAME`).
    pub resets: Vec<String>,
}

/// `Durability::fork_bytes_min` unless configured: below this a copy on
/// the shard is about as quick as a fork (the fork's cost follows the
/// whole process's page tables, the copy about 1 ms per MB).
pub const FORK_BYTES_MIN_DEFAULT: usize = 16 << 20;

/// What one shard contributes to checkpoint `epoch`.
pub struct Piece {
    pub shard: usize,
    pub epoch: u64,
    /// Node snapshots, as (node index, snapshot), serialized by the
    /// coordinator.
    pub parts: Vec<(u32, laminar_exec::snapshot::Deferred)>,
    pub sources: Vec<SourcePosition>,
    pub sinks: Vec<SinkPosition>,
}

/// What a shard restores at start.
#[derive(Debug, Clone, Default)]
pub struct ShardRestore {
    /// The state directory it was read from (for errors).
    pub dir: PathBuf,
    pub epoch: u64,
    /// Node snapshots as read back, aligned so they decode in place.
    pub parts: laminar_persistence::store::ReadParts,
    /// By source index: the state of this shard's instance.
    pub sources: Vec<Option<SourceState>>,
    /// By sink index (shard 0): its committed position.
    pub sinks: Vec<Option<SinkPosition>>,
    /// (source index in the checkpoint's plan, in this plan), for the
    /// WAL's records, which name sources by index.
    pub wal_sources: Vec<(u32, u32)>,
}

/// Something waiting at a node port (or sink sender) behind a barrier.
pub(crate) enum Held {
    Rows(Batch),
    Barrier(u64),
}

/// What waits behind barriers, in arrival order: (input, sender, item).
pub(crate) type HeldQueue = VecDeque<(usize, usize, Held)>;

/// Barrier alignment over a set of slots: a node's ports, or the shards
/// that send to a sink.
pub(crate) struct Align {
    /// The last epoch aligned on (snapshotted or committed, passed on).
    pub aligned: u64,
    /// Per slot: the last barrier epoch it delivered.
    seen: Vec<u64>,
    /// What arrived on blocked slots, in arrival order: (input, sender).
    held: HeldQueue,
    /// What `held`'s rows weigh (`Batch::approx_bytes`): while a slow
    /// sender's barrier is awaited, what the others send piles up here,
    /// so the source loop holds back on it (`ShardCore::held_bytes`).
    held_bytes: usize,
}

impl Align {
    pub fn new(slots: usize, epoch: u64) -> Align {
        Align {
            aligned: epoch,
            seen: vec![epoch; slots],
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }

    /// Whether `slot` has delivered a barrier not aligned on yet: what it
    /// sends now must wait (`hold`).
    pub fn blocked(&self, slot: usize) -> bool {
        self.seen[slot] > self.aligned
    }

    pub fn hold(&mut self, input: usize, sender: usize, held: Held) {
        if let Held::Rows(batch) = &held {
            self.held_bytes += batch.approx_bytes();
        }
        self.held.push_back((input, sender, held));
    }

    /// What waits behind barriers, in bytes.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Whether some slot has delivered a barrier not aligned on yet.
    pub fn waiting(&self) -> bool {
        self.seen.iter().any(|&e| e > self.aligned)
    }

    /// Barrier `epoch` from `slot`, which is not blocked.
    pub fn arrive(&mut self, slot: usize, epoch: u64) {
        assert!(
            epoch == self.aligned + 1 && self.seen[slot] < epoch,
            "barriers arrive in epoch order, one per slot"
        );
        self.seen[slot] = epoch;
    }

    /// The epoch to align on now, if any: the next one, once every slot
    /// has delivered its barrier or `ended`, and at least one delivered it.
    pub fn ready(&self, ended: impl Fn(usize) -> bool) -> Option<u64> {
        let next = self.aligned + 1;
        let mut any = false;
        for (slot, &seen) in self.seen.iter().enumerate() {
            if seen >= next {
                any = true;
            } else if !ended(slot) {
                return None;
            }
        }
        any.then_some(next)
    }

    /// Aligns on `epoch`; returns what waited, to be fed again in order.
    pub fn align(&mut self, epoch: u64) -> HeldQueue {
        self.aligned = epoch;
        self.held_bytes = 0;
        std::mem::take(&mut self.held)
    }
}

/// Alignment state of one sink (shard 0): over the shards that send to
/// it, which end when their end-of-input mark arrives.
pub(crate) struct SinkAlign {
    pub align: Align,
    /// The shards that send to it.
    senders: Vec<usize>,
    ended: Vec<bool>,
}

impl SinkAlign {
    pub fn new(senders: Vec<usize>, epoch: u64) -> SinkAlign {
        let n = senders.len();
        SinkAlign {
            align: Align::new(n, epoch),
            senders,
            ended: vec![false; n],
        }
    }

    pub fn slot(&self, sender: usize) -> usize {
        self.senders
            .iter()
            .position(|&s| s == sender)
            .expect("sink rows come from the shards that send to it")
    }

    /// Notes an end-of-input mark from `slot`.
    pub fn observe(&mut self, slot: usize, batch: &Batch) {
        if batch.last_watermark() == Some(WATERMARK_END) {
            self.ended[slot] = true;
        }
    }

    pub fn ready(&self) -> Option<u64> {
        self.align.ready(|slot| self.ended[slot])
    }

    pub fn complete(&self) -> bool {
        self.ended.iter().all(|&e| e)
    }

    /// The senders that have ended, for the sink's position.
    pub fn ended_senders(&self) -> Vec<u32> {
        self.senders
            .iter()
            .zip(&self.ended)
            .filter(|(_, &e)| e)
            .map(|(&s, _)| s as u32)
            .collect()
    }

    /// Restores which senders had ended at the checkpoint.
    pub fn restore_ended(&mut self, ended: &[u32]) {
        for (s, flag) in self.senders.iter().zip(&mut self.ended) {
            *flag = ended.contains(&(*s as u32));
        }
    }
}

/// A shard's checkpoint bookkeeping.
pub(crate) struct ShardCheckpoint {
    /// The epoch being collected (the last one requested that this shard
    /// knows of); equal to `reported` when none is in flight.
    pub epoch: u64,
    pub reported: u64,
    pub nodes: Vec<Align>,
    pub sinks: Vec<SinkAlign>,
    /// Snapshots of nodes that aligned on `epoch`.
    pub parts: Vec<(u32, laminar_exec::snapshot::Deferred)>,
    /// See `Durability::fork_bytes_min`.
    pub fork_bytes_min: Option<usize>,
    /// Positions of this shard's sources at `epoch`, once recorded.
    pub sources: Option<Vec<SourcePosition>>,
    /// Committed sink positions at `epoch` (shard 0).
    pub sink_positions: Vec<Option<SinkPosition>>,
    /// The source loop has finished: the final positions, which every
    /// later checkpoint repeats.
    pub final_sources: Option<Vec<SourcePosition>>,
}

impl ShardCheckpoint {
    /// Bytes of rows waiting behind barriers at this shard's nodes and
    /// sinks.
    pub fn held_bytes(&self) -> usize {
        self.nodes.iter().map(Align::held_bytes).sum::<usize>()
            + self.sinks.iter().map(|s| s.align.held_bytes()).sum::<usize>()
    }

    pub fn new(epoch: u64, nodes: Vec<Align>, sinks: Vec<SinkAlign>, fork_bytes_min: Option<usize>) -> ShardCheckpoint {
        let sink_count = sinks.len();
        ShardCheckpoint {
            epoch,
            reported: epoch,
            nodes,
            sinks,
            parts: Vec::new(),
            fork_bytes_min,
            sources: None,
            sink_positions: vec![None; sink_count],
            final_sources: None,
        }
    }

    /// Takes note that `epoch` is being collected.
    pub fn start(&mut self, epoch: u64) {
        if epoch > self.epoch {
            assert_eq!(self.epoch, self.reported, "one checkpoint in flight at a time");
            assert_eq!(epoch, self.epoch + 1, "epochs are requested in order");
            self.epoch = epoch;
            if let Some(done) = &self.final_sources {
                self.sources = Some(done.clone());
            }
        }
    }
}

/// Where `source` (read on `shard`) stands now, encoded for the manifest.
pub fn source_position(shard: usize, source: &mut Source) -> Result<SourcePosition, RunError> {
    let state = source.position()?;
    Ok(SourcePosition {
        name: source.name().to_string(),
        shard: shard as u32,
        offset: state.offset,
        records: state.rows,
        state: encode_source_state(source.name(), &state)?,
    })
}

/// A source's state as the manifest holds it: an rkyv archive.
pub(crate) fn encode_source_state(name: &str, state: &SourceState) -> Result<Vec<u8>, RunError> {
    rkyv::to_bytes::<rkyv::rancor::Error>(state)
        .map(|b| b.to_vec())
        .map_err(|e| RunError::Encode {
            what: format!("the position of source {name}"),
            reason: e.to_string(),
        })
}

pub(crate) fn decode_source_state(dir: &Path, p: &SourcePosition) -> Result<SourceState, RunError> {
    laminar_persistence::from_archive::<SourceState>(&p.state).map_err(|e| RunError::Recovery {
        dir: dir.to_path_buf(),
        reason: format!("the position of source {} does not decode: {e}", p.name),
    })
}

/// Every shard's node snapshots of `manifest`'s checkpoint, with its
/// index; parts of dropped or reset streams left out, the rest numbered
/// by the node they restore in this plan (`evolution.node_parts`). One
/// thread per shard: reading back is RocksDB lookups, copies and
/// checksums, and the cores are idle until the shards start.
fn read_parts(
    store: &CheckpointStore,
    manifest: &Manifest,
    evolution: &crate::evolve::Evolution,
) -> Result<Vec<(laminar_persistence::store::ReadParts, ShardIndex)>, RunError> {
    let part_to_node: fxhash::FxHashMap<u32, u32> = evolution
        .node_parts
        .iter()
        .enumerate()
        .filter_map(|(n, p)| Some(((*p)?, n as u32)))
        .collect();
    let read: Vec<_> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..manifest.shards)
            .map(|shard| scope.spawn(move || store.read(manifest.epoch, shard)))
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("a checkpoint reader thread does not panic"))
            .collect()
    });
    read.into_iter()
        .map(|r| {
            let (parts, index) = r?;
            let parts = parts
                .into_iter()
                .filter_map(|(part, bytes)| Some((*part_to_node.get(&part)?, bytes)))
                .collect();
            Ok((parts, index))
        })
        .collect()
}

/// A sink's senders that had ended, on another shard count: all of the
/// new ones when all of the old ones had (an input that ended sends no
/// second end), else none (each will send its end).
pub(crate) fn rescaled_ended_senders(
    plan: &PhysicalPlan,
    sink: usize,
    old: usize,
    new: usize,
    ended: &[u32],
) -> Vec<u32> {
    let unsplit = vec![false; plan.sources.len()];
    let senders = |shards: usize| -> Vec<u32> {
        let topo = crate::topology::Topology::new(plan, shards, &unsplit);
        (0..shards)
            .filter(|&sh| match plan.sinks[sink].input {
                laminar_exec::plan::Input::Node(n) => topo.node_active[n][sh],
                laminar_exec::plan::Input::Source(i) => topo.source_active[i][sh],
            })
            .map(|sh| sh as u32)
            .collect()
    };
    if senders(old).iter().all(|s| ended.contains(s)) {
        senders(new)
    } else {
        Vec::new()
    }
}

/// One hash of the whole pipeline: every identity in the plan
/// (`laminar_exec::identity`), in no particular order.
pub fn plan_fingerprint(plan: &PhysicalPlan) -> u64 {
    plan.identity().fingerprint()
}

/// What the manifest records of the plan's definitions.
pub(crate) fn plan_records(plan: &PhysicalPlan) -> (Vec<StreamRecord>, Vec<SourceRecord>) {
    use laminar_exec::identity::DefinitionKind;
    let id = plan.identity();
    let streams = id
        .definitions
        .iter()
        .filter(|d| matches!(d.kind, DefinitionKind::Stream | DefinitionKind::Table))
        .map(|d| StreamRecord {
            name: d.name.clone(),
            kind: d.kind.word().to_string(),
            identity: id.definition_identity(d),
            text: d.text.clone(),
            nodes: d
                .nodes
                .clone()
                .map(|n| NodeRecord {
                    part: n as u32,
                    identity: id.nodes[n],
                })
                .collect(),
        })
        .collect();
    let sources = plan
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| SourceRecord {
            name: s.name.clone(),
            index: i as u32,
            identity: id.sources[i],
            position_key: id.source_positions[i],
            text: id.source_text(i).to_string(),
        })
        .collect();
    (streams, sources)
}

/// The coordinator's side: requests checkpoints, writes them, recovers.
pub struct Coordinator {
    dir: PathBuf,
    store: CheckpointStore,
    faults: Faults,
    shards: usize,
    fingerprint: u64,
    interval: Duration,
    every_rows: Option<u64>,
    /// Per shard: its index at the last checkpoint it wrote.
    indexes: Vec<ShardIndex>,
    /// The last complete checkpoint (0: none).
    pub completed: u64,
    requested: u64,
    requested_at: Instant,
    completed_at: Instant,
    pieces: Vec<Option<Piece>>,
    state_bytes: u64,
    state_bytes_written: u64,
    /// Files to sync before a manifest: file sinks and dead-letter files.
    sink_paths: Vec<Option<PathBuf>>,
    dead_letters: Vec<PathBuf>,
    /// Durations of completed checkpoints (request to manifest).
    pub durations: Vec<Duration>,
    /// The checkpoint the run resumed from, if it did.
    resumed_from: Option<u64>,
    /// Reading the manifest and every shard's state back at start.
    pub load: Duration,
    /// The last completed checkpoint: state bytes, and bytes it wrote.
    pub last_state_bytes: u64,
    pub last_written_bytes: u64,
    /// The final checkpoint of a stopping run is requested: no more.
    stopping: bool,
    /// Names of the tcp sources, whose positions are WAL LSNs.
    live_sources: Vec<String>,
    /// Rows plus bytes read when the last checkpoint was requested
    /// (`u64::MAX` before the first, so a run's first is never skipped).
    activity_at_request: u64,
    /// The plan's definitions and sink identities, for every manifest.
    streams: Vec<StreamRecord>,
    source_defs: Vec<SourceRecord>,
    sink_identities: Vec<(String, u64)>,
    /// What the restart did differently from a plain resume (changed
    /// SQL), one line each.
    pub evolution: Vec<String>,
}

/// The WALs of `laminar serve`'s tcp sources, under the state directory.
pub const WAL_DIR: &str = "wal";

/// Durations kept for the summary (a long-running serve takes many).
const DURATIONS_KEPT: usize = 4096;

/// What a durable run's checkpoints did, for the summary.
#[derive(Debug, Clone, Default)]
pub struct CheckpointSummary {
    pub dir: PathBuf,
    /// The checkpoint the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// Reading the state back (RocksDB) and restoring it into operators.
    pub load: Duration,
    pub restore: Duration,
    /// Checkpoints completed during the run, and the last one's number.
    pub completed: usize,
    pub last_epoch: u64,
    /// Request-to-manifest time of each completed checkpoint.
    pub durations: Vec<Duration>,
    pub last_state_bytes: u64,
    pub last_written_bytes: u64,
    /// What the restart did differently from a plain resume.
    pub evolution: Vec<String>,
}

impl Coordinator {
    /// Opens (or creates) the state directory. Returns the coordinator and,
    /// when a checkpoint exists, what each shard restores.
    pub fn open(
        durability: &Durability,
        plan: &PhysicalPlan,
        shards: usize,
    ) -> Result<(Coordinator, Option<Vec<ShardRestore>>), RunError> {
        let dir = &durability.state_dir;
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            operation: "creating state directory",
            path: dir.clone(),
            source,
        })?;
        let fingerprint = plan_fingerprint(plan);
        let (streams, source_defs) = plan_records(plan);
        let identity = plan.identity();
        let manifest = manifest::read(dir)?;
        let store = CheckpointStore::open(&dir.join("checkpoints"), durability.faults.clone())?;
        let mut coordinator = Coordinator {
            dir: dir.clone(),
            store,
            faults: durability.faults.clone(),
            shards,
            fingerprint,
            interval: durability.interval,
            every_rows: durability.every_rows,
            indexes: vec![ShardIndex::default(); shards],
            completed: 0,
            requested: 0,
            requested_at: Instant::now(),
            completed_at: Instant::now(),
            stopping: false,
            activity_at_request: u64::MAX,
            live_sources: plan
                .sources
                .iter()
                .filter(|s| matches!(s.connector, SourceConnector::Tcp { .. }))
                .map(|s| s.name.clone())
                .collect(),
            pieces: (0..shards).map(|_| None).collect(),
            state_bytes: 0,
            state_bytes_written: 0,
            sink_paths: plan
                .sinks
                .iter()
                .map(|s| match &s.connector {
                    SinkConnector::File { path, .. } => Some(path.clone()),
                    _ => None,
                })
                .collect(),
            dead_letters: plan
                .sources
                .iter()
                .filter_map(|s| match &s.connector {
                    SourceConnector::File {
                        dead_letter: Some(p), ..
                    }
                    | SourceConnector::Tcp {
                        dead_letter: Some(p), ..
                    } => Some(p.clone()),
                    _ => None,
                })
                .collect(),
            durations: Vec::new(),
            resumed_from: None,
            load: Duration::ZERO,
            last_state_bytes: 0,
            last_written_bytes: 0,
            streams,
            source_defs,
            sink_identities: plan
                .sinks
                .iter()
                .zip(&identity.sinks)
                .map(|(s, &i)| (s.name.clone(), i))
                .collect(),
            evolution: Vec::new(),
        };
        let loading = Instant::now();
        let Some(manifest) = manifest else {
            return Ok((coordinator, None));
        };
        let refuse = |reason: String| RunError::Recovery {
            dir: dir.clone(),
            reason,
        };
        let evolution = crate::evolve::plan_restart(&manifest, plan, shards, &durability.resets).map_err(&refuse)?;
        let refusals = evolution.refusals();
        if !refusals.is_empty() {
            return Err(refuse(format!(
                "a restart with this script would lose state or mix definitions in its sinks:\n  {}\n\
                 (`laminar state diff {} SCRIPT` shows the whole decision; a new --state-dir starts over)",
                refusals.join("\n  "),
                dir.display()
            )));
        }
        if evolution.changed() {
            for c in evolution
                .changes
                .iter()
                .filter(|c| c.outcome != crate::evolve::Outcome::Keep)
            {
                tracing::info!(change = %c.describe(), "the script changed since the checkpoint");
                coordinator.evolution.push(c.describe());
            }
        }
        let (mut manifest, mut evolution) = (manifest, evolution);
        if manifest.shards as usize != shards {
            // Another shard count: the checkpoint is rewritten for it
            // first (`rescale`), then restored as any other.
            crate::evolve::prepare_rescale(dir, &manifest)?;
            let moving = Instant::now();
            let old_parts = read_parts(&coordinator.store, &manifest, &evolution)?
                .into_iter()
                .map(|(parts, _)| parts)
                .collect::<Vec<_>>();
            let rewrite = crate::rescale::Rewrite {
                dir,
                store: &coordinator.store,
                faults: &coordinator.faults,
                plan,
                shards,
                live_sources: &coordinator.live_sources,
            };
            let moved = crate::rescale::rewrite(&rewrite, &manifest, &evolution, &old_parts)?;
            tracing::info!(
                from = manifest.shards,
                to = shards,
                epoch = moved.epoch,
                ms = moving.elapsed().as_secs_f64() * 1e3,
                "moved the checkpoint's state to another shard count"
            );
            manifest = moved;
            evolution = crate::evolve::plan_restart(&manifest, plan, shards, &durability.resets).map_err(&refuse)?;
        }
        let mut restores = Vec::with_capacity(shards);
        for (shard, read) in read_parts(&coordinator.store, &manifest, &evolution)?
            .into_iter()
            .enumerate()
        {
            let (parts, index) = read;
            coordinator.indexes[shard] = index;
            let mut sources = vec![None; plan.sources.len()];
            for p in manifest.sources.iter().filter(|p| p.shard as usize == shard) {
                if let Some(i) = evolution.restored_source(&p.name) {
                    sources[i] = Some(decode_source_state(dir, p)?);
                }
            }
            let mut sinks = vec![None; plan.sinks.len()];
            if shard == 0 {
                for p in &manifest.sinks {
                    if let Some(k) = evolution.restored_sink(&p.name) {
                        sinks[k] = Some(p.clone());
                    }
                }
            }
            restores.push(ShardRestore {
                dir: dir.clone(),
                epoch: manifest.epoch,
                parts,
                sources,
                sinks,
                wal_sources: evolution.wal_sources.clone(),
            });
        }
        // What a checkpoint that never completed may have left.
        coordinator.store.collect(manifest.epoch, shards as u32)?;
        coordinator.completed = manifest.epoch;
        coordinator.requested = manifest.epoch;
        coordinator.resumed_from = Some(manifest.epoch);
        coordinator.load = loading.elapsed();
        tracing::info!(
            epoch = manifest.epoch,
            dir = %dir.display(),
            "resuming from checkpoint"
        );
        Ok((coordinator, Some(restores)))
    }

    /// The summary of the run's checkpoints; `restore` is the slowest
    /// shard's restore time.
    pub fn summary(&self, restore: Duration) -> CheckpointSummary {
        CheckpointSummary {
            dir: self.dir.clone(),
            resumed_from: self.resumed_from,
            load: self.load,
            restore,
            completed: self.durations.len(),
            last_epoch: self.completed,
            durations: self.durations.clone(),
            last_state_bytes: self.last_state_bytes,
            last_written_bytes: self.last_written_bytes,
            evolution: self.evolution.clone(),
        }
    }

    /// Requests the next checkpoint when one is due: none in flight, the
    /// interval passed since the last, some source still reading, and
    /// something read since the last request (an idle `serve` does not
    /// write a manifest every interval; what a live source did without
    /// reading, such as a watermark moved by an idle timeout, is in its
    /// WAL).
    pub fn tick(&mut self, progress: &Control) {
        // Shards may have requested one themselves (`every_rows`).
        self.requested = self.requested.max(progress.epochs.requested.load(Ordering::Acquire));
        if self.stopping {
            return;
        }
        let live = progress.alignment.reading.load(Ordering::Relaxed) > 0;
        let activity = progress
            .run
            .rows_in
            .load(Ordering::Relaxed)
            .wrapping_add(progress.run.bytes_read.load(Ordering::Relaxed));
        if self.every_rows.is_none()
            && self.requested == self.completed
            && live
            && activity != self.activity_at_request
            && self.completed_at.elapsed() >= self.interval
        {
            self.activity_at_request = activity;
            self.requested += 1;
            self.requested_at = Instant::now();
            progress.epochs.requested.store(self.requested, Ordering::Release);
        }
    }

    /// Requests the checkpoint that ends a stopping run, once none is in
    /// flight; no other is requested after it. Returns its epoch.
    pub fn request_final(&mut self, progress: &Control) -> Option<u64> {
        self.requested = self.requested.max(progress.epochs.requested.load(Ordering::Acquire));
        if self.requested != self.completed {
            return None;
        }
        self.stopping = true;
        self.requested += 1;
        self.requested_at = Instant::now();
        progress.epochs.requested.store(self.requested, Ordering::Release);
        Some(self.requested)
    }

    /// Takes one shard's piece; completes the checkpoint with the last.
    pub fn on_piece(&mut self, mut piece: Piece, progress: &Control) -> Result<(), RunError> {
        self.requested = self.requested.max(progress.epochs.requested.load(Ordering::Acquire));
        assert_eq!(piece.epoch, self.requested, "pieces of the checkpoint in flight only");
        let shard = piece.shard;
        let serializing = Instant::now();
        // Taken out: the piece is kept (positions) until the checkpoint
        // completes, its state no longer.
        let parts = std::mem::take(&mut piece.parts)
            .into_iter()
            .map(|(node, snapshot)| {
                snapshot.bytes().map(|b| (node, b)).map_err(|source| RunError::Exec {
                    stream: format!("node {node}"),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let serialize_ms = serializing.elapsed().as_secs_f64() * 1e3;
        let writing = Instant::now();
        let stats = self
            .store
            .write(piece.epoch, shard as u32, &parts, &mut self.indexes[shard])?;
        tracing::debug!(
            epoch = piece.epoch,
            shard,
            bytes = stats.state_bytes,
            written = stats.bytes_written,
            serialize_ms,
            ms = writing.elapsed().as_secs_f64() * 1e3,
            since_request_ms = self.requested_at.elapsed().as_secs_f64() * 1e3,
            "checkpoint piece stored"
        );
        self.state_bytes += stats.state_bytes;
        self.state_bytes_written += stats.bytes_written;
        assert!(self.pieces[shard].is_none(), "one piece per shard");
        self.pieces[shard] = Some(piece);
        if self.pieces.iter().all(Option::is_some) {
            self.complete()?;
            progress.epochs.completed.store(self.completed, Ordering::Release);
            let m = &progress.metrics;
            m.checkpoints_completed.store(self.completed, Ordering::Relaxed);
            let last = self.durations.last().map_or(0, |d| d.as_nanos());
            m.checkpoint_last_ns
                .store(u64::try_from(last).unwrap_or(u64::MAX), Ordering::Relaxed);
            m.checkpoint_last_state_bytes
                .store(self.last_state_bytes, Ordering::Relaxed);
            m.checkpoint_last_written_bytes
                .store(self.last_written_bytes, Ordering::Relaxed);
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<(), RunError> {
        let epoch = self.requested;
        let pieces: Vec<Piece> = self.pieces.iter_mut().map(|p| p.take().expect("all here")).collect();
        // State and output the manifest will vouch for must be on disk first.
        self.store.make_durable()?;
        let to_sync = self.sink_paths.iter().flatten().chain(&self.dead_letters);
        for path in to_sync {
            self.faults.check(laminar_persistence::FaultPoint::SinkCommit)?;
            sync_file(path)?;
        }
        let mut sources = Vec::new();
        let mut sinks = Vec::new();
        for p in pieces {
            sources.extend(p.sources);
            sinks.extend(p.sinks);
        }
        // Where each shard's WAL stands at this checkpoint: its tcp
        // sources' positions (all alike on one shard).
        let mut wal_lsns: Vec<Option<u64>> = vec![None; self.shards];
        for p in sources.iter().filter(|p| self.live_sources.contains(&p.name)) {
            let slot = &mut wal_lsns[p.shard as usize];
            *slot = Some(slot.map_or(p.offset, |l| l.min(p.offset)));
        }
        let manifest = Manifest {
            epoch,
            plan_fingerprint: self.fingerprint,
            shards: self.shards as u32,
            key_groups: crate::topology::KEY_GROUPS,
            wal_lsns: wal_lsns.iter().map(|l| l.unwrap_or(0)).collect(),
            sources,
            sinks: sinks
                .into_iter()
                .map(|mut p| {
                    if let Some((_, id)) = self.sink_identities.iter().find(|(n, _)| *n == p.name) {
                        p.identity = *id;
                    }
                    p
                })
                .collect(),
            streams: self.streams.clone(),
            source_defs: self.source_defs.clone(),
            state_bytes: self.state_bytes,
            state_bytes_written: self.state_bytes_written,
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        };
        manifest::write(&self.dir, &manifest, &self.faults)?;
        self.store.collect(epoch, self.shards as u32)?;
        // The log before a checkpoint's position is never read again.
        for (shard, lsn) in wal_lsns.iter().enumerate() {
            if let Some(lsn) = lsn {
                laminar_persistence::wal::delete_segments_before(&self.dir.join(WAL_DIR), shard as u32, *lsn)?;
            }
        }
        self.completed = epoch;
        self.completed_at = Instant::now();
        if self.durations.len() == DURATIONS_KEPT {
            self.durations.remove(0);
        }
        self.durations.push(self.requested_at.elapsed());
        self.last_state_bytes = self.state_bytes;
        self.last_written_bytes = self.state_bytes_written;
        tracing::debug!(
            epoch,
            state_bytes = self.state_bytes,
            written = self.state_bytes_written,
            ms = self.requested_at.elapsed().as_secs_f64() * 1e3,
            "checkpoint complete"
        );
        self.state_bytes = 0;
        self.state_bytes_written = 0;
        Ok(())
    }
}

fn sync_file(path: &Path) -> Result<(), RunError> {
    match std::fs::File::open(path) {
        Ok(f) => f.sync_data().map_err(|source| RunError::Io {
            operation: "syncing",
            path: path.to_path_buf(),
            source,
        }),
        // Not created yet: nothing to sync.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RunError::Io {
            operation: "syncing",
            path: path.to_path_buf(),
            source,
        }),
    }
}
