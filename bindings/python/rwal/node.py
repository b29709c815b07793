"""rwal.Node: one member of a replicated log (raft over rwal) on authenticated TCP.

    import rwal
    node = rwal.Node(1, "/var/lib/mydb/wal", cluster_id=7, secret=b"...at least 16 bytes...",
                     listen="127.0.0.1:7101", peers={2: "127.0.0.1:7102", 3: "127.0.0.1:7103"},
                     voters=[1, 2, 3], apply=engine.apply, snapshot=engine.snapshot,
                     restore=engine.restore)
    lsn, epoch = node.propose(b"put k v")        # rwal.NotLeaderError on a follower
    node.wait_committed(lsn, epoch, timeout=5)   # rwal.SupersededError if replaced

The engine's callbacks apply, snapshot and restore go together: give all three, or none for a
node without an engine. They and on_leader run one at a time: during Node(...) on the calling
thread (restoring the engine from the latest checkpoint and the records after it), then on the
node's own thread. They must not call the node's blocking methods (propose, propose_and_wait,
wait_committed, read_barrier, change_membership, transfer_leadership, checkpoint, compact,
close): those would wait for that thread, and raise InvalidArgumentError there instead. Nor
may they iterate records(): from restore it raises InvalidArgumentError, from the others it
reads in the middle of the node's round. restore(lsn, epoch, state) is given the state as
bytes: a copy in this process's memory (the library hands over a view of the checkpoint's
file, which a Python object could outlive). With restore_reader=True it is given a
StateReader instead: a binary file over that view, closed when restore returns, which an
engine reads in pieces (a state larger than the memory it may take, copied to a file of its
own). snapshot() returns the state as a bytes-like
object, which a thread of the node's reads into a checkpoint after the callback returned:
bytes and an mmap.mmap opened with access=mmap.ACCESS_READ are read in place and kept alive
until then; anything else (a bytearray, a memoryview) is copied first, since the engine goes
on applying records meanwhile and may change what it views. An mmap of a file the engine wrote
gives a state of any size without holding it in memory; the engine is not told when the node
has read it, so that file must not be truncated or written over in place while the mapping
lives (a shortened file kills the process with SIGBUS when the node reads past its end): write
each state to a new file, or rename a new one over the old name.

A node left open is closed when the interpreter exits (an atexit hook), or when it is garbage
collected (with a ResourceWarning), on a thread of its own: the collecting thread may be the
node's own (inside a callback), which closing would wait for. Close nodes explicitly (or use
them in a with block).

An exception cannot cross the C boundary; it is printed, and then: in apply or restore it stops
the node (the engine could not follow its log: waits and close() then raise ReplicationError
naming the callback and the LSN, proposals and other requests ClosedError;
the record stays committed, and the next open gives the engine the same records again); in
snapshot it abandons that snapshot (the node asks again later); in on_leader it is ignored.

Timeouts are in seconds (int or float, 10 s by default); None (or math.inf) waits as long as
it takes. The constructor's settings named `..._ms` and `..._us` are in those units.
"""

from __future__ import annotations

import atexit
import io
import itertools
import math
import mmap
import sys
import threading
import time
import traceback
import warnings
import weakref
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union, cast

from . import TimeoutError  # noqa: A004 - rwal.TimeoutError, a subclass of the builtin
from . import (
    CompactedError, Error, InvalidArgumentError, NotLeaderError, PanicError, ReplicationError,
    _c_path,
    _adopt, _c_string, _check, _error, _free_unadopted, _Handle, _interruptible_open,
    _log_options, _last_error, _noted_interrupt, _owning_slot, _returning_ok, _seconds, _stable,
    _take_interrupt, _Tail, _uint, _WAIT_SLICE_SECONDS)
from ._rwal_cffi import ffi, lib  # type: ignore[import-not-found]  # built at install

ApplyFn = Callable[[int, int, bytes], None]
# A snapshot may be any buffer (bytes, bytearray, memoryview, mmap: see Node).
SnapshotFn = Callable[[], Union[bytes, bytearray, memoryview, mmap.mmap]]
# `restore` gets the state as bytes, or as a StateReader with restore_reader=True.
RestoreFn = Callable[[int, int, Union[bytes, "StateReader"]], None]
LeaderFn = Callable[[Optional[int], int], None]

__all__ = ["Node", "NodeTail", "StateReader", "USER", "SYSTEM"]

USER = lib.RWAL_RECORD_USER
SYSTEM = lib.RWAL_RECORD_SYSTEM

_CHANGES = {
    "add_voter": lib.RWAL_MEMBERSHIP_ADD_VOTER,
    "add_learner": lib.RWAL_MEMBERSHIP_ADD_LEARNER,
    "remove": lib.RWAL_MEMBERSHIP_REMOVE,
}

_ROLES = {
    lib.RWAL_ROLE_FOLLOWER: "follower",
    lib.RWAL_ROLE_CANDIDATE: "candidate",
    lib.RWAL_ROLE_LEADER: "leader",
}


# On a thread while it runs nodes' callbacks: their engines (see _in_callback).
_callback_thread = threading.local()
# The engines, with the cffi handles their callbacks find them by, of nodes whose open or close
# returned RWAL_ERR_PANIC (a bug in rwal): the node's thread may not have stopped and may still
# call back with the handle (rwal.h, rwal_node_close), so they live until the process ends.
# Freed with the Node object, a later callback read freed memory.
_kept_after_panic: list = []


def _keep_after_panic(node: "Node") -> None:
    _kept_after_panic.append((node._engine, node._engine_handle))


# Every open node, and the ones garbage-collected whose closer thread has not finished: closed
# at exit.
_open_nodes: "weakref.WeakSet[Node]" = weakref.WeakSet()
_closed_at_exit: list = []


