//! Snapshot files: the embedding engine's state image at a checkpoint, stored beside the log.
//!
//! ```text
//! offset size field
//!  0      8   magic          b"RWALSNP\x01"
//!  8      4   format_version FORMAT_VERSION
//! 12      4   flags          bit 0: a snapshot was given (else the body is empty by design)
//! 16      8   lsn            the checkpoint's LSN: the state includes every record up to it
//! 24      8   epoch          the epoch of the record at `lsn`
//! 32      8   body_bytes     length of the body
//! 40      4   body_crc       CRC32C of the body
//! 44     16   reserved       zero
//! 60      4   header_crc     CRC32C of bytes 0..60
//! 64   4032   unused         zero
//! 4096    -   body           the snapshot, verbatim
//! ```
//!
//! Files are named `snapshot-<lsn, 20 digits>.snap`, written under a `.tmp` name, synced, renamed
//! and the directory synced before the control file points at them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::writeback::WritebackPacer;
use crate::io::{Dir, File};
use crate::Lsn;

/// Where the body starts.
pub const BODY_OFFSET: u64 = 4096;
const MAGIC: [u8; 8] = *b"RWALSNP\x01";
const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 64;
const CRC_OFFSET: usize = 60;
/// Bytes written (and read) at a time: snapshots are streamed, never held whole in memory here.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The decoded header of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The checkpoint's LSN.
    pub lsn: Lsn,
    /// The epoch of the record at `lsn`.
    pub epoch: u64,
    /// Whether the engine gave a snapshot.
    pub has_snapshot: bool,
    /// Length of the body.
    pub body_bytes: u64,
    /// CRC32C of the body.
    pub body_crc: u32,
}

impl SnapshotHeader {
    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&u32::from(self.has_snapshot).to_le_bytes());
        b[16..24].copy_from_slice(&self.lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.epoch.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_bytes.to_le_bytes());
        b[40..44].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8], path: &std::path::Path) -> Result<SnapshotHeader> {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let stored = u32_at(CRC_OFFSET);
        let computed = crc32c::crc32c(&b[..CRC_OFFSET]);
        if stored != computed {
            return Err(Error::bad_file(
                path,
                format!("snapshot header checksum expected {stored:#010x}, found {computed:#010x}"),
            ));
        }
        // The magic's last byte is its version: a newer build's snapshot shares the first seven.
        if b[..7] != MAGIC[..7] {
            return Err(Error::bad_file(
                path,
                "not an rwal snapshot (bad magic under a valid checksum)",
            ));
        }
        if let Some(found) = crate::segment::other_version(b[7], u32_at(8), FORMAT_VERSION) {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(SnapshotHeader {
            has_snapshot: u32_at(12) & 1 != 0,
            lsn: u64_at(16),
            epoch: u64_at(24),
            body_bytes: u64_at(32),
            body_crc: u32_at(40),
        })
    }
}

/// The file name of the snapshot of checkpoint `lsn`.
pub fn file_name(lsn: Lsn) -> String {
    format!("snapshot-{lsn:020}.snap")
}

/// The checkpoint LSN in a snapshot file name, or `None`.
pub fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

/// A snapshot file being written: bytes are pushed in any chunks; `finish` makes it durable
/// under its final name.
pub(crate) struct SnapshotWriter {
    dir: Arc<dyn Dir>,
    file: Arc<dyn File>,
    name: String,
    temp: String,
    path: std::path::PathBuf,
    header: SnapshotHeader,
    at: u64,
    /// Writes the body back as it comes, so that `finish`'s sync does not hold the log's
    /// commits behind the whole snapshot (`io/writeback.rs`).
    pacer: WritebackPacer,
    /// Whether the temporary file got its final name; if not, dropping the writer removes it.
    renamed: bool,
    /// The process that created it: in a child forked from it, writes and the finish are
    /// refused, and a drop leaves the file to that process.
    created_in: crate::fork::OpeningProcess,
    /// A write failed: what it reported. The writer takes nothing more and cannot finish. Its
    /// file may hold part of a chunk the checksum counts, and a failed wait for the write-back
    /// has taken the file's write-back error, which the final `fdatasync` would no longer
    /// report: finishing could announce a snapshot whose bytes the disk never took.
    failed: Option<String>,
}

