#!/usr/bin/env bash
# Full engine benchmark: measures the device with fio, then runs the engine report and prints our
# figures as ratios of the device limits.
#
#   bash bench/device.sh            # device + engine report (about 2-3 minutes)
#   BENCH_DIR=/mnt/data bash bench/device.sh   # measure another device
#
# Steps:
#   1. fio: sequential O_DIRECT write, 1 MiB blocks (device bandwidth);
#   2. fio: 4 KiB writes each followed by fdatasync (durable-write latency);
#   3. `cargo bench -p kiln-engine --bench engine` with KILN_BENCH_REPORT=1: appends (pipelined
#      64 KiB first, next to the fio figure it is compared with), group commit
#      and reads on the same directory, with ratios to (1) and (2).
# The device figures are written to target/device.json.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BENCH_DIR="${BENCH_DIR:-$ROOT/target/bench-data}"
SIZE="${FIO_SIZE:-1G}"
RUNTIME="${FIO_RUNTIME:-15}"
mkdir -p "$BENCH_DIR" target
command -v fio >/dev/null || { echo "fio is required (apt-get install fio)" >&2; exit 2; }

echo "== device: $(df -h "$BENCH_DIR" | awk 'NR==2 {print $1, $2, "mounted on", $6}')"
fio --name=seqwrite --directory="$BENCH_DIR" --rw=write --bs=1M --size="$SIZE" --direct=1 \
    --ioengine=libaio --iodepth=16 --runtime="$RUNTIME" --time_based=0 --end_fsync=1 \
    --output-format=json --output=target/fio-seqwrite.json >/dev/null
fio --name=fsyncwrite --directory="$BENCH_DIR" --rw=write --bs=4k --size=64M --fdatasync=1 \
    --ioengine=sync --runtime="$RUNTIME" --time_based=0 \
    --output-format=json --output=target/fio-fsync.json >/dev/null
rm -f "$BENCH_DIR"/seqwrite.* "$BENCH_DIR"/fsyncwrite.*

python3 - <<'PY'
import json
seq = json.load(open("target/fio-seqwrite.json"))["jobs"][0]["write"]
fs = json.load(open("target/fio-fsync.json"))["jobs"][0]
sync = fs.get("sync", {})
lat = sync.get("lat_ns", {}).get("percentile", {})
wlat = fs["write"].get("clat_ns", {}).get("percentile", {})
out = {
    "seq_write_bytes_per_s": seq["bw_bytes"],
    "fsync_write_p50_us": (lat.get("50.000000", 0) + wlat.get("50.000000", 0)) / 1000.0,
    "fsync_write_p99_us": (lat.get("99.000000", 0) + wlat.get("99.000000", 0)) / 1000.0,
    "fsync_write_iops": fs["write"]["iops"],
}
json.dump(out, open("target/device.json", "w"), indent=1)
print("fio: sequential O_DIRECT 1 MiB write %.1f MiB/s; 4 KiB write+fdatasync p50 %.0f us, p99 %.0f us, %.0f/s"
      % (out["seq_write_bytes_per_s"] / 2**20, out["fsync_write_p50_us"], out["fsync_write_p99_us"], out["fsync_write_iops"]))
PY

KILN_BENCH_REPORT=1 KILN_DEVICE_JSON="$ROOT/target/device.json" KILN_BENCH_DIR="$BENCH_DIR" \
    cargo bench -q -p kiln-engine --bench engine

# The device's speed drifts on a VM once a few GiB were written: measure it again after the
# report so the drift is visible next to the ratios (they use the first measurement).
fio --name=seqwrite --directory="$BENCH_DIR" --rw=write --bs=1M --size="$SIZE" --direct=1 \
    --ioengine=libaio --iodepth=16 --runtime="$RUNTIME" --time_based=0 --end_fsync=1 \
    --output-format=json --output=target/fio-seqwrite-after.json >/dev/null
rm -f "$BENCH_DIR"/seqwrite.*
python3 -c 'import json; print("fio again after the report: sequential O_DIRECT 1 MiB write %.1f MiB/s" % (json.load(open("target/fio-seqwrite-after.json"))["jobs"][0]["write"]["bw_bytes"] / 2**20))'
