//! One shard: a glommio executor pinned to a core, running every node of
//! the plan over the rows it owns. The rooms:
//!
//! - `setup`: open sources (through the connector registry) and shard 0's
//!   sinks, build the nodes and restore them from a checkpoint;
//! - `core`: the synchronous DAG delivery (`ShardCore::deliver`, `feed`,
//!   `send`, `on_message`); `barrier`: checkpoint barriers and alignment;
//!   `tokens`: the split-token protocol;
//! - `outbox`: what travels on the mesh and the sender/receiver tasks;
//! - `source_loop`: reading, pacing, backpressure, placing barriers;
//! - `serving`: the watchdog, metrics, `laminar serve`'s stop, ticks;
//! - `wal`: the write-ahead log of sources with intake of their own.
//!
//! Inside a shard everything is synchronous and single-threaded: a batch
//! is delivered depth-first through the DAG. Where an edge is an
//! exchange, the batch is partitioned; the part for this shard continues
//! at once, the others go to per-destination outboxes. Sender tasks move
//! outbox messages onto the bounded mesh channels and receiver tasks feed
//! arriving batches back into `deliver`.
//!
//! Processing never awaits a send, so two shards that send to each other
//! cannot deadlock; backpressure is applied where rows enter: a source
//! stops reading while its shard's outboxes hold more than
//! `outbox_messages_max` messages, and a full mesh channel stops the
//! sender task, so a slow consumer slows every source feeding it.
//!
//! Completion: when every node of a shard has seen the end-of-input
//! watermark, the shard sends `Done` to every peer after its last rows
//! (the channels are FIFO). A shard finishes when it is itself complete
//! and has every peer's `Done`; shard 0, which owns the sinks, has then
//! written every row. A channel that closes before its `Done` means the
//! peer failed, and the run stops.

mod barrier;
mod config;
mod core;
mod message;
mod outbox;
mod serving;
mod setup;
mod source_loop;
mod support;
mod tokens;
mod wal;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::{Latency, Shares};
use laminar_exec::operator::OperatorMetrics;
use laminar_exec::plan::PhysicalPlan;

use self::core::ShardCore;
use crate::checkpoint::ShardRestore;
use crate::control::{Control, Phase};
use crate::error::{MeshFailure, RunError};
use crate::mesh::{MeshEnds, Signal};
use crate::sink::Sink;
use crate::source::split::SourceSplit;
use crate::source::Prefix;
use crate::topology::Topology;

pub use config::{ShardConfig, HELD_BYTES_MAX_DEFAULT, MESH_BYTES_MAX_DEFAULT, SPIN_BEFORE_PARK};
pub use message::MeshMsg;
pub use source_loop::SOURCE_DRIFT_MS_MAX;
use support::check_abort;
pub use support::ShardEvent;

/// What a shard did.
#[derive(Debug, Default)]
pub struct ShardReport {
    pub sources: Vec<(usize, String, u64, u64)>,
    /// Sources (plan index) whose first line was taken as the header
    /// because it names the declared columns.
    pub headers_detected: Vec<usize>,
    pub nodes: Vec<OperatorMetrics>,
    pub sinks: Vec<(usize, String, u64)>,
    /// Time spent processing (source batches, mesh messages, ticks).
    pub busy: Duration,
    /// Paced runs: latency of every row the sinks received (shard 0),
    /// and the events read later than `BEHIND_SCHEDULE_NS` after their
    /// intended send time.
    pub latency: Option<hdrhistogram::Histogram<u64>>,
    pub behind_schedule: u64,
    /// Open-loop runs: how long each event waited to be read.
    pub read_delay: Option<hdrhistogram::Histogram<u64>>,
    /// The furthest position its generators reached in the Nexmark stream.
    pub events_generated: u64,
    /// Paced runs: when (ns after the run's start) its sources were done.
    pub read_ns: u64,
    /// Restoring its nodes from a checkpoint.
    pub restore: Duration,
}

