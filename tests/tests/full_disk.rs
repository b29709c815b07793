//! A full disk, for real: the log on a small tmpfs, filled to its last block.
//!
//! Every other test of a full disk injects `ENOSPC` where the code asks for it; this one lets
//! the file system run out, wherever that happens (a segment's allocation, the control file,
//! the directory). What must hold (`docs/design.md`, section 4, step 5): the append that finds
//! no room gets `NoSpace` and takes no LSN; the log is not poisoned and loses nothing it
//! acknowledged; it opens and reads on the full disk; once room is made, appends go on.
//!
//! The file system is mounted in a mount namespace of this test's own (`unshare --mount` as
//! root, else inside a user namespace too), so nothing outside sees it and it goes away with
//! the process: the test runs itself again under `unshare`, and that run mounts the tmpfs and
//! does the work.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use rwal_tests::{payload, TempDir};
use rwal_wal::{Backend, Error, Options, Wal};

/// Set in the run under `unshare`: the mounted file system's path.
const MOUNTED: &str = "RWAL_TEST_FULL_DISK_MOUNTED";
const TEST: &str = "a_full_disk_is_an_error_to_the_appender_and_loses_nothing";
/// The file system's size; the log's segments are 1 MiB.
const FS_BYTES: u64 = 8 << 20;
const SEGMENT_BYTES: u64 = 1 << 20;
/// Room another writer holds.
const BALLAST_BYTES: usize = 3 << 20;
const RECORD_BYTES: usize = 1000;

#[test]
fn a_full_disk_is_an_error_to_the_appender_and_loses_nothing() {
    if let Some(mounted) = std::env::var_os(MOUNTED) {
        let mounted = Path::new(&mounted);
        for backend in [Backend::Mmap, Backend::Pwrite, Backend::Staged] {
            fill_and_recover(mounted, backend);
        }
        return;
    }
    let temp = TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), "full-disk");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let namespaces: &[&str] = if unsafe { libc::geteuid() } == 0 {
        &["--mount"]
    } else {
        &["--user", "--map-root-user", "--mount"]
    };
    // Bounded: a run that hangs fails the test instead of the suite.
    let run = Command::new("timeout")
        .args(["300", "unshare"])
        .args(namespaces)
        .args(["--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o "size=$1" rwal-full-disk "$2" && exec "$3" --exact "$4" --nocapture"#)
        .arg("sh")
        .arg(FS_BYTES.to_string())
        .arg(temp.path())
        .arg(std::env::current_exe().expect("the test binary's path"))
        .arg(TEST)
        .env(MOUNTED, temp.path())
        .output()
        .expect("running `timeout` (coreutils)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the run on a tmpfs of {FS_BYTES} bytes failed ({}); this test needs `unshare` \
         (util-linux) and the right to mount in a mount namespace of its own (`unshare \
         {}`: root, or unprivileged user namespaces, which some containers and distributions \
         forbid): {said}",
        run.status,
        namespaces.join(" ")
    );
    // The inner run's harness line: the scenario ran, not a filter that matched nothing.
    assert!(said.contains("1 passed"), "{said}");
}

/// Fills the file system with `backend`'s log, checks what must hold, and cleans up.
fn fill_and_recover(mounted: &Path, backend: Backend) {
    let name = format!("{backend:?}");
    let dir = mounted.join(&name);
    let ballast = mounted.join("ballast");
    std::fs::write(&ballast, vec![1u8; BALLAST_BYTES]).expect("the ballast fits");
    let options = || {
        Options::new()
            .backend(backend.clone())
            .segment_bytes(SEGMENT_BYTES)
    };
    let wal = Wal::open(&dir, options()).expect("the log opens on a disk with room");
    let mut acknowledged = 0u64;
    let refused = loop {
        assert!(
            acknowledged < FS_BYTES,
            "{name}: {acknowledged} records and no full disk"
        );
        match wal.append_durable(&payload(acknowledged, RECORD_BYTES)) {
            Ok(lsn) => {
                acknowledged += 1;
                assert_eq!(lsn, acknowledged, "{name}");
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&refused, Error::NoSpace { .. }),
        "{name}: after {acknowledged} records: {refused:?}"
    );
    // It names the file it could not make, in this log's directory.
    assert!(
        refused.to_string().contains(&*dir.to_string_lossy()),
        "{name}: {refused}"
    );
    assert!(
        acknowledged > 1000,
        "{name}: full after {acknowledged} records"
    );
    // Not poisoned: the same append again is refused the same way, and takes no LSN. (A
    // smaller one may still fit in the active segment.)
    let again = wal.append_durable(&payload(acknowledged, RECORD_BYTES));
    assert!(
        matches!(again, Err(Error::NoSpace { .. })),
        "{name}: {again:?}"
    );
    assert_eq!(wal.last_lsn(), acknowledged, "{name}");
    read_all(&wal, 1, acknowledged, &name);
    wal.close().expect("the log closes on a full disk");

    // The log opens on the full disk, reads everything, and still refuses appends.
    let wal = Wal::open(&dir, options()).expect("the log opens on the full disk");
    assert_eq!(wal.last_lsn(), acknowledged, "{name}");
    read_all(&wal, 1, acknowledged, &name);

    // Every last block taken (another writer filled the rest): a checkpoint cannot be made,
    // says so, and changes nothing.
    let filler = mounted.join("filler");
    fill(&filler);
    let checkpoint_at = acknowledged / 2;
    let state = b"the engine's state";
    let refused = wal.checkpoint(checkpoint_at, Some(state));
    assert!(
        matches!(refused, Err(Error::NoSpace { .. })),
        "{name}: {refused:?}"
    );
    assert!(wal.latest_checkpoint().is_none(), "{name}");
    read_all(&wal, 1, acknowledged, &name);

    // Room for a checkpoint, not for a segment: the checkpoint is made, and the compaction
    // it allows makes room for appends, which go on from the next LSN.
    std::fs::remove_file(&filler).unwrap();
    wal.checkpoint(checkpoint_at, Some(state))
        .expect("a checkpoint once a few blocks are free");
    wal.compact_now().expect("a compaction");
    let lsn = wal
        .append_durable(&payload(acknowledged, RECORD_BYTES))
        .expect("an append once the compaction made room");
    assert_eq!(lsn, acknowledged + 1, "{name}");
    wal.close().unwrap();
    let wal = Wal::open(&dir, options()).expect("the log reopens");
    assert_eq!(wal.last_lsn(), acknowledged + 1, "{name}");
    let checkpoint = wal.latest_checkpoint().expect("the checkpoint");
    assert_eq!(checkpoint.lsn, checkpoint_at, "{name}");
    read_all(&wal, checkpoint_at + 1, acknowledged + 1, &name);
    drop(wal);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&ballast).unwrap();
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = [7u8; 4096];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// Reads records `from..=to` and checks each is the payload appended.
fn read_all(wal: &Wal, from: u64, to: u64, name: &str) {
    let mut reader = wal.reader(from).unwrap();
    for lsn in from..=to {
        let record = reader
            .next()
            .unwrap_or_else(|e| panic!("{name}: reading {lsn}: {e}"))
            .unwrap_or_else(|| panic!("{name}: record {lsn} of {from}..={to} missing"));
        assert_eq!(record.lsn, lsn, "{name}");
        assert_eq!(
            record.data,
            &payload(lsn - 1, RECORD_BYTES)[..],
            "{name}: {lsn}"
        );
    }
}
