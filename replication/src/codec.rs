//! How raft's entries and snapshots are stored in rwal-wal: the byte formats of this crate.
//! `docs/replication.md` ("Storage") has the tables.
//!
//! - A user's proposal is a raft `EntryNormal` whose context is [`USER_CONTEXT`]; it is stored
//!   as a `User` record holding the payload verbatim, so that reads stay zero-copy.
//! - Every other entry (a new leader's empty entry, a membership change) is a `System` record
//!   holding the protobuf encoding of the whole raft `Entry`.
//! - A snapshot is the WAL checkpoint's snapshot blob: a header naming the membership as of the
//!   checkpoint, then the engine's bytes.

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType};
use rwal_wal::{Lsn, RecordKind};

use crate::error::{Error, Result};

/// The context of a user's proposal: what tells it apart from raft's own empty entries.
pub(crate) const USER_CONTEXT: &[u8] = b"u";

/// Whether a raft entry carries a user's record.
pub(crate) fn is_user(entry: &Entry) -> bool {
    entry.get_entry_type() == EntryType::EntryNormal && entry.context.as_ref() == USER_CONTEXT
}

/// The WAL record kind and payload that store `entry`.
pub(crate) fn record_of(entry: &Entry) -> (RecordKind, Vec<u8>) {
    if is_user(entry) {
        (RecordKind::User, entry.data.to_vec())
    } else {
        let bytes = entry
            .write_to_bytes()
            .expect("encoding a raft entry to memory cannot fail");
        (RecordKind::System, bytes)
    }
}

/// The raft entry stored in a WAL record.
pub(crate) fn entry_of(lsn: Lsn, epoch: u64, kind: RecordKind, data: &[u8]) -> Result<Entry> {
    match kind {
        RecordKind::User => {
            let mut entry = Entry::default();
            entry.set_entry_type(EntryType::EntryNormal);
            entry.index = lsn;
            entry.term = epoch;
            entry.data = data.to_vec().into();
            entry.context = USER_CONTEXT.to_vec().into();
            Ok(entry)
        }
        RecordKind::System => {
            let entry = Entry::parse_from_bytes(data).map_err(|e| Error::BadSnapshot {
                reason: format!("system record {lsn} does not decode as a raft entry: {e}"),
            })?;
            if entry.index != lsn || entry.term != epoch {
                return Err(Error::BadSnapshot {
                    reason: format!(
                        "system record {lsn} of epoch {epoch} holds entry {} of term {}",
                        entry.index, entry.term
                    ),
                });
            }
            Ok(entry)
        }
    }
}

/// The bytes a raft entry is counted as for raft's message-size limits.
pub(crate) fn entry_size(entry: &Entry) -> u64 {
    (entry.data.len() + entry.context.len() + 24) as u64
}

/// First bytes of a snapshot blob written by this crate: the engine's bytes start at a multiple
/// of [`ENGINE_ALIGN`].
const SNAPSHOT_MAGIC: &[u8; 8] = b"rwalsnp2";
/// First bytes of a snapshot blob written before 2026-12-05: the engine's bytes right after the
/// membership. Still read.
const SNAPSHOT_MAGIC_UNALIGNED: &[u8; 8] = b"rwalsnp1";
/// Magic, then the length of the encoded membership.
const SNAPSHOT_HEADER_BYTES: usize = 12;
/// Where the engine's bytes start in a blob, a multiple of this: the blob starts on a page of
/// the snapshot file's mapping (`rwal_wal::snapshot::BODY_OFFSET`), so the engine's `restore`
/// is given a page-aligned view.
pub(crate) const ENGINE_ALIGN: usize = 4096;

/// The blob stored as a checkpoint's snapshot: the membership as of the checkpoint, zeros up
/// to the next multiple of [`ENGINE_ALIGN`], then the engine's state.
pub(crate) fn encode_snapshot(conf_state: &ConfState, engine: &[u8]) -> Vec<u8> {
    let conf = conf_state
        .write_to_bytes()
        .expect("encoding a conf state to memory cannot fail");
    let engine_at = (SNAPSHOT_HEADER_BYTES + conf.len()).next_multiple_of(ENGINE_ALIGN);
    let mut blob = Vec::with_capacity(engine_at + engine.len());
    blob.extend_from_slice(SNAPSHOT_MAGIC);
    blob.extend_from_slice(&(conf.len() as u32).to_le_bytes());
    blob.extend_from_slice(&conf);
    blob.resize(engine_at, 0);
    blob.extend_from_slice(engine);
    blob
}

