//! `rwal bench`: the benchmarks a storage engineer asks for first, on a temporary directory
//! that is removed afterwards, or on SIGINT, SIGTERM or SIGHUP (unless ignored, as under
//! `nohup`: `Interrupt`). Latencies go into HdrHistograms (3 significant digits).
//!
//! Workloads, for each backend chosen:
//! - `durable-commit`: one thread, `append` + `commit` of one record at a time, per size;
//! - `group-commit`: N threads each doing `append` + `commit`, per thread count;
//! - `append`: `append` without commit (1 and 2 threads), records/s, for `--seconds` or until
//!   `APPEND_ROW_BYTES_MAX` are written (nothing is freed while the row runs); and the
//!   process's anonymous resident memory afterwards;
//! - `recovery-scan`: reopening a log of `--recovery-mib` MiB of 4 KiB records (warm cache: the
//!   second open after the writes; the first one's speed is the row's `first_open_mb_s`).
//!
//! and once, as the physical floor of the same run: a `pwrite`+`fdatasync` loop of 128-byte
//! records and an `O_DIRECT|O_DSYNC` loop of 4 KiB blocks.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rwal_wal::{Backend, Options, Wal};

use crate::json::Value;

/// The most an `append` row writes, all its threads together (about 4 s of appends here).
const APPEND_ROW_BYTES_MAX: u64 = 4 << 30;

const HELP: &str = "\
usage: rwal bench [options]

