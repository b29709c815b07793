//! `rwal node`: one node of a replicated cluster, from flags or a config file, serving the
//! client protocol (`docs/network.md` sections 2 and 3).

mod budget;
mod connections;
mod descriptors;
mod line_limit;
pub mod proto;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rwal_replication::net::{PeerConfig, PeerNetwork, SECRET_BYTES_MIN};
use rwal_replication::{
    Bootstrap, Bounded, Config, EngineResult, Error, MembershipChange, Node, NodeId, NodeOptions,
    Role, Severity, StateMachine,
};
use rwal_wal::{Lsn, RecordKind, Wal};
use signal_hook::consts::{SIGINT, SIGTERM};

const HELP: &str = "\
usage: rwal node --id N --dir DIR --listen ADDR --client-listen ADDR \\
                 --peer ID,PEER_ADDR,CLIENT_ADDR ... --cluster-id C --secret-file FILE [options]
       rwal node --config FILE

Runs one node of a replicated rwal cluster. The founding members are this node and every
--peer; start each with the same list, and with --init the first time. A restarted node
continues from its log; without --init or --join a node whose directory holds no log refuses
to start.

  --id N                  this node's id (1, 2, ...)
  --dir DIR               its log directory
  --init                  found the cluster if DIR holds no log (the members' first start
                          only: a member that lost its log must not found the cluster again,
                          it has forgotten its votes and could help elect a leader that lacks
                          acknowledged writes); DIR must then be empty or not exist yet
  --join                  enter a running cluster as a new member if DIR holds no log (DIR
                          empty or new): a member whose log was lost comes back this way,
                          after `rwal client remove ID`; then `rwal client add-learner ID` and,
                          once it has caught up, `add-voter ID` add it
  --listen ADDR           where peers connect (IP:PORT, e.g. 10.0.0.1:7001: no host names)
  --client-listen ADDR    where clients connect (`rwal client`; IP:PORT); keep it on a private
                          network
  --peer ID,PEER,CLIENT   another member: its id, peer address and client address (IP:PORT
                          each; repeat). Every address, this node's and the peers', differs
  --cluster-id C          the cluster's id (a number every member shares)
  --secret-file FILE      the cluster's shared secret (at least 16 bytes, at most 64 KiB)
  --checkpoint-every N    checkpoint and compact after N applied LSNs (default 100000)
  --tick-ms MS            raft's tick (default 10, at most 60000; elections after 10 to 20
                          ticks without a leader)
  --sync-stall-limit-ms MS
                          a leader whose log sync has not returned for MS hands its
                          leadership to another voter (default 1000, never less than the
                          longest election timeout, 20 ticks; 0: never)
  --segment-bytes N       size of new log segments (default: rwal-wal's)
  --pin-cap-bytes N       log a lagging follower may hold back before it is sent a snapshot
                          instead (default 1 GiB)
  --snapshot-bytes-max N  the largest snapshot this node takes from a leader (default 1 GiB):
                          it is assembled in memory; a larger one is refused, and a node
                          that only a snapshot can catch up stays behind
  --config FILE           read the options from FILE: `key = value` lines, keys as above
                          without `--`, `peer` repeated, `init` or `join` alone (or
                          `init = true`: take it out after the first start, as --init); `#`
                          starts a comment at the start of a line or after a space or tab; a
                          `#` inside a value is refused

SIGTERM or SIGINT stops the node: it serves no new client, answers the requests in progress,
closes its log and exits 0. A second signal exits at once (1); everything acknowledged is
durable either way.";

/// The longest raft tick `rwal node` takes, in milliseconds.
const TICK_MS_MAX: u64 = 60_000;

/// Everything `rwal node` is started with.
#[derive(Debug, Clone)]
struct Settings {
    id: NodeId,
    dir: PathBuf,
    listen: SocketAddr,
    client_listen: SocketAddr,
    peers: HashMap<NodeId, (SocketAddr, SocketAddr)>,
    cluster_id: u64,
    secret: Vec<u8>,
    /// Found the cluster if the directory holds no log.
    init: bool,
    /// Join the cluster as a new member if the directory holds no log (a leader adds it).
    join: bool,
    checkpoint_every: u64,
    tick: Duration,
    /// `NodeOptions::sync_stall_limit`.
    sync_stall_limit: Option<Duration>,
    segment_bytes: Option<u64>,
    pin_cap_bytes: u64,
    /// `Config::snapshot_bytes_max`.
    snapshot_bytes_max: u64,
}

fn parse_peer(value: &str) -> Result<(NodeId, SocketAddr, SocketAddr), String> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let [id, peer, client] = parts[..] else {
        return Err(format!(
            "--peer {value:?}: expected ID,PEER_ADDR,CLIENT_ADDR"
        ));
    };
    let id = id
        .parse()
        .map_err(|_| format!("--peer {value:?}: {id:?} is not a node id"))?;
    let address = |a: &str| {
        a.parse::<SocketAddr>()
            .map_err(|e| format!("--peer {value:?}: {a:?} is not an address: {e}"))
    };
    Ok((id, address(peer)?, address(client)?))
}

/// The largest secret file read, in bytes: a secret is a few dozen bytes, and a larger file is
/// not one (`/dev/zero`, read whole, took all the memory).
const SECRET_FILE_BYTES_MAX: u64 = 64 << 10;

/// A setting's value as text: every setting but the two paths is a number, an address or a
/// word.
fn text<'v>(key: &str, value: &'v OsStr) -> Result<&'v str, String> {
    value
        .to_str()
        .ok_or_else(|| format!("{key}: {value:?} is not UTF-8"))
}

/// A path setting (`dir`, `secret-file`): its bytes as given (made UTF-8 first, a path became
/// another), and not empty.
fn path(key: &str, value: &OsStr) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err(format!("--{key}: the path is empty"));
    }
    Ok(PathBuf::from(value))
}

fn parse_settings(pairs: Vec<(String, OsString)>) -> Result<Settings, String> {
    let mut id = None;
    let mut dir = None;
    let mut listen = None;
    let mut client_listen = None;
    let mut peers = HashMap::new();
    let mut cluster_id = None;
    let mut secret_file: Option<PathBuf> = None;
    let mut checkpoint_every = 100_000;
    let mut tick_ms = 10;
    let mut sync_stall_limit_ms = 1000;
    let mut segment_bytes = None;
    let mut pin_cap_bytes = 1 << 30;
    let mut snapshot_bytes_max = Config::new(1).snapshot_bytes_max;
    let mut init = false;
    let mut join = false;
    let number = |key: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{key}: {value:?} is not a number"))
    };
    let positive = |key: &str, value: &str| match number(key, value)? {
        0 => Err(format!("{key}: must be above 0")),
        n => Ok(n),
    };
    let address = |key: &str, value: &str| {
        value
            .parse::<SocketAddr>()
            .map_err(|e| format!("{key}: {value:?} is not an address: {e}"))
    };
    let mut seen = std::collections::HashSet::new();
    for (key, raw) in pairs {
        // A second value for a key is a mistake (two config lines, or a flag and a config line),
        // not an override: which one wins would be a guess. `peer` is the one repeated key.
        if key != "peer" && !seen.insert(key.clone()) {
            return Err(format!("{key} is given twice"));
        }
        let value = || text(&key, &raw);
        match key.as_str() {
            "id" => id = Some(number(&key, value()?)?),
            "dir" => dir = Some(path(&key, &raw)?),
            "listen" => listen = Some(address(&key, value()?)?),
            "client-listen" => client_listen = Some(address(&key, value()?)?),
            "peer" => {
                let (peer, at, client) = parse_peer(value()?)?;
                if peers.insert(peer, (at, client)).is_some() {
                    return Err(format!("peer {peer} is given twice"));
                }
            }
            "cluster-id" => cluster_id = Some(number(&key, value()?)?),
            "secret-file" => secret_file = Some(path(&key, &raw)?),
            "checkpoint-every" => checkpoint_every = positive(&key, value()?)?,
            "tick-ms" => {
                tick_ms = positive(&key, value()?)?;
                // Elections come after 10 to 20 ticks: past a minute a tick is a typo.
                if tick_ms > TICK_MS_MAX {
                    return Err(format!("{key}: at most {TICK_MS_MAX} (a minute)"));
                }
            }
            "sync-stall-limit-ms" => sync_stall_limit_ms = number(&key, value()?)?,
            "segment-bytes" => segment_bytes = Some(number(&key, value()?)?),
            "pin-cap-bytes" => pin_cap_bytes = number(&key, value()?)?,
            "snapshot-bytes-max" => snapshot_bytes_max = positive(&key, value()?)?,
            "init" | "join" => {
                let on = match value()? {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("{key}: {other:?} is neither true nor false")),
                };
                *(if key == "init" { &mut init } else { &mut join }) = on;
            }
            other => return Err(format!("unknown option {other:?}\n\n{HELP}")),
        }
    }
    let missing = |what: &str| format!("--{what} is required\n\n{HELP}");
    if init && join {
        return Err(
            "--init and --join exclude each other: --init founds a new cluster, --join enters \
             a running one"
                .into(),
        );
    }
    let id = id.ok_or_else(|| missing("id"))?;
    if id == 0 || peers.contains_key(&id) || peers.contains_key(&0) {
        return Err("node ids start at 1, and a node is not its own --peer".into());
    }
    let secret_file = secret_file.ok_or_else(|| missing("secret-file"))?;
    let secret = read_secret(&secret_file)?;
    let listen = listen.ok_or_else(|| missing("listen"))?;
    let client_listen = client_listen.ok_or_else(|| missing("client-listen"))?;
    check_addresses_differ(listen, client_listen, &peers)?;
    Ok(Settings {
        id,
        dir: dir.ok_or_else(|| missing("dir"))?,
        listen,
        client_listen,
        peers,
        cluster_id: cluster_id.ok_or_else(|| missing("cluster-id"))?,
        secret,
        init,
        join,
        checkpoint_every,
        tick: Duration::from_millis(tick_ms),
        sync_stall_limit: Some(Duration::from_millis(sync_stall_limit_ms))
            .filter(|limit| !limit.is_zero()),
        segment_bytes,
        pin_cap_bytes,
        snapshot_bytes_max,
    })
}

