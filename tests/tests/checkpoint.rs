//! Checkpoints, snapshots, pins, compaction and the reset to a snapshot, on every backend, and
//! a crash after each step of each protocol on the simulated disk.

use std::io::Read;

use rwal_tests::{control_file, payload, segment_names, targets};
use rwal_wal::{Backend, Error, Options, RecoveryEvent, RecoveryMode, SimDisk, Wal};

const RECORD: usize = 200 << 10; // five records a 1 MiB segment

fn fill(wal: &Wal, count: u64) {
    for i in 0..count {
        wal.append(&payload(i, RECORD)).unwrap();
    }
    wal.sync().unwrap();
}

fn read_snapshot(wal: &Wal) -> Option<Vec<u8>> {
    let mut reader = wal.open_snapshot().unwrap()?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    Some(bytes)
}

#[test]
fn checkpoints_are_durable_and_checked() {
    for t in targets("checkpoint") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.latest_checkpoint(), None);
        assert!(wal.open_snapshot().unwrap().is_none());
        fill(&wal, 10);
        wal.append(b"not durable").unwrap();
        match wal.checkpoint(11, Some(b"state")) {
            Err(Error::InvalidArgument {
                name: "lsn",
                reason,
            }) => assert!(reason.contains("durable"), "{reason}"),
            other => panic!("{}: {other:?}", t.name),
        }
        wal.checkpoint(5, Some(b"state at 5")).unwrap();
        assert!(matches!(
            wal.checkpoint(4, None),
            Err(Error::InvalidArgument { name: "lsn", .. })
        ));
        let latest = wal.latest_checkpoint().unwrap();
        assert_eq!(
            (latest.lsn, latest.snapshot_bytes),
            (5, Some(10)),
            "{}",
            t.name
        );
        assert_eq!(read_snapshot(&wal).unwrap(), b"state at 5");
        wal.checkpoint(8, None).unwrap();
        assert_eq!(wal.latest_checkpoint().unwrap().snapshot_bytes, None);
        assert!(wal.open_snapshot().unwrap().is_none());
        wal.checkpoint(9, Some(b"nine")).unwrap();
        drop(wal);
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.latest_checkpoint().unwrap().lsn, 9, "{}", t.name);
        assert_eq!(read_snapshot(&wal).unwrap(), b"nine");
        // Truncating below the checkpoint would contradict it.
        assert!(matches!(
            wal.truncate_after(8),
            Err(Error::InvalidArgument { name: "lsn", .. })
        ));
        wal.truncate_after(10).unwrap();
    }
}

#[test]
fn compaction_removes_what_the_checkpoint_covers_and_reads_say_so() {
    for t in targets("compact") {
        let wal = Wal::open(&t.dir, t.options().background_threads(false)).unwrap();
        fill(&wal, 30);
        let before = wal.segment_count();
        assert_eq!(
            wal.compact_now().unwrap().segments_removed,
            0,
            "no checkpoint, nothing goes"
        );
        wal.checkpoint(17, Some(b"s17")).unwrap();
        let report = wal.compact_now().unwrap();
        assert_eq!(report.segments_removed, 3, "{}: {report:?}", t.name);
        assert_eq!(wal.segment_count(), before - 3);
        assert_eq!(wal.first_lsn(), 16, "segments of records 1..=15 are gone");
        assert!(matches!(
            wal.read(3),
            Err(Error::Compacted {
                lsn: 3,
                first_retained: 16
            })
        ));
        assert!(matches!(wal.reader(10), Err(Error::Compacted { .. })));
        assert_eq!(wal.read(16).unwrap(), payload(15, RECORD));
        drop(wal);
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.first_lsn(), 16, "{}", t.name);
        let mut reader = wal.reader(16).unwrap();
        let mut lsn = 16;
        while let Some(record) = reader.next().unwrap() {
            assert_eq!(record.data, &payload(lsn - 1, RECORD)[..]);
            lsn += 1;
        }
        assert_eq!(lsn, 31);
    }
}

/// Compaction keeps the epoch of the record before the new first LSN. The last segment it
/// removes may hold no record: a truncation left a segment of the old, smaller size empty, and
/// the next record did not fit in it, so it was sealed empty. The epoch must then come from the
/// record in an earlier segment (before 2026-11-30 it came from the log's first epoch).
#[test]
fn compaction_past_an_empty_segment_keeps_the_epoch_of_the_record_before() {
    const BIG: usize = 1200 << 10; // fits a 2 MiB segment, not a 1 MiB one
    for t in targets("compact-empty") {
        let wal = Wal::open(&t.dir, t.options().background_threads(false)).unwrap();
        wal.set_epoch(3).unwrap();
        fill(&wal, 10); // records 1..=5 in the first 1 MiB segment, 6..=10 in the second
        drop(wal);
        let larger = t.options().segment_bytes(2 << 20).background_threads(false);
        let wal = Wal::open(&t.dir, larger.clone()).unwrap();
        let segments = wal.segment_count();
        wal.truncate_after(5).unwrap();
        wal.set_epoch(5).unwrap();
        let lsn = wal.append_durable(&payload(7, BIG)).unwrap();
        assert_eq!(lsn, 6);
        assert_eq!(
            wal.segment_count(),
            segments + 1,
            "{}: the record did not fit in the emptied segment",
            t.name
        );
        wal.checkpoint(6, Some(b"s6")).unwrap();
        let report = wal.compact_now().unwrap();
        assert_eq!(report.segments_removed, 2, "{}: {report:?}", t.name);
        assert_eq!(wal.first_lsn(), 6);
        assert_eq!(wal.epoch_at(5).unwrap(), 3, "{}", t.name);
        assert_eq!(wal.epoch_at(6).unwrap(), 5);
        drop(wal);
        let wal = Wal::open(&t.dir, larger).unwrap();
        assert_eq!(wal.epoch_at(5).unwrap(), 3, "{} reopened", t.name);
        assert_eq!(wal.read(6).unwrap(), payload(7, BIG));
    }
}

#[test]
fn readers_and_pins_hold_compaction_and_capped_pins_are_released() {
    let disk = SimDisk::new();
    let options = Options::new()
        .backend(Backend::Simulated(disk))
        .segment_bytes(1 << 20)
        .background_threads(false);
    let wal = Wal::open("/sim", options).unwrap();
    fill(&wal, 30);
    wal.checkpoint(25, None).unwrap();
    let mut reader = wal.reader(3).unwrap();
    reader.next().unwrap().unwrap();
    let report = wal.compact_now().unwrap();
    assert_eq!(report.segments_removed, 0);
    let (holder, lsn, held) = report.held_back_by.unwrap();
    assert!(
        holder.starts_with("reader") && lsn == 3 && held > 0,
        "{holder} {lsn} {held}"
    );
    drop(reader);

    let pin = wal.pin("follower-2", 12).unwrap();
    assert_eq!(wal.pins().len(), 1);
    let report = wal.compact_now().unwrap();
    assert_eq!(
        (report.segments_removed, wal.first_lsn()),
        (2, 11),
        "{report:?}"
    );
    pin.move_to(21).unwrap();
    assert_eq!(wal.compact_now().unwrap().segments_removed, 2);
    assert!(matches!(pin.move_to(3), Err(Error::Compacted { .. })));
    pin.release();
    assert!(wal.pins().is_empty());

    // A capped pin holding back more than its cap is released, and its holder is told.
    fill(&wal, 30);
    wal.checkpoint(55, None).unwrap();
    let capped = wal.pin_with_cap("slow-replica", 30, 2 << 20).unwrap();
    let report = wal.compact_now().unwrap();
    assert_eq!(
        report.pins_invalidated,
        vec!["slow-replica".to_string()],
        "{report:?}"
    );
    assert!(report.segments_removed > 2);
    assert!(capped.is_invalidated());
    assert!(matches!(
        capped.move_to(56),
        Err(Error::PinInvalidated { .. })
    ));

    // A capped pin just below another pin keeps at most a segment alone: the other holds the
    // rest. It is not released (it used to be, for bytes the other pin kept anyway).
    fill(&wal, 30);
    wal.checkpoint(85, None).unwrap();
    let capped = wal.pin_with_cap("slow-replica", 60, 2 << 20).unwrap();
    let other = wal.pin("reader-of-the-engine", 61).unwrap();
    let report = wal.compact_now().unwrap();
    assert!(report.pins_invalidated.is_empty(), "{report:?}");
    assert!(!capped.is_invalidated());
    let (holder, lsn, held) = report.held_back_by.clone().unwrap();
    assert_eq!((holder.as_str(), lsn), ("slow-replica", 60), "{report:?}");
    // The report gives all it kept back, from its LSN up to the checkpoint.
    assert!(held > 2 << 20, "{report:?}");
    capped.move_to(62).unwrap();
    drop(other);

    // Two capped pins at one LSN (two followers that went down together): each alone keeps
    // nothing the other does not, but both together hold back more than their caps. Both
    // are released (charged only up to each other, both were kept forever).
    let twin = wal.pin_with_cap("slow-replica-twin", 62, 2 << 20).unwrap();
    let report = wal.compact_now().unwrap();
    let mut released = report.pins_invalidated.clone();
    released.sort();
    assert_eq!(
        released,
        ["slow-replica", "slow-replica-twin"],
        "{report:?}"
    );
    assert!(capped.is_invalidated() && twin.is_invalidated());
    assert_eq!(report.held_back_by, None, "{report:?}");
    assert!(wal.first_lsn() > 62, "{report:?}");

    // A capped pin above an uncapped one keeps nothing the other does not: releasing it would
    // free nothing, and it stays.
    fill(&wal, 30);
    wal.checkpoint(115, None).unwrap();
    let engine = wal.pin("engine-reader", 90).unwrap();
    let follower = wal.pin_with_cap("follower-3", 95, 1).unwrap();
    let report = wal.compact_now().unwrap();
    assert!(report.pins_invalidated.is_empty(), "{report:?}");
    assert!(!follower.is_invalidated());
    let (holder, lsn, _) = report.held_back_by.clone().unwrap();
    assert_eq!((holder.as_str(), lsn), ("engine-reader", 90), "{report:?}");
    drop((engine, follower));

    // The same above a capped pin that stays within its cap: the lower one keeps all the
    // higher one would free, which stays (until 2026-12-07 it was released, for nothing).
    fill(&wal, 30);
    wal.checkpoint(145, None).unwrap();
    let generous = wal.pin_with_cap("backup", 120, 1 << 30).unwrap();
    let follower = wal.pin_with_cap("follower-4", 125, 1).unwrap();
    let report = wal.compact_now().unwrap();
    assert!(report.pins_invalidated.is_empty(), "{report:?}");
    assert!(!follower.is_invalidated() && !generous.is_invalidated());
    let (holder, lsn, _) = report.held_back_by.clone().unwrap();
    assert_eq!((holder.as_str(), lsn), ("backup", 120), "{report:?}");
    // Once the lower one lets go, the higher one alone is over its cap: released.
    drop(generous);
    let report = wal.compact_now().unwrap();
    assert_eq!(report.pins_invalidated, ["follower-4"], "{report:?}");
    assert!(follower.is_invalidated());
}

