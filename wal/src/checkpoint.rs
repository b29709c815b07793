//! Checkpoints, snapshots, pins, compaction and the reset to a snapshot: how the log stops
//! growing. The protocols, and what recovery does after a crash at each step, are in
//! `docs/design.md` ("Checkpoints, pins and compaction").

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::control::ControlState;
use crate::error::{Error, Result};
use crate::io::writeback::{WritebackPacer, ZERO_FILL_STEP_BYTES};
use crate::pins::{Pin, PinInfo};
use crate::recovery;
use crate::segment::{Segment, HEADER_REGION_BYTES};
use crate::snapshot::{self, SnapshotReader, SnapshotWriter};
use crate::wal::{Inner, Wal};
use crate::Lsn;

/// The latest durable checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The engine's state includes every record up to this LSN.
    pub lsn: Lsn,
    /// The epoch of the record at `lsn`.
    pub epoch: u64,
    /// The snapshot's length, if the engine gave one. `None` too if the snapshot file cannot
    /// be read now (out of file descriptors, a header damaged since it was written):
    /// [`open_latest_checkpoint`](crate::Wal::open_latest_checkpoint) says why.
    pub snapshot_bytes: Option<u64>,
}

/// What one compaction did, and what held it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segment files removed from the log.
    pub segments_removed: usize,
    /// Of those, how many were kept, zeroed, as prepared segments for reuse.
    pub segments_recycled: usize,
    /// Their bytes.
    pub bytes_removed: u64,
    /// The oldest LSN retained afterwards.
    pub first_lsn: Lsn,
    /// The lowest pin that kept segments the checkpoint would have let go: its name, its LSN,
    /// and the bytes of the segments kept from it up to the checkpoint (higher pins may keep
    /// some of them too).
    pub held_back_by: Option<(String, Lsn, u64)>,
    /// Capped pins released because they held back more than their cap.
    pub pins_invalidated: Vec<String>,
    /// Snapshot files of older checkpoints removed.
    pub snapshots_removed: usize,
    /// Files of compacted segments still on disk, each with the error that kept it there
    /// (removing or recycling a segment failed; they are counted in `segments_removed` and
    /// `bytes_removed` all the same). Their records are no longer part of the log, and their
    /// names are not segments' (`.removed.tmp`, `.recycled.tmp`, or an unused prepared
    /// segment); every compaction tries to remove them again, and the next open removes them.
    /// Also the snapshot files of older checkpoints that could not be removed (every
    /// compaction tries again; the segments went all the same).
    pub files_left_behind: Vec<String>,
}

/// How removing or recycling a compacted segment's file failed.
enum Cleanup {
    /// The file is left, under this name (not a segment's), for later compactions or recovery
    /// to remove.
    LeftBehind(String, Error),
    /// The failure poisons the log.
    Poisons(Error),
}

/// A checkpoint whose snapshot is being pushed in chunks (see [`Wal::checkpoint_writer`]).
pub struct CheckpointWriter {
    writer: SnapshotWriter,
    lsn: Lsn,
    epoch: u64,
    /// Holds the log from `lsn` on until the checkpoint is done (see
    /// `Inner::start_checkpoint`); released when the writer goes, finished or not.
    pin: CheckpointPin,
}

/// The pin a checkpoint writer holds, released on drop.
struct CheckpointPin {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for CheckpointPin {
    fn drop(&mut self) {
        // Not in a child forked from the opener (as `Pin`'s drop).
        if !self.inner.opened_in.is_current() {
            return;
        }
        self.inner.pins.release(self.id);
    }
}

impl std::fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointWriter")
            .field("lsn", &self.lsn)
            .finish()
    }
}

impl CheckpointWriter {
    /// Appends the next bytes of the snapshot. After a failed write (any error but
    /// [`Error::InvalidArgument`], which writes nothing) the writer takes nothing more and
    /// cannot finish: drop it (the checkpoint before it stays the latest) and start again.
    /// [`Error::Closed`] once its log is closed (or the log's failure, once poisoned).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        // A closed log's directory may be opened again, here or in another process, whose
        // recovery removes this writer's file as a leftover: writes after the close went into
        // a removed file, filling the disk unseen, and only `finish` said `Closed` (found by
        // review on 2026-12-08).
        self.pin.inner.group.check()?;
        self.writer.write(data)
    }

    /// Makes the checkpoint durable (exactly the announced length must have been written).
    pub fn finish(self) -> Result<()> {
        let CheckpointWriter {
            writer,
            lsn,
            epoch,
            pin,
        } = self;
        pin.inner.opened_in.check("a checkpoint's finish")?;
        pin.inner.finish_checkpoint(writer, lsn, epoch)
        // The pin goes when `pin` does, after the control file names the checkpoint.
    }
}

/// A snapshot that another copy of the log sends (a replica's leader), written to a file of
/// its own as its bytes arrive, for [`Wal::reset_to_received`]: a snapshot of any size is
/// received with no more memory than the caller's chunk. Nothing names the file until the
/// reset; dropping this removes it (and the next open removes one a crash left behind). Made
/// by [`Wal::receive_snapshot`].
pub struct ReceivedSnapshot {
    writer: SnapshotWriter,
}

impl std::fmt::Debug for ReceivedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedSnapshot")
            .field("lsn", &self.lsn())
            .field("epoch", &self.epoch())
            .field("received", &self.received())
            .field("len", &self.len())
            .finish()
    }
}

impl ReceivedSnapshot {
    /// Appends the next bytes. More than the announced length is refused
    /// ([`Error::InvalidArgument`], nothing written). After any other error (a full disk) the
    /// snapshot takes nothing more and cannot be reset to: drop it.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.writer.write(data)
    }

    /// The LSN the snapshot's state is as of.
    pub fn lsn(&self) -> Lsn {
        self.writer.lsn()
    }

    /// The epoch of the record at [`lsn`](ReceivedSnapshot::lsn).
    pub fn epoch(&self) -> u64 {
        self.writer.epoch()
    }

    /// The announced length in bytes.
    pub fn len(&self) -> u64 {
        self.writer.body_bytes()
    }

    /// Whether the announced length is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes written so far.
    pub fn received(&self) -> u64 {
        self.writer.written()
    }

    /// Whether every announced byte has been written.
    pub fn is_complete(&self) -> bool {
        self.received() == self.len()
    }

    /// CRC32C of the bytes written so far (what a sender's running checksum is compared
    /// with).
    pub fn crc(&self) -> u32 {
        self.writer.crc()
    }
}

