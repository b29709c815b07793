//! `rwal_node`: one member of a replicated log (rwal-replication) on the authenticated TCP
//! transport, with the engine's apply, snapshot, restore and leader-change callbacks.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rwal_replication::net::{PeerConfig, PeerNetwork};
use rwal_replication::{
    Bootstrap, CommittedReader, CommittedRecord, Config, EngineResult, Error, MembershipChange,
    Node, NodeId, NodeOptions, Role, Severity, StateMachine,
};
use rwal_wal::{Options, RecordKind};

use crate::log::{bytes, c_bytes, put, put_slice};
use crate::options::rwal_options;
use crate::status::{
    boundary, free_boxed, invalid, non_null, rwal_status, Failure, RWAL_END,
    RWAL_ERR_BUFFER_TOO_SMALL,
};

/// Called for every committed user record, in LSN order (during `rwal_node_open` on its caller's
/// thread for the records after the checkpoint, then on the node's thread): `data` is valid
/// during the call only. Returns 0 once the record is applied; anything else stops the node
/// (waits and `rwal_node_close` then fail with `RWAL_ERR_REPLICATION` and a message naming the
/// LSN and the value, proposals and other requests with `RWAL_ERR_CLOSED`): an engine that
/// cannot apply a committed record must not go on. The record stays committed: on the next open the engine is restored from
/// the latest checkpoint and given the records after it again. Committed is not applied: a wait
/// for any record the node saw committed before it stopped (that one, those before it, and
/// those committed in the same round after it, which were not applied either) still returns
/// `RWAL_OK`, as may the `propose_and_wait` that proposed it; only waits past those fail.
/// While `rwal_node_open` replays, a refusal fails the open with `RWAL_ERR_REPLICATION`.
#[allow(non_camel_case_types)]
pub type rwal_apply_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        lsn: u64,
        epoch: u64,
        data: *const u8,
        len: usize,
    ) -> c_int,
>;

/// Asked for the engine's state as of the last applied record (for a checkpoint a lagging
/// follower can start from), on the node's thread: hand it to the sink, then return 0.
/// Anything else (or a failed call on the sink) abandons this snapshot: no checkpoint is
/// written, the node logs why, and it asks again later. Two ways to hand it over, one per
/// snapshot:
/// - `rwal_snapshot_sink_write`, once or in pieces: the sink holds a copy in memory until a
///   thread of the node's has written it to the checkpoint's file, so this takes memory for
///   the whole state;
/// - `rwal_snapshot_sink_set_bytes`: the state stays where it is (a read-only mapping of a
///   file the engine wrote will do) until the node's thread for the checkpoint has read it,
///   then the node calls the release function given with it.
///
/// Either way the node's own thread does no disk write for it.
#[allow(non_camel_case_types)]
pub type rwal_snapshot_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, sink: *mut rwal_snapshot_sink) -> c_int>;

/// Replaces the engine's state with a snapshot taken at `lsn` (at open, from the latest
/// checkpoint, on the thread calling `rwal_node_open`; and on the node's thread when the leader
/// sends one); `data` is valid during the call only. It is a read-only view of the
/// checkpoint's file, checked against its checksum, not a copy: a state of any size is given
/// without being read into memory (its pages come from the page cache as they are read; the
/// check reads the whole file once first, at every open). Writing through it faults. It
/// starts on a page (4096 bytes), so the engine's structures may be read in place, except in
/// a checkpoint in the older format (written before 2026-12-05, or by a node of before),
/// where it has no alignment (copy, or read unaligned, before casting to a struct). A disk that fails to read a page back, or another
/// process truncating the file, is a SIGBUS while it is read.
/// A new cluster's log starts with a checkpoint of
/// the founding membership at LSN 1, with empty engine state: the first open calls `restore`
/// with `lsn` 1 and `len` 0.
/// Returns 0 once restored; anything else stops the node as a failed apply does (at open:
/// `rwal_node_open` fails with `RWAL_ERR_REPLICATION`).
#[allow(non_camel_case_types)]
pub type rwal_restore_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        lsn: u64,
        epoch: u64,
        data: *const u8,
        len: usize,
    ) -> c_int,
>;

/// The node learned of a new leader (`leader` 0: none known) in `term`, on the node's thread.
#[allow(non_camel_case_types)]
pub type rwal_leader_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, leader: u64, term: u64)>;

/// Releases a state handed over with `rwal_snapshot_sink_set_bytes`, once the node no longer
/// reads it; called exactly once, on one of the node's threads: its own (the snapshot was
/// abandoned before it was read) or the thread that wrote the checkpoint, which the node's
/// thread may be waiting for. So it must not call the node's functions that wait for the
/// node's thread (propose and wait, checkpoint, close...), nor wait for a lock held across
/// such a call: free or unmap, and return.
#[allow(non_camel_case_types)]
pub type rwal_release_fn = Option<unsafe extern "C" fn(release_userdata: *mut c_void)>;

/// Where a snapshot callback writes the engine's state.
#[allow(non_camel_case_types)]
#[derive(Debug, Default)]
pub struct rwal_snapshot_sink {
    bytes: Vec<u8>,
    /// `rwal_snapshot_sink_write` was called (even with nothing to write).
    written: bool,
    /// The state handed over in place (`rwal_snapshot_sink_set_bytes`), instead of `bytes`.
    lent: Option<LentState>,
    /// A call failed: the snapshot is abandoned whatever the callback returns.
    failed: bool,
}

/// The engine's state left where it is by `rwal_snapshot_sink_set_bytes`: read by the node's
/// checkpoint thread, released when dropped (after the last read, or when the snapshot is
/// abandoned).
#[derive(Debug)]
struct LentState {
    data: *const u8,
    len: usize,
    /// Bytes read so far.
    at: usize,
    release: rwal_release_fn,
    release_userdata: *mut c_void,
}

// SAFETY: the pointers are the embedder's, who hands them over to "one of the node's threads"
// (the header's contract for `rwal_snapshot_sink_set_bytes`): the bytes stay readable and
// unchanged, and `release` may be called, from any of them, until the release.
unsafe impl Send for LentState {}

impl std::io::Read for LentState {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.len - self.at);
        if n > 0 {
            // SAFETY: `data` has `len` readable bytes until the release (the contract), and
            // `at + n <= len`.
            let left = unsafe { std::slice::from_raw_parts(self.data.add(self.at), n) };
            buf[..n].copy_from_slice(left);
            self.at += n;
        }
        Ok(n)
    }
}

impl Drop for LentState {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            // SAFETY: the embedder's function with its userdata, called once (this drop).
            unsafe { release(self.release_userdata) };
        }
    }
}

/// Options for `rwal_node_open`. Create with `rwal_node_options_new`, free with
/// `rwal_node_options_free`. Not thread-safe.
#[allow(non_camel_case_types)]
pub struct rwal_node_options {
    id: NodeId,
    dir: PathBuf,
    wal: Options,
    cluster_id: u64,
    secret: Vec<u8>,
    listen: SocketAddr,
    peers: HashMap<NodeId, SocketAddr>,
    voters: Vec<NodeId>,
    join: bool,
    tick: Duration,
    /// `NodeOptions::sync_stall_limit`.
    sync_stall_limit: Option<Duration>,
    /// `Config::snapshot_bytes_max`.
    snapshot_bytes_max: u64,
    /// `NodeOptions::snapshot_timeout`.
    snapshot_timeout: Option<Duration>,
    callbacks: Callbacks,
}

impl std::fmt::Debug for rwal_node_options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rwal_node_options")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
struct Callbacks {
    apply: rwal_apply_fn,
    snapshot: rwal_snapshot_fn,
    restore: rwal_restore_fn,
    leader: rwal_leader_fn,
    userdata: *mut c_void,
}

// SAFETY: the callbacks and their userdata are the embedder's; rwal_node_options_set_callbacks
// documents that they are called from the node's thread, so the embedder makes them safe there.
unsafe impl Send for Callbacks {}

/// The engine: the embedder's callbacks.
struct Engine(Callbacks);

/// What a callback's non-zero return becomes.
fn returned(rc: c_int) -> EngineResult {
    match rc {
        0 => Ok(()),
        rc => Err(format!("it returned {rc}").into()),
    }
}

/// Without callbacks (all three NULL, which `rwal_node_options_set_callbacks` requires of a
/// missing one) the engine has no state: an empty snapshot is all of it.
impl StateMachine for Engine {
    fn apply(&mut self, lsn: u64, epoch: u64, data: &[u8]) -> EngineResult {
        let Some(apply) = self.0.apply else {
            return Ok(());
        };
        // SAFETY: the embedder's callback, given the bytes for the call's duration.
        returned(unsafe { apply(self.0.userdata, lsn, epoch, c_bytes(data), data.len()) })
    }

    fn snapshot(&mut self) -> EngineResult<rwal_replication::EngineSnapshot> {
        let mut sink = rwal_snapshot_sink::default();
        let Some(snapshot) = self.0.snapshot else {
            return Ok(sink.bytes.into());
        };
        // SAFETY: the embedder's callback; the sink lives through the call.
        returned(unsafe { snapshot(self.0.userdata, &mut sink) })?;
        if sink.failed {
            return Err("a call on its sink failed".into());
        }
        Ok(match sink.lent {
            Some(lent) => rwal_replication::EngineSnapshot::from_reader(lent.len as u64, lent),
            None => sink.bytes.into(),
        })
    }

    fn restore(&mut self, lsn: u64, epoch: u64, data: &[u8]) -> EngineResult {
        let Some(restore) = self.0.restore else {
            return Ok(());
        };
        // SAFETY: the embedder's callback, given the bytes for the call's duration.
        returned(unsafe { restore(self.0.userdata, lsn, epoch, c_bytes(data), data.len()) })
    }

    fn leader_changed(&mut self, leader: Option<NodeId>, term: u64) {
        if let Some(changed) = self.0.leader {
            // SAFETY: the embedder's callback.
            unsafe { changed(self.0.userdata, leader.unwrap_or(0), term) }
        }
    }
}

