"""rwal: a replicated write-ahead log, from Python.

    import rwal
    with rwal.open("/var/lib/mydb/wal") as log:
        lsn = log.append(b"put k v")
        log.commit(lsn)                      # durable once this returns
        for lsn, data in log.records():      # every durable record
            ...
        with log.tail(log.durable_lsn + 1) as tail:
            record = tail.next(timeout=1.0)  # the next record to become durable, or None

rwal.open()'s options choose the I/O backend and what recovery does with damage;
Log.recovery_report() says what it found. A replicated log (raft over rwal, authenticated TCP
between members) is rwal.Node; see rwal.node's docs.

Calls release the GIL while they run in the library (commit and reads may block). A Log may be
shared between threads; close() waits for calls in progress on other threads to finish, and
any call after it raises rwal.ClosedError.
"""

from __future__ import annotations

import atexit
import builtins
import errno
import io
import operator
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, TypeVar, Union, cast

try:
    from ._rwal_cffi import ffi, lib  # type: ignore[import-not-found]  # built at install
except ModuleNotFoundError as e:  # pragma: no cover - depends on how Python was started
    if e.name != __name__ + "._rwal_cffi":
        raise
    raise ModuleNotFoundError(
        f"rwal's compiled extension is missing from {os.path.dirname(__file__)}: this is the "
        "source folder, not the installed package. Install it (pip install ./bindings/python) "
        "and run Python from another directory than bindings/python",
        name=e.name,
    ) from e

# `open` and `TimeoutError` are left out: `from rwal import *` would shadow the built-ins of
# those names (an `open("notes.txt")` creating a log). They are `rwal.open` and
# `rwal.TimeoutError`.
__all__ = [
    "Log", "RecoveryReport", "Tail", "Pin", "CheckpointWriter", "SnapshotReader",
    "Error", "InvalidArgumentError", "IoError", "CorruptedError", "PoisonedError",
    "NoSpaceError", "LockedError", "CompactedError", "NotFoundError", "UnsupportedError",
    "PanicError", "NoLogError", "PinnedError", "ClosedError", "NotLeaderError",
    "SupersededError", "BusyError", "ReplicationError", "AbandonedError", "NotDurableError",
    "Node", "NodeTail", "StateReader", "log_to", "__version__",
]

__version__: str = ffi.string(lib.rwal_version()).decode()

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
BytesLike = Union[bytes, bytearray, memoryview]


def _stable(data):
    """`data` itself if it cannot change while the library reads it (a read-only buffer, such
    as bytes), else a copy: a record's checksum and its bytes are read from the buffer one after
    the other, and another thread changing a bytearray in between (the GIL is released during
    the call) would store a record that fails its own checksum. A read-only view of memory that
    something else changes (memoryview.toreadonly() of a bytearray, a read-only numpy view) is
    passed as it is: do not change what it views during the call."""
    if isinstance(data, bytes):
        return data
    view = memoryview(data)
    # A strided view (memoryview(b"...")[::2]) cannot be handed to the library as it is.
    return data if view.readonly and view.c_contiguous else view.tobytes()


class Error(Exception):
    """A failed call: `code` is the rwal_status value, `status` its name. From
    Node.propose_and_wait, `proposed` is the (lsn, epoch) the record was proposed as, whatever
    the error: after a TimeoutError it may still commit (Node.wait_committed waits on), and
    after a ClosedError (the node closed while the call waited) or a ReplicationError too, on
    the other members or at the node's next open; None if the record was not proposed, and
    never will be, unless `proposed_unknown` is True: after a PanicError, or a ReplicationError
    saying that the node's thread panicked while proposing, the node cannot tell whether it
    took the record, and None means unknown (look for the record before proposing it again).
    None from every other call."""

    proposed: Optional[Tuple[int, int]] = None
    proposed_unknown: bool = False

    # The errno an OSError among these carries when its message names none.
    _default_errno: Optional[int] = None

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = ffi.string(lib.rwal_status_str(code)).decode()
        if isinstance(self, OSError):
            # What `except OSError as e: if e.errno == errno.ENOSPC` looks at: the system's
            # error, which the library's message ends with as "(os error N)".
            named = re.findall(r"\(os error (\d+)\)", message)
            number = int(named[-1]) if named else self._default_errno
            if number is not None:
                # Set as attributes of OSError's, which `Error` itself does not declare.
                setattr(self, "errno", number)
                setattr(self, "strerror", os.strerror(number))

    def __str__(self) -> str:
        # The library's message, which names what failed: OSError's own would be
        # "[Errno 28] No space left on device" once errno is set.
        return self.args[0] if self.args else ""

    def __reduce__(self):
        # Pickled (e.g. back from a process pool) with the arguments its constructor takes,
        # and `proposed`.
        return (self.__class__, (self.code, str(self)), self._pickled_state())

    def _pickled_state(self) -> dict:
        return {"proposed": self.proposed, "proposed_unknown": self.proposed_unknown}


class InvalidArgumentError(Error, ValueError):
    """An argument or option is out of range."""


class IoError(Error, OSError):
    """An operating-system call failed; `errno` and `strerror` are the system's error where
    the message names one (it ends with "(os error N)")."""


class CorruptedError(Error):
    """Acknowledged data is damaged, or a file of the log is not what it should be."""


class PoisonedError(Error):
    """An earlier write or sync failed; reopen the log."""


class NoSpaceError(Error, OSError):
    """The disk is full, or the disk quota is used up (the message says which), where the log
    can refuse cleanly (creating a segment, before an append takes its LSN; a checkpoint's
    snapshot; a received snapshot): the log stays usable, and those calls work again once
    space is freed. Met while appended records or the control file are written (a
    copy-on-write file system, a quota), a full disk poisons the log instead (PoisonedError).
    `errno` is the system's (ENOSPC or EDQUOT), ENOSPC when the library refused before
    writing (too little free space)."""

    _default_errno = errno.ENOSPC


class LockedError(Error):
    """Another handle or process has the directory open."""


class CompactedError(Error, LookupError):
    """The LSN was compacted away."""


class NotFoundError(Error, LookupError):
    """No record with this LSN was written (or it was cut); also the base of
    NotDurableError."""


class NotDurableError(NotFoundError):
    """The record was appended but is not durable yet: commit it, then read. A NotFoundError
    too, as it was before it had a class of its own."""


class UnsupportedError(Error):
    """This machine cannot do what was asked (io_uring, O_DIRECT, a format version)."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - rwal.TimeoutError on purpose
    """A wait ran out of time. From Node.propose_and_wait, `proposed` (see Error) is the
    (lsn, epoch) to wait on with Node.wait_committed, or None if the node had not taken the
    record in time: it was not proposed and never will be. An OSError with `errno` ETIMEDOUT,
    as the built-in TimeoutError's subclasses raised by the system are."""

    _default_errno = errno.ETIMEDOUT


class PanicError(Error):
    """A bug inside rwal; do not use the log further."""


class NoLogError(Error, FileNotFoundError):
    """The directory holds no log and create=False. `errno` is ENOENT, as for any
    FileNotFoundError."""

    _default_errno = errno.ENOENT


class PinnedError(Error):
    """A reader or pin holds records the call would remove; or Pin.move on a capped pin that
    the compactor released."""


class ClosedError(Error):
    """The log is closed."""


class NotLeaderError(Error):
    """This node is not the leader; `leader_id` and `leader_addr` name the one it knows of
    (None if unknown). `leader_addr` is its peer address, where the nodes reach each other,
    not where your engine's clients connect: map `leader_id` to that yourself."""

    def __init__(self, code: int, message: str, leader_id: Optional[int] = None,
                 leader_addr: Optional[str] = None) -> None:
        super().__init__(code, message)
        self.leader_id = leader_id
        self.leader_addr = leader_addr

    def __reduce__(self):
        return (self.__class__, (self.code, str(self), self.leader_id, self.leader_addr),
                self._pickled_state())


class SupersededError(Error):
    """Another entry was committed at the proposal's LSN: it never will be."""


class BusyError(Error):
    """Not now, nothing done: too many proposals wait to be committed, or a membership change
    must wait for the one before it or for its learner to catch up. Retry later."""


class ReplicationError(Error):
    """The consensus layer failed; the node stopped."""


class AbandonedError(Error):
    """A checkpoint was abandoned: the node began installing a leader's snapshot, which replaces
    the log it described. Nothing of it was kept; the node goes on."""


