//! `close` and appends around it.
//!
//! Appends reserve their LSNs under the tail lock and copy outside it. `close` syncs, then takes
//! the tail lock to release the directory. An append that reserved before the close began may
//! still be copying: the close's sync waits for its copy, and the close returns only after it,
//! with the record synced; unless it waits, the copy writes into files another process may
//! already own. An append that comes after the close began is refused (`Closed`): it used to
//! reserve between the close's sync and its tail lock, and return `Ok` for a record the close
//! never synced. On the simulated disk, the tests hold the close inside its sync, or an
//! append's copy, and look at what happens meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rwal_wal::{Backend, Options, SimDisk, Wal};

const WAIT: Duration = Duration::from_secs(10);
/// How long a `close` that does not wait for the copy is given to return (and fail the test)
/// before the copy is let go. Not a wait for something that should happen: a window for
/// something that must not.
const WINDOW: Duration = Duration::from_millis(300);

/// Starts `close_shared` on a thread of its own; it answers the close's outcome and whether
/// `released` was set when the close returned.
fn start_close(
    wal: &Arc<Wal>,
    released: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<(rwal_wal::Result<()>, bool)> {
    let (wal, released) = (wal.clone(), released.clone());
    std::thread::spawn(move || {
        let closed = wal.close_shared();
        (closed, released.load(Ordering::SeqCst))
    })
}

/// Checks, for `WINDOW`, that `close` has not returned.
fn assert_close_still_waits<T>(closer: &std::thread::JoinHandle<T>, for_what: &str) {
    let window_end = Instant::now() + WINDOW;
    while Instant::now() < window_end {
        assert!(!closer.is_finished(), "close returned while {for_what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn options(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .segment_bytes(1 << 20)
        .background_threads(false)
}

#[test]
fn close_waits_for_a_copy_in_flight_and_syncs_it() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", options(&disk)).unwrap());
    let first = wal.append(b"committed before the close").unwrap();
    wal.commit(first).unwrap();
    // An append reserves before the close, and its copy is held.
    let copy = disk.hold_next_write();
    let appender = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(b"copied while the log closes"))
    };
    assert!(copy.wait_reached(WAIT), "the append reached its copy");
    let copy_released = Arc::new(AtomicBool::new(false));
    let closer = start_close(&wal, &copy_released);

    assert_close_still_waits(&closer, "an append it let reserve was still copying");
    copy_released.store(true, Ordering::SeqCst);
    copy.release();
    let lsn = appender
        .join()
        .unwrap()
        .expect("the reserved append completes");
    let (closed, after_the_copy) = closer.join().unwrap();
    closed.expect("close");
    assert!(after_the_copy, "close returned while the copy was held");

    // Closed: later calls are refused, and the directory opens again with everything
    // appended before the close, synced by it.
    assert!(wal.append(b"after the close").is_err());
    drop(wal);
    let reopened = Wal::open("/sim", options(&disk)).unwrap();
    assert_eq!(reopened.last_lsn(), lsn);
    assert_eq!(reopened.read(first).unwrap(), b"committed before the close");
    assert_eq!(reopened.read(lsn).unwrap(), b"copied while the log closes");
}

/// An append that comes while the close syncs is refused: before, it reserved an LSN past the
/// one the close's sync read and returned `Ok` for a record the close never synced (with
/// `Staged`, never wrote) although the close says it syncs everything appended (found by a
/// review of the commit path, 2026-12-07).
#[test]
fn an_append_while_the_log_closes_is_refused() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", options(&disk)).unwrap());
    // Appended, not synced: `close` has something to sync, and its sync is held.
    let lsn = wal.append(b"synced by the close").unwrap();
    let sync = disk.hold_next_sync();
    let released = Arc::new(AtomicBool::new(false));
    let closer = start_close(&wal, &released);
    assert!(sync.wait_reached(WAIT), "close reached its sync");
    let late = wal.append(b"appended while the log closes");
    assert!(matches!(late, Err(rwal_wal::Error::Closed)), "{late:?}");
    released.store(true, Ordering::SeqCst);
    sync.release();
    let (closed, _) = closer.join().unwrap();
    closed.expect("close");
    drop(wal);
    let reopened = Wal::open("/sim", options(&disk)).unwrap();
    assert_eq!(reopened.last_lsn(), lsn);
    assert_eq!(reopened.read(lsn).unwrap(), b"synced by the close");
}

