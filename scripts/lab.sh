#!/usr/bin/env bash
# A multi-node overlay lab on one machine, in network namespaces:
#
#   scripts/lab.sh up [N]        N nodes (default 3) on a private underlay, etcd, an agent each
#                                (LAB_BACKEND=wireguard for the WireGuard backend; vxlan by default)
#   scripts/lab.sh pod NODE NAME a container namespace NAME on node NODE (1..N), via the vxlan plugin
#   scripts/lab.sh ip NAME       pod NAME's overlay address
#   scripts/lab.sh exec NAME CMD run CMD inside pod NAME (e.g. busybox ping "$(scripts/lab.sh ip b)")
#   scripts/lab.sh status        records in etcd, each node's overlay routes (and WireGuard peers)
#   scripts/lab.sh check N       whether N nodes fit the kernel's neighbour table (up checks too)
#   scripts/lab.sh down          remove everything
#
# The underlay is 198.18.0.0/24 (a range reserved for benchmarking) and exists only inside
# the lab's namespaces; the root namespace gets an `unreachable` route for it so nothing the
# lab does can leak out. etcd runs inside the underlay namespace on private ports.
set -euo pipefail
cd "$(dirname "$0")/.."

LAB=${LAB_DIR:-/tmp/ferrocni-lab}
BIN=${LAB_BIN:-$PWD/target/debug}
# The backend `up` was given is kept for the commands that follow.
BACKEND=${LAB_BACKEND:-$(cat "$LAB/backend" 2>/dev/null || echo vxlan)}
UNDERLAY=198.18.0
ETCD=http://$UNDERLAY.254:23790
NS_UL=flab-ul

[ "$(id -u)" -eq 0 ] || { echo "lab.sh needs root (network namespaces)" >&2; exit 1; }

node_ns() { echo "flab-n$1"; }

case "$BACKEND" in
  vxlan) TUNNEL=ferrocni.vx ;;
  wireguard) TUNNEL=ferrocni.wg ;;
  *) echo "LAB_BACKEND=$BACKEND: the backends are vxlan and wireguard" >&2; exit 2 ;;
esac

