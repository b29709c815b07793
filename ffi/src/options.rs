//! `rwal_options`: an opaque options object with setters that validate at once.

use std::time::Duration;

use rwal_wal::{Backend, Options, RecoveryMode};

use crate::status::{boundary, free_boxed, invalid, non_null, rwal_status, Failure, RWAL_OK};

/// Options for `rwal_open`. Create with `rwal_options_new`, free with `rwal_options_free`.
/// Not thread-safe: do not set options from two threads at once.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct rwal_options {
    pub(crate) options: Options,
    /// Whether `rwal_options_set_backend` chose the backend: options without a choice leave a
    /// node on its own default (`rwal_node_options_set_log_options`).
    pub(crate) backend_set: bool,
}

/// The I/O backend: one of the `RWAL_BACKEND_*` values.
#[allow(non_camel_case_types)]
pub type rwal_backend = i32;
/// Segment files written through a shared memory mapping (the default). Assumes a file system
/// that overwrites in place (ext4, XFS): on a copy-on-write or compressing one a full disk
/// would end the process with `SIGBUS` instead of `RWAL_ERR_NO_SPACE`. On btrfs, ZFS and
/// bcachefs, which the library recognises, the default is `RWAL_BACKEND_STAGED` instead, and
/// this value set with `rwal_options_set_backend` makes `rwal_open` fail with
/// `RWAL_ERR_UNSUPPORTED`; on a compressed or deduplicated volume, which it cannot tell, use
/// `RWAL_BACKEND_STAGED` or `RWAL_BACKEND_PWRITE` (`docs/design.md` section 10; with every
/// backend, readers read through a mapping, and a segment file cut short from outside the log
/// `SIGBUS`es them).
pub const RWAL_BACKEND_MMAP: rwal_backend = 0;
/// Segment files written with `pwritev`.
pub const RWAL_BACKEND_PWRITE: rwal_backend = 1;
/// `O_DIRECT` writes through io_uring; `rwal_open` fails with `RWAL_ERR_UNSUPPORTED` where
/// io_uring or `O_DIRECT` is unavailable.
pub const RWAL_BACKEND_IO_URING: rwal_backend = 2;
/// Records staged in memory, one `pwritev2(RWF_DSYNC)` per commit: the fastest commits.
pub const RWAL_BACKEND_STAGED: rwal_backend = 3;

/// What recovery does with damaged records: one of the `RWAL_RECOVERY_*` values.
#[allow(non_camel_case_types)]
pub type rwal_recovery_mode = i32;
/// Any damage, even an unfinished last write, fails `rwal_open`.
pub const RWAL_RECOVERY_ABSOLUTE_CONSISTENCY: rwal_recovery_mode = 0;
/// An unfinished write past the durable watermark is cut; damage below it fails (default).
pub const RWAL_RECOVERY_TOLERATE_TORN_TAIL: rwal_recovery_mode = 1;
/// Keep the longest valid prefix, cutting at the first damaged record.
pub const RWAL_RECOVERY_POINT_IN_TIME: rwal_recovery_mode = 2;
/// Keep every valid record, skipping damaged stretches (holes in the LSNs). The holes stay: every
/// later open must use this mode too (the others refuse the log at the hole, or with
/// `RWAL_RECOVERY_POINT_IN_TIME` cut there, dropping every record after it).
pub const RWAL_RECOVERY_SKIP_CORRUPTED: rwal_recovery_mode = 3;

/// New options with the defaults: create if missing, 64 MiB segments, the mmap backend (the
/// staged one on btrfs, ZFS and bcachefs, as `RWAL_BACKEND_MMAP` says; a node's log,
/// `RWAL_BACKEND_STAGED`, as `rwal_node_options_set_log_options` says), tolerate a torn tail, no commit delay, background thread on. Never NULL.
#[no_mangle]
pub extern "C" fn rwal_options_new() -> *mut rwal_options {
    Box::into_raw(Box::new(rwal_options {
        options: Options::new(),
        backend_set: false,
    }))
}

/// Frees options made by `rwal_options_new`. NULL is a no-op.
///
/// # Safety
/// `opts` is NULL or a pointer from `rwal_options_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rwal_options_free(opts: *mut rwal_options) {
    // SAFETY: the caller's contract: NULL, or from the matching open or new, not yet freed.
    unsafe { free_boxed(opts) }
}

/// Applies `change` to a copy, validates it, and only then stores it.
unsafe fn set(
    opts: *mut rwal_options,
    change: impl FnOnce(Options) -> Result<Options, Failure>,
) -> rwal_status {
    boundary(|| {
        non_null(opts, "opts")?;
        // SAFETY: non-NULL, and the caller passes live options not used by another thread now.
        let opts = unsafe { &mut *opts };
        let candidate = change(opts.options.clone())?;
        candidate.validate()?;
        opts.options = candidate;
        Ok(())
    })
}

