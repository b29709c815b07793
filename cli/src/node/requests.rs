//! The client protocol's requests: reading them within their budget and time, and
//! answering append, read, status and membership (docs/network.md section 3).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rwal_replication::{Bounded, Error, MembershipChange, NodeId, Role};
use rwal_wal::{Lsn, RecordKind};

use super::engine::data_digest;
use super::{budget, connections, proto, Server};

/// How long an append waits for its commit before it is answered RETRY.
pub(super) const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most records one READ answers.
const READ_RECORDS_MAX: u32 = 10_000;
/// The most bytes of records one READ answers.
const READ_BYTES_MAX: usize = 16 << 20;
/// LSNs of the duplicate list a READ copies under the engine's lock at a time.
const DUPLICATES_WINDOW: Lsn = 4096;

/// A client connection idle this long is closed.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A request must arrive whole within this long of its first byte: a client that sends a byte
/// now and then would otherwise hold a connection slot and part of the request budget for as
/// long as it likes (the idle timeout counts from the last byte).
pub(super) const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A request holding bytes of the request budget must arrive at the pace that delivers it whole
/// by the request timeout, give or take this share of it (a sixteenth: a pause of a sixteenth
/// of the timeout): a client that sent a request's first bytes and then stalls (or trickles)
/// would otherwise hold its share of the budget for the whole timeout, and a few such clients,
/// renewed, would keep every large request answered RETRY at little cost.
const BODY_PACE_SLACK_DIVISOR: usize = 16;
/// How long past its deadline (or the moment its pace was due) a request's reads may still
/// find bytes: what the client sent in time may wait in the socket while this thread did not
/// run. Past it, the request is cut off whatever arrives: every look that found a byte used to
/// allow another, so a client sending a byte a millisecond kept its share of the budget, and
/// its connection, for hours.
const LATE_LOOK: Duration = Duration::from_millis(100);
/// The longest an answer's write waits in one send: shorter than `connections::ANSWER_STALL`,
/// so that an answer that moves is seen to move.
const ANSWER_STEP: Duration = Duration::from_secs(1);
/// A client that takes no bytes of its answer for this long is cut off: it would otherwise hold
/// its thread, its connection slot and the answer, and keep a stop from finishing.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn serve_client(
    server: &Server,
    connection: &Arc<connections::Connection>,
) -> std::io::Result<()> {
    let stream = connection.stream();
    stream.set_nodelay(true)?;
    let mut input = BufReader::new(SharedStream(connection.clone()));
    // A stop ends the reading of the socket, but requests already buffered (or sent after the
    // shutdown) would still be read: the flag ends the loop between requests.
    while !server.stopping.load(Ordering::Acquire) {
        let Some(request) = read_request(server, connection, &mut input)? else {
            break;
        };
        // From here to its answer the connection keeps its slot; until here a newcomer could
        // take it, and then the request is not handled (its client sees the connection closed).
        if !connection.start_request() {
            break;
        }
        // The budget's bytes a READ answer holds until it is written.
        let mut answer_share = server.request_budget.none();
        let Request { op, body, held } = request;
        // Each arm keeps the request's share of the budget until its answer is built (an
        // APPEND may give it back sooner), and the body with it.
        let (status, reply) = match (op, held) {
            // Read and dropped: nothing was made of it, which a MEMBERSHIP is told (NOT_MADE),
            // since its client does not send a change again after a RETRY.
            (op, None) => (
                if op == proto::OP_MEMBERSHIP {
                    proto::NOT_MADE
                } else {
                    proto::RETRY
                },
                format!(
                    "operation {op} not handled: the node's memory for requests stayed full for \
                     {:?}; try again later",
                    server.request_timeout
                )
                .into_bytes(),
            ),
            (proto::OP_APPEND, Some(held)) => append(server, body, held),
            (proto::OP_READ, Some(_held)) => read(server, &body, &mut answer_share),
            (proto::OP_STATUS, Some(_held)) => (proto::OK, status_json(server).into_bytes()),
            (proto::OP_MEMBERSHIP, Some(_held)) => membership(server, &body),
            (other, Some(_held)) => (
                proto::ERROR,
                format!("unknown operation {other}").into_bytes(),
            ),
        };
        // Handled: its bytes went back to the budget before the answer is written, which may
        // take as long as the client's reading.
        {
            let answering = server.connections.answering(connection);
            write_answer(stream, status, &reply, &answering, &answer_share)?;
        }
        server.connections.waiting(connection);
    }
    Ok(())
}

/// A client's socket, read by its thread while the stop may shut it down.
struct SharedStream(Arc<connections::Connection>);

impl Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.stream().read(buf)
    }
}

/// Writes an answer, whole within `CLIENT_WRITE_TIMEOUT`: a client that takes a few bytes of it
/// now and then cannot hold its thread, its slot and the answer's memory for longer. Header and
/// body go out as they are, without a copy of the body.
///
/// An answer holding bytes of the request budget (`share`, a large READ's) is cut off sooner:
/// once its client has stalled (`connections::ANSWER_STALL`) while another connection waits for
/// room. A few READs left unread otherwise held the budget for the whole write timeout, and
/// kept every large request waiting that long, at the cost of a few tiny requests every 30 s
/// (found by review on 2026-12-05).
fn write_answer(
    stream: &TcpStream,
    status: u8,
    body: &[u8],
    answering: &connections::Answering<'_>,
    share: &budget::Held<'_>,
) -> std::io::Result<()> {
    let deadline = Instant::now() + CLIENT_WRITE_TIMEOUT;
    let header = proto::message_header(status, body.len());
    let mut parts = [IoSlice::new(&header), IoSlice::new(body)];
    let mut parts = &mut parts[..];
    while !parts.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client did not take its answer within {CLIENT_WRITE_TIMEOUT:?}"),
            )
        };
        if left.is_zero() {
            return Err(timed_out());
        }
        // A blocking send returns once all of it is in the socket's buffer, or at its timeout
        // with what went: in steps of `ANSWER_STEP`, a large answer its client reads steadily
        // over a slow link shows its progress, and is not taken for one that stalled.
        stream.set_write_timeout(Some(left.min(ANSWER_STEP)))?;
        match (&*stream).write_vectored(parts) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                // Moving, at `connections::ANSWER_PACE_BYTES` per `ANSWER_STALL` or more: not
                // to be closed for a newcomer.
                answering.moved(n);
                IoSlice::advance_slices(&mut parts, n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Nothing went in this step: the next one, until the deadline.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        if !parts.is_empty() && answering.stalled() && share.wanted() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client took less than {} KiB of its answer in {:?} while other \
                     requests waited for the memory the answer holds",
                    connections::ANSWER_PACE_BYTES >> 10,
                    answering.stall()
                ),
            ));
        }
    }
    Ok(())
}

/// A request as [`read_request`] read it.
struct Request<'s> {
    op: u8,
    body: Vec<u8>,
    /// Its bytes in the request budget; `None` if there was no room in time (the body was
    /// read and dropped, and the answer is RETRY).
    held: Option<budget::Held<'s>>,
}

