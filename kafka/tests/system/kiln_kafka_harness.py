"""Brokers and tools for the Kafka system tests.

A test gets a running broker through the `broker` fixture (conftest.py) and talks to it only through
its bootstrap address, so every test runs unchanged against Kiln (`kiln kafka --config ...`, the
default) or against Apache Kafka (`KILN_TEST_AGAINST=apache` for 4.x in KRaft mode,
`KILN_TEST_AGAINST=apache-3.9` for 3.9 with a ZooKeeper).

Apache Kafka's jars come from Maven Central (kafka/tests/peers/kafka-*/pom.xml, copied into
$KILN_ROOT/.peers/kafka-3.9/lib and $KILN_ROOT/.peers/kafka-4/lib by kafka/tests/setup.sh).
"""

from __future__ import annotations

import base64
import os
import resource
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(os.environ.get("KILN_ROOT", Path(__file__).resolve().parents[3]))
PEERS = ROOT / ".peers"
KAFKA_LIBS = {"3.9": PEERS / "kafka-3.9" / "lib", "4": PEERS / "kafka-4" / "lib"}
TARGET = os.environ.get("KILN_TEST_AGAINST", "kiln").strip().lower() or "kiln"
JAVA_OPTS = ["-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
BROKER_JAVA_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]

LOG4J2 = """status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.err.ref = STDERR
"""
LOG4J1 = """log4j.rootLogger={level}, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


def free_port() -> int:
    """A port that was free a moment ago (never 9092 or 2181)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in (9092, 2181, 9093):
            return port


def _log_config(workdir: Path, version: str, level: str) -> list[str]:
    """JVM flags that point log4j (1 for 3.9, 2 for 4.x) at a config logging to stderr."""
    workdir.mkdir(parents=True, exist_ok=True)
    if version == "3.9":
        p = workdir / f"log4j-{level}.properties"
        p.write_text(LOG4J1.format(level=level))
        return [f"-Dlog4j.configuration=file:{p}"]
    p = workdir / f"log4j2-{level}.properties"
    p.write_text(LOG4J2.format(level=level))
    return [f"-Dlog4j2.configurationFile={p}"]


_TOOL_LOGDIR = Path(tempfile.mkdtemp(prefix="kiln-kafka-toollog-"))


def java_cmd(version: str, main: str, *args: str, broker: bool = False) -> list[str]:
    """The command line that runs `main` from Apache Kafka `version` ("3.9" or "4")."""
    lib = KAFKA_LIBS[version]
    opts = BROKER_JAVA_OPTS if broker else JAVA_OPTS
    return ["java", *opts, *_log_config(_TOOL_LOGDIR, version, "WARN"), "-cp", f"{lib}/*", main, *args]


def run_tool(version: str, main: str, *args: str, timeout: float = 120, check: bool = True,
             input: str | None = None) -> subprocess.CompletedProcess:
    """Runs an Apache Kafka tool to completion; raises with its output when it fails and `check`."""
    cmd = java_cmd(version, main, *args)
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and cp.returncode != 0:
        raise AssertionError(f"{main} {' '.join(args)} exited {cp.returncode}\nstdout:\n{cp.stdout[-4000:]}\n"
                             f"stderr:\n{cp.stderr[-4000:]}")
    return cp


# Main classes that moved between 3.9 and 4.x.
TOOLS = {
    "3.9": {
        "console-producer": "kafka.tools.ConsoleProducer",
        "api-versions": "kafka.admin.BrokerApiVersionsCommand",
    },
    "4": {
        "console-producer": "org.apache.kafka.tools.ConsoleProducer",
        "api-versions": "org.apache.kafka.tools.BrokerApiVersionsCommand",
    },
}
for _v in TOOLS.values():
    _v.update({
        "topics": "org.apache.kafka.tools.TopicCommand",
        "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "configs": "kafka.admin.ConfigCommand",
        "dump-log": "kafka.tools.DumpLogSegments",
        "verifiable-producer": "org.apache.kafka.tools.VerifiableProducer",
        "verifiable-consumer": "org.apache.kafka.tools.VerifiableConsumer",
        "storage": "kafka.tools.StorageTool",
    })


def api_versions_probe(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the port answers an ApiVersions v0 request with a well-formed response."""
    body = struct.pack(">hhih", 18, 0, 1, 4) + b"kiln"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            hdr = _recv_exact(s, 4)
            (n,) = struct.unpack(">i", hdr)
            if n < 6 or n > 1 << 20:
                return False
            resp = _recv_exact(s, n)
            (corr,) = struct.unpack(">i", resp[:4])
            return corr == 1
    except OSError:
        return False


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


class BrokerError(RuntimeError):
    pass


class Broker:
    """One single-node broker (Kiln or Apache Kafka) on random ports, data in a temp dir."""

    kind = "?"

    def __init__(self, workdir: Path, extra: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dirs = self.workdir / "data"
        self.log_dirs.mkdir(exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.extra = dict(extra or {})
        self.proc: subprocess.Popen | None = None
        self.stdout_path = self.workdir / "broker.out"
        self.starts = 0
        # RLIMIT_NOFILE of the broker process (None: inherited).
        self.nofile: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def properties(self) -> dict[str, str]:
        listener = f"PLAINTEXT://{self.bootstrap}"
        props = {
            "broker.id": "0",
            "listeners": listener,
            "advertised.listeners": listener,
            "log.dirs": str(self.log_dirs),
            "num.partitions": "4",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        props.update(self.extra)
        return props

    def write_properties(self, props: dict[str, str]) -> Path:
        p = self.workdir / "server.properties"
        p.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return p

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time work before the first start (formatting storage)."""

    def start(self, timeout: float = 90) -> None:
        if self.starts == 0:
            self.prepare()
        self.starts += 1
        out = open(self.stdout_path, "ab")
        out.write(f"\n===== start {self.starts} =====\n".encode())
        out.flush()
        nofile = self.nofile

        def limits() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True,
                                     preexec_fn=limits)
        out.close()
        self.wait_ready(timeout)

    def output_tail(self, n: int = 3000) -> str:
        try:
            return self.stdout_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerError(f"{self.kind} exited with {self.proc.returncode} before it answered on "
                                  f"{self.bootstrap}; output:\n{self.output_tail()}")
            if api_versions_probe(self.host, self.port) and self._metadata_ready():
                return
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"{self.kind} did not answer on {self.bootstrap} within {timeout}s; output:\n"
                          f"{self.output_tail()}")

    def _metadata_ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=3)
            return len(md.brokers) > 0
        except Exception:  # noqa: BLE001 - any failure just means "not yet"
            return False

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.proc = None

    def kill9(self) -> None:
        p = self.proc
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()

    def segment_files(self, topic: str, partition: int) -> list[Path]:
        d = self.log_dirs / f"{topic}-{partition}"
        return sorted(d.glob("*.log"))


