//! Checkpoints whose snapshot is written off the replica's thread.
//!
//! Writing and syncing an engine's state can take longer than an election timeout; on the
//! replica's thread it would stop heartbeats and cost the leadership. The replica checks the
//! LSN, pins the log and creates the snapshot's file ([`Replica::start_checkpoint`]); the caller
//! writes the membership part and the engine's bytes, and finishes, on its own thread: the
//! replica's thread writes nothing into the file.
//!
//! A checkpoint out holds a pin on the log, and a snapshot install (which replaces the whole log)
//! is refused while any pin lives. An install therefore abandons the checkpoints out
//! ([`CheckpointsOut::abandon_all`]): each fails at its next look, which comes after at most
//! [`WRITE_CHUNK`] bytes of the engine's state or before the finish, and the install waits
//! until they are gone. Their writers never wait for the replica, so it cannot wait forever,
//! and it waits for at most one chunk's write or one checkpoint's finish (its syncs, and the
//! log's checkpoint lock, which compaction holds too).
//!
//! [`Replica::start_checkpoint`]: crate::Replica

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use rwal_wal::{CheckpointWriter, Lsn};

use crate::error::{Error, Result};

/// Engine bytes written between two looks at whether an install abandoned the checkpoint.
pub(crate) const WRITE_CHUNK: usize = 1 << 20;

/// A checkpoint started by the replica whose engine bytes the holder writes.
#[derive(Debug)]
pub(crate) struct PendingCheckpoint {
    writer: CheckpointWriter,
    lsn: Lsn,
    /// The snapshot's first bytes (the membership), written before the engine's.
    head: Vec<u8>,
    /// Counted in [`CheckpointsOut`] until this goes, finished or not. Declared after `writer`:
    /// fields drop in order, so the pin and the temporary file are gone before an install
    /// waiting in [`CheckpointsOut::abandon_all`] sees the count fall.
    out: CheckpointOut,
}

impl PendingCheckpoint {
    /// A checkpoint whose snapshot starts with `head`, which the first `write` (or `finish`)
    /// writes before anything else.
    pub(crate) fn new(
        writer: CheckpointWriter,
        lsn: Lsn,
        head: Vec<u8>,
        out: &Arc<CheckpointsOut>,
    ) -> PendingCheckpoint {
        PendingCheckpoint {
            writer,
            lsn,
            head,
            out: CheckpointOut::count_in(out),
        }
    }

    /// Appends the next bytes of the engine's state; fails with
    /// [`Error::CheckpointAbandoned`] once an install abandoned the checkpoint.
    pub(crate) fn write(&mut self, engine_state: &[u8]) -> Result<()> {
        self.write_head()?;
        for chunk in engine_state.chunks(WRITE_CHUNK) {
            self.go_on()?;
            self.writer.write(chunk)?;
        }
        Ok(())
    }

    /// Makes the checkpoint durable (every announced byte must have been written).
    pub(crate) fn finish(mut self) -> Result<()> {
        self.write_head()?;
        self.go_on()?;
        Ok(self.writer.finish()?)
    }

    /// Writes the head, once.
    fn write_head(&mut self) -> Result<()> {
        if self.head.is_empty() {
            return Ok(());
        }
        self.go_on()?;
        self.writer.write(&self.head)?;
        self.head = Vec::new();
        Ok(())
    }

    fn go_on(&self) -> Result<()> {
        if self.out.0.abandoning() {
            return Err(Error::CheckpointAbandoned { lsn: self.lsn });
        }
        Ok(())
    }
}

/// How many [`PendingCheckpoint`]s are out, and whether an install is abandoning them.
#[derive(Debug, Default)]
pub(crate) struct CheckpointsOut {
    state: Mutex<OutState>,
    none_left: Condvar,
}

#[derive(Debug, Default)]
struct OutState {
    count: usize,
    abandoning: bool,
}

impl CheckpointsOut {
    /// Whether any checkpoint is out.
    pub(crate) fn any(&self) -> bool {
        self.state.lock().count > 0
    }

    /// Makes every checkpoint out fail at its next look and returns once none is out. Only the
    /// replica's thread starts checkpoints, and it is the one waiting here, so none starts
    /// meanwhile.
    pub(crate) fn abandon_all(&self) {
        let mut state = self.state.lock();
        state.abandoning = true;
        while state.count > 0 {
            self.none_left.wait(&mut state);
        }
        state.abandoning = false;
    }

    /// Whether an install is abandoning the checkpoints out.
    fn abandoning(&self) -> bool {
        self.state.lock().abandoning
    }
}

/// One count in [`CheckpointsOut`], given back on drop.
#[derive(Debug)]
struct CheckpointOut(Arc<CheckpointsOut>);

impl CheckpointOut {
    fn count_in(out: &Arc<CheckpointsOut>) -> CheckpointOut {
        out.state.lock().count += 1;
        CheckpointOut(out.clone())
    }
}