#[test]
fn a_large_snapshot_is_streamed_in_and_out() {
    let temp = rwal_tests::TempDir::new("big-snapshot");
    let wal = Wal::open(temp.join("log"), Options::new().segment_bytes(1 << 20)).unwrap();
    wal.append_durable(b"x").unwrap();
    let len: u64 = 256 << 20;
    // A source that makes its bytes as they are read: the snapshot is never in memory whole.
    let mut source = std::io::repeat(0x5a).take(len);
    wal.checkpoint_from(1, len, &mut source).unwrap();
    assert_eq!(wal.latest_checkpoint().unwrap().snapshot_bytes, Some(len));
    let mut reader = wal.open_snapshot().unwrap().unwrap();
    assert_eq!(reader.len(), len);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 0x5a));
        total += n as u64;
    }
    assert_eq!(total, len);
}

/// A checkpoint writer that outlives its log writes and finishes nothing: the directory may
/// belong to another process by then, whose recovery removes the writer's file (writes went
/// on into the removed file until 2026-12-08, found by review). The log opened again has no
/// checkpoint, and its own works.
#[test]
fn a_checkpoint_writer_finished_after_close_is_refused_and_changes_nothing() {
    let temp = rwal_tests::TempDir::new("late-checkpoint");
    let options = Options::new().segment_bytes(1 << 20);
    let wal = Wal::open(temp.join("log"), options.clone()).unwrap();
    let lsn = wal.append_durable(b"x").unwrap();
    let mut writer = wal.checkpoint_writer(lsn, 8).unwrap();
    writer.write(b"late").unwrap();
    wal.close().unwrap();
    assert!(matches!(writer.write(b"late"), Err(Error::Closed)));
    assert!(matches!(writer.finish(), Err(Error::Closed)));

    let wal = Wal::open(temp.join("log"), options).unwrap();
    assert!(wal.latest_checkpoint().is_none());
    wal.compact_now().unwrap();
    wal.checkpoint(lsn, Some(b"on time")).unwrap();
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"on time"[..]));
}

/// While a checkpoint's snapshot is written, the log stays as the snapshot describes it: a
/// truncation below the checkpoint and a reset are refused, naming the checkpoint. Abandoned,
/// the checkpoint holds nothing back.
#[test]
fn a_checkpoint_being_written_holds_the_log_it_describes() {
    let temp = rwal_tests::TempDir::new("checkpoint-holds");
    let wal = Wal::open(temp.join("log"), Options::new().segment_bytes(1 << 20)).unwrap();
    for i in 0..10u8 {
        wal.append(&[i; 100]).unwrap();
    }
    wal.sync().unwrap();
    let mut writer = wal.checkpoint_writer(8, 4).unwrap();
    writer.write(b"st").unwrap();
    // Listed as a checkpoint, not as a reader.
    let pins = wal.pins();
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert!(pins[0].name.starts_with("checkpoint #"), "{pins:?}");
    assert!(!pins[0].reader, "{pins:?}");
    match wal.truncate_after(5) {
        Err(Error::Pinned {
            holder, pinned_lsn, ..
        }) => {
            assert!(holder.starts_with("checkpoint"), "{holder}");
            assert_eq!(pinned_lsn, 8);
        }
        other => panic!("expected Pinned, got {other:?}"),
    }
    assert!(matches!(
        wal.reset_to_snapshot(20, 1, b"other"),
        Err(Error::Pinned { .. })
    ));
    // Cutting above the checkpoint keeps what it describes: allowed.
    wal.truncate_after(9).unwrap();
    writer.write(b"te").unwrap();
    writer.finish().unwrap();
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, 8);
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"stte"[..]));

    // An abandoned checkpoint holds nothing back.
    let abandoned = wal.checkpoint_writer(9, 10).unwrap();
    drop(abandoned);
    wal.truncate_after(8).unwrap();
    assert_eq!(wal.last_lsn(), 8);
}

/// Two checkpoints at one LSN written at once (a replica's node thread and its engine's caller
/// may both take one) do not share a temporary file: each finishes with the bytes it wrote, and
/// the log reopens with the last one.
#[test]
fn two_checkpoints_at_one_lsn_written_at_once_each_keep_their_bytes() {
    let temp = rwal_tests::TempDir::new("checkpoints-at-once");
    let options = Options::new().segment_bytes(1 << 20);
    let wal = Wal::open(temp.join("log"), options.clone()).unwrap();
    let lsn = wal.append_durable(b"x").unwrap();
    let mut first = wal.checkpoint_writer(lsn, 6).unwrap();
    first.write(b"fir").unwrap();
    let mut second = wal.checkpoint_writer(lsn, 6).unwrap();
    second.write(b"sec").unwrap();
    first.write(b"st!").unwrap();
    first.finish().unwrap();
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"first!"[..]));
    second.write(b"ond").unwrap();
    second.finish().unwrap();
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"second"[..]));
    wal.close().unwrap();

    let wal = Wal::open(temp.join("log"), options).unwrap();
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, lsn);
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"second"[..]));
}

/// A reset writes its snapshot before it stops the log: appends, commits and reads go on while
/// the snapshot is written (they waited for the whole write with every lock held, until
/// 2026-12-03), and a pin taken meanwhile refuses the reset, whose snapshot is then removed.
#[test]
fn a_reset_lets_the_log_work_while_its_snapshot_is_written() {
    use std::sync::mpsc;
    use std::time::Duration;
    let disk = SimDisk::new();
    let wal = std::sync::Arc::new(Wal::open("/sim", sim(&disk)).unwrap());
    fill(&wal, 12);
    for pin_meanwhile in [true, false] {
        let hold = disk.hold_first_write_of("snapshot-");
        let resetting = {
            let wal = wal.clone();
            std::thread::spawn(move || wal.reset_to_snapshot(1000, 3, b"leader state"))
        };
        assert!(
            hold.wait_reached(Duration::from_secs(10)),
            "no snapshot write"
        );
        // On another thread, so that a log stopped by the reset fails the test instead of
        // hanging it.
        let (done, answer) = mpsc::channel();
        {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let appended = wal.append_durable(b"beside the reset");
                let read = appended.as_ref().ok().map(|&lsn| wal.read(lsn));
                let pin = pin_meanwhile.then(|| wal.pin("late-follower", wal.first_lsn()));
                let _ = done.send((appended, read, pin));
            });
        }
        let (appended, read, pin) = answer
            .recv_timeout(Duration::from_secs(10))
            .expect("the log stood still while the reset wrote its snapshot");
        let lsn = appended.unwrap();
        assert_eq!(read.unwrap().unwrap(), b"beside the reset");
        hold.release();
        let outcome = resetting.join().unwrap();
        if pin_meanwhile {
            assert!(matches!(outcome, Err(Error::Pinned { .. })), "{outcome:?}");
            // The log as it was, and no snapshot left that nothing names.
            assert_eq!(wal.last_lsn(), lsn);
            assert!(
                !disk.file_names().iter().any(|n| n.starts_with("snapshot-")),
                "{:?}",
                disk.file_names()
            );
            drop(pin);
        } else {
            outcome.unwrap();
            assert_eq!((wal.first_lsn(), wal.last_lsn()), (1001, 1000));
            assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"leader state"[..]));
        }
    }
}

/// A reset below the latest checkpoint removes that checkpoint's snapshot at once: nothing
/// names it any more (it used to stay until the next open).
#[test]
fn a_reset_below_the_latest_checkpoint_removes_its_snapshot() {
    let temp = rwal_tests::TempDir::new("reset-below-checkpoint");
    let dir = temp.join("log");
    let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20)).unwrap();
    fill(&wal, 12);
    wal.checkpoint(10, Some(b"state at 10")).unwrap();
    let snapshots = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("snapshot-"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(snapshots(), ["snapshot-00000000000000000010.snap"]);
    wal.reset_to_snapshot(5, 1, b"state at 5").unwrap();
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, 5);
    assert_eq!(snapshots(), ["snapshot-00000000000000000005.snap"]);
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"state at 5"[..]));
}

#[test]
fn reset_to_a_snapshot_replaces_the_log() {
    for t in targets("reset") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        fill(&wal, 12);
        let reader = wal.reader(1).unwrap();
        assert!(matches!(
            wal.reset_to_snapshot(1000, 5, b"leader state"),
            Err(Error::Pinned { .. })
        ));
        drop(reader);
        wal.reset_to_snapshot(1000, 5, b"leader state").unwrap();
        assert_eq!(
            (wal.first_lsn(), wal.last_lsn(), wal.durable_lsn()),
            (1001, 1000, 1000),
            "{}",
            t.name
        );
        assert_eq!(wal.latest_checkpoint().unwrap().epoch, 5);
        assert!(matches!(wal.read(12), Err(Error::Compacted { .. })));
        assert_eq!(wal.append_durable(b"after").unwrap(), 1001);
        drop(wal);
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(
            (wal.first_lsn(), wal.last_lsn()),
            (1001, 1001),
            "{}",
            t.name
        );
        assert_eq!(wal.read(1001).unwrap(), b"after");
        assert_eq!(read_snapshot(&wal).unwrap(), b"leader state");
        assert_eq!(wal.segment_count(), 1);
    }
}

fn sim(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .segment_bytes(1 << 20)
        .background_threads(false)
}

