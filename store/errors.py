"""Errors raised by the store.

    StoreError                  root: catch this to handle every storage failure
    ├── DatabaseUnavailable     the database could not be reached or could not commit (connection
    │                           refused, lost, database locked beyond the busy timeout, missing table);
    │                           temporary: the webhook server answers 503 so the provider retries
    ├── DatabaseNotMigrated     the schema is not at the head revision: run `tenantctl db upgrade`
    └── LockHeld                another holder has the tenant lock (names the holder and since when)

Messages never carry SQL parameters (engines are made with ``hide_parameters=True``) nor passwords.
"""

from __future__ import annotations

from datetime import datetime

from tenancy.escape import printable
from tenancy.redact import REDACTOR

MAX_DRIVER_MESSAGE = 160


class StoreError(Exception):
    """Root of every error raised by the store package."""


class DatabaseUnavailable(StoreError):
    """The database could not be reached, or the transaction could not be committed."""


class DatabaseNotMigrated(StoreError):
    """The database schema is older (or newer) than this code expects. ``unrecorded``: tables are there but no
    revision is recorded (the version table was emptied or dropped): not an empty database."""

    def __init__(self, current: str | None, head: str, *, unrecorded: bool = False) -> None:
        self.current = current
        self.head = head
        if current is not None and current > head:  # revisions are numbered in the order they apply
            msg = (f"database schema is at revision {current}, newer than this tenantctl (it knows up to {head}): "
                   "run the tenantctl that migrated it, or point DATABASE_URL at this version's database")
        elif unrecorded:
            msg = ("the database has tenantctl's tables but no recorded schema revision (its alembic_version table "
                   f"is missing or empty), so it cannot be migrated safely; this tenantctl needs revision {head}: "
                   "restore the database from a backup, or start from an empty one")
        else:
            at = f"revision {current}" if current else "no revision (empty database)"
            msg = f"database schema is at {at}, this tenantctl needs revision {head}: run `tenantctl db upgrade`"
        super().__init__(msg)


class LockHeld(StoreError):
    """The tenant is locked by another holder."""

    def __init__(self, tenant: str, holder: str | None, acquired_at: datetime | None) -> None:
        self.tenant = tenant
        self.holder = holder
        self.acquired_at = acquired_at
        if holder is None:
            msg = (
                f"tenant {tenant!r} is locked by another live database session "
                "(its PostgreSQL advisory lock is held)"
            )
        else:
            since = f" since {acquired_at.isoformat()}" if acquired_at else ""
            msg = f"tenant {tenant!r} is locked by {holder}{since}"
        super().__init__(msg)


def short_error(exc: BaseException) -> str:
    """``OperationalError: database is locked``: the error's class and the first line of the driver's own message
    (not SQLAlchemy's, whose further lines carry the SQL and its parameters), scrubbed of every known secret,
    escaped and cut to :data:`MAX_DRIVER_MESSAGE` characters; the class alone when the driver said nothing. For a
    log line on the error path."""
    orig = getattr(exc, "orig", None)
    try:
        text = str(orig if orig is not None else exc).strip()
    except Exception:  # a driver's __str__ failing must not hide the error it reports
        text = ""
    first = text.splitlines()[0].strip() if text else ""
    if not first:
        return type(exc).__name__
    words = printable(REDACTOR.scrub(first))
    if len(words) > MAX_DRIVER_MESSAGE:
        words = words[:MAX_DRIVER_MESSAGE - 3] + "..."
    return f"{type(exc).__name__}: {words}"