_ERRORS = {
    lib.RWAL_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    lib.RWAL_ERR_IO: IoError,
    lib.RWAL_ERR_CORRUPTED: CorruptedError,
    lib.RWAL_ERR_POISONED: PoisonedError,
    lib.RWAL_ERR_NO_SPACE: NoSpaceError,
    lib.RWAL_ERR_LOCKED: LockedError,
    lib.RWAL_ERR_COMPACTED: CompactedError,
    lib.RWAL_ERR_NOT_FOUND: NotFoundError,
    lib.RWAL_ERR_UNSUPPORTED: UnsupportedError,
    lib.RWAL_ERR_TIMEOUT: TimeoutError,
    lib.RWAL_ERR_PANIC: PanicError,
    lib.RWAL_ERR_NO_LOG: NoLogError,
    lib.RWAL_ERR_PINNED: PinnedError,
    lib.RWAL_ERR_CLOSED: ClosedError,
    lib.RWAL_ERR_NOT_LEADER: NotLeaderError,
    lib.RWAL_ERR_SUPERSEDED: SupersededError,
    lib.RWAL_ERR_BUSY: BusyError,
    lib.RWAL_ERR_REPLICATION: ReplicationError,
    lib.RWAL_ERR_ABANDONED: AbandonedError,
    lib.RWAL_ERR_NOT_DURABLE: NotDurableError,
}

_BACKENDS = {
    "mmap": lib.RWAL_BACKEND_MMAP,
    "pwrite": lib.RWAL_BACKEND_PWRITE,
    "staged": lib.RWAL_BACKEND_STAGED,
    "io_uring": lib.RWAL_BACKEND_IO_URING,
}


def _last_error() -> str:
    size = lib.rwal_last_error(ffi.NULL, 0)
    buf = ffi.new("char[]", size + 1)
    lib.rwal_last_error(buf, size + 1)
    return ffi.string(buf).decode("utf-8", "replace")


def _error(status: int) -> "Error":
    """The exception for a failed call's `status`, with this thread's message: made right after
    the call, before other Python code (a garbage-collected handle's close, say) can fail a call
    of its own and replace the message."""
    return _ERRORS.get(status, Error)(status, _last_error())


def _c_string(text: Union[str, bytes], what: str) -> bytes:
    """`text` for a C string: a NUL inside would end it there, silently (cffi passes the
    buffer as it is), so it is refused as Python's own open() refuses it."""
    if isinstance(text, str):
        data = text.encode()
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
    else:
        # Not bytes(text): an int would become that many zero bytes (an address of 7101 NULs,
        # or of none for 0).
        raise TypeError("%s must be a str or bytes, not %s" % (what, type(text).__name__))
    if b"\0" in data:
        raise ValueError("%s contains a NUL byte: %r" % (what, text))
    return data


def _c_path(path) -> bytes:
    """A file system path for a C string (see _c_string)."""
    return _c_string(os.fsencode(path), "path")


def _uint(value, name: str, bits: int = 64) -> int:
    """`value` as an unsigned C integer of `bits` bits: InvalidArgumentError naming `name` for
    a number out of that range (cffi's OverflowError would name neither the argument nor rwal),
    TypeError for what is not an integer (a bool is one, as for cffi)."""
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, not %s" % (name, type(value).__name__)) from None
    if not 0 <= number < 1 << bits:
        raise InvalidArgumentError(lib.RWAL_ERR_INVALID_ARGUMENT,
                                   "%s must be between 0 and 2**%d - 1, not %d"
                                   % (name, bits, number))
    return number


def _seconds(timeout, name: str = "timeout") -> float:
    """`timeout` as a float number of seconds (numpy's numbers, Decimal and Fraction too;
    math.inf allowed); InvalidArgumentError for a negative or NaN one, or one that is not a
    number."""
    try:
        if timeout is None or isinstance(timeout, (bool, str, bytes)):
            raise TypeError
        seconds = float(timeout)
    except OverflowError:  # an integer beyond any float: longer than any wait, or negative
        seconds = math.inf if timeout > 0 else -math.inf
    except (TypeError, ValueError):
        raise InvalidArgumentError(lib.RWAL_ERR_INVALID_ARGUMENT,
                                   "%s must be a number of seconds, not %r" % (name, timeout))
    if not seconds >= 0:  # NaN too
        raise InvalidArgumentError(lib.RWAL_ERR_INVALID_ARGUMENT,
                                   "%s must be 0 or more seconds, not %r" % (name, timeout))
    return seconds


# The longest a call that waits stays in the library at a time (Tail.next, Node's waits):
# between slices Python runs, so Ctrl-C is raised and a close() on another thread (which waits
# for calls in progress) goes ahead within one.
_WAIT_SLICE_SECONDS = 0.2


def _check(status: int) -> None:
    if status != lib.RWAL_OK:
        raise _error(status)


_RECOVERY_MODES = {
    "absolute_consistency": lib.RWAL_RECOVERY_ABSOLUTE_CONSISTENCY,
    "tolerate_torn_tail": lib.RWAL_RECOVERY_TOLERATE_TORN_TAIL,
    "point_in_time": lib.RWAL_RECOVERY_POINT_IN_TIME,
    "skip_corrupted": lib.RWAL_RECOVERY_SKIP_CORRUPTED,
}


def _named(value, names: dict, what: str) -> int:
    """The library's number for `value`, one of the keys of `names`; InvalidArgumentError
    naming `what` and the choices otherwise."""
    if isinstance(value, str) and value in names:
        return names[value]
    raise InvalidArgumentError(lib.RWAL_ERR_INVALID_ARGUMENT, "unknown %s %r (one of %s)"
                               % (what, value, ", ".join(names)))


def _log_options(segment_size: Optional[int], backend: Optional[str], recovery: Optional[str],
                 commit_delay_us: Optional[int], background_thread: bool = True):
    """The library's log options (collected with their object) for rwal.open's arguments of
    the same names (None: the library's default), checked with errors that name them."""
    if not isinstance(background_thread, bool):
        raise TypeError("background_thread must be a bool")
    opts = ffi.gc(lib.rwal_options_new(), lib.rwal_options_free)
    if segment_size is not None:
        _check(lib.rwal_options_set_segment_size(opts, _uint(segment_size, "segment_size")))
    if backend is not None:
        _check(lib.rwal_options_set_backend(opts, _named(backend, _BACKENDS, "backend")))
    if recovery is not None:
        _check(lib.rwal_options_set_recovery_mode(
            opts, _named(recovery, _RECOVERY_MODES, "recovery mode")))
    if commit_delay_us is not None:
        _check(lib.rwal_options_set_commit_delay_us(
            opts, _uint(commit_delay_us, "commit_delay_us")))
    _check(lib.rwal_options_set_background_thread(opts, background_thread))
    return opts


def open(  # noqa: A001 - rwal.open on purpose, like io.open
    path: PathLike,
    *,
    create: bool = True,
    segment_size: Optional[int] = None,
    backend: Optional[str] = None,
    recovery: Optional[str] = None,
    commit_delay_us: Optional[int] = None,
    background_thread: bool = True,
) -> "Log":
    """Opens (and with create, the default, creates) the log in directory `path` and recovers
    it; with create=False a directory without a log is refused. Log.recovery_report() says
    what recovery found.

    - `segment_size`: the size of new segment files in bytes (1 MiB to 2 GiB, a multiple of
      4096; default 64 MiB).
    - `backend`: "mmap" (default), "pwrite", "staged" or "io_uring". "mmap" assumes a file
      system that overwrites in place (ext4, XFS): on a copy-on-write one a full disk would end
      the process with SIGBUS instead of raising NoSpaceError. On btrfs, ZFS and bcachefs the
      default is "staged" instead, and "mmap" named here raises UnsupportedError; on a
      compressed or deduplicated volume, which cannot be told, use "staged" or "pwrite".
    - `recovery`: what recovery does with damaged records (docs/design.md section 3):
      "tolerate_torn_tail" (default) cuts an unfinished write past the durable watermark and
      refuses the log (CorruptedError) for damage below it; "absolute_consistency" refuses
      any damage, even an unfinished last write; "point_in_time" keeps the longest valid
      prefix, cutting at the first damaged record; "skip_corrupted" keeps every valid record
      and leaves the damaged stretches as holes in the LSNs, after which every later open must
      use "skip_corrupted" too (the other modes refuse the log at the hole, or cut there).
    - `commit_delay_us`: how long the committer that leads a sync waits for more records to
      join it, in microseconds (default 0, at most 1 000 000): more records per sync for a
      longer commit.
    - `background_thread`: False runs no thread of the log's after open returns (recovery
      still checks segments on helper threads it joins), for tests that must replay exactly:
      an appender that needs the next segment then prepares it itself, and the durable
      watermark reaches the control file only at a checkpoint, compaction, truncation or
      close."""
    if not isinstance(create, bool):
        # Not bool(create): create="no" would create the log it meant to refuse to.
        raise TypeError("create must be a bool, not %s" % type(create).__name__)
    opts = _log_options(segment_size, backend, recovery, commit_delay_us, background_thread)
    _check(lib.rwal_options_set_create(opts, create))
    handle = ffi.new("rwal_log **")
    log = Log.__new__(Log)
    with _interruptible_open():
        try:
            _check(lib.rwal_open(_c_path(path), opts, handle))
            log.__init__(handle[0])  # type: ignore[misc]  # a Log made by __new__ above
        except BaseException as failure:
            _free_unadopted(log, handle, lib.rwal_close)
            interrupted = _take_interrupt()
            if interrupted is not None and failure is not interrupted:
                raise interrupted from failure
            raise
        interrupted = _take_interrupt()
    if interrupted is not None:
        try:
            log.close()
        finally:
            raise interrupted
    return log


