//! The engine `rwal node` replicates: each client's last applied request, and the
//! duplicates table that keeps a retried append from being written twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use rwal_replication::{EngineResult, EngineSnapshot, NodeId, StateMachine};
use rwal_wal::Lsn;

use super::{log, proto};

/// A client's last applied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LastRequest {
    request: u64,
    lsn: Lsn,
    epoch: u64,
    /// `data_digest` of its data; `None` when restored from a snapshot written before digests
    /// were kept.
    digest: Option<u64>,
}

/// What this node's engine knows: for each client, its last applied request; the LSNs of
/// duplicates (applied as nothing).
#[derive(Default)]
pub(super) struct EngineState {
    pub(super) applied: Lsn,
    clients: HashMap<u64, LastRequest>,
    /// The clients by the LSN of their last applied request: the oldest is forgotten first.
    clients_by_lsn: BTreeMap<Lsn, u64>,
    pub(super) duplicates: BTreeSet<Lsn>,
    /// `duplicates` holds every duplicate from this LSN on (older ones may be forgotten).
    pub(super) duplicates_complete_from: Lsn,
    /// The LSN of the checkpoint last restored (at open: the latest), 0 if none. Not part of
    /// the encoded state.
    pub(super) restored_from: Lsn,
}

/// Clients remembered at most. The table is bounded, and what it forgets depends only on the
/// order of applied records, so every node forgets the same: a client silent while this many
/// others appended loses exactly-once for a retry of its last request.
const CLIENTS_MAX: usize = 100_000;
/// Duplicate LSNs remembered at most (the oldest forgotten first): READ of records older than
/// the last this many duplicates may return one.
const DUPLICATES_MAX: usize = 1_000_000;

impl EngineState {
    /// Records `last`, the request of `client` just applied.
    fn remember(&mut self, client: u64, last: LastRequest) {
        if let Some(old) = self.clients.insert(client, last) {
            self.clients_by_lsn.remove(&old.lsn);
        }
        self.clients_by_lsn.insert(last.lsn, client);
        while self.clients.len() > CLIENTS_MAX {
            let Some((_, oldest)) = self.clients_by_lsn.pop_first() else {
                break;
            };
            self.clients.remove(&oldest);
        }
    }

    /// The answer to an append of data whose [`data_digest`] is `digest` as `request` of
    /// `client` that the table already decides: the LSN and epoch of its applied copy, or an
    /// error for a request id below the client's last or reused for other data; `None` if the
    /// request is new.
    pub(super) fn answer(
        &self,
        client: u64,
        request: u64,
        digest: u64,
    ) -> Option<Result<(Lsn, u64), String>> {
        let last = *self.clients.get(&client)?;
        let (lsn, epoch) = (last.lsn, last.epoch);
        if request == last.request {
            if last.digest.is_some_and(|d| d != digest) {
                // Answering with the first copy's LSN would acknowledge data that is not in
                // the log.
                return Some(Err(format!(
                    "request {request} of client {client} was first appended with other data \
                     (at LSN {lsn}): a request id must not be reused for other data"
                )));
            }
            Some(Ok((lsn, epoch)))
        } else if request < last.request {
            let last = last.request;
            Some(Err(format!(
                "request {request} of client {client} is below its last applied request {last}"
            )))
        } else {
            None
        }
    }

    /// Records a duplicate at `lsn`.
    fn duplicate(&mut self, lsn: Lsn) {
        self.duplicates.insert(lsn);
        while self.duplicates.len() > DUPLICATES_MAX {
            if let Some(forgotten) = self.duplicates.pop_first() {
                self.duplicates_complete_from = forgotten + 1;
            }
        }
    }
}

/// The node's engine: exactly-once appends per (client, request) id.
#[derive(Clone)]
pub(super) struct Engine {
    pub(super) id: NodeId,
    pub(super) state: Arc<(Mutex<EngineState>, Condvar)>,
}

impl StateMachine for Engine {
    fn apply(&mut self, lsn: Lsn, epoch: u64, data: &[u8]) -> EngineResult {
        let (state, applied) = &*self.state;
        let mut state = state.lock();
        state.applied = lsn;
        match proto::decode_record(data) {
            Some((client, request, data)) => {
                let seen = state
                    .clients
                    .get(&client)
                    .is_some_and(|c| c.request >= request);
                if seen {
                    state.duplicate(lsn);
                } else {
                    let digest = Some(data_digest(data));
                    state.remember(
                        client,
                        LastRequest {
                            request,
                            lsn,
                            epoch,
                            digest,
                        },
                    );
                }
            }
            None => {
                state.duplicate(lsn); // not a client record: never returned
            }
        }
        applied.notify_all();
        Ok(())
    }

