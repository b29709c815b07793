//! `rwal node`: one node of a replicated cluster, from flags or a config file, serving the
//! client protocol (`docs/network.md` sections 2 and 3).

mod budget;
mod checkpoints;
mod connections;
mod descriptors;
mod engine;
mod identity;
mod line_limit;
pub mod proto;
mod redial;
mod reload;
mod requests;
mod settings;
#[cfg(test)]
mod test_support;

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rwal_replication::net::{PeerConfig, PeerNetwork};
use rwal_replication::{Bootstrap, Error, Node, NodeId, NodeOptions, Role, Severity};
use rwal_wal::Wal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use checkpoints::checkpoint_loop;
use engine::{Engine, EngineState};
use redial::Redial;
use reload::{read_sources, PeerAddrs, Source};
use requests::{serve_client, Inflight, APPEND_TIMEOUT, CLIENT_REQUEST_TIMEOUT};
use settings::{parse_settings, Settings, HELP};

/// Runs `rwal node` with `args` (those after `node`) until a stop signal; an error ends the
/// command with status 2.
pub fn run(args: Vec<OsString>) -> Result<ExitCode, String> {
    let mut sources = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Long("help") | lexopt::Arg::Short('h') => {
                out!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            lexopt::Arg::Long(flag @ ("init" | "join")) => {
                sources.push(Source::Flag(flag.into(), "true".into()))
            }
            lexopt::Arg::Long("config") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                sources.push(Source::File(value.into()));
            }
            lexopt::Arg::Long(key) => {
                let key = key.to_string();
                let value = match parser.optional_value() {
                    Some(attached) => attached, // --key=value
                    None => {
                        let value = parser.value().map_err(|e| e.to_string())?;
                        // Every other option takes a value, and a mistyped flag (`--initt`)
                        // took the next option as its own: the error then named an argument
                        // further on.
                        if let Some(next) = value.to_str().filter(|v| v.starts_with("--")) {
                            return Err(format!(
                                "--{key} is not an option of rwal node, or is given without its \
                                 value ({next} follows it)\n\n{HELP}"
                            ));
                        }
                        value
                    }
                };
                sources.push(Source::Flag(key, value));
            }
            other => return Err(format!("{}\n\n{HELP}", other.unexpected())),
        }
    }
    let settings = parse_settings(read_sources(&sources)?)?;
    serve(settings, &sources)?;
    Ok(ExitCode::SUCCESS)
}

fn log(id: NodeId, line: &str) {
    errln!("rwal node {id}: {line}");
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

struct Server {
    /// As the node started; `peers` holds the peers as last read.
    settings: Settings,
    /// Each peer's addresses, from the `peer` flags and lines as given at the start or read at
    /// the last SIGHUP (`reload.rs`).
    peers: parking_lot::RwLock<HashMap<NodeId, PeerAddrs>>,
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

/// Client connections served at once.
const CLIENT_CONNECTIONS_MAX: usize = 512;

fn serve(settings: Settings, sources: &[Source]) -> Result<(), String> {
    let id = settings.id;
    // The first SIGTERM or SIGINT asks for a stop; a second, while stopping, exits at once.
    let stop_requested = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop_requested.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop_requested.clone()))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    // SIGHUP re-reads the config file (docs/network.md section 2.1) instead of ending the
    // process.
    let reload_requested = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGHUP, reload_requested.clone())
        .map_err(|e| format!("cannot handle signal {SIGHUP}: {e}"))?;
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
        if reload_requested.swap(false, Ordering::AcqRel) {
            reload::reload(&server, sources, &redial);
        }
    }
    stop(server, client_addr)
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
    let identity = identity::Identity {
        cluster_id: settings.cluster_id,
        id,
    };
    if holds_log {
        // Before any peer is dialled or the log is opened: another node's log would answer
        // with its own term and entries.
        identity::check(&settings.dir, identity)?;
    } else {
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
    options.config.max_record_bytes = settings.max_record_bytes;
    options.snapshot_timeout = settings.snapshot_timeout;
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
    // With the log open and locked: no other process started on this directory records its
    // own identity meanwhile.
    match identity::record(&settings.dir, identity) {
        Ok(true) if holds_log => log(
            id,
            &format!(
                "recorded this log as node {id}'s of cluster {} in {} (a log from before \
                 identities were recorded, or a first start stopped before it recorded one)",
                settings.cluster_id,
                settings.dir.join(identity::FILE_NAME).display()
            ),
        ),
        Ok(_) => {}
        Err(e) => {
            let _ = node.close();
            return Err(e);
        }
    }
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
        peers: parking_lot::RwLock::new(settings.peers.clone()),
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
                    let what = if closed.answer_stalled {
                        "its answer unread for"
                    } else {
                        "idle for"
                    };
                    let line = format!(
                        "closed the connection of client {peer}, {what} {:?}: all {} client \
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
        if let Err(e) = spawned {
            // Out of threads (a cgroup's or RLIMIT_NPROC's task limit): answered RETRY, and
            // logged as refusals are, at most once in 10 s. Before 2026-12-06 each such
            // connection was closed unanswered, with a line of its own: a flood of connections
            // wrote lines as fast as it connected.
            refuse(
                id,
                &refusals,
                connection.stream(),
                &format!("the node cannot start a thread to serve it: {e}"),
            );
            server.connections.remove(&connection);
        }
    }
}

