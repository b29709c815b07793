//! Failure handling: a failed sync or write poisons the log for everyone; a full disk at a
//! segment roll is an error that consumes no LSN and leaves the log readable.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rwal_tests::{payload, segment_names};
use rwal_wal::{Backend, Error, Options, SimDisk, Wal};

fn sim(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .segment_bytes(1 << 20)
        .background_threads(false)
}

fn is_poisoned_by(result: Result<impl std::fmt::Debug, Error>, op: &str) {
    match result {
        Err(Error::Poisoned { cause }) => match &*cause {
            Error::Io {
                op: found, source, ..
            } => {
                assert_eq!(*found, op);
                assert_eq!(source.raw_os_error(), Some(libc::EIO));
            }
            other => panic!("poisoned by {other:?}, expected {op}"),
        },
        other => panic!("expected Poisoned by {op}, got {other:?}"),
    }
}

#[test]
fn a_failed_fsync_poisons_every_waiter_and_every_later_call() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", sim(&disk)).unwrap());
    wal.append_durable(b"safe").unwrap();
    let safe_epoch = wal.epoch_at(1).unwrap();
    let pin = wal.pin("backup", 1).unwrap();
    let lsns: Vec<u64> = (0..8)
        .map(|i| wal.append(&payload(i, 50)).unwrap())
        .collect();
    disk.fail_next_sync(libc::EIO);
    let committers: Vec<_> = lsns
        .iter()
        .map(|&lsn| {
            let wal = wal.clone();
            std::thread::spawn(move || wal.commit(lsn))
        })
        .collect();
    for c in committers {
        is_poisoned_by(c.join().unwrap(), "fdatasync");
    }
    is_poisoned_by(wal.append(b"more"), "fdatasync");
    is_poisoned_by(wal.commit(1), "fdatasync");
    is_poisoned_by(wal.truncate_after(0), "fdatasync");
    is_poisoned_by(wal.pin("late", 1), "fdatasync");
    is_poisoned_by(pin.move_to(2), "fdatasync");
    drop(pin);
    // The record made durable before the failure is still read, and its epoch (a replicated
    // commit's proposer is answered from it; raft-rs reads entries from threads that have not
    // seen the failure yet); the others are not. A reader gives it, then the failure where a
    // usable log would say it is at the end.
    assert_eq!(wal.durable_lsn(), 1);
    assert_eq!(wal.read(1).unwrap(), b"safe");
    assert_eq!(wal.epoch_at(1).unwrap(), safe_epoch);
    let mut reader = wal.reader(1).unwrap();
    let first = reader.next().unwrap().expect("record 1");
    assert_eq!((first.lsn, first.data), (1, &b"safe"[..]));
    is_poisoned_by(reader.next().map(|r| r.map(|r| r.lsn)), "fdatasync");
    is_poisoned_by(
        reader.next_timeout(Duration::from_secs(5)).map(|r| r.lsn),
        "fdatasync",
    );
    drop(reader);
    is_poisoned_by(wal.read(2), "fdatasync");
    is_poisoned_by(wal.reader(2), "fdatasync");
    is_poisoned_by(wal.epoch_at(2), "fdatasync");
    // A close fails, and so does every close after it: a second one used to return `Ok`.
    let crashed = disk.crash(1);
    is_poisoned_by(wal.close_shared(), "fdatasync");
    is_poisoned_by(wal.close_shared(), "fdatasync");
    // Closed, it answers for nothing: another process may own the files now.
    is_poisoned_by(wal.epoch_at(1), "fdatasync");
    is_poisoned_by(wal.read(1), "fdatasync");
    is_poisoned_by(wal.reader(1), "fdatasync");
    // Nothing retried the sync: after reopening, the acknowledged record is there and the
    // others may or may not be.
    drop(wal);
    let wal = Wal::open("/sim", sim(&crashed)).unwrap();
    assert_eq!(wal.read(1).unwrap(), b"safe");
}

