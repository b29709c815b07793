# `make test` runs everything CI runs. Each step is its own target so one can be rerun alone.
CARGO ?= cargo
CC ?= gcc
CXX ?= g++
CFLAGS_WARN = -std=c11 -Wall -Wextra -Wpedantic -Werror
CFLAGS_STRICT = $(CFLAGS_WARN) -Iinclude
# What a static librwal.a needs besides libc (`cargo rustc -p rwal-ffi --crate-type staticlib
# -- --print native-static-libs`).
RWAL_NATIVE_LIBS = -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
VALGRIND = valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
# Where cargo builds: ./target unless CARGO_TARGET_DIR or a cargo config (`build.target-dir`)
# says otherwise. Asked of cargo, as the Python package's build does: a fixed target/ linked and
# installed an old library left there while cargo built elsewhere. `install` and `uninstall`
# run as root, which never runs cargo (and whose environment and cargo config are not the
# builder's): they take the directory the last `make lib` noted in target/.cargo-target-dir.
ifneq ($(filter install uninstall,$(MAKECMDGOALS)),)
TARGET_DIR := $(shell cat $(CURDIR)/target/.cargo-target-dir 2> /dev/null)
else
TARGET_DIR := $(shell $(CARGO) metadata --format-version 1 --no-deps 2> /dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2> /dev/null)
endif
ifeq ($(TARGET_DIR),)
TARGET_DIR := $(CURDIR)/target
endif
LIBDIR = $(TARGET_DIR)/debug
CTEST_DIR = target/c

.PHONY: test fmt-check clippy cargo-test loom c-test kv-test install-test python-test lib install uninstall

test: fmt-check clippy cargo-test loom c-test kv-test install-test python-test

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
	$(CC) $(CFLAGS_STRICT) tests/c/test_basic.c -L$(LIBDIR) -lrwal -Wl,-rpath,$(LIBDIR) -o $(CTEST_DIR)/test_dynamic
	$(CC) $(CFLAGS_STRICT) tests/c/test_basic.c $(LIBDIR)/librwal.a $(RWAL_NATIVE_LIBS) -o $(CTEST_DIR)/test_static
	$(CC) $(CFLAGS_STRICT) tests/c/test_node.c -L$(LIBDIR) -lrwal -Wl,-rpath,$(LIBDIR) -lpthread -o $(CTEST_DIR)/test_node_dynamic
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
	$(CC) $(CFLAGS_STRICT) examples/kv/kv.c -L$(LIBDIR) -lrwal -Wl,-rpath,$(LIBDIR) -o $(CTEST_DIR)/kv
	python3 examples/kv/crash_test.py $(CTEST_DIR)/kv
	# The checker can fail: a kv that acknowledges puts it never commits must be caught.
	$(CC) $(CFLAGS_STRICT) -DKV_TEST_NO_COMMIT examples/kv/kv.c -L$(LIBDIR) -lrwal -Wl,-rpath,$(LIBDIR) -o $(CTEST_DIR)/kv-no-commit
	python3 examples/kv/crash_test.py --expect-loss $(CTEST_DIR)/kv-no-commit
	# kv itself under valgrind: puts, a checkpoint, a put after it; then a restart that
	# restores the snapshot and replays the log after it.
	rm -rf $(CTEST_DIR)/kv-valgrind
	printf 'put a 1\nput b 2\ncheckpoint\nput a 3\n' | $(VALGRIND) $(CTEST_DIR)/kv $(CTEST_DIR)/kv-valgrind > /dev/null
	printf 'dump\n' | $(VALGRIND) $(CTEST_DIR)/kv $(CTEST_DIR)/kv-valgrind > $(CTEST_DIR)/kv-valgrind.out
	test "$$(cat $(CTEST_DIR)/kv-valgrind.out)" = "$$(printf 'a=3\nb=2\nend')"

# The Python package, built the way users install it, and its pytest suite (run from the
# repository root so that `import rwal` finds the installed package, not the source folder).
python-test:
	# setuptools keeps the extension it linked in build/ and does not link it again when only
	# librwal.a changed: a stale build/ would test an old library.
	rm -rf bindings/python/build
	python3 -m pip install -q ./bindings/python
	python3 -m pytest -q bindings/python/tests
	# The package ships py.typed: its annotations are checked as its users' mypy reads them,
	# for the oldest Python it supports (3.9).
	python3 -m mypy --python-version 3.9 bindings/python/rwal

