//! `rwal`: the operator's and benchmarker's command.
//!
//! ```text
//! rwal bench [OPTIONS]      latency and throughput benchmarks (see `rwal bench --help`)
//! rwal inspect DIR          segments, LSN ranges, the control file
//! rwal verify DIR           checks every record's checksum; exit 1 on corruption
//! rwal node [OPTIONS]       one node of a replicated cluster (see `rwal node --help`)
//! rwal client [OPTIONS]     append to, read from, ask the status of a node
//! ```

#![forbid(unsafe_code)]

/// `println!` for what a command prints on standard output: a reader that went away (`rwal
/// inspect DIR | head`) ends the command quietly with status 141, as SIGPIPE would end a C
/// tool, instead of a panic (Rust ignores SIGPIPE, and `println!` panics on the error).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            crate::output_failed(e)
        }
    }};
}

/// `eprintln!` that never panics: a standard error that cannot be written (a full disk under
/// the log file, a log reader that died, a closed terminal) loses the line, not the process.
/// `eprintln!` panicked there, and in `rwal node` a panic in a log line on the node's thread
/// failed the node, whose own report of it then panicked again before the node could stop
/// (found by review on 2026-12-06).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod bench_replicated;
mod client;
mod inspect;
mod json;
mod node;
mod plot;
mod quorum_floor;

use std::process::ExitCode;

const USAGE: &str = "\
usage: rwal <command> [options]

commands:
  bench     measure commit latency, group-commit throughput, append throughput and recovery speed
  inspect   show a log directory: control file, segments, LSN ranges
  verify    check every record's checksum without changing anything (exit 1 on corruption,
            2 when it cannot judge)
  node      run one node of a replicated cluster (TCP, authenticated peers, a client port)
  client    append to, read from, or ask the status of a running node

`rwal <command> --help` says more.";

/// Ends the command after its standard output failed (see `out!`).
fn output_failed(error: std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    errln!("rwal: cannot write the output: {error}");
    // 2, not 1: `rwal verify` exits 1 for a corrupted log, and a full disk under its output
    // must not read as one (until 2026-12-07 it did).
    std::process::exit(2);
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(command) = args.next() else {
        errln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<std::ffi::OsString> = args.collect();
    let outcome = match command.to_str() {
        Some("bench") => bench::run(rest),
        Some("inspect") => inspect::run(rest, false),
        Some("verify") => inspect::run(rest, true),
        Some("node") => node::run(rest),
        Some("client") => client::run(rest),
        Some("--help" | "-h" | "help") => {
            out!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            errln!("rwal: unknown command {command:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            errln!("rwal: {message}");
            ExitCode::from(2)
        }
    }
}
