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

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Engine, case, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from store.engine import begin_write
from store.errors import DatabaseUnavailable
from store.schema import ACCEPTED_EVENT_PREDICATE, webhook_log

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

    def as_duplicate(self) -> WebhookRecord:
        return replace(self, outcome="duplicate", body=None)


_RECORD_FIELDS = tuple(f.name for f in fields(WebhookRecord))


@dataclass(frozen=True)
class LogRow(WebhookRecord):
    id: int = 0


class EventStore(Protocol):
    """Where the webhook server records every request.

    ``record`` must: return only after the row is durably committed; return DUPLICATE (and store the
    request as outcome ``duplicate``, without body) for an accepted record whose (provider, tenant,
    event_id) was accepted before; raise DatabaseUnavailable when the row could not be committed.
    It must not: hold the record in memory past its return, or log headers or bodies.
    """

    def record(self, rec: WebhookRecord) -> RecordResult: ...

    def close(self) -> None: ...


def _dedup_key(rec: WebhookRecord) -> tuple[str, str | None, str] | None:
    if rec.outcome == "accepted" and rec.event_id is not None:
        return (rec.provider, rec.tenant, rec.event_id)
    return None


def _params(rec: WebhookRecord) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in _RECORD_FIELDS}


def _insert_on_conflict_nothing(conn: Connection) -> Any:
    ins = postgresql.insert(webhook_log) if conn.dialect.name == "postgresql" else sqlite.insert(webhook_log)
    return ins.on_conflict_do_nothing(
        index_elements=["provider", "tenant", "event_id"],
        # Literal text: a bound parameter here cannot be used with executemany.
        index_where=text(ACCEPTED_EVENT_PREDICATE),
    ).returning(webhook_log.c.provider, webhook_log.c.tenant, webhook_log.c.event_id)


def write_batch(conn: Connection, records: Sequence[WebhookRecord]) -> list[RecordResult]:
    """Write ``records`` inside the caller's transaction; one result per record, in order.

    Accepted records with an event id are inserted with ON CONFLICT DO NOTHING .. RETURNING their key;
    a key that did not come back conflicted with an earlier accepted row. A key repeated within the
    batch is a duplicate of its first occurrence without asking the database. Every duplicate is then
    inserted as a ``duplicate`` row in the same transaction.
    """
    results = [RecordResult.STORED] * len(records)
    candidates: dict[tuple[str, str | None, str], int] = {}
    plain: list[WebhookRecord] = []
    for i, rec in enumerate(records):
        key = _dedup_key(rec)
        if key is None:
            plain.append(rec)
        elif key in candidates:
            results[i] = RecordResult.DUPLICATE
            plain.append(rec.as_duplicate())
        else:
            candidates[key] = i
    if candidates:
        stmt = _insert_on_conflict_nothing(conn)
        inserted = {
            (row.provider, row.tenant, row.event_id)
            for row in conn.execute(stmt, [_params(records[i]) for i in candidates.values()])
        }
        for key, i in candidates.items():
            if key not in inserted:
                results[i] = RecordResult.DUPLICATE
                plain.append(records[i].as_duplicate())
    if plain:
        conn.execute(webhook_log.insert(), [_params(r) for r in plain])
    return results


def _is_operational(exc: BaseException) -> bool:
    """The database itself failed (unreachable, locked, schema missing), not one record's data.

    Such an error fails the whole batch (after one retry); any other error is retried record by record.
    """
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


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
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from exc

    def close(self) -> None:
        """Nothing to drain; the engine belongs to the caller."""


@dataclass
class _Pending:
    rec: WebhookRecord
    future: Future[RecordResult]


