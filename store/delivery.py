"""The delivery queue: the accepted rows of the webhook log, claimed, attempted, finished, replayed.

The queue is not a table of its own: ``store.webhook_log`` queues an accepted event (``delivery_state =
'pending'``, due at its receive time) in the insert that records it, so the event is queued in the commit
that allows its 200. Here the delivery workers take it from there (docs/delivery.md):

- :func:`claim_due` takes due rows in one statement. On PostgreSQL the rows are picked with
  ``FOR UPDATE SKIP LOCKED``, so any number of workers on any number of machines share the queue without
  waiting on each other and never claim the same row; on SQLite the write lock serialises claims and
  :func:`single_worker` keeps it to one worker. A claim moves ``next_attempt_at`` to the end of a lease
  and counts the attempt: a worker that dies (even ``kill -9``) mid-delivery leaves the row due again
  when the lease ends, and a poison event that kills workers still reaches the attempt limit.
- :func:`finish` records each attempt (one ``delivery_attempts`` row) and the row's new state, only if
  the row is still claimed by the same claim (a replay or an expired lease wins over a late answer); the
  attempt of an event deleted meanwhile is dropped, never a foreign-key error failing the whole round.

Errors: SQLAlchemy errors propagate (the worker logs them and polls again);
:class:`AnotherWorkerRunning` when a second worker starts on one SQLite file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    event,
    func,
    select,
    text,
    update,
)

from store.engine import begin_write, is_sqlite, make_engine, sqlite_sidecar
from store.errors import StoreError
from store.queue_depth import depth_by_provider, depth_by_tenant, queued_ids
from store.schema import DUE_PREDICATE, delivery_attempts, webhook_log
from store.webhook_log import in_flight, not_in_flight, row_time

DUE_STATES = ("pending", "retrying")
# The due predicate as literal SQL, the very text of ix_webhook_log_due's WHERE: a planner uses a partial index
# only for a query that implies its predicate, which bound parameters (state IN (?, ?)) never do; without it
# SQLite scans and sorts the whole log on every claim.
_DUE = text(DUE_PREDICATE)
AttemptOutcome = Literal["delivered", "failed", "error"]
NewState = Literal["delivered", "retrying", "dead"]


class AnotherWorkerRunning(StoreError):
    """A delivery worker already runs on this SQLite database (SQLite allows one; PostgreSQL any number)."""


class StoppedWaiting(StoreError):
    """Told to stop while waiting for the delivery worker that holds this SQLite database's slot."""


@dataclass(frozen=True)
class Claimed:
    """One event claimed for one delivery attempt. ``attempt`` is 1 for the first try."""

    id: int
    tenant: str | None
    provider: str
    event_id: str | None
    received_at: datetime
    headers: dict[str, str]
    body: str
    attempt: int
    claim: str
    replayed_at: datetime | None = None  # when `webhooks replay` last queued it: the retries' age limit starts there


@dataclass(frozen=True)
class Finished:
    """The result of one attempt and what it makes of the event."""

    item: Claimed
    started_at: datetime
    worker: str
    outcome: AttemptOutcome
    status_code: int | None
    latency_ms: float | None
    error: str | None
    state: NewState
    next_attempt_at: datetime | None  # when state is "retrying"
    delivered_at: datetime | None  # when state is "delivered"


@dataclass(frozen=True)
class QueueStats:
    """Over the whole log (not a time window). ``oldest_due_at``: when the oldest pending or retrying event
    started waiting (its last replay, else its receipt; store/queue_depth.py)."""

    pending: int
    retrying: int
    dead: int
    oldest_due_at: datetime | None


@dataclass(frozen=True)
class GroupQueue:
    tenant: str | None
    provider: str
    pending: int
    retrying: int
    dead: int
    oldest_pending_at: datetime | None  # the oldest pending or retrying event's last replay, else its receipt


@dataclass(frozen=True)
class Attempt:
    attempt: int
    started_at: datetime
    worker: str
    outcome: str
    status_code: int | None
    latency_ms: float | None
    error: str | None


