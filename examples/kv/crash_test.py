"""SIGKILL test of the kv example: a kv process takes puts (each committed before it answers
"ok") and periodic checkpoints; it is killed with SIGKILL at a random moment; a fresh kv rebuilds
its state from the latest snapshot plus the log and dumps it. Every acknowledged put must be
there (or a later put of the same key that was sent, acknowledged or not), and every key
recovered must hold a value that was sent for it.

Run on two backends: the library's default (`mmap`; `staged` on a copy-on-write file system)
and `staged`. A SIGKILL leaves the page cache as it was, so with `mmap` a record appended and
never committed survives the kill: a kv that never committed passed there. With `staged` such a
record stays in the process's memory until the log writes it back (every 100 ms), and dies with
it: `make kv-test` runs a kv built to acknowledge puts it never commits (`--expect-loss`) and
requires this test to catch it. What a SIGKILL cannot show is an acknowledgement that comes
microseconds before its commit: the kill lands long after the commit's write reached the
kernel, which keeps it.

usage: python3 crash_test.py KV_BINARY [ROUNDS]   (RWAL_KV_ROUNDS overrides the default 20,
                                                   per backend)
       python3 crash_test.py --expect-loss BROKEN_KV   (passes only if it finds an acknowledged
                                                        put lost, on `staged`)
"""

import ctypes
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# The log's first segment file: gone once a checkpoint's compaction removed (or recycled) it.
FIRST_SEGMENT = "00000000000000000001.seg"


def kv_command(kv, directory, backend):
    """kv's command line: with the backend named, or without (the library's default)."""
    return [kv, directory] + ([backend] if backend else [])


def dump(kv, directory, backend=None):
    out = subprocess.run(kv_command(kv, directory, backend), input="dump\n", capture_output=True,
                         text=True, timeout=60, check=True)
    state = {}
    for line in out.stdout.splitlines():
        if line == "end":
            return state
        key, _, value = line.partition("=")
        state[key] = value
    raise AssertionError("dump did not end: %r" % out.stdout[-200:])


def bad_inputs(kv):
    """Inputs kv refuses without logging anything, and a checkpoint of an empty log: each gets
    an answer, the process goes on, and a restart finds exactly the puts that were answered
    "ok". (A key with '=' was logged and answered "ok", then replayed as another key; a record
    longer than its buffer was logged with the stack bytes after it; a line longer than 1023
    bytes ran its tail as a command; a checkpoint before any put ended the process.)"""
    directory = tempfile.mkdtemp(prefix="rwal-kv-bad-")
    try:
        commands = [
            "checkpoint",
            "put a=b c",
            "put %s v" % ("k" * 64),
            "put k %s" % ("v" * 256),
            "put x " + "y" * 2000 + " put injected 1",
            "put",
            "put nul\0byte 1",
            "put good 1=2 3",
            "checkpoint",
            "put after 4",
            "dump",
        ]
        out = subprocess.run([kv, directory], input="\n".join(commands) + "\n", capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, "kv ended with %d: %s" % (out.returncode, out.stderr)
        lines = out.stdout.splitlines()
        assert lines[0] == "checkpointed 0", lines
        assert all(line.startswith("error:") for line in lines[1:7]), lines
        # A NUL byte was taken for a line too long, and the next line was eaten with it.
        assert lines[6] == "error: the line holds a NUL byte", lines
        assert lines[7:11] == ["ok good 1=2 3", "checkpointed 1", "ok after 4", "good=1=2 3"], lines
        assert dump(kv, directory) == {"good": "1=2 3", "after": "4"}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def librwal(kv):
    """The librwal that `kv` is linked with, through ctypes (for records kv would not write)."""
    out = subprocess.run(["ldd", kv], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if name.startswith("librwal.so"):
            lib = ctypes.CDLL(rest.split(" (")[0])
            lib.rwal_open.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
            lib.rwal_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_uint64)]
            lib.rwal_commit.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
            lib.rwal_close.argtypes = [ctypes.c_void_p]
            lib.rwal_checkpoint.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p,
                                            ctypes.c_size_t]
            return lib
    raise AssertionError("%s is not linked with librwal.so: %s" % (kv, out))


