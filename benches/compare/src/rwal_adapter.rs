//! `rwal-staged`, `rwal-mmap`, `rwal-pwrite`: rwal-wal (this repository, `../../wal`) as a
//! peerbench log, one adapter per I/O backend.
//!
//! * open: `Wal::open(dir, Options::new().backend(B))`; every other option is rwal's default
//!   (64 MiB zero-filled segments, one prepared ahead by the background thread, no commit
//!   delay); then `Wal::maintain`, which prepares the next segment before the workload starts. The hints in `OpenOpts` change nothing: rwal has no "no sync" switch (an `append`
//!   is never synced by itself) and never drops records on its own (`keep_all` holds anyway).
//! * `append` = `Wal::append`; `append_durable` = `Wal::append` then `Wal::commit(lsn)`
//!   (concurrent committers share one sync: rwal's group commit); `sync` = `Wal::sync()`.
//!   One `Wal` shared by every writer thread, as the workloads share the `Log`.
//! * drop = `Wal::close()` (final sync + control file), like okaywal's `shutdown` in its drop.
//! * recovery (`recover_count`), mirroring the peers' "reopen, then read every record back":
//!   `Wal::open` (which scans and verifies every record of every segment) plus a `Reader` from
//!   the first LSN to the end, counting records and payload bytes, then `close`. The reader
//!   does not check the checksums again (`Reader::set_verify_checksums(false)`; it still checks
//!   each header): every record is checked once, at the open, as raft-engine checks its
//!   records once at its recovery and then reads them from memory (SQLite's rows carry no
//!   checksum). A reader that checks them again reads 256 MiB in about 30 ms instead of 6-8
//!   (docs/performance.md).

use std::path::Path;

use rwal_wal::{Backend, Options, Wal};

use crate::log::{Adapter, Log, OpenOpts};

pub static STAGED: Adapter = Adapter {
    name: "rwal-staged",
    about: "rwal-wal Backend::Staged, default options; append / append+commit(lsn) (its group commit) / sync()",
    open: open_staged,
    recover_count: recover_staged,
};

pub static MMAP: Adapter = Adapter {
    name: "rwal-mmap",
    about: "rwal-wal Backend::Mmap (rwal's default backend), default options; append / append+commit(lsn) / sync()",
    open: open_mmap,
    recover_count: recover_mmap,
};

pub static PWRITE: Adapter = Adapter {
    name: "rwal-pwrite",
    about: "rwal-wal Backend::Pwrite, default options; append / append+commit(lsn) / sync()",
    open: open_pwrite,
    recover_count: recover_pwrite,
};

/// rwal's adapters, in the order `--list` shows them.
pub static ADAPTERS: [&Adapter; 3] = [&STAGED, &MMAP, &PWRITE];

fn options(backend: Backend) -> Options {
    Options::new().backend(backend)
}

fn open_staged(dir: &Path, opts: &OpenOpts) -> Box<dyn Log> {
    open(dir, opts, Backend::Staged)
}
fn open_mmap(dir: &Path, opts: &OpenOpts) -> Box<dyn Log> {
    open(dir, opts, Backend::Mmap)
}
fn open_pwrite(dir: &Path, opts: &OpenOpts) -> Box<dyn Log> {
    open(dir, opts, Backend::Pwrite)
}
fn recover_staged(dir: &Path, opts: &OpenOpts) -> (u64, u64) {
    recover_count(dir, opts, Backend::Staged)
}
fn recover_mmap(dir: &Path, opts: &OpenOpts) -> (u64, u64) {
    recover_count(dir, opts, Backend::Mmap)
}
fn recover_pwrite(dir: &Path, opts: &OpenOpts) -> (u64, u64) {
    recover_count(dir, opts, Backend::Pwrite)
}

pub struct Rwal {
    /// Always `Some` until drop, which takes it to `close` it.
    wal: Option<Wal>,
}

fn open(dir: &Path, _opts: &OpenOpts, backend: Backend) -> Box<dyn Log> {
    let wal = Wal::open(dir, options(backend)).expect("rwal open");
    // The next segment prepared (zero-filled and synced) before the workload starts, as the
    // raw loops zero-fill and sync their files before theirs: otherwise the first append
    // starts that zero-fill in the background, inside a timed run of a few thousand commits.
    wal.maintain().expect("rwal maintain");
    Box::new(Rwal { wal: Some(wal) })
}

impl Rwal {
    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("rwal: used after close")
    }
}

impl Drop for Rwal {
    fn drop(&mut self) {
        if let Some(wal) = self.wal.take() {
            wal.close().expect("rwal close");
        }
    }
}

impl Log for Rwal {
    fn append(&self, rec: &[u8]) -> u64 {
        self.wal().append(rec).expect("rwal append")
    }

    fn append_durable(&self, rec: &[u8]) -> u64 {
        let wal = self.wal();
        let lsn = wal.append(rec).expect("rwal append");
        wal.commit(lsn).expect("rwal commit");
        lsn
    }

    fn sync(&self) {
        self.wal().sync().expect("rwal sync");
    }
}

fn recover_count(dir: &Path, _opts: &OpenOpts, backend: Backend) -> (u64, u64) {
    let wal = Wal::open(dir, options(backend).create_if_missing(false)).expect("rwal reopen");
    let (mut n, mut bytes) = (0u64, 0u64);
    {
        let mut reader = wal.reader(wal.first_lsn()).expect("rwal reader");
        reader.set_verify_checksums(false);
        while let Some(rec) = reader.next().expect("rwal read") {
            n += 1;
            bytes += rec.data.len() as u64;
        }
    }
    wal.close().expect("rwal close");
    (n, bytes)
}
