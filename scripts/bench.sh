#!/usr/bin/env bash
# The benchmark suite: ferrocni against the reference plugins (and netavark) in one run,
# alternating per iteration, inside a sandbox namespace. Regenerates docs/benchmarks.md and
# its plots. `scripts/bench.sh --quick` runs fewer iterations (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
[ -x /usr/lib/podman/netavark ] || missing+=(netavark)
command -v gnuplot >/dev/null 2>&1 || missing+=(gnuplot-nox)
[ -x /usr/bin/time ] || missing+=(time)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
# The overlay's throughput, pod to pod.
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
# Name discovery: containers/dnsname with dnsmasq and aardvark-dns to compare our server
# with, dnsperf to load them.
[ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
[ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
# The userspace anchor of the WireGuard backend's throughput: a tunnel set up by hand.
command -v wireguard-go >/dev/null 2>&1 || missing+=(wireguard-go)
command -v wg >/dev/null 2>&1 || missing+=(wireguard-tools)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$(id -u)" -eq 0 ] || { echo "bench.sh needs root (network namespaces)" >&2; exit 1; }

# Ours as shipped (static musl plugins where possible, see scripts/build.sh).
built="$(scripts/build.sh | tail -n 1)"
cargo build --release --quiet -p ferrocni-tests --bin ferrocni-bench
FERROCNI_BIN_DIR="$built" exec target/release/ferrocni-bench --ours "$built" --reference /usr/lib/cni --out docs "$@"
