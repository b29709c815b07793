"""Builds the extension: compiles librwal.a with cargo, then the cffi module over include/rwal.h.

`pip install ./bindings/python` runs this on a machine with the Rust toolchain. The source tree
is found by walking up from this file to the workspace's Cargo.toml (or RWAL_SOURCE_DIR).
"""

from setuptools import setup

setup(cffi_modules=["rwal_build.py:ffibuilder"])
