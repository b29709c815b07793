//! The engine the threaded-node tests run: it keeps every committed user record, and its
//! snapshot is all of them.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rwal_replication::{CommittedReader, EngineResult, EngineSnapshot, StateMachine};
use rwal_wal::Lsn;

/// Every applied record by LSN, the LSNs of the snapshots it was restored from, and the
/// failures it is told to report.
#[derive(Clone, Default)]
pub struct Engine(
    pub Arc<Mutex<BTreeMap<Lsn, Vec<u8>>>>,
    pub Arc<Mutex<Vec<Lsn>>>,
    pub Arc<Faults>,
);

/// Failures an [`Engine`] reports when told to.
#[derive(Default)]
pub struct Faults {
    /// This many calls of `snapshot` fail (counted down), each counted in `snapshots_refused`.
    pub snapshots_to_refuse: AtomicU32,
    pub snapshots_refused: AtomicU32,
    /// This many calls of `snapshot` (after the refused ones, counted down) give a source
    /// that ends a byte short of the length it announces.
    pub snapshot_sources_to_cut: AtomicU32,
    /// `apply` of a record with these bytes fails.
    pub refuse_to_apply: Mutex<Option<Vec<u8>>>,
    /// `snapshot` adds this many zero bytes, as a record at LSN 0 that `restore` drops: a large
    /// state without a large engine.
    pub snapshot_padding: AtomicUsize,
    /// `restore` reads from this reader (an engine tailing its own log from there) and notes
    /// what it got in `read_in_restore`.
    pub reader_in_restore: Mutex<Option<CommittedReader>>,
    /// The next `restore` waits (up to a minute) for a message on this channel, after setting
    /// `restore_held`: a snapshot install held for as long as the test wants.
    pub hold_restore: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    pub restore_held: std::sync::atomic::AtomicBool,
    pub read_in_restore: Mutex<Vec<Result<Option<Lsn>, rwal_replication::Error>>>,
}

impl StateMachine for Engine {
    fn apply(&mut self, lsn: Lsn, _epoch: u64, data: &[u8]) -> EngineResult {
        if self.2.refuse_to_apply.lock().as_deref() == Some(data) {
            return Err("this engine refuses these bytes".into());
        }
        self.0.lock().insert(lsn, data.to_vec());
        Ok(())
    }

    fn snapshot(&mut self) -> EngineResult<EngineSnapshot> {
        let refuse =
            self.2
                .snapshots_to_refuse
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                });
        if refuse.is_ok() {
            self.2.snapshots_refused.fetch_add(1, Ordering::Relaxed);
            return Err("this engine cannot take a snapshot now".into());
        }
        let state = encode(&self.0.lock());
        let cut = self.2.snapshot_sources_to_cut.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |left| left.checked_sub(1),
        );
        if cut.is_ok() {
            let len = state.len() as u64 + 1;
            return Ok(EngineSnapshot::from_reader(
                len,
                std::io::Cursor::new(state),
            ));
        }
        let padding = self.2.snapshot_padding.load(Ordering::Relaxed);
        if padding == 0 {
            return Ok(state.into());
        }
        // Streamed, never in memory: LSN 0 (no record has it), the padding's length, the
        // padding's zeros, then the state.
        let mut head = vec![0u8; 12];
        head[8..12].copy_from_slice(&(padding as u32).to_le_bytes());
        let len = (head.len() + padding + state.len()) as u64;
        let source = std::io::Cursor::new(head)
            .chain(std::io::repeat(0).take(padding as u64))
            .chain(std::io::Cursor::new(state));
        Ok(EngineSnapshot::from_reader(len, source))
    }

    fn restore(&mut self, lsn: Lsn, _epoch: u64, snapshot: &[u8]) -> EngineResult {
        let hold = self.2.hold_restore.lock().take();
        if let Some(hold) = hold {
            self.2.restore_held.store(true, Ordering::Release);
            let _ = hold.recv_timeout(std::time::Duration::from_secs(60));
        }
        if let Some(reader) = self.2.reader_in_restore.lock().as_mut() {
            let read = reader.next().map(|record| record.map(|r| r.lsn));
            self.2.read_in_restore.lock().push(read);
        }
        self.1.lock().push(lsn);
        let mut state = decode(snapshot);
        state.remove(&0);
        *self.0.lock() = state;
        Ok(())
    }
}

/// The records as a snapshot: LSN, length, bytes, one after another.
pub fn encode(state: &BTreeMap<Lsn, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (lsn, data) in state {
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// The records of a snapshot made by [`encode`].
pub fn decode(mut bytes: &[u8]) -> BTreeMap<Lsn, Vec<u8>> {
    let mut state = BTreeMap::new();
    while !bytes.is_empty() {
        let lsn = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        state.insert(lsn, bytes[12..12 + len].to_vec());
        bytes = &bytes[12 + len..];
    }
    state
}