/// Reads a client's next request: waits up to `CLIENT_IDLE_TIMEOUT` for its first byte, then up
/// to the server's request timeout for its length, as long for room in the request budget, and
/// as long again for its body. `None` if the client closed the connection between requests, or
/// a new connection took its slot (`connections.rs`), which shuts the socket down.
fn read_request<'s>(
    server: &'s Server,
    connection: &connections::Connection,
    input: &mut BufReader<SharedStream>,
) -> std::io::Result<Option<Request<'s>>> {
    connection
        .stream()
        .set_read_timeout(Some(CLIENT_IDLE_TIMEOUT))?;
    if input.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let timeout = server.request_timeout;
    let deadline = std::cell::Cell::new(Instant::now() + timeout);
    let pace = std::cell::Cell::new(None);
    let mut reader = RequestReader {
        input,
        timeout,
        deadline: &deadline,
        pace: &pace,
    };
    let hold = |len: usize| {
        if len <= budget::UNBUDGETED_BYTES {
            return Ok(Some(server.request_budget.none()));
        }
        let taken = server
            .request_budget
            .take_unless(len, Instant::now() + timeout, || {
                server.stopping.load(Ordering::Acquire) || connection.taken()
            });
        // Waiting for room is not the client's slowness: its body gets a deadline of its own.
        deadline.set(Instant::now() + timeout);
        match taken {
            budget::Taken::Held(held) => {
                pace.set(Some(Pace {
                    since: Instant::now(),
                    body_bytes: len,
                    arrived: 0,
                }));
                Ok(Some(held))
            }
            budget::Taken::Busy => Ok(None),
            budget::Taken::Stopping => Err(std::io::Error::other(
                "the node is stopping, or a new connection took this one's slot",
            )),
        }
    };
    // A request's first bytes arrive before it may take room (connections hold that much
    // uncounted anyway), and the rest at a pace (`BODY_PACE_SLACK_DIVISOR`).
    let message = proto::read_message_holding(
        &mut reader,
        proto::REQUEST_BYTES_MAX,
        budget::UNBUDGETED_BYTES,
        hold,
    )?;
    Ok(message.map(|(op, body, held)| Request { op, body, held }))
}

/// A client's socket read with a deadline for the request being read.
struct RequestReader<'a> {
    input: &'a mut BufReader<SharedStream>,
    timeout: Duration,
    deadline: &'a std::cell::Cell<Instant>,
    /// Set once the request's body holds bytes of the budget.
    pace: &'a std::cell::Cell<Option<Pace>>,
}

/// The pace a body holding bytes of the request budget must keep (`BODY_PACE_SLACK_DIVISOR`).
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// When its bytes were taken.
    since: Instant,
    body_bytes: usize,
    /// Bytes of the body read since.
    arrived: usize,
}

impl Pace {
    /// When the body must hold more than `arrived` bytes: the moment at which the whole body,
    /// arriving evenly over `timeout`, would be the slack ahead of `arrived`.
    fn next_byte_due(&self, timeout: Duration) -> Instant {
        let slack = self.body_bytes / BODY_PACE_SLACK_DIVISOR;
        let share = (self.arrived + slack) as f64 / self.body_bytes as f64;
        self.since + timeout.mul_f64(share.min(1.0))
    }
}

impl Read for RequestReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let now = Instant::now();
        let paced = self
            .pace
            .get()
            .map(|pace| (pace, pace.next_byte_due(self.timeout)));
        let cut_off = || {
            let message = match paced {
                Some((pace, due)) if due < self.deadline.get() => format!(
                    "a request of {} bytes arrived too slowly: {} bytes of it in {:?}, \
                     where a request holding memory must keep the pace that brings it whole \
                     within {:?}",
                    pace.body_bytes,
                    pace.arrived,
                    pace.since.elapsed(),
                    self.timeout
                ),
                _ => format!(
                    "a request did not arrive within {:?} (its length from its first byte, its \
                     body from when there was room for it)",
                    self.timeout
                ),
            };
            std::io::Error::new(std::io::ErrorKind::TimedOut, message)
        };
        // Only a read that reaches the socket can wait.
        if self.input.buffer().is_empty() {
            let until = match paced {
                Some((_, due)) => due.min(self.deadline.get()),
                None => self.deadline.get(),
            };
            // Past it, a last look (`LATE_LOOK`): a client is judged by what it sent, not by
            // what this thread got round to reading.
            if now >= until + LATE_LOOK {
                return Err(cut_off());
            }
            let left = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            self.input
                .get_ref()
                .0
                .stream()
                .set_read_timeout(Some(left))?;
        }
        match self.input.read(buf) {
            Ok(n) => {
                if let Some(pace) = paced {
                    self.pace.set(Some(Pace {
                        arrived: pace.0.arrived + n,
                        ..pace.0
                    }));
                }
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(cut_off())
            }
            Err(e) => Err(e),
        }
    }
}

/// The NOT_LEADER answer: the leader's id (0 if none is known) and, where this node has one,
/// its client address (from the `peer` lines as last read).
pub(super) fn not_leader(server: &Server, leader: Option<NodeId>) -> (u8, Vec<u8>) {
    let mut body = leader.unwrap_or(0).to_le_bytes().to_vec();
    let address = leader.and_then(|l| {
        if l == server.settings.id {
            // Listening on every interface (`0.0.0.0`, `[::]`) names no address a client can
            // use: followed from another machine, it reaches that machine's own port; nor does
            // port 0 (the port the system chose is not in the settings). Without one, the
            // client asks the node it was given again.
            Some(server.settings.client_listen)
                .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
        } else {
            server.peers.read().get(&l).map(|p| p.1)
        }
    });
    if let Some(address) = address {
        body.extend_from_slice(address.to_string().as_bytes());
    }
    (proto::NOT_LEADER, body)
}

