//! Three nodes in one process on loopback TCP: the authenticated transport carries a cluster
//! through proposals from many threads, a snapshot after compaction, and a peer's restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rwal_replication::net::{PeerConfig, PeerNetwork};
use rwal_replication::{Bootstrap, MembershipChange, Node, NodeId, NodeOptions, Role, Transport};
use rwal_tests::TempDir;
use rwal_wal::{Backend, Lsn, Options};

mod common;

use common::Engine;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &[u8] = b"three nodes on loopback share this";

struct Member {
    network: PeerNetwork,
    node: Node,
    engine: Engine,
    /// What the node logged.
    notes: Arc<Mutex<Vec<String>>>,
}

struct Cluster {
    dir: TempDir,
    addrs: HashMap<NodeId, std::net::SocketAddr>,
    members: BTreeMap<NodeId, Member>,
    /// Every member's `snapshot_chunks_per_tick`.
    snapshot_chunks_per_tick: usize,
    /// Every member's `tick_interval`.
    tick: Duration,
    /// The `snapshot_timeout` of the members started from now on.
    snapshot_timeout: Option<Duration>,
}

/// Every member's tick (but a `Cluster::slow`'s), snapshot chunk and election timeout: 300 to
/// 600 ms, three times the defaults' ticks, as in node.rs. The logs are on the real disk,
/// synced on the leader's thread when it has nothing else to do, and `make test` runs suites
/// side by side on two cores: a leader's thread held up for a shorter election timeout (50 ms
/// at the defaults' 10 ticks of 5 ms) loses its followers, and these tests hold a leader
/// through hundreds of commits. At 200-400 ms, one `make test` of 2026-12-03 still saw the
/// leadership move during the slow snapshot stream.
const TICK: Duration = Duration::from_millis(10);
const SNAPSHOT_CHUNK_BYTES: usize = 16 << 10;
const ELECTION_TICKS: usize = 30;
const ELECTION_TICKS_MAX: usize = 60;

/// A `Cluster::slow`'s tick: ten times as long, and so its election timeout, 3 to 6 s, and
/// everything else counted in ticks (heartbeats every 200 ms, a paced snapshot stream).
const SLOW_TICK: Duration = Duration::from_millis(100);

impl Cluster {
    fn start_member(&mut self, id: NodeId, listen: std::net::SocketAddr) {
        self.start_member_with(id, listen, Bootstrap::Voters(vec![1, 2, 3]));
    }

    /// A new member: it knows the others' addresses (as a joiner is given them), and they know
    /// nothing of it.
    fn start_joiner(&mut self, id: NodeId) -> std::net::SocketAddr {
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        self.start_member_with(id, listen, Bootstrap::Join);
        self.addrs.insert(id, listen);
        listen
    }

    fn start_member_with(
        &mut self,
        id: NodeId,
        listen: std::net::SocketAddr,
        bootstrap: Bootstrap,
    ) {
        let peers = self
            .addrs
            .iter()
            .filter(|(p, _)| **p != id)
            .map(|(p, a)| (*p, *a))
            .collect();
        let config = PeerConfig {
            id,
            cluster_id: 11,
            secret: SECRET.to_vec(),
            listen,
            peers,
        };
        let network = PeerNetwork::start(config, Arc::new(|_: &str| {})).unwrap();
        let mut options = NodeOptions::new(id, self.dir.join(&format!("node{id}")), bootstrap);
        options.wal = Options::new()
            .backend(Backend::Staged)
            .segment_bytes(1 << 20);
        options.tick_interval = self.tick;
        options.config.follower_pin_cap_bytes = Some(256 << 10);
        options.config.snapshot_chunk_bytes = SNAPSHOT_CHUNK_BYTES;
        options.config.snapshot_chunks_per_tick = self.snapshot_chunks_per_tick;
        options.config.election_ticks = ELECTION_TICKS;
        options.config.election_ticks_max = ELECTION_TICKS_MAX;
        options.snapshot_timeout = self.snapshot_timeout;
        let notes = Arc::new(Mutex::new(Vec::new()));
        let noted = notes.clone();
        options.log = Some(Arc::new(move |_, line: &str| {
            noted.lock().push(line.to_string())
        }));
        let engine = Engine::default();
        let node = Node::open(options, engine.clone(), network.transport()).unwrap();
        network.attach(node.inbox());
        self.members.insert(
            id,
            Member {
                network,
                node,
                engine,
                notes,
            },
        );
    }

