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
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring, Probe};
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
    state: Mutex<RingState>,
    mode: UringSync,
}

struct RingState {
    ring: IoUring,
    /// Why the ring may no longer be entered, once `io_uring_enter` failed for a reason other
    /// than a signal or a passing shortage: entries may be left in its submission queue that
    /// point at buffers their callers have since reused, and a later enter would submit them.
    broken: Option<String>,
}

/// Why `io_uring_setup` failed, as the caller must take it: a shortage (memory, counted
/// against `RLIMIT_MEMLOCK` before Linux 5.12; descriptors) is an error of this open, not
/// `Unsupported`, which a caller that falls back to another backend on `Unsupported`
/// (`io_uring_fallback`) would take for "this machine has no io_uring" and hide (found by
/// review on 2026-12-08). Anything else (`ENOSYS`, `EPERM` from a sandbox, `EINVAL`) is.
fn setup_failure(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENOMEM) => io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "io_uring_setup failed: {e} (before Linux 5.12 a ring's memory counts against \
                 the locked-memory limit, `ulimit -l`, shared by the user's processes)"
            ),
        ),
        Some(libc::EMFILE | libc::ENFILE) => {
            io::Error::new(e.kind(), format!("io_uring_setup failed: {e}"))
        }
        _ => io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring_setup failed: {e}"),
        ),
    }
}

impl Ring {
    /// Sets up a ring, or says why this machine cannot: io_uring missing or forbidden, or a
    /// kernel whose io_uring lacks the operations the log uses (a ring sets up from Linux 5.1,
    /// but writes arrived in 5.6: before, every write would fail with `EINVAL`).
    pub fn new(mode: UringSync) -> io::Result<Ring> {
        let unsupported = |why: String| io::Error::new(io::ErrorKind::Unsupported, why);
        let ring = IoUring::new(RING_ENTRIES).map_err(setup_failure)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| {
            unsupported(format!(
                "this kernel's io_uring cannot list its operations (IORING_REGISTER_PROBE, \
                 Linux 5.6 and later; or a sandbox forbids it), so its writes cannot be relied \
                 on: {e}"
            ))
        })?;
        for (code, name) in [
            (opcode::Write::CODE, "IORING_OP_WRITE (Linux 5.6)"),
            (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
        ] {
            if !probe.is_supported(code) {
                return Err(unsupported(format!(
                    "this kernel's io_uring lacks {name}, which the log's writes need"
                )));
            }
        }
        Ok(Ring {
            state: Mutex::new(RingState { ring, broken: None }),
            mode,
        })
    }

    /// How writes are made durable.
    pub fn mode(&self) -> UringSync {
        self.mode
    }

