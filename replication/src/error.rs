//! The errors of the replicated log.

use std::fmt;

use rwal_wal::Lsn;

use crate::NodeId;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the replicated log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// This node is not the leader; `leader` is the one it knows of, if any.
    NotLeader {
        /// The current leader, if this node knows one.
        leader: Option<NodeId>,
    },
    /// Another entry is committed at this LSN (a new leader's): the proposal never will be.
    Superseded {
        /// The LSN of the proposal.
        lsn: Lsn,
        /// The epoch the proposal was made in.
        epoch: u64,
        /// The epoch of the entry committed at that LSN.
        committed_epoch: u64,
    },
    /// The wait ended before the condition held.
    Timeout {
        /// What was waited for.
        waiting_for: &'static str,
    },
    /// [`Node::propose_and_wait`](crate::Node::propose_and_wait)'s timeout passed after the
    /// record was proposed, before it committed: it may still commit, as the entry `lsn` of
    /// `epoch` ([`Node::wait_committed`](crate::Node::wait_committed) waits on).
    NotYetCommitted {
        /// The LSN the record was proposed at.
        lsn: Lsn,
        /// The epoch it was proposed in.
        epoch: u64,
    },
    /// Too many proposals, or as many other requests (read barriers, leadership transfers,
    /// membership changes, checkpoints), are waiting for the consensus thread
    /// (`NodeOptions::pending_proposals_max`), or proposals holding too many bytes of data
    /// (`Config::max_uncommitted_bytes`).
    Busy {
        /// The limit on their number.
        pending_max: usize,
        /// The limit on the bytes of data of the proposals waiting.
        pending_bytes_max: usize,
    },
    /// The leader holds as many proposed but uncommitted bytes of data, or entries, as it may
    /// ([`Config::max_uncommitted_bytes`](crate::Config), and that many bytes divided by 128
    /// entries): retry once some commit.
    Backlogged {
        /// The limit that was reached.
        uncommitted_bytes_max: u64,
    },
    /// A request that cannot be made now and may be later; nothing was proposed. For a
    /// membership change: another change is proposed and not applied yet (one at a time), or
    /// the learner to promote has not replicated up to the commit LSN yet. Ask again once the
    /// reason is gone (unlike [`Error::InvalidArgument`], which asking again cannot change).
    NotYet {
        /// What was asked for.
        what: &'static str,
        /// Why it cannot be made now, and what to wait for.
        reason: String,
    },
    /// The node was closed (or its consensus thread stopped after an error).
    Closed,
    /// An argument or option is out of range.
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The log under the node failed.
    Wal(rwal_wal::Error),
    /// raft-rs refused or failed.
    Raft(String),
    /// A snapshot or a system record did not decode.
    BadSnapshot {
        /// What was wrong.
        reason: String,
    },
    /// The node began installing a snapshot from the leader while the checkpoint was being
    /// written: the install replaces the log the checkpoint described, so nothing of it was
    /// kept. The node goes on.
    CheckpointAbandoned {
        /// The LSN the checkpoint was for.
        lsn: Lsn,
    },
    /// The engine's callback ([`StateMachine`](crate::StateMachine)) reported a failure.
    Engine {
        /// Which callback: `apply`, `restore` or `snapshot`.
        callback: &'static str,
        /// The LSN it was called for (for `snapshot`, the applied LSN).
        lsn: Lsn,
        /// What the engine said.
        reason: String,
    },
    /// A system call of the network failed (the listening socket could not be bound: the
    /// port is in use, or the address is not this machine's).
    Io {
        /// What the node was doing (`"listen"`).
        op: &'static str,
        /// The address concerned.
        target: String,
        /// The error the system returned.
        source: std::sync::Arc<std::io::Error>,
    },
}

impl Error {
    pub(crate) fn engine(
        callback: &'static str,
        lsn: Lsn,
        error: Box<dyn std::error::Error + Send + Sync>,
    ) -> Error {
        Error::Engine {
            callback,
            lsn,
            reason: error.to_string(),
        }
    }

    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            name,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLeader { leader: Some(id) } => {
                write!(f, "this node is not the leader; node {id} is")
            }
            Error::NotLeader { leader: None } => {
                write!(f, "this node is not the leader and knows of none")
            }
            Error::Superseded {
                lsn,
                epoch,
                committed_epoch,
            } => write!(
                f,
                "the entry at LSN {lsn} of epoch {epoch} was replaced: the one of epoch \
                 {committed_epoch} is committed there"
            ),
            Error::Timeout { waiting_for } => write!(f, "timed out waiting for {waiting_for}"),
            Error::NotYetCommitted { lsn, epoch } => write!(
                f,
                "timed out waiting for the entry at LSN {lsn} of epoch {epoch} to commit (it \
                 may still: wait for it with its LSN and epoch)"
            ),
            Error::Busy {
                pending_max,
                pending_bytes_max,
            } => write!(
                f,
                "{pending_max} proposals (or as many other requests), or proposals of \
                 {pending_bytes_max} bytes, are already waiting for the consensus thread"
            ),
            Error::Backlogged {
                uncommitted_bytes_max,
            } => write!(
                f,
                "the leader already holds {uncommitted_bytes_max} bytes of uncommitted proposals, \
                 or {} of them",
                uncommitted_bytes_max / 128
            ),
            Error::NotYet { what, reason } => {
                write!(
                    f,
                    "{what} not made yet (nothing proposed; ask again later): {reason}"
                )
            }
            Error::Closed => write!(f, "the node is closed"),
            Error::InvalidArgument { name, reason } => write!(f, "invalid {name}: {reason}"),
            Error::Wal(e) => write!(f, "log: {e}"),
            Error::Raft(e) => write!(f, "raft: {e}"),
            Error::BadSnapshot { reason } => write!(f, "bad snapshot: {reason}"),
            Error::CheckpointAbandoned { lsn } => write!(
                f,
                "the checkpoint at LSN {lsn} was abandoned: this node began installing a \
                 snapshot from the leader, which replaces the log the checkpoint described"
            ),
            Error::Engine {
                callback,
                lsn,
                reason,
            } => write!(
                f,
                "the engine's {callback} callback failed at LSN {lsn}: {reason}"
            ),
            Error::Io { op, target, source } => write!(f, "{op} on {target}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Wal(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rwal_wal::Error> for Error {
    fn from(e: rwal_wal::Error) -> Error {
        Error::Wal(e)
    }
}

impl From<raft::Error> for Error {
    fn from(e: raft::Error) -> Error {
        Error::Raft(e.to_string())
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
