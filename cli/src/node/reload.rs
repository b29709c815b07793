//! SIGHUP: `rwal node` reads its config file again and takes the peers' new addresses, so that
//! a member that moved, or a new member, is reached without restarting every other member
//! (docs/network.md section 2.1). Every other setting stays as the node started with it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use rwal_replication::NodeId;

use super::redial::{is_member, Redial};
use super::settings::{check_addresses_differ, parse_settings, read_config_lines, Settings};
use super::{log, Server};

/// A peer's two addresses: where members dial it, where its clients connect.
pub(super) type PeerAddrs = (SocketAddr, SocketAddr);

/// Where `rwal node`'s settings came from, in the order given, so that they can be read again.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A flag and its value (`--init` and `--join` as `true`), as given.
    Flag(String, OsString),
    /// `--config FILE`.
    File(PathBuf),
}

/// The settings' `key = value` pairs, the files read now. A key given twice (but `peer`) is
/// refused naming both places: two files, or a file and a flag, are easy to lose track of.
pub(super) fn read_sources(sources: &[Source]) -> Result<Vec<(String, OsString)>, String> {
    let mut pairs = Vec::new();
    let mut given_at: HashMap<String, String> = HashMap::new();
    let mut note = |key: &str, at: String| match given_at.get(key) {
        Some(first) if key != "peer" => Err(format!("{key} is given twice: {first}, and {at}")),
        _ => {
            given_at.insert(key.to_string(), at);
            Ok(())
        }
    };
    for source in sources {
        match source {
            Source::Flag(key, value) => {
                note(key, format!("as --{key}"))?;
                pairs.push((key.clone(), value.clone()));
            }
            Source::File(path) => {
                for (key, value, line) in read_config_lines(path)? {
                    note(&key, format!("at {}:{line}", path.display()))?;
                    pairs.push((key, value));
                }
            }
        }
    }
    Ok(pairs)
}

/// How the peers changed from one reading to the next, each list in id order.
#[derive(Debug, Default, PartialEq)]
pub(super) struct PeerChanges {
    /// New peers, and peers at a new peer address: the transport dials them there.
    pub(super) dial: Vec<(NodeId, SocketAddr)>,
    /// Peers whose client address alone changed, and the new one.
    pub(super) client_moved: Vec<(NodeId, SocketAddr)>,
    /// Peers no longer listed.
    pub(super) dropped: Vec<NodeId>,
}

pub(super) fn peer_changes(
    before: &HashMap<NodeId, PeerAddrs>,
    now: &HashMap<NodeId, PeerAddrs>,
) -> PeerChanges {
    let mut changes = PeerChanges::default();
    for (&peer, &(addr, client)) in now {
        match before.get(&peer) {
            Some(&(was, _)) if was != addr => changes.dial.push((peer, addr)),
            None => changes.dial.push((peer, addr)),
            Some(&(_, was_client)) if was_client != client => {
                changes.client_moved.push((peer, client))
            }
            Some(_) => {}
        }
    }
    changes.dropped = before
        .keys()
        .filter(|peer| !now.contains_key(peer))
        .copied()
        .collect();
    changes.dial.sort_unstable();
    changes.client_moved.sort_unstable();
    changes.dropped.sort_unstable();
    changes
}

/// The keys of the settings (other than the peers) whose values differ, which only a restart
/// applies. Every field is named, so that a setting added later must be placed here or there.
pub(super) fn restart_only_changes(started: &Settings, now: &Settings) -> Vec<&'static str> {
    let Settings {
        id: _,
        dir,
        listen,
        client_listen,
        peers: _,
        cluster_id,
        secret,
        // Read at the first start only.
        init: _,
        join: _,
        checkpoint_every,
        tick,
        sync_stall_limit,
        segment_bytes,
        max_record_bytes,
        pin_cap_bytes,
        snapshot_bytes_max,
        snapshot_timeout,
    } = now;
    let differing = [
        ("dir", *dir != started.dir),
        ("listen", *listen != started.listen),
        ("client-listen", *client_listen != started.client_listen),
        ("cluster-id", *cluster_id != started.cluster_id),
        ("secret-file", *secret != started.secret),
        (
            "checkpoint-every",
            *checkpoint_every != started.checkpoint_every,
        ),
        ("tick-ms", *tick != started.tick),
        (
            "sync-stall-limit-ms",
            *sync_stall_limit != started.sync_stall_limit,
        ),
        ("segment-bytes", *segment_bytes != started.segment_bytes),
        (
            "max-record-bytes",
            *max_record_bytes != started.max_record_bytes,
        ),
        ("pin-cap-bytes", *pin_cap_bytes != started.pin_cap_bytes),
        (
            "snapshot-bytes-max",
            *snapshot_bytes_max != started.snapshot_bytes_max,
        ),
        (
            "snapshot-timeout-ms",
            *snapshot_timeout != started.snapshot_timeout,
        ),
    ];
    differing
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
}

