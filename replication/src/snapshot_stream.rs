//! Snapshots travel beside raft's messages: raft's snapshot message carries only a descriptor,
//! and the checkpoint's snapshot file is streamed in chunks before it, a few per tick and no
//! faster than the transport takes them (`Pace`), so that a large snapshot holds up log
//! traffic by at most one chunk and is never sent faster than the link carries it. The receiver
//! checks the chunks and writes them to a file of its log's directory as they come, and only
//! lets raft see the snapshot message once the file holds the whole snapshot.

use std::io::Read as _;

use raft::eraftpb::Message;
use rwal_wal::{Lsn, ReceivedSnapshot, SnapshotReader, Wal};

use crate::outbox::Outbox;
use crate::transport::{Envelope, SnapshotChunk, SnapshotRoom};
use crate::NodeId;

/// A snapshot being sent to one follower.
pub(crate) struct Outgoing {
    reader: SnapshotReader,
    message: Message,
    sent: u64,
    crc: u32,
    /// How the stream keeps pace with the transport, and when it last made progress.
    pub(crate) pace: Pace,
    /// Everything, the raft message last, has been handed to the transport.
    pub(crate) finished: bool,
    /// It may resume where its receiver reports holding the bytes ([`Outgoing::resume_at`]).
    resumable: bool,
    /// It resumed: the check at the end of the file covers the bytes it skipped through the
    /// receiver's checksum of them alone.
    resumed: bool,
    /// Until this tick, it sends its first chunk only, and waits for the receiver's report of
    /// what it holds (a stream of the same snapshot to it failed part way): chunks queued
    /// meanwhile would all cross the link again, up to the whole transport queue on a slow
    /// link.
    hold_for_report_until: Option<u64>,
}

impl Outgoing {
    /// A stream of `reader`'s snapshot, raft's `message` after it; `resumable` unless a
    /// stream of this snapshot to the same receiver resumed and failed its end's check. With
    /// `hold_for_report` ticks, it sends its first chunk and waits up to that long for the
    /// receiver's report before it sends more (a resumable stream of a snapshot the receiver
    /// may hold a part of).
    pub(crate) fn new(
        reader: SnapshotReader,
        message: Message,
        tick: u64,
        resumable: bool,
        hold_for_report: Option<u64>,
    ) -> Outgoing {
        Outgoing {
            reader,
            message,
            sent: 0,
            crc: 0,
            pace: Pace::new(tick),
            finished: false,
            resumable,
            resumed: false,
            hold_for_report_until: hold_for_report
                .filter(|_| resumable)
                .map(|ticks| tick + ticks),
        }
    }

    /// How many of `chunks` it sends at `tick`: its first only while it waits for the
    /// receiver's report.
    pub(crate) fn chunks_now(&self, chunks: usize, tick: u64) -> usize {
        match self.hold_for_report_until {
            Some(until) if tick < until && !self.resumed => chunks.min(usize::from(self.sent == 0)),
            _ => chunks,
        }
    }

    pub(crate) fn lsn(&self) -> Lsn {
        self.reader.lsn()
    }

    /// Whether it resumed where its receiver reported holding the bytes.
    pub(crate) fn resumed(&self) -> bool {
        self.resumed
    }

    /// Takes its receiver's report of what it holds (`report`, a chunk without data: `offset`
    /// bytes, `crc` their checksum), if the report is of this snapshot and answers this
    /// stream's first chunk: the wait for it ends, and the stream resumes at `offset` if that
    /// is ahead of what was sent (the bytes between are neither read nor sent; the end's check
    /// covers them through the receiver's checksum). Whether it resumed.
    pub(crate) fn resume_at(&mut self, report: &SnapshotChunk, tick: u64) -> std::io::Result<bool> {
        let ours = report.lsn == self.reader.lsn()
            && report.epoch == self.reader.epoch()
            && report.total == self.reader.len();
        // A report answers this stream's first chunk: before it went, a report is an older
        // stream's, and the receiver may have dropped the part it named since.
        if !ours || !self.resumable || self.finished || self.sent == 0 {
            return Ok(false);
        }
        // The receiver holds no more than was sent: nothing to wait for.
        self.hold_for_report_until = None;
        if report.offset <= self.sent {
            return Ok(false);
        }
        self.reader.skip_to(report.offset, report.crc)?;
        self.sent = report.offset;
        self.crc = report.crc;
        self.resumed = true;
        self.pace.progressed(tick);
        Ok(true)
    }

