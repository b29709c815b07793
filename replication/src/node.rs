//! A replica on its own thread: what an embedding engine uses. Many threads propose; the
//! node's thread batches their proposals into one raft round, sends the leader's appends to the
//! followers before it persists its own entries with one group commit, and applies committed
//! records to the engine.

use std::collections::HashMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use rwal_wal::{Backend, Lsn, Options, RecordKind, Wal};

use crate::checkpoint::PendingCheckpoint;
use crate::commit_waiters::CommitWaiters;
use crate::engine_snapshot::{self, EngineSnapshot};
use crate::error::{Error, Result};
use crate::persister::Persister;
use crate::replica::{Bootstrap, Config, MembershipChange, Replica, Role, StateMachine};
use crate::transport::{Envelope, Inbox, Transport};
use crate::{ConfState, NodeId};

/// How to open a [`Node`]. Made with [`NodeOptions::new`], then changed field by field (new
/// fields may come: the struct cannot be written as a literal outside this crate).
#[derive(Clone)]
#[non_exhaustive]
pub struct NodeOptions {
    /// The log's directory.
    pub dir: PathBuf,
    /// Options of the log under the node (its recovery mode must keep acknowledged records).
    /// Default: [`NodeOptions::default_wal`], the `Staged` backend.
    pub wal: Options,
    /// The replica's settings.
    pub config: Config,
    /// How to start if the log is new.
    pub bootstrap: Bootstrap,
    /// Real time per raft tick (default 10 ms: an election after 100 ms of silence); above 0,
    /// at most [`TICK_INTERVAL_MAX`].
    pub tick_interval: Duration,
    /// Proposals waiting for the node's thread before `propose` fails with [`Error::Busy`];
    /// and as many other requests (read barriers, leadership transfers, membership changes,
    /// checkpoints) before those fail with it too.
    pub pending_proposals_max: usize,
    /// Envelopes from other nodes waiting for the node's thread; more are dropped (raft
    /// resends).
    pub pending_envelopes_max: usize,
    /// Bytes of those envelopes ([`Envelope::bytes_held`]) waiting at most: more are dropped
    /// too (and logged through `log`), except into an empty queue (an envelope larger than this
    /// still gets through, alone). `None` (the default): `max_inflight_messages` appends of
    /// `max_bytes_per_message`, one record of `max_record_bytes`, and 64 snapshot chunks of
    /// `snapshot_chunk_bytes` (the TCP transport's lane), 336 MiB with the defaults: a leader's
    /// full window of records of a few hundred bytes or more fits. Smaller records (each also
    /// holds about 100 bytes of structure) or records above `max_bytes_per_message` (one per
    /// append) can fill it; what is dropped, raft resends.
    pub pending_envelope_bytes_max: Option<usize>,
    /// Receives the node's log lines with their severity (snapshots refused or dropped,
    /// messages raft refused, a stalled sync, the node's failure), called on the node's
    /// thread and on the threads writing checkpoints raft asks for; `None`: they are dropped.
    pub log: Option<NodeLog>,
    /// How long a sync of the leader's log may run on the persister thread before the leader
    /// hands its leadership to the most up-to-date other voter, and again after each further
    /// such stretch while the sync has not returned (default 1 s, and never less than the
    /// longest election timeout, `tick_interval` times `config.election_ticks_max`; `None`:
    /// never). A leader applies only what its own log holds durably, so a leader whose disk
    /// hangs commits nothing, while its thread, free of the sync, would heartbeat on and keep
    /// the followers from electing another. A node whose disk hangs cannot close either: its
    /// `close` waits for the sync.
    pub sync_stall_limit: Option<Duration>,
    /// How long a snapshot stream to a follower may go without progress before the leader
    /// abandons it (raft then sends a new one), rounded up to whole ticks: it replaces
    /// `config.snapshot_timeout_ticks` (`None`, the default: that, 50 ticks, half a second at
    /// 10 ms ticks). A link that carries less than about a third of the socket's send buffer
    /// in that time stalls every stream (docs/replication.md section 4.1): raise it for slow
    /// links, on every member (any may lead, and a follower gives up a stream that stays
    /// silent for twice its own timeout).
    pub snapshot_timeout: Option<Duration>,
}

/// `timeout` in ticks of `tick`, rounded up; refused if zero.
fn snapshot_timeout_ticks(timeout: Duration, tick: Duration) -> Result<u64> {
    if timeout.is_zero() {
        return Err(Error::invalid(
            "snapshot_timeout",
            "a snapshot timeout must be above 0 (None: the configured ticks)",
        ));
    }
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos());
    Ok(u64::try_from(ticks).unwrap_or(u64::MAX))
}

/// A receiver of a node's log lines.
pub type NodeLog = Arc<dyn Fn(Severity, &str) + Send + Sync>;

/// How much a node's log line matters to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The node failed, or could not do what it must (close its log, start a thread).
    Error,
    /// Something was refused, dropped or retried: the node goes on, but an operator may want
    /// to look (a snapshot refused, messages dropped by a full inbox, a stalled sync).
    Warning,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("dir", &self.dir)
            .field("wal", &self.wal)
            .field("config", &self.config)
            .field("bootstrap", &self.bootstrap)
            .field("tick_interval", &self.tick_interval)
            .field("pending_proposals_max", &self.pending_proposals_max)
            .field("pending_envelopes_max", &self.pending_envelopes_max)
            .field(
                "pending_envelope_bytes_max",
                &self.pending_envelope_bytes_max,
            )
            .field("log", &self.log.is_some())
            .field("sync_stall_limit", &self.sync_stall_limit)
            .field("snapshot_timeout", &self.snapshot_timeout)
            .finish()
    }
}

impl NodeOptions {
    /// Defaults for node `id` with its log in `dir`.
    pub fn new(id: NodeId, dir: impl Into<PathBuf>, bootstrap: Bootstrap) -> NodeOptions {
        NodeOptions {
            dir: dir.into(),
            wal: NodeOptions::default_wal(),
            config: Config::new(id),
            bootstrap,
            tick_interval: Duration::from_millis(10),
            pending_proposals_max: 65536,
            pending_envelopes_max: 65536,
            pending_envelope_bytes_max: None,
            log: None,
            sync_stall_limit: Some(Duration::from_secs(1)),
            snapshot_timeout: None,
        }
    }

    /// The log options a node starts from: the log's defaults with the `Staged` backend
    /// instead of `Mmap`. A replica syncs its log at every round, and a sync of pages written
    /// through a shared mapping write-protects each of them again, one TLB shootdown per page
    /// across every CPU the process runs on: with three nodes on loopback that was half of the
    /// CPU time spent in `fdatasync`, and `Staged` committed 16 and 64 clients' records
    /// 20-30% faster, and one client's 25% sooner (docs/replication.md section 3.4).
    pub fn default_wal() -> Options {
        Options::new().backend(Backend::Staged)
    }
}

/// What [`Node::propose_and_wait_tracked`] returns: the outcome, and where the record went.
#[derive(Debug)]
pub struct TrackedProposal {
    /// The LSN and epoch the node's thread proposed the record at, whatever happened after;
    /// `None` if it was not proposed (and never will be), or with an [`Error::Raft`] that says
    /// the node's thread panicked while proposing it, if that is unknown.
    pub proposed: Option<(Lsn, u64)>,
    /// The outcome, as [`Node::propose_and_wait`] returns it.
    pub outcome: Result<(Lsn, u64)>,
}

/// What a node reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// The node's id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// While this node, leading, hands its leadership over: the node it hands it to (it
    /// refuses proposals meanwhile, with [`Error::NotLeader`] naming that node).
    pub handing_over_to: Option<NodeId>,
    /// The highest LSN known committed.
    pub commit_lsn: Lsn,
    /// The highest LSN applied to the engine.
    pub applied_lsn: Lsn,
    /// The oldest LSN its log retains (older ones are in a checkpoint). Read from the log
    /// when [`Node::status`] is called, as `last_lsn` is; the other fields are as the node's
    /// thread last published them (at every round). So while a snapshot install runs, the
    /// first LSN may already be past `commit_lsn + 1` and `applied_lsn + 1` for a moment.
    pub first_lsn: Lsn,
    /// The newest LSN in its log.
    pub last_lsn: Lsn,
    /// The membership it runs with.
    pub membership: ConfState,
    /// On the leader, how far each member has replicated.
    pub progress: Vec<(NodeId, Lsn)>,
    /// On the leader, the linearizable reads ([`Node::read_barrier`]: its own and those its
    /// followers sent it) waiting for a quorum to confirm that it still leads; 0 elsewhere.
    pub pending_reads: usize,
    /// Why the node's thread stopped, if it did.
    pub failure: Option<String>,
}

type Reply<T> = SyncSender<Result<T>>;

/// A linearizable read waiting on the node's thread for its read point.
struct PendingRead {
    deadline: Instant,
    reply: Reply<Lsn>,
    /// What raft-rs answers it by.
    context: Vec<u8>,
    /// When it was last asked of raft.
    asked: Instant,
}

/// How long a read waits for its read point before it is asked of raft again.
const READ_ASKED_AGAIN_AFTER: Duration = Duration::from_millis(100);

enum Request {
    Propose(Vec<u8>, Reply<(Lsn, u64)>),
    ProposeAndWait(Vec<u8>, ProposalReply),
    Membership(MembershipChange, Option<String>, Reply<(Lsn, u64)>),
    TransferLeadership(Option<NodeId>, Reply<NodeId>),
    StartCheckpoint(Lsn, u64, Reply<PendingCheckpoint>),
    ReadIndex(Instant, Reply<Lsn>),
}

/// Where the node's thread leaves the outcome of a `propose_and_wait`.
struct Proposal {
    state: Mutex<ProposalState>,
    caller: std::thread::Thread,
}

#[derive(Default)]
struct ProposalState {
    outcome: Option<Result<(Lsn, u64)>>,
    /// The caller's timeout passed before the node's thread took the proposal: it is never
    /// proposed. Set and read under the same lock as the proposing, so that a caller told
    /// `Timeout` knows the record was not proposed.
    abandoned: bool,
    /// Where the node's thread registered the caller to be woken at the entry's commit (LSN,
    /// ticket), set with an `Ok` outcome under the same lock: a caller that returns before
    /// that commit takes the registration back, which would otherwise stay until the commit
    /// passed the LSN, perhaps never (an isolated leader's entry).
    registered: Option<(Lsn, u64)>,
}

/// The node's side of a [`Proposal`]: answers [`Error::Closed`] if dropped unanswered (the
/// node stopped, or its thread panicked).
struct ProposalReply(Option<Arc<Proposal>>);

impl ProposalReply {
    fn new(proposal: Arc<Proposal>) -> ProposalReply {
        ProposalReply(Some(proposal))
    }

