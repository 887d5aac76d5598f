#!/usr/bin/env bash
# A short, time-boxed run of every cargo-fuzz target (engine, zk, kafka codec): CI's check that the
# decoders still survive arbitrary input. Longer runs are documented in each fuzz/README.md.
#   FUZZ_SECONDS (default 15) per target.
# Needs the nightly toolchain (sanitizers) and cargo-fuzz; installs cargo-fuzz when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-15}"
# Without a nightly toolchain (and no way to install one here) the sanitizer builds cannot run:
# say so and skip rather than fail the whole test command on a machine's toolchain.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  if ! rustup toolchain install nightly --profile minimal; then
    echo "SKIPPED: no nightly toolchain and it could not be installed (cargo-fuzz needs nightly for sanitizers)"
    exit 0
  fi
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
status=0
for dir in engine zk kafka/codec; do
  [ -d "$ROOT/$dir/fuzz/fuzz_targets" ] || continue
  for f in "$ROOT/$dir"/fuzz/fuzz_targets/*.rs; do
    t="$(basename "$f" .rs)"
    echo "== $dir: $t (${SECONDS_PER_TARGET} s)"
    if ! (cd "$ROOT/$dir" && cargo +nightly fuzz run "$t" --target-dir "$ROOT/target/fuzz" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12); then
      echo "FAILED: $dir $t"
      status=1
    fi
  done
done
exit $status
