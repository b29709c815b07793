//! The real file system: segment files mapped into memory, written either through the mapping
//! (`mmap`) or with `pwritev` (`pwrite`), made durable with `fdatasync` in both cases.

use std::fs::{File as StdFile, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};

use super::recorder::SyncRecorder;
use super::uring::{self, Ring, UringSync, BLOCK_BYTES};
use super::writeback::{WriteBack, WritebackPacer, ZERO_FILL_STEP_BYTES};
use super::{Dir, DirLock, File, Preallocation};

/// The most bytes one O_DIRECT write of `Direct::flush` covers: a multiple of the block size,
/// under the 2 GiB - 4 KiB that Linux writes at most in one call.
const DIRECT_WRITE_BYTES_MAX: u64 = 1 << 30;
const _: () = assert!(DIRECT_WRITE_BYTES_MAX % BLOCK_BYTES == 0);
const _: () = assert!(DIRECT_WRITE_BYTES_MAX <= (2 << 30) - 4096);

/// `lo..hi` as consecutive pieces of at most `max` bytes.
fn write_pieces(lo: u64, hi: u64, max: u64) -> impl Iterator<Item = (u64, u64)> {
    (lo..hi)
        .step_by(max as usize)
        .map(move |at| (at, hi.min(at + max)))
}

/// How writes reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// `memcpy` into a shared writable mapping.
    Map,
    /// `pwritev`; the mapping is read-only and serves reads only.
    Pwrite,
    /// `memcpy` into anonymous staging memory; a sync writes the staged ranges to the file with
    /// `pwritev2(RWF_DSYNC)`. The file mapping is read-only and serves reads only.
    Staged,
    /// Staged like `Staged`, written with `O_DIRECT` through io_uring (see `io/uring.rs`).
    Uring(UringSync),
}

impl WriteMode {
    /// The backend's name, as [`Wal::backend_name`](crate::Wal::backend_name) gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WriteMode::Map => "mmap",
            WriteMode::Pwrite => "pwrite",
            WriteMode::Staged => "staged",
            WriteMode::Uring(_) => "io_uring",
        }
    }
}

pub(crate) struct FsDir {
    path: PathBuf,
    dir: StdFile,
    mode: WriteMode,
    preallocation: Preallocation,
    recorder: Option<SyncRecorder>,
    ring: Option<Arc<Ring>>,
    /// Opened by `open_read_only`: files are opened for reading only, and every call that
    /// would change the directory fails.
    read_only: bool,
}

impl FsDir {
    /// Opens the directory for reading only (`rwal verify`'s dry run of recovery): files are
    /// opened read-only and mapped read-only, and `create`, `rename`, `remove`, `sync` and
    /// `lock` fail with `PermissionDenied`. Opening a file that is not a regular one (a FIFO
    /// named like a segment) fails instead of blocking.
    pub fn open_read_only(path: &Path) -> io::Result<FsDir> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(FsDir {
            path: path.to_path_buf(),
            dir,
            mode: WriteMode::Pwrite,
            preallocation: Preallocation::default(),
            recorder: None,
            ring: None,
            read_only: true,
        })
    }

    /// The error of a change asked of a read-only directory.
    fn refuse_changes(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the directory is open for reading only",
            ));
        }
        Ok(())
    }

    /// Opens the existing file at `path`: for reading and writing, or for reading only (then
    /// without blocking, and only a regular file).
    fn open_existing(&self, path: &Path) -> io::Result<StdFile> {
        if !self.read_only {
            return OpenOptions::new().read(true).write(true).open(path);
        }
        // Looked at before it is opened, too: opening a device can do things.
        if !std::fs::metadata(path)?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// Opens (and with `create`, creates durably) the directory.
    pub fn open(
        path: &Path,
        create: bool,
        mode: WriteMode,
        preallocation: Preallocation,
        recorder: Option<SyncRecorder>,
    ) -> io::Result<FsDir> {
        if create {
            // Every level `create_dir_all` makes is durable only once its parent is synced: a
            // power cut could otherwise take a parent away, and with it the log created below.
            // The log directory's own parent is synced at every such open, not only when this
            // one created it: a process that died before that sync left it undurable (levels
            // above it that such a process created are not synced again).
            let existed = path.exists();
            let mut levels = vec![path];
            let mut level = path.parent();
            while let Some(dir) = level.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                levels.push(dir);
                level = dir.parent();
            }
            std::fs::create_dir_all(path)?;
            for dir in levels {
                let parent = match dir.parent() {
                    None => continue, // the root
                    Some(p) if p.as_os_str().is_empty() => Path::new("."),
                    Some(p) => p,
                };
                let synced = StdFile::open(parent).and_then(|p| p.sync_all());
                // For a log directory found there, the sync is a second chance only: a parent
                // this process may traverse but not read (mode 0711), or one on a file system
                // that cannot sync directories (the log's being a mount point), must not stop
                // a log that opened before from opening.
                if !existed {
                    synced?;
                }
            }
        }
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        if mode == WriteMode::Map {
            if let Some(name) = copy_on_write_file_system(&dir) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{} is on {name}, a copy-on-write file system: overwriting a block \
                         there takes a new one, so once the disk is full a store through the \
                         mapping would end the process with SIGBUS instead of failing; use \
                         the Staged or Pwrite backend, which get ENOSPC as an error",
                        path.display()
                    ),
                ));
            }
        }
        if let WriteMode::Uring(_) = mode {
            if let Some(name) = copy_on_write_file_system(&dir) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{} is on {name}, which checksums the data it writes: an O_DIRECT \
                         write hands the kernel the tail block from memory that other appenders \
                         may still be copying records into, so the checksum could be taken over \
                         other bytes than those written, and after a crash the block, with the \
                         acknowledged records in it, would read back as an I/O error; use the \
                         Staged backend",
                        path.display()
                    ),
                ));
            }
        }
        let ring = match mode {
            WriteMode::Uring(sync) => {
                let ring = Arc::new(Ring::new(sync)?);
                probe_direct(path, &ring)?;
                Some(ring)
            }
            _ => None,
        };
        Ok(FsDir {
            path: path.to_path_buf(),
            dir,
            mode,
            preallocation,
            recorder,
            ring,
            read_only: false,
        })
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn preallocate(&self, file: &StdFile, len: u64, stop: Option<&AtomicBool>) -> io::Result<()> {
        if self.preallocation == Preallocation::Fallocate {
            let len_off = libc::off_t::try_from(len).map_err(io::Error::other)?;
            // SAFETY: fallocate on a file descriptor we own; no memory is passed.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if !fallocate_unavailable(&err) {
                return Err(err);
            }
        }
        // Zero-fill: real blocks, so that the mapping never sits over a hole. For `Mmap` in
        // writes of 16 KiB: see `MAPPED_FILL_CHUNK`. Written back as it goes, in steps of
        // `ZERO_FILL_STEP_BYTES`, so that the sync after it does not hold the log's commits
        // behind 64 MiB of zeros (`writeback.rs`).
        let stopped = || {
            if stop.is_some_and(|stop| stop.load(Ordering::Acquire)) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the zero-fill was stopped: the log is closing",
                ));
            }
            Ok(())
        };
        let zeros = vec![0u8; self.zero_fill_chunk()];
        let mut pacer = WritebackPacer::with_step(0, ZERO_FILL_STEP_BYTES);
        let mut offset = 0;
        while offset < len {
            stopped()?;
            let n = (len - offset).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
            pacer.wrote(offset, |at, n, how| write_back_range(file, at, n, how))?;
        }
        // Once more before the sync: the last step or two are still in the page cache, and
        // removing the file drops them unwritten.
        stopped()
    }

    /// Creates `name`, which must not exist yet, for reading and writing.
    fn create_new(&self, name: &str) -> io::Result<(PathBuf, StdFile)> {
        let path = self.file_path(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    }

    /// `Dir::create`, stopped between zero-fill chunks once `stop` is set.
    fn create_allocated(
        &self,
        name: &str,
        len: u64,
        stop: Option<&AtomicBool>,
    ) -> io::Result<Arc<dyn File>> {
        let (path, file) = self.create_new(name)?;
        let prepared = self
            .preallocate(&file, len, stop)
            .and_then(|()| file.sync_all());
        if let Err(e) = prepared {
            drop(file);
            // Best effort: a half-allocated file must not stay around to be mistaken for space.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if let Some(recorder) = &self.recorder {
            recorder.file_synced(&path, &file)?;
        }
        // Nor a file allocated in full that cannot be mapped (no address space or mapping left,
        // no file descriptor for `O_DIRECT`): the caller retries under a new name, and each try
        // would leave a segment's worth of disk behind until the next open.
        self.map(file, path.clone(), true).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })
    }

    fn map(&self, file: StdFile, path: PathBuf, created: bool) -> io::Result<Arc<dyn File>> {
        self.map_with(file, path, created, self.mode)
    }

    fn map_with(
        &self,
        file: StdFile,
        path: PathBuf,
        created: bool,
        mode: WriteMode,
    ) -> io::Result<Arc<dyn File>> {
        Ok(Arc::new(self.map_file(file, path, created, mode)?))
    }

    /// Maps `file` for `mode`; `created` says that this process created it (all zeros, never
    /// written by anyone else).
    fn map_file(
        &self,
        file: StdFile,
        path: PathBuf,
        created: bool,
        mode: WriteMode,
    ) -> io::Result<FsFile> {
        let meta = file.metadata()?;
        let len = meta.len();
        if len == 0 || usize::try_from(len).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file of {len} bytes"),
            ));
        }
        if matches!(mode, WriteMode::Map) && !created {
            use std::os::unix::fs::MetadataExt;
            allocate_holes(&file, len, meta.blocks())?;
        }
        let map = match mode {
            WriteMode::Map => MmapOptions::new().map_raw(&file)?,
            WriteMode::Pwrite | WriteMode::Staged | WriteMode::Uring(_) => {
                MmapOptions::new().map_raw_read_only(&file)?
            }
        };
        let staging = match mode {
            WriteMode::Staged | WriteMode::Uring(_) => Some(Staging::new(len as usize, created)?),
            WriteMode::Map | WriteMode::Pwrite => None,
        };
        let direct = match (&self.ring, mode) {
            (Some(ring), WriteMode::Uring(_)) => {
                Some(Direct::new(&path, ring.clone(), len, created)?)
            }
            _ => None,
        };
        Ok(FsFile {
            file,
            map,
            len,
            mode,
            path,
            recorder: self.recorder.clone(),
            staging,
            direct,
        })
    }
}

