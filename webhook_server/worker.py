"""The gevent worker with a deadline per request: slow senders cannot hold the server.

gunicorn's gevent worker reads headers and bodies with no deadline, so connections that announce a body
and never send it pile up until no connection is left for anyone, /healthz included. Here every
connection's socket is wrapped in :class:`DeadlineSocket`:

- a request (headers and body) must arrive within ``TENANTCTL_REQUEST_TIMEOUT_S`` of its first byte
  being awaited (the deadline restarts once its response is written, for the next keep-alive request);
- headers not complete by then: the connection gets a ``408`` and is closed (nothing is recorded: there
  is no tenant or provider to record it under); a body not complete by then: the read raises
  :class:`TimeoutError`, which the pipeline answers ``408`` and records (reason ``body-timeout``);
- under pressure (more than ``PRESSURE_SHARE`` of ``worker_connections`` open in this worker) every
  request in progress gets ``PRESSURE_TIMEOUT_S`` instead, so slow senders are shed within about a second
  and the probes and real senders keep being answered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from gunicorn.workers.ggevent import GeventWorker

PRESSURE_SHARE = 0.5
PRESSURE_TIMEOUT_S = 1.0
POLL_S = 0.5  # how often a waiting read re-checks its deadline (the pressure may have changed)
_REQUEST_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 27\r\nConnection: close\r\n\r\n"
                        b'{"error":"request timeout"}')


def request_timeout_s() -> float:
    try:
        return max(0.1, float(os.environ.get("TENANTCTL_REQUEST_TIMEOUT_S", "") or 10.0))
    except ValueError:
        return 10.0


class Load:
    """Open connections of one worker, against its cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0

    @property
    def pressed(self) -> bool:
        return self.open > self.cap * PRESSURE_SHARE


class DeadlineSocket:
    """A client socket whose reads fail once the current request is past its deadline (see module doc).

    Everything but ``recv``/``recv_into``/``sendall``/``close``/``flush`` passes through to the wrapped socket.

    A response leaves in one send: gunicorn sends its head and then its body, each with its own
    ``sendall``; the head is held until the body comes (or the connection is read from, closed or used
    otherwise), so a webhook's answer costs one system call and one loopback segment instead of two
    (benchmarks/ingest_cpu.py).
    """

    def __init__(self, sock: socket.socket, budget_s: float, load: Load) -> None:
        self._sock = sock
        self._head = b""  # a response's head, held for its body
        self._budget_s = budget_s
        self._load = load
        self._started = time.monotonic()
        self._headers_done = False
        self._tail = b""

    def __getattr__(self, name: str) -> Any:
        self.flush()  # whatever else is done with the socket, the held head goes first
        return getattr(self._sock, name)

    def flush(self) -> None:
        """Send a held head now (an answer without a body: its request is done)."""
        if self._head:
            head, self._head = self._head, b""
            self._send(head)

    def _remaining(self) -> float:
        budget = min(self._budget_s, PRESSURE_TIMEOUT_S) if self._load.pressed else self._budget_s
        return self._started + budget - time.monotonic()

    def _expired(self) -> OSError:
        if not self._headers_done:
            if self._tail:  # a request was started: say why it ends (an idle keep-alive just closes)
                with contextlib.suppress(OSError):
                    self._sock.sendall(_REQUEST_TIMEOUT_408)
            return OSError(errno.ENOTCONN, "request headers not received in time")
        return TimeoutError("request body not received in time")

    def recv(self, size: int, *flags: int) -> bytes:
        self.flush()
        while True:
            remaining = self._remaining()
            if remaining <= 0:
                raise self._expired()
            self._sock.settimeout(min(remaining, POLL_S))
            try:
                data = self._sock.recv(size, *flags)
            except TimeoutError:
                continue
            finally:
                self._sock.settimeout(None)
            if not self._headers_done and data:
                seen = self._tail + data
                self._headers_done = b"\r\n\r\n" in seen
                self._tail = seen[-3:] or b"\0"
            return data

    def recv_into(self, buffer: Any, nbytes: int = 0, *flags: int) -> int:
        data = self.recv(nbytes or len(buffer), *flags)
        buffer[: len(data)] = data
        return len(data)

    def sendall(self, data: bytes, *flags: int) -> None:
        if self._head:
            data, self._head = self._head + data, b""
        elif not flags and data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            self._head = data  # gunicorn's Response.send_headers: the body follows
            return
        self._send(data, *flags)

    def _send(self, data: bytes, *flags: int) -> None:
        self._sock.sendall(data, *flags)
        # A response is on its way: the next request on this connection gets a deadline of its own.
        self._started = time.monotonic()
        self._headers_done = False
        self._tail = b""

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._sock.close()


@contextlib.contextmanager
def entry_points_read_once() -> Iterator[None]:
    """importlib.metadata.entry_points answering from one read of the installed distributions.

    gevent's patch_all announces each module it patches to plugins, looking them up with entry_points(group=...)
    each time: ~25 reads of every installed distribution's metadata, ~0.17 s of CPU per worker start (half
    its patching). Nothing is installed while a worker patches, so one read answers them all.
    """
    real = metadata.entry_points
    every: list[Any] = []  # SelectableGroups on Python 3.11, EntryPoints from 3.12: both have select()

    def once(**params: Any) -> Any:
        if not every:
            every.append(real())
        return every[0].select(**params) if params else every[0]

    metadata.entry_points = once
    try:
        yield
    finally:
        metadata.entry_points = real


class DeadlineGeventWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker with :class:`DeadlineSocket` on every connection."""

    def patch(self) -> None:
        with entry_points_read_once():
            super().patch()
        # psycopg waits for a *connect* with selectors.DefaultSelector bound when the master imported it,
        # before the patching: an unanswered connect (a partition) would freeze the whole worker, its
        # deadlines included, for connect_timeout. Give it the patched (cooperative) selector.
        import selectors

        from psycopg import waiting

        waiting.DefaultSelector = selectors.DefaultSelector  # type: ignore[attr-defined]

    def init_process(self) -> None:
        self.load = Load(self.worker_connections)
        self.budget_s = request_timeout_s()
        super().init_process()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            # An answer without a body (a 303, a HEAD's) leaves its head held; the next request may already be
            # in gunicorn's buffer, so no read would send it before that request is answered. A connection that
            # fails here is gone anyway: the exception on its way (or the next read) ends it, not this one.
            if isinstance(sock, DeadlineSocket):
                with contextlib.suppress(OSError):
                    sock.flush()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self.load.open += 1
        try:
            super().handle(listener, DeadlineSocket(client, self.budget_s, self.load), addr)
        finally:
            self.load.open -= 1
