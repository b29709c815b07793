//! Recovery's first pass. The scan in `recovery` walks the segments in log order on one thread,
//! because each of its decisions depends on the ones before. What costs the time does not:
//! checksumming every record of a file, and finding where the file's bytes end (the zero tail of
//! the active segment, the whole of a prepared one). This pass does that for every file at once,
//! one file per thread at a time, before the scan; the scan then trusts the checksums verified
//! here instead of computing them a second time.
//!
//! Nothing can write to the files in between: recovery runs inside `open`, which holds the
//! directory's lock, before any appender or background thread exists.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::io::File;
use crate::record;
use crate::recovery::read_header;
use crate::segment::{self, Segment, HEADER_REGION_BYTES};

/// Threads the pass uses at most, the calling one included. The files are read from memory (or
/// one disk); past a few threads the memory bus, not the checksum, is the limit.
const THREADS_MAX: usize = 4;

/// What the first pass found in one segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FileCheck {
    /// The records from the first on verify (checksum and fields), back to back, up to this
    /// offset: the first offset that does not hold a valid record. 0 when the segment header
    /// does not read (nothing verified).
    pub verified_to: u64,
    /// The LSN of the last of those records (0: none).
    pub verified_last_lsn: u64,
    /// The highest durability claim among those records (0: none): a proof, for a damaged
    /// spot before this file, that the log had been acknowledged that far.
    pub verified_max_hint: u64,
    /// One past the file's last nonzero byte (0: the file is all zero).
    pub nonzero_end: u64,
}

