//! raft-rs's `Storage` over rwal-wal: entries are WAL records (LSN = index, epoch = term), the
//! hard state and membership live in the control file, snapshots are WAL checkpoints.

use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use rwal_wal::{Lsn, Wal};

use crate::codec;
use crate::error::{Error, Result};

/// What raft's snapshot message carries instead of the snapshot's bytes: the bytes follow
/// separately, in chunks (see `snapshot_stream.rs`).
pub(crate) const DESCRIPTOR_MAGIC: &[u8; 8] = b"rwaldsc1";

/// The epoch of the retained entry at `lsn` from `runs` (`(first LSN, term)` of each run of
/// equal terms, ascending, as `WalStorage` keeps them) and the first retained LSN, if they
/// cover it (not below `first`, nor below the first run).
pub(crate) fn epoch_in_runs(runs: &[(Lsn, u64)], first: Lsn, lsn: Lsn) -> Option<u64> {
    let at = runs.partition_point(|run| run.0 <= lsn);
    (lsn >= first && at > 0).then(|| runs[at - 1].1)
}

/// raft-rs's storage: the WAL plus the few facts raft asks for more often than the WAL could
/// answer them cheaply.
pub(crate) struct WalStorage {
    wal: Arc<Wal>,
    /// `(first LSN, term)` of each run of equal terms among retained records, ascending: the
    /// answer to `term(idx)` without reading a record header. Shared (copied on change, which
    /// is rare: a new term's first entry, a cut, a compaction, a snapshot) with the node's
    /// waiters, which read their committed entries' epochs from it (`epoch_runs`).
    runs: Arc<Vec<(Lsn, u64)>>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Set when raft asked for a snapshot that no checkpoint can serve (there is none, or the
    /// follower is not in its membership): the replica then asks the engine for a new one.
    snapshot_wanted: std::cell::Cell<bool>,
    /// Why the latest checkpoint's snapshot could not be offered, when that was an error (not
    /// read now: no descriptor left, damage), for the replica to note.
    snapshot_problem: std::cell::RefCell<Option<String>>,
    /// The highest LSN of a record found damaged while entries were read to send to a
    /// follower: followers that need one are sent a checkpoint that covers it instead, so no
    /// snapshot below it is offered from then on (docs/replication.md section 4.5). Forgotten
    /// when the log is cut below it or replaced (0: none found; LSNs start at 1).
    damage_floor: std::cell::Cell<Lsn>,
    /// The engine's applied LSN, as the replica last told (`set_applied`): damage is worked
    /// around only at or below it, where the engine's state holds the record's effect.
    applied: std::cell::Cell<Lsn>,
    /// What the damage was, until the replica notes it (`take_damage`).
    damage_problem: std::cell::RefCell<Option<(Lsn, String)>>,
    /// Entries appended and not yet known durable, oldest first: raft reads them back (to send
    /// them to a follower) once told they are stable, and a reader of the log sees durable
    /// records only. Dropped once durable (`forget_durable`).
    recent: VecDeque<Entry>,
}

impl WalStorage {
    /// Reads the hard state and membership from the control file (or the checkpoint's snapshot
    /// when that is newer) and the terms of the retained records.
    pub(crate) fn open(wal: Arc<Wal>) -> Result<WalStorage> {
        let (stored, membership) = wal.replication_state();
        let last = wal.last_lsn();
        let mut conf_state = ConfState::default();
        let mut conf_at = 0;
        if let Some((at, conf)) = codec::decode_membership(&membership)? {
            conf_state = conf;
            conf_at = at;
        }
        if let Some(checkpoint) = wal.latest_checkpoint() {
            if checkpoint.lsn > conf_at {
                // A crash between installing a snapshot and storing its membership: the
                // snapshot's own header is the truth as of its LSN.
                if let Some(conf) = read_snapshot_membership(&wal)? {
                    conf_state = conf;
                }
            }
        }
        let mut runs: Vec<(Lsn, u64)> = Vec::new();
        let first = loop {
            let first = wal.first_lsn();
            if last < first {
                break first;
            }
            let mut reader = match wal.reader(first) {
                Ok(reader) => reader,
                // The log's background pass compacted between the two reads: from the new
                // first LSN. The reader, once made, pins what it reads.
                Err(rwal_wal::Error::Compacted { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(record) = reader.next()? {
                if runs.last().map(|r| r.1) != Some(record.epoch) {
                    runs.push((record.lsn, record.epoch));
                }
            }
            break first;
        };
        let last_term = match runs.last() {
            Some(run) => run.1,
            None => wal.epoch_at(first - 1)?,
        };
        let mut hard_state = HardState::default();
        // Raft's term is at least the last entry's (a crash may have lost a lazily stored
        // term raise; raising it without a vote is always safe).
        hard_state.term = stored.term.max(last_term);
        hard_state.vote = if stored.term >= last_term {
            stored.vote
        } else {
            0
        };
        // Everything up to the checkpoint is committed (a checkpoint is only taken at an
        // applied LSN), and raft-rs requires the commit at least at `first_index - 1`. The
        // stored commit may be older: it is written lazily.
        let checkpoint = wal.latest_checkpoint().map_or(0, |c| c.lsn);
        // The stored commit is an LSN this log held durably when it was stored (the applied
        // LSN), and so is the latest checkpoint's. A log that ends below either lost records
        // it had synced: a disk that dropped acknowledged writes. Running on, this node would
        // vote as if it never had them, and could elect a leader that lacks acknowledged
        // writes (found by review, 2026-12-03: it was clamped and went unnoticed).
        let end = last.max(first - 1);
        for (what, lsn) in [
            ("the commit it stored", stored.commit),
            ("its latest checkpoint", checkpoint),
        ] {
            if lsn > end {
                return Err(Error::invalid(
                    "dir",
                    format!(
                        "{}: the log ends at LSN {end}, below {what} at LSN {lsn}: this disk \
                         lost records it had synced, and a member that forgot what it \
                         acknowledged must not vote. Move the directory aside and add the node \
                         back as a new member (join)",
                        wal.dir().display()
                    ),
                ));
            }
        }
        hard_state.commit = stored.commit.max(first - 1).max(checkpoint);
        Ok(WalStorage {
            wal,
            runs: Arc::new(runs),
            hard_state,
            conf_state,
            snapshot_wanted: std::cell::Cell::new(false),
            snapshot_problem: std::cell::RefCell::new(None),
            damage_floor: std::cell::Cell::new(0),
            applied: std::cell::Cell::new(0),
            damage_problem: std::cell::RefCell::new(None),
            recent: VecDeque::new(),
        })
    }

    /// The membership the node runs with now (after applying a change).
    pub(crate) fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// Appends raft's new entries, first cutting a divergent suffix; not yet durable.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last = self.wal.last_lsn();
        if first.index <= last {
            self.wal.truncate_after(first.index - 1)?;
            if self.snapshot_floor() >= first.index {
                // The damaged record is cut: what is written at its LSN now is new.
                self.damage_floor.set(0);
            }
            Arc::make_mut(&mut self.runs).retain(|run| run.0 < first.index);
            self.recent.retain(|entry| entry.index < first.index);
        } else if first.index != last + 1 {
            return Err(Error::Raft(format!(
                "entries start at {} but the log ends at {last}",
                first.index
            )));
        }
        let mut at = 0;
        while at < entries.len() {
            // One WAL call per stretch of equal kind and term.
            let (kind, payload) = codec::record_of(&entries[at]);
            let term = entries[at].term;
            let mut payloads = vec![payload];
            let mut end = at + 1;
            while end < entries.len() && entries[end].term == term {
                let (next_kind, next_payload) = codec::record_of(&entries[end]);
                if next_kind != kind {
                    break;
                }
                payloads.push(next_payload);
                end += 1;
            }
            let slices: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
            let lsn = self.wal.append_with(kind, term, &slices)?;
            if lsn != entries[at].index {
                return Err(Error::Raft(format!(
                    "entry {} was stored at LSN {lsn}",
                    entries[at].index
                )));
            }
            if self.runs.last().map(|r| r.1) != Some(term) {
                Arc::make_mut(&mut self.runs).push((lsn, term));
            }
            at = end;
        }
        self.recent.extend(entries.iter().cloned());
        Ok(())
    }

    /// Forgets the copies of entries that are durable now (the log serves them).
    pub(crate) fn forget_durable(&mut self) {
        let durable = self.wal.durable_lsn();
        while self.recent.front().is_some_and(|e| e.index <= durable) {
            self.recent.pop_front();
        }
    }

    /// Makes every appended entry durable (group commit).
    pub(crate) fn sync(&self) -> Result<()> {
        let last = self.wal.last_lsn();
        if last > self.wal.durable_lsn() {
            self.wal.commit(last)?;
        }
        Ok(())
    }

    /// Whether raft asked for a snapshot no checkpoint could serve since the last call.
    pub(crate) fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Why the latest checkpoint's snapshot could not be offered at raft's last request, if an
    /// error was the reason.
    pub(crate) fn take_snapshot_problem(&self) -> Option<String> {
        self.snapshot_problem.take()
    }

    /// A damaged record found by a read for a follower since the last call: its LSN and what
    /// was wrong.
    pub(crate) fn take_damage(&self) -> Option<(Lsn, String)> {
        self.damage_problem.take()
    }

    /// The least LSN a checkpoint must reach to be sent to a follower: every damaged record
    /// found (0 when none was).
    pub(crate) fn snapshot_floor(&self) -> Lsn {
        self.damage_floor.get()
    }

    /// The engine applied every entry through `lsn`.
    pub(crate) fn set_applied(&self, lsn: Lsn) {
        self.applied.set(lsn);
    }

    /// Asks for a new checkpoint, as raft's request for a snapshot no checkpoint serves does:
    /// for a latest snapshot found damaged while it was sent.
    pub(crate) fn want_snapshot(&self) {
        self.snapshot_wanted.set(true);
    }

    /// The snapshot of the latest checkpoint, described for raft, if it serves a follower that
    /// needs `request_index` and is `to`: `Err(None)` if it does not (there is none, it is too
    /// old, its membership does not name `to`), `Err(Some((why, damaged)))` if it could not be
    /// read, `damaged` when the file itself is at fault (a new checkpoint replaces it; other
    /// failures, a descriptor or memory short, may pass).
    fn offered_snapshot(
        &self,
        request_index: u64,
        to: u64,
    ) -> std::result::Result<Snapshot, Option<(String, bool)>> {
        let opened = self.wal.open_snapshot().map_err(|e| {
            let damaged = matches!(
                e,
                rwal_wal::Error::Corrupted { .. } | rwal_wal::Error::BadFile { .. }
            );
            Some((e.to_string(), damaged))
        })?;
        let Some(mut reader) = opened else {
            return Err(None);
        };
        if reader.lsn() < request_index.max(self.snapshot_floor()) {
            return Err(None);
        }
        // The membership is in the blob's header; the rest streams separately.
        let mut blob = Vec::new();
        reader
            .by_ref()
            .take(crate::snapshot_stream::HEAD_BYTES_MAX)
            .read_to_end(&mut blob)
            .map_err(|e| {
                let damaged = e.kind() == std::io::ErrorKind::InvalidData;
                Some((format!("reading its header: {e}"), damaged))
            })?;
        let conf_state = codec::decode_snapshot(&blob)
            .map_err(|e| Some((e.to_string(), true)))?
            .0
            .conf;
        let member = [
            &conf_state.voters,
            &conf_state.learners,
            &conf_state.voters_outgoing,
            &conf_state.learners_next,
        ]
        .iter()
        .any(|ids| ids.contains(&to));
        if !member {
            // raft-rs refuses a snapshot whose membership does not name the receiver (a node
            // added after the checkpoint): a newer checkpoint is needed.
            return Err(None);
        }
        let mut snapshot = Snapshot::default();
        snapshot.data = encode_descriptor(reader.lsn(), reader.epoch(), reader.len()).into();
        let meta = snapshot.mut_metadata();
        meta.index = reader.lsn();
        meta.term = reader.epoch();
        meta.set_conf_state(conf_state);
        Ok(snapshot)
    }

    /// The hard state raft starts from after a reopen.
    pub(crate) fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Replaces the whole log with a snapshot received from the leader (in this crate's
    /// snapshot format, its file renamed into place) and stores its membership.
    pub(crate) fn install_snapshot(
        &mut self,
        meta: &SnapshotMetadata,
        received: rwal_wal::ReceivedSnapshot,
    ) -> Result<()> {
        self.wal.reset_to_received(received)?;
        self.damage_floor.set(0);
        self.applied.set(meta.index);
        Arc::make_mut(&mut self.runs).clear();
        self.recent.clear();
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.commit = meta.index;
        self.hard_state.term = self.hard_state.term.max(meta.term);
        Ok(())
    }

    /// Drops the runs below the first retained LSN (after a compaction).
    pub(crate) fn forget_compacted(&mut self) {
        let first = self.wal.first_lsn();
        let keep_from = self
            .runs
            .partition_point(|run| run.0 <= first)
            .saturating_sub(1);
        if keep_from > 0 {
            Arc::make_mut(&mut self.runs).drain(..keep_from);
        }
    }

    /// The first retained LSN and the runs of equal terms from it on, for answering the epoch
    /// of a committed entry off the node's thread (`Node::wait_committed`, `epoch_in_runs`).
    pub(crate) fn epoch_runs(&self) -> (Lsn, Arc<Vec<(Lsn, u64)>>) {
        (self.wal.first_lsn(), self.runs.clone())
    }

    /// Reads entries `low..high` from the log (every one durable) into `entries`, stopping
    /// past `max_size` bytes in all (`size` counts what `entries` holds), but never before
    /// the first entry. `false` if the log ended first.
    fn read_durable(
        &self,
        low: u64,
        high: u64,
        max_size: u64,
        size: &mut u64,
        entries: &mut Vec<Entry>,
    ) -> Result<bool> {
        let mut reader = self.wal.reader(low)?;
        while reader.next_lsn() < high {
            let Some(record) = reader.next()? else {
                return Ok(false);
            };
            let entry = codec::entry_of(record.lsn, record.epoch, record.kind, record.data)?;
            *size += codec::entry_size(&entry);
            if !entries.is_empty() && *size > max_size {
                break;
            }
            entries.push(entry);
        }
        Ok(true)
    }

    /// A record of the log that cannot be read for a follower (`damage`, at `lsn`, which the
    /// engine applied): raft is told the entries are compacted, so it sends a snapshot
    /// instead, and a snapshot is offered only from a checkpoint that covers the damage (the
    /// replica writes one from the engine). The follower gets the record's effect from the
    /// engine's state, which applied it before the copy on the disk went bad.
    fn compacted_by_damage(&self, lsn: Lsn, damage: &rwal_wal::Error) -> raft::Error {
        self.damage_floor.set(self.damage_floor.get().max(lsn));
        *self.damage_problem.borrow_mut() = Some((lsn, damage.to_string()));
        raft::Error::Store(StorageError::Compacted)
    }

    fn store_error(e: impl Into<Error>) -> raft::Error {
        let e: Error = e.into();
        match e {
            Error::Wal(rwal_wal::Error::Compacted { .. }) => {
                raft::Error::Store(StorageError::Compacted)
            }
            other => raft::Error::Store(StorageError::Other(Box::new(other))),
        }
    }
}

/// Reads the latest checkpoint's snapshot blob whole (tests: the replica reads it through
/// `SnapshotReader::checked_bytes`, without a copy).
#[cfg(test)]
pub(crate) fn read_snapshot_blob(wal: &Wal) -> Result<Option<Vec<u8>>> {
    let Some(mut reader) = wal.open_snapshot()? else {
        return Ok(None);
    };
    let mut blob = Vec::with_capacity(reader.len() as usize);
    reader
        .read_to_end(&mut blob)
        .map_err(|e| Error::BadSnapshot {
            reason: format!("reading the latest snapshot: {e}"),
        })?;
    Ok(Some(blob))
}

/// The membership in the latest snapshot's header, read without the engine's bytes after it
/// (its checksum, over the whole body, is checked when the engine is restored from it:
/// `SnapshotReader::checked_bytes`).
pub(crate) fn read_snapshot_membership(wal: &Wal) -> Result<Option<ConfState>> {
    let Some(reader) = wal.open_snapshot()? else {
        return Ok(None);
    };
    let mut header = Vec::new();
    reader
        .take(crate::snapshot_stream::HEAD_BYTES_MAX)
        .read_to_end(&mut header)
        .map_err(|e| Error::BadSnapshot {
            reason: format!("reading the latest snapshot's header: {e}"),
        })?;
    Ok(Some(codec::decode_snapshot(&header)?.0.conf))
}

/// Encodes what raft's snapshot message carries: which checkpoint, and how long it is.
pub(crate) fn encode_descriptor(lsn: Lsn, epoch: u64, bytes: u64) -> Vec<u8> {
    let mut d = Vec::with_capacity(32);
    d.extend_from_slice(DESCRIPTOR_MAGIC);
    d.extend_from_slice(&lsn.to_le_bytes());
    d.extend_from_slice(&epoch.to_le_bytes());
    d.extend_from_slice(&bytes.to_le_bytes());
    d
}

impl raft::Storage for WalStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let first = self.wal.first_lsn();
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.wal.last_lsn() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries = Vec::new();
        if low >= high {
            return Ok(entries);
        }
        // Below the oldest copy kept, the log has every entry durable.
        let from_log_below = self
            .recent
            .front()
            .map_or(high, |e| e.index.max(low))
            .min(high);
        let mut size = 0u64;
        if low < from_log_below {
            match self.read_durable(low, from_log_below, max_size, &mut size, &mut entries) {
                Ok(true) => {}
                Ok(false) => return Err(raft::Error::Store(StorageError::Unavailable)),
                // Only for a follower (raft reads for no one else asynchronously: a node that
                // cannot read what it must apply stops), and only for a record the engine
                // applied. One not applied yet cannot be covered by a checkpoint (if it is not
                // committed, only this node may hold it, and this leader would wait forever):
                // the node stops, as for any other failed read, and another member leads.
                Err(Error::Wal(
                    damage @ (rwal_wal::Error::Corrupted { .. } | rwal_wal::Error::BadFile { .. }),
                )) if context.can_async() => {
                    let lsn = match damage {
                        rwal_wal::Error::Corrupted { lsn, .. } => lsn,
                        _ => low + entries.len() as u64,
                    };
                    if lsn > self.applied.get() {
                        return Err(Self::store_error(Error::Wal(damage)));
                    }
                    return Err(self.compacted_by_damage(lsn, &damage));
                }
                Err(e) => return Err(Self::store_error(e)),
            }
            if entries.len() as u64 != from_log_below - low {
                return Ok(entries);
            }
        }
        let copies = self.recent.iter().skip_while(|e| e.index < from_log_below);
        for entry in copies.take_while(|e| e.index < high) {
            size += codec::entry_size(entry);
            if !entries.is_empty() && size > max_size {
                break;
            }
            entries.push(entry.clone());
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let first = self.wal.first_lsn();
        if idx + 1 < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.wal.last_lsn() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(term) = epoch_in_runs(&self.runs, first, idx) {
            return Ok(term);
        }
        self.wal.epoch_at(idx).map_err(Self::store_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.wal.first_lsn())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.wal.last_lsn())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.offered_snapshot(request_index, to).map_err(|problem| {
            // "Temporarily unavailable" is the one error raft-rs takes here: any other stops
            // the leader with a panic, and a snapshot that cannot be read now (no descriptor
            // left, a damaged file) must not. raft asks again at its next attempt. A new
            // checkpoint of the engine's state is wished for when none serves, and when the
            // latest is damaged (the new one replaces it); not for a failure that may pass,
            // which would otherwise write one at every attempt.
            let wanted = match problem {
                None => true,
                Some((reason, damaged)) => {
                    *self.snapshot_problem.borrow_mut() = Some(reason);
                    damaged
                }
            };
            if wanted {
                self.snapshot_wanted.set(true);
            }
            raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
        })
    }
}

#[cfg(test)]
mod tests {
    use raft::{GetEntriesContext, Storage as _};
    use rwal_wal::{Backend, Options, SimDisk};

