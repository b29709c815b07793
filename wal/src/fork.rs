//! Which process a log belongs to: the one that opened it, not a child forked from it.
//!
//! A child forked without an exec (a pre-fork server's worker, a Python `multiprocessing`
//! child) inherits the handle, the mappings and the descriptors, but not the threads: its
//! copies of the locks may be held forever by threads it does not have, and its copy of the
//! tail is stale. An append there writes over records the opener has acknowledged since the
//! fork. Every call that reads or writes the log is therefore refused in a forked child,
//! before it takes a lock.
//!
//! Asking the kernel for the process id at every call costs a system call per append; instead
//! a `pthread_atfork` hook, registered once per process when the first log opens, counts the
//! forks in the child, and a log compares the count with the one it was opened under: one
//! load of a value nothing writes outside a fork.

use crate::io::fs::forks_counted;
use crate::{Error, Result};

/// The process something was opened in (a log, a snapshot being written, a layer above the
/// log with threads of its own: the replication node, its network): its calls are refused in
/// a child forked from that process, where its threads do not exist and its state is a stale
/// copy.
#[derive(Debug, Clone)]
pub struct OpeningProcess {
    forks: u64,
    pid: u32,
}

impl OpeningProcess {
    /// This process, with the hook that counts forks registered.
    pub fn this_process() -> OpeningProcess {
        OpeningProcess {
            forks: forks_counted(),
            pid: std::process::id(),
        }
    }

    /// The opener's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this is the opener's process (not a child forked from it).
    #[inline]
    pub fn is_current(&self) -> bool {
        crate::io::fs::forks_seen() == self.forks
    }

    /// `InvalidArgument` in a process forked from the opener, `what` naming the call refused.
    #[inline]
    pub fn check(&self, what: &str) -> Result<()> {
        if self.is_current() {
            return Ok(());
        }
        Err(self.refusal(what))
    }

    #[cold]
    fn refusal(&self, what: &str) -> Error {
        Error::invalid(
            "log",
            format!(
                "{what} refused in process {}, forked from process {} that opened the log: \
                 the log belongs to that process (its locks may be held by threads this \
                 process does not have, and its copy of the log's state is stale); a child \
                 that needs the log opens it itself, once that process has closed it",
                std::process::id(),
                self.pid
            ),
        )
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{Options, Wal};

    /// A child forked while a thread of the opener held the pin registry's lock (here the
    /// forking thread itself, which the child's copy of the lock names as its holder) frees
    /// its copies of a reader, a pin and a checkpoint writer without waiting for that lock:
    /// their drops released their pins in the registry first, and the child hung there for
    /// good (found by review on 2026-12-07).
    #[test]
    #[allow(unsafe_code)] // fork, _exit, waitpid, kill (docs/UNSAFE.md, site 26).
    fn a_forked_child_frees_inherited_handles_without_the_openers_locks() {
        let dir = std::env::temp_dir().join(format!("rwal-fork-free-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, Options::new().background_threads(false)).unwrap();
        wal.append_durable(b"record").unwrap();
        let reader = wal.reader(1).unwrap();
        let pin = wal.pin("backup", 1).unwrap();
        let writer = wal.checkpoint_writer(1, 4).unwrap();
        let held = wal.inner.pins.hold();
        // SAFETY: the child only drops its copies of the three handles and leaves with
        // `_exit`; what else it runs is the allocator's `free`, which glibc makes safe after a
        // fork whatever other threads of the test binary were doing.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            drop(reader);
            drop(pin);
            drop(writer);
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) };
        }
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut status = 0;
        let exited = loop {
            // SAFETY: waits for the child forked above, without blocking.
            let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if waited == pid {
                break true;
            }
            if Instant::now() > deadline {
                // SAFETY: kills and reaps the child forked above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(exited, "the forked child waited for the opener's lock");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        // The opener's handles are as they were.
        let mut reader = reader;
        assert_eq!(reader.next().unwrap().map(|r| r.lsn), Some(1));
        pin.move_to(1).unwrap();
        let mut writer = writer;
        writer.write(b"snap").unwrap();
        writer.finish().unwrap();
        drop((reader, pin));
        wal.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
