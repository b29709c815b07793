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
  verify    check every record's checksum without changing anything (exit 1 on corruption)
  node      run one node of a replicated cluster (TCP, authenticated peers, a client port)
  client    append to, read from, or ask the status of a running node

`rwal <command> --help` says more.";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(command) = args.next() else {
        eprintln!("{USAGE}");
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
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("rwal: unknown command {command:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("rwal: {message}");
            ExitCode::from(2)
        }
    }
}
