//! The client protocol of `rwal node` (`docs/network.md` section 3): length-prefixed requests
//! and responses, shared by the server and `rwal client`.

use std::io::{Read, Write};

/// The largest request or response body.
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Request operations.
pub const OP_APPEND: u8 = 1;
pub const OP_READ: u8 = 2;
pub const OP_STATUS: u8 = 3;

/// Response statuses.
pub const OK: u8 = 0;
pub const NOT_LEADER: u8 = 1;
pub const ERROR: u8 = 2;
pub const RETRY: u8 = 3;

/// Read modes.
pub const READ_STALE: u8 = 0;
pub const READ_LINEARIZABLE: u8 = 1;

/// Writes one message: length (of the code and body), code, body.
pub fn write_message(out: &mut impl Write, code: u8, body: &[u8]) -> std::io::Result<()> {
    let mut message = Vec::with_capacity(5 + body.len());
    message.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
    message.push(code);
    message.extend_from_slice(body);
    out.write_all(&message)?;
    out.flush()
}

/// Reads one message; `Ok(None)` at a clean end of the stream.
pub fn read_message(input: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MESSAGE_BYTES_MAX + 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message of {len} bytes (at most {MESSAGE_BYTES_MAX} + 1)"),
        ));
    }
    let mut message = vec![0u8; len];
    input.read_exact(&mut message)?;
    let code = message[0];
    message.remove(0);
    Ok(Some((code, message)))
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

    #[test]
    fn messages_and_records_round_trip_and_bad_lengths_are_refused() {
        let mut wire = Vec::new();
        write_message(&mut wire, OP_APPEND, b"body").unwrap();
        write_message(&mut wire, OP_STATUS, b"").unwrap();
        let mut input = &wire[..];
        assert_eq!(
            read_message(&mut input).unwrap(),
            Some((OP_APPEND, b"body".to_vec()))
        );
        assert_eq!(read_message(&mut input).unwrap(), Some((OP_STATUS, vec![])));
        assert_eq!(read_message(&mut input).unwrap(), None);
        let huge = (u32::MAX).to_le_bytes();
        assert!(read_message(&mut &huge[..]).is_err());
        assert!(read_message(&mut &[0u8, 0, 0, 0][..]).is_err());

        let record = encode_record(7, 9, b"data");
        assert_eq!(decode_record(&record), Some((7, 9, &b"data"[..])));
        assert_eq!(decode_record(&record[..10]), None);
        let mut body = Body(&record);
        assert_eq!(body.u64("client").unwrap(), 7);
        assert_eq!(body.u32("x").unwrap(), 9);
        assert!(body.take(100, "data").unwrap_err().contains("data"));
    }
}
