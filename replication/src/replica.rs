//! The replica: raft-rs's `RawNode` over the WAL, driven step by step without threads. The
//! simulation drives it directly; [`Node`](crate::Node) drives it from a thread.
//!
//! One round of work is [`Replica::handle_ready`] then [`Replica::finish_ready`]; between the
//! two, new entries are in the log but not yet durable (the simulation crashes nodes there).
//! How each step of raft's `Ready` maps to a WAL call, and why that order is safe, is in
//! `docs/replication.md` ("The Ready protocol").

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType,
};
use raft::{RawNode, Ready, SnapshotStatus, StateRole};
use rwal_wal::{Lsn, Options, Pin, RecoveryMode, Wal};

use crate::checkpoint::{CheckpointsOut, PendingCheckpoint};
use crate::codec;
use crate::engine_snapshot::{self, EngineSnapshot};
use crate::error::{Error, Result};
use crate::outbox::Outbox;
use crate::snapshot_stream::{Incoming, Outgoing, Received};
use crate::storage::WalStorage;
use crate::transport::{Envelope, SnapshotChunk, SnapshotRoom};
use crate::NodeId;

/// Damaged records of its own log a replica remembers having noted, so that raft's attempts
/// to send them note each once.
const DAMAGE_NOTED_MAX: usize = 64;

/// What an uncommitted entry costs the leader besides its data (raft-rs's entry, the copy kept
/// until it is durable, its waiter), counted against `max_uncommitted_bytes` by
/// `Replica::refuse_when_backlogged`: at the default limit, 524 288 entries at most.
const UNCOMMITTED_ENTRY_COST_BYTES: u64 = 128;

/// What an engine's callback returns. A failed `apply` or `restore` stops the node (the engine
/// could not follow the log, and going on would make it diverge); a failed `snapshot` only
/// abandons that snapshot.
pub type EngineResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What the embedding engine gives the replica: it is told every committed user record, in
/// LSN order, and handed a snapshot when the leader sends one. Called on the thread that drives
/// the replica.
pub trait StateMachine: Send + 'static {
    /// A committed user record (system records are not passed on). An error stops the replica
    /// with [`Error::Engine`] (a [`Node`](crate::Node) then stops: its waits and `close` return
    /// `Error::Raft` with that message, other calls `Closed`); on the next open the engine is
    /// restored from the latest checkpoint and given the records after it again.
    fn apply(&mut self, lsn: Lsn, epoch: u64, data: &[u8]) -> EngineResult;

    /// Replace the whole state with `snapshot`, the state as of `lsn` (written in `epoch`):
    /// called when the leader sends a snapshot, and at open with the latest checkpoint's. An
    /// error stops the replica with [`Error::Engine`]. `snapshot` is a read-only view of the
    /// checkpoint's file, its checksum checked (the whole file read once first), not a copy. It
    /// starts on a page (4096 bytes) on the file backends (not on the simulated disk, nor in a
    /// checkpoint in the older format, written before 2026-12-05 or by a node of before).
    /// A disk that fails to read a page back, or another process truncating the file, is a
    /// SIGBUS while it is read. The install holds the log while this
    /// runs: a [`CommittedReader`](crate::CommittedReader) read from here gets
    /// `InvalidArgument` (it would wait for the install to end).
    fn restore(&mut self, lsn: Lsn, epoch: u64, snapshot: &[u8]) -> EngineResult;

    /// The state as of the last record applied: asked for when the leader must send a
    /// follower a snapshot that no checkpoint can give (none yet, or the follower joined after
    /// it). The replica writes it as a checkpoint at the applied LSN. A `Vec<u8>` converts
    /// (`Ok(state.into())`), which holds the whole state in memory until it is written; an
    /// [`EngineSnapshot::from_reader`] over a frozen image (a file, a copy-on-write view) is
    /// read in chunks of 1 MiB after this returns, a `Node` on a thread of its own while its
    /// own thread goes on applying records (the source's rules are on [`EngineSnapshot`]). An
    /// error, or a source that fails, writes nothing (a `Replica` notes why, see
    /// [`Replica::take_log`]; a `Node` logs it); raft asks again at its next attempt.
    fn snapshot(&mut self) -> EngineResult<EngineSnapshot>;

    /// The leader changed (`None`: no leader known) in `term`. On a [`Node`](crate::Node),
    /// called once the node's status shows the change (its `status`, `leader` and
    /// `proposals_go_to` called from here agree with what this is told).
    fn leader_changed(&mut self, leader: Option<NodeId>, term: u64) {
        let _ = (leader, term);
    }
}

/// How a replica starts when its log is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Found a cluster with these voters (every initial member is opened with the same list):
    /// the log starts as a checkpoint at LSN 1 holding that membership.
    Voters(Vec<NodeId>),
    /// Join an existing cluster: wait, empty, for the leader (which adds this node with a
    /// membership change) to send a snapshot.
    Join,
}

/// Settings of a replica. Ticks are the unit of time: the driver calls [`Replica::tick`] at a
/// fixed interval (the node: every `tick_interval`). Made with [`Config::new`], then changed
/// field by field (new fields may come: the struct cannot be written as a literal outside
/// this crate).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// This node's id (not 0).
    pub id: NodeId,
    /// Ticks without hearing from a leader before a follower starts an election: the least.
    pub election_ticks: usize,
    /// The election timeout is drawn from `election_ticks..election_ticks_max` at each
    /// election (default twice `election_ticks`), so that candidates do not keep splitting the
    /// vote. A deterministic driver that jitters ticks itself sets `election_ticks + 1`.
    pub election_ticks_max: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Largest batch of entries in one append message, in bytes (at most
    /// [`MESSAGE_PART_BYTES_MAX`]).
    pub max_bytes_per_message: u64,
    /// Append messages in flight to one follower.
    pub max_inflight_messages: usize,
    /// Proposed but uncommitted bytes of data the leader accepts before refusing proposals;
    /// it also refuses them past this many bytes divided by 128 uncommitted entries, so that
    /// empty or tiny proposals are bounded too.
    pub max_uncommitted_bytes: u64,
    /// Bytes of log a follower's retention pin may hold back before it is dropped (the follower
    /// then gets a snapshot); `None`: no cap.
    pub follower_pin_cap_bytes: Option<u64>,
    /// Size of a snapshot chunk (at most [`MESSAGE_PART_BYTES_MAX`]).
    pub snapshot_chunk_bytes: usize,
    /// Chunks sent per follower per tick at most (fewer when the transport has less room).
    pub snapshot_chunks_per_tick: usize,
    /// Ticks without progress (no chunk handed over, none taken by the transport, and, after
    /// the last, no answer) after which a snapshot stream is abandoned (raft then sends a new
    /// one).
    pub snapshot_timeout_ticks: u64,
    /// Largest snapshot a follower accepts. A snapshot is written to a file in the log's
    /// directory as it arrives, never held whole in memory: this bounds that file.
    pub snapshot_bytes_max: u64,
    /// Applied entries between lazy writes of the commit index to the control file.
    pub commit_store_interval: u64,
    /// The largest proposal accepted (also bounded by what one log segment holds): a record
    /// must fit one append message and one transport frame.
    pub max_record_bytes: u64,
}

impl Config {
    /// Defaults for node `id`: an election after 10 to 20 ticks, heartbeat every 2, 1 MiB
    /// messages, 1 MiB snapshot chunks.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 256,
            max_uncommitted_bytes: 64 << 20,
            follower_pin_cap_bytes: Some(1 << 30),
            snapshot_chunk_bytes: 1 << 20,
            snapshot_chunks_per_tick: 4,
            snapshot_timeout_ticks: 50,
            snapshot_bytes_max: 1 << 30,
            commit_store_interval: 1024,
            max_record_bytes: 16 << 20,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(Error::invalid("id", "node ids start at 1"));
        }
        if self.snapshot_bytes_max == 0 {
            return Err(Error::invalid("snapshot_bytes_max", "must be above 0"));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(Error::invalid(
                "election_ticks",
                format!(
                    "{} must be above heartbeat_ticks {} (and that above 0)",
                    self.election_ticks, self.heartbeat_ticks
                ),
            ));
        }
        if !(1..=64 << 20).contains(&self.max_record_bytes) {
            return Err(Error::invalid(
                "max_record_bytes",
                format!("{} is outside 1..=64 MiB", self.max_record_bytes),
            ));
        }
        if self.election_ticks_max <= self.election_ticks {
            return Err(Error::invalid(
                "election_ticks_max",
                format!(
                    "{} must be above election_ticks {}",
                    self.election_ticks_max, self.election_ticks
                ),
            ));
        }
        if self.snapshot_chunk_bytes == 0 || self.snapshot_chunks_per_tick == 0 {
            return Err(Error::invalid("snapshot_chunk_bytes", "must be above 0"));
        }
        if self.snapshot_timeout_ticks == 0 {
            // A receiver drops a stream silent for twice as long: with 0, any stream longer
            // than a tick, and no snapshot that takes longer would ever arrive.
            return Err(Error::invalid("snapshot_timeout_ticks", "must be above 0"));
        }
        for (name, value) in [
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes as u64),
        ] {
            if value > MESSAGE_PART_BYTES_MAX {
                return Err(Error::invalid(
                    name,
                    format!(
                        "{value} is above {MESSAGE_PART_BYTES_MAX} (32 MiB): a message must fit \
                         the TCP transport's 128 MiB frames"
                    ),
                ));
            }
        }
        if self.max_uncommitted_bytes < self.max_bytes_per_message {
            // raft-rs refuses it with a message that names neither setting.
            return Err(Error::invalid(
                "max_uncommitted_bytes",
                format!(
                    "{} is below max_bytes_per_message ({}): one append of entries must fit \
                     the uncommitted entries' room",
                    self.max_uncommitted_bytes, self.max_bytes_per_message
                ),
            ));
        }
        Ok(())
    }
}

/// How many of its longest election timeouts a node's own disk may make nothing durable, with
/// entries waiting, before the node stops counting itself as a live voter for a membership
/// change (`Replica::change_membership`): 1 s at the defaults, as `NodeOptions::sync_stall_limit`,
/// so that a slow sync (a throttled volume, a segment zero-filled in the foreground) is not
/// taken for a hung disk.
const OWN_DISK_STALLED_ELECTIONS: u64 = 5;

/// The most [`Config::max_bytes_per_message`] and [`Config::snapshot_chunk_bytes`] may be. An
/// append carries up to `max_bytes_per_message` of entries and one more entry of up to
/// `max_record_bytes` (64 MiB at most), a snapshot message one chunk; the TCP transport's frames
/// carry at most 128 MiB (docs/network.md), and a message it refuses would reset the
/// connection at every try.
pub const MESSAGE_PART_BYTES_MAX: u64 = 32 << 20;

/// The role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for votes (pre-vote included).
    Candidate,
    /// Leads its term.
    Leader,
}

/// The longest address a membership change carries ([`Replica::change_membership_at`]).
pub const MEMBER_ADDRESS_BYTES_MAX: usize = 256;

