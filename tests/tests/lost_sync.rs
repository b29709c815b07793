//! Power cuts on the real backends. A SIGKILL keeps the page cache, so it cannot catch a missing
//! sync; here the `mmap`, `pwrite`, `staged` and `io_uring` backends run with a recorder that
//! keeps each file's image at every completed sync (and the directory's at every directory
//! sync). At a random moment
//! the test builds what a power cut could leave — the synced images plus a random subset of the
//! sectors written since — recovers from it with the real backend, and checks that every
//! acknowledged record is there, byte for byte, and nothing else that was never appended.
//!
//! Removing any call of `File::sync` or `Dir::sync` the log relies on makes this test fail
//! (tried with the segment's, see `docs/design.md`, "Test layers"). A backend's `sync` that
//! lost its system call is not caught here: the recorder records the image when `sync`
//! returns, whatever it did. The backends' unit test
//! `a_sync_leaves_no_dirty_page_of_what_was_written` (wal/src/io/fs.rs) catches that for
//! `Mmap`, `Pwrite` and `Staged`; nothing does for `IoUring` (its writes bypass the page
//! cache) or for the directory's `fsync`.

use rwal_tests::{rounds, seed_of, self_describing, TempDir};
use rwal_wal::rng::Rng;
use rwal_wal::{Backend, Options, SyncRecorder, Wal};

fn options(backend: &Backend) -> Options {
    Options::new()
        .backend(backend.clone())
        .segment_bytes(1 << 20)
        .background_threads(false)
}

#[test]
fn a_power_cut_after_any_sync_loses_no_acknowledged_record() {
    let rounds = rounds("RWAL_LOST_SYNC_ROUNDS", 60);
    let mut checked = 0u64;
    for round in 0..rounds {
        let backends = [
            Backend::Mmap,
            Backend::Pwrite,
            Backend::Staged,
            Backend::IoUring,
        ];
        let backend = backends[(round % 4) as usize].clone();
        let mut rng = Rng::new(round);
        let temp = TempDir::new("lost-sync");
        let dir = temp.join("log");
        let recorder = SyncRecorder::new();
        let wal = Wal::open(&dir, options(&backend).sync_recorder(recorder.clone())).unwrap();
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let mut appended: Vec<u64> = Vec::new();
        let steps = 20 + rng.below(200);
        for step in 0..steps {
            match rng.below(10) {
                0..=5 => {
                    let seed = round << 32 | step;
                    let len = [20, 300, 4000, 150_000][rng.below(4) as usize];
                    let lsn = wal.append(&self_describing(seed, len)).unwrap();
                    assert_eq!(lsn, appended.len() as u64 + 1);
                    appended.push(seed);
                }
                6..=7 => {
                    let last = wal.sync().unwrap();
                    acked = appended[..last as usize]
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| (i as u64 + 1, s))
                        .collect();
                }
                8 => wal.maintain().unwrap(),
                _ => {
                    let last = appended.len() as u64;
                    let cut = last - rng.below(last.min(5) + 1);
                    wal.truncate_after(cut).unwrap();
                    appended.truncate(cut as usize);
                    acked.truncate(cut as usize);
                }
            }
        }
        let image = temp.join("image");
        std::fs::create_dir_all(&image).unwrap();
        recorder.crash_image(&dir, &image, rng.next_u64()).unwrap();
        drop(wal);
        // Recover with the other backend: what one wrote, the other must read.
        let other = backends[((round + 1) % 4) as usize].clone();
        let wal =
            Wal::open(&image, options(&other)).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let last = wal.last_lsn();
        assert!(
            last >= acked.len() as u64,
            "round {round}: acknowledged LSN {} lost, log ends at {last}",
            acked.len()
        );
        assert!(
            last <= appended.len() as u64,
            "round {round}: LSN {last} never appended"
        );
        for lsn in 1..=last {
            let data = wal.read(lsn).unwrap();
            assert_eq!(
                seed_of(&data),
                Some(appended[lsn as usize - 1]),
                "round {round} lsn {lsn}"
            );
        }
        checked += acked.len() as u64;
        assert!(recorder.sync_count() > 0);
    }
    assert!(
        checked > rounds * 5,
        "acknowledged records were checked: {checked}"
    );
}
