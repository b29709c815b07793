//! The segment: a preallocated file of records, and its header.
//!
//! ```text
//! offset size field
//!  0      8   magic          b"RWALSEG\x01"
//!  8      4   format_version FORMAT_VERSION
//! 12      4   salt           seeds every record checksum in this segment; new for each use
//! 16      8   sequence       the segment's position in the log; also its file name
//! 24      8   first_lsn      LSN of the first record stored in it
//! 32      8   segment_bytes  the file's size, fixed when it was created
//! 40     20   reserved       zero
//! 60      4   header_crc     CRC32C of bytes 0..60
//! 64   4032   unused         zero, so that records start on a 4 KiB boundary
//! 4096    -   records        back to back, each 8-byte aligned, never spanning segments
//! ```
//!
//! A file whose first 64 bytes are zero is a *prepared* segment: created and allocated ahead of
//! need, but not yet holding records. Files are named `<sequence, 20 decimal digits>.seg` so that
//! `ls` lists them in log order.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::io::File;
use crate::record;
use crate::Lsn;

/// Bytes reserved for the segment header; records start here.
pub const HEADER_REGION_BYTES: u64 = 4096;
/// The first `HEADER_BYTES` of the region hold the header fields.
pub const HEADER_BYTES: usize = 64;
/// Magic bytes at the start of every segment.
pub const MAGIC: [u8; 8] = *b"RWALSEG\x01";
/// The segment format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Smallest segment size accepted.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
/// Largest segment size accepted (offsets inside a segment are kept in `u32`).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 31;
/// One sparse-index entry every this many records.
pub const INDEX_STRIDE: u64 = 64;
/// The block `Segment::nonzero_len_from` reads at a time: `IoUring`'s block, so that each read
/// is served one way (its staging memory or the file), never both.
const SCAN_BLOCK_BYTES: u64 = 4096;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const SALT_OFFSET: usize = VERSION_OFFSET + 4;
const SEQUENCE_OFFSET: usize = SALT_OFFSET + 4;
const FIRST_LSN_OFFSET: usize = SEQUENCE_OFFSET + 8;
const SIZE_OFFSET: usize = FIRST_LSN_OFFSET + 8;
const RESERVED_OFFSET: usize = SIZE_OFFSET + 8;
const CRC_OFFSET: usize = 60;
const _: () = assert!(RESERVED_OFFSET + 20 == CRC_OFFSET);
const _: () = assert!(CRC_OFFSET + 4 == HEADER_BYTES);
const _: () = assert!(HEADER_BYTES as u64 <= HEADER_REGION_BYTES);
const _: () = assert!(HEADER_REGION_BYTES % record::ALIGN_BYTES as u64 == 0);
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64 + 1);

/// The decoded fields of a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Seeds the record checksums.
    pub salt: u32,
    /// Position in the log.
    pub sequence: u64,
    /// LSN of the first record.
    pub first_lsn: Lsn,
    /// Size of the file.
    pub segment_bytes: u64,
}

