//! A commit of the `Mmap` backend dirties, and so writes back, only the small page-cache folios
//! its records fall in, never a large folio around them.
//!
//! A store through a shared mapping dirties the whole folio it lands in, and the next
//! `fdatasync` writes all of it. Segment files zero-filled in large writes are cached in large
//! folios (1 MiB on ext4 under Linux 6.18), which made every 128-byte commit write 1 MiB and cost
//! three times a `pwrite` commit (`MAPPED_FILL_CHUNK` in `wal/src/io/fs.rs`,
//! `docs/performance.md`). The kernel counts the bytes a thread dirties in `write_bytes` of
//! `/proc/thread-self/io` when the page-cache memory becomes dirty, so this thread's count over a
//! run of small commits says how large the folios were. On a file system without large folios
//! the count is small whatever the fill; on this machine's ext4 the first test fails with 1 MiB
//! fills. The second evicts the log's files from the page cache before reopening it, as a
//! restart after a reboot finds them: recovery's reads must not cache the active segment in
//! large folios either. The third checks the advice that keeps faults from reading ahead into
//! large folios: on the active segment's mapping only.

use std::os::fd::AsRawFd;
use std::path::Path;

use rwal_tests::{payload, TempDir};
use rwal_wal::{Backend, Options, Wal};

const COMMITS: u64 = 200;
const RECORD_BYTES: usize = 128;
/// The largest folio a commit may dirty: the fill's 16 KiB writes.
const FOLIO_BYTES_MAX: u64 = 16 << 10;

/// Bytes this thread has dirtied in the page cache so far.
fn thread_write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io")
        .expect("/proc/thread-self/io (task I/O accounting)");
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("a write_bytes line in /proc/thread-self/io")
}

fn options() -> Options {
    Options::new()
        .backend(Backend::Mmap)
        .background_threads(false)
}

/// Commits `COMMITS` records one by one and checks the page cache they dirtied: at most two
/// small folios per commit (the record's, and the next when the record crosses into it).
fn check_commits(wal: &Wal, when: &str) {
    let before = thread_write_bytes();
    for n in 1..=COMMITS {
        let lsn = wal.append(&payload(n, RECORD_BYTES)).unwrap();
        wal.commit(lsn).unwrap();
    }
    let dirtied = thread_write_bytes() - before;
    let allowed = COMMITS * 2 * FOLIO_BYTES_MAX;
    assert!(
        dirtied <= allowed,
        "{when}: {COMMITS} commits of {RECORD_BYTES}-byte records dirtied {dirtied} bytes of \
         page cache (at most {allowed} expected): the segment is cached in folios larger than \
         {FOLIO_BYTES_MAX} bytes"
    );
    // And the count is live: the records themselves were dirtied and counted.
    assert!(
        dirtied >= COMMITS * RECORD_BYTES as u64,
        "{when}: only {dirtied} bytes dirtied by {COMMITS} commits: is write_bytes counted?"
    );
}

/// Drops every cached page of the files in `dir` (they are clean: the log was closed).
fn evict_from_page_cache(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        // SAFETY: fadvise on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise(DONTNEED)");
    }
}

#[test]
fn mmap_commits_dirty_small_folios_only() {
    let temp = TempDir::new("mapped-writeback");
    let wal = Wal::open(temp.join("log"), options()).unwrap();
    // The first commit faults the segment's first pages in; count from the second on.
    let first = wal.append(&payload(0, RECORD_BYTES)).unwrap();
    wal.commit(first).unwrap();
    check_commits(&wal, "fresh log");
}

#[test]
fn mmap_commits_after_a_cold_reopen_dirty_small_folios_only() {
    let temp = TempDir::new("mapped-writeback-cold");
    let dir = temp.join("log");
    let wal = Wal::open(&dir, options()).unwrap();
    for n in 1..=1000 {
        let lsn = wal.append(&payload(n, RECORD_BYTES)).unwrap();
        wal.commit(lsn).unwrap();
    }
    drop(wal);
    evict_from_page_cache(&dir);
    let wal = Wal::open(&dir, options()).unwrap();
    check_commits(&wal, "after a cold reopen");
}

/// The `VmFlags` of this process's mapping of `file` (`/proc/self/smaps`).
fn mapping_flags(file: &Path) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let file = file.to_str().expect("a UTF-8 path");
    let mut lines = smaps.lines().skip_while(|line| !line.ends_with(file));
    assert!(lines.next().is_some(), "{file} is not mapped");
    let flags = lines
        .find_map(|line| line.strip_prefix("VmFlags:"))
        .expect("a VmFlags line");
    flags.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn only_the_active_segment_is_mapped_without_read_ahead() {
    const SEGMENT_BYTES: u64 = 1 << 20;
    let temp = TempDir::new("mapped-writeback-advice");
    let dir = temp.join("log");
    let wal = Wal::open(&dir, options().segment_bytes(SEGMENT_BYTES)).unwrap();
    let segments = || {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .collect();
        names.sort();
        names
    };
    let first = segments();
    assert_eq!(first.len(), 1, "one segment after open: {first:?}");
    assert!(
        mapping_flags(&first[0]).contains(&"rr".to_owned()),
        "the active segment is mapped MADV_RANDOM ('rr')"
    );
    // Fill it and roll into a second; the first is sealed and, once nobody reads it, released.
    let mut last = 0;
    while segments().len() < 2 {
        last = wal.append(&payload(last, 60_000)).unwrap();
    }
    wal.commit(last).unwrap();
    let second = segments()[1].clone();
    assert!(
        mapping_flags(&second).contains(&"rr".to_owned()),
        "the new active segment is mapped MADV_RANDOM"
    );
    drop(wal);
}
