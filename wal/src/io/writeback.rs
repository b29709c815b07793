//! Paced write-back of large files written front to back and synced once: snapshots, and the
//! zero-fill of segments.
//!
//! Written into the page cache and synced once at the end, such a file reaches the disk in one
//! burst: its `fdatasync` queues all of it, and every commit that syncs the log meanwhile waits
//! behind that queue. On this project's machine a 128-byte commit beside the sync of a 256 MiB
//! snapshot waited 70-101 ms (alone: 0.2 ms), and a replicated node whose log sync waited that
//! long stopped heartbeating for longer than its election timeout. Starting the write-back of
//! each step as soon as it is written, and waiting for the step before it, keeps about two steps
//! queued at any time: the same commit then waited at most 1.7-2.6 ms (`docs/performance.md`,
//! "snapshots written back as they are written"; the design is in `docs/design.md` section 15.1).
//!
//! The step is a trade. Each commit whose sync runs while a step is queued waits for part of it:
//! small steps slow many commits a little, large ones few commits a lot. Segment zero-fills
//! (64 MiB, once per segment's worth of records) use 8 MiB steps: in 1 MiB steps, the zero-fill
//! that follows every open slowed hundreds of commits by a millisecond or two, and the p99 of
//! peerbench's 2 000-commit latency run rose from 0.23-0.31 ms to 0.54-1.27 ms; synced at once,
//! it held one or two commits for 21-33 ms. In 8 MiB steps the slowest commit of that run took
//! 0.6-10.4 ms, its p99 stayed near the raw loop's (`Mmap` within its spread, `Staged` a little
//! above), and its p999 rose with `Mmap` (the few commits slowed by a few milliseconds are more
//! than a thousandth of a run that short; `docs/performance.md`, "the
//! next segment prepared at open; zero-fills in 8 MiB steps"). Snapshots keep 1 MiB steps: a
//! replicated leader's heartbeats wait for its log syncs, and a snapshot may be far larger than
//! a segment.
//!
//! Write-back is not durability: the final `fdatasync` still makes the file durable, and the
//! crash model is unchanged (bytes written back early may or may not survive a crash, like any
//! written byte before a sync).

use std::io;

/// Bytes between two starts of write-back: small enough that two steps queued before a commit's
/// sync take a few milliseconds of this disk's bandwidth, large enough that the calls cost
/// nothing next to the writes.
pub(crate) const WRITEBACK_STEP_BYTES: u64 = 1 << 20;

/// The step of a segment's zero-fill (see the module's documentation for the trade).
pub(crate) const ZERO_FILL_STEP_BYTES: u64 = 8 << 20;

/// Whether a write-back call returns at once or waits for the range to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteBack {
    /// Start writing the range's dirty pages back; do not wait.
    Start,
    /// Wait until the range's pages, whose write-back was started, are written.
    Await,
}

/// Follows a file written front to back from some offset and asks for the write-back of each
/// full step behind the writer.
#[derive(Debug)]
pub(crate) struct WritebackPacer {
    /// Bytes per step.
    step: u64,
    /// Where the writes began.
    from: u64,
    /// Write-back has been started for `[from, started)`.
    started: u64,
    /// The first start failed: the file is left to its final sync.
    off: bool,
}

impl WritebackPacer {
    /// A pacer for writes that begin at `from`, in steps of `WRITEBACK_STEP_BYTES`.
    pub(crate) fn new(from: u64) -> WritebackPacer {
        WritebackPacer::with_step(from, WRITEBACK_STEP_BYTES)
    }

    /// A pacer for writes that begin at `from`, in steps of `step` bytes.
    pub(crate) fn with_step(from: u64, step: u64) -> WritebackPacer {
        debug_assert!(step > 0, "a pacer needs a step");
        WritebackPacer {
            step,
            from,
            started: from,
            off: false,
        }
    }

    /// Everything in `[from, written)` has been written. For each step newly complete, starts
    /// its write-back, then waits for the step before it, through `range(offset, len, how)`.
    /// An error is the caller's write error: once reported here, the kernel does not report it
    /// again at the file's next `fdatasync`. Except a first start refused as unavailable
    /// (`EPERM` from a sandbox's system-call filter, `EOPNOTSUPP`, `ENOSYS`): a start waits for
    /// nothing and takes no write-back error from the file, so the pacing just stops, and the
    /// final sync writes, and reports, everything.
    pub(crate) fn wrote(
        &mut self,
        written: u64,
        mut range: impl FnMut(u64, u64, WriteBack) -> io::Result<()>,
    ) -> io::Result<()> {
        while !self.off && written.saturating_sub(self.started) >= self.step {
            let step = self.started;
            if let Err(e) = range(step, self.step, WriteBack::Start) {
                if step == self.from && unavailable(&e) {
                    self.off = true;
                    return Ok(());
                }
                return Err(e);
            }
            if step > self.from {
                range(step - self.step, self.step, WriteBack::Await)?;
            }
            self.started = step + self.step;
        }
        Ok(())
    }
}