    /// Writes each `(offset, ptr, len)`, the `len` bytes at `ptr`, at its offset with
    /// `O_DIRECT` and, with `durable`, makes them durable; returns once every operation
    /// completed.
    ///
    /// The buffers are raw pointers, not slices: a block widened from a dirty range may hold
    /// bytes another appender is copying at that moment (a record past the written LSN, which a
    /// later write-back writes again), and a shared reference over bytes being written would be
    /// a data race. The kernel reads raw memory; no reference is made here.
    ///
    /// # Safety
    /// Each `ptr` is valid for reads of `len` bytes until this call returns.
    pub unsafe fn write(
        &self,
        fd: &StdFile,
        writes: &[(u64, *const u8, usize)],
        durable: bool,
    ) -> io::Result<()> {
        let mut state = self.state.lock();
        if let Some(reason) = &state.broken {
            return Err(io::Error::other(format!(
                "the io_uring is unusable since an earlier failure: {reason}"
            )));
        }
        let chunk = (RING_ENTRIES - 1) as usize;
        for (index, batch) in writes.chunks(chunk).enumerate() {
            let last_batch = (index + 1) * chunk >= writes.len();
            let dsync = durable && self.mode == UringSync::DsyncWrites;
            let fsync = durable && last_batch && self.mode == UringSync::LinkedFdatasync;
            let mut expected = Vec::with_capacity(batch.len() + 1);
            let mut entries = Vec::with_capacity(batch.len() + 1);
            for (i, &(offset, ptr, len)) in batch.iter().enumerate() {
                debug_assert!(offset % BLOCK_BYTES == 0 && len as u64 % BLOCK_BYTES == 0);
                let len = u32::try_from(len).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an io_uring write of 4 GiB or more",
                    )
                })?;
                let mut entry = opcode::Write::new(types::Fd(fd.as_raw_fd()), ptr, len)
                    .offset(offset)
                    .rw_flags(if dsync { libc::RWF_DSYNC } else { 0 })
                    .build()
                    .user_data(i as u64);
                if fsync {
                    // The fdatasync runs only after every write of the batch succeeded.
                    entry = entry.flags(squeue::Flags::IO_LINK);
                }
                expected.push(len as i32);
                entries.push(entry);
            }
            if fsync {
                let entry = opcode::Fsync::new(types::Fd(fd.as_raw_fd()))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(batch.len() as u64);
                expected.push(0);
                entries.push(entry);
            }
            // SAFETY: the buffers live until their completions are reaped below (valid for
            // the whole call: this function's contract; `reap` returns only once nothing submitted is in
            // flight, and a ring whose queue may still hold these entries is marked broken and
            // never entered again); the sync references no memory. All or none are queued.
            unsafe { state.ring.submission().push_multiple(&entries) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            match reap(&mut state.ring, &expected) {
                // The kernel ends a link chain at the end of each `io_uring_enter`: a batch it
                // took in parts (it does when a request cannot be allocated) ran its fdatasync
                // after the last part's writes only, and the earlier ones may still be in the
                // drive's cache. One more fdatasync covers them all.
                Ok(enters) if fsync && enters > 1 => fdatasync(fd)?,
                Ok(_) => {}
                Err(Reaped::OperationFailed(error)) => return Err(error),
                Err(Reaped::RingFailed(error)) => {
                    state.broken = Some(error.to_string());
                    return Err(error);
                }
            }
        }
        if writes.is_empty() && durable {
            return fdatasync(fd);
        }
        Ok(())
    }
}

/// What [`reap`] needs of a ring: the kernel's, or a scripted one in the tests, since a kernel
/// cannot be made to fail `io_uring_enter` on demand.
trait Completions {
    /// Submits what is queued and waits for `want` completions (`io_uring_enter`); returns how
    /// many entries it submitted.
    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize>;
    /// Waits for `want` completions without submitting anything (`io_uring_enter` with
    /// `IORING_ENTER_GETEVENTS` and nothing to submit).
    fn wait(&mut self, want: usize) -> io::Result<()>;
    /// Takes every completion posted so far, as `(user_data, result)`.
    fn take(&mut self, into: &mut Vec<(u64, i32)>);
}

/// `IORING_ENTER_GETEVENTS` of the kernel's `io_uring.h` (the crate keeps its copy private).
const IORING_ENTER_GETEVENTS: u32 = 1;

impl Completions for IoUring {
    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        IoUring::submit_and_wait(self, want)
    }

    fn wait(&mut self, want: usize) -> io::Result<()> {
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        // SAFETY: no argument is passed, and nothing is submitted: the entries left in the
        // queue stay unsubmitted.
        unsafe {
            self.submitter()
                .enter::<libc::sigset_t>(0, want, IORING_ENTER_GETEVENTS, None)
        }
        .map(|_| ())
    }

    fn take(&mut self, into: &mut Vec<(u64, i32)>) {
        into.extend(self.completion().map(|cqe| (cqe.user_data(), cqe.result())));
    }
}

/// Why [`reap`] failed.
#[derive(Debug)]
enum Reaped {
    /// An operation failed or wrote short; the ring is clean (every completion was reaped).
    OperationFailed(io::Error),
    /// `io_uring_enter` failed: entries may be left unsubmitted in the queue.
    RingFailed(io::Error),
}

/// How long a passing shortage (`EAGAIN`, `EBUSY`) of `io_uring_enter` is retried.
const SHORTAGE_RETRIES: u32 = 1000;
const SHORTAGE_PAUSE: Duration = Duration::from_millis(1);