/// The size of the writes that zero-fill a file to be written through a shared mapping.
///
/// A byte stored through a shared mapping dirties the whole page-cache folio it falls in (the
/// write fault marks every block of the folio dirty), and the next `fdatasync` writes all of it
/// back. A large write creates large folios: zero-filled in 1 MiB writes, every 128-byte commit
/// of the `Mmap` backend wrote 1 MiB to the disk (p50 285 us against 95 us for `pwrite`, on
/// ext4 with large folios, Linux 6.18). Written 16 KiB at a time, the file is cached in folios
/// of at most 16 KiB, and a commit writes back at most that much around each byte it touched.
/// Not one page: 4 KiB writes measured the same commit latency but a slower fill, and with it
/// 35% fewer sustained appends, and a slower scan of the cached file (`docs/performance.md`).
/// Faults through the mapping must not bring large folios back either: the active segment's
/// mapping is advised `MADV_RANDOM` (`prepare_for_appends`: no read-ahead, so a page evicted
/// before it is written comes back as one page) until the segment is sealed and released.
/// Read-ahead grows its folios as a sequential read goes on (up to 2 MiB here), so recovery's
/// first pass reads the zero tail of each file backwards first, in single pages, and populates
/// only the records before it (`first_pass.rs`); and a recycled segment's cached pages are
/// dropped before it is zeroed in the same chunks (`Dir::zero_fill_chunk`). What `read(2)` of
/// the files by another program caches may still be large.
const MAPPED_FILL_CHUNK: usize = 16 << 10;

/// The file whose `flock` marks the log in its directory as open.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Forks this process descends through since the first call of [`forks_counted`] in its line
/// of ancestors: a `pthread_atfork` hook increments it in every forked child (`crate::fork`).
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Whether the hook is registered in this process (inherited by its forked children, as the
/// registration is).
static FORK_HOOK_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The process id of the process whose thread is registering the hook, or 0. Not a `Once`: a
/// fork while another thread ran its closure left the child's `Once` running for good, and the
/// child's first open waited on it forever (found by review on 2026-12-06). A child that finds
/// another process's id here (it was forked in the middle of the registration) registers the
/// hook itself: registered twice, it counts a fork twice, which changes nothing (a count is
/// only compared with another).
static FORK_HOOK_BY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Runs in the child of every `fork`, before `fork` returns there.
extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The forks counted so far, registering the hook that counts them (once per process). An
/// open racing with the first registration in this process does not wait for it: a fork in
/// that moment may go uncounted for its log (the close's process-id check still refuses a
/// child's close).
pub(crate) fn forks_counted() -> u64 {
    use std::sync::atomic::Ordering;
    if !FORK_HOOK_DONE.load(Ordering::Acquire) {
        let me = std::process::id();
        let by = FORK_HOOK_BY.load(Ordering::Acquire);
        if by != me
            && FORK_HOOK_BY
                .compare_exchange(by, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // SAFETY: registers a function that lives as long as the process (the library is
            // not unloaded: `docs/c-api.md`) and only increments an atomic, which a forked
            // child may do. A failure (no memory) leaves forks uncounted: the close's
            // process-id check still refuses a child's close.
            unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
            FORK_HOOK_DONE.store(true, Ordering::Release);
        }
    }
    forks_seen()
}

/// The forks counted so far (one load: nothing writes the count outside a fork).
#[inline]
pub(crate) fn forks_seen() -> u64 {
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The process holding the lock of the log in `dir` (the process that has it open), as Linux
/// lists it in `/proc/locks`: `None` when nobody holds it, or when the system does not say
/// (no `/proc`). Read only: taking the lock, even shared and for a moment, to find out would
/// make an open racing with it fail with `Locked`.
pub(crate) fn lock_holder(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let lock = std::fs::symlink_metadata(dir.join(LOCK_FILE)).ok()?;
    if !lock.is_file() {
        return None;
    }
    // The kernel prints the lock's file as "MAJOR:MINOR:INODE", the device numbers in hex.
    let file = format!(
        "{:02x}:{:02x}:{}",
        libc::major(lock.dev()),
        libc::minor(lock.dev()),
        lock.ino()
    );
    holder_in_proc_locks(&read_in_one_call("/proc/locks")?, &file)
}

/// The process holding a `flock` on `file` ("MAJOR:MINOR:INODE") in the text of `/proc/locks`.
/// A held lock's line reads `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; the line of a
/// process waiting for it has `->` after the number, and is not the holder. The number is the
/// process that took the lock (a child it forked may hold it on); 0 for one this process's PID
/// namespace cannot see, which names nobody.
/// A `/proc` file's text, read with one `read` call while it fits 1 MiB: the kernel lists
/// `/proc/locks` under its lock within one call, but between calls the list may change and
/// lines shift past the reader's position, so an entry can be skipped. `read_to_string`
/// starts with a 32-byte probe and reads in growing chunks: with other logs being opened and
/// closed meanwhile (parallel tests), the holder's line was missed once (2026-12-07).
fn read_in_one_call(path: &str) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut text = vec![0u8; 1 << 20];
    let mut len = 0;
    loop {
        let read = file.read(&mut text[len..]).ok()?;
        if read == 0 {
            break;
        }
        len += read;
        if len == text.len() {
            text.resize(len * 2, 0);
        }
    }
    text.truncate(len);
    String::from_utf8(text).ok()
}

fn holder_in_proc_locks(locks: &str, file: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, held, ..] if *held == file => {
                pid.parse().ok().filter(|&pid| pid != 0)
            }
            _ => None,
        }
    })
}

/// Fails with `Unsupported` if files in `dir` cannot be opened with `O_DIRECT` (tmpfs), or one
/// 4 KiB block cannot be written durably to one through `ring`: a file system whose `O_DIRECT`
/// needs a larger alignment, or a sandbox that lets a ring be set up but not entered. Until
/// 2026-12-05 only the open was probed, and those opened, then failed their first write,
/// poisoning the log, instead of saying why at the open (found by review).
fn probe_direct(dir: &Path, ring: &Ring) -> io::Result<()> {
    // Named for this process and call: it runs before the directory lock is taken, and two
    // openers probing under one name removed each other's file (a spurious `NotFound` in place
    // of `Locked`).
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let probe = dir.join(format!(
        "odirect-probe-{}-{}.tmp",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    // Created and opened in one call: the recovery of a process holding the log removes every
    // `.tmp`, ours too, and may do so at any moment.
    let written = match uring::create_direct(&probe) {
        Ok(file) => {
            let block = Box::new(AlignedBlock([0; BLOCK_BYTES as usize]));
            // SAFETY: the block lives until the call returns.
            let written =
                unsafe { ring.write(&file, &[(0, block.0.as_ptr(), block.0.len())], true) };
            written.or_else(|e| probe_write_refused(dir, e))
        }
        Err(e) => probe_create_refused(e),
    };
    let _ = std::fs::remove_file(&probe);
    written
}

/// What the probe file's creation failing with `e` says: a full disk (no block, or no inode,
/// for the probe) says nothing of the backend and lets the open go on, as a full disk does at
/// the probe's write (an existing log opens on a full disk with every backend; until
/// 2026-12-07 this one refused it, found by review); any other error is the open's.
fn probe_create_refused(e: io::Error) -> io::Result<()> {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Ok(()),
        _ => Err(e),
    }
}

/// One block, aligned as `O_DIRECT` needs it.
#[repr(C, align(4096))]
struct AlignedBlock([u8; BLOCK_BYTES as usize]);

/// What the probe's write failing with `e` says of `dir`: refusals of the write itself are
/// `Unsupported` (a misaligned `O_DIRECT` write is `EINVAL`; a sandbox that forbids
/// `io_uring_enter` answers `EPERM` or `ENOSYS`); a full disk says nothing of the backend and
/// lets the open go on (the log's own writes report it); any other error is the open's.
fn probe_write_refused(dir: &Path, e: io::Error) -> io::Result<()> {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Ok(()),
        io::ErrorKind::InvalidInput
        | io::ErrorKind::PermissionDenied
        | io::ErrorKind::Unsupported => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "a durable 4 KiB O_DIRECT write through io_uring to a file in {} failed \
                     ({e}): the file system may need O_DIRECT writes aligned to more than 4 KiB, \
                     or a sandbox (seccomp) may forbid io_uring_enter",
                dir.display()
            ),
        )),
        _ => Err(e),
    }
}

/// `sync_file_range` of `[offset, offset + len)`: starts the write-back of its dirty pages, or
/// (after a start) waits for it. Every error is returned, `EIO` above all: a wait reports the
/// file's write-back error here and moves this descriptor past it, so the next `fdatasync`
/// would not report it again. Only `ENOSYS` (a kernel or sandbox without the call, which then
/// cannot have taken any error) is taken for success here; the pacer also stops pacing, without
/// an error, when its first start is refused as unavailable (`writeback.rs`).
fn write_back_range(file: &StdFile, offset: u64, len: u64, how: WriteBack) -> io::Result<()> {
    let flags = match how {
        WriteBack::Start => libc::SYNC_FILE_RANGE_WRITE,
        WriteBack::Await => {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        }
    };
    let offset = libc::off64_t::try_from(offset).map_err(io::Error::other)?;
    let len = libc::off64_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: sync_file_range on a descriptor the borrowed file keeps open; no memory is
    // passed, and the range and flags are plain values.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOSYS) => Ok(()),
        _ => Err(err),
    }
}

impl Dir for FsDir {
    fn path(&self) -> &Path {
        &self.path
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn File>> {
        self.refuse_changes()?;
        self.create_allocated(name, len, None)
    }

    fn create_unless_stopped(
        &self,
        name: &str,
        len: u64,
        stop: &AtomicBool,
    ) -> io::Result<Arc<dyn File>> {
        self.refuse_changes()?;
        self.create_allocated(name, len, Some(stop))
    }

    fn create_plain(&self, name: &str, len: u64) -> io::Result<Arc<dyn File>> {
        self.refuse_changes()?;
        let (path, file) = self.create_new(name)?;
        // Sparse: the file is written once, front to back, and only read through the mapping
        // (a hole reads as zeros, and the length is set, so nothing faults past the end).
        if let Err(e) = file.set_len(len) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // Removed too if it cannot be mapped (a length the address space refuses): no writer
        // exists yet whose drop would remove it, and each retry would leave another.
        self.map_with(file, path.clone(), true, WriteMode::Pwrite)
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })
    }

    fn open_plain(&self, name: &str) -> io::Result<Arc<dyn File>> {
        let path = self.file_path(name);
        let file = self.open_existing(&path)?;
        self.map_with(file, path, false, WriteMode::Pwrite)
    }

    fn backend_name(&self) -> &'static str {
        self.mode.name()
    }

    fn zero_fill_chunk(&self) -> usize {
        match self.mode {
            WriteMode::Map => MAPPED_FILL_CHUNK,
            WriteMode::Pwrite | WriteMode::Staged | WriteMode::Uring(_) => 1 << 20,
        }
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        let path = self.file_path(name);
        let file = self.open_existing(&path)?;
        self.map(file, path, false)
    }

    fn file_len(&self, name: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.file_path(name))?.len())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.refuse_changes()?;
        std::fs::rename(self.file_path(from), self.file_path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.refuse_changes()?;
        std::fs::remove_file(self.file_path(name))
    }

    fn sync(&self) -> io::Result<()> {
        self.refuse_changes()?;
        self.dir.sync_all()?;
        if let Some(recorder) = &self.recorder {
            recorder.dir_synced(&self.path)?;
        }
        Ok(())
    }

    fn lock(&self) -> io::Result<Box<dyn DirLock>> {
        self.refuse_changes()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.file_path(LOCK_FILE))?;
        // SAFETY: flock on a file descriptor we own; no memory is passed. flock locks belong to
        // the open file description, so a second open in this same process conflicts too.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(FsLock {
            file,
            locked_by: std::process::id(),
        }))
    }

    fn lock_holder(&self) -> Option<u32> {
        lock_holder(&self.path)
    }

    // The fields are `u64` on 64-bit Linux, narrower on other targets.
    #[allow(clippy::useless_conversion)]
    fn available_bytes(&self) -> io::Result<Option<u64>> {
        let mut stats = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: the descriptor belongs to `self.dir`, open for as long as `self` lives; the
        // kernel writes one `statvfs` into the zeroed buffer, which lives through the call.
        let done = unsafe { libc::fstatvfs(self.dir.as_raw_fd(), stats.as_mut_ptr()) };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: zeroed (a valid `statvfs`, all integers), then filled by the call above.
        let stats = unsafe { stats.assume_init() };
        Ok(free_bytes(
            u64::from(stats.f_blocks),
            u64::from(stats.f_bavail),
            u64::from(stats.f_frsize),
        ))
    }
}

