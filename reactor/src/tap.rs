//! Taps: a stream's rows, as its nodes emit them, for `SUBSCRIBE` over
//! pgwire (`laminar-pg`), whatever the stream and whether or not a sink
//! reads it.
//!
//! A subscriber registers a `Tap` in `Control::taps` (a list behind a
//! mutex and a generation counter). Each shard reads the generation, one
//! relaxed load, when it delivers a node's output, and takes the list
//! again only when it changed: nothing on the per-row path locks. A shard
//! whose node computes the tapped stream pushes a copy of each output
//! batch onto the tap's queue (lock-free) and wakes the subscriber's
//! task. Every shard running the node pushes its own rows, so a
//! subscriber sees each key's rows in order (a key lives on one shard)
//! and different keys' rows interleaved.
//!
//! A live feed, like a tcp sink: rows emitted while the tap is
//! registered, no replay. A tap is bounded: past `bytes_max` of rows its
//! subscriber has not taken, the tap is cut (the shards push no more and
//! the subscriber's query ends with an error saying so), so a client that
//! stops reading never holds memory or the pipeline.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crossbeam_queue::SegQueue;
use futures_util::task::AtomicWaker;
use laminar_exec::batch::Batch;

/// Taps registered at once at most (over every stream).
pub const TAPS_MAX: usize = 1024;

/// One subscriber's tap on one node's output.
pub struct Tap {
    /// The node whose output is tapped (its index in the run's plan).
    pub node: usize,
    queue: SegQueue<Batch>,
    /// Approximate bytes queued.
    bytes: AtomicUsize,
    bytes_max: usize,
    /// Cut for falling behind, or the run ended.
    cut: AtomicBool,
    ended: AtomicBool,
    waker: AtomicWaker,
}

/// What a subscriber's next poll finds.
#[derive(Debug)]
pub enum Tapped {
    Rows(Batch),
    /// More than `bytes_max` waited: the tap was cut.
    Cut {
        bytes_max: usize,
    },
    /// The run ended (a stop or a reload).
    Ended,
}

impl Tap {
    /// Takes the next batch, or registers the waker for one.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Tapped> {
        for attempt in 0..2 {
            if let Some(batch) = self.queue.pop() {
                self.bytes.fetch_sub(weight(&batch), Ordering::Relaxed);
                return Poll::Ready(Tapped::Rows(batch));
            }
            if self.cut.load(Ordering::Acquire) {
                return Poll::Ready(Tapped::Cut {
                    bytes_max: self.bytes_max,
                });
            }
            if self.ended.load(Ordering::Acquire) {
                return Poll::Ready(Tapped::Ended);
            }
            if attempt == 0 {
                // Registered before the second look, so a push between
                // the two wakes this task.
                self.waker.register(cx.waker());
            }
        }
        Poll::Pending
    }

    /// A shard's rows. Past the bound the tap is cut instead.
    fn push(&self, batch: &Batch) {
        if self.cut.load(Ordering::Relaxed) {
            return;
        }
        let w = weight(batch);
        if self.bytes.fetch_add(w, Ordering::Relaxed) + w > self.bytes_max {
            self.cut.store(true, Ordering::Release);
            // What is queued goes with the tap: the subscriber ends.
            while self.queue.pop().is_some() {}
        } else {
            let mut copy = batch.clone();
            copy.clear_marks();
            self.queue.push(copy);
        }
        self.waker.wake();
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.waker.wake();
    }
}

fn weight(batch: &Batch) -> usize {
    64 + batch.len() * (8 + batch.width() * std::mem::size_of::<laminar_exec::types::Value>())
}

/// The taps of a run (`Control::taps`).
#[derive(Default)]
pub struct Taps {
    generation: AtomicU64,
    list: Mutex<Vec<Arc<Tap>>>,
    /// Set when the run ends: no tap is registered after.
    closed: AtomicBool,
}

impl Taps {
    /// Registers a tap on node `node`'s output; None when `TAPS_MAX`
    /// are registered or the run has ended.
    pub fn add(&self, node: usize, bytes_max: usize) -> Option<Arc<Tap>> {
        let mut list = self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() >= TAPS_MAX || self.closed.load(Ordering::Acquire) {
            return None;
        }
        let tap = Arc::new(Tap {
            node,
            queue: SegQueue::new(),
            bytes: AtomicUsize::new(0),
            bytes_max,
            cut: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        list.push(Arc::clone(&tap));
        self.generation.fetch_add(1, Ordering::Release);
        Some(tap)
    }

    /// Unregisters a tap (its subscriber went).
    pub fn remove(&self, tap: &Arc<Tap>) {
        let mut list = self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|t| !Arc::ptr_eq(t, tap));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Taps registered now.
    pub fn len(&self) -> usize {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The run ended: every tap's subscriber is told, none is taken after.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let list = std::mem::take(&mut *self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        list.iter().for_each(|t| t.end());
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A shard's view of the taps: by node, refreshed when the generation
/// moves.
pub(crate) struct ShardTaps {
    generation: u64,
    by_node: Vec<Vec<Arc<Tap>>>,
    any: bool,
}

impl ShardTaps {
    pub(crate) fn new(nodes: usize) -> ShardTaps {
        ShardTaps {
            generation: 0,
            by_node: vec![Vec::new(); nodes],
            any: false,
        }
    }

    /// Hands `batch`, node `node`'s output, to its taps.
    #[inline]
    pub(crate) fn publish(&mut self, taps: &Taps, node: usize, batch: &Batch) {
        let generation = taps.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.refresh(taps, generation);
        }
        if !self.any || batch.is_empty() {
            return;
        }
        self.by_node[node].iter().for_each(|t| t.push(batch));
    }

    #[cold]
    fn refresh(&mut self, taps: &Taps, generation: u64) {
        self.generation = generation;
        self.by_node.iter_mut().for_each(Vec::clear);
        let list = taps.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in list.iter() {
            if let Some(slot) = self.by_node.get_mut(t.node) {
                slot.push(Arc::clone(t));
            }
        }
        self.any = !list.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_exec::batch::Op;
    use laminar_exec::types::Value;
    use std::task::Waker;

    fn batch(rows: i64) -> Batch {
        let mut b = Batch::new(1);
        (0..rows).for_each(|i| b.push(Op::Insert, &[Value::Int(i)]));
        b
    }

    #[test]
    fn a_tap_gets_its_nodes_rows_and_is_cut_past_its_bound() {
        let taps = Taps::default();
        let mut shard = ShardTaps::new(2);
        let tap = taps.add(1, weight(&batch(10)) * 2).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(tap.poll_next(&mut cx).is_pending());
        shard.publish(&taps, 0, &batch(10)); // another node
        shard.publish(&taps, 1, &batch(10));
        match tap.poll_next(&mut cx) {
            Poll::Ready(Tapped::Rows(b)) => assert_eq!(b.len(), 10),
            other => panic!("{other:?}"),
        }
        assert!(tap.poll_next(&mut cx).is_pending());
        for _ in 0..3 {
            shard.publish(&taps, 1, &batch(10));
        }
        assert!(matches!(tap.poll_next(&mut cx), Poll::Ready(Tapped::Cut { .. })));
        taps.remove(&tap);
        assert!(taps.is_empty());
        shard.publish(&taps, 1, &batch(10));
    }

    #[test]
    fn closing_ends_every_tap_and_takes_no_more() {
        let taps = Taps::default();
        let tap = taps.add(0, 1 << 20).unwrap();
        taps.close();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(tap.poll_next(&mut cx), Poll::Ready(Tapped::Ended)));
        assert!(taps.add(0, 1 << 20).is_none());
    }
}