/// Submits the queued entries, one per `expected` result (bytes for a write, 0 for a sync),
/// and returns once every completion is reaped, even when a signal interrupts the wait or
/// `io_uring_enter` fails: the kernel may still be reading the caller's buffers, and a
/// completion left in the ring would be taken for one of the next call's. Returns how many
/// calls of `io_uring_enter` submitted entries (more than one: linked entries were split).
fn reap(ring: &mut impl Completions, expected: &[i32]) -> Result<usize, Reaped> {
    // Only completions of this call's operations count: one of no operation of ours (which
    // nothing makes today, every call draining the ring) must not end the wait while one of
    // ours is still in flight, its buffer still read by the kernel.
    fn ours(taken: &[(u64, i32)], expected: &[i32]) -> usize {
        taken
            .iter()
            .filter(|&&(user_data, _)| (user_data as usize) < expected.len())
            .count()
    }
    let mut first_error = None;
    let mut submitted = 0;
    let mut submitting_enters = 0;
    let mut reaped = 0;
    let mut shortages = 0;
    let mut taken = Vec::with_capacity(expected.len());
    while reaped < expected.len() {
        match ring.submit_and_wait(expected.len() - reaped) {
            Ok(n) => {
                submitted += n;
                submitting_enters += usize::from(n > 0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY))
                    && shortages < SHORTAGE_RETRIES =>
            {
                shortages += 1;
                std::thread::sleep(SHORTAGE_PAUSE);
            }
            Err(e) => {
                // What was submitted is waited for without a deadline: returning earlier would
                // let the kernel read buffers the caller reuses. First with an enter that
                // submits nothing; if the ring refuses even that, by polling, since this ring
                // posts completions without being entered (it is set up without deferred
                // task_work, `IORING_SETUP_DEFER_TASKRUN`).
                while reaped < submitted {
                    match ring.wait(submitted - reaped) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => std::thread::sleep(SHORTAGE_PAUSE),
                    }
                    taken.clear();
                    ring.take(&mut taken);
                    reaped += ours(&taken, expected);
                }
                return Err(Reaped::RingFailed(io::Error::new(
                    e.kind(),
                    format!(
                        "io_uring_enter failed ({e}); {} of {} operations were never submitted",
                        expected.len().saturating_sub(submitted),
                        expected.len()
                    ),
                )));
            }
        }
        taken.clear();
        ring.take(&mut taken);
        reaped += ours(&taken, expected);
        for &(user_data, got) in &taken {
            let Some(&want) = expected.get(user_data as usize) else {
                first_error.get_or_insert(io::Error::other(format!(
                    "io_uring completion for operation {user_data} of {}",
                    expected.len()
                )));
                continue;
            };
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
    match first_error {
        Some(error) => Err(Reaped::OperationFailed(error)),
        None => Ok(submitting_enters),
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
        .map_err(|e| direct_refused(path, e))
}

/// [`open_direct`] of a new file, created by the same call.
pub(crate) fn create_direct(path: &Path) -> io::Result<StdFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| direct_refused(path, e))
}