options:
  --backend NAME       mmap, pwrite, staged, io_uring (RWF_DSYNC writes) or
                       io_uring-linked (writes + linked fdatasync) (default mmap;
                       with --replicated, staged: a node's default)
  --all-backends       every backend, one after the other
  --seconds S          seconds per workload (default 1; an append row stops early once
                       it has written 4 GiB)
  --threads LIST       group-commit thread counts, each 1 to 1024 (default 1,4,16,64)
  --size LIST          record sizes in bytes for durable-commit latency, each 12 to 16777216
                       (default 128,4096)
  --recovery-mib N     size of the log the recovery scan reads (default 256, at most 65536)
  --segment-bytes N    segment size in bytes (default 67108864, 64 MiB)
  --fallocate          allocate segments with fallocate instead of writing zeros
  --dir DIR            where to put the temporary logs (default: the system temp directory)
  --json               print the results as JSON instead of a table
  --plot FILE.svg      also draw the latency percentile curves
  --replicated N       instead: an N-node cluster (1 to 9) on loopback TCP in this process; quorum
                       commit latency and throughput at 1, 16 and 64 clients (or --threads),
                       next to single-node durable and group commit of the same run, and
                       a bare quorum of pwrite+fdatasync copies on loopback (the floor);
                       one backend (--backend, not --all-backends); records of 128 bytes
                       (--size and --recovery-mib do not apply, and are refused)";

struct Config {
    backends: Vec<(&'static str, Options)>,
    seconds: f64,
    threads: Vec<usize>,
    sizes: Vec<usize>,
    recovery_mib: u64,
    segment_bytes: u64,
    preallocation: rwal_wal::Preallocation,
    dir: Option<PathBuf>,
    json: bool,
    plot: Option<PathBuf>,
    replicated: Option<usize>,
    threads_given: bool,
    backend_given: bool,
    /// The flags given that `--replicated` does not use (`--size`, `--recovery-mib`).
    unreplicated_given: Vec<&'static str>,
}

/// One measured workload.
pub struct Outcome {
    pub workload: &'static str,
    pub backend: &'static str,
    pub threads: usize,
    pub size_bytes: usize,
    pub ops: u64,
    pub seconds: f64,
    pub bytes: u64,
    /// Latencies in nanoseconds.
    pub latency: Option<Histogram<u64>>,
    pub extra: Vec<(&'static str, f64)>,
}

impl Outcome {
    pub fn label(&self) -> String {
        let threads = if self.threads > 1 {
            format!(" x{}", self.threads)
        } else {
            String::new()
        };
        format!(
            "{} {} {}B{threads}",
            self.backend, self.workload, self.size_bytes
        )
    }

    fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    fn json(&self) -> Value {
        let mut fields = vec![
            ("workload", Value::Str(self.workload.into())),
            ("backend", Value::Str(self.backend.into())),
            ("threads", Value::Int(self.threads as u64)),
            ("size_bytes", Value::Int(self.size_bytes as u64)),
            ("ops", Value::Int(self.ops)),
            ("seconds", Value::Num(self.seconds)),
            ("ops_per_s", Value::Num(self.ops_per_second())),
            (
                "mb_per_s",
                Value::Num(self.bytes as f64 / self.seconds / 1e6),
            ),
        ];
        if let Some(h) = &self.latency {
            for (name, q) in QUANTILES {
                fields.push((name, Value::Num(h.value_at_quantile(q) as f64 / 1e3)));
            }
            fields.push(("max_us", Value::Num(h.max() as f64 / 1e3)));
        }
        for (name, value) in &self.extra {
            fields.push((name, Value::Num(*value)));
        }
        Value::Obj(fields)
    }
}

const QUANTILES: [(&str, f64); 4] = [
    ("p50_us", 0.5),
    ("p90_us", 0.9),
    ("p99_us", 0.99),
    ("p999_us", 0.999),
];

fn parse(args: Vec<OsString>) -> Result<Option<Config>, String> {
    use lexopt::prelude::*;
    let mut config = Config {
        backends: vec![backend("mmap")?],
        seconds: 1.0,
        threads: vec![1, 4, 16, 64],
        sizes: vec![128, 4096],
        recovery_mib: 256,
        segment_bytes: rwal_wal::SEGMENT_BYTES_DEFAULT,
        preallocation: rwal_wal::Preallocation::ZeroFill,
        dir: None,
        json: false,
        plot: None,
        replicated: None,
        threads_given: false,
        backend_given: false,
        unreplicated_given: Vec::new(),
    };
    let mut parser = lexopt::Parser::from_args(args);
    let text = |parser: &mut lexopt::Parser| -> Result<String, String> {
        parser
            .value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|v| format!("not UTF-8: {v:?}"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("backend") => {
                config.backends = vec![backend(&text(&mut parser)?)?];
                config.backend_given = true;
            }
            Long("all-backends") => {
                config.backends = BACKENDS
                    .iter()
                    .map(|name| backend(name))
                    .collect::<Result<_, _>>()?;
                config.backend_given = true;
            }
            Long("seconds") => {
                config.seconds = number(&text(&mut parser)?, "--seconds")?;
                if !(0.01..=3600.0).contains(&config.seconds) {
                    return Err("--seconds must be between 0.01 and 3600".into());
                }
            }
            Long("threads") => {
                config.threads = list(&text(&mut parser)?, "--threads", 1..=1024)?;
                config.threads_given = true;
            }
            Long("replicated") => {
                let nodes: usize = number(&text(&mut parser)?, "--replicated")?;
                if !(1..=9).contains(&nodes) {
                    return Err("--replicated: between 1 and 9 nodes".into());
                }
                config.replicated = Some(nodes);
            }
            Long("size") => {
                config.sizes = list(&text(&mut parser)?, "--size", 12..=(16 << 20))?;
                config.unreplicated_given.push("--size");
            }
            Long("recovery-mib") => {
                config.recovery_mib = recovery_mib(&text(&mut parser)?)?;
                config.unreplicated_given.push("--recovery-mib");
            }
            Long("segment-bytes") => {
                config.segment_bytes = number(&text(&mut parser)?, "--segment-bytes")?
            }
            Long("dir") => config.dir = Some(text(&mut parser)?.into()),
            Long("json") => config.json = true,
            Long("fallocate") => config.preallocation = rwal_wal::Preallocation::Fallocate,
            Long("plot") => config.plot = Some(text(&mut parser)?.into()),
            Long("help") | Short('h') => {
                out!("{HELP}");
                return Ok(None);
            }
            other => return Err(format!("{}\n\n{HELP}", other.unexpected())),
        }
    }
    check_segment_bytes(config.segment_bytes)?;
    // Found here, not after both floors were measured, by an append's error that named
    // neither flag (found by review on 2026-12-08).
    let payload_max = rwal_wal::segment::max_payload_bytes(config.segment_bytes);
    if let Some(size) = config.sizes.iter().find(|s| **s as u64 > payload_max) {
        return Err(format!(
            "--size {size} does not fit a segment of --segment-bytes {}: it holds records of \
             at most {payload_max} bytes",
            config.segment_bytes
        ));
    }
    if let (Some(_), [flag, ..]) = (config.replicated, &config.unreplicated_given[..]) {
        // Ignored, they let a run look like what it was not (a replicated run of 4 KiB records).
        return Err(format!(
            "{flag} does not apply to --replicated, which measures 128-byte records and no \
             recovery"
        ));
    }
    if config.replicated.is_some() && config.backends.len() > 1 {
        return Err("--replicated measures one backend: name it with --backend".into());
    }
    if config.replicated.is_some() && !config.backend_given {
        // What a node uses unless told otherwise (docs/replication.md section 3.4), for the
        // single-node rows of the same run too: the ratios compare one backend.
        config.backends = vec![backend("staged")?];
    }
    Ok(Some(config))
}

/// The largest `--recovery-mib`: 64 GiB, far past any test and with no overflow of its bytes.
const RECOVERY_MIB_MAX: u64 = 64 << 10;

/// The value of `--recovery-mib`, within `1..=RECOVERY_MIB_MAX`: unbounded, its bytes
/// (`mib << 20`) wrapped around.
fn recovery_mib(text: &str) -> Result<u64, String> {
    let mib = number(text, "--recovery-mib")?;
    if !(1..=RECOVERY_MIB_MAX).contains(&mib) {
        return Err(format!(
            "--recovery-mib: {mib} is outside 1..={RECOVERY_MIB_MAX} (64 GiB)"
        ));
    }
    Ok(mib)
}

/// Checks `--segment-bytes` as the log will, naming the flag (the log's own words name its
/// option, `segment_bytes`).
fn check_segment_bytes(bytes: u64) -> Result<(), String> {
    match Options::new().segment_bytes(bytes).validate() {
        Ok(()) => Ok(()),
        Err(rwal_wal::Error::InvalidArgument { reason, .. }) => {
            Err(format!("--segment-bytes: {reason}"))
        }
        Err(e) => Err(format!("--segment-bytes {bytes}: {e}")),
    }
}

const BACKENDS: [&str; 5] = ["mmap", "pwrite", "staged", "io_uring", "io_uring-linked"];

/// The options of a backend by its name on the command line.
fn backend(name: &str) -> Result<(&'static str, Options), String> {
    let options = Options::new();
    let found = match name {
        "mmap" => ("mmap", options.backend(Backend::Mmap)),
        "pwrite" => ("pwrite", options.backend(Backend::Pwrite)),
        "staged" => ("staged", options.backend(Backend::Staged)),
        "io_uring" => ("io_uring", options.backend(Backend::IoUring)),
        "io_uring-linked" => (
            "io_uring-linked",
            options
                .backend(Backend::IoUring)
                .io_uring_sync(rwal_wal::UringSync::LinkedFdatasync),
        ),
        other => {
            return Err(format!(
                "--backend: unknown backend {other:?} ({})",
                BACKENDS.join(", ")
            ))
        }
    };
    Ok(found)
}

fn number<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| format!("{flag}: {text:?}: {e}"))
}

fn list(
    text: &str,
    flag: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Vec<usize>, String> {
    let values: Vec<usize> = text
        .split(',')
        .map(|v| number(v.trim(), flag))
        .collect::<Result<_, _>>()?;
    match values.iter().find(|v| !range.contains(v)) {
        Some(bad) => Err(format!("{flag}: {bad} is outside {range:?}")),
        None if values.is_empty() => Err(format!("{flag}: empty list")),
        None => Ok(values),
    }
}

/// Runs the benchmarks and prints their results.
pub fn run(args: Vec<OsString>) -> Result<ExitCode, String> {
    let Some(config) = parse(args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    // Before minutes of measuring: a plot that cannot be written would lose them all.
    if let Some(path) = &config.plot {
        check_plot_path(path)?;
    }
    // Watched before the directory exists: nothing is left behind however early the
    // interrupt comes.
    let interrupt = Interrupt::watch()?;
    let parent = config.dir.clone().unwrap_or_else(std::env::temp_dir);
    let base = RemovedAtEnd(interrupt.create_own_dir(&parent)?);
    let outcome = match config.replicated {
        Some(nodes) => measure_replicated(&config, &base.0, nodes),
        None => measure(&config, &base.0),
    };
    interrupt.measurements_ended();
    drop(base);
    let results = outcome?;
    // The plot before the printing: a reader of the output that goes away ends the command
    // (`out!`), and the plot asked for is written all the same. Should it fail after all (the
    // disk filled meanwhile), the results are printed first.
    let plotted = config.plot.as_ref().map(|path| {
        crate::plot::write_svg(path, &results)
            .map_err(|e| format!("--plot {}: {e}", path.display()))
    });
    if config.json {
        out!(
            "{}",
            Value::Arr(results.iter().map(Outcome::json).collect()).render()
        );
    } else {
        print_table(&results);
        if let Some(nodes) = config.replicated {
            crate::bench_replicated::print_ratios(&results, nodes);
        }
        if let (Some(path), Some(Ok(()))) = (&config.plot, &plotted) {
            out!("\nlatency percentile curves written to {}", path.display());
        }
    }
    plotted.transpose()?;
    Ok(ExitCode::SUCCESS)
}

/// The bench's own directory, removed when the run ends however it ends: also when a
/// workload panics (a failed `expect`), which unwinds through `run` and used to leave the
/// logs behind.
struct RemovedAtEnd(PathBuf);

impl Drop for RemovedAtEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Refuses a `--plot` path whose directory does not exist, that names a directory, or that
/// cannot be written: found at the end of the run, it would have thrown the run's results
/// away.
fn check_plot_path(path: &Path) -> Result<(), String> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "--plot {}: {} is not a directory",
            path.display(),
            folder.display()
        ));
    }
    if path.is_dir() {
        return Err(format!("--plot {}: is a directory", path.display()));
    }
    let writable = if path.exists() {
        // Opened to append, which changes nothing in it: an earlier plot stays until the new
        // one replaces it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
    } else {
        // A file of the bench's own beside it, removed at once: the plot's name stays free
        // until the plot is written (an interrupted run leaves no empty file there).
        let probe = folder.join(format!(".rwal-bench-plot-{}", std::process::id()));
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe);
        match created {
            Ok(_) => std::fs::remove_file(&probe),
            // Someone's file of that name: it cannot tell, and does not refuse.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    };
    writable.map_err(|e| format!("--plot {}: cannot be written: {e}", path.display()))
}