/// A crash after each sync of a checkpoint (snapshot file, directory, control file, removal of
/// the older snapshot): the log opens with the old or the new checkpoint, its snapshot whole,
/// and every committed record.
#[test]
fn a_crash_after_any_step_of_a_checkpoint_keeps_a_durable_one() {
    let mut seen = [false; 2];
    for step in 0..6u64 {
        for seed in 0..8 {
            let disk = SimDisk::new();
            let wal = Wal::open("/sim", sim(&disk)).unwrap();
            fill(&wal, 12);
            wal.checkpoint(4, Some(b"old")).unwrap();
            disk.fail_sync_after(step, libc::EIO);
            let made = wal.checkpoint(9, Some(b"new"));
            let crashed = disk.crash(seed);
            drop(wal);
            let wal = Wal::open("/sim", sim(&crashed))
                .unwrap_or_else(|e| panic!("step {step} seed {seed}: {e}"));
            let latest = wal.latest_checkpoint().unwrap();
            let expected: &[u8] = if latest.lsn == 9 { b"new" } else { b"old" };
            assert!(latest.lsn == 4 || latest.lsn == 9, "step {step}");
            // A checkpoint reported made survives the crash.
            if made.is_ok() {
                assert_eq!(latest.lsn, 9, "step {step} seed {seed}: made, then lost");
            }
            seen[usize::from(latest.lsn == 9)] = true;
            assert_eq!(
                read_snapshot(&wal).unwrap(),
                expected,
                "step {step} seed {seed}"
            );
            assert_eq!(wal.last_lsn(), 12);
            for lsn in wal.first_lsn()..=12 {
                assert_eq!(wal.read(lsn).unwrap(), payload(lsn - 1, RECORD));
            }
        }
    }
    assert!(
        seen[0] && seen[1],
        "both sides of the commit point were reached"
    );
}

/// A crash after each sync of a compaction (the control file's, the directory's after each
/// recycled segment's rename, the recycled segments', the directory's, and past the last one): the log opens with its checkpoint and every committed
/// record after it, its first LSN where the compaction left it or where it was, never between,
/// and the compaction done whenever `compact_now` returned `Ok`.
#[test]
fn a_crash_after_any_step_of_a_compaction_keeps_every_record_after_the_checkpoint() {
    // Five records a segment and the checkpoint at 17: compaction removes the segments of
    // 1-5, 6-10 and 11-15, and the log starts at 16, or it is not done and starts at 1.
    const UNCOMPACTED: u64 = 1;
    const COMPACTED: u64 = 16;
    // Whether a reopened log started at 1 and at 16: a crash on each side of the control
    // file's update was reached.
    let mut seen = [false; 2];
    // Whether a compaction failed (the injected failure landed in it), and whether one ran to
    // its end untouched (the steps cover the whole protocol).
    let (mut failed, mut untouched) = (false, false);
    for step in 0..12u64 {
        for seed in 0..8 {
            let disk = SimDisk::new();
            let wal = Wal::open("/sim", sim(&disk)).unwrap();
            fill(&wal, 30);
            wal.checkpoint(17, Some(b"s")).unwrap();
            disk.fail_sync_after(step, libc::EIO);
            // Each failed sync poisons the log, except one that only leaves a compacted
            // segment's file behind (its recycling failed): the compaction is done all the same.
            let compacted = match wal.compact_now() {
                Ok(report) => {
                    assert_eq!(
                        (report.segments_removed, report.first_lsn),
                        (3, COMPACTED),
                        "step {step}: {report:?}"
                    );
                    untouched |= report.files_left_behind.is_empty();
                    true
                }
                Err(e) => {
                    assert!(
                        matches!(&e, Error::Poisoned { cause } if matches!(**cause, Error::Io { .. })),
                        "step {step}: {e:?}"
                    );
                    failed = true;
                    false
                }
            };
            // The same crash three times: for the strictest recovery mode, for the default, and
            // for SkipCorrupted, which must not take compaction's leftovers for damage.
            let strict = disk.crash(seed);
            let crashed = disk.crash(seed);
            let skipping = disk.crash(seed);
            drop(wal);
            let skipped = Wal::open(
                "/sim",
                sim(&skipping).recovery_mode(RecoveryMode::SkipCorrupted),
            )
            .unwrap_or_else(|e| panic!("SkipCorrupted, step {step} seed {seed}: {e}"));
            assert_eq!(skipped.last_lsn(), 30);
            let events = &skipped.recovery_report().events;
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, RecoveryEvent::SegmentSetAside { .. })),
                "SkipCorrupted, step {step} seed {seed}: {events:?}"
            );
            drop(skipped);
            assert!(
                !skipping.file_names().iter().any(|n| n.contains("damaged")),
                "step {step} seed {seed}: {:?}",
                skipping.file_names()
            );
            // Files wholly below the first LSN left by a crash after the control file moved
            // are compaction's, not an unfinished write: even AbsoluteConsistency opens.
            let strict = Wal::open(
                "/sim",
                sim(&strict).recovery_mode(RecoveryMode::AbsoluteConsistency),
            )
            .unwrap_or_else(|e| panic!("AbsoluteConsistency, step {step} seed {seed}: {e}"));
            assert_eq!(strict.last_lsn(), 30);
            drop(strict);
            let wal = Wal::open("/sim", sim(&crashed))
                .unwrap_or_else(|e| panic!("step {step} seed {seed}: {e}"));
            assert_eq!(wal.latest_checkpoint().unwrap().lsn, 17);
            let first = wal.first_lsn();
            // A compaction that returned `Ok` is durable; one that failed may or may not be.
            assert!(
                first == COMPACTED || (first == UNCOMPACTED && !compacted),
                "step {step} seed {seed}: first {first}, compact_now Ok: {compacted}"
            );
            seen[usize::from(first == COMPACTED)] = true;
            assert_eq!(wal.last_lsn(), 30);
            for lsn in first..=30 {
                assert_eq!(
                    wal.read(lsn).unwrap(),
                    payload(lsn - 1, RECORD),
                    "step {step} seed {seed} lsn {lsn}"
                );
            }
        }
    }
    assert!(
        seen[0] && seen[1],
        "both sides of the commit point were reached: {seen:?}"
    );
    assert!(
        failed && untouched,
        "the failure landed in a compaction ({failed}) and past its last sync ({untouched})"
    );
}

/// A crash between the two control writes of a checkpoint keeps the older copy naming the
/// checkpoint before, whose snapshot recovery removes: the next open writes the state again
/// over that copy, so that damage to the newest copy later falls back to one naming the
/// snapshot that is there. Until 2026-12-05 an idle log kept the stale copy until its next
/// control write, and such damage then made the log refuse to open (found by review).
#[test]
fn a_crash_between_the_two_control_copies_of_a_checkpoint_is_mended_by_the_next_open() {
    let mut mended = 0;
    for step in 0..6u64 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        fill(&wal, 20);
        wal.checkpoint(5, Some(b"at five")).unwrap();
        // The watermark written up to date: the open after the crash has nothing else to
        // write.
        wal.maintain().unwrap();
        disk.fail_sync_after(step, libc::EIO);
        let _ = wal.checkpoint(15, Some(b"at fifteen"));
        // A crash that keeps the new checkpoint in one copy and the old in the other.
        let stale = |crashed: &SimDisk| {
            matches!(
                control_file::copies(crashed),
                [Some(newest), Some(older)]
                    if newest.checkpoint_lsn == 15 && older.checkpoint_lsn == 5
            )
        };
        let Some(crashed) = (0..200).map(|seed| disk.crash(seed)).find(stale) else {
            continue;
        };
        drop(wal);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap();
        assert_eq!(wal.latest_checkpoint().unwrap().lsn, 15, "step {step}");
        assert!(
            !crashed
                .file_names()
                .iter()
                .any(|n| n == "snapshot-00000000000000000005.snap"),
            "step {step}: the old snapshot is still there: {:?}",
            crashed.file_names()
        );
        assert!(
            !stale(&crashed),
            "step {step}: {:?}",
            control_file::copies(&crashed)
        );
        // Idle until a crash that damages the newest copy.
        let damaged = crashed.crash(0);
        drop(wal);
        control_file::damage_newest_copy(&damaged);
        let wal = Wal::open("/sim", sim(&damaged))
            .unwrap_or_else(|e| panic!("step {step}: the fallback copy refused the log: {e}"));
        assert_eq!(wal.latest_checkpoint().unwrap().lsn, 15, "step {step}");
        assert_eq!(read_snapshot(&wal).unwrap(), b"at fifteen");
        assert_eq!(wal.read(20).unwrap(), payload(19, RECORD));
        mended += 1;
    }
    assert!(mended > 0, "no step left the copies naming two checkpoints");
}

/// A crash after each sync of a reset to a snapshot (snapshot file, directory, control,
/// directory, new segment, directory, control, the control's other copy, and none more): the old
/// log or the new one, never a mix.
#[test]
fn a_crash_after_any_step_of_a_reset_leaves_the_old_log_or_the_new_one() {
    let mut seen = [false; 2];
    for step in 0..9u64 {
        for seed in 0..8 {
            let disk = SimDisk::new();
            let wal = Wal::open("/sim", sim(&disk)).unwrap();
            fill(&wal, 12);
            disk.fail_sync_after(step, libc::EIO);
            let _ = wal.reset_to_snapshot(500, 3, b"snap");
            let crashed = disk.crash(seed);
            drop(wal);
            let wal = Wal::open("/sim", sim(&crashed))
                .unwrap_or_else(|e| panic!("step {step} seed {seed}: {e}"));
            if wal.first_lsn() == 501 {
                seen[1] = true;
                assert_eq!(wal.last_lsn(), 500, "step {step}");
                assert_eq!(read_snapshot(&wal).unwrap(), b"snap");
            } else {
                seen[0] = true;
                assert_eq!(
                    (wal.first_lsn(), wal.last_lsn()),
                    (1, 12),
                    "step {step} seed {seed}"
                );
                for lsn in 1..=12 {
                    assert_eq!(wal.read(lsn).unwrap(), payload(lsn - 1, RECORD));
                }
            }
            assert_eq!(wal.append_durable(b"next").unwrap(), wal.last_lsn());
        }
    }
    assert!(seen[0] && seen[1], "both outcomes were reached");
}

fn temp_files(disk: &SimDisk) -> usize {
    disk.file_names()
        .iter()
        .filter(|n| n.ends_with(".tmp"))
        .count()
}

