#!/usr/bin/env bash
# A profile-guided (PGO) release build of ferrovs: an instrumented build forwards the
# bed's traffic (every workload in every mode built: established flows at 1K, 64K and
# 1M, and new connections; no testpmd, one short round), llvm-profdata merges what it
# counted, and a second release build lays out branches and inlines by those counts.
# Same source, same behaviour; only the code's arrangement differs.
#
#   sudo perf/pgo.sh                         # writes target/pgo/ferrovs
#   sudo target/release/ferrovs-perfrun --ferrovs target/pgo/ferrovs   # the bed on it
#   sudo perf/ab.sh target/release/ferrovs target/pgo/ferrovs perf/out/ferrovs-udp-64k-dr.yaml 8
#   sudo scripts/package.sh --pgo           # the Debian package from this build
#
# Needs root and what the bed needs (DPDK, hugepages or memory for --no-huge), and
# llvm-profdata of the compiler's own LLVM: rustup's `llvm-tools` component, added
# here when rustup is there. Takes about three release builds and two minutes of
# traffic. Work files go to target/pgo-gen (instrumented build), target/pgo-use (final
# build) and target/pgo-data (bed files, raw and merged profiles).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
    echo "perf/pgo.sh: DPDK needs root" >&2
    exit 1
fi

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ] && command -v rustup >/dev/null; then
    rustup component add llvm-tools >&2 || true
fi
if [ ! -x "$profdata" ]; then
    echo "perf/pgo.sh: no $profdata: install the toolchain's llvm-tools (rustup component add llvm-tools);" \
        "a system llvm-profdata of another LLVM version cannot read rustc's profiles" >&2
    exit 1
fi

root=$PWD
data="$root/target/pgo-data"
rm -rf "$data"
mkdir -p "$data/raw" "$root/target/pgo"

echo "perf/pgo.sh: instrumented build" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$data/raw" CARGO_TARGET_DIR="$root/target/pgo-gen" \
    cargo build --release --locked -p ferrovs --bin ferrovs
cargo build --release --locked -p ferrovs-perf --bin ferrovs-perfrun
# Build scripts of the instrumented build wrote profiles too; only ferrovs's count.
rm -f "$data"/raw/*.profraw

echo "perf/pgo.sh: training on the bed's traffic" >&2
# %m: one file per binary, merged in place across its runs; %p would keep a file a run.
LLVM_PROFILE_FILE="$data/raw/ferrovs-%m.profraw" target/release/ferrovs-perfrun \
    --ferrovs "$root/target/pgo-gen/release/ferrovs" --no-testpmd --rounds 1 \
    --warmup-secs 1 --measure-secs 2 --work-dir "$data/bed" >"$data/training.log" 2>&1 || {
    tail -20 "$data/training.log" >&2
    echo "perf/pgo.sh: the training run failed (log: $data/training.log)" >&2
    exit 1
}
shopt -s nullglob
raw=("$data"/raw/*.profraw)
if [ ${#raw[@]} -eq 0 ]; then
    echo "perf/pgo.sh: the training run left no profile in $data/raw" >&2
    exit 1
fi
"$profdata" merge -o "$data/merged.profdata" "${raw[@]}"
# Named by its content: cargo rebuilds on a change of RUSTFLAGS, not of the file it names.
profile="$data/ferrovs-$(sha256sum "$data/merged.profdata" | cut -c1-16).profdata"
mv "$data/merged.profdata" "$profile"

echo "perf/pgo.sh: optimised build" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profile" CARGO_TARGET_DIR="$root/target/pgo-use" \
    cargo build --release --locked -p ferrovs --bin ferrovs
cp "$root/target/pgo-use/release/ferrovs" "$root/target/pgo/ferrovs"
# For a later build with the same profile in target/pgo-use (scripts/package.sh --pgo).
echo "${RUSTFLAGS:-} -Cprofile-use=$profile" >"$data/rustflags"
echo "perf/pgo.sh: wrote target/pgo/ferrovs (profile: $profile)" >&2
