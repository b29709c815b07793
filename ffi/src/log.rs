//! `rwal_log`: open, append, commit, read, truncate, close.

use std::ffi::{c_char, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rwal_wal::{Options, Wal};

use crate::logging;
use crate::options::rwal_options;
use crate::status::{
    boundary, guarded, invalid, non_null, rwal_status, Failure, RWAL_ERR_BUFFER_TOO_SMALL,
};

/// An open log. Every function taking it may be called from any thread at once, except
/// `rwal_close`, which must be the last call on it.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct rwal_log {
    pub(crate) wal: Wal,
}

/// One record of a batch: `len` bytes at `data` (`data` may be NULL when `len` is 0).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct rwal_slice {
    /// The record's bytes.
    pub data: *const u8,
    /// Their length.
    pub len: usize,
}

/// Group-commit counters (see `rwal_stats_get`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rwal_stats {
    /// Syncs issued by committers.
    pub syncs: u64,
    /// Records made durable by them.
    pub records_synced: u64,
    /// Bytes (as stored) made durable by them.
    pub bytes_synced: u64,
    /// The most records one sync made durable.
    pub max_records_per_sync: u64,
    /// Commit calls made.
    pub commits: u64,
}

/// The log behind a handle, or an error for NULL.
unsafe fn log<'a>(log: *const rwal_log) -> Result<&'a Wal, Failure> {
    non_null(log, "log")?;
    // SAFETY: non-NULL; the caller passes a handle from rwal_open not yet closed.
    Ok(unsafe { &(*log).wal })
}

/// Bytes from a pointer and a length (NULL allowed for an empty range).
pub(crate) unsafe fn bytes<'a>(
    data: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    non_null(data, name)?;
    if isize::try_from(len).is_err() {
        // No object is that large; a slice of it would be undefined behaviour.
        return Err(invalid(format!(
            "{name}: a length of {len} bytes cannot be right"
        )));
    }
    // SAFETY: the caller gives `len` readable bytes at `data`, unchanged during the call.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// `data`'s address for C, valid even when `data` is empty: an empty Rust slice points at a
/// dangling address, and C makes even `memcpy(dst, data, 0)` undefined on an invalid pointer.
pub(crate) fn c_bytes(data: &[u8]) -> *const u8 {
    static EMPTY: u8 = 0;
    if data.is_empty() {
        &EMPTY
    } else {
        data.as_ptr()
    }
}

/// Writes an output the caller asked for.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: callers checked `out` for NULL; the caller of the API gives writable memory.
    unsafe { out.write(value) }
}

/// Copies `items` into the caller's buffer of `cap` items at `buf` and writes their count to
/// `*len_out` (checked non-NULL by the caller). `RWAL_ERR_BUFFER_TOO_SMALL` if they do not fit,
/// with `*len_out` the count needed (nothing else written) and `too_small` saying what;
/// `buf` may be NULL while there is nothing to copy.
///
/// # Safety
/// `buf` is NULL or has `cap` writable items; `len_out` is writable.
pub(crate) unsafe fn put_slice<T: Copy>(
    items: &[T],
    buf: *mut T,
    cap: usize,
    len_out: *mut usize,
    too_small: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if items.len() > cap {
        // SAFETY: forwarded caller contract.
        unsafe { put(len_out, items.len()) };
        return Err(Failure {
            status: RWAL_ERR_BUFFER_TOO_SMALL,
            message: too_small(),
        });
    }
    if !items.is_empty() {
        non_null(buf, "buf")?;
        // SAFETY: `buf` has `cap >= items.len()` writable items.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len()) };
    }
    // SAFETY: forwarded caller contract.
    unsafe { put(len_out, items.len()) };
    Ok(())
}

/// Opens (creating it if the options allow: the default) the log in directory `dir`, takes its
/// lock and recovers it. `opts` NULL means the defaults. On success `*log_out` is the handle;
/// close it with `rwal_close`. Blocks for recovery. `RWAL_ERR_LOCKED` if another handle or
/// process has the directory open; `RWAL_ERR_NO_LOG` if it holds no log and creation is off.
///
/// # Safety
/// `dir` is a NUL-terminated path (any bytes but NUL); `opts` is NULL or live options;
/// `log_out` points to writable memory for one pointer.
#[no_mangle]
pub unsafe extern "C" fn rwal_open(
    dir: *const c_char,
    opts: *const rwal_options,
    log_out: *mut *mut rwal_log,
) -> rwal_status {
    boundary(|| {
        non_null(dir, "dir")?;
        non_null(log_out, "log_out")?;
        // SAFETY: non-NULL and NUL-terminated (the caller's contract).
        let dir = Path::new(OsStr::from_bytes(unsafe { CStr::from_ptr(dir) }.to_bytes()));
        if dir.as_os_str().is_empty() {
            return Err(invalid("dir is empty"));
        }
        let options = if opts.is_null() {
            Options::new()
        } else {
            // SAFETY: non-NULL live options.
            unsafe { &*opts }.options.clone()
        };
        let wal = Wal::open(dir, options)?;
        logging::opened(wal.dir(), wal.recovery_report());
        // SAFETY: checked non-NULL.
        unsafe { put(log_out, Box::into_raw(Box::new(rwal_log { wal }))) };
        Ok(())
    })
}

