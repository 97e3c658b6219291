#!/usr/bin/env bash
# The one test command. On a fresh Debian machine (as root) it installs what the tests use,
# then runs the gates (rustfmt, clippy -D warnings) and every test, unit and real-kernel.
# A test that cannot run here (no root, a tool or the reference plugins missing) is counted
# as skipped, with its reason, never as passed (tests/src/skip.rs, scripts/test-tally.awk).
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
command -v sysctl >/dev/null 2>&1 || missing+=(procps)
# Fault injection: strace kills a plugin at a chosen system call.
command -v strace >/dev/null 2>&1 || missing+=(strace)
# A real runtime for the end-to-end test (crun refuses this machine's cgroup setup; runc works).
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
# The reference plugins: the behaviour oracle of the differential tests.
[ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
# Name discovery: containers/dnsname (Podman's CNI DNS plugin) with the dnsmasq it runs,
# the reference of the Podman test; dnsmasq is also the dnsname tests' upstream resolver.
[ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
# The overlay agent: etcd-client's build needs protoc and the well-known protos; the overlay
# tests run a real etcd.
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
# The TLS tests make a CA and certificates for etcd and the agents.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The WireGuard backend's tests: a capture of the underlay, and another implementation
# (wireguard-go, configured with wg) as a peer.
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
command -v wireguard-go >/dev/null 2>&1 || missing+=(wireguard-go)
command -v wg >/dev/null 2>&1 || missing+=(wireguard-tools)
# The fuzz step builds libFuzzer (C++).
command -v c++ >/dev/null 2>&1 || missing+=(g++)
# Packaging (tests/tests/packaging.rs): the units checked by systemd-analyze, the man pages
# by groff, the daemons started under their units' capability bounding set (setpriv), the
# Debian package built and installed into a scratch root (dpkg), its libc6 dependency read
# from the binaries (readelf); the schema check of the manifests needs python3's venv.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# The manifests' checks read the YAML with python3's yaml module.
python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "== installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "!! not root: cannot install ${missing[*]}; the tests that need them will skip" >&2
  fi
fi

# The manifests' schema check (tests/tests/kubernetes.rs): kubernetes-validate carries the
# Kubernetes API's schemas, so it needs no cluster (kubectl --dry-run=client asks a server
# for them; kubeconform downloads them). From PyPI into a venv of our own, bounded in time:
# where PyPI cannot be reached the check is a listed skip, not a stalled run.
venv="$PWD/target/tools/venv"
if ! command -v kubernetes-validate >/dev/null 2>&1 && [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "== installing kubernetes-validate (PyPI) into $venv"
  python3 -m venv "$venv" && timeout 300 "$venv/bin/pip" install -q --timeout 20 --retries 2 kubernetes-validate==1.37.0 ||
    echo "!! cannot install kubernetes-validate: the manifests' schema check will skip" >&2
fi
export PATH="$PATH:$venv/bin"

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== build (the black-box tests run these binaries)"
cargo build --workspace --quiet
echo "== tests"
# Where the harness records each test that cannot run (tests/src/skip.rs): absolute, as every
# test binary runs in its own package's directory. Steps of this script that cannot run
# record themselves there too (`skip`), so one list says everything that did not run.
skips="$PWD/target/test-skips"
mkdir -p target
: >"$skips"
export FERROCNI_TEST_SKIPS="$skips"
skip() { printf 'scripts/test.sh\t%s\t%s\n' "$1" "$2" >>"$skips"; }
# A hung test must fail CI, not stall it: the whole suite takes a few minutes. Every test
# binary runs even when one fails, so a failure never hides the others.
set +e
timeout 1500 cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
cargo_status=${PIPESTATUS[0]}
set -e

# Podman end to end, with the reference plugins first (so a failure there is the test's or
# the machine's) and then with ours; skipped, loudly, where Podman cannot run.
steps_passed=0
steps_failed=0
for plugins in /usr/lib/cni target/debug; do
  if [ "$(id -u)" -ne 0 ] || ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
    skip "podman e2e with $plugins" "needs root, podman and runc"
  elif [ ! -x "$plugins/bridge" ]; then
    skip "podman e2e with $plugins" "$plugins/bridge not installed"
  else
    echo "== podman e2e with $plugins"
    if timeout 300 tests/podman/e2e.sh "$plugins"; then
      steps_passed=$((steps_passed + 1))
    else
      steps_failed=$((steps_failed + 1))
    fi
  fi
done

# Coverage-guided fuzzing of the config and result decoders, 45 s per target; counted as
# one run that passes or fails, or is skipped where libFuzzer (C++) cannot be built.
if command -v c++ >/dev/null 2>&1; then
  echo "== fuzz"
  if timeout 900 scripts/fuzz.sh 45; then
    steps_passed=$((steps_passed + 1))
  else
    steps_failed=$((steps_failed + 1))
  fi
else
  skip "fuzz" "needs a C++ compiler (g++) to build libFuzzer"
fi

# One closing line with the totals over every test binary, the end-to-end runs and the
# fuzzing, after the list of what was skipped and why.
awk -v more_passed="$steps_passed" -v more_failed="$steps_failed" -f scripts/test-tally.awk \
  "$skips" target/test-output.txt | tee target/test-summary.txt
[ "$cargo_status" -eq 0 ] && [ "$steps_failed" -eq 0 ] && tail -n 1 target/test-summary.txt | grep -q ' 0 failed,'
