"""Client traffic for zk/tests/apache_quorum.rs, run against the Apache ZooKeeper ensemble that a
Kiln observer has joined.

    apache_quorum_traffic.py pre  HOSTS   writes before the observer joins (its sync is a SNAP)
    apache_quorum_traffic.py post HOSTS   every kind of write, once the observer serves
    apache_quorum_traffic.py dump HOSTS   the subtree /kiln as JSON: path -> data, stat, ACL

Output is line based, for a test without a JSON parser: `key value` lines, and for `dump` one
tab-separated line per node (path, data hex or `-`, the stat fields, the ACL). Every wait is
bounded.
"""

import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.protocol.serialization import Create2
from kazoo.security import make_acl, make_digest_acl, OPEN_ACL_UNSAFE

TIMEOUT = 10.0


class CreateContainer(Create2):
    """createContainer (opcode 19): create2's body with the CONTAINER flag; kazoo has no call."""

    type = 19


def create_container(zk: KazooClient, path: str, data: bytes) -> None:
    result = zk.handler.async_result()
    zk._call(CreateContainer(path, data, OPEN_ACL_UNSAFE, 4), result)
    result.get(timeout=TIMEOUT)


def client(hosts: str) -> KazooClient:
    # Authenticated as the digest user some ACLs name, so every node can be read back.
    zk = KazooClient(hosts=hosts, timeout=TIMEOUT, connection_retry=None, command_retry=None,
                     auth_data=[("digest", "kiln:secret")])
    zk.start(timeout=TIMEOUT)
    return zk


def pre(hosts: str) -> dict:
    zk = client(hosts)
    zk.create("/kiln", b"root of the quorum test")
    for i in range(5):
        zk.create(f"/kiln/pre-{i}", f"before the observer {i}".encode())
    zk.create("/kiln/pre-acl", b"restricted", acl=[make_acl("world", "anyone", read=True, write=True, admin=True)])
    zk.set("/kiln/pre-0", b"changed before the observer")
    zk.delete("/kiln/pre-4")
    zk.create("/kiln/pre-seq-", b"s", sequence=True)
    create_container(zk, "/kiln/pre-cont", b"")
    zk.create("/kiln/pre-cont/child", b"keeps the container")
    stat = zk.exists("/kiln/pre-cont/child")
    zk.stop()
    zk.close()
    return [f"last_zxid {stat.czxid}"]


def post(hosts: str) -> dict:
    counts = {}

    def count(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    zk = client(hosts)
    eph = client(hosts)
    # Persistent, with data and ACLs.
    zk.create("/kiln/post", b"after the observer joined")
    count("create")
    for i in range(5):
        zk.create(f"/kiln/post/p{i}", bytes([i]) * (i * 10))
        count("create")
    zk.create("/kiln/post/empty", b"")
    count("create")
    digest = make_digest_acl("kiln", "secret", all=True)
    zk.create("/kiln/post/acl", b"two ACL entries",
              acl=[digest, make_acl("world", "anyone", read=True)])
    count("create")
    zk.create("/kiln/post/acl-open", b"x", acl=OPEN_ACL_UNSAFE)
    count("create")
    # Sequential, ephemeral, ephemeral sequential, container.
    for _ in range(4):
        zk.create("/kiln/post/seq-", b"seq", sequence=True)
        count("create")
    for i in range(3):
        eph.create(f"/kiln/post/eph-{i}", f"ephemeral {i}".encode(), ephemeral=True)
        count("create")
    eph.create("/kiln/post/ephseq-", b"es", ephemeral=True, sequence=True)
    count("create")
    create_container(zk, "/kiln/post/cont", b"container data")
    count("create")
    zk.create("/kiln/post/cont/c1", b"")
    count("create")
    # setData, with and without a version.
    for i in range(5):
        zk.set("/kiln/post/p0", f"version {i + 1}".encode())
        count("setData")
    zk.set("/kiln/post/p1", b"checked", version=0)
    count("setData")
    try:
        zk.set("/kiln/post/p1", b"stale", version=0)
    except BadVersionError:
        count("error")
    # setACL.
    zk.set_acls("/kiln/post/p2", [make_acl("world", "anyone", read=True, write=True, admin=True)])
    count("setACL")
    zk.set_acls("/kiln/post/p2", OPEN_ACL_UNSAFE, version=1)
    count("setACL")
    zk.set_acls("/kiln/pre-acl", [digest])
    count("setACL")
    # delete.
    zk.delete("/kiln/post/p4")
    count("delete")
    zk.delete("/kiln/post/p3", version=0)
    count("delete")
    try:
        zk.delete("/kiln/post/missing")
    except NoNodeError:
        count("error")
    try:
        zk.create("/kiln/post/p0", b"exists")
    except NodeExistsError:
        count("error")
    # multi: successful, then failing (a version check that does not hold).
    t = zk.transaction()
    t.create("/kiln/post/multi-a", b"from a multi")
    t.create("/kiln/post/multi-seq-", b"", sequence=True)
    t.set_data("/kiln/post/p1", b"set in a multi")
    t.check("/kiln/post/p0", 5)
    t.delete("/kiln/post/empty")
    res = t.commit()
    assert not any(isinstance(r, Exception) for r in res), res
    count("multi_ok")
    t = zk.transaction()
    t.create("/kiln/post/multi-never", b"rolled back")
    t.check("/kiln/post/p0", 99)
    res = t.commit()
    assert any(isinstance(r, Exception) for r in res), res
    count("multi_failed")
    t = zk.transaction()
    t.delete("/kiln/post/p1")
    t.create("/kiln/post/multi-b", b"second multi")
    res = t.commit()
    assert not any(isinstance(r, Exception) for r in res), res
    count("multi_ok")
    # The container loses its last child: the leader deletes it later (deleteContainer).
    zk.delete("/kiln/post/cont/c1")
    count("delete")
    # The leader's container manager (checkIntervalMs is short in the test's zoo.cfg) deletes
    # the emptied container with a deleteContainer txn; wait for it so the tree is final.
    deadline = time.monotonic() + 15
    while zk.exists("/kiln/post/cont") is not None:
        if time.monotonic() > deadline:
            raise SystemExit("the container /kiln/post/cont was not deleted within 15 s")
        time.sleep(0.1)
    count("deleteContainer")
    # Closing the ephemeral session deletes its four ephemerals in the closeSession txn.
    eph.stop()
    eph.close()
    count("closeSession")
    zk.create("/kiln/post/last", b"the last write")
    count("create")
    stat = zk.exists("/kiln/post/last")
    zk.stop()
    zk.close()
    return [f"count {k} {v}" for k, v in sorted(counts.items())] + [
        f"last_zxid {stat.czxid}"]


def dump(hosts: str) -> dict:
    zk = client(hosts)
    out = []

    def walk(path: str) -> None:
        data, stat = zk.get(path)
        acls = zk.get_acls(path)[0]
        fields = [path, "-" if data is None else (data.hex() or "."),
                  stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime,
                  stat.version, stat.cversion, stat.aversion, stat.ephemeralOwner,
                  stat.numChildren, stat.dataLength,
                  ",".join(f"{a.perms}:{a.id.scheme}:{a.id.id}" for a in acls)]
        out.append("\t".join(str(f) for f in fields))
        for child in sorted(zk.get_children(path)):
            walk(f"{path}/{child}")

    walk("/kiln")
    zk.stop()
    zk.close()
    return out


def main() -> None:
    cmd, hosts = sys.argv[1], sys.argv[2]
    result = {"pre": pre, "post": post, "dump": dump}[cmd](hosts)
    for line in result:
        print(line)


if __name__ == "__main__":
    main()
