"""The outcome of the last routing (re)load, for `/metrics`. Pure state, no I/O.

The gunicorn master notes it (webhook_server.server_hooks: at start and on every SIGHUP); workers are forked
afterwards and inherit the value, so each one reports the master's last outcome.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ReloadStatus:
    ok: bool  # False: the last reload was refused and the previous routing kept
    at: float  # Unix time of the attempt, seconds
    tenants: int  # tenants in the routing in force after it


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: ReloadStatus | None = None


_holder = _Holder()


def note(ok: bool, tenants: int, at: float | None = None) -> None:
    with _holder.lock:
        _holder.last = ReloadStatus(ok, time.time() if at is None else at, tenants)


def last() -> ReloadStatus | None:
    """None until the routing was loaded through the server hooks (an app built in a test)."""
    return _holder.last
