//! A deterministic simulation of a cluster of replicas: one thread, a simulated clock, an
//! in-memory network that loses, duplicates, delays and reorders messages, partitions, crashes
//! between calls or inside one with rwal-wal's simulated disk (unsynced writes lost or torn),
//! disks whose writes and syncs
//! fail (while a node runs, and as it opens), pauses, compaction racing slow followers, and
//! membership changes. Everything random comes from the seed, so a failing seed
//! replays exactly (`RWAL_REPL_SEED=<seed>`).

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use raft::eraftpb::MessageType;
use rwal_replication::{
    Bootstrap, Config, Envelope, MembershipChange, NodeId, Replica, Role, StateMachine,
};
use rwal_wal::rng::Rng;
use rwal_wal::{Backend, Lsn, Options, RecordKind, RecoveryEvent, SimDisk};

/// What one run exercises.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub voters: u64,
    /// Simulated milliseconds of faults; then everything heals and the cluster must converge.
    pub fault_ms: u64,
    pub loss_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub delay_max_ms: u64,
    pub partitions: bool,
    pub crashes: bool,
    pub pauses: bool,
    pub compaction: bool,
    pub membership: bool,
    /// A crash between the halves of a raft round happens once in this many rounds.
    pub crash_mid_round_one_in: u64,
    /// Deliberately broken replicas, for the checker's tests: the acknowledgements of appends,
    /// of votes, leave before what they stand for is durable.
    pub ack_before_persist: (bool, bool),
    /// Replicas in the background persistence mode (what `Node` runs): rounds complete
    /// unsynced, and the simulator syncs each node's log at random later steps.
    pub background_persist: bool,
    /// Disks that fail a write or a sync now and then (EIO, ENOSPC, a sync that forgets what it
    /// could not write): the node's log is poisoned, its process fails and restarts on the same
    /// disk, page cache included.
    pub disk_errors: bool,
    /// With disk errors, a failure is armed on some node's disk once in this many steps.
    pub disk_error_one_in: u64,
    /// With crashes, some crashes come inside a call: a live node's next write or sync stops
    /// the call there (the disk's armed panic), and the node crashes with what its disk held.
    pub crashes_inside_calls: bool,
    /// A broken page cache, for the checker's own test: what a failed sync forgot comes back
    /// from the cache at the next open, as it would to a recovery that trusted the cache
    /// (`SimDisk::keep_dropped_cached_pages`).
    pub keep_dropped_cached_pages: bool,
}

impl Scenario {
    /// A scenario drawn from the seed: 3 or 5 voters, every fault kind on or off.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed ^ 0x5ce4_a110);
        Scenario {
            seed,
            voters: if rng.one_in(3) { 5 } else { 3 },
            fault_ms: 1500 + rng.below(1500),
            loss_per_mille: [0, 20, 100, 250][rng.below(4) as usize],
            duplicate_per_mille: [0, 10, 50][rng.below(3) as usize],
            delay_max_ms: [1, 5, 20][rng.below(3) as usize],
            partitions: !rng.one_in(3),
            crashes: !rng.one_in(3),
            pauses: rng.one_in(2),
            compaction: !rng.one_in(3),
            membership: rng.one_in(2),
            crash_mid_round_one_in: 40,
            ack_before_persist: (false, false),
            background_persist: false,
            // From a generator of its own: the draws above, and so the scenarios and schedules
            // of the seeds without disk errors, stay what they were before this fault existed.
            disk_errors: Rng::new(seed ^ 0xd15c_e440).one_in(3),
            disk_error_one_in: 250,
            crashes_inside_calls: Rng::new(seed ^ 0x57a1_1ca1).one_in(3),
            keep_dropped_cached_pages: false,
        }
    }
}

/// An engine's state: for each user record, its epoch and the CRC32C of its payload.
pub type State = BTreeMap<Lsn, (u64, u32)>;

/// What the engine of a simulated node keeps: for each applied user record, its epoch and a
/// checksum of its payload. The snapshot is that map.
#[derive(Debug, Default)]
pub struct ModelState {
    pub records: State,
    pub applied: Lsn,
    /// Snapshots installed: the LSN, the epoch the node gave with it, and the state they
    /// carried.
    pub restores: Vec<(Lsn, u64, State)>,
    pub violations: Vec<String>,
}

#[derive(Clone, Default)]
pub struct Model(pub Arc<Mutex<ModelState>>);

pub fn encode_state(records: &BTreeMap<Lsn, (u64, u32)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 20);
    for (lsn, (epoch, crc)) in records {
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&epoch.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

fn decode_state(bytes: &[u8]) -> BTreeMap<Lsn, (u64, u32)> {
    bytes
        .chunks_exact(20)
        .map(|c| {
            let lsn = u64::from_le_bytes(c[0..8].try_into().unwrap());
            let epoch = u64::from_le_bytes(c[8..16].try_into().unwrap());
            let crc = u32::from_le_bytes(c[16..20].try_into().unwrap());
            (lsn, (epoch, crc))
        })
        .collect()
}

impl StateMachine for Model {
    fn apply(&mut self, lsn: Lsn, epoch: u64, data: &[u8]) -> rwal_replication::EngineResult {
        let mut state = self.0.lock();
        if lsn <= state.applied {
            let line = format!("applied {lsn} after {}", state.applied);
            state.violations.push(line);
        }
        state.applied = lsn;
        state.records.insert(lsn, (epoch, crc32c::crc32c(data)));
        Ok(())
    }

    fn snapshot(&mut self) -> rwal_replication::EngineResult<rwal_replication::EngineSnapshot> {
        Ok(encode_state(&self.0.lock().records).into())
    }

    fn restore(&mut self, lsn: Lsn, epoch: u64, snapshot: &[u8]) -> rwal_replication::EngineResult {
        let mut state = self.0.lock();
        // A snapshot installed takes the engine forward, never back: records applied past it
        // would be applied a second time.
        if lsn < state.applied {
            let line = format!(
                "restored a snapshot at {lsn} after applying {}",
                state.applied
            );
            state.violations.push(line);
        }
        let records = decode_state(snapshot);
        state.records = records.clone();
        state.applied = lsn;
        state.restores.push((lsn, epoch, records));
        Ok(())
    }
}

/// A message in flight (ordered by delivery time, then by sending order).
struct InFlight {
    at: u64,
    order: u64,
    envelope: Envelope,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for InFlight {}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first out of the max-heap.
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Which part of a snapshot's delivery a crash was armed at (`arm_crash_at_a_snapshot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SnapshotPart {
    /// The stream's last chunk.
    LastChunk,
    /// Raft's snapshot message, which installs the snapshot once every chunk is there.
    RaftMessage,
}

struct SimNode {
    id: NodeId,
    disk: SimDisk,
    replica: Option<Replica<Model>>,
    model: Model,
    bootstrap: Bootstrap,
    tick_every: u64,
    next_tick: u64,
    paused_until: u64,
    down_until: u64,
    last_commit: Lsn,
    /// Started at all (a joining node starts when the leader adds it).
    started: bool,
    incarnation: u64,
    /// The snapshots installed by the node's earlier incarnations (each restart starts a new
    /// engine model), checked at the end with those of the last.
    earlier_restores: Vec<(Lsn, u64, State)>,
    /// The committed entries of this incarnation's log checked against `Sim::committed` so
    /// far (up to this LSN).
    log_checked_to: Lsn,
    /// What its log and control file held durably when it last crashed, checked once it
    /// reopens: raft repairs a single node that lost synced records or its vote from the
    /// others, so only this check sees such a loss before it hits a quorum.
    durable_at_crash: Option<DurableAtCrash>,
    /// A disk failure is armed on this incarnation's disk (it may have fired already): an
    /// error from its replica is then the node's process failing, not a failed run.
    disk_fault_armed: bool,
    /// Its disk's next write or sync stops the call that makes it: the node crashes there.
    crash_armed: bool,
    /// How many writes and syncs the armed crash still let through when the step in progress
    /// began (`SimDisk::panic_after_left`), or when it was armed, if that was in this step: a
    /// crash in the step came that deep inside it.
    crash_left_at_step: Option<u64>,
    /// The step in which the armed crash was armed at a snapshot's delivery, and at which
    /// part of it (`arm_crash_at_a_snapshot`).
    snapshot_crash_armed_at: Option<(u64, SnapshotPart)>,
    /// The failure armed for its next open is a sync's (`arm_open_failure`).
    open_failure_at_sync: bool,
    /// Its disk's writes and syncs panic part way through its next open: the machine crashes
    /// in the middle of the recovery (`arm_crash_inside_an_open`).
    open_crash_armed: bool,
    /// The record at its durable LSN, with its epoch and checksum, as last seen while its log
    /// was usable (`check_step`): what a poisoned log no longer reads back.
    durable_seen: Option<(Lsn, u64, u32)>,
}

impl SimNode {
    /// Whether the crash armed inside a call was met: the disk's panic is spent.
    fn crash_met(&self) -> bool {
        self.crash_armed && !self.disk.has_armed_panic()
    }

    /// Whether this node runs a replica whose log a failure poisoned.
    fn log_poisoned(&self) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.wal().check_usable().is_err())
    }
}

