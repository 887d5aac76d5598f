"""confluent-kafka (librdkafka) and kafka-python against the broker: compression codecs, keyed
partitioning, the idempotent producer and the admin API."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

pytestmark = pytest.mark.timeout(180)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 500


def create_topic(bootstrap: str, topic: str, partitions: int = 4, config: dict | None = None) -> None:
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
                         operation_timeout=30)
    fs[topic].result(30)
    # Wait until metadata shows every partition with a leader.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = a.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} has no leaders after creation")


def ck_produce(bootstrap: str, topic: str, records, **conf) -> list:
    """Produces (key, value) pairs; returns the delivered messages' (partition, offset, key, value)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    delivered, errors = [], []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    for k, v in records:
        while True:
            try:
                p.produce(topic, key=k, value=v, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    assert left == 0, f"{left} messages not delivered"
    assert not errors, errors[:5]
    return delivered


def ck_consume(bootstrap: str, topic: str, n: int, timeout: float = 60, group: str | None = None, **conf) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"g-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consume error: {m.error()}")
            got.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return got


def kp_produce(bootstrap: str, topic: str, records, **conf) -> list:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **conf)
    futs = [(k, v, p.send(topic, key=k, value=v)) for k, v in records]
    p.flush(60)
    out = []
    for k, v, f in futs:
        md = f.get(timeout=60)
        out.append((md.partition, md.offset, k, v))
    p.close(10)
    return out


def kp_consume(bootstrap: str, topic: str, n: int, timeout: float = 60, **conf) -> list:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest",
                      enable_auto_commit=False, **conf)
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            for tp, msgs in c.poll(timeout_ms=500).items():
                got.extend((m.partition, m.offset, m.key, m.value) for m in msgs)
    finally:
        c.close()
    return got


