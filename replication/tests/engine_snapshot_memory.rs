//! A leader whose engine hands raft its state as a stream writes the checkpoint a new member
//! needs, and sends it, without holding the state in memory (`StateMachine::snapshot`,
//! `EngineSnapshot`). Heap allocations are counted (this test binary's allocator), so the bound
//! is exact, not a reading of the process's resident memory.
//!
//! One test in this binary: the allocator's counts are the whole process's.

use std::io::Read;

use rwal_replication::{
    Bootstrap, Config, EngineResult, EngineSnapshot, MembershipChange, Replica, StateMachine,
};
use rwal_tests::{heap, TempDir};
use rwal_wal::{Backend, Lsn, Options};

mod pair;

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

const STATE_BYTES: u64 = 96 << 20;

/// The byte at `offset` of the engine's state: a pattern, so that no copy of it is needed to
/// check what was restored.
fn state_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// The engine's state generated as it is read.
struct Pattern {
    at: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((STATE_BYTES - self.at) as usize);
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            *byte = state_byte(self.at + i as u64);
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// An engine whose state is the pattern, handed over as a stream or as one buffer; it notes
/// what it was restored from (LSN, length, checksum).
struct Engine {
    streamed: bool,
    restored: Option<(Lsn, usize, u32)>,
}

impl StateMachine for Engine {
    fn apply(&mut self, _lsn: Lsn, _epoch: u64, _data: &[u8]) -> EngineResult {
        Ok(())
    }

    fn restore(&mut self, lsn: Lsn, _epoch: u64, snapshot: &[u8]) -> EngineResult {
        self.restored = Some((lsn, snapshot.len(), crc32c::crc32c(snapshot)));
        Ok(())
    }

    fn snapshot(&mut self) -> EngineResult<EngineSnapshot> {
        let source = Pattern { at: 0 };
        if self.streamed {
            return Ok(EngineSnapshot::from_reader(STATE_BYTES, source));
        }
        let mut state = Vec::new();
        source.take(STATE_BYTES).read_to_end(&mut state)?;
        Ok(state.into())
    }
}

fn options() -> Options {
    Options::new()
        .backend(Backend::Pwrite)
        .background_threads(false)
        .segment_bytes(1 << 20)
}

/// A leader alone, whose log is compacted past a checkpoint without node 2, adds node 2:
/// raft asks the leader's engine for a fresh snapshot, which the leader writes as a checkpoint
/// and streams to node 2. Returns how far the heap's peak grew from the addition to node 2's
/// restore.
fn add_a_member(temp: &TempDir, streamed: bool) -> usize {
    let engine = |streamed| Engine {
        streamed,
        restored: None,
    };
    let mut leader = pair::lone_leader(temp.join("1"), options(), engine(streamed));
    for i in 0..64u8 {
        leader.propose(&[i; 64 << 10]).unwrap();
        leader.process().unwrap();
    }
    let before = b"a state before node 2";
    leader
        .checkpoint_from(leader.applied_lsn(), before.len() as u64, &mut &before[..])
        .unwrap();
    leader.compact().unwrap();
    assert!(
        leader.wal().first_lsn() > 2,
        "the log before the checkpoint is compacted"
    );

    let mut follower = Replica::open(
        temp.join("2"),
        options(),
        Config::new(2),
        Bootstrap::Join,
        engine(streamed),
    )
    .unwrap();
    let mark = heap::mark();
    leader
        .change_membership(MembershipChange::AddLearner(2))
        .unwrap();
    pair::step_until(&mut leader, &mut follower, |follower| {
        follower.snapshots_installed() > 0
    });
    assert_eq!(
        follower.snapshots_installed(),
        1,
        "leader: {:?}; follower: {:?}",
        leader.take_log(),
        follower.take_log()
    );
    let checkpoint = leader
        .wal()
        .latest_checkpoint()
        .expect("the leader's checkpoint");
    let expected_crc = {
        let mut crc = 0;
        let mut pattern = Pattern { at: 0 };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = pattern.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
        }
        crc
    };
    assert_eq!(
        follower.machine().restored,
        Some((checkpoint.lsn, STATE_BYTES as usize, expected_crc)),
        "node 2 was restored from the engine's state as of the leader's checkpoint"
    );
    let (growth, _) = heap::peak_growth_since(mark);
    drop((leader, follower));
    growth
}

#[test]
fn a_leader_writes_and_sends_a_streamed_engine_state_without_holding_it_in_memory() {
    let temp = TempDir::new("engine-snapshot-memory");
    let streamed = add_a_member(&TempDir::new("engine-snapshot-memory-streamed"), true);
    eprintln!("heap growth with the state streamed: {streamed} bytes");
    let buffered = add_a_member(&temp, false);
    eprintln!("heap growth with the state in one buffer: {buffered} bytes");
    // The measurement sees the state when it is in memory...
    assert!(
        buffered as u64 >= STATE_BYTES,
        "the heap grew by only {buffered} bytes with a {STATE_BYTES}-byte state in a buffer"
    );
    // ... and a streamed one is read 1 MiB at a time, sent at most four chunks of 1 MiB a
    // tick, and received into a file.
    assert!(
        streamed < 16 << 20,
        "heap grew by {streamed} bytes while a {STATE_BYTES}-byte state was streamed"
    );
}
