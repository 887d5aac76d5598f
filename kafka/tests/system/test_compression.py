"""Record-batch compression with real clients: gzip, snappy, lz4 and zstd batches written by
confluent-kafka (librdkafka), kafka-python, kcat and Apache Kafka's Java console producer are read
back by each consumer; a topic with `compression.type` gzip or zstd stores what it receives
recompressed (checked with Apache Kafka's DumpLogSegments and read by the Java console consumer);
ListOffsets by timestamp finds the exact record inside a compressed batch; a corrupt compressed
payload and a decompression bomb get CORRUPT_MESSAGE and the broker keeps serving.
"""

from __future__ import annotations

import gzip
import re
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from kiln_kafka_harness import KAFKA_LIBS, TOOLS, java_cmd, run_tool, wait_until

pytestmark = pytest.mark.timeout(180)

CODECS = ["gzip", "snappy", "lz4", "zstd"]
HAVE_JARS = KAFKA_LIBS["4"].is_dir()
N = 60  # records per producer


def _create(bootstrap: str, topic: str, config: dict[str, str] | None = None) -> None:
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config or {})],
                    operation_timeout=30)[topic].result(30)
    wait_until(lambda: topic in a.list_topics(topic, timeout=5).topics
               and a.list_topics(topic, timeout=5).topics[topic].error is None, 30, what="topic")


def _values(prefix: str, n: int = N) -> list[bytes]:
    # Compressible payloads, so every codec really shrinks them.
    return [f"{prefix}-{i:04d}-".encode() + b"payload " * 20 for i in range(n)]


def _ck_produce(bootstrap: str, topic: str, values: list[bytes], codec: str, **extra) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 50,
                  "compression.type": codec, **extra})
    errors = []
    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0
    assert not errors, errors


def _kp_produce(bootstrap: str, topic: str, values: list[bytes], codec: str | None) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=50)
    try:
        futures = [p.send(topic, value=v, partition=0) for v in values]
        p.flush(30)
        for f in futures:
            f.get(timeout=30)
    finally:
        p.close(10)


def _kcat_produce(bootstrap: str, topic: str, values: list[bytes], codec: str) -> None:
    cp = subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-p", "0", "-z", codec,
                         "-X", "acks=all", "-X", "linger.ms=50"],
                        input=b"\n".join(values) + b"\n", capture_output=True, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()[-2000:]


def _java_produce(bootstrap: str, topic: str, values: list[bytes], codec: str) -> None:
    run_tool("4", TOOLS["4"]["console-producer"], "--bootstrap-server", bootstrap, "--topic", topic,
             # The console producer sets compression.type from its own option (default none).
             "--producer-property", "acks=all", "--compression-codec", codec,
             "--producer-property", "linger.ms=50",
             input="".join(v.decode() + "\n" for v in values), timeout=90)


def _ck_consume(bootstrap: str, topic: str, n: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ck-" + topic, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.time() + 60
    try:
        while len(out) < n and time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append(m.value())
    finally:
        c.close()
    return out


def _kp_consume(bootstrap: str, topic: str, n: int) -> list[bytes]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    c.assign([KTP(topic, 0)])
    out: list[bytes] = []
    deadline = time.time() + 60
    try:
        while len(out) < n and time.time() < deadline:
            for recs in c.poll(timeout_ms=1000).values():
                out.extend(r.value for r in recs)
    finally:
        c.close()
    return out


def _java_consume(bootstrap: str, topic: str, n: int) -> list[bytes]:
    out = run_tool("4", TOOLS["4"]["console-consumer"], "--bootstrap-server", bootstrap, "--topic", topic,
                   "--from-beginning", "--max-messages", str(n), "--timeout-ms", "60000", timeout=90).stdout
    return [line.encode() for line in out.splitlines()]


def _dump_codecs(broker, topic: str) -> tuple[list[str], int]:
    """(codec of every batch, number of records) as Apache Kafka's DumpLogSegments reads them."""
    segs = broker.segment_files(topic, 0)
    assert segs
    out = run_tool("4", TOOLS["4"]["dump-log"], "--deep-iteration", "--print-data-log",
                   "--files", ",".join(str(s) for s in segs), timeout=90).stdout
    codecs = re.findall(r"^baseOffset: \d+ .*?compresscodec: (\w+) .*?isvalid: true", out, re.M)
    records = re.findall(r"^\| offset: \d+ ", out, re.M)
    assert "isvalid: false" not in out, out[-3000:]
    return [c.lower() for c in codecs], len(records)


@pytest.mark.parametrize("codec", CODECS)
def test_every_client_produces_and_consumes_each_codec(broker, topic_name, codec):
    _create(broker.bootstrap, topic_name)
    sent = _values("ck") + _values("kp") + _values("kcat")
    _ck_produce(broker.bootstrap, topic_name, sent[:N], codec)
    _kp_produce(broker.bootstrap, topic_name, sent[N:2 * N], codec)
    _kcat_produce(broker.bootstrap, topic_name, sent[2 * N:], codec)
    if HAVE_JARS:
        java = _values("java")
        _java_produce(broker.bootstrap, topic_name, java, codec)
        sent += java
    assert _ck_consume(broker.bootstrap, topic_name, len(sent)) == sent
    assert _kp_consume(broker.bootstrap, topic_name, len(sent)) == sent
    if HAVE_JARS:
        assert _java_consume(broker.bootstrap, topic_name, len(sent)) == sent
        codecs, records = _dump_codecs(broker, topic_name)
        # `producer`: every batch is stored with the codec it was sent with.
        assert set(codecs) == {codec}, codecs
        assert records == len(sent)


@pytest.mark.parametrize("topic_codec", ["gzip", "zstd"])
def test_topic_compression_type_recompresses(broker, topic_name, topic_codec):
    _create(broker.bootstrap, topic_name, {"compression.type": topic_codec})
    plain = _values("plain")
    snappy = _values("snappy")
    lz4 = _values("lz4")
    _kp_produce(broker.bootstrap, topic_name, plain, None)
    _ck_produce(broker.bootstrap, topic_name, snappy, "snappy")
    _kcat_produce(broker.bootstrap, topic_name, lz4, "lz4")
    sent = plain + snappy + lz4
    assert _ck_consume(broker.bootstrap, topic_name, len(sent)) == sent
    if HAVE_JARS:
        codecs, records = _dump_codecs(broker, topic_name)
        assert codecs and set(codecs) == {topic_codec}, codecs
        assert records == len(sent)
        assert _java_consume(broker.bootstrap, topic_name, len(sent)) == sent

    # Changed live: later batches are stored uncompressed; DescribeConfigs shows the new value.
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name, set_config={"compression.type": "uncompressed"})
    a.alter_configs([res])[res].result(30)
    desc = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)])
    entries = next(iter(desc.values())).result(30)
    assert entries["compression.type"].value == "uncompressed"
    later = _values("later", 10)
    _ck_produce(broker.bootstrap, topic_name, later, "zstd")
    assert _kp_consume(broker.bootstrap, topic_name, len(sent) + 10) == sent + later
    if HAVE_JARS:
        codecs, _ = _dump_codecs(broker, topic_name)
        assert codecs[-1] == "none", codecs


