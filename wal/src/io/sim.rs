//! A simulated disk for tests: it remembers which bytes are durable, and on a simulated crash
//! keeps an arbitrary subset of the 512-byte sectors written since the last sync. File creation,
//! rename and removal are durable only after a directory sync. It can flip bits and fail the next
//! sync, write or file creation with an errno of the test's choosing.
//!
//! Open a log on it with [`Backend::Simulated`](crate::Backend::Simulated); the path given to
//! `open` is then only a label.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::writeback::WriteBack;
use super::{Dir, DirLock, File};
use crate::rng::Rng;

/// Bytes of a simulated sector: the unit a crash keeps or loses.
pub const SECTOR_BYTES: usize = 512;

/// A simulated disk holding one log directory. Cloning gives another handle to the same disk.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<DiskInner>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.inner.state.lock().names.keys().cloned().collect();
        f.debug_struct("SimDisk").field("files", &names).finish()
    }
}

struct DiskInner {
    state: Mutex<DiskState>,
    faults: Arc<Faults>,
}

#[derive(Default)]
struct Faults {
    /// (syncs to let through first, errno).
    fail_sync: Mutex<Option<(u64, i32)>>,
    /// The next file sync fails with this errno and forgets what it could not write (below).
    fail_sync_forgetting: Mutex<Option<i32>>,
    /// The next sync of the directory fails with this errno.
    fail_dir_sync: Mutex<Option<i32>>,
    fail_write: Mutex<Option<i32>>,
    fail_create: Mutex<Option<i32>>,
    /// The next open of this file name fails with this errno.
    fail_open: Mutex<Option<(String, i32)>>,
    /// Every removal of this file name fails with this errno, until cleared.
    fail_remove: Mutex<Option<(String, i32)>>,
    /// Every rename from this file name fails with this errno, until cleared.
    fail_rename: Mutex<Option<(String, i32)>>,
    /// The next write panics (a bug's consequences, for tests).
    panic_write: std::sync::atomic::AtomicBool,
    /// The next sync of a file panics (likewise).
    panic_sync: std::sync::atomic::AtomicBool,
    /// Writes and file syncs to let through before one panics (`SimDisk::panic_after`).
    panic_after: Mutex<Option<u64>>,
    space_limit_bytes: Mutex<Option<u64>>,
    syncs: AtomicU64,
    /// (write-back calls to let through first, errno): then one (`File::write_back_range`)
    /// fails.
    fail_write_back: Mutex<Option<(u64, i32)>>,
    /// Write-back calls that succeeded: (offset, length, awaited rather than started).
    write_backs: Mutex<Vec<(u64, u64, bool)>>,
    /// The next write of a file stops here until released.
    hold_write: Mutex<Option<SimHold>>,
    /// The next sync of a file stops here until released.
    hold_sync: Mutex<Option<SimHold>>,
    /// The first write to the next file created with a name that starts with this stops
    /// until released.
    hold_first_write_of: Mutex<Option<(String, SimHold)>>,
    /// (name prefix, errno, forgetting): the first sync of the next file created with a name
    /// that starts with the prefix fails (`SimDisk::fail_first_sync_of_created`).
    fail_first_sync_of: Mutex<Option<(String, i32, bool)>>,
    /// Dropping a file's clean cached pages keeps them (`SimDisk::keep_dropped_cached_pages`).
    dropped_cached_pages_kept: std::sync::atomic::AtomicBool,
}

/// A write or sync of the simulated disk stopped until [`release`](SimHold::release)d (see
/// [`SimDisk::hold_next_write`]): a test can keep an operation in progress while something
/// else happens.
#[derive(Debug, Clone, Default)]
pub struct SimHold(Arc<HoldState>);

#[derive(Debug, Default)]
struct HoldState {
    /// (the operation reached the hold, the hold was released)
    state: Mutex<(bool, bool)>,
    cond: Condvar,
}

impl SimHold {
    /// Waits at most `timeout` for the held operation to reach the hold; whether it did.
    pub fn wait_reached(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.0.state.lock();
        while !state.0 {
            if self.0.cond.wait_until(&mut state, deadline).timed_out() {
                return state.0;
            }
        }
        true
    }

    /// Lets the held operation go on (now, or at once when it comes).
    pub fn release(&self) {
        self.0.state.lock().1 = true;
        self.0.cond.notify_all();
    }

