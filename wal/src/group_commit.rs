//! Group commit: one sync makes every waiting committer's records durable.
//!
//! Appenders report each copied run of records (`complete`); the contiguous prefix of copied
//! records is the *written* LSN. A committer that finds no sync running becomes the leader: it
//! takes the written LSN as its target, syncs without holding the lock, publishes the new durable
//! LSN and wakes everyone. Committers that arrive meanwhile wait and are served by the next sync,
//! whose target is taken after their records were copied: nobody is acknowledged by a sync that
//! started before its record was written. There is no sync thread: the leader is a committer, so
//! a log without background threads commits exactly the same way.
//!
//! A failed sync poisons: the error is kept, every waiter and every later call gets
//! [`Error::Poisoned`] with it, and nothing retries the sync (after a failed fsync the kernel may
//! have dropped the dirty pages, so a retry that succeeds proves nothing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sync::{AtomicBool, AtomicU64, Condvar, Mutex, MutexGuard, Ordering, Thread};
use crate::Lsn;

/// Counters that show group commit at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Syncs issued by committers.
    pub syncs: u64,
    /// Records made durable by those syncs.
    pub records_synced: u64,
    /// Bytes (as stored, headers and padding included) made durable by those syncs.
    pub bytes_synced: u64,
    /// The most records one sync made durable.
    pub max_records_per_sync: u64,
    /// Commit calls made.
    pub commits: u64,
}

struct State {
    written: Lsn,
    written_bytes: u64,
    /// Runs copied ahead of `written`, waiting for the gap before them to close.
    early: EarlyRuns,
    /// Runs whose appender is done with them: completed, or abandoned by an append that failed
    /// or panicked (see `Tail::runs_placed`).
    runs_ended: u64,
    durable: Lsn,
    durable_bytes: u64,
    syncing: bool,
    /// The last LSN the running sync covers, once its leader took it (while it gathers, the
    /// written LSN, which the target will be at least).
    sync_target: Option<Lsn>,
    /// Committers whose records the running sync covers, parked on their own (`ride`): its
    /// leader wakes each of them directly when it ends.
    riders: Vec<Thread>,
    /// Set while `truncate_after` rewrites the tail: no sync may start.
    frozen: bool,
    /// Bumped by each truncation, so that a committer whose record was cut learns it.
    truncations: u64,
    /// Where the truncations cut, as far as committers still need it (`Cuts::lowest_since`).
    cuts: Cuts,
    poisoned: Option<Arc<Error>>,
    closed: bool,
    /// Threads waiting for `written` to advance (so `complete` only notifies when needed),
    /// committers and appenders whose run is too far ahead for `early` alike.
    waiting_for_written: u32,
    /// How long the last sync took: the most a leader waits for more committers to join.
    last_sync: Duration,
    /// Committers the last sync served (its leader and riders), and the arrivals count when
    /// it ended: a gathering leader waits for as many to come back.
    served_last: u64,
    arrivals_at_end: u64,
    stats: CommitStats,
}

/// The truncations (and resets) that ended, by their count (`State::truncations` after each)
/// and the LSN each cut to: what a committer that saw `seen` of them needs is the lowest LSN a
/// later one cut to, below which its record survived them all.
#[derive(Default)]
struct Cuts {
    /// Counts and LSNs both increasing: a truncation to an LSN at or below earlier ones' makes
    /// those redundant (a committer that saw fewer than they did sees it too), and they go.
    kept: std::collections::VecDeque<(u64, Lsn)>,
    /// Truncations let go for room (past `CUTS_KEPT_MAX`): the highest count and the lowest LSN
    /// among them.
    forgotten: Option<(u64, Lsn)>,
}

/// The truncations [`Cuts`] keeps apart. One kept longer is forgotten: a committer that saw
/// this many more truncations end while it waited then finds its record cut at the lowest LSN
/// any forgotten one cut to, which may be lower than what those after its count cut to (it is
/// told `NotFound` of a record that may be there); no log truncates that often under a commit.
const CUTS_KEPT_MAX: usize = 64;

impl Cuts {
    fn note(&mut self, count: u64, lsn: Lsn) {
        while self.kept.back().is_some_and(|&(_, cut)| cut >= lsn) {
            self.kept.pop_back();
        }
        self.kept.push_back((count, lsn));
        if self.kept.len() > CUTS_KEPT_MAX {
            if let Some((count, cut)) = self.kept.pop_front() {
                let lowest = self
                    .forgotten
                    .map_or(cut, |(_, forgotten)| forgotten.min(cut));
                self.forgotten = Some((count, lowest));
            }
        }
    }

    /// The lowest LSN a truncation after the `seen`th cut to (`Lsn::MAX`: none).
    fn lowest_since(&self, seen: u64) -> Lsn {
        // The first kept after `seen` cut lowest of the kept after it (LSNs increase).
        let kept = self
            .kept
            .iter()
            .find(|&&(count, _)| count > seen)
            .map_or(Lsn::MAX, |&(_, cut)| cut);
        match self.forgotten {
            Some((count, cut)) if count > seen => kept.min(cut),
            _ => kept,
        }
    }
}

/// The longest a leader gathers committers before its sync, whatever the last sync took.
const GATHER_MAX: Duration = Duration::from_millis(1);

/// How far ahead of the written LSN a completed run may start and still be parked in
/// [`EarlyRuns`]; a run further ahead waits in [`GroupCommit::complete`].
pub(crate) const EARLY_RUNS_MAX: u64 = 1 << 14;

