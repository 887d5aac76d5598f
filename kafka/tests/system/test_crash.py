"""Crash test: kill -9 the broker while an idempotent acks=all producer is loading it, restart it,
and check that every acknowledged record is there, at its acknowledged offset, in order, exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from kiln_kafka_harness import ROOT, wait_until

pytestmark = pytest.mark.timeout(300)
PRODUCER = ROOT / "kafka" / "tests" / "peers" / "scripts" / "acked_producer.py"
PARTITIONS = 4


def _acked(path: Path) -> list[tuple[int, int, int]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # the last line may be cut by the kill
            rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return rows


def _read_all(bootstrap: str, topic: str) -> dict[int, list[tuple[int, int]]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-check", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        got: dict[int, list[tuple[int, int]]] = defaultdict(list)
        done = {p for p, e in ends.items() if e == 0}
        deadline = time.monotonic() + 120
        while len(done) < PARTITIONS and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= ends[m.partition()]:
                        done.add(m.partition())
                    continue
                raise AssertionError(str(m.error()))
            got[m.partition()].append((m.offset(), int(m.value())))
        assert len(done) == PARTITIONS, f"did not reach the end of every partition: {ends}"
        return got
    finally:
        c.close()


@pytest.mark.parametrize("round_", [1, 2])
def test_kill9_during_acks_all_load(broker_factory, topic_name, tmp_path, round_):
    b = broker_factory()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic_name, PARTITIONS, 1)])[topic_name].result(30)
    acked_file = tmp_path / "acked.txt"
    prod = subprocess.Popen([sys.executable, str(PRODUCER), b.bootstrap, topic_name, str(acked_file), "2000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Let the load build up, then kill the broker mid-stream.
        wait_until(lambda: acked_file.exists() and len(_acked(acked_file)) >= 20000 * round_, 120,
                   interval=0.1, what="acknowledged records before the crash")
        b.kill9()
        time.sleep(1.0)
    finally:
        prod.kill()
        prod.wait(30)
    acked = _acked(acked_file)
    assert len(acked) >= 20000 * round_

    b.start()
    log = _read_all(b.bootstrap, topic_name)

    for p, recs in log.items():
        offs = [o for o, _v in recs]
        assert offs == list(range(len(offs))), f"partition {p}: offsets not contiguous from 0"
        vals = [v for _o, v in recs]
        assert vals == sorted(vals), f"partition {p}: values out of order"
        assert len(set(vals)) == len(vals), f"partition {p}: duplicated records"
    at = {(p, o): v for p, recs in log.items() for o, v in recs}
    lost = [(p, o, v) for p, o, v in acked if at.get((p, o)) != v]
    assert not lost, f"{len(lost)} acknowledged records lost or changed after kill -9, e.g. {lost[:5]}"