/// Reads the settings again and applies the peers' changes, saying in one line what changed;
/// a reading that fails changes nothing. Called on the thread that also gives members back to
/// the transport (`redial`, whose look just before tells which ids left the membership), so
/// the two never interleave.
pub(super) fn reload(server: &Server, sources: &[Source], redial: &Redial) {
    let id = server.settings.id;
    let files: Vec<String> = sources
        .iter()
        .filter_map(|source| match source {
            Source::File(path) => Some(path.display().to_string()),
            Source::Flag(..) => None,
        })
        .collect();
    if files.is_empty() {
        log(
            id,
            "SIGHUP: this node was started without --config, there is no file to re-read; \
             nothing changed",
        );
        return;
    }
    let files = files.join(", ");
    let now = match read_sources(sources).and_then(parse_settings) {
        Ok(now) => now,
        Err(e) => {
            // Without the usage text some of the errors end with.
            let e = e.split("\n\n").next().unwrap_or_default();
            log(
                id,
                &format!("warning: re-reading {files} refused, nothing changed: {e}"),
            );
            return;
        }
    };
    if now.id != id {
        log(
            id,
            &format!(
                "warning: re-reading {files} refused, nothing changed: it is the config of node \
                 {}, this is node {id}",
                now.id
            ),
        );
        return;
    }
    // Against the addresses this node listens on now, not the file's (a new `listen` applies
    // only at a restart): a peer there would be this node dialling itself, which a start
    // refuses (found by review, 2026-12-07).
    let listening = server.network.local_addr();
    if let Err(e) = check_addresses_differ(listening, server.settings.client_listen, &now.peers) {
        log(
            id,
            &format!(
                "warning: re-reading {files} refused, nothing changed: {e} (this node listens at \
                 {listening} and {} until a restart)",
                server.settings.client_listen
            ),
        );
        return;
    }
    let membership = server.node.status().membership;
    let mut peers = server.peers.write();
    let changes = peer_changes(&peers, &now.peers);
    let mut said = Vec::new();
    for (peer, addr) in changes.dial {
        // Taken whatever the transport does with it below: `Redial` gives a member the
        // transport lacks (a dial that failed here) back at this address.
        peers.insert(peer, now.peers[&peer]);
        if redial.saw_leave(peer) {
            // Removed: a line must not let its connections back in (docs/network.md section
            // 4). `Redial` gives it to the transport, at this address, once it is added back.
            server.network.remove_peer(peer);
            said.push(format!(
                "peer {peer} at {addr} (removed: dialled once added back)"
            ));
            continue;
        }
        // As at a start, whether or not this node knows it as a member: a node that is behind
        // on the membership (a joiner, a member that was down) must reach and admit members
        // it does not know of yet.
        match server.network.add_peer(peer, addr) {
            Ok(()) => said.push(format!("peer {peer} at {addr}")),
            Err(e) => {
                log(
                    id,
                    &format!(
                        "warning: cannot dial peer {peer} at {addr}: {e} (a member is dialled \
                         again within seconds)"
                    ),
                );
                said.push(format!("peer {peer} at {addr} (not dialled yet)"));
            }
        }
    }
    for (peer, client) in changes.client_moved {
        peers.insert(peer, now.peers[&peer]);
        said.push(format!("peer {peer}'s clients at {client}"));
    }
    for peer in changes.dropped {
        let Some((at, _)) = peers.remove(&peer) else {
            continue;
        };
        if is_member(&membership, peer) {
            // The membership decides who is a member, not the file: the transport keeps it
            // until its removal is applied, and does not dial it again after.
            let dialled = match server.network.peer_addr(peer) {
                Some(at) => format!(
                    "dialled on at {at} until it is removed (`rwal client remove {peer}`), not \
                     after"
                ),
                None => format!("not dialled (the transport has no address for it; it had {at})"),
            };
            log(
                id,
                &format!(
                    "warning: peer {peer} is no longer in {files} but is a member: {dialled}; \
                     NOT_LEADER answers no longer name its client address"
                ),
            );
            said.push(format!("peer {peer} unlisted"));
            continue;
        }
        server.network.remove_peer(peer);
        said.push(format!("peer {peer} forgotten"));
    }
    drop(peers);
    let restart = restart_only_changes(&server.settings, &now);
    if !restart.is_empty() {
        log(
            id,
            &format!(
                "warning: {} changed in {files}: kept as started, a restart applies it",
                restart.join(", ")
            ),
        );
    }
    let said = if said.is_empty() {
        "the peers are unchanged".to_string()
    } else {
        said.join("; ")
    };
    log(id, &format!("re-read {files}: {said}"));
}