    fn snapshot(&mut self) -> EngineResult<EngineSnapshot> {
        Ok(encode_state(&self.state.0.lock()).into())
    }

    fn restore(&mut self, lsn: Lsn, _epoch: u64, snapshot: &[u8]) -> EngineResult {
        // Going on with an empty table could apply a retried request twice: the node stops.
        let Some(mut state) = decode_state(snapshot) else {
            return Err(format!("the snapshot at {lsn} does not decode").into());
        };
        state.applied = lsn;
        state.restored_from = lsn;
        *self.state.0.lock() = state;
        self.state.1.notify_all();
        Ok(())
    }

    fn leader_changed(&mut self, leader: Option<NodeId>, term: u64) {
        match leader {
            Some(leader) => log(self.id, &format!("leader is node {leader} in term {term}")),
            None => log(self.id, &format!("no leader in term {term}")),
        }
    }
}

/// A 64-bit FNV-1a hash of a request's data: tells a retry (same data) from a request id reused
/// for other data. Not cryptographic: it catches a client's mistake, not an attacker (the client
/// port is unauthenticated anyway). The same function on every node, so the table is the same.
/// Never 0, which the snapshot uses for "unknown".
pub(super) fn data_digest(data: &[u8]) -> u64 {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash.max(1)
}

/// Opens the snapshot format that keeps data digests. The first format began with the client
/// count, which never comes near this value (the table holds at most `CLIENTS_MAX`).
const STATE_FORMAT_2: u64 = u64::MAX - 1;

pub(super) fn encode_state(state: &EngineState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&STATE_FORMAT_2.to_le_bytes());
    out.extend_from_slice(&(state.clients.len() as u64).to_le_bytes());
    for (client, last) in &state.clients {
        // A digest of 0 stands for "unknown" (a client restored from the first format).
        let digest = last.digest.unwrap_or(0);
        for v in [*client, last.request, last.lsn, last.epoch, digest] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&(state.duplicates.len() as u64).to_le_bytes());
    for lsn in &state.duplicates {
        out.extend_from_slice(&lsn.to_le_bytes());
    }
    out
}

