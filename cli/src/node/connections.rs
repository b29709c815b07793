//! The client connections a node serves, at most a fixed number at once.
//!
//! The client port is unauthenticated. With a plain cap, anyone who can reach it could open
//! that many connections, send nothing (or a byte of a request now and then), and keep every
//! client out until the timeouts closed them, then do it again. So when every slot is taken, a
//! new connection takes the slot of the connection whose last request was handled longest ago
//! (or that has had none since it connected): it is closed before it has a request handled,
//! where its client loses nothing (a request it was sending was never handled, and its retry is
//! safe, appends keeping their request id). A connection whose request is being handled (an
//! append waiting for its commit) is never taken, nor one whose answer is being written and
//! moves; one whose client has taken less than `ANSWER_PACE_BYTES` of its answer in the last
//! `ANSWER_STALL` is, after the idle ones (its client asked and stopped reading, or takes a few
//! bytes now and then: a table of those kept every newcomer out for the 30 s of the write
//! timeout, again and again). A full table of the rest refuses the newcomer instead.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// `Connection::idle_since` from this value up (and below `TAKEN`) while a request is handled
/// and answered: `BUSY_FIRST` plus the connection's count of requests, so that each request's
/// busy state differs from the next one's. A newcomer that found an answer stalled takes the
/// connection only if it is still on that request: with one busy value for all, the request's
/// answer could end, the next request start, and the newcomer close a connection that was
/// handling a new request (found by review, 2026-12-07).
const BUSY_FIRST: u64 = 1 << 63;
/// `Connection::idle_since` once its slot went to a newcomer.
const TAKEN: u64 = u64::MAX;
/// `Connection::answer_moved` while no answer is being written.
const NOT_ANSWERING: u64 = u64::MAX;
/// A connection whose answer has not moved for this long may be closed for a newcomer.
pub const ANSWER_STALL: Duration = Duration::from_secs(5);
/// What an answer's client must take for the answer to count as moving: at least this much
/// per `ANSWER_STALL` (13 KB/s). Counting any byte as a move let a client that took a few bytes
/// every few seconds hold its slot for the whole write timeout.
pub const ANSWER_PACE_BYTES: usize = 64 << 10;

/// One client connection being served.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    key: u64,
    /// Microseconds since `Connections::epoch` at which its last request was answered (or it
    /// connected), or a busy value (`BUSY_FIRST` and up), or `TAKEN`.
    idle_since: AtomicU64,
    /// Requests it started: the busy value of the one under way.
    requests: AtomicU64,
    /// While its answer is being written, the microseconds since `Connections::epoch` at which
    /// the socket last completed `ANSWER_PACE_BYTES` of it (or the write began);
    /// `NOT_ANSWERING` otherwise.
    answer_moved: AtomicU64,
}

impl Connection {
    /// Its socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Marks it waiting for its next request to be handled, from `since_epoch`, unless its
    /// slot was taken.
    fn wait_from(&self, since_epoch: u64) {
        let _ = self
            .idle_since
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state != TAKEN).then_some(since_epoch.min(BUSY_FIRST - 1))
            });
    }

    /// Marks it busy with a request read whole, to be handled and answered; `false` if its slot
    /// went to a newcomer first (its socket is shut down, and the request is not to be
    /// handled).
    pub fn start_request(&self) -> bool {
        let count = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let busy = BUSY_FIRST | (count % (BUSY_FIRST - 1));
        self.idle_since
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state != TAKEN).then_some(busy)
            })
            .is_ok()
    }

    /// Whether its slot went to a newcomer (its socket was shut down for that).
    pub fn taken(&self) -> bool {
        self.idle_since.load(Ordering::Acquire) == TAKEN
    }
}

/// The writing of one answer on a connection: [`Answering::moved`] as the socket takes its
/// bytes; the connection is not answering any more once dropped.
#[derive(Debug)]
pub struct Answering<'a> {
    connection: &'a Connection,
    connections: &'a Connections,
    /// Bytes the socket took since the answer last counted as moving.
    since_move: Cell<usize>,
}

