//! The node's persister thread: makes the log durable for the rounds its replica handled in the
//! background mode (docs/replication.md section 3.3) while the node's thread goes on stepping
//! messages and taking proposals.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use rwal_wal::{Lsn, Wal};

use crate::error::{Error, Result};
use crate::NodeId;

/// Syncs the log on its own thread when asked; stops when dropped.
pub(crate) struct Persister {
    shared: Arc<Shared>,
    wal: Arc<Wal>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

#[derive(Default)]
struct State {
    /// The LSN asked for last. It can go down: after a cut, the replica's rounds end lower.
    wanted: Lsn,
    stop: bool,
    /// Why a sync failed: the thread stopped then.
    failure: Option<String>,
    /// When the sync in progress started, while one is.
    syncing_since: Option<Instant>,
}

impl Persister {
    /// Starts the thread; `on_durable` runs on it after each sync, and after a failure.
    pub(crate) fn start(
        id: NodeId,
        wal: Arc<Wal>,
        on_durable: impl Fn() + Send + 'static,
    ) -> Result<Persister> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        let (worker, log) = (shared.clone(), wal.clone());
        let thread = std::thread::Builder::new()
            .name(format!("rwal-persist-{id}"))
            .spawn(move || persist(&worker, &log, &on_durable))
            .map_err(|e| {
                Error::invalid("thread", format!("cannot start the persister thread: {e}"))
            })?;
        Ok(Persister {
            shared,
            wal,
            thread: Some(thread),
        })
    }

    /// Asks for the log to be made durable through `lsn` (replacing the last request).
    pub(crate) fn want(&self, lsn: Lsn) {
        self.shared.state.lock().wanted = lsn;
        // Even for the LSN asked for last: after a cut, the same LSN may name new records that
        // are not durable yet (the thread looks, and syncs nothing if there is nothing to do).
        self.shared.cond.notify_one();
    }

