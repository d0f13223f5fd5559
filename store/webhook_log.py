"""The webhook log: the write path of every webhook request, and the reads operators use.

Write path contract (:class:`EventStore`): ``record()`` returns only after the row is committed, and
raises :class:`DatabaseUnavailable` when it could not be; the server answers 503 then, so the provider
retries and no event is acknowledged without being stored.

De-duplication lives in the database, not in memory: a partial unique index allows one ``accepted`` row
per (provider, tenant, event_id). An accepted record whose event was already accepted is written as a
``duplicate`` row without its body and reported as :attr:`RecordResult.DUPLICATE` (still answered 200).
This holds across threads, gunicorn workers and server instances sharing one PostgreSQL.

Processes and fork: a :class:`GroupCommitEventStore` owns a writer thread and pooled connections, and
neither survives ``fork()``. Build one per gunicorn worker (in ``post_fork``, or lazily on the first
request). As a safety net a store that notices it now lives in another process (pid changed) starts a
fresh writer thread and drops the inherited pool (``engine.dispose(close=False)``) before writing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from sqlalchemy import ColumnElement, Connection, Engine, Select, and_, case, delete, func, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from store.engine import begin_write, writer_lock
from store.errors import DatabaseUnavailable
from store.queue_depth import queued_ids
from store.refusals import RefusalFolder
from store.schema import ACCEPTED_EVENT_PREDICATE, QUEUED_STATES, webhook_event_keys, webhook_log
from tenancy.escape import storable, storable_key

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "rejected", "duplicate"]


class RecordResult(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class WebhookRecord:
    """One webhook request as logged. ``body`` only for accepted requests, already size-capped."""

    received_at: datetime
    tenant: str | None
    provider: str
    outcome: Outcome
    status_code: int
    reason: str | None = None
    event_id: str | None = None
    headers: dict[str, str] | None = None
    body_size: int = 0
    body: str | None = None
    latency_ms: float | None = None
    repeats: int = 0  # further identical refusals this row stands for (store/refusals.py)
    # The items of a delivery that batches several events (WhatsApp messages and statuses). Not a log
    # column: kept in webhook_event_keys, so an item is stored once whatever batch it arrives in.
    item_keys: tuple[str, ...] = ()

    def as_duplicate(self) -> WebhookRecord:
        return replace(self, outcome="duplicate", body=None)


_RECORD_FIELDS = tuple(f.name for f in fields(WebhookRecord) if f.name != "item_keys")
# The outbox columns the insert sets: an accepted row is queued for delivery (due at once) in the very
# statement that records it, so no second write can fail after the 200 (docs/delivery.md).
_INSERT_FIELDS = (*_RECORD_FIELDS, "delivery_state", "next_attempt_at")
DeliveryState = Literal["pending", "retrying", "delivered", "dead"]


@dataclass(frozen=True)
class LogRow(WebhookRecord):
    id: int = 0
    delivery_state: DeliveryState | None = None  # None: never queued (rejected and duplicate rows)
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    # Pending or retrying: when it is due, or, while claimed_by names a worker, when that claim's lease ends.
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None

    def in_flight(self, now: datetime) -> bool:
        """Claimed by a worker whose lease runs at ``now``: its attempt may be under way (as :func:`in_flight`)."""
        return (self.claimed_by is not None and self.next_attempt_at is not None and self.next_attempt_at > now
                and self.delivery_state in ("pending", "retrying"))


_DELIVERY_FIELDS = ("delivery_state", "attempts", "last_status", "last_error", "delivered_at", "next_attempt_at",
                    "claimed_by")


class EventStore(Protocol):
    """Where the webhook server records every request.

    ``record`` must: return only after the row is durably committed; return DUPLICATE (and store the
    request as outcome ``duplicate``, without body) for an accepted record whose (provider, tenant,
    event_id) was accepted before; raise DatabaseUnavailable when the row could not be committed.
    It must not: hold the record in memory past its return, or log headers or bodies.
    """

    def record(self, rec: WebhookRecord) -> RecordResult: ...

    def close(self) -> None: ...


DedupKey = tuple[str, str | None, str]  # (provider, tenant, event_id)

# Column lengths of the text a sender controls (store/schema.py).
_EVENT_ID_LENGTH = 255
_REASON_LENGTH = 64
# body_size is an INTEGER column (32 bits on PostgreSQL): a declared Content-Length beyond it (a 413 for
# "99999999999999999999") is stored as this bound, which is far past any body limit.
MAX_BODY_SIZE = 2**31 - 1


def _fit(text: str | None, length: int) -> str | None:
    return None if text is None else storable(text)[:length]


def storable_record(rec: WebhookRecord) -> WebhookRecord:
    """REC with every sender-controlled text made storable: NUL and lone surrogates escaped (PostgreSQL
    refuses NUL in text, neither driver can encode a surrogate), then cut to its column's length; the keys
    compared for de-duplication (event ID, item keys) instead kept by their digest when they cannot be stored
    as sent, since an escape or a cut would give two events one key. A content problem must never fail the
    write (and so answer 503 forever): the request is recorded. Deterministic, so a redelivery maps to the same
    de-duplication key."""
    texts = (rec.event_id or "", rec.reason or "", rec.body or "", *rec.item_keys,
             *(rec.headers.values() if rec.headers else ()))
    if (all(t.isascii() and "\x00" not in t for t in texts) and len(rec.event_id or "") <= _EVENT_ID_LENGTH
            and len(rec.reason or "") <= _REASON_LENGTH and all(len(k) <= _EVENT_ID_LENGTH for k in rec.item_keys)
            and 0 <= rec.body_size <= MAX_BODY_SIZE):
        return rec  # the common case: nothing to change, no copy
    headers = rec.headers
    if headers is not None and not all(v.isascii() and "\x00" not in v for v in headers.values()):
        headers = {k: storable(v) for k, v in headers.items()}
    fitted = replace(
        rec, event_id=None if rec.event_id is None else storable_key(rec.event_id, _EVENT_ID_LENGTH),
        reason=_fit(rec.reason, _REASON_LENGTH), body=None if rec.body is None else storable(rec.body),
        headers=headers, item_keys=tuple(storable_key(k, _EVENT_ID_LENGTH) for k in rec.item_keys),
        body_size=min(max(rec.body_size, 0), MAX_BODY_SIZE),
    )
    return rec if fitted == rec else fitted


def _dedup_key(rec: WebhookRecord) -> DedupKey | None:
    if rec.outcome == "accepted" and rec.event_id is not None:
        return (rec.provider, rec.tenant, rec.event_id)
    return None


# -- the hot write path ------------------------------------------------------------------------------
# Every webhook request ends here, so the batch insert bypasses SQL compilation and per-value type
# processing: a profile of the server under load showed them taking ~40 % of a worker's GIL time.
# The statement text is built once per (dialect, batch size) from the Table, parameters are converted
# exactly as the column types would (UTC-aware datetimes; SQLite stores naive-UTC ISO text, JSON as
# text), and `exec_driver_sql` still runs through SQLAlchemy's error handling and transaction.
_COLUMNS = ", ".join(_INSERT_FIELDS)
_CONFLICT = f"ON CONFLICT (provider, tenant, event_id) WHERE {ACCEPTED_EVENT_PREDICATE} DO NOTHING"


@functools.lru_cache(maxsize=64)
def _insert_sql(dialect: str, rows: int, on_conflict: bool) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    row = "(" + ", ".join([mark] * len(_INSERT_FIELDS)) + ")"
    # Only constants are interpolated: table and column names from the schema, placeholders.
    sql = f"INSERT INTO {webhook_log.name} ({_COLUMNS}) VALUES " + ", ".join([row] * rows)  # noqa: S608
    if on_conflict:
        sql += f" {_CONFLICT} RETURNING provider, tenant, event_id"
    return sql


def row_time(at: datetime, sqlite_dialect: bool) -> Any:
    """``at`` as the driver takes it for a UTCDateTime column: naive-UTC ISO text on SQLite (SQLAlchemy's
    DATETIME storage), the UTC-aware datetime on PostgreSQL. Raises ValueError for a naive datetime."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware datetime (UTC)")
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    # isoformat with fixed microseconds is SQLAlchemy's SQLite DATETIME text, at a third of strftime's cost
    return at.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite_dialect else at