/// Runs completed ahead of the written LSN, in a ring indexed by their first LSN: parking one
/// and taking the next are O(1) however many wait. (A binary heap here cost 11% of the append
/// path at two threads: a preempted appender holds the gap open while the other completes some
/// 100 000 runs.) Every parked run starts within `EARLY_RUNS_MAX` LSNs after the written LSN, so
/// two parked runs never share a slot. The ring is allocated on the first early run: a log
/// appended from one thread never needs it.
#[derive(Default)]
struct EarlyRuns {
    /// Slot `first % EARLY_RUNS_MAX` holds (last, bytes) of the run starting at `first`;
    /// `last == 0` marks an empty slot (LSNs start at 1).
    slots: Vec<(Lsn, u64)>,
    parked: usize,
}

impl EarlyRuns {
    fn insert(&mut self, first: Lsn, last: Lsn, bytes: u64) {
        if self.slots.is_empty() {
            self.slots = vec![(0, 0); EARLY_RUNS_MAX as usize];
        }
        let slot = &mut self.slots[(first % EARLY_RUNS_MAX) as usize];
        debug_assert_eq!(slot.0, 0, "two parked runs share the slot of {first}");
        *slot = (last, bytes);
        self.parked += 1;
    }

    /// Takes the run starting at `first`, if it is parked.
    fn take(&mut self, first: Lsn) -> Option<(Lsn, u64)> {
        if self.parked == 0 {
            return None;
        }
        let slot = &mut self.slots[(first % EARLY_RUNS_MAX) as usize];
        if slot.0 == 0 {
            return None;
        }
        self.parked -= 1;
        Some(std::mem::take(slot))
    }

    fn is_empty(&self) -> bool {
        self.parked == 0
    }
}

/// The runs an append placed and has not completed yet. When the append returns early (its copy
/// failed) or unwinds, they are counted as ended all the same, so that `close`, which waits
/// until as many runs ended as were placed (`Tail::runs_placed`), does not wait for them
/// forever.
pub(crate) struct RunsInProgress<'a> {
    group: &'a GroupCommit,
    left: u64,
}

impl RunsInProgress<'_> {
    /// Reports the next run, `first..=last` (`bytes` as stored), completely copied
    /// ([`GroupCommit::complete`]).
    pub fn complete(&mut self, first: Lsn, last: Lsn, bytes: u64) {
        debug_assert!(self.left > 0, "more runs completed than placed");
        self.group.complete(first, last, bytes);
        // Only once `complete` returned: a panic inside it (a bug) leaves the run to `drop`,
        // and it is counted once either way.
        self.left -= 1;
    }
}

impl Drop for RunsInProgress<'_> {
    fn drop(&mut self) {
        if self.left > 0 {
            self.group.abandon(self.left);
        }
    }
}

/// The group-commit state of one log.
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    cond: Condvar,
    /// Threads inside `commit` now.
    committers: AtomicU64,
    /// Calls of `commit` so far: a leader gathering a batch watches it grow.
    arrivals: AtomicU64,
    /// Gatherings run (for tests: whether a leader gathered at all).
    #[cfg(test)]
    gatherings: AtomicU64,
    durable: AtomicU64,
    /// `State::truncations`, readable without the lock (`truncations`).
    truncations: AtomicU64,
    /// Set once the log is poisoned or closed, so that the append path checks without locking.
    failed: AtomicBool,
}