class RecoveryReport(NamedTuple):
    """What recovery found and decided when a log was opened (Log.recovery_report()). The
    counts are the stable part; `events` describe each decision (a torn tail cut, a damaged
    stretch skipped, a stray file removed) in words for people, not a format to parse."""

    mode: str
    """The recovery mode, as open() names it."""
    segments_scanned: int
    """Segment files read."""
    records: int
    """Valid records kept."""
    first_lsn: int
    """The oldest retained LSN."""
    last_lsn: int
    """The newest LSN kept."""
    control_durable_lsn: int
    """The durable watermark the control file held."""
    proven_durable_lsn: int
    """The watermark proven by the control file and the records' own claims."""
    bytes_cut: int
    """Bytes dropped (zero-filled tails, removed segment files)."""
    events: Tuple[str, ...]
    """Each decision recovery made, in words."""


def _adopt(cls, open_native, out, free):
    """Calls `open_native()`, which writes a new native handle into `out` and returns the
    other arguments of `cls.__init__(handle, ...)` (which must call `_open` last), or None if
    it opened nothing; returns the `cls` made with them, or None. An exception anywhere in
    between (a KeyboardInterrupt lands right after a native call returns) frees the handle
    instead of leaking it: a pin or a checkpoint writer left behind would hold the log's
    records from compaction until it closes."""
    obj = cls.__new__(cls)
    try:
        args = open_native()
        if args is None:
            return None
        obj.__init__(out[0], *args)
    except BaseException:
        _free_unadopted(obj, out, free)
        raise
    return obj


def _owning_slot(ctype: str, free_slot):
    """A `ctype` pointer slot for a native open to write a handle into, which owns what is
    written there from that moment: collected or released (ffi.release), it is freed by
    `free_slot`, a C function of the slot (lib._rwal_py_free_*_slot: no Python code runs in
    between, where a signal would be handled). No instant is left between the open and the
    adoption where an exception would leak the handle (a reader's pin with it)."""
    return ffi.gc(ffi.new(ctype), free_slot)


def _free_unadopted(owner, out, free) -> None:
    """After an exception during an open: frees the native handle the open wrote into `out`, if
    it did and `owner` had not taken it yet. A KeyboardInterrupt lands right after a native call
    returns: between the open and the wrapping of its handle, it would leak the handle (a log's
    directory lock, a node's threads calling back into an engine freed with its object)."""
    if getattr(owner, "_closed", True) and out[0] != ffi.NULL:
        free(out[0])
        out[0] = ffi.NULL


# This process's id, kept by a hook at each fork (os.fork, multiprocessing's fork start)
# rather than asked of the system at each call (`os.getpid` is a system call):
# `_Handle._left_to_the_opener` compares it with the opener's.
_this_process = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _this_process.__setitem__(0, os.getpid()))


_H = TypeVar("_H", bound="_Handle")