def _row(rec: WebhookRecord, sqlite_dialect: bool) -> tuple[Any, ...]:
    received = row_time(rec.received_at, sqlite_dialect)
    # A handshake (accepted, reason "handshake") is recorded but is no event: never queued for delivery.
    queued = rec.outcome == "accepted" and rec.reason is None
    return (
        received,
        rec.tenant, rec.provider, rec.outcome, rec.status_code, rec.reason, rec.event_id,
        None if rec.headers is None else json.dumps(rec.headers, separators=(",", ":")),
        # float: a binary array (PostgreSQL) takes one element type, and a caller may pass an int
        rec.body_size, rec.body, None if rec.latency_ms is None else float(rec.latency_ms), rec.repeats,
        "pending" if queued else None, received if queued else None,
    )


# SQLite's limit on bound variables is 32,766; 14 per row.
_MAX_ROWS_PER_STATEMENT = 500


# Runs one statement with positional parameters; returns the rows when `returning`.
Executor = Callable[[str, tuple[Any, ...], bool], list[Any]]


def _connection_executor(conn: Connection) -> Executor:
    def run(sql: str, params: tuple[Any, ...], returning: bool) -> list[Any]:
        result = conn.exec_driver_sql(sql, params)
        return list(result.all()) if returning else []

    return run


def _cursor_executor(cur: Any) -> Executor:
    def run(sql: str, params: tuple[Any, ...], returning: bool) -> list[Any]:
        cur.execute(sql, params)
        return list(cur.fetchall()) if returning else []

    return run


def _insert(execute: Executor, dialect: str, records: Sequence[WebhookRecord], *,
            on_conflict: bool) -> list[Any]:
    sqlite_dialect = dialect == "sqlite"
    returned: list[Any] = []
    for start in range(0, len(records), _MAX_ROWS_PER_STATEMENT):
        chunk = records[start:start + _MAX_ROWS_PER_STATEMENT]
        params = tuple(v for rec in chunk for v in _row(rec, sqlite_dialect))
        returned.extend(execute(_insert_sql(dialect, len(chunk), on_conflict), params, on_conflict))
    return returned


@functools.lru_cache(maxsize=64)
def _item_keys_sql(dialect: str, rows: int) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    values = ", ".join([f"({mark}, {mark}, {mark}, {mark})"] * rows)
    return (f"INSERT INTO {webhook_event_keys.name} (provider, tenant, item_key, received_at) "  # noqa: S608
            f"VALUES {values} ON CONFLICT DO NOTHING RETURNING provider, tenant, item_key")


