#!/usr/bin/env bash
# The README's first command: on a fresh Debian machine (as root) it installs what the demo
# uses, builds every binary (release, scripts/build.sh), installs them into a directory
# (default ./dist/bin, or the first argument) and runs `cnictl demo` from there. The demo
# works inside namespaces it makes itself and removes, so this machine's own network is
# never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-dist/bin}"

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
# Building the overlay agent (etcd-client) needs protoc and the well-known protos.
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
  echo "== installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== building (release)"
built="$(scripts/build.sh | tail -n 1)"
mkdir -p "$dest"
mapfile -t binaries < <(awk '!/^#/ && NF { print $1 }' packaging/binaries)
mapfile -t plugins < <(awk '!/^#/ && $2 == "plugin" { print $1 }' packaging/binaries)
for binary in "${binaries[@]}"; do
  # Copy then rename: a runtime exec'ing the old binary never sees a half-written file.
  install -m 0755 "$built/$binary" "$dest/.$binary.new"
  mv -f "$dest/.$binary.new" "$dest/$binary"
done
echo "== installed into $dest: ${binaries[*]}"
for plugin in "${plugins[@]}"; do
  printf '  %-11s %5s KiB  ' "$plugin" "$(( $(stat -c %s "$dest/$plugin") / 1024 ))"
  CNI_COMMAND=VERSION "$dest/$plugin" </dev/null
done

if [ "$(id -u)" -ne 0 ]; then
  echo "The demo creates network namespaces: run it as root ($dest/cnictl demo)." >&2
  exit 1
fi
exec "$dest/cnictl" demo
