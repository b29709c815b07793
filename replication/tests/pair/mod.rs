//! Two replicas stepped against each other on this thread, as a network between them would.

use rwal_replication::{NodeId, Replica, SnapshotRoom, StateMachine};

/// Ticks and processes `leader` and `follower`, handing each the other's messages, until
/// `done(follower)` holds (at most 10 000 rounds: the caller asserts what it waited for).
#[allow(dead_code)] // not every test binary that has this module calls it
pub fn step_until<L: StateMachine, F: StateMachine>(
    leader: &mut Replica<L>,
    follower: &mut Replica<F>,
    done: impl Fn(&Replica<F>) -> bool,
) {
    for _ in 0..10_000 {
        if done(follower) {
            return;
        }
        round(leader, follower, &|_| SnapshotRoom::UNBOUNDED);
    }
}

/// One tick of each, the leader's sending each receiver no more snapshot chunks than `room`
/// says its transport takes, with each one's messages handed to the other.
#[allow(dead_code)] // not every test binary that has this module calls it
pub fn round<L: StateMachine, F: StateMachine>(
    leader: &mut Replica<L>,
    follower: &mut Replica<F>,
    room: &dyn Fn(NodeId) -> SnapshotRoom,
) {
    leader.tick_with_snapshot_room(room);
    leader.process().unwrap();
    for envelope in leader.take_messages() {
        follower.step(envelope);
    }
    follower.process().unwrap();
    for envelope in follower.take_messages() {
        leader.step(envelope);
    }
    follower.tick();
}

/// Opens node 1 in `dir`, founding a cluster of itself, and ticks it until it leads. Its pin
/// for a follower is released by the first compaction (a cap of 1 byte), so that a follower
/// added later must be caught up by a snapshot once the log is compacted.
pub fn lone_leader<M: StateMachine>(
    dir: std::path::PathBuf,
    options: rwal_wal::Options,
    machine: M,
) -> Replica<M> {
    let mut config = rwal_replication::Config::new(1);
    config.follower_pin_cap_bytes = Some(1);
    let mut leader = Replica::open(
        dir,
        options,
        config,
        rwal_replication::Bootstrap::Voters(vec![1]),
        machine,
    )
    .unwrap();
    while leader.role() != rwal_replication::Role::Leader {
        leader.tick();
        leader.process().unwrap();
    }
    leader
}
