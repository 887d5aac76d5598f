"""dataDir lock: a second Kiln process on the same dataDir (or dataLogDir) refuses to start, saying
which directory is in use; the lock goes away with the process that held it, even after kill -9."""

from __future__ import annotations

import subprocess

import pytest
from kazoo.client import KazooClient

from zk_harness import KILN_BIN, ZkServer, free_port

pytestmark = pytest.mark.timeout(120)


def start_second(first: ZkServer, **dirs: str) -> subprocess.CompletedProcess:
    """Runs `kiln zk` on another port with the given dirs; it must exit by itself."""
    cfg = first.workdir / "second.cfg"
    lines = {"tickTime": "2000", "clientPort": str(free_port()), "admin.enableServer": "false", **dirs}
    cfg.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return subprocess.run([KILN_BIN, "zk", "--config", str(cfg)], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL, cwd=first.workdir)


def test_second_process_on_the_same_data_dir_is_refused(zk_server_factory, tmp_path):
    first = zk_server_factory("kiln").start()
    data = str(first.datadir)

    same = start_second(first, dataDir=data)
    assert same.returncode != 0, same.stderr
    assert data in same.stderr and "in use" in same.stderr, same.stderr
    assert f"pid {first.proc.pid}" in same.stderr, same.stderr
    # It never claimed to serve: that line comes only once the data directory is open.
    assert "serving" not in same.stderr, same.stderr

    # Its own dataDir, but the first server's directory as dataLogDir.
    own = tmp_path / "own"
    shared_log = start_second(first, dataDir=str(own), dataLogDir=data)
    assert shared_log.returncode != 0, shared_log.stderr
    assert data in shared_log.stderr and "in use" in shared_log.stderr, shared_log.stderr
    assert "serving" not in shared_log.stderr, shared_log.stderr

    # The first server was not disturbed.
    zk = KazooClient(hosts=first.hosts, timeout=10.0)
    zk.start(timeout=10)
    zk.create("/still-here", b"x")
    zk.stop()
    zk.close()

    # kill -9 releases the lock: a new server on the same dataDir starts and has the data.
    first.kill9()
    again = ZkServer("kiln", workdir=first.workdir)
    try:
        again.start()
        zk = KazooClient(hosts=again.hosts, timeout=10.0)
        zk.start(timeout=10)
        assert zk.get("/still-here")[0] == b"x"
        zk.stop()
        zk.close()
    finally:
        again.stop()
