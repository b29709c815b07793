//! Threads waiting for an LSN to commit, woken only once it has.
//!
//! A condition variable shared by every waiter wakes all of them at each change of the node's
//! status: with 64 clients each commit woke 64 threads that mostly went back to sleep, and
//! their wake-ups and the convoy on the status lock took most of the CPU of a 2-core machine
//! (docs/performance.md, "Replicated commit"). Here each waiter parks on its own and the node's
//! thread wakes exactly those whose LSN the commit passed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Instant;

use parking_lot::Mutex;
use rwal_wal::Lsn;

/// The registry: the commit LSN as last published, and who waits for which LSN.
#[derive(Debug, Default)]
pub(crate) struct CommitWaiters {
    /// The commit LSN the node's thread published last; `u64::MAX` once the node stopped
    /// (everyone must look at the status again).
    published: AtomicU64,
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// By (LSN, ticket): several threads may wait for one LSN.
    threads: BTreeMap<(Lsn, u64), Thread>,
    next_ticket: u64,
}

/// Published in place of a commit LSN once the node's thread stopped: wakes every waiter.
const STOPPED: u64 = u64::MAX;

impl CommitWaiters {
    /// Parks the calling thread until the published commit LSN reaches `lsn`, the node
    /// stops, or `deadline` passes (or spuriously: the caller looks at the status again in
    /// every case).
    pub(crate) fn park_until_committed(&self, lsn: Lsn, deadline: Instant) {
        let Some(ticket) = self.enter(lsn, std::thread::current()) else {
            return;
        };
        let now = Instant::now();
        if deadline > now {
            std::thread::park_timeout(deadline - now);
        }
        // Woken, timed out or spurious: make sure no stale entry stays behind.
        self.waiting.lock().threads.remove(&(lsn, ticket));
    }

    /// Registers `thread` to be unparked once the commit reaches `lsn` (at once if it has):
    /// for a thread that parks on something of its own until then. The ticket to
    /// [`forget`](CommitWaiters::forget) the registration with, if it was entered.
    pub(crate) fn register(&self, lsn: Lsn, thread: Thread) -> Option<u64> {
        let ticket = self.enter(lsn, thread.clone());
        if ticket.is_none() {
            thread.unpark();
        }
        ticket
    }

    /// Removes a registration (`register`'s ticket) whose thread no longer waits; nothing if
    /// a commit woke it already.
    pub(crate) fn forget(&self, lsn: Lsn, ticket: u64) {
        self.waiting.lock().threads.remove(&(lsn, ticket));
    }

    /// Enters `thread` under `lsn` and returns its ticket, or `None` if the commit has reached
    /// `lsn` already.
    fn enter(&self, lsn: Lsn, thread: Thread) -> Option<u64> {
        let mut waiting = self.waiting.lock();
        // Read under the lock: `publish` stores before it takes the lock, so either this sees
        // the new value or `publish` sees this entry.
        if self.published.load(Ordering::Acquire) >= lsn {
            return None;
        }
        let ticket = waiting.next_ticket;
        waiting.next_ticket += 1;
        waiting.threads.insert((lsn, ticket), thread);
        Some(ticket)
    }

    /// Publishes the commit LSN and wakes every thread waiting for it or an older one.
    pub(crate) fn publish(&self, commit_lsn: Lsn) {
        if self.published.load(Ordering::Relaxed) >= commit_lsn {
            return;
        }
        self.published.store(commit_lsn, Ordering::Release);
        self.wake_through(commit_lsn);
    }

    /// The commit LSN published last.
    pub(crate) fn published(&self) -> Lsn {
        self.published.load(Ordering::Acquire)
    }

    /// The node's thread stopped: wakes everyone, now and later.
    pub(crate) fn stop(&self) {
        self.published.store(STOPPED, Ordering::Release);
        self.wake_through(STOPPED);
    }

    fn wake_through(&self, lsn: Lsn) {
        let woken = {
            let mut waiting = self.waiting.lock();
            let later = match lsn.checked_add(1) {
                Some(next) => waiting.threads.split_off(&(next, 0)),
                None => BTreeMap::new(),
            };
            std::mem::replace(&mut waiting.threads, later)
        };
        // Unparked outside the lock: a woken thread's first step is to take it.
        for thread in woken.into_values() {
            thread.unpark();
        }
    }

    /// Threads registered or parked, waiting for a commit.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.lock().threads.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn wait_for_waiters(waiters: &CommitWaiters, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while waiters.waiting() < n {
            assert!(Instant::now() < deadline, "waiters never parked");
            std::thread::yield_now();
        }
    }

    #[test]
    fn only_the_waiters_the_commit_passed_wake() {
        let waiters = Arc::new(CommitWaiters::default());
        let spawn = |lsn: Lsn| {
            let waiters = waiters.clone();
            std::thread::spawn(move || {
                waiters.park_until_committed(lsn, Instant::now() + Duration::from_secs(30))
            })
        };
        let early = spawn(5);
        let late = spawn(9);
        wait_for_waiters(&waiters, 2);
        waiters.publish(6);
        early.join().unwrap();
        // The later one is still registered (parked), not woken for nothing.
        assert_eq!(waiters.waiting(), 1);
        assert!(!late.is_finished());
        waiters.publish(9);
        late.join().unwrap();
        assert_eq!(waiters.waiting(), 0);
    }

    #[test]
    fn a_commit_published_before_parking_is_not_waited_for() {
        let waiters = CommitWaiters::default();
        waiters.publish(10);
        let started = Instant::now();
        waiters.park_until_committed(7, started + Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(waiters.waiting(), 0);
    }

    #[test]
    fn stopping_wakes_everyone_now_and_later() {
        let waiters = Arc::new(CommitWaiters::default());
        let parked = {
            let waiters = waiters.clone();
            std::thread::spawn(move || {
                waiters.park_until_committed(100, Instant::now() + Duration::from_secs(30))
            })
        };
        wait_for_waiters(&waiters, 1);
        waiters.stop();
        parked.join().unwrap();
        let started = Instant::now();
        waiters.park_until_committed(1000, started + Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_timed_out_waiter_leaves_no_entry() {
        let waiters = CommitWaiters::default();
        waiters.park_until_committed(3, Instant::now() + Duration::from_millis(20));
        assert_eq!(waiters.waiting(), 0);
    }
}