    /// Why a sync failed, once one did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.shared.state.lock().failure.clone()
    }

    /// When the sync in progress started, if one is (a sync that never returns, on a disk
    /// that hangs, stays in progress).
    pub(crate) fn syncing_since(&self) -> Option<Instant> {
        self.shared.state.lock().syncing_since
    }

    /// Whether a sync is in progress or asked for and not started yet: a sync on another
    /// thread now would wait for it (the log's group commit).
    pub(crate) fn busy(&self) -> bool {
        let state = self.shared.state.lock();
        state.syncing_since.is_some() || to_sync(&self.wal, state.wanted).is_some()
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.cond.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What is wanted and still exists (a divergent suffix may have been cut since it was asked
/// for: the replica synced the rounds before the cut first, so the rest is not wanted any
/// more), if it is not durable yet.
fn to_sync(wal: &Wal, wanted: Lsn) -> Option<Lsn> {
    Some(wanted.min(wal.last_lsn())).filter(|&lsn| lsn > wal.durable_lsn())
}

fn persist(shared: &Shared, wal: &Wal, on_durable: &dyn Fn()) {
    loop {
        let lsn = {
            let mut state = shared.state.lock();
            loop {
                if state.stop {
                    return;
                }
                if let Some(lsn) = to_sync(wal, state.wanted) {
                    state.syncing_since = Some(Instant::now());
                    break lsn;
                }
                shared.cond.wait(&mut state);
            }
        };
        // `NotFound`: cut between the look at the log's end and the commit (as above). A panic
        // (a bug in the log) is a failure like an error: it ended this thread silently, the
        // sync in progress for good, and the node ran on handing syncs to nobody (found by
        // review on 2026-12-05; the log turns a panic in the sync itself into an error).
        let outcome =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.commit(lsn))) {
                Ok(Ok(()) | Err(rwal_wal::Error::NotFound { .. })) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(format!(
                    "the log's commit panicked: {}",
                    crate::error::panic_message(panic.as_ref())
                )),
            };
        let mut state = shared.state.lock();
        state.syncing_since = None;
        match outcome {
            Ok(()) => {
                drop(state);
                on_durable();
            }
            Err(failure) => {
                state.failure = Some(failure);
                drop(state);
                on_durable();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwal_wal::{Backend, Options, SimDisk};
    use std::sync::mpsc;
    use std::time::Duration;

    fn simulated_log(disk: &SimDisk) -> Arc<Wal> {
        let options = Options::new()
            .backend(Backend::Simulated(disk.clone()))
            .background_threads(false)
            .segment_bytes(1 << 20);
        Arc::new(Wal::open("/persister", options).expect("a simulated log opens"))
    }

    fn start(wal: &Arc<Wal>) -> (Persister, mpsc::Receiver<()>) {
        let (woken, wakes) = mpsc::channel();
        let persister = Persister::start(1, wal.clone(), move || {
            let _ = woken.send(());
        })
        .expect("the thread starts");
        (persister, wakes)
    }

    const WAIT: Duration = Duration::from_secs(30);
    /// Linux's errno for an I/O error.
    const EIO: i32 = 5;

    #[test]
    fn a_wanted_lsn_becomes_durable_and_wakes_the_node() {
        let disk = SimDisk::new();
        let wal = simulated_log(&disk);
        let (persister, wakes) = start(&wal);
        let first = wal.append(b"one").unwrap();
        let last = wal.append(b"two").unwrap();
        assert!(wal.durable_lsn() < first);
        persister.want(last);
        wakes.recv_timeout(WAIT).expect("woken after the sync");
        assert!(wal.durable_lsn() >= last);
        // Asking again for what is durable does not sync again.
        let syncs = disk.sync_count();
        persister.want(last);
        assert!(wakes.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(disk.sync_count(), syncs);
        assert_eq!(persister.failure(), None);
    }

    #[test]
    fn a_failed_sync_is_reported_and_stops_the_thread() {
        let disk = SimDisk::new();
        let wal = simulated_log(&disk);
        let (persister, wakes) = start(&wal);
        let lsn = wal.append(b"one").unwrap();
        disk.fail_next_sync(EIO);
        persister.want(lsn);
        wakes.recv_timeout(WAIT).expect("woken after the failure");
        let failure = persister.failure().expect("the failure is kept");
        assert!(!failure.is_empty());
        assert!(wal.durable_lsn() < lsn);
        // The thread is gone: nothing more is synced, and dropping does not hang.
        disk.clear_faults();
        persister.want(lsn + 1);
        assert!(wakes.recv_timeout(Duration::from_millis(200)).is_err());
        drop(persister);
    }

    #[test]
    fn a_sync_that_panics_is_reported_as_a_failure() {
        let disk = SimDisk::new();
        let wal = simulated_log(&disk);
        let (persister, wakes) = start(&wal);
        let lsn = wal.append(b"one").unwrap();
        disk.panic_on_next_sync();
        persister.want(lsn);
        wakes.recv_timeout(WAIT).expect("woken after the failure");
        let failure = persister.failure().expect("the failure is kept");
        assert!(failure.contains("the sync panicked"), "{failure}");
        assert_eq!(persister.syncing_since(), None);
        assert!(wal.durable_lsn() < lsn);
        drop(persister);
    }

    #[test]
    fn a_sync_in_progress_is_reported_with_its_start() {
        let disk = SimDisk::new();
        let wal = simulated_log(&disk);
        let (persister, wakes) = start(&wal);
        assert_eq!(persister.syncing_since(), None);
        let lsn = wal.append(b"one").unwrap();
        let hold = disk.hold_next_sync();
        let asked = Instant::now();
        persister.want(lsn);
        assert!(hold.wait_reached(WAIT), "the sync never started");
        let since = persister.syncing_since().expect("a sync in progress");
        assert!(since >= asked);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(persister.syncing_since(), Some(since), "the same sync");
        assert!(persister.busy());
        hold.release();
        wakes.recv_timeout(WAIT).expect("woken after the sync");
        assert_eq!(persister.syncing_since(), None);
        assert!(!persister.busy());
        assert!(wal.durable_lsn() >= lsn);
    }

    #[test]
    fn after_a_cut_the_same_lsns_are_synced_again() {
        let disk = SimDisk::new();
        let wal = simulated_log(&disk);
        let (persister, wakes) = start(&wal);
        let kept = wal.append(b"kept").unwrap();
        wal.append(b"cut").unwrap();
        let highest = wal.append(b"cut too").unwrap();
        persister.want(highest);
        wakes.recv_timeout(WAIT).expect("woken after the sync");
        // A new leader's entries replace the last two: the same LSNs, not durable yet, and
        // below what was wanted before.
        wal.truncate_after(kept).unwrap();
        let again = wal.append(b"replaced").unwrap();
        assert_eq!(again, kept + 1);
        assert!(wal.durable_lsn() < again);
        persister.want(again);
        wakes.recv_timeout(WAIT).expect("woken after the sync");
        assert!(wal.durable_lsn() >= again);
        // The same LSN as the last request, naming new records after another cut.
        wal.truncate_after(kept).unwrap();
        assert_eq!(wal.append(b"replaced again").unwrap(), again);
        assert!(wal.durable_lsn() < again);
        persister.want(again);
        wakes.recv_timeout(WAIT).expect("woken after the sync");
        assert!(wal.durable_lsn() >= again);
        // A want past the log's end (cut after it was asked for) syncs what is there.
        let last = wal.append(b"next").unwrap();
        persister.want(last + 5);
        wakes.recv_timeout(WAIT).expect("woken after the sync");
        assert!(wal.durable_lsn() >= last);
        assert_eq!(persister.failure(), None);
    }
}