def _new_item_keys(execute: Executor, dialect: str, records: Sequence[WebhookRecord]) -> set[tuple[Any, ...]]:
    """Insert the item keys of RECORDS; return those that were not known before."""
    keys: dict[tuple[str, str | None, str], datetime] = {}
    for rec in records:
        for k in rec.item_keys:
            keys.setdefault((rec.provider, rec.tenant, k), rec.received_at)
    sqlite_dialect = dialect == "sqlite"
    items = list(keys.items())
    new: set[tuple[Any, ...]] = set()
    for start in range(0, len(items), _MAX_ROWS_PER_STATEMENT):
        chunk = items[start:start + _MAX_ROWS_PER_STATEMENT]
        params = tuple(v for (provider, tenant, k), at in chunk
                       for v in (provider, tenant, k, row_time(at, sqlite_dialect)))
        new.update(tuple(r) for r in execute(_item_keys_sql(dialect, len(chunk)), params, True))
    return new


def write_batch(conn: Connection, records: Sequence[WebhookRecord]) -> list[RecordResult]:
    """Write ``records`` inside the caller's transaction; one result per record, in order."""
    return _write_rows(_connection_executor(conn), conn.dialect.name, [storable_record(r) for r in records])


def _classify(records: Sequence[WebhookRecord], stale: set[int]) -> tuple[
        list[RecordResult], dict[DedupKey, int], list[WebhookRecord]]:
    """Split a batch before it meets the database: the de-duplication candidates (first accepted record
    of each key, by index) and the rows to insert as they are. Stale deliveries (indexes in STALE) and
    keys repeated within the batch are duplicates already; their results say so."""
    results = [RecordResult.STORED] * len(records)
    candidates: dict[DedupKey, int] = {}
    plain: list[WebhookRecord] = []
    for i, rec in enumerate(records):
        key = _dedup_key(rec)
        if key is None:
            plain.append(rec)
        elif i in stale or key in candidates:
            results[i] = RecordResult.DUPLICATE
            plain.append(rec.as_duplicate())
        else:
            candidates[key] = i
    return results, candidates, plain


def _write_rows(execute: Executor, dialect: str, records: Sequence[WebhookRecord]) -> list[RecordResult]:
    """The batch write, on a SQLAlchemy connection or on a bare DBAPI cursor.

    Accepted records with an event id are inserted with ON CONFLICT DO NOTHING .. RETURNING their key;
    a key that did not come back conflicted with an earlier accepted row. A key repeated within the
    batch is a duplicate of its first occurrence without asking the database. Every duplicate is then
    inserted as a ``duplicate`` row in the same transaction.
    """
    # Deliveries that batch several events are duplicates when none of their items is new.
    keyed = [i for i, rec in enumerate(records) if rec.item_keys and _dedup_key(rec) is not None]
    stale: set[int] = set()
    if keyed:
        unclaimed = _new_item_keys(execute, dialect, [records[i] for i in keyed])
        for i in keyed:
            rec = records[i]
            mine = {(rec.provider, rec.tenant, k) for k in rec.item_keys} & unclaimed
            unclaimed -= mine  # an item new in this batch belongs to its first delivery only
            if not mine:
                stale.add(i)
    results, candidates, plain = _classify(records, stale)
    if candidates:
        rows = _insert(execute, dialect, [records[i] for i in candidates.values()], on_conflict=True)
        inserted = {(row[0], row[1], row[2]) for row in rows}
        for key, i in candidates.items():
            if key not in inserted:
                results[i] = RecordResult.DUPLICATE
                plain.append(records[i].as_duplicate())
    if plain:
        _insert(execute, dialect, plain, on_conflict=False)
    return results


# -- PostgreSQL: a whole batch in one statement -------------------------------------------------------
# Under gevent every round trip to the server parks the writer until the worker's loop comes back to it,
# so a batch costs (statements + COMMIT) loop turns. One data-modifying statement on an autocommit
# connection is atomic by itself and takes one: the accepted rows go in with ON CONFLICT DO NOTHING, those
# that conflicted go in again as 'duplicate' rows (found through RETURNING, the only way WITH clauses see
# each other's writes), and every other row goes in as it is.
# The rows travel as one array per column (unnest), so the statement's text is the same for every batch
# size: psycopg parses its placeholders once (it re-parsed a VALUES list of 15 x rows placeholders on
# every batch, ~7 % of a worker's time) and prepares it on the server after a few executions. Binary
# arrays cost a fifth of what the VALUES list's parameters did to adapt.
@functools.lru_cache(maxsize=1)
def _pg_batch_sql() -> str:
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    # Arrays carry no column types: each is cast to its column's type.
    # %b: binary arrays; psycopg's text format escapes every element through a regular expression (10x
    # the cost).
    arrays = [f"%b::{webhook_log.c[name].type.compile(dialect=pg)}[]" for name in _INSERT_FIELDS]
    # A duplicate keeps no body and is never queued for delivery.
    as_duplicate = ", ".join(
        "'duplicate'" if name == "outcome" else
        "NULL" if name in ("body", "delivery_state", "next_attempt_at") else name for name in _INSERT_FIELDS)
    table = webhook_log.name
    # Only constants are interpolated: table and column names from the schema, placeholders.
    return (
        f"WITH v ({_COLUMNS}, candidate) AS (SELECT * FROM unnest({', '.join([*arrays, '%b::boolean[]'])})), "  # noqa: S608
        f"ins AS (INSERT INTO {table} ({_COLUMNS}) SELECT {_COLUMNS} FROM v WHERE candidate {_CONFLICT} "
        "RETURNING provider, tenant, event_id), "
        f"dup AS (INSERT INTO {table} ({_COLUMNS}) SELECT {as_duplicate} FROM v WHERE candidate AND NOT EXISTS "
        "(SELECT 1 FROM ins WHERE ins.provider = v.provider AND ins.tenant IS NOT DISTINCT FROM v.tenant "
        "AND ins.event_id = v.event_id)), "
        f"plain AS (INSERT INTO {table} ({_COLUMNS}) SELECT {_COLUMNS} FROM v WHERE NOT candidate) "
        "SELECT provider, tenant, event_id FROM ins"
    )


