//! A commit of the `Mmap` backend dirties, and so writes back, only the small page-cache folios
//! its records fall in, never a large folio around them.
//!
//! A store through a shared mapping dirties the whole folio it lands in, and the next
//! `fdatasync` writes all of it. Segment files zero-filled in large writes are cached in large
//! folios (1 MiB on ext4 under Linux 6.18), which made every 128-byte commit write 1 MiB and cost
//! three times a `pwrite` commit (`MAPPED_FILL_CHUNK` in `wal/src/io/fs.rs`,
//! `docs/performance.md`). The kernel counts the bytes a thread dirties in `write_bytes` of
//! `/proc/thread-self/io` when page-cache memory becomes dirty, so this thread's count over a run
//! of small commits says how large the folios were. The logs live under the target directory
//! (`CARGO_TARGET_TMPDIR`): a tmpfs counts nothing there. On a file system without large folios
//! the count is small whatever the fill; on this machine's ext4 the first test fails with 1 MiB
//! fills.
//!
//! The second evicts the log's files from the page cache before reopening it, as a restart after
//! a reboot finds them, and commits deep into the active segment and then into a prepared one:
//! the pages recovery reads in must not come back in large folios either (read-ahead grows its
//! folios along a sequential read). The third checks the advice that keeps faults from reading
//! ahead: on the active segment's mapping only. The fourth recycles a segment another program
//! read with `read(2)` (cached in large folios from about 24 MiB in): compaction drops its
//! cached pages before zeroing it again, so that the appends that reuse it find small folios.

use std::os::fd::AsRawFd;
use std::path::Path;

use rwal_tests::{payload, segment_paths, TempDir};
use rwal_wal::{Backend, Options, Wal};

const COMMITS: u64 = 200;
const RECORD_BYTES: usize = 128;
/// The largest folio a commit may dirty: the fill's 16 KiB writes.
const FOLIO_BYTES_MAX: u64 = 16 << 10;

fn temp_dir(label: &str) -> TempDir {
    TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), label)
}

fn options() -> Options {
    Options::new()
        .backend(Backend::Mmap)
        .background_threads(false)
}

/// Bytes this thread has dirtied in the page cache so far.
fn thread_write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io")
        .expect("/proc/thread-self/io (task I/O accounting)");
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("a write_bytes line in /proc/thread-self/io")
}

/// Commits `COMMITS` records one by one and checks the page cache they dirtied: one small
/// folio per commit (the next one too when a record crosses into it, a few times in the run).
fn check_commits(wal: &Wal, when: &str) {
    let before = thread_write_bytes();
    for n in 1..=COMMITS {
        let lsn = wal.append(&payload(n, RECORD_BYTES)).unwrap();
        wal.commit(lsn).unwrap();
    }
    let dirtied = thread_write_bytes() - before;
    let allowed = (COMMITS + 8) * FOLIO_BYTES_MAX;
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

/// Appends `bytes` in records of 64 KiB and commits them.
fn fill(wal: &Wal, bytes: u64) {
    let mut last = 0;
    for n in 0..bytes / (64 << 10) {
        last = wal.append(&payload(n, (64 << 10) - 32)).unwrap();
    }
    wal.commit(last).unwrap();
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
    let temp = temp_dir("mapped-writeback");
    let wal = Wal::open(temp.join("log"), options()).unwrap();
    // The first commit faults the segment's first pages in; count from the second on.
    let first = wal.append(&payload(0, RECORD_BYTES)).unwrap();
    wal.commit(first).unwrap();
    check_commits(&wal, "fresh log");
}

#[test]
fn mmap_commits_after_a_cold_reopen_dirty_small_folios_only() {
    const SEGMENT_BYTES: u64 = 64 << 20;
    let temp = temp_dir("mapped-writeback-cold");
    let dir = temp.join("log");
    let wal = Wal::open(&dir, options().segment_bytes(SEGMENT_BYTES)).unwrap();
    // 44 MiB in: past where a forward read of the file from the disk would cache it in folios
    // of 1 MiB and more. And one segment prepared ahead, which recovery keeps.
    fill(&wal, 44 << 20);
    wal.maintain().unwrap();
    drop(wal);
    assert_eq!(
        segment_paths(&dir).len(),
        2,
        "the active segment and a prepared one"
    );
    evict_from_page_cache(&dir);

    let wal = Wal::open(&dir, options().segment_bytes(SEGMENT_BYTES)).unwrap();
    check_commits(&wal, "44 MiB into the active segment, after a cold reopen");
    // On into the prepared segment, which recovery read in from the disk too.
    fill(&wal, 20 << 20);
    assert_eq!(
        segment_paths(&dir).len(),
        2,
        "no segment was created after the reopen"
    );
    check_commits(&wal, "in the prepared segment, after a cold reopen");
}

/// The `VmFlags` of this process's mapping of `file` (`/proc/self/smaps`); empty if unmapped.
fn mapping_flags(file: &Path) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let file = file.canonicalize().expect("the segment file");
    let file = file.to_str().expect("a UTF-8 path");
    let mut lines = smaps.lines().skip_while(|line| !line.ends_with(file));
    if lines.next().is_none() {
        return Vec::new();
    }
    let flags = lines
        .find_map(|line| line.strip_prefix("VmFlags:"))
        .expect("a VmFlags line");
    flags.split_whitespace().map(str::to_owned).collect()
}