    /// Whether [`release`](SimHold::release) was called.
    pub fn released(&self) -> bool {
        self.0.state.lock().1
    }

    /// Called by the held operation: marks the hold reached and waits for the release.
    fn stop_here(&self) {
        let mut state = self.0.state.lock();
        state.0 = true;
        self.0.cond.notify_all();
        while !state.1 {
            self.0.cond.wait(&mut state);
        }
    }
}

impl Faults {
    fn take(slot: &Mutex<Option<i32>>) -> io::Result<()> {
        match slot.lock().take() {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    /// Counts a write or a file sync against the panic armed after some (`panic_after`):
    /// whether this one must panic.
    fn panics_now(&self) -> bool {
        let mut armed = self.panic_after.lock();
        match *armed {
            Some(0) => {
                *armed = None;
                true
            }
            Some(ref mut pass) => {
                *pass -= 1;
                false
            }
            None => false,
        }
    }

    /// Counts a sync (of a file or the directory) against the armed failure.
    fn sync_attempt(&self) -> io::Result<()> {
        Faults::count_down(&self.fail_sync)
    }

    /// Counts an operation against a failure armed as (operations to let through, errno).
    fn count_down(slot: &Mutex<Option<(u64, i32)>>) -> io::Result<()> {
        let mut armed = slot.lock();
        match *armed {
            Some((0, errno)) => {
                *armed = None;
                Err(io::Error::from_raw_os_error(errno))
            }
            Some((ref mut pass, _)) => {
                *pass -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[derive(Clone)]
enum DirOp {
    Create(String, Arc<SimFile>),
    Rename(String, String),
    Remove(String),
}

#[derive(Default)]
struct DiskState {
    names: BTreeMap<String, Arc<SimFile>>,
    durable_names: BTreeMap<String, Arc<SimFile>>,
    /// Directory operations since the last directory sync, in order.
    pending: Vec<DirOp>,
    locked: bool,
}

impl DirOp {
    fn apply(&self, names: &mut BTreeMap<String, Arc<SimFile>>) {
        match self {
            DirOp::Create(name, file) => {
                names.insert(name.clone(), file.clone());
            }
            DirOp::Rename(from, to) => {
                if let Some(file) = names.remove(from) {
                    names.insert(to.clone(), file);
                }
            }
            DirOp::Remove(name) => {
                names.remove(name);
            }
        }
    }
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

impl SimDisk {
    /// How the message of every panic armed on a simulated disk begins (`panic_on_next_write`,
    /// `panic_on_next_sync`, `panic_after`, ...); the log quotes it in the error of a sync
    /// that panicked.
    pub const ARMED_PANIC: &'static str = "a simulated bug in the";

    /// Whether a caught panic's payload is one that a simulated disk raised on purpose.
    pub fn is_armed_panic(payload: &(dyn std::any::Any + Send)) -> bool {
        crate::wal::panic_message(payload).starts_with(SimDisk::ARMED_PANIC)
    }

    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk {
            inner: Arc::new(DiskInner {
                state: Mutex::new(DiskState::default()),
                faults: Arc::new(Faults::default()),
            }),
        }
    }

    /// What survives a crash now: a new disk holding the durable state, a random prefix of the
    /// directory operations not yet synced, and for every file a random subset of the sectors
    /// written since its last sync. The old disk (and any log open on it) is left as it was.
    pub fn crash(&self, seed: u64) -> SimDisk {
        let mut rng = Rng::new(seed);
        let faults = Arc::new(Faults::default());
        let state = self.inner.state.lock();
        let mut names = state.durable_names.clone();
        let kept_ops = rng.below(state.pending.len() as u64 + 1) as usize;
        for op in &state.pending[..kept_ops] {
            op.apply(&mut names);
        }
        let mut images: Vec<(*const SimFile, Arc<SimFile>)> = Vec::new();
        let mut new_names = BTreeMap::new();
        for (name, file) in names {
            let key = Arc::as_ptr(&file);
            let image = match images.iter().find(|(k, _)| *k == key) {
                Some((_, image)) => image.clone(),
                None => {
                    let image = Arc::new(file.crash_image(&mut rng, faults.clone()));
                    images.push((key, image.clone()));
                    image
                }
            };
            new_names.insert(name, image);
        }
        SimDisk {
            inner: Arc::new(DiskInner {
                state: Mutex::new(DiskState {
                    durable_names: new_names.clone(),
                    names: new_names,
                    pending: Vec::new(),
                    locked: false,
                }),
                faults,
            }),
        }
    }

    /// The names of the files as the running system sees them.
    pub fn file_names(&self) -> Vec<String> {
        self.inner.state.lock().names.keys().cloned().collect()
    }

    /// A copy of a file's current bytes.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let file = self.inner.state.lock().names.get(name).cloned()?;
        Some(file.snapshot())
    }

    /// Flips one bit of a file, in its durable image as well as in its current bytes.
    pub fn flip_bit(&self, name: &str, byte_offset: u64, bit: u8) {
        self.existing(name).flip_bit(byte_offset as usize, bit);
    }

    /// Makes `len` bytes of file `name` from `byte_offset` read as zeros, durably: a range the
    /// device lost. Panics if the file does not exist or the range runs past its end.
    pub fn zero_range(&self, name: &str, byte_offset: u64, len: u64) {
        self.existing(name)
            .zero_range(byte_offset as usize, len as usize);
    }

    /// Writes `bytes` over file `name` from `byte_offset`, durably: damage that reads as
    /// something else (a misdirected write, a program outside the log). Panics if the file does
    /// not exist or the range runs past its end.
    pub fn overwrite(&self, name: &str, byte_offset: u64, bytes: &[u8]) {
        self.existing(name).overwrite(byte_offset as usize, bytes);
    }

    /// Cuts file `name` to `len` bytes, durably: a file system that lost the end of a file, or a
    /// program outside the log that truncated it. Panics if there is no such file or it is not
    /// longer than `len`.
    pub fn truncate_file(&self, name: &str, len: u64) {
        let mut state = self.inner.state.lock();
        let old = state.names.get(name).cloned();
        let old = old.unwrap_or_else(|| panic!("no file {name} on the simulated disk"));
        let mut bytes = old.snapshot();
        assert!(
            (len as usize) < bytes.len(),
            "{name} is not longer than {len}"
        );
        bytes.truncate(len as usize);
        let new = Arc::new(SimFile::new(bytes, old.faults.clone()));
        let state = &mut *state;
        for names in [&mut state.names, &mut state.durable_names] {
            for file in names.values_mut() {
                if Arc::ptr_eq(file, &old) {
                    *file = new.clone();
                }
            }
        }
    }

    /// The file `name` as the running system sees it; panics if there is none (a test's
    /// mistake).
    fn existing(&self, name: &str) -> Arc<SimFile> {
        let file = self.inner.state.lock().names.get(name).cloned();
        file.unwrap_or_else(|| panic!("no file {name} on the simulated disk"))
    }

    /// Makes the next sync (of a file or of the directory) fail with `errno` (e.g. `libc::EIO`).
    pub fn fail_next_sync(&self, errno: i32) {
        self.fail_sync_after(0, errno);
    }

    /// Lets `passing` syncs (of files or of the directory) succeed, then fails the next one with
    /// `errno`: a test can stop a multi-step protocol after any of its steps.
    pub fn fail_sync_after(&self, passing: u64, errno: i32) {
        *self.inner.faults.fail_sync.lock() = Some((passing, errno));
    }

    /// Makes the next sync of a file fail with `errno` the way Linux's can: the sectors it could
    /// not write are no longer dirty and their bytes stay readable, but none of them is durable
    /// (a crash loses them, and so does dropping the file's clean cached pages, which reads
    /// them from the disk again). A sync after it finds nothing to write, and succeeds.
    pub fn fail_next_sync_forgetting_writes(&self, errno: i32) {
        *self.inner.faults.fail_sync_forgetting.lock() = Some(errno);
    }

    /// Makes the next sync of the directory (not of a file) fail with `errno`: its creations,
    /// renames and removals since the last directory sync stay undurable, as after a process
    /// that died before that sync.
    pub fn fail_next_dir_sync(&self, errno: i32) {
        *self.inner.faults.fail_dir_sync.lock() = Some(errno);
    }

    /// Makes the next write fail with `errno` (e.g. `libc::EIO`, `libc::ENOSPC`).
    pub fn fail_next_write(&self, errno: i32) {
        *self.inner.faults.fail_write.lock() = Some(errno);
    }

    /// Lets `passing` calls that start or await the early write-back of a large file's range
    /// succeed, then fails the next one with `errno`, as `sync_file_range` reports a write error
    /// it met.
    pub fn fail_write_back_after(&self, passing: u64, errno: i32) {
        *self.inner.faults.fail_write_back.lock() = Some((passing, errno));
    }

    /// The write-back calls that succeeded on this disk, in order: (offset, length, whether it
    /// awaited a range rather than starting one). They make nothing durable here either; tests
    /// look at them to see that large files are paced.
    pub fn write_back_calls(&self) -> Vec<(u64, u64, bool)> {
        self.inner.faults.write_backs.lock().clone()
    }

    /// Makes the next file creation fail with `errno`.
    pub fn fail_next_create(&self, errno: i32) {
        *self.inner.faults.fail_create.lock() = Some(errno);
    }

    /// Makes the next write of a file stop before it changes anything, until the returned hold
    /// is released.
    pub fn hold_next_write(&self) -> SimHold {
        let hold = SimHold::default();
        *self.inner.faults.hold_write.lock() = Some(hold.clone());
        hold
    }

    /// Makes the first write to the next file created with a name that starts with `prefix`
    /// (e.g. `"snapshot-"`) stop before it changes anything, until the returned hold is
    /// released: a test can make one file slow to write, on whichever thread writes it, while
    /// the log's other files go on.
    pub fn hold_first_write_of(&self, prefix: &str) -> SimHold {
        let hold = SimHold::default();
        *self.inner.faults.hold_first_write_of.lock() = Some((prefix.to_string(), hold.clone()));
        hold
    }

    /// Makes the next sync of a file (not of the directory) stop before it makes anything
    /// durable, until the returned hold is released.
    pub fn hold_next_sync(&self) -> SimHold {
        let hold = SimHold::default();
        *self.inner.faults.hold_sync.lock() = Some(hold.clone());
        hold
    }

    /// Makes the next write panic, as a bug in the write path would: tests check that the
    /// log then fails its callers instead of leaving them waiting.
    pub fn panic_on_next_write(&self) {
        self.inner.faults.panic_write.store(true, Ordering::Relaxed);
    }

    /// Lets `passing` writes and file syncs through, then makes the next one panic (as
    /// `panic_on_next_write` and `panic_on_next_sync` do): a simulation stops a call at any of
    /// its steps this way, and crashes the machine there.
    pub fn panic_after(&self, passing: u64) {
        *self.inner.faults.panic_after.lock() = Some(passing);
    }

    /// How many more writes and file syncs the panic armed by `panic_after` lets through
    /// (`None`: none is armed, or it fired): read before a call, it tells a simulation how deep
    /// inside that call the panic came, if it did.
    pub fn panic_after_left(&self) -> Option<u64> {
        *self.inner.faults.panic_after.lock()
    }

    /// Makes the next sync of a file panic (after a hold, if one is armed), as a bug in the
    /// sync path would: tests check that the log then fails its committers instead of leaving
    /// them waiting for a sync that never ends.
    pub fn panic_on_next_sync(&self) {
        self.inner.faults.panic_sync.store(true, Ordering::Relaxed);
    }

    /// Makes the next sync of the file `name` panic, whichever syncs of other files come first
    /// (as `panic_on_next_sync`). Panics if there is no such file.
    pub fn panic_on_next_sync_of(&self, name: &str) {
        self.existing(name)
            .panic_own_sync
            .store(true, Ordering::Relaxed);
    }

    /// Makes the next sync of the file `name` fail with `errno`, whichever syncs of other files
    /// come first. With `forgetting`, as `fail_next_sync_forgetting_writes` does (its writes
    /// clean and not durable); without, as a process that died before the sync (its writes
    /// stay dirty, in the cache, and a later sync makes them durable). Panics if there is no
    /// such file.
    pub fn fail_next_sync_of(&self, name: &str, errno: i32, forgetting: bool) {
        *self.existing(name).fail_own_sync.lock() = Some((errno, forgetting));
    }

    /// Like [`fail_next_sync_of`](SimDisk::fail_next_sync_of), for the next file created with a
    /// name that starts with `prefix` (its first sync).
    pub fn fail_first_sync_of_created(&self, prefix: &str, errno: i32, forgetting: bool) {
        *self.inner.faults.fail_first_sync_of.lock() =
            Some((prefix.to_string(), errno, forgetting));
    }

    /// Makes the next open of the file `name` fail with `errno` (e.g. `libc::EMFILE`).
    pub fn fail_next_open_of(&self, name: &str, errno: i32) {
        *self.inner.faults.fail_open.lock() = Some((name.to_string(), errno));
    }

    /// Makes every removal of the file `name` fail with `errno` until the faults are cleared.
    pub fn fail_removes_of(&self, name: &str, errno: i32) {
        *self.inner.faults.fail_remove.lock() = Some((name.to_string(), errno));
    }

    /// Makes every rename of the file `name` (to any name) fail with `errno` until the faults
    /// are cleared.
    pub fn fail_renames_of(&self, name: &str, errno: i32) {
        *self.inner.faults.fail_rename.lock() = Some((name.to_string(), errno));
    }

    /// A broken page cache, for the tests of the checks that must catch what it causes:
    /// dropping a file's clean cached pages (what recovery does to read the bytes the disk holds
    /// past the durable watermark) keeps them, so that the bytes a failed sync forgot come back
    /// from the cache, as they would to a recovery that trusted it. For as long as this disk
    /// lives: `clear_faults` leaves it, and a crash's image does not inherit it.
    pub fn keep_dropped_cached_pages(&self) {
        self.inner
            .faults
            .dropped_cached_pages_kept
            .store(true, Ordering::Relaxed);
    }

    /// Whether a failure of the next sync, directory sync, write or creation is still armed
    /// (not met yet, not cleared).
    pub fn has_armed_failure(&self) -> bool {
        let faults = &self.inner.faults;
        faults.fail_sync.lock().is_some()
            || faults.fail_sync_forgetting.lock().is_some()
            || faults.fail_dir_sync.lock().is_some()
            || faults.fail_write.lock().is_some()
            || faults.fail_create.lock().is_some()
    }

    /// Whether a panic of the next write or of the next sync (`panic_on_next_write`,
    /// `panic_on_next_sync`) is still armed: a simulation that arms one to stop a call in its
    /// middle tells by it which disk the panic it caught came from.
    pub fn has_armed_panic(&self) -> bool {
        let faults = &self.inner.faults;
        faults.panic_write.load(Ordering::Relaxed)
            || faults.panic_sync.load(Ordering::Relaxed)
            || faults.panic_after.lock().is_some()
    }

    /// Disarms every armed failure (sync, directory sync, write, write-back, create, open,
    /// remove, rename) and panic, and lifts the space limit. Holds stay armed: release or meet
    /// them.
    pub fn clear_faults(&self) {
        let faults = &self.inner.faults;
        faults.panic_write.store(false, Ordering::Relaxed);
        faults.panic_sync.store(false, Ordering::Relaxed);
        *faults.panic_after.lock() = None;
        *faults.fail_sync.lock() = None;
        *faults.fail_sync_forgetting.lock() = None;
        *faults.fail_dir_sync.lock() = None;
        *faults.fail_write.lock() = None;
        *faults.fail_create.lock() = None;
        *faults.fail_open.lock() = None;
        *faults.fail_remove.lock() = None;
        *faults.fail_rename.lock() = None;
        *faults.fail_write_back.lock() = None;
        *faults.fail_first_sync_of.lock() = None;
        *faults.space_limit_bytes.lock() = None;
        for file in self.inner.state.lock().names.values() {
            *file.fail_own_sync.lock() = None;
            file.panic_own_sync.store(false, Ordering::Relaxed);
        }
    }

    /// Limits the total size of all files: a creation past it fails with `ENOSPC`.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        *self.inner.faults.space_limit_bytes.lock() = bytes;
    }

    /// How many creations, renames and removals are not durable yet (made since the last
    /// directory sync): a crash now keeps a random prefix of them.
    pub fn unsynced_directory_operations(&self) -> usize {
        self.inner.state.lock().pending.len()
    }

    /// Releases the directory's lock, as the kernel releases a dead process's: with the log
    /// that held it leaked (`std::mem::forget`, a process killed: nothing more is synced or
    /// closed, and what it wrote stays in the files, as in a page cache), the next open on
    /// this disk goes ahead.
    pub fn release_lock(&self) {
        self.inner.state.lock().locked = false;
    }

    /// How many file syncs succeeded on this disk.
    pub fn sync_count(&self) -> u64 {
        self.inner.faults.syncs.load(Ordering::Relaxed)
    }

    pub(crate) fn dir(&self, path: &Path) -> SimDir {
        SimDir {
            disk: self.clone(),
            path: path.to_path_buf(),
        }
    }
}

pub(crate) struct SimDir {
    disk: SimDisk,
    path: PathBuf,
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl Dir for SimDir {
    fn path(&self) -> &Path {
        &self.path
    }

    fn backend_name(&self) -> &'static str {
        "simulated"
    }

    fn available_bytes(&self) -> io::Result<Option<u64>> {
        let Some(limit) = *self.disk.inner.faults.space_limit_bytes.lock() else {
            return Ok(None);
        };
        let used: u64 = self
            .disk
            .inner
            .state
            .lock()
            .names
            .values()
            .map(|f| f.len())
            .sum();
        Ok(Some(limit.saturating_sub(used)))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.disk.file_names())
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn File>> {
        let faults = &self.disk.inner.faults;
        Faults::take(&faults.fail_create)?;
        let mut state = self.disk.inner.state.lock();
        if state.names.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_string(),
            ));
        }
        if let Some(limit) = *faults.space_limit_bytes.lock() {
            let used: u64 = state.names.values().map(|f| f.len()).sum();
            if used + len > limit {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let mut file = SimFile::new(vec![0; len as usize], faults.clone());
        {
            let mut armed = faults.hold_first_write_of.lock();
            if matches!(&*armed, Some((prefix, _)) if name.starts_with(prefix.as_str())) {
                *file.first_write_hold.get_mut() = armed.take().map(|(_, hold)| hold);
            }
            let mut armed = faults.fail_first_sync_of.lock();
            if matches!(&*armed, Some((prefix, ..)) if name.starts_with(prefix.as_str())) {
                *file.fail_own_sync.get_mut() = armed.take().map(|(_, errno, f)| (errno, f));
            }
        }
        let file = Arc::new(file);
        state.names.insert(name.to_string(), file.clone());
        state
            .pending
            .push(DirOp::Create(name.to_string(), file.clone()));
        Ok(file)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        {
            let mut fail = self.disk.inner.faults.fail_open.lock();
            if let Some((_, errno)) = fail.take_if(|(failing, _)| failing == name) {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        let state = self.disk.inner.state.lock();
        let file = state.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(file.clone())
    }

    fn file_len(&self, name: &str) -> io::Result<u64> {
        let state = self.disk.inner.state.lock();
        let file = state.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(file.len())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        if let Some((failing, errno)) = &*self.disk.inner.faults.fail_rename.lock() {
            if failing == from {
                return Err(io::Error::from_raw_os_error(*errno));
            }
        }
        let mut state = self.disk.inner.state.lock();
        let op = DirOp::Rename(from.to_string(), to.to_string());
        if !state.names.contains_key(from) {
            return Err(not_found(from));
        }
        op.apply(&mut state.names);
        state.pending.push(op);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if let Some((failing, errno)) = &*self.disk.inner.faults.fail_remove.lock() {
            if failing == name {
                return Err(io::Error::from_raw_os_error(*errno));
            }
        }
        let mut state = self.disk.inner.state.lock();
        if !state.names.contains_key(name) {
            return Err(not_found(name));
        }
        let op = DirOp::Remove(name.to_string());
        op.apply(&mut state.names);
        state.pending.push(op);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Faults::take(&self.disk.inner.faults.fail_dir_sync)?;
        self.disk.inner.faults.sync_attempt()?;
        let mut state = self.disk.inner.state.lock();
        state.durable_names = state.names.clone();
        state.pending.clear();
        Ok(())
    }

    fn lock(&self) -> io::Result<Box<dyn DirLock>> {
        let mut state = self.disk.inner.state.lock();
        if state.locked {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        state.locked = true;
        Ok(Box::new(SimLock {
            disk: self.disk.clone(),
        }))
    }
}

struct SimLock {
    disk: SimDisk,
}

impl DirLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.inner.state.lock().locked = false;
    }
}

/// A simulated file: its current bytes, and what of them is durable.
pub(crate) struct SimFile {
    /// Current bytes. Atomic bytes so that a sync copying a sector while an appender writes a
    /// neighbouring record in the same sector is not a data race.
    data: Box<[AtomicU8]>,
    durable: Mutex<Durable>,
    faults: Arc<Faults>,
    /// The first write stops here until released (`SimDisk::hold_first_write_of`).
    first_write_hold: Mutex<Option<SimHold>>,
    /// The next sync of this file fails with this errno, forgetting its writes if true
    /// (`SimDisk::fail_next_sync_of`).
    fail_own_sync: Mutex<Option<(i32, bool)>>,
    /// The next sync of this file panics (`SimDisk::panic_on_next_sync_of`).
    panic_own_sync: std::sync::atomic::AtomicBool,
}

struct Durable {
    image: Vec<u8>,
    /// Sectors written since the last sync.
    dirty: Vec<bool>,
}

impl SimFile {
    fn new(bytes: Vec<u8>, faults: Arc<Faults>) -> SimFile {
        let sectors = bytes.len().div_ceil(SECTOR_BYTES);
        SimFile {
            data: bytes.iter().map(|&b| AtomicU8::new(b)).collect(),
            durable: Mutex::new(Durable {
                image: bytes,
                dirty: vec![false; sectors],
            }),
            faults,
            first_write_hold: Mutex::new(None),
            fail_own_sync: Mutex::new(None),
            panic_own_sync: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    fn crash_image(&self, rng: &mut Rng, faults: Arc<Faults>) -> SimFile {
        let durable = self.durable.lock();
        let mut image = durable.image.clone();
        for (sector, _) in durable
            .dirty
            .iter()
            .enumerate()
            .filter(|(_, dirty)| **dirty)
        {
            if rng.below(2) == 0 {
                let range = sector * SECTOR_BYTES..((sector + 1) * SECTOR_BYTES).min(image.len());
                for i in range {
                    image[i] = self.data[i].load(Ordering::Relaxed);
                }
            }
        }
        let sectors = image.len().div_ceil(SECTOR_BYTES);
        SimFile {
            data: image.iter().map(|&b| AtomicU8::new(b)).collect(),
            durable: Mutex::new(Durable {
                image,
                dirty: vec![false; sectors],
            }),
            faults,
            first_write_hold: Mutex::new(None),
            fail_own_sync: Mutex::new(None),
            panic_own_sync: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn flip_bit(&self, offset: usize, bit: u8) {
        let mut durable = self.durable.lock();
        durable.image[offset] ^= 1 << bit;
        self.data[offset].fetch_xor(1 << bit, Ordering::Relaxed);
    }

    fn zero_range(&self, offset: usize, len: usize) {
        self.overwrite(offset, &vec![0; len]);
    }

    fn overwrite(&self, offset: usize, bytes: &[u8]) {
        let mut durable = self.durable.lock();
        durable.image[offset..offset + bytes.len()].copy_from_slice(bytes);
        for (byte, &value) in self.data[offset..offset + bytes.len()].iter().zip(bytes) {
            byte.store(value, Ordering::Relaxed);
        }
    }
}

impl File for SimFile {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn write_at(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        let hold = self.faults.hold_write.lock().take();
        if let Some(hold) = hold {
            hold.stop_here();
        }
        let hold = self.first_write_hold.lock().take();
        if let Some(hold) = hold {
            hold.stop_here();
        }
        Faults::take(&self.faults.fail_write)?;
        if self.faults.panic_write.swap(false, Ordering::Relaxed) || self.faults.panics_now() {
            panic!("{} write path", SimDisk::ARMED_PANIC);
        }
        let start = offset as usize;
        let mut at = start;
        for part in parts {
            assert!(
                at + part.len() <= self.data.len(),
                "write past the end of a simulated file"
            );
            for (i, &byte) in part.iter().enumerate() {
                self.data[at + i].store(byte, Ordering::Relaxed);
            }
            at += part.len();
        }
        if at > start {
            let mut durable = self.durable.lock();
            for sector in start / SECTOR_BYTES..=(at - 1) / SECTOR_BYTES {
                durable.dirty[sector] = true;
            }
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let hold = self.faults.hold_sync.lock().take();
        if let Some(hold) = hold {
            hold.stop_here();
        }
        if self.faults.panic_sync.swap(false, Ordering::Relaxed)
            || self.panic_own_sync.swap(false, Ordering::Relaxed)
            || self.faults.panics_now()
        {
            panic!("{} sync path", SimDisk::ARMED_PANIC);
        }
        self.faults.sync_attempt()?;
        let mut durable = self.durable.lock();
        if let Some((errno, forgetting)) = self.fail_own_sync.lock().take() {
            if forgetting {
                durable.dirty.fill(false);
            }
            return Err(io::Error::from_raw_os_error(errno));
        }
        if let Some(errno) = self.faults.fail_sync_forgetting.lock().take() {
            durable.dirty.fill(false);
            return Err(io::Error::from_raw_os_error(errno));
        }
        let Durable { image, dirty } = &mut *durable;
        for (sector, flag) in dirty.iter_mut().enumerate().filter(|(_, d)| **d) {
            let range = sector * SECTOR_BYTES..((sector + 1) * SECTOR_BYTES).min(image.len());
            for i in range {
                image[i] = self.data[i].load(Ordering::Relaxed);
            }
            *flag = false;
        }
        self.faults.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_back_range(&self, offset: u64, len: u64, how: WriteBack) -> io::Result<()> {
        assert!(
            offset.saturating_add(len) <= self.len(),
            "write-back past the end of a simulated file"
        );
        Faults::count_down(&self.faults.fail_write_back)?;
        let awaited = how == WriteBack::Await;
        self.faults.write_backs.lock().push((offset, len, awaited));
        Ok(())
    }

    fn forget_cached_pages(&self) {
        if self
            .faults
            .dropped_cached_pages_kept
            .load(Ordering::Relaxed)
        {
            return;
        }
        // Clean sectors are read from the disk again: the same bytes, unless a failed sync
        // forgot them (`fail_next_sync_forgetting_writes`). Dirty ones stay.
        let durable = self.durable.lock();
        for (sector, _) in durable.dirty.iter().enumerate().filter(|(_, d)| !**d) {
            let range = sector * SECTOR_BYTES..((sector + 1) * SECTOR_BYTES).min(self.data.len());
            for i in range {
                self.data[i].store(durable.image[i], Ordering::Relaxed);
            }
        }
    }

    fn bytes(&self, offset: u64, len: usize) -> &[u8] {
        let range = &self.data[offset as usize..offset as usize + len];
        // SAFETY: AtomicU8 has the size, alignment and bit validity of u8; no write touches this
        // range while the slice lives (the trait's discipline), so plain reads do not race.
        unsafe { std::slice::from_raw_parts(range.as_ptr().cast::<u8>(), len) }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Releases a hold when dropped: a failed assertion must not leave a thread held.
    struct ReleasedOnDrop(SimHold);

    impl Drop for ReleasedOnDrop {
        fn drop(&mut self) {
            self.0.release();
        }
    }

    /// Waits at most 20 s for `thread` to end; whether it did.
    fn ends<T>(thread: &std::thread::ScopedJoinHandle<'_, T>) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !thread.is_finished() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn a_held_first_write_stops_only_the_file_of_its_prefix_until_released() {
        let disk = SimDisk::new();
        let dir = disk.dir(Path::new("held"));
        let hold = disk.hold_first_write_of("snapshot-");
        let segment = dir.create("00000000000000000002.seg.tmp", 512).unwrap();
        let snapshot = dir.create("snapshot-1.snap.tmp", 512).unwrap();
        let later = dir.create("snapshot-2.snap.tmp", 512).unwrap();
        std::thread::scope(|s| {
            // Dropped before the scope waits for its threads.
            let _release = ReleasedOnDrop(hold.clone());
            // Another name, and the next file of the prefix: written at once.
            let others = s.spawn(|| {
                segment.write_at(0, &[b"segment"]).unwrap();
                later.write_at(0, &[b"later"]).unwrap();
            });
            assert!(ends(&others), "a write to another file was held");
            assert!(!hold.wait_reached(Duration::from_millis(1)));
            let writing = s.spawn(|| snapshot.write_at(0, &[b"held"]));
            assert!(hold.wait_reached(Duration::from_secs(20)), "never held");
            // It waits for the release, having changed nothing.
            assert!(!writing.is_finished(), "wrote through the hold");
            assert_eq!(snapshot.bytes(0, 4), &[0; 4]);
            hold.release();
            assert!(ends(&writing), "the released write never ended");
            writing.join().unwrap().unwrap();
        });
        assert_eq!(snapshot.bytes(0, 4), b"held");
        assert_eq!(later.bytes(0, 5), b"later");
    }
}
