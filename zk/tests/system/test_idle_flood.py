"""Idle connections cannot lock clients out.

300 TCP connections from five loopback addresses (60 each, within maxClientCnxns=60) that never send
a connect request, against a server allowed 256 open files. The reference server closes sessionless
connections after its timeout (10 s) and lets new clients in; so must Kiln, without flooding its log
with accept errors while it is out of descriptors.

Kiln only: the reference server lets the new client in too, but in runs of this test it left 128 to
142 of the 300 connections open after 60 s (and once refused the new client for 60 s), so it is
not a baseline for "every idle connection is closed".
"""

from __future__ import annotations

import resource
import sys
import time

import pytest
from kazoo.client import KazooClient

from zk_harness import ROOT

sys.path.insert(0, str(ROOT / "tools" / "tests" / "lib"))
from idlefd import closed_by_peer, open_idle  # noqa: E402

pytestmark = pytest.mark.timeout(150)

SOURCES = [f"127.0.0.{i}" for i in range(2, 7)]
PER_SOURCE = 60
NOFILE = 256


def test_idle_connections_are_closed_and_new_clients_get_in(zk_server_factory):
    kind = "kiln"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    srv = zk_server_factory(kind, extra={"maxClientCnxns": str(PER_SOURCE)}, nofile=NOFILE).start()
    log_before = len(srv.log.read_text(errors="replace").splitlines())
    socks = open_idle(srv.port, SOURCES, PER_SOURCE)
    t0 = time.monotonic()
    try:
        # A real client gets a session while the idle connections are (or were) there.
        zk = KazooClient(hosts=srv.hosts, timeout=10.0, connection_retry={"max_tries": -1, "delay": 0.5})
        zk.start(timeout=60)
        got_in = time.monotonic() - t0
        zk.create("/after-flood", b"ok")
        assert zk.get("/after-flood")[0] == b"ok"
        zk.stop()
        zk.close()

        # Every idle connection is closed by the server. The window is 90 s, not 10 s: a
        # connection that found the accept queue full while the server was out of descriptors is
        # only accepted when the kernel's SYN-ACK retransmission (1, 2, 4, 8, 16, 32 s apart)
        # lands after a slot frees, which on a loaded machine was seen as late as about 60 s.
        open_ = list(socks)
        deadline = t0 + 90
        while open_ and time.monotonic() < deadline:
            open_ = [s for s in open_ if not closed_by_peer(s)]
            time.sleep(0.5)
        all_closed = time.monotonic() - t0
        assert not open_, f"{len(open_)} of {len(socks)} idle connections still open after 90 s"
    finally:
        for s in socks:
            s.close()
    print(f"{kind}: new client in after {got_in:.1f} s; idle connections closed after {all_closed:.1f} s")
    lines = srv.log.read_text(errors="replace").splitlines()[log_before:]
    accept_errors = [l for l in lines if "Too many open files" in l]
    # The reference server logs about a dozen lines for such a flood; a line per failed accept
    # would be hundreds.
    assert len(accept_errors) <= 40, f"{len(accept_errors)} accept-error lines:\n" + "\n".join(accept_errors[:20])
