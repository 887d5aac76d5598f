#!/usr/bin/env bash
# Shared set-up for the test command: Debian packages and the Python venv used by every system test.
# Idempotent; each area adds its own needs in `<area>/tests/setup.sh`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

# Debian packages every tier needs. Run apt only when something is missing.
PKGS=(python3-venv fio kcat zookeeper zookeeperd)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The Debian service must not hold port 2181 during tests.
  $SUDO systemctl disable --now zookeeper >/dev/null 2>&1 || true
  $SUDO service zookeeper stop >/dev/null 2>&1 || true
fi

# Python venv with the pinned test requirements.
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -r tools/ci/requirements.txt
