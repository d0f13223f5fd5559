"""How much the delivery queue holds: pending, retrying and dead events, and the oldest waiting one, per provider
(the worker's metrics) or per tenant and provider (the Integrations page, `webhooks stats`).

One grouped statement, read from ``ix_webhook_log_queue`` alone (migration 0011): it holds every pending,
retrying and dead row with the columns the counts and the oldest waiting time need, so the read is index-only
and costs what the queue holds, never what the log holds. It is led by the tenant, so a read of some tenants
(a page of the Integrations page) costs only their queue. The statement names the index's predicate as literal
SQL: a planner uses a partial index only for a query that implies its ``WHERE``, which bound parameters never do.

The oldest waiting time is that of the retries' age limit (delivery/worker.py): the last replay, else receipt.
An event replayed after ten days has waited since its replay, not ten days, and must not page the "stuck"
alert the moment it is queued again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Integer, Select, String, TextualSelect, bindparam, column, select, text

from store.schema import QUEUED_PREDICATE, QUEUED_STATES, UTCDateTime

_INDEX = "ix_webhook_log_queue"


@dataclass(frozen=True)
class QueueDepth:
    pending: int = 0
    retrying: int = 0
    dead: int = 0
    # The oldest pending or retrying event's waiting start: its last replay, else its receipt.
    oldest_pending_at: datetime | None = None


def _source(dialect: str, alias: str = "") -> str:
    # SQLite's planner, without statistics, may take the tenant index (the tenant's whole log) or the due index
    # and a table read per row: named, the queue's index is the one read, and a statement it cannot serve fails
    # rather than silently scanning. PostgreSQL plans from statistics and takes no such hint.
    table = f"webhook_log{' AS ' + alias if alias else ''}"
    return f"{table} INDEXED BY {_INDEX}" if dialect == "sqlite" else table


def statement(dialect: str, *, per_tenant: bool, some_tenants: bool = False) -> TextualSelect:
    """Rows of (provider | tenant, provider), state, count, oldest waiting start (of each state's rows).

    ``some_tenants``: only the tenants of the expanding parameter ``tenants`` (``per_tenant`` only)."""
    keys = "tenant, provider" if per_tenant else "provider"
    scope = " AND tenant IN :tenants" if some_tenants else ""
    # Constant text only: no value from outside is written into it (the tenants are bound parameters).
    sql = (f"SELECT {keys}, delivery_state, count(*), min(COALESCE(replayed_at, received_at)) "  # noqa: S608
           f"FROM {_source(dialect)} WHERE {QUEUED_PREDICATE}{scope} GROUP BY {keys}, delivery_state")
    stmt = text(sql)
    if some_tenants:
        stmt = stmt.bindparams(bindparam("tenants", expanding=True, type_=String()))
    typed = [column("tenant", String())] if per_tenant else []
    return stmt.columns(*typed, column("provider", String()), column("state", String()),
                        column("n", Integer()), column("oldest", UTCDateTime()))


def _read(engine: Engine, *, per_tenant: bool, tenants: Sequence[str] | None = None
          ) -> dict[tuple[Any, ...], QueueDepth]:
    if tenants is not None and not tenants:
        return {}
    stmt = statement(engine.dialect.name, per_tenant=per_tenant, some_tenants=tenants is not None)
    params = {} if tenants is None else {"tenants": sorted(set(tenants))}
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    with engine.connect() as conn:
        for *key, state, count, oldest in conn.execute(stmt, params):
            g = out.setdefault(tuple(key), {})
            g[state] = int(count)
            if state != "dead" and oldest is not None:  # the older of pending and retrying
                g["oldest_pending_at"] = min(oldest, g.get("oldest_pending_at") or oldest)
    return {k: QueueDepth(**v) for k, v in out.items()}


def depth_by_provider(engine: Engine) -> Mapping[str, QueueDepth]:
    """provider → its queue; a provider with nothing queued is absent."""
    return {k[0]: v for k, v in _read(engine, per_tenant=False).items()}


def depth_by_tenant(engine: Engine, tenants: Sequence[str] | None = None
                    ) -> Mapping[tuple[str | None, str], QueueDepth]:
    """(tenant, provider) → its queue; a pair with nothing queued is absent. ``tenants``: only theirs (a page's),
    read from their ranges of the index alone; None: every tenant's, the unknown tenant's (NULL) included."""
    return {(k[0], k[1]): v for k, v in _read(engine, per_tenant=True, tenants=tenants).items()}


def queued_statement(dialect: str) -> TextualSelect:
    """The tenants with a pending, retrying or dead event, one index seek each: a loose index scan (the next
    tenant after the last one found, by ``min``), not a read of every queued row as ``DISTINCT`` would be."""
    # Constant text only.
    sql = (f"WITH RECURSIVE q(slug) AS (SELECT min(tenant) FROM {_source(dialect)} "  # noqa: S608
           f"WHERE {QUEUED_PREDICATE} UNION ALL SELECT (SELECT min(w.tenant) FROM {_source(dialect, 'w')} "
           f"WHERE {QUEUED_PREDICATE} AND w.tenant > q.slug) FROM q WHERE q.slug IS NOT NULL) "
           "SELECT slug FROM q WHERE slug IS NOT NULL")
    return text(sql).columns(column("slug", String()))


def queued_tenants(engine: Engine) -> list[str]:
    """Every tenant with an event in the queue (pending, retrying or dead), sorted; the unknown tenant left out."""
    with engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(queued_statement(engine.dialect.name))]


def queued_ids(dialect: str, states: Sequence[str], *, tenant: str | None = None, provider: str | None = None,
               since: datetime | None = None, until: datetime | None = None, before_id: int | None = None,
               limit: int | None = None) -> Select[int]:
    """The IDs of the events in ``states`` (a subset of the queue's: pending, retrying, dead), newest first, read
    from the queue's index alone: a filter on the delivery state costs what the queue holds, never what the log
    holds (`webhooks log --state dead`, `replay --dead`, the log page's filter). ``since`` inclusive, ``until``
    and ``before_id`` exclusive; every filter given must match.

    Raises ValueError for a state outside the queue (``delivered`` is most of the log: no index serves it)."""
    if not states or not set(states) <= set(QUEUED_STATES):
        raise ValueError(f"states must be some of {', '.join(QUEUED_STATES)}, got {', '.join(states) or 'none'}")
    # Lightweight columns, unqualified, so that the FROM is the hinted source alone.
    rowid = column("id", Integer())
    where: list[ColumnElement[bool]] = [column("delivery_state", String()).in_(list(states))]
    if tenant is not None:
        where.append(column("tenant", String()) == tenant)
    if provider is not None:
        where.append(column("provider", String()) == provider)
    if since is not None:
        where.append(column("received_at", UTCDateTime()) >= since)
    if until is not None:
        where.append(column("received_at", UTCDateTime()) < until)
    if before_id is not None:
        where.append(rowid < before_id)
    stmt = select(rowid).select_from(text(_source(dialect))).where(text(QUEUED_PREDICATE), *where)
    return stmt.order_by(rowid.desc()).limit(limit) if limit is not None else stmt


__all__ = ["QueueDepth", "depth_by_provider", "depth_by_tenant", "queued_ids", "queued_statement", "queued_tenants",
           "statement"]