/// `OP_MEMBERSHIP`: proposes the change on the leader and answers its LSN once the change
/// entry committed (the entry of the epoch it was proposed in; one a new leader put in its
/// place is answered NOT_LEADER: nothing changed) and this node applied it. Not idempotent: a
/// change sent again after its outcome was unknown may be refused, or be a change of nothing;
/// `rwal client` does not send one twice.
fn membership(server: &Server, body: &[u8]) -> (u8, Vec<u8>) {
    let mut body = proto::Body(body);
    let (change, id) = match (body.u8("change"), body.u64("node id")) {
        (Ok(change), Ok(id)) => (change, id),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    if let Err(e) = body.end("a MEMBERSHIP") {
        return error(e);
    }
    let change = match change {
        proto::MEMBERSHIP_ADD_VOTER => MembershipChange::AddVoter(id),
        proto::MEMBERSHIP_ADD_LEARNER => MembershipChange::AddLearner(id),
        proto::MEMBERSHIP_REMOVE => MembershipChange::Remove(id),
        other => return error(format!("unknown membership change {other}")),
    };
    // An addition carries the new member's peer address from this node's `peer` lines, or
    // the one its transport dials (learned from an earlier change): a member without one
    // learns it as it applies the change.
    let address = match change {
        MembershipChange::Remove(_) => None,
        MembershipChange::AddVoter(_) | MembershipChange::AddLearner(_) => server
            .peers
            .read()
            .get(&id)
            .map(|(peer, _)| *peer)
            .or_else(|| server.network.peer_addr(id))
            .map(|peer| peer.to_string()),
    };
    let (lsn, epoch) = match server.node.change_membership_at(change, address.as_deref()) {
        Ok(proposed) => proposed,
        Err(Error::NotLeader { leader }) => return not_leader(server, leader),
        Err(e @ Error::InvalidArgument { .. }) => return error(e.to_string()),
        // Nothing was proposed: sending it again is safe, which RETRY would not say.
        Err(e) => return not_made(e),
    };
    let retry = |message: String| (proto::RETRY, message.into_bytes());
    let deadline = Instant::now() + APPEND_TIMEOUT;
    match server.node.wait_committed(lsn, epoch, APPEND_TIMEOUT) {
        Ok(()) => {}
        // A new leader's entry took its place: nothing changed, and this node no longer
        // leads. Like any NOT_LEADER, a definite "not made": the client sends it to the leader.
        Err(Error::Superseded { .. }) => return not_leader(server, server.node.leader()),
        Err(e) => {
            return retry(format!(
                "the change proposed at LSN {lsn} is not known to be made ({e}): look at the \
                 status before sending it again"
            ))
        }
    }
    // Committed: the change is made. It is answered once this node shows it too (or stopped).
    let (status, applied) = server
        .node
        .wait_status(deadline.saturating_duration_since(Instant::now()), |s| {
            s.applied_lsn >= lsn || s.failure.is_some()
        });
    if status.applied_lsn >= lsn {
        (proto::OK, lsn.to_le_bytes().to_vec())
    } else {
        let why = if applied { "stopped" } else { "timed out" };
        retry(format!(
            "the change at LSN {lsn} is made (committed), but this node {why} before it \
             applied it (applied: {}): do not send it again, the status shows it once applied",
            status.applied_lsn
        ))
    }
}

/// The answer to a MEMBERSHIP the node did not propose, failing with `e`.
fn not_made(e: Error) -> (u8, Vec<u8>) {
    (
        proto::NOT_MADE,
        format!("the change was not proposed ({e}): it may be sent again").into_bytes(),
    )
}

fn error(message: impl Into<String>) -> (u8, Vec<u8>) {
    (proto::ERROR, message.into().into_bytes())
}

fn lsn_epoch(lsn: Lsn, epoch: u64) -> (u8, Vec<u8>) {
    let mut body = lsn.to_le_bytes().to_vec();
    body.extend_from_slice(&epoch.to_le_bytes());
    (proto::OK, body)
}

/// The answer for (client, request) if the engine applied it: its first copy's LSN and epoch.
fn applied_answer(
    server: &Server,
    client: u64,
    request: u64,
    digest: u64,
) -> Option<Result<(Lsn, u64), String>> {
    server.engine.state.0.lock().answer(client, request, digest)
}

/// An append being handled by this node, by (client, request), with the `data_digest` of
/// its data (a copy with other data is refused, not answered with this one's LSN).
#[derive(Clone, Copy)]
pub(super) struct Inflight {
    digest: u64,
    state: InflightState,
}

#[derive(Clone, Copy)]
enum InflightState {
    /// A thread is proposing it: copies arriving meanwhile wait instead of proposing again.
    Proposing,
    /// Proposed at this LSN and epoch, not yet answered.
    Proposed((Lsn, u64)),
}

/// What `reserve` found for a request.
enum Reserved {
    /// Nobody is handling it: the caller proposes it (its entry says `Proposing`).
    Ours,
    /// A copy is applied: the table's answer.
    Applied(Result<(Lsn, u64), String>),
    /// Another copy was proposed here: the caller waits for that one.
    InFlight((Lsn, u64)),
    /// Another copy is still being proposed after the append timeout.
    TimedOut,
    /// A copy with other data is in flight under the same request id.
    OtherData,
}

/// Makes the check for a copy in flight and the claim to propose one step, so that copies of a
/// request arriving at once (a client retrying on several connections) are proposed once.
fn reserve(server: &Server, key: (u64, u64), digest: u64) -> Reserved {
    let deadline = Instant::now() + APPEND_TIMEOUT;
    let mut inflight = server.inflight.lock();
    loop {
        match inflight.get(&key) {
            Some(found) if found.digest != digest => return Reserved::OtherData,
            Some(Inflight {
                state: InflightState::Proposed(found),
                ..
            }) => return Reserved::InFlight(*found),
            Some(Inflight {
                state: InflightState::Proposing,
                ..
            }) => {
                if server
                    .inflight_proposed
                    .wait_until(&mut inflight, deadline)
                    .timed_out()
                {
                    return Reserved::TimedOut;
                }
            }
            None => {
                // Checked again under this lock: the copy that was in flight may have been
                // applied (and its entry removed) since the caller's first look.
                if let Some(answer) = applied_answer(server, key.0, key.1, digest) {
                    return Reserved::Applied(answer);
                }
                let state = InflightState::Proposing;
                inflight.insert(key, Inflight { digest, state });
                return Reserved::Ours;
            }
        }
    }
}

/// Answers an APPEND. `held` is the request's share of the request budget: given back, with
/// the body, once the copy no longer needs them (a copy that waits for another copy in flight
/// waits without them, though not while that copy is still being proposed, which it may have
/// to replace if that proposal fails: a client that gave up and retried, or left, held its retries' bytes
/// for as long as the first copy's wait, up to `APPEND_TIMEOUT`, until 2026-12-06). A copy
/// that proposes keeps its share until it is answered: the budget also bounds what the node
/// takes in and has not committed yet.
fn append(server: &Server, body: Vec<u8>, held: budget::Held<'_>) -> (u8, Vec<u8>) {
    let mut fields = proto::Body(&body);
    let (client, request) = match (fields.u64("client id"), fields.u64("request id")) {
        (Ok(c), Ok(r)) => (c, r),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    let data = fields.rest();
    let digest = data_digest(data);
    if let Some(answer) = applied_answer(server, client, request, digest) {
        return match answer {
            Ok((lsn, epoch)) => lsn_epoch(lsn, epoch),
            Err(e) => error(e),
        };
    }
    let key = (client, request);
    // `proposer`: this copy proposed the record, and owns the entry of `inflight`.
    let (found, proposer) = match reserve(server, key, digest) {
        Reserved::InFlight(found) => {
            drop((body, held));
            (found, false)
        }
        Reserved::Applied(Ok((lsn, epoch))) => return lsn_epoch(lsn, epoch),
        Reserved::Applied(Err(e)) => return error(e),
        Reserved::TimedOut => {
            return (
                proto::RETRY,
                b"another copy of this request is still being proposed".to_vec(),
            )
        }
        Reserved::OtherData => {
            return error(format!(
                "request {request} of client {client} is being appended with other data: a \
                 request id must not be reused for other data"
            ))
        }
        Reserved::Ours => {
            let proposed = server
                .node
                .propose(&proto::encode_record(client, request, data));
            {
                let mut inflight = server.inflight.lock();
                match &proposed {
                    Ok(found) => {
                        if let Some(entry) = inflight.get_mut(&key) {
                            entry.state = InflightState::Proposed(*found);
                        }
                    }
                    Err(_) => {
                        inflight.remove(&key);
                    }
                }
            }
            server.inflight_proposed.notify_all();
            match proposed {
                Ok(found) => (found, true),
                Err(Error::NotLeader { leader }) => return not_leader(server, leader),
                Err(e @ Error::InvalidArgument { .. }) => return error(e.to_string()),
                // Nothing was proposed: sending it again is safe.
                Err(e) => return (proto::RETRY, e.to_string().into_bytes()),
            }
        }
    };
    let outcome = server.node.wait_committed(found.0, found.1, APPEND_TIMEOUT);
    let answer = answer_committed(server, (client, request, digest), found, outcome);
    if proposer {
        // Only the proposing copy removes the entry: a copy that waited on it could otherwise
        // remove the entry of a later copy. Removed once answered, which waits until the copy
        // is applied: removed at commit, a retry in between would find neither the entry nor
        // the client table's line for it, and propose a second copy.
        server.inflight.lock().remove(&key);
    }
    answer
}

/// The answer to an append whose copy was proposed at `(lsn, epoch)`, once the wait for its
/// commit ended with `outcome`.
fn answer_committed(
    server: &Server,
    (client, request, digest): (u64, u64, u64),
    (lsn, epoch): (Lsn, u64),
    outcome: Result<(), Error>,
) -> (u8, Vec<u8>) {
    // Whether the entry at `lsn` is known to be this copy: `Compacted` means the LSN is behind
    // the log's start (a snapshot installed past it, say), and the entry there may be another
    // (a new leader's) if this copy was lost in a change of leader. Only the client table can
    // answer then.
    let ours = match outcome {
        Ok(()) => true,
        Err(Error::Wal(rwal_wal::Error::Compacted { .. })) => false,
        // ERROR would say retrying cannot help, and a client would send its data again under
        // a new id: whatever the outcome is unknown for is RETRY.
        Err(e) => return (proto::RETRY, e.to_string().into_bytes()),
    };
    // Committed: answer with the copy the engine applied (this one, or an earlier one).
    let deadline = Instant::now() + APPEND_TIMEOUT;
    let (state, applied) = &*server.engine.state;
    let mut guard = state.lock();
    while guard.applied < lsn {
        if applied.wait_until(&mut guard, deadline).timed_out() {
            return (proto::RETRY, b"committed, not yet applied here".to_vec());
        }
    }
    let first_copy =
        ours && lsn >= guard.duplicates_complete_from && !guard.duplicates.contains(&lsn);
    drop(guard);
    if first_copy {
        // This copy is the one applied and returned by READ, whatever the client table says
        // by now (a later request of the same client applied meanwhile, or the client
        // forgotten).
        return lsn_epoch(lsn, epoch);
    }
    match applied_answer(server, client, request, digest) {
        Some(Ok((lsn, epoch))) => lsn_epoch(lsn, epoch),
        Some(Err(e)) => error(e),
        // Not known to be in the log: sending it again is what the client must do.
        None if !ours => (
            proto::RETRY,
            format!(
                "LSN {lsn} was compacted away while this append waited, and this node has no \
                 record of the request having been applied: it may have been lost in a change \
                 of leader"
            )
            .into_bytes(),
        ),
        None => error(format!(
            "committed at LSN {lsn} as a second copy of an earlier one this node no longer \
             remembers (the client table forgot the client): the data is in the log once"
        )),
    }
}

/// Answers a READ. Its answer is built in place, and beyond `budget::UNBUDGETED_BYTES` it takes
/// its bytes from the request budget as it grows (`share`, held until the answer is written):
/// without room it ends after the records it holds, or, with none yet, is answered RETRY.
fn read<'s>(server: &'s Server, body: &[u8], share: &mut budget::Held<'s>) -> (u8, Vec<u8>) {
    let mut body = proto::Body(body);
    let (from, max, mode) = match (body.u64("from"), body.u32("max"), body.u8("mode")) {
        (Ok(f), Ok(m), Ok(mode)) => (f, m.min(READ_RECORDS_MAX), mode),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return error(e),
    };
    if let Err(e) = body.end("a READ") {
        return error(e);
    }
    // An answer with no record means the end of the log: it cannot answer a read of none.
    if max == 0 {
        return error("max: a READ asks for at least one record".to_string());
    }
    match mode {
        proto::READ_STALE => {}
        proto::READ_LINEARIZABLE => {
            if let Err(e) = server.node.read_barrier(APPEND_TIMEOUT) {
                return read_failed(server, e);
            }
        }
        other => return error(format!("unknown read mode {other}")),
    }
    // 0: from the oldest record this node retains.
    let oldest = from == 0;
    let from = if oldest {
        server.node.status().first_lsn
    } else {
        from
    };
    let mut reader = match server.node.reader(from) {
        Ok(reader) => reader,
        // Compacted between the look at the log's start and the reader: there is a new start.
        Err(Error::Wal(rwal_wal::Error::Compacted { .. })) if oldest => {
            return (
                proto::RETRY,
                b"the log was compacted as the read began: ask again".to_vec(),
            )
        }
        // Past the end of this node's log (a stale read of a follower behind the node the
        // client read from before): nothing there yet, as at the end itself.
        Err(Error::Wal(rwal_wal::Error::NotFound { .. })) if !oldest => {
            return (proto::OK, 0u32.to_le_bytes().to_vec())
        }
        Err(e) => return read_failed(server, e),
    };
    // Up to what the engine has applied (so its list of duplicates covers every record read).
    // The list is consulted a window at a time: copying the whole stretch at once would hold
    // the engine's lock (which the node's thread needs to apply) for as long as the list is.
    let applied = server.engine.state.0.lock().applied;
    let mut duplicates = BTreeSet::new();
    let mut window_end: Lsn = 0;
    // The count first, filled in at the end; allocated only as far as the share allows.
    let mut reply = Vec::with_capacity(budget::UNBUDGETED_BYTES);
    reply.extend_from_slice(&0u32.to_le_bytes());
    let mut allowed = budget::UNBUDGETED_BYTES;
    let mut count = 0u32;
    while count < max {
        // The record is copied out of the log only if the share holds it (what the reader
        // reads ahead included: at most as much again).
        let room = allowed.saturating_sub(reply.len() + 20);
        let record = match reader.next_at_most(room) {
            Ok(Some(Bounded::Record(record))) if record.lsn <= applied => record,
            Ok(Some(Bounded::Larger { lsn, bytes })) if lsn <= applied => {
                let needed = reply.len() + 20 + bytes;
                // The reply stays within the limit (a first record always goes: appends are
                // smaller). Its data is the record's without the two ids, as checked below.
                if count > 0 && needed - 4 - 16 > READ_BYTES_MAX {
                    break;
                }
                // In steps, so that the budget's lock is not taken for every record.
                let more = needed.saturating_sub(allowed);
                if more == 0 {
                    // The reader would have returned it: a bug, not a busy node.
                    return error(format!(
                        "the log's reader held back record {lsn} of {bytes} bytes though there \
                         was room for it"
                    ));
                }
                // Half again as much, at least a step: a large answer is copied a few times as
                // it grows, not once per step.
                let step = more.max(READ_SHARE_STEP).max(allowed / 2);
                let grown = if share.try_grow(step) {
                    Some(step)
                } else {
                    share.try_grow(more).then_some(more)
                };
                if let Some(grown) = grown {
                    allowed += grown;
                    reply.reserve_exact(allowed - reply.len());
                    continue;
                }
                if count > 0 {
                    break;
                }
                return (
                    proto::RETRY,
                    format!(
                        "no memory for a record of {bytes} bytes now: the node's memory for \
                         requests and answers is taken; try again later"
                    )
                    .into_bytes(),
                );
            }
            Ok(_) => break,
            // A snapshot installed under the reader: what was read is still committed.
            Err(Error::Wal(rwal_wal::Error::Compacted { .. })) if count > 0 => break,
            // Nothing yet, from the oldest record: the log has a new start.
            Err(Error::Wal(rwal_wal::Error::Compacted { .. })) if oldest => {
                return (
                    proto::RETRY,
                    b"the log was compacted as the read began: ask again".to_vec(),
                )
            }
            Err(e) => return read_failed(server, e),
        };
        if record.lsn > window_end {
            window_end = record.lsn.saturating_add(DUPLICATES_WINDOW - 1);
            let state = server.engine.state.0.lock();
            duplicates = state
                .duplicates
                .range(record.lsn..=window_end)
                .copied()
                .collect();
        }
        if record.kind != RecordKind::User || duplicates.contains(&record.lsn) {
            continue;
        }
        let Some((_, _, data)) = proto::decode_record(&record.data) else {
            continue;
        };
        if count > 0 && reply.len() + 20 + data.len() - 4 > READ_BYTES_MAX {
            break;
        }
        reply.extend_from_slice(&record.lsn.to_le_bytes());
        reply.extend_from_slice(&record.epoch.to_le_bytes());
        reply.extend_from_slice(&(data.len() as u32).to_le_bytes());
        reply.extend_from_slice(data);
        count += 1;
    }
    reply[..4].copy_from_slice(&count.to_le_bytes());
    (proto::OK, reply)
}

/// The answer to a READ that failed with `e`: RETRY for what may pass (no leader confirmed the
/// read point in time, the node busy or stopping), NOT_LEADER where the node knows who can
/// serve it, ERROR for what asking again cannot change (an LSN compacted away, a record
/// damaged, bad arguments). A read changes nothing, so RETRY costs the client only time.
fn read_failed(server: &Server, e: Error) -> (u8, Vec<u8>) {
    match e {
        Error::NotLeader { leader } => not_leader(server, leader),
        Error::Timeout { .. }
        | Error::Busy { .. }
        | Error::Backlogged { .. }
        | Error::Closed
        | Error::Wal(rwal_wal::Error::Closed) => (proto::RETRY, e.to_string().into_bytes()),
        e => error(e.to_string()),
    }
}

/// How much a READ answer's share of the budget grows at a time.
const READ_SHARE_STEP: usize = 256 << 10;

fn status_json(server: &Server) -> String {
    let s = server.node.status();
    let role = match s.role {
        Role::Leader => "leader",
        Role::Candidate => "candidate",
        Role::Follower if s.membership.learners.contains(&s.id) => "learner",
        Role::Follower => "follower",
    };
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let progress = s
        .progress
        .iter()
        .map(|(id, lsn)| format!("\"{id}\":{lsn}"))
        .collect::<Vec<_>>()
        .join(",");
    let net = server.network.stats();
    format!(
        "{{\"id\":{},\"role\":\"{role}\",\"term\":{},\"leader\":{},\"commit_lsn\":{},\
         \"applied_lsn\":{},\"first_lsn\":{},\"last_lsn\":{},\"voters\":[{}],\"learners\":[{}],\
         \"progress\":{{{progress}}},\"peers_connected\":{},\"connections_refused\":{}}}",
        s.id,
        s.term,
        s.leader.unwrap_or(0),
        s.commit_lsn,
        s.applied_lsn,
        s.first_lsn,
        s.last_lsn,
        list(&s.membership.voters),
        list(&s.membership.learners),
        net.peers_connected,
        net.connections_refused,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    use crate::node::accept_clients;
    use crate::node::test_support::{
        close, hold, serve_one, single_node_server, someone_elses_record,
    };

    /// A NOT_LEADER naming this node (a proposal superseded, the node leading again) gives its
    /// client address only where a client can use it: not a wildcard (found by review), nor
    /// port 0.
    #[test]
    fn a_not_leader_naming_this_node_gives_no_wildcard_address() {
        let (mut server, dir) = single_node_server("not-leader-wildcard");
        let me = server.settings.id;
        let answer = |server: &Server| {
            let (code, body) = not_leader(server, Some(me));
            assert_eq!(code, proto::NOT_LEADER);
            let mut b = proto::Body(&body);
            assert_eq!(b.u64("leader").unwrap(), me);
            String::from_utf8(b.rest().to_vec()).unwrap()
        };
        server.settings.client_listen = "10.1.2.3:7101".parse().unwrap();
        assert_eq!(answer(&server), "10.1.2.3:7101");
        server.settings.client_listen = "0.0.0.0:7101".parse().unwrap();
        assert_eq!(answer(&server), "");
        server.settings.client_listen = "[::]:7101".parse().unwrap();
        assert_eq!(answer(&server), "");
        // Nor port 0 (found by review on 2026-12-07).
        server.settings.client_listen = "127.0.0.1:0".parse().unwrap();
        assert_eq!(answer(&server), "");
        close(server, dir);
    }

    /// Connections that sit idle, or send a request a byte at a time, cannot keep clients out:
    /// with every slot taken, a new connection closes the one whose last request was answered
    /// longest ago (or that has had none), and is served. A request half sent is not handled.
    #[test]
    fn idle_connections_give_their_slots_to_new_ones() {
        let (mut server, dir) = single_node_server("idle-slots");
        server.connections = connections::Connections::new(2);
        let server = Arc::new(server);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = {
            let server = server.clone();
            std::thread::spawn(move || accept_clients(&server, &listener))
        };
        let connect = || {
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            (stream.try_clone().unwrap(), BufReader::new(stream))
        };
        let status = |(output, input): &mut (TcpStream, BufReader<TcpStream>)| {
            proto::write_message(output, proto::OP_STATUS, &[])?;
            proto::read_message(input, proto::RESPONSE_BYTES_MAX)
        };
        let served = |connection: &mut (TcpStream, BufReader<TcpStream>)| {
            let (code, body) = status(connection).unwrap().unwrap();
            assert_eq!(code, proto::OK, "{}", String::from_utf8_lossy(&body));
        };
        // Until `served` connections are served, none of them handling a request: the order in
        // which they wait is then the order of the steps below.
        let settled = |served: usize| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while server.connections.len() != served || !server.connections.none_busy() {
                assert!(Instant::now() < deadline, "the connections never settled");
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        // Closed by the node: the end of the stream (or a reset), not a read that timed out.
        let closed = |connection: &mut (TcpStream, BufReader<TcpStream>)| match proto::read_message(
            &mut connection.1,
            proto::RESPONSE_BYTES_MAX,
        ) {
            Ok(None) => true,
            Ok(Some(_)) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        let mut idle = connect();
        served(&mut idle);
        settled(1);
        // The second slot: a connection sending a request, its length and nothing more.
        let mut trickling = connect();
        trickling.0.write_all(&100u32.to_le_bytes()).unwrap();
        settled(2);
        // The idle one answered longest ago: its slot goes to the newcomer.
        let mut newcomer = connect();
        served(&mut newcomer);
        assert!(closed(&mut idle), "the idle connection was still served");
        settled(2);
        // Then the one sending a byte now and then, which has never had a request answered.
        let mut another = connect();
        served(&mut another);
        assert!(
            closed(&mut trickling),
            "the half-sent request held its slot"
        );
        served(&mut newcomer);
        drop((idle, trickling, newcomer, another));
        server.connections.stop(&server.stopping);
        let _ = TcpStream::connect(addr);
        acceptor.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Arc::strong_count(&server) > 1 {
            assert!(
                Instant::now() < deadline,
                "client threads still hold the server"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        close(Arc::try_unwrap(server).ok().unwrap(), dir);
    }

    /// A connection waiting for room in the request budget, whose slot a newcomer takes, stops
    /// waiting at once: it used to wait out the request timeout, its thread and descriptor
    /// outside the connection count, and a stream of such connections piled them up.
    #[test]
    fn a_connection_closed_while_it_waits_for_room_stops_waiting() {
        let (mut server, dir) = single_node_server("closed-waiting");
        server.connections = connections::Connections::new(1);
        server.request_timeout = Duration::from_secs(60);
        server.request_budget = budget::RequestBudget::new(1 << 20);
        let server = Arc::new(server);
        let full = hold(&server, 1 << 20);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = {
            let server = server.clone();
            std::thread::spawn(move || accept_clients(&server, &listener))
        };
        let until = |what: &str, done: &dyn Fn() -> bool, within: Duration| {
            let deadline = Instant::now() + within;
            while !done() {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // An append of 1 MiB: its length and the first bytes that go uncounted, then it waits.
        let mut waiting = TcpStream::connect(addr).unwrap();
        waiting
            .write_all(&proto::message_header(proto::OP_APPEND, 1 << 20))
            .unwrap();
        waiting
            .write_all(&vec![0u8; budget::UNBUDGETED_BYTES])
            .unwrap();
        until(
            "the append never waited for room",
            &|| server.request_budget.waiting() == 1,
            Duration::from_secs(30),
        );
        let mut newcomer = TcpStream::connect(addr).unwrap();
        proto::write_message(&mut newcomer, proto::OP_STATUS, &[]).unwrap();
        let (code, _) = proto::read_message(&mut BufReader::new(&newcomer), 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(code, proto::OK);
        until(
            "the closed connection still waits for room",
            &|| server.request_budget.waiting() == 0,
            Duration::from_secs(5),
        );
        drop((full, waiting, newcomer));
        server.connections.stop(&server.stopping);
        let _ = TcpStream::connect(addr);
        acceptor.join().unwrap();
        until(
            "client threads still hold the server",
            &|| Arc::strong_count(&server) == 1,
            Duration::from_secs(30),
        );
        close(Arc::try_unwrap(server).ok().unwrap(), dir);
    }

    /// A client that sends part of a request and then stalls is cut off once the request
    /// timeout passes from its first byte, though bytes keep arriving now and then, and the
    /// bytes its request held are given back; a whole request on the next connection is served.
    #[test]
    fn a_request_that_arrives_too_slowly_is_cut_off_and_its_budget_given_back() {
        let (mut server, dir) = single_node_server("slow-request");
        server.request_timeout = Duration::from_millis(300);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::scope(|s| {
            let server = &server;
            let served = s.spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                let outcome = serve_one(server, stream);
                let (stream, _) = listener.accept().unwrap();
                (outcome, serve_one(server, stream))
            });
            let mut slow = TcpStream::connect(addr).unwrap();
            // An APPEND announcing 1000 bytes, sent a byte at a time, slower than the timeout.
            let mut message = 1000u32.to_le_bytes().to_vec();
            message.push(proto::OP_APPEND);
            let started = Instant::now();
            for byte in message.iter().chain(std::iter::repeat(&0u8)) {
                if std::io::Write::write_all(&mut slow, &[*byte]).is_err() {
                    break; // the node closed the connection
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the slow request was never cut off"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut fine = TcpStream::connect(addr).unwrap();
            proto::write_message(&mut fine, proto::OP_STATUS, &[]).unwrap();
            let mut reader = BufReader::new(fine.try_clone().unwrap());
            let (status, body) = proto::read_message(&mut reader, proto::RESPONSE_BYTES_MAX)
                .unwrap()
                .unwrap();
            assert_eq!(status, proto::OK, "{}", String::from_utf8_lossy(&body));
            drop((fine, reader));
            let (slow_outcome, fine_outcome) = served.join().unwrap();
            let error = slow_outcome.unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
            assert!(error.to_string().contains("300ms"), "{error}");
            fine_outcome.unwrap();
        });
        assert_eq!(server.request_budget.held(), 0);
        close(server, dir);
    }

    /// With the request budget full for longer than the request timeout, a request is read,
    /// dropped and answered RETRY, and the connection serves the next request once there is
    /// room again.
    #[test]
    fn a_request_that_finds_no_room_is_answered_retry_and_the_connection_goes_on() {
        let (mut server, dir) = single_node_server("no-room");
        server.request_timeout = Duration::from_millis(200);
        server.request_budget = budget::RequestBudget::new(1 << 20);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::scope(|s| {
            let server = &server;
            let full = hold(server, 1 << 20);
            let served = s.spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                serve_one(server, stream)
            });
            let client = TcpStream::connect(addr).unwrap();
            let mut output = client.try_clone().unwrap();
            let mut input = BufReader::new(client);
            let mut ask_with = |op: u8, body: &[u8]| {
                proto::write_message(&mut output, op, body).unwrap();
                proto::read_message(&mut input, proto::RESPONSE_BYTES_MAX)
                    .unwrap()
                    .unwrap()
            };
            // A STATUS with a body larger than what goes uncounted: read and dropped when there
            // is no room.
            let large = vec![7; budget::UNBUDGETED_BYTES + 1];
            let (status, body) = ask_with(proto::OP_STATUS, &large);
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, proto::RETRY, "{body}");
            assert!(body.contains("memory for requests"), "{body}");
            // A MEMBERSHIP dropped so is told that nothing was made of it: its client sends a
            // change again after NOT_MADE, never after RETRY.
            let (status, body) = ask_with(proto::OP_MEMBERSHIP, &large);
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, proto::NOT_MADE, "{body}");
            let mut ask = |body: &[u8]| ask_with(proto::OP_STATUS, body);
            // A small one is served all the same: a budget held by large requests (whose
            // bodies may trickle in) does not shut every client out.
            let (status, body) = ask(&[7; 500]);
            assert_eq!(status, proto::OK, "{}", String::from_utf8_lossy(&body));
            drop(full);
            let (status, body) = ask(&large);
            assert_eq!(status, proto::OK, "{}", String::from_utf8_lossy(&body));
            drop((output, input));
            served.join().unwrap().unwrap();
        });
        assert_eq!(server.request_budget.held(), 0);
        close(server, dir);
    }

    /// A large request takes no room in the budget until its first bytes (as many as go
    /// uncounted) have arrived, and then must arrive at the pace that brings it whole within
    /// the request timeout: one that announces 16 MiB and sends nothing holds nothing, and one
    /// that sends its first 64 KiB and stalls is cut off once its next mebibyte was due (a
    /// sixteenth of the timeout), not at the end of the timeout; a large request waiting for
    /// that room is served.
    #[test]
    fn a_large_request_that_does_not_keep_its_pace_gives_its_budget_back_early() {
        let (mut server, dir) = single_node_server("paced-request");
        server.request_timeout = Duration::from_secs(8);
        server.request_budget = budget::RequestBudget::new(16 << 20);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let announce = |stream: &mut TcpStream, sent: usize| {
            let mut bytes = (16u32 << 20).to_le_bytes().to_vec();
            bytes.push(proto::OP_STATUS);
            bytes.resize(4 + sent, 7);
            std::io::Write::write_all(stream, &bytes).unwrap();
        };
        let status_of_a_mebibyte = || {
            let fine = TcpStream::connect(addr).unwrap();
            fine.set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut output = fine.try_clone().unwrap();
            proto::write_message(&mut output, proto::OP_STATUS, &vec![7; 1 << 20]).unwrap();
            let mut input = BufReader::new(fine);
            let (status, body) = proto::read_message(&mut input, proto::RESPONSE_BYTES_MAX)
                .unwrap()
                .unwrap();
            assert_eq!(status, proto::OK, "{}", String::from_utf8_lossy(&body));
        };
        std::thread::scope(|s| {
            let server = &server;
            let served = s.spawn(move || {
                let mut outcomes = Vec::new();
                for _ in 0..4 {
                    let (stream, _) = listener.accept().unwrap();
                    outcomes.push(s.spawn(move || serve_one(server, stream)));
                }
                outcomes
                    .into_iter()
                    .map(|outcome| outcome.join().unwrap())
                    .collect::<Vec<_>>()
            });
            // Announces a message of the whole budget and sends only its first byte: it
            // takes no room, and a large request is served meanwhile.
            let mut silent = TcpStream::connect(addr).unwrap();
            announce(&mut silent, 1);
            status_of_a_mebibyte();
            assert_eq!(server.request_budget.held(), 0);
            // Sends what goes uncounted, then stalls: it takes the whole budget until cut off.
            let mut stalled = TcpStream::connect(addr).unwrap();
            announce(&mut stalled, budget::UNBUDGETED_BYTES);
            let started = Instant::now();
            while server.request_budget.held() < 16 << 20 {
                assert!(started.elapsed() < Duration::from_secs(30), "never held");
                std::thread::sleep(Duration::from_millis(5));
            }
            status_of_a_mebibyte();
            drop(silent);
            let outcomes = served.join().unwrap();
            let error = outcomes[2].as_ref().unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
            assert!(
                error
                    .to_string()
                    .contains("16777216 bytes arrived too slowly: 0 bytes"),
                "{error}"
            );
            for fine in [1, 3] {
                assert!(outcomes[fine].is_ok(), "{:?}", outcomes[fine]);
            }
            // The silent one ended with its connection, never having held anything to be cut
            // off for.
            let silent = outcomes[0].as_ref().unwrap_err();
            assert_eq!(silent.kind(), std::io::ErrorKind::UnexpectedEof, "{silent}");
            drop(stalled);
        });
        assert_eq!(server.request_budget.held(), 0);
        close(server, dir);
    }

    /// A large answer its client reads steadily, but slowly, is seen to move while one send
    /// waits on the socket, and its connection is not taken for a newcomer as one that
    /// stalled. The whole answer went in one send that returned only when done (or at the
    /// 30 s timeout), and such a connection looked stalled after 5 s.
    #[test]
    fn an_answer_read_slowly_is_not_taken_for_a_stalled_one() {
        let stall = Duration::from_millis(2500);
        let budget = budget::RequestBudget::new(64 << 20);
        let connections = connections::Connections::with_answer_stall(1, stall);
        let stopping = std::sync::atomic::AtomicBool::new(false);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_end, _) = listener.accept().unwrap();
        let connection = match connections.admit(server_end, &stopping).0 {
            connections::Admission::Served(c) => c,
            other => panic!("not served: {other:?}"),
        };
        assert!(connection.start_request());
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let answering = connections.answering(&connection);
                write_answer(
                    connection.stream(),
                    proto::OK,
                    &vec![7; 32 << 20],
                    &answering,
                    &budget.none(),
                )
            });
            let reader = s.spawn(|| {
                // About 320 KB a second, far slower than the answer could go.
                let mut buf = vec![0; 64 << 10];
                while !done.load(Ordering::Acquire) {
                    if client.read(&mut buf).unwrap_or(0) == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
            // Past the stall time, reading all along: not taken.
            std::thread::sleep(stall * 2);
            let _newcomer_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (newcomer, _) = listener.accept().unwrap();
            let (admission, closed) = connections.admit(newcomer, &stopping);
            done.store(true, Ordering::Release);
            assert!(
                matches!(admission, connections::Admission::Full(_)),
                "the connection whose answer moves was taken: {closed:?}"
            );
            assert!(!connection.taken());
            let _ = connection.stream().shutdown(std::net::Shutdown::Both);
            reader.join().unwrap();
            assert!(writer.join().unwrap().is_err(), "32 MiB went out");
        });
    }

    /// A READ answer holding bytes of the request budget whose client stops reading is cut
    /// off once it has stalled while another connection waits for room, not at the 30 s write
    /// timeout: a few tiny READs left unread held the budget, and kept every large request
    /// waiting, for that long. Without anyone waiting, it is given its write timeout.
    #[test]
    fn an_unread_answer_holding_budget_is_cut_off_when_others_wait_for_room() {
        let stall = Duration::from_millis(300);
        let connections = connections::Connections::with_answer_stall(2, stall);
        let stopping = std::sync::atomic::AtomicBool::new(false);
        let budget = budget::RequestBudget::new(4 << 20);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Never reads.
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_end, _) = listener.accept().unwrap();
        let connection = match connections.admit(server_end, &stopping).0 {
            connections::Admission::Served(c) => c,
            other => panic!("not served: {other:?}"),
        };
        assert!(connection.start_request());
        let mut share = budget.none();
        assert!(share.try_grow(3 << 20));
        std::thread::scope(|s| {
            let (connections, connection) = (&connections, &connection);
            let writer = s.spawn(move || {
                let answering = connections.answering(connection);
                let started = Instant::now();
                let written = write_answer(
                    connection.stream(),
                    proto::OK,
                    &vec![7; 32 << 20],
                    &answering,
                    &share,
                );
                // The answer's bytes go back with it, as when its thread ends.
                drop(share);
                (written, started.elapsed())
            });
            // A large request waits for room the answer holds.
            let waiter = s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(60);
                matches!(
                    budget.take(2 << 20, &stopping, deadline),
                    budget::Taken::Held(_)
                )
            });
            let (written, took) = writer.join().unwrap();
            let error = written.expect_err("32 MiB went out to a client that reads nothing");
            assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
            assert!(
                error.to_string().contains("waited for the memory"),
                "cut off at the write timeout, not for the waiting request: {error} after {took:?}"
            );
            assert!(waiter.join().unwrap(), "the waiting request got its room");
        });
    }

    /// A large request that falls behind its pace and then trickles a byte at a time, each
    /// within a millisecond of the last, is cut off all the same, soon after its pace was
    /// due. Every read that found a byte used to allow one more, and such a client held its
    /// share of the budget for as long as it kept trickling.
    #[test]
    fn a_request_trickling_behind_its_pace_is_cut_off() {
        let (mut server, dir) = single_node_server("trickle");
        server.request_timeout = Duration::from_secs(2);
        server.request_budget = budget::RequestBudget::new(16 << 20);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::scope(|s| {
            let server = &server;
            let served = s.spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                serve_one(server, stream)
            });
            let mut client = TcpStream::connect(addr).unwrap();
            let _ = client.set_nodelay(true);
            let mut bytes = (16u32 << 20).to_le_bytes().to_vec();
            bytes.push(proto::OP_STATUS);
            bytes.resize(4 + budget::UNBUDGETED_BYTES, 7);
            std::io::Write::write_all(&mut client, &bytes).unwrap();
            // Its next mebibyte is due about 0.13 s after its first 64 KiB. It sends one byte
            // per write instead, back to back (a few hundred KB/s, far behind the 8 MB/s of
            // its pace, and with no pause of a millisecond unless this thread is preempted),
            // for up to 8 s, until the node closes the connection.
            let started = Instant::now();
            let cut = loop {
                if started.elapsed() > Duration::from_secs(8) {
                    break false;
                }
                if std::io::Write::write_all(&mut client, &[7]).is_err() {
                    break true;
                }
            };
            let outcome = served.join().unwrap();
            assert!(cut, "still trickling after 8 s: {outcome:?}");
            let error = outcome.unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
            assert!(error.to_string().contains("arrived too slowly"), "{error}");
        });
        assert_eq!(server.request_budget.held(), 0);
        close(server, dir);
    }

    /// A change the node cannot make yet is NOT_MADE (its client asks again); one that asking
    /// again cannot get past is ERROR.
    #[test]
    fn a_membership_change_that_must_wait_is_not_made_and_an_impossible_one_is_error() {
        let (server, dir) = single_node_server("membership-not-yet");
        let ask = |change: u8, id: u64| {
            let mut body = vec![change];
            body.extend_from_slice(&id.to_le_bytes());
            let (status, reply) = membership(&server, &body);
            (status, String::from_utf8_lossy(&reply).into_owned())
        };
        // Learner 5 never runs, so it never catches up.
        let (status, reply) = ask(proto::MEMBERSHIP_ADD_LEARNER, 5);
        assert_eq!(status, proto::OK, "{reply}");
        let (status, reply) = ask(proto::MEMBERSHIP_ADD_VOTER, 5);
        assert_eq!(status, proto::NOT_MADE, "{reply}");
        assert!(reply.contains("not yet to the commit LSN"), "{reply}");
        let (status, reply) = ask(proto::MEMBERSHIP_ADD_VOTER, 6);
        assert_eq!(status, proto::ERROR, "{reply}");
        assert!(reply.contains("not a learner"), "{reply}");
        close(server, dir);
    }

    /// What may pass is RETRY (a client asks again), what cannot is ERROR, and a node that
    /// knows the leader names it.
    #[test]
    fn a_failed_read_is_retry_only_where_asking_again_can_help() {
        let (server, dir) = single_node_server("read-failures");
        let status = |e: Error| read_failed(&server, e).0;
        let waiting_for = "a read point";
        assert_eq!(status(Error::Timeout { waiting_for }), proto::RETRY);
        assert_eq!(
            status(Error::Busy {
                pending_max: 1,
                pending_bytes_max: 1,
            }),
            proto::RETRY
        );
        assert_eq!(status(Error::Closed), proto::RETRY);
        assert_eq!(status(Error::Wal(rwal_wal::Error::Closed)), proto::RETRY);
        assert_eq!(status(Error::Raft("broken".into())), proto::ERROR);
        let (code, body) = read_failed(&server, Error::NotLeader { leader: Some(1) });
        assert_eq!(code, proto::NOT_LEADER);
        assert_eq!(body[..8], 1u64.to_le_bytes());
        close(server, dir);
    }

    #[test]
    fn a_body_is_due_at_the_pace_of_its_whole_length_give_or_take_the_slack() {
        let since = Instant::now();
        let timeout = Duration::from_secs(32);
        let due = |body_bytes: usize, arrived: usize| {
            let pace = Pace {
                since,
                body_bytes,
                arrived,
            };
            pace.next_byte_due(timeout)
        };
        // Nothing yet: the first mebibyte's share of the timeout.
        assert_eq!(due(16 << 20, 0), since + Duration::from_secs(2));
        assert_eq!(due(16 << 20, 7 << 20), since + Duration::from_secs(16));
        // Never past the timeout itself.
        assert_eq!(due(16 << 20, 16 << 20), since + timeout);
        // A smaller body's slack is a sixteenth of it too.
        assert_eq!(due(256 << 10, 0), since + Duration::from_secs(2));
        assert_eq!(due(256 << 10, 112 << 10), since + Duration::from_secs(16));
    }

    /// A READ answer larger than what goes uncounted takes its bytes from the budget while it
    /// is built and holds them until it is written: with no room, it ends after the records
    /// that fit uncounted, or is answered RETRY if not even its first record does.
    #[test]
    fn a_read_answer_holds_budget_for_its_bytes_and_ends_early_without_room() {
        let (mut server, dir) = single_node_server("read-budget");
        server.request_budget = budget::RequestBudget::new(4 << 20);
        for request in 1..=40u64 {
            let record = proto::encode_record(9, request, &[request as u8; 4096]);
            server
                .node
                .propose_and_wait(&record, Duration::from_secs(30))
                .unwrap();
        }
        let (state, applied) = &*server.engine.state;
        let last = server.node.status().last_lsn;
        let mut guard = state.lock();
        while guard.applied < last {
            applied.wait_for(&mut guard, Duration::from_millis(10));
        }
        drop(guard);
        let read_all = |server: &Server| {
            let mut share = server.request_budget.none();
            let mut body = 0u64.to_le_bytes().to_vec();
            body.extend_from_slice(&1000u32.to_le_bytes());
            body.push(proto::READ_STALE);
            let (status, reply) = read(server, &body, &mut share);
            assert_eq!(status, proto::OK, "{}", String::from_utf8_lossy(&reply));
            let count = u32::from_le_bytes(reply[..4].try_into().unwrap());
            (count, reply.len(), server.request_budget.held())
        };
        // Room: all 40 records, their bytes beyond the uncounted part held until written.
        let (count, len, held) = read_all(&server);
        assert_eq!(count, 40);
        assert!(len > 40 * 4096);
        assert!(
            held >= len - budget::UNBUDGETED_BYTES,
            "{held} held for {len}"
        );
        assert_eq!(server.request_budget.held(), 0, "given back once written");
        // No room: the answer ends with what fits uncounted.
        let full = hold(&server, 4 << 20);
        let (count, len, _) = read_all(&server);
        assert!((1..40).contains(&count), "{count} records");
        assert!(len <= budget::UNBUDGETED_BYTES, "{len} bytes");
        // A record larger than that, with no room: RETRY.
        let big = proto::encode_record(9, 41, &vec![1u8; budget::UNBUDGETED_BYTES]);
        let (lsn, _) = server
            .node
            .propose_and_wait(&big, Duration::from_secs(30))
            .unwrap();
        let mut guard = state.lock();
        while guard.applied < lsn {
            applied.wait_for(&mut guard, Duration::from_millis(10));
        }
        drop(guard);
        let mut share = server.request_budget.none();
        let mut body = lsn.to_le_bytes().to_vec();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.push(proto::READ_STALE);
        let (status, reply) = read(&server, &body, &mut share);
        assert_eq!(status, proto::RETRY, "{}", String::from_utf8_lossy(&reply));
        drop(share);
        drop(full);
        assert_eq!(server.request_budget.held(), 0);
        close(server, dir);
    }

    /// A READ of no record, or one with bytes after its fields, is an ERROR that says why. A
    /// read of none was answered OK with no record, which means the end of the log; trailing
    /// bytes were ignored.
    #[test]
    fn a_read_of_no_record_or_with_bytes_left_over_is_refused() {
        let (server, dir) = single_node_server("read-refused");
        let record = proto::encode_record(9, 1, b"one");
        server
            .node
            .propose_and_wait(&record, Duration::from_secs(30))
            .unwrap();
        let ask = |max: u32, extra: &[u8]| {
            let mut share = server.request_budget.none();
            let mut body = 0u64.to_le_bytes().to_vec();
            body.extend_from_slice(&max.to_le_bytes());
            body.push(proto::READ_STALE);
            body.extend_from_slice(extra);
            let (status, reply) = read(&server, &body, &mut share);
            (status, String::from_utf8_lossy(&reply).into_owned())
        };
        let (status, message) = ask(0, &[]);
        assert_eq!(status, proto::ERROR, "{message}");
        assert!(message.contains("at least one record"), "{message}");
        let (status, message) = ask(10, &[1, 2]);
        assert_eq!(status, proto::ERROR, "{message}");
        assert!(
            message.contains("bytes left over after the fields of a READ: 2"),
            "{message}"
        );
        let (status, message) = ask(10, &[]);
        assert_eq!(status, proto::OK, "{message}");
        let (status, reply) = membership(
            &server,
            &[proto::MEMBERSHIP_ADD_LEARNER, 0, 0, 0, 0, 0, 0, 0, 0, 7],
        );
        let message = String::from_utf8_lossy(&reply);
        assert_eq!(status, proto::ERROR, "{message}");
        assert!(
            message.contains("bytes left over after the fields of a MEMBERSHIP: 1"),
            "{message}"
        );
        close(server, dir);
    }

    #[test]
    fn an_append_whose_lsn_was_compacted_is_answered_from_the_client_table_only() {
        let (server, dir) = single_node_server("compacted");
        let (lsn, epoch) = someone_elses_record(&server);
        let compacted = || {
            Err(Error::Wal(rwal_wal::Error::Compacted {
                lsn,
                first_retained: lsn + 1,
            }))
        };
        // This append was proposed at `lsn` too, on a leader that lost it; a snapshot then
        // took this node past `lsn`. The entry there is client 5's: not acknowledged.
        let (status, reply) = answer_committed(
            &server,
            (9, 1, data_digest(b"mine")),
            (lsn, epoch),
            compacted(),
        );
        assert_eq!(status, proto::RETRY, "{}", String::from_utf8_lossy(&reply));
        assert!(String::from_utf8_lossy(&reply).contains("compacted away"));
        // Client 5's own append, in the same position, is found in the table.
        let own = answer_committed(
            &server,
            (5, 1, data_digest(b"someone else's")),
            (lsn, epoch),
            compacted(),
        );
        assert_eq!(own, lsn_epoch(lsn, epoch));
        close(server, dir);
    }

    /// An append whose copy was superseded (a new leader committed another entry at its LSN:
    /// here client 5's) is RETRY, never the LSN: the entry there is not this copy, and only a
    /// retry can tell whether an earlier copy made it. The process tests reach this only when
    /// a healed partition's answer comes within the client's own timeout.
    #[test]
    fn an_append_whose_copy_was_superseded_is_retry_not_acknowledged() {
        let (server, dir) = single_node_server("superseded");
        let (lsn, epoch) = someone_elses_record(&server);
        let superseded = Err(Error::Superseded {
            lsn,
            epoch: epoch.saturating_sub(1),
            committed_epoch: epoch,
        });
        let (status, reply) = answer_committed(
            &server,
            (9, 1, data_digest(b"mine")),
            (lsn, epoch.saturating_sub(1)),
            superseded,
        );
        assert_eq!(status, proto::RETRY, "{}", String::from_utf8_lossy(&reply));
        close(server, dir);
    }

    /// A retry that finds its first copy in flight here waits for that copy's commit without
    /// its share of the request budget: its body is not needed any more. It held it for the
    /// whole wait (up to `APPEND_TIMEOUT`) until 2026-12-06, and a client retrying a large
    /// append now and then kept other large requests out meanwhile.
    #[test]
    fn a_retry_waiting_for_its_first_copy_gives_its_budget_back() {
        let (server, dir) = single_node_server("retry-budget");
        let data = vec![7u8; 1 << 20];
        let status = server.node.status();
        // The first copy of request (9, 1), proposed at the next LSN and not committed yet.
        let next = (status.last_lsn + 1, status.term);
        let inflight = Inflight {
            digest: data_digest(&data),
            state: InflightState::Proposed(next),
        };
        server.inflight.lock().insert((9, 1), inflight);
        let body = proto::encode_record(9, 1, &data);
        let held = hold(&server, body.len());
        assert_eq!(server.request_budget.held(), body.len());
        std::thread::scope(|scope| {
            let retry = scope.spawn(|| append(&server, body, held));
            let deadline = Instant::now() + Duration::from_secs(10);
            while server.request_budget.held() != 0 {
                assert!(
                    Instant::now() < deadline,
                    "the waiting retry kept its share of the budget"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(!retry.is_finished(), "the retry waits for the first copy");
            // The record committed at that LSN ends its wait (here another client's: what
            // the retry is answered with is not what this test is about).
            someone_elses_record(&server);
            let (status, reply) = retry.join().unwrap();
            assert_ne!(status, proto::ERROR, "{}", String::from_utf8_lossy(&reply));
        });
        close(server, dir);
    }

    #[test]
    fn a_copy_with_other_data_in_flight_under_the_same_id_is_refused() {
        let (server, dir) = single_node_server("inflight");
        let found = someone_elses_record(&server);
        // A first copy of request (9, 1), with data "A", proposed at `found` and not yet
        // answered.
        let inflight = Inflight {
            digest: data_digest(b"A"),
            state: InflightState::Proposed(found),
        };
        server.inflight.lock().insert((9, 1), inflight);
        let (status, reply) = append(
            &server,
            proto::encode_record(9, 1, b"B"),
            server.request_budget.none(),
        );
        let reply = String::from_utf8_lossy(&reply);
        assert_eq!(status, proto::ERROR, "{reply}");
        assert!(reply.contains("with other data"), "{reply}");
        close(server, dir);
    }
}
