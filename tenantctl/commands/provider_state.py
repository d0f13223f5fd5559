"""`tenantctl provider-state list | forget SLUG PATH`: what providers issued once, kept encrypted in the database.

Rotation of such a value (docs/ci.md, "Provider state"): `provider-state forget acme nuki.webhook_secret`, then
plan/apply (or merge any pull request): the plan replaces the provider's resource, and the new value is
stored; the webhook server follows the store by itself.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reconciler.engine import actor as eng_actor
from store import provider_state
from tenantctl.commands.reconcile import read_db
from tenantctl.context import Context
from tenantctl.options import TextOrJson, complete_slug

state_app = typer.Typer(help="Values providers issued once (e.g. Nuki's webhook secret), kept encrypted.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="provider-state")


@state_app.command("list")
def list_state(
    ctx: typer.Context,
    fmt: TextOrJson = "text",
) -> None:
    """Every stored value: tenant, path, when and by whom (never the value)."""
    c: Context = ctx.obj
    db = read_db(c)
    if db is None:
        c.echo("[]" if fmt == "json" else "the provider state store is empty")
        return
    try:
        entries = provider_state.list_entries(db)
    finally:
        db.dispose()
    if fmt == "json":
        c.echo(json.dumps([{"tenant": e.tenant, "provider": e.provider, "path": e.path, "revision": e.revision,
                            "updated_at": e.updated_at.isoformat(timespec="seconds"),
                            "updated_by": e.updated_by, "has_previous": e.has_previous} for e in entries],
                          indent=2))
        return
    if not entries:
        c.echo("the provider state store is empty")
        return
    table = Table(title="Provider state")
    for col in ("tenant", "path", "updated", "by", "previous kept"):
        table.add_column(col)
    for e in entries:
        table.add_row(escape(e.tenant), escape(e.path), e.updated_at.isoformat(timespec="seconds"),
                      escape(e.updated_by), "yes" if e.has_previous else "no")
    c.out.print(table)


@state_app.command("forget")
def forget(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The tenant.", autocompletion=complete_slug)],
    path: Annotated[str, typer.Argument(help="The value's path, e.g. nuki.webhook_secret.")],
) -> None:
    """Remove a value (rotation): the next plan replaces the provider's resource and stores a new one."""
    c: Context = ctx.obj
    db = read_db(c)
    if db is None:
        c.err.print(f"error: nothing stored for {slug} at {path}", markup=False)
        raise typer.Exit(1)
    try:
        removed = provider_state.forget(db, slug, path.split(".")[0], path, eng_actor())
    finally:
        db.dispose()
    if not removed:
        c.err.print(f"error: nothing stored for {slug} at {path}", markup=False)
        raise typer.Exit(1)
    c.echo(f"forgot {path} of {slug}: the next plan replaces it (apply to issue a new one)")
