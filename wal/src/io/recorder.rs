//! A test instrument for the real backends: it records the image of every file at each
//! completed sync, and of the directory at each directory sync, so that a test can rebuild what
//! a power cut would have left (the last synced image plus a random subset of later sectors) and
//! recover from it. A SIGKILL keeps the page cache and so cannot catch a missing sync; this can.

use std::collections::BTreeMap;
use std::fs::File as StdFile;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::sim::SECTOR_BYTES;
use crate::rng::Rng;

/// Records synced images; pass it to [`Options::sync_recorder`](crate::Options::sync_recorder).
/// Cloning gives another handle to the same record.
#[derive(Clone, Default)]
pub struct SyncRecorder {
    inner: Arc<Mutex<Recorded>>,
}

impl std::fmt::Debug for SyncRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.inner.lock();
        f.debug_struct("SyncRecorder")
            .field("files", &r.images.len())
            .field("syncs", &r.syncs)
            .finish()
    }
}

#[derive(Default)]
struct Recorded {
    /// Image of each file (by inode) at its last sync, and the path it was last seen at.
    images: BTreeMap<u64, (PathBuf, Vec<u8>)>,
    /// The directory's durable listing: name to inode.
    durable_names: Option<BTreeMap<String, u64>>,
    syncs: u64,
}

impl SyncRecorder {
    /// A recorder with nothing recorded.
    pub fn new() -> SyncRecorder {
        SyncRecorder::default()
    }

    /// How many file syncs were recorded.
    pub fn sync_count(&self) -> u64 {
        self.inner.lock().syncs
    }

    pub(crate) fn file_synced(&self, path: &Path, file: &StdFile) -> io::Result<()> {
        let meta = file.metadata()?;
        let mut image = vec![0u8; meta.len() as usize];
        file.read_exact_at(&mut image, 0)?;
        let mut r = self.inner.lock();
        r.images.insert(meta.ino(), (path.to_path_buf(), image));
        r.syncs += 1;
        Ok(())
    }

    pub(crate) fn dir_synced(&self, dir: &Path) -> io::Result<()> {
        let mut names = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.insert(name, entry.metadata()?.ino());
            }
        }
        self.inner.lock().durable_names = Some(names);
        Ok(())
    }

    /// Writes into `out` (an empty directory) what a power cut now could leave of `dir`: the
    /// files named at the last directory sync, each holding its image at its last sync plus a
    /// random subset of the 512-byte sectors that differ from it now. Files never synced hold
    /// zeros where nothing survived.
    pub fn crash_image(&self, dir: &Path, out: &Path, seed: u64) -> io::Result<()> {
        let mut rng = Rng::new(seed);
        let r = self.inner.lock();
        let Some(names) = &r.durable_names else {
            return Ok(());
        };
        for (name, ino) in names {
            if name == super::fs::LOCK_FILE {
                continue;
            }
            let current = Self::current_bytes(dir, name, *ino).unwrap_or_default();
            let mut image = match r.images.get(ino) {
                Some((_, image)) => image.clone(),
                None => vec![0u8; current.len()],
            };
            if current.len() == image.len() {
                for (sector, (now, then)) in current
                    .chunks(SECTOR_BYTES)
                    .zip(image.chunks_mut(SECTOR_BYTES))
                    .enumerate()
                {
                    if now != then && rng.below(2) == 0 {
                        then.copy_from_slice(now);
                    }
                    let _ = sector;
                }
            }
            std::fs::write(out.join(name), &image)?;
        }
        Ok(())
    }

    /// The file's bytes now, if it still exists in `dir` under some name with the same inode.
    fn current_bytes(dir: &Path, name: &str, ino: u64) -> Option<Vec<u8>> {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).ok()?;
        if meta.ino() != ino {
            return None;
        }
        std::fs::read(path).ok()
    }
}
