//! Under a sandbox whose system-call filter refuses `fallocate` (seccomp answering `EPERM` or
//! `ENOSYS`, as container runtimes' profiles may), a log asked for
//! [`Preallocation::Fallocate`] zero-fills its segments instead: it opens, rolls and reopens.
//! Until 2026-12-07 only `EOPNOTSUPP` fell back, and under such a filter no segment could be
//! created (found by review).
//!
//! The filter is installed on threads of the test's own (a seccomp filter binds the thread
//! that installs it and the threads it starts, here the log's background thread), which end
//! before the test does. Between a close and a reopen, the test punches a hole into the
//! active segment outside the filter: the reopen's attempt to allocate it is refused too, and
//! the file is mapped as it is.

use std::os::fd::AsRawFd;
use std::path::Path;

use rwal_tests::{payload, segment_paths, TempDir};
use rwal_wal::{Backend, Options, Preallocation, Wal};

/// Makes `fallocate` fail with `errno` on this thread and the threads it starts.
fn refuse_fallocate(errno: u32) {
    let filter = [
        // The system call's number (`seccomp_data.nr`, at offset 0).
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_fallocate as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | errno,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with integer arguments; then with a pointer to a filter program that lives
    // through the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        );
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }
}

/// Runs `work` on a thread of its own under a filter refusing `fallocate` with `errno`.
fn filtered(errno: i32, work: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        refuse_fallocate(errno as u32);
        work()
    })
    .join()
    .unwrap_or_else(|_| panic!("with fallocate refused with errno {errno}"));
}

const RECORDS: u64 = 2500;

fn options() -> Options {
    Options::new()
        .backend(Backend::Mmap)
        .preallocation(Preallocation::Fallocate)
        .segment_bytes(1 << 20)
}

#[test]
fn a_filtered_fallocate_falls_back_to_zero_fill() {
    for errno in [libc::EPERM, libc::ENOSYS] {
        let temp = TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), "fallocate-filtered");
        let dir = temp.path().to_path_buf();
        let log = dir.join("log");
        let written = log.clone();
        filtered(errno, move || {
            // The filter holds: fallocate itself is refused with `errno`.
            let probe = std::fs::File::create(dir.join("probe")).unwrap();
            // SAFETY: fallocate on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::fallocate(probe.as_raw_fd(), 0, 0, 4096) };
            assert_eq!(rc, -1);
            assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(errno));
            let wal = Wal::open(&written, options()).expect("the log opens under the filter");
            // Almost three segments' worth: rolls create segments under the filter too.
            let mut last = 0;
            for n in 0..RECORDS {
                last = wal.append(&payload(n, 1000)).unwrap();
            }
            wal.commit(last).unwrap();
            wal.close().unwrap();
        });
        // Outside the filter: a hole past the records of the active segment (the last one;
        // the close removed those prepared ahead), as a sparse copy leaves, so that the reopen
        // meets a file with holes and tries to allocate them, under the filter.
        let active = segment_paths(&log).pop().expect("a segment");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&active)
            .unwrap();
        let (from, len) = (768 << 10, 256 << 10);
        // SAFETY: fallocate on a descriptor we own; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                from,
                len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        drop(file);
        filtered(errno, move || {
            let wal = Wal::open(&log, options()).expect("the log reopens under the filter");
            assert_eq!(wal.last_lsn(), RECORDS);
            let mut reader = wal.reader(1).unwrap();
            for n in 0..RECORDS {
                let record = reader.next().unwrap().expect("every record");
                assert_eq!(record.data, &payload(n, 1000)[..], "errno {errno}");
            }
            // And it takes appends, into the file mapped with its hole.
            let lsn = wal.append_durable(b"after the reopen").unwrap();
            assert_eq!(lsn, RECORDS + 1);
        });
    }
}
