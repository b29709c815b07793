//! Retention pins: named holds on an LSN. A pin on `lsn` keeps every record from `lsn` on: the
//! compactor removes nothing at or after it, and `truncate_after` refuses to cut below it.
//! Readers hold one at the record they last returned. A pin may carry a byte cap: when the log
//! it holds back grows past the cap, the compactor invalidates it (its holder's next call says
//! so) instead of letting it fill the disk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::wal::Inner;
use crate::Lsn;

#[derive(Default)]
pub(crate) struct Pins {
    inner: Mutex<PinMap>,
}

#[derive(Default)]
struct PinMap {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
}

struct Entry {
    name: String,
    lsn: Arc<AtomicU64>,
    cap_bytes: Option<u64>,
    invalidated: Arc<AtomicBool>,
    reader: bool,
    /// Whether cuts (`truncate_after`, a reset) are refused for it: all but a read's copy.
    holds_off_cuts: bool,
}

/// A pin released when dropped (`Wal::read`'s, held for one copy).
pub(crate) struct Released<'a>(pub &'a Pins, pub u64);

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// What a pin is, as `Wal::pins` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinInfo {
    /// Its name (readers are named `reader #N`, checkpoints being written `checkpoint #N`).
    pub name: String,
    /// The first LSN it keeps.
    pub lsn: Lsn,
    /// Its byte cap, if any.
    pub cap_bytes: Option<u64>,
    /// Whether a reader holds it (not a user's pin, nor a checkpoint being written).
    pub reader: bool,
}

/// A pin as compaction sees it: its id, name, LSN and byte cap.
pub(crate) type HeldPin = (u64, String, Lsn, Option<u64>);

/// Who holds a pin being registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A pin the user named (`Wal::pin`): listed under that name.
    User,
    /// A reader: listed as `NAME #ID`, with `PinInfo::reader` set.
    Reader,
    /// A `Wal::read` copying one record, listed as a reader is. Its pin lives only while the
    /// read holds the cut gate shared, and every cut looks at the pins again under that gate
    /// held exclusively, where it never meets one. So cuts ignore it: their first look, taken
    /// without the gate to spare work when refused, refused them with `Pinned` for a read in
    /// progress (found by review on 2026-12-04). Compaction, which does not take the gate,
    /// honours it.
    ReadCopy,
    /// A checkpoint being written: listed as `checkpoint #ID`.
    Checkpoint,
}

pub(crate) struct Registered {
    pub id: u64,
    pub lsn: Arc<AtomicU64>,
    pub invalidated: Arc<AtomicBool>,
}

impl Pins {
    /// Registers a pin; its holder moves it through the returned cell.
    pub fn register(
        &self,
        name: &str,
        lsn: Lsn,
        cap_bytes: Option<u64>,
        holder: Holder,
    ) -> Registered {
        let mut map = self.inner.lock();
        map.next_id += 1;
        let id = map.next_id;
        let cell = Arc::new(AtomicU64::new(lsn));
        let invalidated = Arc::new(AtomicBool::new(false));
        let name = match holder {
            Holder::User => name.to_string(),
            Holder::Reader | Holder::ReadCopy | Holder::Checkpoint => format!("{name} #{id}"),
        };
        let reader = matches!(holder, Holder::Reader | Holder::ReadCopy);
        map.entries.insert(
            id,
            Entry {
                name,
                lsn: cell.clone(),
                cap_bytes,
                invalidated: invalidated.clone(),
                reader,
                holds_off_cuts: holder != Holder::ReadCopy,
            },
        );
        Registered {
            id,
            lsn: cell,
            invalidated,
        }
    }

    pub fn release(&self, id: u64) {
        self.inner.lock().entries.remove(&id);
    }

    /// Holds the registry's lock, as a thread busy with a pin does (tests of a fork made
    /// meanwhile).
    #[cfg(all(test, not(loom)))]
    pub fn hold(&self) -> parking_lot::MutexGuard<'_, impl Sized> {
        self.inner.lock()
    }

    /// The pin with the highest LSN above `lsn` that holds off cuts (not a read's copy), if
    /// any: its name and LSN.
    pub fn highest_above(&self, lsn: Lsn) -> Option<(String, Lsn)> {
        let map = self.inner.lock();
        map.entries
            .values()
            .filter(|e| e.holds_off_cuts)
            .map(|e| (&e.name, e.lsn.load(Ordering::Acquire)))
            .filter(|&(_, pinned)| pinned > lsn)
            .max_by_key(|&(_, pinned)| pinned)
            .map(|(name, pinned)| (name.clone(), pinned))
    }

    /// The pin with the lowest LSN among those that hold off cuts (not a read's copy): its
    /// id, name, LSN and cap.
    pub fn lowest_holding_off_cuts(&self) -> Option<HeldPin> {
        self.all_now(|e| e.holds_off_cuts)
            .into_iter()
            .min_by_key(|&(_, _, lsn, _)| lsn)
    }

    /// The pins below `limit`, highest first: their ids, names, LSNs and caps.
    pub fn below_highest_first(&self, limit: Lsn) -> Vec<HeldPin> {
        let mut below = self.all_now(|_| true);
        below.retain(|&(_, _, lsn, _)| lsn < limit);
        below.sort_by_key(|&(id, _, lsn, _)| std::cmp::Reverse((lsn, id)));
        below
    }

    /// Every pin `wanted` takes, as it is now: its id, name, LSN and cap.
    fn all_now(&self, wanted: impl Fn(&Entry) -> bool) -> Vec<HeldPin> {
        let map = self.inner.lock();
        map.entries
            .iter()
            .filter(|(_, e)| wanted(e))
            .map(|(&id, e)| {
                (
                    id,
                    e.name.clone(),
                    e.lsn.load(Ordering::Acquire),
                    e.cap_bytes,
                )
            })
            .collect()
    }

    /// Invalidates a capped pin that holds back too much; its holder learns at its next call.
    pub fn invalidate(&self, id: u64) {
        if let Some(entry) = self.inner.lock().entries.remove(&id) {
            entry.invalidated.store(true, Ordering::Release);
        }
    }

    pub fn list(&self) -> Vec<PinInfo> {
        let map = self.inner.lock();
        map.entries
            .values()
            .map(|e| PinInfo {
                name: e.name.clone(),
                lsn: e.lsn.load(Ordering::Acquire),
                cap_bytes: e.cap_bytes,
                reader: e.reader,
            })
            .collect()
    }
}