/// Syncs everything appended, writes the durable watermark, releases the directory and frees
/// the handle, which must not be used again (even when an error is returned). NULL is a no-op.
/// Readers still open get `RWAL_ERR_CLOSED` (`RWAL_ERR_POISONED` if the log had failed before
/// it closed) and must still be freed; so must pins, checkpoint
/// writers and snapshot readers, each of which keeps the closed log's files and mappings open
/// until it is freed. The directory is released at once, unless a reader's last call returned a
/// record: its bytes are a slice of a segment file, which a log opened on the directory again
/// could rewrite. The directory is then released when the last such reader is called again
/// (`RWAL_ERR_CLOSED`) or freed; until then `rwal_open` of it fails with `RWAL_ERR_LOCKED`.
/// In a child forked (without an exec) from the process that opened the log it syncs, writes
/// and releases nothing, which are that process's to do: it frees the child's copy of the
/// handle and returns `RWAL_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `log` is NULL or a handle from `rwal_open`, not used by any other thread during or after
/// this call.
#[no_mangle]
pub unsafe extern "C" fn rwal_close(log: *mut rwal_log) -> rwal_status {
    boundary(|| {
        if log.is_null() {
            return Ok(());
        }
        // SAFETY: a handle from rwal_open, freed only here (the caller's contract).
        let handle = unsafe { Box::from_raw(log) };
        handle.wal.close()?;
        Ok(())
    })
}

/// Appends one record of `len` bytes and writes its LSN to `*lsn_out`. Does not sync it: call
/// `rwal_commit` for durability. It copies the record and returns, except when the record
/// starts a new segment that is not prepared yet (the background thread prepares the next one
/// ahead; without it, at every roll): then it waits for that segment's preparation (its
/// zero-fill or allocation, and syncs), and so do appenders behind it; and with
/// `RWAL_BACKEND_STAGED` or `RWAL_BACKEND_IO_URING`, an appender past 16 MiB of staged bytes
/// not yet written writes them back itself. `RWAL_ERR_INVALID_ARGUMENT` for a record larger
/// than one segment holds (its size less 4 KiB of header and 32 bytes of record header; the
/// segment size of this open's options, which may differ from the one the log was created
/// with).
/// Thread-safe.
///
/// # Safety
/// `log` is a live handle; `data` has `len` readable bytes (NULL if `len` is 0); `lsn_out` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_append(
    log: *mut rwal_log,
    data: *const u8,
    len: usize,
    lsn_out: *mut u64,
) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        // SAFETY: forwarded caller contract.
        let (wal, data) = unsafe { (self::log(log)?, bytes(data, len, "data")?) };
        let lsn = wal.append(data)?;
        // SAFETY: checked non-NULL.
        unsafe { put(lsn_out, lsn) };
        Ok(())
    })
}

/// Appends `count` records with contiguous LSNs; writes the first to `*first_lsn_out`.
/// Thread-safe. An empty batch (`count` 0) is `RWAL_ERR_INVALID_ARGUMENT`; `records` may then
/// be NULL. Not atomic across a crash: until `rwal_commit` returns for the last of them, a
/// crash may leave a prefix of the batch in the log, as of any records not committed; so may
/// a failure that poisons the log in the middle of the batch, though the call then returns
/// the error.
///
/// # Safety
/// `log` is a live handle; `records` points to `count` slices, each with readable bytes;
/// `first_lsn_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_append_batch(
    log: *mut rwal_log,
    records: *const rwal_slice,
    count: usize,
    first_lsn_out: *mut u64,
) -> rwal_status {
    boundary(|| {
        non_null(first_lsn_out, "first_lsn_out")?;
        // SAFETY: forwarded caller contract.
        let wal = unsafe { self::log(log)? };
        let slices: &[rwal_slice] = if count == 0 {
            &[] // `records` may be NULL; the log names the empty batch
        } else {
            non_null(records, "records")?;
            if count > isize::MAX as usize / std::mem::size_of::<rwal_slice>() {
                return Err(invalid(format!(
                    "a count of {count} records cannot be right"
                )));
            }
            // SAFETY: the caller gives `count` slices at `records` (a size that fits, above).
            unsafe { std::slice::from_raw_parts(records, count) }
        };
        let payloads = slices
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // SAFETY: each slice describes readable bytes (the caller's contract).
                unsafe { bytes(s.data, s.len, "records[].data") }
                    .map_err(|f| invalid(format!("record {i}: {}", f.message)))
            })
            .collect::<Result<Vec<&[u8]>, Failure>>()?;
        let first = wal.append_batch(&payloads)?;
        // SAFETY: checked non-NULL.
        unsafe { put(first_lsn_out, first) };
        Ok(())
    })
}

