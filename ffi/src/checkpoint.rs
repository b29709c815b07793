//! Checkpoints, snapshots (whole or streamed in chunks), compaction and pins.

use std::ffi::{c_char, CStr};
use std::io::Read;

use rwal_wal::{CheckpointWriter, Pin, SnapshotReader};

use crate::log::{bytes, rwal_log};
use crate::status::{
    boundary, free_boxed, invalid, non_null, rwal_status, Failure, RWAL_END,
    RWAL_ERR_BUFFER_TOO_SMALL, RWAL_ERR_NOT_FOUND,
};

/// A checkpoint whose snapshot is being written in chunks. Used by one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct rwal_checkpoint_writer {
    writer: CheckpointWriter,
}

/// The latest checkpoint's snapshot, being read in chunks. Used by one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct rwal_snapshot_reader {
    reader: SnapshotReader,
    /// Where a read lands before it is copied to the caller's buffer (which may be
    /// uninitialized memory, over which Rust must not make a slice).
    scratch: Vec<u8>,
}

/// A named hold on the log from an LSN on.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct rwal_pin {
    pin: Pin,
}

unsafe fn wal<'a>(log: *const rwal_log) -> Result<&'a rwal_wal::Wal, Failure> {
    non_null(log, "log")?;
    // SAFETY: a live handle (the caller's contract).
    Ok(unsafe { &(*log).wal })
}

/// Declares that the engine's state up to `lsn` is safe elsewhere, with the snapshot `len` bytes
/// at `snapshot` (NULL: no snapshot). Durable when it returns. `lsn` must be at least 1, durable,
/// and not below the latest checkpoint (`RWAL_ERR_INVALID_ARGUMENT`). Blocks. Thread-safe.
/// With the background thread (the default), the segments below it go soon after, as with
/// `rwal_compact`: records below a checkpoint stay readable only while a pin or a reader holds
/// them.
///
/// # Safety
/// `log` is a live handle; `snapshot` is NULL or has `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rwal_checkpoint(
    log: *mut rwal_log,
    lsn: u64,
    snapshot: *const u8,
    len: usize,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let wal = unsafe { wal(log)? };
        let data = if snapshot.is_null() {
            if len != 0 {
                return Err(invalid("snapshot is NULL but len is not 0"));
            }
            None
        } else {
            // SAFETY: `len` readable bytes at `snapshot` (the caller's contract).
            Some(unsafe { bytes(snapshot, len, "snapshot")? })
        };
        Ok(wal.checkpoint(lsn, data)?)
    })
}

