//! Frames on an authenticated peer connection (`docs/network.md` section 1.2): a 16-byte header
//! (length, kind, sequence), the payload, and a 16-byte HMAC tag over both under the session key.

use std::io::{Read, Write};

use protobuf::Message as _;
use raft::eraftpb::Message;

use super::auth::{self, SessionKey};
use crate::transport::SnapshotChunk;

/// The largest payload a frame may carry.
pub(crate) const FRAME_PAYLOAD_MAX: usize = 128 << 20;
const HEADER_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
/// A frame's payload buffer is allocated up to this size at once; beyond it, as bytes arrive.
const PAYLOAD_PREALLOCATED_MAX: usize = 64 << 10;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A batch of raft messages.
    Raft = 1,
    /// One snapshot chunk.
    Chunk = 2,
    /// Nothing: sent on an idle connection so that the receiver can tell it from a dead one.
    Keepalive = 3,
}

impl Kind {
    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            1 => Kind::Raft,
            2 => Kind::Chunk,
            3 => Kind::Keepalive,
            _ => return None,
        })
    }
}

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The connection failed or closed.
    Io(std::io::Error),
    /// The bytes are not a valid frame of this session: the connection must be closed.
    Bad(String),
}

/// Writes frames with consecutive sequence numbers.
pub(crate) struct FrameWriter {
    key: SessionKey,
    seq: u64,
}

impl FrameWriter {
    pub(crate) fn new(key: SessionKey) -> FrameWriter {
        FrameWriter { key, seq: 0 }
    }

    /// Writes one frame (not flushed).
    pub(crate) fn write(
        &mut self,
        out: &mut impl Write,
        kind: Kind,
        payload: &[u8],
    ) -> std::io::Result<()> {
        if payload.len() > FRAME_PAYLOAD_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a frame of {} bytes is over the limit of {FRAME_PAYLOAD_MAX}",
                    payload.len()
                ),
            ));
        }
        let header = header(payload.len(), kind, self.seq);
        let tag = auth::hmac(&self.key, &[&header, payload]);
        out.write_all(&header)?;
        out.write_all(payload)?;
        out.write_all(&tag[..TAG_BYTES])?;
        self.seq += 1;
        Ok(())
    }
}

fn header(len: usize, kind: Kind, seq: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = kind as u8;
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header
}

/// Reads frames and checks their sequence and tag.
pub(crate) struct FrameReader {
    key: SessionKey,
    seq: u64,
}

impl FrameReader {
    pub(crate) fn new(key: SessionKey) -> FrameReader {
        FrameReader { key, seq: 0 }
    }

    /// The next frame's kind and payload.
    pub(crate) fn read(&mut self, input: &mut impl Read) -> Result<(Kind, Vec<u8>), FrameError> {
        let mut header = [0u8; HEADER_BYTES];
        // The connection's end before a frame's first byte is a close (`UnexpectedEof`, which
        // the receiver does not log); after it, a frame cut short, which it does.
        if read_some(input, &mut header[..1]).map_err(FrameError::Io)? == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        input
            .read_exact(&mut header[1..])
            .map_err(|e| self.cut_short(e))?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len > FRAME_PAYLOAD_MAX {
            return Err(FrameError::Bad(format!(
                "frame of {len} bytes is over the limit of {FRAME_PAYLOAD_MAX}"
            )));
        }
        // The length is not authenticated until the tag: memory grows with the bytes that
        // arrive, not with what the header claims.
        let mut payload = Vec::with_capacity(len.min(PAYLOAD_PREALLOCATED_MAX));
        input
            .by_ref()
            .take(len as u64)
            .read_to_end(&mut payload)
            .map_err(FrameError::Io)?;
        if payload.len() < len {
            return Err(self.cut_short(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let mut tag = [0u8; TAG_BYTES];
        input.read_exact(&mut tag).map_err(|e| self.cut_short(e))?;
        // The tag first: a frame damaged on the way (any byte of its header included) is
        // reported as damaged, not as a replay or an unknown kind, which would send an
        // operator looking for an attack or a bug (found by review on 2026-12-07). What follows
        // is checked on frames this session's peer sent.
        if !auth::verify(&self.key, &[&header, &payload], &tag) {
            return Err(FrameError::Bad(format!(
                "frame {} does not authenticate (damaged, or not from this session)",
                self.seq
            )));
        }
        let Some(kind) = Kind::from_code(header[4]) else {
            return Err(FrameError::Bad(format!("unknown frame kind {}", header[4])));
        };
        if header[5..8] != [0, 0, 0] {
            return Err(FrameError::Bad("reserved header bytes are not zero".into()));
        }
        let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if seq != self.seq {
            return Err(FrameError::Bad(format!(
                "frame sequence {seq} where {} was due (replayed, dropped or reordered)",
                self.seq
            )));
        }
        self.seq += 1;
        Ok((kind, payload))
    }
}

impl FrameReader {
    /// A read inside a frame that failed: the connection's end there is a frame cut short (a
    /// peer that died or was cut off mid-write), said as such rather than as a clean close.
    fn cut_short(&self, e: std::io::Error) -> FrameError {
        if e.kind() != std::io::ErrorKind::UnexpectedEof {
            return FrameError::Io(e);
        }
        FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!(
                "the connection ended inside frame {}, which is lost (the peer stopped or \
                 was cut off mid-write)",
                self.seq
            ),
        ))
    }
}

/// One read into `buf` (non-empty), retried if interrupted: 0 at the end of the input.
fn read_some(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            outcome => return outcome,
        }
    }
}

