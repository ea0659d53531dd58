#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer, nightly Rust): the targets in fuzz/
# (fuzz/README.md says what each checks).
#
#   scripts/fuzz.sh smoke             every target for SMOKE_SECONDS (20) from the
#                                     committed seed corpus; fails on any crash
#   scripts/fuzz.sh campaign SECONDS [TARGET[=SECONDS]...]
#                                     each target (default: all) for SECONDS, or
#                                     its own; corpus kept in fuzz/corpus-campaign/
#                                     between runs; prints executions, exec/s,
#                                     coverage, corpus, crashes
#   scripts/fuzz.sh run TARGET [LIBFUZZER ARGS...]
#                                     one target, open-ended, on the campaign corpus
#   scripts/fuzz.sh repro TARGET FILE run one input (a crash) with a backtrace
#   scripts/fuzz.sh seeds             rewrite fuzz/corpus/seed-* from fuzz/seeds
#
# Installs what it needs when missing: the nightly toolchain (minimal profile)
# and cargo-fuzz, into ~/.cargo (run scripts/setup-rust.sh first on a machine
# without Rust). The control_protocol target links the ferrovs crate and so
# DPDK; without libdpdk-dev (scripts/setup.sh) it is skipped, with a warning.
# One libFuzzer process at a time, at nice 19. Builds go to FUZZ_TARGET_DIR
# (default fuzz/target), never the caller's CARGO_TARGET_DIR: nightly and
# sanitizer builds would only evict the workspace's own. FUZZ_BIN_DIR: run the
# targets found there instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}
CARGO_FUZZ_VERSION=0.13.2

ALL_TARGETS=(frame_parser pipeline config control_protocol sync_datagram proxy_protocol syn_cookie)
SMOKE_SECONDS=${SMOKE_SECONDS:-20}

# Per target: the longest input, and extra libFuzzer options.
max_len() {
    case $1 in
        frame_parser) echo 4096 ;;
        pipeline) echo 8192 ;;
        config) echo 16384 ;;
        control_protocol) echo 8192 ;;
        sync_datagram) echo 2048 ;;
        proxy_protocol) echo 256 ;;
        syn_cookie) echo 128 ;;
    esac
}
extra_opts() {
    case $1 in
        # Long operation sequences matter more than short ones.
        pipeline) echo "-len_control=0" ;;
        *) echo "" ;;
    esac
}

usage() {
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

ensure_tools() {
    if ! command -v cargo >/dev/null 2>&1; then
        . ./scripts/setup-rust.sh
    fi
    if ! command -v c++ >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            echo "fuzz.sh: installing a C++ compiler (libFuzzer is C++)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends g++ >/dev/null
        else
            echo "fuzz.sh: no C++ compiler for libFuzzer; install g++ (or run scripts/setup.sh)" >&2
            exit 1
        fi
    fi
    if ! cargo +nightly --version >/dev/null 2>&1; then
        if ! command -v rustup >/dev/null 2>&1; then
            echo "fuzz.sh: cargo-fuzz needs a nightly toolchain, and this cargo is not rustup's;" \
                "install rustup (https://rustup.rs) or remove the system cargo and run scripts/setup-rust.sh" >&2
            exit 1
        fi
        echo "fuzz.sh: installing the nightly toolchain (cargo-fuzz needs it)"
        rustup toolchain install nightly --profile minimal
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION"
        # Its own target directory: not the fuzz targets' one.
        CARGO_TARGET_DIR="$CARGO_TARGET_DIR/cargo-fuzz" \
            cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi
}

# The targets this machine can build: control_protocol needs DPDK.
TARGETS=()
FEATURES=()
select_targets() {
    local want=("$@")
    [ ${#want[@]} -gt 0 ] || want=("${ALL_TARGETS[@]}")
    local dpdk=no
    if pkg-config --exists libdpdk 2>/dev/null; then
        dpdk=yes
        FEATURES=(--features control)
    fi
    for t in "${want[@]}"; do
        case " ${ALL_TARGETS[*]} " in
            *" $t "*) ;;
            *) echo "fuzz.sh: no target $t (targets: ${ALL_TARGETS[*]})" >&2; exit 2 ;;
        esac
        if [ "$t" = control_protocol ] && [ $dpdk = no ]; then
            echo "fuzz.sh: WARNING: skipping control_protocol: it links DPDK (libdpdk-dev, scripts/setup.sh)" >&2
            continue
        fi
        TARGETS+=("$t")
    done
}

BIN_DIR=
build() {
    local triple
    # FUZZ_BIN_DIR: targets built before (say from a snapshot of a tree that others
    # are editing), run as they are.
    if [ -n "${FUZZ_BIN_DIR:-}" ]; then
        echo "== fuzz targets from $FUZZ_BIN_DIR (not built)"
        BIN_DIR=$FUZZ_BIN_DIR
        return
    fi
    triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
    echo "== building fuzz targets (${TARGETS[*]})"
    # Release optimizations with debug assertions and overflow checks (cargo-fuzz's
    # default), AddressSanitizer.
    (cd fuzz && nice -n 19 cargo +nightly fuzz build "${FEATURES[@]}")
    BIN_DIR=$CARGO_TARGET_DIR/$triple/release
}

# run TARGET CORPUS ARTIFACTS LOG SECONDS: one libFuzzer run; its exit status.
run_target() {
    local t=$1 corpus=$2 artifacts=$3 log=$4 seconds=$5
    mkdir -p "$corpus" "$artifacts"
    # shellcheck disable=SC2046
    nice -n 19 "$BIN_DIR/$t" "$corpus" \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=30 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        $(extra_opts "$t") >"$log" 2>&1
}

# summary TARGET LOG CORPUS ARTIFACTS: one line of what a run did (executions,
# their rate over the run, coverage as edges and features, corpus files and
# size, crashes and other failures saved).
summary() {
    local t=$1 log=$2 corpus=$3 artifacts=$4
    local execs secs rate last cov ft files kb crashes
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | grep -E ' cov: ' | tail -1 || true)
    if [ -n "$execs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then
        rate=$((execs / secs))
    else
        rate=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$last")
    fi
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    files=$(find "$corpus" -type f | wc -l)
    kb=$(du -sk --apparent-size "$corpus" | cut -f1)
    crashes=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null | wc -l)
    printf '%-17s %13s %8s %7s %7s %7s %8s %7s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$files" "$kb" "$crashes"
}

