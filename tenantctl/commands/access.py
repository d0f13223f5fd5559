"""`tenantctl access matrix | rotate | qr`: who can open which door, new codes, QR images for 2N.

Exit codes: 0 done, 1 an error (bad input, an invalid tenant file, a refused output path).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from reconciler.access import matrix, matrix_json, matrix_markdown, matrix_text, open_at
from tenancy.loader import LoadedTenant, LoadResult
from tenantctl.context import Context

access_app = typer.Typer(name="access", help="Team access: who can open what, codes, QR codes.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(access_app)


def _fail(c: Context, message: str) -> NoReturn:
    c.err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def _valid(c: Context, result: LoadResult) -> None:
    if not result.ok:
        for f in result.errors:
            c.echo(f.text())
        c.err.print(f"error: {len(result.errors)} error(s) in the tenant files: run `tenantctl validate`")
        raise typer.Exit(1)


def _tenants(c: Context, slug: str | None) -> list[LoadedTenant]:
    if slug is None:
        result = c.load()
        _valid(c, result)
        return result.tenants
    path = c.tenants_dir / f"{slug}.yaml"
    if not path.is_file():
        c.err.print(f"error: no tenant {slug!r} in {c.tenants_dir}", markup=False)
        raise typer.Exit(1)
    result = c.load([path])
    _valid(c, result)
    return result.tenants


@access_app.command("matrix")
def matrix_cmd(
    ctx: typer.Context,
    slug: Annotated[str | None, typer.Argument(help="One tenant (default: all).")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help='Only who can open at this local moment, e.g. "2026-12-24 22:00" (each property\'s zone).',
    )] = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json | markdown")] = "text",
) -> None:
    """Per property and door (Nuki lock, 2N intercom): the teammates who can open it, in local time."""
    c: Context = ctx.obj
    if fmt not in ("text", "json", "markdown"):
        _fail(c, "--format: use text, json or markdown")
    moment = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            _fail(c, '--at: give a local date and time like "2026-12-24 22:00"')
        if moment.tzinfo is not None:
            _fail(c, "--at: give local time without an offset: each door is read in its own zone")
    rows = [r for lt in _tenants(c, slug) for r in matrix(lt.tenant)]
    if moment is not None:
        rows = open_at(rows, moment)
    if fmt == "json":
        c.echo(json.dumps({"version": 1, "at": moment.isoformat() if moment else None,
                           "doors": matrix_json(rows)}, indent=2, ensure_ascii=False))
    elif fmt == "markdown":
        c.echo(matrix_markdown(rows))
    else:
        if moment is not None:
            c.echo(f"Who can open at {moment:%Y-%m-%d %H:%M} (local time of each property):")
        c.echo(matrix_text(rows, moment) or "no doors")


def _outside_repo(out: Path, repo: Path) -> bool:
    target = out.expanduser().resolve()
    return repo.resolve() not in (target, *target.parents)


__all__ = ["Path", "access_app", "register"]
