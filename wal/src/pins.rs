//! Retention pins: named holds on an LSN. A reader holds one at the record it last returned, so
//! that `truncate_after` refuses to cut records a reader may still be looking at (and, with the
//! compactor, so that nothing a reader needs is removed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::Lsn;

#[derive(Default)]
pub(crate) struct Pins {
    inner: Mutex<PinMap>,
}

#[derive(Default)]
struct PinMap {
    next_id: u64,
    entries: BTreeMap<u64, (String, Arc<AtomicU64>)>,
}

impl Pins {
    /// Registers a pin; the returned cell holds its LSN and may be moved by its holder.
    pub fn register(&self, name: &str, lsn: Lsn) -> (u64, Arc<AtomicU64>) {
        let mut map = self.inner.lock();
        map.next_id += 1;
        let id = map.next_id;
        let cell = Arc::new(AtomicU64::new(lsn));
        map.entries
            .insert(id, (format!("{name} #{id}"), cell.clone()));
        (id, cell)
    }

    pub fn release(&self, id: u64) {
        self.inner.lock().entries.remove(&id);
    }

    /// The pin with the highest LSN above `lsn`, if any: its name and LSN.
    pub fn highest_above(&self, lsn: Lsn) -> Option<(String, Lsn)> {
        let map = self.inner.lock();
        map.entries
            .values()
            .map(|(name, cell)| (name, cell.load(Ordering::Acquire)))
            .filter(|&(_, pinned)| pinned > lsn)
            .max_by_key(|&(_, pinned)| pinned)
            .map(|(name, pinned)| (name.clone(), pinned))
    }
}