/// Everything a shard needs, sent to its executor thread.
pub struct ShardContext {
    pub id: usize,
    pub plan: Arc<PhysicalPlan>,
    pub topo: Arc<Topology>,
    pub config: ShardConfig,
    pub mesh: Option<MeshEnds<MeshMsg>>,
    pub progress: Arc<Control>,
    pub events: mpsc::Sender<ShardEvent>,
    /// Per source: how it is split over the shards, if it is.
    pub splits: Arc<Vec<Option<SourceSplit>>>,
    /// What to restore from the last checkpoint, when resuming one.
    pub restore: Option<ShardRestore>,
    /// `laminar serve`: this shard's listeners and the live limits.
    pub live: Option<ShardLive>,
}

/// What a shard of `laminar serve` listens on.
pub struct ShardLive {
    /// By source index: the listener of each tcp source this shard owns.
    pub source_listeners: Vec<Option<std::net::TcpListener>>,
    /// By sink index: the listener of each tcp sink (on shard 0).
    pub sink_listeners: Vec<Option<std::net::TcpListener>>,
    pub limits: crate::net::ingest::LiveLimits,
    pub subscriber_buffer_bytes: usize,
}

fn failed(progress: &Control, e: RunError) -> RunError {
    progress.run.set_abort();
    e
}

pub async fn shard_main(ctx: ShardContext) -> Result<ShardReport, RunError> {
    let ShardContext {
        id,
        plan,
        topo,
        config,
        mesh,
        progress,
        events,
        splits,
        restore,
        live,
    } = ctx;
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    progress.liveness.thread_ids[id].store(tid, Ordering::Release);
    // The first failure of a receiver task: reported instead of the
    // `Aborted` the shard's other tasks then see.
    let task_error: Rc<RefCell<Option<RunError>>> = Rc::new(RefCell::new(None));
    let shared = Shared {
        plan: &plan,
        topo: &topo,
        config: &config,
        progress: &progress,
        events: &events,
        task_error: &task_error,
        splits: &splits,
        restore,
        live,
    };
    let result = shard_body(id, mesh, shared).await;
    let result = match result {
        Err(RunError::Aborted) => Err(task_error.borrow_mut().take().unwrap_or(RunError::Aborted)),
        other => other,
    };
    progress.liveness.set_phase(id, Phase::Finished);
    let _ = events.send(ShardEvent::Finished { shard: id });
    result.map_err(|e| failed(&progress, e))
}

/// What `shard_body` borrows from `shard_main`.
struct Shared<'a> {
    plan: &'a Arc<PhysicalPlan>,
    topo: &'a Arc<Topology>,
    config: &'a ShardConfig,
    progress: &'a Arc<Control>,
    events: &'a mpsc::Sender<ShardEvent>,
    task_error: &'a Rc<RefCell<Option<RunError>>>,
    splits: &'a [Option<SourceSplit>],
    restore: Option<ShardRestore>,
    live: Option<ShardLive>,
}

