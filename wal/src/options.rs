//! Options of an open log. Every limit carries its unit in its name; everything is validated once,
//! by [`Options::validate`] (which `Wal::open` calls).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::io::recorder::SyncRecorder;
use crate::io::sim::SimDisk;
use crate::io::uring::UringSync;
use crate::io::Preallocation;
use crate::segment;

/// Where and how the log's bytes are stored.
#[derive(Debug, Clone, Default)]
pub enum Backend {
    /// Segment files mapped into memory and written through the mapping; `fdatasync` for
    /// durability. The default, except on a copy-on-write file system (btrfs, ZFS,
    /// bcachefs), where it is refused ([`Options::backend`]).
    #[default]
    Mmap,
    /// Segment files written with `pwritev` (read through a read-only mapping); `fdatasync`.
    Pwrite,
    /// Records copied into anonymous memory; a commit writes them to the segment file with one
    /// `pwritev2(RWF_DSYNC)`; reads through a read-only mapping of the file.
    Staged,
    /// Staged like `Staged`, written as whole blocks with `O_DIRECT` through io_uring; durable
    /// through the ring (see [`Options::io_uring_sync`]). Opening fails with
    /// [`Error::Unsupported`] where io_uring or `O_DIRECT` is not available, unless
    /// [`Options::io_uring_fallback`] asked for `Staged` instead.
    IoUring,
    /// A simulated disk, for tests (see [`SimDisk`]).
    Simulated(SimDisk),
}

/// What recovery does with a record that fails verification (see `docs/design.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any damage, even an incomplete last write, is an error: the log must end cleanly.
    AbsoluteConsistency,
    /// An invalid record past the durable watermark is a torn write and the log is cut there;
    /// an invalid record at or below it is an error. The default.
    #[default]
    TolerateTornTail,
    /// Keep the longest valid prefix: stop at the first invalid record, wherever it is, and cut
    /// there. Acknowledged records after a corruption are lost (the report says which).
    PointInTime,
    /// Keep every valid record: a damaged stretch inside a segment is skipped up to the next
    /// segment, and a damaged segment file as a whole (set aside as `<name>.damaged`, unread),
    /// leaving a hole in the LSNs (the report lists each hole).
    ///
    /// The hole stays: no file records it, so every later open of the log must use
    /// `SkipCorrupted` too. `TolerateTornTail` and `AbsoluteConsistency` refuse the log with
    /// [`Error::Corrupted`](crate::Error::Corrupted) at the hole's first LSN, and
    /// `PointInTime` cuts there, dropping every record after it, those appended since
    /// included.
    SkipCorrupted,
}

/// Options for [`Wal::open`](crate::Wal::open).
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) create_if_missing: bool,
    pub(crate) segment_bytes: u64,
    pub(crate) backend: Backend,
    /// `backend` was chosen with [`Options::backend`], not left at the default: a chosen
    /// `Mmap` is refused on a copy-on-write file system, the default gives way to `Staged`.
    pub(crate) backend_chosen: bool,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) commit_delay: Duration,
    pub(crate) background_threads: bool,
    pub(crate) control_interval: Duration,
    pub(crate) preallocation: Preallocation,
    pub(crate) prepared_segments_max: usize,
    pub(crate) recycled_segments_max: usize,
    pub(crate) sync_recorder: Option<SyncRecorder>,
    pub(crate) io_uring_sync: UringSync,
    pub(crate) io_uring_fallback: bool,
}

/// Default segment size: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Longest commit delay accepted.
pub const COMMIT_DELAY_MAX: Duration = Duration::from_secs(1);
/// Longest interval between control-file updates accepted.
pub const CONTROL_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// Most segments kept prepared ahead of need.
pub const PREPARED_SEGMENTS_LIMIT: usize = 8;

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            backend: Backend::Mmap,
            backend_chosen: false,
            recovery_mode: RecoveryMode::TolerateTornTail,
            commit_delay: Duration::ZERO,
            background_threads: true,
            control_interval: Duration::from_millis(100),
            preallocation: Preallocation::ZeroFill,
            prepared_segments_max: 1,
            recycled_segments_max: 2,
            sync_recorder: None,
            io_uring_sync: UringSync::DsyncWrites,
            io_uring_fallback: false,
        }
    }
}

