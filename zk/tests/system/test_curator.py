"""Apache Curator 5.4 recipes (Debian jars) on Apache ZooKeeper 3.8 (reference) and on Kiln.

The checks live in zk/tests/java/curator/CuratorChecks.java (compiled by zk/tests/setup.sh):
  mutex   - InterProcessMutex shared by 6 sessions, 15 rounds each: never two holders, no lock node left;
  leader  - LeaderLatch with 4 participants: exactly one leader, all agree, fail-over on latch close and on
            session close;
  barrier - DistributedDoubleBarrier of 5: nobody enters before the 5th arrives, nobody leaves early;
  cache   - CuratorCache (persistent recursive watch): every single change is seen, in order, and a burst of
            writes converges to the server's tree.
"""

from __future__ import annotations

import subprocess

import pytest

from zk_harness import PEERS

pytestmark = pytest.mark.timeout(300)

CHECKS = ["mutex", "leader", "barrier", "cache"]


@pytest.mark.parametrize("kind", ["apache", "kiln"])
@pytest.mark.parametrize("check", CHECKS)
def test_curator_recipe(check, kind, zk_server_factory):
    cp = (PEERS / "curator.classpath").read_text().strip()
    srv = zk_server_factory(kind).start()
    proc = subprocess.run(["java", "-Xmx256m", "-cp", cp, "CuratorChecks", srv.hosts, check],
                          capture_output=True, text=True, timeout=240)
    print(proc.stdout)
    assert proc.returncode == 0 and f"RESULT ok {check}" in proc.stdout, (
        f"{check} on {kind}: rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
        f"server log:\n{srv.tail()}")
