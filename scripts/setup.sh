#!/usr/bin/env bash
# Prepares a Debian 12 machine for ferrovs: build dependencies (DPDK 22.11, libclang),
# the tools the tests and the demo drive (iproute2, ethtool, nginx, wrk, curl, hping3,
# promtool, ...), and 2 MB hugepages. Safe to run again. Needs root.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (packages, hugepages, network namespaces)" >&2
    exit 1
fi

packages=(
    # build
    build-essential pkg-config clang libclang-dev dpdk libdpdk-dev dpdk-dev
    # tests and demo
    iproute2 iptables ethtool iputils-ping arping curl nginx-light wrk prometheus
    python3 python3-scapy tshark tcpdump netcat-openbsd procps util-linux linux-perf bird2
    # health-check peers: dnsmasq's binary alone (no system service on port 53),
    # openssl for the TLS test's certificates; dig, the fragment tests' DNS client
    dnsmasq-base openssl bind9-dnsutils
    # the edge-defence tests' SYN flood
    hping3
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

. "$(dirname "$0")/setup-rust.sh"

# 2 MB hugepages for DPDK: at least 512 pages (1 GiB), mounted at /dev/hugepages.
want=512
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages
fi
mkdir -p /dev/hugepages
if ! mountpoint -q /dev/hugepages; then
    mount -t hugetlbfs nodev /dev/hugepages
fi
echo "setup.sh: ready ($(pkg-config --modversion libdpdk | sed 's/^/DPDK /'), $(cargo --version), hugepages $(cat /proc/sys/vm/nr_hugepages) x 2 MB)"
