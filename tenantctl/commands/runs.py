"""`tenantctl runs list | show RUN`: the recorded plans and applies (who, when, checksum, each change)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from store import runs
from tenancy.redact import REDACTOR
from tenantctl.commands.reconcile import read_db
from tenantctl.context import Context
from tenantctl.options import TextOrJson

runs_app = typer.Typer(help="Recorded plan and apply runs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


def _run_json(r: runs.Run, *, changes: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id, "kind": r.kind, "actor": r.actor, "status": r.status,
        "started_at": r.started_at.isoformat(timespec="seconds"),
        "finished_at": r.finished_at.isoformat(timespec="seconds") if r.finished_at else None,
        "plan_checksum": r.plan_checksum, "tenants": r.tenants, "summary": r.summary,
    }
    if changes:
        out["changes"] = [{"tenant": c.tenant, "provider": c.provider, "address": c.address, "action": c.action,
                           "outcome": c.outcome, "error": c.error,
                           "recorded_at": c.recorded_at.isoformat(timespec="seconds")} for c in r.changes]
    return out


def _fmt(fmt: str) -> str:
    return fmt


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many, newest first.")] = 20,
    fmt: TextOrJson = "text",
) -> None:
    """The newest recorded runs: id, kind, status, who, when, checksum, tenants."""
    c: Context = ctx.obj
    _fmt(fmt)
    db = read_db(c)
    if db is None:
        c.echo("[]" if fmt == "json" else "no run recorded yet")
        return
    try:
        rows = runs.list_runs(db, limit)
    finally:
        db.dispose()
    if fmt == "json":
        c.echo(json.dumps([_run_json(r, changes=False) for r in rows], indent=2))
        return
    if not rows:
        c.echo("no run recorded yet")
        return
    table = Table(title="Runs")
    for col in ("id", "kind", "status", "actor", "started", "checksum", "tenants"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.kind, r.status, escape(r.actor), r.started_at.isoformat(timespec="seconds"),
                      (r.plan_checksum or "-")[:19], escape(", ".join(r.tenants)))
    c.out.print(table)


@runs_app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="The run's id (see `runs list`).")],
    fmt: TextOrJson = "text",
) -> None:
    """One run and the outcome of each of its changes."""
    c: Context = ctx.obj
    _fmt(fmt)
    db = read_db(c)
    if db is None:
        raise typer.Exit(1)  # no run at all: read_db said so
    try:
        r = runs.get_run(db, run_id)
    finally:
        db.dispose()
    if r is None:
        c.err.print(f"error: no run {run_id}: see `tenantctl runs list`", markup=False)
        raise typer.Exit(1)
    if fmt == "json":
        c.echo(json.dumps(_run_json(r, changes=True), indent=2))
        return
    c.echo(f"run {r.id}: {r.kind}, {r.status}")
    c.echo(f"  by        {r.actor}")
    c.echo(f"  started   {r.started_at.isoformat(timespec='seconds')}")
    c.echo(f"  finished  {r.finished_at.isoformat(timespec='seconds') if r.finished_at else '-'}")
    c.echo(f"  checksum  {r.plan_checksum or '-'}")
    c.echo(f"  tenants   {', '.join(r.tenants) or '-'}")
    if r.summary and "error" in r.summary:
        c.echo(f"  error     {REDACTOR.scrub(str(r.summary['error']))}")
    if not r.changes:
        c.echo("  no changes recorded")
        return
    table = Table(title=f"Changes of run {r.id}")
    for col in ("tenant", "address", "action", "outcome", "error"):
        table.add_column(col)
    for ch in r.changes:
        table.add_row(*(escape(v) for v in (ch.tenant, ch.address, ch.action, ch.outcome,
                                            REDACTOR.scrub(ch.error or ""))))
    c.out.print(table)
