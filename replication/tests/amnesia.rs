//! A replica that knows no membership (an empty directory opened to join, which is also what
//! a member restarted after losing its disk looks like) must not vote: raft-rs grants a vote to
//! any candidate whose log is at least as long as the voter's, and an empty log is never longer.
//! With three voters {1, 2, 3}, node 3 back empty, node 1 down and node 2 behind, node 3's vote
//! would elect node 2 without the entries nodes 1 and 3 had acknowledged (found by review on
//! 2026-12-03).

use raft::eraftpb::{Message, MessageType};
use rwal_replication::{Bootstrap, Config, Envelope, Replica};
use rwal_wal::{Backend, Options, SimDisk};

mod common;

use common::Engine;

fn vote_request(kind: MessageType, term: u64) -> Envelope {
    let mut message = Message::default();
    message.set_msg_type(kind);
    message.from = 2;
    message.to = 3;
    message.term = term;
    message.index = 100;
    message.log_term = 4;
    Envelope::Raft(message)
}

#[test]
fn a_replica_without_membership_grants_no_vote() {
    let disk = SimDisk::new();
    let options = Options::new()
        .backend(Backend::Simulated(disk))
        .background_threads(false)
        .segment_bytes(1 << 20);
    let mut replica = Replica::open(
        "/amnesia/3",
        options,
        Config::new(3),
        Bootstrap::Join,
        Engine::default(),
    )
    .expect("an empty replica opens to join");
    for (kind, term) in [
        (MessageType::MsgRequestPreVote, 5),
        (MessageType::MsgRequestVote, 5),
    ] {
        replica.step(vote_request(kind, term));
        let mut sent = replica.take_messages();
        while replica.handle_ready().expect("handle_ready") {
            sent.extend(replica.take_messages());
            replica.finish_ready().expect("finish_ready");
            sent.extend(replica.take_messages());
        }
        sent.extend(replica.take_messages());
        let granted: Vec<&Envelope> = sent
            .iter()
            .filter(|e| {
                matches!(e, Envelope::Raft(m) if matches!(
                    m.get_msg_type(),
                    MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse
                ) && !m.reject)
            })
            .collect();
        assert!(granted.is_empty(), "{kind:?}: granted {granted:?}");
    }
    assert!(
        replica
            .take_log()
            .iter()
            .any(|line| line.contains("vote request from node 2")),
        "the refusal is noted"
    );
}
