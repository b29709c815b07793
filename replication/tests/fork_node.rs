//! A process forked while a node runs (a pre-fork server, a Python `multiprocessing` pool)
//! leaves the node to the process that opened it: the child has none of the node's threads.
//!
//! Alone in its binary: the child runs code after the fork, which is better done with no other
//! test's threads running (one may hold a lock the child would wait for forever).

use std::time::Duration;

use rwal_replication::{Bootstrap, Error, MemoryNetwork, Node, NodeOptions, Role};
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

/// Before: the child's proposal was queued for a node thread that does not exist in the child,
/// and its wait never ended; its close joined that thread. Now both are refused at once, and
/// the parent's node goes on.
#[test]
fn a_forked_child_leaves_the_node_to_the_process_that_opened_it() {
    let dir = TempDir::new("fork-node");
    let network = MemoryNetwork::new();
    let options = NodeOptions::new(1, dir.join("node1"), Bootstrap::Voters(vec![1]));
    let node =
        Node::open(options, common::Engine::default(), network.transport()).expect("node opens");
    network.register(1, node.inbox());
    let (status, led) = node.wait_status(WAIT, |s| s.role == Role::Leader);
    assert!(led, "a single voter leads: {status:?}");
    let (before, epoch) = node.propose_and_wait(b"before", WAIT).unwrap();
    // SAFETY: the child calls the node (each call refused before it takes a lock) and leaves
    // with _exit; this binary runs one test, so no other test's thread holds a lock.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = if !refused_as_forked(node.propose_and_wait(b"child", WAIT)) {
            3
        } else if !refused_as_forked(node.propose(b"child")) {
            4
        } else if !refused_as_forked(node.wait_committed(before, epoch, WAIT)) {
            5
        } else if !refused_as_forked(node.shut_down()) {
            6
        } else {
            0
        };
        // SAFETY: _exit ends the child without running the test harness's exit or the node's
        // drop.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(
        wait_child(pid, WAIT),
        0,
        "a call in the child was not refused as forked (3: propose_and_wait, 4: propose, \
         5: wait_committed, 6: shut_down)"
    );
    let (after, _) = node.propose_and_wait(b"after", WAIT).unwrap();
    assert_eq!(after, before + 1, "the child proposed nothing");
    node.close().unwrap();
}
