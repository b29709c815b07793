//! rwal-compare: peerbench (`../shared/peerbench`, the company's stand-alone WAL harness) with
//! rwal added to its logs, so that rwal-wal runs under exactly the workload code the peers run
//! under: the same timing loops, the same percentiles, the same `RESULT` lines.
//!
//! Nothing of peerbench is copied into this repository. Its files are compiled from where they
//! are: `log.rs`, `phys.rs` and the adapter registry `adapters/mod.rs` (with the peer adapters
//! it declares) through `#[path]` below, and `main.rs` (argument parsing, the workloads, the
//! percentile summary) through `include!` of the copy `build.rs` makes of it with its module
//! declarations commented out and its `main` renamed. What this crate adds:
//!
//! - `rwal_adapter`: peerbench's `log::Log` / `log::Adapter` for rwal, one adapter per backend
//!   (`rwal-staged`, `rwal-mmap`, `rwal-pwrite`);
//! - `adapters`: the registry peerbench's code looks logs up in, peerbench's own list plus
//!   rwal's;
//! - `append_threads`: one workload peerbench lacks (non-durable appends from T threads, for the
//!   scaling target), built from peerbench's helpers; every other workload is peerbench's.
//!
//! The command line is peerbench's (`--list`, `--log`, `--workload`, `--phys`, ...), plus
//! `--workload append-threads`. See README.md.

// peerbench's sources, compiled unchanged from ../shared/peerbench (see build.rs).
#[path = "../../../../shared/peerbench/src/log.rs"]
mod log;
#[allow(dead_code)] // its `find` is not used: `adapters::find` below replaces it
#[path = "../../../../shared/peerbench/src/adapters/mod.rs"]
mod peer_adapters;
#[path = "../../../../shared/peerbench/src/phys.rs"]
mod phys;

mod append_threads;
mod rwal_adapter;

/// The registry peerbench's `main`, `phys` and our workload see as `crate::adapters`: every
/// adapter peerbench compiles in, then rwal's.
mod adapters {
    use crate::log::Adapter;

    /// `phys.rs` preallocates its files with `crate::adapters::raw::prealloc_zero`.
    pub use crate::peer_adapters::raw;

    /// Every adapter compiled into this binary: peerbench's, then rwal's.
    pub fn all() -> Vec<&'static Adapter> {
        let mut v = crate::peer_adapters::all();
        v.extend(crate::rwal_adapter::ADAPTERS);
        v
    }

    pub fn find(name: &str) -> Option<&'static Adapter> {
        all().into_iter().find(|a| a.name == name)
    }
}

// peerbench's main.rs: `Args`, `parse`, the four workloads, `lat_summary`, ..., and its `main`
// renamed `peerbench_main`.
include!(concat!(env!("OUT_DIR"), "/peerbench_main.rs"));

fn main() {
    let a = parse();
    if a.workload.as_deref() == Some(append_threads::WORKLOAD) && !a.list && !a.phys {
        if a.spin {
            start_spinners();
        }
        let Some(ad) = a.log.as_deref().and_then(adapters::find) else {
            eprintln!(
                "--workload {} needs --log NAME; compiled in: {:?}",
                append_threads::WORKLOAD,
                adapters::all().iter().map(|a| a.name).collect::<Vec<_>>()
            );
            std::process::exit(2)
        };
        append_threads::run(&a, ad);
        let _ = std::fs::remove_dir_all(&a.dir);
        return;
    }
    peerbench_main();
}
