//! A leader's appends to one follower leave as one message per round, within
//! `max_bytes_per_message` (docs/replication.md section 3.2): three replicas on simulated
//! disks, stepped by hand so that every message can be counted.

use raft::eraftpb::MessageType;
use rwal_replication::{Bootstrap, Config, Envelope, Error, NodeId, Replica, Role, StateMachine};
use rwal_wal::{Backend, Lsn, Options, SimDisk};

/// Counts what it applies.
#[derive(Default)]
struct Count(u64);

impl StateMachine for Count {
    fn apply(&mut self, _lsn: Lsn, _epoch: u64, _data: &[u8]) -> rwal_replication::EngineResult {
        self.0 += 1;
        Ok(())
    }

    fn snapshot(&mut self) -> rwal_replication::EngineResult<rwal_replication::EngineSnapshot> {
        Ok(self.0.to_le_bytes().to_vec().into())
    }

    fn restore(&mut self, _lsn: Lsn, _epoch: u64, _bytes: &[u8]) -> rwal_replication::EngineResult {
        Ok(())
    }
}

struct Cluster {
    replicas: Vec<Replica<Count>>,
}

impl Cluster {
    fn new(max_bytes_per_message: u64) -> Cluster {
        Cluster::configured(|config| config.max_bytes_per_message = max_bytes_per_message)
    }

    /// Three replicas whose configuration `configure` changes from the tests' own.
    fn configured(configure: impl Fn(&mut Config)) -> Cluster {
        let voters: Vec<NodeId> = vec![1, 2, 3];
        let replicas = voters
            .iter()
            .map(|&id| {
                let mut config = Config::new(id);
                config.election_ticks = 10;
                config.election_ticks_max = 11;
                config.heartbeat_ticks = 2;
                configure(&mut config);
                let options = Options::new()
                    .backend(Backend::Simulated(SimDisk::new()))
                    .background_threads(false)
                    .segment_bytes(1 << 20);
                Replica::open(
                    format!("/batching/{id}"),
                    options,
                    config,
                    Bootstrap::Voters(voters.clone()),
                    Count::default(),
                )
                .expect("a new replica opens")
            })
            .collect();
        Cluster { replicas }
    }

    fn replica(&mut self, id: NodeId) -> &mut Replica<Count> {
        &mut self.replicas[id as usize - 1]
    }

    /// One full round of `id`: what it sends.
    fn round(&mut self, id: NodeId) -> Vec<Envelope> {
        let replica = self.replica(id);
        let mut out = Vec::new();
        while replica.handle_ready().expect("handle_ready") {
            out.extend(replica.take_messages());
            replica.finish_ready().expect("finish_ready");
            out.extend(replica.take_messages());
        }
        out
    }

    fn deliver(&mut self, envelopes: Vec<Envelope>) {
        for envelope in envelopes {
            let to = envelope.to();
            self.replica(to).step(envelope);
        }
    }

    /// Rounds and deliveries until nobody sends anything.
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut out = Vec::new();
            for id in 1..=3 {
                out.extend(self.round(id));
            }
            if out.is_empty() {
                return;
            }
            self.deliver(out);
        }
        panic!("the cluster did not settle in 100 rounds");
    }

    /// Node 1 campaigns (only it ticks) and wins.
    fn elect_node_1(&mut self) {
        for _ in 0..40 {
            self.replica(1).tick();
            self.settle();
            if self.replica(1).role() == Role::Leader {
                return;
            }
        }
        panic!("node 1 was not elected");
    }
}

/// The appends in `out` to `to`: the entries each carries.
fn appends_to(out: &[Envelope], to: NodeId) -> Vec<usize> {
    out.iter()
        .filter_map(|envelope| match envelope {
            Envelope::Raft(m) if m.to == to && m.get_msg_type() == MessageType::MsgAppend => {
                Some(m.entries.len())
            }
            _ => None,
        })
        .collect()
}

fn count_of(out: &[Envelope], kind: MessageType) -> usize {
    out.iter()
        .filter(|e| matches!(e, Envelope::Raft(m) if m.get_msg_type() == kind))
        .count()
}

#[test]
fn proposals_of_one_round_reach_each_follower_in_one_append() {
    let mut cluster = Cluster::new(1 << 20);
    cluster.elect_node_1();
    let before = cluster.replica(1).commit_lsn();
    for i in 0..64 {
        cluster
            .replica(1)
            .propose(format!("proposal {i}").as_bytes())
            .expect("the leader takes a proposal");
    }
    let out = cluster.round(1);
    assert_eq!(appends_to(&out, 2), [64], "{out:?}");
    assert_eq!(appends_to(&out, 3), [64]);
    cluster.deliver(out);
    // One append, so one acknowledgement from each follower.
    let acks: Vec<Envelope> = [2, 3].iter().flat_map(|&id| cluster.round(id)).collect();
    assert_eq!(
        count_of(&acks, MessageType::MsgAppendResponse),
        2,
        "{acks:?}"
    );
    cluster.deliver(acks);
    cluster.settle();
    assert_eq!(cluster.replica(1).commit_lsn(), before + 64);
    for id in 1..=3 {
        assert_eq!(cluster.replica(id).applied_lsn(), before + 64, "node {id}");
    }
}

#[test]
fn a_merged_append_stays_within_the_message_limit() {
    // Each entry is a little over 1 KiB: at most three fit in 4 KiB.
    let mut cluster = Cluster::new(4 << 10);
    cluster.elect_node_1();
    let before = cluster.replica(1).commit_lsn();
    for _ in 0..10 {
        cluster.replica(1).propose(&[7; 1100]).expect("proposal");
    }
    let out = cluster.round(1);
    let sizes = appends_to(&out, 2);
    assert_eq!(sizes, [3, 3, 3, 1], "{out:?}");
    assert_eq!(appends_to(&out, 3), sizes);
    cluster.deliver(out);
    cluster.settle();
    for id in 1..=3 {
        assert_eq!(cluster.replica(id).applied_lsn(), before + 10, "node {id}");
    }
}

/// raft-rs counts only an entry's data against `max_uncommitted_bytes`, and takes an empty
/// one whatever the count: with nothing committing (a hung disk, a lost quorum), empty
/// proposals piled up without end. Each uncommitted entry now also counts a fixed cost.
#[test]
fn empty_proposals_are_refused_once_the_uncommitted_entries_fill_the_limit() {
    let mut cluster = Cluster::configured(|config| {
        config.max_uncommitted_bytes = 64 << 10;
        config.max_bytes_per_message = 32 << 10;
    });
    cluster.elect_node_1();
    let before = cluster.replica(1).applied_lsn();
    // Nothing is delivered: nothing commits.
    let mut taken = 0;
    let refused = loop {
        match cluster.replica(1).propose(b"") {
            Ok(_) => taken += 1,
            Err(e) => break e,
        }
        assert!(
            taken <= 10_000,
            "{taken} empty proposals taken, none committed"
        );
    };
    assert!(matches!(refused, Error::Backlogged { .. }), "{refused:?}");
    assert!(
        (256..=512).contains(&taken),
        "{taken} taken under a limit of 64 KiB"
    );
    // Once they commit there is room again.
    cluster.settle();
    assert_eq!(cluster.replica(1).applied_lsn(), before + taken);
    cluster
        .replica(1)
        .propose(b"")
        .expect("taken once the backlog committed");
}