/// What a crash must leave of a node: the record at its durable LSN (unless a checkpoint covers
/// it), and its term and vote.
struct DurableAtCrash {
    /// The durable LSN, with the epoch and checksum of the record there (`None`: compacted;
    /// no checksum where the poisoned log declared the record removed: a truncation or reset
    /// that failed half way, or whose declaration failed. A poisoned log still reads and tells the epochs of the records
    /// made durable before it failed).
    record: Option<(Lsn, u64, Option<u32>)>,
    durable_lsn: Lsn,
    /// Whether the log was poisoned when `record` was read.
    poisoned: bool,
    /// Its stored term and vote (the control file's state changes in memory only once its
    /// write is durable).
    term: u64,
    vote: u64,
    /// After a disk error, or a crash inside a call (`arm_crash_inside_a_call`), the node's
    /// commit LSN; `None` after a crash between calls. Either can stop a change whose intent
    /// was stored and whose sync did not follow, and which the reopen finishes: a truncation
    /// raft asked for, cutting records that were durable (raft only cuts entries that are not
    /// committed, so never below this LSN), or a term and vote written and not synced (never
    /// sent: a vote leaves once it is durable), newer than those stored.
    interrupted_at_commit: Option<Lsn>,
    /// A record durable earlier, with its checksum (`SimNode::durable_seen`), checked as the
    /// record above: after a disk error or a crash inside a call the log is poisoned, and
    /// refuses the read of the record at the durable LSN if a truncation that failed half way
    /// declared it removed, or tried to (until 2026-12-06 a poisoned log refused every read).
    earlier: Option<(Lsn, u64, u32)>,
}

/// A proposal the client made, and what became of it.
struct Proposal {
    node: NodeId,
    incarnation: u64,
    lsn: Lsn,
    epoch: u64,
    crc: u32,
    payload: Vec<u8>,
}

/// Counts of what a run did, to show that each fault happened.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub proposals: u64,
    pub acknowledged: u64,
    pub superseded: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub crashes_mid_round: u64,
    pub pauses: u64,
    pub checkpoints: u64,
    pub segments_compacted: u64,
    pub snapshots_installed: u64,
    pub membership_changes: u64,
    pub leaders: u64,
    /// Syncs of the background mode's simulated persister that made some round durable.
    pub background_syncs: u64,
    pub final_commit: Lsn,
    /// Runs that ended with every node crashed at once, restarted and checked again.
    pub final_crashes: u64,
    /// Disk failures armed; node processes that failed on one and restarted; checkpoints that
    /// failed on one and left the node running.
    pub disk_faults_armed: u64,
    pub disk_failures: u64,
    pub disk_failures_survived: u64,
    /// Failures armed for an open; opens that failed on one (and were tried again later).
    pub open_failures_armed: u64,
    pub failed_opens: u64,
    /// Crashes inside a call: armed, and met.
    pub crashes_inside_calls_armed: u64,
    pub crashes_inside_calls: u64,
    /// Of those, the ones past the seventh write or sync of the node in the step that met
    /// them: in the middle of a round's calls (a checkpoint, a truncation, a snapshot's
    /// install; none was armed there until 2026-12-06).
    pub crashes_inside_calls_deep: u64,
    /// Crashes in the middle of an open: armed, and met (`arm_crash_inside_an_open`).
    pub crashes_inside_opens_armed: u64,
    pub crashes_inside_opens: u64,
    /// Crashes armed as a snapshot's last chunk reached its node, and of those, the ones met
    /// in that step (`arm_crash_at_a_last_chunk`): in the chunk's write, or anywhere in the
    /// node's calls of the rest of the step, which holds the install only when raft's snapshot
    /// message came in the same step (the two travel with delays of their own). Not a count
    /// of crashes inside installs: nothing here tells which call met the panic.
    pub crashes_at_last_chunks_armed: u64,
    pub crashes_at_last_chunks_met_in_step: u64,
    /// Crashes armed as raft's snapshot message reached its node, and of those, the ones met
    /// in that step (`arm_crash_at_a_snapshot`): the message installs the snapshot in that
    /// step when every chunk is there, or is dropped when one is missing (a lost or late
    /// chunk). Again not a count of crashes inside installs.
    pub crashes_at_snapshot_messages_armed: u64,
    pub crashes_at_snapshot_messages_met_in_step: u64,
    /// Restarts after a disk error or a crash inside a call whose check compared, byte for
    /// byte, a durable record: the one at the durable LSN, read from the poisoned log, or one
    /// seen durable earlier.
    pub compared_after_a_failure: u64,
    /// Restarts whose record at the durable LSN was read from the log poisoned before the
    /// crash (a poisoned log refused every read until the later stop of 2026-12-06).
    pub read_from_a_poisoned_log: u64,
}

pub struct Sim {
    scenario: Scenario,
    rng: Rng,
    /// Draws the crashes inside opens (`arm_crash_inside_an_open`): a generator of its own,
    /// so that a seed whose schedule meets none draws what it did before they came.
    open_crash_rng: Rng,
    now: u64,
    nodes: Vec<SimNode>,
    network: BinaryHeap<InFlight>,
    order: u64,
    blocked: Vec<(NodeId, NodeId)>,
    heal_at: u64,
    pending: Vec<Proposal>,
    acknowledged: Vec<Proposal>,
    leaders_by_term: HashMap<u64, NodeId>,
    /// Every committed entry any node's log has shown: its epoch, kind and payload checksum.
    /// A committed entry never changes, on any node, across crashes and restarts.
    committed: BTreeMap<Lsn, (u64, RecordKind, u32)>,
    next_payload: u64,
    pub stats: Stats,
    membership_step: u32,
    heal_proposals_until: u64,
}

const ELECTION_TICKS: usize = 10;
const TICK_MS: u64 = 10;

fn config(id: NodeId) -> Config {
    let mut config = Config::new(id);
    config.election_ticks = ELECTION_TICKS;
    // Deterministic: raft-rs would draw the timeout from `thread_rng`; the simulator jitters
    // each node's ticks from the seed instead.
    config.election_ticks_max = ELECTION_TICKS + 1;
    config.heartbeat_ticks = 2;
    config.max_bytes_per_message = 64 << 10;
    config.follower_pin_cap_bytes = Some(512 << 10);
    config.snapshot_chunk_bytes = 4 << 10;
    config.snapshot_chunks_per_tick = 2;
    config.snapshot_timeout_ticks = 30;
    config.commit_store_interval = 64;
    config
}

fn options(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .background_threads(false)
        .segment_bytes(1 << 20)
}

