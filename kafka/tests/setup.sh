#!/usr/bin/env bash
# Set-up for the Kafka system tests (kafka/tests/system). Idempotent; fast when already done.
#   - Python clients into $KILN_ROOT/.venv: confluent-kafka, kafka-python and its codec libraries;
#   - Apache Kafka 3.9 and 4.x jars from Maven Central into .peers/kafka-3.9/lib and .peers/kafka-4/lib
#     (dependency-only poms in kafka/tests/peers/);
#   - franz-go's kgo integration tests, compiled into .peers/kgo.test (module pinned in kafka/tests/peers/kgo);
#   - librdkafka's test suite, built from Debian's source package into .peers/librdkafka-*/tests/test-runner.
# kcat and Apache ZooKeeper come from tools/ci/setup.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/.peers"
mkdir -p "$PEERS"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
. "$ROOT/tools/ci/deb-src.sh"

# Python clients (pinned).
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check \
  confluent-kafka==2.16.1 kafka-python==3.0.12 python-snappy==0.7.3 lz4==4.4.5 zstandard==0.25.0

# Java and Maven for Apache Kafka's broker and tools.
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
fetch_jars() {  # fetch_jars POM_DIR DEST
  local pom="$1/pom.xml" dest="$2" stamp="$2/.pom.sha"
  local sum; sum="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
  rm -rf "$dest"; mkdir -p "$dest"
  (cd "$1" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$dest" -DincludeScope=runtime)
  echo "$sum" >"$stamp"
}
fetch_jars kafka/tests/peers/kafka-3.9 "$PEERS/kafka-3.9/lib"
fetch_jars kafka/tests/peers/kafka-4.x "$PEERS/kafka-4/lib"

# franz-go kgo integration tests, compiled once per go.sum.
KGO="$ROOT/kafka/tests/peers/kgo"
kgo_sum="$(cat "$KGO/go.mod" "$KGO/go.sum" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$PEERS/kgo.test" ] || [ "$(cat "$PEERS/kgo.test.sha" 2>/dev/null)" != "$kgo_sum" ]; then
  (cd "$KGO" && go mod download && go test -c -o "$PEERS/kgo.test" github.com/twmb/franz-go/pkg/kgo)
  echo "$kgo_sum" >"$PEERS/kgo.test.sha"
fi

# librdkafka's test suite from Debian's source package (the version Debian ships: 2.0.2 on bookworm).
if ! ls "$PEERS"/librdkafka-*/tests/test-runner >/dev/null 2>&1; then
  enable_deb_src || true
  $SUDO apt-get update -q
  bdeps=()
  for p in build-essential libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev dpkg-dev python3; do
    dpkg -s "$p" >/dev/null 2>&1 || bdeps+=("$p")
  done
  if [ ${#bdeps[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${bdeps[@]}"
  fi
  rm -rf "$PEERS/rdsrc"; mkdir -p "$PEERS/rdsrc"
  (cd "$PEERS/rdsrc" && apt-get source -q librdkafka)
  src="$(ls -d "$PEERS"/rdsrc/librdkafka-*/ | head -n1)"
  (cd "$src" && ./configure --disable-gssapi && make -j"$(nproc)" libs && make -j"$(nproc)" -C tests build)
  mv "$src" "$PEERS/"
fi