/// A reset whose snapshot cannot be written (a full disk, a failed sync) changes nothing: the
/// old log stays whole and writable, and a later reset works. A reset to the last possible LSN
/// is refused before anything is written.
#[test]
fn a_reset_that_cannot_write_its_snapshot_leaves_the_log_as_it_was() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 3);
    disk.set_space_limit(Some(0));
    match wal.reset_to_snapshot(1000, 5, &[7; 5000]) {
        Err(Error::NoSpace { op, .. }) => assert_eq!(op, "create snapshot"),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    disk.set_space_limit(None);
    assert_eq!(temp_files(&disk), 0, "{:?}", disk.file_names());
    disk.fail_next_sync(libc::EIO);
    assert!(matches!(
        wal.reset_to_snapshot(1000, 5, b"state"),
        Err(Error::Io { .. })
    ));
    // Nor past the largest LSN a segment header may carry (it would not be read back).
    for lsn in [u64::MAX, rwal_wal::segment::LSN_MAX] {
        assert!(matches!(
            wal.reset_to_snapshot(lsn, 5, b"state"),
            Err(Error::InvalidArgument { .. })
        ));
    }
    // Nor does a checkpoint abandoned half way leave its file behind.
    let mut abandoned = wal.checkpoint_writer(3, 10).unwrap();
    abandoned.write(b"half").unwrap();
    assert_eq!(temp_files(&disk), 1);
    drop(abandoned);
    assert_eq!(temp_files(&disk), 0, "{:?}", disk.file_names());
    assert_eq!((wal.first_lsn(), wal.last_lsn()), (1, 3));
    assert_eq!(wal.read(2).unwrap(), payload(1, RECORD));
    assert_eq!(wal.append_durable(b"more").unwrap(), 4);
    wal.reset_to_snapshot(1000, 5, b"state").unwrap();
    assert_eq!(wal.append_durable(b"after").unwrap(), 1001);
    drop(wal);
    let wal = Wal::open("/sim", sim(&disk.crash(1))).unwrap();
    assert_eq!((wal.first_lsn(), wal.last_lsn()), (1001, 1001));
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"state"[..]));
}

/// Appending for many segments with periodic checkpoints keeps the number of segment files
/// bounded.
#[test]
fn disk_usage_stays_bounded_with_periodic_checkpoints() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    let mut most = 0;
    for round in 0..40u64 {
        fill(&wal, 10); // two segments a round
        wal.checkpoint(wal.durable_lsn(), Some(&round.to_le_bytes()))
            .unwrap();
        wal.maintain().unwrap(); // prepares, writes the watermark, compacts
        let files = disk
            .file_names()
            .iter()
            .filter(|n| n.ends_with(".seg"))
            .count();
        most = most.max(files);
    }
    assert!(
        wal.last_lsn() == 400 && wal.first_lsn() > 380,
        "first {}",
        wal.first_lsn()
    );
    // The active segment, at most one sealed one the checkpoint does not cover, one prepared.
    assert!(most <= 4, "{most} segment files at most");
}

/// Recycled segments are zeroed before reuse: after records of the same length were written
/// into them and the machine crashed, nothing of their old records comes back.
#[test]
fn recycled_segments_never_bring_back_old_records() {
    for seed in 0..20u64 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        fill(&wal, 30);
        wal.checkpoint(20, None).unwrap();
        let report = wal.compact_now().unwrap();
        assert_eq!(
            (report.segments_removed, report.segments_recycled),
            (4, 2),
            "{report:?}"
        );
        // New records of the same length land in the recycled files.
        for i in 0..15u64 {
            wal.append(&payload(1000 + i, RECORD)).unwrap();
        }
        if seed % 2 == 0 {
            wal.sync().unwrap();
        }
        let crashed = disk.crash(seed);
        drop(wal);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap();
        assert!(
            (30..=45).contains(&wal.last_lsn()),
            "seed {seed}: last {}",
            wal.last_lsn()
        );
        for lsn in wal.first_lsn()..=wal.last_lsn() {
            let expected = if lsn <= 30 {
                payload(lsn - 1, RECORD)
            } else {
                payload(1000 + lsn - 31, RECORD)
            };
            assert_eq!(wal.read(lsn).unwrap(), expected, "seed {seed} lsn {lsn}");
        }
    }
}

/// A compacted segment that cannot be recycled (its zero-fill fails to open) is left behind:
/// compaction still succeeds, the log goes on appending and committing, the next compaction
/// removes the file, and a crash before that reopens without it.
#[test]
fn a_segment_that_cannot_be_recycled_is_left_behind_and_the_log_goes_on() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 30);
    wal.checkpoint(20, None).unwrap();
    let segments = segment_names(&disk);
    let failing = format!("{}.recycled.tmp", segments[0]);
    disk.fail_next_open_of(&failing, libc::EMFILE);
    let report = wal.compact_now().unwrap();
    assert_eq!(report.segments_removed, 4, "{report:?}");
    assert!(
        report.segments_recycled >= 1
            && matches!(&report.files_left_behind[..], [one] if one.starts_with(&failing)),
        "{report:?}"
    );
    assert!(disk.file_names().contains(&failing));
    // Nothing poisoned: the log appends, commits and reads as before.
    let lsn = wal.append_durable(b"after").unwrap();
    assert_eq!(lsn, 31);
    assert_eq!(wal.read(21).unwrap(), payload(20, RECORD));
    assert_eq!(wal.read(31).unwrap(), b"after");

    // A crash now: the open removes the file left behind (under either name: its rename was
    // not made durable) and keeps every record.
    let crashed = disk.crash(1);
    let reopened = Wal::open("/sim", sim(&crashed)).unwrap();
    assert_eq!(
        (reopened.first_lsn(), reopened.last_lsn()),
        (wal.first_lsn(), 31)
    );
    assert_eq!(reopened.read(31).unwrap(), b"after");
    let names = crashed.file_names();
    assert!(
        !names.contains(&failing) && !names.contains(&segments[0]),
        "{names:?}"
    );
    drop(reopened);

    // No crash: the next compaction removes it.
    let report = wal.compact_now().unwrap();
    assert!(report.files_left_behind.is_empty(), "{report:?}");
    assert!(!disk.file_names().contains(&failing));
}

/// A compacted segment whose file cannot be removed is renamed out of the way (recovery would
/// otherwise still read it as a segment) and left behind, and the log goes on; one that can be
/// neither removed nor renamed poisons the log, and a reopen keeps every record after the
/// checkpoint.
#[test]
fn a_segment_file_that_cannot_be_removed_is_renamed_aside_or_poisons() {
    for renames_fail in [false, true] {
        let disk = SimDisk::new();
        let options = sim(&disk).recycled_segments_max(0);
        let wal = Wal::open("/sim", options.clone()).unwrap();
        fill(&wal, 30);
        wal.checkpoint(20, None).unwrap();
        let segments = segment_names(&disk);
        disk.fail_removes_of(&segments[0], libc::EIO);
        if renames_fail {
            disk.fail_renames_of(&segments[0], libc::EIO);
            match wal.compact_now() {
                Err(Error::Poisoned { cause }) => {
                    assert!(
                        matches!(&*cause, Error::Io { op: "remove", .. }),
                        "{cause:?}"
                    )
                }
                other => panic!("expected the removal's error, got {other:?}"),
            }
            assert!(matches!(wal.append(b"more"), Err(Error::Poisoned { .. })));
            drop(wal);
            disk.clear_faults();
            let wal = Wal::open("/sim", options).unwrap();
            assert_eq!(wal.last_lsn(), 30);
            for lsn in 21..=30 {
                assert_eq!(wal.read(lsn).unwrap(), payload(lsn - 1, RECORD));
            }
            assert!(!disk.file_names().contains(&segments[0]));
            continue;
        }
        let report = wal.compact_now().unwrap();
        let aside = format!("{}.removed.tmp", segments[0]);
        assert!(
            matches!(&report.files_left_behind[..], [one] if one.starts_with(&aside)),
            "{report:?}"
        );
        let names = disk.file_names();
        assert!(
            names.contains(&aside) && !names.contains(&segments[0]),
            "{names:?}"
        );
        assert_eq!(wal.append_durable(b"after").unwrap(), 31);
        let report = wal.compact_now().unwrap();
        assert!(report.files_left_behind.is_empty(), "{report:?}");
        assert!(!disk.file_names().contains(&aside));
    }
}

/// The latest checkpoint and its snapshot are read together: a reader racing checkpoints never
/// gets one checkpoint's LSN with another's snapshot (the C API's `rwal_checkpoint_latest` and
/// `rwal_snapshot_open` read them apart before, and could).
#[test]
fn the_latest_checkpoint_and_its_snapshot_are_read_together() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    for i in 0..300u64 {
        wal.append(&i.to_le_bytes()).unwrap();
    }
    wal.sync().unwrap();
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let done = AtomicBool::new(false);
    let looks = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for lsn in 1..=300u64 {
                // Every third checkpoint without a snapshot.
                let snapshot = lsn.to_le_bytes();
                let snapshot = (lsn % 3 != 0).then_some(&snapshot[..]);
                wal.checkpoint(lsn, snapshot).unwrap();
                if lsn == 150 {
                    // Half way, until the reader has looked: the two do overlap.
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while looks.load(Ordering::Acquire) == 0 {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "the reader never looked"
                        );
                        std::thread::yield_now();
                    }
                }
            }
            done.store(true, Ordering::Release);
        });
        while !done.load(Ordering::Acquire) {
            let Some((checkpoint, snapshot)) = wal.open_latest_checkpoint().unwrap() else {
                continue;
            };
            looks.fetch_add(1, Ordering::AcqRel);
            match snapshot {
                Some(mut reader) => {
                    assert_eq!(reader.lsn(), checkpoint.lsn);
                    let mut bytes = Vec::new();
                    reader.read_to_end(&mut bytes).unwrap();
                    assert_eq!(bytes, checkpoint.lsn.to_le_bytes(), "at {}", checkpoint.lsn);
                    assert_eq!(checkpoint.snapshot_bytes, Some(8));
                }
                None => {
                    assert_eq!(checkpoint.lsn % 3, 0, "at {}", checkpoint.lsn);
                    assert_eq!(checkpoint.snapshot_bytes, None);
                }
            }
        }
    });
    assert!(looks.into_inner() > 0);
    let (latest, snapshot) = wal.open_latest_checkpoint().unwrap().unwrap();
    assert_eq!(latest.lsn, 300);
    assert!(snapshot.is_none() && wal.open_snapshot().unwrap().is_none());
}