def _fits_one_statement(dialect: str, records: Sequence[WebhookRecord]) -> bool:
    # Item keys need a statement of their own before the log rows, and so a transaction.
    return (dialect == "postgresql" and len(records) <= _MAX_ROWS_PER_STATEMENT
            and not any(rec.item_keys for rec in records))


def _write_rows_one_statement(execute: Executor, records: Sequence[WebhookRecord]) -> list[RecordResult]:
    """``_write_rows`` for PostgreSQL in one statement; records with item keys are not accepted here."""
    results, candidates, plain = _classify(records, set())
    rows = [(*_row(records[i], False), True) for i in candidates.values()]
    rows += [(*_row(rec, False), False) for rec in plain]
    if not rows:
        return results
    columns = tuple(list(column) for column in zip(*rows, strict=True))
    inserted = {(r[0], r[1], r[2]) for r in execute(_pg_batch_sql(), columns, True)}
    for key, i in candidates.items():
        if key not in inserted:
            results[i] = RecordResult.DUPLICATE
    return results


def _is_operational(exc: BaseException) -> bool:
    """The database itself failed (unreachable, locked, schema missing), not one record's data.

    Such an error fails the whole batch (after one retry); any other error is retried record by record.
    """
    if isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return True
    # The writer talks to the driver directly: its exceptions follow PEP 249's names.
    return any(c.__name__ in ("OperationalError", "InterfaceError") for c in type(exc).__mro__)


def _is_content_error(exc: BaseException) -> bool:
    """The record's own data was refused (a value out of range, a constraint), not the database."""
    if isinstance(exc, ValueError | OverflowError | TypeError | UnicodeError):
        return True
    orig = getattr(exc, "orig", None) or exc
    return isinstance(orig, ValueError | OverflowError | TypeError) or any(
        c.__name__ in ("DataError", "IntegrityError") for c in type(orig).__mro__)


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    # The message names the error class and the driver's short text; parameters are hidden by the
    # engine (hide_parameters=True), so no header or body can leak through here.
    orig = getattr(exc, "orig", None) or exc
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    err = DatabaseUnavailable(f"could not record the webhook: {type(orig).__name__}: {first_line}"[:300])
    err.__cause__ = exc
    return err


class DirectEventStore(EventStore):
    """One transaction per record: simple, and the baseline the group-commit store is measured against."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, rec: WebhookRecord) -> RecordResult:
        try:
            with begin_write(self.engine) as conn:
                return write_batch(conn, [rec])[0]
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: a record the columns refuse
            raise _unavailable(exc) from exc

    def close(self) -> None:
        """Nothing to drain; the engine belongs to the caller."""


class _Pending:
    """One waiting request. A pre-acquired lock is the cheapest hand-over CPython has: the writer's
    release wakes exactly this waiter (a Future's Condition costs several lock operations more, and the
    profile showed the writer spending a tenth of its time notifying). Settled once: the writer and the
    commit watchdog may both try, under the store's settle lock; the first one wins."""

    __slots__ = ("_error", "_lock", "_result", "rec")

    def __init__(self, rec: WebhookRecord) -> None:
        self.rec = rec
        self._lock = threading.Lock()
        self._lock.acquire()
        self._result: RecordResult | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def set_result(self, result: RecordResult) -> None:
        if not self.done():
            self._result = result
            self._lock.release()

    def set_exception(self, exc: BaseException) -> None:
        if not self.done():
            self._error = exc
            self._lock.release()

    def wait(self, timeout_s: float) -> RecordResult:
        if not self._lock.acquire(timeout=timeout_s):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        if self._result is None:  # pragma: no cover - released only with a result or an error
            raise RuntimeError("released without a result")
        return self._result


_STOP = object()
_KNOWN_DUPLICATES = 10_000
ERROR_MEMORY_S = 10.0  # how long a failed write keeps a store "not ready" when nothing is written since