/// Size of new segment files in bytes: 1 MiB to 2 GiB, a multiple of 4096 (default 64 MiB).
///
/// # Safety
/// `opts` is NULL (an error) or live options.
#[no_mangle]
pub unsafe extern "C" fn rwal_options_set_segment_size(
    opts: *mut rwal_options,
    bytes: u64,
) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe { set(opts, |o| Ok(o.segment_bytes(bytes))) }
}

/// The I/O backend, one of `RWAL_BACKEND_*` (default `RWAL_BACKEND_MMAP`, or
/// `RWAL_BACKEND_STAGED` on btrfs, ZFS and bcachefs, where the mmap backend set here makes
/// `rwal_open` fail: see `RWAL_BACKEND_MMAP`).
///
/// # Safety
/// `opts` is NULL (an error) or live options.
#[no_mangle]
pub unsafe extern "C" fn rwal_options_set_backend(
    opts: *mut rwal_options,
    backend: rwal_backend,
) -> rwal_status {
    let backend = match backend {
        RWAL_BACKEND_MMAP => Backend::Mmap,
        RWAL_BACKEND_PWRITE => Backend::Pwrite,
        RWAL_BACKEND_IO_URING => Backend::IoUring,
        RWAL_BACKEND_STAGED => Backend::Staged,
        other => {
            return boundary(|| {
                Err(invalid(format!(
                    "backend {other} is not an RWAL_BACKEND_* value"
                )))
            })
        }
    };
    // SAFETY: forwarded caller contract.
    let status = unsafe { set(opts, |o| Ok(o.backend(backend))) };
    if status == RWAL_OK {
        // SAFETY: `set` succeeded, so `opts` is non-NULL and live (the caller's contract).
        unsafe { (*opts).backend_set = true };
    }
    status
}

/// Create the log if the directory holds none (default true).
///
/// # Safety
/// `opts` is NULL (an error) or live options.
#[no_mangle]
pub unsafe extern "C" fn rwal_options_set_create(
    opts: *mut rwal_options,
    create_if_missing: bool,
) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe { set(opts, |o| Ok(o.create_if_missing(create_if_missing))) }
}

/// The recovery mode, one of `RWAL_RECOVERY_*` (default `RWAL_RECOVERY_TOLERATE_TORN_TAIL`).
///
/// # Safety
/// `opts` is NULL (an error) or live options.
#[no_mangle]
pub unsafe extern "C" fn rwal_options_set_recovery_mode(
    opts: *mut rwal_options,
    mode: rwal_recovery_mode,
) -> rwal_status {
    let mode = match mode {
        RWAL_RECOVERY_ABSOLUTE_CONSISTENCY => RecoveryMode::AbsoluteConsistency,
        RWAL_RECOVERY_TOLERATE_TORN_TAIL => RecoveryMode::TolerateTornTail,
        RWAL_RECOVERY_POINT_IN_TIME => RecoveryMode::PointInTime,
        RWAL_RECOVERY_SKIP_CORRUPTED => RecoveryMode::SkipCorrupted,
        other => {
            return boundary(|| {
                Err(invalid(format!(
                    "recovery mode {other} is not an RWAL_RECOVERY_* value"
                )))
            })
        }
    };
    // SAFETY: forwarded caller contract.
    unsafe { set(opts, |o| Ok(o.recovery_mode(mode))) }
}

/// How long the committer leading a sync waits for more records to join it, in microseconds
/// (default 0, at most 1 000 000).
///
/// # Safety
/// `opts` is NULL (an error) or live options.
#[no_mangle]
pub unsafe extern "C" fn rwal_options_set_commit_delay_us(
    opts: *mut rwal_options,
    delay_us: u64,
) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe {
        set(
            opts,
            |o| Ok(o.commit_delay(Duration::from_micros(delay_us))),
        )
    }
}

/// Run the log's background thread (default true). Without it no thread of the log's outlives
/// `rwal_open` (recovery at open checks segments on up to 3 helper threads, joined before it
/// returns): meant for tests that must replay exactly. The appender that needs the next
/// segment then prepares it itself, and the durable watermark goes to the control file only
/// when a checkpoint, a compaction, a reset, a truncation, the close or the next open's
/// recovery writes that file.
///
/// # Safety
/// `opts` is NULL (an error) or live options.
#[no_mangle]
pub unsafe extern "C" fn rwal_options_set_background_thread(
    opts: *mut rwal_options,
    enabled: bool,
) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe { set(opts, |o| Ok(o.background_threads(enabled))) }
}
