//! `truncate_after`: what it cuts, what it refuses, and that nothing cut ever comes back.

use std::sync::Arc;

use rwal_tests::{control_file, payload, targets};
use rwal_wal::{Backend, Error, Options, RecoveryMode, SimDisk, Wal};

#[test]
fn truncation_drops_the_suffix_and_appends_continue_after_it() {
    for t in targets("truncate") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        for i in 0..100u64 {
            wal.append(&payload(i, 30_000)).unwrap();
        }
        wal.sync().unwrap();
        let segments_before = wal.segment_count();
        wal.truncate_after(10).unwrap();
        assert_eq!((wal.last_lsn(), wal.durable_lsn()), (10, 10), "{}", t.name);
        assert!(wal.segment_count() < segments_before, "{}", t.name);
        assert!(matches!(wal.read(11), Err(Error::NotFound { .. })));
        assert_eq!(wal.append_durable(b"new eleven").unwrap(), 11);
        wal.close().unwrap();
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.last_lsn(), 11, "{}", t.name);
        assert_eq!(wal.read(10).unwrap(), payload(9, 30_000));
        assert_eq!(wal.read(11).unwrap(), b"new eleven");
    }
}

#[test]
fn truncating_everything_and_past_the_end() {
    for t in targets("truncate-all") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        wal.append(b"a").unwrap();
        wal.append(b"b").unwrap();
        wal.sync().unwrap();
        assert!(matches!(
            wal.truncate_after(5),
            Err(Error::NotFound {
                lsn: 5,
                last_lsn: 2
            })
        ));
        wal.truncate_after(2).unwrap();
        assert_eq!(wal.last_lsn(), 2);
        wal.truncate_after(0).unwrap();
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (1, 0));
        assert_eq!(wal.append_durable(b"c").unwrap(), 1);
        drop(wal);
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.read(1).unwrap(), b"c", "{}", t.name);
        assert_eq!(wal.last_lsn(), 1);
    }
}

#[test]
fn truncation_is_refused_while_a_reader_is_past_the_cut() {
    for t in targets("truncate-pinned") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        for i in 0..10u64 {
            wal.append(&payload(i, 10)).unwrap();
        }
        wal.sync().unwrap();
        let mut reader = wal.reader(1).unwrap();
        for _ in 0..6 {
            reader.next().unwrap().unwrap();
        }
        match wal.truncate_after(4) {
            Err(Error::Pinned {
                pinned_lsn: 6,
                cut_lsn: 4,
                holder,
                ..
            }) => assert!(holder.contains("reader")),
            other => panic!("{}: {other:?}", t.name),
        }
        assert_eq!(wal.last_lsn(), 10, "nothing was cut");
        // At or past the reader's position it is allowed.
        wal.truncate_after(6).unwrap();
        assert!(reader.next().unwrap().is_none());
        drop(reader);
        wal.truncate_after(4).unwrap();
        assert_eq!(wal.append_durable(b"five").unwrap(), 5);
    }
}

