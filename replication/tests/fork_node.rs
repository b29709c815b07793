//! A process forked while nodes run (a pre-fork server, a Python `multiprocessing` pool) leaves
//! them to the process that opened them: the child has none of their threads, and their
//! sockets are that process's too.
//!
//! Alone in its binary: the child runs code after the fork, which is better done with no other
//! test's threads running (one may hold a lock the child would wait for forever).

use std::sync::Arc;
use std::time::Duration;

use rwal_replication::net::{PeerConfig, PeerNetwork};
use rwal_replication::{Bootstrap, Error, Node, NodeId, NodeOptions, Role};
use rwal_tests::{wait_child, TempDir};

mod common;

const WAIT: Duration = Duration::from_secs(30);

/// Whether `result` is the refusal of a call in a process forked from the node's.
fn refused_as_forked<T>(result: Result<T, Error>) -> bool {
    matches!(
        result,
        Err(Error::Wal(rwal_wal::Error::InvalidArgument { reason, .. }))
            if reason.contains("forked from")
    )
}

/// Node `id` of the voters 1 and 2, on loopback TCP, its peers added once both listen.
fn member(dir: &TempDir, id: NodeId) -> (PeerNetwork, Node) {
    let config = PeerConfig {
        id,
        cluster_id: 5,
        secret: b"two nodes and a forked child".to_vec(),
        listen: "127.0.0.1:0".parse().unwrap(),
        peers: Default::default(),
    };
    let network = PeerNetwork::start(config, Arc::new(|_: &str| {})).unwrap();
    let options = NodeOptions::new(
        id,
        dir.join(&format!("node{id}")),
        Bootstrap::Voters(vec![1, 2]),
    );
    let node = Node::open(options, common::Engine::default(), network.transport()).unwrap();
    network.attach(node.inbox());
    (network, node)
}

/// Before: the child's proposal was queued for a node thread that does not exist in the child,
/// and its wait never ended; its close joined that thread; dropping its copy of the network
/// shut down the parent's peer connections, then joined threads that do not exist either. Now
/// every call is refused at once, the drops stop nothing, and the parent's nodes go on over
/// the same connections.
#[test]
fn a_forked_child_leaves_the_nodes_to_the_process_that_opened_them() {
    let dir = TempDir::new("fork-node");
    let (net1, node1) = member(&dir, 1);
    let (net2, node2) = member(&dir, 2);
    net1.add_peer(2, net2.local_addr()).unwrap();
    net2.add_peer(1, net1.local_addr()).unwrap();
    let (status, led) = node1.wait_status(WAIT, |s| s.leader.is_some());
    assert!(led, "no leader: {status:?}");
    let (leader, follower) = if status.leader == Some(1) {
        (&node1, &node2)
    } else {
        (&node2, &node1)
    };
    let (status, leads) = leader.wait_status(WAIT, |s| s.role == Role::Leader);
    assert!(leads, "{status:?}");
    let (before, epoch) = leader.propose_and_wait(b"before", WAIT).unwrap();
    let (status, applied) = follower.wait_status(WAIT, |s| s.applied_lsn >= before);
    assert!(applied, "{status:?}");
    let mut reader = leader.reader(before + 1).unwrap();
    let accepted = || {
        (
            net1.stats().connections_accepted,
            net2.stats().connections_accepted,
        )
    };
    let accepted_before = accepted();
    // SAFETY: the child calls the nodes and networks (each call refused before it takes a
    // lock), drops them and leaves with _exit; this binary runs one test, so no other test's
    // thread holds a lock.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = if !refused_as_forked(leader.propose_and_wait(b"child", WAIT)) {
            3
        } else if !refused_as_forked(leader.propose(b"child")) {
            4
        } else if !refused_as_forked(follower.wait_committed(before, epoch, WAIT)) {
            5
        } else if !refused_as_forked(reader.next()) {
            6
        } else if !refused_as_forked(leader.compact()) {
            7
        } else if !refused_as_forked(net1.add_peer(2, net1.local_addr())) {
            8
        } else if !refused_as_forked(leader.shut_down()) {
            9
        } else {
            // The drops stop nothing, and return (a hang is caught by `wait_child`).
            drop(reader);
            drop((node1, node2));
            drop((net1, net2));
            0
        };
        // SAFETY: _exit ends the child without running the test harness's exit.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(
        wait_child(pid, WAIT),
        0,
        "a call in the child was not refused as forked (3: propose_and_wait, 4: propose, \
         5: wait_committed, 6: a committed reader's next, 7: compact, 8: add_peer, \
         9: shut_down)"
    );
    let (after, _) = leader.propose_and_wait(b"after", WAIT).unwrap();
    assert_eq!(after, before + 1, "the child proposed nothing");
    assert_eq!(
        accepted(),
        accepted_before,
        "the parent's peers connected again: the child cut their connections"
    );
    let record = reader.next().unwrap().expect("the record after");
    assert_eq!(record.data, b"after");
    drop(reader);
    node1.close().unwrap();
    node2.close().unwrap();
}
