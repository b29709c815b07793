//! The engine the threaded-node tests run: it keeps every committed user record, and its
//! snapshot is all of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rwal_replication::StateMachine;
use rwal_wal::Lsn;

/// Every applied record by LSN, and the LSNs of the snapshots it was restored from.
#[derive(Clone, Default)]
pub struct Engine(
    pub Arc<Mutex<BTreeMap<Lsn, Vec<u8>>>>,
    pub Arc<Mutex<Vec<Lsn>>>,
);

impl StateMachine for Engine {
    fn apply(&mut self, lsn: Lsn, _epoch: u64, data: &[u8]) {
        self.0.lock().insert(lsn, data.to_vec());
    }

    fn snapshot(&mut self) -> Vec<u8> {
        encode(&self.0.lock())
    }

    fn restore(&mut self, lsn: Lsn, _epoch: u64, snapshot: &[u8]) {
        self.1.lock().push(lsn);
        *self.0.lock() = decode(snapshot);
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
