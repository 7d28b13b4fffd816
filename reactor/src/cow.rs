//! Copy-on-write snapshots: a large operator state is snapshotted by a
//! forked child process, so the shard stops for the `fork` (the kernel
//! copies page tables and marks the pages copy-on-write) instead of for a
//! copy of every byte of its state.
//!
//! At a barrier the shard forks. The child holds the whole address space
//! as it was at that instant: it copies and serializes the node's state
//! (exactly what the in-process path does, `Driven::checkpoint` and then
//! `Deferred::bytes`) into an anonymous in-memory file (`memfd`) that
//! parent and child share, and exits. The parent goes straight back to
//! its events; a page it writes while the child runs is copied then, one
//! page at a time, by the kernel. The coordinator, when it stores the
//! piece, waits for the child and reads the file.
//!
//! The same trade as Redis's background save: the stop is about the
//! process's page-table size (a few milliseconds for gigabytes of huge
//! pages) instead of about 1 ms per MB of state, and the memory cost is
//! the pages written while a child runs (at most the state again).
//!
//! The child of a multithreaded process has only the forking thread.
//! What it runs touches no lock another thread could hold at the fork
//! except the allocator's, which glibc's `fork` takes and releases
//! around the call; it logs nothing, prints nothing (its panic hook is
//! silenced) and ends with `_exit`, so no destructor, buffer flush or
//! exit handler of the parent's runs twice. It closes every descriptor
//! but stdio and its file at once, so sockets and listeners the parent
//! closes while it runs close then.
//!
//! **Invariant:** every child is waited for: the snapshot's `bytes`
//! waits, and dropping an unread snapshot kills and reaps its child.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use laminar_exec::snapshot::Deferred;
use laminar_exec::ExecError;

/// Exit codes of a snapshot child; the file holds the reason on failure.
const EXIT_OK: i32 = 0;
const EXIT_FAILED: i32 = 1;
const EXIT_PANICKED: i32 = 2;
const EXIT_WRITE: i32 = 3;

/// Forks a child that runs `make` (serializing a snapshot of `what`) and
/// returns the snapshot as the child's output, read when asked for its
/// bytes. An error means no child was started (the caller copies the
/// state in process instead).
pub fn fork_snapshot<F>(what: &str, make: F) -> io::Result<Deferred>
where
    F: FnOnce() -> Result<Vec<u8>, ExecError>,
{
    let mut forked = spawn(what, make)?;
    Ok(Deferred::new(move || forked.collect()))
}

fn spawn<F>(what: &str, make: F) -> io::Result<Forked>
where
    F: FnOnce() -> Result<Vec<u8>, ExecError>,
{
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the
    // result is checked, and a valid descriptor is owned from here on.
    let fd = unsafe { libc::memfd_create(c"laminar-snapshot".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork has no preconditions; in the child only `child` runs,
    // which never returns (see the module doc for what it may touch).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        child(file.as_raw_fd(), parent, make);
    }
    Ok(Forked {
        pid: Some(pid),
        file,
        what: what.to_string(),
    })
}

/// The child's side: runs `make`, writes its bytes (or its error) to
/// `fd`, and exits.
fn child<F>(fd: i32, parent: libc::pid_t, make: F) -> !
where
    F: FnOnce() -> Result<Vec<u8>, ExecError>,
{
    // SAFETY: each call below only changes this process's own signal
    // dispositions, mask, scheduling or panic reporting, with valid
    // arguments; none can break memory safety. Results are ignored on
    // purpose: a child that keeps the parent's settings still works.
    unsafe {
        // The parent's handlers set flags in a copy of its memory here;
        // a stop signal to the process group should end the child.
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // The forking shard's thread is pinned to its core; the child
        // may run wherever the process's main thread may.
        let mut cpus: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(parent, std::mem::size_of::<libc::cpu_set_t>(), &mut cpus) == 0 {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpus);
        }
    }
    close_inherited(fd);
    // The hook would write to stderr, whose lock another thread of the
    // parent may have held at the fork.
    std::panic::set_hook(Box::new(|_| {}));
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)) {
        Ok(Ok(bytes)) => {
            if write_all(fd, &bytes) {
                EXIT_OK
            } else {
                EXIT_WRITE
            }
        }
        Ok(Err(e)) => {
            write_all(fd, e.to_string().as_bytes());
            EXIT_FAILED
        }
        Err(_) => EXIT_PANICKED,
    };
    // SAFETY: _exit ends the process without running the parent's exit
    // handlers or destructors, which must not run twice.
    unsafe { libc::_exit(code) }
}

/// Closes every descriptor the child inherited but stdio and `keep`: a
/// socket the parent closes while a snapshot runs must close then (a
/// client waits for its FIN), not when the child exits, and a listener
/// the parent drops must stop accepting.
fn close_inherited(keep: i32) {
    let keep = keep as libc::c_uint;
    // SAFETY: closing descriptors touches no memory; the child uses none
    // of them (its Rust values holding them are never used or dropped:
    // it ends with `_exit`).
    unsafe {
        let below = keep <= 3 || libc::close_range(3, keep - 1, 0) == 0;
        let above = libc::close_range(keep + 1, libc::c_uint::MAX, 0) == 0;
        if !(below && above) {
            // A kernel without close_range (before 5.9).
            for fd in 3..4096 {
                if fd != keep {
                    libc::close(fd as i32);
                }
            }
        }
    }
}

