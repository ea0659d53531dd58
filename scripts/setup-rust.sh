#!/usr/bin/env bash
# Makes sure a Rust toolchain with rustfmt and clippy is on PATH: the machine's
# own, or rustup's (stable, minimal profile) installed into ~/.cargo. Needs no
# root; source it (`. scripts/setup-rust.sh`) to keep the PATH it sets.
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
    if ! command -v curl >/dev/null 2>&1; then
        echo "setup-rust.sh: no cargo and no curl to fetch rustup; install curl (or run scripts/setup.sh as root)" >&2
        exit 1
    fi
    echo "setup-rust.sh: no Rust toolchain; installing rustup (stable)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
fi