def foreign_records(kv):
    """A record kv cannot read (another writer's: no '=', a key too long, a NUL byte) stops kv at
    its start, naming the LSN, and stays in the log. kv used to skip it, and its next checkpoint
    wrote a state without it and compacted it away."""
    lib = librwal(kv)
    for record in [b"nokey", b"k" * 64 + b"=v", b"a=b\0c"]:
        directory = tempfile.mkdtemp(prefix="rwal-kv-foreign-")
        try:
            subprocess.run([kv, directory], input="put a 1\n", capture_output=True, text=True,
                           timeout=60, check=True)
            log, lsn = ctypes.c_void_p(), ctypes.c_uint64()
            assert lib.rwal_open(directory.encode(), None, ctypes.byref(log)) == 0
            assert lib.rwal_append(log, record, len(record), ctypes.byref(lsn)) == 0
            assert lsn.value == 2
            assert lib.rwal_commit(log, lsn) == 0
            assert lib.rwal_close(log) == 0
            for _ in range(2):
                out = subprocess.run([kv, directory], input="dump\ncheckpoint\n",
                                     capture_output=True, text=True, timeout=60)
                assert out.returncode == 1, (record, out.returncode, out.stdout)
                assert "the record at LSN 2 is not KEY=VALUE" in out.stderr, (record, out.stderr)
                assert out.stdout == "", (record, out.stdout)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    # The same of a snapshot's line (another writer's checkpoint), and of a snapshot whose last
    # line lacks its newline (kv ends every line with one).
    for snapshot, line in [(b"a=1\nnoeq\n", 2), (b"a=1\nb=2", 2)]:
        directory = tempfile.mkdtemp(prefix="rwal-kv-foreign-")
        try:
            subprocess.run([kv, directory], input="put a 1\n", capture_output=True, text=True,
                           timeout=60, check=True)
            log = ctypes.c_void_p()
            assert lib.rwal_open(directory.encode(), None, ctypes.byref(log)) == 0
            assert lib.rwal_checkpoint(log, 1, snapshot, len(snapshot)) == 0
            assert lib.rwal_close(log) == 0
            out = subprocess.run([kv, directory], input="dump\n", capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 1, (snapshot, out.returncode, out.stdout)
            assert "the snapshot's line %d is not KEY=VALUE" % line in out.stderr, (snapshot,
                                                                                   out.stderr)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def main():
    if sys.argv[1] == "--expect-loss":
        expect_loss(sys.argv[2])
        return
    kv = sys.argv[1]
    bad_inputs(kv)
    foreign_records(kv)
    rounds = int(os.environ.get("RWAL_KV_ROUNDS", sys.argv[2] if len(sys.argv) > 2 else 20))
    for backend in (None, "staged"):
        crash_rounds(kv, backend, rounds)


def expect_loss(broken_kv):
    """Passes if the crash rounds find an acknowledged put lost with `broken_kv` (a kv that
    acknowledges puts without committing them) on `staged`: the proof that the checker can
    fail."""
    try:
        crash_rounds(broken_kv, "staged", 5)
    except AssertionError as caught:
        if "acknowledged as" not in str(caught):
            raise
        print("kv crash test, a kv that does not commit: caught (%s)" % caught)
        return
    raise AssertionError("a kv that acknowledges puts it never commits passed the crash rounds")


def crash_rounds(kv, backend, rounds):
    rng = random.Random(7)
    directory = tempfile.mkdtemp(prefix="rwal-kv-")
    acked = {}      # key -> last acknowledged value
    sent_after = {}  # key -> values sent after the last acknowledgement
    acks = 0
    checkpoints = 0
    # Bytes of records acknowledged (each "KEY=VALUE" with its 32-byte header), the same when
    # the last checkpoint was answered, and whether a checkpoint's compaction was seen to have
    # removed the log's first segment.
    logged = 0
    logged_at_checkpoint = 0
    compacted = False
    try:
        for round_ in range(rounds):
            proc = subprocess.Popen(kv_command(kv, directory, backend), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            try:
                lock = threading.Lock()

                # A generator of its own for the writer thread, so that a run replays.
                feed_rng = random.Random(round_)
                # Odd rounds take no checkpoint: a checkpoint syncs the log, and with one every 40
                # puts a kv that never commits had its puts synced by the checkpoint under way
                # when the kill came (its sync is its slowest step), and passed.
                checkpoint_every = 40 if round_ % 2 == 0 else 0

                def feed():
                    try:
                        for i in range(100000):
                            key = "k%d" % feed_rng.randrange(300)
                            # Long enough that the snapshot of 300 keys spans several of the
                            # 4 KiB pieces kv reads it in (a line split across two), and that
                            # the puts of a few rounds fill the log's 1 MiB segments, which the
                            # checkpoints then compact away.
                            value = "v%d_%d_" % (round_, i) + "." * 200
                            with lock:
                                sent_after.setdefault(key, []).append(value)
                            proc.stdin.write("put %s %s\n" % (key, value))
                            if checkpoint_every and i % checkpoint_every == checkpoint_every - 1:
                                proc.stdin.write("checkpoint\n")
                            proc.stdin.flush()
                    except (BrokenPipeError, ValueError, OSError):
                        pass

                writer = threading.Thread(target=feed, daemon=True)
                writer.start()
                # Lines through a queue: a kv that stopped writing must not hang the test in
                # readline() past the deadline.
                lines = queue.Queue()

                def read_lines():
                    for line in proc.stdout:
                        lines.put(line)
                    lines.put(None)

                threading.Thread(target=read_lines, daemon=True).start()
                def answered(line):
                    nonlocal acks, checkpoints, logged, logged_at_checkpoint
                    parts = line.split()
                    if parts[:1] == ["ok"]:
                        key, value = parts[1], parts[2]
                        logged += len(key) + 1 + len(value) + 32
                        with lock:
                            later = sent_after.get(key, [])
                            # Every value is sent once: one acknowledged that was not sent (or was
                            # acknowledged before) is kv's mistake, which the checks below would
                            # otherwise take as the value to find.
                            assert value in later, (
                                "round %d: kv acknowledged %s as %r, which was not sent for it "
                                "since its last acknowledgement" % (round_, key, value))
                            sent_after[key] = later[later.index(value) + 1:]
                            acked[key] = value
                        acks += 1
                    elif parts[:1] == ["checkpointed"]:
                        checkpoints += 1
                        logged_at_checkpoint = logged
                    else:
                        raise AssertionError("round %d: kv answered %r" % (round_, line))

                # Counted from the round's first answer, not from the start: a kill during kv's
                # recovery would make a round that tests no put.
                acks_before = acks
                kill_after = rng.uniform(0.05, 0.4)
                deadline = None
                while True:
                    left = 30.0 if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        line = lines.get(timeout=left)
                    except queue.Empty:
                        assert deadline is not None, "round %d: kv answered nothing in 30 s" % round_
                        break
                    assert line is not None, "round %d: kv exited by itself (%s)" % (round_, proc.poll())
                    answered(line)
                    if deadline is None and acks > acks_before:
                        deadline = time.monotonic() + kill_after
                proc.kill()
                assert proc.wait() == -signal.SIGKILL, "round %d: kv ended otherwise: %s" % (round_, proc.returncode)
                writer.join(5)
                # Answers kv wrote before the kill and not read yet were acknowledgements too.
                while True:
                    line = lines.get(timeout=10)
                    if line is None:
                        break
                    answered(line)
            finally:
                # A failed check mid-round must not leave kv writing into the directory
                # the finally below removes.
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    try:
                        pipe.close()
                    except OSError:
                        pass
            state = dump(kv, directory, backend)
            # After the dump's open: a kill between a compaction's control-file write and its
            # removal of the file leaves the file to that recovery.
            compacted = compacted or FIRST_SEGMENT not in os.listdir(directory)
            for key, value in acked.items():
                got = state.get(key)
                assert got == value or got in sent_after.get(key, []), (
                    "%s, round %d: key %s acknowledged as %s, recovered as %s"
                    % (backend or "default backend", round_, key, value, got))
            # Keys never acknowledged too: a value sent for the key, nothing else (a replay
            # that split a line, say, became the expected state for every later round).
            for key, value in state.items():
                assert value == acked.get(key) or value in sent_after.get(key, []), (
                    "%s, round %d: key %r recovered as %r, which was never sent for it"
                    % (backend or "default backend", round_, key, value))
            # The state recovered is what holds from now on; a value sent and not recovered is
            # gone for good, and must not be accepted if it showed up later.
            acked.clear()
            acked.update(state)
            sent_after.clear()
        assert acks > rounds, "puts were acknowledged before the kills"
        assert checkpoints > 0, "checkpoints happened"
        # A checkpoint answered past three segments' worth of records compacted the first
        # segment away: later restarts rebuilt the state from a snapshot with the log's start
        # gone.
        if logged_at_checkpoint > 3 << 20:
            assert compacted, ("%d bytes logged by a checkpoint and the first segment never "
                               "compacted" % logged_at_checkpoint)
        print("kv crash test, %s: %d rounds, %d acknowledged puts, %d checkpoints, %s"
              % (backend or "default backend", rounds, acks, checkpoints,
                 "the first segment compacted" if compacted else "no segment compacted"))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
