//! The peer handshake: a shared secret proven by HMAC-SHA256 challenge-response in both
//! directions, and the session key that authenticates every frame after it. The byte layout is
//! in `docs/network.md` section 1.1.

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::NodeId;

type HmacSha256 = Hmac<Sha256>;

/// The first bytes of every handshake message.
pub(crate) const MAGIC: &[u8; 8] = b"RWALPEER";
/// The peer protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The shortest secret a cluster may use.
pub const SECRET_BYTES_MIN: usize = 16;

const NONCE_BYTES: usize = 16;
const HELLO_BYTES: usize = 56;
pub(crate) const CHALLENGE_BYTES: usize = 64;
const PROOF_BYTES: usize = 32;

const LABEL_ACCEPTOR: &[u8] = b"rwal-peer-v1 acceptor";
const LABEL_DIALER: &[u8] = b"rwal-peer-v1 dialer";
const LABEL_SESSION: &[u8] = b"rwal-peer-v1 session";

/// Who this node is, and what proves it belongs to the cluster.
#[derive(Clone)]
pub(crate) struct Identity {
    pub id: NodeId,
    pub cluster_id: u64,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// The acceptor's answer to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted = 0,
    WrongVersion = 1,
    WrongCluster = 2,
    UnknownPeer = 3,
    NotExpected = 4,
}

impl Verdict {
    fn from_code(code: u16) -> Option<Verdict> {
        Some(match code {
            0 => Verdict::Accepted,
            1 => Verdict::WrongVersion,
            2 => Verdict::WrongCluster,
            3 => Verdict::UnknownPeer,
            4 => Verdict::NotExpected,
            _ => return None,
        })
    }
}

/// The key of one authenticated connection.
pub(crate) type SessionKey = [u8; 32];

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// HMAC-SHA256 of `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    mac(key, parts).finalize().into_bytes().into()
}

/// Whether `tag` is the first `tag.len()` bytes of HMAC-SHA256 of `parts` under `key`, compared
/// in constant time.
pub(crate) fn verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mac = mac(key, parts);
    if tag.len() == 32 {
        mac.verify_slice(tag).is_ok()
    } else {
        mac.verify_truncated_left(tag).is_ok()
    }
}

