#!/usr/bin/env bash
# Builds the ferrovs Debian package: scripts/package.sh [--install-test] [--pgo] [OUT_DIR]
#
# dpkg-buildpackage with debhelper (debian/): a release build of ferrovs (cargo's
# CARGO_TARGET_DIR is honoured, so an existing release build is reused), the man
# pages and shell completions written by `ferrovs gen-docs`, then lintian, which
# fails the build on errors. The .deb lands in OUT_DIR (default:
# $CARGO_TARGET_DIR/debian, else target/debian).
#
# --pgo (root): packages the profile-guided build of perf/pgo.sh instead of a plain
# release build; the .deb lands in target/pgo-use/debian unless OUT_DIR says.
#
# --install-test (root, for CI): then installs the package with dpkg -i, checks
# that its files are in place and that the shipped configurations pass
# check-config, upgrades it to a repacked higher version (a local edit of the
# conffile must survive), purges it and checks that nothing is left. It refuses
# to run when ferrovs is already installed, and never leaves it installed.
# In between, with systemd-nspawn (systemd-container), it boots this system's /usr
# under systemd in a container (--volatile: a fresh /etc and /var in memory) on a
# network namespace with a veth port, and drives the packaged unit: start
# (Type=notify readiness), a ping answered through the sandboxed unit, reload,
# a worker stalled by the test-only fault switch and ferrovs restarted by the
# watchdog, journal priorities, stop.
set -euo pipefail
cd "$(dirname "$0")/.."

install_test=false
pgo=false
while [ $# -gt 0 ]; do
    case $1 in
        --install-test) install_test=true ;;
        --pgo) pgo=true ;;
        -*) echo "package.sh: unknown option $1 (usage: scripts/package.sh [--install-test] [--pgo] [OUT_DIR])" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
if $pgo; then
    # The profile-guided build of perf/pgo.sh (root: it trains on DPDK vdevs); the
    # package's cargo build uses its target directory and profile, so only the
    # crates with C code rebuild (for the package's hardening CFLAGS) and it relinks.
    perf/pgo.sh
    CARGO_TARGET_DIR=$PWD/target/pgo-use
    RUSTFLAGS=$(cat target/pgo-data/rustflags)
    export CARGO_TARGET_DIR RUSTFLAGS
fi
out=${1:-${CARGO_TARGET_DIR:-target}/debian}

tools=(debhelper dpkg-dev lintian)
if $install_test; then
    tools+=(systemd-container)
fi
missing=()
for p in "${tools[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "package.sh: needs ${missing[*]} (apt-get install them as root)" >&2
        exit 1
    fi
    echo "package.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
. ./scripts/setup-rust.sh

# The package's version is the crate's.
version=$(dpkg-parsechangelog -S Version)
crate=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
if [ "$version" != "$crate" ]; then
    echo "package.sh: debian/changelog says $version, Cargo.toml $crate" >&2
    exit 1
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
mkdir -p "$out"
out=$(realpath "$out")
rm -f "$out"/ferrovs_* "$out"/ferrovs-dbgsym_*

echo "== package: dpkg-buildpackage"
DEB_OUT="$out" dpkg-buildpackage -b --no-sign --post-clean \
    --buildinfo-option=-u"$out" --changes-option=-u"$out" \
    --buildinfo-file="$out/ferrovs_${version}_${arch}.buildinfo" \
    --changes-file="$out/ferrovs_${version}_${arch}.changes"
deb="$out/ferrovs_${version}_${arch}.deb"
echo "== package: $deb"
dpkg-deb --info "$deb"

echo "== package: lintian (fails on errors; every tag shown)"
lintian --fail-on error --display-info --tag-display-limit 0 "$deb" | tee "$out/lintian.txt"

if ! $install_test; then
    exit 0
fi

echo "== package: install, check, upgrade, purge"
if [ "$(id -u)" != 0 ]; then
    echo "package.sh: --install-test needs root" >&2
    exit 1
fi
if dpkg-query -W -f='${Status}' ferrovs 2>/dev/null | grep -q "installed"; then
    echo "package.sh: ferrovs is installed already; not touching it" >&2
    exit 1
fi
work=$(mktemp -d)
machine=fvpkg$$
nspawn_pid=
cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill "$nspawn_pid" 2>/dev/null || true
        sleep 3
        kill -9 "$nspawn_pid" 2>/dev/null || true
    fi
    ip netns del "$machine-lb" 2>/dev/null || true
    ip netns del "$machine-peer" 2>/dev/null || true
    # The empty cgroups systemd-nspawn --keep-unit leaves where it ran.
    for d in /sys/fs/cgroup/*/payload /sys/fs/cgroup/*/supervisor; do
        if [ -d "$d" ]; then
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        fi
    done
    rm -rf "/run/systemd/nspawn/propagate/$machine"
    rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn /run/systemd/nspawn-root 2>/dev/null || true
    dpkg --purge ferrovs >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "package.sh: $*" >&2
    exit 1
}