_STOP = object()


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
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = 256,
        linger_s: float = 0.0,
        timeout_s: float = 30.0,
        retry_pause_s: float = 0.05,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.timeout_s = timeout_s
        self.retry_pause_s = retry_pause_s
        self._start_lock = threading.Lock()
        self._queue: queue.Queue[_Pending | object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self.batches_written = 0  # observability and tests: how well batching works

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (``record`` does it lazily too)."""
        with self._start_lock:
            if self._pid != os.getpid():  # we were forked: nothing inherited is ours
                self._pid = os.getpid()
                self._queue = queue.Queue()
                self._thread = None
                self.engine.dispose(close=False)
            if self._closed:
                raise DatabaseUnavailable("the event store is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="webhook-log-writer", daemon=True, args=(self._queue,)
                )
                self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer. Later ``record`` calls raise DatabaseUnavailable."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout_s)

    def __enter__(self) -> GroupCommitEventStore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request side ------------------------------------------------------------------------------
    def record(self, rec: WebhookRecord) -> RecordResult:
        if self._closed and self._pid == os.getpid():
            raise DatabaseUnavailable("the event store is closed")
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self.start()
        pending = _Pending(rec, Future())
        self._queue.put(pending)
        try:
            return pending.future.result(timeout=self.timeout_s)
        except TimeoutError as exc:
            # The row may still commit later; the provider's retry is then logged as a duplicate.
            raise DatabaseUnavailable(f"the webhook log did not commit within {self.timeout_s:g}s") from exc

    # -- writer side -------------------------------------------------------------------------------
    def _run(self, q: queue.Queue[_Pending | object]) -> None:
        try:
            self._loop(q)
        finally:
            # A record() racing with close() must not wait for its timeout.
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Pending):
                    item.future.set_exception(DatabaseUnavailable("the event store is closed"))

    def _loop(self, q: queue.Queue[_Pending | object]) -> None:
        stopping = False
        while not stopping:
            first = q.get()
            batch: list[_Pending] = [first] if isinstance(first, _Pending) else []
            stopping = first is _STOP
            stopping = self._fill(q, batch) or stopping
            if not batch:
                continue
            try:
                self._write(batch)
            except Exception as exc:  # the writer must outlive any bug in a batch
                log.exception("webhook log writer: unexpected error")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(_unavailable(exc))

    def _fill(self, q: queue.Queue[_Pending | object], batch: list[_Pending]) -> bool:
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

    def _write(self, batch: list[_Pending]) -> None:
        records = [p.rec for p in batch]
        try:
            results = self._commit(records)
        except Exception as exc:
            if _is_operational(exc):
                time.sleep(self.retry_pause_s)
                try:
                    results = self._commit(records)
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
        for pending, result in zip(batch, results, strict=True):
            pending.future.set_result(result)

    def _one_by_one(self, batch: list[_Pending], batch_exc: BaseException) -> None:
        log.warning(
            "webhook log batch of %d failed (%s); writing one by one", len(batch), type(batch_exc).__name__
        )
        for pending in batch:
            try:
                result = self._commit([pending.rec])[0]
            except Exception as exc:
                self._fail([pending], exc)
            else:
                pending.future.set_result(result)

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        log.error("webhook log write failed for %d record(s): %s", len(batch), type(exc).__name__)
        for pending in batch:
            pending.future.set_exception(_unavailable(exc))

    def _commit(self, records: list[WebhookRecord]) -> list[RecordResult]:
        with begin_write(self.engine) as conn:
            return write_batch(conn, records)


# -- reads --------------------------------------------------------------------------------------------

_LOG_COLUMNS = [webhook_log.c[name] for name in (*_RECORD_FIELDS, "id")]


def _row_to_log(row: Any) -> LogRow:
    return LogRow(**{name: getattr(row, name) for name in (*_RECORD_FIELDS, "id")})


def query_log(
    engine: Engine,
    *,
    tenant: str | None = None,
    provider: str | None = None,
    outcome: Outcome | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: int | None = None,
) -> tuple[list[LogRow], int | None]:
    """Newest first. Pass the returned cursor back to get the next page; ``None`` means no more pages.

    ``since`` is inclusive, ``until`` exclusive.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    stmt = select(*_LOG_COLUMNS).order_by(webhook_log.c.id.desc()).limit(limit + 1)
    if tenant is not None:
        stmt = stmt.where(webhook_log.c.tenant == tenant)
    if provider is not None:
        stmt = stmt.where(webhook_log.c.provider == provider)
    if outcome is not None:
        stmt = stmt.where(webhook_log.c.outcome == outcome)
    if since is not None:
        stmt = stmt.where(webhook_log.c.received_at >= since)
    if until is not None:
        stmt = stmt.where(webhook_log.c.received_at < until)
    if cursor is not None:
        stmt = stmt.where(webhook_log.c.id < cursor)
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
        return func.coalesce(func.sum(case((c.outcome == outcome, 1), else_=0)), 0)

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


def prune(engine: Engine, older_than: datetime) -> int:
    """Delete log rows received before ``older_than``; returns how many."""
    with begin_write(engine) as conn:
        return conn.execute(delete(webhook_log).where(webhook_log.c.received_at < older_than)).rowcount


def last_verified_event(engine: Engine, tenant: str, provider: str) -> datetime | None:
    """When the newest signature-verified request (accepted or duplicate) of this tenant arrived."""
    c = webhook_log.c
    stmt = select(func.max(c.received_at)).where(
        c.tenant == tenant, c.provider == provider, c.outcome.in_(("accepted", "duplicate"))
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
    "last_verified_event",
    "prune",
    "query_log",
    "stats",
    "write_batch",
]
