"""The thread a delivery worker's database rounds run on: one daemon thread, as an Executor.

Why not ``ThreadPoolExecutor(max_workers=1)``: the interpreter joins a pool's threads at exit, so a round stuck
in the database (a server that hangs while its kernel still acknowledges every packet: SIGSTOP, a stuck pooler;
``statement_timeout`` never fires there, being the server's own) would hold the process forever after SIGTERM.
A daemon thread is left behind at exit; its claims expire with their lease (at least once).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DaemonThreadExecutor(Executor):
    """Runs submitted calls one at a time, in order, on one daemon thread."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller, as ThreadPoolExecutor does
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop after the calls submitted; ``wait`` joins the thread (never pass it while a call may be stuck)."""
        self._jobs.put(None)
        if wait:
            self._thread.join()
