"""pytest tests of the Python package over the C ABI."""

import errno
import gc
import io
import logging
import os
import shutil
import sys
import threading
import time

import pytest

import rwal


@pytest.fixture
def path(tmp_path):
    return tmp_path / "log"


def wait_until(condition, timeout=30.0):
    """Polls `condition` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_empty_log_and_round_trip(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        assert (log.first_lsn, log.last_lsn, log.durable_lsn) == (1, 0, 0)
        assert list(log.records()) == []
        assert log.append(b"hello") == 1
        assert log.append(bytearray(b"world")) == 2
        assert log.append(memoryview(b"xxview")[2:]) == 3
        assert log.append_batch([b"a", b"", b"c" * 10000]) == 4
        log.commit(6)
        assert log.durable_lsn == 6
        assert log.read(1) == b"hello"
        assert log.read(3) == b"view"
        assert log.read(6) == b"c" * 10000
        assert list(log.records(5)) == [(5, b""), (6, b"c" * 10000)]
    with rwal.open(path) as log:
        assert [lsn for lsn, _ in log.records()] == [1, 2, 3, 4, 5, 6]


def test_records_checks_its_arguments_at_the_call(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        with pytest.raises(rwal.InvalidArgumentError, match="from_lsn"):
            log.records(-1)
        with pytest.raises(TypeError, match="verify_checksums"):
            log.records(verify_checksums=1)
        # The reader opens at the first record asked for.
        records = log.records(5)
        with pytest.raises(rwal.NotFoundError):
            next(records)


def test_records_verify_checksums_unless_told_not_to(path):
    """A payload damaged behind the open log's back stops a reader that checks checksums (the
    default); one told not to returns the bytes as found. (Staged: with mmap, the active
    segment's records are checked whatever the reader says, as its reads show copies.)"""
    with rwal.open(path, segment_size=1 << 20, backend="staged") as log:
        log.append(b"first record")
        log.append(b"second record")
        log.sync()
        segment = path / ("%020d.seg" % 1)
        at = segment.read_bytes().index(b"second record")
        with open(segment, "r+b") as f:
            f.seek(at)
            f.write(b"S")
        records = log.records()
        assert next(records) == (1, b"first record")
        with pytest.raises(rwal.CorruptedError, match="LSN 2"):
            next(records)
        assert list(log.records(verify_checksums=False)) == [
            (1, b"first record"),
            (2, b"Second record"),
        ]
        with pytest.raises(TypeError, match="verify_checksums"):
            next(log.records(verify_checksums="no"))


def test_errors_carry_codes(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        log.append(b"x")
        with pytest.raises(rwal.NotDurableError) as err:
            log.read(1)  # appended, not durable
        assert err.value.code == -21 and err.value.status == "RWAL_ERR_NOT_DURABLE"
        assert isinstance(err.value, rwal.NotFoundError)  # what it was before
        with pytest.raises(rwal.NotFoundError) as err:
            log.read(5)  # never written
        assert err.value.code == -8 and err.value.status == "RWAL_ERR_NOT_FOUND"
        with pytest.raises(rwal.LockedError):
            rwal.open(path)
        with pytest.raises(rwal.InvalidArgumentError, match="segment_bytes"):
            rwal.open(path.parent / "other", segment_size=1000)
        with pytest.raises(rwal.InvalidArgumentError, match="unknown backend"):
            rwal.open(path.parent / "other", backend="floppy")
        with pytest.raises(rwal.InvalidArgumentError, match="LSN 0"):
            list(log.records(0))  # LSNs start at 1
    with pytest.raises(rwal.NoLogError) as missing:
        rwal.open(path.parent / "missing", create=False)
    # What `except OSError as e: if e.errno == errno.ENOENT` looks at (None until 2026-12-07).
    assert missing.value.errno == errno.ENOENT
    assert "no log in" in str(missing.value)
    assert issubclass(rwal.TimeoutError, rwal.Error)
    assert rwal.TimeoutError(rwal.lib.RWAL_ERR_TIMEOUT, "late").errno == errno.ETIMEDOUT
    # Not bool(create): "no" would have created the log it meant to refuse.
    with pytest.raises(TypeError, match="create must be a bool"):
        rwal.open(path.parent / "not-created", create="no")
    assert not (path.parent / "not-created").exists()


def test_append_batch_refuses_one_record_given_as_the_batch(path):
    with rwal.open(path) as log:
        for one in (b"abc", bytearray(b"abc"), memoryview(b"abc"), "abc"):
            with pytest.raises(TypeError, match="records must be a sequence"):
                log.append_batch(one)
        assert log.last_lsn == 0
        assert log.append_batch([b"abc"]) == 1


def test_an_iteration_left_part_way_does_not_keep_a_closed_logs_directory(path):
    # Each record is copied and let go of (rwal_reader_release): a records() iterator or a tail
    # left part way used to hold its last record in the library, and the directory stayed
    # locked after close() until the iterator was collected (LockedError on a reopen).
    log = rwal.open(path, segment_size=1 << 20)
    for data in (b"one", b"two", b"three"):
        log.commit(log.append(data))
    records = log.records(1)
    assert next(records) == (1, b"one")
    tail = log.tail(2)
    assert tail.next(timeout=5) == (2, b"two")
    log.close()
    with rwal.open(path) as again:
        assert [data for _, data in again.records(1)] == [b"one", b"two", b"three"]
    # The pins stay until the iteration goes on: truncate_after below them is refused.
    records.close()
    tail.close()
    log = rwal.open(path)
    records = log.records(1)
    assert next(records) == (1, b"one")
    with pytest.raises(rwal.PinnedError):
        log.truncate_after(0)
    records.close()
    log.close()


def _crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), as the log's files carry it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_a_control_file_of_a_newer_version_is_unsupported_and_left_as_it_is(path):
    # The library's own refusal reaches Python as UnsupportedError (the Python tests got the
    # other statuses from the library, this one only through the mapping by name). Both 4 KiB
    # slots of the control file are rewritten as a later format would write them: version 2,
    # checksums made good. (docs/design.md section 2.4: magic, then the version at byte 8,
    # the CRC32C of the rest in the slot's last 4 bytes.)
    with rwal.open(path, segment_size=1 << 20) as log:
        log.commit(log.append(b"kept"))
    control = path / "control"
    original = control.read_bytes()
    assert len(original) == 8192 and original[:7] == b"RWALCTL"
    newer = bytearray(original)
    for slot in (0, 4096):
        body = bytearray(newer[slot:slot + 4092])
        if _crc32c(bytes(body)) != int.from_bytes(newer[slot + 4092:slot + 4096], "little"):
            continue  # a slot never written
        body[8:12] = (2).to_bytes(4, "little")
        newer[slot:slot + 4092] = body
        newer[slot + 4092:slot + 4096] = _crc32c(bytes(body)).to_bytes(4, "little")
    assert newer != original
    control.write_bytes(bytes(newer))
    with pytest.raises(rwal.UnsupportedError, match="version 2") as err:
        rwal.open(path)
    assert err.value.status == "RWAL_ERR_UNSUPPORTED"
    # Refused before anything was touched: the files are as they were, and the log opens once
    # its control file is restored.
    assert control.read_bytes() == bytes(newer)
    control.write_bytes(original)
    with rwal.open(path) as log:
        assert [data for _, data in log.records(1)] == [b"kept"]


def test_every_status_of_the_header_has_its_exception():
    from rwal import _ERRORS, lib
    codes = {name: getattr(lib, name) for name in dir(lib) if name.startswith("RWAL_ERR_")}
    assert "RWAL_ERR_ABANDONED" in codes
    for name, code in codes.items():
        if name == "RWAL_ERR_BUFFER_TOO_SMALL":
            continue  # the package sizes its buffers: never raised
        assert code in _ERRORS, f"{name} ({code}) has no exception"
        assert issubclass(_ERRORS[code], rwal.Error)
    assert _ERRORS[lib.RWAL_ERR_ABANDONED] is rwal.AbandonedError


def test_truncate_and_stats(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        for i in range(10):
            log.append(bytes([i]) * 10)
        log.sync()
        log.truncate_after(4)
        assert log.last_lsn == 4
        assert log.append(b"five") == 5
        log.commit(5)
        stats = log.stats()
        assert stats["syncs"] >= 1 and stats["records_synced"] >= 5


def test_an_interrupt_right_after_the_native_open_closes_the_log(path, monkeypatch):
    # A KeyboardInterrupt lands right after a native call returns: here, between rwal_open and
    # the wrapping of its handle, which used to leak the handle and its directory lock.
    def interrupted(self, handle):
        raise KeyboardInterrupt

    monkeypatch.setattr(rwal.Log, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rwal.open(path)
    monkeypatch.undo()
    log = rwal.open(path)  # not LockedError: the interrupted open closed its handle
    log.close()


def _interrupted_after(name):
    """The library as rwal.lib, but a KeyboardInterrupt lands as its function `name` returns
    (where Python raises a signal that came during a native call)."""
    real = rwal.lib

    class Interrupted:
        def __getattr__(self, attr):
            return getattr(real, attr)

    def call(*args):
        result = getattr(real, name)(*args)
        raise KeyboardInterrupt(result)

    library = Interrupted()
    setattr(library, name, call)
    return library


def test_an_interrupt_right_after_a_native_open_leaks_no_pin_writer_or_reader(path, monkeypatch):
    # A pin, a checkpoint writer and a reader each hold the log's records from truncation while
    # open: one leaked by an interrupt between its native open and its wrapping would hold them
    # until the log closes.
    def interrupted(self, *args):
        raise KeyboardInterrupt

    with rwal.open(path, segment_size=1 << 20) as log:
        for i in range(10):
            log.append(bytes([i]) * 10)
        log.sync()
        for cls, make in ((rwal.Pin, lambda: log.pin("leaked", 8)),
                          (rwal.CheckpointWriter, lambda: log.checkpoint_writer(8, 4))):
            monkeypatch.setattr(cls, "__init__", interrupted)
            with pytest.raises(KeyboardInterrupt):
                make()
            monkeypatch.undo()
        # A reader whose open is interrupted right after it returns frees it (and its pin)
        # with the iteration's frame.
        monkeypatch.setattr(rwal, "lib", _interrupted_after("rwal_reader_open"))
        with pytest.raises(KeyboardInterrupt):
            next(log.records(6))
        monkeypatch.undo()
        gc.collect()
        # A reader left half way frees its native reader (and its pin) when closed.
        records = log.records(6)
        assert next(records) == (6, bytes([5]) * 10)
        with pytest.raises(rwal.PinnedError):
            log.truncate_after(4)
        records.close()
        log.truncate_after(4)
        assert log.last_lsn == 4


def _tear_tail_after_one_record(path, record_bytes):
    """Writes garbage right after the only record of the log's active segment, where a write
    that a crash interrupted would have left it (docs/design.md 2.3: records start at 4096)."""
    active = [
        p for p in sorted(os.listdir(path))
        if p.endswith(".seg") and open(os.path.join(path, p), "rb").read(8) == b"RWALSEG\x01"
    ]
    assert len(active) == 1, os.listdir(path)
    with open(os.path.join(path, active[0]), "r+b") as segment:
        segment.seek(4096 + record_bytes)
        assert segment.read(64) == bytes(64)
        segment.seek(4096 + record_bytes)
        segment.write(b"\xa5" * 64)


class _InterruptingHandler(logging.Handler):
    """Raises KeyboardInterrupt at the first message that contains `at`: as Ctrl-C does when
    it arrives while the library runs without the GIL, and Python first runs again at the
    entry of the log callback."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at
        self.raised = 0

    def emit(self, record) -> None:
        if self.at in record.getMessage() and not self.raised:
            self.raised += 1
            raise KeyboardInterrupt


def test_ctrl_c_caught_by_the_log_callback_during_an_open_is_raised_by_the_open(path, capsys):
    # cffi caught the interrupt in the callback, printed it, and the open returned a log: the
    # Ctrl-C was lost.
    handler = _InterruptingHandler("opened")
    logger = logging.getLogger("rwal.test.interrupt")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    rwal.log_to(logger, logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt):
            rwal.open(path, segment_size=1 << 20)
    finally:
        rwal.log_to(None)
        logger.removeHandler(handler)
    assert handler.raised == 1
    assert "KeyboardInterrupt" not in capsys.readouterr().err
    # The log was closed: its directory is not locked.
    with rwal.open(path, segment_size=1 << 20) as log:
        assert log.last_lsn == 0


def test_the_librarys_messages_go_to_a_python_logger(path, caplog):
    rwal.log_to("rwal.test", logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="rwal.test"):
            with rwal.open(path, segment_size=1 << 20):
                pass
        mine = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "rwal.test"]
        # A new log and an open are news, not trouble: INFO, nothing at WARNING.
        assert any(level == logging.INFO and "Created" in text for level, text in mine), mine
        assert any(level == logging.INFO and "opened" in text for level, text in mine), mine
        assert not [text for level, text in mine if level >= logging.WARNING], mine
        caplog.clear()
        # WARNING and up only: an open without damage says nothing. (Every open asks for the
        # same segment size: a segment prepared ahead at another size is removed at open,
        # which recovery reports, at WARNING.)
        rwal.log_to("rwal.test", logging.WARNING)
        with caplog.at_level(logging.INFO, logger="rwal.test"):
            with rwal.open(path, segment_size=1 << 20) as log:
                log.append(b"12345678")
        assert not [r for r in caplog.records if r.name == "rwal.test"]
        # Bytes after the last record (a write a crash tore) are cut at the next open: WARNING.
        _tear_tail_after_one_record(path, record_bytes=32 + 8)
        with caplog.at_level(logging.INFO, logger="rwal.test"):
            with rwal.open(path, segment_size=1 << 20) as log:
                assert log.last_lsn == 1
        torn = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "rwal.test"]
        assert [level for level, text in torn if "TornTailCut" in text] == [logging.WARNING], torn
    finally:
        rwal.log_to(None)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rwal.test"):
        with rwal.open(path, segment_size=1 << 20):
            pass
    assert not [r for r in caplog.records if r.name == "rwal.test"]


def test_close_twice_and_use_after_close(path):
    log = rwal.open(path, segment_size=1 << 20)
    log.append(b"x")
    log.close()
    log.close()
    assert log.closed
    with pytest.raises(rwal.ClosedError):
        log.append(b"y")
    with rwal.open(path) as again:
        assert again.read(1) == b"x"  # close synced it


class _CommitThenClose:
    """The library, with rwal_commit followed by a close of `log` on the same thread: what a
    signal handler that closes the log does when it interrupts a commit (it runs after the
    native call returned, before the call's bookkeeping ended)."""

    def __init__(self, real, log):
        self._real, self._log = real, log

    def __getattr__(self, name):
        return getattr(self._real, name)

    def rwal_commit(self, handle, lsn):
        status = self._real.rwal_commit(handle, lsn)
        self._log.close()
        return status


def test_a_close_on_the_thread_of_a_call_in_progress_does_not_wait_for_it(path, monkeypatch):
    # close() waited for every call in progress, its own thread's interrupted one too: a
    # SIGTERM handler that closes the log hung for good.
    log = rwal.open(path)
    lsn = log.append(b"x")
    monkeypatch.setattr(rwal, "lib", _CommitThenClose(rwal.lib, log))
    done = []
    worker = threading.Thread(target=lambda: done.append(log.commit(lsn)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "close() waited for its own thread's call"
    assert done == [None] and log.closed
    monkeypatch.undo()
    with rwal.open(path) as again:
        assert again.read(lsn) == b"x"


def test_an_interrupted_close_leaves_the_log_open_for_a_later_close(path):
    # A KeyboardInterrupt while close() waits for another thread's call: it used to leave the
    # log marked closed and never freed (its directory locked until the process ended).
    import signal

    log = rwal.open(path)
    log.append(b"x")
    entered, release = threading.Event(), threading.Event()

    def busy():
        log._enter([])
        entered.set()
        release.wait(10)
        log._exit()

    holder = threading.Thread(target=busy)
    holder.start()
    assert entered.wait(10)
    # Python's own SIGINT handler, whatever this process inherited (a background job's shell
    # ignores SIGINT, and Python then keeps it ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt_the_wait():
        # Once close() has marked the handle closed: it is waiting for the busy call. (A timer
        # could fire before close() starts, and the test would pass without an interrupted
        # wait.)
        deadline = time.monotonic() + 10
        while not log._closed and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_the_wait)
    try:
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            log.close()
        interrupter.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not log.closed
    release.set()
    holder.join(10)
    log.close()
    with rwal.open(path) as again:  # not LockedError
        assert again.read(1) == b"x"


def test_append_returns_its_own_lsn_when_code_runs_before_its_bookkeeping_ends(path):
    # The per-thread output cell was read after _exit: code that ran on the thread in between
    # (a signal handler that appends) changed it, and the outer append returned that LSN.
    log = rwal.open(path)
    real_exit = log._exit

    def exit_then_append():
        del log._exit
        real_exit()
        log.append(b"marker")

    log._exit = exit_then_append
    assert log.append(b"first") == 1
    log.sync()
    assert log.read(2) == b"marker"
    log.close()


class _FreesRecorded:
    """The library, with the frees of logs and snapshot readers recorded (they still run), and
    one named call followed, once, by `then()`: what a signal handler does when it interrupts
    that call on its thread (it runs after the native call returned)."""

    def __init__(self, real, name, then):
        self._real, self._name, self._then = real, name, then
        self.freed = []

    def __getattr__(self, name):
        real = getattr(self._real, name)
        if name in ("rwal_close", "rwal_snapshot_free"):
            def freeing(handle):
                self.freed.append(name)
                return real(handle)
            return freeing
        if name == self._name:
            def followed(*args):
                status = real(*args)
                then, self._then = self._then, None
                if then is not None:
                    then()
                return status
            return followed
        return real


def test_a_close_on_the_thread_of_a_call_in_progress_leaves_the_free_to_that_call(
        path, monkeypatch):
    # close() from a signal handler freed the handle at once, while the call it interrupted
    # went on to use it: read() makes a second native call when its first buffer is too small.
    with rwal.open(path) as log:
        log.commit(log.append(b"r" * 10_000))
    log = rwal.open(path)
    lib = _FreesRecorded(rwal.lib, "rwal_read", log.close)
    monkeypatch.setattr(rwal, "lib", lib)
    # The _close_log bound at import is the real one: record it too.
    monkeypatch.setattr(rwal.Log, "_close_log", staticmethod(lib.rwal_close), raising=False)
    assert log.read(1) == b"r" * 10_000, "the second read ran on a live handle"
    assert log.closed and lib.freed == ["rwal_close"], "freed once the read ended"
    with pytest.raises(rwal.ClosedError):
        log.read(1)
    log.close()  # twice is fine
    monkeypatch.undo()
    with rwal.open(path) as again:  # the directory was released
        assert again.last_lsn == 1


def test_an_interrupt_as_a_call_is_counted_leaves_no_count_behind(path):
    # A KeyboardInterrupt that landed as _enter returned, before the caller's `try`, left the
    # call counted for good; close() then took the thread for one inside a call and left the
    # free to it: the directory stayed locked.
    log = rwal.open(path)
    real_enter = log._enter

    def enter_then_interrupt(*args):
        real_enter(*args)
        raise KeyboardInterrupt

    for call in (lambda: log.append(b"x"), lambda: log.commit(0), log.sync):
        log._enter = enter_then_interrupt
        with pytest.raises(KeyboardInterrupt):
            call()
        del log._enter
    log.close()
    with rwal.open(path) as again:  # not LockedError
        assert again.last_lsn == 0


def test_append_returns_its_own_lsn_when_a_handler_appends_right_after_its_native_call(
        path, monkeypatch):
    # The handler runs right after rwal_append returned, before the outer call read its
    # output cell, and its own append wrote its LSN there.
    log = rwal.open(path)
    monkeypatch.setattr(rwal, "lib", _FreesRecorded(rwal.lib, "rwal_append",
                                                   lambda: log.append(b"marker")))
    assert log.append(b"first") == 1
    monkeypatch.undo()
    log.sync()
    assert (log.read(1), log.read(2)) == (b"first", b"marker")
    log.close()


def test_a_snapshot_reader_closed_on_the_thread_of_its_read_does_not_hang(path, monkeypatch):
    # close() took the lock that the interrupted readinto() held on the same thread.
    log = rwal.open(path)
    log.commit(log.append(b"x"))
    log.checkpoint(1, b"state" * 1000)
    reader = log.open_snapshot()
    lib = _FreesRecorded(rwal.lib, "rwal_snapshot_read", reader.close)
    monkeypatch.setattr(rwal, "lib", lib)
    monkeypatch.setattr(rwal.SnapshotReader, "_free",
                        staticmethod(rwal._returning_ok(lib.rwal_snapshot_free)))
    got = []
    worker = threading.Thread(target=lambda: got.append(reader.readinto(bytearray(100))),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "close() waited for its own thread's read"
    assert got == [100] and reader.closed and lib.freed == ["rwal_snapshot_free"]
    monkeypatch.undo()
    log.close()


def test_a_nul_in_a_path_or_an_address_is_refused(tmp_path):
    # cffi passes the bytes as they are, and C reads up to the NUL: "a\0b" opened "a".
    with pytest.raises(ValueError, match="NUL"):
        rwal.open(str(tmp_path / "a") + "\0b")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="NUL"):
        rwal.Node(1, tmp_path / "n", cluster_id=1, secret=b"s" * 32,
                  listen="127.0.0.1:0\0junk", voters=[1])
    # An address given as a port number is a TypeError naming it: bytes(7101) made it 7101
    # NUL bytes (a ValueError about NULs), and bytes(0) an empty address.
    for port in (7101, 0):
        with pytest.raises(TypeError, match="listen must be a str or bytes, not int"):
            rwal.Node(1, tmp_path / "n", cluster_id=1, secret=b"s" * 32, listen=port,
                      voters=[1])
        with pytest.raises(TypeError, match="peer address must be a str or bytes, not int"):
            rwal.Node(1, tmp_path / "n", cluster_id=1, secret=b"s" * 32, peers={2: port},
                      voters=[1, 2])
    assert not (tmp_path / "n").exists()


def test_threads_append_and_commit_at_once(path):
    with rwal.open(path, segment_size=4 << 20, backend="staged") as log:
        seen = []
        lock = threading.Lock()

        def worker(n):
            for i in range(200):
                data = b"%d:%d" % (n, i)
                lsn = log.append(data)
                log.commit(lsn)
                with lock:
                    seen.append((lsn, data))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(lsn for lsn, _ in seen) == list(range(1, 1601))
        for lsn, data in seen[::97]:
            assert log.read(lsn) == data
        stats = log.stats()
        assert stats["syncs"] < stats["commits"], "group commit served several committers per sync"


def test_errors_pickle_with_their_code_and_leader():
    import pickle

    error = rwal.CorruptedError(rwal.lib.RWAL_ERR_CORRUPTED, "bad record at 7")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is rwal.CorruptedError
    assert (back.code, back.status, str(back)) == (error.code, error.status, "bad record at 7")
    moved = rwal.NotLeaderError(rwal.lib.RWAL_ERR_NOT_LEADER, "not leader", 3, "10.0.0.3:7101")
    back = pickle.loads(pickle.dumps(moved))
    assert (back.leader_id, back.leader_addr, str(back)) == (3, "10.0.0.3:7101", "not leader")
    assert back.proposed is None
    # Where propose_and_wait's record went, whatever the error.
    stopped = rwal.ClosedError(rwal.lib.RWAL_ERR_CLOSED, "node closed")
    stopped.proposed = (12, 3)
    assert pickle.loads(pickle.dumps(stopped)).proposed == (12, 3)


def test_mutable_buffers_are_copied_and_read_only_ones_are_not(path):
    from rwal import _stable

    data = b"immutable"
    assert _stable(data) is data
    view = memoryview(data)
    assert _stable(view) is view
    mutable = bytearray(b"mutable")
    copy = _stable(mutable)
    assert copy == b"mutable" and copy is not mutable
    mutable[0] = ord("M")
    assert copy == b"mutable"
    with rwal.open(path) as log:
        lsn = log.append(bytearray(b"from a bytearray"))
        first = log.append_batch([bytearray(b"one"), memoryview(bytearray(b"two"))])
        log.sync()
        assert log.read(lsn) == b"from a bytearray"
        assert [log.read(first), log.read(first + 1)] == [b"one", b"two"]


def test_close_while_another_thread_iterates_never_crashes(path):
    log = rwal.open(path, segment_size=1 << 20)
    for i in range(2000):
        log.append(b"r" * 100)
    log.sync()
    started = threading.Event()
    closed = threading.Event()
    outcome = {}

    def reader():
        try:
            for n, _ in enumerate(log.records()):
                if n == 10:
                    # Holds the iteration until the log is closed under it: otherwise the 2000
                    # records are usually read before close() runs, and the close during an
                    # iteration is never met.
                    started.set()
                    assert closed.wait(30)
            outcome["read"] = n + 1
        except rwal.ClosedError:
            outcome["closed"] = True

    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(30)
    log.close()
    closed.set()
    t.join(30)
    assert not t.is_alive()
    # The iteration is told the log closed: never a crash, never records of a closed log.
    assert outcome == {"closed": True}


def test_checkpoint_and_compact(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        assert log.latest_checkpoint() is None
        for i in range(20):
            log.append(bytes([i]) * (200 << 10))
        log.sync()
        with pytest.raises(rwal.InvalidArgumentError):
            log.checkpoint(21, b"x")
        log.checkpoint(12, b"state at 12" * 1000)
        assert log.latest_checkpoint() == (12, b"state at 12" * 1000)
        log.compact()
        assert log.first_lsn > 1
        with pytest.raises(rwal.CompactedError):
            log.read(1)
        assert log.read(20) == bytes([19]) * (200 << 10)
    with rwal.open(path) as log:
        assert log.latest_checkpoint()[0] == 12
        assert log.first_lsn > 1


def _pattern(length):
    """Byte i is i % 251: a chunk out of place shows (1 MiB is no multiple of 251)."""
    return (bytes(range(251)) * (length // 251 + 1))[:length]


def test_snapshots_stream_in_and_out_in_pieces(path):
    body = _pattern((3 << 20) + 12345)
    with rwal.open(path, segment_size=1 << 20) as log:
        assert log.open_snapshot() is None
        _fill(log, records=6)
        log.checkpoint(2)
        assert log.open_snapshot() is None, "a checkpoint without a snapshot has nothing to read"
        # From a file-like source, in the library's chunks.
        log.checkpoint_from(3, len(body), io.BytesIO(body))
        assert log.latest_checkpoint() == (3, body)
        # From pieces of any size, through a writer; the block's normal end finishes it.
        with log.checkpoint_writer(4, len(body)) as writer:
            for at in range(0, len(body), 700_001):
                piece = memoryview(body)[at:at + 700_001]
                assert writer.write(piece) == len(piece)
            assert writer.written == len(body)
        assert writer.closed
        with pytest.raises(rwal.ClosedError):
            writer.write(b"more")
        with log.open_snapshot() as reader:
            assert (reader.lsn, reader.length) == (4, len(body))
            assert reader.readinto(bytearray(3 << 20)) == 1 << 20, "at most 1 MiB a read"
            copied = io.BytesIO()
            shutil.copyfileobj(reader, copied)
            assert copied.getvalue() == body[1 << 20:]
            assert reader.read() == b""
        # Exact reads through a buffer; a reader outlives a newer checkpoint and its log.
        reader = log.open_snapshot()
        buffered = io.BufferedReader(reader)
        first = buffered.read(10)
        log.checkpoint(5, b"newer")
    assert first + buffered.read(len(body) - 10) == body
    assert buffered.read() == b""
    buffered.close()
    assert reader.closed
    reader.close()
    with pytest.raises(rwal.ClosedError):
        reader.readinto(bytearray(1))


def test_a_checkpoint_writer_refuses_wrong_lengths_and_abandons_cleanly(path):
    def temp_files():
        return [f for f in os.listdir(path) if f.startswith("snapshot-") and f.endswith(".tmp")]

    with rwal.open(path, segment_size=1 << 20) as log:
        _fill(log, records=6)
        log.checkpoint(2, b"kept")
        writer = log.checkpoint_writer(3, 4)
        with pytest.raises(rwal.InvalidArgumentError):
            writer.write(b"12345")  # past the length: nothing written, the writer goes on
        writer.write(b"12")
        assert temp_files()
        with pytest.raises(rwal.InvalidArgumentError):
            writer.finish()  # two bytes short: abandoned
        assert writer.closed and not temp_files()
        with pytest.raises(rwal.ClosedError):
            writer.finish()
        writer.abandon()  # twice is fine
        # An exception in the block abandons it; so do abandon() and close().
        with pytest.raises(RuntimeError):
            with log.checkpoint_writer(3, 4) as writer:
                writer.write(b"1234")
                raise RuntimeError("the engine failed half way")
        for drop in ("abandon", "close"):
            writer = log.checkpoint_writer(3, 4)
            writer.write(b"1234")
            getattr(writer, drop)()
            with pytest.raises(rwal.ClosedError):
                writer.finish()
        with pytest.raises(rwal.InvalidArgumentError, match="ended after 3 of 10 bytes"):
            log.checkpoint_from(3, 10, io.BytesIO(b"abc"))
        for length in (-1, 1 << 64, (1 << 64) - 1):
            with pytest.raises(rwal.InvalidArgumentError):
                log.checkpoint_writer(3, length)
        with pytest.raises(rwal.InvalidArgumentError):
            log.checkpoint_writer(7, 4)  # not durable
        assert log.latest_checkpoint() == (2, b"kept")
        assert not temp_files()

        # Sources with read() only: one that gives more than asked is refused; an empty
        # snapshot is not the same as none.
        class ReadOnly:
            def __init__(self, data, extra=0):
                self.data, self.extra = data, extra

            def read(self, n):
                piece, self.data = self.data[:n + self.extra], self.data[n + self.extra:]
                return piece

        with pytest.raises(rwal.InvalidArgumentError, match="returned 6 bytes when asked for 5"):
            log.checkpoint_from(3, 5, ReadOnly(b"hello, and more", extra=1))

        # A readinto() that reports a count the buffer cannot hold (more than it, negative, not
        # an int) is refused, with no checkpoint: cut to the buffer (or want[:-1]) the snapshot
        # held other bytes than the source's (found by review).
        class Miscounting(io.RawIOBase):
            def __init__(self, report):
                self.report = report

            def readinto(self, b):
                b[:] = b"z" * len(b)
                return self.report(len(b))

        for report in (lambda n: n + 10, lambda n: -1, lambda n: True, lambda n: 2.0):
            with pytest.raises(rwal.InvalidArgumentError, match="readinto returned"):
                log.checkpoint_from(3, 5, Miscounting(report))
            assert log.latest_checkpoint() == (2, b"kept")
            assert not temp_files()
        log.checkpoint_from(3, 5, ReadOnly(b"hello, and more"))
        assert log.latest_checkpoint() == (3, b"hello")
        log.checkpoint_from(4, 0, ReadOnly(b""))
        with log.open_snapshot() as reader:
            assert (reader.lsn, reader.length, reader.read()) == (4, 0, b"")
        # A writer whose log closed cannot finish.
        writer = log.checkpoint_writer(5, 1)
        writer.write(b"x")
    with pytest.raises(rwal.ClosedError):
        writer.finish()
    with rwal.open(path) as log:
        assert log.latest_checkpoint() == (4, b"")


def test_a_snapshot_read_to_its_end_is_checked(path):
    body = _pattern(2 << 20)
    with rwal.open(path, segment_size=1 << 20) as log:
        _fill(log, records=6)
        log.checkpoint_from(3, len(body), io.BytesIO(body))
    name = path / ("snapshot-%020d.snap" % 3)
    with open(name, "r+b") as f:  # a flipped bit in the body (after the 4 KiB header)
        f.seek(4096 + (1 << 20) + 5)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0x10]))
    with rwal.open(path) as log:
        with log.open_snapshot() as reader:
            assert reader.read(1 << 20) == body[:1 << 20]
            # The last bytes are not handed out unchecked, even to a reader that stops at
            # the snapshot's length.
            with pytest.raises(rwal.CorruptedError):
                reader.read(1 << 20)
            with pytest.raises(rwal.CorruptedError):
                reader.read()


def _fill(log, records=20):
    """Appends `records` records of 200 KiB (about five to a 1 MiB segment) and syncs."""
    for i in range(records):
        log.append(bytes([i]) * (200 << 10))
    log.sync()


def test_a_pin_holds_compaction_until_moved_or_closed(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        _fill(log)
        # Pinned before the checkpoint: the log's background maintenance may compact as soon
        # as there is one.
        with log.pin("backup", 2) as pin:
            log.checkpoint(18, b"state")
            assert pin.name == "backup"
            log.compact()
            assert log.first_lsn <= 2
            assert log.read(2) == bytes([1]) * (200 << 10)
            pin.move(12)
            log.compact()
            assert 2 < log.first_lsn <= 12
            with pytest.raises(rwal.CompactedError):
                pin.move(1)
        assert pin.closed
        log.compact()
        assert log.first_lsn > 12
        with pytest.raises(rwal.CompactedError):
            log.pin("late", 1)


def test_a_capped_pin_is_released_by_the_compactor(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        _fill(log)
        pin = log.pin("replica", 1, cap_bytes=1 << 20)
        log.checkpoint(18, b"state")
        log.compact()
        assert log.first_lsn > 1
        with pytest.raises(rwal.PinnedError):
            pin.move(2)
        pin.close()
        pin.close()


def test_pin_arguments_and_a_pin_after_its_log_closed(path):
    log = rwal.open(path, segment_size=1 << 20)
    log.append(b"one")
    log.sync()
    for name in ("", "a\0b", "\ud800"):
        with pytest.raises(rwal.InvalidArgumentError):
            log.pin(name, 1)
    for name in (b"bytes", None, 7):
        with pytest.raises(TypeError, match="a pin's name must be a str"):
            log.pin(name, 1)
    for cap in (0, -1, 1 << 64):
        with pytest.raises(rwal.InvalidArgumentError):
            log.pin("capped", 1, cap_bytes=cap)
    pin = log.pin("kept", 1)
    log.close()
    with pytest.raises(rwal.ClosedError):
        pin.move(1)
    with pytest.raises(rwal.ClosedError):
        log.pin("late", 1)
    pin.close()
    with pytest.raises(rwal.ClosedError):
        pin.move(1)


def test_a_pin_keeps_its_log_open(path):
    import gc

    log = rwal.open(path)
    log.append(b"one")
    log.sync()
    pin = log.pin("backup", 1)
    del log
    gc.collect()
    pin.move(1)  # ClosedError if the log had been collected and closed under the pin
    pin.close()
    gc.collect()
    # The log is closed once the closed pin lets go of it: the directory opens again.
    with rwal.open(path) as log:
        assert log.read(1) == b"one"


def test_a_strided_read_only_view_is_appended_as_its_bytes(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        lsn = log.append(memoryview(b"abcdef")[::2])
        log.commit(lsn)
        assert log.read(lsn) == b"ace"


def test_a_second_close_waits_for_the_first(path):
    """A close() on one thread while another thread's close() frees the handle returns once
    the handle is freed (it returned at once, and the directory was still locked)."""
    from rwal._rwal_cffi import lib
    log = rwal.open(path, segment_size=1 << 20)
    freeing, freed = threading.Event(), threading.Event()

    def slow_close(handle):
        freeing.set()
        time.sleep(0.3)
        status = lib.rwal_close(handle)
        freed.set()
        return status

    first = threading.Thread(target=log._close_with, args=(slow_close,))
    first.start()
    assert freeing.wait(10)
    log.close()
    assert freed.is_set(), "the second close returned before the handle was freed"
    with rwal.open(path, segment_size=1 << 20):  # the directory is free
        pass
    first.join()


def test_a_close_on_the_freeing_thread_does_not_wait_for_itself(path):
    """A signal handler's close() that interrupts this thread's own close() while it frees the
    handle returns at once (waiting for the free would wait for itself)."""
    from rwal._rwal_cffi import lib
    log = rwal.open(path, segment_size=1 << 20)
    inner = []

    def free_interrupted_by_a_handler(handle):
        inner.append(log.close())  # as a handler run between the free's steps would
        return lib.rwal_close(handle)

    closing = threading.Thread(target=log._close_with, args=(free_interrupted_by_a_handler,),
                               daemon=True)
    closing.start()
    closing.join(10)
    assert not closing.is_alive(), "a close on the freeing thread waited for itself"
    assert len(inner) == 1  # the inner close returned
    with rwal.open(path, segment_size=1 << 20):  # freed
        pass


def test_integers_out_of_range_are_wrong_arguments_named(path):
    with pytest.raises(rwal.InvalidArgumentError, match="segment_size"):
        rwal.open(path, segment_size=-1)
    log = rwal.open(path, segment_size=1 << 20)
    try:
        log.append(b"one")
        log.sync()
        calls = [
            ("lsn", lambda n: log.read(n)),
            ("lsn", lambda n: log.commit(n)),
            ("from_lsn", lambda n: next(iter(log.records(n)))),
            ("lsn", lambda n: log.truncate_after(n)),
            ("lsn", lambda n: log.checkpoint(n)),
            ("length", lambda n: log.checkpoint_writer(1, n)),
            ("lsn", lambda n: log.pin("p", n)),
        ]
        for name, call in calls:
            for bad in (-1, 1 << 64):
                # cffi's OverflowError named neither the argument nor rwal.
                with pytest.raises(rwal.InvalidArgumentError, match=name):
                    call(bad)
            with pytest.raises(TypeError, match=name):
                call(1.5)
        with log.pin("kept", 1) as pin:
            with pytest.raises(rwal.InvalidArgumentError, match="lsn"):
                pin.move(-1)
        # Nothing was changed on the way: the record is there, durable.
        assert log.read(1) == b"one"
        assert log.durable_lsn == 1
    finally:
        log.close()


def test_a_log_or_pin_collected_open_warns_and_is_closed(path):
    log = rwal.open(path)
    log.append(b"one")
    log.sync()
    pin = log.pin("forgotten", 1)
    with pytest.warns(ResourceWarning, match="rwal pin collected without close"):
        del pin
        gc.collect()
    with pytest.warns(ResourceWarning, match="rwal log collected without close"):
        del log
        gc.collect()
    # Closed by the collection: the directory is free again.
    rwal.open(path).close()


def test_open_takes_every_option_and_names_a_wrong_one(path):
    with rwal.open(path, segment_size=1 << 20, recovery="absolute_consistency",
                   commit_delay_us=200, background_thread=False) as log:
        log.commit(log.append(b"x"))
        assert log.recovery_report().mode == "absolute_consistency"
    with pytest.raises(rwal.InvalidArgumentError, match="unknown recovery mode 'bogus'"):
        rwal.open(path, recovery="bogus")
    with pytest.raises(rwal.InvalidArgumentError, match="commit_delay_us"):
        rwal.open(path, commit_delay_us=-1)
    # Past the library's limit of one second: its own message, naming the option.
    with pytest.raises(rwal.InvalidArgumentError, match="(?i)commit.delay"):
        rwal.open(path, commit_delay_us=2_000_000)
    with pytest.raises(TypeError, match="background_thread"):
        rwal.open(path, background_thread=1)
    with rwal.open(path) as log:
        assert log.read(1) == b"x"


def _damage_payload(path, payload):
    """Flips the first byte of `payload` where it is stored in the log's segments."""
    for name in sorted(os.listdir(path)):
        if not name.endswith(".seg"):
            continue
        with open(os.path.join(path, name), "r+b") as segment:
            data = segment.read()
            at = data.find(payload)
            if at >= 0:
                segment.seek(at)
                segment.write(bytes([data[at] ^ 0xFF]))
                return
    raise AssertionError("payload %r not found" % payload)


def test_recovery_modes_and_the_report_of_what_recovery_did(path, tmp_path):
    # Four records of 300 KiB in 1 MiB segments: the first three fill the first segment, the
    # fourth starts the second.
    records = [(b"record %d:" % n) + bytes([n]) * (300 << 10) for n in (1, 2, 3, 4)]
    with rwal.open(path, segment_size=1 << 20) as log:
        report = log.recovery_report()
        assert report.mode == "tolerate_torn_tail"
        assert (report.records, report.last_lsn, report.bytes_cut) == (0, 0, 0)
        assert any("Created" in event for event in report.events), report.events
        log.commit(log.append_batch(records))
    with rwal.open(path) as log:
        report = log.recovery_report()
        assert (report.records, report.first_lsn, report.last_lsn) == (4, 1, 4)
        assert report.proven_durable_lsn == 4 and report.segments_scanned >= 2
        assert not any("Created" in event for event in report.events), report.events
    # A committed record damaged: below the durable watermark, so the default mode and
    # absolute consistency refuse the log, naming the LSN, and leave it as it is.
    _damage_payload(path, b"record 2:")
    for mode in (None, "tolerate_torn_tail", "absolute_consistency"):
        with pytest.raises(rwal.CorruptedError, match="LSN 2"):
            rwal.open(path, recovery=mode)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    # Every valid record of other segments: the rest of the damaged segment is skipped (one
    # checksum covers a record's header and payload, so the damaged record's length cannot
    # be trusted to find the next one), and the log resumes at the next segment.
    with rwal.open(path, recovery="skip_corrupted") as log:
        assert [lsn for lsn, _ in log.records()] == [1, 4]
        assert log.read(4) == records[3]
        report = log.recovery_report()
        assert (report.mode, report.records, report.last_lsn) == ("skip_corrupted", 2, 4)
        assert [e for e in report.events if "CorruptionSkipped" in e], report.events
    # The longest valid prefix: cut at the damage, and said so.
    with rwal.open(copy, recovery="point_in_time") as log:
        assert [lsn for lsn, _ in log.records()] == [1]
        report = log.recovery_report()
        assert (report.mode, report.records, report.last_lsn) == ("point_in_time", 1, 1)
        assert report.bytes_cut > 0
        assert [e for e in report.events if "CorruptionCut" in e], report.events
    with rwal.open(copy) as log:
        assert log.last_lsn == 1


def test_a_torn_tail_is_reported_as_cut(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        log.commit(log.append(b"12345678"))
    _tear_tail_after_one_record(path, record_bytes=32 + 8)
    with pytest.raises(rwal.CorruptedError):
        rwal.open(path, recovery="absolute_consistency")
    with rwal.open(path, segment_size=1 << 20) as log:
        report = log.recovery_report()
        assert report.last_lsn == 1 and report.bytes_cut > 0
        assert [e for e in report.events if "TornTailCut" in e], report.events
    with pytest.raises(rwal.ClosedError):
        log.recovery_report()


def test_a_tail_waits_for_records_as_they_become_durable(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        log.commit(log.append(b"before"))
        with log.tail() as tail:
            assert tail.next_lsn == 1
            assert tail.next(timeout=0) == (1, b"before")
            assert tail.next_lsn == 2
            # Nothing durable: a poll returns None at once, a wait at its timeout.
            assert tail.next(timeout=0) is None
            started = time.monotonic()
            assert tail.next(timeout=0.3) is None
            assert time.monotonic() - started >= 0.3
            # Appended but not durable: not returned.
            lsn = log.append(b"not yet durable")
            assert tail.next(timeout=0.05) is None
            got = []

            def follow():
                for record in tail:
                    got.append(record)
                    if len(got) == 3:
                        return

            t = threading.Thread(target=follow)
            t.start()
            # Committed while the tail waits, past the first slice of its wait.
            wait_until(tail._serial.locked)
            time.sleep(0.3)
            log.commit(lsn)
            log.commit(log.append_batch([b"a", b"b"]))
            t.join(30)
            assert not t.is_alive()
            assert got == [(2, b"not yet durable"), (3, b"a"), (4, b"b")]
        with pytest.raises(rwal.ClosedError, match="tail"):
            tail.next(timeout=0)
        # From a later LSN, and only what is to come.
        with log.tail(log.durable_lsn + 1, verify_checksums=False) as tail:
            assert tail.next(timeout=0) is None
            log.commit(log.append(b"new"))
            assert tail.next(timeout=30) == (5, b"new")
        with log.tail() as tail:
            for bad in (-1, float("nan"), "1", -10**400):
                with pytest.raises(rwal.InvalidArgumentError, match="timeout"):
                    tail.next(timeout=bad)
        # An integer beyond any float is a wait longer than any: it raised OverflowError.
        with log.tail(log.durable_lsn + 1) as tail:
            log.commit(log.append(b"later"))
            assert tail.next(timeout=10**400)[1] == b"later"
        with pytest.raises(rwal.NotFoundError):
            log.tail(log.last_lsn + 2)


def test_os_errors_carry_the_systems_errno(tmp_path):
    """The rwal errors that are OSErrors carry errno and strerror, so that the usual
    `except OSError as e: if e.errno == ...` works; the message stays the library's (they were
    None, found by review)."""
    import errno
    import pickle

    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    with pytest.raises(OSError) as raised:
        rwal.open(blocker / "log")
    assert isinstance(raised.value, rwal.IoError)
    assert raised.value.errno == errno.ENOTDIR, repr(raised.value)
    assert raised.value.strerror == os.strerror(errno.ENOTDIR)
    assert str(raised.value).startswith("open directory "), str(raised.value)
    again = pickle.loads(pickle.dumps(raised.value))
    assert (again.errno, str(again)) == (errno.ENOTDIR, str(raised.value))
    # The library's own refusal for want of space names no system error: ENOSPC.
    full = rwal.NoSpaceError(-5, "a segment needs 64 MiB and the disk has 1 MiB free")
    assert full.errno == errno.ENOSPC
    quota = rwal.NoSpaceError(-5, "write: Disk quota exceeded (os error %d)" % errno.EDQUOT)
    assert quota.errno == errno.EDQUOT
    assert rwal.ClosedError(-15, "closed").__str__() == "closed"


def test_closing_the_log_ends_a_waiting_tail(path):
    log = rwal.open(path, segment_size=1 << 20)
    tail = log.tail()
    outcome = {}
    waiting = threading.Event()

    def follow():
        waiting.set()
        try:
            tail.next()  # no timeout: only the close ends it
        except rwal.ClosedError as e:
            outcome["message"] = str(e)

    t = threading.Thread(target=follow)
    t.start()
    assert waiting.wait(30)
    wait_until(tail._serial.locked)  # the other thread is in next()
    time.sleep(0.3)  # into the wait, past its first slice (not a condition: slices are inside)
    log.close()
    t.join(30)
    assert not t.is_alive()
    assert "closed" in outcome.get("message", ""), outcome
    tail.close()
    # A tail that returned a record copied it and let the library's reader go of it: the
    # closed log's directory is free at once (until 2026-12-07 it stayed locked until the
    # tail was closed).
    log = rwal.open(path, segment_size=1 << 20)
    log.commit(log.append(b"held"))
    tail = log.tail()
    assert tail.next(timeout=30) == (1, b"held")
    log.close()
    with rwal.open(path) as again:
        assert again.read(1) == b"held"
    tail.close()


def test_closing_a_tail_from_another_thread_ends_its_wait(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        tail = log.tail()
        outcome = []
        waiting = threading.Event()

        def follow():
            waiting.set()
            try:
                for record in tail:
                    outcome.append(record)
            except rwal.ClosedError:
                outcome.append("closed")

        t = threading.Thread(target=follow)
        t.start()
        assert waiting.wait(30)
        # In its wait (it holds the tail while it waits), and past its first slice.
        wait_until(tail._serial.locked)
        time.sleep(0.3)
        tail.close()
        t.join(30)
        assert not t.is_alive()
        assert outcome == ["closed"]
        # The log goes on.
        log.commit(log.append(b"after"))


def test_ctrl_c_ends_a_tails_wait(path):
    import signal
    with rwal.open(path, segment_size=1 << 20) as log, log.tail() as tail:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        try:
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                # Started inside the block: however late the signal comes, it lands here.
                timer.start()
                tail.next(timeout=60)
            assert time.monotonic() - started < 5
        finally:
            timer.join()
            signal.signal(signal.SIGINT, previous)
        # The tail goes on after the interrupt.
        log.commit(log.append(b"x"))
        assert tail.next(timeout=30) == (1, b"x")


def test_a_record_handed_over_as_ctrl_c_lands_is_returned_by_the_next_call(path, monkeypatch):
    with rwal.open(path, segment_size=1 << 20) as log, log.tail() as tail:
        log.commit(log.append_batch([b"one", b"two"]))
        # Where Ctrl-C during the tail's wait is raised: as the library's call returns.
        monkeypatch.setattr(rwal, "lib", _interrupted_after("rwal_reader_next_timeout"))
        with pytest.raises(KeyboardInterrupt):
            tail.next(timeout=30)
        monkeypatch.undo()
        assert tail.next_lsn == 1
        assert tail.next(timeout=0) == (1, b"one")
        assert tail.next(timeout=0) == (2, b"two")
        assert tail.next(timeout=0) is None


def test_a_tails_timeout_holds_while_another_thread_reads(path):
    with rwal.open(path, segment_size=1 << 20) as log, log.tail() as tail:
        waiting = threading.Event()
        got = []

        def follow():
            waiting.set()
            got.append(tail.next(timeout=30))

        t = threading.Thread(target=follow)
        t.start()
        assert waiting.wait(30)
        # The other thread holds the tail in its wait (a fixed sleep here let the test pass
        # untested when that thread was late): this one's timeout still ends its own. On a
        # thread of its own, so that a timeout not kept fails the test instead of hanging it.
        wait_until(tail._serial.locked)
        mine = []
        timed = threading.Thread(target=lambda: mine.append(tail.next(timeout=0.2)),
                                 daemon=True)
        timed.start()
        timed.join(20)
        assert not timed.is_alive(), "the timeout did not end the call"
        assert mine == [None]
        log.commit(log.append(b"x"))
        t.join(30)
        assert got == [(1, b"x")]


def test_a_log_made_by_calling_the_class_is_refused_with_the_call_to_use(path, monkeypatch):
    # rwal.Log("dir") is a natural slip for rwal.open("dir"): it used to keep the string as
    # the handle, and the collection then printed a TypeError from deep in close() as
    # "Exception ignored".
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(TypeError, match=r"rwal\.open\(path\)"):
        rwal.Log(path)
    gc.collect()
    assert unraisable == []


def _wait_child(pid, seconds=30):
    """The exit code of child `pid`; killed and failed if it runs past `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not end")
        time.sleep(0.01)


def test_a_forked_child_leaves_the_log_to_the_process_that_opened_it(path):
    """A child forked while a log is open (os.fork, a multiprocessing pool) shares the
    directory lock's open file and inherits the handle. The parent's close left the lock held
    for as long as the child lived (its reopen failed with LockedError, naming itself), and the
    child's close of its copy joined a thread it does not have and wrote its stale state over
    the parent's control file; an append there wrote over the parent's records. Now the parent
    reopens at once, the child's calls are refused and its close changes nothing."""
    log = rwal.open(path, segment_size=1 << 20)
    log.commit(log.append(b"before"))
    go_read, go_write = os.pipe()
    # Another thread of the parent's holds the handle's lock at the fork: the child's call must
    # not wait for it (it is never released there).
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with log._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(30)
    pid = os.fork()
    if pid != 0:
        release.set()
        holder.join(30)
    if pid == 0:  # the child: refused its copy at once, then closes it once the parent says
        code = 3
        try:
            try:
                log.append(b"from the child")
                code = 4
            except rwal.ClosedError as e:
                code = 0 if "forked from it" in str(e) else 5
            os.close(go_write)
            os.read(go_read, 1)
            log.close()
            if code == 0 and not log.closed:
                code = 1
        except BaseException:  # noqa: BLE001 - any error is the child's exit code
            code = 2
        finally:
            os._exit(code)
    os.close(go_read)
    try:
        log.close()
        with rwal.open(path) as again:
            again.commit(again.append(b"after"))
        control = (path / "control").read_bytes()
        os.write(go_write, b"x")
        assert _wait_child(pid) == 0
    finally:
        os.close(go_write)
    assert (path / "control").read_bytes() == control
    with rwal.open(path) as log:
        assert [data for _, data in log.records()] == [b"before", b"after"]


def test_every_status_raises_the_exception_named_after_it():
    # Each code's class by name: RWAL_ERR_NO_SPACE is rwal.NoSpaceError, and so on. (The test
    # above checks only that each has some subclass of rwal.Error.)
    from rwal import _ERRORS, lib
    for name in dir(lib):
        if not name.startswith("RWAL_ERR_") or name == "RWAL_ERR_BUFFER_TOO_SMALL":
            continue
        words = name[len("RWAL_ERR_"):].split("_")
        expected = getattr(rwal, "".join(w.title() for w in words) + "Error")
        assert _ERRORS[getattr(lib, name)] is expected, name


def test_calls_the_library_refuses_raise_its_error_and_leave_the_log_usable(path):
    with rwal.open(path, segment_size=1 << 20) as log:
        first = log.append(b"one")
        # Larger than a segment holds: the library's refusal, with its reason, and no LSN.
        with pytest.raises(rwal.InvalidArgumentError, match="segment"):
            log.append(b"x" * (2 << 20))
        with pytest.raises(rwal.InvalidArgumentError, match="segment"):
            log.append_batch([b"two", b"x" * (2 << 20)])
        with pytest.raises(rwal.InvalidArgumentError):
            log.append_batch([])
        # Never appended: not durable, and not said to be.
        with pytest.raises(rwal.NotFoundError):
            log.commit(first + 10)
        second = log.append(b"two")
        assert second == first + 1, "the refused calls took no LSN"
        log.commit(second)
        assert [r[1] for r in log.records(first)] == [b"one", b"two"]


def test_records_are_copies_that_outlive_the_reader_and_the_log(path):
    log = rwal.open(path, segment_size=1 << 20)
    for i in range(3):
        log.append(bytes([i]) * 100)
    log.sync()
    kept = list(log.records(1))
    tail = log.tail(1)
    tailed = tail.next(timeout=5)
    tail.close()
    log.checkpoint(3, b"state")
    log.compact()
    log.close()
    assert all(type(data) is bytes for _, data in kept)
    assert [data for _, data in kept] == [bytes([i]) * 100 for i in range(3)]
    assert type(tailed[1]) is bytes and tailed[1] == bytes([0]) * 100


def test_a_forked_childs_tail_is_refused_not_left_waiting(path):
    # A tail's lock held by a thread of the parent at the fork (a `for r in tail:` waiting) is
    # never released in the child: a next() there waited on it for ever, or with a timeout
    # returned None as if no record had come. It raises ClosedError before taking it.
    log = rwal.open(path, segment_size=1 << 20)
    log.commit(log.append(b"one"))
    tail = log.tail(2)
    waiting = threading.Thread(target=lambda: tail.next(timeout=30))
    waiting.start()
    deadline = time.monotonic() + 30
    while not tail._serial.locked():
        assert time.monotonic() < deadline, "the thread never waited"
        time.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            try:
                tail.next(timeout=1)
                code = 4  # returned (None) instead of raising
            except rwal.ClosedError as e:
                code = 0 if "forked from it" in str(e) else 5
        except BaseException:  # noqa: BLE001 - any error is the child's exit code
            code = 2
        finally:
            os._exit(code)
    try:
        assert _wait_child(pid) == 0
    finally:
        log.commit(log.append(b"two"))  # ends the parent's wait
        waiting.join(30)
        tail.close()
        log.close()
