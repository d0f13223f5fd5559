"""Observe → plan → apply for many tenants at once, and the bookkeeping around it (locks, run records).

- Tenants run concurrently (a thread pool of `limits.tenant_workers`); the HTTP client bounds each
  provider's concurrency and rate. A tenant's providers run one after the other, so a tenant never has
  two writes in flight.
- One tenant's (or provider's) failure never stops the others. Within a tenant, the first failed change
  stops that tenant: its later changes are `not_attempted` (they may depend on it, e.g. a lock webhook
  before its codes), and the report says so. Running apply again picks up where it stopped.
- A provider bug (any exception) is caught like a provider error, scrubbed, and reported.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine

from reconciler.config import ReconcileConfig
from reconciler.diff import sort_changes
from reconciler.errors import ReconcileError
from reconciler.model import ACTION_ORDER, Action, Change
from reconciler.plan import Plan, ProviderPlan, live_digest
from reconciler.progress import NO_PROGRESS, Progress, count_summary
from reconciler.providers.base import Http, Provider, ProviderContext
from store import locks, runs, webhook_log
from store.errors import LockHeld
from tenancy.fingerprint import tenant_key
from tenancy.model import Tenant
from tenancy.redact import REDACTOR

log = logging.getLogger("reconciler.engine")

# (tenant slug, path inside the tenant file, value) → where it was written, for the summary.
WriteBack = Callable[[str, tuple[str | int, ...], str], str]


def actor() -> str:
    """Who runs this: `user@host`, recorded with every run."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def describe_error(exc: BaseException) -> str:
    """A one-line message for reports and the database, scrubbed of every known secret."""
    text = str(exc) if isinstance(exc, ReconcileError) else f"{type(exc).__name__}: {exc}"
    return REDACTOR.scrub(text)[:500]


def make_context(config: ReconcileConfig,
                 last_verified: Mapping[tuple[str, str], datetime] | None = None) -> ProviderContext:
    return ProviderContext(domain=config.domain, base_urls=config.base_urls,
                           last_verified_event=dict(last_verified or {}))


def _pool(workers: int, n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(workers, n)), thread_name_prefix="reconcile")


# Plan -------------------------------------------------------------------------------------------------
def plan_tenant(tenant: Tenant, providers: Sequence[Provider], ctx: ProviderContext, http: Http) -> list[
        ProviderPlan]:
    key = tenant_key(tenant)
    out: list[ProviderPlan] = []
    for provider in providers:
        if not provider.applies_to(tenant):
            continue
        try:
            live = provider.observe(tenant, ctx, http)
            changes = sort_changes(provider.plan(tenant, ctx, live))
        except Exception as e:  # one provider's failure is reported, never fatal to the others
            log.info("observe %s/%s failed: %s", tenant.slug, provider.name, describe_error(e))
            out.append(ProviderPlan(tenant.slug, provider.name, error=describe_error(e)))
            continue
        out.append(ProviderPlan(tenant.slug, provider.name, tuple(changes), live_digest(live, key),
                                sum(1 for r in live if r.owned)))
    return out


def make_plan(tenants: Sequence[Tenant], providers: Sequence[Provider], ctx: ProviderContext, http: Http, *,
              workers: int, sandbox: bool, progress: Progress = NO_PROGRESS) -> Plan:
    progress.start("plan", len(tenants))

    def one(t: Tenant) -> list[ProviderPlan]:
        items = plan_tenant(t, providers, ctx, http)
        progress.tenant_done(t.slug, _plan_summary(items))
        return items

    with _pool(workers, len(tenants)) as pool:
        per_tenant = list(pool.map(one, tenants))
    return Plan(items=tuple(i for items in per_tenant for i in items), sandbox=sandbox,
                keys={t.slug: tenant_key(t) for t in tenants})


def _plan_summary(items: Sequence[ProviderPlan]) -> str:
    """What a finished tenant's plan holds, for progress lines: "2 create, 1 update" / "no changes"."""
    changes = [c for i in items for c in i.changes]
    counts = {a.value: sum(1 for c in changes if c.action is a) for a in ACTION_ORDER if a is not Action.NOOP}
    counts["provider(s) not observed"] = sum(1 for i in items if i.error is not None)
    return count_summary(counts)