/// The latest checkpoint: its LSN, and its snapshot copied into `buf` (`cap` bytes) with its
/// length in `*len_out` (0 without a snapshot, as for an empty one: `rwal_snapshot_open` tells
/// the two apart, with `RWAL_ERR_NOT_FOUND` when the latest checkpoint has none; a checkpoint
/// taken between the two calls changes the answer, so compare the LSN it writes).
/// `RWAL_ERR_NOT_FOUND` if there is no checkpoint; `RWAL_ERR_BUFFER_TOO_SMALL` sets `*len_out`
/// to the size needed (read large snapshots with `rwal_snapshot_open`); `RWAL_ERR_CORRUPTED`
/// if the snapshot fails its checksum, after which the bytes in `buf` are unspecified. The
/// snapshot is copied into `buf` a slice at a time, never whole into memory of the library's.
///
/// # Safety
/// `log` is a live handle; `lsn_out` and `len_out` are writable; `buf` has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rwal_checkpoint_latest(
    log: *const rwal_log,
    lsn_out: *mut u64,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        non_null(len_out, "len_out")?;
        // SAFETY: forwarded caller contract.
        let wal = unsafe { wal(log)? };
        // Taken together: a checkpoint written meanwhile cannot pair one checkpoint's LSN with
        // another's snapshot.
        let Some((checkpoint, snapshot)) = wal.open_latest_checkpoint()? else {
            return Err(Failure {
                status: RWAL_ERR_NOT_FOUND,
                message: "no checkpoint yet".into(),
            });
        };
        let mut copied = 0usize;
        if let Some(mut reader) = snapshot {
            // The size from the header: a caller asking for it alone reads nothing.
            let len = usize::try_from(reader.len()).unwrap_or(usize::MAX);
            if len > cap {
                // SAFETY: checked non-NULL.
                unsafe { len_out.write(len) };
                return Err(Failure {
                    status: RWAL_ERR_BUFFER_TOO_SMALL,
                    message: format!("snapshot of {len} bytes, buffer {cap}"),
                });
            }
            if len > 0 {
                non_null(buf, "buf")?;
            }
            // Copied a slice at a time into the caller's buffer: a copy of the whole first
            // would double the memory, and abort the process where that much is not to be had.
            let mut scratch = vec![0u8; len.clamp(1, SNAPSHOT_READ_BYTES_MAX)];
            loop {
                let n = reader
                    .read(&mut scratch)
                    .map_err(|e| read_failure(e, checkpoint.lsn))?;
                if n == 0 {
                    break; // the end, the whole's checksum verified
                }
                if n > len - copied {
                    return Err(Failure {
                        status: crate::status::RWAL_ERR_CORRUPTED,
                        message: format!(
                            "the snapshot of checkpoint {} holds more bytes than its header says",
                            checkpoint.lsn
                        ),
                    });
                }
                // SAFETY: `copied + n <= len <= cap` writable bytes at `buf` (checked non-NULL
                // since `len > 0`).
                unsafe { std::ptr::copy_nonoverlapping(scratch.as_ptr(), buf.add(copied), n) };
                copied += n;
            }
        }
        // SAFETY: checked non-NULL.
        unsafe {
            lsn_out.write(checkpoint.lsn);
            len_out.write(copied);
        }
        Ok(())
    })
}

/// The status of a failed read of a snapshot: the reader checks the body's checksum, and a
/// mismatch is `InvalidData`; any other error is the file system's.
fn read_failure(e: std::io::Error, lsn: u64) -> Failure {
    Failure {
        status: if e.kind() == std::io::ErrorKind::InvalidData {
            crate::status::RWAL_ERR_CORRUPTED
        } else {
            crate::status::RWAL_ERR_IO
        },
        message: format!("reading the snapshot of checkpoint {lsn}: {e}"),
    }
}

/// Removes every segment below both the latest checkpoint and every pin (open readers hold
/// pins too), and older snapshots; returns when done. The background thread (on by default)
/// does the same after each checkpoint; this is for logs without it, or to have it done now.
/// Thread-safe.
///
/// # Safety
/// `log` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn rwal_compact(log: *mut rwal_log) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        unsafe { wal(log)? }
            .compact_now()
            .map(drop)
            .map_err(Failure::from)
    })
}

/// Starts a checkpoint at `lsn` whose snapshot of `len` bytes is written in chunks with
/// `rwal_checkpoint_writer_write`, then made durable by `rwal_checkpoint_writer_finish`. `lsn`
/// as for `rwal_checkpoint` (at least 1, durable, not below the latest checkpoint:
/// `RWAL_ERR_INVALID_ARGUMENT`). Until the writer is finished or freed it pins the log from
/// `lsn`: `rwal_truncate_after` below it returns `RWAL_ERR_PINNED`.
///
/// # Safety
/// `log` is a live handle; `writer_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_checkpoint_writer_open(
    log: *mut rwal_log,
    lsn: u64,
    len: u64,
    writer_out: *mut *mut rwal_checkpoint_writer,
) -> rwal_status {
    boundary(|| {
        non_null(writer_out, "writer_out")?;
        // SAFETY: forwarded caller contract.
        let writer = unsafe { wal(log)? }.checkpoint_writer(lsn, len)?;
        // SAFETY: checked non-NULL.
        unsafe { writer_out.write(Box::into_raw(Box::new(rwal_checkpoint_writer { writer }))) };
        Ok(())
    })
}

