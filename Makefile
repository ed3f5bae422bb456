# Sluice's commands. `make test` is the test command (README) and exactly what CI runs
# (.ci/run): it installs what the tests need by itself (scripts/setup.sh), then checks
# formatting, the dependency policy (deny.toml), lints and the docs' links, and runs every
# test, stopping at the first failure.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# The manifest `make render` renders.
EXAMPLE ?= examples/phabricator-header-token.yaml
# Extra arguments for the benchmark programs: bench-proxy's, e.g. `make bench BENCH_ARGS='--rounds 5'`
# (`--policy` adds sluice-proxy with every policy on; the tracing variants, sampling 0 and 1,
# are always measured), and bench-bridge's, e.g. `BRIDGE_BENCH_ARGS='--server python'`.
BENCH_ARGS ?=
BRIDGE_BENCH_ARGS ?=
# Seconds per fuzz target in `make fuzz`, and which targets (fuzz/fuzz_targets).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= inspect proxy_config discovery_paths manifest_render
# Extra arguments for the soak, e.g. `make soak SOAK_ARGS='--duration 3m --rate 300'`.
SOAK_ARGS ?=

ifneq ($(CI),)
# CI builds from scratch once: incremental artifacts only cost time and disk there, and the
# committed Cargo.lock must be the one that is tested.
export CARGO_INCREMENTAL := 0
LOCKED := --locked
endif

# The steps of `make test` run in order even under `make -j`.
.NOTPARALLEL:

step = @printf '\n==> %s\n' "$(1)"

.PHONY: help setup test fmt fmt-check deny advisories clippy doc cargo-test release-build render generate bench soak fuzz clean-peers

help:
	@echo 'make test        install the test peers, then fmt check, deny, clippy, doc, all tests (what CI runs)'
	@echo 'make render      render $(EXAMPLE) offline (no cluster needed)'
	@echo 'make release-build  build the release binaries exactly as the Dockerfiles do'
	@echo 'make setup       install the test peers only (Debian packages, Python venvs, npm, cargo-deny)'
	@echo 'make deny        cargo deny: licenses, duplicate versions, sources (deny.toml; part of make test)'
	@echo 'make advisories  cargo deny: RustSec advisories (needs GitHub, so not part of make test)'
	@echo 'make doc         cargo doc with warnings as errors: broken intra-doc links fail (part of make test)'
	@echo 'make fmt         format the code'
	@echo 'make generate    regenerate the committed CRD YAML, API reference and sidecar config schema'
	@echo 'make bench       benchmark sluice-proxy against a direct path and nginx, and sluice-bridge against stdio'
	@echo 'make soak        drive sluice-proxy at a fixed rate for 10 minutes, print its memory curve'
	@echo 'make fuzz        run each cargo-fuzz target for FUZZ_SECONDS (default 60; nightly, not in CI)'
	@echo 'make clean-peers remove the Python venvs and node_modules under e2e/'

setup:
	$(call step,scripts/setup.sh)
	scripts/setup.sh

test: setup fmt-check deny clippy doc cargo-test release-build

fmt-check:
	$(call step,cargo fmt --all --check)
	$(CARGO) fmt --all --check

# deny.toml: allowed licenses, no second version of a crate beyond the listed ones, crates.io
# only. The advisories check is left out: it clones the RustSec database from GitHub, which
# CI cannot reach (see deny.toml); `make advisories` runs it where GitHub is reachable.
deny:
	$(call step,cargo deny check bans licenses sources)
	$(CARGO) deny $(LOCKED) check bans licenses sources

advisories:
	$(call step,cargo deny check advisories (fetches the RustSec database from GitHub))
	$(CARGO) deny $(LOCKED) check advisories

clippy:
	$(call step,cargo clippy --workspace --all-targets -- -D warnings)
	$(CARGO) clippy $(LOCKED) --workspace --all-targets -- -D warnings

# Every crate's docs, private items included (most of the workspace is binaries and internal
# modules), with rustdoc's warnings as errors: an intra-doc link that no longer resolves fails.
doc:
	$(call step,cargo doc --workspace --no-deps --document-private-items with -D warnings)
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc $(LOCKED) --workspace --no-deps --document-private-items

# --workspace includes sluice-e2e, which the default members leave out.
cargo-test:
	$(call step,cargo test --workspace)
	$(CARGO) test $(LOCKED) --workspace

# The images' build commands, exactly as Dockerfile.operator and Dockerfile.proxy run them (no
# container engine runs in CI; e2e/tests/dockerfiles.rs keeps these lines equal to the files).
release-build:
	$(call step,cargo build --release --locked: the binaries the images ship)
	$(CARGO) build --release --locked -p sluice-operator --bin sluice-operator
	$(CARGO) build --release --locked -p sluice-proxy --bin sluice-proxy
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --locked --target "$$(rustc -vV | sed -n 's/^host: //p')" -p sluice-bridge --bin sluice-bridge
	@# The bridge runs in the server's image, glibc or musl or none: it must load no library.
	@bridge="$${CARGO_TARGET_DIR:-target}/$$(rustc -vV | sed -n 's/^host: //p')/release/sluice-bridge"; \
	if ! ldd "$$bridge" 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; then echo "$$bridge is dynamically linked:"; ldd "$$bridge"; exit 1; fi; \
	"$$bridge" --version

fmt:
	$(CARGO) fmt --all

render:
	$(CARGO) run -q -p sluice-operator -- render -f $(EXAMPLE)

# The last line regenerates the chart's copy of `sluice-operator rbac` (charts/sluice/files/rbac)
# and the README's values reference; it needs the Helm SDK (`make setup`).
generate:
	SLUICE_UPDATE_GENERATED=1 $(CARGO) test -p sluice-operator --test crds
	SLUICE_UPDATE_GENERATED=1 $(CARGO) test -p sluice-operator --test api_reference
	SLUICE_UPDATE_GENERATED=1 $(CARGO) test -p sluice-proxy-config --test schema
	SLUICE_UPDATE_GENERATED=1 $(CARGO) test -p sluice-e2e --test chart_rbac --test readme

bench: setup
	$(call step,cargo run --release -p sluice-e2e --bin bench-proxy -- --tracing)
	$(CARGO) run --release -p sluice-e2e --bin bench-proxy -- --tracing $(BENCH_ARGS)
	$(call step,cargo run --release -p sluice-e2e --bin bench-bridge)
	$(CARGO) run --release -p sluice-e2e --bin bench-bridge -- $(BRIDGE_BENCH_ARGS)

# Not part of `make test`: it runs for 10 minutes by default and needs no peer.
soak:
	$(call step,cargo run --release -p sluice-e2e --bin soak-proxy)
	$(CARGO) run --release -p sluice-e2e --bin soak-proxy -- $(SOAK_ARGS)

# The fuzz crate is outside the workspace (nightly, sanitizers): `make test` never builds it.
# Each target starts from its committed seeds (fuzz/seeds) plus what earlier runs found
# (fuzz/corpus, not committed); a crash stops the run and leaves its input in fuzz/artifacts.
fuzz:
	$(call step,cargo +nightly fuzz run: $(FUZZ_TARGETS), $(FUZZ_SECONDS) s each)
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$target && \
	  cargo +nightly fuzz run $$target corpus/$$target seeds/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 || exit 1; \
	done

clean-peers:
	rm -rf e2e/.venv-mcp2 e2e/.venv-mcp1 e2e/node_modules
