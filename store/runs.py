"""Plan/apply runs and the outcome of each change: who ran what, when, and what came of it.

Errors passed in ``ChangeRecord.error`` must already be redacted by the caller (the reconciler's
redaction knows the tenant's secrets; the store does not).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, insert, select, update

from store.engine import begin_write, utcnow
from store.schema import reconcile_changes, reconcile_runs

RunKind = Literal["plan", "apply"]
RunStatus = Literal["running", "succeeded", "failed", "partial", "no_changes", "aborted"]
# confirmed: applied, known by reading back after its answer was lost; not_applied: read back, did not
# happen; unknown: could not be told (the error says what to check).
ChangeOutcome = Literal["planned", "applied", "confirmed", "not_applied", "unknown", "failed", "skipped",
                        "not_attempted"]


@dataclass(frozen=True)
class ChangeRecord:
    tenant: str
    provider: str
    address: str
    action: str  # create | update | delete | manual | noop ...
    outcome: ChangeOutcome
    error: str | None = None
    recorded_at: datetime | None = None  # None: now


@dataclass(frozen=True)
class StoredChange:
    id: int
    run_id: int
    tenant: str
    provider: str
    address: str
    action: str
    outcome: str
    error: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    actor: str
    started_at: datetime
    finished_at: datetime | None
    plan_checksum: str | None
    status: str
    summary: dict[str, Any] | None
    tenants: list[str]
    changes: Sequence[StoredChange] = field(default_factory=tuple)


def start_run(
    engine: Engine,
    kind: RunKind,
    actor: str,
    tenants: Sequence[str],
    plan_checksum: str | None = None,
    *,
    now: datetime | None = None,
    pid: int | None = None,
) -> int:
    """Record a run as ``running`` by this process (host and pid, or `pid`); returns its id."""
    with begin_write(engine) as conn:
        run_id = conn.execute(
            insert(reconcile_runs)
            .values(
                kind=kind,
                actor=actor,
                started_at=now or utcnow(),
                plan_checksum=plan_checksum,
                status="running",
                tenants=list(tenants),
                host=socket.gethostname(),
                pid=os.getpid() if pid is None else pid,
            )
            .returning(reconcile_runs.c.id)
        ).scalar_one()
    return int(run_id)


def record_changes(engine: Engine, run_id: int, changes: Iterable[ChangeRecord]) -> int:
    """Append change outcomes to a run (one transaction); returns how many were recorded."""
    now = utcnow()
    params = [
        {
            "run_id": run_id,
            "tenant": c.tenant,
            "provider": c.provider,
            "address": c.address,
            "action": c.action,
            "outcome": c.outcome,
            "error": c.error,
            "recorded_at": c.recorded_at or now,
        }
        for c in changes
    ]
    if not params:
        return 0
    with begin_write(engine) as conn:
        conn.execute(insert(reconcile_changes), params)
    return len(params)


def finish_run(
    engine: Engine,
    run_id: int,
    status: RunStatus,
    summary: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> None:
    with begin_write(engine) as conn:
        result = conn.execute(
            update(reconcile_runs)
            .where(reconcile_runs.c.id == run_id)
            .values(status=status, summary=summary, finished_at=now or utcnow())
        )
        if result.rowcount != 1:
            raise KeyError(f"no reconcile run with id {run_id}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def reap_dead_runs(engine: Engine) -> list[int]:
    """Mark ``aborted`` every ``running`` run whose process, on this host, is gone; returns their ids.

    Runs on other hosts cannot be checked from here (their locks, on PostgreSQL, tell: store.locks).
    """
    here = socket.gethostname()
    with engine.connect() as conn:
        rows = conn.execute(select(reconcile_runs.c.id, reconcile_runs.c.pid).where(
            reconcile_runs.c.status == "running", reconcile_runs.c.host == here,
            reconcile_runs.c.pid.is_not(None))).all()
    dead = [r.id for r in rows if not pid_alive(int(r.pid))]
    if dead:
        with begin_write(engine) as conn:
            conn.execute(update(reconcile_runs)
                         .where(reconcile_runs.c.id.in_(dead), reconcile_runs.c.status == "running")
                         .values(status="aborted", finished_at=utcnow(),
                                 summary={"error": "the process running it died before it finished"}))
    return dead


def _run(row: Any, changes: Sequence[StoredChange] = ()) -> Run:
    return Run(
        id=row.id,
        kind=row.kind,
        actor=row.actor,
        started_at=row.started_at,
        finished_at=row.finished_at,
        plan_checksum=row.plan_checksum,
        status=row.status,
        summary=row.summary,
        tenants=list(row.tenants),
        changes=tuple(changes),
    )


def list_runs(engine: Engine, limit: int = 20) -> list[Run]:
    """The newest runs first, without their changes."""
    stmt = select(reconcile_runs).order_by(reconcile_runs.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [_run(r) for r in conn.execute(stmt)]


def get_run(engine: Engine, run_id: int) -> Run | None:
    """One run with its changes in the order they were recorded; None if there is no such run."""
    with engine.connect() as conn:
        row = conn.execute(select(reconcile_runs).where(reconcile_runs.c.id == run_id)).one_or_none()
        if row is None:
            return None
        changes = [
            StoredChange(
                id=c.id,
                run_id=c.run_id,
                tenant=c.tenant,
                provider=c.provider,
                address=c.address,
                action=c.action,
                outcome=c.outcome,
                error=c.error,
                recorded_at=c.recorded_at,
            )
            for c in conn.execute(
                select(reconcile_changes)
                .where(reconcile_changes.c.run_id == run_id)
                .order_by(reconcile_changes.c.id)
            )
        ]
    return _run(row, changes)
