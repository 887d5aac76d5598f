"""Kiln as an observer of an Apache ZooKeeper 3.8 ensemble, over ZooKeeper's own quorum protocol.

Three Apache ZooKeeper servers (Debian's 3.8, real processes) form the voting ensemble; a Kiln
server joins as `server.4=...:observer`. It must find the leader by fast leader election,
synchronise (SNAP of the data written before it joined), then follow every committed txn with
the tree digest the leader sends matching its own, serve reads and watches from it, forward
writes, session opens and closes and sync() to the leader, and follow a new leader after the old
one is killed with SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import make_digest_acl

from zk_harness import KILN_BIN, ZK_CLASSPATH, four_letter

TICK_MS = 500


def quiet_port() -> int:
    """A free port below the kernel's ephemeral range (32768-60999), so that no outgoing
    connection takes it as its source port while a member that owns it is restarting."""
    import random
    import socket
    while True:
        port = random.randint(10000, 30000)
        with socket.socket() as sk:
            try:
                sk.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


class Member:
    """One ensemble member: an Apache QuorumPeerMain or a Kiln observer."""

    def __init__(self, kind: str, sid: int, root: Path, lines: list[str], observer: bool = False):
        self.kind, self.sid, self.observer = kind, sid, observer
        self.dir = root / f"s{sid}"
        self.data = self.dir / "data"
        self.data.mkdir(parents=True)
        (self.data / "myid").write_text(f"{sid}\n")
        self.port = int(lines[sid - 1].split(";")[1])
        cfg = [
            f"tickTime={TICK_MS}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={self.data}",
            f"clientPort={self.port}",
            "clientPortAddress=127.0.0.1",
            "4lw.commands.whitelist=*",
            "admin.enableServer=false",
            "maxClientCnxns=0",
        ]
        if observer:
            cfg.append("peerType=observer")
        cfg += [line.split(";")[0] for line in lines]
        self.cfg = self.dir / "zoo.cfg"
        self.cfg.write_text("\n".join(cfg) + "\n")
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Member":
        if self.kind == "apache":
            args = ["java", "-Xmx256m", f"-Dzookeeper.log.dir={self.dir}", "-cp", ZK_CLASSPATH,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(self.cfg)]
        else:
            args = [KILN_BIN, "zk", "--config", str(self.cfg)]
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
        return self

    def serving(self) -> bool:
        """Whether the server takes client sessions (an unsynchronised member closes them)."""
        zk = KazooClient(hosts=f"127.0.0.1:{self.port}", timeout=2.0, connection_retry={"max_tries": 0})
        try:
            zk.start(timeout=3)
            return True
        except Exception:
            return False
        finally:
            # A client that failed to start keeps retrying in the background unless stopped.
            zk.stop()
            zk.close()

    def mode(self) -> str:
        try:
            for line in four_letter(self.port, "srvr", 1.0).splitlines():
                if line.startswith("Mode:"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return ""

    def mntr(self) -> dict[str, str]:
        out = {}
        for line in four_letter(self.port, "mntr", 2.0).splitlines():
            k, _, v = line.partition("\t")
            out[k] = v
        return out

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for(what: str, cond, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(params=[4, 1], ids=["observer-id-above-voters", "observer-id-below-voters"])
def ensemble(request):
    yield from make_ensemble(request.param)


def make_ensemble(obs_sid: int):
    if shutil.which("java") is None or not Path("/usr/share/java/zookeeper.jar").exists():
        pytest.fail("Apache ZooKeeper 3.8 (Debian package zookeeper) and java are needed: run zk/tests/setup.sh")
    if not os.path.exists(KILN_BIN):
        pytest.fail(f"KILN_BIN {KILN_BIN} does not exist (cargo build --release -p kiln)")
    root = Path(tempfile.mkdtemp(prefix="kiln-ensemble-"))
    # With the observer's id below the voters', the voters dial it (only the larger id's election
    # connection survives), so its election listener is exercised too.
    lines = []
    for sid in range(1, 5):
        role = ":observer" if sid == obs_sid else ""
        lines.append(f"server.{sid}=127.0.0.1:{quiet_port()}:{quiet_port()}{role};{quiet_port()}")
    members = [Member("apache", sid, root, lines) for sid in range(1, 5) if sid != obs_sid]
    members.append(Member("kiln", obs_sid, root, lines, observer=True))
    try:
        yield members
    except BaseException:
        raise
    finally:
        for m in members:
            if m.kind == "kiln":
                print(f"--- {m.kind} server {m.sid} log ---\n{m.tail(60)}")
        for m in members:
            m.stop()
        shutil.rmtree(root, ignore_errors=True)


def client(m: Member) -> KazooClient:
    zk = KazooClient(hosts=f"127.0.0.1:{m.port}", timeout=10.0)
    zk.start(timeout=30)
    return zk


def leader_of(apaches: list[Member]) -> Member:
    return wait_for("an Apache leader", lambda: next((m for m in apaches if m.mode() == "leader"), None))


def settle(zk_kiln: KazooClient, zk_apache: KazooClient, path: str, want: bytes):
    """sync() on the Kiln side, then the value written through Apache must be there."""
    def seen():
        zk_kiln.sync(path)
        try:
            return zk_kiln.get(path)[0] == want
        except NoNodeError:
            return False
    wait_for(f"{path} = {want!r} on the observer", seen, timeout=20)


def test_kiln_observer_follows_an_apache_ensemble(ensemble):
    apaches, kiln = ensemble[:3], ensemble[3]
    for m in apaches:
        m.start()
    leader = leader_of(apaches)
    za = client(leader)
    # Data written before the observer joins reaches it in the synchronisation.
    za.create("/before", b"x" * 100)
    for i in range(50):
        za.create(f"/before/n{i}", str(i).encode())
    za.create("/before/eph", b"e", ephemeral=True)
    za.set_acls("/before/n0", [make_digest_acl("u", "p", all=True)])

    kiln.start()
    wait_for("the Kiln observer to serve", lambda: kiln.mode() == "observer" and kiln.serving(), timeout=60)
    # `kiln zk status` prints what zkServer.sh status prints, for Kiln and Apache members alike.
    st = subprocess.run([KILN_BIN, "zk", "status", "--config", str(kiln.cfg)], capture_output=True, text=True, timeout=30)
    assert st.returncode == 0 and "Mode: observer" in st.stdout, st
    st = subprocess.run([KILN_BIN, "zk", "status", "--config", str(leader.cfg)], capture_output=True, text=True, timeout=30)
    assert st.returncode == 0 and "Mode: leader" in st.stdout, st
    zk = client(kiln)
    assert zk.get("/before")[0] == b"x" * 100
    assert sorted(zk.get_children("/before")) == sorted(za.get_children("/before"))
    assert zk.exists("/before/eph").ephemeralOwner == za.exists("/before/eph").ephemeralOwner

    # A session opened on an Apache follower moves to the observer (REVALIDATE makes the observer
    # its owner at the leader; without it the leader answers SESSIONMOVED to writes through Kiln).
    follower = next(m for m in apaches if m.mode() == "follower")
    zf = client(follower)
    zf.create("/moved-eph", b"m", ephemeral=True)
    session, passwd = zf.client_id
    moved = KazooClient(hosts=f"127.0.0.1:{kiln.port}", client_id=(session, passwd), timeout=10.0)
    moved.start(timeout=30)
    assert moved.client_id[0] == session
    moved.create("/moved-write", b"w")
    za.sync("/")
    assert za.get("/moved-write")[0] == b"w"
    assert za.exists("/moved-eph").ephemeralOwner == session
    moved.stop()  # closes the session through the observer: its ephemeral goes everywhere
    moved.close()
    wait_for("the moved session's ephemeral to go", lambda: za.exists("/moved-eph") is None, timeout=20)
    zf.stop()
    zf.close()

    # Writes through Apache, read from Kiln; a watch set on Kiln fires.
    fired = []
    zk.get("/before/n1", watch=lambda e: fired.append(e))
    za.set("/before/n1", b"changed")
    settle(zk, za, "/before/n1", b"changed")
    wait_for("the watch set on Kiln to fire", lambda: fired, timeout=10)
    assert fired[0].type == "CHANGED"

    # Writes through Kiln (forwarded to the leader), read from Apache.
    zk.create("/via-kiln", b"k")
    zk.create("/via-kiln/seq-", b"s", sequence=True)
    zk.create("/via-kiln/eph", b"e", ephemeral=True)
    stat = zk.set("/via-kiln", b"k2")
    assert stat.version == 1
    tx = zk.transaction()
    tx.create("/via-kiln/m1", b"1")
    tx.set_data("/via-kiln", b"k3")
    results = tx.commit()
    assert results[0] == "/via-kiln/m1", results
    assert results[1].version == 2, results
    zk.delete("/before/n2")
    za.sync("/")
    assert za.get("/via-kiln")[0] == b"k3"
    assert za.exists("/via-kiln/m1") is not None
    assert za.exists("/before/n2") is None
    assert len([c for c in za.get_children("/via-kiln") if c.startswith("seq-")]) == 1
    eph = za.exists("/via-kiln/eph")
    assert eph is not None and eph.ephemeralOwner == zk.client_id[0]
    # A failing multi through Kiln: nothing applied, the errors come back.
    bad = zk.transaction()
    bad.create("/via-kiln/m2", b"2")
    bad.delete("/does-not-exist")
    results = bad.commit()
    assert type(results[1]).__name__ == "NoNodeError", results
    assert za.exists("/via-kiln/m2") is None

    # Closing the Kiln client's session removes its ephemeral everywhere.
    zk.stop()
    zk.close()
    wait_for("the ephemeral of the closed session to go", lambda: za.exists("/via-kiln/eph") is None, timeout=20)

    m = kiln.mntr()
    assert m["zk_server_state"] == "observer"
    assert m["zk_peer_state"] == "observing - broadcast"
    assert m["zk_digest_mismatches_count"] == "0", kiln.tail()
    zk3 = client(kiln)
    zk3.sync("/")
    assert tree(zk3) == tree(za)
    zk3.stop()

    # The leader dies; the observer follows whoever leads next, and keeps the data.
    za.stop()
    za.close()
    leader.kill9()
    rest = [m for m in apaches if m is not leader]
    new_leader = leader_of(rest)
    wait_for("the observer to serve again", lambda: kiln.serving(), timeout=60)
    zn = client(new_leader)
    zn.create("/after-failover", b"f")
    zk2 = wait_for("a client session on the observer", lambda: _try_client(kiln), timeout=60)
    settle(zk2, zn, "/after-failover", b"f")
    assert zk2.get("/via-kiln")[0] == b"k3"
    assert kiln.mntr()["zk_digest_mismatches_count"] == "0", kiln.tail()
    log = "\n".join(m.log.read_text(errors="replace") for m in rest)
    assert "Digests are not matching" not in log
    zk2.stop()

    # kill -9 of the observer itself: it starts empty, resynchronises, and serves the same tree.
    kiln.kill9()
    zn.create("/while-observer-down", b"d")
    kiln.start()
    zk4 = wait_for("the restarted observer to take a session", lambda: _try_client(kiln), timeout=60)
    settle(zk4, zn, "/while-observer-down", b"d")
    assert tree(zk4) == tree(zn)
    assert kiln.mntr()["zk_digest_mismatches_count"] == "0", kiln.tail()
    zk4.stop()
    zn.stop()


def tree(zk: KazooClient, path: str = "/") -> dict[str, tuple]:
    """Every znode outside /zookeeper with its data and the Stat fields both servers share."""
    out = {}
    try:
        children = zk.get_children(path)
    except NoAuthError:  # /before/n0 is readable only with its digest (and has no children)
        return out
    for child in children:
        p = f"{path.rstrip('/')}/{child}"
        if p == "/zookeeper":
            continue
        try:
            data, st = zk.get(p)
        except NoAuthError:  # /before/n0 is readable only with its digest
            data, st = None, zk.exists(p)
        out[p] = (data, st.czxid, st.mzxid, st.pzxid, st.version, st.cversion, st.aversion,
                  st.ephemeralOwner, st.numChildren)
        out.update(tree(zk, p))
    return out


def _try_client(m: Member):
    zk = KazooClient(hosts=f"127.0.0.1:{m.port}", timeout=10.0)
    try:
        zk.start(timeout=5)
        return zk
    except Exception:
        zk.stop()
        zk.close()
        return None


def test_kafka_39_brokers_zookeeper_is_a_kiln_observer(tmp_path):
    """Apache Kafka 3.9 in ZooKeeper mode with zookeeper.connect naming only the Kiln observer:
    registration, controller election, topic creation, produce and consume all go through the
    observer's forwarding, watches and sessions, and survive a SIGKILL of the ensemble's leader."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "kafka" / "tests" / "system"))
    from kiln_kafka_harness import ApacheKafka39, KAFKA_LIBS  # noqa: E402
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    if not KAFKA_LIBS["3.9"].exists():
        pytest.fail(f"Apache Kafka 3.9 is needed in {KAFKA_LIBS['3.9']}: run kafka/tests/setup.sh")
    gen = make_ensemble(4)
    members = next(gen)
    try:
        apaches, kiln = members[:3], members[3]
        for m in apaches:
            m.start()
        leader = leader_of(apaches)
        kiln.start()
        wait_for("the Kiln observer to serve", lambda: kiln.serving(), timeout=60)

        class OnObserver(ApacheKafka39):
            def _start_zk(self) -> None:  # the ensemble is already running
                pass

        broker = OnObserver(tmp_path / "kafka")
        broker.zk_port = kiln.port
        try:
            broker.start(timeout=120)
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            admin.create_topics([NewTopic("t", num_partitions=3, replication_factor=1)])
            admin.close()

            def roundtrip(tag: str, n: int = 200) -> None:
                p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
                for i in range(n):
                    p.send("t", f"{tag}-{i}".encode())
                p.flush(60)
                p.close()
                # Partitions assigned by hand: no consumer group, so no __consumer_offsets topic
                # to create first (50 partitions through ZooKeeper, slow on a loaded machine).
                c = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                  consumer_timeout_ms=15000, group_id=None)
                c.assign([TopicPartition("t", p) for p in range(3)])
                c.seek_to_beginning()
                got = {m.value.decode() for m in c}
                c.close()
                want = {f"{tag}-{i}" for i in range(n)}
                assert want <= got, f"{len(want - got)} of {n} {tag} records not consumed"

            roundtrip("before")
            # What Kafka wrote through the observer is in the ensemble (read from the Apache leader).
            za = client(leader)
            assert za.exists("/brokers/ids/0") is not None
            assert za.exists("/brokers/topics/t") is not None
            assert za.exists("/controller") is not None
            za.stop()

            leader.kill9()
            rest = [m for m in apaches if m is not leader]
            leader_of(rest)
            wait_for("the observer to serve again", lambda: kiln.serving(), timeout=60)
            roundtrip("after")
            assert broker.proc.poll() is None, broker.output_tail()
            assert kiln.mntr()["zk_digest_mismatches_count"] == "0", kiln.tail()
        finally:
            broker.close()
    finally:
        gen.close()


