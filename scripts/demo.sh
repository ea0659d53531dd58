#!/usr/bin/env bash
# The built-in demo: installs what is needed, builds ferrovs, and runs it between
# network namespaces carrying real HTTP traffic:
#
#   client 198.18.0.10 --- [ferrovs wan 198.18.0.1 | lan 198.19.0.1] --- bridge --- nginx rs1 198.19.0.10:8080
#                            VIP 198.18.0.100:80 (NAT, wrr 1:2)                  +-- nginx rs2 198.19.0.11:8080
#
# It also shows `ferrovs ctl` (ipvsadm-style listing, draining a server) and the
# appliance's kernel interfaces (the exception path). Everything it creates
# (namespaces, veths, processes) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== building ferrovs (release)"
cargo build --release --locked --bin ferrovs
FERROVS=$PWD/target/release/ferrovs
WORK=$(mktemp -d /tmp/ferrovs-demo.XXXXXX)
NS=(fvd-lb fvd-client fvd-br fvd-rs1 fvd-rs2)

cleanup() {
    set +e
    [ -n "${FERROVS_PID:-}" ] && kill -TERM "$FERROVS_PID" 2>/dev/null && wait "$FERROVS_PID" 2>/dev/null
    for ns in "${NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
cleanup 2>/dev/null || true
trap cleanup EXIT

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# veth hands packets up with the checksum left to offload: turn it off, or TCP fails.
prep() { in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null
         in_ns "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"; ip -n "$1" link set "$2" up; }

echo "== network namespaces"
for ns in "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add name fvd-wan netns fvd-lb type veth peer name eth0 netns fvd-client
ip link add name fvd-lan netns fvd-lb type veth peer name p-lb netns fvd-br
ip -n fvd-br link add br0 type bridge; ip -n fvd-br link set br0 up
prep fvd-lb fvd-wan; prep fvd-lb fvd-lan; prep fvd-client eth0; prep fvd-br p-lb
ip -n fvd-br link set p-lb master br0
ip -n fvd-client addr add 198.18.0.10/24 dev eth0
for i in 1 2; do
    ip link add name eth0 netns "fvd-rs$i" type veth peer name "p-rs$i" netns fvd-br
    prep "fvd-rs$i" eth0; prep fvd-br "p-rs$i"; ip -n fvd-br link set "p-rs$i" master br0
    ip -n "fvd-rs$i" addr add "198.19.0.1$((i - 1))/24" dev eth0
    ip -n "fvd-rs$i" route add default via 198.19.0.1   # NAT: replies return through ferrovs
    mkdir -p "$WORK/rs$i"
    cat > "$WORK/rs$i/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $WORK/rs$i/nginx.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/rs$i; proxy_temp_path $WORK/rs$i;
  fastcgi_temp_path $WORK/rs$i; uwsgi_temp_path $WORK/rs$i; scgi_temp_path $WORK/rs$i;
  server { listen 198.19.0.1$((i - 1)):8080; location / { default_type text/plain; return 200 "hello from rs$i\n"; } } }
CONF
    ip netns exec "fvd-rs$i" nginx -c "$WORK/rs$i/nginx.conf" > "$WORK/rs$i/log" 2>&1 &
    disown
done

# ferrovs owns fvd-wan/fvd-lan as DPDK owns a NIC: keep the namespace's kernel off
# the frames arriving there (its own sockets use the kernel interfaces ferrovs makes).
for i in fvd-wan fvd-lan; do
    in_ns fvd-lb iptables -t raw -A PREROUTING -i "$i" -j DROP
    in_ns fvd-lb ip6tables -t raw -A PREROUTING -i "$i" -j DROP
done

echo "== starting ferrovs (conf/demo.yaml)"
"$FERROVS" check-config conf/demo.yaml
# `ip netns exec` execs ferrovs, so $! is ferrovs itself (SIGTERM goes straight to it).
ip netns exec fvd-lb "$FERROVS" run --config conf/demo.yaml > "$WORK/ferrovs.log" 2>&1 &
FERROVS_PID=$!
for _ in $(seq 100); do grep -q " ready in " "$WORK/ferrovs.log" && break; sleep 0.1; done
cat "$WORK/ferrovs.log"

echo "== the appliance's own kernel interfaces (exception path), reaching rs1 through ferrovs"
ip -n fvd-lb -br addr show dev wan; ip -n fvd-lb -br addr show dev lan
in_ns fvd-lb ping -c 2 -i 0.2 198.19.0.10 | tail -2

echo "== ping the VIP"
in_ns fvd-client ping -c 3 -i 0.2 198.18.0.100 | tail -2

echo "== 12 HTTP requests to http://198.18.0.100/ (wrr, weights 1:2)"
for _ in $(seq 12); do in_ns fvd-client curl -s -m 5 http://198.18.0.100/; done | sort | uniq -c

echo "== wrk: 5 s, 32 connections, through ferrovs"
in_ns fvd-client wrk -t1 -c32 -d5s http://198.18.0.100/ | sed -n '1,20p'

echo "== ferrovs ctl list --stats (like ipvsadm -Ln --stats)"
"$FERROVS" ctl list --stats

echo "== drain rs1 with ferrovs ctl, then 6 more requests: all go to rs2"
"$FERROVS" ctl drain web 198.19.0.10:8080
for _ in $(seq 6); do in_ns fvd-client curl -s -m 5 http://198.18.0.100/; done | sort | uniq -c
"$FERROVS" ctl list

echo "== metrics excerpt (curl http://127.0.0.1:9800/metrics inside fvd-lb)"
in_ns fvd-lb curl -s http://127.0.0.1:9800/metrics \
    | grep -E '^ferrovs_(service|real_server_connections|real_server_in_packets|real_server_out_packets|port_(rx|tx)_packets|worker_(rx|tx)_packets|worker_dropped|connections_active|build)' \
    | grep -v ' 0$'

echo "== stopping ferrovs (SIGTERM)"
kill -TERM "$FERROVS_PID"; status=0; wait "$FERROVS_PID" || status=$?; FERROVS_PID=
tail -2 "$WORK/ferrovs.log"
echo "ferrovs exit status: $status"
echo "== demo done; namespaces are removed on exit"
