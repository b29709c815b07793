//! The settings `rwal node` runs with, from flags or a config file.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rwal_replication::net::SECRET_BYTES_MIN;
use rwal_replication::{Config, NodeId};

pub(super) const HELP: &str = "\
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
  --secret-file FILE      the cluster's shared secret (at least 16 bytes, at most 64 KiB; a file
                          others may write is refused: chmod 600 it)
  --checkpoint-every N    checkpoint and compact after N applied LSNs (default 100000)
  --tick-ms MS            raft's tick (default 10, at most 60000; elections after 10 to 20
                          ticks without a leader)
  --sync-stall-limit-ms MS
                          a leader whose log sync has not returned for MS hands its
                          leadership to another voter (default 1000, never less than the
                          longest election timeout, 20 ticks; 0: never)
  --segment-bytes N       size of new log segments (default: rwal-wal's, 64 MiB); they must
                          hold a record of --max-record-bytes (16 MiB + 8 KiB for 16 MiB)
  --max-record-bytes N    the largest record this node takes as a leader (default and at
                          most 16 MiB); give every member the same value and segments that
                          hold it: a follower that cannot store a record the leader took
                          stops
  --pin-cap-bytes N       log a lagging follower may hold back alone (up to the next
                          follower's position, or the checkpoint) before it is sent a
                          snapshot instead (default 1 GiB)
  --snapshot-bytes-max N  the largest snapshot this node takes from a leader (default 1 GiB):
                          it is written to a file beside the log as it arrives; a larger one
                          is refused, and a node that only a snapshot can catch up stays
                          behind
  --snapshot-timeout-ms MS
                          a snapshot stream to a follower that makes no progress for MS is
                          started over (default 50 ticks); raise it on every member for
                          slow links
  --config FILE           read the options from FILE: `key = value` lines, keys as above
                          without `--`, `peer` repeated, `init` or `join` alone (or
                          `init = true`: take it out after the first start, as --init); `#`
                          starts a comment at the start of a line or after a space or tab; a
                          `#` inside a value is refused

SIGTERM or SIGINT stops the node: it serves no new client, answers the requests in progress,
closes its log and exits 0. A second signal exits at once (1); everything acknowledged is
durable either way. SIGHUP reads the --config file again and takes its `peer` lines (a
member at a new address, a new member; peers given as flags stay as they are); the other
settings take a restart. A node started without --config logs that it has no file to read
and runs on.";

/// The longest raft tick `rwal node` takes, in milliseconds: the library's.
const TICK_MS_MAX: u64 = rwal_replication::TICK_INTERVAL_MAX.as_millis() as u64;

/// Everything `rwal node` is started with.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) id: NodeId,
    pub(super) dir: PathBuf,
    pub(super) listen: SocketAddr,
    pub(super) client_listen: SocketAddr,
    pub(super) peers: HashMap<NodeId, (SocketAddr, SocketAddr)>,
    pub(super) cluster_id: u64,
    pub(super) secret: Vec<u8>,
    /// Found the cluster if the directory holds no log.
    pub(super) init: bool,
    /// Join the cluster as a new member if the directory holds no log (a leader adds it).
    pub(super) join: bool,
    pub(super) checkpoint_every: u64,
    pub(super) tick: Duration,
    /// `NodeOptions::sync_stall_limit`.
    pub(super) sync_stall_limit: Option<Duration>,
    pub(super) segment_bytes: Option<u64>,
    /// `Config::max_record_bytes`: the largest record this node takes as a leader.
    pub(super) max_record_bytes: u64,
    pub(super) pin_cap_bytes: u64,
    /// `Config::snapshot_bytes_max`.
    pub(super) snapshot_bytes_max: u64,
    /// `NodeOptions::snapshot_timeout`.
    pub(super) snapshot_timeout: Option<Duration>,
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
    // Addresses to dial and to hand to clients: a wildcard IP or port 0 names no member (port 0
    // was dialled for ever; found by review, 2026-12-07).
    let address = |a: &str| {
        let addr = a
            .parse::<SocketAddr>()
            .map_err(|e| format!("--peer {value:?}: {a:?} is not an address: {e}"))?;
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(format!(
                "--peer {value:?}: {addr} is no member's address (a wildcard IP or port 0 is for \
                 listening, not for dialling): give the address the peer is reached at"
            ));
        }
        Ok(addr)
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

/// The largest `max-record-bytes`, and its default: the replication layer's default
/// `Config::max_record_bytes`, and what one client request carries.
const RECORD_BYTES_MAX: u64 = 16 << 20;
/// What a segment holds besides one record: its header region and the record's header.
const SEGMENT_OVERHEAD_BYTES: u64 =
    rwal_wal::segment::HEADER_REGION_BYTES + rwal_wal::record::HEADER_BYTES as u64;

pub(super) fn parse_settings(pairs: Vec<(String, OsString)>) -> Result<Settings, String> {
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
    let mut max_record_bytes = RECORD_BYTES_MAX;
    let mut pin_cap_bytes = 1 << 30;
    let mut snapshot_bytes_max = Config::new(1).snapshot_bytes_max;
    let mut snapshot_timeout = None;
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
            "max-record-bytes" => {
                max_record_bytes = positive(&key, value()?)?;
                if max_record_bytes > RECORD_BYTES_MAX {
                    return Err(format!(
                        "{key}: at most {RECORD_BYTES_MAX} (what one client request carries)"
                    ));
                }
            }
            "pin-cap-bytes" => pin_cap_bytes = number(&key, value()?)?,
            "snapshot-bytes-max" => snapshot_bytes_max = positive(&key, value()?)?,
            "snapshot-timeout-ms" => {
                snapshot_timeout = Some(Duration::from_millis(positive(&key, value()?)?));
            }
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
    if id == 0 || peers.contains_key(&0) {
        return Err("node ids start at 1: 0 is given as --id or in a --peer".into());
    }
    if peers.contains_key(&id) {
        return Err(format!(
            "node {id} is given as --id and in a --peer: a node is not its own peer"
        ));
    }
    let secret_file = secret_file.ok_or_else(|| missing("secret-file"))?;
    let secret = read_secret(&secret_file)?;
    let listen = listen.ok_or_else(|| missing("listen"))?;
    let client_listen = client_listen.ok_or_else(|| missing("client-listen"))?;
    check_addresses_differ(listen, client_listen, &peers)?;
    // Every member must hold any record a leader takes: a follower whose segments cannot fails
    // the round that appends it and stops, at every restart, until the leader sends it a
    // snapshot instead. Checked for this node's own pair (the log checks the rest of the
    // segment size when it opens); the docs ask for the same values on every member.
    let holds = segment_bytes
        .unwrap_or(rwal_wal::SEGMENT_BYTES_DEFAULT)
        .saturating_sub(SEGMENT_OVERHEAD_BYTES);
    if holds < max_record_bytes {
        return Err(format!(
            "segment-bytes: {} holds records of at most {holds} bytes, below max-record-bytes \
             ({max_record_bytes}): give at least {}, or a smaller max-record-bytes",
            segment_bytes.unwrap_or(rwal_wal::SEGMENT_BYTES_DEFAULT),
            (max_record_bytes + SEGMENT_OVERHEAD_BYTES).next_multiple_of(4096)
        ));
    }
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
        max_record_bytes,
        pin_cap_bytes,
        snapshot_bytes_max,
        snapshot_timeout,
    })
}

