//! What nodes send each other, and the trait a transport implements. This crate ships an
//! in-memory transport for tests ([`MemoryNetwork`]); the TCP one is [`crate::net`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use raft::eraftpb::Message;
use rwal_wal::Lsn;

use crate::NodeId;

/// One piece of a snapshot streamed beside raft's messages.
///
/// A chunk without data goes the other way: the receiver's report of the bytes it holds
/// (`offset` of them, `crc` their checksum), sent to the stream's sender each time it takes a
/// stream's first chunk, so that a stream that started over resumes there instead of sending
/// them again. A node of before 2026-12-05's second session drops such a report (a chunk
/// without its start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The sender (the leader; the receiver, for a report).
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The checkpoint's LSN.
    pub lsn: Lsn,
    /// The epoch (term) of the record at `lsn`.
    pub epoch: u64,
    /// Where `data` starts in the snapshot.
    pub offset: u64,
    /// The snapshot's length.
    pub total: u64,
    /// CRC32C of the snapshot's bytes from 0 to the end of this chunk.
    pub crc: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Everything one node sends another.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// A raft message.
    Raft(Message),
    /// A piece of a snapshot.
    SnapshotChunk(SnapshotChunk),
}

impl Envelope {
    /// About how many bytes it holds in memory: its payloads (entries, a snapshot's data, a
    /// chunk's bytes) and the structures around them. Inboxes bound their queues with it.
    pub fn bytes_held(&self) -> usize {
        let rest = std::mem::size_of::<Envelope>();
        match self {
            Envelope::Raft(m) => {
                let entries: usize = m
                    .get_entries()
                    .iter()
                    .map(|e| {
                        std::mem::size_of::<raft::eraftpb::Entry>()
                            + e.get_data().len()
                            + e.get_context().len()
                    })
                    .sum();
                rest + m.get_context().len() + m.get_snapshot().get_data().len() + entries
            }
            Envelope::SnapshotChunk(c) => rest + c.data.len(),
        }
    }

    /// The sender.
    pub fn from(&self) -> NodeId {
        match self {
            Envelope::Raft(m) => m.from,
            Envelope::SnapshotChunk(c) => c.from,
        }
    }

    /// The receiver.
    pub fn to(&self) -> NodeId {
        match self {
            Envelope::Raft(m) => m.to,
            Envelope::SnapshotChunk(c) => c.to,
        }
    }
}

/// Carries batches of envelopes to other nodes. `send` must not block for long: a transport
/// queues, and drops what it cannot deliver (raft retries; nothing depends on delivery).
///
/// One ordering is required: a snapshot's chunks and the raft `MsgSnapshot` sent after them
/// must reach their receiver in that order (a snapshot message that arrives before its bytes
/// is dropped, and raft resends it only after a timeout). Everything else may be lost,
/// duplicated or reordered.
pub trait Transport: Send + 'static {
    /// Hands a batch of envelopes, for any receivers, to the transport.
    fn send(&self, batch: Vec<Envelope>);

    /// How many more snapshot chunks for `to` the transport takes now without dropping any,
    /// and how far its link has carried them ([`SnapshotRoom`]; the default: no bound it knows
    /// of). The node sends a snapshot no faster than this, so a large snapshot goes at the
    /// pace of the link instead of overflowing a bounded queue, losing chunks and being sent
    /// again from the start.
    fn snapshot_room(&self, _to: NodeId) -> SnapshotRoom {
        SnapshotRoom::UNBOUNDED
    }

    /// A membership change that removed `id` was applied here: nothing is sent to it any more,
    /// so a transport may forget its address and close its connections (the default keeps
    /// them). Also when a snapshot installed here names another address for a member than the
    /// one this node had learned: the member was removed and added back there, and
    /// [`peer_added`](Transport::peer_added) with the new address follows.
    fn peer_removed(&self, _id: NodeId) {}

    /// A membership change that added `id` and carried its `address` was applied here
    /// ([`Replica::change_membership_at`](crate::Replica::change_membership_at)), or a
    /// checkpoint holding it was opened or installed as a snapshot: a transport that has no
    /// address for `id` may take this one, so that this node reaches the new
    /// member once it leads (the default ignores it). One that has an address keeps it: it was
    /// given by the caller, or a change applied earlier, and an entry applied again at a
    /// restart may be older than it.
    fn peer_added(&self, _id: NodeId, _address: &str) {}

    /// Why `address` is not one this transport could dial, if it is not: a membership change
    /// that carries it is refused before it is proposed ([`crate::Node::change_membership_at`]),
    /// instead of being committed with an address no member can use (the default takes any).
    fn check_address(&self, _address: &str) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// What a transport says of its snapshot lane to one receiver ([`Transport::snapshot_room`]).
