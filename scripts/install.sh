#!/usr/bin/env bash
# Installs ferrocni on a Kubernetes node, as an install-cni DaemonSet container does:
# binaries into <root>/opt/cni/bin, replaced atomically (a running kubelet never execs a
# half-copied file), and a conflist for the node's pod CIDR into <root>/etc/cni/net.d.
#
#   install.sh --pod-cidr 10.244.1.0/24 [--root /host] [--from DIR] [--name k8s-pod-network]
#
# Without --pod-cidr (and POD_CIDR), inside a cluster, the node's spec.podCIDR is read from
# the API server with the pod's service account (NODE_NAME must be set).
set -euo pipefail

root="${ROOT:-}"
from="${FROM:-$(cd "$(dirname "$0")/.." && pwd)/dist/bin}"
pod_cidr="${POD_CIDR:-}"
name="${NETWORK_NAME:-k8s-pod-network}"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    --pod-cidr) pod_cidr="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$pod_cidr" ] && [ -n "${KUBERNETES_SERVICE_HOST:-}" ] && [ -n "${NODE_NAME:-}" ]; then
  sa=/var/run/secrets/kubernetes.io/serviceaccount
  pod_cidr=$(curl -sf --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
    "https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/api/v1/nodes/${NODE_NAME}" |
    grep -o '"podCIDR": *"[^"]*"' | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
fi
case "$pod_cidr" in
  */*) ;;
  *) echo "install.sh: need the node's pod CIDR (--pod-cidr, POD_CIDR, or spec.podCIDR)" >&2; exit 2 ;;
esac

bin_dir="$root/opt/cni/bin"
conf_dir="$root/etc/cni/net.d"
mkdir -p "$bin_dir" "$conf_dir"
for binary in bridge ptp macvlan host-device loopback portmap firewall tuning bandwidth host-local static dhcp; do
  [ -x "$from/$binary" ] || { echo "install.sh: $from/$binary missing (scripts/demo.sh builds them)" >&2; exit 1; }
  cp "$from/$binary" "$bin_dir/.$binary.tmp"
  chmod 0755 "$bin_dir/.$binary.tmp"
  mv -f "$bin_dir/.$binary.tmp" "$bin_dir/$binary"
done

conf="$conf_dir/10-ferrocni.conflist"
cat > "$conf.tmp" <<CONF
{
  "cniVersion": "1.0.0",
  "cniVersions": ["1.0.0", "1.1.0"],
  "name": "$name",
  "plugins": [
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
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}
CONF
mv -f "$conf.tmp" "$conf"
echo "installed ferrocni into $bin_dir and $conf (pod CIDR $pod_cidr)"
