#!/usr/bin/env bash
# Kiln's one test command (the README's second command; `.ci/run` calls it).
#
# Steps, in order:
#   1. set-up: Debian packages, a Python venv in ./.venv, peer jars in ./.peers
#      (tools/ci/setup.sh, then every `*/tests/setup.sh` an area provides);
#   2. cargo fmt --check, clippy with warnings denied;
#   3. cargo test for the whole workspace, then a 15 s run of every cargo-fuzz target
#      (tools/ci/fuzz.sh);
#   4. a release build of `kiln`, the deterministic simulator over 10,000 seeds of each server
#      (`kiln-sim all --seeds 10000`; the 100,000-seed soak is in sim/RESULTS.md), then the
#      benchmark smoke run (bench/smoke.sh);
#   5. system tests with real clients and reference servers (pytest over `*/tests/system`).
# It ends with one summary line, `N passed, N failed`, and exits non-zero on any failure.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export KILN_ROOT="$ROOT"
export KILN_BIN="$ROOT/target/release/kiln"
export PATH="$ROOT/.venv/bin:$PATH"
LOGDIR="$ROOT/target/test-logs"
mkdir -p "$LOGDIR"

passed=0
failed=0
failures=()

# stage NAME CMD... : runs a step, counts it as one check.
stage() {
  local name="$1"; shift
  local log="$LOGDIR/$name.log"
  local t0=$SECONDS
  echo "=== $name"
  if "$@" >"$log" 2>&1; then
    echo "    ok ($((SECONDS - t0)) s)"
    return 0
  else
    echo "    FAILED ($((SECONDS - t0)) s); last lines of $log:"
    tail -n 40 "$log" | sed 's/^/    | /'
    failures+=("$name")
    return 1
  fi
}
count_stage() { if stage "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi; }

# 1. Set-up.
count_stage setup bash tools/ci/setup.sh
for s in */tests/setup.sh; do
  [ -f "$s" ] || continue
  count_stage "setup-$(dirname "$(dirname "$s")")" bash "$s"
done

# 2. Lints.
count_stage fmt cargo fmt --all -- --check
count_stage clippy cargo clippy --workspace --all-targets -- -D warnings

# 3. Unit, property and crash tests. Counted per test from cargo's own result lines.
if stage cargo-test cargo test --workspace; then :; fi
read -r cp cf < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } } END { print p + 0, f + 0 }' "$LOGDIR/cargo-test.log")
if ! grep -q '^test result:' "$LOGDIR/cargo-test.log" || grep -q '^error' "$LOGDIR/cargo-test.log"; then cf=$((cf + 1)); failures+=("cargo-test (build)"); fi
echo "    cargo test: $cp passed, $cf failed"
passed=$((passed + cp)); failed=$((failed + cf))
count_stage fuzz bash tools/ci/fuzz.sh

# 4. Release build and benchmark smoke run.
count_stage build-release cargo build --release -p kiln
count_stage simulator cargo run --release -p kiln-sim -- all --seeds 10000
if [ -f bench/smoke.sh ]; then count_stage bench-smoke bash bench/smoke.sh; fi

# 5. System tests with real clients. Counted per test from pytest's junit report.
systemdirs=()
for d in */tests/system; do [ -d "$d" ] && systemdirs+=("$d"); done
if [ ${#systemdirs[@]} -gt 0 ]; then
  if stage system-tests python -m pytest -p no:cacheprovider --import-mode=importlib \
      -o junit_family=xunit2 --junitxml="$LOGDIR/system.xml" -rfEs "${systemdirs[@]}"; then :; fi
  read -r sp sf < <(python3 tools/ci/junit_counts.py "$LOGDIR/system.xml")
  grep -E '^(FAILED|ERROR|SKIPPED)' "$LOGDIR/system-tests.log" | sed 's/^/    /' | head -n 60
  echo "    system tests: $sp passed, $sf failed"
  passed=$((passed + sp)); failed=$((failed + sf))
fi

echo
if [ ${#failures[@]} -gt 0 ]; then echo "failed steps: ${failures[*]}"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
