//! The bytes of client requests a node holds in memory at once, across every connection.
//!
//! Each connection reads one request of at most `proto::REQUEST_BYTES_MAX` (16 MiB) at a time,
//! and up to `CLIENT_CONNECTIONS_MAX` connections are served: without a shared bound, clients
//! sending large appends at once could make the node hold gigabytes. A request's bytes are
//! taken from the budget once its length is known, before its body is read, and given back
//! when its answer is written; a connection that finds no room waits for some (its client sees
//! a slower answer, not an error).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Bytes of requests held at once by default: eight appends of the largest size.
pub const REQUEST_BYTES_BUDGET: usize = 128 << 20;

/// How often a connection waiting for room looks whether the node is stopping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// A shared count of request bytes held, bounded by its capacity.
#[derive(Debug)]
pub struct RequestBudget {
    capacity: usize,
    held: Mutex<usize>,
    freed: Condvar,
}

/// Bytes taken from a [`RequestBudget`], given back on drop.
#[derive(Debug)]
pub struct Held<'a> {
    budget: &'a RequestBudget,
    bytes: usize,
}

impl RequestBudget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: usize) -> RequestBudget {
        RequestBudget {
            capacity,
            held: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Takes `bytes` (at most the capacity: more are taken as the whole capacity), waiting
    /// until they are free; `None` if `stopping` is set meanwhile.
    pub fn take(&self, bytes: usize, stopping: &AtomicBool) -> Option<Held<'_>> {
        let bytes = bytes.min(self.capacity);
        let mut held = self.held.lock();
        while *held + bytes > self.capacity {
            if stopping.load(Ordering::Acquire) {
                return None;
            }
            self.freed.wait_for(&mut held, STOP_POLL);
        }
        *held += bytes;
        Some(Held {
            budget: self,
            bytes,
        })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        *self.held.lock()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        *self.budget.held.lock() -= self.bytes;
        // Waiters may want different sizes: each looks again.
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_take_waits_for_room_and_gets_it_when_bytes_are_given_back() {
        let budget = RequestBudget::new(100);
        let running = AtomicBool::new(false);
        let first = budget.take(70, &running).unwrap();
        assert_eq!(budget.held(), 70);
        std::thread::scope(|s| {
            let (took, taken) = mpsc::channel();
            let (budget, running) = (&budget, &running);
            s.spawn(move || {
                let second = budget.take(50, running).unwrap();
                took.send(budget.held()).unwrap();
                drop(second);
            });
            // No room for 50 while 70 of 100 are held.
            assert!(taken.recv_timeout(Duration::from_millis(300)).is_err());
            drop(first);
            assert_eq!(taken.recv_timeout(Duration::from_secs(30)).unwrap(), 50);
        });
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_waiting_take_gives_up_when_the_node_stops_and_oversized_takes_are_capped() {
        let budget = RequestBudget::new(100);
        let stopping = AtomicBool::new(false);
        let whole = budget.take(1000, &stopping).unwrap();
        assert_eq!(budget.held(), 100);
        std::thread::scope(|s| {
            let waiting = s.spawn(|| budget.take(1, &stopping).is_none());
            std::thread::sleep(Duration::from_millis(50));
            stopping.store(true, Ordering::Release);
            assert!(waiting.join().unwrap(), "the take did not give up");
        });
        drop(whole);
        assert_eq!(budget.held(), 0);
    }
}