/// What an applied membership change, or an installed snapshot, did to a peer
/// ([`Replica::take_peer_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// The member was removed: nothing is sent to it any more. (A snapshot that names another
    /// address for a member than the one learned gives this, then `Added` with the new
    /// address: the member was removed and added back there.)
    Removed(NodeId),
    /// The member was added, and the change carried its address (or a snapshot holding the
    /// membership did).
    Added {
        /// The member added.
        id: NodeId,
        /// Its address, as the change (or the snapshot) carried it.
        address: String,
    },
}

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Promote a learner to voter, once it has caught up (a node that is not a learner yet is
    /// refused: it is added as a learner first).
    AddVoter(NodeId),
    /// Add a learner: it receives the log but does not vote or count toward commit.
    AddLearner(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
}

impl MembershipChange {
    /// Why this change is refused in a cluster of `membership`, whoever leads it: a change of
    /// nothing (raft-rs would commit an empty change, and the caller, told it was made, would
    /// believe it), making a learner of a voter (raft-rs would demote it), or promoting a node
    /// that is not a learner. `None` if the membership allows it; the leader checks more
    /// ([`Replica::change_membership`]).
    pub fn refusal_in(&self, membership: &ConfState) -> Option<String> {
        let id = match *self {
            MembershipChange::AddVoter(id)
            | MembershipChange::AddLearner(id)
            | MembershipChange::Remove(id) => id,
        };
        let voter = membership.voters.contains(&id);
        let learner = membership.learners.contains(&id);
        match self {
            MembershipChange::AddVoter(_) if voter => Some(format!("node {id} is a voter already")),
            // A new node knows no membership until the leader's snapshot reaches it, and votes
            // for no candidate until then (`step`): made a voter at once, it would count in a
            // quorum that could not elect a leader if this one went.
            MembershipChange::AddVoter(_) if !learner => Some(format!(
                "node {id} is not a learner: add it as a learner first, and promote it once it \
                 has caught up"
            )),
            MembershipChange::AddLearner(_) if voter => Some(format!(
                "node {id} is a voter: raft would demote it to a learner (remove it first to \
                 add it again as a new learner)"
            )),
            MembershipChange::AddLearner(_) if learner => {
                Some(format!("node {id} is a learner already"))
            }
            MembershipChange::Remove(_) if !voter && !learner => {
                Some(format!("node {id} is not a member"))
            }
            _ => None,
        }
    }
}

/// A round between `handle_ready` and `finish_ready`.
struct Pending {
    ready: Ready,
    /// Messages taken from `ready` that wait for its sync (with the checker's mutants only:
    /// `break_ack_before_persist_of`).
    held_back: Vec<Message>,
    term_or_vote_changed: bool,
    /// `finish_sync` made its entries and hard state durable and queued the messages that
    /// waited for them; raft has not been told yet (`finish_ready`).
    synced: bool,
}

/// Rounds that may wait for a sync at most, in the background persistence mode
/// ([`Replica::persist_in_background`]): the next one is done in full, waiting for the sync.
pub const UNPERSISTED_ROUNDS_MAX: usize = 1 << 16;

/// A round handled in the background mode whose entries are not known durable yet.
struct Unpersisted {
    /// raft-rs's number of the round's `Ready`.
    number: u64,
    /// The log must be durable through this LSN (the last appended when the round ran).
    lsn: Lsn,
    /// What may only leave once it is (acknowledgements, a follower's answers).
    messages: Vec<Message>,
}

/// One node of the replicated log, stepped by its caller.
pub struct Replica<M: StateMachine> {
    raw: RawNode<WalStorage>,
    machine: M,
    config: Config,
    wal: Arc<Wal>,
    outbox: Outbox,
    pending: Option<Pending>,
    /// Whether rounds leave the sync of their entries to the caller (`persist_in_background`).
    background_persist: bool,
    /// Rounds handled in the background mode and not yet durable, oldest first.
    unpersisted: VecDeque<Unpersisted>,
    /// Why a round failed: raft's state and the log's may then disagree (a `Ready` taken and
    /// not advanced, entries applied in part), so every later round and proposal is refused.
    failed: Option<String>,
    applied: Lsn,
    /// The hard state last written to the control file.
    stored: rwal_wal::HardState,
    /// Membership as of each change applied since the oldest checkpoint still useful.
    conf_history: Vec<Membership>,
    /// Ordered by receiver: the chunks of streams to several receivers leave in the same
    /// order every run (a seeded simulation replays the same schedule; a `HashMap`'s order
    /// changed from one process to the next).
    outgoing: BTreeMap<NodeId, Outgoing>,
    /// By receiver, the snapshot whose stream resumed where the receiver reported holding its
    /// bytes and then failed the check at the end: its streams start over unresumed until one
    /// passes that check (one entry per member at most).
    unresumable: BTreeMap<NodeId, Lsn>,
    /// By receiver, the snapshot whose stream failed part way: the next stream of it waits
    /// after its first chunk for the receiver's report of what it holds (one entry per member
    /// at most).
    restarting: BTreeMap<NodeId, Lsn>,
    incoming: Option<Incoming>,
    /// A snapshot received whole whose message raft-rs took: what `install_snapshot` resets
    /// the log to when raft hands it out.
    received: Option<Received>,
    pins: HashMap<NodeId, Pin>,
    /// The LSN of the snapshot last sent to each follower, while it has not answered past
    /// it: its pin stays there after a stream is given up (`update_pins`).
    snapshots_sent: HashMap<NodeId, Lsn>,
    leader: Option<NodeId>,
    ticks: u64,
    /// The tick of the last message from each peer: who is alive, for a leadership transfer.
    heard: HashMap<NodeId, u64>,
    /// Testing only: which acknowledgements leave before what they depend on is durable
    /// (appends', votes'): `break_ack_before_persist_of`.
    ack_before_persist: (bool, bool),
    /// The snapshot problem noted last (`note_snapshot_problem`), not to note it at every one
    /// of raft's attempts.
    snapshot_problem_noted: Option<String>,
    /// The followers whose snapshot stream was given up for stalling and noted since a stream
    /// to them last ended: noted once each, however many streams to a follower that stays
    /// away stall after it.
    stalls_noted: BTreeSet<NodeId>,
    /// The LSNs of the damaged records noted (`report_damage`), the highest
    /// `DAMAGE_NOTED_MAX`.
    damage_noted: BTreeSet<Lsn>,
    /// The tick of the last snapshot chunk addressed to this node: a snapshot received in part
    /// is dropped once its stream has been silent for long (`drop_silent_incoming`).
    incoming_heard: u64,
    /// This log's persisted LSN as last seen by `tick`, and the last tick it was seen to move
    /// or to have nothing waiting: whether this node's own disk keeps up
    /// (`refuse_voters_without_a_live_quorum`).
    persisted_seen: (Lsn, u64),
    log: Vec<String>,
    snapshots_installed: u64,
    /// Read points raft-rs confirmed: (request context, LSN).
    read_states: Vec<(Vec<u8>, Lsn)>,
    /// Followers whose snapshot stream failed, reported to raft-rs between rounds.
    failed_snapshots: Vec<NodeId>,
    /// What applied membership changes (or an installed snapshot) did to the peers, in order,
    /// not yet taken by [`Replica::take_peer_events`].
    peer_events: Vec<PeerEvent>,
    /// Held exclusively while a snapshot replaces the log; readers outside the replica's
    /// thread hold it shared while they read (see `Node::reader`).
    install_gate: Arc<RwLock<()>>,
    /// Checkpoints started here whose engine state another thread is writing.
    checkpoints_out: Arc<CheckpointsOut>,
    /// Whether a checkpoint raft wants (section 4.2 of docs/replication.md) is left in
    /// `own_checkpoint` for the driver to write on another thread, instead of written here.
    own_checkpoints_elsewhere: bool,
    own_checkpoint: Option<(PendingCheckpoint, EngineSnapshot)>,
    /// Leader changes not yet told to the engine, oldest first, when the driver tells them
    /// ([`Replica::tell_leader_changes_later`]); `None`: told as raft reports them.
    leader_news: Option<Vec<(Option<NodeId>, u64)>>,
    /// The snapshot stream (sender, LSN, epoch) whose refused chunk was last noted.
    chunk_refusal_noted: Option<(NodeId, Lsn, u64)>,
}

impl<M: StateMachine> std::fmt::Debug for Replica<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.config.id)
            .field("role", &self.role())
            .field("term", &self.term())
            .field("commit", &self.commit_lsn())
            .field("applied", &self.applied)
            .finish()
    }
}

impl<M: StateMachine> Replica<M> {
    /// Opens (or creates) the replica's log in `dir` and restores `machine` from it: the latest
    /// checkpoint's snapshot, then every committed record after it. The recovery modes that drop
    /// acknowledged records (`PointInTime`, `SkipCorrupted`) are refused: a replica must never
    /// forget what it acknowledged.
    pub fn open(
        dir: impl AsRef<Path>,
        options: Options,
        config: Config,
        bootstrap: Bootstrap,
        mut machine: M,
    ) -> Result<Replica<M>> {
        config.validate()?;
        match options.chosen_recovery_mode() {
            RecoveryMode::PointInTime | RecoveryMode::SkipCorrupted => {
                return Err(Error::invalid(
                    "recovery_mode",
                    "a replica may not drop records it acknowledged: use AbsoluteConsistency \
                     or TolerateTornTail",
                ))
            }
            RecoveryMode::AbsoluteConsistency | RecoveryMode::TolerateTornTail => {}
        }
        // Founding is asked for, never assumed: a member restarted with the same options after
        // losing its directory would otherwise found the cluster anew, and its vote could
        // elect a leader that lacks acknowledged writes. Checked before the log is created.
        let founding_refused = || {
            Error::invalid(
                "voters",
                "the directory holds no log: give the founding voters on the first start of a \
                 new cluster's members only, or join (a member that lost its log must be \
                 removed and added again as a new one)",
            )
        };
        let asks_nothing = matches!(&bootstrap, Bootstrap::Voters(v) if v.is_empty());
        if asks_nothing && !Wal::holds_log(dir.as_ref())? {
            return Err(founding_refused());
        }
        let wal = Arc::new(Wal::open(dir, options)?);
        if let Bootstrap::Voters(voters) = &bootstrap {
            let fresh = wal.last_lsn() == 0 && wal.latest_checkpoint().is_none();
            if fresh {
                if voters.is_empty() {
                    return Err(founding_refused());
                }
                if voters.contains(&0) {
                    return Err(Error::invalid("voters", "ids above 0"));
                }
                let mut conf = ConfState::default();
                conf.voters = voters.clone();
                // Refused before anything is written: a founding checkpoint stored with it
                // would outlive the failed store.
                let membership = codec::encode_membership_that_fits(1, &conf, "voters")?;
                let (blob, _) = codec::encode_snapshot(&conf, &codec::Addresses::new(), &[]);
                wal.reset_to_snapshot(1, 1, &blob)?;
                let hard = rwal_wal::HardState {
                    term: 1,
                    vote: 0,
                    commit: 1,
                };
                wal.store_replication_state(hard, Some(&membership))?;
            }
        }
        // A replica's log starts with a checkpoint (its founding's, or the first snapshot it
        // was sent): records without one are another program's log (a plain `Wal`), whose
        // records raft would take for its own entries and the engine never saw.
        if wal.latest_checkpoint().is_none() && wal.last_lsn() > 0 {
            return Err(Error::invalid(
                "dir",
                format!(
                    "{} holds records {}..={} but no checkpoint: it is not a replicated \
                     node's log (a node's log starts with the checkpoint of its founding or of \
                     its first snapshot)",
                    wal.dir().display(),
                    wal.first_lsn(),
                    wal.last_lsn()
                ),
            ));
        }
        let storage = WalStorage::open(wal.clone())?;
        let initial = raft::Storage::initial_state(&storage)?;
        let commit = initial.hard_state.commit;
        let mut conf_at = wal.first_lsn() - 1;
        // The memberships from the latest checkpoint's on, each with the LSN it took effect
        // at: a checkpoint between two changes carries the one of its LSN.
        let mut replayed: Vec<Membership> = Vec::new();
        // The members' addresses: those the checkpoint holds, then those the changes after it
        // carried. A node that opens learns them, as one that applies the changes does.
        let mut carried = codec::Addresses::new();
        // Restore the engine: the checkpoint's snapshot, then the committed records after it.
        if let Some(checkpoint) = wal.latest_checkpoint() {
            if let Some(head) = restore_from_checkpoint(&wal, &mut machine, checkpoint.lsn)? {
                carried.clone_from(&head.addresses);
                replayed.push(Membership {
                    at: checkpoint.lsn,
                    conf: head.conf,
                    addresses: head.addresses,
                });
            }
            let (_, membership) = wal.replication_state();
            if let Some((at, _)) = codec::decode_membership(&membership)? {
                conf_at = conf_at.max(at);
            }
            let mut reader = wal.reader(checkpoint.lsn + 1)?;
            while reader.next_lsn() <= commit {
                let Some(record) = reader.next()? else { break };
                if record.kind == rwal_wal::RecordKind::User {
                    machine
                        .apply(record.lsn, record.epoch, record.data)
                        .map_err(|e| Error::engine("apply", record.lsn, e))?;
                } else if let Some(last) = replayed.last() {
                    let entry =
                        codec::entry_of(record.lsn, record.epoch, record.kind, record.data)?;
                    if entry.get_entry_type() == EntryType::EntryConfChange {
                        let (next, cc) = replay_conf_change(&last.conf, &entry)?;
                        carry_address(&mut carried, &cc);
                        replayed.push(Membership {
                            at: record.lsn,
                            conf: next,
                            addresses: carried.clone(),
                        });
                    }
                }
            }
        }
        let stored = wal.replication_state().0;
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            // raft-rs draws the timeout from `thread_rng` in [min, max). Real nodes need the
            // spread (with equal timeouts two candidates split the vote again and again, as the
            // real-process test found); the simulation pins it (max = min + 1) and jitters each
            // node's ticks from its seed instead.
            min_election_tick: config.election_ticks,
            max_election_tick: config.election_ticks_max,
            applied: commit,
            max_size_per_msg: config.max_bytes_per_message,
            max_inflight_msgs: config.max_inflight_messages,
            max_uncommitted_size: config.max_uncommitted_bytes,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let conf_state = initial.conf_state.clone();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, storage, &logger)?;
        raw.store().set_applied(commit);
        let peer_events = peer_additions(&carried, &conf_state, config.id);
        let mut replica = Replica {
            raw,
            machine,
            config,
            wal,
            outbox: Outbox::default(),
            pending: None,
            background_persist: false,
            unpersisted: VecDeque::new(),
            failed: None,
            applied: commit,
            stored,
            peer_events,
            conf_history: conf_history(replayed, conf_at.min(commit), conf_state, carried),
            outgoing: BTreeMap::new(),
            unresumable: BTreeMap::new(),
            restarting: BTreeMap::new(),
            incoming: None,
            received: None,
            pins: HashMap::new(),
            snapshots_sent: HashMap::new(),
            leader: None,
            ticks: 0,
            heard: HashMap::new(),
            ack_before_persist: (false, false),
            snapshot_problem_noted: None,
            stalls_noted: BTreeSet::new(),
            damage_noted: BTreeSet::new(),
            incoming_heard: 0,
            persisted_seen: (0, 0),
            log: Vec::new(),
            snapshots_installed: 0,
            failed_snapshots: Vec::new(),
            read_states: Vec::new(),
            install_gate: Arc::new(RwLock::new(())),
            checkpoints_out: Arc::default(),
            own_checkpoints_elsewhere: false,
            own_checkpoint: None,
            leader_news: None,
            chunk_refusal_noted: None,
        };
        // raft-rs starts from `initial_state`, whose term is above the stored one when a crash
        // cut a term raise short (docs/replication.md section 2.3), and no `Ready` carries that
        // term until it changes again. Stored now: rounds compare raft's term and vote with the
        // stored ones to tell which must be done in full (`needs_foreground_round`), and until
        // then every round of the background mode would have been.
        let hs = replica.raw.raft.hard_state();
        if hs.term != replica.stored.term || hs.vote != replica.stored.vote {
            replica.store_hard_state_at(hs.term, hs.vote, commit, None)?;
        }
        Ok(replica)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The first retained LSN and the runs of equal terms among the log's entries from it on
    /// (`(first LSN, term)`, ascending), as raft's storage keeps them: the epoch of any entry
    /// from the first LSN to the last, without reading the log.
    pub(crate) fn epoch_runs(&self) -> (Lsn, Arc<Vec<(Lsn, u64)>>) {
        self.raw.store().epoch_runs()
    }