    /// Small chunks and no per-tick cap worth the name: a snapshot of more chunks than the
    /// transport queues for a peer is paced by the transport's room alone.
    fn new() -> Cluster {
        Cluster::build(1024, TICK, None)
    }

    /// A cluster ticking every `SLOW_TICK`, sending a snapshot's receiver at most
    /// `snapshot_chunks_per_tick` chunks a tick: for a test that asserts that no election
    /// happened, where only a leader silent for seconds loses its followers. Its first
    /// election takes as long.
    fn slow(snapshot_chunks_per_tick: usize) -> Cluster {
        Cluster::build(snapshot_chunks_per_tick, SLOW_TICK, None)
    }

    fn build(
        snapshot_chunks_per_tick: usize,
        tick: Duration,
        snapshot_timeout: Option<Duration>,
    ) -> Cluster {
        // Ports the OS chooses: bind each listener first, then tell everyone.
        let probes: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: HashMap<NodeId, std::net::SocketAddr> = probes
            .iter()
            .enumerate()
            .map(|(i, l)| (i as NodeId + 1, l.local_addr().unwrap()))
            .collect();
        drop(probes);
        let mut cluster = Cluster {
            dir: TempDir::new("repl-tcp"),
            addrs: addrs.clone(),
            members: BTreeMap::new(),
            snapshot_chunks_per_tick,
            tick,
            snapshot_timeout,
        };
        for id in 1..=3 {
            cluster.start_member(id, addrs[&id]);
        }
        cluster
    }

