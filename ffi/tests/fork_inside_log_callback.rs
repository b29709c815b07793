//! A child forked from inside the log callback goes on in that callback on its one thread,
//! which still holds the callback's lock there: a thread the child starts meanwhile waits for
//! the callback to return before it takes the lock, as in any process.
//!
//! Alone in its binary: the child runs code after the fork, which is better done with no other
//! test's threads running (one may hold a lock the child would wait for forever).

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use rwal::*;
use rwal_tests::wait_child;

/// The child the callback forked (-1 if the fork failed, 0 until then).
static CHILD: AtomicI32 = AtomicI32::new(0);
/// Set in the child by the callback just before it returns.
static RETURNING: AtomicBool = AtomicBool::new(false);

/// In the child: started from inside the callback, replaces the callback (which takes its lock)
/// and leaves the child at once, with 0 if the callback had returned by then, 1 if the thread
/// took the lock from the callback still running.
fn replace_the_callback_in_the_child() -> ! {
    // SAFETY: removes the callback; no userdata.
    let status = unsafe { rwal_set_log_callback(None, 0, std::ptr::null_mut()) };
    let ok = status == RWAL_OK && RETURNING.load(Ordering::Acquire);
    // SAFETY: ends the child at once, running nothing of the parent's.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// Forks on the open's message; in the child, starts a thread that takes the callback's lock,
/// and returns 300 ms later.
unsafe extern "C" fn on_log(_level: i32, message: *const c_char, _userdata: *mut c_void) {
    // SAFETY: the library passes a NUL-terminated text, valid for the call.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    if !text.contains("opened") || CHILD.load(Ordering::Acquire) != 0 {
        return;
    }
    // SAFETY: the child starts one thread, sleeps, and is ended by that thread's `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        std::thread::spawn(|| replace_the_callback_in_the_child());
        std::thread::sleep(Duration::from_millis(300));
        RETURNING.store(true, Ordering::Release);
        return;
    }
    CHILD.store(pid, Ordering::Release);
}

/// Before the child's copy of the hold was recorded as the child's (a `pthread_atfork` hook),
/// the thread took it over at once, as it would a parent's thread's hold.
#[test]
fn a_thread_of_a_child_forked_inside_the_callback_waits_for_it() {
    let dir = std::env::temp_dir().join(format!("rwal-ffi-fork-inside-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let mut log = std::ptr::null_mut();
    let parent = std::process::id();
    // SAFETY: a function of this file, safe from any thread; a NUL-terminated path, the
    // default options, a writable output; the log closed once.
    unsafe {
        assert_eq!(
            rwal_set_log_callback(Some(on_log), RWAL_LOG_INFO, std::ptr::null_mut()),
            RWAL_OK
        );
        assert_eq!(
            rwal_open(path.as_ptr(), std::ptr::null(), &mut log),
            RWAL_OK
        );
        // In the child, the open returns here once the callback did: wait to be ended by the
        // child's thread (or killed by the parent's `wait_child`).
        if std::process::id() != parent {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        assert_eq!(rwal_close(log), RWAL_OK);
        assert_eq!(
            rwal_set_log_callback(None, 0, std::ptr::null_mut()),
            RWAL_OK
        );
    }
    let child = CHILD.load(Ordering::Acquire);
    assert!(child > 0, "the callback did not fork");
    assert_eq!(
        wait_child(child, Duration::from_secs(20)),
        0,
        "the child's thread took the lock from the callback still running"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
