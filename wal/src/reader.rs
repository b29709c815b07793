//! Readers: iterate over durable records without copying them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::record::{self, RecordKind};
use crate::segment::Segment;
use crate::wal::Inner;
use crate::Lsn;

/// A record as a reader returns it: the payload is a slice of the segment's mapping, valid until
/// the reader's next call. Until then the reader holds it: a close of the log leaves the
/// directory locked until the reader is called again, released ([`Reader::release`]) or
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The epoch it was written in.
    pub epoch: u64,
    /// What it holds.
    pub kind: RecordKind,
    /// The payload, exactly as appended.
    pub data: &'a [u8],
}

/// Iterates over durable records from a starting LSN; never returns a record past the durable
/// LSN. While it lives it pins the record it last returned, so `truncate_after` cannot cut it.
/// On a poisoned log it still returns the records made durable before the failure, then the
/// failure (see [`Wal::reader`](crate::Wal::reader)).
///
/// Not an `Iterator`: each record borrows the reader, so that the zero-copy slice cannot
/// outlive the pin that protects it.
pub struct Reader {
    inner: Arc<Inner>,
    next: Lsn,
    segment: Option<Arc<Segment>>,
    offset: u64,
    pin_id: u64,
    pin: Arc<AtomicU64>,
    /// Whether the last call returned a record (counted in `Inner::record_holders`).
    holding: bool,
    /// Whether each record's checksum is computed as it is read (`set_verify_checksums`).
    verify: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("next_lsn", &self.next)
            .field("verify_checksums", &self.verify)
            .finish()
    }
}

impl Reader {
    pub(crate) fn new(inner: Arc<Inner>, from: Lsn) -> Result<Reader> {
        inner.opened_in.check("reader")?;
        let (pin_id, pin) = {
            let _gate = inner.cut_gate.read();
            // Registered and checked under the control lock, which compaction holds from its
            // look at the pins until it has moved the first LSN: it either sees this pin, or
            // the check below sees the new first LSN. Never a reader standing in a segment
            // compaction removes (or recycles and overwrites).
            let control = inner.control.lock();
            inner.check_readable_start(from, Some(&control))?;
            let registered =
                inner
                    .pins
                    .register("reader", from - 1, None, crate::pins::Holder::Reader);
            (registered.id, registered.lsn)
        };
        Ok(Reader {
            inner,
            next: from,
            segment: None,
            offset: 0,
            pin_id,
            pin,
            holding: false,
            verify: true,
        })
    }

    /// Whether the reader computes each record's checksum as it reads it (by default it does).
    ///
    /// Every record in the log when it was opened was checked by recovery then, and records
    /// appended since were written by this process. So a replay right after `open` checks each
    /// record twice, and can skip the second check to read about four times as fast (4 KiB
    /// records, docs/performance.md). What the check on read still catches is damage done
    /// since: to the file (a page read back from a failing disk after the open) or to the
    /// memory that holds it. Turned off, such damage reaches the caller in a payload, an epoch,
    /// or a length that still ends within the segment (the payload then runs on into the bytes
    /// after it, and the next read most likely fails). A record whose LSN is not the one
    /// expected, whose kind is unknown or whose length reaches past its segment still fails
    /// with [`Error::Corrupted`]. Records of a segment whose reads show copies in progress
    /// (the active segment, with `Mmap` and `IoUring`) are checked whatever this says: a
    /// damaged length there could reach bytes an appender is writing.
    pub fn set_verify_checksums(&mut self, verify: bool) {
        self.verify = verify;
    }

    /// Whether the reader checks each record's checksum (see [`Reader::set_verify_checksums`]).
    pub fn verifies_checksums(&self) -> bool {
        self.verify
    }