    /// The log under the replica (read it; do not append to it).
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// The engine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The engine, mutably.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match self.raw.raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
            StateRole::Follower => Role::Follower,
        }
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    /// The highest LSN known committed and durable in this node's log. Between
    /// [`handle_ready`](Replica::handle_ready) and [`finish_ready`](Replica::finish_ready) a
    /// follower may know of a commit past what it has made durable; it is not counted until the
    /// round's sync.
    pub fn commit_lsn(&self) -> Lsn {
        let log = &self.raw.raft.raft_log;
        log.committed.min(log.persisted)
    }

    /// The highest LSN passed to the engine.
    pub fn applied_lsn(&self) -> Lsn {
        self.applied
    }

    /// The membership this node runs with.
    pub fn membership(&self) -> ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    /// Whether this node leads and is handing its leadership over (`transfer_leadership`).
    pub fn transferring_leadership(&self) -> bool {
        self.handing_over_to().is_some()
    }

    /// The node this one, leading, hands its leadership over to, while it does.
    pub fn handing_over_to(&self) -> Option<NodeId> {
        match self.raw.raft.state {
            StateRole::Leader => self.raw.raft.lead_transferee,
            _ => None,
        }
    }

    /// Whether the membership has a single voter (a quorum of one: this node, when it leads).
    pub fn sole_voter(&self) -> bool {
        self.raw.raft.prs().is_singleton()
    }

    /// How far each peer has replicated, as the leader knows it: `(id, matched LSN)`.
    pub fn progress(&self) -> Vec<(NodeId, Lsn)> {
        let mut out: Vec<(NodeId, Lsn)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| (*id, pr.matched))
            .collect();
        out.sort_unstable();
        out
    }

    /// Snapshots received from a leader and installed since this replica was opened.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// Lines describing unusual events (dropped snapshot chunks, refused messages), oldest
    /// first; taking them empties the list.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    fn note(&mut self, line: String) {
        if self.log.len() < 1024 {
            self.log.push(line);
        }
    }

    /// Advances raft's clock by one tick and sends due snapshot chunks
    /// (`snapshot_chunks_per_tick` to each receiver). A tick that may start a campaign first
    /// finishes a round still out (as [`finish_ready`](Replica::finish_ready) would: its
    /// messages are queued for [`take_messages`](Replica::take_messages)) and syncs what
    /// background rounds left; if that fails, the replica fails as a round would. A replica that
    /// failed, or whose log was poisoned (a failed write or sync anywhere), does nothing.
    pub fn tick(&mut self) {
        self.tick_with_snapshot_room(&|_| SnapshotRoom::UNBOUNDED);
    }

    /// [`Replica::tick`], sending each receiver of a snapshot no more chunks than `room` says
    /// its transport takes now ([`crate::Transport::snapshot_room`]). A stream that gets no
    /// room, and whose queued chunks do not drain, for `snapshot_timeout_ticks` is abandoned
    /// like one that gets no answer.
    pub fn tick_with_snapshot_room(&mut self, room: &dyn Fn(NodeId) -> SnapshotRoom) {
        // A failed replica's clock stops: it must be opened again.
        if self.refuse_if_failed().is_err() {
            return;
        }
        self.ticks += 1;
        let log = &self.raw.raft.raft_log;
        // Moved, or nothing waiting: the disk keeps up as of this tick.
        if log.persisted != self.persisted_seen.0 || log.persisted >= log.last_index() {
            self.persisted_seen = (log.persisted, self.ticks);
        }
        let raft = &self.raw.raft;
        if raft.state == StateRole::Leader {
            // This tick may check the quorum and step down. raft-rs aborts if a round still out
            // is then advanced with messages queued (heartbeats of earlier ticks) on a node
            // that no longer leads: the round is finished first (found by review on
            // 2026-12-04). A replica that failed doing so (or before) is done.
            if raft.check_quorum
                && raft.election_elapsed + 1 >= raft.election_timeout()
                && self.finish_ready().is_err()
            {
                return;
            }
        } else if raft.election_elapsed + 1 >= raft.randomized_election_timeout()
            // This tick may start a campaign; a replica whose sync before it failed is done.
            && !self.persist_before_campaign()
        {
            return;
        }
        self.raw.tick();
        // The log may have been compacted off this thread (`Node::compact`, maintenance).
        self.raw.mut_store().forget_compacted();
        self.pump_snapshots(room);
        self.report_failed_snapshots();
        self.drop_silent_incoming();
    }

    /// Drops a snapshot received in part whose stream has been silent for twice as long as a
    /// sender waits before it gives a stream up: no chunk came, nor, while the snapshot is
    /// ahead of this node's applied log, any message of its sender (it failed over, or caught
    /// this node up from its log instead). Its file, up to `snapshot_bytes_max` bytes, would
    /// stay on the disk until another snapshot came.
    ///
    /// A part behind the applied log is not dropped sooner: its stream must still complete,
    /// since raft's message rides on it, and the leader learns from the answer to it where
    /// this node stands (the deterministic simulation, seed 170, stalled a follower for good
    /// when a first version dropped such a part at once).
    fn drop_silent_incoming(&mut self) {
        let silent = self.ticks.saturating_sub(self.incoming_heard);
        if silent > self.config.snapshot_timeout_ticks.saturating_mul(2) {
            if let Some(dropped) = self.incoming.take() {
                self.note(format!(
                    "dropped the part received of {}: nothing came for {silent} ticks",
                    dropped.progress()
                ));
            }
        }
    }

    /// Tells raft-rs of the snapshot streams that failed, so that it sends new ones; only
    /// between rounds (raft-rs takes no step while a `Ready` is out).
    fn report_failed_snapshots(&mut self) {
        if self.pending.is_some() {
            return;
        }
        for to in std::mem::take(&mut self.failed_snapshots) {
            self.raw.report_snapshot(to, SnapshotStatus::Failure);
        }
    }

    /// Proposes a user record; returns the LSN and epoch it will have if it commits. Refused with
    /// [`Error::NotLeader`] on a follower.
    pub fn propose(&mut self, data: &[u8]) -> Result<(Lsn, u64)> {
        self.finish_pending_round()?;
        let max = self
            .config
            .max_record_bytes
            .min(self.wal.max_record_bytes());
        if data.len() as u64 > max {
            // Refused here: a record the log or the transport cannot take would stop the
            // leader (and every leader after it) at its next round.
            return Err(Error::invalid(
                "data",
                format!(
                    "a record of {} bytes is over the limit of {max}",
                    data.len()
                ),
            ));
        }
        self.refuse_unless_leading()?;
        self.refuse_when_backlogged()?;
        self.raw
            .propose(codec::USER_CONTEXT.to_vec(), data.to_vec())
            .map_err(|e| match e {
                // On a leader raft-rs drops a proposal when the uncommitted bytes are at their
                // limit (or while it hands leadership over, refused above).
                raft::Error::ProposalDropped => Error::Backlogged {
                    uncommitted_bytes_max: self.config.max_uncommitted_bytes,
                },
                other => other.into(),
            })?;
        Ok((self.raw.raft.raft_log.last_index(), self.raw.raft.term))
    }

    /// `Backlogged` once the uncommitted entries, each counted at
    /// [`UNCOMMITTED_ENTRY_COST_BYTES`], fill `max_uncommitted_bytes`: a limit on their number,
    /// beside raft-rs's on their data. raft-rs counts only their data, and takes an empty entry
    /// whatever the count: with nothing committing (a hung disk, a lost quorum) empty or tiny
    /// proposals would pile up in memory without end. One entry is always taken, as raft-rs
    /// does.
    ///
    /// Counted from [`commit_lsn`](Replica::commit_lsn), what this node can apply, not from
    /// raft's commit index: on a leader whose own disk hangs the followers' copies still move
    /// raft's index, while every entry past the leader's durable LSN stays in memory
    /// (`WalStorage`'s recent entries). Counted from raft's index, such a leader took empty
    /// proposals without a bound (found by review on 2026-12-08).
    fn refuse_when_backlogged(&self) -> Result<()> {
        let log = &self.raw.raft.raft_log;
        let uncommitted = log.last_index().saturating_sub(self.commit_lsn());
        let cost = (uncommitted + 1).saturating_mul(UNCOMMITTED_ENTRY_COST_BYTES);
        if uncommitted > 0 && cost > self.config.max_uncommitted_bytes {
            return Err(Error::Backlogged {
                uncommitted_bytes_max: self.config.max_uncommitted_bytes,
            });
        }
        Ok(())
    }

    /// `NotLeader` unless this node leads and is not handing leadership over; while it is, the
    /// node it hands over to is named (raft-rs would drop the proposal).
    fn refuse_unless_leading(&self) -> Result<()> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(Error::NotLeader {
                leader: self.leader(),
            });
        }
        if let Some(successor) = self.raw.raft.lead_transferee {
            return Err(Error::NotLeader {
                leader: Some(successor),
            });
        }
        Ok(())
    }

    /// `NotYet` unless a majority of `voters`, the voters a change of them would leave, was
    /// heard from within the last election timeout (this node counts, unless its own disk has
    /// made nothing durable for as long with entries waiting): a change that commits
    /// into a membership without a live majority (a learner promoted while it is down, the
    /// removal of a live voter while another is down) stops the cluster until the silent
    /// voters come back, since nothing commits and no election can be won. The change entry
    /// itself commits under the old membership, so nothing stops it later (found by review
    /// on 2026-12-08; etcd's strict reconfiguration check refuses the same). A change that
    /// leaves the voters as they are (adding or removing a learner) is not looked at.
    fn refuse_voters_without_a_live_quorum(
        &self,
        change: MembershipChange,
        voters: &[NodeId],
    ) -> Result<()> {
        let voters_stay = voters.len() == self.membership().voters.len()
            && !matches!(change, MembershipChange::AddVoter(_));
        if matches!(change, MembershipChange::AddLearner(_)) || voters_stay {
            return Ok(());
        }
        let me = self.config.id;
        // This node counts as live unless its own log has entries it has not made durable
        // and has made nothing durable for `OWN_DISK_STALLED_ELECTIONS` election timeouts (a
        // hung disk, not a slow one): a leader that cannot persist cannot record the vote its
        // successor would need (the diff review on 2026-12-08). A hang that begins while
        // nothing waits is not seen here.
        let log = &self.raw.raft.raft_log;
        let stalled_after =
            (self.config.election_ticks_max as u64).saturating_mul(OWN_DISK_STALLED_ELECTIONS);
        let own_log_stalled = log.persisted < log.last_index()
            && self.ticks.saturating_sub(self.persisted_seen.1) > stalled_after;
        let heard_lately = |id: &NodeId| {
            (*id == me && !own_log_stalled)
                || self.heard.get(id).is_some_and(|tick| {
                    self.ticks.saturating_sub(*tick) <= self.config.election_ticks as u64
                })
        };
        let (live, silent): (Vec<NodeId>, Vec<NodeId>) =
            voters.iter().partition(|id| heard_lately(id));
        let needed = voters.len() / 2 + 1;
        if live.len() >= needed {
            return Ok(());
        }
        Err(Error::NotYet {
            what: "membership change",
            reason: format!(
                "the voters it would leave, {voters:?}, need {needed} of them to commit, and \
                 {silent:?} were not heard from within the last election timeout: the \
                 cluster would stop until they answer"
            ),
        })
    }

    /// Hands leadership to the voter `to`, or with `None` to the other voter with the most
    /// replicated log, among those heard from lately if any (raft's leader transfer): the
    /// leader brings the successor's log up to date, then tells it to start an election at
    /// once, which it wins without waiting for an election timeout. Meanwhile this
    /// node refuses proposals with `NotLeader` naming the successor; if it has not taken over
    /// within an election timeout, the transfer is abandoned and this node leads on. Returns
    /// the successor. [`Error::NotLeader`] on a follower; [`Error::InvalidArgument`] if `to` is
    /// this node or not a voter, or if there is no other voter.
    pub fn transfer_leadership(&mut self, to: Option<NodeId>) -> Result<NodeId> {
        self.finish_pending_round()?;
        if self.raw.raft.state != StateRole::Leader {
            return Err(Error::NotLeader {
                leader: self.leader(),
            });
        }
        let voters = self.membership().voters;
        let me = self.config.id;
        let to = match to {
            Some(to) if to == me || !voters.contains(&to) => {
                return Err(Error::invalid(
                    "to",
                    format!("node {to} is not another voter of this cluster"),
                ))
            }
            Some(to) => to,
            // A voter that is down but was up to date would never take over: voters heard
            // from within the last election timeout come first. (raft's `recent_active` is no
            // guide: check-quorum clears it for every peer at each election timeout.)
            None => {
                let alive = |id: &NodeId| {
                    self.heard
                        .get(id)
                        .is_some_and(|tick| self.ticks - tick <= self.config.election_ticks as u64)
                };
                self.raw
                    .raft
                    .prs()
                    .iter()
                    .filter(|(id, _)| **id != me && voters.contains(id))
                    .max_by_key(|(id, pr)| (alive(id), pr.matched, std::cmp::Reverse(**id)))
                    .map(|(id, _)| *id)
                    .ok_or_else(|| Error::invalid("to", "there is no other voter"))?
            }
        };
        self.raw.transfer_leader(to);
        Ok(to)
    }

    /// Asks for a linearizable read point (raft's ReadIndex): once the leader has confirmed
    /// with a quorum that it still leads, [`take_read_states`](Replica::take_read_states)
    /// returns `(context, lsn)`, and a read made after applying up to `lsn` sees every write
    /// committed before this call. On a follower the request goes to the leader. Without a
    /// leader, or on a leader that has not committed an entry of its term yet, raft-rs drops
    /// it without a word: ask again (the node does every 100 ms; a request still waiting on the
    /// leader is not added twice, raft-rs keys them by context).
    pub fn read_index(&mut self, context: Vec<u8>) {
        if self.finish_pending_round().is_ok() {
            self.raw.read_index(context);
        }
    }

    /// The read points confirmed since the last call.
    pub fn take_read_states(&mut self) -> Vec<(Vec<u8>, Lsn)> {
        std::mem::take(&mut self.read_states)
    }

    /// The read requests this node, leading, holds until a quorum confirms that it still
    /// leads: its own and those its followers sent it (none on a follower, which sends its
    /// reads to the leader).
    pub fn pending_reads(&self) -> usize {
        self.raw.raft.pending_read_count()
    }

    /// Proposes a membership change (one at a time: raft refuses a second while one is pending).
    /// A voter is added by promoting a learner, which is refused until the learner has
    /// replicated up to the commit LSN; a node that is not a learner yet is refused. A change
    /// that would change nothing (adding a member as what it already is, removing a node that
    /// is not a member) is refused, and so is making a learner of a voter (raft would demote
    /// it): remove it first. Returns the LSN and epoch the change entry will have if it
    /// commits, as [`propose`](Replica::propose) does for a record.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<(Lsn, u64)> {
        self.change_membership_at(change, None)
    }

    /// [`change_membership`](Replica::change_membership) with the address of the member it
    /// adds (a string its transport understands, at most [`MEMBER_ADDRESS_BYTES_MAX`] bytes),
    /// carried by the change's entry: every member that applies it and has no address for that
    /// node gives this one to its transport ([`crate::Transport::peer_added`]), so that any of
    /// them reaches the new member once it leads. Refused with a removal.
    pub fn change_membership_at(
        &mut self,
        change: MembershipChange,
        address: Option<&str>,
    ) -> Result<(Lsn, u64)> {
        if let Some(address) = address {
            if matches!(change, MembershipChange::Remove(_)) {
                return Err(Error::invalid(
                    "address",
                    "a removal takes no address: the members forget the removed one's",
                ));
            }
            if address.is_empty() || address.len() > MEMBER_ADDRESS_BYTES_MAX {
                return Err(Error::invalid(
                    "address",
                    format!(
                        "{} bytes, where an address takes 1 to {MEMBER_ADDRESS_BYTES_MAX}",
                        address.len()
                    ),
                ));
            }
        }
        self.finish_pending_round()?;
        self.refuse_unless_leading()?;
        let (change_type, id) = match change {
            MembershipChange::AddVoter(id) => (ConfChangeType::AddNode, id),
            MembershipChange::AddLearner(id) => (ConfChangeType::AddLearnerNode, id),
            MembershipChange::Remove(id) => (ConfChangeType::RemoveNode, id),
        };
        if id == 0 {
            return Err(Error::invalid("node", "node ids start at 1"));
        }
        // raft-rs does not refuse a change it will not make: it appends an empty entry in its
        // place. So what it would ignore is refused here, with the reason.
        if self.raw.raft.has_pending_conf() {
            return Err(Error::NotYet {
                what: "membership change",
                reason: format!(
                    "the entry at LSN {} may still change the membership and is not applied \
                     yet (a new leader's last inherited entry counts): try again once it is",
                    self.raw.raft.pending_conf_index
                ),
            });
        }
        if let Some(refusal) = change.refusal_in(&self.membership()) {
            return Err(Error::invalid("node", refusal));
        }
        if let MembershipChange::AddVoter(_) = change {
            // A learner, by now: promoted once it has caught up.
            let matched = self.raw.raft.prs().get(id).map_or(0, |pr| pr.matched);
            if matched < self.commit_lsn() {
                return Err(Error::NotYet {
                    what: "membership change",
                    reason: format!(
                        "learner {id} has replicated to {matched}, not yet to the commit LSN {}",
                        self.commit_lsn()
                    ),
                });
            }
        }
        // And what every replica would fail to apply (a cluster without voters, a membership
        // too large for the control file), which would stop each of them at that entry, at
        // every restart.
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = id;
        let after = match raft::Changer::new(self.raw.raft.prs()).simple(&[single]) {
            Ok((after, _)) => after.to_conf_state(),
            Err(e) => return Err(Error::invalid("membership change", e.to_string())),
        };
        codec::encode_membership_that_fits(0, &after, "membership change")?;
        self.refuse_voters_without_a_live_quorum(change, &after.voters)?;
        let mut cc = ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = id;
        // raft-rs carries the context without reading it; nodes of before 2026-12-05 ignore it.
        cc.context = address
            .map(|a| a.as_bytes().to_vec())
            .unwrap_or_default()
            .into();
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| match e {
                // On a leader raft-rs drops a proposal when the uncommitted bytes are at their
                // limit (or while it hands leadership over, refused above).
                raft::Error::ProposalDropped => Error::Backlogged {
                    uncommitted_bytes_max: self.config.max_uncommitted_bytes,
                },
                other => other.into(),
            })?;
        let lsn = self.raw.raft.raft_log.last_index();
        if lsn == before || self.raw.raft.pending_conf_index != lsn {
            // Checked above; raft-rs may have written an empty entry at `lsn` instead.
            return Err(Error::NotYet {
                what: "membership change",
                reason: "refused by raft: another change is still pending".into(),
            });
        }
        Ok((lsn, self.raw.raft.term))
    }

    /// Takes a message from another node. Snapshot chunks are checked and written to a file
    /// as they come; raft's snapshot message is only passed on once its snapshot is complete.
    pub fn step(&mut self, envelope: Envelope) {
        match envelope {
            Envelope::SnapshotChunk(chunk) => {
                if chunk.to != self.config.id {
                    return;
                }
                if chunk.data.is_empty() {
                    // A receiver's report of what it holds (no chunk of a snapshot is empty:
                    // a blob starts with a page of membership).
                    self.resume_snapshot_stream(&chunk);
                    return;
                }
                let stream = (chunk.from, chunk.lsn, chunk.epoch);
                let start = (chunk.offset == 0).then_some(chunk.total);
                // A refused stale chunk does not keep the part held alive.
                let accepted = match self.stale_first_chunk(&chunk) {
                    Some(refusal) => Err(refusal),
                    None => {
                        self.incoming_heard = self.ticks;
                        Incoming::accept(
                            &mut self.incoming,
                            chunk,
                            self.config.snapshot_bytes_max,
                            &self.wal,
                        )
                    }
                };
                match accepted {
                    // A chunk taken: the next refusal is news again.
                    Ok(()) => {
                        self.chunk_refusal_noted = None;
                        if let Some(total) = start {
                            self.report_snapshot_held(stream, total);
                        }
                    }
                    // Once per run of refusals: after one lost chunk, every later chunk of a
                    // large snapshot is refused too, until the stream starts over.
                    Err(_) if self.chunk_refusal_noted == Some(stream) => {}
                    Err(reason) => {
                        self.chunk_refusal_noted = Some(stream);
                        self.note(format!(
                            "{reason} (the refusals of this stream's chunks that follow in a row are \
                             not noted)"
                        ));
                    }
                }
            }
            Envelope::Raft(message) => {
                if message.to != self.config.id {
                    return;
                }
                if self.raw.raft.prs().get(message.from).is_some() {
                    self.heard.insert(message.from, self.ticks);
                }
                // The sender of the snapshot this node holds in part is heard from, and the
                // snapshot is still ahead of this node's log: its stream is alive. On a link
                // slower than a chunk per twice the timeout, chunks alone left silences between
                // them, the part was dropped, every later chunk refused, and each stream
                // started over the same way, for good (found by review on 2026-12-05); the
                // sender's heartbeats cross between chunks.
                let applied = self.applied_lsn();
                if self
                    .incoming
                    .as_ref()
                    .is_some_and(|i| i.from() == message.from && i.lsn() > applied)
                {
                    self.incoming_heard = self.ticks;
                }
                if message.get_msg_type() == MessageType::MsgSnapshot {
                    self.step_snapshot(message);
                } else {
                    self.step_raft(message);
                }
            }
        }
    }

    /// Why a first chunk must not replace the stream held, if it must not: it comes from a node
    /// other than the leader whose stream is held (a deposed leader still streaming), or from
    /// the same sender for an older snapshot (a delayed duplicate of an earlier stream's first
    /// chunk: a node's checkpoints only move forward). Either wiped the part held, up to
    /// `snapshot_bytes_max` bytes, and its stream started over (a review on 2026-12-05).
    fn stale_first_chunk(&self, chunk: &SnapshotChunk) -> Option<String> {
        let held = self.incoming.as_ref().filter(|_| chunk.offset == 0)?;
        if held.from() != chunk.from && self.leader() == Some(held.from()) {
            return Some(format!(
                "first chunk of snapshot {} from node {}, which does not lead: the stream of \
                 node {}, the leader, is kept",
                chunk.lsn,
                chunk.from,
                held.from()
            ));
        }
        (held.from() == chunk.from && chunk.lsn < held.lsn()).then(|| {
            format!(
                "first chunk of snapshot {} from node {}, older than its snapshot {} being \
                 received: a late copy, dropped",
                chunk.lsn,
                chunk.from,
                held.lsn()
            )
        })
    }

    /// Tells the sender of a stream (its first chunk just taken) how much of the snapshot this
    /// node holds: the sender resumes there if that is more than the chunk, instead of
    /// sending it all again, and sends on at once if it is not (it waits for this after a
    /// stream of the same snapshot failed).
    fn report_snapshot_held(&mut self, (from, lsn, epoch): (NodeId, Lsn, u64), total: u64) {
        if let Some((held, crc)) = Incoming::held(&self.incoming, from, lsn, epoch, total) {
            self.outbox.push(Envelope::SnapshotChunk(SnapshotChunk {
                from: self.config.id,
                to: from,
                lsn,
                epoch,
                offset: held,
                total,
                crc,
                data: Vec::new(),
            }));
        }
    }

    /// Resumes the stream to the sender of `report` where it says it holds the snapshot's
    /// bytes, if that stream is still being sent.
    fn resume_snapshot_stream(&mut self, report: &SnapshotChunk) {
        let Some(stream) = self.outgoing.get_mut(&report.from) else {
            return;
        };
        match stream.resume_at(report, self.ticks) {
            Ok(true) => self.note(format!(
                "snapshot {} to node {}: resumed at {} of {} bytes, which node {} holds",
                report.lsn, report.from, report.offset, report.total, report.from
            )),
            Ok(false) => {}
            Err(e) => self.note(format!(
                "snapshot {} to node {}: not resumed at {}: {e}",
                report.lsn, report.from, report.offset
            )),
        }
    }

    /// Passes raft's snapshot message on if the snapshot it describes was received whole, and
    /// keeps that snapshot's file for the install if raft takes it (and only then: a snapshot
    /// raft refuses, an older one, goes with its file).
    fn step_snapshot(&mut self, message: Message) {
        let (from, meta) = (message.from, message.get_snapshot().get_metadata().clone());
        let Some(received) = Incoming::take_if(&mut self.incoming, from, meta.index, meta.term)
        else {
            self.note(format!(
                "snapshot {} from node {from} arrived without its bytes; dropped",
                meta.index
            ));
            return;
        };
        self.step_raft(message);
        let taken = self
            .raw
            .raft
            .raft_log
            .unstable
            .snapshot
            .as_ref()
            .is_some_and(|pending| {
                let pending = pending.get_metadata();
                (pending.index, pending.term) == (meta.index, meta.term)
            });
        if taken {
            self.received = Some(received);
        }
    }

    /// Steps a raft message (a snapshot's once its bytes are here).
    fn step_raft(&mut self, message: Message) {
        if matches!(
            message.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && self.knows_no_membership()
        {
            // An empty replica (a node joining, or a member restarted on an empty
            // directory after it lost its disk) knows nothing it acknowledged: raft-rs
            // would grant any candidate its vote, and the vote of a member that lost
            // its log could elect a leader lacking acknowledged writes. It votes once
            // a leader sent it the membership (a snapshot), as a member it then is.
            self.note(format!(
                "a vote request from node {} (term {}) ignored: this node has no \
                 membership yet (it joins, or lost its log)",
                message.from, message.term
            ));
            return;
        }
        if let Some(what) = refused_from_a_peer(&message) {
            self.note(format!(
                "{what} from node {} dropped: no member sends one",
                message.from
            ));
            return;
        }
        if message.get_msg_type() == MessageType::MsgTimeoutNow && !self.persist_before_campaign() {
            return;
        }
        if self.finish_pending_round().is_err() {
            return;
        }
        if let Err(e) = self.raw.step(message) {
            self.note(format!("raft refused a message: {e}"));
        }
    }

    /// Whether this replica has no membership: no voter, no learner (an empty log that joins
    /// and was sent nothing yet).
    fn knows_no_membership(&self) -> bool {
        let conf = self.raw.raft.prs().conf();
        conf.voters().ids().is_empty() && conf.learners().is_empty()
    }

    /// Everything to send since the last call.
    pub fn take_messages(&mut self) -> Vec<Envelope> {
        self.outbox.take()
    }

    /// Whether `handle_ready` has work to do.
    pub fn has_ready(&self) -> bool {
        self.failed.is_none() && self.pending.is_none() && self.raw.has_ready()
    }

    /// After a failed round (an engine callback's error, the log's), or once its log is
    /// poisoned (`fail_if_log_unusable`), the replica is done: the caller drops it and opens it
    /// again, which recovers from the log.
    fn refuse_if_failed(&mut self) -> Result<()> {
        self.fail_if_log_unusable();
        match &self.failed {
            Some(reason) => Err(Error::Raft(format!(
                "the replica stopped after an error and must be opened again: {reason}"
            ))),
            None => Ok(()),
        }
    }

    /// Fails the replica if its log was poisoned outside a round: a checkpoint's write or sync
    /// (on this thread or the node's checkpoint thread), a compaction, a sync of the background
    /// persister. raft-rs, stepped on, would read the log and, when the poisoned log refused
    /// every read, got its error and panicked on it (`unexpected error` in `raft_log.rs`); a
    /// round appending would have failed cleanly, but a message or a proposal can come first
    /// (found by the simulation with disk failures on 2026-12-06). The log now answers for its
    /// durable records after a failure, which is what raft-rs reads; this check is what stops
    /// the replica acting on a log that can no longer store anything, and names the failure. A
    /// poisoning that lands after the check is met by the next call's check, or by the round's
    /// own append or sync.
    fn fail_if_log_unusable(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.wal.check_usable() {
                self.failed = Some(Error::Wal(e).to_string());
            }
        }
    }

    /// Notes a round's failure (see `failed`).
    fn note_failure<T>(&mut self, outcome: Result<T>) -> Result<T> {
        if let Err(e) = &outcome {
            self.failed = Some(e.to_string());
        }
        outcome
    }

    /// First half of a round: installs a snapshot from the leader, queues the leader's
    /// messages, applies the committed entries, and appends new entries to the log without
    /// making them durable yet. Returns false if there was nothing to do. Call
    /// [`finish_ready`](Replica::finish_ready) next.
    /// After an error the replica refuses every later round (it must be opened again).
    pub fn handle_ready(&mut self) -> Result<bool> {
        self.refuse_if_failed()?;
        let outcome = self.handle_ready_once();
        self.note_failure(outcome)
    }

    fn handle_ready_once(&mut self) -> Result<bool> {
        if self.pending.is_some() {
            return Ok(true);
        }
        if !self.raw.has_ready() {
            return Ok(false);
        }
        let background = self.background_persist && !self.needs_foreground_round();
        if !background && !self.unpersisted.is_empty() {
            // A round done in full must not overtake the ones still syncing (raft-rs takes its
            // `advance` as persisting every earlier round), nor cut entries they are syncing.
            self.persist_now_once()?;
        }
        let mut ready = self.raw.ready();
        let term_or_vote_changed = ready
            .hs()
            .is_some_and(|hs| hs.term != self.stored.term || hs.vote != self.stored.vote);
        // `needs_foreground_round` read the same state as this `Ready`, so this holds; were it
        // broken, the round would send votes or acknowledgements before the term, vote or
        // snapshot they depend on is durable. Checked in release builds too, before the round
        // changes anything (a review on 2026-12-05): the replica fails rather than risk that.
        if background && (term_or_vote_changed || !ready.snapshot().is_empty()) {
            return Err(Error::Raft(
                "a background round carries a new term, vote or snapshot (a bug): stopped \
                 before it changed anything"
                    .into(),
            ));
        }
        if let Some(ss) = ready.ss() {
            let leader = (ss.leader_id != 0).then_some(ss.leader_id);
            if leader != self.leader {
                self.leader = leader;
                let term = self.raw.raft.term;
                match &mut self.leader_news {
                    Some(news) => news.push((leader, term)),
                    None => self.machine.leader_changed(leader, term),
                }
            }
            if ss.raft_state != StateRole::Leader {
                self.outgoing.clear();
                self.pins.clear();
            }
        }
        for read in ready.take_read_states() {
            self.read_states.push((read.request_ctx, read.index));
        }
        // The leader's own messages (appends, heartbeats) may go before its entries are
        // durable: the leader persists in parallel with its followers (raft's rule).
        let messages = ready.take_messages();
        self.queue_messages(messages);
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(&snapshot)?;
        }
        // Committed entries before this round's sync, not after: raft hands out only entries
        // that are committed and already durable here, and their clients should not wait for
        // the next batch's sync.
        let committed = ready.take_committed_entries();
        self.apply_entries(committed)?;
        self.raw.mut_store().append(ready.entries())?;
        if background {
            if let Some(hs) = ready.hs() {
                self.raw.mut_store().set_hard_state(hs.clone());
            }
            let mut messages = ready.take_persisted_messages();
            if self.ack_before_persist != (false, false) {
                // Deliberately wrong, for the test of the checker (`sent_early`).
                let (early, later) = self.sent_early(messages);
                self.queue_messages(early);
                messages = later;
            }
            let number = ready.number();
            self.raw.advance_append_async(ready);
            self.unpersisted.push_back(Unpersisted {
                number,
                lsn: self.wal.last_lsn(),
                messages,
            });
            self.after_round()?;
            self.note_durable_once();
            return Ok(true);
        }
        let mut held_back = Vec::new();
        if self.ack_before_persist != (false, false) {
            // Deliberately wrong, for the test of the checker: acknowledgements leave before
            // the entries or the vote they depend on are durable.
            let (early, later) = self.sent_early(ready.take_persisted_messages());
            self.queue_messages(early);
            held_back = later;
        }
        self.pending = Some(Pending {
            ready,
            held_back,
            term_or_vote_changed,
            synced: false,
        });
        Ok(true)
    }

    /// Second half of a round: makes the appended entries durable (one group commit), then the
    /// term and vote if they changed, and only then sends the messages that depend on them
    /// (votes, append acknowledgements); applies the entries that this sync committed. Nothing
    /// to do if a tick finished the round already ([`tick`](Replica::tick)).
    /// After an error the replica refuses every later round (it must be opened again).
    pub fn finish_ready(&mut self) -> Result<()> {
        self.refuse_if_failed()?;
        let outcome = self
            .finish_sync_once()
            .and_then(|()| self.finish_ready_once());
        self.note_failure(outcome)
    }

    /// The durable part of [`finish_ready`](Replica::finish_ready), for a caller that sends
    /// the messages it queues (a follower's acknowledgements, votes) before the rest of the
    /// round: makes the round's entries, then its term and vote, durable. `finish_ready` must
    /// follow.
    pub fn finish_sync(&mut self) -> Result<()> {
        self.refuse_if_failed()?;
        let outcome = self.finish_sync_once();
        self.note_failure(outcome)
    }

    fn finish_sync_once(&mut self) -> Result<()> {
        let Some(pending) = self.pending.as_mut().filter(|p| !p.synced) else {
            return Ok(());
        };
        let hs = pending.ready.hs().cloned();
        let term_or_vote_changed = pending.term_or_vote_changed;
        let mut persisted = std::mem::take(&mut pending.held_back);
        persisted.extend(pending.ready.take_persisted_messages());
        pending.synced = true;
        self.raw.store().sync()?;
        self.raw.mut_store().forget_durable();
        if let Some(hs) = hs {
            self.raw.mut_store().set_hard_state(hs.clone());
            if term_or_vote_changed {
                self.store_hard_state(hs.term, hs.vote, None)?;
            }
        }
        self.queue_messages(persisted);
        Ok(())
    }

    fn finish_ready_once(&mut self) -> Result<()> {
        let Some(Pending { ready, .. }) = self.pending.take() else {
            return Ok(());
        };
        let mut light = self.raw.advance(ready);
        let messages = light.take_messages();
        self.queue_messages(messages);
        let committed = light.take_committed_entries();
        self.apply_entries(committed)?;
        self.after_round()
    }

    /// The bookkeeping after every round: raft learns what is applied, the commit is stored
    /// now and then, pins follow the followers, snapshot failures are reported, and a
    /// checkpoint raft wants is started.
    fn after_round(&mut self) -> Result<()> {
        self.raw.advance_apply_to(self.applied);
        if self.applied >= self.stored.commit + self.config.commit_store_interval {
            self.store_hard_state(self.raw.raft.term, self.raw.raft.vote, None)?;
        }
        self.update_pins();
        self.report_failed_snapshots();
        self.report_damage();
        self.checkpoint_if_wanted()?;
        Ok(())
    }

    /// Notes a record of the log found damaged when it was read for a follower (once per
    /// record: raft reads it again at every attempt until a checkpoint covers it).
    fn report_damage(&mut self) {
        let Some((lsn, problem)) = self.raw.store().take_damage() else {
            return;
        };
        if self.damage_noted.contains(&lsn) {
            return;
        }
        if self.damage_noted.len() >= DAMAGE_NOTED_MAX {
            self.damage_noted.pop_first();
        }
        self.damage_noted.insert(lsn);
        self.note(format!(
            "the record at LSN {lsn} of this node's log cannot be read ({problem}); followers \
             that need it are sent a checkpoint that covers it instead, written from the \
             engine's state if none does; the damaged copy stays in this log until compaction \
             removes its segment"
        ));
    }

    /// Notes a problem sending a snapshot (`line`), once for as long as the same `problem`
    /// repeats, whichever follower it hits (raft asks again at every attempt), until a snapshot
    /// reaches its follower.
    fn note_snapshot_problem(&mut self, problem: String, line: String) {
        if self.snapshot_problem_noted.as_ref() != Some(&problem) {
            self.note(line);
            self.snapshot_problem_noted = Some(problem);
        }
    }

    /// raft asked for a snapshot no checkpoint serves: write one now from the engine's state;
    /// raft asks again at its next attempt and finds it.
    fn checkpoint_if_wanted(&mut self) -> Result<()> {
        if let Some(problem) = self.raw.store().take_snapshot_problem() {
            let line = format!(
                "the latest checkpoint's snapshot cannot be sent: {problem}; raft asks again"
            );
            self.note_snapshot_problem(problem, line);
        }
        if self.raw.store().take_snapshot_wanted() && self.raw.raft.state == StateRole::Leader {
            if self.checkpoints_out.any() {
                // One is being written (this one's own, or a caller's): raft asks again.
                return Ok(());
            }
            let applied = self.applied;
            let floor = self.raw.store().snapshot_floor();
            if applied <= floor {
                // The damaged record is the last one applied: a checkpoint there would read
                // its epoch from it. An empty entry after it (a system record, as a new
                // leader's) moves the applied LSN past it; raft asks again meanwhile.
                if self.raw.raft.raft_log.last_index() <= floor {
                    let _ = self.raw.propose(Vec::new(), Vec::new());
                }
                return Ok(());
            }
            // A failure to write it (a full disk, no file descriptor left) is noted and the
            // checkpoint abandoned, like the engine's: raft asks again at its next attempt, and
            // the leader goes on leading meanwhile. A log that the failure poisoned fails the
            // next round's append anyway.
            let written = match self.machine.snapshot() {
                Ok(state) if self.own_checkpoints_elsewhere => self
                    .start_checkpoint(applied, state.len())
                    .map(|pending| self.own_checkpoint = Some((pending, state))),
                Ok(state) => self
                    .start_checkpoint(applied, state.len())
                    .and_then(|pending| state.write_into(pending)),
                Err(e) => Err(Error::engine("snapshot", applied, e)),
            };
            if let Err(e) = written {
                self.note(format!("{e}; no checkpoint written, raft asks again"));
            }
        }
        Ok(())
    }

    /// Switches the background persistence mode (docs/replication.md section 3.3). In it,
    /// [`handle_ready`](Replica::handle_ready) completes an ordinary round at once (no
    /// `finish_ready`) and leaves its entries appended but not synced; the messages that
    /// depend on them wait. The caller makes the log durable through
    /// [`unpersisted_lsn`](Replica::unpersisted_lsn) (on any thread: `Wal::commit`), then
    /// calls [`note_durable`](Replica::note_durable). Rounds that change the term or the vote,
    /// install a snapshot or cut the log are still done in full, after syncing whatever
    /// earlier rounds left.
    pub fn persist_in_background(&mut self, on: bool) {
        self.background_persist = on;
    }

    /// The LSN the log must be durable through for every round handled so far to be
    /// persisted; `None` when they are.
    pub fn unpersisted_lsn(&self) -> Option<Lsn> {
        self.unpersisted.back().map(|u| u.lsn)
    }

    /// Tells raft about the rounds the log's durable LSN now covers, and queues the messages
    /// that waited for them.
    pub fn note_durable(&mut self) {
        // raft-rs, told of what is durable, may send a lagging follower entries it reads.
        if self.refuse_if_failed().is_ok() && self.pending.is_none() {
            self.note_durable_once();
        }
    }

    /// Syncs every appended entry here and now, then [`note_durable`](Replica::note_durable).
    /// After an error the replica refuses every later round (it must be opened again).
    pub fn persist_now(&mut self) -> Result<()> {
        self.refuse_if_failed()?;
        if self.pending.is_some() {
            return Ok(());
        }
        let outcome = self.persist_now_once();
        self.note_failure(outcome)
    }

    fn persist_now_once(&mut self) -> Result<()> {
        self.raw.store().sync()?;
        self.note_durable_once();
        Ok(())
    }

    fn note_durable_once(&mut self) {
        let durable = self.wal.durable_lsn();
        let done = self
            .unpersisted
            .iter()
            .take_while(|u| u.lsn <= durable)
            .count();
        if done > 0 {
            let rounds: Vec<Unpersisted> = self.unpersisted.drain(..done).collect();
            let newest = rounds[done - 1].number;
            for round in rounds {
                self.queue_messages(round.messages);
            }
            self.raw.on_persist_ready(newest);
        }
        self.raw.mut_store().forget_durable();
    }

    /// Finishes a round whose first half ran (`handle_ready`) before raft-rs takes a step, a
    /// proposal or a request: it takes none while a `Ready` is out (stepped anyway, it panics
    /// on its unstable log or in `advance`). The node's thread never calls in between; a
    /// caller driving a `Replica` by hand may. Refused if the replica failed, now or before.
    fn finish_pending_round(&mut self) -> Result<()> {
        self.refuse_if_failed()?;
        if self.pending.is_some() {
            let outcome = self
                .finish_sync_once()
                .and_then(|()| self.finish_ready_once());
            if self.note_failure(outcome).is_err() {
                return self.refuse_if_failed();
            }
        }
        Ok(())
    }

    /// A sole voter's campaign makes it leader inside the call that starts it (a tick, a
    /// `MsgTimeoutNow`), and raft-rs then asserts that its whole log is persisted: a round out
    /// (the caller between `handle_ready` and `finish_ready`) is finished first, and what
    /// background rounds left is synced. A failure fails the replica (`failed`), and returns
    /// false: the campaign must not start (raft-rs would assert on the unsynced log, a panic in
    /// place of the disk's error). Returns false for a replica already failed too.
    fn persist_before_campaign(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.raw.raft.state == StateRole::Leader {
            return true;
        }
        let outcome = self
            .finish_sync_once()
            .and_then(|()| self.finish_ready_once())
            .and_then(|()| match self.unpersisted.is_empty() {
                true => Ok(()),
                false => self.persist_now_once(),
            });
        self.note_failure(outcome).is_ok()
    }

    /// Whether the next round must be done in full even in the background mode: it makes a
    /// term or vote durable, installs a snapshot, or cuts a divergent suffix of the log.
    fn needs_foreground_round(&self) -> bool {
        // Rounds waiting for a sync that does not end (a hung disk) are bounded: a follower's
        // every heartbeat made one more, holding its answer, without end (found by review on
        // 2026-12-05). Past the bound the next round waits for the sync itself, and on a hung
        // disk the node's thread stops there. Far above what a leader makes before its stall
        // limit (1 s by default) hands its leadership over (section 3.3).
        if self.unpersisted.len() >= UNPERSISTED_ROUNDS_MAX {
            return true;
        }
        let raft = &self.raw.raft;
        let hs = raft.hard_state();
        let cuts = raft
            .raft_log
            .unstable_entries()
            .first()
            .is_some_and(|e| e.index <= self.wal.last_lsn());
        hs.term != self.stored.term
            || hs.vote != self.stored.vote
            || self.raw.snap().is_some_and(|s| !s.is_empty())
            || cuts
    }

    /// Runs `handle_ready` and `finish_ready` until raft has nothing more.
    pub fn process(&mut self) -> Result<()> {
        while self.handle_ready()? {
            self.finish_ready()?;
        }
        Ok(())
    }

    /// Writes a checkpoint at `lsn` (at most the applied LSN) holding the engine's state as of
    /// it and the membership as of it; a follower that falls behind the compacted log is sent
    /// it. The state is required: a replicated log's checkpoint must be able to seed a replica.
    pub fn checkpoint(&mut self, lsn: Lsn, engine_state: &[u8]) -> Result<()> {
        let mut pending = self.start_checkpoint(lsn, engine_state.len() as u64)?;
        pending.write(engine_state)?;
        pending.finish()
    }

    /// [`checkpoint`](Replica::checkpoint) with an engine state of exactly `len` bytes read
    /// from `source` in chunks of 1 MiB, never held whole in memory. A source that ends sooner,
    /// gives more or fails is `InvalidArgument` on `source`, and nothing is kept.
    pub fn checkpoint_from(&mut self, lsn: Lsn, len: u64, source: &mut dyn Read) -> Result<()> {
        let mut pending = self.start_checkpoint(lsn, len)?;
        engine_snapshot::copy_exactly(source, len, &mut pending)?;
        pending.finish()
    }

    /// Starts a checkpoint at `lsn` whose engine state of `engine_bytes` bytes the caller writes
    /// and finishes, on any thread (see [`crate::checkpoint`]).
    pub(crate) fn start_checkpoint(
        &mut self,
        lsn: Lsn,
        engine_bytes: u64,
    ) -> Result<PendingCheckpoint> {
        if lsn > self.applied {
            return Err(Error::invalid(
                "lsn",
                format!("{lsn} is past the applied LSN {}", self.applied),
            ));
        }
        // Membership changes older than the newest one at or below the latest durable
        // checkpoint are no longer needed: no checkpoint may be taken below that one.
        if let Some(latest) = self.wal.latest_checkpoint() {
            let keep_from = self
                .conf_history
                .iter()
                .rposition(|m| m.at <= latest.lsn)
                .unwrap_or(0);
            self.conf_history.drain(..keep_from);
        }
        let Some(as_of) = self.conf_history.iter().rev().find(|m| m.at <= lsn) else {
            return Err(Error::invalid(
                "lsn",
                format!(
                    "{lsn} is before the oldest membership known ({})",
                    self.conf_history[0].at
                ),
            ));
        };
        let (membership, left_out) = codec::encode_snapshot(&as_of.conf, &as_of.addresses, &[]);
        if left_out > 0 {
            self.note(format!(
                "the checkpoint at {lsn} leaves out the addresses of {left_out} of its {} \
                 members: they take more than {} bytes; a node seeded by it knows only those \
                 its caller gives it",
                as_of.addresses.len(),
                codec::ADDRESS_TABLE_BYTES_MAX
            ));
        }
        let total = membership.len() as u64 + engine_bytes;
        let writer = self.wal.checkpoint_writer(lsn, total)?;
        if total > self.config.snapshot_bytes_max {
            // Each member bounds the snapshot it takes by its own limit, which this node
            // cannot know; its own is the best guess at theirs.
            self.note(format!(
                "the checkpoint at {lsn} holds {total} bytes, over this node's \
                 snapshot_bytes_max of {}: a member with the same limit refuses it as a \
                 snapshot, and cannot be caught up once the log before it is compacted",
                self.config.snapshot_bytes_max
            ));
        }
        // The membership is written with the engine's bytes, on the caller's thread: this one
        // writes nothing into the file (a slow disk would stop its heartbeats).
        Ok(PendingCheckpoint::new(
            writer,
            lsn,
            membership,
            &self.checkpoints_out,
        ))
    }

    /// From now on, a checkpoint raft wants is started here and left for
    /// [`Replica::take_own_checkpoint`]: the node writes it on another thread, so that a large
    /// engine state does not stop its heartbeats.
    pub(crate) fn write_own_checkpoints_elsewhere(&mut self) {
        self.own_checkpoints_elsewhere = true;
    }

    /// From now on, leader changes are told to the engine by
    /// [`Replica::tell_leader_changes`], which the driver calls once it has published its
    /// status: an engine that asks the driver who leads, from its `leader_changed`, then
    /// hears what it was just told, not the leader before.
    pub(crate) fn tell_leader_changes_later(&mut self) {
        self.leader_news.get_or_insert_with(Vec::new);
    }

    /// Tells the engine the leader changes noted since the last call, oldest first.
    pub(crate) fn tell_leader_changes(&mut self) {
        let Some(news) = self.leader_news.as_mut() else {
            return;
        };
        for (leader, term) in std::mem::take(news) {
            self.machine.leader_changed(leader, term);
        }
    }

    /// The checkpoint raft wanted, started, with the engine's state to write into it.
    pub(crate) fn take_own_checkpoint(&mut self) -> Option<(PendingCheckpoint, EngineSnapshot)> {
        self.own_checkpoint.take()
    }

    /// Removes log segments the latest checkpoint and the followers' pins no longer need.
    pub fn compact(&mut self) -> Result<rwal_wal::CompactionReport> {
        let report = self.wal.compact_now()?;
        self.raw.mut_store().forget_compacted();
        Ok(report)
    }

    /// The lock a reader outside the replica's thread holds shared while it reads, so that a
    /// snapshot install (which replaces the log and needs it unpinned) waits for it.
    pub(crate) fn install_gate(&self) -> Arc<RwLock<()>> {
        self.install_gate.clone()
    }

    /// Testing only: acknowledge before persisting. Breaks the one rule a replica must keep;
    /// it exists so that the simulation can show its checker catches the loss it causes.
    #[doc(hidden)]
    pub fn break_ack_before_persist(&mut self, broken: bool) {
        self.ack_before_persist = (broken, broken);
    }

    /// Testing only: [`break_ack_before_persist`](Replica::break_ack_before_persist) for the
    /// acknowledgements of appends, of votes, or both, so that the simulation can show that
    /// each kind of loss is caught by the check meant for it.
    #[doc(hidden)]
    pub fn break_ack_before_persist_of(&mut self, appends: bool, votes: bool) {
        self.ack_before_persist = (appends, votes);
    }

    /// The persisted messages the checker's mutants send before the sync, and the rest.
    fn sent_early(&self, messages: Vec<Message>) -> (Vec<Message>, Vec<Message>) {
        let (appends, votes) = self.ack_before_persist;
        messages.into_iter().partition(|m| match m.get_msg_type() {
            MessageType::MsgAppendResponse => appends,
            MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse => votes,
            _ => appends && votes,
        })
    }

    fn queue_messages(&mut self, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.start_snapshot_stream(message);
            } else {
                self.outbox
                    .push_raft(message, self.config.max_bytes_per_message);
            }
        }
    }

    fn start_snapshot_stream(&mut self, message: Message) {
        let to = message.to;
        let lsn = message.get_snapshot().get_metadata().index;
        let reader = match self.wal.open_snapshot() {
            Ok(Some(reader)) if reader.lsn() == lsn => reader,
            other => {
                // A newer checkpoint replaced it meanwhile: raft asks again.
                let found = other.map(|r| r.map(|r| r.lsn()));
                self.note(format!(
                    "snapshot {lsn} for node {to} is gone ({found:?}); raft will ask again"
                ));
                self.failed_snapshots.push(to);
                return;
            }
        };
        // Only members' entries are kept.
        let prs = self.raw.raft.prs();
        self.unresumable.retain(|id, _| prs.get(*id).is_some());
        self.restarting.retain(|id, _| prs.get(*id).is_some());
        // A stream of this snapshot to `to` resumed and failed the check at its end: the
        // receiver's checksum of what it held was wrong, or this file is damaged. This one
        // reads it all.
        let resumable = self.unresumable.get(&to) != Some(&lsn);
        if resumable {
            self.unresumable.remove(&to);
        }
        // A stream of it failed part way: `to` may hold a part, and says so once it has this
        // stream's first chunk (a node of before 2026-12-05 says nothing). Half the stall
        // time, at most 100 ticks: a first chunk that takes longer to cross the link than that
        // does not hold the others up for long.
        let hold_for_report = (self.restarting.remove(&to) == Some(lsn))
            .then(|| (self.config.snapshot_timeout_ticks / 2).clamp(1, 100));
        // The chunks go from the next tick on, paced by the transport's room (not known here:
        // a chunk sent now could meet a full queue, and the receiver refuses everything after a
        // missing first chunk).
        self.outgoing.insert(
            to,
            Outgoing::new(reader, message, self.ticks, resumable, hold_for_report),
        );
    }

    fn pump_snapshots(&mut self, room: &dyn Fn(NodeId) -> SnapshotRoom) {
        let mut failed = Vec::new();
        let mut done = Vec::new();
        // Streams that read their whole file and passed the check at its end.
        let mut checked = Vec::new();
        let timeout = self.config.snapshot_timeout_ticks;
        for (to, stream) in self.outgoing.iter_mut() {
            let room = stream.pace.look(room(*to), self.ticks);
            // Raft leaves the snapshot state once the follower acknowledges the snapshot (an
            // earlier copy, if this one is not finished: the rest is not sent), or is removed.
            let wanted = self.raw.raft.prs().get(*to).is_some_and(|pr| {
                pr.state == raft::ProgressState::Snapshot && pr.pending_snapshot == stream.lsn()
            });
            if !wanted {
                done.push(*to);
                continue;
            }
            // Once finished, until the transport's queue has drained, the wait for the
            // follower's answer has not really begun.
            if !stream.finished {
                // No room: the transport's queue for `to` is full, or `to` is not connected;
                // wait while the queue drains.
                let chunks = stream
                    .chunks_now(self.config.snapshot_chunks_per_tick, self.ticks)
                    .min(room);
                if chunks > 0 {
                    if let Err(e) = stream.pump(
                        self.config.id,
                        chunks,
                        self.config.snapshot_chunk_bytes,
                        self.ticks,
                        &mut self.outbox,
                    ) {
                        let resumed = stream.resumed().then(|| stream.lsn());
                        failed.push((*to, Some((e, resumed)), stream.lsn()));
                        continue;
                    }
                    if stream.finished && !stream.resumed() {
                        checked.push(*to);
                    }
                }
            }
            if stream.pace.stalled(self.ticks, timeout) {
                failed.push((*to, None, stream.lsn()));
            }
        }
        if !done.is_empty() {
            self.snapshot_problem_noted = None;
        }
        for to in done {
            self.outgoing.remove(&to);
            self.restarting.remove(&to);
            self.stalls_noted.remove(&to);
        }
        for to in checked {
            self.unresumable.remove(&to);
        }
        for (to, error, lsn) in failed {
            // Its next stream waits for `to`'s report after the first chunk: a stream that
            // failed part way left `to` a part, and one that failed its end's check left it all
            // but the last chunk.
            self.restarting.insert(to, lsn);
            match error {
                // A stream that skipped what its receiver reported holding failed the check at
                // the end: the receiver's checksum, or the file, is wrong. The next stream to
                // it reads the whole file, and finds the damage if it is the file's.
                Some((e, Some(lsn))) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.unresumable.insert(to, lsn);
                    self.note(format!(
                        "snapshot {lsn} to node {to}, resumed where node {to} reported holding \
                         its bytes, failed the check at its end ({e}): sent again from the start"
                    ));
                }
                Some((e, _)) => {
                    // Damage found at the end of a large snapshot (its checksum covers the
                    // whole body): a new checkpoint replaces it, as when the start is damaged.
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.raw.store().want_snapshot();
                    }
                    self.note_snapshot_problem(
                        e.to_string(),
                        format!("reading the snapshot for node {to}: {e}"),
                    );
                }
                // Noted once for each follower until a stream to it ends: one that stays away
                // makes every stream to it stall.
                None => {
                    if self.stalls_noted.insert(to) {
                        self.note(format!(
                            "snapshot {lsn} to node {to} made no progress for {} ticks: given \
                             up; raft sends it again, resumed where node {to} reports holding \
                             it",
                            self.config.snapshot_timeout_ticks
                        ));
                    }
                }
            }
            self.outgoing.remove(&to);
            self.failed_snapshots.push(to);
        }
    }

    fn install_snapshot(&mut self, snapshot: &raft::eraftpb::Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        let received = self
            .received
            .take()
            .filter(|r| (r.file.lsn(), r.file.epoch()) == (meta.index, meta.term))
            .ok_or_else(|| Error::BadSnapshot {
                reason: format!(
                    "raft installs snapshot {} of epoch {}, whose bytes were not received",
                    meta.index, meta.term
                ),
            })?;
        let (codec::SnapshotHead { conf, addresses }, _) = codec::decode_snapshot(&received.head)?;
        if &conf != meta.get_conf_state() {
            return Err(Error::BadSnapshot {
                reason: format!(
                    "snapshot {} names membership {:?} but its bytes hold {:?}",
                    meta.index,
                    meta.get_conf_state(),
                    conf
                ),
            });
        }
        // A membership the control file cannot hold would fail its store after the log was
        // reset to the snapshot, and every store after a restart: refused before anything
        // changes. An honest leader cannot send one (its proposals are checked the same way),
        // but the head of a snapshot may hold ten times as much (a review on 2026-12-05).
        codec::encode_membership_that_fits(meta.index, &conf, "snapshot membership").map_err(
            |e| Error::BadSnapshot {
                reason: format!("snapshot {}: {e}", meta.index),
            },
        )?;
        // The new log must not be pinned: checkpoints out on other threads are abandoned (they
        // would describe the log this replaces) and gone first.
        self.own_checkpoint = None;
        self.checkpoints_out.abandon_all();
        self.pins.clear();
        let gate = self.install_gate.clone();
        let _readers_out = gate.write();
        self.raw.mut_store().install_snapshot(meta, received.file)?;
        restore_from_checkpoint(&self.wal, &mut self.machine, meta.index)?;
        self.snapshots_installed += 1;
        self.applied = meta.index;
        self.note_removed_members(&conf);
        // A member the snapshot gives another address than this node learned was removed and
        // added back at it in the changes the snapshot covers: the transport forgets the old
        // one first, as applying those changes would have it do.
        if let Some(learned) = self.conf_history.last().map(|m| &m.addresses) {
            for (id, address) in &addresses {
                let moved = learned.get(id).is_some_and(|old| old != address);
                if moved && *id != self.config.id {
                    self.peer_events.push(PeerEvent::Removed(*id));
                }
            }
        }
        // The members' addresses it carries, as an open from it learns them: the transport
        // dials those it knows no address for.
        self.peer_events
            .extend(peer_additions(&addresses, &conf, self.config.id));
        self.conf_history = vec![Membership {
            at: meta.index,
            conf: conf.clone(),
            addresses,
        }];
        let term = self.raw.raft.term.max(meta.term);
        self.store_hard_state_at(term, self.raw.raft.vote, meta.index, Some(&conf))?;
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if codec::is_user(&entry) {
                        self.machine
                            .apply(entry.index, entry.term, &entry.data)
                            .map_err(|e| Error::engine("apply", entry.index, e))?;
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data).map_err(|e| {
                        Error::BadSnapshot {
                            reason: format!(
                                "membership change {} does not decode: {e}",
                                entry.index
                            ),
                        }
                    })?;
                    let conf = self.raw.apply_conf_change(&cc)?;
                    if self.raw.raft.state == StateRole::Leader
                        && !conf.voters.contains(&self.config.id)
                    {
                        // A leader removed from the voters steps down (raft-rs would go on
                        // leading without counting itself, and trip over its own missing
                        // progress); the remaining voters elect a new one.
                        let term = self.raw.raft.term;
                        self.raw.raft.become_follower(term, 0);
                    }
                    self.raw.mut_store().set_conf_state(conf.clone());
                    self.note_removed_members(&conf);
                    self.note_added_address(&cc);
                    let mut addresses = self
                        .conf_history
                        .last()
                        .map(|m| m.addresses.clone())
                        .unwrap_or_default();
                    carry_address(&mut addresses, &cc);
                    self.conf_history.push(Membership {
                        at: entry.index,
                        conf: conf.clone(),
                        addresses,
                    });
                    self.applied = entry.index;
                    let (term, vote) = (self.raw.raft.term, self.raw.raft.vote);
                    self.store_hard_state_at(term, vote, entry.index, Some(&conf))?;
                }
                EntryType::EntryConfChangeV2 => {
                    return Err(Error::Raft(format!(
                        "entry {} is a joint membership change, which this crate never proposes",
                        entry.index
                    )));
                }
            }
            self.applied = entry.index;
        }
        self.raw.store().set_applied(self.applied);
        Ok(())
    }

    /// Notes the members of the current membership that `next` no longer has (other than this
    /// node), before `next` becomes current.
    fn note_removed_members(&mut self, next: &ConfState) {
        let Some(Membership { conf: current, .. }) = self.conf_history.last() else {
            return;
        };
        let removed = current
            .voters
            .iter()
            .chain(&current.learners)
            .filter(|&&id| id != self.config.id && !is_member(next, id));
        for &id in removed {
            self.peer_events.push(PeerEvent::Removed(id));
        }
    }

    /// Notes the address an applied change that adds a member carries, unless the member is
    /// this node.
    fn note_added_address(&mut self, cc: &ConfChange) {
        if let Some((id, address)) = address_carried(cc) {
            if id != self.config.id {
                self.peer_events.push(PeerEvent::Added { id, address });
            }
        }
    }

    /// What the membership changes applied (and the snapshots installed) since the last call
    /// did to the peers, in the order applied: a transport forgets the removed members'
    /// addresses ([`crate::Transport::peer_removed`]) and learns those the changes and the
    /// snapshots carried ([`crate::Transport::peer_added`]).
    pub fn take_peer_events(&mut self) -> Vec<PeerEvent> {
        without_undone_additions(std::mem::take(&mut self.peer_events))
    }

    fn store_hard_state(&mut self, term: u64, vote: u64, conf: Option<&ConfState>) -> Result<()> {
        let commit = self.applied;
        self.store_hard_state_at(term, vote, commit, conf)
    }

    /// Writes term, vote, commit (the applied LSN: never above what this log holds durably)
    /// and, with a membership change, the membership, in one control-file write.
    fn store_hard_state_at(
        &mut self,
        term: u64,
        vote: u64,
        commit: Lsn,
        conf: Option<&ConfState>,
    ) -> Result<()> {
        let hard = rwal_wal::HardState { term, vote, commit };
        let membership = conf.map(|c| codec::encode_membership(commit, c));
        self.wal
            .store_replication_state(hard, membership.as_deref())?;
        self.stored = hard;
        Ok(())
    }

    /// The leader keeps, for each follower, a pin at what it has replicated (never above the
    /// commit LSN, which no truncation can cut), so that compaction leaves it the log it needs.
    fn update_pins(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            self.pins.clear();
            self.snapshots_sent.clear();
            return;
        }
        let commit = self.commit_lsn();
        let first = self.wal.first_lsn();
        let me = self.config.id;
        let sent = &mut self.snapshots_sent;
        let wanted: Vec<(NodeId, Lsn)> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, pr)| {
                // A follower being sent a snapshot needs the log after the snapshot's LSN
                // once it has installed it: held while the stream runs, so that compaction
                // does not send it back for another snapshot. Held on after the stream was
                // given up (raft-rs then probes from the follower's old match) until the
                // follower answers past it or is sent another: a stream is given up when it
                // makes no progress, also while the follower installs what it received
                // (a large state outlasts the snapshot timeout), and a checkpoint and
                // compaction meanwhile sent it back for another snapshot.
                let from = if pr.state == raft::ProgressState::Snapshot {
                    sent.insert(*id, pr.pending_snapshot);
                    pr.pending_snapshot
                } else {
                    match sent.get(id) {
                        Some(&snapshot) if pr.matched < snapshot => snapshot,
                        _ => {
                            sent.remove(id);
                            // raft-rs sets every follower's `matched` to 0 at an election:
                            // one that has not answered this leader yet (down, cut off) may
                            // need anything still retained, and is pinned at the first
                            // retained LSN until it answers (capped, as every pin). Left
                            // unpinned, a checkpoint and compaction sent a follower back
                            // for a snapshot that the log of its old leader had kept for it
                            // (found by a review of compaction, 2026-12-07).
                            if pr.matched == 0 {
                                first.saturating_sub(1)
                            } else {
                                pr.matched
                            }
                        }
                    }
                };
                (*id, from.min(commit))
            })
            .collect();
        self.pins
            .retain(|id, _| wanted.iter().any(|(w, _)| w == id));
        self.snapshots_sent
            .retain(|id, _| wanted.iter().any(|(w, _)| w == id));
        for (id, lsn) in wanted {
            // A pin keeps its own LSN too, and the follower needs only what follows `lsn`: one
            // that needs the first retained LSN is pinned there (compared as it was made: a
            // pin made at `first` for a follower at `first - 1` was released and made again
            // every round, with no pin in between).
            let lsn = if lsn + 1 == first { first } else { lsn };
            if let Some(pin) = self.pins.get(&id) {
                if pin.is_invalidated() {
                    // Its cap was exceeded: the follower will get a snapshot instead.
                    self.pins.remove(&id);
                    continue;
                }
                if pin.lsn() == lsn || pin.move_to(lsn).is_ok() {
                    continue;
                }
                self.pins.remove(&id);
            }
            if lsn + 1 < first {
                continue; // it needs a snapshot
            }
            let name = format!("replica {id}");
            let pin = match self.config.follower_pin_cap_bytes {
                Some(cap) => self.wal.pin_with_cap(&name, lsn, cap),
                None => self.wal.pin(&name, lsn),
            };
            if let Ok(pin) = pin {
                self.pins.insert(id, pin);
            }
        }
    }
}

