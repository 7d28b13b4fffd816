//! One shard: a glommio executor pinned to a core, running every node of
//! the plan over the rows it owns.
//!
//! Inside a shard everything is synchronous and single-threaded: a batch
//! is delivered depth-first through the DAG (`ShardCore::deliver`). Where
//! an edge is an exchange, the batch is partitioned; the part for this
//! shard continues at once, the others go to per-destination outboxes.
//! Sender tasks move outbox messages onto the bounded mesh channels and
//! receiver tasks feed arriving batches back into `deliver`.
//!
//! Processing never awaits a send, so two shards that send to each other
//! cannot deadlock; backpressure is applied where rows enter: a source
//! stops reading while its shard's outboxes hold more than
//! `outbox_messages_max` messages, and a full mesh channel stops the
//! sender task, so a slow consumer slows every source feeding it.
//!
//! Completion: when every node of a shard has seen the end-of-input
//! watermark, the shard sends `Done` to shard 0 after its last rows (the
//! channels are FIFO). Shard 0, which owns the sinks, finishes when it is
//! itself complete and has every other shard's `Done`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::channels::local_channel;
use glommio::{Latency, Shares};
use laminar_exec::batch::{Batch, WATERMARK_END};
use laminar_exec::operator::{Driven, OperatorMetrics};
use laminar_exec::plan::{Input, PhysicalPlan, SinkConnector};
use laminar_exec::types::Value;

use crate::sink::Sink;
use crate::source::Source;
use crate::topology::{partition, Placement, Topology};
use crate::RunError;

/// The knobs of the shard runtime, in one place, units in the names.
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
    /// Shares of the event queue (sources, operators, exchanges).
    pub event_shares: usize,
    /// Shares of the main queue (sink flushes and housekeeping).
    pub main_shares: usize,
    /// Preemption target of the event queue.
    pub event_latency_ms: u64,
    /// Memory glommio registers for io_uring, per executor.
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
}

impl ShardConfig {
    pub fn new(shards: usize, cpus: Vec<usize>, batch_rows: usize) -> ShardConfig {
        assert!(shards >= 1 && !cpus.is_empty() && batch_rows >= 1);
        ShardConfig {
            shards,
            cpus,
            batch_rows,
            channel_messages_max: 64,
            outbox_messages_max: 256,
            event_shares: 1000,
            main_shares: 100,
            event_latency_ms: 1,
            io_memory_bytes: 512 << 10,
            ring_depth: 64,
        }
    }
}

/// What travels on the mesh.
pub enum MeshMsg {
    /// Rows (and marks) for input `input` of node `node`.
    Node { node: u32, input: u32, batch: Batch },
    /// Rows for a sink (sinks live on shard 0).
    Sink { sink: u32, batch: Batch },
    /// The sender has finished; nothing follows.
    Done,
}

/// Events a shard reports to the thread that started the run.
pub enum ShardEvent {
    Malformed {
        source: String,
        location: String,
        line: u64,
        reason: String,
    },
    Finished {
        shard: usize,
    },
}

/// Counters shared with the starting thread, for progress.
#[derive(Default)]
pub struct SharedProgress {
    pub rows_in: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Set when any shard fails: every shard stops.
    pub abort: AtomicBool,
    /// Set by each shard when it exits; by then all it sent is in the
    /// channels. Receivers use it to end even if a close was not signalled.
    pub finished: Vec<AtomicBool>,
}

impl SharedProgress {
    pub fn new(shards: usize) -> SharedProgress {
        SharedProgress {
            finished: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            ..SharedProgress::default()
        }
    }
}

/// What a shard did.
#[derive(Debug, Default)]
pub struct ShardReport {
    pub sources: Vec<(usize, String, u64, u64)>,
    pub nodes: Vec<OperatorMetrics>,
    pub sinks: Vec<(usize, String, u64)>,
}

struct ShardCore {
    id: usize,
    plan: Arc<PhysicalPlan>,
    topo: Arc<Topology>,
    nodes: Vec<Driven>,
    sinks: Vec<Option<Sink>>,
    outboxes: Vec<Option<local_channel::LocalSender<MeshMsg>>>,
    outbox_len: Rc<Cell<usize>>,
    done_received: usize,
    key: Vec<Value>,
}

impl ShardCore {
    fn send(&mut self, dest: usize, msg: MeshMsg) {
        let outbox = self.outboxes[dest].as_ref().expect("an outbox per peer");
        self.outbox_len.set(self.outbox_len.get() + 1);
        if outbox.try_send(msg).is_err() {
            // The sender task has gone: the run is being torn down.
            self.outbox_len.set(self.outbox_len.get() - 1);
        }
    }

