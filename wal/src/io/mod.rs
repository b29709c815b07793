//! The I/O backends. Every byte the log reads or writes goes through the two traits here, so that
//! the same log code runs on the real file system (memory-mapped or `pwrite` writes) and on a
//! simulated disk that knows which bytes are durable.
//!
//! This module and its children are the only places in the crate that hold `unsafe` code.

use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub(crate) mod fs;
pub mod recorder;
pub mod sim;
pub mod uring;
pub(crate) mod writeback;

/// How segment files are allocated before they are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocation {
    /// Write zeros over the whole file once, in the background: commits later pay no metadata
    /// update for converting unwritten extents (the default; see `docs/design.md`).
    #[default]
    ZeroFill,
    /// `fallocate`: cheaper to prepare, but each first write into a block costs an extent
    /// conversion at the next `fdatasync`.
    Fallocate,
}

/// A file of fixed length, written at offsets and read through a zero-copy view.
///
/// The log's access discipline, which implementations rely on: concurrent `write_at` calls
/// touch disjoint ranges, and `bytes` is only asked for ranges that no write is touching (records
/// already completely written, which are not rewritten while anyone looks at them).
pub(crate) trait File: Send + Sync {
    /// The file's length in bytes (fixed at creation).
    fn len(&self) -> u64;
    /// Writes `parts` back to back starting at `offset`.
    fn write_at(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()>;
    /// Makes every completed write durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// The system calls `sync` makes, as an error names them: a failure of a backend that
    /// stages its writes comes from their write-back, not from an `fdatasync`.
    fn sync_calls(&self) -> &'static str {
        "fdatasync"
    }
    /// Backends that hold writes in memory (`Staged`) write them to the file, without making
    /// them durable, once at least `staged_bytes_min` are held; this bounds their memory.
    fn write_back(&self, _staged_bytes_min: u64) -> io::Result<()> {
        Ok(())
    }
    /// Starts, or awaits, the write-back of `[offset, offset + len)` from the page cache to the
    /// disk (`sync_file_range`), for files written front to back in bulk with `pwrite` (from
    /// `Dir::create_plain` or `Dir::open_plain`; see `writeback.rs`). Makes nothing durable. An
    /// error must be treated as a failed write: the kernel does not report it again at the next
    /// `sync`. Other files (segments, whose bytes may be staged or mapped) do nothing.
    fn write_back_range(
        &self,
        _offset: u64,
        _len: u64,
        _how: writeback::WriteBack,
    ) -> io::Result<()> {
        Ok(())
    }
    /// Bytes held in memory and not yet written to the file (0 for backends that hold none).
    fn staged_bytes(&self) -> u64 {
        0
    }
    /// Gives back the memory this file holds for reads: the pages of its mapping that this
    /// process has mapped (they stay in the page cache), and with `IoUring` the staging memory
    /// through which `bytes` serves the blocks it wrote (kept because `O_DIRECT` writes and
    /// page-cache reads are not reliably coherent; later reads go to the file), with `Staged`
    /// the staging pages of what was already written to the file. False if it could not yet
    /// (`IoUring` or `Staged` bytes still staged, not yet written to the file): call again.
    ///
    /// The caller guarantees that no write to the file is in progress or will start, and that
    /// no slice returned by `bytes` is alive. (Recovery calls it on files it writes later: a
    /// file opened, not created, holds no `IoUring` staging to lose, and its later writes load
    /// their blocks from the file first.)
    fn release_memory(&self) -> bool {
        true
    }
    /// The file becomes the log's active segment: appends write into it from now on (a new
    /// segment, the recovered last one, or one a truncation cut back into). `Mmap` stops
    /// read-ahead on its mapping until `release_memory` (see `MAPPED_FILL_CHUNK` in `fs.rs`).
    fn prepare_for_appends(&self) {}
    /// Maps the file's first `len` bytes into this process now, where that is cheaper than
    /// faulting them in page by page (recovery's first pass, which reads them all next).
    fn populate(&self, _len: u64) {}
    /// Drops the file's clean pages from the page cache (before a recycled segment is zeroed,
    /// so that the zero-fill caches it afresh: see `Dir::zero_fill_chunk`).
    fn forget_cached_pages(&self) {}
    /// The bytes `[offset, offset + len)`, without copying.
    fn bytes(&self, offset: u64, len: usize) -> &[u8];
    /// Whether `bytes` shows the memory appenders copy records into (`Mmap`'s writable
    /// mapping, `IoUring`'s staging of blocks already written): a slice reaching past the
    /// records known to be copied may then overlap a copy in progress. Where it does not
    /// (`Pwrite` and `Staged` write the file with system calls, and `bytes` reads its read-only
    /// mapping), such a slice shows whatever the file holds, changed only by the kernel.
    fn copies_show_in_bytes(&self) -> bool {
        false
    }
}

