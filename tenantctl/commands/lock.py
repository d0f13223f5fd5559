"""`tenantctl lock list | release SLUG`: see who holds a tenant, and break a lock a dead run left behind."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from store import locks
from store.engine import utcnow
from tenantctl.commands.reconcile import read_db
from tenantctl.context import Context
from tenantctl.options import TextOrJson, complete_slug

lock_app = typer.Typer(help="Per-tenant apply locks.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(lock_app, name="lock")


@lock_app.command("list")
def list_locks(
    ctx: typer.Context,
    fmt: TextOrJson = "text",
) -> None:
    """Every held tenant lock: holder (user@host pid), since when, the run it belongs to."""
    c: Context = ctx.obj
    db = read_db(c)
    if db is None:
        c.echo("[]" if fmt == "json" else "no tenant is locked")
        return
    try:
        locks.reap_stale(db)
        now = utcnow()
        rows = [(r, locks.lock_state(db, r, now)) for r in locks.list_locks(db)]
    finally:
        db.dispose()
    now = utcnow()
    if fmt == "json":
        c.echo(json.dumps([{"tenant": r.tenant, "holder": r.holder,
                            "acquired_at": r.acquired_at.isoformat(timespec="seconds"), "run_id": r.run_id,
                            "state": state} for r, state in rows], indent=2))
        return
    if not rows:
        c.echo("no tenant is locked")
        return
    table = Table(title="Tenant locks")
    for col in ("tenant", "holder", "since", "run", "state"):
        table.add_column(col)
    for r, state in rows:
        # live: its holder runs; stale: provably gone (the next apply takes it over); held: on another
        # host, cannot be checked; expired: past its ttl.
        table.add_row(escape(r.tenant), escape(r.holder), r.acquired_at.isoformat(timespec="seconds"),
                      "-" if r.run_id is None else str(r.run_id), state)
    c.out.print(table)


@lock_app.command("release")
def release(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant whose lock to break.", autocompletion=complete_slug)],
) -> None:
    """Break a tenant's lock whoever holds it (only when its run is dead: a live apply keeps going)."""
    c: Context = ctx.obj
    db = read_db(c)
    if db is None:
        c.err.print(f"error: tenant {slug!r} is not locked", markup=False)
        raise typer.Exit(1)
    try:
        held = {r.tenant: r for r in locks.list_locks(db)}
        removed = locks.release(db, slug)
    finally:
        db.dispose()
    if not removed:
        c.err.print(f"error: tenant {slug!r} is not locked")
        raise typer.Exit(1)
    c.echo(f"released the lock of {slug} (held by {held[slug].holder})" if slug in held
           else f"released the lock of {slug}")
