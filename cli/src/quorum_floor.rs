//! The machine's floor under `rwal bench --replicated`'s two ratios: what a quorum commit costs
//! here with no log, no raft and no thread hand-off but the network's, against the same bare
//! commit of one copy, measured in the same minutes on the same disk.
//!
//! Each loop writes 128-byte records with `pwrite` and makes them durable with `fdatasync`. In
//! its quorum form a leader thread sends what it commits to `nodes - 1` follower threads over
//! loopback TCP (Nagle off), writes and syncs its own copy meanwhile, and waits until enough
//! followers have answered that their copy is durable (written and synced the same way) for a
//! majority of `nodes` copies: the least a raft commit needs. Its alone form is the same loop
//! with no follower.
//!
//! - [`measure`]: one committer, one record per commit (the latency ratio's floor);
//! - [`measure_group`]: `clients` threads hand their records to the leader thread, which
//!   commits whatever has queued in one batch, one batch at a time, and wakes the batch's
//!   clients (the throughput ratio's floor, for the simplest group commit: no pipelining).
//!
//! The followers answer over one TCP connection that they share (each answer is one 8-byte
//! write, which Linux does not interleave with another on the same socket), so that the leader
//! waits on a single socket for whichever answers first, without a thread of its own per peer.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::{Condvar, Mutex};

use crate::bench::{histogram, record, zero_filled};

const RECORD: usize = 128;
/// The scratch files' size; writes wrap around in them. Zero-filled and synced first, so that
/// a sync flushes data only, as in a log's preallocated segment.
const FILE_BYTES: u64 = 1 << 20;
/// Rounds of each form, interleaved, so that both see the same minutes of a noisy disk.
const ROUNDS: u32 = 3;

/// Commit latencies of both forms, in nanoseconds, and how long each form committed.
pub struct Floor {
    /// One copy.
    pub alone: Histogram<u64>,
    /// A majority of `nodes` copies.
    pub quorum: Histogram<u64>,
    /// Seconds spent committing with one copy (setting up and stopping not counted).
    pub alone_seconds: f64,
    /// Seconds spent committing with `nodes` copies.
    pub quorum_seconds: f64,
}

/// How long the followers' answers may keep the leader waiting before the floor gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// One committer: runs both forms for `seconds` each in all, in `dir` (created, and removed
/// afterwards).
pub fn measure(dir: &Path, nodes: usize, seconds: Duration) -> Result<Floor, String> {
    interleaved(dir, nodes, seconds, |copies, round, per_round, h| {
        let mut cluster = Cluster::start(dir, &format!("single-{round}-{copies}"), copies)?;
        let record_bytes = [0x33u8; RECORD];
        let mut number = 0u64;
        let mut committed = Ok(());
        // Untimed, as rwal's replicated and single-node commits take 50 before theirs.
        while committed.is_ok() && number < 50 {
            committed = cluster.commit(number, &record_bytes);
            number += 1;
        }
        let started = Instant::now();
        while committed.is_ok() && started.elapsed() < per_round {
            let t = Instant::now();
            committed = cluster.commit(number, &record_bytes);
            record(h, t);
            number += 1;
        }
        let ran = started.elapsed();
        // A follower's failure first: it is what made the leader's commit fail (it shut the
        // answer connection down).
        cluster.stop().and(committed).map(|()| ran)
    })
}

/// `clients` committers through a bare group commit: runs both forms for `seconds` each in all,
/// in `dir` (created, and removed afterwards).
pub fn measure_group(
    dir: &Path,
    nodes: usize,
    clients: usize,
    seconds: Duration,
) -> Result<Floor, String> {
    interleaved(dir, nodes, seconds, |copies, round, per_round, h| {
        let cluster = Cluster::start(dir, &format!("group-{round}-{copies}"), copies)?;
        group_commit(cluster, clients, per_round, h)
    })
}

