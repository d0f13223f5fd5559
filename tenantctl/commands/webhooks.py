"""`tenantctl webhooks log | stats | prune | replay | attempts`: what the webhook server recorded and how its
delivery to the platform went (read from the database)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

import typer
from rich.table import Table
from sqlalchemy import Engine

from store.delivery import LogEntry, attempts_of, has_events, log_entries, queue_by_group, replay
from store.engine import make_engine, missing_sqlite_file, redact_url
from store.errors import DatabaseNotMigrated
from store.migrate import require_up_to_date
from store.webhook_log import LogRow, Outcome, count_in_flight, last_verified_event, prune, query_log, stats
from tenancy.escape import markup, printable
from tenantctl.context import Context

webhooks_app = typer.Typer(help="The webhook log: recent requests, per-tenant stats, delivery, replay, pruning.",
                           no_args_is_help=True)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
PROVIDERS = ("hospitable", "whatsapp", "nuki", "beds24")


def _known_provider(value: str | None) -> str | None:
    """--provider's check: a typo would select nothing and read as "none came"."""
    if value is not None and value not in PROVIDERS:
        raise typer.BadParameter(f"one of {', '.join(PROVIDERS)}", param_hint="--provider")
    return value


ProviderOption = Annotated[str | None, typer.Option("--provider", help=", ".join(PROVIDERS), callback=_known_provider)]
MAX_DURATION = timedelta(days=36500)  # an age or window; 100 years covers any log, and stays inside datetime's range
# A webhook-log ID: a positive 64-bit integer (BIGINT on PostgreSQL, SQLite's rowid).
MAX_ID = 2**63 - 1


class DeliveryState(StrEnum):
    """An event's delivery state (store.schema.DELIVERY_STATES): typer lists and checks the choices."""

    pending = "pending"
    retrying = "retrying"
    delivered = "delivered"
    dead = "dead"


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


def parse_duration(text: str, option: str | None = None) -> timedelta:
    """`30d`, `24h`, `15m`, `90s`, `2w`, up to :data:`MAX_DURATION`; a bad value is a usage error naming
    `option`."""
    m = _DURATION.match(text)
    if not m:
        raise typer.BadParameter("use a number and a unit: 90s, 15m, 24h, 30d, 2w", param_hint=option)
    digits, unit = m.group(1).lstrip("0") or "0", _UNITS[m.group(2)]
    # Compared in whole seconds first: a longer one would overflow a timedelta, or the time taken back by it.
    if len(digits) > 12 or int(digits) * _UNIT_SECONDS[unit] > MAX_DURATION.total_seconds():
        raise typer.BadParameter(f"{text.strip()!r} is out of range: from 0s to {MAX_DURATION.days}d (100 years)",
                                 param_hint=option)
    return timedelta(**{unit: int(digits)})


def _log_id(value: int) -> int:
    """A webhook-log ID as given on the command line: out of range is a usage error, not the database's."""
    if not 1 <= value <= MAX_ID:
        raise typer.BadParameter(f"{value} is out of range: a webhook-log ID is from 1 to {MAX_ID}")
    return value


def _log_ids(value: list[int] | None) -> list[int] | None:
    return None if value is None else [_log_id(v) for v in value]


def parse_since(text: str, now: datetime, option: str = "--since") -> datetime:
    """A duration back from now (`24h`) or an ISO 8601 time (UTC when it has no offset); a bad value is a
    usage error naming `option`."""
    if _DURATION.match(text):
        return now - parse_duration(text, option)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use a duration (24h, 7d) or an ISO 8601 time (2026-12-01T08:00)",
                                 param_hint=option) from None
    try:  # in UTC, as stored: an offset can carry the year 9999 past it
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise typer.BadParameter(f"{text!r} is out of range: a time in the years 1 to 9999 UTC",
                                 param_hint=option) from None