def payloads(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    # Compressible, varied values so that every codec does real work.
    return [(f"k{i % 37}".encode(), (f"{tag}-{i:06d}-" + "abcdefgh" * (i % 50)).encode()) for i in range(n)]


def check_roundtrip(sent: list, got: list) -> None:
    assert len(got) == len(sent), f"consumed {len(got)} of {len(sent)}"
    assert sorted(got) == sorted(sent)
    by_part = defaultdict(list)
    for part, off, _k, _v in got:
        by_part[part].append(off)
    for part, offs in by_part.items():
        assert offs == sorted(offs), f"partition {part} out of order"
        assert len(set(offs)) == len(offs), f"partition {part} duplicated offsets"


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_produce_consume(broker, topic_name, codec):
    create_topic(broker.bootstrap, topic_name)
    sent = ck_produce(broker.bootstrap, topic_name, payloads(N, codec), **{"compression.type": codec})
    got = ck_consume(broker.bootstrap, topic_name, N)
    check_roundtrip(sent, got)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_produce_consume(broker, topic_name, codec):
    create_topic(broker.bootstrap, topic_name)
    sent = kp_produce(broker.bootstrap, topic_name, payloads(N, codec),
                      compression_type=None if codec == "none" else codec)
    got = kp_consume(broker.bootstrap, topic_name, N)
    check_roundtrip(sent, got)


@pytest.mark.parametrize("producer,consumer", [("confluent", "kafka-python"), ("kafka-python", "confluent")])
def test_cross_client(broker, topic_name, producer, consumer):
    """What one client writes the other reads (zstd batches from one, fetched by the other)."""
    create_topic(broker.bootstrap, topic_name)
    recs = payloads(200, "x")
    if producer == "confluent":
        sent = ck_produce(broker.bootstrap, topic_name, recs, **{"compression.type": "zstd"})
    else:
        sent = kp_produce(broker.bootstrap, topic_name, recs, compression_type="zstd")
    got = (ck_consume if consumer == "confluent" else kp_consume)(broker.bootstrap, topic_name, len(recs))
    check_roundtrip(sent, got)


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_keyed_partitioning(broker, topic_name, client):
    """Records with the same key land in one partition, in send order; keys spread over partitions."""
    create_topic(broker.bootstrap, topic_name, partitions=4)
    recs = [(f"key-{i % 20}".encode(), f"{i}".encode()) for i in range(400)]
    if client == "confluent":
        sent = ck_produce(broker.bootstrap, topic_name, recs)
        got = ck_consume(broker.bootstrap, topic_name, len(recs))
    else:
        sent = kp_produce(broker.bootstrap, topic_name, recs)
        got = kp_consume(broker.bootstrap, topic_name, len(recs))
    check_roundtrip(sent, got)
    part_of_key = defaultdict(set)
    values_of_key = defaultdict(list)
    for part, off, k, v in sorted(got, key=lambda r: (r[0], r[1])):
        part_of_key[k].add(part)
        values_of_key[k].append(int(v))
    assert all(len(ps) == 1 for ps in part_of_key.values()), dict(part_of_key)
    assert len({next(iter(ps)) for ps in part_of_key.values()}) > 1, "all keys in one partition"
    for k, vals in values_of_key.items():
        assert vals == sorted(vals), f"key {k} out of order"


def test_confluent_idempotent_producer(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    recs = [(f"k{i % 11}".encode(), f"v{i:06d}".encode()) for i in range(5000)]
    sent = ck_produce(broker.bootstrap, topic_name, recs, **{
        "enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5,
        "compression.type": "lz4"})
    got = ck_consume(broker.bootstrap, topic_name, len(recs))
    check_roundtrip(sent, got)
    assert len({v for *_x, v in got}) == len(recs), "duplicated values"
    # Per key, the broker keeps send order.
    per_key = defaultdict(list)
    for part, off, k, v in sorted(got, key=lambda r: (r[0], r[1])):
        per_key[k].append(int(v[1:]))
    assert all(vs == sorted(vs) for vs in per_key.values())


def test_kafka_python_idempotent_producer(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    recs = [(f"k{i % 11}".encode(), f"v{i:06d}".encode()) for i in range(2000)]
    sent = kp_produce(broker.bootstrap, topic_name, recs, enable_idempotence=True, acks="all")
    got = kp_consume(broker.bootstrap, topic_name, len(recs))
    check_roundtrip(sent, got)
    assert len({v for *_x, v in got}) == len(recs)


def test_confluent_admin(broker, topic_name):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    create_topic(broker.bootstrap, topic_name, partitions=3, config={"retention.ms": "3600000"})

    # Validate-only creation of a second topic creates nothing.
    ghost = topic_name + "-ghost"
    a.create_topics([NewTopic(ghost, 2, 1)], validate_only=True)[ghost].result(30)
    assert ghost not in a.list_topics(timeout=10).topics

    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    with pytest.raises(Exception) as ei:
        a.create_topics([NewTopic(topic_name, 3, 1)])[topic_name].result(30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    md = a.list_topics(topic_name, timeout=10)
    assert len(md.topics[topic_name].partitions) == 3

    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    cfg = a.describe_configs([res])[res].result(30)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source in (ConfigSource.DYNAMIC_TOPIC_CONFIG, ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert not cfg["retention.ms"].is_default
    assert "cleanup.policy" in cfg and cfg["cleanup.policy"].value == "delete"
    assert cfg["cleanup.policy"].is_default

    # IncrementalAlterConfigs: set one key, delete another.
    res2 = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "200000", incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([res2])[res2].result(30)
    cfg = a.describe_configs([res])[res].result(30)
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["max.message.bytes"].value == "200000"
    res3 = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([res3])[res3].result(30)
    cfg = a.describe_configs([res])[res].result(30)
    assert cfg["max.message.bytes"].is_default

    # CreatePartitions 3 -> 5.
    a.create_partitions([NewPartitions(topic_name, 5)])[topic_name].result(30)
    md = a.list_topics(topic_name, timeout=10)
    assert len(md.topics[topic_name].partitions) == 5

    # Broker configs are described too.
    bres = ConfigResource(ConfigResource.Type.BROKER, str(next(iter(md.brokers))))
    bcfg = a.describe_configs([bres])[bres].result(30)
    assert "num.partitions" in bcfg and bcfg["num.partitions"].value == "4"

    a.delete_topics([topic_name], operation_timeout=30)[topic_name].result(30)

    def gone():
        return topic_name not in a.list_topics(timeout=10).topics

    deadline = time.monotonic() + 30
    while not gone():
        assert time.monotonic() < deadline, "topic still listed after delete"
        time.sleep(0.3)


def test_confluent_list_offsets_and_watermarks(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    ck_produce(broker.bootstrap, topic_name, [(None, f"{i}".encode()) for i in range(100)])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm-" + topic_name})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
        assert (lo, hi) == (0, 100)
    finally:
        c.close()


def test_kafka_python_admin(broker, topic_name):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.admin import NewPartitions as KNewPartitions
    from kafka.admin import NewTopic as KNewTopic

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        a.create_topics([KNewTopic(topic_name, 2, 1, topic_configs={"retention.ms": "3600000"})])
        desc = a.describe_topics([topic_name])
        assert len(desc[0]["partitions"]) == 2
        a.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name, configs={"retention.ms": "60000"})])
        res = a.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name)], config_filter="all")
        entries = next(iter(next(iter(res.values())).values()))
        assert entries["retention.ms"]["value"] == "60000", entries.get("retention.ms")
        assert "cleanup.policy" in entries
        a.create_partitions({topic_name: KNewPartitions(total_count=3)})
        assert len(a.describe_topics([topic_name])[0]["partitions"]) == 3
        assert topic_name in a.list_topics()
        a.delete_topics([topic_name])
        deadline = time.monotonic() + 30
        while topic_name in a.list_topics():
            assert time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        a.close()
