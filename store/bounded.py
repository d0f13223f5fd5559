"""Reads with a deadline kept on this side: for what a scrape or a page reads, which must answer in bounded time.

PostgreSQL's ``statement_timeout`` is the server's own clock, and libpq's TCP timeouts count unacknowledged data:
a server or a link that stops answering while the kernel still acknowledges every packet (a stalled proxy or
pooler, a SIGSTOPped backend) holds a read for ever, and with it the scrape, the page and a pooled connection.
:func:`read_within` runs the read on a thread of its own and, past the deadline, shuts down the sockets of the
connections that read holds: its driver then sees EOF and raises, the pool drops those connections, and the
caller has had :class:`DatabaseUnavailable` at the deadline. SQLite is a file, its waits bounded by its busy
timeout: there the read runs as it is.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, event

from store.errors import DatabaseUnavailable

T = TypeVar("T")

# For reads a scrape or a page waits on: longer than the default statement_timeout (5 s), so a lock wait ends
# with the server's own error first, and shorter than Prometheus' default scrape timeout (10 s), so a stuck
# database reads as `..._up 0` rather than as a scrape that never came back.
SCRAPE_DEADLINE_S = 8.0

# Thread ident → the connections that thread holds now (pool entry → its socket's descriptor), from checkout to
# checkin: only bounded reads' threads are watched, and a connection back in the pool is never shut down.
_held: dict[int, dict[int, int]] = {}
_held_lock = threading.Lock()


def _fd(dbapi_connection: Any) -> int | None:
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    try:
        return int(driver.fileno())
    except Exception:  # closed already, or no socket
        return None


def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    with _held_lock:
        held = _held.get(threading.get_ident())
        if held is not None and (fd := _fd(dbapi_connection)) is not None:
            held[id(record)] = fd


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    with _held_lock:  # by entry, not descriptor: an invalidated connection comes back without its driver's
        held = _held.get(threading.get_ident())
        if held is not None:
            held.pop(id(record), None)


def _watch(engine: Engine) -> None:
    if not event.contains(engine, "checkout", _on_checkout):
        event.listen(engine, "checkout", _on_checkout)
        event.listen(engine, "checkin", _on_checkin)


def read_within(engine: Engine, read: Callable[[], T], timeout_s: float) -> T:
    """``read()`` (which uses ``engine``), or :class:`DatabaseUnavailable` once ``timeout_s`` seconds have passed
    without its answer; whatever ``read`` raises is raised here. Under gevent the thread is a greenlet."""
    if engine.dialect.name != "postgresql":
        return read()
    _watch(engine)
    done = threading.Event()
    box: dict[str, Any] = {}
    held: dict[int, int] = {}

    def run() -> None:
        with _held_lock:
            _held[threading.get_ident()] = held
        try:
            box["value"] = read()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            with _held_lock:
                _held.pop(threading.get_ident(), None)
            done.set()

    threading.Thread(target=run, name="bounded-read", daemon=True).start()
    if not done.wait(timeout_s):
        with _held_lock:  # under the lock: a descriptor still held cannot meanwhile be closed and reused
            for fd in held.values():
                _shut_down(fd)
        raise DatabaseUnavailable(f"the database did not answer within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def _shut_down(fd: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # closed meanwhile, or not a socket: nothing left to end
        pass