class _Handle:
    """A library handle shared between threads: calls in progress are counted, so that close()
    waits for them instead of freeing the handle under them, and calls after it raise
    ClosedError."""

    _what = "handle"

    def _open(self, handle) -> None:
        # Only the library makes handles. Called by hand (rwal.Log("dir"), a natural slip),
        # the constructor used to keep a string as the handle, and the collection then raised
        # a TypeError from deep in close(), printed as "Exception ignored".
        if not isinstance(handle, ffi.CData):
            raise TypeError(
                "rwal.%s is not made by calling it with %s: the library makes it (rwal.open(path) "
                "opens a Log; see the class's docs)" % (type(self).__name__, type(handle).__name__))
        self._handle = handle
        self._calls = 0
        # Calls in progress on each thread: close() does not wait for its own thread's (a
        # signal handler that closes runs on the thread whose call it interrupted, after the
        # native call returned and before the call's _exit).
        self._mine = threading.local()
        # Reentrant for the same reason: the handler may interrupt _enter or _exit.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        # The free that a close() on a thread with a call in progress left to that call, with
        # the thread's id (see _close_with), and the error that free returned, for the next
        # close().
        self._deferred_free: Optional[Tuple[int, object]] = None
        self._deferred_error: Optional[BaseException] = None
        # The error `stop` returned (see _close_with), raised once the handle is freed, and
        # whether `stop` ran: a close() interrupted after it keeps both for the next one.
        self._stop_error: Optional[BaseException] = None
        self._stopped = False
        # The thread of a close() that is freeing the handle: a close() on another thread
        # waits for it (it returned at once, with the handle still open). None otherwise.
        self._closing: Optional[int] = None
        # The process that opened it (see _left_to_the_opener).
        self._pid = _this_process[0]
        # Last: from here on the handle is this object's to free (see _free_unadopted).
        self._closed = False

    def _left_to_the_opener(self) -> bool:
        """Whether this is a process forked from the one that opened the handle (os.fork, a
        multiprocessing child started by fork), where it is marked closed and never freed. The
        native handle, its threads and its files are the opener's: a close here (the child's
        exit, its collection of the copy) joined threads that do not exist in this process, a
        panic or a hang, and for a log wrote the child's stale state over the opener's control
        file. Its memory stays allocated in this process only. Checked before any lock is
        taken: one a thread of the opener's held at the fork is never released here."""
        pid = _this_process[0]
        if pid == getattr(self, "_pid", pid):
            return False
        self._closed = True
        return True

    def _refuse_in_a_fork(self) -> None:
        """ClosedError in a process forked from the opener's (see _left_to_the_opener). Called
        before any lock of the handle's is taken (its `_lock`, a reader's or writer's
        `_serial`): one a thread of the opener's held at the fork is never released here, and a
        call that waited for it hung (or, with a timeout, returned None as if nothing came)."""
        if self._left_to_the_opener():
            raise ClosedError(
                lib.RWAL_ERR_CLOSED, "%s was opened by process %d; this process (%d) was forked "
                "from it, and the %s is left to it" % (
                    self._what, self._pid, _this_process[0], self._what))

    def _enter(self, entered: list):
        """Marks a call in progress; returns the handle. Appends to `entered` as soon as the
        call is counted: the caller calls _exit() in a `finally` that covers this call, if and
        only if `entered` is not empty. (A KeyboardInterrupt may land as this returns, before
        the caller's `try`; a count left behind would keep a later close() from freeing the
        handle, see _close_with.) In a process forked from the opener's, the handle is
        closed (_left_to_the_opener), and the call raises ClosedError: through its stale copy
        of the log's state, an append there wrote over records the opener had acknowledged.
        Raised before the handle's lock is taken: a thread of the opener's may have held it at
        the fork, and it is never released here."""
        self._refuse_in_a_fork()
        with self._lock:
            # Counted before the check: a signal handler that closes may run between any two
            # steps here (the lock is reentrant), and a call that goes on to the native call
            # must be counted by then, so that the close leaves the free to it. This thread's
            # count first, the total second (and the reverse in _exit): the total less this
            # thread's never counts a call of this thread.
            self._mine.calls = getattr(self._mine, "calls", 0) + 1
            self._calls += 1
            entered.append(True)
            closed = self._closed
        if closed:
            raise ClosedError(lib.RWAL_ERR_CLOSED, "%s is closed" % self._what)
        return self._handle

    def _exit(self) -> None:
        free = None
        with self._lock:
            self._calls -= 1
            self._mine.calls -= 1
            if self._closed:
                self._idle.notify_all()
                deferred = self._deferred_free
                if (deferred is not None and deferred[0] == threading.get_ident()
                        and self._mine.calls == 0):
                    free, self._deferred_free = deferred[1], None
        if free is not None:
            self._free_deferred(free)

    def _free_deferred(self, free, _ok=lib.RWAL_OK, _error=_error) -> None:
        """Runs the free a close() left to this thread's last call; its error waits for the
        next close(). (The library's names are bound now: this may run late in the
        interpreter's shutdown.)"""
        status = free(self._handle)
        stop_error, self._stop_error = self._stop_error, None
        if stop_error is not None:
            self._deferred_error = stop_error
        elif status != _ok:
            self._deferred_error = _error(status)

    @contextmanager
    def _use(self):
        """`_enter` and `_exit` around a block (for the calls that are not hot)."""
        entered: List[bool] = []
        try:
            yield self._enter(entered)
        finally:
            if entered:
                self._exit()

    def _close_with(self, free, _check=_check, stays_open_on=(), stop=None) -> bool:
        """Marks the handle closed, waits for the calls in progress on other threads, then
        frees it with `free`. Twice is fine (a second close raises the error of a deferred
        free, once). Interrupted while it waits (KeyboardInterrupt), it frees nothing: the
        handle stays open, for a later close(), which does not run `stop` again if it ran, and
        raises its error.

        Called with a call of this thread's in progress (from a signal handler, which runs on
        the thread whose call it interrupted, between two of its steps), it does not wait for
        that call, which may still use the handle: that call frees it as it ends.

        A close() while another thread's close() is freeing the handle waits for it to finish;
        not on the freeing thread itself (a signal handler interrupting that close), nor for a
        free left to a call in progress. An error of a class in `stays_open_on` from `free`
        says the library refused and kept the handle: it is open again, and a close() that
        waited for this one goes on to close it itself.

        `stop`, if given, is called with the handle once it is marked closed and before the
        wait for calls in progress, without the handle's lock (the node's `rwal_node_shutdown`,
        which ends the waits of those calls, and waits for callbacks that may call in). It
        returns None or an Error to raise once the handle is freed (it takes precedence over
        the free's); an exception from it (a refusal, an interruption) leaves the handle open.
        It is skipped on a thread that holds the handle's lock (a signal handler that
        interrupted _enter or _exit): a callback calling in during the stop would wait for
        that lock. Other close() calls wait for this one's stop, as for its free.

        Returns whether this call closed the handle (False: an earlier one had). In a process
        forked from the opener's it frees nothing (see _left_to_the_opener)."""
        if self._left_to_the_opener():
            return False
        me = threading.get_ident()
        owner = False
        # Whether this call marked the handle closed and may still take that back: an
        # interruption (or `stop`'s refusal) before the free leaves the handle open, for a
        # later close(). (One step remains where an interruption leaves it marked and not
        # freed: between the flag's reset and the free.)
        marked = False
        try:
            try:
                with self._idle:
                    while (self._closing not in (None, me)
                           and getattr(self._mine, "calls", 0) == 0):
                        self._idle.wait()
                    if self._closed:
                        error, self._deferred_error = self._deferred_error, None
                        if error is not None:
                            raise error
                        return False
                    # Each flag before what it undoes is done: interrupted in between, the
                    # `except` and `finally` below reset what was not set yet, harmlessly.
                    marked = True
                    self._closed = True
                    # Owner from here: a close() on another thread waits for this one's stop
                    # and free (a `_closing` left set would hang it: the `finally` clears it).
                    owner = True
                    self._closing = me
                if (stop is not None and not self._stopped
                        and not self._lock._is_owned()):  # type: ignore[attr-defined]
                    self._stop_error = stop(self._handle)
                    self._stopped = True
                with self._idle:
                    while self._calls - getattr(self._mine, "calls", 0) > 0:
                        self._idle.wait()
                    if getattr(self._mine, "calls", 0) > 0:
                        self._deferred_free = (me, free)
                        marked = False
                        return True
                marked = False
            except BaseException:
                if marked:
                    with self._idle:
                        self._closed = False
                        self._deferred_free = None
                        # Interrupted after `stop` ran (in the wait for other threads'
                        # calls): the next close() does not stop again (a second stop
                        # returned OK, and a failed final sync went unreported), and raises
                        # what this one's stop returned.
                        if not self._stopped:
                            self._stop_error = None
                raise
            try:
                _check(free(self._handle))
            except stays_open_on:
                # Reopened before the waiters are woken (the `finally` below): they must not
                # take the handle for closed.
                with self._idle:
                    self._closed = False
                    self._stop_error = None
                raise
            except Error:
                stop_error, self._stop_error = self._stop_error, None
                if stop_error is not None:
                    raise stop_error from None
                raise
            stop_error, self._stop_error = self._stop_error, None
            if stop_error is not None:
                raise stop_error
        finally:
            if owner:
                with self._idle:
                    self._closing = None
                    self._idle.notify_all()
        return True

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def close(self) -> None:
        """Frees the handle (each kind says how)."""
        raise NotImplementedError

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Collected open, a handle says so with a ResourceWarning, as Python's files do (shown
    # under `python -X dev`, `-W default` and pytest). Node and CheckpointWriter say it in
    # words of their own.
    _warn_unclosed = True

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or self._left_to_the_opener():
            return
        if self._warn_unclosed:
            try:
                warnings.warn("rwal %s collected without close()" % self._what, ResourceWarning,
                              stacklevel=2)
            except Exception:  # noqa: BLE001 - late in shutdown, warnings may be gone
                pass
        # An error of the close (a log's final sync failed) goes to sys.unraisablehook, which
        # prints it: dropped here, nobody would know.
        self.close()