/// Runs `form(copies, round, seconds, histogram)` for one copy and for `nodes` copies in turn,
/// `ROUNDS` times; `form` returns how long it committed.
fn interleaved(
    dir: &Path,
    nodes: usize,
    seconds: Duration,
    form: impl Fn(usize, u32, Duration, &mut Histogram<u64>) -> std::io::Result<Duration>,
) -> Result<Floor, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut floor = Floor {
        alone: histogram(),
        quorum: histogram(),
        alone_seconds: 0.0,
        quorum_seconds: 0.0,
    };
    let per_round = seconds / ROUNDS;
    let mut outcome = Ok(());
    for round in 0..ROUNDS {
        outcome = form(1, round, per_round, &mut floor.alone)
            .map_err(|e| format!("the floor, one copy: {e}"))
            .and_then(|ran| {
                floor.alone_seconds += ran.as_secs_f64();
                form(nodes, round, per_round, &mut floor.quorum)
                    .map_err(|e| format!("the floor, {nodes} copies: {e}"))
            })
            .map(|ran| floor.quorum_seconds += ran.as_secs_f64());
        if outcome.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    outcome.map(|()| floor)
}

/// The leader's own copy and its connections to the followers.
struct Cluster {
    file: File,
    at: u64,
    peers: Vec<TcpStream>,
    answers: TcpStream,
    answers_needed: usize,
    followers: Vec<JoinHandle<std::io::Result<()>>>,
}

/// What a follower thread runs: its data connection, the shared answer connection, its file.
type Follower = fn(TcpStream, TcpStream, File) -> std::io::Result<()>;

/// How many followers must answer for a majority of `copies`, the leader's own among them.
fn answers_needed(copies: usize) -> usize {
    copies / 2
}

impl Cluster {
    /// A leader and `copies - 1` followers, each with a scratch file in `dir` named after `tag`.
    fn start(dir: &Path, tag: &str, copies: usize) -> std::io::Result<Cluster> {
        Cluster::start_with(dir, tag, copies, follow)
    }

    fn start_with(
        dir: &Path,
        tag: &str,
        copies: usize,
        follower: Follower,
    ) -> std::io::Result<Cluster> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        // The shared answer connection first, then one data connection per follower; each
        // connect completes in the listener's backlog, so the accepts return them in this order.
        let answers_out = TcpStream::connect(addr)?;
        answers_out.set_nodelay(true)?;
        let (answers, _) = listener.accept()?;
        answers.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let mut cluster = Cluster {
            file: zero_filled(&dir.join(format!("{tag}-leader")), FILE_BYTES, 0)?,
            at: 0,
            peers: Vec::new(),
            answers,
            answers_needed: answers_needed(copies),
            followers: Vec::new(),
        };
        let mut add_followers = || -> std::io::Result<()> {
            for index in 1..copies {
                let file = zero_filled(&dir.join(format!("{tag}-follower{index}")), FILE_BYTES, 0)?;
                let inbound = TcpStream::connect(addr)?;
                let answer = answers_out.try_clone()?;
                cluster
                    .followers
                    .push(std::thread::spawn(move || follower(inbound, answer, file)));
                let (peer, _) = listener.accept()?;
                peer.set_nodelay(true)?;
                cluster.peers.push(peer);
            }
            Ok(())
        };
        match add_followers() {
            Ok(()) => Ok(cluster),
            Err(e) => {
                // Closing the listener ends a follower whose connection was not accepted yet;
                // the others end when `stop` closes theirs.
                drop(listener);
                drop(answers_out);
                let _ = cluster.stop();
                Err(e)
            }
        }
    }

    /// Makes `records` (one or more records, `number` naming the commit) durable in a majority
    /// of the copies.
    fn commit(&mut self, number: u64, records: &[u8]) -> std::io::Result<()> {
        // One write per follower (header and records in one packet, as a batch of rwal's
        // frames goes): two would cost the floor a second send on each commit.
        let mut message = Vec::with_capacity(12 + records.len());
        message.extend_from_slice(&number.to_le_bytes());
        message.extend_from_slice(&(records.len() as u32).to_le_bytes());
        message.extend_from_slice(records);
        for peer in &mut self.peers {
            peer.write_all(&message)?;
        }
        self.at = write_wrapping(&self.file, self.at, records)?;
        self.file.sync_data()?;
        let mut answered = 0;
        while answered < self.answers_needed {
            let mut answer = [0u8; 8];
            self.answers.read_exact(&mut answer).map_err(|e| {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    std::io::Error::other(format!(
                        "no follower answered commit {number} within {} s",
                        ANSWER_TIMEOUT.as_secs()
                    ))
                } else {
                    e
                }
            })?;
            // The slower followers' answers to earlier commits are read and dropped here.
            if u64::from_le_bytes(answer) == number {
                answered += 1;
            }
        }
        Ok(())
    }

    /// Closes the connections, which ends the followers (one with a backlog stops at its next
    /// answer), and waits for every one of them; the first failure.
    fn stop(self) -> std::io::Result<()> {
        drop(self.peers);
        drop(self.answers);
        let mut outcome = Ok(());
        for follower in self.followers {
            let ended = follower
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a follower thread panicked")));
            if outcome.is_ok() {
                outcome = ended;
            }
        }
        outcome
    }
}

