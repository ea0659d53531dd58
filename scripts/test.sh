#!/usr/bin/env bash
# Installs what is needed and runs every test: formatting and lints, unit tests (no
# root, no DPDK), then the end-to-end tests against real Linux peers in network
# namespaces, one at a time (a worker takes a core). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== unit and command-line tests"
cargo test --workspace --locked

echo "== end-to-end tests (root, DPDK, network namespaces)"
cargo test --release --locked --tests -- --ignored --test-threads=1
echo "== all tests passed"