/// An open with `O_DIRECT`'s error: `EINVAL` means the file system does not take it.
fn direct_refused(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::EINVAL) {
        io::Error::new(
            io::ErrorKind::Unsupported,
            // Named by its directory: the file may be the probe, removed since.
            format!(
                "the file system of {} does not support O_DIRECT (tmpfs before Linux 6.6 does \
                 not, nor do some FUSE and network file systems): {e}",
                path.parent().unwrap_or(path).display()
            ),
        )
    } else {
        e
    }
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A shortage at setup is an error of the open, not `Unsupported`, which
    /// `io_uring_fallback` takes for "no io_uring here" and hides behind another backend
    /// (found by review on 2026-12-08).
    #[test]
    fn a_shortage_at_setup_is_not_unsupported() {
        let memory = setup_failure(io::Error::from_raw_os_error(libc::ENOMEM));
        assert_eq!(memory.kind(), io::ErrorKind::OutOfMemory);
        assert!(memory.to_string().contains("ulimit -l"), "{memory}");
        for errno in [libc::EMFILE, libc::ENFILE] {
            let descriptors = setup_failure(io::Error::from_raw_os_error(errno));
            assert_ne!(descriptors.kind(), io::ErrorKind::Unsupported, "{errno}");
        }
        for errno in [libc::ENOSYS, libc::EPERM, libc::EINVAL] {
            let missing = setup_failure(io::Error::from_raw_os_error(errno));
            assert_eq!(missing.kind(), io::ErrorKind::Unsupported, "{errno}");
        }
    }

    /// A ring whose `io_uring_enter` answers from a script: its queued entries move to "in
    /// flight" when a call submits them and complete when `take` is called, unless completions
    /// are held back for a few more calls.
    #[derive(Default)]
    struct Scripted {
        /// Answers of the next calls of `submit_and_wait`; past its end, each submits all.
        script: VecDeque<io::Result<usize>>,
        queued: VecDeque<(u64, i32)>,
        in_flight: Vec<(u64, i32)>,
        /// Calls of `take` that see no completion yet.
        held_back_takes: usize,
        enters: usize,
        /// The error every `wait` returns, if any.
        wait_answer: Option<i32>,
        /// Completions of no operation of the caller's, each taken alone by a call of `take`
        /// before anything in flight.
        strays: VecDeque<(u64, i32)>,
        waits: usize,
    }

    impl Scripted {
        fn queue(results: &[i32]) -> Scripted {
            Scripted {
                queued: results
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| (i as u64, r))
                    .collect(),
                ..Scripted::default()
            }
        }

        fn then(mut self, answer: io::Result<usize>) -> Scripted {
            self.script.push_back(answer);
            self
        }
    }

    impl Completions for Scripted {
        fn submit_and_wait(&mut self, _want: usize) -> io::Result<usize> {
            self.enters += 1;
            let n = match self.script.pop_front() {
                Some(Ok(n)) => n.min(self.queued.len()),
                Some(Err(e)) => return Err(e),
                None => self.queued.len(),
            };
            self.in_flight.extend(self.queued.drain(..n));
            Ok(n)
        }

        fn wait(&mut self, _want: usize) -> io::Result<()> {
            self.waits += 1;
            self.wait_answer
                .as_ref()
                .map_or(Ok(()), |&code| Err(io::Error::from_raw_os_error(code)))
        }

        fn take(&mut self, into: &mut Vec<(u64, i32)>) {
            if let Some(stray) = self.strays.pop_front() {
                into.push(stray);
            } else if self.held_back_takes > 0 {
                self.held_back_takes -= 1;
            } else {
                into.append(&mut self.in_flight);
            }
        }
    }

    fn os_error(code: i32) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(code))
    }

    #[test]
    fn signals_and_shortages_are_retried_until_every_operation_completed() {
        let mut ring = Scripted::queue(&[4096, 4096, 0])
            .then(os_error(libc::EINTR))
            .then(os_error(libc::EAGAIN))
            .then(Ok(1))
            .then(os_error(libc::EBUSY))
            .then(os_error(libc::EINTR));
        // Submitted in two parts (one entry, then two): a linked fdatasync among them would
        // have covered the second part's writes only, and the caller syncs once more.
        assert_eq!(reap(&mut ring, &[4096, 4096, 0]).unwrap(), 2);
        assert!(ring.queued.is_empty() && ring.in_flight.is_empty());
        assert_eq!(ring.enters, 6);
        // In one part, however many waits it took: the chain held.
        let mut ring = Scripted::queue(&[4096, 4096, 0])
            .then(os_error(libc::EINTR))
            .then(Ok(3))
            .then(Ok(0));
        ring.held_back_takes = 1;
        assert_eq!(reap(&mut ring, &[4096, 4096, 0]).unwrap(), 1);
    }

    #[test]
    fn a_failed_operation_is_reported_once_every_completion_is_reaped() {
        let mut ring = Scripted::queue(&[4096, -libc::EIO, 100]).then(Ok(2));
        match reap(&mut ring, &[4096, 4096, 4096]) {
            Err(Reaped::OperationFailed(e)) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
            other => panic!("expected the EIO of operation 1, got {other:?}"),
        }
        assert!(ring.queued.is_empty() && ring.in_flight.is_empty());

        let mut ring = Scripted::queue(&[4096, 100]);
        match reap(&mut ring, &[4096, 4096]) {
            Err(Reaped::OperationFailed(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::WriteZero, "{e}")
            }
            other => panic!("expected a short write, got {other:?}"),
        }
    }

    /// A completion of no operation of the caller's is reported, and does not count for one:
    /// `reap` returned on it with the caller's write still in flight (found by review on
    /// 2026-12-07; nothing posts such a completion today).
    #[test]
    fn a_stray_completion_does_not_end_the_wait_for_ours() {
        let mut ring = Scripted::queue(&[4096]);
        ring.strays.push_back((99, 0));
        match reap(&mut ring, &[4096]) {
            Err(Reaped::OperationFailed(e)) => {
                assert!(e.to_string().contains("operation 99 of 1"), "{e}")
            }
            other => panic!("expected the stray reported, got {other:?}"),
        }
        assert!(
            ring.queued.is_empty() && ring.in_flight.is_empty(),
            "returned with a write in flight"
        );
    }

    /// The kernel may still be reading the buffers of what an enter submitted before a later
    /// one failed: `reap` must not return before those complete.
    #[test]
    fn a_failing_enter_returns_only_once_what_was_submitted_completed() {
        // The waits that submit nothing work, or fail too (then completions are polled).
        for wait_answer in [None, Some(libc::EBADF)] {
            let mut ring = Scripted::queue(&[4096, 4096, 4096])
                .then(Ok(2))
                .then(os_error(libc::EBADF));
            ring.held_back_takes = 3;
            ring.wait_answer = wait_answer;
            match reap(&mut ring, &[4096, 4096, 4096]) {
                Err(Reaped::RingFailed(e)) => {
                    let message = e.to_string();
                    assert!(
                        message.contains("1 of 3 operations were never submitted"),
                        "{message}"
                    );
                }
                other => panic!("expected the ring to fail, got {other:?}"),
            }
            assert!(
                ring.in_flight.is_empty(),
                "returned with operations in flight ({wait_answer:?})"
            );
            assert_eq!(ring.queued.len(), 1, "the wait submitted the queued entry");
            assert!(ring.waits >= 1);
        }
    }

    /// The kernel ring's `wait` waits for what was submitted and submits nothing more.
    #[test]
    fn the_kernel_rings_wait_submits_nothing() {
        let mut ring = IoUring::new(4).unwrap();
        let nop = opcode::Nop::new().build().user_data(7);
        // SAFETY: a no-op references no memory.
        unsafe { ring.submission().push(&nop) }.unwrap();
        assert_eq!(ring.submit().unwrap(), 1);
        let left = opcode::Nop::new().build().user_data(8);
        // SAFETY: as above.
        unsafe { ring.submission().push(&left) }.unwrap();
        Completions::wait(&mut ring, 1).unwrap();
        let mut taken = Vec::new();
        ring.take(&mut taken);
        assert_eq!(taken, vec![(7, 0)]);
        assert_eq!(
            ring.submission().len(),
            1,
            "the wait submitted the queued entry"
        );
    }

    #[test]
    fn a_shortage_that_does_not_pass_fails_the_ring() {
        let mut ring = Scripted::queue(&[4096]);
        for _ in 0..=SHORTAGE_RETRIES {
            ring.script.push_back(os_error(libc::EAGAIN));
        }
        match reap(&mut ring, &[4096]) {
            Err(Reaped::RingFailed(e)) => {
                assert!(e.to_string().contains("os error 11"), "{e}")
            }
            other => panic!("expected the ring to fail, got {other:?}"),
        }
        assert_eq!(ring.queued.len(), 1, "nothing was submitted");
    }

    #[test]
    fn a_broken_ring_is_never_entered_again() {
        let path = std::env::temp_dir().join(format!("rwal-broken-ring-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let ring = Ring::new(UringSync::DsyncWrites).unwrap();
        ring.state.lock().broken = Some("io_uring_enter failed (test)".into());
        let block = vec![7u8; BLOCK_BYTES as usize];
        // SAFETY: `block` outlives the call.
        let error =
            unsafe { ring.write(&file, &[(0, block.as_ptr(), block.len())], true) }.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("unusable since an earlier failure: io_uring_enter failed (test)"),
            "{message}"
        );
        assert!(ring.state.lock().ring.submission().is_empty());
        assert_eq!(
            file.metadata().unwrap().len(),
            0,
            "the write reached the file"
        );
    }
}