@atexit.register
def _close_nodes_at_exit() -> None:
    """Closes the nodes still open while the interpreter can still run their callbacks. What a
    close raises is printed, as for a node collected open, and the others are closed all the
    same (a Ctrl-C during one used to leave the rest open, their threads calling into a
    finalizing interpreter; a failed final sync went unsaid)."""
    for node in list(_open_nodes) + _closed_at_exit:
        try:
            node.close()
        except BaseException:  # noqa: BLE001 - exiting: nothing to raise to
            try:
                sys.stderr.write("rwal: closing rwal.Node %s at exit failed:\n"
                                 % getattr(node, "_id", "?"))
                traceback.print_exc(file=sys.stderr)
            except BaseException:  # noqa: BLE001 - stderr may be gone this late
                pass


def _close_collected(node: "Node") -> None:
    """Closes a node collected open (see Node.__del__); an error of the close is printed, as
    one raised in __del__ would be."""
    try:
        node.close()
    except Exception:  # noqa: BLE001 - nobody to raise to
        sys.stderr.write("rwal: closing a collected rwal.Node failed:\n")
        traceback.print_exc(file=sys.stderr)
    try:
        _closed_at_exit.remove(node)
    except ValueError:
        pass


@contextmanager
def _in_callback(engine):
    """Marks this thread as running a callback of the node whose _Engine is `engine`: its
    close() looks for it among the engines whose callbacks this thread is inside, and a node
    collected meanwhile is closed on a thread of its own (see Node.__del__)."""
    outer = getattr(_callback_thread, "engines", ())
    _callback_thread.engines = outer + (engine,)
    try:
        yield
    finally:
        _callback_thread.engines = outer


class _Engine:
    """The Python callbacks of one node, reached from C through a cffi handle."""

    def __init__(self, apply, snapshot, restore, on_leader, restore_reader) -> None:
        self.apply = apply
        self.snapshot = snapshot
        self.restore = restore
        self.on_leader = on_leader
        # restore is given a StateReader instead of bytes.
        self.restore_reader = restore_reader
        # A KeyboardInterrupt or SystemExit raised in restore or apply: while the node opens
        # they run on the opening thread, where Ctrl-C lands, and Node() raises it again
        # instead of the library's "callback failed".
        self.interrupted = None
        # While the node opens: the exception restore or apply raised there, which Node()
        # chains to the library's "callback failed" (the caller sees why its engine failed).
        # Not kept afterwards: its traceback holds the callback's frames.
        self.opening = True
        self.failed: Optional[BaseException] = None

    def run(self, callback, *args):
        """Calls `callback`, noting an interrupt (or, while the node opens, any exception)
        before it goes to cffi's error handler."""
        try:
            callback(*args)
        except (KeyboardInterrupt, SystemExit) as interrupt:
            self.interrupted = interrupt
            raise
        except Exception as failure:
            if self.opening:
                self.failed = failure
            raise


def _bytes(data, size):
    """A copy of the `size` bytes at `data` (which may be NULL when `size` is 0)."""
    return bytes(ffi.buffer(data, size)) if size else b""


class _StateView:
    """The library's view a StateReader reads: one per restore call, shared by any copy of the
    reader, cleared (under its lock) when the call returns."""

    def __init__(self, data, length: int) -> None:
        self.lock = threading.Lock()
        self.data = data
        self.length = length


class StateReader(io.RawIOBase):
    """The state a restore callback is given when its node was opened with
    restore_reader=True: a read-only, seekable binary file over the engine's part of the
    checkpoint, `length` bytes, read from the library's view of the checkpoint's file (no copy
    of the whole state is made). Valid during the call only: closed when restore returns, after
    which a read raises ValueError; it cannot be copied or pickled. Copy what you need while
    it runs (shutil.copyfileobj to a file of the engine's, say). As for a C engine's view, a
    disk that fails to read a page back is a SIGBUS while it is read."""

    def __init__(self, data, length: int) -> None:
        super().__init__()
        self._view = _StateView(data, length)
        self._at = 0

    @property
    def length(self) -> int:
        """The state's length in bytes."""
        return self._view.length

    def readable(self) -> bool:
        """True while the reader is open (`ValueError` once closed)."""
        self._check_open()
        return True

    def seekable(self) -> bool:
        """True while the reader is open: it seeks anywhere in the state."""
        self._check_open()
        return True

    def _check_open(self) -> None:
        if self.closed or self._view.data is None:
            raise ValueError("the state is readable during restore only: this reader is closed")

    def readinto(self, b) -> int:
        """Copies the next bytes into the writable buffer `b`; returns how many (0 at the
        end)."""
        with memoryview(b) as view, view.cast("B") as out:
            # Held from the check to the copy: the call's return clears the view under it,
            # and another thread reading meanwhile must not copy from a view that is gone.
            with self._view.lock:
                self._check_open()
                n = max(0, min(len(out), self._view.length - self._at))
                if n:
                    out[:n] = ffi.buffer(self._view.data + self._at, n)
                    self._at += n
        return n

    def read(self, size: Optional[int] = -1) -> bytes:
        """At most `size` bytes (all that is left if `size` is None or negative)."""
        self._check_open()
        left = max(0, self._view.length - self._at)
        size = left if size is None or size < 0 else min(size, left)
        buf = bytearray(size)
        n = self.readinto(buf)
        del buf[n:]
        return bytes(buf)

    def readall(self) -> bytes:
        """Everything from the position to the end."""
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Moves to `offset` from the start, the position or the end (`whence`); returns the
        new position. Past the end reads return nothing."""
        self._check_open()
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._view.length}
        if whence not in bases:
            raise ValueError("whence must be io.SEEK_SET, io.SEEK_CUR or io.SEEK_END")
        at = bases[whence] + offset
        if at < 0:
            raise ValueError("negative seek position %d" % at)
        self._at = at
        return at

    def tell(self) -> int:
        """The position, in bytes from the start of the state."""
        self._check_open()
        return self._at

    def close(self) -> None:
        """Closes the reader; the state's memory is no longer reached through it."""
        with self._view.lock:
            self._view.data = None
        super().close()

    def __reduce_ex__(self, protocol):
        raise TypeError("a StateReader views memory of the library's: it cannot be pickled")