def _engine(c: Context) -> Engine:
    """The database, checked to be migrated: an old schema is a clear message, not an SQL error. A local SQLite
    file that does not exist is named and nothing is created: a mistyped TENANTCTL_STATE_DIR made a second, empty
    database, and the advice to migrate it hid that the events were in the other one."""
    url = c.settings.resolved_database_url
    if (path := missing_sqlite_file(url)) is not None:
        c.err.print(printable(f"error: no database at {path}: nothing was recorded there (is TENANTCTL_STATE_DIR "
                              "or DATABASE_URL the one `tenantctl serve` uses?)"), markup=False)
        raise typer.Exit(1)
    engine = make_engine(url)
    try:
        require_up_to_date(engine)
    except DatabaseNotMigrated as e:
        engine.dispose()
        c.err.print(f"error: {e} (database {redact_url(url)})")
        raise typer.Exit(1) from None
    return engine


def _row_json(r: LogRow, now: datetime) -> dict[str, object]:
    return {"id": r.id, "received_at": r.received_at.isoformat(), "tenant": r.tenant, "provider": r.provider,
            "outcome": r.outcome, "status_code": r.status_code, "reason": r.reason, "event_id": r.event_id,
            "body_size": r.body_size, "latency_ms": r.latency_ms, "delivery_state": r.delivery_state,
            "attempts": r.attempts, "last_status": r.last_status, "last_error": r.last_error,
            "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
            "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at and _waiting(r) else None,
            "in_flight": r.in_flight(now),
            "repeats": r.repeats}


def _delivery(r: LogRow) -> str:
    """`delivered 1x 204`, `retrying 3x 503`, `dead 25x`, `-` for rows never queued: short enough for its column."""
    if r.delivery_state is None:
        return "-"
    return f"{r.delivery_state} {r.attempts}x" + (f" {r.last_status}" if r.last_status is not None else "")


def _last_error(r: LogRow) -> str:
    """The last attempt's error of an event not delivered, for the end of its line; none when it only repeats the
    status (`HTTP 503`): `webhooks attempts` has every attempt's."""
    if r.last_error and r.delivery_state != "delivered" and r.last_error != f"HTTP {r.last_status}":
        return f"; last error: {r.last_error}"
    return ""


def _waiting(r: LogRow) -> bool:
    return r.delivery_state in ("pending", "retrying")


def _next_try(r: LogRow, now: datetime) -> str:
    """When an event still to deliver is tried next, for the end of its line: in flight (a worker's claim, its
    attempt may be under way), or due later (a retry's backoff, a Retry-After); nothing when it is due now."""
    if not _waiting(r) or r.next_attempt_at is None or r.next_attempt_at <= now:
        return ""
    until = r.next_attempt_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if r.in_flight(now):
        return f"; in flight (claimed by a worker until {until})"
    return f"; next try {until}"


