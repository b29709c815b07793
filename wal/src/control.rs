//! The control file: what must survive a crash besides the records.
//!
//! The file is 8 KiB: two 4 KiB slots, written alternately, each checked by its own CRC, so that a
//! write torn by a crash damages at most the copy being written. Recovery takes the valid slot
//! with the highest generation.
//!
//! ```text
//! slot offset size field
//!   0          8   magic           b"RWALCTL\x01"
//!   8          4   format_version  FORMAT_VERSION
//!  12          4   reserved        zero
//!  16          8   generation      incremented by every write
//!  24          8   durable_lsn     every record up to it was durable (a lower bound, written lazily)
//!  32          8   first_lsn       the oldest LSN the log retains
//!  40          8   checkpoint_lsn  latest checkpoint (0 = none)
//!  48          8   checkpoint_epoch its epoch
//!  56          8   hard_term       consensus hard state: current term
//!  64          8   hard_vote       voted for (0 = none)
//!  72          8   hard_commit     commit index
//!  80          8   first_epoch     epoch of the record at first_lsn - 1 (0 = none)
//!  88          8   pending_cut     a truncation in progress: cut after this LSN (u64::MAX = none)
//!  96          4   membership_len  bytes of membership that follow
//! 100       3000   membership      opaque to the WAL; replication stores its configuration here
//! 3100         4   flags           bit 0: a reset to a snapshot is in progress (recovery
//!                                  removes every segment and starts the log at first_lsn)
//! 4092         4   crc             CRC32C of bytes 0..4092 of the slot
//! ```

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{Dir, File};
use crate::segment;
use crate::Lsn;

/// Name of the control file in the log directory.
pub const FILE_NAME: &str = "control";
/// Name of the control file while a new log is being created.
pub(crate) const TEMP_NAME: &str = "control.tmp";
/// Bytes of one slot.
pub const SLOT_BYTES: usize = 4096;
/// Bytes of the file.
pub const FILE_BYTES: u64 = 2 * SLOT_BYTES as u64;
/// The largest membership blob the file holds.
pub const MEMBERSHIP_BYTES_MAX: usize = 3000;
const MAGIC: [u8; 8] = *b"RWALCTL\x01";
const FORMAT_VERSION: u32 = 1;

const VERSION_OFFSET: usize = 8;
const GENERATION_OFFSET: usize = 16;
const DURABLE_OFFSET: usize = 24;
const FIRST_LSN_OFFSET: usize = 32;
const CHECKPOINT_LSN_OFFSET: usize = 40;
const CHECKPOINT_EPOCH_OFFSET: usize = 48;
const HARD_TERM_OFFSET: usize = 56;
const HARD_VOTE_OFFSET: usize = 64;
const HARD_COMMIT_OFFSET: usize = 72;
const FIRST_EPOCH_OFFSET: usize = 80;
const PENDING_CUT_OFFSET: usize = 88;
const MEMBERSHIP_LEN_OFFSET: usize = 96;
const MEMBERSHIP_OFFSET: usize = 100;
const NO_CUT: u64 = u64::MAX;
const FLAGS_OFFSET: usize = MEMBERSHIP_OFFSET + MEMBERSHIP_BYTES_MAX;
const FLAG_RESET_PENDING: u32 = 1;
const _: () = assert!(FLAGS_OFFSET + 4 <= CRC_OFFSET);
const CRC_OFFSET: usize = SLOT_BYTES - 4;
const _: () = assert!(MEMBERSHIP_OFFSET + MEMBERSHIP_BYTES_MAX <= CRC_OFFSET);

/// The consensus state a replicated log keeps durable (raft's `HardState`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Node voted for in that term (0 = none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

/// Everything the control file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlState {
    /// Every record up to this LSN was durable when it was written.
    pub durable_lsn: Lsn,
    /// The oldest retained LSN.
    pub first_lsn: Lsn,
    /// The latest checkpoint, as (LSN, epoch).
    pub checkpoint: Option<(Lsn, u64)>,
    /// Consensus hard state.
    pub hard_state: HardState,
    /// Epoch of the record before `first_lsn` (what raft calls the term of `first_index - 1`).
    pub first_epoch: u64,
    /// A truncation that was started: recovery finishes it by cutting everything after this
    /// LSN, whatever the records past it claim.
    pub pending_cut: Option<Lsn>,
    /// A reset to a snapshot was started: recovery finishes it by removing every segment and
    /// starting the log, empty, at `first_lsn`.
    pub reset_pending: bool,
    /// Replication's membership configuration, opaque here.
    pub membership: Vec<u8>,
}