fn nonce() -> std::io::Result<[u8; NONCE_BYTES]> {
    let mut nonce = [0u8; NONCE_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut nonce)?;
    Ok(nonce)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn hello(me: &Identity, to: NodeId, nonce: &[u8; NONCE_BYTES]) -> [u8; HELLO_BYTES] {
    let mut hello = [0u8; HELLO_BYTES];
    hello[..8].copy_from_slice(MAGIC);
    hello[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello[16..24].copy_from_slice(&me.cluster_id.to_le_bytes());
    hello[24..32].copy_from_slice(&me.id.to_le_bytes());
    hello[32..40].copy_from_slice(&to.to_le_bytes());
    hello[40..56].copy_from_slice(nonce);
    hello
}

fn read_exactly(stream: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), String> {
    stream.read_exact(buf).map_err(|e| read_failure(&e, what))
}

fn read_failure(e: &std::io::Error, what: &str) -> String {
    match e.kind() {
        // The socket's read timeout: say so rather than "Resource temporarily unavailable".
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("reading the {what}: nothing came in time")
        }
        std::io::ErrorKind::UnexpectedEof => {
            format!("reading the {what}: the other side closed the connection")
        }
        _ => format!("reading the {what}: {e}"),
    }
}

/// Reads a dialer's hello, refusing it at the first byte that is not the magic's. Whatever
/// speaks another protocol (`rwal client` pointed at the peer port, say) sends fewer bytes
/// than a hello and waits for an answer: it is answered at once with the magic alone, which
/// tells it what it reached, instead of waiting out the handshake's deadline.
fn read_hello(stream: &mut (impl Read + Write)) -> Result<[u8; HELLO_BYTES], String> {
    let mut hello = [0u8; HELLO_BYTES];
    let mut got = 0;
    while got < HELLO_BYTES {
        match stream.read(&mut hello[got..]) {
            Ok(0) => {
                let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                return Err(read_failure(&eof, "hello"));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failure(&e, "hello")),
        }
        let checked = got.min(MAGIC.len());
        if hello[..checked] != MAGIC[..checked] {
            let _ = stream.write_all(MAGIC);
            let began: Vec<String> = hello[..checked]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            return Err(format!(
                "not the rwal peer protocol (bad magic: its first bytes were {})",
                began.join(" ")
            ));
        }
    }
    Ok(hello)
}

/// The dialer's side: proves nothing until the acceptor has proven it knows the secret.
/// Returns the session key.
pub(crate) fn dial(
    stream: &mut (impl Read + Write),
    me: &Identity,
    peer: NodeId,
) -> Result<SessionKey, String> {
    let nonce = nonce().map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let hello = hello(me, peer, &nonce);
    stream
        .write_all(&hello)
        .map_err(|e| format!("sending the hello: {e}"))?;
    let mut challenge = [0u8; CHALLENGE_BYTES];
    read_exactly(stream, &mut challenge, "challenge")?;
    if &challenge[..8] != MAGIC {
        return Err("the peer does not speak the rwal peer protocol (bad magic)".into());
    }
    let version = u16_at(&challenge, 8);
    if challenge[12..16] != [0; 4] {
        return Err(
            "the peer's challenge has reserved bytes set (not zero): a protocol this node \
             does not know"
                .into(),
        );
    }
    match Verdict::from_code(u16_at(&challenge, 10)) {
        Some(Verdict::Accepted) => {}
        Some(Verdict::WrongVersion) => {
            return Err(format!(
                "refused: the peer speaks protocol version {version}, this node {PROTOCOL_VERSION}"
            ))
        }
        Some(Verdict::WrongCluster) => {
            return Err(format!(
                "refused: the peer is not in cluster {}",
                me.cluster_id
            ))
        }
        Some(Verdict::UnknownPeer) => {
            return Err(format!("refused: the peer does not know node {}", me.id))
        }
        Some(Verdict::NotExpected) => return Err(format!("refused: the peer is not node {peer}")),
        None => return Err("the peer sent an unknown verdict".into()),
    }
    let their_nonce = &challenge[16..32];
    if !verify(
        &me.secret,
        &[LABEL_ACCEPTOR, &hello, their_nonce],
        &challenge[32..64],
    ) {
        // Either side may be the one misconfigured: this node's log must not blame the peer.
        return Err(format!(
            "the peer's proof does not verify: this node and node {peer} hold different \
             secrets (or it is not a member of this cluster)"
        ));
    }
    let proof = hmac(&me.secret, &[LABEL_DIALER, &hello, their_nonce]);
    stream
        .write_all(&proof)
        .map_err(|e| format!("sending the proof: {e}"))?;
    Ok(hmac(&me.secret, &[LABEL_SESSION, &hello, their_nonce]))
}

/// The acceptor's side. `known` says whether a node id is a peer. Returns the dialer's id and
/// the session key; on refusal, tells the dialer why (with no proof) and returns the reason.
pub(crate) fn accept(
    stream: &mut (impl Read + Write),
    me: &Identity,
    known: impl Fn(NodeId) -> bool,
) -> Result<(NodeId, SessionKey), String> {
    let hello = read_hello(stream)?;
    let version = u16_at(&hello, 8);
    let cluster = u64_at(&hello, 16);
    let from = u64_at(&hello, 24);
    let to = u64_at(&hello, 32);
    // Reserved bytes set are a protocol this version does not know, even under its number:
    // refused like another version, not read past (as frames' reserved bytes are).
    let reserved_set = hello[10..16] != [0; 6];
    let verdict = if version != PROTOCOL_VERSION || reserved_set {
        Verdict::WrongVersion
    } else if cluster != me.cluster_id {
        Verdict::WrongCluster
    } else if from == me.id || !known(from) {
        Verdict::UnknownPeer
    } else if to != me.id {
        Verdict::NotExpected
    } else {
        Verdict::Accepted
    };
    let nonce = nonce().map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let mut challenge = [0u8; CHALLENGE_BYTES];
    challenge[..8].copy_from_slice(MAGIC);
    challenge[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    challenge[10..12].copy_from_slice(&(verdict as u16).to_le_bytes());
    challenge[16..32].copy_from_slice(&nonce);
    if verdict == Verdict::Accepted {
        let proof = hmac(&me.secret, &[LABEL_ACCEPTOR, &hello, &nonce]);
        challenge[32..64].copy_from_slice(&proof);
    }
    // A refused dialer is told why (a misconfigured member should see it in its own log).
    let _ = stream.write_all(&challenge);
    match verdict {
        Verdict::Accepted => {}
        Verdict::WrongVersion if version == PROTOCOL_VERSION => {
            return Err(format!(
                "node {from}'s hello has reserved bytes set (not zero): a protocol this \
                 node's version {PROTOCOL_VERSION} does not know"
            ))
        }
        Verdict::WrongVersion => {
            return Err(format!(
                "node {from} speaks protocol version {version}, this node {PROTOCOL_VERSION}"
            ))
        }
        Verdict::WrongCluster => {
            return Err(format!(
                "node {from} belongs to cluster {cluster}, not {}",
                me.cluster_id
            ))
        }
        Verdict::UnknownPeer => return Err(format!("node {from} is not a peer of this node")),
        Verdict::NotExpected => {
            return Err(format!("node {from} expected node {to}, this is {}", me.id))
        }
    }
    let mut proof = [0u8; PROOF_BYTES];
    read_exactly(stream, &mut proof, "proof").map_err(|reason| {
        // A dialer that finds this node's proof wrong hangs up here: name it, and say why
        // it most likely did.
        format!("node {from}: {reason} (the two nodes may hold different secrets)")
    })?;
    if !verify(&me.secret, &[LABEL_DIALER, &hello, &nonce], &proof) {
        // Said as the dialer's side says it: which of the two holds the wrong secret cannot
        // be told from here.
        return Err(format!(
            "node {from}: its proof does not verify (the two nodes may hold different secrets)"
        ));
    }
    Ok((from, hmac(&me.secret, &[LABEL_SESSION, &hello, &nonce])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn identity(id: NodeId, secret: &[u8]) -> Identity {
        Identity {
            id,
            cluster_id: 7,
            secret: secret.to_vec(),
        }
    }

    fn run(
        dialer: Identity,
        peer: NodeId,
        acceptor: Identity,
    ) -> (
        Result<SessionKey, String>,
        Result<(NodeId, SessionKey), String>,
    ) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let side = std::thread::spawn(move || accept(&mut b, &acceptor, |id| id < 10));
        let dialed = dial(&mut a, &dialer, peer);
        drop(a);
        (dialed, side.join().unwrap())
    }

    #[test]
    fn members_agree_on_a_fresh_session_key() {
        let secret = b"0123456789abcdef";
        let (d, a) = run(identity(1, secret), 2, identity(2, secret));
        let key = d.unwrap();
        assert_eq!(a.unwrap(), (1, key));
        let (d2, _) = run(identity(1, secret), 2, identity(2, secret));
        assert_ne!(d2.unwrap(), key, "nonces make every session's key new");
    }

    #[test]
    fn a_wrong_secret_fails_on_both_sides_and_the_dialer_proves_nothing() {
        let (d, a) = run(
            identity(1, b"0123456789abcdef"),
            2,
            identity(2, b"another secret!!"),
        );
        // Neither side's line blames the other: either may hold the wrong secret.
        let d = d.unwrap_err();
        assert!(d.contains("node 2 hold different secrets"), "{d}");
        // The dialer hung up instead of sending its proof: named, with the likely reason.
        let a = a.unwrap_err();
        assert!(
            a.contains("node 1: reading the proof") && a.contains("different secrets"),
            "{a}"
        );
    }

    #[test]
    fn a_silent_or_vanished_peer_is_named_as_such() {
        struct Failing(std::io::ErrorKind);
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(self.0.into())
            }
        }
        let mut buf = [0u8; 8];
        let silent = read_exactly(
            &mut Failing(std::io::ErrorKind::WouldBlock),
            &mut buf,
            "hello",
        );
        assert_eq!(
            silent.unwrap_err(),
            "reading the hello: nothing came in time"
        );
        let gone = read_exactly(&mut &[1u8, 2][..], &mut buf, "proof");
        assert_eq!(
            gone.unwrap_err(),
            "reading the proof: the other side closed the connection"
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let secret = b"0123456789abcdef";
        let mut other_cluster = identity(1, secret);
        other_cluster.cluster_id = 8;
        let (d, a) = run(other_cluster, 2, identity(2, secret));
        assert!(d.unwrap_err().contains("not in cluster 8"));
        assert!(a.unwrap_err().contains("belongs to cluster 8, not 7"));

        let (d, a) = run(identity(42, secret), 2, identity(2, secret));
        assert!(d.unwrap_err().contains("does not know node 42"));
        assert!(a.unwrap_err().contains("not a peer"));

        let (d, a) = run(identity(1, secret), 3, identity(2, secret));
        assert!(d.unwrap_err().contains("is not node 3"));
        assert!(a.unwrap_err().contains("expected node 3"));
    }

    #[test]
    fn another_version_and_garbage_are_refused() {
        let me = identity(2, b"0123456789abcdef");
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut old = hello(&identity(1, b"0123456789abcdef"), 2, &[0; 16]);
        old[8..10].copy_from_slice(&9u16.to_le_bytes());
        a.write_all(&old).unwrap();
        let e = accept(&mut b, &me, |_| true).unwrap_err();
        assert!(e.contains("protocol version 9"), "{e}");

        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&[0x47; HELLO_BYTES]).unwrap();
        let e = accept(&mut b, &me, |_| true).unwrap_err();
        assert!(e.contains("bad magic"), "{e}");
    }

    /// Reserved bytes of the handshake must be zero (docs/network.md section 1.1), as they
    /// must in frames: a hello or a challenge with one set is of a protocol this version does
    /// not know, and is refused even under this version's number (it was read past).
    #[test]
    fn reserved_bytes_set_in_the_handshake_are_refused() {
        let secret = b"0123456789abcdef";
        for byte in 10..16 {
            let me = identity(2, secret);
            let (mut a, mut b) = UnixStream::pair().unwrap();
            // Bounds on a hang, not measurements: a side that took the handshake would wait
            // for the next step.
            b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut later = hello(&identity(1, secret), 2, &[0; 16]);
            later[byte] = 1;
            a.write_all(&later).unwrap();
            let e = accept(&mut b, &me, |_| true).unwrap_err();
            assert!(e.contains("reserved bytes set"), "byte {byte}: {e}");
            let mut challenge = [0u8; CHALLENGE_BYTES];
            a.read_exact(&mut challenge).unwrap();
            assert_eq!(
                Verdict::from_code(u16_at(&challenge, 10)),
                Some(Verdict::WrongVersion)
            );
        }
        for byte in 12..16 {
            let acceptor = identity(2, secret);
            let (mut a, mut b) = UnixStream::pair().unwrap();
            b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            // An acceptor of a later protocol: an honest challenge, one reserved byte set.
            let side = std::thread::spawn(move || {
                let mut hello = [0u8; HELLO_BYTES];
                b.read_exact(&mut hello).unwrap();
                let nonce = [9u8; NONCE_BYTES];
                let mut challenge = [0u8; CHALLENGE_BYTES];
                challenge[..8].copy_from_slice(MAGIC);
                challenge[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
                challenge[byte] = 1;
                challenge[16..32].copy_from_slice(&nonce);
                let proof = hmac(&acceptor.secret, &[LABEL_ACCEPTOR, &hello, &nonce]);
                challenge[32..64].copy_from_slice(&proof);
                b.write_all(&challenge).unwrap();
                let mut rest = Vec::new();
                let _ = b.read_to_end(&mut rest);
                rest
            });
            let e = dial(&mut a, &identity(1, secret), 2).unwrap_err();
            assert!(e.contains("reserved bytes set"), "byte {byte}: {e}");
            drop(a);
            assert!(side.join().unwrap().is_empty(), "the dialer proved itself");
        }
    }

    /// A request of the client protocol (5 bytes, then a wait for the answer) at the peer
    /// port is refused at its first byte and answered with the magic: it used to wait for 56
    /// bytes until the handshake's deadline, and the client then saw only a closed connection.
    #[test]
    fn a_short_foreign_request_is_answered_with_the_magic_at_once() {
        let me = identity(2, b"0123456789abcdef");
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let status_request = [2, 0, 0, 0, 3];
        a.write_all(&status_request).unwrap();
        let side = std::thread::spawn(move || accept(&mut b, &me, |_| true));
        // A bound on a hang, not a measurement: the old code waited for bytes that never came.
        a.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut answer = [0u8; 8];
        a.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, MAGIC);
        let e = side.join().unwrap().unwrap_err();
        assert!(e.contains("bad magic: its first bytes were 02"), "{e}");
    }
}