@webhooks_app.command("log")
def log_cmd(
    ctx: typer.Context,
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's requests.")] = None,
    provider: ProviderOption = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="24h, 7d, or an ISO 8601 time (UTC unless it has an offset).")] = None,
    rejected: Annotated[bool, typer.Option("--rejected", help="Only refused requests.")] = False,
    state: Annotated[list[DeliveryState] | None, typer.Option(
        "--state", metavar="<pending|retrying|delivered|dead>",
        help="Only events in this delivery state (repeatable: --state pending --state retrying).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """The newest webhook requests, accepted and refused, with the reason of each refusal."""
    c: Context = ctx.obj
    if fmt not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--format")
    if rejected and state:
        # Refused requests are never queued: the two together could only ever list nothing.
        raise typer.BadParameter("a refused request has no delivery state: use --rejected or --state, not both",
                                 param_hint="--rejected/--state")
    outcome: Outcome | None = "rejected" if rejected else None
    since_at = parse_since(since, datetime.now(UTC)) if since else None
    engine = _engine(c)
    try:
        rows, _ = query_log(engine, tenant=tenant, provider=provider, outcome=outcome, since=since_at,
                            states=[s.value for s in state or ()], limit=limit)
        # As replay says it: a slug in the wrong case or misspelt matches nothing, and looks like a quiet log.
        unknown = not rows and tenant is not None and not has_events(engine, tenant=tenant)
    finally:
        engine.dispose()
    if fmt == "json":
        c.echo(json.dumps([_row_json(r, datetime.now(UTC)) for r in rows], indent=2))
        return
    # Plain lines, one per request: grep-able and never squeezed by a narrow terminal.
    now = datetime.now(UTC)
    c.echo(f"{'id':>8}  {'received (UTC)':<19}  {'tenant':<20} {'provider':<10} {'outcome':<9} {'st':>3}  "
           f"{'ms':>7}  {'delivery':<24}  reason / event id")
    for r in rows:
        ms = f"{r.latency_ms:.1f}" if r.latency_ms is not None else "-"
        detail = r.reason or (f"event {r.event_id}" if r.event_id else "")
        if r.repeats:
            detail += f" (and {r.repeats} more like it this minute)"
        detail += _last_error(r) + _next_try(r, now)
        # Sender-controlled text (event ids, slugs in reasons): escaped, so it cannot drive the terminal.
        c.echo(printable(f"{r.id:>8}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.tenant or '-':<20} {r.provider:<10} "
                         f"{r.outcome:<9} {r.status_code:>3}  {ms:>7}  {_delivery(r):<24}  {detail}"))
    if not rows:
        c.echo("no webhook requests match")
        if unknown:
            c.err.print(printable(f"no accepted event of tenant '{tenant}' in the webhook log (check the slug: "
                                  "`tenantctl list`)"), markup=False)


@webhooks_app.command("stats")
def stats_cmd(
    ctx: typer.Context,
    window: Annotated[str, typer.Option("--window", help="Counting window, e.g. 24h.")] = "24h",
    fmt: Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")] = "text",
) -> None:
    """Per tenant and provider: webhooks accepted and rejected, and the delivery queue (pending, retrying, dead).

    In the window: the last accepted event, accepted, duplicate and rejected counts. The delivery queue now,
    whatever the events' age: pending, retrying and dead events, and how long the oldest waiting one (pending
    or retrying) has waited since its receipt or last replay.
    """
    c: Context = ctx.obj
    now = datetime.now(UTC)
    engine = _engine(c)
    try:
        rows = stats(engine, now=now, window=parse_duration(window, "--window"))
        last = {(s.tenant, s.provider): s.last_accepted_at or (
            last_verified_event(engine, s.tenant, s.provider) if s.tenant else None) for s in rows}
        # Undelivered events count whatever their age: a dead letter from last week still needs a look.
        queue = {(g.tenant, g.provider): g for g in queue_by_group(engine)}
    finally:
        engine.dispose()
    keys = [(s.tenant, s.provider) for s in rows] + sorted(
        (k for k in queue if k not in last), key=lambda k: (k[0] or "", k[1]))
    by_key = {(s.tenant, s.provider): s for s in rows}

    def pending_age(key: tuple[str | None, str]) -> float | None:
        g = queue.get(key)
        return None if g is None or g.oldest_pending_at is None else (now - g.oldest_pending_at).total_seconds()

    if fmt == "json":
        out = []
        for key in keys:
            s, g, t = by_key.get(key), queue.get(key), last.get(key)
            age = pending_age(key)
            out.append({"tenant": key[0], "provider": key[1],
                        "last_accepted_at": t.isoformat() if t else None,
                        "accepted": s.accepted if s else 0, "duplicate": s.duplicate if s else 0,
                        "rejected": s.rejected if s else 0, "pending": g.pending if g else 0,
                        "retrying": g.retrying if g else 0, "dead": g.dead if g else 0,
                        "oldest_pending_age_s": round(age, 3) if age is not None else None})
        c.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"Webhooks in the last {window}; delivery queue now")
    cols = ("tenant", "provider", "last accepted (UTC)", "accepted", "duplicate", "rejected", "pending", "retrying",
            "dead", "oldest waiting")
    for col in cols:
        table.add_column(col, justify="left" if col in cols[:3] else "right")
    for key in keys:
        s, g, t = by_key.get(key), queue.get(key), last.get(key)
        when = t.strftime("%Y-%m-%d %H:%M:%S") if t else "never"
        age = pending_age(key)
        table.add_row(markup(key[0] or "(unknown tenant)"), markup(key[1]), when, str(s.accepted if s else 0),
                      str(s.duplicate if s else 0), str(s.rejected if s else 0), str(g.pending if g else 0),
                      str(g.retrying if g else 0), str(g.dead if g else 0), "-" if age is None else _age(age))
    c.out.print(table)
    if not keys:
        c.echo(f"no webhook requests in the last {window}")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@webhooks_app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="An age such as 30d (0s to 36500d).")],
    include_undelivered: Annotated[bool, typer.Option(
        "--include-undelivered", help="Also delete events not delivered yet and dead letters (but not those "
        "in flight: claimed by a worker, their lease running).")] = False,
) -> None:
    """Delete webhook-log records older than the given age (undelivered events are kept unless told)."""
    c: Context = ctx.obj
    now = datetime.now(UTC)
    cutoff = now - parse_duration(older_than, "--older-than")
    engine = _engine(c)
    try:
        n = prune(engine, cutoff, include_undelivered=include_undelivered, now=now)
        busy = count_in_flight(engine, now=now, received_before=cutoff) if include_undelivered else 0
    finally:
        engine.dispose()
    kept = "" if include_undelivered else " (undelivered and dead-lettered events kept)"
    c.echo(f"deleted {n} webhook record(s) received before {cutoff.isoformat(timespec='seconds')}{kept}")
    if busy:
        c.echo(f"{busy} in flight (a worker's attempt may be under way), kept: prune again after their attempt ends")


@webhooks_app.command("replay")
def replay_cmd(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Webhook-log IDs (from `webhooks log`).",
                                                    callback=_log_ids)] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Every event of this tenant.")] = None,
    provider: ProviderOption = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Received at or after: 24h, 7d or ISO 8601 (UTC unless it has an offset).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Received before: a duration back or ISO 8601 (UTC unless it has an offset).")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Only dead-lettered events.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be queued; change nothing.")] = False,
) -> None:
    """Queue accepted events for delivery again (same webhook-id): by ID, or by tenant/provider/time/--dead.

    Every selected event is sent again, those delivered already included (the platform sees a webhook-id it
    knows); --dead selects only the dead-lettered, --dry-run counts first. An event whose attempt is in flight
    (claimed by a worker, its lease running) is left alone and counted: replay it again after its attempt ends."""
    c: Context = ctx.obj
    if not (ids or tenant or provider or since or until or dead):
        raise typer.BadParameter("name IDs, or select with --tenant, --provider, --since, --until or --dead")
    now = datetime.now(UTC)
    since_at = parse_since(since, now) if since else None
    until_at = parse_since(until, now, "--until") if until else None
    if since_at is not None and until_at is not None and since_at >= until_at:
        raise typer.BadParameter(
            f"--since ({since_at:%Y-%m-%d %H:%M:%S} UTC) is not before --until ({until_at:%Y-%m-%d %H:%M:%S} UTC): "
            "the range holds no time. A duration counts back from now, so the larger one goes to --since "
            "(--since 2h --until 1h)", param_hint="--since/--until")
    engine = _engine(c)
    try:
        done = replay(engine, now=now, ids=ids or (), tenant=tenant, provider=provider,
                      since=since_at, until=until_at, dead_only=dead, dry_run=dry_run)
        # Why fewer than asked: read only on that path (the IDs given, or one indexed look-up of the tenant).
        why = _not_replayed(engine, ids or [], tenant, provider, since_at, until_at, dead) \
            if (done.queued + done.in_flight < len(set(ids or ())) or done.queued + done.in_flight == 0) else []
    finally:
        engine.dispose()
    sent = "would be sent again" if dry_run else "sent again"
    again = f" ({done.delivered} of them delivered already: {sent})" if done.delivered else ""
    c.echo(f"{'would queue' if dry_run else 'queued'} {done.queued} event(s) for delivery again{again}"
           f"{'; dry run: nothing changed' if dry_run else ''}")
    if done.in_flight:
        c.echo(f"{done.in_flight} in flight (a worker's attempt may be under way), not replayed: "
               "replay them again after their attempt ends")
    for line in why:
        c.echo(printable(line))  # tenant slugs come from outside (the request path, the command line)
    if done.queued == 0:
        raise typer.Exit(1)


def _ids_text(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:20]))
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def _not_replayed(engine: Engine, ids: list[int], tenant: str | None, provider: str | None,
                  since: datetime | None, until: datetime | None, dead: bool) -> list[str]:
    """Why `replay` queued fewer events than asked: IDs that do not exist or were never events to deliver, an
    ID the other options exclude, a tenant without events. Empty when nothing cheap explains it."""
    lines = []
    if ids:
        found = log_entries(engine, ids)
        missing = sorted(set(ids) - found.keys())
        if missing:
            lines.append(f"no webhook-log record with ID {_ids_text(missing)} (`tenantctl webhooks log` lists them)")
        never = sorted(i for i, e in found.items() if e.delivery_state is None)
        if never:
            lines.append(f"ID {_ids_text(never)}: a rejected or duplicate request, never an event to deliver "
                         "(only accepted events are replayed)")
        for e in sorted((e for e in found.values() if e.delivery_state is not None), key=lambda e: e.id):
            misfit = _misfits(e, tenant, provider, since, until, dead)
            if misfit:
                lines.append(f"event {e.id} is not selected by the options given: {'; '.join(misfit)}")
        return lines
    if tenant is not None and not has_events(engine, tenant=tenant):
        lines.append(f"no event of tenant '{tenant}' in the webhook log (check the slug: `tenantctl webhooks log` "
                     "or `tenantctl list`)")
    elif not lines:
        lines.append("no accepted event matches the options given")
    return lines


def _misfits(e: LogEntry, tenant: str | None, provider: str | None, since: datetime | None,
             until: datetime | None, dead: bool) -> list[str]:
    out = []
    if tenant is not None and e.tenant != tenant:
        out.append(f"--tenant '{tenant}', but its tenant is '{e.tenant or '(unknown)'}'")
    if provider is not None and e.provider != provider:
        out.append(f"--provider {provider}, but its provider is {e.provider}")
    received = f"{e.received_at:%Y-%m-%d %H:%M:%S} UTC"
    if since is not None and e.received_at < since:
        out.append(f"--since {since:%Y-%m-%d %H:%M:%S} UTC, but it was received at {received}")
    if until is not None and e.received_at >= until:
        out.append(f"--until {until:%Y-%m-%d %H:%M:%S} UTC, but it was received at {received}")
    if dead and e.delivery_state != "dead":
        out.append(f"--dead, but it is {e.delivery_state}")
    return out


@webhooks_app.command("attempts")
def attempts_cmd(
    ctx: typer.Context,
    log_id: Annotated[int, typer.Argument(help="A webhook-log ID (from `webhooks log`).", callback=_log_id)],
) -> None:
    """Every delivery attempt of one event: when, which worker, outcome, status, latency, error."""
    c: Context = ctx.obj
    engine = _engine(c)
    try:
        rows = attempts_of(engine, log_id)
        entry = log_entries(engine, [log_id]).get(log_id) if not rows else None
    finally:
        engine.dispose()
    if not rows and entry is None:
        c.err.print(f"error: no webhook-log record with ID {log_id}: no such event (`tenantctl webhooks log` "
                    "lists the IDs)")
        raise typer.Exit(1)
    if not rows and entry is not None and entry.delivery_state is None:
        c.echo(f"no delivery attempts recorded for event {log_id}: a rejected or duplicate request, never queued "
               "for delivery")
        return
    c.echo(f"{'#':>3}  {'started (UTC)':<23}  {'outcome':<9} {'st':>3}  {'ms':>8}  worker / error")
    expected = 1
    for before, a in zip([None, *rows], rows, strict=False):
        if before is not None and a.attempt <= before.attempt:  # a replay counts its attempts from 1 again
            c.echo(f"  -- replayed: attempts counted from 1 again {'-' * 40}")
            expected = 1
        # A number with no row: an attempt was started (its claim counted it) and its outcome never recorded.
        for lost in range(expected, a.attempt):
            c.echo(f"{lost:>3}  {'-':<23}  {'lost':<9} {'-':>3}  {'-':>8}  no outcome recorded: its worker stopped "
                   "before recording it (the platform may have received it; delivered again after its lease)")
        expected = a.attempt + 1
        ms = f"{a.latency_ms:.1f}" if a.latency_ms is not None else "-"
        st = str(a.status_code) if a.status_code is not None else "-"
        c.echo(f"{a.attempt:>3}  {a.started_at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {a.outcome:<9} {st:>3}  {ms:>8}  "
               f"{a.worker}{'  ' + a.error if a.error else ''}")
    if not rows:
        c.echo(f"no delivery attempts recorded for event {log_id}")
