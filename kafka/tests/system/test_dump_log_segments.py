"""Kiln's segment files, read by Apache Kafka's own DumpLogSegments after a clean shutdown.

The broker's storage is Kafka's on-disk layout (`<base offset>.log` of RecordBatch v2, `.index`,
`.timeindex`). This test produces uncompressed and gzip-compressed batches with kafka-python into
one partition with small segments, stops the broker with SIGTERM (it flushes its logs and exits 0),
then runs `kafka.tools.DumpLogSegments --deep-iteration --print-data-log` from the Apache Kafka 3.9
and 4.x jars over every segment and its indexes, and checks that it reports every batch (contiguous offsets,
record counts that match the offset range, the right codec, valid CRCs), every record with its
offset, key and payload in order, and no index mismatch or corruption.
"""

from __future__ import annotations

import re

import pytest

from kiln_kafka_harness import KAFKA_LIBS, TOOLS, run_tool

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not all(p.is_dir() for p in KAFKA_LIBS.values()),
                                 reason="Kafka jars missing: run kafka/tests/setup.sh")]

PLAIN = 300  # records sent uncompressed, then
GZIP = 300  # records sent with gzip, into the same partition
PAD = "x" * 100  # payloads of about 110 bytes: the uncompressed records span several segments

BATCH_RE = re.compile(
    r"^baseOffset: (\d+) lastOffset: (\d+) count: (\d+) .*?compresscodec: (\w+) .*?isvalid: (\w+)")
RECORD_RE = re.compile(r"^\| offset: (\d+) .*?key: (\S*) payload: (.*)$")


def _produce(bootstrap: str, topic: str, codec: str | None, first: int, n: int) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=20,
                      batch_size=1024)
    try:
        futures = [p.send(topic, key=f"k{i % 5}".encode(), value=f"record-{i}-{PAD}".encode(), partition=0)
                   for i in range(first, first + n)]
        p.flush(30)
        offsets = [f.get(timeout=30).offset for f in futures]
    finally:
        p.close(10)
    assert offsets == list(range(first, first + n)), offsets[:20]


def _parse_dump(out: str) -> tuple[list[tuple[int, int, int, str, str]], list[tuple[int, str, str]]]:
    batches, records = [], []
    for line in out.splitlines():
        if m := BATCH_RE.match(line):
            batches.append((int(m[1]), int(m[2]), int(m[3]), m[4].lower(), m[5]))
        elif m := RECORD_RE.match(line):
            records.append((int(m[1]), m[2], m[3]))
    return batches, records


@pytest.mark.parametrize("version", [pytest.param(v, id=f"kafka-{v}") for v in ("3.9", "4")])
def test_dump_log_segments_reads_a_cleanly_stopped_kiln_segment(broker_factory, topic_name, version,
                                                                kafka_target):
    # Small segments: several rolled segments whose .index (an entry per 4096 bytes, the default
    # index.interval.bytes) and .timeindex hold entries for DumpLogSegments to verify.
    broker = broker_factory({"num.partitions": "1", "log.segment.bytes": "16384"})
    _produce(broker.bootstrap, topic_name, None, 0, PLAIN)
    _produce(broker.bootstrap, topic_name, "gzip", PLAIN, GZIP)

    proc = broker.proc
    broker.stop()
    if kafka_target == "kiln":
        assert proc is not None and proc.returncode == 0, broker.output_tail()

    segs = broker.segment_files(topic_name, 0)
    assert len(segs) >= 3, segs
    files = [f for seg in segs for f in (seg, seg.with_suffix(".index"), seg.with_suffix(".timeindex"))]
    for f in files:
        assert f.exists(), f
    cp = run_tool(version, TOOLS[version]["dump-log"], "--deep-iteration", "--print-data-log",
                  "--files", ",".join(str(f) for f in files), timeout=90)
    out, err = cp.stdout, cp.stderr

    for f in files:
        assert f"Dumping {f}" in out, out[:2000]
    starts = [int(x) for x in re.findall(r"^Log starting offset: (\d+)$", out, re.M)]
    assert starts == [int(seg.stem) for seg in segs], starts
    batches, records = _parse_dump(out)

    # Every batch: contiguous offsets from 0, count = offset range, a valid CRC.
    assert batches, out[:3000]
    expect = 0
    for base, last, count, _, valid in batches:
        assert base == expect, (base, expect, batches[:10])
        assert count == last - base + 1, (base, last, count)
        assert valid == "true", (base, valid)
        expect = last + 1
    assert expect == PLAIN + GZIP, batches[-5:]
    assert sum(b[2] for b in batches) == PLAIN + GZIP
    # The codec of each batch: uncompressed first, then gzip (a batch never mixes the two runs).
    codecs = [("none" if b[1] < PLAIN else "gzip", b[3]) for b in batches]
    assert all(want == got for want, got in codecs), codecs
    assert any(b[3] == "gzip" for b in batches) and any(b[3] == "none" for b in batches)
    # Some batches hold several records (the producer batched them).
    assert len(batches) < PLAIN + GZIP, len(batches)

    # Every record, in order, with its key and payload.
    assert [r[0] for r in records] == list(range(PLAIN + GZIP)), records[:10]
    assert [r[1] for r in records] == [f"k{i % 5}" for i in range(PLAIN + GZIP)], records[:10]
    assert [r[2] for r in records] == [f"record-{i}-{PAD}" for i in range(PLAIN + GZIP)], records[:10]

    # The indexes were dumped and verified against the log (DumpLogSegments reads the batch each
    # entry points at), with nothing reported wrong. Every rolled segment has complete indexes.
    index_entries = re.findall(r"^offset: (\d+) position: (\d+)$", out, re.M)
    assert len(index_entries) >= len(segs) - 1, out[-3000:]
    time_entries = re.findall(r"^timestamp: (\d+) offset: (\d+)$", out, re.M)
    assert len(time_entries) >= len(segs) - 1, out[-3000:]
    text = (out + err).lower()
    for bad in ("mismatch", "corrupt", "invalid bytes", "not found", "isvalid: false", "exception",
                "non-consecutive"):
        assert bad not in text, f"{bad!r} in DumpLogSegments output:\n{out[-3000:]}\n{err[-3000:]}"
