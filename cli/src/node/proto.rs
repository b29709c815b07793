//! The client protocol of `rwal node` (`docs/network.md` section 3): length-prefixed requests
//! and responses, shared by the server and `rwal client`.

use std::io::{Read, Write};

/// The largest response body (a READ reply: at most 16 MiB of records with their headers, or
/// one larger record).
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// The largest request body: an APPEND of the largest record a node accepts (16 MiB by
/// default: the two ids and the data), with 16 bytes to spare (a node refuses a record over its
/// limit with the reason, an APPEND over this one by closing the connection).
pub const REQUEST_BYTES_MAX: usize = (16 << 20) + 16;
/// A message's bytes are read into memory this much at a time: a peer that announces a large
/// message and sends little of it holds little.
const READ_PIECE_BYTES: usize = 64 << 10;

/// The first four bytes of the peer protocol's messages (`RWALPEER`, `docs/network.md`
/// section 1.1): where a length is expected they announce over a gigabyte, so they are named
/// instead. A node's peer port answers a client's request with them, and a peer that dials a
/// client port sends them.
const PEER_MAGIC_START: &[u8; 4] = b"RWAL";
/// The error (inside an `InvalidData` `io::Error`) of a message that begins with
/// [`PEER_MAGIC_START`]: a type of its own, so that `rwal client` can tell it from other
/// garbage and name the peer port.
#[derive(Debug)]
pub struct PeerProtocol;

impl std::fmt::Display for PeerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the other side speaks the rwal peer protocol: a peer port and a client port were \
             confused",
        )
    }
}

impl std::error::Error for PeerProtocol {}

impl PeerProtocol {
    /// Whether `e` is this error.
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<PeerProtocol>())
    }
}

/// Request operations.
pub const OP_APPEND: u8 = 1;
pub const OP_READ: u8 = 2;
pub const OP_STATUS: u8 = 3;
pub const OP_MEMBERSHIP: u8 = 4;

/// Membership changes (`OP_MEMBERSHIP`).
pub const MEMBERSHIP_ADD_VOTER: u8 = 1;
pub const MEMBERSHIP_ADD_LEARNER: u8 = 2;
pub const MEMBERSHIP_REMOVE: u8 = 3;

/// Response statuses.
pub const OK: u8 = 0;
pub const NOT_LEADER: u8 = 1;
pub const ERROR: u8 = 2;
pub const RETRY: u8 = 3;
/// The node made nothing of the request (busy, stopping): the same request may be sent again,
/// to this node or another. Only MEMBERSHIP is answered with it: a client must not send a
/// change twice after a RETRY, whose outcome may be unknown. An APPEND in the same case is
/// answered RETRY, as before this status existed: its ids make a second copy harmless, and a
/// client of before takes any status above RETRY for another protocol.
pub const NOT_MADE: u8 = 4;

/// Read modes.
pub const READ_STALE: u8 = 0;
pub const READ_LINEARIZABLE: u8 = 1;

/// The first bytes of a message whose body is `body_len` bytes long: its length (of the code
/// and body) and its code.
pub fn message_header(code: u8, body_len: usize) -> [u8; 5] {
    let [a, b, c, d] = ((body_len + 1) as u32).to_le_bytes();
    [a, b, c, d, code]
}

/// Writes one message: length (of the code and body), code, body.
pub fn write_message(out: &mut impl Write, code: u8, body: &[u8]) -> std::io::Result<()> {
    let mut message = Vec::with_capacity(5 + body.len());
    message.extend_from_slice(&message_header(code, body.len()));
    message.extend_from_slice(body);
    out.write_all(&message)?;
    out.flush()
}

/// Reads one message whose body is at most `body_max` bytes; `Ok(None)` at a clean end of the
/// stream (before a message's first byte). A stream that ends inside a message is an
/// `UnexpectedEof` error (the other side went away: a retry may work); a length out of bounds
/// is `InvalidData` (the other side does not speak this protocol).
pub fn read_message(
    input: &mut impl Read,
    body_max: usize,
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let message = read_message_holding(input, body_max, 0, |_| Ok(Some(())))?;
    Ok(message.map(|(code, body, _)| (code, body)))
}

/// A message read by [`read_message_holding`]: its code, its body, and what `hold` returned.
pub type Held<H> = (u8, Vec<u8>, Option<H>);

/// [`read_message`], calling `hold` with the message's length once it is known and its first
/// `first_bytes` (or all, if fewer) have arrived, before the rest is read (a server keeps its
/// memory budget that way: a client that announces a large message and sends nothing holds
/// none of it). If `hold` returns `Some`, the message is read and returned with it; if `None`,
/// the message's bytes are read and dropped, and its code is returned with an empty body (the
/// server can still answer it).
pub fn read_message_holding<H>(
    input: &mut impl Read,
    body_max: usize,
    first_bytes: usize,
    hold: impl FnOnce(usize) -> std::io::Result<Option<H>>,
) -> std::io::Result<Option<Held<H>>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let cut = |what: String| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what);
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(cut(format!("the stream ended {got} bytes into a length"))),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if &len == PEER_MAGIC_START {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            PeerProtocol,
        ));
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > body_max + 1 {
        return Err(invalid(format!(
            "a message of {len} bytes (at most {body_max} + 1)"
        )));
    }
    // Grown as the bytes arrive, not allocated at the announced length; the code byte at least
    // comes before `hold` is asked.
    let mut message = Vec::with_capacity(len.min(READ_PIECE_BYTES));
    let first = len.min(first_bytes.max(1));
    let read = input.take(first as u64).read_to_end(&mut message)?;
    if read < first {
        return Err(cut(format!(
            "the stream ended {read} bytes into a message of {len}"
        )));
    }
    let held = hold(len)?;
    if held.is_none() {
        message.truncate(1);
        message.shrink_to_fit();
        let rest = (len - first) as u64;
        let dropped = std::io::copy(&mut input.take(rest), &mut std::io::sink())?;
        if dropped < rest {
            return Err(cut(format!(
                "the stream ended {} bytes into a message of {len}",
                first as u64 + dropped
            )));
        }
        return Ok(Some((message[0], Vec::new(), None)));
    }
    // Room for exactly the rest: `read_to_end` grows a vector by doubling, and a request of
    // 16 MiB and a byte took 32 MiB where `hold` had counted 16.
    message.reserve_exact(len - message.len());
    let read = input.take((len - first) as u64).read_to_end(&mut message)?;
    if first + read < len {
        return Err(cut(format!(
            "the stream ended {} bytes into a message of {len}",
            first + read
        )));
    }
    let code = message[0];
    message.remove(0);
    Ok(Some((code, message, held)))
}