impl Sim {
    pub fn new(scenario: Scenario) -> Sim {
        rwal_tests::quiet_armed_panics();
        let mut rng = Rng::new(scenario.seed);
        let voters: Vec<NodeId> = (1..=scenario.voters).collect();
        // One spare node joins when membership changes are on.
        let count = scenario.voters + u64::from(scenario.membership);
        let nodes = (1..=count)
            .map(|id| {
                let tick_every = TICK_MS - 1 + rng.below(3);
                SimNode {
                    id,
                    disk: SimDisk::new(),
                    replica: None,
                    model: Model::default(),
                    bootstrap: if id <= scenario.voters {
                        Bootstrap::Voters(voters.clone())
                    } else {
                        Bootstrap::Join
                    },
                    tick_every,
                    next_tick: rng.below(tick_every) + 1,
                    paused_until: 0,
                    down_until: 0,
                    last_commit: 0,
                    started: id <= scenario.voters,
                    incarnation: 0,
                    earlier_restores: Vec::new(),
                    log_checked_to: 0,
                    durable_at_crash: None,
                    disk_fault_armed: false,
                    crash_armed: false,
                    crash_left_at_step: None,
                    open_failure_at_sync: false,
                    open_crash_armed: false,
                    snapshot_crash_armed_at: None,
                    durable_seen: None,
                }
            })
            .collect();
        let open_crash_rng = Rng::new(scenario.seed ^ 0x0bec_0e13);
        let mut sim = Sim {
            scenario,
            rng,
            open_crash_rng,
            now: 0,
            nodes,
            network: BinaryHeap::new(),
            order: 0,
            blocked: Vec::new(),
            heal_at: 0,
            pending: Vec::new(),
            acknowledged: Vec::new(),
            leaders_by_term: HashMap::new(),
            committed: BTreeMap::new(),
            next_payload: 0,
            stats: Stats::default(),
            membership_step: 0,
            heal_proposals_until: 0,
        };
        for i in 0..sim.nodes.len() {
            if sim.nodes[i].started {
                sim.start(i).expect("a new replica opens");
            }
        }
        sim
    }