/// A pin registered, or moved, past the cut while a truncation cuts must wait for the cut to
/// end: the truncation looked at the pins before it, and would remove what the pin keeps. On
/// the simulated disk the test holds the truncation inside its cut and gives the pin calls a
/// window to return in (which they must not).
#[test]
fn pins_placed_during_a_cut_wait_for_it() {
    const WINDOW: std::time::Duration = std::time::Duration::from_millis(300);
    let disk = SimDisk::new();
    let options = Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .segment_bytes(1 << 20)
        .background_threads(false);
    let wal = Arc::new(Wal::open("/sim", options).unwrap());
    for i in 0..10u64 {
        wal.append(&payload(i, 10)).unwrap();
    }
    wal.sync().unwrap();
    let early = wal.pin("early", 2).unwrap();
    // Everything is durable: the truncation's first write is inside its cut.
    let cut = disk.hold_next_write();
    let truncation = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.truncate_after(4))
    };
    assert!(cut.wait_reached(std::time::Duration::from_secs(10)));
    // A forward move is a store of its own (no other lock would stop it); a new pin also
    // takes the control lock, which the cut holds while it writes.
    let moved = std::thread::spawn(move || {
        early.move_to(9).unwrap();
        early
    });
    let placed = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.pin("late", 8).unwrap())
    };
    let window_end = std::time::Instant::now() + WINDOW;
    while std::time::Instant::now() < window_end {
        assert!(
            !moved.is_finished() && !placed.is_finished(),
            "a pin was placed or moved past the cut while the truncation cut"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cut.release();
    truncation
        .join()
        .unwrap()
        .expect("the truncation saw no pin past the cut");
    let (early, late) = (moved.join().unwrap(), placed.join().unwrap());
    assert_eq!((early.lsn(), late.lsn()), (9, 8));
    assert_eq!(wal.last_lsn(), 4);
    // The pins now stand past the end: a cut below them is refused.
    assert!(matches!(wal.truncate_after(3), Err(Error::Pinned { .. })));
}

#[test]
fn a_committer_waiting_for_a_cut_record_is_told() {
    let disk = SimDisk::new();
    let wal = Arc::new(
        Wal::open(
            "/sim",
            Options::new()
                .backend(Backend::Simulated(disk))
                .segment_bytes(1 << 20),
        )
        .unwrap(),
    );
    wal.append(b"1").unwrap();
    wal.sync().unwrap();
    wal.append(b"2").unwrap();
    wal.truncate_after(1).unwrap();
    assert!(matches!(wal.commit(2), Err(Error::NotFound { lsn: 2, .. })));
    // Appends and commits go on normally afterwards.
    let lsn = wal.append(b"2 again").unwrap();
    wal.commit(lsn).unwrap();
    assert_eq!(wal.read(2).unwrap(), b"2 again");
}

/// The regression the issue names: cut, append a record of the same length, crash, reopen:
/// nothing old comes back.
#[test]
fn cut_records_never_come_back_after_a_crash() {
    for seed in 0..200u64 {
        let disk = SimDisk::new();
        let options = Options::new()
            .backend(Backend::Simulated(disk.clone()))
            .segment_bytes(1 << 20)
            .background_threads(false);
        let wal = Wal::open("/sim", options.clone()).unwrap();
        for i in 0..20u64 {
            wal.append(&payload(i, 100)).unwrap();
        }
        wal.sync().unwrap();
        wal.truncate_after(10).unwrap();
        // Same length as the old record 11: old 12.. would line up right behind it.
        let eleven = payload(1000 + seed, 100);
        wal.append(&eleven).unwrap();
        if seed % 2 == 0 {
            wal.sync().unwrap();
        }
        let crashed = disk.crash(seed);
        drop(wal);
        let wal = Wal::open(
            "/sim",
            Options::new()
                .backend(Backend::Simulated(crashed))
                .segment_bytes(1 << 20),
        )
        .unwrap();
        assert!(
            wal.last_lsn() <= 11,
            "seed {seed}: old records resurrected: last {}",
            wal.last_lsn()
        );
        if seed % 2 == 0 {
            assert_eq!(wal.read(11).unwrap(), eleven, "seed {seed}");
        }
        for lsn in 1..=wal.last_lsn().min(10) {
            assert_eq!(wal.read(lsn).unwrap(), payload(lsn - 1, 100), "seed {seed}");
        }
    }
}

/// A truncation makes five syncs (control, directory, cut segment, control, the control's other
/// copy, and none more): failing the n-th stops it right after step n - 1, and a crash then must
/// leave either the log before the cut or the log after it, never a mix, and never a false
/// corruption.
#[test]
fn a_crash_after_any_step_of_a_truncation_leaves_before_or_after() {
    let mut outcomes = [0u32; 2];
    for seed in 0..400u64 {
        let disk = SimDisk::new();
        let options = Options::new()
            .backend(Backend::Simulated(disk.clone()))
            .segment_bytes(1 << 20)
            .background_threads(false);
        let wal = Wal::open("/sim", options).unwrap();
        for i in 0..40u64 {
            wal.append(&payload(i, 60_000)).unwrap();
        }
        wal.sync().unwrap();
        let step = seed % 6;
        disk.fail_sync_after(step, libc::EIO);
        let cut = wal.truncate_after(15);
        if step < 5 {
            assert!(
                matches!(cut, Err(Error::Poisoned { .. })),
                "seed {seed}: {cut:?}"
            );
        }
        // The same crash twice: once for the strictest recovery mode, once for the default.
        let strict = disk.crash(seed);
        let crashed = disk.crash(seed);
        drop(wal);
        // A declared cut's later files and bytes are the truncation's, not an unfinished
        // write: AbsoluteConsistency finishes the cut as the default mode does.
        let strict = Options::new()
            .backend(Backend::Simulated(strict))
            .segment_bytes(1 << 20)
            .recovery_mode(RecoveryMode::AbsoluteConsistency);
        let strict = Wal::open("/sim", strict)
            .unwrap_or_else(|e| panic!("AbsoluteConsistency, seed {seed} step {step}: {e}"));
        let strict_last = strict.last_lsn();
        drop(strict);
        let reopened = Options::new()
            .backend(Backend::Simulated(crashed))
            .segment_bytes(1 << 20);
        let wal =
            Wal::open("/sim", reopened).unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
        let last = wal.last_lsn();
        assert_eq!(strict_last, last, "seed {seed} step {step}");
        assert!(
            last == 15 || last == 40,
            "seed {seed} step {step}: last {last}"
        );
        outcomes[usize::from(last == 15)] += 1;
        for lsn in 1..=last {
            assert_eq!(
                wal.read(lsn).unwrap(),
                payload(lsn - 1, 60_000),
                "seed {seed} lsn {lsn}"
            );
        }
    }
    // Both outcomes happen: the test does reach both sides of the commit point of a truncation.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// Options for a log on `disk`: 1 MiB segments, no background thread.
fn sim(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .segment_bytes(1 << 20)
        .background_threads(false)
}

/// Crashes `disk` under `wal` (a crash, not a close: a close writes the control file once more,
/// into the stale copy), damages the newest control copy of what survived, and reopens it.
fn crash_and_damage_the_newest_control_copy(disk: &SimDisk, wal: Wal) -> Wal {
    let crashed = disk.crash(0);
    drop(wal);
    control_file::damage_newest_copy(&crashed);
    Wal::open("/sim", sim(&crashed)).unwrap()
}

/// Whether both control copies are whole and the older one declares a truncation in progress.
fn older_copy_declares_a_cut(disk: &SimDisk) -> bool {
    matches!(control_file::copies(disk), [Some(_), Some(older)] if older.declares_a_cut)
}

/// Regression: the control copy a truncation ends with was written once, so the other copy
/// still declared the cut. With the newest copy damaged, recovery took that one and cut again,
/// dropping records committed after the truncation.
#[test]
fn a_damaged_newest_control_copy_does_not_redo_a_finished_cut() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    for i in 0..20u64 {
        wal.append(&payload(i, 100)).unwrap();
    }
    wal.sync().unwrap();
    wal.truncate_after(10).unwrap();
    for i in 0..5u64 {
        assert_eq!(wal.append_durable(&payload(100 + i, 100)).unwrap(), 11 + i);
    }
    let wal = crash_and_damage_the_newest_control_copy(&disk, wal);
    assert_eq!(wal.last_lsn(), 15);
    for i in 0..5u64 {
        assert_eq!(wal.read(11 + i).unwrap(), payload(100 + i, 100));
    }
}

/// A crash between the two writes that end a truncation leaves the older copy declaring the
/// cut: the next open writes the state again over it, so that the same damage later cannot redo
/// the cut either.
#[test]
fn a_crash_between_the_two_control_copies_is_mended_by_the_next_open() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    for i in 0..20u64 {
        wal.append(&payload(i, 100)).unwrap();
    }
    wal.sync().unwrap();
    // The watermark written up to date: after the cut, recovery finds nothing else to write.
    wal.maintain().unwrap();
    // Syncs of a truncation within one segment: control, cut segment, control, other copy.
    disk.fail_sync_after(3, libc::EIO);
    assert!(wal.truncate_after(10).is_err());
    // A crash that loses the whole unsynced second copy (each of its sectors may be lost).
    let crashed = (0..5000)
        .map(|seed| disk.crash(seed))
        .find(older_copy_declares_a_cut)
        .expect("a crash that keeps the older copy's cut");
    drop(wal);
    let wal = Wal::open("/sim", sim(&crashed)).unwrap();
    assert_eq!(wal.last_lsn(), 10);
    for i in 0..5u64 {
        assert_eq!(wal.append_durable(&payload(100 + i, 100)).unwrap(), 11 + i);
    }
    let wal = crash_and_damage_the_newest_control_copy(&crashed, wal);
    assert_eq!(wal.last_lsn(), 15);
    for i in 0..5u64 {
        assert_eq!(wal.read(11 + i).unwrap(), payload(100 + i, 100));
    }
}