impl Options {
    /// The defaults: create if missing, 64 MiB segments, `mmap`, tolerate a torn tail, no commit
    /// delay, background threads on.
    pub fn new() -> Options {
        Options::default()
    }

    /// The recovery mode these options ask for (the replication layer refuses the modes that
    /// drop acknowledged records).
    pub fn chosen_recovery_mode(&self) -> RecoveryMode {
        self.recovery_mode
    }

    /// Create the log if the directory holds none (default true).
    pub fn create_if_missing(mut self, create: bool) -> Options {
        self.create_if_missing = create;
        self
    }

    /// Size of new segment files, from 1 MiB to 2 GiB, a multiple of 4 KiB (default 64 MiB).
    /// Existing segments keep their size: a log reopened with another value works.
    pub fn segment_bytes(mut self, bytes: u64) -> Options {
        self.segment_bytes = bytes;
        self
    }

    /// The I/O backend (default [`Backend::Mmap`], except on a copy-on-write file system,
    /// btrfs, ZFS or bcachefs, where the default is [`Backend::Staged`]: overwriting a block
    /// there takes a new one, and once the disk was full a store through `Mmap`'s mapping
    /// would end the process with `SIGBUS`). `Mmap` chosen here is refused on those file
    /// systems with [`Error::Unsupported`](crate::Error::Unsupported);
    /// [`Wal::backend_name`](crate::Wal::backend_name) says which backend an open log uses.
    pub fn backend(mut self, backend: Backend) -> Options {
        self.backend = backend;
        self.backend_chosen = true;
        self
    }

    /// What recovery does with damaged records (default [`RecoveryMode::TolerateTornTail`]).
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Options {
        self.recovery_mode = mode;
        self
    }

    /// How long the committer that leads a sync waits for more records to join it, like
    /// PostgreSQL's `commit_delay` (default zero, at most one second).
    pub fn commit_delay(mut self, delay: Duration) -> Options {
        self.commit_delay = delay;
        self
    }

    /// Run the background thread that prepares segments and updates the control file (default
    /// true). Without it no thread of the log's outlives [`Wal::open`](crate::Wal::open), and
    /// [`Wal::maintain`](crate::Wal::maintain) does that work when called: a simulation can then
    /// replay a seed exactly. (Recovery at open checks segments on up to 3 helper threads
    /// beside the caller's, all joined before `open` returns.) Call `maintain` then also to keep
    /// memory bounded: it compacts, and gives back the staging memory the `Staged` and
    /// `IoUring` backends keep for segments that were sealed (up to a whole segment each with
    /// `IoUring`, 4 MiB with `Staged`) and the mappings of sealed segments no reader uses.
    pub fn background_threads(mut self, enabled: bool) -> Options {
        self.background_threads = enabled;
        self
    }

    /// How often the background thread writes the durable watermark to the control file
    /// (default 100 ms, from 1 ms to 60 s).
    pub fn control_interval(mut self, interval: Duration) -> Options {
        self.control_interval = interval;
        self
    }

    /// How segment files are allocated (default [`Preallocation::ZeroFill`]).
    pub fn preallocation(mut self, preallocation: Preallocation) -> Options {
        self.preallocation = preallocation;
        self
    }

    /// How many segments to keep prepared ahead of need (default 1, from 1 to 8).
    pub fn prepared_segments_max(mut self, count: usize) -> Options {
        self.prepared_segments_max = count;
        self
    }

    /// How many segments compaction keeps, zeroed, for reuse instead of deleting them (default
    /// 2, at most 8): reusing a file spares its allocation.
    pub fn recycled_segments_max(mut self, count: usize) -> Options {
        self.recycled_segments_max = count;
        self
    }

