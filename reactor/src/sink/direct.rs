//! A file sink's bytes written with `O_DIRECT` through the shard's
//! io_uring, so the copy into the file is the device's work, not this
//! core's.
//!
//! A buffered `write` of a fresh file costs its caller a page-cache page
//! per 4 KiB: allocated, then filled by a kernel copy. On the machine this
//! was measured on, writing 490 MB that way took 0.36-1.08 s of the
//! writing core (`dd`), and in a 10M-row projection it was a third of
//! shard 0's time, the shard the sink lives on, while the other shard
//! waited. With `O_DIRECT` the device (here the host, through virtio) reads
//! the bytes straight out of our buffers while the shard goes on.
//!
//! Bytes are copied straight into a `BLOCK_BYTES` block, written as soon
//! as it is full; `finish` writes the last one zero-padded to the device's
//! alignment and cuts the file back to its true length. So
//! the file on disk is complete only once the run has finished, as with a
//! buffered sink (which also writes in 1 MiB pieces). Runs with
//! checkpoints keep buffered sinks: a checkpoint commits a byte position,
//! which a half-written block would not be.
//!
//! **Invariant:** at most `IN_FLIGHT_MAX` writes are in flight and the
//! buffers they use are pooled, so memory stays at `(IN_FLIGHT_MAX + 1) *
//! BLOCK_BYTES`. With every slot taken, a block is written synchronously
//! (the device is the bottleneck then, and waiting is the backpressure).

use std::cell::RefCell;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use glommio::sync::Semaphore;

use crate::error::RunError;

/// Bytes per write: large enough that a write's fixed cost is nothing,
/// small enough that a few in flight are little memory.
pub const BLOCK_BYTES: usize = 1 << 20;
/// Writes in flight at once.
const IN_FLIGHT_MAX: u64 = 8;

/// What the in-flight writes share with the file.
struct Shared {
    /// Buffers of `BLOCK_BYTES` back from completed writes.
    pool: Vec<DmaBuffer>,
    /// The first failure of an asynchronous write, reported by the next
    /// call.
    failure: Option<std::io::Error>,
}

/// A file open for direct writes; see the module doc.
pub struct DirectFile {
    path: PathBuf,
    file: Rc<DmaFile>,
    /// Where the next block goes.
    at: u64,
    /// The block being filled, and its bytes so far.
    filling: Option<DmaBuffer>,
    filled: usize,
    slots: Rc<Semaphore>,
    shared: Rc<RefCell<Shared>>,
}

impl DirectFile {
    /// Opens `path`, which must exist and be empty, for direct writes.
    /// `None` when the file system refuses `O_DIRECT` (tmpfs, some network
    /// file systems): the caller keeps writing through the page cache.
    pub async fn open(path: &Path) -> Option<DirectFile> {
        let file = OpenOptions::new().write(true).dma_open(path).await.ok()?;
        // Blocks must be whole units of the device's alignment.
        if !(BLOCK_BYTES as u64).is_multiple_of(file.alignment()) {
            return None;
        }
        Some(DirectFile {
            path: path.to_path_buf(),
            file: Rc::new(file),
            at: 0,
            filling: None,
            filled: 0,
            slots: Rc::new(Semaphore::new(IN_FLIGHT_MAX)),
            shared: Rc::new(RefCell::new(Shared {
                pool: Vec::new(),
                failure: None,
            })),
        })
    }

    fn error(&self, operation: &'static str, source: std::io::Error) -> RunError {
        RunError::Io {
            operation,
            path: self.path.clone(),
            source,
        }
    }

    /// Reports an asynchronous write's failure, once.
    fn check(&self) -> Result<(), RunError> {
        match self.shared.borrow_mut().failure.take() {
            Some(e) => Err(self.error("writing sink file", e)),
            None => Ok(()),
        }
    }

