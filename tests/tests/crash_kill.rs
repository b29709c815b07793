//! Real crashes: a child process appends and commits from several threads and prints each
//! acknowledged LSN; the parent kills it with SIGKILL at a random moment, reopens the log, and
//! checks that every acknowledged record is there byte for byte and that every record present
//! is one that was appended. The same directory goes through every round, so recovery runs on
//! a log that keeps growing across segments, rotating through the `mmap`, `pwrite`, `staged`
//! and `io_uring` backends.
//!
//! `RWAL_CRASH_ROUNDS=N` runs N rounds (default 100).
//!
//! SIGKILL keeps the page cache, so this cannot catch a missing sync; `lost_sync.rs` can.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rwal_tests::{rounds, seed_of, TempDir};
use rwal_wal::rng::Rng;
use rwal_wal::{Backend, Options, Wal};

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    let temp = TempDir::new("crash");
    let dir = temp.join("log");
    let rounds = rounds("RWAL_CRASH_ROUNDS", 100);
    let mut rng = Rng::new(0xC0FFEE);
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut total_acks = 0;
    for round in 0..rounds {
        let backend = ["mmap", "pwrite", "staged", "io_uring"][(round % 4) as usize];
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
            .arg(&dir)
            .arg(backend)
            .arg("4")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        // Let it run long enough to acknowledge something, then kill it at a random moment.
        let deadline = Instant::now() + Duration::from_millis(10 + rng.below(150));
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                panic!("round {round}: child exited by itself ({status}): {err}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        // Not a child that died by itself between the last look and the kill.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "round {round}: the child ended otherwise: {status}"
        );
        let lines = reader.join().unwrap();
        for line in &lines {
            let mut parts = line.split(' ');
            let (Some(lsn), Some(seed)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(lsn), Ok(seed)) = (lsn.parse::<u64>(), seed.parse::<u64>()) else {
                continue;
            };
            acked.insert(lsn, seed);
            total_acks += 1;
        }
        let reopen_with = [
            Backend::Pwrite,
            Backend::Staged,
            Backend::IoUring,
            Backend::Mmap,
        ][(round % 4) as usize]
            .clone();
        check(&dir, &acked, round, reopen_with);
    }
    eprintln!("{rounds} rounds, {total_acks} acknowledged records checked across the kills");
    assert!(
        total_acks > rounds,
        "the children acknowledged records before being killed"
    );
}

/// Reopens (with the other backend, so both read what either wrote) and checks the invariant.
fn check(dir: &std::path::Path, acked: &BTreeMap<u64, u64>, round: u64, backend: Backend) {
    let wal = Wal::open(dir, Options::new().backend(backend).segment_bytes(1 << 20))
        .unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let last = wal.last_lsn();
    if let Some((&highest, _)) = acked.iter().next_back() {
        assert!(
            last >= highest,
            "round {round}: acknowledged LSN {highest} lost; log ends at {last}"
        );
    }
    let mut reader = wal.reader(1).unwrap();
    let mut count = 0;
    while let Some(record) = reader.next().unwrap() {
        count += 1;
        let seed = seed_of(record.data).unwrap_or_else(|| {
            panic!(
                "round {round}: LSN {} holds bytes never appended",
                record.lsn
            )
        });
        if let Some(&expected) = acked.get(&record.lsn) {
            assert_eq!(
                seed, expected,
                "round {round}: LSN {} holds another record",
                record.lsn
            );
        }
    }
    assert_eq!(count, last, "round {round}");
}
