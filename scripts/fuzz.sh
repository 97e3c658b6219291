#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of the config and result decoders for a bounded time:
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Why libFuzzer and built this way: coverage guidance reaches what a generator of random
# configs does not (each key, each range check, each version's layout), starting from real
# configs and results (fuzz/seeds). cargo-fuzz would need nightly Rust for its -Z flags;
# the instrumentation itself is stable (-C passes=sancov-module and LLVM's sancov options),
# so this script builds the same targets with the machine's one stable toolchain and nothing
# to install but the libfuzzer-sys crate. It does without AddressSanitizer (a -Z flag): the
# decoders are safe Rust, where a panic (overflow checks and debug assertions are on) is
# what there is to find. `cargo fuzz run config` uses the same targets where nightly exists.
#
# A finding is saved under fuzz/artifacts/TARGET/ and the script fails; replay one with
#   fuzz/target/$TRIPLE/release/TARGET fuzz/artifacts/TARGET/crash-...
# then copy it into fuzz/seeds/TARGET/ once fixed, so every `cargo test` replays it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the instrumentation out of build scripts and proc macros, which run on the
# host without libFuzzer's runtime. Not --locked: a dependency a library gains must not break
# this build before fuzz/Cargo.lock is refreshed (cargo adds it here as it would there).
RUSTFLAGS="-C passes=sancov-module \
  -C llvm-args=-sanitizer-coverage-level=4 \
  -C llvm-args=-sanitizer-coverage-inline-8bit-counters \
  -C llvm-args=-sanitizer-coverage-pc-table \
  -C llvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing" \
  cargo build --release --quiet --target "$triple" --bins

status=0
for target in config result; do
  # The corpus grows from the committed seeds in a scratch directory: CI starts from the
  # seeds every time, and nothing the fuzzer finds interesting is committed by accident.
  corpus="target/corpus/$target"
  mkdir -p "$corpus" "artifacts/$target"
  echo "== fuzz $target for ${seconds}s"
  if ! "target/$triple/release/$target" "$corpus" "seeds/$target" \
    -dict=json.dict -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 2>"target/$target.log"; then
    status=1
    echo "!! fuzz $target found a failure:"
    grep -v '^#' "target/$target.log" | tail -40
  else
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "target/$target.log" || true
  fi
done
exit "$status"
