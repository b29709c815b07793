//! Readers holding a record, and the directory lock a close leaves to the last of them.
//!
//! A [`crate::Reader`] hands out records as slices of the segment mappings. Closing the log
//! releases the directory, and a log opened on it again (in this process or another) may rewrite
//! a segment file in place: its recovery's zero-fill, a truncation, a recycled segment. A record
//! still borrowed from a reader of the closed log would change under its `&[u8]`. So a close
//! that finds readers holding records keeps the directory locked until the last of them lets
//! go: it is called again (which ends the borrow of the record it returned) or dropped.

use parking_lot::Mutex;

use crate::io::DirLock;

/// The count of readers whose last call returned a record, and the directory lock that a close
/// left to them.
#[derive(Default)]
pub(crate) struct RecordHolders {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    holding: usize,
    lock_left: Option<Box<dyn DirLock>>,
}

impl RecordHolders {
    /// A reader returned a record, having held none.
    pub(crate) fn hold(&self) {
        self.state.lock().holding += 1;
    }

    /// A reader that held a record holds none any more; the last one releases a lock that a
    /// close left.
    pub(crate) fn let_go(&self) {
        let released = {
            let mut state = self.state.lock();
            state.holding = state
                .holding
                .checked_sub(1)
                .expect("a reader held a record");
            if state.holding == 0 {
                state.lock_left.take()
            } else {
                None
            }
        };
        drop(released);
    }

    /// The close's release of the directory: now if no reader holds a record, else when the
    /// last one lets go.
    pub(crate) fn release_after_readers(&self, lock: Option<Box<dyn DirLock>>) {
        let mut state = self.state.lock();
        if state.holding == 0 {
            drop(state);
            drop(lock);
        } else {
            state.lock_left = lock;
        }
    }
}
