//! Three voters on simulated disks, stepped by hand: rounds in which chosen members tick and
//! chosen links carry the messages.

use rwal_replication::{Bootstrap, Config, Envelope, NodeId, Replica};
use rwal_wal::{Backend, Options, SimDisk};

use crate::common::Engine;

/// The log options of a member on `disk`: 1 MiB segments, no background thread.
pub fn options(disk: &SimDisk) -> Options {
    Options::new()
        .backend(Backend::Simulated(disk.clone()))
        .background_threads(false)
        .segment_bytes(1 << 20)
}

/// Member `id` of the voters 1, 2 and 3, on its own simulated disk, in `/trio/{id}`.
pub fn open_member(id: NodeId, disk: &SimDisk) -> rwal_replication::Result<Replica<Engine>> {
    let mut config = Config::new(id);
    config.election_ticks = 10;
    config.election_ticks_max = 20;
    Replica::open(
        format!("/trio/{id}"),
        options(disk),
        config,
        Bootstrap::Voters(vec![1, 2, 3]),
        Engine::default(),
    )
}

/// One round of the three (`nodes[i]` is member `i + 1`): those in `ticking` tick, each
/// processes, and each message is delivered if `link(from, to)` allows it; the others are
/// returned.
pub fn round(
    nodes: &mut [Replica<Engine>],
    ticking: &[NodeId],
    link: impl Fn(NodeId, NodeId) -> bool,
) -> Vec<Envelope> {
    for node in nodes.iter_mut() {
        if ticking.contains(&node.id()) {
            node.tick();
        }
        node.process().expect("a round");
    }
    let sent: Vec<Envelope> = nodes.iter_mut().flat_map(|n| n.take_messages()).collect();
    let mut dropped = Vec::new();
    for envelope in sent {
        if link(envelope.from(), envelope.to()) {
            nodes[envelope.to() as usize - 1].step(envelope);
        } else {
            dropped.push(envelope);
        }
    }
    dropped
}

/// Rounds (no ticks, every link) until `done` holds, at most `limit`; whether it did.
#[allow(dead_code)] // not every test binary that has this module calls it
pub fn run_until(
    nodes: &mut [Replica<Engine>],
    limit: usize,
    done: impl Fn(&[Replica<Engine>]) -> bool,
) -> bool {
    for _ in 0..limit {
        if done(nodes) {
            return true;
        }
        round(nodes, &[], |_, _| true);
    }
    done(nodes)
}