# Installation: the header, librwal.a, librwal.so under its SONAME, and a pkg-config file
# (`pkg-config --cflags --libs rwal`; `--static` adds the native libraries librwal.a needs).
# Two steps, so that cargo runs as you and only the copy runs as root:
#
#   make lib                                                 # builds what install copies
#   make install [PREFIX=/usr/local] [DESTDIR=staging-dir]   # copies only; then ldconfig
#   make uninstall [PREFIX=/usr/local] [DESTDIR=staging-dir]
#
# The SONAME follows the version in Cargo.toml: librwal.so.MAJOR, or librwal.so.0.MINOR while
# the major version is 0 (a 0.x minor version may break the ABI, as cargo's rules say). cargo
# sets no SONAME, so `make lib` links the library again with one (`cargo rustc`) and keeps
# that link as target/release/librwal.so.VERSION; librwal.so in target/ keeps none, so that
# in-tree builds link as docs/c-api.md shows. `make install` builds nothing: it refuses if
# `make lib` has not run since the last build of librwal.a (it would install a stale library),
# and runs `ldconfig` when it installs as root without DESTDIR.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_LIBDIR = $(DESTDIR)$(PREFIX)/lib
INSTALL_INCLUDEDIR = $(DESTDIR)$(PREFIX)/include
# Which build is installed: the release build by default; `install-test` installs the debug
# build the C tests already made (INSTALL_CARGO_FLAGS= INSTALL_FROM=$(LIBDIR)).
INSTALL_CARGO_FLAGS ?= --release
INSTALL_FROM ?= $(TARGET_DIR)/release
RWAL_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
RWAL_MAJOR := $(word 1,$(subst ., ,$(RWAL_VERSION)))
RWAL_MINOR := $(word 2,$(subst ., ,$(RWAL_VERSION)))
RWAL_SONAME := librwal.so.$(if $(filter 0,$(RWAL_MAJOR)),0.$(RWAL_MINOR),$(RWAL_MAJOR))
RWAL_REALNAME := librwal.so.$(RWAL_VERSION)

lib:
	@test -n "$(RWAL_VERSION)" || { echo "lib: no version in Cargo.toml" >&2; exit 1; }
	$(CARGO) build $(INSTALL_CARGO_FLAGS) -p rwal-ffi
	$(CARGO) rustc $(INSTALL_CARGO_FLAGS) -p rwal-ffi --lib --crate-type cdylib -- -C link-arg=-Wl,-soname,$(RWAL_SONAME)
	cp $(INSTALL_FROM)/librwal.so $(INSTALL_FROM)/$(RWAL_REALNAME)
	# Linked again without the SONAME, so that target/ holds what in-tree builds expect.
	$(CARGO) rustc $(INSTALL_CARGO_FLAGS) -p rwal-ffi --lib --crate-type cdylib
	# For `make install`, which runs no cargo to ask.
	mkdir -p $(CURDIR)/target && echo '$(TARGET_DIR)' > $(CURDIR)/target/.cargo-target-dir

install:
	@test -n "$(RWAL_VERSION)" || { echo "install: no version in Cargo.toml" >&2; exit 1; }
	@test -f $(INSTALL_FROM)/$(RWAL_REALNAME) && test -f $(INSTALL_FROM)/librwal.a \
	    && test ! $(INSTALL_FROM)/$(RWAL_REALNAME) -ot $(INSTALL_FROM)/librwal.a \
	    || { echo "install: $(INSTALL_FROM)/$(RWAL_REALNAME) is missing or older than librwal.a: run 'make lib' first, as yourself (install builds nothing)" >&2; exit 1; }
	install -d $(INSTALL_LIBDIR)/pkgconfig $(INSTALL_INCLUDEDIR)
	install -m 644 include/rwal.h $(INSTALL_INCLUDEDIR)/rwal.h
	install -m 644 $(INSTALL_FROM)/librwal.a $(INSTALL_LIBDIR)/librwal.a
	install -m 755 $(INSTALL_FROM)/$(RWAL_REALNAME) $(INSTALL_LIBDIR)/$(RWAL_REALNAME)
	ln -sfn $(RWAL_REALNAME) $(INSTALL_LIBDIR)/$(RWAL_SONAME)
	ln -sfn $(RWAL_SONAME) $(INSTALL_LIBDIR)/librwal.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(RWAL_VERSION)|' \
	    -e 's|@NATIVE_LIBS@|$(RWAL_NATIVE_LIBS)|' ffi/rwal.pc.in > $(INSTALL_LIBDIR)/pkgconfig/rwal.pc
	# The loader's cache, for an install into place (not into a staging directory).
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig > /dev/null; then \
	    echo ldconfig; ldconfig; fi

