//! The child of the SIGKILL crash test: appends and commits from several threads and prints
//! `<lsn> <seed>` for every record whose commit returned, until it is killed.
//!
//! Usage: `crash_child DIR BACKEND THREADS [checkpoint]`, BACKEND `mmap`, `pwrite`, `staged` or
//! `io_uring`; with `checkpoint`, another thread checkpoints and compacts all the time.

use std::io::Write;
use std::sync::Arc;

use rwal_tests::self_describing;
use rwal_wal::{Backend, Options, Wal};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, backend, threads, checkpoints) = match args.as_slice() {
        [_, dir, backend, threads] => (dir, backend, threads, false),
        [_, dir, backend, threads, mode] if mode == "checkpoint" => (dir, backend, threads, true),
        _ => {
            eprintln!("usage: crash_child DIR mmap|pwrite|staged|io_uring THREADS [checkpoint]");
            std::process::exit(2);
        }
    };
    let backend = match backend.as_str() {
        "mmap" => Backend::Mmap,
        "pwrite" => Backend::Pwrite,
        "staged" => Backend::Staged,
        "io_uring" => Backend::IoUring,
        other => {
            eprintln!("unknown backend {other}");
            std::process::exit(2);
        }
    };
    let threads: u64 = threads.parse().expect("THREADS is a number");
    let wal = Arc::new(
        Wal::open(dir, Options::new().backend(backend).segment_bytes(1 << 20)).expect("open"),
    );
    let pid = u64::from(std::process::id());
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let seed = (pid << 40) ^ (thread << 32) ^ n;
                    let len = [16, 100, 700, 5000, 70_000][(n % 5) as usize];
                    let lsn = wal.append(&self_describing(seed, len)).expect("append");
                    wal.commit(lsn).expect("commit");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{lsn} {seed}").expect("stdout");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    if checkpoints {
        // Checkpoint the durable LSN (the snapshot says which) and compact, over and over.
        let wal = wal.clone();
        std::thread::spawn(move || loop {
            let lsn = wal.durable_lsn();
            if lsn > 0 {
                wal.checkpoint(lsn, Some(&lsn.to_le_bytes()))
                    .expect("checkpoint");
                wal.compact_now().expect("compact");
            }
            std::thread::sleep(std::time::Duration::from_millis(3));
        });
    }
    for worker in workers {
        worker.join().expect("worker");
    }
}
