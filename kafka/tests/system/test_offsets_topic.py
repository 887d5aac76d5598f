"""`__consumer_offsets` with several partitions: `offsets.topic.num.partitions` sets the count, each
group's records go to partition `abs(groupId.hashCode()) % n` (Kafka's Utils.abs), Metadata shows
the topic as internal with that many partitions, and every partition is recovered on restart. A data
directory whose offsets topic has one partition keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kiln_kafka_harness import wait_until

pytestmark = pytest.mark.timeout(300)

OFFSETS = "__consumer_offsets"
GROUPS = 40
# Answers that mean "the coordinator is not ready yet": clients retry them (Apache Kafka answers
# NOT_COORDINATOR while it loads a new offsets partition).
RETRY = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
         KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT}


def _retriable(e: KafkaException) -> bool:
    err = e.args[0]
    return err.retriable() or err.code() in RETRY


def java_hash(s: str) -> int:
    """Java's String.hashCode() (UTF-16 code units, 32-bit wrap-around)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group: str, n: int) -> int:
    """Kafka's `Utils.abs(groupId.hashCode()) % n` (Utils.abs(MIN_VALUE) is 0)."""
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % n


def test_java_hash_matches_known_values():
    assert java_hash("my-group") == -1906497762
    assert partition_for("my-group", 50) == 12
    assert partition_for("polygenelubricants", 50) == 0


def _create(bootstrap: str, topic: str, partitions: int) -> None:
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    wait_until(lambda: len(a.list_topics(topic, timeout=5).topics[topic].partitions) == partitions, 30,
               what="partitions in metadata")


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        def attempt():
            try:
                c.commit(offsets=offsets, asynchronous=False)
                return True
            except KafkaException as e:  # the coordinator may still be starting
                if _retriable(e):
                    return False
                raise
        wait_until(attempt, 60, interval=0.5, what=f"commit of {group}")
    finally:
        c.close()


def _committed(bootstrap: str, group: str, parts: list[TopicPartition]) -> list[TopicPartition]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        def attempt():
            try:
                return c.committed(parts, timeout=10)
            except KafkaException as e:
                if _retriable(e):
                    return None
                raise
        return wait_until(attempt, 60, interval=0.5, what=f"committed offsets of {group}")
    finally:
        c.close()


def _offsets_metadata(bootstrap: str):
    """(partition count, is_internal) of __consumer_offsets as kafka-python's admin describes it."""
    from kafka import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [t] = a.describe_topics([OFFSETS])
        return t["error_code"], len(t["partitions"]), t["is_internal"]
    finally:
        a.close()


def _data_root(b) -> Path:
    kraft = b.log_dirs / "kraft"
    return kraft if kraft.is_dir() else b.log_dirs


def _offsets_dirs(b) -> set[int]:
    return {int(p.name.rsplit("-", 1)[1]) for p in _data_root(b).glob(f"{OFFSETS}-*") if p.is_dir()}


def _log_bytes(b, partition: int) -> int:
    return sum(f.stat().st_size for f in (_data_root(b) / f"{OFFSETS}-{partition}").glob("*.log"))


def test_offsets_of_many_groups_spread_over_partitions_and_survive_restart(broker_factory, topic_name):
    n = 7
    b = broker_factory({"offsets.topic.num.partitions": str(n), "offsets.topic.replication.factor": "1"})
    _create(b.bootstrap, topic_name, 3)
    groups = [f"og-{i}-{topic_name}" for i in range(GROUPS)]
    for i, g in enumerate(groups):
        _commit(b.bootstrap, g, [TopicPartition(topic_name, p, 1000 * i + p) for p in range(3)])

    # Metadata (confluent's list_topics and kafka-python's describe_topics) shows the real topic.
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    md = wait_until(lambda: a.list_topics(OFFSETS, timeout=10).topics.get(OFFSETS), 30, what="offsets topic")
    assert md.error is None and len(md.partitions) == n
    assert _offsets_metadata(b.bootstrap) == (0, n, True)

    # On disk: exactly n partition directories; every group's partition holds records.
    assert _offsets_dirs(b) == set(range(n))
    used = {partition_for(g, n) for g in groups}
    assert len(used) > 1, "40 groups land in more than one partition"
    for p in used:
        assert _log_bytes(b, p) > 0, f"partition {p} holds its groups' commits"

    b.restart()

    assert _offsets_dirs(b) == set(range(n))
    for i, g in enumerate(groups):
        got = _committed(b.bootstrap, g, [TopicPartition(topic_name, p) for p in range(3)])
        assert [t.offset for t in got] == [1000 * i + p for p in range(3)], g
    assert _offsets_metadata(b.bootstrap) == (0, n, True)


def test_default_is_fifty_partitions(broker_factory, topic_name):
    b = broker_factory({"offsets.topic.replication.factor": "1"})
    _create(b.bootstrap, topic_name, 1)
    _commit(b.bootstrap, "g-" + topic_name, [TopicPartition(topic_name, 0, 5)])
    assert _offsets_metadata(b.bootstrap) == (0, 50, True)
    assert _offsets_dirs(b) == set(range(50))


def test_partition_count_is_fixed_at_creation(broker_factory, topic_name, kafka_target):
    """Created with one partition (as Kiln's offsets log had before), the topic keeps one partition
    when the broker restarts with the default of 50."""
    b = broker_factory({"offsets.topic.num.partitions": "1", "offsets.topic.replication.factor": "1"})
    _create(b.bootstrap, topic_name, 2)
    groups = [f"one-{i}-{topic_name}" for i in range(5)]
    for i, g in enumerate(groups):
        _commit(b.bootstrap, g, [TopicPartition(topic_name, 1, 10 + i)])
    b.stop()
    b.extra.pop("offsets.topic.num.partitions")
    b.start()
    assert _offsets_dirs(b) == {0}
    assert _offsets_metadata(b.bootstrap) == (0, 1, True)
    for i, g in enumerate(groups):
        assert _committed(b.bootstrap, g, [TopicPartition(topic_name, 1)])[0].offset == 10 + i
    _commit(b.bootstrap, "after-" + topic_name, [TopicPartition(topic_name, 0, 3)])
    assert _committed(b.bootstrap, "after-" + topic_name, [TopicPartition(topic_name, 0)])[0].offset == 3
    assert _offsets_dirs(b) == {0}
