//! TCP sinks (`laminar serve`): subscribers connect to a sink's port and
//! receive its rows as JSON lines from then on (a changelog's rows carry
//! `"op"`).
//!
//! A live feed, not a log: a subscriber sees the rows emitted while it is
//! connected, and nothing is replayed to it. Each subscriber has its own
//! buffer of at most `buffer_bytes_max`; one that falls further behind is
//! dropped (its connection closed, the drop counted and logged) so that a
//! slow reader never holds up the pipeline or grows its memory. The
//! writing is done by one task per subscriber on shard 0, on the main
//! queue.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_lite::AsyncWriteExt;

use crate::mesh::Signal;

/// Subscribers per sink at most; more are refused with a message.
pub const SUBSCRIBERS_MAX: usize = 64;

struct Subscriber {
    peer: String,
    pending: Rc<RefCell<Vec<u8>>>,
    /// Bytes the writer has taken and not finished writing.
    sending: Rc<Cell<usize>>,
    wake: Rc<Signal>,
    gone: Rc<Cell<bool>>,
}

/// The subscribers of one TCP sink.
pub struct Hub {
    sink: String,
    subscribers: Vec<Subscriber>,
    pub buffer_bytes_max: usize,
    /// Subscribers dropped for falling behind.
    pub dropped: u64,
}

impl Hub {
    pub fn new(sink: &str, buffer_bytes_max: usize) -> Hub {
        assert!(buffer_bytes_max > 0);
        Hub {
            sink: sink.to_string(),
            subscribers: Vec::new(),
            buffer_bytes_max,
            dropped: 0,
        }
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Bytes handed to subscribers that their writers have not sent yet.
    pub fn pending_bytes(&self) -> usize {
        self.subscribers
            .iter()
            .filter(|s| !s.gone.get())
            .map(|s| s.pending.borrow().len() + s.sending.get())
            .sum()
    }

    /// Hands encoded rows to every subscriber; drops the ones that fell
    /// more than `buffer_bytes_max` behind.
    pub fn publish(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let max = self.buffer_bytes_max;
        let sink = &self.sink;
        let mut dropped = 0;
        self.subscribers.retain(|s| {
            if s.gone.get() {
                return false;
            }
            let mut pending = s.pending.borrow_mut();
            if pending.len() + bytes.len() > max {
                tracing::warn!(
                    sink = %sink,
                    peer = %s.peer,
                    buffered = pending.len(),
                    limit = max,
                    "dropped a subscriber that fell behind"
                );
                s.gone.set(true);
                pending.clear();
                s.wake.notify();
                dropped += 1;
                return false;
            }
            pending.extend_from_slice(bytes);
            s.wake.notify();
            true
        });
        self.dropped += dropped;
    }
}

/// Accepts subscribers of one sink until the task is dropped.
pub async fn accept_loop(listener: glommio::net::TcpListener, hub: Rc<RefCell<Hub>>, queue: glommio::TaskQueueHandle) {
    let what = format!("sink {}", hub.borrow().sink);
    loop {
        let (mut stream, peer) = crate::net::ingest::accept(&listener, &what).await;
        if hub.borrow().subscribers.len() >= SUBSCRIBERS_MAX {
            crate::net::ingest::refuse(
                stream,
                format!("ERR this sink has {SUBSCRIBERS_MAX} subscribers, its limit\n"),
            );
            continue;
        }
        let sub = Subscriber {
            peer: peer.clone(),
            pending: Rc::new(RefCell::new(Vec::new())),
            sending: Rc::new(Cell::new(0)),
            wake: Rc::new(Signal::default()),
            gone: Rc::new(Cell::new(false)),
        };
        let (pending, wake, gone) = (Rc::clone(&sub.pending), Rc::clone(&sub.wake), Rc::clone(&sub.gone));
        let sending = Rc::clone(&sub.sending);
        hub.borrow_mut().subscribers.push(sub);
        tracing::debug!(%peer, "subscriber connected");
        let writer = async move {
            let mut out = Vec::new();
            loop {
                wake.wait().await;
                if gone.get() {
                    break;
                }
                std::mem::swap(&mut out, &mut *pending.borrow_mut());
                if out.is_empty() {
                    continue;
                }
                sending.set(out.len());
                let written = stream.write_all(&out).await.and(stream.flush().await);
                sending.set(0);
                if written.is_err() {
                    gone.set(true);
                    break;
                }
                out.clear();
            }
            let _ = stream.close().await;
        };
        if let Ok(task) = glommio::spawn_local_into(writer, queue) {
            task.detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_behind_by_more_than_its_buffer_is_dropped() {
        let mut hub = Hub::new("s", 10);
        let sub = Subscriber {
            peer: "p".into(),
            pending: Rc::new(RefCell::new(Vec::new())),
            sending: Rc::new(Cell::new(0)),
            wake: Rc::new(Signal::default()),
            gone: Rc::new(Cell::new(false)),
        };
        let (pending, gone) = (Rc::clone(&sub.pending), Rc::clone(&sub.gone));
        hub.subscribers.push(sub);
        hub.publish(b"12345\n");
        assert_eq!(&*pending.borrow(), b"12345\n");
        pending.borrow_mut().clear(); // the writer took it
        hub.publish(b"abc\n");
        hub.publish(b"defghij\n");
        assert!(gone.get(), "a 10-byte limit: 4 + 8 bytes are over it");
        assert_eq!(hub.dropped, 1);
        assert_eq!(hub.subscribers(), 0);
    }
}
