//! The bytes of client requests and READ answers a node holds in memory at once, across every
//! connection.
//!
//! Each connection reads one request of at most `proto::REQUEST_BYTES_MAX` (16 MiB) at a time,
//! and up to `CLIENT_CONNECTIONS_MAX` connections are served: without a shared bound, clients
//! sending large appends at once could make the node hold gigabytes. A request's bytes are
//! taken from the budget once its length and its first `UNBUDGETED_BYTES` are in, before the
//! rest of its body is read, and given back once the request is handled. Connections wait for
//! room in the order they asked, so that small requests cannot keep a large one waiting
//! forever; one that finds no room before its deadline gives up (the node answers RETRY). A
//! connection holding room must bring the rest at a steady pace, or it is cut off and the room
//! given back (`BODY_PACE_SLACK_DIVISOR` in `mod.rs`).
//!
//! Small messages stay out of it (`UNBUDGETED_BYTES`): the connection limit bounds them, and a
//! budget held by large requests whose bodies trickle in must not keep a STATUS or a READ
//! waiting. A READ answer larger than that grows its share as it is built, only from room
//! nobody waits for (`Held::try_grow`), and ends early when there is none.

use std::collections::VecDeque;
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Bytes of requests held at once by default: eight appends of the largest size.
pub const REQUEST_BYTES_BUDGET: usize = 128 << 20;

/// Requests and answers of at most this many bytes are not counted: at most one per connection
/// is held at a time, so the connection limit bounds them (512 x 64 KiB = 32 MiB).
pub const UNBUDGETED_BYTES: usize = 64 << 10;

/// How often a connection waiting for room looks whether the node is stopping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// A shared count of request bytes held, bounded by its capacity.
#[derive(Debug)]
pub struct RequestBudget {
    capacity: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    held: usize,
    /// Tickets of the connections waiting for room, oldest first: only the first may take.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// Bytes taken from a [`RequestBudget`], given back on drop.
#[derive(Debug)]
pub struct Held<'a> {
    budget: &'a RequestBudget,
    bytes: usize,
}

/// What [`RequestBudget::take`] got.
#[derive(Debug)]
pub enum Taken<'a> {
    /// The bytes, held until dropped.
    Held(Held<'a>),
    /// No room before the deadline.
    Busy,
    /// The node is stopping, or the connection was closed (`take_unless`).
    Stopping,
}

impl RequestBudget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: usize) -> RequestBudget {
        RequestBudget {
            capacity,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    /// Takes `bytes` (more than the capacity are taken as the whole capacity), waiting until
    /// they are free and every connection that asked earlier was served, but not past
    /// `deadline` nor once `stopping` is set.
    #[cfg(test)]
    pub fn take(&self, bytes: usize, stopping: &AtomicBool, deadline: Instant) -> Taken<'_> {
        self.take_unless(bytes, deadline, || stopping.load(Ordering::Acquire))
    }

    /// [`RequestBudget::take`], giving up (`Taken::Stopping`) once `give_up` says so: the node
    /// stops, or the connection waiting was closed (a newcomer took its slot), which must not
    /// keep its thread and descriptor for the rest of the wait. Looked at every `STOP_POLL`.
    pub fn take_unless(
        &self,
        bytes: usize,
        deadline: Instant,
        give_up: impl Fn() -> bool,
    ) -> Taken<'_> {
        let bytes = bytes.min(self.capacity);
        let mut state = self.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(ticket);
        loop {
            if state.waiting.front() == Some(&ticket) && state.held + bytes <= self.capacity {
                state.waiting.pop_front();
                state.held += bytes;
                // The next in line may fit as well.
                self.changed.notify_all();
                return Taken::Held(Held {
                    budget: self,
                    bytes,
                });
            }
            let now = Instant::now();
            let gave_up = if give_up() {
                Some(Taken::Stopping)
            } else if now >= deadline {
                Some(Taken::Busy)
            } else {
                None
            };
            if let Some(outcome) = gave_up {
                state.waiting.retain(|t| *t != ticket);
                self.changed.notify_all();
                return outcome;
            }
            let wait = STOP_POLL.min(deadline - now);
            self.changed.wait_for(&mut state, wait);
        }
    }

    /// An empty share, to grow with [`Held::try_grow`].
    pub fn none(&self) -> Held<'_> {
        Held {
            budget: self,
            bytes: 0,
        }
    }

    /// Connections waiting for room now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.state.lock().waiting.len()
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.state.lock().held
    }
}

