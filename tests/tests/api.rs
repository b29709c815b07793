//! The public API of rwal-wal, on every backend: what a user can do and what errors they get.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rwal_tests::{payload, targets};
use rwal_wal::{Backend, Error, Options, RecordKind, SimDisk, Wal};

#[test]
fn an_empty_log_starts_at_one_and_a_reader_ends_at_once() {
    for t in targets("empty") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(
            (wal.first_lsn(), wal.last_lsn(), wal.durable_lsn()),
            (1, 0, 0),
            "{}",
            t.name
        );
        let mut reader = wal.reader(wal.first_lsn()).unwrap();
        assert!(reader.next().unwrap().is_none(), "{}", t.name);
        assert!(
            matches!(
                wal.read(1),
                Err(Error::NotFound {
                    lsn: 1,
                    last_lsn: 0
                })
            ),
            "{}",
            t.name
        );
    }
}

#[test]
fn appended_records_read_back_after_commit_and_reopen() {
    for t in targets("roundtrip") {
        let records: Vec<Vec<u8>> = (0..300)
            .map(|i| payload(i, (i as usize * 37) % 3000))
            .collect();
        {
            let wal = Wal::open(&t.dir, t.options()).unwrap();
            for (i, r) in records.iter().enumerate() {
                assert_eq!(wal.append(r).unwrap(), i as u64 + 1);
            }
            // Not durable yet: readers do not see it.
            assert!(
                matches!(wal.read(1), Err(Error::NotDurable { .. })),
                "{}",
                t.name
            );
            wal.commit(300).unwrap();
            assert_eq!(wal.durable_lsn(), 300);
            assert_eq!(wal.read(150).unwrap(), records[149], "{}", t.name);
            wal.close().unwrap();
        }
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(
            (wal.last_lsn(), wal.durable_lsn()),
            (300, 300),
            "{}",
            t.name
        );
        let mut reader = wal.reader(1).unwrap();
        let mut count = 0;
        while let Some(record) = reader.next().unwrap() {
            assert_eq!(record.lsn, count + 1);
            assert_eq!(record.kind, RecordKind::User);
            assert_eq!(
                record.data,
                &records[count as usize][..],
                "{} lsn {}",
                t.name,
                record.lsn
            );
            count += 1;
        }
        assert_eq!(count, 300, "{}", t.name);
    }
}

#[test]
fn batches_get_contiguous_lsns_and_span_segments() {
    for t in targets("batch") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        // 40 records of 100 KiB: several segment rolls inside one batch.
        let records: Vec<Vec<u8>> = (0..40).map(|i| payload(i, 100 << 10)).collect();
        let slices: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        assert_eq!(wal.append_batch(&slices).unwrap(), 1);
        assert_eq!(wal.append(b"after").unwrap(), 41);
        wal.commit(41).unwrap();
        assert!(
            wal.segment_count() >= 4,
            "{}: {} segments",
            t.name,
            wal.segment_count()
        );
        for (i, r) in records.iter().enumerate() {
            assert_eq!(&wal.read(i as u64 + 1).unwrap(), r, "{}", t.name);
        }
        drop(wal);
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.last_lsn(), 41);
        assert_eq!(wal.read(41).unwrap(), b"after");
        assert_eq!(wal.read(17).unwrap(), records[16]);
    }
}

/// Empty records that fill a segment to its last byte: the last one's payload is the empty
/// range at the segment's end, where `IoUring`'s map of the blocks it holds used to be indexed
/// one block past its end (a panic at every read of that record).
#[test]
fn empty_records_that_fill_a_segment_to_its_end_read_back() {
    for t in targets("empty-records") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        // 1 MiB segments: a 4 KiB header region, then 32 bytes a record with no payload.
        let per_segment = ((1u64 << 20) - 4096) / 32;
        let records = vec![&b""[..]; per_segment as usize + 1];
        assert_eq!(wal.append_batch(&records).unwrap(), 1);
        wal.commit(per_segment + 1).unwrap();
        assert_eq!(wal.segment_count(), 2, "{}: the last record rolled", t.name);
        assert_eq!(wal.read(per_segment).unwrap(), b"", "{}", t.name);
        let mut reader = wal.reader(1).unwrap();
        let mut count = 0;
        while let Some(record) = reader.next().unwrap() {
            assert!(record.data.is_empty());
            count += 1;
        }
        assert_eq!(count, per_segment + 1, "{}", t.name);
    }
}