    /// Sends up to `chunks` chunks of `chunk_bytes`, and raft's message after the last one,
    /// noting them in `pace`. An error reading the file (its checksum failed) ends the stream.
    pub(crate) fn pump(
        &mut self,
        from: NodeId,
        chunks: usize,
        chunk_bytes: usize,
        tick: u64,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let total = self.reader.len();
        let mut sent_now = 0;
        for _ in 0..chunks {
            if self.finished {
                break;
            }
            if self.sent < total {
                let want = (total - self.sent).min(chunk_bytes as u64) as usize;
                let mut data = vec![0u8; want];
                self.reader.read_exact(&mut data)?;
                if self.sent + want as u64 == total {
                    // Reading to the end checks the file's own checksum.
                    let mut rest = Vec::new();
                    self.reader.read_to_end(&mut rest)?;
                }
                self.crc = crc32c::crc32c_append(self.crc, &data);
                out.push(Envelope::SnapshotChunk(SnapshotChunk {
                    from,
                    to: self.message.to,
                    lsn: self.reader.lsn(),
                    epoch: self.reader.epoch(),
                    offset: self.sent,
                    total,
                    crc: self.crc,
                    data,
                }));
                self.sent += want as u64;
                sent_now += 1;
            } else {
                // Resumed at the end (its receiver holds every byte): what is left is the
                // check at the end of the file.
                let mut rest = Vec::new();
                self.reader.read_to_end(&mut rest)?;
            }
            if self.sent == total {
                out.push(Envelope::Raft(self.message.clone()));
                self.finished = true;
            }
        }
        self.pace.sent(sent_now, tick);
        Ok(())
    }
}

/// How a stream keeps pace with its transport ([`crate::Transport::snapshot_room`]): it sends no
/// more chunks than the transport has room for, and counts as progress the chunks it hands
/// over, the room coming back (the link carried queued chunks) and the bytes the link carried
/// (a chunk part way across a slow link). A stream whose link has not moved for the timeout is
/// stalled: a full queue that does not drain, a peer gone, or (once every chunk has left the
/// queue) a follower that does not answer.
#[derive(Debug)]
pub(crate) struct Pace {
    /// The transport's room after this stream's last sends (`usize::MAX`: not looked at yet).
    room_left: usize,
    /// The transport's count of bytes carried at the last look (`None`: not looked at yet).
    bytes_carried: Option<u64>,
    /// The tick of the last progress.
    last_progress_tick: u64,
}

impl Pace {
    pub(crate) fn new(tick: u64) -> Pace {
        Pace {
            room_left: usize::MAX,
            bytes_carried: None,
            last_progress_tick: tick,
        }
    }

    /// Notes the transport's `room` at `tick` (more than after the last sends, or other bytes
    /// carried than at the last look: the link moved) and returns how many chunks it takes.
    pub(crate) fn look(&mut self, room: SnapshotRoom, tick: u64) -> usize {
        let carried = self
            .bytes_carried
            .is_some_and(|before| before != room.bytes_carried);
        if room.chunks > self.room_left || carried {
            self.last_progress_tick = tick;
        }
        self.room_left = room.chunks;
        self.bytes_carried = Some(room.bytes_carried);
        room.chunks
    }

    /// Notes progress made at `tick` other than by the transport (a resume).
    pub(crate) fn progressed(&mut self, tick: u64) {
        self.last_progress_tick = tick;
    }

    /// Notes `chunks` handed to the transport at `tick`.
    pub(crate) fn sent(&mut self, chunks: usize, tick: u64) {
        if chunks > 0 {
            self.room_left = self.room_left.saturating_sub(chunks);
            self.last_progress_tick = tick;
        }
    }

    /// Whether nothing moved for more than `timeout` ticks.
    pub(crate) fn stalled(&self, tick: u64, timeout: u64) -> bool {
        tick - self.last_progress_tick > timeout
    }
}

