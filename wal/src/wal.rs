//! The open log: append, commit, read, truncate, maintain, close.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::control::{Control, ControlState, HardState};
use crate::error::{Error, Result};
use crate::group_commit::{CommitStats, GroupCommit};
use crate::io::fs::{FsDir, WriteMode};
use crate::io::{Dir, DirLock};
use crate::options::{Backend, Options};
use crate::pins::Pins;
use crate::reader::Reader;
use crate::record::{self, RecordHeader, RecordKind};
use crate::record_holders::RecordHolders;
use crate::recovery::{self, RecoveryEvent, RecoveryReport};
use crate::reserve::{Run, Runs, Tail};
use crate::segment::{self, PreparedSegment, Segment, HEADER_REGION_BYTES};
use crate::segment_ref::SegmentRef;
use crate::Lsn;

/// The `Staged` backend writes the active segment's staged bytes back past this much.
const STAGED_BYTES_ACTIVE_MAX: u64 = 8 << 20;
/// Past this much staged (in the active segment, plus what sealed segments held at their roll),
/// the appender that crosses it writes back itself (the background thread fell behind, or there
/// is none).
const STAGED_BYTES_APPENDER_MAX: u64 = 2 * STAGED_BYTES_ACTIVE_MAX;

/// Segments by (first LSN, sequence): an empty segment and its successor may share a first LSN.
type SegmentMap = BTreeMap<(Lsn, u64), Arc<Segment>>;

/// A write-ahead log open on a directory.
///
/// Every method takes `&self` and may be called from any thread: share the log with an `Arc`.
/// Dropping it closes it (see [`Wal::close`] to see the error, if any).
pub struct Wal {
    pub(crate) inner: Arc<Inner>,
    /// Taken by the first close (`close_shared` may run through a shared handle).
    background: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Set when a close of this handle starts: its drop during an unwind does not close again.
    close_began: AtomicBool,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir.path())
            .field("first_lsn", &self.first_lsn())
            .field("last_lsn", &self.last_lsn())
            .field("durable_lsn", &self.durable_lsn())
            .finish()
    }
}

/// Everything the log's handles, readers and background thread share.
pub(crate) struct Inner {
    pub(crate) dir: Arc<dyn Dir>,
    /// The process that opened the log: calls in a child forked from it are refused, and a
    /// close there leaves the log to it (`shutdown`).
    pub(crate) opened_in: crate::fork::OpeningProcess,
    pub(crate) options: Options,
    pub(crate) tail: crate::sync::Mutex<Tail<Arc<Segment>>>,
    /// Mirror of the tail's next LSN, for lock-free `last_lsn`.
    pub(crate) next_lsn: AtomicU64,
    pub(crate) prepared: Mutex<VecDeque<PreparedSegment>>,
    /// Files of compacted segments that could not be removed or recycled (an I/O error): no
    /// longer part of the log, removed again at each compaction and by recovery at open.
    pub(crate) left_behind: Mutex<Vec<String>>,
    pub(crate) next_sequence: AtomicU64,
    pub(crate) segments: RwLock<SegmentMap>,
    pub(crate) group: GroupCommit,
    pub(crate) control: Mutex<Control>,
    /// Readers hold it shared while they step; `truncate_after` holds it exclusively.
    pub(crate) cut_gate: RwLock<()>,
    pub(crate) pins: Pins,
    /// Serializes checkpoints, compactions and resets (`checkpoint.rs`).
    pub(crate) checkpoint_lock: Mutex<()>,
    pub(crate) first_lsn: AtomicU64,
    pub(crate) epoch: AtomicU64,
    /// An append asked the background thread for a write-back that has not run yet.
    pub(crate) write_back_asked: std::sync::atomic::AtomicBool,
    /// What sealed segments held staged when they were sealed, since the last `write_back`: an
    /// estimate (a sync may have written it since), so that appenders bound the staged memory
    /// of the whole log, not of the active segment only. With segments smaller than
    /// `STAGED_BYTES_APPENDER_MAX` and nothing committing, each segment used to stay under the
    /// bound while the log staged everything (found by review on 2026-12-03).
    sealed_staged: AtomicU64,
    background: Mutex<Signal>,
    background_cond: Condvar,
    /// Held by a pass of `maintain` and by `close` from its start: a pass that a user thread
    /// runs (background threads off) writes staged records to the files, and must not do so
    /// after the directory is released.
    maintenance: Mutex<()>,
    /// Set by `close`: a segment being prepared ahead of need stops its zero-fill.
    closing: std::sync::atomic::AtomicBool,
    /// Set by `close` under the tail lock before its sync, read by appends under it: an
    /// append that reserved after the sync read its target would return `Ok` for a record
    /// the close never syncs (with `Staged`, never even writes).
    appends_closed: std::sync::atomic::AtomicBool,
    /// The log is being written: an append was made since open, or the active segment was at
    /// least half full at open. Only then does the background thread prepare segments ahead of
    /// need. A log opened to be read (a recovery scan, a replica catching up, a check) would
    /// otherwise zero-fill 64 MiB beside its readers, on the cores they read with, and remove
    /// the file at close.
    being_written: std::sync::atomic::AtomicBool,
    pub(crate) report: RecoveryReport,
    lock: Mutex<Option<Box<dyn DirLock>>>,
    /// Readers holding a record: a close leaves the directory locked until they let go.
    pub(crate) record_holders: RecordHolders,
    /// Makes the next pass of the background thread's upkeep panic (as a bug would).
    #[cfg(test)]
    panic_in_upkeep: std::sync::atomic::AtomicBool,
}

/// Whether a panic began after it was made. `std::thread::panicking` says whether the thread
/// unwinds at all: an operation run from a `Drop` during an unrelated unwind (a transaction
/// guard logging its abort, or rolling back) took that panic for its own, and poisoned a log it
/// had changed correctly. As with std's `Mutex` poisoning, a panic already unwinding when it
/// was made is not counted. (So a panic of the operation itself, nested in such an unwind and
/// caught inside the `Drop`, is not seen: std says whether the thread unwinds, not how many
/// panics deep.)
struct PanicWatch {
    was_panicking: bool,
}

impl PanicWatch {
    fn start() -> PanicWatch {
        PanicWatch {
            was_panicking: std::thread::panicking(),
        }
    }

    fn panicked(&self) -> bool {
        !self.was_panicking && std::thread::panicking()
    }
}

/// Poisons the log if dropped by a panic: held by an append under the tail lock, where LSNs
/// are taken and segments roll. A panic there left LSNs taken that no copy would complete, and
/// every later commit, truncation and close waited for them forever (the tail lock, from
/// `parking_lot`, is not poisoned by the panic). Declared after the tail lock's guard, so that
/// it drops first: the poison is seen before another append takes the lock.
struct PoisonIfPanicking<'a> {
    inner: &'a Inner,
    watch: PanicWatch,
}

impl<'a> PoisonIfPanicking<'a> {
    fn new(inner: &'a Inner) -> PoisonIfPanicking<'a> {
        PoisonIfPanicking {
            inner,
            watch: PanicWatch::start(),
        }
    }
}

impl Drop for PoisonIfPanicking<'_> {
    fn drop(&mut self) {
        if self.watch.panicked() {
            let path = self.inner.dir.path().to_path_buf();
            let cause = std::io::Error::other("an append panicked while taking its LSNs");
            self.inner.group.poison(Error::io("append", path, cause));
        }
    }
}

/// Held from the freeze of syncs that a truncation or a reset takes until it ends. A panic in
/// between (a bug) would leave syncs frozen for good, and every committer, later truncation
/// and `close` waiting for the thaw. Dropped while unwinding, it poisons the log (the change
/// may be half done on disk; recovery finishes or undoes it) and ends the freeze. Dropped
/// otherwise, it does nothing: each way out thaws as it must. Only a panic that began after
/// the freeze counts (`PanicWatch`).
pub(crate) struct FrozenSyncs<'a> {
    inner: &'a Inner,
    op: &'static str,
    watch: PanicWatch,
}

impl<'a> FrozenSyncs<'a> {
    /// Freezes the log's syncs for `op` (see `GroupCommit::freeze`).
    pub(crate) fn freeze(inner: &'a Inner, op: &'static str) -> Result<FrozenSyncs<'a>> {
        inner.group.freeze()?;
        Ok(FrozenSyncs {
            inner,
            op,
            watch: PanicWatch::start(),
        })
    }
}

impl Drop for FrozenSyncs<'_> {
    fn drop(&mut self) {
        if self.watch.panicked() {
            let cause = std::io::Error::other(format!("a {} panicked", self.op));
            let path = self.inner.dir.path().to_path_buf();
            self.inner.group.poison(Error::io(self.op, path, cause));
            self.inner.group.thaw_unchanged();
        }
    }
}

/// The message a panic carried, if it was a string.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Why a segment is being prepared.
#[derive(Clone, Copy)]
enum Preparation {
    /// An append needs it now: never stopped.
    Needed,
    /// Kept ready ahead of need (the background thread, `maintain`): a close stops it.
    Ahead,
}

#[derive(Default)]
struct Signal {
    /// Run a pass of `maintain` now.
    wake: bool,
    /// Prepare segments ahead of need now (the log has just started being written), and
    /// nothing else: the first pass still waits for its interval.
    prepare: bool,
    shutdown: bool,
}