/// Writes the next `len` bytes of the snapshot. One thread at a time. After a failed write
/// (any status but `RWAL_ERR_INVALID_ARGUMENT`, which writes nothing) the writer takes nothing
/// more and cannot finish: free it (the previous checkpoint stays the latest) and start again.
/// `RWAL_ERR_CLOSED` once its log was closed (`RWAL_ERR_POISONED` once it failed).
///
/// # Safety
/// `writer` is a live writer used by no other thread during the call; `data` has `len` readable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn rwal_checkpoint_writer_write(
    writer: *mut rwal_checkpoint_writer,
    data: *const u8,
    len: usize,
) -> rwal_status {
    boundary(|| {
        non_null(writer, "writer")?;
        // SAFETY: `len` readable bytes at `data` (checked: NULL only with 0, and a length no
        // object can have is refused).
        let data = unsafe { crate::log::bytes(data, len, "data")? };
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: a live writer.
        let writer = unsafe { &mut (*writer).writer };
        Ok(writer.write(data)?)
    })
}

/// Makes the checkpoint durable (exactly the announced length must have been written) and
/// frees the writer, whatever the outcome.
///
/// # Safety
/// `writer` is a writer from `rwal_checkpoint_writer_open`, not used again.
#[no_mangle]
pub unsafe extern "C" fn rwal_checkpoint_writer_finish(
    writer: *mut rwal_checkpoint_writer,
) -> rwal_status {
    boundary(|| {
        non_null(writer, "writer")?;
        // SAFETY: from rwal_checkpoint_writer_open, consumed here.
        let writer = unsafe { Box::from_raw(writer) };
        Ok(writer.writer.finish()?)
    })
}

/// Abandons an unfinished checkpoint writer. NULL is a no-op.
///
/// # Safety
/// `writer` is NULL or a writer not yet finished or freed.
#[no_mangle]
pub unsafe extern "C" fn rwal_checkpoint_writer_free(writer: *mut rwal_checkpoint_writer) {
    // SAFETY: the caller's contract: NULL, or from the matching open or new, not yet freed.
    unsafe { free_boxed(writer) }
}

/// Opens the latest checkpoint's snapshot for reading in chunks: writes its LSN and length.
/// `RWAL_ERR_NOT_FOUND` if there is no checkpoint with a snapshot.
///
/// # Safety
/// `log` is a live handle; the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_snapshot_open(
    log: *mut rwal_log,
    lsn_out: *mut u64,
    len_out: *mut u64,
    reader_out: *mut *mut rwal_snapshot_reader,
) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        non_null(len_out, "len_out")?;
        non_null(reader_out, "reader_out")?;
        // SAFETY: forwarded caller contract.
        let wal = unsafe { wal(log)? };
        // Taken together, as in `rwal_checkpoint_latest`.
        let Some(reader) = wal.open_snapshot()? else {
            return Err(Failure {
                status: RWAL_ERR_NOT_FOUND,
                message: "no checkpoint with a snapshot".into(),
            });
        };
        // SAFETY: checked non-NULL.
        unsafe {
            lsn_out.write(reader.lsn());
            len_out.write(reader.len());
            reader_out.write(Box::into_raw(Box::new(rwal_snapshot_reader {
                reader,
                scratch: Vec::new(),
            })));
        }
        Ok(())
    })
}

/// The most `rwal_snapshot_read` copies in one call.
const SNAPSHOT_READ_BYTES_MAX: usize = 1 << 20;