/// A follower: writes and syncs each commit it receives, then answers with its number. On a
/// failure it shuts the shared answer connection down, so that the leader stops waiting.
fn follow(inbound: TcpStream, answer: TcpStream, file: File) -> std::io::Result<()> {
    let outcome = follow_until_closed(inbound, &answer, file);
    if outcome.is_err() {
        let _ = answer.shutdown(std::net::Shutdown::Both);
    }
    outcome
}

fn follow_until_closed(
    mut inbound: TcpStream,
    mut answer: &TcpStream,
    file: File,
) -> std::io::Result<()> {
    inbound.set_nodelay(true)?;
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        let mut header = [0u8; 12];
        match inbound.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        records.resize(len, 0);
        inbound.read_exact(&mut records)?;
        at = write_wrapping(&file, at, &records)?;
        file.sync_data()?;
        match answer.write_all(&header[..8]) {
            Ok(()) => {}
            // The leader stopped reading answers: its loop is over.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
    }
}

/// Appends `bytes` at `at` in the scratch file, starting again at its beginning where they
/// would not fit; returns where the next write goes.
fn write_wrapping(file: &File, at: u64, bytes: &[u8]) -> std::io::Result<u64> {
    let at = if at + bytes.len() as u64 > FILE_BYTES {
        0
    } else {
        at
    };
    file.write_all_at(bytes, at)?;
    Ok(at + bytes.len() as u64)
}

/// A client waiting for its record's commit.
struct Waiter {
    done: AtomicBool,
    thread: Thread,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Arc<Waiter>>,
    stop: bool,
}

/// `clients` threads commit for `seconds` through `cluster`, handing their records to a leader
/// thread; returns how long they committed.
fn group_commit(
    mut cluster: Cluster,
    clients: usize,
    seconds: Duration,
    h: &mut Histogram<u64>,
) -> std::io::Result<Duration> {
    let started = Instant::now();
    let queue = Mutex::new(Queue::default());
    let queued = Condvar::new();
    let outcome = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (queue, queued) = (&queue, &queued);
                s.spawn(move || {
                    let mut h = histogram();
                    let me = Arc::new(Waiter {
                        done: AtomicBool::new(false),
                        thread: std::thread::current(),
                    });
                    let started = Instant::now();
                    while started.elapsed() < seconds {
                        let t = Instant::now();
                        me.done.store(false, Ordering::Relaxed);
                        {
                            let mut queue = queue.lock();
                            if queue.stop {
                                break; // the leader failed
                            }
                            queue.waiting.push(me.clone());
                        }
                        queued.notify_one();
                        while !me.done.load(Ordering::Acquire) {
                            std::thread::park();
                        }
                        record(&mut h, t);
                    }
                    h
                })
            })
            .collect();
        let leader = s.spawn(|| -> std::io::Result<()> {
            let records = vec![0x33u8; RECORD * clients];
            let mut number = 0u64;
            loop {
                let batch = {
                    let mut queue = queue.lock();
                    while queue.waiting.is_empty() && !queue.stop {
                        queued.wait(&mut queue);
                    }
                    if queue.waiting.is_empty() {
                        return Ok(());
                    }
                    std::mem::take(&mut queue.waiting)
                };
                let outcome = cluster.commit(number, &records[..RECORD * batch.len()]);
                release(&batch);
                if outcome.is_err() {
                    // Nobody queues after this: the clients look at `stop` first.
                    let rest = {
                        let mut queue = queue.lock();
                        queue.stop = true;
                        std::mem::take(&mut queue.waiting)
                    };
                    release(&rest);
                    return outcome;
                }
                number += 1;
            }
        });
        for worker in workers {
            h.add(worker.join().expect("a floor client panicked"))
                .expect("same bounds");
        }
        queue.lock().stop = true;
        queued.notify_one();
        leader.join().expect("the floor's leader panicked")
    });
    let ran = started.elapsed();
    // A follower's failure first, as in `measure`.
    cluster.stop().and(outcome).map(|()| ran)
}

