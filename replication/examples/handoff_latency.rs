//! What one hand-off between threads costs on this machine: the latency floor under every
//! replicated commit, which crosses several of them.
//!
//! `cargo run --release -p rwal-replication --example handoff_latency` ping-pongs 20 000 times
//! between two threads, once through a mutex and condition variable and once through a
//! loopback TCP connection, and prints the one-way p50 and p90 of each. On a virtual machine
//! whose idle cores halt, a wake-up is an interrupt to a sleeping core and costs tens of
//! microseconds; on bare metal a few.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

const ROUNDS: u64 = 20_000;

fn main() {
    println!(
        "condvar hand-off, one way: {}",
        summary(condvar_round_trips())
    );
    println!("loopback TCP, one way:     {}", summary(tcp_round_trips()));
}

/// Round trips through a shared counter: each side waits for the other's increment.
fn condvar_round_trips() -> Vec<u64> {
    let shared = Arc::new((Mutex::new(0u64), Condvar::new()));
    let other = shared.clone();
    let echo = std::thread::spawn(move || {
        let (counter, cond) = &*other;
        for round in 0..ROUNDS {
            let mut value = counter.lock().unwrap();
            while *value != 2 * round + 1 {
                value = cond.wait(value).unwrap();
            }
            *value += 1;
            cond.notify_all();
        }
    });
    let (counter, cond) = &*shared;
    let mut nanos = Vec::with_capacity(ROUNDS as usize);
    for round in 0..ROUNDS {
        let started = Instant::now();
        let mut value = counter.lock().unwrap();
        *value = 2 * round + 1;
        cond.notify_all();
        while *value != 2 * round + 2 {
            value = cond.wait(value).unwrap();
        }
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    echo.join().unwrap();
    nanos
}

/// Round trips of 200 bytes over loopback TCP with Nagle off, as the peer transport uses it.
fn tcp_round_trips() -> Vec<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut buf = [0u8; 200];
        for _ in 0..ROUNDS {
            stream.read_exact(&mut buf).unwrap();
            stream.write_all(&buf).unwrap();
        }
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = [0u8; 200];
    let mut nanos = Vec::with_capacity(ROUNDS as usize);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        stream.write_all(&buf).unwrap();
        stream.read_exact(&mut buf).unwrap();
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    echo.join().unwrap();
    nanos
}

/// One-way p50 and p90 (half a round trip) in microseconds.
fn summary(mut round_trips: Vec<u64>) -> String {
    round_trips.sort_unstable();
    let at = |q: f64| round_trips[((round_trips.len() - 1) as f64 * q) as usize] as f64 / 2000.0;
    format!("p50 {:.1} us, p90 {:.1} us", at(0.5), at(0.9))
}
