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
/// the reader's next call.
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
            let registered = inner.pins.register("reader", from - 1, None, true);
            (registered.id, registered.lsn)
        };
        Ok(Reader {
            inner,
            next: from,
            segment: None,
            offset: 0,
            pin_id,
            pin,
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
        let Some((offset, header)) = self.advance()? else {
            return Ok(None);
        };
        let segment = self.segment.as_ref().expect("advance sets the segment");
        let data = segment.payload(offset, header.payload_len);
        Ok(Some(Record {
            lsn: header.lsn,
            epoch: header.epoch,
            kind: header.kind,
            data,
        }))
    }

    /// The next durable record, waiting up to `timeout` for one to become durable; a
    /// `Timeout` error if none does.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Record<'_>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inner.group.durable_lsn() >= self.next {
                break;
            }
            self.inner.group.wait_durable(self.next, deadline)?;
        }
        self.next()?.ok_or(Error::Timeout {
            waiting_for: "a durable record",
        })
    }

    /// Moves to the next durable record: its offset and header.
    fn advance(&mut self) -> Result<Option<(u64, record::RecordHeader)>> {
        let Reader {
            inner,
            next,
            segment,
            offset,
            pin,
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
    match inner.locate(*next) {
        Ok(found) => Ok(Some(found)),
        Err(Error::NotFound { .. }) => match inner.first_lsn_after(*next) {
            Some(resume) if resume <= inner.group.durable_lsn() => {
                *next = resume;
                Ok(Some(inner.locate(resume)?))
            }
            _ => Ok(None),
        },
        Err(e) => Err(e),
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.inner.pins.release(self.pin_id);
    }
}
