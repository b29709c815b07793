//! The errors of the log. Every variant carries the fields that say what was expected and what
//! was found, so that a caller (or an operator reading a log line) can act on it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Lsn;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    Io {
        /// What the log was doing (`"fdatasync"`, `"create segment"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error the system returned.
        source: Arc<io::Error>,
    },
    /// The disk is full, or the user's disk quota is used up: a segment or the control file
    /// could not be created or grown. The log is still usable for reads, and appends work again
    /// once space is freed.
    NoSpace {
        /// What the log was doing.
        op: &'static str,
        /// The file concerned (the log's directory for a snapshot refused before it is
        /// received).
        path: PathBuf,
        /// Which limit: `"no space left on device"` (`ENOSPC`), `"disk quota exceeded"`
        /// (`EDQUOT`), or, for a snapshot refused before it is received
        /// ([`Wal::receive_snapshot`](crate::Wal::receive_snapshot)) and a segment refused
        /// before it is zero-filled, that less space is free than it takes.
        reason: &'static str,
    },
    /// Another open log (in this or another process) holds the directory, or a reader of a
    /// closed one still holds a record (see [`crate::Wal::close`]).
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The process holding the lock, where the system says (Linux's `/proc/locks`): this
        /// process's own id for another handle of this process.
        holder: Option<u32>,
    },
    /// The directory holds no log and the options did not ask to create one.
    NoLog {
        /// The directory.
        dir: PathBuf,
    },
    /// An argument or option is out of its range.
    InvalidArgument {
        /// The argument or option.
        name: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A record does not fit in a segment.
    RecordTooLarge {
        /// The payload length asked for.
        payload_bytes: u64,
        /// The largest payload a segment of this size can hold.
        max_payload_bytes: u64,
        /// The segment size in force.
        segment_bytes: u64,
    },
    /// A record at or below the durable watermark failed verification: acknowledged data is
    /// damaged. Recovery never returns it as data.
    Corrupted {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the record in the segment.
        offset: u64,
        /// The LSN expected at that position.
        lsn: Lsn,
        /// The checksum stored in the record header.
        expected_crc: u32,
        /// The checksum of the bytes found.
        found_crc: u32,
    },
    /// A segment header or the control file is damaged or not ours.
    BadFile {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },
    /// The file was written by a format version this build does not read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// An earlier write or sync failed; the log accepts nothing more. Reopen it to recover.
    Poisoned {
        /// The failure that poisoned the log.
        cause: Arc<Error>,
    },
    /// No record with this LSN was ever written (or it was cut by `truncate_after`).
    NotFound {
        /// The LSN asked for.
        lsn: Lsn,
        /// The newest LSN in the log.
        last_lsn: Lsn,
    },
    /// The record was appended but is not durable yet; readers never see past the durable LSN.
    NotDurable {
        /// The LSN asked for.
        lsn: Lsn,
        /// The newest durable LSN.
        durable_lsn: Lsn,
    },
    /// The record was removed by compaction.
    Compacted {
        /// The LSN asked for.
        lsn: Lsn,
        /// The oldest LSN still retained.
        first_retained: Lsn,
    },
    /// A reader or pin still holds records that an operation would remove.
    Pinned {
        /// The operation refused.
        op: &'static str,
        /// Who holds the records.
        holder: String,
        /// The LSN the holder is at.
        pinned_lsn: Lsn,
        /// The LSN the operation would have cut at.
        cut_lsn: Lsn,
    },
    /// A capped pin held back more of the log than its cap; the compactor released it.
    PinInvalidated {
        /// The pin's name.
        name: String,
        /// The LSN it was at.
        lsn: Lsn,
        /// Its cap.
        cap_bytes: u64,
    },
    /// A wait ran out of time.
    Timeout {
        /// What was waited for.
        waiting_for: &'static str,
    },
    /// The log was closed.
    Closed,
    /// This machine or build cannot do what was asked.
    Unsupported {
        /// What, and why.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        // A quota runs out as a disk fills up, and frees up the same way: the same answer.
        let reason = match source.raw_os_error() {
            Some(libc::ENOSPC) => Some("no space left on device"),
            Some(libc::EDQUOT) => Some("disk quota exceeded"),
            _ => None,
        };
        if let Some(reason) = reason {
            return Error::NoSpace { op, path, reason };
        }
        Error::Io {
            op,
            path,
            source: Arc::new(source),
        }
    }

    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            name,
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::NoSpace { op, path, reason } => write!(f, "{op} {}: {reason}", path.display()),
            Error::Locked { dir, holder: Some(pid) } if *pid == std::process::id() => write!(f, "log {} is already open in this process (by another handle, or by a reader of a closed handle still holding a record)", dir.display()),
            Error::Locked { dir, holder: Some(pid) } => write!(f, "log {} is already open in process {pid}", dir.display()),
            Error::Locked { dir, holder: None } => write!(f, "log {} is already open (locked by another handle or process, or by a reader of a closed handle still holding a record)", dir.display()),
            Error::NoLog { dir } => write!(f, "no log in {} (open with create to make one)", dir.display()),
            Error::InvalidArgument { name, reason } => write!(f, "invalid {name}: {reason}"),
            Error::RecordTooLarge { payload_bytes, max_payload_bytes, segment_bytes } => write!(
                f,
                "record of {payload_bytes} bytes does not fit: a segment of {segment_bytes} bytes holds at most {max_payload_bytes} bytes of payload"
            ),
            // Records below the durable watermark that no segment recovery kept holds (every
            // segment removed, or only compaction's leftovers there): recovery names the
            // directory. Said so, where the message read like damage to a record in a file
            // named after the directory, at offset 4096, with checksums 0x00000000 (a review on
            // 2026-12-05).
            Error::Corrupted { segment, lsn, .. }
                if segment.as_os_str().to_string_lossy().ends_with('/') =>
            {
                write!(
                    f,
                    "records from LSN {lsn} on are missing below the durable watermark: no \
                     segment of the log in {} holds them",
                    segment.display()
                )
            }
            // Equal checksums name no mismatch: the place holds no record of that LSN at all
            // (records missing from there on, a header of another LSN or malformed, bytes past
            // the last record that are not the log's). Said so, where the message gave two
            // equal checksums, often 0x00000000, as if they disagreed (a review, 2026-12-07).
            Error::Corrupted { segment, offset, lsn, expected_crc, found_crc }
                if expected_crc == found_crc =>
            {
                write!(
                    f,
                    "corrupted log at LSN {lsn}: {} at offset {offset} holds no valid record of that LSN (records missing from there, a malformed header or one of another LSN, or bytes that are not the log's)",
                    segment.display()
                )
            }
            Error::Corrupted { segment, offset, lsn, expected_crc, found_crc } => write!(
                f,
                "corrupted record at LSN {lsn} in {} at offset {offset}: checksum expected {expected_crc:#010x}, found {found_crc:#010x}",
                segment.display()
            ),
            Error::BadFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::UnsupportedVersion { path, found, supported } => write!(
                f,
                "{}: format version {found}, this build reads version {supported}",
                path.display()
            ),
            Error::Poisoned { cause } => write!(f, "log poisoned by an earlier failure: {cause}"),
            Error::NotFound { lsn, last_lsn } => write!(f, "LSN {lsn} was never written (last LSN is {last_lsn})"),
            Error::NotDurable { lsn, durable_lsn } => write!(f, "LSN {lsn} is not durable yet (durable LSN is {durable_lsn})"),
            Error::Compacted { lsn, first_retained } => write!(f, "LSN {lsn} was compacted away (first retained LSN is {first_retained})"),
            Error::Pinned { op, holder, pinned_lsn, cut_lsn } => write!(
                f,
                "{op} after LSN {cut_lsn} refused: {holder} holds LSN {pinned_lsn}"
            ),
            Error::PinInvalidated { name, lsn, cap_bytes } => write!(
                f,
                "pin {name} at LSN {lsn} was released: it held back more than its cap of {cap_bytes} bytes"
            ),
            Error::Timeout { waiting_for } => write!(f, "timed out waiting for {waiting_for}"),
            Error::Closed => write!(f, "log is closed"),
            Error::Unsupported { reason } => write!(f, "unsupported: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source.as_ref()),
            Error::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Damage with no checksum mismatch (records missing, a header of another LSN) is not
    /// described as one: the message gave two equal checksums as if they disagreed.
    #[test]
    fn corruption_without_a_checksum_mismatch_says_what_is_wrong() {
        let corrupted = |expected_crc, found_crc| Error::Corrupted {
            segment: PathBuf::from("/l/00000000000000000002.seg"),
            offset: 4096,
            lsn: 6,
            expected_crc,
            found_crc,
        };
        let missing = corrupted(0, 0).to_string();
        assert!(
            missing.contains("holds no valid record of that LSN")
                && missing.contains("00000000000000000002.seg at offset 4096")
                && !missing.contains("checksum"),
            "{missing}"
        );
        let mismatch = corrupted(0x1234, 0x5678).to_string();
        assert!(
            mismatch.contains("checksum expected 0x00001234, found 0x00005678"),
            "{mismatch}"
        );
    }

    /// A used-up quota is a full disk to the caller (`NoSpace`, not a poisoning I/O error),
    /// named as what it is.
    #[test]
    fn a_full_disk_and_a_used_up_quota_are_no_space() {
        for (errno, reason) in [
            (libc::ENOSPC, "no space left on device"),
            (libc::EDQUOT, "disk quota exceeded"),
        ] {
            let error = Error::io(
                "create segment",
                "/l/x.seg",
                io::Error::from_raw_os_error(errno),
            );
            match &error {
                Error::NoSpace {
                    op, reason: found, ..
                } => {
                    assert_eq!((*op, *found), ("create segment", reason))
                }
                other => panic!("errno {errno}: expected NoSpace, got {other:?}"),
            }
            assert_eq!(
                error.to_string(),
                format!("create segment /l/x.seg: {reason}")
            );
        }
        let other = Error::io("write", "/l/x.seg", io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(other, Error::Io { .. }), "{other:?}");
    }
}