/// Wakes the clients of a batch whose commit ended.
fn release(batch: &[Arc<Waiter>]) {
    for waiter in batch {
        waiter.done.store(true, Ordering::Release);
        waiter.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("rwal-floor-test-{name}-{}", std::process::id()))
    }

    #[test]
    fn one_committer_commits_in_both_forms_and_cleans_up() {
        let dir = scratch("single");
        let floor = measure(&dir, 3, Duration::from_millis(300)).unwrap();
        assert!(!floor.alone.is_empty(), "no commit of one copy");
        assert!(!floor.quorum.is_empty(), "no quorum commit");
        assert!(!dir.exists(), "the scratch directory was left behind");
    }

    #[test]
    fn group_commit_commits_in_both_forms_and_cleans_up() {
        let dir = scratch("group");
        let floor = measure_group(&dir, 3, 8, Duration::from_millis(300)).unwrap();
        assert!(!floor.alone.is_empty(), "no group commit of one copy");
        assert!(!floor.quorum.is_empty(), "no quorum group commit");
        assert!(!dir.exists(), "the scratch directory was left behind");
    }

    #[test]
    fn a_majority_counts_the_leader() {
        let needed: Vec<usize> = (1..=6).map(answers_needed).collect();
        assert_eq!(needed, [0, 1, 1, 2, 2, 3]);
    }

    /// Set by the test below once its follower may answer.
    static RELEASED: AtomicBool = AtomicBool::new(false);
    /// Set by that follower once it has read a commit.
    static REACHED: AtomicBool = AtomicBool::new(false);

    /// A follower that reads each commit, then answers only once `RELEASED` is set.
    fn held_back(mut inbound: TcpStream, mut answer: TcpStream, _: File) -> std::io::Result<()> {
        let mut header = [0u8; 12];
        while inbound.read_exact(&mut header).is_ok() {
            let len = u32::from_le_bytes(header[8..].try_into().unwrap()) as usize;
            inbound.read_exact(&mut vec![0; len])?;
            REACHED.store(true, Ordering::Release);
            while !RELEASED.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            answer.write_all(&header[..8])?;
        }
        Ok(())
    }

    #[test]
    fn a_quorum_commit_waits_for_a_followers_answer() {
        let dir = scratch("held");
        std::fs::create_dir_all(&dir).unwrap();
        /// Lets the follower answer however the test ends, so that its thread ends too.
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                RELEASED.store(true, Ordering::Release);
            }
        }
        let release = Release;
        let mut cluster = Cluster::start_with(&dir, "t", 2, held_back).unwrap();
        let (done, committed) = std::sync::mpsc::channel();
        let leader = std::thread::spawn(move || {
            let outcome = cluster.commit(0, &[0x5a; RECORD]);
            done.send(()).unwrap();
            outcome.and(cluster.stop())
        });
        // The leader sends before its own sync: once the follower has the commit, only its
        // answer is missing (and the leader's own sync, which takes far less than the wait).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !REACHED.load(Ordering::Acquire) {
            assert!(
                Instant::now() < deadline,
                "the follower never got the commit"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            committed.recv_timeout(Duration::from_millis(500)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout),
            "the commit returned before its follower answered"
        );
        drop(release);
        committed.recv_timeout(Duration::from_secs(30)).unwrap();
        leader.join().unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Counts the followers started by the test below.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// The first follower fails at once (its file is open for reading only); the second holds
    /// the answer connection open and never answers.
    fn one_fails_one_is_silent(
        mut inbound: TcpStream,
        answer: TcpStream,
        _: File,
    ) -> std::io::Result<()> {
        if STARTED.fetch_add(1, Ordering::SeqCst) == 0 {
            return follow(inbound, answer, File::open(std::env::current_exe()?)?);
        }
        let mut rest = Vec::new();
        inbound.read_to_end(&mut rest)?;
        drop(answer);
        Ok(())
    }

    #[test]
    fn a_failing_follower_ends_the_leaders_wait() {
        let dir = scratch("fails");
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster::start_with(&dir, "t", 3, one_fails_one_is_silent).unwrap();
        // Unless the failing follower shuts the shared answer connection down, the silent one
        // keeps it open and the leader waits for the answer timeout (30 s), then fails with a
        // timeout instead.
        let failed = cluster.commit(0, &[0x5a; RECORD]).unwrap_err();
        assert_eq!(failed.kind(), std::io::ErrorKind::UnexpectedEof, "{failed}");
        assert!(cluster.stop().is_err(), "the follower's failure was lost");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
