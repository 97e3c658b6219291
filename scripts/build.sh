#!/usr/bin/env bash
# Builds the release binaries into one directory and prints its path (the last line).
#
# Plugins are linked statically against musl when rustup can provide that target. A plugin
# is a process of a few milliseconds: glibc's start-up (ld.so and libgcc_s probing the CPU
# with CPUID, which traps to the hypervisor in a VM, then relocations) cost 0.7 ms of every
# exec here, a third of a loopback ADD. Static binaries also run on any node, as the
# reference's Go binaries do. Where musl cannot be had, everything is built against glibc.
# cnictl and the agent are long-lived and stay on glibc either way. dhcp is static too: the
# same binary is the plugin (execed per ADD) and its daemon, which allocates little.
set -euo pipefail
cd "$(dirname "$0")/.."
plugins=(bridge ptp macvlan host-device loopback portmap firewall tuning bandwidth vxlan host-local static dhcp dnsname ferrocni-dns)
musl="$(uname -m)-unknown-linux-musl"

have_musl() {
  command -v rustup >/dev/null 2>&1 || return 1
  rustup target list --installed 2>/dev/null | grep -qx "$musl" && return 0
  echo "== adding the $musl target (static plugins)" >&2
  timeout 300 rustup target add "$musl" >/dev/null 2>&1
}

build_static() {
  cargo build --release --quiet -p cnictl -p ferrocni-agent &&
    cargo build --release --quiet --target "$musl" $(printf -- '-p %s ' "${plugins[@]}")
}

# A failed musl build (a linker that cannot do it) falls back too, rather than failing the demo.
if have_musl && build_static; then
  out=target/ship
  mkdir -p "$out"
  for binary in cnictl ferrocni-agent; do cp -f "target/release/$binary" "$out/"; done
  for binary in "${plugins[@]}"; do cp -f "target/$musl/release/$binary" "$out/"; done
else
  echo "== no static $musl build: plugins are built against glibc" >&2
  cargo build --release --quiet --workspace --bins
  out=target/release
fi
echo "$out"