#[cfg(test)]
mod tests {
    use super::super::proto;
    use std::net::TcpListener;
    use std::time::Duration;

    use rwal_replication::MembershipChange;

    use super::super::requests::not_leader;
    use super::super::test_support::{close, single_node_server};
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn peer_changes_name_new_moved_and_dropped_peers() {
        let before: HashMap<NodeId, PeerAddrs> = [
            (2, (addr(7002), addr(8002))),
            (3, (addr(7003), addr(8003))),
            (4, (addr(7004), addr(8004))),
            (5, (addr(7005), addr(8005))),
        ]
        .into();
        let now: HashMap<NodeId, PeerAddrs> = [
            (2, (addr(7002), addr(8002))), // unchanged
            (3, (addr(7103), addr(8003))), // moved
            (4, (addr(7004), addr(8104))), // its clients moved
            (6, (addr(7006), addr(8006))), // new
        ]
        .into();
        assert_eq!(
            peer_changes(&before, &now),
            PeerChanges {
                dial: vec![(3, addr(7103)), (6, addr(7006))],
                client_moved: vec![(4, addr(8104))],
                dropped: vec![5],
            }
        );
        assert_eq!(peer_changes(&now, &now), PeerChanges::default());
        // Both addresses moved: dialled at the new one (the client address goes with it).
        let both: HashMap<NodeId, PeerAddrs> = [(2, (addr(7102), addr(8102)))].into();
        let changes = peer_changes(&before, &both);
        assert_eq!(changes.dial, vec![(2, addr(7102))]);
        assert!(changes.client_moved.is_empty());
        assert_eq!(changes.dropped, vec![3, 4, 5]);
    }

