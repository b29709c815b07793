//! Memory the staging backends hold stays bounded:
//!
//! * `IoUring` gives back the memory it holds for reads of sealed segments, and reads stay exact
//!   afterwards: through a reader that stood in a segment meanwhile, after a cut into a segment
//!   whose memory was given back, and after reopening;
//! * `Staged` appenders write back themselves when nothing else does, so a long run of appends
//!   without a commit or a background thread stages a bounded amount, in one large segment or
//!   across many small ones;
//! * `Staged` gives back the staging memory of sealed segments that commits wrote out;
//! * the pages of sealed segments mapped for writes or reads are unmapped once nobody reads
//!   them, so the mapped memory does not grow with the log (`Mmap`).
//!
//! One test in its own binary: it measures the process's `RssAnon` and `RssFile`, which other
//! tests running beside it would disturb, so the cases run one after the other in it.

use rwal_tests::{payload, TempDir};
use rwal_wal::{Backend, Options, Wal};

const SEGMENT_BYTES: u64 = 4 << 20;
const RECORD_BYTES: usize = 60_000;
/// About 12 segments' worth.
const RECORDS: u64 = 800;

fn rss_anon_bytes() -> u64 {
    rss_bytes("RssAnon:")
}

fn rss_bytes(which: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(which))
        .expect("the line in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("RssAnon value");
    kib << 10
}

fn read_all_from(wal: &Wal, from: u64, expected_last: u64) {
    let mut reader = wal.reader(from).unwrap();
    let mut lsn = from;
    while let Some(record) = reader.next().unwrap() {
        assert_eq!(record.lsn, lsn);
        assert!(
            record.data == payload(lsn, RECORD_BYTES).as_slice(),
            "record {lsn} differs"
        );
        lsn += 1;
    }
    assert_eq!(lsn - 1, expected_last);
}

#[test]
fn staging_memory_stays_bounded() {
    io_uring_gives_back_sealed_segments_memory_and_reads_stay_exact();
    // One segment holds the whole run; then segments smaller than the bound, each of which
    // stayed under it while the log staged everything (found by review on 2026-12-03).
    staged_appenders_write_back_when_nothing_else_does(256 << 20);
    staged_appenders_write_back_when_nothing_else_does(SEGMENT_BYTES);
    staged_sealed_segments_give_back_what_commits_wrote_out();
    sealed_segments_nobody_reads_are_unmapped();
}

/// Regression: each sync gives back a segment's written-out staging pages only once 4 MiB of
/// them accumulate, which a segment of 4 MiB never reaches: a log committing as it went kept
/// every byte it wrote in memory, as long as it kept the segments (found by review on
/// 2026-12-03).
fn staged_sealed_segments_give_back_what_commits_wrote_out() {
    let temp = TempDir::new("memory-staged-sealed");
    let dir = temp.join("log");
    let options = Options::new()
        .backend(Backend::Staged)
        .segment_bytes(SEGMENT_BYTES)
        .background_threads(false);
    let wal = Wal::open(&dir, options).unwrap();
    let before = rss_anon_bytes();
    for lsn in 1..=RECORDS {
        assert_eq!(wal.append(&payload(lsn, RECORD_BYTES)).unwrap(), lsn);
        if lsn % 10 == 0 {
            wal.commit(lsn).unwrap();
        }
    }
    wal.commit(RECORDS).unwrap();
    wal.maintain().unwrap();
    let held = rss_anon_bytes().saturating_sub(before);
    // Left: the active segment's staging, and the allocator's noise; 12 segments' worth
    // (48 MB) before the fix.
    assert!(
        held < 2 * SEGMENT_BYTES + (2 << 20),
        "{held} bytes held after committing {} bytes in {SEGMENT_BYTES}-byte segments",
        RECORDS * RECORD_BYTES as u64
    );
    read_all_from(&wal, 1, RECORDS);
    wal.close().unwrap();
}