    fn start(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        // What the last incarnation's engine saw is checked before its model is replaced: a
        // violation recorded in the step of a crash (which skips the node's checks) and the
        // snapshots it installed were lost with it.
        let earlier = std::mem::take(&mut *node.model.0.lock());
        if let Some(v) = earlier.violations.first() {
            return Err(format!("node {} before its restart: {v}", node.id));
        }
        node.earlier_restores.extend(earlier.restores);
        node.model = Model::default();
        // Its log is read again from its start: what survived the crash must be what was
        // committed.
        node.log_checked_to = 0;
        if self.scenario.keep_dropped_cached_pages {
            node.disk.keep_dropped_cached_pages();
        }
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Replica::open(
                format!("/sim/{}", node.id),
                options(&node.disk),
                config(node.id),
                node.bootstrap.clone(),
                node.model.clone(),
            )
        }));
        // The crash armed for this open (`arm_crash_inside_an_open`), met: a panic of the
        // disk, or a sync's panic that the log turned into a failed sync.
        let crashed = node.open_crash_armed
            && !node.disk.has_armed_panic()
            && match &opened {
                Err(panic) => SimDisk::is_armed_panic(panic.as_ref()),
                Ok(Err(e)) => e.to_string().contains(SimDisk::ARMED_PANIC),
                Ok(Ok(_)) => false,
            };
        if crashed {
            drop(opened);
            node.open_crash_armed = false;
            node.disk.clear_faults();
            node.disk = node.disk.crash(self.open_crash_rng.next_u64());
            node.down_until = self.now + 20 + self.open_crash_rng.below(300);
            self.stats.crashes_inside_opens += 1;
            return Ok(());
        }
        let opened = opened.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if node.open_crash_armed {
            // The open made fewer writes and syncs than armed; the rest of the node's life
            // must not meet the panic.
            if !node.disk.has_armed_panic() {
                return Err(format!(
                    "node {} met the panic armed inside its open, and {}",
                    node.id,
                    match &opened {
                        Ok(_) => "opened".to_string(),
                        Err(e) => format!("failed with: {e}"),
                    }
                ));
            }
            node.disk.clear_faults();
            node.open_crash_armed = false;
        }
        let mut replica = match opened {
            Ok(replica) => replica,
            // The failure armed for this open (`arm_open_failure`), met: the process fails to
            // start, and tries again later. Now and then the machine crashes first, losing what
            // the failed open wrote and did not sync.
            Err(e)
                if node.disk_fault_armed
                    && !node.disk.has_armed_failure()
                    && names_an_armed_errno(&e.to_string()) =>
            {
                node.disk.clear_faults();
                node.disk_fault_armed = false;
                node.open_failure_at_sync = false;
                if self.rng.one_in(2) {
                    node.disk = node.disk.crash(self.rng.next_u64());
                }
                node.down_until = self.now + 20 + self.rng.below(300);
                self.stats.failed_opens += 1;
                return Ok(());
            }
            Err(e) => return Err(format!("node {} does not reopen: {e}", node.id)),
        };
        // A failed sync is never passed over: what it should have made durable may not be.
        if node.open_failure_at_sync && !node.disk.has_armed_failure() {
            return Err(format!(
                "node {} met a failed sync as it opened, and opened",
                node.id
            ));
        }
        node.open_failure_at_sync = false;
        if let Some(before) = node.durable_at_crash.take() {
            check_survived(node.id, &replica, &before)?;
            let read_at_the_failure = before.record.is_some_and(|(.., crc)| crc.is_some());
            if before.interrupted_at_commit.is_some()
                && (read_at_the_failure || before.earlier.is_some())
            {
                self.stats.compared_after_a_failure += 1;
            }
            if before.poisoned && read_at_the_failure {
                self.stats.read_from_a_poisoned_log += 1;
            }
        }
        node.durable_seen = None;
        let (appends, votes) = self.scenario.ack_before_persist;
        replica.break_ack_before_persist_of(appends, votes);
        replica.persist_in_background(self.scenario.background_persist);
        node.last_commit = replica.commit_lsn();
        node.replica = Some(replica);
        node.incarnation += 1;
        node.started = true;
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        self.crash_at(i, false);
    }

    /// Crashes node `i`, between calls or (`inside_a_call`) in the middle of one.
    fn crash_at(&mut self, i: usize, inside_a_call: bool) {
        let seed = self.rng.next_u64();
        let node = &mut self.nodes[i];
        if let Some(replica) = node.replica.as_ref() {
            node.durable_at_crash = Some(DurableAtCrash {
                interrupted_at_commit: inside_a_call.then(|| replica.commit_lsn()),
                earlier: still_in_the_log(node.durable_seen, replica),
                ..durable_now(replica)
            });
        }
        // The image is taken first: dropping the replica afterwards syncs the old disk only,
        // which must not meet a failure or panic still armed there.
        let survivor = node.disk.crash(seed);
        node.disk.clear_faults();
        // The image's disk has no failure armed.
        node.disk_fault_armed = false;
        node.crash_armed = false;
        if let Some(replica) = node.replica.take() {
            self.stats.snapshots_installed += replica.snapshots_installed();
        }
        node.disk = survivor;
        node.down_until = self.now + 20 + self.rng.below(300);
        self.stats.crashes += 1;
    }

    /// Node `i`'s replica returned `error`. With a disk failure armed on its disk, that is its
    /// process failing, as `Node` fails on a poisoned log: it stops, and restarts later on the
    /// same disk, without a crash (the page cache keeps what a failed sync left in it, clean
    /// or dirty). Otherwise the run fails with `error`.
    fn replica_failed(&mut self, i: usize, error: String) -> Result<(), String> {
        // The crash armed inside a call, met in a sync that the log ran and failed when it
        // panicked (it turns a sync's panic into a failure): the machine crashes there.
        if self.nodes[i].crash_met() && error.contains(SimDisk::ARMED_PANIC) {
            self.count_crash_inside_a_call(i);
            self.crash_at(i, true);
            return Ok(());
        }
        let node = &mut self.nodes[i];
        // The failure armed, met: the log poisoned, or the error naming the errno armed (a
        // snapshot file's write that failed does not poison the log, and fails the round).
        let from_the_disk = node.log_poisoned() || names_an_armed_errno(&error);
        if !node.disk_fault_armed || !from_the_disk {
            return Err(error);
        }
        node.durable_at_crash = node.replica.as_ref().map(|replica| DurableAtCrash {
            interrupted_at_commit: Some(replica.commit_lsn()),
            earlier: still_in_the_log(node.durable_seen, replica),
            ..durable_now(replica)
        });
        // Disarmed before the replica is dropped: its close must not meet what is armed.
        node.disk.clear_faults();
        if let Some(replica) = node.replica.take() {
            self.stats.snapshots_installed += replica.snapshots_installed();
        }
        node.disk_fault_armed = false;
        node.crash_armed = false;
        node.down_until = self.now + 20 + self.rng.below(300);
        self.stats.disk_failures += 1;
        Ok(())
    }

    /// The simulator's own checkpoint or compaction of node `i` failed with `error`. With the
    /// log poisoned, the node's process fails (`replica_failed`); a checkpoint that failed on
    /// the disk failure armed without poisoning the log (its snapshot file's write) leaves the
    /// node running, as `Node::checkpoint` does its caller's. Any other error fails the run.
    fn checkpoint_failed(&mut self, i: usize, error: String) -> Result<(), String> {
        let node = &mut self.nodes[i];
        if node.log_poisoned() || node.crash_met() {
            return self.replica_failed(i, error);
        }
        if node.disk_fault_armed && names_an_armed_errno(&error) {
            node.disk.clear_faults();
            node.disk_fault_armed = false;
            self.stats.disk_failures_survived += 1;
            return Ok(());
        }
        Err(error)
    }

    /// Arms one failure on the disk of a random live node, unless one is armed there.
    fn arm_disk_failure(&mut self) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let node = &mut self.nodes[i];
        if node.replica.is_none() || node.disk_fault_armed {
            return;
        }
        arm_one_failure(&node.disk, &mut self.rng, 0);
        node.disk_fault_armed = true;
        self.stats.disk_faults_armed += 1;
    }

    /// Arms one failure on the disk of node `i`, down, for its next open to meet: a failed
    /// write, sync (one of the first four) or directory sync, in the middle of recovery or of
    /// what the replica stores as it opens. The open must then fail naming it (`start`), and
    /// a later one recover what was durable.
    fn arm_open_failure(&mut self, i: usize) {
        let passing = self.rng.below(4);
        let node = &mut self.nodes[i];
        node.open_failure_at_sync = arm_one_failure(&node.disk, &mut self.rng, passing);
        node.disk_fault_armed = true;
        self.stats.open_failures_armed += 1;
    }

    /// Arms a crash in the middle of node `i`'s next open (the node is down): one of the
    /// open's first six writes and file syncs panics (no open was seen to make more: on
    /// 2026-12-06, armed as far as the 48th in 300 seeds, none came past the sixth), which
    /// stops the open there, and the
    /// machine crashes with what the disk held (`start`). That is always in the log's
    /// recovery: after it the replica's open only reads (it writes at open only when it
    /// founds the log, which a restart does not), and that is also why the crash image is
    /// sound: were the panic to come once the log is open, the unwinding would drop the log,
    /// whose close syncs, and the image would keep more than a crash does. The open after it starts from what the
    /// stopped one left, and is checked against what was durable before the first crash.
    /// Only after a crash between calls, as failed opens (`restart_due` says why).
    fn arm_crash_inside_an_open(&mut self, i: usize) {
        let passing = self.open_crash_rng.below(6);
        let node = &mut self.nodes[i];
        node.disk.panic_after(passing);
        node.open_crash_armed = true;
        self.stats.crashes_inside_opens_armed += 1;
    }

    /// Arms a crash inside a call on a random live node: its disk's next write or next sync,
    /// or one of the six after it (one time in two, of the 48 after it), panics, which stops
    /// the call there (a panic inside the log poisons it on the way
    /// out), and the node crashes with what its disk then held (`crashed_inside_a_call`).
    fn arm_crash_inside_a_call(&mut self) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let at = self.rng.below(3);
        let reach = if self.rng.one_in(2) { 48 } else { 6 };
        let passing = self.rng.below(reach);
        let node = &mut self.nodes[i];
        if node.replica.is_none() || node.crash_armed {
            return;
        }
        match at {
            0 => node.disk.panic_on_next_write(),
            1 => node.disk.panic_on_next_sync(),
            // Deeper inside a call that writes and syncs several times (a checkpoint, a
            // truncation, a snapshot's install), or in a later call.
            _ => return self.arm_panic_after(i, 1 + passing),
        }
        self.mark_crash_armed(i, None);
    }

    /// Arms node `i`'s disk to panic after `passing` more writes and syncs, as a crash inside
    /// the call under way or a later one. Armed in the middle of a step: what the panic lets
    /// through counts from here.
    fn arm_panic_after(&mut self, i: usize, passing: u64) {
        self.nodes[i].disk.panic_after(passing);
        self.mark_crash_armed(i, Some(passing));
    }

    /// Marks node `i`'s disk armed to panic inside a call and counts it; `left_at_step` is how
    /// many writes and syncs the panic lets through, when it is armed in the middle of a step.
    fn mark_crash_armed(&mut self, i: usize, left_at_step: Option<u64>) {
        let node = &mut self.nodes[i];
        node.crash_armed = true;
        node.crash_left_at_step = left_at_step;
        node.snapshot_crash_armed_at = None;
        self.stats.crashes_inside_calls_armed += 1;
    }

    /// Arms a crash as a snapshot's last chunk or raft's snapshot message reaches node `i`, so
    /// that crashes come near a snapshot's install (armed at random, they met an install's
    /// writes only by chance): one of the next writes and syncs panics, in the rest of the
    /// step or in a later call. Raft's message installs the snapshot in its step when every
    /// chunk is there, which took 14 writes and syncs here (2026-12-07): the panic comes at
    /// one of the next 16. A chunk is held in memory until then: the panic armed at the last
    /// one comes at one of the next 24, in the install if raft's message comes in the same
    /// step, or in a later call. Armed also when the chunk or the message will be refused or
    /// dropped (after a lost chunk) or was held already: the simulator does not see the
    /// replica's streams.
    fn arm_crash_at_a_snapshot(&mut self, i: usize, part: SnapshotPart) {
        let passing = match part {
            SnapshotPart::LastChunk => self.rng.below(24),
            SnapshotPart::RaftMessage => self.rng.below(16),
        };
        self.arm_panic_after(i, passing);
        self.nodes[i].snapshot_crash_armed_at = Some((self.now, part));
        match part {
            SnapshotPart::LastChunk => self.stats.crashes_at_last_chunks_armed += 1,
            SnapshotPart::RaftMessage => self.stats.crashes_at_snapshot_messages_armed += 1,
        }
    }

    /// Arms a crash in the checkpoint and compaction that node `i` is about to run: one of
    /// their first 24 writes and syncs panics (crashes armed at random come so deep inside a
    /// step only rarely: 3 in 200 seeds).
    fn arm_crash_inside_a_checkpoint(&mut self, i: usize) {
        let passing = self.rng.below(24);
        self.arm_panic_after(i, passing);
    }

    /// Counts the crash armed inside a call on node `i`, met.
    fn count_crash_inside_a_call(&mut self, i: usize) {
        self.stats.crashes_inside_calls += 1;
        match self.nodes[i].snapshot_crash_armed_at {
            Some((at, SnapshotPart::LastChunk)) if at == self.now => {
                self.stats.crashes_at_last_chunks_met_in_step += 1;
            }
            Some((at, SnapshotPart::RaftMessage)) if at == self.now => {
                self.stats.crashes_at_snapshot_messages_met_in_step += 1;
            }
            _ => {}
        }
        if self.nodes[i]
            .crash_left_at_step
            .is_some_and(|left| left >= 7)
        {
            self.stats.crashes_inside_calls_deep += 1;
        }
    }

    /// A panic stopped a step: if it is a crash armed inside a call, met, that node crashes
    /// now, with what its disk held once the call unwound (which writes nothing, but may
    /// remove an unfinished snapshot's temporary file, as a panicking process would); any
    /// other panic goes on.
    fn crashed_inside_a_call(&mut self, panic: Box<dyn std::any::Any + Send>) {
        let Some(i) = self.nodes.iter().position(SimNode::crash_met) else {
            std::panic::resume_unwind(panic);
        };
        if !SimDisk::is_armed_panic(panic.as_ref()) {
            std::panic::resume_unwind(panic);
        }
        self.count_crash_inside_a_call(i);
        self.crash_at(i, true);
    }

    /// Restarts the nodes that are down and due. With disk errors, while faults last, one
    /// restart in three after a crash between calls has a failure armed for its open; with
    /// crashes inside calls, one in three of the others a crash in the middle of it.
    ///
    /// Not after a disk error or a crash inside a call: that may leave a truncation stored and
    /// not finished, which the reopen finishes and reports (`check_survived` allows the cut
    /// then). An open that finished it and then failed would leave the next open nothing to
    /// report, and the checker could not tell the cut from a lost record. The log's own
    /// simulation (`tests/tests/sim_schedules.rs`) fails recoveries after such failures too,
    /// checking every record against its model.
    fn restart_due(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if node.started && node.replica.is_none() && self.now >= node.down_until {
                let after_a_crash_between_calls = node
                    .durable_at_crash
                    .as_ref()
                    .is_some_and(|before| before.interrupted_at_commit.is_none());
                if self.scenario.disk_errors
                    && self.now < self.scenario.fault_ms
                    && after_a_crash_between_calls
                    && self.rng.one_in(3)
                {
                    self.arm_open_failure(i);
                } else if self.scenario.crashes_inside_calls
                    && self.now < self.scenario.fault_ms
                    && after_a_crash_between_calls
                    && self.open_crash_rng.one_in(3)
                {
                    self.arm_crash_inside_an_open(i);
                }
                self.start(i)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, envelopes: Vec<Envelope>) {
        for envelope in envelopes {
            if self.rng.below(1000) < self.scenario.loss_per_mille {
                self.stats.lost += 1;
                continue;
            }
            let copies = if self.rng.below(1000) < self.scenario.duplicate_per_mille {
                self.stats.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + 1 + self.rng.below(self.scenario.delay_max_ms);
                self.order += 1;
                self.network.push(InFlight {
                    at,
                    order: self.order,
                    envelope: envelope.clone(),
                });
            }
        }
    }

    fn index_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Delivers the messages due; with `faults`, may arm a crash at a snapshot's last chunk or
    /// raft's snapshot message that it delivers (`arm_crash_at_a_snapshot`).
    fn deliver(&mut self, faults: bool) {
        let arm_at_snapshots =
            faults && self.scenario.crashes && self.scenario.crashes_inside_calls;
        let mut held = Vec::new();
        while let Some(top) = self.network.peek() {
            if top.at > self.now {
                break;
            }
            let flight = self.network.pop().expect("peeked");
            let (from, to) = (flight.envelope.from(), flight.envelope.to());
            if self.blocked.contains(&(from, to)) {
                self.stats.lost += 1;
                continue;
            }
            let Some(i) = self.index_of(to) else { continue };
            let node = &mut self.nodes[i];
            if node.paused_until > self.now && node.replica.is_some() {
                // A stopped process: its socket buffers what arrives.
                held.push(flight);
                continue;
            }
            if node.replica.is_none() {
                continue;
            }
            let part = match &flight.envelope {
                Envelope::SnapshotChunk(c)
                    if !c.data.is_empty() && c.offset + c.data.len() as u64 == c.total =>
                {
                    Some(SnapshotPart::LastChunk)
                }
                Envelope::Raft(m) if m.get_msg_type() == MessageType::MsgSnapshot => {
                    Some(SnapshotPart::RaftMessage)
                }
                _ => None,
            };
            // Whenever no crash is armed there yet (few snapshots are installed while faults
            // run: most catch a node up once the cluster heals); at a last chunk one time in
            // four, so that raft's message, which comes after it when the install can start,
            // mostly finds the node unarmed.
            if let Some(part) = part.filter(|_| arm_at_snapshots && !node.crash_armed) {
                if part == SnapshotPart::RaftMessage || self.rng.one_in(4) {
                    self.arm_crash_at_a_snapshot(i, part);
                }
            }
            let replica = self.nodes[i].replica.as_mut().expect("checked above");
            replica.step(flight.envelope);
            self.stats.delivered += 1;
        }
        for mut flight in held {
            flight.at = self.nodes[self.index_of(flight.envelope.to()).unwrap()].paused_until;
            self.network.push(flight);
        }
    }

    /// Runs every live node's raft rounds; may crash a node between the halves of a round.
    fn process(&mut self, crash_mid_round: bool) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused_until > self.now {
                continue;
            }
            let id = self.nodes[i].id;
            self.rounds(i, id, crash_mid_round)?;
            // The background mode's persister: the log becomes durable at some later step
            // (or the node crashes first and loses the rounds' entries).
            while self.scenario.background_persist && self.rng.one_in(2) {
                let Some(replica) = self.nodes[i].replica.as_mut() else {
                    break;
                };
                let Some(wanted) = replica.unpersisted_lsn() else {
                    break;
                };
                let durable = replica.wal().durable_lsn();
                let synced = if wanted > durable && self.rng.one_in(2) {
                    // Only some of the rounds become durable (a sync that started before the
                    // later rounds were appended).
                    let lsn = durable + 1 + self.rng.below(wanted - durable);
                    let synced = replica.wal().commit(lsn);
                    if synced.is_ok() {
                        replica.note_durable();
                    }
                    synced.map_err(|e| format!("node {id}: commit {lsn}: {e}"))
                } else {
                    replica
                        .persist_now()
                        .map_err(|e| format!("node {id}: persist_now: {e}"))
                };
                if let Err(e) = synced {
                    self.replica_failed(i, e)?;
                    break;
                }
                self.stats.background_syncs += 1;
                let out = replica.take_messages();
                self.send(out);
                self.rounds(i, id, crash_mid_round)?;
            }
        }
        Ok(())
    }

    /// Runs node `i`'s rounds until raft has nothing more; may crash it between the halves of
    /// a round (in the background mode: before the round's entries are durable).
    fn rounds(&mut self, i: usize, id: NodeId, crash_mid_round: bool) -> Result<(), String> {
        while let Some(replica) = self.nodes[i].replica.as_mut() {
            let worked = match replica.handle_ready() {
                Ok(worked) => worked,
                Err(e) => return self.replica_failed(i, format!("node {id}: handle_ready: {e}")),
            };
            if !worked {
                break;
            }
            let out = replica.take_messages();
            self.send(out);
            // As `Node` publishes right after this half of the round: a client may be told
            // its proposal committed, and a leader elected, before the crash below (until
            // 2026-12-06 both were noted only at the end of the step, which such a crash
            // skipped).
            self.note_leader(i)?;
            self.acknowledge();
            if crash_mid_round && self.rng.one_in(self.scenario.crash_mid_round_one_in) {
                self.stats.crashes_mid_round += 1;
                self.crash(i);
                break;
            }
            let replica = self.nodes[i].replica.as_mut().expect("live");
            if let Err(e) = replica.finish_ready() {
                return self.replica_failed(i, format!("node {id}: finish_ready: {e}"));
            }
            let out = self.nodes[i]
                .replica
                .as_mut()
                .expect("live")
                .take_messages();
            self.send(out);
        }
        Ok(())
    }

    fn leader_index(&self) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.paused_until <= self.now
                && n.replica.as_ref().is_some_and(|r| r.role() == Role::Leader)
        })
    }

    fn propose(&mut self) {
        let Some(i) = self.leader_index() else { return };
        self.next_payload += 1;
        let len = 16 + self.rng.below(8000) as usize;
        let mut payload = format!(
            "seed {} proposal {} ",
            self.scenario.seed, self.next_payload
        )
        .into_bytes();
        payload.resize(len, b'.');
        let node = &mut self.nodes[i];
        let replica = node.replica.as_mut().expect("leader is live");
        if let Ok((lsn, epoch)) = replica.propose(&payload) {
            self.stats.proposals += 1;
            self.pending.push(Proposal {
                node: node.id,
                incarnation: node.incarnation,
                lsn,
                epoch,
                crc: crc32c::crc32c(&payload),
                payload,
            });
        }
    }

    /// What `wait_committed` tells a client: acknowledged once the proposing node (still the
    /// same process) has committed that LSN with that epoch; superseded if another entry holds
    /// the LSN.
    fn acknowledge(&mut self) {
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let Some(i) = self.index_of(p.node) else {
                continue;
            };
            let node = &self.nodes[i];
            let Some(replica) = node
                .replica
                .as_ref()
                .filter(|_| node.incarnation == p.incarnation)
            else {
                continue; // The process died: the client never learns.
            };
            let wal = replica.wal();
            let committed = replica.commit_lsn() >= p.lsn;
            if committed || wal.last_lsn() >= p.lsn {
                match wal.epoch_at(p.lsn) {
                    Ok(e) if e == p.epoch && committed => {
                        self.stats.acknowledged += 1;
                        self.acknowledged.push(p);
                        continue;
                    }
                    // As `Node::wait_committed` decides: superseded only once the LSN is
                    // committed with another epoch. Until 2026-12-04 an uncommitted one counted
                    // here, a case the node no longer reports (docs/replication.md, 8.1).
                    Ok(e) if e != p.epoch && committed => {
                        self.stats.superseded += 1;
                        continue;
                    }
                    Err(rwal_wal::Error::Compacted { .. }) => continue,
                    _ => {}
                }
            }
            still.push(p);
        }
        self.pending = still;
    }

    /// Records node `i` as its term's leader if it leads; two leaders in one term fail.
    fn note_leader(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        let Some(replica) = node.replica.as_ref().filter(|r| r.role() == Role::Leader) else {
            return Ok(());
        };
        let leader = *self
            .leaders_by_term
            .entry(replica.term())
            .or_insert_with(|| {
                self.stats.leaders += 1;
                node.id
            });
        if leader != node.id {
            return Err(format!(
                "two leaders in term {}: {leader} and {}",
                replica.term(),
                node.id
            ));
        }
        Ok(())
    }

    fn check_step(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            self.note_leader(i)?;
        }
        // A crash armed inside a call, met in a sync that the log turned into a failure, in a
        // call whose error the simulator passes over (a proposal's): the machine crashes now,
        // before a later panic of another node's could be blamed on this one.
        for i in 0..self.nodes.len() {
            if self.nodes[i].crash_met() {
                self.count_crash_inside_a_call(i);
                self.crash_at(i, true);
            }
        }
        for node in &mut self.nodes {
            let Some(replica) = node.replica.as_ref() else {
                continue;
            };
            let commit = replica.commit_lsn();
            if commit < node.last_commit {
                return Err(format!(
                    "node {}'s commit LSN went back from {} to {commit}",
                    node.id, node.last_commit
                ));
            }
            node.last_commit = commit;
            // A failure met where it fails no call (the replica's own checkpoint, which a
            // failed write abandons without poisoning the log): the node may be armed again,
            // and a later error of its replica is not excused by it.
            if node.disk_fault_armed
                && !node.disk.has_armed_failure()
                && replica.wal().check_usable().is_ok()
            {
                node.disk_fault_armed = false;
            }
            note_durable_record(node);
            let model = node.model.0.lock();
            if let Some(v) = model.violations.first() {
                return Err(format!("node {}: {v}", node.id));
            }
            drop(model);
            check_committed(node, &mut self.committed)?;
        }
        Ok(())
    }

    fn faults(&mut self) -> Result<(), String> {
        let s = self.scenario.clone();
        let n = self.nodes.len();
        if s.partitions && self.blocked.is_empty() && self.rng.one_in(400) {
            self.stats.partitions += 1;
            let victim = self.nodes[self.rng.below(n as u64) as usize].id;
            let one_way = self.rng.one_in(2);
            for other in self.nodes.iter().map(|n| n.id).filter(|id| *id != victim) {
                self.blocked.push((other, victim));
                if !one_way {
                    self.blocked.push((victim, other));
                }
            }
            self.heal_at = self.now + 100 + self.rng.below(600);
        }
        if !self.blocked.is_empty() && self.now >= self.heal_at {
            self.blocked.clear();
        }
        if s.crashes && self.rng.one_in(300) {
            let i = self.rng.below(n as u64) as usize;
            if self.nodes[i].replica.is_some() {
                self.crash(i);
            }
        }
        // Only drawn in a scenario with disk errors: the others keep their schedules.
        if s.disk_errors && self.rng.one_in(s.disk_error_one_in) {
            self.arm_disk_failure();
        }
        // Likewise.
        if s.crashes && s.crashes_inside_calls && self.rng.one_in(200) {
            self.arm_crash_inside_a_call();
        }
        self.restart_due()?;
        if s.pauses && self.rng.one_in(500) {
            if let Some(i) = self.leader_index() {
                self.stats.pauses += 1;
                // Longer than the election timeout.
                let election_ms = ELECTION_TICKS as u64 * TICK_MS;
                self.nodes[i].paused_until = self.now + election_ms * 2 + self.rng.below(300);
            }
        }
        if s.compaction && self.rng.one_in(150) {
            let i = self.rng.below(n as u64) as usize;
            let id = self.nodes[i].id;
            let applied = self.nodes[i]
                .replica
                .as_ref()
                .map_or(0, |replica| replica.applied_lsn());
            // A node that applied nothing yet (a spare) has nothing to checkpoint: LSN 0 is
            // refused.
            if applied > 0 {
                if !self.nodes[i].crash_armed
                    && s.crashes
                    && s.crashes_inside_calls
                    && self.rng.one_in(4)
                {
                    self.arm_crash_inside_a_checkpoint(i);
                }
                let state = encode_state(&self.nodes[i].model.0.lock().records);
                let replica = self.nodes[i].replica.as_mut().expect("it applied records");
                let compacted = replica
                    .checkpoint(applied, &state)
                    .map_err(|e| format!("node {id}: checkpoint: {e}"))
                    .and_then(|()| {
                        self.stats.checkpoints += 1;
                        replica
                            .compact()
                            .map_err(|e| format!("node {id}: compact: {e}"))
                    });
                match compacted {
                    Ok(report) => self.stats.segments_compacted += report.segments_removed as u64,
                    Err(e) => self.checkpoint_failed(i, e)?,
                }
            }
        }
        if s.membership && self.rng.one_in(200) {
            self.change_membership();
        }
        Ok(())
    }

    /// Adds the spare node as a learner, promotes it once it caught up, then removes voter 1.
    fn change_membership(&mut self) {
        let Some(i) = self.leader_index() else { return };
        let spare = self.nodes.last().expect("nodes").id;
        let change = match self.membership_step {
            0 => MembershipChange::AddLearner(spare),
            1 => MembershipChange::AddVoter(spare),
            2 => MembershipChange::Remove(1),
            _ => return,
        };
        let replica = self.nodes[i].replica.as_mut().expect("leader is live");
        match replica.change_membership(change) {
            Ok(_) => {
                self.stats.membership_changes += 1;
                self.membership_step += 1;
                if self.membership_step == 1 {
                    let spare_index = self.nodes.len() - 1;
                    if !self.nodes[spare_index].started {
                        self.start(spare_index).expect("a new replica opens");
                    }
                }
            }
            // The learner's entry was lost with the leader that proposed it: only a learner
            // is promoted, so it is added again.
            Err(rwal_replication::Error::InvalidArgument { reason, .. })
                if self.membership_step == 1 && reason.contains("not a learner") =>
            {
                self.membership_step = 0;
            }
            Err(_) => {}
        }
    }

    fn step(&mut self, faults: bool) -> Result<(), String> {
        self.now += 1;
        for node in &mut self.nodes {
            node.crash_left_at_step = node.disk.panic_after_left();
        }
        let stepped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step_unguarded(faults)));
        match stepped {
            Ok(outcome) => outcome,
            // The rest of the step is skipped (its messages are lost, its checks run at the
            // next step).
            Err(panic) => {
                self.crashed_inside_a_call(panic);
                Ok(())
            }
        }
    }

    fn step_unguarded(&mut self, faults: bool) -> Result<(), String> {
        self.deliver(faults);
        for i in 0..self.nodes.len() {
            let now = self.now;
            let node = &mut self.nodes[i];
            if node.paused_until > now || now < node.next_tick {
                continue;
            }
            let jitter = self.rng.below(3);
            node.next_tick = now + node.tick_every - 1 + jitter;
            if let Some(replica) = node.replica.as_mut() {
                replica.tick();
                let out = replica.take_messages();
                self.send(out);
            }
        }
        if faults {
            self.faults()?;
            if self.rng.one_in(2) {
                self.propose();
            }
        } else {
            // A node whose disk failed while the cluster heals comes back too.
            self.restart_due()?;
            if self.now < self.heal_proposals_until && self.rng.one_in(8) {
                self.propose();
            }
        }
        self.process(faults && self.scenario.crashes)?;
        self.acknowledge();
        self.check_step()
    }

    /// Runs the scenario: faults for `fault_ms`, then healed until every member has applied
    /// everything the leader committed; then the final checks.
    pub fn run(&mut self) -> Result<Stats, String> {
        while self.now < self.scenario.fault_ms {
            self.step(true)?;
        }
        // Heal: links restored, every node up and running, no more loss, no more disk failures
        // (one armed that has not fired is disarmed; one that fired is met by the next call).
        self.blocked.clear();
        for node in &mut self.nodes {
            node.disk.clear_faults();
            node.disk_fault_armed = node.log_poisoned();
            node.crash_armed = false;
        }
        self.scenario.loss_per_mille = 0;
        self.scenario.duplicate_per_mille = 0;
        for i in 0..self.nodes.len() {
            self.nodes[i].paused_until = 0;
            if self.nodes[i].started && self.nodes[i].replica.is_none() {
                self.start(i)?;
            }
        }
        self.heal_proposals_until = self.now + 500;
        self.converge()?;
        self.check_final()?;
        // Then every node crashes at once and comes back from what its disk had synced: every
        // acknowledged proposal was durable on a quorum, so it must survive (the checks above
        // read the live engines and logs, synced or not, and proposals acknowledged while
        // healing never met a crash).
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_some() {
                self.crash(i);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].started {
                self.start(i)?;
            }
        }
        self.stats.final_crashes += 1;
        self.converge()?;
        self.check_final()?;
        for node in &self.nodes {
            if let Some(replica) = node.replica.as_ref() {
                self.stats.snapshots_installed += replica.snapshots_installed();
            }
        }
        self.stats.final_commit = self.leader_index().map_or(0, |i| {
            self.nodes[i].replica.as_ref().expect("live").commit_lsn()
        });
        Ok(self.stats.clone())
    }

    /// Steps without faults until every member has applied everything the leader committed
    /// and nothing is pending (for 300 ms), or fails after 20 s.
    fn converge(&mut self) -> Result<(), String> {
        let deadline = self.now + 20_000;
        let mut settled_since = None;
        while self.now < deadline {
            self.step(false)?;
            if self.converged() {
                let since = *settled_since.get_or_insert(self.now);
                if self.now - since > 300 && self.pending.is_empty() {
                    break;
                }
            } else {
                settled_since = None;
            }
        }
        if !self.converged() {
            let mut notes = String::new();
            for node in &mut self.nodes {
                if let Some(r) = node.replica.as_mut() {
                    for line in r.take_log().iter().rev().take(5) {
                        notes.push_str(&format!("\n  node {}: {line}", node.id));
                    }
                }
            }
            return Err(format!(
                "the cluster did not converge after healing: {}{notes}",
                self.describe()
            ));
        }
        Ok(())
    }

    fn members(&self) -> Vec<NodeId> {
        let Some(i) = self.leader_index() else {
            return Vec::new();
        };
        let conf = self.nodes[i].replica.as_ref().expect("live").membership();
        conf.voters
            .iter()
            .chain(conf.learners.iter())
            .copied()
            .collect()
    }

    fn converged(&self) -> bool {
        let Some(i) = self.leader_index() else {
            return false;
        };
        let commit = self.nodes[i].replica.as_ref().expect("live").commit_lsn();
        self.members().iter().all(|id| {
            let node = &self.nodes[self.index_of(*id).expect("member exists")];
            node.replica
                .as_ref()
                .is_some_and(|r| r.applied_lsn() >= commit && r.commit_lsn() >= commit)
        })
    }

    fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| match &n.replica {
                Some(r) => format!("{r:?}"),
                None => format!("node {} down", n.id),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn check_final(&self) -> Result<(), String> {
        let members = self.members();
        let live: Vec<&SimNode> = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id) && n.replica.is_some())
            .collect();
        // The oracle: the engine state of the member that applied the most.
        let oracle_node = live
            .iter()
            .max_by_key(|n| n.model.0.lock().applied)
            .ok_or("no live member")?;
        let oracle = oracle_node.model.0.lock().records.clone();
        // 1. Every acknowledged proposal is in every live member's state, same epoch and bytes.
        for p in &self.acknowledged {
            for node in &live {
                let model = node.model.0.lock();
                match model.records.get(&p.lsn) {
                    Some(&(epoch, crc)) if epoch == p.epoch && crc == p.crc => {}
                    found => {
                        return Err(format!(
                        "acknowledged proposal at LSN {} (epoch {}, {} bytes) is {:?} on node {}",
                        p.lsn,
                        p.epoch,
                        p.payload.len(),
                        found,
                        node.id
                    ))
                    }
                }
                drop(model);
                // And the bytes themselves, where the log still holds them.
                let wal = node.replica.as_ref().expect("live").wal();
                if p.lsn >= wal.first_lsn() {
                    let bytes = wal
                        .read(p.lsn)
                        .map_err(|e| format!("node {} reading {}: {e}", node.id, p.lsn))?;
                    if bytes != p.payload {
                        return Err(format!("node {} holds other bytes at {}", node.id, p.lsn));
                    }
                }
            }
        }
        // 2. Engine states agree: each is the oracle's up to what it applied.
        for node in &live {
            let model = node.model.0.lock();
            let expected: BTreeMap<_, _> = oracle
                .range(..=model.applied)
                .map(|(k, v)| (*k, *v))
                .collect();
            if model.records != expected {
                return Err(format!(
                    "node {}'s state differs from node {}'s up to {}",
                    node.id, oracle_node.id, model.applied
                ));
            }
        }
        // 3. A snapshot installed anywhere carried the state as of its LSN, and the epoch
        // of the entry committed there.
        for node in &self.nodes {
            let model = node.model.0.lock();
            for (lsn, epoch, records) in node.earlier_restores.iter().chain(&model.restores) {
                let expected: BTreeMap<_, _> =
                    oracle.range(..=*lsn).map(|(k, v)| (*k, *v)).collect();
                if *records != expected {
                    return Err(format!(
                        "node {} restored a snapshot at {lsn} that is not the state as of it",
                        node.id
                    ));
                }
                // Every committed entry is seen at the step it commits, before a checkpoint
                // can cover it: one missing here is a snapshot of an uncommitted LSN. Except
                // the founding checkpoint's LSN 1, in term 1, which no log holds.
                let committed_epoch = match *lsn {
                    1 => Some(1),
                    _ => self.committed.get(lsn).map(|&(epoch, _, _)| epoch),
                };
                match committed_epoch {
                    Some(committed_epoch) if committed_epoch == *epoch => {}
                    found => {
                        return Err(format!(
                            "node {} restored a snapshot at {lsn} in epoch {epoch}; the entry \
                             committed there: {found:?}",
                            node.id
                        ))
                    }
                }
            }
        }
        // 4. Committed logs, system records included, are prefixes of one another.
        for a in 0..live.len() {
            for b in a + 1..live.len() {
                compare_logs(live[a], live[b])?;
            }
        }
        Ok(())
    }
}

