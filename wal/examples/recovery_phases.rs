//! Times the phases of peerbench's recovery workload on rwal: writes 256 MiB of 4 KiB records,
//! then reopens the log several times and reads every record back, printing how long `open`
//! (recovery's scan), the read (`--verify no`: without checking checksums again) and `close`
//! each took. The log goes in a temporary directory, removed at the end.
//!
//! ```sh
//! cargo run --release -p rwal-wal --example recovery_phases -- [--backend staged|mmap|pwrite] [--reopens N] [--verify yes|no]
//! ```

use std::time::Instant;

use rwal_wal::{Backend, Options, Wal};

const USAGE: &str =
    "usage: recovery_phases [--backend staged|mmap|pwrite] [--reopens N] [--verify yes|no]";
const RECORD_BYTES: usize = 4096;
const LOG_BYTES: usize = 256 << 20;

/// The backend, the number of reopens, and whether the reader checks checksums again.
fn parse() -> Result<(Backend, usize, bool), String> {
    let (mut backend, mut reopens, mut verify) = (Backend::Staged, 5, true);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backend" => {
                backend = match value.as_str() {
                    "staged" => Backend::Staged,
                    "mmap" => Backend::Mmap,
                    "pwrite" => Backend::Pwrite,
                    other => return Err(format!("--backend: unknown backend {other}")),
                }
            }
            "--reopens" => reopens = value.parse().map_err(|e| format!("--reopens: {e}"))?,
            "--verify" => {
                verify = match value.as_str() {
                    "yes" => true,
                    "no" => false,
                    other => return Err(format!("--verify: yes or no, not {other}")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((backend, reopens, verify))
}

fn main() {
    let (backend, reopens, verify) = parse().unwrap_or_else(|e| {
        eprintln!("{e}\n{USAGE}");
        std::process::exit(2)
    });
    let dir = std::env::temp_dir().join(format!("rwal-recovery-phases-{}", std::process::id()));
    let options = || Options::new().backend(backend.clone());
    {
        let wal = Wal::open(&dir, options()).expect("created");
        let record = vec![7u8; RECORD_BYTES];
        for _ in 0..LOG_BYTES / RECORD_BYTES {
            wal.append(&record).expect("appended");
        }
        wal.close().expect("closed");
    }
    let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
    for reopen in 1..=reopens {
        let opening = Instant::now();
        let wal = Wal::open(&dir, options().create_if_missing(false)).expect("reopened");
        let reading = Instant::now();
        let (mut records, mut bytes) = (0u64, 0u64);
        {
            let mut reader = wal.reader(wal.first_lsn()).expect("reader");
            reader.set_verify_checksums(verify);
            while let Some(record) = reader.next().expect("read") {
                records += 1;
                bytes += record.data.len() as u64;
            }
        }
        let closing = Instant::now();
        wal.close().expect("closed");
        let closed = Instant::now();
        println!(
            "reopen {reopen}: {records} records; open {:.1} ms, read {:.1} ms, close {:.1} ms; \
             {:.0} MB/s",
            ms(opening, reading),
            ms(reading, closing),
            ms(closing, closed),
            bytes as f64 / 1e6 / (closed - opening).as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
