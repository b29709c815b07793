//! Signals delivered to a thread in the middle of a durable append: engines run in processes
//! with signal handlers (Python's, a database's own), and a handler installed without
//! `SA_RESTART` makes blocking calls return `EINTR`. Its own test binary, because the handler is
//! process-wide.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use rwal_tests::{payload, targets};
use rwal_wal::Wal;

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Installs `count_signal` for `SIGUSR1`, without `SA_RESTART`.
fn install_handler() {
    // SAFETY: a zeroed sigaction is a valid starting point; the handler only touches an atomic,
    // which is async-signal-safe; no other code in this binary handles SIGUSR1.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as *const () as libc::sighandler_t;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn durable_appends_go_on_while_signals_interrupt_the_writer() {
    install_handler();
    for t in targets("signals") {
        if t.name == "sim" {
            continue; // no system calls to interrupt
        }
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        let before = HANDLED.load(Ordering::Relaxed);
        let done = AtomicBool::new(false);
        let (at_start, appended) = std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let wal = &wal;
            let done = &done;
            let writer = s.spawn(move || {
                // Set however the writer ends, a failed assertion too: the sender stops then.
                struct Done<'a>(&'a AtomicBool);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::Release);
                    }
                }
                let _done = Done(done);
                // SAFETY: pthread_self has no preconditions.
                tx.send(unsafe { libc::pthread_self() }).unwrap();
                // The appends start once a signal has reached this thread, and go on past 300
                // until another came while they ran: on a fast disk they could all end before
                // a loaded machine runs the sending thread again. (Bounded, and no panic while
                // waiting: the assertions after the writer ends say if no signal came.)
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while HANDLED.load(Ordering::Relaxed) == before
                    && std::time::Instant::now() < deadline
                {
                    std::thread::yield_now();
                }
                let at_start = HANDLED.load(Ordering::Relaxed);
                let mut appended = 0u64;
                while appended < 300
                    || (HANDLED.load(Ordering::Relaxed) == at_start && appended < 100_000)
                {
                    let lsn = wal.append_durable(&payload(appended, 700))?;
                    assert_eq!(lsn, appended + 1);
                    appended += 1;
                }
                Ok::<_, rwal_wal::Error>((at_start, appended))
            });
            let thread = rx.recv().unwrap();
            while !done.load(Ordering::Acquire) {
                // SAFETY: the writer thread is alive until `done` is set, and it is set before
                // the thread ends; the signal has a handler.
                assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
                std::thread::yield_now();
            }
            writer
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e}", t.name))
        });
        assert!(
            at_start > before && HANDLED.load(Ordering::Relaxed) > at_start,
            "{}: no signal reached the writer while it appended",
            t.name
        );
        wal.close().unwrap();
        let wal = Wal::open(&t.dir, t.options()).unwrap();
        assert_eq!(wal.last_lsn(), appended, "{}", t.name);
        for i in [0, appended / 2, appended - 1] {
            assert_eq!(wal.read(i + 1).unwrap(), payload(i, 700), "{}", t.name);
        }
    }
}
