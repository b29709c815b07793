# `make test` runs everything CI runs. Each step is its own target so one can be rerun alone.
CARGO ?= cargo

.PHONY: test fmt-check clippy cargo-test loom

test: fmt-check clippy cargo-test loom

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

cargo-test:
	$(CARGO) test --workspace

# loom models of the reservation and group-commit protocols, in their own target directory
# (the cfg changes every crate's build).
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test -p rwal-wal --release --lib loom
