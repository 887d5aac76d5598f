"""Disk full and a failing device, on a small loop-mounted ext4 file system.

Disk full: acks=all produce fills the file system; the broker answers KAFKA_STORAGE_ERROR and keeps
serving, nothing acknowledged is lost, and once space is freed writes are accepted again (live, or
after a restart). Failing device: the file system's device fails under the broker (its backing store
runs out); the broker's fsync fails and the process stops with a message naming the file, without
retrying; what it acknowledged before is still there when the device works again (except what the
test device itself drops: see the second test).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from kiln_kafka_harness import ROOT, TARGET, KilnBroker

sys.path.insert(0, str(ROOT / "tools" / "tests" / "lib"))
import loopfs  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(TARGET != "kiln", reason="Kiln's storage-error behaviour; Apache Kafka takes the log dir offline"),
    pytest.mark.skipif(loopfs.why_unavailable() is not None, reason=str(loopfs.why_unavailable())),
]

VALUE_BYTES = 64 << 10


def produce_until_failure(bootstrap: str, topic: str, start: int, limit: int, alive=lambda: True):
    """Sends acks=all records one by one until three fail or `alive()` is false; returns
    ({offset: index}, [errors])."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0, linger_ms=0,
                             request_timeout_ms=20_000, max_block_ms=20_000, delivery_timeout_ms=25_000,
                             max_request_size=4 << 20)
    acked: dict[int, int] = {}
    errors: list[Exception] = []
    pad = os.urandom(VALUE_BYTES)
    try:
        for i in range(start, start + limit):
            try:
                md = producer.send(topic, value=b"%08d" % i + pad).get(timeout=60)
                acked[md.offset] = i
            except KafkaError as e:
                errors.append(e)
                if len(errors) >= 3 or not alive():
                    break
    finally:
        producer.close(timeout=10)
    return acked, errors


def consume_all(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=15_000, fetch_max_bytes=8 << 20,
                             max_partition_fetch_bytes=8 << 20)
    got = {m.offset: int(m.value[:8]) for m in consumer}
    consumer.close()
    return got


def test_disk_full_answers_storage_errors_loses_nothing_and_recovers(topic_name):
    fs = loopfs.LoopFs(64)
    b = KilnBroker(fs.mount_point / "broker", {"num.partitions": "1", "log.segment.bytes": str(8 << 20)})
    try:
        b.start()
        filler = fs.mount_point / "filler"
        fs.fill(filler, leave_bytes=24 << 20)
        acked, errors = produce_until_failure(b.bootstrap, topic_name, 0, 2000)
        assert errors, f"the file system never filled ({len(acked)} records acknowledged)"
        assert len(acked) > 50, f"only {len(acked)} records before the first error: {errors[0]!r}"
        assert all(type(e).__name__ == "KafkaStorageError" for e in errors), errors
        assert b.proc is not None and b.proc.poll() is None, "the broker stopped on a full disk"

        filler.unlink()
        # Live first: the same process accepts writes again once space is free.
        deadline = time.monotonic() + 20
        more: dict[int, int] = {}
        while time.monotonic() < deadline and not more:
            more, _ = produce_until_failure(b.bootstrap, topic_name, 10_000, 5)
            time.sleep(1)
        if not more:
            # Or after a restart: say which in the output.
            print("writes resumed only after a restart")
            b.stop()
            b.start()
            more, errs = produce_until_failure(b.bootstrap, topic_name, 10_000, 5)
            assert more, f"no write accepted after freeing space and restarting: {errs!r}"
        else:
            print("writes resumed live")
        acked.update(more)

        b.stop()
        b.start()
        got = consume_all(b.bootstrap, topic_name)
        lost = {o: i for o, i in acked.items() if got.get(o) != i}
        assert not lost, f"{len(lost)} acknowledged records lost or changed, e.g. {sorted(lost.items())[:5]}"
    finally:
        b.close()
        fs.close()


def test_a_failing_device_stops_the_broker_without_retrying_and_keeps_what_it_acknowledged(topic_name):
    # 64 MiB of file system on 40 MiB of backing store: writeback past that fails with EIO.
    fs = loopfs.LoopFs(64, backing_limit_mib=40)
    b = KilnBroker(fs.mount_point / "broker", {"num.partitions": "1", "log.segment.bytes": str(8 << 20)})
    try:
        b.start()
        acked, errors = produce_until_failure(b.bootstrap, topic_name, 0, 2000,
                                              alive=lambda: b.proc.poll() is None)
        assert errors, f"the device never failed ({len(acked)} records acknowledged)"
        assert b.proc is not None
        rc = b.proc.wait(60)
        out = b.output_tail(20_000)
        assert rc != 0, out
        assert "fatal" in out and ".log" in out, f"no message naming the file:\n{out[-2000:]}"
        print(f"{len(acked)} records acknowledged; broker exited {rc}")

        # The device works again: every record acknowledged before the failure is there.
        b.proc = None
        fs.repair(128)
        b.start()
        got = consume_all(b.bootstrap, topic_name)
        lost = {o: i for o, i in acked.items() if got.get(o) != i}
        # This test device (a loop device on a tmpfs that ran out) drops the last write whose
        # fdatasync it reported complete: a plain pwrite+fdatasync loop on it loses its last
        # chunk the same way. So the device's own loss of the newest acknowledged record is
        # allowed; everything before it must be there, and recovery must cut nothing else.
        newest = max(acked) if acked else -1
        assert set(lost) <= {newest}, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost.items())[:5]}"
        print(f"after repair: {len(got)} records readable, device lost the newest: {newest in lost}")
    finally:
        b.close()
        fs.close()