/// A running node: its consensus thread, its network, and what it was opened with. Every
/// function taking it may be called from any thread at once, except `rwal_node_close`, the last
/// call on it (unless made from one of its callbacks, where it returns
/// `RWAL_ERR_INVALID_ARGUMENT` and touches nothing). From its callbacks only the functions that
/// do not wait for the node, and not `rwal_node_compact` (see
/// `rwal_node_options_set_callbacks`).
#[allow(non_camel_case_types)]
pub struct rwal_node {
    node: Node,
    network: PeerNetwork,
    /// For each peer id, how often its address was set or relied on (`rwal_node_add_peer`,
    /// `rwal_node_change_membership`): a membership change whose proposal failed puts back
    /// the address it had set only if nobody set or relied on that peer's address since.
    /// Held only briefly, never across a wait for the node's thread (a callback on that thread
    /// may add a peer).
    peer_changes: Mutex<HashMap<u64, u64>>,
}

impl rwal_node {
    /// Notes a change of (or a reliance on) `id`'s address; returns its new count.
    fn peer_changed(changes: &mut HashMap<u64, u64>, id: u64) -> u64 {
        let count = changes.entry(id).or_insert(0);
        *count += 1;
        *count
    }
}

impl std::fmt::Debug for rwal_node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rwal_node")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What a node reports about itself (see `rwal_node_status_get`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rwal_node_status {
    /// The node's id.
    pub id: u64,
    /// `RWAL_ROLE_FOLLOWER`, `RWAL_ROLE_CANDIDATE` or `RWAL_ROLE_LEADER`.
    pub role: i32,
    /// Its term.
    pub term: u64,
    /// The leader it knows of, 0 if none.
    pub leader: u64,
    /// The highest LSN known committed.
    pub commit_lsn: u64,
    /// The highest LSN applied to the engine.
    pub applied_lsn: u64,
    /// The oldest LSN its log retains.
    pub first_lsn: u64,
    /// The newest LSN in its log.
    pub last_lsn: u64,
    /// Voters in its membership.
    pub voters: u32,
    /// Learners in its membership.
    pub learners: u32,
}

/// A node follows a leader (or waits for one).
pub const RWAL_ROLE_FOLLOWER: i32 = 0;
/// A node asks for votes.
pub const RWAL_ROLE_CANDIDATE: i32 = 1;
/// A node leads its term.
pub const RWAL_ROLE_LEADER: i32 = 2;

/// A membership change: one of the `RWAL_MEMBERSHIP_*` values.
#[allow(non_camel_case_types)]
pub type rwal_membership_change = i32;
/// Promote a learner to voter once it has caught up (a node that is not a learner yet is
/// refused with `RWAL_ERR_INVALID_ARGUMENT`: add it as a learner first).
pub const RWAL_MEMBERSHIP_ADD_VOTER: rwal_membership_change = 0;
/// Add a learner: a non-voting standby that receives the log.
pub const RWAL_MEMBERSHIP_ADD_LEARNER: rwal_membership_change = 1;
/// Remove a voter or learner.
pub const RWAL_MEMBERSHIP_REMOVE: rwal_membership_change = 2;

/// A user record (`kind` of `rwal_node_reader_next`).
pub const RWAL_RECORD_USER: u32 = 0;
/// A record of the consensus layer itself (a new leader's empty entry, a membership change):
/// engines skip it.
pub const RWAL_RECORD_SYSTEM: u32 = 1;

/// A reader over a node's committed records (`rwal_node_reader_open`). One thread at a time;
/// free it with `rwal_node_reader_free`.
#[allow(non_camel_case_types)]
pub struct rwal_node_reader {
    reader: CommittedReader,
    current: Option<CommittedRecord>,
}

impl std::fmt::Debug for rwal_node_reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rwal_node_reader")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        use crate::status::*;
        let status = match &error {
            Error::NotLeader { .. } => RWAL_ERR_NOT_LEADER,
            Error::Superseded { .. } => RWAL_ERR_SUPERSEDED,
            Error::Timeout { .. } | Error::NotYetCommitted { .. } => RWAL_ERR_TIMEOUT,
            Error::Busy { .. } | Error::Backlogged { .. } | Error::NotYet { .. } => RWAL_ERR_BUSY,
            Error::Closed => RWAL_ERR_CLOSED,
            Error::InvalidArgument { .. } => RWAL_ERR_INVALID_ARGUMENT,
            Error::Wal(e) => code(e),
            Error::BadSnapshot { .. } => RWAL_ERR_CORRUPTED,
            Error::CheckpointAbandoned { .. } => RWAL_ERR_ABANDONED,
            Error::Io { .. } => RWAL_ERR_IO,
            _ => RWAL_ERR_REPLICATION,
        };
        Failure {
            status,
            message: error.to_string(),
        }
    }
}

/// A NUL-terminated string argument.
unsafe fn text<'a>(pointer: *const c_char, name: &str) -> Result<&'a [u8], Failure> {
    non_null(pointer, name)?;
    // SAFETY: non-NULL and NUL-terminated (the caller's contract).
    Ok(unsafe { CStr::from_ptr(pointer) }.to_bytes())
}

unsafe fn address(pointer: *const c_char, name: &str) -> Result<SocketAddr, Failure> {
    // SAFETY: forwarded caller contract.
    let bytes = unsafe { text(pointer, name)? };
    let text = String::from_utf8_lossy(bytes);
    text.parse().map_err(|e| {
        invalid(format!(
            "{name} {text:?} is not an IP address and port: {e}"
        ))
    })
}

unsafe fn options_mut<'a>(
    opts: *mut rwal_node_options,
) -> Result<&'a mut rwal_node_options, Failure> {
    non_null(opts, "opts")?;
    // SAFETY: live options, used by one thread (the caller's contract).
    Ok(unsafe { &mut *opts })
}

unsafe fn node<'a>(node: *const rwal_node) -> Result<&'a rwal_node, Failure> {
    non_null(node, "node")?;
    // SAFETY: a live handle (the caller's contract).
    let handle = unsafe { &*node };
    // Before any lock of the handle's and any change of its network: in a child forked from
    // the node's process they are that process's (found by review on 2026-12-06: an added
    // peer there cut the parent's connections).
    handle.node.check_opener_process("a call of the node")?;
    Ok(handle)
}

/// New node options for node `id` (1, 2, ...) with its log in `dir`: listen on 127.0.0.1 on a
/// port the OS chooses, no peers, no founding voters (a directory without a log is then
/// refused: see `rwal_node_options_set_voters`), 10 ms ticks, a 1 s sync stall limit, no
/// engine callbacks, and the log's default options but for its backend,
/// `RWAL_BACKEND_STAGED` (a replica syncs at every round; docs/replication.md section 3.4).
/// There is no default cluster id and secret: `rwal_node_options_set_cluster` is required
/// before `rwal_node_open` (which refuses, naming the secret, without it). `*opts_out` is the
/// options; free them with `rwal_node_options_free`.
///
/// # Safety
/// `dir` is a NUL-terminated path; `opts_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_new(
    id: u64,
    dir: *const c_char,
    opts_out: *mut *mut rwal_node_options,
) -> rwal_status {
    boundary(|| {
        non_null(opts_out, "opts_out")?;
        // SAFETY: forwarded caller contract.
        let dir = unsafe { text(dir, "dir")? };
        if dir.is_empty() || id == 0 {
            return Err(invalid("a node needs an id above 0 and a directory"));
        }
        let options = rwal_node_options {
            id,
            dir: PathBuf::from(OsStr::from_bytes(dir)),
            wal: NodeOptions::default_wal(),
            cluster_id: 0,
            secret: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: HashMap::new(),
            voters: Vec::new(),
            join: false,
            tick: Duration::from_millis(10),
            sync_stall_limit: Some(Duration::from_secs(1)),
            snapshot_bytes_max: Config::new(id).snapshot_bytes_max,
            snapshot_timeout: None,
            callbacks: Callbacks {
                apply: None,
                snapshot: None,
                restore: None,
                leader: None,
                userdata: std::ptr::null_mut(),
            },
        };
        // SAFETY: checked non-NULL.
        unsafe { put(opts_out, Box::into_raw(Box::new(options))) };
        Ok(())
    })
}

/// Frees node options. NULL is a no-op.
///
/// # Safety
/// `opts` is NULL or options from `rwal_node_options_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_free(opts: *mut rwal_node_options) {
    // SAFETY: the caller's contract: NULL, or from the matching open or new, not yet freed.
    unsafe { free_boxed(opts) }
}

/// The cluster every member shares: its id and its secret (at least 16 bytes; peers prove they
/// hold it, and every frame carries a MAC made with it: see docs/network.md).
///
/// # Safety
/// `opts` is live; `secret` has `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_cluster(
    opts: *mut rwal_node_options,
    cluster_id: u64,
    secret: *const u8,
    len: usize,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let opts = unsafe { options_mut(opts)? };
        if len < rwal_replication::net::SECRET_BYTES_MIN {
            return Err(invalid(format!(
                "the secret has {len} bytes; it needs at least {}",
                rwal_replication::net::SECRET_BYTES_MIN
            )));
        }
        // SAFETY: forwarded caller contract.
        opts.secret = unsafe { bytes(secret, len, "secret")? }.to_vec();
        opts.cluster_id = cluster_id;
        Ok(())
    })
}

/// Where the node accepts its peers: "IP:PORT" (port 0: one the OS chooses; see
/// `rwal_node_local_addr`).
///
/// # Safety
/// `opts` is live; `addr` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_listen(
    opts: *mut rwal_node_options,
    addr: *const c_char,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let listen = unsafe { address(addr, "addr")? };
        // SAFETY: forwarded caller contract.
        unsafe { options_mut(opts)? }.listen = listen;
        Ok(())
    })
}