def test_invalid_compression_type_is_refused(broker, topic_name):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    f = a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1,
                                  config={"compression.type": "brotli"})], operation_timeout=30)[topic_name]
    with pytest.raises(Exception, match=r"(?i)invalid|compression"):
        f.result(30)


@pytest.mark.parametrize("codec", ["gzip", "zstd", "lz4", "snappy"])
def test_offsets_for_times_inside_a_compressed_batch(broker, topic_name, codec):
    _create(broker.bootstrap, topic_name)
    base = int(time.time() * 1000) - 3_600_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2000,
                  "batch.num.messages": 1000, "compression.type": codec})
    for i in range(100):
        p.produce(topic_name, value=b"v%d" % i, partition=0, timestamp=base + i * 1000)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "oft-" + topic_name})
    try:
        for q, want in [(base, 0), (base + 1, 1), (base + 42_000, 42), (base + 42_500, 43),
                        (base + 99_000, 99), (base + 100_000, -1)]:
            got = c.offsets_for_times([TopicPartition(topic_name, 0, q)], timeout=30)[0]
            assert got.error is None and got.offset == want, (q - base, got.offset, want)
    finally:
        c.close()


# --- hostile payloads, sent as raw Produce v7 requests -------------------------------------------

def _batch(payload: bytes, codec_id: int, count: int) -> bytes:
    """A RecordBatch v2 whose (compressed) records are `payload`, with a valid CRC."""
    from kafka.record.util import calc_crc32c

    after_crc = struct.pack(">hiqqqhii", codec_id, count - 1, 1000, 1000, -1, -1, -1, count) + payload
    crc = calc_crc32c(after_crc)
    body = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def _produce_raw(bootstrap: str, topic: str, records: bytes) -> int:
    """Sends one Produce v7 request with `records` for partition 0; returns its error code."""
    def string(s: str) -> bytes:
        return struct.pack(">h", len(s)) + s.encode()

    body = (struct.pack(">hhi", -1, -1, 30000) + struct.pack(">i", 1) + string(topic)
            + struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(records)) + records)
    header = struct.pack(">hhi", 0, 7, 42) + string("kiln-compression-test")
    frame = header + body
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv(s, 4))[0]
        resp = _recv(s, size)
    # correlation id, topics[1], name, partitions[1], index, error_code
    (corr,) = struct.unpack_from(">i", resp, 0)
    assert corr == 42
    pos = 4 + 4
    (name_len,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + name_len + 4
    index, code = struct.unpack_from(">ih", resp, pos)
    assert index == 0
    return code


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


CORRUPT_MESSAGE = 2


def test_corrupt_and_bomb_payloads_get_corrupt_message(broker, topic_name, kafka_target):
    if kafka_target != "kiln":
        pytest.skip("Apache Kafka has no decompressed-size bound: a bomb is decompressed in full "
                    "and the error codes differ (INVALID_RECORD or UNKNOWN_SERVER_ERROR)")
    _create(broker.bootstrap, topic_name)
    # Not gzip at all.
    assert _produce_raw(broker.bootstrap, topic_name, _batch(b"\x1f\x8bnot really gzip", 1, 1)) == CORRUPT_MESSAGE
    # Not zstd / lz4 / snappy.
    # Not snappy (a copy from before the start), lz4 or zstd (no frame magic).
    for codec_id in (2, 3, 4):
        assert _produce_raw(broker.bootstrap, topic_name, _batch(b"\x20" + b"\xff" * 10, codec_id, 1)) \
            == CORRUPT_MESSAGE
    # A bomb: 200 MiB of zeros in about 200 KiB of gzip, far above the decompressed bound.
    bomb = gzip.compress(bytes(200 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    assert _produce_raw(broker.bootstrap, topic_name, _batch(bomb, 1, 1)) == CORRUPT_MESSAGE
    # The broker keeps serving, on the same topic.
    values = _values("after", 5)
    _ck_produce(broker.bootstrap, topic_name, values, "gzip")
    assert _ck_consume(broker.bootstrap, topic_name, 5) == values