    /// Appends `bytes` to the file: copied straight into the block being
    /// filled, and each block written as it fills.
    pub fn append(&mut self, mut bytes: &[u8]) -> Result<(), RunError> {
        self.check()?;
        while !bytes.is_empty() {
            let block = match &mut self.filling {
                Some(b) => b,
                None => self.filling.insert(match self.shared.borrow_mut().pool.pop() {
                    Some(b) => b,
                    None => self.file.alloc_dma_buffer(BLOCK_BYTES),
                }),
            };
            let n = bytes.len().min(BLOCK_BYTES - self.filled);
            block.as_bytes_mut()[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == BLOCK_BYTES {
                let block = self.filling.take().expect("filled above");
                self.filled = 0;
                self.submit(block)?;
            }
        }
        Ok(())
    }

    /// Writes one whole block at the file's end.
    fn submit(&mut self, block: DmaBuffer) -> Result<(), RunError> {
        let at = self.at;
        self.at += BLOCK_BYTES as u64;
        if !self.slots.try_acquire(1).unwrap_or(false) {
            write_all_at(self.file.as_raw_fd(), block.as_bytes(), at)
                .map_err(|e| self.error("writing sink file", e))?;
            self.shared.borrow_mut().pool.push(block);
            return Ok(());
        }
        let (file, slots, shared) = (self.file.clone(), self.slots.clone(), self.shared.clone());
        glommio::spawn_local(async move {
            let block = Rc::new(block);
            let result = file.write_rc_at(block.clone(), at).await;
            let mut shared = shared.borrow_mut();
            match result {
                Ok(n) if n == BLOCK_BYTES => {}
                Ok(n) => {
                    shared.failure.get_or_insert(std::io::Error::other(format!(
                        "short write: {n} of {BLOCK_BYTES} bytes at offset {at} (is the disk full?)"
                    )));
                }
                Err(e) => {
                    shared.failure.get_or_insert(e.into());
                }
            }
            if let Ok(block) = Rc::try_unwrap(block) {
                shared.pool.push(block);
            }
            slots.signal(1);
        })
        .detach();
        Ok(())
    }

    /// Waits for the writes in flight, writes the block being filled
    /// padded to the device's alignment, and cuts the file to its true
    /// length.
    pub async fn finish(mut self) -> Result<(), RunError> {
        // Every slot back: no write is in flight.
        self.slots
            .acquire(IN_FLIGHT_MAX)
            .await
            .map_err(|e| self.error("writing sink file", e.into()))?;
        self.slots.signal(IN_FLIGHT_MAX);
        self.check()?;
        let end = self.at + self.filled as u64;
        if let Some(mut block) = self.filling.take() {
            let padded = self.file.align_up(self.filled as u64) as usize;
            block.as_bytes_mut()[self.filled..padded].fill(0);
            block.trim_to_size(padded);
            let n =
                (self.file.write_at(block, self.at).await).map_err(|e| self.error("writing sink file", e.into()))?;
            if n != padded {
                return Err(self.error(
                    "writing sink file",
                    std::io::Error::other(format!("short write: {n} of {padded} bytes (is the disk full?)")),
                ));
            }
            self.at += padded as u64;
        }
        if self.at != end {
            self.file
                .truncate(end)
                .await
                .map_err(|e| self.error("cutting sink file to length", e.into()))?;
        }
        let path = self.path;
        self.file.close_rc().await.map_err(|e| RunError::Io {
            operation: "closing sink file",
            path,
            source: e.into(),
        })?;
        Ok(())
    }
}

/// `pwrite` until every byte is written.
fn write_all_at(fd: i32, mut bytes: &[u8], mut at: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let offset = libc::off_t::try_from(at).map_err(|_| std::io::Error::other("offset past off_t"))?;
        // SAFETY: `fd` is the open file `DirectFile` owns; `bytes` is a
        // live slice of `bytes.len()` readable bytes for the whole call
        // (an aligned `DmaBuffer`, as `O_DIRECT` needs).
        let n = unsafe { libc::pwrite(fd, bytes.as_ptr().cast(), bytes.len(), offset) };
        match n {
            n if n > 0 => {
                let n = n as usize;
                bytes = &bytes[n..];
                at += n as u64;
            }
            0 => return Err(std::io::Error::other("pwrite wrote nothing (is the disk full?)")),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_reads_back_whole_including_the_synchronous_fallback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.csv");
        // Lengths around the alignment and the block, and more blocks than
        // can be in flight (appended without yielding, so the rest are
        // written synchronously), in pieces of an odd size.
        let lengths = [
            0,
            1,
            4095,
            4096,
            BLOCK_BYTES - 1,
            BLOCK_BYTES,
            BLOCK_BYTES + 1,
            (IN_FLIGHT_MAX as usize + 3) * BLOCK_BYTES + 17,
        ];
        for (k, len) in lengths.into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + k) as u8).collect();
            let (p, b) = (path.clone(), bytes.clone());
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(512 << 10)
                .spawn(move || async move {
                    std::fs::File::create(&p).expect("create");
                    let mut file = DirectFile::open(&p).await.expect("ext4 and xfs take O_DIRECT");
                    for piece in b.chunks(300_001) {
                        file.append(piece).expect("append");
                    }
                    file.finish().await.expect("finish");
                })
                .expect("executor")
                .join()
                .expect("join");
            assert!(std::fs::read(&path).expect("read") == bytes, "length {len}");
        }
    }
}