/// What a peer's message is, if raft-rs must not be handed it: a kind no member sends, or a
/// malformed one raft-rs would stop the node on. Entries come into the log only through the
/// leader's own calls (`propose` and the membership calls, which check size, backlog and the
/// change, and refuse on a follower, so nothing is forwarded); raft-rs would append a peer's
/// proposal unchecked, and stops the node on an empty one. A read request carries its one
/// context entry, which raft-rs indexes without a check.
fn refused_from_a_peer(message: &Message) -> Option<&'static str> {
    match message.get_msg_type() {
        MessageType::MsgPropose => Some("a proposal"),
        MessageType::MsgReadIndex if message.entries.len() != 1 => {
            Some("a read request without exactly one context entry")
        }
        _ => None,
    }
}

/// Whether `id` is a voter or a learner of `conf`.
fn is_member(conf: &ConfState, id: NodeId) -> bool {
    conf.voters.contains(&id) || conf.learners.contains(&id)
}

/// The additions a transport is told of for `addresses`: members' only, never this node's own
/// (`own`).
fn peer_additions(addresses: &codec::Addresses, conf: &ConfState, own: NodeId) -> Vec<PeerEvent> {
    addresses
        .iter()
        .filter(|(id, _)| **id != own && is_member(conf, **id))
        .map(|(id, address)| PeerEvent::Added {
            id: *id,
            address: address.clone(),
        })
        .collect()
}