/// Writes `bytes` to `fd` with plain `write` calls (no buffering, no
/// allocation); false on an error.
fn write_all(fd: i32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe the live slice `bytes`.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

/// A running snapshot child and the file it writes.
struct Forked {
    /// None once waited for.
    pid: Option<libc::pid_t>,
    file: File,
    what: String,
}

impl Forked {
    /// Waits for the child; its bytes, or why there are none.
    fn collect(&mut self) -> Result<Vec<u8>, ExecError> {
        let status = self.wait().map_err(|e| self.failed(format!("waiting for it: {e}")))?;
        let len = self
            .file
            .metadata()
            .map_err(|e| self.failed(format!("reading its output: {e}")))?
            .len() as usize;
        let mut bytes = vec![0u8; len];
        // Positioned reads: the file offset is shared with the child's
        // descriptor and stands at the end.
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| self.failed(format!("reading its output: {e}")))?;
        if libc::WIFEXITED(status) {
            match libc::WEXITSTATUS(status) {
                EXIT_OK => Ok(bytes),
                EXIT_FAILED => Err(self.failed(String::from_utf8_lossy(&bytes).into_owned())),
                EXIT_PANICKED => Err(self.failed("it panicked".to_string())),
                EXIT_WRITE => Err(self.failed("it could not write its output (out of memory?)".to_string())),
                code => Err(self.failed(format!("it exited with status {code}"))),
            }
        } else if libc::WIFSIGNALED(status) {
            Err(self.failed(format!("it was killed by signal {}", libc::WTERMSIG(status))))
        } else {
            Err(self.failed(format!("it ended with wait status {status}")))
        }
    }

    fn failed(&self, reason: String) -> ExecError {
        ExecError::Restore {
            reason: format!("{}: the snapshot process failed: {reason}", self.what),
        }
    }

    /// Waits for the child to end; its wait status.
    fn wait(&mut self) -> io::Result<i32> {
        let pid = self.pid.expect("a child is waited for once");
        let mut status = 0;
        loop {
            // SAFETY: `pid` is this process's child, not yet waited for;
            // `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                self.pid = None;
                return Ok(status);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                self.pid = None;
                return Err(e);
            }
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SAFETY: `pid` is this process's child, not yet reaped, so
            // the signal cannot reach another process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = self.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fork_snapshot, spawn};
    use laminar_exec::ExecError;

    #[test]
    fn the_child_sees_the_state_at_the_fork_and_the_parent_goes_on() {
        let mut state: Vec<u64> = (0..100_000).collect();
        let snapshot = fork_snapshot("test", || Ok(state.iter().flat_map(|v| v.to_le_bytes()).collect())).unwrap();
        // Written after the fork: the child's copy is unaffected.
        state.fill(7);
        let bytes = snapshot.bytes().unwrap();
        assert_eq!(bytes.len(), 800_000);
        let back: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, (0..100_000).collect::<Vec<u64>>());
    }

    #[test]
    fn a_failing_or_panicking_child_is_an_error_naming_the_node() {
        let failing = fork_snapshot("stream s", || {
            Err(ExecError::Restore {
                reason: "no room".to_string(),
            })
        })
        .unwrap();
        let e = failing.bytes().unwrap_err().to_string();
        assert!(e.contains("stream s") && e.contains("no room"), "{e}");
        let panicking = fork_snapshot("stream t", || panic!("boom")).unwrap();
        let e = panicking.bytes().unwrap_err().to_string();
        assert!(e.contains("stream t") && e.contains("panicked"), "{e}");
    }

    #[test]
    fn the_child_holds_none_of_the_parents_descriptors() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let [read, write] = fds;
        let forked = spawn("test", || {
            // Longer than the test: only the kill ends it.
            std::thread::sleep(std::time::Duration::from_secs(600));
            Ok(Vec::new())
        })
        .unwrap();
        // The parent closes its write end while the child runs: the
        // reader sees the end of the pipe at once only if the child
        // holds no copy of it.
        // SAFETY: `write` is a descriptor this test opened and owns.
        unsafe { libc::close(write) };
        let mut poll = libc::pollfd {
            fd: read,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a bounded wait (10 s) for the hang-up.
        let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
        assert_eq!(ready, 1, "the write end is still open somewhere");
        let mut byte = [0u8; 1];
        // SAFETY: reads at most one byte into `byte`.
        let n = unsafe { libc::read(read, byte.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 0, "end of file");
        drop(forked);
        // SAFETY: `read` is this test's own descriptor.
        unsafe { libc::close(read) };
    }

    #[test]
    fn an_unread_snapshot_reaps_its_child() {
        let forked = spawn("test", || {
            // Longer than the test: only the kill ends it.
            std::thread::sleep(std::time::Duration::from_secs(600));
            Ok(Vec::new())
        })
        .unwrap();
        let pid = forked.pid.unwrap();
        drop(forked);
        // The child is gone and reaped: no process has its pid.
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        assert_eq!(r, -1, "child {pid} is still there");
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ESRCH));
    }
}
