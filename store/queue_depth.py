"""How much the delivery queue holds: pending, retrying and dead events, and the oldest waiting one, per provider
(the worker's metrics) or per tenant and provider (the Integrations page, `webhooks stats`).

One statement, grouped: the due rows are read through ``ix_webhook_log_due`` and the dead ones through
``ix_webhook_log_dead``, each branch naming its index's predicate as literal SQL (a planner uses a partial index
only for a query that implies its ``WHERE``), so a read costs what the queue holds, never what the log holds.
It is never narrowed to some tenants in SQL: given ``tenant IN (…)``, SQLite reads those tenants' whole log
through the tenant index instead. The groups are few (three states per tenant and provider at most), so callers
pick theirs from the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Integer, String, TextualSelect, column, text

from store.schema import DEAD_PREDICATE, DUE_PREDICATE, UTCDateTime


@dataclass(frozen=True)
class QueueDepth:
    pending: int = 0
    retrying: int = 0
    dead: int = 0
    oldest_pending_at: datetime | None = None  # receive time of the oldest pending or retrying event


def statement(dialect: str, *, per_tenant: bool) -> TextualSelect:
    """Rows of (provider | tenant, provider), state, count, oldest receive time (NULL for the dead)."""
    keys = "tenant, provider" if per_tenant else "provider"

    def source(index: str) -> str:
        # SQLite's planner, without statistics, walks the tenant index whole for its GROUP BY order (the whole log):
        # named, the partial index is the one read. PostgreSQL plans from statistics and takes no such hint.
        return f"webhook_log INDEXED BY {index}" if dialect == "sqlite" else "webhook_log"

    # Constant text only: no value from outside is written into it.
    sql = (f"SELECT {keys}, delivery_state, count(*), min(received_at) FROM {source('ix_webhook_log_due')} "  # noqa: S608
           f"WHERE {DUE_PREDICATE} GROUP BY {keys}, delivery_state "
           f"UNION ALL SELECT {keys}, 'dead', count(*), NULL FROM {source('ix_webhook_log_dead')} "
           f"WHERE {DEAD_PREDICATE} GROUP BY {keys}")
    typed = [column("tenant", String())] if per_tenant else []
    return text(sql).columns(*typed, column("provider", String()), column("state", String()),
                             column("n", Integer()), column("oldest", UTCDateTime()))


def _read(engine: Engine, *, per_tenant: bool) -> dict[tuple[Any, ...], QueueDepth]:
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    with engine.connect() as conn:
        for *key, state, count, oldest in conn.execute(statement(engine.dialect.name, per_tenant=per_tenant)):
            g = out.setdefault(tuple(key), {})
            g[state] = int(count)
            if oldest is not None:  # the older of pending and retrying
                g["oldest_pending_at"] = min(oldest, g.get("oldest_pending_at") or oldest)
    return {k: QueueDepth(**v) for k, v in out.items()}


def depth_by_provider(engine: Engine) -> Mapping[str, QueueDepth]:
    """provider → its queue; a provider with nothing queued is absent."""
    return {k[0]: v for k, v in _read(engine, per_tenant=False).items()}


def depth_by_tenant(engine: Engine) -> Mapping[tuple[str | None, str], QueueDepth]:
    """(tenant, provider) → its queue; a pair with nothing queued is absent."""
    return {(k[0], k[1]): v for k, v in _read(engine, per_tenant=True).items()}


__all__ = ["QueueDepth", "depth_by_provider", "depth_by_tenant", "statement"]