/// Creates the bench's own directory in `parent`: `rwal-bench-PID`, or `rwal-bench-PID-N`
/// when that name is taken. Never one that exists already: it is someone else's (a run with
/// the same PID in another container on the same volume, a stale one, or one planted in a
/// shared `/tmp`), and the bench removes its directory's files at the end and would follow
/// links placed in it. Readable by its owner only.
fn create_own_dir(parent: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    if !parent.is_dir() {
        return Err(format!(
            "--dir {}: not a directory (it must exist: the bench makes its own directory in it)",
            parent.display()
        ));
    }
    let pid = std::process::id();
    for attempt in 0..1000 {
        let name = match attempt {
            0 => format!("rwal-bench-{pid}"),
            n => format!("rwal-bench-{pid}-{n}"),
        };
        let base = parent.join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&base) {
            Ok(()) => return Ok(base),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
        }
    }
    Err(format!(
        "cannot create a directory of the bench's own in {}: rwal-bench-{pid} and 999 more \
         names are taken",
        parent.display()
    ))
}

/// What happens on SIGINT, SIGTERM or SIGHUP (a closed terminal; unless started ignoring it,
/// as under `nohup`): the benchmark's directory
/// `base` is removed and the command exits with 128 + the signal's number (130, 143, 129:
/// what a shell reports), instead of
/// leaving the logs of a run stopped half way behind (up to several 64 MiB segments each). A
/// second signal exits at once. A watcher thread does the work: it polls a flag the signal
/// handler sets (a handler may not remove files itself).
struct Interrupt {
    interrupted: Arc<std::sync::atomic::AtomicBool>,
    /// The directory to remove, once created.
    base: Arc<parking_lot::Mutex<Option<PathBuf>>>,
}

impl Interrupt {
    fn watch() -> Result<Interrupt, String> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let interrupted = Arc::new(AtomicBool::new(false));
        let signal_seen = Arc::new(AtomicUsize::new(0));
        let mut watched = vec![signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
        // Not a hang-up the bench was started to ignore (`nohup`): it runs on past the
        // terminal, as it was asked to.
        if !ignored_at_start(signal_hook::consts::SIGHUP) {
            watched.push(signal_hook::consts::SIGHUP);
        }
        for signal in watched {
            // In this order: the second signal finds `interrupted` set and exits at once.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                128 + signal,
                interrupted.clone(),
            )
            .and_then(|_| {
                signal_hook::flag::register_usize(signal, signal_seen.clone(), signal as usize)
            })
            .and_then(|_| signal_hook::flag::register(signal, interrupted.clone()))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
        }
        let base = Arc::new(parking_lot::Mutex::new(None::<PathBuf>));
        let (created, flag) = (base.clone(), interrupted.clone());
        std::thread::Builder::new()
            .name("rwal-bench-interrupt".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let status = 128 + signal_seen.load(Ordering::Acquire) as i32;
                // Waits for a creation in progress (`create_own_dir`), which it then removes;
                // held until the exit, so that none starts after this look.
                let slot = created.lock();
                let Some(base) = slot.clone() else {
                    errln!("\nrwal bench: interrupted");
                    std::process::exit(status);
                };
                // The workloads may still create files (a segment, the control file's
                // rewrite) while the tree is removed, and the run may be removing it too:
                // until it is gone, for a while.
                let mut outcome = std::fs::remove_dir_all(&base);
                for _ in 0..100 {
                    match &outcome {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            std::thread::sleep(Duration::from_millis(20));
                            outcome = std::fs::remove_dir_all(&base);
                        }
                        _ => break,
                    }
                }
                match outcome {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => errln!(
                        "\nrwal bench: interrupted; could not remove {}: {e}",
                        base.display()
                    ),
                    _ => errln!("\nrwal bench: interrupted; removed {}", base.display()),
                }
                std::process::exit(status);
            })
            .map_err(|e| format!("cannot start the interrupt watcher: {e}"))?;
        Ok(Interrupt { interrupted, base })
    }

    /// `create_own_dir`, the directory recorded for removal in the same step.
    fn create_own_dir(&self, parent: &Path) -> Result<PathBuf, String> {
        let mut slot = self.base.lock();
        let base = create_own_dir(parent)?;
        *slot = Some(base.clone());
        Ok(base)
    }

    /// The measurements ended. If an interrupt came during them (their errors may come from
    /// the removal of their files), waits for the watcher, which exits the command.
    fn measurements_ended(&self) {
        if self.interrupted.load(std::sync::atomic::Ordering::Acquire) {
            loop {
                std::thread::park();
            }
        }
    }
}

/// Whether `signal` was ignored when the process started (its `SigIgn` mask in
/// `/proc/self/status`, inherited through `exec`): read before any handler is installed. Not
/// known: taken as not ignored.
fn ignored_at_start(signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| (1..=64).contains(&signal) && mask & (1 << (signal - 1)) != 0)
}

fn measure_replicated(config: &Config, base: &Path, nodes: usize) -> Result<Vec<Outcome>, String> {
    let clients = if config.threads_given {
        config.threads.clone()
    } else {
        vec![1, 16, 64]
    };
    let progress = ProgressBar::new(clients.len() as u64 + 4);
    progress.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").map_err(|e| e.to_string())?,
    );
    let step = |message: String| {
        progress.set_message(message);
        progress.inc(1);
    };
    let (name, options) = &config.backends[0];
    let options = options
        .clone()
        .segment_bytes(config.segment_bytes)
        .preallocation(config.preallocation);
    let results = crate::bench_replicated::measure(
        base,
        name,
        &options,
        nodes,
        &clients,
        Duration::from_secs_f64(config.seconds),
        &step,
    );
    progress.finish_and_clear();
    results
}