async fn shard_body(id: usize, mesh: Option<MeshEnds<MeshMsg>>, shared: Shared<'_>) -> Result<ShardReport, RunError> {
    let Shared {
        plan,
        topo,
        config,
        progress: control,
        events,
        task_error,
        splits,
        restore,
        live,
    } = shared;
    // Metrics have a reader only in `laminar serve`.
    let metrics_read = live.is_some();
    let mut listening = match live {
        Some(l) => setup::Listening {
            source_listeners: l.source_listeners,
            sink_listeners: l.sink_listeners,
            limits: l.limits,
            subscriber_buffer_bytes: l.subscriber_buffer_bytes,
        },
        None => setup::Listening {
            source_listeners: Vec::new(),
            sink_listeners: Vec::new(),
            limits: crate::net::ingest::LiveLimits::default(),
            subscriber_buffer_bytes: 0,
        },
    };
    let executor = glommio::executor();
    let event_queue = executor.create_task_queue(
        Shares::Static(config.event_shares),
        Latency::Matters(Duration::from_millis(config.event_latency_ms)),
        "events",
    );
    let main_queue = executor.create_task_queue(Shares::Static(config.main_shares), Latency::NotImportant, "main");

    let mut sources = setup::open_sources(id, plan, topo, config, splits, restore.as_ref(), &mut listening)?;
    // The WAL of this shard's sources with intake: what they applied after
    // the checkpoint resumed from is replayed first, then the log goes on.
    let has_intake = sources.iter().any(|(_, s)| s.intake_ref().is_some());
    let wal = match (&config.wal_dir, has_intake) {
        (Some(dir), true) => {
            let renumber = restore.as_ref().map(|r| r.wal_sources.as_slice());
            Some(wal::open_wal(dir, id, &mut sources, renumber).await?)
        }
        _ => None,
    };
    let replaying = sources.iter().filter(|(_, s)| s.replaying()).count();
    control.stop.replaying.fetch_add(replaying, Ordering::AcqRel);
    if metrics_read {
        // A resumed source starts from its checkpointed counts.
        for (i, s) in &sources {
            serving::publish_source(&control.metrics.sources[*i], s);
        }
    }
    let reading = sources.iter().filter(|(_, s)| !s.is_done()).count();
    control.alignment.reading.fetch_add(reading, Ordering::Relaxed);
    let (sinks, hubs) = setup::open_sinks(id, plan, config, restore.as_ref(), &mut listening).await?;
    let restoring = std::time::Instant::now();
    let nodes = setup::build_nodes(plan, topo, restore.as_ref())?;
    let restore_time = restoring.elapsed();
    let ckpt = setup::checkpoint_state(id, plan, topo, config, restore.as_ref());
    let restored_epoch = restore.as_ref().map_or(0, |r| r.epoch);

    let outbox_len = Rc::new(Cell::new(0usize));
    let outbox_bytes = Rc::new(Cell::new(0usize));
    let core = Rc::new(RefCell::new(ShardCore::new(
        id,
        plan,
        topo,
        config,
        self::core::Parts {
            nodes,
            sinks,
            ckpt,
            outbox_len: Rc::clone(&outbox_len),
            outbox_bytes: Rc::clone(&outbox_bytes),
            events: events.clone(),
            control: Arc::clone(control),
        },
    )));

    // Wakes the shard's main task when a peer's message may have
    // completed this shard's nodes, or a receiver has ended.
    let progressed = Rc::new(Signal::default());
    // Wakes a paused source when the outboxes have drained (and on
    // arrivals, tokens, the watchdog's nudge).
    let outbox_room = Rc::new(Signal::default());
    let (accept_tasks, hub_handles) = start_listeners(&mut sources, hubs, &outbox_room, event_queue, main_queue);
    let (watchdog, rescued) = serving::Watchdog {
        id,
        core: Rc::clone(&core),
        control: Arc::clone(control),
        task_error: Rc::clone(task_error),
        progressed: Rc::clone(&progressed),
        outbox_room: Rc::clone(&outbox_room),
        probes: mesh.as_ref().map(MeshEnds::local_probes).unwrap_or_default(),
        metrics_read,
        serving: serving::serving(&sources, hub_handles, &accept_tasks),
    }
    .spawn(main_queue);
    let outbound = mesh.as_ref().map(MeshEnds::outbound_probes).unwrap_or_default();
    let mesh_tasks = outbox::spawn(
        mesh,
        config.shards,
        outbox::MeshWiring {
            core: &core,
            control,
            task_error,
            progressed: &progressed,
            outbox_room: &outbox_room,
            outbox_len: &outbox_len,
            outbox_bytes: &outbox_bytes,
            outbox_messages_max: config.outbox_messages_max,
            queue: event_queue,
        },
    );
    core.borrow_mut().source_wake = Some(Rc::clone(&outbox_room));
    seed_split_tokens(id, splits, &core);
    let ticker = serving::spawn_ticker(&core, control, task_error, Arc::clone(&config.clock), event_queue);

    control.liveness.set_phase(id, Phase::Reading);
    let source_loop = source_loop::SourceLoop {
        id,
        sources,
        core: Rc::clone(&core),
        control: Arc::clone(control),
        events: events.clone(),
        outbox_len: Rc::clone(&outbox_len),
        wake: Rc::clone(&outbox_room),
        wal,
        batch_rows: config.batch_rows,
        outbox_max: config.outbox_messages_max,
        has_peers: config.shards > 1,
        pace: config.pace,
        checkpoints: config.checkpoints,
        every_rows: config.checkpoint_every_rows,
        injected: restored_epoch,
        metrics_read,
        inbound: mesh_tasks.inbound.clone(),
        intake_closed: false,
        held_bytes_max: config.held_bytes_max,
        mesh_bytes_max: config.mesh_bytes_max,
        outbox_bytes: Rc::clone(&outbox_bytes),
        outbound,
    };
    let done = glommio::spawn_local_into(source_loop.run(), event_queue)
        .expect("the event queue exists")
        .await?;

    finish_mesh(
        id,
        config.shards,
        &core,
        control,
        task_error,
        &progressed,
        mesh_tasks,
        ticker,
    )
    .await?;
    drop(watchdog);
    if rescued.get() > 0 {
        // Late (a long synchronous step held the shard) or lost (glommio's
        // cross-executor wake); either way the watchdog moved it on.
        tracing::debug!(
            shard = id,
            count = rescued.get(),
            "the mesh watchdog woke channel ends that waited two rounds although they could go on"
        );
    }
    control.liveness.set_phase(id, Phase::Flushing);
    flush(core, main_queue, done, restore_time).await
}