/// A membership as of the LSN it took effect at, with the addresses the changes up to it
/// carried: what a checkpoint at or past that LSN, and before the next change, holds.
#[derive(Debug, Clone)]
struct Membership {
    at: Lsn,
    conf: ConfState,
    addresses: codec::Addresses,
}

/// What the replay at open learns from change `cc`, as a transport that applies it learns:
/// a removal forgets the node's address, the first addition that carries one since teaches
/// it, and a later addition keeps it (the transport keeps an address it has, whatever a later
/// change carries, or none).
fn carry_address(carried: &mut BTreeMap<NodeId, String>, cc: &ConfChange) {
    if cc.get_change_type() == ConfChangeType::RemoveNode {
        carried.remove(&cc.node_id);
    } else if let Some((id, address)) = address_carried(cc) {
        carried.entry(id).or_insert(address);
    }
}

/// `events` without the additions that a later removal in them undoes: the transport would
/// dial a node that is no member (a follower applying both in one round).
fn without_undone_additions(events: Vec<PeerEvent>) -> Vec<PeerEvent> {
    let removed_after = |at: usize, id: NodeId| events[at + 1..].contains(&PeerEvent::Removed(id));
    let kept: Vec<bool> = events
        .iter()
        .enumerate()
        .map(|(at, event)| match event {
            PeerEvent::Added { id, .. } => !removed_after(at, *id),
            PeerEvent::Removed(_) => true,
        })
        .collect();
    events
        .into_iter()
        .zip(kept)
        .filter_map(|(event, kept)| kept.then_some(event))
        .collect()
}