/// Why a segment header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// All zero: a prepared segment that never held records.
    Prepared,
    /// The checksum fails: damaged, a torn write, or not a segment; the text says what was
    /// found.
    Bad(String),
    /// A named segment file in a state the log never leaves one in: a valid header in a file
    /// whose length is not the one it says, or another file's header (another sequence), or a
    /// file too short for a segment (recovery and inspection check these), or a header whose
    /// checksum holds over a wrong magic or impossible fields (`decode` does). Segment files
    /// are allocated in full and synced under a temporary name before they are named, and a
    /// torn header fails its checksum, so this is damage, never an unfinished write.
    Damaged(String),
    /// A format version this build does not read.
    Version(u32),
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC);
        b[VERSION_OFFSET..SALT_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[SALT_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&self.salt.to_le_bytes());
        b[SEQUENCE_OFFSET..FIRST_LSN_OFFSET].copy_from_slice(&self.sequence.to_le_bytes());
        b[FIRST_LSN_OFFSET..SIZE_OFFSET].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[SIZE_OFFSET..RESERVED_OFFSET].copy_from_slice(&self.segment_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8; HEADER_BYTES]) -> Result<SegmentHeader, HeaderError> {
        if b.iter().all(|&x| x == 0) {
            return Err(HeaderError::Prepared);
        }
        let stored = u32::from_le_bytes(b[CRC_OFFSET..].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&b[..CRC_OFFSET]);
        if stored != computed {
            return Err(HeaderError::Bad(format!(
                "segment header checksum expected {stored:#010x}, found {computed:#010x}"
            )));
        }
        // From here on the checksum holds, so the bytes are whole as written: no torn write
        // leaves them. A wrong magic or an impossible field is damage (or another program's
        // file), never an unfinished write; taken for a torn header until 2026-12-07, it made
        // the default open cut the file and every later one, acknowledged records included.
        // The magic's last byte is its version: another build's segment shares the first seven.
        if b[MAGIC_OFFSET..MAGIC_OFFSET + 7] != MAGIC[..7] {
            return Err(HeaderError::Damaged(
                "not an rwal segment (bad magic under a valid checksum)".into(),
            ));
        }
        let version = u32::from_le_bytes(b[VERSION_OFFSET..SALT_OFFSET].try_into().expect("4"));
        if let Some(found) = other_version(b[MAGIC_OFFSET + 7], version, FORMAT_VERSION) {
            return Err(HeaderError::Version(found));
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let header = SegmentHeader {
            salt: u32::from_le_bytes(b[SALT_OFFSET..SEQUENCE_OFFSET].try_into().expect("4")),
            sequence: u64_at(SEQUENCE_OFFSET),
            first_lsn: u64_at(FIRST_LSN_OFFSET),
            segment_bytes: u64_at(SIZE_OFFSET),
        };
        // A multiple of 4096, as every segment is created (`Options::segment_bytes`): records
        // are 8-byte aligned, and the scan reads fixed-size fields at any aligned offset below
        // the end.
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&header.segment_bytes)
            || header.segment_bytes % 4096 != 0
            || header.first_lsn == 0
            || header.first_lsn > LSN_MAX
            || header.sequence > SEQUENCE_MAX
        {
            return Err(HeaderError::Damaged(format!(
                "impossible header fields {header:?} under a valid checksum"
            )));
        }
        Ok(header)
    }
}

/// The file name of segment `sequence`.
pub fn file_name(sequence: u64) -> String {
    format!("{sequence:020}.seg")
}

/// The name segment `sequence` has while it is being allocated.
pub fn temp_file_name(sequence: u64) -> String {
    format!("{sequence:020}.seg.tmp")
}

/// The largest segment sequence number a log accepts: far beyond any real log's (one segment a
/// microsecond for a hundred thousand years), and far enough from `u64::MAX` that the next
/// sequence never overflows.
pub const SEQUENCE_MAX: u64 = u64::MAX / 4;

/// The largest first LSN a segment header may claim, for the same reason.
pub const LSN_MAX: u64 = u64::MAX / 4;

/// The sequence number in a segment file name, or `None` if the name is not a segment's.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Largest payload a segment of `segment_bytes` can hold.
pub fn max_payload_bytes(segment_bytes: u64) -> u64 {
    segment_bytes - HEADER_REGION_BYTES - record::HEADER_BYTES as u64
}

/// A file created and allocated for a future segment, not yet holding records.
pub(crate) struct PreparedSegment {
    pub sequence: u64,
    pub file: Arc<dyn File>,
}

/// A segment in use: its header fields, its file, and a sparse index from LSN to offset.
pub(crate) struct Segment {
    pub header: SegmentHeader,
    pub file: Arc<dyn File>,
    /// LSN of the last record in this segment; `Lsn::MAX` while records may still be added.
    last_lsn: AtomicU64,
    /// Offset of record `first_lsn + i * INDEX_STRIDE` at `index[i]`; 0 = not yet known.
    index: Box<[AtomicU32]>,
    /// Handed out for reading (or new) since its memory for reads was last given back
    /// (`Inner::release_sealed_memory`).
    mapped: AtomicBool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("header", &self.header)
            .field("last_lsn", &self.last_lsn.load(Ordering::Relaxed))
            .finish()
    }
}

impl Segment {
    pub fn new(header: SegmentHeader, file: Arc<dyn File>) -> Segment {
        debug_assert_eq!(file.len(), header.segment_bytes);
        let max_records =
            (header.segment_bytes - HEADER_REGION_BYTES) / record::HEADER_BYTES as u64;
        let entries = max_records / INDEX_STRIDE + 1;
        let index = (0..entries).map(|_| AtomicU32::new(0)).collect();
        Segment {
            header,
            file,
            last_lsn: AtomicU64::new(Lsn::MAX),
            index,
            mapped: AtomicBool::new(true),
        }
    }

    /// Notes that the segment is handed out for reading: its memory may be mapped again.
    pub fn note_mapped(&self) {
        // Loaded first: every read locates its record, and a store would take the line from
        // the other cores each time.
        if !self.mapped.load(Ordering::Acquire) {
            self.mapped.store(true, Ordering::Release);
        }
    }

