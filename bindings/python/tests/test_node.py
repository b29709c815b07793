"""pytest tests of rwal.Node: three replicated nodes in this process on loopback TCP."""

import copy
import errno
import io
import logging
import mmap
import pickle
import threading
import time

import pytest

import rwal

SECRET = b"the python test cluster's secret"


class Engine:
    """Keeps every applied record; its snapshot is their count and sum."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = {}
        self.leaders = []
        self.restored = []
        # A directory: snapshot() writes the state to a file there and returns a read-only
        # mapping of it (kept in `mapped`) instead of bytes.
        self.map_snapshots_in = None
        self.mapped = []

    def apply(self, lsn, epoch, data):
        with self.lock:
            assert lsn not in self.records
            self.records[lsn] = data

    def snapshot(self):
        with self.lock:
            state = repr(sorted(self.records.items())).encode()
        if self.map_snapshots_in is None:
            return state
        path = self.map_snapshots_in / ("state-%d" % len(self.mapped))
        path.write_bytes(state)
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.mapped.append(mapped)
        return mapped

    def checkpoint_state(self):
        """The last record applied and the state after it, read together (a checkpoint's LSN
        and state must match: read apart, records applied between them would be applied again
        after a restore)."""
        with self.lock:
            return max(self.records, default=0), repr(sorted(self.records.items())).encode()

    def restore(self, lsn, epoch, data):
        with self.lock:
            self.restored.append(lsn)
            self.records = dict(eval(data.decode())) if data else {}  # noqa: S307 - our own bytes

    def on_leader(self, leader, term):
        self.leaders.append((leader, term))


def wait(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def propose_once_leading(node, data, wait_for_commit=True):
    """Proposes `data` to a node that is to lead alone, again while it does not lead yet."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if wait_for_commit:
                return node.propose_and_wait(data, timeout=30)
            return node.propose(data)
        except rwal.NotLeaderError:
            assert time.monotonic() < deadline, "the node never led"
            time.sleep(0.01)


@pytest.fixture
def cluster(tmp_path):
    # Ticks of 50 ms, elections after 0.5 to 1 s: the callbacks take the GIL on the nodes'
    # threads, and the tests expect the leader they found to keep leading.
    engines = {i: Engine() for i in (1, 2, 3)}
    nodes = {}
    # The nodes opened so far are closed whatever fails: the opening of another, or the test.
    try:
        for i in (1, 2, 3):
            e = engines[i]
            nodes[i] = rwal.Node(i, tmp_path / ("node%d" % i), cluster_id=9, secret=SECRET,
                                 voters=[1, 2, 3], tick_ms=50, sync_stall_limit_ms=3000,
                                 segment_size=1 << 20,
                                 apply=e.apply, snapshot=e.snapshot,
                                 restore=e.restore, on_leader=e.on_leader)
        for i, node in nodes.items():
            for j, other in nodes.items():
                if i != j:
                    node.add_peer(j, other.local_addr)
        yield nodes, engines
    finally:
        for node in nodes.values():
            node.close()


def leader_of(nodes):
    def agreed():
        leaders = {n.status()["leader"] for n in nodes.values()}
        return len(leaders) == 1 and None not in leaders
    wait(agreed)
    leader = next(iter(nodes.values())).status()["leader"]
    assert nodes[leader].status()["role"] == "leader"
    return leader


def test_a_cluster_commits_on_every_node_and_followers_name_the_leader(cluster):
    nodes, engines = cluster
    leader = leader_of(nodes)
    follower = next(i for i in nodes if i != leader)
    acked = {}
    for n in range(30):
        data = b"record %d" % n
        if n % 2:
            lsn, epoch = nodes[leader].propose(data)
            nodes[leader].wait_committed(lsn, epoch, timeout=30)
        else:
            lsn, epoch = nodes[leader].propose_and_wait(data, timeout=30)
            assert nodes[leader].status()["commit_lsn"] >= lsn
        assert lsn > max(acked, default=0)
        acked[lsn] = data
    with pytest.raises(rwal.NotLeaderError) as refused_one_call:
        nodes[follower].propose_and_wait(b"x", timeout=30)
    assert refused_one_call.value.leader_id == leader
    with pytest.raises(rwal.NotLeaderError) as refused:
        nodes[follower].propose(b"x")
    assert refused.value.leader_id == leader
    assert refused.value.leader_addr == nodes[leader].local_addr
    assert refused.value.status == "RWAL_ERR_NOT_LEADER"
    assert nodes[follower].leader() == (leader, nodes[leader].local_addr)
    # A linearizable read point on a follower covers every acknowledged write.
    point = nodes[follower].read_barrier(timeout=30)
    assert point >= max(acked)
    for i, node in nodes.items():
        wait(lambda: node.status()["applied_lsn"] >= max(acked))
        with engines[i].lock:
            assert {lsn: engines[i].records[lsn] for lsn in acked} == acked
        assert engines[i].leaders[-1][0] == leader
    # Committed records, system records marked.
    records = list(nodes[follower].records())
    users = {lsn: data for lsn, _, kind, data in records if kind == rwal.node.USER}
    assert users == acked
    assert any(kind == rwal.node.SYSTEM for _, _, kind, _ in records)
    with pytest.raises(rwal.TimeoutError) as late:
        nodes[leader].wait_committed(max(acked) + 1000, 1, timeout=0.05)
    assert late.value.errno == errno.ETIMEDOUT
    # Leadership handed to a chosen follower: the old leader then refuses and names it.
    with pytest.raises(rwal.NotLeaderError):
        nodes[follower].transfer_leadership()
    assert nodes[leader].transfer_leadership(follower, timeout=30) == follower
    assert leader_of(nodes) == follower
    with pytest.raises(rwal.NotLeaderError) as refused_after:
        nodes[leader].propose(b"y")
    assert refused_after.value.leader_id == follower
    lsn, _ = nodes[follower].propose_and_wait(b"after the handover", timeout=30)
    assert lsn > max(acked)


class LentStates(dict):
    """rwal.node's table of lent states, which keeps every object lent (not the buffer over it,
    which would keep an mmap from closing)."""

    def __init__(self):
        super().__init__()
        self.lent = []

    def __setitem__(self, key, value):
        self.lent.append(value[0])
        super().__setitem__(key, value)