impl Drop for CheckpointOut {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.count -= 1;
        if state.count == 0 {
            self.0.none_left.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use rwal_wal::{Options, Wal};

    fn log(name: &str) -> (rwal_tests::TempDir, Arc<Wal>, Lsn) {
        let temp = rwal_tests::TempDir::new(name);
        let wal =
            Arc::new(Wal::open(temp.join("log"), Options::new().segment_bytes(1 << 20)).unwrap());
        let lsn = wal.append_durable(b"x").unwrap();
        (temp, wal, lsn)
    }

    /// Starts an install's abandonment on another thread; returns once it is under way. The
    /// thread returns the pins left when the abandonment ended.
    fn abandon_elsewhere(
        out: &Arc<CheckpointsOut>,
        wal: &Arc<Wal>,
    ) -> std::thread::JoinHandle<usize> {
        let installer = {
            let (out, wal) = (out.clone(), wal.clone());
            std::thread::spawn(move || {
                out.abandon_all();
                wal.pins().len()
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.abandoning() {
            assert!(Instant::now() < deadline, "the abandonment never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        installer
    }

    #[test]
    fn an_install_abandons_a_checkpoint_between_two_chunks_and_waits_for_its_pin() {
        let (temp, wal, lsn) = log("checkpoint-abandoned-writing");
        let out = Arc::new(CheckpointsOut::default());
        let total = 3 * WRITE_CHUNK as u64;
        let mut pending = PendingCheckpoint::new(
            wal.checkpoint_writer(lsn, total).unwrap(),
            lsn,
            Vec::new(),
            &out,
        );
        pending.write(&vec![1; WRITE_CHUNK]).unwrap();
        assert_eq!(wal.pins().len(), 1);

        let installer = abandon_elsewhere(&out, &wal);
        assert!(
            !installer.is_finished(),
            "the install went on past a checkpoint out"
        );
        match pending.write(&vec![2; 2 * WRITE_CHUNK]) {
            Err(Error::CheckpointAbandoned { lsn: at }) => assert_eq!(at, lsn),
            other => panic!("expected the checkpoint to be abandoned, got {other:?}"),
        }
        drop(pending);
        assert_eq!(
            installer.join().unwrap(),
            0,
            "a pin outlived the checkpoint"
        );
        assert!(wal.latest_checkpoint().is_none());
        let snapshot_files = || -> Vec<String> {
            std::fs::read_dir(temp.join("log"))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.starts_with("snapshot"))
                .collect()
        };
        assert_eq!(
            snapshot_files(),
            Vec::<String>::new(),
            "left by the abandoned checkpoint"
        );

        // The next checkpoint is not abandoned.
        assert!(!out.abandoning());
        let mut pending = PendingCheckpoint::new(
            wal.checkpoint_writer(lsn, total).unwrap(),
            lsn,
            Vec::new(),
            &out,
        );
        pending.write(&vec![3; total as usize]).unwrap();
        pending.finish().unwrap();
        assert_eq!(wal.latest_checkpoint().map(|c| c.lsn), Some(lsn));
        assert_eq!(snapshot_files().len(), 1, "{:?}", snapshot_files());
        assert!(!out.any());
    }

    #[test]
    fn the_head_is_written_once_before_the_engine_bytes_by_the_writer() {
        let (_temp, wal, lsn) = log("checkpoint-head");
        let out = Arc::new(CheckpointsOut::default());
        let writer = wal.checkpoint_writer(lsn, 6).unwrap();
        let mut pending = PendingCheckpoint::new(writer, lsn, b"head".to_vec(), &out);
        pending.write(b"a").unwrap();
        pending.write(b"b").unwrap();
        pending.finish().unwrap();
        let blob = crate::storage::read_snapshot_blob(&wal).unwrap().unwrap();
        assert_eq!(blob, b"headab");

        // With no engine bytes, `finish` writes the head.
        let lsn = wal.append_durable(b"y").unwrap();
        let writer = wal.checkpoint_writer(lsn, 4).unwrap();
        PendingCheckpoint::new(writer, lsn, b"only".to_vec(), &out)
            .finish()
            .unwrap();
        let blob = crate::storage::read_snapshot_blob(&wal).unwrap().unwrap();
        assert_eq!(blob, b"only");
    }

    #[test]
    fn an_abandoned_checkpoint_is_not_finished_even_when_every_byte_is_written() {
        let (_temp, wal, lsn) = log("checkpoint-abandoned-written");
        let out = Arc::new(CheckpointsOut::default());
        let mut pending = PendingCheckpoint::new(
            wal.checkpoint_writer(lsn, 2).unwrap(),
            lsn,
            Vec::new(),
            &out,
        );
        pending.write(b"ok").unwrap();
        let installer = abandon_elsewhere(&out, &wal);
        assert!(matches!(
            pending.finish(),
            Err(Error::CheckpointAbandoned { .. })
        ));
        assert_eq!(installer.join().unwrap(), 0);
        assert!(wal.latest_checkpoint().is_none());
    }
}