/// A snapshot being received from the leader: its bytes go to a file of the log's directory as
/// they arrive ([`Wal::receive_snapshot`]), so that a snapshot of any size takes no more memory
/// than a chunk and its first bytes.
pub(crate) struct Incoming {
    from: NodeId,
    file: ReceivedSnapshot,
    /// The first bytes, up to [`HEAD_BYTES_MAX`]: what the membership is decoded from once
    /// the snapshot is complete.
    head: Vec<u8>,
    /// Where the first chunk taken ended, and the checksum it carried: a first chunk sent
    /// again that ends there with another checksum is of another file of the same snapshot
    /// (a checkpoint written again at the same LSN), and what is held goes.
    first_chunk: Option<(u64, u32)>,
}

/// A snapshot received whole and checked against its sender's running checksum.
pub(crate) struct Received {
    /// Its bytes, in their file: the log is reset to it when raft installs it.
    pub(crate) file: ReceivedSnapshot,
    /// Its first bytes, which hold the membership (`codec::decode_snapshot`).
    pub(crate) head: Vec<u8>,
}

/// How many of a snapshot's first bytes are kept in memory for its membership: far more than
/// the largest membership (`MEMBERSHIP_BYTES_MAX`).
pub(crate) const HEAD_BYTES_MAX: u64 = 64 << 10;

impl Incoming {
    /// The node sending the stream.
    pub(crate) fn from(&self) -> NodeId {
        self.from
    }

    /// The LSN of the snapshot being received.
    pub(crate) fn lsn(&self) -> Lsn {
        self.file.lsn()
    }

    /// Which snapshot this is and how much of it came: "snapshot 40 from node 1 (100 of 1000
    /// bytes)".
    pub(crate) fn progress(&self) -> String {
        format!(
            "snapshot {} from node {} ({} of {} bytes)",
            self.file.lsn(),
            self.from,
            self.file.received(),
            self.file.len()
        )
    }

    /// Refuses a first chunk (offset 0) whose bytes fail its own checksum: it carries every
    /// byte from the start, so its running checksum is theirs alone. Checked before the chunk
    /// replaces the part held.
    fn check_first_chunk(chunk: &SnapshotChunk) -> Result<(), String> {
        if crc32c::crc32c(&chunk.data) == chunk.crc {
            return Ok(());
        }
        Err(format!(
            "snapshot {} from node {}: checksum mismatch in its first chunk",
            chunk.lsn, chunk.from
        ))
    }