impl Held<'_> {
    /// Whether this share holds bytes while another connection waits for room: an answer
    /// holding them that its client does not take is then cut off.
    pub fn wanted(&self) -> bool {
        self.bytes > 0 && !self.budget.state.lock().waiting.is_empty()
    }

    /// Takes `more` bytes too, if they are free now and no connection waits for room (it asked
    /// first); false, taking nothing, otherwise. Never waits.
    pub fn try_grow(&mut self, more: usize) -> bool {
        let mut state = self.budget.state.lock();
        if !state.waiting.is_empty() || state.held + more > self.budget.capacity {
            return false;
        }
        state.held += more;
        self.bytes += more;
        true
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Most shares are empty (small requests, small answers): nothing to give back, nobody
        // to wake.
        if self.bytes == 0 {
            return;
        }
        self.budget.state.lock().held -= self.bytes;
        self.budget.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const LONG: Duration = Duration::from_secs(30);

    fn held(taken: Taken<'_>) -> Held<'_> {
        match taken {
            Taken::Held(held) => held,
            other => panic!("expected the bytes, got {other:?}"),
        }
    }

    #[test]
    fn a_take_waits_for_room_and_gets_it_when_bytes_are_given_back() {
        let budget = RequestBudget::new(100);
        let running = AtomicBool::new(false);
        let first = held(budget.take(70, &running, Instant::now() + LONG));
        assert_eq!(budget.held(), 70);
        std::thread::scope(|s| {
            let (took, taken) = mpsc::channel();
            let (budget, running) = (&budget, &running);
            s.spawn(move || {
                let second = held(budget.take(50, running, Instant::now() + LONG));
                took.send(budget.held()).unwrap();
                drop(second);
            });
            // No room for 50 while 70 of 100 are held: it waits (seen waiting, so that the
            // give-back below is what lets it through, whenever its thread got to run).
            let deadline = Instant::now() + LONG;
            while budget.state.lock().waiting.is_empty() {
                assert!(Instant::now() < deadline, "the take never waited");
                std::thread::yield_now();
            }
            assert!(taken.try_recv().is_err());
            drop(first);
            assert_eq!(taken.recv_timeout(LONG).unwrap(), 50);
        });
        assert_eq!(budget.held(), 0);
    }

    /// Room for a small request behind a large one waiting is not given to the small one.
    #[test]
    fn connections_are_served_in_the_order_they_asked() {
        let budget = RequestBudget::new(100);
        let running = AtomicBool::new(false);
        let first = held(budget.take(60, &running, Instant::now() + LONG));
        std::thread::scope(|s| {
            let (order, served) = mpsc::channel();
            let (budget, running) = (&budget, &running);
            let large = order.clone();
            s.spawn(move || {
                let bytes = held(budget.take(80, running, Instant::now() + LONG));
                large.send("large").unwrap();
                drop(bytes);
            });
            while budget.state.lock().waiting.is_empty() {
                std::thread::yield_now();
            }
            s.spawn(move || {
                // 30 bytes would fit beside the 60 held, but the large request asked first
                // (and beside its 80 they do not fit: it is served, and gives back, first).
                let bytes = held(budget.take(30, running, Instant::now() + LONG));
                order.send("small").unwrap();
                drop(bytes);
            });
            let deadline = Instant::now() + LONG;
            while budget.state.lock().waiting.len() < 2 {
                assert!(Instant::now() < deadline, "the small take never waited");
                std::thread::yield_now();
            }
            assert!(served.try_recv().is_err());
            drop(first);
            assert_eq!(served.recv_timeout(LONG).unwrap(), "large");
            assert_eq!(served.recv_timeout(LONG).unwrap(), "small");
        });
        assert_eq!(budget.held(), 0);
    }

    /// An answer grows its share only from room nobody waits for.
    #[test]
    fn a_share_grows_only_into_room_nobody_waits_for() {
        let budget = RequestBudget::new(100);
        let running = AtomicBool::new(false);
        let mut answer = budget.none();
        assert!(answer.try_grow(60));
        assert!(!answer.try_grow(50), "past the capacity");
        assert_eq!(budget.held(), 60);
        std::thread::scope(|s| {
            let (budget, running) = (&budget, &running);
            let waiting = s.spawn(move || {
                let bytes = held(budget.take(70, running, Instant::now() + LONG));
                drop(bytes);
            });
            while budget.state.lock().waiting.is_empty() {
                std::thread::yield_now();
            }
            // 10 bytes would fit, but a request waits for room: it comes first.
            assert!(!answer.try_grow(10));
            drop(answer);
            waiting.join().unwrap();
        });
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_waiting_take_gives_up_at_its_deadline_or_when_the_node_stops() {
        let budget = RequestBudget::new(100);
        let stopping = AtomicBool::new(false);
        // More than the capacity is taken as the whole capacity.
        let whole = held(budget.take(1000, &stopping, Instant::now() + LONG));
        assert_eq!(budget.held(), 100);
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(matches!(budget.take(1, &stopping, soon), Taken::Busy));
        std::thread::scope(|s| {
            let waiting = s.spawn(|| budget.take(1, &stopping, Instant::now() + LONG));
            // Waiting before the stop, so that the stop ends a wait rather than a first look.
            let deadline = Instant::now() + LONG;
            while budget.waiting() == 0 {
                assert!(Instant::now() < deadline, "the take never waited");
                std::thread::sleep(Duration::from_millis(1));
            }
            stopping.store(true, Ordering::Release);
            let outcome = waiting.join().unwrap();
            assert!(matches!(outcome, Taken::Stopping), "{outcome:?}");
        });
        assert!(budget.state.lock().waiting.is_empty());
        drop(whole);
        assert_eq!(budget.held(), 0);
    }
}
