//! `rwal bench --replicated N`: an N-node cluster in this process, its nodes talking over
//! loopback TCP (the authenticated transport of `rwal node`), each with its own log in the
//! temporary directory. Measures quorum commit latency and throughput at several client counts
//! (`propose` + `wait_committed` of 128-byte records on the leader), next to single-node
//! durable commit (1 thread) and group commit (at the largest client count) measured in the
//! same run with the same backend, and the machine's floor under both ratios
//! (`crate::quorum_floor`): bare commits of `pwrite` + `fdatasync` copies, one and a quorum
//! of them over loopback TCP.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rwal_replication::net::{PeerConfig, PeerNetwork};
use rwal_replication::{Bootstrap, EngineResult, Node, NodeId, NodeOptions, Role, StateMachine};
use rwal_wal::{Options, Wal};

use crate::bench::{timed, Outcome};

/// The engine of a benchmark node: applies nothing.
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

struct Member {
    node: Node,
    _network: PeerNetwork,
}

fn start_cluster(base: &Path, nodes: usize, options: &Options) -> Result<Vec<Member>, String> {
    let listeners: Vec<std::net::TcpListener> = (0..nodes)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("loopback: {e}"))?;
    let addrs: HashMap<NodeId, std::net::SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((i as NodeId + 1, l.local_addr()?)))
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("loopback: {e}"))?;
    drop(listeners);
    let voters: Vec<NodeId> = (1..=nodes as NodeId).collect();
    let mut members = Vec::new();
    for &id in &voters {
        let config = PeerConfig {
            id,
            cluster_id: 0xbe7c,
            secret: b"rwal bench --replicated, loopback only".to_vec(),
            listen: addrs[&id],
            peers: addrs
                .iter()
                .filter(|(p, _)| **p != id)
                .map(|(p, a)| (*p, *a))
                .collect(),
        };
        let network =
            PeerNetwork::start(config, Arc::new(|_: &str| {})).map_err(|e| e.to_string())?;
        let mut node_options = NodeOptions::new(
            id,
            base.join(format!("replicated-node{id}")),
            Bootstrap::Voters(voters.clone()),
        );
        node_options.wal = options.clone();
        node_options.tick_interval = Duration::from_millis(10);
        let node =
            Node::open(node_options, Nothing, network.transport()).map_err(|e| e.to_string())?;
        network.attach(node.inbox());
        members.push(Member {
            node,
            _network: network,
        });
    }
    Ok(members)
}