/// A truncation that fails after it declared its cut poisons the log; the epochs of records
/// it declared removed are not answered for, though they were durable, while those it keeps
/// are.
#[test]
fn a_failed_cut_answers_no_epoch_past_the_cut() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    for i in 0..20u64 {
        wal.append(&payload(i, 100)).unwrap();
    }
    wal.sync().unwrap();
    let kept = wal.epoch_at(5).unwrap();
    // Syncs of a truncation within one segment: the control file's (declaring the cut), then
    // the cut segment's, which fails.
    disk.fail_sync_after(1, libc::EIO);
    assert!(wal.truncate_after(10).is_err());
    assert_eq!(wal.epoch_at(5).unwrap(), kept);
    assert_eq!(wal.epoch_at(10).unwrap(), kept);
    is_poisoned_by(wal.epoch_at(11), "fdatasync");
    is_poisoned_by(wal.epoch_at(20), "fdatasync");
    // The same records are read, and no others: a reader stops at the cut with the failure.
    assert_eq!(wal.read(10).unwrap(), payload(9, 100));
    is_poisoned_by(wal.read(11), "fdatasync");
    is_poisoned_by(wal.reader(11), "fdatasync");
    let mut reader = wal.reader(8).unwrap();
    for lsn in 8..=10u64 {
        let record = reader.next().unwrap().expect("a record kept by the cut");
        assert_eq!(record.lsn, lsn);
        assert_eq!(record.data, payload(lsn - 1, 100));
    }
    is_poisoned_by(reader.next().map(|r| r.map(|r| r.lsn)), "fdatasync");
}

/// A truncation whose declaration of the cut fails (its control file's sync) poisons the log,
/// and reads past the cut are refused as after a later step's failure: the declaration may be
/// on the disk, and a reopen then finishes the cut. Until 2026-12-06 the log kept only what it
/// knew durable, no cut, and answered for records a reopen could lose.
#[test]
fn a_cut_whose_declaration_failed_answers_nothing_past_the_cut() {
    let mut cut_by_a_reopen = 0;
    for seed in 0..64 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        for i in 0..20u64 {
            wal.append(&payload(i, 100)).unwrap();
        }
        wal.sync().unwrap();
        disk.fail_next_sync_of("control", libc::EIO, false);
        is_poisoned_by(wal.truncate_after(10), "fdatasync");
        assert_eq!(wal.durable_lsn(), 20);
        assert_eq!(wal.read(10).unwrap(), payload(9, 100));
        assert!(wal.epoch_at(10).is_ok());
        is_poisoned_by(wal.read(11), "fdatasync");
        is_poisoned_by(wal.epoch_at(11), "fdatasync");
        is_poisoned_by(wal.reader(11), "fdatasync");
        let mut reader = wal.reader(10).unwrap();
        assert_eq!(reader.next().unwrap().map(|r| r.lsn), Some(10));
        is_poisoned_by(reader.next().map(|r| r.map(|r| r.lsn)), "fdatasync");
        drop(reader);
        // Why: after a crash the declaration is on the disk or not, and the records past the
        // cut with it.
        let crashed = disk.crash(seed);
        drop(wal);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap();
        match wal.last_lsn() {
            10 => cut_by_a_reopen += 1,
            20 => assert_eq!(wal.read(20).unwrap(), payload(19, 100)),
            other => panic!("seed {seed}: last LSN {other} after the reopen"),
        }
        assert_eq!(wal.read(10).unwrap(), payload(9, 100));
    }
    assert!(
        (1..64).contains(&cut_by_a_reopen),
        "{cut_by_a_reopen} of 64 reopens finished the cut: both outcomes expected"
    );
}

#[test]
fn a_failed_write_poisons() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk).backend(Backend::Simulated(disk.clone()))).unwrap();
    wal.append_durable(b"one").unwrap();
    disk.fail_next_write(libc::EIO);
    is_poisoned_by(wal.append(b"two"), "write");
    is_poisoned_by(wal.append(b"three"), "write");
}

