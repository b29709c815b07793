//! A replica whose log was poisoned outside a round (a checkpoint's failed directory sync, which
//! the checkpoint's caller sees, but no round does) must fail with the log's error at its next
//! call, not let raft-rs read the log for a message and panic on the error (found by the
//! deterministic simulation with disk failures, 2026-12-06).

mod common;
mod pair;

use common::Engine;
use rwal_replication::{Bootstrap, Config, MembershipChange, Replica};
use rwal_wal::{Backend, Options, SimDisk};

fn on(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .background_threads(false)
        .segment_bytes(1 << 20)
}

#[test]
fn a_message_stepped_on_a_poisoned_log_fails_the_replica_with_the_logs_error() {
    let disk = SimDisk::new();
    let mut leader = pair::lone_leader("/leader".into(), on(&disk), Engine::default());
    let (added, _) = leader
        .change_membership(MembershipChange::AddLearner(2))
        .unwrap();
    let mut learner = Replica::open(
        "/learner",
        on(&SimDisk::new()),
        Config::new(2),
        Bootstrap::Join,
        Engine::default(),
    )
    .unwrap();
    pair::step_until(&mut leader, &mut learner, |l| l.applied_lsn() >= added);
    assert!(learner.applied_lsn() >= added, "the learner caught up");

    // Appends the network loses: the learner's progress waits for an answer that never comes.
    for i in 0..3 {
        leader.propose(format!("lost {i}").as_bytes()).unwrap();
        leader.process().unwrap();
        let _lost = leader.take_messages();
    }
    // A heartbeat gets through; the learner's answer waits in the network.
    let mut answers = Vec::new();
    for _ in 0..100 {
        leader.tick();
        leader.process().unwrap();
        for envelope in leader.take_messages() {
            learner.step(envelope);
        }
        learner.process().unwrap();
        answers = learner.take_messages();
        if !answers.is_empty() {
            break;
        }
    }
    assert!(!answers.is_empty(), "the learner answers a heartbeat");
    // The learner's progress waits in probe (its first lost append unanswered): the answer
    // makes raft-rs send from what the learner has. Were it replicating, raft-rs would have
    // moved past the lost appends and would read nothing for it: the test would pass on a
    // replica without the check (it panicked on c8dcd06's).
    let (_, matched) = leader
        .progress()
        .into_iter()
        .find(|(id, _)| *id == 2)
        .expect("the learner's progress");
    assert!(matched < leader.wal().last_lsn(), "the learner lags");

    // The checkpoint's caller is told; the leader is not in a round.
    disk.fail_next_dir_sync(libc::EIO);
    let applied = leader.applied_lsn();
    assert!(leader
        .checkpoint(applied, &common::encode(&Default::default()))
        .is_err());
    assert!(leader.wal().check_usable().is_err(), "the log is poisoned");

    // Stepped on the answer, raft-rs sends the learner what it lacks, read from the leader's
    // log, where it is durable (raft-rs panicked on the poisoned log's error until the replica
    // checked its log first).
    for envelope in answers {
        leader.step(envelope);
    }
    let error = leader.handle_ready().unwrap_err().to_string();
    assert!(
        error.contains("fsync directory") && error.contains("Input/output error"),
        "{error}"
    );
    assert!(
        leader.take_messages().is_empty(),
        "a failed replica sends nothing"
    );
}
