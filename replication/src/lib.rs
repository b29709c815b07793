//! The replicated log of rwal: raft-rs (tikv/raft-rs) for consensus, rwal-wal as its storage.
//!
//! - [`Replica`] is one node, stepped by its caller without threads: what the deterministic
//!   simulation drives.
//! - [`Node`] runs a replica on its own thread and serves many proposing threads: what an
//!   embedding engine uses.
//! - [`Transport`] carries messages between nodes; [`MemoryNetwork`] is the in-memory one,
//!   [`net::PeerNetwork`] the TCP one (authenticated; `docs/network.md`).
//!
//! The design, the mapping of raft's `Ready` protocol to WAL calls and why it is safe, are in
//! `docs/replication.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// raft-rs's messages are protobuf structs with private bookkeeping fields: they are built by
// assigning fields to a default one.
#![allow(clippy::field_reassign_with_default)]

mod checkpoint;
mod codec;
mod commit_waiters;
mod engine_snapshot;
mod error;
pub mod net;
mod node;
mod outbox;
mod persister;
mod replica;
mod snapshot_stream;
mod storage;
mod transport;

/// A node's id in the cluster (raft's peer id; not 0).
pub type NodeId = u64;

pub use engine_snapshot::EngineSnapshot;
pub use error::{Error, Result};
pub use node::{
    Bounded, CommittedReader, CommittedRecord, Node, NodeLog, NodeOptions, NodeStatus, Severity,
    TrackedProposal, TICK_INTERVAL_MAX,
};
pub use raft::eraftpb::ConfState;
pub use replica::{
    Bootstrap, Config, EngineResult, MembershipChange, PeerEvent, Replica, Role, StateMachine,
    MEMBER_ADDRESS_BYTES_MAX, MESSAGE_PART_BYTES_MAX, UNPERSISTED_ROUNDS_MAX,
};
pub use transport::{
    Envelope, Inbox, MemoryNetwork, MemoryTransport, SnapshotChunk, SnapshotRoom, Transport,
};
