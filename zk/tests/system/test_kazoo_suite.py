"""kazoo's own test suite (PyPI kazoo 2.11, `pytest --pyargs kazoo.tests`) against Apache ZooKeeper 3.8 and Kiln.

kazoo's harness always launches `java -cp $ZOOKEEPER_CLASSPATH org.apache.zookeeper.server.quorum.QuorumPeerMain
zoo.cfg`. For Apache ZooKeeper that is Debian's jar; for Kiln it is the stand-in class in zk/tests/java/standin
(compiled by zk/tests/setup.sh into .peers/zk/standin), which starts `$KILN_BIN zk --config ...` with the same
client port, data dir and super digest. The suite runs unmodified; tests that need what a single plain server
does not offer are deselected by name (kazoo_deselect.txt, with reasons).

Rule: every test Apache ZooKeeper passes in this run must pass on Kiln, except the entries of
kazoo_known_failures.txt (each with its cause). Kiln's failures are re-run once on their own to rule out
timing flukes before they count. Known failures that now pass are printed.

Full command by hand (both servers, ~4 min each):  pytest zk/tests/system/test_kazoo_suite.py -s
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


from zk_harness import KILN_BIN, PEERS, read_list

pytestmark = pytest.mark.timeout(2400)

HERE = Path(__file__).resolve().parent
SUITE_TIMEOUT = 1500  # seconds per server run


def apache_version() -> str:
    """Debian's ZooKeeper package version without the Debian revision, e.g. 3.8.0."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "zookeeper"],
                         capture_output=True, text=True, check=True).stdout
    return out.split("-")[0].split("+")[0]


def kiln_version() -> str:
    """The ZooKeeper version Kiln reports in srvr/envi (ZK_VERSION in zk/src/fourlw.rs)."""
    src = (HERE.parents[1] / "src" / "fourlw.rs").read_text()
    m = re.search(r'ZK_VERSION: &str = "(\d+\.\d+\.\d+)', src)
    assert m, "ZK_VERSION not found in zk/src/fourlw.rs"
    return m.group(1)


def free_port_block(n: int = 5) -> int:
    """A base port such that base..base+n-1 are free (kazoo uses offset..offset+4 for one server)."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok and not (base <= 2181 < base + n):
            return base
    raise RuntimeError("no free port block")


def run_suite(kind: str, workdir: Path, select: list[str] | None = None) -> dict[str, str]:
    """Runs kazoo's suite; returns {test id: passed|failed|skipped}."""
    env = dict(os.environ)
    # CI=1 always, so the suite behaves the same on a laptop and in CI (kazoo turns on its build
    # checks, e.g. test_zookeeper_version, only when CI is set); ZOOKEEPER_VERSION is the version the
    # server under test reports.
    env.update({
        "CI": "1",
        "ZOOKEEPER_VERSION": apache_version() if kind == "apache" else kiln_version(),
        "ZOOKEEPER_CLUSTER_SIZE": "1",
        "ZOOKEEPER_PORT_OFFSET": str(free_port_block()),
    })
    env.pop("ZOOKEEPER_PATH", None)
    env.pop("ZOOKEEPER_CLASSPATH", None)
    if kind == "apache":
        env["ZOOKEEPER_PATH"] = "/usr/share/java"
    else:
        standin = PEERS / "standin"
        assert (standin / "org/apache/zookeeper/server/quorum/QuorumPeerMain.class").exists(), \
            "stand-in not built: run zk/tests/setup.sh"
        assert os.path.exists(KILN_BIN), f"{KILN_BIN} missing"
        env["ZOOKEEPER_CLASSPATH"] = str(standin)
        env["KILN_BIN"] = KILN_BIN
    tests = kazoo_tests_dir()
    xml = workdir / f"kazoo-{kind}.xml"
    log = workdir / f"kazoo-{kind}.log"
    # rootdir = kazoo's tests dir, so node ids read "test_client.py::TestClient::test_x".
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--timeout=180",
            "-o", "junit_family=xunit2", f"--junitxml={xml}", f"--rootdir={tests}"]
    if select:
        args += [str(tests / t) for t in select]
    else:
        args.append(str(tests))
        for d in read_list("kazoo_deselect.txt"):
            args += ["--deselect", d]
    with open(log, "wb") as out:
        subprocess.run(args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=SUITE_TIMEOUT)
    return parse_junit(xml)


def kazoo_tests_dir() -> Path:
    import kazoo.tests
    return Path(kazoo.tests.__file__).resolve().parent


