//! A follower receives, installs and restores a snapshot much larger than its memory budget
//! for one: the chunks go to a file as they arrive, and the engine reads the state through a
//! view of that file (docs/replication.md section 4.1). Heap allocations are counted (this test
//! binary's allocator), so the bound is exact, not a reading of the process's resident memory.
//!
//! One test in this binary: the allocator's counts are the whole process's.

use rwal_replication::{Bootstrap, Config, EngineResult, MembershipChange, Replica, StateMachine};
use rwal_tests::{heap, TempDir};
use rwal_wal::{Backend, Lsn, Options};

mod pair;

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

/// What the engine was restored from: its LSN, length and checksum (the bytes are not kept).
#[derive(Default)]
struct Fingerprint(Option<(Lsn, usize, u32)>);

impl StateMachine for Fingerprint {
    fn apply(&mut self, _lsn: Lsn, _epoch: u64, _data: &[u8]) -> EngineResult {
        Ok(())
    }

    fn restore(&mut self, lsn: Lsn, _epoch: u64, snapshot: &[u8]) -> EngineResult {
        // The view starts on a page of the snapshot file's mapping: an engine may read its
        // structures in place.
        if snapshot.as_ptr() as usize % 4096 != 0 {
            return Err(format!("a view at {:p}, not on a page", snapshot.as_ptr()).into());
        }
        self.0 = Some((lsn, snapshot.len(), crc32c::crc32c(snapshot)));
        Ok(())
    }

    fn snapshot(&mut self) -> EngineResult<rwal_replication::EngineSnapshot> {
        Err("this test's checkpoints are taken by hand".into())
    }
}

const STATE_BYTES: usize = 96 << 20;

fn options() -> Options {
    Options::new()
        .backend(Backend::Pwrite)
        .background_threads(false)
        .segment_bytes(1 << 20)
}

#[test]
fn a_snapshot_is_received_installed_and_restored_without_holding_it_in_memory() {
    let temp = TempDir::new("snapshot-memory");

    // A leader alone, whose log is compacted past a 96 MiB checkpoint that names node 2.
    let mut leader = pair::lone_leader(temp.join("1"), options(), Fingerprint::default());
    leader
        .change_membership(MembershipChange::AddLearner(2))
        .unwrap();
    for i in 0..64u8 {
        leader.propose(&[i; 64 << 10]).unwrap();
        leader.process().unwrap();
    }
    drop(leader.take_messages()); // node 2 is not listening yet
    let lsn = leader.applied_lsn();
    let state: Vec<u8> = (0..STATE_BYTES).map(|i| (i % 251) as u8).collect();
    let state_crc = crc32c::crc32c(&state);
    leader.checkpoint(lsn, &state).unwrap();
    drop(state);
    leader.compact().unwrap();
    leader.compact().unwrap();
    assert!(
        leader.wal().first_lsn() > 2,
        "the log before the checkpoint is compacted: node 2 needs the snapshot"
    );

    let open_follower = || {
        Replica::open(
            temp.join("2"),
            options(),
            Config::new(2),
            Bootstrap::Join,
            Fingerprint::default(),
        )
        .unwrap()
    };
    let mut follower = open_follower();
    let mark = heap::mark();
    pair::step_until(&mut leader, &mut follower, |follower| {
        follower.snapshots_installed() > 0 && follower.applied_lsn() >= lsn
    });
    assert_eq!(
        follower.snapshots_installed(),
        1,
        "{:?}",
        follower.take_log()
    );
    let restored = follower.machine().0.expect("restored");
    assert_eq!(restored.0, lsn);
    // The engine's part of the checkpoint: the membership header comes before it.
    assert_eq!((restored.1, restored.2), (STATE_BYTES, state_crc));
    let (streamed, mark) = heap::peak_growth_since(mark);
    eprintln!("heap growth while streaming and installing: {streamed} bytes");
    // The leader sends at most `snapshot_chunks_per_tick` chunks of 1 MiB a tick, and each is
    // handed over at once; the follower keeps 64 KiB of head. Before the chunks went to a file
    // the follower held all 96 MiB (and raft's message a second reference to them).
    assert!(
        streamed < 16 << 20,
        "heap grew by {streamed} bytes while a {STATE_BYTES}-byte snapshot was streamed"
    );

    // A restart restores the engine from the same file.
    drop(follower);
    let follower = open_follower();
    assert_eq!(
        follower.machine().0,
        Some((lsn, STATE_BYTES, state_crc)),
        "restored at the reopen"
    );
    let (reopened, _) = heap::peak_growth_since(mark);
    eprintln!("heap growth while reopening: {reopened} bytes");
    assert!(
        reopened < 16 << 20,
        "heap grew by {reopened} bytes while a {STATE_BYTES}-byte snapshot was restored"
    );
    drop((leader, follower));
}
