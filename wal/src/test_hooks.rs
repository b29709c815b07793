//! Points in the code where a test runs a closure of its own, on the thread that reaches them:
//! a deterministic way to put another operation into a window that real threads hit only now
//! and then (a compaction between a truncation's checks and its epoch read, for instance).
//! Compiled into tests only.

use std::cell::RefCell;

use crate::wal::Inner;

type Hook = Box<dyn FnOnce(Option<&Inner>)>;

thread_local! {
    /// Run once each, on this thread, when it reaches the point they name.
    static HOOKS: RefCell<Vec<(&'static str, Hook)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `hook` the next time this thread reaches `point` (a [`hook`] call naming it).
pub(crate) fn at(point: &'static str, hook: impl FnOnce(&Inner) + 'static) {
    let hook = move |inner: Option<&Inner>| hook(inner.expect("a point in the log's code"));
    HOOKS.with(|hooks| hooks.borrow_mut().push((point, Box::new(hook))));
}

/// Runs `hook` the next time this thread reaches `point` (a [`hook_outside`] call naming it).
pub(crate) fn at_outside(point: &'static str, hook: impl FnOnce() + 'static) {
    let hook = move |_: Option<&Inner>| hook();
    HOOKS.with(|hooks| hooks.borrow_mut().push((point, Box::new(hook))));
}

/// A point of the log's code named `point`: runs the hook set for it on this thread, if any.
pub(crate) fn hook(point: &'static str, inner: &Inner) {
    run(point, Some(inner));
}

/// A point named `point` outside an open log (the inspection of a directory).
pub(crate) fn hook_outside(point: &'static str) {
    run(point, None);
}

fn run(point: &'static str, inner: Option<&Inner>) {
    let hook = HOOKS.with(|hooks| {
        let mut hooks = hooks.borrow_mut();
        let found = hooks.iter().position(|(at, _)| *at == point)?;
        Some(hooks.remove(found).1)
    });
    if let Some(hook) = hook {
        hook(inner);
    }
}