#[test]
fn a_full_disk_at_a_roll_is_an_error_that_takes_no_lsn() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    // The control file and one segment fit; a second segment does not.
    disk.set_space_limit(Some((1 << 20) + 8192));
    let record = payload(7, 300 << 10);
    for lsn in 1..=3 {
        assert_eq!(wal.append_durable(&record).unwrap(), lsn);
    }
    match wal.append(&record) {
        Err(Error::NoSpace { op, path, .. }) => {
            assert_eq!(op, "create segment");
            assert!(path.to_string_lossy().ends_with(".seg"), "{path:?}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    // Not poisoned: reads work, small appends that still fit work, and no LSN was lost.
    assert_eq!(wal.read(2).unwrap(), record);
    assert_eq!(wal.last_lsn(), 3);
    assert_eq!(wal.append_durable(b"small").unwrap(), 4);
    disk.set_space_limit(None);
    assert_eq!(wal.append_durable(&record).unwrap(), 5);
    assert!(wal.segment_count() >= 2);
    drop(wal);
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    assert_eq!(wal.read(5).unwrap(), record);
}

/// A segment is prepared ahead of need only while one more would still fit after it, and at
/// need only if it fits, checked before a byte is written. The zero-fill of a segment that does
/// not fit filled the file system to its last block before it failed, every other writer on it
/// failing meanwhile (this log's checkpoint among them, the one whose compaction frees space),
/// and the background thread tried again at every pass.
#[test]
fn segments_are_prepared_only_where_the_free_space_leaves_room() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    // The control file and one segment are written; a segment and a half more is free.
    let used = (1 << 20) + 8192;
    disk.set_space_limit(Some(used + (3 << 19)));
    match wal.maintain() {
        Err(Error::NoSpace { op, path, reason }) => {
            assert_eq!(op, "create segment");
            assert!(path.to_string_lossy().ends_with(".seg"), "{path:?}");
            assert!(reason.contains("ahead of need and one more"), "{reason}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert_eq!(segment_names(&disk).len(), 1, "prepared ahead of need");
    // The append that needs the segment still gets it: it fits.
    let record = payload(7, 300 << 10);
    for lsn in 1..=4 {
        assert_eq!(wal.append_durable(&record).unwrap(), lsn);
    }
    assert_eq!(segment_names(&disk).len(), 2);
    // Now not even one more fits: refused at need, before anything is written.
    disk.set_space_limit(Some(used + (3 << 19) + 8192));
    for lsn in 5..=6 {
        assert_eq!(wal.append_durable(&record).unwrap(), lsn);
    }
    match wal.append(&record) {
        Err(Error::NoSpace { op, path, reason }) => {
            assert_eq!(op, "create segment");
            assert!(path.to_string_lossy().ends_with("3.seg"), "{path:?}");
            assert!(reason.contains("than a segment takes"), "{reason}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert_eq!(segment_names(&disk).len(), 2);
    disk.set_space_limit(None);
    assert_eq!(wal.append_durable(&record).unwrap(), 7);
    wal.maintain().unwrap();
    assert_eq!(segment_names(&disk).len(), 4, "the next one prepared again");
}

#[test]
fn a_full_disk_at_open_is_an_error_and_creates_nothing_half() {
    let disk = SimDisk::new();
    disk.set_space_limit(Some(100_000));
    match Wal::open("/sim", sim(&disk)) {
        Err(Error::NoSpace { .. }) => {}
        other => panic!("expected NoSpace, got {other:?}"),
    }
    disk.set_space_limit(None);
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    assert_eq!(wal.append_durable(b"x").unwrap(), 1);
}

#[test]
fn a_failed_control_write_poisons() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    wal.append_durable(b"x").unwrap();
    // maintain() prepares a segment (one directory sync), then writes the control file.
    disk.fail_sync_after(1, libc::EIO);
    is_poisoned_by(wal.maintain(), "fdatasync");
    is_poisoned_by(wal.append(b"y"), "fdatasync");
}

/// A segment file that cannot be opened at recovery fails the open with that error, naming the
/// file, and changes nothing: recovery never goes on with a file its first pass did not check.
/// The next open, with the file available again, finds every record.
#[test]
fn a_segment_that_cannot_be_opened_at_recovery_fails_the_open_and_changes_nothing() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    let record = payload(1, 200 << 10);
    let mut last = 0;
    for _ in 0..12 {
        last = wal.append(&record).unwrap();
    }
    wal.commit(last).unwrap();
    wal.close().unwrap();
    let segments = segment_names(&disk);
    assert!(segments.len() >= 3, "{segments:?}");
    let failing = &segments[1];
    let before: Vec<Option<Vec<u8>>> = segments.iter().map(|n| disk.read_file(n)).collect();

    disk.fail_next_open_of(failing, libc::EMFILE);
    match Wal::open("/sim", sim(&disk)) {
        Err(Error::Io { op, path, source }) => {
            assert_eq!(op, "open");
            assert!(path.ends_with(failing), "{}", path.display());
            assert_eq!(source.raw_os_error(), Some(libc::EMFILE));
        }
        other => panic!("expected the open error, got {other:?}"),
    }
    let after: Vec<Option<Vec<u8>>> = segments.iter().map(|n| disk.read_file(n)).collect();
    assert!(before == after, "a failed recovery changed the segments");

    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    assert_eq!(wal.durable_lsn(), last);
    let mut reader = wal.reader(1).unwrap();
    let mut count = 0;
    while let Some(found) = reader.next().unwrap() {
        assert_eq!(found.data, &record[..]);
        count += 1;
    }
    assert_eq!(count, last);
}

/// A panic while an append copies its record (a bug; simulated here) leaves LSNs that will
/// never be complete. The log is poisoned instead of leaving a committer, a truncation and close
/// waiting for them forever.
#[test]
fn a_panic_in_an_append_poisons_the_log_instead_of_hanging_its_waiters() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", sim(&disk)).unwrap());
    let first = wal.append(b"before").unwrap();
    wal.commit(first).unwrap();
    disk.panic_on_next_write();
    let appender = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(b"never copied"))
    };
    assert!(appender.join().is_err(), "the append panicked");
    // Each of these waited forever before.
    let poisoned_by_the_panic = |result: Result<(), Error>| match result {
        Err(Error::Poisoned { cause }) => {
            assert!(cause.to_string().contains("an append panicked"), "{cause}")
        }
        other => panic!("expected Poisoned, got {other:?}"),
    };
    poisoned_by_the_panic(wal.commit(first + 1).map(drop));
    poisoned_by_the_panic(wal.truncate_after(first));
    let wal = Arc::into_inner(wal).unwrap();
    assert!(wal.close().is_err());
    // Reopened, the log holds what was committed.
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    assert_eq!(wal.read(first).unwrap(), b"before");
}

/// A panic in a sync (a bug; simulated here) would leave that sync running for good, and its
/// riders, later committers, truncations and close waiting for it. The sync fails instead, and
/// the log is poisoned as by any failed sync.
#[test]
fn a_panic_in_a_sync_poisons_the_log_instead_of_hanging_its_committers() {
    const WAIT: Duration = Duration::from_secs(30);
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", sim(&disk)).unwrap());
    let first = wal.append(b"before").unwrap();
    wal.commit(first).unwrap();
    let led = wal.append(b"in the sync").unwrap();
    let ridden = wal.append(b"rides it").unwrap();
    let hold = disk.hold_next_sync();
    disk.panic_on_next_sync();
    let (done, ends) = mpsc::channel();
    let commit = |lsn| {
        let (wal, done) = (wal.clone(), done.clone());
        std::thread::spawn(move || done.send(wal.commit(lsn).map(drop)))
    };
    let leader = commit(led);
    assert!(hold.wait_reached(WAIT), "the sync never started");
    let rider = commit(ridden);
    // The rider's call is counted under the lock where it joins the held sync, which covers
    // its record (the leader took everything written).
    let deadline = Instant::now() + WAIT;
    while wal.stats().commits < 3 {
        assert!(Instant::now() < deadline, "the rider never committed");
        std::thread::sleep(Duration::from_millis(1));
    }
    hold.release();
    let panicked_sync = |result: Result<(), Error>| match result {
        Err(Error::Poisoned { cause }) => {
            assert!(cause.to_string().contains("the sync panicked"), "{cause}")
        }
        other => panic!("expected Poisoned, got {other:?}"),
    };
    for _ in 0..2 {
        panicked_sync(ends.recv_timeout(WAIT).expect("a committer hangs"));
    }
    leader.join().unwrap().unwrap();
    rider.join().unwrap().unwrap();
    // Each of these waited forever before.
    panicked_sync(wal.commit(ridden));
    panicked_sync(wal.truncate_after(first));
    let wal = Arc::into_inner(wal).unwrap();
    assert!(wal.close().is_err());
    // Reopened, the log holds what was committed.
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    assert_eq!(wal.read(first).unwrap(), b"before");
}

/// A panic inside a truncation's cut or a reset (a bug; simulated by a sync that panics) would
/// leave syncs frozen for good, and committers and close waiting. The log is poisoned instead,
/// and reopens with what was committed.
#[test]
fn a_panic_in_a_truncation_or_a_reset_poisons_the_log_instead_of_freezing_it() {
    for reset in [false, true] {
        let disk = SimDisk::new();
        let wal = Arc::new(Wal::open("/sim", sim(&disk)).unwrap());
        let kept = wal.append(b"kept").unwrap();
        let last = wal.append(b"cut").unwrap();
        wal.commit(last).unwrap();
        // Everything is durable: the next sync is the cut's own. A reset writes its snapshot
        // before it stops the log: its first sync once stopped is the control file's.
        if reset {
            disk.panic_on_next_sync_of("control");
        } else {
            disk.panic_on_next_sync();
        }
        let changer = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                if reset {
                    wal.reset_to_snapshot(last + 10, 1, b"state")
                } else {
                    wal.truncate_after(kept)
                }
            })
        };
        assert!(
            changer.join().is_err(),
            "the change panicked (reset: {reset})"
        );
        let what = if reset {
            "a reset to a snapshot panicked"
        } else {
            "a truncation panicked"
        };
        let after_the_panic = |result: Result<(), Error>| match result {
            Err(Error::Poisoned { cause }) => {
                assert!(cause.to_string().contains(what), "{cause}")
            }
            other => panic!("expected Poisoned, got {other:?}"),
        };
        // Each of these waited forever before (or tripped the freeze's assertion).
        let (done, ends) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let appended = wal.append(b"after").map(drop);
            let committed = wal.commit(last).map(drop);
            let truncated = wal.truncate_after(kept);
            let closed = Arc::into_inner(wal).expect("the only handle").close();
            let _ = done.send([appended, committed, truncated, closed]);
        });
        let outcomes = ends
            .recv_timeout(Duration::from_secs(30))
            .expect("an append, commit, truncation or close hangs");
        waiter.join().unwrap();
        let [appended, committed, truncated, closed] = outcomes;
        after_the_panic(appended);
        after_the_panic(committed);
        after_the_panic(truncated);
        assert!(closed.is_err());
        // Reopened, the log holds what was committed before the change; or, for a reset
        // whose control file was written before its sync panicked, the new log whole.
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        if reset && wal.first_lsn() == last + 11 {
            let checkpoint = wal.latest_checkpoint().unwrap();
            assert_eq!((checkpoint.lsn, wal.last_lsn()), (last + 10, last + 10));
            let (_, reader) = wal.open_latest_checkpoint().unwrap().unwrap();
            let mut state = Vec::new();
            std::io::Read::read_to_end(&mut reader.unwrap(), &mut state).unwrap();
            assert_eq!(state, b"state");
        } else {
            assert_eq!(wal.read(kept).unwrap(), b"kept", "reset: {reset}");
        }
    }
}