/// Reads the entries `node`'s log newly shows as committed and checks each against what any
/// node showed at that LSN before (or records it): committed entries never change. Run at
/// every step, before compaction removes what the end-of-run comparison would not see.
fn check_committed(
    node: &mut SimNode,
    committed: &mut BTreeMap<Lsn, (u64, RecordKind, u32)>,
) -> Result<(), String> {
    let replica = node.replica.as_ref().expect("live");
    let wal = replica.wal();
    let commit = replica.commit_lsn();
    let from = (node.log_checked_to + 1).max(wal.first_lsn());
    if from > commit {
        return Ok(());
    }
    // One thread, no background thread: nothing compacts between the look at the first LSN
    // and this, so any error is an anomaly (until 2026-12-06 every one was skipped, at every
    // step).
    let mut reader = wal.reader(from).map_err(|e| {
        format!(
            "node {}: a reader of its committed log from {from}: {e}",
            node.id
        )
    })?;
    while reader.next_lsn() <= commit {
        let Some(record) = reader
            .next()
            .map_err(|e| format!("node {}: {e}", node.id))?
        else {
            return Err(format!(
                "node {}'s log ends at {} below its commit LSN {commit}",
                node.id,
                reader.next_lsn() - 1
            ));
        };
        let entry = (record.epoch, record.kind, crc32c::crc32c(record.data));
        let lsn = record.lsn;
        match committed.get(&lsn) {
            Some(seen) if *seen != entry => {
                return Err(format!(
                    "committed LSN {lsn} changed: node {} holds {entry:?}, {seen:?} before",
                    node.id
                ))
            }
            Some(_) => {}
            None => {
                committed.insert(lsn, entry);
            }
        }
        node.log_checked_to = lsn;
    }
    Ok(())
}

