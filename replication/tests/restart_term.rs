//! After a crash that lost a term raise (entries of term T durable, the control file still at
//! an older term), raft-rs starts at term T (docs/replication.md section 2.3), and the replica
//! stores that term when it opens. Until it did, every round of the background persistence
//! mode compared raft's term with the stored one, found them different and was done in full
//! (synced on the node's thread) until the next election.

use rwal_replication::{Bootstrap, Config, Replica, Role};
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