def test_a_learner_joins_from_a_snapshot_after_compaction(cluster, tmp_path, monkeypatch):
    nodes, engines = cluster
    leader = leader_of(nodes)
    # The leader's engine hands its state over as a read-only mapping of a file it wrote: read
    # in place by the node after the callback returned, then released.
    engines[leader].map_snapshots_in = tmp_path
    lent = LentStates()
    monkeypatch.setattr(rwal.node, "_lent_states", lent)
    # 40 records of 64 KiB fill more than two 1 MiB segments: compaction can remove one.
    for n in range(40):
        nodes[leader].propose_and_wait(b"before %d " % n + b"x" * (64 << 10), timeout=30)
    checkpoint_lsn, state = engines[leader].checkpoint_state()
    assert checkpoint_lsn <= nodes[leader].status()["applied_lsn"]
    nodes[leader].checkpoint(checkpoint_lsn, state)

    def compacted():
        # A follower still catching up holds the log back: compaction is tried again.
        nodes[leader].compact()
        return nodes[leader].status()["first_lsn"] > 2
    wait(compacted)
    engine = Engine()
    # A bytearray secret: the same bytes, so the joiner authenticates with the others.
    joiner = rwal.Node(4, tmp_path / "node4", cluster_id=9, secret=bytearray(SECRET), join=True,
                       snapshot_bytes_max=16 << 20, segment_size=1 << 20,
                       apply=engine.apply, snapshot=engine.snapshot, restore=engine.restore)
    try:
        # No membership yet (none is sent before the leader adds it): empty lists, not an
        # error of cffi's slicing a NULL pointer.
        assert joiner.members() == ([], [])
        # The followers are not given the joiner's address: the change carries it to them.
        for i, node in nodes.items():
            joiner.add_peer(i, node.local_addr)
        change_lsn, change_epoch = nodes[leader].change_membership("add_learner", 4,
                                                                   joiner.local_addr)
        # The change's LSN and epoch say when it is made (no new leader replaced it here).
        nodes[leader].wait_committed(change_lsn, change_epoch, timeout=30)
        with pytest.raises(rwal.SupersededError):
            nodes[leader].wait_committed(change_lsn, change_epoch + 1, timeout=30)
        lsn, _ = nodes[leader].propose_and_wait(b"after", timeout=30)
        wait(lambda: joiner.status()["applied_lsn"] >= lsn)
        # Every joiner is seeded with the snapshot at LSN 1 (docs/replication.md section 5.1):
        # the leader's log no longer holds the entries after it, so it sent its checkpoint.
        assert max(engine.restored) >= checkpoint_lsn, engine.restored
        with engine.lock, engines[leader].lock:
            assert engine.records == engines[leader].records
        # The checkpoint predates the learner: the leader asked its engine for its state, and
        # released the mapping once it was written (a mapping with a buffer still exported
        # cannot be closed).
        assert engines[leader].mapped
        assert all(any(m is state for state in lent.lent) for m in engines[leader].mapped)
        wait(lambda: not lent)
        for state in engines[leader].mapped:
            state.close()
        assert joiner.status()["learners"] == 1
        # The ids, on the joiner and on the leader alike.
        assert joiner.members() == ([1, 2, 3], [4])
        assert nodes[leader].members() == ([1, 2, 3], [4])
        with pytest.raises(rwal.InvalidArgumentError):
            nodes[leader].change_membership("promote everyone", 4)
        # A change of nothing, and a demotion, are refused with the reason.
        with pytest.raises(rwal.InvalidArgumentError, match="a learner already"):
            nodes[leader].change_membership("add_learner", 4)
        follower = next(i for i in nodes if i != leader)
        with pytest.raises(rwal.InvalidArgumentError, match="demote"):
            nodes[leader].change_membership("add_learner", follower)
        assert nodes[leader].members() == ([1, 2, 3], [4])
        # A follower elected later reaches the learner, at the address the change carried.
        assert nodes[leader].transfer_leadership(follower, timeout=30) == follower
        lsn, _ = nodes[follower].propose_and_wait(b"from the next leader", timeout=30)
        wait(lambda: joiner.status()["applied_lsn"] >= lsn)
        # A learner that never answers never catches up: its promotion is BusyError (ask again
        # later), not InvalidArgumentError (asking again cannot help).
        change_lsn, change_epoch = nodes[follower].change_membership("add_learner", 9,
                                                                     "127.0.0.1:9")
        nodes[follower].wait_committed(change_lsn, change_epoch, timeout=30)
        # Committed is not yet applied: until then the refusal is the one-change-at-a-time one.
        wait(lambda: nodes[follower].status()["applied_lsn"] >= change_lsn)
        with pytest.raises(rwal.BusyError, match="learner 9 has replicated to 0"):
            nodes[follower].change_membership("add_voter", 9)
    finally:
        joiner.close()


def test_bad_node_options_are_refused_with_the_reason(tmp_path):
    with pytest.raises(rwal.InvalidArgumentError, match="at least 16"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=b"short")
    with pytest.raises(rwal.InvalidArgumentError, match="not an IP address"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, listen="nowhere")
    with pytest.raises(rwal.InvalidArgumentError, match="must name this node"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[2, 3])
    # Founding is asked for, never assumed: an empty directory without voters is refused.
    with pytest.raises(rwal.InvalidArgumentError, match="holds no log"):
        rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET)
    with pytest.raises(rwal.InvalidArgumentError, match="largest snapshot must be above 0"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1],
                  snapshot_bytes_max=0)
    with pytest.raises(rwal.InvalidArgumentError, match="snapshot timeout must be at least 1 ms"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1],
                  snapshot_timeout_ms=0)
    with pytest.raises(rwal.InvalidArgumentError, match="unknown backend 'bogus'"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1], backend="bogus")
    # A replica must not forget what it acknowledged: the modes that drop records are refused.
    for mode in ("point_in_time", "skip_corrupted"):
        with pytest.raises(rwal.InvalidArgumentError, match="(?i)recovery"):
            rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1],
                      recovery=mode)
    with pytest.raises(rwal.InvalidArgumentError, match="unknown recovery mode"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1], recovery="x")
    with pytest.raises(rwal.InvalidArgumentError, match="(?i)commit.delay"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1],
                  commit_delay_us=2_000_000)
    # Not bool(join): "no" would have joined a cluster through a directory it meant to found.
    with pytest.raises(TypeError, match="join must be a bool"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, join="no")
    assert not (tmp_path / "n").exists()
    # In the C type's range, past the library's largest tick.
    with pytest.raises(rwal.InvalidArgumentError, match="1 to 60000 ms, not 60001"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1], tick_ms=60001)
    # Out of the C type's range: named, not cffi's OverflowError.
    for bad, name in ((dict(node_id=-1), "node_id"), (dict(cluster_id=1 << 64), "cluster_id"),
                      (dict(voters=[1, -2]), "voter id"), (dict(tick_ms=1 << 32), "tick_ms"),
                      (dict(peers={-3: "127.0.0.1:1"}), "peer id"),
                      (dict(snapshot_timeout_ms=1 << 32), "snapshot_timeout_ms")):
        args = dict(node_id=1, path=tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1])
        args.update(bad)
        with pytest.raises(rwal.InvalidArgumentError, match=name):
            rwal.Node(**args)
    # 0: a stalled sync never hands the leadership over. A backend other than the node's
    # default ("staged") writes the same files.
    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                     sync_stall_limit_ms=0, backend="mmap", segment_size=1 << 20,
                     snapshot_timeout_ms=60000, recovery="absolute_consistency",
                     commit_delay_us=100)
    wait(lambda: node.status()["role"] == "leader")
    lsn, _ = node.propose_and_wait(b"written through the mapping", timeout=None)
    node.close()
    # Reopened with its log, it needs no voters.
    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET)
    wait(lambda: node.status()["commit_lsn"] >= lsn)
    assert [r[3] for r in node.records(lsn)][:1] == [b"written through the mapping"]
    node.close()
    node.close()
    with pytest.raises(rwal.ClosedError):
        node.propose(b"x")


