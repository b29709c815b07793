//! Reservation: the only serial step of an append. Under one short lock an appender takes its
//! LSNs and the byte ranges its records will occupy, rolling to the next segment where a record
//! does not fit; it copies its payloads after releasing the lock, in parallel with other
//! appenders, and then reports the copy to group commit.
//!
//! The tail is generic over the segment handle so that the loom models can run this very code
//! with plain numbers standing in for segments.

use crate::Lsn;

/// Where the next record goes.
#[derive(Debug)]
pub(crate) struct Tail<S> {
    next_lsn: Lsn,
    active: S,
    /// First free byte of the active segment.
    offset: u64,
    /// Size of the active segment.
    limit: u64,
    /// Where records start in a fresh segment.
    data_start: u64,
    /// Size of the segments that rolls will create.
    new_segment_bytes: u64,
    /// Runs placed since open: with the runs group commit saw end, what tells `close` that no
    /// appender still copies (counted here, under the lock appenders hold anyway: until
    /// 2026-12-06 in a counter of their own, whose cache line every append moved between the
    /// cores twice).
    runs_placed: u64,
}

/// A run of consecutive records placed back to back in one segment, which `R` names (the
/// handle that `Tail::place` made of the tail's segment).
#[derive(Debug, Clone)]
pub(crate) struct Run<R> {
    pub segment: R,
    pub offset: u64,
    pub first_lsn: Lsn,
    pub count: usize,
    /// The run opens a segment whose header still has to be written (before the records are
    /// reported complete).
    pub opens_segment: bool,
}

/// The runs of one append: almost always one, kept inline so that an append allocates nothing.
#[derive(Debug)]
pub(crate) struct Runs<S> {
    first: Option<Run<S>>,
    more: Vec<Run<S>>,
}

impl<S> Runs<S> {
    pub fn new() -> Runs<S> {
        Runs {
            first: None,
            more: Vec::new(),
        }
    }

    fn push(&mut self, run: Run<S>) {
        match self.first {
            None => self.first = Some(run),
            Some(_) => self.more.push(run),
        }
    }

    fn last_mut(&mut self) -> Option<&mut Run<S>> {
        match self.more.last_mut() {
            Some(run) => Some(run),
            None => self.first.as_mut(),
        }
    }

    /// How many runs there are.
    pub fn len(&self) -> u64 {
        u64::from(self.first.is_some()) + self.more.len() as u64
    }

    /// The runs in LSN order.
    pub fn iter(&self) -> impl Iterator<Item = &Run<S>> {
        self.first.iter().chain(self.more.iter())
    }
}

impl<S: Clone> Tail<S> {
    pub fn new(
        next_lsn: Lsn,
        active: S,
        offset: u64,
        limit: u64,
        data_start: u64,
        new_segment_bytes: u64,
    ) -> Tail<S> {
        assert!(next_lsn >= 1, "LSNs start at 1");
        assert!(
            data_start <= offset && offset <= limit,
            "offset {offset} outside {data_start}..={limit}"
        );
        Tail {
            next_lsn,
            active,
            offset,
            limit,
            data_start,
            new_segment_bytes,
            runs_placed: 0,
        }
    }

    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Runs placed since open ([`place`](Tail::place) counts them), which `close` waits to see
    /// ended ([`GroupCommit::wait_for_runs_placed`](crate::group_commit::GroupCommit::wait_for_runs_placed)).
    pub fn runs_placed(&self) -> u64 {
        self.runs_placed
    }

    #[cfg(all(test, not(loom)))]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Points the tail at a new position (after a truncation or a reset); the count of runs
    /// placed goes on.
    pub fn reset(&mut self, next_lsn: Lsn, active: S, offset: u64, limit: u64) {
        let runs_placed = self.runs_placed;
        *self = Tail::new(
            next_lsn,
            active,
            offset,
            limit,
            self.data_start,
            self.new_segment_bytes,
        );
        self.runs_placed = runs_placed;
    }

