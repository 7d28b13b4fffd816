//! The split-token protocol on a shard (see `source::split`): a chunk's
//! prefix token goes to the shard that took the chunk, or is held until a
//! reader claims it.

use super::core::ShardCore;
use super::message::MeshMsg;
use crate::source::Prefix;

impl ShardCore {
    /// A token for chunk `chunk` of split source `source` is here.
    pub(super) fn token_here(&mut self, source: usize, chunk: usize, prefix: Prefix) {
        let previous = self.split_tokens.insert((source, chunk), prefix);
        assert!(previous.is_none(), "one token per chunk");
        if let Some(wake) = &self.source_wake {
            wake.notify();
        }
    }

    /// Sends a chunk's token to the shard that took the chunk, or holds it
    /// until one does (`owner` None).
    pub(super) fn pass_token(&mut self, source: usize, chunk: usize, prefix: Prefix, owner: Option<usize>) {
        match owner {
            Some(o) if o == self.id => self.token_here(source, chunk, prefix),
            Some(o) => self.send(
                o,
                MeshMsg::SplitToken {
                    source: source as u32,
                    chunk: chunk as u32,
                    prefix,
                },
            ),
            None => {
                let previous = self.held_tokens.insert((source, chunk), prefix);
                assert!(previous.is_none(), "one token per chunk");
            }
        }
    }

    /// This shard took a block of chunks of split source `source` starting
    /// at `chunk`: that chunk's token is here already, or the peer holding
    /// it is told (the block's later tokens stay on this shard).
    pub(super) fn took_chunk(&mut self, source: usize, chunk: usize) {
        if let Some(prefix) = self.held_tokens.remove(&(source, chunk)) {
            self.token_here(source, chunk, prefix);
            return;
        }
        let me = self.id;
        for peer in (0..self.outboxes.len()).filter(|&p| p != me) {
            self.send(
                peer,
                MeshMsg::SplitClaim {
                    source: source as u32,
                    chunk: chunk as u32,
                },
            );
        }
    }
}