dpkg -i "$deb"
for f in \
    /usr/sbin/ferrovs \
    /lib/systemd/system/ferrovs.service \
    /etc/ferrovs/ferrovs.yaml \
    /usr/lib/sysctl.d/ferrovs.conf \
    /usr/share/man/man8/ferrovs.8.gz \
    /usr/share/man/man8/ferrovs-run.8.gz \
    /usr/share/man/man8/ferrovs-check-config.8.gz \
    /usr/share/man/man8/ferrovs-ctl.8.gz \
    /usr/share/man/man8/ferrovs-ctl-list.8.gz \
    /usr/share/man/man8/ferrovs-ctl-withdraw.8.gz \
    /usr/share/man/man5/ferrovs.yaml.5.gz \
    /usr/share/bash-completion/completions/ferrovs \
    /usr/share/zsh/vendor-completions/_ferrovs \
    /usr/share/fish/vendor_completions.d/ferrovs.fish \
    /usr/share/doc/ferrovs/copyright \
    /usr/share/doc/ferrovs/examples/example.yaml \
    /usr/share/doc/ferrovs/examples/demo.yaml \
    /usr/share/doc/ferrovs/examples/cluster/ferrovs-a.yaml \
    /usr/share/doc/ferrovs/examples/cluster/bird-router.conf \
    /usr/share/doc/ferrovs/examples/grafana-dashboard.json; do
    [ -e "$f" ] || fail "$f is missing after dpkg -i"
done
echo "files in place"
dpkg-query -W -f='${Conffiles}\n' ferrovs | grep -q '^ /etc/ferrovs/ferrovs.yaml ' ||
    fail "/etc/ferrovs/ferrovs.yaml is not a conffile"
