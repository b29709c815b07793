//! When `rwal node` checkpoints its engine and compacts its log.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rwal_replication::Error;

use super::engine::encode_state;
use super::{log, Server};

/// Checkpoints the engine's state and compacts every `checkpoint_every` applied records.
pub(super) fn checkpoint_loop(server: &Server) {
    // Counted from the checkpoint the node restored at its open (its latest): counted from 0,
    // every restart of a node with more than `checkpoint_every` records behind it checkpointed
    // at once, whatever it had done before. (Not from where the log starts: compaction removes
    // whole segments, and pins hold it back.)
    let restored_from = server.engine.state.0.lock().restored_from;
    let mut schedule = CheckpointSchedule::new(server.settings.checkpoint_every, restored_from);
    while !server.stopping.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(failure) = server.node.status().failure {
            log(server.settings.id, &format!("stopped: {failure}"));
            std::process::exit(1);
        }
        let applied = server.engine.state.0.lock().applied;
        if !schedule.due(applied, Instant::now()) {
            continue;
        }
        // Encoded only when due: the engine's lock holds up the apply on the node's thread.
        let (applied, state) = {
            let state = server.engine.state.0.lock();
            (state.applied, encode_state(&state))
        };
        match server.node.checkpoint(applied, &state) {
            Ok(()) => {
                schedule.succeeded(applied);
                if let Err(e) = server.node.compact() {
                    log(server.settings.id, &format!("compaction failed: {e}"));
                }
            }
            Err(e) => {
                let log_starts = server.node.status().first_lsn;
                if let Some(installed) = superseded_by_install(&e, applied, log_starts) {
                    // Not a failure: the install wrote the leader's checkpoint, which is this
                    // node's latest now. Counted from it, without the wait of a failure.
                    schedule.succeeded(installed);
                    log(
                        server.settings.id,
                        &format!(
                            "checkpoint at {applied} given up: a snapshot from the leader was \
                             installed meanwhile (the log now starts at {log_starts})"
                        ),
                    );
                    continue;
                }
                let (failures, wait) = schedule.failed(Instant::now());
                log(
                    server.settings.id,
                    &format!(
                        "checkpoint at {applied} failed ({failures} in a row; next try in \
                         {wait:?}): {e}"
                    ),
                );
            }
        }
    }
}

/// Whether the checkpoint at `applied` failed because a snapshot from the leader was installed
/// while it was taken (it is abandoned then, or refused as older than the installed one); the
/// LSN of the snapshot installed, taken from the log's first LSN after the install. A follower
/// that is sent a snapshot is behind the leader's log; reported as a failure, this pushed the
/// next checkpoint back by the wait of a failure and wrote a log line that blamed the node.
fn superseded_by_install(error: &Error, applied: u64, log_starts: u64) -> Option<u64> {
    let installed = log_starts.checked_sub(1)?;
    let abandoned = matches!(error, Error::CheckpointAbandoned { .. });
    (abandoned || installed > applied).then_some(installed.max(applied))
}

/// The first wait after a failed checkpoint; each failure in a row doubles it.
const CHECKPOINT_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between tries of a checkpoint that keeps failing.
const CHECKPOINT_RETRY_MAX: Duration = Duration::from_secs(60);

/// When the checkpoint loop checkpoints: every `every` applied LSNs after the last checkpoint,
/// and after a failure (a full disk, say) not again before a wait that doubles with each
/// failure in a row. Without the wait it tried every 200 ms, each try encoding the engine's whole state under the lock its
/// apply needs and writing a log line (found by review on 2026-12-03).
struct CheckpointSchedule {
    every: u64,
    last: u64,
    failures: u32,
    not_before: Option<Instant>,
}

impl CheckpointSchedule {
    /// A schedule that counts from a checkpoint at LSN `last` (0: none).
    fn new(every: u64, last: u64) -> CheckpointSchedule {
        CheckpointSchedule {
            every,
            last,
            failures: 0,
            not_before: None,
        }
    }

    /// Whether to checkpoint now, with `applied` applied. Nothing applied: nothing to
    /// checkpoint (LSN 0 is refused).
    fn due(&self, applied: u64, now: Instant) -> bool {
        applied > 0
            && applied >= self.last.saturating_add(self.every)
            && self.not_before.is_none_or(|at| now >= at)
    }

    fn succeeded(&mut self, applied: u64) {
        self.last = applied;
        self.failures = 0;
        self.not_before = None;
    }

    /// Notes a failed try; the failures in a row and the wait before the next try.
    fn failed(&mut self, now: Instant) -> (u32, Duration) {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        let wait = CHECKPOINT_RETRY_FIRST
            .saturating_mul(1 << doublings)
            .min(CHECKPOINT_RETRY_MAX);
        self.not_before = Some(now + wait);
        (self.failures, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint abandoned for a leader's snapshot, or refused because one was installed
    /// past it, is no failure; other errors are, also on a follower whose log starts past
    /// nothing it was asked for.
    #[test]
    fn a_checkpoint_overtaken_by_a_leaders_snapshot_is_no_failure() {
        let abandoned = Error::CheckpointAbandoned { lsn: 500 };
        assert_eq!(superseded_by_install(&abandoned, 500, 900), Some(899));
        assert_eq!(
            superseded_by_install(&abandoned, 500, 1),
            Some(500),
            "abandoned before the install reset the log"
        );
        let refused = Error::Closed;
        assert_eq!(
            superseded_by_install(&refused, 500, 901),
            Some(900),
            "the log starts past the checkpoint asked for"
        );
        assert_eq!(superseded_by_install(&refused, 500, 501), None);
        assert_eq!(superseded_by_install(&refused, 500, 1), None);
        assert_eq!(superseded_by_install(&refused, 500, 0), None);
    }

    /// A checkpoint that keeps failing is tried again after waits that double, up to a
    /// minute, not every 200 ms; a success brings back the plain schedule.
    #[test]
    fn a_failing_checkpoint_is_tried_again_after_longer_and_longer_waits() {
        let start = Instant::now();
        let mut schedule = CheckpointSchedule::new(100, 0);
        assert!(!schedule.due(0, start), "nothing applied");
        assert!(!schedule.due(99, start));
        assert!(schedule.due(100, start));
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..9 {
            let (_, wait) = schedule.failed(now);
            assert!(!schedule.due(100, now + wait - Duration::from_millis(1)));
            now += wait;
            assert!(schedule.due(100, now));
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        schedule.succeeded(150);
        assert!(!schedule.due(249, now));
        assert!(schedule.due(250, now), "no wait after a success");
        assert_eq!(
            schedule.failed(now).1,
            CHECKPOINT_RETRY_FIRST,
            "counted afresh"
        );
    }

    /// A restarted node counts from the checkpoint its log starts after, not from 0.
    #[test]
    fn a_restarted_schedule_counts_from_its_last_checkpoint() {
        let now = Instant::now();
        let schedule = CheckpointSchedule::new(100, 1_000);
        assert!(!schedule.due(1_050, now));
        assert!(!schedule.due(1_099, now));
        assert!(schedule.due(1_100, now));
    }
}