/// A batch of raft messages: a count, then each message's length and protobuf bytes.
pub(crate) fn encode_raft_batch(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    for message in messages {
        let bytes = message
            .write_to_bytes()
            .expect("encoding a raft message to memory cannot fail");
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// The messages of a raft batch of at most `messages_max` messages (a sender's queue holds no
/// more: a larger count, even from a member, is refused before anything is decoded, since a
/// frame of empty messages would otherwise decode to hundreds of bytes of memory per byte).
pub(crate) fn decode_raft_batch(
    mut payload: &[u8],
    messages_max: usize,
) -> Result<Vec<Message>, String> {
    let count = take_u32(&mut payload)? as usize;
    if count > messages_max {
        return Err(format!(
            "a raft batch of {count} messages (at most {messages_max})"
        ));
    }
    let mut messages = Vec::with_capacity(count.min(4096));
    for i in 0..count {
        let len = take_u32(&mut payload)? as usize;
        if payload.len() < len {
            return Err(format!("raft message {i} of {count} is cut short"));
        }
        let message = Message::parse_from_bytes(&payload[..len])
            .map_err(|e| format!("raft message {i} of {count} does not decode: {e}"))?;
        messages.push(message);
        payload = &payload[len..];
    }
    if !payload.is_empty() {
        return Err(format!(
            "{} bytes after the last raft message",
            payload.len()
        ));
    }
    Ok(messages)
}

/// A snapshot chunk: its fields, then the data to the end.
pub(crate) fn encode_chunk(chunk: &SnapshotChunk) -> Vec<u8> {
    let mut out = Vec::with_capacity(52 + chunk.data.len());
    for field in [
        chunk.from,
        chunk.to,
        chunk.lsn,
        chunk.epoch,
        chunk.offset,
        chunk.total,
    ] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&chunk.crc.to_le_bytes());
    out.extend_from_slice(&chunk.data);
    out
}

/// The chunk in a payload.
pub(crate) fn decode_chunk(mut payload: &[u8]) -> Result<SnapshotChunk, String> {
    let mut fields = [0u64; 6];
    for field in &mut fields {
        *field = take_u64(&mut payload)?;
    }
    let crc = take_u32(&mut payload)?;
    let [from, to, lsn, epoch, offset, total] = fields;
    Ok(SnapshotChunk {
        from,
        to,
        lsn,
        epoch,
        offset,
        total,
        crc,
        data: payload.to_vec(),
    })
}

fn take_u32(payload: &mut &[u8]) -> Result<u32, String> {
    if payload.len() < 4 {
        return Err("payload cut short".into());
    }
    let value = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
    *payload = &payload[4..];
    Ok(value)
}

fn take_u64(payload: &mut &[u8]) -> Result<u64, String> {
    if payload.len() < 8 {
        return Err("payload cut short".into());
    }
    let value = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    *payload = &payload[8..];
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    fn frames(kinds: &[(Kind, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = FrameWriter::new([9; 32]);
        for (kind, payload) in kinds {
            writer.write(&mut out, *kind, payload).unwrap();
        }
        out
    }

    #[test]
    fn frames_round_trip_in_sequence() {
        let bytes = frames(&[
            (Kind::Raft, b"one"),
            (Kind::Keepalive, b""),
            (Kind::Chunk, b"3"),
        ]);
        let mut reader = FrameReader::new([9; 32]);
        let mut input = &bytes[..];
        assert_eq!(
            reader.read(&mut input).unwrap(),
            (Kind::Raft, b"one".to_vec())
        );
        assert_eq!(reader.read(&mut input).unwrap(), (Kind::Keepalive, vec![]));
        assert_eq!(
            reader.read(&mut input).unwrap(),
            (Kind::Chunk, b"3".to_vec())
        );
        assert!(matches!(reader.read(&mut input), Err(FrameError::Io(_))));
    }

    #[test]
    fn the_end_between_frames_is_a_close_and_inside_one_is_said() {
        let bytes = frames(&[(Kind::Raft, b"one"), (Kind::Raft, b"two")]);
        let first = bytes.len() / 2;
        for end in first..bytes.len() {
            let mut reader = FrameReader::new([9; 32]);
            let mut input = &bytes[..end];
            assert_eq!(
                reader.read(&mut input).unwrap(),
                (Kind::Raft, b"one".to_vec())
            );
            match reader.read(&mut input) {
                Err(FrameError::Io(e)) if end == first => {
                    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}")
                }
                Err(FrameError::Io(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted, "{e}");
                    assert!(e.to_string().contains("inside frame 1"), "{e}");
                }
                other => panic!("cut at {end}: {other:?}"),
            }
        }
    }

    fn bad(bytes: &[u8], key: SessionKey) -> String {
        match FrameReader::new(key).read(&mut &bytes[..]) {
            Err(FrameError::Bad(reason)) => reason,
            other => panic!("expected a bad frame, got {other:?}"),
        }
    }

    #[test]
    fn damaged_foreign_replayed_and_oversized_frames_are_refused() {
        let bytes = frames(&[(Kind::Raft, b"payload")]);
        let mut refused = 0;
        for at in [0usize, 4, 9, 16, 20, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            let reason = match FrameReader::new([9; 32]).read(&mut &damaged[..]) {
                Err(FrameError::Bad(reason)) => reason,
                Err(FrameError::Io(_)) => continue, // a longer length runs past the end
                Ok(_) => panic!("a flip at byte {at} went unnoticed"),
            };
            assert!(!reason.is_empty());
            refused += 1;
        }
        // Only the flip in the length may run past the end; every other one is refused.
        assert!(refused >= 5, "{refused} flips refused");
        assert!(bad(&bytes, [8; 32]).contains("does not authenticate"));
        // The second frame of a session replayed as the first.
        let two = frames(&[(Kind::Raft, b"a"), (Kind::Raft, b"b")]);
        let second = &two[two.len() / 2..];
        assert!(bad(second, [9; 32]).contains("sequence 1 where 0 was due"));
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(bad(&huge, [9; 32]).contains("over the limit"));
        let mut kind = bytes.clone();
        kind[4] = 77;
        assert!(bad(&kind, [9; 32]).contains("does not authenticate"));
        // Damage to the sequence number is reported as damage, not as a replay: the tag is
        // checked first (before, this said "sequence 16777216 where 0 was due").
        let mut seq = bytes.clone();
        seq[11] ^= 1;
        assert!(bad(&seq, [9; 32]).contains("frame 0 does not authenticate"));
        // Authenticated frames of the session whose kind or reserved bytes are not this
        // version's (a bug in the sender) are refused by what is wrong with them.
        let signed = |header: [u8; HEADER_BYTES]| {
            let tag = auth::hmac(&[9; 32], &[&header, b"payload"]);
            [&header[..], b"payload", &tag[..TAG_BYTES]].concat()
        };
        let mut header = header(7, Kind::Raft, 0);
        header[4] = 77;
        assert!(bad(&signed(header), [9; 32]).contains("unknown frame kind 77"));
        header[4] = Kind::Raft as u8;
        header[6] = 1;
        assert!(bad(&signed(header), [9; 32]).contains("reserved header bytes"));
    }

    /// Serves `bytes`, then the end of the stream; notes the largest buffer a read asked to fill.
    struct Trickle<'a> {
        bytes: &'a [u8],
        largest_read: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.largest_read = self.largest_read.max(buf.len());
            self.bytes.read(buf)
        }
    }

    #[test]
    fn a_frame_claiming_more_than_arrives_allocates_as_the_bytes_arrive() {
        let mut claimed = header(FRAME_PAYLOAD_MAX, Kind::Raft, 0).to_vec();
        claimed.extend_from_slice(&[7; 1000]);
        let mut input = Trickle {
            bytes: &claimed,
            largest_read: 0,
        };
        let outcome = FrameReader::new([9; 32]).read(&mut input);
        assert!(
            matches!(&outcome, Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted),
            "{outcome:?}"
        );
        // A buffer of the claimed 128 MiB would have been handed to the first read.
        assert!(
            input.largest_read <= PAYLOAD_PREALLOCATED_MAX,
            "a read of {} bytes for 1000 that arrived",
            input.largest_read
        );
    }

    #[test]
    fn raft_batches_and_chunks_round_trip() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.index = 77;
        let batch = vec![m.clone(), Message::default(), m];
        let bytes = encode_raft_batch(&batch);
        assert_eq!(decode_raft_batch(&bytes, 3).unwrap(), batch);
        assert!(decode_raft_batch(&bytes[..bytes.len() - 1], 3).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_raft_batch(&extra, 3)
            .unwrap_err()
            .contains("after the last"));
        // More messages than a sender's queue holds is refused before any is decoded.
        assert!(decode_raft_batch(&bytes, 2)
            .unwrap_err()
            .contains("3 messages (at most 2)"));

        let chunk = SnapshotChunk {
            from: 1,
            to: 3,
            lsn: 40,
            epoch: 2,
            offset: 1 << 20,
            total: 3 << 20,
            crc: 0xdead_beef,
            data: vec![5; 100],
        };
        assert_eq!(decode_chunk(&encode_chunk(&chunk)).unwrap(), chunk);
        assert!(decode_chunk(&encode_chunk(&chunk)[..20]).is_err());
    }
}
