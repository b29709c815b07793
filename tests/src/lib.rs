//! Helpers shared by the scenario tests in `tests/tests/`: temporary directories, the list of
//! backends every test runs against, and payloads that check themselves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rwal_wal::{Backend, Options, SimDisk};

pub mod control_file;
pub mod heap;

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory under the system's temporary directory.
    pub fn new(label: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), label)
    }

    /// A fresh, empty directory under `base` (a test that needs a disk-backed file system uses
    /// its target directory's, `CARGO_TARGET_TMPDIR`, where `/tmp` may be a tmpfs).
    pub fn new_in(base: &Path, label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("rwal-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One backend a test runs against, with what it needs to stay alive.
#[derive(Debug)]
pub struct Target {
    /// Its name, for messages.
    pub name: &'static str,
    /// The directory (a label on the simulated disk).
    pub dir: PathBuf,
    /// The backend.
    pub backend: Backend,
    _temp: Option<TempDir>,
}

impl Target {
    /// Options for this backend with 1 MiB segments.
    pub fn options(&self) -> Options {
        Options::new()
            .backend(self.backend.clone())
            .segment_bytes(1 << 20)
    }
}

/// The real `mmap`, `pwrite`, `staged` and `io_uring` backends (each in a fresh directory) and
/// a fresh simulated disk.
pub fn targets(label: &str) -> Vec<Target> {
    let real = |name: &'static str, backend: Backend| {
        let temp = TempDir::new(&format!("{label}-{name}"));
        Target {
            name,
            dir: temp.join("log"),
            backend,
            _temp: Some(temp),
        }
    };
    vec![
        real("mmap", Backend::Mmap),
        real("pwrite", Backend::Pwrite),
        real("staged", Backend::Staged),
        real("io_uring", Backend::IoUring),
        Target {
            name: "sim",
            dir: PathBuf::from("/sim/log"),
            backend: Backend::Simulated(SimDisk::new()),
            _temp: None,
        },
    ]
}

/// A payload that encodes its own identity: `len` bytes derived from `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rwal_wal::rng::Rng::new(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    bytes
}

/// Keeps the panics a simulated disk raises on purpose (`SimDisk::is_armed_panic`: a
/// simulation stopping a call in its middle) out of the test's output; every other panic is
/// printed as before. Installed once per process.
pub fn quiet_armed_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !SimDisk::is_armed_panic(info.payload()) {
                print(info);
            }
        }));
    });
}

/// How many rounds a long-running test does: `default`, or the value of `var` if set (a value
/// that is not a number fails the test).
pub fn rounds(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        // A value that does not parse fails the test instead of running the default count
        // without a word (a long run asked for would silently be a short one).
        Ok(value) => value
            .parse()
            .unwrap_or_else(|e| panic!("{var}={value:?} is not a number of rounds: {e}")),
        Err(_) => default,
    }
}

/// A payload that carries its own seed: 8 bytes of seed, 4 of length, then bytes derived from
/// the seed. A checker can tell such a record from any garbage without knowing its LSN.
pub fn self_describing(seed: u64, len: usize) -> Vec<u8> {
    assert!(len >= 12, "room for the seed and the length");
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&seed.to_le_bytes());
    bytes.extend_from_slice(&(len as u32).to_le_bytes());
    bytes.extend_from_slice(&payload(seed, len - 12));
    bytes
}

/// The seed of a payload made by [`self_describing`], if it is one.
pub fn seed_of(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 12 {
        return None;
    }
    let seed = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    (self_describing(seed, bytes.len()) == bytes).then_some(seed)
}

/// The records of the golden log: (kind, epoch, payload). Two segments' worth, user and
/// system records, empty and large payloads.
pub fn golden_records() -> Vec<(rwal_wal::RecordKind, u64, Vec<u8>)> {
    use rwal_wal::RecordKind::{System, User};
    (1..=64u64)
        .map(|i| {
            let kind = if i % 10 == 0 { System } else { User };
            let len = match i {
                20 | 40 | 60 => 350 << 10,
                7 => 0,
                _ => (i as usize * 37) % 900,
            };
            (kind, 1 + i / 30, payload(i, len))
        })
        .collect()
}

/// The segment files on a simulated disk, oldest first.
pub fn segment_names(disk: &SimDisk) -> Vec<String> {
    let mut names: Vec<String> = disk
        .file_names()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

/// The segment files in the real directory `dir`, oldest first.
pub fn segment_paths(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    paths.sort();
    paths
}

/// The exit status of child `pid`, forked by a test; killed and failed if it runs past
/// `limit` (a child that joins a thread it does not have can hang).
pub fn wait_child(pid: libc::pid_t, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child without blocking; `status` is a valid out-pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(waited >= 0, "waitpid failed");
        if waited == pid {
            assert!(
                libc::WIFEXITED(status),
                "the child did not exit: {status:#x}"
            );
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() > deadline {
            // SAFETY: signals and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
