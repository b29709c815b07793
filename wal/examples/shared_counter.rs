//! How fast can two threads take turns on one cache line here? The bound behind the append
//! scaling target (docs/performance.md, "Append scaling"): every append takes its LSN from a
//! counter all appenders share, so two appending threads can together go no faster than two
//! threads incrementing one shared counter, however the rest of the append is written.
//!
//! ```sh
//! cargo run --release -p rwal-wal --example shared_counter -- [increments per thread]
//! ```
//!
//! Prints increments per second of one thread, of two threads on one shared counter (the line
//! moves between cores on every increment) and of two threads on counters of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Instant;

/// A counter alone on its cache lines.
#[repr(align(128))]
struct Padded(AtomicU64);

fn run(threads: usize, per_thread: u64, shared: bool) -> f64 {
    let counters: Vec<Padded> = (0..threads).map(|_| Padded(AtomicU64::new(0))).collect();
    let barrier = Barrier::new(threads);
    let started = std::sync::OnceLock::new();
    std::thread::scope(|s| {
        for t in 0..threads {
            let counter = if shared { &counters[0] } else { &counters[t] };
            let (barrier, started) = (&barrier, &started);
            s.spawn(move || {
                barrier.wait();
                started.get_or_init(Instant::now);
                for _ in 0..per_thread {
                    counter.0.fetch_add(1, Ordering::AcqRel);
                }
            });
        }
    });
    let seconds = started.get().expect("a thread ran").elapsed().as_secs_f64();
    (threads as u64 * per_thread) as f64 / seconds
}

fn main() {
    let per_thread: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().expect("increments per thread: a number"),
        None => 20_000_000,
    };
    let one = run(1, per_thread, true);
    let shared = run(2, per_thread, true);
    let own = run(2, per_thread, false);
    println!(
        "1 thread:                    {:>7.1} M increments/s",
        one / 1e6
    );
    println!(
        "2 threads, one shared line:  {:>7.1} M increments/s ({:.2}x one thread)",
        shared / 1e6,
        shared / one
    );
    println!(
        "2 threads, a line each:      {:>7.1} M increments/s ({:.2}x one thread)",
        own / 1e6,
        own / one
    );
}
