"""Consumer groups (classic protocol) with confluent-kafka and kafka-python: three members
rebalancing as they join and leave, and a group resuming from its committed offsets after the
broker restarts."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from kiln_kafka_harness import wait_until

pytestmark = pytest.mark.timeout(240)

PARTITIONS = 6


def _create(bootstrap, topic, partitions=PARTITIONS):
    from confluent_kafka.admin import AdminClient, NewTopic

    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    wait_until(lambda: len(a.list_topics(topic, timeout=5).topics[topic].partitions) == partitions, 30,
               what="partitions in metadata")


def _produce(bootstrap, topic, n, start=0):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, key=f"k{i % 13}".encode(), value=f"{i}".encode())
        p.poll(0)
    assert p.flush(60) == 0


class Member(threading.Thread):
    """A group member that polls in its own thread and records its current assignment."""

    def __init__(self, client, bootstrap, topic, group):
        super().__init__(daemon=True)
        self.client, self.bootstrap, self.topic, self.group = client, bootstrap, topic, group
        self.stop_flag = threading.Event()
        self.assignment: frozenset = frozenset()
        self.error: BaseException | None = None
        self.records: list[tuple[int, int, bytes]] = []

    def run(self):
        try:
            if self.client == "confluent":
                self._run_confluent()
            else:
                self._run_kafka_python()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def _run_confluent(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                      "heartbeat.interval.ms": 500, "partition.assignment.strategy": "range"})
        c.subscribe([self.topic])
        try:
            while not self.stop_flag.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    self.records.append((m.partition(), m.offset(), m.value()))
                elif m is not None and m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(str(m.error()))
                self.assignment = frozenset(tp.partition for tp in c.assignment())
        finally:
            c.close()  # LeaveGroup
            self.assignment = frozenset()

    def _run_kafka_python(self):
        from kafka import KafkaConsumer

        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                          auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)
        # kafka-python 3.0.12 bug: a leader that assigned before it had the topic's partitions
        # rejoins when they arrive (its metadata snapshot changed, `rejoin_needed` stays False);
        # if that JoinGroup + SyncGroup outlasts the poll() timeout, the finished join is never
        # collected once the new assignment makes the snapshots equal again: the member stays
        # "rebalancing" with heartbeats off and goes silent, whatever the broker. Fetching
        # the topic's partitions before subscribing keeps the first assignment complete.
        wait_until(lambda: c.partitions_for_topic(self.topic) == set(range(PARTITIONS)), 30,
                   what="kafka-python's metadata of the topic")
        c.subscribe([self.topic])
        try:
            while not self.stop_flag.is_set():
                for _tp, msgs in c.poll(timeout_ms=200).items():
                    self.records.extend((m.partition, m.offset, m.value) for m in msgs)
                self.assignment = frozenset(tp.partition for tp in c.assignment())
        finally:
            c.close()
            self.assignment = frozenset()

    def leave(self):
        self.stop_flag.set()
        self.join(30)


def _balanced(members, sizes):
    def check():
        for m in members:
            if m.error is not None:
                raise AssertionError(f"member failed: {m.error!r}")
        assigns = [m.assignment for m in members]
        union = frozenset().union(*assigns)
        if union != frozenset(range(PARTITIONS)) or sum(len(a) for a in assigns) != PARTITIONS:
            return False
        return sorted(len(a) for a in assigns) == sorted(sizes)
    return check


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_group_rebalances_on_join_and_leave(broker, topic_name, client):
    _create(broker.bootstrap, topic_name)
    _produce(broker.bootstrap, topic_name, 300)
    group = "grp-" + topic_name
    members = []
    try:
        for k, sizes in ((1, [6]), (2, [3, 3]), (3, [2, 2, 2])):
            m = Member(client, broker.bootstrap, topic_name, group)
            m.start()
            members.append(m)
            wait_until(_balanced(members, sizes), 60, what=f"{k} members sharing {PARTITIONS} partitions")
        # One leaves: the other two take over its partitions.
        members[2].leave()
        wait_until(_balanced(members[:2], [3, 3]), 60, what="2 members after a leave")
        members[1].leave()
        wait_until(_balanced(members[:1], [6]), 60, what="1 member after a second leave")
        # Every produced record was consumed by some member.
        seen = {v for m in members for (_p, _o, v) in m.records}
        wait_until(lambda: len({v for m in members for (_p, _o, v) in m.records}) == 300, 30,
                   what="all 300 records consumed")
        assert len(seen) <= 300
    finally:
        for m in members:
            m.leave()


def _consume_confluent(bootstrap, topic, group, n, timeout=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(int(m.value()))
            c.commit(message=m, asynchronous=False)
    finally:
        c.close()
    return got


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_group_resumes_from_committed_offsets_after_restart(broker_factory, topic_name, client):
    b = broker_factory()
    _create(b.bootstrap, topic_name, partitions=1)
    _produce(b.bootstrap, topic_name, 200)
    group = "resume-" + topic_name
    if client == "confluent":
        first = _consume_confluent(b.bootstrap, topic_name, group, 120)
    else:
        from kafka import KafkaConsumer

        c = KafkaConsumer(topic_name, bootstrap_servers=b.bootstrap, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, max_poll_records=10)
        first = []
        deadline = time.monotonic() + 60
        while len(first) < 120 and time.monotonic() < deadline:
            for _tp, msgs in c.poll(timeout_ms=500).items():
                for m in msgs:
                    if len(first) < 120:
                        first.append(int(m.value))
                        from kafka import OffsetAndMetadata
                        from kafka import TopicPartition as KTP
                        c.commit({KTP(topic_name, 0): OffsetAndMetadata(m.offset + 1, "kiln-meta", -1)})
        c.close()
    assert first == list(range(120))

    b.restart()

    # The committed offset (and its metadata) survived the restart.
    # (Right after a restart the coordinator may still be loading offsets: retry as clients do.)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    try:
        def fetch():
            try:
                return c.committed([TopicPartition(topic_name, 0)], timeout=10)
            except Exception as e:  # noqa: BLE001
                if e.args and e.args[0].code() in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                                                   KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT):
                    return None
                raise
        committed = wait_until(fetch, 60, interval=0.5, what="committed offsets after restart")
    finally:
        c.close()
    assert committed[0].offset == 120
    if client == "kafka-python":
        assert committed[0].metadata == "kiln-meta"

    _produce(b.bootstrap, topic_name, 50, start=200)
    rest = _consume_confluent(b.bootstrap, topic_name, group, 130)
    assert rest == list(range(120, 250))