impl Wal {
    /// Opens the log in `dir`, creating it if it does not exist and the options allow, and
    /// recovers it (see [`RecoveryReport`]). Fails with [`Error::Locked`] if another open log,
    /// in this or another process, holds the directory.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Wal> {
        options.validate()?;
        let path = dir.as_ref();
        let dir = open_dir(path, &options)?;
        let lock = dir.lock().map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked {
                dir: path.to_path_buf(),
                holder: dir.lock_holder(),
            },
            _ => Error::io("lock", path.join(crate::io::fs::LOCK_FILE), e),
        })?;
        let recovered = recovery::recover(dir.as_ref(), &options)?;
        // `PointInTime` and `SkipCorrupted` can end below the latest checkpoint (the other
        // modes refuse to lose a record the watermark, at least the checkpoint, covers), and
        // so can any mode after such a recovery whose reset a crash cut short.
        let reset_to = recovered
            .control
            .state()
            .checkpoint
            .filter(|&(lsn, _)| recovered.report.last_lsn < lsn);
        let active = recovered
            .segments
            .last()
            .expect("recovery leaves an active segment")
            .clone();
        let last_lsn = recovered.report.last_lsn;
        let active_half_full = recovered.tail_offset >= active.header.segment_bytes / 2;
        let tail = Tail::new(
            last_lsn + 1,
            active.clone(),
            recovered.tail_offset,
            active.header.segment_bytes,
            HEADER_REGION_BYTES,
            options.segment_bytes,
        );
        let segments = recovered
            .segments
            .iter()
            .map(|s| ((s.first_lsn(), s.sequence()), s.clone()))
            .collect();
        let first_lsn = recovered.control.state().first_lsn;
        // The last record's, or, with none kept past the first retained LSN (a log reset to a
        // snapshot, or cut or compacted to it), the epoch before that LSN: epochs never go
        // down along the log.
        let epoch = recovered
            .report
            .last_epoch
            .max(recovered.control.state().first_epoch);
        let mut inner = Arc::new(Inner {
            dir,
            opened_in: crate::fork::OpeningProcess::this_process(),
            tail: crate::sync::Mutex::new(tail),
            next_lsn: AtomicU64::new(last_lsn + 1),
            prepared: Mutex::new(recovered.prepared.into_iter().collect()),
            left_behind: Mutex::new(Vec::new()),
            next_sequence: AtomicU64::new(recovered.next_sequence),
            segments: RwLock::new(segments),
            group: GroupCommit::new(last_lsn),
            control: Mutex::new(recovered.control),
            cut_gate: RwLock::new(()),
            pins: Pins::default(),
            checkpoint_lock: Mutex::new(()),
            first_lsn: AtomicU64::new(first_lsn),
            epoch: AtomicU64::new(epoch),
            write_back_asked: std::sync::atomic::AtomicBool::new(false),
            sealed_staged: AtomicU64::new(0),
            background: Mutex::new(Signal::default()),
            background_cond: Condvar::new(),
            maintenance: Mutex::new(()),
            closing: std::sync::atomic::AtomicBool::new(false),
            appends_closed: std::sync::atomic::AtomicBool::new(false),
            being_written: std::sync::atomic::AtomicBool::new(active_half_full),
            report: recovered.report,
            lock: Mutex::new(Some(lock)),
            record_holders: RecordHolders::default(),
            #[cfg(test)]
            panic_in_upkeep: std::sync::atomic::AtomicBool::new(false),
            options,
        });
        if let Some((lsn, epoch)) = reset_to {
            // Recovery checked the snapshot's body before it changed anything: the reset
            // removes every segment, and a damaged snapshot would leave neither the records
            // nor the state.
            inner.reset(lsn, epoch, crate::checkpoint::ResetTo::LatestCheckpoint)?;
            // Written after the reset (the report is the open log's); nothing reads it before.
            let report = &mut Arc::get_mut(&mut inner)
                .expect("no thread holds the log yet")
                .report;
            report.events.push(RecoveryEvent::ResetToCheckpoint {
                checkpoint_lsn: lsn,
                recovered_through: report.last_lsn,
            });
            (report.first_lsn, report.last_lsn, report.last_epoch) = (lsn + 1, lsn, epoch);
            report.records = 0;
        }
        let background = if inner.options.background_threads {
            let worker = inner.clone();
            let handle = std::thread::Builder::new()
                .name("rwal-background".into())
                .spawn(move || worker.run_background())
                .map_err(|e| Error::io("spawn background thread", path, e))?;
            Some(handle)
        } else {
            None
        };
        Ok(Wal {
            inner,
            background: parking_lot::Mutex::new(background),
            close_began: AtomicBool::new(false),
        })
    }

    /// Appends one user record and returns its LSN. The record is not durable until
    /// [`commit`](Wal::commit) returns for it (or a later LSN).
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.inner.append(RecordKind::User, None, &[payload])
    }

    /// Appends several user records with contiguous LSNs; returns the first.
    ///
    /// Not atomic across a crash: until [`commit`](Wal::commit) returns for the last of them,
    /// a crash may leave a prefix of the batch in the log, as of any records not committed.
    /// So may a failure that poisons the log in the middle of the batch, though the call then
    /// returns the error (docs/design.md section 5.6).
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Lsn> {
        self.inner.append(RecordKind::User, None, payloads)
    }

    /// Appends records of the given kind in the given epoch (for the replication layer); returns
    /// the first LSN. The epoch must not be below the log's current epoch, which it becomes.
    pub fn append_with(&self, kind: RecordKind, epoch: u64, payloads: &[&[u8]]) -> Result<Lsn> {
        self.inner.append(kind, Some(epoch), payloads)
    }

    /// Returns once every record up to `lsn` is durable. One sync serves every committer
    /// waiting at the time (group commit).
    pub fn commit(&self, lsn: Lsn) -> Result<()> {
        self.inner.commit(lsn)
    }

    /// Appends a record and commits it.
    pub fn append_durable(&self, payload: &[u8]) -> Result<Lsn> {
        let lsn = self.append(payload)?;
        self.commit(lsn)?;
        Ok(lsn)
    }

    /// Commits everything appended so far; returns the LSN now durable. A truncation that
    /// another thread runs meanwhile is followed: what the cut left is committed.
    pub fn sync(&self) -> Result<Lsn> {
        loop {
            let last = self.last_lsn();
            #[cfg(test)]
            crate::test_hooks::hook("sync: the last LSN read", &self.inner);
            match self.commit(last) {
                // A truncation on another thread cut below `last` after it was read: what is
                // appended now is what there is to sync. (Each pass follows a whole cut.)
                Err(Error::NotFound { .. }) => continue,
                done => return done.map(|()| last),
            }
        }
    }

    /// The oldest retained LSN (1 for a new log).
    pub fn first_lsn(&self) -> Lsn {
        self.inner.first_lsn.load(Ordering::Acquire)
    }

    /// The newest appended LSN (`first_lsn() - 1` for an empty log: 0 for a new one).
    pub fn last_lsn(&self) -> Lsn {
        self.inner.last_lsn()
    }

    /// The newest durable LSN: every record up to it survives a crash.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.group.durable_lsn()
    }

    /// Waits until every record up to `lsn` is durable (made so by another thread: this
    /// syncs nothing), `deadline` passes (`Timeout`), or the log is poisoned or closed.
    pub fn wait_durable(&self, lsn: Lsn, deadline: std::time::Instant) -> Result<()> {
        self.inner.opened_in.check("wait_durable")?;
        self.inner.group.wait_durable(lsn, deadline)
    }

    /// The epoch new records are written in (the last record's after a reopen).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Sets the epoch new records are written in; it never goes backwards.
    pub fn set_epoch(&self, epoch: u64) -> Result<()> {
        self.inner.opened_in.check("set_epoch")?;
        self.inner.raise_epoch(epoch)
    }

    /// A copy of the payload of durable record `lsn`. A poisoned log still answers for the
    /// records made durable before it failed (see [`Wal::reader`]).
    pub fn read(&self, lsn: Lsn) -> Result<Vec<u8>> {
        let inner = &self.inner;
        inner.opened_in.check("read")?;
        let _gate = inner.cut_gate.read();
        // Pinned for the copy, as a reader is (see `Reader::new`): compaction must not recycle
        // the segment between the checksum and the copy.
        let _pin = {
            let control = inner.control.lock();
            inner.check_answerable(lsn, Some(&control))?;
            inner.check_readable(lsn)?;
            let id = inner
                .pins
                .register("read", lsn - 1, None, crate::pins::Holder::ReadCopy)
                .id;
            // Released on the way out, a panic's too: left behind, it would hold compaction
            // below it for good.
            crate::pins::Released(&inner.pins, id)
        };
        #[cfg(test)]
        crate::test_hooks::hook("read: pinned", inner);
        inner.locate(lsn).and_then(|(segment, offset)| {
            let header = inner.decode_at(&segment, offset, lsn)?;
            Ok(segment.payload(offset, header.payload_len).to_vec())
        })
    }

    /// A reader from `from` (at least `first_lsn()`, at most `last_lsn() + 1`).
    ///
    /// A poisoned log (a write or sync failed) still gives out the records made durable before
    /// the failure, and then [`Error::Poisoned`] where a usable log would answer `None`:
    /// those records were synced before the failure, and the failure leaves the segments in
    /// place. Not those a truncation or reset that failed half way declared removed (or tried
    /// to: a reopen finishes it if the disk holds the declaration), and nothing once the log
    /// is closed (another process may own the files by then). Everything
    /// else stays refused. So a reader from `durable_lsn() + 1` or beyond is refused on a
    /// poisoned log, and [`Wal::epoch_at`] and [`Wal::read`] answer for the same records.
    pub fn reader(&self, from: Lsn) -> Result<Reader> {
        Reader::new(self.inner.clone(), from)
    }

    /// Whether `dir` holds a log, without opening it: whether its control file exists (a crash
    /// during creation before it was written left a log with no record). A directory that does
    /// not exist holds none.
    pub fn holds_log(dir: impl AsRef<Path>) -> Result<bool> {
        let control = dir.as_ref().join(crate::control::FILE_NAME);
        match std::fs::symlink_metadata(&control) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat", control, e)),
        }
    }

    /// The error [`reader`](Wal::reader) would give for `from` now (`Compacted`, `NotFound`, or
    /// the log's failure), without starting a reader: a reader's pin would refuse a
    /// truncation or a reset meanwhile.
    pub fn check_read_start(&self, from: Lsn) -> Result<()> {
        self.inner.opened_in.check("check_read_start")?;
        self.inner.check_readable_start(from, None)
    }

    /// Durably removes every record after `lsn`; the next append gets `lsn + 1` and, as after a
    /// reopen, the epoch of record `lsn`. Refused with [`Error::Pinned`] while a reader or pin
    /// is past `lsn`.
    ///
    /// It first makes everything appended durable (so the cut is found in the files whatever
    /// the backend): a `commit` running beside it may therefore return `Ok` for a record the
    /// truncation then removes. Callers that truncate (consensus replacing an uncommitted
    /// suffix) order their own commits and truncations.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<()> {
        self.inner.opened_in.check("truncate_after")?;
        self.inner.truncate_after(lsn)
    }

    /// The epoch of record `lsn`, for any LSN from `first_lsn() - 1` (kept in the control file
    /// when its segment is gone; 0 for LSN 0) to `durable_lsn()`. A poisoned log still answers
    /// for the records made durable before it failed; a closed one answers nothing.
    pub fn epoch_at(&self, lsn: Lsn) -> Result<u64> {
        let inner = &self.inner;
        inner.opened_in.check("epoch_at")?;
        // Checked and read under the cut gate and the control lock, in the order truncations
        // and resets take them: a compaction removes segments from the map (and then recycles
        // their files) only after it took the control lock, so it either ran before (and the
        // check says `Compacted`) or waits for the read. No pin: it would refuse a reset that
        // runs beside (the replication layer's waiters call this while its thread installs a
        // snapshot), where the gate makes the reset wait for the read instead.
        let _gate = inner.cut_gate.read();
        let control = inner.control.lock();
        let state = control.state();
        // The replication layer reads the epoch of an entry a quorum committed to answer its
        // proposer: on a poisoned log an error would tell it that a committed write failed, and
        // it would send it again (found by review on 2026-12-05).
        inner.check_answerable(lsn, Some(&control))?;
        if lsn > 0 && lsn.checked_add(1) != Some(state.first_lsn) {
            inner.check_readable(lsn)?;
        }
        inner.epoch_of_under_gate(lsn, state)
    }

    /// The consensus state (term, vote, commit) and the membership blob that the replication
    /// layer keeps in the control file; zeros and empty for a log that never stored any.
    pub fn replication_state(&self) -> (HardState, Vec<u8>) {
        let control = self.inner.control.lock();
        let state = control.state();
        (state.hard_state, state.membership.clone())
    }

    /// Durably stores the consensus state and, if given, a new membership blob (at most
    /// [`MEMBERSHIP_BYTES_MAX`](crate::MEMBERSHIP_BYTES_MAX) bytes) in the control file: one
    /// control-file write and sync before it returns.
    pub fn store_replication_state(
        &self,
        hard_state: HardState,
        membership: Option<&[u8]>,
    ) -> Result<()> {
        self.inner.opened_in.check("store_replication_state")?;
        let mut control = self.inner.control.lock();
        // Under the control lock, which `close` takes before it releases the directory.
        self.inner.group.check()?;
        let mut state = control.state().clone();
        state.hard_state = hard_state;
        if let Some(membership) = membership {
            state.membership = membership.to_vec();
        }
        control
            .write(state, self.inner.dir.path())
            .map_err(|e| match e {
                e @ Error::InvalidArgument { .. } => e,
                e => self.inner.group.poison(e),
            })
    }

    /// Does the background work once: prepares the next segment and writes the durable
    /// watermark to the control file. With background threads off, call it from time to time
    /// (appends still prepare segments themselves when they must). A close that starts
    /// meanwhile may stop the zero-fill of a segment being prepared: the pass then fails with
    /// [`Error::Closed`]. With less space free than two segments take, no segment is prepared
    /// ahead of need, and the pass returns [`Error::NoSpace`] after doing the rest of its work
    /// (compaction, which may free space, included).
    pub fn maintain(&self) -> Result<()> {
        self.inner.opened_in.check("maintain")?;
        self.inner.maintain(true)
    }

    /// `InvalidArgument`, naming `call`, in a process forked (without an exec) from the one
    /// that opened the log: every call of the log that reads or writes it checks this first,
    /// before it takes a lock, and a layer above the log whose threads and locks also stayed
    /// with the opener (the replication node) does the same. One load of a counter that only a
    /// fork changes.
    pub fn check_opener_process(&self, call: &str) -> Result<()> {
        self.inner.opened_in.check(call)
    }

    /// `Ok` while the log takes appends and commits; otherwise the error they now get:
    /// [`Error::Poisoned`] (naming the write or sync that failed) or [`Error::Closed`]. One load
    /// while the log is usable. For a layer above the log that must stop before it acts on state
    /// the log may no longer back (the replication node checks it before it steps raft: reads
    /// of the records made durable before the failure still succeed, see [`Wal::reader`], but
    /// nothing the node does next could be stored).
    pub fn check_usable(&self) -> Result<()> {
        self.inner.group.check()
    }

    /// Group-commit counters.
    pub fn stats(&self) -> CommitStats {
        self.inner.group.stats()
    }

    /// The largest record `append` accepts (what one segment of the configured size holds);
    /// larger ones are refused with [`Error::RecordTooLarge`].
    pub fn max_record_bytes(&self) -> u64 {
        segment::max_payload_bytes(self.inner.options.segment_bytes)
    }

    /// Number of segments the log retains.
    pub fn segment_count(&self) -> usize {
        self.inner.segments.read().len()
    }

    /// The backend this log writes with: "mmap", "pwrite", "staged", "io_uring" or
    /// "simulated". Not always the one the options named: `Staged` stands in for io_uring
    /// where it is unavailable and [`Options::io_uring_fallback`] asked for it, and for the
    /// default `Mmap` on a copy-on-write file system ([`Options::backend`]).
    pub fn backend_name(&self) -> &'static str {
        self.inner.dir.backend_name()
    }

    /// What recovery found and decided when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// Syncs everything appended, stops the background thread, writes the final watermark and
    /// releases the directory. Readers still alive get [`Error::Closed`]. A reader whose last
    /// call returned a record keeps the directory locked until it is called again or dropped:
    /// a log opened on the directory meanwhile could rewrite the bytes that record borrows.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// What [`Wal::close`] does, through a shared handle (one that others, such as readers
    /// holding an `Arc<Wal>`, may still hold): afterwards every call on the log, through any
    /// handle or reader, fails with [`Error::Closed`], and the directory is free to open again
    /// (once readers holding records let go, as for [`Wal::close`]). A later close returns at
    /// once: `Ok`, or [`Error::Poisoned`] if the log failed (a close that failed is not made
    /// good by a second one).
    pub fn close_shared(&self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if std::process::id() != self.inner.opened_in.pid() {
            return Err(self.forked_close());
        }
        self.close_began.store(true, Ordering::Relaxed);
        // Held to the end: a second close waits for the first, then finds the log closed.
        let mut background = self.background.lock();
        // A segment being prepared ahead (by the background thread or a user's `maintain`) is
        // not needed any more: its zero-fill stops.
        self.inner.closing.store(true, Ordering::Release);
        if let Some(handle) = background.take() {
            self.inner.background.lock().shutdown = true;
            self.inner.background_cond.notify_all();
            let _ = handle.join();
        }
        // A pass of `maintain` on a user's thread ends first; one that starts later finds the
        // log closed.
        let _maintenance = self.inner.maintenance.lock();
        if self.inner.lock.lock().is_none() {
            // Closed before. A log that failed stays failed: a later close said `Ok`, and a
            // caller retrying a close that failed took its records for synced (found by review
            // on 2026-12-05).
            return match self.inner.group.check() {
                Err(poisoned @ Error::Poisoned { .. }) => Err(poisoned),
                _ => Ok(()),
            };
        }
        // "Syncs everything appended": no append takes an LSN past the one the sync below
        // reads (those that did are copying, and the sync waits for their copies).
        {
            let _tail = self.inner.tail.lock();
            self.inner.appends_closed.store(true, Ordering::Relaxed);
        }
        #[cfg(test)]
        crate::test_hooks::hook("shutdown: syncing", &self.inner);
        let synced = self.sync().map(|_| ());
        let written = synced.and_then(|()| self.inner.update_control());
        // Under every lock that guards a change of the directory's files, in the order the
        // others take them (checkpoint, tail, cut gate, control): a checkpoint, compaction,
        // reset, truncation, control-file write or read in progress finishes first, and one
        // that starts later finds the log closed (each checks under its lock). Only then is the
        // directory free for another process.
        let _serial = self.inner.checkpoint_lock.lock();
        let tail = self.inner.tail.lock();
        // Appends reserve under the tail lock but copy outside it: one reserved before this
        // point may still be writing into a segment, which must end before another process
        // may own the files. On a poisoned log (a copy failed, or a sync) this returns at once,
        // and the runs ended (completed, or given up by an append whose copy failed or
        // panicked) against the runs placed (no new one is placed: the tail lock is held) tell
        // when the last one ended.
        self.inner.group.wait_for_runs_placed(&tail);
        let _gate = self.inner.cut_gate.write();
        let _control = self.inner.control.lock();
        // Also waits for a sync that a committer started after this close's own sync: it may
        // still write staged records to the files.
        self.inner.group.close();
        let lock = self.inner.lock.lock().take();
        self.inner.record_holders.release_after_readers(lock);
        written
    }

    /// A close in a process forked from the opener's without an exec (a pre-fork worker, a
    /// Python `multiprocessing` child finalizing its copy of the handle): the files, the
    /// background thread and the directory lock are the opener's, which goes on with them. A
    /// close here joined a thread that does not exist in this process (a panic, or a hang on a
    /// lock a thread held at the fork), synced this process's stale copies of staged records
    /// and wrote its stale state over the opener's control file. It now changes nothing: no
    /// lock is taken, the thread's handle is leaked, and the memory and descriptors go when
    /// the handle is dropped (the lock's descriptor without an unlock: `FsLock`'s drop).
    fn forked_close(&self) -> Error {
        if let Some(mut background) = self.background.try_lock() {
            std::mem::forget(background.take());
        }
        Error::invalid(
            "log",
            format!(
                "closed in process {}, forked from process {} that opened it: the log is left \
                 to that process, and nothing was synced or written here",
                std::process::id(),
                self.inner.opened_in.pid()
            ),
        )
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // A close that panicked (a bug) is unwinding through this drop (`close` consumed the
        // handle): closing again would likely panic again, and a panic during an unwind aborts
        // the process, where the caller (the C ABI's `rwal_close`, say) expected an error. What
        // the close left undone stays undone; the directory's lock goes with the last handle.
        if std::thread::panicking() && self.close_began.load(Ordering::Relaxed) {
            return;
        }
        let _ = self.shutdown();
    }
}

