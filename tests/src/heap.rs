//! A global allocator that counts the heap: for tests that bound what a code path allocates
//! (a snapshot streamed, a log verified), exactly rather than through the process's resident
//! memory. A test binary installs it with
//! `#[global_allocator] static HEAP: rwal_tests::heap::Counting = rwal_tests::heap::Counting;`
//! and should hold one test: the counts are the whole process's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes allocated and not yet freed, and their peak.
#[derive(Debug)]
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the counts are only read.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

/// Where a measurement starts: the heap then.
#[derive(Debug)]
pub struct Mark(usize);

/// Starts a measurement: the peak is reset to what is live now. Panics if the counting
/// allocator is not installed (nothing counted yet), which would measure nothing.
pub fn mark() -> Mark {
    let live = LIVE.load(Ordering::Relaxed);
    assert!(
        live > 0,
        "rwal_tests::heap::Counting is not this binary's global allocator"
    );
    PEAK.store(live, Ordering::Relaxed);
    Mark(live)
}

/// How far the heap's peak rose above the mark, and a new mark for what follows.
pub fn peak_growth_since(mark: Mark) -> (usize, Mark) {
    let growth = PEAK.load(Ordering::Relaxed).saturating_sub(mark.0);
    (growth, self::mark())
}
