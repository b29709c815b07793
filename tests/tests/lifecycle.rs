//! The log's life as a process sees it: creation that a crash can interrupt at any step, and
//! no process-wide state — after `close` no thread and no file descriptor is left, and a forked
//! child can open logs of its own.

use rwal_tests::TempDir;
use rwal_wal::{Backend, Error, Options, SimDisk, Wal};

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
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

/// Counts this process's threads and descriptors: the other test of this file runs on the
/// simulated disk without background threads, so it opens neither.
#[test]
fn close_leaves_no_thread_or_descriptor_and_a_forked_child_opens_logs() {
    let temp = TempDir::new("lifecycle");
    let (fds, threads) = (fd_count(), thread_count());
    let wal = Wal::open(temp.join("parent"), Options::new().segment_bytes(1 << 20)).unwrap();
    assert!(
        thread_count() > threads,
        "the background thread runs while the log is open"
    );
    wal.append_durable(b"parent").unwrap();
    wal.close().unwrap();
    assert_eq!(thread_count(), threads, "close joins the log's threads");
    assert_eq!(
        fd_count(),
        fds,
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

/// `close_shared` closes a log that other handles still share: each of them, and each reader,
/// then gets `Closed`; what was appended is durable, and the directory opens again at once.
#[test]
fn a_shared_log_closes_for_every_holder_and_frees_its_directory() {
    let dir = TempDir::new("close-shared");
    let wal = std::sync::Arc::new(Wal::open(dir.path(), Options::new()).unwrap());
    let first = wal.append_batch(&[b"one".as_slice(), b"two"]).unwrap();
    let mut reader = wal.reader(1).unwrap();
    let other = wal.clone();

    wal.close_shared().unwrap();
    assert!(matches!(other.append(b"three"), Err(Error::Closed)));
    assert!(matches!(reader.next(), Err(Error::Closed)));
    assert!(matches!(other.reader(1), Err(Error::Closed)));
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