#[test]
fn a_reset_takes_the_snapshots_epoch_even_when_lower() {
    for t in targets("reset-epoch") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        // A replica that led in epoch 7 and wrote entries nobody kept...
        wal.append_with(rwal_wal::RecordKind::User, 7, &[b"stale"])
            .unwrap();
        wal.sync().unwrap();
        // ...is sent a snapshot taken in epoch 6, and goes on with the leader's epoch-6 entries.
        wal.reset_to_snapshot(40, 6, b"state at 40").unwrap();
        assert_eq!(wal.epoch(), 6, "{}", t.name);
        // The same after a reopen, with no record after the snapshot to carry it (it fell
        // to 0, and appends could then go down to a lower epoch).
        wal.close().unwrap();
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.epoch(), 6, "{}: reopened", t.name);
        assert_eq!(
            wal.append_with(rwal_wal::RecordKind::User, 6, &[b"forty-one"])
                .unwrap(),
            41
        );
        wal.sync().unwrap();
        assert_eq!(wal.epoch_at(40).unwrap(), 6);
        assert_eq!(wal.epoch_at(41).unwrap(), 6, "{}", t.name);
    }
}

/// LSN 0 is the control file's "no checkpoint": a checkpoint or a reset there was acknowledged,
/// then forgotten at the next open, its snapshot removed as a file nothing names. Both are
/// refused, and the log is left as it was.
#[test]
fn a_checkpoint_or_a_reset_at_lsn_zero_is_refused() {
    for t in targets("lsn-zero") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        wal.append(b"one").unwrap();
        wal.commit(1).unwrap();
        for error in [
            wal.checkpoint(0, Some(b"init")).unwrap_err(),
            wal.checkpoint_writer(0, 4)
                .map(|_| ())
                .expect_err("a checkpoint writer at 0"),
            wal.reset_to_snapshot(0, 1, b"init").unwrap_err(),
        ] {
            assert!(
                matches!(error, rwal_wal::Error::InvalidArgument { name: "lsn", .. }),
                "{}: {error}",
                t.name
            );
            assert!(error.to_string().contains("LSN 0"), "{error}");
        }
        assert!(wal.latest_checkpoint().is_none(), "{}", t.name);
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (1, 1), "{}", t.name);
        assert_eq!(wal.read(1).unwrap(), b"one");
    }
}

/// A reset to the latest checkpoint's LSN would write its snapshot over the one the control file
/// names, before the control file moves to the new log: refused, and the checkpoint's snapshot
/// is left as it was.
#[test]
fn a_reset_to_the_latest_checkpoints_lsn_is_refused() {
    for t in targets("reset-at-checkpoint") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        fill(&wal, 5);
        wal.checkpoint(3, Some(b"state at 3")).unwrap();
        let error = wal.reset_to_snapshot(3, 9, b"another state").unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { name: "lsn", .. }),
            "{}: {error}",
            t.name
        );
        assert!(error.to_string().contains("latest checkpoint"), "{error}");
        let checkpoint = wal.latest_checkpoint().unwrap();
        assert_eq!(checkpoint.lsn, 3);
        let mut state = Vec::new();
        let (_, reader) = wal.open_latest_checkpoint().unwrap().expect("a checkpoint");
        reader.expect("a snapshot").read_to_end(&mut state).unwrap();
        assert_eq!(state, b"state at 3", "{}", t.name);
        assert_eq!(wal.last_lsn(), 5, "{}", t.name);
        // Past it, a reset goes ahead.
        wal.reset_to_snapshot(4, 9, b"state at 4").unwrap();
        assert_eq!(wal.first_lsn(), 5, "{}", t.name);
    }
}

/// A large snapshot is written back to the disk as it is written, one step at a time, so that the
/// sync that ends the checkpoint does not hold the log's commits behind all of it
/// (`wal/src/io/writeback.rs`; a recycled segment's zero-fill too, in larger steps: the next test).
/// A write error reported by that early write-back fails the checkpoint like any other write error:
/// a wait for the write-back reports the error in place of the final sync, so ignoring it could
/// announce a snapshot with bytes the disk never took. The log keeps its previous checkpoint and
/// goes on.
#[test]
fn large_snapshots_are_written_back_as_they_are_written_and_their_errors_count() {
    const STEP: u64 = 1 << 20;
    /// Where a snapshot's body starts in its file.
    const BODY: u64 = 4096;
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 30);
    wal.checkpoint(5, Some(b"small")).unwrap();
    assert_eq!(
        disk.write_back_calls(),
        [],
        "a small snapshot is left to its sync"
    );

    // 4.5 steps of body: four steps complete, each started as soon as it is written, the one
    // before it awaited; the rest is left to the final sync.
    let body = vec![0x5a; (4 * STEP + STEP / 2) as usize];
    wal.checkpoint(10, Some(&body)).unwrap();
    let (start, wait) = (false, true);
    assert_eq!(
        disk.write_back_calls(),
        [
            (BODY, STEP, start),
            (BODY + STEP, STEP, start),
            (BODY, STEP, wait),
            (BODY + 2 * STEP, STEP, start),
            (BODY + STEP, STEP, wait),
            (BODY + 3 * STEP, STEP, start),
            (BODY + 2 * STEP, STEP, wait),
        ]
    );
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&body[..]));

    // An error reported by a wait (the third call) fails the checkpoint and leaves no file.
    let before = disk.write_back_calls().len();
    disk.fail_write_back_after(2, libc::EIO);
    match wal.checkpoint(20, Some(&body)) {
        Err(Error::Io { op, .. }) => assert_eq!(op, "write back"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let calls = disk.write_back_calls();
    assert_eq!(
        calls[before..],
        [(BODY, STEP, start), (BODY + STEP, STEP, start)]
    );
    assert_eq!(temp_files(&disk), 0, "{:?}", disk.file_names());
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, 10);
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&body[..]));
    assert_eq!(wal.append_durable(b"after").unwrap(), 31);

    // Recycled segments of 1 MiB are shorter than a zero-fill step: synced at once (the next
    // test has larger ones).
    let before = disk.write_back_calls().len();
    wal.checkpoint(20, None).unwrap();
    let report = wal.compact_now().unwrap();
    assert!(report.segments_recycled >= 1, "{report:?}");
    assert_eq!(disk.write_back_calls().len(), before, "{report:?}");

    // Reopened after a crash: the last checkpoint that succeeded, and every record.
    drop(wal);
    let wal = Wal::open("/sim", sim(&disk.crash(3))).unwrap();
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, 20);
    assert_eq!(wal.read(31).unwrap(), b"after");
}

/// A streamed snapshot whose early write-back fails cannot be finished: the failed wait took the
/// file's write-back error, so the final sync would succeed and announce a snapshot with bytes
/// the disk never took (found by review: `finish` published it). Nor does the writer take more.
#[test]
fn a_streamed_snapshot_whose_write_back_failed_cannot_be_finished() {
    const STEP: usize = 1 << 20;
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 30);
    wal.checkpoint(5, Some(b"small")).unwrap();
    let body = vec![0x5a; 3 * STEP];
    let mut writer = wal.checkpoint_writer(10, body.len() as u64).unwrap();
    // The third call, the wait for the first step, fails; the whole body is then written.
    disk.fail_write_back_after(2, libc::EIO);
    match writer.write(&body[..2 * STEP + 1]) {
        Err(Error::Io { op, .. }) => assert_eq!(op, "write back"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    for refused in [writer.write(&body[2 * STEP + 1..]), writer.finish()] {
        match refused {
            Err(Error::InvalidArgument { reason, .. }) => {
                assert!(reason.contains("earlier write"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, 5);
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"small"[..]));
    assert_eq!(temp_files(&disk), 0, "{:?}", disk.file_names());
    // A write past the announced length writes nothing: the writer goes on.
    let mut writer = wal.checkpoint_writer(10, 4).unwrap();
    assert!(matches!(
        writer.write(b"12345"),
        Err(Error::InvalidArgument { .. })
    ));
    writer.write(b"1234").unwrap();
    writer.finish().unwrap();
    assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"1234"[..]));
}

fn poisoned_by_directory_sync(result: Result<(), Error>) {
    match result {
        Err(Error::Poisoned { cause }) => assert!(
            matches!(&*cause, Error::Io { op, .. } if *op == "fsync directory"),
            "{cause:?}"
        ),
        other => panic!("expected the log poisoned, got {other:?}"),
    }
}

/// A snapshot whose directory sync fails poisons the log, as every failed sync does: the file
/// stands under its final name, but whether that name survives a crash is unknown, and a later
/// sync of the directory cannot be trusted to say (found by an audit on 2026-12-02: the error
/// was returned and the log went on). The checkpoint before it stays the latest, after a power
/// cut too, with every committed record.
#[test]
fn a_snapshot_whose_directory_sync_fails_poisons_the_log() {
    for seed in 0..8u64 {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        fill(&wal, 30);
        wal.checkpoint(5, Some(b"older")).unwrap();
        disk.fail_next_dir_sync(libc::EIO);
        poisoned_by_directory_sync(wal.checkpoint(10, Some(b"newer")));
        assert!(matches!(wal.append(b"x"), Err(Error::Poisoned { .. })));
        assert!(matches!(
            wal.checkpoint(10, Some(b"again")),
            Err(Error::Poisoned { .. })
        ));
        let crashed = disk.crash(seed);
        drop(wal);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(wal.latest_checkpoint().unwrap().lsn, 5, "seed {seed}");
        assert_eq!(read_snapshot(&wal).as_deref(), Some(&b"older"[..]));
        assert_eq!(wal.last_lsn(), 30, "seed {seed}");
        assert_eq!(wal.read(30).unwrap(), payload(29, RECORD));
    }
    // A reset's snapshot too; the control file still names the old log.
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 3);
    disk.fail_next_dir_sync(libc::EIO);
    poisoned_by_directory_sync(wal.reset_to_snapshot(1000, 5, b"state"));
    assert!(matches!(wal.append(b"x"), Err(Error::Poisoned { .. })));
    drop(wal);
    let wal = Wal::open("/sim", sim(&disk.crash(3))).unwrap();
    assert_eq!((wal.first_lsn(), wal.last_lsn()), (1, 3));
    assert_eq!(wal.read(3).unwrap(), payload(2, RECORD));
}