/// Splits a snapshot blob into the membership and the engine's bytes.
pub(crate) fn decode_snapshot(blob: &[u8]) -> Result<(ConfState, &[u8])> {
    let bad = |reason: String| Error::BadSnapshot { reason };
    let magic = blob.get(..8);
    let aligned = magic == Some(SNAPSHOT_MAGIC);
    if blob.len() < SNAPSHOT_HEADER_BYTES || !(aligned || magic == Some(SNAPSHOT_MAGIC_UNALIGNED)) {
        return Err(bad(format!(
            "{} bytes that do not start with {:?} (or {:?})",
            blob.len(),
            std::str::from_utf8(SNAPSHOT_MAGIC).unwrap_or(""),
            std::str::from_utf8(SNAPSHOT_MAGIC_UNALIGNED).unwrap_or("")
        )));
    }
    let conf_len = u32::from_le_bytes(blob[8..12].try_into().expect("4 bytes")) as usize;
    let conf_end = SNAPSHOT_HEADER_BYTES
        .checked_add(conf_len)
        .filter(|end| *end <= blob.len())
        .ok_or_else(|| {
            bad(format!(
                "membership of {conf_len} bytes in a blob of {}",
                blob.len()
            ))
        })?;
    let conf = ConfState::parse_from_bytes(&blob[SNAPSHOT_HEADER_BYTES..conf_end])
        .map_err(|e| bad(format!("membership does not decode: {e}")))?;
    if !aligned {
        return Ok((conf, &blob[conf_end..]));
    }
    let engine_at = conf_end.next_multiple_of(ENGINE_ALIGN);
    let padding = blob.get(conf_end..engine_at).ok_or_else(|| {
        bad(format!(
            "a blob of {} bytes ends before its engine's bytes, at {engine_at}",
            blob.len()
        ))
    })?;
    if padding.iter().any(|&b| b != 0) {
        return Err(bad(format!(
            "bytes other than zero between the membership and the engine's bytes, at {conf_end} to {engine_at}"
        )));
    }
    Ok((conf, &blob[engine_at..]))
}

/// The membership blob kept in the control file: the LSN of the last membership change
/// applied, then the membership as of it.
pub(crate) fn encode_membership(applied_at: Lsn, conf_state: &ConfState) -> Vec<u8> {
    let conf = conf_state
        .write_to_bytes()
        .expect("encoding a conf state to memory cannot fail");
    let mut blob = Vec::with_capacity(8 + conf.len());
    blob.extend_from_slice(&applied_at.to_le_bytes());
    blob.extend_from_slice(&conf);
    blob
}

/// [`encode_membership`], refused (`InvalidArgument` naming `name`) when the control file could
/// not hold it: checked before a membership is proposed or founded, since a replica that
/// failed to store it as it applied it would fail again at every restart.
pub(crate) fn encode_membership_that_fits(
    applied_at: Lsn,
    conf_state: &ConfState,
    name: &'static str,
) -> Result<Vec<u8>> {
    let blob = encode_membership(applied_at, conf_state);
    if blob.len() > rwal_wal::MEMBERSHIP_BYTES_MAX {
        return Err(Error::invalid(
            name,
            format!(
                "{} voters and {} learners take {} bytes in the control file, at most {}",
                conf_state.voters.len(),
                conf_state.learners.len(),
                blob.len(),
                rwal_wal::MEMBERSHIP_BYTES_MAX
            ),
        ));
    }
    Ok(blob)
}