fn measure(config: &Config, base: &Path) -> Result<Vec<Outcome>, String> {
    // Each backend's rows begin with the two floors: see below.
    let per_backend = 2 + config.sizes.len() + config.threads.len() + 4;
    let steps = (config.backends.len() * per_backend) as u64;
    let progress = ProgressBar::new(steps);
    progress.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").map_err(|e| e.to_string())?,
    );
    let mut results = Vec::new();
    let step = |message: String| {
        progress.set_message(message);
        progress.inc(1);
    };
    let mut skipped = Vec::new();
    for (name, options) in &config.backends {
        // A backend's rows are kept only if all of them were measured: its ratios divide them
        // by its own floors.
        match measure_backend(config, base, name, options, &step, &progress) {
            Ok(mut rows) => results.append(&mut rows),
            // With several backends, one that cannot open a log here (io_uring forbidden by a
            // container's seccomp profile, `O_DIRECT` on tmpfs, `mmap` on a file system the log
            // refuses it on) is skipped with a note, and the others are measured: its error
            // threw the whole run away (found by review on 2026-12-08). A failure once it
            // opened one (a full disk, a damaged scan) still ends the run.
            Err(BackendFailure::CannotRun(e)) if config.backends.len() > 1 => {
                progress.suspend(|| errln!("{name} skipped: it cannot open a log here: {e}"));
                skipped.push(format!("{name}: {e}"));
            }
            Err(BackendFailure::CannotRun(e) | BackendFailure::Failed(e)) => return Err(e),
        }
    }
    progress.finish_and_clear();
    if results.is_empty() {
        return Err(format!(
            "no backend could be measured: {}",
            skipped.join("; ")
        ));
    }
    Ok(results)
}

/// Why a backend's rows are missing.
enum BackendFailure {
    /// It cannot open a log here at all.
    CannotRun(String),
    /// A workload failed.
    Failed(String),
}

/// The rows of one backend, its floors first, once a log of it opened here.
fn measure_backend(
    config: &Config,
    base: &Path,
    name: &'static str,
    options: &Options,
    step: &dyn Fn(String),
    progress: &ProgressBar,
) -> Result<Vec<Outcome>, BackendFailure> {
    let options = options
        .clone()
        .segment_bytes(config.segment_bytes)
        .preallocation(config.preallocation);
    let run = Run {
        base,
        name,
        options,
        seconds: Duration::from_secs_f64(config.seconds),
        append_bytes_max: APPEND_ROW_BYTES_MAX,
    };
    run.fresh("probe")
        .and_then(|(wal, dir)| finish(wal, &dir))
        .map_err(|e| BackendFailure::CannotRun(e.to_string()))?;
    measure_rows(config, &run, step, progress).map_err(BackendFailure::Failed)
}

/// The rows of `run`'s backend, its floors first.
fn measure_rows(
    config: &Config,
    run: &Run,
    step: &dyn Fn(String),
    progress: &ProgressBar,
) -> Result<Vec<Outcome>, String> {
    let (base, name, seconds) = (run.base, run.name, run.seconds);
    let mut results = Vec::new();
    // The floors are measured again right before each backend's durable commits, which
    // are divided by them: with `--all-backends` the last backend's ran minutes after
    // floors measured once at the start, on a disk whose speed may have moved meanwhile
    // (found by review on 2026-12-05).
    step(format!("{name}: baseline pwrite + fdatasync"));
    results.push(baseline_fdatasync(base, seconds).map_err(|e| format!("baseline: {e}"))?);
    step(format!("{name}: baseline O_DIRECT|O_DSYNC"));
    match baseline_odirect(base, seconds) {
        Ok(outcome) => results.push(outcome),
        // Not `progress.println`, which prints nothing while the bar is hidden (output
        // not a terminal): the floor's ratio would be missing without a word.
        Err(e) => progress.suspend(|| errln!("baseline O_DIRECT|O_DSYNC skipped: {e}")),
    }
    for &size in &config.sizes {
        step(format!("{name}: durable commit {size} B"));
        results.push(run.durable_commit(size).map_err(|e| e.to_string())?);
    }
    for &threads in &config.threads {
        step(format!("{name}: group commit x{threads}"));
        results.push(run.group_commit(threads).map_err(|e| e.to_string())?);
    }
    for threads in [1, 2] {
        step(format!("{name}: append x{threads}"));
        results.push(run.append(threads, false).map_err(|e| e.to_string())?);
    }
    step(format!("{name}: append x2, a log per thread"));
    results.push(run.append(2, true).map_err(|e| e.to_string())?);
    step(format!(
        "{name}: recovery scan of {} MiB",
        config.recovery_mib
    ));
    results.push(
        run.recovery(config.recovery_mib)
            .map_err(|e| e.to_string())?,
    );
    Ok(results)
}

/// Runs `op` in a loop on `threads` threads for `seconds`, all starting together; the latency
/// of every call, merged.
pub fn timed<E: Send>(
    threads: usize,
    seconds: Duration,
    op: &(dyn Fn() -> Result<(), E> + Sync),
) -> Result<Histogram<u64>, E> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || -> Result<Histogram<u64>, E> {
                    let mut h = histogram();
                    barrier.wait();
                    let started = Instant::now();
                    while started.elapsed() < seconds {
                        let t = Instant::now();
                        op()?;
                        record(&mut h, t);
                    }
                    Ok(h)
                })
            })
            .collect();
        let mut merged = histogram();
        for worker in workers {
            let h = worker.join().expect("benchmark thread")?;
            merged.add(&h).expect("same bounds");
        }
        Ok(merged)
    })
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds")
}

pub fn record(h: &mut Histogram<u64>, since: Instant) {
    h.saturating_record(since.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64);
}

struct Run<'a> {
    base: &'a Path,
    name: &'static str,
    options: Options,
    seconds: Duration,
    /// The most an `append` row writes ([`APPEND_ROW_BYTES_MAX`]).
    append_bytes_max: u64,
}

