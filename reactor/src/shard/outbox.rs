//! The shard's edge of the mesh: the outboxes processing writes into
//! without waiting (messages are `message::MeshMsg`), and the tasks that move outbox messages onto the bounded mesh channels
//! (merging a backlog into full batches) and feed arriving messages to
//! `ShardCore::on_message`.
//!
//! **Invariant:** processing never awaits a send: `ShardCore::send` puts a
//! message into an unbounded local outbox, and only the sender task waits
//! on a full channel. Two shards that send to each other cannot deadlock;
//! the source loop stops reading while `outbox_messages_max` messages are
//! queued (backpressure where rows enter).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::local_channel;
use glommio::TaskQueueHandle;

use super::core::ShardCore;
use super::message::{merge, MeshMsg};
use super::support::{check_abort, yield_if_preempted};
use crate::control::Control;
use crate::error::RunError;
use crate::mesh::{MeshEnds, MeshReceiver, Signal};

/// The tasks that carry a shard's mesh traffic.
pub(super) struct MeshTasks {
    pub senders: Vec<glommio::Task<Result<(), RunError>>>,
    pub receivers: Vec<glommio::Task<()>>,
    /// Per peer: the channel its messages arrive on (the main task also
    /// drains them, see `ShardCore::drain_inbound`).
    pub inbound: Vec<Option<Rc<MeshReceiver<MeshMsg>>>>,
    /// Receiver tasks still running.
    pub receivers_live: Rc<Cell<usize>>,
}

/// What the mesh tasks share with the rest of the shard.
pub(super) struct MeshWiring<'a> {
    pub core: &'a Rc<RefCell<ShardCore>>,
    pub control: &'a Arc<Control>,
    pub task_error: &'a Rc<RefCell<Option<RunError>>>,
    /// Wakes the main task when a message may have completed the nodes.
    pub progressed: &'a Rc<Signal>,
    /// Wakes a paused source when the outboxes have drained.
    pub outbox_room: &'a Rc<Signal>,
    pub outbox_len: &'a Rc<Cell<usize>>,
    pub outbox_bytes: &'a Rc<Cell<usize>>,
    pub outbox_messages_max: usize,
    pub queue: TaskQueueHandle,
}

/// Starts a sender task per peer (draining that peer's outbox onto its
/// mesh channel) and a receiver task per peer; installs the outboxes in
/// the core.
pub(super) fn spawn(mesh: Option<MeshEnds<MeshMsg>>, shards: usize, w: MeshWiring<'_>) -> MeshTasks {
    let mut outboxes: Vec<Option<local_channel::LocalSender<(MeshMsg, usize)>>> = (0..shards).map(|_| None).collect();
    let mut tasks = MeshTasks {
        senders: Vec::new(),
        receivers: Vec::new(),
        inbound: (0..shards).map(|_| None).collect(),
        receivers_live: Rc::new(Cell::new(0)),
    };
    if let Some(MeshEnds { senders, receivers }) = mesh {
        for (dest, (slot, sender)) in outboxes.iter_mut().zip(senders).enumerate() {
            let Some(sender) = sender else { continue };
            let (tx, rx) = local_channel::new_unbounded::<(MeshMsg, usize)>();
            *slot = Some(tx);
            tasks.senders.push(spawn_sender(dest, rx, sender, &w));
        }
        for (peer, receiver) in receivers.into_iter().enumerate() {
            let Some(receiver) = receiver else { continue };
            let receiver = Rc::new(receiver);
            tasks.inbound[peer] = Some(Rc::clone(&receiver));
            tasks
                .receivers
                .push(spawn_receiver(peer, receiver, &tasks.receivers_live, &w));
        }
    }
    w.core.borrow_mut().outboxes = outboxes;
    tasks
}

/// Moves outbox messages for `dest` onto its mesh channel, merging what
/// already waits behind a message for the same place.
fn spawn_sender(
    dest: usize,
    rx: local_channel::LocalReceiver<(MeshMsg, usize)>,
    sender: crate::mesh::MeshSender<MeshMsg>,
    w: &MeshWiring<'_>,
) -> glommio::Task<Result<(), RunError>> {
    let outbox_len = Rc::clone(w.outbox_len);
    let outbox_bytes = Rc::clone(w.outbox_bytes);
    let outbox_room = Rc::clone(w.outbox_room);
    let control = Arc::clone(w.control);
    let low_water = w.outbox_messages_max / 2;
    glommio::spawn_local_into(
        async move {
            let mut result = Ok(());
            // A message taken from the outbox but not merged into the one
            // before it, with its weight: sent next.
            let mut held: Option<(MeshMsg, usize)> = None;
            loop {
                let (mut msg, mut weight) = match held.take() {
                    Some(m) => m,
                    None => match rx.recv().await {
                        Some(m) => m,
                        None => break,
                    },
                };
                outbox_len.set(outbox_len.get() - 1);
                // Coalesce what already waits behind it for the same
                // place: fewer, fuller mesh messages when the mesh is the
                // bottleneck (small batches from a paced source, say).
                while let Some(Some((next, next_weight))) = futures_lite::future::poll_once(rx.recv()).await {
                    outbox_len.set(outbox_len.get() - 1);
                    match merge(&mut msg, next) {
                        None => weight += next_weight,
                        Some(unmerged) => {
                            outbox_len.set(outbox_len.get() + 1);
                            held = Some((unmerged, next_weight));
                            break;
                        }
                    }
                }
                if outbox_len.get() <= low_water {
                    outbox_room.notify();
                }
                // Its bytes stay counted here until the channel counts them.
                let sent = sender.send_weighed(msg, weight).await;
                outbox_bytes.set(outbox_bytes.get() - weight);
                if sent.is_err() {
                    // The peer has gone: it failed, or the run is being
                    // torn down.
                    control.run.set_abort();
                    result = Err(RunError::PeerStopped { shard: dest });
                    break;
                }
            }
            // Dropping `sender` tells shard `dest` nothing follows.
            outbox_room.notify();
            result
        },
        w.queue,
    )
    .expect("the event queue exists")
}

/// Feeds what peer `peer` sends into the core until its `Done`.
fn spawn_receiver(
    peer: usize,
    receiver: Rc<MeshReceiver<MeshMsg>>,
    receivers_live: &Rc<Cell<usize>>,
    w: &MeshWiring<'_>,
) -> glommio::Task<()> {
    let core = Rc::clone(w.core);
    let control = Arc::clone(w.control);
    let progressed = Rc::clone(w.progressed);
    let receivers_live = Rc::clone(receivers_live);
    let task_error = Rc::clone(w.task_error);
    receivers_live.set(receivers_live.get() + 1);
    glommio::spawn_local_into(
        async move {
            let received = async {
                while !core.borrow().done_from[peer] {
                    let Some(msg) = receiver.recv().await else { break };
                    check_abort(&control)?;
                    core.borrow_mut().on_message(peer, msg)?;
                    progressed.notify();
                    yield_if_preempted().await;
                }
                // `Done` arrived (here, or taken by the main task), or the
                // channel closed without it: the peer failed (and said
                // why) or was torn down.
                if core.borrow().done_from[peer] {
                    return Ok(());
                }
                check_abort(&control)?;
                Err(RunError::PeerClosed { shard: peer })
            }
            .await;
            if let Err(e) = received {
                control.run.set_abort();
                if !matches!(e, RunError::Aborted) {
                    task_error.borrow_mut().get_or_insert(e);
                }
            }
            receivers_live.set(receivers_live.get() - 1);
            progressed.notify();
        },
        w.queue,
    )
    .expect("the event queue exists")
}