impl SnapshotWriter {
    /// Creates `snapshot-<lsn>.snap.<pid>-<n>.tmp` for a body of `body_bytes`.
    pub fn create(
        dir: &Arc<dyn Dir>,
        lsn: Lsn,
        epoch: u64,
        has_snapshot: bool,
        body_bytes: u64,
    ) -> Result<SnapshotWriter> {
        let name = file_name(lsn);
        // Each writer its own temporary file: two checkpoints at the same LSN may be written at
        // once (a replica's and its engine's); each renames a whole file over the final name.
        // The process id keeps a writer that outlived its log (and removes its file when
        // dropped) off the files of a process that opened the log since.
        static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
        let temp = format!(
            "{name}.{}-{}.tmp",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.path().join(&temp);
        match dir.remove(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
        let file_bytes = BODY_OFFSET.checked_add(body_bytes).ok_or_else(|| {
            Error::invalid(
                "snapshot",
                format!("{body_bytes} bytes: a snapshot file cannot be that long"),
            )
        })?;
        let file = dir
            .create_plain(&temp, file_bytes)
            .map_err(|e| Error::io("create snapshot", &path, e))?;
        let header = SnapshotHeader {
            lsn,
            epoch,
            has_snapshot,
            body_bytes,
            body_crc: 0,
        };
        Ok(SnapshotWriter {
            created_in: crate::fork::OpeningProcess::this_process(),
            dir: dir.clone(),
            file,
            name,
            temp,
            path,
            header,
            at: 0,
            pacer: WritebackPacer::new(BODY_OFFSET),
            renamed: false,
            failed: None,
        })
    }

    /// The checkpoint's LSN.
    pub fn lsn(&self) -> Lsn {
        self.header.lsn
    }

    /// The epoch of the record at the checkpoint's LSN.
    pub fn epoch(&self) -> u64 {
        self.header.epoch
    }

    /// The body's announced length.
    pub fn body_bytes(&self) -> u64 {
        self.header.body_bytes
    }

    /// Whether the file is in `dir` (the same directory object, not another opened on the
    /// same path).
    pub fn is_in(&self, dir: &Arc<dyn Dir>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.dir), Arc::as_ptr(dir))
    }

    /// Bytes of the body written so far.
    pub fn written(&self) -> u64 {
        self.at
    }

    /// CRC32C of the bytes of the body written so far.
    pub fn crc(&self) -> u32 {
        self.header.body_crc
    }

    /// Refuses to go on after a failed write (see `failed`).
    fn check_not_failed(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(cause) => Err(Error::invalid(
                "snapshot",
                format!("an earlier write of this snapshot failed ({cause}); abandon it"),
            )),
        }
    }

    /// Appends `data` to the body; more than the announced length is an error.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.created_in.check("a snapshot write")?;
        self.check_not_failed()?;
        let written = self.write_body(data);
        if let Err(e) = &written {
            if !matches!(e, Error::InvalidArgument { .. }) {
                self.failed = Some(e.to_string());
            }
        }
        written
    }

    fn write_body(&mut self, data: &[u8]) -> Result<()> {
        let end = self.at + data.len() as u64;
        if end > self.header.body_bytes {
            return Err(Error::invalid(
                "snapshot",
                format!("{end} bytes written, {} announced", self.header.body_bytes),
            ));
        }
        for chunk in data.chunks(CHUNK_BYTES) {
            self.header.body_crc = crc32c::crc32c_append(self.header.body_crc, chunk);
            self.file
                .write_at(BODY_OFFSET + self.at, &[chunk])
                .map_err(|e| Error::io("write", &self.path, e))?;
            self.at += chunk.len() as u64;
            let file = &self.file;
            self.pacer
                .wrote(BODY_OFFSET + self.at, |offset, len, how| {
                    file.write_back_range(offset, len, how)
                })
                .map_err(|e| Error::io("write back", &self.path, e))?;
        }
        Ok(())
    }

    /// Writes the header, syncs, renames to the final name and syncs the directory. A failed
    /// directory sync goes through `poison`: the file is in place under its final name, but
    /// whether the rename (and anything else the directory holds unsynced) survives a crash is
    /// unknown, and no later sync may be trusted to say (the log's rule for every failed sync).
    pub fn finish(mut self, poison: impl FnOnce(Error) -> Error) -> Result<()> {
        self.created_in.check("a snapshot's finish")?;
        self.check_not_failed()?;
        if self.at != self.header.body_bytes {
            return Err(Error::invalid(
                "snapshot",
                format!(
                    "{} bytes written, {} announced",
                    self.at, self.header.body_bytes
                ),
            ));
        }
        let path = &self.path;
        self.file
            .write_at(0, &[&self.header.encode()])
            .map_err(|e| Error::io("write", path, e))?;
        self.file
            .sync()
            .map_err(|e| Error::io("fdatasync", path, e))?;
        self.dir
            .rename(&self.temp, &self.name)
            .map_err(|e| Error::io("rename", path, e))?;
        self.renamed = true;
        self.dir
            .sync()
            .map_err(|e| poison(Error::io("fsync directory", self.dir.path(), e)))?;
        Ok(())
    }
}

