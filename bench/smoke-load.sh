#!/usr/bin/env bash
# Load-generator and benchmark-harness smoke run: the znode-tree micro-benchmarks once, then
# `kiln bench compare --smoke` (workloads of a few seconds) so the harness never rots. It fails
# on a broken harness (a load run, a tool-output parse or the report failing), never on a slow
# machine: no figure is compared with anything.
#
#   - ZooKeeper workloads: Kiln and Apache ZooKeeper 3.8 (Debian), Kiln's load generator, the
#     neutral C client program (bench/reference/zk-c on Debian's libzookeeper_st) for the
#     request/response workloads, and the Java ZooKeeper client program (bench/reference/zk-java,
#     compiled with javac against Debian's zookeeper.jar) for zk-mixed;
#   - Kafka workloads: Kiln with Kiln's load generator and rdkafka_performance, and Apache
#     Kafka 4.x (Maven Central, via bench/reference/fetch.sh) with Kiln's load generator,
#     rdkafka_performance and Kafka's own tools for produce and consume (e2e and fsync produce
#     on Kafka are left to the full run to keep CI short); the e2e workload's peak probe runs on
#     Kiln here (the run has no Apache Kafka). The neutral clients come from
#     bench/tests/setup.sh; the report's generator parity section is written from the
#     kafka-4 part (its figures mean nothing at these sizes).
# KILN_BENCH_SMOKE_REFERENCE=0 skips the Apache Kafka part (no Maven download).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
KILN_BIN="${KILN_BIN:-$TARGET/release/kiln}"
cargo bench -q -p kiln-bench --bench znode_tree -- --test
cargo build -q --release -p kiln-bench
BENCH_BIN="$TARGET/release/kiln-bench"
OUT="$(mktemp -d -t kiln-bench-smoke.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
compare() {
  "$BENCH_BIN" bench compare --smoke --root "$ROOT" --kiln-bin "$KILN_BIN" --load-bin "$BENCH_BIN" "$@"
}
compare zk-write zk-read zk-mixed zk-watch-fanout --servers kiln,zookeeper --out "$OUT/zk"
compare kafka-produce-100b-acks1 kafka-produce-1k-acks-all-fsync kafka-e2e-half-peak kafka-consume \
  --servers kiln --out "$OUT/kafka-kiln" --no-reference-tools
if [ "${KILN_BENCH_SMOKE_REFERENCE:-1}" != 0 ]; then
  compare kafka-produce-100b-acks1 kafka-consume --servers kafka-4 --out "$OUT/kafka-ref"
fi
for d in "$OUT"/*/; do
  test -s "$d/report.md" && test -s "$d/results.json"
done
echo "bench smoke: harness OK ($(ls "$OUT" | wc -l) reports)"