def worker_engine(url: str, *, statement_timeout_ms: int | None = None) -> Engine:
    """The engine of a delivery worker: the store's engine, with commits that do not wait for the disk.

    ``statement_timeout_ms`` (PostgreSQL) ends a statement stuck on a lock another session holds (a
    ``LOCK TABLE``, a long migration): without it a round waits forever, silently, and SIGTERM with it. With
    it the round fails, the worker logs the error and polls again with its growing pause. (SQLite's
    ``busy_timeout`` already does this.)

    A worker's writes are claims and outcomes. Should an OS crash lose the last of them, the events are
    simply delivered again (at least once, the same ``webhook-id``), so they need not pay an fsync each:
    SQLite ``synchronous = NORMAL`` (WAL: durable at the next checkpoint), PostgreSQL
    ``synchronous_commit = off`` (the commit is still atomic and crash-consistent). The webhook server's
    writes, which answer providers, keep full durability.

    On PostgreSQL its transactions also plan without bitmap scans (:data:`CLAIM_PLAN_POSTGRESQL`), so a claim
    reads as many due rows as it takes, however stale the log's statistics. Both PostgreSQL settings are made
    per transaction (``set_config(..., is_local => true)``, as ``SET LOCAL``), never per session: behind a
    transaction-pooling PgBouncer the next transaction on that server connection may be the webhook server's,
    whose commit must still wait for the disk.
    """
    engine = make_engine(url, statement_timeout_ms=statement_timeout_ms)

    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _relaxed(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA synchronous = NORMAL")
            finally:
                cur.close()

    elif engine.dialect.name == "postgresql":
        @event.listens_for(engine, "begin")
        def _relaxed_transaction(conn: Connection) -> None:
            # On the driver's connection: psycopg opens the transaction with this statement, and the ones
            # SQLAlchemy runs next belong to it. One round trip per transaction (a round is one transaction).
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cur.execute(WORKER_TRANSACTION_POSTGRESQL)
            finally:
                cur.close()

    return engine


def _headers(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    data = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): str(v) for k, v in dict(data).items()}


def claim_due(engine: Engine, *, claim: str, now: datetime, lease: timedelta, limit: int,
              providers: Sequence[str]) -> list[Claimed]:
    """Claim up to ``limit`` due events of ``providers`` (oldest due first) until ``now + lease``.

    ``claim`` identifies this claim (worker and batch); :func:`finish` only updates rows still holding it.
    The lease must outlast one delivery attempt (the HTTP timeout), or another worker could deliver the
    same attempt concurrently.
    """
    return cycle(engine, (), claim=claim, now=now, lease=lease, limit=limit, providers=providers, look_first=False)


def finish(engine: Engine, results: Sequence[Finished]) -> int:
    """Record the attempts and the events' new states in one transaction; returns the rows updated.

    An event whose claim was lost meanwhile (replayed, or its lease expired and another worker claimed it)
    keeps its state; its attempt is recorded all the same. An event deleted meanwhile (pruned) has neither
    state nor attempts left: its outcome is dropped.
    """
    if not results:
        return 0
    sqlite = is_sqlite(engine)
    attempts, outcomes = _attempt_rows(results, sqlite), _outcome_rows(results, sqlite)
    with begin_write(engine) as conn:
        return _record(conn, attempts, outcomes)


