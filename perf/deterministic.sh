#!/usr/bin/env bash
# Deterministic figures of the pipeline, beside the bed's timed ones: instructions,
# simulated L1 data misses, simulated last-level misses and write-backs a packet,
# for each workload and mode, from `ferrovs-pipebench` under callgrind's cache
# model.
#
#   perf/deterministic.sh                      # udp-1k, udp-64k, udp-1m x nat, fullnat, dr, tunnel
#   perf/deterministic.sh udp-64k nat          # one workload, one mode
#   LL=1048576,16,64 perf/deterministic.sh     # another last level to model
#
# The caches modelled by default are the bed machine's, fixed so that figures
# compare across machines: L1d 48 KB 12-way, and as the last level its 2 MB
# 16-way L2 (its L3 is shared with other tenants and no model would be right).
#
# "table" counts the last-level misses of code in the connection table's sources
# (`crates/ferrovs-core/src/conn/`, inlined or not: callgrind charges an inlined
# line to its own file): the record buckets a lookup reads, apart
# from the packet source's and the rest of the pipeline's.
#
# "LL wb" counts the last-level misses that evicted a dirty line (callgrind's
# --simulate-wb): the lines written back to memory, which a forwarding path that
# stores to every line it reads doubles its memory traffic with.
#
# Each figure is the difference of two runs (N1 and N2 measured packets, the same
# seed and clock, so the same table and warm-up) over N2 - N1: set-up and warm-up
# cancel out. valgrind ignores prefetches, so a line the pipeline requests ahead
# still counts as a miss when it is read: the miss counts are lines touched from
# outside the modelled caches, whatever hides their latency on real hardware.
set -euo pipefail
cd "$(dirname "$0")/.."

workloads=${1:-"udp-1k udp-64k udp-1m"}
modes=${2:-"nat fullnat dr tunnel"}
N1=${N1:-200000}
N2=${N2:-400000}
D1=${D1:-49152,12,64}
LL=${LL:-2097152,16,64}
SEED=7
MPPS=3

command -v valgrind >/dev/null || { echo "deterministic.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
cargo build --release --locked -q -p ferrovs-perf --bin ferrovs-pipebench
target=${CARGO_TARGET_DIR:-target}
bench="$target/release/ferrovs-pipebench"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Prints "Ir D1mr+D1mw DLmr+DLmw ILdmr+DLdmr+DLdmw table-DLmr+DLmw" of one run.
totals() {
    local workload=$1 mode=$2 packets=$3 file="$out/cg.$1.$2.$3"
    valgrind --tool=callgrind --cache-sim=yes --simulate-wb=yes --D1="$D1" --LL="$LL" \
        --callgrind-out-file="$file" "$bench" --workload "$workload" --mode "$mode" \
        --packets "$packets" --seed "$SEED" --clock-mpps "$MPPS" >/dev/null 2>&1
    awk '
        /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i - 1 }
        /^summary:/ {
            print $(col["Ir"] + 1), $(col["D1mr"] + 1) + $(col["D1mw"] + 1), \
                $(col["DLmr"] + 1) + $(col["DLmw"] + 1), \
                $(col["ILdmr"] + 1) + $(col["DLdmr"] + 1) + $(col["DLdmw"] + 1)
        }' "$file" | tr '\n' ' '
    callgrind_annotate --show=DLmr,DLmw --threshold=100 "$file" 2>/dev/null | awk '
        /file:function/ { on = 1; next }
        on && /\/src\/conn\// {
            gsub(/\([^)]*\)/, ""); r = $1; w = $2; gsub(/,/, "", r); gsub(/,/, "", w)
            t += (r == "." ? 0 : r) + (w == "." ? 0 : w)
        }
        END { print t + 0 }'
}

printf '%-8s %-8s %14s %14s %14s %14s %14s\n' workload mode "instr/packet" "D1 miss/pkt" \
    "LL miss/pkt" "table LL/pkt" "LL wb/pkt"
for w in $workloads; do
    for m in $modes; do
        read -r i1 d1 l1 b1 t1 < <(totals "$w" "$m" "$N1")
        read -r i2 d2 l2 b2 t2 < <(totals "$w" "$m" "$N2")
        awk -v w="$w" -v m="$m" -v n="$((N2 - N1))" -v i="$((i2 - i1))" \
            -v d="$((d2 - d1))" -v l="$((l2 - l1))" -v t="$((t2 - t1))" -v b="$((b2 - b1))" \
            'function z(x) { return x < 0.005 && x > -0.005 ? 0 : x }
            BEGIN { printf "%-8s %-8s %14.1f %14.2f %14.2f %14.2f %14.2f\n", w, m, i / n, z(d / n), z(l / n), z(t / n), z(b / n) }'
    done
done
echo "(callgrind --simulate-wb=yes, --D1=$D1 --LL=$LL, seed $SEED, clock $MPPS Mpps, packets $N2 - $N1)"
