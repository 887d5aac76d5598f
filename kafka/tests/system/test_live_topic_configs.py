"""Topic configs altered at run time apply without a restart: a smaller segment.bytes (1 MiB, the
least Kafka 4 accepts) rolls new segments on the next appends; a small retention.ms deletes the old segments at the next retention
check (the broker checks every second here)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from kiln_kafka_harness import wait_until

pytestmark = pytest.mark.timeout(180)


def _alter(a: AdminClient, topic: str, **configs: str) -> None:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
        for k, v in configs.items()])
    a.incremental_alter_configs([res])[res].result(30)


def _produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(start, start + n):
        p.produce(topic, value=b"y" * 15000 + str(i).encode(), partition=0)
        if i % 20 == 19:
            p.flush(30)
    assert p.flush(30) == 0


def _earliest(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lc-" + topic})
    try:
        lo, _hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return lo
    finally:
        c.close()


@pytest.fixture
def fast_retention_broker(broker_factory):
    return broker_factory({"log.retention.check.interval.ms": "1000"})


def test_segment_bytes_and_retention_ms_apply_live(fast_retention_broker, topic_name):
    b = fast_retention_broker
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)],
                    operation_timeout=30)[topic_name].result(30)
    wait_until(lambda: topic_name in a.list_topics(topic_name, timeout=5).topics, 30, what="topic")
    _produce(b.bootstrap, topic_name, 100)
    assert len(b.segment_files(topic_name, 0)) == 1

    # 1. segment.bytes: the next appends (6 MB) roll segments of 1 MiB.
    _alter(a, topic_name, segment_bytes=str(1 << 20))
    _produce(b.bootstrap, topic_name, 400, start=100)
    segments = b.segment_files(topic_name, 0)
    assert len(segments) >= 5, f"segment.bytes=1048576 did not roll segments live: {len(segments)} segments"
    assert _earliest(b.bootstrap, topic_name) == 0

    # 2. retention.ms: at the next retention check every segment but the active one goes.
    time.sleep(1.5)  # the records are now older than the retention
    _alter(a, topic_name, retention_ms="1000")
    wait_until(lambda: len(b.segment_files(topic_name, 0)) == 1, 30, interval=0.5,
               what="retention.ms=1000 to delete the old segments")
    start = _earliest(b.bootstrap, topic_name)
    assert 0 < start <= 500, start

    # A consumer from the beginning starts at the new log start and reads to the end.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "lc2-" + topic_name,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic_name, 0, -2)])
    offsets = []
    deadline = time.monotonic() + 30
    try:
        while len(offsets) < 500 - start and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                offsets.append(m.offset())
    finally:
        c.close()
    assert offsets == list(range(start, 500))
