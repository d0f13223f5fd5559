"""The admin token of `tenantctl sandbox serve` and `sandbox platform`: one per state dir while any of them runs.

Each writes the token its clients read (`<state dir>/sandbox-admin-token`, `platform-admin-token`). A second one
started on the same state dir (on another port) used to write a fresh token over the first one's: the first kept
its own in memory, and every client reading the file was locked out of it. Now the file gets a fresh token only
when no server of its kind runs; while one does, the next takes the same token, so the file opens both.

Whether one runs: each holds a shared ``flock`` on ``<token file>.lock`` for its life (the kernel frees it when
the process ends, even by ``kill -9``), so a stale file from a finished run is never taken for a running one.
Starts are serialised by an exclusive ``flock`` on the token file itself, so two starting at once cannot both
write a fresh token. Neither lock is waited on for longer than LOCK_WAIT_S: a lock held longer is held by something
else (`flock -x` by hand), and the start fails naming the file and its holder rather than hang. The token and lock
files are opened without following symlinks (a link planted in the state dir would have had the token written
over its target).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from tenancy.escape import printable

LOCK_WAIT_S = 3.0  # how long a start waits on either lock before it says what holds it (a start takes milliseconds)


class RunTokenError(Exception):
    """The token cannot be taken safely; the message says why and names the file."""


@dataclass(frozen=True)
class RunToken:
    path: Path
    value: str
    reused: bool  # True: another server of this kind runs on the state dir, and this is its token
    lock_fd: int  # held (shared) while the server runs: keep it open, and inheritable across an exec


def take(path: Path) -> RunToken:
    """The token to serve with: the running servers' one from ``path``, else a fresh one written there (0600).

    Raises `RunTokenError` (changing nothing) when the token or lock file is a symlink or no regular file, or when
    a lock stays held by something that is no server of this kind for longer than `LOCK_WAIT_S`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    for p in (path, lock_path):  # both checked before either is created: a refusal leaves the state dir as it was
        if p.is_symlink():
            raise RunTokenError(f"refusing {p}: it is a symlink (to {printable(os.readlink(p))}); the token and "
                                "its lock are written only to files of the state dir's own: remove it")
    token_fd = _open(path)
    try:
        lock_fd = _open(lock_path)
    except BaseException:
        os.close(token_fd)
        raise
    try:
        os.fchmod(token_fd, 0o600)  # even if the file existed
        # One start at a time, for the moment it decides. Another start holds this for milliseconds (or, itself
        # waiting on the lock file, for at most LOCK_WAIT_S); longer means something else holds it.
        _wait_for(path, token_fd, fcntl.LOCK_EX)
        # Whether a server runs, decided before anything is written. Exclusive: none runs. Shared: servers run (they
        # only ever hold it shared). Neither: something else holds it exclusively (`flock -x` by hand); waiting for
        # it for ever hung the start without a word. Wait LOCK_WAIT_S, then fail naming the file and its holder:
        # serving without the lock would let the next start write a fresh token over this one's.
        running = _wait_for(lock_path, lock_fd, fcntl.LOCK_EX, fcntl.LOCK_SH) == fcntl.LOCK_SH
        # Known gap, accepted: a process that is no server but holds this lock shared (by hand, or a server's child
        # that inherited it) reads as a server running, so the file's token is kept rather than renewed. The
        # server and the clients reading the file still agree on it, the file stays 0600, and the kernel frees the
        # lock when that holder ends: a token older than it should be, not a locked-out or exposed one.
        current = os.pread(token_fd, 256, 0).decode("ascii", "replace").strip() if running else ""
        reused = bool(current)
        if not reused:  # none runs (or its file was emptied: its clients are locked out already)
            current = secrets.token_urlsafe(32)
            os.ftruncate(token_fd, 0)
            os.pwrite(token_fd, current.encode("ascii"), 0)
        if not running:  # shared from here on, as every running server holds it
            _wait_for(lock_path, lock_fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(lock_fd)
        raise
    finally:
        os.close(token_fd)  # and with it the start's lock
    os.set_inheritable(lock_fd, True)  # `sandbox serve` becomes gunicorn's master (by exec where it must): it keeps it
    return RunToken(path, current, reused, lock_fd)


def _open(path: Path) -> int:
    """``path`` opened read-write (created 0600), never through a symlink, and only if it is a regular file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)  # NONBLOCK: a FIFO
    except OSError as e:
        if e.errno == errno.ELOOP:  # made a symlink since the check
            raise RunTokenError(f"refusing {path}: it is a symlink; remove it") from None
        raise RunTokenError(f"cannot open {path}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunTokenError(f"refusing {path}: it is not a regular file; remove it")
    return fd


def _wait_for(path: Path, fd: int, *hows: int) -> int:
    """The first of ``hows`` that ``flock(fd, how)`` gets, trying each in turn for at most LOCK_WAIT_S (flock itself
    has no timeout: poll); `RunTokenError` naming the file and what holds it once that has passed."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        for how in hows:
            try:
                fcntl.flock(fd, how | fcntl.LOCK_NB)
                return how
            except BlockingIOError:
                pass
        if time.monotonic() >= deadline:
            raise RunTokenError(f"{path} stayed locked for {LOCK_WAIT_S:g} s (a start takes milliseconds) by "
                                f"{_holder(fd)}: end that (or use another TENANTCTL_STATE_DIR)")
        time.sleep(0.05)


def _holder(fd: int) -> str:
    """Who holds a lock on ``fd``'s file, from /proc/locks (Linux): 'pid N (its command line)', else a phrase."""
    st = os.fstat(fd)
    dev_inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "another process"
    pids = {f[4] for f in (line.split() for line in lines)
            if len(f) >= 6 and f[1] == "FLOCK" and f[5] == dev_inode and f[4].isdigit()}  # "->": waiters, skipped
    pids.discard(str(os.getpid()))
    if not pids:
        return "another process"
    named = []
    for pid in sorted(pids, key=int):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            cmd = ""
        named.append(f"pid {pid} ({printable(cmd[:120])})" if cmd else f"pid {pid}")
    return ", ".join(named)


__all__ = ["LOCK_WAIT_S", "RunToken", "RunTokenError", "take"]