/// A recycled segment is zeroed and written back in steps of 8 MiB, like a new one, so that its
/// sync does not hold the log's commits behind the whole segment (`wal/src/io/writeback.rs`);
/// a failed wait fails the recycling: the file is left behind, not reused, and the next
/// compaction removes it.
#[test]
fn a_recycled_segment_is_zeroed_in_steps() {
    const STEP: u64 = 8 << 20;
    let disk = SimDisk::new();
    let options = sim(&disk).segment_bytes(2 * STEP + (1 << 20));
    let wal = Wal::open("/sim", options).unwrap();
    let record = vec![0x33u8; 1 << 20];
    // Over two segments' worth.
    for _ in 0..40 {
        wal.append(&record).unwrap();
    }
    wal.sync().unwrap();
    assert!(wal.segment_count() >= 3, "{}", wal.segment_count());
    let (start, wait) = (false, true);
    let before = disk.write_back_calls().len();
    wal.checkpoint(20, None).unwrap();
    let report = wal.compact_now().unwrap();
    assert_eq!(report.segments_recycled, 1, "{report:?}");
    assert_eq!(
        disk.write_back_calls()[before..],
        [(0, STEP, start), (STEP, STEP, start), (0, STEP, wait)],
        "{report:?}"
    );
    // A wait that fails: the segment is not recycled but left behind under its temporary
    // name, which the next compaction removes; the log goes on.
    disk.fail_write_back_after(2, libc::EIO);
    wal.checkpoint(35, None).unwrap();
    let report = wal.compact_now().unwrap();
    assert_eq!(report.segments_recycled, 0, "{report:?}");
    assert_eq!(report.segments_removed, 1, "{report:?}");
    assert_eq!(report.files_left_behind.len(), 1, "{report:?}");
    assert!(
        report.files_left_behind[0].contains("write back"),
        "{report:?}"
    );
    assert_eq!(temp_files(&disk), 1, "{:?}", disk.file_names());
    wal.compact_now().unwrap();
    assert_eq!(temp_files(&disk), 0, "{:?}", disk.file_names());
    wal.append_durable(b"after").unwrap();
    assert_eq!(wal.read(41).unwrap(), b"after");
    assert_eq!(wal.read(36).unwrap(), record);
}

/// A snapshot length that no file can have (its header included) is refused as an argument
/// before anything is written; it overflowed the file's length before (a panic in debug
/// builds, reached from C and Python with a length near 2^64).
#[test]
fn a_snapshot_longer_than_any_file_is_refused() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 3);
    for len in [u64::MAX, u64::MAX - 4095] {
        assert!(
            matches!(
                wal.checkpoint_writer(2, len),
                Err(Error::InvalidArgument { .. })
            ),
            "{len}"
        );
    }
    assert_eq!(temp_files(&disk), 0, "{:?}", disk.file_names());
    assert_eq!(wal.latest_checkpoint(), None);
    wal.checkpoint(2, Some(b"fine")).unwrap();
}

/// A truncation to the first LSN - 1, declared in a segment that starts below the first LSN and
/// finished by the next open. Such a segment is left when compaction moved the first LSN past
/// it (its removal then failed) and a power cut took the header of the segment after it: the
/// next open keeps it, and steps over its records below the first LSN. The finished cut must
/// end after those records, where the next LSN belongs, not at the segment's first record:
/// records written there would contradict the segment's header, which places LSN 1 there, and
/// read back as corrupted (found by an audit on 2026-12-02).
#[test]
fn a_cut_to_just_before_the_first_lsn_inside_an_older_segment_is_finished_in_place() {
    let mut reached = 0;
    for seed in 0..32u64 {
        let Some((crashed, names)) = crash_keeping_a_compacted_segment(seed) else {
            continue;
        };
        reached += 1;
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            segment_names(&crashed).contains(&names[0]),
            "seed {seed}: kept"
        );
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (6, 5), "seed {seed}");
        let six = wal.append(b"six, cut next").unwrap();
        wal.commit(six).unwrap();
        // The cut's declaration is durable; its zero-fill's sync fails.
        crashed.fail_sync_after(1, libc::EIO);
        let cut = wal.truncate_after(5);
        assert!(matches!(cut, Err(Error::Poisoned { .. })), "{cut:?}");
        drop(wal);
        crashed.clear_faults();
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            wal.recovery_report()
                .events
                .contains(&RecoveryEvent::TruncationFinished { after_lsn: 5 }),
            "seed {seed}: {:?}",
            wal.recovery_report().events
        );
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (6, 5), "seed {seed}");
        assert_eq!(wal.append(b"six again").unwrap(), 6);
        wal.commit(6).unwrap();
        assert_eq!(wal.read(6).unwrap(), b"six again", "seed {seed}");
        drop(wal);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(wal.read(6).unwrap(), b"six again", "seed {seed}");
    }
    assert!(reached > 0, "no crash kept the older segment");
}

/// The same older segment, kept below the first LSN, whose records end before the first LSN
/// (the device lost the last compacted one): nothing of the log is in it, and it goes. Kept,
/// it took the next record where its header places an older LSN, which then read back as
/// corrupted (found by the review of the fix above).
#[test]
fn an_older_segment_whose_records_end_before_the_first_lsn_is_not_kept() {
    let stored = (32 + RECORD as u64).div_ceil(8) * 8;
    let mut reached = 0;
    for seed in 0..32u64 {
        let Some((crashed, names)) = crash_keeping_a_compacted_segment(seed) else {
            continue;
        };
        reached += 1;
        // Records 5 and on (none past it is in the file) read as zeros.
        crashed.zero_range(&names[0], 4096 + 4 * stored, (1 << 20) - 4096 - 4 * stored);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (6, 5), "seed {seed}");
        assert!(
            !segment_names(&crashed).contains(&names[0]),
            "seed {seed}: {:?}",
            wal.recovery_report()
        );
        assert_eq!(wal.append(b"six").unwrap(), 6);
        wal.commit(6).unwrap();
        assert_eq!(wal.read(6).unwrap(), b"six", "seed {seed}");
        drop(wal);
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(wal.read(6).unwrap(), b"six", "seed {seed}");
    }
    assert!(reached > 0, "no crash kept the older segment");
}

/// The same older segment, kept below the first LSN and then appended to (the records after
/// the ones stepped over are the log's), with the header of a compacted record lost: the
/// records behind it, acknowledged, must not go with the segment. The open is refused, as
/// for any damage in front of acknowledged records (the review of the rule above found that it
/// dropped them).
#[test]
fn damage_among_stepped_over_records_in_front_of_acknowledged_ones_refuses_the_open() {
    let stored = (32 + RECORD as u64).div_ceil(8) * 8;
    let mut reached = 0;
    for seed in 0..32u64 {
        let Some((crashed, names)) = crash_keeping_a_compacted_segment(seed) else {
            continue;
        };
        reached += 1;
        let wal = Wal::open("/sim", sim(&crashed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for i in 6..=8u64 {
            assert_eq!(wal.append(format!("record {i}").as_bytes()).unwrap(), i);
            wal.commit(i).unwrap();
        }
        // A power cut (the watermark in the control file stays at 5), then the header of
        // compacted record 3 reads as zeros.
        let after = crashed.crash(seed);
        drop(wal);
        after.zero_range(&names[0], 4096 + 2 * stored, 32);
        for mode in [
            RecoveryMode::TolerateTornTail,
            RecoveryMode::AbsoluteConsistency,
        ] {
            match Wal::open("/sim", sim(&after).recovery_mode(mode)) {
                Err(Error::Corrupted { segment, .. }) => {
                    assert!(segment.ends_with(&names[0]), "seed {seed}: {segment:?}")
                }
                other => panic!("seed {seed} {mode:?}: {other:?}"),
            }
        }
        // The refusal changed nothing: the records are there for a mode that skips.
        assert!(segment_names(&after).contains(&names[0]), "seed {seed}");
    }
    assert!(reached > 0, "no crash kept the older segment");
}

/// A compacted segment left behind (its removal and its recycling failed) whose header was
/// damaged since (its checksum fails): every mode's open removes it as wholly compacted, as it
/// does one whose header holds. It was decided as the LSNs after the checkpoint missing there:
/// the default mode refused the log, and `PointInTime` cut it back to the checkpoint (found by
/// review on 2026-12-04).
#[test]
fn a_compacted_segment_left_behind_with_a_damaged_header_is_removed_at_open() {
    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::PointInTime,
        RecoveryMode::SkipCorrupted,
    ] {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        fill(&wal, 5); // the first segment is full
        wal.checkpoint(5, Some(b"s")).unwrap();
        for i in 5..8 {
            wal.append(&payload(i, RECORD)).unwrap(); // LSNs 6..=8, in the second segment
        }
        wal.sync().unwrap();
        let names = segment_names(&disk);
        disk.fail_removes_of(&names[0], libc::EIO);
        disk.fail_renames_of(&names[0], libc::EIO);
        assert!(wal.compact_now().is_err(), "the removal was to fail");
        drop(wal); // poisoned by the failed removal
        disk.clear_faults();
        assert!(segment_names(&disk).contains(&names[0]), "left behind");
        disk.flip_bit(&names[0], 20, 3);
        let wal = Wal::open("/sim", sim(&disk).recovery_mode(mode))
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (6, 8), "{mode:?}");
        for i in 5..8u64 {
            assert_eq!(wal.read(i + 1).unwrap(), payload(i, RECORD), "{mode:?}");
        }
        assert!(
            !segment_names(&disk).contains(&names[0]),
            "{mode:?}: removed"
        );
        wal.close().unwrap();
    }
}

/// A log whose first segment, compacted away (its removal and its recycling fail), is kept by
/// the next open because a power cut took the header of the segment after it: the disk that cut
/// left, and the segment names from before it (`[0]` the kept one). `None` for a `seed` whose cut
/// left the second segment's header whole: the open then removes the first as wholly compacted.
fn crash_keeping_a_compacted_segment(seed: u64) -> Option<(SimDisk, Vec<String>)> {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 5); // the first segment is full
    wal.checkpoint(5, Some(b"s")).unwrap();
    wal.append(&payload(5, RECORD)).unwrap(); // rolls; never synced
    let names = segment_names(&disk);
    disk.fail_removes_of(&names[0], libc::EIO);
    disk.fail_renames_of(&names[0], libc::EIO);
    assert!(wal.compact_now().is_err(), "the removal was to fail");
    let crashed = disk.crash(seed);
    drop(wal);
    // The header lies in the segment's first sector, which a crash keeps or loses whole.
    let header = |d: &SimDisk| d.read_file(&names[1]).map(|bytes| bytes[..512].to_vec());
    (header(&crashed) != header(&disk)).then_some((crashed, names))
}

