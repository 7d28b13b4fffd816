//! The channel mesh between shards: one bounded single-producer,
//! single-consumer channel for every ordered pair of shards, and a
//! one-waiter local signal for waits inside a shard.
//!
//! Why not glommio's `channel_mesh`: glommio 0.9's shared channels lose
//! wakeups (a receiver parks with a message in its channel), and every
//! pending poll appends a waker that is only cleared when the channel
//! fires, so working around the first by polling overflows the task's
//! waker count on an idle channel (see ARCHITECTURE.md). These channels
//! keep the part glommio gets right, its cross-executor wake (a waker
//! woken from another thread is queued to its executor and the executor's
//! eventfd is written; for a `Latency::Matters` queue always), and use the
//! textbook lost-wakeup-free protocol around it: the waiting side
//! registers its waker, then looks at the queue again before it returns
//! `Pending`; the other side changes the queue, then wakes whatever waker
//! is registered. `AtomicWaker` holds at most one waker, so nothing grows.
//!
//! Messages are whole batches, never single rows: a cross-core wake costs
//! a syscall, and a wake only happens when the other side is waiting.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;

/// What a message weighs in bytes, for the byte bounds of the mesh (an
/// estimate: what it holds in memory, not what it would serialize to).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for u32 {
    fn weight(&self) -> usize {
        4
    }
}

impl Weigh for u64 {
    fn weight(&self) -> usize {
        8
    }
}

impl<T> Weigh for Vec<T> {
    fn weight(&self) -> usize {
        self.len() * std::mem::size_of::<T>()
    }
}

struct Channel<T> {
    /// Messages with their weights.
    queue: ArrayQueue<(T, usize)>,
    /// The weight of the messages queued.
    bytes: AtomicUsize,
    /// The receiver's waker, while it waits for a message or a close.
    receiver_waiting: AtomicWaker,
    /// The sender's waker, while it waits for room.
    sender_waiting: AtomicWaker,
    /// Set when the sender is dropped: no message follows those queued.
    sender_gone: AtomicBool,
    /// Set when the receiver is dropped: sends fail from then on.
    receiver_gone: AtomicBool,
    /// Whether each side is parked on the channel: for stall reports only.
    receiver_parked: AtomicBool,
    sender_parked: AtomicBool,
    /// Whether the last `rescue` of each side found it stuck.
    receiver_seen_stuck: AtomicBool,
    sender_seen_stuck: AtomicBool,
}

/// One end of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Sender,
    Receiver,
}

/// A view of one channel's state, for stall reports and the watchdog.
pub trait ChannelProbe: Send + Sync {
    fn describe(&self) -> String;
    /// Messages waiting in the channel.
    fn queued(&self) -> usize;
    /// What they weigh (see `Weigh`).
    fn bytes(&self) -> usize;
    /// Wakes `side` if it waits although it could go on (the watchdog;
    /// call from that side's own shard only). True when that side had
    /// already been seen stuck at the previous call: a wakeup was lost.
    fn rescue(&self, side: Side) -> bool;
}

impl<T: Send> ChannelProbe for Channel<T> {
    fn queued(&self) -> usize {
        self.queue.len()
    }

    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn describe(&self) -> String {
        format!(
            "{} queued ({} bytes){}{}{}{}",
            self.queue.len(),
            self.bytes.load(Ordering::Relaxed),
            if self.receiver_parked.load(Ordering::Relaxed) {
                ", receiver waiting"
            } else {
                ""
            },
            if self.sender_parked.load(Ordering::Relaxed) {
                ", sender waiting"
            } else {
                ""
            },
            if self.sender_gone.load(Ordering::Relaxed) {
                ", sender gone"
            } else {
                ""
            },
            if self.receiver_gone.load(Ordering::Relaxed) {
                ", receiver gone"
            } else {
                ""
            },
        )
    }

