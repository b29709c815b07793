//! The control file's two copies on a simulated disk, read and damaged the way a test needs:
//! the layout is `wal/src/control.rs`'s (a 4 KiB slot per copy, its CRC32C in the last four
//! bytes), read here without the crate's own decoder so that the tests check what is on disk.

use rwal_wal::SimDisk;

const SLOT_BYTES: usize = 4096;
const GENERATION_OFFSET: usize = 16;
const FIRST_LSN_OFFSET: usize = 32;
const CHECKPOINT_LSN_OFFSET: usize = 40;
const PENDING_CUT_OFFSET: usize = 88;
const FLAGS_OFFSET: usize = 3100;
const FLAG_RESET_PENDING: u32 = 1;
/// What `PENDING_CUT_OFFSET` holds when no truncation is in progress.
const NO_CUT: u64 = u64::MAX;

/// One copy of the control file, as far as the tests look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlCopy {
    pub generation: u64,
    pub first_lsn: u64,
    /// 0 without a checkpoint.
    pub checkpoint_lsn: u64,
    pub declares_a_cut: bool,
    /// A reset to a snapshot declared and not finished.
    pub declares_a_reset: bool,
}

/// The two copies, newest first; `None` for a copy whose checksum fails (torn or damaged).
pub fn copies(disk: &SimDisk) -> [Option<ControlCopy>; 2] {
    let bytes = disk.read_file("control").expect("a control file");
    let slot = |n: usize| &bytes[n * SLOT_BYTES..(n + 1) * SLOT_BYTES];
    let field = |n: usize, at: usize| u64::from_le_bytes(slot(n)[at..at + 8].try_into().unwrap());
    let copy = |n: usize| {
        let stored = u32::from_le_bytes(slot(n)[SLOT_BYTES - 4..].try_into().unwrap());
        (crc32c(&slot(n)[..SLOT_BYTES - 4]) == stored).then(|| ControlCopy {
            generation: field(n, GENERATION_OFFSET),
            first_lsn: field(n, FIRST_LSN_OFFSET),
            checkpoint_lsn: field(n, CHECKPOINT_LSN_OFFSET),
            declares_a_cut: field(n, PENDING_CUT_OFFSET) != NO_CUT,
            declares_a_reset: u32::from_le_bytes(
                slot(n)[FLAGS_OFFSET..FLAGS_OFFSET + 4].try_into().unwrap(),
            ) & FLAG_RESET_PENDING
                != 0,
        })
    };
    let (a, b) = (copy(0), copy(1));
    if field(0, GENERATION_OFFSET) >= field(1, GENERATION_OFFSET) {
        [a, b]
    } else {
        [b, a]
    }
}

/// Damages the newest of the two copies, as a media error would: recovery then falls back to
/// the other one.
pub fn damage_newest_copy(disk: &SimDisk) {
    let bytes = disk.read_file("control").expect("a control file");
    let generation = |n: usize| {
        u64::from_le_bytes(
            bytes[n * SLOT_BYTES + GENERATION_OFFSET..][..8]
                .try_into()
                .unwrap(),
        )
    };
    let newest = if generation(0) > generation(1) { 0 } else { 1 };
    disk.flip_bit("control", (newest * SLOT_BYTES + 30) as u64, 3);
}

/// CRC32C, bit by bit: enough to tell a whole copy from a torn one.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