/// Returns once every record up to `lsn` is durable; one sync serves every thread waiting at
/// the time. Blocks. Thread-safe. `RWAL_ERR_NOT_FOUND` for an LSN never appended; LSN 0 (nothing)
/// returns `RWAL_OK` at once, unless the log failed (`RWAL_ERR_POISONED`, as for any LSN).
///
/// # Safety
/// `log` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn rwal_commit(log: *mut rwal_log, lsn: u64) -> rwal_status {
    // SAFETY: forwarded caller contract.
    boundary(|| Ok(unsafe { self::log(log)? }.commit(lsn)?))
}

/// Commits everything appended so far; writes the LSN now durable to `*lsn_out` (may be NULL).
/// Blocks until it is durable, as `rwal_commit` does. Thread-safe.
///
/// # Safety
/// `log` is a live handle; `lsn_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_sync(log: *mut rwal_log, lsn_out: *mut u64) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let lsn = unsafe { self::log(log)? }.sync()?;
        if !lsn_out.is_null() {
            // SAFETY: non-NULL.
            unsafe { put(lsn_out, lsn) };
        }
        Ok(())
    })
}

/// Writes one of the log's LSNs to `*lsn_out`.
unsafe fn lsn(log: *const rwal_log, lsn_out: *mut u64, which: fn(&Wal) -> u64) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        // SAFETY: forwarded caller contract.
        let lsn = which(unsafe { self::log(log)? });
        // SAFETY: checked non-NULL.
        unsafe { put(lsn_out, lsn) };
        Ok(())
    })
}

/// The oldest retained LSN (1 for a new log).
///
/// # Safety
/// `log` is a live handle; `lsn_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_first_lsn(log: *const rwal_log, lsn_out: *mut u64) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe { lsn(log, lsn_out, Wal::first_lsn) }
}

/// The newest appended LSN (0 for a new log).
///
/// # Safety
/// `log` is a live handle; `lsn_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_last_lsn(log: *const rwal_log, lsn_out: *mut u64) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe { lsn(log, lsn_out, Wal::last_lsn) }
}

/// The newest durable LSN: every record up to it survives a crash.
///
/// # Safety
/// `log` is a live handle; `lsn_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_durable_lsn(log: *const rwal_log, lsn_out: *mut u64) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe { lsn(log, lsn_out, Wal::durable_lsn) }
}

/// Copies the payload of durable record `lsn` into `buf` (`cap` bytes) and its length to
/// `*len_out`. If `cap` is too small: `RWAL_ERR_BUFFER_TOO_SMALL`, nothing copied, and
/// `*len_out` is the length needed. `RWAL_ERR_NOT_FOUND` for an LSN not written,
/// `RWAL_ERR_NOT_DURABLE` for one not durable yet, `RWAL_ERR_COMPACTED` below the first
/// retained LSN, `RWAL_ERR_INVALID_ARGUMENT` for LSN 0 (LSNs start at 1). On a poisoned
/// log, the records made durable before the failure are still read (but those a truncation
/// or a reset that failed part way removes), and any other is `RWAL_ERR_POISONED`. The record
/// is copied from a memory mapping, whatever the backend: a media error under it ends the
/// process with `SIGBUS`, not an error. Thread-safe.
///
/// # Safety
/// `log` is a live handle; `buf` has `cap` writable bytes (NULL if `cap` is 0); `len_out` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_read(
    log: *const rwal_log,
    lsn: u64,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> rwal_status {
    boundary(|| {
        non_null(len_out, "len_out")?;
        // SAFETY: forwarded caller contract.
        let data = unsafe { self::log(log)? }.read(lsn)?;
        // SAFETY: forwarded caller contract; `len_out` checked non-NULL.
        unsafe {
            put_slice(&data, buf, cap, len_out, || {
                format!("record {lsn} has {} bytes, the buffer {cap}", data.len())
            })
        }
    })
}