/// The refusal of a cut after `lsn` below the checkpoint at `checkpoint`.
fn checkpoint_covers(lsn: Lsn, checkpoint: Lsn) -> Error {
    Error::invalid(
        "lsn",
        format!("cannot cut after {lsn}: the checkpoint at {checkpoint} includes later records"),
    )
}

/// The refusal of a read of LSN 0, which no record has: `Compacted` ("below the first
/// retained LSN") would send the caller looking for a checkpoint.
fn refuse_lsn_zero(lsn: Lsn) -> Result<()> {
    if lsn == 0 {
        return Err(Error::invalid(
            "lsn",
            "LSN 0 names no record (LSNs start at 1)",
        ));
    }
    Ok(())
}

/// The refusal of a cut next to a record that `SkipCorrupted` recovery dropped.
fn skipped_stretch(lsn: Lsn) -> Error {
    Error::invalid(
        "lsn",
        format!("LSN {lsn} is in a stretch recovery skipped as damaged; cut elsewhere"),
    )
}

fn open_dir(path: &Path, options: &Options) -> Result<Arc<dyn Dir>> {
    let mode = match &options.backend {
        Backend::Simulated(disk) => return Ok(Arc::new(disk.dir(path))),
        Backend::Mmap => WriteMode::Map,
        Backend::Pwrite => WriteMode::Pwrite,
        Backend::Staged => WriteMode::Staged,
        Backend::IoUring => WriteMode::Uring(options.io_uring_sync),
    };
    let open = |mode| {
        FsDir::open(
            path,
            options.create_if_missing,
            mode,
            options.preallocation,
            options.sync_recorder.clone(),
        )
    };
    // Where the backend cannot work, `Staged` stands in: for io_uring if the options ask for
    // it, for `Mmap` on a copy-on-write file system if the options left the backend at its
    // default (`Options::backend`).
    let stand_in = match mode {
        WriteMode::Uring(_) => options.io_uring_fallback,
        WriteMode::Map => !options.backend_chosen,
        WriteMode::Pwrite | WriteMode::Staged => false,
    };
    let dir = match open(mode) {
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported && stand_in => {
            open(WriteMode::Staged)
        }
        other => other,
    };
    match dir {
        Ok(dir) => Ok(Arc::new(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoLog {
            dir: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Err(Error::Unsupported {
            reason: format!("{} backend for {}: {e}", mode.name(), path.display()),
        }),
        Err(e) => Err(Error::io("open directory", path, e)),
    }
}

impl Inner {
    pub(crate) fn last_lsn(&self) -> Lsn {
        self.next_lsn.load(Ordering::Acquire) - 1
    }

    /// Raises the epoch new records are written in to `epoch`; refused if that is lower.
    fn raise_epoch(&self, epoch: u64) -> Result<()> {
        let previous = self.epoch.fetch_max(epoch, Ordering::AcqRel);
        if epoch < previous {
            return Err(Error::invalid(
                "epoch",
                format!("{epoch} is below the current epoch {previous}"),
            ));
        }
        Ok(())
    }

    /// Appends `payloads` as records of `kind`, in the epoch `asked` (raised to it), or else
    /// in the current one.
    fn append(&self, kind: RecordKind, asked: Option<u64>, payloads: &[&[u8]]) -> Result<Lsn> {
        self.opened_in.check("append")?;
        if payloads.is_empty() {
            return Err(Error::invalid(
                "records",
                "an append needs at least one record",
            ));
        }
        let max = segment::max_payload_bytes(self.options.segment_bytes);
        if let Some(big) = payloads.iter().find(|p| p.len() as u64 > max) {
            return Err(Error::RecordTooLarge {
                payload_bytes: big.len() as u64,
                max_payload_bytes: max,
                segment_bytes: self.options.segment_bytes,
            });
        }
        self.group.check()?;
        let sizes = || payloads.iter().map(|p| record::stored_len(p.len()) as u64);
        let mut runs = Runs::new();
        let durable_hint;
        let epoch;
        {
            let mut tail = self.tail.lock();
            let _poison_if_panicking = PoisonIfPanicking::new(self);
            // Checked again under the tail lock: a truncation or reset that failed half way
            // poisoned the log while holding this lock, and may have left the tail on a segment
            // it had already removed from the segment map. No run may be placed there: its
            // `SegmentRef` would outlive the segment once a roll drops the tail's handle.
            self.group.check()?;
            if self.appends_closed.load(Ordering::Relaxed) {
                return Err(Error::Closed);
            }
            // Past `LSN_MAX` a segment's header is refused at recovery (as impossible), and the
            // records in it with it: refused here, before any LSN is taken or the epoch raised.
            // Only a log reset to a snapshot near the limit gets there (found by review on
            // 2026-12-07).
            let last = tail.next_lsn() - 1 + payloads.len() as u64;
            if last > segment::LSN_MAX {
                return Err(Error::invalid(
                    "records",
                    format!(
                        "the log is full: LSN {last} would be past the largest a log takes ({})",
                        segment::LSN_MAX
                    ),
                ));
            }
            // Under the tail lock too, where LSNs are taken and a truncation or a reset sets
            // the epoch: read or raised before it, two appends could take their LSNs in the
            // other order, and epochs would go down along the log.
            epoch = match asked {
                Some(epoch) => self.raise_epoch(epoch).map(|()| epoch)?,
                None => self.epoch.load(Ordering::Acquire),
            };
            // Read under the tail lock: a truncation lowers the durable LSN while holding it, so
            // no record can claim durability for records a cut removed.
            durable_hint = self.group.durable_lsn();
            let rolls = tail.rolls_needed(sizes());
            if rolls > 0 {
                self.prepare_segments(rolls, Preparation::Needed)?;
            }
            tail.place(
                sizes(),
                |old, last, first| self.roll(old, last, first),
                SegmentRef::new,
                &mut runs,
            );
            self.next_lsn.store(tail.next_lsn(), Ordering::Release);
        }
        let mut in_progress = self.group.runs_in_progress(runs.len());
        if !self.being_written.load(Ordering::Relaxed)
            && !self.being_written.swap(true, Ordering::AcqRel)
        {
            // The first append since open: from now on a segment is kept prepared ahead.
            self.background.lock().prepare = true;
            self.background_cond.notify_all();
        }
        let first = runs.iter().next().expect("at least one record").first_lsn;
        let mut index = 0;
        for run in runs.iter() {
            let records = &payloads[index..index + run.count];
            index += run.count;
            // The report that the run is complete is inside too: a panic there before it moved
            // the written LSN (a bug in group commit) stalled every later commit, truncation
            // and close the same way (found by review on 2026-12-07).
            let copied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let bytes = self.copy_run(run, records, kind, epoch, durable_hint)?;
                let last = run.first_lsn + run.count as u64 - 1;
                in_progress.complete(run.first_lsn, last, bytes);
                Ok::<(), Error>(())
            }));
            match copied {
                Ok(copied) => copied?,
                Err(panic) => {
                    // A bug: these LSNs will never be complete, and committers, truncations
                    // and close would wait for them forever. Poisoned, they fail instead.
                    let path = self.dir.path().to_path_buf();
                    let cause = std::io::Error::other(
                        "an append panicked while copying its records or reporting them copied",
                    );
                    self.group.poison(Error::io("append", path, cause));
                    std::panic::resume_unwind(panic);
                }
            }
        }
        Ok(first)
    }

    /// Copies one run of records into its segment (after its header, if it opens the segment).
    /// A failed write poisons the log: the LSNs are taken and cannot be given back.
    #[allow(unsafe_code)] // Only to reach the run's segment (docs/UNSAFE.md, site 17).
    fn copy_run(
        &self,
        run: &Run<SegmentRef>,
        records: &[&[u8]],
        kind: RecordKind,
        epoch: u64,
        durable_hint: Lsn,
    ) -> Result<u64> {
        // SAFETY: the run is not yet reported complete, so the written LSN is below its first
        // LSN and the segment is still in the segment map (see `SegmentRef`).
        let segment = unsafe { run.segment.get() };
        let fail = |e| {
            self.group
                .poison(Error::io("write", self.dir.path().join(segment.name()), e))
        };
        if run.opens_segment {
            segment
                .file
                .write_at(0, &[&segment.header.encode()])
                .map_err(fail)?;
        }
        const PADDING: [u8; record::ALIGN_BYTES] = [0; record::ALIGN_BYTES];
        let mut offset = run.offset;
        for (i, payload) in records.iter().enumerate() {
            let lsn = run.first_lsn + i as u64;
            let header = RecordHeader {
                payload_len: payload.len() as u32,
                lsn,
                epoch,
                durable_hint: durable_hint.min(lsn - 1),
                kind,
            };
            let stored = record::stored_len(payload.len());
            let padding = &PADDING[..stored - record::HEADER_BYTES - payload.len()];
            segment
                .file
                .write_at(
                    offset,
                    &[
                        &header.encode(segment.header.salt, payload),
                        payload,
                        padding,
                    ],
                )
                .map_err(fail)?;
            segment.note_offset(lsn, offset);
            offset += stored as u64;
        }
        let staged = segment.file.staged_bytes() + self.sealed_staged.load(Ordering::Relaxed);
        if staged >= STAGED_BYTES_ACTIVE_MAX && !self.write_back_asked.swap(true, Ordering::AcqRel)
        {
            // Nobody commits: have the background thread write the staged bytes back, so that
            // the memory they hold stays bounded. Asked once until it has run.
            self.wake_background();
        }
        if staged >= STAGED_BYTES_APPENDER_MAX {
            // The background thread has not kept up (starved of CPU, its writes throttled by
            // the kernel, or not running at all): this appender writes back itself, every
            // segment's staged bytes as the background thread would. So the staged memory stays
            // bounded whatever the background thread's pace, and appenders slow down to the
            // pace at which the files take the bytes.
            self.write_back()?;
        }
        Ok(offset - run.offset)
    }

    /// Seals `old` at `last` and activates the next prepared segment, starting at `first`.
    /// Called under the tail lock after `prepare_segments` made sure one is ready.
    fn roll(&self, old: &Arc<Segment>, last: Lsn, first: Lsn) -> Arc<Segment> {
        #[cfg(test)]
        crate::test_hooks::hook("roll", self);
        let prepared = self
            .prepared
            .lock()
            .pop_front()
            .expect("a prepared segment was made ready");
        // Recovery orders segments by sequence: LSNs must rise with it.
        debug_assert!(
            prepared.sequence > old.sequence(),
            "segment {} would follow segment {}",
            prepared.sequence,
            old.sequence()
        );
        let segment = recovery::activate(prepared.file, prepared.sequence, first);
        self.sealed_staged
            .fetch_add(old.file.staged_bytes(), Ordering::Relaxed);
        old.seal(last);
        self.segments
            .write()
            .insert((first, segment.sequence()), segment.clone());
        self.wake_background();
        segment
    }

    /// Makes sure at least `count` segments are prepared, creating them now if needed. Ahead of
    /// need (`Preparation::Ahead`) a close stops the zero-fill in progress.
    fn prepare_segments(&self, count: usize, why: Preparation) -> Result<()> {
        let mut prepared = self.prepared.lock();
        while prepared.len() < count {
            self.check_space_for_segment(why)?;
            let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
            let name = segment::file_name(sequence);
            let path = self.dir.path().join(&name);
            // Allocated under a temporary name: a crash half way leaves a `.tmp` file that
            // recovery removes, never a short segment.
            let temp = segment::temp_file_name(sequence);
            let never = std::sync::atomic::AtomicBool::new(false);
            let stop = match why {
                Preparation::Needed => &never,
                Preparation::Ahead => &self.closing,
            };
            let file = self
                .dir
                .create_unless_stopped(&temp, self.options.segment_bytes, stop)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::Interrupted && stop.load(Ordering::Acquire) {
                        Error::Closed
                    } else {
                        Error::io("create segment", &path, e)
                    }
                })?;
            if let Err(e) = self.dir.rename(&temp, &name) {
                // Each try takes a new sequence: a rename that keeps failing would otherwise
                // leave a whole segment's worth of disk behind per try, until the next open.
                drop(file);
                let _ = self.dir.remove(&temp);
                return Err(Error::io("rename", &path, e));
            }
            if let Err(e) = self.dir.sync() {
                return Err(self
                    .group
                    .poison(Error::io("fsync directory", self.dir.path(), e)));
            }
            prepared.push_back(PreparedSegment { sequence, file });
        }
        Ok(())
    }

    /// Refuses a segment's preparation that the free space would not leave room for, before
    /// its first byte is written. The zero-fill of a segment that does not fit fills the file
    /// system to its last block before it fails, and every other writer on it fails meanwhile
    /// (this log's checkpoint among them, the one that would free space by compaction); ahead
    /// of need the background thread would do that again at every pass. So a segment is
    /// prepared ahead of need only while one more would still fit after it, and at need only
    /// if it fits. A file system that cannot say how full it is is written to as before.
    fn check_space_for_segment(&self, why: Preparation) -> Result<()> {
        let Some(free) = self.dir.available_bytes().ok().flatten() else {
            return Ok(());
        };
        let segment_bytes = self.options.segment_bytes;
        let (needed, reason) = match why {
            Preparation::Needed => (
                segment_bytes,
                "less space is free than a segment takes (checked before its first byte is \
                 written)",
            ),
            Preparation::Ahead => (
                segment_bytes.saturating_mul(2),
                "less space is free than a segment prepared ahead of need and one more take \
                 (checked before its first byte is written)",
            ),
        };
        if free >= needed {
            return Ok(());
        }
        // The segment it would have been (the caller holds `prepared`, so no other takes it).
        let sequence = self.next_sequence.load(Ordering::Relaxed);
        Err(Error::NoSpace {
            op: "create segment",
            path: self.dir.path().join(segment::file_name(sequence)),
            reason,
        })
    }

    pub(crate) fn commit(&self, lsn: Lsn) -> Result<()> {
        self.opened_in.check("commit")?;
        // The truncation count before the end: a cut after this check (the end it read was
        // lowered before the count rose) makes the commit fail instead of waiting for `lsn`
        // to be written again.
        let seen = self.group.truncations();
        let last = self.last_lsn();
        if lsn > last {
            return Err(Error::NotFound {
                lsn,
                last_lsn: last,
            });
        }
        self.group
            .commit_after(lsn, seen, self.options.commit_delay, |from, to| {
                // A panic (a bug in a backend) would leave the group commit syncing for good,
                // and every committer, truncation and close waiting for that sync. It fails the
                // sync instead, which poisons the log like any failed sync (the panic's message
                // was printed when it happened).
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.sync_range(from, to)))
                    .unwrap_or_else(|panic| {
                        let cause = format!("the sync panicked: {}", panic_message(panic.as_ref()));
                        let path = self.dir.path().to_path_buf();
                        Err(Error::io("sync", path, std::io::Error::other(cause)))
                    })
            })
    }

    /// Syncs every segment holding records `from + 1..=to`, oldest first.
    fn sync_range(&self, from: Lsn, to: Lsn) -> Result<()> {
        let segments: Vec<Arc<Segment>> = {
            let map = self.segments.read();
            let mut covering: Vec<Arc<Segment>> = map
                .range(..=(to, u64::MAX))
                .rev()
                .take_while(|(_, s)| s.sealed_last_lsn().is_none_or(|last| last > from))
                .map(|(_, s)| s.clone())
                .collect();
            covering.reverse();
            covering
        };
        for segment in segments {
            segment.file.sync().map_err(|e| {
                let path = self.dir.path().join(segment.name());
                Error::io(segment.file.sync_calls(), path, e)
            })?;
        }
        Ok(())
    }

    /// Fails unless `lsn` is a durable, retained LSN.
    pub(crate) fn check_readable(&self, lsn: Lsn) -> Result<()> {
        refuse_lsn_zero(lsn)?;
        let first = self.first_lsn.load(Ordering::Acquire);
        if lsn < first {
            return Err(Error::Compacted {
                lsn,
                first_retained: first,
            });
        }
        let durable = self.group.durable_lsn();
        if lsn > durable {
            let last = self.last_lsn();
            if lsn > last {
                return Err(Error::NotFound {
                    lsn,
                    last_lsn: last,
                });
            }
            return Err(Error::NotDurable {
                lsn,
                durable_lsn: durable,
            });
        }
        Ok(())
    }

    /// `Ok` if record `lsn` may be read now: the log is usable, or it is poisoned (not closed)
    /// and the record was made durable before the failure and is not among those a truncation
    /// or reset that failed half way declared removed. Otherwise the log's failure. `control`
    /// is for a caller that holds the control lock; with `None` the lock is taken here, and
    /// only for a poisoned log (a usable one's answer does not depend on it, and a check must
    /// not wait for a truncation or an install that holds it).
    ///
    /// Why a poisoned log answers at all: layers above the log read it from threads that do not
    /// see the failure happen (raft-rs reads entries to send or apply between the replication
    /// layer's check of the log and the read, and panics on an error). A record at or below
    /// the durable LSN was synced before the failure, and the failure leaves the segments
    /// mapped, unless the log is closed too. A truncation or reset that failed half way
    /// declared its cut in the control file first, or tried to: what it removes is not
    /// answered for (`Control::may_remove`), as a reopen finishes it if the disk holds the
    /// declaration.
    pub(crate) fn check_answerable(&self, lsn: Lsn, control: Option<&Control>) -> Result<()> {
        let Err(refused) = self.group.check() else {
            return Ok(());
        };
        let answerable = matches!(refused, Error::Poisoned { .. })
            && !self.group.is_closed()
            && lsn <= self.group.durable_lsn()
            && !control.map_or_else(
                || self.control.lock().may_remove(lsn),
                |c| c.may_remove(lsn),
            );
        if answerable {
            Ok(())
        } else {
            Err(refused)
        }
    }

    /// Fails unless a reader may start at `from` (`control` as for `check_answerable`).
    pub(crate) fn check_readable_start(&self, from: Lsn, control: Option<&Control>) -> Result<()> {
        self.check_answerable(from, control)?;
        refuse_lsn_zero(from)?;
        let first = self.first_lsn.load(Ordering::Acquire);
        if from < first {
            return Err(Error::Compacted {
                lsn: from,
                first_retained: first,
            });
        }
        let last = self.last_lsn();
        if from > last + 1 {
            return Err(Error::NotFound {
                lsn: from,
                last_lsn: last,
            });
        }
        Ok(())
    }

    /// The segment holding `lsn` and the record's offset in it.
    ///
    /// It walks from the segment's nearest index entry, checking each record it passes. One
    /// damaged since recovery (its checksum fails) is passed by the length its header states
    /// if the next record then passes its checksum at the offset that length leads to (a
    /// salted checksum over the expected LSN: a wrong length cannot lead to one), so that a
    /// bad record leaves those after it reachable; two in a row are not passed. A damaged
    /// length can lead anywhere in the segment, so a damaged record is passed only where
    /// nothing reads bytes an appender may be copying into: in a segment whose records are all
    /// copied, or one whose reads do not show the copies (`File::copies_show_in_bytes`: not
    /// `Mmap` or `IoUring`, whose active segment stops the walk at the damage, as before).
    pub(crate) fn locate(&self, lsn: Lsn) -> Result<(Arc<Segment>, u64)> {
        let segment = {
            let map = self.segments.read();
            map.range(..=(lsn, u64::MAX))
                .next_back()
                .map(|(_, s)| s.clone())
        };
        let Some(segment) = segment.filter(|s| s.sealed_last_lsn().is_none_or(|last| lsn <= last))
        else {
            return Err(Error::NotFound {
                lsn,
                last_lsn: self.last_lsn(),
            });
        };
        segment.note_mapped();
        let (mut at_lsn, mut offset) = segment.seek_hint(lsn);
        // The damage passed last, until the record after it passes its checksum.
        let mut unconfirmed: Option<Error> = None;
        while at_lsn < lsn {
            let header = match self.decode_at(&segment, offset, at_lsn) {
                Ok(header) => {
                    unconfirmed = None;
                    header
                }
                Err(damage) if unconfirmed.is_none() && self.nothing_copied_into(&segment) => {
                    match segment.verified_record_at(offset) {
                        Ok((header, _)) if header.lsn == at_lsn => {
                            unconfirmed = Some(damage);
                            header
                        }
                        _ => return Err(damage),
                    }
                }
                Err(damage) => return Err(unconfirmed.unwrap_or(damage)),
            };
            offset += record::stored_len(header.payload_len as usize) as u64;
            at_lsn += 1;
        }
        if let Some(damage) = unconfirmed {
            // The record sought follows the damaged one: it confirms the way there.
            self.decode_at(&segment, offset, lsn).map_err(|_| damage)?;
        }
        Ok((segment, offset))
    }

    /// Whether no slice of `segment`'s bytes can overlap a record copy in progress: its reads do
    /// not show copies, or it is sealed and every record in it is copied. (Readers locate under
    /// the cut gate, which keeps out a truncation that could cut back into the segment and
    /// refill it; so does `Wal::read`, for the whole of its copy.)
    fn nothing_copied_into(&self, segment: &Segment) -> bool {
        // The written LSN (under the group-commit lock) only for a sealed segment.
        !segment.file.copies_show_in_bytes()
            || segment
                .sealed_last_lsn()
                .is_some_and(|last| last <= self.group.written_lsn())
    }

    /// The first LSN of the first segment starting after `lsn` (past a hole).
    pub(crate) fn first_lsn_after(&self, lsn: Lsn) -> Option<Lsn> {
        self.segments
            .read()
            .range((lsn + 1, 0)..)
            .next()
            .map(|(&(first, _), _)| first)
    }

    /// Decodes and checks the record at `offset`, which must be `lsn`; anything else means
    /// the bytes changed after recovery verified them.
    pub(crate) fn decode_at(
        &self,
        segment: &Segment,
        offset: u64,
        lsn: Lsn,
    ) -> Result<RecordHeader> {
        self.decode_checked_at(segment, offset, lsn, true)
    }

    /// [`Inner::decode_at`], computing the record's checksum only if `verify` (false for a
    /// reader told not to, `Reader::set_verify_checksums`) or if the segment's reads may show a
    /// copy in progress: a damaged length there could reach bytes an appender is writing (as
    /// in `Inner::locate`). Unchecked, a record still needs its LSN, a known kind, clear
    /// reserved bytes and a length that ends within the segment.
    pub(crate) fn decode_checked_at(
        &self,
        segment: &Segment,
        offset: u64,
        lsn: Lsn,
        verify: bool,
    ) -> Result<RecordHeader> {
        let corrupted = |expected_crc, found_crc| Error::Corrupted {
            segment: self.dir.path().join(segment.name()),
            offset,
            lsn,
            expected_crc,
            found_crc,
        };
        let decoded = if verify || !self.nothing_copied_into(segment) {
            segment.record_at(offset)
        } else {
            segment.verified_record_at(offset)
        };
        match decoded {
            Ok((header, _)) if header.lsn == lsn => Ok(header),
            Ok(_) => Err(corrupted(0, 0)),
            Err(invalid) => Err(corrupted(invalid.stored_crc(), invalid.computed_crc())),
        }
    }

    fn truncate_after(&self, lsn: Lsn) -> Result<()> {
        let mut tail = self.tail.lock();
        // Under the tail lock, which `close` takes before it releases the directory.
        self.group.check()?;
        let last = tail.next_lsn() - 1;
        if lsn >= last {
            return if lsn == last {
                Ok(())
            } else {
                Err(Error::NotFound {
                    lsn,
                    last_lsn: last,
                })
            };
        }
        let first = self.first_lsn.load(Ordering::Acquire);
        if lsn + 1 < first {
            return Err(Error::Compacted {
                lsn: lsn + 1,
                first_retained: first,
            });
        }
        if let Some((checkpoint, _)) = self.control.lock().state().checkpoint {
            if lsn < checkpoint {
                return Err(checkpoint_covers(lsn, checkpoint));
            }
        }
        if let Some((holder, pinned_lsn)) = self.pins.highest_above(lsn) {
            // Checked again below under the cut gate; this spares the commit when refused.
            return Err(Error::Pinned {
                op: "truncate",
                holder,
                pinned_lsn,
                cut_lsn: lsn,
            });
        }
        self.group.wait_written(last)?;
        // Everything appended reaches the file first (appends stay stopped: the tail lock is
        // held): the cut is located by reading record headers back, and backends that stage
        // writes in memory must not hold any.
        self.commit(last)?;
        // Records up to `lsn` stay; the epoch falls back to the last one's, as a reopen would
        // set it (a consensus log's terms never decrease along it, but they may across a cut).
        // Read under the gate and the control lock, as `epoch_at` does: a compaction moves the
        // first LSN past a removed segment under the control lock before it drops the segment,
        // so the state and the segments read here agree. (A copy of the state taken before
        // the gate could name a segment a compaction at `lsn`, the latest checkpoint, removed
        // meanwhile, and the cut would fail as if `lsn` were in a damaged stretch.)
        #[cfg(test)]
        crate::test_hooks::hook("truncate_after: the epoch kept is read next", self);
        let kept_epoch = {
            let _gate = self.cut_gate.read();
            let control = self.control.lock();
            self.epoch_of_under_gate(lsn, control.state())
                .map_err(|e| match e {
                    Error::NotFound { .. } => skipped_stretch(lsn),
                    other => other,
                })?
        };
        let _frozen = FrozenSyncs::freeze(self, "truncation")?;
        let gate = self.cut_gate.write();
        if let Some((holder, pinned_lsn)) = self.pins.highest_above(lsn) {
            drop(gate);
            self.group.thaw_unchanged();
            return Err(Error::Pinned {
                op: "truncate",
                holder,
                pinned_lsn,
                cut_lsn: lsn,
            });
        }
        let (segment, offset) = match self.locate(lsn + 1) {
            Ok(found) => found,
            Err(e) => {
                drop(gate);
                self.group.thaw_unchanged();
                return Err(match e {
                    Error::NotFound { .. } => skipped_stretch(lsn + 1),
                    other => other,
                });
            }
        };
        #[cfg(test)]
        crate::test_hooks::hook("truncate_after: the control lock is taken next", self);
        let mut control = self.control.lock();
        // Again under the control lock: a checkpoint may have finished since the first look
        // (its pin, checked under the gate, is gone once it has); another thread's failure
        // (a control-file write, a directory sync) may have poisoned the log since `freeze`
        // checked it, and a poisoned log writes nothing more.
        let refused = self
            .group
            .check()
            .and_then(|()| match control.state().checkpoint {
                Some((checkpoint, _)) if lsn < checkpoint => {
                    Err(checkpoint_covers(lsn, checkpoint))
                }
                _ => Ok(()),
            });
        if let Err(refused) = refused {
            drop(control);
            drop(gate);
            self.group.thaw_unchanged();
            return Err(refused);
        }
        match self.cut(&mut control, &mut tail, lsn, segment, offset) {
            Ok(()) => {
                self.epoch.store(kept_epoch, Ordering::Release);
                self.group.thaw(lsn);
                Ok(())
            }
            Err(e) => {
                // The cut is half done on disk; recovery will finish it (the control file says
                // so). Nothing more may be written here.
                let poisoned = self.group.poison(e);
                self.group.thaw_unchanged();
                Err(poisoned)
            }
        }
    }

    /// The steps of a truncation, in the order that makes a crash at any point safe: declare
    /// the cut in the control file, remove later segments, zero-fill and sync the cut
    /// segment, then clear the declaration.
    fn cut(
        &self,
        control: &mut Control,
        tail: &mut Tail<Arc<Segment>>,
        lsn: Lsn,
        segment: Arc<Segment>,
        offset: u64,
    ) -> Result<()> {
        let dir_path = self.dir.path().to_path_buf();
        let mut state = control.state().clone();
        // Exactly the cut, raised if it was lower: `truncate_after` committed everything up to
        // the old end before it got here, so every record kept was acknowledged. Left lower,
        // the records between the old watermark and the cut would lose their proof with the
        // records past the cut (which claimed them durable), and damage to one of them would
        // then pass for a torn tail.
        state.durable_lsn = lsn;
        state.pending_cut = Some(lsn);
        control.write(state.clone(), &dir_path)?;
        let later: Vec<Arc<Segment>> = {
            let mut map = self.segments.write();
            let key = (segment.first_lsn(), segment.sequence());
            let later_keys: Vec<(Lsn, u64)> = map.range(key..).skip(1).map(|(k, _)| *k).collect();
            later_keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for gone in &later {
            self.dir
                .remove(&gone.name())
                .map_err(|e| Error::io("remove", dir_path.join(gone.name()), e))?;
        }
        if !later.is_empty() {
            self.dir
                .sync()
                .map_err(|e| Error::io("fsync directory", &dir_path, e))?;
        }
        let path = dir_path.join(segment.name());
        // Appends follow into it, and the zero-fill below is the first write through its mapping.
        segment.file.prepare_for_appends();
        segment
            .zero_from(offset)
            .map_err(|e| Error::io("zero-fill", &path, e))?;
        segment
            .file
            .sync()
            .map_err(|e| Error::io(segment.file.sync_calls(), &path, e))?;
        segment.forget_after(lsn);
        segment.unseal();
        state.pending_cut = None;
        control.write(state, &dir_path)?;
        tail.reset(
            lsn + 1,
            segment.clone(),
            offset,
            segment.header.segment_bytes,
        );
        self.next_lsn.store(lsn + 1, Ordering::Release);
        Ok(())
    }

    /// One pass of the background work; the first error. A step that fails does not keep the
    /// others from running: with a full disk, the preparation of a segment fails at every pass,
    /// and compaction (which frees space) and the watermark must go on all the same. Segments
    /// are prepared ahead of need only if `prepare_ahead`.
    fn maintain(&self, prepare_ahead: bool) -> Result<()> {
        let _maintenance = self.maintenance.lock();
        #[cfg(test)]
        if self.panic_in_upkeep.swap(false, Ordering::AcqRel) {
            panic!("forced in the upkeep");
        }
        self.group.check()?;
        let prepared = if prepare_ahead {
            self.prepare_segments(self.options.prepared_segments_max, Preparation::Ahead)
        } else {
            Ok(())
        };
        if self.closing.load(Ordering::Acquire) {
            // The close writes back, syncs and writes the watermark itself; a compaction now
            // (whose recycling zero-fills a whole segment) would only delay it. `Closed`
            // whatever the preparation said: it may have been refused for space, or stopped.
            drop(prepared);
            return Err(Error::Closed);
        }
        self.write_back()?; // a failure poisons the log: nothing after it may run
        self.release_sealed_memory();
        let controlled = self.update_control();
        let compacted = self.compact().map(drop);
        prepared.and(controlled).and(compacted)
    }

    /// Writes staged records to their files (without a sync): everything in sealed segments,
    /// and the active segment's once it holds more than `STAGED_BYTES_ACTIVE_MAX`. This is what
    /// bounds the `Staged` backend's memory when nobody commits.
    fn write_back(&self) -> Result<()> {
        self.write_back_asked.store(false, Ordering::Release);
        // Before the segments are listed: a segment sealed after this store is in the list, and
        // counted again at worst (an early write-back, which finds little to write).
        self.sealed_staged.store(0, Ordering::Relaxed);
        let segments: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        for segment in segments {
            let threshold = match segment.sealed_last_lsn() {
                Some(_) => 0,
                None => STAGED_BYTES_ACTIVE_MAX,
            };
            if let Err(e) = segment.file.write_back(threshold) {
                let path = self.dir.path().join(segment.name());
                return Err(self.group.poison(Error::io("write", path, e)));
            }
        }
        Ok(())
    }

    /// Gives back the memory held for reads of each sealed segment whose records are all
    /// completely copied and that no reader stands in (see `File::release_memory`): the pages
    /// of its mapping (so that the process's mapped memory does not grow with the log it wrote
    /// or read), and with `IoUring` the staging memory through which it serves the blocks it
    /// wrote. Called after `write_back`, which writes sealed segments' staged records to their
    /// files. A segment handed out for reading again (`locate`) is released again later.
    fn release_sealed_memory(&self) {
        // Held exclusively: while it is, nobody can take a new handle on a segment, so a segment
        // that only the map holds has no reader, no slice of its bytes alive, and none coming.
        // A roll may seal a segment meanwhile (it seals before it takes this lock to insert the
        // successor): the written LSN, read next, then passes no segment still being copied
        // into.
        let map = self.segments.write();
        // No write into a sealed segment is in progress once every record in it is copied
        // (appenders name their segment without a handle until then: `SegmentRef`); a cut that
        // could rewrite it first takes a handle (`locate`). Read under the map lock: read
        // before it, a truncation could lower the written LSN, refill the cut segment and seal
        // it again meanwhile, and a stale, higher value would pass a segment still being copied
        // into.
        let written = self.group.written_lsn();
        for segment in map.values() {
            if !segment.sealed_and_copied(written) {
                // Segments are in LSN order: none after this one is sealed and written.
                break;
            }
            if segment.mapped() && Arc::strong_count(segment) == 1 {
                // `strong_count` loads with `Relaxed`: the fence orders the last reads through
                // the clones dropped (each drop's decrement releases) before the memory goes
                // (a review on 2026-12-05; x86 orders them anyway).
                std::sync::atomic::fence(Ordering::Acquire);
                if segment.file.release_memory() {
                    segment.note_released();
                }
            }
        }
    }

    /// Writes the durable watermark to the control file if it moved. A failed write poisons.
    fn update_control(&self) -> Result<()> {
        #[cfg(test)]
        crate::test_hooks::hook("update_control: the control lock is taken next", self);
        let mut control = self.control.lock();
        // Checked again under the lock: a truncation or a reset may have failed since the
        // caller's check, and a poisoned log writes nothing more. Written, this state went into
        // the slot a failed declaration may hold, and wrote over what a reopen was to finish.
        self.group.check()?;
        // Read under the control lock: a truncation lowers the durable LSN only while holding
        // it, so a stale, higher watermark can never be written after a cut.
        let durable = self.group.durable_lsn();
        if durable <= control.state().durable_lsn {
            return Ok(());
        }
        let state = ControlState {
            durable_lsn: durable,
            ..control.state().clone()
        };
        control
            .write(state, self.dir.path())
            .map_err(|e| self.group.poison(e))
    }

    fn wake_background(&self) {
        self.background.lock().wake = true;
        self.background_cond.notify_all();
    }

    /// The background thread. A panic in its upkeep (a bug) would end it silently, and with
    /// it compaction, the watermark and the segments prepared ahead, the disk filling unseen:
    /// it poisons the log instead, which every later call (and the close) then reports.
    fn run_background(&self) {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.background_loop()));
        if let Err(panic) = ran {
            let cause = std::io::Error::other(format!(
                "the background thread panicked ({}): compaction, the watermark and segments \
                 prepared ahead stopped",
                panic_message(&*panic)
            ));
            let path = self.dir.path().to_path_buf();
            self.group
                .poison(Error::io("background upkeep", path, cause));
        }
    }

    fn background_loop(&self) {
        // Once the log is being written (`being_written`), the next segment is prepared at
        // once, not a control interval later: a fast appender may fill the first one sooner,
        // and would then zero-fill the next one itself, under the tail lock. Only that:
        // compaction and the watermark wait for the first interval (or the first roll), so that
        // a caller who reads from `first_lsn()` right after open (recovery of a replica, a
        // check after a crash) is not compacted under at once. The first append wakes this
        // thread to prepare, and only that.
        let prepare_ahead = || {
            let _maintenance = self.maintenance.lock();
            if self.group.check().is_ok() {
                let _ =
                    self.prepare_segments(self.options.prepared_segments_max, Preparation::Ahead);
            }
        };
        if self.being_written.load(Ordering::Acquire) {
            prepare_ahead();
        }
        loop {
            let only_prepare;
            {
                let mut signal = self.background.lock();
                if !signal.shutdown && !signal.wake && !signal.prepare {
                    self.background_cond
                        .wait_for(&mut signal, self.options.control_interval);
                }
                if signal.shutdown {
                    return;
                }
                only_prepare = signal.prepare && !signal.wake;
                signal.wake = false;
                signal.prepare = false;
            }
            if only_prepare {
                prepare_ahead();
                continue;
            }
            // Errors here reach callers: a segment that could not be prepared is prepared again
            // by the append that needs it (which returns the error), and a failed control write
            // poisons the log.
            let _ = self.maintain(self.being_written.load(Ordering::Acquire));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_hooks::at;

    /// A panic while an append takes its LSNs (here in the roll to the next segment, after the
    /// batch's first record took LSN 4) poisons the log: later commits, and the close, fail
    /// instead of waiting forever for LSNs that no copy will complete (found by review on
    /// 2026-12-05; nothing there panics today but a bug would).
    #[test]
    fn a_panic_while_taking_lsns_poisons_instead_of_stalling_every_commit() {
        let options = Options::new()
            .backend(Backend::Simulated(crate::SimDisk::new()))
            .background_threads(false)
            .segment_bytes(1 << 20);
        let wal = Arc::new(Wal::open("/sim", options).unwrap());
        let record = vec![7u8; 300 << 10];
        for _ in 0..3 {
            wal.append(&record).unwrap();
        }
        at("roll", |_| panic!("a bug in the roll"));
        let batch: [&[u8]; 2] = [b"fits", &record];
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.append_batch(&batch)));
        assert!(panicked.is_err(), "the hook's panic reached the caller");
        later_calls_are_poisoned(
            &wal,
            "a later append's commit waited for the LSNs the panic took",
        );
    }

    /// A log of 20 durable records whose next append panicked at the hook `point` of group
    /// commit (a bug, forced), and its disk.
    fn an_append_panicking_at(point: &'static str) -> (Arc<Wal>, crate::SimDisk) {
        let disk = crate::SimDisk::new();
        let (wal, _) = durable_records(&disk, 20);
        crate::test_hooks::at_outside(point, || panic!("forced inside complete"));
        let appended =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.append(b"panics")));
        assert!(appended.is_err(), "the append panicked");
        (wal, disk)
    }

    /// After a panic that left LSNs no copy will complete: a later append and its commit (on
    /// another thread, bounded) and the close fail `Poisoned` instead of waiting forever.
    fn later_calls_are_poisoned(wal: &Arc<Wal>, hung: &'static str) {
        let (done, outcome) = std::sync::mpsc::channel();
        let later = wal.clone();
        std::thread::spawn(move || {
            let _ = done.send(later.append(b"later").and_then(|lsn| later.commit(lsn)));
        });
        match outcome.recv_timeout(Duration::from_secs(20)) {
            Ok(Err(Error::Poisoned { .. })) => {}
            Ok(other) => panic!("expected Poisoned, got {other:?}"),
            Err(_) => panic!("{hung}"),
        }
        assert!(matches!(wal.close_shared(), Err(Error::Poisoned { .. })));
    }

    /// Runs `during` from a `Drop` while an unrelated panic unwinds (caught here), as a
    /// transaction guard does; what it returned.
    fn during_an_unrelated_unwind<T>(during: impl FnOnce() -> T) -> T {
        struct RunOnDrop<G: FnMut()>(G);
        impl<G: FnMut()> Drop for RunOnDrop<G> {
            fn drop(&mut self) {
                (self.0)()
            }
        }
        let mut during = Some(during);
        let mut outcome = None;
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _transaction = RunOnDrop(|| outcome = during.take().map(|f| f()));
            panic!("a bug elsewhere");
        }));
        assert!(unwound.is_err());
        outcome.expect("the drop ran")
    }

    fn simulated_log() -> Wal {
        let options = Options::new()
            .backend(Backend::Simulated(crate::SimDisk::new()))
            .background_threads(false);
        Wal::open("/sim", options).unwrap()
    }

    /// An append made from a `Drop` while another panic unwinds (a transaction guard logging
    /// its abort) is not that panic's: it succeeds and poisons nothing. The guard above took
    /// any unwind for its own, and poisoned the log after such an append had succeeded (found
    /// by review on 2026-12-05).
    #[test]
    fn an_append_during_an_unrelated_unwind_poisons_nothing() {
        let wal = simulated_log();
        assert_eq!(
            during_an_unrelated_unwind(|| wal.append(b"abort")).unwrap(),
            1
        );
        let lsn = wal.append(b"next").unwrap();
        wal.commit(lsn).unwrap();
        assert_eq!(wal.read(1).unwrap(), b"abort");
    }

    /// The same for a truncation made from a `Drop` during an unrelated unwind (a transaction
    /// rolled back): its freeze of syncs took the unwind for its own, and poisoned the log with
    /// "a truncation panicked" after the truncation had succeeded (found by review on
    /// 2026-12-05).
    #[test]
    fn a_truncation_during_an_unrelated_unwind_poisons_nothing() {
        let wal = simulated_log();
        wal.append_durable(b"kept").unwrap();
        wal.append_durable(b"rolled back").unwrap();
        during_an_unrelated_unwind(|| wal.truncate_after(1)).unwrap();
        assert_eq!(wal.append_durable(b"next").unwrap(), 2);
        assert_eq!(wal.read(2).unwrap(), b"next");
    }

    /// A `Wal::read` in progress while a truncation takes its first look at the pins: the cut
    /// waits for the read (the gate) and then succeeds. The read's pin refused it with
    /// `Pinned { holder: "read #N" }` (found by review on 2026-12-04).
    #[test]
    fn a_read_in_progress_does_not_refuse_a_truncation() {
        let dir = std::env::temp_dir().join(format!("rwal-read-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Arc::new(Wal::open(&dir, Options::new().background_threads(false)).unwrap());
        for i in 1..=5u8 {
            wal.append(&[i; 100]).unwrap();
        }
        wal.sync().unwrap();
        let cut = Arc::new(Mutex::new(None));
        let (cutter, cut_out) = (wal.clone(), cut.clone());
        at("read: pinned", move |inner| {
            let cutting = std::thread::spawn(move || cutter.truncate_after(2));
            // Past its first look at the pins, the truncation freezes syncs and waits for
            // this read's gate. Refused, it ends instead.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !inner.group.frozen() && !cutting.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "the truncation neither froze nor ended"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            *cut_out.lock() = Some(cutting);
        });
        assert_eq!(wal.read(5).unwrap(), vec![5u8; 100]);
        let cutting = cut.lock().take().expect("the hook ran");
        cutting
            .join()
            .unwrap()
            .expect("the truncation waited for the read");
        assert_eq!(wal.last_lsn(), 2);
        // Compaction still honours a read's pin, and a reader's pin still refuses a cut.
        let mut reader = wal.reader(1).unwrap();
        assert!(reader.next().unwrap().is_some());
        assert!(reader.next().unwrap().is_some());
        assert!(matches!(wal.truncate_after(1), Err(Error::Pinned { .. })));
        drop(reader);
        wal.close_shared().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A reset that fails after it declared itself poisons the log; the records it declared
    /// removed are not read any more, though they were durable (the rule of
    /// `Inner::check_answerable`: a poisoned log answers for its durable records otherwise).
    #[test]
    fn a_reset_that_failed_half_way_answers_no_read() {
        let disk = crate::SimDisk::new();
        let (wal, _) = durable_records(&disk, 5);
        let failing = disk.clone();
        at("reset_to_snapshot: declared", move |_| {
            failing.fail_next_dir_sync(libc::EIO)
        });
        let failed = wal.reset_to_snapshot(12, 3, b"state at 12");
        assert!(matches!(failed, Err(Error::Poisoned { .. })), "{failed:?}");
        assert_eq!(wal.durable_lsn(), 5);
        refuses_the_reads_of_the_first_five(&wal);
    }

    /// The same for a reset whose declaration itself failed (its control file's first sync):
    /// the disk may hold the declaration, and a reopen then finishes the reset. Until
    /// 2026-12-06 the log answered reads of records such a reopen removes.
    #[test]
    fn a_reset_whose_declaration_failed_answers_no_read() {
        let mut reset_by_a_reopen = 0;
        for seed in 0..64 {
            let disk = crate::SimDisk::new();
            let (wal, options) = durable_records(&disk, 5);
            disk.fail_next_sync_of(crate::control::FILE_NAME, libc::EIO, false);
            let failed = wal.reset_to_snapshot(12, 3, b"state at 12");
            assert!(matches!(failed, Err(Error::Poisoned { .. })), "{failed:?}");
            assert_eq!(wal.durable_lsn(), 5);
            refuses_the_reads_of_the_first_five(&wal);
            let crashed = disk.crash(seed);
            drop(wal);
            let wal = Wal::open("/sim", options.backend(Backend::Simulated(crashed))).unwrap();
            match (wal.first_lsn(), wal.last_lsn()) {
                (13, 12) => reset_by_a_reopen += 1,
                (1, 5) => assert_eq!(wal.read(5).unwrap(), [5; 100]),
                other => panic!("seed {seed}: (first, last) {other:?} after the reopen"),
            }
        }
        assert!(
            (1..64).contains(&reset_by_a_reopen),
            "{reset_by_a_reopen} of 64 reopens finished the reset: both outcomes expected"
        );
    }

    /// A log on `disk` holding `count` durable records of 100 bytes (record `i` all bytes
    /// `i`), and the options it was opened with.
    fn durable_records(disk: &crate::SimDisk, count: u8) -> (Arc<Wal>, Options) {
        let options = simulated(disk);
        let wal = Arc::new(Wal::open("/sim", options.clone()).unwrap());
        for i in 1..=count {
            wal.append(&[i; 100]).unwrap();
        }
        wal.sync().unwrap();
        (wal, options)
    }

    /// Options of a log on `disk`: segments of 1 MiB, no background thread.
    fn simulated(disk: &crate::SimDisk) -> Options {
        Options::new()
            .backend(Backend::Simulated(disk.clone()))
            .background_threads(false)
            .segment_bytes(1 << 20)
    }

    /// A replica's write of its term and vote to the control file, on `wal`, whose sync fails
    /// on `disk`: the log is poisoned by another thread's failure.
    fn store_a_vote_that_fails(disk: &crate::SimDisk, wal: &Wal) {
        disk.fail_next_sync_of(crate::control::FILE_NAME, libc::EIO, true);
        let vote = HardState {
            term: 2,
            vote: 1,
            commit: 0,
        };
        assert!(wal.store_replication_state(vote, None).is_err());
    }

    /// Checks that a poisoned log answers no read of records 1 to 5: by LSN, for an epoch, or
    /// through a reader.
    fn refuses_the_reads_of_the_first_five(wal: &Wal) {
        let refused = |result: Result<()>| {
            assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}")
        };
        refused(wal.read(1).map(drop));
        refused(wal.read(5).map(drop));
        refused(wal.epoch_at(1).map(drop));
        refused(wal.epoch_at(5).map(drop));
        refused(wal.reader(1).map(drop));
    }

    /// A truncation's declaration fails between the check of the log by `maintain` (which
    /// writes the watermark) or by a checkpoint and their write of the control file (another
    /// thread's truncation, in use). The poisoned log writes nothing more: the write went into
    /// the slot the failed declaration had been written to, its sync succeeded, and what a
    /// reopen was to finish was gone from the disk (found by review on 2026-12-06).
    #[test]
    fn a_watermark_or_checkpoint_is_not_written_over_a_failed_declaration() {
        type Call = fn(&Wal) -> Result<()>;
        let cases: [(&str, Call); 2] = [
            ("update_control: the control lock is taken next", |wal| {
                wal.maintain()
            }),
            ("finish_checkpoint: the control lock is taken next", |wal| {
                wal.checkpoint(5, Some(b"state at 5"))
            }),
        ];
        for (point, call) in cases {
            let disk = crate::SimDisk::new();
            let (wal, _) = durable_records(&disk, 20);
            let (failing, truncating) = (disk.clone(), wal.clone());
            at(point, move |_| {
                failing.fail_next_sync_of(crate::control::FILE_NAME, libc::EIO, false);
                let failed = truncating.truncate_after(10);
                assert!(matches!(failed, Err(Error::Poisoned { .. })), "{failed:?}");
            });
            let called = call(&wal);
            assert!(
                matches!(called, Err(Error::Poisoned { .. })),
                "{point}: {called:?}"
            );
            let on_disk = Control::open(&disk.dir(Path::new("/sim"))).unwrap();
            assert_eq!(
                on_disk.state().pending_cut,
                Some(10),
                "{point}: the declaration the cut wrote is still the newest copy"
            );
        }
    }

    /// A compaction that fails before it removes anything (the record before its new first
    /// LSN unreadable) leaves the capped pins it would have released in place: it released
    /// them first, for nothing (found by review on 2026-12-07).
    #[test]
    fn a_compaction_that_fails_releases_no_pin() {
        let disk = crate::SimDisk::new();
        let wal = Wal::open("/sim", simulated(&disk)).unwrap();
        // 200 KiB records, five a 1 MiB segment: 1..=5, 6..=10, 11..=15, then the active one.
        for i in 0..18u8 {
            wal.append(&[i; 200 << 10]).unwrap();
        }
        wal.sync().unwrap();
        wal.checkpoint(15, None).unwrap();
        let capped = wal.pin_with_cap("slow-replica", 3, 1).unwrap();
        // Record 15, the last of the third segment, damaged under the open log.
        let stored = 32 + (200 << 10);
        disk.flip_bit(&crate::segment::file_name(3), 4096 + 4 * stored + 100, 0);
        let failed = wal.compact_now();
        assert!(matches!(failed, Err(Error::Corrupted { .. })), "{failed:?}");
        assert!(
            !capped.is_invalidated(),
            "a failed compaction released the pin"
        );
        assert_eq!(wal.first_lsn(), 1, "nothing was removed");
    }

    /// A checkpoint whose control-file write succeeded is reported made even when the
    /// directory sync after it removes the older snapshots fails: the log is poisoned (the
    /// next call says so), and a reopen shows the checkpoint. It returned the sync's error,
    /// for a checkpoint in place (found by review on 2026-12-07).
    #[test]
    fn a_checkpoint_in_place_is_made_though_the_cleanup_after_it_failed() {
        let disk = crate::SimDisk::new();
        let (wal, options) = durable_records(&disk, 20);
        wal.checkpoint(5, Some(b"state at 5")).unwrap();
        let failing = disk.clone();
        at(
            "finish_checkpoint: the control lock is taken next",
            move |_| {
                failing.fail_next_dir_sync(libc::EIO);
            },
        );
        let made = wal.checkpoint(8, Some(b"state at 8"));
        assert!(made.is_ok(), "{made:?}");
        assert!(
            !disk.has_armed_failure(),
            "the directory sync was not reached"
        );
        let next = wal.append(b"after");
        assert!(matches!(next, Err(Error::Poisoned { .. })), "{next:?}");
        drop(wal);
        let reopened = Wal::open("/sim", options).unwrap();
        let latest = reopened.latest_checkpoint().unwrap();
        assert_eq!(latest.lsn, 8);
        assert_eq!(latest.snapshot_bytes, Some(10));
    }

    /// Another thread's control-file write fails (a replica storing its term and vote) after a
    /// truncation or a reset checked the log and before it takes the control lock. It is
    /// refused, and writes nothing: it used to declare itself into the slot the failed write
    /// went to, finish, and return `Ok` on a poisoned log (found by review on 2026-12-06).
    #[test]
    fn a_cut_or_reset_after_another_threads_failure_writes_nothing() {
        type Call = fn(&Wal) -> Result<()>;
        let cases: [(&str, Call); 2] = [
            ("truncate_after: the control lock is taken next", |wal| {
                wal.truncate_after(10)
            }),
            ("reset: the control lock is taken next", |wal| {
                wal.reset_to_snapshot(30, 3, b"state at 30")
            }),
        ];
        for (point, call) in cases {
            let disk = crate::SimDisk::new();
            let (wal, options) = durable_records(&disk, 20);
            let (failing, storing) = (disk.clone(), wal.clone());
            at(point, move |_| store_a_vote_that_fails(&failing, &storing));
            let called = call(&wal);
            assert!(
                matches!(called, Err(Error::Poisoned { .. })),
                "{point}: {called:?}"
            );
            drop(wal);
            let reopened = Wal::open("/sim", options).unwrap();
            assert_eq!(
                (reopened.first_lsn(), reopened.last_lsn()),
                (1, 20),
                "{point}: the log as it was"
            );
        }
    }

    /// Another thread's control-file write fails between a compaction's check of the log and
    /// its control lock. The compaction is refused and removes no segment: the log reopens
    /// whole. (Its check under the lock and the control file's refusal after a failed write
    /// both stop it; without either it moved the first LSN on a poisoned log.)
    #[test]
    fn a_compaction_after_another_threads_failure_removes_nothing() {
        let disk = crate::SimDisk::new();
        let options = simulated(&disk);
        let wal = Arc::new(Wal::open("/sim", options.clone()).unwrap());
        let record = [7u8; 4000];
        while wal.segment_count() < 3 {
            wal.append(&record).unwrap();
        }
        wal.sync().unwrap();
        let last = wal.last_lsn();
        wal.checkpoint(last, Some(b"state")).unwrap();
        let (failing, storing) = (disk.clone(), wal.clone());
        at("compact: the control lock is taken next", move |_| {
            store_a_vote_that_fails(&failing, &storing)
        });
        let compacted = wal.compact_now();
        assert!(
            matches!(compacted, Err(Error::Poisoned { .. })),
            "{compacted:?}"
        );
        drop(wal);
        let reopened = Wal::open("/sim", options).unwrap();
        assert_eq!((reopened.first_lsn(), reopened.last_lsn()), (1, last));
    }

    /// A panic inside group commit's `complete` (a bug; forced here) after it noted the copy
    /// and before it counted the run as ended: the appender's guard gives the run up, and it
    /// is counted once. Counted at `complete`'s start and again by the guard (until the review
    /// of 2026-12-06), a poisoned log's `close` could return while another run was copying.
    #[test]
    fn a_run_is_counted_as_ended_once_when_group_commit_panics() {
        let (wal, _disk) = an_append_panicking_at("complete: the run is noted");
        let placed = wal.inner.tail.lock().runs_placed();
        assert_eq!(wal.inner.group.runs_ended(), placed);
    }

    /// Appends stop at `LSN_MAX` with an error and take no LSN: a log reset to a snapshot near
    /// it wrote records into segments whose headers recovery refuses (found by review on
    /// 2026-12-07).
    #[test]
    fn appends_stop_at_the_largest_lsn_a_log_takes() {
        let disk = crate::SimDisk::new();
        let wal = Wal::open("/sim", simulated(&disk)).unwrap();
        wal.reset_to_snapshot(segment::LSN_MAX - 2, 1, b"state")
            .unwrap();
        let batch: [&[u8]; 3] = [b"a", b"b", b"c"];
        assert!(matches!(
            wal.append_batch(&batch),
            Err(Error::InvalidArgument { .. })
        ));
        let first = wal.append_batch(&batch[..2]).unwrap();
        assert_eq!(first, segment::LSN_MAX - 1);
        wal.sync().unwrap();
        let refused = wal.append(b"past");
        match &refused {
            Err(e @ Error::InvalidArgument { .. }) => {
                assert!(e.to_string().contains("the log is full"), "{e}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Nor does a refused append raise the epoch it asked for.
        let refused = wal.append_with(RecordKind::User, 7, &[b"past"]);
        assert!(matches!(refused, Err(Error::InvalidArgument { .. })));
        assert_eq!(wal.epoch(), 1);
        assert_eq!(wal.last_lsn(), segment::LSN_MAX);
        wal.close().unwrap();
        let wal = Wal::open("/sim", simulated(&disk)).unwrap();
        assert_eq!(wal.last_lsn(), segment::LSN_MAX);
        assert_eq!(wal.read(segment::LSN_MAX).unwrap(), b"b");
    }

    /// A panic in the background thread's upkeep (a bug) poisons the log: until 2026-12-07 the
    /// thread ended silently, compaction and the watermark with it, and the close said `Ok`
    /// (found by review).
    #[test]
    fn a_panic_in_the_background_upkeep_poisons_the_log() {
        let options = Options::new()
            .backend(Backend::Simulated(crate::SimDisk::new()))
            .control_interval(Duration::from_millis(10))
            .segment_bytes(1 << 20);
        let wal = Wal::open("/sim", options).unwrap();
        wal.append_durable(b"before").unwrap();
        wal.inner.panic_in_upkeep.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(20);
        while wal.check_usable().is_ok() {
            assert!(
                Instant::now() < deadline,
                "the log went on after its upkeep panicked"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let refused = wal.append(b"after");
        match refused {
            Err(Error::Poisoned { ref cause }) => {
                assert!(
                    cause.to_string().contains("forced in the upkeep"),
                    "{cause}"
                )
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
        assert!(matches!(wal.close(), Err(Error::Poisoned { .. })));
    }

    /// A panic in group commit's report that a run is complete, before it moved the written LSN
    /// (a bug), poisons the log: until 2026-12-07 the report was outside the append's catch,
    /// and every later commit and the close waited forever for the LSN (found by review).
    #[test]
    fn a_panic_before_a_run_is_noted_complete_poisons_instead_of_stalling() {
        let (wal, _disk) = an_append_panicking_at("complete: before the run is noted");
        later_calls_are_poisoned(
            &wal,
            "a later commit waited for the LSN the panic left incomplete",
        );
    }

    /// A panic inside `close` (a bug) unwinds out of it as a panic: the drop of the handle it
    /// consumed does not close again during the unwind, which would panic a second time and
    /// abort the process (found by review on 2026-12-07: the C ABI's `rwal_close` promises
    /// `RWAL_ERR_PANIC`). The directory is free afterwards.
    #[test]
    fn a_panic_inside_close_is_not_run_into_again_by_the_drop() {
        let dir = std::env::temp_dir().join(format!("rwal-close-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, Options::new().background_threads(false)).unwrap();
        wal.append(b"appended before the close").unwrap();
        // Twice: the same bug would meet a second close too.
        for _ in 0..2 {
            at("shutdown: syncing", |_| panic!("a bug inside close"));
        }
        let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.close()));
        let panic = closed.expect_err("the close panicked");
        assert_eq!(panic_message(panic.as_ref()), "a bug inside close");
        // On another thread: the second hook, never reached, stays set on this one.
        let path = dir.clone();
        std::thread::spawn(move || {
            let reopened = Wal::open(&path, Options::new().background_threads(false)).unwrap();
            assert_eq!(reopened.last_lsn(), 1);
            reopened.close().unwrap();
        })
        .join()
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A reset syncs every record before it drops them, as a truncation does. A committer that
    /// read the truncation count before a reset and looks again only after a later truncation
    /// is told `Ok`: its record was durable once (`docs/design.md` section 7.4). Without the
    /// sync, its record was never durable (found by review on 2026-12-04).
    #[test]
    fn a_reset_syncs_the_records_it_drops_first() {
        let dir = std::env::temp_dir().join(format!("rwal-reset-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, Options::new().background_threads(false)).unwrap();
        for i in 1..=10u8 {
            wal.append(&[i; 100]).unwrap();
        }
        wal.sync().unwrap();
        for i in 11..=20u8 {
            wal.append(&[i; 100]).unwrap();
        }
        assert_eq!(wal.durable_lsn(), 10);
        at("reset_to_snapshot: declared", |inner| {
            assert_eq!(
                inner.group.durable_lsn(),
                20,
                "the records the reset drops were synced first"
            );
        });
        wal.reset_to_snapshot(12, 0, b"state at 12").unwrap();
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (13, 12));
        wal.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A compaction that removes the segment holding the latest checkpoint's record runs
    /// while a truncation to that record is under way (another thread's, in use: here at the
    /// moment that made it fail). The truncation takes the record's epoch from the control
    /// file and cuts. It used to read the epoch with a copy of the control state taken before
    /// the compaction, looked for the removed segment, and failed with `InvalidArgument` as if
    /// the record were in a stretch recovery skipped as damaged.
    #[test]
    fn a_cut_to_the_checkpoint_beside_the_compaction_of_its_segment_succeeds() {
        let dir = std::env::temp_dir().join(format!("rwal-cut-compaction-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = || {
            Options::new()
                .background_threads(false)
                .segment_bytes(1 << 20)
        };
        let wal = Wal::open(&dir, options()).expect("opened");
        wal.set_epoch(3).expect("epoch set");
        let payload = vec![5u8; 4096];
        let mut lsn = 0;
        while wal.segment_count() < 2 {
            lsn = wal.append(&payload).expect("appended");
        }
        // The first record of the second segment: the checkpoint is the first one's last.
        let checkpoint = lsn - 1;
        wal.set_epoch(4).expect("epoch set");
        let last = wal.append(b"cut").expect("appended");
        wal.sync().expect("synced");
        wal.checkpoint(checkpoint, Some(b"state"))
            .expect("checkpoint");
        assert_eq!(wal.first_lsn(), 1, "nothing compacted yet");
        at("truncate_after: the epoch kept is read next", |inner| {
            let report = inner.compact().expect("compacted");
            assert_eq!(report.segments_removed, 1, "{report:?}");
        });
        wal.truncate_after(checkpoint).expect("cut");
        assert_eq!(
            wal.first_lsn(),
            checkpoint + 1,
            "the first segment compacted"
        );
        assert_eq!(wal.last_lsn(), checkpoint);
        assert_eq!(wal.epoch(), 3, "the epoch of the record cut after");
        assert!(last > lsn);
        let again = wal.append(b"after the cut").expect("appended");
        assert_eq!(again, checkpoint + 1);
        wal.close().expect("closed");
        let wal = Wal::open(&dir, options()).expect("reopened");
        assert_eq!(wal.read(again).expect("read"), b"after the cut");
        assert_eq!(wal.epoch_at(checkpoint).expect("epoch"), 3);
        wal.close().expect("closed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `epoch_at` of any LSN past the log (the replication layer asks with indices from peers'
    /// messages) is `NotFound`. `u64::MAX` overflowed the check before (a panic in builds with
    /// overflow checks; found by review on 2026-12-03).
    #[test]
    fn the_epoch_of_an_lsn_past_the_log_is_not_found_up_to_the_largest() {
        let dir = std::env::temp_dir().join(format!("rwal-epoch-max-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, Options::new().background_threads(false)).expect("opened");
        wal.append_durable(b"one").expect("appended");
        for lsn in [2, 1 << 40, u64::MAX - 1, u64::MAX] {
            let found = wal.epoch_at(lsn);
            assert!(
                matches!(found, Err(Error::NotFound { .. })),
                "{lsn}: {found:?}"
            );
        }
        wal.close().expect("closed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A truncation on another handle between a sync's look at the last LSN and its commit
    /// (here, the sync of a close). The sync follows the cut and commits what is left. It used
    /// to fail with `NotFound` for the LSN it read, and the close with it, skipping the final
    /// watermark write.
    #[test]
    fn a_sync_or_close_beside_a_truncation_syncs_what_the_cut_left() {
        let dir = std::env::temp_dir().join(format!("rwal-sync-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = || Options::new().background_threads(false);
        let wal = Wal::open(&dir, options()).expect("opened");
        for i in 0..4u8 {
            wal.append(&[i; 100]).expect("appended");
        }
        wal.commit(2).expect("committed");
        at("sync: the last LSN read", |inner| {
            inner.truncate_after(2).expect("cut");
            inner
                .append(RecordKind::User, None, &[&[9u8; 10]])
                .expect("appended");
        });
        assert_eq!(
            wal.sync().expect("synced"),
            3,
            "the record appended after the cut"
        );
        wal.append(&[4u8; 100]).expect("appended");
        at("sync: the last LSN read", |inner| {
            inner.truncate_after(3).expect("cut");
        });
        wal.close_shared().expect("closed, the watermark written");
        drop(wal);
        let wal = Wal::open(&dir, options()).expect("reopened");
        assert_eq!(wal.last_lsn(), 3);
        assert_eq!(wal.read(3).expect("read"), [9u8; 10]);
        assert_eq!(
            wal.recovery_report().control_durable_lsn,
            3,
            "{:?}",
            wal.recovery_report()
        );
        wal.close().expect("closed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A close stops a segment's preparation ahead of need: the pass fails with `Closed` and
    /// the half-zeroed file is gone. Appends that need a segment still make one, and the log
    /// goes on past the sequence number the stopped preparation took.
    #[test]
    fn a_close_stops_the_preparation_of_a_segment_ahead_of_need() {
        let dir = std::env::temp_dir().join(format!("rwal-stopped-prepare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = || {
            Options::new()
                .background_threads(false)
                .segment_bytes(1 << 20)
        };
        let names = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .expect("listed")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".seg"))
                .collect();
            names.sort();
            names
        };
        let wal = Wal::open(&dir, options()).expect("opened");
        wal.append_durable(b"before").expect("appended");
        wal.inner.closing.store(true, Ordering::Release);
        let err = wal.maintain().expect_err("stopped");
        assert!(matches!(err, Error::Closed), "{err}");
        assert_eq!(names(), ["00000000000000000001.seg"]);
        // An append that needs a segment now is never stopped.
        let big = vec![7u8; 600 << 10];
        wal.append_durable(&big).expect("appended");
        wal.append_durable(&big)
            .expect("appended into a segment made on demand");
        wal.close().expect("closed");
        let wal = Wal::open(&dir, options()).expect("reopened");
        wal.maintain().expect("prepared");
        assert_eq!(wal.read(1).expect("read"), b"before");
        assert_eq!(wal.read(3).expect("read"), big);
        for _ in 0..2 {
            wal.append_durable(&big)
                .expect("rolled into the prepared segment");
        }
        assert_eq!(wal.read(5).expect("read"), big);
        wal.close().expect("closed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Waits up to ten seconds for the background thread to have a segment prepared.
    fn wait_for_a_prepared_segment(wal: &Wal, why: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wal.inner.prepared.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{why}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// A log opened to be read (its active segment less than half full) prepares no segment
    /// ahead of need: no zero-fill beside the readers, no file to remove at close. The first
    /// append has the background thread prepare one at once, not a control interval later. A
    /// log whose active segment is at least half full prepares one at open. It used to prepare
    /// one at every open, and a close soon after stopped it and removed the file.
    #[test]
    fn the_background_thread_prepares_ahead_only_for_a_log_being_written() {
        let dir = std::env::temp_dir().join(format!("rwal-prepare-written-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let segment_bytes = 1 << 20;
        // The interval is the longest allowed: no pass of `maintain` runs during the test.
        let options = || {
            Options::new()
                .segment_bytes(segment_bytes)
                .control_interval(crate::options::CONTROL_INTERVAL_MAX)
        };
        let wal = Wal::open(&dir, options()).expect("created");
        wal.append_durable(&[1u8; 1000]).expect("appended");
        wal.close().expect("closed");

        let wal = Wal::open(&dir, options()).expect("reopened");
        let sequence = wal.inner.next_sequence.load(Ordering::Acquire);
        let mut reader = wal.reader(1).expect("reader");
        assert_eq!(
            reader.next().expect("read").expect("a record").data,
            [1u8; 1000]
        );
        drop(reader);
        // The close joins the background thread: any preparation it began took a sequence.
        wal.close_shared().expect("closed");
        assert_eq!(
            wal.inner.next_sequence.load(Ordering::Acquire),
            sequence,
            "a log only read prepared a segment"
        );
        drop(wal);

        let wal = Wal::open(&dir, options()).expect("reopened");
        wal.append(&[2u8; 1000]).expect("appended");
        wait_for_a_prepared_segment(&wal, "the first append had no segment prepared");
        // Past half of the active segment, then reopened: prepared without an append.
        // Each record takes more than its 1000 bytes of payload.
        for _ in 0..segment_bytes / 2 / 1000 {
            wal.append(&[3u8; 1000]).expect("appended");
        }
        wal.close().expect("closed");
        // The segment prepared before the close is kept: remove it to see another prepared.
        let mut prepared_files = 0;
        for entry in std::fs::read_dir(&dir).expect("listed") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "seg") {
                let bytes = std::fs::read(&path).expect("read");
                if bytes.iter().all(|&b| b == 0) {
                    std::fs::remove_file(&path).expect("removed");
                    prepared_files += 1;
                }
            }
        }
        assert_eq!(
            prepared_files, 1,
            "the segment prepared after the first append"
        );
        let wal = Wal::open(&dir, options()).expect("reopened");
        assert!(wal.inner.being_written.load(Ordering::Acquire));
        wait_for_a_prepared_segment(&wal, "a half-full log had no segment prepared at open");
        wal.close().expect("closed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Wal>();
        is::<Reader>();
    }

    /// The `f_type` a copy-on-write file system reports, set for this thread's opens while
    /// the guard lives.
    struct FakeFileSystem;

    impl FakeFileSystem {
        fn set(file_system_type: u32) -> FakeFileSystem {
            crate::io::fs::FAKE_FILE_SYSTEM_TYPE.with(|f| f.set(Some(file_system_type)));
            FakeFileSystem
        }
    }

    impl Drop for FakeFileSystem {
        fn drop(&mut self) {
            crate::io::fs::FAKE_FILE_SYSTEM_TYPE.with(|f| f.set(None));
        }
    }

    const BTRFS: u32 = 0x9123_683e;
    const EXT4: u32 = 0xef53;

    /// On a copy-on-write file system (btrfs here, faked: none is mounted where the tests run),
    /// a log whose options left the backend at its default is written with `Staged`, not
    /// through a mapping that a full disk would turn into a `SIGBUS`; on any other, the
    /// default is `Mmap`. A backend the options name is used as named.
    #[test]
    fn the_default_backend_is_staged_on_a_copy_on_write_file_system() {
        let dir = std::env::temp_dir().join(format!("rwal-cow-default-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = || Options::new().background_threads(false);
        {
            let _btrfs = FakeFileSystem::set(BTRFS);
            let wal = Wal::open(&dir, options()).unwrap();
            assert_eq!(wal.backend_name(), "staged");
            wal.append_durable(b"on btrfs").unwrap();
            wal.close().unwrap();
            for (backend, name) in [(Backend::Staged, "staged"), (Backend::Pwrite, "pwrite")] {
                let wal = Wal::open(&dir, options().backend(backend)).unwrap();
                assert_eq!(wal.backend_name(), name);
                wal.close().unwrap();
            }
        }
        let _ext4 = FakeFileSystem::set(EXT4);
        let wal = Wal::open(&dir, options()).unwrap();
        assert_eq!(wal.backend_name(), "mmap");
        assert_eq!(wal.read(1).unwrap(), b"on btrfs");
        wal.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `Mmap` named in the options on a copy-on-write file system is refused with
    /// `Unsupported`, naming the file system, the directory and what to use instead, before
    /// the log is touched: it opens afterwards with every record.
    #[test]
    fn a_chosen_mmap_backend_is_refused_on_a_copy_on_write_file_system() {
        let dir = std::env::temp_dir().join(format!("rwal-cow-refused-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = || Options::new().background_threads(false);
        let wal = Wal::open(&dir, options().backend(Backend::Staged)).unwrap();
        wal.append_durable(b"kept").unwrap();
        wal.close().unwrap();
        let refused = {
            let _btrfs = FakeFileSystem::set(BTRFS);
            Wal::open(&dir, options().backend(Backend::Mmap)).unwrap_err()
        };
        let Error::Unsupported { reason } = &refused else {
            panic!("refused with {refused:?}, not Unsupported");
        };
        for part in [
            "mmap backend",
            "btrfs",
            "SIGBUS",
            "Staged",
            &dir.display().to_string(),
        ] {
            assert!(reason.contains(part), "{reason:?} does not say {part:?}");
        }
        let wal = Wal::open(&dir, options()).unwrap();
        assert_eq!(wal.recovery_report().last_lsn, 1);
        assert_eq!(wal.read(1).unwrap(), b"kept");
        wal.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `IoUring` on a file system that checksums data (btrfs here, faked) is refused with
    /// `Unsupported` saying why, before the ring is set up, and `io_uring_fallback` opens it
    /// with `Staged`: its O_DIRECT writes hand the kernel a tail block other appenders may be
    /// copying into, and a checksum taken over other bytes than those written makes the block
    /// unreadable after a crash (found by review on 2026-12-05).
    #[test]
    fn io_uring_is_refused_on_a_file_system_that_checksums_data() {
        let dir = std::env::temp_dir().join(format!("rwal-cow-uring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = || {
            Options::new()
                .background_threads(false)
                .backend(Backend::IoUring)
        };
        let _btrfs = FakeFileSystem::set(BTRFS);
        let refused = Wal::open(&dir, options()).unwrap_err();
        let Error::Unsupported { reason } = &refused else {
            panic!("refused with {refused:?}, not Unsupported");
        };
        for part in ["io_uring backend", "btrfs", "checksums", "Staged"] {
            assert!(reason.contains(part), "{reason:?} does not say {part:?}");
        }
        let wal = Wal::open(&dir, options().io_uring_fallback(true)).unwrap();
        assert_eq!(wal.backend_name(), "staged");
        wal.append_durable(b"on btrfs").unwrap();
        wal.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