/// A panic while a reset writes its snapshot, before it stops the log, leaves the log as it
/// was and working: nothing was frozen or changed.
#[test]
fn a_panic_while_a_reset_writes_its_snapshot_leaves_the_log_working() {
    let disk = SimDisk::new();
    let wal = Arc::new(Wal::open("/sim", sim(&disk)).unwrap());
    let kept = wal.append(b"kept").unwrap();
    wal.commit(kept).unwrap();
    disk.panic_on_next_sync();
    let changer = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.reset_to_snapshot(kept + 10, 1, b"state"))
    };
    assert!(changer.join().is_err(), "the snapshot's sync panicked");
    let after = wal.append(b"after").unwrap();
    wal.commit(after).unwrap();
    assert_eq!(wal.read(kept).unwrap(), b"kept");
    assert_eq!(wal.latest_checkpoint().map(|c| c.lsn), None);
    // No snapshot of the reset left behind (its writer removed its file as it unwound).
    assert!(
        !disk.file_names().iter().any(|n| n.starts_with("snapshot-")),
        "{:?}",
        disk.file_names()
    );
    Arc::into_inner(wal).unwrap().close().unwrap();
}

/// With a full disk the background work cannot prepare a segment, at every pass; it still
/// compacts what a checkpoint covers (which frees space) and reports the failure.
#[test]
fn a_full_disk_does_not_keep_maintenance_from_compacting() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    let record = payload(7, 300 << 10);
    for _ in 0..10 {
        wal.append_durable(&record).unwrap();
    }
    wal.checkpoint(wal.last_lsn(), Some(b"state")).unwrap();
    let before = wal.segment_count();
    assert!(before >= 3, "{before} segments");
    disk.set_space_limit(Some(100_000)); // not even one new segment
    match wal.maintain() {
        Err(Error::NoSpace { op, .. }) => assert_eq!(op, "create segment"),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(
        wal.segment_count() < before,
        "compaction ran: {} of {before} segments left",
        wal.segment_count()
    );
    disk.set_space_limit(None);
    wal.maintain().unwrap();
    assert_eq!(wal.append_durable(b"after").unwrap(), 11);
}