class KilnBroker(Broker):
    kind = "kiln"

    def __init__(self, workdir: Path, extra: dict[str, str] | None = None):
        super().__init__(workdir, extra)
        self.bin = os.environ.get("KILN_BIN", str(ROOT / "target" / "release" / "kiln"))

    def properties(self) -> dict[str, str]:
        props = super().properties()
        # Kiln reads the seed's keys; the KRaft/transaction keys are Apache-only.
        for k in ("transaction.state.log.replication.factor", "transaction.state.log.min.isr"):
            props.pop(k, None)
        return props

    def command(self) -> list[str]:
        if not Path(self.bin).exists():
            raise BrokerError(f"KILN_BIN {self.bin} does not exist (build it with cargo build --release -p kiln)")
        return [self.bin, "kafka", "--config", str(self.write_properties(self.properties()))]


class ApacheKafka4(Broker):
    """Apache Kafka 4.x, one node that is both broker and KRaft controller."""

    kind = "apache-kafka-4"

    def __init__(self, workdir: Path, extra: dict[str, str] | None = None):
        super().__init__(workdir, extra)
        self.controller_port = free_port()

    def properties(self) -> dict[str, str]:
        props = super().properties()
        props.pop("broker.id")
        props.update({
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dirs / "kraft"),
        })
        props.update(self.extra)
        return props

    def prepare(self) -> None:
        cfg = self.write_properties(self.properties())
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        run_tool("4", TOOLS["4"]["storage"], "format", "-t", cluster, "-c", str(cfg), timeout=120)

    def command(self) -> list[str]:
        cfg = self.write_properties(self.properties())
        return ["java", *BROKER_JAVA_OPTS, *_log_config(self.workdir, "4", "INFO"),
                "-cp", f"{KAFKA_LIBS['4']}/*", "kafka.Kafka", str(cfg)]

    def segment_files(self, topic: str, partition: int) -> list[Path]:
        return sorted((self.log_dirs / "kraft" / f"{topic}-{partition}").glob("*.log"))


class ApacheKafka39(Broker):
    """Apache Kafka 3.9 in ZooKeeper mode, with Debian's Apache ZooKeeper beside it."""

    kind = "apache-kafka-3.9"

    def __init__(self, workdir: Path, extra: dict[str, str] | None = None):
        super().__init__(workdir, extra)
        self.zk_port = free_port()
        self.zk: subprocess.Popen | None = None

    def properties(self) -> dict[str, str]:
        props = super().properties()
        props["zookeeper.connect"] = f"127.0.0.1:{self.zk_port}"
        props.update(self.extra)
        return props

    def _start_zk(self) -> None:
        if self.zk is not None and self.zk.poll() is None:
            return
        zkdata = self.workdir / "zk"
        zkdata.mkdir(exist_ok=True)
        out = open(self.workdir / "zk.out", "ab")
        self.zk = subprocess.Popen(
            ["java", "-Xmx256m", "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.4lw.commands.whitelist=*",
             "-cp", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
             "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.zk_port), str(zkdata)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.zk_port), timeout=1) as s:
                    s.sendall(b"ruok")
                    if s.recv(4) == b"imok":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise BrokerError("ZooKeeper did not start")

    def start(self, timeout: float = 90) -> None:
        self._start_zk()
        super().start(timeout)

    def command(self) -> list[str]:
        cfg = self.write_properties(self.properties())
        return ["java", *BROKER_JAVA_OPTS, *_log_config(self.workdir, "3.9", "INFO"),
                "-cp", f"{KAFKA_LIBS['3.9']}/*", "kafka.Kafka", str(cfg)]

    def close(self) -> None:
        super().close()
        if self.zk is not None:
            try:
                os.killpg(self.zk.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.zk.wait(30)
            self.zk = None


def broker_class():
    if TARGET in ("apache", "apache-4", "kafka", "kafka-4"):
        return ApacheKafka4
    if TARGET in ("apache-3.9", "kafka-3.9"):
        return ApacheKafka39
    if TARGET == "kiln":
        return KilnBroker
    raise ValueError(f"KILN_TEST_AGAINST={TARGET!r}: use kiln, apache (4.x) or apache-3.9")


def wait_until(pred, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
