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
/// directory locked until the reader is called again or dropped.
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
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("next_lsn", &self.next)
            .finish()
    }
}

impl Reader {
    pub(crate) fn new(inner: Arc<Inner>, from: Lsn) -> Result<Reader> {
        let (pin_id, pin) = {
            let _gate = inner.cut_gate.read();
            // Registered and checked under the control lock, which compaction holds from its
            // look at the pins until it has moved the first LSN: it either sees this pin, or
            // the check below sees the new first LSN. Never a reader standing in a segment
            // compaction removes (or recycles and overwrites).
            let _control = inner.control.lock();
            inner.check_readable_start(from)?;
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
        })
    }

    /// The LSN the next call will return (if it is durable by then).
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// The next durable record, or `None` at the durable end of the log.
    // Not `Iterator::next`: the record borrows the reader (see the type's docs).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>> {
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
        let found = self.wait_for_next(timeout);
        if found.is_err() {
            self.let_go_of_record();
        }
        let (offset, header) = found?;
        Ok(self.record(offset, header))
    }

    /// `next_timeout`'s wait: the offset and header of the next record.
    fn wait_for_next(&mut self, timeout: Duration) -> Result<(u64, record::RecordHeader)> {
        let deadline = Instant::now() + timeout;
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
            ..
        } = self;
        let _gate = inner.cut_gate.read();
        inner.group.check()?;
        if *next > inner.group.durable_lsn() {
            return Ok(None);
        }
        let Some((found, at)) = position(inner, segment.as_ref(), next, *offset)? else {
            return Ok(None);
        };
        let header = inner.decode_at(&found, at, *next)?;
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
        self.inner.pins.release(self.pin_id);
        self.let_go_of_record();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::test_hooks::at;
    use crate::{Options, Wal};

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
}
