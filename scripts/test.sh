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
# Fault injection: strace kills a plugin at a chosen system call.
command -v strace >/dev/null 2>&1 || missing+=(strace)
# A real runtime for the end-to-end test (crun refuses this machine's cgroup setup; runc works).
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
# The reference plugins: the behaviour oracle of the differential tests.
[ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
# The overlay agent: etcd-client's build needs protoc and the well-known protos; the overlay
# tests run a real etcd.
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
# The fuzz step builds libFuzzer (C++).
command -v c++ >/dev/null 2>&1 || missing+=(g++)
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
# A hung test must fail CI, not stall it: the whole suite takes a few minutes. Every test
# binary runs even when one fails, so a failure never hides the others.
set +e
timeout 1500 cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
cargo_status=${PIPESTATUS[0]}
set -e

# Podman end to end, with the reference plugins first (so a failure there is the test's or
# the machine's) and then with ours; skipped, loudly, where Podman cannot run.
podman_passed=0
podman_failed=0
podman_skipped=0
if [ "$(id -u)" -eq 0 ] && command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1; then
  for plugins in /usr/lib/cni target/debug; do
    echo "== podman e2e with $plugins"
    if timeout 300 tests/podman/e2e.sh "$plugins"; then
      podman_passed=$((podman_passed + 1))
    else
      podman_failed=$((podman_failed + 1))
    fi
  done
else
  echo "!!!! SKIPPED podman e2e: needs root, podman and runc !!!!"
  podman_skipped=2
fi

# Coverage-guided fuzzing of the config and result decoders, 45 s per target; counted as
# one run that passes or fails.
echo "== fuzz"
fuzz_passed=0
fuzz_failed=0
if timeout 900 scripts/fuzz.sh 45; then
  fuzz_passed=1
else
  fuzz_failed=1
fi

# One closing line with the totals over every test binary, the end-to-end runs and the fuzzing.
awk -v pp="$((podman_passed + fuzz_passed))" -v pf="$((podman_failed + fuzz_failed))" -v ps="$podman_skipped" \
  '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p + pp, f + pf, i + ps }' \
  target/test-output.txt
[ "$cargo_status" -eq 0 ] && [ "$podman_failed" -eq 0 ] && [ "$fuzz_failed" -eq 0 ]