impl Drop for SnapshotWriter {
    /// An abandoned or failed snapshot leaves no file behind: retries (a checkpoint loop on a
    /// full disk) would otherwise fill the directory until the next open's recovery.
    fn drop(&mut self) {
        // In a child forked from its creator, the file is the creator's, still being written.
        if !self.renamed && self.created_in.is_current() {
            let _ = self.dir.remove(&self.temp);
        }
    }
}

/// Reads the header of the snapshot file of the checkpoint at `lsn` written in `epoch` (as the
/// control file names it), checking it names that checkpoint.
pub(crate) fn open(
    dir: &dyn Dir,
    (lsn, epoch): (Lsn, u64),
) -> Result<(SnapshotHeader, Arc<dyn File>)> {
    let name = file_name(lsn);
    let path = dir.path().join(&name);
    let file = dir.open_plain(&name).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::bad_file(
            &path,
            "the control file names this snapshot, but it is missing",
        ),
        // A file that cannot be mapped as a snapshot: empty, or not a regular file. A damaged
        // file, as one too short: until 2026-12-05 an I/O error, and `rwal verify` could not
        // judge the log (exit 2) although it does not open.
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::IsADirectory => {
            Error::bad_file(&path, format!("not a snapshot file: {e}"))
        }
        _ => Error::io("open", &path, e),
    })?;
    if file.len() < BODY_OFFSET {
        return Err(Error::bad_file(
            &path,
            format!("{} bytes, too short for a snapshot", file.len()),
        ));
    }
    let header = SnapshotHeader::decode(file.bytes(0, HEADER_BYTES), &path)?;
    // Checked: the header's checksum is no proof that its length is sane.
    if header.lsn != lsn || BODY_OFFSET.checked_add(header.body_bytes) != Some(file.len()) {
        return Err(Error::bad_file(
            &path,
            format!(
                "header says LSN {} and {} bytes",
                header.lsn, header.body_bytes
            ),
        ));
    }
    // A state of another history at the same LSN (a file restored from elsewhere, say): its
    // records differ from the log's though its LSN matches.
    if header.epoch != epoch {
        return Err(Error::bad_file(
            &path,
            format!(
                "header says epoch {}, the control file names the checkpoint at LSN {lsn} in \
                 epoch {epoch}",
                header.epoch
            ),
        ));
    }
    Ok((header, file))
}

/// Checks the body of the snapshot of `checkpoint` (LSN, epoch) against its checksum
/// (`Corrupted` if it does not match); a checkpoint without a snapshot has no body to check.
pub(crate) fn check_body(dir: &dyn Dir, checkpoint: (Lsn, u64)) -> Result<()> {
    let (header, file) = open(dir, checkpoint)?;
    let lsn = checkpoint.0;
    if header.has_snapshot {
        let path = dir.path().join(file_name(lsn));
        SnapshotReader::new(header, file, path).checked_bytes()?;
    }
    Ok(())
}

/// A snapshot being read: streams the body in chunks and checks its checksum at the end. While
/// it lives the file stays readable even if a newer checkpoint removes its name.
pub struct SnapshotReader {
    header: SnapshotHeader,
    file: Arc<dyn File>,
    path: std::path::PathBuf,
    at: u64,
    crc: u32,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("header", &self.header)
            .field("at", &self.at)
            .finish()
    }
}

impl SnapshotReader {
    pub(crate) fn new(
        header: SnapshotHeader,
        file: Arc<dyn File>,
        path: std::path::PathBuf,
    ) -> SnapshotReader {
        SnapshotReader {
            header,
            file,
            path,
            at: 0,
            crc: 0,
        }
    }