class Log(_Handle):
    """An open log; see the module docs. Use rwal.open() to get one."""

    _what = "log"
    # Bound now: a log closed late in the interpreter's shutdown may find the module's
    # globals cleared.
    _close_log = staticmethod(lib.rwal_close)

    def __init__(self, handle) -> None:
        self._open(handle)
        self._out = threading.local()

    def _lsn_out(self):
        """This thread's reusable output cell (allocating one per call costs more than the
        call)."""
        out = getattr(self._out, "cell", None)
        if out is None:
            out = self._out.cell = ffi.new("uint64_t *")
        return out

    def append(self, data: BytesLike) -> int:
        """Appends one record (any bytes-like object; read-only ones such as bytes are not
        copied by Python, mutable ones are, see _stable); returns its LSN. Not durable until
        commit()."""
        buf = ffi.from_buffer(_stable(data))
        # A fresh cell inside another call of this thread (a signal handler that appends,
        # run right after the interrupted append's native call, before it read the cell).
        out = ffi.new("uint64_t *") if getattr(self._mine, "calls", 0) else self._lsn_out()
        entered: List[bool] = []
        try:
            handle = self._enter(entered)
            status = lib.rwal_append(handle, buf, len(buf), out)
            if status != lib.RWAL_OK:
                raise _error(status)
            # Read before _exit: code that runs on this thread after it (a signal handler that
            # appends) reuses the cell.
            lsn = out[0]
        finally:
            if entered:
                self._exit()
        return lsn

    def append_batch(self, records: Sequence[BytesLike]) -> int:
        """Appends records with contiguous LSNs; returns the first.

        Not atomic across a crash: until `commit` returns for the last of them, a crash may
        leave a prefix of the batch in the log, as of any records not committed; so may a
        failure that poisons the log in the middle of the batch, though the call then raises.
        """
        if isinstance(records, (bytes, bytearray, memoryview, str)):
            # Iterating over it would give ints (or characters), refused one by one with a
            # message that names neither the argument nor the slip.
            raise TypeError("records must be a sequence of bytes-like records, not one %s "
                            "(append() takes one record)" % type(records).__name__)
        buffers = [ffi.from_buffer(_stable(r)) for r in records]
        slices = ffi.new("rwal_slice[]", len(buffers))
        for slot, buf in zip(slices, buffers):
            slot.data = ffi.cast("const uint8_t *", buf)
            slot.len = len(buf)
        out = ffi.new("uint64_t *")
        with self._use() as handle:
            _check(lib.rwal_append_batch(handle, slices, len(buffers), out))
        return out[0]

    def commit(self, lsn: int) -> None:
        """Returns once every record up to `lsn` is durable (group commit). One library call
        with no timeout: it waits for the sync (a disk that hangs holds it, Ctrl-C is seen
        when it returns, and close() on another thread waits for it). NotFoundError for an LSN
        never appended; PoisonedError once a write or sync of the log failed (reopen the
        log); ClosedError after close()."""
        lsn = _uint(lsn, "lsn")
        entered: List[bool] = []
        try:
            handle = self._enter(entered)
            status = lib.rwal_commit(handle, lsn)
            if status != lib.RWAL_OK:
                raise _error(status)
        finally:
            if entered:
                self._exit()

    def sync(self) -> int:
        """Commits everything appended; returns the LSN now durable. Blocks and fails as
        commit() does."""
        out = ffi.new("uint64_t *")
        with self._use() as handle:
            _check(lib.rwal_sync(handle, out))
        return out[0]

    def _lsn(self, getter) -> int:
        out = ffi.new("uint64_t *")
        with self._use() as handle:
            _check(getter(handle, out))
        return out[0]

    @property
    def first_lsn(self) -> int:
        """The oldest retained LSN (1 for a new log)."""
        return self._lsn(lib.rwal_first_lsn)

    @property
    def last_lsn(self) -> int:
        """The newest appended LSN (0 for a new log)."""
        return self._lsn(lib.rwal_last_lsn)

    @property
    def durable_lsn(self) -> int:
        """The newest durable LSN."""
        return self._lsn(lib.rwal_durable_lsn)

    def read(self, lsn: int) -> bytes:
        """The payload of durable record `lsn`. On a poisoned log (PoisonedError: a write
        or sync failed) the records made durable before the failure are still read (but those
        a truncation or a reset that failed part way removes), and any other raises
        PoisonedError. After close(), every read raises ClosedError."""
        lsn = _uint(lsn, "lsn")
        size = ffi.new("size_t *")
        cap = 4096
        with self._use() as handle:
            while True:
                buf = ffi.new("uint8_t[]", cap)
                status = lib.rwal_read(handle, lsn, buf, cap, size)
                if status == lib.RWAL_ERR_BUFFER_TOO_SMALL:
                    cap = size[0]
                    continue
                _check(status)
                return bytes(ffi.buffer(buf, size[0]))

    def records(
        self, from_lsn: Optional[int] = None, verify_checksums: bool = True
    ) -> Iterator[Tuple[int, bytes]]:
        """Iterates over (lsn, payload) of durable records from `from_lsn` (default: the first
        retained).

        `verify_checksums=False` skips the check of each record's checksum as it is read:
        recovery checked every record the log held at `open`, and records appended since were
        written by this process, so a replay right after the open checks each record twice.
        What the second check still catches is damage done since the open (a failing disk,
        memory corruption); without it, such damage reaches the caller in a payload, or in a
        length that still ends within the segment (the next read then most likely fails). A
        wrong LSN or a length past the segment raises `CorruptedError` either way, and the
        segment being appended to is checked anyway with the mmap and io_uring backends.

        The arguments' types and ranges are checked at the call; the reader opens at the
        first record asked for (CompactedError, NotFoundError, and InvalidArgumentError for
        LSN 0, there). While the iteration is part way, it holds the
        record it last returned (truncate_after() below it raises PinnedError, and the
        records from it on stay through compaction) until it ends, is closed or collected.

        On a poisoned log it still gives the records made durable before the failure (but
        those a truncation or a reset that failed part way removes), then raises
        PoisonedError where it would have ended."""
        if not isinstance(verify_checksums, bool):
            raise TypeError("verify_checksums must be a bool")
        if from_lsn is not None:
            from_lsn = _uint(from_lsn, "from_lsn")
        return self._records(from_lsn, verify_checksums)

    def _open_reader(self, from_lsn: Optional[int], verify_checksums: bool, out) -> int:
        """Opens a library reader into `out` at `from_lsn` (None: the first retained record)
        and returns the LSN it opened at."""
        for attempt in range(100):
            start = self.first_lsn if from_lsn is None else from_lsn
            with self._use() as handle:
                status = lib.rwal_reader_open(handle, start, out)
            # The first LSN was read, then compacted away (the background thread compacts soon
            # after a checkpoint) before the reader opened: read it again.
            if status != lib.RWAL_ERR_COMPACTED or from_lsn is not None or attempt == 99:
                _check(status)
                break
        if not verify_checksums:
            _check(lib.rwal_reader_set_verify_checksums(out[0], False))
        return start

    def _records(self, from_lsn: Optional[int], verify_checksums: bool
                 ) -> Iterator[Tuple[int, bytes]]:
        slot = _owning_slot("rwal_reader **", lib._rwal_py_free_reader_slot)
        self._open_reader(from_lsn, verify_checksums, slot)
        reader = slot[0]
        lsn = ffi.new("uint64_t *")
        data = ffi.new("const uint8_t **")
        size = ffi.new("size_t *")
        try:
            while True:
                with self._use():
                    status = lib.rwal_reader_next(reader, lsn, data, size)
                    if status == lib.RWAL_END:
                        return
                    _check(status)
                    payload = bytes(ffi.buffer(data[0], size[0]))
                    # Copied: the reader need not hold the record (which would keep the
                    # directory locked after close() while this iteration is part way).
                    lib.rwal_reader_release(reader)
                yield lsn[0], payload
        finally:
            ffi.release(slot)

    def tail(self, from_lsn: Optional[int] = None, *, verify_checksums: bool = True) -> "Tail":
        """A reader that waits for records as they become durable (a shipper to a replica, a
        change feed), from `from_lsn` (default: the first retained record; durable_lsn + 1
        for only the records to come): see Tail. `verify_checksums` as for records()."""
        if not isinstance(verify_checksums, bool):
            raise TypeError("verify_checksums must be a bool")
        if from_lsn is not None:
            from_lsn = _uint(from_lsn, "from_lsn")
        out = ffi.new("rwal_reader **")
        return _adopt(Tail, lambda: (self._open_reader(from_lsn, verify_checksums, out), self),
                      out, Tail._free)

    def truncate_after(self, lsn: int) -> None:
        """Durably removes every record after `lsn`."""
        lsn = _uint(lsn, "lsn")
        with self._use() as handle:
            _check(lib.rwal_truncate_after(handle, lsn))

    def checkpoint(self, lsn: int, snapshot: Optional[BytesLike] = None) -> None:
        """Declares the engine's state up to `lsn` safe elsewhere, with `snapshot` (its state
        image at `lsn`; None: the checkpoint has no snapshot, which is not the same as an empty
        one). Durable when it returns; `lsn` must be at least 1, durable, and not below the
        latest checkpoint (InvalidArgumentError otherwise). The background thread then soon
        removes the segments wholly below it: read() and records() there raise
        CompactedError, unless a pin holds them."""
        lsn = _uint(lsn, "lsn")
        if snapshot is None:
            with self._use() as handle:
                _check(lib.rwal_checkpoint(handle, lsn, ffi.NULL, 0))
            return
        buf = ffi.from_buffer(_stable(snapshot))
        with self._use() as handle:
            _check(lib.rwal_checkpoint(handle, lsn, ffi.cast("const uint8_t *", buf), len(buf)))

    def latest_checkpoint(self) -> Optional[Tuple[int, bytes]]:
        """(lsn, snapshot) of the latest checkpoint, or None if there is none. The snapshot is
        b"" both for a checkpoint without one and for an empty one."""
        lsn = ffi.new("uint64_t *")
        size = ffi.new("size_t *")
        cap = 4096
        with self._use() as handle:
            while True:
                buf = ffi.new("uint8_t[]", max(cap, 1))
                status = lib.rwal_checkpoint_latest(handle, lsn, buf, cap, size)
                if status == lib.RWAL_ERR_NOT_FOUND:
                    return None
                if status == lib.RWAL_ERR_BUFFER_TOO_SMALL:
                    cap = size[0]
                    continue
                _check(status)
                return lsn[0], bytes(ffi.buffer(buf, size[0]))

    def checkpoint_writer(self, lsn: int, length: int) -> "CheckpointWriter":
        """Starts a checkpoint at `lsn` whose snapshot of exactly `length` bytes is written in
        pieces with CheckpointWriter.write, and made durable by CheckpointWriter.finish: a large
        engine state never needs to be in memory whole; see CheckpointWriter for finishing
        and abandoning. The same checks as checkpoint()."""
        lsn = _uint(lsn, "lsn")
        length = _uint(length, "length")
        out = ffi.new("rwal_checkpoint_writer **")

        def open_native():
            with self._use() as handle:
                _check(lib.rwal_checkpoint_writer_open(handle, lsn, length, out))
            return length, self
        return _adopt(CheckpointWriter, open_native, out, lib.rwal_checkpoint_writer_free)

    def checkpoint_from(self, lsn: int, length: int, source) -> None:
        """checkpoint() with a snapshot of exactly `length` bytes read from `source`, a binary
        file-like object (readinto or read), 1 MiB at a time. InvalidArgumentError, and no
        checkpoint, if `source` ends sooner (or is a non-blocking source without data, or
        returns more than asked); bytes after `length` are not read."""
        with self.checkpoint_writer(lsn, length) as writer:
            chunk = bytearray(min(length, _CHUNK_BYTES))
            view = memoryview(chunk)
            left = length
            while left:
                want = view[:min(left, len(chunk))]
                if hasattr(source, "readinto"):
                    got = source.readinto(want)
                    # A count outside 0..len(want) (more than fits, or negative: want[:-1])
                    # would be cut to a piece of another length without a word, and the
                    # snapshot would hold other bytes than the source's.
                    if got is not None and (not isinstance(got, int) or isinstance(got, bool)
                                            or not 0 <= got <= len(want)):
                        raise InvalidArgumentError(
                            lib.RWAL_ERR_INVALID_ARGUMENT,
                            "the snapshot source's readinto returned %r for a buffer of %d "
                            "bytes" % (got, len(want)))
                    # Read-only: nothing else changes this private buffer during the call, so
                    # the writer need not copy it (see _stable).
                    piece = None if got is None else want[:got].toreadonly()
                else:
                    piece = source.read(len(want))
                if piece is None:
                    raise InvalidArgumentError(
                        lib.RWAL_ERR_INVALID_ARGUMENT,
                        "the snapshot source has no data now (non-blocking): use a blocking one")
                if len(piece) > len(want):
                    raise InvalidArgumentError(
                        lib.RWAL_ERR_INVALID_ARGUMENT,
                        "the snapshot source returned %d bytes when asked for %d"
                        % (len(piece), len(want)))
                if not len(piece):
                    raise InvalidArgumentError(
                        lib.RWAL_ERR_INVALID_ARGUMENT,
                        "the snapshot source ended after %d of %d bytes" % (length - left, length))
                writer.write(piece)
                left -= len(piece)

    def open_snapshot(self) -> Optional["SnapshotReader"]:
        """The latest checkpoint's snapshot, to read in pieces (SnapshotReader: a binary
        file-like object with .lsn and .length), or None if the latest checkpoint has no
        snapshot or there is none."""
        lsn = ffi.new("uint64_t *")
        length = ffi.new("uint64_t *")
        out = ffi.new("rwal_snapshot_reader **")

        def open_native():
            with self._use() as handle:
                status = lib.rwal_snapshot_open(handle, lsn, length, out)
                if status == lib.RWAL_ERR_NOT_FOUND:
                    return None
                _check(status)
            return lsn[0], length[0]
        return _adopt(SnapshotReader, open_native, out, SnapshotReader._free)

    def pin(self, name: str, lsn: int, *, cap_bytes: Optional[int] = None) -> "Pin":
        """Pins the log from `lsn` on under `name` (a backup in progress, a replica catching
        up): compact() removes no record from `lsn` on while the pin is open. With `cap_bytes`
        the compactor releases the pin once it alone holds back more than that many bytes of
        segments (then Pin.move raises PinnedError). CompactedError if `lsn` is gone already."""
        if not isinstance(name, str):
            raise TypeError("a pin's name must be a str, not %s" % type(name).__name__)
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            encoded = b""
        if not encoded or b"\0" in encoded:
            raise InvalidArgumentError(lib.RWAL_ERR_INVALID_ARGUMENT,
                                       "a pin needs a name: a non-empty str, UTF-8 encodable, "
                                       "without NUL")
        lsn = _uint(lsn, "lsn")
        if cap_bytes is not None:
            cap_bytes = _uint(cap_bytes, "cap_bytes")
        if cap_bytes == 0:
            raise InvalidArgumentError(lib.RWAL_ERR_INVALID_ARGUMENT,
                                       "cap_bytes must be between 1 and 2**64 - 1 (None: no cap)")
        out = ffi.new("rwal_pin **")

        def open_native():
            with self._use() as handle:
                _check(lib.rwal_pin_open(handle, encoded, lsn, cap_bytes or 0, out))
            return name, self
        return _adopt(Pin, open_native, out, Pin._free)

    def compact(self) -> None:
        """Removes the segments the latest checkpoint no longer needs and nothing holds: a
        pin, a checkpoint being written, a records() iteration left part way or a Tail holds
        the records from the one it last returned on. (The background thread compacts soon
        after a checkpoint too.)"""
        with self._use() as handle:
            _check(lib.rwal_compact(handle))

    def recovery_report(self) -> RecoveryReport:
        """What recovery found and decided when this log was opened (see RecoveryReport)."""
        report = ffi.new("rwal_recovery_report *")
        events = []
        with self._use() as handle:
            _check(lib.rwal_recovery_report_get(handle, report))
            for index in range(report.events):
                size = lib.rwal_recovery_event(handle, index, ffi.NULL, 0)
                buf = ffi.new("char[]", size + 1)
                lib.rwal_recovery_event(handle, index, buf, size + 1)
                events.append(ffi.string(buf).decode("utf-8", "replace"))
        modes = {number: name for name, number in _RECOVERY_MODES.items()}
        return RecoveryReport(
            modes.get(report.mode, str(report.mode)), report.segments_scanned, report.records,
            report.first_lsn, report.last_lsn, report.control_durable_lsn,
            report.proven_durable_lsn, report.bytes_cut, tuple(events))

    def stats(self) -> dict:
        """Group-commit counters: syncs, records_synced, bytes_synced, max_records_per_sync,
        commits."""
        out = ffi.new("rwal_stats *")
        with self._use() as handle:
            _check(lib.rwal_stats_get(handle, out))
        return {name: getattr(out, name) for name in
                ("syncs", "records_synced", "bytes_synced", "max_records_per_sync", "commits")}

    def close(self) -> None:
        """Syncs, releases the directory and frees the handle; waits for calls in progress on
        other threads. Closing twice is fine. The log is closed whatever this raises (a final
        sync that failed: IoError or PoisonedError): a second close() returns quietly, and
        does not mean that the sync then succeeded. From a signal handler, whose thread is inside a
        call, it returns at once and that call frees the handle as it ends (see
        _Handle._close_with). A records() iterator or a Tail left part way does not keep the
        directory locked: each record is copied, and the library's reader let go of it (until
        2026-12-07 it held the last one, a slice of a segment file, and the directory stayed
        locked until the iterator was closed or collected)."""
        self._close_with(self._close_log)