/// File systems on which overwriting an allocated block may take a new one (copy on write),
/// by `statfs`'s `f_type`. A store through a writable mapping there needs a free block, and
/// once the disk is full the kernel answers the page fault with `SIGBUS`: the `Mmap` backend
/// cannot write a log on them (`docs/design.md` section 10, item 7).
const COPY_ON_WRITE_FILE_SYSTEMS: [(u32, &str); 3] = [
    (0x9123_683e, "btrfs"),
    (0x2fc1_2fc1, "ZFS"),
    (0xca45_1a4e, "bcachefs"),
];

/// The name of the copy-on-write file system `dir` is on, if it is one of
/// [`COPY_ON_WRITE_FILE_SYSTEMS`]; `None` for any other, or if `fstatfs` fails (it cannot
/// tell, as the free-space check cannot).
fn copy_on_write_file_system(dir: &StdFile) -> Option<&'static str> {
    #[cfg(test)]
    if let Some(fake) = FAKE_FILE_SYSTEM_TYPE.with(std::cell::Cell::get) {
        return copy_on_write_name(fake);
    }
    let mut stats = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the descriptor is `dir`'s, open through the call; the kernel writes one
    // `statfs` into the zeroed buffer, which lives through the call.
    let done = unsafe { libc::fstatfs(dir.as_raw_fd(), stats.as_mut_ptr()) };
    if done != 0 {
        return None;
    }
    // SAFETY: zeroed (a valid `statfs`, all integers), then filled by the call above.
    let stats = unsafe { stats.assume_init() };
    // The magic numbers are 32 bits; `f_type` is wider on 64-bit targets, and signed.
    copy_on_write_name(stats.f_type as u32)
}

fn copy_on_write_name(file_system_type: u32) -> Option<&'static str> {
    COPY_ON_WRITE_FILE_SYSTEMS
        .iter()
        .find(|(magic, _)| *magic == file_system_type)
        .map(|(_, name)| *name)
}

#[cfg(test)]
thread_local! {
    /// The `f_type` this thread's opens see instead of the real one: no copy-on-write file
    /// system is mounted where the tests run.
    pub(crate) static FAKE_FILE_SYSTEM_TYPE: std::cell::Cell<Option<u32>> =
        const { std::cell::Cell::new(None) };
}

/// The bytes an unprivileged writer may still take on a file system of `blocks` blocks of
/// `block_bytes`, `available` of them free to it; `None` when the file system reports no
/// sizes (ramfs, a FUSE file system without `statfs`: it cannot tell, which is not "full").
fn free_bytes(blocks: u64, available: u64, block_bytes: u64) -> Option<u64> {
    (blocks != 0).then(|| available.saturating_mul(block_bytes))
}

struct FsLock {
    file: StdFile,
    /// The process that took the lock.
    locked_by: u32,
}

impl DirLock for FsLock {}