/// An older snapshot file that cannot be removed is left behind and reported, and neither the
/// checkpoint that replaced it nor compaction fails for it: the first returned an error for a
/// checkpoint already in place, and the second stopped before any segment went, so the log
/// grew without bound.
#[test]
fn an_older_snapshot_that_cannot_be_removed_holds_up_nothing() {
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 30);
    wal.checkpoint(10, Some(b"at 10")).unwrap();
    let older = "snapshot-00000000000000000010.snap";
    assert!(disk.file_names().contains(&older.to_string()));
    disk.fail_removes_of(older, libc::EACCES);
    wal.checkpoint(20, Some(b"at 20")).unwrap();
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, 20);
    let before = wal.first_lsn();
    let report = wal.compact_now().unwrap();
    assert!(report.segments_removed > 0, "{report:?}");
    assert!(wal.first_lsn() > before);
    assert!(
        report
            .files_left_behind
            .iter()
            .any(|left| left.starts_with(older)),
        "{report:?}"
    );
    assert!(disk.file_names().contains(&older.to_string()));
    // Nor does it keep the log from opening: it is reported, and the reopened log is whole.
    wal.close().unwrap();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    assert!(
        wal.recovery_report().events.iter().any(|e| matches!(
            e,
            RecoveryEvent::FileLeftBehind { file, .. } if file == older
        )),
        "{:?}",
        wal.recovery_report()
    );
    assert_eq!(wal.latest_checkpoint().unwrap().lsn, 20);
    assert_eq!(wal.last_lsn(), 30);
    // Once it can go, the next compaction removes it.
    disk.clear_faults();
    let report = wal.compact_now().unwrap();
    assert_eq!(report.snapshots_removed, 1, "{report:?}");
    assert!(report.files_left_behind.is_empty(), "{report:?}");
    assert!(!disk.file_names().contains(&older.to_string()));
    assert_eq!(read_snapshot(&wal).unwrap(), b"at 20");
}

/// A closed log in a new directory, its one record checkpointed at LSN 1 with a snapshot: the
/// directory, the options it was opened with, and the checkpoint's epoch.
fn checkpointed_at_one(label: &str) -> (rwal_tests::TempDir, Options, u64) {
    let temp = rwal_tests::TempDir::new(label);
    let options = Options::new().background_threads(false);
    let wal = Wal::open(temp.path(), options.clone()).unwrap();
    wal.append(b"one").unwrap();
    wal.sync().unwrap();
    wal.checkpoint(1, Some(b"state")).unwrap();
    let epoch = wal.latest_checkpoint().unwrap().epoch;
    wal.close().unwrap();
    (temp, options, epoch)
}

/// Writes `value` into the `u64` field at `offset` of the header of snapshot file `path`,
/// and the header's checksum so that it holds (docs/design.md, section 15.1); the file's
/// bytes after.
fn set_snapshot_header_field(path: &std::path::Path, offset: usize, value: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A snapshot header whose checksum holds but whose body length is absurd (near `u64::MAX`):
/// the open refuses the log naming the file. The length check used to add it to the body's
/// offset unchecked, which panicked in a debug build (found by review on 2026-12-03).
#[test]
fn a_snapshot_header_with_an_absurd_length_is_refused_not_a_panic() {
    let (temp, options, _) = checkpointed_at_one("snapshot-absurd-length");
    let name = rwal_wal::snapshot::file_name(1);
    set_snapshot_header_field(&temp.path().join(&name), 32, u64::MAX);
    match Wal::open(temp.path(), options) {
        Err(Error::BadFile { path, reason }) => {
            assert!(path.ends_with(&name), "{path:?}");
            assert!(reason.contains(&format!("{} bytes", u64::MAX)), "{reason}");
        }
        Err(other) => panic!("expected BadFile, got {other}"),
        Ok(_) => panic!("opened with a snapshot that claims {} bytes", u64::MAX),
    }
}

/// A snapshot file whose header holds, at the checkpoint's LSN, but names another epoch than
/// the control file does (a state of another history: a file copied in from elsewhere) is
/// refused, naming the file and both epochs, by the open and by `inspect`; the log is left as
/// it was. It was taken as the checkpoint's state until 2026-12-07.
#[test]
fn a_snapshot_of_another_epoch_is_refused() {
    let (temp, options, epoch) = checkpointed_at_one("snapshot-other-epoch");
    let name = rwal_wal::snapshot::file_name(1);
    let path = temp.path().join(&name);
    // Offset 24 is the epoch: the refusal below names both epochs.
    let bytes = set_snapshot_header_field(&path, 24, epoch + 1);
    let names_before = std::fs::read_dir(temp.path()).unwrap().count();
    match Wal::open(temp.path(), options.clone()) {
        Err(Error::BadFile { path, reason }) => {
            assert!(path.ends_with(&name), "{path:?}");
            assert!(
                reason.contains(&format!("epoch {}", epoch + 1))
                    && reason.contains(&format!("epoch {epoch}")),
                "{reason}"
            );
        }
        Err(other) => panic!("expected BadFile, got {other}"),
        Ok(_) => panic!("opened with a snapshot of epoch {}", epoch + 1),
    }
    match rwal_wal::inspect::inspect(temp.path()) {
        Ok(inspection) => assert!(inspection.is_corrupted(), "{:?}", inspection.problems),
        Err(e) => assert!(e.to_string().contains(&name), "{e}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the snapshot is kept");
    assert_eq!(
        std::fs::read_dir(temp.path()).unwrap().count(),
        names_before
    );
}

/// The names of the files in a target's log directory.
fn file_names(t: &rwal_tests::Target) -> Vec<String> {
    match &t.backend {
        Backend::Simulated(disk) => disk.file_names(),
        _ => std::fs::read_dir(&t.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect(),
    }
}

/// The temporary files of snapshots being written.
fn temporary_snapshots(t: &rwal_tests::Target) -> Vec<String> {
    let mut names = file_names(t);
    names.retain(|name| name.starts_with("snapshot-") && name.ends_with(".tmp"));
    names
}

/// A snapshot received in pieces while the log goes on becomes the checkpoint's snapshot at the
/// reset, its file renamed into place, and reads back whole (streamed, and as one checked
/// view) before and after a reopen.
#[test]
fn a_received_snapshot_becomes_the_checkpoint_it_was_sent_as() {
    for t in targets("receive") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        fill(&wal, 3);
        // Longer than one of the writer's 1 MiB steps, in pieces that do not align with them.
        let body = payload(7, (3 << 20) + 12_345);
        let mut received = wal.receive_snapshot(1000, 5, body.len() as u64).unwrap();
        assert_eq!((received.lsn(), received.epoch()), (1000, 5));
        for piece in body.chunks(700_001) {
            received.write(piece).unwrap();
            // The log goes on while the bytes arrive.
            wal.append(b"meanwhile").unwrap();
        }
        assert!(received.is_complete(), "{}", t.name);
        assert_eq!(received.crc(), crc32c::crc32c(&body), "{}", t.name);
        assert_eq!(temporary_snapshots(&t).len(), 1, "{}", t.name);
        wal.reset_to_received(received).unwrap();
        assert_eq!(
            (wal.first_lsn(), wal.last_lsn(), wal.durable_lsn()),
            (1001, 1000, 1000),
            "{}",
            t.name
        );
        assert_eq!(wal.latest_checkpoint().unwrap().epoch, 5);
        assert_eq!(
            temporary_snapshots(&t),
            Vec::<String>::new(),
            "{}: renamed, not copied",
            t.name
        );
        let reader = wal.open_snapshot().unwrap().unwrap();
        assert!(reader.checked_bytes().unwrap() == &body[..], "{}", t.name);
        drop(reader);
        drop(wal);
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.first_lsn(), 1001, "{}", t.name);
        assert!(read_snapshot(&wal).unwrap() == body, "{}", t.name);
        let reader = wal.open_snapshot().unwrap().unwrap();
        assert!(reader.checked_bytes().unwrap() == &body[..], "{}", t.name);
    }
}

/// Two checkpoints written at once: the one at the lower LSN, finished last, is refused and
/// leaves no file. Its snapshot was renamed into place before the check, and stayed there until
/// the next checkpoint, compaction or open (found by review on 2026-12-05).
#[test]
fn a_checkpoint_older_than_the_latest_is_refused_and_leaves_no_file() {
    for t in targets("stale-checkpoint") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        fill(&wal, 3);
        let mut older = wal.checkpoint_writer(1, 3).unwrap();
        older.write(b"one").unwrap();
        let mut newer = wal.checkpoint_writer(2, 3).unwrap();
        newer.write(b"two").unwrap();
        newer.finish().unwrap();
        let e = older.finish().unwrap_err();
        assert!(
            e.to_string()
                .contains("a newer checkpoint was taken meanwhile"),
            "{}: {e}",
            t.name
        );
        let mut snapshots = file_names(&t);
        snapshots.retain(|name| name.starts_with("snapshot-"));
        assert_eq!(snapshots.len(), 1, "{}: {snapshots:?}", t.name);
        assert_eq!(wal.latest_checkpoint().unwrap().lsn, 2, "{}", t.name);
        assert!(read_snapshot(&wal).unwrap() == b"two", "{}", t.name);
    }
}

