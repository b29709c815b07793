//! A follower's side of a snapshot stream that stops half way.

mod common;

use common::Engine;
use rwal_replication::{Bootstrap, Config, Envelope, Replica, SnapshotChunk};
use rwal_wal::{Backend, Options, SimDisk};

/// A snapshot received in part is dropped once its stream has been silent for twice as long as
/// a sender waits before giving a stream up, and said so: its sender gave it up (it failed
/// over, or caught the node up from its log), and its bytes stayed in memory until another
/// snapshot came.
#[test]
fn a_snapshot_received_in_part_is_dropped_once_its_stream_falls_silent() {
    let config = Config::new(2);
    let timeout = config.snapshot_timeout_ticks;
    let options = Options::new()
        .backend(Backend::Simulated(SimDisk::new()))
        .background_threads(false)
        .segment_bytes(1 << 20);
    let mut replica = Replica::open(
        "/receive",
        options,
        config,
        Bootstrap::Join,
        Engine::default(),
    )
    .expect("a joining replica opens");
    let data = vec![7u8; 100];
    replica.step(Envelope::SnapshotChunk(SnapshotChunk {
        from: 1,
        to: 2,
        lsn: 40,
        epoch: 3,
        offset: 0,
        total: 1000,
        crc: crc32c::crc32c(&data),
        data,
    }));
    let dropped = |log: &[String]| {
        log.iter()
            .any(|l| l.contains("dropped the part received of snapshot 40 from node 1"))
    };
    for _ in 0..2 * timeout {
        replica.tick();
    }
    let log = replica.take_log();
    assert!(!dropped(&log), "dropped too early: {log:?}");
    replica.tick();
    let log = replica.take_log();
    assert!(dropped(&log), "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("100 of 1000 bytes")),
        "{log:?}"
    );
}
