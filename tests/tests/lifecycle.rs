//! The log's life as a process sees it: creation that a crash can interrupt at any step, and
//! no process-wide state — after `close` no thread and no file descriptor is left, and a forked
//! child can open logs of its own.

use rwal_tests::TempDir;
use rwal_wal::{Backend, Error, Options, SimDisk, Wal};

/// Descriptors of this process open on `dir` or a file in it (the other test of this file may
/// open and close descriptors of its own meanwhile: only these are the log's).
fn fds_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// This process's threads named `name` (the log names its threads).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Creation makes several syncs (control file, its rename, the first segment, the directory);
/// a crash after any of them leaves a directory that opens as an empty log.
#[test]
fn a_crash_at_any_step_of_creation_leaves_an_empty_log() {
    for step in 0..8u64 {
        for seed in 0..10u64 {
            let disk = SimDisk::new();
            let options = Options::new()
                .backend(Backend::Simulated(disk.clone()))
                .segment_bytes(1 << 20)
                .background_threads(false);
            disk.fail_sync_after(step, libc::EIO);
            let created = Wal::open("/sim", options.clone());
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
}

/// After `close` no thread of the log runs and no descriptor of its directory is open.
#[test]
fn close_leaves_no_thread_or_descriptor_and_a_forked_child_opens_logs() {
    let temp = TempDir::new("lifecycle");
    let dir = temp.join("parent");
    let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20)).unwrap();
    let dir = dir.canonicalize().unwrap(); // as /proc names the descriptors' targets
                                           // A thread names itself once it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while threads_named("rwal-background") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the background thread runs while the log is open"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        fds_in(&dir) > 0,
        "the log holds its directory and files open"
    );
    wal.append_durable(b"parent").unwrap();
    wal.close().unwrap();
    assert_eq!(
        threads_named("rwal-background"),
        0,
        "close joins the log's threads"
    );
    assert_eq!(
        fds_in(&dir),
        0,
        "close closes every descriptor the log opened"
    );

    let child_dir = temp.join("child");
    // SAFETY: the child only opens a log, appends and leaves with _exit; it needs no lock that
    // another thread of this process could hold at the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let outcome = Wal::open(&child_dir, Options::new().segment_bytes(1 << 20))
            .and_then(|wal| wal.append_durable(b"child").and_then(|_| wal.close()));
        // SAFETY: _exit ends the child without running the parent's atexit handlers twice.
        unsafe { libc::_exit(if outcome.is_ok() { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child could not use a log"
    );
    let wal = Wal::open(
        &child_dir,
        Options::new()
            .segment_bytes(1 << 20)
            .create_if_missing(false),
    )
    .unwrap();
    assert_eq!(wal.read(1).unwrap(), b"child");
    assert!(matches!(
        Wal::open(&child_dir, Options::new()),
        Err(Error::Locked { .. })
    ));
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
        Err(Error::Locked { dir }) => assert_eq!(dir, temp.path()),
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
