//! Status codes, this thread's last error message, and the boundary every exported function
//! runs inside: pointers checked, panics caught, errors turned into codes.

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rwal_wal::Error;

/// The result of every fallible call: `RWAL_OK` (0), `RWAL_END` (1), or a negative error code.
/// The values are fixed and never renumbered.
#[allow(non_camel_case_types)]
pub type rwal_status = i32;

/// Success.
pub const RWAL_OK: rwal_status = 0;
/// A reader has no further durable record.
pub const RWAL_END: rwal_status = 1;
/// An argument or option is out of range, or a required pointer is NULL.
pub const RWAL_ERR_INVALID_ARGUMENT: rwal_status = -1;
/// An operating-system call failed; the handle stays usable. (A failed write or sync of the
/// log's records or control file poisons the log instead: `RWAL_ERR_POISONED`.)
pub const RWAL_ERR_IO: rwal_status = -2;
/// Acknowledged data is damaged, or a file of the log is not what it should be.
pub const RWAL_ERR_CORRUPTED: rwal_status = -3;
/// An earlier write or sync failed; the log accepts nothing more (reopen it).
pub const RWAL_ERR_POISONED: rwal_status = -4;
/// The disk is full, or the disk quota is used up (the message says which), where the log can
/// still refuse cleanly: creating a segment (an append that needs one, before it takes an
/// LSN), writing a checkpoint's snapshot, receiving a node's snapshot. The log stays usable,
/// and those calls work again once space is freed (from `rwal_open`, nothing was opened). A
/// full disk met while records already appended are written back or synced, or while the
/// control file is written (after a checkpoint's snapshot, a truncation, a watermark update;
/// possible on a copy-on-write file system or under a quota, where preallocated files do not
/// reserve their blocks), poisons the log instead: `RWAL_ERR_POISONED`.
pub const RWAL_ERR_NO_SPACE: rwal_status = -5;
/// Another open log (in this or another process) holds the directory, or a reader of a closed
/// one still holds a record (see `rwal_close`).
pub const RWAL_ERR_LOCKED: rwal_status = -6;
/// The LSN was removed by compaction.
pub const RWAL_ERR_COMPACTED: rwal_status = -7;
/// No record with this LSN was ever written (or it was cut).
pub const RWAL_ERR_NOT_FOUND: rwal_status = -8;
/// The buffer is too small; `*len_out` says how many bytes are needed (for text, its NUL
/// included).
pub const RWAL_ERR_BUFFER_TOO_SMALL: rwal_status = -9;
/// This machine or build cannot do what was asked (io_uring, O_DIRECT, a format version).
pub const RWAL_ERR_UNSUPPORTED: rwal_status = -10;
/// A wait ran out of time.
pub const RWAL_ERR_TIMEOUT: rwal_status = -11;
/// The library panicked: a bug in rwal. The handle should not be used further, except to
/// close or free it (which releases its memory and its directory; a close or free that
/// returns this has released the handle already, but `rwal_node_close`: see there).
pub const RWAL_ERR_PANIC: rwal_status = -12;
/// The directory holds no log and the options did not ask to create one.
pub const RWAL_ERR_NO_LOG: rwal_status = -13;
/// A reader, pin or checkpoint writer holds records the operation would remove.
pub const RWAL_ERR_PINNED: rwal_status = -14;
/// The log was closed.
pub const RWAL_ERR_CLOSED: rwal_status = -15;
/// This node is not the leader: `rwal_node_leader` names the one it knows of.
pub const RWAL_ERR_NOT_LEADER: rwal_status = -16;
/// Another entry was committed at the proposal's LSN: the proposal never will be.
pub const RWAL_ERR_SUPERSEDED: rwal_status = -17;
/// Not now, nothing done: too many proposals wait to be committed, or a membership change
/// must wait for the one before it or for its learner to catch up. Retry later.
pub const RWAL_ERR_BUSY: rwal_status = -18;
/// The consensus layer failed (see `rwal_last_error`); the node stops.
pub const RWAL_ERR_REPLICATION: rwal_status = -19;
/// The checkpoint was abandoned: the node began installing a leader's snapshot, which replaces
/// the log the checkpoint described. Nothing of it was kept; the node goes on.
pub const RWAL_ERR_ABANDONED: rwal_status = -20;
/// The record was appended but is not durable yet: readers never see past the durable LSN.
/// Commit it (or wait for the commit that covers it) and read again.
pub const RWAL_ERR_NOT_DURABLE: rwal_status = -21;