    /// Records the file images at each sync (a test instrument for the real backends).
    pub fn sync_recorder(mut self, recorder: SyncRecorder) -> Options {
        self.sync_recorder = Some(recorder);
        self
    }

    /// How the io_uring backend makes writes durable (default: `RWF_DSYNC` writes).
    pub fn io_uring_sync(mut self, sync: UringSync) -> Options {
        self.io_uring_sync = sync;
        self
    }

    /// With the io_uring backend: open with `Staged` instead of failing where io_uring or
    /// `O_DIRECT` is unavailable (default false).
    pub fn io_uring_fallback(mut self, fallback: bool) -> Options {
        self.io_uring_fallback = fallback;
        self
    }

    /// Checks every option, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bytes = self.segment_bytes;
        if !(segment::SEGMENT_BYTES_MIN..=segment::SEGMENT_BYTES_MAX).contains(&bytes) {
            return Err(Error::invalid(
                "segment_bytes",
                format!(
                    "{bytes} is outside {}..={}",
                    segment::SEGMENT_BYTES_MIN,
                    segment::SEGMENT_BYTES_MAX
                ),
            ));
        }
        if bytes % 4096 != 0 {
            return Err(Error::invalid(
                "segment_bytes",
                format!("{bytes} is not a multiple of 4096"),
            ));
        }
        if self.commit_delay > COMMIT_DELAY_MAX {
            return Err(Error::invalid(
                "commit_delay",
                format!(
                    "{:?} is longer than {COMMIT_DELAY_MAX:?}",
                    self.commit_delay
                ),
            ));
        }
        let interval_range = Duration::from_millis(1)..=CONTROL_INTERVAL_MAX;
        if !interval_range.contains(&self.control_interval) {
            return Err(Error::invalid(
                "control_interval",
                format!("{:?} is outside {interval_range:?}", self.control_interval),
            ));
        }
        if !(1..=PREPARED_SEGMENTS_LIMIT).contains(&self.prepared_segments_max) {
            return Err(Error::invalid(
                "prepared_segments_max",
                format!(
                    "{} is outside 1..={PREPARED_SEGMENTS_LIMIT}",
                    self.prepared_segments_max
                ),
            ));
        }
        if self.recycled_segments_max > PREPARED_SEGMENTS_LIMIT {
            return Err(Error::invalid(
                "recycled_segments_max",
                format!(
                    "{} is above {PREPARED_SEGMENTS_LIMIT}",
                    self.recycled_segments_max
                ),
            ));
        }
        if self.sync_recorder.is_some() && matches!(self.backend, Backend::Simulated(_)) {
            return Err(Error::invalid(
                "sync_recorder",
                "only the real backends can be recorded",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_option() {
        assert!(Options::new().validate().is_ok());
        let too_small = Options::new().segment_bytes(4096).validate();
        assert!(matches!(
            too_small,
            Err(Error::InvalidArgument {
                name: "segment_bytes",
                ..
            })
        ));
        let odd = Options::new().segment_bytes((1 << 20) + 1).validate();
        assert!(matches!(
            odd,
            Err(Error::InvalidArgument {
                name: "segment_bytes",
                ..
            })
        ));
        let slow = Options::new()
            .commit_delay(Duration::from_secs(2))
            .validate();
        assert!(matches!(
            slow,
            Err(Error::InvalidArgument {
                name: "commit_delay",
                ..
            })
        ));
        let never = Options::new().control_interval(Duration::ZERO).validate();
        assert!(matches!(
            never,
            Err(Error::InvalidArgument {
                name: "control_interval",
                ..
            })
        ));
        let many = Options::new().prepared_segments_max(9).validate();
        assert!(matches!(
            many,
            Err(Error::InvalidArgument {
                name: "prepared_segments_max",
                ..
            })
        ));
    }
}