    /// The LSN of the checkpoint this snapshot belongs to.
    pub fn lsn(&self) -> Lsn {
        self.header.lsn
    }

    /// The epoch of the record at [`lsn`](SnapshotReader::lsn).
    pub fn epoch(&self) -> u64 {
        self.header.epoch
    }

    /// Length of the snapshot in bytes.
    pub fn len(&self) -> u64 {
        self.header.body_bytes
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.header.body_bytes == 0
    }

    /// Moves the streaming position of [`Read`](std::io::Read) forward to `offset`, leaving
    /// the bytes before it unread: for a stream that resumes where its receiver already holds
    /// them, `crc_before` being their running checksum (CRC32C from the start of the body).
    /// The check at the end then covers the skipped bytes through `crc_before` alone: a wrong
    /// one fails it (`InvalidData` at the end), as damage does. `InvalidInput` for an offset
    /// behind the position or past the end.
    pub fn skip_to(&mut self, offset: u64, crc_before: u32) -> std::io::Result<()> {
        if offset < self.at || offset > self.header.body_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "cannot skip from {} to {offset} in a snapshot of {} bytes",
                    self.at, self.header.body_bytes
                ),
            ));
        }
        self.at = offset;
        self.crc = crc_before;
        Ok(())
    }
}

impl SnapshotReader {
    /// The whole snapshot, without copying: a view of the file's read-only mapping, whose
    /// pages the page cache holds, not this process's memory (the simulated disk's are in
    /// memory). Its checksum is checked over it first: `Corrupted` if it does not match.
    /// Independent of the streaming position of [`Read`](std::io::Read).
    ///
    /// Like the log's segments, the view assumes that nothing else truncates the file while
    /// it lives (see `docs/UNSAFE.md`).
    pub fn checked_bytes(&self) -> Result<&[u8]> {
        let len = usize::try_from(self.header.body_bytes).map_err(|_| {
            Error::invalid(
                "snapshot",
                format!(
                    "{} bytes do not fit this machine's address space",
                    self.header.body_bytes
                ),
            )
        })?;
        let bytes = self.file.bytes(BODY_OFFSET, len);
        let mut crc = 0;
        for chunk in bytes.chunks(CHUNK_BYTES) {
            crc = crc32c::crc32c_append(crc, chunk);
        }
        if crc != self.header.body_crc {
            return Err(Error::Corrupted {
                segment: self.path.clone(),
                offset: BODY_OFFSET,
                lsn: self.header.lsn,
                expected_crc: self.header.body_crc,
                found_crc: crc,
            });
        }
        Ok(bytes)
    }
}

impl std::io::Read for SnapshotReader {
    /// Copies the next bytes of the snapshot; at the end, an `InvalidData` error if the body's
    /// checksum does not match.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.header.body_bytes - self.at;
        if left == 0 {
            if self.crc != self.header.body_crc {
                let error = Error::Corrupted {
                    segment: self.path.clone(),
                    offset: BODY_OFFSET,
                    lsn: self.header.lsn,
                    expected_crc: self.header.body_crc,
                    found_crc: self.crc,
                };
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error));
            }
            return Ok(0);
        }
        let n = (left.min(buf.len() as u64) as usize).min(CHUNK_BYTES);
        let bytes = self.file.bytes(BODY_OFFSET + self.at, n);
        buf[..n].copy_from_slice(bytes);
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newer build's snapshot (its magic's last byte is its version) is a version this build
    /// cannot read, not a damaged file.
    #[test]
    fn a_newer_snapshot_header_is_another_version() {
        let header = SnapshotHeader {
            lsn: 30,
            epoch: 2,
            has_snapshot: true,
            body_bytes: 15,
            body_crc: 0x1234,
        };
        let path = std::path::Path::new("/l/checkpoint.snap");
        assert_eq!(
            SnapshotHeader::decode(&header.encode(), path).unwrap(),
            header
        );
        let mut b = header.encode();
        b[7] = 2;
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        match SnapshotHeader::decode(&b, path) {
            Err(Error::UnsupportedVersion { found, .. }) => assert_eq!(found, 2),
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
        b[3] = b'X';
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        match SnapshotHeader::decode(&b, path) {
            Err(Error::BadFile { reason, .. }) => assert!(reason.contains("not an rwal snapshot")),
            other => panic!("expected BadFile, got {other:?}"),
        }
    }
}