impl Run<'_> {
    /// A new log for `workload`, with its next segment prepared (zero-filled and synced)
    /// before anything is timed, as the floor loops zero-fill and sync their files before
    /// theirs: otherwise the first append starts that zero-fill in the background, and a run of
    /// a second or two times the one preparation a long-running log meets every 64 MiB.
    fn fresh(&self, workload: &str) -> rwal_wal::Result<(Wal, PathBuf)> {
        let dir = self.base.join(format!("{}-{workload}", self.name));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, self.options.clone())?;
        wal.maintain()?;
        Ok((wal, dir))
    }

    fn durable_commit(&self, size: usize) -> rwal_wal::Result<Outcome> {
        let (wal, dir) = self.fresh("durable")?;
        let data = vec![0x5a; size];
        let mut h = histogram();
        // Warm up: the first commits pay for page faults and the first extent writes.
        for _ in 0..WARM_UP_WRITES {
            wal.append_durable(&data)?;
        }
        let started = Instant::now();
        while started.elapsed() < self.seconds {
            let t = Instant::now();
            let lsn = wal.append(&data)?;
            wal.commit(lsn)?;
            record(&mut h, t);
        }
        let elapsed = started.elapsed().as_secs_f64();
        finish(wal, &dir)?;
        Ok(Outcome {
            workload: "durable-commit",
            backend: self.name,
            threads: 1,
            size_bytes: size,
            ops: h.len(),
            seconds: elapsed,
            bytes: h.len() * size as u64,
            latency: Some(h),
            extra: Vec::new(),
        })
    }

    fn group_commit(&self, threads: usize) -> rwal_wal::Result<Outcome> {
        let (wal, dir) = self.fresh("group")?;
        let started = Instant::now();
        let merged = timed(threads, self.seconds, &|| {
            wal.append_durable(&[0x33u8; 128]).map(|_| ())
        })?;
        let elapsed = started.elapsed().as_secs_f64();
        let stats = wal.stats();
        finish(wal, &dir)?;
        let per_sync = stats.records_synced as f64 / stats.syncs.max(1) as f64;
        Ok(Outcome {
            workload: "group-commit",
            backend: self.name,
            threads,
            size_bytes: 128,
            ops: merged.len(),
            seconds: elapsed,
            bytes: merged.len() * 128,
            latency: Some(merged),
            extra: vec![("records_per_sync", per_sync)],
        })
    }

    /// Non-durable appends of 128-byte records from `threads` threads: into one shared log,
    /// or (`own_logs`) each thread into a log of its own. The second is this machine's floor
    /// for the first's scaling: two threads that share nothing but the process, the page cache
    /// and the disk.
    fn append(&self, threads: usize, own_logs: bool) -> rwal_wal::Result<Outcome> {
        // The row's bytes, in runs of 1024 records of 128 bytes (160 as stored), shared by its
        // threads so that they stop together (a share each left the faster one's partner
        // appending alone at the end): a row of `--seconds 60` wrote tens of GB, and failed on
        // a smaller disk with every figure before it (found by review on 2026-12-08).
        let runs_left = Arc::new(std::sync::atomic::AtomicI64::new(
            i64::try_from(self.append_bytes_max / (1024 * 160))
                .unwrap_or(i64::MAX)
                .max(1),
        ));
        let logs = if own_logs { threads } else { 1 };
        let workload = if own_logs {
            "append-own-logs"
        } else {
            "append"
        };
        let mut opened = Vec::with_capacity(logs);
        for i in 0..logs {
            match self.fresh(&format!("{workload}-{i}")) {
                Ok(log) => opened.push(log),
                Err(e) => {
                    // The logs opened before are closed and removed too.
                    let _ = finish_all(opened);
                    return Err(e);
                }
            }
        }
        let opened: Vec<_> = opened
            .into_iter()
            .map(|(wal, dir)| (Arc::new(wal), dir))
            .collect();
        let barrier = Arc::new(Barrier::new(threads + 1));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let wal = opened[t % logs].0.clone();
                let (barrier, seconds) = (barrier.clone(), self.seconds);
                let runs_left = runs_left.clone();
                std::thread::spawn(move || -> rwal_wal::Result<u64> {
                    let data = [0x77u8; 128];
                    let mut count = 0u64;
                    barrier.wait();
                    let started = Instant::now();
                    // Check the clock every 1024 appends: an append is far cheaper than a
                    // clock read is not.
                    while started.elapsed() < seconds
                        && runs_left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) > 0
                    {
                        for _ in 0..1024 {
                            wal.append(&data)?;
                        }
                        count += 1024;
                    }
                    Ok(count)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut ops = 0;
        let mut failed = None;
        for worker in workers {
            match worker.join().expect("benchmark thread") {
                Ok(count) => ops += count,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let rss_anon_mib = rss_anon_bytes().map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64);
        // Every log closed and removed, even when an append failed.
        let opened = opened.into_iter().map(|(wal, dir)| {
            let wal = Arc::try_unwrap(wal).expect("workers joined");
            (wal, dir)
        });
        let closed = finish_all(opened);
        if let Some(e) = failed.or(closed.err()) {
            return Err(e);
        }
        Ok(Outcome {
            workload,
            backend: self.name,
            threads,
            size_bytes: 128,
            ops,
            seconds: elapsed,
            bytes: ops * 128,
            latency: None,
            extra: vec![("rss_anon_mib", rss_anon_mib)],
        })
    }

    fn recovery(&self, mib: u64) -> rwal_wal::Result<Outcome> {
        let (wal, dir) = self.fresh("recovery")?;
        let record = vec![0x42u8; 4096];
        let batch: Vec<&[u8]> = (0..64).map(|_| record.as_slice()).collect();
        let records = (mib << 20) / 4096;
        let mut written = 0;
        while written < records {
            wal.append_batch(&batch)?;
            written += batch.len() as u64;
        }
        wal.close()?;
        // The first open after the writes reads what the backend left in the page cache:
        // nothing of what `IoUring` wrote with `O_DIRECT`, `Mmap`'s pages in small folios. It
        // is reported apart; the open timed for the row is the next one, from a warm cache
        // for every backend. (An open prepares the next segment only if the active one is at
        // least half full, which with the default sizes it is not here.)
        let started = Instant::now();
        let wal = Wal::open(&dir, self.options.clone())?;
        let first_seconds = started.elapsed().as_secs_f64();
        let first_scanned = wal.recovery_report().records;
        wal.close()?;
        let started = Instant::now();
        let wal = Wal::open(&dir, self.options.clone())?;
        let elapsed = started.elapsed().as_secs_f64();
        let scanned = wal.recovery_report().records;
        finish(wal, &dir)?;
        let first_open_mb_s = (first_scanned * 4096) as f64 / first_seconds / 1e6;
        Ok(Outcome {
            workload: "recovery-scan",
            backend: self.name,
            threads: 1,
            size_bytes: 4096,
            ops: scanned,
            seconds: elapsed,
            bytes: scanned * 4096,
            latency: None,
            extra: vec![("first_open_mb_s", first_open_mb_s)],
        })
    }
}

/// Closes a run's log and removes its directory, also when the close fails (a log an append
/// poisoned fails its close).
fn finish(wal: Wal, dir: &Path) -> rwal_wal::Result<()> {
    let closed = wal.close();
    let _ = std::fs::remove_dir_all(dir);
    closed
}

/// [`finish`] for every log: each is closed and removed whatever the others' closes return; the
/// first error is returned.
fn finish_all(logs: impl IntoIterator<Item = (Wal, PathBuf)>) -> rwal_wal::Result<()> {
    let mut first_error = None;
    for (wal, dir) in logs {
        if let Err(e) = finish(wal, &dir) {
            first_error = first_error.or(Some(e));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// `RssAnon` of this process, from `/proc/self/status`.
fn rss_anon_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A file of `bytes` zeros, synced, then opened again with `custom_flags`: later writes to it
/// change no metadata, as in a log's preallocated segment.
pub(crate) fn zero_filled(
    path: &Path,
    bytes: u64,
    custom_flags: i32,
) -> std::io::Result<std::fs::File> {
    // A file for O_DIRECT writes is filled with O_DIRECT too: filled through the page cache,
    // each O_DIRECT write of the floor would first drop the clean cached pages in its range, a
    // cost no commit of rwal's pays (found by review on 2026-12-05).
    let direct = custom_flags & libc::O_DIRECT;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(direct)
        .open(path)?;
    let buffer = vec![0u8; (1 << 20) + 4096];
    let aligned = buffer.as_ptr().align_offset(4096);
    let zeros = &buffer[aligned..aligned + (1 << 20)];
    for chunk in 0..bytes / zeros.len() as u64 {
        file.write_all_at(zeros, chunk * zeros.len() as u64)?;
    }
    file.sync_all()?;
    drop(file);
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(custom_flags)
        .open(path)
}

/// Untimed writes before a floor's timed ones: as many as rwal's durable commits take before
/// theirs.
const WARM_UP_WRITES: usize = 50;

/// The physical floor with a page-cache write: `pwrite` of 128 bytes + `fdatasync`.
fn baseline_fdatasync(base: &Path, seconds: Duration) -> std::io::Result<Outcome> {
    let path = base.join("baseline-fdatasync");
    let file = zero_filled(&path, 64 << 20, 0)?;
    let data = [0x11u8; 128];
    let mut h = histogram();
    let mut offset = 0u64;
    // Warmed up as rwal's durable commits are, whose latencies are divided by these: the
    // first writes pay for cold metadata and page faults (found by review).
    for _ in 0..WARM_UP_WRITES {
        file.write_all_at(&data, offset)?;
        file.sync_data()?;
        offset += 136;
    }
    let started = Instant::now();
    while started.elapsed() < seconds {
        let t = Instant::now();
        file.write_all_at(&data, offset)?;
        file.sync_data()?;
        record(&mut h, t);
        offset = (offset + 136) % (63 << 20);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok(Outcome {
        workload: "baseline-pwrite-fdatasync",
        backend: "raw",
        threads: 1,
        size_bytes: 128,
        ops: h.len(),
        seconds: elapsed,
        bytes: h.len() * 128,
        latency: Some(h),
        extra: Vec::new(),
    })
}

/// The physical floor: a 4 KiB `O_DIRECT|O_DSYNC` write per commit.
fn baseline_odirect(base: &Path, seconds: Duration) -> std::io::Result<Outcome> {
    let path = base.join("baseline-odirect");
    let file = zero_filled(&path, 64 << 20, libc::O_DIRECT | libc::O_DSYNC)?;
    let mut buffer = vec![0x22u8; 8192];
    let aligned = buffer.as_ptr().align_offset(4096);
    let block = &mut buffer[aligned..aligned + 4096];
    block.fill(0x22);
    let mut h = histogram();
    let mut offset = 0u64;
    for _ in 0..WARM_UP_WRITES {
        file.write_all_at(block, offset)?;
        offset += 4096;
    }
    let started = Instant::now();
    while started.elapsed() < seconds {
        let t = Instant::now();
        file.write_all_at(block, offset)?;
        record(&mut h, t);
        offset = (offset + 4096) % (64 << 20);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok(Outcome {
        workload: "baseline-odirect-dsync",
        backend: "raw",
        threads: 1,
        size_bytes: 4096,
        ops: h.len(),
        seconds: elapsed,
        bytes: h.len() * 4096,
        latency: Some(h),
        extra: Vec::new(),
    })
}

fn micros(h: &Histogram<u64>, q: f64) -> String {
    format!("{:.1}", h.value_at_quantile(q) as f64 / 1e3)
}

fn print_table(results: &[Outcome]) {
    for line in table_lines(results) {
        out!("{line}");
    }
    print_ratios(results);
}

/// The table of `results`, a line each and their extra values below, under a header.
fn table_lines(results: &[Outcome]) -> Vec<String> {
    // As wide as the longest name shown: a fixed width (7) let `io_uring-linked` push its
    // rows out of line.
    let backend_width = results
        .iter()
        .map(|r| r.backend.len())
        .chain(["backend".len()])
        .max()
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{:<26} {:<backend_width$} {:>7} {:>6} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "workload",
        "backend",
        "threads",
        "size",
        "ops/s",
        "MB/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p999 us",
        "max us"
    )];
    for r in results {
        let (p50, p90, p99, p999, max) = match &r.latency {
            Some(h) => (
                micros(h, 0.5),
                micros(h, 0.9),
                micros(h, 0.99),
                micros(h, 0.999),
                format!("{:.1}", h.max() as f64 / 1e3),
            ),
            None => Default::default(),
        };
        lines.push(format!(
            "{:<26} {:<backend_width$} {:>7} {:>6} {:>12.0} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.workload,
            r.backend,
            r.threads,
            r.size_bytes,
            r.ops_per_second(),
            r.bytes as f64 / r.seconds / 1e6,
            p50,
            p90,
            p99,
            p999,
            max
        ));
        for (name, value) in &r.extra {
            lines.push(format!("{:<26}   {name} = {value:.2}", ""));
        }
    }
    lines
}

/// The ratios the performance targets are stated in, from this one run.
fn print_ratios(results: &[Outcome]) {
    let find = |workload: &str, backend: &str, threads: usize, size: usize| {
        results.iter().find(|r| {
            r.workload == workload
                && r.backend == backend
                && r.threads == threads
                && r.size_bytes == size
        })
    };
    let p = |r: Option<&Outcome>, q: f64| {
        r.and_then(|r| r.latency.as_ref())
            .map(|h| h.value_at_quantile(q) as f64)
    };
    let any_floor = results.iter().any(|r| r.workload.starts_with("baseline-"));
    if !any_floor {
        return; // `--replicated` prints its own ratios
    }
    out!("\nratios (this run, each backend against the floors measured right before it):");
    let backends: Vec<&str> = results
        .iter()
        .filter(|r| r.backend != "raw")
        .map(|r| r.backend)
        .fold(Vec::new(), |mut v, b| {
            if !v.contains(&b) {
                v.push(b);
            }
            v
        });
    for backend in backends {
        let durable = find("durable-commit", backend, 1, 128);
        let floor_before = |workload: &str| floor_measured_for(results, backend, workload);
        let floor = floor_before("baseline-odirect-dsync");
        let fdatasync = floor_before("baseline-pwrite-fdatasync");
        if durable.is_none() {
            out!("  {backend}: the durable commit ratios were not measured: --size does not hold 128");
        } else if floor.is_none() {
            out!("  {backend}: no ratio to the O_DIRECT|O_DSYNC floor: that baseline was skipped");
        }
        if let (Some(d), Some(f)) = (p(durable, 0.5), p(floor, 0.5)) {
            out!("  {backend}: durable commit p50 / O_DIRECT|O_DSYNC 4K p50 = {:.2} (target <= 1.15)", d / f);
        }
        if let (Some(d), Some(f)) = (p(durable, 0.99), p(fdatasync, 0.99)) {
            out!(
                "  {backend}: durable commit p99 / pwrite+fdatasync p99 = {:.2} (target <= 1.0)",
                d / f
            );
        }
        if let (Some(one), Some(two)) = (
            find("append", backend, 1, 128),
            find("append", backend, 2, 128),
        ) {
            out!(
                "  {backend}: append scaling, 2 threads / 1 = {:.2} (target >= 1.6)",
                two.ops_per_second() / one.ops_per_second()
            );
            if let Some(own) = find("append-own-logs", backend, 2, 128) {
                out!(
                    "  {backend}: the machine's floor of that ratio (2 threads on a log each / 1) = {:.2}",
                    own.ops_per_second() / one.ops_per_second()
                );
            }
        }
        // The two floors sync one block each and normally lie within 2x of each other; far
        // apart, one of them ran while something else held the disk, and the ratios are
        // suspect.
        if let (Some(odirect), Some(plain)) = (p(floor, 0.5), p(fdatasync, 0.5)) {
            // The histograms hold nanoseconds.
            if let Some(note) = floors_disagree(odirect / 1e3, plain / 1e3) {
                out!("  {backend}: {note}");
            }
        }
        if let Some(note) = p(fdatasync, 0.5).and_then(|plain| no_disk_under(plain / 1e3)) {
            out!("  {backend}: {note}");
        }
    }
    // Floors measured before each backend that moved far between backends: the disk's speed
    // changed during the run, and ratios of different backends are not comparable.
    let odirect_p50s: Vec<f64> = results
        .iter()
        .filter(|r| r.workload == "baseline-odirect-dsync")
        .filter_map(|r| p(Some(r), 0.5))
        .collect();
    if let Some(note) = floors_drifted(&odirect_p50s) {
        out!("  {note}");
    }
}

/// A warning when the O_DIRECT|O_DSYNC floor's p50s measured before each backend (in
/// nanoseconds) lie more than [`FLOORS_APART`] times apart.
fn floors_drifted(p50s: &[f64]) -> Option<String> {
    let low = p50s.iter().copied().fold(f64::INFINITY, f64::min);
    let high = p50s.iter().copied().fold(0.0, f64::max);
    let apart = high / low.max(1.0);
    (p50s.len() > 1 && apart > FLOORS_APART).then(|| {
        format!(
            "note: the O_DIRECT|O_DSYNC floor's p50 moved {apart:.1}x between backends ({:.1} \
             to {:.1} us): the disk's speed changed during the run, so backends' ratios are not \
             comparable with each other",
            low / 1e3,
            high / 1e3
        )
    })
}

/// A warning when the two floors' p50s (`odirect`, `fdatasync`, in microseconds) are more
/// than [`FLOORS_APART`] times apart.
fn floors_disagree(odirect: f64, fdatasync: f64) -> Option<String> {
    let apart = odirect.max(fdatasync) / odirect.min(fdatasync).max(1.0);
    (apart > FLOORS_APART).then(|| {
        format!(
            "note: the two floors' p50s are {apart:.1}x apart (O_DIRECT|O_DSYNC 4K {odirect:.1} \
             us, pwrite+fdatasync {fdatasync:.1} us): the disk was busy with other work during \
             one of them, so the ratios above are not to be trusted; run again on a quiet machine"
        )
    })
}

/// A `pwrite`+`fdatasync` faster than this (microseconds, at the median) reached no device
/// that keeps its writes: tmpfs, or a disk whose volatile write cache acknowledges the flush.
/// The fastest NVMe flash with power-loss protection takes some tens of microseconds.
const SYNC_FLOOR_OF_A_DISK_US: f64 = 10.0;

/// A note for a run whose syncs took `fdatasync` microseconds at the median, if that is too
/// fast for a disk: every ratio to the floors is then a ratio of memory copies (found missing
/// by a review of the bench: the README's word on tmpfs was the only warning).
pub(crate) fn no_disk_under(fdatasync: f64) -> Option<String> {
    (fdatasync < SYNC_FLOOR_OF_A_DISK_US).then(|| {
        format!(
            "note: pwrite+fdatasync took {fdatasync:.1} us at the median: the directory is on \
             no disk that keeps its writes (tmpfs, or a volatile write cache), so these \
             figures say nothing about durable commits; give --dir a directory on the disk \
             to measure"
        )
    })
}

/// The floor `workload` measured right before `backend`'s rows: among the raw rows just
/// before its first row only, so that a floor skipped for it (an `O_DIRECT` open refused) is
/// not taken from the backend before it (`--all-backends`; found by a review, 2026-12-07).
fn floor_measured_for<'a>(
    results: &'a [Outcome],
    backend: &str,
    workload: &str,
) -> Option<&'a Outcome> {
    let first_row = results
        .iter()
        .position(|r| r.backend == backend)
        .unwrap_or(results.len());
    results[..first_row]
        .iter()
        .rev()
        .take_while(|r| r.backend == "raw")
        .find(|r| r.workload == workload)
}

/// How far apart the floors' p50s may be before the run warns (they measured within 1.5x of
/// each other on a quiet machine: 43-56 us against 64-75 us).
const FLOORS_APART: f64 = 3.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// With several backends, one that cannot run here is skipped with a note and the others
    /// are measured: its error threw the whole run away, `--all-backends` where io_uring is
    /// forbidden among others (found by review on 2026-12-08). Alone, its error is the run's.
    #[test]
    fn a_backend_that_cannot_run_is_skipped_when_others_are_measured() {
        let base = std::env::temp_dir().join(format!("rwal-bench-skip-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        // A log option every open refuses.
        let broken = Options::new().control_interval(Duration::ZERO);
        let mut config = Config {
            backends: vec![
                ("staged", Options::new().backend(Backend::Staged)),
                ("broken", broken),
            ],
            seconds: 0.02,
            threads: vec![1],
            sizes: vec![128],
            recovery_mib: 1,
            segment_bytes: 1 << 20,
            preallocation: rwal_wal::Preallocation::default(),
            dir: None,
            json: false,
            plot: None,
            replicated: None,
            threads_given: true,
            backend_given: true,
            unreplicated_given: Vec::new(),
        };
        let rows = measure(&config, &base).expect("the staged backend measured");
        assert!(rows.iter().any(|r| r.workload == "durable-commit"));
        assert!(
            rows.iter()
                .all(|r| r.backend == "staged" || r.backend == "raw"),
            "rows of the broken backend kept"
        );
        assert!(
            rows.iter().filter(|r| r.backend == "raw").count() <= 2,
            "the broken backend's floors kept"
        );
        config.backends.remove(0);
        let alone = measure(&config, &base).err().expect("refused");
        assert!(alone.contains("control_interval"), "{alone}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// An append row stops at its byte budget, not only at `--seconds`.
    #[test]
    fn an_append_row_stops_once_it_has_written_its_budget() {
        let base = std::env::temp_dir().join(format!("rwal-bench-budget-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let run = Run {
            base: &base,
            name: "staged",
            options: Options::new()
                .backend(Backend::Staged)
                .segment_bytes(1 << 20),
            seconds: Duration::from_secs(600),
            // Eight runs of 1024 records, the two threads together.
            append_bytes_max: 8 * 1024 * 160,
        };
        let started = Instant::now();
        let row = run.append(2, false).expect("appended");
        assert_eq!(row.ops, 2 * 4 * 1024);
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "ran out its seconds"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn floors_that_moved_between_backends_are_called_out() {
        assert_eq!(floors_drifted(&[50_000.0]), None);
        assert_eq!(floors_drifted(&[50_000.0, 70_000.0, 60_000.0]), None);
        let note = floors_drifted(&[50_000.0, 400_000.0]).expect("8x apart");
        assert!(
            note.contains("8.0x") && note.contains("50.0 to 400.0 us"),
            "{note}"
        );
    }

    #[test]
    fn a_backend_is_divided_by_its_own_floors_only() {
        let row = |workload: &'static str, backend: &'static str| Outcome {
            workload,
            backend,
            threads: 1,
            size_bytes: 128,
            ops: 1,
            seconds: 1.0,
            bytes: 128,
            latency: None,
            extra: Vec::new(),
        };
        let results = [
            row("baseline-pwrite-fdatasync", "raw"),
            row("baseline-odirect-dsync", "raw"),
            row("durable-commit", "mmap"),
            row("baseline-pwrite-fdatasync", "raw"),
            // The O_DIRECT floor skipped before `staged`.
            row("durable-commit", "staged"),
        ];
        let floor = |backend, workload| {
            floor_measured_for(&results, backend, workload)
                .map(|f| results.iter().position(|r| std::ptr::eq(r, f)).unwrap())
        };
        assert_eq!(floor("mmap", "baseline-odirect-dsync"), Some(1));
        assert_eq!(floor("mmap", "baseline-pwrite-fdatasync"), Some(0));
        assert_eq!(floor("staged", "baseline-pwrite-fdatasync"), Some(3));
        assert_eq!(
            floor("staged", "baseline-odirect-dsync"),
            None,
            "not mmap's"
        );
    }

    #[test]
    fn a_sync_faster_than_any_disk_is_called_out() {
        assert_eq!(no_disk_under(85.0), None);
        assert_eq!(no_disk_under(12.0), None);
        let note = no_disk_under(0.9).expect("tmpfs");
        assert!(note.contains("took 0.9 us at the median"), "{note}");
        assert!(note.contains("--dir"), "{note}");
        assert!(!note.contains("  "), "{note}");
    }

    #[test]
    fn floors_far_apart_are_called_suspect() {
        assert_eq!(floors_disagree(50.0, 70.0), None);
        assert_eq!(floors_disagree(130.0, 120.0), None);
        let note = floors_disagree(4000.0, 120.0).expect("33x apart");
        assert!(note.contains("33.3x apart"), "{note}");
        assert!(floors_disagree(40.0, 200.0).is_some());
    }

    fn backends_of(args: &[&str]) -> Vec<&'static str> {
        let config = parse(args.iter().map(OsString::from).collect())
            .expect("the arguments parse")
            .expect("not --help");
        config.backends.iter().map(|(name, _)| *name).collect()
    }

    #[test]
    fn a_replicated_run_measures_the_backend_a_node_uses_unless_one_is_named() {
        assert_eq!(backends_of(&[]), ["mmap"]);
        assert_eq!(backends_of(&["--replicated", "3"]), ["staged"]);
        assert_eq!(
            backends_of(&["--replicated", "3", "--backend", "mmap"]),
            ["mmap"]
        );
        assert_eq!(
            backends_of(&["--backend", "pwrite", "--replicated", "3"]),
            ["pwrite"]
        );
        let both = ["--replicated", "3", "--all-backends"].map(OsString::from);
        let refused = parse(both.to_vec()).err().expect("refused");
        assert!(refused.contains("one backend"), "{refused}");
    }

    /// Every row's columns start where the header's do, with the longest backend name too.
    #[test]
    fn the_table_columns_line_up_for_every_backend_name() {
        let row = |backend| Outcome {
            workload: "durable-commit",
            backend,
            threads: 1,
            size_bytes: 128,
            ops: 1000,
            seconds: 1.0,
            bytes: 128_000,
            latency: None,
            extra: Vec::new(),
        };
        let lines = table_lines(&[row("mmap"), row("io_uring-linked")]);
        // Where the third column (threads, right-aligned) ends, and the line.
        let ends = |line: &str| {
            let third = line.split_whitespace().nth(2).unwrap();
            let at = line.find(&format!(" {third} ")).unwrap() + 1 + third.len();
            (at, line.len())
        };
        for line in &lines[1..] {
            assert_eq!(ends(line), ends(&lines[0]), "{lines:#?}");
        }
    }

    #[test]
    fn flags_that_do_not_apply_or_are_out_of_range_are_refused_naming_the_flag() {
        let refused = |args: &[&str]| {
            parse(args.iter().map(OsString::from).collect())
                .err()
                .expect("refused")
        };
        for flag in ["--size", "--recovery-mib"] {
            let e = refused(&["--replicated", "3", flag, "64"]);
            assert!(
                e.starts_with(&format!("{flag} does not apply to --replicated")),
                "{e}"
            );
        }
        for mib in ["0", "65537", "17592186044416"] {
            let e = refused(&["--recovery-mib", mib]);
            assert!(
                e.contains("--recovery-mib: ") && e.contains("outside 1..=65536"),
                "{e}"
            );
        }
        let e = refused(&["--segment-bytes", "0"]);
        assert!(e.starts_with("--segment-bytes: 0 is outside"), "{e}");
        let e = refused(&["--segment-bytes", "1048576", "--size", "128,2097152"]);
        assert!(
            e.starts_with("--size 2097152 does not fit a segment of --segment-bytes 1048576"),
            "{e}"
        );
    }
}