impl Answering<'_> {
    /// The socket took `bytes` more of the answer: it counts as moving once that makes
    /// `ANSWER_PACE_BYTES` since it last did.
    pub fn moved(&self, bytes: usize) {
        let taken = self.since_move.get().saturating_add(bytes);
        if taken >= ANSWER_PACE_BYTES {
            self.mark_moving();
            self.since_move.set(0);
        } else {
            self.since_move.set(taken);
        }
    }

    /// Whether the socket has taken less than `ANSWER_PACE_BYTES` of the answer in the last
    /// `ANSWER_STALL` (since the write began, or since it last counted as moving).
    pub fn stalled(&self) -> bool {
        let moved = self.connection.answer_moved.load(Ordering::Acquire);
        let stall = u64::try_from(self.connections.answer_stall.as_micros()).unwrap_or(u64::MAX);
        moved != NOT_ANSWERING && self.connections.now().saturating_sub(moved) >= stall
    }

    /// How long an answer may take less than `ANSWER_PACE_BYTES` before it counts as stalled.
    pub fn stall(&self) -> Duration {
        self.connections.answer_stall
    }

    fn mark_moving(&self) {
        self.connection
            .answer_moved
            .store(self.connections.now(), Ordering::Release);
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.connection
            .answer_moved
            .store(NOT_ANSWERING, Ordering::Release);
    }
}

/// What [`Connections::admit`] did with a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Served: its thread serves it, and calls [`Connections::remove`] when done.
    Served(Arc<Connection>),
    /// Every slot is taken by a connection whose request is being handled: the stream is
    /// given back, to be refused.
    Full(TcpStream),
    /// The node is stopping: the stream was dropped (closed).
    Stopping,
}

/// A connection closed to give its slot to a newcomer.
#[derive(Debug)]
pub struct Closed {
    /// Its client's address, if the socket still knew it.
    pub peer: Option<std::net::SocketAddr>,
    /// How long since its last request was answered (or it connected), or, for one whose
    /// answer stalled, since its answer last counted as moving.
    pub idle: Duration,
    /// It was closed with its answer unwritten: its client had stopped reading it, or read it
    /// slower than `ANSWER_PACE_BYTES` per `ANSWER_STALL`.
    pub answer_stalled: bool,
}

/// The table of connections being served.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    epoch: Instant,
    table: Mutex<Table>,
    /// `ANSWER_STALL`, shorter in tests.
    answer_stall: Duration,
    /// Microseconds a test moved this table's clock on ([`Connections::skip`]): the stall
    /// rule is tested without sleeps, which a loaded machine stretches past the stall time.
    #[cfg(test)]
    skipped: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    next_key: u64,
    served: HashMap<u64, Arc<Connection>>,
}

impl Connections {
    /// A table of at most `max` connections (at least one).
    pub fn new(max: usize) -> Connections {
        Connections::with_answer_stall(max, ANSWER_STALL)
    }

    /// [`Connections::new`] where a connection whose answer has not moved for `answer_stall`
    /// may be closed for a newcomer.
    pub fn with_answer_stall(max: usize, answer_stall: Duration) -> Connections {
        Connections {
            max: max.max(1),
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            answer_stall,
            #[cfg(test)]
            skipped: AtomicU64::new(0),
        }
    }

    /// Marks `connection` writing its answer from now until the returned guard is dropped.
    pub fn answering<'a>(&'a self, connection: &'a Connection) -> Answering<'a> {
        let answering = Answering {
            connection,
            connections: self,
            since_move: Cell::new(0),
        };
        answering.mark_moving();
        answering
    }