/// Durably removes every record after `lsn`; the next append gets `lsn + 1`.
/// `RWAL_ERR_PINNED` while a reader or pin is past `lsn`; `RWAL_ERR_NOT_FOUND` if `lsn` is past
/// the last record; `RWAL_ERR_COMPACTED` if `lsn + 1` is below the first retained LSN;
/// `RWAL_ERR_INVALID_ARGUMENT` if the latest checkpoint is past `lsn` (a cut may not remove
/// what a checkpoint covers). Blocks. Thread-safe.
///
/// # Safety
/// `log` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn rwal_truncate_after(log: *mut rwal_log, lsn: u64) -> rwal_status {
    // SAFETY: forwarded caller contract.
    boundary(|| Ok(unsafe { self::log(log)? }.truncate_after(lsn)?))
}

/// Group-commit counters: syncs, records and bytes per sync.
///
/// # Safety
/// `log` is a live handle; `stats_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_stats_get(
    log: *const rwal_log,
    stats_out: *mut rwal_stats,
) -> rwal_status {
    boundary(|| {
        non_null(stats_out, "stats_out")?;
        // SAFETY: forwarded caller contract.
        let log = unsafe { self::log(log)? };
        // The counters are under the group-commit lock, which in a forked child may be held by
        // a thread it does not have.
        log.check_opener_process("rwal_stats_get")?;
        let s = log.stats();
        let stats = rwal_stats {
            syncs: s.syncs,
            records_synced: s.records_synced,
            bytes_synced: s.bytes_synced,
            max_records_per_sync: s.max_records_per_sync,
            commits: s.commits,
        };
        // SAFETY: checked non-NULL.
        unsafe { put(stats_out, stats) };
        Ok(())
    })
}

/// What recovery found and decided when the log was opened (see `rwal_recovery_report_get`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rwal_recovery_report {
    /// The recovery mode, one of `RWAL_RECOVERY_*`.
    pub mode: i32,
    /// Segment files read.
    pub segments_scanned: u64,
    /// Valid records kept.
    pub records: u64,
    /// The oldest retained LSN.
    pub first_lsn: u64,
    /// The newest LSN kept.
    pub last_lsn: u64,
    /// The durable watermark the control file held.
    pub control_durable_lsn: u64,
    /// The watermark proven by the control file and the records' own claims.
    pub proven_durable_lsn: u64,
    /// Bytes dropped (zero-filled tails, removed segment files).
    pub bytes_cut: u64,
    /// How many decisions `rwal_recovery_event` can describe.
    pub events: u64,
}

/// What recovery found and decided when this log was opened.
///
/// # Safety
/// `log` is a live handle; `report_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_recovery_report_get(
    log: *const rwal_log,
    report_out: *mut rwal_recovery_report,
) -> rwal_status {
    boundary(|| {
        non_null(report_out, "report_out")?;
        // SAFETY: forwarded caller contract.
        let r = unsafe { self::log(log)? }.recovery_report();
        let mode = match r.mode {
            rwal_wal::RecoveryMode::AbsoluteConsistency => {
                crate::RWAL_RECOVERY_ABSOLUTE_CONSISTENCY
            }
            rwal_wal::RecoveryMode::PointInTime => crate::RWAL_RECOVERY_POINT_IN_TIME,
            rwal_wal::RecoveryMode::SkipCorrupted => crate::RWAL_RECOVERY_SKIP_CORRUPTED,
            _ => crate::RWAL_RECOVERY_TOLERATE_TORN_TAIL,
        };
        let report = rwal_recovery_report {
            mode,
            segments_scanned: r.segments_scanned as u64,
            records: r.records,
            first_lsn: r.first_lsn,
            last_lsn: r.last_lsn,
            control_durable_lsn: r.control_durable_lsn,
            proven_durable_lsn: r.proven_durable_lsn,
            bytes_cut: r.bytes_cut,
            events: r.events.len() as u64,
        };
        // SAFETY: checked non-NULL.
        unsafe { put(report_out, report) };
        Ok(())
    })
}

/// Describes recovery decision `index` (below the report's `events`) as text in `buf`
/// (at most `cap - 1` bytes and a NUL); returns the text's full length, 0 for an index out of
/// range. The text is for people (a log line), not a stable format to parse: the report's
/// counts are the stable part.
///
/// # Safety
/// `log` is a live handle; `buf` is NULL or has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rwal_recovery_event(
    log: *const rwal_log,
    index: u64,
    buf: *mut c_char,
    cap: usize,
) -> usize {
    if log.is_null() {
        return 0;
    }
    guarded(0, || {
        // SAFETY: a live handle.
        let events = &unsafe { &(*log).wal }.recovery_report().events;
        let Some(event) = usize::try_from(index).ok().and_then(|i| events.get(i)) else {
            return 0;
        };
        let text = format!("{event:?}");
        if !buf.is_null() && cap > 0 {
            let n = text.len().min(cap - 1);
            // SAFETY: `cap` writable bytes at `buf`; `n + 1 <= cap`.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        text.len()
    })
}