impl Wal {
    /// Declares that the engine's state up to `lsn` is safe elsewhere, with an optional snapshot
    /// of that state. Durable when it returns: the snapshot is written, synced, renamed, the
    /// directory synced, then the control file updated. `lsn` must be at least 1, durable, and
    /// not below the latest checkpoint (`InvalidArgument` otherwise).
    pub fn checkpoint(&self, lsn: Lsn, snapshot: Option<&[u8]>) -> Result<()> {
        self.inner.opened_in.check("checkpoint")?;
        let bytes = snapshot.unwrap_or(&[]);
        self.inner
            .checkpoint(lsn, snapshot.is_some(), bytes.len() as u64, &mut &bytes[..])
    }

    /// Like [`checkpoint`](Wal::checkpoint), with a snapshot of `len` bytes streamed from
    /// `source` in chunks, never held whole in memory.
    pub fn checkpoint_from(
        &self,
        lsn: Lsn,
        len: u64,
        source: &mut dyn std::io::Read,
    ) -> Result<()> {
        self.inner.opened_in.check("checkpoint_from")?;
        self.inner.checkpoint(lsn, true, len, source)
    }

    /// Starts a checkpoint at `lsn` whose snapshot of `len` bytes the caller pushes in chunks
    /// ([`CheckpointWriter::write`]); it is durable when [`CheckpointWriter::finish`] returns.
    /// Dropping the writer unfinished abandons it and removes its partial file (recovery
    /// removes one a crash left behind).
    pub fn checkpoint_writer(&self, lsn: Lsn, len: u64) -> Result<CheckpointWriter> {
        self.inner.opened_in.check("checkpoint_writer")?;
        let (epoch, id) = self.inner.start_checkpoint(lsn)?;
        let pin = CheckpointPin {
            inner: self.inner.clone(),
            id,
        };
        let writer = SnapshotWriter::create(&self.inner.dir, lsn, epoch, true, len)?;
        Ok(CheckpointWriter {
            writer,
            lsn,
            epoch,
            pin,
        })
    }

    /// The latest durable checkpoint, or `None` if there is none yet.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        let control = self.inner.control.lock();
        let state = control.state();
        let (lsn, epoch) = state.checkpoint?;
        let snapshot_bytes = self.inner.snapshot_bytes((lsn, epoch));
        Some(Checkpoint {
            lsn,
            epoch,
            snapshot_bytes,
        })
    }

    /// Opens the latest checkpoint's snapshot for streaming (`std::io::Read`; the checksum is
    /// checked at its end). `None` if there is no checkpoint or it has no snapshot. While the
    /// reader lives, the snapshot stays readable even if a newer checkpoint replaces it.
    pub fn open_snapshot(&self) -> Result<Option<SnapshotReader>> {
        Ok(self
            .open_latest_checkpoint()?
            .and_then(|(_, snapshot)| snapshot))
    }

    /// The latest checkpoint and its snapshot opened for streaming (`None` if it has none),
    /// taken together: with [`latest_checkpoint`](Wal::latest_checkpoint) and
    /// [`open_snapshot`](Wal::open_snapshot) called one after the other, a checkpoint taken in
    /// between would pair one checkpoint's LSN with another's snapshot. `None` if there is no
    /// checkpoint yet.
    pub fn open_latest_checkpoint(&self) -> Result<Option<(Checkpoint, Option<SnapshotReader>)>> {
        self.inner.opened_in.check("open_latest_checkpoint")?;
        // Held while the file is opened: a newer checkpoint removes this one's snapshot only
        // after the control file names the newer one, which takes this lock.
        let control = self.inner.control.lock();
        let Some((lsn, epoch)) = control.state().checkpoint else {
            return Ok(None);
        };
        let (header, file) = snapshot::open(self.inner.dir.as_ref(), (lsn, epoch))?;
        drop(control);
        let snapshot = header.has_snapshot.then(|| {
            let path = self.inner.dir.path().join(snapshot::file_name(lsn));
            SnapshotReader::new(header, file, path)
        });
        let checkpoint = Checkpoint {
            lsn,
            epoch,
            snapshot_bytes: snapshot.as_ref().map(SnapshotReader::len),
        };
        Ok(Some((checkpoint, snapshot)))
    }

    /// Pins the log from `lsn` on: nothing from `lsn` is compacted while the pin lives.
    /// [`Error::Compacted`] if `lsn` is gone already; [`Error::Closed`] once the log is closed.
    pub fn pin(&self, name: &str, lsn: Lsn) -> Result<Pin> {
        Pin::new(self.inner.clone(), name, lsn, None)
    }

    /// A pin that the compactor releases (making its next `move_to` fail with
    /// [`Error::PinInvalidated`]) once it holds back more than `cap_bytes` of segments.
    pub fn pin_with_cap(&self, name: &str, lsn: Lsn, cap_bytes: u64) -> Result<Pin> {
        Pin::new(self.inner.clone(), name, lsn, Some(cap_bytes))
    }

    /// Every live pin, readers' included.
    pub fn pins(&self) -> Vec<PinInfo> {
        self.inner.pins.list()
    }

    /// Removes every segment wholly below both the latest checkpoint and every pin, and the
    /// snapshots of older checkpoints. Returns what it did and what held it back. Without a
    /// checkpoint nothing is ever removed.
    pub fn compact_now(&self) -> Result<CompactionReport> {
        self.inner.opened_in.check("compact_now")?;
        self.inner.compact()
    }

    /// Durably replaces the whole log with "empty, continuing at `lsn + 1`", the state being
    /// `snapshot` (the engine's state at `lsn`, written in `epoch`): what a replica that is sent
    /// a snapshot needs. A crash at any step leaves either the old log or the new one. Refused
    /// with [`Error::Pinned`] while a reader or pin lives, and with [`Error::InvalidArgument`]
    /// for an `lsn` of 0, at or past [`segment::LSN_MAX`](crate::segment::LSN_MAX), or equal
    /// to the latest checkpoint's (the new snapshot would replace the one the log names before
    /// the log moves; to keep that checkpoint's state, `truncate_after(lsn)` does it).
    ///
    /// Every record written is synced first, as a truncation syncs them. A `commit` waiting for
    /// an LSN at or below `lsn` returns `Ok` once the reset is done: the LSN is durable as part
    /// of the snapshot, not as that record (what raft wants of a replica's log; a caller who
    /// needs its own bytes kept must not reset over them). A failure of that sync poisons the
    /// log, as any failed sync does.
    pub fn reset_to_snapshot(&self, lsn: Lsn, epoch: u64, snapshot: &[u8]) -> Result<()> {
        self.inner.opened_in.check("reset_to_snapshot")?;
        self.inner.reset(
            lsn,
            epoch,
            ResetTo::Source(snapshot.len() as u64, &mut &snapshot[..]),
        )
    }

    /// Starts receiving a snapshot of `len` bytes, the state as of `lsn` (written in
    /// `epoch`), for a later [`reset_to_received`](Wal::reset_to_received). Refused with
    /// [`Error::InvalidArgument`] for an `lsn` the reset would refuse (0, or at or past
    /// [`segment::LSN_MAX`](crate::segment::LSN_MAX)), and with [`Error::NoSpace`] when the
    /// file system has less room than the snapshot and one of the log's segments take (where
    /// the system says: the check is skipped where it cannot tell); the log is not looked at
    /// otherwise, and goes on as before while the bytes arrive. The check is a look at one
    /// moment: other writers may still fill the disk while the bytes arrive.
    pub fn receive_snapshot(&self, lsn: Lsn, epoch: u64, len: u64) -> Result<ReceivedSnapshot> {
        self.inner.opened_in.check("receive_snapshot")?;
        check_reset_lsn(lsn)?;
        self.inner.group.check()?;
        // The file is sparse: without room for all of it, the disk would fill part-way
        // through (and every other writer on it fail), the stream be dropped, and the sender
        // start again, filling it again. Room for the log's next segment is kept too. Only a
        // file system that says how full it is is checked: one that cannot tell (or whose
        // `fstatvfs` fails: a sandbox's filter) is written to as before.
        let path = self.inner.dir.path();
        let available = self.inner.dir.available_bytes().ok().flatten();
        let needed = len
            .saturating_add(snapshot::BODY_OFFSET)
            .saturating_add(self.inner.options.segment_bytes);
        if available.is_some_and(|free| free < needed) {
            return Err(Error::NoSpace {
                op: "receive a snapshot into",
                path: path.to_path_buf(),
                reason: "less space is free than the snapshot's length and one segment \
                         (checked before its first byte is written)",
            });
        }
        let writer = SnapshotWriter::create(&self.inner.dir, lsn, epoch, true, len)?;
        Ok(ReceivedSnapshot { writer })
    }

    /// [`reset_to_snapshot`](Wal::reset_to_snapshot) to a snapshot received whole: its file
    /// becomes the checkpoint's snapshot (synced and renamed, not copied). Refused, with the
    /// file removed, as `reset_to_snapshot` refuses, and with [`Error::InvalidArgument`] for
    /// a snapshot not received whole or received by another log.
    pub fn reset_to_received(&self, snapshot: ReceivedSnapshot) -> Result<()> {
        self.inner.opened_in.check("reset_to_received")?;
        if !snapshot.writer.is_in(&self.inner.dir) {
            return Err(Error::invalid(
                "snapshot",
                "it was received by another log (its file is in that log's directory)",
            ));
        }
        if !snapshot.is_complete() {
            return Err(Error::invalid(
                "snapshot",
                format!(
                    "{} of its {} bytes received: a reset needs them all",
                    snapshot.received(),
                    snapshot.len()
                ),
            ));
        }
        let (lsn, epoch) = (snapshot.lsn(), snapshot.epoch());
        self.inner
            .reset(lsn, epoch, ResetTo::Written(snapshot.writer))
    }
}

