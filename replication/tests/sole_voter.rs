//! A follower left as the only voter while rounds of its log are still unsynced (the background
//! persistence mode, docs/replication.md section 3.3) campaigns and wins inside one tick, and
//! raft-rs then asserts that its whole log is persisted. The replica must sync those rounds
//! before the tick that may start the campaign (`persist_before_campaign`). Two replicas on
//! simulated disks, stepped by hand: node 1 leads and removes itself, node 2 has entries after
//! the removal appended but not synced when the removal commits.

use rwal_replication::{Bootstrap, Config, Envelope, MembershipChange, NodeId, Replica, Role};
use rwal_wal::{Backend, Options, SimDisk};

mod common;

use common::Engine;

fn open(id: NodeId) -> Replica<Engine> {
    let mut config = Config::new(id);
    config.election_ticks = 10;
    config.election_ticks_max = 11;
    config.heartbeat_ticks = 2;
    let options = Options::new()
        .backend(Backend::Simulated(SimDisk::new()))
        .background_threads(false)
        .segment_bytes(1 << 20);
    Replica::open(
        format!("/sole-voter/{id}"),
        options,
        config,
        Bootstrap::Voters(vec![1, 2]),
        Engine::default(),
    )
    .expect("a new replica opens")
}

/// One full round of `replica`: what it sends (a background round completes in `handle_ready`).
fn round(replica: &mut Replica<Engine>) -> Vec<Envelope> {
    let mut out = Vec::new();
    while replica.handle_ready().expect("handle_ready") {
        out.extend(replica.take_messages());
        replica.finish_ready().expect("finish_ready");
        out.extend(replica.take_messages());
    }
    out.extend(replica.take_messages());
    out
}

/// Steps every envelope addressed to `replica`'s id.
fn deliver(replica: &mut Replica<Engine>, envelopes: Vec<Envelope>) {
    for envelope in envelopes {
        assert_eq!(envelope.to(), replica.id(), "{envelope:?}");
        replica.step(envelope);
    }
}

/// Rounds and deliveries between the two until nobody sends anything.
fn settle(one: &mut Replica<Engine>, two: &mut Replica<Engine>) {
    for _ in 0..100 {
        let to_two = round(one);
        let to_one = round(two);
        if to_two.is_empty() && to_one.is_empty() {
            return;
        }
        deliver(two, to_two);
        deliver(one, to_one);
    }
    panic!("the two replicas did not settle in 100 rounds");
}

#[test]
fn a_follower_left_as_the_only_voter_syncs_before_it_campaigns() {
    let mut one = open(1);
    let mut two = open(2);
    for _ in 0..40 {
        one.tick();
        settle(&mut one, &mut two);
        if one.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(one.role(), Role::Leader, "node 1 was not elected");
    two.persist_in_background(true);

    // The removal reaches node 2, which syncs it and acknowledges it.
    let removal = one
        .change_membership(MembershipChange::Remove(1))
        .expect("the leader takes the change");
    deliver(&mut two, round(&mut one));
    assert!(
        round(&mut two).is_empty(),
        "nothing is acknowledged before it is synced"
    );
    assert_eq!(two.unpersisted_lsn(), Some(removal));
    two.persist_now().expect("sync");
    let ack = round(&mut two);
    assert!(!ack.is_empty(), "the synced removal is acknowledged");

    // Entries after the removal reach node 2 before the removal commits; they stay unsynced.
    let (last, _) = one
        .propose(b"after the removal")
        .expect("the leader takes a proposal");
    deliver(&mut two, round(&mut one));
    assert!(round(&mut two).is_empty());
    assert_eq!(two.unpersisted_lsn(), Some(last));

    // The removal commits on node 1, and node 2 learns it with the commit index and applies
    // it: node 2 is now the only voter, with `last` appended but not durable.
    deliver(&mut one, ack);
    let commit = round(&mut one);
    assert!(
        one.commit_lsn() >= removal,
        "the removal committed on node 1"
    );
    deliver(&mut two, commit);
    let _ = round(&mut two);
    assert_eq!(
        two.membership().voters,
        vec![2],
        "node 2 applied the removal"
    );
    assert!(
        two.wal().durable_lsn() < last,
        "the later entry is not durable yet"
    );

    // Node 2 hears nothing more from node 1; its election timeout starts a campaign that it
    // wins inside the tick. Without the sync before it, raft-rs panics here.
    for _ in 0..40 {
        two.tick();
        let _ = round(&mut two);
        if two.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(
        two.role(),
        Role::Leader,
        "node 2 took over as the only voter"
    );
    assert!(
        two.wal().durable_lsn() >= last,
        "the entries appended before the campaign are durable"
    );
    // And it goes on: its own proposals commit with no one else.
    let (next, _) = two
        .propose(b"alone")
        .expect("the new leader takes a proposal");
    let _ = round(&mut two);
    two.persist_now().expect("sync");
    let _ = round(&mut two);
    assert!(two.commit_lsn() >= next, "the sole voter commits alone");
}
