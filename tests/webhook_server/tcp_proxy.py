"""A TCP proxy for fault tests: forwards 127.0.0.1:<port> to a target, and can be switched to

- ``hang()``: nothing more is forwarded in either direction and new connections get no answer, while
  every socket stays open (a network partition: packets dropped, no reset, no FIN);
- ``refuse()``: new connections are closed at once and open ones are reset (the database is down);
- ``heal()``: forwarding resumes; held bytes are delivered, as TCP retransmission would after a
  partition.

Threads, loopback only, bounded by the connections its clients open. ``close()`` closes every socket it
opened (a socket left to the garbage collector is a ResourceWarning, which the suite makes an error, in
whichever later test the collector happens to run) and joins every thread (a process that keeps threads cannot
fork safely).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
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
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept)

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
        with self._lock:
            self._closed = True  # from here on _track refuses, so no socket opened late escapes the reset below
        self.refuse()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)

    def _start(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _track(self, s: socket.socket) -> bool:
        """Keep S for the next refuse() or close(); after close(), reset it at once and say False."""
        with self._lock:
            if not self._closed:
                self._sockets.append(s)
                return True
        _reset(s)
        return False

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                _reset(client)
                continue
            self._start(self._connect, client)

    def _connect(self, client: socket.socket) -> None:
        if not self._track(client):
            return
        while self.mode == "hang" and not self._closed:  # a partition: the handshake gets no answer
            select.select([], [], [], 0.05)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        if not self._track(upstream):
            return
        for a, b in ((client, upstream), (upstream, client)):
            self._start(self._pump, a, b)

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