    /// Proposes with `propose` unless the caller gave up, and leaves the outcome for the
    /// caller. A proposal that got an LSN wakes its caller at commit (registered with
    /// `waiters`), any other outcome at once. The outcome is stored first: a caller woken
    /// before it is there would park again. The reply stays armed until then: should
    /// `propose` panic, dropping it answers the caller (see `Drop`) instead of leaving it
    /// parked to its deadline.
    fn propose_with(
        mut self,
        propose: impl FnOnce() -> Result<(Lsn, u64)>,
        waiters: &CommitWaiters,
    ) {
        let Some(proposal) = self.0.clone() else {
            return;
        };
        let lsn = {
            let mut state = proposal.state.lock();
            if state.abandoned {
                self.0 = None;
                return;
            }
            let outcome = propose();
            let lsn = outcome.as_ref().ok().map(|(lsn, _)| *lsn);
            state.outcome = Some(outcome);
            self.0 = None;
            // Registered under the lock, so that the caller finds the ticket with the
            // outcome: the registry's lock is never held while this one is taken.
            if let Some(lsn) = lsn {
                state.registered = waiters
                    .register(lsn, proposal.caller.clone())
                    .map(|ticket| (lsn, ticket));
            }
            lsn
        };
        if lsn.is_none() {
            proposal.caller.unpark();
        }
    }
}

impl Drop for ProposalReply {
    fn drop(&mut self) {
        if let Some(proposal) = self.0.take() {
            // Unanswered: the node stopped before its thread took the proposal, or that thread
            // panicked while proposing it, when whether raft took it is unknown.
            let outcome = if std::thread::panicking() {
                Error::Raft(
                    "the node's thread panicked while proposing the record: whether it was \
                     proposed is unknown"
                        .to_string(),
                )
            } else {
                Error::Closed
            };
            proposal.state.lock().outcome = Some(Err(outcome));
            proposal.caller.unpark();
        }
    }
}

#[derive(Default)]
struct Queue {
    envelopes: Vec<Envelope>,
    requests: Vec<Request>,
    proposals: usize,
    /// The data of the proposals in `requests`, in bytes.
    proposal_bytes: usize,
    stop: bool,
    /// The persister finished a sync (or failed).
    synced: bool,
    /// [`Envelope::bytes_held`] of `envelopes`.
    envelope_bytes: usize,
    dropped_envelopes: u64,
}

impl Queue {
    /// Queues `envelope` (holding `bytes`, [`Envelope::bytes_held`]) unless the queue is at
    /// `count_max` envelopes, or it is not empty and `envelope` would take it past `bytes_max`
    /// bytes; whether it did.
    fn admit(
        &mut self,
        envelope: Envelope,
        bytes: usize,
        count_max: usize,
        bytes_max: usize,
    ) -> bool {
        let fits = self.envelopes.len() < count_max
            && (self.envelopes.is_empty()
                || self.envelope_bytes.saturating_add(bytes) <= bytes_max);
        if fits {
            self.envelope_bytes += bytes;
            self.envelopes.push(envelope);
        } else {
            self.dropped_envelopes += 1;
        }
        fits
    }

    /// Takes the queued envelopes, and how many were dropped since the last take.
    fn take_envelopes(&mut self) -> (Vec<Envelope>, u64) {
        self.envelope_bytes = 0;
        let dropped = std::mem::take(&mut self.dropped_envelopes);
        (std::mem::take(&mut self.envelopes), dropped)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    queue_cond: Condvar,
    status: Mutex<NodeStatus>,
    status_cond: Condvar,
    /// Callers of `wait_committed`, woken when the commit passes their LSN.
    waiters: CommitWaiters,
    /// The epochs of committed entries, where `wait_committed` reads its entry's.
    committed_epochs: Mutex<CommittedEpochs>,
    closed: AtomicBool,
    pending_envelopes_max: usize,
    pending_envelope_bytes_max: usize,
    /// The node's thread, once it runs: calls that wait for it refuse to run on it.
    thread: std::sync::OnceLock<std::thread::ThreadId>,
    /// Set by a close made on the node's own thread, which cannot wait for the thread's end:
    /// the thread closes the log itself as it ends.
    close_log_at_end: AtomicBool,
    /// Set once the log is closed: readers then answer `Closed` even with records buffered or
    /// at the commit LSN, where they would not touch the log.
    log_closed: AtomicBool,
}

/// The epochs of the committed entries still in the log, as the node's thread last published
/// them: a caller of `wait_committed` finds its entry's epoch here, without the log's locks and
/// the checksums of the up to 63 records a read of the log passes on its way to an entry (that
/// read was 9% of all the CPU `rwal bench --replicated 3` used at 64 clients, on 2026-12-07).
/// Committed entries never change, so a snapshot published at or after an entry's commit
/// answers for it for good; entries compacted away or past the commit are read from the log.
#[derive(Debug, Default)]
struct CommittedEpochs {
    commit_lsn: Lsn,
    first_lsn: Lsn,
    /// `(first LSN, term)` of each run of equal terms from `first_lsn` on (raft's storage's,
    /// shared: copied only when it changes).
    runs: Arc<Vec<(Lsn, u64)>>,
}

impl CommittedEpochs {
    fn of<M: StateMachine>(replica: &Replica<M>) -> CommittedEpochs {
        let (first_lsn, runs) = replica.epoch_runs();
        CommittedEpochs {
            commit_lsn: replica.commit_lsn(),
            first_lsn,
            runs,
        }
    }

    /// The epoch of the committed entry at `lsn`, if this snapshot answers for it.
    fn epoch_of(&self, lsn: Lsn) -> Option<u64> {
        if lsn > self.commit_lsn {
            return None;
        }
        crate::storage::epoch_in_runs(&self.runs, self.first_lsn, lsn)
    }
}

impl Shared {
    /// Whether calls are refused with `Closed`: the node is stopping, or its thread stopped.
    /// Checked under the queue lock (`queue` is its guard): the thread sets `closed` before it
    /// answers what is queued under that lock, so a request is either answered or refused.
    fn refuses(&self, queue: &Queue) -> bool {
        queue.stop || self.closed.load(Ordering::Acquire)
    }
}

impl Inbox for Shared {
    fn deliver(&self, batch: Vec<Envelope>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        // Sized before the lock: a frame of small records holds many entries.
        let sizes: Vec<usize> = batch.iter().map(Envelope::bytes_held).collect();
        let mut queue = self.queue.lock();
        for (envelope, bytes) in batch.into_iter().zip(sizes) {
            queue.admit(
                envelope,
                bytes,
                self.pending_envelopes_max,
                self.pending_envelope_bytes_max,
            );
        }
        drop(queue);
        self.queue_cond.notify_one();
        true
    }
}

/// A replica running on its own thread. Every method takes `&self` and may be called from any
/// thread; the engine's [`StateMachine`] is called on the node's thread. Calls that wait for
/// that thread (`propose`, `propose_and_wait`, `wait_committed`, `read_barrier`,
/// `change_membership`, `transfer_leadership`, `checkpoint`, `close`) fail with
/// [`Error::InvalidArgument`] when made on it, from the state machine, instead of waiting for
/// themselves (a `close` there still stops the node, once the state machine returns); so does
/// `compact`, which would run in the middle of the thread's round.
pub struct Node {
    shared: Arc<Shared>,
    wal: Arc<Wal>,
    install_gate: Arc<RwLock<()>>,
    id: NodeId,
    pending_proposals_max: usize,
    /// The bytes of data proposals may hold in the queue (`Config::max_uncommitted_bytes`): a
    /// proposal whose caller gave up stays queued until the node's thread takes it.
    pending_proposal_bytes_max: usize,
    /// Taken by the first stop, behind a lock so that a stop can go through `&self`
    /// ([`Node::shut_down`]).
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("status", &self.status())
            .finish()
    }
}

