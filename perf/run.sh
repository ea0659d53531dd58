#!/usr/bin/env bash
# The benchmark bed in one command: builds ferrovs and the perf tools (release), then
# runs testpmd and ferrovs one after the other over the same vdevs and prints the
# table. Needs root (DPDK) and two free cores; nothing else may run DPDK meanwhile.
#
#   perf/run.sh                          # every workload
#   perf/run.sh --workloads udp-64k      # one workload
#   perf/run.sh --try-mode nat           # measure NAT even before MODES_BUILT lists it
#   perf/run.sh --pgo                    # on a profile-guided build (perf/pgo.sh) instead
#   perf/run.sh --help                   # all options
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
    echo "perf/run.sh: DPDK needs root" >&2
    exit 1
fi
command -v dpdk-testpmd >/dev/null || { echo "perf/run.sh: dpdk-testpmd not found (apt-get install dpdk)" >&2; exit 1; }
binary=target/release/ferrovs
if [ "${1:-}" = --pgo ]; then
    shift
    perf/pgo.sh
    binary=target/pgo/ferrovs
else
    cargo build --release --locked -p ferrovs --bin ferrovs
fi
cargo build --release --locked -p ferrovs-perf --bins
exec target/release/ferrovs-perfrun --ferrovs "$binary" "$@"