/// Arms one failure on `disk`, drawn from `rng`: a sync failing (after `passing` that
/// succeed), perhaps forgetting what it could not write; a write failing with `EIO` or
/// `ENOSPC`; or a directory sync failing. Whether it is a sync's.
fn arm_one_failure(disk: &SimDisk, rng: &mut Rng, passing: u64) -> bool {
    let kind = rng.below(5);
    match kind {
        0 => disk.fail_next_sync_forgetting_writes(libc::EIO),
        1 => disk.fail_sync_after(passing, libc::EIO),
        2 => disk.fail_next_write(libc::EIO),
        3 => disk.fail_next_write(libc::ENOSPC),
        _ => disk.fail_next_dir_sync(libc::EIO),
    }
    !matches!(kind, 2 | 3)
}

/// Whether a replica's error names one of the errnos the simulation arms on a disk (`EIO`,
/// `ENOSPC`, which the log reports in words of its own).
fn names_an_armed_errno(error: &str) -> bool {
    ["(os error 5)", "(os error 28)", "no space left on device"]
        .iter()
        .any(|name| error.contains(name))
}

/// Notes the record at `node`'s durable LSN with its checksum (`SimNode::durable_seen`), while
/// its log can still read it back.
fn note_durable_record(node: &mut SimNode) {
    let Some(wal) = node.replica.as_ref().map(|replica| replica.wal()) else {
        return;
    };
    let durable_lsn = wal.durable_lsn();
    if durable_lsn < wal.first_lsn() || wal.check_usable().is_err() {
        return;
    }
    let Ok(epoch) = wal.epoch_at(durable_lsn) else {
        return;
    };
    // Read again once the record there is another: a truncation lowers the durable LSN, and
    // new records bring it back to the same LSN in a later term.
    if node
        .durable_seen
        .is_some_and(|(lsn, e, _)| (lsn, e) == (durable_lsn, epoch))
    {
        return;
    }
    if let Ok(data) = wal.read(durable_lsn) {
        node.durable_seen = Some((durable_lsn, epoch, crc32c::crc32c(&data)));
    }
}

