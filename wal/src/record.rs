//! The record: the unit of the log, and its byte layout.
//!
//! ```text
//! offset size field
//!  0      4   crc32c      CRC32C over bytes 4..32 and the payload, seeded with the segment salt
//!  4      4   payload_len payload length in bytes (the padding is not counted)
//!  8      8   lsn         this record's log sequence number
//! 16      8   epoch       the epoch (consensus term) the record was written in
//! 24      4   durable_lag lsn - (durable LSN when the record was reserved); 0 = no claim (too far)
//! 28      1   kind        1 = user data, 2 = system (replication's own entries)
//! 29      3   reserved    zero
//! 32      n   payload     stored verbatim
//! 32+n    p   padding     zero bytes up to the next multiple of 8
//! ```
//!
//! All integers are little-endian. `durable_lag` lets recovery prove that an earlier record had
//! been acknowledged without a control-file write per commit (see `docs/design.md`).

use crate::Lsn;

/// Size of the record header in bytes.
pub const HEADER_BYTES: usize = 32;
/// Records start at multiples of this many bytes.
pub const ALIGN_BYTES: usize = 8;

const CRC_OFFSET: usize = 0;
const LEN_OFFSET: usize = CRC_OFFSET + 4;
const LSN_OFFSET: usize = LEN_OFFSET + 4;
const EPOCH_OFFSET: usize = LSN_OFFSET + 8;
const LAG_OFFSET: usize = EPOCH_OFFSET + 8;
const KIND_OFFSET: usize = LAG_OFFSET + 4;
const RESERVED_OFFSET: usize = KIND_OFFSET + 1;
const _: () = assert!(RESERVED_OFFSET + 3 == HEADER_BYTES);
const _: () = assert!(HEADER_BYTES % ALIGN_BYTES == 0);

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Data appended by the embedding engine.
    User,
    /// A record the replication layer writes for itself (a new leader's empty entry, a membership
    /// change). Readers report it so that callers can skip it.
    System,
}

impl RecordKind {
    fn to_byte(self) -> u8 {
        match self {
            RecordKind::User => 1,
            RecordKind::System => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::User),
            2 => Some(RecordKind::System),
            _ => None,
        }
    }
}

/// Bytes a record with `payload_len` bytes of payload occupies in a segment, padding included.
pub const fn stored_len(payload_len: usize) -> usize {
    (HEADER_BYTES + payload_len).div_ceil(ALIGN_BYTES) * ALIGN_BYTES
}

/// The decoded, checked header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub payload_len: u32,
    /// The record's LSN.
    pub lsn: Lsn,
    /// The epoch the record was written in.
    pub epoch: u64,
    /// The durable LSN known when the record was reserved: every record up to it had been
    /// acknowledged before this one existed.
    pub durable_hint: Lsn,
    /// What the record holds.
    pub kind: RecordKind,
}

impl RecordHeader {
    /// Encodes the header for `payload`, computing the checksum with `salt`.
    pub fn encode(&self, salt: u32, payload: &[u8]) -> [u8; HEADER_BYTES] {
        debug_assert_eq!(self.payload_len as usize, payload.len());
        debug_assert!(
            self.durable_hint < self.lsn,
            "a record cannot prove itself durable"
        );
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[LEN_OFFSET..LSN_OFFSET].copy_from_slice(&self.payload_len.to_le_bytes());
        bytes[LSN_OFFSET..EPOCH_OFFSET].copy_from_slice(&self.lsn.to_le_bytes());
        bytes[EPOCH_OFFSET..LAG_OFFSET].copy_from_slice(&self.epoch.to_le_bytes());
        // A lag that does not fit claims nothing rather than too much.
        let lag = u32::try_from(self.lsn - self.durable_hint).unwrap_or(0);
        bytes[LAG_OFFSET..KIND_OFFSET].copy_from_slice(&lag.to_le_bytes());
        bytes[KIND_OFFSET] = self.kind.to_byte();
        let crc = checksum(salt, &bytes, payload);
        bytes[CRC_OFFSET..LEN_OFFSET].copy_from_slice(&crc.to_le_bytes());
        bytes
    }
}

