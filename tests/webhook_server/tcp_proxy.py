"""A TCP proxy for fault tests: forwards 127.0.0.1:<port> to a target, and can be switched to

- ``hang()``: nothing more is forwarded in either direction and new connections get no answer, while
  every socket stays open (a network partition: packets dropped, no reset, no FIN);
- ``refuse()``: new connections are closed at once and open ones are reset (the database is down);
- ``heal()``: forwarding resumes; held bytes are delivered, as TCP retransmission would after a
  partition.

Threads, loopback only, bounded by the connections its clients open.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Literal

from sqlalchemy.engine import make_url

Mode = Literal["pass", "hang", "refuse"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.mode = "hang"

    def heal(self) -> None:
        self.mode = "pass"

    def refuse(self) -> None:
        self.mode = "refuse"
        with self._lock:
            socks, self._sockets = self._sockets, []
        for s in socks:
            _reset(s)

    def close(self) -> None:
        self._closed = True
        self.refuse()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                _reset(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.append(client)
        while self.mode == "hang" and not self._closed:  # a partition: the handshake gets no answer
            select.select([], [], [], 0.05)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._sockets.append(upstream)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closed:
                if self.mode == "hang":
                    select.select([], [], [], 0.05)  # hold: leave the bytes in the kernel's buffers
                    continue
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            _reset(src)
            _reset(dst)


def _reset(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()


@contextlib.contextmanager
def behind_proxy(url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the database of URL, and URL pointed at it (the password kept)."""
    parsed = make_url(url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    try:
        yield proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.close()