    /// Whether the segment may hold memory for reads since its last release.
    pub fn mapped(&self) -> bool {
        self.mapped.load(Ordering::Acquire)
    }

    /// Notes that its memory for reads was given back.
    pub fn note_released(&self) {
        self.mapped.store(false, Ordering::Release);
    }

    pub fn first_lsn(&self) -> Lsn {
        self.header.first_lsn
    }

    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }

    pub fn name(&self) -> String {
        file_name(self.header.sequence)
    }

    /// The last LSN stored here, or `None` while the segment is active.
    pub fn sealed_last_lsn(&self) -> Option<Lsn> {
        match self.last_lsn.load(Ordering::Acquire) {
            Lsn::MAX => None,
            lsn => Some(lsn),
        }
    }

    /// Whether the segment is sealed and, with records up to `written` copied, every record in
    /// it is: no write into it is in progress.
    pub(crate) fn sealed_and_copied(&self, written: Lsn) -> bool {
        self.sealed_last_lsn().is_some_and(|last| last <= written)
    }

    /// Marks the segment full: `last_lsn` is its final record (`first_lsn - 1` when empty).
    pub fn seal(&self, last_lsn: Lsn) {
        debug_assert!(last_lsn + 1 >= self.first_lsn());
        self.last_lsn.store(last_lsn, Ordering::Release);
    }

    /// Makes the segment active again (after `truncate_after` cut back into it).
    pub fn unseal(&self) {
        self.file.prepare_for_appends();
        self.last_lsn.store(Lsn::MAX, Ordering::Release);
    }

    /// Remembers where record `lsn` starts, if it falls on an index stride.
    pub fn note_offset(&self, lsn: Lsn, offset: u64) {
        let rel = lsn - self.first_lsn();
        if rel % INDEX_STRIDE == 0 {
            let slot = &self.index[(rel / INDEX_STRIDE) as usize];
            slot.store(
                u32::try_from(offset).expect("segment offsets fit u32"),
                Ordering::Release,
            );
        }
    }

    /// The closest indexed record at or before `lsn`: its LSN and offset.
    pub fn seek_hint(&self, lsn: Lsn) -> (Lsn, u64) {
        debug_assert!(lsn >= self.first_lsn());
        let mut slot = ((lsn - self.first_lsn()) / INDEX_STRIDE) as usize;
        loop {
            let offset = self.index[slot].load(Ordering::Acquire);
            if offset != 0 || slot == 0 {
                let found_lsn = self.first_lsn() + slot as u64 * INDEX_STRIDE;
                let offset = if offset == 0 {
                    HEADER_REGION_BYTES
                } else {
                    u64::from(offset)
                };
                return (found_lsn, offset);
            }
            slot -= 1;
        }
    }

    /// Forgets index entries past `lsn` (after a cut).
    pub fn forget_after(&self, lsn: Lsn) {
        let first_dropped = (lsn + 1).saturating_sub(self.first_lsn());
        let from_slot = first_dropped.div_ceil(INDEX_STRIDE) as usize;
        for slot in self.index.iter().skip(from_slot) {
            slot.store(0, Ordering::Release);
        }
    }

    /// The bytes from `offset` to the end of the segment: only while no append can write to
    /// this segment (recovery, or a truncation, which stops appends).
    pub fn bytes_from(&self, offset: u64) -> &[u8] {
        self.file
            .bytes(offset, (self.header.segment_bytes - offset) as usize)
    }

    /// Zero-fills the segment from `offset` to its last nonzero byte (not synced), so that no
    /// stale record behind the new end can ever be linked back in. Returns the bytes zeroed.
    pub fn zero_from(&self, offset: u64) -> std::io::Result<u64> {
        self.zero_range(offset, self.nonzero_len_from(offset))
    }

    /// Zero-fills `len` bytes from `offset` (not synced); returns `len`.
    pub(crate) fn zero_range(&self, offset: u64, len: u64) -> std::io::Result<u64> {
        if len == 0 {
            return Ok(0);
        }
        let zeros = vec![0u8; (len as usize).min(1 << 20)];
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            self.file.write_at(offset + at, &[&zeros[..n]])?;
            at += n as u64;
        }
        Ok(len)
    }

    /// How many bytes from `offset` on reach the last nonzero byte of the segment (0: all zero).
    ///
    /// Read a block at a time from the end, each block on its own: `IoUring` reads a range
    /// from its staging memory only if it holds every block of it, and otherwise through the
    /// mapping, where a block it wrote with `O_DIRECT` could still show a stale cached page (a
    /// truncation's zero-fill would then stop short of records it must remove).
    pub fn nonzero_len_from(&self, offset: u64) -> u64 {
        let mut hi = self.header.segment_bytes;
        while hi > offset {
            let lo = ((hi - 1) / SCAN_BLOCK_BYTES * SCAN_BLOCK_BYTES).max(offset);
            let block = self.file.bytes(lo, (hi - lo) as usize);
            if let Some(i) = last_nonzero_byte(block) {
                return lo + i as u64 + 1 - offset;
            }
            hi = lo;
        }
        0
    }

    /// Decodes the record at `offset`, borrowing only its own bytes (its header, then as many
    /// payload bytes as the header claims), never the rest of the segment, where appenders may
    /// be writing.
    pub fn record_at(&self, offset: u64) -> Result<(record::RecordHeader, &[u8]), record::Invalid> {
        self.record_bytes_at(offset)
            .and_then(|bytes| record::decode(self.header.salt, bytes))
    }

    /// Like [`Segment::record_at`], trusting the checksum: for a record `record_at` accepted
    /// before, in a segment nothing has written to since (recovery's walk over what its first
    /// pass verified); for the length a damaged record claims, where no slice of the segment
    /// can overlap a copy in progress (`Inner::locate`); or for a reader told not to check
    /// checksums again (`Reader::set_verify_checksums`).
    pub(crate) fn verified_record_at(
        &self,
        offset: u64,
    ) -> Result<(record::RecordHeader, &[u8]), record::Invalid> {
        self.record_bytes_at(offset)
            .and_then(record::decode_verified)
    }

    /// The bytes of the record at `offset`: its header and as many payload bytes as the header
    /// claims and the segment holds.
    fn record_bytes_at(&self, offset: u64) -> Result<&[u8], record::Invalid> {
        let header_end = offset + record::HEADER_BYTES as u64;
        if header_end > self.header.segment_bytes {
            return Err(record::Invalid::Empty);
        }
        let header = self.file.bytes(offset, record::HEADER_BYTES);
        let claimed = record::claimed_payload_len(header).unwrap_or(u32::MAX);
        let room = self.header.segment_bytes - header_end;
        let len = (record::HEADER_BYTES as u64 + u64::from(claimed).min(room)) as usize;
        Ok(self.file.bytes(offset, len))
    }

    /// The payload of the record at `offset`, `len` bytes.
    pub fn payload(&self, offset: u64, len: u32) -> &[u8] {
        self.file
            .bytes(offset + record::HEADER_BYTES as u64, len as usize)
    }
}

