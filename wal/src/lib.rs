//! # rwal-wal
//!
//! The single-node write-ahead log of rwal: checksummed, preallocated, memory-mapped segments;
//! appends from many threads at once with one short serial step; group commit; zero-copy
//! readers that never see past the durable LSN; recovery that tells a torn tail from
//! corruption; and a `truncate_after` for consensus. Replication, checkpoints and the C ABI are
//! built on top of it in other crates.
//!
//! ```
//! use rwal_wal::{Options, Wal};
//!
//! # let dir = std::env::temp_dir().join(format!("rwal-doc-{}", std::process::id()));
//! let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20))?;
//! let lsn = wal.append(b"first record")?;
//! wal.commit(lsn)?; // durable once this returns
//! let mut reader = wal.reader(wal.first_lsn())?;
//! while let Some(record) = reader.next()? {
//!     assert_eq!(record.data, b"first record");
//! }
//! # drop(reader);
//! wal.close()?;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), rwal_wal::Error>(())
//! ```
//!
//! The byte layouts, the commit protocol and the recovery rules are in `docs/design.md`.

#![warn(missing_docs)]
// `unsafe` lives only in the I/O backends (`io/`) and `segment_ref`, each block with a SAFETY
// comment (plus the one call in `Inner::copy_run` that uses a `SegmentRef`); the
// compiler holds every other module to that (docs/UNSAFE.md).
#![deny(unsafe_code)]

mod checkpoint;
mod control;
mod error;
mod first_pass;
mod fork;
mod group_commit;
pub mod inspect;
#[allow(unsafe_code)]
pub mod io;
mod options;
mod pins;
mod reader;
pub mod record;
mod record_holders;
mod recovery;
mod reserve;
pub mod rng;
pub mod segment;
#[allow(unsafe_code)]
mod segment_ref;
pub mod snapshot;
mod sync;
#[cfg(test)]
mod test_hooks;
mod wal;

#[cfg(all(test, loom))]
mod loom_tests;

/// A log sequence number: dense, the first record is 1.
pub type Lsn = u64;

pub use checkpoint::{Checkpoint, CheckpointWriter, CompactionReport, ReceivedSnapshot};
pub use control::{ControlState, HardState, MEMBERSHIP_BYTES_MAX};
pub use error::{Error, Result};
pub use fork::OpeningProcess;
pub use group_commit::CommitStats;
pub use io::recorder::SyncRecorder;
pub use io::sim::{SimDisk, SimHold};
pub use io::uring::UringSync;
pub use io::Preallocation;
pub use options::{Backend, Options, RecoveryMode, SEGMENT_BYTES_DEFAULT};
pub use pins::{Pin, PinInfo};
pub use reader::{Reader, Record};
pub use record::RecordKind;
pub use recovery::{RecoveryEvent, RecoveryReport};
pub use snapshot::SnapshotReader;
pub use wal::Wal;
