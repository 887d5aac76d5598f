#!/usr/bin/env bash
# Set-up for the ZooKeeper system tests (zk/tests/system). Idempotent and quick when already done.
#   - Debian: Apache ZooKeeper 3.8 (installed by tools/ci/setup.sh) and Apache Curator 5.4 recipes;
#   - PyPI into $KILN_ROOT/.venv: kazoo and the extras its bundled test suite needs (pinned);
#   - javac: the QuorumPeerMain stand-in that lets kazoo's harness start Kiln, and the Curator checks,
#     compiled into $KILN_ROOT/.peers/zk/.
set -euo pipefail
ROOT="${KILN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"
cd "$ROOT"

PKGS=(zookeeper libcurator-recipes-java default-jdk-headless)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! command -v javac >/dev/null 2>&1; then missing+=(default-jdk-headless); fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  $SUDO systemctl disable --now zookeeper >/dev/null 2>&1 || true
  $SUDO service zookeeper stop >/dev/null 2>&1 || true
fi

# kazoo 2.11's harness builds test certificates with X509.add_extensions, which pyOpenSSL 24 removed.
PY_PINS=(kazoo==2.11.0 pyjks==20.0.0 objgraph==3.7.0 pyopenssl==23.3.0 cryptography==41.0.7)
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
need_pip=0
for pin in "${PY_PINS[@]}"; do
  name="${pin%%==*}"; ver="${pin##*==}"
  have="$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
  [ "$have" = "$ver" ] || need_pip=1
done
if [ "$need_pip" = 1 ]; then
  .venv/bin/pip install -q --disable-pip-version-check "${PY_PINS[@]}"
fi

# Java: compile only when a source is newer than its stamp.
OUT="$ROOT/.peers/zk"
SRC="$ROOT/zk/tests/java"
mkdir -p "$OUT"
build() { # build NAME CLASSPATH SOURCES...
  local name="$1" cp="$2"; shift 2
  local stamp="$OUT/$name.stamp"
  if [ -f "$stamp" ] && [ -z "$(find "$@" -newer "$stamp" 2>/dev/null)" ]; then return 0; fi
  rm -rf "${OUT:?}/$name"; mkdir -p "$OUT/$name"
  javac -nowarn -encoding UTF-8 -d "$OUT/$name" ${cp:+-cp "$cp"} "$@"
  touch "$stamp"
}
build standin "" "$SRC/standin/org/apache/zookeeper/server/quorum/QuorumPeerMain.java"
J=/usr/share/java
CURATOR_CP="$J/curator-framework.jar:$J/curator-client.jar:$J/curator-recipes.jar:$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/guava.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar"
build curator "$CURATOR_CP" "$SRC/curator/CuratorChecks.java"
echo "$OUT/curator:$CURATOR_CP" > "$OUT/curator.classpath"
echo "zk test set-up done"