/// A stream counts as progress both room coming back and `bytes_carried` changing: a chunk
/// crossing a slow link frees no room until it has crossed, which may take longer than the
/// stream's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRoom {
    /// How many more chunks the transport takes now without dropping any.
    pub chunks: usize,
    /// Bytes the transport has written to the receiver's link while chunks were in them: any
    /// count that changes while they move (0 and unchanging if the transport cannot tell).
    pub bytes_carried: u64,
}

impl SnapshotRoom {
    /// No bound: every chunk is taken at once.
    pub const UNBOUNDED: SnapshotRoom = SnapshotRoom {
        chunks: usize::MAX,
        bytes_carried: 0,
    };
}

/// Where a transport delivers the envelopes addressed to one node.
pub trait Inbox: Send + Sync + 'static {
    /// Takes delivered envelopes; returns false if the node is gone.
    fn deliver(&self, batch: Vec<Envelope>) -> bool;
}

/// An in-memory network for tests: nodes register their inbox; `send` delivers at once, unless
/// the link is cut with [`MemoryNetwork::cut`].
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    shared: Arc<Mutex<NetworkState>>,
}

#[derive(Default)]
struct NetworkState {
    inboxes: HashMap<NodeId, Weak<dyn Inbox>>,
    cut: Vec<(NodeId, NodeId)>,
    delivered: u64,
    dropped: u64,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("MemoryNetwork")
            .field("nodes", &state.inboxes.len())
            .field("delivered", &state.delivered)
            .field("dropped", &state.dropped)
            .finish()
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// Registers the inbox of node `id` (replacing an earlier one).
    pub fn register(&self, id: NodeId, inbox: Weak<dyn Inbox>) {
        self.shared.lock().inboxes.insert(id, inbox);
    }

    /// Drops everything `from` sends `to` until [`heal`](MemoryNetwork::heal).
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.shared.lock().cut.push((from, to));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.shared.lock().cut.clear();
    }

    /// Envelopes delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.delivered, state.dropped)
    }

    /// A transport that sends as node `id`.
    pub fn transport(&self) -> MemoryTransport {
        MemoryTransport {
            network: self.clone(),
        }
    }
}

/// The sending side of a [`MemoryNetwork`].
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    network: MemoryNetwork,
}

impl Transport for MemoryTransport {
    fn send(&self, batch: Vec<Envelope>) {
        let mut by_node: HashMap<NodeId, Vec<Envelope>> = HashMap::new();
        let targets: Vec<(NodeId, Arc<dyn Inbox>)> = {
            let mut state = self.network.shared.lock();
            for envelope in batch {
                let link = (envelope.from(), envelope.to());
                if state.cut.contains(&link) {
                    state.dropped += 1;
                    continue;
                }
                by_node.entry(envelope.to()).or_default().push(envelope);
            }
            let mut targets = Vec::new();
            for id in by_node.keys() {
                match state.inboxes.get(id).and_then(Weak::upgrade) {
                    Some(inbox) => targets.push((*id, inbox)),
                    None => state.dropped += by_node[id].len() as u64,
                }
            }
            targets
        };
        let mut delivered = 0;
        for (id, inbox) in targets {
            let batch = by_node.remove(&id).unwrap_or_default();
            let n = batch.len() as u64;
            if inbox.deliver(batch) {
                delivered += n;
            }
        }
        self.network.shared.lock().delivered += delivered;
    }
}