def cycle(engine: Engine, results: Sequence[Finished], *, claim: str, now: datetime, lease: timedelta, limit: int,
          providers: Sequence[str], released: Sequence[Claimed] = (), unstarted: Sequence[Claimed] = (),
          hold_still: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
          look_first: bool = True) -> list[Claimed]:
    """:func:`finish` ``results``, hand back ``released`` (claims never started: due now, their attempt
    uncounted) and ``unstarted`` (claims never started and left to their lease: due when it ends, their attempt
    uncounted), and :func:`claim_due` up to ``limit`` more, in one transaction (one commit instead of two: on
    SQLite each is an fsync, which a busy worker pays per round).

    The write is kept short, since on SQLite the webhook server's commits wait for it: parameters are built
    before it and claimed rows converted after it, and ``hold_still`` is entered around it (the worker passes
    one that parks its event loop, so the thread holding SQLite's one write lock never waits for the GIL).
    With nothing to record, a read looks for due events first (``look_first``): an idle worker's polls never
    take the write lock the webhook server's commits need.
    """
    if look_first and not results and not released and not unstarted and not _any_due(
            engine, now=now, providers=providers):
        return []
    sqlite = is_sqlite(engine)
    attempts, outcomes = _attempt_rows(results, sqlite), _outcome_rows(results, sqlite)
    handed_back = [(_time(now, sqlite), i.id, i.claim) for i in released] + [(None, i.id, i.claim) for i in unstarted]
    provider_list = list(providers) if limit > 0 else []
    claim_params = _claim_params(engine.dialect.name, claim, _time(now + lease, sqlite), _time(now, sqlite),
                                 provider_list, limit)
    with hold_still(), begin_write(engine) as conn:
        _record(conn, attempts, outcomes)
        if handed_back:
            conn.exec_driver_sql(_release_sql(engine.dialect.name), handed_back)
        rows = list(conn.exec_driver_sql(_claim_sql(engine.dialect.name, len(provider_list)), claim_params)
                    ) if provider_list else []
    claimed = [
        Claimed(id=int(r[0]), tenant=r[1], provider=r[2], event_id=r[3], received_at=_read_time(r[4]),
                headers=_headers(r[5]), body=r[6] or "", attempt=int(r[7]), claim=claim,
                replayed_at=None if r[8] is None else _read_time(r[8]))
        for r in rows
    ]
    return sorted(claimed, key=lambda item: (item.received_at, item.id))


def _any_due(engine: Engine, *, now: datetime, providers: Sequence[str]) -> bool:
    c = webhook_log.c
    stmt = select(c.id).where(_DUE, c.next_attempt_at <= now,
                              c.provider.in_(list(providers))).limit(1)
    with engine.connect() as conn:
        return conn.execute(stmt).first() is not None


# -- the hot path: driver SQL ---------------------------------------------------------------------------
# A round runs while SQLite's one write lock is held (the webhook server's commits wait for it), so its statements
# are built once as driver SQL and their parameters converted up front, as store/webhook_log.py does for the
# server's inserts: through SQLAlchemy's compiler and type processing a round of 32 took ~6 ms, 200 us an event.
# exec_driver_sql keeps SQLAlchemy's error wrapping (the worker retries on SQLAlchemyError) and transaction.

def _mark(dialect: str) -> str:
    return "?" if dialect == "sqlite" else "%s"


# PostgreSQL, for a delivery worker's sessions (worker_engine): no bitmap scans. The due rows change faster
# than autovacuum re-analyzes a large log, so at a burst the planner still believes the queue nearly empty; it
# then chose to read every due row through a bitmap and sort them all for the first n (~13 ms a claim on a
# backlog of 50,000, and growing with it). Without that choice it walks ix_webhook_log_due, which holds the
# claim's order, and stops after n entries, whatever the statistics say (tests/delivery/test_worker.py checks
# the plan). The worker's other statements find rows by id or scan.
CLAIM_PLAN_POSTGRESQL = "set_config('enable_bitmapscan', 'off', true)"
# Every transaction of a worker's (worker_engine): its commit does not wait for the disk, and the claim's plan.
WORKER_TRANSACTION_POSTGRESQL = f"SELECT set_config('synchronous_commit', 'off', true), {CLAIM_PLAN_POSTGRESQL}"

_CLAIMED_COLUMNS = "id, tenant, provider, event_id, received_at, headers, body, attempts, replayed_at"


