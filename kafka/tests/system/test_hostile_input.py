"""Hostile input over a raw socket: length bombs, oversized frames, garbage and truncated frames.
Each gets an error or a closed connection, never a hang, and the broker keeps serving everyone else."""

from __future__ import annotations

import socket
import struct

import pytest

from kiln_kafka_harness import api_versions_probe

pytestmark = pytest.mark.timeout(120)


def header(api_key: int, version: int, corr: int, client_id: bytes = b"hostile") -> bytes:
    return struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id


def exchange(broker, payload: bytes, timeout: float = 10.0) -> bytes:
    """Sends raw bytes; returns what the broker sends back until it closes or goes quiet."""
    with socket.create_connection((broker.host, broker.port), timeout=timeout) as s:
        s.settimeout(timeout)
        try:
            s.sendall(payload)
        except OSError:
            return b""
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
                if len(got) >= 4 and len(got) - 4 >= struct.unpack(">i", got[:4])[0]:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return got


def still_serving(broker) -> None:
    assert api_versions_probe(broker.host, broker.port), "broker stopped answering after hostile input"


def test_metadata_v0_topic_count_bomb(broker):
    # MetadataRequest v0 whose topic array claims 2^31-1 entries, with no entries present.
    body = header(3, 0, 7) + b"\x7f\xff\xff\xff"
    got = exchange(broker, struct.pack(">i", len(body)) + body)
    if got:
        (n,) = struct.unpack(">i", got[:4])
        assert n < 1 << 20, "an enormous response to a 4-byte array claim"
    still_serving(broker)


def test_string_length_bomb(broker):
    # A client id claiming 32767 bytes with 3 present.
    body = struct.pack(">hhih", 18, 0, 9, 32767) + b"abc"
    exchange(broker, struct.pack(">i", len(body)) + body)
    still_serving(broker)


def test_frame_larger_than_socket_request_max_bytes(broker):
    # A frame header announcing 2 GiB - 1: the broker must not wait for or allocate it.
    got = exchange(broker, struct.pack(">i", 0x7FFFFFFF) + header(18, 0, 1), timeout=15)
    assert got == b"", "expected the connection to be closed"
    still_serving(broker)


def test_negative_frame_length(broker):
    got = exchange(broker, struct.pack(">i", -5) + b"\x00" * 16, timeout=15)
    assert got == b""
    still_serving(broker)


def test_garbage_and_truncated_frames(broker):
    exchange(broker, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    exchange(broker, struct.pack(">i", 100) + b"\x00\x12", timeout=2)  # truncated, then closed
    exchange(broker, struct.pack(">i", 6) + b"\xff\xff\x00\x00\x00\x01", timeout=5)  # unknown api key, cut
    still_serving(broker)


def test_other_clients_unaffected(broker, topic_name):
    from confluent_kafka import Consumer, Producer

    # A bad connection stays open (half-sent frame) while a real client works.
    bad = socket.create_connection((broker.host, broker.port), timeout=5)
    try:
        bad.sendall(struct.pack(">i", 1000) + b"\x00" * 10)
        p = Producer({"bootstrap.servers": broker.bootstrap})
        p.produce(topic_name, b"ok")
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "h-" + topic_name,
                      "auto.offset.reset": "earliest"})
        c.subscribe([topic_name])
        m = None
        for _ in range(60):
            m = c.poll(0.5)
            if m is not None and not m.error():
                break
        c.close()
        assert m is not None and m.value() == b"ok"
    finally:
        bad.close()