/// The code of an error.
pub(crate) fn code(error: &Error) -> rwal_status {
    match error {
        Error::Io { .. } => RWAL_ERR_IO,
        Error::NoSpace { .. } => RWAL_ERR_NO_SPACE,
        Error::Locked { .. } => RWAL_ERR_LOCKED,
        Error::NoLog { .. } => RWAL_ERR_NO_LOG,
        Error::InvalidArgument { .. } | Error::RecordTooLarge { .. } => RWAL_ERR_INVALID_ARGUMENT,
        Error::Corrupted { .. } | Error::BadFile { .. } => RWAL_ERR_CORRUPTED,
        Error::UnsupportedVersion { .. } | Error::Unsupported { .. } => RWAL_ERR_UNSUPPORTED,
        Error::Poisoned { .. } => RWAL_ERR_POISONED,
        Error::NotFound { .. } => RWAL_ERR_NOT_FOUND,
        Error::NotDurable { .. } => RWAL_ERR_NOT_DURABLE,
        Error::Compacted { .. } => RWAL_ERR_COMPACTED,
        Error::Pinned { .. } | Error::PinInvalidated { .. } => RWAL_ERR_PINNED,
        Error::Timeout { .. } => RWAL_ERR_TIMEOUT,
        Error::Closed => RWAL_ERR_CLOSED,
        _ => RWAL_ERR_IO,
    }
}

/// The static name of a status code.
pub(crate) fn name(status: rwal_status) -> &'static [u8] {
    match status {
        RWAL_OK => b"RWAL_OK\0",
        RWAL_END => b"RWAL_END\0",
        RWAL_ERR_INVALID_ARGUMENT => b"RWAL_ERR_INVALID_ARGUMENT\0",
        RWAL_ERR_IO => b"RWAL_ERR_IO\0",
        RWAL_ERR_CORRUPTED => b"RWAL_ERR_CORRUPTED\0",
        RWAL_ERR_POISONED => b"RWAL_ERR_POISONED\0",
        RWAL_ERR_NO_SPACE => b"RWAL_ERR_NO_SPACE\0",
        RWAL_ERR_LOCKED => b"RWAL_ERR_LOCKED\0",
        RWAL_ERR_COMPACTED => b"RWAL_ERR_COMPACTED\0",
        RWAL_ERR_NOT_FOUND => b"RWAL_ERR_NOT_FOUND\0",
        RWAL_ERR_BUFFER_TOO_SMALL => b"RWAL_ERR_BUFFER_TOO_SMALL\0",
        RWAL_ERR_UNSUPPORTED => b"RWAL_ERR_UNSUPPORTED\0",
        RWAL_ERR_TIMEOUT => b"RWAL_ERR_TIMEOUT\0",
        RWAL_ERR_PANIC => b"RWAL_ERR_PANIC\0",
        RWAL_ERR_NO_LOG => b"RWAL_ERR_NO_LOG\0",
        RWAL_ERR_PINNED => b"RWAL_ERR_PINNED\0",
        RWAL_ERR_CLOSED => b"RWAL_ERR_CLOSED\0",
        RWAL_ERR_NOT_LEADER => b"RWAL_ERR_NOT_LEADER\0",
        RWAL_ERR_SUPERSEDED => b"RWAL_ERR_SUPERSEDED\0",
        RWAL_ERR_BUSY => b"RWAL_ERR_BUSY\0",
        RWAL_ERR_REPLICATION => b"RWAL_ERR_REPLICATION\0",
        RWAL_ERR_ABANDONED => b"RWAL_ERR_ABANDONED\0",
        RWAL_ERR_NOT_DURABLE => b"RWAL_ERR_NOT_DURABLE\0",
        _ => b"RWAL_UNKNOWN_STATUS\0",
    }
}

