"""ListOffsets by timestamp and MAX_TIMESTAMP (-3) through the time index, with confluent-kafka
(`offsets_for_times`, `AdminClient.list_offsets`) and kafka-python (`offsets_for_times`), over a
topic with many small segments so that lookups cross segment boundaries."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from kiln_kafka_harness import wait_until

pytestmark = pytest.mark.timeout(180)

N = 1200
STEP_MS = 1000
# Record 700 carries the largest timestamp (out of order on purpose).
PEAK = 700
PEAK_BONUS_MS = 2 * 3600 * 1000


def _setup(bootstrap: str, topic: str) -> tuple[int, list[int]]:
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                              config={"segment.bytes": str(1 << 20)})], operation_timeout=30)[topic].result(30)
    wait_until(lambda: topic in a.list_topics(topic, timeout=5).topics
               and a.list_topics(topic, timeout=5).topics[topic].error is None, 30, what="topic")
    base = int(time.time() * 1000) - 5 * 3600 * 1000
    stamps = [base + i * STEP_MS for i in range(N)]
    stamps[PEAK] += PEAK_BONUS_MS
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "compression.type": "none"})
    for i, ts in enumerate(stamps):
        p.produce(topic, value=(b"x" * 5000) + str(i).encode(), partition=0, timestamp=ts)
        if i % 10 == 9:
            p.flush(30)  # several batches per segment
    assert p.flush(30) == 0
    return base, stamps


def _expected(stamps: list[int], ts: int) -> int:
    """Kafka's answer: the first offset whose timestamp is at least ts, else -1."""
    return next((i for i, s in enumerate(stamps) if s >= ts), -1)


def test_offsets_for_times_cross_segments(broker, topic_name):
    base, stamps = _setup(broker.bootstrap, topic_name)
    segments = broker.segment_files(topic_name, 0)
    assert len(segments) >= 5, f"expected many segments, got {len(segments)}"
    queries = [base - 5, base, base + 1, base + 250 * STEP_MS, base + 250 * STEP_MS + 1,
               base + 699 * STEP_MS + 500, base + (N - 1) * STEP_MS, base + N * STEP_MS,
               base + 701 * STEP_MS, stamps[PEAK], stamps[PEAK] + 1]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "oft-" + topic_name})
    try:
        # One query per call: librdkafka keeps one entry per partition.
        got = [c.offsets_for_times([TopicPartition(topic_name, 0, q)], timeout=30)[0] for q in queries]
    finally:
        c.close()
    for q, tp in zip(queries, got):
        assert tp.error is None, tp
        assert tp.offset == _expected(stamps, q), f"timestamp {q - base:+} ms: got {tp.offset}"

    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        tp = KTP(topic_name, 0)
        for q in queries:
            r = kc.offsets_for_times({tp: q})[tp]
            want = _expected(stamps, q)
            if want < 0:
                assert r is None, (q - base, r)
            else:
                assert r is not None and r.offset == want and r.timestamp == stamps[want], (q - base, r, want)
    finally:
        kc.close()


def test_max_timestamp(broker, topic_name):
    _base, stamps = _setup(broker.bootstrap, topic_name)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic_name, 0)
    res = a.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=30)[tp].result()
    assert (res.offset, res.timestamp) == (PEAK, stamps[PEAK]), res
    res = a.list_offsets({tp: OffsetSpec.latest()}, request_timeout=30)[tp].result()
    assert res.offset == N, res
    res = a.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=30)[tp].result()
    assert res.offset == 0, res