/// The cluster's secret from `file`: its bytes without the whitespace around them, at least
/// `SECRET_BYTES_MIN` of them, from a file of at most `SECRET_FILE_BYTES_MAX` bytes. Refused
/// if users other than its owner may write it (its group or everyone: any of them could put
/// their own secret in, and be let in at the next start); a warning if they may read it
/// (whoever reads the secret is a member): not refused, since a container's secret mounts are
/// often readable by all (Kubernetes' default mode 0644, Docker's 0444), with no other user in
/// the container.
fn read_secret(file: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read the secret file {}: {e}", file.display());
    let (opened, meta) = open_regular(file, "secret")?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(format!(
                "the secret file {} can be written by other users (mode {mode:o}): any of them \
                 could put in a secret of their own; chmod 600 it",
                file.display()
            ));
        }
        if mode & 0o044 != 0 {
            errln!(
                "rwal node: warning: the secret file {} can be read by other users (mode \
                 {mode:o}): whoever reads it can join the cluster; chmod 600 it unless no other \
                 user can reach it",
                file.display()
            );
        }
    }
    let mut secret = Vec::new();
    // One byte past the bound tells a file over it, without reading the rest.
    opened
        .take(SECRET_FILE_BYTES_MAX + 1)
        .read_to_end(&mut secret)
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
    Ok(secret)
}