/// Adds a peer known at open: its id and "IP:PORT" (peers can also be added after open, with
/// `rwal_node_add_peer`).
///
/// # Safety
/// `opts` is live; `addr` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_add_peer(
    opts: *mut rwal_node_options,
    id: u64,
    addr: *const c_char,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let at = unsafe { address(addr, "addr")? };
        // SAFETY: forwarded caller contract.
        let opts = unsafe { options_mut(opts)? };
        if id == 0 || id == opts.id {
            return Err(invalid(format!(
                "{id} cannot be a peer of node {}",
                opts.id
            )));
        }
        opts.peers.insert(id, at);
        Ok(())
    })
}

/// The founding voters (every founding member is opened with the same list; it must contain
/// this node). With `join` nonzero the node founds nothing: it starts empty and waits for the
/// leader, which adds it with `rwal_node_change_membership`, to send it a snapshot. Both only
/// matter for a new log: a reopened node continues from its own.
///
/// Give the voters on the first start of a new cluster's members only. A node whose directory
/// holds no log and that is given neither voters nor `join` refuses to open
/// (`RWAL_ERR_INVALID_ARGUMENT`): a member restarted with the founding voters after losing its
/// directory would found the cluster anew, and its vote could elect a leader that lacks
/// acknowledged writes. Such a member must be removed and added again as a new one. One
/// restarted with `join` opens empty, and votes for no candidate until a leader has sent it
/// the membership. At most 65 536 voters. `count` 0 with `join` zero clears both (the
/// default).
///
/// # Safety
/// `opts` is live; `ids` has `count` readable ids (NULL if `count` is 0).
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_voters(
    opts: *mut rwal_node_options,
    ids: *const u64,
    count: usize,
    join: bool,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let opts = unsafe { options_mut(opts)? };
        let ids = if count == 0 {
            Vec::new()
        } else {
            non_null(ids, "ids")?;
            if count > 1 << 16 {
                // More voters than any cluster has; a slice that large could exceed any object.
                return Err(invalid(format!("{count} voters cannot be right")));
            }
            // SAFETY: `count` readable ids (the caller's contract), checked to be a sane size.
            unsafe { std::slice::from_raw_parts(ids, count) }.to_vec()
        };
        // No voters and no `join`: the options of a member restarted on its own log (options
        // reused from a first start go back to that; it used to be refused).
        if !join && !ids.is_empty() && (!ids.contains(&opts.id) || ids.contains(&0)) {
            return Err(invalid(format!(
                "the voters {ids:?} must name this node ({}) and no 0",
                opts.id
            )));
        }
        opts.voters = ids;
        opts.join = join;
        Ok(())
    })
}

/// The options of the log under the node (segment size, backend, ...), replacing the node's
/// default ones, but for the backend when `rwal_options_set_backend` was not called on
/// `log_opts`: the node's default, `RWAL_BACKEND_STAGED`, stays (until 2026-12-07 such options
/// moved the node to the single log's default, `RWAL_BACKEND_MMAP`, as Python's binding
/// never did). The
/// recovery modes that drop records (`RWAL_RECOVERY_POINT_IN_TIME`,
/// `RWAL_RECOVERY_SKIP_CORRUPTED`) make `rwal_node_open` fail: a replica must not forget what
/// it acknowledged.
///
/// # Safety
/// `opts` is live; `log_opts` is live options from `rwal_options_new` (copied).
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_log_options(
    opts: *mut rwal_node_options,
    log_opts: *const rwal_options,
) -> rwal_status {
    boundary(|| {
        non_null(log_opts, "log_opts")?;
        // SAFETY: live options (the caller's contract).
        let log_opts = unsafe { &*log_opts };
        let mut wal = log_opts.options.clone();
        if !log_opts.backend_set {
            // Options made to change the segment size, say, keep the node's backend
            // (`NodeOptions::default_wal`'s).
            wal = wal.backend(rwal_wal::Backend::Staged);
        }
        // SAFETY: forwarded caller contract.
        unsafe { options_mut(opts)? }.wal = wal;
        Ok(())
    })
}

/// Raft's tick in milliseconds (default 10, from 1 to 60000): an election starts after 10 to
/// 20 ticks without a leader (drawn anew at each election, so that candidates do not keep
/// splitting the vote), heartbeats go every 2. `RWAL_ERR_INVALID_ARGUMENT` outside that range.
///
/// # Safety
/// `opts` is live.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_tick_ms(
    opts: *mut rwal_node_options,
    ms: u32,
) -> rwal_status {
    boundary(|| {
        let tick = Duration::from_millis(u64::from(ms));
        if ms == 0 || tick > rwal_replication::TICK_INTERVAL_MAX {
            return Err(invalid(format!(
                "the tick must be 1 to {} ms, not {ms}",
                rwal_replication::TICK_INTERVAL_MAX.as_millis()
            )));
        }
        // SAFETY: forwarded caller contract.
        unsafe { options_mut(opts)? }.tick = tick;
        Ok(())
    })
}

/// How long, in milliseconds, a sync of the leader's log may run before the leader hands its
/// leadership to the most up-to-date other voter, and again after each further such stretch
/// while the sync has not returned (default 1000; never less than the longest election
/// timeout, 20 ticks; 0: never). A leader applies only what its own log holds durably, so a
/// leader whose disk hangs commits nothing while it goes on leading.
///
/// # Safety
/// `opts` is live.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_sync_stall_limit_ms(
    opts: *mut rwal_node_options,
    ms: u32,
) -> rwal_status {
    boundary(|| {
        let limit = Some(Duration::from_millis(u64::from(ms))).filter(|l| !l.is_zero());
        // SAFETY: forwarded caller contract.
        unsafe { options_mut(opts)? }.sync_stall_limit = limit;
        Ok(())
    })
}

/// The largest snapshot this node accepts from a leader, in bytes (default 1 GiB, above 0): the
/// engine's state, and the membership and members' addresses written before it (4 KiB for a
/// small cluster, at most 36 KiB). A snapshot being received is written to
/// a file in the node's directory as it arrives (it never is whole in memory), so this bounds
/// the disk that file takes beside the log, the latest checkpoint's and the segments, which go
/// only once it is installed. Where the file system says how full it is, a snapshot that does
/// not fit its free space (with room for one more log segment) is refused at its first chunk,
/// before anything is written, and the leader tries again later; a disk that fills up while
/// the bytes arrive drops the stream, with the same outcome. A stream that starts over resumes
/// where this node holds the bytes, while it keeps them (a part is kept until no chunk has come
/// for twice this node's snapshot timeout, `rwal_node_options_set_snapshot_timeout_ms`); a
/// restart of this node starts it from the beginning, and a file a crash left is removed at the next open. A snapshot over this limit is refused (an
/// `RWAL_LOG_WARN` line through the log callback for each stream), and a node that can
/// only be caught up by a snapshot (a joining one, one the leader compacted past) stays behind:
/// every member's limit must hold the engine's largest checkpoint.
///
/// # Safety
/// `opts` is live.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_snapshot_bytes_max(
    opts: *mut rwal_node_options,
    bytes: u64,
) -> rwal_status {
    boundary(|| {
        if bytes == 0 {
            return Err(invalid("the largest snapshot must be above 0 bytes"));
        }
        // SAFETY: forwarded caller contract.
        unsafe { options_mut(opts)? }.snapshot_bytes_max = bytes;
        Ok(())
    })
}

/// How long, in milliseconds, a snapshot stream to a follower may go without progress before
/// the leader abandons it and starts another (above 0; default 50 ticks, 500 ms at the default
/// tick; rounded up to whole ticks). A link that carries less than about a third of the
/// socket's send buffer in that time stalls every stream (docs/replication.md section 4.1):
/// raise it for slow links, on every member (any may lead, and a follower gives up a stream
/// that stays silent for twice its own timeout).
///
/// # Safety
/// `opts` is live.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_snapshot_timeout_ms(
    opts: *mut rwal_node_options,
    ms: u32,
) -> rwal_status {
    boundary(|| {
        if ms == 0 {
            return Err(invalid("the snapshot timeout must be at least 1 ms"));
        }
        // SAFETY: forwarded caller contract.
        unsafe { options_mut(opts)? }.snapshot_timeout = Some(Duration::from_millis(u64::from(ms)));
        Ok(())
    })
}

/// The engine's callbacks and the `userdata` they are given. `apply`, `snapshot` and `restore`
/// go together: all three, or none for a node without an engine (whose state is then empty;
/// `RWAL_ERR_INVALID_ARGUMENT` otherwise, since a checkpoint taken without `snapshot` would seed
/// followers with nothing and one not restored would leave the engine behind its log);
/// `leader` may be NULL. They are called
/// one at a time, never concurrently with each other: during `rwal_node_open` on its caller's
/// thread (restoring the engine), then on the node's own thread. `apply` for each committed user
/// record in LSN order, `restore` at open and when a snapshot arrives, `snapshot` when the node
/// needs a checkpoint to seed a follower, `leader` on leader changes. They must not call
/// `rwal_node_*` functions that wait for the node (propose, wait, read barrier, membership,
/// leadership transfer, checkpoint, close) nor compact or a node reader: those would wait
/// for the thread they run on, or run in the middle of its round. Propose, wait (even for a
/// committed LSN), read barrier, membership, leadership transfer, checkpoint, compact and
/// close return `RWAL_ERR_INVALID_ARGUMENT` there instead (close then closes nothing); a node
/// reader read from `restore` returns `RWAL_ERR_INVALID_ARGUMENT` too.
/// `userdata` must stay valid until `rwal_node_close` returns. Nothing may unwind out of a
/// callback: a C++ exception or a `longjmp` crossing back into rwal is undefined behaviour
/// (catch everything and return nonzero instead).
///
/// # Safety
/// `opts` is live; the callbacks are NULL or valid functions.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_options_set_callbacks(
    opts: *mut rwal_node_options,
    apply: rwal_apply_fn,
    snapshot: rwal_snapshot_fn,
    restore: rwal_restore_fn,
    leader: rwal_leader_fn,
    userdata: *mut c_void,
) -> rwal_status {
    boundary(|| {
        let given = [apply.is_some(), snapshot.is_some(), restore.is_some()];
        if given.contains(&true) && given.contains(&false) {
            let missing: Vec<&str> = ["apply", "snapshot", "restore"]
                .into_iter()
                .zip(given)
                .filter(|(_, given)| !given)
                .map(|(name, _)| name)
                .collect();
            return Err(invalid(format!(
                "the engine's apply, snapshot and restore callbacks go together; {} {} NULL",
                missing.join(" and "),
                if missing.len() == 1 { "is" } else { "are" }
            )));
        }
        // SAFETY: forwarded caller contract.
        unsafe { options_mut(opts)? }.callbacks = Callbacks {
            apply,
            snapshot,
            restore,
            leader,
            userdata,
        };
        Ok(())
    })
}

