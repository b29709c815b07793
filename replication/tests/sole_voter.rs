//! A follower left as the only voter while rounds of its log are still unsynced (the background
//! persistence mode, docs/replication.md section 3.3) campaigns and wins inside one tick, and
//! raft-rs then asserts that its whole log is persisted. The replica must sync those rounds
//! before the tick that may start the campaign (`persist_before_campaign`). Two replicas on
//! simulated disks, stepped by hand: node 1 leads and removes itself, node 2 has entries after
//! the removal appended but not synced when the removal commits. The last test leaves them
//! unsynced the other way: in a round whose second half has not been called yet. And a
//! follower whose sync never ends keeps a bounded record of the rounds waiting for it.

use raft::eraftpb::MessageType;
use rwal_replication::{
    Bootstrap, Config, Envelope, MembershipChange, NodeId, Replica, Role, UNPERSISTED_ROUNDS_MAX,
};
use rwal_wal::{Backend, Options, SimDisk};

mod common;

use common::Engine;

fn open(id: NodeId, disk: SimDisk) -> Replica<Engine> {
    let mut config = Config::new(id);
    config.election_ticks = 10;
    config.election_ticks_max = 11;
    config.heartbeat_ticks = 2;
    let options = Options::new()
        .backend(Backend::Simulated(disk))
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

/// Ticks node 1 until it leads the two.
fn elect_node_one(one: &mut Replica<Engine>, two: &mut Replica<Engine>) {
    for _ in 0..40 {
        one.tick();
        settle(one, two);
        if one.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(one.role(), Role::Leader, "node 1 was not elected");
}

/// Node 2 left as the only voter, with entries up to the returned LSN appended but not durable
/// (node 1 is gone from the membership; `disk` is node 2's).
fn only_voter_with_unsynced_entries(disk: &SimDisk) -> (Replica<Engine>, u64) {
    let mut one = open(1, SimDisk::new());
    let mut two = open(2, disk.clone());
    elect_node_one(&mut one, &mut two);
    two.persist_in_background(true);

    // The removal reaches node 2, which syncs it and acknowledges it.
    let (removal, _) = one
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
    (two, last)
}

#[test]
fn a_follower_left_as_the_only_voter_syncs_before_it_campaigns() {
    let (mut two, last) = only_voter_with_unsynced_entries(&SimDisk::new());

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

#[test]
fn a_sync_that_fails_before_the_campaign_fails_the_replica_instead_of_campaigning() {
    let disk = SimDisk::new();
    let (mut two, last) = only_voter_with_unsynced_entries(&disk);
    disk.fail_next_sync(libc_eio());
    // The campaign would make it leader with `last` not durable, which raft-rs asserts
    // against (a panic): the failed sync stops the replica first, with the disk's error.
    let mut failure = None;
    for _ in 0..40 {
        two.tick();
        // Full rounds, as `round` does, until one fails.
        let outcome = (|| {
            while two.handle_ready()? {
                two.finish_ready()?;
            }
            Ok::<(), rwal_replication::Error>(())
        })();
        if let Err(e) = outcome {
            failure = Some(e);
            break;
        }
    }
    let failure = failure.expect("the failed sync fails the replica");
    assert!(failure.to_string().contains("sync"), "{failure}");
    assert_ne!(two.role(), Role::Leader, "it campaigned on an unsynced log");
    assert!(two.wal().durable_lsn() < last);
    let error = two
        .handle_ready()
        .expect_err("a failed replica refuses its rounds");
    assert!(
        error.to_string().contains("must be opened again") && error.to_string().contains("sync"),
        "{error}"
    );
}

/// EIO, without a dependency on libc for one number.
fn libc_eio() -> i32 {
    5
}

/// The same takeover with a round out: a caller may tick between `handle_ready` and
/// `finish_ready`, and the tick that starts the sole voter's campaign must not find the round's
/// entries unpersisted (raft-rs asserts that a new leader's whole log is persisted). Node 2
/// persists in the foreground here. Node 1 sends the removal's commit and an entry proposed
/// after it, which node 2 gets in two messages: the first makes it the only voter, the second's
/// round appends the entry.
#[test]
fn a_tick_between_the_halves_of_a_round_does_not_campaign_on_its_unsynced_entries() {
    let mut one = open(1, SimDisk::new());
    let mut two = open(2, SimDisk::new());
    elect_node_one(&mut one, &mut two);
    let (removal, _) = one
        .change_membership(MembershipChange::Remove(1))
        .expect("the leader takes the change");
    deliver(&mut two, round(&mut one));
    let ack = round(&mut two);
    assert!(!ack.is_empty(), "the synced removal is acknowledged");
    // The acknowledgement commits the removal; before node 1 applies it (and steps down), it
    // takes one more proposal. Its round sends both in one append.
    deliver(&mut one, ack);
    let (last, _) = one
        .propose(b"after the removal")
        .expect("the leader takes a proposal");
    let append = round(&mut one);
    assert!(
        one.commit_lsn() >= removal,
        "the removal committed on node 1"
    );
    let [Envelope::Raft(message)] = append.as_slice() else {
        panic!("one append to node 2: {append:?}");
    };
    assert_eq!(message.entries.len(), 1, "{message:?}");
    assert!(message.commit >= removal, "{message:?}");
    // Its commit alone first, as raft-rs sent it before the proposal: node 2 applies the
    // removal in a round of its own.
    let mut commit = message.clone();
    commit.entries.clear();
    deliver(&mut two, vec![Envelope::Raft(commit)]);
    let _ = round(&mut two);
    assert_eq!(
        two.membership().voters,
        vec![2],
        "node 2 applied the removal"
    );

    // The first half of node 2's next round appends `last`.
    deliver(&mut two, append);
    assert!(two.handle_ready().expect("handle_ready"));
    assert_eq!(two.wal().last_lsn(), last, "the entry after it is appended");
    assert!(two.wal().durable_lsn() < last, "and not durable yet");
    let _ = two.take_messages();
    // Node 2 hears nothing more from node 1; ticks come before the round's second half.
    for _ in 0..40 {
        two.tick();
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
        "the round's entries are durable before the campaign"
    );
    // The round's second half, called as the caller meant to, has nothing left to do.
    two.finish_ready().expect("finish_ready");
    let (next, _) = two
        .propose(b"alone")
        .expect("the new leader takes a proposal");
    let _ = round(&mut two);
    two.persist_now().expect("sync");
    let _ = round(&mut two);
    assert!(two.commit_lsn() >= next, "the sole voter commits alone");
}

/// A step between the halves of a round (found by review, 2026-12-03): raft-rs takes no step
/// while a `Ready` is out; stepped anyway, it panicked on its unstable log. The replica now
/// finishes the round before it steps.
#[test]
fn a_step_between_the_halves_of_a_round_finishes_the_round_first() {
    let mut one = open(1, SimDisk::new());
    let mut two = open(2, SimDisk::new());
    elect_node_one(&mut one, &mut two);
    let (first, _) = one.propose(b"first").expect("the leader takes a proposal");
    let append = round(&mut one);
    // The first half of node 2's round appends `first`.
    deliver(&mut two, append);
    assert!(two.handle_ready().expect("handle_ready"));
    assert_eq!(two.wal().last_lsn(), first);
    let mut acks = two.take_messages();
    // Another append arrives before the second half.
    let (second, _) = one.propose(b"second").expect("the leader takes a proposal");
    deliver(&mut two, round(&mut one));
    assert!(
        two.wal().durable_lsn() >= first,
        "the step finished the round out first"
    );
    // The second half, called as the caller meant to, has nothing left to do.
    two.finish_ready().expect("finish_ready");
    acks.extend(round(&mut two));
    deliver(&mut one, acks);
    settle(&mut one, &mut two);
    assert!(one.commit_lsn() >= second, "both entries committed");
    assert_eq!(two.wal().last_lsn(), second);
}

/// A leader ticked between the halves of a round, for long enough that its check of the quorum
/// (node 2 heard nothing from, dropped) steps it down (found by review on 2026-12-04): raft-rs
/// aborted in the second half ("not leader but has new msg after advance"), with the
/// heartbeats of the ticks queued on a node that no longer led. The replica now finishes the
/// round before a leader's tick that may step it down.
#[test]
fn a_leader_ticked_between_the_halves_of_a_round_steps_down_without_aborting() {
    let mut one = open(1, SimDisk::new());
    let mut two = open(2, SimDisk::new());
    elect_node_one(&mut one, &mut two);
    let (lsn, _) = one
        .propose(b"unheard")
        .expect("the leader takes a proposal");
    assert!(one.handle_ready().expect("handle_ready"), "a round is out");
    let _ = one.take_messages(); // lost: node 2 never answers
    for _ in 0..40 {
        one.tick();
        if one.role() != Role::Leader {
            break;
        }
    }
    assert_ne!(
        one.role(),
        Role::Leader,
        "the leader without a quorum stepped down"
    );
    // The second half, called as the caller meant to, has nothing left to do.
    one.finish_ready().expect("finish_ready");
    let _ = round(&mut one);
    assert_eq!(one.wal().last_lsn(), lsn, "the proposal stays in the log");
    assert!(one.wal().durable_lsn() >= lsn, "and is durable");
}

/// A follower whose sync never ends (a hung disk: its node's persister stays in one) runs a
/// round for each heartbeat, and each waited for that sync, holding its answer: without end,
/// 50 a second at 10 ms ticks (found by review on 2026-12-05). Past `UNPERSISTED_ROUNDS_MAX`
/// the next round waits for the sync itself (here it completes; on a hung disk the node's
/// thread stops there).
#[test]
fn rounds_waiting_for_a_sync_that_never_ends_are_bounded() {
    let mut one = open(1, SimDisk::new());
    let mut two = open(2, SimDisk::new());
    elect_node_one(&mut one, &mut two);
    two.persist_in_background(true);
    let (last, _) = one.propose(b"unsynced").expect("the leader takes it");
    deliver(&mut two, round(&mut one));
    assert!(round(&mut two).is_empty(), "nothing acknowledged unsynced");
    assert_eq!(two.unpersisted_lsn(), Some(last));
    let heartbeats = loop {
        one.tick();
        let beats: Vec<Envelope> = round(&mut one)
            .into_iter()
            .filter(
                |e| matches!(e, Envelope::Raft(m) if m.get_msg_type() == MessageType::MsgHeartbeat),
            )
            .collect();
        if !beats.is_empty() {
            break beats;
        }
    };
    // The caller never syncs (`persist_now`, `note_durable`): as a persister stuck in a sync.
    let mut rounds = 0;
    while two.unpersisted_lsn().is_some() {
        assert!(
            rounds <= UNPERSISTED_ROUNDS_MAX + 10,
            "{rounds} rounds wait for one sync"
        );
        deliver(&mut two, heartbeats.clone());
        let _ = round(&mut two);
        rounds += 1;
    }
    assert!(
        rounds >= UNPERSISTED_ROUNDS_MAX - 10,
        "synced after {rounds} rounds: the bound, not something else, made the round wait"
    );
    assert!(two.wal().durable_lsn() >= last);
}