/// What a reset replaces the log with.
pub(crate) enum ResetTo<'a> {
    /// The latest checkpoint, whose snapshot is in place (a reopen finishing a reset).
    LatestCheckpoint,
    /// A new snapshot of this many bytes, read from the source.
    Source(u64, &'a mut dyn std::io::Read),
    /// A new snapshot already written, to be finished (synced and named).
    Written(SnapshotWriter),
}

/// Refuses an LSN a reset cannot move the log to.
fn check_reset_lsn(lsn: Lsn) -> Result<()> {
    if lsn == 0 {
        // As for a checkpoint: the control file would read it back as none.
        return Err(Error::invalid(
            "lsn",
            "a snapshot at LSN 0 covers no record (LSNs start at 1)",
        ));
    }
    if lsn >= crate::segment::LSN_MAX {
        return Err(Error::invalid(
            "lsn",
            format!(
                "{lsn} is past the largest LSN a log takes ({}): its segments' headers \
                 would not be read back",
                crate::segment::LSN_MAX
            ),
        ));
    }
    Ok(())
}

impl Inner {
    fn snapshot_bytes(&self, checkpoint: (Lsn, u64)) -> Option<u64> {
        let (header, _) = snapshot::open(self.dir.as_ref(), checkpoint).ok()?;
        header.has_snapshot.then_some(header.body_bytes)
    }

    /// The epoch of record `lsn` (or of the record before the first retained one).
    pub(crate) fn epoch_of(&self, lsn: Lsn, state: &ControlState) -> Result<u64> {
        let _gate = self.cut_gate.read();
        self.epoch_of_under_gate(lsn, state)
    }

    /// [`epoch_of`](Inner::epoch_of) for a caller that holds the cut gate.
    pub(crate) fn epoch_of_under_gate(&self, lsn: Lsn, state: &ControlState) -> Result<u64> {
        if lsn.checked_add(1) == Some(state.first_lsn) || lsn == 0 {
            return Ok(if lsn == 0 { 0 } else { state.first_epoch });
        }
        let (segment, offset) = self.locate(lsn)?;
        Ok(self.decode_at(&segment, offset, lsn)?.epoch)
    }

    fn checkpoint(
        &self,
        lsn: Lsn,
        has_snapshot: bool,
        len: u64,
        source: &mut dyn std::io::Read,
    ) -> Result<()> {
        let (epoch, pin_id) = self.start_checkpoint(lsn)?;
        // Released however this ends, a panic of the caller's `source` included: a pin left
        // behind would hold every later compaction, reset and cut below it for good.
        let _pin = crate::pins::Released(&self.pins, pin_id);
        // 1-2: the snapshot file, durable under its final name, before anything points at it.
        self.fill_snapshot(lsn, epoch, has_snapshot, len, source)
            .and_then(|writer| self.finish_checkpoint(writer, lsn, epoch))
    }