/// Reads the next bytes of the snapshot into `buf` (at most `cap`, and at most 1 MiB per call)
/// and their count into `*len_out`. `RWAL_END` after the last byte, once the checksum of the
/// whole was verified (`RWAL_ERR_CORRUPTED` if it does not match). The file is read through a
/// mapping: a media error there raises `SIGBUS`, as under a mapped segment (docs/design.md
/// section 10), rather than returning `RWAL_ERR_IO`. `cap` 0 is `RWAL_ERR_INVALID_ARGUMENT`
/// (such a read could never end). One thread at a time: calls on the same reader from two
/// threads at once are undefined behaviour.
///
/// # Safety
/// `reader` is a live snapshot reader used by no other thread during the call; `buf` has `cap`
/// writable bytes; `len_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_snapshot_read(
    reader: *mut rwal_snapshot_reader,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> rwal_status {
    let mut end = false;
    let status = boundary(|| {
        non_null(reader, "reader")?;
        non_null(buf, "buf")?;
        non_null(len_out, "len_out")?;
        if cap == 0 {
            return Err(invalid("cap must be above 0"));
        }
        // SAFETY: a live reader (the caller's contract).
        let rwal_snapshot_reader { reader, scratch } = unsafe { &mut *reader };
        scratch.resize(cap.min(SNAPSHOT_READ_BYTES_MAX), 0);
        let n = reader.read(scratch).map_err(|e| Failure {
            status: if e.kind() == std::io::ErrorKind::InvalidData {
                crate::status::RWAL_ERR_CORRUPTED
            } else {
                crate::status::RWAL_ERR_IO
            },
            message: e.to_string(),
        })?;
        // SAFETY: `cap >= n` writable bytes at `buf` (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(scratch.as_ptr(), buf, n) };
        end = n == 0;
        // SAFETY: checked non-NULL.
        unsafe { len_out.write(n) };
        Ok(())
    });
    if end {
        RWAL_END
    } else {
        status
    }
}

/// Frees a snapshot reader. NULL is a no-op.
///
/// # Safety
/// `reader` is NULL or a reader not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rwal_snapshot_free(reader: *mut rwal_snapshot_reader) {
    // SAFETY: the caller's contract: NULL, or from the matching open or new, not yet freed.
    unsafe { free_boxed(reader) }
}

/// Pins the log from `lsn` on under `name`: compaction keeps every record from `lsn`. With
/// `cap_bytes` > 0 the compactor releases the pin once it holds back more than that (then
/// `rwal_pin_move` fails with `RWAL_ERR_PINNED`). `RWAL_ERR_COMPACTED` if `lsn` is gone already;
/// `RWAL_ERR_POISONED` on a poisoned log.
///
/// # Safety
/// `log` is a live handle; `name` is NUL-terminated UTF-8; `pin_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_pin_open(
    log: *mut rwal_log,
    name: *const c_char,
    lsn: u64,
    cap_bytes: u64,
    pin_out: *mut *mut rwal_pin,
) -> rwal_status {
    boundary(|| {
        non_null(name, "name")?;
        non_null(pin_out, "pin_out")?;
        // SAFETY: NUL-terminated (the caller's contract).
        let name = unsafe { CStr::from_ptr(name) }
            .to_str()
            .map_err(|_| invalid("name is not UTF-8"))?;
        // SAFETY: forwarded caller contract.
        let wal = unsafe { wal(log)? };
        let pin = if cap_bytes == 0 {
            wal.pin(name, lsn)?
        } else {
            wal.pin_with_cap(name, lsn, cap_bytes)?
        };
        // SAFETY: checked non-NULL.
        unsafe { pin_out.write(Box::into_raw(Box::new(rwal_pin { pin }))) };
        Ok(())
    })
}

/// Moves a pin to keep records from `lsn` on. `RWAL_ERR_COMPACTED` for an LSN already gone,
/// `RWAL_ERR_PINNED` for a pin the compactor released (see `rwal_pin_open`), `RWAL_ERR_CLOSED`
/// once the log is closed (the pin must still be freed), `RWAL_ERR_POISONED` once it is
/// poisoned.
///
/// # Safety
/// `pin` is a live pin.
#[no_mangle]
pub unsafe extern "C" fn rwal_pin_move(pin: *mut rwal_pin, lsn: u64) -> rwal_status {
    boundary(|| {
        non_null(pin, "pin")?;
        // SAFETY: a live pin.
        Ok(unsafe { &(*pin).pin }.move_to(lsn)?)
    })
}

/// Releases and frees a pin. NULL is a no-op.
///
/// # Safety
/// `pin` is NULL or a pin not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rwal_pin_free(pin: *mut rwal_pin) {
    // SAFETY: the caller's contract: NULL, or from the matching open or new, not yet freed.
    unsafe { free_boxed(pin) }
}