    /// Adds a chunk, writing its new bytes to the stream's file in `wal`'s directory; returns
    /// an error naming what is wrong with a chunk that does not continue the stream (it is
    /// dropped, and the leader will send again), or what failed writing it (the stream is
    /// dropped, its file removed). Duplicated chunks, and a stream the leader sends again from
    /// the start, only add the bytes not yet held: the network may duplicate and reorder, and
    /// a restart of the same snapshot carries the same bytes.
    pub(crate) fn accept(
        slot: &mut Option<Incoming>,
        chunk: SnapshotChunk,
        bytes_max: u64,
        wal: &Wal,
    ) -> Result<(), String> {
        if chunk.total > bytes_max {
            // Its sender moved on to this snapshot: what it sent before goes. Another
            // sender's stream (a stale leader's chunk) stays.
            if slot.as_ref().is_some_and(|i| i.from == chunk.from) {
                *slot = None;
            }
            return Err(format!(
                "snapshot of {} bytes from node {} is over the limit of {bytes_max}",
                chunk.total, chunk.from
            ));
        }
        // Checked: `offset` comes from the peer, and an end past `u64::MAX` is past any total.
        let end = chunk.offset.checked_add(chunk.data.len() as u64);
        let Some(end) = end.filter(|&end| end <= chunk.total) else {
            return Err(format!(
                "chunk at {} of snapshot {} from node {} ends past its length {}",
                chunk.offset, chunk.lsn, chunk.from, chunk.total
            ));
        };
        let same = slot.as_ref().is_some_and(|i| {
            i.is_stream(chunk.from, chunk.lsn, chunk.epoch, chunk.total)
                // The same first bytes, as far as a first chunk of the same length tells: a
                // duplicate is skipped unchecked, and a resumed stream (`Outgoing::resume_at`)
                // goes on from what is held.
                && !(chunk.offset == 0
                    && i.first_chunk.is_some_and(|(first_end, first_crc)| {
                        first_end == end && first_crc != chunk.crc
                    }))
        });
        if !same {
            if chunk.offset != 0 {
                return Err(format!(
                    "chunk at {} of snapshot {} from node {} without its start",
                    chunk.offset, chunk.lsn, chunk.from
                ));
            }
            // Before it replaces anything (it dropped the part held, found by review on
            // 2026-12-07).
            Self::check_first_chunk(&chunk)?;
            // The stream before it, if any, goes first, and its file with it.
            *slot = None;
            let file = wal
                .receive_snapshot(chunk.lsn, chunk.epoch, chunk.total)
                .map_err(|e| {
                    format!(
                        "cannot receive snapshot {} of {} bytes from node {}: {e}",
                        chunk.lsn, chunk.total, chunk.from
                    )
                })?;
            *slot = Some(Incoming {
                from: chunk.from,
                file,
                head: Vec::new(),
                first_chunk: None,
            });
        }
        let incoming = slot.as_mut().expect("set above");
        let held = incoming.file.received();
        if end <= held {
            return Ok(()); // a duplicate, or a resent chunk already held
        }
        if chunk.offset > held {
            return Err(format!(
                "chunk at {} of snapshot {} from node {} leaves a gap after {held}; dropped",
                chunk.offset, chunk.lsn, chunk.from
            ));
        }
        let new_bytes = &chunk.data[(held - chunk.offset) as usize..];
        if crc32c::crc32c_append(incoming.file.crc(), new_bytes) != chunk.crc {
            if chunk.offset == 0 && held > 0 {
                // A first chunk carries everything from the start: one whose checksum does not
                // follow from what is held (another file of the same snapshot, in chunks of
                // another size) starts the stream afresh, checked from nothing; one that
                // fails its own checksum is refused, and the part held stays (it was dropped
                // first until 2026-12-07, found by review).
                Self::check_first_chunk(&chunk)?;
                *slot = None;
                return Incoming::accept(slot, chunk, bytes_max, wal);
            }
            *slot = None;
            return Err(format!(
                "snapshot {} from node {}: checksum mismatch at {}",
                chunk.lsn, chunk.from, chunk.offset
            ));
        }
        let head_wanted = HEAD_BYTES_MAX
            .saturating_sub(held)
            .min(new_bytes.len() as u64);
        incoming
            .head
            .extend_from_slice(&new_bytes[..head_wanted as usize]);
        if let Err(e) = incoming.file.write(new_bytes) {
            *slot = None;
            return Err(format!(
                "snapshot {} from node {}: writing it failed ({e}); dropped",
                chunk.lsn, chunk.from
            ));
        }
        if chunk.offset == 0 {
            incoming.first_chunk.get_or_insert((end, chunk.crc));
        }
        Ok(())
    }

    /// How many bytes of snapshot `lsn` of `epoch`, `total` bytes long, from `from` the stream
    /// in `slot` holds, with their running checksum, if it is that stream.
    pub(crate) fn held(
        slot: &Option<Incoming>,
        from: NodeId,
        lsn: Lsn,
        epoch: u64,
        total: u64,
    ) -> Option<(u64, u32)> {
        slot.as_ref()
            .filter(|i| i.is_stream(from, lsn, epoch, total))
            .map(|i| (i.file.received(), i.file.crc()))
    }

    /// Whether this is the stream of snapshot `lsn` of `epoch`, `total` bytes long, from
    /// `from`.
    fn is_stream(&self, from: NodeId, lsn: Lsn, epoch: u64, total: u64) -> bool {
        self.from == from
            && self.file.lsn() == lsn
            && self.file.epoch() == epoch
            && self.file.len() == total
    }