def _note_proposed(interrupt: BaseException, lsn, epoch) -> None:
    """Gives a KeyboardInterrupt raised as a proposing call returned (Python sees a pending
    Ctrl-C after the library call, before its outputs are read) the call's outputs as
    `proposed`: (lsn, epoch) if the node took the record or change, None if not, as the
    errors of propose_and_wait() carry them. Before 2026-12-07 the LSN of a record the node
    had taken was lost with the interrupt."""
    setattr(interrupt, "proposed", (lsn[0], epoch[0]) if lsn[0] else None)


def _proposal_unknown_after(error) -> bool:
    """Whether zeros from a propose_and_wait that failed with `error` mean "unknown", not "not
    proposed": after RWAL_ERR_PANIC, or a replication error whose message says the node's
    thread panicked while proposing (include/rwal.h, rwal_node_propose_and_wait)."""
    return isinstance(error, PanicError) or (
        isinstance(error, ReplicationError) and "panicked while proposing" in str(error))


def _print_callback_error(exc_type, exc_value, tb):
    """Prints what a callback raised to stderr (it cannot cross the C boundary), except an
    interrupt on a thread opening a node, which the open raises (`_noted_interrupt`): Ctrl-C
    during a long replay lands at the entry of the next apply or restore, outside the engine's
    code, and used to end the open with ReplicationError."""
    if _noted_interrupt(exc_type, exc_value):
        return
    sys.stderr.write("rwal: a node callback raised:\n")
    traceback.print_exception(exc_type, exc_value, tb, file=sys.stderr)


# Each returns 0, or -1 when the callback raised: the node then stops (apply, restore) or
# abandons the snapshot.
@ffi.def_extern(error=-1, onerror=_print_callback_error)
def _rwal_py_apply(userdata, lsn, epoch, data, size):
    engine = ffi.from_handle(userdata)
    with _in_callback(engine):
        engine.run(engine.apply, lsn, epoch, _bytes(data, size))
    return 0


# The states snapshot callbacks handed over in place, kept alive until the node releases them
# (rwal_snapshot_sink_set_bytes): key -> (object, cffi buffer over it).
_lent_states: Dict[int, tuple] = {}
_lent_lock = threading.Lock()
_lent_keys = itertools.count(1)


@ffi.def_extern(error=-1, onerror=_print_callback_error)
def _rwal_py_snapshot(userdata, sink):
    engine = ffi.from_handle(userdata)
    with _in_callback(engine):
        # A bytes-like object only: bytes(n) of an int would be n zero bytes, seeding
        # followers with them.
        state = engine.snapshot()
        with memoryview(state) as view:
            # Read in place: bytes, and a read-only mmap (a file's pages, which the node reads
            # after this returns). Anything else is copied: the engine goes on applying records
            # meanwhile, and a read-only view of a bytearray it changes (or a strided view,
            # which cannot be handed over as it is) would seed a follower with a torn state.
            in_place = type(state) is bytes or (
                isinstance(state, mmap.mmap) and view.readonly and view.c_contiguous)
            if not in_place:
                state = view.tobytes()
        buf = ffi.from_buffer(state)
        key = next(_lent_keys)
        with _lent_lock:
            _lent_states[key] = (state, buf)
        status = lib.rwal_snapshot_sink_set_bytes(sink, ffi.cast("const uint8_t *", buf),
                                                  len(buf), lib._rwal_py_release,
                                                  ffi.cast("void *", key))
        if status != 0:
            with _lent_lock:
                del _lent_states[key]
    return 0 if status == 0 else -1


@ffi.def_extern(onerror=_print_callback_error)
def _rwal_py_release(release_userdata):
    """The node no longer reads a state handed over in place (on one of its threads)."""
    with _lent_lock:
        lent = _lent_states.pop(int(ffi.cast("uintptr_t", release_userdata)), None)
    # Dropped outside the lock: a collected object may run code of its own.
    del lent


@ffi.def_extern(error=-1, onerror=_print_callback_error)
def _rwal_py_restore(userdata, lsn, epoch, data, size):
    engine = ffi.from_handle(userdata)
    with _in_callback(engine):
        if not engine.restore_reader:
            engine.run(engine.restore, lsn, epoch, _bytes(data, size))
            return 0
        # Closed on the way out: `data` is the library's view, valid during this call only.
        with StateReader(data, size) as state:
            engine.run(engine.restore, lsn, epoch, state)
    return 0


@ffi.def_extern(onerror=_print_callback_error)
def _rwal_py_leader(userdata, leader, term):
    engine = ffi.from_handle(userdata)
    if engine.on_leader is not None:
        with _in_callback(engine):
            engine.on_leader(leader or None, term)


