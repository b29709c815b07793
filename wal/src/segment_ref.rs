//! [`SegmentRef`]: how an append names its segment without touching the segment's reference
//! count. Its own module because it is one of the two places outside `io/` with `unsafe`
//! (docs/UNSAFE.md, site 17).

use std::sync::Arc;

use crate::segment::Segment;

/// The segment an append copies into, between its reservation and its report to group commit,
/// named without touching the segment's reference count.
///
/// Cloning the `Arc` instead cost two atomic read-modify-writes per append on a line every
/// appender shares, one of them inside the tail lock: at two appending threads, each extra pair
/// measured about 20 ns of serialized time per append (docs/performance.md).
///
/// Why the segment outlives the copy without an `Arc`: every live segment is held by the
/// segment map, and a segment leaves the map only when compaction, a truncation or a reset
/// removes it. Compaction removes only segments whose records are all at or below the
/// checkpoint, which is at or below the durable LSN, itself at or below the written LSN.
/// Truncation and reset wait (under the tail lock, so no new run starts) until the written LSN
/// covers every reserved record. And the written LSN stays below a run's first LSN until that
/// run is reported complete. So until then its segment is in the map. One exception, closed in
/// `Inner::append`: a truncation or reset that fails half way may leave the tail on a segment it
/// already removed from the map; it poisons the log before releasing the tail lock, and an
/// append checks for poison again under that lock before it places a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentRef(std::ptr::NonNull<Segment>);

impl SegmentRef {
    pub fn new(segment: &Arc<Segment>) -> SegmentRef {
        SegmentRef(std::ptr::NonNull::from(segment.as_ref()))
    }

    /// The segment.
    ///
    /// # Safety
    ///
    /// Only between the reservation that made this handle and the report of its run to group
    /// commit (see the type's documentation for why the segment is alive then).
    pub unsafe fn get(&self) -> &Segment {
        // SAFETY: the caller keeps to the window above, in which the map holds the segment.
        unsafe { self.0.as_ref() }
    }
}
