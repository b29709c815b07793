//! Checkpoints whose snapshot is written off the replica's thread.
//!
//! Writing and syncing an engine's state can take longer than an election timeout; on the
//! replica's thread it would stop heartbeats and cost the leadership. The replica checks the
//! LSN and writes the membership part of the snapshot ([`Replica::start_checkpoint`]); the caller
//! writes the engine's bytes and finishes on its own thread.
//!
//! A checkpoint out holds a pin on the log, and a snapshot install (which replaces the whole log)
//! is refused while any pin lives: an install therefore waits for the checkpoints out
//! ([`CheckpointsOut::wait_none`]). Their writers never wait for the replica, so it cannot wait
//! forever.
//!
//! [`Replica::start_checkpoint`]: crate::Replica

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use rwal_wal::CheckpointWriter;

use crate::error::Result;

/// A checkpoint started by the replica whose engine bytes the holder writes.
#[derive(Debug)]
pub(crate) struct PendingCheckpoint {
    writer: CheckpointWriter,
    /// Counted in [`CheckpointsOut`] until this goes, finished or not.
    _out: CheckpointOut,
}

impl PendingCheckpoint {
    pub(crate) fn new(writer: CheckpointWriter, out: &Arc<CheckpointsOut>) -> PendingCheckpoint {
        PendingCheckpoint {
            writer,
            _out: CheckpointOut::count_in(out),
        }
    }

    /// Appends the next bytes of the engine's state.
    pub(crate) fn write(&mut self, engine_state: &[u8]) -> Result<()> {
        Ok(self.writer.write(engine_state)?)
    }

    /// Makes the checkpoint durable (every announced byte must have been written).
    pub(crate) fn finish(self) -> Result<()> {
        Ok(self.writer.finish()?)
    }
}

/// How many [`PendingCheckpoint`]s are out.
#[derive(Debug, Default)]
pub(crate) struct CheckpointsOut {
    count: Mutex<usize>,
    none_left: Condvar,
}

impl CheckpointsOut {
    /// Whether any checkpoint is out.
    pub(crate) fn any(&self) -> bool {
        *self.count.lock() > 0
    }

    /// Returns once no checkpoint is out.
    pub(crate) fn wait_none(&self) {
        let mut count = self.count.lock();
        while *count > 0 {
            self.none_left.wait(&mut count);
        }
    }
}

/// One count in [`CheckpointsOut`], given back on drop.
#[derive(Debug)]
struct CheckpointOut(Arc<CheckpointsOut>);

impl CheckpointOut {
    fn count_in(out: &Arc<CheckpointsOut>) -> CheckpointOut {
        *out.count.lock() += 1;
        CheckpointOut(out.clone())
    }
}

impl Drop for CheckpointOut {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        *count -= 1;
        if *count == 0 {
            self.0.none_left.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwal_wal::{Options, Wal};

    /// What an install relies on: once no checkpoint is out, none pins the log any more,
    /// whether it finished or was abandoned.
    #[test]
    fn no_checkpoint_is_out_only_once_every_pin_is_gone() {
        let temp = rwal_tests::TempDir::new("checkpoints-out");
        let wal =
            Arc::new(Wal::open(temp.join("log"), Options::new().segment_bytes(1 << 20)).unwrap());
        let lsn = wal.append_durable(b"x").unwrap();
        let out = Arc::new(CheckpointsOut::default());
        for finish in [true, false] {
            let mut pending = PendingCheckpoint::new(wal.checkpoint_writer(lsn, 2).unwrap(), &out);
            assert_eq!(wal.pins().len(), 1);
            let waiter = {
                let (out, wal) = (out.clone(), wal.clone());
                std::thread::spawn(move || {
                    out.wait_none();
                    wal.pins().len()
                })
            };
            pending.write(b"ok").unwrap();
            if finish {
                pending.finish().unwrap();
            } else {
                drop(pending);
            }
            assert_eq!(waiter.join().unwrap(), 0, "finished: {finish}");
            assert_eq!(wal.latest_checkpoint().map(|c| c.lsn), Some(lsn));
        }
        out.wait_none();
    }
}
