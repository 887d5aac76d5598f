"""zkCli.sh (Apache ZooKeeper 3.8's command-line client, Debian) gives the same output on Apache ZooKeeper and Kiln.

One zkCli session runs data/zkcli_script.txt (create -e/-s/-c/-t, get -s, set -v, stat, ls -R, deleteall,
getAcl/setAcl, addauth, addWatch, getEphemerals, getAllChildrenNumber, whoami, error cases) against each
server. Outputs are compared after normalising what legitimately differs:
  * zxids (cZxid/mZxid/pZxid) are made relative to the smallest zxid printed;
  * ctime/mtime become TIME, non-zero session ids in ephemeralOwner become SESSION;
  * watch notifications are printed by zkCli's event thread at arbitrary points of stdout, so they are
    taken out and compared as a multiset (their order inside deleteall follows the server's child order);
  * the client-side `state:Closed` event is dropped: zkCli's event thread is a daemon that races the JVM's
    exit after `quit`, so whether it gets printed depends on client timing, not on the server;
  * items of bracketed lists are sorted (getEphemerals' order is the server's hash order).
"""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"


def run_zkcli(server) -> subprocess.CompletedProcess:
    script = (HERE / "data" / "zkcli_script.txt").read_text()
    return subprocess.run([ZKCLI, "-server", server.hosts], input=script, capture_output=True, text=True,
                          timeout=120)


def normalise(proc: subprocess.CompletedProcess) -> tuple[list[str], list[str], list[str]]:
    out_lines, events = [], []
    for line in proc.stdout.splitlines():
        if line.startswith("WatchedEvent "):
            if not line.startswith("WatchedEvent state:Closed "):
                events.append(line)
            continue
        if line in ("WATCHER::", "") or line.startswith("Connecting to "):
            continue
        out_lines.append(line)
    zxids = [int(m.group(1), 16) for m in re.finditer(r"^[cmp]Zxid = 0x([0-9a-f]+)$", proc.stdout, re.M)]
    base = min(zxids) if zxids else 0

    def norm(line: str) -> str:
        m = re.match(r"^([cmp]Zxid) = 0x([0-9a-f]+)$", line)
        if m:
            return f"{m.group(1)} = +{int(m.group(2), 16) - base}"
        if re.match(r"^[cm]time = ", line):
            return line.split("=")[0] + "= TIME"
        m = re.match(r"^ephemeralOwner = 0x([0-9a-f]+)$", line)
        if m and int(m.group(1), 16) != 0:
            return "ephemeralOwner = SESSION"
        m = re.match(r"^\[(.*)\]$", line)
        if m:
            return "[" + ", ".join(sorted(x.strip() for x in m.group(1).split(","))) + "]"
        return line

    err_lines = [l for l in proc.stderr.splitlines() if not l.startswith("SLF4J:")]
    return [norm(l) for l in out_lines], sorted(events), err_lines


@pytest.fixture(scope="module")
def apache_output():
    from zk_harness import ZkServer
    srv = ZkServer("apache")
    try:
        srv.start()
        return normalise(run_zkcli(srv))
    finally:
        srv.destroy()


def test_zkcli_same_output_as_apache(apache_output, zk_server_factory):
    ref_out, ref_events, ref_err = apache_output
    # The reference itself must have exercised the script (guards against an empty comparison).
    assert any(l.startswith("cZxid") for l in ref_out) and len(ref_err) > 20 and len(ref_events) > 10
    srv = zk_server_factory("kiln").start()
    got_out, got_events, got_err = normalise(run_zkcli(srv))
    problems = []
    for what, ref, got in (("stdout", ref_out, got_out), ("stderr", ref_err, got_err),
                           ("watch events", ref_events, got_events)):
        if ref != got:
            diff = difflib.unified_diff(ref, got, "apache-zookeeper-3.8", "kiln", lineterm="", n=1)
            problems.append(f"--- {what} differs:\n" + "\n".join(list(diff)[:80]))
    assert not problems, "\n".join(problems)