/// How long a connection being turned away is given to show what its request is, so that a
/// membership change is answered NOT_MADE (sent again by its client) rather than RETRY (given
/// up as "outcome unknown"). A client writes its request right after connecting, so its first
/// bytes are there at once or within a network crossing; the wait bounds what a flood of silent
/// connections costs the acceptor (at most this long each, while it turns them away).
const REFUSED_REQUEST_WAIT: Duration = Duration::from_millis(5);

/// Turns a connection away: answers with `why`, closes it, and logs it within `lines`. The
/// answer is NOT_MADE for a membership change (nothing of it was read, so nothing was
/// proposed) and RETRY for anything else, or for a request whose first bytes did not come
/// within [`REFUSED_REQUEST_WAIT`]. It is written without waiting: it fits in a new socket's
/// buffer, and a client that does not read it is not waited for.
fn refuse(id: NodeId, lines: &line_limit::LineLimit, stream: &TcpStream, why: &str) {
    let status = match request_op(stream, REFUSED_REQUEST_WAIT) {
        Some(proto::OP_MEMBERSHIP) => proto::NOT_MADE,
        _ => proto::RETRY,
    };
    let answer = format!("{why}; nothing of the request was read: try again later");
    if stream.set_nonblocking(true).is_ok() {
        let _ = proto::write_message(&mut &*stream, status, answer.as_bytes());
    }
    let line = format!("refused a client connection: {why}");
    if let Some(line) = lines.admit(&line, Instant::now()) {
        log(id, &line);
    }
}