    /// The snapshot, if this stream is complete and is the snapshot `lsn` of `epoch` from
    /// `from`.
    pub(crate) fn take_if(
        slot: &mut Option<Incoming>,
        from: NodeId,
        lsn: Lsn,
        epoch: u64,
    ) -> Option<Received> {
        let matches = slot.as_ref().is_some_and(|i| {
            i.file.is_complete() && i.from == from && i.file.lsn() == lsn && i.file.epoch() == epoch
        });
        if matches {
            slot.take().map(|i| Received {
                file: i.file,
                head: i.head,
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(blob: &[u8], size: usize) -> Vec<SnapshotChunk> {
        let mut out = Vec::new();
        let mut crc = 0;
        for (i, data) in blob.chunks(size).enumerate() {
            crc = crc32c::crc32c_append(crc, data);
            out.push(SnapshotChunk {
                from: 1,
                to: 2,
                lsn: 40,
                epoch: 3,
                offset: (i * size) as u64,
                total: blob.len() as u64,
                crc,
                data: data.to_vec(),
            });
        }
        out
    }

    fn blob() -> Vec<u8> {
        (0..1000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_stream_keeps_pace_with_the_room_and_stalls_only_when_nothing_moves() {
        let mut pace = Pace::new(0);
        // A full queue from the start: nothing goes; stalled after the timeout.
        assert_eq!(pace.look(room_of(0), 5), 0);
        assert!(!pace.stalled(10, 10));
        assert!(pace.stalled(11, 10));
        // Room: chunks go, and that is progress.
        assert_eq!(pace.look(room_of(3), 11), 3);
        pace.sent(3, 11);
        assert!(!pace.stalled(21, 10));
        // The queue is full again and drains one chunk every eight ticks (a slow link): each
        // drain is progress, and the stream fills the slot again at once; so it never stalls,
        // long past the timeout.
        assert_eq!(pace.look(room_of(0), 12), 0);
        for tick in (20..200).step_by(8) {
            assert_eq!(pace.look(room_of(1), tick), 1, "one chunk drained");
            pace.sent(1, tick);
            assert_eq!(pace.look(room_of(0), tick + 4), 0, "no more yet");
            assert!(!pace.stalled(tick + 4, 10));
        }
        // Every chunk handed over; the queue drains them one by one, then stays empty: from
        // then on only the follower's answer can move the stream.
        for (room, tick) in (1..=64).zip((204..).step_by(8)) {
            assert_eq!(pace.look(room_of(room), tick), room);
            assert!(!pace.stalled(tick + 7, 10));
        }
        let emptied = 204 + 63 * 8;
        assert_eq!(pace.look(room_of(64), emptied + 5), 64);
        assert!(!pace.stalled(emptied + 10, 10));
        assert!(pace.stalled(emptied + 11, 10));
        // Before the first look, any room is just the room, not progress.
        let mut fresh = Pace::new(0);
        assert_eq!(fresh.look(room_of(usize::MAX), 50), usize::MAX);
        assert!(fresh.stalled(50, 10));
    }

    #[test]
    fn a_chunk_crossing_a_slow_link_is_progress_until_the_link_stops() {
        let carried = |bytes_carried| SnapshotRoom {
            chunks: 0,
            bytes_carried,
        };
        let mut pace = Pace::new(0);
        assert_eq!(pace.look(room_of(1), 0), 1);
        pace.sent(1, 0);
        // The queue is full and its chunk takes far longer than the timeout to cross: the
        // bytes moving keep the stream alive, though no room comes back.
        for tick in 1..100 {
            assert_eq!(pace.look(carried(tick * 4096), tick), 0);
            assert!(!pace.stalled(tick, 10), "tick {tick}");
        }
        // The link stops: stalled once the timeout has passed.
        for tick in 100..=110 {
            pace.look(carried(99 * 4096), tick);
        }
        assert!(!pace.stalled(109, 10));
        assert!(pace.stalled(110, 10));
        // A peer replaced (another address) counts from 0 again: a change either way is
        // movement.
        assert_eq!(pace.look(carried(512), 111), 0);
        assert!(!pace.stalled(121, 10));
    }

    fn room_of(chunks: usize) -> SnapshotRoom {
        SnapshotRoom {
            chunks,
            bytes_carried: 0,
        }
    }

    /// A log on a simulated disk for the receiver's files.
    fn wal() -> Wal {
        Wal::open(
            "/receiver",
            rwal_wal::Options::new()
                .backend(rwal_wal::Backend::Simulated(rwal_wal::SimDisk::new()))
                .background_threads(false),
        )
        .unwrap()
    }

    /// The bytes of a snapshot received whole, read back from the checkpoint the log is reset
    /// to.
    fn bytes_of(wal: &Wal, received: Received) -> Vec<u8> {
        wal.reset_to_received(received.file).unwrap();
        let reader = wal.open_snapshot().unwrap().unwrap();
        reader.checked_bytes().unwrap().to_vec()
    }

    #[test]
    fn duplicates_and_a_restarted_stream_assemble_the_same_bytes() {
        let wal = wal();
        let blob = blob();
        let parts = chunks(&blob, 300);
        let mut slot = None;
        let max = 1 << 20;
        Incoming::accept(&mut slot, parts[0].clone(), max, &wal).unwrap();
        Incoming::accept(&mut slot, parts[1].clone(), max, &wal).unwrap();
        // The leader restarts the stream; then a duplicate of chunk 1 arrives late.
        Incoming::accept(&mut slot, parts[0].clone(), max, &wal).unwrap();
        Incoming::accept(&mut slot, parts[1].clone(), max, &wal).unwrap();
        Incoming::accept(&mut slot, parts[1].clone(), max, &wal).unwrap();
        assert!(
            Incoming::take_if(&mut slot, 1, 40, 3).is_none(),
            "not complete yet"
        );
        Incoming::accept(&mut slot, parts[2].clone(), max, &wal).unwrap();
        Incoming::accept(&mut slot, parts[3].clone(), max, &wal).unwrap();
        assert!(
            Incoming::take_if(&mut slot, 1, 40, 4).is_none(),
            "other epoch"
        );
        let received = Incoming::take_if(&mut slot, 1, 40, 3).expect("complete");
        assert_eq!(received.head, blob, "a short snapshot is all head");
        assert!(slot.is_none());
        assert_eq!(bytes_of(&wal, received), blob);
    }

    /// Another file of the same snapshot (a checkpoint written again at the same LSN, with
    /// other bytes of the same length): its first chunk, which ends where the held one did
    /// with another checksum, drops what is held and starts the stream afresh, so that
    /// neither a duplicate skipped unchecked nor a report of the held part mixes the two.
    #[test]
    fn a_first_chunk_of_other_bytes_starts_the_stream_afresh() {
        let wal = wal();
        let blob = blob();
        let mut other = blob.clone();
        other[10] ^= 1;
        let mut slot = None;
        let max = 1 << 20;
        // The other file's first chunk taken: held from it alone, and its rest completes it.
        let completes_as_other = |slot: &mut Option<Incoming>, wal: &Wal, size: usize| {
            let others = chunks(&other, size);
            Incoming::accept(slot, others[0].clone(), max, wal).unwrap();
            assert_eq!(
                Incoming::held(slot, 1, 40, 3, 1000),
                Some((size as u64, crc32c::crc32c(&other[..size])))
            );
            for part in &others[1..] {
                Incoming::accept(slot, part.clone(), max, wal).unwrap();
            }
            let received = Incoming::take_if(slot, 1, 40, 3).expect("complete");
            assert_eq!(bytes_of(wal, received), other);
        };
        for part in &chunks(&blob, 300)[..2] {
            Incoming::accept(&mut slot, part.clone(), max, &wal).unwrap();
        }
        assert_eq!(Incoming::held(&slot, 1, 40, 3, 1000).unwrap().0, 600);
        // The same first chunk again is a duplicate: what is held stays.
        Incoming::accept(&mut slot, chunks(&blob, 300)[0].clone(), max, &wal).unwrap();
        assert_eq!(Incoming::held(&slot, 1, 40, 3, 1000).unwrap().0, 600);
        // The other file's first chunk: held from it alone.
        completes_as_other(&mut slot, &wal, 300);
        // In chunks of another size, the other file's first chunk reaches past what is held
        // and its checksum does not follow from it: the stream starts afresh from it, rather
        // than being dropped with that chunk.
        let wal = self::wal();
        let mut slot = None;
        Incoming::accept(&mut slot, chunks(&blob, 300)[0].clone(), max, &wal).unwrap();
        completes_as_other(&mut slot, &wal, 400);
        // A first chunk that does not check out from nothing either is refused, once.
        let mut slot = None;
        let mut bad = chunks(&blob, 300)[0].clone();
        bad.crc ^= 1;
        assert!(Incoming::accept(&mut slot, bad, max, &wal)
            .unwrap_err()
            .contains("checksum mismatch"));
        assert!(slot.is_none());
    }

    #[test]
    fn overlapping_chunks_of_another_size_continue_the_stream() {
        let wal = wal();
        let blob = blob();
        let mut slot = None;
        Incoming::accept(&mut slot, chunks(&blob, 300)[0].clone(), 1 << 20, &wal).unwrap();
        // Resent with 400-byte chunks: the second overlaps what is held.
        for part in chunks(&blob, 400) {
            Incoming::accept(&mut slot, part, 1 << 20, &wal).unwrap();
        }
        let received = Incoming::take_if(&mut slot, 1, 40, 3).expect("complete");
        assert_eq!(bytes_of(&wal, received), blob);
    }

    /// Only the first `HEAD_BYTES_MAX` bytes stay in memory, however the chunks fall.
    #[test]
    fn a_large_snapshot_keeps_only_its_head_in_memory() {
        let wal = wal();
        let blob: Vec<u8> = (0..(HEAD_BYTES_MAX as u32 * 3 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut slot = None;
        for part in chunks(&blob, 50_000) {
            Incoming::accept(&mut slot, part, 1 << 20, &wal).unwrap();
        }
        let received = Incoming::take_if(&mut slot, 1, 40, 3).expect("complete");
        assert_eq!(received.head, &blob[..HEAD_BYTES_MAX as usize]);
        assert_eq!(bytes_of(&wal, received), blob);
    }

    #[test]
    fn gaps_bad_checksums_and_oversized_snapshots_are_refused() {
        let wal = wal();
        let blob = blob();
        let parts = chunks(&blob, 300);
        let mut slot = None;
        let max = 1 << 20;
        let e = Incoming::accept(&mut slot, parts[1].clone(), max, &wal).unwrap_err();
        assert!(e.contains("without its start"), "{e}");
        Incoming::accept(&mut slot, parts[0].clone(), max, &wal).unwrap();
        let e = Incoming::accept(&mut slot, parts[2].clone(), max, &wal).unwrap_err();
        assert!(e.contains("gap"), "{e}");
        // The gap dropped only that chunk: the stream goes on.
        Incoming::accept(&mut slot, parts[1].clone(), max, &wal).unwrap();
        // A damaged first chunk of another snapshot is refused before it replaces the part
        // held (found by review on 2026-12-07).
        let mut damaged_start = parts[0].clone();
        damaged_start.lsn = 41;
        damaged_start.data[5] ^= 1;
        let e = Incoming::accept(&mut slot, damaged_start, max, &wal).unwrap_err();
        assert!(e.contains("checksum mismatch in its first chunk"), "{e}");
        let held = slot.as_ref().map(|incoming| incoming.file.received());
        assert_eq!(held, Some(600), "the part held was dropped");
        // So is one of the same snapshot in chunks of another size (a resent stream).
        let mut damaged_resend = chunks(&blob, 700)[0].clone();
        damaged_resend.data[650] ^= 1;
        let e = Incoming::accept(&mut slot, damaged_resend, max, &wal).unwrap_err();
        assert!(e.contains("checksum mismatch in its first chunk"), "{e}");
        let held = slot.as_ref().map(|incoming| incoming.file.received());
        assert_eq!(held, Some(600), "the part held was dropped");
        let mut bad = parts[2].clone();
        bad.data[5] ^= 1;
        let e = Incoming::accept(&mut slot, bad, max, &wal).unwrap_err();
        assert!(e.contains("checksum"), "{e}");
        assert!(slot.is_none(), "a damaged stream is dropped whole");
        let e = Incoming::accept(&mut slot, parts[0].clone(), 999, &wal).unwrap_err();
        assert!(e.contains("over the limit"), "{e}");
        let mut long = parts[3].clone();
        long.data.extend_from_slice(&[0; 200]);
        Incoming::accept(&mut slot, parts[0].clone(), max, &wal).unwrap();
        let e = Incoming::accept(&mut slot, long, max, &wal).unwrap_err();
        assert!(e.contains("past its length"), "{e}");
        // An offset near the end of the number range, from a peer: refused, not an overflow
        // (which panicked in a debug build; found by review on 2026-12-03).
        let mut wrapping = parts[1].clone();
        wrapping.offset = u64::MAX - 10;
        let e = Incoming::accept(&mut slot, wrapping, max, &wal).unwrap_err();
        assert!(e.contains("past its length"), "{e}");
        // A snapshot at LSN 0, which no log can be reset to, is refused at its first chunk.
        let mut at_zero = parts[0].clone();
        at_zero.lsn = 0;
        let e = Incoming::accept(&mut slot, at_zero, max, &wal).unwrap_err();
        assert!(e.contains("cannot receive snapshot 0 of 1000 bytes"), "{e}");
        assert!(slot.is_none());
    }

    /// An oversized snapshot refused from another sender (a stale leader) leaves the stream in
    /// progress alone; one from the same sender drops it (the sender moved on).
    #[test]
    fn an_oversized_snapshot_drops_only_its_own_senders_stream() {
        let wal = wal();
        let blob = blob();
        let parts = chunks(&blob, 300);
        let mut slot = None;
        Incoming::accept(&mut slot, parts[0].clone(), 1 << 20, &wal).unwrap();
        let mut stale = parts[0].clone();
        stale.from = 3;
        stale.total = 2 << 20;
        let e = Incoming::accept(&mut slot, stale, 1 << 20, &wal).unwrap_err();
        assert!(e.contains("over the limit"), "{e}");
        for part in &parts[1..] {
            Incoming::accept(&mut slot, part.clone(), 1 << 20, &wal).unwrap();
        }
        let received = Incoming::take_if(&mut slot, 1, 40, 3).expect("complete");
        assert_eq!(bytes_of(&wal, received), blob);

        Incoming::accept(&mut slot, parts[0].clone(), 1 << 20, &wal).unwrap();
        let mut larger = parts[0].clone();
        larger.total = 2 << 20;
        Incoming::accept(&mut slot, larger, 1 << 20, &wal).unwrap_err();
        assert!(slot.is_none());
    }

    /// A stream replaced by another, or dropped, leaves no file behind in the log's directory.
    #[test]
    fn a_stream_dropped_or_replaced_removes_its_file() {
        let disk = rwal_wal::SimDisk::new();
        let wal = Wal::open(
            "/receiver",
            rwal_wal::Options::new()
                .backend(rwal_wal::Backend::Simulated(disk.clone()))
                .background_threads(false),
        )
        .unwrap();
        let temporary = || {
            disk.file_names()
                .into_iter()
                .filter(|name| name.starts_with("snapshot-") && name.ends_with(".tmp"))
                .count()
        };
        let blob = blob();
        let mut slot = None;
        Incoming::accept(&mut slot, chunks(&blob, 300)[0].clone(), 1 << 20, &wal).unwrap();
        assert_eq!(temporary(), 1);
        let mut other = chunks(&blob, 300)[0].clone();
        other.lsn = 41;
        Incoming::accept(&mut slot, other, 1 << 20, &wal).unwrap();
        assert_eq!(temporary(), 1, "the first stream's file went with it");
        drop(slot.take());
        assert_eq!(temporary(), 0);

        // A chunk that cannot be written (a full disk) drops the stream and its file.
        let parts = chunks(&blob, 300);
        Incoming::accept(&mut slot, parts[0].clone(), 1 << 20, &wal).unwrap();
        disk.fail_next_write(28); // ENOSPC
        let e = Incoming::accept(&mut slot, parts[1].clone(), 1 << 20, &wal).unwrap_err();
        assert!(e.contains("writing it failed"), "{e}");
        assert!(slot.is_none());
        assert_eq!(temporary(), 0);
        // The leader's next attempt starts over and completes.
        for part in parts {
            Incoming::accept(&mut slot, part, 1 << 20, &wal).unwrap();
        }
        let received = Incoming::take_if(&mut slot, 1, 40, 3).expect("complete");
        assert_eq!(bytes_of(&wal, received), blob);
    }
}
