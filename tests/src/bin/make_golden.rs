//! Writes the golden log that `tests/golden.rs` reads back: run it once per format version,
//! commit the result, and never regenerate an existing version (the test exists to notice a
//! format change that was not meant).
//!
//! Usage: `make_golden DIR` (DIR must not exist).

use rwal_tests::golden_records;
use rwal_wal::{Options, RecordKind, Wal};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: make_golden DIR");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} exists: golden logs are never rewritten"
    );
    let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20)).expect("open");
    for (kind, epoch, data) in golden_records() {
        wal.append_with(kind, epoch, &[&data]).expect("append");
    }
    wal.sync().expect("sync");
    wal.close().expect("close");
    let _ = RecordKind::User;
    println!("wrote {dir}");
}
