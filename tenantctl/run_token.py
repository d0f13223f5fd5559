"""The admin token of `tenantctl sandbox serve` and `sandbox platform`: one per state dir while any of them runs.

Each writes the token its clients read (`<state dir>/sandbox-admin-token`, `platform-admin-token`). A second one
started on the same state dir (on another port) used to write a fresh token over the first one's: the first kept
its own in memory, and every client reading the file was locked out of it. Now the file gets a fresh token only
when no server of its kind runs; while one does, the next takes the same token, so the file opens both.

Whether one runs: each holds a shared ``flock`` on ``<token file>.lock`` for its life (the kernel frees it when
the process ends, even by ``kill -9``), so a stale file from a finished run is never taken for a running one.
Starts are serialised by an exclusive ``flock`` on the token file itself, so two starting at once cannot both
write a fresh token.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunToken:
    path: Path
    value: str
    reused: bool  # True: another server of this kind runs on the state dir, and this is its token
    lock_fd: int  # held (shared) while the server runs: keep it open, and inheritable across an exec


def take(path: Path) -> RunToken:
    """The token to serve with: the running servers' one from ``path``, else a fresh one written there (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(token_fd, 0o600)  # even if the file existed
        fcntl.flock(token_fd, fcntl.LOCK_EX)  # one start at a time, for the moment it decides
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            running = False
        except BlockingIOError:
            running = True
        current = os.pread(token_fd, 256, 0).decode("ascii", "replace").strip() if running else ""
        reused = bool(current)
        if not reused:  # none runs (or its file was emptied: its clients are locked out already)
            current = secrets.token_urlsafe(32)
            os.ftruncate(token_fd, 0)
            os.pwrite(token_fd, current.encode("ascii"), 0)
        # Shared from here on. Starts wait on the token file's lock, and running servers only ever hold this one
        # shared, so nothing can take it exclusively while an exclusive lock turns shared.
        fcntl.flock(lock_fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(lock_fd)
        raise
    finally:
        os.close(token_fd)  # and with it the start's lock
    os.set_inheritable(lock_fd, True)  # `sandbox serve` becomes gunicorn (execve): its master holds it on
    return RunToken(path, current, reused, lock_fd)


__all__ = ["RunToken", "take"]
