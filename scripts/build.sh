#!/usr/bin/env bash
# Builds the release binaries (every one packaging/binaries lists) into one directory and
# prints its path (the last line).
#
#   scripts/build.sh [ARCH]    ARCH: x86_64 or aarch64; default this machine's. CARGO names
#                              the cargo to run (default cargo).
#
# Plugins are linked statically against musl when rustup can provide that target. A plugin
# is a process of a few milliseconds: glibc's start-up (ld.so and libgcc_s probing the CPU
# with CPUID, which traps to the hypervisor in a VM, then relocations) cost 0.7 ms of every
# exec here, a third of a loopback ADD. Static binaries also run on any node, as the
# reference's Go binaries do. Where musl cannot be had, everything is built against glibc.
# The tools (cnictl, the agent) are long-lived and stay on glibc either way. dhcp is static
# too: the same binary is the plugin (execed per ADD) and its daemon, which allocates little.
#
# Another architecture is cross-built: plugins for <arch>-unknown-linux-musl, tools for
# <arch>-unknown-linux-gnu, both linked by Debian's <arch>-linux-gnu-gcc (apt-get install
# gcc-aarch64-linux-gnu libc6-dev-arm64-cross), into target/ship-<arch>. There is no glibc
# fallback for it: without the musl target or the linker the build fails, saying which.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo="${CARGO:-cargo}"
native="$(uname -m)"
arch="${1:-$native}"
mapfile -t plugins < <(awk '!/^#/ && ($2 == "plugin" || $2 == "server") { print $1 }' packaging/binaries)
mapfile -t tools < <(awk '!/^#/ && $2 == "tool" { print $1 }' packaging/binaries)
packages() { printf -- '-p %s ' "$@"; }
musl="$arch-unknown-linux-musl"

have_target() {
  command -v rustup >/dev/null 2>&1 || return 1
  rustup target list --installed 2>/dev/null | grep -qx "$1" && return 0
  echo "== adding the $1 target" >&2
  timeout 300 rustup target add "$1" >/dev/null 2>&1
}

# Copies what cargo built into $out: tools from $1, plugins from $2.
collect() {
  mkdir -p "$out"
  for binary in "${tools[@]}"; do cp -f "$1/$binary" "$out/"; done
  for binary in "${plugins[@]}"; do cp -f "$2/$binary" "$out/"; done
}

if [ "$arch" != "$native" ]; then
  gnu="$arch-unknown-linux-gnu"
  linker="$arch-linux-gnu-gcc"
  command -v "$linker" >/dev/null 2>&1 ||
    { echo "build.sh: no $linker to link $arch binaries with (apt-get install gcc-$arch-linux-gnu)" >&2; exit 1; }
  have_target "$musl" && have_target "$gnu" ||
    { echo "build.sh: rustup cannot add $musl and $gnu" >&2; exit 1; }
  # cargo's variables for a target: its triple in capitals, '-' as '_'.
  for triple in "$musl" "$gnu"; do
    upper="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
    export "CARGO_TARGET_${upper}_LINKER=$linker" "CC_${triple//-/_}=$linker" "AR_${triple//-/_}=$arch-linux-gnu-ar"
  done
  "$cargo" build --release --quiet --target "$gnu" $(packages "${tools[@]}")
  "$cargo" build --release --quiet --target "$musl" $(packages "${plugins[@]}")
  out="target/ship-$arch"
  collect "target/$gnu/release" "target/$musl/release"
  echo "$out"
  exit 0
fi

build_static() {
  "$cargo" build --release --quiet $(packages "${tools[@]}") &&
    "$cargo" build --release --quiet --target "$musl" $(packages "${plugins[@]}")
}

# A failed musl build (a linker that cannot do it) falls back too, rather than failing the demo.
if have_target "$musl" && build_static; then
  out=target/ship
  collect target/release "target/$musl/release"
else
  echo "== no static $musl build: plugins are built against glibc" >&2
  "$cargo" build --release --quiet $(packages "${tools[@]}" "${plugins[@]}")
  out=target/release
fi
echo "$out"
