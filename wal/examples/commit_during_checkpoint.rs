//! How long do durable commits wait while the same log writes a large checkpoint? The snapshot
//! file and the log share a disk: a commit's `fdatasync` that runs while the snapshot's bytes
//! reach the disk waits behind them (`wal/src/io/writeback.rs`, `docs/design.md` section 15.1).
//!
//! ```sh
//! cargo run --release -p rwal-wal --example commit_during_checkpoint -- [DIR] [MiB] [rounds]
//! ```
//!
//! One thread commits 128-byte records one at a time; from the second second on, the main thread
//! writes `rounds` (default 3) checkpoints with a snapshot of `MiB` (default 256) each, one
//! second apart. Each checkpoint call covers writing and syncing the snapshot, the control file,
//! and removing the snapshot it replaces. Prints the commits that overlapped no checkpoint
//! (after the first second, in which the log's background thread prepares its next segment),
//! then for each checkpoint the commits that overlapped it: count, p50, p99 and slowest, in
//! microseconds, and how long the call took. The log lives in a new directory
//! `rwal-commit-during-checkpoint-<pid>` under `DIR` (default: the system's temporary
//! directory), removed at the end, also after a failure.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rwal_wal::{Options, Wal};

/// Removes the log's directory when dropped, also on a panic.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// When a commit began and when it ended.
type Commit = (Instant, Instant);

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mib: u64 = args
        .next()
        .map_or(256, |a| a.parse().expect("MiB: a number"));
    let rounds: u32 = args
        .next()
        .map_or(3, |a| a.parse().expect("rounds: a number"));
    let dir = Scratch(base.join(format!(
        "rwal-commit-during-checkpoint-{}",
        std::process::id()
    )));
    let wal = Wal::open(&dir.0, Options::new()).expect("the log opens");
    let stop = AtomicBool::new(false);
    let opened = Instant::now();
    let (commits, windows) = std::thread::scope(|s| {
        let committer = s.spawn(|| {
            let record = [0x42u8; 128];
            let mut commits: Vec<Commit> = Vec::with_capacity(1 << 20);
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                wal.append_durable(&record).expect("a commit");
                commits.push((began, Instant::now()));
            }
            commits
        });
        let mut windows = Vec::new();
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_secs(1));
            // A checkpoint covers a durable record: on a slow disk the first commit may take
            // longer than the second waited (LSN 0 is refused).
            wal.wait_durable(1, Instant::now() + Duration::from_secs(60))
                .expect("a first durable record");
            let lsn = wal.durable_lsn();
            let len = mib << 20;
            let mut source = std::io::repeat(0x5a).take(len);
            let began = Instant::now();
            wal.checkpoint_from(lsn, len, &mut source)
                .expect("the checkpoint");
            windows.push((began, Instant::now()));
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        (committer.join().expect("the committer"), windows)
    });
    drop(wal);
    let overlaps =
        |(began, ended): &Commit, (from, to): &(Instant, Instant)| began <= to && ended >= from;
    let settled = opened + Duration::from_secs(1);
    let quiet = commits
        .iter()
        .filter(|c| c.0 >= settled && !windows.iter().any(|w| overlaps(c, w)))
        .map(|(began, ended)| *ended - *began)
        .collect();
    report("no checkpoint", None, quiet);
    for (round, window) in windows.iter().enumerate() {
        let during = commits
            .iter()
            .filter(|c| overlaps(c, window))
            .map(|(began, ended)| *ended - *began)
            .collect();
        report(
            &format!("checkpoint {}", round + 1),
            Some(window.1 - window.0),
            during,
        );
    }
}

fn report(what: &str, took: Option<Duration>, mut latencies: Vec<Duration>) {
    latencies.sort();
    let took = took.map_or(String::new(), |t| {
        format!(", checkpoint call {:.3} s", t.as_secs_f64())
    });
    let Some(slowest) = latencies.last() else {
        println!("{what}: no commit{took}");
        return;
    };
    let us = |d: &Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| &latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{what}: {} commits, p50 {:.0} us, p99 {:.0} us, slowest {:.0} us{took}",
        latencies.len(),
        us(at(0.5)),
        us(at(0.99)),
        us(slowest),
    );
}