/// The cluster's secret from `file`: its bytes without the whitespace around them, at least
/// `SECRET_BYTES_MIN` of them, from a file of at most `SECRET_FILE_BYTES_MAX` bytes. Warns if
/// other users may read the file.
fn read_secret(file: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read the secret file {}: {e}", file.display());
    let mut secret = Vec::new();
    // One byte past the bound tells a file over it, without reading the rest.
    std::fs::File::open(file)
        .and_then(|f| f.take(SECRET_FILE_BYTES_MAX + 1).read_to_end(&mut secret))
        .map_err(cannot)?;
    if secret.len() as u64 > SECRET_FILE_BYTES_MAX {
        return Err(format!(
            "the secret file {} holds more than {} KiB: a secret is a few dozen bytes (is it \
             the right file?)",
            file.display(),
            SECRET_FILE_BYTES_MAX >> 10
        ));
    }
    // Text with a final newline, as `base64 > FILE` writes it: the whitespace around is not
    // part of the secret.
    let secret = secret.trim_ascii().to_vec();
    if secret.len() < SECRET_BYTES_MIN {
        return Err(format!(
            "the secret in {} is {} bytes (without the whitespace around it); at least {} are \
             needed",
            file.display(),
            secret.len(),
            SECRET_BYTES_MIN
        ));
    }
    if let Ok(meta) = std::fs::metadata(file) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "rwal node: warning: the secret file {} can be read by other users (mode {:o}): \
                 chmod 600 it",
                file.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    Ok(secret)
}

/// Refuses two of this node's addresses and its peers' that are the same, naming both: a peer
/// at this node's own address would be this node talking to itself, and two members at one
/// address are one member. Port 0 (any free port, this node's to bind) is never the same as
/// another.
fn check_addresses_differ(
    listen: SocketAddr,
    client_listen: SocketAddr,
    peers: &HashMap<NodeId, (SocketAddr, SocketAddr)>,
) -> Result<(), String> {
    let mut named = vec![
        ("--listen".to_string(), listen),
        ("--client-listen".to_string(), client_listen),
    ];
    let mut ids: Vec<NodeId> = peers.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let (peer, client) = peers[&id];
        named.push((format!("--peer {id}'s peer address"), peer));
        named.push((format!("--peer {id}'s client address"), client));
    }
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    for (name, addr) in named.into_iter().filter(|(_, addr)| addr.port() != 0) {
        if let Some(first) = seen.get(&addr) {
            return Err(format!(
                "{first} and {name} are both {addr}: each needs an address of its own"
            ));
        }
        seen.insert(addr, name);
    }
    Ok(())
}

/// `line` of a config file without its comment: a `#` at the start of the line or after
/// whitespace begins one. A `#` inside a word (`dir = /data/node#1`) is left, and refused by
/// `read_config`: any `#` began a comment before, and that line founded a log in `/data/node`.
fn without_comment(line: &str) -> &str {
    let mut after_space = true;
    for (at, c) in line.char_indices() {
        if c == '#' && after_space {
            return &line[..at];
        }
        after_space = c.is_whitespace();
    }
    line
}

fn read_config(path: &Path) -> Result<Vec<(String, OsString)>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = without_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        // Builds before 2026-12-03 took a `#` anywhere for a comment: `dir = /data/n#1` meant
        // /data/n there. Read either way it would silently name something else for one of
        // them (and with `init`, found a log there), so it is refused.
        if line.contains('#') {
            return Err(format!(
                "{shown}:{}: a `#` inside a value ({line:?}): put a space before a comment; \
                 a value cannot hold `#` in a config file (give it as a flag)",
                n + 1
            ));
        }
        if line == "init" || line == "join" {
            // The flags without a value: alone on a line, as on the command line.
            pairs.push((line.to_string(), "true".into()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "{shown}:{}: expected `key = value` (or `init` or `join` alone)",
                n + 1
            ));
        };
        pairs.push((key.trim().to_string(), value.trim().into()));
    }
    Ok(pairs)
}

/// Runs `rwal node` with `args` (those after `node`) until a stop signal; an error ends the
/// command with status 2.
pub fn run(args: Vec<OsString>) -> Result<ExitCode, String> {
    let mut pairs = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long("help") | lexopt::Arg::Short('h') => {
                out!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            lexopt::Arg::Long(flag @ ("init" | "join")) => pairs.push((flag.into(), "true".into())),
            lexopt::Arg::Long("config") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                pairs.extend(read_config(Path::new(&value))?);
            }
            lexopt::Arg::Long(key) => {
                let key = key.to_string();
                let value = parser.value().map_err(|e| e.to_string())?;
                pairs.push((key, value));
            }
            other => return Err(format!("{}\n\n{HELP}", other.unexpected())),
        }
    }
    let settings = parse_settings(pairs)?;
    serve(settings)?;
    Ok(ExitCode::SUCCESS)
}

fn log(id: NodeId, line: &str) {
    eprintln!("rwal node {id}: {line}");
}

/// Says what the recovery of the node's log decided: a torn tail cut or damage skipped is for
/// the operator to know, and the node runs on after it.
fn report_recovery(id: NodeId, report: &rwal_wal::RecoveryReport) {
    for event in &report.events {
        if !matches!(event, rwal_wal::RecoveryEvent::Created) {
            log(id, &format!("warning: recovery: {event:?}"));
        }
    }
    log(
        id,
        &format!(
            "log opened, LSNs {}..={}, {} records verified",
            report.first_lsn, report.last_lsn, report.records
        ),
    );
}

/// A client's last applied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LastRequest {
    request: u64,
    lsn: Lsn,
    epoch: u64,
    /// `data_digest` of its data; `None` when restored from a snapshot written before digests
    /// were kept.
    digest: Option<u64>,
}

/// What this node's engine knows: for each client, its last applied request; the LSNs of
/// duplicates (applied as nothing).
#[derive(Default)]
struct EngineState {
    applied: Lsn,
    clients: HashMap<u64, LastRequest>,
    /// The clients by the LSN of their last applied request: the oldest is forgotten first.
    clients_by_lsn: BTreeMap<Lsn, u64>,
    duplicates: BTreeSet<Lsn>,
    /// `duplicates` holds every duplicate from this LSN on (older ones may be forgotten).
    duplicates_complete_from: Lsn,
}

/// Clients remembered at most. The table is bounded, and what it forgets depends only on the
/// order of applied records, so every node forgets the same: a client silent while this many
/// others appended loses exactly-once for a retry of its last request.
const CLIENTS_MAX: usize = 100_000;
/// Duplicate LSNs remembered at most (the oldest forgotten first): READ of records older than
/// the last this many duplicates may return one.
const DUPLICATES_MAX: usize = 1_000_000;

impl EngineState {
    /// Records `last`, the request of `client` just applied.
    fn remember(&mut self, client: u64, last: LastRequest) {
        if let Some(old) = self.clients.insert(client, last) {
            self.clients_by_lsn.remove(&old.lsn);
        }
        self.clients_by_lsn.insert(last.lsn, client);
        while self.clients.len() > CLIENTS_MAX {
            let Some((_, oldest)) = self.clients_by_lsn.pop_first() else {
                break;
            };
            self.clients.remove(&oldest);
        }
    }

    /// The answer to an append of `data` as `request` of `client` that the table already
    /// decides: the LSN and epoch of its applied copy, or an error for a request id below the
    /// client's last or reused for other data; `None` if the request is new.
    fn answer(&self, client: u64, request: u64, data: &[u8]) -> Option<Result<(Lsn, u64), String>> {
        let last = *self.clients.get(&client)?;
        let (lsn, epoch) = (last.lsn, last.epoch);
        if request == last.request {
            if last.digest.is_some_and(|d| d != data_digest(data)) {
                // Answering with the first copy's LSN would acknowledge data that is not in
                // the log.
                return Some(Err(format!(
                    "request {request} of client {client} was first appended with other data \
                     (at LSN {lsn}): a request id must not be reused for other data"
                )));
            }
            Some(Ok((lsn, epoch)))
        } else if request < last.request {
            let last = last.request;
            Some(Err(format!(
                "request {request} of client {client} is below its last applied request {last}"
            )))
        } else {
            None
        }
    }