#[test]
fn a_record_larger_than_a_segment_is_refused_naming_both_sizes() {
    for t in targets("large") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        let big = vec![1u8; 1 << 20];
        match wal.append(&big) {
            Err(Error::RecordTooLarge {
                payload_bytes,
                segment_bytes,
                max_payload_bytes,
            }) => {
                assert_eq!((payload_bytes, segment_bytes), (1 << 20, 1 << 20));
                assert_eq!(max_payload_bytes, (1 << 20) - 4096 - 32);
            }
            other => panic!("{}: {other:?}", t.name),
        }
        // The largest record that fits does fit, and nothing was consumed by the refusal.
        let max = vec![2u8; (1 << 20) - 4096 - 32];
        assert_eq!(wal.append_durable(&max).unwrap(), 1);
        assert_eq!(wal.read(1).unwrap(), max);
        assert!(matches!(
            wal.append_batch(&[]),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn a_second_open_is_locked_until_the_first_closes() {
    for t in targets("lock") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        match Wal::open(&t.dir, t.options()) {
            Err(e @ Error::Locked { .. }) => {
                let Error::Locked { dir, holder } = &e else {
                    unreachable!()
                };
                assert_eq!(dir, &t.dir);
                if matches!(t.backend, Backend::Simulated(_)) {
                    // A simulated disk's lock is no file lock the system lists.
                    assert_eq!(*holder, None);
                } else {
                    assert_eq!(*holder, Some(std::process::id()), "{}", t.name);
                    assert!(
                        e.to_string().contains("already open in this process"),
                        "{e}"
                    );
                }
            }
            other => panic!("{}: {other:?}", t.name),
        }
        wal.close().unwrap();
        Wal::open(&t.dir, t.options()).unwrap();
    }
}

#[test]
fn open_without_create_on_a_missing_log_says_so() {
    for t in targets("nolog") {
        match Wal::open(&t.dir, t.options().create_if_missing(false)) {
            Err(Error::NoLog { dir }) => assert_eq!(dir, t.dir),
            other => panic!("{}: {other:?}", t.name),
        }
    }
}

#[test]
fn reopening_with_another_segment_size_keeps_old_segments_and_uses_the_new_size() {
    for t in targets("resize") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        let first = payload(1, 600 << 10);
        wal.append_durable(&first).unwrap();
        wal.close().unwrap();
        // A record of 1.5 MiB does not fit the old 1 MiB segment, and does fit a new 2 MiB one.
        let wal = Wal::open(&t.dir, t.options().segment_bytes(2 << 20)).unwrap();
        let second = payload(2, 1536 << 10);
        assert_eq!(wal.append_durable(&second).unwrap(), 2);
        wal.close().unwrap();
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.read(1).unwrap(), first, "{}", t.name);
        assert_eq!(wal.read(2).unwrap(), second, "{}", t.name);
    }
}