/// The same for a reset to a snapshot: the older copy declared the reset in progress, and
/// recovery would remove every segment written since.
#[test]
fn a_damaged_newest_control_copy_does_not_redo_a_finished_reset() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    wal.append_durable(b"old").unwrap();
    wal.reset_to_snapshot(100, 3, b"state at 100").unwrap();
    for i in 0..5u64 {
        assert_eq!(wal.append_durable(&payload(i, 100)).unwrap(), 101 + i);
    }
    let wal = crash_and_damage_the_newest_control_copy(&disk, wal);
    assert_eq!((wal.first_lsn(), wal.last_lsn()), (101, 105));
    for i in 0..5u64 {
        assert_eq!(wal.read(101 + i).unwrap(), payload(i, 100));
    }
}

/// Regression: truncating into a stretch skipped by `SkipCorrupted` declared the cut in the
/// control file, then failed to find it and poisoned the log.
#[test]
fn truncating_into_a_skipped_stretch_is_refused_without_poisoning() {
    let disk = SimDisk::new();
    let options = |mode| {
        Options::new()
            .backend(Backend::Simulated(disk.clone()))
            .segment_bytes(1 << 20)
            .background_threads(false)
            .recovery_mode(mode)
    };
    let wal = Wal::open("/sim", options(rwal_wal::RecoveryMode::TolerateTornTail)).unwrap();
    for i in 0..12u64 {
        wal.append(&payload(i, 200 << 10)).unwrap();
    }
    wal.close().unwrap();
    let stored = ((32 + (200 << 10)) as u64).div_ceil(8) * 8;
    disk.flip_bit("00000000000000000001.seg", 4096 + stored + 1000, 0);
    let wal = Wal::open("/sim", options(rwal_wal::RecoveryMode::SkipCorrupted)).unwrap();
    match wal.truncate_after(2) {
        Err(Error::InvalidArgument { name: "lsn", .. }) => {}
        other => panic!("{other:?}"),
    }
    // Not poisoned: the log goes on.
    wal.truncate_after(8).unwrap();
    assert_eq!(wal.append_durable(b"nine").unwrap(), 9);
}