    /// Records a duplicate at `lsn`.
    fn duplicate(&mut self, lsn: Lsn) {
        self.duplicates.insert(lsn);
        while self.duplicates.len() > DUPLICATES_MAX {
            if let Some(forgotten) = self.duplicates.pop_first() {
                self.duplicates_complete_from = forgotten + 1;
            }
        }
    }
}

/// The node's engine: exactly-once appends per (client, request) id.
#[derive(Clone)]
struct Engine {
    id: NodeId,
    state: Arc<(Mutex<EngineState>, Condvar)>,
}

impl StateMachine for Engine {
    fn apply(&mut self, lsn: Lsn, epoch: u64, data: &[u8]) -> EngineResult {
        let (state, applied) = &*self.state;
        let mut state = state.lock();
        state.applied = lsn;
        match proto::decode_record(data) {
            Some((client, request, data)) => {
                let seen = state
                    .clients
                    .get(&client)
                    .is_some_and(|c| c.request >= request);
                if seen {
                    state.duplicate(lsn);
                } else {
                    let digest = Some(data_digest(data));
                    state.remember(
                        client,
                        LastRequest {
                            request,
                            lsn,
                            epoch,
                            digest,
                        },
                    );
                }
            }
            None => {
                state.duplicate(lsn); // not a client record: never returned
            }
        }
        applied.notify_all();
        Ok(())
    }

    fn snapshot(&mut self) -> EngineResult<Vec<u8>> {
        Ok(encode_state(&self.state.0.lock()))
    }

    fn restore(&mut self, lsn: Lsn, _epoch: u64, snapshot: &[u8]) -> EngineResult {
        // Going on with an empty table could apply a retried request twice: the node stops.
        let Some(mut state) = decode_state(snapshot) else {
            return Err(format!("the snapshot at {lsn} does not decode").into());
        };
        state.applied = lsn;
        *self.state.0.lock() = state;
        self.state.1.notify_all();
        Ok(())
    }

    fn leader_changed(&mut self, leader: Option<NodeId>, term: u64) {
        match leader {
            Some(leader) => log(self.id, &format!("leader is node {leader} in term {term}")),
            None => log(self.id, &format!("no leader in term {term}")),
        }
    }
}

/// A 64-bit FNV-1a hash of a request's data: tells a retry (same data) from a request id reused
/// for other data. Not cryptographic: it catches a client's mistake, not an attacker (the client
/// port is unauthenticated anyway). The same function on every node, so the table is the same.
/// Never 0, which the snapshot uses for "unknown".
fn data_digest(data: &[u8]) -> u64 {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash.max(1)
}

/// Opens the snapshot format that keeps data digests. The first format began with the client
/// count, which never comes near this value (the table holds at most `CLIENTS_MAX`).
const STATE_FORMAT_2: u64 = u64::MAX - 1;

fn encode_state(state: &EngineState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&STATE_FORMAT_2.to_le_bytes());
    out.extend_from_slice(&(state.clients.len() as u64).to_le_bytes());
    for (client, last) in &state.clients {
        // A digest of 0 stands for "unknown" (a client restored from the first format).
        let digest = last.digest.unwrap_or(0);
        for v in [*client, last.request, last.lsn, last.epoch, digest] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&(state.duplicates.len() as u64).to_le_bytes());
    for lsn in &state.duplicates {
        out.extend_from_slice(&lsn.to_le_bytes());
    }
    out
}

fn decode_state(bytes: &[u8]) -> Option<EngineState> {
    let mut body = proto::Body(bytes);
    let mut state = EngineState::default();
    if bytes.is_empty() {
        return Some(state);
    }
    let mut clients = body.u64("clients").ok()?;
    let with_digests = clients == STATE_FORMAT_2;
    if with_digests {
        clients = body.u64("clients").ok()?;
    }
    for _ in 0..clients {
        let client = body.u64("client").ok()?;
        let request = body.u64("request").ok()?;
        let lsn = body.u64("lsn").ok()?;
        let epoch = body.u64("epoch").ok()?;
        let digest = match with_digests {
            true => Some(body.u64("digest").ok()?).filter(|&d| d != 0),
            false => None,
        };
        state.remember(
            client,
            LastRequest {
                request,
                lsn,
                epoch,
                digest,
            },
        );
    }
    let duplicates = body.u64("duplicates").ok()?;
    for _ in 0..duplicates {
        state.duplicates.insert(body.u64("duplicate").ok()?);
    }
    // A full list may have forgotten older ones (the snapshot does not say).
    if state.duplicates.len() >= DUPLICATES_MAX {
        state.duplicates_complete_from = state.duplicates.first().copied().unwrap_or(0);
    }
    body.rest().is_empty().then_some(state)
}

struct Server {
    settings: Settings,
    node: Node,
    engine: Engine,
    network: PeerNetwork,
    /// Appends proposed here and not yet answered, by (client, request).
    inflight: Mutex<HashMap<(u64, u64), Inflight>>,
    /// Notified when an entry of `inflight` leaves `Proposing`.
    inflight_proposed: Condvar,
    /// Set (under the lock of `connections`) once a stop was asked for: no new client is served.
    stopping: AtomicBool,
    /// The client connections being served: at most `CLIENT_CONNECTIONS_MAX`, and a stop ends
    /// their reading. Shared with the thread serving each: one descriptor per connection.
    connections: connections::Connections,
    /// The bytes of requests held at once, across every client.
    request_budget: budget::RequestBudget,
    /// How long a request may take to arrive, from its first byte (`CLIENT_REQUEST_TIMEOUT`).
    request_timeout: Duration,
    /// The lines about client connections cut off or malformed: at most 10 a second.
    client_lines: line_limit::LineLimit,
}

const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
const CLIENT_CONNECTIONS_MAX: usize = 512;
const READ_RECORDS_MAX: u32 = 10_000;
const READ_BYTES_MAX: usize = 16 << 20;
/// LSNs of the duplicate list a READ copies under the engine's lock at a time.
const DUPLICATES_WINDOW: Lsn = 4096;

fn serve(settings: Settings) -> Result<(), String> {
    let id = settings.id;
    // The first SIGTERM or SIGINT asks for a stop; a second, while stopping, exits at once.
    let stop_requested = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop_requested.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop_requested.clone()))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    // Before the log is opened: a start that fails on a busy client port must not have founded
    // the cluster's log (with --init) on its way.
    let listener = TcpListener::bind(settings.client_listen).map_err(|e| {
        format!(
            "--client-listen: cannot listen on {}: {e}",
            settings.client_listen
        )
    })?;
    let server = Arc::new(open_server(settings)?);
    let client_addr = listener.local_addr().map_err(|e| e.to_string())?;
    if let Some(limit) = descriptors::soft_limit() {
        let room = descriptors::left(limit).map(|left| left.saturating_sub(descriptors::KEPT_FREE));
        if let Some(room) = room.filter(|&room| room < CLIENT_CONNECTIONS_MAX as u64) {
            log(
                id,
                &format!(
                    "warning: the open-files limit ({limit}) leaves room for {room} client \
                     connections, not {CLIENT_CONNECTIONS_MAX}: raise it (`ulimit -n`, systemd's \
                     LimitNOFILE=) to serve more"
                ),
            );
        }
    }
    log(
        id,
        &format!(
            "serving clients on {client_addr}, peers on {}",
            server.network.local_addr()
        ),
    );
    // Both end by themselves once `stopping` is set; the stop waits for their handles on the
    // server, not for their threads.
    let checkpointer = server.clone();
    std::thread::Builder::new()
        .name("rwal-node-checkpoint".into())
        .spawn(move || checkpoint_loop(&checkpointer))
        .map_err(|e| e.to_string())?;
    let acceptor = server.clone();
    std::thread::Builder::new()
        .name("rwal-node-accept".into())
        .spawn(move || accept_clients(&acceptor, &listener))
        .map_err(|e| e.to_string())?;
    let mut redial = Redial::default();
    while !stop_requested.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        redial.members_added_again(&server);
    }
    stop(server, client_addr)
}

/// Gives the transport back a configured peer that a membership change made a member again.
/// The transport forgets a member when its removal is applied (it is cut off), and nothing
/// else tells it that the member was added back (docs/network.md section 4): this looks at the
/// membership the node publishes.
#[derive(Default)]
struct Redial {
    /// The members seen at the last look.
    members: Option<Vec<NodeId>>,
    /// Members the transport has had no address for, since when.
    missing_since: HashMap<NodeId, Instant>,
}