/// Appends `len` bytes to the snapshot being taken (copied). Only inside a snapshot callback,
/// on the callback's own thread, one call at a time (the sink is not shared between threads).
/// `RWAL_ERR_INVALID_ARGUMENT` after `rwal_snapshot_sink_set_bytes` on the same sink.
///
/// # Safety
/// `sink` is the callback's sink; `data` has `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rwal_snapshot_sink_write(
    sink: *mut rwal_snapshot_sink,
    data: *const u8,
    len: usize,
) -> rwal_status {
    boundary(|| {
        non_null(sink, "sink")?;
        // SAFETY: the sink of the running callback (the caller's contract).
        let sink = unsafe { &mut *sink };
        let written = if sink.lent.is_some() {
            Err(invalid(
                "sink: the state was handed over with rwal_snapshot_sink_set_bytes",
            ))
        } else {
            sink.written = true;
            // SAFETY: forwarded caller contract.
            unsafe { bytes(data, len, "data") }.map(|data| sink.bytes.extend_from_slice(data))
        };
        if written.is_err() {
            sink.failed = true;
        }
        written
    })
}

/// Hands the snapshot being taken over as the `len` bytes at `data`, without a copy: they must
/// stay readable and unchanged until the node calls `release(release_userdata)` (NULL: no
/// call), which it does exactly once, on one of its threads (see `rwal_release_fn` for what it
/// may do there), after a thread of its own has read them into the checkpoint's file, or when
/// the snapshot is abandoned (the callback returns non-zero, or an install comes first; a
/// close waits for a checkpoint already started to be written). A read-only mapping of a
/// file the engine wrote and no longer changes will do, unmapped by `release`: a state of any
/// size is then written without being held in memory. `release` is not called when this
/// fails. Only inside a snapshot callback, on its thread, once, and not after
/// `rwal_snapshot_sink_write` (`RWAL_ERR_INVALID_ARGUMENT`, and the snapshot is abandoned).
///
/// # Safety
/// `sink` is the callback's sink; `data` has `len` readable bytes until the release;
/// `release`, if not NULL, may be called with `release_userdata` from any of the node's
/// threads.
#[no_mangle]
pub unsafe extern "C" fn rwal_snapshot_sink_set_bytes(
    sink: *mut rwal_snapshot_sink,
    data: *const u8,
    len: usize,
    release: rwal_release_fn,
    release_userdata: *mut c_void,
) -> rwal_status {
    boundary(|| {
        non_null(sink, "sink")?;
        // SAFETY: the sink of the running callback (the caller's contract).
        let sink = unsafe { &mut *sink };
        let refused = if sink.lent.is_some() {
            Some("the state was already handed over with rwal_snapshot_sink_set_bytes")
        } else if sink.written {
            Some("the state is being written with rwal_snapshot_sink_write")
        } else if data.is_null() && len > 0 {
            Some("data is NULL with len above 0")
        } else {
            None
        };
        if let Some(reason) = refused {
            sink.failed = true;
            return Err(invalid(format!("sink: {reason}")));
        }
        sink.lent = Some(LentState {
            data,
            len,
            at: 0,
            release,
            release_userdata,
        });
        Ok(())
    })
}

/// Opens the node: its log (restoring the engine through `restore` and `apply`), its network
/// and its thread. `*node_out` is the handle; close it with `rwal_node_close`. Blocks for
/// recovery, which it reports to the log callback as `rwal_open` does. The options may be
/// freed afterwards.
///
/// # Safety
/// `opts` is live options; `node_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_open(
    opts: *const rwal_node_options,
    node_out: *mut *mut rwal_node,
) -> rwal_status {
    boundary(|| {
        non_null(opts, "opts")?;
        non_null(node_out, "node_out")?;
        // SAFETY: live options (the caller's contract).
        let opts = unsafe { &*opts };
        let id = opts.id;
        let network = PeerNetwork::start(
            PeerConfig {
                id,
                cluster_id: opts.cluster_id,
                secret: opts.secret.clone(),
                listen: opts.listen,
                peers: opts.peers.clone(),
            },
            Arc::new(move |line: &str| crate::logging::emit_info(&format!("node {id}: {line}"))),
        )?;
        let bootstrap = if opts.join {
            Bootstrap::Join
        } else {
            Bootstrap::Voters(opts.voters.clone())
        };
        let mut options = NodeOptions::new(id, &opts.dir, bootstrap);
        options.wal = opts.wal.clone();
        options.tick_interval = opts.tick;
        options.sync_stall_limit = opts.sync_stall_limit;
        options.config.snapshot_bytes_max = opts.snapshot_bytes_max;
        options.snapshot_timeout = opts.snapshot_timeout;
        options.log = Some(Arc::new(move |severity: Severity, line: &str| {
            crate::logging::emit_node(severity, &format!("node {id}: {line}"))
        }));
        let node = Node::open(options, Engine(opts.callbacks), network.transport())?;
        crate::logging::opened(node.log_dir(), node.recovery_report());
        network.attach(node.inbox());
        let handle = rwal_node {
            node,
            network,
            peer_changes: Mutex::new(HashMap::new()),
        };
        // SAFETY: checked non-NULL.
        unsafe { put(node_out, Box::into_raw(Box::new(handle))) };
        Ok(())
    })
}

/// `RWAL_ERR_INVALID_ARGUMENT` for `call`, a stop of the node, on the node's own thread (from a
/// callback): it would wait for itself. Checked before `Node::shut_down`, which on that thread
/// would still ask the thread to stop.
fn refuse_on_its_thread(handle: &rwal_node, call: &str) -> Result<(), Failure> {
    // Not in a child forked from one of the node's callbacks, whose one thread inherited the
    // node thread's identity: there the node's thread does not exist, and the call goes on to
    // the refusal (or, for a close, the freeing) every forked child gets.
    if handle.node.on_its_thread() && handle.node.check_opener_process(call).is_ok() {
        return Err(invalid(format!(
            "{call} was called on the node's own thread (from a callback), where it would wait \
             for itself: the node stays open and goes on"
        )));
    }
    Ok(())
}

/// `NotLeader` unless the published status says this node (`me`) leads.
fn not_leading(leader: Option<NodeId>, me: NodeId) -> Option<rwal_replication::Error> {
    (leader != Some(me)).then_some(rwal_replication::Error::NotLeader { leader })
}

/// Stops the node as `rwal_node_close` does (its thread, then its log's final sync and
/// watermark; `RWAL_ERR_REPLICATION` if the node had failed) without freeing the handle, for an
/// engine whose own threads may be blocked in the node when it stops: every call waiting on the
/// node (`rwal_node_propose`, `rwal_node_propose_and_wait`, `rwal_node_wait_committed`,
/// `rwal_node_read_barrier`, `rwal_node_transfer_leadership`, ...) returns `RWAL_ERR_CLOSED`
/// (a waiter whose commit was published before the stop may still get `RWAL_OK`), and so does
/// every such call made after it, but `rwal_node_wait_committed` for an entry whose commit was
/// published before the stop, which returns `RWAL_OK` (or `RWAL_ERR_SUPERSEDED`), and the
/// waits for a commit (`rwal_node_wait_committed`, `rwal_node_propose_and_wait`'s) after the
/// engine's failure, which return `RWAL_ERR_REPLICATION` (proposals and other requests return
/// `RWAL_ERR_CLOSED` there too: see `rwal_apply_fn`). Its network stays until `rwal_node_close`
/// (the listening port bound; frames from peers dropped). Join those threads, then free the
/// handle with `rwal_node_close`, which then returns only the node's failure, if it had one.
/// Calling it again, even from several threads at once, does nothing more; each call blocks
/// until the node's thread has stopped and its log is closed.
/// `RWAL_ERR_INVALID_ARGUMENT` on the node's own thread (from a callback), where it would wait
/// for itself: nothing is stopped.
///
/// # Safety
/// `node` is a live handle from `rwal_node_open`; other threads may be using it, and may go on
/// until they are done with it: the handle stays valid until `rwal_node_close`.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_shutdown(node: *const rwal_node) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let handle = unsafe { self::node(node)? };
        refuse_on_its_thread(handle, "rwal_node_shutdown")?;
        handle.node.shut_down()?;
        Ok(())
    })
}