/// Takes little-endian integers and the rest off a body.
pub struct Body<'a>(pub &'a [u8]);

impl<'a> Body<'a> {
    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("the message ends before its {what}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub fn rest(self) -> &'a [u8] {
        self.0
    }

    /// Nothing is left after the fields of `what`: bytes left over say that the sender speaks
    /// another version of the message.
    pub fn end(self, what: &str) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(format!("bytes left over after the fields of {what}: {n}")),
        }
    }
}

/// The record a client's append is stored as: client id, request id, data.
pub fn encode_record(client: u64, request: u64, data: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(16 + data.len());
    record.extend_from_slice(&client.to_le_bytes());
    record.extend_from_slice(&request.to_le_bytes());
    record.extend_from_slice(data);
    record
}

/// Client id, request id and data of a stored record.
pub fn decode_record(record: &[u8]) -> Option<(u64, u64, &[u8])> {
    if record.len() < 16 {
        return None;
    }
    let client = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
    let request = u64::from_le_bytes(record[8..16].try_into().expect("8 bytes"));
    Some((client, request, &record[16..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message's body takes the memory its length says, which is what a server's budget
    /// counts (`hold`), not up to twice that.
    #[test]
    fn a_message_held_takes_no_more_memory_than_its_length() {
        for len in [READ_PIECE_BYTES + 1, (1 << 20) + 1, (16 << 20) + 1] {
            let mut wire = Vec::new();
            write_message(&mut wire, OP_APPEND, &vec![5; len - 1]).unwrap();
            let held = read_message_holding(&mut &wire[..], 16 << 20, 4096, |n| {
                assert_eq!(n, len);
                Ok(Some(()))
            })
            .unwrap()
            .unwrap();
            assert_eq!(held.1.len(), len - 1);
            assert!(held.1.capacity() <= len, "{} for {len}", held.1.capacity());
        }
    }

    #[test]
    fn messages_and_records_round_trip_and_bad_lengths_are_refused() {
        let mut wire = Vec::new();
        write_message(&mut wire, OP_APPEND, b"body").unwrap();
        write_message(&mut wire, OP_STATUS, b"").unwrap();
        let mut input = &wire[..];
        assert_eq!(
            read_message(&mut input, 4).unwrap(),
            Some((OP_APPEND, b"body".to_vec()))
        );
        assert_eq!(
            read_message(&mut input, 4).unwrap(),
            Some((OP_STATUS, vec![]))
        );
        assert_eq!(read_message(&mut input, 4).unwrap(), None);
        let huge = (u32::MAX).to_le_bytes();
        assert!(read_message(&mut &huge[..], RESPONSE_BYTES_MAX).is_err());
        assert!(read_message(&mut &[0u8, 0, 0, 0][..], 4).is_err());
        // Over the reader's bound, and a stream cut in a length or in a body.
        // A bad length is another protocol (`InvalidData`); a cut stream is a lost peer
        // (`UnexpectedEof`), which a client retries.
        use std::io::ErrorKind::{InvalidData, UnexpectedEof};
        let refused = read_message(&mut &wire[..], 3).unwrap_err();
        assert!(refused.to_string().contains("at most 3"), "{refused}");
        assert_eq!(refused.kind(), InvalidData);
        let cut = read_message(&mut &wire[..2], 4).unwrap_err();
        assert!(cut.to_string().contains("2 bytes into a length"), "{cut}");
        assert_eq!(cut.kind(), UnexpectedEof);
        let cut = read_message(&mut &wire[..7], 4).unwrap_err();
        assert!(
            cut.to_string().contains("3 bytes into a message of 5"),
            "{cut}"
        );
        assert_eq!(cut.kind(), UnexpectedEof);
        // The peer protocol's magic, where a length should be, is named.
        let peer = read_message(&mut &b"RWALPEER"[..], RESPONSE_BYTES_MAX).unwrap_err();
        assert_eq!(peer.kind(), InvalidData);
        assert!(PeerProtocol::is(&peer), "{peer}");
        assert!(!PeerProtocol::is(&refused), "{refused}");

        let record = encode_record(7, 9, b"data");
        assert_eq!(decode_record(&record), Some((7, 9, &b"data"[..])));
        assert_eq!(decode_record(&record[..10]), None);
        let mut body = Body(&record);
        assert_eq!(body.u64("client").unwrap(), 7);
        assert_eq!(body.u32("x").unwrap(), 9);
        assert!(body.take(100, "data").unwrap_err().contains("data"));
    }
}