impl Drop for FsLock {
    /// Unlocks before the descriptor closes. A `flock` lock belongs to the open file
    /// description, which a child forked without an exec shares: closing only this process's
    /// descriptor left the directory locked for as long as the child lived, and the error of
    /// the next open named this process as the holder. A forked child never unlocks: that
    /// would release the opener's lock.
    fn drop(&mut self) {
        if std::process::id() == self.locked_by {
            // SAFETY: flock on a descriptor this struct owns, open until it drops; no memory
            // is passed.
            unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

pub(crate) struct FsFile {
    file: StdFile,
    map: MmapRaw,
    len: u64,
    mode: WriteMode,
    path: PathBuf,
    recorder: Option<SyncRecorder>,
    staging: Option<Staging>,
    direct: Option<Direct>,
}

impl FsFile {
    fn check_range(&self, offset: u64, len: usize) {
        let end = offset.checked_add(len as u64).expect("range overflows");
        assert!(
            end <= self.len,
            "range {offset}+{len} past the end of {} ({} bytes)",
            self.path.display(),
            self.len
        );
    }

    fn fdatasync(&self) -> io::Result<()> {
        // SAFETY: fdatasync on a file descriptor we own.
        if unsafe { libc::fdatasync(self.file.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes every staged range to the file and makes it durable: one `pwritev2(RWF_DSYNC)`
    /// when the staged bytes are one range and nothing else awaits a sync (the common case: the
    /// tail since the last commit), otherwise a `pwritev` of each and one `fdatasync`.
    fn sync_staged(&self, staging: &Staging) -> io::Result<()> {
        // Held across take, write and sync: a write-back running beside a sync could otherwise
        // take records the sync then reports durable before they reach the disk.
        let mut flush = staging.flush.lock();
        flush.check()?;
        let ranges = staging.take_ranges();
        #[cfg(test)]
        crate::test_hooks::hook_outside("sync_staged: the ranges are taken, not yet released");
        let outcome = match (ranges.as_slice(), flush.written_unsynced) {
            ([], false) => Ok(()),
            ([(lo, hi)], false) => self.pwritev(*lo, &[staging.slice(*lo, *hi)], libc::RWF_DSYNC),
            (many, _) => many
                .iter()
                .try_for_each(|&(lo, hi)| self.pwritev(lo, &[staging.slice(lo, hi)], 0))
                .and_then(|()| self.fdatasync()),
        };
        flush.note(outcome)?;
        flush.written_unsynced = false;
        staging.release(&ranges, false);
        Ok(())
    }

    /// `pwritev2` of all `parts` at `offset`, with `flags` (`RWF_DSYNC` makes the write durable).
    fn pwritev(&self, mut offset: u64, parts: &[&[u8]], flags: libc::c_int) -> io::Result<()> {
        let mut iov: Vec<libc::iovec> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let mut first = 0;
        while first < iov.len() {
            let count = (iov.len() - first).min(libc::UIO_MAXIOV as usize) as libc::c_int;
            // SAFETY: every iovec points into a slice borrowed for the duration of this call, and
            // the kernel only reads from them.
            let written = unsafe {
                libc::pwritev2(
                    self.file.as_raw_fd(),
                    iov[first..].as_ptr(),
                    count,
                    offset as libc::off_t,
                    flags,
                )
            };
            if written < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            offset += written as u64;
            let mut left = written as usize;
            while left > 0 {
                let v = &mut iov[first];
                if left >= v.iov_len {
                    left -= v.iov_len;
                    first += 1;
                } else {
                    // SAFETY: advancing within the same slice, `left < iov_len`.
                    v.iov_base = unsafe { (v.iov_base as *mut u8).add(left) } as *mut libc::c_void;
                    v.iov_len -= left;
                    left = 0;
                }
            }
        }
        Ok(())
    }
}

impl File for FsFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn copies_show_in_bytes(&self) -> bool {
        matches!(self.mode, WriteMode::Map | WriteMode::Uring(_))
    }

    fn write_at(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.check_range(offset, total);
        match self.mode {
            WriteMode::Pwrite => self.pwritev(offset, parts, 0),
            WriteMode::Staged => {
                self.staging
                    .as_ref()
                    .expect("staged files have staging")
                    .write(offset, parts);
                Ok(())
            }
            WriteMode::Uring(_) => {
                let staging = self.staging.as_ref().expect("io_uring files have staging");
                let direct = self.direct.as_ref().expect("io_uring files are direct");
                direct.make_valid(staging, offset, total as u64)?;
                staging.write(offset, parts);
                Ok(())
            }
            WriteMode::Map => {
                let mut at = offset as usize;
                for part in parts {
                    // SAFETY: the range is inside the mapping (checked above); the mapping is
                    // writable and lives as long as `self`; the file was fully allocated before
                    // it was mapped (created: `preallocate`; opened: `allocate_holes`) and is
                    // never shrunk, so the store cannot SIGBUS; concurrent writers and readers
                    // touch disjoint ranges (the trait's discipline).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            part.as_ptr(),
                            self.map.as_mut_ptr().add(at),
                            part.len(),
                        );
                    }
                    at += part.len();
                }
                Ok(())
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        if let (Some(staging), Some(direct)) = (&self.staging, &self.direct) {
            direct.flush(staging, true)?;
        } else if let Some(staging) = &self.staging {
            self.sync_staged(staging)?;
        } else {
            // fdatasync also writes back pages dirtied through a shared mapping (Linux has one
            // page cache), and is far cheaper than msync(MS_SYNC) here.
            self.fdatasync()?;
        }
        if let Some(recorder) = &self.recorder {
            recorder.file_synced(&self.path, &self.file)?;
        }
        Ok(())
    }

    fn sync_calls(&self) -> &'static str {
        match self.mode {
            WriteMode::Map | WriteMode::Pwrite => "fdatasync",
            WriteMode::Staged => {
                "write-back of staged records (pwritev2 with RWF_DSYNC, or pwritev and fdatasync)"
            }
            WriteMode::Uring(UringSync::DsyncWrites) => {
                "io_uring write-back of staged blocks (O_DIRECT, RWF_DSYNC)"
            }
            WriteMode::Uring(UringSync::LinkedFdatasync) => {
                "io_uring write-back of staged blocks (O_DIRECT) and fdatasync"
            }
        }
    }

    fn staged_bytes(&self) -> u64 {
        self.staging.as_ref().map_or(0, Staging::staged_bytes)
    }

    fn write_back_range(&self, offset: u64, len: u64, how: WriteBack) -> io::Result<()> {
        // Only files written with `pwrite` have their bytes in the page cache. A segment's
        // staged bytes are not there yet, and a wait could take the error of its own write-back
        // from under the log's next sync.
        if self.mode != WriteMode::Pwrite {
            return Ok(());
        }
        write_back_range(&self.file, offset, len, how)
    }

    fn populate(&self, len: u64) {
        if self.mode == WriteMode::Map && len > 0 {
            // Written through the mapping, the file is cached in small folios
            // (`MAPPED_FILL_CHUNK`), and a read fault maps at most 16 pages of them, where it
            // maps a whole large folio: reading 256 MiB took 31 000 faults instead of 5 800,
            // and `open` 39 ms instead of 17. Populated in one call, 28 ms. (Files cached in
            // large folios gain nothing from it, so the other backends skip it.) Advice changes
            // no contents: a failure (`EINVAL` before Linux 5.14) only leaves the pages to the
            // faults.
            let len = usize::try_from(len.min(self.len)).unwrap_or(usize::MAX);
            let _ = self.map.advise_range(Advice::PopulateRead, 0, len);
        }
    }

    fn forget_cached_pages(&self) {
        // Length 0: to the end of the file. Only clean pages no mapping holds are dropped.
        // SAFETY: fadvise on a descriptor we own; no memory is passed.
        unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }

    fn prepare_for_appends(&self) {
        if self.mode == WriteMode::Map {
            // Advice changes no contents: a failure only leaves read-ahead on.
            let _ = self.map.advise(Advice::Random);
        }
    }

    fn release_memory(&self) -> bool {
        let uring = match (&self.staging, &self.direct) {
            (Some(staging), Some(direct)) => Some((staging, direct)),
            _ => None,
        };
        // Held so that no sync or write-back runs meanwhile. Whatever is staged must first be
        // written to the file (by a write-back or a sync): only then does the disk hold it.
        // With `Staged` too: a sync that has taken its ranges (nothing staged any more) but not
        // yet filed them as written out would file them after the release below, under the
        // 4 MiB that a release waits for, and they stayed resident (found by review on
        // 2026-12-07).
        let _flush = match &self.staging {
            Some(staging) => {
                let flush = staging.flush.lock();
                // With `IoUring`, a failed write took its ranges without putting them in the
                // file: the staging memory holds the only copy of those blocks.
                let lost_write = uring.is_some() && flush.failed.is_some();
                if staging.staged_bytes() != 0 || lost_write {
                    return false;
                }
                Some(flush)
            }
            None => None,
        };
        if let (Some(staging), None) = (&self.staging, &self.direct) {
            // `Staged`: what syncs wrote out of a segment stays in its staging memory until
            // 4 MiB of it accumulate (`Staging::release`), which a sealed segment never does
            // again: up to 4 MiB per sealed segment, for as long as the log keeps it (found by
            // review on 2026-12-03). Given back now, once nothing is staged; bytes still staged
            // (no sync or write-back has run since the seal) leave the segment for a later call.
            // All of it, not only the whole pages of the ranges waiting: a page straddling two
            // of `release`'s batches is whole in neither, and one such page per 4 MiB written
            // stayed resident while the log kept the segment, 1/1024 of the retained log (found
            // by review on 2026-12-08).
            staging.forget_all();
        }
        let held = uring.map_or(0, |(_, direct)| direct.invalidate_all());
        // Drop every page of the mapping this process has mapped: they stay in the page cache
        // (and, with `Mmap`, any dirty bit moves to the page), and the next read maps them again.
        // With `IoUring`, `bytes` now reads these blocks through the mapping.
        // SAFETY: the range is exactly the mapping, which lives as long as `self`; dropping the
        // pages of a shared file mapping loses nothing (they are read from the page cache or the
        // file again on the next access); no slice of it is alive and no write is in progress
        // (the caller's guarantee).
        unsafe {
            libc::madvise(
                self.map.as_mut_ptr().cast(),
                self.len as usize,
                libc::MADV_DONTNEED,
            );
        }
        if self.mode == WriteMode::Map {
            // Sealed: nothing writes it again, so reads may use read-ahead (`MAPPED_FILL_CHUNK`).
            let _ = self.map.advise(Advice::Normal);
        }
        if let Some((staging, _)) = uring.filter(|_| held > 0) {
            // Then every clean cached page of the file: a page cached before (or while) an
            // `O_DIRECT` write reached the file may hold stale bytes, and once it is gone the
            // next read fetches what the writes left in the file. A page that survived anyway
            // usually fails its record's checksum on read, but not always: after a cut, the
            // record that stood at the same offset before it has the same salt and LSN.
            self.forget_cached_pages();
            staging.forget_all();
        }
        true
    }

    fn write_back(&self, staged_bytes_min: u64) -> io::Result<()> {
        let Some(staging) = &self.staging else {
            return Ok(());
        };
        if staging.staged_bytes() < staged_bytes_min.max(1) {
            return Ok(());
        }
        if let Some(direct) = &self.direct {
            return direct.flush(staging, false);
        }
        let mut flush = staging.flush.lock();
        flush.check()?;
        let ranges = staging.take_ranges();
        // Before the writes: those that succeed before one fails are in the page cache only.
        flush.written_unsynced = true;
        let written = ranges
            .iter()
            .try_for_each(|&(lo, hi)| self.pwritev(lo, &[staging.slice(lo, hi)], 0));
        flush.note(written)?;
        staging.release(&ranges, true);
        Ok(())
    }

    fn bytes(&self, offset: u64, len: usize) -> &[u8] {
        self.check_range(offset, len);
        if len == 0 {
            // An empty record's payload may start at the file's very end, one block past the
            // last that `Direct` tracks.
            return &[];
        }
        if let (Some(staging), Some(direct)) = (&self.staging, &self.direct) {
            if direct.all_valid(offset, len as u64) {
                // Written (or loaded) by this process: the staging memory holds exactly what
                // went to the disk, whatever the page cache holds.
                return staging.slice(offset, offset + len as u64);
            }
            // Otherwise the bytes predate this process's O_DIRECT writes to their blocks and
            // never change, so the mapping reads them correctly even from a stale page; or
            // `release_memory` gave the blocks back after they were durable, and dropped the
            // file's cached pages so that the mapping reads them from the disk.
        }
        // SAFETY: the range is inside the mapping (checked above), which lives as long as
        // `self`; no write touches it while the slice lives (the trait's discipline).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset as usize), len) }
    }
}

/// Anonymous memory standing in for a segment's bytes until a sync writes them to the file.
///
/// Only the exact ranges that `write` calls completed are written out, never the hull around
/// them: bytes of a copy still in progress are not written, and staging pages already written
/// out can be given back to the system without their (now zero) contents ever reaching the file.
struct Staging {
    memory: MmapRaw,
    state: parking_lot::Mutex<StagingState>,
    /// Total length of the dirty ranges (read without the lock on the append path).
    dirty_bytes: std::sync::atomic::AtomicU64,
    /// End of the highest range waiting to be given back: a write below it must first forget
    /// the pending ranges (read without the lock on the append path).
    written_out_end: std::sync::atomic::AtomicU64,
    flush: parking_lot::Mutex<FlushState>,
}

/// Serializes syncs and write-backs of one file.
struct FlushState {
    /// Bytes may have reached the file without a sync since the last sync: ranges written
    /// back, or, in a file this process opened rather than created, whatever another process
    /// (or this one, under another handle) wrote and did not sync before it was killed. The
    /// next sync then syncs the whole file, not only the ranges it writes.
    written_unsynced: bool,
    /// The first write or sync of staged bytes that failed. The ranges it took are out of the
    /// staging memory and perhaps not in the file, so no later sync may report success: it
    /// would find nothing staged and call the file durable (the log is poisoned by the caller,
    /// but a sync on another thread can run before that).
    failed: Option<Failure>,
}

/// A failed write or sync, kept to fail the ones after it.
struct Failure {
    kind: io::ErrorKind,
    /// The OS error number, given back as it was: the log tells a full disk (`ENOSPC`) by it.
    os_error: Option<i32>,
    message: String,
}

impl FlushState {
    fn new(created: bool) -> FlushState {
        FlushState {
            written_unsynced: !created,
            failed: None,
        }
    }

    /// Refuses once a write or sync failed.
    fn check(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(Failure {
                os_error: Some(code),
                ..
            }) => Err(io::Error::from_raw_os_error(*code)),
            Some(Failure { kind, message, .. }) => Err(io::Error::new(
                *kind,
                format!(
                    "an earlier write or sync of this file's staged bytes failed ({message}): \
                     they may not be in the file"
                ),
            )),
        }
    }

    /// Passes `outcome` on, noting its failure for every later sync.
    fn note<T>(&mut self, outcome: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &outcome {
            if self.failed.is_none() {
                self.failed = Some(Failure {
                    kind: e.kind(),
                    os_error: e.raw_os_error(),
                    message: e.to_string(),
                });
            }
        }
        outcome
    }
}

#[derive(Default)]
struct StagingState {
    /// Ranges written since the last sync, in completion order, adjacent ones merged.
    dirty: Vec<(u64, u64)>,
    /// Ranges written out whose pages have not been given back yet.
    written_out: Vec<(u64, u64)>,
    written_out_bytes: u64,
}

/// Give staging pages back once this many bytes were written out: `madvise` costs a TLB
/// shootdown, so it is batched.
const STAGING_RELEASE_BYTES: u64 = 4 << 20;
/// Past this many ranges waiting to be given back, they are merged (`Staging::release`).
const WRITTEN_OUT_RANGES_MERGED_PAST: usize = 64;
const PAGE_BYTES: u64 = 4096;

impl Staging {
    /// Staging for a file of `len` bytes, which this process `created` (or opened).
    fn new(len: usize, created: bool) -> io::Result<Staging> {
        let memory = MmapOptions::new().len(len).map_anon()?.into();
        Ok(Staging {
            memory,
            state: parking_lot::Mutex::new(StagingState::default()),
            dirty_bytes: std::sync::atomic::AtomicU64::new(0),
            written_out_end: std::sync::atomic::AtomicU64::new(0),
            flush: parking_lot::Mutex::new(FlushState::new(created)),
        })
    }

    fn write(&self, offset: u64, parts: &[&[u8]]) {
        if offset
            < self
                .written_out_end
                .load(std::sync::atomic::Ordering::Acquire)
        {
            // A write below bytes waiting to be given back. A cut rewriting the tail writes
            // over them: those ranges are forgotten, so that no page this write fills is given
            // back. An append that completes after later ones (reserved first, copied last)
            // writes fresh bytes below them, which overlap none: they stay, to be given back.
            // Forgetting them all, as until 2026-12-06, left their pages resident until the
            // segment was compacted whenever several threads appended (found by review).
            // Taking the lock also waits for a release in progress. Appends above every
            // pending range skip this.
            let end = offset + parts.iter().map(|p| p.len() as u64).sum::<u64>();
            let mut state = self.state.lock();
            state
                .written_out
                .retain(|&(lo, hi)| hi <= offset || end <= lo);
            state.written_out_bytes = state.written_out.iter().map(|(lo, hi)| hi - lo).sum();
            let pending_end = state.written_out.iter().map(|&(_, hi)| hi).max();
            self.written_out_end.store(
                pending_end.unwrap_or(0),
                std::sync::atomic::Ordering::Release,
            );
        }
        let mut at = offset as usize;
        for part in parts {
            // SAFETY: FsFile::write_at checked that the range lies inside the file, and the
            // staging memory has the file's length; concurrent writers touch disjoint ranges,
            // and a range is only read (by a sync) after its write returned.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    self.memory.as_mut_ptr().add(at),
                    part.len(),
                );
            }
            at += part.len();
        }
        if at == offset as usize {
            return;
        }
        let (lo, hi) = (offset, at as u64);
        let mut state = self.state.lock();
        match state.dirty.last_mut() {
            Some(last) if last.1 == lo => last.1 = hi,
            _ => state.dirty.push((lo, hi)),
        }
        self.dirty_bytes
            .fetch_add(hi - lo, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes the ranges written since the last sync, sorted and merged.
    fn take_ranges(&self) -> Vec<(u64, u64)> {
        let ranges = {
            let mut state = self.state.lock();
            // Under the lock that `write` adds under: the count matches the ranges taken.
            self.dirty_bytes
                .store(0, std::sync::atomic::Ordering::Relaxed);
            std::mem::take(&mut state.dirty)
        };
        merged(ranges)
    }

    /// Where block-aligned `offset` lies in the staging memory (page-aligned, so `O_DIRECT`
    /// reads can land there).
    fn block_ptr(&self, offset: u64) -> *mut u8 {
        assert!(offset as usize + BLOCK_BYTES as usize <= self.memory.len());
        // SAFETY: inside the staging memory (asserted above).
        unsafe { self.memory.as_mut_ptr().add(offset as usize) }
    }

    /// Where `lo..hi` of the staging memory starts, for a write that reads it raw (checked in
    /// bounds; no reference is made).
    fn range_ptr(&self, lo: u64, hi: u64) -> *const u8 {
        assert!(lo <= hi && hi as usize <= self.memory.len());
        self.memory.as_ptr().wrapping_add(lo as usize)
    }

    fn slice(&self, lo: u64, hi: u64) -> &[u8] {
        // SAFETY: inside the staging memory (ranges come from `write`, which stays in bounds);
        // every byte of the range was written by a completed `write`, and the log never writes a
        // range again while a sync may be reading it (a cut rewrites only after its own sync).
        unsafe {
            std::slice::from_raw_parts(self.memory.as_ptr().add(lo as usize), (hi - lo) as usize)
        }
    }

    /// Gives every page of the staging memory back (its bytes are all in the file).
    fn forget_all(&self) {
        let mut state = self.state.lock();
        state.written_out.clear();
        state.written_out_bytes = 0;
        self.written_out_end
            .store(0, std::sync::atomic::Ordering::Release);
        // SAFETY: exactly the staging memory; the caller (`FsFile::release_memory`) holds the
        // flush lock, found nothing staged (every byte is in the file), and has the log's word
        // that no write is in progress or will start and no slice of it is alive, so no byte
        // here is needed again. A later write into a given-back page finds it zeroed: with
        // `IoUring` it loads its blocks from the file first (they are no longer marked valid);
        // with `Staged` only the bytes a write wrote are written out, as in `release`.
        unsafe {
            libc::madvise(
                self.memory.as_mut_ptr().cast(),
                self.memory.len(),
                libc::MADV_DONTNEED,
            );
        }
    }

    /// Bytes staged and not yet written to the file.
    fn staged_bytes(&self) -> u64 {
        self.dirty_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes ranges now in the file; gives their whole pages back once enough accumulated, or
    /// at once with `all`.
    fn release(&self, ranges: &[(u64, u64)], all: bool) {
        let mut state = self.state.lock();
        state.written_out.extend_from_slice(ranges);
        state.written_out_bytes += ranges.iter().map(|(lo, hi)| hi - lo).sum::<u64>();
        // Kept short: an append completing below these ranges scans them under this lock
        // (`write`), and small commits add a few at each sync until 4 MiB have accumulated.
        // The gaps that out-of-order appends leave close once those are written out too.
        if state.written_out.len() > WRITTEN_OUT_RANGES_MERGED_PAST {
            let ranges = merged(std::mem::take(&mut state.written_out));
            state.written_out = ranges;
        }
        let end = ranges.iter().map(|&(_, hi)| hi).max().unwrap_or(0);
        self.written_out_end
            .fetch_max(end, std::sync::atomic::Ordering::AcqRel);
        if state.written_out_bytes < STAGING_RELEASE_BYTES && !all {
            return;
        }
        // Merged first: commits of less than a page each hold no whole page of their own, but
        // a run of them does.
        for (lo, hi) in merged(std::mem::take(&mut state.written_out)) {
            let first_page = lo.div_ceil(PAGE_BYTES) * PAGE_BYTES;
            let end_page = hi / PAGE_BYTES * PAGE_BYTES;
            if end_page <= first_page {
                continue;
            }
            // SAFETY: whole pages inside the staging memory whose bytes all belong to completed
            // writes already in the file; nobody reads them again (reads go to the file
            // mapping). No write is filling them: a write into a range waiting here (a cut
            // rewriting the tail) first removes the ranges it overlaps from this list under this
            // same lock (see `write` and `written_out_end`), and a write elsewhere (an append
            // completing out of order, below the range) touches no page wholly inside a range.
            // A later write into a given-back page finds it zeroed, which is harmless because
            // only the bytes it writes are written out.
            unsafe {
                libc::madvise(
                    self.memory.as_mut_ptr().add(first_page as usize).cast(),
                    (end_page - first_page) as usize,
                    libc::MADV_DONTNEED,
                );
            }
        }
        state.written_out_bytes = 0;
        self.written_out_end
            .store(0, std::sync::atomic::Ordering::Release);
    }
}

/// `ranges` sorted, with overlapping and adjacent ones merged.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if last.1 >= lo => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// The `O_DIRECT` side of an io_uring file: its descriptor, the shared ring, and which blocks
/// the staging memory holds (those written or loaded by this process).
struct Direct {
    fd: StdFile,
    ring: Arc<Ring>,
    /// One bit a block: set once the staging memory holds the block's current bytes.
    valid: Box<[std::sync::atomic::AtomicU64]>,
    /// Serializes loading blocks from the disk (rare: the first write into an old block).
    load: parking_lot::Mutex<()>,
}

impl Direct {
    fn new(path: &Path, ring: Arc<Ring>, len: u64, created: bool) -> io::Result<Direct> {
        if len % BLOCK_BYTES != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {len} bytes, not a multiple of {BLOCK_BYTES}",
                    path.display()
                ),
            ));
        }
        let fd = uring::open_direct(path)?;
        let blocks = len / BLOCK_BYTES;
        // A file this process created (allocated, all zero) matches the zeroed staging memory.
        let fill = if created { u64::MAX } else { 0 };
        let valid = (0..blocks.div_ceil(64))
            .map(|_| std::sync::atomic::AtomicU64::new(fill))
            .collect();
        Ok(Direct {
            fd,
            ring,
            valid,
            load: parking_lot::Mutex::new(()),
        })
    }

