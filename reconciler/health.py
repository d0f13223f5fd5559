"""Run every provider's read-only health checks for many tenants, timed, as rows in the operators' vocabulary.

A provider's crash or a call that does not finish within the deadline is that provider's `unknown` row,
never the run's failure. A suspended tenant is not called at all (one `suspended` row per provider); an
onboarding tenant's gaps read `progressing` (reconciler.health_status.for_tenant_status).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from reconciler.engine import describe_error
from reconciler.health_status import Health, Row, for_tenant_status
from reconciler.progress import NO_PROGRESS, Progress
from reconciler.providers.base import HealthCheck, Http, Provider, ProviderContext, check, error_check
from tenancy.model import Status, Tenant


def _provider_checks(provider: Provider, tenant: Tenant, ctx: ProviderContext, http: Http,
                     active: bool = False) -> list[HealthCheck]:
    started = time.monotonic()
    try:
        checks = list(provider.health(tenant, ctx, http))
        round_trip = getattr(provider, "round_trip", None) if active else None
        if round_trip is not None:  # providers with an active round trip (Nuki, SMTP) offer it
            checks.extend(round_trip(tenant, ctx, http))
    except Exception as e:  # a provider's failure is that provider's unknown row, not the run's
        return [error_check(provider.name, tenant.slug, f"{provider.name}.health[{tenant.slug}]",
                            _Described(describe_error(e)), time.monotonic() - started)]
    took = time.monotonic() - started
    return [c if c.duration_s is not None else _with_duration(c, took) for c in checks]


class _Described(Exception):
    """An error already scrubbed and described for a report."""

    def __str__(self) -> str:
        return str(self.args[0])


def _with_duration(c: HealthCheck, seconds: float) -> HealthCheck:
    return HealthCheck(c.provider, c.tenant, c.name, c.ok, c.detail, c.status, c.sync, c.hint, seconds)


def tenant_health(tenant: Tenant, providers: Sequence[Provider], ctx: ProviderContext, http: Http, *,
                  timeout_s: float | None = None, pool: ThreadPoolExecutor | None = None,
                  active: bool = False) -> list[HealthCheck]:
    """The tenant's checks, provider by provider. With `timeout_s` (and a pool to run them in) a provider
    whose checks take longer reads unknown; its thread finishes in the background, its answer unused."""
    out: list[HealthCheck] = []
    for provider in providers:
        if not provider.applies_to(tenant):
            continue
        if tenant.status is Status.SUSPENDED:
            out.append(check(provider.name, tenant.slug, f"{provider.name}[{tenant.slug}]", Health.SUSPENDED,
                             "not checked: the tenant is suspended", duration_s=0.0))
            continue
        if timeout_s is None or pool is None:
            out.extend(_provider_checks(provider, tenant, ctx, http, active))
            continue
        started = time.monotonic()
        fut: Future[list[HealthCheck]] = pool.submit(_provider_checks, provider, tenant, ctx, http, active)
        try:
            out.extend(fut.result(timeout=timeout_s))
        except FutureTimeout:
            out.append(check(provider.name, tenant.slug, f"{provider.name}.health[{tenant.slug}]", Health.UNKNOWN,
                             f"no answer within {timeout_s:g} s",
                             f"{provider.name} is slow or unreachable: try again later or raise --timeout",
                             duration_s=time.monotonic() - started))
    return out


def to_rows(tenant: Tenant, checks: Sequence[HealthCheck]) -> list[Row]:
    rows = []
    for c in checks:
        health, hint = for_tenant_status(c.health, tenant.status.value, c.hint)
        rows.append(Row(tenant.slug, c.provider, c.name, health, c.sync, c.detail, hint,
                        c.duration_s or 0.0, tenant.status.value))
    return rows


def platform_rows(checks: Sequence[HealthCheck]) -> list[Row]:
    """Rows of platform-level checks (the Meta app's subscription): no tenant lifecycle to overlay."""
    return [Row(c.tenant, c.provider, c.name, c.health, c.sync, c.detail, c.hint, c.duration_s or 0.0, "active")
            for c in checks]


def run_health(tenants: Sequence[Tenant], providers: Sequence[Provider], ctx: ProviderContext, http: Http, *,
               workers: int, timeout_s: float | None = None, active: bool = False,
               progress: Progress = NO_PROGRESS) -> list[Row]:
    """Rows for every tenant, in the tenants' order. `timeout_s` bounds each provider's checks per tenant."""
    if not tenants:
        return []
    progress.start("health", len(tenants))
    n = max(1, min(workers, len(tenants)))
    # Provider calls run in their own pool so a tenant's thread can stop waiting for a stuck one.
    # Not a `with`: leaving one waits for every thread, a stuck call's too.
    inner = ThreadPoolExecutor(max_workers=n, thread_name_prefix="health-call")

    def one(t: Tenant) -> list[Row]:
        rows = to_rows(t, tenant_health(t, providers, ctx, http, timeout_s=timeout_s, pool=inner, active=active))
        unhealthy = sum(1 for r in rows if r.health is not Health.HEALTHY)
        progress.tenant_done(t.slug, f"{len(rows)} check(s), {unhealthy} not healthy")
        return rows

    try:
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="health") as outer:
            return [r for rs in outer.map(one, tenants) for r in rs]
    finally:
        inner.shutdown(wait=False, cancel_futures=True)


def all_ok(checks: Sequence[HealthCheck]) -> bool:
    return all(c.ok for c in checks)


# WhatsApp webhook fields that speak about the account or the number, and the events that need an admin.
_ALERT_FIELDS = {
    "account_update": None,  # every event (violations, bans, restrictions) is worth a look
    "account_alerts": None,
    "phone_number_quality_update": {"FLAGGED", "DOWNGRADE", "UNFLAGGED_DOWNGRADE"},
    "message_template_status_update": {"REJECTED", "DISABLED", "FLAGGED", "PAUSED"},
}


def whatsapp_account_alerts(bodies: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """slug → account-level alerts ("message_template_status_update: REJECTED") from accepted WhatsApp
    webhook bodies (Meta's `entry[].changes[]` shape, field and `value.event`). Pure; bad JSON is skipped."""
    import json

    out: dict[str, list[str]] = {}
    for slug, body in bodies:
        try:
            doc = json.loads(body)
        except ValueError:
            continue
        entries = doc.get("entry") if isinstance(doc, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            for ch in changes if isinstance(changes, list) else []:
                if not isinstance(ch, dict) or ch.get("field") not in _ALERT_FIELDS:
                    continue
                raw = ch.get("value")
                value: dict[str, object] = raw if isinstance(raw, dict) else {}
                event = str(value.get("event") or value.get("alert_type") or "")
                wanted = _ALERT_FIELDS[str(ch["field"])]
                if wanted is None or event.upper() in wanted:
                    out.setdefault(slug, []).append(f"{ch['field']}: {event or 'event'}")
    return out