/// Index of the last nonzero byte, scanning from the end a block of 64 bytes at a time (the OR
/// of a block compiles to vector instructions; recovery scans the zero tails of whole segments).
pub(crate) fn last_nonzero_byte(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let tail_len = bytes.len() % BLOCK;
    let (blocks, tail) = bytes.split_at(bytes.len() - tail_len);
    if let Some(i) = tail.iter().rposition(|&b| b != 0) {
        return Some(blocks.len() + i);
    }
    let from_end = blocks
        .rchunks_exact(BLOCK)
        .position(|block| block.iter().fold(0u8, |any, &b| any | b) != 0)?;
    let start = blocks.len() - (from_end + 1) * BLOCK;
    let i = blocks[start..start + BLOCK]
        .iter()
        .rposition(|&b| b != 0)
        .expect("nonzero block");
    Some(start + i)
}

/// The version of a file whose checksum passed and whose magic names its kind (its first seven
/// bytes), when it is not `ours`: its `format_version` field, or the magic's last byte where
/// only that differs. Both carry the version (`docs/design.md` 2.5); a newer build's file
/// was taken for damage (or a torn control slot) where only the magic's byte had changed until
/// 2026-12-08 (found by review).
pub(crate) fn other_version(magic_last: u8, field: u32, ours: u32) -> Option<u32> {
    if field != ours {
        Some(field)
    } else if u32::from(magic_last) != ours {
        Some(u32::from(magic_last))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newer build's header, with the version in the magic's last byte, the field, or both,
    /// is a version this build does not read, not damage.
    #[test]
    fn a_newer_header_is_another_version_not_damage() {
        let header = SegmentHeader {
            salt: 7,
            sequence: 2,
            first_lsn: 6,
            segment_bytes: 1 << 20,
        };
        for (magic_last, field) in [(2u8, 1u32), (1, 2), (2, 2)] {
            let mut b = header.encode();
            b[MAGIC_OFFSET + 7] = magic_last;
            b[VERSION_OFFSET..SALT_OFFSET].copy_from_slice(&field.to_le_bytes());
            let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
            b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(
                SegmentHeader::decode(&b),
                Err(HeaderError::Version(2)),
                "magic byte {magic_last}, field {field}"
            );
        }
        // Another magic altogether is not an rwal segment.
        let mut b = header.encode();
        b[MAGIC_OFFSET + 3] = b'X';
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            SegmentHeader::decode(&b),
            Err(HeaderError::Damaged(_))
        ));
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            salt: 0xdead_beef,
            sequence: 3,
            first_lsn: 77,
            segment_bytes: 1 << 20,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        assert_eq!(
            SegmentHeader::decode(&[0; HEADER_BYTES]),
            Err(HeaderError::Prepared)
        );
        for i in 0..HEADER_BYTES {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert!(SegmentHeader::decode(&damaged).is_err(), "byte {i}");
        }
    }

    #[test]
    fn last_nonzero_byte_finds_the_end() {
        assert_eq!(last_nonzero_byte(&[]), None);
        assert_eq!(last_nonzero_byte(&[0; 100]), None);
        assert_eq!(last_nonzero_byte(&[0; 4096]), None);
        // Lengths with and without a partial block at the end; positions on both sides of
        // block boundaries.
        for len in [100usize, 256, 300] {
            for at in [
                0usize, 7, 8, 63, 64, 65, 98, 99, 127, 128, 191, 192, 255, 256, 299,
            ] {
                if at >= len {
                    continue;
                }
                let mut b = vec![0u8; len];
                b[at] = 1;
                b[0] = 1;
                assert_eq!(last_nonzero_byte(&b), Some(at), "length {len}");
            }
        }
    }

    /// Read a block at a time from the end, the segment's nonzero length from any offset is
    /// what one read of the whole rest would give.
    #[test]
    fn nonzero_len_from_matches_a_whole_read_from_any_offset() {
        use crate::io::Dir;
        let disk = crate::SimDisk::new();
        let dir = disk.dir(std::path::Path::new("/sim"));
        let file = dir.create("x.seg", SEGMENT_BYTES_MIN).unwrap();
        let header = SegmentHeader {
            salt: 1,
            sequence: 1,
            first_lsn: 1,
            segment_bytes: SEGMENT_BYTES_MIN,
        };
        let segment = Segment::new(header, file.clone());
        let offsets = [
            0u64,
            1,
            4095,
            4096,
            4097,
            8191,
            8192,
            12_000,
            SEGMENT_BYTES_MIN - 1,
        ];
        let whole =
            |from: u64| last_nonzero_byte(segment.bytes_from(from)).map_or(0, |i| i as u64 + 1);
        for from in offsets {
            assert_eq!(segment.nonzero_len_from(from), 0, "all zero, from {from}");
        }
        for last in [0u64, 4095, 4096, 8191, 8192, 10_000, SEGMENT_BYTES_MIN - 1] {
            file.write_at(last, &[&[0xa5]]).unwrap();
            for from in offsets {
                assert_eq!(
                    segment.nonzero_len_from(from),
                    whole(from),
                    "last nonzero byte at {last}, from {from}"
                );
            }
        }
        assert_eq!(segment.nonzero_len_from(0), SEGMENT_BYTES_MIN);
        assert_eq!(segment.nonzero_len_from(SEGMENT_BYTES_MIN), 0);
    }

    #[test]
    fn a_header_past_the_number_bounds_is_refused_though_its_checksum_holds() {
        let fine = SegmentHeader {
            salt: 7,
            sequence: 3,
            first_lsn: 100,
            segment_bytes: SEGMENT_BYTES_MIN,
        };
        assert_eq!(SegmentHeader::decode(&fine.encode()).ok(), Some(fine));
        for header in [
            SegmentHeader {
                first_lsn: LSN_MAX + 1,
                ..fine
            },
            SegmentHeader {
                sequence: SEQUENCE_MAX + 1,
                ..fine
            },
            // Not a multiple of 4096: the scan could read a checksum past the end.
            SegmentHeader {
                segment_bytes: SEGMENT_BYTES_MIN + 2,
                ..fine
            },
        ] {
            assert!(
                matches!(
                    SegmentHeader::decode(&header.encode()),
                    Err(HeaderError::Damaged(_))
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn names_sort_in_log_order() {
        let mut names: Vec<String> = [10u64, 9, 100, 1].iter().map(|&s| file_name(s)).collect();
        names.sort();
        let seqs: Vec<u64> = names.iter().map(|n| parse_file_name(n).unwrap()).collect();
        assert_eq!(seqs, vec![1, 9, 10, 100]);
        assert_eq!(parse_file_name("control"), None);
        assert_eq!(parse_file_name("0001.seg"), None);
    }
}
