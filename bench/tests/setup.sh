#!/usr/bin/env bash
# Set-up for the benchmark harness's neutral fast clients (bench/src/neutral.rs). Idempotent;
# fast when already done. Installs into $KILN_ROOT/.peers/bench/:
#   - rdkafka_performance: librdkafka's benchmark tool, unmodified, compiled from Debian's
#     librdkafka source package (examples/rdkafka_performance.c) against Debian's packaged
#     library (librdkafka-dev). The source tree of kafka/tests/setup.sh is reused when present;
#     otherwise the source package is fetched here (its ./configure only writes config.h,
#     which the example's headers include);
#   - zkload: bench/reference/zk-c/zkload.c, a thin driver on Apache ZooKeeper's C client
#     library (Debian libzookeeper-st-dev: asynchronous API, the library's own event loop).
set -euo pipefail
ROOT="${KILN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"
cd "$ROOT"
OUT="$ROOT/.peers/bench"
mkdir -p "$OUT"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
. "$ROOT/tools/ci/deb-src.sh"

PKGS=(librdkafka-dev libzookeeper-st-dev build-essential dpkg-dev zlib1g-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# rdkafka_performance, rebuilt when missing or older than the packaged library.
lib="$(ls /usr/lib/*/librdkafka.so.1 2>/dev/null | head -n1 || true)"
if [ ! -x "$OUT/rdkafka_performance" ] || { [ -n "$lib" ] && [ "$lib" -nt "$OUT/rdkafka_performance" ]; }; then
  ver="$(dpkg-query -W -f='${source:Upstream-Version}' librdkafka-dev)"
  src=""
  for d in "$ROOT"/.peers/librdkafka-"$ver" "$OUT"/rdsrc/librdkafka-"$ver"; do
    if [ -f "$d/examples/rdkafka_performance.c" ] && [ -f "$d/config.h" ]; then src="$d"; break; fi
  done
  if [ -z "$src" ]; then
    if enable_deb_src; then $SUDO apt-get update -q; fi
    rm -rf "$OUT/rdsrc"; mkdir -p "$OUT/rdsrc"
    (cd "$OUT/rdsrc" && apt-get source -q "librdkafka=$(dpkg-query -W -f='${Version}' librdkafka-dev)" >/dev/null)
    src="$(ls -d "$OUT"/rdsrc/librdkafka-*/ | head -n1)"
    src="${src%/}"
    (cd "$src" && ./configure --disable-ssl --disable-gssapi --disable-zstd --disable-lz4-ext \
      --disable-curl >/dev/null)
  fi
  cc -O2 -I"$src/src" -o "$OUT/rdkafka_performance.new" "$src/examples/rdkafka_performance.c" \
    -lrdkafka -lz -lpthread -lm
  mv "$OUT/rdkafka_performance.new" "$OUT/rdkafka_performance"
fi

# The ZooKeeper C client program, rebuilt when its source changes.
ZSRC="$ROOT/bench/reference/zk-c/zkload.c"
if [ ! -x "$OUT/zkload" ] || [ "$ZSRC" -nt "$OUT/zkload" ]; then
  cc -O2 -Wall -o "$OUT/zkload.new" "$ZSRC" -lzookeeper_st -lm
  mv "$OUT/zkload.new" "$OUT/zkload"
fi
"$OUT/rdkafka_performance" -X list >/dev/null 2>&1 || { echo "rdkafka_performance does not run" >&2; exit 1; }
echo "bench set-up done: $OUT/rdkafka_performance, $OUT/zkload"