    fn rescue(&self, side: Side) -> bool {
        let stuck = match side {
            Side::Receiver => {
                self.receiver_parked.load(Ordering::Acquire)
                    && (!self.queue.is_empty() || self.sender_gone.load(Ordering::Acquire))
            }
            Side::Sender => {
                self.sender_parked.load(Ordering::Acquire)
                    && (!self.queue.is_full() || self.receiver_gone.load(Ordering::Acquire))
            }
        };
        let seen = match side {
            Side::Receiver => &self.receiver_seen_stuck,
            Side::Sender => &self.sender_seen_stuck,
        };
        if stuck {
            match side {
                Side::Receiver => self.receiver_waiting.wake(),
                Side::Sender => self.sender_waiting.wake(),
            }
        }
        // A wake may just be in flight; seen stuck twice in a row, it was
        // lost.
        seen.swap(stuck, Ordering::Relaxed) && stuck
    }
}

/// The sending end of one mesh channel.
pub struct MeshSender<T> {
    channel: Arc<Channel<T>>,
}

/// The receiving end of one mesh channel.
pub struct MeshReceiver<T> {
    channel: Arc<Channel<T>>,
}

/// A shard's ends of the mesh: `senders[d]` sends to shard d and
/// `receivers[s]` receives from shard s (None for the shard itself).
pub struct MeshEnds<T> {
    pub senders: Vec<Option<MeshSender<T>>>,
    pub receivers: Vec<Option<MeshReceiver<T>>>,
}

impl<T: Send + 'static> MeshEnds<T> {
    /// Probes of the channels this shard receives from, as (sender, probe).
    pub fn probes(&self) -> Vec<(usize, Arc<dyn ChannelProbe>)> {
        self.receivers
            .iter()
            .enumerate()
            .filter_map(|(from, r)| {
                r.as_ref()
                    .map(|r| (from, Arc::clone(&r.channel) as Arc<dyn ChannelProbe>))
            })
            .collect()
    }

    /// Probes of this shard's own channel ends, with the side it holds.
    /// The channels this shard sends on.
    pub fn outbound_probes(&self) -> Vec<Arc<dyn ChannelProbe>> {
        self.senders
            .iter()
            .flatten()
            .map(|s| Arc::clone(&s.channel) as Arc<dyn ChannelProbe>)
            .collect()
    }

    pub fn local_probes(&self) -> Vec<(Arc<dyn ChannelProbe>, Side)> {
        let outbound = self
            .senders
            .iter()
            .flatten()
            .map(|s| (Arc::clone(&s.channel) as Arc<dyn ChannelProbe>, Side::Sender));
        self.probes()
            .into_iter()
            .map(|(_, p)| (p, Side::Receiver))
            .chain(outbound)
            .collect()
    }
}

/// A full mesh between `shards` shards; element i is shard i's ends. Each
/// channel holds up to `capacity` messages.
pub fn full<T: Send>(shards: usize, capacity: usize) -> Vec<MeshEnds<T>> {
    assert!(shards >= 1 && capacity >= 1);
    let mut ends: Vec<MeshEnds<T>> = (0..shards)
        .map(|_| MeshEnds {
            senders: (0..shards).map(|_| None).collect(),
            receivers: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from == to {
                continue;
            }
            let (tx, rx) = channel(capacity);
            ends[from].senders[to] = Some(tx);
            ends[to].receivers[from] = Some(rx);
        }
    }
    ends
}

/// One bounded channel.
pub fn channel<T: Send>(capacity: usize) -> (MeshSender<T>, MeshReceiver<T>) {
    let channel = Arc::new(Channel {
        queue: ArrayQueue::new(capacity),
        bytes: AtomicUsize::new(0),
        receiver_waiting: AtomicWaker::new(),
        sender_waiting: AtomicWaker::new(),
        sender_gone: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
        receiver_parked: AtomicBool::new(false),
        sender_parked: AtomicBool::new(false),
        receiver_seen_stuck: AtomicBool::new(false),
        sender_seen_stuck: AtomicBool::new(false),
    });
    (
        MeshSender {
            channel: Arc::clone(&channel),
        },
        MeshReceiver { channel },
    )
}

/// What `try_recv` found.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecv<T> {
    Message(T),
    /// Nothing queued; the sender may still send.
    Empty,
    /// The sender has gone and everything it sent has been received.
    Closed,
}