#[test]
fn many_threads_append_and_one_sync_serves_many_committers() {
    for t in targets("group") {
        let wal = Arc::new(Wal::open(&t.dir, t.options().segment_bytes(4 << 20)).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|thread| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..200u64 {
                        let data = payload(thread * 1000 + i, 64 + (i as usize % 200));
                        let lsn = wal.append(&data).unwrap();
                        wal.commit(lsn).unwrap();
                        assert!(wal.durable_lsn() >= lsn);
                        mine.push((lsn, data));
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<(u64, Vec<u8>)> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        let lsns: Vec<u64> = all.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            lsns,
            (1..=1600).collect::<Vec<_>>(),
            "{}: LSNs are dense and unique",
            t.name
        );
        for (lsn, data) in &all {
            assert_eq!(&wal.read(*lsn).unwrap(), data);
        }
        let stats = wal.stats();
        assert_eq!(stats.commits, 1600);
        assert_eq!(stats.records_synced, 1600);
        // Group commit happened: fewer syncs than commits (8 threads wait on one another's syncs).
        assert!(stats.syncs < stats.commits, "{}: {stats:?}", t.name);
        assert!(stats.max_records_per_sync > 1, "{}: {stats:?}", t.name);
    }
}

/// One committer alone commits record 1 and, once it leads the sync, record 2 is appended and
/// committed. Without a delay the leader fixes what its sync covers as it takes the lead, under
/// the same hold of the group commit's lock in which it counts its commit (it gathers nobody: it
/// is the only committer), so record 2 always needs a sync of its own. With a delay it takes the
/// lead, waits, and syncs what is written by then: record 2, appended during the wait, rides the
/// same sync. Returns the stats, or `None` if record 2 was not surely appended during the wait.
fn commit_while_the_leader_waits(delay: Duration) -> Option<rwal_wal::CommitStats> {
    let wal = Arc::new(
        Wal::open(
            "/sim",
            Options::new()
                .backend(Backend::Simulated(SimDisk::new()))
                .segment_bytes(1 << 20)
                .background_threads(false)
                .commit_delay(delay),
        )
        .unwrap(),
    );
    wal.append(b"first").unwrap();
    // Before the leader's commit starts, so before its wait does.
    let started = Instant::now();
    let leader = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.commit(1))
    };
    // The count shows once the leader leads (waiting, or syncing what it fixed).
    while wal.stats().commits == 0 {
        std::thread::yield_now();
    }
    wal.append(b"second").unwrap();
    // The wait ends no sooner than `delay` after `started`: a record written before that was
    // written before the leader looked.
    let in_time = started.elapsed() < delay;
    wal.commit(2).unwrap();
    leader.join().unwrap().unwrap();
    let stats = wal.stats();
    assert_eq!(
        (stats.commits, stats.records_synced),
        (2, 2),
        "{delay:?}: {stats:?}"
    );
    (delay.is_zero() || in_time).then_some(stats)
}

#[test]
fn commit_delay_gathers_more_records_per_sync() {
    // Without a delay: two syncs, whatever the timing.
    let stats = commit_while_the_leader_waits(Duration::ZERO).unwrap();
    assert_eq!(
        (stats.syncs, stats.max_records_per_sync),
        (2, 1),
        "no delay: {stats:?}"
    );
    // With one: a single sync for both, in any attempt whose second append came in time (one
    // that took longer than the delay, on a loaded machine, proves nothing either way and is
    // made again). No threshold on how long anything takes is asserted.
    let delay = Duration::from_millis(100);
    let stats = (0..20)
        .find_map(|_| commit_while_the_leader_waits(delay))
        .expect("the second record appended within 100 ms in one of 20 tries");
    assert_eq!(
        (stats.syncs, stats.max_records_per_sync),
        (1, 2),
        "{delay:?}: {stats:?}"
    );
}

#[test]
fn commit_of_an_lsn_never_appended_is_an_error() {
    for t in targets("commit-future") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        wal.append(b"a").unwrap();
        assert!(matches!(
            wal.commit(2),
            Err(Error::NotFound {
                lsn: 2,
                last_lsn: 1
            })
        ));
        wal.commit(0).unwrap();
        wal.commit(1).unwrap();
    }
}

#[test]
fn a_tailing_reader_waits_for_durable_records_and_times_out() {
    for t in targets("tail") {
        let wal = Arc::new(Wal::open(&t.dir, t.options()).unwrap());
        let mut reader = wal.reader(1).unwrap();
        assert!(matches!(
            reader.next_timeout(Duration::from_millis(20)),
            Err(Error::Timeout { .. })
        ));
        let writer = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    wal.append_durable(&payload(i, 100)).unwrap();
                }
            })
        };
        for i in 0..50u64 {
            let record = reader.next_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(
                (record.lsn, record.data),
                (i + 1, &payload(i, 100)[..]),
                "{}",
                t.name
            );
        }
        writer.join().unwrap();
        // A timeout too long for the clock ("wait forever") is a long wait, not a panic.
        wal.append_durable(b"last").unwrap();
        let record = reader.next_timeout(Duration::MAX).unwrap();
        assert_eq!((record.lsn, record.data), (51, &b"last"[..]), "{}", t.name);
        // Appended but not committed: the reader does not see it.
        wal.append(b"pending").unwrap();
        assert!(reader.next().unwrap().is_none());
    }
}

