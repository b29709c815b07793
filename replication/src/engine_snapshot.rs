//! The engine's state as the replica takes it for a checkpoint: a length and a source of bytes,
//! read after the engine's callback returned.
//!
//! An engine whose state is its database cannot hand it over as one buffer: the state may be
//! larger than the memory the process may take. [`StateMachine::snapshot`] therefore returns a
//! source the replica reads in chunks into the checkpoint's file (a [`Node`] on a thread of its
//! own, while its own thread goes on applying records), and
//! [`Node::checkpoint_from`] takes one from the engine's own thread.
//!
//! [`StateMachine::snapshot`]: crate::StateMachine::snapshot
//! [`Node`]: crate::Node
//! [`Node::checkpoint_from`]: crate::Node::checkpoint_from

use std::fmt;
use std::io::{Cursor, ErrorKind, Read};

use crate::checkpoint::{PendingCheckpoint, WRITE_CHUNK};
use crate::error::{Error, Result};

/// The engine's state for a checkpoint raft asked for: its length in bytes and where they are
/// read from ([`StateMachine::snapshot`](crate::StateMachine::snapshot)).
///
/// The source is read after `snapshot` returned, on another thread for a
/// [`Node`](crate::Node), while the node applies the records that follow. It must therefore be
/// an image frozen at the moment of the call, not the live state: bytes in memory
/// (`Vec<u8>` converts), a file the engine wrote and no longer changes, a copy-on-write view.
/// It must give exactly `len` bytes, then report its end (a read returning 0: it is read once
/// more to check): fewer or more abandons the checkpoint (the replica notes why, and raft asks
/// again at its next attempt), and a source that blocks at its end (a pipe kept open) never
/// finishes. Its reads must not wait for the node's
/// thread: a snapshot install on that thread waits for the read in progress to end.
pub struct EngineSnapshot {
    len: u64,
    source: Box<dyn Read + Send>,
}

impl EngineSnapshot {
    /// A state of `len` bytes read from `source`.
    pub fn from_reader(len: u64, source: impl Read + Send + 'static) -> EngineSnapshot {
        EngineSnapshot {
            len,
            source: Box::new(source),
        }
    }

    /// The announced length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the announced length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The source, to read the state back (an engine that wraps another's).
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        self.source
    }

    /// Writes the state into `pending` and finishes it.
    pub(crate) fn write_into(mut self, mut pending: PendingCheckpoint) -> Result<()> {
        copy_exactly(&mut self.source, self.len, &mut pending)?;
        pending.finish()
    }
}

impl From<Vec<u8>> for EngineSnapshot {
    fn from(state: Vec<u8>) -> EngineSnapshot {
        EngineSnapshot::from_reader(state.len() as u64, Cursor::new(state))
    }
}

impl fmt::Debug for EngineSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineSnapshot")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Copies exactly `len` bytes of `source` into `pending`, in chunks of at most
/// [`WRITE_CHUNK`]; a source that ends sooner, gives more, or fails is `InvalidArgument` on
/// `source`, naming how far it got.
pub(crate) fn copy_exactly(
    source: &mut dyn Read,
    len: u64,
    pending: &mut PendingCheckpoint,
) -> Result<()> {
    let mut buf = vec![
        0u8;
        WRITE_CHUNK
            .min(usize::try_from(len).unwrap_or(usize::MAX))
            .max(1)
    ];
    let mut copied = 0u64;
    let failed = |copied: u64, what: String| {
        Error::invalid(
            "source",
            format!("{what} after {copied} of the {len} bytes announced"),
        )
    };
    while copied < len {
        let want = buf
            .len()
            .min(usize::try_from(len - copied).unwrap_or(usize::MAX));
        let got = match source.read(&mut buf[..want]) {
            Ok(0) => return Err(failed(copied, "the state ended".into())),
            Ok(got) if got > want => {
                return Err(failed(
                    copied,
                    format!("a read said it gave {got} bytes into {want}"),
                ))
            }
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(copied, format!("reading the state failed ({e})"))),
        };
        pending.write(&buf[..got])?;
        copied += got as u64;
    }
    // One more read: a source with more than it announced describes another state.
    loop {
        match source.read(&mut buf[..1]) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(failed(copied, "the state went on".into())),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(copied, format!("reading the state failed ({e})"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::CheckpointsOut;
    use rwal_wal::{Options, Wal};

    /// A source that gives `bytes`, then fails or ends as told, a few bytes per read.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.bytes.len() {
                return if self.fail_at_end {
                    Err(io::Error::other("the disk under the engine's file failed"))
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(3).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn trickle(bytes: &[u8], fail_at_end: bool) -> Trickle {
        Trickle {
            bytes: bytes.to_vec(),
            at: 0,
            fail_at_end,
        }
    }

    /// Streams `source` as a checkpoint of `len` bytes announced; returns what it reported and
    /// the snapshot of the latest checkpoint afterwards.
    fn stream(name: &str, len: u64, source: Trickle) -> (Result<()>, Option<Vec<u8>>) {
        let temp = rwal_tests::TempDir::new(name);
        let wal = Wal::open(temp.join("log"), Options::new().segment_bytes(1 << 20)).unwrap();
        let lsn = wal.append_durable(b"x").unwrap();
        let out = Arc::new(CheckpointsOut::default());
        let pending = PendingCheckpoint::new(
            wal.checkpoint_writer(lsn, len).unwrap(),
            lsn,
            Vec::new(),
            &out,
        );
        let written = EngineSnapshot::from_reader(len, source).write_into(pending);
        assert!(!out.any(), "the checkpoint is still counted as out");
        let latest = crate::storage::read_snapshot_blob(&wal).unwrap();
        (written, latest)
    }

    fn source_error(result: Result<()>) -> String {
        match result {
            Err(Error::InvalidArgument {
                name: "source",
                reason,
            }) => reason,
            other => panic!("expected the source to be blamed, got {other:?}"),
        }
    }

    #[test]
    fn a_source_read_in_small_pieces_is_written_whole() {
        let state: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let (written, latest) = stream("engine-snapshot-whole", 1000, trickle(&state, false));
        written.unwrap();
        assert_eq!(latest, Some(state));
    }

    #[test]
    fn a_source_shorter_than_announced_keeps_nothing_and_says_how_far_it_got() {
        let (written, latest) = stream("engine-snapshot-short", 10, trickle(b"1234567", false));
        let reason = source_error(written);
        assert!(reason.contains("ended after 7 of the 10 bytes"), "{reason}");
        assert_eq!(latest, None);
    }

    #[test]
    fn a_source_longer_than_announced_keeps_nothing() {
        let (written, latest) = stream("engine-snapshot-long", 4, trickle(b"12345", false));
        let reason = source_error(written);
        assert!(
            reason.contains("went on after 4 of the 4 bytes"),
            "{reason}"
        );
        assert_eq!(latest, None);
    }

    #[test]
    fn a_failing_source_keeps_nothing_and_names_the_failure() {
        let (written, latest) = stream("engine-snapshot-failing", 10, trickle(b"12", true));
        let reason = source_error(written);
        assert!(
            reason.contains(
                "reading the state failed (the disk under the engine's file failed) after 2"
            ),
            "{reason}"
        );
        assert_eq!(latest, None);
    }

    #[test]
    fn an_empty_state_is_a_checkpoint_with_an_empty_snapshot() {
        let (written, latest) = stream("engine-snapshot-empty", 0, trickle(b"", false));
        written.unwrap();
        assert_eq!(latest, Some(Vec::new()));
    }
}
