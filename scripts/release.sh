#!/usr/bin/env bash
# Release artefacts, per architecture: a tarball and a Debian package, each with a .sha256
# and a .sha512 file (`sha256sum -c` reads them), in the reference plugins' manner.
#
#   scripts/release.sh [--out DIR] [--fast] [ARCH...]
#       builds with scripts/build.sh ARCH and packages each ARCH (x86_64, aarch64); default:
#       this machine's, and aarch64 as well where it can be cross-built here (its linker
#       installed: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
#   scripts/release.sh --from DIR --arch ARCH [--out DIR] [--fast]
#       packages binaries built already in DIR, without building (the tests package
#       target/debug this way)
#
# --out: where the artefacts go (default dist/release). --fast: gzip -1 throughout, for tests.
# XTASK: the command that writes completions and man pages into a directory (default
# `cargo xtask docs`; see xtask/src/main.rs).
#
# The tarball ferrocni-linux-<goarch>-v<version>.tgz (goarch as the reference names it:
# amd64, arm64) holds bin/ (every binary of packaging/binaries), install.sh and the list it
# reads, systemd/, completions/ (bash, zsh, fish) and man/.
#
# The package ferrocni_<version>_<debarch>.deb puts the plugins in /usr/lib/cni, where
# Debian's runtimes look, cnictl and the agent in /usr/bin, the units in /lib/systemd/system
# (not enabled), completions and man pages where bash, zsh, fish and man look. It coexists
# with Debian's containernetworking-plugins through dpkg diversions: every file of ours that
# package may also ship (a plugin of the same name, cni-dhcp.socket and .service) is diverted,
# the reference's copy kept beside it as <file>.containernetworking-plugins; the reference's
# other plugins (ipvlan, vlan, vrf, sbr) stay usable, and removing ferrocni brings the
# reference's files back. See README.md, "Release artefacts".
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist/release
from=
fast=no
arches=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    --arch) arches+=("$2"); shift 2 ;;
    --fast) fast=yes; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "release.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) arches+=("$1"); shift ;;
  esac
done
if [ -n "$from" ] && [ "${#arches[@]}" -ne 1 ]; then
  echo "release.sh: --from packages one architecture: give --arch" >&2; exit 2
fi
if [ "${#arches[@]}" -eq 0 ]; then
  arches=("$(uname -m)")
  if [ "$(uname -m)" != aarch64 ] && command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
    arches+=(aarch64)
  else
    echo "== not cross-building aarch64: no aarch64-linux-gnu-gcc" >&2
  fi
fi

version="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version/ { print $2; exit }' Cargo.toml)"
mapfile -t plugins < <(awk '!/^#/ && ($2 == "plugin" || $2 == "server") { print $1 }' packaging/binaries)
mapfile -t tools < <(awk '!/^#/ && $2 == "tool" { print $1 }' packaging/binaries)
gzip_level=-9
deb_compression=(-Zxz)
if [ "$fast" = yes ]; then gzip_level=-1; deb_compression=(-Zgzip -z1); fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Completions and man pages, the same for every architecture.
docs="$work/docs"
if [ -n "${XTASK:-}" ]; then $XTASK docs "$docs" >/dev/null; else "${CARGO:-cargo}" xtask docs "$docs" >/dev/null; fi

sums() {
  (cd "$out" && sha256sum "$1" >"$1.sha256" && sha512sum "$1" >"$1.sha512")
}

# The newest glibc symbol version the tools need, for the package's libc6 dependency (the
# plugins are static where musl was available; readelf reads any architecture's ELF).
glibc_needed() {
  local dir="$1" binary
  for binary in "${tools[@]}" "${plugins[@]}"; do
    readelf --version-info --wide "$dir/$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' || true
  done | sed 's/GLIBC_//' | sort -V | tail -n 1
}

