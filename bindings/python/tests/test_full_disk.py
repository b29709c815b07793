"""A full disk, for real, through the Python package: the log on a small tmpfs, filled to its
last block. The library's own test (tests/tests/full_disk.rs) checks the same in Rust; this
one checks what a Python caller gets: NoSpaceError (an OSError with errno ENOSPC) where the log
refuses cleanly, nothing lost, and the log usable once room is made.

The tmpfs is mounted in a mount namespace of a child process's own (`unshare --mount` as root,
else inside a user namespace too), so nothing outside sees it and it goes away with the child."""

import os
import subprocess
import sys

import rwal

# Run in the child, with the mounted file system's path as its argument.
SCENARIO = r'''
import errno
import os
import sys

import rwal

mounted = sys.argv[1]
SEGMENT = 1 << 20
# Room another writer holds.
with open(os.path.join(mounted, "ballast"), "wb") as ballast:
    ballast.write(b"\1" * (3 << 20))
path = os.path.join(mounted, "log")


def payload(n):
    return n.to_bytes(8, "little") * 125


def check_records(log, first, last):
    got = list(log.records(first))
    assert [lsn for lsn, _ in got] == list(range(first, last + 1)), (first, last, len(got))
    for lsn, data in got:
        assert data == payload(lsn - 1), lsn


log = rwal.open(path, segment_size=SEGMENT)
acknowledged = 0
while True:
    assert acknowledged < 8 << 20, "no full disk"
    try:
        lsn = log.append(payload(acknowledged))
    except rwal.NoSpaceError as e:
        refused = e
        break
    log.commit(lsn)
    acknowledged += 1
    assert lsn == acknowledged, (lsn, acknowledged)

# An OSError a caller can tell by its errno, naming the file it could not make.
assert isinstance(refused, OSError)
assert refused.errno == errno.ENOSPC, refused.errno
assert path in str(refused), str(refused)
assert acknowledged > 1000, acknowledged
# Not poisoned: the same append is refused the same way, and takes no LSN.
try:
    log.append(payload(acknowledged))
    raise AssertionError("an append on the full disk succeeded")
except rwal.NoSpaceError:
    pass
assert log.last_lsn == acknowledged
check_records(log, 1, acknowledged)
log.close()

# It opens and reads on the full disk.
log = rwal.open(path, segment_size=SEGMENT)
assert log.last_lsn == acknowledged
check_records(log, 1, acknowledged)

# With every block taken, a checkpoint is refused and changes nothing.
filler = os.path.join(mounted, "filler")
fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(fd, b"\7" * 4096)
except OSError as e:
    assert e.errno == errno.ENOSPC, e
finally:
    os.close(fd)
half = acknowledged // 2
try:
    log.checkpoint(half, b"the engine's state")
    raise AssertionError("a checkpoint on a disk with no block free succeeded")
except rwal.NoSpaceError:
    pass
assert log.latest_checkpoint() is None
check_records(log, 1, acknowledged)

# A few blocks free: the checkpoint is made, its compaction makes room, appends go on.
os.remove(filler)
log.checkpoint(half, b"the engine's state")
log.compact()
lsn = log.append(payload(acknowledged))
log.commit(lsn)
assert lsn == acknowledged + 1, lsn
log.close()
log = rwal.open(path, segment_size=SEGMENT)
assert log.latest_checkpoint() == (half, b"the engine's state")
check_records(log, half + 1, acknowledged + 1)
log.close()
print("full disk scenario passed after", acknowledged, "records")
'''


def test_a_full_disk_is_a_no_space_error_and_loses_nothing(tmp_path):
    mount_and_run = 'mount -t tmpfs -o size=8m rwal-full-disk "$1" && exec "$2" -c "$3" "$1"'
    # The child imports the package this test imported.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(rwal.__file__)))
    # As root a mount namespace is enough; otherwise a user namespace too.
    namespaces = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    command = ["unshare", *namespaces, "--", "sh", "-c",
               mount_and_run, "sh", str(tmp_path), sys.executable, SCENARIO]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    except FileNotFoundError as e:
        raise AssertionError("this test needs `unshare` (util-linux) to mount a small file "
                             "system of its own") from e
    said = run.stdout + run.stderr
    assert run.returncode == 0, (
        "the run on an 8 MiB tmpfs failed; this test needs `unshare " + " ".join(namespaces)
        + "` to work (root, or unprivileged user namespaces, which some containers and "
        "distributions forbid): " + said)
    assert "full disk scenario passed" in run.stdout, said