/// The index of the node every node takes for the leader, once there is one (30 s at most).
fn leader(nodes: &[&Node]) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leaders: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.status().role == Role::Leader)
            .map(|(i, _)| i)
            .collect();
        if let [i] = leaders[..] {
            let id = nodes[i].id();
            if nodes.iter().all(|node| node.leader() == Some(id)) {
                return Ok(i);
            }
        }
        if Instant::now() > deadline {
            return Err("the benchmark cluster elected no leader in 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where the clients send their records: the node that leads, as last found, and how many
/// times a client found that the leadership had moved. The cluster shares one disk and two
/// vCPUs with its clients, and a heartbeat or a sync held up past the election timeout can
/// move the leadership in the middle of a run: a client that is told "not the leader" waits for
/// the new one and sends its record again (nothing was proposed), and that wait counts in the
/// latency of its commit.
struct Leadership<'a> {
    nodes: Vec<&'a Node>,
    leader: AtomicUsize,
    moved: AtomicU64,
}

impl<'a> Leadership<'a> {
    fn find(nodes: Vec<&'a Node>) -> Result<Leadership<'a>, String> {
        let leader = leader(&nodes)?;
        Ok(Leadership {
            nodes,
            leader: AtomicUsize::new(leader),
            moved: AtomicU64::new(0),
        })
    }

    /// Proposes `record` at the leader and waits for its commit, following the leadership.
    fn commit(&self, record: &[u8]) -> Result<(), String> {
        loop {
            let at = self.leader.load(Ordering::Acquire);
            match self.nodes[at].propose_and_wait(record, Duration::from_secs(30)) {
                Ok(_) => return Ok(()),
                // The leadership moved before the record was proposed, or after, and the new
                // leader did not keep it: proposed again at the new leader.
                Err(
                    rwal_replication::Error::NotLeader { .. }
                    | rwal_replication::Error::Superseded { .. },
                ) => {
                    self.moved.fetch_add(1, Ordering::Relaxed);
                    let now = leader(&self.nodes)?;
                    self.leader.store(now, Ordering::Release);
                }
                Err(e) => return Err(format!("replicated commit: {e}")),
            }
        }
    }

    /// How many times a client found the leadership moved since the last call.
    fn take_moves(&self) -> u64 {
        self.moved.swap(0, Ordering::Relaxed)
    }
}

/// Quorum commits of 128-byte records from `clients` threads.
fn replicated(
    leadership: &Leadership<'_>,
    clients: usize,
    seconds: Duration,
) -> Result<Histogram<u64>, String> {
    timed(clients, seconds, &|| leadership.commit(&[0x42u8; 128]))
}

/// Single-node durable commits of 128-byte records from `threads` threads, and the seconds
/// they took (opening, warming up and closing the log not counted).
fn single(
    base: &Path,
    options: &Options,
    threads: usize,
    seconds: Duration,
) -> Result<(Histogram<u64>, f64), String> {
    let dir = base.join(format!("single-{threads}"));
    let wal = Wal::open(&dir, options.clone()).map_err(|e| e.to_string())?;
    // The next segment prepared before timing, as `rwal bench` does (`Run::fresh`).
    wal.maintain().map_err(|e| e.to_string())?;
    for _ in 0..50 {
        wal.append_durable(&[0u8; 128]).map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let merged = timed(threads, seconds, &|| {
        wal.append_durable(&[0x42u8; 128])
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let ran = started.elapsed().as_secs_f64();
    wal.close().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((merged, ran))
}

fn outcome(
    workload: &'static str,
    backend: &'static str,
    threads: usize,
    h: Histogram<u64>,
    seconds: f64,
) -> Outcome {
    Outcome {
        workload,
        backend,
        threads,
        size_bytes: 128,
        ops: h.len(),
        seconds,
        bytes: h.len() * 128,
        latency: Some(h),
        extra: Vec::new(),
    }
}

/// Runs the replicated workloads; `step` reports progress.
pub fn measure(
    base: &Path,
    backend: &'static str,
    options: &Options,
    nodes: usize,
    clients: &[usize],
    seconds: Duration,
    step: &dyn Fn(String),
) -> Result<Vec<Outcome>, String> {
    let mut results = Vec::new();
    let most = clients.iter().copied().max().unwrap_or(1);
    step(format!("{backend}: single-node durable commit"));
    let (h, ran) = single(base, options, 1, seconds)?;
    results.push(outcome("durable-commit", backend, 1, h, ran));
    step(format!("{backend}: single-node group commit x{most}"));
    let (h, ran) = single(base, options, most, seconds)?;
    results.push(outcome("group-commit", backend, most, h, ran));
    step(format!(
        "floor: bare commits of one copy and of {nodes}, x1 and x{most}"
    ));
    let floor_dir = base.join("floor");
    let floor = crate::quorum_floor::measure(&floor_dir, nodes, seconds)?;
    let group = crate::quorum_floor::measure_group(&floor_dir, nodes, most, seconds)?;
    // Rates over the time each form spent committing, setting up and stopping not counted.
    for (workload, threads, h, seconds) in [
        ("floor-alone", 1, floor.alone, floor.alone_seconds),
        ("floor-quorum", 1, floor.quorum, floor.quorum_seconds),
        ("floor-group-alone", most, group.alone, group.alone_seconds),
        (
            "floor-group-quorum",
            most,
            group.quorum,
            group.quorum_seconds,
        ),
    ] {
        results.push(outcome(workload, "raw", threads, h, seconds));
    }
    step(format!("{backend}: starting a {nodes}-node cluster"));
    let members = start_cluster(base, nodes, options)?;
    let leadership = Leadership::find(members.iter().map(|m| &m.node).collect())?;
    // Warm up: the first rounds pay for connections and page faults.
    for _ in 0..50 {
        leadership
            .commit(&[0u8; 128])
            .map_err(|e| format!("warm-up: {e}"))?;
    }
    leadership.take_moves();
    // Each node's next segment prepared before timing, as for the single-node rows: the
    // warm-up's first append started that preparation in the background.
    for member in &members {
        member
            .node
            .maintain_log()
            .map_err(|e| format!("preparing node {}'s log: {e}", member.node.id()))?;
    }
    for &n in clients {
        step(format!("{backend}: {nodes}-node quorum commit x{n}"));
        let t = Instant::now();
        let h = replicated(&leadership, n, seconds)?;
        let moves = leadership.take_moves();
        if moves > 0 {
            // On stderr: `--json` keeps stdout for the results.
            errln!(
                "rwal bench: the leadership moved during the {n}-client quorum run ({moves} \
                 commits were sent again to the new leader); its latencies include the wait"
            );
        }
        let mut result = outcome(
            "replicated-commit",
            backend,
            n,
            h,
            t.elapsed().as_secs_f64(),
        );
        if moves > 0 {
            // In `--json` too: latencies that include a wait for a new leader.
            result.extra.push(("leader_moves", moves as f64));
        }
        results.push(result);
    }
    for member in members {
        member.node.close().map_err(|e| e.to_string())?;
    }
    Ok(results)
}

/// The targets as ratios of this run.
pub fn print_ratios(results: &[Outcome], nodes: usize) {
    let find = |workload: &str, threads: usize| {
        results
            .iter()
            .find(|r| r.workload == workload && r.threads == threads)
    };
    let p50 = |r: &Outcome| {
        r.latency
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(0.5) as f64)
    };
    let rate = |r: &Outcome| r.ops as f64 / r.seconds;
    out!("\nratios (this run):");
    if find("replicated-commit", 1).is_none() {
        out!("  no 1-client quorum run (--threads does not hold 1): the latency target is not measured");
    }
    if let (Some(q), Some(s)) = (find("replicated-commit", 1), find("durable-commit", 1)) {
        out!(
            "  {nodes}-node quorum commit p50, 1 client / single-node durable commit p50 = {:.2} (target <= 2)",
            p50(q) / p50(s).max(1.0)
        );
    }
    if let (Some(q), Some(s)) = (find("floor-quorum", 1), find("floor-alone", 1)) {
        out!(
            "  the machine's floor of that ratio: a bare {nodes}-copy quorum p50 / pwrite+fdatasync p50 = {:.2}",
            p50(q) / p50(s).max(1.0)
        );
        if let Some(r) = find("replicated-commit", 1) {
            out!(
                "  {nodes}-node quorum commit p50, 1 client / the bare quorum p50 = {:.2} (what raft, the log and their threads add)",
                p50(r) / p50(q).max(1.0)
            );
        }
    }
    let most = results
        .iter()
        .filter(|r| r.workload == "replicated-commit")
        .map(|r| r.threads)
        .max();
    if let Some(most) = most {
        if let (Some(q), Some(s)) = (find("replicated-commit", most), find("group-commit", most)) {
            out!(
                "  {nodes}-node throughput, {most} clients / single-node group commit x{most} = {:.2} (target >= 0.5)",
                rate(q) / rate(s).max(1e-9)
            );
        }
        if let (Some(q), Some(s)) = (
            find("floor-group-quorum", most),
            find("floor-group-alone", most),
        ) {
            out!(
                "  the machine's floor of that ratio: a bare group commit, {nodes} copies / one copy, {most} clients = {:.2}",
                rate(q) / rate(s).max(1e-9)
            );
        }
        if let (Some(r), Some(q)) = (
            find("replicated-commit", most),
            find("floor-group-quorum", most),
        ) {
            out!(
                "  {nodes}-node throughput, {most} clients / the bare quorum group commit = {:.2} (what raft, the log and their threads leave)",
                rate(r) / rate(q).max(1e-9)
            );
        }
    }
    // The bare single copy is a `pwrite`+`fdatasync` loop, as the single-node bench's floor.
    if let Some(note) =
        find("floor-alone", 1).and_then(|s| crate::bench::no_disk_under(p50(s) / 1e3))
    {
        out!("  {note}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leadership moved in the middle of a run (here by a transfer; in a run, by a
    /// heartbeat or a sync held up past the election timeout): the clients follow it, and the
    /// run ends with every commit made, where it used to fail with "not the leader".
    #[test]
    fn the_clients_follow_the_leadership_when_it_moves_mid_run() {
        let base = std::env::temp_dir().join(format!(
            "rwal-bench-replicated-moves-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let options = Options::new().segment_bytes(1 << 20);
        let members = start_cluster(&base, 3, &options).unwrap();
        let leadership = Leadership::find(members.iter().map(|m| &m.node).collect()).unwrap();
        let committed = || {
            members
                .iter()
                .map(|m| m.node.status().commit_lsn)
                .max()
                .unwrap()
        };
        let before = committed();
        let h = std::thread::scope(|s| {
            let run = s.spawn(|| replicated(&leadership, 4, Duration::from_secs(3)));
            // The move comes once the run commits (not after a guessed pause: a run that had
            // not started, or had ended, would meet no move).
            let deadline = Instant::now() + Duration::from_secs(10);
            while committed() < before + 50 {
                assert!(Instant::now() < deadline, "the run commits nothing");
                std::thread::sleep(Duration::from_millis(5));
            }
            // From whichever node leads now: on a loaded machine an election may have moved
            // the leadership already.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let leading = members
                    .iter()
                    .position(|m| m.node.status().role == Role::Leader);
                if let Some(from) = leading {
                    match members[from]
                        .node
                        .transfer_leadership(None, Duration::from_secs(10))
                    {
                        Ok(to) => {
                            assert_ne!(to, members[from].node.id());
                            break;
                        }
                        Err(rwal_replication::Error::NotLeader { .. }) => {}
                        Err(e) => panic!("the leadership did not move: {e:?}"),
                    }
                }
                assert!(Instant::now() < deadline, "no node leads");
                std::thread::sleep(Duration::from_millis(10));
            }
            run.join().unwrap()
        });
        let h = h.expect("the run follows the new leader");
        assert!(!h.is_empty());
        // Which node leads at the end is not asserted: on a loaded machine (ticks of 10 ms
        // here) an election may move the leadership again, back to where it was.
        assert!(leadership.take_moves() > 0, "no client met the move");
        for member in members {
            member.node.close().unwrap();
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
