"""Per-tenant locks, so two applies never touch one tenant at once.

Semantics
- A lock is a row in ``tenant_locks`` (tenant primary key): holder (``user@host pid N``), since when,
  the run it belongs to, and an optional expiry.
- SQLite (one machine): a row that exists and has not expired is held. A crashed holder leaves its row
  behind: it blocks until it expires (pass ``ttl``) or someone runs ``tenantctl lock release`` (force).
- PostgreSQL (several machines): the holder additionally keeps ``pg_try_advisory_lock(key(tenant))`` on
  a dedicated connection for the lock's life. The advisory lock is the truth: while the holder's session
  lives nobody else gets the tenant, expired or not (a live holder is still working); when the session
  ends (crash, kill, lost connection) the advisory lock vanishes and the row left behind is stale and
  simply replaced by the next acquirer. A force release deletes the row but cannot break a live
  session: stop that process (or ``pg_terminate_backend``) to free the tenant. A holder whose database
  session drops while it keeps running has lost its lock without noticing; keep applies short.
- Locks are not re-entrant: the same holder acquiring twice gets LockHeld.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, insert, select

from store.engine import begin_write, utcnow
from store.errors import LockHeld
from store.schema import tenant_locks


@dataclass(frozen=True)
class TenantLock:
    tenant: str
    holder: str
    acquired_at: datetime
    run_id: int | None = None
    expires_at: datetime | None = None

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


def _row(conn: Connection, tenant: str) -> TenantLock | None:
    row = conn.execute(select(tenant_locks).where(tenant_locks.c.tenant == tenant)).one_or_none()
    if row is None:
        return None
    return TenantLock(row.tenant, row.holder, row.acquired_at, row.run_id, row.expires_at)


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
    lock = TenantLock(tenant, holder, now, run_id, now + ttl if ttl is not None else None)
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
                if session is None and not existing.expired(now):
                    raise LockHeld(tenant, existing.holder, existing.acquired_at)
                conn.execute(delete(tenant_locks).where(tenant_locks.c.tenant == tenant))
            conn.execute(
                insert(tenant_locks).values(
                    tenant=tenant,
                    holder=holder,
                    acquired_at=lock.acquired_at,
                    run_id=run_id,
                    expires_at=lock.expires_at,
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
        return [TenantLock(r.tenant, r.holder, r.acquired_at, r.run_id, r.expires_at) for r in rows]


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