impl Node {
    /// Opens the node's log (restoring `machine` from it) and starts its thread. Register
    /// [`Node::inbox`] with the transport so that other nodes' messages reach it.
    pub fn open<M: StateMachine, T: Transport>(
        options: NodeOptions,
        machine: M,
        transport: T,
    ) -> Result<Node> {
        if options.tick_interval.is_zero() {
            return Err(Error::invalid(
                "tick_interval",
                "tick_interval must be above 0",
            ));
        }
        if options.pending_proposals_max == 0 {
            return Err(Error::invalid(
                "pending_proposals_max",
                "pending_proposals_max must be above 0",
            ));
        }
        // A tick too long to add to the clock panicked the node's thread before it could
        // report a failure, and left every caller waiting for it (found by review on
        // 2026-12-07); one of a minute already puts elections 10 to 20 minutes apart.
        if options.tick_interval > TICK_INTERVAL_MAX {
            return Err(Error::invalid(
                "tick_interval",
                format!(
                    "tick_interval {:?} is above the largest, {TICK_INTERVAL_MAX:?}",
                    options.tick_interval
                ),
            ));
        }
        if options
            .sync_stall_limit
            .is_some_and(|limit| limit.is_zero())
        {
            return Err(Error::invalid(
                "sync_stall_limit",
                "a sync stall limit must be above 0 (None: no limit)",
            ));
        }
        let mut config = options.config.clone();
        if let Some(timeout) = options.snapshot_timeout {
            config.snapshot_timeout_ticks = snapshot_timeout_ticks(timeout, options.tick_interval)?;
        }
        let id = config.id;
        let mut replica = Replica::open(
            &options.dir,
            options.wal.clone(),
            config,
            options.bootstrap.clone(),
            machine,
        )?;
        replica.write_own_checkpoints_elsewhere();
        replica.tell_leader_changes_later();
        replica.persist_in_background(true);
        let wal = replica.wal().clone();
        let install_gate = replica.install_gate();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            queue_cond: Condvar::new(),
            status: Mutex::new(status_of(&replica, None)),
            status_cond: Condvar::new(),
            waiters: CommitWaiters::default(),
            committed_epochs: Mutex::new(CommittedEpochs::of(&replica)),
            closed: AtomicBool::new(false),
            log_closed: AtomicBool::new(false),
            pending_envelopes_max: options.pending_envelopes_max,
            pending_envelope_bytes_max: options
                .pending_envelope_bytes_max
                .unwrap_or_else(|| in_flight_bytes(&options.config)),
            thread: std::sync::OnceLock::new(),
            close_log_at_end: AtomicBool::new(false),
        });
        let persister = {
            let shared = shared.clone();
            Persister::start(id, wal.clone(), move || {
                shared.queue.lock().synced = true;
                shared.queue_cond.notify_one();
            })?
        };
        let worker = shared.clone();
        let interval = options.tick_interval;
        let log = options.log.clone();
        // Never shorter than an election timeout: slow syncs under load are ordinary, and
        // a sync on the node's own thread is detected by an election after as long.
        let longest_election = interval.saturating_mul(options.config.election_ticks_max as u32);
        let stall_limit = options
            .sync_stall_limit
            .map(|limit| limit.max(longest_election));
        let thread = std::thread::Builder::new()
            .name(format!("rwal-node-{id}"))
            .spawn(move || {
                let _ = worker.thread.set(std::thread::current().id());
                run(
                    replica,
                    persister,
                    worker,
                    transport,
                    interval,
                    stall_limit,
                    log,
                )
            })
            .map_err(|e| {
                Error::invalid("thread", format!("cannot start the node's thread: {e}"))
            })?;
        Ok(Node {
            shared,
            wal,
            install_gate,
            id,
            pending_proposals_max: options.pending_proposals_max,
            pending_proposal_bytes_max: usize::try_from(options.config.max_uncommitted_bytes)
                .unwrap_or(usize::MAX),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Where the transport delivers this node's messages.
    pub fn inbox(&self) -> std::sync::Weak<dyn Inbox> {
        let inbox: Arc<dyn Inbox> = self.shared.clone();
        Arc::downgrade(&inbox)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// What the recovery of this node's log decided at open: torn tails cut, damage skipped
    /// (see [`rwal_wal::RecoveryReport`]). For an operator's log: a node found in that state
    /// runs on, and nothing else says so.
    pub fn recovery_report(&self) -> &rwal_wal::RecoveryReport {
        self.wal.recovery_report()
    }

    /// The directory of this node's log.
    pub fn log_dir(&self) -> &std::path::Path {
        self.wal.dir()
    }

    /// Proposes a user record on the leader; returns the LSN and epoch it will have if it
    /// commits (wait with [`wait_committed`](Node::wait_committed)). Fails with
    /// [`Error::NotLeader`] on a follower.
    pub fn propose(&self, data: &[u8]) -> Result<(Lsn, u64)> {
        self.not_on_own_thread("propose")?;
        let (reply, answer) = sync_channel(1);
        self.enqueue_proposal(data.len(), || Request::Propose(data.to_vec(), reply))?;
        self.answer(answer)
    }

    /// Queues the proposal `request` makes, of `bytes` of data, unless the queue holds
    /// `pending_proposals_max` proposals already, or proposals whose data would pass
    /// `pending_proposal_bytes_max` with it (a proposal alone is taken whatever its size: the
    /// replica judges it). The bytes are bounded too since 2026-12-07: with the node's thread
    /// held (a long restore), callers that gave up and proposed again piled up to 65 536 records
    /// of up to 16 MiB each (found by review).
    fn enqueue_proposal(&self, bytes: usize, request: impl FnOnce() -> Request) -> Result<()> {
        {
            let mut queue = self.shared.queue.lock();
            if self.shared.refuses(&queue) {
                return Err(Error::Closed);
            }
            let bytes_after = queue.proposal_bytes.saturating_add(bytes);
            if queue.proposals >= self.pending_proposals_max
                || (queue.proposals > 0 && bytes_after > self.pending_proposal_bytes_max)
            {
                return Err(Error::Busy {
                    pending_max: self.pending_proposals_max,
                    pending_bytes_max: self.pending_proposal_bytes_max,
                });
            }
            queue.proposals += 1;
            queue.proposal_bytes = bytes_after;
            queue.requests.push(request());
        }
        self.shared.queue_cond.notify_one();
        Ok(())
    }

    /// Proposes and waits until the record is committed by a quorum. The same as
    /// [`propose`](Node::propose) then [`wait_committed`](Node::wait_committed), with one
    /// wake-up instead of two: the node's thread registers the caller for the commit of the
    /// LSN it assigns instead of waking it to pass it on. [`Error::NotYetCommitted`], with the
    /// LSN and epoch to wait on, if the timeout passed after the record was proposed;
    /// [`Error::Timeout`] if the node's thread did not take the proposal in time: it was not
    /// proposed, and never will be. After other errors ([`Error::Closed`], [`Error::Raft`])
    /// the record may have been proposed, and may still commit: see
    /// [`propose_and_wait_tracked`](Node::propose_and_wait_tracked).
    pub fn propose_and_wait(&self, data: &[u8], timeout: Duration) -> Result<(Lsn, u64)> {
        self.propose_and_wait_tracked(data, timeout).outcome
    }

    /// [`propose_and_wait`](Node::propose_and_wait), which also says where the record went:
    /// the LSN and epoch the node's thread proposed it at, whatever happened after, or `None`
    /// if it was not proposed (and never will be). After an error such as [`Error::Closed`]
    /// (the node stopped while the caller waited) or [`Error::Raft`], a proposed record may
    /// still commit, on the other members or at this node's next open: its position is how
    /// the caller finds out ([`wait_committed`](Node::wait_committed) on a member, or the
    /// record's epoch at that LSN once the log has it).
    pub fn propose_and_wait_tracked(&self, data: &[u8], timeout: Duration) -> TrackedProposal {
        let not_proposed = |error| TrackedProposal {
            proposed: None,
            outcome: Err(error),
        };
        if let Err(refused) = self.not_on_own_thread("propose_and_wait") {
            return not_proposed(refused);
        }
        let deadline = deadline_after(timeout);
        let proposal = Arc::new(Proposal {
            state: Mutex::new(ProposalState::default()),
            caller: std::thread::current(),
        });
        if let Err(refused) = self.enqueue_proposal(data.len(), || {
            Request::ProposeAndWait(data.to_vec(), ProposalReply::new(proposal.clone()))
        }) {
            return not_proposed(refused);
        }
        loop {
            let now = Instant::now();
            let outcome = {
                let mut state = proposal.state.lock();
                let outcome = state.outcome.take();
                // Given up under the lock the node's thread proposes under: either it took
                // the proposal (and the outcome is here) or it never will.
                state.abandoned = outcome.is_none() && now >= deadline;
                outcome.map(|outcome| (outcome, state.registered.take()))
            };
            if let Some((outcome, registered)) = outcome {
                let (lsn, epoch) = match outcome {
                    Ok(proposed) => proposed,
                    Err(refused) => return not_proposed(refused),
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let committed = match self.wait_committed(lsn, epoch, left) {
                    Ok(()) => Ok((lsn, epoch)),
                    Err(Error::Timeout { .. }) => Err(Error::NotYetCommitted { lsn, epoch }),
                    Err(e) => Err(e),
                };
                // Committed: the commit's publication removes the registration, if it has
                // not yet. Otherwise nothing will soon.
                if let (Err(_), Some((lsn, ticket))) = (&committed, registered) {
                    self.shared.waiters.forget(lsn, ticket);
                }
                return TrackedProposal {
                    proposed: Some((lsn, epoch)),
                    outcome: committed,
                };
            }
            if now >= deadline {
                let timeout = Error::Timeout {
                    waiting_for: "the node's thread to take the proposal (it was not proposed)",
                };
                return not_proposed(timeout);
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Waits until the entry `lsn` of `epoch` is committed. [`Error::Superseded`] once another
    /// entry is committed at `lsn` (this one never will be); [`Error::Timeout`] if neither
    /// happened in time (an entry replaced locally but not yet decided is waited for: another
    /// node may still commit it); [`Error::Closed`] or [`Error::Raft`] if the node stopped
    /// before the entry committed (a commit seen before that is still answered; `Closed` too
    /// in the rare case where the entry's epoch had to be read from a log the node has closed
    /// since: an entry compacted away as it committed, or committed in a round that then
    /// failed, before the node published it);
    /// [`Error::Wal`] with `Compacted` if `lsn` is committed but was compacted away before its
    /// epoch could be read (whether it is this entry is then unknown), or with the error of
    /// reading it if the log could not be read there.
    pub fn wait_committed(&self, lsn: Lsn, epoch: u64, timeout: Duration) -> Result<()> {
        self.not_on_own_thread("wait_committed")?;
        let deadline = deadline_after(timeout);
        loop {
            // A commit published before the node failed or closed stands (a quorum holds the
            // entry durably): the caller is told so rather than given the failure, after which
            // it would send a committed write again.
            let (committed, failure) = {
                let status = self.shared.status.lock();
                (status.commit_lsn >= lsn, status.failure.clone())
            };
            if !committed {
                if let Some(failure) = failure {
                    return Err(Error::Raft(failure));
                }
                if self.shared.closed.load(Ordering::Acquire) {
                    return Err(Error::Closed);
                }
            }
            if committed {
                let published = self.shared.committed_epochs.lock().epoch_of(lsn);
                // Read outside the status lock: the node's thread takes it at every round.
                let found = match published {
                    Some(found) => Ok(found),
                    None => self.wal.epoch_at(lsn),
                };
                return match found {
                    Ok(found) if found == epoch => Ok(()),
                    Ok(found) => Err(Error::Superseded {
                        lsn,
                        epoch,
                        committed_epoch: found,
                    }),
                    // Compacted past it: committed, but its epoch can no longer be read. A
                    // compaction that removes the segment between the log's range check and
                    // the read shows as another error: the first LSN tells.
                    Err(e)
                        if matches!(e, rwal_wal::Error::Compacted { .. })
                            || lsn < self.wal.first_lsn() =>
                    {
                        Err(Error::Wal(rwal_wal::Error::Compacted {
                            lsn,
                            first_retained: self.wal.first_lsn(),
                        }))
                    }
                    // Read from the log (the published epochs did not cover it), which the
                    // node closed since: whether the entry committed at `lsn` is this one is
                    // not known here, as after any stop (it surfaced as the log's own
                    // `Closed`, which a caller of the node does not expect; seen in
                    // `make test` on 2026-12-07, before the published epochs).
                    Err(rwal_wal::Error::Closed) => Err(Error::Closed),
                    Err(e) => Err(Error::Wal(e)),
                };
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    waiting_for: "the entry to commit",
                });
            }
            self.shared.waiters.park_until_committed(lsn, deadline);
        }
    }

    /// A linearizable read point: waits until the leader has confirmed with a quorum that it
    /// still leads and this node has applied everything committed before the call, then returns
    /// that LSN. Reads of this node's committed log up to it (the engine's state, or
    /// [`reader`](Node::reader)) then see every write acknowledged before the call. Works on
    /// followers too (the confirmation comes from the leader); [`Error::Timeout`] without one
    /// in time, or if the node's thread, busy, did not take the request in time; [`Error::Closed`]
    /// if the node stops before the read point is applied; [`Error::Busy`] at once if as many
    /// requests other than proposals as `pending_proposals_max` are queued already (requests
    /// that timed out stay queued until the node's thread takes them).
    pub fn read_barrier(&self, timeout: Duration) -> Result<Lsn> {
        self.not_on_own_thread("read_barrier")?;
        let deadline = deadline_after(timeout);
        let lsn = self.request_until(
            |reply| Request::ReadIndex(deadline, reply),
            deadline,
            "a leader to confirm the read point",
        )?;
        let (status, _) = self
            .wait_status(deadline.saturating_duration_since(Instant::now()), |s| {
                s.applied_lsn >= lsn || self.stopped()
            });
        if let Some(failure) = status.failure {
            return Err(Error::Raft(failure));
        }
        if status.applied_lsn >= lsn {
            return Ok(lsn);
        }
        if self.stopped() {
            return Err(Error::Closed);
        }
        Err(Error::Timeout {
            waiting_for: "the read point to be applied",
        })
    }

    /// Proposes a membership change on the leader; returns the LSN and epoch the change entry
    /// will have if it commits. [`wait_committed`](Node::wait_committed) with them tells
    /// whether the change was made ([`Error::Superseded`]: a new leader's entry replaced it,
    /// nothing changed); it takes effect on a node once that node has applied it
    /// ([`NodeStatus::applied_lsn`]).
    pub fn change_membership(&self, change: MembershipChange) -> Result<(Lsn, u64)> {
        self.change_membership_at(change, None)
    }

    /// [`change_membership`](Node::change_membership) carrying the address of the member it
    /// adds, in the form the transport takes (`IP:PORT` for the TCP transport): every member
    /// that applies the change and has no address for that node learns this one
    /// ([`Replica::change_membership_at`](crate::Replica::change_membership_at)). The address
    /// is not given to this node's own transport here: give it with the transport's own call
    /// first if the new member is to be reached before the change commits (this node learns it
    /// too once it applies the change). An address the transport could not dial
    /// ([`Transport::check_address`](crate::Transport::check_address)) is refused with
    /// [`Error::InvalidArgument`] before anything is proposed.
    pub fn change_membership_at(
        &self,
        change: MembershipChange,
        address: Option<&str>,
    ) -> Result<(Lsn, u64)> {
        self.not_on_own_thread("change_membership")?;
        let address = address.map(str::to_owned);
        self.request(|reply| Request::Membership(change, address, reply))
    }

    /// Hands leadership to another voter, e.g. before this node stops: to `to`, or with `None`
    /// to the voter whose log is the most up to date (among those heard from lately, if any).
    /// Waits until this node knows another leader and returns its id (the successor's, unless
    /// raft abandoned the transfer and someone else won the election that followed).
    /// Meanwhile this node refuses proposals with `NotLeader` naming the successor; entries
    /// proposed before stay and are committed by it. [`Error::NotLeader`] on a follower;
    /// [`Error::InvalidArgument`] if `to` is this node or not a voter, or if there is no other
    /// voter; [`Error::Timeout`] if leadership did not
    /// move in time (raft abandons a transfer after an election timeout and this node leads
    /// on), or if the node's thread, busy, did not take the request in time (it may still);
    /// [`Error::Closed`] if the node stops before the leadership moved.
    pub fn transfer_leadership(&self, to: Option<NodeId>, timeout: Duration) -> Result<NodeId> {
        self.not_on_own_thread("transfer_leadership")?;
        let deadline = deadline_after(timeout);
        // The successor is chosen on the node's thread; the wait below takes whoever leads.
        self.request_until(
            |reply| Request::TransferLeadership(to, reply),
            deadline,
            "the leadership to move",
        )?;
        // Done once another node leads as this one sees it: `to`, or, if raft abandoned the
        // transfer and another election followed, whoever won it.
        let moved =
            |s: &NodeStatus| s.role != Role::Leader && s.leader.is_some_and(|l| l != self.id);
        let (status, _) = self
            .wait_status(deadline.saturating_duration_since(Instant::now()), |s| {
                s.failure.is_some() || moved(s) || self.stopped()
            });
        if let Some(failure) = status.failure {
            return Err(Error::Raft(failure));
        }
        match status.leader {
            Some(leader) if moved(&status) => Ok(leader),
            _ if self.stopped() => Err(Error::Closed),
            _ => Err(Error::Timeout {
                waiting_for: "the leadership to move",
            }),
        }
    }

    /// Writes a checkpoint at `lsn` (at most the applied LSN) holding the engine's state as of
    /// it. The node's thread only checks `lsn` and starts the snapshot; the state is written
    /// and synced here, on the caller's thread, so that the node goes on exchanging messages
    /// (a leader that stopped heartbeating for longer than the election timeout would lose
    /// its leadership). A follower that must install a leader's snapshot meanwhile abandons
    /// the checkpoint, which then fails with [`Error::CheckpointAbandoned`] and leaves nothing
    /// behind; the install waits for at most 1 MiB of the state to be written, or the
    /// checkpoint's finish (its syncs).
    pub fn checkpoint(&self, lsn: Lsn, engine_state: &[u8]) -> Result<()> {
        self.not_on_own_thread("checkpoint")?;
        let len = engine_state.len() as u64;
        let mut pending = self.request(|reply| Request::StartCheckpoint(lsn, len, reply))?;
        pending.write(engine_state)?;
        pending.finish()
    }

    /// [`checkpoint`](Node::checkpoint) with an engine state of exactly `len` bytes read from
    /// `source` in chunks of 1 MiB on the caller's thread, never held whole in memory: a
    /// state larger than the memory the process may take (a database's files) can be
    /// checkpointed. `source` must be the state as of `lsn`, frozen while it is read (the node
    /// goes on applying records meanwhile). A source that ends sooner, gives more or fails is
    /// `InvalidArgument` on `source`, and nothing is kept. An install abandons the checkpoint
    /// as for `checkpoint`, and waits for the read in progress to end: `source` must not wait
    /// for the node. After `len` bytes it is read once more and must report its end.
    pub fn checkpoint_from(&self, lsn: Lsn, len: u64, source: &mut dyn Read) -> Result<()> {
        self.not_on_own_thread("checkpoint_from")?;
        let mut pending = self.request(|reply| Request::StartCheckpoint(lsn, len, reply))?;
        engine_snapshot::copy_exactly(source, len, &mut pending)?;
        pending.finish()
    }

    /// Runs the log's maintenance pass now, on the caller's thread, after one in progress on the
    /// log's background thread: prepares the next segment (zero-filled and synced) if none is,
    /// writes staged records back, writes the durable watermark and compacts. A benchmark calls
    /// it before timing, so that the preparation the first appends start in the background
    /// (64 MiB written, by default) does not run beside the timed work. Not from the state
    /// machine: the node's thread would stop for the whole pass (no heartbeats meanwhile).
    /// `Closed` once the node is closing.
    pub fn maintain_log(&self) -> Result<()> {
        self.wal.check_opener_process("maintain_log")?;
        if self.shared.refuses(&self.shared.queue.lock()) {
            return Err(Error::Closed);
        }
        self.wal.maintain().map_err(|e| match e {
            // A close that started meanwhile stopped the pass.
            rwal_wal::Error::Closed => Error::Closed,
            other => Error::from(other),
        })
    }

    /// Removes log segments that neither the latest checkpoint nor a follower needs, on the
    /// caller's thread. [`CommittedReader`]s hold nothing back: one that falls behind gets
    /// `Compacted`. `Closed` once the node's thread stopped: the followers' pins went with it;
    /// `InvalidArgument` on the node's thread (from the state machine).
    pub fn compact(&self) -> Result<rwal_wal::CompactionReport> {
        self.wal.check_opener_process("compact")?;
        if self.on_its_thread() {
            return Err(Error::invalid(
                "thread",
                "compact was called on the node's thread (from the state machine or a \
                 callback): it would run in the middle of the node's round",
            ));
        }
        if self.shared.refuses(&self.shared.queue.lock()) {
            return Err(Error::Closed);
        }
        self.wal.compact_now().map_err(Error::from)
    }

    /// Requests (proposals, membership changes, reads, transfers) queued for the node's thread
    /// and not taken by it yet: how far behind the callers it is. A test waits on it to know a
    /// call it started is queued.
    pub fn queued_requests(&self) -> usize {
        self.shared.queue.lock().requests.len()
    }

    /// Threads waiting for an entry to commit: in [`wait_committed`](Node::wait_committed),
    /// [`propose_and_wait`](Node::propose_and_wait) or a tailing reader's
    /// [`next_timeout`](CommittedReader::next_timeout). A test waits on it to know a call it
    /// started is waiting.
    pub fn commit_waiters(&self) -> usize {
        self.shared.waiters.waiting()
    }

    /// The node's current status.
    pub fn status(&self) -> NodeStatus {
        self.with_log_bounds_now(&self.shared.status.lock())
    }

    /// `published` with the log's first and last LSN read now: a compaction on another thread
    /// (a caller's, the checkpoint thread's) moves the first LSN between two publications of
    /// the node's thread, and a reader just told "compacted away" must find the status
    /// agreeing (noticed on 2026-12-06, when the cluster test's checker read the old first
    /// LSN). The first is read before the last: it never moves down, and whatever moves the
    /// last (an append, a cut of a suffix, an install) leaves it at least the first minus one.
    fn with_log_bounds_now(&self, published: &NodeStatus) -> NodeStatus {
        let mut status = published.clone();
        status.first_lsn = self.wal.first_lsn();
        status.last_lsn = self.wal.last_lsn();
        status
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.status.lock().leader
    }

    /// Where proposals go: the leader this node knows of, or while this node hands its
    /// leadership over, the node it hands it to (the one its [`Error::NotLeader`] names).
    pub fn proposals_go_to(&self) -> Option<NodeId> {
        let status = self.shared.status.lock();
        status.handing_over_to.or(status.leader)
    }

    /// Waits until `condition` holds for the status (or the timeout passes); returns the last
    /// status seen and whether the condition held. The condition runs on the calling thread
    /// with no lock of the node's held: it may call the node (its `leader`, `status`). Called
    /// on the node's thread (from the state machine), it does not wait: the status cannot
    /// change while that thread waits, and its heartbeats would stop for the whole timeout.
    pub fn wait_status(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&NodeStatus) -> bool,
    ) -> (NodeStatus, bool) {
        if self.on_its_thread() {
            let status = self.status();
            let held = condition(&status);
            return (status, held);
        }
        let deadline = deadline_after(timeout);
        let mut published = self.shared.status.lock();
        loop {
            let seen = published.clone();
            // Read under the status lock, where the node's thread sets it: a stop during the
            // condition is then seen below even when it published no new status.
            let stopped_before = self.stopped();
            // Outside the lock: a condition that called the node deadlocked its caller, and a
            // slow one held up the node's thread at its next status (found by review on
            // 2026-12-07). As `status` answers: with the log's bounds read now.
            let (status, held) = MutexGuard::unlocked(&mut published, || {
                let status = self.with_log_bounds_now(&seen);
                let held = condition(&status);
                (status, held)
            });
            if held {
                return (status, true);
            }
            // A status published, or a stop, while the condition ran was not waited for:
            // looked at now (until 2026-12-07 a stop that published an unchanged status was
            // missed, and a condition reading `stopped` waited out its whole timeout: found
            // by review).
            if (*published != seen || self.stopped() != stopped_before) && Instant::now() < deadline
            {
                continue;
            }
            if self
                .shared
                .status_cond
                .wait_until(&mut published, deadline)
                .timed_out()
            {
                let seen = published.clone();
                drop(published);
                let status = self.with_log_bounds_now(&seen);
                let held = condition(&status);
                return (status, held);
            }
        }
    }

    /// A reader over committed records from `from` (at least the first retained LSN): it never
    /// returns a record past the commit LSN, and returns system records too (raft's own
    /// entries: see [`CommittedRecord::kind`]).
    ///
    /// It holds nothing between calls: it does not hold back compaction or a snapshot install
    /// (which replaces the log). A reader that falls behind the first retained LSN gets
    /// `Error::Wal(Compacted)`; start a new one from the engine's state. `from` may be at most
    /// this node's last LSN + 1 (`Error::Wal(NotFound)` past it): a change feed that resumes
    /// from a position another member gave it waits on that member, or here once this node
    /// has caught up.
    pub fn reader(&self, from: Lsn) -> Result<CommittedReader> {
        // Checks `from` now without a reader: its pin, however brief, could refuse the
        // node's thread a snapshot install or a cut of a divergent tail, and stop the node.
        self.wal.check_read_start(from)?;
        Ok(CommittedReader {
            wal: self.wal.clone(),
            shared: self.shared.clone(),
            install_gate: self.install_gate.clone(),
            next_lsn: from,
            buffered: std::collections::VecDeque::new(),
        })
    }

    /// Stops the node's thread and closes its log (its final sync and watermark; the error if
    /// they fail), even while [`CommittedReader`]s are alive: they then get [`Error::Closed`], and the
    /// directory is free to open again. The node's failure, if it had one, comes first.
    pub fn close(self) -> Result<()> {
        self.stop()
    }

    /// What [`close`](Node::close) does, through a shared reference: for an owner that must
    /// keep the node where other threads reach it until its thread has stopped (a C handle,
    /// which the state machine's methods, on that thread, may still use while it stops).
    /// After it every call answers [`Error::Closed`]; dropping the node then does nothing more.
    pub fn shut_down(&self) -> Result<()> {
        self.stop()
    }

    fn stop(&self) -> Result<()> {
        if let Err(forked) = self.wal.check_opener_process("the node's close") {
            // A child forked from the node's process: the threads, the queue's lock and the
            // log are the opener's. Joined, the thread that does not exist here would hang the
            // child; its handle is leaked instead, and the log's own close refuses as well.
            if let Some(mut thread) = self.thread.try_lock() {
                std::mem::forget(thread.take());
            }
            return Err(forked.into());
        }
        self.shared.queue.lock().stop = true;
        self.shared.queue_cond.notify_all();
        if let Err(e) = self.not_on_own_thread("close") {
            // Joined, the thread would wait for itself: it stops once the state machine's
            // method that called this returns, and closes the log as it ends. Its handle stays
            // for a later stop on another thread to join (dropped with the node, it detaches):
            // dropped here, the owner's close returned while the thread was still applying,
            // and closed the log under it (found by review on 2026-12-05).
            self.shared.close_log_at_end.store(true, Ordering::Release);
            return Err(e);
        }
        // Held until the log is closed: a second stop at the same time (`shut_down` from two
        // threads) returns only once the thread has stopped, and closes no log under it.
        let mut thread = self.thread.lock();
        let joined = match thread.take() {
            Some(thread) => thread.join(),
            None => Ok(()),
        };
        let closed = self.wal.close_shared();
        self.shared.log_closed.store(true, Ordering::Release);
        drop(thread);
        if joined.is_err() {
            return Err(Error::Raft("the node's thread panicked".into()));
        }
        if let Some(failure) = self.shared.status.lock().failure.clone() {
            return Err(Error::Raft(failure));
        }
        Ok(closed?)
    }

    /// Whether the node's thread has stopped. Set under the status lock, where
    /// [`wait_status`](Node::wait_status) looks at it again after each run of its condition:
    /// a condition that reads it misses no wake-up.
    fn stopped(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// `InvalidArgument`, naming `call`, in a process forked (without an exec) from the one
    /// that opened the node: its threads do not exist there, and its log, sockets and locks
    /// are that process's. Every call that waits for the node's thread checks it first;
    /// bindings check it before calls of their own that take locks or change the network.
    pub fn check_opener_process(&self, call: &str) -> Result<()> {
        Ok(self.wal.check_opener_process(call)?)
    }

    /// Whether the caller runs on the node's own thread: in its [`StateMachine`]'s methods
    /// (after [`open`](Node::open)), where the calls that wait for that thread are refused, and
    /// so is `compact`.
    pub fn on_its_thread(&self) -> bool {
        self.shared.thread.get() == Some(&std::thread::current().id())
    }

    /// `InvalidArgument` on the node's own thread (in a [`StateMachine`] method, or a callback
    /// it runs): `call` waits for that thread, which would wait for itself.
    fn not_on_own_thread(&self, call: &str) -> Result<()> {
        // In a child forked from the node's process, the node's thread does not exist: a
        // call waiting for it would wait forever. Every call that queues a request for the
        // thread comes through here first, so the queueing itself does not check again.
        self.wal.check_opener_process(call)?;
        if self.on_its_thread() {
            return Err(Error::invalid(
                "thread",
                format!(
                    "{call} waits for the node's thread, and was called on it (from the state \
                     machine or a callback): it would wait for itself"
                ),
            ));
        }
        Ok(())
    }

    fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let answer = self.send_request(make)?;
        self.answer(answer)
    }

    /// [`request`](Node::request), waiting for the node's thread to answer until `deadline`
    /// only (it may be busy for long: an apply, a snapshot's install, a slow sync), then
    /// `Timeout` waiting for `what` (the request may still be carried out).
    fn request_until<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
        deadline: Instant,
        what: &'static str,
    ) -> Result<T> {
        let answer = self.send_request(make)?;
        let left = deadline.saturating_duration_since(Instant::now());
        match answer.recv_timeout(left) {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(Error::Timeout { waiting_for: what })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }

    fn send_request<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<Receiver<Result<T>>> {
        let (reply, answer) = sync_channel(1);
        {
            let mut queue = self.shared.queue.lock();
            if self.shared.refuses(&queue) {
                return Err(Error::Closed);
            }
            // Bounded as proposals are, by the same number: a read barrier or a transfer that
            // timed out leaves its request queued until the node's thread takes it, and with
            // that thread held (a long restore) they piled up without limit (found by review,
            // 2026-12-07).
            let others = queue.requests.len().saturating_sub(queue.proposals);
            if others >= self.pending_proposals_max {
                return Err(Error::Busy {
                    pending_max: self.pending_proposals_max,
                    pending_bytes_max: self.pending_proposal_bytes_max,
                });
            }
            queue.requests.push(make(reply));
        }
        self.shared.queue_cond.notify_one();
        Ok(answer)
    }

    fn answer<T>(&self, answer: Receiver<Result<T>>) -> Result<T> {
        answer.recv().unwrap_or(Err(Error::Closed))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// When a wait of `timeout` from now ends: a timeout too large to add to the clock
/// (`Duration::MAX`) waits as long as it takes (a century), where the sum panicked on the
/// caller's thread (found by review, 2026-12-07).
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The longest [`NodeOptions::tick_interval`] a node opens with: a minute, which puts
/// elections 10 to 20 minutes apart.
pub const TICK_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// A committed record, copied out of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRecord {
    /// Its LSN (the raft index).
    pub lsn: Lsn,
    /// Its epoch (the raft term).
    pub epoch: u64,
    /// `User` for a proposal, `System` for raft's own entries (a new leader's empty entry, a
    /// membership change), which an engine skips.
    pub kind: RecordKind,
    /// The payload.
    pub data: Vec<u8>,
}

/// Records one fill of a [`CommittedReader`] reads at most.
const READER_BATCH_RECORDS: usize = 256;
/// How long a tailing reader naps when its next record is committed and durable here, and the
/// read found nothing all the same ([`CommittedReader::next_timeout`]).
const COMMITTED_UNREADABLE_POLL: Duration = Duration::from_millis(1);

/// How long a tailing reader without a deadline parks at a time before it looks again.
const WAIT_SLICE_WITHOUT_DEADLINE: Duration = Duration::from_secs(3600);

/// Bytes one fill reads at most (a record larger than this is read alone).
const READER_BATCH_BYTES: usize = 1 << 20;

/// Committed records of a node's log, in order; see [`Node::reader`]. It reads in batches
/// (at most 256 records or 1 MiB) and holds the log only while it reads one.
pub struct CommittedReader {
    wal: Arc<Wal>,
    shared: Arc<Shared>,
    install_gate: Arc<RwLock<()>>,
    next_lsn: Lsn,
    buffered: std::collections::VecDeque<CommittedRecord>,
}

impl std::fmt::Debug for CommittedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommittedReader")
            .field("next_lsn", &self.next_lsn())
            .finish()
    }
}

impl CommittedReader {
    /// The LSN the next call returns once it is committed.
    pub fn next_lsn(&self) -> Lsn {
        self.buffered.front().map_or(self.next_lsn, |r| r.lsn)
    }

    /// The next committed record, or `None` at the commit LSN. While a snapshot install holds
    /// the log it waits for the install to end, which runs the engine's `restore`: a caller
    /// must not hold a lock that `restore` takes (an engine's own lock, say), or both wait for
    /// good. [`next_timeout`](CommittedReader::next_timeout) bounds that wait. (It waits rather
    /// than answer `None`: a reader told `None` takes itself to be at the commit LSN, and a
    /// read of everything committed would end short without a word. After the install the
    /// call says where the reader stands: `Wal(Compacted)` if the snapshot passed it.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<CommittedRecord>> {
        self.next_by(None)
    }

    /// [`next`](CommittedReader::next), giving up on a snapshot install in progress at
    /// `deadline` (`None` if there is none) as if nothing were committed.
    fn next_by(&mut self, deadline: Option<Instant>) -> Result<Option<CommittedRecord>> {
        self.check_open()?;
        if self.buffered.is_empty() {
            self.fill(READER_BATCH_BYTES, usize::MAX, deadline)?;
        }
        Ok(self.buffered.pop_front())
    }

    /// The next committed record if its payload is at most `bytes_max` bytes, having copied at
    /// most `bytes_max` bytes of payloads out of the log (what it reads ahead included): for a
    /// caller that counts the memory of what it reads. A larger next record is not read
    /// ([`Bounded::Larger`] says how large it is; a later call with a bound that admits it
    /// returns it). `None` at the commit LSN; it waits for a snapshot install in progress, as
    /// [`next`](CommittedReader::next) does.
    pub fn next_at_most(&mut self, bytes_max: usize) -> Result<Option<Bounded>> {
        self.check_open()?;
        if self.buffered.is_empty() {
            let cap = bytes_max.min(READER_BATCH_BYTES);
            if let Some((lsn, bytes)) = self.fill(cap, bytes_max, None)? {
                return Ok(Some(Bounded::Larger { lsn, bytes }));
            }
        }
        Ok(match self.buffered.front() {
            None => None,
            Some(record) if record.data.len() > bytes_max => Some(Bounded::Larger {
                lsn: record.lsn,
                bytes: record.data.len(),
            }),
            Some(_) => self.buffered.pop_front().map(Bounded::Record),
        })
    }

    /// The next committed record, waiting up to `timeout` for it to commit: a tailing reader
    /// (a change feed, a log shipper) on any member. [`Error::Timeout`] if none commits in
    /// time, also while a snapshot install holds the log (for as long as the engine's
    /// `restore` takes). A close of the node ends the wait with [`Error::Closed`] (a record
    /// read in the moment before may still come first; records not read yet are not
    /// returned, as [`next`](CommittedReader::next) answers after a close); a node stopped by
    /// its engine's failure, its log still open, still gives the records it committed, then the
    /// failure ([`Error::Raft`]); a log poisoned by a failed write or sync gives
    /// `Wal(Poisoned)` at once, records not read yet included. Refused (`InvalidArgument`) on
    /// the node's own thread, from a callback, once there is something to wait for (a timeout
    /// already passed gives `Timeout`): the commit it would wait for is that thread's to make;
    /// from `restore` it is refused at once, as `next` is. It cannot be interrupted from
    /// another thread: a consumer that must stop waits in short timeouts.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<CommittedRecord> {
        // A timeout too large to add to the clock waits as long as it takes.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // A snapshot install holds the log for as long as the engine's restore takes (a
            // large state: minutes): the wait for it ends at the deadline too.
            let until_gate =
                deadline.unwrap_or_else(|| Instant::now() + WAIT_SLICE_WITHOUT_DEADLINE);
            match self.next_by(Some(until_gate)) {
                Ok(Some(record)) => return Ok(record),
                Ok(None) => {}
                // One answer for a close, whichever of the node's flags the reader saw first.
                Err(Error::Wal(rwal_wal::Error::Closed)) => return Err(Error::Closed),
                Err(e) => return Err(e),
            }
            if let Some(failure) = self.shared.status.lock().failure.clone() {
                return Err(Error::Raft(failure));
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            let until = match deadline {
                Some(deadline) if deadline <= now => {
                    return Err(Error::Timeout {
                        waiting_for: "the next record to commit",
                    })
                }
                Some(deadline) => deadline,
                None => now + WAIT_SLICE_WITHOUT_DEADLINE,
            };
            if self.shared.thread.get() == Some(&std::thread::current().id()) {
                return Err(Error::invalid(
                    "thread",
                    "a committed reader waited on the node's own thread (from a callback): \
                     the commit it waits for is that thread's to make",
                ));
            }
            let next_lsn = self.next_lsn();
            if self.shared.waiters.published() < next_lsn {
                self.shared.waiters.park_until_committed(next_lsn, until);
                continue;
            }
            // Committed and not readable yet: the log gives records out once durable, and a
            // follower may learn that an entry committed before its own sync of it ends. The
            // wait for that sync is the log's own (woken by the sync, a poisoning or the close
            // that follows the node's).
            if self.wal.durable_lsn() < next_lsn {
                match self.wal.wait_durable(next_lsn, until) {
                    Ok(()) | Err(rwal_wal::Error::Timeout { .. }) => {}
                    Err(rwal_wal::Error::Closed) => return Err(Error::Closed),
                    Err(e) => return Err(e.into()),
                }
            } else {
                // Durable, and the read found nothing all the same (it raced a change of the
                // log, an install's reset): a nap before reading again, not a spin.
                std::thread::sleep(
                    COMMITTED_UNREADABLE_POLL.min(until.saturating_duration_since(Instant::now())),
                );
            }
        }
    }

    /// [`Error::Closed`] once the node's log is closed, as [`Node::close`] says and
    /// `next_timeout` answered (`next` and `next_at_most` answered `Error::Wal(Closed)` until
    /// 2026-12-07: found by review). Checked on every call: a reader with records buffered, or
    /// at the commit LSN, would otherwise go on answering from its buffer or with `None` after
    /// a close, as if the node were still running.
    fn check_open(&self) -> Result<()> {
        if self.shared.log_closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Copies committed records into the buffer, at most `cap` bytes of payloads, except that
    /// an empty buffer takes one record larger than that if it is at most `alone_max` bytes.
    /// Returns the LSN and size of a first record it left unread for being larger. With a
    /// `gate_deadline`, a snapshot install still in progress then leaves the buffer empty.
    fn fill(
        &mut self,
        cap: usize,
        alone_max: usize,
        gate_deadline: Option<Instant>,
    ) -> Result<Option<(Lsn, usize)>> {
        // Before any lock: in a child forked from the node's process, they may be held by
        // threads the child does not have.
        self.wal.check_opener_process("a committed reader's next")?;
        // The gate is shared with other readers; a snapshot install waits until this read is
        // done. Only the node's thread installs, holding the gate while the state machine's
        // `restore` runs: a read from there would wait for itself, so there the gate is tried
        // first, whatever the commit LSN.
        let gate_of_its_thread = if self.shared.thread.get() == Some(&std::thread::current().id()) {
            Some(self.install_gate.try_read().ok_or_else(|| {
                Error::invalid(
                    "thread",
                    "a committed reader read from the state machine's restore, whose \
                     snapshot install holds the log until restore returns: it would wait \
                     for itself",
                )
            })?)
        } else {
            None
        };
        let commit = self.shared.status.lock().commit_lsn;
        if self.next_lsn > commit {
            return Ok(None);
        }
        let _gate = match (gate_of_its_thread, gate_deadline) {
            (Some(gate), _) => gate,
            (None, None) => self.install_gate.read(),
            (None, Some(deadline)) => match self.install_gate.try_read_until(deadline) {
                Some(gate) => gate,
                None => return Ok(None),
            },
        };
        // A poisoned log still gives out its durable records (for raft-rs, which may read them
        // before the node's thread sees the failure), but the node has failed: its readers
        // stop at once, as the docs say.
        self.wal.check_usable()?;
        let mut reader = self.wal.reader(self.next_lsn)?;
        let mut bytes = 0;
        while reader.next_lsn() <= commit && self.buffered.len() < READER_BATCH_RECORDS {
            let record = match reader.next() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => {
                    // What is buffered is returned first; the next fill starts after it.
                    if let Some(last) = self.buffered.back() {
                        self.next_lsn = last.lsn + 1;
                    }
                    return Err(e.into());
                }
            };
            let len = record.data.len();
            if bytes + len > cap && !(self.buffered.is_empty() && len <= alone_max) {
                // Left for the next fill, which reads it again.
                self.next_lsn = record.lsn;
                return Ok(self.buffered.is_empty().then_some((record.lsn, len)));
            }
            bytes += len;
            self.buffered.push_back(CommittedRecord {
                lsn: record.lsn,
                epoch: record.epoch,
                kind: record.kind,
                data: record.data.to_vec(),
            });
            if bytes >= cap {
                break;
            }
        }
        self.next_lsn = reader.next_lsn();
        Ok(None)
    }
}

