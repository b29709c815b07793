//! `close` and an append that copies its record while the log closes.
//!
//! Appends reserve their LSNs under the tail lock and copy outside it. `close` syncs first and
//! only then takes the tail lock to release the directory; an append that reserves in between
//! is still copying into a segment when `close` gets the lock. Unless `close` waits for it, the
//! copy writes into files another process may already own. On the simulated disk, the test
//! holds `close` inside its sync, lets an append reserve and start its copy, holds that copy,
//! then lets `close` go on: it must not return before the copy ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rwal_wal::{Backend, Options, SimDisk, Wal};

const WAIT: Duration = Duration::from_secs(10);
/// How long a `close` that does not wait for the copy is given to return (and fail the test)
/// before the copy is let go. Not a wait for something that should happen: a window for
/// something that must not.
const WINDOW: Duration = Duration::from_millis(300);

fn options(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .segment_bytes(1 << 20)
        .background_threads(false)
}

#[test]
fn close_waits_for_a_copy_that_started_after_its_sync() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", options(&disk)).unwrap());
    let first = wal.append(b"committed before the close").unwrap();
    wal.commit(first).unwrap();
    // Appended, not synced: `close` has something to sync, and its sync is held.
    wal.append(b"synced by the close").unwrap();
    let sync = disk.hold_next_sync();
    let copy_released = Arc::new(AtomicBool::new(false));
    let closer = {
        let wal = wal.clone();
        let copy_released = copy_released.clone();
        std::thread::spawn(move || {
            let closed = wal.close_shared();
            (closed, copy_released.load(Ordering::SeqCst))
        })
    };
    assert!(sync.wait_reached(WAIT), "close reached its sync");

    // The append reserves now, after the close's sync began, and its copy is held.
    let copy = disk.hold_next_write();
    let appender = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(b"copied while the log closes"))
    };
    assert!(copy.wait_reached(WAIT), "the append reached its copy");
    sync.release();

    let window_end = Instant::now() + WINDOW;
    while Instant::now() < window_end {
        assert!(
            !closer.is_finished(),
            "close returned while an append it let reserve was still copying"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    copy_released.store(true, Ordering::SeqCst);
    copy.release();
    let lsn = appender
        .join()
        .unwrap()
        .expect("the reserved append completes");
    let (closed, after_the_copy) = closer.join().unwrap();
    closed.expect("close");
    assert!(after_the_copy, "close returned while the copy was held");

    // Closed: later calls are refused, and the directory opens again with everything the
    // close synced (the last record was never committed: it may or may not be there).
    assert!(wal.append(b"after the close").is_err());
    drop(wal);
    let reopened = Wal::open("/sim", options(&disk)).unwrap();
    assert!(reopened.last_lsn() >= lsn - 1);
    assert_eq!(reopened.read(first).unwrap(), b"committed before the close");
    assert_eq!(reopened.read(lsn - 1).unwrap(), b"synced by the close");
}