/// A power cut (crash image `seed`) of `disk` under the open `wal`: the log reopens from it
/// with LSNs 1 to `last`, each `payload(lsn - 1, record_len)`.
fn check_after_power_cut(disk: &SimDisk, wal: Wal, seed: u64, last: u64, record_len: usize) {
    let crashed = disk.crash(seed);
    drop(wal);
    let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(wal.last_lsn(), last, "seed {seed}");
    for lsn in 1..=last {
        assert_eq!(
            wal.read(lsn).unwrap(),
            payload(lsn - 1, record_len),
            "seed {seed}"
        );
    }
}

/// A prepared segment whose final name was never made durable (its directory sync failed, which
/// poisons, as a process that died before it would leave it), kept by the reopen the
/// application does next as the segment of the next roll: records committed into it must
/// survive a power cut. Recovery syncs the directory before it hands the segment out; before it
/// did (found by an audit on 2026-12-02), the segment's name could vanish, and its records
/// with it.
#[test]
fn records_committed_into_a_prepared_segment_kept_at_open_survive_a_power_cut() {
    const RECORD: usize = 60_000; // seventeen a segment
    for seed in 0..32u64 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        for i in 0..17u64 {
            wal.append(&payload(i, RECORD)).unwrap();
        }
        wal.sync().unwrap();
        disk.fail_next_dir_sync(libc::EIO);
        is_poisoned_by(wal.append(&payload(17, RECORD)), "fsync directory");
        drop(wal);
        assert!(
            disk.unsynced_directory_operations() > 0,
            "the rename is undoable"
        );
        // No power cut: the application reopens the poisoned log on the same disk.
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        assert_eq!(wal.last_lsn(), 17);
        let names = segment_names(&disk);
        assert_eq!(names.len(), 2, "the prepared segment is kept: {names:?}");
        for i in 17..20u64 {
            let lsn = wal.append(&payload(i, RECORD)).unwrap();
            wal.commit(lsn).unwrap();
        }
        assert_eq!(
            segment_names(&disk),
            names,
            "the roll took the prepared segment"
        );
        check_after_power_cut(&disk, wal, seed, 20, RECORD);
    }
}