/// A member the transport has had no address for this long is given one, even if no look saw
/// it outside the membership (a removal and an addition between two looks).
const REDIAL_MISSING_FOR: Duration = Duration::from_secs(2);

impl Redial {
    fn members_added_again(&mut self, server: &Server) {
        let id = server.settings.id;
        let membership = server.node.status().membership;
        let mut members: Vec<NodeId> = membership
            .voters
            .iter()
            .chain(&membership.learners)
            .copied()
            .filter(|&member| member != id)
            .collect();
        members.sort_unstable();
        let now = Instant::now();
        for &member in &members {
            if server.network.peer_addr(member).is_some() {
                self.missing_since.remove(&member);
                continue;
            }
            let since = *self.missing_since.entry(member).or_insert(now);
            // A removal takes the address away just before the membership without the member
            // is published: a member missing from the transport is taken for one added again
            // only if a look saw it outside the membership, or after a while.
            let added_again = self
                .members
                .as_ref()
                .is_some_and(|before| !before.contains(&member));
            if !added_again && now.duration_since(since) < REDIAL_MISSING_FOR {
                continue;
            }
            let Some((addr, _)) = server.settings.peers.get(&member) else {
                continue; // not one of this node's --peer: it cannot dial it
            };
            match server.network.add_peer(member, *addr) {
                Ok(()) => {
                    if !is_member(&server.node.status().membership, member) {
                        // Removed again since the look above: its removal forgot it before
                        // this gave it back.
                        server.network.remove_peer(member);
                        continue;
                    }
                    log(
                        id,
                        &format!("node {member} is a member again: dialling it at {addr}"),
                    );
                }
                Err(e) => log(id, &format!("cannot dial node {member} again: {e}")),
            }
            self.missing_since.remove(&member);
        }
        self.missing_since
            .retain(|member, _| members.contains(member));
        self.members = Some(members);
    }
}

/// Whether `id` is a voter or a learner of `membership`.
fn is_member(membership: &rwal_replication::ConfState, id: NodeId) -> bool {
    membership.voters.contains(&id) || membership.learners.contains(&id)
}

/// Starts the node's peer network and opens its replicated log and engine.
fn open_server(settings: Settings) -> Result<Server, String> {
    let id = settings.id;
    // A founding member bootstraps an empty log with the voters. Done again after its log was
    // lost, it would come back with no memory of its votes or of what it acknowledged.
    let holds_log = Wal::holds_log(&settings.dir).map_err(|e| e.to_string())?;
    if !holds_log && !settings.init && !settings.join {
        return Err(format!(
            "{} holds no log: start with --init only on the first start of a new cluster. A \
             member whose log was lost must not found the cluster again: it has forgotten its \
             votes and could help elect a leader that lacks acknowledged writes. Bring it back \
             as a new member: remove it (`rwal client remove ID` on a running member), start \
             it with --join, and add it (`rwal client add-learner ID`, then `add-voter ID` once \
             it has caught up): README, \"Replacing a member whose log was lost\"",
            settings.dir.display()
        ));
    }
    if holds_log && settings.join {
        // Left in place (a unit file, a config file), --join would let this member come back
        // as a joiner after losing its log without having been removed first.
        return Err(format!(
            "{} holds a log: --join is for a new member's first start only (an empty \
             directory); start without it",
            settings.dir.display()
        ));
    }
    if !holds_log {
        check_empty_for_founding(&settings.dir)?;
    }
    let peers = settings
        .peers
        .iter()
        .map(|(peer, (addr, _))| (*peer, *addr))
        .collect();
    let network = PeerNetwork::start(
        PeerConfig {
            id,
            cluster_id: settings.cluster_id,
            secret: settings.secret.clone(),
            listen: settings.listen,
            peers,
        },
        Arc::new(move |line: &str| log(id, line)),
    )
    .map_err(|e| e.to_string())?;
    let mut voters: Vec<NodeId> = settings.peers.keys().copied().collect();
    voters.push(id);
    voters.sort_unstable();
    let given = voters.clone();
    // Used only for a directory that holds no log.
    let bootstrap = if settings.join {
        Bootstrap::Join
    } else {
        Bootstrap::Voters(voters)
    };
    let mut options = NodeOptions::new(id, &settings.dir, bootstrap);
    // The node's default log options (the `Staged` backend, docs/replication.md section 3.4).
    if let Some(bytes) = settings.segment_bytes {
        options.wal = options.wal.segment_bytes(bytes);
    }
    options.tick_interval = settings.tick;
    options.sync_stall_limit = settings.sync_stall_limit;
    options.config.follower_pin_cap_bytes = Some(settings.pin_cap_bytes);
    options.config.snapshot_bytes_max = settings.snapshot_bytes_max;
    options.log = Some(Arc::new(move |severity: Severity, line: &str| {
        let prefix = match severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        log(id, &format!("{prefix}: {line}"))
    }));
    let engine = Engine {
        id,
        state: Arc::new((Mutex::new(EngineState::default()), Condvar::new())),
    };
    let node = Node::open(options, engine.clone(), network.transport())
        .map_err(|e| format!("cannot open node {id} in {}: {e}", settings.dir.display()))?;
    report_recovery(id, node.recovery_report());
    network.attach(node.inbox());
    let mut stored = node.status().membership.voters;
    stored.sort_unstable();
    if holds_log && stored != given {
        // The flags only found a cluster; a restarted member runs with the membership its log
        // holds, which a typo in --peer (or a change made since) must not silently contradict.
        // Voters only: `rwal node` founds no learners (the library can add some, and such a
        // cluster gets this line at each restart of a member that lists them).
        log(
            id,
            &format!(
                "warning: the log's voters are {stored:?}, this node and --peer name {given:?}; \
                 the log's are used (members change through membership changes, not flags)"
            ),
        );
    }
    Ok(Server {
        settings,
        node,
        engine,
        network,
        inflight: Mutex::new(HashMap::new()),
        inflight_proposed: Condvar::new(),
        stopping: AtomicBool::new(false),
        connections: connections::Connections::new(CLIENT_CONNECTIONS_MAX),
        request_budget: budget::RequestBudget::new(budget::REQUEST_BYTES_BUDGET),
        request_timeout: CLIENT_REQUEST_TIMEOUT,
        client_lines: line_limit::LineLimit::new(10, Duration::from_secs(1)),
    })
}

/// What a founding start stopped before its log was whole leaves in its directory: the log's
/// lock file and its control file being written (`wal/src/control.rs`). A directory holding
/// only these is empty to `--init`, so that such a start can be run again.
/// `lost+found` too: a file system of its own mounted at the directory holds it.
const FOUNDING_LEFTOVERS: [&str; 3] = ["LOCK", "control.tmp", "lost+found"];

/// Refuses to found a log in `dir` if it holds anything (but `FOUNDING_LEFTOVERS`): it is not
/// a log (no control file), and a log founded there would sit beside someone's files (a
/// mistyped --dir), as it used to.
fn check_empty_for_founding(dir: &Path) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("--dir {}: {e}", dir.display())),
    };
    let mut held: Vec<OsString> = entries
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    held.retain(|name| !FOUNDING_LEFTOVERS.iter().any(|leftover| name == leftover));
    held.sort();
    let Some(first) = held.first() else {
        return Ok(());
    };
    let more = match held.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    Err(format!(
        "--dir {}: not empty and not a log (it holds {first:?}{more}, and no control file): \
         a new log (--init, --join) goes only in an empty or new directory",
        dir.display()
    ))
}