def _shutdown_socket(fd: int) -> None:
    """Shut down the socket under a DBAPI connection another thread is stuck on: its read then ends
    (EOF) and the driver raises, so the stuck writer unwinds by itself. PostgreSQL only (SQLite is a
    file; its waits are bounded by busy_timeout)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception as exc:  # already closed, or not a socket: nothing left to abandon
        log.debug("abandoning the writer's connection: %s", type(exc).__name__)


class GroupCommitEventStore(EventStore):
    """Many request threads, one writer thread, one commit per batch.

    Each ``record()`` call queues its record and waits on a future. The writer takes everything queued
    (up to ``batch_size``), writes it in one transaction, commits and then resolves the futures: the
    commit (fsync on SQLite, WAL flush + round trip on PostgreSQL) is paid once per batch instead of once
    per request. Batches form by themselves under load (requests queue while a commit is in flight),
    so ``linger_s`` (waiting for more before writing) defaults to 0: the benchmark showed no gain.

    Failures: a transient error (connection lost, database locked) retries the batch once; otherwise
    every caller of the batch gets DatabaseUnavailable. A non-operational error of a batch (for example
    one record that violates a constraint) is retried record by record, so one bad record cannot fail
    its neighbours. The writer thread survives every error.

    Stuck database (a partition: packets dropped, no reset): a watchdog fails a batch whose commit runs
    longer than ``commit_deadline_s`` at once (503, the provider retries) and shuts its connection's
    socket down, so the stuck writer unwinds and the next batch opens a new connection; a database that
    answers again is written to at the next batch. Until one succeeds, records arriving while the writer
    retries are answered DatabaseUnavailable at once. Requests never pile up: with ``max_queue`` records
    waiting, ``record`` raises DatabaseUnavailable at once, and no caller waits longer than
    ``timeout_s``. :meth:`problem` tells readiness probes about a stuck writer without touching the
    database.

    Refusals beyond ``refusal_sample`` per kind and minute are counted into one row (store/refusals.py)
    and answered without waiting for a commit.

    Under gevent's monkey-patching (the server's default worker) the threads, locks and queue here are
    greenlets and their primitives, so waiting for a commit parks a greenlet instead of a thread. On
    PostgreSQL psycopg yields while the server works; SQLite's commit blocks the worker's loop for its
    duration, which measured a lower p99 at half load than handing it to a native thread (every return
    from the C library there waited for the GIL).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = 256,
        linger_s: float = 0.0,
        timeout_s: float = 10.0,
        retry_pause_s: float = 0.05,
        commit_deadline_s: float = 5.0,
        max_queue: int = 2000,
        refusal_sample: int | None = None,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.timeout_s = timeout_s
        self.retry_pause_s = retry_pause_s
        self.commit_deadline_s = commit_deadline_s
        self.max_queue = max_queue
        self.refusals = RefusalFolder(refusal_sample) if refusal_sample is not None else None
        # Replays of one captured request are bounded like refusals: once the database said an event is
        # a duplicate, its further copies that minute are counted into folded rows (answered duplicate).
        self.duplicates = RefusalFolder(refusal_sample) if refusal_sample is not None else None
        self._known_duplicates: dict[DedupKey, int] = {}  # key → the minute it was last seen duplicate
        self._start_lock = threading.Lock()
        self._settle_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._watch_wake = threading.Event()  # close() ends the watchdog's tick at once
        # Set while a writer serves this store: checked on every record, where Thread.is_alive (a lock
        # round trip, a greenlet switch under gevent) measured ~4 % of a worker's time.
        self._writer_up = False
        self._pid = os.getpid()
        self._closed = False
        self._raw: Any = None  # the writer thread's DBAPI connection (PoolProxiedConnection)
        self._raw_pid = -1
        # The batch being committed and since when (monotonic), for the watchdog and readiness.
        self._inflight: list[_Pending] = []
        self._inflight_since: float | None = None
        self._inflight_fd: int | None = None  # the socket of the writer's PostgreSQL connection
        self._last_error: str | None = None
        self._last_error_at = 0.0
        self._suspect = False  # set when a commit was abandoned, cleared by the next successful one
        self.batches_written = 0  # observability and tests: how well batching works
        self.abandoned = 0  # commits given up by the watchdog

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (``record`` does it lazily too)."""
        with self._start_lock:
            if self._pid != os.getpid():  # we were forked: nothing inherited is ours
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._thread = None
                self._watchdog = None
                self._inflight, self._inflight_since = [], None
                self.engine.dispose(close=False)
            if self._closed:
                raise DatabaseUnavailable("the event store is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="webhook-log-writer", daemon=True, args=(self._queue,)
                )
                self._writer_up = True
                self._thread.start()
            if self._watchdog is None or not self._watchdog.is_alive():
                self._watchdog = threading.Thread(target=self._watch, name="webhook-log-watchdog", daemon=True)
                self._watchdog.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer. Later ``record`` calls raise DatabaseUnavailable."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
            watchdog = self._watchdog if self._pid == os.getpid() else None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout_s)
        elif thread is None:
            self._release_connection()  # _commit may have run without a writer (tests)
        if watchdog is not None and not self._writer_up:
            self._watch_wake.set()
            watchdog.join(1.0)

    def __enter__(self) -> GroupCommitEventStore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request side ------------------------------------------------------------------------------
    def record(self, rec: WebhookRecord) -> RecordResult:
        if self._closed and self._pid == os.getpid():
            raise DatabaseUnavailable("the event store is closed")
        if not self._writer_up or self._pid != os.getpid():
            self.start()
        rec = storable_record(rec)
        if self.refusals is not None and rec.outcome == "rejected" and not self.refusals.admit(rec):
            return RecordResult.STORED  # counted into its kind's folded row, written with a later batch
        key = _dedup_key(rec)
        if key is not None and self.duplicates is not None:
            minute = int(rec.received_at.timestamp() // 60)
            if self._known_duplicates.get(key) == minute:
                rec = rec.as_duplicate()  # known: no need to ask the database again
                if not self.duplicates.admit(rec):
                    return RecordResult.DUPLICATE  # counted into the minute's folded duplicate row
        if self._suspect and self._inflight_since is not None:
            # A commit was abandoned and the writer is still trying to reach the database: answer now
            # instead of queueing behind it (it holds one batch, enough to notice the recovery).
            raise DatabaseUnavailable("the webhook log's database is not answering (retrying)")
        if self._queue.qsize() >= self.max_queue:
            raise DatabaseUnavailable(f"the webhook log is behind: {self.max_queue} records waiting")
        pending = _Pending(rec)
        self._queue.put(pending)
        try:
            result = pending.wait(self.timeout_s)
        except TimeoutError as exc:
            # The row may still commit later; the provider's retry is then logged as a duplicate.
            raise DatabaseUnavailable(f"the webhook log did not commit within {self.timeout_s:g}s") from exc
        if key is not None and self.duplicates is not None:
            if rec.outcome == "duplicate":
                return RecordResult.DUPLICATE
            if result is RecordResult.DUPLICATE:
                if len(self._known_duplicates) >= _KNOWN_DUPLICATES:
                    self._known_duplicates.clear()  # a bounded memory; forgetting only costs a row
                self._known_duplicates[key] = int(rec.received_at.timestamp() // 60)
        return result

    def problem(self) -> str | None:
        """Why this store cannot write now (None when it can, as far as it knows): a commit running past
        half its deadline, or the last batch's failure when nothing has been written since. Never
        touches the database, so it answers at once."""
        since = self._inflight_since
        if since is not None:
            running = time.monotonic() - since
            if running > self.commit_deadline_s / 2:
                return f"webhook log writer stuck: a commit has been running for {running:.1f}s"
        # A failure is news for a while only: with no traffic nothing would ever clear it.
        if self._last_error is not None and time.monotonic() - self._last_error_at < ERROR_MEMORY_S:
            return self._last_error
        return None

    # -- watchdog ----------------------------------------------------------------------------------
    def _watch(self) -> None:
        tick = min(0.25, self.commit_deadline_s / 4)
        while not (self._closed and not self._writer_up):
            self._watch_wake.wait(tick)
            since = self._inflight_since
            if since is not None and time.monotonic() - since > self.commit_deadline_s:
                self._abandon(since)

    def _abandon(self, since: float) -> None:
        with self._settle_lock:
            if self._inflight_since != since:
                return  # that commit ended meanwhile
            batch = self._inflight
            exc = DatabaseUnavailable(f"the webhook log did not commit within {self.commit_deadline_s:g}s")
            for pending in batch:
                pending.set_exception(exc)
            self.abandoned += 1
            self._suspect = True
            self._last_error = f"database did not answer a commit within {self.commit_deadline_s:g}s"
            self._last_error_at = time.monotonic()
            # Under the lock: the writer forgets its descriptor under it too before closing, so the
            # number cannot meanwhile belong to another socket (a client's).
            fd, self._inflight_fd = self._inflight_fd, None
            if fd is not None:
                _shutdown_socket(fd)
        log.error("webhook log commit of %d record(s) exceeded %gs: answered 503, abandoning its connection",
                  len(batch), self.commit_deadline_s)

    # -- writer side -------------------------------------------------------------------------------
    def _run(self, q: queue.SimpleQueue[_Pending | object]) -> None:
        try:
            self._loop(q)
        finally:
            self._writer_up = False
            self._release_connection()
            # A record() racing with close() must not wait for its timeout.
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Pending):
                    item.set_exception(DatabaseUnavailable("the event store is closed"))

    def _release_connection(self) -> None:
        with self._settle_lock:
            raw, self._raw, self._inflight_fd = self._raw, None, None
        if raw is not None and self._raw_pid == os.getpid():
            with contextlib.suppress(Exception):
                if self.engine.dialect.name == "postgresql":
                    raw.driver_connection.autocommit = False  # back to the pool as the pool made it
                raw.close()

    def _folding(self) -> bool:
        return any(f is not None and f.pending() for f in (self.refusals, self.duplicates))

    def _next(self, q: queue.SimpleQueue[_Pending | object]) -> _Pending | object | None:
        if not self._folding():
            return q.get()
        try:  # folded refusals wait for their minute to end: come back for them
            return q.get(timeout=1.0)
        except queue.Empty:
            return None

    def _loop(self, q: queue.SimpleQueue[_Pending | object]) -> None:
        stopping = False
        while not stopping:
            first = self._next(q)
            batch: list[_Pending] = [first] if isinstance(first, _Pending) else []
            stopping = first is _STOP
            stopping = self._fill(q, batch) or stopping
            for folder in (self.refusals, self.duplicates):
                if folder is not None and folder.pending():
                    folded = folder.due(None if stopping else datetime.now(UTC))
                    batch.extend(_Pending(rec) for rec in folded)  # nobody waits for these
            if not batch:
                continue
            try:
                self._write(batch)
            except Exception as exc:  # the writer must outlive any bug in a batch
                log.exception("webhook log writer: unexpected error")
                self._settle(batch, error=exc)

    def _fill(self, q: queue.SimpleQueue[_Pending | object], batch: list[_Pending]) -> bool:
        """Take what is queued (and, with linger, what arrives shortly); True when asked to stop."""
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.batch_size:
            try:
                remaining = deadline - time.monotonic()
                item = q.get(timeout=remaining) if remaining > 0 and batch else q.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                # Drain everything queued before the stop so close() loses nothing.
                while len(batch) < self.batch_size:
                    try:
                        more = q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(more, _Pending):
                        batch.append(more)
                if not q.empty():
                    q.put(_STOP)  # more than one batch left: come back for the rest
                    return False
                return True
            if isinstance(item, _Pending):
                batch.append(item)
        return False

    def _settle(self, batch: list[_Pending], results: Sequence[RecordResult] | None = None,
                error: BaseException | None = None) -> None:
        with self._settle_lock:
            if results is not None:
                for pending, result in zip(batch, results, strict=True):
                    pending.set_result(result)
            else:
                exc = _unavailable(error) if error is not None else DatabaseUnavailable("not written")
                for pending in batch:
                    pending.set_exception(exc)

    def _write(self, batch: list[_Pending]) -> None:
        records = [p.rec for p in batch]
        try:
            results = self._timed_commit(batch, records)
        except Exception as exc:
            if all(p.done() for p in batch):
                return  # the watchdog answered this batch already
            if _is_operational(exc):
                time.sleep(self.retry_pause_s)
                try:
                    results = self._timed_commit(batch, records)
                except Exception as again:
                    self._fail(batch, again)
                    return
            elif len(batch) > 1:
                self._one_by_one(batch, exc)
                return
            else:
                self._fail(batch, exc)
                return
        self.batches_written += 1
        self._last_error = None
        self._suspect = False
        self._settle(batch, results)

    def _timed_commit(self, batch: list[_Pending], records: list[WebhookRecord]) -> list[RecordResult]:
        with self._settle_lock:
            self._inflight, self._inflight_since = batch, time.monotonic()
        try:
            return self._commit(records)
        finally:
            with self._settle_lock:
                self._inflight, self._inflight_since, self._inflight_fd = [], None, None

    def _one_by_one(self, batch: list[_Pending], batch_exc: BaseException) -> None:
        log.warning(
            "webhook log batch of %d failed (%s); writing one by one", len(batch), type(batch_exc).__name__
        )
        for pending in batch:
            try:
                result = self._timed_commit([pending], [pending.rec])[0]
            except Exception as exc:
                self._fail([pending], exc)
            else:
                self._settle([pending], [result])

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        log.error("webhook log write failed for %d record(s): %s", len(batch), type(exc).__name__)
        if _is_content_error(exc):
            # One record's data was refused: the database is fine, readiness must not say otherwise.
            self._settle(batch, error=exc)
            return
        self._last_error = f"last webhook log write failed: {type(getattr(exc, 'orig', None) or exc).__name__}"
        self._last_error_at = time.monotonic()
        self._settle(batch, error=exc)

    def _commit(self, records: list[WebhookRecord]) -> list[RecordResult]:
        """One transaction on the writer's own DBAPI connection, kept across batches.

        Checking a pooled connection out and in, and SQLAlchemy's transaction bookkeeping, cost as much
        as the insert itself per batch; the writer is one thread, so it simply keeps one connection.
        After any error the connection is dropped and the next batch opens a new one.
        """
        dialect = self.engine.dialect.name
        if self._raw is None or self._raw_pid != os.getpid():
            self._raw, self._raw_pid = self.engine.raw_connection(), os.getpid()
            if dialect == "postgresql":  # transactions are delimited below, one statement needs none
                self._raw.driver_connection.autocommit = True
        raw = self._raw
        if dialect == "postgresql":
            with self._settle_lock:
                self._inflight_fd = raw.driver_connection.fileno()
        try:
            with writer_lock(self.engine):
                cur = raw.cursor()
                try:
                    if _fits_one_statement(dialect, records):
                        results = _write_rows_one_statement(_cursor_executor(cur), records)
                    else:  # both drivers are in autocommit mode: we delimit the transaction
                        cur.execute("BEGIN IMMEDIATE" if dialect == "sqlite" else "BEGIN")
                        results = _write_rows(_cursor_executor(cur), dialect, records)
                        cur.execute("COMMIT")
                finally:
                    cur.close()
        except BaseException:
            self._raw = None
            with self._settle_lock:
                self._inflight_fd = None
            with contextlib.suppress(Exception):
                raw.invalidate()  # never reuse a connection in an unknown transaction state
            raise
        return results


# -- reads --------------------------------------------------------------------------------------------

_LOG_COLUMNS = [webhook_log.c[name] for name in (*_RECORD_FIELDS, "id", *_DELIVERY_FIELDS)]


def _row_to_log(row: Any) -> LogRow:
    return LogRow(**{name: getattr(row, name) for name in (*_RECORD_FIELDS, "id", *_DELIVERY_FIELDS)})


def newest_first(dialect: str, columns: Sequence[Any], *, tenant: str | None = None, provider: str | None = None,
                 outcome: str | None = None, reason: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, states: Sequence[str] = (), limit: int = 100,
                 cursor: int | None = None) -> Select[Any]:
    """A page of the log (``limit`` + 1 rows, to tell whether another follows), newest first, keyset-paged by ID
    (``cursor``: the last ID shown). Filters are ANDed; ``reason`` matches as a prefix ("cross-tenant" finds every
    "cross-tenant:<owner>"); ``since`` is inclusive, ``until`` exclusive. ``states``:
    only events in one of these delivery states (rows never queued, whose state is NULL, match none); states of
    the queue alone (pending, retrying, dead) are read from its index (store/queue_depth.py), so finding the few
    dead events costs what the queue holds, not what the log holds (on PostgreSQL by its planner's own choice).

    Raises ValueError when ``limit`` < 1."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    c = webhook_log.c
    stmt = select(*columns).order_by(c.id.desc()).limit(limit + 1)
    # SQLite, without statistics, scans the log for a state; named, the queue's index serves it (it holds every other
    # filter but the reason). PostgreSQL finds that index from the plain filter itself, and the sub-select would
    # only add a join (1.1 → 2.7 ms for 10 dead in 500,000 rows, benchmarks/dead_letters.py).
    if dialect == "sqlite" and states and set(states) <= set(QUEUED_STATES) and reason is None:
        stmt = stmt.where(c.id.in_(queued_ids(dialect, states, tenant=tenant, provider=provider, since=since,
                                              until=until, before_id=cursor, limit=limit + 1)))
    elif states:
        stmt = stmt.where(c.delivery_state.in_(list(states)))
    for value, col in ((tenant, c.tenant), (provider, c.provider), (outcome, c.outcome)):
        if value is not None:
            stmt = stmt.where(col == value)
    if reason is not None:  # a prefix, case and all on both databases (SQLite's LIKE ignores ASCII case)
        stmt = stmt.where(func.substr(c.reason, 1, len(reason)) == reason)
    if since is not None:
        stmt = stmt.where(c.received_at >= since)
    if until is not None:
        stmt = stmt.where(c.received_at < until)
    if cursor is not None:
        stmt = stmt.where(c.id < cursor)
    return stmt


def query_log(
    engine: Engine,
    *,
    tenant: str | None = None,
    provider: str | None = None,
    outcome: Outcome | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    states: Sequence[str] = (),
    limit: int = 100,
    cursor: int | None = None,
) -> tuple[list[LogRow], int | None]:
    """A page of the log, newest first (see :func:`newest_first`). Pass the returned cursor back to get the next
    page; ``None`` means no more pages."""
    stmt = newest_first(engine.dialect.name, _LOG_COLUMNS, tenant=tenant, provider=provider, outcome=outcome,
                        since=since, until=until, states=states, limit=limit, cursor=cursor)
    with engine.connect() as conn:
        rows = [_row_to_log(r) for r in conn.execute(stmt)]
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


@dataclass(frozen=True)
class StatRow:
    tenant: str | None
    provider: str
    last_accepted_at: datetime | None
    accepted: int
    rejected: int
    duplicate: int


def stats(engine: Engine, *, now: datetime, window: timedelta = timedelta(hours=24)) -> list[StatRow]:
    """Counts per (tenant, provider) for requests received in ``[now - window, now]``.

    ``last_accepted_at`` is the newest accepted request within the window (None if none). Requests for
    unknown tenants appear with ``tenant=None``.
    """
    c = webhook_log.c

    def count(outcome: str) -> Any:
        # A folded refusal row stands for itself and its repeats.
        return func.coalesce(func.sum(case((c.outcome == outcome, 1 + c.repeats), else_=0)), 0)

    stmt = (
        select(
            c.tenant,
            c.provider,
            func.max(case((c.outcome == "accepted", c.received_at), else_=None)).label("last_accepted_at"),
            count("accepted").label("accepted"),
            count("rejected").label("rejected"),
            count("duplicate").label("duplicate"),
        )
        .where(c.received_at >= now - window, c.received_at <= now)
        .group_by(c.tenant, c.provider)
    )
    with engine.connect() as conn:
        rows = [
            StatRow(
                tenant=r.tenant,
                provider=r.provider,
                last_accepted_at=r.last_accepted_at,
                accepted=int(r.accepted),
                rejected=int(r.rejected),
                duplicate=int(r.duplicate),
            )
            for r in conn.execute(stmt)
        ]
    return sorted(rows, key=lambda s: (s.tenant is None, s.tenant or "", s.provider))


def in_flight(now: datetime) -> ColumnElement[bool]:
    """Events a delivery worker holds at ``now``: claimed, their lease still running, so their attempt may be
    under way (the platform may be receiving them)."""
    c = webhook_log.c
    return and_(c.claimed_by.is_not(None), c.next_attempt_at > now)


def not_in_flight(now: datetime) -> ColumnElement[bool]:
    """The rows :func:`in_flight` leaves out (written so that a NULL claim counts as none)."""
    c = webhook_log.c
    return or_(c.claimed_by.is_(None), c.next_attempt_at <= now)


def prune(engine: Engine, older_than: datetime, *, include_undelivered: bool = False,
          now: datetime | None = None) -> int:
    """Delete log rows (and item keys) received before ``older_than``; returns how many log rows.

    Events still to deliver (pending, retrying) or dead-lettered are kept unless ``include_undelivered``:
    pruning must not lose what the platform never received. Even then an event :func:`in_flight` at ``now``
    (default: the current time) is kept: its attempt is under way, and its outcome is recorded when it ends
    (a later prune deletes it).
    """
    c = webhook_log.c
    stmt = delete(webhook_log).where(c.received_at < older_than)
    if not include_undelivered:
        stmt = stmt.where(or_(c.delivery_state.is_(None), c.delivery_state.not_in(QUEUED_STATES)))
    else:
        stmt = stmt.where(not_in_flight(now or datetime.now(UTC)))
    with begin_write(engine) as conn:
        conn.execute(delete(webhook_event_keys).where(webhook_event_keys.c.received_at < older_than))
        return conn.execute(stmt).rowcount


def count_in_flight(engine: Engine, *, now: datetime, received_before: datetime | None = None) -> int:
    """How many events are :func:`in_flight` at ``now`` (received before ``received_before``, when given)."""
    c = webhook_log.c
    stmt = select(func.count()).select_from(webhook_log).where(in_flight(now))
    if received_before is not None:
        stmt = stmt.where(c.received_at < received_before)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def last_verified_event(engine: Engine, tenant: str, provider: str) -> datetime | None:
    """When the newest signature-verified request (accepted or duplicate) of this tenant arrived."""
    c = webhook_log.c
    stmt = select(func.max(c.received_at)).where(
        c.tenant == tenant, c.provider == provider, c.outcome.in_(("accepted", "duplicate")),
        c.reason.is_(None),  # a handshake is no event
    )
    with engine.connect() as conn:
        value: datetime | None = conn.execute(stmt).scalar_one_or_none()
    return value


__all__ = [
    "DirectEventStore",
    "EventStore",
    "GroupCommitEventStore",
    "LogRow",
    "RecordResult",
    "StatRow",
    "WebhookRecord",
    "count_in_flight",
    "in_flight",
    "last_verified_event",
    "not_in_flight",
    "prune",
    "query_log",
    "stats",
    "write_batch",
]
