//! The `rwal` command as an operator runs it: `inspect`, `verify` on a clean log, on a log with
//! a flipped byte and on a log with a torn tail, a very short `bench --json`, a very short
//! `bench --replicated 3`, arguments each command refuses, and `rwal node` with `rwal client`
//! on a single node.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rwal_wal::{Options, Wal};

const SEGMENT: &str = "00000000000000000001.seg";

fn temp(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rwal-cli-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Writes a secret file as an operator must: readable by its owner only (a node warns of one
/// others may read).
fn write_secret(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn rwal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rwal"))
        .args(args)
        .output()
        .expect("run rwal")
}

/// The exit status of `child` once it ends, by `deadline`; killed, and the test failed with
/// `late`, past it.
fn exit_status_by(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
    late: &str,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{late}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Ten durable records of 100 bytes (136 stored) in one 1 MiB segment.
fn ten_records(dir: &Path) {
    let wal = Wal::open(dir, Options::new().segment_bytes(1 << 20)).unwrap();
    for i in 0..10u8 {
        wal.append(&[i; 100]).unwrap();
    }
    wal.close().unwrap();
}

fn patch(dir: &Path, offset: u64, bytes: &[u8]) {
    let path = dir.join(SEGMENT);
    let mut data = std::fs::read(&path).unwrap();
    for (i, b) in bytes.iter().enumerate() {
        data[offset as usize + i] ^= b;
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn inspect_lists_segments_and_the_control_file() {
    let dir = temp("inspect");
    ten_records(&dir);
    let out = rwal(&["inspect", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(SEGMENT) && shown.contains("1..=10"),
        "{shown}"
    );
    assert!(shown.contains("durable LSN 10"), "{shown}");
    assert!(shown.contains("checkpoint: none"), "{shown}");
    assert!(!shown.contains("is open in process"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Beside a log open in another process (this test's), `inspect` and `verify` name the process
/// and say that what they show may change: an operator reading a torn tail there must not take
/// it for damage.
#[test]
fn inspect_and_verify_name_the_process_that_has_the_log_open() {
    let dir = temp("inspect-open");
    ten_records(&dir);
    let wal = Wal::open(&dir, Options::new().segment_bytes(1 << 20)).unwrap();
    let note = format!("the log is open in process {}", std::process::id());
    for command in ["inspect", "verify"] {
        let out = rwal(&[command, dir.to_str().unwrap()]);
        let shown = text(&out);
        assert!(out.status.success(), "{command}: {shown}");
        assert!(shown.contains(&note), "{command}: {shown}");
    }
    wal.close().unwrap();
    let shown = text(&rwal(&["inspect", dir.to_str().unwrap()]));
    assert!(!shown.contains("is open in process"), "closed: {shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_passes_a_clean_log() {
    let dir = temp("verify-clean");
    ten_records(&dir);
    let before = std::fs::read(dir.join(SEGMENT)).unwrap();
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("10 records checked"), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.join(SEGMENT)).unwrap(),
        before,
        "verify changed nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_names_segment_and_offset_of_a_flipped_byte_and_fails() {
    let dir = temp("verify-flip");
    ten_records(&dir);
    let record_5 = 4096 + 4 * 136;
    patch(&dir, record_5 + 50, &[0x04]);
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("CORRUPTED: {SEGMENT} offset {record_5} LSN 5")),
        "{shown}"
    );
    assert!(shown.contains("checksum"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Damage above the control file's watermark, left stale by a crash, that later records prove
/// acknowledged (their durability claims reach past it): recovery refuses the log, and verify
/// fails naming the record. It called it a torn tail and passed before (2026-12-03).
#[test]
fn verify_fails_damage_that_later_records_prove_acknowledged() {
    let dir = temp("verify-proven");
    let options = Options::new()
        .segment_bytes(1 << 20)
        .background_threads(false);
    let wal = Wal::open(&dir, options).unwrap();
    for i in 0..2u8 {
        wal.append_durable(&[i; 100]).unwrap();
    }
    wal.maintain().unwrap();
    for i in 2..10u8 {
        wal.append_durable(&[i; 100]).unwrap();
    }
    // A crash: the control file's watermark stays at 2.
    std::mem::forget(wal);
    let record_3 = 4096 + 2 * 136;
    patch(&dir, record_3 + 50, &[0x04]);
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("CORRUPTED: {SEGMENT} offset {record_3} LSN 3")),
        "{shown}"
    );
    assert!(shown.contains("REFUSES to open the log"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_reports_a_torn_tail_without_failing() {
    let dir = temp("verify-torn");
    ten_records(&dir);
    let end = 4096 + 10 * 136;
    // Half a record header: what a crash in the middle of a write leaves.
    patch(&dir, end, &[0xab; 20]);
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("torn tail") && shown.contains(&format!("offset {end} LSN 11")),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes past the last record behind an all-zero record header: the walk stops at the zero
/// header, and recovery zero-fills them without an event. Verify passes and says what recovery
/// will zero; it said "opens the log as it is" (found by review on 2026-12-04).
#[test]
fn verify_names_the_bytes_recovery_zero_fills_behind_a_zero_header() {
    let dir = temp("verify-zero-header");
    ten_records(&dir);
    let end = 4096 + 10 * 136;
    patch(&dir, end + 200, &[0xcd; 30]);
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("opens the log after zero-filling") && !shown.contains("as it is"),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a valid control file recovery refuses the log (its watermark, checkpoint and first
/// LSN are lost): verify says so and fails, whatever the segments hold; it changes nothing.
#[test]
fn verify_fails_a_log_whose_control_file_is_destroyed_or_missing() {
    let dir = temp("verify-control");
    ten_records(&dir);
    let control = dir.join("control");
    let size = std::fs::metadata(&control).unwrap().len() as usize;
    let garbage: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&control, &garbage).unwrap();
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("both control copies are damaged"), "{shown}");
    assert_eq!(
        std::fs::read(&control).unwrap(),
        garbage,
        "verify changed nothing"
    );
    let out = rwal(&["inspect", dir.to_str().unwrap()]);
    assert!(text(&out).contains("NO VALID COPY"), "{}", text(&out));
    std::fs::remove_file(&control).unwrap();
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("control") && shown.contains("missing, but segment files exist"),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_and_inspect_refuse_a_directory_without_a_log() {
    let dir = temp("nolog");
    std::fs::create_dir_all(&dir).unwrap();
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no log in"), "{}", text(&out));
    // A path that does not exist is named as such, not as a directory without a log.
    let missing = dir.join("nowhere");
    let out = rwal(&["verify", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !text(&out).contains("no log in") && text(&out).contains("nowhere"),
        "{}",
        text(&out)
    );
    let out = rwal(&["inspect"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flag is not a directory: `inspect --json` looked for a log in `./--json`.
#[test]
fn inspect_and_verify_refuse_flags_they_do_not_have() {
    for (command, flag) in [("inspect", "--json"), ("verify", "--bogus")] {
        let out = rwal(&[command, flag]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(
            shown.contains(&format!("'{flag}'")) && !shown.contains("no log in"),
            "{shown}"
        );
    }
    let out = rwal(&["verify", "--help"]);
    assert!(out.status.success() && text(&out).contains("usage: rwal verify DIR"));
}

#[test]
fn a_short_bench_reports_every_workload_as_json() {
    let dir = temp("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let plot = dir.join("curves.svg");
    let out = rwal(&[
        "bench",
        "--seconds",
        "0.05",
        "--threads",
        "1,2",
        "--size",
        "128",
        "--recovery-mib",
        "4",
        "--segment-bytes",
        "1048576",
        "--json",
        "--dir",
        dir.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for workload in [
        "baseline-pwrite-fdatasync",
        "durable-commit",
        "group-commit",
        "append",
        "append-own-logs",
        "recovery-scan",
    ] {
        assert!(
            shown.contains(&format!("\"workload\":\"{workload}\"")),
            "{workload} missing: {shown}"
        );
    }
    assert!(shown.contains("\"p99_us\":"), "{shown}");
    // The recovery row times a warm open, and reports the first one after the writes apart.
    assert!(shown.contains("\"first_open_mb_s\":"), "{shown}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("durable-commit"),
        "not a plot of the curves"
    );
    // It cleaned up after itself: only the plot is left.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("curves.svg")]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_short_replicated_bench_reports_quorum_and_single_node_commits() {
    let dir = temp("bench-replicated");
    std::fs::create_dir_all(&dir).unwrap();
    let out = rwal(&[
        "bench",
        "--replicated",
        "3",
        "--seconds",
        "0.1",
        "--threads",
        "1,4",
        "--segment-bytes",
        "1048576",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert_eq!(shown.matches("replicated-commit").count(), 2, "{shown}");
    assert!(shown.contains("durable-commit") && shown.contains("group-commit"));
    assert!(
        shown.contains("3-node quorum commit p50, 1 client / single-node durable commit p50 ="),
        "{shown}"
    );
    assert!(
        shown.contains("3-node throughput, 4 clients / single-node group commit x4 ="),
        "{shown}"
    );
    let left = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(left, 0, "the cluster's logs are removed");
    let out = rwal(&["bench", "--replicated", "0"]);
    assert!(text(&out).contains("between 1 and 9"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_rejects_bad_arguments_with_a_clear_message() {
    let out = rwal(&["bench", "--backend", "floppy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("unknown backend \"floppy\""),
        "{}",
        text(&out)
    );
    let out = rwal(&["bench", "--threads", "0"]);
    assert!(
        text(&out).contains("--threads: 0 is outside"),
        "{}",
        text(&out)
    );
    let out = rwal(&["bench", "--segment-bytes", "1000"]);
    assert!(text(&out).contains("--segment-bytes: "), "{}", text(&out));
    // Its bytes (`mib << 20`) wrapped around past 2^44 MiB; 0 measured nothing.
    for mib in ["0", "65537", "17592186044416"] {
        let out = rwal(&["bench", "--recovery-mib", mib]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("--recovery-mib: {mib} is outside 1..=65536")),
            "{}",
            text(&out)
        );
    }
    // Flags a replicated run does not use were ignored.
    for flag in ["--size", "--recovery-mib"] {
        let out = rwal(&["bench", "--replicated", "3", flag, "64"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("{flag} does not apply to --replicated")),
            "{}",
            text(&out)
        );
    }
    // Found before the run, not after it (which threw the run's results away): a directory
    // that does not exist, one that takes no new file (sysfs refuses even root), an existing
    // file that cannot be written (a read-only sysfs attribute).
    for (plot, said) in [
        (
            "/nonexistent-dir/x.svg",
            "/nonexistent-dir is not a directory",
        ),
        (
            "/sys/rwal-plot.svg",
            "--plot /sys/rwal-plot.svg: cannot be written",
        ),
        (
            "/sys/kernel/uevent_seqnum",
            "--plot /sys/kernel/uevent_seqnum: cannot be written",
        ),
    ] {
        let out = rwal(&["bench", "--seconds", "60", "--plot", plot]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(said), "{}", text(&out));
    }
}

/// A directory named as the bench's own (same PID: another container on the same volume, a
/// stale run, or one planted in a shared /tmp) is someone else's: the bench makes another, and
/// leaves that one and its files alone. It used to run in it and remove it at the end.
#[test]
fn a_bench_leaves_a_directory_it_did_not_create_alone() {
    let dir = temp("bench-foreign");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mkdir -p \"$1/rwal-bench-$$\" && echo keep > \"$1/rwal-bench-$$/keep\" && \
             echo $$ > \"$1/pid\" && exec '{}' bench --seconds 0.05 --threads 1 --size 128 \
             --recovery-mib 1 --segment-bytes 1048576 --json --dir \"$1\"",
            env!("CARGO_BIN_EXE_rwal")
        ))
        .arg("sh")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let pid = std::fs::read_to_string(dir.join("pid")).unwrap();
    let foreign = dir.join(format!("rwal-bench-{}", pid.trim()));
    assert_eq!(
        std::fs::read_to_string(foreign.join("keep")).unwrap(),
        "keep\n",
        "the bench removed a directory it did not create"
    );
    // Its own directory is gone: only the foreign one and the pid file are left.
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reader that goes away (`rwal inspect DIR | head`, `rwal bench | head`) ends the command
/// quietly with status 141, as SIGPIPE ends a C tool; `println!` used to panic (status 101). (A socket whose other
/// end is closed fails writes as a closed pipe does.)
#[test]
fn a_closed_standard_output_ends_the_command_without_a_panic() {
    let dir = temp("pipe");
    ten_records(&dir);
    let bench_dir = dir.join("bench");
    std::fs::create_dir_all(&bench_dir).unwrap();
    let bench = [
        "bench",
        "--seconds",
        "0.05",
        "--threads",
        "1",
        "--backend",
        "staged",
        "--segment-bytes",
        "1048576",
        "--dir",
        bench_dir.to_str().unwrap(),
    ];
    for args in [
        vec!["inspect", dir.to_str().unwrap()],
        vec!["--help"],
        bench.to_vec(),
    ] {
        // A child forked meanwhile by another test may hold the read end until it execs, and
        // the short output then fits in the buffer: a few tries.
        let mut codes = Vec::new();
        for _ in 0..3 {
            let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
            drop(reader);
            let out = Command::new(env!("CARGO_BIN_EXE_rwal"))
                .args(&args)
                .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                    writer,
                )))
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            codes.push(out.status.code());
            if out.status.code() == Some(141) {
                break;
            }
        }
        assert_eq!(
            codes.last(),
            Some(&Some(141)),
            "{args:?}: exit codes {codes:?}"
        );
    }
    // The bench removed its logs before it printed.
    assert_eq!(std::fs::read_dir(&bench_dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rwal client` against something that is not a node: an answer it cannot parse fails at
/// once, naming the protocol; silence fails when the timeout ends, saying so.
#[test]
fn the_client_names_a_server_that_does_not_speak_its_protocol() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        // The first connection gets a banner, the second silence until the client leaves.
        let (mut banner, _) = listener.accept().unwrap();
        let _ = banner.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        let (mut silent, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        let _ = silent.read_to_end(&mut sink);
    });
    let started = Instant::now();
    let out = rwal(&["client", "--addr", &addr, "--timeout", "20", "append", "x"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("does not speak the client protocol"),
        "{shown}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a protocol error is not retried until the timeout"
    );
    let out = rwal(&["client", "--addr", &addr, "--timeout", "1", "status"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("no answer from") && shown.contains("in time"),
        "{shown}"
    );
    server.join().unwrap();
    for bad in ["0", "18446744073709551615"] {
        let out = rwal(&["client", "--addr", &addr, "--timeout", bad, "status"]);
        assert!(text(&out).contains("--timeout: "), "{}", text(&out));
        assert!(text(&out).contains("out of range"), "{}", text(&out));
    }
}

/// A start that fails on a busy client port leaves no log behind: with `--init` it used to
/// found the cluster's log (with the members it was given) before it found the port taken.
#[test]
fn a_node_whose_client_port_is_taken_founds_no_log() {
    let dir = temp("busy-client-port");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    write_secret(&secret, "0123456789abcdef0123\n");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let log = dir.join("log");
    let out = rwal(&[
        "node",
        "--id",
        "1",
        "--dir",
        log.to_str().unwrap(),
        "--init",
        "--listen",
        "127.0.0.1:0",
        "--client-listen",
        &busy,
        "--cluster-id",
        "1",
        "--secret-file",
        secret.to_str().unwrap(),
        "--peer",
        "2,127.0.0.1:9,127.0.0.1:10",
    ]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("--client-listen: cannot listen on"),
        "{shown}"
    );
    assert!(
        !log.join("control").exists(),
        "a failed start founded a log: {shown}"
    );
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An interrupted bench (Ctrl-C) removes its logs and exits 130; they used to stay behind.
#[test]
fn an_interrupted_bench_removes_its_logs() {
    interrupted_bench_removes_its_logs("INT", 130);
}

/// A bench whose terminal closes (SIGHUP) removes its logs and exits 129; until 2026-12-07
/// SIGHUP's default action killed it and they stayed behind.
#[test]
fn a_bench_whose_terminal_closes_removes_its_logs() {
    interrupted_bench_removes_its_logs("HUP", 129);
}

fn interrupted_bench_removes_its_logs(signal: &str, exit_code: i32) {
    interrupted_bench_removes_its_logs_after(signal, exit_code, "--default-signal=HUP", |_| {});
}

/// A bench started ignoring SIGHUP (`nohup rwal bench ...`) runs on when its terminal closes:
/// the handler that removes the logs at a hang-up must not replace what it was started with.
/// SIGINT still stops it, logs removed.
#[test]
fn a_bench_started_under_nohup_runs_on_after_a_hang_up() {
    interrupted_bench_removes_its_logs_after("INT", 130, "--ignore-signal=HUP", |bench| {
        signal(bench, "HUP");
        std::thread::sleep(std::time::Duration::from_secs(1));
        assert!(
            bench.try_wait().unwrap().is_none(),
            "the bench stopped at a hang-up it was started to ignore"
        );
    });
}

fn signal(process: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &process.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Starts a bench through `env {hup} rwal bench ...` (`--default-signal=HUP` or
/// `--ignore-signal=HUP`: the test's own disposition is whatever started it, `nohup`
/// included), waits until it has written a log, runs `meanwhile`, sends `signal` and checks
/// that the bench exits with `exit_code` and removes its logs.
fn interrupted_bench_removes_its_logs_after(
    signal_name: &str,
    exit_code: i32,
    hup: &str,
    meanwhile: impl FnOnce(&mut std::process::Child),
) {
    use std::time::{Duration, Instant};
    let label = hup.trim_start_matches("--").trim_end_matches("-signal=HUP");
    let dir = temp(&format!("bench-interrupted-{signal_name}-{label}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bench = Command::new("env")
        .arg(hup)
        // SIGINT and SIGTERM as a terminal gives them, whatever this test was started with (a
        // background job of a non-interactive shell ignores SIGINT).
        .arg("--default-signal=INT,TERM")
        .arg(env!("CARGO_BIN_EXE_rwal"))
        .args([
            "bench",
            "--seconds",
            "20",
            "--threads",
            "1",
            "--segment-bytes",
            "1048576",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `env` execs the bench: the same process.
    let logs = dir.join(format!("rwal-bench-{}", bench.id()));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Running, with a log in its directory.
    while std::fs::read_dir(&logs).map_or(0, |entries| entries.count()) == 0 {
        if Instant::now() > deadline {
            let _ = bench.kill();
            panic!("the bench never wrote a log");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    meanwhile(&mut bench);
    signal(&bench, signal_name);
    let status = exit_status_by(
        &mut bench,
        deadline + Duration::from_secs(5),
        &format!("the bench did not stop after SIG{signal_name}"),
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut bench.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(exit_code), "{stderr}");
    assert!(stderr.contains("interrupted; removed"), "{stderr}");
    assert!(!logs.exists(), "the bench's logs are left: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `verify` whose output cannot be written (standard output on a full device) exits 2, not
/// the 1 that says the log is corrupted (it did until 2026-12-07).
#[test]
fn verify_with_an_unwritable_output_exits_2_not_1() {
    let dir = temp("verify-full-stdout");
    ten_records(&dir);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rwal"))
        .args(["verify", dir.to_str().unwrap()])
        .stdout(full)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot write the output"), "{said}");
    // The same log verifies clean where its output can be written.
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A segment cut short (a copy that stopped half way) fails verify, which says so.
#[test]
fn verify_says_a_segment_was_cut_short() {
    let dir = temp("verify-cut");
    ten_records(&dir);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(SEGMENT))
        .unwrap();
    file.set_len(4400).unwrap();
    drop(file);
    let out = rwal(&["verify", dir.to_str().unwrap()]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("header says 1048576 bytes, file has 4400 (cut short)"),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The lines a child writes on its piped stderr, read on a thread of their own: a test waits
/// for them with a deadline, never on a read.
/// The client address a starting node's stderr `lines` announce ("serving clients on ADDR"),
/// within 30 s, and the lines up to it.
fn client_address(lines: &std::sync::mpsc::Receiver<String>) -> (std::net::SocketAddr, String) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = String::new();
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("the node never served ({e}): {shown}"));
        shown.push_str(&line);
        shown.push('\n');
        if let Some(rest) = line.split("serving clients on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            return (addr.trim_end_matches(',').parse().unwrap(), shown);
        }
    }
}

fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let (sent, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sent.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Starts `rwal node` with `args` (a single voter), waits until it serves clients and leads,
/// stops it with SIGTERM, and returns what it wrote on stderr. A node that does neither within
/// 30 s is killed and the test fails.
fn node_run(args: &[&str]) -> String {
    use std::time::{Duration, Instant};
    let mut node = Command::new(env!("CARGO_BIN_EXE_rwal"))
        .arg("node")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut node);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = String::new();
    let next_line = |shown: &mut String, node: &mut std::process::Child| {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                shown.push_str(&line);
                shown.push('\n');
                Some(line)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = node.kill();
                panic!("the node neither served nor stopped in time: {shown}");
            }
        }
    };
    // Leading, its stop is a leader's (which hands leadership over when there is a voter to
    // hand it to).
    let ready =
        |shown: &str| shown.contains("serving clients") && shown.contains("leader is node 1");
    while next_line(&mut shown, &mut node).is_some() {
        if ready(&shown) {
            break;
        }
    }
    assert!(ready(&shown), "the node never served as leader: {shown}");
    let stopped = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    while next_line(&mut shown, &mut node).is_some() {}
    assert!(node.wait().unwrap().success(), "{shown}");
    shown
}

/// A node whose standard error can no longer be written (its log reader died, the disk under
/// its log file filled) goes on serving and stops cleanly: the lines are lost, not the
/// process. Before, the first line after that panicked where it was written: SIGTERM's
/// "stopping" line ended the node with status 101 before it closed its log.
#[test]
fn a_node_whose_standard_error_is_gone_serves_and_stops_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let dir = temp("stderr-gone");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    write_secret(&secret, "0123456789abcdef0123\n");
    let mut node = Command::new(env!("CARGO_BIN_EXE_rwal"))
        .args(["node", "--init", "--id", "1", "--cluster-id", "1"])
        .args(["--listen", "127.0.0.1:0", "--client-listen", "127.0.0.1:0"])
        .arg("--dir")
        .arg(dir.join("log"))
        .arg("--secret-file")
        .arg(&secret)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read until it serves and leads, then the pipe's read end is closed: the node's next line
    // fails with EPIPE.
    let stderr = node.stderr.take().unwrap();
    let (sent, shown) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut shown = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            shown.push_str(&line);
            shown.push('\n');
            if shown.contains("serving clients") && shown.contains("leader is node 1") {
                break;
            }
        }
        let _ = sent.send(shown);
    });
    let shown = shown
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            let _ = node.kill();
            panic!("the node did not serve as leader in time");
        });
    assert!(shown.contains("leader is node 1"), "{shown}");
    let addr = shown
        .split("serving clients on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_end_matches(',')
        .to_string();
    let out = rwal(&["client", "--addr", &addr, "--timeout", "20", "append", "x"]);
    assert!(out.status.success(), "{}", text(&out));
    let stopped = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = exit_status_by(
        &mut node,
        deadline,
        "the node did not stop within 30 s of SIGTERM",
    );
    assert!(status.success(), "{status:?}");
    // Its log was closed cleanly: it opens, and holds the append.
    let out = rwal(&["verify", dir.join("log").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member restarted with another --peer list runs with its log's membership, and says so.
#[test]
fn a_restart_whose_peers_differ_from_the_logs_members_is_warned_about() {
    let dir = temp("peers-differ");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    write_secret(&secret, "0123456789abcdef0123\n");
    let log = dir.join("log");
    let base = [
        "--id",
        "1",
        "--dir",
        log.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--client-listen",
        "127.0.0.1:0",
        "--cluster-id",
        "1",
        "--secret-file",
        secret.to_str().unwrap(),
    ];
    let first = node_run(&[&base[..], &["--init"]].concat());
    assert!(!first.contains("warning: the log's voters"), "{first}");
    // A single voter has nobody to hand leadership to: it used to try, and log its failure.
    assert!(!first.contains("did not hand leadership over"), "{first}");
    let same = node_run(&base);
    assert!(!same.contains("warning: the log's voters"), "{same}");
    let other = node_run(&[&base[..], &["--peer", "2,127.0.0.1:9,127.0.0.1:10"]].concat());
    assert!(
        other.contains("warning: the log's voters are [1], this node and --peer name [1, 2]"),
        "{other}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one client-protocol message on `stream` and reads the answer: (status, body).
fn exchange(
    stream: &mut std::net::TcpStream,
    op: u8,
    body: &[u8],
) -> std::io::Result<(u8, Vec<u8>)> {
    use std::io::Write;
    let mut message = ((body.len() + 1) as u32).to_le_bytes().to_vec();
    message.push(op);
    message.extend_from_slice(body);
    stream.write_all(&message)?;
    read_answer(stream)
}

fn read_answer(stream: &mut std::net::TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    use std::io::Read;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut answer = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut answer)?;
    let status = answer.remove(0);
    Ok((status, answer))
}

/// Under a low open-files limit, client connections stop being served before they take the
/// descriptors the log needs: the next one is answered RETRY naming the shortage, and the node
/// goes on serving the connections it has (it used to take three descriptors per connection
/// and none aside: at the common limit of 1024, a few hundred connections left the log unable
/// to create its next segment, and the node stopped).
#[test]
fn client_connections_leave_the_logs_file_descriptors_alone() {
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let dir = temp("descriptors");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    write_secret(&secret, "0123456789abcdef0123\n");
    let log = dir.join("log");
    let command = format!(
        "ulimit -n 256 && exec '{}' node --init --id 1 --dir '{}' --listen 127.0.0.1:0 \
         --client-listen 127.0.0.1:0 --cluster-id 1 --secret-file '{}'",
        env!("CARGO_BIN_EXE_rwal"),
        log.display(),
        secret.display()
    );
    let mut node = Command::new("sh")
        .args(["-c", &command])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let lines = stderr_lines(&mut node);
    let mut node = Kill(node);
    let (addr, mut shown) = client_address(&lines);
    // Served connections, each proven served by a STATUS answered OK, until one is not.
    let mut served = Vec::new();
    let refusal = loop {
        assert!(
            served.len() < 256,
            "{} connections served under a limit of 256 descriptors",
            served.len()
        );
        let mut stream = TcpStream::connect(addr).unwrap();
        // A refused connection is answered at once, before any request: look for that first
        // (a request sent to a connection the node closed may reset it, answer unread).
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(answer) = read_answer(&mut stream) {
            break Some(answer);
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        match exchange(&mut stream, 3, &[]) {
            Ok((0, _)) => served.push(stream),
            Ok(answer) => break Some(answer),
            Err(_) => break None,
        }
    };
    let (status, body) = refusal.unwrap_or_else(|| {
        // The request sent on a refused connection reset it before its answer was read: the
        // next one, at the same limit, is refused too, and read before anything is sent.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        read_answer(&mut stream).expect("a refused connection is answered")
    });
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 3, "RETRY expected: {body}");
    assert!(body.contains("short of file descriptors"), "{body}");
    assert!(
        served.len() >= 10,
        "only {} connections served",
        served.len()
    );
    // The node goes on: an append on a connection it serves commits.
    let mut append = 7u64.to_le_bytes().to_vec();
    append.extend_from_slice(&1u64.to_le_bytes());
    append.extend_from_slice(b"still writing");
    let (status, body) = exchange(&mut served[0], 1, &append).unwrap();
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&body));
    drop(served);
    let stopped = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let stopped_by = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = lines.recv_timeout(stopped_by.saturating_duration_since(Instant::now())) {
        shown.push_str(&line);
        shown.push('\n');
    }
    let exit = loop {
        if let Some(exit) = node.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < stopped_by,
            "the node did not stop: {shown}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{shown}");
    // Said at start, before any client came.
    assert!(
        shown.contains("warning: the open-files limit (256) leaves room for"),
        "{shown}"
    );
    assert!(
        shown.contains("refused a client connection: the node is short of file descriptors"),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The name of a `ServingNode`'s log directory: not UTF-8, and so made another (`log` and
/// U+FFFD) before 2026-12.
fn log_name() -> &'static std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b"log\xff")
}

/// A node serving clients, killed when dropped.
struct ServingNode {
    child: std::process::Child,
    addr: String,
    /// Its peer port's address.
    peer_addr: String,
    dir: PathBuf,
    /// Its stderr's lines, kept: with nobody reading the pipe, the node's lines would be lost.
    lines: std::sync::mpsc::Receiver<String>,
}

impl ServingNode {
    /// A single-voter node founded in a directory of its own, once it serves clients. Its log
    /// is in `log_name()`, a name that is not UTF-8.
    fn start(label: &str) -> ServingNode {
        let dir = temp(label);
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        write_secret(&secret, "0123456789abcdef0123\n");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rwal"))
            .args(["node", "--init", "--id", "1", "--cluster-id", "1"])
            .args(["--listen", "127.0.0.1:0", "--client-listen", "127.0.0.1:0"])
            .arg("--dir")
            .arg(dir.join(log_name()))
            .arg("--secret-file")
            .arg(&secret)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = stderr_lines(&mut child);
        let (addr, shown) = client_address(&lines);
        let peer_addr = shown
            .split("peers on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no peer address announced: {shown}"))
            .to_string();
        ServingNode {
            child,
            addr: addr.to_string(),
            peer_addr,
            dir,
            lines,
        }
    }

    /// Waits up to 30 s for a line of the node's stderr that contains `text`.
    fn wait_line(&self, text: &str) -> String {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut shown = String::new();
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("no line with {text:?} ({e}): {shown}"));
            if line.contains(text) {
                return line;
            }
            shown.push_str(&line);
            shown.push('\n');
        }
    }

    /// `rwal client --addr` this node, with `args`.
    fn client<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rwal"))
            .args(["client", "--addr", &self.addr, "--timeout", "20"])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for ServingNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The records a stale READ from LSN 0 returns: (LSN, data).
fn read_records(addr: &str) -> Vec<(u64, Vec<u8>)> {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut request = 0u64.to_le_bytes().to_vec();
    request.extend_from_slice(&100u32.to_le_bytes());
    request.push(0);
    let (status, body) = exchange(&mut stream, 2, &request).unwrap();
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&body));
    let count = u32::from_le_bytes(body[..4].try_into().unwrap());
    let mut at = 4;
    let mut records = Vec::new();
    for _ in 0..count {
        let lsn = u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        let len = u32::from_le_bytes(body[at + 16..at + 20].try_into().unwrap()) as usize;
        records.push((lsn, body[at + 20..at + 20 + len].to_vec()));
        at += 20 + len;
    }
    records
}

/// `rwal client append DATA` appends DATA's bytes as given: it made them UTF-8 first, and a
/// byte 0xff became U+FFFD in the record it acknowledged.
#[test]
fn the_client_appends_the_bytes_it_is_given() {
    use std::os::unix::ffi::OsStrExt;
    let node = ServingNode::start("client-bytes");
    let data = b"a\xffb";
    let out = node.client(&[
        std::ffi::OsStr::new("append"),
        std::ffi::OsStr::from_bytes(data),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let records = read_records(&node.addr);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].1, data, "the record is not the bytes given");
    // The node's --dir, not UTF-8, is the directory its log is in.
    assert!(node.dir.join(log_name()).join("control").exists());
}

/// An append whose answer cannot be printed (standard output on a full device) was still
/// made: the client exits 3 with the ids that send it again without writing it twice. It
/// exited 1 (141 on a closed pipe), which a script could take for "not made" and send the
/// record again under new ids.
#[test]
fn an_append_made_whose_answer_cannot_be_printed_exits_3_with_its_ids() {
    let node = ServingNode::start("client-full-stdout");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rwal"))
        .args([
            "client",
            "--addr",
            &node.addr,
            "--timeout",
            "20",
            "append",
            "once",
        ])
        .stdout(full)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("the append was made at LSN"), "{said}");
    let ids: Vec<&str> = said
        .split_whitespace()
        .skip_while(|w| *w != "--client-id")
        .take(4)
        .collect();
    assert_eq!(ids.len(), 4, "{said}");
    let again = node.client(&[
        "append",
        ids[0],
        ids[1],
        ids[2],
        ids[3].trim_end_matches(|c: char| !c.is_ascii_digit()),
        "once",
    ]);
    assert!(again.status.success(), "{}", text(&again));
    let records = read_records(&node.addr);
    assert_eq!(records.len(), 1, "written twice: {records:?}");
    let printed = String::from_utf8(again.stdout).unwrap();
    assert!(
        said.contains(&format!("LSN {}, epoch", records[0].0)),
        "{said} / {printed}"
    );
    assert!(
        printed.starts_with(&format!("{} ", records[0].0)),
        "{printed}"
    );
}

/// `rwal client read` prints each record on one line, escaped: a record holding a newline
/// forged a line of its own, and terminal escapes reached the terminal.
#[test]
fn the_client_prints_each_record_on_one_line() {
    let node = ServingNode::start("client-lines");
    for data in ["real\n99 9 forged", "bell\x07 and \x1b[2J"] {
        let out = node.client(&["append", data]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = node.client(&["read"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed:?}");
    assert!(lines[0].ends_with(r" real\n99 9 forged"), "{printed:?}");
    assert!(lines[1].ends_with(r" bell\x07 and \x1b[2J"), "{printed:?}");
}

/// SIGHUP ended a node (its default action: a node started from a terminal that closed); it
/// now re-reads the config file, and a node started without one says so and serves on.
#[test]
fn a_node_started_with_flags_only_survives_a_sighup() {
    let mut node = ServingNode::start("sighup");
    let out = node.client(&["append", "before"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = Command::new("kill")
        .args(["-HUP", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    node.wait_line("there is no file to re-read; nothing changed");
    assert!(node.child.try_wait().unwrap().is_none(), "the node exited");
    let out = node.client(&["append", "after"]);
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<Vec<u8>> = read_records(&node.addr).into_iter().map(|r| r.1).collect();
    assert_eq!(records, [b"before".to_vec(), b"after".to_vec()]);
}

/// An append that never reached a node was not sent by this run, and the client says so: it
/// used to say the append "may or may not be in the log", as if this run may have sent it.
#[test]
fn an_append_that_never_reached_a_node_is_said_not_to_be_in_the_log() {
    let out = rwal(&[
        "client",
        "--addr",
        "127.0.0.1:1",
        "--timeout",
        "1",
        "append",
        "x",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(!shown.contains("may or may not be in the log"), "{shown}");
    assert!(
        shown.contains("this run did not send the append"),
        "{shown}"
    );
}

/// An append given up on after it reached a node may be in the log: the client says so, names
/// the ids to send it again with, and exits 3, where every other failure exits 2 (a script
/// could not tell the two apart before). The "node" here reads each request and closes.
#[test]
fn an_append_given_up_on_after_it_reached_a_node_exits_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while let Ok((mut stream, _)) = listener.accept() {
                if stop.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                let mut request = [0u8; 64];
                let _ = std::io::Read::read(&mut stream, &mut request);
            }
        })
    };
    let out = rwal(&[
        "client",
        "--addr",
        &addr,
        "--timeout",
        "1",
        "append",
        "--client-id",
        "7",
        "--request-id",
        "9",
        "x",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(shown.contains("may or may not be in the log"), "{shown}");
    assert!(shown.contains("--client-id 7 --request-id 9"), "{shown}");
    stop.store(true, std::sync::atomic::Ordering::Release);
    drop(std::net::TcpStream::connect(&addr).unwrap());
    server.join().unwrap();
}

/// A command refuses the words and flags it does not use, naming them, before it connects:
/// `read 3` read from the oldest record, `status extra` succeeded, `append --count 2 x`
/// appended once.
#[test]
fn the_client_refuses_words_and_flags_a_command_does_not_use() {
    let base = ["client", "--addr", "127.0.0.1:1", "--timeout", "1"];
    for (args, named) in [
        (&["read", "3"][..], "\"3\""),
        (&["status", "extra"][..], "\"extra\""),
        (&["append", "--count", "2", "x"][..], "--count"),
        (&["read", "--client-id", "5"][..], "--client-id"),
        (&["load", "x"][..], "\"x\""),
    ] {
        let out = rwal(&[&base[..], args].concat());
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {shown}");
        assert!(shown.contains(named), "{args:?}: {shown}");
        assert!(!shown.contains("cannot connect"), "{args:?}: {shown}");
    }
}

/// --init founds a log only in an empty or new directory: one holding the user's files and no
/// log got a log founded beside them (a mistyped --dir).
#[test]
fn a_node_founds_no_log_beside_other_files() {
    use std::time::{Duration, Instant};
    let dir = temp("init-not-empty");
    let log = dir.join("log");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("notes.txt"), "mine\n").unwrap();
    let secret = dir.join("secret");
    write_secret(&secret, "0123456789abcdef0123\n");
    let mut node = Command::new(env!("CARGO_BIN_EXE_rwal"))
        .args(["node", "--init", "--id", "1", "--cluster-id", "1"])
        .args(["--listen", "127.0.0.1:0", "--client-listen", "127.0.0.1:0"])
        .arg("--dir")
        .arg(&log)
        .arg("--secret-file")
        .arg(&secret)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The old code founded the log and served: it is stopped after a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if node.try_wait().unwrap().is_none() {
        let _ = node.kill();
    }
    let out = node.wait_with_output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!("--dir {}: not empty and not a log", log.display())),
        "{shown}"
    );
    assert!(!log.join("control").exists(), "a log was founded: {shown}");
    assert_eq!(
        std::fs::read_to_string(log.join("notes.txt")).unwrap(),
        "mine\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A peer port and a client port taken for one another are named at once: `rwal client` at a
/// peer port waited for the handshake's deadline, saw the connection closed, and retried until
/// its own timeout ended; a peer dialing a client port was logged as "a message of 1279350610
/// bytes".
#[test]
fn a_peer_port_and_a_client_port_taken_for_one_another_are_named() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let node = ServingNode::start("ports-confused");
    // A status request, and an append larger than the acceptor reads before it refuses (the
    // connection is then closed with bytes unread: a reset, which may meet the client's write
    // before its read).
    let large = "x".repeat(120 << 10);
    for request in [&["status"][..], &["append", &large][..]] {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_rwal"))
            .args(["client", "--addr", &node.peer_addr, "--timeout", "20"])
            .args(request)
            .output()
            .unwrap();
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(
            shown.contains(&format!("{} is an rwal node's peer port", node.peer_addr)),
            "{shown}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a protocol error is not retried until the timeout: {shown}"
        );
        node.wait_line("not the rwal peer protocol (bad magic: its first bytes were ");
    }

    let mut hello = b"RWALPEER".to_vec();
    hello.resize(56, 0);
    let mut dialer = std::net::TcpStream::connect(&node.addr).unwrap();
    dialer.write_all(&hello).unwrap();
    dialer
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = dialer.read_to_end(&mut rest); // closed by the node
    let line = node.wait_line("closed the connection of client");
    assert!(line.contains("speaks the rwal peer protocol"), "{line}");
}
