//! `rwal_reader`: zero-copy iteration over durable records.

use std::time::Duration;

use rwal_wal::{Error, Reader};

use crate::log::rwal_log;
use crate::status::{boundary, free_boxed, non_null, rwal_status, Failure, RWAL_END};

/// A reader over durable records. One thread at a time; independent of other readers and of
/// the log's other calls. Free it with `rwal_reader_free` (also after `rwal_close`).
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct rwal_reader {
    reader: Reader,
}

/// Opens a reader at `from_lsn` (from `rwal_first_lsn` to `rwal_last_lsn + 1`). While it lives
/// it pins the record it last returned (before its first, the record before `from_lsn`):
/// `rwal_truncate_after` below it is refused, and `rwal_compact` keeps the segments from it on,
/// without a limit (a reader left behind lets the log grow until the disk is full: free it,
/// or use a capped pin, `rwal_pin_open`, to hold records back). After `rwal_close`, a reader
/// whose last call returned a record keeps the directory locked until it is called again,
/// released (`rwal_reader_release`) or freed (`rwal_reader_free`).
/// `RWAL_ERR_COMPACTED` below the first LSN, `RWAL_ERR_NOT_FOUND` past `rwal_last_lsn + 1`,
/// `RWAL_ERR_INVALID_ARGUMENT` for LSN 0 (LSNs start at 1), `RWAL_ERR_POISONED` for a log that
/// accepts nothing more (a handle freed by `rwal_close` must not be passed at all). A
/// poisoned log (a write or sync failed) still gives out the records made durable before the
/// failure (but those a truncation or a reset that failed part way removes), and then
/// `RWAL_ERR_POISONED` where a usable log would say `RWAL_END`: a reader
/// from `rwal_durable_lsn + 1` or beyond is refused with it at once.
///
/// # Safety
/// `log` is a live handle; `reader_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_reader_open(
    log: *mut rwal_log,
    from_lsn: u64,
    reader_out: *mut *mut rwal_reader,
) -> rwal_status {
    boundary(|| {
        non_null(log, "log")?;
        non_null(reader_out, "reader_out")?;
        // SAFETY: a live handle (the caller's contract).
        let reader = unsafe { &(*log).wal }.reader(from_lsn)?;
        // SAFETY: checked non-NULL, writable.
        unsafe { reader_out.write(Box::into_raw(Box::new(rwal_reader { reader }))) };
        Ok(())
    })
}

/// Whether the reader computes each record's checksum as it reads it (`true` by default).
/// Every record in the log at `rwal_open` was checked then by recovery, and records appended
/// since were written by this process: a replay right after the open may turn the second check
/// off (`false`) to read several times as fast. What it still catches is damage done since
/// the open (a page read back from a failing disk, memory corruption); turned off, such damage
/// reaches the caller in a payload, or in a length that still ends within the segment (the
/// payload then runs on into the bytes after it; the next read most likely fails). A wrong
/// LSN, an unknown kind or a length past the segment is `RWAL_ERR_CORRUPTED` either way, and
/// the records of the segment being appended to are checked anyway where reads show copies in
/// progress (the `mmap` and `io_uring` backends). `RWAL_ERR_INVALID_ARGUMENT` for a NULL
/// reader.
///
/// # Safety
/// `reader` is NULL (an error) or a live reader used by this thread only.
#[no_mangle]
pub unsafe extern "C" fn rwal_reader_set_verify_checksums(
    reader: *mut rwal_reader,
    verify: bool,
) -> rwal_status {
    boundary(|| {
        non_null(reader, "reader")?;
        // SAFETY: a live reader used by this thread only.
        unsafe { &mut (*reader).reader }.set_verify_checksums(verify);
        Ok(())
    })
}

/// Next record: writes its LSN, a pointer to its bytes and their length. The bytes stay valid
/// until the next call on this reader or its free. They are read through a memory mapping,
/// whatever the backend: a media error under them ends the process with `SIGBUS`, not an
/// error, as for any mapped file. `RWAL_END` when no further durable record
/// exists (call again later for new ones); on a poisoned log `RWAL_ERR_POISONED` there
/// instead (see `rwal_reader_open`).
///
/// # Safety
/// `reader` is a live reader used by this thread only; the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_reader_next(
    reader: *mut rwal_reader,
    lsn_out: *mut u64,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe { next(reader, lsn_out, data_out, len_out, None) }
}

/// Like `rwal_reader_next`, but waits up to `timeout_us` microseconds for a record to become
/// durable; `RWAL_ERR_TIMEOUT` if none does. Never returns `RWAL_END`: at the end of what is
/// durable it waits (a tailing reader), until the log fails (`RWAL_ERR_POISONED`, after the
/// records made durable before the failure) or closes. Blocks.
///
/// # Safety
/// As `rwal_reader_next`.
#[no_mangle]
pub unsafe extern "C" fn rwal_reader_next_timeout(
    reader: *mut rwal_reader,
    timeout_us: u64,
    lsn_out: *mut u64,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe {
        next(
            reader,
            lsn_out,
            data_out,
            len_out,
            Some(Duration::from_micros(timeout_us)),
        )
    }
}

unsafe fn next(
    reader: *mut rwal_reader,
    lsn_out: *mut u64,
    data_out: *mut *const u8,
    len_out: *mut usize,
    timeout: Option<Duration>,
) -> rwal_status {
    let mut end = false;
    let status = boundary(|| {
        non_null(reader, "reader")?;
        non_null(lsn_out, "lsn_out")?;
        non_null(data_out, "data_out")?;
        non_null(len_out, "len_out")?;
        // SAFETY: a live reader used by this thread only.
        let reader = unsafe { &mut (*reader).reader };
        let record = match timeout {
            Some(timeout) => Some(reader.next_timeout(timeout).map_err(Failure::from)?),
            None => reader.next().map_err(|e: Error| Failure::from(e))?,
        };
        let Some(record) = record else {
            end = true;
            return Ok(());
        };
        // SAFETY: checked non-NULL and writable. The data pointer stays valid until the next
        // call: it points into the segment mapping the reader keeps alive and pinned.
        unsafe {
            lsn_out.write(record.lsn);
            data_out.write(crate::log::c_bytes(record.data));
            len_out.write(record.data.len());
        }
        Ok(())
    });
    if end {
        RWAL_END
    } else {
        status
    }
}

/// Lets go of the record the last `rwal_reader_next` or `rwal_reader_next_timeout` returned:
/// its bytes must not be used after this. For a caller that copies each record (a binding):
/// until its next call a reader holds the record it returned, and after `rwal_close` that
/// hold keeps the directory locked. The reader's position, and what it pins against
/// `rwal_truncate_after`, stay as they are. NULL is a no-op; so is a reader holding nothing.
///
/// # Safety
/// `reader` is NULL or a live reader used by this thread only.
#[no_mangle]
pub unsafe extern "C" fn rwal_reader_release(reader: *mut rwal_reader) {
    if reader.is_null() {
        return;
    }
    // As the `_free` functions: a panic (a bug) becomes this thread's last error.
    let _ = boundary(|| {
        // SAFETY: a live reader used by this thread only (the caller's contract).
        unsafe { &mut (*reader).reader }.release();
        Ok(())
    });
}

/// Frees a reader. NULL is a no-op.
///
/// # Safety
/// `reader` is NULL or a reader from `rwal_reader_open` not yet freed and not in use.
#[no_mangle]
pub unsafe extern "C" fn rwal_reader_free(reader: *mut rwal_reader) {
    // SAFETY: the caller's contract: NULL, or from the matching open or new, not yet freed.
    unsafe { free_boxed(reader) }
}