    /// At most this many connections are served at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The connections served now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.lock().served.len()
    }

    /// Serves `stream` unless `stopping` is set (checked under the lock [`Connections::stop`]
    /// sets it under: a connection is either ended by the stop or never served). With every slot
    /// taken, the connection whose last request was answered longest ago (and none is being
    /// handled) is shut down and forgotten to make room, and returned.
    pub fn admit(&self, stream: TcpStream, stopping: &AtomicBool) -> (Admission, Option<Closed>) {
        let mut table = self.table.lock();
        if stopping.load(Ordering::Acquire) {
            return (Admission::Stopping, None);
        }
        let mut closed = None;
        if table.served.len() >= self.max {
            let now = self.now();
            let mut idle: Vec<(u64, &Arc<Connection>)> = table
                .served
                .values()
                .filter_map(|c| {
                    let since = c.idle_since.load(Ordering::Acquire);
                    (since < BUSY_FIRST).then_some((since, c))
                })
                .collect();
            idle.sort_unstable_by_key(|(since, _)| *since);
            // Taken only if it is still waiting: its thread may have started handling a request
            // since (then the next one is tried).
            let mut taken = idle.into_iter().find_map(|(since, c)| {
                c.idle_since
                    .compare_exchange(since, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                    .then(|| {
                        let idle = Duration::from_micros(now.saturating_sub(since));
                        (idle, false, c.clone())
                    })
            });
            if taken.is_none() {
                // Then one whose client has taken too little of its answer for a while, the one
                // stalled longest: its answer is abandoned (an append's retry keeps its ids).
                taken = self.take_stalled(self.stalled(&table.served, now), now);
            }
            let Some((idle, answer_stalled, connection)) = taken else {
                return (Admission::Full(stream), None);
            };
            // Its thread waits in a read, which ends; the descriptor closes when it returns.
            let _ = connection.stream.shutdown(Shutdown::Both);
            table.served.remove(&connection.key);
            closed = Some(Closed {
                peer: connection.stream.peer_addr().ok(),
                idle,
                answer_stalled,
            });
        }
        let key = table.next_key;
        table.next_key += 1;
        let connection = Arc::new(Connection {
            stream,
            key,
            idle_since: AtomicU64::new(self.now()),
            answer_moved: AtomicU64::new(NOT_ANSWERING),
            requests: AtomicU64::new(0),
        });
        table.served.insert(key, connection.clone());
        (Admission::Served(connection), closed)
    }

    /// The connections whose answer has stalled, the one stalled longest first, each with the
    /// busy value of the request it was answering when looked at.
    fn stalled(
        &self,
        served: &HashMap<u64, Arc<Connection>>,
        now: u64,
    ) -> Vec<(u64, u64, Arc<Connection>)> {
        let stall = u64::try_from(self.answer_stall.as_micros()).unwrap_or(u64::MAX);
        let mut stalled: Vec<(u64, u64, Arc<Connection>)> = served
            .values()
            .filter_map(|c| {
                // The request first, then its answer's progress: an answer seen stalled is
                // that request's or a later one's, never an earlier one's.
                let busy = c.idle_since.load(Ordering::Acquire);
                let moved = c.answer_moved.load(Ordering::Acquire);
                ((BUSY_FIRST..TAKEN).contains(&busy)
                    && moved != NOT_ANSWERING
                    && now.saturating_sub(moved) >= stall)
                    .then(|| (moved, busy, c.clone()))
            })
            .collect();
        stalled.sort_unstable_by_key(|(moved, _, _)| *moved);
        stalled
    }

    /// Takes the first of `stalled` still on the request it was seen answering: one that went
    /// on to its next request since is being handled, and is left alone.
    fn take_stalled(
        &self,
        stalled: Vec<(u64, u64, Arc<Connection>)>,
        now: u64,
    ) -> Option<(Duration, bool, Arc<Connection>)> {
        stalled.into_iter().find_map(|(moved, busy, c)| {
            c.idle_since
                .compare_exchange(busy, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
                .then(|| {
                    let idle = Duration::from_micros(now.saturating_sub(moved));
                    (idle, true, c)
                })
        })
    }

    /// Marks `connection` waiting for its next request from now (its last one answered).
    pub fn waiting(&self, connection: &Connection) {
        connection.wait_from(self.now());
    }

    /// Forgets `connection` once its thread is done with it.
    pub fn remove(&self, connection: &Connection) {
        let mut table = self.table.lock();
        if table
            .served
            .get(&connection.key)
            .is_some_and(|c| std::ptr::eq(&**c, connection))
        {
            table.served.remove(&connection.key);
        }
    }

    /// Sets `stopping` and ends the reading of every connection (an answer being prepared can
    /// still be written); the number of connections served.
    pub fn stop(&self, stopping: &AtomicBool) -> usize {
        let table = self.table.lock();
        stopping.store(true, Ordering::Release);
        for connection in table.served.values() {
            let _ = connection.stream.shutdown(Shutdown::Read);
        }
        table.served.len()
    }

    /// Shuts every connection down, which ends the answers still being written too.
    pub fn cut_all(&self) {
        for connection in self.table.lock().served.values() {
            let _ = connection.stream.shutdown(Shutdown::Both);
        }
    }

    /// Whether no connection served is handling a request.
    #[cfg(test)]
    pub fn none_busy(&self) -> bool {
        let table = self.table.lock();
        table
            .served
            .values()
            .all(|c| !(BUSY_FIRST..TAKEN).contains(&c.idle_since.load(Ordering::Acquire)))
    }

    fn now(&self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(BUSY_FIRST - 1);
        #[cfg(test)]
        let now = now.saturating_add(self.skipped.load(Ordering::Acquire));
        now
    }

    /// Moves this table's clock on by `by`, as if that much time passed.
    #[cfg(test)]
    fn skip(&self, by: Duration) {
        let by = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.skipped.fetch_add(by, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (the server's end, the client's end).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn served(admission: Admission) -> Arc<Connection> {
        match admission {
            Admission::Served(c) => c,
            other => panic!("not served: {other:?}"),
        }
    }

    /// With every slot taken, a newcomer takes the slot of the connection idle longest, whose
    /// client sees its connection closed; one handling a request is never taken, and
    /// with only those left the newcomer is refused.
    #[test]
    fn a_newcomer_takes_the_slot_of_the_longest_idle_connection_only() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stopping = AtomicBool::new(false);
        let connections = Connections::new(2);
        let (a, mut a_client) = pair(&listener);
        let a = served(connections.admit(a, &stopping).0);
        let (b, _b_client) = pair(&listener);
        let b = served(connections.admit(b, &stopping).0);
        // `a` is busy with a request, `b` waits for its next one.
        assert!(a.start_request());
        connections.waiting(&b);
        let (c, _c_client) = pair(&listener);
        let (admission, closed) = connections.admit(c, &stopping);
        let c = served(admission);
        assert!(closed.is_some(), "no connection was closed to make room");
        assert_eq!(connections.len(), 2);
        assert!(
            !b.start_request(),
            "the closed connection could start a request"
        );
        let mut byte = [0u8];
        assert_eq!(
            b.stream().read(&mut byte).unwrap(),
            0,
            "its reading was not ended"
        );
        // `b`'s thread forgets it: that removes nothing else.
        connections.remove(&b);
        assert_eq!(connections.len(), 2);
        // `a` and `c` both busy: the next one is refused, and nobody is closed.
        assert!(c.start_request());
        let (d, _d_client) = pair(&listener);
        let (admission, closed) = connections.admit(d, &stopping);
        assert!(matches!(admission, Admission::Full(_)), "{admission:?}");
        assert!(closed.is_none());
        a_client.set_nonblocking(true).unwrap();
        let still_open = a_client.read(&mut byte);
        assert!(
            still_open.is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "the busy connection was closed"
        );
        // The one idle longest is chosen: `a` waits from now on, `c` a moment later.
        connections.waiting(&a);
        std::thread::sleep(Duration::from_millis(2));
        connections.waiting(&c);
        let (e, _e_client) = pair(&listener);
        let (admission, closed) = connections.admit(e, &stopping);
        served(admission);
        assert!(closed.is_some());
        assert!(
            !a.start_request(),
            "the connection idle longest was not the one closed"
        );
        assert!(c.start_request());
    }

    /// A connection whose client takes its answer a few bytes at a time is closed for a
    /// newcomer once the answer has not moved (`ANSWER_PACE_BYTES`) for the stall time, and its
    /// write fails; one whose request is being handled, or whose answer moves, is not. Before,
    /// a connection being answered was never taken, and clients that asked and stopped reading
    /// kept newcomers out for the whole write timeout; until the pace rule, any byte taken
    /// counted as a move.
    #[test]
    fn a_newcomer_takes_the_slot_of_a_connection_whose_answer_stalled() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stopping = AtomicBool::new(false);
        // Long, and passed by moving the table's clock on: the real time the test takes (a
        // loaded machine's pauses too) stays far below it.
        let stall = Duration::from_secs(60);
        let connections = Connections::with_answer_stall(1, stall);
        let (a, _a_client) = pair(&listener);
        let a = served(connections.admit(a, &stopping).0);
        assert!(a.start_request());
        let refused = |connections: &Connections| {
            let (newcomer, _client) = pair(&listener);
            let (admission, closed) = connections.admit(newcomer, &stopping);
            matches!(admission, Admission::Full(_)) && closed.is_none()
        };
        // Handled (an append waiting for its commit), however long: never taken.
        connections.skip(stall * 2);
        assert!(
            refused(&connections),
            "a connection handling a request was taken"
        );
        let answering = connections.answering(&a);
        assert!(refused(&connections), "an answer that just began was taken");
        connections.skip(stall * 2);
        answering.moved(ANSWER_PACE_BYTES); // the socket took enough of it
        assert!(refused(&connections), "an answer that moves was taken");
        // Enough in two sends moves it too, at the second.
        let marked = a.answer_moved.load(Ordering::Acquire);
        connections.skip(Duration::from_millis(2));
        answering.moved(ANSWER_PACE_BYTES / 2);
        assert_eq!(a.answer_moved.load(Ordering::Acquire), marked);
        answering.moved(ANSWER_PACE_BYTES / 2);
        assert!(
            a.answer_moved.load(Ordering::Acquire) > marked,
            "an answer taken in two halves did not move"
        );
        assert!(refused(&connections), "an answer that moves was taken");
        // Then its client takes a few bytes now and then (or none): that does not keep the
        // answer moving, however often it happens.
        for _ in 0..4 {
            connections.skip(stall / 2);
            answering.moved(ANSWER_PACE_BYTES / 8 - 1);
        }
        let (newcomer, _client) = pair(&listener);
        let (admission, closed) = connections.admit(newcomer, &stopping);
        served(admission);
        let closed = closed.expect("the connection whose answer stalled was not closed");
        assert!(closed.answer_stalled);
        assert!(closed.idle >= stall, "{closed:?}");
        assert!(a.taken());
        // Its write fails: the socket was shut down.
        let written = std::io::Write::write_all(&mut a.stream(), &[0; 1 << 20]);
        assert!(
            written.is_err(),
            "the stalled answer could still be written"
        );
        drop(answering);
        connections.waiting(&a);
        assert!(a.taken(), "its slot came back to it");
    }

    /// A newcomer that saw a connection's answer stalled, after which that answer ended and the
    /// connection started its next request, leaves it alone: that request is being handled.
    /// With one busy value for every request, the newcomer took it (found by review).
    #[test]
    fn a_stalled_answer_that_ended_before_the_take_leaves_the_next_request_alone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stopping = AtomicBool::new(false);
        let stall = Duration::from_secs(60);
        let connections = Connections::with_answer_stall(1, stall);
        let (a, _a_client) = pair(&listener);
        let a = served(connections.admit(a, &stopping).0);
        assert!(a.start_request());
        let answering = connections.answering(&a);
        connections.skip(stall * 2);
        // The newcomer's look: the answer stalled.
        let now = connections.now();
        let seen = connections.stalled(&connections.table.lock().served, now);
        assert_eq!(seen.len(), 1, "the stalled answer was not seen");
        // Meanwhile the answer ends and the connection reads and starts its next request.
        drop(answering);
        connections.waiting(&a);
        assert!(a.start_request());
        // The newcomer's take, on what it saw: refused.
        assert!(connections.take_stalled(seen, now).is_none());
        assert!(
            !a.taken(),
            "a connection handling its next request was taken"
        );
        // A look now sees nothing stalled (that request has no answer under way).
        assert!(connections
            .stalled(&connections.table.lock().served, connections.now())
            .is_empty());
    }

    /// Once stopping, nothing is served, and the connections served see their reading end.
    #[test]
    fn a_stop_serves_no_one_new_and_ends_the_reading_of_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stopping = AtomicBool::new(false);
        let connections = Connections::new(4);
        let (a, _a_client) = pair(&listener);
        let a = served(connections.admit(a, &stopping).0);
        assert_eq!(connections.stop(&stopping), 1);
        assert!(stopping.load(Ordering::Acquire));
        let mut byte = [0u8];
        assert_eq!(a.stream().read(&mut byte).unwrap(), 0);
        let (b, _b_client) = pair(&listener);
        let (admission, _) = connections.admit(b, &stopping);
        assert!(matches!(admission, Admission::Stopping), "{admission:?}");
        assert_eq!(connections.len(), 1);
        connections.remove(&a);
        assert_eq!(connections.len(), 0);
    }
}
