"""kcat (Debian's, librdkafka-based): metadata listing, producing and consuming."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (tools/ci/setup.sh)")]


def kcat(*args, input=None, timeout=60):
    cp = subprocess.run(["kcat", *args], capture_output=True, text=True, input=input, timeout=timeout)
    assert cp.returncode == 0, f"kcat {' '.join(args)} exited {cp.returncode}: {cp.stderr[-2000:]}"
    return cp.stdout


def test_kcat_metadata(broker, topic_name):
    # Producing to a new topic auto-creates it with num.partitions=4.
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, input="hello\n")
    md = json.loads(kcat("-b", broker.bootstrap, "-L", "-J", "-t", topic_name))
    assert [b["name"] for b in md["brokers"]] == [broker.bootstrap]
    (t,) = md["topics"]
    assert t["topic"] == topic_name and len(t["partitions"]) == 4
    out = kcat("-b", broker.bootstrap, "-L")
    assert f'topic "{topic_name}" with 4 partitions' in out


def test_kcat_produce_consume(broker, topic_name):
    lines = [f"key{i % 5}:value-{i}" for i in range(1000)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-K:", "-z", "snappy", input="\n".join(lines) + "\n")
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-o", "beginning", "-f", "%k:%s:%p:%o\n",
               timeout=90)
    rows = [r.split(":") for r in out.splitlines() if r]
    assert sorted(f"{k}:{v}" for k, v, _p, _o in rows) == sorted(lines)
    parts = {}
    for k, _v, p, _o in rows:
        parts.setdefault(k, set()).add(p)
    assert all(len(ps) == 1 for ps in parts.values()), parts
    # Offsets per partition run 0..n-1 without gaps.
    by_part = {}
    for _k, _v, p, o in rows:
        by_part.setdefault(p, []).append(int(o))
    for p, offs in by_part.items():
        assert offs == list(range(len(offs))), f"partition {p}: {offs[:10]}..."


def test_kcat_consume_from_offset_and_count(broker, topic_name):
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0", input="".join(f"m{i}\n" for i in range(50)))
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "20", "-c", "10", "-e")
    assert out.split() == [f"m{i}" for i in range(20, 30)]
    # Negative (relative to the end) offsets go through ListOffsets latest.
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "-5", "-e")
    assert out.split() == [f"m{i}" for i in range(45, 50)]
