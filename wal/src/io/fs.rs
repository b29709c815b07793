//! The real file system: segment files mapped into memory, written either through the mapping
//! (`mmap`) or with `pwritev` (`pwrite`), made durable with `fdatasync` in both cases.

use std::fs::{File as StdFile, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use super::recorder::SyncRecorder;
use super::{Dir, DirLock, File, Preallocation};

/// How writes reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// `memcpy` into a shared writable mapping.
    Map,
    /// `pwritev`; the mapping is read-only and serves reads only.
    Pwrite,
}

pub(crate) struct FsDir {
    path: PathBuf,
    dir: StdFile,
    mode: WriteMode,
    preallocation: Preallocation,
    recorder: Option<SyncRecorder>,
}

impl FsDir {
    /// Opens (and with `create`, creates durably) the directory.
    pub fn open(
        path: &Path,
        create: bool,
        mode: WriteMode,
        preallocation: Preallocation,
        recorder: Option<SyncRecorder>,
    ) -> io::Result<FsDir> {
        if create && !path.exists() {
            std::fs::create_dir_all(path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                StdFile::open(parent)?.sync_all()?;
            }
        }
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(FsDir {
            path: path.to_path_buf(),
            dir,
            mode,
            preallocation,
            recorder,
        })
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn preallocate(&self, file: &StdFile, len: u64) -> io::Result<()> {
        if self.preallocation == Preallocation::Fallocate {
            let len_off = libc::off_t::try_from(len).map_err(io::Error::other)?;
            // SAFETY: fallocate on a file descriptor we own; no memory is passed.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(err);
            }
        }
        // Zero-fill: real blocks, so that the mapping never sits over a hole.
        let zeros = vec![0u8; 1 << 20];
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }

    fn map(&self, file: StdFile, path: PathBuf) -> io::Result<Arc<dyn File>> {
        let len = file.metadata()?.len();
        if len == 0 || usize::try_from(len).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file of {len} bytes"),
            ));
        }
        let map = match self.mode {
            WriteMode::Map => MmapOptions::new().map_raw(&file)?,
            WriteMode::Pwrite => MmapOptions::new().map_raw_read_only(&file)?,
        };
        Ok(Arc::new(FsFile {
            file,
            map,
            len,
            mode: self.mode,
            path,
            recorder: self.recorder.clone(),
        }))
    }
}

impl Dir for FsDir {
    fn path(&self) -> &Path {
        &self.path
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn File>> {
        let path = self.file_path(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let prepared = self.preallocate(&file, len).and_then(|()| file.sync_all());
        if let Err(e) = prepared {
            drop(file);
            // Best effort: a half-allocated file must not stay around to be mistaken for space.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if let Some(recorder) = &self.recorder {
            recorder.file_synced(&path, &file)?;
        }
        self.map(file, path)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn File>> {
        let path = self.file_path(name);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        self.map(file, path)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.file_path(from), self.file_path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.file_path(name))
    }

    fn sync(&self) -> io::Result<()> {
        self.dir.sync_all()?;
        if let Some(recorder) = &self.recorder {
            recorder.dir_synced(&self.path)?;
        }
        Ok(())
    }

    fn lock(&self) -> io::Result<Box<dyn DirLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.file_path("LOCK"))?;
        // SAFETY: flock on a file descriptor we own; no memory is passed. flock locks belong to
        // the open file description, so a second open in this same process conflicts too.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(FsLock { _file: file }))
    }
}

struct FsLock {
    _file: StdFile,
}

impl DirLock for FsLock {}

pub(crate) struct FsFile {
    file: StdFile,
    map: MmapRaw,
    len: u64,
    mode: WriteMode,
    path: PathBuf,
    recorder: Option<SyncRecorder>,
}

impl FsFile {
    fn check_range(&self, offset: u64, len: usize) {
        let end = offset.checked_add(len as u64).expect("range overflows");
        assert!(
            end <= self.len,
            "range {offset}+{len} past the end of {} ({} bytes)",
            self.path.display(),
            self.len
        );
    }

    fn pwritev(&self, mut offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        let mut iov: Vec<libc::iovec> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let mut first = 0;
        while first < iov.len() {
            let count = (iov.len() - first).min(libc::UIO_MAXIOV as usize) as libc::c_int;
            // SAFETY: every iovec points into a slice borrowed for the duration of this call, and
            // the kernel only reads from them.
            let written = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    iov[first..].as_ptr(),
                    count,
                    offset as libc::off_t,
                )
            };
            if written < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            offset += written as u64;
            let mut left = written as usize;
            while left > 0 {
                let v = &mut iov[first];
                if left >= v.iov_len {
                    left -= v.iov_len;
                    first += 1;
                } else {
                    // SAFETY: advancing within the same slice, `left < iov_len`.
                    v.iov_base = unsafe { (v.iov_base as *mut u8).add(left) } as *mut libc::c_void;
                    v.iov_len -= left;
                    left = 0;
                }
            }
        }
        Ok(())
    }
}

impl File for FsFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn write_at(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.check_range(offset, total);
        match self.mode {
            WriteMode::Pwrite => self.pwritev(offset, parts),
            WriteMode::Map => {
                let mut at = offset as usize;
                for part in parts {
                    // SAFETY: the range is inside the mapping (checked above); the mapping is
                    // writable and lives as long as `self`; the file was fully allocated before
                    // it was mapped and is never shrunk, so the store cannot SIGBUS; concurrent
                    // writers and readers touch disjoint ranges (the trait's discipline).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            part.as_ptr(),
                            self.map.as_mut_ptr().add(at),
                            part.len(),
                        );
                    }
                    at += part.len();
                }
                Ok(())
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        // fdatasync also writes back pages dirtied through a shared mapping (Linux has one page
        // cache), and is far cheaper than msync(MS_SYNC) here.
        // SAFETY: fdatasync on a file descriptor we own.
        if unsafe { libc::fdatasync(self.file.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(recorder) = &self.recorder {
            recorder.file_synced(&self.path, &self.file)?;
        }
        Ok(())
    }

    fn bytes(&self, offset: u64, len: usize) -> &[u8] {
        self.check_range(offset, len);
        // SAFETY: the range is inside the mapping (checked above), which lives as long as
        // `self`; no write touches it while the slice lives (the trait's discipline).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset as usize), len) }
    }
}