    /// Feeds `batch` to input `input` of `node`, as sent by shard `sender`.
    fn feed(&mut self, node: usize, input: usize, sender: usize, batch: &Batch) -> Result<(), RunError> {
        let port = self.topo.ports[node][input].port_of(sender);
        let mut out = Batch::new(self.plan.nodes[node].schema.len());
        self.nodes[node]
            .push(port, batch, &mut out)
            .map_err(|source| RunError::Exec {
                stream: self.plan.nodes[node].name.clone(),
                source,
            })?;
        if !out.is_inert() {
            self.deliver(Input::Node(node), &out)?;
        }
        Ok(())
    }

    /// Delivers a batch produced here to everything that reads `from`.
    fn deliver(&mut self, from: Input, batch: &Batch) -> Result<(), RunError> {
        let topo = Arc::clone(&self.topo);
        for &sink in topo.sink_consumers(from) {
            if batch.is_empty() {
                continue;
            }
            if self.id == 0 {
                self.sinks[sink].as_mut().expect("sinks live on shard 0").write(batch)?;
            } else {
                self.send(
                    0,
                    MeshMsg::Sink {
                        sink: sink as u32,
                        batch: batch.clone(),
                    },
                );
            }
        }
        for &(node, input) in topo.node_consumers(from) {
            match &topo.placement[node] {
                Placement::Local => self.feed(node, input, self.id, batch)?,
                placement => {
                    let mut key = std::mem::take(&mut self.key);
                    let parts = partition(batch, placement, topo.shards, &mut key);
                    self.key = key;
                    for (dest, part) in parts.into_iter().enumerate() {
                        if part.is_inert() {
                            continue;
                        }
                        if dest == self.id {
                            self.feed(node, input, self.id, &part)?;
                        } else {
                            self.send(
                                dest,
                                MeshMsg::Node {
                                    node: node as u32,
                                    input: input as u32,
                                    batch: part,
                                },
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_message(&mut self, sender: usize, msg: MeshMsg) -> Result<(), RunError> {
        match msg {
            MeshMsg::Node { node, input, batch } => self.feed(node as usize, input as usize, sender, &batch),
            MeshMsg::Sink { sink, batch } => self.sinks[sink as usize]
                .as_mut()
                .expect("sinks live on shard 0")
                .write(&batch),
            MeshMsg::Done => {
                self.done_received += 1;
                Ok(())
            }
        }
    }

    /// Whether every node active here has seen the end of every input.
    fn nodes_complete(&self) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .all(|(i, n)| !self.topo.node_active[i][self.id] || n.watermark() == WATERMARK_END)
    }
}

/// Everything a shard needs, sent to its executor thread.
pub struct ShardContext {
    pub id: usize,
    pub plan: Arc<PhysicalPlan>,
    pub topo: Arc<Topology>,
    pub config: ShardConfig,
    pub mesh: Option<MeshBuilder<MeshMsg, Full>>,
    pub progress: Arc<SharedProgress>,
    pub events: mpsc::Sender<ShardEvent>,
}

fn failed(progress: &SharedProgress, e: RunError) -> RunError {
    progress.abort.store(true, Ordering::Relaxed);
    e
}

/// Waits a little without holding the core, checking for an abort.
async fn pause(progress: &SharedProgress) -> Result<(), RunError> {
    if progress.abort.load(Ordering::Relaxed) {
        return Err(RunError::Aborted);
    }
    glommio::timer::sleep(Duration::from_micros(50)).await;
    Ok(())
}

/// How long a mesh wait sleeps before polling again. glommio 0.9's shared
/// channels can lose a wakeup (a message pushed between the receiver's
/// empty check and its waker registration is never signalled), so mesh
/// waits never rely on the wakeup alone.
const MESH_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// The longest a mesh receive waits between polls (see `mesh_recv`).
const MESH_POLL_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// Receives from peer `peer`'s mesh channel; None once the peer has closed
/// the channel, or has exited with everything it sent received.
///
/// Two glommio 0.9 limitations shape this. A shared channel can lose a
/// wakeup, so a pending `recv` must be polled again now and then; but
/// every pending poll appends a waker that is only cleared when the
/// channel fires, so polling an idle channel too often grows that list
/// until the task's waker count overflows (32,767). The poll interval
/// therefore backs off from 1 ms to 1 s: a lost wakeup costs at most a
/// second, and an idle channel adds at most one waker a second (about nine
/// hours of continuous idleness to overflow).
async fn mesh_recv<T: Send>(
    rx: &glommio::channels::shared_channel::ConnectedReceiver<T>,
    peer: usize,
    progress: &SharedProgress,
) -> Option<T> {
    let mut interval = MESH_POLL_INTERVAL;
    loop {
        let received = futures_lite::future::or(async { Some(rx.recv().await) }, async {
            glommio::timer::sleep(interval).await;
            None
        })
        .await;
        if let Some(r) = received {
            return r;
        }
        if progress.abort.load(Ordering::Relaxed) {
            return None;
        }
        // A peer that has exited sent everything before it did: take what
        // is buffered, then stop, whether or not its close was signalled.
        if progress.finished[peer].load(Ordering::Acquire) {
            return futures_lite::future::poll_once(rx.recv()).await.flatten();
        }
        interval = (interval * 2).min(MESH_POLL_INTERVAL_MAX);
    }
}

/// Sends on the mesh, waiting (with polling, see `mesh_recv`) while the
/// channel is full: a full channel is the backpressure.
async fn mesh_send(
    senders: &glommio::channels::channel_mesh::Senders<MeshMsg>,
    dest: usize,
    mut msg: MeshMsg,
    progress: &SharedProgress,
) -> Result<(), RunError> {
    let mut wait = Duration::from_micros(20);
    loop {
        match senders.try_send_to(dest, msg) {
            Ok(()) => return Ok(()),
            Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(m))) => {
                msg = m;
                if progress.abort.load(Ordering::Relaxed) {
                    return Err(RunError::Aborted);
                }
                glommio::timer::sleep(wait).await;
                wait = (wait * 2).min(MESH_POLL_INTERVAL);
            }
            Err(e) => return Err(RunError::Mesh(format!("sending to shard {dest}: {e}"))),
        }
    }
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
    } = ctx;
    let result = shard_body(id, &plan, &topo, &config, mesh, &progress, &events).await;
    progress.finished[id].store(true, Ordering::Release);
    let _ = events.send(ShardEvent::Finished { shard: id });
    result.map_err(|e| failed(&progress, e))
}

async fn shard_body(
    id: usize,
    plan: &Arc<PhysicalPlan>,
    topo: &Arc<Topology>,
    config: &ShardConfig,
    mesh: Option<MeshBuilder<MeshMsg, Full>>,
    progress: &Arc<SharedProgress>,
    events: &mpsc::Sender<ShardEvent>,
) -> Result<ShardReport, RunError> {
    let executor = glommio::executor();
    let event_queue = executor.create_task_queue(
        Shares::Static(config.event_shares),
        Latency::Matters(Duration::from_millis(config.event_latency_ms)),
        "events",
    );
    let main_queue = executor.create_task_queue(Shares::Static(config.main_shares), Latency::NotImportant, "main");

    // Join the mesh before anything that can fail: a shard that never
    // joins would leave its peers waiting in `join` forever, while one
    // that fails after joining drops its channels, which its peers see.
    let joined = match mesh {
        Some(mesh) => Some(mesh.join().await.map_err(|e| RunError::Mesh(e.to_string()))?),
        None => None,
    };

    // Sources this shard reads; sinks on shard 0.
    let mut sources: Vec<(usize, Source)> = Vec::new();
    for (i, node) in plan.sources.iter().enumerate() {
        if topo.source_owner[i] == id {
            sources.push((i, Source::open(node)?));
        }
    }
    let stdout_sinks = plan
        .sinks
        .iter()
        .filter(|s| s.connector == SinkConnector::Stdout)
        .count();
    let sinks = if id == 0 {
        plan.sinks
            .iter()
            .map(|s| Sink::open(s, stdout_sinks).map(Some))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        plan.sinks.iter().map(|_| None).collect()
    };

    let outbox_len = Rc::new(Cell::new(0usize));
    let mut outboxes: Vec<Option<local_channel::LocalSender<MeshMsg>>> = (0..config.shards).map(|_| None).collect();
    let mut sender_tasks = Vec::new();
    let mut receiver_tasks = Vec::new();
    let core = Rc::new(RefCell::new(ShardCore {
        id,
        plan: Arc::clone(plan),
        topo: Arc::clone(topo),
        nodes: plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| Driven::new(n.spec.build(), topo.port_count[i]))
            .collect(),
        sinks,
        outboxes: Vec::new(),
        outbox_len: Rc::clone(&outbox_len),
        done_received: 0,
        key: Vec::new(),
    }));

    let mut mesh_senders = None;
    if let Some((senders, mut receivers)) = joined {
        let senders = Rc::new(senders);
        mesh_senders = Some(Rc::clone(&senders));
        for (dest, slot) in outboxes.iter_mut().enumerate() {
            if dest == id {
                continue;
            }
            let (tx, rx) = local_channel::new_unbounded::<MeshMsg>();
            *slot = Some(tx);
            let senders = Rc::clone(&senders);
            let outbox_len = Rc::clone(&outbox_len);
            let progress = Arc::clone(progress);
            sender_tasks.push(
                glommio::spawn_local_into(
                    async move {
                        while let Some(msg) = rx.recv().await {
                            outbox_len.set(outbox_len.get() - 1);
                            if mesh_send(&senders, dest, msg, &progress).await.is_err() {
                                progress.abort.store(true, Ordering::Relaxed);
                                break;
                            }
                        }
                    },
                    event_queue,
                )
                .expect("the event queue exists"),
            );
        }
        for (peer, stream) in receivers.streams() {
            let core = Rc::clone(&core);
            let progress = Arc::clone(progress);
            receiver_tasks.push(
                glommio::spawn_local_into(
                    async move {
                        let received = async {
                            while let Some(msg) = mesh_recv(&stream, peer, &progress).await {
                                if progress.abort.load(Ordering::Relaxed) {
                                    return Err(RunError::Aborted);
                                }
                                let done = matches!(msg, MeshMsg::Done);
                                core.borrow_mut().on_message(peer, msg)?;
                                if done {
                                    return Ok(());
                                }
                                glommio::yield_if_needed().await;
                            }
                            Ok(())
                        }
                        .await;
                        if received.is_err() {
                            progress.abort.store(true, Ordering::Relaxed);
                        }
                        received
                    },
                    event_queue,
                )
                .expect("the event queue exists"),
            );
        }
    }
    core.borrow_mut().outboxes = outboxes;

    // The source loop, on the event queue with the operators.
    let source_task = {
        let core = Rc::clone(&core);
        let progress = Arc::clone(progress);
        let events = events.clone();
        let outbox_len = Rc::clone(&outbox_len);
        let (batch_rows, outbox_max) = (config.batch_rows, config.outbox_messages_max);
        glommio::spawn_local_into(
            async move {
                for (i, source) in sources.iter_mut() {
                    let mut bytes_seen = 0;
                    while !source.is_done() {
                        if outbox_len.get() > outbox_max {
                            pause(&progress).await?;
                            continue;
                        }
                        if progress.abort.load(Ordering::Relaxed) {
                            return Err(RunError::Aborted);
                        }
                        let before = source.rows;
                        let batch = source.next_batch(batch_rows, &mut |m| {
                            let _ = events.send(ShardEvent::Malformed {
                                source: m.source.to_string(),
                                location: m.location.to_string(),
                                line: m.line,
                                reason: m.reason.to_string(),
                            });
                        })?;
                        progress.rows_in.fetch_add(source.rows - before, Ordering::Relaxed);
                        progress
                            .bytes_read
                            .fetch_add(source.bytes_read - bytes_seen, Ordering::Relaxed);
                        bytes_seen = source.bytes_read;
                        core.borrow_mut().deliver(Input::Source(*i), &batch)?;
                        glommio::yield_if_needed().await;
                    }
                }
                Ok::<_, RunError>(sources)
            },
            event_queue,
        )
        .expect("the event queue exists")
    };
    let sources = source_task.await?;

    // Wait until every node here has seen the end of every input.
    let waiting_since = std::time::Instant::now();
    let mut warned = false;
    while !core.borrow().nodes_complete() {
        if !warned && waiting_since.elapsed() > Duration::from_secs(10) {
            warned = true;
            let c = core.borrow();
            for (i, n) in c.nodes.iter().enumerate() {
                if c.topo.node_active[i][id] && n.watermark() != WATERMARK_END {
                    tracing::warn!(shard = id, node = i, stream = %c.plan.nodes[i].name, watermark = n.watermark(), "waiting for the end of input");
                }
            }
        }
        pause(progress).await?;
    }
    if id != 0 {
        core.borrow_mut().send(0, MeshMsg::Done);
    }
    // Close the outboxes: sender tasks drain them, then close the mesh.
    core.borrow_mut().outboxes.iter_mut().for_each(|o| *o = None);
    for t in sender_tasks {
        t.await;
    }
    if let Some(senders) = mesh_senders {
        senders.close();
    }
    for t in receiver_tasks {
        t.await?;
    }
    if id == 0 {
        let expected = config.shards - 1;
        assert_eq!(core.borrow().done_received, expected, "every receiver ended on Done");
    }

    // Flush sinks on the main queue (housekeeping, not the event path).
    let core = Rc::try_unwrap(core)
        .map_err(|_| RunError::Mesh("shard state still shared at shutdown".into()))?
        .into_inner();
    let ShardCore { mut sinks, nodes, .. } = core;
    let sinks = glommio::spawn_local_into(
        async move {
            for s in sinks.iter_mut().flatten() {
                s.finish()?;
            }
            Ok::<_, RunError>(sinks)
        },
        main_queue,
    )
    .expect("the main queue exists")
    .await?;
    Ok(ShardReport {
        sources: sources
            .iter()
            .map(|(i, s)| (*i, s.name.clone(), s.rows, s.malformed))
            .collect(),
        nodes: nodes.iter().map(|d| d.operator().metrics()).collect(),
        sinks: sinks
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s.name.clone(), s.rows)))
            .collect(),
    })
}
