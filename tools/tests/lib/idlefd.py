"""Idle TCP connections for the connection-flood tests of both servers.

`open_idle(port, sources, per_source)` opens non-blocking connections from each loopback source
address that never send a byte; `closed_by_peer(sock)` says whether the server has closed one.
"""

from __future__ import annotations

import select
import socket


def open_idle(port: int, sources: list[str], per_source: int, host: str = "127.0.0.1") -> list[socket.socket]:
    socks = []
    for src in sources:
        for _ in range(per_source):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((src, 0))
            s.setblocking(False)
            s.connect_ex((host, port))
            socks.append(s)
    return socks


def closed_by_peer(s: socket.socket) -> bool:
    r, _, x = select.select([s], [], [s], 0)
    if not r and not x:
        return False
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
