//! Gives the peer transport back a member that was removed and added again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rwal_replication::NodeId;

use super::{log, Server};

/// Gives the transport back a configured peer (`Server::peers`: the `peer` lines as last read)
/// that a membership change made a member again, or a member for the first time.
/// The transport forgets a member when its removal is applied (it is cut off), and nothing
/// else tells it that the member was added back (docs/network.md section 4): this looks at the
/// membership the node publishes.
#[derive(Default)]
pub(super) struct Redial {
    /// The members seen at the last look.
    members: Option<Vec<NodeId>>,
    /// Members the transport has had no address for, since when.
    missing_since: HashMap<NodeId, Instant>,
    /// Ids this process saw leave the membership and not come back: a re-read config file
    /// (`reload.rs`) does not give them to the transport, this does once they are added back.
    left: HashSet<NodeId>,
    /// Members this node has no `peer` line for, already warned about (once each, until the
    /// member has an address or leaves).
    unaddressed: HashSet<NodeId>,
    /// Members whose `peer` line the transport could not take (no thread for it), since when:
    /// tried again, and logged again, only after `REDIAL_MISSING_FOR`, not at every look
    /// (20 lines a second before 2026-12-06).
    line_refused_at: HashMap<NodeId, Instant>,
}

/// A member the transport has had no address for this long is given one, even if no look saw
/// it outside the membership (a removal and an addition between two looks).
const REDIAL_MISSING_FOR: Duration = Duration::from_secs(2);

impl Redial {
    pub(super) fn members_added_again(&mut self, server: &Server) {
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
        if let Some(before) = &self.members {
            self.left
                .extend(before.iter().filter(|member| !members.contains(member)));
        }
        self.left.retain(|id| !members.contains(id));
        for &gone in &self.left {
            // Given back by a re-read that ran between its removal and this look: the removal
            // stands (docs/network.md section 2.1). Only the address of its `peer` line: one
            // the transport learned from a change that added it back (applied just before the
            // membership this look read was replaced) is kept.
            let line = server.peers.read().get(&gone).map(|(peer, _)| *peer);
            if line.is_some() && server.network.peer_addr(gone) == line {
                server.network.remove_peer(gone);
            }
        }
        let now = Instant::now();
        for &member in &members {
            if let Some(dialled) = server.network.peer_addr(member) {
                self.missing_since.remove(&member);
                // This node's `peer` line stands over an address a change carried (another
                // member's line, older than this one's).
                let line = server.peers.read().get(&member).map(|(peer, _)| *peer);
                let refused_lately = self
                    .line_refused_at
                    .get(&member)
                    .is_some_and(|at| now.duration_since(*at) < REDIAL_MISSING_FOR);
                if let Some(line) = line.filter(|line| *line != dialled && !refused_lately) {
                    let dialled_now = server.network.add_peer(member, line);
                    if dialled_now.is_err() {
                        self.line_refused_at.insert(member, now);
                    } else {
                        self.line_refused_at.remove(&member);
                    }
                    match dialled_now {
                        Ok(()) if !is_member(&server.node.status().membership, member) => {
                            // Removed since the look above: its removal forgot it before
                            // this gave it back.
                            server.network.remove_peer(member);
                        }
                        Ok(()) => log(
                            id,
                            &format!(
                                "node {member} is dialled at {line}, its peer line here, not \
                                 at {dialled}"
                            ),
                        ),
                        Err(e) => log(id, &format!("cannot dial node {member} at {line}: {e}")),
                    }
                }
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
            let Some((addr, _)) = server.peers.read().get(&member).copied() else {
                // Not in this node's `peer` lines (as last read): no address. Silent before
                // 2026-12-05, and the operator saw only the promotion refused, the learner
                // never having been sent the log by this node once it led.
                if self.unaddressed.insert(member) {
                    log(
                        id,
                        &format!(
                            "warning: node {member} is a member, and this node has no peer line \
                             for it: it cannot send it the log while it leads; add the line to \
                             the config file and send SIGHUP"
                        ),
                    );
                }
                continue;
            };
            match server.network.add_peer(member, addr) {
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
        self.line_refused_at
            .retain(|member, _| members.contains(member));
        self.unaddressed.retain(|member| {
            members.contains(member) && server.network.peer_addr(*member).is_none()
        });
        self.members = Some(members);
    }

    /// Whether this process saw `id` leave the membership (at one of its looks) and has not
    /// seen it come back.
    pub(super) fn saw_leave(&self, id: NodeId) -> bool {
        self.left.contains(&id)
    }
}

/// Whether `id` is a voter or a learner of `membership`.
pub(super) fn is_member(membership: &rwal_replication::ConfState, id: NodeId) -> bool {
    membership.voters.contains(&id) || membership.learners.contains(&id)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rwal_replication::MembershipChange;

    use super::super::test_support::{close, single_node_server};
    use super::*;

    /// A member dialled at an address a change carried (another member's line) is dialled at
    /// this node's own `peer` line instead, where the two differ.
    #[test]
    fn this_nodes_peer_line_stands_over_an_address_a_change_carried() {
        let (server, dir) = single_node_server("line-stands");
        let line: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let carried: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        server
            .peers
            .write()
            .insert(5, (line, "127.0.0.1:8".parse().unwrap()));
        let (lsn, epoch) = server
            .node
            .change_membership_at(MembershipChange::AddLearner(5), Some(&carried.to_string()))
            .unwrap();
        server
            .node
            .wait_committed(lsn, epoch, Duration::from_secs(20))
            .unwrap();
        // The transport learned the carried address as the change was applied.
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.network.peer_addr(5) != Some(carried) {
            assert!(
                Instant::now() < deadline,
                "the carried address was not learned"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut redial = Redial::default();
        while server.network.peer_addr(5) != Some(line) {
            assert!(Instant::now() < deadline, "the peer line did not stand");
            redial.members_added_again(&server);
            std::thread::sleep(Duration::from_millis(50));
        }
        // And stays: the next look changes nothing.
        redial.members_added_again(&server);
        assert_eq!(server.network.peer_addr(5), Some(line));
        close(server, dir);
    }

    /// A member this node has no `peer` line for is noted once (with a warning), not skipped
    /// without a word at every look; once it has an address it is forgotten.
    #[test]
    fn a_member_without_a_peer_line_is_warned_about_once() {
        let (server, dir) = single_node_server("unaddressed");
        let (lsn, epoch) = server
            .node
            .change_membership(MembershipChange::AddLearner(5))
            .unwrap();
        server
            .node
            .wait_committed(lsn, epoch, Duration::from_secs(20))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.node.status().membership.learners.contains(&5) {
            assert!(Instant::now() < deadline, "learner 5 never applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Looked at as the node's loop does, every 50 ms: a member without an address is
        // looked for after `REDIAL_MISSING_FOR`.
        let mut redial = Redial::default();
        while redial.unaddressed.is_empty() {
            assert!(Instant::now() < deadline, "never noted");
            redial.members_added_again(&server);
            std::thread::sleep(Duration::from_millis(50));
        }
        redial.members_added_again(&server);
        assert!(redial.members.as_ref().unwrap().contains(&5));
        assert_eq!(redial.unaddressed, HashSet::from([5]));
        // Given an address (as a reload of the config file would), it is forgotten.
        server
            .network
            .add_peer(5, "127.0.0.1:9".parse().unwrap())
            .unwrap();
        redial.members_added_again(&server);
        assert!(redial.unaddressed.is_empty());
        close(server, dir);
    }
}