impl ControlState {
    /// Whether it declares a truncation or a reset to a snapshot in progress.
    fn declares_an_operation(&self) -> bool {
        self.pending_cut.is_some() || self.reset_pending
    }

    /// The state of a new, empty log.
    pub fn empty() -> ControlState {
        ControlState {
            first_lsn: 1,
            ..ControlState::default()
        }
    }

    pub(crate) fn encode(&self, generation: u64) -> [u8; SLOT_BYTES] {
        assert!(
            self.membership.len() <= MEMBERSHIP_BYTES_MAX,
            "membership checked by caller"
        );
        let mut b = [0u8; SLOT_BYTES];
        let mut put = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        let (ck_lsn, ck_epoch) = self.checkpoint.unwrap_or((0, 0));
        put(GENERATION_OFFSET, generation);
        put(DURABLE_OFFSET, self.durable_lsn);
        put(FIRST_LSN_OFFSET, self.first_lsn);
        put(CHECKPOINT_LSN_OFFSET, ck_lsn);
        put(CHECKPOINT_EPOCH_OFFSET, ck_epoch);
        put(HARD_TERM_OFFSET, self.hard_state.term);
        put(HARD_VOTE_OFFSET, self.hard_state.vote);
        put(HARD_COMMIT_OFFSET, self.hard_state.commit);
        put(FIRST_EPOCH_OFFSET, self.first_epoch);
        put(PENDING_CUT_OFFSET, self.pending_cut.unwrap_or(NO_CUT));
        b[..8].copy_from_slice(&MAGIC);
        b[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let len = self.membership.len() as u32;
        b[MEMBERSHIP_LEN_OFFSET..MEMBERSHIP_OFFSET].copy_from_slice(&len.to_le_bytes());
        b[MEMBERSHIP_OFFSET..MEMBERSHIP_OFFSET + self.membership.len()]
            .copy_from_slice(&self.membership);
        let flags = if self.reset_pending {
            FLAG_RESET_PENDING
        } else {
            0
        };
        b[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a slot: `Ok(None)` for a slot never written or torn, an error for a version
    /// this build cannot read.
    fn decode(b: &[u8], path: &str) -> Result<Option<(u64, ControlState)>> {
        let stored = u32::from_le_bytes(b[CRC_OFFSET..SLOT_BYTES].try_into().expect("4 bytes"));
        // The magic's last byte is its version: a newer build's slot shares the first seven,
        // and is a version this build cannot read, not a torn slot to fall back from (which
        // would bring back an older term, vote and watermark).
        if crc32c::crc32c(&b[..CRC_OFFSET]) != stored || b[..7] != MAGIC[..7] {
            return Ok(None);
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(VERSION_OFFSET);
        if let Some(found) = segment::other_version(b[7], version, FORMAT_VERSION) {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        let membership_len = u32_at(MEMBERSHIP_LEN_OFFSET) as usize;
        if membership_len > MEMBERSHIP_BYTES_MAX {
            return Err(Error::bad_file(
                path,
                format!("membership of {membership_len} bytes"),
            ));
        }
        let checkpoint_lsn = u64_at(CHECKPOINT_LSN_OFFSET);
        let state = ControlState {
            durable_lsn: u64_at(DURABLE_OFFSET),
            first_lsn: u64_at(FIRST_LSN_OFFSET),
            checkpoint: (checkpoint_lsn != 0)
                .then(|| (checkpoint_lsn, u64_at(CHECKPOINT_EPOCH_OFFSET))),
            hard_state: HardState {
                term: u64_at(HARD_TERM_OFFSET),
                vote: u64_at(HARD_VOTE_OFFSET),
                commit: u64_at(HARD_COMMIT_OFFSET),
            },
            first_epoch: u64_at(FIRST_EPOCH_OFFSET),
            pending_cut: Some(u64_at(PENDING_CUT_OFFSET)).filter(|&c| c != NO_CUT),
            reset_pending: u32_at(FLAGS_OFFSET) & FLAG_RESET_PENDING != 0,
            membership: b[MEMBERSHIP_OFFSET..MEMBERSHIP_OFFSET + membership_len].to_vec(),
        };
        if state.first_lsn == 0 {
            return Err(Error::bad_file(
                path,
                "control file says the log starts at LSN 0",
            ));
        }
        // No log reaches these (a segment past `LSN_MAX` is refused, and so is a reset there);
        // a file that claims them was not written by a log, and the arithmetic on the next LSN
        // must not overflow.
        let lsns = [
            ("first LSN", Some(state.first_lsn)),
            ("durable LSN", Some(state.durable_lsn)),
            ("checkpoint LSN", state.checkpoint.map(|(lsn, _)| lsn)),
            ("pending cut", state.pending_cut),
        ];
        for (what, lsn) in lsns {
            if let Some(lsn) = lsn.filter(|&lsn| lsn > segment::LSN_MAX) {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "{what} {lsn} is past the largest LSN ({})",
                        segment::LSN_MAX
                    ),
                ));
            }
        }
        // A write a microsecond for a hundred thousand years stays far below it; past it, the
        // next generation (`write`) would overflow.
        let generation = u64_at(GENERATION_OFFSET);
        if generation > GENERATION_MAX {
            return Err(Error::bad_file(
                path,
                format!("generation {generation} is past the largest ({GENERATION_MAX})"),
            ));
        }
        Ok(Some((generation, state)))
    }
}

/// The largest generation a copy of the control file may carry.
const GENERATION_MAX: u64 = u64::MAX / 4;

/// Decodes both copies of a control file's bytes (for read-only inspection): each is its
/// generation and state, or `None` if it does not verify.
/// A control copy as decoded: its generation and what it says.
type DecodedCopy<T> = (u64, T);

/// The valid copy with the higher generation, and the other one if valid; `None` if neither
/// is. Of two copies of one generation, which a log never writes (only a damaged or hand-made
/// file holds them), the first slot's. Shared by the open and `inspect`, which must read the
/// state the open will use.
pub(crate) fn newest_first<T>(
    first: Option<DecodedCopy<T>>,
    second: Option<DecodedCopy<T>>,
) -> Option<(DecodedCopy<T>, Option<DecodedCopy<T>>)> {
    match (first, second) {
        (Some(a), Some(b)) if a.0 >= b.0 => Some((a, Some(b))),
        (Some(a), Some(b)) => Some((b, Some(a))),
        (Some(a), None) | (None, Some(a)) => Some((a, None)),
        (None, None) => None,
    }
}

pub(crate) fn decode_copies(
    bytes: &[u8],
    path: &std::path::Path,
) -> Result<[Option<(u64, ControlState)>; 2]> {
    if bytes.len() as u64 != FILE_BYTES {
        return Err(Error::bad_file(
            path,
            format!("{} bytes, expected {FILE_BYTES}", bytes.len()),
        ));
    }
    let text = path.display().to_string();
    Ok([
        ControlState::decode(&bytes[..SLOT_BYTES], &text)?,
        ControlState::decode(&bytes[SLOT_BYTES..], &text)?,
    ])
}

/// Where the copy of `generation` goes: generations alternate between the two slots, so a write
/// never touches the newest valid copy.
fn slot_offset(generation: u64) -> u64 {
    (generation % 2) * SLOT_BYTES as u64
}

/// The open control file.
pub(crate) struct Control {
    file: Arc<dyn File>,
    generation: u64,
    state: ControlState,
    /// See [`Control::older_copy_is_stale`].
    older_is_stale: bool,
    /// A state declaring a truncation or a reset whose write failed: the disk may hold it (a
    /// write whose sync failed, or the first of two copies), and a reopen would then finish
    /// the operation. See [`Control::may_remove`].
    failed_declaration: Option<ControlState>,
    /// The failure of a write or sync of this file, after which it takes no more writes: the
    /// slot that write went to may hold its state, and the next write would go to that slot.
    failed_write: Option<Error>,
}

impl Control {
    /// Whether `dir` holds a control file (that is: a log was completely created there).
    pub fn exists(dir: &dyn Dir) -> Result<bool> {
        let names = dir.list().map_err(|e| Error::io("list", dir.path(), e))?;
        Ok(names.iter().any(|n| n == FILE_NAME))
    }

    /// Creates the control file of a new log, durably. A crash before it returns leaves no
    /// `control` file, and a directory without one opens as an empty log.
    pub fn create(dir: &dyn Dir, state: ControlState) -> Result<Control> {
        let temp_path = dir.path().join(TEMP_NAME);
        match dir.remove(TEMP_NAME) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &temp_path, e)),
        }
        let file = dir
            .create(TEMP_NAME, FILE_BYTES)
            .map_err(|e| Error::io("create", &temp_path, e))?;
        file.write_at(slot_offset(1), &[&state.encode(1)])
            .map_err(|e| Error::io("write", &temp_path, e))?;
        file.sync()
            .map_err(|e| Error::io(file.sync_calls(), &temp_path, e))?;
        dir.rename(TEMP_NAME, FILE_NAME)
            .map_err(|e| Error::io("rename", &temp_path, e))?;
        dir.sync()
            .map_err(|e| Error::io("fsync directory", dir.path(), e))?;
        Ok(Control {
            file,
            generation: 1,
            state,
            older_is_stale: false,
            failed_declaration: None,
            failed_write: None,
        })
    }

    /// Opens the control file and reads its newest valid copy.
    pub fn open(dir: &dyn Dir) -> Result<Control> {
        let path = dir.path().join(FILE_NAME);
        let path_text = path.display().to_string();
        let file = dir
            .open(FILE_NAME)
            .map_err(|e| Error::io("open", &path, e))?;
        if file.len() != FILE_BYTES {
            return Err(Error::bad_file(
                &path,
                format!("{} bytes, expected {FILE_BYTES}", file.len()),
            ));
        }
        let bytes = file.bytes(0, FILE_BYTES as usize);
        let first = ControlState::decode(&bytes[..SLOT_BYTES], &path_text)?;
        let second = ControlState::decode(&bytes[SLOT_BYTES..], &path_text)?;
        let Some((newest, older)) = newest_first(first, second) else {
            return Err(Error::bad_file(&path, "both control copies are damaged"));
        };
        // A crash between the two writes of a state that ends an operation or moves what the
        // files hold (see `write`), or a log written before they were two, leaves the older
        // copy declaring the operation, or naming the old checkpoint or first LSN.
        let older_is_stale = older.is_some_and(|(_, older)| {
            (older.declares_an_operation() && !newest.1.declares_an_operation())
                || older.checkpoint != newest.1.checkpoint
                || older.first_lsn != newest.1.first_lsn
        });
        Ok(Control {
            file,
            generation: newest.0,
            state: newest.1,
            older_is_stale,
            failed_declaration: None,
            failed_write: None,
        })
    }

    /// [`open`](Control::open), reading the control file as the disk holds it, for a recovery
    /// about to act on it (remove the snapshots and segments it no longer names). The page
    /// cache may hold writes the disk does not: a write whose process died before its sync,
    /// dirty (the sync here makes it durable), or a write whose sync failed, clean but never
    /// written (Linux reports such an error once, "fsyncgate"; dropping the clean pages reads
    /// the disk's copy instead). Acting on either kind, then losing it at a power cut, would
    /// leave a control file naming files already removed.
    pub fn open_as_on_disk(dir: &dyn Dir) -> Result<Control> {
        let path = dir.path().join(FILE_NAME);
        let file = dir
            .open(FILE_NAME)
            .map_err(|e| Error::io("open", &path, e))?;
        file.sync()
            .map_err(|e| Error::io(file.sync_calls(), &path, e))?;
        // Nothing else holds the file: recovery runs before anything else exists.
        file.release_memory();
        file.forget_cached_pages();
        drop(file);
        Control::open(dir)
    }

    /// Whether the older copy still declares a truncation or reset in progress that the newest
    /// one has ended, or names a checkpoint or first LSN that the newest has moved (whose
    /// snapshot or segments recovery removes): recovery then writes the state again, over it.
    /// Until 2026-12-05 only the first was written again, and on an idle log the older copy
    /// kept naming removed files until the next write, for a fallback to refuse the log.
    pub fn older_copy_is_stale(&self) -> bool {
        self.older_is_stale
    }

    pub fn state(&self) -> &ControlState {
        &self.state
    }

    /// Whether record `lsn` is removed, now or by the next recovery, by a truncation or a reset
    /// to a snapshot that was declared and not finished: by the state written, or by a write
    /// of a declaration that failed (the log is poisoned then, and may still be read: a
    /// record this says is removed must not be answered for, as a reopen may not have it).
    pub fn may_remove(&self, lsn: Lsn) -> bool {
        std::iter::once(&self.state)
            .chain(&self.failed_declaration)
            .any(|s| s.reset_pending || s.pending_cut.is_some_and(|cut| lsn > cut))
    }

    /// Writes `state` durably into the slot not holding the newest copy. After a write or sync
    /// that failed, refuses every write with [`Error::Poisoned`], naming that failure.
    pub fn write(&mut self, state: ControlState, dir_path: &std::path::Path) -> Result<()> {
        // The log is poisoned by then, and every writer checks it under the control lock; this
        // is the last line. A write after a failed one would go to the same slot (the generation
        // did not move), over a declaration a reopen is to finish, and its success would make
        // the file say what memory says, not what the failed write may have left.
        if let Some(first) = &self.failed_write {
            return Err(Error::Poisoned {
                cause: Arc::new(first.clone()),
            });
        }
        if state.membership.len() > MEMBERSHIP_BYTES_MAX {
            return Err(Error::invalid(
                "membership",
                format!(
                    "{} bytes, at most {MEMBERSHIP_BYTES_MAX}",
                    state.membership.len()
                ),
            ));
        }
        // The copy this write leaves as the fallback is the current one. If it declares a
        // truncation or a reset in progress that this write ends, it must not stay: recovery
        // falls back to the older copy when the newest is damaged, and would redo the cut (or
        // the reset) over records acknowledged since. Nor if it names a checkpoint or a first
        // LSN that this write moves: the old snapshot and the compacted segments are removed
        // once this write is durable, and a fallback to a copy naming them would refuse the log
        // (found by review on 2026-12-03). Such writes go into both slots.
        let ends_an_operation = (self.state.pending_cut.is_some() && state.pending_cut.is_none())
            || (self.state.reset_pending && !state.reset_pending);
        let moves_what_files_hold =
            self.state.checkpoint != state.checkpoint || self.state.first_lsn != state.first_lsn;
        let copies = if ends_an_operation || moves_what_files_hold {
            2
        } else {
            1
        };
        let path = dir_path.join(FILE_NAME);
        for _ in 0..copies {
            let generation = self.generation + 1;
            let written = self
                .file
                .write_at(slot_offset(generation), &[&state.encode(generation)])
                .map_err(|e| Error::io("write", &path, e))
                .and_then(|()| {
                    self.file
                        .sync()
                        .map_err(|e| Error::io(self.file.sync_calls(), &path, e))
                });
            if let Err(e) = written {
                // The state in memory stays the last one known durable; but the one that
                // failed may be on disk too, and what it declares removed is not answered for
                // (until 2026-12-06 a poisoned log still read past the cut of a truncation
                // whose declaring write failed, records a reopen could cut).
                if state.declares_an_operation() {
                    self.failed_declaration = Some(state);
                }
                self.failed_write = Some(e.clone());
                return Err(e);
            }
            self.generation = generation;
        }
        // The copy written over was the older one: now it holds this state or the one before,
        // which declared nothing the newest has ended.
        self.older_is_stale = false;
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot a newer build wrote (its magic's last byte is its version) is a version this
    /// build cannot read. Taken for a torn slot, the open fell back to the older copy: an older
    /// term, vote and watermark (found by review on 2026-12-08).
    #[test]
    fn a_slot_of_a_newer_build_is_refused_not_taken_for_torn() {
        for (magic_last, field) in [(2u8, 1u32), (2, 2)] {
            let disk = crate::SimDisk::new();
            let dir = disk.dir(std::path::Path::new("/sim"));
            let mut control = Control::create(&dir, ControlState::empty()).unwrap();
            let durable = ControlState {
                durable_lsn: 5,
                ..ControlState::empty()
            };
            control.write(durable, dir.path()).unwrap();
            let generation = control.generation;
            // The next generation, in the slot the next write would use, as a newer build
            // writes it.
            let newer = ControlState {
                durable_lsn: 9,
                ..ControlState::empty()
            };
            let mut slot = newer.encode(generation + 1);
            slot[7] = magic_last;
            slot[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&field.to_le_bytes());
            let crc = crc32c::crc32c(&slot[..CRC_OFFSET]);
            slot[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
            let at = ((generation + 1) % 2) * SLOT_BYTES as u64;
            disk.overwrite(FILE_NAME, at, &slot);
            match Control::open(&dir) {
                Err(Error::UnsupportedVersion {
                    found, supported, ..
                }) => assert_eq!((found, supported), (2, 1)),
                Err(other) => panic!("expected UnsupportedVersion, got {other}"),
                Ok(opened) => panic!(
                    "opened the older copy, durable LSN {}",
                    opened.state().durable_lsn
                ),
            }
        }
    }

    /// Regression: the first write after creation used to overwrite the only valid copy.
    #[test]
    fn a_torn_write_never_destroys_the_newest_valid_copy() {
        for seed in 0..50 {
            let disk = crate::SimDisk::new();
            let dir = disk.dir(std::path::Path::new("/sim"));
            let mut control = Control::create(&dir, ControlState::empty()).unwrap();
            for durable in 1..=(seed % 4) {
                let state = ControlState {
                    durable_lsn: durable,
                    ..ControlState::empty()
                };
                control.write(state, dir.path()).unwrap();
            }
            disk.fail_next_sync(libc::EIO);
            let torn = ControlState {
                durable_lsn: 99,
                ..ControlState::empty()
            };
            assert!(control.write(torn, dir.path()).is_err());
            let crashed = disk.crash(seed);
            let reopened = Control::open(&crashed.dir(std::path::Path::new("/sim"))).unwrap();
            assert!(
                [seed % 4, 99].contains(&reopened.state().durable_lsn),
                "seed {seed}"
            );
        }
    }

    /// Regression: a checkpoint or a compaction wrote one slot, and the files the other slot
    /// named (the old snapshot, the compacted segments) were then removed: with the newest
    /// copy damaged, the fallback named files that were gone.
    #[test]
    fn a_new_checkpoint_or_first_lsn_is_in_both_slots() {
        let disk = crate::SimDisk::new();
        let dir = disk.dir(std::path::Path::new("/sim"));
        let mut control = Control::create(&dir, ControlState::empty()).unwrap();
        let durable = |lsn| ControlState {
            durable_lsn: lsn,
            ..ControlState::empty()
        };
        control.write(durable(10), dir.path()).unwrap();
        let checkpointed = ControlState {
            checkpoint: Some((8, 1)),
            ..durable(10)
        };
        let compacted = ControlState {
            first_lsn: 6,
            ..checkpointed.clone()
        };
        for state in [checkpointed, compacted] {
            control.write(state.clone(), dir.path()).unwrap();
            // Either slot damaged: the other holds the same state.
            for damaged in 0..2u64 {
                let copy = disk.crash(0);
                copy.flip_bit(FILE_NAME, damaged * SLOT_BYTES as u64 + 20, 0);
                let reopened = Control::open(&copy.dir(std::path::Path::new("/sim"))).unwrap();
                assert_eq!(reopened.state(), &state, "slot {damaged} damaged");
            }
            // A write that moves neither goes into one slot, as before.
            let generation = control.generation;
            let later = ControlState {
                durable_lsn: 11,
                ..state
            };
            control.write(later, dir.path()).unwrap();
            assert_eq!(control.generation, generation + 1);
        }
    }

    /// A declaration of a reset written into both slots whose second copy fails: the disk
    /// holds it (a reopen finishes the reset), though the state in memory stays the last one
    /// known durable. What it removes is not answered for: `may_remove` says so.
    #[test]
    fn a_declaration_whose_write_failed_may_remove_what_it_declared() {
        let disk = crate::SimDisk::new();
        let dir = disk.dir(std::path::Path::new("/sim"));
        let mut control = Control::create(&dir, ControlState::empty()).unwrap();
        let durable = ControlState {
            durable_lsn: 10,
            ..ControlState::empty()
        };
        control.write(durable.clone(), dir.path()).unwrap();
        assert!(!control.may_remove(10));
        // A reset moves the first LSN and the checkpoint: two copies, the second one fails.
        let reset = ControlState {
            first_lsn: 13,
            checkpoint: Some((12, 3)),
            reset_pending: true,
            ..durable.clone()
        };
        disk.fail_sync_after(1, libc::EIO);
        assert!(control.write(reset, dir.path()).is_err());
        assert_eq!(control.state(), &durable);
        assert!(control.may_remove(1));
        assert!(Control::open(&dir).unwrap().state().reset_pending);
        // A cut's declaration is one copy; its sync fails.
        let mut control = Control::create(&dir, durable.clone()).unwrap();
        let cut = ControlState {
            pending_cut: Some(6),
            ..durable.clone()
        };
        disk.fail_next_sync(libc::EIO);
        assert!(control.write(cut, dir.path()).is_err());
        assert_eq!(control.state(), &durable);
        assert!(!control.may_remove(6));
        assert!(control.may_remove(7));
        // A failed write that declares nothing changes nothing.
        let mut control = Control::create(&dir, durable.clone()).unwrap();
        disk.fail_next_sync(libc::EIO);
        let later = ControlState {
            durable_lsn: 12,
            ..durable
        };
        assert!(control.write(later, dir.path()).is_err());
        assert!(!control.may_remove(12));
    }

    /// After a failed write the file takes no more: the next write would go to the slot the
    /// failed one went to, and a cut declared there, which a reopen is to finish, would be gone
    /// from the disk. Until 2026-12-06 only the callers' checks of the log stood in the way.
    #[test]
    fn no_write_follows_a_failed_one() {
        let disk = crate::SimDisk::new();
        let dir = disk.dir(std::path::Path::new("/sim"));
        let durable = ControlState {
            durable_lsn: 10,
            ..ControlState::empty()
        };
        let mut control = Control::create(&dir, durable.clone()).unwrap();
        let cut = ControlState {
            pending_cut: Some(6),
            ..durable.clone()
        };
        disk.fail_next_sync(libc::EIO);
        let failed = control.write(cut, dir.path()).unwrap_err();
        let later = ControlState {
            durable_lsn: 12,
            ..durable.clone()
        };
        match control.write(later, dir.path()) {
            Err(Error::Poisoned { cause }) => assert_eq!(cause.to_string(), failed.to_string()),
            other => panic!("a write after a failed one: {other:?}"),
        }
        assert_eq!(control.state(), &durable);
        assert_eq!(
            Control::open(&dir).unwrap().state().pending_cut,
            Some(6),
            "the failed declaration is still the newest copy"
        );
    }

    #[test]
    fn slot_round_trip() {
        let state = ControlState {
            durable_lsn: 10,
            first_lsn: 3,
            checkpoint: Some((5, 2)),
            hard_state: HardState {
                term: 4,
                vote: 2,
                commit: 9,
            },
            first_epoch: 1,
            pending_cut: Some(8),
            reset_pending: true,
            membership: b"voters 1 2 3".to_vec(),
        };
        let bytes = state.encode(42);
        assert_eq!(
            ControlState::decode(&bytes, "c").unwrap(),
            Some((42, state))
        );
        let mut torn = bytes;
        torn[100] ^= 1;
        assert_eq!(ControlState::decode(&torn, "c").unwrap(), None);
    }

    /// A copy whose checksum holds but whose LSNs no log reaches is refused, naming the field:
    /// the next append after a first LSN near `u64::MAX` would overflow.
    #[test]
    fn lsns_past_the_largest_are_refused_though_the_checksum_holds() {
        let fine = ControlState {
            durable_lsn: 10,
            first_lsn: 3,
            checkpoint: Some((5, 2)),
            pending_cut: Some(8),
            ..ControlState::empty()
        };
        assert!(ControlState::decode(&fine.encode(1), "c")
            .unwrap()
            .is_some());
        let past = segment::LSN_MAX + 1;
        for (field, state) in [
            (
                "first LSN",
                ControlState {
                    first_lsn: past,
                    ..fine.clone()
                },
            ),
            (
                "durable LSN",
                ControlState {
                    durable_lsn: past,
                    ..fine.clone()
                },
            ),
            (
                "checkpoint LSN",
                ControlState {
                    checkpoint: Some((past, 1)),
                    ..fine.clone()
                },
            ),
            (
                "pending cut",
                ControlState {
                    pending_cut: Some(past),
                    ..fine.clone()
                },
            ),
        ] {
            match ControlState::decode(&state.encode(1), "c") {
                Err(Error::BadFile { reason, .. }) => {
                    assert!(reason.starts_with(field), "{reason}")
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // The generation too: the next write would overflow it (a panic in a debug build, and
        // a wrap to 0 in a release build, which the next open would take for the older copy).
        match ControlState::decode(&fine.encode(u64::MAX), "c") {
            Err(Error::BadFile { reason, .. }) => {
                assert!(reason.starts_with("generation"), "{reason}")
            }
            other => panic!("generation: {other:?}"),
        }
        assert!(ControlState::decode(&fine.encode(GENERATION_MAX), "c")
            .unwrap()
            .is_some());
    }
}
