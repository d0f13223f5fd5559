"""`tenantctl webhooks log | stats | prune`: what the webhook server recorded (read from the database)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import typer
from rich.table import Table
from sqlalchemy import Engine

from store.engine import make_engine, redact_url
from store.errors import DatabaseNotMigrated
from store.migrate import require_up_to_date
from store.webhook_log import LogRow, Outcome, last_verified_event, prune, query_log, stats
from tenantctl.context import Context

webhooks_app = typer.Typer(help="The webhook log: recent requests, per-tenant stats, pruning.",
                           no_args_is_help=True)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
PROVIDERS = ("hospitable", "whatsapp", "nuki", "beds24")


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


def parse_duration(text: str) -> timedelta:
    """`30d`, `24h`, `15m`, `90s`, `2w`."""
    m = _DURATION.match(text)
    if not m:
        raise typer.BadParameter("use a number and a unit: 90s, 15m, 24h, 30d, 2w")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def parse_since(text: str, now: datetime) -> datetime:
    """A duration back from now (`24h`) or an ISO 8601 time (UTC when it has no offset)."""
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("use a duration (24h, 7d) or an ISO 8601 time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _engine(c: Context) -> Engine:
    """The database, checked to be migrated: an old schema is a clear message, not an SQL error."""
    url = c.settings.resolved_database_url
    engine = make_engine(url)
    try:
        require_up_to_date(engine)
    except DatabaseNotMigrated as e:
        engine.dispose()
        c.err.print(f"error: {e} (database {redact_url(url)})")
        raise typer.Exit(1) from None
    return engine


def _row_json(r: LogRow) -> dict[str, object]:
    return {"id": r.id, "received_at": r.received_at.isoformat(), "tenant": r.tenant, "provider": r.provider,
            "outcome": r.outcome, "status_code": r.status_code, "reason": r.reason, "event_id": r.event_id,
            "body_size": r.body_size, "latency_ms": r.latency_ms}


@webhooks_app.command("log")
def log_cmd(
    ctx: typer.Context,
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's requests.")] = None,
    provider: Annotated[str | None, typer.Option("--provider", help=", ".join(PROVIDERS))] = None,
    since: Annotated[str | None, typer.Option("--since", help="24h, 7d, or an ISO 8601 time.")] = None,
    rejected: Annotated[bool, typer.Option("--rejected", help="Only refused requests.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """The newest webhook requests, accepted and refused, with the reason of each refusal."""
    c: Context = ctx.obj
    if fmt not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--format")
    outcome: Outcome | None = "rejected" if rejected else None
    since_at = parse_since(since, datetime.now(UTC)) if since else None
    engine = _engine(c)
    try:
        rows, _ = query_log(engine, tenant=tenant, provider=provider, outcome=outcome, since=since_at,
                            limit=limit)
    finally:
        engine.dispose()
    if fmt == "json":
        c.echo(json.dumps([_row_json(r) for r in rows], indent=2))
        return
    # Plain lines, one per request: grep-able and never squeezed by a narrow terminal.
    c.echo(f"{'received (UTC)':<19}  {'tenant':<20} {'provider':<10} {'outcome':<9} {'st':>3}  "
           f"{'ms':>7}  reason / event id")
    for r in rows:
        ms = f"{r.latency_ms:.1f}" if r.latency_ms is not None else "-"
        detail = r.reason or (f"event {r.event_id}" if r.event_id else "")
        c.echo(f"{r.received_at:%Y-%m-%d %H:%M:%S}  {r.tenant or '-':<20} {r.provider:<10} {r.outcome:<9} "
               f"{r.status_code:>3}  {ms:>7}  {detail}")
    if not rows:
        c.echo("no webhook requests match")


@webhooks_app.command("stats")
def stats_cmd(
    ctx: typer.Context,
    window: Annotated[str, typer.Option("--window", help="Counting window, e.g. 24h.")] = "24h",
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """Per tenant and provider: the last accepted event, accepted and rejected counts in the window."""
    c: Context = ctx.obj
    now = datetime.now(UTC)
    engine = _engine(c)
    try:
        rows = stats(engine, now=now, window=parse_duration(window))
        last = {(s.tenant, s.provider): s.last_accepted_at or (
            last_verified_event(engine, s.tenant, s.provider) if s.tenant else None) for s in rows}
    finally:
        engine.dispose()
    if fmt == "json":
        out = []
        for s in rows:
            t = last[(s.tenant, s.provider)]
            out.append({"tenant": s.tenant, "provider": s.provider,
                        "last_accepted_at": t.isoformat() if t else None,
                        "accepted": s.accepted, "duplicate": s.duplicate, "rejected": s.rejected})
        c.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"Webhooks in the last {window}")
    for col in ("tenant", "provider", "last accepted (UTC)", "accepted", "duplicate", "rejected"):
        table.add_column(col, justify="right" if col in ("accepted", "duplicate", "rejected") else "left")
    for s in rows:
        t = last[(s.tenant, s.provider)]
        when = t.strftime("%Y-%m-%d %H:%M:%S") if t else "never"
        table.add_row(s.tenant or "(unknown tenant)", s.provider, when, str(s.accepted), str(s.duplicate),
                      str(s.rejected))
    c.out.print(table)
    if not rows:
        c.echo(f"no webhook requests in the last {window}")


@webhooks_app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="An age such as 30d.")],
) -> None:
    """Delete webhook-log records older than the given age."""
    c: Context = ctx.obj
    cutoff = datetime.now(UTC) - parse_duration(older_than)
    engine = _engine(c)
    try:
        n = prune(engine, cutoff)
    finally:
        engine.dispose()
    c.echo(f"deleted {n} webhook record(s) received before {cutoff.isoformat(timespec='seconds')}")
