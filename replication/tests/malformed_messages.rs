//! A peer's message that no member sends must not reach raft-rs: a proposal (raft-rs appends
//! it without the checks `propose` makes, and stops the node on an empty one) or a read request
//! without its one context entry (raft-rs indexes it and panics). Found by review on
//! 2026-12-07: one such message from a member stopped the leader.

use raft::eraftpb::{Entry, Message, MessageType};
use rwal_replication::{Envelope, Replica, Role};
use rwal_wal::SimDisk;

mod common;
mod trio;

use common::Engine;
use trio::{open_member, round, run_until};

fn from_node_2(kind: MessageType, term: u64, entries: Vec<Entry>) -> Envelope {
    let mut message = Message::default();
    message.set_msg_type(kind);
    message.from = 2;
    message.to = 1;
    message.term = term;
    message.entries = entries.into();
    Envelope::Raft(message)
}

fn entry(data: &[u8]) -> Entry {
    Entry {
        data: data.to_vec().into(),
        ..Default::default()
    }
}

#[test]
fn a_peers_proposal_or_malformed_read_request_is_dropped_not_stepped() {
    let disks = [SimDisk::new(), SimDisk::new(), SimDisk::new()];
    let mut nodes: Vec<Replica<Engine>> = (1..=3)
        .map(|id| open_member(id, &disks[id as usize - 1]).expect("a member opens"))
        .collect();
    for _ in 0..100 {
        if nodes[0].role() == Role::Leader {
            break;
        }
        round(&mut nodes, &[1], |_, _| true);
    }
    assert_eq!(
        nodes[0].role(),
        Role::Leader,
        "node 1 ticks alone and is elected"
    );
    // A commit in the leader's term: raft-rs serves read requests only after one.
    let (lsn, _) = nodes[0]
        .propose(b"in the leader's term")
        .expect("a proposal");
    assert!(run_until(&mut nodes, 50, |n| n
        .iter()
        .all(|r| r.commit_lsn() >= lsn)));
    let last = nodes[0].wal().last_lsn();
    let term = nodes[0].term();

    for (what, envelope) in [
        (
            "proposal",
            from_node_2(MessageType::MsgPropose, term, vec![]),
        ),
        (
            "proposal",
            from_node_2(MessageType::MsgPropose, term, vec![entry(b"unchecked")]),
        ),
        (
            "read request",
            from_node_2(MessageType::MsgReadIndex, term, vec![]),
        ),
        (
            "read request",
            from_node_2(
                MessageType::MsgReadIndex,
                term,
                vec![entry(b"a"), entry(b"b")],
            ),
        ),
    ] {
        nodes[0].step(envelope);
        assert!(run_until(&mut nodes, 20, |n| !n[0].has_ready()));
        assert_eq!(nodes[0].role(), Role::Leader, "after a {what}");
        assert_eq!(nodes[0].wal().last_lsn(), last, "after a {what}");
        let log = nodes[0].take_log();
        assert!(
            log.iter()
                .any(|line| line.contains(what) && line.contains("from node 2 dropped")),
            "the {what} is noted: {log:?}"
        );
    }
    // The leader still serves: a proposal of its own commits on every member.
    let (lsn, _) = nodes[0].propose(b"after").expect("a proposal");
    assert!(run_until(&mut nodes, 50, |n| n
        .iter()
        .all(|r| r.commit_lsn() >= lsn)));
}
