//! A process forked while a log is open (a pre-fork server, a Python `multiprocessing` pool)
//! leaves the log to the process that opened it.
//!
//! Alone in its binary: the child runs code after the fork, which is better done with no other
//! test's threads running (one may hold a lock the child would wait for forever).

use std::time::Duration;

use rwal_tests::{wait_child, TempDir};
use rwal_wal::{Error, Options, Wal};

/// Whether `result` is the refusal of a call in a process forked from the log's opener.
fn refused_as_forked<T>(result: Result<T, Error>) -> bool {
    matches!(result, Err(Error::InvalidArgument { reason, .. }) if reason.contains("forked from"))
}

/// The child shares the open file of the directory's lock and inherits the handle. Before:
/// the parent's close left the directory locked for as long as the child lived (the reopen
/// failed with `Locked`, naming the parent itself), the child's append wrote a record over
/// the one the parent had made durable at the same LSN since, and the child's close joined a
/// background thread it does not have and wrote its stale state over the parent's control
/// file. Now the parent reopens at once, and the child's calls are refused and change
/// nothing.
#[test]
fn a_forked_child_leaves_the_log_to_the_process_that_opened_it() {
    let temp = TempDir::new("fork-open");
    let dir = temp.join("log");
    let options = || Options::new().segment_bytes(1 << 20);
    let wal = Wal::open(&dir, options()).unwrap();
    wal.append_durable(b"before").unwrap();
    // A checkpoint being written and a pin, both of the parent's.
    let mut writer = wal.checkpoint_writer(1, 3).unwrap();
    let pin = wal.pin("parent", 1).unwrap();
    let snapshots_being_written = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|name| name.starts_with("snapshot-") && name.ends_with(".tmp"))
            .count()
    };
    assert_eq!(snapshots_being_written(), 1);
    // `go`: the parent lets the child start, and, closed, end; `done`: the child's outcome.
    let mut go = [0; 2];
    let mut done = [0; 2];
    // SAFETY: each array has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::pipe(done.as_mut_ptr()) }, 0);
    // SAFETY: the child waits on the pipe, makes its calls on its copies and leaves with
    // _exit; the test's other threads hold no lock it takes (this binary runs one test).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut byte = 0u8;
        // SAFETY: reads one byte into `byte` from the pipe's read end.
        unsafe {
            libc::close(go[1]);
            libc::close(done[0]);
            libc::read(go[0], (&mut byte as *mut u8).cast(), 1);
        }
        let code: u8 = if !refused_as_forked(wal.append(b"child")) {
            3
        } else if !refused_as_forked(wal.commit(1)) {
            4
        } else if !refused_as_forked(wal.read(1)) {
            5
        } else if !refused_as_forked(wal.reader(1)) {
            6
        } else if !refused_as_forked(wal.checkpoint(1, None)) {
            7
        } else if !refused_as_forked(writer.write(b"abc")) {
            8
        } else if !refused_as_forked(writer.finish()) {
            9
        } else if !refused_as_forked(pin.move_to(1)) {
            10
        } else {
            match wal.close() {
                Err(Error::InvalidArgument { reason, .. }) if reason.contains("forked from") => 0,
                Err(_) => 1,
                Ok(()) => 2,
            }
        };
        // SAFETY: writes the outcome from a live byte, then waits for the parent to close its
        // end of `go` (it reopens the log meanwhile, with this process alive).
        unsafe {
            libc::write(done[1], (&code as *const u8).cast(), 1);
            libc::read(go[0], (&mut byte as *mut u8).cast(), 1);
        }
        // SAFETY: _exit ends the child without running the test harness's exit.
        unsafe { libc::_exit(i32::from(code)) };
    }
    // SAFETY: the parent's copies of the read end of `go` and the write end of `done` are not
    // used.
    unsafe {
        libc::close(go[0]);
        libc::close(done[1]);
    }
    wal.close().unwrap();
    let control = std::fs::read(dir.join("control")).unwrap();
    let mut code = 255u8;
    // SAFETY: writes one byte from a live buffer; reads one into `code`.
    unsafe {
        assert_eq!(libc::write(go[1], b"x".as_ptr().cast(), 1), 1);
        libc::read(done[0], (&mut code as *mut u8).cast(), 1);
        libc::close(done[0]);
    }
    assert_eq!(
        code, 0,
        "a call in the child was not refused as forked (1-2: its close; 3: append, 4: commit, \
         5: read, 6: reader, 7: checkpoint, 8: a checkpoint's write, 9: its finish, 10: a \
         pin's move; 255: the child ended first)"
    );
    assert_eq!(
        std::fs::read(dir.join("control")).unwrap(),
        control,
        "the child wrote the control file"
    );
    assert_eq!(
        snapshots_being_written(),
        1,
        "the child's refused finish removed the parent's snapshot being written"
    );
    // With the child alive, holding copies of every descriptor.
    let again = Wal::open(&dir, options()).expect("the child's copy holds no lock");
    assert_eq!(
        snapshots_being_written(),
        0,
        "the open removes a snapshot its log was not writing"
    );
    again.append_durable(b"after").unwrap();
    again.close().unwrap();
    // SAFETY: closes the write end: the child's read returns, and it exits.
    unsafe { libc::close(go[1]) };
    assert_eq!(wait_child(pid, Duration::from_secs(30)), 0);
    drop(writer);
    drop(pin);
    let wal = Wal::open(&dir, options()).unwrap();
    assert_eq!(wal.read(1).unwrap(), b"before");
    assert_eq!(wal.read(2).unwrap(), b"after");
}
