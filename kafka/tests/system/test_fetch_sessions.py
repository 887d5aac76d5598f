"""Incremental fetch sessions (KIP-227).

1. The wire semantics, with hand-built Fetch v7 requests: a full fetch with epoch 0 opens a session
   (non-zero id), an incremental fetch answers only partitions with news, a stale epoch is
   INVALID_FETCH_SESSION_EPOCH (71), an unknown id FETCH_SESSION_ID_NOT_FOUND (70), epoch -1 closes
   the session.
2. Real consumers consume while a producer writes, over many fetches: the Java consumer of Kafka
   4.1 (every record arrives once and in order per partition) and franz-go's TestGroupETL (which
   checks the same itself); against Kiln the broker's debug log must show sessions with non-zero
   ids and incremental fetches serving them. librdkafka does not use sessions (it sends epoch -1
   on every fetch); its test checks the sessionless path under the same load.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kiln_kafka_harness import KAFKA_LIBS, PEERS, TARGET, TOOLS, java_cmd, wait_until

pytestmark = pytest.mark.timeout(240)

FETCH_LOG = "info,kiln_kafka::handlers::fetch=debug"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                    operation_timeout=30)[topic].result(30)

    def ready():
        t = a.list_topics(topic, timeout=5).topics.get(topic)
        return t is not None and t.error is None and len(t.partitions) == partitions

    wait_until(ready, 30, what=f"topic {topic} in metadata")


# ---- Fetch v7 by hand (non-flexible: plain int16 strings and int32 array lengths) ----

def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Wire:
    def __init__(self, bootstrap: str):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.corr = 0

    def close(self):
        self.sock.close()

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise OSError("connection closed")
            buf += chunk
        return buf

    def fetch(self, session_id: int, epoch: int, parts: list[tuple[str, int, int]],
              forgotten: list[tuple[str, int]] = (), max_wait_ms: int = 100) -> dict:
        """Sends Fetch v7; returns {error, session_id, partitions: {(topic, p): (err, hw, nbytes)}}."""
        self.corr += 1
        by_topic: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for t, p, off in parts:
            by_topic[t].append((p, off))
        body = struct.pack(">iiiibii", -1, max_wait_ms, 1, 1 << 20, 0, session_id, epoch)
        body += struct.pack(">i", len(by_topic))
        for t, ps in by_topic.items():
            body += _str(t) + struct.pack(">i", len(ps))
            for p, off in ps:
                body += struct.pack(">iqqi", p, off, -1, 1 << 20)
        fg: dict[str, list[int]] = defaultdict(list)
        for t, p in forgotten:
            fg[t].append(p)
        body += struct.pack(">i", len(fg))
        for t, ps in fg.items():
            body += _str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in ps)
        head = struct.pack(">hhi", 1, 7, self.corr) + _str("kiln-session-test")
        frame = head + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        (n,) = struct.unpack(">i", self._recv(4))
        r = self._recv(n)
        pos = 0

        def take(fmt):
            nonlocal pos
            v = struct.unpack_from(fmt, r, pos)
            pos += struct.calcsize(fmt)
            return v

        (corr,) = take(">i")
        assert corr == self.corr
        _throttle, error, sid, ntopics = take(">ihii")
        out = {"error": error, "session_id": sid, "partitions": {}}
        for _ in range(ntopics):
            (tlen,) = take(">h")
            topic = r[pos:pos + tlen].decode()
            pos += tlen
            (nparts,) = take(">i")
            for _ in range(nparts):
                p, err, hw, _lso, _ls, naborted = take(">ihqqqi")
                for _ in range(max(naborted, 0)):
                    take(">qq")
                (rlen,) = take(">i")
                pos += max(rlen, 0)
                out["partitions"][(topic, p)] = (err, hw, max(rlen, 0))
        return out


def produce(bootstrap: str, topic: str, partition: int, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), partition=partition)
    assert p.flush(30) == 0


def test_fetch_session_wire_semantics(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    produce(broker.bootstrap, topic_name, 0, 5)
    w = Wire(broker.bootstrap)
    try:
        # Unknown session.
        r = w.fetch(123456, 1, [])
        assert r["error"] == 70 and r["session_id"] == 0, r
        # Full fetch, epoch 0: a session with every partition answered.
        parts = [(topic_name, 0, 0), (topic_name, 1, 0)]
        r = w.fetch(0, 0, parts)
        assert r["error"] == 0, r
        sid = r["session_id"]
        assert sid != 0, "the broker declined to create a fetch session"
        assert set(r["partitions"]) == {(topic_name, 0), (topic_name, 1)}, r
        assert r["partitions"][(topic_name, 0)][0:2] == (0, 5) and r["partitions"][(topic_name, 0)][2] > 0, r
        # Incremental, epoch 1: the client moved partition 0 to offset 5; nothing new anywhere.
        r = w.fetch(sid, 1, [(topic_name, 0, 5)])
        assert r["error"] == 0 and r["session_id"] == sid, r
        assert r["partitions"] == {}, r
        # The same epoch again is stale.
        r = w.fetch(sid, 1, [])
        assert r["error"] == 71, r
        # New records on partition 1 only: only partition 1 is answered (it still fetches from 0).
        produce(broker.bootstrap, topic_name, 1, 3)
        r = w.fetch(sid, 2, [])
        assert r["error"] == 0 and r["session_id"] == sid, r
        assert list(r["partitions"]) == [(topic_name, 1)], r
        err, hw, nbytes = r["partitions"][(topic_name, 1)]
        assert (err, hw) == (0, 3) and nbytes > 0, r
        # Forget partition 1 and move it to its end: partition 0 gets data, partition 1 is gone.
        produce(broker.bootstrap, topic_name, 0, 2)
        r = w.fetch(sid, 3, [], forgotten=[(topic_name, 1)])
        assert list(r["partitions"]) == [(topic_name, 0)], r
        assert r["partitions"][(topic_name, 0)][1] == 7, r
        # Epoch -1 closes the session: a later incremental fetch does not find it.
        r = w.fetch(sid, -1, [(topic_name, 0, 7)])
        assert r["error"] == 0 and r["session_id"] == 0, r
        r = w.fetch(sid, 4, [])
        assert r["error"] == 70, r
    finally:
        w.close()


def _produce_slowly(bootstrap: str, topic: str, partitions: int, n: int, rounds: int,
                    errors: list) -> None:
    try:
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2})
        per_round = n // rounds
        for r in range(rounds):
            for i in range(r * per_round, (r + 1) * per_round):
                p.produce(topic, value=str(i).encode(), partition=i % partitions)
            p.flush(30)
            time.sleep(0.15)
        if p.flush(30) != 0:
            errors.append("producer did not deliver everything")
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(repr(e))


def _check_in_order_once(got: dict[int, list[tuple[int, int]]], n: int, partitions: int) -> None:
    """`got`: partition -> [(offset, value)] in arrival order."""
    values = sorted(v for lst in got.values() for _o, v in lst)
    assert values == list(range(n)), f"consumed {len(values)} records, {len(set(values))} distinct, expected {n}"
    for part, lst in got.items():
        offs = [o for o, _v in lst]
        assert offs == list(range(len(offs))), f"partition {part}: offsets not 0..n once in order"
        vals = [v for _o, v in lst]
        assert vals == sorted(vals) and all(v % partitions == part for v in vals), f"partition {part}: order"


def _check_sessions_in_log(broker) -> None:
    if TARGET != "kiln":
        return
    text = ANSI.sub("", broker.stdout_path.read_text(errors="replace"))
    created = [int(m) for m in re.findall(r"fetch session created session_id=(-?\d+)", text)]
    incremental = re.findall(r"incremental fetch session_id=(\d+) epoch=(\d+)", text)
    refused = re.findall(r"fetch session refused .*", text)
    detail = f"sessions created {created[:20]}, refused {refused[:10]}"
    assert any(s != 0 for s in created), f"no fetch session was created: {detail}"
    assert len(incremental) >= 5, f"only {len(incremental)} incremental fetches; {detail}"
    assert max(int(e) for _s, e in incremental) >= 5, "session epochs did not advance"


@pytest.fixture
def session_broker(broker_factory, monkeypatch):
    monkeypatch.setenv("RUST_LOG", FETCH_LOG)
    monkeypatch.setenv("NO_COLOR", "1")
    return broker_factory()


N = 3000
PARTITIONS = 3


@pytest.mark.skipif(not KAFKA_LIBS["4"].is_dir(), reason="Kafka jars missing: run kafka/tests/setup.sh")
def test_java_consumer_while_producing(session_broker, topic_name):
    b = session_broker
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    cmd = java_cmd("4", TOOLS["4"]["console-consumer"], "--bootstrap-server", b.bootstrap, "--topic", topic_name,
                   "--from-beginning", "--max-messages", str(N), "--timeout-ms", "60000",
                   "--property", "print.partition=true", "--property", "print.offset=true")
    cons = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Produce only once the consumer fetches, so that records arrive over many fetches.
        if TARGET == "kiln":
            wait_until(lambda: "fetch session created" in ANSI.sub("", b.stdout_path.read_text(errors="replace")),
                       90, interval=0.25, what="the Java consumer's first fetch")
        else:
            time.sleep(8)
        errors: list = []
        _produce_slowly(b.bootstrap, topic_name, PARTITIONS, N, 30, errors)
        assert not errors, errors
        out, err = cons.communicate(timeout=150)
    finally:
        if cons.poll() is None:
            cons.kill()
            cons.wait()
    assert cons.returncode == 0, err[-3000:]
    got: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for line in out.splitlines():
        m = re.search(r"Partition:(\d+)\s+Offset:(\d+)\s+(\d+)$", line)
        if m:
            got[int(m.group(1))].append((int(m.group(2)), int(m.group(3))))
    _check_in_order_once(got, N, PARTITIONS)
    _check_sessions_in_log(b)


def test_librdkafka_consumer_while_producing(session_broker, topic_name):
    b = session_broker
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "fs-" + topic_name,
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic_name, p, 0) for p in range(PARTITIONS)])
    errors: list = []
    producer = threading.Thread(target=_produce_slowly,
                                args=(b.bootstrap, topic_name, PARTITIONS, N, 20, errors))
    producer.start()
    got: dict[int, list[tuple[int, int]]] = defaultdict(list)
    count = 0
    deadline = time.monotonic() + 120
    try:
        while count < N and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got[m.partition()].append((m.offset(), int(m.value())))
            count += 1
        # Anything beyond N would be a duplicate.
        extra = c.poll(1.0)
        assert extra is None or extra.error(), "more records than produced"
    finally:
        producer.join(60)
        c.close()
    assert not errors, errors
    _check_in_order_once(got, N, PARTITIONS)


@pytest.mark.skipif(not (PEERS / "kgo.test").exists(), reason="kgo.test missing: run kafka/tests/setup.sh")
def test_kgo_group_etl_uses_sessions(session_broker, tmp_path):
    env = dict(os.environ, KGO_SEEDS=session_broker.bootstrap, KGO_TEST_RF="1", KGO_TEST_RECORDS="20000",
               KGO_LOG_LEVEL="none")
    cp = subprocess.run([str(PEERS / "kgo.test"), "-test.v", "-test.count=1", "-test.timeout=180s",
                         "-test.run", "^TestGroupETL$"], capture_output=True, text=True, env=env,
                        timeout=200, cwd=str(tmp_path))
    assert re.search(r"^--- PASS: TestGroupETL ", cp.stdout, re.M), cp.stdout[-4000:]
    _check_sessions_in_log(session_broker)