    /// How many segment rolls placing records of these stored sizes would take. Every size must
    /// fit in a fresh segment.
    pub fn rolls_needed(&self, sizes: impl Iterator<Item = u64>) -> usize {
        let (mut offset, mut limit, mut rolls) = (self.offset, self.limit, 0);
        for size in sizes {
            debug_assert!(self.data_start + size <= self.new_segment_bytes);
            if offset + size > limit {
                rolls += 1;
                offset = self.data_start;
                limit = self.new_segment_bytes;
            }
            offset += size;
        }
        rolls
    }

    /// Places records of the given stored sizes, in order, calling `roll(sealed, last_lsn,
    /// first_lsn)` for each segment change: it seals the full segment at `last_lsn` and returns
    /// the next one, which starts at `first_lsn`. The caller made sure beforehand (with
    /// `rolls_needed`) that `roll` can succeed, so that no LSN is taken unless every record has
    /// a place. Returns the runs in LSN order, each naming its segment by `handle(segment)`.
    ///
    /// The runs are counted as placed ([`runs_placed`](Tail::runs_placed)) once all are placed,
    /// under the same `&mut` (the tail lock, which `close` holds while it waits for them): the
    /// caller must then end each (complete it, or give it up). A panic in `roll` counts none,
    /// and poisons the log. Counted here rather than by the caller since 2026-12-07, so that
    /// the loom model of `close` runs this very code (it counted in a copy of the append).
    pub fn place<R>(
        &mut self,
        sizes: impl Iterator<Item = u64>,
        mut roll: impl FnMut(&S, Lsn, Lsn) -> S,
        handle: impl Fn(&S) -> R,
        runs: &mut Runs<R>,
    ) {
        let runs_before = runs.len();
        let mut opens_segment = false;
        for size in sizes {
            if self.offset + size > self.limit {
                let next = roll(&self.active, self.next_lsn - 1, self.next_lsn);
                self.active = next;
                self.offset = self.data_start;
                self.limit = self.new_segment_bytes;
                opens_segment = true;
            }
            match runs.last_mut() {
                Some(run)
                    if !opens_segment && run.first_lsn + run.count as u64 == self.next_lsn =>
                {
                    run.count += 1;
                }
                _ => runs.push(Run {
                    segment: handle(&self.active),
                    offset: self.offset,
                    first_lsn: self.next_lsn,
                    count: 1,
                    opens_segment,
                }),
            }
            opens_segment = false;
            self.offset += size;
            self.next_lsn += 1;
        }
        debug_assert!(self.offset <= self.limit);
        self.runs_placed += runs.len() - runs_before;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn places_back_to_back_and_rolls() {
        let mut tail = Tail::new(1, 0u32, 100, 200, 100, 300);
        let mut runs = Runs::new();
        assert_eq!(tail.rolls_needed([40, 40, 40].into_iter()), 1);
        let mut seals = Vec::new();
        tail.place(
            [40, 40, 40].into_iter(),
            |s, last, first| {
                seals.push((*s, last, first));
                s + 1
            },
            |s| *s,
            &mut runs,
        );
        assert_eq!(seals, vec![(0, 2, 3)]);
        let runs: Vec<&Run<u32>> = runs.iter().collect();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (
                runs[0].segment,
                runs[0].offset,
                runs[0].first_lsn,
                runs[0].count
            ),
            (0, 100, 1, 2)
        );
        assert_eq!(
            (
                runs[1].segment,
                runs[1].offset,
                runs[1].first_lsn,
                runs[1].count
            ),
            (1, 100, 3, 1)
        );
        assert!(runs[1].opens_segment && !runs[0].opens_segment);
        assert_eq!((tail.next_lsn(), tail.offset()), (4, 140));
        // The new segment has the new size: 160 more bytes fit before the next roll.
        assert_eq!(tail.rolls_needed([160].into_iter()), 0);
        assert_eq!(tail.rolls_needed([161].into_iter()), 1);
    }

    #[test]
    fn a_record_that_exactly_fills_a_segment_does_not_roll() {
        let tail = Tail::new(1, 0u32, 100, 200, 100, 200);
        assert_eq!(tail.rolls_needed([100].into_iter()), 0);
        assert_eq!(tail.rolls_needed([100, 8].into_iter()), 1);
    }
}
