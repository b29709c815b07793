//! Rate limits on the transport's log lines: a peer that flaps or a stranger that keeps
//! dialling must not flood the log.

use std::time::{Duration, Instant};

/// Lines about one peer's connection are logged at most `PEER_LINES_MAX` per this interval: a
/// link that flaps (a peer that keeps restarting, resets sent from outside) after 100 ms up is
/// dialled again at once, and would write two lines a cycle without end.
pub(super) const PEER_LINES_INTERVAL: Duration = Duration::from_secs(60);
pub(super) const PEER_LINES_MAX: u64 = 20;

/// A rate limit on log lines: at most `max` in each `interval`; the first line let through
/// after some were held back says how many.
pub(super) struct LineLimit {
    interval: Duration,
    max: u64,
    /// When the interval under way started (a test moves it back to end the interval).
    pub(super) since: Instant,
    lines: u64,
    skipped: u64,
}

impl LineLimit {
    pub(super) fn new(interval: Duration, max: u64) -> LineLimit {
        LineLimit {
            interval,
            max,
            since: Instant::now(),
            lines: 0,
            skipped: 0,
        }
    }

    /// Whether a line may be logged now: `Some` with how many were held back since the last
    /// one logged, or `None`, holding this one back too.
    pub(super) fn admit(&mut self) -> Option<u64> {
        if self.since.elapsed() >= self.interval {
            self.since = Instant::now();
            self.lines = 0;
        }
        if self.lines >= self.max {
            self.skipped += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.skipped))
    }
}

/// The rate limit of one sender's lines about its peer; the first line after a quiet spell
/// counts those it skipped.
pub(super) struct PeerLines(pub(super) LineLimit);

impl PeerLines {
    pub(super) fn new(interval: Duration) -> PeerLines {
        PeerLines(LineLimit::new(interval, PEER_LINES_MAX))
    }

    /// Logs `line` unless the limit holds it back; whether it was logged.
    pub(super) fn log(&mut self, log: impl FnOnce(String), line: String) -> bool {
        match self.0.admit() {
            None => return false,
            Some(0) => log(line),
            Some(n) => log(format!(
                "{line} ({n} lines about this peer skipped before it)"
            )),
        }
        true
    }
}

/// A sender's failures to reach its peer, said once per kind: the dialling goes on, and the
/// same reason at every attempt would say nothing new.
#[derive(Default)]
pub(super) struct DialFailures {
    /// The failure said last; empty once a connection came up.
    said: String,
}

impl DialFailures {
    /// Logs `line` about `failure` unless that failure was said last. A line the limit held
    /// back was not said: it comes at a later attempt, once the limit lets lines through
    /// (else a peer restarted with a wrong secret after a spell of flapping would never be
    /// named on this side).
    pub(super) fn log(
        &mut self,
        lines: &mut PeerLines,
        log: impl FnOnce(String),
        failure: String,
        line: String,
    ) {
        if failure != self.said && lines.log(log, line) {
            self.said = failure;
        }
    }

    /// A connection came up: the next failure is said whatever it is.
    pub(super) fn connected(&mut self) {
        self.said.clear();
    }
}
