//! The io_uring backend's I/O: segment bytes are staged in memory (as with `Staged`) and written
//! with `O_DIRECT`, block-aligned, through an io_uring; durability comes through the ring too,
//! either as a write linked to an `fdatasync` or as writes flagged `RWF_DSYNC`.
//!
//! `O_DIRECT` writes and page-cache (or mapping) reads of the same blocks are not reliably
//! coherent, so blocks written by this process are read back from the staging memory, which
//! holds exactly what was written; only blocks already on disk when the file was opened are read
//! through the file mapping, and the block the first write lands in is first loaded into the
//! staging memory (with an `O_DIRECT` read), so that a block is only ever read one way.

use std::fs::{File as StdFile, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::Mutex;

/// `O_DIRECT` offsets and lengths are multiples of this.
pub(crate) const BLOCK_BYTES: u64 = 4096;
/// Entries of the ring: one sync submits at most this many writes at a time.
const RING_ENTRIES: u32 = 64;

/// How the io_uring backend makes writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UringSync {
    /// The writes of a sync, then an `fdatasync` linked after them in the ring.
    LinkedFdatasync,
    /// Every write flagged `RWF_DSYNC`: durable when it completes, no separate sync. The
    /// default: measured here at about half the commit latency of the linked `fdatasync`
    /// (`rwal bench --backend io_uring` against `--backend io_uring-dsync`).
    #[default]
    DsyncWrites,
}

/// One ring per log directory, shared by its files; syncs are already serialized per file, and
/// the group-commit leader is one thread at a time.
pub(crate) struct Ring {
    ring: Mutex<IoUring>,
    mode: UringSync,
}

impl Ring {
    /// Sets up a ring, or says why this machine cannot.
    pub fn new(mode: UringSync) -> io::Result<Ring> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring_setup failed: {e}"),
            )
        })?;
        Ok(Ring {
            ring: Mutex::new(ring),
            mode,
        })
    }

    /// How writes are made durable.
    pub fn mode(&self) -> UringSync {
        self.mode
    }

    /// Writes each `(offset, bytes)` at its offset with `O_DIRECT` and, with `durable`, makes
    /// them durable; returns once every operation completed.
    pub fn write(&self, fd: &StdFile, writes: &[(u64, &[u8])], durable: bool) -> io::Result<()> {
        let mut ring = self.ring.lock();
        let chunk = (RING_ENTRIES - 1) as usize;
        for (index, batch) in writes.chunks(chunk).enumerate() {
            let last_batch = (index + 1) * chunk >= writes.len();
            let dsync = durable && self.mode == UringSync::DsyncWrites;
            let fsync = durable && last_batch && self.mode == UringSync::LinkedFdatasync;
            let mut expected = Vec::with_capacity(batch.len() + 1);
            {
                let mut sq = ring.submission();
                for (i, (offset, bytes)) in batch.iter().enumerate() {
                    debug_assert!(
                        offset % BLOCK_BYTES == 0 && bytes.len() as u64 % BLOCK_BYTES == 0
                    );
                    let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
                    let mut entry =
                        opcode::Write::new(types::Fd(fd.as_raw_fd()), bytes.as_ptr(), len)
                            .offset(*offset)
                            .rw_flags(if dsync { libc::RWF_DSYNC } else { 0 })
                            .build()
                            .user_data(i as u64);
                    if fsync {
                        // The fdatasync runs only after every write of the batch succeeded.
                        entry = entry.flags(squeue::Flags::IO_LINK);
                    }
                    expected.push(len as i32);
                    // SAFETY: the buffer lives until the completion is reaped below (the caller
                    // holds it across this call), and the ring has room (batch < entries).
                    unsafe { sq.push(&entry) }
                        .map_err(|_| io::Error::other("io_uring queue full"))?;
                }
                if fsync {
                    let entry = opcode::Fsync::new(types::Fd(fd.as_raw_fd()))
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data(batch.len() as u64);
                    expected.push(0);
                    // SAFETY: the sync references no memory; the ring has room.
                    unsafe { sq.push(&entry) }
                        .map_err(|_| io::Error::other("io_uring queue full"))?;
                }
            }
            // Every completion is reaped before returning, even when a signal interrupts the
            // wait: the kernel may still be reading the caller's buffers, and a completion left
            // in the ring would be taken for one of the next call's.
            let mut first_error = None;
            let mut reaped = 0;
            while reaped < expected.len() {
                match ring.submit_and_wait(expected.len() - reaped) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                for cqe in ring.completion() {
                    reaped += 1;
                    let Some(&want) = expected.get(cqe.user_data() as usize) else {
                        first_error.get_or_insert(io::Error::other(format!(
                            "io_uring completion for operation {} of {}",
                            cqe.user_data(),
                            expected.len()
                        )));
                        continue;
                    };
                    let got = cqe.result();
                    if got < 0 {
                        first_error.get_or_insert(io::Error::from_raw_os_error(-got));
                    } else if got != want {
                        first_error.get_or_insert(io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("io_uring write of {want} bytes wrote {got}"),
                        ));
                    }
                }
            }
            if let Some(error) = first_error {
                return Err(error);
            }
        }
        if writes.is_empty() && durable {
            return fdatasync(fd);
        }
        Ok(())
    }
}

fn fdatasync(fd: &StdFile) -> io::Result<()> {
    // SAFETY: fdatasync on a file descriptor we own.
    if unsafe { libc::fdatasync(fd.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens `path` for `O_DIRECT` writes, or says why the file system refuses.
pub(crate) fn open_direct(path: &Path) -> io::Result<StdFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{} does not support O_DIRECT (tmpfs?): {e}", path.display()),
                )
            } else {
                e
            }
        })
}

/// Reads `len` bytes at `offset` (block-aligned) with `O_DIRECT` into `target`, which points at
/// block-aligned memory of at least `len` bytes that nothing else touches meanwhile.
pub(crate) fn read_direct(fd: &StdFile, target: *mut u8, offset: u64, len: u64) -> io::Result<()> {
    debug_assert!(offset % BLOCK_BYTES == 0 && len % BLOCK_BYTES == 0);
    let mut done = 0;
    while done < len {
        // SAFETY: `target + done .. target + len` is memory the caller reserved for this read.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                target.add(done as usize).cast(),
                (len - done) as usize,
                (offset + done) as libc::off_t,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short O_DIRECT read",
            ));
        }
        done += n as u64;
    }
    Ok(())
}
