//! What the unit tests of `rwal node`'s modules share: a single-node server in this process.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rwal_replication::Role;
use rwal_wal::Lsn;

use super::requests::serve_client;
use super::settings::Settings;
use super::{budget, connections, open_server, proto, Server};

/// A single-voter node in this process, leading, and its directory.
pub(super) fn single_node_server(name: &str) -> (Server, PathBuf) {
    let dir = std::env::temp_dir().join(format!("rwal-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = Settings {
        dir: dir.clone(),
        ..settings_for_tests()
    };
    let server = open_server(settings).unwrap();
    let (status, leading) = server
        .node
        .wait_status(Duration::from_secs(30), |s| s.role == Role::Leader);
    assert!(leading, "{status:?}");
    (server, dir)
}

/// The settings of a founding single voter on ports the OS chooses, its directory to be set.
pub(super) fn settings_for_tests() -> Settings {
    Settings {
        id: 1,
        dir: PathBuf::new(),
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
        max_record_bytes: 16 << 20,
        pin_cap_bytes: 1 << 20,
        snapshot_bytes_max: 1 << 20,
        snapshot_timeout: None,
    }
}

/// Serves one client connection as the acceptor's thread would.
pub(super) fn serve_one(server: &Server, stream: TcpStream) -> std::io::Result<()> {
    let connection = match server.connections.admit(stream, &server.stopping) {
        (connections::Admission::Served(connection), _) => connection,
        (other, _) => panic!("connection not served: {other:?}"),
    };
    let outcome = serve_client(server, &connection);
    server.connections.remove(&connection);
    outcome
}

pub(super) fn close(server: Server, dir: PathBuf) {
    let Server { node, network, .. } = server;
    node.close().unwrap();
    drop(network);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Commits a record of client 5 and waits until the engine applied it.
pub(super) fn someone_elses_record(server: &Server) -> (Lsn, u64) {
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
pub(super) fn hold(server: &Server, bytes: usize) -> budget::Held<'_> {
    let deadline = Instant::now() + Duration::from_secs(1);
    match server
        .request_budget
        .take(bytes, &server.stopping, deadline)
    {
        budget::Taken::Held(held) => held,
        other => panic!("{other:?}"),
    }
}

/// Writes a secret file as an operator must: readable by its owner only (a node warns of one
/// others may read).
pub(super) fn write_secret(path: &std::path::Path, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
