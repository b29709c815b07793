//! A child forked from inside a node's callback (an engine that forks to write its snapshot, as
//! Redis does) frees its copy of the node with `rwal_node_close`, as a child forked from any
//! other thread does.
//!
//! Alone in its binary: the child runs code after the fork, which is better done with no other
//! test's threads running (one may hold a lock the child would wait for forever).

use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use rwal::*;
use rwal_tests::wait_child;

/// The node, for the apply callback (set once `rwal_node_open` returned).
static NODE: AtomicPtr<rwal_node> = AtomicPtr::new(std::ptr::null_mut());
/// The child the apply callback forked (-1 if the fork failed, 0 until then).
static CHILD: AtomicI32 = AtomicI32::new(0);

fn last_error() -> String {
    let mut buf = [0u8; 1024];
    // SAFETY: buf has 1024 writable bytes.
    unsafe { rwal_last_error(buf.as_mut_ptr().cast(), buf.len()) };
    CStr::from_bytes_until_nul(&buf)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// In the child, on the copy of the node's thread: closes its copy of the node. Exits 0 when
/// the close was refused as a forked child's (and so freed the copy), 1 otherwise.
fn close_in_the_child() -> ! {
    // SAFETY: the child's copy of the handle, freed by this call only.
    let status = unsafe { rwal_node_close(NODE.load(Ordering::Acquire)) };
    let message = last_error();
    let ok = status == RWAL_ERR_INVALID_ARGUMENT && message.contains("forked from process");
    if !ok {
        eprintln!("in the forked child, rwal_node_close returned {status}: {message}");
    }
    // SAFETY: ends the child at once, running nothing of the parent's.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// Forks on the record "fork"; the test waits for the child.
unsafe extern "C" fn apply(
    _userdata: *mut c_void,
    _lsn: u64,
    _epoch: u64,
    data: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the node passes `len` readable bytes.
    if unsafe { std::slice::from_raw_parts(data, len) } != b"fork" {
        return 0;
    }
    // SAFETY: the child only closes its copy of the node and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        close_in_the_child();
    }
    CHILD.store(pid, Ordering::Release);
    0
}

unsafe extern "C" fn snapshot(_userdata: *mut c_void, _sink: *mut rwal_snapshot_sink) -> c_int {
    1 // no checkpoint: this one-node cluster never seeds a follower
}

unsafe extern "C" fn restore(
    _userdata: *mut c_void,
    _lsn: u64,
    _epoch: u64,
    _data: *const u8,
    _len: usize,
) -> c_int {
    0
}

/// Before: the child's close was refused as a call on the node's own thread (the child's one
/// thread is a copy of it), freed nothing and said "the node stays open" (found by review on
/// 2026-12-07).
#[test]
fn a_child_forked_in_a_callback_frees_its_copy_of_the_node() {
    let dir = std::env::temp_dir().join(format!("rwal-ffi-fork-callback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let secret = b"a secret of thirty-two bytes ...";
    let listen = CString::new("127.0.0.1:0").unwrap();
    let mut opts = std::ptr::null_mut();
    let mut node = std::ptr::null_mut();
    let (mut lsn, mut epoch) = (0u64, 0u64);
    // SAFETY: the options and the node are the handles these calls return, used on this
    // thread and freed here; the callbacks are functions of this file; every pointer passed
    // is valid for the call.
    unsafe {
        assert_eq!(rwal_node_options_new(1, path.as_ptr(), &mut opts), RWAL_OK);
        assert_eq!(
            rwal_node_options_set_cluster(opts, 7, secret.as_ptr(), secret.len()),
            RWAL_OK,
            "{}",
            last_error()
        );
        assert_eq!(rwal_node_options_set_listen(opts, listen.as_ptr()), RWAL_OK);
        assert_eq!(rwal_node_options_set_voters(opts, &1, 1, false), RWAL_OK);
        assert_eq!(
            rwal_node_options_set_callbacks(
                opts,
                Some(apply),
                Some(snapshot),
                Some(restore),
                None,
                std::ptr::null_mut()
            ),
            RWAL_OK
        );
        assert_eq!(rwal_node_open(opts, &mut node), RWAL_OK, "{}", last_error());
        rwal_node_options_free(opts);
        NODE.store(node, Ordering::Release);
        // Proposed once the node has elected itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status =
                rwal_node_propose_and_wait(node, b"fork".as_ptr(), 4, 30_000, &mut lsn, &mut epoch);
            if status == RWAL_ERR_NOT_LEADER && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            assert_eq!(status, RWAL_OK, "{}", last_error());
            break;
        }
    }
    let child = CHILD.load(Ordering::Acquire);
    assert!(child > 0, "the apply callback did not fork");
    assert_eq!(
        wait_child(child, Duration::from_secs(20)),
        0,
        "the forked child's close"
    );
    // The parent's node goes on.
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            rwal_node_propose_and_wait(node, b"after".as_ptr(), 5, 30_000, &mut lsn, &mut epoch),
            RWAL_OK,
            "{}",
            last_error()
        );
        assert_eq!(rwal_node_close(node), RWAL_OK, "{}", last_error());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
