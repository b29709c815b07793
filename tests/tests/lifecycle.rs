//! The log's life as a process sees it: creation that a crash can interrupt at any step, a
//! close that waits for the readers holding records, and an open that removes only the log's
//! own temporary files. (That no thread or descriptor outlives `close` and a forked child opens
//! logs is in `process_state.rs`, alone in its binary.)

use rwal_tests::TempDir;
use rwal_wal::{Backend, Error, Options, SimDisk, Wal};

/// Creation makes several syncs (control file, its rename, the first segment, the directory);
/// a crash after any of them leaves a directory that opens as an empty log. The failed sync
/// fails the creation while it lands in it, and the steps go past its last sync.
#[test]
fn a_crash_at_any_step_of_creation_leaves_an_empty_log() {
    // The first step at which the creation succeeded, the failure landing after its last sync:
    // how many syncs it makes.
    let mut syncs = None;
    for step in 0..8u64 {
        for seed in 0..10u64 {
            let disk = SimDisk::new();
            let options = Options::new()
                .backend(Backend::Simulated(disk.clone()))
                .segment_bytes(1 << 20)
                .background_threads(false);
            disk.fail_sync_after(step, libc::EIO);
            let created = Wal::open("/sim", options.clone());
            match (&created, syncs) {
                // Every step before the first success crashes inside the creation, and the
                // failure it sees is the injected one.
                (Err(Error::Io { source, .. }), None) => {
                    assert_eq!(source.raw_os_error(), Some(libc::EIO), "step {step}")
                }
                (Err(e), None) => panic!("step {step} seed {seed}: {e}"),
                (Err(e), Some(syncs)) => {
                    panic!("step {step} seed {seed}: {e}, after a creation of {syncs} syncs")
                }
                (Ok(_), _) => {
                    syncs.get_or_insert(step);
                }
            }
            let crashed = disk.crash(seed);
            drop(created);
            let reopened = options.backend(Backend::Simulated(crashed));
            let wal = Wal::open("/sim", reopened)
                .unwrap_or_else(|e| panic!("step {step} seed {seed}: {e}"));
            assert_eq!(
                (wal.first_lsn(), wal.last_lsn()),
                (1, 0),
                "step {step} seed {seed}"
            );
            assert_eq!(wal.append_durable(b"first").unwrap(), 1);
        }
    }
    // Five on the simulated disk now: the control file, the directory twice, the first
    // segment, the directory.
    let syncs = syncs.expect("a step past the creation's last sync");
    assert!(syncs > 0, "the failure landed in the creation");
}

/// A record a reader returned is a slice of the segment's mapping. Closing the log used to
/// release the directory at once, and a log opened on it again could rewrite the file under a
/// record still borrowed (a truncation there, then an append into the same bytes). A close now
/// leaves the directory locked until every reader holding a record lets go of it: called again
/// or dropped. A reader whose last call returned none holds nothing.
#[test]
fn a_close_leaves_the_directory_locked_while_a_reader_holds_a_record() {
    let temp = TempDir::new("record-holders");
    let options = Options::new().background_threads(false);
    let wal = Wal::open(temp.path(), options.clone()).unwrap();
    for payload in [&b"one"[..], b"two", b"three"] {
        wal.append(payload).unwrap();
    }
    wal.sync().unwrap();
    let mut holding = wal.reader(2).unwrap();
    let mut at_the_end = wal.reader(3).unwrap();
    assert_eq!(at_the_end.next().unwrap().unwrap().lsn, 3);
    assert!(at_the_end.next().unwrap().is_none(), "at the end");
    let mut dropped = wal.reader(1).unwrap();
    assert_eq!(dropped.next().unwrap().unwrap().data, b"one");
    let record = holding.next().unwrap().unwrap();
    assert_eq!(record.data, b"two");
    wal.close().unwrap();
    match Wal::open(temp.path(), options.clone()) {
        Err(Error::Locked { dir, holder }) => {
            assert_eq!(dir, temp.path());
            assert_eq!(holder, Some(std::process::id()), "the reader's process");
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(reopened) => {
            reopened.truncate_after(1).unwrap();
            reopened.append(b"TWO").unwrap();
            reopened.sync().unwrap();
            panic!(
                "reopened while a record was borrowed, which now reads {:?}",
                String::from_utf8_lossy(record.data)
            );
        }
    }
    assert_eq!(record.data, b"two");
    drop(dropped);
    assert!(
        matches!(
            Wal::open(temp.path(), options.clone()),
            Err(Error::Locked { .. })
        ),
        "one reader still holds a record"
    );
    assert!(matches!(holding.next(), Err(Error::Closed)));
    let reopened = Wal::open(temp.path(), options).expect("every reader let go");
    assert_eq!(reopened.read(2).unwrap(), b"two");
    drop(at_the_end);
    drop(holding);
}

/// Opening removes only the log's own temporary files, and only in a directory that holds a log
/// or becomes one: a user's `notes.tmp` beside the log stays, an open that finds no log removes
/// nothing, and a directory named like a `.tmp` file does not fail the open. Every `*.tmp`
/// used to be removed, before the open looked for a log.
#[test]
fn opening_removes_the_logs_temporary_files_only() {
    let dir = rwal_tests::TempDir::new("own-temps");
    let path = dir.join("log");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("notes.tmp"), b"the user's").unwrap();
    std::fs::create_dir(path.join("drafts.tmp")).unwrap();
    let missing = Wal::open(&path, Options::new().create_if_missing(false));
    assert!(matches!(missing, Err(Error::NoLog { .. })), "{missing:?}");
    assert!(
        path.join("notes.tmp").exists(),
        "removed by an open that found no log"
    );
    Wal::open(&path, Options::new().segment_bytes(1 << 20))
        .unwrap()
        .close()
        .unwrap();
    // Leftovers of the log's own making, as a crash leaves them.
    let own = [
        "control.tmp",
        "00000000000000000007.seg.tmp",
        "00000000000000000003.seg.removed.tmp",
        "00000000000000000004.seg.recycled.tmp",
        "snapshot-00000000000000000009.snap.123-4.tmp",
        "odirect-probe-77-0.tmp",
        // As builds before 2026-11-30 named them.
        "snapshot-00000000000000000009.snap.tmp",
        "snapshot-00000000000000000009.snap.3.tmp",
        "odirect-probe.tmp",
    ];
    for name in own {
        std::fs::write(path.join(name), b"half made").unwrap();
    }
    Wal::open(&path, Options::new().segment_bytes(1 << 20))
        .unwrap()
        .close()
        .unwrap();
    for name in own {
        assert!(!path.join(name).exists(), "{name} was left");
    }
    assert_eq!(
        std::fs::read(path.join("notes.tmp")).unwrap(),
        b"the user's",
        "a file not of the log's making was removed"
    );
    assert!(path.join("drafts.tmp").is_dir());
}