    /// The LSN the next call will return (if it is durable by then).
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// The next durable record, or `None` at the durable end of the log.
    // Not `Iterator::next`: the record borrows the reader (see the type's docs).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>> {
        self.inner.opened_in.check("a reader's next")?;
        let found = self.advance();
        if !matches!(found, Ok(Some(_))) {
            self.let_go_of_record();
        }
        let Some((offset, header)) = found? else {
            return Ok(None);
        };
        Ok(Some(self.record(offset, header)))
    }

    /// The next durable record, waiting up to `timeout` for one to become durable; a
    /// `Timeout` error if none does.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Record<'_>> {
        self.inner.opened_in.check("a reader's next_timeout")?;
        let found = self.wait_for_next(timeout);
        if found.is_err() {
            self.let_go_of_record();
        }
        let (offset, header) = found?;
        Ok(self.record(offset, header))
    }

    /// `next_timeout`'s wait: the offset and header of the next record.
    fn wait_for_next(&mut self, timeout: Duration) -> Result<(u64, record::RecordHeader)> {
        // A timeout too long for the clock (`Duration::MAX`, "wait forever") waits a century.
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        loop {
            let durable = self.inner.group.durable_lsn();
            if durable < self.next {
                self.inner.group.wait_durable(self.next, deadline)?;
                continue;
            }
            #[cfg(test)]
            crate::test_hooks::hook("next_timeout: the next LSN is durable", &self.inner);
            if let Some(found) = self.advance()? {
                return Ok(found);
            }
            // Durable, and yet nothing to read: a truncation cut it since, or the record after
            // a stretch that recovery skipped is not durable yet. Wait on, to the deadline:
            // for the record at `next` if the durable LSN fell below it, else for it to move.
            let now = self.inner.group.durable_lsn();
            let wanted = if now < self.next { self.next } else { now + 1 };
            self.inner.group.wait_durable(wanted, deadline)?;
        }
    }

    /// Lets go of the record the last call returned, for a caller that copied it (a binding):
    /// until the next call the reader holds it, and a closed log's directory stays locked.
    /// The position and the pin (what `truncate_after` respects) stay as they are. Taking
    /// `&mut self`, it cannot run while a [`Record`] borrowed from this reader lives.
    /// In a child forked from the opener it does nothing (as `drop` there: the record holders
    /// are the opener's).
    pub fn release(&mut self) {
        if self.inner.opened_in.is_current() {
            self.let_go_of_record();
        }
    }

    /// This reader holds no record any more (a call that returned none ended the borrow of the
    /// last one): which may release the directory of a closed log.
    fn let_go_of_record(&mut self) {
        if std::mem::take(&mut self.holding) {
            self.inner.record_holders.let_go();
        }
    }

    /// The record whose header `advance` read at `offset` of the current segment.
    fn record(&self, offset: u64, header: record::RecordHeader) -> Record<'_> {
        let segment = self.segment.as_ref().expect("advance sets the segment");
        Record {
            lsn: header.lsn,
            epoch: header.epoch,
            kind: header.kind,
            data: segment.payload(offset, header.payload_len),
        }
    }

    /// Moves to the next durable record: its offset and header.
    fn advance(&mut self) -> Result<Option<(u64, record::RecordHeader)>> {
        let Reader {
            inner,
            next,
            segment,
            offset,
            pin,
            holding,
            verify,
            ..
        } = self;
        let _gate = inner.cut_gate.read();
        // A poisoned log still gives out what was durable before it failed
        // (`Inner::check_answerable`, which takes the control lock then, after the cut gate as
        // everywhere), and its failure where a usable log would say `None`.
        let poisoned = inner.group.check().is_err();
        if poisoned {
            inner.check_answerable(*next, None)?;
        }
        // Where a usable log says it is at the end, a poisoned one says it failed.
        let end = || inner.group.check().map(|()| None);
        if *next > inner.group.durable_lsn() {
            return end();
        }
        let Some((found, at)) = position(inner, segment.as_ref(), next, *offset)? else {
            return end();
        };
        if poisoned {
            // `position` may have moved past a hole left by `SkipCorrupted`.
            inner.check_answerable(*next, None)?;
        }
        let header = inner.decode_checked_at(&found, at, *next, *verify)?;
        // Counted under the cut gate, which a close takes before it releases the directory: a
        // close either counts this reader (and leaves the directory locked to it), or ran
        // first, and `check` above failed.
        if !*holding {
            inner.record_holders.hold();
            *holding = true;
        }
        pin.store(*next, Ordering::Release);
        *segment = Some(found);
        *offset = at + record::stored_len(header.payload_len as usize) as u64;
        *next += 1;
        Ok(Some((at, header)))
    }
}