/// What [`CommittedReader::next_at_most`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bounded {
    /// The next committed record.
    Record(CommittedRecord),
    /// The next committed record, not read: its payload is `bytes` long, more than the bound.
    Larger {
        /// Its LSN.
        lsn: Lsn,
        /// Its payload's length.
        bytes: usize,
    },
}

fn status_of<M: StateMachine>(replica: &Replica<M>, failure: Option<String>) -> NodeStatus {
    let role = replica.role();
    NodeStatus {
        id: replica.id(),
        role,
        term: replica.term(),
        leader: replica.leader(),
        handing_over_to: replica.handing_over_to(),
        commit_lsn: replica.commit_lsn(),
        applied_lsn: replica.applied_lsn(),
        first_lsn: replica.wal().first_lsn(),
        last_lsn: replica.wal().last_lsn(),
        membership: replica.membership(),
        progress: if role == Role::Leader {
            replica.progress()
        } else {
            Vec::new()
        },
        pending_reads: replica.pending_reads(),
        failure,
    }
}

/// Tells the transport which members the applied membership changes removed, and the
/// addresses of those they added, in the order applied (a member removed and added back at a
/// new address is dialled there). Before the membership is published: a caller that saw a
/// member removed and adds it back (a peer's address with `add_peer`, or the C ABI's
/// membership call) must not have that undone by a `peer_removed` that comes after (found by
/// review on 2026-12-03).
fn tell_transport_of_peers<M: StateMachine, T: Transport>(replica: &mut Replica<M>, transport: &T) {
    for event in replica.take_peer_events() {
        match event {
            crate::PeerEvent::Removed(id) => transport.peer_removed(id),
            crate::PeerEvent::Added { id, address } => transport.peer_added(id, &address),
        }
    }
}

