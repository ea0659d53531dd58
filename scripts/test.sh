#!/usr/bin/env bash
# Installs what is needed and runs every test, in two stages.
#
# 1. No root, no DPDK: formatting, then lints and unit tests of the crates that do
#    not link DPDK (ferrovs-core, ferrovs-mem, ferrovs-perf). It runs before
#    anything is installed, so it also shows that these crates build without
#    libdpdk-dev, bindgen or hugepages.
# 2. Root: DPDK, the test peers and hugepages (scripts/setup.sh), lints and unit
#    tests of the whole workspace, a short run of every fuzz target
#    (scripts/fuzz.sh smoke; it installs nightly and cargo-fuzz when missing),
#    then the end-to-end tests against real Linux peers in network namespaces,
#    one at a time (a worker takes a core), and the Debian package built,
#    checked with lintian, installed, upgraded and purged.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== stage 1: no root, no DPDK"
. ./scripts/setup-rust.sh
cargo fmt --all -- --check
dpdk_free=(-p ferrovs-core -p ferrovs-mem -p ferrovs-perf)
cargo clippy "${dpdk_free[@]}" --all-targets --locked -- -D warnings
cargo test "${dpdk_free[@]}" --locked

echo "== stage 2: root, DPDK"
./scripts/setup.sh
echo "== lints and unit tests of the whole workspace"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

echo "== fuzzing: every target for ${SMOKE_SECONDS:-15} s from the seed corpus (nightly, cargo-fuzz)"
# Its own target directory (fuzz/target, or FUZZ_TARGET_DIR): nightly sanitizer
# builds never share the workspace's.
SMOKE_SECONDS=${SMOKE_SECONDS:-15} ./scripts/fuzz.sh smoke

echo "== end-to-end tests (root, DPDK, network namespaces)"
cargo test --release --locked --tests -- --ignored --test-threads=1

echo "== Debian package: build, lintian, install, upgrade, purge"
./scripts/package.sh --install-test
echo "== all tests passed"