def _returning_ok(free):
    """`free` (a library function that returns nothing) as a function that returns RWAL_OK, for
    _Handle._close_with. The library's function and the status are bound now: a handle collected
    late in the interpreter's shutdown may find the module's globals cleared."""
    def freed(handle, _free=free, _ok=lib.RWAL_OK) -> int:
        _free(handle)
        return _ok
    return freed


class Pin(_Handle):
    """A retention pin from Log.pin(): the log keeps every record from its LSN on until the pin
    is closed (or collected). It may be moved and shared between threads. It outlives its log's
    close only to be closed: move() then raises ClosedError."""

    _what = "pin"
    _free = staticmethod(_returning_ok(lib.rwal_pin_free))

    def __init__(self, handle, name: str, log: "Log") -> None:
        self.name = name
        # Kept open while the pin is: a log collected (and so closed) under an open pin would
        # leave the pin holding nothing.
        self._log: Optional[Log] = log
        self._open(handle)  # last: see _adopt

    def move(self, lsn: int) -> None:
        """Keeps records from `lsn` on instead (forward, or back to a record still kept:
        CompactedError otherwise). PinnedError once the compactor released a capped pin."""
        lsn = _uint(lsn, "lsn")
        with self._use() as handle:
            _check(lib.rwal_pin_move(handle, lsn))

    def close(self) -> None:
        """Releases the pin; waits for calls in progress on other threads. Twice is fine."""
        self._close_with(self._free)
        self._log = None