/// Whether a failed call says that write-back cannot be asked for here at all.
fn unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = WRITEBACK_STEP_BYTES;

    fn calls(from: u64, writes: &[u64]) -> Vec<(u64, u64, WriteBack)> {
        let mut pacer = WritebackPacer::new(from);
        let mut seen = Vec::new();
        let mut written = from;
        for &len in writes {
            written += len;
            pacer
                .wrote(written, |offset, len, how| {
                    seen.push((offset, len, how));
                    Ok(())
                })
                .unwrap();
        }
        seen
    }

    #[test]
    fn each_full_step_is_started_and_the_one_before_it_awaited() {
        // 3.5 steps in writes of 16 KiB from offset 4096: three steps complete.
        let writes = vec![16 << 10; (7 * STEP / 2 / (16 << 10)) as usize];
        assert_eq!(
            calls(4096, &writes),
            vec![
                (4096, STEP, WriteBack::Start),
                (4096 + STEP, STEP, WriteBack::Start),
                (4096, STEP, WriteBack::Await),
                (4096 + 2 * STEP, STEP, WriteBack::Start),
                (4096 + STEP, STEP, WriteBack::Await),
            ]
        );
    }

    #[test]
    fn one_large_write_is_paced_step_by_step() {
        assert_eq!(
            calls(0, &[2 * STEP + 1]),
            vec![
                (0, STEP, WriteBack::Start),
                (STEP, STEP, WriteBack::Start),
                (0, STEP, WriteBack::Await),
            ]
        );
    }

    #[test]
    fn a_larger_step_paces_in_that_step() {
        let mut pacer = WritebackPacer::with_step(0, ZERO_FILL_STEP_BYTES);
        let mut seen = Vec::new();
        for written in (1..=3).map(|i| i * (ZERO_FILL_STEP_BYTES - 1)) {
            pacer
                .wrote(written, |offset, len, how| {
                    seen.push((offset, len, how));
                    Ok(())
                })
                .unwrap();
        }
        let step = ZERO_FILL_STEP_BYTES;
        assert_eq!(
            seen,
            vec![
                (0, step, WriteBack::Start),
                (step, step, WriteBack::Start),
                (0, step, WriteBack::Await),
            ]
        );
    }

    #[test]
    fn less_than_a_step_asks_for_nothing() {
        assert!(calls(0, &[STEP - 1]).is_empty());
        assert!(calls(0, &[]).is_empty());
    }

    #[test]
    fn an_error_stops_the_pacing_and_is_returned() {
        let mut pacer = WritebackPacer::new(0);
        let mut asked = 0;
        let result = pacer.wrote(3 * STEP, |_, _, _| {
            asked += 1;
            if asked == 3 {
                return Err(io::Error::from_raw_os_error(5));
            }
            Ok(())
        });
        assert_eq!(result.unwrap_err().raw_os_error(), Some(5));
        assert_eq!(asked, 3);
    }

    /// A first start refused as unavailable (`EPERM` from a sandbox's filter) leaves the file
    /// to its final sync: no error, and nothing more asked of the call. Any other failure, and
    /// any failure of a later call, is returned.
    #[test]
    fn a_first_start_refused_as_unavailable_turns_the_pacing_off() {
        let mut pacer = WritebackPacer::new(0);
        let mut asked = 0;
        for written in 1..=4 {
            pacer
                .wrote(written * STEP, |_, _, _| {
                    asked += 1;
                    Err(io::Error::from_raw_os_error(libc::EPERM))
                })
                .expect("left to the final sync");
        }
        assert_eq!(asked, 1);

        let mut pacer = WritebackPacer::new(0);
        let result = pacer.wrote(STEP, |_, _, _| Err(io::Error::from_raw_os_error(libc::EIO)));
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EIO));

        let mut pacer = WritebackPacer::new(0);
        let mut asked = 0;
        let result = pacer.wrote(2 * STEP, |_, _, how| {
            asked += 1;
            match (asked, how) {
                (2, WriteBack::Start) => Err(io::Error::from_raw_os_error(libc::EPERM)),
                _ => Ok(()),
            }
        });
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(asked, 2);
    }
}