class Node(_Handle):
    """A running member of a replicated log; see the module docs."""

    _what = "node"
    _warn_unclosed = False  # see __del__
    # Bound now: a node closed late in the interpreter's shutdown may find the module's
    # globals cleared.
    _close_node = staticmethod(lib.rwal_node_close)

    @staticmethod
    def _stop_node(handle, _shutdown=lib.rwal_node_shutdown, _ok=lib.RWAL_OK,
                   _refused=lib.RWAL_ERR_INVALID_ARGUMENT, _error=_error):
        """close()'s first step (see _Handle._close_with): stops the node, which ends the waits
        of other threads' calls in the library at once, so that close() does not wait for their
        timeouts. Returns the error of the stop (the log's final sync, the node's failure) for
        close() to raise once the node is freed: rwal_node_close reports only the node's
        failure after it. A refusal (on the node's own thread) stops nothing: raised, it keeps
        the node open."""
        status = _shutdown(handle)
        if status == _refused:
            raise _error(status)
        return None if status == _ok else _error(status)

    def __init__(
        self,
        node_id: int,
        path,
        *,
        cluster_id: int,
        secret: bytes,
        listen: str = "127.0.0.1:0",
        peers: Optional[Dict[int, str]] = None,
        voters: Optional[Iterable[int]] = None,
        join: bool = False,
        tick_ms: int = 10,
        sync_stall_limit_ms: int = 1000,
        segment_size: Optional[int] = None,
        backend: Optional[str] = None,
        recovery: Optional[str] = None,
        commit_delay_us: Optional[int] = None,
        snapshot_bytes_max: Optional[int] = None,
        snapshot_timeout_ms: Optional[int] = None,
        apply: Optional[ApplyFn] = None,
        snapshot: Optional[SnapshotFn] = None,
        restore: Optional[RestoreFn] = None,
        on_leader: Optional[LeaderFn] = None,
        restore_reader: bool = False,
    ) -> None:
        """Opens node `node_id` with its log in directory `path`. `peers` maps the other
        members' ids to their peer addresses ("IP:PORT"; more with add_peer); `voters` are the
        founding voters, to give on the first start of a new cluster's members only; `join`
        starts empty, waiting to be added by the leader. A node whose directory holds no log,
        given neither, refuses to open (InvalidArgumentError): a member restarted with the
        founding voters after losing its directory would found the cluster anew, and its vote
        could elect a leader that lacks acknowledged writes. `tick_ms` is raft's tick (1 to
        60000 ms: an election after 10 to 20 ticks without a leader). A leader whose log sync has not
        returned for `sync_stall_limit_ms` (never less than the longest election timeout, 20
        ticks; 0: never) hands its leadership to another voter: a leader whose disk hangs
        commits nothing. `segment_size`, `backend`, `recovery` and `commit_delay_us` are the
        log's, as for rwal.open, but the backend is "staged" by default (a replica syncs at
        every round, docs/replication.md section 3.4), and the recovery modes that drop
        records ("point_in_time", "skip_corrupted") are refused: a replica must not forget
        what it acknowledged. `snapshot_bytes_max`
        (default 1 GiB) is the largest snapshot this node takes from a leader: it is written
        to a file beside the log as it arrives, and a larger one is refused; a node that only a snapshot can catch up (a
        joining one, one the leader compacted past) then stays behind. `snapshot_timeout_ms`
        (default 50 ticks, above 0) is how long a snapshot stream to a follower may go without
        progress before the leader starts another: raise it, on every member, for links that
        carry less than about a third of a socket's send buffer in that time
        (docs/replication.md section 4.1). `restore_reader=True` gives restore a StateReader
        (a binary file over the checkpoint's view, valid during the call) instead of bytes."""
        self._closed = True  # until opened: nothing for __del__ to close
        opts_out = ffi.new("rwal_node_options **")
        _check(lib.rwal_node_options_new(_uint(node_id, "node_id"), _c_path(path), opts_out))
        opts = ffi.gc(opts_out[0], lib.rwal_node_options_free)
        # bytearray and memoryview too (cffi takes bytes only); not bytes(secret), which makes
        # an int into that many zero bytes.
        secret = memoryview(secret).tobytes()
        _check(lib.rwal_node_options_set_cluster(opts, _uint(cluster_id, "cluster_id"), secret,
                                                 len(secret)))
        _check(lib.rwal_node_options_set_listen(opts, _c_string(listen, "listen")))
        peers = dict(peers or {})
        for peer, addr in peers.items():
            _check(lib.rwal_node_options_add_peer(opts, _uint(peer, "peer id"),
                                                  _c_string(addr, "peer address")))
        if not isinstance(join, bool):
            # Not bool(join): join="no" would join.
            raise TypeError("join must be a bool, not %s" % type(join).__name__)
        if voters is not None or join:
            ids = sorted({_uint(voter, "voter id") for voter in voters or ()})
            id_array = ffi.new("uint64_t[]", ids)
            _check(lib.rwal_node_options_set_voters(opts, id_array, len(ids), join))
        _check(lib.rwal_node_options_set_tick_ms(opts, _uint(tick_ms, "tick_ms", 32)))
        _check(lib.rwal_node_options_set_sync_stall_limit_ms(
            opts, _uint(sync_stall_limit_ms, "sync_stall_limit_ms", 32)))
        if snapshot_bytes_max is not None:
            _check(lib.rwal_node_options_set_snapshot_bytes_max(
                opts, _uint(snapshot_bytes_max, "snapshot_bytes_max")))
        if snapshot_timeout_ms is not None:
            _check(lib.rwal_node_options_set_snapshot_timeout_ms(
                opts, _uint(snapshot_timeout_ms, "snapshot_timeout_ms", 32)))
        if any(option is not None for option in (segment_size, backend, recovery,
                                                 commit_delay_us)):
            # These replace the node's log options whole, backend included, so they name the
            # node's default backend when none is given.
            log_opts = _log_options(segment_size, "staged" if backend is None else backend,
                                    recovery, commit_delay_us)
            _check(lib.rwal_node_options_set_log_options(opts, log_opts))
        if not isinstance(restore_reader, bool):
            # Not bool(restore_reader): "no" would hand restore a StateReader.
            raise TypeError("restore_reader must be a bool, not %s"
                            % type(restore_reader).__name__)
        for name, callback in (("apply", apply), ("snapshot", snapshot), ("restore", restore),
                               ("on_leader", on_leader)):
            if callback is not None and not callable(callback):
                # Else the node opened, and stopped at its first committed record.
                raise TypeError("%s must be callable (or None), not %s"
                                % (name, type(callback).__name__))
        self._engine = _Engine(apply, snapshot, restore, on_leader, restore_reader)
        self._engine_handle = ffi.new_handle(self._engine)
        # A callback not given is NULL: the library refuses an engine with only some of
        # apply, snapshot and restore, and naming the missing one.
        _check(lib.rwal_node_options_set_callbacks(
            opts,
            lib._rwal_py_apply if apply is not None else ffi.NULL,
            lib._rwal_py_snapshot if snapshot is not None else ffi.NULL,
            lib._rwal_py_restore if restore is not None else ffi.NULL,
            lib._rwal_py_leader, self._engine_handle))
        self._id = node_id
        out = ffi.new("rwal_node **")
        def close_unadopted(handle):
            if lib.rwal_node_close(handle) == lib.RWAL_ERR_PANIC:
                _keep_after_panic(self)

        with _interruptible_open():
            try:
                _check(lib.rwal_node_open(opts, out))
                self._open(out[0])
            except BaseException as failure:
                if isinstance(failure, PanicError):
                    _keep_after_panic(self)
                _free_unadopted(self, out, close_unadopted)
                interrupted = self._engine.interrupted or _take_interrupt()
                if interrupted is not None and failure is not interrupted:
                    # Ctrl-C (or sys.exit) in restore or apply, or at their entry, while the
                    # node opened: the caller asked to stop, not to be told that the engine
                    # failed.
                    raise interrupted from failure
                engine_failed, self._engine.failed = self._engine.failed, None
                if engine_failed is not None and failure.__cause__ is None:
                    # The library says which callback failed; this is why.
                    raise failure from engine_failed
                raise
            finally:
                self._engine.opening = False
                self._engine.failed = None
            # Caught by a callback that did not fail the open (a log message's).
            interrupted = _take_interrupt()
        if interrupted is not None:
            try:
                self.close()
            finally:
                raise interrupted
        _open_nodes.add(self)

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or self._left_to_the_opener():
            return
        try:
            warnings.warn(f"rwal.Node {self._id} was not closed", ResourceWarning,
                          stacklevel=1)
        except Exception:  # noqa: BLE001 - late in shutdown, warnings may be gone
            pass
        # Never closed on the thread that collects it. That may be a node's own thread (inside
        # a callback, or while a callback's error is printed), and close() would wait for that
        # very thread; or a thread that holds a lock the node's apply callback waits for (an
        # engine's lock, the engine holding the node: a cycle collected there), which close()
        # would wait for too. Closed on a thread of its own, which waits for the callback under
        # way to return (until 2026-12-07 a node collected inside a callback was left running
        # until the interpreter exited: a voting member holding its port and its directory),
        # and at exit if that has not finished (close() is safe twice).
        on_a_node_thread = bool(getattr(_callback_thread, "engines", ())) or isinstance(
            threading.current_thread(), threading._DummyThread)
        _closed_at_exit.append(self)
        try:
            threading.Thread(target=_close_collected, args=(self,),
                             name="rwal-node-%d-closer" % self._id, daemon=True).start()
        except RuntimeError:  # the interpreter is shutting down: no new threads
            if on_a_node_thread:
                return  # closed at exit, where the thread is not the node's
            _closed_at_exit.remove(self)
            super().__del__()

    def _enter(self, entered: list):
        """As for every handle, except in one of this node's own callbacks while close() runs:
        close() waits for the node's thread, so the handle outlives the callback, and a call
        the node allows from its thread (status, leader, ...) goes through instead of raising
        ClosedError into the callback, which would stop the node as failed."""
        own_callback = any(e is getattr(self, "_engine", None)
                           for e in getattr(_callback_thread, "engines", ()))
        if not own_callback:
            return super()._enter(entered)
        with self._lock:
            # Counted as _Handle._enter counts (this thread's count first).
            self._mine.calls = getattr(self._mine, "calls", 0) + 1
            self._calls += 1
            entered.append(True)
        return self._handle

    def _call(self, function, *args) -> None:
        entered: List[bool] = []
        try:
            handle = self._enter(entered)
            status = function(handle, *args)
            if status == lib.RWAL_ERR_NOT_LEADER:
                self._raise_not_leader(handle)
            _check(status)
        finally:
            if entered:
                self._exit()

    def _raise_not_leader(self, handle) -> None:
        message = _last_error()
        leader = ffi.new("uint64_t *")
        buf = ffi.new("char[]", 128)
        size = ffi.new("size_t *")
        if lib.rwal_node_leader(handle, leader, buf, 128, size) == lib.RWAL_OK:
            addr = ffi.string(buf).decode() or None
            raise NotLeaderError(lib.RWAL_ERR_NOT_LEADER, message, leader[0] or None, addr)
        raise NotLeaderError(lib.RWAL_ERR_NOT_LEADER, message, None, None)

    @property
    def local_addr(self) -> str:
        """The "IP:PORT" this node accepts peers on."""
        buf = ffi.new("char[]", 128)
        size = ffi.new("size_t *")
        self._call(lib.rwal_node_local_addr, buf, 128, size)
        return ffi.string(buf).decode()

    def add_peer(self, peer: int, addr: str) -> None:
        """Adds a peer (or changes its address) while the node runs. A peer added again at
        the address it has keeps its connection."""
        self._call(lib.rwal_node_add_peer, _uint(peer, "peer"), _c_string(addr, "peer address"))

    def propose(self, data) -> Tuple[int, int]:
        """Proposes a record on the leader; returns the (lsn, epoch) it will have if it
        commits. rwal.NotLeaderError (naming the leader) on a follower; rwal.BusyError when
        too much waits to be committed. Blocks until the node's thread takes the record, with
        no timeout, in one library call: Ctrl-C waits for it (a close() on another thread ends
        it with ClosedError). A KeyboardInterrupt raised as the call returns carries
        `proposed`: the (lsn, epoch) if the record was proposed (wait_committed() on them),
        None if not."""
        buf = ffi.from_buffer(_stable(data))
        lsn = ffi.new("uint64_t *")
        epoch = ffi.new("uint64_t *")
        try:
            self._call(lib.rwal_node_propose, ffi.cast("const uint8_t *", buf), len(buf), lsn,
                       epoch)
        except KeyboardInterrupt as interrupt:
            _note_proposed(interrupt, lsn, epoch)
            raise
        return lsn[0], epoch[0]

    def wait_committed(self, lsn: int, epoch: int, timeout: Optional[float] = 10.0) -> None:
        """Returns once the entry (lsn, epoch) is committed by a quorum; rwal.SupersededError
        once another entry is committed there (this one never will be); rwal.TimeoutError if
        neither happened in time. ClosedError or ReplicationError if the node stopped first:
        the entry's outcome is then unknown here (it may commit on the other members). A
        commit seen before the stop is still reported as one. CompactedError if `lsn` is
        committed but was compacted away before its epoch could be read: committed, but
        whether it is this entry is unknown (not a failure of the write). Waits in slices
        (see _wait_in_slices): Ctrl-C is not held off for the whole timeout."""
        lsn, epoch = _uint(lsn, "lsn"), _uint(epoch, "epoch")
        self._wait_in_slices(
            timeout, "entry %d of epoch %d not committed" % (lsn, epoch),
            lambda millis: self._call(lib.rwal_node_wait_committed, lsn, epoch, millis))

    def _wait_in_slices(self, timeout: Optional[float], what: str, wait,
                        growing: bool = False):
        """Runs `wait(millis)`, a wait the library may repeat, in slices of at most
        _WAIT_SLICE_SECONDS until it returns or `timeout` has passed. The library waits
        without the GIL; between slices Python runs, so a KeyboardInterrupt is raised within
        a slice: with math.inf it waited 49.7 days. (A close() on another thread ends the
        wait in the library at once.) `growing`: each slice twice as long as the one before,
        for a wait that starts over with each call (a read point asked for again), which
        slices of one length could cut short every time (up to _GROWN_SLICE_SECONDS, so that
        Ctrl-C is still seen within one)."""
        # Checked as for any timeout, and taken as _seconds takes it: float() of an integer
        # beyond any float (10**400, "for ever") raised OverflowError here.
        seconds = math.inf if timeout is None else _seconds(timeout)
        _millis(seconds)
        deadline = time.monotonic() + seconds
        slice_seconds = _WAIT_SLICE_SECONDS
        while True:
            left = max(0.0, deadline - time.monotonic())
            this_slice = min(left, slice_seconds)
            if growing:
                slice_seconds = min(slice_seconds * 2, _GROWN_SLICE_SECONDS)
            try:
                return wait(_millis(this_slice))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(lib.RWAL_ERR_TIMEOUT, "%s within %g s" % (
                        what, math.inf if timeout is None else timeout)) from None

    def propose_and_wait(self, data, timeout: Optional[float] = 10.0) -> Tuple[int, int]:
        """propose() then wait_committed() in one call, with one wake-up instead of two;
        returns the committed record's (lsn, epoch). NotLeaderError, InvalidArgumentError and
        BusyError mean it was not proposed, SupersededError that it never commits. Every
        error's `proposed` is the record's (lsn, epoch) if it was proposed, None if the node
        had not taken it: it was not proposed and never will be (unless `proposed_unknown` is
        True: after a PanicError, or a ReplicationError saying the node's thread panicked
        while proposing, whether it was taken is unknown). A proposed record may still
        commit after a TimeoutError (wait_committed() waits on), a ClosedError (the node
        closed while this waited) or a ReplicationError: on the other members, or at the
        node's next open. One library call: Ctrl-C waits for it to return, so keep its timeout
        short (or use the two calls, whose wait_committed() sees Ctrl-C within a slice); a
        close() on another thread ends it with ClosedError. A timeout of 0 gives up unless the
        node's thread has already taken the record (it almost never has: TimeoutError, not
        proposed); to propose without waiting, call propose(). A KeyboardInterrupt raised as
        the call returns carries `proposed` too."""
        buf = ffi.from_buffer(_stable(data))
        lsn = ffi.new("uint64_t *")
        epoch = ffi.new("uint64_t *")
        try:
            self._call(lib.rwal_node_propose_and_wait, ffi.cast("const uint8_t *", buf),
                       len(buf), _millis(timeout), lsn, epoch)
        except Error as e:
            e.proposed = (lsn[0], epoch[0]) if lsn[0] else None
            e.proposed_unknown = e.proposed is None and _proposal_unknown_after(e)
            raise
        except KeyboardInterrupt as interrupt:
            _note_proposed(interrupt, lsn, epoch)
            raise
        return lsn[0], epoch[0]

    def leader(self) -> Tuple[Optional[int], Optional[str]]:
        """(id, peer address) of the leader this node knows of, or (None, None); while this
        node hands its leadership over, of the node it hands it to (where proposals go)."""
        leader = ffi.new("uint64_t *")
        buf = ffi.new("char[]", 128)
        size = ffi.new("size_t *")
        self._call(lib.rwal_node_leader, leader, buf, 128, size)
        return (leader[0] or None), (ffi.string(buf).decode() or None)

    def status(self) -> dict:
        """id, role ("leader", "follower", "candidate"), term, leader, commit_lsn, applied_lsn,
        first_lsn, last_lsn, voters, learners (counts)."""
        out = ffi.new("rwal_node_status *")
        self._call(lib.rwal_node_status_get, out)
        status = {name: getattr(out, name) for name in (
            "id", "term", "leader", "commit_lsn", "applied_lsn", "first_lsn", "last_lsn",
            "voters", "learners")}
        status["role"] = _ROLES.get(out.role, "unknown")
        status["leader"] = status["leader"] or None
        return status

    def members(self) -> Tuple[List[int], List[int]]:
        """(voter ids, learner ids), each ascending: the membership this node has applied. A
        membership change shows here once status()["applied_lsn"] reaches its LSN (whether it
        was made at all: wait_committed with the (lsn, epoch) change_membership returned)."""
        count = ffi.new("size_t *")
        voters = ffi.new("size_t *")
        cap = 0  # asks for the count first: the retry below is the path every call takes
        while True:
            ids = ffi.new("uint64_t[]", cap) if cap else ffi.NULL
            try:
                self._call(lib.rwal_node_members, ids, cap, count, voters)
                if count[0] == 0:
                    return [], []  # a joiner before its first membership (ids is NULL)
                return list(ids[0:voters[0]]), list(ids[voters[0]:count[0]])
            except Error as e:
                if e.code != lib.RWAL_ERR_BUFFER_TOO_SMALL:
                    raise
                cap = count[0]  # as many as the membership holds now

    def read_barrier(self, timeout: Optional[float] = 10.0) -> int:
        """A linearizable read point: once it returns, this node has applied every write
        acknowledged before the call, and the LSN it returns is that point. Works on followers
        (it asks the leader). rwal.TimeoutError if no point was confirmed and applied in time,
        also on a node that knows no leader (the node asks again while it waits). Waits in
        slices, so that Ctrl-C is raised within one; each slice asks for a new read point (a
        later one serves this call too), so the slices grow, doubling from 0.2 s up to 5 s: a
        confirmation that takes longer than one slice (a slow link to the leader, a follower
        whose apply lags) still succeeds within the timeout."""
        lsn = ffi.new("uint64_t *")
        self._wait_in_slices(
            timeout, "no read point confirmed",
            lambda millis: self._call(lib.rwal_node_read_barrier, millis, lsn), growing=True)
        return lsn[0]

    def records(self, from_lsn: Optional[int] = None) -> Iterator[Tuple[int, int, int, bytes]]:
        """(lsn, epoch, kind, data) of committed records from `from_lsn` (default: the first
        retained), up to the commit LSN; kind is rwal.node.USER or rwal.node.SYSTEM. The
        argument is checked at the call; the reader opens at the first record asked for
        (CompactedError there if compaction removed `from_lsn`), and an iteration falls behind
        compaction with CompactedError: it holds nothing back. While a snapshot install holds
        the log it waits for the install (which runs restore): do not iterate holding a lock
        your restore takes."""
        if from_lsn is not None:
            from_lsn = _uint(from_lsn, "from_lsn")
        return self._records(from_lsn)

    def tail(self, from_lsn: Optional[int] = None) -> "NodeTail":
        """A reader that waits for committed records (a change feed, a shipper), on any
        member, from `from_lsn` (default: the first retained; status()["commit_lsn"] + 1 for
        only the records to come): see NodeTail."""
        if from_lsn is not None:
            from_lsn = _uint(from_lsn, "from_lsn")
        out = ffi.new("rwal_node_reader **")
        return _adopt(NodeTail, lambda: (self._open_reader(from_lsn, out), self), out,
                      NodeTail._free)

    def _open_reader(self, from_lsn: Optional[int], out) -> int:
        """Opens a library reader into `out` at `from_lsn` (None: the first retained record)
        and returns the LSN it opened at."""
        for attempt in range(100):
            start = self.status()["first_lsn"] if from_lsn is None else from_lsn
            try:
                self._call(lib.rwal_node_reader_open, start, out)
                return start
            except CompactedError:
                # Compacted between the look at the first LSN and the open: look again.
                if from_lsn is not None or attempt == 99:
                    raise
        raise AssertionError("unreachable: the last attempt raises")

    def _records(self, from_lsn: Optional[int]) -> Iterator[Tuple[int, int, int, bytes]]:
        slot = _owning_slot("rwal_node_reader **", lib._rwal_py_free_node_reader_slot)
        self._open_reader(from_lsn, slot)
        reader = slot[0]
        lsn = ffi.new("uint64_t *")
        epoch = ffi.new("uint64_t *")
        kind = ffi.new("uint32_t *")
        data = ffi.new("const uint8_t **")
        size = ffi.new("size_t *")
        try:
            while True:
                entered: List[bool] = []
                try:
                    self._enter(entered)
                    status = lib.rwal_node_reader_next(reader, lsn, epoch, kind, data, size)
                    if status == lib.RWAL_END:
                        return
                    _check(status)
                    payload = bytes(ffi.buffer(data[0], size[0])) if size[0] else b""
                finally:
                    if entered:
                        self._exit()
                yield lsn[0], epoch[0], kind[0], payload
        finally:
            ffi.release(slot)

    def change_membership(self, change: str, peer: int,
                          addr: Optional[str] = None) -> Tuple[int, int]:
        """"add_learner", "add_voter" (promote a learner that has caught up; a node is added as
        a learner first) or "remove" node `peer` (for an addition `addr`, its peer address, is
        added to this node's peers: None only if this node knows it already); on the leader;
        returns the (lsn, epoch) the change entry will have if it commits, as propose() does:
        wait_committed(lsn, epoch) returns once the change is made, and raises
        rwal.SupersededError if a new leader's entry replaced it (nothing changed). A node has
        taken it once its status's applied_lsn reaches lsn. A change of nothing, or making a
        learner of a voter, raises InvalidArgumentError; rwal.BusyError (nothing proposed: ask
        again later) while another change is not applied yet, for "add_voter" while the
        learner has not replicated up to the commit LSN, or for a promotion or removal that
        would leave voters of which no majority was heard from within the last election
        timeout (the cluster could commit nothing until they answer). An addr that is not an
        IP address and a port raises InvalidArgumentError. A KeyboardInterrupt raised as the
        call returns carries `proposed`, as propose()'s does. The change carries an added member's
        address (the one given, or the one this node knew): every member that applies it and
        has no address for that node dials it there, so whichever leads later reaches it. The
        checkpoints carry the addresses too: a node seeded by a snapshot, or restarted after a
        checkpoint past the change, learns them from it. A joiner still needs the members'
        addresses at open (peers=), and a member added without an address is known only where
        add_peer gives it."""
        if change not in _CHANGES:
            raise InvalidArgumentError(lib.RWAL_ERR_INVALID_ARGUMENT,
                                       "unknown change %r (one of %s)" % (change, ", ".join(_CHANGES)))
        lsn = ffi.new("uint64_t *")
        epoch = ffi.new("uint64_t *")
        try:
            self._call(lib.rwal_node_change_membership, _CHANGES[change], _uint(peer, "peer"),
                       _c_string(addr, "peer address") if addr is not None else ffi.NULL, lsn,
                       epoch)
        except KeyboardInterrupt as interrupt:
            _note_proposed(interrupt, lsn, epoch)
            raise
        return lsn[0], epoch[0]

    def transfer_leadership(self, to: Optional[int] = None,
                            timeout: Optional[float] = 10.0) -> int:
        """Hands leadership to voter `to` (None: the live voter with the most replicated
        log), e.g. before close(); returns the new leader's id once this node knows it.
        rwal.NotLeaderError on a follower; rwal.TimeoutError if leadership did not move. One
        library call: Ctrl-C waits for it, up to its timeout (a close() on another thread ends
        it with ClosedError)."""
        leader = ffi.new("uint64_t *")
        to = 0 if to is None else _uint(to, "to")
        self._call(lib.rwal_node_transfer_leadership, to, _millis(timeout), leader)
        return leader[0]

    def checkpoint(self, lsn: int, state) -> None:
        """Writes a checkpoint at `lsn` (at most the applied LSN) with the engine's state.
        The node never checkpoints to bound its log: call this now and then (then compact()),
        or the log grows without end and every open replays it all through apply.
        `state` must be the state after exactly the records up to `lsn`: copy both together,
        under the lock your apply callback holds, from an LSN apply records as it goes (not
        from status(), read apart from the state: records applied between the two would be
        applied again after a restore from this checkpoint); then release the lock and call
        this (it waits for the node's thread, which may be waiting for that lock in apply).
        rwal.AbandonedError if the node began installing a leader's snapshot meanwhile: nothing
        was kept, and the node goes on. A mutable buffer (a bytearray the apply callback
        changes) is copied first: its checksum and its bytes are read one after the other."""
        lsn = _uint(lsn, "lsn")
        buf = ffi.from_buffer(_stable(state))
        self._call(lib.rwal_node_checkpoint, lsn, ffi.cast("const uint8_t *", buf), len(buf))

    def compact(self) -> None:
        """Removes the log segments that neither the latest checkpoint nor a follower needs.
        Record iterators hold nothing back: one that falls behind raises rwal.CompactedError.
        InvalidArgumentError from one of the node's callbacks."""
        self._call(lib.rwal_node_compact)

    def close(self) -> None:
        """Stops the node and closes its log. Calls in progress on other threads that wait on
        the node (propose(), propose_and_wait(), wait_committed(), read_barrier(),
        transfer_leadership()) end at once with ClosedError (one whose record committed just
        before the stop may still return it); close() waits for them to return, then frees
        the node. Twice is fine. InvalidArgumentError from one of this node's own callbacks,
        where it would wait for itself: the node stays open."""
        if any(e is getattr(self, "_engine", None) for e in getattr(_callback_thread, "engines",
                                                                    ())):
            raise InvalidArgumentError(
                lib.RWAL_ERR_INVALID_ARGUMENT, "close was called from one of this node's own "
                "callbacks, where it would wait for itself: the node stays open")
        # A panic of the stop or of the free keeps the engine (see _kept_after_panic), seen at
        # the call: the error close() raises may be the other step's, and the free may be
        # deferred to another thread's last call. Bound now, as _close_node is.
        close_node, stop_node, keep, panicked = (
            self._close_node, self._stop_node, _keep_after_panic, lib.RWAL_ERR_PANIC)

        def free(handle):
            status = close_node(handle)
            if status == panicked:
                keep(self)
            return status

        def stop(handle):
            error = stop_node(handle)
            if error is not None and error.code == panicked:
                keep(self)
            return error

        # InvalidArgumentError: the library refused, called on the node's thread after all
        # (outside the callbacks seen above). The node stays open, and so does this handle.
        self._close_with(free, stays_open_on=InvalidArgumentError, stop=stop)


