//! The optional log callback: the library prints nothing; what an operator should see goes to
//! the function the application registers.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;

use rwal_wal::{RecoveryEvent, RecoveryReport};

use crate::status::{rwal_status, set_last_error, RWAL_ERR_INVALID_ARGUMENT, RWAL_OK};

/// A message's level: one of the `RWAL_LOG_*` values.
#[allow(non_camel_case_types)]
pub type rwal_log_level = i32;
/// Something failed.
pub const RWAL_LOG_ERROR: rwal_log_level = 1;
/// Something was repaired or dropped (recovery cut a torn tail, skipped damage).
pub const RWAL_LOG_WARN: rwal_log_level = 2;
/// Normal events (a log opened).
pub const RWAL_LOG_INFO: rwal_log_level = 3;

/// Receives a message: its level, the NUL-terminated text (valid during the call only), and the
/// `userdata` given to `rwal_set_log_callback`. Called on the thread that caused the message:
/// the caller's (a log's open reports its recovery), or a node's consensus, network or
/// checkpoint threads. (A failure of a log's background thread is not sent here: it is
/// returned by the calls that follow it.) Calls are serialized by one process-wide lock held
/// during the call, which `rwal_set_log_callback` also takes from other threads: a callback
/// that waits for a lock the application holds while calling rwal can deadlock. A child
/// forked while another thread was in the callback (or replacing it) does not wait for that
/// thread, which it does not have: it takes the lock over. From inside
/// the callback, `rwal_set_log_callback` takes effect when the callback returns, and messages
/// caused there are dropped. Other calls into rwal from the callback are not supported: it
/// runs on a node's threads too, and a call that waits for them (`rwal_node_close`) would
/// wait for itself. Nothing may unwind out of it (no C++ exception, no `longjmp`).
#[allow(non_camel_case_types)]
pub type rwal_log_fn = Option<
    unsafe extern "C" fn(level: rwal_log_level, message: *const c_char, userdata: *mut c_void),
>;

struct Sink {
    callback: unsafe extern "C" fn(rwal_log_level, *const c_char, *mut c_void),
    level: rwal_log_level,
    userdata: usize,
}

/// The callback's lock, held during each call and each replacement: true while held. Not a
/// `Mutex`: a child forked while a thread of its parent held one (inside a slow callback, say)
/// inherited it held by a thread the child does not have, and the child's first open, which
/// reports itself through `emit`, waited for ever (found by review on 2026-12-07). A
/// `pthread_atfork` child hook resets it in every child instead (`reset_in_child`).
static HELD: AtomicBool = AtomicBool::new(false);

/// The one process-wide setting of the library, as the API asks for a process-wide callback:
/// NULL, or a `Box<Sink>` that is never changed, only replaced (under `HELD`). A pointer, so
/// that a child forked in the middle of a replacement sees the old setting or the new one,
/// never half of each.
static CURRENT: AtomicPtr<Sink> = AtomicPtr::new(std::ptr::null_mut());

/// Whether `reset_in_child` is registered (or being registered).
static HOOKED: AtomicBool = AtomicBool::new(false);

/// Runs in the child of every `fork`, on its one thread: the lock is held there only if that
/// thread forked from inside the callback (it goes on in the callback and releases the lock
/// when the callback returns); any other hold was a thread the child does not have.
extern "C" fn reset_in_child() {
    HELD.store(IN_CALLBACK.get(), Ordering::Relaxed);
}

/// Registers `reset_in_child` once. (A flag, not a `Once`: a fork while another thread ran a
/// `Once` would leave it running in the child, and the child's first message waiting for it.)
fn hook_forks() {
    if !HOOKED.swap(true, Ordering::AcqRel) {
        // SAFETY: registers a function that lives as long as the process (the library is not
        // unloaded: docs/c-api.md) and only reads a thread-local and stores to an atomic,
        // which a forked child may do. A failure (no memory) leaves forks unhandled, as before
        // the hook.
        unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) };
    }
}

/// Registers the hook as the library is loaded (the shared library, or a program linked with
/// the static one that keeps this object), before any thread can hold the lock: registered
/// at the first hold instead, a thread could take the lock between another's claim of the
/// registration and its call, and a fork then would leave the child waiting for ever (found
/// by review on 2026-12-07). `Hold::take` registers it too, for a static link that dropped
/// this entry.
#[used]
#[link_section = ".init_array"]
static HOOK_FORKS_AT_LOAD: extern "C" fn() = {
    extern "C" fn at_load() {
        hook_forks();
    }
    at_load
};

/// The hold of the callback's lock, released when dropped.
struct Hold;