/// Refuses two of this node's addresses and its peers' that are the same, naming both: a peer
/// at this node's own address would be this node talking to itself, and two members at one
/// address are one member. Port 0 (any free port, this node's to bind) is never the same as
/// another.
pub(super) fn check_addresses_differ(
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
    let named: Vec<(String, SocketAddr)> = named
        .into_iter()
        .filter(|(_, addr)| addr.port() != 0)
        .collect();
    for (i, (later, at)) in named.iter().enumerate() {
        let Some((earlier, before)) = named[..i].iter().find(|(_, b)| same_place(*at, *b)) else {
            continue;
        };
        return Err(if at == before {
            format!("{earlier} and {later} are both {at}: each needs an address of its own")
        } else {
            format!(
                "{earlier} ({before}) and {later} ({at}) are one address on this machine: each \
                 needs an address of its own"
            )
        });
    }
    Ok(())
}

/// Whether two addresses reach the same socket on this machine, as far as can be told without
/// listing its interfaces: the same port, and the same IP (an IPv4 address and its IPv6-mapped
/// form are one), or one of them a wildcard and the other a wildcard or loopback address it
/// covers (`0.0.0.0` covers IPv4's, `::` both families', as Linux binds it by default). A peer
/// at `127.0.0.1:7001` beside `--listen 0.0.0.0:7001` is this node.
fn same_place(a: SocketAddr, b: SocketAddr) -> bool {
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |wild: std::net::IpAddr, other: std::net::IpAddr| {
        wild.is_unspecified()
            && (other.is_unspecified() || other.is_loopback())
            && (wild.is_ipv6() || other.is_ipv4())
    };
    a.port() == b.port() && (x == y || covers(x, y) || covers(y, x))
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

/// Opens the `what` file (`secret`, `config`) for reading without waiting, and refuses anything
/// but a regular file. Judged by what was opened: a FIFO with no writer held the open, and
/// with it the main thread (a reload's), which also watches for a stop, so the node no longer
/// stopped on SIGTERM (found by review, 2026-12-07, for the secret file; later the same day for
/// the config file, which a device such as `/dev/zero` also filled memory from).
fn open_regular(file: &Path, what: &str) -> Result<(std::fs::File, std::fs::Metadata), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| format!("cannot read the {what} file {}: {e}", file.display());
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .map_err(cannot)?;
    let meta = opened.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!(
            "the {what} file {} is not a regular file (a FIFO, a device or a directory): put \
             the {what} in a file",
            file.display()
        ));
    }
    Ok((opened, meta))
}

/// The largest config file read: a few dozen lines are expected.
const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// The `key = value` pairs of a config file (for tests: `read_config_lines` says where).
#[cfg(test)]
pub(super) fn read_config(path: &Path) -> Result<Vec<(String, OsString)>, String> {
    Ok(read_config_lines(path)?
        .into_iter()
        .map(|(key, value, _)| (key, value))
        .collect())
}

