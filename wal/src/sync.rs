//! The synchronization primitives of the reservation and group-commit code, behind a shim so
//! that loom can model-check that very code (`RUSTFLAGS="--cfg loom"`): loom cannot see
//! `parking_lot`, so under `cfg(loom)` these are loom's types with the same interface.

#[cfg(not(loom))]
mod imp {
    use std::time::Duration;

    pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    pub use std::thread::{current, park, Thread};

    /// A mutex (parking_lot's).
    #[derive(Debug, Default)]
    pub struct Mutex<T>(parking_lot::Mutex<T>);
    pub type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Mutex<T> {
            Mutex(parking_lot::Mutex::new(value))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    /// A condition variable (parking_lot's).
    #[derive(Debug, Default)]
    pub struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub fn new() -> Condvar {
            Condvar(parking_lot::Condvar::new())
        }
        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            self.0.wait(guard);
        }
        /// Waits at most `timeout`; true if it timed out.
        pub fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, timeout: Duration) -> bool {
            self.0.wait_for(guard, timeout).timed_out()
        }
        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    pub fn sleep(duration: Duration) {
        std::thread::sleep(duration);
    }

    pub fn yield_now() {
        std::thread::yield_now();
    }

    /// Time since `since`.
    pub fn elapsed(since: std::time::Instant) -> Duration {
        since.elapsed()
    }
}

#[cfg(loom)]
mod imp {
    use std::ops::{Deref, DerefMut};
    use std::time::Duration;

    pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    pub use loom::thread::{current, park, Thread};

    #[derive(Debug, Default)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    pub struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present")
        }
    }

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().expect("loom mutex poisoned")))
        }
    }

    #[derive(Debug, Default)]
    pub struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub fn new() -> Condvar {
            Condvar(loom::sync::Condvar::new())
        }
        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard present");
            guard.0 = Some(self.0.wait(inner).expect("loom condvar"));
        }
        /// Loom has no clock: a timed wait is modelled as a wait that may also end spuriously.
        pub fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: Duration) -> bool {
            self.wait(guard);
            false
        }
        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    pub fn sleep(_duration: Duration) {
        loom::thread::yield_now();
    }

    pub fn yield_now() {
        loom::thread::yield_now();
    }

    /// Loom has no clock, and a model must not depend on the real one: no time passes. (So a
    /// sync "takes" no time and a leader gathers nobody: the gathering only delays a leader,
    /// holding no lock and changing no state, so the models lose nothing by skipping it.)
    pub fn elapsed(_since: std::time::Instant) -> Duration {
        Duration::ZERO
    }
}

pub(crate) use imp::*;