/// A snapshot not received whole, one that a pin refuses, one dropped, and one past its length
/// change nothing and leave no file behind.
#[test]
fn a_received_snapshot_that_cannot_be_reset_to_leaves_nothing_behind() {
    for t in targets("receive-refused") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        fill(&wal, 3);
        // More than any disk holds: refused before anything is written (on a real file
        // system by its free space, on the simulated disk by a space limit).
        if let Backend::Simulated(disk) = &t.backend {
            disk.set_space_limit(Some(64 << 20));
        }
        let too_large = wal.receive_snapshot(100, 2, 1 << 50).unwrap_err();
        assert!(
            matches!(too_large, Error::NoSpace { .. }),
            "{}: {too_large}",
            t.name
        );
        assert!(
            too_large.to_string().contains("less space is free"),
            "{too_large}"
        );
        assert_eq!(temporary_snapshots(&t), Vec::<String>::new(), "{}", t.name);
        if let Backend::Simulated(disk) = &t.backend {
            disk.set_space_limit(None);
        }
        let refused_lsn = wal.receive_snapshot(0, 1, 4).unwrap_err();
        assert!(
            matches!(refused_lsn, Error::InvalidArgument { name: "lsn", .. }),
            "{}: {refused_lsn}",
            t.name
        );

        let mut partial = wal.receive_snapshot(100, 2, 10).unwrap();
        partial.write(b"12345").unwrap();
        let too_long = partial.write(b"6789012").unwrap_err();
        assert!(too_long.to_string().contains("announced"), "{too_long}");
        let error = wal.reset_to_received(partial).unwrap_err();
        assert!(
            error.to_string().contains("5 of its 10 bytes received"),
            "{}: {error}",
            t.name
        );

        let mut whole = wal.receive_snapshot(100, 2, 4).unwrap();
        whole.write(b"four").unwrap();
        let reader = wal.reader(1).unwrap();
        let error = wal.reset_to_received(whole).unwrap_err();
        assert!(matches!(error, Error::Pinned { .. }), "{}: {error}", t.name);
        drop(reader);

        if !matches!(t.backend, Backend::Simulated(_)) {
            // Received by another log: its file is in that log's directory, and a reset to it
            // would leave this log's control file naming a snapshot it does not have.
            let other = Wal::open(t.dir.with_file_name("other-log"), t.options()).unwrap();
            let mut foreign = other.receive_snapshot(100, 2, 4).unwrap();
            foreign.write(b"four").unwrap();
            let error = wal.reset_to_received(foreign).unwrap_err();
            assert!(
                error.to_string().contains("another log"),
                "{}: {error}",
                t.name
            );
        }

        let mut dropped = wal.receive_snapshot(100, 2, 4).unwrap();
        dropped.write(b"fo").unwrap();
        assert_eq!(temporary_snapshots(&t).len(), 1, "{}", t.name);
        drop(dropped);

        assert_eq!(temporary_snapshots(&t), Vec::<String>::new(), "{}", t.name);
        assert!(wal.latest_checkpoint().is_none(), "{}", t.name);
        assert_eq!((wal.first_lsn(), wal.last_lsn()), (1, 3), "{}", t.name);
        assert!(wal.read(2).unwrap() == payload(1, RECORD), "{}", t.name);
    }
}

/// The checked view of a snapshot refuses one whose bytes changed on the disk, naming the file.
#[test]
fn the_checked_view_of_a_damaged_snapshot_is_refused() {
    for t in targets("checked-view") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        fill(&wal, 3);
        wal.checkpoint(2, Some(&payload(9, 100_000))).unwrap();
        let name = file_names(&t)
            .into_iter()
            .find(|name| name.starts_with("snapshot-"))
            .expect("the snapshot's file");
        let at = rwal_wal::snapshot::BODY_OFFSET + 50_000;
        match &t.backend {
            Backend::Simulated(disk) => disk.flip_bit(&name, at, 3),
            _ => {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(t.dir.join(&name))
                    .unwrap();
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, at).unwrap();
                file.write_all_at(&[byte[0] ^ 8], at).unwrap();
            }
        }
        let reader = wal.open_snapshot().unwrap().unwrap();
        let error = reader.checked_bytes().unwrap_err();
        assert!(
            matches!(error, Error::Corrupted { .. }) && error.to_string().contains(&name),
            "{}: {error}",
            t.name
        );
    }
}

/// A snapshot reader skipped ahead with the checksum of the bytes it skips reads the rest, and
/// its check at the end covers the skipped bytes through that checksum: a wrong one fails it
/// as damage does. It moves forward only, and not past the end.
#[test]
fn a_snapshot_reader_skips_ahead_with_the_checksum_of_what_it_skips() {
    let wal = Wal::open(
        "/skip",
        Options::new()
            .backend(Backend::Simulated(SimDisk::new()))
            .background_threads(false)
            .segment_bytes(1 << 20),
    )
    .unwrap();
    wal.append_durable(b"x").unwrap();
    let state: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
    wal.checkpoint(1, Some(&state)).unwrap();
    let at = 4321;
    let mut reader = wal.open_snapshot().unwrap().unwrap();
    reader
        .skip_to(at, crc32c::crc32c(&state[..at as usize]))
        .unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, &state[at as usize..]);
    // A wrong checksum of the skipped bytes: the rest reads, and the end fails its check.
    let mut reader = wal.open_snapshot().unwrap().unwrap();
    reader
        .skip_to(at, crc32c::crc32c(&state[..at as usize]) ^ 1)
        .unwrap();
    let mut rest = Vec::new();
    let end = reader.read_to_end(&mut rest).unwrap_err();
    assert_eq!(end.kind(), std::io::ErrorKind::InvalidData, "{end}");
    // Backwards, or past the end: refused, and the position stays.
    let mut reader = wal.open_snapshot().unwrap().unwrap();
    let mut first = [0u8; 100];
    reader.read_exact(&mut first).unwrap();
    let back = reader.skip_to(50, 0).unwrap_err();
    assert_eq!(back.kind(), std::io::ErrorKind::InvalidInput, "{back}");
    let past = reader.skip_to(state.len() as u64 + 1, 0).unwrap_err();
    assert_eq!(past.kind(), std::io::ErrorKind::InvalidInput, "{past}");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, &state[100..]);
    // Skipped to the very end: nothing left to read but the check.
    let mut reader = wal.open_snapshot().unwrap().unwrap();
    reader
        .skip_to(state.len() as u64, crc32c::crc32c(&state))
        .unwrap();
    assert_eq!(reader.read(&mut first).unwrap(), 0);
}

/// A lossy open (`PointInTime`) whose recovery ends below the latest checkpoint resets the log
/// to that checkpoint only if its snapshot's body is whole: with it damaged the open is
/// refused, naming the snapshot, and every segment stays. The reset removed the segments on
/// the strength of the snapshot's header alone, and the state then failed its checksum: neither
/// the records nor the state were left (found by a review of recovery, 2026-12-07).
#[test]
fn a_lossy_open_below_a_checkpoint_with_a_damaged_snapshot_is_refused_and_keeps_the_log() {
    let snapshot = "snapshot-00000000000000000015.snap";
    let build = |damage_snapshot: bool| {
        let disk = SimDisk::new();
        let wal = Wal::open("/sim", sim(&disk)).unwrap();
        fill(&wal, 20); // five records a segment
        wal.checkpoint(15, Some(&[7u8; 10_000])).unwrap();
        wal.close().unwrap();
        let names = segment_names(&disk);
        // A record of the second segment (LSNs 6 to 10) damaged: recovery keeps less than 15.
        disk.flip_bit(&names[1], 600_000, 2);
        if damage_snapshot {
            let len = disk.read_file(snapshot).unwrap().len() as u64;
            disk.flip_bit(snapshot, len - 100, 0);
        }
        (disk, names)
    };
    let lossy =
        |disk: &SimDisk| Wal::open("/sim", sim(disk).recovery_mode(RecoveryMode::PointInTime));

    // The snapshot whole: the log is reset to the checkpoint.
    let (disk, _) = build(false);
    let wal = lossy(&disk).unwrap();
    assert_eq!((wal.first_lsn(), wal.last_lsn()), (16, 15));
    assert_eq!(read_snapshot(&wal), Some(vec![7u8; 10_000]));
    wal.close().unwrap();

    // Damaged: refused, twice, and nothing removed.
    let (disk, names) = build(true);
    for attempt in 0..2 {
        match lossy(&disk) {
            Err(Error::Corrupted { segment, lsn, .. }) => {
                assert!(segment.ends_with(snapshot), "{segment:?}");
                assert_eq!(lsn, 15);
            }
            other => panic!("attempt {attempt}: {other:?}"),
        }
        assert_eq!(segment_names(&disk), names, "attempt {attempt}");
    }
}

/// An open that finds a reset declared and not finished checks the snapshot it resets to
/// before it removes the old log's segments: with the snapshot's body damaged (by the disk,
/// after the crash) it is refused and the files stay as they were. The segments went first,
/// then the snapshot's header was read, and its body never (found by a review of recovery,
/// 2026-12-07).
#[test]
fn an_unfinished_reset_to_a_damaged_snapshot_is_refused_before_anything_is_removed() {
    let snapshot = "snapshot-00000000000000000500.snap";
    let mut reached = 0;
    for step in 0..9u64 {
        for seed in 0..8 {
            let disk = SimDisk::new();
            let wal = Wal::open("/sim", sim(&disk)).unwrap();
            fill(&wal, 12);
            disk.fail_sync_after(step, libc::EIO);
            let _ = wal.reset_to_snapshot(500, 3, &[5u8; 3000]);
            let crashed = disk.crash(seed);
            drop(wal);
            let declared = control_file::copies(&crashed)[0].is_some_and(|c| c.declares_a_reset);
            let names = segment_names(&crashed);
            if !declared || names.is_empty() {
                // Not in the window: the old log, the reset finished, or its removals done.
                continue;
            }
            reached += 1;
            let len = crashed.read_file(snapshot).unwrap().len() as u64;
            crashed.flip_bit(snapshot, len - 10, 1);
            match Wal::open("/sim", sim(&crashed)) {
                Err(Error::Corrupted { segment, lsn, .. }) => {
                    assert!(segment.ends_with(snapshot), "{segment:?}");
                    assert_eq!(lsn, 500);
                }
                other => panic!("step {step} seed {seed}: {other:?}"),
            }
            assert_eq!(segment_names(&crashed), names, "step {step} seed {seed}");
        }
    }
    assert!(
        reached > 0,
        "no crash left the reset declared and unfinished"
    );
}

/// A checkpoint whose snapshot source panics (the caller's `Read`) leaves no pin behind: the
/// checkpoint's pin was released only when the source returned, and a panic left it at its
/// LSN for good, holding every later compaction, reset and cut below it (found by a review of
/// compaction, 2026-12-07).
#[test]
fn a_checkpoint_whose_source_panics_leaves_no_pin() {
    struct Panicking;
    impl Read for Panicking {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("a snapshot source that panics (on purpose, in a test)")
        }
    }
    let disk = SimDisk::new();
    let wal = Wal::open("/sim", sim(&disk)).unwrap();
    fill(&wal, 20); // four segments
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wal.checkpoint_from(10, 100, &mut Panicking)
    }));
    assert!(outcome.is_err(), "the source's panic goes on to the caller");
    assert_eq!(wal.pins(), Vec::new());
    wal.checkpoint(15, Some(b"at 15")).unwrap();
    let report = wal.compact_now().unwrap();
    assert_eq!(report.held_back_by, None, "{report:?}");
    assert!(wal.first_lsn() > 10, "{report:?}");
    wal.close().unwrap();
}
