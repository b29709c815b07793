"""The cffi build script (API mode): the cdef comes from the committed header, so the Python
package and the C ABI cannot drift apart, and the extension links librwal.a statically."""

import json
import os
import pathlib
import re
import subprocess

from cffi import FFI

# What a static librwal.a needs besides libc (`cargo rustc -p rwal-ffi --crate-type staticlib
# -- --print native-static-libs`).
NATIVE_LIBS = ["gcc_s", "util", "rt", "pthread", "m", "dl", "c"]


def source_dir() -> pathlib.Path:
    explicit = os.environ.get("RWAL_SOURCE_DIR")
    if explicit:
        return pathlib.Path(explicit).resolve()
    here = pathlib.Path(__file__).resolve().parent
    for candidate in [here, *here.parents]:
        cargo = candidate / "Cargo.toml"
        if cargo.exists() and "[workspace]" in cargo.read_text():
            return candidate
    raise RuntimeError("rwal source tree not found above %s; set RWAL_SOURCE_DIR" % here)


def build_library(root: pathlib.Path) -> pathlib.Path:
    subprocess.run(["cargo", "build", "--release", "-p", "rwal-ffi"], cwd=root, check=True)
    # Where cargo put it, as cargo says: CARGO_TARGET_DIR (relative to the workspace), or
    # build.target-dir in a cargo config, would otherwise be guessed wrong, and an old
    # librwal.a left in target/ linked instead.
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=root, check=True, capture_output=True, text=True).stdout
    target = pathlib.Path(json.loads(metadata)["target_directory"])
    return target / "release" / "librwal.a"


def cdef_from_header(header: str) -> str:
    """The header without what cffi's parser does not take: include guards, includes and the
    C++ `extern "C"` block; integer #defines stay (cffi reads them as constants)."""
    lines = []
    skipping = 0
    for line in header.splitlines():
        stripped = line.strip()
        if stripped.startswith("#ifdef __cplusplus"):
            skipping += 1
            continue
        if skipping and stripped.startswith("#endif"):
            skipping -= 1
            continue
        if skipping:
            continue
        constant = re.match(r"#define (RWAL_\w+) (-?\d+|\(-\d+\))$", stripped)
        if constant:
            # cffi takes a plain (possibly negative) integer, not the header's `(-2)`.
            lines.append("#define %s %s" % (constant.group(1), constant.group(2).strip("()")))
            continue
        if stripped.startswith("#"):
            continue
        lines.append(line)
    return "\n".join(lines)


root = source_dir()
library = build_library(root)
header = (root / "include" / "rwal.h").read_text()

# The replicated node's engine callbacks, implemented in Python (rwal/node.py) and called by
# the node's thread with the GIL taken by cffi; and the log callback (rwal.log_to).
PYTHON_CALLBACKS = """
extern "Python" int _rwal_py_apply(void *, uint64_t, uint64_t, const uint8_t *, size_t);
extern "Python" int _rwal_py_snapshot(void *, rwal_snapshot_sink *);
extern "Python" void _rwal_py_release(void *);
extern "Python" int _rwal_py_restore(void *, uint64_t, uint64_t, const uint8_t *, size_t);
extern "Python" void _rwal_py_leader(void *, uint64_t, uint64_t);
extern "Python" void _rwal_py_log(rwal_log_level, const char *, void *);
"""

# Destructors of the pointer slots readers are opened into (rwal/__init__.py, _owning_slot): C,
# so that no Python code runs between a slot's release and the free (a signal handled there
# would leak the reader, and the pin it holds).
SLOT_FREES = """
static void _rwal_py_free_reader_slot(rwal_reader **slot) {
    if (*slot != NULL) {
        rwal_reader_free(*slot);
        *slot = NULL;
    }
}
static void _rwal_py_free_node_reader_slot(rwal_node_reader **slot) {
    if (*slot != NULL) {
        rwal_node_reader_free(*slot);
        *slot = NULL;
    }
}
"""
SLOT_FREES_CDEF = """
void _rwal_py_free_reader_slot(rwal_reader **slot);
void _rwal_py_free_node_reader_slot(rwal_node_reader **slot);
"""

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header(header) + PYTHON_CALLBACKS + SLOT_FREES_CDEF)
ffibuilder.set_source(
    "rwal._rwal_cffi",
    '#include "rwal.h"\n' + SLOT_FREES,
    include_dirs=[str(root / "include")],
    extra_objects=[str(library)],
    # Linked again when the library changed: setuptools looks at the sources and `depends`
    # only, and a build/ left from an earlier install would keep the old library.
    depends=[str(library)],
    libraries=NATIVE_LIBS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
