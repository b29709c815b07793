//! Real crashes during checkpoints and compaction: the child appends and commits from several
//! threads while another thread checkpoints the durable LSN (the snapshot holds that LSN) and
//! compacts, all the time; SIGKILL at a random moment. After every kill the log opens with a
//! durable checkpoint `k` whose snapshot says `k`, and every acknowledged record after `k` that
//! is still retained is there byte for byte.
//!
//! `RWAL_CRASH_CHECKPOINT_ROUNDS=N` runs N rounds (default 30).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rwal_tests::{rounds, seed_of, TempDir};
use rwal_wal::rng::Rng;
use rwal_wal::{Options, Wal};

#[test]
fn sigkill_while_checkpointing_and_compacting_loses_nothing_after_the_checkpoint() {
    let temp = TempDir::new("crash-checkpoint");
    let dir = temp.join("log");
    let rounds = rounds("RWAL_CRASH_CHECKPOINT_ROUNDS", 30);
    let mut rng = Rng::new(0xC4EC);
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut compacted_rounds = 0;
    let mut records_checked = 0u64;
    for round in 0..rounds {
        let backend = ["mmap", "staged"][(round % 2) as usize];
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
            .args([dir.to_str().unwrap(), backend, "3", "checkpoint"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let deadline = Instant::now() + Duration::from_millis(20 + rng.below(150));
        while Instant::now() < deadline {
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: the child died by itself"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        // Not a child that died by itself between the last look and the kill.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "round {round}: the child ended otherwise: {status}"
        );
        for line in reader.join().unwrap() {
            let mut parts = line.split(' ');
            if let (Some(Ok(lsn)), Some(Ok(seed))) =
                (parts.next().map(str::parse), parts.next().map(str::parse))
            {
                acked.insert(lsn, seed);
            }
        }
        let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // The checkpoint and the snapshot it names, taken together.
        let latest = wal.open_latest_checkpoint().unwrap();
        let checkpoint = latest.as_ref().map_or(0, |(c, _)| c.lsn);
        // The child checkpoints with a snapshot every time: a checkpoint without one lost it.
        let snapshot = latest.and_then(|(_, snapshot)| snapshot);
        assert_eq!(
            snapshot.is_some(),
            checkpoint > 0,
            "round {round}: a snapshot exactly when there is a checkpoint (at {checkpoint})"
        );
        if let Some(mut snapshot) = snapshot {
            let mut bytes = Vec::new();
            snapshot.read_to_end(&mut bytes).unwrap();
            assert_eq!(
                bytes,
                checkpoint.to_le_bytes(),
                "round {round}: the snapshot is the checkpoint's"
            );
        }
        assert!(
            wal.first_lsn() <= checkpoint + 1,
            "round {round}: records after the checkpoint were compacted"
        );
        if wal.first_lsn() > 1 {
            compacted_rounds += 1;
        }
        let highest = acked.keys().next_back().copied().unwrap_or(0);
        assert!(
            wal.last_lsn() >= highest,
            "round {round}: acknowledged LSN {highest} lost"
        );
        for (&lsn, &seed) in acked.range(wal.first_lsn()..) {
            let data = wal
                .read(lsn)
                .unwrap_or_else(|e| panic!("round {round}: LSN {lsn}: {e}"));
            assert_eq!(seed_of(&data), Some(seed), "round {round}: LSN {lsn}");
            records_checked += 1;
        }
    }
    assert!(
        compacted_rounds > 0,
        "compaction happened during the rounds"
    );
    assert!(records_checked > 0, "acknowledged records were read back");
}