/// `laminar serve`: connections of sources with intake on the event
/// queue, subscribers of tcp sinks on the main queue. The accept tasks
/// end (closing their listeners) when intake stops.
#[allow(clippy::type_complexity)]
fn start_listeners(
    sources: &mut [(usize, crate::source::Source)],
    hubs: Vec<setup::Subscribers>,
    outbox_room: &Rc<Signal>,
    event_queue: glommio::TaskQueueHandle,
    main_queue: glommio::TaskQueueHandle,
) -> (
    Rc<RefCell<Vec<glommio::Task<()>>>>,
    Vec<(usize, Rc<RefCell<crate::net::subscribe::Hub>>)>,
) {
    let accept_tasks: Rc<RefCell<Vec<glommio::Task<()>>>> = Rc::new(RefCell::new(Vec::new()));
    for (_, source) in sources.iter_mut() {
        let Some(intake) = source.intake() else { continue };
        intake.inbox().borrow_mut().set_wake(Rc::clone(outbox_room));
        let accept = intake.take_accept_task().expect("each accept task is taken once");
        let task = glommio::spawn_local_into(accept, event_queue).expect("the event queue exists");
        accept_tasks.borrow_mut().push(task);
    }
    let mut hub_handles = Vec::new();
    for (k, hub, listener) in hubs {
        let listener = crate::source::tcp::glommio_listener(listener);
        glommio::spawn_local_into(
            crate::net::subscribe::accept_loop(listener, Rc::clone(&hub), main_queue),
            main_queue,
        )
        .expect("the main queue exists")
        .detach();
        hub_handles.push((k, hub));
    }
    (accept_tasks, hub_handles)
}

/// The first chunk of a split file needs no token: its prefix is the
/// header. Shard 0 holds it for whichever shard takes chunk 0; every
/// other chunk's token comes from the reader before it.
fn seed_split_tokens(id: usize, splits: &[Option<SourceSplit>], core: &Rc<RefCell<ShardCore>>) {
    if id != 0 {
        return;
    }
    for (i, split) in splits.iter().enumerate() {
        let Some(SourceSplit::File(split)) = split else {
            continue;
        };
        let prefix = Prefix {
            max_time: i64::MIN,
            lines: split.header_lines,
            start: split.bounds[0],
        };
        core.borrow_mut().pass_token(i, 0, prefix, None);
    }
}