/// Publishes the replica's status and wakes who waits for it.
fn publish<M: StateMachine>(shared: &Shared, replica: &Replica<M>) {
    // Before the status: a waiter that sees its entry committed there finds it here.
    *shared.committed_epochs.lock() = CommittedEpochs::of(replica);
    let status = status_of(replica, None);
    let commit_lsn = status.commit_lsn;
    *shared.status.lock() = status;
    shared.status_cond.notify_all();
    shared.waiters.publish(commit_lsn);
}

/// Before a refusal with [`Error::NotLeader`] is answered, makes the published status say who
/// leads as the refusal does. Its caller asks next where proposals go
/// ([`Node::proposals_go_to`], the C ABI's `rwal_node_leader`, which is all a C or Python
/// caller learns of the leader the refusal named), and the status published at the end of the
/// round before could still name this node (found by review on 2026-12-05: a leader that
/// stepped down, or began handing over, in this round). Only who leads is published here: the
/// commit point is published once this round's entries are applied.
fn publish_who_leads_for<M: StateMachine, T>(
    outcome: &Result<T>,
    shared: &Shared,
    replica: &Replica<M>,
) {
    if !matches!(outcome, Err(Error::NotLeader { .. })) {
        return;
    }
    let now = (
        replica.role(),
        replica.term(),
        replica.leader(),
        replica.handing_over_to(),
    );
    let mut status = shared.status.lock();
    if (
        status.role,
        status.term,
        status.leader,
        status.handing_over_to,
    ) == now
    {
        return;
    }
    (
        status.role,
        status.term,
        status.leader,
        status.handing_over_to,
    ) = now;
    if status.role != Role::Leader {
        status.progress.clear();
        status.pending_reads = 0;
    }
    drop(status);
    shared.status_cond.notify_all();
}