# Apply ------------------------------------------------------------------------------------------------
class Outcome(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"


@dataclass(frozen=True)
class ChangeResult:
    change: Change
    outcome: Outcome
    error: str | None = None
    detail: str = ""
    wrote_back: tuple[str, ...] = ()  # where secrets were stored, e.g. "nuki.webhook_secret in acme.yaml"


@dataclass(frozen=True)
class ProviderFailure:
    """A tenant/provider that could not even be observed: nothing of it was attempted."""

    tenant: str
    provider: str
    error: str


@dataclass(frozen=True)
class ApplyReport:
    results: tuple[ChangeResult, ...]
    unobserved: tuple[ProviderFailure, ...] = ()
    plan: Plan | None = field(default=None, compare=False, repr=False)

    def by(self, outcome: Outcome) -> list[ChangeResult]:
        return [r for r in self.results if r.outcome is outcome]

    @property
    def ok(self) -> bool:
        return not self.unobserved and all(r.outcome is Outcome.APPLIED for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {o.value: len(self.by(o)) for o in Outcome}
        out["unobserved"] = len(self.unobserved)
        return out


def apply_tenant(tenant: Tenant, changes: Sequence[Change], providers: Mapping[str, Provider],
                 ctx: ProviderContext, http: Http, *, write_back: WriteBack | None) -> list[ChangeResult]:
    results: list[ChangeResult] = []
    failed: ChangeResult | None = None
    for change in changes:
        if failed is not None:
            results.append(ChangeResult(change, Outcome.NOT_ATTEMPTED,
                                        f"not attempted: {failed.change.address} failed before it"))
            continue
        try:
            done = providers[change.provider].apply(tenant, ctx, change, http)
        except Exception as e:
            failed = ChangeResult(change, Outcome.FAILED, describe_error(e))
            results.append(failed)
            continue
        stored: list[str] = []
        for path, value in done.write_back.items():
            REDACTOR.add(value)  # before anything can print it
            if write_back is None:
                failed = ChangeResult(change, Outcome.FAILED, "applied, but a secret it returned could not "
                                      "be stored (no tenant file to write to)", done.detail)
                break
            try:
                stored.append(write_back(tenant.slug, path, value))
            except Exception as e:
                failed = ChangeResult(change, Outcome.FAILED, "applied, but storing the secret it returned "
                                      f"failed: {describe_error(e)}", done.detail)
                break
        if failed is not None:
            results.append(failed)
            continue
        results.append(ChangeResult(change, Outcome.APPLIED, None, done.detail, tuple(stored)))
    return results


def apply_plan(plan: Plan, tenants: Mapping[str, Tenant], providers: Mapping[str, Provider],
               ctx: ProviderContext, http: Http, *, workers: int,
               write_back: WriteBack | None = None, progress: Progress = NO_PROGRESS) -> ApplyReport:
    """Apply every write of `plan`; tenants concurrently, each tenant's changes in plan order."""
    per_tenant: dict[str, list[Change]] = {}
    for item in plan.items:
        if item.error is None:
            per_tenant.setdefault(item.tenant, []).extend(item.writes)
    jobs = [(slug, sort_changes(changes)) for slug, changes in sorted(per_tenant.items()) if changes]

    progress.start("apply", len(jobs))

    def run(job: tuple[str, list[Change]]) -> list[ChangeResult]:
        slug, changes = job
        results = apply_tenant(tenants[slug], changes, providers, ctx, http, write_back=write_back)
        progress.tenant_done(slug, count_summary({o.value: sum(1 for r in results if r.outcome is o)
                                                  for o in Outcome}))
        return results

    with _pool(workers, len(jobs)) as pool:
        results = [r for rs in pool.map(run, jobs) for r in rs]
    unobserved = tuple(ProviderFailure(i.tenant, i.provider, i.error)
                       for i in plan.items if i.error is not None)
    return ApplyReport(tuple(results), unobserved, plan)


# Locks, run records, webhook evidence ----------------------------------------------------------------
@contextlib.contextmanager
def tenant_locks(db: Engine, slugs: Sequence[str], holder: str) -> Iterator[None]:
    """Hold every tenant's lock for the block, or none: LockHeld names the holder of the first taken one."""
    taken: list[str] = []
    try:
        for slug in sorted(slugs):  # one order everywhere: two runs cannot deadlock each other
            locks.acquire(db, slug, holder)
            taken.append(slug)
        yield
    finally:
        for slug in taken:
            with contextlib.suppress(Exception):
                locks.release(db, slug, holder)


def last_verified(db: Engine, tenants: Sequence[Tenant], provider: str = "hospitable") -> dict[
        tuple[str, str], datetime]:
    out: dict[tuple[str, str], datetime] = {}
    for t in tenants:
        when = webhook_log.last_verified_event(db, t.slug, provider)
        if when is not None:
            out[(t.slug, provider)] = when if when.tzinfo else when.replace(tzinfo=UTC)
    return out


def record_plan(db: Engine, plan: Plan, who: str) -> int:
    run_id = runs.start_run(db, "plan", who, plan.tenants, plan.checksum)
    runs.record_changes(db, run_id, [
        runs.ChangeRecord(c.tenant, c.provider, c.address, c.action.value, "planned")
        for c in plan.changes if c.action is not Action.NOOP
    ] + [runs.ChangeRecord(i.tenant, i.provider, f"{i.provider}[{i.tenant}]", "observe", "failed", i.error)
         for i in plan.errors])
    status: runs.RunStatus = "failed" if plan.errors else ("succeeded" if plan.has_changes else "no_changes")
    runs.finish_run(db, run_id, status, {"counts": plan.counts()})
    return run_id


def start_apply(db: Engine, who: str, tenants: Sequence[str], checksum: str | None) -> int:
    return runs.start_run(db, "apply", who, list(tenants), checksum)


def finish_apply(db: Engine, run_id: int, report: ApplyReport | None, *, error: str | None = None) -> None:
    if report is None:
        runs.finish_run(db, run_id, "failed", {"error": REDACTOR.scrub(error or "")})
        return
    runs.record_changes(db, run_id, [
        runs.ChangeRecord(r.change.tenant, r.change.provider, r.change.address, r.change.action.value,
                          r.outcome.value, r.error)
        for r in report.results
    ] + [runs.ChangeRecord(u.tenant, u.provider, f"{u.provider}[{u.tenant}]", "observe", "failed", u.error)
         for u in report.unobserved])
    applied = bool(report.by(Outcome.APPLIED))
    status: runs.RunStatus = "succeeded" if report.ok else ("partial" if applied else "failed")
    if report.ok and not report.results:
        status = "no_changes"
    summary: dict[str, Any] = {"counts": report.counts()}
    runs.finish_run(db, run_id, status, summary)


__all__ = [
    "ApplyReport",
    "ChangeResult",
    "LockHeld",
    "Outcome",
    "ProviderFailure",
    "WriteBack",
    "actor",
    "apply_plan",
    "apply_tenant",
    "finish_apply",
    "last_verified",
    "make_context",
    "make_plan",
    "plan_tenant",
    "record_plan",
    "start_apply",
    "tenant_locks",
]