/// The `key = value` pairs of a config file, each with its line number (from 1).
pub(super) fn read_config_lines(path: &Path) -> Result<Vec<(String, OsString, usize)>, String> {
    let shown = path.display();
    let (opened, _) = open_regular(path, "config")?;
    let mut bytes = Vec::new();
    opened
        .take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
    if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(format!(
            "the config file {shown} holds more than {} MiB: a config is a few dozen lines (is \
             it the right file?)",
            CONFIG_FILE_BYTES_MAX >> 20
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("cannot read the config file {shown}: it is not UTF-8 ({e})"))?;
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
            pairs.push((line.to_string(), "true".into(), n + 1));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "{shown}:{}: expected `key = value` (or `init` or `join` alone)",
                n + 1
            ));
        };
        let value = value.trim();
        // A value runs to the end of its line, spaces included: quotes around it, as other
        // config formats want them, would be part of it (`dir = "/data/n1"` named a directory
        // `"` in the working directory, and with `init` founded a log there).
        if value.starts_with(['"', '\'']) || value.ends_with(['"', '\'']) {
            return Err(format!(
                "{shown}:{}: a value in quotes ({value}): the quotes would be part of it; write \
                 it without them (a value runs to the end of its line, spaces included)",
                n + 1
            ));
        }
        pairs.push((key.trim().to_string(), value.into(), n + 1));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO at `path`, readable and writable by its owner only.
    fn make_fifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
    }

    /// The refusal `read` gives (of a FIFO no one writes), on a thread of its own: it must come
    /// without waiting for a writer (a bound on a hang, not a measurement).
    fn refused_without_waiting(read: impl FnOnce() -> Option<String> + Send + 'static) -> String {
        let (sent, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || sent.send(read()));
        answer
            .recv_timeout(Duration::from_secs(30))
            .expect("the FIFO was refused without waiting for a writer")
            .expect("refused")
    }

    #[test]
    fn settings_name_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("rwal-node-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        crate::node::test_support::write_secret(&secret, "0123456789abcdef0123\n");
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
        assert_eq!(
            e,
            "node 1 is given as --id and in a --peer: a node is not its own peer"
        );
        let e = parse_settings(pairs(&[("peer", "0,127.0.0.1:1,127.0.0.1:2")])).unwrap_err();
        assert_eq!(e, "node ids start at 1: 0 is given as --id or in a --peer");
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
        // Segments too small for the largest record a leader takes are refused, naming both
        // sizes and the smallest that would do; a smaller record limit lets them be.
        assert_eq!(RECORD_BYTES_MAX, Config::new(1).max_record_bytes);
        assert_eq!(s.max_record_bytes, RECORD_BYTES_MAX);
        assert_eq!(
            rwal_wal::segment::max_payload_bytes(1 << 20),
            (1 << 20) - SEGMENT_OVERHEAD_BYTES
        );
        let e = parse_settings(pairs(&[("segment-bytes", "16777216")])).unwrap_err();
        assert_eq!(
            e,
            "segment-bytes: 16777216 holds records of at most 16773088 bytes, below \
             max-record-bytes (16777216): give at least 16785408, or a smaller max-record-bytes"
        );
        let e = parse_settings(pairs(&[("segment-bytes", "0")])).unwrap_err();
        assert!(e.contains("at most 0 bytes"), "{e}");
        let smallest = parse_settings(pairs(&[("segment-bytes", "16785408")])).unwrap();
        assert_eq!(smallest.segment_bytes, Some(16785408));
        let small = parse_settings(pairs(&[
            ("segment-bytes", "1048576"),
            ("max-record-bytes", "1044448"),
        ]))
        .unwrap();
        assert_eq!(
            (small.segment_bytes, small.max_record_bytes),
            (Some(1 << 20), 1044448)
        );
        let e = parse_settings(pairs(&[
            ("segment-bytes", "1048576"),
            ("max-record-bytes", "1044449"),
        ]))
        .unwrap_err();
        assert!(e.contains("give at least 1052672"), "{e}");
        let e = parse_settings(pairs(&[("max-record-bytes", "16777217")])).unwrap_err();
        assert_eq!(
            e,
            "max-record-bytes: at most 16777216 (what one client request carries)"
        );
        assert_eq!(s.snapshot_timeout, None);
        let slow = parse_settings(pairs(&[("snapshot-timeout-ms", "30000")])).unwrap();
        assert_eq!(slow.snapshot_timeout, Some(Duration::from_secs(30)));
        let e = parse_settings(pairs(&[("snapshot-timeout-ms", "0")])).unwrap_err();
        assert_eq!(e, "snapshot-timeout-ms: must be above 0");
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
        crate::node::test_support::write_secret(&short, "  too short \n");
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
        crate::node::test_support::write_secret(&secret, "0123456789abcdef0123\n");
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
        // The same socket written two ways: an IPv4 address in its IPv6-mapped form, and a
        // loopback address beside a wildcard one (this node listens on every address).
        let e = shared(&["2,[::ffff:127.0.0.1]:7001,127.0.0.1:8002"]).unwrap_err();
        assert_eq!(
            e,
            "--listen (127.0.0.1:7001) and --peer 2's peer address ([::ffff:127.0.0.1]:7001) \
             are one address on this machine: each needs an address of its own"
        );
        let mut wildcard = pairs(
            "/tmp/x".into(),
            &["2,127.0.0.1:7001,127.0.0.1:8002"],
            &secret,
        );
        for (key, value) in wildcard.iter_mut() {
            if key == "listen" {
                *value = "0.0.0.0:7001".into();
            }
        }
        let e = parse_settings(wildcard.clone()).unwrap_err();
        assert!(e.contains("are one address on this machine"), "{e}");
        // Another port, or another machine's address, is another socket.
        wildcard.retain(|(key, _)| key != "peer");
        wildcard.push(("peer".into(), "2,10.0.0.2:7001,10.0.0.2:8002".into()));
        parse_settings(wildcard.clone()).unwrap();
        shared(&["2,[::1]:7002,[::1]:8002"]).unwrap();
        // IPv4's wildcard does not cover IPv6's loopback; IPv6's covers both.
        let with = |listen: &str, peer: &str| {
            let mut p = wildcard.clone();
            p.retain(|(key, _)| key != "peer" && key != "listen");
            p.push(("listen".into(), listen.into()));
            p.push(("peer".into(), peer.into()));
            parse_settings(p)
        };
        with("0.0.0.0:7001", "2,[::1]:7001,127.0.0.1:8002").unwrap();
        with("[::]:7001", "2,127.0.0.1:7001,127.0.0.1:8002").unwrap_err();
        with("[::]:7001", "2,[::1]:7001,127.0.0.1:8002").unwrap_err();
        // A secret file every user may write is refused (any of them could put in a secret
        // of their own); one others may read is taken, with a warning (a container's secret
        // mount).
        let open = dir.join("open");
        crate::node::test_support::write_secret(&open, "0123456789abcdef0123\n");
        let mode = |m| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(m)).unwrap();
        };
        mode(0o602);
        let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], &open)).unwrap_err();
        assert_eq!(
            e,
            format!(
                "the secret file {} can be written by other users (mode 602): any of them could \
                 put in a secret of their own; chmod 600 it",
                open.display()
            )
        );
        mode(0o620);
        let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], &open)).unwrap_err();
        assert!(e.contains("(mode 620)"), "{e}");
        for readable in [0o644, 0o444, 0o640] {
            mode(readable);
            parse_settings(pairs("/tmp/x".into(), &[peer_2], &open)).unwrap();
        }
        // A secret file past 64 KiB is refused, whatever it holds, and a device without end
        // is read no further.
        let large = dir.join("large");
        crate::node::test_support::write_secret(&large, vec![b'x'; (64 << 10) + 1]);
        let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], &large)).unwrap_err();
        assert!(
            e.contains(&format!(
                "secret file {} holds more than 64 KiB",
                large.display()
            )),
            "{e}"
        );
        crate::node::test_support::write_secret(&large, vec![b'x'; 64 << 10]);
        parse_settings(pairs("/tmp/x".into(), &[peer_2], &large)).unwrap();
        // A device without end (`/dev/zero`) is refused, and never read past the bound either
        // (a file without end is refused by its size: the 64 KiB + 1 file above).
        let zero = Path::new("/dev/zero");
        if zero.exists() {
            let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], zero)).unwrap_err();
            assert!(e.contains("is not a regular file"), "{e}");
        }
        // A FIFO no one writes is refused at once: opening it waited for a writer, on the
        // thread that also watches for a stop (a reload's). A directory is refused too.
        let fifo = dir.join("fifo");
        make_fifo(&fifo);
        let fifo_pairs = pairs("/tmp/x".into(), &[peer_2], &fifo);
        let e = refused_without_waiting(move || parse_settings(fifo_pairs).err());
        assert!(e.contains("is not a regular file"), "{e}");
        // Said in one line of words (a missing `\\` once put a run of spaces in it).
        assert!(e.ends_with("directory): put the secret in a file"), "{e}");
        let e = parse_settings(pairs("/tmp/x".into(), &[peer_2], &dir)).unwrap_err();
        assert!(e.contains("is not a regular file"), "{e}");
        // A peer at port 0 or at a wildcard IP names no member: it was dialled for ever.
        for peer in [
            "2,127.0.0.1:0,127.0.0.1:8002",
            "2,127.0.0.1:7002,127.0.0.1:0",
            "2,0.0.0.0:7002,127.0.0.1:8002",
            "2,[::]:7002,127.0.0.1:8002",
            "2,127.0.0.1:7002,0.0.0.0:8002",
        ] {
            let e = parse_settings(pairs("/tmp/x".into(), &[peer], &secret)).unwrap_err();
            assert!(e.contains("is no member's address"), "{peer}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_config_file_gives_the_same_settings_as_flags() {
        let dir = std::env::temp_dir().join(format!("rwal-node-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        crate::node::test_support::write_secret(&secret, "0123456789abcdef0123");
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

    /// A value in quotes is refused, naming the line: the quotes were part of it, and
    /// `dir = "/data/n1"` named a directory `"` in the working directory. Spaces inside a
    /// value are its own.
    #[test]
    fn a_quoted_config_value_is_refused() {
        let dir = std::env::temp_dir().join(format!("rwal-node-quoted-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("node.conf");
        for quoted in ["\"/data/n1\"", "'/data/n1'", "\"/data/n1", "/data/n1'"] {
            std::fs::write(&config, format!("id = 1\ndir = {quoted}\n")).unwrap();
            let e = read_config(&config).unwrap_err();
            assert!(e.contains(":2: a value in quotes"), "{e}");
        }
        std::fs::write(&config, "dir = /data/rwal node1\n").unwrap();
        let pairs = read_config(&config).unwrap();
        assert_eq!(
            pairs,
            [("dir".to_string(), OsString::from("/data/rwal node1"))]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The config file is read as the secret file is: a FIFO without a writer is refused at
    /// once (a reload on SIGHUP waited for a writer, on the thread that watches for a stop),
    /// a device is not read (`/dev/zero` filled memory), and a file past 1 MiB is refused.
    #[test]
    fn a_config_that_is_not_a_small_regular_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("rwal-node-conf-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo.conf");
        make_fifo(&fifo);
        let read = fifo.clone();
        let e = refused_without_waiting(move || read_config(&read).err());
        assert!(
            e.contains("the config file") && e.contains("is not a regular file"),
            "{e}"
        );
        let zero = Path::new("/dev/zero");
        if zero.exists() {
            let e = read_config(zero).unwrap_err();
            assert!(e.contains("is not a regular file"), "{e}");
        }
        let large = dir.join("large.conf");
        let line = "# a comment that fills the file\n";
        std::fs::write(&large, line.repeat((1 << 20) / line.len() + 1)).unwrap();
        let e = read_config(&large).unwrap_err();
        assert!(e.contains("holds more than 1 MiB"), "{e}");
        std::fs::write(&large, b"id = \xff\n").unwrap();
        let e = read_config(&large).unwrap_err();
        assert!(e.contains("is not UTF-8"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