class _Tail(_Handle):
    """What Tail and rwal.node.NodeTail share: next(timeout) waits for the next record in
    slices of the library's waiting call, and keeps a record the library handed over as an
    interrupt came. A subclass's __init__ calls _start, then _open last; it makes the library
    call (_wait_in_library) and says what a record is made of (_record)."""

    def _start(self, from_lsn: int) -> None:
        self._next_lsn = from_lsn
        self._serial = threading.Lock()
        # A record handed over by the library and not returned yet (an interrupt came
        # between the two).
        self._pending: Optional[tuple] = None
        # The library's outputs (a subclass adds its own).
        self._lsn = ffi.new("uint64_t *")
        self._data = ffi.new("const uint8_t **")
        self._size = ffi.new("size_t *")

    @property
    def next_lsn(self) -> int:
        """The LSN after the last record returned (or the first one asked for): where the
        next record is waited for (past a hole that "skip_corrupted" recovery left, the next
        record has a higher LSN)."""
        return self._next_lsn

    def _wait_in_library(self, handle, seconds: float) -> int:
        """The library call that waits up to `seconds` for the next record and writes it to
        the outputs; returns its status."""
        raise NotImplementedError

    def _waits_for_itself(self) -> bool:
        """Whether a wait here would wait for this very thread (a node's tail read from one
        of that node's callbacks): a next() in progress on another thread is not waited for
        then."""
        return False

    def _record(self, data: bytes) -> tuple:
        """The record the outputs hold, with `data` its bytes."""
        raise NotImplementedError

    def _copied(self, handle) -> None:
        """Called once the record the outputs point to is copied (see Tail)."""

    def _next_in_slice(self, handle, seconds: float) -> int:
        """_wait_in_library, keeping a record it returns in self._pending before anything
        else can run: Ctrl-C lands as the call returns, and the library's reader has moved
        past the record by then."""
        self._lsn[0] = 0
        try:
            return self._wait_in_library(handle, seconds)
        finally:
            # (LSNs start at 1; the library writes them only with a record.)
            if self._lsn[0]:
                data = bytes(ffi.buffer(self._data[0], self._size[0])) if self._size[0] else b""
                self._pending = self._record(data)
                self._lsn[0] = 0
                self._copied(handle)

    def next(self, timeout: Optional[float] = None) -> Optional[tuple]:
        """The next record, waiting up to `timeout` seconds for it (None: as long as it takes;
        0: only what is there now); None if none came in time."""
        deadline = None if timeout is None else time.monotonic() + _seconds(timeout)
        self._refuse_in_a_fork()
        if self._waits_for_itself():
            # Another thread's next() may be waiting for the very commit this thread is to
            # make: waiting for it to end would hang both (until 2026-12-07, found by review).
            if not self._serial.acquire(blocking=False):
                raise InvalidArgumentError(
                    lib.RWAL_ERR_INVALID_ARGUMENT,
                    "next() on this tail was called from one of its node's callbacks while "
                    "another thread's next() waits on it, for a commit this thread is to make")
        elif deadline is None:
            self._serial.acquire()
        elif not self._serial.acquire(timeout=min(threading.TIMEOUT_MAX,
                                                  max(0.0, deadline - time.monotonic()))):
            return None
        try:
            while self._pending is None:
                left = _WAIT_SLICE_SECONDS
                if deadline is not None:
                    left = min(left, max(0.0, deadline - time.monotonic()))
                with self._use() as handle:
                    status = self._next_in_slice(handle, left)
                    if status not in (lib.RWAL_OK, lib.RWAL_ERR_TIMEOUT):
                        raise _error(status)
                if (self._pending is None and deadline is not None
                        and time.monotonic() >= deadline):
                    return None
            record, self._pending = self._pending, None
            self._next_lsn = record[0] + 1
            return record
        finally:
            self._serial.release()

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()


class Tail(_Tail):
    """A reader that waits for records, from Log.tail(): next() returns the next durable
    record, (lsn, payload), waiting for one to become durable; iterating over it does the same
    and never ends by itself. Both raise ClosedError once the tail or its log is closed (the
    log's close wakes a waiting tail at once; the tail's own close, from another thread,
    within 0.2 s), and PoisonedError once the log failed (after the records made durable
    before the failure, which it still gives). Waits are cut in slices of 0.2 s in
    the library, so Ctrl-C is raised within one; a record the library handed over as the
    interrupt came is not lost: the next call returns it.

    It keeps its log open (as a Pin does). Like a records() iterator, once it has returned a
    record it pins it until its next call: a truncate_after() below it is refused (the record
    itself is a copy: a closed log's directory is not kept locked by it).
    One thread reads at a time: a next() on another thread waits for the one in progress,
    up to its own timeout."""

    _what = "tail"
    _free = staticmethod(_returning_ok(lib.rwal_reader_free))

    def __init__(self, handle, from_lsn: int, log: "Log") -> None:
        self._start(from_lsn)
        self._log: Optional[Log] = log
        self._open(handle)  # last: see _adopt

    def _wait_in_library(self, handle, seconds: float) -> int:
        return lib.rwal_reader_next_timeout(
            handle, math.ceil(seconds * 1e6), self._lsn, self._data, self._size)

    def _record(self, data: bytes) -> Tuple[int, bytes]:
        return self._lsn[0], data

    def _copied(self, handle) -> None:
        # The reader need not hold a record Python copied (held, it would keep the directory
        # locked after the log's close() until this tail's next call or close).
        lib.rwal_reader_release(handle)

    def next(self, timeout: Optional[float] = None) -> Optional[Tuple[int, bytes]]:
        """The next durable record as (lsn, payload), waiting up to `timeout` seconds for one
        to become durable (None: as long as it takes; 0: only what is durable now); None if
        none did in time."""
        return super().next(timeout)

    def __iter__(self) -> "Tail":
        return self

    def __next__(self) -> Tuple[int, bytes]:
        # Without a timeout next() waits for a record (or raises): never None here.
        return cast(Tuple[int, bytes], self.next())

    def close(self) -> None:
        """Frees the reader (and lets go of its log); waits for a next() in progress on another
        thread to end its slice. Twice is fine."""
        self._close_with(self._free)
        self._log = None


# The library reads and writes snapshots at most 1 MiB per call.
_CHUNK_BYTES = 1 << 20


class CheckpointWriter(_Handle):
    """A checkpoint being written, from Log.checkpoint_writer(): write() the snapshot's bytes in
    pieces, then finish() makes it durable. As a context manager it finishes when the block
    ends normally and abandons the checkpoint when it raises. abandon() (or close() before
    finish()) drops it: no checkpoint, no file left behind. Until it is finished or abandoned,
    the log keeps its records from the checkpoint's LSN on (compaction, truncate_after and
    resets below it wait or are refused). One thread writes at a time."""

    _what = "checkpoint writer"
    _warn_unclosed = False  # see __del__
    # Class attributes, bound now (see _returning_ok).
    _abandon = staticmethod(_returning_ok(lib.rwal_checkpoint_writer_free))
    _finish = staticmethod(lib.rwal_checkpoint_writer_finish)

    def __init__(self, handle, length: int, log: "Log") -> None:
        self.length = length
        self.written = 0
        self._serial = threading.Lock()
        # Kept open while the writer is: a log collected (and so closed) under it would make
        # every write fail.
        self._log: Optional[Log] = log
        self._open(handle)  # last: see _adopt

    def write(self, data: BytesLike) -> int:
        """Appends `data` to the snapshot; returns its length. InvalidArgumentError past the
        announced length (nothing written; the writer goes on). Any other failure abandons the
        checkpoint: what part of `data` reached the file is unknown."""
        buf = ffi.from_buffer(_stable(data))
        self._refuse_in_a_fork()
        with self._serial:
            with self._use() as handle:
                status = lib.rwal_checkpoint_writer_write(
                    handle, ffi.cast("const uint8_t *", buf), len(buf))
                failure = _error(status) if status != lib.RWAL_OK else None
            try:
                if failure is not None:
                    raise failure
            except InvalidArgumentError:
                raise
            except Error:
                self._drop(self._abandon)
                raise
            self.written += len(buf)
            return len(buf)

    def finish(self) -> None:
        """Makes the checkpoint durable (exactly `length` bytes must have been written:
        InvalidArgumentError otherwise, and the checkpoint is abandoned). The writer is closed
        afterwards, whatever the outcome; ClosedError if it was already."""
        self._refuse_in_a_fork()
        with self._serial:
            # Closed before, or by an abandon() on another thread meanwhile (not serialized
            # with this): either way nothing was finished here.
            if self._closed or not self._drop(self._finish):
                raise ClosedError(lib.RWAL_ERR_CLOSED,
                                  "checkpoint writer is closed (finished or abandoned)")

    def abandon(self) -> None:
        """Drops the checkpoint unless it was finished; twice is fine. Not serialized with
        write(): a signal handler that abandons runs on the thread whose write it interrupted,
        which holds that lock (the close leaves the free to the write, see _close_with)."""
        self._drop(self._abandon)

    def close(self) -> None:
        """abandon(): a writer closed before finish() leaves no checkpoint."""
        self.abandon()

    def _drop(self, free) -> bool:
        try:
            return self._close_with(free)
        finally:
            self._log = None

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None and not self._closed:
            self.finish()
        else:
            self.abandon()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and not self._left_to_the_opener():
            try:
                warnings.warn("a checkpoint writer was collected unfinished: its checkpoint "
                              "was abandoned", ResourceWarning, stacklevel=2)
            except Exception:  # noqa: BLE001 - late in shutdown, warnings may be gone
                pass
        super().__del__()