    fn is_valid(&self, block: u64) -> bool {
        let word = self.valid[(block / 64) as usize].load(std::sync::atomic::Ordering::Acquire);
        word & (1 << (block % 64)) != 0
    }

    fn set_valid(&self, block: u64) {
        self.valid[(block / 64) as usize]
            .fetch_or(1 << (block % 64), std::sync::atomic::Ordering::AcqRel);
    }

    fn blocks(offset: u64, len: u64) -> std::ops::Range<u64> {
        offset / BLOCK_BYTES..(offset + len.max(1)).div_ceil(BLOCK_BYTES)
    }

    fn all_valid(&self, offset: u64, len: u64) -> bool {
        Self::blocks(offset, len).all(|b| self.is_valid(b))
    }

    /// Marks every block as not held by the staging memory; returns how many were.
    fn invalidate_all(&self) -> u64 {
        self.valid
            .iter()
            .map(|word| {
                u64::from(
                    word.swap(0, std::sync::atomic::Ordering::AcqRel)
                        .count_ones(),
                )
            })
            .sum()
    }

    /// Before a write: loads from the disk every block it touches that the staging memory does
    /// not hold yet and that the write does not cover whole, so that writing whole blocks out
    /// later never replaces bytes on disk with stale staging bytes.
    fn make_valid(&self, staging: &Staging, offset: u64, len: u64) -> io::Result<()> {
        for block in Self::blocks(offset, len) {
            if self.is_valid(block) {
                continue;
            }
            let _loading = self.load.lock();
            if self.is_valid(block) {
                continue;
            }
            let start = block * BLOCK_BYTES;
            let covered = offset <= start && offset + len >= start + BLOCK_BYTES;
            if !covered {
                uring::read_direct(&self.fd, staging.block_ptr(start), start, BLOCK_BYTES)?;
            }
            self.set_valid(block);
        }
        Ok(())
    }

    /// Writes the staged ranges out as whole blocks (and makes them durable with `durable`).
    fn flush(&self, staging: &Staging, durable: bool) -> io::Result<()> {
        let mut flush = staging.flush.lock();
        flush.check()?;
        let ranges = staging.take_ranges();
        let mut blocks: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            let (lo, hi) = (
                lo / BLOCK_BYTES * BLOCK_BYTES,
                hi.div_ceil(BLOCK_BYTES) * BLOCK_BYTES,
            );
            match blocks.last_mut() {
                Some(last) if last.1 >= lo => last.1 = last.1.max(hi),
                _ => blocks.push((lo, hi)),
            }
        }
        debug_assert!(blocks.iter().all(|&(lo, hi)| self.all_valid(lo, hi - lo)));
        // Raw pointers, not slices: the last block of a range may hold bytes of a record
        // another appender is copying now (`Ring::write`). Split into writes of at most
        // `DIRECT_WRITE_BYTES_MAX`: Linux writes at most 2 GiB - 4 KiB in one call, and a
        // shorter write than asked counts as failed.
        let writes: Vec<(u64, *const u8, usize)> = blocks
            .iter()
            .flat_map(|&(lo, hi)| write_pieces(lo, hi, DIRECT_WRITE_BYTES_MAX))
            .map(|(lo, hi)| (lo, staging.range_ptr(lo, hi), (hi - lo) as usize))
            .collect();
        let sync_all = durable && flush.written_unsynced;
        if writes.is_empty() && !sync_all {
            // Nothing staged, and every write so far durable (or none asked to be): a ring's
            // empty durable write is still an `fdatasync`, which may flush the disk's cache,
            // at every such sync (found by review on 2026-12-08). `Staged` makes no call
            // either.
            return Ok(());
        }
        if !durable {
            // Before the writes: those that succeed before one fails are not synced.
            flush.written_unsynced = true;
        }
        // SAFETY: the pointers are inside the staging memory (`range_ptr` checks), which lives
        // as long as `staging`, borrowed for this whole call.
        let written = unsafe { self.ring.write(&self.fd, &writes, durable) };
        flush.note(written)?;
        if sync_all && self.ring.mode() == UringSync::DsyncWrites {
            // Blocks written back earlier without a sync (or before this process opened the
            // file) are not covered by RWF_DSYNC writes.
            // SAFETY: no buffer.
            let synced = unsafe { self.ring.write(&self.fd, &[], true) };
            flush.note(synced)?;
        }
        flush.written_unsynced = !durable;
        Ok(())
    }
}