/// A named hold on the log from an LSN on; released when dropped.
pub struct Pin {
    inner: Arc<Inner>,
    name: String,
    cap_bytes: Option<u64>,
    registered: Registered,
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin")
            .field("name", &self.name)
            .field("lsn", &self.lsn())
            .finish()
    }
}

impl Pin {
    pub(crate) fn new(
        inner: Arc<Inner>,
        name: &str,
        lsn: Lsn,
        cap_bytes: Option<u64>,
    ) -> Result<Pin> {
        inner.opened_in.check("pin")?;
        if name.is_empty() {
            return Err(Error::invalid("name", "a pin needs a name"));
        }
        let registered = {
            // Registered under the cut gate, which a truncation or a reset holds from its look
            // at the pins to the end of its cut: it either sees this pin, or is over. (Without
            // it, a pin registered past the cut between the truncation's look at the pins and
            // its cut kept nothing: found by review.)
            let _gate = inner.cut_gate.read();
            // Checked and registered under the control lock, which compaction holds from its
            // look at the pins to its move of the first LSN: it either sees this pin, or has
            // moved the first LSN already and the check below sees that.
            let _control = inner.control.lock();
            // Under both locks, which close takes to mark the log closed: a pin is either
            // registered before the close or refused.
            inner.group.check()?;
            let first = inner.first_lsn.load(Ordering::Acquire);
            if lsn < first {
                return Err(Error::Compacted {
                    lsn,
                    first_retained: first,
                });
            }
            inner.pins.register(name, lsn, cap_bytes, Holder::User)
        };
        Ok(Pin {
            inner,
            name: name.to_string(),
            cap_bytes,
            registered,
        })
    }

    /// The first LSN the pin keeps.
    pub fn lsn(&self) -> Lsn {
        self.registered.lsn.load(Ordering::Acquire)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the compactor invalidated it (it held back more than its cap).
    pub fn is_invalidated(&self) -> bool {
        self.registered.invalidated.load(Ordering::Acquire)
    }

    /// Moves the pin to keep records from `lsn` on (forward, or back to a retained LSN).
    /// [`Error::Closed`] once the log is closed (nothing is left to hold back), and
    /// [`Error::Poisoned`] once it is poisoned, as for the log's other calls.
    pub fn move_to(&self, lsn: Lsn) -> Result<()> {
        self.inner.opened_in.check("a pin's move_to")?;
        self.check_valid()?;
        // Under the cut gate, as a new pin is registered: a pin moved past a cut in progress
        // would keep nothing.
        let _gate = self.inner.cut_gate.read();
        // Under the gate, which close holds while it marks the log closed.
        self.inner.group.check()?;
        if lsn >= self.lsn() {
            // Forward: compaction kept everything from the old LSN on, so this one too.
            self.registered.lsn.store(lsn, Ordering::Release);
            return self.check_valid();
        }
        // Back: checked and moved under the control lock, as a new pin is registered.
        let _control = self.inner.control.lock();
        let first = self.inner.first_lsn.load(Ordering::Acquire);
        if lsn < first {
            return Err(Error::Compacted {
                lsn,
                first_retained: first,
            });
        }
        self.registered.lsn.store(lsn, Ordering::Release);
        self.check_valid()
    }

    /// `PinInvalidated` once the compactor released the pin. Checked again after a move: a
    /// compaction that released it while it moved (its check of the pin's bytes ran before
    /// the new LSN was stored) must not leave the move reported as holding anything.
    fn check_valid(&self) -> Result<()> {
        if self.is_invalidated() {
            return Err(Error::PinInvalidated {
                name: self.name.clone(),
                lsn: self.lsn(),
                cap_bytes: self.cap_bytes.unwrap_or(0),
            });
        }
        Ok(())
    }

    /// Releases the pin (as dropping it does).
    pub fn release(self) {}
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Not in a child forked from the opener: the registry is the opener's, and its lock
        // may be held by a thread this process does not have.
        if !self.inner.opened_in.is_current() {
            return;
        }
        self.inner.pins.release(self.registered.id);
    }
}
