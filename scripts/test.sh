#!/usr/bin/env bash
# The one test command. On a fresh Debian machine (as root) it installs what the tests use,
# then runs the gates (rustfmt, clippy -D warnings) and every test, unit and real-kernel.
# Tests that need root skip loudly when run as another user.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The reference plugins: the behaviour oracle of the differential tests.
[ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "== installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "!! not root: cannot install ${missing[*]}; the tests that need them will skip" >&2
  fi
fi

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== build (the black-box tests run these binaries)"
cargo build --workspace --quiet
echo "== tests"
# A hung test must fail CI, not stall it: the whole suite takes a few minutes.
timeout 1500 cargo test --workspace 2>&1 | tee target/test-output.txt
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' \
  target/test-output.txt
