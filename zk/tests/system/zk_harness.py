"""Start and stop ZooKeeper servers for the system tests: Apache ZooKeeper 3.8 (Debian) and Kiln.

Every server gets a random free port and its own data directory; callers stop what they start.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("KILN_ROOT", Path(__file__).resolve().parents[3]))
KILN_BIN = os.environ.get("KILN_BIN", str(ROOT / "target" / "release" / "kiln"))
ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
PEERS = ROOT / ".peers" / "zk"
# The password of this digest is "test" (the same super user kazoo's harness configures).
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
KINDS = ("apache", "kiln")


HERE = Path(__file__).resolve().parent


def read_list(name: str) -> dict[str, str]:
    """Reads a `test id | reason` list from this directory; '#' starts a comment line."""
    out = {}
    for line in (HERE / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, reason = line.partition("|")
        out[key.strip()] = reason.strip() or "no reason given"
    return out


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (never 2181)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 2181:
            return port


def four_letter(port: int, word: str, timeout: float = 2.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode(errors="replace")


class ZkServer:
    """One server process (Apache ZooKeeper or Kiln) with a zoo.cfg in its own directory."""

    def __init__(self, kind: str, workdir: Path | None = None, port: int | None = None, extra: dict | None = None,
                 nofile: int | None = None):
        assert kind in KINDS, kind
        self.kind = kind
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"zk-{kind}-"))
        self.datadir = self.workdir / "data"
        self.port = port or free_port()
        self.extra = extra or {}
        # RLIMIT_NOFILE of the server process (None: inherited).
        self.nofile = nofile
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "server.log"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_cfg(self) -> Path:
        self.datadir.mkdir(parents=True, exist_ok=True)
        cfg = {
            "tickTime": "2000",
            "dataDir": str(self.datadir),
            "clientPort": str(self.port),
            "maxClientCnxns": "0",
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
            "extendedTypesEnabled": "true",
        }
        if self.kind == "kiln":
            cfg["DigestAuthenticationProvider.superDigest"] = SUPER_DIGEST
        cfg.update(self.extra)
        path = self.workdir / "zoo.cfg"
        path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))
        return path

    def start(self, timeout: float = 30.0) -> "ZkServer":
        cfg = self.write_cfg()
        if self.kind == "apache":
            args = [
                "java", "-Xmx512m",
                "-Dzookeeper.admin.enableServer=false",
                "-Dzookeeper.4lw.commands.whitelist=*",
                f"-Dzookeeper.DigestAuthenticationProvider.superDigest={SUPER_DIGEST}",
                "-Dzookeeper.extendedTypesEnabled=true",
                f"-Dzookeeper.log.dir={self.workdir}",
                "-cp", ZK_CLASSPATH,
                "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg),
            ]
        else:
            if not os.path.exists(KILN_BIN):
                raise RuntimeError(f"KILN_BIN {KILN_BIN} does not exist (cargo build --release -p kiln)")
            args = [KILN_BIN, "zk", "--config", str(cfg)]
        logf = open(self.log, "ab")
        nofile = self.nofile

        def limits() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, preexec_fn=limits)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}: {self.tail()}")
            try:
                if four_letter(self.port, "ruok", 1.0).startswith("imok"):
                    # Apache answers ruok before the database is loaded; srvr fails until it serves.
                    if "Zxid" in four_letter(self.port, "srvr", 1.0):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} server did not come up on {self.port}: {self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
