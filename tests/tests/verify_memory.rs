//! `rwal inspect` and `rwal verify` read a log's segments through read-only mappings: a pass
//! over a log of large segments needs no heap for them (they were read whole into memory,
//! one at a time, until 2026-12-05: up to 2 GiB for the largest segments). Heap allocations are
//! counted by this binary's allocator, so the bound is exact.
//!
//! One test in this binary: the allocator's counts are the whole process's.

use rwal_tests::{heap, payload, TempDir};
use rwal_wal::{Options, Wal};

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

#[test]
fn verifying_a_log_maps_its_segments_instead_of_reading_them_into_memory() {
    let temp = TempDir::new("verify-memory");
    let dir = temp.join("log");
    let segment_bytes = 64 << 20;
    {
        let wal = Wal::open(&dir, Options::new().segment_bytes(segment_bytes)).unwrap();
        // Two segments, the first full, of records that check themselves.
        for i in 0..100 {
            wal.append(&payload(i, 1 << 20)).unwrap();
        }
        wal.sync().unwrap();
        assert!(wal.segment_count() >= 2);
    }
    let mark = heap::mark();
    let inspection = rwal_wal::inspect::inspect(&dir).unwrap();
    let (grew, _) = heap::peak_growth_since(mark);
    eprintln!("heap growth over the pass: {grew} bytes");
    assert!(inspection.problems.is_empty(), "{:?}", inspection.problems);
    assert_eq!(
        inspection.segments.iter().map(|s| s.records).sum::<u64>(),
        100
    );
    assert!(
        grew < 8 << 20,
        "the heap grew by {grew} bytes over a pass of a log of {segment_bytes}-byte segments"
    );
}
