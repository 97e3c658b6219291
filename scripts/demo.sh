#!/usr/bin/env bash
# Builds the plugins (release), installs them into a directory (default: ./dist/bin, or the
# first argument), and asks each one which CNI versions it speaks, as a runtime does first.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-dist/bin}"

cargo build --release --workspace --bins --quiet
mkdir -p "$dest"
plugins=(bridge ptp loopback portmap firewall tuning bandwidth host-local static)
for plugin in "${plugins[@]}"; do
  # Copy then rename: a runtime exec'ing the old binary never sees a half-written file.
  install -m 0755 "target/release/$plugin" "$dest/.$plugin.new"
  mv -f "$dest/.$plugin.new" "$dest/$plugin"
done

echo "Installed into $dest:"
for plugin in "${plugins[@]}"; do
  printf '  %-12s %6s KiB  ' "$plugin" "$(( $(stat -c %s "$dest/$plugin") / 1024 ))"
  CNI_COMMAND=VERSION "$dest/$plugin" </dev/null
done
echo
echo "Point a runtime's CNI plugin path at $dest, or copy the binaries to /opt/cni/bin."
