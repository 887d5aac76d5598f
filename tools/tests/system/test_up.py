"""`kiln up` (the README's first command): ZooKeeper and Kafka in one process, data under one directory.

Starts the release binary with non-default ports and a temporary data dir, uses it with kazoo and
kafka-python, stops it with SIGTERM, checks a clean exit and that both servers' data survive a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kazoo.client import KazooClient

ROOT = Path(os.environ.get("KILN_ROOT", Path(__file__).resolve().parents[3]))
KILN_BIN = os.environ.get("KILN_BIN", str(ROOT / "target" / "release" / "kiln"))

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"kiln up exited early with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} not listening after {timeout} s")


def start(data: Path, zk_port: int, kafka_port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [KILN_BIN, "up", "--data-dir", str(data), "--zk-port", str(zk_port),
         "--kafka-port", str(kafka_port)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_port(zk_port, proc)
    wait_port(kafka_port, proc)
    return proc


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("kiln up did not exit within 30 s of SIGTERM")


def test_up_serves_zookeeper_and_kafka_and_keeps_data(tmp_path: Path) -> None:
    data = tmp_path / "kiln-data"
    log = tmp_path / "kiln.log"
    zk_port, kafka_port = free_port(), free_port()
    proc = start(data, zk_port, kafka_port, log)
    try:
        zk = KazooClient(hosts=f"127.0.0.1:{zk_port}")
        zk.start(timeout=15)
        zk.create("/up-check", b"hello")
        zk.stop()
        zk.close()

        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{kafka_port}", acks="all")
        for i in range(50):
            producer.send("up-check", f"record-{i}".encode())
        producer.flush(timeout=30)
        producer.close()
    finally:
        rc = stop(proc)
    assert rc == 0, f"kiln up exited with {rc}; log in {log}"
    assert (data / "zk").is_dir() and (data / "kafka").is_dir(), sorted(p.name for p in data.iterdir())

    proc = start(data, zk_port, kafka_port, log)
    try:
        zk = KazooClient(hosts=f"127.0.0.1:{zk_port}")
        zk.start(timeout=15)
        value, _ = zk.get("/up-check")
        zk.stop()
        zk.close()
        assert value == b"hello"

        consumer = KafkaConsumer("up-check", bootstrap_servers=f"127.0.0.1:{kafka_port}",
                                 auto_offset_reset="earliest", consumer_timeout_ms=10000)
        got = [m.value for m in consumer]
        consumer.close()
        assert got == [f"record-{i}".encode() for i in range(50)]
    finally:
        assert stop(proc) == 0
