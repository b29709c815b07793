//! A segment file with holes, reopened by the `Mmap` backend, gets its blocks before it is
//! mapped writable.
//!
//! A store through a writable mapping into a hole makes the page fault allocate a block; on a
//! full disk that kills the process with SIGBUS instead of returning an error. rwal allocates
//! (or zero-fills) every segment it creates before mapping it, but a log copied with
//! `cp --sparse=always`, `rsync -S` or `tar -S` comes back with holes where the segments held
//! zeros. The full disk itself cannot be made here without mounting a small file system; what
//! the test checks is the cause: after the open, the active segment has no hole left. The log
//! lives under the target directory (`CARGO_TARGET_TMPDIR`, ext4 on this machine), which can
//! punch holes.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rwal_tests::{payload, segment_paths, TempDir};
use rwal_wal::{Backend, Options, Wal};

const SEGMENT_BYTES: u64 = 4 << 20;

fn options() -> Options {
    Options::new()
        .backend(Backend::Mmap)
        .background_threads(false)
        .segment_bytes(SEGMENT_BYTES)
}

/// Bytes of `path` that have blocks on the disk.
fn allocated_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_reopened_segment_with_holes_is_allocated_before_it_is_mapped() {
    let temp = TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), "mapped-holes");
    let wal = Wal::open(temp.path(), options()).unwrap();
    let mut last = 0;
    for n in 0..64 {
        last = wal.append(&payload(n, 1000)).unwrap();
    }
    wal.commit(last).unwrap();
    wal.close().unwrap();
    let active = segment_paths(temp.path()).pop().expect("a segment");
    let len = std::fs::metadata(&active).unwrap().len();
    assert_eq!(len, SEGMENT_BYTES);
    // The zeros past the records, as a sparse copy leaves them: a hole from 1 MiB on.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap();
    let hole_from = 1 << 20;
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            hole_from,
            (len as i64) - hole_from,
        )
    };
    assert_eq!(
        rc,
        0,
        "punching a hole: {}",
        std::io::Error::last_os_error()
    );
    drop(file);
    assert!(
        allocated_bytes(&active) < len,
        "the hole was punched: {} of {len} bytes allocated",
        allocated_bytes(&active)
    );

    let wal = Wal::open(temp.path(), options()).unwrap();
    assert!(
        allocated_bytes(&active) >= len,
        "the open mapped a segment with a hole: {} of {len} bytes allocated",
        allocated_bytes(&active)
    );
    // And the log goes on where it was, into what was the hole.
    assert_eq!(wal.last_lsn(), last);
    let mut next = last;
    for n in 64..1100 {
        next = wal.append(&payload(n, 1000)).unwrap();
    }
    wal.commit(next).unwrap();
    assert_eq!(wal.read(last).unwrap(), payload(63, 1000));
    assert_eq!(wal.read(next).unwrap(), payload(1099, 1000));
    wal.close().unwrap();
}
