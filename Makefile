# `make test` runs everything CI runs. Each step is its own target so one can be rerun alone.
CARGO ?= cargo
CC ?= gcc
CXX ?= g++
CFLAGS_STRICT = -std=c11 -Wall -Wextra -Wpedantic -Werror -Iinclude
# What a static librwal.a needs besides libc (`cargo rustc -p rwal-ffi --crate-type staticlib
# -- --print native-static-libs`).
RWAL_NATIVE_LIBS = -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
VALGRIND = valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
LIBDIR = target/debug
CTEST_DIR = target/c

.PHONY: test fmt-check clippy cargo-test loom c-test kv-test python-test

test: fmt-check clippy cargo-test loom c-test kv-test python-test

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

cargo-test:
	$(CARGO) test --workspace

# loom models of the reservation and group-commit protocols, in their own target directory
# (the cfg changes every crate's build); with debug assertions, so that the models also check
# the code's own invariants (release builds leave them out).
loom:
	RUSTFLAGS="--cfg loom -C debug-assertions" CARGO_TARGET_DIR=target/loom $(CARGO) test -p rwal-wal --release --lib loom

# The C tests, linked dynamically and statically, under valgrind; the header also as C++.
c-test:
	$(CARGO) build -p rwal-ffi
	mkdir -p $(CTEST_DIR)
	$(CC) $(CFLAGS_STRICT) tests/c/test_basic.c -L$(LIBDIR) -lrwal -Wl,-rpath,$(CURDIR)/$(LIBDIR) -o $(CTEST_DIR)/test_dynamic
	$(CC) $(CFLAGS_STRICT) tests/c/test_basic.c $(LIBDIR)/librwal.a $(RWAL_NATIVE_LIBS) -o $(CTEST_DIR)/test_static
	$(CC) $(CFLAGS_STRICT) tests/c/test_node.c -L$(LIBDIR) -lrwal -Wl,-rpath,$(CURDIR)/$(LIBDIR) -lpthread -o $(CTEST_DIR)/test_node_dynamic
	$(CC) $(CFLAGS_STRICT) tests/c/test_node.c $(LIBDIR)/librwal.a $(RWAL_NATIVE_LIBS) -o $(CTEST_DIR)/test_node_static
	$(CXX) -std=c++17 -Wall -Wextra -Werror -fsyntax-only -x c++ include/rwal.h
	rm -rf $(CTEST_DIR)/scratch-dynamic $(CTEST_DIR)/scratch-static $(CTEST_DIR)/scratch-node-dynamic $(CTEST_DIR)/scratch-node-static
	mkdir -p $(CTEST_DIR)/scratch-dynamic $(CTEST_DIR)/scratch-static $(CTEST_DIR)/scratch-node-dynamic $(CTEST_DIR)/scratch-node-static
	$(VALGRIND) $(CTEST_DIR)/test_dynamic $(CTEST_DIR)/scratch-dynamic
	$(VALGRIND) $(CTEST_DIR)/test_static $(CTEST_DIR)/scratch-static
	$(VALGRIND) $(CTEST_DIR)/test_node_dynamic $(CTEST_DIR)/scratch-node-dynamic
	$(VALGRIND) $(CTEST_DIR)/test_node_static $(CTEST_DIR)/scratch-node-static

# The embedded key-value store example and its SIGKILL test (RWAL_KV_ROUNDS for more rounds).
kv-test:
	$(CARGO) build -p rwal-ffi
	mkdir -p $(CTEST_DIR)
	$(CC) $(CFLAGS_STRICT) examples/kv/kv.c -L$(LIBDIR) -lrwal -Wl,-rpath,$(CURDIR)/$(LIBDIR) -o $(CTEST_DIR)/kv
	python3 examples/kv/crash_test.py $(CTEST_DIR)/kv

# The Python package, built the way users install it, and its pytest suite (run from the
# repository root so that `import rwal` finds the installed package, not the source folder).
python-test:
	# setuptools keeps the extension it linked in build/ and does not link it again when only
	# librwal.a changed: a stale build/ would test an old library.
	rm -rf bindings/python/build
	python3 -m pip install -q ./bindings/python
	python3 -m pytest -q bindings/python/tests