/// Stops the node's thread and network and closes its log (its final sync and watermark;
/// `RWAL_ERR_REPLICATION` if the node had failed, with the failure in the message); frees the
/// handle, which must not be used again (even when an error is returned), except after
/// `RWAL_ERR_INVALID_ARGUMENT`: called from a callback, on the node's own thread, it closes
/// nothing and the handle stays. In a child forked from the node's process it stops and
/// closes nothing (the node is that process's), frees the child's copy of the handle and
/// returns `RWAL_ERR_INVALID_ARGUMENT`. NULL is a no-op.
/// Blocks until the thread has stopped. Readers still open get `RWAL_ERR_CLOSED` and must
/// still be freed; the directory is released at once, even while they are. A close that
/// returns `RWAL_ERR_PANIC` (a bug in rwal) while it stops the node leaves the handle
/// allocated, not to be used again: its thread may not have stopped, and may still call the
/// callbacks with the handle, so the handle, the log and its directory stay held until the
/// process ends.
///
/// # Safety
/// `node` is NULL or a handle from `rwal_node_open`, used by no other thread during or after,
/// except by the node's own callbacks, which may go on calling functions on it (those that do
/// not wait for the node's thread) until its thread stops. Called from one of its callbacks,
/// it touches nothing.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_close(node: *mut rwal_node) -> rwal_status {
    boundary(|| {
        if node.is_null() {
            return Ok(());
        }
        // Closed there, the handle would be freed while the thread goes on calling the
        // callbacks with `userdata` the caller may free once this returns.
        // SAFETY: from rwal_node_open, live until freed below.
        refuse_on_its_thread(unsafe { &*node }, "rwal_node_close")?;
        // Stopped in place first: until its thread has stopped, the node's own callbacks may
        // still call functions on this handle (a status, the leader), so it is neither moved
        // nor freed before.
        // SAFETY: from rwal_node_open, live until freed below.
        let closed = unsafe { &*node }.node.shut_down();
        // SAFETY: from rwal_node_open, freed only here; its thread has stopped.
        let handle = unsafe { Box::from_raw(node) };
        let rwal_node { node, network, .. } = *handle;
        drop(node);
        drop(network);
        closed?;
        Ok(())
    })
}

/// The address the node accepts peers on, as "IP:PORT" with a NUL, in `buf` (`cap` bytes);
/// `*len_out` is its length without the NUL. `RWAL_ERR_BUFFER_TOO_SMALL` if it does not fit,
/// with `*len_out` the bytes it needs, its NUL included.
///
/// # Safety
/// `node` is live; `buf` has `cap` writable bytes; `len_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_local_addr(
    node: *const rwal_node,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let addr = unsafe { self::node(node)? }
            .network
            .local_addr()
            .to_string();
        // SAFETY: forwarded caller contract.
        unsafe { put_text(&addr, buf, cap, len_out) }
    })
}

unsafe fn put_text(
    text: &str,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> Result<(), Failure> {
    non_null(len_out, "len_out")?;
    if text.len() + 1 > cap {
        // The size needed, its NUL included (a buffer of `*len_out` bytes then fits), the one
        // output of this error (`buf` may be NULL with `cap` 0).
        // SAFETY: checked non-NULL.
        unsafe { put(len_out, text.len() + 1) };
        return Err(Failure {
            status: RWAL_ERR_BUFFER_TOO_SMALL,
            message: format!("{} bytes and a NUL do not fit in {cap}", text.len()),
        });
    }
    non_null(buf, "buf")?;
    // SAFETY: checked non-NULL.
    unsafe { put(len_out, text.len()) };
    // SAFETY: `cap >= len + 1` writable bytes at `buf`.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

/// Adds a peer (a node joining) or changes a peer's address, at run time. A peer added again
/// at the address it has keeps its connection and what is queued for it.
///
/// # Safety
/// `node` is live; `addr` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_add_peer(
    node: *mut rwal_node,
    id: u64,
    addr: *const c_char,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let at = unsafe { address(addr, "addr")? };
        // SAFETY: forwarded caller contract.
        let node = unsafe { self::node(node)? };
        let mut changes = node.peer_changes.lock();
        node.network.add_peer(id, at)?;
        rwal_node::peer_changed(&mut changes, id);
        Ok(())
    })
}

/// Proposes a record on the leader; writes the LSN and epoch it will have if it commits (wait
/// with `rwal_node_wait_committed`). `RWAL_ERR_NOT_LEADER` on a follower (`rwal_node_leader`
/// names the leader); `RWAL_ERR_BUSY` when too much waits to be committed;
/// `RWAL_ERR_INVALID_ARGUMENT` for a record over 16 MiB or over what one segment of the
/// node's log holds. Thread-safe; many threads' proposals share one consensus round and one
/// sync. Blocks until the node's thread takes the proposal, without a timeout (a callback
/// that does not return, or a disk that hangs a sync on that thread, holds it there);
/// `rwal_node_propose_and_wait` has one.
///
/// # Safety
/// `node` is live; `data` has `len` readable bytes (NULL if 0); the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_propose(
    node: *mut rwal_node,
    data: *const u8,
    len: usize,
    lsn_out: *mut u64,
    epoch_out: *mut u64,
) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        non_null(epoch_out, "epoch_out")?;
        // SAFETY: forwarded caller contract.
        let data = unsafe { bytes(data, len, "data")? };
        // SAFETY: forwarded caller contract.
        let (lsn, epoch) = unsafe { self::node(node)? }.node.propose(data)?;
        // SAFETY: checked non-NULL.
        unsafe {
            put(lsn_out, lsn);
            put(epoch_out, epoch);
        }
        Ok(())
    })
}

/// Waits up to `timeout_ms` until the entry `lsn` of `epoch` is committed by a quorum.
/// `RWAL_ERR_SUPERSEDED` once another entry is committed at `lsn` (this one never will be);
/// `RWAL_ERR_TIMEOUT` if neither happened; `RWAL_ERR_CLOSED` or `RWAL_ERR_REPLICATION` if this
/// node stopped before it saw the entry committed (the other members may still commit it; a
/// commit it saw before it stopped is still `RWAL_OK`, unless the log was poisoned meanwhile:
/// `RWAL_ERR_POISONED` says nothing about the entry either); `RWAL_ERR_COMPACTED` if `lsn` is
/// committed but was compacted away before its epoch could be read (whether it is this entry
/// is then unknown); `RWAL_ERR_INVALID_ARGUMENT` when called from one of the node's callbacks,
/// where it would wait for itself. A `timeout_ms` of 0 looks once without waiting. Blocks;
/// thread-safe.
///
/// # Safety
/// `node` is live.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_wait_committed(
    node: *mut rwal_node,
    lsn: u64,
    epoch: u64,
    timeout_ms: u32,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let node = unsafe { self::node(node)? };
        Ok(node
            .node
            .wait_committed(lsn, epoch, Duration::from_millis(u64::from(timeout_ms)))?)
    })
}

/// Proposes a record on the leader and waits up to `timeout_ms` until a quorum has committed
/// it; writes its LSN and epoch. The same as `rwal_node_propose` then
/// `rwal_node_wait_committed`, with one wake-up of the calling thread instead of two (the
/// node's thread registers the caller for the commit of the LSN it assigns). Errors as theirs.
/// `RWAL_ERR_NOT_LEADER`, `RWAL_ERR_INVALID_ARGUMENT` and `RWAL_ERR_BUSY` mean the record was
/// not proposed, and `RWAL_ERR_SUPERSEDED` that it never commits. The outputs are written
/// whatever the status (unless one of them is NULL): the record's LSN and epoch if the node's
/// thread proposed it, or 0 and 0 if it did not: it was not proposed, and never will be. A
/// proposed record may still commit after `RWAL_ERR_TIMEOUT` (`rwal_node_wait_committed`
/// waits on), and after `RWAL_ERR_CLOSED` (the node stopped while the caller waited),
/// `RWAL_ERR_REPLICATION` or an I/O error, on the other members or at this node's next open:
/// its LSN and epoch are how to find out. After `RWAL_ERR_PANIC`, or an `RWAL_ERR_REPLICATION`
/// whose message says the node's thread panicked while proposing, zeros mean "unknown", not
/// "not proposed". A `timeout_ms` of 0 gives up unless the node's thread has taken the
/// record by the time the caller looks (it almost never has: `RWAL_ERR_TIMEOUT` and zeros,
/// not proposed); to propose without waiting, call `rwal_node_propose`. Blocks; thread-safe.
///
/// # Safety
/// `node` is live; `data` has `len` readable bytes (NULL if 0); the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_propose_and_wait(
    node: *mut rwal_node,
    data: *const u8,
    len: usize,
    timeout_ms: u32,
    lsn_out: *mut u64,
    epoch_out: *mut u64,
) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        non_null(epoch_out, "epoch_out")?;
        // SAFETY: checked non-NULL. Zeros until the record is proposed: an argument refused
        // below leaves them so.
        unsafe {
            put(lsn_out, 0);
            put(epoch_out, 0);
        }
        // SAFETY: forwarded caller contract.
        let data = unsafe { bytes(data, len, "data")? };
        // SAFETY: forwarded caller contract.
        let node = unsafe { self::node(node)? };
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let tracked = node.node.propose_and_wait_tracked(data, timeout);
        // Not proposed (refused, or not taken in time): nothing to wait on.
        let (lsn, epoch) = tracked.proposed.unwrap_or((0, 0));
        // SAFETY: checked non-NULL.
        unsafe {
            put(lsn_out, lsn);
            put(epoch_out, epoch);
        }
        tracked.outcome?;
        Ok(())
    })
}

