"""librdkafka's own test suite (Debian's source package, built by kafka/tests/setup.sh into
.peers/librdkafka-*/tests/test-runner) against the broker, in quick mode without the mock-cluster
and sockem tests (`-Q -E -L`).

CI runs the fixed subset CI_TESTS below (one pytest test each). The full run is
  KILN_RDKAFKA_FULL=1 pytest kafka/tests/system/test_librdkafka.py
(or by hand: cd .peers/librdkafka-*/tests && LD_LIBRARY_PATH=../src:../src-cpp TEST_KAFKA_VERSION=3.9.0
 RDKAFKA_TEST_CONF=test.conf TESTS_SKIP=<SKIP below> ./test-runner -Q -E -L -p2), and its latest
result is in kafka/tests/system/RESULTS.md.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kiln_kafka_harness import PEERS

# Not runnable on one plaintext broker (Java helpers, several brokers, SSL, SASL), or transactions
# (not implemented by Kiln, not advertised).
SKIP = {
    "0016": "needs a Java helper (KAFKA_PATH) to check client.software.name",
    "0052": "creates topics with the Java kafka-topics helper (KAFKA_PATH)",
    "0077": "creates topics with the Java kafka-topics helper (KAFKA_PATH)",
    "0097": "SSL",
    "0098": "Java consumer helper and transactions",
    "0101": "fetch-from-follower needs 3 brokers",
    "0103": "transactions",
    "0107": "needs RF=3 / topic re-creation across brokers",
    "0109": "runs the Java kafka-topics helper (KAFKA_PATH)",
    "0113": "cooperative rebalance needs a Java helper",
    "0115": "SASL",
    "0119": "SASL",
    "0126": "OAUTHBEARER OIDC",
    "0135": "SASL credentials",
    "0129": "transactions (aborted messages)",
}
# The CI subset: every test here passes against Apache Kafka 4.1 (see RESULTS.md for the full run;
# 0014, 0055, 0081 and 0092 fail against Apache Kafka 4.1 too, with this 2.0.2 suite).
CI_TESTS = [
    "0001", "0002", "0003", "0005", "0007", "0008", "0011", "0012", "0013", "0015", "0017", "0018",
    "0019", "0020", "0021", "0022", "0026", "0029", "0030", "0031", "0033", "0034", "0035", "0036",
    "0038", "0040", "0041", "0044", "0048", "0050", "0051",
    "0054", "0056", "0057", "0059", "0060", "0061", "0063", "0064", "0065", "0067",
    "0069", "0070", "0073", "0083", "0084", "0085", "0086", "0090",
    "0093", "0099", "0102", "0112", "0114", "0118", "0122",
    "0123", "0125", "0130", "0132", "0137",
]
# Tests that fail by a bug of the 2.0.2 client itself, whatever the broker: expected failures (they
# still run, and pass when the timing allows).
CLIENT_BUGS = {
    "0015": "librdkafka 2.0.2's rd_kafka_seek_partitions() passes its remaining timeout in ms to "
            "rd_kafka_q_pop(), which takes microseconds (7000 ms waits 7 ms; fixed upstream after "
            "2.0.2, 'Fix timeout unit in rd_kafka_seek_partitions'): the 'with timeout' sub-test "
            "passes only if three seeks finish within 7 ms, which a loaded 2-core machine misses "
            "against Kiln and Apache Kafka alike",
}
FULL = os.environ.get("KILN_RDKAFKA_FULL") == "1"
# Tests whose two consumers subscribe together and must land in the same first generation: they
# run on their own broker with Kafka's default group.initial.rebalance.delay.ms (3000). With the
# shared broker's 0 ms the second consumer's JoinGroup may arrive after the first rebalance
# completed (a race Apache Kafka 4.1 loses too: 0118 failed 1 of 3 runs there with 0 ms).
INITIAL_DELAY_TESTS = {"0089", "0118"}


def _tests_dir() -> Path | None:
    found = sorted(glob.glob(str(PEERS / "librdkafka-*" / "tests" / "test-runner")))
    return Path(found[-1]).parent if found else None


TESTS_DIR = _tests_dir()


def _all_tests() -> list[str]:
    if TESTS_DIR is None:
        return CI_TESTS
    ids = sorted({m.group(1) for f in TESTS_DIR.glob("0[0-9][0-9][0-9]-*.c*")
                  if (m := re.match(r"(\d{4})-", f.name))})
    return [t for t in ids if t not in SKIP]


SELECTED = _all_tests() if FULL else CI_TESTS
pytestmark = [pytest.mark.timeout(3600 if FULL else 900),
              pytest.mark.skipif(TESTS_DIR is None, reason="librdkafka test-runner missing: run kafka/tests/setup.sh")]


def _run(bootstrap: str, tests: list[str], work: Path, timeout: float) -> dict[str, tuple[str, str]]:
    """Runs `tests` against `bootstrap`; returns {test name: (state, output tail)}."""
    conf = work / "test.conf"
    conf.write_text(f"metadata.broker.list={bootstrap}\ntest.timeout.multiplier=3\n"
                    "test.topic.random=true\n")
    report = work / "report.json"
    env = dict(os.environ, LD_LIBRARY_PATH=f"{TESTS_DIR.parent}/src:{TESTS_DIR.parent}/src-cpp",
               TEST_KAFKA_VERSION="3.9.0", RDKAFKA_TEST_CONF=str(conf), TEST_REPORT=str(report),
               TESTS=",".join(tests), TESTS_SKIP=",".join(SKIP))
    env.pop("CI", None)  # CI=… makes the runner use longer timeouts; the multiplier above is enough
    log = work / "run.log"
    with open(log, "w") as f:
        try:
            subprocess.run(["./test-runner", "-Q", "-E", "-L", "-p2"], cwd=TESTS_DIR, env=env, stdout=f,
                           stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))
    results: dict[str, tuple[str, str]] = {}
    if report.exists():
        try:
            data = json.loads(report.read_text(errors="replace"))
            for name, t in data.get("tests", {}).items():
                results[name] = (t.get("state", "?"), "")
        except json.JSONDecodeError:
            pass
    # Fall back on the summary table: `| 0001_multiobj | PASSED | ...`.
    for m in re.finditer(r"\|\s+(\d{4}_\S+)\s+\|\s+(\w+)\s+\|", text):
        results.setdefault(m.group(1), (m.group(2), ""))
    for name, (state, _) in list(results.items()):
        if state != "PASSED":
            lines = [ln for ln in text.splitlines() if name in ln and ("FAIL" in ln or "ERR" in ln.upper())]
            results[name] = (state, "\n".join(lines[-20:]))
    results["__log__"] = ("", text[-5000:])
    return results


@pytest.fixture(scope="session")
def rdkafka_results(broker, tmp_path_factory):
    """Runs the selected tests once; returns {test name: (state, output tail)}, e.g. "0001_multiobj"."""
    import tempfile

    import kiln_kafka_harness as h

    main = [t for t in SELECTED if t not in INITIAL_DELAY_TESTS]
    delayed = [t for t in SELECTED if t in INITIAL_DELAY_TESTS]
    results = _run(broker.bootstrap, main, tmp_path_factory.mktemp("rdkafka"), 3300 if FULL else 720)
    if delayed:
        d = tempfile.mkdtemp(prefix="kiln-kafka-test-")
        b = h.broker_class()(Path(d), {"group.initial.rebalance.delay.ms": "3000"})
        b.start()
        try:
            more = _run(b.bootstrap, delayed, tmp_path_factory.mktemp("rdkafka-delay"), 150)
        finally:
            b.close()
            shutil.rmtree(d, ignore_errors=True)
        log = results["__log__"][1] + more.pop("__log__")[1]
        # The runner reports every test it knows, the ones it did not run as SKIPPED: keep only ours.
        results.update({n: r for n, r in more.items() if n[:4] in delayed})
        results["__log__"] = ("", log[-5000:])
    return results


@pytest.mark.parametrize("num", [
    pytest.param(t, marks=pytest.mark.xfail(strict=False, reason=CLIENT_BUGS[t])) if t in CLIENT_BUGS else t
    for t in SELECTED
])
def test_librdkafka(rdkafka_results, num):
    mine = {n: r for n, r in rdkafka_results.items() if n.startswith(num + "_")}
    assert mine, f"librdkafka test {num} did not report:\n{rdkafka_results['__log__'][1]}"
    ran = {n: r for n, r in mine.items() if r[0] != "SKIPPED"}
    if not ran:
        pytest.skip(f"librdkafka skipped {', '.join(mine)} (local-only or sockem with -Q -E -L)")
    bad = {n: r for n, r in ran.items() if r[0] != "PASSED"}
    assert not bad, "\n".join(f"librdkafka {n}: {st}\n{out}" for n, (st, out) in bad.items())
