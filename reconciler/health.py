"""Run every provider's read-only health checks for many tenants; a crash becomes a failed check."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from reconciler.engine import describe_error
from reconciler.progress import NO_PROGRESS, Progress
from reconciler.providers.base import HealthCheck, Http, Provider, ProviderContext
from tenancy.model import Tenant


def tenant_health(tenant: Tenant, providers: Sequence[Provider], ctx: ProviderContext,
                  http: Http) -> list[HealthCheck]:
    out: list[HealthCheck] = []
    for provider in providers:
        if not provider.applies_to(tenant):
            continue
        try:
            out.extend(provider.health(tenant, ctx, http))
        except Exception as e:  # a provider's failure is that provider's failed check, not the run's
            out.append(HealthCheck(provider.name, tenant.slug, "health", False, describe_error(e)))
    return out


def run_health(tenants: Sequence[Tenant], providers: Sequence[Provider], ctx: ProviderContext, http: Http, *,
               workers: int, progress: Progress = NO_PROGRESS) -> list[HealthCheck]:
    if not tenants:
        return []
    progress.start("health", len(tenants))

    def one(t: Tenant) -> list[HealthCheck]:
        checks = tenant_health(t, providers, ctx, http)
        failed = sum(1 for c in checks if not c.ok)
        progress.tenant_done(t.slug, f"{len(checks)} check(s), {failed} failed")
        return checks

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tenants)))) as pool:
        results = pool.map(one, tenants)
        return [c for checks in results for c in checks]


def all_ok(checks: Sequence[HealthCheck]) -> bool:
    return all(c.ok for c in checks)
