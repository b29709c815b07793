//! A child forked while another thread of its parent is inside the log callback opens logs of
//! its own, and reports them through the callback it inherited.
//!
//! Alone in its binary: the child runs code after the fork, which is better done with no other
//! test's threads running (one may hold a lock the child would wait for forever).

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rwal::*;
use rwal_tests::wait_child;

/// Set by the callback while it waits inside the message of the first log's open.
static INSIDE: AtomicBool = AtomicBool::new(false);
/// Keeps the callback waiting there until the test has seen the child's outcome.
static HOLD_ON: AtomicBool = AtomicBool::new(true);
/// Set by the callback in the child when it receives the second log's message.
static CHILD_HEARD: AtomicBool = AtomicBool::new(false);

/// Waits inside the first log's "opened" message until the test lets it go, holding the
/// library's lock of the callback all the while; notes the second log's.
unsafe extern "C" fn on_log(_level: i32, message: *const c_char, _userdata: *mut c_void) {
    // SAFETY: the library passes a NUL-terminated text, valid for the call.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    if text.contains("log-a") && text.contains("opened") {
        INSIDE.store(true, Ordering::Release);
        while HOLD_ON.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        INSIDE.store(false, Ordering::Release);
    } else if text.contains("log-b") && text.contains("opened") {
        CHILD_HEARD.store(true, Ordering::Release);
    }
}

fn open(dir: &Path) -> (i32, *mut rwal_log) {
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let mut log = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path, the default options, a writable output.
    let status = unsafe { rwal_open(path.as_ptr(), std::ptr::null(), &mut log) };
    (status, log)
}

/// In the child: opens and closes a log of its own. Exits 0 when both succeed and the callback
/// heard the open, 1 otherwise. Before the lock of the callback could be taken over, the open
/// waited for ever on the lock the parent's sleeping thread held (found by review on
/// 2026-12-07).
fn open_in_the_child(dir: &Path) -> ! {
    let (status, log) = open(dir);
    let closed = if status == RWAL_OK {
        // SAFETY: the child's own log, closed once.
        unsafe { rwal_close(log) }
    } else {
        status
    };
    let ok = status == RWAL_OK && closed == RWAL_OK && CHILD_HEARD.load(Ordering::Acquire);
    // SAFETY: ends the child at once, running nothing of the parent's.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

#[test]
fn a_child_forked_during_a_log_callback_opens_and_logs() {
    let root = std::env::temp_dir().join(format!("rwal-ffi-fork-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (a, b) = (root.join("log-a"), root.join("log-b"));
    // SAFETY: a function of this file, safe from any thread; no userdata.
    let set = unsafe { rwal_set_log_callback(Some(on_log), RWAL_LOG_INFO, std::ptr::null_mut()) };
    assert_eq!(set, RWAL_OK);
    let opener = std::thread::spawn(move || open(&a).1 as usize);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !INSIDE.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "the first open never logged");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: the child only opens and closes a log of its own and leaves with `_exit`.
    let child = unsafe { libc::fork() };
    if child == 0 {
        open_in_the_child(&b);
    }
    assert!(child > 0, "fork failed");
    // The opener's thread waits inside the callback until the child's outcome is known: the
    // child inherited the lock held.
    let outcome = wait_child(child, Duration::from_secs(20));
    HOLD_ON.store(false, Ordering::Release);
    assert_eq!(outcome, 0, "the forked child's open");
    let log = opener.join().unwrap() as *mut rwal_log;
    assert!(!log.is_null());
    // SAFETY: the log the thread opened, closed once; the callback removed after.
    unsafe {
        assert_eq!(rwal_close(log), RWAL_OK);
        assert_eq!(
            rwal_set_log_callback(None, 0, std::ptr::null_mut()),
            RWAL_OK
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
