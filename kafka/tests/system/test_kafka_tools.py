"""Apache Kafka's own command-line tools, from the 3.9 and 4.x jars (Maven Central), against the broker:
TopicCommand, ConsoleProducer/ConsoleConsumer, ConsumerGroupCommand, ConfigCommand,
BrokerApiVersionsCommand, DumpLogSegments over the broker's own segment file, and
VerifiableProducer + VerifiableConsumer (200,000 messages, acks=-1, idempotence: none lost, none
duplicated)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import defaultdict

import pytest

from kiln_kafka_harness import KAFKA_LIBS, TOOLS, java_cmd, run_tool, wait_until

VERSIONS = [pytest.param(v, id=f"kafka-{v}") for v in ("3.9", "4")]
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not all(p.is_dir() for p in KAFKA_LIBS.values()),
                                 reason="Kafka jars missing: run kafka/tests/setup.sh")]
VERIFIABLE_MESSAGES = int(os.environ.get("KILN_VERIFIABLE_MESSAGES", "200000"))


def tool(version, name, *args, **kw):
    return run_tool(version, TOOLS[version][name], *args, **kw)


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_command(broker, topic_name, version):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(version, "topics", *bs, "--create", "--topic", topic_name, "--partitions", "3",
         "--replication-factor", "1", "--config", "retention.ms=3600000")
    assert topic_name in tool(version, "topics", *bs, "--list").stdout.split()
    out = tool(version, "topics", *bs, "--describe", "--topic", topic_name).stdout
    assert re.search(r"PartitionCount:\s*3", out), out
    assert "retention.ms=3600000" in out, out
    assert len(re.findall(rf"Topic:\s*{re.escape(topic_name)}\s+Partition:\s*\d", out)) == 3, out
    # Creating it again is refused.
    cp = tool(version, "topics", *bs, "--create", "--topic", topic_name, "--partitions", "1", check=False)
    assert cp.returncode != 0 and "already exists" in (cp.stdout + cp.stderr)
    tool(version, "topics", *bs, "--alter", "--topic", topic_name, "--partitions", "5")
    out = tool(version, "topics", *bs, "--describe", "--topic", topic_name).stdout
    assert re.search(r"PartitionCount:\s*5", out), out
    tool(version, "topics", *bs, "--delete", "--topic", topic_name)
    wait_until(lambda: topic_name not in tool(version, "topics", *bs, "--list").stdout.split(), 60,
               interval=1, what="deleted topic to disappear")


def console_produce(version, broker, topic, lines):
    tool(version, "console-producer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
         "--property", "parse.key=true", "--property", "key.separator=:",
         "--producer-property", "acks=all", input="".join(line + "\n" for line in lines))


def console_consume(version, broker, topic, n, group):
    return tool(version, "console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
                "--from-beginning", "--max-messages", str(n), "--group", group, "--timeout-ms", "60000",
                "--property", "print.key=true", "--property", "key.separator=:").stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_console_producer_and_consumer(broker, topic_name, version):
    lines = [f"k{i % 7}:v{i}" for i in range(300)]
    console_produce(version, broker, topic_name, lines)
    out = console_consume(version, broker, topic_name, len(lines), "cc-" + topic_name)
    assert sorted(out.splitlines()) == sorted(lines)


def _describe_rows(out: str, topic: str) -> dict[int, dict[str, str]]:
    """Parses ConsumerGroupCommand --describe output into {partition: {column: value}}."""
    rows, header = {}, None
    for line in out.splitlines():
        cols = line.split()
        if cols[:1] == ["GROUP"]:
            header = cols
        elif header and len(cols) >= len(header) - 3 and topic in cols:
            r = dict(zip(header, cols))
            rows[int(r["PARTITION"])] = r
    return rows


@pytest.mark.parametrize("version", VERSIONS)
def test_consumer_group_command(broker, topic_name, version):
    group = "cg-" + topic_name
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(version, "topics", *bs, "--create", "--topic", topic_name, "--partitions", "2", "--replication-factor", "1")
    console_produce(version, broker, topic_name, [f"k{i}:v{i}" for i in range(100)])
    console_consume(version, broker, topic_name, 100, group)  # commits on exit

    assert group in tool(version, "consumer-groups", *bs, "--list").stdout.split()
    out = tool(version, "consumer-groups", *bs, "--describe", "--group", group).stdout
    rows = _describe_rows(out, topic_name)
    assert sorted(rows) == [0, 1], out
    assert sum(int(r["CURRENT-OFFSET"]) for r in rows.values()) == 100, out
    assert all(r["CURRENT-OFFSET"] == r["LOG-END-OFFSET"] and r["LAG"] == "0" for r in rows.values()), out

    # Dry run changes nothing; --execute moves the committed offsets.
    tool(version, "consumer-groups", *bs, "--reset-offsets", "--group", group, "--topic", topic_name,
         "--to-earliest", "--dry-run")
    rows = _describe_rows(tool(version, "consumer-groups", *bs, "--describe", "--group", group).stdout, topic_name)
    assert all(r["LAG"] == "0" for r in rows.values())
    out = tool(version, "consumer-groups", *bs, "--reset-offsets", "--group", group, "--topic", topic_name,
               "--to-earliest", "--execute").stdout
    rows = _describe_rows(tool(version, "consumer-groups", *bs, "--describe", "--group", group).stdout, topic_name)
    assert all(r["CURRENT-OFFSET"] == "0" for r in rows.values()), rows
    assert sum(int(r["LAG"]) for r in rows.values()) == 100
    tool(version, "consumer-groups", *bs, "--reset-offsets", "--group", group, "--topic", f"{topic_name}:0",
         "--to-offset", "3", "--execute")
    rows = _describe_rows(tool(version, "consumer-groups", *bs, "--describe", "--group", group).stdout, topic_name)
    assert rows[0]["CURRENT-OFFSET"] == "3", rows

    # The group resumes where the reset put it.
    out = console_consume(version, broker, topic_name, 97, group)
    assert len(out.splitlines()) == 97
    tool(version, "consumer-groups", *bs, "--delete", "--group", group)
    assert group not in tool(version, "consumer-groups", *bs, "--list").stdout.split()


@pytest.mark.parametrize("version", VERSIONS)
def test_config_command(broker, topic_name, version):
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(version, "topics", *bs, "--create", "--topic", topic_name, "--partitions", "1", "--replication-factor", "1")
    ent = ["--entity-type", "topics", "--entity-name", topic_name]
    tool(version, "configs", *bs, *ent, "--alter", "--add-config", "retention.ms=123456,segment.bytes=1048576")
    out = tool(version, "configs", *bs, *ent, "--describe").stdout
    assert "retention.ms=123456" in out and "segment.bytes=1048576" in out, out
    tool(version, "configs", *bs, *ent, "--alter", "--delete-config", "retention.ms")
    out = tool(version, "configs", *bs, *ent, "--describe").stdout
    assert "retention.ms=123456" not in out and "segment.bytes=1048576" in out, out
    # Bad values are refused.
    cp = tool(version, "configs", *bs, *ent, "--alter", "--add-config", "retention.ms=notanumber", check=False)
    assert cp.returncode != 0
    # Broker configs: --all lists static and default values.
    out = tool(version, "configs", *bs, "--entity-type", "brokers", "--entity-name", _broker_id(broker),
               "--describe", "--all").stdout
    assert re.search(r"num\.partitions=4\b", out), out


def _broker_id(broker) -> str:
    from confluent_kafka.admin import AdminClient

    return str(next(iter(AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).brokers)))


@pytest.mark.parametrize("version", VERSIONS)
def test_broker_api_versions_command(broker, version):
    out = tool(version, "api-versions", "--bootstrap-server", broker.bootstrap).stdout
    assert broker.bootstrap in out, out
    for api in ("Produce(0)", "Fetch(1)", "ListOffsets(2)", "Metadata(3)", "ApiVersions(18)"):
        assert api in out, f"{api} missing:\n{out}"
    assert re.search(r"Produce\(0\): \d+ to \d+ \[usable: \d+\]", out), out
    assert re.search(r"ApiVersions\(18\): \d+ to \d+ \[usable: \d+\]", out), out


@pytest.mark.parametrize("version", VERSIONS)
def test_dump_log_segments(broker, topic_name, version):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.type": "gzip", "linger.ms": 20})
    for i in range(100):
        p.produce(topic_name, key=b"k", value=f"dump-{i}".encode(), partition=0)
    assert p.flush(30) == 0
    segs = wait_until(lambda: broker.segment_files(topic_name, 0), 30, what="segment file")
    out = tool(version, "dump-log", "--files", str(segs[0]), "--print-data-log", "--deep-iteration").stdout
    assert "Log starting offset: 0" in out, out[:2000]
    assert "compresscodec: gzip" in out.lower() or "compresscodec: GZIP" in out, out[:2000]
    payloads = re.findall(r"payload: (dump-\d+)", out)
    assert payloads == [f"dump-{i}" for i in range(100)], out[:3000]
    offsets = [int(x) for x in re.findall(r"\| offset: (\d+)", out)]
    assert offsets == list(range(100)), offsets[:20]
    assert "isvalid: false" not in out and "crc" in out.lower()


@pytest.mark.parametrize("version", VERSIONS)
def test_verifiable_producer_and_consumer(broker, topic_name, version, tmp_path):
    n = VERIFIABLE_MESSAGES
    bs = ["--bootstrap-server", broker.bootstrap]
    tool(version, "topics", *bs, "--create", "--topic", topic_name, "--partitions", "4", "--replication-factor", "1")
    cfg = tmp_path / "producer.properties"
    cfg.write_text("enable.idempotence=true\nretries=2147483647\nmax.in.flight.requests.per.connection=5\nlinger.ms=5\n"
                   "batch.size=65536\n")
    out = tmp_path / "producer.jsonl"
    with open(out, "w") as f:
        cp = subprocess.run(java_cmd(version, TOOLS[version]["verifiable-producer"], *bs, "--topic", topic_name,
                                     "--max-messages", str(n), "--acks", "-1", "--producer.config", str(cfg)),
                            stdout=f, stderr=subprocess.PIPE, text=True, timeout=240)
    assert cp.returncode == 0, cp.stderr[-3000:]
    acked: dict[int, list[tuple[int, int]]] = defaultdict(list)
    errors, summary = [], None
    with open(out) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            ev = json.loads(line)
            name = ev.get("name")
            if name == "producer_send_success":
                acked[ev["partition"]].append((ev["offset"], int(ev["value"])))
            elif name == "producer_send_error":
                errors.append(ev)
            elif name == "tool_data":
                summary = ev
    assert not errors, errors[:5]
    assert summary is not None and summary["acked"] == n and summary["sent"] == n, summary
    values = sorted(v for lst in acked.values() for _o, v in lst)
    assert values == list(range(n)), "acknowledged values are not exactly 0..n-1"
    for part, lst in acked.items():
        lst.sort()
        offs = [o for o, _v in lst]
        assert offs == list(range(len(offs))), f"partition {part}: acknowledged offsets have gaps or repeats"
        vals = [v for _o, v in lst]
        assert vals == sorted(vals), f"partition {part}: values out of send order"

    cons = subprocess.run(
        java_cmd(version, TOOLS[version]["verifiable-consumer"], *bs, "--topic", topic_name,
                 "--group-id", "vc-" + topic_name, "--max-messages", str(n), "--reset-policy", "earliest"),
        capture_output=True, text=True, timeout=240)
    assert cons.returncode == 0, cons.stderr[-3000:]
    ranges: dict[int, list[tuple[int, int]]] = defaultdict(list)
    committed: dict[int, int] = {}
    total = 0
    for line in cons.stdout.splitlines():
        if not line.startswith("{"):
            continue
        ev = json.loads(line)
        if ev.get("name") == "records_consumed":
            total += ev["count"]
            for p in ev["partitions"]:
                assert p["count"] == p["maxOffset"] - p["minOffset"] + 1, p
                ranges[p["partition"]].append((p["minOffset"], p["maxOffset"]))
        elif ev.get("name") == "offsets_committed":
            assert ev.get("success", True), ev
            for p in ev.get("offsets", []):
                committed[p["partition"]] = max(committed.get(p["partition"], 0), p["offset"])
    assert total == n, f"consumed {total} of {n}"
    for part, lst in acked.items():
        rs = sorted(ranges[part])
        covered = []
        for lo, hi in rs:
            covered.extend(range(lo, hi + 1))
        assert covered == list(range(len(lst))), f"partition {part}: consumed offsets lost or duplicated"
        assert committed.get(part) == len(lst), f"partition {part}: committed {committed.get(part)}"
    time.sleep(0)