def parse_junit(xml: Path) -> dict[str, str]:
    results: dict[str, str] = {}
    if not xml.exists():
        return results
    for tc in ET.parse(xml).iter("testcase"):
        cls = tc.get("classname", "")
        # classname is e.g. "kazoo.tests.test_client.TestClient" or "test_client.TestClient"
        parts = cls.split(".")
        while parts and not parts[0].startswith("test_"):
            parts = parts[1:]
        if not parts:
            continue
        tid = f"{parts[0]}.py::" + "::".join(parts[1:] + [tc.get("name", "")])
        outcome = "passed"
        for ch in tc:
            if ch.tag in ("failure", "error"):
                outcome = "failed"
            elif ch.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
        results[tid] = outcome
    return results


def is_deselected(tid: str, deselect: dict[str, str]) -> bool:
    return any(tid == d or tid.startswith(d + "::") or tid.startswith(d.rstrip(":") + "::") for d in deselect)


def kiln_serves() -> str | None:
    """None if `kiln zk` starts and answers; otherwise why not (so a broken build fails fast)."""
    from zk_harness import ZkServer
    srv = ZkServer("kiln")
    try:
        srv.start(timeout=20)
        return None
    except Exception as e:  # noqa: BLE001 - reported as the reason
        return str(e)
    finally:
        srv.destroy()


@pytest.fixture(scope="module")
def suite_results():
    """Runs the suite on both servers at once (it mostly waits on timers), then re-runs Kiln's failures."""
    workdir = Path(tempfile.mkdtemp(prefix="kazoo-suite-"))
    why_not = kiln_serves()
    with ThreadPoolExecutor(2) as pool:
        apache_f = pool.submit(run_suite, "apache", workdir)
        kiln_f = pool.submit(run_suite, "kiln", workdir) if why_not is None else None
        apache = apache_f.result()
        kiln = kiln_f.result() if kiln_f else {}
    rerun_ids = [t for t, o in kiln.items() if o == "failed" and apache.get(t) == "passed"]
    if rerun_ids:
        rerun_dir = workdir / "rerun"
        rerun_dir.mkdir()
        again = run_suite("kiln", rerun_dir, select=rerun_ids)
        for t, o in again.items():
            if o == "passed":
                kiln[t] = "passed (on re-run)"
    return {"apache": apache, "kiln": kiln, "workdir": workdir, "kiln_start_error": why_not}


def summary(results: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for o in results.values():
        counts[o.split(" ")[0]] = counts.get(o.split(" ")[0], 0) + 1
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def test_kazoo_suite_apache_baseline(suite_results):
    """The reference run itself is sane: Apache ZooKeeper passes what it passed before (kazoo_apache_baseline.txt),
    give or take a few timing-sensitive tests."""
    apache = suite_results["apache"]
    print(f"\nkazoo on Apache ZooKeeper 3.8: {summary(apache)} (logs in {suite_results['workdir']})")
    baseline = [l.strip() for l in (HERE / "kazoo_apache_baseline.txt").read_text().splitlines()
                if l.strip() and not l.startswith("#")]
    missing = [t for t in baseline if apache.get(t) != "passed"]
    if missing:
        print(f"{len(missing)} baseline tests did not pass on Apache ZooKeeper this time: {missing}")
    assert len(missing) <= 5, f"Apache ZooKeeper no longer passes {len(missing)} baseline tests: {missing[:30]}"


def test_kazoo_suite_kiln_matches_apache(suite_results):
    apache, kiln = suite_results["apache"], suite_results["kiln"]
    known = read_list("kazoo_known_failures.txt")
    deselect = read_list("kazoo_deselect.txt")
    assert suite_results["kiln_start_error"] is None, f"kiln zk does not start: {suite_results['kiln_start_error']}"
    print(f"\nkazoo on Kiln: {summary(kiln)} (logs in {suite_results['workdir']})")
    regressions, still_known, newly_passing = [], [], []
    for tid, o in sorted(apache.items()):
        if o != "passed" or is_deselected(tid, deselect):
            continue
        k = kiln.get(tid, "not run")
        if k.startswith("passed"):
            if tid in known:
                newly_passing.append(tid)
        elif tid in known:
            still_known.append(tid)
        else:
            regressions.append(f"{tid}: {k}")
    if newly_passing:
        print("known failures that now pass on Kiln (remove them from kazoo_known_failures.txt):")
        for t in newly_passing:
            print("   ", t)
    print(f"{len(still_known)} known failures still failing")
    assert not regressions, (f"{len(regressions)} kazoo tests pass on Apache ZooKeeper but not on Kiln "
                             f"(logs in {suite_results['workdir']}):\n" + "\n".join(regressions))
