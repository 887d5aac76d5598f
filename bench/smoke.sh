#!/usr/bin/env bash
# Benchmark smoke run (CI step 4): runs every engine benchmark once with tiny sizes, so a broken
# harness fails CI. It measures nothing; bench/device.sh does the real run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export KILN_BENCH_DIR="${KILN_BENCH_DIR:-$ROOT/target/bench-data}"
mkdir -p "$KILN_BENCH_DIR"
cargo bench -q -p kiln-engine --bench engine -- --test
bash "$ROOT/bench/smoke-load.sh"