fn reads_ahead(file: &Path) -> bool {
    let flags = mapping_flags(file);
    assert!(!flags.is_empty(), "{} is not mapped", file.display());
    !flags.iter().any(|flag| flag == "rr")
}

#[test]
fn only_the_active_segment_is_mapped_without_read_ahead() {
    const SEGMENT_BYTES: u64 = 1 << 20;
    let temp = temp_dir("mapped-writeback-advice");
    let dir = temp.join("log");
    let wal = Wal::open(&dir, options().segment_bytes(SEGMENT_BYTES)).unwrap();
    let first = segment_paths(&dir);
    assert_eq!(first.len(), 1, "one segment after open: {first:?}");
    assert!(
        !reads_ahead(&first[0]),
        "the active segment is mapped MADV_RANDOM"
    );

    // Fill it and roll into a second; the first is sealed and, released by `maintain` once
    // nobody reads it, reads ahead again.
    let mut last = 0;
    while segment_paths(&dir).len() < 2 {
        last = wal.append(&payload(last, 60_000)).unwrap();
    }
    wal.commit(last).unwrap();
    let second = segment_paths(&dir)[1].clone();
    assert!(
        !reads_ahead(&second),
        "the new active segment is mapped MADV_RANDOM"
    );
    wal.maintain().unwrap();
    assert!(
        reads_ahead(&first[0]),
        "the released first segment reads ahead again"
    );

    // A cut back into the first segment makes it the active one again.
    wal.truncate_after(3).unwrap();
    assert!(
        !reads_ahead(&first[0]),
        "the segment cut back into is mapped MADV_RANDOM"
    );
    drop(wal);

    // Reopened, the last segment recovery keeps is the active one.
    let wal = Wal::open(&dir, options().segment_bytes(SEGMENT_BYTES)).unwrap();
    assert!(
        !reads_ahead(&first[0]),
        "the recovered active segment is mapped MADV_RANDOM"
    );
    drop(wal);
}

#[test]
fn a_recycled_segment_is_cached_afresh_before_appends_reuse_it() {
    const SEGMENT_BYTES: u64 = 32 << 20;
    let temp = temp_dir("mapped-writeback-recycle");
    let dir = temp.join("log");
    let opts = || options().segment_bytes(SEGMENT_BYTES);
    let wal = Wal::open(&dir, opts()).unwrap();
    // Fill the first segment and roll into a second.
    while segment_paths(&dir).len() < 2 {
        fill(&wal, 4 << 20);
    }
    drop(wal);
    // Another program reads the first segment from the disk with read(2): read-ahead caches
    // its later part in large folios (from about 24 MiB in, with this disk's read-ahead).
    let first = segment_paths(&dir)[0].clone();
    evict_from_page_cache(&dir);
    let read = std::fs::read(&first).unwrap();
    assert_eq!(read.len() as u64, SEGMENT_BYTES);

    // Reopened, checkpointed past the first segment and compacted: the first segment is
    // recycled as the next prepared one.
    let wal = Wal::open(&dir, opts()).unwrap();
    wal.checkpoint(wal.last_lsn(), None).unwrap();
    let report = wal.compact_now().unwrap();
    assert_eq!(report.segments_recycled, 1, "{report:?}");
    assert_eq!(wal.segment_count(), 1);
    // On through the second segment into the recycled file (the only one prepared), 24 MiB
    // deep.
    while wal.segment_count() < 2 {
        fill(&wal, 1 << 20);
    }
    assert_eq!(
        segment_paths(&dir).len(),
        2,
        "the roll took the recycled file"
    );
    fill(&wal, 24 << 20);
    check_commits(
        &wal,
        "24 MiB into a recycled segment that was read with read(2)",
    );
}