    /// A key given twice is refused naming both places: two files, or a file and a flag.
    #[test]
    fn a_key_given_twice_is_refused_naming_both_places() {
        let dir = std::env::temp_dir().join(format!("rwal-node-twice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.conf"), dir.join("b.conf"));
        std::fs::write(
            &a,
            "id = 1\ncluster-id = 4\npeer = 2,127.0.0.1:7002,127.0.0.1:8002\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "# shared\ncluster-id = 5\npeer = 3,127.0.0.1:7003,127.0.0.1:8003\n",
        )
        .unwrap();
        let e = read_sources(&[Source::File(a.clone()), Source::File(b.clone())]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "cluster-id is given twice: at {}:2, and at {}:2",
                a.display(),
                b.display()
            )
        );
        let flag = Source::Flag("id".into(), "1".into());
        let e = read_sources(&[flag, Source::File(a.clone())]).unwrap_err();
        assert_eq!(
            e,
            format!("id is given twice: as --id, and at {}:1", a.display())
        );
        // `peer` is the one key given many times.
        std::fs::write(&b, "peer = 3,127.0.0.1:7003,127.0.0.1:8003\n").unwrap();
        let pairs = read_sources(&[Source::File(a), Source::File(b)]).unwrap();
        assert_eq!(pairs.iter().filter(|(key, _)| key == "peer").count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reread_takes_the_peer_lines_and_refuses_a_bad_file_whole() {
        let (server, dir) = single_node_server("reload");
        let conf = dir.with_extension("conf");
        let secret = dir.with_extension("secret");
        crate::node::test_support::write_secret(&secret, &server.settings.secret);
        // Addresses of listeners that never answer: the transport dials them and gets nowhere.
        let held: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let at = |i: usize| held[i].local_addr().unwrap();
        let write = |id: u64, peers: &[String]| {
            let mut text = format!(
                "id = {id}\ndir = {}\nlisten = 127.0.0.1:0\nclient-listen = 127.0.0.1:0\n\
                 cluster-id = 9\nsecret-file = {}\ncheckpoint-every = {}\ntick-ms = 5\n\
                 pin-cap-bytes = 1048576\nsnapshot-bytes-max = 1048576\n",
                dir.display(),
                secret.display(),
                u64::MAX,
            );
            for peer in peers {
                text.push_str(&format!("peer = {peer}\n"));
            }
            std::fs::write(&conf, text).unwrap();
        };
        let line = |peer: NodeId, addr: usize, client: usize| {
            format!("{peer},{},{}", at(addr), at(client))
        };
        let sources = [Source::File(conf.clone())];
        let mut redial = Redial::default();
        // A look of `Redial`, as the serving loop makes before each re-read, then the re-read.
        let reread = |redial: &mut Redial| {
            redial.members_added_again(&server);
            reload(&server, &sources, redial);
        };
        // What the transport dials, and the addresses kept for `Redial` and NOT_LEADER.
        let known = |peer: NodeId| {
            let addrs = server.peers.read().get(&peer).copied();
            (server.network.peer_addr(peer), addrs)
        };
        let leader_address = |peer: NodeId| {
            let (code, body) = not_leader(&server, Some(peer));
            assert_eq!(code, proto::NOT_LEADER);
            String::from_utf8(body[8..].to_vec()).unwrap()
        };
        let change = |change: MembershipChange| {
            let (lsn, epoch) = server.node.change_membership(change).unwrap();
            server
                .node
                .wait_committed(lsn, epoch, Duration::from_secs(30))
                .unwrap();
        };
        assert_eq!(known(2), (None, None));
        assert_eq!(leader_address(2), "");

        // A new peer is dialled, member or not (as at a start: this node may be behind on
        // the membership), and dialled at its new address once it moves.
        write(1, &[line(2, 0, 1)]);
        reread(&mut redial);
        assert_eq!(known(2), (Some(at(0)), Some((at(0), at(1)))));
        assert_eq!(leader_address(2), at(1).to_string());
        write(1, &[line(2, 2, 1)]);
        reread(&mut redial);
        assert_eq!(known(2), (Some(at(2)), Some((at(2), at(1)))));
        // Its clients alone moved.
        write(1, &[line(2, 2, 3)]);
        reread(&mut redial);
        assert_eq!(known(2), (Some(at(2)), Some((at(2), at(3)))));
        assert_eq!(leader_address(2), at(3).to_string());
        // A file with one bad line, or another node's, changes nothing; nor does a node
        // started with flags only.
        write(1, &[line(2, 4, 3), "3,nowhere,127.0.0.1:1".into()]);
        reread(&mut redial);
        write(2, &[format!("1,{},{}", at(4), at(5))]);
        reread(&mut redial);
        // Nor one that puts a peer at the address this node listens at (the file's `listen`,
        // port 0, is not where it listens: a re-read used to check against that).
        write(1, &[format!("2,{},{}", server.network.local_addr(), at(3))]);
        reread(&mut redial);
        write(1, &[]);
        redial.members_added_again(&server);
        reload(&server, &[Source::Flag("id".into(), "1".into())], &redial);
        assert_eq!(known(2), (Some(at(2)), Some((at(2), at(3)))));
        assert_eq!(known(3), (None, None));
        // No longer listed and not a member: forgotten.
        reread(&mut redial);
        assert_eq!(known(2), (None, None));
        assert_eq!(leader_address(2), "");

        // A member that was removed is not given back by a line that moved: once it is
        // added back, `Redial` dials it at the line's address.
        write(1, &[line(2, 0, 1)]);
        reread(&mut redial);
        change(MembershipChange::AddLearner(2));
        redial.members_added_again(&server);
        change(MembershipChange::Remove(2));
        assert_eq!(known(2).0, None, "the removal forgot it");
        write(1, &[line(2, 4, 1)]);
        reread(&mut redial);
        assert_eq!(known(2), (None, Some((at(4), at(1)))));
        // Given back to the transport between its removal and a look (a re-read in that
        // window): the look takes it away again.
        server.network.add_peer(2, at(4)).unwrap();
        redial.members_added_again(&server);
        assert_eq!(known(2).0, None);
        change(MembershipChange::AddLearner(2));
        redial.members_added_again(&server);
        assert_eq!(known(2).0, Some(at(4)));
        // A member no longer listed is dialled on until it is removed, and not after.
        write(1, &[]);
        reread(&mut redial);
        assert_eq!(known(2), (Some(at(4)), None));
        change(MembershipChange::Remove(2));
        // Seen out, then in again: `Redial` would give it back if it had its address.
        redial.members_added_again(&server);
        change(MembershipChange::AddLearner(2));
        redial.members_added_again(&server);
        assert_eq!(known(2), (None, None));
        close(server, dir);
        std::fs::remove_file(conf).unwrap();
        std::fs::remove_file(secret).unwrap();
    }

    #[test]
    fn every_setting_but_the_peers_and_the_first_start_flags_takes_a_restart() {
        let started = super::super::test_support::settings_for_tests();
        let mut now = started.clone();
        now.peers.insert(9, (addr(7009), addr(8009)));
        now.init = !started.init;
        now.join = !started.join;
        assert!(restart_only_changes(&started, &now).is_empty());
        now.tick *= 2;
        now.secret.push(b'x');
        now.snapshot_timeout = Some(std::time::Duration::from_secs(9));
        assert_eq!(
            restart_only_changes(&started, &now),
            ["secret-file", "tick-ms", "snapshot-timeout-ms"]
        );
    }
}