/// The member a change adds and the address it carries (its context), if it adds one and
/// carries one. An address that is not UTF-8 (another program's entry) is passed over.
fn address_carried(cc: &ConfChange) -> Option<(NodeId, String)> {
    let adds = matches!(
        cc.get_change_type(),
        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode
    );
    if !adds || cc.context.is_empty() {
        return None;
    }
    // What `change_membership_at` would not have proposed (another program's entry) is no
    // address: a checkpoint could not hold it.
    if cc.context.len() > MEMBER_ADDRESS_BYTES_MAX {
        return None;
    }
    let address = std::str::from_utf8(&cc.context).ok()?;
    Some((cc.node_id, address.to_owned()))
}

/// The membership after `entry`, a simple membership change, applied to `conf` the way raft-rs
/// applies it outside joint consensus (which this crate never proposes): a voter added leaves
/// the learners, a learner added leaves the voters, a removed node leaves both.
fn replay_conf_change(conf: &ConfState, entry: &Entry) -> Result<(ConfState, ConfChange)> {
    let cc = ConfChange::parse_from_bytes(&entry.data).map_err(|e| Error::BadSnapshot {
        reason: format!("membership change {} does not decode: {e}", entry.index),
    })?;
    let id = cc.node_id;
    let mut next = conf.clone();
    next.voters.retain(|v| *v != id);
    next.learners.retain(|l| *l != id);
    match cc.get_change_type() {
        ConfChangeType::AddNode => next.voters.push(id),
        ConfChangeType::AddLearnerNode => next.learners.push(id),
        ConfChangeType::RemoveNode => {}
    }
    Ok((next, cc))
}