/// `seen` if the log still holds that record: the same epoch at its LSN (raft never puts two
/// entries of one term at one index), which a poisoned log still tells for durable records.
/// A record seen before a truncation that happened since is not.
fn still_in_the_log(
    seen: Option<(Lsn, u64, u32)>,
    replica: &Replica<Model>,
) -> Option<(Lsn, u64, u32)> {
    seen.filter(|&(lsn, epoch, _)| {
        lsn <= replica.wal().durable_lsn() && replica.wal().epoch_at(lsn).ok() == Some(epoch)
    })
}

/// What must survive a crash of `replica` now.
fn durable_now(replica: &Replica<Model>) -> DurableAtCrash {
    let wal = replica.wal();
    let durable_lsn = wal.durable_lsn();
    let record = (durable_lsn >= wal.first_lsn())
        .then(|| {
            let epoch = wal.epoch_at(durable_lsn).ok()?;
            let crc = wal.read(durable_lsn).ok().map(|data| crc32c::crc32c(&data));
            Some((durable_lsn, epoch, crc))
        })
        .flatten();
    let (hard, _) = wal.replication_state();
    DurableAtCrash {
        record,
        durable_lsn,
        poisoned: wal.check_usable().is_err(),
        term: hard.term,
        vote: hard.vote,
        interrupted_at_commit: None,
        earlier: None,
    }
}

