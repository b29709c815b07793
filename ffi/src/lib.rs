//! # rwal-ffi
//!
//! The C ABI of rwal (`librwal.so`, `librwal.a`, `include/rwal.h`), following the conventions
//! of `docs/c-api.md`: opaque handles, `rwal_status` codes with fixed values, outputs written
//! only on success, every pointer checked, every call inside a panic boundary. This crate is
//! the only place with `extern "C"`.

#![warn(missing_docs)]

mod checkpoint;
mod log;
mod logging;
mod node;
mod options;
mod reader;
mod status;

use std::ffi::c_char;

pub use checkpoint::*;
pub use log::*;
pub use logging::*;
pub use node::*;
pub use options::*;
pub use reader::*;
pub use status::{
    rwal_status, RWAL_END, RWAL_ERR_ABANDONED, RWAL_ERR_BUFFER_TOO_SMALL, RWAL_ERR_BUSY,
    RWAL_ERR_CLOSED, RWAL_ERR_COMPACTED, RWAL_ERR_CORRUPTED, RWAL_ERR_INVALID_ARGUMENT,
    RWAL_ERR_IO, RWAL_ERR_LOCKED, RWAL_ERR_NOT_DURABLE, RWAL_ERR_NOT_FOUND, RWAL_ERR_NOT_LEADER,
    RWAL_ERR_NO_LOG, RWAL_ERR_NO_SPACE, RWAL_ERR_PANIC, RWAL_ERR_PINNED, RWAL_ERR_POISONED,
    RWAL_ERR_REPLICATION, RWAL_ERR_SUPERSEDED, RWAL_ERR_TIMEOUT, RWAL_ERR_UNSUPPORTED, RWAL_OK,
};

/// Major version of this header; `rwal_version()` gives the library's at run time.
pub const RWAL_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const RWAL_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const RWAL_VERSION_PATCH: u32 = 0;

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library's version, "MAJOR.MINOR.PATCH": static, never NULL.
#[no_mangle]
pub extern "C" fn rwal_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The name of a status code ("RWAL_ERR_LOCKED"): static, never NULL.
#[no_mangle]
pub extern "C" fn rwal_status_str(status: rwal_status) -> *const c_char {
    status::name(status).as_ptr().cast()
}

/// Copies this thread's message for its last failed call into `buf` (at most `cap - 1` bytes
/// and a NUL; nothing if `buf` is NULL or `cap` is 0) and returns the message's full length,
/// without the NUL (a buffer of that length plus one holds it whole; the other text getters,
/// which report `RWAL_ERR_BUFFER_TOO_SMALL`, count the NUL in the length they ask for). A
/// call that succeeds leaves the message as it was: the status code says whether a call failed.
///
/// # Safety
/// `buf` is NULL or has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rwal_last_error(buf: *mut c_char, cap: usize) -> usize {
    status::copy_last_error(buf.cast(), cap)
}

/// Test hook (not part of the C ABI): panics inside the same boundary every exported function
/// uses, so that a test sees `RWAL_ERR_PANIC` come back instead of an unwind.
#[doc(hidden)]
pub fn panic_inside_boundary() -> rwal_status {
    status::boundary(|| panic!("forced by a test"))
}

/// Test hook (not part of the C ABI): frees, the way every `_free` function does, an object
/// whose destructor panics, so that a test sees the call return with the panic kept as this
/// thread's last error instead of aborting the process.
#[doc(hidden)]
pub fn panic_inside_free() {
    struct PanicsWhenDropped;
    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("forced by a test");
        }
    }
    let object = Box::into_raw(Box::new(PanicsWhenDropped));
    // SAFETY: from Box::into_raw just above, freed only here.
    unsafe { status::free_boxed(object) }
}

/// Test hook (not part of the C ABI): a value-returning call whose body panics, run the way
/// `rwal_recovery_event` runs; returns what the caller is given.
#[doc(hidden)]
pub fn panic_inside_guarded_call() -> usize {
    status::guarded(0, || panic!("forced by a test"))
}
