//! The receiving half: the accept loop and one thread per accepted connection, which
//! handshakes, checks each frame's MAC and hands the raft messages to the node's inbox.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::transport::Envelope;
use crate::NodeId;

use super::auth;
use super::wire::{self, FrameError, FrameReader, Kind};
use super::{Deadline, Shared, HANDSHAKES_MAX, HANDSHAKE_TIMEOUT, QUEUED_MESSAGES_MAX};

/// Accepts peers' connections until the network stops, each served on a thread of its own
/// (at most `HANDSHAKES_MAX` in their handshake at once from peers' addresses, and as many
/// from elsewhere).
pub(super) fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, or the like: do not spin. Logged as refusals are (bounded):
                // the connection, whoever made it, was not taken.
                shared.log_refusal(false, format!("accepting a peer connection failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let remote_addr = stream.peer_addr().ok();
        let remote =
            remote_addr.map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
        // Decided once: the same counter is given back whatever the peers are by then.
        let from_peer_address = shared.is_peer_address(remote_addr.map(|a| a.ip()));
        let handshaking = shared.handshakes(from_peer_address);
        if handshaking.fetch_add(1, Ordering::AcqRel) >= HANDSHAKES_MAX {
            handshaking.fetch_sub(1, Ordering::AcqRel);
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            shared.log_refusal(
                from_peer_address,
                format!(
                    "refused a connection from {remote}: {HANDSHAKES_MAX} handshakes are under way"
                ),
            );
            continue;
        }
        // Without a handle of its own the connection could not be closed by a removal of its
        // peer or a newer connection from it, and the network's drop would wait for it.
        let handle = match stream.try_clone() {
            Ok(handle) => handle,
            Err(e) => {
                handshaking.fetch_sub(1, Ordering::AcqRel);
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                shared.log_refusal(
                    from_peer_address,
                    format!("refused a connection from {remote}: {e}"),
                );
                continue;
            }
        };
        let number = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        shared.connections.lock().insert(number, handle);
        let receiving = shared.clone();
        let remote_named = remote.clone();
        let spawned = std::thread::Builder::new()
            .name(shared.thread_name("recv"))
            .spawn(move || {
                receive(&receiving, stream, &remote, number, from_peer_address);
                receiving.connections.lock().remove(&number);
            });
        match spawned {
            Ok(thread) => {
                let mut receivers = shared.receivers.lock();
                receivers.retain(|t| !t.is_finished());
                receivers.push(thread);
            }
            Err(e) => {
                // Out of threads (RLIMIT_NPROC, memory for stacks): said so, or every
                // connection closes without a word here, and the peers blame the wrong side.
                shared.connections.lock().remove(&number);
                shared
                    .handshakes(from_peer_address)
                    .fetch_sub(1, Ordering::AcqRel);
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                shared.log_refusal(
                    from_peer_address,
                    format!(
                        "refused a connection from {remote_named}: no thread to receive it: {e}"
                    ),
                );
            }
        }
    }
}