    /// A snapshot file for checkpoint `lsn` holding `len` bytes read from `source`, not yet
    /// finished.
    fn fill_snapshot(
        &self,
        lsn: Lsn,
        epoch: u64,
        has_snapshot: bool,
        len: u64,
        source: &mut dyn std::io::Read,
    ) -> Result<SnapshotWriter> {
        let mut writer = SnapshotWriter::create(&self.dir, lsn, epoch, has_snapshot, len)?;
        let mut chunk = vec![0u8; snapshot::CHUNK_BYTES];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            source
                .read_exact(&mut chunk[..n])
                .map_err(|e| Error::io("read snapshot source", self.dir.path(), e))?;
            writer.write(&chunk[..n])?;
            left -= n as u64;
        }
        Ok(writer)
    }

    /// Starts a checkpoint at `lsn`: pins the log from `lsn` on, then checks that a checkpoint
    /// may be taken there and finds the epoch. Returns the epoch and the pin, which the caller
    /// releases once the checkpoint is finished or abandoned. The pin is what keeps the log as
    /// the snapshot describes it while the snapshot is written (which may take as long as the
    /// engine pushes bytes): a truncation below it and a reset are refused (`Pinned`), and
    /// compaction stops before it. Taken before the checks, it covers them too: a cut that
    /// checked the pins before it was taken is finished before `epoch_of` reads (the cut holds
    /// the gate), and the checks then see the shorter log.
    pub(crate) fn start_checkpoint(&self, lsn: Lsn) -> Result<(u64, u64)> {
        // Registered under the cut gate, which a truncation holds from its look at the pins to
        // the end of the cut: it either sees this pin (and refuses a cut below `lsn`), or is
        // over, and the checks below see the log it left.
        let pin = {
            let _gate = self.cut_gate.read();
            self.pins
                .register("checkpoint", lsn, None, crate::pins::Holder::Checkpoint)
        };
        self.checkpoint_epoch(lsn)
            .map(|epoch| (epoch, pin.id))
            .inspect_err(|_| self.pins.release(pin.id))
    }

    /// The epoch for a checkpoint at `lsn`, after checking that one may be taken there.
    fn checkpoint_epoch(&self, lsn: Lsn) -> Result<u64> {
        self.group.check()?;
        if lsn == 0 {
            // The control file's "no checkpoint": one at 0 would be forgotten at the next open,
            // and its snapshot removed as a file nothing names.
            return Err(Error::invalid(
                "lsn",
                "a checkpoint at LSN 0 covers no record (LSNs start at 1)",
            ));
        }
        let durable = self.group.durable_lsn();
        if lsn > durable {
            return Err(Error::invalid(
                "lsn",
                format!("checkpoint at {lsn} is above the durable LSN {durable}"),
            ));
        }
        let state = self.control.lock().state().clone();
        if let Some((latest, _)) = state.checkpoint {
            if lsn < latest {
                return Err(Error::invalid(
                    "lsn",
                    format!("checkpoint at {lsn} is below the latest checkpoint {latest}"),
                ));
            }
        }
        if lsn + 1 < state.first_lsn {
            return Err(Error::Compacted {
                lsn,
                first_retained: state.first_lsn,
            });
        }
        self.epoch_of(lsn, &state)
    }

    /// Steps 2-4 of a checkpoint: the snapshot made durable under its name, the control file
    /// pointing at it, older snapshots removed. One at a time with compactions and resets.
    pub(crate) fn finish_checkpoint(
        &self,
        writer: SnapshotWriter,
        lsn: Lsn,
        epoch: u64,
    ) -> Result<()> {
        let _serial = self.checkpoint_lock.lock();
        // Checked under the lock that `close` takes to release the directory: a writer that
        // outlived its log must not touch a directory another process may own by now.
        self.group.check()?;
        // Checked before the snapshot is renamed into place (no other checkpoint or reset
        // can move the latest meanwhile: they take `checkpoint_lock`): refused, the writer
        // drops and removes its temporary file. Checked after, the stale snapshot stayed under
        // its final name until the next checkpoint, compaction or open.
        if self
            .control
            .lock()
            .state()
            .checkpoint
            .is_some_and(|(latest, _)| latest > lsn)
        {
            return Err(Error::invalid(
                "lsn",
                "a newer checkpoint was taken meanwhile",
            ));
        }
        writer.finish(|e| self.group.poison(e))?;
        #[cfg(test)]
        crate::test_hooks::hook("finish_checkpoint: the control lock is taken next", self);
        let mut control = self.control.lock();
        // Checked again under the lock, as `update_control` does: a poisoned log writes nothing
        // more to the control file (a truncation may have failed since, declaring its cut in
        // the slot this write would go to). The snapshot, named by nothing, goes at the next
        // open.
        self.group.check()?;
        let mut state = control.state().clone();
        state.checkpoint = Some((lsn, epoch));
        state.durable_lsn = state.durable_lsn.max(self.group.durable_lsn());
        control
            .write(state, self.dir.path())
            .map_err(|e| self.group.poison(e))?;
        drop(control);
        // The checkpoint is in place, durably: older snapshots that cannot be removed now are
        // left to the next compaction, which tries again and reports them. A directory sync
        // that fails after the removals poisons the log (as every failed sync does), but does
        // not undo the checkpoint: it is reported made, and the next call meets the poison.
        // Until 2026-12-07 it returned the error, and a caller took a checkpoint that a
        // reopen shows for one that failed (found by review).
        let _poisoned_if_failed = self.remove_old_snapshots(lsn, &mut Vec::new());
        Ok(())
    }

    /// Removes the snapshot files of checkpoints older than `keep`; returns how many. A file
    /// that cannot be removed (or a directory that cannot be listed) is added to `left`, with
    /// the error, and the rest goes on: it held up every compaction before (2026-12-02), and
    /// the log grew without bound. Only a failed directory sync fails this (it poisons).
    pub(crate) fn remove_old_snapshots(&self, keep: Lsn, left: &mut Vec<String>) -> Result<usize> {
        self.remove_snapshots(|lsn| lsn < keep, left)
    }

    /// Removes the snapshot files whose LSN `doomed` picks, as `remove_old_snapshots` does.
    /// Called under `checkpoint_lock`, which a checkpoint holds from the rename of its snapshot
    /// to the control file naming it: no file picked can be one about to be named.
    fn remove_snapshots(
        &self,
        doomed: impl Fn(Lsn) -> bool,
        left: &mut Vec<String>,
    ) -> Result<usize> {
        let names = match self.dir.list() {
            Ok(names) => names,
            Err(e) => {
                left.push(Error::io("list", self.dir.path(), e).to_string());
                return Ok(0);
            }
        };
        let mut removed = 0;
        for name in names {
            if snapshot::parse_file_name(&name).is_some_and(&doomed) {
                match self.dir.remove(&name) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => left.push(format!(
                        "{name}: {}",
                        Error::io("remove", self.dir.path().join(&name), e)
                    )),
                }
            }
        }
        if removed > 0 {
            self.dir.sync().map_err(|e| {
                self.group
                    .poison(Error::io("fsync directory", self.dir.path(), e))
            })?;
        }
        Ok(removed)
    }

    pub(crate) fn compact(&self) -> Result<CompactionReport> {
        let _serial = self.checkpoint_lock.lock();
        self.group.check()?;
        let mut report = CompactionReport {
            first_lsn: self.first_lsn.load(Ordering::Acquire),
            ..Default::default()
        };
        self.remove_left_behind(&mut report);
        #[cfg(test)]
        crate::test_hooks::hook("compact: the control lock is taken next", self);
        let mut control = self.control.lock();
        // Again under the lock, as `update_control` does: a poisoned log writes nothing more.
        self.group.check()?;
        let Some((checkpoint, _)) = control.state().checkpoint else {
            return Ok(report);
        };
        let sealed: Vec<Arc<Segment>> = self
            .segments
            .read()
            .values()
            .filter(|s| s.sealed_last_lsn().is_some())
            .cloned()
            .collect();
        let removable = |limit: Lsn| -> Vec<Arc<Segment>> {
            let mut out = Vec::new();
            for segment in &sealed {
                match segment.sealed_last_lsn() {
                    Some(last) if last < limit => out.push(segment.clone()),
                    _ => break,
                }
            }
            out
        };
        let by_checkpoint = removable(checkpoint + 1);
        // Capped pins that hold back more than their cap are released. A pin is charged for
        // what it alone keeps: the segments from it up to the next pin above that stays
        // (uncapped, or within its cap), or the checkpoint; so the pins are decided from the
        // highest down. Charging up to the checkpoint released a capped pin for segments a
        // higher pin kept anyway; charging up to the next pin, whatever becomes of it, kept
        // two capped pins at one LSN forever (each charged nothing). An uncapped pin always
        // stays: the capped pins at or above the lowest one keep nothing it does not, and
        // releasing them would gain nothing. So with a capped pin that stays below: a pin
        // released above the lowest one that stays is kept after all (found by review on
        // 2026-12-07: its holder, a follower say, lost its pin and the log freed nothing).
        let mut limit = checkpoint + 1;
        let segment_bytes_between = |from: Lsn, to: Lsn| -> u64 {
            by_checkpoint
                .iter()
                .filter(|s| {
                    s.sealed_last_lsn()
                        .is_some_and(|last| last >= from && last < to)
                })
                .map(|s| s.header.segment_bytes)
                .sum()
        };
        let mut staying: Option<String> = None;
        // Invalidated only once nothing can fail before the removal they make room for: a
        // compaction that failed after releasing them (the epoch at the new first LSN
        // unreadable) cost their holders their pins for nothing (found by review on
        // 2026-12-07). Pins are registered and moved back under the control lock, held
        // throughout; one moved forward meanwhile (under the cut gate only) is released all
        // the same, as it was when the release came first.
        let mut doomed_pins = Vec::new();
        let pins = self.pins.below_highest_first(limit);
        if let Some((_, name, pinned, _)) = pins.iter().rev().find(|(_, _, _, cap)| cap.is_none()) {
            limit = *pinned;
            staying = Some(name.clone());
        }
        for (id, name, pinned, cap) in pins {
            if pinned >= limit {
                continue;
            }
            match cap {
                Some(cap) if segment_bytes_between(pinned, limit) > cap => {
                    doomed_pins.push((id, name, pinned));
                }
                _ => {
                    limit = pinned;
                    staying = Some(name);
                }
            }
        }
        doomed_pins.retain(|(_, _, pinned)| *pinned < limit);
        report.pins_invalidated = doomed_pins
            .iter()
            .map(|(_, name, _)| name.clone())
            .collect();
        if let Some(name) = staying {
            let held = segment_bytes_between(limit, checkpoint + 1);
            report.held_back_by = Some((name, limit, held));
        }
        let gone = removable(limit.min(checkpoint + 1));
        report.snapshots_removed =
            self.remove_old_snapshots(checkpoint, &mut report.files_left_behind)?;
        let invalidate_doomed = || {
            for (id, _, _) in &doomed_pins {
                self.pins.invalidate(*id);
            }
        };
        let Some(last_gone) = gone.last() else {
            invalidate_doomed();
            return Ok(report);
        };
        let new_first = last_gone.sealed_last_lsn().expect("sealed") + 1;
        // Read without the cut gate (the control lock is held, and truncations take the gate
        // before it): records at or below the checkpoint are never cut, so none can change.
        // The record before the new first one may lie in an earlier removed segment (the last
        // one removed may hold none), still in the map; or before the log's first LSN.
        let first_epoch = self.epoch_before_first(new_first, control.state())?;
        invalidate_doomed();
        // The control file moves first: a crash after it leaves files wholly below the first
        // LSN, which recovery removes; a crash before it leaves the log as it was.
        let mut state = control.state().clone();
        state.first_lsn = new_first;
        state.first_epoch = first_epoch;
        state.durable_lsn = state.durable_lsn.max(self.group.durable_lsn());
        control
            .write(state, self.dir.path())
            .map_err(|e| self.group.poison(e))?;
        self.first_lsn.store(new_first, Ordering::Release);
        {
            let mut map = self.segments.write();
            for segment in &gone {
                map.remove(&(segment.first_lsn(), segment.sequence()));
            }
        }
        // New readers now find the new first LSN (they check it under this lock) and no
        // reader stands in a removed segment: removing or recycling the files (zeroing them
        // takes a while) need not hold them up. The checkpoint lock stays held.
        drop(control);
        report.segments_removed = gone.len();
        // The last other handles this holds on the removed segments: each is then unmapped
        // when the loop below lets go of it.
        drop(by_checkpoint);
        drop(sealed);
        for segment in gone {
            let name = segment.name();
            let len = segment.header.segment_bytes;
            // Unmapped before its file is removed or zeroed for reuse: a recycled file's cached
            // pages can then be dropped (`recycle`).
            drop(segment);
            let recycle = len == self.options.segment_bytes
                && self.prepared.lock().len() < self.options.recycled_segments_max;
            let outcome = if recycle {
                self.recycle(&name, len)
            } else {
                self.remove_segment_file(&name).map(|()| false)
            };
            report.bytes_removed += len;
            match outcome {
                Ok(recycled) => report.segments_recycled += usize::from(recycled),
                // The control file no longer names the segment, and the file is under a name
                // recovery never reads as a segment: housekeeping undone, not a log in doubt.
                Err(Cleanup::LeftBehind(file, error)) => {
                    report.files_left_behind.push(format!("{file}: {error}"));
                    self.left_behind.lock().push(file);
                }
                Err(Cleanup::Poisons(error)) => return Err(self.group.poison(error)),
            }
        }
        self.dir.sync().map_err(|e| {
            self.group
                .poison(Error::io("fsync directory", self.dir.path(), e))
        })?;
        report.first_lsn = new_first;
        Ok(report)
    }

    /// Renames a removed segment for reuse as the next prepared one and zero-fills it, so that
    /// none of its old bytes can be read as a record (its next use gets a new salt as well). A
    /// crash half way leaves a `.tmp` file, which recovery removes, or a clean prepared segment:
    /// the rename to the `.tmp` name is made durable before a byte is zeroed. Until 2026-12-05
    /// it was not, and a crash during the zero-fill could lose the rename and keep zeroed pages:
    /// the segment's name with its header zeroed over old records, which `SkipCorrupted` set
    /// aside as damage and `AbsoluteConsistency` could refuse.
    ///
    /// The sequence number is taken only at the end, under the prepared-segment lock, and the
    /// segment is queued in the same critical section: recovery orders segments by sequence, so
    /// the queue (which rolls take from the front) must hold them in sequence order. Taken at
    /// the start, a segment prepared by an append during the zero-fill got the next number but
    /// was used first, and recovery then found LSNs missing.
    ///
    /// Returns whether the file was recycled (it is deleted instead if it cannot be renamed).
    /// A failure later leaves the file under its `.tmp` name, or, if only the reopen under its
    /// new name failed, as an unused prepared segment that nobody queued (all zero, without a
    /// header: recovery skips it wherever it lies and keeps it only after the log's end).
    fn recycle(&self, name: &str, len: u64) -> std::result::Result<bool, Cleanup> {
        let temp = format!("{name}.recycled.tmp");
        if self.dir.rename(name, &temp).is_err() {
            return self.remove_segment_file(name).map(|()| false);
        }
        self.dir
            .sync()
            .map_err(|e| Cleanup::Poisons(Error::io("fsync directory", self.dir.path(), e)))?;
        #[cfg(test)]
        crate::test_hooks::hook("recycle: zero-filling", self);
        let left_behind = |e| Cleanup::LeftBehind(temp.clone(), e);
        self.zero_for_reuse(&temp, len).map_err(left_behind)?;
        let mut prepared = self.prepared.lock();
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let target = crate::segment::file_name(sequence);
        let path = self.dir.path().join(&target);
        self.dir
            .rename(&temp, &target)
            .map_err(|e| left_behind(Error::io("rename", &path, e)))?;
        // Durable under its new name before a roll may write records into it. A failed
        // directory sync poisons the log, as everywhere else.
        self.dir
            .sync()
            .map_err(|e| Cleanup::Poisons(Error::io("fsync directory", self.dir.path(), e)))?;
        let file = match self.dir.open(&target) {
            Ok(file) => file,
            Err(e) => {
                let error = Error::io("open", &path, e);
                // Deleted instead of recycled if it can be.
                return match self.dir.remove(&target) {
                    Ok(()) => Ok(false),
                    Err(_) => Err(Cleanup::LeftBehind(target.clone(), error)),
                };
            }
        };
        prepared.push_back(crate::segment::PreparedSegment { sequence, file });
        Ok(true)
    }

    /// Removes the file of a compacted segment. If it cannot be removed, it is renamed out of
    /// the way (`<name>.removed.tmp`, which recovery removes) and left behind: under its own
    /// name it would still be read as a segment by recovery, and after later compactions left a
    /// gap of removed segments behind it, a crash that tore the newest segment's header would
    /// make recovery take it for the log's end and append after its old records. If it cannot
    /// be renamed either, the log is poisoned, as before files could be left behind.
    fn remove_segment_file(&self, name: &str) -> std::result::Result<(), Cleanup> {
        let path = self.dir.path().join(name);
        let e = match self.dir.remove(name) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        let error = Error::io("remove", &path, e);
        let aside = format!("{name}.removed.tmp");
        match self.dir.rename(name, &aside) {
            Ok(()) => Err(Cleanup::LeftBehind(aside, error)),
            Err(_) => Err(Cleanup::Poisons(error)),
        }
    }

    /// Zero-fills the removed segment `temp` (`len` bytes) and makes that durable.
    fn zero_for_reuse(&self, temp: &str, len: u64) -> Result<()> {
        let temp_path = self.dir.path().join(temp);
        // Zeroed with plain writes, whatever the backend: nothing is staged in memory for it.
        let file = self
            .dir
            .open_plain(temp)
            .map_err(|e| Error::io("open", &temp_path, e))?;
        // Its pages are clean (a removed segment is durable). Dropped, the zero-fill caches the
        // file afresh in the backend's chunks: pages read back after eviction may be cached in
        // large folios, which commits through a mapping would write back whole.
        file.forget_cached_pages();
        let zeros = vec![0u8; self.dir.zero_fill_chunk()];
        // Written back as it goes, like a new segment's zero-fill, so that the sync below does
        // not hold the log's commits behind the whole segment (`io/writeback.rs`).
        let mut pacer = WritebackPacer::with_step(0, ZERO_FILL_STEP_BYTES);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            file.write_at(at, &[&zeros[..n]])
                .map_err(|e| Error::io("zero-fill", &temp_path, e))?;
            at += n as u64;
            pacer
                .wrote(at, |offset, len, how| {
                    file.write_back_range(offset, len, how)
                })
                .map_err(|e| Error::io("write back", &temp_path, e))?;
        }
        file.sync()
            .map_err(|e| Error::io(file.sync_calls(), &temp_path, e))
    }

    /// Tries again to remove the files earlier compactions left behind; those that still fail
    /// stay listed, in the report too.
    fn remove_left_behind(&self, report: &mut CompactionReport) {
        let mut left = self.left_behind.lock();
        left.retain(|name| match self.dir.remove(name) {
            Ok(()) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                let error = Error::io("remove", self.dir.path().join(name), e);
                report.files_left_behind.push(format!("{name}: {error}"));
                true
            }
        });
    }

    /// The reset of [`reset_to_snapshot`](crate::Wal::reset_to_snapshot) and
    /// [`reset_to_received`](crate::Wal::reset_to_received), to the snapshot `snapshot` says:
    /// one read from a source, one already written to its temporary file, or that of the
    /// latest checkpoint, which must be at `lsn` and `epoch` (recovery's reset to it: its file
    /// is in place and durable, named by the control file).
    pub(crate) fn reset(&self, lsn: Lsn, epoch: u64, snapshot: ResetTo<'_>) -> Result<()> {
        check_reset_lsn(lsn)?;
        let _serial = self.checkpoint_lock.lock();
        self.group.check()?;
        let latest = self.control.lock().state().checkpoint;
        let snapshot_written = !matches!(snapshot, ResetTo::LatestCheckpoint);
        if snapshot_written && latest.is_some_and(|(checkpoint, _)| checkpoint == lsn) {
            // Step 1 would write the new snapshot over the one the control file names, before
            // step 2 names the new one: a crash between them would leave the old log with the
            // new state.
            return Err(Error::invalid(
                "lsn",
                format!(
                    "{lsn} is the latest checkpoint's LSN: a reset there would replace its \
                     snapshot before the log moves to the new one"
                ),
            ));
        }
        // A pin refuses the reset: looked at first, so that a snapshot is not written for
        // nothing (and again under the gate below, for a pin registered meanwhile).
        let refused_by_a_pin = || {
            self.pins
                .lowest_holding_off_cuts()
                .map(|(_, holder, pinned_lsn, _)| Error::Pinned {
                    op: "reset to a snapshot",
                    holder,
                    pinned_lsn,
                    cut_lsn: lsn,
                })
        };
        if let Some(refusal) = refused_by_a_pin() {
            return Err(refusal);
        }
        // 1: the snapshot file, written before the log is stopped: only the checkpoint lock is
        // held, which keeps compaction (it would remove a snapshot below the latest
        // checkpoint) away, and checkpoints from finishing (one started meanwhile holds a pin,
        // which refuses the reset below). Appends, commits and reads go on meanwhile (with
        // every lock held, they waited for the whole write and its syncs). Until the control
        // file changes the old log stands whole: a failure here (a full disk, a short source)
        // refuses the reset and changes nothing, but for a failed directory sync after the
        // rename, or a failed sync of the records below, which poison like any failed sync.
        let writer = match snapshot {
            ResetTo::LatestCheckpoint => None,
            ResetTo::Source(len, source) => {
                Some(self.fill_snapshot(lsn, epoch, true, len, source)?)
            }
            ResetTo::Written(writer) => Some(writer),
        };
        if let Some(writer) = writer {
            debug_assert_eq!((writer.lsn(), writer.epoch()), (lsn, epoch));
            writer.finish(|e| self.group.poison(e))?;
        }
        // The file written above, named by nothing while the log stays as it was.
        let unused_snapshot = || {
            if snapshot_written {
                let _ = self.dir.remove(&snapshot::file_name(lsn));
            }
        };
        let mut tail = self.tail.lock();
        let last = tail.next_lsn() - 1;
        // Every record synced first, as a truncation does (`docs/design.md` section 7.2, step
        // 3), though the reset drops them all: a committer that read the truncation count
        // before the reset may only look again after a later cut, which sets the LSN it
        // checks against to its own. Were its record never synced, it would be told `Ok` for
        // a record that was never durable (found by review on 2026-12-04).
        // (The commit waits for the copies in progress first.)
        let synced = if last > 0 { self.commit(last) } else { Ok(()) };
        if let Err(e) = synced {
            unused_snapshot();
            return Err(e);
        }
        let _frozen = match crate::wal::FrozenSyncs::freeze(self, "reset to a snapshot") {
            Ok(frozen) => frozen,
            Err(e) => {
                unused_snapshot();
                return Err(e);
            }
        };
        let gate = self.cut_gate.write();
        if let Some(refusal) = refused_by_a_pin() {
            drop(gate);
            self.group.thaw_unchanged();
            unused_snapshot();
            return Err(refusal);
        }
        #[cfg(test)]
        crate::test_hooks::hook("reset: the control lock is taken next", self);
        let mut control = self.control.lock();
        // Again under the control lock: another thread's failure since `freeze` checked the
        // log poisons it, and a poisoned log writes nothing more.
        if let Err(refused) = self.group.check() {
            drop(control);
            drop(gate);
            self.group.thaw_unchanged();
            unused_snapshot();
            return Err(refused);
        }
        if !snapshot_written {
            assert_eq!(
                control.state().checkpoint,
                Some((lsn, epoch)),
                "a reset in place is to the latest checkpoint"
            );
        }
        let outcome = (|| -> Result<Arc<Segment>> {
            let mut state = control.state().clone();
            state.first_lsn = lsn + 1;
            state.first_epoch = epoch;
            state.durable_lsn = lsn;
            state.checkpoint = Some((lsn, epoch));
            state.pending_cut = None;
            state.reset_pending = true;
            control.write(state.clone(), self.dir.path())?;
            #[cfg(test)]
            crate::test_hooks::hook("reset_to_snapshot: declared", self);
            let old: Vec<Arc<Segment>> = std::mem::take(&mut *self.segments.write())
                .into_values()
                .collect();
            // Held to the end: no segment may be prepared (with a lower sequence than the new
            // one's) between the drain and the new segment.
            let mut prepared_queue = self.prepared.lock();
            let prepared: Vec<_> = prepared_queue.drain(..).collect();
            for name in old.iter().map(|s| s.name()).chain(
                prepared
                    .iter()
                    .map(|p| crate::segment::file_name(p.sequence)),
            ) {
                self.dir
                    .remove(&name)
                    .map_err(|e| Error::io("remove", self.dir.path().join(&name), e))?;
            }
            self.dir
                .sync()
                .map_err(|e| Error::io("fsync directory", self.dir.path(), e))?;
            // Closed before the new segment is zero-filled: a removed file's blocks are freed
            // only with its last descriptor and mapping, and on a nearly full disk the new
            // segment needs the prepared one's (the active segment's stay held by the tail; no
            // reader holds one, since readers' pins refuse a reset).
            drop(prepared);
            drop(old);
            let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
            let segment = recovery::create_segment(
                self.dir.as_ref(),
                sequence,
                lsn + 1,
                self.options.segment_bytes,
            )?;
            state.reset_pending = false;
            control.write(state, self.dir.path())?;
            Ok(segment)
        })();
        match outcome {
            Ok(segment) => {
                self.segments
                    .write()
                    .insert((segment.first_lsn(), segment.sequence()), segment.clone());
                tail.reset(
                    lsn + 1,
                    segment.clone(),
                    HEADER_REGION_BYTES,
                    segment.header.segment_bytes,
                );
                self.next_lsn.store(lsn + 1, Ordering::Release);
                self.first_lsn.store(lsn + 1, Ordering::Release);
                // The log is replaced: its epoch is the snapshot's, as a reopen would find it
                // (a replica's discarded suffix may have held a higher one).
                self.epoch.store(epoch, Ordering::Release);
                self.group.reset_to(lsn);
                drop(gate);
                // Every snapshot but the reset's: one of a newer checkpoint (a reset may go
                // below it) is named by nothing now, and would stay until the next open.
                let _ = self.remove_snapshots(|other| other != lsn, &mut Vec::new());
                Ok(())
            }
            Err(e) => {
                let poisoned = self.group.poison(e);
                self.group.thaw_unchanged();
                Err(poisoned)
            }
        }
    }
}