/// Why the bytes at a position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The header is all zero: nothing was ever written here (the clean end of a segment).
    Empty,
    /// The length field points past the end of the segment.
    BadLength {
        /// The stored checksum.
        stored_crc: u32,
    },
    /// The checksum does not match the bytes.
    Checksum {
        /// The stored checksum.
        stored_crc: u32,
        /// The checksum of the bytes present.
        computed_crc: u32,
    },
    /// The checksum matches but a field is impossible (unknown kind, nonzero reserved bytes).
    BadField {
        /// The stored (and matching) checksum.
        stored_crc: u32,
    },
}

impl Invalid {
    /// The checksum stored in the header.
    pub fn stored_crc(&self) -> u32 {
        match *self {
            Invalid::Empty => 0,
            Invalid::BadLength { stored_crc }
            | Invalid::Checksum { stored_crc, .. }
            | Invalid::BadField { stored_crc } => stored_crc,
        }
    }

    /// The checksum of the bytes as found (the stored one where the length made it uncomputable).
    pub fn computed_crc(&self) -> u32 {
        match *self {
            Invalid::Checksum { computed_crc, .. } => computed_crc,
            other => other.stored_crc(),
        }
    }
}

/// Decodes and verifies the record at the start of `bytes` (which runs to the end of the
/// segment), returning its header and payload.
pub fn decode(salt: u32, bytes: &[u8]) -> Result<(RecordHeader, &[u8]), Invalid> {
    decode_with(Some(salt), bytes)
}

/// Like [`decode`] but without computing the checksum: for a record whose bytes [`decode`]
/// accepted before and which nothing can have written since (recovery verifies segments on
/// several threads first, then walks them in log order: `first_pass`), or for a reader told
/// not to check checksums again (`Reader::set_verify_checksums`).
pub(crate) fn decode_verified(bytes: &[u8]) -> Result<(RecordHeader, &[u8]), Invalid> {
    decode_with(None, bytes)
}

/// The payload length of the record header `header` if its fields, checksum aside, are ones a
/// record may have (a known kind, reserved bytes clear, a lag no larger than its LSN): a cheap
/// look before a checksum over the payload, where many places must be tried (recovery's search
/// for records behind an all-zero header).
pub(crate) fn plausible_payload_len(header: &[u8; HEADER_BYTES]) -> Option<u32> {
    let lsn = read_u64(header, LSN_OFFSET);
    let lag = read_u32(header, LAG_OFFSET);
    let plausible = RecordKind::from_byte(header[KIND_OFFSET]).is_some()
        && header[RESERVED_OFFSET..].iter().all(|&b| b == 0)
        && u64::from(lag) <= lsn;
    plausible.then(|| read_u32(header, LEN_OFFSET))
}

/// Decodes the record at the start of `bytes`, checking its checksum if given the salt.
fn decode_with(salt: Option<u32>, bytes: &[u8]) -> Result<(RecordHeader, &[u8]), Invalid> {
    let header: &[u8; HEADER_BYTES] = match bytes.get(..HEADER_BYTES) {
        Some(h) => h.try_into().expect("slice of HEADER_BYTES"),
        None => return Err(Invalid::Empty),
    };
    if header.iter().all(|&b| b == 0) {
        return Err(Invalid::Empty);
    }
    let stored_crc = read_u32(header, CRC_OFFSET);
    let payload_len = read_u32(header, LEN_OFFSET);
    let payload = match bytes.get(HEADER_BYTES..HEADER_BYTES + payload_len as usize) {
        Some(p) => p,
        None => return Err(Invalid::BadLength { stored_crc }),
    };
    if let Some(salt) = salt {
        let computed_crc = checksum(salt, header, payload);
        if computed_crc != stored_crc {
            return Err(Invalid::Checksum {
                stored_crc,
                computed_crc,
            });
        }
    }
    let lsn = read_u64(header, LSN_OFFSET);
    let lag = read_u32(header, LAG_OFFSET);
    let kind = RecordKind::from_byte(header[KIND_OFFSET]);
    let reserved_clear = header[RESERVED_OFFSET..].iter().all(|&b| b == 0);
    let (Some(kind), true, true) = (kind, reserved_clear, u64::from(lag) <= lsn) else {
        return Err(Invalid::BadField { stored_crc });
    };
    let decoded = RecordHeader {
        payload_len,
        lsn,
        epoch: read_u64(header, EPOCH_OFFSET),
        durable_hint: if lag == 0 { 0 } else { lsn - u64::from(lag) },
        kind,
    };
    Ok((decoded, payload))
}

