import os, time, ctypes, statistics, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
def run(mode, n=400, chunk=40_000, d="${WORK:-/tmp/zkexp}/fs"):
    os.makedirs(d, exist_ok=True)
    p = f"{d}/{mode}"
    if os.path.exists(p): os.unlink(p)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    total = n * chunk
    if mode == "keep_size":
        libc.fallocate(fd, 1, 0, total)   # FALLOC_FL_KEEP_SIZE
    elif mode == "zeroed":
        os.write(fd, b"\0" * total); os.fsync(fd); os.lseek(fd, 0, 0)
    elif mode == "fallocate":
        libc.fallocate(fd, 0, 0, total); os.fsync(fd)
    buf = b"x" * chunk
    lat = []
    for i in range(n):
        os.pwrite(fd, buf, i * chunk)
        t = time.perf_counter(); os.fdatasync(fd); lat.append((time.perf_counter() - t) * 1e6)
    os.close(fd); os.unlink(p)
    lat.sort()
    print(f"{mode:10s} fdatasync us: p50 {lat[n//2]:.0f} p90 {lat[int(n*0.9)]:.0f} mean {statistics.mean(lat):.0f}")
for m in sys.argv[1:] or ["append", "keep_size", "fallocate", "zeroed"]:
    run(m)