/// Serves each client connection on its own thread, at most `CLIENT_CONNECTIONS_MAX` at once
/// (past that, a newcomer takes the slot of the connection idle longest between requests:
/// `connections.rs`) and never with the last `descriptors::KEPT_FREE` file descriptors, until the
/// node stops. Connections past either limit are answered RETRY and closed.
fn accept_clients(server: &Arc<Server>, listener: &TcpListener) {
    let id = server.settings.id;
    // Refusals and failed accepts come as fast as connections do: logged at most once in 10 s.
    let refusals = line_limit::LineLimit::new(1, Duration::from_secs(10));
    let descriptors_max = descriptors::soft_limit();
    for stream in listener.incoming() {
        if server.stopping.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors (or memory) for now: wait rather than spin a core on
                // a listener that stays ready. Logged like a refusal: at most once in 10 s.
                if let Some(line) =
                    refusals.admit(&format!("accepting a client failed: {e}"), Instant::now())
                {
                    log(id, &line);
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let left = descriptors_max.and_then(descriptors::left);
        if let Some(left) = left.filter(|&l| l < descriptors::KEPT_FREE) {
            refuse(
                id,
                &refusals,
                &stream,
                &format!(
                    "the node is short of file descriptors ({left} left, and client connections \
                     leave {} to its log and peers; its open-files limit may be low)",
                    descriptors::KEPT_FREE
                ),
            );
            continue;
        }
        let connection = match server.connections.admit(stream, &server.stopping) {
            (connections::Admission::Served(connection), closed) => {
                if let Some(closed) = closed {
                    let peer = closed
                        .peer
                        .map_or_else(|| "?".to_string(), |p| p.to_string());
                    let line = format!(
                        "closed the connection of client {peer}, idle for {:?}: all {} client \
                         connection slots were taken, and a new connection took its slot",
                        closed.idle,
                        server.connections.max()
                    );
                    if let Some(line) = refusals.admit(&line, Instant::now()) {
                        log(id, &line);
                    }
                }
                connection
            }
            (connections::Admission::Full(stream), _) => {
                refuse(
                    id,
                    &refusals,
                    &stream,
                    &format!(
                        "the node serves {} client connections at most, and each of them has a \
                         request being handled",
                        server.connections.max()
                    ),
                );
                continue;
            }
            (connections::Admission::Stopping, _) => continue,
        };
        let client_server = server.clone();
        let served = connection.clone();
        let spawned = std::thread::Builder::new()
            .name("rwal-node-client".into())
            .spawn(move || {
                let server = client_server;
                let peer = served.stream().peer_addr();
                if let Err(e) = serve_client(&server, &served) {
                    // A request cut off by its deadline or malformed (or ended half way) is
                    // worth a line; an idle or reset connection, or one a stop ended, is not.
                    let worth_a_line = matches!(
                        e.kind(),
                        std::io::ErrorKind::InvalidData
                            | std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::TimedOut
                    );
                    // A connection whose slot a newcomer took was logged by the acceptor.
                    let ended_by_us = server.stopping.load(Ordering::Acquire) || served.taken();
                    if worth_a_line && !ended_by_us {
                        let peer = peer.map_or_else(|_| "?".to_string(), |p| p.to_string());
                        let line = format!("closed the connection of client {peer}: {e}");
                        if let Some(line) = server.client_lines.admit(&line, Instant::now()) {
                            log(id, &line);
                        }
                    }
                }
                server.connections.remove(&served);
            });
        if spawned.is_err() {
            log(id, "cannot start a client thread");
            server.connections.remove(&connection);
        }
    }
}

/// Turns a connection away: answers RETRY with `why` (without waiting: the answer fits in a new
/// socket's buffer, and a client that does not read it is not waited for), closes it, and logs
/// it within `lines`.
fn refuse(id: NodeId, lines: &line_limit::LineLimit, stream: &TcpStream, why: &str) {
    let answer = format!("{why}; try again later");
    if stream.set_nonblocking(true).is_ok() {
        let _ = proto::write_message(&mut &*stream, proto::RETRY, answer.as_bytes());
    }
    let line = format!("refused a client connection: {why}");
    if let Some(line) = lines.admit(&line, Instant::now()) {
        log(id, &line);
    }
}

/// Hands leadership to the most up-to-date other live voter; a line saying how it went. Raft gives
/// a transfer one election timeout, which a loaded machine can miss: three tries.
fn hand_leadership_over(node: &Node) -> String {
    let mut outcome = String::new();
    for _ in 0..3 {
        match node.transfer_leadership(None, Duration::from_secs(1)) {
            Ok(to) => return format!("handed leadership to node {to}"),
            Err(e @ Error::Timeout { .. }) => outcome = e.to_string(),
            Err(e) => return format!("did not hand leadership over: {e}"),
        }
    }
    format!("did not hand leadership over: {outcome}; the others elect a leader")
}

/// The address to reach a listener bound to `addr` from this host.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Stops `rwal node` (SIGTERM or SIGINT): serves no new client, lets each client thread answer
/// the request it is on (an append still waits for its commit, up to its timeout), then closes
/// the node and its log. Gives up on a clean close, not on anything acknowledged, if a request
/// is still in progress after `APPEND_TIMEOUT`.
fn stop(server: Arc<Server>, client_addr: SocketAddr) -> Result<(), String> {
    let id = server.settings.id;
    // Their next read ends; the reply being prepared can still be written.
    let connected = server.connections.stop(&server.stopping);
    log(
        id,
        &format!(
            "stopping: answering what {connected} client connections are doing, then closing \
             the log"
        ),
    );
    // A leader hands over first, so that the cluster need not wait an election timeout; the
    // appends in progress here were replicated to the successor and it commits them. A single
    // voter has nobody to hand over to (trying logged a failure at each clean stop).
    let status = server.node.status();
    let another_voter = status.membership.voters.iter().any(|&voter| voter != id);
    if status.role == Role::Leader && another_voter {
        log(id, &hand_leadership_over(&server.node));
    }
    // The acceptor waits in `accept`: a connection of our own wakes it to see `stopping`.
    let _ = TcpStream::connect_timeout(&reachable(client_addr), Duration::from_secs(1));
    // Every thread serving a client, the acceptor and the checkpointer hold the server: it is
    // ours alone once they all ended.
    let alone = |deadline: Instant| {
        while Instant::now() < deadline && Arc::strong_count(&server) > 1 {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    alone(Instant::now() + APPEND_TIMEOUT + Duration::from_secs(1));
    if Arc::strong_count(&server) > 1 {
        // Every append has had its answer by now. What is left writes an answer its client
        // does not take (a large READ read slowly, or not at all), and would hold the stop
        // for up to `CLIENT_WRITE_TIMEOUT`: the connections still open are cut, which ends
        // those writes.
        server.connections.cut_all();
        alone(Instant::now() + Duration::from_secs(2));
    }
    let Ok(server) = Arc::try_unwrap(server) else {
        return Err(format!(
            "node {id}: requests still in progress after {:?}; exiting without closing the \
             log (everything acknowledged is durable: the next start recovers it)",
            APPEND_TIMEOUT
        ));
    };
    let Server { node, network, .. } = server;
    let closed = node.close();
    drop(network);
    match closed {
        Ok(()) => {
            log(id, "stopped cleanly");
            Ok(())
        }
        Err(e) => Err(format!("node {id} stopped with an error: {e}")),
    }
}

/// Checkpoints the engine's state and compacts every `checkpoint_every` applied records.
fn checkpoint_loop(server: &Server) {
    let mut schedule = CheckpointSchedule::new(server.settings.checkpoint_every);
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

/// The first wait after a failed checkpoint; each failure in a row doubles it.
const CHECKPOINT_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between tries of a checkpoint that keeps failing.
const CHECKPOINT_RETRY_MAX: Duration = Duration::from_secs(60);

/// When the checkpoint loop checkpoints: every `every` applied LSNs, and after a failure (a full
/// disk, say) not again before a wait that doubles with each failure in a row. Without the
/// wait it tried every 200 ms, each try encoding the engine's whole state under the lock its
/// apply needs and writing a log line (found by review on 2026-12-03).
struct CheckpointSchedule {
    every: u64,
    last: u64,
    failures: u32,
    not_before: Option<Instant>,
}

impl CheckpointSchedule {
    fn new(every: u64) -> CheckpointSchedule {
        CheckpointSchedule {
            every,
            last: 0,
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

/// A client connection idle this long is closed.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A request must arrive whole within this long of its first byte: a client that sends a byte
/// now and then would otherwise hold a connection slot and part of the request budget for as
/// long as it likes (the idle timeout counts from the last byte).
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A request holding bytes of the request budget must arrive at the pace that delivers it whole
/// by the request timeout, give or take this share of it (a sixteenth: a pause of a sixteenth
/// of the timeout): a client that sent a request's first bytes and then stalls (or trickles)
/// would otherwise hold its share of the budget for the whole timeout, and a few such clients,
/// renewed, would keep every large request answered RETRY at little cost.
const BODY_PACE_SLACK_DIVISOR: usize = 16;
/// A client that takes no bytes of its answer for this long is cut off: it would otherwise hold
/// its thread, its connection slot and the answer, and keep a stop from finishing.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

fn serve_client(server: &Server, connection: &Arc<connections::Connection>) -> std::io::Result<()> {
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
        let (status, reply) = match (request.op, &request.held) {
            (op, None) => (
                proto::RETRY,
                format!(
                    "operation {op} not handled: the node's memory for requests stayed full for \
                     {:?}; try again later",
                    server.request_timeout
                )
                .into_bytes(),
            ),
            (proto::OP_APPEND, Some(_)) => append(server, &request.body),
            (proto::OP_READ, Some(_)) => read(server, &request.body, &mut answer_share),
            (proto::OP_STATUS, Some(_)) => (proto::OK, status_json(server).into_bytes()),
            (proto::OP_MEMBERSHIP, Some(_)) => membership(server, &request.body),
            (other, Some(_)) => (
                proto::ERROR,
                format!("unknown operation {other}").into_bytes(),
            ),
        };
        // Handled: its bytes go back to the budget before the answer is written, which may
        // take as long as the client's reading.
        drop(request);
        write_answer(stream, status, &reply)?;
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
fn write_answer(stream: &TcpStream, status: u8, body: &[u8]) -> std::io::Result<()> {
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
        stream.set_write_timeout(Some(left))?;
        match (&*stream).write_vectored(parts) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) => return Err(e),
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
            // Past it, one more look (bytes the client sent may wait in the socket while this
            // thread did not run): a client is judged by what it sent, not by what was read.
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

fn not_leader(server: &Server, leader: Option<NodeId>) -> (u8, Vec<u8>) {
    let mut body = leader.unwrap_or(0).to_le_bytes().to_vec();
    let address = leader.and_then(|l| {
        if l == server.settings.id {
            Some(server.settings.client_listen)
        } else {
            server.settings.peers.get(&l).map(|p| p.1)
        }
    });
    if let Some(address) = address {
        body.extend_from_slice(address.to_string().as_bytes());
    }
    (proto::NOT_LEADER, body)
}

/// `OP_MEMBERSHIP`: proposes the change on the leader and answers its LSN once this node has
/// applied it and the membership shows it (an entry at that LSN applied proves nothing: a
/// leadership change may have replaced it). Not idempotent: a change sent again after its
/// outcome was unknown may be refused, or be a change of nothing; `rwal client` does not send
/// one twice.
fn membership(server: &Server, body: &[u8]) -> (u8, Vec<u8>) {
    let mut body = proto::Body(body);
    let (change, id) = match (body.u8("change"), body.u64("node id")) {
        (Ok(change), Ok(id)) => (change, id),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    let change = match change {
        proto::MEMBERSHIP_ADD_VOTER => MembershipChange::AddVoter(id),
        proto::MEMBERSHIP_ADD_LEARNER => MembershipChange::AddLearner(id),
        proto::MEMBERSHIP_REMOVE => MembershipChange::Remove(id),
        other => return error(format!("unknown membership change {other}")),
    };
    // What the membership shows once the change is made.
    let made = |m: &rwal_replication::ConfState| match change {
        MembershipChange::AddVoter(id) => m.voters.contains(&id),
        MembershipChange::AddLearner(id) => m.learners.contains(&id),
        MembershipChange::Remove(id) => !is_member(m, id),
    };
    if let MembershipChange::AddLearner(id) = change {
        // raft would make a learner of a voter: a demotion nobody asked for.
        if server.node.status().membership.voters.contains(&id) {
            return error(format!(
                "node {id} is a voter: add-learner adds a new member (remove it first)"
            ));
        }
    }
    let lsn = match server.node.change_membership(change) {
        Ok(lsn) => lsn,
        Err(Error::NotLeader { leader }) => return not_leader(server, leader),
        Err(e @ Error::InvalidArgument { .. }) => return error(e.to_string()),
        // Nothing was proposed: sending it again is safe.
        Err(e) => return (proto::RETRY, e.to_string().into_bytes()),
    };
    let (status, applied) = server
        .node
        .wait_status(APPEND_TIMEOUT, |s| s.applied_lsn >= lsn);
    if applied && made(&status.membership) {
        (proto::OK, lsn.to_le_bytes().to_vec())
    } else if applied {
        (
            proto::RETRY,
            format!(
                "the change proposed at LSN {lsn} is not in the membership now applied (a new \
                 leader replaced it, or another change followed): look at the status before \
                 sending it again"
            )
            .into_bytes(),
        )
    } else {
        (
            proto::RETRY,
            format!(
                "the change at LSN {lsn} was not applied within {APPEND_TIMEOUT:?} (applied: {}): \
                 look at the status before sending it again",
                status.applied_lsn
            )
            .into_bytes(),
        )
    }
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
    data: &[u8],
) -> Option<Result<(Lsn, u64), String>> {
    server.engine.state.0.lock().answer(client, request, data)
}

/// An append being handled by this node, by (client, request), with the `data_digest` of
/// its data (a copy with other data is refused, not answered with this one's LSN).
#[derive(Clone, Copy)]
struct Inflight {
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
fn reserve(server: &Server, key: (u64, u64), data: &[u8]) -> Reserved {
    let deadline = Instant::now() + APPEND_TIMEOUT;
    let digest = data_digest(data);
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
                if let Some(answer) = applied_answer(server, key.0, key.1, data) {
                    return Reserved::Applied(answer);
                }
                let state = InflightState::Proposing;
                inflight.insert(key, Inflight { digest, state });
                return Reserved::Ours;
            }
        }
    }
}

fn append(server: &Server, body: &[u8]) -> (u8, Vec<u8>) {
    let mut body = proto::Body(body);
    let (client, request) = match (body.u64("client id"), body.u64("request id")) {
        (Ok(c), Ok(r)) => (c, r),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    let data = body.rest();
    if let Some(answer) = applied_answer(server, client, request, data) {
        return match answer {
            Ok((lsn, epoch)) => lsn_epoch(lsn, epoch),
            Err(e) => error(e),
        };
    }
    let key = (client, request);
    // `proposer`: this copy proposed the record, and owns the entry of `inflight`.
    let (found, proposer) = match reserve(server, key, data) {
        Reserved::InFlight(found) => (found, false),
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
    let answer = answer_committed(server, (client, request, data), found, outcome);
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
    (client, request, data): (u64, u64, &[u8]),
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
    match applied_answer(server, client, request, data) {
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

    /// A checkpoint that keeps failing is tried again after waits that double, up to a
    /// minute, not every 200 ms; a success brings back the plain schedule.
    #[test]
    fn a_failing_checkpoint_is_tried_again_after_longer_and_longer_waits() {
        let start = Instant::now();
        let mut schedule = CheckpointSchedule::new(100);
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

    #[test]
    fn settings_name_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("rwal-node-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let pairs = |extra: &[(&str, &str)]| {
            let mut p: Vec<(String, OsString)> = [
                ("id", "1"),
                ("dir", "/tmp/x"),
                ("listen", "127.0.0.1:7001"),
                ("client-listen", "127.0.0.1:8001"),
                ("cluster-id", "9"),
                ("peer", "2,127.0.0.1:7002,127.0.0.1:8002"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
            p.push(("secret-file".into(), secret.clone().into()));
            p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.into())));
            p
        };
        let s = parse_settings(pairs(&[])).unwrap();
        assert_eq!(
            s.secret, b"0123456789abcdef0123",
            "trailing newline trimmed"
        );
        assert_eq!(s.peers[&2].1, "127.0.0.1:8002".parse().unwrap());
        let e = parse_settings(pairs(&[("peer", "3,nowhere,127.0.0.1:1")])).unwrap_err();
        assert!(e.contains("\"nowhere\" is not an address"), "{e}");
        let e = parse_settings(pairs(&[("peer", "1,127.0.0.1:1,127.0.0.1:2")])).unwrap_err();
        assert!(e.contains("not its own --peer"), "{e}");
        let e = parse_settings(pairs(&[("speed", "fast")])).unwrap_err();
        assert!(e.contains("unknown option \"speed\""), "{e}");
        let mut no_id = pairs(&[]);
        no_id.remove(0);
        assert!(parse_settings(no_id)
            .unwrap_err()
            .contains("--id is required"));
        // A key given twice, a zero tick, a short secret: refused, naming the thing.
        let e = parse_settings(pairs(&[("cluster-id", "10")])).unwrap_err();
        assert_eq!(e, "cluster-id is given twice");
        assert!(!s.init, "founding is asked for, never assumed");
        assert!(parse_settings(pairs(&[("init", "true")])).unwrap().init);
        let e = parse_settings(pairs(&[("init", "yes")])).unwrap_err();
        assert_eq!(e, "init: \"yes\" is neither true nor false");
        let e = parse_settings(pairs(&[("tick-ms", "0")])).unwrap_err();
        assert_eq!(e, "tick-ms: must be above 0");
        let e = parse_settings(pairs(&[("tick-ms", "1000000000000000")])).unwrap_err();
        assert_eq!(e, "tick-ms: at most 60000 (a minute)");
        assert_eq!(s.snapshot_bytes_max, Config::new(1).snapshot_bytes_max);
        let snapshots = parse_settings(pairs(&[("snapshot-bytes-max", "4096")])).unwrap();
        assert_eq!(snapshots.snapshot_bytes_max, 4096);
        let e = parse_settings(pairs(&[("snapshot-bytes-max", "0")])).unwrap_err();
        assert_eq!(e, "snapshot-bytes-max: must be above 0");
        let mut one_port = pairs(&[]);
        for (key, value) in one_port.iter_mut() {
            if key == "client-listen" {
                let listen = s.listen.to_string();
                *value = listen.into();
            }
        }
        let e = parse_settings(one_port).unwrap_err();
        assert!(e.contains("--listen and --client-listen are both"), "{e}");
        // The stall limit: 1 s unless given, 0 for never.
        assert_eq!(s.sync_stall_limit, Some(Duration::from_secs(1)));
        let stall = |ms| parse_settings(pairs(&[("sync-stall-limit-ms", ms)]));
        assert_eq!(
            stall("250").unwrap().sync_stall_limit,
            Some(Duration::from_millis(250))
        );
        assert_eq!(stall("0").unwrap().sync_stall_limit, None);
        let e = stall("-1").unwrap_err();
        assert_eq!(e, "sync-stall-limit-ms: \"-1\" is not a number");
        let short = dir.join("short");
        std::fs::write(&short, "  too short \n").unwrap();
        let mut with_short = pairs(&[]);
        with_short.retain(|(k, _)| k != "secret-file");
        with_short.push(("secret-file".into(), short.into()));
        let e = parse_settings(with_short).unwrap_err();
        assert!(
            e.contains("short is 9 bytes") && e.contains("at least 16"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What the audit of 2026-12 found taken without a word: an empty --dir, a peer at this
    /// node's own address or two members at one, a secret file without end, a path that is not
    /// UTF-8 made into another.
    #[test]
    fn settings_refuse_empty_paths_shared_addresses_and_huge_secret_files() {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let dir = std::env::temp_dir().join(format!("rwal-node-refuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let pairs = |dir: OsString, peers: &[&str], secret: &Path| {
            let mut p: Vec<(String, OsString)> = [
                ("id", "1"),
                ("listen", "127.0.0.1:7001"),
                ("client-listen", "127.0.0.1:8001"),
                ("cluster-id", "9"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
            p.push(("dir".into(), dir));
            p.push(("secret-file".into(), secret.into()));
            p.extend(peers.iter().map(|peer| ("peer".to_string(), peer.into())));
            p
        };
        let peer_2 = "2,127.0.0.1:7002,127.0.0.1:8002";
        // A path that is not UTF-8 is kept as it is.
        let odd = OsString::from_vec(b"/tmp/node\xff1".to_vec());
        let s = parse_settings(pairs(odd.clone(), &[peer_2], &secret)).unwrap();
        assert_eq!(s.dir.as_os_str().as_bytes(), odd.as_bytes());
        let e = parse_settings(pairs("".into(), &[peer_2], &secret)).unwrap_err();
        assert_eq!(e, "--dir: the path is empty");
        let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], Path::new(""))).unwrap_err();
        assert_eq!(e, "--secret-file: the path is empty");
        // Addresses shared: with this node's, between peers, within a peer.
        let shared = |peers: &[&str]| parse_settings(pairs("/tmp/x".into(), peers, &secret));
        let e = shared(&["2,127.0.0.1:7001,127.0.0.1:8002"]).unwrap_err();
        assert_eq!(
            e,
            "--listen and --peer 2's peer address are both 127.0.0.1:7001: each needs an \
             address of its own"
        );
        let e = shared(&["2,127.0.0.1:7002,127.0.0.1:8001"]).unwrap_err();
        assert!(
            e.starts_with("--client-listen and --peer 2's client address are both 127.0.0.1:8001"),
            "{e}"
        );
        let e = shared(&[peer_2, "3,127.0.0.1:7002,127.0.0.1:8003"]).unwrap_err();
        assert!(
            e.starts_with("--peer 2's peer address and --peer 3's peer address are both"),
            "{e}"
        );
        let e = shared(&[peer_2, "3,127.0.0.1:7003,127.0.0.1:7002"]).unwrap_err();
        assert!(
            e.starts_with("--peer 2's peer address and --peer 3's client address are both"),
            "{e}"
        );
        let e = shared(&["2,127.0.0.1:7002,127.0.0.1:7002"]).unwrap_err();
        assert!(e.contains("are both 127.0.0.1:7002"), "{e}");
        // A secret file past 64 KiB is refused, whatever it holds, and a device without end
        // is read no further.
        let large = dir.join("large");
        std::fs::write(&large, vec![b'x'; (64 << 10) + 1]).unwrap();
        let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], &large)).unwrap_err();
        assert!(
            e.contains(&format!(
                "secret file {} holds more than 64 KiB",
                large.display()
            )),
            "{e}"
        );
        std::fs::write(&large, vec![b'x'; 64 << 10]).unwrap();
        parse_settings(pairs("/tmp/x".into(), &[peer_2], &large)).unwrap();
        let zero = Path::new("/dev/zero");
        if zero.exists() {
            let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], zero)).unwrap_err();
            assert!(e.contains("holds more than 64 KiB"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_client_table_and_the_duplicates_are_bounded_and_forget_the_oldest() {
        let mut state = EngineState::default();
        let last = |lsn| LastRequest {
            request: 1,
            lsn,
            epoch: 1,
            digest: Some(lsn),
        };
        for client in 0..(CLIENTS_MAX as u64 + 10) {
            state.remember(client, last(client + 100));
        }
        assert_eq!(state.clients.len(), CLIENTS_MAX);
        assert_eq!(state.clients_by_lsn.len(), CLIENTS_MAX);
        assert!(!state.clients.contains_key(&9) && state.clients.contains_key(&10));
        // A client's newer request moves it to the young end.
        state.remember(10, last(1 << 40));
        state.remember(u64::MAX, last((1 << 40) + 1));
        assert!(state.clients.contains_key(&10) && !state.clients.contains_key(&11));
        // Decoding a snapshot rebuilds the order.
        let decoded = decode_state(&encode_state(&state)).unwrap();
        assert_eq!(decoded.clients, state.clients);
        assert_eq!(decoded.clients_by_lsn, state.clients_by_lsn);
        for lsn in 0..(DUPLICATES_MAX as u64 + 5) {
            state.duplicate(lsn);
        }
        assert_eq!(state.duplicates.len(), DUPLICATES_MAX);
        assert_eq!(state.duplicates.first(), Some(&5));
    }

    #[test]
    fn a_config_file_gives_the_same_settings_as_flags() {
        let dir = std::env::temp_dir().join(format!("rwal-node-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "0123456789abcdef0123").unwrap();
        let config = dir.join("node.conf");
        std::fs::write(
            &config,
            format!(
                "# node 1 of 2\nid = 1\ndir = /tmp/n1\nlisten = 127.0.0.1:7001 # peers\n\
                 client-listen = 127.0.0.1:8001\ncluster-id = 4\n\
                 peer = 2, 127.0.0.1:7002, 127.0.0.1:8002\nsecret-file = {}\n",
                secret.display()
            ),
        )
        .unwrap();
        let s = parse_settings(read_config(&config).unwrap()).unwrap();
        assert_eq!((s.id, s.cluster_id, s.init), (1, 4, false));
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(s.peers[&2].0, "127.0.0.1:7002".parse().unwrap());
        // `init`, the flag without a value, alone on its line or with one.
        let text = std::fs::read_to_string(&config).unwrap();
        for init in ["init", "  init  # the first start", "init = true"] {
            std::fs::write(&config, format!("{text}{init}\n")).unwrap();
            let s = parse_settings(read_config(&config).unwrap()).unwrap();
            assert!(s.init, "{init:?}");
        }
        std::fs::write(&config, "id 1\n").unwrap();
        let e = read_config(&config).unwrap_err();
        assert!(e.contains(":1: expected `key = value`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A `#` begins a comment at the start of a line or after whitespace only; inside a value
    /// it is refused. Any `#` began one, and `dir = /data/node#1` named `/data/node`.
    #[test]
    fn a_hash_inside_a_config_value_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("rwal-node-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Its own name is not UTF-8, and is read all the same.
        let config = dir.join(OsStr::from_bytes(b"node\xff.conf"));
        std::fs::write(
            &config,
            "# a comment\n   # an indented one\ndir = /data/node\nid = 1 # the first\n\
             cluster-id = 4\t# after a tab\n",
        )
        .unwrap();
        let pairs = read_config(&config).unwrap();
        let pairs: Vec<(&str, &OsStr)> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            pairs,
            [
                ("dir", OsStr::new("/data/node")),
                ("id", OsStr::new("1")),
                ("cluster-id", OsStr::new("4")),
            ]
        );
        // Inside a value, neither a comment (as it was: /data/node) nor part of the value:
        // refused, naming the line.
        std::fs::write(&config, "id = 1\ndir = /data/node#1\n").unwrap();
        let error = read_config(&config).unwrap_err();
        assert!(error.contains(":2: a `#` inside a value"), "{error}");
        assert_eq!(without_comment("#x"), "");
        assert_eq!(without_comment("a=b#c # d"), "a=b#c ");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_engine_applies_each_request_once_and_its_state_survives_a_snapshot() {
        let mut engine = Engine {
            id: 1,
            state: Arc::new((Mutex::new(EngineState::default()), Condvar::new())),
        };
        engine
            .apply(2, 1, &proto::encode_record(7, 1, b"a"))
            .unwrap();
        engine
            .apply(3, 1, &proto::encode_record(7, 1, b"a"))
            .unwrap(); // a retry that got in
        engine
            .apply(4, 2, &proto::encode_record(7, 2, b"b"))
            .unwrap();
        engine.apply(5, 2, b"short").unwrap();
        let applied = LastRequest {
            request: 2,
            lsn: 4,
            epoch: 2,
            digest: Some(data_digest(b"b")),
        };
        {
            let state = engine.state.0.lock();
            assert_eq!(state.clients[&7], applied);
            assert_eq!(state.duplicates, BTreeSet::from([3, 5]));
        }
        let bytes = engine.snapshot().unwrap();
        let mut other = Engine {
            id: 2,
            state: Arc::new((Mutex::new(EngineState::default()), Condvar::new())),
        };
        other.restore(5, 2, &bytes).unwrap();
        let state = other.state.0.lock();
        assert_eq!(state.clients[&7], applied);
        assert_eq!(state.duplicates, BTreeSet::from([3, 5]));
        assert_eq!(state.applied, 5);
    }

    #[test]
    fn a_request_id_reused_for_other_data_is_refused_not_acknowledged() {
        let mut engine = Engine {
            id: 1,
            state: Arc::new((Mutex::new(EngineState::default()), Condvar::new())),
        };
        engine
            .apply(2, 1, &proto::encode_record(7, 1, b"first"))
            .unwrap();
        // The same id with other data reaches the log (proposed before the first was applied
        // here): applied as nothing, like any duplicate.
        engine
            .apply(3, 1, &proto::encode_record(7, 1, b"other"))
            .unwrap();
        let state = engine.state.0.lock();
        assert_eq!(state.duplicates, BTreeSet::from([3]));
        assert_eq!(state.answer(7, 1, b"first"), Some(Ok((2, 1))));
        let refused = state.answer(7, 1, b"other").unwrap().unwrap_err();
        assert!(refused.contains("must not be reused"), "{refused}");
        assert!(state.answer(7, 0, b"first").unwrap().is_err());
        assert_eq!(state.answer(7, 2, b"next"), None);
        assert_eq!(state.answer(8, 1, b"first"), None);
    }

    /// A single-voter node in this process, leading, and its directory.
    fn single_node_server(name: &str) -> (Server, PathBuf) {
        let dir = std::env::temp_dir().join(format!("rwal-node-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = Settings {
            id: 1,
            dir: dir.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            client_listen: "127.0.0.1:0".parse().unwrap(),
            peers: HashMap::new(),
            cluster_id: 9,
            secret: b"0123456789abcdef0123".to_vec(),
            init: true,
            join: false,
            checkpoint_every: u64::MAX,
            tick: Duration::from_millis(5),
            sync_stall_limit: Some(Duration::from_secs(1)),
            segment_bytes: None,
            pin_cap_bytes: 1 << 20,
            snapshot_bytes_max: 1 << 20,
        };
        let server = open_server(settings).unwrap();
        let (status, leading) = server
            .node
            .wait_status(Duration::from_secs(30), |s| s.role == Role::Leader);
        assert!(leading, "{status:?}");
        (server, dir)
    }

    /// Serves one client connection as the acceptor's thread would.
    fn serve_one(server: &Server, stream: TcpStream) -> std::io::Result<()> {
        let connection = match server.connections.admit(stream, &server.stopping) {
            (connections::Admission::Served(connection), _) => connection,
            (other, _) => panic!("connection not served: {other:?}"),
        };
        let outcome = serve_client(server, &connection);
        server.connections.remove(&connection);
        outcome
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

    fn close(server: Server, dir: PathBuf) {
        let Server { node, network, .. } = server;
        node.close().unwrap();
        drop(network);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Commits a record of client 5 and waits until the engine applied it.
    fn someone_elses_record(server: &Server) -> (Lsn, u64) {
        let record = proto::encode_record(5, 1, b"someone else's");
        let (lsn, epoch) = server
            .node
            .propose_and_wait(&record, Duration::from_secs(30))
            .unwrap();
        let (state, applied) = &*server.engine.state;
        let mut guard = state.lock();
        while guard.applied < lsn {
            applied.wait_for(&mut guard, Duration::from_millis(10));
        }
        (lsn, epoch)
    }

    /// Takes `bytes` of the server's request budget, which must be free.
    fn hold(server: &Server, bytes: usize) -> budget::Held<'_> {
        let deadline = Instant::now() + Duration::from_secs(1);
        match server
            .request_budget
            .take(bytes, &server.stopping, deadline)
        {
            budget::Taken::Held(held) => held,
            other => panic!("{other:?}"),
        }
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
            let mut ask = |body: &[u8]| {
                proto::write_message(&mut output, proto::OP_STATUS, body).unwrap();
                proto::read_message(&mut input, proto::RESPONSE_BYTES_MAX)
                    .unwrap()
                    .unwrap()
            };
            // A STATUS with a body larger than what goes uncounted: read and dropped when there
            // is no room.
            let large = vec![7; budget::UNBUDGETED_BYTES + 1];
            let (status, body) = ask(&large);
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, proto::RETRY, "{body}");
            assert!(body.contains("memory for requests"), "{body}");
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

    /// What may pass is RETRY (a client asks again), what cannot is ERROR, and a node that
    /// knows the leader names it.
    #[test]
    fn a_failed_read_is_retry_only_where_asking_again_can_help() {
        let (server, dir) = single_node_server("read-failures");
        let status = |e: Error| read_failed(&server, e).0;
        let waiting_for = "a read point";
        assert_eq!(status(Error::Timeout { waiting_for }), proto::RETRY);
        assert_eq!(status(Error::Busy { pending_max: 1 }), proto::RETRY);
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
        let (status, reply) = answer_committed(&server, (9, 1, b"mine"), (lsn, epoch), compacted());
        assert_eq!(status, proto::RETRY, "{}", String::from_utf8_lossy(&reply));
        assert!(String::from_utf8_lossy(&reply).contains("compacted away"));
        // Client 5's own append, in the same position, is found in the table.
        let own = answer_committed(
            &server,
            (5, 1, b"someone else's"),
            (lsn, epoch),
            compacted(),
        );
        assert_eq!(own, lsn_epoch(lsn, epoch));
        close(server, dir);
    }

    #[test]
    fn a_member_without_a_log_starts_only_with_init() {
        let (server, dir) = single_node_server("init");
        let mut settings = Settings {
            init: false,
            join: false,
            ..server.settings.clone()
        };
        close(server, dir.clone());
        // The directory is gone (a lost disk): without --init the node refuses, naming why.
        let refused = open_server(settings.clone()).err().expect("refused");
        assert!(
            refused.contains("holds no log") && refused.contains("--init"),
            "{refused}"
        );
        assert!(!dir.exists(), "nothing was created");
        // With its log, no --init is needed.
        settings.init = true;
        let server = open_server(settings.clone()).unwrap();
        let Server { node, network, .. } = server;
        node.close().unwrap();
        drop(network);
        settings.init = false;
        let server = open_server(settings).unwrap();
        close(server, dir);
    }

    /// --init founds a log only in an empty or new directory, or one that a founding start
    /// stopped half way left (its lock file, a control file being written).
    #[test]
    fn a_log_is_founded_only_in_an_empty_directory() {
        let dir = std::env::temp_dir().join(format!("rwal-node-found-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        check_empty_for_founding(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        check_empty_for_founding(&dir).unwrap();
        for leftover in FOUNDING_LEFTOVERS {
            std::fs::write(dir.join(leftover), "").unwrap();
        }
        check_empty_for_founding(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        std::fs::write(dir.join("todo.txt"), "mine").unwrap();
        let e = check_empty_for_founding(&dir).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "--dir {}: not empty and not a log (it holds \"notes.txt\" and 1 more",
                dir.display()
            )),
            "{e}"
        );
        let file = dir.join("notes.txt");
        let e = check_empty_for_founding(&file).unwrap_err();
        assert!(e.starts_with(&format!("--dir {}: ", file.display())), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
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
        let (status, reply) = append(&server, &proto::encode_record(9, 1, b"B"));
        let reply = String::from_utf8_lossy(&reply);
        assert_eq!(status, proto::ERROR, "{reply}");
        assert!(reply.contains("with other data"), "{reply}");
        close(server, dir);
    }

    #[test]
    fn a_snapshot_of_the_first_format_restores_without_digests() {
        // The first format: client count, then client, request, lsn, epoch; then duplicates.
        let mut old = Vec::new();
        for v in [1u64, 7, 1, 2, 1, 1, 3] {
            old.extend_from_slice(&v.to_le_bytes());
        }
        let state = decode_state(&old).unwrap();
        assert_eq!(state.clients[&7].digest, None);
        assert_eq!(state.duplicates, BTreeSet::from([3]));
        // Without a digest a retry is answered as before, whatever its data.
        assert_eq!(state.answer(7, 1, b"anything"), Some(Ok((2, 1))));
        // Written again, it keeps "unknown" rather than inventing a digest.
        let again = decode_state(&encode_state(&state)).unwrap();
        assert_eq!(again.clients[&7].digest, None);
        assert!(decode_state(&old[..old.len() - 1]).is_none());
        // A snapshot that does not decode fails the restore (the node stops) and leaves the
        // table as it was.
        let mut engine = Engine {
            id: 1,
            state: Arc::new((Mutex::new(state), Condvar::new())),
        };
        let refused = engine.restore(9, 3, &old[..old.len() - 1]).unwrap_err();
        assert_eq!(refused.to_string(), "the snapshot at 9 does not decode");
        assert_eq!(engine.state.0.lock().clients[&7].request, 1);
    }
}