/// A process killed with records written and not synced (kept by the page cache): the next
/// open on the same disk keeps them, and the records committed after it build on them, in the
/// next segment. Recovery syncs what it keeps before it hands the log out: without that (no
/// test failed with its loop removed until this one, found by a review on 2026-12-07), a power
/// cut after the reopen could take the kept records, and the later acknowledged ones with
/// them, since a commit syncs only the segments its own records are in.
#[test]
fn records_a_killed_process_left_unsynced_survive_a_power_cut_after_the_reopen() {
    const RECORD: usize = 60_000; // seventeen a segment
    for seed in 0..32u64 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        for i in 0..5u64 {
            wal.append(&payload(i, RECORD)).unwrap();
        }
        wal.commit(5).unwrap();
        for i in 5..17u64 {
            wal.append(&payload(i, RECORD)).unwrap();
        }
        // Killed: nothing more is synced or closed.
        std::mem::forget(wal);
        disk.release_lock();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        assert_eq!(wal.last_lsn(), 17, "the records written are kept");
        for i in 17..20u64 {
            let lsn = wal.append(&payload(i, RECORD)).unwrap();
            wal.commit(lsn).unwrap();
        }
        assert_eq!(
            segment_names(&disk).len(),
            2,
            "the commits went to a second segment"
        );
        check_after_power_cut(&disk, wal, seed, 20, RECORD);
    }
}

