#!/usr/bin/env bash
# Prepare a virtual machine's memory for benchmarks (run as root, before `kiln bench compare`).
#
# On a VM whose balloon device has free page reporting (Firecracker, QEMU with
# free-page-reporting), memory the guest frees goes back to the host, and the next first touch of
# each page faults on the host. Every buffered write allocates page-cache pages, so a server
# writing 200+ MB/s is limited by that rate: on the benchmark VM a first touch of reported memory
# ran at 216-457 MB/s, of memory that stayed backed at 1.2-1.6 GB/s, of touched memory at 20 GB/s
# (anonymous memory, 2 GiB memset); this script's own touch pass shows it too (its MiB/s).
# A long-running host's memory is full of page cache that is recycled, not returned; this script
# puts a fresh VM in that state for every server alike: it stops reporting (order above the
# buddy allocator's largest, 10) and touches the free memory once so the host backs it.
#
#   bash bench/vm-memory.sh            stop reporting, back the free memory
#   bash bench/vm-memory.sh --restore  report again (order 9, the kernel's default)
set -euo pipefail
case "${1:-}" in
    "" | --restore) ;;
    *)
        echo "vm-memory: unknown argument '$1' (usage: bash bench/vm-memory.sh [--restore])" >&2
        exit 2
        ;;
esac
P=/sys/module/page_reporting/parameters/page_reporting_order
if [ ! -e "$P" ]; then
    echo "vm-memory: no free page reporting on this kernel ($P): nothing to do"
    exit 0
fi
if [ ! -w "$P" ]; then
    echo "vm-memory: cannot write $P (run as root)" >&2
    exit 1
fi
if [ "${1:-}" = "--restore" ]; then
    echo "${KILN_PAGE_REPORTING_ORDER:-9}" > "$P"
    echo "vm-memory: free page reporting order $(cat "$P")"
    exit 0
fi
# The touch goes through a shared-memory file: no more than /dev/shm can hold.
shm_mb=$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
if [ -z "$shm_mb" ]; then
    echo "vm-memory: /dev/shm is not available to touch the free memory through" >&2
    exit 1
fi
echo 11 > "$P"
free_mb=$(( $(awk '/^MemFree:/ {print $2}' /proc/meminfo) / 1024 ))
touch_mb=$(( free_mb > 1024 ? free_mb - 1024 : 0 ))
touch_mb=$(( touch_mb < shm_mb - 64 ? touch_mb : shm_mb - 64 ))
touch_mb=$(( touch_mb > 0 ? touch_mb : 0 ))
shm=/dev/shm/kiln-vm-memory.$$
trap 'rm -f "$shm"' EXIT
start=$(date +%s.%N)
dd if=/dev/zero of="$shm" bs=1M count="$touch_mb" status=none
rm -f "$shm"
end=$(date +%s.%N)
echo "vm-memory: free page reporting off (order $(cat "$P")); touched ${touch_mb} MiB of ${free_mb} MiB free in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s"
