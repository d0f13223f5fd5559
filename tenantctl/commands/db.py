"""`tenantctl db upgrade | current`: the database schema (Alembic migrations shipped in `store`)."""

from __future__ import annotations

import typer

from store.engine import make_engine, redact_url
from store.migrate import current_revision, head_revision, upgrade
from tenantctl.context import Context

db_app = typer.Typer(help="The database schema: upgrade it, show its revision.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_cmd(ctx: typer.Context) -> None:
    """Migrate the database to the newest schema (idempotent)."""
    c: Context = ctx.obj
    url = c.settings.resolved_database_url
    upgrade(url)
    c.echo(f"database {redact_url(url)} is at revision {head_revision()} (head)")


@db_app.command("current")
def current_cmd(ctx: typer.Context) -> None:
    """Show the schema revision; exit 1 when it is not the head (run `tenantctl db upgrade`)."""
    c: Context = ctx.obj
    url = c.settings.resolved_database_url
    engine = make_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    c.echo(f"database: {redact_url(url)}")
    c.echo(f"current:  {current or '(none: empty database)'}")
    c.echo(f"head:     {head}")
    if current != head:
        c.echo("not up to date: run `tenantctl db upgrade`")
        raise typer.Exit(1)
    c.echo("up to date")
