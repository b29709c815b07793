//! The sending half of a peer link: a thread per peer that dials it, handshakes, and writes
//! the queued raft messages in batches; and a node's thread writing them itself when the
//! socket takes them at once.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Instant;

use raft::eraftpb::Message;

use crate::transport::Envelope;

use super::auth;
use super::lines::{DialFailures, PeerLines, PEER_LINES_INTERVAL};
use super::wire::{self, FrameWriter, Kind};
use super::{
    Counters, Deadline, Link, Peer, PeerQueue, Shared, BACKOFF_MAX, BACKOFF_MIN, BATCH_BYTES_MAX,
    CLOSED_CHECK_AFTER_IDLE, DIAL_CHECK_INTERVAL, HANDSHAKE_TIMEOUT, KEEPALIVE_INTERVAL,
    REDIAL_AFTER_UP, WRITE_TIMEOUT,
};

/// How much of a frame holding a snapshot chunk is written at a time, counted as carried after
/// each (`Peer::snapshot_bytes_carried`): at 1 MiB/s a slice takes 64 ms, a few ticks (but a
/// write blocked on a full socket returns only once a third of its buffer has drained:
/// docs/replication.md section 4.1).
const CARRIED_SLICE_BYTES: usize = 64 << 10;

/// Writes the raft messages queued for `peer` from the calling thread if nobody else is
/// writing and the socket takes them without waiting. Returns whether the sender thread has
/// nothing to do (else the caller wakes it). Never blocks: the caller is a node's thread.
pub(super) fn write_directly(shared: &Shared, peer: &Peer) -> bool {
    let Some(mut link) = peer.link.try_lock() else {
        return false; // the sender is writing; it looks at the queue again after
    };
    let Some(link) = link.as_mut() else {
        return false;
    };
    if !link.unfinished.is_empty() || link.broken.is_some() {
        return false;
    }
    if let Some(reason) = link.closed_while_idle() {
        // Nothing taken from the queue: the sender sends it on the next connection.
        link.broken = Some(reason);
        peer.sender_needed.store(true, Ordering::Release);
        return false;
    }
    let (messages, rest) = {
        let mut queue = peer.queue.lock();
        let messages = take_batch(&mut queue);
        (
            messages,
            !queue.messages.is_empty() || !queue.snapshots.is_empty(),
        )
    };
    if messages.is_empty() {
        return !rest;
    }
    let mut frame = Vec::new();
    let payload = wire::encode_raft_batch(&messages);
    let written = link
        .frames
        .write(&mut frame, Kind::Raft, &payload)
        .and_then(|()| write_nonblocking(&link.stream, &frame));
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            count_dropped(&shared.counters, messages.len() as u64, 0);
            link.broken = Some(write_failure(e));
            peer.sender_needed.store(true, Ordering::Release);
            return false;
        }
    };
    link.last_write = Instant::now();
    if written < frame.len() {
        // The socket's buffer is full (a slow or stopped peer): the sender finishes the frame
        // with its blocking, timed write.
        link.unfinished = frame.split_off(written);
        link.unfinished_envelopes = messages.len() as u64;
        peer.sender_needed.store(true, Ordering::Release);
        return false;
    }
    !rest
}

impl Link {
    /// Why the connection is over, if it has been idle (nothing written, nothing half written)
    /// for `CLOSED_CHECK_AFTER_IDLE` and the peer closed it meanwhile. A busy connection is not
    /// checked: the check costs three system calls.
    fn closed_while_idle(&self) -> Option<String> {
        let idle =
            self.unfinished.is_empty() && self.last_write.elapsed() >= CLOSED_CHECK_AFTER_IDLE;
        idle.then(|| closed_by_peer(&self.stream)).flatten()
    }
}