/// The segment and offset of record `next`, moving `next` over holes left by `SkipCorrupted`.
/// `current` and `offset` are where the reader stands.
fn position(
    inner: &Inner,
    current: Option<&Arc<Segment>>,
    next: &mut Lsn,
    offset: u64,
) -> Result<Option<(Arc<Segment>, u64)>> {
    if let Some(segment) = current {
        let inside = segment.sealed_last_lsn().is_none_or(|last| *next <= last);
        if inside && *next >= segment.first_lsn() {
            return Ok(Some((segment.clone(), offset)));
        }
    }
    // One hole may follow another: a segment whose every record was skipped stays in the map,
    // holding none, and the hop to its first LSN lands in the next hole. Hopping only once, the
    // reader returned `NotFound` there and never reached the records after it.
    let mut at = *next;
    loop {
        match inner.locate(at) {
            Ok(found) => {
                *next = at;
                return Ok(Some(found));
            }
            Err(Error::NotFound { .. }) => match inner.first_lsn_after(at) {
                Some(resume) if resume <= inner.group.durable_lsn() => at = resume,
                _ => return Ok(None),
            },
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if !self.inner.opened_in.is_current() {
            // A child forked from the opener: the pin registry and the record holders are the
            // opener's, and their locks may be held by threads this process does not have.
            return;
        }
        self.inner.pins.release(self.pin_id);
        self.let_go_of_record();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    /// A reader that let go of its record leaves a closed log's directory free, and reads on
    /// from where it was.
    #[test]
    fn a_released_record_does_not_keep_a_closed_logs_directory() {
        let dir = std::env::temp_dir().join(format!("rwal-reader-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, Options::new()).unwrap();
        for data in [b"one", b"two"] {
            wal.append_durable(data).unwrap();
        }
        let mut reader = wal.reader(1).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().data, b"one");
        reader.release();
        reader.release(); // twice: nothing more
        wal.close().unwrap();
        // Free at once: without the release, `Locked` until the reader is called or dropped.
        let again = Wal::open(&dir, Options::new()).unwrap();
        assert_eq!(reader.next_lsn(), 2);
        drop(reader);
        again.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use crate::test_hooks::at;
    use crate::{Backend, Error, Options, Wal};

    /// A truncation lands between a waiting reader's look at the durable LSN and its read (here
    /// through a test hook; in use, from another thread): the record it waited for is gone. The
    /// reader waits on, to its deadline, and gets the record appended at that LSN after the cut.
    /// It used to return `Timeout` at once, long before its deadline (found by review on
    /// 2026-12-03).
    #[test]
    fn a_reader_waiting_past_a_cut_waits_on_for_the_record_after_it() {
        let dir = std::env::temp_dir().join(format!("rwal-reader-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Arc::new(Wal::open(&dir, Options::new().background_threads(false)).unwrap());
        for i in 1..=3u8 {
            wal.append(&[i; 10]).unwrap();
        }
        wal.sync().unwrap();
        let mut reader = wal.reader(3).unwrap();
        assert_eq!(reader.next().unwrap().map(|r| r.lsn), Some(3));
        wal.append_durable(b"four").unwrap();
        let cutter = wal.clone();
        at("next_timeout: the next LSN is durable", move |_| {
            cutter.truncate_after(3).expect("cut below the reader");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                cutter.append_durable(b"four again").expect("appended");
            });
        });
        let record = reader
            .next_timeout(Duration::from_secs(20))
            .expect("the record appended after the cut");
        assert_eq!((record.lsn, record.data), (4, &b"four again"[..]));
        drop(reader);
        wal.close_shared().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Overwrites `bytes` at `offset` of the file at `path` behind the open log's back (the
    /// damage a failing disk or a stray write does after the open).
    fn damage(path: &std::path::Path, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    /// A reader checks each record's checksum unless told not to. Told not to, it still checks
    /// each record's header, and it checks every record of a segment whose reads show copies in
    /// progress. Damaged after the open, in the sealed first segment: record 2's payload; then
    /// record 4's length, claiming more than the segment holds, then 8 bytes more than it has;
    /// then, that undone, record 5's LSN. The checking reader fails at 2. The other returns
    /// record 2's damaged payload as found (what the switch gives up); fails at 4 for the length
    /// past the segment; returns record 4 with 8 bytes too many and then fails at 5; fails at 5
    /// for the LSN. Last, a payload damaged in the active segment: the reader told not to
    /// check returns it as found, except with `Mmap`, whose reads show copies.
    #[test]
    fn a_reader_not_verifying_checksums_still_refuses_a_damaged_header() {
        for backend in [Backend::Mmap, Backend::Staged, Backend::Pwrite] {
            let dir = std::env::temp_dir().join(format!(
                "rwal-reader-verify-{backend:?}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let options = Options::new()
                .backend(backend.clone())
                .segment_bytes(1 << 20)
                .background_threads(false);
            let wal = Wal::open(&dir, options).unwrap();
            let payloads: Vec<Vec<u8>> = (1..=5u8)
                .map(|i| format!("record {i} of the damage test").into_bytes())
                .collect();
            for payload in &payloads {
                wal.append(payload).unwrap();
            }
            // Past the first segment's end: the five records are in a sealed segment.
            let filler = vec![0x5au8; 64 << 10];
            for _ in 0..20 {
                wal.append(&filler).unwrap();
            }
            let active_lsn = wal.append(b"a record of the active segment").unwrap();
            wal.sync().unwrap();
            assert_eq!(wal.segment_count(), 2, "{backend:?}");
            let (first, second) = (
                dir.join(crate::segment::file_name(1)),
                dir.join(crate::segment::file_name(2)),
            );
            let bytes = std::fs::read(&first).unwrap();
            let header_of = |lsn: usize| {
                let needle = &payloads[lsn - 1];
                let payload = bytes
                    .windows(needle.len())
                    .position(|w| w == &needle[..])
                    .expect("the payload is in the segment");
                (payload - crate::record::HEADER_BYTES) as u64
            };
            // What a reader from LSN 1 returns: the first five payloads, up to an error.
            let read_five = |verify: bool| {
                let mut reader = wal.reader(1).unwrap();
                reader.set_verify_checksums(verify);
                assert_eq!(reader.verifies_checksums(), verify);
                let mut read = Vec::new();
                while read.len() < 5 {
                    match reader.next() {
                        Ok(Some(record)) => read.push(record.data.to_vec()),
                        Ok(None) => panic!("{backend:?}: the log ended"),
                        Err(Error::Corrupted { lsn, .. }) => return (read, Some(lsn)),
                        Err(e) => panic!("{backend:?}: {e}"),
                    }
                }
                (read, None)
            };
            assert!(wal.reader(1).unwrap().verifies_checksums(), "the default");
            assert_eq!(read_five(false), (payloads.clone(), None));

            let header_2 = header_of(2);
            damage(&first, header_2 + crate::record::HEADER_BYTES as u64, b"R");
            let (read, failed) = read_five(true);
            assert_eq!((read.len(), failed), (1, Some(2)), "{backend:?}: checking");
            let (read, failed) = read_five(false);
            assert_eq!(failed, None, "{backend:?}: not checking");
            assert_eq!(read[1], b"Record 2 of the damage test");
            assert_eq!(read[2..], payloads[2..]);

            let length_4 = header_of(4) + 4;
            let length = |bytes: u32| bytes.to_le_bytes();
            damage(&first, length_4, &length(0x7fff_ffff));
            let (read, failed) = read_five(false);
            assert_eq!(
                (read.len(), failed),
                (3, Some(4)),
                "{backend:?}: past the segment"
            );
            damage(&first, length_4, &length(payloads[3].len() as u32 + 8));
            let (read, failed) = read_five(false);
            assert_eq!(
                (read.len(), failed),
                (4, Some(5)),
                "{backend:?}: 8 bytes more"
            );
            assert_eq!(read[3].len(), payloads[3].len() + 8);
            assert_eq!(read[3][..payloads[3].len()], payloads[3][..]);
            damage(&first, length_4, &length(payloads[3].len() as u32));
            damage(&first, header_of(5) + 8, &44u64.to_le_bytes());
            let (read, failed) = read_five(false);
            assert_eq!(
                (read.len(), failed),
                (4, Some(5)),
                "{backend:?}: another LSN"
            );

            let active = std::fs::read(&second).unwrap();
            let at = active
                .windows(8)
                .position(|w| w == b"a record")
                .expect("the record is in the active segment");
            damage(&second, at as u64, b"A");
            let mut reader = wal.reader(active_lsn).unwrap();
            reader.set_verify_checksums(false);
            match (&backend, reader.next()) {
                (Backend::Mmap, Err(Error::Corrupted { lsn, .. })) => assert_eq!(lsn, active_lsn),
                (Backend::Staged | Backend::Pwrite, Ok(Some(record))) => {
                    assert_eq!(record.data, &b"A record of the active segment"[..])
                }
                (_, other) => panic!("{backend:?}: the active segment's record: {other:?}"),
            }
            drop(reader);
            wal.close().unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
