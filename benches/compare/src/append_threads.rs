//! `append-threads`: the one workload here that is not peerbench's. peerbench's
//! `append-throughput` (W3) appends from one thread only, and the "append scaling, 2 threads vs
//! 1" target needs the same thing from T threads. This is W3 spread over T threads, built from
//! peerbench's own pieces (`Args`, `payload`, `stamp`, `head`, `fresh_dir`, `loadavg`, the
//! adapters' `OpenOpts`), so that it works for every log:
//!
//! N records (`--count`, default 1 000 000; rounded down to a multiple of T) split evenly over T
//! writer threads (`--threads`), each doing non-durable `append` of S-byte records (`--size`,
//! default 128) after a common barrier; then one `sync`. T = 1 runs the one writer on a spawned
//! thread too, so 1 and 2 threads are timed by the same code.
//!
//! Printed: `append_records_per_s` = N / time from the barrier until the last writer is done
//! (what the scaling target compares, as rwal's own `rwal bench` does), and `records_per_s` =
//! N / the same time plus the final `sync` (W3's definition).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use super::{fresh_dir, head, loadavg, payload, stamp, Args};
use crate::log::{Adapter, Log, OpenOpts};

/// The `--workload` name.
pub const WORKLOAD: &str = "append-threads";

pub fn run(a: &Args, ad: &Adapter) {
    let size = if a.size == 0 { 128 } else { a.size };
    let t = a.threads.max(1);
    let per_thread = a.count.unwrap_or(1_000_000) / t as u64;
    let n = per_thread * t as u64;
    fresh_dir(&a.dir);
    let opts = OpenOpts {
        expected_bytes: n * (size as u64 + 16),
        nosync_appends: true,
        ..Default::default()
    };
    let log: Arc<dyn Log> = Arc::from((ad.open)(&a.dir, &opts));
    let barrier = Arc::new(Barrier::new(t + 1));
    let mut hs = Vec::new();
    for tid in 0..t {
        let (log, barrier) = (log.clone(), barrier.clone());
        hs.push(std::thread::spawn(move || {
            let mut rec = payload(size, tid as u64 + 3);
            barrier.wait();
            for i in 0..per_thread {
                stamp(&mut rec, (tid as u64) << 40 | i);
                log.append(&rec);
            }
        }));
    }
    barrier.wait();
    let t0 = Instant::now();
    for h in hs {
        h.join().unwrap();
    }
    let t_app = t0.elapsed().as_secs_f64();
    log.sync();
    let el = t0.elapsed().as_secs_f64();
    drop(log);
    println!(
        "{} records={} records_per_s={:.0} append_records_per_s={:.0} MB_per_s={:.1} seconds={:.3} append_s={:.3} final_sync_s={:.3} load1={}",
        head(a, ad, WORKLOAD, t, size),
        n,
        n as f64 / el,
        n as f64 / t_app,
        (n * size as u64) as f64 / el / 1e6,
        el,
        t_app,
        el - t_app,
        loadavg()
    );
}
