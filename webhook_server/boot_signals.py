"""A stop signal that reaches a gunicorn worker while it boots: gunicorn's ``post_fork`` hook, for the webhook
server (webhook_server/gunicorn.conf.py) and the sandbox (sandbox/gunicorn_conf.py).

gunicorn installs a worker's own handlers only in ``init_process``, after gevent's patching and the app's
imports. Until then the child runs the master's handler, which queues the signal in the child's copy of the
master's queue, where nothing reads it: a SIGTERM sent while the workers boot (a stop right after a start)
left the worker serving until the graceful timeout's SIGKILL. Only the standard library: the sandbox's
master imports this too.
"""

from __future__ import annotations

import contextlib
import queue
import signal
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def post_fork(server: Any, worker: Any) -> None:
    """First thing in a new worker: a stop signal from here on ends it before its loop starts. A signal that
    came between the fork and this hook is in the copied queue, so it is drained here; any other signal in it
    was the master's to handle, and the master has its own copy."""
    def stop(signum: int, frame: object) -> None:
        worker.alive = False  # gunicorn's loops check it; init_signals later installs the full handlers

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    if any(sig in STOP_SIGNALS for sig in _drain(server.SIG_QUEUE)):
        worker.alive = False


def _drain(queued: Any) -> list[int]:
    """Empty gunicorn's signal queue and return what it held: a ``queue.SimpleQueue`` in gunicorn 27, a list
    in older releases."""
    if isinstance(queued, list):
        taken = list(queued)
        queued.clear()
        return taken
    taken = []
    with contextlib.suppress(queue.Empty):
        while True:
            taken.append(queued.get_nowait())
    return taken