    use super::*;

    fn user_entry(index: u64, term: u64) -> Entry {
        codec::entry_of(
            index,
            term,
            rwal_wal::RecordKind::User,
            format!("entry {index}").as_bytes(),
        )
        .unwrap()
    }

    /// Another thread (the persister, a checkpoint's, a compaction) can poison the log between
    /// the replica's check of it and a read raft-rs makes; raft-rs panics on any error there
    /// but `Compacted` and `LogTemporarilyUnavailable`. What it reads is durable (or the copy
    /// kept of what is not yet), so the read must still be answered. Until the log answered
    /// for its durable records after a failure, `entries` and the reader under it returned
    /// the poison.
    #[test]
    fn raft_still_reads_durable_entries_of_a_log_poisoned_behind_its_back() {
        let disk = SimDisk::new();
        let options = Options::new()
            .backend(Backend::Simulated(disk.clone()))
            .background_threads(false)
            .segment_bytes(1 << 20);
        let wal = Arc::new(Wal::open("/log", options).unwrap());
        let mut storage = WalStorage::open(wal.clone()).unwrap();
        let durable: Vec<Entry> = (1..=5).map(|i| user_entry(i, 2)).collect();
        storage.append(&durable).unwrap();
        storage.sync().unwrap();
        storage.forget_durable();
        storage.append(&[user_entry(6, 2)]).unwrap();

        // A sync on another thread fails; the storage is not told.
        disk.fail_next_sync(libc::EIO);
        assert!(wal.sync().is_err());
        assert!(matches!(
            wal.check_usable(),
            Err(rwal_wal::Error::Poisoned { .. })
        ));
        assert_eq!(wal.durable_lsn(), 5);

        // What raft-rs asks for to send an append or to apply: from the log up to its durable
        // LSN, then from the copy kept of entry 6.
        let read = storage
            .entries(2, 7, None, GetEntriesContext::empty(false))
            .unwrap();
        let mut expected = durable[1..].to_vec();
        expected.push(user_entry(6, 2));
        assert_eq!(read, expected);
        assert_eq!(storage.term(5).unwrap(), 2);
        assert_eq!(storage.term(0).unwrap(), 0);
        // Past what was durable, the log itself answers nothing.
        assert!(matches!(wal.read(6), Err(rwal_wal::Error::Poisoned { .. })));
        assert!(matches!(
            wal.reader(6),
            Err(rwal_wal::Error::Poisoned { .. })
        ));
    }
}
