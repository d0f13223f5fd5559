"""Holding a delivery worker's event loop still while its database round holds SQLite's write lock.

SQLite has one write lock, and the webhook server's commits wait for it whenever a delivery round holds it.
The round runs on its own thread, and every SQLite call releases the GIL, which the round must then win back
from the event loop's thread. With the loop busy, a round of ~25 events held the lock for 12.5 ms on average
instead of 7.7 ms parked (tenantctl deliver --until-idle on a 13k backlog, 2026-12-01). Parked, the loop's thread
waits on an Event (the GIL released) for the length of the write: at most ``max_s``, so a stuck database never
stalls the loop longer than that; and the round waits at most ``wait_s`` for the loop to park, then goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class LoopParker:
    """``hold()``, entered on another thread, parks ``loop``'s thread until the block ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, wait_s: float = 0.1, max_s: float = 1.0) -> None:
        self.loop, self.wait_s, self.max_s = loop, wait_s, max_s

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        parked, resume = threading.Event(), threading.Event()

        def park() -> None:
            if not resume.is_set():  # a late park (the block already ended) returns at once
                parked.set()
                resume.wait(self.max_s)

        try:
            self.loop.call_soon_threadsafe(park)
        except RuntimeError:  # the loop is closed: nothing to hold still
            yield
            return
        parked.wait(self.wait_s)
        try:
            yield
        finally:
            resume.set()