/// Why a send failed; the message comes back.
#[derive(Debug)]
pub enum SendError<T> {
    /// The channel is full (only from `try_send`).
    Full(T),
    /// The receiver has gone.
    Closed(T),
}

impl<T: Send + Weigh> MeshSender<T> {
    /// Sends without waiting.
    pub fn try_send(&self, msg: T) -> Result<(), SendError<T>> {
        let weight = msg.weight();
        self.try_send_weighed(msg, weight)
    }

    /// Sends, waiting while the channel is full: a full channel is the
    /// backpressure. Fails only when the receiver has gone.
    pub async fn send(&self, msg: T) -> Result<(), T> {
        let weight = msg.weight();
        self.send_weighed(msg, weight).await
    }
}

impl<T: Send> MeshSender<T> {
    /// `try_send` of a message whose weight the caller knows.
    pub fn try_send_weighed(&self, msg: T, weight: usize) -> Result<(), SendError<T>> {
        let c = &*self.channel;
        if c.receiver_gone.load(Ordering::Acquire) {
            return Err(SendError::Closed(msg));
        }
        // Counted before it is visible, so the receiver never takes away
        // more than was added.
        c.bytes.fetch_add(weight, Ordering::Relaxed);
        match c.queue.push((msg, weight)) {
            Ok(()) => {
                c.receiver_waiting.wake();
                Ok(())
            }
            Err((msg, _)) => {
                c.bytes.fetch_sub(weight, Ordering::Relaxed);
                Err(SendError::Full(msg))
            }
        }
    }

    /// `send` of a message whose weight the caller knows.
    pub async fn send_weighed(&self, msg: T, weight: usize) -> Result<(), T> {
        let mut msg = Some(msg);
        poll_fn(|cx| {
            let m = msg.take().expect("polled after completion");
            let m = match self.try_send_weighed(m, weight) {
                Ok(()) => {
                    self.channel.sender_parked.store(false, Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
                Err(SendError::Closed(m)) => {
                    self.channel.sender_parked.store(false, Ordering::Relaxed);
                    return Poll::Ready(Err(m));
                }
                Err(SendError::Full(m)) => m,
            };
            // Register, then look again: room made after the first attempt
            // but before the registration would otherwise go unnoticed.
            self.channel.sender_waiting.register(cx.waker());
            self.channel.sender_parked.store(true, Ordering::Relaxed);
            let r = match self.try_send_weighed(m, weight) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(SendError::Closed(m)) => Poll::Ready(Err(m)),
                Err(SendError::Full(m)) => {
                    msg = Some(m);
                    return Poll::Pending;
                }
            };
            self.channel.sender_parked.store(false, Ordering::Relaxed);
            r
        })
        .await
    }
}

impl<T> Drop for MeshSender<T> {
    fn drop(&mut self) {
        self.channel.sender_gone.store(true, Ordering::Release);
        self.channel.receiver_waiting.wake();
    }
}

impl<T: Send> MeshReceiver<T> {
    /// Takes a message if one is queued.
    pub fn try_recv(&self) -> TryRecv<T> {
        let c = &*self.channel;
        // Read the flag before the queue: a sender that sets it after its
        // last push has that push visible once the flag is seen.
        let gone = c.sender_gone.load(Ordering::Acquire);
        match c.queue.pop() {
            Some((msg, weight)) => {
                c.bytes.fetch_sub(weight, Ordering::Relaxed);
                c.sender_waiting.wake();
                TryRecv::Message(msg)
            }
            None if gone => TryRecv::Closed,
            None => TryRecv::Empty,
        }
    }

    /// Receives the next message; None once the sender has gone and every
    /// message it sent has been received.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            match self.try_recv() {
                TryRecv::Message(msg) => {
                    self.channel.receiver_parked.store(false, Ordering::Relaxed);
                    return Poll::Ready(Some(msg));
                }
                TryRecv::Closed => {
                    self.channel.receiver_parked.store(false, Ordering::Relaxed);
                    return Poll::Ready(None);
                }
                TryRecv::Empty => {}
            }
            self.channel.receiver_waiting.register(cx.waker());
            self.channel.receiver_parked.store(true, Ordering::Relaxed);
            let r = match self.try_recv() {
                TryRecv::Message(msg) => Poll::Ready(Some(msg)),
                TryRecv::Closed => Poll::Ready(None),
                TryRecv::Empty => return Poll::Pending,
            };
            self.channel.receiver_parked.store(false, Ordering::Relaxed);
            r
        })
        .await
    }
}