/// The end of a shard's part: wait until every node here has seen the end
/// of every input, send `Done` to every peer after the last rows, and wait
/// for every peer's `Done`.
#[allow(clippy::too_many_arguments)]
async fn finish_mesh(
    id: usize,
    shards: usize,
    core: &Rc<RefCell<ShardCore>>,
    control: &Control,
    task_error: &Rc<RefCell<Option<RunError>>>,
    progressed: &Signal,
    mesh: outbox::MeshTasks,
    ticker: Option<glommio::Task<()>>,
) -> Result<(), RunError> {
    // Only a peer's message can complete the nodes now, and each one
    // notifies `progressed`.
    control.liveness.set_phase(id, Phase::Draining);
    loop {
        let more = core.borrow_mut().drain_inbound(&mesh.inbound)?;
        if core.borrow().nodes_complete() {
            break;
        }
        check_abort(control)?;
        if more {
            // Let the watchdog (checkpoint requests, heartbeat) and the
            // other tasks run between rounds.
            futures_lite::future::yield_now().await;
            continue;
        }
        if mesh.receivers_live.get() == 0 {
            return Err(RunError::Mesh(MeshFailure::InputsClosedEarly));
        }
        progressed.wait().await;
    }
    control.liveness.set_phase(id, Phase::Closing);
    // No tick may emit after `Done`.
    drop(ticker);
    // `Done` is the last message to every peer, so a channel that closes
    // without it means the peer failed.
    for peer in (0..shards).filter(|&p| p != id) {
        core.borrow_mut().send(peer, MeshMsg::Done);
    }
    // Close the outboxes: sender tasks drain them, then drop their mesh
    // senders, which closes the channels.
    core.borrow_mut().outboxes.iter_mut().for_each(|o| *o = None);
    for t in mesh.senders {
        t.await?;
    }
    // Wait for every peer's `Done`, taking messages here too. The
    // receiver tasks are not awaited: one that was never scheduled again
    // must not hold the shard (they are cancelled when dropped).
    loop {
        let more = core.borrow_mut().drain_inbound(&mesh.inbound)?;
        if core.borrow().done_received == shards - 1 {
            break;
        }
        if let Some(e) = task_error.borrow_mut().take() {
            return Err(e);
        }
        check_abort(control)?;
        if more {
            futures_lite::future::yield_now().await;
            continue;
        }
        if mesh.receivers_live.get() == 0 {
            return Err(RunError::Mesh(MeshFailure::PeerClosedEarly));
        }
        progressed.wait().await;
    }
    drop(mesh.receivers);
    if let Some(e) = task_error.borrow_mut().take() {
        return Err(e);
    }
    check_abort(control)?;
    assert_eq!(core.borrow().done_received, shards - 1, "every receiver ended on Done");
    Ok(())
}

/// Flushes and closes the sinks on the main queue (housekeeping, not the
/// event path) and makes the shard's report.
async fn flush(
    core: Rc<RefCell<ShardCore>>,
    main_queue: glommio::TaskQueueHandle,
    done: source_loop::SourcesDone,
    restore: Duration,
) -> Result<ShardReport, RunError> {
    // Cancelled tasks may still hold the core until the executor drops
    // them: take what is needed out of it instead of unwrapping it.
    let (sinks, nodes, busy) = {
        let mut c = core.borrow_mut();
        (
            std::mem::replace(&mut c.sinks, self::core::Sinks::remote()),
            std::mem::take(&mut c.nodes),
            c.busy,
        )
    };
    let mut sinks = glommio::spawn_local_into(
        async move {
            let mut sinks = sinks.into_vec();
            for s in &mut sinks {
                s.close().await?;
            }
            Ok::<_, RunError>(sinks)
        },
        main_queue,
    )
    .expect("the main queue exists")
    .await?;
    let sources = &done.sources;
    Ok(ShardReport {
        sources: sources
            .iter()
            .map(|(i, s)| (*i, s.name().to_string(), s.rows(), s.malformed()))
            .collect(),
        headers_detected: sources
            .iter()
            .filter(|(_, s)| s.header_detected())
            .map(|(i, _)| *i)
            .collect(),
        nodes: nodes.iter().map(|d| d.operator().metrics()).collect(),
        sinks: sinks
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.name.clone(), s.rows))
            .collect(),
        busy,
        latency: crate::pace::merge(sinks.iter_mut().filter_map(Sink::take_latency)),
        behind_schedule: done.behind_schedule,
        read_delay: done.read_delay,
        events_generated: sources
            .iter()
            .filter_map(|(_, s)| s.next_event_index())
            .max()
            .unwrap_or(0),
        read_ns: done.read_ns,
        restore,
    })
}