thread_local! {
    /// This thread's message for its last failed call. Per thread, so calls on other threads
    /// never overwrite it.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error.
pub(crate) fn set_last_error(message: String) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // `try_with`: during the thread's own teardown (a pthread-key destructor calling in) the
    // slot may be gone already; the message is then lost, not the process.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = message);
}

/// Copies this thread's last error into `buf` (at most `cap - 1` bytes and a NUL); returns its
/// full length.
pub(crate) fn copy_last_error(buf: *mut u8, cap: usize) -> usize {
    // During the thread's teardown the slot may be gone: then there is no message (length 0).
    LAST_ERROR
        .try_with(|last| {
            let bytes = last.borrow();
            let bytes = bytes.as_bytes();
            if !buf.is_null() && cap > 0 {
                let n = bytes.len().min(cap - 1);
                // SAFETY: the caller gave `cap` writable bytes at `buf` (rwal_last_error's contract);
                // `n + 1 <= cap`.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, n);
                    *buf.add(n) = 0;
                }
            }
            bytes.len()
        })
        .unwrap_or_else(|_| {
            if !buf.is_null() && cap > 0 {
                // SAFETY: `cap >= 1` writable bytes at `buf`.
                unsafe { *buf = 0 };
            }
            0
        })
}

/// A failure of an exported call: its code and message.
pub(crate) struct Failure {
    pub status: rwal_status,
    pub message: String,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            status: code(&error),
            message: error.to_string(),
        }
    }
}

/// An argument that is NULL or out of range.
pub(crate) fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        status: RWAL_ERR_INVALID_ARGUMENT,
        message: message.into(),
    }
}

/// Runs the body of an exported function: a failure becomes its code and this thread's last
/// error, and a panic becomes `RWAL_ERR_PANIC` instead of unwinding into C.
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), Failure>) -> rwal_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => RWAL_OK,
        Ok(Err(failure)) => {
            set_last_error(failure.message);
            failure.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(format!("panic inside rwal (a bug): {what}"));
            RWAL_ERR_PANIC
        }
    }
}

/// Frees what `Box::into_raw` gave C: the body of every `_free` function. NULL is a no-op.
///
/// Dropping a handle can do real work (a reader freed after `rwal_close` may drop the log's
/// last reference, which unmaps and closes its files), so it runs inside the boundary too: a
/// panic there (a bug) becomes this thread's last error instead of aborting the process at the
/// `extern "C"` edge. The function returns nothing, so the last error is the only trace.
///
/// # Safety
/// `pointer` is NULL or came from `Box::into_raw` of a `T` that is not freed yet and not in use.
pub(crate) unsafe fn free_boxed<T>(pointer: *mut T) {
    if pointer.is_null() {
        return;
    }
    let _ = boundary(|| {
        // SAFETY: the caller's contract: from `Box::into_raw`, freed only here.
        drop(unsafe { Box::from_raw(pointer) });
        Ok(())
    });
}

/// Runs the body of an exported function that returns a value rather than a status: a panic
/// (a bug) becomes this thread's last error, and the function returns `fallback`.
pub(crate) fn guarded<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    let mut result = None;
    let status = boundary(|| {
        result = Some(body());
        Ok(())
    });
    match result {
        Some(value) if status == RWAL_OK => value,
        _ => fallback,
    }
}

/// Checks that a pointer argument is not NULL.
pub(crate) fn non_null<T>(pointer: *const T, name: &str) -> Result<(), Failure> {
    if pointer.is_null() {
        return Err(invalid(format!("{name} is NULL")));
    }
    Ok(())
}
