"""Per-tenant locks, so two applies never touch one tenant at once.

Semantics
- A lock is a row in ``tenant_locks`` (tenant primary key): holder (``user@host pid N``), since when,
  the run it belongs to, and an optional expiry.
- SQLite (one machine): a row that exists and has not expired is held, unless its holder is provably
  gone: the row names the holder's host and pid, and when that host is this one and the pid is not
  alive, the lock is stale and the next acquirer takes it over (``TenantLock.took_over`` names the dead
  holder). A holder on another host cannot be checked: its row blocks until it expires (``ttl``) or
  ``tenantctl lock release``.
- PostgreSQL (several machines): the holder additionally keeps ``pg_try_advisory_lock(key(tenant))`` on
  a dedicated connection for the lock's life. The advisory lock is the truth: while the holder's session
  lives nobody else gets the tenant, expired or not (a live holder is still working); when the session
  ends (crash, kill, lost connection) the advisory lock vanishes and the row left behind is stale and
  simply replaced by the next acquirer (``took_over`` names it). ``lock list`` asks ``pg_locks``
  whether each row's advisory lock is still held, so it tells live from stale. A force release
  deletes the row but cannot break a live session: stop that process (or ``pg_terminate_backend``)
  to free the tenant. A holder whose database session drops while it keeps running has lost its lock
  without noticing; keep applies short.
- Locks are not re-entrant: the same holder acquiring twice gets LockHeld.
- A run whose lock is stale died with its process: ``reap_stale`` (called whenever plan, apply or
  ``lock list`` look) marks it ``aborted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update

from store.engine import begin_write, utcnow
from store.errors import LockHeld
from store.runs import pid_alive, reap_dead_runs
from store.schema import reconcile_runs, tenant_locks


@dataclass(frozen=True)
class TenantLock:
    tenant: str
    holder: str
    acquired_at: datetime
    run_id: int | None = None
    expires_at: datetime | None = None
    host: str | None = None
    pid: int | None = None
    took_over: str | None = None  # on acquire: the provably gone holder whose stale lock this replaced

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def default_holder() -> str:
    """``user@host pid N``: enough for a person to find the process that holds a lock."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def advisory_key(tenant: str, schema: str = "public") -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` (same in every process and on every host).

    Advisory locks are database-wide, so the key includes the schema: two tenantctl installations (or
    two test workers) in different schemas of one database do not block each other.
    """
    digest = hashlib.blake2b(f"tenantctl.tenant_lock:{schema}:{tenant}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# Advisory-lock sessions held by this process, by (database, tenant, holder). Only the holder's own
# release closes its session: a force release (even from this process) removes the row, not the session.
_sessions: dict[tuple[str, str, str], tuple[Connection, int]] = {}
_sessions_lock = threading.Lock()


def _session_key(engine: Engine, tenant: str, holder: str) -> tuple[str, str, str]:
    return (engine.url.render_as_string(hide_password=False), tenant, holder)


def _close_session(conn: Connection, key: int) -> None:
    try:
        conn.execute(select(func.pg_advisory_unlock(key)))
    except Exception:
        conn.invalidate()  # a broken session: dropping it frees the lock on the server anyway
        raise
    finally:
        conn.close()


def _lock(row: Any) -> TenantLock:
    return TenantLock(row.tenant, row.holder, row.acquired_at, row.run_id, row.expires_at, row.host, row.pid)


def _row(conn: Connection, tenant: str) -> TenantLock | None:
    row = conn.execute(select(tenant_locks).where(tenant_locks.c.tenant == tenant)).one_or_none()
    return None if row is None else _lock(row)


def dead_on_this_host(lock: TenantLock) -> bool:
    """Provably gone: the holder ran on this host, under a pid that is not alive any more."""
    return lock.host == socket.gethostname() and lock.pid is not None and not pid_alive(lock.pid)


def _advisory_held(conn: Connection, tenant: str) -> bool:
    """Whether some session holds the tenant's advisory lock (pg_locks splits the 64-bit key in two)."""
    key = advisory_key(tenant, conn.execute(select(func.current_schema())).scalar_one()) & 0xFFFFFFFFFFFFFFFF
    held = conn.execute(text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
        "AND classid = :hi AND objid = :lo AND database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database())"), {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar_one()
    return bool(held)


def lock_state(engine: Engine, lock: TenantLock, now: datetime | None = None) -> str:
    """``live``, ``stale`` (holder provably gone), ``expired``, or ``held`` (cannot be checked: another
    host on SQLite)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return "live" if _advisory_held(conn, lock.tenant) else "stale"
    if dead_on_this_host(lock):
        return "stale"
    if lock.expired(now or utcnow()):
        return "expired"
    return "live" if lock.host == socket.gethostname() else "held"


def reap_stale(engine: Engine) -> list[TenantLock]:
    """Mark ``aborted`` the runs of stale locks and every run of this host whose process is gone;
    returns the stale locks."""
    reap_dead_runs(engine)
    stale = [lk for lk in list_locks(engine) if lock_state(engine, lk) == "stale"]
    run_ids = [lk.run_id for lk in stale if lk.run_id is not None]
    if run_ids:
        with begin_write(engine) as conn:
            conn.execute(update(reconcile_runs)
                         .where(reconcile_runs.c.id.in_(run_ids), reconcile_runs.c.status == "running")
                         .values(status="aborted", finished_at=utcnow(),
                                 summary={"error": "the process running it died (its lock was stale)"}))
    return stale


def set_run(engine: Engine, tenants: Sequence[str], holder: str, run_id: int) -> None:
    """Record which run holds these tenants' locks (the lock is taken before the run is recorded)."""
    with begin_write(engine) as conn:
        conn.execute(update(tenant_locks)
                     .where(tenant_locks.c.tenant.in_(list(tenants)), tenant_locks.c.holder == holder)
                     .values(run_id=run_id))


def acquire(
    engine: Engine,
    tenant: str,
    holder: str,
    run_id: int | None = None,
    ttl: timedelta | None = None,
    *,
    now: datetime | None = None,
) -> TenantLock:
    """Take the tenant's lock or raise :class:`LockHeld` naming who has it and since when."""
    now = now or utcnow()
    lock = TenantLock(tenant, holder, now, run_id, now + ttl if ttl is not None else None,
                      socket.gethostname(), os.getpid())
    session: Connection | None = None
    key = 0
    if engine.dialect.name == "postgresql":
        session = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            key = advisory_key(tenant, session.execute(select(func.current_schema())).scalar_one())
            got = session.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
        except Exception:
            session.close()
            raise
        if not got:
            session.close()
            with engine.connect() as conn:
                other = _row(conn, tenant)
            raise LockHeld(tenant, other.holder if other else None, other.acquired_at if other else None)
    try:
        with begin_write(engine) as conn:
            existing = _row(conn, tenant)
            if existing is not None:
                # On PostgreSQL we now hold the advisory lock, so the row's holder is gone: stale.
                gone = session is not None or dead_on_this_host(existing)
                if not gone and not existing.expired(now):
                    raise LockHeld(tenant, existing.holder, existing.acquired_at)
                if gone:
                    lock = dataclasses.replace(lock, took_over=existing.holder)
                    if existing.run_id is not None:
                        conn.execute(update(reconcile_runs)
                                     .where(reconcile_runs.c.id == existing.run_id,
                                            reconcile_runs.c.status == "running")
                                     .values(status="aborted", finished_at=now, summary={
                                         "error": "the process running it died (its lock was taken over)"}))
                conn.execute(delete(tenant_locks).where(tenant_locks.c.tenant == tenant))
            conn.execute(
                insert(tenant_locks).values(
                    tenant=tenant,
                    holder=holder,
                    acquired_at=lock.acquired_at,
                    run_id=run_id,
                    expires_at=lock.expires_at,
                    host=lock.host,
                    pid=lock.pid,
                )
            )
    except BaseException:
        if session is not None:
            with contextlib.suppress(Exception):  # keep the original error
                _close_session(session, key)
        raise
    if session is not None:
        with _sessions_lock:
            _sessions[_session_key(engine, tenant, holder)] = (session, key)
    return lock


def release(engine: Engine, tenant: str, holder: str | None = None) -> bool:
    """Release the tenant's lock held by ``holder``; ``holder=None`` breaks it whoever holds it.

    Returns whether a lock row was removed. Releasing a lock you do not hold removes nothing. On
    PostgreSQL the holder's own release also ends its advisory-lock session (even when the row was
    already forced away); a force release cannot end another process's session.
    """
    stmt = delete(tenant_locks).where(tenant_locks.c.tenant == tenant)
    if holder is not None:
        stmt = stmt.where(tenant_locks.c.holder == holder)
    with begin_write(engine) as conn:
        removed = conn.execute(stmt).rowcount > 0
    if holder is not None:
        with _sessions_lock:
            held = _sessions.pop(_session_key(engine, tenant, holder), None)
        if held is not None:
            _close_session(*held)
    return removed


def list_locks(engine: Engine) -> list[TenantLock]:
    """Every lock row, expired ones included (see :meth:`TenantLock.expired`)."""
    with engine.connect() as conn:
        rows = conn.execute(select(tenant_locks).order_by(tenant_locks.c.tenant))
        return [_lock(r) for r in rows]


@contextlib.contextmanager
def tenant_lock(
    engine: Engine,
    tenant: str,
    holder: str,
    run_id: int | None = None,
    ttl: timedelta | None = None,
) -> Iterator[TenantLock]:
    """Hold the tenant's lock for the block; released however the block ends."""
    lock = acquire(engine, tenant, holder, run_id=run_id, ttl=ttl)
    try:
        yield lock
    finally:
        release(engine, tenant, holder)