/// A committer that comes while the close writes the control file (after the close's sync of
/// the segments) is refused too. It used to append and lead a sync of its own, which the close
/// then had to wait for before it released the directory (it did: the test was of that wait).
#[test]
fn a_commit_while_the_close_writes_the_control_file_is_refused() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", options(&disk)).unwrap());
    let first = wal.append(b"committed before the close").unwrap();
    wal.commit(first).unwrap();
    // Nothing is left to commit: the close's first sync is the control file's, held here.
    let control_sync = disk.hold_next_sync();
    let sync_released = Arc::new(AtomicBool::new(false));
    let closer = start_close(&wal, &sync_released);
    assert!(
        control_sync.wait_reached(WAIT),
        "close reached its control-file sync"
    );
    let late = wal.append_durable(b"committed while the log closes");
    assert!(matches!(late, Err(rwal_wal::Error::Closed)), "{late:?}");
    assert!(
        wal.commit(first).is_ok(),
        "a commit of a durable record still answers"
    );
    sync_released.store(true, Ordering::SeqCst);
    control_sync.release();
    let (closed, _) = closer.join().unwrap();
    closed.expect("close");
    drop(wal);
    let reopened = Wal::open("/sim", options(&disk)).unwrap();
    assert_eq!(reopened.last_lsn(), first);
}

/// On a poisoned log the written LSN no longer tells whether copies are still running (a
/// failed append leaves its LSNs incomplete for good). `close` must still wait for a copy in
/// progress before it releases the directory.
#[test]
fn close_of_a_poisoned_log_waits_for_a_copy_in_progress() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", options(&disk)).unwrap());
    let copy = disk.hold_next_write();
    let appender = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(b"copied while the log is poisoned and closes"))
    };
    assert!(copy.wait_reached(WAIT), "the append reached its copy");
    // The next append's write fails: the log is poisoned.
    disk.fail_next_write(libc::EIO);
    let failed = wal.append(b"fails");
    assert!(failed.is_err(), "{failed:?}");
    assert!(wal.commit(wal.last_lsn()).is_err(), "the log is poisoned");

    let copy_released = Arc::new(AtomicBool::new(false));
    let closer = start_close(&wal, &copy_released);
    assert_close_still_waits(&closer, "an append was still copying on a poisoned log");
    copy_released.store(true, Ordering::SeqCst);
    copy.release();
    let _ = appender.join().unwrap();
    // The close's outcome is the poison; what matters is when it came.
    let (_, after_the_copy) = closer.join().unwrap();
    assert!(after_the_copy, "close returned while the copy was held");
    drop(wal);
    Wal::open("/sim", options(&disk)).expect("the directory opens again");
}

/// `close` waits for every run of records an append placed to end: completed, or given up by
/// an append whose copy failed or panicked. Those given up must count, or `close` waits for
/// them forever. A batch spanning three segments places three runs; its first copy fails
/// here.
#[test]
fn close_does_not_wait_for_appends_that_failed_or_panicked() {
    for panics in [false, true] {
        let disk = SimDisk::new();
        let wal = Arc::new(Wal::open("/sim", options(&disk)).unwrap());
        wal.append(b"before").unwrap();
        let start = wal.segment_count();
        // 2.4 MB in segments of 1 MiB: three runs.
        let batch = vec![vec![5u8; 60_000]; 40];
        if panics {
            disk.panic_on_next_write();
        } else {
            disk.fail_next_write(libc::EIO);
        }
        let appender = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let batch: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                wal.append_batch(&batch)
            })
        };
        match appender.join() {
            Ok(appended) => assert!(!panics && appended.is_err(), "{appended:?}"),
            Err(_) => assert!(panics, "the append panicked"),
        }
        assert!(
            wal.segment_count() > start,
            "the batch placed a run in a new segment"
        );
        let released = Arc::new(AtomicBool::new(true));
        let closer = start_close(&wal, &released);
        let deadline = Instant::now() + WAIT;
        while !closer.is_finished() {
            assert!(
                Instant::now() < deadline,
                "close waits for the runs of a failed append (panics: {panics})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(closer.join().unwrap().0.is_err(), "the log is poisoned");
    }
}