for c in /etc/ferrovs/ferrovs.yaml /usr/share/doc/ferrovs/examples/*.yaml \
    /usr/share/doc/ferrovs/examples/cluster/*.yaml; do
    ferrovs check-config "$c"
done
ferrovs --version
man -l /usr/share/man/man5/ferrovs.yaml.5.gz 2>/dev/null | grep -q 'services\[\]\.health_check' ||
    fail "ferrovs.yaml(5) does not render"
bash -c '. /usr/share/bash-completion/completions/ferrovs && complete -p ferrovs' ||
    fail "the bash completion does not load"
if command -v systemd-analyze >/dev/null; then
    # Checks the unit's syntax and that its commands exist; needs no running systemd.
    systemd-analyze verify /lib/systemd/system/ferrovs.service
    echo "systemd-analyze verify: ok"
fi

# The unit under systemd, in a container that boots this system's /usr (where
# the package is installed) with a fresh /etc: a veth port in a namespace of its
# own, the configuration bound to /etc/ferrovs.
systemd_test() {
    local dir="$work/systemd" lb="$machine-lb" peer="$machine-peer" leader="" p pid
    mkdir -p "$dir/etc-ferrovs" "$dir/preset"
    ip netns add "$lb"
    ip netns add "$peer"
    ip link add name wan0 netns "$lb" type veth peer name eth0 netns "$peer"
    ip netns exec "$lb" ethtool -K wan0 tx off rx off tso off gso off gro off >/dev/null
    ip netns exec "$peer" ethtool -K eth0 tx off rx off tso off gso off gro off >/dev/null
    ip -n "$peer" addr add 198.18.0.10/24 dev eth0
    ip -n "$peer" link set eth0 up
    ip -n "$lb" link set wan0 up
    # ferrovs owns wan0: the namespace's kernel must not answer on it as well.
    ip netns exec "$lb" iptables -t raw -A PREROUTING -i wan0 -j DROP
    printf '%s\n' \
        "eal: { cores: [0, 1], memory_mb: 256, hugepages: false, file_prefix: $machine }" \
        "ports:" \
        "  - { name: wan, device: \"net_af_packet0,iface=wan0\", addresses: [\"198.18.0.1/24\"] }" \
        "workers: { cores: [1], idle_backoff: true }" \
        "mempool: { mbufs: 8191 }" \
        "connections: { max: 65536 }" >"$dir/etc-ferrovs/ferrovs.yaml"
    ferrovs check-config "$dir/etc-ferrovs/ferrovs.yaml"
    # A first boot applies the presets: nothing else starts, ferrovs is not enabled.
    echo "disable *" >"$dir/preset/00-ferrovs-test.preset"
    systemd-nspawn -D / --volatile=yes --register=no --keep-unit -b -M "$machine" \
        --network-namespace-path="/run/netns/$lb" \
        --capability=CAP_NET_ADMIN,CAP_IPC_LOCK,CAP_SYS_RAWIO \
        --bind-ro="$dir/etc-ferrovs:/etc/ferrovs" \
        --bind-ro="$dir/preset:/etc/systemd/system-preset" \
        --console=pipe </dev/null >"$dir/nspawn.log" 2>&1 &
    nspawn_pid=$!
    for _ in $(seq 100); do
        for p in $(pgrep -P "$nspawn_pid" || true); do
            if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ]; then
                leader=$p
            fi
        done
        [ -n "$leader" ] && break
        sleep 0.2
    done
    [ -n "$leader" ] || fail "systemd did not start in the container: $(cat "$dir/nspawn.log")"
    c() { nsenter -t "$leader" -a "$@"; }
    state() { c systemctl show ferrovs -P "$1"; }
    # logged PATTERN [journalctl options]: the unit's journal has a matching message.
    logged() { c journalctl -u ferrovs -q --no-pager -o cat "${@:2}" | grep -e "$1" >/dev/null; }
    check() {
        if ! "$@"; then
            echo "--- journal of ferrovs.service" >&2
            c journalctl -u ferrovs --no-pager -o short-monotonic -n 40 >&2 || true
            fail "systemd: $*"
        fi
    }
    for _ in $(seq 150); do
        c test -S /run/systemd/private && break
        sleep 0.2
    done
    timeout 60 nsenter -t "$leader" -a systemctl is-system-running --wait >/dev/null || true
    echo "systemd: $(c systemctl --version | head -1) is PID 1 in container $machine"

    check c systemctl start ferrovs
    check [ "$(state ActiveState)/$(state SubState)" = active/running ]
    check [ "$(state StatusText)" = "forwarding: 1 port(s), 1 worker(s)" ]
    check [ "$(state Type)" = notify ]
    c systemctl status ferrovs --no-pager -n 0 || true
    check ip netns exec "$peer" ping -c 2 -W 2 -q 198.18.0.1
    echo "systemd: started (READY=1: active/running with its status text), ping answered"

    pid=$(state MainPID)
    check c systemctl reload ferrovs
    check [ "$(state ActiveState)" = active ]
    check [ "$(state MainPID)" = "$pid" ]
    check logged "SIGHUP: configuration reloaded"
    echo "systemd: reloaded (RELOADING=1, READY=1), same main PID"

    c mkdir -p /run/systemd/system/ferrovs.service.d
    printf '%s\n' "[Service]" "Environment=FERROVS_TEST_STALL_WORKER0_AFTER_S=3" \
        "WatchdogSec=2s" | c tee /run/systemd/system/ferrovs.service.d/stall.conf >/dev/null
    c systemctl daemon-reload
    check c systemctl restart ferrovs
    for _ in $(seq 100); do
        [ "$(state NRestarts)" -ge 1 ] && break
        sleep 0.2
    done
    check [ "$(state NRestarts)" -ge 1 ]
    check logged "Watchdog timeout"
    c journalctl -u ferrovs --no-pager -o short-monotonic \
        -g "stalls now|no progress|Watchdog timeout|SIGABRT|Scheduled restart" || true
    c rm -r /run/systemd/system/ferrovs.service.d
    c systemctl daemon-reload
    check c systemctl restart ferrovs
    check [ "$(state ActiveState)" = active ]
    echo "systemd: the stalled worker stopped the watchdog; systemd killed and restarted ferrovs"

    # Journal levels: the stall's error has priority err; no timestamps of ferrovs's own.
    check logged "made no progress" -p err
    check logged "^ferrovs::runtime: ready in"
    echo "systemd: journal priorities mapped, no timestamps of ferrovs's own"

    check c systemctl stop ferrovs
    check [ "$(state ActiveState)" = inactive ]
    check logged "stopped cleanly"
    echo "systemd: stopped (STOPPING=1), stopped cleanly"

    c systemctl poweroff || true
    for _ in $(seq 150); do
        kill -0 "$nspawn_pid" 2>/dev/null || break
        sleep 0.2
    done
    nspawn_pid=""
}
if command -v systemd-nspawn >/dev/null; then
    systemd_test
    echo "systemd: ok"
else
    echo "systemd: skipped (no systemd-nspawn)"
fi

# Upgrade to the same files under a higher version: the maintainer scripts' upgrade
# paths run, and a local edit of the conffile survives.
echo "# local edit" >>/etc/ferrovs/ferrovs.yaml
dpkg-deb -R "$deb" "$work/pkg"
sed -i "s/^Version: .*/Version: ${version}+upgrade1/" "$work/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/pkg" "$work/upgrade.deb" >/dev/null
dpkg -i --force-confold "$work/upgrade.deb"
[ "$(dpkg-query -W -f='${Version}' ferrovs)" = "${version}+upgrade1" ] || fail "upgrade did not happen"
grep -q '^# local edit$' /etc/ferrovs/ferrovs.yaml || fail "the upgrade lost the local conffile edit"
ferrovs check-config /etc/ferrovs/ferrovs.yaml
echo "upgrade: ok, local conffile edit kept"

dpkg --purge ferrovs
for f in /usr/sbin/ferrovs /lib/systemd/system/ferrovs.service /etc/ferrovs \
    /usr/lib/sysctl.d/ferrovs.conf /usr/share/doc/ferrovs /usr/share/man/man8/ferrovs.8.gz; do
    [ ! -e "$f" ] || fail "$f is still there after dpkg --purge"
done
if dpkg-query -W -f='${Status}' ferrovs 2>/dev/null | grep -q "installed\|config-files"; then
    fail "dpkg still knows ferrovs after the purge"
fi
echo "purge: ok, nothing left"
echo "== package: install test passed"