class SnapshotReader(_Handle, io.RawIOBase):
    """A checkpoint's snapshot being read, from Log.open_snapshot(): a raw binary file
    (io.RawIOBase: read, readinto, readall; wrap it in io.BufferedReader for exact-length
    reads) with the checkpoint's `lsn` and the snapshot's `length`. A read returns at most
    1 MiB. The last bytes come only once the checksum of the whole snapshot was verified:
    CorruptedError otherwise, also when the caller stops at `length` without reading the end.
    It holds its own file: it goes on reading after a newer checkpoint replaced its snapshot,
    and after the log was closed. One thread reads at a time; reads after close() raise
    ClosedError."""

    _what = "snapshot reader"
    _free = staticmethod(_returning_ok(lib.rwal_snapshot_free))

    def __init__(self, handle, lsn: int, length: int) -> None:
        io.RawIOBase.__init__(self)
        self.lsn = lsn
        self.length = length
        self._position = 0
        self._ended = False
        self._serial = threading.Lock()
        self._size = ffi.new("size_t *")
        self._open(handle)  # last: see _adopt

    def readable(self) -> bool:
        """True: a snapshot reader reads (it does not seek)."""
        return True

    def _read_into(self, handle, view) -> int:
        """One library read into `view` (not empty); 0 at the end, once it was verified."""
        target = ffi.from_buffer(view, require_writable=True)
        status = lib.rwal_snapshot_read(
            handle, ffi.cast("uint8_t *", target), min(len(view), _CHUNK_BYTES), self._size)
        if status == lib.RWAL_END:
            self._ended = True
            return 0
        _check(status)
        return self._size[0]

    def readinto(self, buffer) -> int:
        """Reads the next bytes into `buffer` (at most 1 MiB); 0 at the end."""
        view = memoryview(buffer).cast("B")
        self._refuse_in_a_fork()
        with self._serial, self._use() as handle:
            if self._ended or not len(view):
                return 0
            got = self._read_into(handle, view)
            self._position += got
            if got and self._position >= self.length:
                # The last bytes: the end, and with it the checksum, is checked before they
                # are handed out, so that a caller who stops at `length` learns of corruption.
                if self._read_into(handle, memoryview(bytearray(1))) != 0:
                    raise CorruptedError(lib.RWAL_ERR_CORRUPTED,
                                         "snapshot at LSN %d is longer than its %d bytes"
                                         % (self.lsn, self.length))
            return got

    def readall(self) -> bytes:
        """Everything left, read 1 MiB at a time."""
        parts: List[bytes] = []
        chunk = bytearray(_CHUNK_BYTES)
        while True:
            got = self.readinto(chunk)
            if not got:
                return b"".join(parts)
            parts.append(bytes(chunk[:got]))

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def close(self) -> None:
        """Frees the reader; twice is fine. Not serialized with readinto(): a signal handler
        that closes runs on the thread whose read it interrupted, which holds that lock (the
        close leaves the free to the read, see _close_with)."""
        self._close_with(self._free)
        io.RawIOBase.close(self)

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        _Handle.__del__(self)


# The library's message levels as logging's.
_LOG_LEVELS = {
    lib.RWAL_LOG_ERROR: logging.ERROR,
    lib.RWAL_LOG_WARN: logging.WARNING,
    lib.RWAL_LOG_INFO: logging.INFO,
}
# The logger the library's messages go to (rwal.log_to), or None.
_log_target: "list[Optional[logging.Logger]]" = [None]


def log_to(logger: Union[str, logging.Logger, None] = "rwal", level: int = logging.INFO) -> None:
    """Sends the library's messages at `level` (logging.INFO, WARNING or ERROR; a level above
    ERROR is ERROR) and more severe to `logger` (a logging.Logger or its name; None: no
    messages, as before the first call): what recovery decided at open, a node's notes
    (snapshots sent, refused or dropped; peers refused; a stalled sync handed over; why it
    stopped). They come from the thread that caused them (a node's own threads too), one at a
    time; a handler must not call rwal (the library holds its process-wide logging lock during
    the call)."""
    if logger is None:
        _log_target[0] = None
        lib.rwal_set_log_callback(ffi.NULL, 0, ffi.NULL)
        return
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    if level <= logging.INFO:
        threshold = lib.RWAL_LOG_INFO
    elif level <= logging.WARNING:
        threshold = lib.RWAL_LOG_WARN
    else:
        threshold = lib.RWAL_LOG_ERROR
    _log_target[0] = logger
    lib.rwal_set_log_callback(lib._rwal_py_log, threshold, ffi.NULL)


# Ctrl-C (or sys.exit) that cffi caught in a callback running on a thread that is opening a
# log or a node. A signal that arrives while the library runs without the GIL (recovery, a
# replay) is raised as soon as Python runs again on the main thread: at the entry of the next
# callback there (a log message, a node's apply or restore), not in the caller, and cffi
# catches it. Noted here and raised by the open once the library returns, after it closed what
# it opened: the caller asked to stop.
_opening = threading.local()


@contextmanager
def _interruptible_open() -> Iterator[None]:
    """Marks this thread as opening a log or a node: an interrupt its callbacks catch is noted
    (`_take_interrupt`) instead of printed."""
    outer = getattr(_opening, "depth", 0), getattr(_opening, "interrupt", None)
    _opening.depth, _opening.interrupt = outer[0] + 1, None
    try:
        yield
    finally:
        _opening.depth = outer[0]
        if outer[0]:
            _opening.interrupt = _opening.interrupt or outer[1]


def _take_interrupt() -> Optional[BaseException]:
    """The interrupt a callback caught on this thread during the open running here, if any."""
    interrupt = getattr(_opening, "interrupt", None)
    _opening.interrupt = None
    return interrupt


def _noted_interrupt(exc_type, exc_value) -> bool:
    """Notes `exc_value` for the open running on this thread if it is an interrupt and an open
    runs; whether it was noted."""
    if not getattr(_opening, "depth", 0) or not issubclass(
            exc_type, (KeyboardInterrupt, SystemExit)):
        return False
    if getattr(_opening, "interrupt", None) is None:
        _opening.interrupt = exc_value
    return True


def _log_callback_error(exc_type, exc_value, tb) -> None:
    """What the log handler raised: an interrupt during an open is raised by the open;
    anything else is printed, as cffi does."""
    if not _noted_interrupt(exc_type, exc_value):
        sys.stderr.write("rwal: the log handler raised:\n")
        traceback.print_exception(exc_type, exc_value, tb, file=sys.stderr)


@ffi.def_extern(onerror=_log_callback_error)
def _rwal_py_log(level, message, _userdata) -> None:
    logger = _log_target[0]
    if logger is not None:
        text = ffi.string(message).decode("utf-8", "replace")
        # A node collected by a garbage collection in the handler is not closed here, where
        # its threads' messages would wait for the library's logging lock this thread holds
        # while the close waited for them: Node.__del__ closes it on a thread of its own.
        logger.log(_LOG_LEVELS.get(level, logging.INFO), "%s", text)


@atexit.register
def _stop_logging_at_exit() -> None:
    """After the nodes' own exit hook (registered later, so run earlier): no message may reach
    Python once it is finalizing."""
    lib.rwal_set_log_callback(ffi.NULL, 0, ffi.NULL)


from .node import Node, NodeTail, StateReader  # noqa: E402 - needs the errors above