/// Authenticates one inbound connection and delivers what it carries.
fn receive(shared: &Shared, stream: TcpStream, remote: &str, number: u64, from_peer_address: bool) {
    let refuse = |reason: String| {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        shared.log_refusal(
            from_peer_address,
            format!("closed the connection from {remote}: {reason}"),
        );
    };
    let _ = stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
    let known = |id: NodeId| shared.peers.read().contains_key(&id);
    let handshake = auth::accept(
        &mut Deadline::new(&stream, HANDSHAKE_TIMEOUT),
        &shared.identity,
        known,
    );
    shared
        .handshakes(from_peer_address)
        .fetch_sub(1, Ordering::AcqRel);
    let (from, key) = match handshake {
        Ok(done) => done,
        Err(reason) => return refuse(reason),
    };
    // From here on the connection speaks for an authenticated member: what ends it is logged
    // through that peer's own limit, whatever the address it came from (a peer may dial from
    // an address it is not configured at), not through the limits strangers use up.
    let refuse_member = |reason: String| {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        let line = format!("closed the connection from {remote}: {reason}");
        if let Err(line) = shared.log_about_peer(from, line) {
            shared.log_refusal(from_peer_address, line);
        }
    };
    let silence = Duration::from_millis(shared.receive_timeout_ms.load(Ordering::Relaxed));
    if stream.set_read_timeout(Some(silence)).is_err() {
        return;
    }
    // One connection per peer: a newer one (the peer reconnected) replaces the older. Newer
    // by when it was accepted, not by when its handshake ended: an older connection whose
    // handshake ends late (its dialer has moved on: restarted, or timed out) must not close
    // the live one.
    {
        let mut current = shared.current.lock();
        // Checked again under the lock `remove_peer` takes after forgetting the peer: a peer
        // removed during this handshake either is refused here or finds this connection to
        // close.
        if !shared.peers.read().contains_key(&from) {
            drop(current);
            return refuse_member(format!("peer {from} was removed during its handshake"));
        }
        if let Some(&newer) = current.get(&from).filter(|&&current| current > number) {
            drop(current);
            return refuse_member(format!(
                "peer {from} has a newer connection (number {newer}, this is {number}), made \
                 during this one's handshake"
            ));
        }
        if let Some(older) = current.insert(from, number) {
            if let Some(old) = shared.connections.lock().get(&older) {
                let _ = old.shutdown(Shutdown::Both);
            }
        }
    }
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
    let mut reader = std::io::BufReader::with_capacity(256 << 10, stream);
    let mut frames = FrameReader::new(key);
    let me = shared.identity.id;
    while !shared.stop.load(Ordering::Acquire) {
        let (kind, payload) = match frames.read(&mut reader) {
            Ok(frame) => frame,
            Err(FrameError::Io(e)) => {
                // A connection this node ended itself (replaced by the peer's newer one, or the
                // network stopping), mid-frame or not, is no news about the peer.
                let ended_here = shared.stop.load(Ordering::Acquire)
                    || shared.current.lock().get(&from) != Some(&number);
                if e.kind() != std::io::ErrorKind::UnexpectedEof && !ended_here {
                    let line = format!(
                        "connection from peer {from} ({remote}) ended: {}",
                        ended_because(&e, silence)
                    );
                    // Through the peer's own limit: a peer whose connections keep being reset
                    // (or keep going silent) must not flood the log. A peer removed meanwhile
                    // has no limit left, and its connection's end no longer matters.
                    let _ = shared.log_about_peer(from, line);
                }
                return;
            }
            Err(FrameError::Bad(reason)) => {
                return refuse_member(format!("peer {from}: {reason}"));
            }
        };
        shared.counters.frames.fetch_add(1, Ordering::Relaxed);
        let batch = match kind {
            Kind::Keepalive if payload.is_empty() => continue,
            Kind::Keepalive => {
                return refuse_member(format!(
                    "peer {from}: a keepalive carried {} bytes (keepalives are empty)",
                    payload.len()
                ))
            }
            Kind::Raft => match wire::decode_raft_batch(&payload, QUEUED_MESSAGES_MAX) {
                Ok(messages) => messages.into_iter().map(Envelope::Raft).collect(),
                Err(reason) => return refuse_member(format!("peer {from}: {reason}")),
            },
            Kind::Chunk => match wire::decode_chunk(&payload) {
                Ok(chunk) => vec![Envelope::SnapshotChunk(chunk)],
                Err(reason) => return refuse_member(format!("peer {from}: {reason}")),
            },
        };
        // An authenticated member may still not speak for another.
        if let Some(e) = batch.iter().find(|e| e.from() != from || e.to() != me) {
            return refuse_member(format!(
                "peer {from} sent a message from {} to {}",
                e.from(),
                e.to()
            ));
        }
        // A connection retired meanwhile (its peer removed, or replaced by the peer's newer
        // connection) delivers nothing more: shutting its socket down does not take back the
        // frames already in its buffer or queued in the kernel.
        if shared.current.lock().get(&from) != Some(&number) {
            return;
        }
        let inbox = shared.inbox.lock().as_ref().and_then(Weak::upgrade);
        if let Some(inbox) = inbox {
            let n = batch.len() as u64;
            if inbox.deliver(batch) {
                shared.counters.delivered.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Why a peer's connection ended, for its log line: the socket's read timeout is the peer's
/// silence, which the bare error would call "Resource temporarily unavailable".
fn ended_because(e: &std::io::Error, silence: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "nothing came from it for {silence:?}, not even a keepalive (a stopped \
             process, or a lost link)"
        ),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::RECEIVE_TIMEOUT;
    use super::*;

    #[test]
    fn a_silent_peer_is_said_to_be_silent() {
        for kind in [std::io::ErrorKind::WouldBlock, std::io::ErrorKind::TimedOut] {
            let why = ended_because(&kind.into(), RECEIVE_TIMEOUT);
            assert!(why.contains("nothing came from it for 10s"), "{why}");
        }
        let reset = ended_because(&std::io::ErrorKind::ConnectionReset.into(), RECEIVE_TIMEOUT);
        assert!(reset.contains("reset"), "{reset}");
    }
}
