"""A small, synchronous ZooKeeper wire-protocol client for differential tests.

It speaks the jute encoding directly (no client library in between), so a test sees every reply header
(xid, zxid, err), every body and every watch notification exactly as the server sent them, in order.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

# Opcodes (ZooDefs.OpCode).
CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_ACL, SET_ACL, GET_CHILDREN, SYNC = 1, 2, 3, 4, 5, 6, 7, 8, 9
PING, GET_CHILDREN2, CHECK, MULTI, CREATE2, CHECK_WATCHES, REMOVE_WATCHES = 11, 12, 13, 14, 15, 17, 18
CREATE_CONTAINER, CREATE_TTL, MULTI_READ = 19, 21, 22
AUTH, GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER, ADD_WATCH, WHO_AM_I, CLOSE = 100, 103, 104, 106, 107, -11

WORLD_ALL = [(31, "world", "anyone")]

STAT_FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion", "ephemeralOwner",
               "dataLength", "numChildren", "pzxid")


class Buf:
    def __init__(self) -> None:
        self.b = bytearray()

    def int(self, v: int) -> "Buf":
        self.b += struct.pack(">i", v)
        return self

    def long(self, v: int) -> "Buf":
        self.b += struct.pack(">q", v)
        return self

    def bool(self, v: bool) -> "Buf":
        self.b += b"\x01" if v else b"\x00"
        return self

    def buffer(self, v: bytes | None) -> "Buf":
        if v is None:
            return self.int(-1)
        self.int(len(v))
        self.b += v
        return self

    def str(self, v: str | None) -> "Buf":
        return self.buffer(None if v is None else v.encode())

    def acls(self, acls) -> "Buf":
        self.int(len(acls))
        for perms, scheme, ident in acls:
            self.int(perms).str(scheme).str(ident)
        return self


class Reader:
    def __init__(self, data: bytes) -> None:
        self.d = data
        self.o = 0

    def int(self) -> int:
        v = struct.unpack_from(">i", self.d, self.o)[0]
        self.o += 4
        return v

    def long(self) -> int:
        v = struct.unpack_from(">q", self.d, self.o)[0]
        self.o += 8
        return v

    def bool(self) -> bool:
        v = self.d[self.o] != 0
        self.o += 1
        return v

    def buffer(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        v = self.d[self.o:self.o + n]
        if len(v) != n:
            raise ValueError("truncated buffer")
        self.o += n
        return bytes(v)

    def str(self) -> str | None:
        v = self.buffer()
        return None if v is None else v.decode(errors="replace")

    def stat(self) -> dict:
        vals = struct.unpack_from(">qqqqiiiqiiq", self.d, self.o)
        self.o += 68
        return dict(zip(STAT_FIELDS, vals))

    def strings(self) -> list | None:
        n = self.int()
        if n < 0:
            return None
        return [self.str() for _ in range(n)]

    def acls(self) -> list:
        n = self.int()
        return [(self.int(), self.str(), self.str()) for _ in range(max(n, 0))]

    def rest(self) -> bytes:
        return bytes(self.d[self.o:])


# Request bodies ------------------------------------------------------------------------------------------

def create_body(path, data=b"", acls=WORLD_ALL, flags=0, ttl=None) -> bytes:
    b = Buf().str(path).buffer(data).acls(acls).int(flags)
    if ttl is not None:
        b.long(ttl)
    return bytes(b.b)


def path_watch(path, watch=False) -> bytes:
    return bytes(Buf().str(path).bool(watch).b)


def path_version(path, version=-1) -> bytes:
    return bytes(Buf().str(path).int(version).b)


def set_data_body(path, data, version=-1) -> bytes:
    return bytes(Buf().str(path).buffer(data).int(version).b)


def set_acl_body(path, acls, version=-1) -> bytes:
    return bytes(Buf().str(path).acls(acls).int(version).b)


def path_only(path) -> bytes:
    return bytes(Buf().str(path).b)


def path_int(path, v) -> bytes:
    return bytes(Buf().str(path).int(v).b)


def auth_body(scheme, auth: bytes) -> bytes:
    return bytes(Buf().int(0).str(scheme).buffer(auth).b)


def multi_body(ops) -> bytes:
    """ops: list of (opcode, body bytes)."""
    b = Buf()
    for op, body in ops:
        b.int(op).bool(False).int(-1)
        b.b += body
    b.int(-1).bool(True).int(-1)
    return bytes(b.b)


# Response decoding ---------------------------------------------------------------------------------------

def decode(op: int, body: bytes):
    r = Reader(body)
    if op in (CREATE,):
        return {"path": r.str()}
    if op in (CREATE2, CREATE_CONTAINER, CREATE_TTL):
        return {"path": r.str(), "stat": r.stat()}
    if op in (EXISTS, SET_DATA):
        return {"stat": r.stat()}
    if op == GET_DATA:
        return {"data": r.buffer(), "stat": r.stat()}
    if op == GET_ACL:
        return {"acl": r.acls(), "stat": r.stat()}
    if op == SET_ACL:
        return {"stat": r.stat()}
    if op == GET_CHILDREN:
        return {"children": sorted(r.strings() or [])}
    if op == GET_CHILDREN2:
        return {"children": sorted(r.strings() or []), "stat": r.stat()}
    if op == SYNC:
        return {"path": r.str()}
    if op == GET_EPHEMERALS:
        return {"ephemerals": sorted(r.strings() or [])}
    if op == GET_ALL_CHILDREN_NUMBER:
        return {"total": r.int()}
    if op == WHO_AM_I:
        n = r.int()
        return {"clients": [(r.str(), r.str()) for _ in range(max(n, 0))]}
    if op in (MULTI, MULTI_READ):
        results = []
        while True:
            typ, done, err = r.int(), r.bool(), r.int()
            if done:
                break
            if typ == -1:
                results.append({"type": -1, "err": r.int()})
            elif typ in (CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL):
                if typ == CREATE:
                    results.append({"type": typ, "path": r.str()})
                else:
                    results.append({"type": typ, "path": r.str(), "stat": r.stat()})
            elif typ == SET_DATA:
                results.append({"type": typ, "stat": r.stat()})
            elif typ == GET_DATA:
                results.append({"type": typ, "data": r.buffer(), "stat": r.stat()})
            elif typ == GET_CHILDREN:
                results.append({"type": typ, "children": sorted(r.strings() or [])})
            else:
                results.append({"type": typ})
        return {"results": results}
    rest = r.rest()
    return {"raw": rest.hex()} if rest else {}


@dataclass
class Reply:
    xid: int
    zxid: int
    err: int
    body: dict
    events: list = field(default_factory=list)  # notifications received before this reply


class ZkConn:
    """One session over one TCP connection, driven synchronously."""

    def __init__(self, host: str, port: int, timeout_ms: int = 30000, session_id: int = 0,
                 passwd: bytes = b"\x00" * 16, last_zxid: int = 0, io_timeout: float = 15.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=io_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.xid = 0
        self.events: list = []
        req = Buf().int(0).long(last_zxid).int(timeout_ms).long(session_id).buffer(passwd).bool(False)
        self._send(bytes(req.b))
        r = Reader(self._recv())
        self.proto = r.int()
        self.timeout = r.int()
        self.session_id = r.long()
        self.passwd = r.buffer()
        self.read_only = r.bool() if r.o < len(r.d) else None

    def _send(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def _recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed by server")
            out += chunk
        return bytes(out)

    def _recv(self) -> bytes:
        (n,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(n)

    def call(self, op: int, body: bytes = b"", xid: int | None = None) -> Reply:
        if xid is None:
            self.xid += 1
            xid = self.xid
        self._send(bytes(Buf().int(xid).int(op).b) + body)
        events = []
        while True:
            r = Reader(self._recv())
            rxid, zxid, err = r.int(), r.long(), r.int()
            if rxid == -1:
                events.append((r.int(), r.int(), r.str()))
                continue
            if rxid != xid:
                raise AssertionError(f"reply xid {rxid} for request xid {xid}")
            body_bytes = r.rest()
            decoded = decode(op, body_bytes) if err == 0 else ({"raw": body_bytes.hex()} if body_bytes else {})
            self.events.extend(events)
            return Reply(rxid, zxid, err, decoded, events)

    def close_session(self) -> Reply:
        rep = self.call(CLOSE)
        self.sock.close()
        return rep

    def drop(self) -> None:
        self.sock.close()