#[test]
fn a_reader_from_a_middle_lsn_and_out_of_range_starts() {
    for t in targets("reader-range") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        for i in 0..500u64 {
            wal.append(&payload(i, 2000)).unwrap();
        }
        wal.sync().unwrap();
        let mut reader = wal.reader(333).unwrap();
        assert_eq!(
            reader.next().unwrap().unwrap().data,
            &payload(332, 2000)[..],
            "{}",
            t.name
        );
        assert!(matches!(wal.reader(502), Err(Error::NotFound { .. })));
        assert!(matches!(
            wal.reader(0),
            Err(Error::InvalidArgument { name: "lsn", .. })
        ));
        assert!(matches!(
            wal.read(0),
            Err(Error::InvalidArgument { name: "lsn", .. })
        ));
        wal.reader(501).unwrap();
    }
}

#[test]
fn system_records_and_epochs_are_kept() {
    for t in targets("kinds") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        wal.append(b"user").unwrap();
        wal.append_with(RecordKind::System, 3, &[b"system"])
            .unwrap();
        assert!(matches!(
            wal.append_with(RecordKind::User, 2, &[b"old"]),
            Err(Error::InvalidArgument { name: "epoch", .. })
        ));
        wal.sync().unwrap();
        wal.close().unwrap();
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.epoch(), 3);
        let mut reader = wal.reader(1).unwrap();
        let r = reader.next().unwrap().unwrap();
        assert_eq!((r.kind, r.epoch), (RecordKind::User, 0));
        let r = reader.next().unwrap().unwrap();
        assert_eq!(
            (r.kind, r.epoch, r.data),
            (RecordKind::System, 3, &b"system"[..])
        );
    }
}

/// Appenders that each raise the epoch (`append_with`, as replicas of successive terms would):
/// the epochs along the log never go down. The epoch used to be raised before the append took
/// its LSN, so an append with a lower epoch could take the LSN after one with a higher.
#[test]
fn concurrent_appends_with_rising_epochs_never_lower_the_epoch_along_the_log() {
    let t = targets("rising-epochs").pop().expect("the simulated disk");
    let wal = Arc::new(Wal::open(&t.dir, t.options()).unwrap());
    let next_epoch = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (wal, next_epoch) = (wal.clone(), next_epoch.clone());
            std::thread::spawn(move || {
                let mut appended = 0u64;
                for _ in 0..3000 {
                    let epoch = next_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    match wal.append_with(RecordKind::User, epoch, &[b"r"]) {
                        Ok(_) => appended += 1,
                        // Another thread's higher epoch got in first: refused, not written.
                        Err(Error::InvalidArgument { name: "epoch", .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                appended
            })
        })
        .collect();
    let appended: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    wal.sync().unwrap();
    let mut reader = wal.reader(1).unwrap();
    let (mut previous, mut count) = (0, 0);
    while let Some(record) = reader.next().unwrap() {
        assert!(
            record.epoch >= previous,
            "LSN {} has epoch {} after {previous}",
            record.lsn,
            record.epoch
        );
        previous = record.epoch;
        count += 1;
    }
    // Every append that was taken is in the log, and only those.
    assert!(appended > 0);
    assert_eq!(count, appended);
}

#[test]
fn options_are_validated_at_open() {
    for t in targets("options") {
        let err = Wal::open(&t.dir, t.options().segment_bytes(1000)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    name: "segment_bytes",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("segment_bytes"), "{err}");
    }
}

/// The segment files in the target's directory (`.seg`, not temporary ones).
fn segment_files(t: &rwal_tests::Target) -> usize {
    match &t.backend {
        rwal_wal::Backend::Simulated(disk) => disk
            .file_names()
            .iter()
            .filter(|n| n.ends_with(".seg"))
            .count(),
        _ => std::fs::read_dir(&t.dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count(),
    }
}

#[test]
fn without_background_threads_maintain_does_the_work() {
    for t in targets("stepping") {
        let wal = Wal::open(&t.dir, t.options().background_threads(false)).unwrap();
        // Nothing runs behind the caller's back: no segment is prepared until maintain().
        assert_eq!(segment_files(&t), 1, "{}", t.name);
        wal.maintain().unwrap();
        assert_eq!(segment_files(&t), 2, "{}", t.name);
        for i in 0..20u64 {
            wal.append(&payload(i, 200 << 10)).unwrap();
        }
        wal.sync().unwrap();
        // Appends prepared what they needed themselves.
        assert!(segment_files(&t) >= 4, "{}", t.name);
        wal.maintain().unwrap();
        assert_eq!(wal.read(20).unwrap(), payload(19, 200 << 10));
    }
}

/// Regression: the background thread first ran a control interval after open, so an appender
/// that filled the first segment sooner had to prepare the next one itself, a whole zero-fill
/// under the tail lock. The interval here is a minute; the next segment must come much sooner
/// after the first append (a log opened and not written prepares nothing ahead: the unit test
/// `the_background_thread_prepares_ahead_only_for_a_log_being_written`).
#[test]
fn the_next_segment_is_prepared_right_after_the_first_append() {
    for t in targets("prepared-at-open") {
        let options = t.options().control_interval(Duration::from_secs(60));
        let wal = Wal::open(&t.dir, options).unwrap();
        wal.append(b"first").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while segment_files(&t) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: no segment prepared 20 s after the first append",
                t.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        wal.close().unwrap();
    }
}

#[test]
fn close_makes_everything_durable_and_the_watermark_current() {
    for t in targets("close") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        wal.append(b"one").unwrap();
        wal.append(b"two").unwrap();
        wal.close().unwrap();
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        let report = wal.recovery_report();
        assert_eq!(report.control_durable_lsn, 2, "{}: {report:?}", t.name);
        assert_eq!(report.last_lsn, 2);
        assert!(report.events.is_empty(), "{}: {report:?}", t.name);
    }
}

#[test]
fn opens_with_default_options_create_the_directory() {
    let temp = rwal_tests::TempDir::new("defaults");
    let dir = temp.join("a/b/log");
    let wal = Wal::open(&dir, Options::new()).unwrap();
    assert_eq!(wal.append_durable(b"x").unwrap(), 1);
    assert!(dir.join("control").exists());
}

#[test]
fn another_process_cannot_take_the_lock() {
    let temp = rwal_tests::TempDir::new("flock");
    let dir = temp.join("log");
    let lock_held_elsewhere = || {
        let status = std::process::Command::new("flock")
            .arg("-n")
            .arg(dir.join("LOCK"))
            .arg("true")
            .status()
            .unwrap();
        !status.success()
    };
    let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20)).unwrap();
    assert!(
        lock_held_elsewhere(),
        "another process could lock an open log"
    );
    wal.close().unwrap();
    assert!(!lock_held_elsewhere(), "close did not release the lock");
}

