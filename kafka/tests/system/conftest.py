"""Fixtures for the Kafka system tests: a broker (Kiln by default, Apache Kafka on request) and
expected-failure marks read from known_failures_kiln.txt.

Target selection (environment):
  KILN_TEST_AGAINST=kiln        (default) `$KILN_BIN kafka --config <generated server.properties>`
  KILN_TEST_AGAINST=apache      Apache Kafka 4.x, single KRaft node, from $KILN_ROOT/.peers/kafka-4/lib
  KILN_TEST_AGAINST=apache-3.9  Apache Kafka 3.9 with Debian's Apache ZooKeeper
"""

from __future__ import annotations

import fnmatch
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# pytest's importlib mode imports this file as `kafka.tests.system.conftest` and registers the repo's
# `kafka/` directory as the module `kafka`, which hides kafka-python's package of the same name. Put
# kafka-python back under `kafka`; the `kafka.tests.system` entry pytest needs stays in sys.modules.
_stand_in = sys.modules.get("kafka")
if _stand_in is not None and getattr(_stand_in, "__file__", None) is None:
    del sys.modules["kafka"]
    import kafka as _kafka_python  # noqa: E402,F401

    if getattr(_kafka_python, "__file__", None) is None:
        raise ImportError("kafka-python is not installed (run kafka/tests/setup.sh)")

import kiln_kafka_harness as h  # noqa: E402

KNOWN_FAILURES = HERE / "known_failures_kiln.txt"


def _known_failures() -> list[tuple[str, str]]:
    """(pattern, reason) pairs: `pattern | reason` per line, `#` comments; patterns match
    `file.py::test_name[params]` with shell wildcards."""
    out = []
    if not KNOWN_FAILURES.exists():
        return out
    for line in KNOWN_FAILURES.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pat, _, reason = line.partition("|")
        out.append((pat.strip(), reason.strip() or "known failure"))
    return out


def pytest_configure(config):
    # kafka-python 3.0 loads its schemas with a deprecated importlib.resources call.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kafka.protocol.schemas.load_json")
    config.addinivalue_line("filterwarnings", "ignore:.*is deprecated. Use files:DeprecationWarning")


def pytest_report_header(config):
    return f"kafka system tests against: {h.TARGET}"


def pytest_collection_modifyitems(config, items):
    if h.TARGET != "kiln":
        return
    kf = _known_failures()
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        ident = f"{Path(str(item.fspath)).name}::{item.name}"
        for pat, reason in kf:
            if fnmatch.fnmatchcase(ident, pat):
                item.add_marker(pytest.mark.xfail(reason=reason, strict=False))
                break


@pytest.fixture(scope="session")
def kafka_target() -> str:
    return h.TARGET


class _Brokers:
    """Starts brokers (own data dir, own ports) and stops them all on close()."""

    def __init__(self):
        self.made: list[h.Broker] = []
        self.dirs: list[str] = []

    def make(self, extra: dict[str, str] | None = None, start: bool = True) -> h.Broker:
        d = tempfile.mkdtemp(prefix="kiln-kafka-test-")
        self.dirs.append(d)
        b = h.broker_class()(Path(d), extra)
        self.made.append(b)
        if start:
            b.start()
        return b

    def close(self) -> None:
        for b in self.made:
            try:
                b.close()
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker_factory():
    """Starts extra brokers for tests that restart or kill one; they stop when the test ends."""
    brokers = _Brokers()
    yield brokers.make
    brokers.close()


@pytest.fixture(scope="session")
def broker():
    """The shared broker for tests that do not restart it. Tests use unique topic names."""
    brokers = _Brokers()
    try:
        yield brokers.make()
    finally:
        brokers.close()


@pytest.fixture
def topic_name(request) -> str:
    import re
    import uuid

    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"
