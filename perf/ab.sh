#!/usr/bin/env bash
# Alternating A/B of two ferrovs builds on one of the bed's generated configurations,
# for changes smaller than the bed's round-to-round noise. Each round starts each
# binary in turn with `ferrovs run`, waits out the warm-up, and reads
# ferrovs_worker_tx_packets_total over the measured interval; the last lines are the
# median of the rounds' ratios B / A and, for machines whose speed swings within a
# run, the ratio of the two builds' 90th percentiles of half-second rates.
#
#   perf/run.sh --workloads udp-64k --rounds 1     # once, to write perf/out/*.yaml
#   cp target/release/ferrovs /tmp/ferrovs.a       # build A, copy; build B, copy
#   sudo perf/ab.sh /tmp/ferrovs.a /tmp/ferrovs.b perf/out/ferrovs-udp-64k-dr.yaml 6
#
# Needs root (DPDK) and nothing else polling the cores (no bed, no test run).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 BINARY_A BINARY_B CONFIG [ROUNDS (6)] [WARMUP_S (2)] [MEASURE_S (3)]" >&2
    exit 2
fi
a=$1 b=$2 cfg=$3 rounds=${4:-6} warmup=${5:-2} measure=${6:-3}
for f in "$a" "$b"; do [ -x "$f" ] || { echo "$0: $f is not an executable" >&2; exit 2; }; done
[ -r "$cfg" ] || { echo "$0: cannot read $cfg" >&2; exit 2; }
listen=$(sed -n 's/^ *metrics_listen: *"\([^"]*\)".*/\1/p' "$cfg")
[ -n "$listen" ] || { echo "$0: $cfg has no management.metrics_listen" >&2; exit 2; }

tx_total() {
    curl -sf "http://$listen/metrics" |
        awk '/^ferrovs_worker_tx_packets_total/ { s += $2 } END { printf "%d", s }'
}

# Interference on a shared machine only ever slows a run down, and on some VMs it
# comes and goes within seconds: the measured interval is also read in half-second
# slices, whose rates (Mpps) go to $slice_dir/$1, for the 90th percentile printed
# at the end.
slice_dir=$(mktemp -d)
trap 'rm -rf "$slice_dir"' EXIT
slices() {
    local c=$2 t=$3 c1 t1 n
    n=$(awk -v m="$measure" 'BEGIN { n = int(m / 0.5); print n < 1 ? 1 : n }')
    for _ in $(seq "$n"); do
        sleep 0.5 || return 1
        c1=$(tx_total) || return 1
        t1=$(date +%s.%N)
        awk -v c="$((c1 - c))" -v t0="$t" -v t1="$t1" 'BEGIN { printf "%.2f\n", c / (t1 - t0) / 1e6 }' >>"$slice_dir/$1"
        c=$c1 t=$t1
    done
}

# Mpps of one run of binary $1 (slices filed under $2).
rate() {
    local log pid t0 t1 c0 c1
    log=$(mktemp)
    "$1" run --config "$cfg" >"$log" 2>&1 &
    pid=$!
    # Up to 20 s for the EAL and the tables; a run that never answers, or stops
    # answering, is reported with its log instead of measured.
    for _ in $(seq 100); do
        tx_total >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if ! tx_total >/dev/null 2>&1 || ! sleep "$warmup" ||
        ! c0=$(tx_total) || ! t0=$(date +%s.%N) || ! slices "$2" "$c0" "$t0" ||
        ! c1=$(tx_total) || ! t1=$(date +%s.%N); then
        echo "$0: $1 did not serve $listen/metrics throughout the run; its log:" >&2
        cat "$log" >&2
        kill -INT "$pid" 2>/dev/null && wait "$pid" || true
        rm -f "$log"
        return 1
    fi
    kill -INT "$pid"
    wait "$pid" || true
    rm -f "$log"
    awk -v c="$((c1 - c0))" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f", c / (t1 - t0) / 1e6 }'
}

ratios=()
for r in $(seq "$rounds"); do
    ra=$(rate "$a" a) || exit 1
    rb=$(rate "$b" b) || exit 1
    ratio=$(awk -v x="$ra" -v y="$rb" 'BEGIN { printf "%.3f", y / x }')
    ratios+=("$ratio")
    echo "round $r: A $ra Mpps, B $rb Mpps, B/A $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n |
    awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median B/A over %d rounds: %.3f\n", NR, m }'
p90() { sort -n "$slice_dir/$1" | awk '{ v[NR] = $1 } END { i = int(NR * 0.9); printf "%.2f", v[i < 1 ? 1 : i] }'; }
pa=$(p90 a) pb=$(p90 b)
awk -v a="$pa" -v b="$pb" -v n="$(wc -l <"$slice_dir/a")" \
    'BEGIN { printf "90th percentile of %d half-second rates: A %.2f Mpps, B %.2f Mpps, B/A %.3f\n", n, a, b, b / a }'