#[test]
fn truncation_falls_back_to_the_epoch_of_the_last_kept_record() {
    for t in targets("truncate-epoch") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        wal.append_with(rwal_wal::RecordKind::User, 1, &[b"one", b"two"])
            .unwrap();
        wal.append_with(rwal_wal::RecordKind::User, 3, &[b"three"])
            .unwrap();
        wal.append_with(rwal_wal::RecordKind::User, 5, &[b"four"])
            .unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.epoch(), 5);
        assert_eq!(
            (wal.epoch_at(0).unwrap(), wal.epoch_at(2).unwrap()),
            (0, 1),
            "{}",
            t.name
        );
        assert_eq!(wal.epoch_at(3).unwrap(), 3);
        assert!(matches!(wal.epoch_at(9), Err(Error::NotFound { .. })));

        // A consensus layer replaces a divergent suffix written in a later term with entries of
        // an earlier one: after the cut the epoch is record 2's, and term 2 may be appended.
        wal.truncate_after(2).unwrap();
        assert_eq!(wal.epoch(), 1, "{}", t.name);
        wal.append_with(rwal_wal::RecordKind::User, 2, &[b"three again"])
            .unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.epoch_at(3).unwrap(), 2, "{}", t.name);
        wal.close().unwrap();

        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.epoch(), 2, "{}", t.name);
        assert_eq!(wal.read(3).unwrap(), b"three again");
    }
}

/// A truncation whose removals of the later segments were never made durable (their directory
/// sync failed, which poisons, as a process that died before it would leave them), finished by
/// the reopen the application does next: records committed after it, and then a power cut,
/// must neither bring the removed segments back (a log that no longer opens, or old records
/// after the new ones) nor lose the new records. Recovery syncs the directory before it
/// declares the cut finished; before it did (found by an audit on 2026-12-02), the segments
/// came back and the log refused to open.
#[test]
fn a_cut_finished_by_a_reopen_survives_a_power_cut_after_it() {
    for seed in 0..32u64 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        // Seventeen records a segment: three segments.
        for i in 0..40u64 {
            wal.append(&payload(i, 60_000)).unwrap();
        }
        wal.sync().unwrap();
        disk.fail_next_dir_sync(libc::EIO);
        let cut = wal.truncate_after(15);
        assert!(matches!(cut, Err(Error::Poisoned { .. })), "{cut:?}");
        drop(wal);
        assert!(
            disk.unsynced_directory_operations() >= 2,
            "the removals are undoable"
        );
        // No power cut: the application reopens the poisoned log on the same disk.
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        assert_eq!(wal.last_lsn(), 15);
        // Small enough to stay in the cut segment: a roll would sync the directory itself.
        let new: Vec<Vec<u8>> = (0..3).map(|i| payload(1000 + seed * 3 + i, 1000)).collect();
        for record in &new {
            let lsn = wal.append(record).unwrap();
            wal.commit(lsn).unwrap();
        }
        let crashed = disk.crash(seed);
        drop(wal);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(wal.last_lsn(), 18, "seed {seed}");
        for lsn in 1..=15 {
            assert_eq!(
                wal.read(lsn).unwrap(),
                payload(lsn - 1, 60_000),
                "seed {seed}"
            );
        }
        for (lsn, record) in (16..).zip(&new) {
            assert_eq!(wal.read(lsn).unwrap(), *record, "seed {seed} lsn {lsn}");
        }
    }
}