/// fsyncgate: on Linux a sync that fails may leave the pages it could not write clean and
/// readable, and report the error once. The log that saw it is poisoned; a reopen (here on the
/// same disk with no crash between, as a restarted process finds the page cache) must not read
/// those records back from the cache and call them durable: the records acknowledged after
/// them would be lost with them at the next power cut.
#[test]
fn records_whose_sync_failed_do_not_come_back_from_the_page_cache() {
    for seed in 0..4 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        for i in 1..=5 {
            wal.append(&payload(i, 300)).unwrap();
        }
        wal.commit(5).unwrap();
        for i in 6..=8 {
            wal.append(&payload(i, 300)).unwrap();
        }
        wal.check_usable().unwrap();
        disk.fail_next_sync_forgetting_writes(libc::EIO);
        is_poisoned_by(wal.commit(8), "fdatasync");
        is_poisoned_by(wal.check_usable(), "fdatasync");
        drop(wal);

        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        assert_eq!(
            wal.last_lsn(),
            5,
            "seed {seed}: records whose sync failed came back from the cache"
        );
        assert_eq!(wal.append(b"acknowledged").unwrap(), 6);
        wal.commit(6).unwrap();
        drop(wal);

        let crashed = disk.crash(seed);
        let wal = Wal::open("/sim", sim(&crashed))
            .unwrap_or_else(|e| panic!("seed {seed}: after the power cut: {e}"));
        assert_eq!(wal.last_lsn(), 6, "seed {seed}");
        assert_eq!(wal.read(6).unwrap(), b"acknowledged");
        for i in 1..=5 {
            assert_eq!(wal.read(i).unwrap(), payload(i, 300), "seed {seed} lsn {i}");
        }
    }
}

/// The checkpoint's snapshot, read whole.
fn snapshot_of(wal: &Wal) -> Vec<u8> {
    use std::io::Read;
    let mut reader = wal.open_snapshot().unwrap().expect("a snapshot");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    bytes
}