impl<T> Drop for MeshReceiver<T> {
    fn drop(&mut self) {
        self.channel.receiver_gone.store(true, Ordering::Release);
        self.channel.sender_waiting.wake();
    }
}

/// A wake-up inside one shard with a single waiter: `notify` sets it,
/// `wait` returns once it is set and clears it. Holds one waker at most.
#[derive(Default)]
pub struct Signal {
    set: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Signal {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{LocalExecutorBuilder, Placement};

    /// Two executors exchange 100,000 messages through a small channel
    /// both ways at once, so both sides park and wake constantly; a lost
    /// wakeup hangs the test.
    #[test]
    fn two_executors_exchange_without_losing_wakeups() {
        const N: u64 = 100_000;
        let mut ends = full::<u64>(2, 4);
        let e1 = ends.pop().expect("shard 1");
        let e0 = ends.pop().expect("shard 0");
        let run = |id: usize, mut e: MeshEnds<u64>| {
            LocalExecutorBuilder::new(Placement::Unbound)
                .name(&format!("mesh-test-{id}"))
                .spawn(move || async move {
                    let peer = 1 - id;
                    let tx = e.senders[peer].take().expect("a sender");
                    let rx = e.receivers[peer].take().expect("a receiver");
                    let sending = glommio::spawn_local(async move {
                        for i in 0..N {
                            tx.send(i).await.expect("peer receives");
                        }
                    });
                    let mut next = 0;
                    while let Some(v) = rx.recv().await {
                        assert_eq!(v, next, "FIFO order");
                        next += 1;
                        if next == N {
                            break;
                        }
                    }
                    sending.await;
                    next
                })
                .expect("executor starts")
        };
        let h0 = run(0, e0);
        let h1 = run(1, e1);
        assert_eq!(h0.join().expect("shard 0"), N);
        assert_eq!(h1.join().expect("shard 1"), N);
    }

    #[test]
    fn receiver_sees_the_end_after_the_last_message() {
        let (tx, rx) = channel::<u32>(8);
        tx.try_send(1).expect("room");
        tx.try_send(2).expect("room");
        drop(tx);
        assert_eq!(rx.try_recv(), TryRecv::Message(1));
        assert_eq!(rx.try_recv(), TryRecv::Message(2));
        assert_eq!(rx.try_recv(), TryRecv::Closed);
    }

    #[test]
    fn full_and_closed_are_told_apart() {
        let (tx, rx) = channel::<u32>(1);
        tx.try_send(1).expect("room");
        assert!(matches!(tx.try_send(2), Err(SendError::Full(2))));
        drop(rx);
        assert!(matches!(tx.try_send(3), Err(SendError::Closed(3))));
    }

    #[test]
    fn a_channel_counts_the_bytes_it_holds() {
        let ends = full::<Vec<u64>>(2, 2);
        let probe = &ends[0].outbound_probes()[0];
        let (tx, rx) = channel::<Vec<u64>>(2);
        let probe_of_tx: Arc<dyn ChannelProbe> = Arc::clone(&tx.channel) as Arc<dyn ChannelProbe>;
        assert_eq!(probe.bytes(), 0);
        tx.try_send(vec![0; 10]).expect("room");
        tx.try_send_weighed(vec![0; 2], 1000).expect("room");
        assert_eq!(probe_of_tx.bytes(), 80 + 1000);
        // Full: refused, and not counted.
        assert!(matches!(tx.try_send(vec![0; 5]), Err(SendError::Full(_))));
        assert_eq!(probe_of_tx.bytes(), 1080);
        assert!(matches!(rx.try_recv(), TryRecv::Message(v) if v.len() == 10));
        assert_eq!(probe_of_tx.bytes(), 1000);
        assert!(matches!(rx.try_recv(), TryRecv::Message(_)));
        assert_eq!(probe_of_tx.bytes(), 0);
    }
}