# The longest slice of a wait whose slices grow (see Node._wait_in_slices).
_GROWN_SLICE_SECONDS = 5.0


class NodeTail(_Tail):
    """A reader that waits for committed records, from Node.tail(): next() returns the next
    committed record, (lsn, epoch, kind, data) as records() gives them, waiting for it to
    commit; iterating over it does the same and never ends by itself. The node's close()
    ends a waiting tail with ClosedError (records not read yet included); a node stopped by
    its engine's failure and not yet closed still gives the records it committed, then
    ReplicationError; a log poisoned by a failed write or sync raises PoisonedError at once.
    ClosedError too once the tail itself is closed (from another thread: within 0.2 s).
    Waits are cut in slices of 0.2 s in the library, also while a snapshot install holds the
    log, so Ctrl-C is raised within one, and a record the library handed over as the
    interrupt came is returned by the next call. Called from one of the node's callbacks it
    returns what is committed, then raises InvalidArgumentError rather than wait (a timeout
    of 0 returns None; from restore it raises at once): the commit it would wait for is that
    thread's to make.

    It holds nothing in the log between calls: compaction, or a snapshot install on this
    node, may pass it (CompactedError). It starts at most at the node's last LSN + 1
    (NotFoundError past it). It keeps its node from being collected. One thread reads at a time: a next() on another
    thread waits for the one in progress, up to its own timeout."""

    _what = "node tail"
    _free = staticmethod(_returning_ok(lib.rwal_node_reader_free))

    def __init__(self, handle, from_lsn: int, node: "Node") -> None:
        self._start(from_lsn)
        self._node: Optional[Node] = node
        self._epoch = ffi.new("uint64_t *")
        self._kind = ffi.new("uint32_t *")
        self._open(handle)  # last: see _adopt

    def _wait_in_library(self, handle, seconds: float) -> int:
        return lib.rwal_node_reader_next_timeout(
            handle, math.ceil(seconds * 1000), self._lsn, self._epoch, self._kind, self._data,
            self._size)

    def _record(self, data: bytes) -> Tuple[int, int, int, bytes]:
        return self._lsn[0], self._epoch[0], self._kind[0], data

    def _waits_for_itself(self) -> bool:
        engine = getattr(self._node, "_engine", None)
        return any(e is engine for e in getattr(_callback_thread, "engines", ()))

    def next(self, timeout: Optional[float] = None) -> Optional[Tuple[int, int, int, bytes]]:
        """The next committed record as (lsn, epoch, kind, data), waiting up to `timeout`
        seconds for it to commit (None: as long as it takes; 0: only what is committed now);
        None if none did in time."""
        return super().next(timeout)

    def __iter__(self) -> "NodeTail":
        return self

    def __next__(self) -> Tuple[int, int, int, bytes]:
        # Without a timeout next() waits for a record (or raises): never None here.
        return cast(Tuple[int, int, int, bytes], self.next())

    def close(self) -> None:
        """Frees the reader (and lets go of its node); waits for a next() in progress on
        another thread to end its slice. Twice is fine."""
        self._close_with(self._free)
        self._node = None


def _millis(seconds: Optional[float]) -> int:
    """A timeout in seconds as the library's milliseconds: rounded up (0.0004 s waits 1 ms,
    not none at all); None and math.inf, "as long as the library can", to its longest (49.7
    days). Negative and NaN timeouts are refused."""
    seconds = math.inf if seconds is None else _seconds(seconds)
    # Clamped before ceil(): math.inf is not an integer.
    return math.ceil(min(seconds, 0xFFFFFFFF / 1000) * 1000)