/// The leader this node knows of, or while this node hands its leadership over, the node it
/// hands it to (the one its `RWAL_ERR_NOT_LEADER` names): where proposals go. Its id in
/// `*leader_out` (0 if none) and, if it is this node or a peer, its peer address as "IP:PORT"
/// with a NUL in `buf` (empty if unknown: the address nodes dial each other at, not where your
/// engine's clients connect; map the id to that yourself), its length without the NUL in
/// `*len_out`. For this node itself it is the address it listens on, which is `0.0.0.0:PORT`
/// (or `[::]:PORT`) if it was asked to listen on every interface: no address to dial.
/// `RWAL_ERR_BUFFER_TOO_SMALL` if the address does not fit, with `*len_out` the bytes it needs,
/// its NUL included, and `*leader_out` written too: `buf` NULL with `cap` 0 asks for the id and
/// the size alone.
///
/// # Safety
/// `node` is live; `buf` has `cap` writable bytes; the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_leader(
    node: *const rwal_node,
    leader_out: *mut u64,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> rwal_status {
    boundary(|| {
        non_null(leader_out, "leader_out")?;
        // Checked before anything is written: outputs change only on success (or with
        // `RWAL_ERR_BUFFER_TOO_SMALL`, as documented).
        non_null(len_out, "len_out")?;
        if cap > 0 {
            non_null(buf, "buf")?;
        }
        // SAFETY: forwarded caller contract.
        let node = unsafe { self::node(node)? };
        let leader = node.node.proposals_go_to();
        let addr = match leader {
            Some(id) if id == node.node.id() => node.network.local_addr().to_string(),
            Some(id) => node
                .network
                .peer_addr(id)
                .map(|addr| addr.to_string())
                .unwrap_or_default(),
            None => String::new(),
        };
        // SAFETY: checked non-NULL. Written whether or not the address fits.
        unsafe { put(leader_out, leader.unwrap_or(0)) };
        // SAFETY: forwarded caller contract.
        unsafe { put_text(&addr, buf, cap, len_out) }
    })
}

/// The node's status.
///
/// # Safety
/// `node` is live; `status_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_status_get(
    node: *const rwal_node,
    status_out: *mut rwal_node_status,
) -> rwal_status {
    boundary(|| {
        non_null(status_out, "status_out")?;
        // SAFETY: forwarded caller contract.
        let s = unsafe { self::node(node)? }.node.status();
        let status = rwal_node_status {
            id: s.id,
            role: match s.role {
                Role::Follower => RWAL_ROLE_FOLLOWER,
                Role::Candidate => RWAL_ROLE_CANDIDATE,
                Role::Leader => RWAL_ROLE_LEADER,
            },
            term: s.term,
            leader: s.leader.unwrap_or(0),
            commit_lsn: s.commit_lsn,
            applied_lsn: s.applied_lsn,
            first_lsn: s.first_lsn,
            last_lsn: s.last_lsn,
            voters: s.membership.voters.len() as u32,
            learners: s.membership.learners.len() as u32,
        };
        // SAFETY: checked non-NULL.
        unsafe { put(status_out, status) };
        Ok(())
    })
}

/// The members of the membership this node has applied: the voters' ids, ascending, then the
/// learners', ascending, `*voters_out` of them voters, `*len_out` in all (the counts of
/// `rwal_node_status`, with the ids). `RWAL_ERR_BUFFER_TOO_SMALL` if `cap` ids do not fit them
/// all, with `*len_out` the number needed and nothing else written: `ids` NULL with `cap` 0
/// asks for the count. A membership change shows here once the status's `applied_lsn` reaches
/// its LSN (whether it was made at all: `rwal_node_wait_committed` with its LSN and epoch; a
/// later change may have changed the members again).
/// Thread-safe; may be called from a callback.
///
/// # Safety
/// `node` is live; `ids` has `cap` writable `uint64_t`s (NULL if 0); the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_members(
    node: *const rwal_node,
    ids: *mut u64,
    cap: usize,
    len_out: *mut usize,
    voters_out: *mut usize,
) -> rwal_status {
    boundary(|| {
        non_null(len_out, "len_out")?;
        non_null(voters_out, "voters_out")?;
        if cap > 0 {
            non_null(ids, "ids")?;
        }
        // SAFETY: forwarded caller contract.
        let membership = unsafe { self::node(node)? }.node.status().membership;
        let mut voters = membership.voters.clone();
        voters.sort_unstable();
        let mut learners = membership.learners.clone();
        learners.sort_unstable();
        let all: Vec<u64> = voters.iter().chain(&learners).copied().collect();
        // SAFETY: forwarded caller contract; `len_out` checked non-NULL.
        unsafe {
            put_slice(&all, ids, cap, len_out, || {
                format!("{} member ids do not fit in {cap}", all.len())
            })?;
            put(voters_out, voters.len());
        }
        Ok(())
    })
}

/// A linearizable read point: waits (up to `timeout_ms`) until the leader has confirmed with
/// a quorum that it still leads and this node has applied everything committed before the
/// call; writes that LSN. Reads of the engine's state then see every write acknowledged before
/// the call. Works on followers. It waits for a round trip to a quorum: a `timeout_ms` of 0
/// gives `RWAL_ERR_TIMEOUT`. `RWAL_ERR_BUSY` at once while as many requests other than
/// proposals as the node's pending-proposal limit wait for its thread (a request that timed
/// out stays queued until the thread takes it). Blocks; thread-safe.
///
/// # Safety
/// `node` is live; `lsn_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_read_barrier(
    node: *mut rwal_node,
    timeout_ms: u32,
    lsn_out: *mut u64,
) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        // SAFETY: forwarded caller contract.
        let node = unsafe { self::node(node)? };
        let lsn = node
            .node
            .read_barrier(Duration::from_millis(u64::from(timeout_ms)))?;
        // SAFETY: checked non-NULL.
        unsafe { put(lsn_out, lsn) };
        Ok(())
    })
}

/// Proposes a membership change on the leader (one at a time), which takes effect once
/// committed. For an addition, `addr` ("IP:PORT", or NULL if this node already knows the peer:
/// `RWAL_ERR_INVALID_ARGUMENT` if it does not) is the node's peer address, added to this node's
/// peers (and taken back if the proposal fails); for a removal it is ignored. Every node
/// forgets a removed member's address and connections once it applies the removal. The
/// change carries an added member's address (the one given, or the one this node knew): every
/// member that applies it and has no address for that node dials it there, so whichever
/// leads later reaches it. A member that has an address for it keeps its own. The checkpoints
/// carry the addresses too: a node seeded by a snapshot, or restarted after a checkpoint past
/// the change, learns them from it. A joiner still needs the members' addresses given (it
/// reaches none before its first snapshot), and a member added without an address is known
/// only where `rwal_node_add_peer` gives it. Before 2026-12-05 addresses were not
/// replicated at all. Nodes of before then apply such a change and ignore the address. A
/// change of nothing, or making a learner of a voter, is `RWAL_ERR_INVALID_ARGUMENT`. Writes
/// the LSN and epoch the change entry will have if it commits, as `rwal_node_propose` does:
/// `rwal_node_wait_committed` with them returns `RWAL_OK` once the change is made, and
/// `RWAL_ERR_SUPERSEDED` if a new leader's entry replaced it (nothing changed; it may be asked
/// again). A node has taken it once its status's `applied_lsn` reaches the LSN;
/// `rwal_node_members` shows the members as of then or later. `RWAL_ERR_NOT_LEADER` on a node
/// that does not lead (`rwal_node_leader` names the leader, 0 if none is known), before any
/// address is set. `RWAL_ERR_BUSY` for what a later call may be granted, nothing proposed,
/// the message saying which: another change proposed and not applied yet (one at a time), or
/// `RWAL_MEMBERSHIP_ADD_VOTER` for a learner that has not replicated up to the commit LSN yet,
/// or a promotion or removal that would leave voters of which no majority was heard from
/// within the last election timeout (the cluster could commit nothing until they answer);
/// ask again later (until 2026-12-07 the first two were `RWAL_ERR_INVALID_ARGUMENT`, which now
/// means only what asking again cannot change: also an `addr` that is not an IP address and a
/// port). Blocks; thread-safe.
///
/// # Safety
/// `node` is live; `addr` is NULL or NUL-terminated; the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_change_membership(
    node: *mut rwal_node,
    change: rwal_membership_change,
    id: u64,
    addr: *const c_char,
    lsn_out: *mut u64,
    epoch_out: *mut u64,
) -> rwal_status {
    boundary(|| {
        non_null(lsn_out, "lsn_out")?;
        non_null(epoch_out, "epoch_out")?;
        // SAFETY: forwarded caller contract.
        let handle = unsafe { self::node(node)? };
        let change = match change {
            RWAL_MEMBERSHIP_ADD_VOTER => MembershipChange::AddVoter(id),
            RWAL_MEMBERSHIP_ADD_LEARNER => MembershipChange::AddLearner(id),
            RWAL_MEMBERSHIP_REMOVE => MembershipChange::Remove(id),
            other => return Err(invalid(format!("unknown membership change {other}"))),
        };
        // From a callback, on the node's own thread: the node refuses it, naming why.
        if handle.node.on_its_thread() {
            handle.node.change_membership(change)?;
        }
        let adds_a_peer = matches!(
            change,
            MembershipChange::AddVoter(_) | MembershipChange::AddLearner(_)
        ) && id != handle.node.id();
        // Checked before anything is proposed: a bad address changes nothing.
        let peer = if adds_a_peer && !addr.is_null() {
            // SAFETY: forwarded caller contract.
            Some(unsafe { address(addr, "addr")? })
        } else {
            None
        };
        // Refusals the published status already shows are made before the network is touched
        // (a changed address drops the peer's connection and what was queued for it): this
        // node does not lead (another does, or none is known: a follower cut off from the
        // others went on to change the address until 2026-12-07, found by review), or the
        // membership does not allow the change. The node checks again when it proposes, with
        // what only it sees (a change pending, a learner behind), and the address is then put
        // back.
        let status = handle.node.status();
        // A leader handing its leadership over refuses naming its successor, as the node
        // would after the address was changed (until 2026-12-07 the address was changed
        // first, dropping the peer's connection for nothing: found by review).
        let leads = status.handing_over_to.or(status.leader);
        if let Some(refusal) = not_leading(leads, handle.node.id()) {
            return Err(refusal.into());
        }
        if let Some(refusal) = change.refusal_in(&status.membership) {
            return Err(invalid(refusal));
        }
        // The address first, so that nothing can fail once the change is proposed; the earlier
        // one restored if the proposal is refused, unless another call set or relied on it
        // meanwhile (a concurrent `rwal_node_add_peer`, or a second change adding the same
        // node, which must keep its address). An unchanged address keeps its connection.
        let (known, adding, count) = {
            let mut changes = handle.peer_changes.lock();
            let known = handle.network.peer_addr(id);
            if adds_a_peer && peer.is_none() && known.is_none() {
                // The change would commit, and this node could not reach the new member to
                // send it the log.
                return Err(invalid(format!(
                    "addr is NULL, and node {id} has no known address: give it here or with \
                     rwal_node_add_peer"
                )));
            }
            let adding = peer.filter(|at| known != Some(*at));
            if let Some(at) = adding {
                handle.network.add_peer(id, at)?;
            }
            // Counted for every addition, the address given or not: a second change adding
            // the same node without one carries the address this call set, and relies on it
            // as much (counted only with an address until 2026-12-07, a refusal of the first
            // call took the address back from under the second, found by review).
            let count = adds_a_peer.then(|| rwal_node::peer_changed(&mut changes, id));
            (known, adding, count)
        };
        // The change carries the address this node will dial the new member at (the one given,
        // or the one it knew): every member learns it as it applies the change.
        let carried = if adds_a_peer {
            peer.or(known).map(|at| at.to_string())
        } else {
            None
        };
        let (lsn, epoch) = handle
            .node
            .change_membership_at(change, carried.as_deref())
            .inspect_err(|_| {
                let changes = handle.peer_changes.lock();
                if adding.is_none() || changes.get(&id).copied() != count {
                    return;
                }
                match known {
                    Some(before) => {
                        let _ = handle.network.add_peer(id, before);
                    }
                    None => {
                        handle.network.remove_peer(id);
                    }
                }
            })?;
        // SAFETY: checked non-NULL.
        unsafe {
            put(lsn_out, lsn);
            put(epoch_out, epoch);
        }
        Ok(())
    })
}

