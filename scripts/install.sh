#!/usr/bin/env bash
# Installs ferrocni's binaries, each replaced atomically (a runtime or kubelet exec'ing one at
# that moment never sees a half-copied file), and a conflist for the node, as an install-cni
# DaemonSet container does. `install.sh --help` says how.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
usage() {
  cat <<'USAGE'
Usage: install.sh [OPTIONS]

Installs every ferrocni binary: the CNI plugins into the CNI bin dir, cnictl and
ferrocni-agent into a bin dir on PATH; then writes a conflist into <root>/etc/cni/net.d.

Options:
  --cni-bin-dir DIR  where the plugins go, the directory runtimes search (default /opt/cni/bin)
  --bin-dir DIR      where cnictl and ferrocni-agent go (default /usr/local/bin)
  --plugins-only     install the plugins and nothing else (the install-cni container: the
                     agent runs in a container of its own)
  --root DIR         install under DIR, e.g. a node's root mounted at /host (ROOT)
  --from DIR         where the built binaries are (FROM; default: bin/ beside this script in
                     a release tarball, else ./dist/bin, which scripts/demo.sh fills)
  --conflist KIND    the network written to <root>/etc/cni/net.d/10-ferrocni.conflist:
                       bridge  (default) bridge + host-local on the node's pod CIDR, portmap,
                               bandwidth; pod-to-pod across nodes needs routes to each
                               node's pod CIDR
                       vxlan   the overlay: the vxlan plugin on the subnet ferrocni-agent
                               leases for this node, portmap, bandwidth
                       none    no conflist
  --pod-cidr CIDR    the node's pod CIDR, for --conflist bridge (POD_CIDR; inside a cluster
                     without it, the node's spec.podCIDR is read from the API server with the
                     pod's service account and NODE_NAME)
  --name NAME        the network's name (NETWORK_NAME; default k8s-pod-network)
  --unit-dir DIR     also install the systemd units (cni-dhcp.socket, cni-dhcp.service,
                     ferrocni-agent.service) into <root>DIR, e.g. /etc/systemd/system, with
                     the paths above
  -h, --help         this text

The plugins need on the node: nft (nftables) or iptables for masquerading, port mappings
and the firewall plugin; tc (iproute2) for bandwidth; conntrack for portmap's UDP flows.
USAGE
}

root="${ROOT:-}"
from="${FROM:-}"
pod_cidr="${POD_CIDR:-}"
name="${NETWORK_NAME:-k8s-pod-network}"
cni_bin_dir=/opt/cni/bin
bin_dir=/usr/local/bin
plugins_only=no
conflist=bridge
unit_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --plugins-only) plugins_only=yes; shift; continue ;;
  esac
  [ $# -ge 2 ] || { echo "install.sh: $1 needs a value (see --help)" >&2; exit 2; }
  case "$1" in
    --root) root="$2" ;;
    --from) from="$2" ;;
    --cni-bin-dir) cni_bin_dir="$2" ;;
    --bin-dir) bin_dir="$2" ;;
    --conflist) conflist="$2" ;;
    --pod-cidr) pod_cidr="$2" ;;
    --name) name="$2" ;;
    --unit-dir) unit_dir="$2" ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done

# The list of binaries and the units: beside this script in a release tarball or the image,
# under packaging/ in the repository.
if [ -f "$here/binaries" ]; then
  share="$here"
  units="$here/systemd"
  [ -n "$from" ] || from="$here/bin"
else
  share="$here/../packaging"
  units="$here/../packaging/systemd"
  [ -n "$from" ] || from="$here/../dist/bin"
fi
mapfile -t plugins < <(awk '!/^#/ && ($2 == "plugin" || $2 == "server") { print $1 }' "$share/binaries")
mapfile -t tools < <(awk '!/^#/ && $2 == "tool" { print $1 }' "$share/binaries")

case "$conflist" in
  bridge)
    if [ -z "$pod_cidr" ] && [ -n "${KUBERNETES_SERVICE_HOST:-}" ] && [ -n "${NODE_NAME:-}" ]; then
      sa=/var/run/secrets/kubernetes.io/serviceaccount
      pod_cidr=$(curl -sf --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
        "https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/api/v1/nodes/${NODE_NAME}" |
        grep -o '"podCIDR": *"[^"]*"' | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
    fi
    case "$pod_cidr" in
      */*) ;;
      *) echo "install.sh: --conflist bridge needs the node's pod CIDR (--pod-cidr, POD_CIDR, or spec.podCIDR)" >&2; exit 2 ;;
    esac ;;
  vxlan|none) ;;
  *) echo "install.sh: --conflist $conflist: expected bridge, vxlan or none" >&2; exit 2 ;;
esac

# Copy to a temporary name, then rename over the old binary.
put() {
  local source="$1" dir="$2"
  [ -x "$source" ] || { echo "install.sh: $source missing (scripts/build.sh or scripts/demo.sh builds it)" >&2; exit 1; }
  local base
  base="$(basename "$source")"
  cp "$source" "$dir/.$base.tmp"
  chmod 0755 "$dir/.$base.tmp"
  mv -f "$dir/.$base.tmp" "$dir/$base"
}

mkdir -p "$root$cni_bin_dir"
for binary in "${plugins[@]}"; do put "$from/$binary" "$root$cni_bin_dir"; done
installed="${#plugins[@]} plugins into $root$cni_bin_dir"
if [ "$plugins_only" = no ]; then
  mkdir -p "$root$bin_dir"
  for binary in "${tools[@]}"; do put "$from/$binary" "$root$bin_dir"; done
  installed="$installed, ${tools[*]} into $root$bin_dir"
fi

if [ -n "$unit_dir" ]; then
  mkdir -p "$root$unit_dir"
  for unit in "$units"/*.service "$units"/*.socket; do
    sed -e "s|/opt/cni/bin/|$cni_bin_dir/|g" -e "s|/usr/local/bin/|$bin_dir/|g" "$unit" \
      >"$root$unit_dir/.$(basename "$unit").tmp"
    mv -f "$root$unit_dir/.$(basename "$unit").tmp" "$root$unit_dir/$(basename "$unit")"
  done
  installed="$installed, units into $root$unit_dir"
fi

conf_dir="$root/etc/cni/net.d"
conf="$conf_dir/10-ferrocni.conflist"
case "$conflist" in
  bridge) main=$(cat <<MAIN
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr"}]]
      }
    }
MAIN
) ;;
  vxlan) main=$(cat <<MAIN
    {
      "type": "vxlan",
      "ipMasq": true,
      "hairpinMode": true,
      "subnetFile": "/run/ferrocni/vxlan.json"
    }
MAIN
) ;;
esac
if [ "$conflist" != none ]; then
  mkdir -p "$conf_dir"
  cat > "$conf.tmp" <<CONF
{
  "cniVersion": "1.0.0",
  "cniVersions": ["1.0.0", "1.1.0"],
  "name": "$name",
  "plugins": [
$main,
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}
CONF
  mv -f "$conf.tmp" "$conf"
  installed="$installed, $conflist network $name into $conf"
fi
echo "install.sh: installed $installed"
