#!/usr/bin/env bash
# Fetches the Apache Kafka reference servers and tools from Maven Central into
# $KILN_ROOT/.peers/bench/<name>/lib (idempotent; fast when already there).
# Usage: bench/reference/fetch.sh [kafka-4] [kafka-3.9]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${KILN_ROOT:-$(cd "$here/../.." && pwd)}"
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(kafka-4 kafka-3.9)
for name in "${names[@]}"; do
  pom="$here/$name/pom.xml"
  [ -f "$pom" ] || { echo "fetch.sh: no pom for $name" >&2; exit 2; }
  dest="$root/.peers/bench/$name"
  if [ -f "$dest/.complete" ] && [ "$dest/.complete" -nt "$pom" ]; then
    continue
  fi
  rm -rf "$dest/lib"
  mkdir -p "$dest/lib"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dest/lib" -DincludeScope=runtime
  touch "$dest/.complete"
  echo "fetch.sh: $name -> $dest/lib ($(ls "$dest/lib" | wc -l) jars)"
done
