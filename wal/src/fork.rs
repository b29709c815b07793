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
