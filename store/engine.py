"""Engine construction for SQLite (default) and PostgreSQL (psycopg 3).

SQLite notes (why the connect/begin hooks exist):
- WAL lets readers run while the single writer commits; ``synchronous=NORMAL`` is durable against
  process crashes in WAL mode (an OS crash may lose the last commits, not corrupt the file).
- pysqlite's own transaction handling emits BEGIN lazily (only before DML), so a SELECT followed by an
  INSERT is not one transaction. We switch the driver to autocommit and emit BEGIN ourselves.
- Writers use ``BEGIN IMMEDIATE`` (see :func:`begin_write`): a deferred transaction that reads and then
  writes can fail at once with SQLITE_BUSY when another writer committed in between, and busy_timeout
  does not help there. IMMEDIATE takes the write lock up front and waits up to busy_timeout for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SQLITE_BUSY_TIMEOUT_MS = 5000
_IMMEDIATE = "tenantctl_sqlite_immediate"
_SECRET_QUERY_KEYS = frozenset({"password", "passfile", "sslpassword"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, echo: bool = False) -> Engine:
    """Build an engine for ``sqlite:///path`` or ``postgresql+psycopg://...``.

    Parameters are hidden from exception messages and logs (``hide_parameters``): webhook bodies and
    headers must never leak through an error.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, hide_parameters=True, echo=echo)
        _install_sqlite_hooks(engine, busy_timeout_ms)
        return engine
    if backend == "postgresql":
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = 5
        return create_engine(
            parsed,
            hide_parameters=True,
            echo=echo,
            pool_pre_ping=True,
            pool_size=8,
            max_overflow=8,
            pool_timeout=10,
            pool_recycle=1800,
            connect_args=connect_args,
        )
    raise ValueError(f"unsupported database URL {redact_url(url)}: use sqlite:/// or postgresql+psycopg://")


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextlib.contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` on SQLite, a plain transaction on PostgreSQL.

    Commits when the block ends, rolls back on an exception.
    """
    with engine.connect() as plain:
        conn = plain.execution_options(**{_IMMEDIATE: True}) if is_sqlite(engine) else plain
        with conn.begin():
            yield conn


def redact_url(url: str) -> str:
    """The URL with its password (and password-like query parameters) replaced by ``***``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    query = {k: ("***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parsed.query.items()}
    # The URL renderer percent-encodes the query; "***" is what people expect to read.
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