/// The payload length a header claims, checked or not (recovery uses it to look past a damaged
/// record for later ones that prove it had been acknowledged).
pub fn claimed_payload_len(bytes: &[u8]) -> Option<u32> {
    bytes
        .get(LEN_OFFSET..LSN_OFFSET)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// Checksum of a header (its first four bytes excluded) and payload, seeded with the salt.
fn checksum(salt: u32, header: &[u8; HEADER_BYTES], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(salt, &header[LEN_OFFSET..]);
    crc32c::crc32c_append(crc, payload)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lsn: Lsn, len: usize) -> RecordHeader {
        RecordHeader {
            payload_len: len as u32,
            lsn,
            epoch: 7,
            durable_hint: lsn - 1,
            kind: RecordKind::User,
        }
    }

    fn encode(salt: u32, lsn: Lsn, payload: &[u8], room: usize) -> Vec<u8> {
        let mut buf = vec![0u8; room];
        buf[..HEADER_BYTES].copy_from_slice(&header(lsn, payload.len()).encode(salt, payload));
        buf[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(payload);
        buf
    }

    #[test]
    fn round_trip() {
        let buf = encode(99, 5, b"hello", 64);
        let (h, p) = decode(99, &buf).unwrap();
        assert_eq!(h, header(5, 5));
        assert_eq!(p, b"hello");
    }

    #[test]
    fn stored_len_is_aligned() {
        assert_eq!(stored_len(0), 32);
        assert_eq!(stored_len(1), 40);
        assert_eq!(stored_len(8), 40);
        assert_eq!(stored_len(9), 48);
    }

    #[test]
    fn another_salt_fails() {
        let buf = encode(1, 5, b"hello", 64);
        assert!(matches!(decode(2, &buf), Err(Invalid::Checksum { .. })));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let buf = encode(3, 9, b"payload bytes", 64);
        for bit in 0..(HEADER_BYTES + 13) * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(3, &damaged).is_err(),
                "bit {bit} flip went unnoticed"
            );
        }
    }

    #[test]
    fn zeros_are_empty_and_short_length_is_bad() {
        assert_eq!(decode(1, &[0u8; 64]), Err(Invalid::Empty));
        let buf = encode(1, 5, &[7u8; 40], 80);
        assert!(matches!(
            decode(1, &buf[..60]),
            Err(Invalid::BadLength { .. })
        ));
    }

    #[test]
    fn a_lag_too_large_claims_nothing() {
        let mut h = header(u64::from(u32::MAX) + 10, 0);
        h.durable_hint = 1;
        let buf = h.encode(0, &[]);
        let (decoded, _) = decode(0, &buf).unwrap();
        // It may only under-claim durability, never over-claim it.
        assert_eq!(decoded.durable_hint, 0);
        let near = header(u64::from(u32::MAX) + 10, 0);
        let (decoded, _) = decode(0, &near.encode(0, &[])).unwrap();
        assert_eq!(decoded.durable_hint, near.durable_hint);
    }
}