impl GroupCommit {
    /// State after recovery: everything up to `durable` is written and durable.
    pub fn new(durable: Lsn) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(State {
                written: durable,
                written_bytes: 0,
                early: EarlyRuns::default(),
                runs_ended: 0,
                durable,
                durable_bytes: 0,
                syncing: false,
                sync_target: None,
                riders: Vec::new(),
                frozen: false,
                truncations: 0,
                cuts: Cuts::default(),
                poisoned: None,
                closed: false,
                waiting_for_written: 0,
                last_sync: Duration::ZERO,
                served_last: 0,
                arrivals_at_end: 0,
                stats: CommitStats::default(),
            }),
            cond: Condvar::new(),
            committers: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            #[cfg(test)]
            gatherings: AtomicU64::new(0),
            durable: AtomicU64::new(durable),
            truncations: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        }
    }

    /// The durable LSN: every record up to it survives a crash.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable.load(Ordering::Acquire)
    }

    /// The written LSN: every record up to it is completely copied.
    pub fn written_lsn(&self) -> Lsn {
        self.state.lock().written
    }

    /// Whether syncs are frozen (a truncation or a reset is under way).
    #[cfg(test)]
    pub fn frozen(&self) -> bool {
        self.state.lock().frozen
    }

    /// Counters.
    pub fn stats(&self) -> CommitStats {
        self.state.lock().stats
    }

    /// Records that the run `first..=last` (`bytes` as stored) is completely copied, and counts
    /// it as ended once that is done (a panic before, a bug, leaves it to the appender's guard
    /// to give up, so that it is counted once either way).
    ///
    /// A run more than [`EARLY_RUNS_MAX`] LSNs ahead of the written LSN waits here until the gap
    /// narrows: the appender that holds the gap open was preempted, and waiting gives it a CPU.
    pub fn complete(&self, first: Lsn, last: Lsn, bytes: u64) {
        let mut st = self.state.lock();
        #[cfg(all(test, not(loom)))]
        crate::test_hooks::hook_outside("complete: before the run is noted");
        self.note_copied(&mut st, first, last, bytes);
        #[cfg(all(test, not(loom)))]
        crate::test_hooks::hook_outside("complete: the run is noted");
        st.runs_ended += 1;
    }

    fn note_copied(&self, st: &mut MutexGuard<'_, State>, first: Lsn, last: Lsn, bytes: u64) {
        debug_assert!(first <= last);
        debug_assert!(first > st.written, "run {first}..={last} completed twice");
        while first != st.written + 1 {
            if first - st.written - 1 < EARLY_RUNS_MAX {
                st.early.insert(first, last, bytes);
                return;
            }
            if st.poisoned.is_some() || st.closed {
                // The appender holding the gap may have failed and will never complete it;
                // nothing is synced any more anyway.
                return;
            }
            st.waiting_for_written += 1;
            self.cond.wait(st);
            st.waiting_for_written -= 1;
        }
        st.written = last;
        st.written_bytes += bytes;
        while let Some((l, b)) = {
            let next = st.written + 1;
            st.early.take(next)
        } {
            st.written = l;
            st.written_bytes += b;
        }
        if st.waiting_for_written > 0 {
            self.cond.notify_all();
        }
    }

    /// The guard of an append's `placed` runs, which it completes through it
    /// ([`RunsInProgress::complete`]) or, returning early or unwinding, gives up.
    pub fn runs_in_progress(&self, placed: u64) -> RunsInProgress<'_> {
        RunsInProgress {
            group: self,
            left: placed,
        }
    }

    /// Records that an append is done with `runs` runs it placed and will never complete (its
    /// copy failed or panicked, poisoning the log).
    fn abandon(&self, runs: u64) {
        self.state.lock().runs_ended += runs;
    }

    /// Runs completed or abandoned so far.
    pub fn runs_ended(&self) -> u64 {
        self.state.lock().runs_ended
    }

    /// What `close` waits for, holding the tail lock (so that no run is placed meanwhile):
    /// every run placed so far ended, its copy completed or given up. Waits for the LSNs placed
    /// to be written first (at once on a poisoned log: its failed runs are never written),
    /// then for the count of runs ended to reach the count placed. Shared with the loom model
    /// of `close`, which ran a copy of it until 2026-12-07.
    pub fn wait_for_runs_placed<S: Clone>(&self, tail: &crate::reserve::Tail<S>) {
        let _ = self.wait_written(tail.next_lsn() - 1);
        let placed = tail.runs_placed();
        while self.runs_ended() < placed {
            crate::sync::sleep(Duration::from_micros(100));
        }
    }

    /// Fails with the poisoning error, if any.
    pub fn check(&self) -> Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let st = self.state.lock();
        Self::check_state(&st)
    }

    fn check_state(st: &State) -> Result<()> {
        if let Some(cause) = &st.poisoned {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        if st.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Poisons the log with `cause` and wakes every waiter.
    pub fn poison(&self, cause: Error) -> Error {
        let mut st = self.state.lock();
        let cause = match &st.poisoned {
            Some(first) => first.clone(),
            None => {
                let cause = Arc::new(cause);
                st.poisoned = Some(cause.clone());
                cause
            }
        };
        self.failed.store(true, Ordering::Release);
        self.cond.notify_all();
        Error::Poisoned { cause }
    }

    /// Whether the log was closed, poisoned or not ([`check`](GroupCommit::check) reports a
    /// poisoned log's failure first).
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Marks the log closed and wakes every waiter; returns once a sync in progress ended (no
    /// sync starts after this: a committer checks for the close before it leads).
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        self.failed.store(true, Ordering::Release);
        self.cond.notify_all();
        while st.syncing {
            self.cond.wait(&mut st);
        }
    }

    /// Returns once every record up to `lsn` is durable. `sync(from, to)` makes records
    /// `from + 1..=to` durable; it runs on the calling thread when it becomes the leader, after
    /// waiting `delay` (if not zero) for more records to join the sync, or else after gathering
    /// the committers on their way (`gather`). `sync` must not unwind: the sync would stay in
    /// progress for good (the log turns a panic in it into an error).
    #[cfg(any(test, loom))]
    pub fn commit(
        &self,
        lsn: Lsn,
        delay: Duration,
        sync: impl FnMut(Lsn, Lsn) -> Result<()>,
    ) -> Result<()> {
        let seen = self.truncations();
        self.commit_after(lsn, seen, delay, sync)
    }

    /// How many truncations and resets have ended: a caller that checks `lsn` against the
    /// log's end reads this first and passes it to [`commit_after`](GroupCommit::commit_after),
    /// so that a cut between its check and the commit is noticed.
    pub fn truncations(&self) -> u64 {
        // Stored after the cut lowered the log's end (Release), so a caller that reads the new
        // count here (Acquire) then reads the lowered end.
        self.truncations.load(Ordering::Acquire)
    }

    /// [`commit`](GroupCommit::commit) for a caller that saw `seen` truncations when it checked
    /// `lsn`: a later one that cut `lsn` ends the commit with `NotFound` (it would otherwise
    /// wait for `lsn` to be written again).
    pub fn commit_after(
        &self,
        lsn: Lsn,
        seen: u64,
        delay: Duration,
        mut sync: impl FnMut(Lsn, Lsn) -> Result<()>,
    ) -> Result<()> {
        self.arrivals.fetch_add(1, Ordering::AcqRel);
        self.committers.fetch_add(1, Ordering::AcqRel);
        let outcome = self.commit_counted(lsn, seen, delay, &mut sync);
        self.committers.fetch_sub(1, Ordering::AcqRel);
        outcome
    }

    fn commit_counted(
        &self,
        lsn: Lsn,
        truncations: u64,
        delay: Duration,
        mut sync: impl FnMut(Lsn, Lsn) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.state.lock();
        st.stats.commits += 1;
        // Set once this committer rode or waited for a sync that covers `lsn`: that sync's
        // outcome is the answer, whatever happened to the log since (the leader's is, too).
        let mut covered = false;
        loop {
            // Against every truncation since the caller's count, not only the last: cut back
            // below `lsn` and then written past it again, the log ends above `lsn` after a
            // second truncation, and the record there is not the caller's (found by review
            // on 2026-12-08).
            let cut_to = if st.truncations == truncations {
                Lsn::MAX
            } else {
                st.cuts.lowest_since(truncations)
            };
            let cut = lsn > cut_to;
            if covered && !cut && st.durable >= lsn {
                return Ok(());
            }
            if !cut
                && st.closed
                && st.poisoned.is_none()
                && st.syncing
                && lsn <= st.sync_target.unwrap_or(st.written)
            {
                // A close waits for the running sync to end, and so does a record it covers,
                // rather than be told `Closed` of a record that sync then makes durable.
                covered = true;
                self.cond.wait(&mut st);
                continue;
            }
            Self::check_state(&st)?;
            if cut {
                return Err(Error::NotFound {
                    lsn,
                    last_lsn: st.written,
                });
            }
            if st.durable >= lsn {
                return Ok(());
            }
            if st.syncing && !st.frozen && lsn <= st.sync_target.unwrap_or(st.written) {
                // The running sync covers this record: wait for it on our own, not on the
                // condition variable (see `ride`).
                st.riders.push(crate::sync::current());
                drop(st);
                if self.ride(lsn, truncations) {
                    return Ok(());
                }
                // A failure, a truncation or a close (which may have come while the sync
                // still ran, and its outcome is the answer).
                covered = true;
                st = self.state.lock();
                continue;
            }
            if st.syncing || st.frozen {
                self.cond.wait(&mut st);
                continue;
            }
            if st.written < lsn {
                st.waiting_for_written += 1;
                self.cond.wait(&mut st);
                st.waiting_for_written -= 1;
                continue;
            }
            st.syncing = true;
            if !delay.is_zero() {
                drop(st);
                crate::sync::sleep(delay);
                st = self.state.lock();
            } else {
                st = self.gather(st);
            }
            let (done, riders) = self.lead(st, &mut sync);
            // This record was in the sync (its leader only leads once it is written): if the
            // sync made it durable, that is the answer, even if the log closed meanwhile.
            let durable = done.durable >= lsn;
            drop(done);
            for rider in riders {
                rider.unpark();
            }
            if durable {
                return Ok(());
            }
            st = self.state.lock();
        }
    }

    /// Waits, parked, for the running sync that covers `lsn` to end: true if it made `lsn`
    /// durable, false if the caller must look at the state again under the lock (a failure,
    /// a truncation since the caller saw `truncations`, or a close).
    ///
    /// Waiting on the condition variable instead, every committer the sync served woke in a
    /// chain: parking_lot's `notify_all` moves the waiters to the mutex, and each woken thread
    /// takes the lock and wakes the next as it lets go (std's wakes them all at once, and then
    /// they convoy on the lock). Here the leader wakes each rider itself, and a rider returns
    /// on an atomic load, without the lock. Measured on 2026-12-01 (docs/performance.md).
    ///
    /// Every rider is woken once after the sync ends (`lead` takes the list under the lock),
    /// and that wake-up makes the sync's outcome visible: the durable LSN, or `failed`. A
    /// truncation that lowers the durable LSN afterwards bumps the count first (`thaw`).
    fn ride(&self, lsn: Lsn, truncations: u64) -> bool {
        loop {
            if self.durable.load(Ordering::Acquire) >= lsn {
                return true;
            }
            if self.failed.load(Ordering::Acquire)
                || self.truncations.load(Ordering::Acquire) != truncations
            {
                return false;
            }
            crate::sync::park();
        }
    }

    /// The adaptive part of the commit delay. With other threads committing, the ones the last
    /// sync released are on their way back with their next records (appending, about to call
    /// `commit`): the leader lets them run (it yields) while they keep arriving, so that one sync
    /// serves them too, instead of syncing the few already here and leaving them to the next.
    /// It stops once as many committers as the last sync served have arrived since it ended and
    /// two yields in a row bring nobody, or after as long as the last sync took. (Without the
    /// count, the idle yields ended gatherings early once the riders of a sync all woke at
    /// once: 2.7 records per sync at 4 threads, against 4.0 with it.) A thread committing alone
    /// never waits here.
    ///
    /// Measured with 64 threads appending and committing 128-byte records (staged, this
    /// machine): records per sync went from 17 to 40 and throughput from 81 to 142-151 thousand
    /// commits/s; at 4 threads from 20 to 24-29 thousand; one thread is unchanged
    /// (docs/performance.md).
    fn gather<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if self.committers.load(Ordering::Acquire) < 2 {
            return st;
        }
        let cap = st.last_sync.min(GATHER_MAX);
        let (expected, since) = (st.served_last, st.arrivals_at_end);
        drop(st);
        #[cfg(test)]
        self.gatherings.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let mut seen = self.arrivals.load(Ordering::Acquire);
        let mut idle = 0;
        while (idle < 2 || seen.wrapping_sub(since) < expected)
            && crate::sync::elapsed(started) < cap
        {
            crate::sync::yield_now();
            let now = self.arrivals.load(Ordering::Acquire);
            if now == seen {
                idle += 1;
            } else {
                (seen, idle) = (now, 0);
            }
        }
        self.state.lock()
    }

    /// Runs one sync as the leader and publishes its outcome; returns the riders to wake.
    fn lead<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        sync: &mut impl FnMut(Lsn, Lsn) -> Result<()>,
    ) -> (MutexGuard<'a, State>, Vec<Thread>) {
        debug_assert!(st.syncing);
        let (from, target) = (st.durable, st.written);
        let bytes = st.written_bytes - st.durable_bytes;
        st.sync_target = Some(target);
        drop(st);
        let started = Instant::now();
        let outcome = sync(from, target);
        let took = crate::sync::elapsed(started);
        let mut st = self.state.lock();
        st.syncing = false;
        st.sync_target = None;
        st.last_sync = took;
        match outcome {
            // Poisoned while this sync ran (a failed write elsewhere): what it covered may miss
            // bytes that failed write dropped, so the durable LSN stays where it was.
            Ok(()) if st.poisoned.is_some() => {}
            Ok(()) => {
                assert!(target >= st.durable, "durable LSN went backwards");
                st.durable = target;
                st.durable_bytes += bytes;
                self.durable.store(target, Ordering::Release);
                let records = target - from;
                st.stats.syncs += 1;
                st.stats.records_synced += records;
                st.stats.bytes_synced += bytes;
                st.stats.max_records_per_sync = st.stats.max_records_per_sync.max(records);
            }
            Err(cause) if st.poisoned.is_none() => {
                st.poisoned = Some(Arc::new(cause));
                self.failed.store(true, Ordering::Release);
            }
            Err(_) => {}
        }
        self.cond.notify_all();
        let riders = std::mem::take(&mut st.riders);
        st.served_last = riders.len() as u64 + 1;
        st.arrivals_at_end = self.arrivals.load(Ordering::Acquire);
        (st, riders)
    }

    /// Waits until the durable LSN reaches `lsn`, the deadline passes (`Timeout`), or the log is
    /// poisoned or closed.
    pub fn wait_durable(&self, lsn: Lsn, deadline: Instant) -> Result<()> {
        let mut st = self.state.lock();
        loop {
            Self::check_state(&st)?;
            if st.durable >= lsn {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    waiting_for: "a durable record",
                });
            }
            self.cond.wait_for(&mut st, deadline - now);
        }
    }

    /// Waits until every record up to `lsn` is copied (appends must be stopped, so that this
    /// cannot wait forever), or the log is poisoned.
    pub fn wait_written(&self, lsn: Lsn) -> Result<()> {
        let mut st = self.state.lock();
        while st.written < lsn {
            Self::check_state(&st)?;
            st.waiting_for_written += 1;
            self.cond.wait(&mut st);
            st.waiting_for_written -= 1;
        }
        Ok(())
    }

    /// Stops syncs for a truncation: waits for a running sync to finish, then keeps new ones
    /// from starting until `thaw`. Appends must already be stopped.
    pub fn freeze(&self) -> Result<()> {
        let mut st = self.state.lock();
        while st.syncing {
            self.cond.wait(&mut st);
        }
        Self::check_state(&st)?;
        assert!(!st.frozen, "truncations are serialized by the caller");
        st.frozen = true;
        Ok(())
    }

    /// Ends a truncation to `lsn`: written and durable are now `lsn` (everything after was cut).
    pub fn thaw(&self, lsn: Lsn) {
        let mut st = self.state.lock();
        debug_assert!(st.frozen);
        debug_assert!(
            st.early.is_empty(),
            "appends were stopped during truncation"
        );
        st.frozen = false;
        st.written = st.written.min(lsn);
        st.durable = st.durable.min(lsn);
        // The count first: a rider that reads the lowered durable LSN then sees it (`ride`).
        st.truncations += 1;
        self.truncations.store(st.truncations, Ordering::Release);
        self.durable.store(st.durable, Ordering::Release);
        let count = st.truncations;
        st.cuts.note(count, lsn);
        self.cond.notify_all();
    }

    /// Ends a reset to a snapshot at `lsn`: the log is empty and continues at `lsn + 1`;
    /// written and durable are `lsn`, whatever they were.
    pub fn reset_to(&self, lsn: Lsn) {
        let mut st = self.state.lock();
        debug_assert!(st.frozen);
        st.frozen = false;
        st.written = lsn;
        st.durable = lsn;
        st.truncations += 1;
        self.truncations.store(st.truncations, Ordering::Release);
        self.durable.store(lsn, Ordering::Release);
        let count = st.truncations;
        st.cuts.note(count, lsn);
        self.cond.notify_all();
    }

    /// Ends a freeze that cut nothing.
    pub fn thaw_unchanged(&self) {
        self.state.lock().frozen = false;
        self.cond.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64 as StdAtomicU64;
    use std::thread;

    #[test]
    fn one_sync_serves_many_committers() {
        let gc = Arc::new(GroupCommit::new(0));
        for lsn in 1..=10 {
            gc.complete(lsn, lsn, 40);
        }
        let syncs = Arc::new(StdAtomicU64::new(0));
        let s = syncs.clone();
        gc.commit(10, Duration::ZERO, |from, to| {
            assert_eq!((from, to), (0, 10));
            s.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        // Already durable: no further sync.
        gc.commit(3, Duration::ZERO, |_, _| panic!("no sync needed"))
            .unwrap();
        assert_eq!(syncs.load(std::sync::atomic::Ordering::Relaxed), 1);
        let stats = gc.stats();
        assert_eq!(
            (stats.syncs, stats.records_synced, stats.bytes_synced),
            (1, 10, 400)
        );
    }

    /// A sync held until the test lets it go: `sync` is the closure for the leader.
    struct HeldSync {
        reached: std::sync::mpsc::Receiver<()>,
        release: std::sync::mpsc::SyncSender<()>,
    }

    fn held_sync(
        outcome: fn() -> Result<()>,
    ) -> (HeldSync, impl FnMut(Lsn, Lsn) -> Result<()> + Send) {
        let (reached_tx, reached) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::sync_channel(1);
        let sync = move |_, _| {
            reached_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            outcome()
        };
        (HeldSync { reached, release }, sync)
    }

    /// Commits each of `lsns` on a thread of its own while a sync covering them runs, and
    /// returns once all of them ride it.
    fn ride(
        gc: &Arc<GroupCommit>,
        lsns: std::ops::RangeInclusive<Lsn>,
    ) -> Vec<thread::JoinHandle<Result<()>>> {
        let riders: Vec<_> = lsns
            .map(|lsn| {
                let gc = gc.clone();
                thread::spawn(move || gc.commit(lsn, Duration::ZERO, |_, _| panic!("rides")))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while gc.state.lock().riders.len() < riders.len() {
            assert!(
                Instant::now() < deadline,
                "the committers never became riders"
            );
            thread::yield_now();
        }
        riders
    }

    /// Committers whose records a running sync covers ride it: they wait apart from the
    /// condition variable, and its leader wakes every one of them when it ends.
    #[test]
    fn riders_of_a_sync_return_when_it_ends() {
        let gc = Arc::new(GroupCommit::new(0));
        gc.complete(1, 5, 200);
        let (held, sync) = held_sync(|| Ok(()));
        let leader = {
            let gc = gc.clone();
            thread::spawn(move || gc.commit(1, Duration::ZERO, sync))
        };
        held.reached.recv().unwrap();
        let riders = ride(&gc, 2..=5);
        // A record written after the sync began is not covered: it waits for the next one.
        gc.complete(6, 6, 40);
        let next = {
            let gc = gc.clone();
            thread::spawn(move || {
                gc.commit(6, Duration::ZERO, |from, to| {
                    assert_eq!((from, to), (5, 6));
                    Ok(())
                })
            })
        };
        held.release.send(()).unwrap();
        leader.join().unwrap().unwrap();
        for rider in riders {
            rider.join().unwrap().unwrap();
        }
        next.join().unwrap().unwrap();
        assert_eq!(gc.durable_lsn(), 6);
        assert!(gc.state.lock().riders.is_empty());
    }

    /// A failed sync fails its riders with the poison, and nobody is left parked.
    #[test]
    fn riders_of_a_failed_sync_get_the_poison() {
        let gc = Arc::new(GroupCommit::new(0));
        gc.complete(1, 3, 120);
        let (held, sync) = held_sync(|| {
            Err(Error::Unsupported {
                reason: "injected sync failure".into(),
            })
        });
        let leader = {
            let gc = gc.clone();
            thread::spawn(move || gc.commit(1, Duration::ZERO, sync))
        };
        held.reached.recv().unwrap();
        let riders = ride(&gc, 2..=3);
        held.release.send(()).unwrap();
        for handle in std::iter::once(leader).chain(riders) {
            let outcome = handle.join().unwrap();
            assert!(
                matches!(outcome, Err(Error::Poisoned { .. })),
                "{outcome:?}"
            );
        }
        assert_eq!(gc.durable_lsn(), 0);
    }

    /// `close` returns only once the sync in progress ended: that sync still writes to the
    /// log's files, which another process may own once the log is closed.
    #[test]
    fn close_waits_for_the_sync_in_progress() {
        let gc = Arc::new(GroupCommit::new(0));
        gc.complete(1, 1, 40);
        let (held, sync) = held_sync(|| Ok(()));
        let leader = {
            let gc = gc.clone();
            thread::spawn(move || gc.commit(1, Duration::ZERO, sync))
        };
        held.reached.recv().unwrap();
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let closer = {
            let gc = gc.clone();
            thread::spawn(move || {
                gc.close();
                closed_tx.send(()).unwrap();
            })
        };
        // Not a wait for something that should happen: a window for something that must not.
        assert!(closed.recv_timeout(Duration::from_millis(200)).is_err());
        held.release.send(()).unwrap();
        closed.recv_timeout(Duration::from_secs(10)).unwrap();
        closer.join().unwrap();
        // The sync made the record durable: its committer is told so, closed or not.
        leader.join().unwrap().unwrap();
        assert!(matches!(gc.check(), Err(Error::Closed)));
    }

    /// A commit of a record that the running sync covers, arriving after a close started (or
    /// a rider that saw the close's flag before that sync ended), waits for the sync and is
    /// told what it did. It used to be told `Closed` at once, though the sync then made its
    /// record durable.
    #[test]
    fn a_commit_covered_by_the_sync_a_close_waits_for_gets_that_syncs_outcome() {
        let gc = Arc::new(GroupCommit::new(0));
        gc.complete(1, 3, 120);
        let (held, sync) = held_sync(|| Ok(()));
        let leader = {
            let gc = gc.clone();
            thread::spawn(move || gc.commit(1, Duration::ZERO, sync))
        };
        held.reached.recv().unwrap();
        let closer = {
            let gc = gc.clone();
            thread::spawn(move || gc.close())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while gc.check().is_ok() {
            assert!(Instant::now() < deadline, "the close never started");
            thread::yield_now();
        }
        let committer = {
            let gc = gc.clone();
            thread::spawn(move || gc.commit(3, Duration::ZERO, |_, _| panic!("no second sync")))
        };
        // Counted under the lock it holds until it returns or waits: once counted, it decided.
        while gc.state.lock().stats.commits < 2 {
            assert!(Instant::now() < deadline, "the commit never started");
            thread::yield_now();
        }
        held.release.send(()).unwrap();
        leader.join().unwrap().unwrap();
        closer.join().unwrap();
        let outcome = committer.join().unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(gc.durable_lsn(), 3);
        // A commit after the close of a record no sync covered is refused.
        gc.complete(4, 4, 40);
        let late = gc.commit(4, Duration::ZERO, |_, _| panic!("no sync after close"));
        assert!(matches!(late, Err(Error::Closed)), "{late:?}");
    }

    /// Increments `arrivals` until dropped, as committers that never stop coming would.
    struct EndlessArrivals {
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<thread::JoinHandle<()>>,
    }

    impl EndlessArrivals {
        fn start(gc: &Arc<GroupCommit>) -> EndlessArrivals {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (gc, flag) = (gc.clone(), stop.clone());
            let thread = thread::spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Acquire) {
                    gc.arrivals
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    thread::yield_now();
                }
            });
            EndlessArrivals {
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for EndlessArrivals {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Release);
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    /// Runs `f` on another thread; fails unless it returns within ten seconds.
    fn returns_in_time(f: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("still waiting after ten seconds");
    }

    #[test]
    fn gathering_ends_while_committers_keep_arriving() {
        let gc = Arc::new(GroupCommit::new(0));
        // The cap is the last sync's duration: a minute, so that the test sees it ignored.
        gc.state.lock().last_sync = Duration::from_secs(60);
        gc.committers
            .fetch_add(2, std::sync::atomic::Ordering::AcqRel);
        let _arrivals = EndlessArrivals::start(&gc);
        // Arrivals never stop, so only the cap ends the gathering: GATHER_MAX, 1 ms.
        let leader = gc.clone();
        returns_in_time(move || drop(leader.gather(leader.state.lock())));
        assert_eq!(gc.gatherings.load(std::sync::atomic::Ordering::Acquire), 1);
    }

    #[test]
    fn a_lone_committer_does_not_gather() {
        let gc = Arc::new(GroupCommit::new(0));
        gc.state.lock().last_sync = Duration::from_secs(3600);
        gc.complete(1, 1, 40);
        let _arrivals = EndlessArrivals::start(&gc);
        let committer = gc.clone();
        returns_in_time(move || committer.commit(1, Duration::ZERO, |_, _| Ok(())).unwrap());
        assert_eq!(gc.durable_lsn(), 1);
        // Alone in `commit` (whatever else moves), the leader synced without gathering.
        assert_eq!(gc.gatherings.load(std::sync::atomic::Ordering::Acquire), 0);
    }

    #[test]
    fn out_of_order_completion_waits_for_the_gap() {
        let gc = GroupCommit::new(0);
        gc.complete(2, 3, 80);
        assert_eq!(gc.written_lsn(), 0);
        gc.complete(1, 1, 40);
        assert_eq!(gc.written_lsn(), 3);
    }

    #[test]
    fn parked_runs_wrap_around_the_ring() {
        let gc = GroupCommit::new(0);
        // Windows of 100 one-record runs completed backwards: 99 park, the first closes the
        // gap. Three times around the ring, so that slots are reused.
        for base in (0..3 * EARLY_RUNS_MAX).step_by(100) {
            for lsn in (base + 2..=base + 100).rev() {
                gc.complete(lsn, lsn, 40);
            }
            assert_eq!(gc.written_lsn(), base);
            gc.complete(base + 1, base + 1, 40);
            assert_eq!(gc.written_lsn(), base + 100);
        }
        assert!(gc.state.lock().early.is_empty());
        let st = gc.state.lock();
        assert_eq!(st.written_bytes, 40 * st.written);
    }

    /// A run one slot past what `EarlyRuns` parks, completed on another thread; returns once it
    /// waits for the gap.
    fn complete_too_far_ahead(gc: &Arc<GroupCommit>) -> (Lsn, thread::JoinHandle<()>) {
        let far = EARLY_RUNS_MAX + 2;
        let ahead = {
            let gc = gc.clone();
            thread::spawn(move || gc.complete(far, far, 40))
        };
        while gc.state.lock().waiting_for_written == 0 {
            thread::yield_now();
        }
        (far, ahead)
    }

    #[test]
    fn a_run_too_far_ahead_waits_for_the_gap() {
        let gc = Arc::new(GroupCommit::new(0));
        let (far, ahead) = complete_too_far_ahead(&gc);
        assert!(!ahead.is_finished());
        assert_eq!(gc.written_lsn(), 0);
        gc.complete(1, far - 1, 40 * (far - 1));
        ahead.join().unwrap();
        assert_eq!(gc.written_lsn(), far);
        assert_eq!(gc.state.lock().written_bytes, 40 * far);
    }

    #[test]
    fn a_run_waiting_for_the_gap_is_released_by_poison() {
        let gc = Arc::new(GroupCommit::new(0));
        let (_, ahead) = complete_too_far_ahead(&gc);
        // The appender of LSN 1 failed its write: it poisons and never completes.
        gc.poison(Error::Closed);
        ahead.join().unwrap();
        assert_eq!(gc.written_lsn(), 0);
    }

    #[test]
    fn failed_sync_poisons_every_waiter_and_later_call() {
        let gc = Arc::new(GroupCommit::new(0));
        gc.complete(1, 1, 40);
        let waiter = {
            let gc = gc.clone();
            // Waits for LSN 2, which is never written: only the poison can wake it.
            thread::spawn(move || gc.commit(2, Duration::ZERO, |_, _| Ok(())))
        };
        let err = gc.commit(1, Duration::ZERO, |_, _| {
            Err(Error::io(
                "fdatasync",
                "seg",
                std::io::Error::from_raw_os_error(libc::EIO),
            ))
        });
        assert!(matches!(err, Err(Error::Poisoned { .. })), "{err:?}");
        assert!(matches!(
            waiter.join().unwrap(),
            Err(Error::Poisoned { .. })
        ));
        let later = gc.commit(1, Duration::ZERO, |_, _| Ok(()));
        match later {
            Err(Error::Poisoned { cause }) => assert!(matches!(
                *cause,
                Error::Io {
                    op: "fdatasync",
                    ..
                }
            )),
            other => panic!("expected poisoned, got {other:?}"),
        }
    }

    #[test]
    fn truncation_fails_committers_of_cut_records() {
        let gc = Arc::new(GroupCommit::new(0));
        gc.complete(1, 1, 40);
        gc.commit(1, Duration::ZERO, |_, _| Ok(())).unwrap();
        let waiter = {
            let gc = gc.clone();
            thread::spawn(move || gc.commit(5, Duration::ZERO, |_, _| Ok(())))
        };
        // Let the waiter block on LSN 5 (never written), then cut back to 1.
        while gc.state.lock().waiting_for_written == 0 {
            thread::yield_now();
        }
        gc.freeze().unwrap();
        gc.thaw(1);
        assert!(matches!(
            waiter.join().unwrap(),
            Err(Error::NotFound {
                lsn: 5,
                last_lsn: 1
            })
        ));
    }

    /// Two truncations between a caller's check and its commit, the first cutting its record
    /// and the second after the log grew past it again: the commit looked at the last cut only,
    /// and reported the record there, another one, durable (found by review on 2026-12-08).
    #[test]
    fn a_record_cut_and_written_over_before_a_second_cut_is_not_reported_durable() {
        let gc = GroupCommit::new(0);
        gc.complete(1, 5, 200);
        let seen = gc.truncations();
        gc.freeze().unwrap();
        gc.thaw(2);
        gc.complete(3, 6, 160);
        gc.freeze().unwrap();
        gc.thaw(5);
        assert!(matches!(
            gc.commit_after(4, seen, Duration::ZERO, |_, _| Ok(())),
            Err(Error::NotFound {
                lsn: 4,
                last_lsn: 5
            })
        ));
        // Below both cuts the record is the caller's.
        gc.commit_after(2, seen, Duration::ZERO, |_, _| Ok(()))
            .unwrap();
        // A caller that saw the first truncation end finds LSN 4 spared by the second.
        gc.commit_after(4, seen + 1, Duration::ZERO, |_, _| Ok(()))
            .unwrap();
    }

    #[test]
    fn cuts_answer_the_lowest_cut_after_a_count_within_their_room() {
        let mut cuts = Cuts::default();
        assert_eq!(cuts.lowest_since(0), Lsn::MAX);
        cuts.note(1, 10);
        cuts.note(2, 20);
        cuts.note(3, 15);
        assert_eq!(cuts.lowest_since(0), 10);
        assert_eq!(cuts.lowest_since(1), 15);
        assert_eq!(cuts.lowest_since(2), 15);
        assert_eq!(cuts.lowest_since(3), Lsn::MAX);
        // Truncations at increasing LSNs fill the room; the oldest are forgotten, and stand
        // for all before the last forgotten count.
        for count in 4..4 + CUTS_KEPT_MAX as u64 {
            cuts.note(count, 100 + count);
        }
        assert!(cuts.kept.len() <= CUTS_KEPT_MAX);
        assert_eq!(cuts.lowest_since(0), 10);
        let last = 3 + CUTS_KEPT_MAX as u64;
        assert_eq!(cuts.lowest_since(last - 1), 100 + last);
        assert_eq!(cuts.lowest_since(last), Lsn::MAX);
    }

    #[test]
    fn a_cut_between_the_callers_check_and_its_commit_fails_the_commit() {
        let gc = GroupCommit::new(0);
        gc.complete(1, 3, 40);
        // The caller checked LSN 3 against the log's end and saw this many truncations...
        let seen = gc.truncations();
        // ...then a truncation cut back to 1 before its commit took the lock.
        gc.freeze().unwrap();
        gc.thaw(1);
        // Without the count it would wait for LSN 3 to be written again.
        assert!(matches!(
            gc.commit_after(3, seen, Duration::ZERO, |_, _| Ok(())),
            Err(Error::NotFound {
                lsn: 3,
                last_lsn: 1
            })
        ));
        // What the cut kept still commits.
        gc.commit_after(1, seen, Duration::ZERO, |_, _| Ok(()))
            .unwrap();
        assert_eq!(gc.durable_lsn(), 1);
    }
}