tarball() {
  local bin="$1" goarch="$2" name="ferrocni-linux-$2-v$version"
  local stage="$work/$name"
  mkdir -p "$stage/bin" "$stage/systemd"
  for binary in "${tools[@]}" "${plugins[@]}"; do install -m 0755 "$bin/$binary" "$stage/bin/"; done
  install -m 0755 scripts/install.sh "$stage/install.sh"
  install -m 0644 packaging/binaries "$stage/binaries"
  install -m 0644 packaging/systemd/* "$stage/systemd/"
  cp -r "$docs/completions" "$docs/man" "$stage/"
  install -m 0644 README.md "$stage/"
  tar --sort=name --owner=0 --group=0 --numeric-owner -C "$work" -cf - "$name" |
    gzip "$gzip_level" -n >"$out/$name.tgz"
  sums "$name.tgz"
  echo "$out/$name.tgz"
}

deb() {
  local bin="$1" debarch="$2" stage="$work/deb-$2"
  local cni=/usr/lib/cni
  mkdir -p "$stage/DEBIAN" "$stage$cni" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/usr/share/man" "$stage/usr/share/doc/ferrocni" \
    "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d"
  for binary in "${plugins[@]}"; do install -m 0755 "$bin/$binary" "$stage$cni/"; done
  for binary in "${tools[@]}"; do install -m 0755 "$bin/$binary" "$stage/usr/bin/"; done
  for unit in packaging/systemd/*; do
    sed -e "s|/opt/cni/bin/|$cni/|g" -e "s|/usr/local/bin/|/usr/bin/|g" "$unit" \
      >"$stage/lib/systemd/system/$(basename "$unit")"
  done
  cp -r "$docs/man/." "$stage/usr/share/man/"
  find "$stage/usr/share/man" -type f -exec gzip -9n {} +
  cp "$docs/completions/bash/." -r "$stage/usr/share/bash-completion/completions/"
  cp "$docs/completions/zsh/." -r "$stage/usr/share/zsh/vendor-completions/"
  cp "$docs/completions/fish/." -r "$stage/usr/share/fish/vendor_completions.d/"
  cat >"$stage/usr/share/doc/ferrocni/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ferrocni

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
  chmod -R u=rwX,go=rX "$stage/usr/share" "$stage/lib"

  # Every file the reference package may also ship: each of our plugins' paths and its dhcp
  # units. Diverted before ours are unpacked, given back when ferrocni goes.
  local diverted=() binary
  for binary in "${plugins[@]}"; do diverted+=("$cni/$binary"); done
  diverted+=(/lib/systemd/system/cni-dhcp.socket /lib/systemd/system/cni-dhcp.service)
  cat >"$stage/DEBIAN/preinst" <<PREINST
#!/bin/sh
# Moves containernetworking-plugins' files of the same names aside (dpkg-divert honours
# DPKG_ROOT), so that neither package overwrites the other's; they are given back on removal.
set -e
if [ "\$1" = install ] || [ "\$1" = upgrade ]; then
  for file in ${diverted[*]}; do
    dpkg-divert --package ferrocni --add --rename --divert "\$file.containernetworking-plugins" "\$file" >/dev/null
  done
fi
PREINST
  cat >"$stage/DEBIAN/postrm" <<POSTRM
#!/bin/sh
# Gives containernetworking-plugins its files back.
set -e
if [ "\$1" = remove ] || [ "\$1" = abort-install ] || [ "\$1" = disappear ]; then
  for file in ${diverted[*]}; do
    dpkg-divert --package ferrocni --remove --rename --divert "\$file.containernetworking-plugins" "\$file" >/dev/null
  done
fi
POSTRM
  chmod 0755 "$stage/DEBIAN/preinst" "$stage/DEBIAN/postrm"

  local glibc depends=""
  glibc="$(glibc_needed "$bin")"
  [ -z "$glibc" ] || depends="Depends: libc6 (>= $glibc)"
  cat >"$stage/DEBIAN/control" <<CONTROL
Package: ferrocni
Version: $version
Architecture: $debarch
Maintainer: ferrocni developers <ferrocni@invalid>
Section: net
Priority: optional
$depends
Recommends: nftables | iptables, iproute2, conntrack
Provides: container-network-stack (= 1)
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Description: container networking (CNI) plugins, drop-in for the reference ones
 ferrocni's plugins have the reference plugins' names and read the same configs
 (bridge, ptp, macvlan, host-device, loopback, portmap, firewall, tuning,
 bandwidth, host-local, static, dhcp), plus vxlan and its node agent
 ferrocni-agent for a multi-host overlay, and cnictl to run networks by hand.
 .
 Where containernetworking-plugins is installed too, its files of the same
 names are diverted (kept as <file>.containernetworking-plugins) and its other
 plugins stay in /usr/lib/cni. The systemd units cni-dhcp.socket and
 ferrocni-agent.service are installed but not enabled.
CONTROL
  sed -i '/^$/d' "$stage/DEBIAN/control"
  (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
  local file="ferrocni_${version}_$debarch.deb"
  dpkg-deb --root-owner-group "${deb_compression[@]}" --build "$stage" "$out/$file" >/dev/null
  sums "$file"
  echo "$out/$file"
}

for arch in "${arches[@]}"; do
  case "$arch" in
    x86_64) goarch=amd64 ;;
    aarch64) goarch=arm64 ;;
    *) echo "release.sh: unknown architecture $arch (x86_64, aarch64)" >&2; exit 2 ;;
  esac
  if [ -n "$from" ]; then
    bin="$from"
  else
    echo "== building $arch" >&2
    bin="$(scripts/build.sh "$arch" | tail -n 1)"
  fi
  tarball "$bin" "$goarch"
  deb "$bin" "$goarch"
done
