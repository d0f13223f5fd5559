"""`tenantctl health`: every integration checked, one row per resource, in the operators' vocabulary.

Exit codes: 1 when a row of an *active* tenant is degraded or missing; 0 otherwise (healthy, progressing,
suspended and unknown never fail: unknown means we could not look). Formats: text, json (versioned, see
docs/health.md), junit (for CI test reporters). Each run is stored (store.health) for the Integrations
page and `/metrics`, when a database is configured.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from reconciler.health import platform_rows, run_health, whatsapp_account_alerts
from reconciler.health_status import FORMAT_VERSION, Health, Row, counts, exit_code, parse_window, to_json_doc, to_junit
from reconciler.providers.base import ProviderContext, StatusEvidence
from store import health as store_health
from store.errors import StoreError
from tenancy.escape import printable
from tenancy.redact import REDACTOR
from tenantctl.commands.reconcile import ProviderOpt, SandboxOpt, TenantOpt, session
from tenantctl.context import Context
from tenantctl.errors import explain
from tenantctl.progress import QuietOpt, showing

SMTP_CA_NAME = "sandbox-smtp.pem"  # written by the sandbox's SMTP server into the state directory
SMTP_PORT_NAME = "sandbox-smtp.port"
_COLOURS = {Health.HEALTHY: "green", Health.PROGRESSING: "cyan", Health.DEGRADED: "red", Health.MISSING: "red",
            Health.UNKNOWN: "yellow", Health.SUSPENDED: "dim"}


def register(app: typer.Typer) -> None:
    app.command("health")(health)


def health(
    ctx: typer.Context,
    *,
    tenant: TenantOpt = None,
    provider: ProviderOpt = None,
    fmt: Annotated[Literal["text", "json", "junit"], typer.Option("--format", help="Output format.")] = "text",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds each provider's checks may take per "
                                           "tenant; slower reads unknown.")] = 30.0,
    window: Annotated[str, typer.Option("--window", help="How far back inbound webhooks count (24h, 30m, 7d).")]
    = "24h",
    out: Annotated[Path | None, typer.Option("--out", help="Also write the report to this file.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Also run round trips that leave nothing behind: a "
                                         "temporary Nuki maintenance code, an SMTP test mail, a WhatsApp template "
                                         "to whatsapp.test_recipient awaiting its status webhook.")] = False,
    mail_to: Annotated[str | None, typer.Option("--mail-to", help="--active: the SMTP test mail's recipient "
                                                "(else each tenant's smtp.from_address).")] = None,
    sandbox: SandboxOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check every integration: health (healthy/progressing/degraded/missing/unknown/suspended) and sync.

    Exit 1 only when an active tenant has a degraded or missing row; 0 otherwise."""
    c: Context = ctx.obj
    c.quiet = quiet
    if fmt not in ("text", "json", "junit"):
        raise typer.BadParameter("use text, json or junit", param_hint="--format")
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    try:
        window_s = parse_window(window)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--window") from None
    now = datetime.now(UTC)
    c.data_on_stdout = fmt != "text"
    try:
        rows = _check(c, tenant, provider, sandbox, now, window_s, mail_to, timeout, active)
    except typer.Exit as e:
        if fmt != "json" or not e.exit_code:
            raise
        _json_error(c, now, window_s, c.last_error or "the health check could not run (see stderr)", out)
    except Exception as e:
        if fmt != "json":
            raise
        message = explain(e, c.settings.resolved_database_url) or REDACTOR.scrub(f"{type(e).__name__}: {e}")
        c.err.print(f"error: {message}", markup=False)
        _json_error(c, now, window_s, message, out)
    if fmt == "json":
        report = json.dumps(to_json_doc(rows, checked_at=now, window_s=window_s), indent=2)
        c.echo(report)
    elif fmt == "junit":
        report = to_junit(rows, checked_at=now)
        sys.stdout.write(REDACTOR.scrub(report))
    else:
        report = _text_report(rows)
        _print_text(c, rows)
    if out is not None:
        out.write_text(REDACTOR.scrub(report))
    raise typer.Exit(exit_code(rows))


def _json_error(c: Context, now: datetime, window_s: float, message: str, out: Path | None) -> NoReturn:
    """A JSON consumer always gets a document: the versioned shape with `error` and exit_code 1, no rows."""
    doc = json.dumps({"format_version": FORMAT_VERSION, "checked_at": now.isoformat(), "window_seconds": window_s,
                      "exit_code": 1, "error": message, "summary": None, "rows": []}, indent=2)
    c.echo(doc)
    if out is not None:
        out.write_text(REDACTOR.scrub(doc))
    raise typer.Exit(1)