uninstall:
	rm -f $(INSTALL_INCLUDEDIR)/rwal.h $(INSTALL_LIBDIR)/librwal.a $(INSTALL_LIBDIR)/librwal.so \
	    $(INSTALL_LIBDIR)/$(RWAL_SONAME) $(INSTALL_LIBDIR)/$(RWAL_REALNAME) $(INSTALL_LIBDIR)/pkgconfig/rwal.pc

# Installs the debug build into a staging directory, builds the C test against it through
# pkg-config, checks that the program asks for the library by its SONAME and runs it, then
# uninstalls and checks that nothing is left.
INSTALL_STAGE = $(CURDIR)/$(CTEST_DIR)/install-stage
install-test:
	rm -rf $(INSTALL_STAGE) $(CTEST_DIR)/scratch-installed $(CTEST_DIR)/not-built
	# install builds nothing: without `make lib` it refuses, saying so, and installs nothing.
	mkdir -p $(CTEST_DIR)/not-built
	! $(MAKE) --no-print-directory install INSTALL_FROM=$(CTEST_DIR)/not-built DESTDIR=$(INSTALL_STAGE) PREFIX=/opt/rwal 2> $(CTEST_DIR)/not-built/refusal
	grep -q "run 'make lib' first" $(CTEST_DIR)/not-built/refusal
	test ! -e $(INSTALL_STAGE)
	$(MAKE) --no-print-directory lib INSTALL_CARGO_FLAGS= INSTALL_FROM=$(LIBDIR)
	$(MAKE) --no-print-directory install INSTALL_FROM=$(LIBDIR) DESTDIR=$(INSTALL_STAGE) PREFIX=/opt/rwal
	readelf -d $(INSTALL_STAGE)/opt/rwal/lib/$(RWAL_REALNAME) | grep -F 'Library soname: [$(RWAL_SONAME)]'
	grep -q '^#define RWAL_VERSION_MAJOR $(RWAL_MAJOR)$$' $(INSTALL_STAGE)/opt/rwal/include/rwal.h
	grep -q '^#define RWAL_VERSION_MINOR $(RWAL_MINOR)$$' $(INSTALL_STAGE)/opt/rwal/include/rwal.h
	PKG_CONFIG_PATH=$(INSTALL_STAGE)/opt/rwal/lib/pkgconfig pkg-config --modversion rwal | grep -qx '$(RWAL_VERSION)'
	$(CC) $(CFLAGS_WARN) tests/c/test_basic.c \
	    $$(PKG_CONFIG_PATH=$(INSTALL_STAGE)/opt/rwal/lib/pkgconfig pkg-config --define-prefix --cflags --libs rwal) \
	    -Wl,-rpath,$(INSTALL_STAGE)/opt/rwal/lib -o $(CTEST_DIR)/test_installed
	readelf -d $(CTEST_DIR)/test_installed | grep -F 'Shared library: [$(RWAL_SONAME)]'
	mkdir -p $(CTEST_DIR)/scratch-installed
	$(CTEST_DIR)/test_installed $(CTEST_DIR)/scratch-installed
	$(MAKE) --no-print-directory uninstall DESTDIR=$(INSTALL_STAGE) PREFIX=/opt/rwal
	test -z "$$(find $(INSTALL_STAGE) -type f -o -type l)"
