"""Engine construction for SQLite (default) and PostgreSQL (psycopg 3).

SQLite notes (why the connect/begin hooks exist):
- WAL lets readers run while the single writer commits. ``synchronous=FULL``: a webhook is answered 200
  only after its row is committed, and in WAL mode only FULL makes a commit survive an OS crash or power
  loss (NORMAL survives a process crash only). With group commit the fsync is paid once per batch: it
  measured ~36 us per row against ~30-42 with NORMAL at batches of 8 (noise), 175 against 78 alone.
- pysqlite's own transaction handling emits BEGIN lazily (only before DML), so a SELECT followed by an
  INSERT is not one transaction. We switch the driver to autocommit and emit BEGIN ourselves.
- Writers use ``BEGIN IMMEDIATE`` (see :func:`begin_write`): a deferred transaction that reads and then
  writes can fail at once with SQLITE_BUSY when another writer committed in between, and busy_timeout
  does not help there. IMMEDIATE takes the write lock up front and waits up to busy_timeout for it.
- Writers of one database file also queue on a blocking file lock (:class:`_WriterQueue`) before BEGIN:
  SQLite's busy handler polls with sleeps of up to 100 ms, so two gunicorn workers contending for the
  write lock made p99 latency seconds long under load; a blocking ``flock`` hands the lock over at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SQLITE_BUSY_TIMEOUT_MS = 5000
_IMMEDIATE = "tenantctl_sqlite_immediate"
_SECRET_QUERY_KEYS = frozenset({"password", "passfile", "sslpassword"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, echo: bool = False,
                statement_timeout_ms: int | None = None) -> Engine:
    """Build an engine for ``sqlite:///path`` or ``postgresql+psycopg://...``.

    Parameters are hidden from exception messages and logs (``hide_parameters``): webhook bodies and
    headers must never leak through an error. ``statement_timeout_ms`` (PostgreSQL) makes the server
    cancel any statement of these connections that runs longer: the webhook server sets it, migrations
    and prunes do not.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        file = sqlite_file(url)
        if file is not None:
            _create_private(file)
        engine = create_engine(parsed, hide_parameters=True, echo=echo)
        _install_sqlite_hooks(engine, busy_timeout_ms)
        if file is not None:  # a file: URI's writers queue as a path's do
            _WRITER_QUEUES[engine] = _WriterQueue(file)
        return engine
    if backend == "postgresql":
        return create_engine(
            parsed,
            hide_parameters=True,
            echo=echo,
            pool_pre_ping=True,
            pool_size=8,
            max_overflow=8,
            pool_timeout=10,
            pool_recycle=1800,
            connect_args=pg_connect_args(parsed.query, statement_timeout_ms),
        )
    raise ValueError(f"unsupported database URL {redact_url(url)}: use sqlite:/// or postgresql+psycopg://")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL: a path (``sqlite:///PATH``) or a ``file:`` URI (``sqlite:///file:PATH?uri=true``,
    the path %-decoded); None for PostgreSQL and in-memory databases."""
    where = make_url(url)
    database = where.database if where.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        uri = urlsplit(database)
        if "mode=memory" in uri.query or uri.path in ("", ":memory:") or where.query.get("mode") == "memory":
            return None
        return Path(unquote(uri.path)).expanduser()
    return Path(database).expanduser()


def missing_sqlite_file(url: str) -> str | None:
    """The path of a local SQLite database file that does not exist yet, else None (PostgreSQL, :memory:, an
    existing file): for commands that must not create one by merely opening it."""
    file = sqlite_file(url)
    return str(file) if file is not None and not file.exists() else None


def _create_private(database: Path) -> None:
    """The database file (and the directories it needs) created readable by its owner only, where they do not
    exist yet: it holds every accepted webhook's body, guests' bookings and messages. An empty file is an empty
    SQLite database; SQLite gives its -wal and -shm files the database file's permissions. What exists is left as
    it is (an operator's own permissions win)."""
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# libpq's own deadlines (https://www.postgresql.org/docs/current/libpq-connect.html): a connect that gets
# no answer fails after connect_timeout; keepalives notice an idle peer that vanished; tcp_user_timeout
# drops a connection whose sent data stays unacknowledged (a partition) instead of waiting ~15 minutes.
PG_CONNECT_TIMEOUT_S = 5
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3}
PG_TCP_USER_TIMEOUT_MS = 10_000


def pg_connect_args(query: Mapping[str, Any], statement_timeout_ms: int | None) -> dict[str, Any]:
    """The libpq options added to a PostgreSQL URL's own (those in the URL win, ``options`` is merged)."""
    args: dict[str, Any] = {"connect_timeout": PG_CONNECT_TIMEOUT_S, **PG_KEEPALIVES,
                            "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS}
    args = {k: v for k, v in args.items() if k not in query}
    if statement_timeout_ms is not None:
        given = query.get("options") or ""
        given = given if isinstance(given, str) else " ".join(given)
        args["options"] = f"{given} -c statement_timeout={int(statement_timeout_ms)}".strip()
    return args


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class _WriterQueue:
    """Serialises the writers of one SQLite file: threads by a lock, processes by a blocking ``flock``.

    The kernel wakes the next writer the moment the lock is released; polling (SQLite's busy handler
    sleeps up to 100 ms; a 0.2-2 ms poll measured a p99 three times higher) cannot hand over as fast.
    The wait has no deadline of its own: holders are our own writers inside one transaction, a dead
    holder's lock is released by the kernel, and a request never waits longer than its event store's
    timeout (it is then answered 503). The lock file is opened per process: a descriptor inherited
    through fork would share its flock with the parent. Under gevent the wait polls instead (see below).
    """

    def __init__(self, database: Path) -> None:
        self._path = sqlite_sidecar(database, ".write-lock")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = -1
        # Under gevent (the webhook server's workers) a blocking flock would freeze every request of the
        # worker, its timeouts included, for as long as another process writes (a prune can take
        # seconds): there the lock is polled, and the wait sleeps cooperatively. Measured against a
        # blocking flock with 2 gevent workers: 0.50-0.66x of bare against 0.46-0.50x.
        self._cooperative = _gevent_patched()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            if self._pid != os.getpid():
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fd = self._fd
            if fd is None:  # pragma: no cover - set just above
                raise RuntimeError("writer lock not open")
            if self._cooperative:
                _poll_flock(fd)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


def sqlite_sidecar(database: str | Path, suffix: str) -> Path:
    """The file beside an SQLite database named ``<its name><suffix>`` (a lock file), found from the path with
    its symbolic links resolved: processes that name one database by different paths share its locks."""
    real = Path(database).expanduser().resolve()
    return real.with_name(real.name + suffix)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("time"))


def _poll_flock(fd: int) -> None:
    pause = 0.0002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(pause)  # gevent's sleep: the worker serves other requests meanwhile
            pause = min(pause * 2, 0.001)


_WRITER_QUEUES: weakref.WeakKeyDictionary[Engine, _WriterQueue] = weakref.WeakKeyDictionary()


def writer_lock(engine: Engine) -> contextlib.AbstractContextManager[None]:
    """Queue behind the other writers of this SQLite file (a no-op for PostgreSQL and :memory:)."""
    writers = _WRITER_QUEUES.get(engine)
    return writers.hold() if writers is not None else contextlib.nullcontext()


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextlib.contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` on SQLite, a plain transaction on PostgreSQL.

    Commits when the block ends, rolls back on an exception.
    """
    with writer_lock(engine), engine.connect() as plain:
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