/// The membership stored in the control file, if any.
pub(crate) fn decode_membership(blob: &[u8]) -> Result<Option<(Lsn, ConfState)>> {
    if blob.is_empty() {
        return Ok(None);
    }
    if blob.len() < 8 {
        return Err(Error::BadSnapshot {
            reason: format!("membership record of {} bytes", blob.len()),
        });
    }
    let at = u64::from_le_bytes(blob[..8].try_into().expect("8 bytes"));
    let conf = ConfState::parse_from_bytes(&blob[8..]).map_err(|e| Error::BadSnapshot {
        reason: format!("stored membership does not decode: {e}"),
    })?;
    Ok(Some((at, conf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_entries_are_stored_verbatim_and_come_back() {
        let mut entry = Entry::default();
        entry.index = 7;
        entry.term = 3;
        entry.data = b"payload".to_vec().into();
        entry.context = USER_CONTEXT.to_vec().into();
        let (kind, bytes) = record_of(&entry);
        assert_eq!(kind, RecordKind::User);
        assert_eq!(bytes, b"payload");
        assert_eq!(entry_of(7, 3, kind, &bytes).unwrap(), entry);
    }

    #[test]
    fn raft_entries_are_system_records() {
        let mut empty = Entry::default();
        empty.index = 9;
        empty.term = 4;
        let (kind, bytes) = record_of(&empty);
        assert_eq!(kind, RecordKind::System);
        assert_eq!(entry_of(9, 4, kind, &bytes).unwrap(), empty);
        // A user's empty payload is still a user record.
        let mut user_empty = empty.clone();
        user_empty.context = USER_CONTEXT.to_vec().into();
        assert_eq!(record_of(&user_empty).0, RecordKind::User);
        // A system record at the wrong place is refused.
        assert!(entry_of(10, 4, kind, &bytes).is_err());
        assert!(entry_of(9, 4, RecordKind::System, b"\xff\xff").is_err());
    }

    #[test]
    fn snapshot_blob_round_trip_and_damage() {
        let mut conf = ConfState::default();
        conf.voters = vec![1, 2, 3];
        conf.learners = vec![4];
        let blob = encode_snapshot(&conf, b"engine state");
        let (back, engine) = decode_snapshot(&blob).unwrap();
        assert_eq!(back, conf);
        assert_eq!(engine, b"engine state");
        // The engine's bytes start at a multiple of the alignment, right after the membership.
        let engine_at = engine.as_ptr() as usize - blob.as_ptr() as usize;
        assert_eq!(engine_at, ENGINE_ALIGN);
        // An empty state: the blob ends at the alignment, and a blob cut before it is damaged.
        let empty = encode_snapshot(&conf, b"");
        assert_eq!(empty.len(), ENGINE_ALIGN);
        assert_eq!(decode_snapshot(&empty).unwrap(), (conf.clone(), &b""[..]));
        assert!(decode_snapshot(&empty[..ENGINE_ALIGN - 1]).is_err());
        let mut stray = blob.clone();
        stray[ENGINE_ALIGN - 1] = 1;
        let reason = decode_snapshot(&stray).unwrap_err().to_string();
        assert!(reason.contains("other than zero"), "{reason}");
        // A blob of before the alignment (no padding) is still read.
        let conf_bytes = conf.write_to_bytes().unwrap();
        let mut unaligned = b"rwalsnp1".to_vec();
        unaligned.extend_from_slice(&(conf_bytes.len() as u32).to_le_bytes());
        unaligned.extend_from_slice(&conf_bytes);
        unaligned.extend_from_slice(b"older state");
        assert_eq!(
            decode_snapshot(&unaligned).unwrap(),
            (conf.clone(), &b"older state"[..])
        );
        assert!(decode_snapshot(&blob[..10]).is_err());
        let mut wrong = blob.clone();
        wrong[0] ^= 1;
        assert!(decode_snapshot(&wrong).is_err());
        let mut long = blob.clone();
        long[8] = 0xff;
        assert!(decode_snapshot(&long).is_err());
    }

    #[test]
    fn membership_round_trip() {
        let mut conf = ConfState::default();
        conf.voters = vec![1, 2];
        let blob = encode_membership(42, &conf);
        assert_eq!(decode_membership(&blob).unwrap(), Some((42, conf)));
        assert_eq!(decode_membership(&[]).unwrap(), None);
        assert!(decode_membership(&[1, 2]).is_err());
    }
}