/// Held while a log owns its directory; dropping it releases the directory.
pub(crate) trait DirLock: Send + Sync {}

/// A directory of files.
pub(crate) trait Dir: Send + Sync {
    /// The directory's path (for error messages; the simulated disk's is virtual).
    fn path(&self) -> &Path;
    /// The names of the files in it.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates a new file of `len` bytes, fully allocated, its length durable. Its name is only
    /// durable after `sync`.
    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn File>>;
    /// `create`, stopped once `stop` is set: then it may fail with `ErrorKind::Interrupted`,
    /// the file removed, without finishing a long zero-fill (so that closing the log need not
    /// wait for the preparation of a segment ahead of need; a segment needed now is created
    /// with a flag nobody sets). Backends whose `create` is quick (the simulated disk) ignore
    /// `stop`.
    fn create_unless_stopped(
        &self,
        name: &str,
        len: u64,
        _stop: &AtomicBool,
    ) -> io::Result<Arc<dyn File>> {
        self.create(name, len)
    }
    /// Creates a new file of `len` bytes for large sequential data written once (a snapshot):
    /// written with `pwrite` whatever the backend, never staged in memory, not preallocated.
    fn create_plain(&self, name: &str, len: u64) -> io::Result<Arc<dyn File>> {
        self.create(name, len)
    }
    /// The backend writing this directory's files: "mmap", "pwrite", "staged", "io_uring",
    /// or "simulated".
    fn backend_name(&self) -> &'static str;
    /// The size of the writes that zero a whole file (`create`, and recycling a segment):
    /// 16 KiB for `Mmap`, which must keep the file's page-cache folios small (`fs.rs`).
    fn zero_fill_chunk(&self) -> usize {
        1 << 20
    }
    /// Opens an existing file.
    fn open(&self, name: &str) -> io::Result<Arc<dyn File>>;
    /// The length of an existing file, without opening or mapping it.
    fn file_len(&self, name: &str) -> io::Result<u64>;
    /// Opens a file made by `create_plain`, for reading through a mapping whatever the backend.
    fn open_plain(&self, name: &str) -> io::Result<Arc<dyn File>> {
        self.open(name)
    }
    /// Renames a file (durable after `sync`).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file (durable after `sync`).
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable (`fsync` of the directory).
    fn sync(&self) -> io::Result<()>;
    /// Takes the exclusive lock on the directory; `WouldBlock` if another holder has it.
    fn lock(&self) -> io::Result<Box<dyn DirLock>>;
    /// Bytes that new data may still take on the directory's file system, where the system
    /// says (`fstatvfs`: the blocks left to unprivileged users); `None` where it cannot tell
    /// (a file system that reports no sizes). An error is the system's failure to say, which
    /// the caller may treat as `None`.
    /// A snapshot received from a leader is checked against it before its first byte is
    /// written: the file is sparse, and would otherwise fill the disk part-way through.
    fn available_bytes(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
    /// The process holding the lock, where the system says: named in `Locked`.
    fn lock_holder(&self) -> Option<u32> {
        None
    }
}
