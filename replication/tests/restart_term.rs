//! After a crash that lost a term raise (entries of term T durable, the control file still at
//! an older term), raft-rs starts at term T (docs/replication.md section 2.3), and the replica
//! stores that term when it opens. Until it did, every round of the background persistence
//! mode compared raft's term with the stored one, found them different and was done in full
//! (synced on the node's thread) until the next election.

use rwal_replication::{Bootstrap, Config, MembershipChange, Replica, Role};
use rwal_wal::{Backend, HardState, Options, SimDisk, Wal};

mod common;

use common::Engine;

const DIR: &str = "/restart-term/1";

fn options(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .background_threads(false)
        .segment_bytes(1 << 20)
}

fn open(disk: &SimDisk) -> Replica<Engine> {
    let mut config = Config::new(1);
    config.election_ticks = 10;
    config.election_ticks_max = 11;
    Replica::open(
        DIR,
        options(disk),
        config,
        Bootstrap::Voters(vec![1]),
        Engine::default(),
    )
    .expect("the replica opens")
}

#[test]
fn a_term_raise_lost_in_a_crash_is_stored_at_open() {
    let disk = SimDisk::new();
    let mut replica = open(&disk);
    for _ in 0..40 {
        replica.tick();
        replica.process().expect("rounds");
        if replica.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(replica.role(), Role::Leader, "the sole voter elects itself");
    let (lsn, epoch) = replica.propose(b"in the leader's term").expect("proposal");
    replica.process().expect("rounds");
    assert!(replica.commit_lsn() >= lsn);
    let term = replica.term();
    assert_eq!(epoch, term);
    drop(replica);

    // The crash: the entries of `term` are durable, the control file says an older term.
    let wal = Wal::open(DIR, options(&disk)).expect("the log opens");
    let (stored, _) = wal.replication_state();
    assert_eq!(stored.term, term);
    let lost = HardState {
        term: term - 1,
        vote: 0,
        commit: stored.commit,
    };
    wal.store_replication_state(lost, None).expect("store");
    drop(wal);

    let replica = open(&disk);
    assert_eq!(
        replica.term(),
        term,
        "raft-rs starts at the last entry's term"
    );
    let (stored, _) = replica.wal().replication_state();
    assert_eq!(
        stored.term, term,
        "the term raft-rs runs with is stored at open"
    );
    assert_eq!(stored.vote, 0, "with no vote in it");
}

/// After a restart, a checkpoint at an applied LSN between the latest checkpoint and the last
/// membership change is taken, with the membership of its LSN. The replica used to know only
/// the latest membership after a restart and refused it ("before the oldest membership
/// known") until the engine applied past the change: `rwal node`'s checkpoint loop, which
/// checkpoints at the engine's applied LSN, failed every 200 ms and compacted nothing (found by
/// review on 2026-12-03).
#[test]
fn a_checkpoint_before_the_last_membership_change_is_taken_after_a_restart() {
    let dir = "/restart-membership/1";
    let disk = SimDisk::new();
    let open = || {
        let mut config = Config::new(1);
        config.election_ticks = 10;
        config.election_ticks_max = 11;
        Replica::open(
            dir,
            options(&disk),
            config,
            Bootstrap::Voters(vec![1]),
            Engine::default(),
        )
        .expect("the replica opens")
    };
    let mut replica = open();
    for _ in 0..40 {
        replica.tick();
        replica.process().expect("rounds");
        if replica.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(replica.role(), Role::Leader, "the sole voter elects itself");
    for i in 0..3u8 {
        replica.propose(&[i; 10]).expect("proposal");
    }
    replica.process().expect("rounds");
    let first = replica.applied_lsn();
    replica.checkpoint(first, &[]).expect("checkpoint");
    let mut last_user = 0;
    for i in 3..6u8 {
        last_user = replica.propose(&[i; 10]).expect("proposal").0;
    }
    replica.process().expect("rounds");
    let (change, _) = replica
        .change_membership(MembershipChange::AddLearner(2))
        .expect("proposed");
    replica.process().expect("rounds");
    assert!(replica.applied_lsn() >= change && change > last_user);
    drop(replica);

    let mut replica = open();
    replica
        .checkpoint(last_user, &[])
        .expect("a checkpoint before the change");
    assert_eq!(
        replica.wal().latest_checkpoint().map(|c| c.lsn),
        Some(last_user)
    );
    assert!(replica.membership().learners.contains(&2));
    replica
        .checkpoint(change, &[])
        .expect("a checkpoint at the change");
    drop(replica);
    let replica = open();
    assert!(replica.membership().learners.contains(&2));
}
