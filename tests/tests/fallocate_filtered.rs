//! Under a sandbox whose system-call filter refuses `fallocate` (seccomp answering `EPERM` or
//! `ENOSYS`, as container runtimes' profiles may), a log asked for
//! [`Preallocation::Fallocate`] zero-fills its segments instead: it opens, rolls and reopens.
//! Until 2026-12-07 only `EOPNOTSUPP` fell back, and under such a filter no segment could be
//! created (found by review).
//!
//! The filter is installed on a thread of the test's own (a seccomp filter binds the thread
//! that installs it and the threads it starts, here the log's background thread), and that
//! thread ends with the test.

use std::os::fd::AsRawFd;
use std::path::Path;

use rwal_tests::{payload, TempDir};
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

#[test]
fn a_filtered_fallocate_falls_back_to_zero_fill() {
    for errno in [libc::EPERM, libc::ENOSYS] {
        let temp = TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), "fallocate-filtered");
        let dir = temp.path().to_path_buf();
        std::thread::spawn(move || {
            refuse_fallocate(errno as u32);
            // The filter holds: fallocate itself is refused with `errno`.
            let probe = std::fs::File::create(dir.join("probe")).unwrap();
            // SAFETY: fallocate on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::fallocate(probe.as_raw_fd(), 0, 0, 4096) };
            assert_eq!(rc, -1);
            assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(errno));
            let options = || {
                Options::new()
                    .backend(Backend::Mmap)
                    .preallocation(Preallocation::Fallocate)
                    .segment_bytes(1 << 20)
            };
            let log = dir.join("log");
            let wal = Wal::open(&log, options()).expect("the log opens under the filter");
            // Three segments' worth: rolls create segments under the filter too.
            let mut last = 0;
            for n in 0..3000 {
                last = wal.append(&payload(n, 1000)).unwrap();
            }
            wal.commit(last).unwrap();
            wal.close().unwrap();
            let wal = Wal::open(&log, options()).expect("the log reopens under the filter");
            assert_eq!(wal.last_lsn(), 3000);
            let mut reader = wal.reader(1).unwrap();
            for n in 0..3000u64 {
                let record = reader.next().unwrap().expect("every record");
                assert_eq!(record.data, &payload(n, 1000)[..], "errno {errno}");
            }
        })
        .join()
        .unwrap_or_else(|_| panic!("with fallocate refused with errno {errno}"));
    }
}