fn sealed_segments_nobody_reads_are_unmapped() {
    let temp = TempDir::new("memory-mmap");
    let dir = temp.join("log");
    let options = Options::new()
        .backend(Backend::Mmap)
        .segment_bytes(SEGMENT_BYTES)
        .background_threads(false);
    let wal = Wal::open(&dir, options).unwrap();
    let before = rss_bytes("RssFile:");
    for lsn in 1..=RECORDS {
        assert_eq!(wal.append(&payload(lsn, RECORD_BYTES)).unwrap(), lsn);
    }
    wal.commit(RECORDS).unwrap();
    let written = RECORDS * RECORD_BYTES as u64;
    let mapped = rss_bytes("RssFile:").saturating_sub(before);
    // Every page written through the mapping is mapped: the test can see them go.
    assert!(
        mapped > written * 3 / 4,
        "{mapped} bytes mapped after writing {written}"
    );
    wal.maintain().unwrap();
    let after = rss_bytes("RssFile:").saturating_sub(before);
    // Left: the active segment, the prepared one, and the allocator's noise.
    assert!(
        after < 3 * SEGMENT_BYTES,
        "{after} bytes still mapped of {mapped}"
    );
    // Reading maps them again; once the reader is gone, they are unmapped again.
    read_all_from(&wal, 1, RECORDS);
    assert!(rss_bytes("RssFile:").saturating_sub(before) > written * 3 / 4);
    wal.maintain().unwrap();
    let again = rss_bytes("RssFile:").saturating_sub(before);
    assert!(
        again < 3 * SEGMENT_BYTES,
        "{again} bytes still mapped after reading"
    );
    read_all_from(&wal, 1, RECORDS);
    wal.close().unwrap();
}

fn staged_appenders_write_back_when_nothing_else_does(segment_bytes: u64) {
    let temp = TempDir::new("memory-staged");
    let dir = temp.join("log");
    // No background thread writes anything back.
    let options = Options::new()
        .backend(Backend::Staged)
        .segment_bytes(segment_bytes)
        .background_threads(false);
    let wal = Wal::open(&dir, options).unwrap();
    let before = rss_anon_bytes();
    let records = (128u64 << 20) / RECORD_BYTES as u64;
    let mut peak = 0;
    for lsn in 1..=records {
        assert_eq!(wal.append(&payload(lsn, RECORD_BYTES)).unwrap(), lsn);
        if lsn % 64 == 0 {
            peak = peak.max(rss_anon_bytes().saturating_sub(before));
        }
    }
    // 16 MiB staged at most before an appender writes back, plus pages not yet given back and
    // the allocator's noise; staging it all would hold 128 MiB.
    assert!(
        peak < 32 << 20,
        "{peak} bytes held while appending 128 MiB into {segment_bytes}-byte segments"
    );
    wal.commit(records).unwrap();
    read_all_from(&wal, 1, records);
    wal.close().unwrap();
}

fn io_uring_gives_back_sealed_segments_memory_and_reads_stay_exact() {
    let temp = TempDir::new("memory-io-uring");
    let dir = temp.join("log");
    let options = || {
        Options::new()
            .backend(Backend::IoUring)
            .segment_bytes(SEGMENT_BYTES)
            .background_threads(false)
    };
    let wal = Wal::open(&dir, options()).unwrap();
    let before = rss_anon_bytes();
    for lsn in 1..=RECORDS {
        assert_eq!(wal.append(&payload(lsn, RECORD_BYTES)).unwrap(), lsn);
    }
    wal.commit(RECORDS).unwrap();
    let written = RECORDS * RECORD_BYTES as u64;
    let held = rss_anon_bytes().saturating_sub(before);
    // Every block written is still held for reads: the test can see memory being given back.
    assert!(
        held > written * 3 / 4,
        "{held} bytes held after writing {written}"
    );

    // A reader standing in the second segment keeps that one's memory.
    let mut standing = wal.reader(100).unwrap();
    let first = standing.next().unwrap().unwrap();
    assert_eq!(first.lsn, 100);

    wal.maintain().unwrap();
    let after = rss_anon_bytes().saturating_sub(before);
    // Left: the active segment, the one the reader stands in, and the allocator's noise.
    assert!(
        after < 3 * SEGMENT_BYTES + (2 << 20),
        "{after} bytes still held of {held}"
    );

    // The standing reader goes on through released segments, reading them from the file.
    let mut lsn = 101;
    while let Some(record) = standing.next().unwrap() {
        assert_eq!(record.lsn, lsn);
        assert!(record.data == payload(lsn, RECORD_BYTES).as_slice());
        lsn += 1;
    }
    assert_eq!(lsn - 1, RECORDS);
    drop(standing);
    wal.maintain().unwrap();
    read_all_from(&wal, 1, RECORDS);

    // A cut into a released segment: its blocks are loaded from the file before the rewrite,
    // so the records kept before the cut point survive the rewrite of their blocks.
    let cut = 150;
    wal.truncate_after(cut).unwrap();
    for lsn in cut + 1..=cut + 100 {
        assert_eq!(wal.append(&payload(lsn, RECORD_BYTES)).unwrap(), lsn);
    }
    wal.commit(cut + 100).unwrap();
    wal.maintain().unwrap();
    read_all_from(&wal, 1, cut + 100);
    wal.close().unwrap();

    let wal = Wal::open(&dir, options()).unwrap();
    read_all_from(&wal, 1, cut + 100);
    wal.close().unwrap();
}
