//! Shared setup of the criterion benches (`benches/wal.rs`): logs in temporary directories that
//! are removed when dropped.

use std::path::PathBuf;

use rwal_wal::{Backend, Options, Wal};

/// A log in a fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct BenchLog {
    /// The open log.
    pub wal: Option<Wal>,
    dir: PathBuf,
}

impl BenchLog {
    /// Opens a fresh log with `backend` and 64 MiB segments.
    pub fn new(label: &str, backend: Backend) -> BenchLog {
        let dir =
            std::env::temp_dir().join(format!("rwal-criterion-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, Options::new().backend(backend)).expect("open bench log");
        BenchLog {
            wal: Some(wal),
            dir,
        }
    }

    /// The log.
    pub fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open")
    }
}

impl Drop for BenchLog {
    fn drop(&mut self) {
        if let Some(wal) = self.wal.take() {
            let _ = wal.close();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