/// Checks every file (each given with the sequence number its name holds; `None`: it could not
/// be opened, and the scan reports that when it comes to it), on up to `THREADS_MAX` threads.
/// The results are in the order of `files`; a file not given gets the default (nothing found).
pub(crate) fn check_files(files: &[(u64, Option<Arc<dyn File>>)]) -> Vec<FileCheck> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(THREADS_MAX)
        .min(files.len());
    let next = AtomicUsize::new(0);
    let mut checks = vec![FileCheck::default(); files.len()];
    let mut place = |done: Vec<(usize, FileCheck)>| {
        for (index, check) in done {
            checks[index] = check;
        }
    };
    // Each thread takes the next unchecked file until none is left; a thread that could not
    // be started leaves its share to the others.
    let work = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some((sequence, file)) = files.get(index) else {
                return done;
            };
            if let Some(file) = file {
                done.push((index, check_file(*sequence, file)));
            }
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("rwal-recovery".into())
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        place(work());
        for helper in helpers {
            match helper.join() {
                Ok(done) => place(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    checks
}

/// Checks one file: where its valid records end, and where its bytes end.
fn check_file(sequence: u64, file: &Arc<dyn File>) -> FileCheck {
    // The zero tail first, backwards: read in from the disk that way, it is cached in single
    // pages, where a forward read would grow its folios (and a commit into a large folio writes
    // all of it back: `File::populate`, `docs/design.md` section 3). Then the records forwards.
    let nonzero_end =
        segment::last_nonzero_byte(file.bytes(0, file.len() as usize)).map_or(0, |i| i as u64 + 1);
    file.populate(nonzero_end);
    let (verified_to, verified_last_lsn, verified_max_hint) =
        match read_header(file.as_ref(), sequence) {
            Ok(header) => {
                let segment = Segment::new(header, Arc::clone(file));
                let mut offset = HEADER_REGION_BYTES;
                let (mut last_lsn, mut max_hint) = (0, 0);
                while let Ok((header, _)) = segment.record_at(offset) {
                    offset += record::stored_len(header.payload_len as usize) as u64;
                    last_lsn = header.lsn;
                    max_hint = max_hint.max(header.durable_hint);
                }
                (offset, last_lsn, max_hint)
            }
            Err(_) => (0, 0, 0),
        };
    FileCheck {
        verified_to,
        verified_last_lsn,
        verified_max_hint,
        nonzero_end,
    }
}

/// Checks again, from the disk, every file whose verified records go past `watermark`.
///
/// Recovery syncs the records it keeps past the watermark before it calls them durable. But
/// the page cache may hold bytes the disk never took: on Linux, a write-back that fails
/// leaves its pages clean and readable, and reports the error once ("fsyncgate"). The log
/// that saw it was poisoned; a reopen, in the same process or the next, read those records
/// back from the cache, synced nothing (the pages are clean), and declared them durable; new
/// records acknowledged after them were then lost with them at the next power cut (a hole
/// recovery refuses, or cuts at). So the pages of those files are dropped from this process's
/// mapping and from the page cache (only clean ones go: the bytes of a process killed before
/// it synced are dirty and stay), and the files are checked again as the disk has them. A log
/// closed cleanly has nothing past its watermark, and is not read twice.
pub(crate) fn recheck_from_disk(
    files: &[(u64, Option<Arc<dyn File>>)],
    checks: &mut [FileCheck],
    watermark: u64,
) {
    for ((sequence, file), check) in files.iter().zip(checks.iter_mut()) {
        let Some(file) = file else { continue };
        if check.verified_last_lsn > watermark {
            // Nothing else maps or reads the file yet: recovery runs before anything else.
            file.release_memory();
            file.forget_cached_pages();
            *check = check_file(*sequence, file);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::io::Dir;
    use crate::{Backend, Options, SimDisk, Wal};

    const PAYLOAD: usize = 1000;
    /// A 1000-byte payload after a 32-byte header needs no padding: a file's nonzero bytes end
    /// exactly where its last record does.
    const STORED: u64 = 1032;

    fn segment_files(disk: &SimDisk) -> Vec<(u64, Option<Arc<dyn File>>)> {
        let dir = disk.dir(Path::new("/sim"));
        let mut files: Vec<(u64, String)> = dir
            .list()
            .unwrap()
            .into_iter()
            .filter_map(|name| segment::parse_file_name(&name).map(|s| (s, name)))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(sequence, name)| (sequence, Some(dir.open(&name).unwrap())))
            .collect()
    }

    #[test]
    fn the_pass_finds_where_each_files_valid_records_and_bytes_end() {
        let disk = SimDisk::new();
        let options = Options::new()
            .backend(Backend::Simulated(disk.clone()))
            .segment_bytes(segment::SEGMENT_BYTES_MIN)
            .background_threads(false);
        let wal = Wal::open("/sim", options).unwrap();
        for i in 0..3500u32 {
            wal.append(&[(i % 250) as u8 + 1; PAYLOAD]).unwrap();
        }
        wal.sync().unwrap();
        wal.close().unwrap();
        let per_segment = (segment::SEGMENT_BYTES_MIN - HEADER_REGION_BYTES) / STORED;
        let end_of = |records: u64| HEADER_REGION_BYTES + records * STORED;
        let damaged_at = end_of(100);
        let clean = segment_files(&disk);
        assert_eq!(
            clean.len(),
            4,
            "3500 records fill three segments and start a fourth"
        );
        // Damage: a payload bit of the second segment's 101st record, and the fourth's header.
        disk.flip_bit("00000000000000000002.seg", damaged_at + 40, 2);
        disk.flip_bit("00000000000000000004.seg", 8, 0);
        let files = segment_files(&disk);
        let checks = check_files(&files);

        // Appended, then synced once: no record claims anything durable.
        let full = |segments: u64| FileCheck {
            verified_to: end_of(per_segment),
            verified_last_lsn: segments * per_segment,
            verified_max_hint: 0,
            nonzero_end: end_of(per_segment),
        };
        let last_records = 3500 - 3 * per_segment;
        assert_eq!(
            checks,
            [
                full(1),
                FileCheck {
                    verified_to: damaged_at,
                    verified_last_lsn: per_segment + 100,
                    ..full(2)
                },
                full(3),
                FileCheck {
                    verified_to: 0,
                    verified_last_lsn: 0,
                    verified_max_hint: 0,
                    nonzero_end: end_of(last_records),
                },
            ]
        );
    }

    #[test]
    fn an_all_zero_file_a_file_not_given_and_no_files_at_all() {
        let disk = SimDisk::new();
        let dir = disk.dir(Path::new("/sim"));
        let zero = dir
            .create("00000000000000000001.seg", segment::SEGMENT_BYTES_MIN)
            .unwrap();
        let data = dir
            .create("00000000000000000002.seg", segment::SEGMENT_BYTES_MIN)
            .unwrap();
        data.write_at(100, &[&[1]]).unwrap();
        assert_eq!(
            check_files(&[(1, Some(zero)), (2, None), (2, Some(data))]),
            [
                FileCheck::default(),
                FileCheck::default(),
                FileCheck {
                    verified_to: 0,
                    verified_last_lsn: 0,
                    verified_max_hint: 0,
                    nonzero_end: 101
                }
            ]
        );
        assert!(check_files(&[]).is_empty());
    }
}