def test_curator_recipes_through_a_kiln_observer():
    """Apache Curator 5.4's recipes (zk/tests/java/curator/CuratorChecks.java: mutex, leader latch,
    double barrier, recursive cache) with every session on the Kiln observer of an Apache ensemble:
    the locks, latches and barriers are ephemeral-sequential nodes and watches created through
    the observer's forwarding and fired by its INFORM apply."""
    from zk_harness import PEERS

    cp_file = PEERS / "curator.classpath"
    if not cp_file.exists():
        pytest.fail(f"{cp_file} is missing: run zk/tests/setup.sh")
    cp = cp_file.read_text().strip()
    gen = make_ensemble(4)
    members = next(gen)
    try:
        apaches, kiln = members[:3], members[3]
        for m in apaches:
            m.start()
        leader_of(apaches)
        kiln.start()
        wait_for("the Kiln observer to serve", lambda: kiln.serving(), timeout=60)
        for check in ["mutex", "leader", "barrier", "cache"]:
            proc = subprocess.run(["java", "-Xmx256m", "-cp", cp, "CuratorChecks", f"127.0.0.1:{kiln.port}", check],
                                  capture_output=True, text=True, timeout=240)
            assert proc.returncode == 0 and f"RESULT ok {check}" in proc.stdout, (
                f"{check}: rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{kiln.tail()}")
        assert kiln.mntr()["zk_digest_mismatches_count"] == "0", kiln.tail()
    finally:
        gen.close()