impl Inner {
    /// The epoch of record `new_first - 1`, the one before a compaction's new first LSN. Where
    /// `SkipCorrupted` recovery skipped it as damaged, the epoch of the nearest readable record
    /// before it (epochs never decrease along the log: at most the skipped record's own), or
    /// failing that the log's first epoch. Until 2026-12-07 such a record failed every
    /// compaction past it with `NotFound` (found by review): with the damaged record the last
    /// of the oldest segment, the log could never be compacted again.
    fn epoch_before_first(
        &self,
        new_first: Lsn,
        state: &crate::control::ControlState,
    ) -> Result<u64> {
        let mut lsn = new_first - 1;
        while lsn >= state.first_lsn {
            match self
                .locate(lsn)
                .and_then(|(segment, offset)| self.decode_at(&segment, offset, lsn))
            {
                Ok(header) => return Ok(header.epoch),
                // Skipped by recovery: read as missing. (A record damaged under the open log
                // is `Corrupted`, and fails the compaction: nothing is removed over it.)
                Err(Error::NotFound { .. }) => lsn -= 1,
                Err(e) => return Err(e),
            }
        }
        Ok(state.first_epoch)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::test_hooks::at;
    use crate::{Backend, Options, RecoveryEvent, RecoveryMode, SimDisk, Wal};

    /// A crash while a compacted segment is zero-filled for reuse leaves it under its `.tmp`
    /// name, which recovery removes in every mode. The rename to that name used to become
    /// durable only after the zero-fill: a crash in between could keep zeroed pages under the
    /// segment's own name, a header gone over old records, which `SkipCorrupted` set aside as
    /// damage (found by review on 2026-12-05). Here the first page is zeroed durably at the
    /// start of the zero-fill, and the disk crashed there with eight seeds.
    #[test]
    fn a_segment_being_recycled_is_renamed_durably_before_it_is_zeroed() {
        let disk = SimDisk::new();
        let options = |mode| {
            Options::new()
                .backend(Backend::Simulated(disk.clone()))
                .segment_bytes(1 << 20)
                .background_threads(false)
                .recovery_mode(mode)
        };
        let wal = Wal::open("/sim", options(RecoveryMode::TolerateTornTail)).unwrap();
        // Three records a segment: the first segments end up wholly below the checkpoint.
        for i in 0..10u8 {
            wal.append(&vec![i + 1; 300 << 10]).unwrap();
        }
        wal.sync().unwrap();
        wal.checkpoint(8, Some(b"state at 8")).unwrap();
        let crashes = Rc::new(RefCell::new(Vec::new()));
        {
            let (disk, crashes) = (disk.clone(), crashes.clone());
            at("recycle: zero-filling", move |_| {
                assert_eq!(
                    disk.unsynced_directory_operations(),
                    0,
                    "the rename to the .tmp name is not durable: {:?}",
                    disk.file_names()
                );
                let temp = disk
                    .file_names()
                    .into_iter()
                    .find(|n| n.ends_with(".recycled.tmp"))
                    .expect("a segment being recycled");
                disk.zero_range(&temp, 0, 4096);
                crashes
                    .borrow_mut()
                    .extend((0..8).map(|seed| disk.crash(seed)));
            });
        }
        let report = wal.compact_now().unwrap();
        assert!(report.segments_removed >= 2, "{report:?}");
        assert_eq!(crashes.borrow().len(), 8, "no segment was recycled");
        drop(wal);
        for (seed, crashed) in crashes.borrow().iter().enumerate() {
            for mode in [
                RecoveryMode::SkipCorrupted,
                RecoveryMode::AbsoluteConsistency,
            ] {
                let options = Options::new()
                    .backend(Backend::Simulated(crashed.clone()))
                    .segment_bytes(1 << 20)
                    .background_threads(false)
                    .recovery_mode(mode);
                let wal = Wal::open("/sim", options)
                    .unwrap_or_else(|e| panic!("seed {seed}, {mode:?}: {e}"));
                let events = &wal.recovery_report().events;
                assert!(
                    !events
                        .iter()
                        .any(|e| matches!(e, RecoveryEvent::SegmentSetAside { .. })),
                    "seed {seed}, {mode:?}: {events:?}"
                );
                assert_eq!(wal.last_lsn(), 10, "seed {seed}, {mode:?}");
                assert_eq!(wal.read(10).unwrap(), vec![10; 300 << 10]);
            }
            assert!(
                !crashed.file_names().iter().any(|n| n.contains("damaged")),
                "seed {seed}: {:?}",
                crashed.file_names()
            );
        }
    }
}