/// Hands leadership to voter `to` (0: the live voter with the most replicated log), e.g.
/// before closing this node, and waits up to `timeout_ms` until this node knows the new
/// leader; writes its id. Meanwhile proposals here get `RWAL_ERR_NOT_LEADER` naming it.
/// `RWAL_ERR_NOT_LEADER` on a follower, `RWAL_ERR_INVALID_ARGUMENT` if `to` is this node or
/// not a voter, `RWAL_ERR_TIMEOUT` if leadership did not move in time (raft abandons a
/// transfer after an election timeout; this node then leads on; a transfer still pending may
/// also complete after the timeout). The refusals come from the node's thread: with a
/// `timeout_ms` shorter than it takes to answer (0 in particular) the call returns
/// `RWAL_ERR_TIMEOUT` instead, and on a leader the transfer asked for may still happen.
/// Blocks; thread-safe.
///
/// # Safety
/// `node` is live; `leader_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_transfer_leadership(
    node: *mut rwal_node,
    to: u64,
    timeout_ms: u32,
    leader_out: *mut u64,
) -> rwal_status {
    boundary(|| {
        non_null(leader_out, "leader_out")?;
        // SAFETY: forwarded caller contract.
        let node = unsafe { self::node(node)? };
        let to = (to != 0).then_some(to);
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let leader = node.node.transfer_leadership(to, timeout)?;
        // SAFETY: checked non-NULL.
        unsafe { put(leader_out, leader) };
        Ok(())
    })
}

/// Writes a checkpoint at `lsn` (at most the applied LSN) holding the engine's state as of it
/// (`len` bytes, which need not be in memory: a read-only mapping of a file the engine wrote
/// will do); a follower behind the compacted log is sent it. Blocks: the node's thread
/// checks `lsn`, then the state is written and synced on the caller's thread; thread-safe. A
/// node never checkpoints by itself: call it now and then (every N applied records, say), or
/// the log grows without end and every open replays it all through `apply`; `rwal_node_compact` then removes what the checkpoint covers. `state` must
/// be the state with exactly the records up to `lsn` applied: copy both under the lock your
/// `apply` callback takes, release the lock, then call this (called while holding it, it would
/// wait for the node's thread, which may be waiting for that lock in `apply`).
/// `RWAL_ERR_ABANDONED` if the node began installing a leader's snapshot meanwhile (the
/// checkpoint would describe the log it replaces): nothing was kept, and the node goes on.
///
/// # Safety
/// `node` is live; `state` has `len` readable bytes (NULL if 0).
#[no_mangle]
pub unsafe extern "C" fn rwal_node_checkpoint(
    node: *mut rwal_node,
    lsn: u64,
    state: *const u8,
    len: usize,
) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let state = unsafe { bytes(state, len, "state")? };
        // SAFETY: forwarded caller contract.
        Ok(unsafe { self::node(node)? }.node.checkpoint(lsn, state)?)
    })
}

/// Removes log segments that the latest checkpoint and the followers no longer need (node
/// readers hold nothing back: one that falls behind gets `RWAL_ERR_COMPACTED`).
/// `RWAL_ERR_CLOSED` once the node's thread has stopped; `RWAL_ERR_INVALID_ARGUMENT` from one
/// of the node's callbacks. Blocks; thread-safe.
///
/// # Safety
/// `node` is live.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_compact(node: *mut rwal_node) -> rwal_status {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        unsafe { self::node(node)? }.node.compact()?;
        Ok(())
    })
}

/// Opens a reader over the node's committed records from `from_lsn` (at least its first
/// retained LSN, `rwal_node_status`'s `first_lsn`: 2 in a new cluster, whose LSN 1 is the
/// founding checkpoint; `RWAL_ERR_COMPACTED` below it). It holds nothing between calls: it
/// never holds back compaction or a snapshot install, and gets `RWAL_ERR_COMPACTED` if it falls
/// behind. `RWAL_ERR_NOT_FOUND` past the log's last LSN + 1, `RWAL_ERR_INVALID_ARGUMENT` for
/// LSN 0.
///
/// # Safety
/// `node` is live; `reader_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_reader_open(
    node: *mut rwal_node,
    from_lsn: u64,
    reader_out: *mut *mut rwal_node_reader,
) -> rwal_status {
    boundary(|| {
        non_null(reader_out, "reader_out")?;
        // SAFETY: forwarded caller contract.
        let reader = unsafe { self::node(node)? }.node.reader(from_lsn)?;
        let reader = rwal_node_reader {
            reader,
            current: None,
        };
        // SAFETY: checked non-NULL.
        unsafe { put(reader_out, Box::into_raw(Box::new(reader))) };
        Ok(())
    })
}

/// The next committed record: its LSN, epoch, kind (`RWAL_RECORD_USER` or
/// `RWAL_RECORD_SYSTEM`), and a pointer to its bytes and their length, valid until the next
/// call on this reader or its free. `RWAL_END` at the commit LSN (call again later). While a
/// snapshot install holds the log it waits for the install to end, which runs the restore
/// callback: do not call it holding a lock your restore callback takes, or both wait for good;
/// `rwal_node_reader_next_timeout` bounds the wait. After the install the call says where the
/// reader stands (`RWAL_ERR_COMPACTED` if the snapshot passed it).
/// `RWAL_ERR_INVALID_ARGUMENT` from the restore callback, where the snapshot install holds the
/// log until the callback returns.
///
/// # Safety
/// `reader` is live and used by this thread only; the outputs are writable.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_reader_next(
    reader: *mut rwal_node_reader,
    lsn_out: *mut u64,
    epoch_out: *mut u64,
    kind_out: *mut u32,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> rwal_status {
    // SAFETY: forwarded caller contract.
    unsafe {
        reader_next(
            reader, None, lsn_out, epoch_out, kind_out, data_out, len_out,
        )
    }
}

/// Like `rwal_node_reader_next`, but waits up to `timeout_ms` for the next record to commit:
/// a tailing reader (a change feed, a log shipper), on any member. Milliseconds, as every
/// node call's timeout (`rwal_reader_next_timeout`, the single log's, takes microseconds).
/// `RWAL_ERR_TIMEOUT` if none commits in time, also while a snapshot install holds the log;
/// never `RWAL_END`. The node's close (or `rwal_node_shutdown`) ends the wait with
/// `RWAL_ERR_CLOSED` (a record read in the moment before may still come first; records not
/// read yet are not returned); a node stopped by its engine's failure and not yet closed still
/// gives the records it committed, then `RWAL_ERR_REPLICATION`; a log poisoned by a failed
/// write or sync gives `RWAL_ERR_POISONED` at once. `RWAL_ERR_INVALID_ARGUMENT` from one of the
/// node's callbacks once there is something to wait for (from `restore` at once; with a
/// `timeout_ms` of 0, `RWAL_ERR_TIMEOUT`, the deadline being looked at first): the commit it
/// waits for is that thread's to make. Nothing interrupts it from another thread but the
/// node's close: a consumer that must stop waits in short timeouts. Blocks.
///
/// # Safety
/// As `rwal_node_reader_next`.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_reader_next_timeout(
    reader: *mut rwal_node_reader,
    timeout_ms: u32,
    lsn_out: *mut u64,
    epoch_out: *mut u64,
    kind_out: *mut u32,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> rwal_status {
    let timeout = Some(Duration::from_millis(u64::from(timeout_ms)));
    // SAFETY: forwarded caller contract.
    unsafe {
        reader_next(
            reader, timeout, lsn_out, epoch_out, kind_out, data_out, len_out,
        )
    }
}