    fn leader(&self) -> NodeId {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<NodeId> = self
                .members
                .iter()
                .filter(|(_, m)| m.node.status().role == Role::Leader)
                .map(|(id, _)| *id)
                .collect();
            if let [leader] = leaders[..] {
                if self
                    .members
                    .values()
                    .all(|m| m.node.leader() == Some(leader))
                {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no single leader");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops `follower`, has the leader commit `records` records of 2000 bytes past it, then
    /// checkpoint and compact them away: the follower can only come back through a snapshot.
    /// Returns the last LSN committed (and checkpointed) and the engine state the checkpoint
    /// holds.
    fn leave_behind(&mut self, leader: NodeId, follower: NodeId, records: u32) -> (Lsn, Vec<u8>) {
        let Member { network, node, .. } = self.members.remove(&follower).unwrap();
        node.close().unwrap();
        drop(network);
        let leader_node = &self.members[&leader].node;
        // The follower holds at most what the leader had when it stopped.
        let follower_had = leader_node.status().last_lsn;
        let mut last = 0;
        for i in 0..records {
            let data = i.to_le_bytes().repeat(500);
            last = leader_node.propose_and_wait(&data, WAIT).unwrap().0;
        }
        let state = common::encode(&self.members[&leader].engine.0.lock());
        let applied = leader_node.status().applied_lsn;
        assert_eq!(applied, last);
        leader_node.checkpoint(applied, &state).unwrap();
        // What matters is that the record the follower needs next is gone, not which call
        // removed it: the leader's own maintenance may compact first, and the live follower's
        // pin follows its progress a tick late.
        let deadline = Instant::now() + WAIT;
        loop {
            let report = leader_node.compact().unwrap();
            if report.first_lsn > follower_had + 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{report:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        (last, state)
    }

    fn wait_applied(&self, id: NodeId, lsn: Lsn) {
        let (status, held) = self.members[&id]
            .node
            .wait_status(WAIT, |s| s.applied_lsn >= lsn);
        assert!(held, "node {id} did not apply {lsn}: {status:?}");
    }
}

#[test]
fn a_cluster_on_tcp_commits_compacts_and_brings_a_restarted_peer_back() {
    let mut cluster = Cluster::new();
    let leader = cluster.leader();
    let acknowledged = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let node = &cluster.members[&leader].node;
            let acknowledged = &acknowledged;
            s.spawn(move || {
                for i in 0..50u8 {
                    let data = vec![t * 50 + i; 2000];
                    let (lsn, _) = node.propose_and_wait(&data, WAIT).unwrap();
                    acknowledged.lock().push((lsn, data));
                }
            });
        }
    });
    let acknowledged = acknowledged.into_inner();
    let last = acknowledged.iter().map(|a| a.0).max().unwrap();
    for id in 1..=3 {
        cluster.wait_applied(id, last);
        let engine = cluster.members[&id].engine.0.lock();
        for (lsn, data) in &acknowledged {
            assert_eq!(engine.get(lsn), Some(data), "node {id} at {lsn}");
        }
    }
    let stats = cluster.members[&leader].network.stats();
    assert_eq!(stats.peers_connected, 2, "{stats:?}");
    assert!(
        stats.frames_received > 0 && stats.connections_refused == 0,
        "{stats:?}"
    );

    // Stop a follower, write and compact past it: it comes back through a snapshot.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let (last, state) = cluster.leave_behind(leader, follower, 400);
    let addr = cluster.addrs[&follower];
    cluster.start_member(follower, addr);
    cluster.wait_applied(follower, last);
    let restores = cluster.members[&follower].engine.1.lock().clone();
    assert!(
        restores.iter().any(|lsn| *lsn > 1),
        "the follower was seeded by a snapshot: {restores:?}"
    );
    assert_eq!(
        *cluster.members[&follower].engine.0.lock(),
        *cluster.members[&leader].engine.0.lock()
    );
    // Every chunk went through: paced by the room in the follower's queue, none dropped.
    assert!(state.len() > 64 * (16 << 10), "{} bytes", state.len());
    let stats = cluster.members[&leader].network.stats();
    assert_eq!(stats.snapshot_chunks_dropped, 0, "{stats:?}");
}

/// A snapshot paced to take several election timeouts streams on the same connection as the
/// leader's heartbeats: the follower receiving it keeps hearing its leader (it never campaigns,
/// which would make it forget the leader), and the leader keeps committing meanwhile.
///
/// Ticks are `SLOW_TICK`s: an election timeout of 3 to 6 s, so that only heartbeats held up
/// by the stream, not a thread held up by the load of the machine, make the follower
/// campaign; the stream, paced in ticks, lasts twice as long as the longest.
#[test]
fn a_slow_snapshot_stream_does_not_hold_up_the_heartbeats_beside_it() {
    const CHUNKS_PER_TICK: usize = 1;
    let mut cluster = Cluster::slow(CHUNKS_PER_TICK);
    let leader = cluster.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // 1 050 records of 2 000 bytes: 128 chunks, at one a tick twice the longest election
    // timeout (120 ticks).
    let (checkpointed, state) = cluster.leave_behind(leader, follower, 1050);
    let mut last = checkpointed;
    // The pace alone makes the stream last at least twice the longest election timeout.
    let ticks_to_stream = state.len().div_ceil(CHUNKS_PER_TICK * SNAPSHOT_CHUNK_BYTES);
    assert!(
        ticks_to_stream >= 2 * ELECTION_TICKS_MAX,
        "{} bytes stream in {ticks_to_stream} ticks",
        state.len()
    );
    let term = cluster.members[&leader].node.status().term;

    let addr = cluster.addrs[&follower];
    cluster.start_member(follower, addr);
    let (status, held) = cluster.members[&follower]
        .node
        .wait_status(WAIT, |s| s.leader == Some(leader));
    assert!(
        held,
        "the restarted follower never heard its leader: {status:?}"
    );
    let started = Instant::now();
    // Restores of the follower's own checkpoint at open are older.
    let restored = || {
        let restores = cluster.members[&follower].engine.1.lock();
        restores.iter().any(|lsn| *lsn >= checkpointed)
    };
    let paced_for = SLOW_TICK * ticks_to_stream as u32;
    let mut commits_while_streaming = 0u64;
    let mut looks = 0;
    while !restored() {
        assert!(
            started.elapsed() < paced_for + WAIT,
            "the snapshot never arrived"
        );
        let data = commits_while_streaming.to_le_bytes().repeat(100);
        last = cluster.members[&leader]
            .node
            .propose_and_wait(&data, WAIT)
            .unwrap()
            .0;
        commits_while_streaming += 1;
        // The follower is watched until the next commit, each status it publishes looked at
        // (the stream is long: commits back to back would be thousands of syncs).
        let (seen, lost) = cluster.members[&follower]
            .node
            .wait_status(Duration::from_millis(20), |s| {
                s.leader != Some(leader) || s.term != term || s.role != Role::Follower
            });
        looks += 1;
        assert!(
            !lost,
            "after {:?} of the stream the follower lost its leader {leader} of term {term}: \
             {seen:?}",
            started.elapsed()
        );
    }
    let streamed_for = started.elapsed();
    assert!(
        streamed_for >= paced_for,
        "{streamed_for:?}: the stream was not paced"
    );
    assert!(
        commits_while_streaming >= 10 && looks >= 10,
        "{commits_while_streaming} commits in {streamed_for:?}"
    );
    assert_eq!(cluster.members[&leader].node.status().term, term);
    cluster.wait_applied(follower, last);
    assert_eq!(
        *cluster.members[&follower].engine.0.lock(),
        *cluster.members[&leader].engine.0.lock()
    );
    let stats = cluster.members[&leader].network.stats();
    assert_eq!(stats.snapshot_chunks_dropped, 0, "{stats:?}");
}

/// A snapshot stream cut for longer than the leader waits for progress resumes where the
/// follower holds the bytes: the link carries the part received before the cut once, not again.
/// The link is cut in the leader's transport (the follower forgotten as a peer: its connections
/// closed both ways, mid-frame as it happens, and its dials refused), and given back.
///
/// The leader gives a stalled stream up after 1 s (ten `SLOW_TICK`s), and notes it; the
/// follower keeps a part until its stream has been silent for twice its own timeout, 5 s here:
/// the cut (until that note), the transport's redial and the new stream's first chunk fit in
/// that with room to spare on a loaded machine. Ticks are `SLOW_TICK`s, as in the test above,
/// so that the leadership stays where it is.
#[test]
fn a_snapshot_stream_cut_past_its_stall_time_resumes_where_the_follower_holds_it() {
    const CHUNKS_PER_TICK: usize = 2;
    let mut cluster = Cluster::build(CHUNKS_PER_TICK, SLOW_TICK, Some(Duration::from_secs(1)));
    let leader = cluster.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // 700 records of 2 000 bytes: about 85 chunks, four seconds and more at two a tick.
    let (checkpointed, state) = cluster.leave_behind(leader, follower, 700);
    let total = state.len() as u64;
    cluster.snapshot_timeout = Some(Duration::from_secs(5));
    cluster.start_member(follower, cluster.addrs[&follower]);
    let leader_member = &cluster.members[&leader];
    let transport = leader_member.network.transport();
    let carried = || transport.snapshot_room(follower).bytes_carried;
    // Cut once the leader's transport carried more than 60% of the snapshot.
    let deadline = Instant::now() + WAIT;
    while carried() * 5 < total * 3 {
        assert!(
            Instant::now() < deadline,
            "the stream never got far: {}",
            carried()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let carried_before_the_cut = carried();
    assert!(leader_member.network.remove_peer(follower));
    // Until the leader gives the stream up (its stall time, 1 s), then at once: the follower
    // keeps its part for 5 s after its last chunk, and the link's way back (a dial, a tick, a
    // report) must fit in what is left of them.
    let gave_up = format!("to node {follower} made no progress");
    let deadline = Instant::now() + WAIT;
    while !leader_member
        .notes
        .lock()
        .iter()
        .any(|n| n.contains(&gave_up))
    {
        assert!(
            Instant::now() < deadline,
            "the leader never gave the stream up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    leader_member
        .network
        .add_peer(follower, cluster.addrs[&follower])
        .unwrap();
    cluster.wait_applied(follower, checkpointed);
    assert!(
        cluster.members[&follower]
            .engine
            .1
            .lock()
            .iter()
            .any(|lsn| *lsn >= checkpointed),
        "node {follower} was not seeded by the snapshot"
    );
    assert_eq!(
        *cluster.members[&follower].engine.0.lock(),
        *cluster.members[&leader].engine.0.lock()
    );
    let notes = cluster.members[&leader].notes.lock().clone();
    let resumed = notes
        .iter()
        .find(|n| n.contains(&format!("to node {follower}: resumed at ")))
        .unwrap_or_else(|| panic!("no resume: {notes:#?}"));
    let offset: u64 = resumed
        .split("resumed at ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{resumed}"));
    assert!(
        offset * 2 >= carried_before_the_cut,
        "resumed at {offset}, with {carried_before_the_cut} bytes carried before the cut"
    );
    let after_the_cut = transport.snapshot_room(follower).bytes_carried;
    eprintln!(
        "{total} bytes: {carried_before_the_cut} carried before the cut, resumed at {offset}, \
         {after_the_cut} carried after"
    );
    // What the new link carried: the rest, from where the follower held it, with its first
    // chunk (sent before the report) again. Without the resume, the whole snapshot.
    assert!(
        after_the_cut < total - offset + 4 * SNAPSHOT_CHUNK_BYTES as u64,
        "{after_the_cut} bytes carried after the cut, {total} in all, resumed at {offset}"
    );
}

/// A member removed from the cluster is forgotten by every node that applies the removal: no
/// node dials it or lets it in any more, and the two left go on committing.
#[test]
fn a_removed_member_is_forgotten_by_the_nodes_that_stay() {
    let cluster = Cluster::new();
    let leader = cluster.leader();
    let removed = (1..=3).find(|id| *id != leader).unwrap();
    let stays: Vec<NodeId> = (1..=3).filter(|id| *id != removed).collect();
    let leader_node = &cluster.members[&leader].node;
    leader_node.propose_and_wait(b"before", WAIT).unwrap();
    let refused_before: u64 = stays
        .iter()
        .map(|id| cluster.members[id].network.stats().connections_refused)
        .sum();
    let (change, _) = leader_node
        .change_membership(rwal_replication::MembershipChange::Remove(removed))
        .unwrap();
    for &id in &stays {
        cluster.wait_applied(id, change);
        let member = &cluster.members[&id];
        assert!(!member.node.status().membership.voters.contains(&removed));
        // Forgotten at the end of the round that applied the change.
        let deadline = Instant::now() + WAIT;
        while member.network.peer_addr(removed).is_some() {
            assert!(Instant::now() < deadline, "node {id} still knows {removed}");
            std::thread::sleep(Duration::from_millis(5));
        }
        let other = stays.iter().find(|o| **o != id).unwrap();
        assert_eq!(member.network.peer_addr(*other), Some(cluster.addrs[other]));
    }
    // The removed node's connections were closed and it is not let back in: it ends up
    // connected to nobody, and the nodes that stay refuse its dials.
    let deadline = Instant::now() + WAIT;
    loop {
        let connected = cluster.members[&removed].network.stats().peers_connected;
        let refused: u64 = stays
            .iter()
            .map(|id| cluster.members[id].network.stats().connections_refused)
            .sum();
        if connected == 0 && refused > refused_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed node is connected to {connected} nodes; {refused} refusals"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (lsn, _) = leader_node.propose_and_wait(b"after", WAIT).unwrap();
    for &id in &stays {
        cluster.wait_applied(id, lsn);
    }
    assert!(cluster.members[&removed].node.status().applied_lsn < lsn);
}

/// A member added with its address is reached by every member, not only the leader that added
/// it: the change carries the address, and a follower elected later sends the new member the
/// log. Before, only the node the change was made on knew the address, and the new member
/// stalled at the first change of leader.
#[test]
fn a_member_added_with_its_address_is_reached_by_a_later_leader() {
    let mut cluster = Cluster::new();
    let leader = cluster.leader();
    let joiner = 4;
    let joiner_addr = cluster.start_joiner(joiner);
    let address = joiner_addr.to_string();
    let leader_node = &cluster.members[&leader].node;
    // What a change carries is checked: no address with a removal, none too long.
    let refused = leader_node
        .change_membership_at(MembershipChange::Remove(joiner), Some(&address))
        .unwrap_err();
    assert!(
        refused.to_string().contains("a removal takes no address"),
        "{refused}"
    );
    let long = "1".repeat(rwal_replication::MEMBER_ADDRESS_BYTES_MAX + 1);
    let refused = leader_node
        .change_membership_at(MembershipChange::AddLearner(joiner), Some(&long))
        .unwrap_err();
    assert!(refused.to_string().contains("257 bytes"), "{refused}");
    // An address the TCP transport would not dial (a host name) would be committed, and
    // kept by every checkpoint since: refused before it is proposed.
    let refused = leader_node
        .change_membership_at(
            MembershipChange::AddLearner(joiner),
            Some("node4.example:7000"),
        )
        .unwrap_err();
    assert!(
        matches!(
            refused,
            rwal_replication::Error::InvalidArgument {
                name: "address",
                ..
            }
        ) && refused
            .to_string()
            .contains("not an address this transport dials"),
        "{refused}"
    );
    // No member knows the joiner; the leader is not told its address either, but by the
    // change.
    for member in cluster.members.values().filter(|m| m.node.id() != joiner) {
        assert_eq!(member.network.peer_addr(joiner), None);
    }
    let (change, epoch) = leader_node
        .change_membership_at(MembershipChange::AddLearner(joiner), Some(&address))
        .unwrap();
    leader_node.wait_committed(change, epoch, WAIT).unwrap();
    for id in 1..=3 {
        cluster.wait_applied(id, change);
        let network = &cluster.members[&id].network;
        let deadline = Instant::now() + WAIT;
        while network.peer_addr(joiner) != Some(joiner_addr) {
            assert!(
                Instant::now() < deadline,
                "node {id} never learned the address"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    cluster.wait_applied(joiner, change);
    // Leadership moves to a follower, which was never given the joiner's address.
    let successor = (1..=3).find(|id| *id != leader).unwrap();
    let now = leader_node
        .transfer_leadership(Some(successor), WAIT)
        .unwrap();
    assert_eq!(now, successor);
    assert_eq!(cluster.leader(), successor);
    let (lsn, _) = cluster.members[&successor]
        .node
        .propose_and_wait(b"after the change of leader", WAIT)
        .unwrap();
    cluster.wait_applied(joiner, lsn);
    // Promoted by a change that carries no address (`change_membership`): what was learned
    // stands, at every member and at a reopen.
    let successor_node = &cluster.members[&successor].node;
    // Refused until the leader has heard that the learner caught up (its acknowledgement of
    // the last record may still be on its way): asked again, as a script does.
    let deadline = Instant::now() + WAIT;
    let (promotion, epoch) = loop {
        match successor_node.change_membership(MembershipChange::AddVoter(joiner)) {
            Ok(proposed) => break proposed,
            Err(e) if e.to_string().contains("not yet to the commit LSN") => {
                assert!(Instant::now() < deadline, "never promoted: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the promotion was refused: {e}"),
        }
    };
    successor_node
        .wait_committed(promotion, epoch, WAIT)
        .unwrap();
    // A member restarted without the joiner's address learns it again from its log: the
    // changes are after its latest checkpoint, and the open applies them again. (The
    // promotion without an address used to erase what the addition taught.)
    let third = (1..=3)
        .find(|id| *id != leader && *id != successor)
        .unwrap();
    cluster.wait_applied(third, promotion);
    let Member { network, node, .. } = cluster.members.remove(&third).unwrap();
    node.close().unwrap();
    drop(network);
    cluster.addrs.remove(&joiner);
    cluster.start_member(third, cluster.addrs[&third]);
    let network = &cluster.members[&third].network;
    let deadline = Instant::now() + WAIT;
    while network.peer_addr(joiner) != Some(joiner_addr) {
        assert!(
            Instant::now() < deadline,
            "node {third} did not learn it again"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The members' addresses ride the checkpoints: a member added after the change that carried
/// another's address was compacted away is seeded by a snapshot, and learns that address from
/// it; a member whose own latest checkpoint covers the change learns it again at a restart.
/// Before, only the changes carried addresses, and both nodes knew none of the first member.
#[test]
fn addresses_ride_the_checkpoints_to_seeded_and_restarted_members() {
    let mut cluster = Cluster::new();
    let leader = cluster.leader();
    let joiner = 4;
    let joiner_addr = cluster.start_joiner(joiner);
    let leader_node = &cluster.members[&leader].node;
    let (change, epoch) = leader_node
        .change_membership_at(
            MembershipChange::AddLearner(joiner),
            Some(&joiner_addr.to_string()),
        )
        .unwrap();
    leader_node.wait_committed(change, epoch, WAIT).unwrap();
    for id in [1, 2, 3, joiner] {
        cluster.wait_applied(id, change);
    }
    // From here on, nobody started is given the joiner's address.
    cluster.addrs.remove(&joiner);
    // A follower is left behind while the leader checkpoints past the change and compacts it
    // away.
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    let (checkpointed, _) = cluster.leave_behind(leader, behind, 600);
    let learns = |cluster: &Cluster, id: NodeId, what: &str| {
        let network = &cluster.members[&id].network;
        let deadline = Instant::now() + WAIT;
        while network.peer_addr(joiner) != Some(joiner_addr) {
            assert!(
                Instant::now() < deadline,
                "node {id} never learned the joiner's address {what}: {:?}",
                network.peer_addr(joiner)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // A new member, seeded by the leader's snapshot: the change that carried the address is
    // not in any log it can be sent.
    let newcomer = 5;
    let newcomer_addr = cluster.start_joiner(newcomer);
    let leader_node = &cluster.members[&leader].node;
    let (added, epoch) = leader_node
        .change_membership_at(
            MembershipChange::AddLearner(newcomer),
            Some(&newcomer_addr.to_string()),
        )
        .unwrap();
    leader_node.wait_committed(added, epoch, WAIT).unwrap();
    cluster.wait_applied(newcomer, added);
    let first = cluster.members[&newcomer].node.status().first_lsn;
    assert!(
        first > change,
        "the newcomer holds the change at {change} (its log starts at {first}): not seeded by \
         a snapshot"
    );
    learns(&cluster, newcomer, "from the snapshot it was seeded by");
    // The follower left behind comes back through a snapshot too (installed over the log that
    // held the change), then restarts: its latest checkpoint is that snapshot.
    cluster.start_member(behind, cluster.addrs[&behind]);
    cluster.wait_applied(behind, added);
    let first = cluster.members[&behind].node.status().first_lsn;
    assert!(
        first > checkpointed,
        "node {behind} was not brought back by a snapshot (its log starts at {first})"
    );
    let Member { network, node, .. } = cluster.members.remove(&behind).unwrap();
    node.close().unwrap();
    drop(network);
    cluster.start_member(behind, cluster.addrs[&behind]);
    learns(&cluster, behind, "at its restart, from its checkpoint");
}
