//! Appends and commits records from several threads on a temporary directory (removed
//! afterwards) or the one given (left in place, for `rwal inspect` and `rwal verify`), then
//! reads them back, and prints what happened: the smallest program that embeds the log.
//!
//! ```sh
//! cargo run --release -p rwal-wal --example append_commit -- [--dir DIR] [--threads N] [--records N] [--size BYTES] [--backend mmap|pwrite|staged]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use rwal_wal::{Backend, Options, Wal};

const USAGE: &str = "usage: append_commit [--dir DIR] [--threads N] [--records N] \
                     [--size BYTES] [--backend mmap|pwrite|staged]\n\
                     Without --dir the log goes in a temporary directory, removed at the end; \
                     a directory given is left in place.";

struct Args {
    dir: Option<std::path::PathBuf>,
    threads: usize,
    records: usize,
    size: usize,
    /// `None`: the log's default (`Mmap`, or `Staged` where a mapping cannot be made durable).
    backend: Option<Backend>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        dir: None,
        threads: 4,
        records: 20_000,
        size: 128,
        backend: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(value()?.into()),
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--records" => {
                args.records = value()?.parse().map_err(|e| format!("--records: {e}"))?
            }
            "--size" => args.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--backend" => {
                args.backend = Some(match value()?.as_str() {
                    "mmap" => Backend::Mmap,
                    "pwrite" => Backend::Pwrite,
                    "staged" => Backend::Staged,
                    other => {
                        return Err(format!(
                            "--backend: unknown backend {other} (mmap, pwrite or staged)"
                        ))
                    }
                })
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.threads == 0 || args.records < args.threads {
        return Err("--threads must be at least 1, and --records at least --threads".into());
    }
    Ok(args)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("append_commit: {message}");
            std::process::exit(2);
        }
    };
    let temp = std::env::temp_dir().join(format!("rwal-append-commit-{}", std::process::id()));
    let dir = args.dir.clone().unwrap_or_else(|| temp.clone());
    let mut options = Options::new();
    if let Some(backend) = &args.backend {
        options = options.backend(backend.clone());
    }
    let wal = Arc::new(Wal::open(&dir, options).unwrap_or_else(|e| {
        eprintln!("append_commit: {e}");
        std::process::exit(1);
    }));
    // A directory given may hold records of an earlier run: only this run's are read back.
    let first_of_this_run = wal.last_lsn() + 1;
    println!(
        "log {} ({}), {} threads, {} records of {} bytes",
        dir.display(),
        wal.backend_name(),
        args.threads,
        args.records,
        args.size
    );
    let started = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|t| {
            let wal = wal.clone();
            // The remainder of the division goes to the first threads.
            let count = args.records / args.threads + usize::from(t < args.records % args.threads);
            let size = args.size;
            std::thread::spawn(move || {
                let data = vec![t as u8; size];
                let mut latencies = Vec::with_capacity(count);
                for _ in 0..count {
                    let begin = Instant::now();
                    let lsn = wal.append(&data).expect("append");
                    wal.commit(lsn).expect("commit");
                    latencies.push(begin.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let stats = wal.stats();
    println!(
        "committed {} records in {:.2?}: {:.0} commits/s",
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "commit latency p50 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "group commit: {} syncs for {} commits, {:.1} records per sync on average, at most {}",
        stats.syncs,
        stats.commits,
        stats.records_synced as f64 / stats.syncs.max(1) as f64,
        stats.max_records_per_sync
    );
    let read_started = Instant::now();
    let mut reader = wal.reader(first_of_this_run).expect("reader");
    let mut read = 0u64;
    while let Some(record) = reader.next().expect("read") {
        assert_eq!(record.data.len(), args.size);
        read += 1;
    }
    println!(
        "read back {read} records in {:.2?}; durable LSN {}",
        read_started.elapsed(),
        wal.durable_lsn()
    );
    drop(reader);
    match Arc::try_unwrap(wal) {
        Ok(wal) => wal.close().expect("close"),
        Err(_) => unreachable!("all workers joined"),
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
}
