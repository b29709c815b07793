//! loom models of the concurrent protocols at the heart of the write path (reservation, group
//! commit, and the count of runs that tells `close` when the last copy ended), run on the
//! production code through the `sync` shim:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p rwal-wal --release --lib loom
//! ```

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;

use crate::error::Error;
use crate::group_commit::GroupCommit;
use crate::reserve::{Runs, Tail};
use crate::sync::{AtomicU64, Mutex, Ordering};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Two appenders reserve, copy and complete concurrently, one of them rolling the segment: LSNs
/// are dense and distinct, byte ranges never overlap, and the written LSN covers both.
#[test]
fn loom_reservation_gives_distinct_lsns_and_disjoint_ranges() {
    model(|| {
        // Segments of 100 bytes with data from offset 10: a 60-byte record and a 50-byte one
        // cannot share a segment, so whichever comes second rolls.
        let tail = Arc::new(Mutex::new(Tail::new(1, 0u32, 10, 100, 10, 100)));
        let group = Arc::new(GroupCommit::new(0));
        let appenders: Vec<_> = [60u64, 50]
            .into_iter()
            .map(|size| {
                let (tail, group) = (tail.clone(), group.clone());
                thread::spawn(move || {
                    let mut runs = Runs::new();
                    tail.lock()
                        .place([size].into_iter(), |s, _, _| s + 1, |s| *s, &mut runs);
                    let run = runs.iter().next().expect("one run").clone();
                    group.complete(run.first_lsn, run.first_lsn, size);
                    (run.first_lsn, run.segment, run.offset, size)
                })
            })
            .collect();
        let mut placed: Vec<(u64, u32, u64, u64)> =
            appenders.into_iter().map(|h| h.join().unwrap()).collect();
        placed.sort();
        assert_eq!(placed.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2]);
        let (a, b) = (placed[0], placed[1]);
        assert!(
            a.1 != b.1 || a.2 + a.3 <= b.2,
            "overlapping ranges {a:?} {b:?}"
        );
        assert_eq!(b.1, a.1 + 1, "the second record rolled to the next segment");
        assert_eq!(group.written_lsn(), 2);
    });
}

/// Two committers whose records complete in either order: each returns only once a sync made
/// its record durable, the syncs cover contiguous ranges, and no sync ever covers a record that
/// was not completely written when it started.
#[test]
fn loom_group_commit_never_acknowledges_before_the_sync() {
    model(|| {
        let group = Arc::new(GroupCommit::new(0));
        let syncs = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
        let written = Arc::new(Mutex::new(0u64));
        let committers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|lsn| {
                let (group, syncs, written) = (group.clone(), syncs.clone(), written.clone());
                thread::spawn(move || {
                    // The copy, then its report to group commit.
                    *written.lock() |= 1 << lsn;
                    group.complete(lsn, lsn, 8);
                    group
                        .commit(lsn, Duration::ZERO, |from, to| {
                            let w = *written.lock();
                            for covered in from + 1..=to {
                                assert!(
                                    w & (1 << covered) != 0,
                                    "sync to {to} covers LSN {covered}, not yet written"
                                );
                            }
                            syncs.lock().push((from, to));
                            Ok(())
                        })
                        .expect("commit");
                    assert!(group.durable_lsn() >= lsn);
                })
            })
            .collect();
        committers.into_iter().for_each(|h| h.join().unwrap());
        let syncs = syncs.lock().clone();
        let mut expected_from = 0;
        for &(from, to) in &syncs {
            assert_eq!(from, expected_from, "syncs {syncs:?}");
            assert!(to > from);
            expected_from = to;
        }
        assert_eq!(expected_from, 2);
        assert!(!syncs.is_empty() && syncs.len() <= 2);
    });
}

/// A failed sync wakes every waiter with the poison, whichever thread led it; nobody hangs.
#[test]
fn loom_a_failed_sync_poisons_every_committer() {
    model(|| {
        let group = Arc::new(GroupCommit::new(0));
        group.complete(1, 2, 16);
        let committers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|lsn| {
                let group = group.clone();
                thread::spawn(move || {
                    group.commit(lsn, Duration::ZERO, |_, _| {
                        Err(Error::Unsupported {
                            reason: "injected sync failure".into(),
                        })
                    })
                })
            })
            .collect();
        for handle in committers {
            let outcome = handle.join().unwrap();
            assert!(
                matches!(outcome, Err(Error::Poisoned { .. })),
                "{outcome:?}"
            );
        }
        assert_eq!(group.durable_lsn(), 0);
    });
}

/// Two appenders place a run each under the tail lock and copy it outside, one completing it
/// and the other failing: it poisons the log, as `copy_run` does, and its guard gives the run
/// up. Meanwhile a close takes the tail lock and waits, as `Wal::close` does (the same
/// `wait_for_runs_placed`), for the written LSN to reach the last LSN placed (which the failed
/// run never lets it: the poisoning must wake it), then until as many runs ended as were
/// placed. The close never goes on while a copy it counted is in progress, it does not wait for
/// the failed run forever (loom fails a model that blocks or spins without end), and every run
/// is counted as ended once.
#[test]
fn loom_close_waits_for_every_run_placed_before_it() {
    close_model([true, false]);
}

/// As above with both copies completing: the close's wait for the written LSN is woken by the
/// last copy's completion, not by a poisoning (which wakes every waiter whatever it waits
/// for, and so hid a completion that forgot the waiting close).
#[test]
fn loom_close_is_woken_by_the_last_copy_completing() {
    close_model([true, true]);
}

fn close_model(copies_succeed: [bool; 2]) {
    model(move || {
        let tail = Arc::new(Mutex::new(Tail::new(1, 0u32, 10, 1000, 10, 1000)));
        let group = Arc::new(GroupCommit::new(0));
        // Appenders between placing their run and the end of its copy (the model's own).
        let copying = Arc::new(AtomicU64::new(0));
        let appenders: Vec<_> = copies_succeed
            .into_iter()
            .map(|copy_succeeds| {
                let (tail, group, copying) = (tail.clone(), group.clone(), copying.clone());
                thread::spawn(move || {
                    let mut runs = Runs::new();
                    {
                        let mut tail = tail.lock();
                        tail.place([40u64].into_iter(), |s, _, _| s + 1, |s| *s, &mut runs);
                        copying.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut in_progress = group.runs_in_progress(runs.len());
                    let run = runs.iter().next().expect("one run").clone();
                    copying.fetch_sub(1, Ordering::Relaxed);
                    if copy_succeeds {
                        in_progress.complete(run.first_lsn, run.first_lsn, 40);
                    } else {
                        // A failed copy poisons the log and returns early; the guard gives
                        // its run up.
                        group.poison(Error::Unsupported {
                            reason: "injected copy failure".into(),
                        });
                    }
                })
            })
            .collect();
        {
            let tail = tail.lock();
            group.wait_for_runs_placed(&tail);
            assert_eq!(
                copying.load(Ordering::Relaxed),
                0,
                "the close went on while a copy it counted was in progress"
            );
        }
        appenders.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(tail.lock().runs_placed(), 2);
        assert_eq!(
            group.runs_ended(),
            2,
            "a run counted as ended twice, or never"
        );
        if copies_succeed.contains(&false) {
            assert!(
                matches!(group.check(), Err(Error::Poisoned { .. })),
                "the failed copy did not poison the log"
            );
        } else {
            assert!(group.check().is_ok());
            assert_eq!(group.written_lsn(), 2);
        }
    });
}
