//! A bound on the log lines that clients can cause.
//!
//! Every malformed, cut or slow client connection is worth a line, and the client port is
//! unauthenticated: a loop of garbage connections would otherwise write lines as fast as it
//! connects, and fill the disk that the node's stderr goes to. The acceptor's refusals are
//! bounded the same way, and the peer port bounds its own (`docs/network.md` section 1.1).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most `per_window` lines in each window of `window`; the count of the lines held back goes
/// with the next line written.
#[derive(Debug)]
pub struct LineLimit {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    started: Option<Instant>,
    written: u32,
    held_back: u64,
}

impl LineLimit {
    /// At most `per_window` lines each `window`.
    pub fn new(per_window: u32, window: Duration) -> LineLimit {
        LineLimit {
            per_window,
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// The line to write at `now`: `line`, with the count of the lines held back since the
    /// last one written; `None` if this window's lines are spent (it is counted instead).
    pub fn admit(&self, line: &str, now: Instant) -> Option<String> {
        let mut state = self.state.lock();
        if state
            .started
            .is_none_or(|at| now.saturating_duration_since(at) >= self.window)
        {
            state.started = Some(now);
            state.written = 0;
        }
        if state.written >= self.per_window {
            state.held_back += 1;
            return None;
        }
        state.written += 1;
        Some(match std::mem::take(&mut state.held_back) {
            0 => line.to_string(),
            n => format!("{line} ({n} more such lines held back)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_window_are_held_back_and_counted_in_the_next() {
        let limit = LineLimit::new(3, Duration::from_secs(1));
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(
                limit.admit(&format!("line {i}"), start),
                Some(format!("line {i}"))
            );
        }
        let later = start + Duration::from_millis(500);
        assert_eq!(limit.admit("held", later), None);
        assert_eq!(limit.admit("held", later), None);
        let next = start + Duration::from_secs(1);
        assert_eq!(
            limit.admit("line 3", next).as_deref(),
            Some("line 3 (2 more such lines held back)")
        );
        assert_eq!(limit.admit("line 4", next).as_deref(), Some("line 4"));
    }
}