@functools.lru_cache(maxsize=16)
def _claim_sql(dialect: str, providers: int) -> str:
    """The claim: the oldest N due events of the given providers, as one statement (see :func:`_claim_params`).

    ix_webhook_log_due is ordered by provider, then due time and id: each provider's due events are read in
    their order from its own range, N at most, and the oldest N of those are claimed. A provider the worker does
    not deliver (no destination: its events stay pending) is never read, however many it has queued. ``_DUE``
    is written as literal SQL (the text of the index's WHERE), so the planner may use the partial index.
    PostgreSQL: one ``LATERAL`` index scan per provider, locking with ``SKIP LOCKED`` (``FOR UPDATE`` is refused
    in the branches of a ``UNION``); SQLite (one worker, one write lock): a ``UNION ALL`` of the same scans.
    """
    # Only constants are interpolated: the table's name, placeholders and the index's own predicate.
    table, m = webhook_log.name, _mark(dialect)

    def scan(provider: str) -> str:  # one provider's oldest due events, from its range of the index
        return (f"SELECT id, next_attempt_at FROM {table} WHERE {DUE_PREDICATE} AND provider = {provider} "  # noqa: S608
                f"AND next_attempt_at <= {m} ORDER BY next_attempt_at, id LIMIT {m}")

    if dialect == "postgresql":
        each = f"unnest(%s::varchar[]) AS p (provider) CROSS JOIN LATERAL ({scan('p.provider')} FOR UPDATE SKIP LOCKED)"
        oldest = f"SELECT d.id FROM {each} AS d ORDER BY d.next_attempt_at, d.id LIMIT %s"  # noqa: S608
    else:
        each = " UNION ALL ".join([f"SELECT * FROM ({scan('?')})"] * providers)  # noqa: S608
        oldest = f"SELECT id FROM ({each}) ORDER BY next_attempt_at, id LIMIT ?"  # noqa: S608
    return (f"UPDATE {table} SET claimed_by = {m}, next_attempt_at = {m}, attempts = attempts + 1 "  # noqa: S608
            f"WHERE id IN ({oldest}) RETURNING {_CLAIMED_COLUMNS}")


def _claim_params(dialect: str, claim: str, lease_end: Any, now: Any, providers: list[str],
                  limit: int) -> tuple[Any, ...]:
    """The parameters of ``_claim_sql(dialect, len(providers))``, in its placeholders' order."""
    if dialect == "postgresql":
        return claim, lease_end, providers, now, limit, limit
    return (claim, lease_end, *(v for provider in providers for v in (provider, now, limit)), limit)


@functools.lru_cache(maxsize=4)
def _release_sql(dialect: str) -> str:
    """Parameters: due at (None: when the lease ends), id, claim. Only a row still holding the claim: a replay
    or an expired lease wins. The claim counted an attempt that was never started: uncounted."""
    m = _mark(dialect)
    return (f"UPDATE {webhook_log.name} SET claimed_by = NULL, next_attempt_at = COALESCE({m}, next_attempt_at), "  # noqa: S608
            f"attempts = attempts - 1 WHERE id = {m} AND claimed_by = {m}")


# PostgreSQL records a round's outcomes and attempts with one statement each over arrays of its values (unnest), one
# plan and one execution for the whole round; SQLite, in the process, takes one statement a row (executemany). A
# round of 64 on PostgreSQL (benchmarks/claims.py, 2026-12-02): the attempts 3.0 -> 1.8 ms, the outcomes 3.6 ->
# 1.9 ms, against an executemany psycopg pipelines (one round trip, but 64 executions).
_OUTCOME_TYPES = ("varchar", "timestamptz", "smallint", "varchar", "timestamptz", "bigint", "varchar")
# The types of an attempt's values, its log_id last (PostgreSQL must be told them).
_ATTEMPT_TYPES = ("integer", "timestamptz", "varchar", "varchar", "smallint", "double precision", "varchar", "bigint")


def _arrays(types: tuple[str, ...]) -> str:
    return ", ".join(f"%s::{t}[]" for t in types)


@functools.lru_cache(maxsize=4)
def _outcome_sql(dialect: str) -> str:
    """Parameters: state, next attempt, status, error, delivered at, id, claim (only while the claim holds); on
    PostgreSQL each an array of the round's values, on SQLite one row's."""
    if dialect == "postgresql":
        return (f"UPDATE {webhook_log.name} AS w SET delivery_state = v.state, next_attempt_at = v.next_at, "  # noqa: S608
                "claimed_by = NULL, last_status = v.status, last_error = v.error, delivered_at = v.delivered_at "
                f"FROM unnest({_arrays(_OUTCOME_TYPES)}) AS v (state, next_at, status, error, delivered_at, id, claim) "
                "WHERE w.id = v.id AND w.claimed_by = v.claim")
    m = _mark(dialect)
    return (f"UPDATE {webhook_log.name} SET delivery_state = {m}, next_attempt_at = {m}, claimed_by = NULL, "  # noqa: S608
            f"last_status = {m}, last_error = {m}, delivered_at = {m} WHERE id = {m} AND claimed_by = {m}")


