"""franz-go's kgo integration tests (github.com/twmb/franz-go/pkg/kgo, version pinned in
kafka/tests/peers/kgo/go.mod, compiled by kafka/tests/setup.sh into .peers/kgo.test) against the broker.

The binary runs once per session with KGO_SEEDS pointing at the broker and KGO_TEST_RF=1; each
integration test below is one pytest test, passing when kgo reports PASS. Not run: transactions
(TestTxnEtl), share groups (TestShareGroup*) and KIP-848 (Test848*, TestSignalSubscriptionChange848):
Kiln does not implement them yet and does not advertise them. The unit tests in the package do not
need a broker and are not run here.

Full run by hand (all tests, more records):
  KGO_SEEDS=127.0.0.1:PORT KGO_TEST_RF=1 KGO_TEST_RECORDS=100000 KGO_LOG_LEVEL=none \\
    .peers/kgo.test -test.v -test.count=1 -test.timeout 30m -test.skip 'Txn|Share|848'
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from kiln_kafka_harness import PEERS

KGO_TEST = PEERS / "kgo.test"
RECORDS = os.environ.get("KILN_KGO_RECORDS", "20000")
INTEGRATION = [
    "TestGroupETL", "TestGroupSimple", "TestClient_Produce", "TestClient_ProduceLargeMessages",
    "TestIssue769", "TestIssue831", "TestIssueProduceBrokerTooOldFailsRecords",
    "TestIssueProduceSyncManualPartitionNegativeDoesNotPanic", "TestIssue325", "TestIssue337", "TestIssue434",
    "TestIssue523", "TestIssue648", "TestIssue810", "TestIssue865", "TestIssue1034",
    "TestIssueFetchLargerThanBrokerMaxReadBytes", "TestConsumeTopicRetrieval", "TestConsumeTopicRetrieval_Many",
    "TestConsumeRegex", "TestDirectPartitionPurge", "TestAddRemovePartitions", "TestPauseIssue489",
    "TestPauseIssueOct2023", "TestPooling", "TestHookPollStart", "TestConsumeMaxDecompressBatchBytes",
    "TestPing", "TestUnknownGroupOffsetFetchPinned",
]
pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(not KGO_TEST.exists(), reason="kgo.test missing: run kafka/tests/setup.sh")]


@pytest.fixture(scope="session")
def kgo_results(broker, tmp_path_factory):
    """Runs the selected kgo tests once; returns {test name: (PASS|FAIL|SKIP, output)}."""
    log = tmp_path_factory.mktemp("kgo") / "kgo.log"
    env = dict(os.environ, KGO_SEEDS=broker.bootstrap, KGO_TEST_RF="1", KGO_TEST_RECORDS=RECORDS,
               KGO_LOG_LEVEL="none")
    run = "^(" + "|".join(INTEGRATION) + ")$"
    with open(log, "w") as f:
        try:
            subprocess.run([str(KGO_TEST), "-test.v", "-test.count=1", "-test.timeout=780s", "-test.run", run],
                           stdout=f, stderr=subprocess.STDOUT, env=env, timeout=840, cwd=str(log.parent))
        except subprocess.TimeoutExpired:
            pass
    text = log.read_text(errors="replace")
    results: dict[str, tuple[str, str]] = {}
    for m in re.finditer(r"^--- (PASS|FAIL|SKIP): (\S+) ", text, re.M):
        results.setdefault(m.group(2), (m.group(1), ""))
    # Parallel tests interleave: attribute each line to the test named by the last === RUN/CONT/NAME
    # marker, and keep each failing test's own lines.
    own: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)", line)
        if m:
            current = m.group(1).split("/")[0]
            continue
        if current is not None and line.startswith("    "):
            own.setdefault(current, []).append(line)
    for name, (status, _) in list(results.items()):
        results[name] = (status, "\n".join(own.get(name, []))[-4000:])
    results["__log__"] = ("", text[-6000:])
    return results


@pytest.mark.parametrize("name", INTEGRATION)
def test_kgo(kgo_results, name):
    status, out = kgo_results.get(name, ("MISSING", kgo_results["__log__"][1]))
    if status == "SKIP":
        pytest.skip(f"kgo skipped {name}: {out[-300:]}")
    assert status == "PASS", f"kgo {name}: {status}\n{out}"