/// `rwal_node_reader_next` (`timeout` `None`) and `rwal_node_reader_next_timeout`.
///
/// # Safety
/// As `rwal_node_reader_next`.
unsafe fn reader_next(
    reader: *mut rwal_node_reader,
    timeout: Option<Duration>,
    lsn_out: *mut u64,
    epoch_out: *mut u64,
    kind_out: *mut u32,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> rwal_status {
    let mut end = false;
    let status = boundary(|| {
        non_null(reader, "reader")?;
        for (out, name) in [
            (lsn_out.cast::<u8>(), "lsn_out"),
            (epoch_out.cast(), "epoch_out"),
            (kind_out.cast(), "kind_out"),
            (data_out.cast(), "data_out"),
            (len_out.cast(), "len_out"),
        ] {
            non_null(out, name)?;
        }
        // SAFETY: a live reader used by this thread (the caller's contract).
        let reader = unsafe { &mut *reader };
        reader.current = match timeout {
            Some(timeout) => Some(reader.reader.next_timeout(timeout)?),
            None => reader.reader.next()?,
        };
        let Some(record) = &reader.current else {
            end = true;
            return Ok(());
        };
        // SAFETY: all checked non-NULL; the bytes live in `reader.current` until the next call.
        unsafe {
            put(lsn_out, record.lsn);
            put(epoch_out, record.epoch);
            put(
                kind_out,
                match record.kind {
                    RecordKind::User => RWAL_RECORD_USER,
                    _ => RWAL_RECORD_SYSTEM,
                },
            );
            put(data_out, c_bytes(&record.data));
            put(len_out, record.data.len());
        }
        Ok(())
    });
    if status == crate::status::RWAL_OK && end {
        RWAL_END
    } else {
        status
    }
}

/// Frees a node reader. NULL is a no-op.
///
/// # Safety
/// `reader` is NULL or from `rwal_node_reader_open`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rwal_node_reader_free(reader: *mut rwal_node_reader) {
    // SAFETY: the caller's contract: NULL, or from the matching open or new, not yet freed.
    unsafe { free_boxed(reader) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{RWAL_ERR_INVALID_ARGUMENT, RWAL_OK};
    use std::ffi::CString;

    /// A node that founds a cluster of itself alone, leading once this returns.
    fn open_sole_voter(dir: &std::path::Path) -> *mut rwal_node {
        let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let secret = [7u8; 32];
        let mut opts = std::ptr::null_mut();
        let mut node = std::ptr::null_mut();
        // SAFETY: valid C strings and buffers, options used before they are freed.
        unsafe {
            assert_eq!(rwal_node_options_new(1, path.as_ptr(), &mut opts), RWAL_OK);
            assert_eq!(
                rwal_node_options_set_cluster(opts, 5, secret.as_ptr(), secret.len()),
                RWAL_OK
            );
            assert_eq!(rwal_node_options_set_voters(opts, &1, 1, false), RWAL_OK);
            assert_eq!(rwal_node_open(opts, &mut node), RWAL_OK);
            rwal_node_options_free(opts);
        }
        // SAFETY: the handle just opened.
        let handle = unsafe { &*node };
        let (status, leads) = handle
            .node
            .wait_status(Duration::from_secs(30), |s| s.role == Role::Leader);
        assert!(leads, "{status:?}");
        node
    }

    /// Log options whose backend was not chosen leave a node on its default backend; one
    /// chosen is taken.
    #[test]
    fn log_options_without_a_backend_keep_the_nodes() {
        let dir = CString::new("/nonexistent/rwal-ffi-log-options").unwrap();
        for (chosen, expected) in [
            (None, "Staged"),
            (Some(crate::options::RWAL_BACKEND_MMAP), "Mmap"),
        ] {
            let mut opts = std::ptr::null_mut();
            let log_opts = crate::options::rwal_options_new();
            // SAFETY: options made here, used before they are freed.
            unsafe {
                assert_eq!(rwal_node_options_new(1, dir.as_ptr(), &mut opts), RWAL_OK);
                assert_eq!(
                    crate::options::rwal_options_set_segment_size(log_opts, 1 << 20),
                    RWAL_OK
                );
                if let Some(backend) = chosen {
                    assert_eq!(
                        crate::options::rwal_options_set_backend(log_opts, backend),
                        RWAL_OK
                    );
                }
                assert_eq!(rwal_node_options_set_log_options(opts, log_opts), RWAL_OK);
                let wal = format!("{:?}", (*opts).wal);
                assert!(wal.contains(&format!("backend: {expected}")), "{wal}");
                assert!(wal.contains("segment_bytes: 1048576"), "{wal}");
                crate::options::rwal_options_free(log_opts);
                rwal_node_options_free(opts);
            }
        }
    }

    /// A membership change is refused with `NotLeader` unless this node leads, whoever else
    /// does or none: a follower that knows no leader changed the peer's address first (and
    /// dropped its connection and queue) before the node refused.
    #[test]
    fn only_a_leading_node_goes_on_to_change_a_peers_address() {
        assert!(not_leading(Some(1), 1).is_none());
        for (leader, me) in [(Some(2), 1), (None, 1)] {
            match not_leading(leader, me) {
                Some(rwal_replication::Error::NotLeader { leader: named }) => {
                    assert_eq!(named, leader)
                }
                other => panic!("{leader:?} leads, {me} asked: {other:?}"),
            }
        }
    }

    /// The same through the call: a node founded as one of three voters whose peers never
    /// answer knows no leader; an addition there is refused before the peer's address is
    /// touched, so the connection its sender made to the address known stays up. Before, the
    /// address given replaced it (retiring that connection) and was then taken back.
    #[test]
    fn a_node_that_knows_no_leader_refuses_an_addition_before_touching_the_peer() {
        use std::io::Read;
        use std::net::TcpListener;

        let dir = std::env::temp_dir().join(format!("rwal-ffi-leaderless-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let secret = [7u8; 32];
        let (unreachable_2, unreachable_3) = (
            CString::new("127.0.0.1:9").unwrap(),
            CString::new("127.0.0.1:11").unwrap(),
        );
        let (mut opts, mut node) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid C strings and buffers, options used before they are freed.
        unsafe {
            assert_eq!(rwal_node_options_new(1, path.as_ptr(), &mut opts), RWAL_OK);
            assert_eq!(
                rwal_node_options_set_cluster(opts, 5, secret.as_ptr(), secret.len()),
                RWAL_OK
            );
            assert_eq!(
                rwal_node_options_set_voters(opts, [1, 2, 3].as_ptr(), 3, false),
                RWAL_OK
            );
            assert_eq!(
                rwal_node_options_add_peer(opts, 2, unreachable_2.as_ptr()),
                RWAL_OK
            );
            assert_eq!(
                rwal_node_options_add_peer(opts, 3, unreachable_3.as_ptr()),
                RWAL_OK
            );
            assert_eq!(rwal_node_open(opts, &mut node), RWAL_OK);
            rwal_node_options_free(opts);
        }
        // SAFETY: the handle is live until the close at the end.
        let handle = unsafe { &*node };
        assert_eq!(handle.node.status().leader, None);
        // Node 9 at an address the test listens on: its sender connects and waits there in
        // its handshake (5 s), which the test never answers.
        let known = TcpListener::bind("127.0.0.1:0").unwrap();
        let known_addr = CString::new(known.local_addr().unwrap().to_string()).unwrap();
        // SAFETY: live handle, NUL-terminated address.
        let added = unsafe { rwal_node_add_peer(node, 9, known_addr.as_ptr()) };
        assert_eq!(added, RWAL_OK);
        let (mut link, _) = known.accept().unwrap();
        let asked = CString::new("127.0.0.1:12").unwrap();
        let (mut lsn, mut epoch) = (0, 0);
        // SAFETY: live handle, NUL-terminated address, writable outputs.
        let refused = unsafe {
            rwal_node_change_membership(
                node,
                RWAL_MEMBERSHIP_ADD_LEARNER,
                9,
                asked.as_ptr(),
                &mut lsn,
                &mut epoch,
            )
        };
        assert_eq!(refused, crate::status::RWAL_ERR_NOT_LEADER);
        assert_eq!(
            handle.network.peer_addr(9),
            Some(known.local_addr().unwrap())
        );
        // The sender's connection is still the one it made: nothing closed it. (Its hello is
        // read first; then the read waits, where a retired connection reads its end.)
        link.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let outcome = loop {
            match link.read(&mut buf) {
                Ok(0) => break Ok(0),
                Ok(_) => continue,
                Err(e) => break Err(e.kind()),
            }
        };
        assert!(
            matches!(
                outcome,
                Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            ),
            "the peer's connection was closed: {outcome:?}"
        );
        // SAFETY: the handle, not used again.
        unsafe { rwal_node_close(node) };
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A refused addition takes back the address it set: removed if the node knew none, the
    /// earlier one restored if it knew another.
    #[test]
    fn a_refused_addition_takes_back_the_address_it_set() {
        let dir = std::env::temp_dir().join(format!("rwal-ffi-rollback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let node = open_sole_voter(&dir.join("node1"));
        // SAFETY: the handle is live until the close at the end.
        let handle = unsafe { &*node };
        let (asked, known) = (
            CString::new("127.0.0.1:9").unwrap(),
            CString::new("127.0.0.1:10").unwrap(),
        );
        let (mut lsn, mut epoch) = (0, 0);
        // Node 7 is no learner: a voter is a promoted learner, so raft's side refuses the
        // change after the address was set.
        let mut refused = |addr: &CString| {
            // SAFETY: live handle, NUL-terminated address, writable outputs.
            unsafe {
                rwal_node_change_membership(
                    node,
                    RWAL_MEMBERSHIP_ADD_VOTER,
                    7,
                    addr.as_ptr(),
                    &mut lsn,
                    &mut epoch,
                )
            }
        };
        assert_eq!(refused(&asked), RWAL_ERR_INVALID_ARGUMENT);
        assert_eq!(handle.network.peer_addr(7), None, "the address stayed");
        // SAFETY: live handle, NUL-terminated address.
        let added = unsafe { rwal_node_add_peer(node, 7, known.as_ptr()) };
        assert_eq!(added, RWAL_OK);
        assert_eq!(refused(&asked), RWAL_ERR_INVALID_ARGUMENT);
        assert_eq!(
            handle.network.peer_addr(7),
            Some("127.0.0.1:10".parse().unwrap()),
            "the address known before was not restored"
        );
        // SAFETY: the handle, not used again.
        assert_eq!(unsafe { rwal_node_close(node) }, RWAL_OK);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