@functools.lru_cache(maxsize=4)
def _attempt_sql(dialect: str) -> str:
    """Parameters: attempt, started at, worker, outcome, status, latency, error, id (see :func:`_attempt_rows`); on
    PostgreSQL each an array of the round's values, on SQLite one row's.

    The attempt row is inserted only while its event exists: an event deleted during its attempt (`webhooks
    prune --include-undelivered`, any DELETE) leaves its outcome nothing to describe, and an attempt naming it
    would break the foreign key and fail the whole round, every retry of it too. Read by primary key, as the
    outcome's UPDATE is: a round stays as cheap. On PostgreSQL the row is read ``FOR KEY SHARE``, the lock the
    foreign key's check takes anyway: a DELETE not yet committed is waited for, and once committed the row is
    gone and nothing is inserted (rather than the check failing after the join saw the row)."""
    columns = "log_id, attempt, started_at, worker, outcome, status_code, latency_ms, error"
    if dialect == "postgresql":
        return (f"INSERT INTO {delivery_attempts.name} ({columns}) SELECT w.id, v.attempt, v.started_at, v.worker, "  # noqa: S608
                f"v.outcome, v.status_code, v.latency_ms, v.error FROM unnest({_arrays(_ATTEMPT_TYPES)}) AS v "
                f"(attempt, started_at, worker, outcome, status_code, latency_ms, error, id) "
                f"JOIN {webhook_log.name} AS w ON w.id = v.id FOR KEY SHARE OF w")
    m = _mark(dialect)
    return (f"INSERT INTO {delivery_attempts.name} ({columns}) SELECT id, {', '.join([m] * 7)} "  # noqa: S608
            f"FROM {webhook_log.name} WHERE id = {m}")


def _time(at: datetime | None, sqlite: bool) -> Any:
    return None if at is None else row_time(at, sqlite)


