#!/usr/bin/env python3
# usage: sampler.py PID PORT SECONDS -> per-second server CPU and requests (from mntr/srvr), then a summary
import socket, sys, time, statistics
pid, port, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split()
    return (int(f[11]) + int(f[12])) / 100.0
def received():
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"srvr"); data=b""
    while True:
        d = s.recv(65536)
        if not d: break
        data += d
    s.close()
    for line in data.decode().splitlines():
        if line.startswith("Received:"):
            return int(line.split(":")[1])
    return 0
end = time.time() + secs
c0, r0 = cpu(), received()
rows = []
while time.time() < end:
    time.sleep(1.0)
    c1, r1 = cpu(), received()
    dc, dr = c1 - c0, r1 - r0
    c0, r0 = c1, r1
    rows.append((dc, dr))
    if "-v" in sys.argv: print(f"cpu={dc:.2f} reqs={dr} us/op={dc*1e6/max(1,dr):.1f}", flush=True)
busy = [r for r in rows if r[1] > 2000]
if busy:
    per = [dc*1e6/dr for dc, dr in busy]
    print(f"steady: secs={len(busy)} med_reqs/s={statistics.median([r[1] for r in busy]):.0f} med_us/op={statistics.median(per):.1f} cpu_cores={statistics.median([r[0] for r in busy]):.2f}")
else:
    print("steady: none")