fn decode_state(bytes: &[u8]) -> Option<EngineState> {
    let mut body = proto::Body(bytes);
    let mut state = EngineState::default();
    if bytes.is_empty() {
        return Some(state);
    }
    let mut clients = body.u64("clients").ok()?;
    let with_digests = clients == STATE_FORMAT_2;
    if with_digests {
        clients = body.u64("clients").ok()?;
    }
    for _ in 0..clients {
        let client = body.u64("client").ok()?;
        let request = body.u64("request").ok()?;
        let lsn = body.u64("lsn").ok()?;
        let epoch = body.u64("epoch").ok()?;
        let digest = match with_digests {
            true => Some(body.u64("digest").ok()?).filter(|&d| d != 0),
            false => None,
        };
        state.remember(
            client,
            LastRequest {
                request,
                lsn,
                epoch,
                digest,
            },
        );
    }
    let duplicates = body.u64("duplicates").ok()?;
    for _ in 0..duplicates {
        state.duplicates.insert(body.u64("duplicate").ok()?);
    }
    // A full list may have forgotten older ones (the snapshot does not say).
    if state.duplicates.len() >= DUPLICATES_MAX {
        state.duplicates_complete_from = state.duplicates.first().copied().unwrap_or(0);
    }
    body.rest().is_empty().then_some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_table_and_the_duplicates_are_bounded_and_forget_the_oldest() {
        let mut state = EngineState::default();
        let last = |lsn| LastRequest {
            request: 1,
            lsn,
            epoch: 1,
            digest: Some(lsn),
        };
        for client in 0..(CLIENTS_MAX as u64 + 10) {
            state.remember(client, last(client + 100));
        }
        assert_eq!(state.clients.len(), CLIENTS_MAX);
        assert_eq!(state.clients_by_lsn.len(), CLIENTS_MAX);
        assert!(!state.clients.contains_key(&9) && state.clients.contains_key(&10));
        // A client's newer request moves it to the young end.
        state.remember(10, last(1 << 40));
        state.remember(u64::MAX, last((1 << 40) + 1));
        assert!(state.clients.contains_key(&10) && !state.clients.contains_key(&11));
        // Decoding a snapshot rebuilds the order.
        let decoded = decode_state(&encode_state(&state)).unwrap();
        assert_eq!(decoded.clients, state.clients);
        assert_eq!(decoded.clients_by_lsn, state.clients_by_lsn);
        for lsn in 0..(DUPLICATES_MAX as u64 + 5) {
            state.duplicate(lsn);
        }
        assert_eq!(state.duplicates.len(), DUPLICATES_MAX);
        assert_eq!(state.duplicates.first(), Some(&5));
    }

    #[test]
    fn the_engine_applies_each_request_once_and_its_state_survives_a_snapshot() {
        let mut engine = Engine {
            id: 1,
            state: Arc::new((Mutex::new(EngineState::default()), Condvar::new())),
        };
        engine
            .apply(2, 1, &proto::encode_record(7, 1, b"a"))
            .unwrap();
        engine
            .apply(3, 1, &proto::encode_record(7, 1, b"a"))
            .unwrap(); // a retry that got in
        engine
            .apply(4, 2, &proto::encode_record(7, 2, b"b"))
            .unwrap();
        engine.apply(5, 2, b"short").unwrap();
        let applied = LastRequest {
            request: 2,
            lsn: 4,
            epoch: 2,
            digest: Some(data_digest(b"b")),
        };
        {
            let state = engine.state.0.lock();
            assert_eq!(state.clients[&7], applied);
            assert_eq!(state.duplicates, BTreeSet::from([3, 5]));
        }
        let snapshot = engine.snapshot().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut snapshot.into_reader(), &mut bytes).unwrap();
        let mut other = Engine {
            id: 2,
            state: Arc::new((Mutex::new(EngineState::default()), Condvar::new())),
        };
        other.restore(5, 2, &bytes).unwrap();
        let state = other.state.0.lock();
        assert_eq!(state.clients[&7], applied);
        assert_eq!(state.duplicates, BTreeSet::from([3, 5]));
        assert_eq!(state.applied, 5);
        // Where the checkpoint schedule counts from; the engine it was taken of restored none.
        assert_eq!(state.restored_from, 5);
        assert_eq!(engine.state.0.lock().restored_from, 0);
    }

    #[test]
    fn a_request_id_reused_for_other_data_is_refused_not_acknowledged() {
        let mut engine = Engine {
            id: 1,
            state: Arc::new((Mutex::new(EngineState::default()), Condvar::new())),
        };
        engine
            .apply(2, 1, &proto::encode_record(7, 1, b"first"))
            .unwrap();
        // The same id with other data reaches the log (proposed before the first was applied
        // here): applied as nothing, like any duplicate.
        engine
            .apply(3, 1, &proto::encode_record(7, 1, b"other"))
            .unwrap();
        let state = engine.state.0.lock();
        assert_eq!(state.duplicates, BTreeSet::from([3]));
        assert_eq!(state.answer(7, 1, data_digest(b"first")), Some(Ok((2, 1))));
        let refused = state
            .answer(7, 1, data_digest(b"other"))
            .unwrap()
            .unwrap_err();
        assert!(refused.contains("must not be reused"), "{refused}");
        assert!(state.answer(7, 0, data_digest(b"first")).unwrap().is_err());
        assert_eq!(state.answer(7, 2, data_digest(b"next")), None);
        assert_eq!(state.answer(8, 1, data_digest(b"first")), None);
    }

    #[test]
    fn a_snapshot_of_the_first_format_restores_without_digests() {
        // The first format: client count, then client, request, lsn, epoch; then duplicates.
        let mut old = Vec::new();
        for v in [1u64, 7, 1, 2, 1, 1, 3] {
            old.extend_from_slice(&v.to_le_bytes());
        }
        let state = decode_state(&old).unwrap();
        assert_eq!(state.clients[&7].digest, None);
        assert_eq!(state.duplicates, BTreeSet::from([3]));
        // Without a digest a retry is answered as before, whatever its data.
        assert_eq!(
            state.answer(7, 1, data_digest(b"anything")),
            Some(Ok((2, 1)))
        );
        // Written again, it keeps "unknown" rather than inventing a digest.
        let again = decode_state(&encode_state(&state)).unwrap();
        assert_eq!(again.clients[&7].digest, None);
        assert!(decode_state(&old[..old.len() - 1]).is_none());
        // A snapshot that does not decode fails the restore (the node stops) and leaves the
        // table as it was.
        let mut engine = Engine {
            id: 1,
            state: Arc::new((Mutex::new(state), Condvar::new())),
        };
        let refused = engine.restore(9, 3, &old[..old.len() - 1]).unwrap_err();
        assert_eq!(refused.to_string(), "the snapshot at 9 does not decode");
        assert_eq!(engine.state.0.lock().clients[&7].request, 1);
    }
}