def _check(c: Context, tenant: list[str] | None, provider: list[str] | None, sandbox: bool, now: datetime,
           window_s: float, mail_to: str | None, timeout: float, active: bool) -> list[Row]:
    with session(c, tenant, provider, sandbox) as s:
        hctx = dataclasses.replace(_context(s.ctx, s.db, now, timedelta(seconds=window_s),
                                            c.settings.state_dir if s.config.sandbox else None), mail_to=mail_to,
                                   status_wait_s=_status_wait(timeout))
        with showing(c.quiet, s.http) as progress:
            rows = run_health([lt.tenant for lt in s.loaded], s.providers, hctx, s.http,
                              workers=s.config.limits.tenant_workers, timeout_s=timeout, active=active,
                              progress=progress)
        if s.with_platform:  # the Meta app's own subscription: a platform row, judged as an active tenant's
            rows = [*platform_rows(s.app.health(s.ctx, s.http)), *rows]
        rows = [dataclasses.replace(r, detail=REDACTOR.scrub(r.detail), hint=REDACTOR.scrub(r.hint))
                for r in rows]
        if s.db is not None:
            _record(c, s.db, rows, now)
    return rows


def _context(base: ProviderContext, db: Engine | None, now: datetime, window: timedelta,
             sandbox_state: Path | None) -> ProviderContext:
    evidence: dict[tuple[str, str], store_health.Evidence] = {}
    alerts: dict[str, list[str]] = {}
    if db is not None:
        evidence = store_health.inbound_evidence(db, now=now, window=window)
        alerts = whatsapp_account_alerts(store_health.accepted_bodies(db, "whatsapp", since=now - window))
    last = {k: v.last_verified for k, v in evidence.items() if v.last_verified is not None}
    return dataclasses.replace(
        base, now=now, window=window, last_verified_event={**base.last_verified_event, **last},
        inbound_counts={k: v.accepted_in_window for k, v in evidence.items()} if db is not None else None,
        account_events=alerts, smtp_endpoint=_sandbox_smtp(sandbox_state),
        message_evidence=_message_evidence(db) if db is not None else None)


def _status_wait(timeout_s: float) -> float:
    """The WhatsApp round trip's wait for its status webhook: within the provider's --timeout, at most 15 s."""
    return max(0.5, min(15.0, timeout_s / 2))


def _message_evidence(db: Engine) -> Callable[[str, str, datetime], StatusEvidence]:
    """What the webhook log holds about a sent message: its recorded statuses, the refusals since the send."""
    def read(slug: str, message_id: str, since: datetime) -> StatusEvidence:
        return StatusEvidence(store_health.message_statuses(db, slug, message_id),
                              store_health.refusal_reasons(db, slug, "whatsapp", since=since))
    return read


def _sandbox_smtp(state_dir: Path | None) -> tuple[str, int, str | None] | None:
    """In sandbox mode the sandbox's SMTP server stands in for every tenant's (see sandbox.smtp)."""
    if state_dir is None:
        return None
    port_file, ca = state_dir / SMTP_PORT_NAME, state_dir / SMTP_CA_NAME
    if not port_file.is_file():
        return ("127.0.0.1", 1, None)  # nothing listens: reads unknown, never the tenant's real server
    return ("127.0.0.1", int(port_file.read_text().strip()), str(ca) if ca.is_file() else None)


def _record(c: Context, db: Engine, rows: list[Row], now: datetime) -> None:
    try:
        store_health.record_run(db, [store_health.HealthResult(
            r.tenant, r.provider, r.address, r.health.value, r.sync.value if r.sync else None, r.detail, r.hint,
            round(r.duration_s * 1000, 1), now, r.tenant_status) for r in rows])
    except StoreError as e:  # the report still counts; say that it was not stored
        c.err.print(REDACTOR.scrub(f"warning: the results were not stored: {e}"), markup=False)


def _text_report(rows: list[Row]) -> str:
    """The text report as a file holds it: the same table and summary, plain (no colour, no escapes)."""
    buf = io.StringIO()
    plain = Console(file=buf, color_system=None, width=200, highlight=False, soft_wrap=True)
    plain.print(_table(rows))
    return buf.getvalue() + _summary(rows) + "\n"


def _summary(rows: list[Row]) -> str:
    summary = ", ".join(f"{n} {h}" for h, n in counts(rows).items() if n)
    return f"{len(rows)} check(s): {summary or 'none'}"


def _print_text(c: Context, rows: list[Row]) -> None:
    c.out.print(_table(rows))
    c.echo(_summary(rows))


def _table(rows: list[Row]) -> Table:
    table = Table(title="Health")
    for col in ("tenant", "resource", "health", "sync", "time", "detail", "what to do"):
        table.add_column(col, overflow="fold")
    for r in rows:
        # Details carry providers' text: terminal escapes are made visible (Text already ignores markup).
        table.add_row(Text(printable(r.tenant)), Text(printable(r.address)),
                      Text(r.health.value, style=_COLOURS[r.health]), Text(r.sync.value if r.sync else "-"),
                      Text(_ms(r.duration_s)), Text(printable(REDACTOR.scrub(r.detail))),
                      Text(printable(REDACTOR.scrub(r.hint))))
    return table


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