/// Why the connection is over, if the peer closed it or it failed. A dialled connection carries
/// nothing towards the dialer, so a read can only find its end, an error, or bytes that are not
/// our protocol; it finds nothing on a live connection.
fn closed_by_peer(stream: &TcpStream) -> Option<String> {
    let peeked = stream
        .set_nonblocking(true)
        .and_then(|()| stream.peek(&mut [0u8; 1]));
    if let Err(e) = stream.set_nonblocking(false) {
        return Some(format!("socket: {e}"));
    }
    match peeked {
        Ok(0) => Some("the peer closed the connection".into()),
        Ok(_) => Some("the peer sent bytes on a connection that carries none its way".into()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
        {
            None
        }
        Err(e) => Some(format!("read: {e}")),
    }
}

/// Writes as much of `bytes` as the socket takes without waiting.
pub(super) fn write_nonblocking(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    stream.set_nonblocking(true)?;
    let mut out = stream;
    let mut written = 0;
    let outcome = loop {
        if written == bytes.len() {
            break Ok(written);
        }
        match out.write(&bytes[written..]) {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    // Back to blocking for the sender's timed writes (the flag is the socket's, not this
    // handle's); a socket that cannot be switched back is broken.
    stream.set_nonblocking(false)?;
    outcome
}

/// Takes queued raft messages, up to one frame's worth.
fn take_batch(queue: &mut PeerQueue) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut bytes = 0;
    while let Some((message, size)) = queue.messages.pop_front() {
        queue.bytes -= size;
        bytes += size;
        messages.push(message);
        if bytes >= BATCH_BYTES_MAX {
            break;
        }
    }
    messages
}

/// Whether a peer's sender should go on (no lock taken: senders ask while holding their
/// queue's lock, which `send` takes inside the peers lock).
fn still_current(shared: &Shared, peer: &Peer) -> bool {
    !shared.stop.load(Ordering::Acquire) && !peer.retired.load(Ordering::Acquire)
}
/// Connects to one peer, again and again, and writes what is queued for it.
pub(super) fn send_loop(shared: Arc<Shared>, peer: Arc<Peer>) {
    let mut backoff = BACKOFF_MIN;
    let mut failures = DialFailures::default();
    let mut lines = PeerLines::new(PEER_LINES_INTERVAL);
    let log = |line: String| shared.log(line);
    let mut jitter = peer.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ shared.identity.id;
    while still_current(&shared, &peer) {
        // A connection that was up for a while and then failed is most likely a peer that
        // restarted: dial again at once. Only failures in quick succession back off.
        let mut redial_at_once = false;
        match connect(&shared, &peer) {
            Ok((stream, key)) => {
                lines.log(
                    log,
                    format!("connected to peer {} at {}", peer.id, peer.addr),
                );
                failures.connected();
                let connected_at = Instant::now();
                let outcome = match stream.try_clone() {
                    Ok(writer) => {
                        *peer.link.lock() = Some(Link {
                            stream: writer,
                            frames: FrameWriter::new(key),
                            unfinished: Vec::new(),
                            unfinished_envelopes: 0,
                            broken: None,
                            last_write: Instant::now(),
                        });
                        peer.connected.store(true, Ordering::Release);
                        pump(&shared, &peer)
                    }
                    Err(e) => Err(format!("socket: {e}")),
                };
                peer.connected.store(false, Ordering::Release);
                if let Some(link) = peer.link.lock().take() {
                    // A frame a direct write left half written goes with the connection.
                    count_dropped(&shared.counters, link.unfinished_envelopes, 0);
                }
                *peer.socket.lock() = None;
                peer.sender_needed.store(false, Ordering::Release);
                let _ = stream.shutdown(Shutdown::Both);
                if let Err(e) = outcome {
                    lines.log(log, format!("connection to peer {} lost: {e}", peer.id));
                }
                redial_at_once = connected_at.elapsed() >= REDIAL_AFTER_UP;
                if redial_at_once {
                    // Only a connection that stayed up resets the backoff: one that a peer
                    // accepts, authenticates and drops at once must not be dialled at the
                    // shortest backoff forever.
                    backoff = BACKOFF_MIN;
                } else {
                    drop_queued(&shared, &peer);
                }
                // Otherwise what is queued (whole messages; a frame half written is lost with
                // the connection) goes on the next one, if it comes up at once.
            }
            Err(e) => {
                // Registered if the handshake failed. Raft resends what matters once the peer
                // is back.
                *peer.socket.lock() = None;
                drop_queued(&shared, &peer);
                if still_current(&shared, &peer) {
                    // Said once per kind of failure; the dialling goes on (a peer not started
                    // yet is the usual reason at a cluster's start).
                    let line = format!(
                        "cannot reach peer {} at {}: {e} (trying again)",
                        peer.id, peer.addr
                    );
                    failures.log(&mut lines, log, e, line);
                }
            }
        }
        if redial_at_once {
            continue;
        }
        // Backoff with jitter, cut short when the network stops.
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        let wait = backoff + backoff.mul_f64((jitter % 1000) as f64 / 2000.0);
        let mut queue = peer.queue.lock();
        if still_current(&shared, &peer) {
            peer.cond.wait_for(&mut queue, wait);
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    // Retired (the peer removed, moved to another address, the network stopped): what is
    // still queued goes with this sender, counted. A connection that had been up went round
    // the loop to redial at once and left it uncounted (found by review on 2026-12-08).
    drop_queued(&shared, &peer);
}

/// Drops what is queued for a peer that cannot be reached, counted in the stats as the
/// envelopes refused for a full queue are.
fn drop_queued(shared: &Shared, peer: &Peer) {
    let queued = std::mem::take(&mut *peer.queue.lock());
    let envelopes = queued.messages.len() + queued.snapshots.len();
    count_dropped(&shared.counters, envelopes as u64, queued.chunks as u64);
}

/// Counts `envelopes` dropped, `chunks` of them snapshot chunks.
fn count_dropped(counters: &Counters, envelopes: u64, chunks: u64) {
    if envelopes > 0 {
        counters.dropped.fetch_add(envelopes, Ordering::Relaxed);
        counters.chunks_dropped.fetch_add(chunks, Ordering::Relaxed);
    }
}

/// What the log line says of a failed write: a write that timed out says so (the socket's
/// error, "Resource temporarily unavailable", does not).
fn write_failure(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "write: the peer took no bytes for {} s (a stopped or overloaded process, or a \
             stalled network)",
            WRITE_TIMEOUT.as_secs()
        ),
        _ => format!("write: {e}"),
    }
}

fn connect(
    shared: &Shared,
    peer: &Peer,
) -> std::result::Result<(TcpStream, auth::SessionKey), String> {
    let stream = dial(shared, peer)?;
    {
        // Registered before the retired check, under the lock `retire` shuts it down with:
        // either `retire` sees it, or this sees the flag.
        let mut socket = peer.socket.lock();
        *socket = Some(stream.try_clone().map_err(|e| format!("socket: {e}"))?);
        if !still_current(shared, peer) {
            *socket = None;
            return Err("the peer was removed or the network stopped".into());
        }
    }
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    let key = auth::dial(
        &mut Deadline::new(&stream, HANDSHAKE_TIMEOUT),
        &shared.identity,
        peer.id,
    )?;
    Ok((stream, key))
}

/// Opens a TCP connection to `peer` within `HANDSHAKE_TIMEOUT`, giving up as soon as the peer
/// is retired or the network stops. The blocking connect runs on a thread of its own: a dial to
/// a host that is down (its SYNs go unanswered) would otherwise hold the sender, and so the
/// network's close or the peer's removal, for the whole timeout. A dial given up on leaves that
/// thread to finish by itself; it holds nothing but the address and the socket.
fn dial(shared: &Shared, peer: &Peer) -> std::result::Result<TcpStream, String> {
    let (done, connected) = std::sync::mpsc::sync_channel(1);
    let addr = peer.addr;
    std::thread::Builder::new()
        .name(shared.thread_name("dial"))
        .spawn(move || {
            let _ = done.send(TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT));
        })
        .map_err(|e| format!("cannot start a thread to dial: {e}"))?;
    peer.dialing.store(true, Ordering::Release);
    let outcome = loop {
        match connected.recv_timeout(DIAL_CHECK_INTERVAL) {
            Ok(connected) => break connected.map_err(|e| format!("connect: {e}")),
            Err(RecvTimeoutError::Timeout) if still_current(shared, peer) => {}
            Err(RecvTimeoutError::Timeout) => {
                break Err("the peer was removed or the network stopped".into())
            }
            Err(RecvTimeoutError::Disconnected) => break Err("connect: the dial failed".into()),
        }
    };
    peer.dialing.store(false, Ordering::Release);
    outcome
}

/// Writes queued envelopes, what direct writes left unfinished, and keepalives, until the
/// connection fails or the network stops.
fn pump(shared: &Shared, peer: &Arc<Peer>) -> std::result::Result<(), String> {
    let mut next_keepalive = Instant::now() + KEEPALIVE_INTERVAL;
    loop {
        {
            let mut queue = peer.queue.lock();
            while queue.messages.is_empty()
                && queue.snapshots.is_empty()
                && !peer.sender_needed.load(Ordering::Acquire)
            {
                if !still_current(shared, peer) {
                    return Ok(());
                }
                let now = Instant::now();
                if now >= next_keepalive {
                    break;
                }
                peer.cond.wait_for(&mut queue, next_keepalive - now);
            }
        }
        let mut link = peer.link.lock();
        let Some(link) = link.as_mut() else {
            return Err("the connection is gone".into());
        };
        peer.sender_needed.store(false, Ordering::Release);
        if let Some(broken) = link.broken.take() {
            return Err(broken);
        }
        if let Some(reason) = link.closed_while_idle() {
            return Err(reason); // before taking anything from the queue
        }
        let mut out = std::mem::take(&mut link.unfinished);
        let unfinished_envelopes = std::mem::take(&mut link.unfinished_envelopes);
        let (messages, snapshot_item) = {
            let mut queue = peer.queue.lock();
            let messages = take_batch(&mut queue);
            // At most one snapshot item between batches: a snapshot holds up log traffic by
            // one chunk's write at most.
            let snapshot = queue.snapshots.pop_front();
            if let Some(Envelope::SnapshotChunk(_)) = snapshot {
                queue.chunks -= 1;
            }
            (messages, snapshot)
        };
        let carries_chunk = matches!(snapshot_item, Some(Envelope::SnapshotChunk(_)));
        // A failed write drops what this round took (the connection ends with it).
        let taken =
            unfinished_envelopes + messages.len() as u64 + u64::from(snapshot_item.is_some());
        let io = |e: std::io::Error| {
            count_dropped(&shared.counters, taken, u64::from(carries_chunk));
            write_failure(e)
        };
        if !messages.is_empty() {
            let payload = wire::encode_raft_batch(&messages);
            link.frames
                .write(&mut out, Kind::Raft, &payload)
                .map_err(io)?;
        }
        match snapshot_item {
            Some(Envelope::SnapshotChunk(chunk)) => link
                .frames
                .write(&mut out, Kind::Chunk, &wire::encode_chunk(&chunk))
                .map_err(io)?,
            Some(Envelope::Raft(message)) => link
                .frames
                .write(&mut out, Kind::Raft, &wire::encode_raft_batch(&[message]))
                .map_err(io)?,
            None => {}
        }
        let now = Instant::now();
        if out.is_empty() && now >= link.last_write + KEEPALIVE_INTERVAL {
            link.frames
                .write(&mut out, Kind::Keepalive, &[])
                .map_err(io)?;
        }
        if carries_chunk {
            // In slices, each counted once written: the leader takes the count moving as the
            // stream's progress, and a chunk crossing a slow link may take longer than the
            // stream's timeout.
            for slice in out.chunks(CARRIED_SLICE_BYTES) {
                (&link.stream).write_all(slice).map_err(io)?;
                peer.snapshot_bytes_carried
                    .fetch_add(slice.len() as u64, Ordering::Relaxed);
            }
            link.last_write = now;
        } else if !out.is_empty() {
            (&link.stream).write_all(&out).map_err(io)?;
            link.last_write = now;
        }
        next_keepalive = link.last_write + KEEPALIVE_INTERVAL;
    }
}
