"""Signals that come while a process boots, before it has its own handlers.

A stop that reaches a gunicorn worker while it boots: gunicorn's ``post_fork`` hook, for the webhook
server (webhook_server/gunicorn.conf.py) and the sandbox (sandbox/gunicorn_conf.py).

gunicorn installs a worker's own handlers only in ``init_process``, after gevent's patching and the app's
imports. Until then the child runs the master's handler, which queues the signal in the child's copy of the
master's queue, where nothing reads it: a SIGTERM sent while the workers boot (a stop right after a start)
left the worker serving until the graceful timeout's SIGKILL.

A SIGHUP (a reload: systemd's ExecReload) that reaches `tenantctl serve` or `tenantctl deliver` before they
have their handlers: until then its default action killed the process, silently; for serve that is the
CLI's imports and the whole tenant load (seconds with thousands of tenants), and systemd does not restart
a unit a SIGHUP ended (Restart=on-failure). So the CLI holds it from its first line (tenantctl/__init__.py)
and the reload it asked for happens once the process is up (``when_ready``; deliver's own loop).

Only the standard library: the sandbox's master and the CLI's first line import this too.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_hangup = threading.Event()


def hold_hangups() -> None:
    """From now until the process installs its own SIGHUP handler, a SIGHUP is held (``hangup_held``), not
    fatal. A handler does not survive an exec: before one, ``ignore_hangups_across_exec``."""
    signal.signal(signal.SIGHUP, lambda signum, frame: _hangup.set())


def hangup_held() -> bool:
    """Whether a SIGHUP came while held."""
    return _hangup.is_set()


def ignore_hangups_across_exec() -> None:
    """SIGHUP ignored, which an exec keeps (a handler it resets): until the new program installs its own."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def when_ready(server: Any) -> None:
    """gunicorn's master is up (its handlers installed): a SIGHUP held during the start reloads now."""
    if hangup_held():
        server.log.info("a SIGHUP came during the start: reloading the tenants now")
        os.kill(os.getpid(), signal.SIGHUP)



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