/// The op of the request waiting on `stream`, if its first five bytes (length and op) arrive
/// within `wait`; read with a peek, so nothing is taken from the socket.
fn request_op(stream: &TcpStream, wait: Duration) -> Option<u8> {
    stream.set_read_timeout(Some(wait)).ok()?;
    let mut head = [0u8; 5];
    match stream.peek(&mut head) {
        Ok(n) if n == head.len() => Some(head[4]),
        _ => None,
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
    let stop_started = Instant::now();
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
        // An append has had its answer by now, unless it first waited behind another copy of
        // its request or for its apply (each up to `APPEND_TIMEOUT` more). What is left is
        // such an append, or an answer its client does not take (a large READ read slowly, or
        // not at all), which would hold the stop for up to `CLIENT_WRITE_TIMEOUT`: the
        // connections still open are cut, which ends those writes. A client cut off before its
        // answer sends the append again with the same ids.
        server.connections.cut_all();
        alone(Instant::now() + Duration::from_secs(2));
    }
    let holders = Arc::strong_count(&server) - 1;
    let Ok(server) = Arc::try_unwrap(server) else {
        return Err(format!(
            "node {id}: {} threads (serving clients, checkpointing, accepting connections) \
             still running after {:?}; exiting without closing the log (everything \
             acknowledged is durable: the next start recovers it)",
            holders,
            stop_started.elapsed()
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

#[cfg(test)]
mod tests {
    use super::test_support::{close, single_node_server};
    use super::*;

    /// A mistyped flag (`--initt`) took the next option as its value, and the error named an
    /// argument further on (`unexpected argument "1"`). It now names the flag; a value given
    /// with `=` may start with `--` all the same.
    #[test]
    fn a_mistyped_flag_is_named_not_the_argument_after_it() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let e = run(args(&["--initt", "--id", "1", "--dir", "/nowhere"])).unwrap_err();
        assert!(
            e.starts_with(
                "--initt is not an option of rwal node, or is given without its value (--id \
                 follows it)"
            ),
            "{e}"
        );
        let e = run(args(&["--dir=--odd", "--speed", "fast"])).unwrap_err();
        assert!(e.starts_with("unknown option \"speed\""), "{e}");
    }

    /// A connection turned away (every slot busy, or the node short of descriptors) had
    /// nothing of its request read: a membership change on it is answered NOT_MADE, which its
    /// client sends again, not RETRY, which it gives up as "outcome unknown". Anything else,
    /// or a connection that sends nothing in time, is answered RETRY.
    #[test]
    fn a_membership_change_on_a_refused_connection_is_answered_not_made() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let lines = line_limit::LineLimit::new(100, Duration::from_secs(10));
        let answer_to = |request: Option<(u8, &[u8])>| {
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            if let Some((op, body)) = request {
                proto::write_message(&mut client, op, body).unwrap();
            }
            let (stream, _) = listener.accept().unwrap();
            refuse(1, &lines, &stream, "all slots taken");
            drop(stream);
            let (status, body) = proto::read_message(&mut client, 1 << 10).unwrap().unwrap();
            (status, String::from_utf8(body).unwrap())
        };
        let (status, message) = answer_to(Some((
            proto::OP_MEMBERSHIP,
            &[proto::MEMBERSHIP_ADD_VOTER, 4, 0, 0, 0, 0, 0, 0, 0],
        )));
        assert_eq!(status, proto::NOT_MADE, "{message}");
        assert!(message.contains("all slots taken"), "{message}");
        let (status, message) = answer_to(Some((proto::OP_APPEND, &[0; 17])));
        assert_eq!(status, proto::RETRY, "{message}");
        let (status, message) = answer_to(None);
        assert_eq!(status, proto::RETRY, "{message}");
    }

    /// A node's directory records whose log it holds: started as another node, or in
    /// another cluster, on that log, the node refuses before it dials a peer or opens the log
    /// (found by review on 2026-12-08: it opened another cluster's log without a word, and a
    /// higher term there could win an election and replace that cluster's writes).
    #[test]
    fn a_node_refuses_a_log_recorded_as_another_nodes() {
        let (server, dir) = single_node_server("identity");
        let settings = Settings {
            init: false,
            ..server.settings.clone()
        };
        let Server { node, network, .. } = server;
        node.close().unwrap();
        drop(network);
        let own = identity::Identity {
            cluster_id: settings.cluster_id,
            id: settings.id,
        };
        assert_eq!(identity::recorded(&dir).unwrap(), Some(own));
        for (cluster_id, id) in [(own.cluster_id + 1, own.id), (own.cluster_id, own.id + 1)] {
            let refused = open_server(Settings {
                cluster_id,
                id,
                ..settings.clone()
            })
            .err()
            .expect("refused");
            assert!(
                refused.contains(&format!(
                    "holds the log of node {} of cluster {}",
                    own.id, own.cluster_id
                )) && refused.contains(&format!("started as node {id} of cluster {cluster_id}")),
                "{refused}"
            );
        }
        // A damaged record is refused, naming the file, not taken for none.
        let path = dir.join(identity::FILE_NAME);
        std::fs::write(&path, "id = 1\n").unwrap();
        let refused = open_server(settings.clone()).err().expect("refused");
        assert!(
            refused.contains(&path.display().to_string()) && refused.contains("lacks"),
            "{refused}"
        );
        // A log from before identities were recorded is taken as this node's, and recorded.
        std::fs::remove_file(&path).unwrap();
        let server = open_server(settings).unwrap();
        assert_eq!(identity::recorded(&dir).unwrap(), Some(own));
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
}
