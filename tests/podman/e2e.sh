#!/usr/bin/env bash
# Podman (CNI network backend) end to end against a directory of CNI plugins: ours, or the
# reference in /usr/lib/cni, so a failure points at the plugins and not at the test.
#
#   tests/podman/e2e.sh PLUGIN_DIR
#
# Podman runs with its network namespace set to a sandbox "host" made here (its bridge,
# rules and sysctls land there, never on this machine's own network) and all of its state
# private to a temporary directory (config, storage, locks, runtime dirs). The image is a
# busybox rootfs imported from a tarball: no registry is reachable.
set -euo pipefail
plugins="$(cd "$1" && pwd)"
work="$(mktemp -d /tmp/ferrocni-podman.XXXXXX)"
host="fpod$$"
net="ferrotest"

podman_() {
  nsenter --net="/run/netns/$host" podman --root "$work/storage" --runroot "$work/run" \
    --tmpdir "$work/tmp" --cgroup-manager cgroupfs --events-backend file "$@"
}
cleanup() {
  podman_ rm -af -t 0 >/dev/null 2>&1 || true
  podman_ network rm -f "$net" >/dev/null 2>&1 || true
  ip netns del "$host" 2>/dev/null || true
  # Storage may hold mounts (vfs has none, but be safe) before the directory goes.
  umount -R "$work/storage" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "podman e2e ($plugins): FAIL: $*" >&2; exit 1; }

ip netns add "$host"
ip -n "$host" link set lo up
mkdir -p "$work"/{net.d,tmp,run,storage,rootfs/bin,rootfs/www,rootfs/tmp}
cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
lock_type = "file"
tmp_dir = "$work/tmp"
events_logger = "file"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$plugins"]
network_config_dir = "$work/net.d"
CONF
cat > "$work/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$work/storage"
runroot = "$work/run"
CONF
printf 'unqualified-search-registries = []\n' > "$work/registries.conf"
export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$work/registries.conf"

cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for applet in sh httpd ping sleep cat ip wget; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo "hello from podman" > "$work/rootfs/www/index.html"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
podman_ import -q "$work/rootfs.tar" localhost/ferrobox:latest >/dev/null

podman_ network create --subnet 10.170.0.0/24 "$net" >/dev/null
conf="$work/net.d/$net.conflist"
[ -f "$conf" ] || fail "podman wrote no conflist"
# Podman writes the dnsname plugin into a network when the plugin directory has it (and,
# for containers/dnsname, dnsmasq is installed): then containers resolve each other by name.
dns=no
grep -q '"dnsname"' "$conf" && dns=yes
if [ -x "$plugins/dnsname" ] && [ "$dns" = no ]; then
  fail "podman network create wrote no dnsname plugin though $plugins has one"
fi
# Keep the reservations private to this run too.
python3 - "$conf" "$work/ipam" "$work/dns" <<'PY'
import json, sys
path, store, dns = sys.argv[1], sys.argv[2], sys.argv[3]
conf = json.load(open(path))
conf["plugins"][0]["ipam"]["dataDir"] = store
for plugin in conf["plugins"]:
    if plugin["type"] == "dnsname":
        plugin["runtimeDir"] = dns  # ours; containers/dnsname ignores the key
json.dump(conf, open(path, "w"))
PY

podman_ run -d --name web --network "$net" --network-alias webalias -p 18080:80 localhost/ferrobox httpd -f -p 80 -h /www >/dev/null \
  || fail "podman run web"
podman_ run -d --name client --network "$net" localhost/ferrobox sleep 600 >/dev/null || fail "podman run client"
web_ip=$(podman_ inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" web)
[ -n "$web_ip" ] || fail "web has no address"
podman_ exec client ping -c 1 -W 2 "$web_ip" >/dev/null || fail "client cannot ping web ($web_ip)"
if [ "$dns" = yes ]; then
  for name in web web.dns.podman webalias; do
    podman_ exec client ping -c 1 -W 2 "$name" >/dev/null ||
      fail "client cannot ping $name by name ($(podman_ exec client cat /etc/resolv.conf | tr '\n' ' '))"
  done
  got=$(podman_ exec client wget -q -O - "http://webalias/" 2>/dev/null || true)
  [ "$got" = "hello from podman" ] || fail "http://webalias/ answered ${got:-nothing}"
fi
got=$(nsenter --net="/run/netns/$host" curl -s --max-time 5 "http://10.170.0.1:18080/" || true)
[ "$got" = "hello from podman" ] || fail "published port answered ${got:-nothing}"
got=$(nsenter --net="/run/netns/$host" curl -s --max-time 5 "http://127.0.0.1:18080/" || true)
[ "$got" = "hello from podman" ] || fail "published port on 127.0.0.1 answered ${got:-nothing}"

# A static address and MAC (Podman passes them as IP=/MAC= in CNI_ARGS) and a reload, which
# re-runs the chain with the same addresses.
podman_ run -d --name fixed --network "$net" --ip 10.170.0.50 --mac-address 0a:58:0a:aa:00:50 \
  localhost/ferrobox sleep 600 >/dev/null || fail "podman run --ip --mac-address"
fixed=$(podman_ exec fixed ip -o addr show dev eth0)
echo "$fixed" | grep -q "10.170.0.50/24" || fail "static IP not applied: $fixed"
podman_ exec fixed ip -o link show dev eth0 | grep -q "0a:58:0a:aa:00:50" || fail "static MAC not applied"
podman_ network reload fixed >/dev/null || fail "podman network reload"
podman_ exec fixed ip -o addr show dev eth0 | grep -q "10.170.0.50/24" || fail "address lost on reload"
podman_ exec client ping -c 1 -W 2 10.170.0.50 >/dev/null || fail "no connectivity after reload"

# A failed ADD (the address is taken): Podman then DELs the whole list without prevResult,
# and nothing of the failed container may stay.
if podman_ run -d --name clash --network "$net" --ip 10.170.0.50 localhost/ferrobox sleep 600 >/dev/null 2>&1; then
  fail "a second container got a taken address"
fi
podman_ rm -f -t 0 clash >/dev/null 2>&1 || true
veths=$(ip -n "$host" -o link show type veth | wc -l)
[ "$veths" -eq 3 ] || fail "a failed ADD left a veth ($veths, expected 3)"

podman_ rm -f -t 0 web client fixed >/dev/null || fail "podman rm"
veths=$(ip -n "$host" -o link show type veth | wc -l)
[ "$veths" -eq 0 ] || fail "$veths veth(s) left after podman rm"
reserved=$(find "$work/ipam" -name '10.170.*' 2>/dev/null | wc -l)
[ "$reserved" -eq 0 ] || fail "$reserved reservation(s) left after podman rm"
rules=$( (ip netns exec "$host" iptables-save -t nat; ip netns exec "$host" nft list ruleset) 2>/dev/null |
  grep -cE 'CNI-DN-|dport 18080|ferrotest/' || true)
[ "$rules" -eq 0 ] || fail "$rules port-mapping rule(s) left after podman rm"
servers=$(pgrep -fc "dnsmasq.*$net|ferrocni-dns --dir .*/$net\$" || true)
[ "$servers" -eq 0 ] || fail "$servers DNS server(s) of $net left after podman rm"
echo "podman e2e ($plugins, dnsname: $dns): ok"