/// Whether `replica`, reopened after a crash, holds what was durable before it: the record at
/// the durable LSN as it was (or a checkpoint past it), its term, and its vote in that term.
fn check_survived(
    id: NodeId,
    replica: &Replica<Model>,
    before: &DurableAtCrash,
) -> Result<(), String> {
    let wal = replica.wal();
    let mut durable_lsn = before.durable_lsn;
    let mut record = before.record;
    let cut = wal
        .recovery_report()
        .events
        .iter()
        .find_map(|event| match event {
            RecoveryEvent::TruncationFinished { after_lsn } => Some(*after_lsn),
            _ => None,
        });
    if let (Some(commit), Some(cut)) = (before.interrupted_at_commit, cut) {
        if cut < commit {
            return Err(format!(
                "node {id} reopened after a disk error and finished a truncation after LSN \
                 {cut}, below its commit LSN {commit}"
            ));
        }
        if cut < durable_lsn {
            durable_lsn = cut;
            record = record.filter(|(lsn, ..)| *lsn <= cut);
        }
    }
    if wal.first_lsn() <= durable_lsn {
        if wal.last_lsn() < durable_lsn {
            return Err(format!(
                "node {id} reopened with its log ending at {}, below the LSN {durable_lsn} that \
                 was durable before its crash",
                wal.last_lsn(),
            ));
        }
        let earlier = before
            .earlier
            .filter(|(lsn, ..)| *lsn <= durable_lsn && *lsn >= wal.first_lsn())
            .map(|(lsn, epoch, crc)| (lsn, epoch, Some(crc)));
        for (lsn, epoch, crc) in [record, earlier].into_iter().flatten() {
            let now = wal
                .read(lsn)
                .and_then(|data| Ok((wal.epoch_at(lsn)?, crc32c::crc32c(&data))))
                .map_err(|e| format!("node {id} reopened: durable LSN {lsn}: {e}"))?;
            if now.0 != epoch || crc.is_some_and(|crc| crc != now.1) {
                return Err(format!(
                    "node {id} reopened with LSN {lsn}, durable before its crash, changed: \
                     {now:?}, {:?} before",
                    (epoch, crc)
                ));
            }
        }
    }
    let (hard, _) = wal.replication_state();
    let (term, vote) = (before.term, before.vote);
    // After a disk error, a vote in the same term may come where there was none (above).
    let vote_may_come = before.interrupted_at_commit.is_some() && vote == 0;
    if hard.term < term || (hard.term == term && hard.vote != vote && !vote_may_come) {
        return Err(format!(
            "node {id} reopened at term {} with vote {}, after term {term} with vote {vote} was \
             stored",
            hard.term, hard.vote
        ));
    }
    Ok(())
}

fn compare_logs(a: &SimNode, b: &SimNode) -> Result<(), String> {
    let (ra, rb) = (a.replica.as_ref().unwrap(), b.replica.as_ref().unwrap());
    let from = ra.wal().first_lsn().max(rb.wal().first_lsn());
    let to = ra.commit_lsn().min(rb.commit_lsn());
    if from > to {
        return Ok(());
    }
    let mut x = ra.wal().reader(from).map_err(|e| e.to_string())?;
    let mut y = rb.wal().reader(from).map_err(|e| e.to_string())?;
    while x.next_lsn() <= to {
        let p = x
            .next()
            .map_err(|e| e.to_string())?
            .map(|r| (r.lsn, r.epoch, r.kind, r.data.to_vec()));
        let q = y
            .next()
            .map_err(|e| e.to_string())?
            .map(|r| (r.lsn, r.epoch, r.kind, r.data.to_vec()));
        if p.is_none() && q.is_none() {
            // Both logs end before the commit LSN they report: a broken log, not a hang.
            return Err(format!(
                "the logs of nodes {} and {} end at LSN {} before their commit LSN {to}",
                a.id,
                b.id,
                x.next_lsn() - 1
            ));
        }
        if p != q {
            return Err(format!(
                "committed logs of nodes {} and {} differ at LSN {}: {:?} / {:?}",
                a.id,
                b.id,
                x.next_lsn(),
                p.map(|r| (r.0, r.1, r.2)),
                q.map(|r| (r.0, r.1, r.2))
            ));
        }
    }
    Ok(())
}