/// Writes a checkpoint the replica started for raft on a thread of its own. A failure (to
/// start the thread too) is logged and abandons the checkpoint: raft asks for a snapshot again
/// at its next attempt, and the replica starts another.
fn write_own_checkpoint(
    pending: PendingCheckpoint,
    state: EngineSnapshot,
    log: Option<NodeLog>,
) -> Option<JoinHandle<()>> {
    let theirs = log.clone();
    let spawned = std::thread::Builder::new()
        .name("rwal-checkpoint".into())
        .spawn(move || {
            let written = state.write_into(pending);
            if let (Err(e), Some(log)) = (written, theirs) {
                log(
                    Severity::Warning,
                    &format!("the checkpoint raft asked for failed: {e}"),
                );
            }
        });
    match (spawned, log) {
        (Ok(handle), _) => Some(handle),
        (Err(e), Some(log)) => {
            log(
                Severity::Error,
                &format!("cannot start a thread for the checkpoint raft asked for: {e}"),
            );
            None
        }
        (Err(_), None) => None,
    }
}

/// What a leader with `config` may have in flight to one follower, in bytes (the default
/// bound of a node's inbox, [`NodeOptions::pending_envelope_bytes_max`]).
fn in_flight_bytes(config: &Config) -> usize {
    let appends =
        (config.max_inflight_messages as u64).saturating_mul(config.max_bytes_per_message);
    let chunks = 64u64.saturating_mul(config.snapshot_chunk_bytes as u64);
    let total = appends
        .saturating_add(config.max_record_bytes)
        .saturating_add(chunks);
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// Runs a user's callback (the log, the engine's leader callback) once the node's loop has
/// ended, where a panic must not end the thread: it has yet to report itself closed and answer
/// every request still queued. Unwound from there, the thread left every caller of `propose`
/// waiting forever (found by review on 2026-12-06: `rwal node`'s log line panicked when its
/// standard error could not be written).
fn without_unwinding(callback: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback));
}

