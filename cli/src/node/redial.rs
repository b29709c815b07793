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
            // stands (docs/network.md section 2.1).
            if server.network.peer_addr(gone).is_some() {
                server.network.remove_peer(gone);
            }
        }
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
            let Some((addr, _)) = server.peers.read().get(&member).copied() else {
                continue; // not in this node's `peer` lines (as last read): no address
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