/// The membership history a replica opens with: the one `replayed` from the latest checkpoint
/// through the committed changes after it, if it ends where the control file's does (`at`,
/// `current`: compared as sets of ids); else the control file's alone (a checkpoint without a
/// snapshot blob, or a replay that disagrees), as before 2026-12-03, when a checkpoint below the
/// latest change was then refused until the engine applied past it.
fn conf_history(
    replayed: Vec<Membership>,
    at: Lsn,
    current: ConfState,
    addresses: codec::Addresses,
) -> Vec<Membership> {
    let same = |a: &ConfState, b: &ConfState| {
        // As sets: a founding list may name a node twice (kept as given in the founding
        // snapshot, and so in a replay from it), where raft-rs's membership, stored in the
        // control file, names it once; compared with the repeat, the two disagreed and the
        // history was lost (found by review on 2026-12-08).
        let ids = |v: &[NodeId]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        ids(&a.voters) == ids(&b.voters) && ids(&a.learners) == ids(&b.learners)
    };
    match replayed.last() {
        Some(last) if same(&last.conf, &current) => replayed,
        _ => {
            // The members' only: a replay that disagrees may not have seen a removal.
            let addresses = addresses
                .into_iter()
                .filter(|(id, _)| is_member(&current, *id))
                .collect();
            vec![Membership {
                at,
                conf: current,
                addresses,
            }]
        }
    }
}