def _read_time(value: Any) -> datetime:
    """A stored time back as a UTC-aware datetime (SQLite hands back the naive-UTC ISO text it stores)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _attempt_rows(results: Sequence[Finished], sqlite: bool) -> list[tuple[Any, ...]]:
    return [(r.item.attempt, _time(r.started_at, sqlite), r.worker[:64], r.outcome, r.status_code,
             r.latency_ms, None if r.error is None else r.error[:255], r.item.id) for r in results]


def _outcome_rows(results: Sequence[Finished], sqlite: bool) -> list[tuple[Any, ...]]:
    return [(r.state, _time(r.next_attempt_at, sqlite), r.status_code, None if r.error is None else r.error[:255],
             _time(r.delivered_at, sqlite), r.item.id, r.item.claim) for r in results]


def _record(conn: Connection, attempts: list[tuple[Any, ...]], outcomes: list[tuple[Any, ...]]) -> int:
    if not outcomes:
        return 0
    dialect = conn.dialect.name
    if dialect == "postgresql":  # one statement each over the columns as arrays (see _OUTCOME_TYPES)
        conn.exec_driver_sql(_attempt_sql(dialect), tuple(list(column) for column in zip(*attempts, strict=True)))
        return int(conn.exec_driver_sql(_outcome_sql(dialect), tuple(
            list(column) for column in zip(*outcomes, strict=True))).rowcount)
    conn.exec_driver_sql(_attempt_sql(dialect), attempts)
    # Its rowcount is the sum over the rows, the number whose claim still held.
    return int(conn.exec_driver_sql(_outcome_sql(dialect), outcomes).rowcount)


@dataclass(frozen=True)
class Replayed:
    """What :func:`replay` did (or, dry, would do): ``queued`` events queued again, ``delivered`` of them delivered
    already (sent again); ``in_flight`` selected but left alone."""

    queued: int
    in_flight: int
    delivered: int = 0


def replay(engine: Engine, *, now: datetime, ids: Sequence[int] = (), tenant: str | None = None,
           provider: str | None = None, since: datetime | None = None, until: datetime | None = None,
           dead_only: bool = False, dry_run: bool = False) -> Replayed:
    """Queue accepted events again (due now, attempts from zero, the age limit from now, the last attempt's
    status, error and delivery time cleared: they describe the queueing that ended); returns how many, and how
    many were left in flight.

    Selects by ``ids``, or by the filters (all given ones must match; ``since`` inclusive, ``until``
    exclusive). Rejected and duplicate rows were never events to deliver and are never queued. An event whose
    attempt may be under way (claimed, its lease running at ``now``) is not queued: a second attempt would start
    beside the first, the same ``webhook-id`` twice at once; replay it after its attempt ends. A replayed
    event keeps its ``webhook-id``, so the platform can tell it has seen it. ``dry_run``: count, change nothing.
    """
    c = webhook_log.c
    conditions: list[ColumnElement[bool]] = [c.delivery_state.is_not(None)]
    if ids:
        conditions.append(c.id.in_(list(ids)))
    if tenant is not None:
        conditions.append(c.tenant == tenant)
    if provider is not None:
        conditions.append(c.provider == provider)
    if since is not None:
        conditions.append(c.received_at >= since)
    if until is not None:
        conditions.append(c.received_at < until)
    if dead_only:  # the dead are few in a large log: found through the queue's index (store.webhook_log.newest_first)
        conditions.append(c.id.in_(queued_ids("sqlite", ["dead"], tenant=tenant, provider=provider, since=since,
                                              until=until)) if is_sqlite(engine) else c.delivery_state == "dead")
    stmt = update(webhook_log).where(*conditions, not_in_flight(now)).values(
        delivery_state="pending", attempts=0, next_attempt_at=now, claimed_by=None, last_status=None,
        last_error=None, delivered_at=None, replayed_at=now)
    busy = select(func.count()).select_from(webhook_log).where(*conditions, in_flight(now))
    counts = select(func.count(), func.count().filter(c.delivery_state == "delivered")).select_from(
        webhook_log).where(*conditions, not_in_flight(now))
    with begin_write(engine) as conn:
        queued, delivered = conn.execute(counts).one()
        if not dry_run:
            queued = conn.execute(stmt).rowcount
        return Replayed(int(queued), int(conn.execute(busy).scalar_one()), int(delivered))


@dataclass(frozen=True)
class LogEntry:
    """What :func:`replay` selects an event by, read back to say why it did not queue one."""

    id: int
    tenant: str | None
    provider: str
    received_at: datetime
    delivery_state: str | None  # None: a rejected or duplicate row, never queued


def log_entries(engine: Engine, ids: Sequence[int]) -> dict[int, LogEntry]:
    """The rows of ``ids`` that exist (any outcome), by ID: one indexed read of at most ``len(ids)`` rows."""
    c = webhook_log.c
    stmt = select(c.id, c.tenant, c.provider, c.received_at, c.delivery_state).where(c.id.in_(list(set(ids))))
    with engine.connect() as conn:
        return {int(r[0]): LogEntry(int(r[0]), r[1], r[2], _read_time(r[3]), r[4]) for r in conn.execute(stmt)}


def has_events(engine: Engine, *, tenant: str) -> bool:
    """Whether ``tenant`` has any event that was queued for delivery (in any state)."""
    c = webhook_log.c
    stmt = select(c.id).where(c.tenant == tenant, c.delivery_state.is_not(None)).limit(1)
    with engine.connect() as conn:
        return conn.execute(stmt).first() is not None


@dataclass(frozen=True)
class NotDue:
    """The events of some providers still to deliver that are not due at a time: ``held`` claimed by a worker
    whose lease still runs (until ``held_until``, the latest lease's end), ``waiting`` for their next try (the
    earliest at ``next_try_at``)."""

    held: int
    held_until: datetime | None
    waiting: int
    next_try_at: datetime | None


def not_due(engine: Engine, *, now: datetime, providers: Sequence[str]) -> NotDue:
    """What a drained queue (`deliver --until-idle`) still holds of ``providers``: the events due later."""
    c = webhook_log.c
    held = in_flight(now)
    stmt = select(func.count().filter(held), func.max(c.next_attempt_at).filter(held),
                  func.count().filter(~held), func.min(c.next_attempt_at).filter(~held),
                  ).where(_DUE, c.next_attempt_at > now, c.provider.in_(list(providers)))
    with engine.connect() as conn:
        row = conn.execute(stmt).one()
    return NotDue(held=int(row[0]), held_until=None if row[1] is None else _read_time(row[1]),
                  waiting=int(row[2]), next_try_at=None if row[3] is None else _read_time(row[3]))


def queue_stats(engine: Engine) -> QueueStats:
    """The whole queue (store/queue_depth.py: read through its indexes, never the log)."""
    depths = list(depth_by_provider(engine).values())
    oldest = [d.oldest_pending_at for d in depths if d.oldest_pending_at is not None]
    return QueueStats(pending=sum(d.pending for d in depths), retrying=sum(d.retrying for d in depths),
                      dead=sum(d.dead for d in depths), oldest_due_at=min(oldest) if oldest else None)


def queue_by_group(engine: Engine) -> list[GroupQueue]:
    """Undelivered counts per (tenant, provider): pending, retrying, dead, and when the oldest waiting one
    (pending or retrying) started waiting."""
    return [GroupQueue(t, p, d.pending, d.retrying, d.dead, d.oldest_pending_at)
            for (t, p), d in depth_by_tenant(engine).items()]


def attempts_of(engine: Engine, log_id: int) -> list[Attempt]:
    """Every recorded attempt of one event, oldest first."""
    a = delivery_attempts.c
    stmt = (select(a.attempt, a.started_at, a.worker, a.outcome, a.status_code, a.latency_ms, a.error)
            .where(a.log_id == log_id).order_by(a.id))
    with engine.connect() as conn:
        return [Attempt(*r) for r in conn.execute(stmt)]


# How often a waiting worker tries the slot again, and looks whether it was told to stop.
SLOT_POLL_S = 0.2


@contextlib.contextmanager
def single_worker(engine: Engine, *, wait: bool = False, stopped: Callable[[], bool] = lambda: False,
                  waiting: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """On SQLite, hold the one delivery-worker slot of the database file for the block; on PostgreSQL a no-op.

    The slot is a ``flock`` next to the database: the kernel frees it when its holder dies, even by
    ``kill -9``. Raises :class:`AnotherWorkerRunning` (naming the holder's pid) when taken and not ``wait``.
    With ``wait``, says so once through ``waiting`` and tries again every ``SLOT_POLL_S`` seconds until the slot is
    free, or until ``stopped()`` (a SIGTERM or Ctrl-C): then raises :class:`StoppedWaiting`, since a blocking
    ``flock`` would outlive every signal (PEP 475 restarts it).
    """
    database = engine.url.database if is_sqlite(engine) else None
    if not database or database == ":memory:":
        yield
        return
    path = sqlite_sidecar(database, ".deliver-lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for tries in itertools.count():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                if not wait:
                    raise AnotherWorkerRunning(
                        f"another delivery worker (pid {holder}) already runs on {database}: SQLite allows one "
                        "worker; stop it, pass --wait to take over when it stops, or use PostgreSQL to run several"
                    ) from None
                if stopped():
                    raise StoppedWaiting(f"stopped while waiting for the delivery worker (pid {holder}) on "
                                         f"{database}") from None
                if tries == 0:
                    waiting(f"waiting for the delivery worker (pid {holder}) on {database} to stop")
                time.sleep(SLOT_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


__all__ = [
    "AnotherWorkerRunning",
    "Attempt",
    "Claimed",
    "Finished",
    "GroupQueue",
    "LogEntry",
    "QueueStats",
    "Replayed",
    "StoppedWaiting",
    "attempts_of",
    "claim_due",
    "cycle",
    "finish",
    "has_events",
    "log_entries",
    "queue_by_group",
    "queue_stats",
    "replay",
    "single_worker",
    "worker_engine",
]