/// An open refused because another process holds the log names that process.
#[test]
fn an_open_refused_for_another_process_names_it() {
    use std::io::Write;
    let temp = rwal_tests::TempDir::new("flock-holder");
    let dir = temp.join("log");
    Wal::open(&dir, Options::new().segment_bytes(1 << 20))
        .unwrap()
        .close()
        .unwrap();
    // `flock` holds the lock itself (`-o`: `cat` does not inherit it) until `cat` ends, which
    // is when its input closes.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(dir.join("LOCK"))
        .arg("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let refused = loop {
        match Wal::open(&dir, Options::new().segment_bytes(1 << 20)) {
            Err(e @ Error::Locked { .. }) => break e,
            Ok(wal) => {
                // `flock` has not taken the lock yet.
                wal.close().unwrap();
                assert!(
                    std::time::Instant::now() < deadline,
                    "flock never took the lock"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(other) => panic!("{other}"),
        }
    };
    let Error::Locked { holder: named, .. } = &refused else {
        unreachable!()
    };
    assert_eq!(*named, Some(holder.id()), "{refused}");
    assert!(
        refused
            .to_string()
            .ends_with(&format!("is already open in process {}", holder.id())),
        "{refused}"
    );
    holder.stdin.take().unwrap().write_all(b"done").unwrap();
    assert!(holder.wait().unwrap().success());
    Wal::open(&dir, Options::new().segment_bytes(1 << 20))
        .expect("the lock is free once flock ended")
        .close()
        .unwrap();
}

#[test]
fn replication_state_is_stored_durably_in_the_control_file() {
    use rwal_wal::{HardState, MEMBERSHIP_BYTES_MAX};
    for t in targets("replication-state") {
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.replication_state(), (HardState::default(), Vec::new()));
        let first = HardState {
            term: 7,
            vote: 2,
            commit: 0,
        };
        wal.store_replication_state(first, Some(b"voters 1 2 3"))
            .unwrap();
        // Without a new membership blob the old one stays.
        let second = HardState {
            term: 8,
            vote: 3,
            commit: 0,
        };
        wal.store_replication_state(second, None).unwrap();
        assert_eq!(wal.replication_state(), (second, b"voters 1 2 3".to_vec()));

        let too_big = vec![0u8; MEMBERSHIP_BYTES_MAX + 1];
        let err = wal
            .store_replication_state(first, Some(&too_big))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        // The refusal poisoned nothing and changed nothing.
        wal.append_durable(b"still writable").unwrap();
        assert_eq!(wal.replication_state().0, second, "{}", t.name);
        drop(wal);

        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(
            wal.replication_state(),
            (second, b"voters 1 2 3".to_vec()),
            "{}",
            t.name
        );
    }
}

/// `close_shared` closes a log that other handles still share: each of them, and each reader,
/// then gets `Closed`; what was appended is durable, and the directory opens again at once.
#[test]
fn a_shared_log_closes_for_every_holder_and_frees_its_directory() {
    let dir = rwal_tests::TempDir::new("close-shared");
    let wal = Arc::new(Wal::open(dir.path(), Options::new()).unwrap());
    let first = wal.append_batch(&[b"one".as_slice(), b"two"]).unwrap();
    let mut reader = wal.reader(1).unwrap();
    let pin = wal.pin("backup", 1).unwrap();
    let other = wal.clone();
    other.check_usable().unwrap();

    wal.close_shared().unwrap();
    assert!(matches!(other.check_usable(), Err(Error::Closed)));
    assert!(matches!(other.append(b"three"), Err(Error::Closed)));
    assert!(matches!(reader.next(), Err(Error::Closed)));
    assert!(matches!(other.reader(1), Err(Error::Closed)));
    assert!(matches!(other.pin("late", 1), Err(Error::Closed)));
    assert!(matches!(pin.move_to(2), Err(Error::Closed)));
    // A second close, through another holder, has nothing left to do.
    other.close_shared().unwrap();

    // Opened again while the old handles are still alive: the directory lock was released.
    let reopened = Wal::open(dir.path(), Options::new()).unwrap();
    assert_eq!(reopened.durable_lsn(), first + 1);
    let mut reader = reopened.reader(1).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().data, b"one");
    drop(other);
    drop(wal);
}