/// Whether a leader hands its leadership over because of a stalled sync of its log: the
/// persister's sync in progress, started at `since`, has run for `limit`, and the last
/// hand-over (`last`), if any, is as old (a transfer raft abandons is tried again).
fn stalled_sync_hands_over(
    since: Instant,
    limit: Duration,
    last: Option<Instant>,
    now: Instant,
) -> bool {
    now.saturating_duration_since(since) >= limit
        && last.is_none_or(|last| now.saturating_duration_since(last) >= limit)
}

/// Hands the leadership over (to the most up-to-date other voter) because the log's sync has
/// not returned for `stalled`, and notes it.
fn hand_over_for_stall<M: StateMachine>(
    replica: &mut Replica<M>,
    stalled: Duration,
    log: Option<&NodeLog>,
) {
    let stalled = stalled.as_millis();
    let note = match replica.transfer_leadership(None) {
        Ok(to) => format!(
            "the log's sync has not returned for {stalled} ms: leadership handed to node {to}"
        ),
        Err(e) => format!(
            "the log's sync has not returned for {stalled} ms; handing the leadership over \
             failed: {e}"
        ),
    };
    if let Some(log) = log {
        log(Severity::Warning, &note);
    }
}

/// The node's thread: take what arrived, tick, run raft's rounds, publish the status.
fn run<M: StateMachine, T: Transport>(
    mut replica: Replica<M>,
    persister: Persister,
    shared: Arc<Shared>,
    transport: T,
    interval: Duration,
    stall_limit: Option<Duration>,
    log: Option<NodeLog>,
) {
    let log_at_end = log.clone();
    let mut next_tick = Instant::now() + interval;
    // When the leader last handed its leadership over because its log's sync stalled.
    let mut stall_handed_over: Option<Instant> = None;
    let mut reads: HashMap<u64, PendingRead> = HashMap::new();
    let mut next_read: u64 = 0;
    // A read's context names this node and this run of it besides the read: the leader keys
    // the reads it confirms by context (raft-rs drops one whose context is already waiting),
    // and an answer to another node's read, or to a read of this node's previous run still in
    // a queue, must not be taken for one of ours.
    let read_prefix = {
        use std::hash::{BuildHasher, Hasher};
        let run = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut prefix = replica.id().to_le_bytes().to_vec();
        prefix.extend_from_slice(&run.to_le_bytes());
        prefix
    };
    // Writes the checkpoints raft wants (docs/replication.md section 4.2), one at a time.
    let mut own_writer: Option<JoinHandle<()>> = None;
    // A panic (in an engine callback, or in raft-rs on a broken invariant) is caught so that
    // the node fails like on any other error below: callers get `Raft`/`Closed` answers instead
    // of waiting forever for a thread that is gone. Afterwards only its status is read, and
    // its log closed if a close on this thread asked for it (the log is a handle of its own).
    // Envelopes the full inbox dropped, not yet logged, and when that was last logged.
    let (mut dropped_unreported, mut last_drop_report) = (0u64, None::<Instant>);
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        loop {
            let ((envelopes, dropped), requests, synced) = {
                let mut queue = shared.queue.lock();
                while !queue.stop
                    && !queue.synced
                    && queue.envelopes.is_empty()
                    && queue.requests.is_empty()
                {
                    if shared
                        .queue_cond
                        .wait_until(&mut queue, next_tick)
                        .timed_out()
                    {
                        break;
                    }
                }
                if queue.stop {
                    return Ok(());
                }
                queue.proposals = 0;
                queue.proposal_bytes = 0;
                (
                    queue.take_envelopes(),
                    std::mem::take(&mut queue.requests),
                    std::mem::take(&mut queue.synced),
                )
            };
            dropped_unreported += dropped;
            if dropped_unreported > 0
                && last_drop_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
            {
                // At most once a second: a full inbox drops at every delivery.
                if let Some(log) = &log {
                    log(
                        Severity::Warning,
                        &format!(
                            "dropped {dropped_unreported} messages from peers: this node's inbox \
                             was full (pending_envelopes_max, pending_envelope_bytes_max); they \
                             will be resent"
                        ),
                    );
                }
                (dropped_unreported, last_drop_report) = (0, Some(Instant::now()));
            }
            if synced {
                if let Some(failure) = persister.failure() {
                    return Err(Error::Raft(format!("syncing the log failed: {failure}")));
                }
                // Acknowledgements that waited for the sync leave first.
                replica.note_durable();
                transport.send(replica.take_messages());
            }
            for envelope in envelopes {
                replica.step(envelope);
            }
            for request in requests {
                match request {
                    Request::Propose(data, reply) => {
                        let outcome = replica.propose(&data);
                        publish_who_leads_for(&outcome, &shared, &replica);
                        let _ = reply.send(outcome);
                    }
                    Request::ProposeAndWait(data, reply) => {
                        let propose = || {
                            let outcome = replica.propose(&data);
                            publish_who_leads_for(&outcome, &shared, &replica);
                            outcome
                        };
                        reply.propose_with(propose, &shared.waiters);
                    }
                    Request::Membership(change, address, reply) => {
                        // An address no member could dial would be committed, and kept by
                        // every checkpoint since (the first address a node is added with
                        // stays): refused before it is proposed (found by review on
                        // 2026-12-08).
                        // (A removal's address, or one of a length no address has, is
                        // refused by the replica, naming that.)
                        let checked = match (&change, address.as_deref()) {
                            (MembershipChange::Remove(_), _) | (_, None) => Ok(()),
                            (_, Some(a))
                                if a.is_empty() || a.len() > crate::MEMBER_ADDRESS_BYTES_MAX =>
                            {
                                Ok(())
                            }
                            (_, Some(a)) => transport
                                .check_address(a)
                                .map_err(|reason| Error::invalid("address", reason)),
                        };
                        let outcome = checked.and_then(|()| {
                            replica.change_membership_at(change, address.as_deref())
                        });
                        publish_who_leads_for(&outcome, &shared, &replica);
                        let _ = reply.send(outcome);
                    }
                    Request::TransferLeadership(to, reply) => {
                        let outcome = replica.transfer_leadership(to);
                        publish_who_leads_for(&outcome, &shared, &replica);
                        let _ = reply.send(outcome);
                    }
                    Request::StartCheckpoint(lsn, len, reply) => {
                        let _ = reply.send(replica.start_checkpoint(lsn, len));
                    }
                    Request::ReadIndex(deadline, reply) => {
                        next_read += 1;
                        let mut context = read_prefix.clone();
                        context.extend_from_slice(&next_read.to_le_bytes());
                        replica.read_index(context.clone());
                        let read = PendingRead {
                            deadline,
                            reply,
                            context,
                            asked: Instant::now(),
                        };
                        reads.insert(next_read, read);
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                replica.tick_with_snapshot_room(&|to| transport.snapshot_room(to));
                next_tick = (next_tick + interval).max(now);
                match (persister.syncing_since(), stall_limit) {
                    (None, _) => stall_handed_over = None,
                    (Some(since), Some(limit))
                        if replica.role() == Role::Leader
                            && !replica.sole_voter()
                            && !replica.transferring_leadership()
                            && stalled_sync_hands_over(since, limit, stall_handed_over, now) =>
                    {
                        stall_handed_over = Some(now);
                        hand_over_for_stall(&mut replica, now - since, log.as_ref());
                    }
                    (Some(_), _) => {}
                }
            }
            loop {
                while replica.handle_ready()? {
                    // Entries this round committed are applied: their waiters need not wait
                    // for the sync of the entries appended with them, nor for the writes below.
                    let messages = replica.take_messages();
                    if replica.commit_lsn() > shared.waiters.published() {
                        tell_transport_of_peers(&mut replica, &transport);
                        publish(&shared, &replica);
                    }
                    // The leader's appends leave before its own sync: followers persist in
                    // parallel.
                    transport.send(messages);
                    // A round done in full (a vote, a snapshot, a cut): a follower's
                    // acknowledgements leave as soon as what they acknowledge is durable,
                    // before raft's bookkeeping and the entries this sync committed.
                    replica.finish_sync()?;
                    transport.send(replica.take_messages());
                    replica.finish_ready()?;
                    transport.send(replica.take_messages());
                }
                // The rounds' entries are appended, not yet durable (section 3.3 of
                // docs/replication.md).
                let Some(lsn) = replica.unpersisted_lsn() else {
                    break;
                };
                let idle = {
                    let queue = shared.queue.lock();
                    queue.envelopes.is_empty() && queue.requests.is_empty()
                };
                // Nothing else to do now, and (on a follower) the leader waits for this
                // acknowledgement or (on a leader) no earlier round waits for its commit,
                // whose acknowledgements the thread could step meanwhile: then a hand-off to
                // the persister and back would only delay the sync's result.
                let alone = replica.role() != Role::Leader
                    || replica.commit_lsn() >= replica.wal().durable_lsn();
                // Not while the persister syncs: this sync would wait for that one (the log's
                // group commit), and a disk that hangs would stop this thread with it.
                if idle && alone && !persister.busy() {
                    replica.persist_now()?;
                    transport.send(replica.take_messages());
                    continue;
                }
                persister.want(lsn);
                break;
            }
            let rest = replica.take_messages();
            if !rest.is_empty() {
                transport.send(rest);
            }
            for (context, lsn) in replica.take_read_states() {
                let Some(ours) = context.strip_prefix(read_prefix.as_slice()) else {
                    continue;
                };
                let Ok(id) = <[u8; 8]>::try_from(ours) else {
                    continue;
                };
                if let Some(read) = reads.remove(&u64::from_le_bytes(id)) {
                    let _ = read.reply.send(Ok(lsn));
                }
            }
            if !reads.is_empty() {
                let now = Instant::now();
                reads.retain(|_, read| {
                    let waiting = read.deadline > now;
                    if !waiting {
                        let _ = read.reply.send(Err(Error::Timeout {
                            waiting_for: "a leader to confirm the read point",
                        }));
                    }
                    waiting
                });
                // raft-rs drops a read request without a word where it cannot serve it: a
                // leader that has not committed an entry of its term yet (right after its
                // election), a follower without a leader, a message lost. Asked again now and
                // then, such a read is answered once it can be, instead of at its deadline (a
                // request still waiting on the leader is not added twice: raft-rs keys them by
                // context).
                for read in reads.values_mut() {
                    if now.duration_since(read.asked) >= READ_ASKED_AGAIN_AFTER {
                        replica.read_index(read.context.clone());
                        read.asked = now;
                    }
                }
            }
            tell_transport_of_peers(&mut replica, &transport);
            publish(&shared, &replica);
            // After the status they change is published (the engine may ask who leads).
            replica.tell_leader_changes();
            let notes = replica.take_log();
            if let Some(log) = &log {
                for note in notes {
                    log(Severity::Warning, &note);
                }
            }
            if let Some((pending, state)) = replica.take_own_checkpoint() {
                // The previous one is done: the replica starts none while one is out.
                if let Some(done) = own_writer.take() {
                    let _ = done.join();
                }
                own_writer = write_own_checkpoint(pending, state, log.clone());
            }
        }
    }));
    if let Some(writer) = own_writer {
        let _ = writer.join();
    }
    // Its sync in progress ends before the node reports itself closed.
    drop(persister);
    // The failure first: a caller that sees `closed` then finds it in the status.
    let failure = match outcome {
        Ok(outcome) => {
            let failure = outcome.err().map(|e| e.to_string());
            *shared.status.lock() = status_of(&replica, failure.clone());
            // A leader change of the round that failed, told as the status shows it.
            without_unwinding(|| replica.tell_leader_changes());
            failure
        }
        Err(panic) => {
            let what = crate::error::panic_message(panic.as_ref());
            // Another thread (the persister, the log's background thread, a checkpoint's, a
            // compaction) may have poisoned the log between the replica's check of it and a
            // read raft-rs made. A poisoned log still answers for its durable records, which
            // is all raft-rs reads from it, so that should not end in a panic; should some
            // read still fail and raft-rs panic on the error, the disk's failure is what the
            // operator must hear of.
            let failure = match replica.wal().check_usable() {
                Err(poisoned @ rwal_wal::Error::Poisoned { .. }) => {
                    format!("log: {poisoned} (then the node's thread panicked: {what})")
                }
                _ => format!("the node's thread panicked: {what}"),
            };
            // The last published status stays, with the failure added.
            shared.status.lock().failure = Some(failure.clone());
            Some(failure)
        }
    };
    // Said once, as it happens: an operator should not have to poll the status to learn that
    // the node stopped.
    if let (Some(failure), Some(log)) = (&failure, &log_at_end) {
        without_unwinding(|| {
            log(
                Severity::Error,
                &format!("the node failed and stopped: {failure}"),
            )
        });
    }
    if shared.close_log_at_end.load(Ordering::Acquire) {
        // Closed from its own state machine: nobody else waits for the log to close.
        if let (Err(e), Some(log)) = (replica.wal().close_shared(), &log_at_end) {
            without_unwinding(|| log(Severity::Error, &format!("closing the log failed: {e}")));
        }
        shared.log_closed.store(true, Ordering::Release);
    }
    {
        // Under the status lock: a `wait_status` condition that reads it has either seen it
        // or is waiting for the notification below.
        let _status = shared.status.lock();
        shared.closed.store(true, Ordering::Release);
    }
    shared.status_cond.notify_all();
    shared.waiters.stop();
    // Answer whatever is still queued.
    let requests = std::mem::take(&mut shared.queue.lock().requests);
    for request in requests {
        match request {
            Request::Propose(_, reply) => drop(reply.send(Err(Error::Closed))),
            Request::ProposeAndWait(_, reply) => drop(reply), // answers Closed
            Request::Membership(_, _, reply) => drop(reply.send(Err(Error::Closed))),
            Request::TransferLeadership(_, reply) => drop(reply.send(Err(Error::Closed))),
            Request::StartCheckpoint(_, _, reply) => drop(reply.send(Err(Error::Closed))),
            Request::ReadIndex(_, reply) => drop(reply.send(Err(Error::Closed))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_logs_through_the_staged_backend_unless_told_otherwise() {
        let options = NodeOptions::new(1, "/nowhere", Bootstrap::Join);
        let wal = format!("{:?}", options.wal);
        assert!(wal.contains("backend: Staged"), "{wal}");
        // Everything else is the log's default.
        assert_eq!(
            wal.replace(
                "backend: Staged, backend_chosen: true",
                "backend: Mmap, backend_chosen: false"
            ),
            format!("{:?}", Options::new())
        );
    }

    #[test]
    fn a_snapshot_timeout_is_rounded_up_to_whole_ticks_and_never_zero() {
        let ms = Duration::from_millis;
        assert_eq!(snapshot_timeout_ticks(ms(500), ms(10)).unwrap(), 50);
        assert_eq!(snapshot_timeout_ticks(ms(25), ms(10)).unwrap(), 3);
        assert_eq!(snapshot_timeout_ticks(ms(1), ms(10)).unwrap(), 1);
        assert_eq!(
            snapshot_timeout_ticks(Duration::MAX, Duration::from_nanos(1)).unwrap(),
            u64::MAX
        );
        assert!(matches!(
            snapshot_timeout_ticks(Duration::ZERO, ms(10)),
            Err(Error::InvalidArgument {
                name: "snapshot_timeout",
                ..
            })
        ));
    }

    fn chunk(bytes: usize) -> Envelope {
        Envelope::SnapshotChunk(crate::transport::SnapshotChunk {
            from: 2,
            to: 1,
            lsn: 10,
            epoch: 1,
            offset: 0,
            total: bytes as u64,
            crc: 0,
            data: vec![7; bytes],
        })
    }

    #[test]
    fn the_inbox_queue_is_bounded_in_bytes_but_takes_one_envelope_of_any_size() {
        let mut queue = Queue::default();
        let (count_max, bytes_max) = (100, 10_000);
        let admit = |queue: &mut Queue, envelope: Envelope, count_max| {
            let bytes = envelope.bytes_held();
            queue.admit(envelope, bytes, count_max, bytes_max)
        };
        // Larger than the bound, into an empty queue: taken, alone.
        assert!(admit(&mut queue, chunk(50_000), count_max));
        assert!(!admit(&mut queue, chunk(10), count_max));
        let (taken, dropped) = queue.take_envelopes();
        assert_eq!((taken.len(), dropped), (1, 1));
        // Then up to the bound.
        let each = chunk(1_000).bytes_held();
        let fit = bytes_max / each;
        for _ in 0..fit {
            assert!(admit(&mut queue, chunk(1_000), count_max));
        }
        assert!(!admit(&mut queue, chunk(1_000), count_max));
        assert_eq!(queue.envelope_bytes, fit * each);
        assert_eq!(queue.take_envelopes().1, 1);
        assert_eq!(queue.envelope_bytes, 0);
        // The count bound holds for small envelopes too.
        for _ in 0..3 {
            assert!(admit(&mut queue, chunk(1), 3));
        }
        assert!(!admit(&mut queue, chunk(1), 3));
    }

    #[test]
    fn an_inbox_bounds_by_default_what_a_leader_may_have_in_flight() {
        // 256 appends of 1 MiB, a 16 MiB record, 64 chunks of 1 MiB.
        assert_eq!(in_flight_bytes(&Config::new(1)), 336 << 20);
        // A raft append counts its entries' payloads and their structures.
        let mut append = raft::eraftpb::Message::default();
        for _ in 0..10 {
            let mut entry = raft::eraftpb::Entry::default();
            entry.data = vec![1u8; 1000].into();
            append.mut_entries().push(entry);
        }
        let held = Envelope::Raft(append).bytes_held();
        assert!(
            (10_000 + 10 * std::mem::size_of::<raft::eraftpb::Entry>()..20_000).contains(&held),
            "{held}"
        );
    }

    /// A wait whose condition reads `stopped` while the node stops (with no new status) is
    /// not left waiting out its timeout: `wait_status` looks at the stop again under its lock.
    #[test]
    fn a_stop_during_a_wait_status_condition_ends_the_wait() {
        struct Nothing;
        impl StateMachine for Nothing {
            fn apply(&mut self, _: Lsn, _: u64, _: &[u8]) -> crate::EngineResult {
                Ok(())
            }
            fn restore(&mut self, _: Lsn, _: u64, _: &[u8]) -> crate::EngineResult {
                Ok(())
            }
            fn snapshot(&mut self) -> crate::EngineResult<EngineSnapshot> {
                Ok(Vec::new().into())
            }
        }
        let dir = std::env::temp_dir().join(format!("rwal-wait-stop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut options = NodeOptions::new(1, dir.join("node1"), Bootstrap::Voters(vec![1]));
        options.tick_interval = Duration::from_millis(10);
        let network = crate::transport::MemoryNetwork::new();
        let node = Arc::new(Node::open(options, Nothing, network.transport()).unwrap());
        let (_, led) = node.wait_status(Duration::from_secs(30), |s| s.role == Role::Leader);
        assert!(led);
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (done, stopped) = std::sync::mpsc::channel::<()>();
        let stopping = node.clone();
        let stopper = std::thread::spawn(move || {
            asked.recv().unwrap();
            stopping.shut_down().unwrap();
            done.send(()).unwrap();
        });
        let started = Instant::now();
        let mut first = true;
        let (_, held) = node.wait_status(Duration::from_secs(60), |_| {
            let seen = node.stopped();
            if std::mem::take(&mut first) {
                // The node stops between this look and the return.
                ask.send(()).unwrap();
                stopped.recv_timeout(Duration::from_secs(30)).unwrap();
            }
            seen
        });
        assert!(held);
        // A bound on a hang, not a measurement: the old code waited out the 60 s.
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "{:?}",
            started.elapsed()
        );
        stopper.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stalled_sync_hands_over_once_per_limit() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let limit = Duration::from_millis(100);
        // Not before the limit.
        assert!(!stalled_sync_hands_over(start, limit, None, at(99)));
        assert!(stalled_sync_hands_over(start, limit, None, at(100)));
        // Handed over at 100 ms: again only a limit later, while the same sync stalls.
        assert!(!stalled_sync_hands_over(
            start,
            limit,
            Some(at(100)),
            at(150)
        ));
        assert!(stalled_sync_hands_over(
            start,
            limit,
            Some(at(100)),
            at(200)
        ));
        // A sync that started after a clock reading (`now` older than `since`) is no stall.
        assert!(!stalled_sync_hands_over(at(300), limit, None, at(200)));
    }
}
