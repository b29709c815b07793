//! No process-wide state: after `close` no thread and no file descriptor of the log's is left,
//! and a forked child can open logs of its own.
//!
//! Alone in its binary, on purpose: it counts the process's threads by their name, and the
//! tests of one binary run in parallel. Beside a test opening logs with background threads (it
//! was in `lifecycle.rs`, beside one), it could fail when that test's thread was counted after
//! this close, and its check that the log's own thread runs could pass on the other log's
//! thread. The fork, too, is better done with no other test's threads running.

use rwal_tests::TempDir;
use rwal_wal::{Error, Options, Wal};

/// Descriptors of this process open on `dir` or a file in it (the test harness has descriptors
/// of its own: only these are the log's).
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

/// After `close` no thread of the log runs and no descriptor of its directory is open; then a
/// forked child opens, uses and closes a log of its own.
#[test]
fn close_leaves_no_thread_or_descriptor_and_a_forked_child_opens_logs() {
    let temp = TempDir::new("process-state");
    let dir = temp.join("parent");
    let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20)).unwrap();
    // As /proc names the descriptors' targets.
    let dir = dir.canonicalize().unwrap();
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