/// Gives blocks to the holes of a file this process did not create, before it is mapped
/// writable: a store into a hole makes the page fault allocate a block, and on a full disk
/// that is a SIGBUS, not an error. Files this process creates are allocated or zero-filled
/// before they are mapped; one it opens may have holes if something outside rwal made them (a
/// copy with `cp --sparse=always`, `rsync -S` or `tar -S`, `fallocate --dig-holes`).
///
/// Only a file that may have holes is given any (`may_have_holes`): `fallocate` over blocks
/// that all exist changes nothing, but XFS reserves room for the whole range before it looks,
/// so on a full disk (or at a quota) it would refuse the open of a log rwal wrote whole (found
/// by review on 2026-12-07). Where `fallocate` cannot be used (`EOPNOTSUPP`: the file system
/// has none; `ENOSYS`, `EPERM`: a sandbox's filter), the file is mapped as it is, as before.
fn allocate_holes(file: &StdFile, len: u64, blocks: u64) -> io::Result<()> {
    if !may_have_holes(file, len, blocks) {
        return Ok(());
    }
    let len_off = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: fallocate on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if fallocate_unavailable(&err) {
        return Ok(());
    }
    Err(err)
}

/// Whether a file of `len` bytes and `blocks` (of 512 bytes, `st_blocks`) may have holes: fewer
/// blocks than its length, or a hole in its extent map. The blocks alone are not enough: they
/// count the file system's own blocks for the file too (an external extended attribute block,
/// ext4's indirect blocks without extents, XFS's extent maps), which can make up for a hole of
/// a few pages (found by review on 2026-12-08). Where `lseek(SEEK_HOLE)` sees a hole, the
/// extent map decides (`holes_in_extent_map`): `SEEK_HOLE` also reports the unwritten extents
/// that `fallocate` leaves (`Preallocation::Fallocate`) as holes, and giving them blocks again
/// is what XFS refuses on a full disk. Without an extent map the blocks' answer stands.
fn may_have_holes(file: &StdFile, len: u64, blocks: u64) -> bool {
    if blocks.saturating_mul(512) < len {
        return true;
    }
    // SAFETY: lseek on a file descriptor we own; the descriptor's offset it moves is not used
    // (every read and write of the file names its offset).
    let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    // An error (a file system that refuses `SEEK_HOLE`), a file system without it (which
    // reports the whole file as data), or one without extent maps: the blocks' answer. Taking
    // `SEEK_HOLE`'s word there would give every `Preallocation::Fallocate` file blocks again.
    match u64::try_from(hole) {
        Ok(hole) if hole < len => holes_in_extent_map(file, len).unwrap_or(false),
        _ => false,
    }
}

/// Whether the file's extent map (`FS_IOC_FIEMAP`) leaves some of its first `len` bytes without
/// blocks; `None` where the file system has no map to give. Unwritten extents are blocks.
fn holes_in_extent_map(file: &StdFile, len: u64) -> Option<bool> {
    /// `struct fiemap_extent` of `linux/fiemap.h`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    /// `struct fiemap`, with room for `EXTENTS` extents after it.
    #[repr(C)]
    struct Map {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; EXTENTS],
    }
    const EXTENTS: usize = 32;
    /// `_IOWR('f', 11, struct fiemap)`: the same number on every Linux architecture (those
    /// with a three-bit direction field encode read-write as the same two top bits).
    const FS_IOC_FIEMAP: u32 = 0xC020_660B;
    const EXTENT_LAST: u32 = 1;
    let mut covered = 0u64;
    loop {
        let mut map = Map {
            start: covered,
            length: len - covered,
            flags: 0,
            mapped_extents: 0,
            extent_count: EXTENTS as u32,
            reserved: 0,
            extents: [Extent::default(); EXTENTS],
        };
        // SAFETY: FS_IOC_FIEMAP reads the header of `map` and writes at most `extent_count`
        // extents into the room after it, which `map` has; nothing else is touched.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, &mut map) };
        if rc != 0 {
            return None;
        }
        let mapped = (map.mapped_extents as usize).min(EXTENTS);
        if mapped == 0 {
            // Nothing from `covered` on has blocks.
            return Some(true);
        }
        let before = covered;
        for extent in &map.extents[..mapped] {
            if extent.logical > covered {
                return Some(true);
            }
            covered = covered.max(extent.logical.saturating_add(extent.length));
            if covered >= len {
                return Some(false);
            }
            if extent.flags & EXTENT_LAST != 0 {
                // The last extent ends before `len`.
                return Some(true);
            }
        }
        if covered == before {
            // A map that does not move on: not one to trust.
            return None;
        }
    }
}

