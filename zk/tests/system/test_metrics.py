"""The Prometheus metrics endpoint (`metricsProvider.httpPort`): Kiln serves ZooKeeper's metric
names in the text exposition format at `/metrics` and `/`, and the values follow what clients do.

No differential check against Apache ZooKeeper: Debian's ZooKeeper 3.8 packages do not ship the
`zookeeper-prometheus-metrics` provider jar (nor its Prometheus client and Jetty dependencies), so
an Apache server here cannot start the endpoint. The names are ZooKeeperServer's registered gauges
and the `digest_mismatches_count` counter of ServerMetrics, as in ZooKeeper 3.8's sources.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.request

import pytest
from kazoo.client import KazooClient

from zk_harness import free_port

pytestmark = pytest.mark.timeout(120)

PROVIDER = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider"
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
TYPES = {"gauge", "counter", "summary", "histogram", "untyped"}


def parse_exposition(text: str) -> dict[str, tuple[str, float]]:
    """name -> (type, value) for the unlabelled samples of a text exposition; fails on a malformed
    line, a repeated name, or a sample that comes before its `# TYPE` line."""
    types: dict[str, str] = {}
    samples: dict[str, tuple[str, float]] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name = line[len("# HELP "):].split(" ", 1)[0]
            assert NAME.match(name), line
        elif line.startswith("# TYPE "):
            name, kind = line[len("# TYPE "):].split(" ")
            assert NAME.match(name) and kind in TYPES, line
            assert name not in types, f"second TYPE: {line}"
            assert name not in samples, f"TYPE after its sample: {line}"
            types[name] = kind
        elif line.startswith("#"):
            continue
        else:
            name, value = line.split(" ")
            assert NAME.match(name), line
            assert name in types, f"sample before its TYPE: {line}"
            assert name not in samples, f"second sample: {line}"
            samples[name] = (types[name], float(value))
    return samples


def scrape(port: int, path: str = "/metrics") -> dict[str, tuple[str, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain"), resp.headers["Content-Type"]
        return parse_exposition(resp.read().decode())


def value(m: dict[str, tuple[str, float]], name: str) -> float:
    assert name in m, f"{name} not exported: {sorted(m)}"
    return m[name][1]


def wait_for(port: int, cond, timeout: float = 10.0) -> dict[str, tuple[str, float]]:
    """Scrapes until cond(metrics) holds (session closes reach the tree asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(port)
        if cond(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def test_metrics_follow_znodes_watches_ephemerals_and_sessions(zk_server_factory):
    mport = free_port()
    srv = zk_server_factory("kiln", extra={
        "metricsProvider.className": PROVIDER,
        "metricsProvider.httpPort": str(mport),
        "metricsProvider.httpHost": "127.0.0.1",
        "metricsProvider.exportJvmInfo": "false",
    }).start()
    base = scrape(mport)
    for name in ["znode_count", "watch_count", "ephemerals_count", "approximate_data_size",
                 "num_alive_connections", "outstanding_requests", "packets_received", "packets_sent",
                 "global_sessions", "avg_latency", "max_latency", "min_latency"]:
        assert base[name][0] == "gauge", (name, base[name])
    assert base["digest_mismatches_count"] == ("counter", 0.0)
    assert value(base, "znode_count") >= 1  # at least "/"
    assert value(base, "watch_count") == 0
    assert value(base, "ephemerals_count") == 0
    assert value(base, "global_sessions") == 0
    assert value(base, "num_alive_connections") == 0
    # `/` answers the same exposition as `/metrics`.
    assert set(scrape(mport, "/")) == set(base)

    a = KazooClient(hosts=srv.hosts)
    b = KazooClient(hosts=srv.hosts)
    a.start(10)
    b.start(10)
    try:
        a.create("/m/p1", b"x" * 100, makepath=True)
        a.create("/m/p2", b"y" * 50)
        a.create("/m/e1", b"", ephemeral=True)
        b.create("/m/e2", b"z", ephemeral=True)
        b.get("/m/p1", watch=lambda ev: None)
        b.exists("/m/none", watch=lambda ev: None)
        b.get_children("/m", watch=lambda ev: None)
        m = scrape(mport)
        assert value(m, "znode_count") == value(base, "znode_count") + 5
        assert value(m, "ephemerals_count") == 2
        assert value(m, "watch_count") == 3
        assert value(m, "global_sessions") == 2
        assert value(m, "num_alive_connections") == 2
        assert value(m, "approximate_data_size") >= value(base, "approximate_data_size") + 151
        assert value(m, "packets_received") >= value(base, "packets_received") + 7
        assert value(m, "packets_sent") >= value(base, "packets_sent") + 7
        assert value(m, "max_latency") >= value(m, "avg_latency") >= value(m, "min_latency") >= 0
        assert value(m, "outstanding_requests") >= 0

        # Closing b's session removes its ephemeral and its watches.
        b.stop()
        b.close()
        b = None
        m = wait_for(mport, lambda m: value(m, "global_sessions") == 1)
        assert value(m, "global_sessions") == 1
        assert value(m, "ephemerals_count") == 1
        assert value(m, "watch_count") == 0
        assert value(m, "znode_count") == value(base, "znode_count") + 4
    finally:
        for c in (a, b):
            if c is not None:
                c.stop()
                c.close()


def test_unbindable_metrics_port_leaves_the_client_port_serving(zk_server_factory):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        srv = zk_server_factory("kiln", extra={
            "metricsProvider.httpPort": str(port),
            "metricsProvider.httpHost": "127.0.0.1",
        }).start()
        zk = KazooClient(hosts=srv.hosts)
        zk.start(10)
        try:
            zk.create("/still-serving", b"")
            assert zk.exists("/still-serving") is not None
        finally:
            zk.stop()
            zk.close()
        assert "metrics endpoint not started" in srv.tail(200), srv.tail()