header() {
    printf '%-17s %13s %8s %7s %7s %7s %8s %7s\n' target executions exec/s cov ft corpus KB crashes
}

smoke() {
    select_targets
    ensure_tools
    build
    local failed=()
    SMOKE_TMP=$(mktemp -d)
    trap 'rm -rf "$SMOKE_TMP"' EXIT
    local tmp=$SMOKE_TMP
    echo "== smoke: ${SMOKE_SECONDS}s per target from fuzz/corpus"
    header
    for t in "${TARGETS[@]}"; do
        mkdir -p "$tmp/$t/corpus"
        cp fuzz/corpus/"$t"/* "$tmp/$t/corpus/" 2>/dev/null || true
        if ! run_target "$t" "$tmp/$t/corpus" "$tmp/$t/artifacts" "$tmp/$t/log" "$SMOKE_SECONDS"; then
            failed+=("$t")
        fi
        summary "$t" "$tmp/$t/log" "$tmp/$t/corpus" "$tmp/$t/artifacts"
    done
    if [ ${#failed[@]} -gt 0 ]; then
        mkdir -p fuzz/artifacts
        for t in "${failed[@]}"; do
            echo "== $t failed:" >&2
            grep -E -A25 'panicked|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY' "$tmp/$t/log" | head -60 >&2 || tail -40 "$tmp/$t/log" >&2
            mkdir -p "fuzz/artifacts/$t"
            cp "$tmp/$t/artifacts/"* "fuzz/artifacts/$t/" 2>/dev/null || true
            echo "reproducer(s) in fuzz/artifacts/$t/: scripts/fuzz.sh repro $t FILE" >&2
        done
        exit 1
    fi
    echo "== smoke: no crash"
}

campaign() {
    local seconds=${1:-}
    [[ "$seconds" =~ ^[0-9]+$ ]] || usage
    shift
    # TARGET=SECONDS gives one target its own time.
    local names=() t
    declare -A own=()
    for t in "$@"; do
        if [[ "$t" =~ ^([a-z_]+)=([0-9]+)$ ]]; then
            own[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
            names+=("${BASH_REMATCH[1]}")
        else
            names+=("$t")
        fi
    done
    select_targets "${names[@]}"
    ensure_tools
    build
    local stamp logs
    stamp=$(date +%Y%m%d-%H%M%S)
    logs=fuzz/logs/$stamp
    mkdir -p "$logs"
    echo "== campaign: corpus fuzz/corpus-campaign, logs $logs"
    local failed=0
    for t in "${TARGETS[@]}"; do
        local corpus=fuzz/corpus-campaign/$t
        mkdir -p "$corpus"
        cp -n fuzz/corpus/"$t"/* "$corpus/" 2>/dev/null || true
        echo "$(date +%T) $t for ${own[$t]:-$seconds}s"
        run_target "$t" "$corpus" "fuzz/artifacts/$t" "$logs/$t.log" "${own[$t]:-$seconds}" || failed=1
    done
    echo
    header | tee "$logs/summary.txt"
    for t in "${TARGETS[@]}"; do
        summary "$t" "$logs/$t.log" "fuzz/corpus-campaign/$t" "fuzz/artifacts/$t" | tee -a "$logs/summary.txt"
    done
    [ $failed = 0 ] || { echo "== campaign: crashes in fuzz/artifacts/ (scripts/fuzz.sh repro TARGET FILE)" >&2; exit 1; }
}

run_one() {
    local t=${1:-}
    [ -n "$t" ] || usage
    shift
    select_targets "$t"
    ensure_tools
    build
    mkdir -p "fuzz/corpus-campaign/$t" "fuzz/artifacts/$t"
    cp -n fuzz/corpus/"$t"/* "fuzz/corpus-campaign/$t/" 2>/dev/null || true
    exec nice -n 19 "$BIN_DIR/$t" "fuzz/corpus-campaign/$t" -max_len="$(max_len "$t")" \
        -timeout=30 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" $(extra_opts "$t") "$@"
}

repro() {
    local t=${1:-} file=${2:-}
    [ -n "$t" ] && [ -n "$file" ] || usage
    select_targets "$t"
    ensure_tools
    build
    RUST_BACKTRACE=1 "$BIN_DIR/$t" "$file"
}

seeds() {
    ensure_tools
    # Only the generated seeds: inputs kept from crashes (crash-*) stay.
    find fuzz/corpus -type f -name 'seed-*' -delete 2>/dev/null || true
    cargo run --release --locked --manifest-path fuzz/seeds/Cargo.toml -- fuzz/corpus "$ROOT"
}

case ${1:-} in
    smoke) smoke ;;
    campaign) shift; campaign "$@" ;;
    run) shift; run_one "$@" ;;
    repro) shift; repro "$@" ;;
    seeds) seeds ;;
    *) usage ;;
esac