/// Whether `fallocate` failed because it cannot be used here, rather than for want of room:
/// `EOPNOTSUPP` (the file system has none), `ENOSYS` or `EPERM` (a sandbox's system-call
/// filter, seccomp's usual answers). Segments are then zero-filled instead (until 2026-12-07
/// only `EOPNOTSUPP` was, and under such a filter no segment could be created: found by
/// review), and a reopened file is mapped as it is.
fn fallocate_unavailable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory under the system's temporary directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The probe's write: refused writes say why as `Unsupported`, naming the directory; a full
    /// disk lets the open go on; another error is the open's own.
    #[test]
    fn a_refused_probe_write_is_unsupported_and_a_full_disk_is_not() {
        let dir = Path::new("/logs/here");
        for errno in [libc::EINVAL, libc::EPERM, libc::ENOSYS] {
            let refused =
                probe_write_refused(dir, io::Error::from_raw_os_error(errno)).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::Unsupported, "{errno}");
            let said = refused.to_string();
            assert!(
                said.contains("/logs/here") && said.contains("seccomp"),
                "{said}"
            );
        }
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            assert!(probe_write_refused(dir, io::Error::from_raw_os_error(errno)).is_ok());
        }
        let failed = probe_write_refused(dir, io::Error::from_raw_os_error(libc::EIO)).unwrap_err();
        assert_eq!(failed.raw_os_error(), Some(libc::EIO));
    }

    /// The probe file's creation: a full disk (no block or no inode for it) lets the open go
    /// on, as at the probe's write; other errors are the open's (an `O_DIRECT` open refused on
    /// tmpfs is judged by the caller, from `EINVAL`).
    #[test]
    fn a_full_disk_at_the_probes_creation_lets_the_open_go_on() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            assert!(probe_create_refused(io::Error::from_raw_os_error(errno)).is_ok());
        }
        for errno in [libc::EIO, libc::EACCES, libc::EINVAL] {
            let failed = probe_create_refused(io::Error::from_raw_os_error(errno)).unwrap_err();
            assert_eq!(failed.raw_os_error(), Some(errno));
        }
    }

    /// A file system that reports no blocks cannot tell how full it is: no figure, not 0 free
    /// (which would refuse every received snapshot there); one that does gives its available
    /// blocks' bytes, without overflowing.
    #[test]
    fn free_bytes_are_unknown_on_a_file_system_without_sizes() {
        assert_eq!(free_bytes(0, 0, 4096), None);
        assert_eq!(free_bytes(0, 7, 4096), None);
        assert_eq!(free_bytes(1000, 0, 4096), Some(0));
        assert_eq!(free_bytes(1000, 10, 4096), Some(40960));
        assert_eq!(free_bytes(1, u64::MAX, 4096), Some(u64::MAX));
    }

    /// The copy-on-write file systems are told by their magic numbers, and no other is taken
    /// for one: ext4, XFS, tmpfs, overlayfs and NFS map as they always did.
    #[test]
    fn copy_on_write_file_systems_are_known_by_their_magic_numbers() {
        assert_eq!(copy_on_write_name(0x9123_683e), Some("btrfs"));
        assert_eq!(copy_on_write_name(0x2fc1_2fc1), Some("ZFS"));
        assert_eq!(copy_on_write_name(0xca45_1a4e), Some("bcachefs"));
        for other in [0xef53, 0x5846_5342, 0x0102_1994, 0x794c_7630, 0x6969] {
            assert_eq!(copy_on_write_name(other), None, "{other:#x}");
        }
    }

    /// The holder of a lock is read from the line of the lock itself, not from a waiter's line,
    /// another file's lock or a POSIX lock.
    #[test]
    fn the_lock_holder_is_read_from_the_flock_line_of_the_file() {
        let locks = "\
1: POSIX  ADVISORY  WRITE 11 fd:01:77 0 EOF
2: FLOCK  ADVISORY  WRITE 22 fd:01:78 0 EOF
3: FLOCK  ADVISORY  WRITE 33 fd:01:77 0 EOF
3: -> FLOCK  ADVISORY  WRITE 44 fd:01:77 0 EOF
";
        assert_eq!(holder_in_proc_locks(locks, "fd:01:77"), Some(33));
        assert_eq!(holder_in_proc_locks(locks, "fd:01:78"), Some(22));
        assert_eq!(holder_in_proc_locks(locks, "fd:02:77"), None);
        let unseen = "1: FLOCK  ADVISORY  WRITE 0 fd:01:77 0 EOF\n";
        assert_eq!(holder_in_proc_locks(unseen, "fd:01:77"), None);
        let waiter_only = "3: -> FLOCK  ADVISORY  WRITE 44 fd:01:77 0 EOF\n";
        assert_eq!(holder_in_proc_locks(waiter_only, "fd:01:77"), None);
        assert_eq!(holder_in_proc_locks("", "fd:01:77"), None);
    }

    #[test]
    fn the_lock_holder_of_a_directory_locked_here_is_this_process() {
        let dir = scratch("lock-holder");
        let fs = FsDir::open(&dir.0, true, WriteMode::Map, Preallocation::ZeroFill, None).unwrap();
        assert_eq!(lock_holder(&dir.0), None, "no lock file yet");
        let lock = fs.lock().unwrap();
        assert_eq!(lock_holder(&dir.0), Some(std::process::id()));
        drop(lock);
        assert_eq!(lock_holder(&dir.0), None, "released");
    }

    fn scratch(label: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("rwal-fs-{label}-{}", std::process::id())))
    }

    /// O_DIRECT write-backs are cut into writes Linux takes whole (found by review,
    /// 2026-12-03: one write of 2 GiB, a header block merged with a record of a 2 GiB segment,
    /// came back short and poisoned the log).
    #[test]
    fn direct_writes_are_cut_into_pieces_linux_writes_whole() {
        let gib = 1u64 << 30;
        let pieces: Vec<(u64, u64)> = write_pieces(0, 2 * gib + 8192, gib).collect();
        assert_eq!(
            pieces,
            vec![(0, gib), (gib, 2 * gib), (2 * gib, 2 * gib + 8192)]
        );
        assert_eq!(
            write_pieces(4096, 12288, gib).collect::<Vec<_>>(),
            vec![(4096, 12288)]
        );
        assert_eq!(write_pieces(4096, 4096, gib).count(), 0);
    }

    /// A segment prepared ahead stops its zero-fill once the log closes: no file is left
    /// behind, and the name is free for the next open to prepare it again.
    #[test]
    fn a_stopped_zero_fill_leaves_no_file() {
        let dir = scratch("stopped-fill");
        for mode in [WriteMode::Map, WriteMode::Pwrite] {
            let fs = FsDir::open(&dir.0, true, mode, Preallocation::ZeroFill, None)
                .expect("the directory opens");
            let stop = AtomicBool::new(true);
            let err = fs
                .create_unless_stopped("prepared.tmp", 4 << 20, &stop)
                .err()
                .expect("stopped");
            assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err}");
            assert!(err.to_string().contains("closing"), "{err}");
            assert!(!dir.0.join("prepared.tmp").exists());
            stop.store(false, Ordering::Release);
            let file = fs
                .create_unless_stopped("prepared.tmp", 4 << 20, &stop)
                .expect("created");
            assert_eq!(file.len(), 4 << 20);
            assert!(file.bytes(0, 4 << 20).iter().all(|&b| b == 0));
            drop(file);
            std::fs::remove_file(dir.0.join("prepared.tmp")).expect("removed");
        }
    }

    /// The real `sync_file_range` accepts what the pacer asks of it (an argument error would be
    /// returned now, not swallowed) and leaves the bytes as written, for a snapshot and for a
    /// segment's zero-fill; asked of a segment afterwards, the write-back does nothing.
    #[test]
    fn large_files_are_written_back_in_steps_on_a_real_file_system() {
        let dir = scratch("write-back");
        let fs = FsDir::open(&dir.0, true, WriteMode::Map, Preallocation::ZeroFill, None)
            .expect("the directory opens");
        let step = crate::io::writeback::WRITEBACK_STEP_BYTES;
        let plain = fs.create_plain("big", 3 * step + 100).expect("created");
        let chunk = vec![0x5au8; step as usize];
        for i in 0..3 {
            plain.write_at(i * step, &[&chunk]).expect("written");
        }
        plain
            .write_back_range(0, step, WriteBack::Start)
            .expect("started");
        plain
            .write_back_range(step, step, WriteBack::Start)
            .expect("started");
        plain
            .write_back_range(0, step, WriteBack::Await)
            .expect("awaited");
        plain.sync().expect("synced");
        assert!(plain.bytes(0, 3 * step as usize).iter().all(|&b| b == 0x5a));
        assert!(plain.bytes(3 * step, 100).iter().all(|&b| b == 0));
        // A segment's zero-fill, paced in its own steps through the same calls, is whole.
        let len = 2 * ZERO_FILL_STEP_BYTES + step / 2;
        let segment = fs.create("segment", len).expect("created");
        assert!(segment.bytes(0, len as usize).iter().all(|&b| b == 0));
        segment
            .write_back_range(0, step, WriteBack::Await)
            .expect("nothing to do");
    }
    /// The file-level write modes that stage their bytes: `Staged`, and `IoUring` both ways.
    fn staging_modes() -> [WriteMode; 3] {
        [
            WriteMode::Staged,
            WriteMode::Uring(UringSync::DsyncWrites),
            WriteMode::Uring(UringSync::LinkedFdatasync),
        ]
    }

    /// A scratch directory in `mode` with a file "segment" of 1 MiB, created (zero-filled).
    fn dir_with_a_segment(label: &str, mode: WriteMode) -> (Scratch, FsDir) {
        let dir = scratch(label);
        let fs = FsDir::open(&dir.0, true, mode, Preallocation::ZeroFill, None)
            .expect("the directory opens");
        drop(fs.create("segment", 1 << 20).expect("created"));
        (dir, fs)
    }

    /// The descriptor `file`'s bytes are written through (the `O_DIRECT` one with `IoUring`).
    fn written_fd(file: &FsFile) -> std::os::fd::RawFd {
        match &file.direct {
            Some(direct) => direct.fd.as_raw_fd(),
            None => file.file.as_raw_fd(),
        }
    }

    /// `name` in `fs`, opened (not created) by this process, as the concrete file type.
    fn open_concrete(fs: &FsDir, name: &str, mode: WriteMode) -> FsFile {
        let path = fs.file_path(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("the file opens");
        fs.map_file(file, path, false, mode).expect("mapped")
    }

    /// Makes `fd` refuse writes from now on (it becomes a read-only descriptor of `path`): a
    /// disk that fails writes, as far as the file's code can tell.
    fn refuse_writes(fd: std::os::fd::RawFd, path: &Path) {
        let read_only = StdFile::open(path).expect("opened read-only");
        // SAFETY: both descriptors are open; `fd` is replaced in place and stays owned by its
        // file.
        let replaced = unsafe { libc::dup2(read_only.as_raw_fd(), fd) };
        assert_eq!(replaced, fd, "{}", io::Error::last_os_error());
    }

    /// A sync with nothing staged and every write already durable makes no system call:
    /// `IoUring` ran an `fdatasync` at each (found by review on 2026-12-08). Checked by
    /// putting a pipe in the file's place, on which any sync fails.
    #[test]
    fn a_sync_with_nothing_to_write_calls_nothing() {
        for mode in staging_modes() {
            let (_dir, fs) = dir_with_a_segment("idle-sync", mode);
            let file = open_concrete(&fs, "segment", mode);
            file.write_at(8192, &[&[7u8; 100]]).expect("staged");
            file.sync().expect("synced");
            let fd = written_fd(&file);
            let mut pipe = [0; 2];
            // SAFETY: `pipe` has room for the two descriptors.
            assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
            // SAFETY: all three descriptors are open; `fd` is replaced in place and stays
            // owned by its file; the pipe's own two are closed once copied.
            unsafe {
                assert_eq!(libc::dup2(pipe[1], fd), fd);
                libc::close(pipe[0]);
                libc::close(pipe[1]);
            }
            file.sync().expect("nothing to write: nothing called");
        }
    }

    /// A write-back that fails has taken its ranges out of the staging memory; a sync after it
    /// finds nothing staged, and used to report the file durable (a commit waiting on the
    /// flush lock behind the write-back was then acknowledged, its records never written).
    /// Every later write-back and sync must fail instead.
    #[test]
    fn after_a_failed_write_back_no_sync_succeeds() {
        for mode in staging_modes() {
            let (_dir, fs) = dir_with_a_segment("failed-write-back", mode);
            let file = open_concrete(&fs, "segment", mode);
            file.sync().expect("the first sync succeeds");
            file.write_at(8192, &[&[7u8; 100]]).expect("staged");
            let fd = written_fd(&file);
            refuse_writes(fd, &fs.file_path("segment"));
            let failed = file.write_back(0).expect_err("the write-back fails");
            assert_eq!(
                failed.raw_os_error(),
                Some(libc::EBADF),
                "{mode:?}: {failed}"
            );
            assert_eq!(file.staged_bytes(), 0, "{mode:?}: the ranges were taken");
            // The first failure's error number again (a full disk stays `ENOSPC`).
            let refused = file.sync().expect_err("no sync after it succeeds");
            assert_eq!(
                refused.raw_os_error(),
                Some(libc::EBADF),
                "{mode:?}: {refused}"
            );
            file.write_at(16384, &[&[8u8; 100]]).expect("staged");
            let refused = file.write_back(0).expect_err("nor a write-back");
            assert_eq!(
                refused.raw_os_error(),
                Some(libc::EBADF),
                "{mode:?}: {refused}"
            );
            if let Some(direct) = &file.direct {
                // Nor is the staging memory, the only copy of the blocks, given back.
                assert!(!file.release_memory(), "{mode:?}");
                assert!(direct.is_valid(2), "{mode:?}");
            }
        }
    }

    /// How many pages of `path` the page cache holds dirty (Linux's `cachestat`, 6.5 and later).
    fn dirty_pages(path: &Path) -> u64 {
        #[repr(C)]
        struct Range {
            offset: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            cache: u64,
            dirty: u64,
            writeback: u64,
            evicted: u64,
            recently_evicted: u64,
        }
        // The same number on every architecture (past the unified table's start).
        const SYS_CACHESTAT: libc::c_long = 451;
        let file = StdFile::open(path).expect("opened");
        let range = Range { offset: 0, len: 0 };
        let mut stat = Stat::default();
        // SAFETY: both structs are the kernel's layout, valid for the call.
        let rc = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                file.as_raw_fd(),
                &range as *const Range,
                &mut stat as *mut Stat,
                0,
            )
        };
        assert_eq!(rc, 0, "cachestat: {}", io::Error::last_os_error());
        stat.dirty
    }

    /// A sync leaves nothing it wrote dirty in the page cache, with one range to write
    /// (`Staged`: one `pwritev2(RWF_DSYNC)`) and with several (`pwritev`s and an `fdatasync`).
    /// The power-cut test of the real backends (tests/tests/lost_sync.rs) records a file's
    /// image when `File::sync` returns, whatever it did: this is where a sync that lost its
    /// system call (the `fdatasync`, the `RWF_DSYNC` flag) fails (found missing by review on
    /// 2026-12-07). `IoUring` writes bypass the page cache, so it has nothing to show here.
    #[test]
    fn a_sync_leaves_no_dirty_page_of_what_was_written() {
        for mode in [WriteMode::Map, WriteMode::Pwrite, WriteMode::Staged] {
            let dir = scratch("sync-clean");
            let fs = FsDir::open(&dir.0, true, mode, Preallocation::ZeroFill, None)
                .expect("the directory opens");
            let file = fs.create("segment", 1 << 20).expect("created");
            let path = fs.file_path("segment");
            assert_eq!(
                dirty_pages(&path),
                0,
                "{mode:?}: the creation left dirty pages"
            );
            let one: &[(u64, usize)] = &[(4096, 64 << 10)];
            let several: &[(u64, usize)] = &[(100 << 10, 8 << 10), (200 << 10, 8 << 10)];
            for ranges in [one, several] {
                for &(at, len) in ranges {
                    file.write_at(at, &[&vec![5u8; len]]).expect("written");
                }
                if !matches!(mode, WriteMode::Staged) {
                    // (`Staged` keeps them in its staging memory until the sync.)
                    assert!(dirty_pages(&path) > 0, "{mode:?}: the writes are not dirty");
                }
                file.sync().expect("synced");
                assert_eq!(
                    dirty_pages(&path),
                    0,
                    "{mode:?}: the sync of {} range(s) left dirty pages",
                    ranges.len()
                );
            }
        }
    }

    /// A file this process opened may hold bytes another process wrote and never synced (it
    /// was killed: the page cache keeps them). Recovery reads them as records and syncs the
    /// segment before it calls them durable; with nothing staged, that sync used to do
    /// nothing (or, with one range to zero, sync that range only), and a power cut could take
    /// records the log had called durable.
    #[test]
    fn the_first_sync_of_a_file_opened_here_syncs_all_of_it() {
        for mode in staging_modes() {
            let (_dir, fs) = dir_with_a_segment("opened-unsynced", mode);
            // Another process's write, left in the page cache.
            let path = fs.file_path("segment");
            let other = OpenOptions::new().write(true).open(&path).expect("opened");
            std::os::unix::fs::FileExt::write_all_at(&other, &[3u8; 64 << 10], 4096)
                .expect("written");
            drop(other);
            assert!(dirty_pages(&path) > 0, "{mode:?}: the write is not synced");
            let file = open_concrete(&fs, "segment", mode);
            file.sync().expect("synced");
            assert_eq!(dirty_pages(&path), 0, "{mode:?}: the sync left dirty pages");
        }
    }

    /// Commits smaller than a page each give their staging pages back all the same, once their
    /// ranges add up (`Staging::release` merges them): a log committed record by record used
    /// to keep every staged byte of its segments in anonymous memory.
    #[test]
    fn staging_pages_are_given_back_after_commits_smaller_than_a_page() {
        let len = 16 << 20;
        let staging = Staging::new(len, true).expect("staging");
        let record = [9u8; 2000];
        let mut at = 0;
        while at + 2000 <= 12 << 20 {
            staging.write(at, &[&record]);
            let ranges = staging.take_ranges();
            staging.release(&ranges, false);
            at += 2000;
        }
        let resident = resident_pages(&staging);
        // What waits for the next release (under 4 MiB), and the partly written page at the end.
        assert!(
            resident <= STAGING_RELEASE_BYTES / PAGE_BYTES + 2,
            "{resident} of the {} pages written stay resident",
            (12 << 20) / PAGE_BYTES
        );
    }

    /// Pages of the staging memory resident now (`mincore`).
    fn resident_pages(staging: &Staging) -> u64 {
        let len = staging.memory.len();
        let mut resident = vec![0u8; len / PAGE_BYTES as usize];
        // SAFETY: the staging memory is one page-aligned anonymous mapping of `len` bytes;
        // `resident` has a byte for each of its pages.
        let rc = unsafe {
            libc::mincore(
                staging.memory.as_mut_ptr().cast(),
                len,
                resident.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        resident.iter().filter(|&&b| b & 1 != 0).count() as u64
    }

    /// A sealed `Staged` segment's memory given back while a sync of it has taken its ranges
    /// and not yet filed them as written out: the release waits for the sync, then gives back
    /// what it wrote. Without the flush lock it returned at once, and the sync then filed its
    /// ranges under the 4 MiB a release waits for: they stayed resident for as long as the log
    /// kept the segment (found by review on 2026-12-07).
    #[test]
    fn memory_released_during_a_sync_is_given_back_after_it() {
        let dir = scratch("release-during-sync");
        let fs = FsDir::open(
            &dir.0,
            true,
            WriteMode::Staged,
            Preallocation::ZeroFill,
            None,
        )
        .expect("the directory opens");
        drop(fs.create("segment", 8 << 20).expect("created"));
        let file = Arc::new(open_concrete(&fs, "segment", WriteMode::Staged));
        file.write_at(0, &[&vec![3u8; 1 << 20]]).expect("written");
        let releaser: Arc<parking_lot::Mutex<Option<std::thread::JoinHandle<bool>>>> =
            Arc::default();
        let (file_there, slot) = (file.clone(), releaser.clone());
        crate::test_hooks::at_outside(
            "sync_staged: the ranges are taken, not yet released",
            move || {
                let (started, wait) = std::sync::mpsc::channel();
                *slot.lock() = Some(std::thread::spawn(move || {
                    started.send(()).expect("sent");
                    file_there.release_memory()
                }));
                wait.recv().expect("the releaser started");
                // Long enough for a release that does not wait to finish meanwhile.
                std::thread::sleep(std::time::Duration::from_millis(100));
            },
        );
        file.sync().expect("synced");
        let thread = releaser.lock().take().expect("the hook ran");
        assert!(thread.join().expect("no panic"), "released once synced");
        let staging = file.staging.as_ref().expect("staged");
        assert_eq!(
            resident_pages(staging),
            0,
            "the synced megabyte stays resident"
        );
    }

    /// Gives back the blocks of `len` bytes of `file` from `offset` (a hole, as a sparse copy
    /// leaves).
    fn punch_hole(file: &StdFile, offset: u64, len: u64) {
        // SAFETY: fallocate on a descriptor the caller owns; no memory is passed.
        let punched = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        assert_eq!(punched, 0, "punch: {}", io::Error::last_os_error());
    }

    /// Where `SEEK_HOLE` finds `file`'s first hole (its length if none).
    fn first_hole(file: &StdFile) -> u64 {
        // SAFETY: lseek on a descriptor the caller owns.
        let at = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
        u64::try_from(at).expect("SEEK_HOLE works here")
    }

    /// A hole that the file system's own blocks make up for in `st_blocks` (an extended
    /// attribute block, indirect blocks) was taken for none, and mapped writable: a store into
    /// it on a full disk is a SIGBUS (found by review on 2026-12-08). Given the blocks such a
    /// file reports, the hole is found and given blocks.
    #[test]
    fn a_hole_hidden_from_the_block_count_is_given_blocks() {
        let dir = scratch("hidden-hole");
        std::fs::create_dir_all(&dir.0).expect("scratch directory");
        let path = dir.0.join("segment");
        let len = 64u64 << 10;
        std::fs::write(&path, vec![1u8; len as usize]).expect("written");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("opens");
        punch_hole(&file, 8192, 4096);
        assert_eq!(first_hole(&file), 8192, "the hole is there");
        assert_eq!(
            holes_in_extent_map(&file, len),
            Some(true),
            "the scratch directory's file system ({}) gives extent maps",
            dir.0.display()
        );
        // As many blocks as the length: what a metadata block beside the hole reports.
        allocate_holes(&file, len, len / 512).expect("allocated");
        // Allocated, perhaps as an unwritten extent (which `SEEK_HOLE` may call a hole).
        assert_eq!(
            holes_in_extent_map(&file, len),
            Some(false),
            "the hole stays under the mapping"
        );
        assert_eq!(
            std::fs::read(&path).expect("read")[8192..12288],
            [0u8; 4096],
            "the hole reads as zeros once allocated"
        );
    }

    /// The unwritten extents `fallocate` leaves read as holes to `SEEK_HOLE`, but are blocks:
    /// a file preallocated so is not given blocks again at open (which XFS refuses on a full
    /// disk), and one with a real hole is.
    #[test]
    fn unwritten_extents_are_not_holes_and_punched_ones_are() {
        let dir = scratch("unwritten-extents");
        std::fs::create_dir_all(&dir.0).expect("scratch directory");
        let path = dir.0.join("segment");
        let len = 64u64 << 10;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("opens");
        // SAFETY: fallocate on a descriptor this test owns; no memory is passed.
        let allocated = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
        assert_eq!(allocated, 0, "fallocate: {}", io::Error::last_os_error());
        let seen_hole = first_hole(&file);
        assert!(
            seen_hole < len,
            "unwritten extents are holes to SEEK_HOLE here ({seen_hole})"
        );
        assert_eq!(
            holes_in_extent_map(&file, len),
            Some(false),
            "the scratch directory's file system gives extent maps"
        );
        assert!(!may_have_holes(&file, len, len / 512));
        punch_hole(&file, len - 4096, 4096);
        assert_eq!(holes_in_extent_map(&file, len), Some(true));
        assert!(may_have_holes(&file, len, len / 512));
    }

    /// A page straddling two of `Staging::release`'s batches is whole in neither: the seal's
    /// release gave back only the ranges still waiting, so one page per 4 MiB written stayed
    /// resident while the log kept the segment (found by review on 2026-12-08).
    #[test]
    fn a_sealed_staged_segment_gives_back_the_pages_between_release_batches() {
        let dir = scratch("straddling-pages");
        let fs = FsDir::open(
            &dir.0,
            true,
            WriteMode::Staged,
            Preallocation::ZeroFill,
            None,
        )
        .expect("the directory opens");
        drop(fs.create("segment", 16 << 20).expect("created"));
        let file = open_concrete(&fs, "segment", WriteMode::Staged);
        // Two syncs of just over 4 MiB each: each release gives back the whole pages of its
        // batch, and the page at 4 MiB holds the end of the first and the start of the second.
        let batch = (4 << 20) + 1000;
        for at in [0, batch] {
            file.write_at(at, &[&vec![5u8; batch as usize]])
                .expect("written");
            file.sync().expect("synced");
        }
        let staging = file.staging.as_ref().expect("staged");
        assert!(
            resident_pages(staging) > 0,
            "the straddling pages are resident before the seal's release"
        );
        assert!(file.release_memory(), "nothing staged: released");
        assert_eq!(
            resident_pages(staging),
            0,
            "pages between release batches stay resident after the seal"
        );
    }

    /// Appends from several threads complete out of order: a record reserved first may be
    /// copied after later ones were synced and written out. Its write below those ranges
    /// forgot them all, and their pages stayed resident until the segment was compacted (found
    /// by review on 2026-12-06); only a cut, which writes over them, needs them forgotten.
    #[test]
    fn pages_written_out_before_an_earlier_record_completes_are_given_back() {
        let staging = Staging::new(16 << 20, true).expect("staging");
        let record = [7u8; 64 << 10];
        let step = record.len() as u64;
        let mut at = 0;
        while at + 2 * step <= 12 << 20 {
            // The later record completes and is synced first, then the earlier one.
            staging.write(at + step, &[&record]);
            staging.release(&staging.take_ranges(), false);
            staging.write(at, &[&record]);
            staging.release(&staging.take_ranges(), false);
            at += 2 * step;
        }
        // The seal's release of what is left.
        staging.release(&[], true);
        let resident = resident_pages(&staging);
        assert!(
            resident <= 2,
            "{resident} pages of 12 MiB written out stay resident"
        );
    }

    /// A cut writes over ranges waiting to be given back: none of the pages it fills is given
    /// back (a later read of staging, or its write-out, would find zeros).
    #[test]
    fn a_write_over_ranges_waiting_to_be_given_back_keeps_its_pages() {
        let staging = Staging::new(16 << 20, true).expect("staging");
        let old = [1u8; 64 << 10];
        staging.write(0, &[&old]);
        staging.write(old.len() as u64, &[&old]);
        staging.release(&staging.take_ranges(), false);
        // The cut rewrites from the middle of the first range on.
        let new = [2u8; 96 << 10];
        staging.write(32 << 10, &[&new]);
        staging.release(&[], true);
        assert_eq!(
            staging.slice(32 << 10, (32 << 10) + new.len() as u64),
            &new[..],
            "the rewritten bytes stay in staging until written out"
        );
    }
}
