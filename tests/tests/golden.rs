//! The golden log: a log written by format version 1, committed under `tests/golden/v1`,
//! read back record by record. It is copied before opening (opening takes a lock and may
//! write), so the committed files are never rewritten. If this fails, the format changed: that
//! must be a deliberate act, with a new format version and a new golden directory.

use std::path::Path;

use rwal_tests::{golden_records, TempDir};
use rwal_wal::{Options, Wal};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn the_golden_log_of_format_version_1_reads_back_exactly() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/v1");
    assert!(
        golden.join("control").exists(),
        "missing {}",
        golden.display()
    );
    let temp = TempDir::new("golden");
    let dir = temp.join("log");
    copy_dir(&golden, &dir);
    let wal = Wal::open(&dir, Options::new().create_if_missing(false)).unwrap();
    let expected = golden_records();
    assert_eq!(wal.last_lsn(), expected.len() as u64);
    assert!(
        wal.recovery_report().events.is_empty(),
        "{:?}",
        wal.recovery_report()
    );
    assert_eq!(
        wal.recovery_report().control_durable_lsn,
        expected.len() as u64
    );
    assert!(wal.segment_count() >= 2, "the golden log spans segments");
    let mut reader = wal.reader(1).unwrap();
    for (i, (kind, epoch, data)) in expected.iter().enumerate() {
        let record = reader.next().unwrap().expect("record");
        assert_eq!(record.lsn, i as u64 + 1);
        assert_eq!(
            (record.kind, record.epoch),
            (*kind, *epoch),
            "lsn {}",
            record.lsn
        );
        assert_eq!(record.data, &data[..], "lsn {}", record.lsn);
    }
    assert!(reader.next().unwrap().is_none());
}