def test_an_engine_needs_apply_snapshot_and_restore_together(tmp_path):
    with pytest.raises(rwal.InvalidArgumentError, match="snapshot and restore are NULL"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, apply=lambda *_: None)


def test_an_apply_that_raises_stops_the_node_and_close_says_why(tmp_path):
    applied = []

    def apply(lsn, epoch, data):
        if data == b"refused":
            raise RuntimeError("this engine refuses these bytes")
        applied.append(data)

    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1], tick_ms=10,
                     apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    closed = False
    try:
        fine, _ = propose_once_leading(node, b"fine")
        assert applied == [b"fine"]
        # Committed before the engine refused it: the proposer is told it committed. The
        # failed apply then stops the node, and later calls find it closed.
        refused, _ = node.propose_and_wait(b"refused", timeout=30)
        assert refused == fine + 1
        deadline = time.monotonic() + 30
        while True:
            try:
                node.read_barrier(timeout=30)
            except (rwal.ClosedError, rwal.ReplicationError):
                break
            assert time.monotonic() < deadline, "the node did not stop"
            time.sleep(0.01)
        with pytest.raises(rwal.ClosedError):
            node.propose(b"after")
        with pytest.raises(rwal.ReplicationError, match="apply callback failed at LSN"):
            node.close()
        closed = True
    finally:
        if not closed:
            try:
                node.close()
            except rwal.Error:
                pass
    assert applied == [b"fine"]


def test_ctrl_c_in_restore_while_the_node_opens_is_raised_by_the_open(tmp_path):
    # Restore (and apply) run on the opening thread while the node opens, where Ctrl-C lands:
    # cffi turned the KeyboardInterrupt into a failed callback, and Node() raised
    # ReplicationError, the interrupt lost.
    def open_node(restore):
        return rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                         tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                         restore=restore)

    node = open_node(lambda *_: None)
    try:
        lsn, _ = propose_once_leading(node, b"record")
        wait(lambda: node.status()["applied_lsn"] >= lsn)
        node.checkpoint(lsn, b"state")
    finally:
        node.close()

    def interrupted(lsn, epoch, data):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        open_node(interrupted)
    # Nothing was left open: the directory opens again, and the engine is restored.
    restored = []
    node = open_node(lambda lsn, epoch, data: restored.append(data))
    node.close()
    assert restored == [b"state"]


def test_ctrl_c_caught_by_a_callback_while_the_node_opens_is_raised_by_the_open(tmp_path):
    # Ctrl-C that arrives while the library replays without the GIL lands at the entry of the
    # next callback on the opening thread: a log message's here (as in rwal.open), or an
    # apply's, outside the engine's code. cffi caught it there: the open went on, or failed
    # with ReplicationError.
    class Interrupting(logging.Handler):
        raised = 0

        def emit(self, record):
            if "opened" in record.getMessage() and not self.raised:
                self.raised += 1
                raise KeyboardInterrupt

    handler = Interrupting()
    logger = logging.getLogger("rwal.test.node-interrupt")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    rwal.log_to(logger, logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt):
            rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                      tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                      restore=lambda *_: None)
    finally:
        rwal.log_to(None)
        logger.removeHandler(handler)
    assert handler.raised == 1
    # Closed: the directory opens again.
    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, tick_ms=10,
                     apply=lambda *_: None, snapshot=lambda: b"", restore=lambda *_: None)
    node.close()


def test_a_callback_that_asks_for_the_status_while_the_node_closes_does_not_fail_it(tmp_path):
    started = threading.Event()
    seen = []
    node = None

    def apply(lsn, epoch, data):
        if data != b"late":
            return
        started.set()
        deadline = time.monotonic() + 30
        while not node.closed:  # until close() has begun, on the main thread
            assert time.monotonic() < deadline, "close() never began"
            time.sleep(0.01)
        seen.append(node.status()["id"])

    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1], tick_ms=10,
                     apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    propose_once_leading(node, b"late", wait_for_commit=False)
    assert started.wait(30), "the record was never applied"
    node.close()  # clean: the callback's call did not fail it
    assert seen == [1]