# The kernel keeps one neighbour (ARP) table for all namespaces, and its limit
# (net.ipv4.neigh.default.gc_thresh3) can be set only on the host: the lab cannot raise it
# for its own namespaces. Every node learns every other node's underlay MAC and the underlay
# namespace learns them all: about N*N + N entries, on top of those in use already. Past the
# limit the kernel drops resolutions ("neighbor table overflow" in dmesg) and first pings fail.
check() {
  local count=$1 limit used need
  limit=$(cat /proc/sys/net/ipv4/neigh/default/gc_thresh3)
  used=$((16#$(awk 'NR == 2 {print $1}' /proc/net/stat/arp_cache)))
  need=$((count * count + count))
  if [ $((used + need)) -gt "$limit" ]; then
    echo "warning: $count nodes need about $need neighbour entries; $used are in use and the" \
      "kernel's limit is $limit (net.ipv4.neigh.default.gc_thresh3, shared by every namespace)." \
      "Expect 'neighbor table overflow' and lost first pings, or raise the limit on the host:" \
      "sysctl -w net.ipv4.neigh.default.gc_thresh3=$(((used + need) * 2))" >&2
  fi
}

up() {
  local count=${1:-3}
  check "$count"
  command -v etcd >/dev/null || { echo "etcd is missing: apt-get install etcd-server" >&2; exit 1; }
  [ -x "$BIN/ferrocni-agent" ] || cargo build --workspace --bins --quiet
  mkdir -p "$LAB"
  echo "$BACKEND" >"$LAB/backend"
  ip route replace unreachable "$UNDERLAY.0/24" 2>/dev/null || true
  ip netns add "$NS_UL"
  ip -n "$NS_UL" link set lo up
  # A bridge without a MAC of its own takes its lowest port's, and changes it when a lower
  # port joins: a node that cached another port's MAC then has its frames dropped.
  ip -n "$NS_UL" link add ul0 address 02:00:c6:12:00:fe type bridge
  ip -n "$NS_UL" addr add "$UNDERLAY.254/24" dev ul0
  ip -n "$NS_UL" link set ul0 up
  cat >"$LAB/cluster.json" <<EOF
{"network": "10.244.0.0/16", "subnetLen": 24, "vni": 42, "backend": "$BACKEND"}
EOF
  ip netns exec "$NS_UL" etcd --name lab --data-dir "$LAB/etcd" \
    --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster lab=http://127.0.0.1:23800 >"$LAB/etcd.log" 2>&1 &
  echo $! >"$LAB/etcd.pid"
  for i in $(seq 1 "$count"); do add_node "$i"; done
  wait_converged "$count"
  echo "lab up: $count nodes ($BACKEND), etcd at $ETCD; logs in $LAB"
}

# Pods can be added once every node holds a lease, and reach each other once every node
# routes to the others' subnets: wait for both, so the commands that follow just work.
wait_converged() {
  local count=$1 i tries
  for tries in $(seq 1 300); do
    local ready=0
    for i in $(seq 1 "$count"); do
      [ -f "$LAB/n$i/vxlan.json" ] &&
        [ "$(ip -n "$(node_ns "$i")" route show dev "$TUNNEL" 2>/dev/null | wc -l)" -ge $((count - 1)) ] &&
        ready=$((ready + 1))
    done
    [ "$ready" -eq "$count" ] && return 0
    sleep 0.1
  done
  echo "the nodes did not all get a lease and routes within 30 s; see $LAB/n*/agent.log" >&2
  exit 1
}

add_node() {
  local i=$1 ns
  ns=$(node_ns "$i")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "flab$i" netns "$NS_UL" type veth peer eth0 netns "$ns"
  ip -n "$NS_UL" link set "flab$i" master ul0 up
  ip -n "$ns" addr add "$UNDERLAY.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  mkdir -p "$LAB/n$i"
  # Each node its own identity and WireGuard key: the lab's nodes share one disk. A node's
  # WireGuard state: `printf 'get=1\n\n' | socat - UNIX:$LAB/n1/wg.sock`.
  FERROCNI_IDENTITY_FILE="$LAB/n$i/identity" \
    FERROCNI_WIREGUARD_KEY_FILE="$LAB/n$i/wireguard.key" \
    FERROCNI_WIREGUARD_SOCKET="$LAB/n$i/wg.sock" \
    ip netns exec "$ns" "$BIN/ferrocni-agent" \
    --node "n$i" --etcd-endpoints "$ETCD" --config "$LAB/cluster.json" \
    --underlay-interface eth0 --node-file "$LAB/n$i/vxlan.json" \
    --lease-ttl 5 >"$LAB/n$i/agent.log" 2>&1 &
  echo $! >"$LAB/n$i/agent.pid"
}

pod() {
  local node=$1 name=$2
  cat >"$LAB/n$node/net.json" <<EOF
{"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan",
 "subnetFile": "$LAB/n$node/vxlan.json", "dataDir": "$LAB/n$node/ipam",
 "stateDir": "$LAB/n$node/state", "ipMasq": false}
EOF
  ip netns add "flab-$name"
  ip -n "flab-$name" link set lo up
  # A pod whose ADD failed is no pod: its namespace goes too, so the name can be used again.
  if ! ip netns exec "$(node_ns "$node")" env CNI_COMMAND=ADD CNI_CONTAINERID="$name" \
    CNI_NETNS="/run/netns/flab-$name" CNI_IFNAME=eth0 CNI_PATH="$BIN" \
    "$BIN/vxlan" <"$LAB/n$node/net.json"; then
    ip netns del "flab-$name"
    echo >&2
    echo "ADD of pod $name on node $node failed (see above); its namespace is removed" >&2
    exit 1
  fi
  echo
}

pod_ip() {
  ip -n "flab-$1" -4 -o addr show dev eth0 | awk '{sub("/.*", "", $4); print $4}'
}

status() {
  ip netns exec "$NS_UL" etcdctl --endpoints "$ETCD" get --prefix /ferrocni/network/ || true
  for ns in $(ip netns list | awk '/^flab-n/ {print $1}'); do
    echo "== $ns"; ip -n "$ns" route show dev "$TUNNEL" 2>/dev/null || true
  done
}

down() {
  for pidfile in "$LAB"/n*/agent.pid "$LAB/etcd.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.3
  for ns in $(ip netns list | awk '/^flab-/ {print $1}'); do ip netns del "$ns"; done
  ip route del unreachable "$UNDERLAY.0/24" 2>/dev/null || true
  rm -rf "$LAB"
  echo "lab down"
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  pod) pod "$2" "$3" ;;
  ip) pod_ip "$2" ;;
  check) check "$2" ;;
  exec) name=$2; shift 2; ip netns exec "flab-$name" "$@" ;;
  status) status ;;
  down) down ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
