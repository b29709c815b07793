//! The child of the SIGKILL crash test: appends and commits from several threads and prints
//! `<lsn> <seed>` for every record whose commit returned, until it is killed.
//!
//! Usage: `crash_child DIR BACKEND THREADS`, BACKEND `mmap`, `pwrite`, `staged` or `io_uring`.

use std::io::Write;
use std::sync::Arc;

use rwal_tests::self_describing;
use rwal_wal::{Backend, Options, Wal};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, backend, threads] = args.as_slice() else {
        eprintln!("usage: crash_child DIR mmap|pwrite|staged|io_uring THREADS");
        std::process::exit(2);
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
    for worker in workers {
        worker.join().expect("worker");
    }
}