/// Restores `machine` from the snapshot of the latest checkpoint, which must be at `lsn`, and
/// returns the membership and addresses it holds (`None`: the checkpoint has no snapshot). The engine reads
/// the state through a view of the file (`SnapshotReader::checked_bytes`, checksum checked):
/// the state is never copied into this process's memory, whatever its size.
fn restore_from_checkpoint<M: StateMachine>(
    wal: &Wal,
    machine: &mut M,
    lsn: Lsn,
) -> Result<Option<codec::SnapshotHead>> {
    let Some((checkpoint, reader)) = wal.open_latest_checkpoint()? else {
        return Ok(None);
    };
    if checkpoint.lsn != lsn {
        return Err(Error::BadSnapshot {
            reason: format!(
                "the latest checkpoint is at {}, not at {lsn} as expected",
                checkpoint.lsn
            ),
        });
    }
    let Some(reader) = reader else {
        return Ok(None);
    };
    let bytes = reader.checked_bytes().map_err(|e| Error::BadSnapshot {
        reason: format!("reading the latest snapshot: {e}"),
    })?;
    let (head, engine) = codec::decode_snapshot(bytes)?;
    machine
        .restore(checkpoint.lsn, checkpoint.epoch, engine)
        .map_err(|e| Error::engine("restore", checkpoint.lsn, e))?;
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(id: NodeId, address: &str) -> PeerEvent {
        PeerEvent::Added {
            id,
            address: address.to_owned(),
        }
    }

    /// An addition a later removal undoes is dropped (the transport would dial a node that
    /// is no member); one a removal comes before stays, and so does the order of the rest.
    #[test]
    fn an_addition_a_later_removal_undoes_is_not_passed_on() {
        let events = vec![
            added(4, "10.0.0.4:7001"),
            PeerEvent::Removed(5),
            added(5, "10.0.0.5:7001"),
            PeerEvent::Removed(4),
            added(6, "10.0.0.6:7001"),
        ];
        assert_eq!(
            without_undone_additions(events),
            vec![
                PeerEvent::Removed(5),
                added(5, "10.0.0.5:7001"),
                PeerEvent::Removed(4),
                added(6, "10.0.0.6:7001"),
            ]
        );
        assert_eq!(without_undone_additions(Vec::new()), Vec::new());
    }

    /// The replay learns what the transport learns applying the same changes: the first
    /// address since the last removal. A later addition with another address or none (a
    /// promotion) keeps it; a removal forgets it; an addition after it teaches again.
    #[test]
    fn the_replay_learns_the_first_address_since_the_last_removal() {
        let change = |kind: ConfChangeType, context: &str| {
            let mut cc = ConfChange::default();
            cc.set_change_type(kind);
            cc.node_id = 4;
            cc.context = context.as_bytes().to_vec().into();
            cc
        };
        let mut carried = BTreeMap::new();
        let learned = |carried: &BTreeMap<NodeId, String>| carried.get(&4).cloned();
        carry_address(&mut carried, &change(ConfChangeType::AddLearnerNode, "a:1"));
        assert_eq!(learned(&carried).as_deref(), Some("a:1"));
        carry_address(&mut carried, &change(ConfChangeType::AddNode, ""));
        assert_eq!(learned(&carried).as_deref(), Some("a:1"));
        carry_address(&mut carried, &change(ConfChangeType::AddNode, "b:2"));
        assert_eq!(learned(&carried).as_deref(), Some("a:1"));
        carry_address(&mut carried, &change(ConfChangeType::RemoveNode, ""));
        assert_eq!(learned(&carried), None);
        carry_address(&mut carried, &change(ConfChangeType::AddLearnerNode, "c:3"));
        assert_eq!(learned(&carried).as_deref(), Some("c:3"));
    }

    /// An address is read from an addition's context only, as UTF-8.
    #[test]
    fn only_an_addition_carries_an_address() {
        let change = |kind: ConfChangeType, context: &[u8]| {
            let mut cc = ConfChange::default();
            cc.set_change_type(kind);
            cc.node_id = 4;
            cc.context = context.to_vec().into();
            cc
        };
        let at = b"10.0.0.4:7001";
        assert_eq!(
            address_carried(&change(ConfChangeType::AddLearnerNode, at)),
            Some((4, "10.0.0.4:7001".to_owned()))
        );
        assert!(address_carried(&change(ConfChangeType::AddNode, at)).is_some());
        assert_eq!(
            address_carried(&change(ConfChangeType::RemoveNode, at)),
            None
        );
        assert_eq!(address_carried(&change(ConfChangeType::AddNode, b"")), None);
        assert_eq!(
            address_carried(&change(ConfChangeType::AddNode, &[0xff, 0xfe])),
            None
        );
    }
}