/// A control write whose sync did not happen (the process died first: the write is in the page
/// cache, dirty) or failed (fsyncgate: clean, readable, never written). The restarted process
/// opens the log, and its recovery removes what the control file no longer names (here the
/// older checkpoint's snapshot). It must act on the control file the disk holds: had it acted
/// on the cached copy and that copy been lost at the next power cut, the log would name a
/// snapshot already removed, and open in no mode (found by review, 2026-12-03).
#[test]
fn recovery_acts_on_the_control_file_the_disk_holds() {
    for forgetting in [false, true] {
        for seed in 0..8 {
            let case = format!("forgetting {forgetting}, seed {seed}");
            let disk = SimDisk::new();
            let wal = Wal::open("/sim", sim(&disk)).unwrap();
            for i in 1..=3 {
                wal.append_durable(&payload(i, 300)).unwrap();
            }
            wal.checkpoint(2, Some(b"state at 2")).unwrap();
            disk.fail_next_sync_of("control", libc::EIO, forgetting);
            let failed = wal.checkpoint(3, Some(b"state at 3"));
            assert!(failed.is_err(), "{case}: {failed:?}");
            drop(wal);

            // The restarted process, on the page cache the failure (or the death) left.
            let wal = Wal::open("/sim", sim(&disk)).unwrap_or_else(|e| panic!("{case}: {e}"));
            // Died before its sync: the write is made durable and stands. Failed: it is gone.
            let (at, state) = if forgetting {
                (2, &b"state at 2"[..])
            } else {
                (3, &b"state at 3"[..])
            };
            assert_eq!(wal.latest_checkpoint().unwrap().lsn, at, "{case}");
            assert_eq!(snapshot_of(&wal), state, "{case}");
            drop(wal);

            let crashed = disk.crash(seed);
            let wal = Wal::open("/sim", sim(&crashed))
                .unwrap_or_else(|e| panic!("{case}: after the power cut: {e}"));
            assert_eq!(wal.latest_checkpoint().unwrap().lsn, at, "{case}");
            assert_eq!(snapshot_of(&wal), state, "{case}");
            assert_eq!(wal.last_lsn(), 3, "{case}");
        }
    }
}

/// The first segment's header, written when a new log is created, fails its sync the fsyncgate
/// way (clean in the cache, never written), and `open` fails. The next open must not append
/// behind that header: a power cut would then turn it to zeros, and the acknowledged records
/// behind it would be taken for a prepared file's (found by review, 2026-12-03).
#[test]
fn a_segment_header_whose_sync_failed_is_not_appended_behind() {
    for seed in 0..8 {
        let disk = SimDisk::new();
        disk.fail_first_sync_of_created("00000000000000000001.seg", libc::EIO, true);
        match Wal::open("/sim", sim(&disk)) {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::EIO)),
            other => panic!("seed {seed}: expected the header's sync to fail: {other:?}"),
        }
        let wal = Wal::open("/sim", sim(&disk)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for i in 1..=3 {
            assert_eq!(
                wal.append_durable(&payload(i, 300)).unwrap(),
                i,
                "seed {seed}"
            );
        }
        drop(wal);
        let crashed = disk.crash(seed);
        let wal = Wal::open("/sim", sim(&crashed))
            .unwrap_or_else(|e| panic!("seed {seed}: after the power cut: {e}"));
        assert_eq!(wal.last_lsn(), 3, "seed {seed}");
        for i in 1..=3 {
            assert_eq!(wal.read(i).unwrap(), payload(i, 300), "seed {seed} lsn {i}");
        }
    }
}

/// A new segment whose rename from its temporary name fails is removed: each try takes a new
/// sequence, and a rename that kept failing left a whole segment's `.tmp` file per try until
/// the next open. The log stays usable once renames work again.
#[test]
fn a_segment_whose_rename_fails_leaves_no_temporary_file() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    let last = segment_names(&disk).last().cloned().unwrap();
    let next = last.trim_end_matches(".seg").parse::<u64>().unwrap() + 1;
    disk.fail_renames_of(&format!("{next:020}.seg.tmp"), libc::EIO);
    let failed = (0..64).find_map(|i| wal.append(&payload(i, 100 << 10)).err());
    match failed {
        Some(Error::Io { op: "rename", .. }) => {}
        other => panic!("expected the rename's error, got {other:?}"),
    }
    let temps: Vec<String> = disk
        .file_names()
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "left behind: {temps:?}");
    disk.clear_faults();
    let lsn = wal.append(&payload(99, 100 << 10)).unwrap();
    wal.commit(lsn).unwrap();
    wal.close().unwrap();
}