impl Hold {
    fn take() -> Hold {
        hook_forks();
        let mut waits = 0u32;
        while HELD
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Held by another thread, inside the callback (messages are rare, and a callback
            // may take milliseconds): yield at first, then sleep up to 1 ms a time.
            waits += 1;
            if waits < 16 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(u64::from(waits.min(1000))));
            }
        }
        Hold
    }

    /// Replaces the setting (the lock held, as `self` shows).
    fn replace(&self, sink: Option<Sink>) {
        let new = sink.map_or(std::ptr::null_mut(), |sink| Box::into_raw(Box::new(sink)));
        let old = CURRENT.swap(new, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: a pointer from `Box::into_raw` above, swapped out, so freed once; no
            // other thread reads it, since reads hold the lock too.
            drop(unsafe { Box::from_raw(old) });
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        HELD.store(false, Ordering::Release);
    }
}

thread_local! {
    /// Whether this thread is inside the callback, holding `SINK`'s lock: taking the lock
    /// again would deadlock the thread on itself.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    /// A replacement asked for from inside the callback, applied when it returns.
    static REPLACEMENT: RefCell<Option<Option<Sink>>> = const { RefCell::new(None) };
}

/// Sends messages at `level` and more severe to `callback` (NULL: no messages, the default;
/// `level` is then ignored). Replaces any earlier callback. Called from inside the callback (to
/// remove or replace itself), it takes effect when the callback returns. `RWAL_OK`, or
/// `RWAL_ERR_INVALID_ARGUMENT` with a callback and a `level` that is not one of the
/// `RWAL_LOG_*` values (the earlier callback then stays: a level of 0 would otherwise
/// silence every message, and a level of 4 ask for some that do not exist).
///
/// # Safety
/// `callback` is NULL or a function safe to call from any thread with `userdata` until it is
/// replaced.
#[no_mangle]
pub unsafe extern "C" fn rwal_set_log_callback(
    callback: rwal_log_fn,
    level: rwal_log_level,
    userdata: *mut c_void,
) -> rwal_status {
    if callback.is_some() && !(RWAL_LOG_ERROR..=RWAL_LOG_INFO).contains(&level) {
        set_last_error(format!(
            "log level {level} is not one of RWAL_LOG_ERROR ({RWAL_LOG_ERROR}), RWAL_LOG_WARN \
             ({RWAL_LOG_WARN}) or RWAL_LOG_INFO ({RWAL_LOG_INFO}); the earlier callback stays"
        ));
        return RWAL_ERR_INVALID_ARGUMENT;
    }
    let sink = callback.map(|callback| Sink {
        callback,
        level,
        userdata: userdata as usize,
    });
    if IN_CALLBACK.get() {
        REPLACEMENT.set(Some(sink));
    } else {
        Hold::take().replace(sink);
    }
    RWAL_OK
}

fn emit(level: rwal_log_level, message: &str) {
    if IN_CALLBACK.get() {
        return;
    }
    let hold = Hold::take();
    let current = CURRENT.load(Ordering::Acquire);
    // SAFETY: NULL or a `Box<Sink>` (`Hold::replace`), freed only by a replacement, which
    // needs the lock this thread holds.
    let Some(current) = (unsafe { current.as_ref() }).filter(|s| level <= s.level) else {
        return;
    };
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    IN_CALLBACK.set(true);
    // SAFETY: the callback and userdata were registered together under rwal_set_log_callback's
    // contract; the text outlives the call. Nothing unwinds out of it (an unwind across
    // `extern "C"` aborts), so the flag is always cleared.
    unsafe { (current.callback)(level, text.as_ptr(), current.userdata as *mut c_void) };
    IN_CALLBACK.set(false);
    if let Some(replacement) = REPLACEMENT.take() {
        hold.replace(replacement);
    }
}

/// Sends an informational message (a replicated node's network events: peers connected,
/// connections refused).
pub(crate) fn emit_info(message: &str) {
    emit(RWAL_LOG_INFO, message);
}

/// Sends a message of a replicated node's at its level.
pub(crate) fn emit_node(severity: rwal_replication::Severity, message: &str) {
    let level = match severity {
        rwal_replication::Severity::Error => RWAL_LOG_ERROR,
        rwal_replication::Severity::Warning => RWAL_LOG_WARN,
    };
    emit(level, message);
}

/// Reports an opened log (a node's too) and what its recovery decided.
pub(crate) fn opened(dir: &Path, report: &RecoveryReport) {
    for event in &report.events {
        // A new log is news, not a problem; every other decision dropped, skipped or left
        // something that an operator may want to look at.
        let level = match event {
            RecoveryEvent::Created => RWAL_LOG_INFO,
            _ => RWAL_LOG_WARN,
        };
        emit(level, &format!("{}: recovery: {event:?}", dir.display()));
    }
    emit(
        RWAL_LOG_INFO,
        &format!(
            "{}: opened, LSNs {}..={}, {} records verified",
            dir.display(),
            report.first_lsn,
            report.last_lsn,
            report.records
        ),
    );
}
