//! How long a cluster stops committing when its leader stops, with and without handing
//! leadership over first.
//!
//! `cargo run --release -p rwal-replication --example leader_handover` runs three nodes in this
//! process over loopback TCP (the authenticated transport, 10 ms ticks: elections after 100 to
//! 200 ms without a leader) and a client committing 128-byte records one after another, following
//! `NotLeader`. It stops the leader `ROUNDS` times each way, alternating, and reopens it before the
//! next round:
//!
//! - handed over: `transfer_leadership(None)`, then close;
//! - not handed over: close at once (what a crash looks like to the others).
//!
//! For each stop it takes the longest gap between two commits the client saw from the stop's
//! start until 50 commits after it; it prints the median and the largest per way, and how long
//! `transfer_leadership` took.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rwal_replication::net::{PeerConfig, PeerNetwork};
use rwal_replication::{
    Bootstrap, EngineResult, Error, Node, NodeId, NodeOptions, Role, StateMachine,
};

const ROUNDS: usize = 10;
const NODES: u64 = 3;

/// Applies nothing.
struct Nothing;

impl StateMachine for Nothing {
    fn apply(&mut self, _lsn: u64, _epoch: u64, _data: &[u8]) -> EngineResult {
        Ok(())
    }

    fn snapshot(&mut self) -> EngineResult<rwal_replication::EngineSnapshot> {
        Ok(Vec::new().into())
    }

    fn restore(&mut self, _lsn: u64, _epoch: u64, _snapshot: &[u8]) -> EngineResult {
        Ok(())
    }
}

/// A running node and its network; `None` while stopped.
type Slot = Option<(Arc<Node>, PeerNetwork)>;

fn open(base: &Path, id: NodeId, addrs: &HashMap<NodeId, SocketAddr>) -> (Arc<Node>, PeerNetwork) {
    let config = PeerConfig {
        id,
        cluster_id: 0x4a4d,
        secret: b"leader_handover example, loopback only".to_vec(),
        listen: addrs[&id],
        peers: addrs
            .iter()
            .filter(|(peer, _)| **peer != id)
            .map(|(peer, addr)| (*peer, *addr))
            .collect(),
    };
    let network = PeerNetwork::start(config, Arc::new(|_: &str| {})).expect("network starts");
    let mut options = NodeOptions::new(
        id,
        base.join(format!("node{id}")),
        Bootstrap::Voters((1..=NODES).collect()),
    );
    options.tick_interval = Duration::from_millis(10);
    let node = Node::open(options, Nothing, network.transport()).expect("node opens");
    network.attach(node.inbox());
    (Arc::new(node), network)
}

fn main() {
    let base = std::env::temp_dir().join(format!("rwal-leader-handover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let addrs: HashMap<NodeId, SocketAddr> = (1..=NODES)
        .map(|id| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback");
            (id, listener.local_addr().expect("address"))
        })
        .collect();
    let slots: Arc<RwLock<Vec<Slot>>> = Arc::new(RwLock::new(
        (1..=NODES)
            .map(|id| Some(open(&base, id, &addrs)))
            .collect(),
    ));
    let commits = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (slots, commits, stop) = (slots.clone(), commits.clone(), stop.clone());
        std::thread::spawn(move || commit_forever(&slots, &commits, &stop))
    };

    let mut gaps: HashMap<bool, Vec<Duration>> = HashMap::new();
    let mut transfer_calls = Vec::new();
    for round in 0..2 * ROUNDS {
        let hand_over = round % 2 == 0;
        let leader = wait_for_leader(&slots);
        let start = Instant::now();
        let (node, network) = slots.write()[leader].take().expect("the leader runs");
        if hand_over {
            match node.transfer_leadership(None, Duration::from_secs(2)) {
                Ok(_) => transfer_calls.push(start.elapsed()),
                Err(e) => eprintln!("round {round}: no handover: {e}"),
            }
        }
        // The client may be in a call on it: wait until it lets go.
        let mut node = node;
        let node = loop {
            match Arc::try_unwrap(node) {
                Ok(node) => break node,
                Err(shared) => node = shared,
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let _ = node.close();
        drop(network);
        let before = commits.lock().iter().filter(|t| **t >= start).count();
        while commits.lock().iter().filter(|t| **t >= start).count() < before + 50 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen: Vec<Instant> = {
            let all = commits.lock();
            let first = all.partition_point(|t| *t < start);
            all[first.saturating_sub(1)..].to_vec()
        };
        let gap = seen
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default();
        gaps.entry(hand_over).or_default().push(gap);
        slots.write()[leader] = Some(open(&base, leader as NodeId + 1, &addrs));
    }
    stop.store(true, Ordering::Release);
    client.join().expect("the client does not panic");
    for hand_over in [true, false] {
        let mut gaps = gaps.remove(&hand_over).unwrap_or_default();
        gaps.sort_unstable();
        let way = if hand_over {
            "handed over    "
        } else {
            "not handed over"
        };
        println!(
            "{way}: longest gap between commits, median {:.1} ms, max {:.1} ms ({} stops)",
            gaps[gaps.len() / 2].as_secs_f64() * 1e3,
            gaps.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            gaps.len()
        );
    }
    transfer_calls.sort_unstable();
    if let Some(median) = transfer_calls.get(transfer_calls.len() / 2) {
        println!(
            "transfer_leadership returned after {:.1} ms (median)",
            median.as_secs_f64() * 1e3
        );
    }
    let mut slots = slots.write();
    for slot in slots.iter_mut() {
        if let Some((node, _network)) = slot.take() {
            if let Ok(node) = Arc::try_unwrap(node) {
                let _ = node.close();
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// The index of the node all running nodes agree leads, once every node is connected to every
/// other (a reopened node's peers reconnect after their backoff, up to seconds: a handover
/// right after would measure the reconnection, not itself).
fn wait_for_leader(slots: &RwLock<Vec<Slot>>) -> usize {
    loop {
        {
            let slots = slots.read();
            let running: Vec<&Arc<Node>> = slots.iter().flatten().map(|(n, _)| n).collect();
            let connected = slots
                .iter()
                .flatten()
                .all(|(_, network)| network.stats().peers_connected as u64 == NODES - 1);
            if let Some(leader) = running.iter().find(|n| n.status().role == Role::Leader) {
                let id = leader.id();
                if connected
                    && running.len() as u64 == NODES
                    && running.iter().all(|n| n.leader() == Some(id))
                {
                    return id as usize - 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Commits records one after another on whichever node leads, noting when each committed.
fn commit_forever(slots: &RwLock<Vec<Slot>>, commits: &Mutex<Vec<Instant>>, stop: &AtomicBool) {
    let mut target = 0;
    while !stop.load(Ordering::Acquire) {
        let node = slots.read()[target].as_ref().map(|(node, _)| node.clone());
        let Some(node) = node else {
            target = (target + 1) % NODES as usize;
            continue;
        };
        match node.propose_and_wait(&[7u8; 128], Duration::from_millis(100)) {
            Ok(_) => commits.lock().push(Instant::now()),
            Err(Error::NotLeader {
                leader: Some(leader),
            }) => target = leader as usize - 1,
            Err(_) => {
                target = (target + 1) % NODES as usize;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