def test_a_callback_calling_a_waiting_method_gets_an_error_not_a_hung_node(tmp_path):
    holder = {}
    refused = {}

    def apply(lsn, epoch, data):
        if data != b"call back":
            return
        node = holder["node"]
        for name, call in (("transfer_leadership", lambda: node.transfer_leadership(timeout=1)),
                           ("propose", lambda: node.propose(b"inner")),
                           ("read_barrier", lambda: node.read_barrier(timeout=1)),
                           ("compact", node.compact),
                           ("close", node.close)):
            try:
                call()
            except rwal.InvalidArgumentError as e:
                refused[name] = str(e)

    node = rwal.Node(1, tmp_path / "reentrant", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    holder["node"] = node
    try:
        wait(lambda: node.status()["role"] == "leader")
        node.propose_and_wait(b"call back", timeout=30)
        assert sorted(refused) == ["close", "compact", "propose", "read_barrier",
                                   "transfer_leadership"], refused
        for name, message in refused.items():
            why = "middle of the node's round" if name == "compact" else "wait for itself"
            assert name in message and why in message, message
        assert not node.closed
        node.propose_and_wait(b"after", timeout=30)  # the node goes on
    finally:
        holder.clear()
        node.close()


def test_a_propose_and_wait_that_times_out_says_what_to_wait_for(tmp_path):
    release = threading.Event()

    def apply(lsn, epoch, data):
        if data == b"slow":
            # Held until the test lets it go: the node publishes the commit once applied.
            release.wait(30)

    node = rwal.Node(1, tmp_path / "slow", cluster_id=1, secret=SECRET, voters=[1],
                     apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    try:
        wait(lambda: node.status()["role"] == "leader")
        before, epoch = node.propose_and_wait(b"first", timeout=30)
        with pytest.raises(rwal.TimeoutError) as raised:
            node.propose_and_wait(b"slow", timeout=0.5)
        assert raised.value.proposed is not None, "the node took the record within 0.5 s"
        lsn, slow_epoch = raised.value.proposed
        assert lsn > before and slow_epoch == epoch
        # Kept across a pickle (an error sent back from a process pool).
        assert pickle.loads(pickle.dumps(raised.value)).proposed == (lsn, slow_epoch)
        # The node's thread is still held in that apply: a record proposed now is not taken in
        # time, and never proposed (the next LSN shows).
        with pytest.raises(rwal.TimeoutError) as raised:
            node.propose_and_wait(b"given up", timeout=0.2)
        assert raised.value.proposed is None
        release.set()
        node.wait_committed(lsn, slow_epoch, timeout=30)
        assert node.propose_and_wait(b"next", timeout=30)[0] == lsn + 1
        assert [r[3] for r in node.records(lsn)][:1] == [b"slow"]
        # Other waits' timeouts name nothing to wait on.
        with pytest.raises(rwal.TimeoutError) as raised:
            node.wait_committed(lsn + 1000, epoch, timeout=0.01)
        assert raised.value.proposed is None
    finally:
        release.set()
        node.close()


def test_ctrl_c_as_a_proposal_returns_carries_what_was_proposed(tmp_path, monkeypatch):
    # Python raises a pending KeyboardInterrupt once the library call has returned, before
    # the call's outputs are read: the record was taken, and its LSN was lost with the
    # interrupt. Simulated by an interrupt raised right after the real call.
    node = rwal.Node(1, tmp_path / "interrupted", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    real_call = rwal.Node._call

    def interrupted_after(self, function, *args):
        real_call(self, function, *args)
        raise KeyboardInterrupt

    def interrupted_before(self, function, *args):
        raise KeyboardInterrupt

    try:
        wait(lambda: node.status()["role"] == "leader")
        first, epoch = node.propose_and_wait(b"first", timeout=30)
        monkeypatch.setattr(rwal.Node, "_call", interrupted_after)
        proposed = []
        for propose in (lambda: node.propose(b"taken"),
                        lambda: node.propose_and_wait(b"committed", timeout=30),
                        lambda: node.change_membership("add_learner", 7, "127.0.0.1:9")):
            with pytest.raises(KeyboardInterrupt) as raised:
                propose()
            proposed.append(raised.value.proposed)
        # Each interrupt named the entry the node took, in order, and each commits.
        assert proposed == [(first + 1, epoch), (first + 2, epoch), (first + 3, epoch)], proposed
        monkeypatch.undo()
        for lsn, proposed_epoch in proposed:
            node.wait_committed(lsn, proposed_epoch, timeout=30)
        assert [r[3] for r in node.records(first + 1)][:2] == [b"taken", b"committed"]
        # Interrupted before the library call: nothing proposed, None.
        monkeypatch.setattr(rwal.Node, "_call", interrupted_before)
        with pytest.raises(KeyboardInterrupt) as raised:
            node.propose(b"never")
        assert raised.value.proposed is None
    finally:
        monkeypatch.undo()
        node.close()


def test_checkpoint_and_propose_copy_a_buffer_the_engine_may_change(tmp_path, monkeypatch):
    handed = []
    stable = rwal.node._stable

    def recording(data):
        out = stable(data)
        handed.append((type(data), type(out)))
        return out

    node = rwal.Node(1, tmp_path / "stable", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    try:
        wait(lambda: node.status()["role"] == "leader")
        lsn, _ = node.propose_and_wait(b"one", timeout=30)
        wait(lambda: node.status()["applied_lsn"] >= lsn)
        monkeypatch.setattr(rwal.node, "_stable", recording)
        node.checkpoint(lsn, bytearray(b"engine state"))
        node.propose(bytearray(b"two"))
        node.propose_and_wait(bytearray(b"three"), timeout=30)
        # Each bytearray reaches the library as a bytes copy: it reads a checkpoint's bytes
        # twice (checksum, then write) with the GIL released, while apply may change them.
        assert handed == [(bytearray, bytes)] * 3, handed
    finally:
        monkeypatch.undo()
        node.close()


def test_an_interrupt_right_after_the_native_open_closes_the_node(tmp_path, monkeypatch):
    # Between rwal_node_open and the wrapping of its handle, an interrupt used to leave the
    # node running with its callbacks' handle freed with the half-made object.
    def interrupted(self, handle):
        raise KeyboardInterrupt

    monkeypatch.setattr(rwal.Node, "_open", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rwal.Node(1, tmp_path / "interrupted", cluster_id=1, secret=SECRET, voters=[1],
                  tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                  restore=lambda *_: None)
    monkeypatch.undo()
    # Closed: its directory opens again (a node left running would hold its lock).
    node = rwal.Node(1, tmp_path / "interrupted", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    node.close()


def test_a_node_collected_in_the_log_handler_is_closed_on_a_thread_of_its_own(tmp_path):
    # The log handler marked its thread as in a node's callback, and a node collected there
    # was kept open, its directory locked, until the interpreter exited.
    import gc
    import warnings
    import weakref

    path = tmp_path / "cycle"
    node = rwal.Node(1, path, cluster_id=1, secret=SECRET, voters=[1], tick_ms=10,
                     apply=lambda *_: None, snapshot=lambda: b"", restore=lambda *_: None)
    node.itself = node  # a cycle: only the cycle collector frees it
    collected = weakref.ref(node)

    class Collecting(logging.Handler):
        collections = 0

        def emit(self, record):
            if "opened" in record.getMessage() and not self.collections:
                self.collections += 1
                gc.collect()

    handler = Collecting()
    logger = logging.getLogger("rwal.test.collect")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    gc.disable()
    try:
        del node
        rwal.log_to(logger, logging.INFO)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            # Its "opened" message runs the handler on this thread, a Python one.
            with rwal.open(tmp_path / "other", segment_size=1 << 20):
                pass
        # Collected there, in the handler, not by the collection that follows gc.enable().
        assert collected() is None
    finally:
        rwal.log_to(None)
        logger.removeHandler(handler)
        gc.enable()
    assert handler.collections == 1

    wait(lambda: _reopens(path))


def test_a_close_interrupted_after_the_stop_raises_the_stops_error_at_the_next(tmp_path):
    # Interrupted while it waited for another thread's call, after the node was stopped, close()
    # forgot what the stop returned (a failed final sync): the next close() stopped the node
    # again, which returned OK, and said nothing.
    import signal

    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    real_stop = node._stop_node
    stops = []
    failure = rwal.ReplicationError(rwal.lib.RWAL_ERR_REPLICATION,
                                    "the final sync failed (simulated)")

    def stop(handle):
        stops.append(real_stop(handle))
        if len(stops) == 1:
            # Ctrl-C while close() waits for the call held below, sent to this (the main)
            # thread: sent to the process, it may land on another thread, and the main
            # thread's wait is not interrupted.
            threading.Timer(0.2, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT)).start()
        return failure

    node._stop_node = stop
    in_call = threading.Event()
    release = threading.Event()

    def hold_a_call():
        with node._use():
            in_call.set()
            release.wait(30)

    holder = threading.Thread(target=hold_a_call)
    holder.start()
    # Python's own SIGINT handler, whatever this process inherited (a background job's shell
    # ignores SIGINT, and Python then keeps it ignored: CI's run waited out the held call).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert in_call.wait(30)
        with pytest.raises(KeyboardInterrupt):
            node.close()
    finally:
        signal.signal(signal.SIGINT, previous)
        release.set()
        holder.join(30)
    with pytest.raises(rwal.ReplicationError, match="simulated"):
        node.close()
    assert stops == [None], "stopped once"
    assert node.closed
    node.close()  # twice is fine


def test_a_panic_leaves_whether_a_record_was_proposed_unknown():
    from rwal.node import _proposal_unknown_after

    lib = rwal.lib
    panic = rwal.PanicError(lib.RWAL_ERR_PANIC, "a bug")
    assert _proposal_unknown_after(panic)
    assert _proposal_unknown_after(rwal.ReplicationError(
        lib.RWAL_ERR_REPLICATION,
        "the node's thread panicked while proposing the record: whether it was taken is unknown"))
    assert not _proposal_unknown_after(rwal.ReplicationError(
        lib.RWAL_ERR_REPLICATION, "the engine's apply failed"))
    assert not _proposal_unknown_after(rwal.NotLeaderError(lib.RWAL_ERR_NOT_LEADER, "not me"))
    assert rwal.Error(lib.RWAL_ERR_BUSY, "busy").proposed_unknown is False
    panic.proposed_unknown = True
    assert pickle.loads(pickle.dumps(panic)).proposed_unknown is True


def test_the_nodes_closed_at_exit_are_all_closed_whatever_one_raises(monkeypatch, capsys):
    closed = []

    class Failing:
        _id = 7

        def close(self):
            closed.append(self._id)
            raise KeyboardInterrupt

    class Fine:
        _id = 8

        def close(self):
            closed.append(self._id)

    monkeypatch.setattr(rwal.node, "_open_nodes", set())
    monkeypatch.setattr(rwal.node, "_closed_at_exit", [Failing(), Fine()])
    rwal.node._close_nodes_at_exit()
    assert closed == [7, 8]
    assert "closing rwal.Node 7 at exit failed" in capsys.readouterr().err


def _reopens(path, cluster_id=1) -> bool:
    """Whether a single-voter node opens at `path` now (closed at once): its directory is no
    longer locked by a node left open there."""
    try:
        again = rwal.Node(1, path, cluster_id=cluster_id, secret=SECRET, voters=[1], tick_ms=10,
                          apply=lambda *_: None, snapshot=lambda: b"",
                          restore=lambda *_: None)
    except rwal.LockedError:
        return False
    again.close()
    return True


def test_a_node_collected_inside_its_own_callback_is_closed_on_a_thread_of_its_own(tmp_path):
    """Collected (a cycle) inside its own apply, on its own thread: the callback returns
    (closing there would wait for that very thread), and the node is closed on a closer thread
    once it has. Until 2026-12-07 it was left running until the interpreter exited, a voting
    member holding its port and its directory (found by review)."""
    import gc
    import warnings
    import weakref

    dropped = threading.Event()
    collected = threading.Event()

    def apply(lsn, epoch, data):
        if data == b"collect":
            # The test's last strong reference is gone: collect the node's cycle here, on its
            # own thread, inside its callback (which holds nothing of the node).
            assert dropped.wait(30)
            gc.collect()
            collected.set()

    path = tmp_path / "cyclic"
    node = rwal.Node(1, path, cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    node.itself = node  # a cycle: only the cycle collector frees it
    wait(lambda: node.status()["role"] == "leader")
    # No automatic collection on this thread in the window: the one in the callback is the
    # test (gc.collect() works while automatic collection is off).
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            ref = weakref.ref(node)
            del node
            ref().propose(b"collect")
            dropped.set()
            assert collected.wait(30), "the callback never finished: closing joined itself?"
    finally:
        gc.enable()
    assert ref() is None
    wait(lambda: _reopens(path))  # closed by its closer thread: the directory is free again


def test_a_node_collected_inside_another_nodes_callback_is_closed(tmp_path):
    """Node B's last reference dropped inside node A's apply (an engine that owned B): B is
    closed on a closer thread, not left running until the interpreter exits."""
    import gc
    import warnings

    held = {}
    collected = threading.Event()

    def apply_a(lsn, epoch, data):
        if data == b"drop b":
            held.clear()
            gc.collect()
            collected.set()

    a = rwal.Node(1, tmp_path / "a", cluster_id=1, secret=SECRET, voters=[1], tick_ms=10,
                  apply=apply_a, snapshot=lambda: b"", restore=lambda *_: None)
    path_b = tmp_path / "b"
    b = rwal.Node(1, path_b, cluster_id=2, secret=SECRET, voters=[1], tick_ms=10,
                  apply=lambda *_: None, snapshot=lambda: b"", restore=lambda *_: None)
    b.itself = b  # freed by the cycle collector only, in A's callback
    held["b"] = b
    del b
    try:
        wait(lambda: a.status()["role"] == "leader")
        assert not _reopens(path_b, 2), "B holds its directory while open"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            a.propose_and_wait(b"drop b", timeout=30)
            assert collected.wait(30)
        wait(lambda: _reopens(path_b, 2))  # B closed by its closer thread
    finally:
        a.close()


def test_a_node_collected_while_its_apply_waits_for_the_collectors_lock_is_closed_later(tmp_path):
    """A node collected (a cycle) on a thread that holds a lock the node's apply waits for:
    the collection returns, and the node is closed on a thread of its own once the lock is
    free. The collection closed it on the spot, waiting for the node's thread, which waited
    for the lock: a deadlock (found by review on 2026-12-04)."""
    import gc
    import warnings
    import weakref

    lock = threading.Lock()
    applied = []
    waiting = threading.Event()

    def apply(lsn, epoch, data):
        waiting.set()
        with lock:
            applied.append(data)

    path = tmp_path / "cycle"
    node = rwal.Node(1, path, cluster_id=1, secret=SECRET, voters=[1], tick_ms=10,
                     apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    node.itself = node  # a cycle: only the cycle collector frees it
    wait(lambda: node.status()["role"] == "leader")
    ref = weakref.ref(node)
    collected = threading.Event()

    def collect():
        with lock:
            ref().propose(b"applied once the lock is free")
            assert waiting.wait(30), "apply never ran"
            gc.collect()
            collected.set()

    gc.disable()
    try:
        del node
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            collector = threading.Thread(target=collect, daemon=True)
            collector.start()
            collector.join(30)
        assert collected.is_set(), "the collection hung: it closed the node on the spot?"
    finally:
        gc.enable()
    assert ref() is None

    wait(lambda: _reopens(path))  # closed by its closer thread: the directory is free again
    assert applied == [b"applied once the lock is free"]


def test_ctrl_c_ends_a_long_wait(tmp_path):
    """wait_committed() waits in slices of 0.2 s (read_barrier() in slices that grow from
    0.2 to 5 s): SIGINT raises
    KeyboardInterrupt within one, whatever the timeout (the whole timeout was one library call,
    up to 49.7 days with math.inf, which held Ctrl-C off, and a close() on another thread,
    until it returned). A timeout still ends the wait at the time asked, and says so."""
    import os
    import signal

    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    # Python's own SIGINT handler, whatever this process inherited (a background job's shell
    # ignores SIGINT, and Python then keeps it ignored: the wait below would never end).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = None
    try:
        wait(lambda: node.status()["role"] == "leader")
        started = time.monotonic()
        with pytest.raises(rwal.TimeoutError, match="within 0.5 s"):
            node.wait_committed(10**6, 1, timeout=0.5)  # an entry never appended
        assert 0.5 <= time.monotonic() - started < 5
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            # Bounded all the same: should the interrupt be lost, the test fails, not hangs.
            node.wait_committed(10**6, 1, timeout=60)
        assert time.monotonic() - started < 5
    finally:
        if timer is not None:
            timer.join()
        signal.signal(signal.SIGINT, previous)
        node.close()


def test_timeouts_are_checked_and_rounded_up():
    import math
    from rwal.node import _millis
    assert _millis(0.0004) == 1  # was 0: no wait at all
    assert _millis(2) == 2000
    assert _millis(0) == 0
    assert _millis(math.inf) == 0xFFFFFFFF
    assert _millis(None) == 0xFFFFFFFF  # as long as it takes
    from fractions import Fraction
    assert _millis(Fraction(1, 2)) == 500
    for bad in (-1, -math.inf, math.nan, "1", True):
        with pytest.raises(rwal.InvalidArgumentError, match="timeout"):
            _millis(bad)


def test_a_wait_of_an_integer_beyond_any_float_waits(tmp_path):
    # _seconds takes 10**400 as "for ever"; the waits' own deadline took float() of it and
    # raised OverflowError.
    from rwal.node import Node
    assert Node._wait_in_slices(None, 10**400, "x", lambda millis: millis) == 200
    with pytest.raises(rwal.InvalidArgumentError, match="timeout"):
        Node._wait_in_slices(None, -10**400, "x", lambda millis: millis)


def test_an_engine_outlives_a_close_that_panicked(tmp_path, monkeypatch):
    # After RWAL_ERR_PANIC from rwal_node_close the node's thread may go on calling back with
    # the engine's handle (rwal.h): the engine must outlive the Node object, or the callback
    # reads freed memory. The close here really closes, then answers as a panic would.
    import gc
    import weakref

    import rwal.node
    real_close = rwal.Node._close_node

    def panicked(handle):
        assert real_close(handle) == rwal.lib.RWAL_OK
        return rwal.lib.RWAL_ERR_PANIC

    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    engine = weakref.ref(node._engine)
    monkeypatch.setattr(rwal.Node, "_close_node", staticmethod(panicked))
    try:
        with pytest.raises(rwal.PanicError):
            node.close()
        del node
        gc.collect()
        assert engine() is not None, "the engine went with the node"
        assert any(kept is engine() for kept, _ in rwal.node._kept_after_panic)
    finally:
        rwal.node._kept_after_panic[:] = [
            pair for pair in rwal.node._kept_after_panic if pair[0] is not engine()]

    # The same when the stop before it failed too (a node whose thread panicked reports its
    # failure there): close() raises the stop's error, and the engine is kept all the same.
    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    real_stop = node._stop_node
    # Made at each call: an error kept here would keep the node alive through its traceback.
    node._stop_node = lambda handle: real_stop(handle) or rwal.ReplicationError(
        rwal.lib.RWAL_ERR_REPLICATION, "failed (simulated)")
    engine = weakref.ref(node._engine)
    try:
        with pytest.raises(rwal.ReplicationError, match="simulated"):
            node.close()
        del node
        gc.collect()
        assert engine() is not None, "the engine went with the node"
    finally:
        rwal.node._kept_after_panic[:] = [
            pair for pair in rwal.node._kept_after_panic if pair[0] is not engine()]


def test_close_ends_a_propose_and_wait_in_progress_at_once(tmp_path):
    """close() stops the node before it waits for other threads' calls: a propose_and_wait()
    that cannot commit (its follower is gone) ends with ClosedError at once, instead of
    holding the close for its whole timeout (one library call)."""
    # Ticks of 300 ms: the leader, left alone, steps down (check quorum) only seconds after
    # its follower is gone, long after the proposal below.
    nodes = {}
    try:
        for i in (1, 2):
            nodes[i] = rwal.Node(i, tmp_path / ("node%d" % i), cluster_id=3, secret=SECRET,
                                 voters=[1, 2], tick_ms=300, segment_size=1 << 20)
        nodes[1].add_peer(2, nodes[2].local_addr)
        nodes[2].add_peer(1, nodes[1].local_addr)
        leader = leader_of(nodes)
        follower = 3 - leader
        node = nodes[leader]
        _, epoch = node.propose_and_wait(b"committed", timeout=30)
        nodes[follower].close()
        last = node.status()["last_lsn"]
        outcome = {}

        def propose():
            try:
                outcome["returned"] = node.propose_and_wait(b"never committed", timeout=60)
            except rwal.Error as e:
                outcome["error"] = type(e)
                outcome["proposed"] = e.proposed

        t = threading.Thread(target=propose)
        t.start()
        wait(lambda: node.status()["last_lsn"] > last or not t.is_alive())
        started = time.monotonic()
        node.close()
        t.join(30)
        assert not t.is_alive()
        # Where the record was proposed, for the caller to find out whether it committed.
        assert outcome == {"error": rwal.ClosedError, "proposed": (last + 1, epoch)}
        assert time.monotonic() - started < 10
        # A record not proposed (the node is closed) is nowhere.
        with pytest.raises(rwal.ClosedError) as raised:
            node.propose_and_wait(b"late", timeout=1)
        assert raised.value.proposed is None
    finally:
        for node in nodes.values():
            node.close()


def test_a_second_close_waits_for_the_first_to_stop_the_node(tmp_path):
    """A close() while another thread's close() stops the node returns once the node is
    stopped and freed, not at once (the exit hook that closes nodes relies on it: after it,
    no node thread may call into Python)."""
    entered = threading.Event()
    release = threading.Event()

    def apply(lsn, epoch, data):
        if data == b"slow":
            entered.set()
            release.wait(30)

    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                     apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    try:
        propose_once_leading(node, b"slow", wait_for_commit=False)
        assert entered.wait(30)
        first = threading.Thread(target=node.close)
        first.start()
        wait(lambda: node.closed)
        second_started = threading.Event()
        second_done = threading.Event()
        second = threading.Thread(
            target=lambda: (second_started.set(), node.close(), second_done.set()))
        second.start()
        # The first close() is held in its stop by the apply: the second waits for it. (Its
        # thread is seen to reach the call: a thread slower to start than the wait below
        # made the check pass whatever close() did.)
        assert second_started.wait(30)
        time.sleep(0.3)
        assert not second_done.is_set()
        release.set()
        first.join(30)
        second.join(30)
        assert second_done.is_set() and not first.is_alive()
    finally:
        release.set()
        node.close()


def test_read_barrier_slices_grow_so_a_slow_confirmation_still_succeeds():
    """Each read_barrier slice asks for a new read point: with slices of one length, a
    confirmation slower than a slice (a slow link to the leader) timed out every time."""
    asked = []

    def confirm(millis):
        asked.append(millis)
        if millis < 4000:  # a read point that takes 4 s to confirm and apply
            raise rwal.TimeoutError(rwal.lib.RWAL_ERR_TIMEOUT, "not confirmed")
        return "confirmed"

    slicer = rwal.Node._wait_in_slices
    assert slicer(None, 30, "no read point", confirm, growing=True) == "confirmed"
    # Doubling up to 5 s: Ctrl-C is still seen within one slice.
    assert asked == [200, 400, 800, 1600, 3200, 5000]
    # Other waits repeat the same slice (a wait for a commit loses nothing by starting over).
    asked.clear()
    with pytest.raises(rwal.TimeoutError, match="within 0.5 s"):
        slicer(None, 0.5, "no read point", confirm)
    assert asked and max(asked) <= 200


def test_a_node_tail_on_a_follower_waits_for_the_next_commit(cluster):
    nodes, _ = cluster
    leader = leader_of(nodes)
    follower = next(i for i in nodes if i != leader)
    lsn, _ = nodes[leader].propose_and_wait(b"before", timeout=30)
    wait(lambda: nodes[follower].status()["applied_lsn"] >= lsn)
    tail = nodes[follower].tail(lsn + 1)
    assert tail.next_lsn == lsn + 1
    assert tail.next(timeout=0.05) is None  # nothing committed since
    got = {}

    def read():
        got["record"] = tail.next(timeout=30)

    t = threading.Thread(target=read)
    t.start()
    # Proposed while the tail waits.
    wait(lambda: tail._serial.locked())
    time.sleep(0.05)
    proposed, epoch = nodes[leader].propose_and_wait(b"tailed", timeout=30)
    t.join(30)
    assert got["record"] == (proposed, epoch, rwal.node.USER, b"tailed")
    assert tail.next_lsn == proposed + 1
    # Iterating waits the same way.
    again, epoch = nodes[leader].propose_and_wait(b"iterated", timeout=30)
    assert next(iter(tail)) == (again, epoch, rwal.node.USER, b"iterated")
    tail.close()
    tail.close()
    with pytest.raises(rwal.ClosedError):
        tail.next(timeout=0)
    with pytest.raises(TypeError):
        nodes[follower].tail("1")


def test_closing_a_node_ends_its_waiting_tail_and_a_callback_may_not_wait(tmp_path):
    refused = {}
    holder = {}

    def apply(lsn, epoch, data):
        if data == b"call back":
            tail = holder["node"].tail(lsn + 1)
            try:
                tail.next(timeout=1)
            except rwal.InvalidArgumentError as e:
                refused["tail"] = str(e)
            finally:
                tail.close()

    node = rwal.Node(1, tmp_path / "tailed", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    holder["node"] = node
    try:
        wait(lambda: node.status()["role"] == "leader")
        node.propose_and_wait(b"call back", timeout=30)
        assert "node's own thread" in refused["tail"], refused
        tail = node.tail(node.status()["commit_lsn"] + 1)
        outcome = {}

        def read():
            try:
                outcome["returned"] = tail.next(timeout=60)
            except rwal.Error as e:
                outcome["error"] = type(e)

        t = threading.Thread(target=read)
        t.start()
        wait(lambda: tail._serial.locked())
        time.sleep(0.1)
        started = time.monotonic()
        node.close()
        t.join(30)
        assert not t.is_alive()
        assert outcome == {"error": rwal.ClosedError}, outcome
        assert time.monotonic() - started < 10
        tail.close()
    finally:
        holder.clear()
        node.close()


def test_a_callback_reading_a_tail_another_thread_waits_on_is_refused(tmp_path):
    # Another thread's next() holds the tail while it waits for a commit that the callback's
    # thread is to make: waiting for it hung both (with no timeout) until 2026-12-07.
    outcome = {}
    holder = {}

    def apply(lsn, epoch, data):
        if data == b"call back":
            try:
                outcome["callback"] = holder["tail"].next(timeout=1)
            except rwal.InvalidArgumentError as e:
                outcome["callback"] = str(e)

    node = rwal.Node(1, tmp_path / "shared-tail", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=apply, snapshot=lambda: b"", restore=lambda *_: None)
    try:
        wait(lambda: node.status()["role"] == "leader")
        tail = node.tail(node.status()["commit_lsn"] + 1)
        holder["tail"] = tail

        def consume():
            outcome["consumer"] = tail.next(timeout=30)

        t = threading.Thread(target=consume)
        t.start()
        wait(lambda: tail._serial.locked())
        lsn, _ = node.propose_and_wait(b"call back", timeout=30)
        t.join(30)
        assert not t.is_alive()
        assert "another thread's next() waits on it" in outcome["callback"], outcome
        assert outcome["consumer"][0] == lsn and outcome["consumer"][3] == b"call back"
        tail.close()
    finally:
        holder.clear()
        node.close()


def test_an_engine_failing_while_the_node_opens_is_the_cause_of_the_error(tmp_path):
    def restore(lsn, epoch, state):
        raise ValueError("this engine cannot restore")

    with pytest.raises(rwal.ReplicationError) as failed:
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1],
                  apply=lambda *_: None, snapshot=lambda: b"", restore=restore)
    assert isinstance(failed.value.__cause__, ValueError), repr(failed.value)
    assert "cannot restore" in str(failed.value.__cause__)


def test_callbacks_and_restore_reader_are_checked_at_open(tmp_path):
    with pytest.raises(TypeError, match="restore_reader must be a bool"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1],
                  restore_reader="no")
    with pytest.raises(TypeError, match="apply must be callable"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=SECRET, voters=[1], apply=5,
                  snapshot=lambda: b"", restore=lambda *_: None)
    assert not (tmp_path / "n").exists()


def test_restore_reader_reads_the_checkpoint_in_pieces_during_the_call_only(tmp_path):
    state = bytes(i % 251 for i in range(3 << 20))
    node = rwal.Node(1, tmp_path / "alone", cluster_id=9, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    try:
        wait(lambda: node.status()["role"] == "leader")
        lsn, _ = node.propose_and_wait(b"record", timeout=30)
        wait(lambda: node.status()["applied_lsn"] >= lsn)
        node.checkpoint(lsn, state)
    finally:
        node.close()

    read = {}

    def restore(at, epoch, reader):
        if at == 1:
            return  # the founding checkpoint, before the record
        assert isinstance(reader, rwal.StateReader) and reader.length == len(state)
        pieces = []
        while True:
            piece = reader.read(1 << 20)
            if not piece:
                break
            pieces.append(piece)
        read["pieces"] = len(pieces)
        read["state"] = b"".join(pieces)
        reader.seek(-10, io.SEEK_END)
        read["tail"] = reader.read()
        reader.seek(5)
        buf = bytearray(3)
        read["into"] = (reader.readinto(buf), bytes(buf), reader.tell())
        # What would let a read outlive the view is refused.
        with pytest.raises(TypeError):
            copy.copy(reader)
        with pytest.raises(AttributeError):
            reader.length = 1 << 40
        reader.seek(len(state) - 4)
        read["past"] = (reader.read(1 << 40), reader.read(), reader.read(1))
        read["lsn"], read["reader"] = at, reader

    node = rwal.Node(1, tmp_path / "alone", cluster_id=9, secret=SECRET, tick_ms=10,
                     apply=lambda *_: None, snapshot=lambda: b"", restore=restore,
                     restore_reader=True)
    node.close()
    assert read["lsn"] == lsn
    assert read["pieces"] == 3
    assert read["state"] == state, "the reader gave other bytes than the checkpoint's"
    assert read["tail"] == state[-10:]
    assert read["into"] == (3, state[5:8], 8)
    assert read["past"] == (state[-4:], b"", b"")
    # Kept past the call: closed, not a view of a mapping that is gone.
    with pytest.raises(ValueError, match="during restore only"):
        read["reader"].read(1)


def test_ctrl_c_ends_a_node_tails_wait(tmp_path):
    """A node's tail waits in the library in slices (0.2 s), as a log's does: SIGINT raises
    KeyboardInterrupt within one, and the tail goes on after it."""
    import os
    import signal

    node = rwal.Node(1, tmp_path / "alone", cluster_id=1, secret=SECRET, voters=[1],
                     tick_ms=10, apply=lambda *_: None, snapshot=lambda: b"",
                     restore=lambda *_: None)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    try:
        wait(lambda: node.status()["role"] == "leader")
        tail = node.tail(node.status()["commit_lsn"] + 1)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            # Started inside the block: however late the signal comes, it lands here.
            timer.start()
            tail.next(timeout=60)
        assert time.monotonic() - started < 5
        timer.join()
        signal.signal(signal.SIGINT, previous)
        lsn, epoch = node.propose_and_wait(b"after the interrupt", timeout=30)
        assert tail.next(timeout=30) == (lsn, epoch, rwal.node.USER, b"after the interrupt")
        tail.close()
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()
        signal.signal(signal.SIGINT, previous)
        node.close()