/// `check_read_start` gives the errors `reader` would, and starts nothing.
#[test]
fn check_read_start_answers_like_reader() {
    let dir = rwal_tests::TempDir::new("check-read-start");
    let wal = Wal::open(dir.path(), Options::new()).unwrap();
    wal.append_batch(&[b"a".as_slice(), b"b", b"c"]).unwrap();
    let last = wal.last_lsn();
    assert_eq!(last, 3);
    for from in [1, last, last + 1] {
        wal.check_read_start(from).unwrap();
        assert!(wal.reader(from).is_ok());
    }
    assert!(matches!(
        wal.check_read_start(last + 2),
        Err(Error::NotFound { lsn, last_lsn }) if lsn == last + 2 && last_lsn == last
    ));
    assert!(matches!(wal.reader(last + 2), Err(Error::NotFound { .. })));
    wal.close_shared().unwrap();
    assert!(matches!(wal.check_read_start(1), Err(Error::Closed)));
}

/// A segment file name whose sequence no log reaches (hostile, or damage) is refused by name;
/// the next sequence after it would overflow.
#[test]
fn a_segment_sequence_past_the_bound_is_refused_by_name() {
    let temp = rwal_tests::TempDir::new("sequence-bound");
    let dir = temp.join("log");
    let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20)).unwrap();
    wal.append(b"kept").unwrap();
    wal.close().unwrap();
    let hostile = format!("{}.seg", u64::MAX);
    std::fs::write(dir.join(&hostile), vec![0u8; 1 << 20]).unwrap();
    match Wal::open(&dir, Options::new()) {
        Err(rwal_wal::Error::BadFile { path, reason }) => {
            assert!(path.ends_with(&hostile), "{path:?}");
            assert!(reason.contains("sequence number above"), "{reason}");
        }
        Err(other) => panic!("expected BadFile, got {other}"),
        Ok(_) => panic!("opened with {hostile}"),
    }
    std::fs::remove_file(dir.join(&hostile)).unwrap();
    let wal = Wal::open(&dir, Options::new()).unwrap();
    assert_eq!(wal.read(1).unwrap(), b"kept");
}
