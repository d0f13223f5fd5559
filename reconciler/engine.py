"""Observe → plan → apply for many tenants at once, and the bookkeeping around it (locks, run records).

- Tenants run concurrently (a thread pool of `limits.tenant_workers`); the HTTP client bounds each
  provider's concurrency and rate. A tenant's providers run one after the other, so a tenant never has
  two writes in flight.
- One tenant's (or provider's) failure never stops the others. Within a tenant, a failed change (a 409,
  any permanent error) is that change's failure only: the tenant's other changes still run, except those
  that depend on it, which are `not_attempted`. A change depends on an earlier one of the same address,
  and on whatever its provider declares (`depends_on`, e.g. deleting a replaced Nuki webhook waits for
  its successor); Nuki keypad codes do not depend on the webhook. Running apply again picks up the rest.
- Deletions that revoke access (a provider's `revokes_access`: a former teammate's keypad code or
  intercom user) run first in a tenant's order, so a failure elsewhere never leaves a door open.
- A write whose answer was lost (`AnswerLost`: timeout or reset after sending, a 5xx on a write) is not a
  failure but an unknown outcome, resolved by reading the one resource back (the provider's `read_back`,
  else a fresh observe + plan of that provider): applied (confirmed by read-back); not applied (then it
  is sent again, a bounded number of times, since it is known not to have happened); or unknown, with
  what to check. Only then does the tenant go on.
- A provider that could not be observed lists the addresses whose changes its error hides.
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
from reconciler.errors import AnswerLost, OutcomeUnknown, ReconcileError
from reconciler.model import ACTION_ORDER, Action, Change
from reconciler.plan import Plan, ProviderPlan, live_digest
from reconciler.progress import NO_PROGRESS, Progress, count_summary
from reconciler.providers.base import ApplyResult, Http, Provider, ProviderContext
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
                 last_verified: Mapping[tuple[str, str], datetime] | None = None, *,
                 prune: bool = False) -> ProviderContext:
    return ProviderContext(domain=config.domain, base_urls=config.base_urls,
                           last_verified_event=dict(last_verified or {}), prune=prune)


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
            out.append(ProviderPlan(tenant.slug, provider.name, error=describe_error(e),
                                    hidden=_hidden(provider, tenant, ctx)))
            continue
        out.append(ProviderPlan(tenant.slug, provider.name, tuple(changes), live_digest(live, key),
                                sum(1 for r in live if r.owned)))
    return out


def _hidden(provider: Provider, tenant: Tenant, ctx: ProviderContext) -> tuple[str, ...]:
    """What an unobserved provider's changes would be about: the addresses the tenant file implies."""
    try:
        return tuple(sorted({r.address for r in provider.desired(tenant, ctx)}))
    except Exception:  # a provider bug here must not hide the observe error itself
        return ()


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
                keys={t.slug: tenant_key(t) for t in tenants}, prune=ctx.prune)


def _plan_summary(items: Sequence[ProviderPlan]) -> str:
    """What a finished tenant's plan holds, for progress lines: "2 create, 1 update" / "no changes"."""
    changes = [c for i in items for c in i.changes]
    counts = {a.value: sum(1 for c in changes if c.action is a) for a in ACTION_ORDER if a is not Action.NOOP}
    counts["provider(s) not observed"] = sum(1 for i in items if i.error is not None)
    return count_summary(counts)


# Apply ------------------------------------------------------------------------------------------------
class Outcome(StrEnum):
    APPLIED = "applied"
    CONFIRMED = "confirmed"  # the answer was lost; a read-back shows it applied
    NOT_APPLIED = "not_applied"  # the answer was lost; a read-back shows it did not happen (nor retries)
    UNKNOWN = "unknown"  # neither the answer nor a read-back tells: `error` says what to check
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"  # it depends on a change that did not succeed


DONE = frozenset({Outcome.APPLIED, Outcome.CONFIRMED})
# A write known not to have happened is sent again, at most this many times in all.
WRITE_ATTEMPTS = 5


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
    hidden: tuple[str, ...] = ()  # the addresses whose changes this hides


@dataclass(frozen=True)
class ApplyReport:
    results: tuple[ChangeResult, ...]
    unobserved: tuple[ProviderFailure, ...] = ()
    plan: Plan | None = field(default=None, compare=False, repr=False)

    def by(self, outcome: Outcome) -> list[ChangeResult]:
        return [r for r in self.results if r.outcome is outcome]

    @property
    def ok(self) -> bool:
        return not self.unobserved and all(r.outcome in DONE for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {o.value: len(self.by(o)) for o in Outcome}
        out["unobserved"] = len(self.unobserved)
        return out


def _revokes(providers: Mapping[str, Provider], change: Change) -> bool:
    hook = getattr(providers.get(change.provider), "revokes_access", None)
    return bool(hook(change)) if hook is not None else False


def tenant_order(changes: Sequence[Change], providers: Mapping[str, Provider]) -> list[Change]:
    """Plan order, except that deletions revoking access come first (a stable sort keeps the rest)."""
    return sorted(sort_changes(changes), key=lambda c: 0 if _revokes(providers, c) else 1)


def depends_on(change: Change, earlier: Change, providers: Mapping[str, Provider]) -> bool:
    """Whether `change` must wait for `earlier`: same address, or its provider says so."""
    if change.address == earlier.address:
        return True
    if change.provider != earlier.provider:
        return False
    hook = getattr(providers.get(change.provider), "depends_on", None)
    return bool(hook(change, earlier)) if hook is not None else False


def read_back(provider: Provider, tenant: Tenant, ctx: ProviderContext, change: Change,
              http: Http) -> bool | None:
    """Whether `change` is now in effect at the provider: True, False, or None (cannot tell).

    The provider's own `read_back(tenant, ctx, change, http)` when it has one (it knows how its writes
    become visible); otherwise a fresh observe + plan: no write left at the address means it happened,
    the same write still planned means it did not.
    """
    hook = getattr(provider, "read_back", None)
    try:
        if hook is not None:
            verdict: bool | None = hook(tenant, ctx, change, http)
            return verdict
        live = provider.observe(tenant, ctx, http)
        pending = [c for c in provider.plan(tenant, ctx, live) if c.address == change.address and c.is_write]
    except Exception as e:
        log.info("read-back of %s failed: %s", change.address, describe_error(e))
        return None
    if not pending:
        return True
    return False if any(c.action is change.action for c in pending) else None


def _check_hint(change: Change) -> str:
    return (f"check {change.address} at {change.provider} (its app or console), or run `tenantctl plan`: "
            "it shows whether the change is still to do")


def _apply_one(tenant: Tenant, change: Change, provider: Provider, ctx: ProviderContext, http: Http, *,
               write_back: WriteBack | None) -> ChangeResult:
    lost: list[str] = []
    for _ in range(WRITE_ATTEMPTS):
        try:
            done = provider.apply(tenant, ctx, change, http)
        except AnswerLost as e:
            lost.append(describe_error(e))
            verdict = read_back(provider, tenant, ctx, change, http)
            if verdict is True:
                return ChangeResult(change, Outcome.CONFIRMED, None,
                                    f"applied (confirmed by read-back after a lost answer: {lost[-1]})")
            if verdict is None:
                return ChangeResult(change, Outcome.UNKNOWN,
                                    f"unknown: the answer was lost ({lost[-1]}) and reading back could not tell "
                                    f"whether it happened; {_check_hint(change)}")
            continue  # known not to have happened: sending it again cannot duplicate it
        except OutcomeUnknown as e:
            return ChangeResult(change, Outcome.UNKNOWN, REDACTOR.scrub(f"unknown: {e}; {e.check}")[:500])
        except Exception as e:
            return ChangeResult(change, Outcome.FAILED, describe_error(e))
        return _stored(tenant, change, done, write_back, Outcome.APPLIED)
    return ChangeResult(change, Outcome.NOT_APPLIED,
                        f"not applied: {len(lost)} answer(s) lost and each read-back showed it had not "
                        f"happened (last: {lost[-1]})")


def _stored(tenant: Tenant, change: Change, done: ApplyResult, write_back: WriteBack | None,
            outcome: Outcome) -> ChangeResult:
    stored: list[str] = []
    for path, value in done.write_back.items():
        REDACTOR.add(value)  # before anything can print it
        if write_back is None:
            return ChangeResult(change, Outcome.FAILED, "applied, but a secret it returned could not be stored "
                                "(no tenant file to write to)", done.detail)
        try:
            stored.append(write_back(tenant.slug, path, value))
        except Exception as e:
            return ChangeResult(change, Outcome.FAILED, "applied, but storing the secret it returned failed: "
                                f"{describe_error(e)}", done.detail)
    return ChangeResult(change, outcome, None, done.detail, tuple(stored))


def apply_tenant(tenant: Tenant, changes: Sequence[Change], providers: Mapping[str, Provider],
                 ctx: ProviderContext, http: Http, *, write_back: WriteBack | None) -> list[ChangeResult]:
    """Apply one tenant's changes one after another (revoking deletions first); a change that did not
    succeed stops only the changes that depend on it."""
    results: list[ChangeResult] = []
    for change in tenant_order(changes, providers):
        blocker = next((r for r in results if r.outcome not in DONE
                        and depends_on(change, r.change, providers)), None)
        if blocker is not None:
            results.append(ChangeResult(change, Outcome.NOT_ATTEMPTED,
                                        f"not attempted: it depends on {blocker.change.action.value} "
                                        f"{blocker.change.address}, which did not succeed"))
            continue
        results.append(_apply_one(tenant, change, providers[change.provider], ctx, http,
                                  write_back=write_back))
    return results


def apply_plan(plan: Plan, tenants: Mapping[str, Tenant], providers: Mapping[str, Provider],
               ctx: ProviderContext, http: Http, *, workers: int,
               write_back: WriteBack | None = None, progress: Progress = NO_PROGRESS) -> ApplyReport:
    """Apply every write of `plan`; tenants concurrently, each tenant's changes in its order."""
    per_tenant: dict[str, list[Change]] = {}
    for item in plan.items:
        if item.error is None:
            per_tenant.setdefault(item.tenant, []).extend(item.writes)
    jobs = [(slug, changes) for slug, changes in sorted(per_tenant.items()) if changes]

    progress.start("apply", len(jobs))

    def run(job: tuple[str, list[Change]]) -> list[ChangeResult]:
        slug, changes = job
        results = apply_tenant(tenants[slug], changes, providers, ctx, http, write_back=write_back)
        progress.tenant_done(slug, count_summary({o.value: sum(1 for r in results if r.outcome is o)
                                                  for o in Outcome}))
        return results

    with _pool(workers, len(jobs)) as pool:
        results = [r for rs in pool.map(run, jobs) for r in rs]
    unobserved = tuple(ProviderFailure(i.tenant, i.provider, i.error, i.hidden)
                       for i in plan.items if i.error is not None)
    return ApplyReport(tuple(results), unobserved, plan)


def hidden_text(error: str, hidden: Sequence[str], limit: int = 10) -> str:
    """An observe error with the addresses it hides: `error; hides changes to: a, b (+3 more)`."""
    if not hidden:
        return error
    more = f" (+{len(hidden) - limit} more)" if len(hidden) > limit else ""
    return f"{error}; hides changes to: {', '.join(hidden[:limit])}{more}"


# Locks, run records, webhook evidence ----------------------------------------------------------------
@contextlib.contextmanager
def tenant_locks(db: Engine, slugs: Sequence[str], holder: str) -> Iterator[list[str]]:
    """Hold every tenant's lock for the block, or none: LockHeld names the holder of the first taken one.

    Yields one message per stale lock taken over from a holder that is provably gone."""
    taken: list[str] = []
    messages: list[str] = []
    try:
        for slug in sorted(slugs):  # one order everywhere: two runs cannot deadlock each other
            got = locks.acquire(db, slug, holder)
            taken.append(slug)
            if got.took_over is not None:
                messages.append(f"took over the lock of {slug} from {got.took_over}: that process is gone"
                                " (its run, if any, is marked aborted)")
        yield messages
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
    ] + [runs.ChangeRecord(i.tenant, i.provider, f"{i.provider}[{i.tenant}]", "observe", "failed",
                           hidden_text(i.error or "", i.hidden))
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
                          r.outcome.value, r.error or (r.detail if r.outcome is Outcome.CONFIRMED else None))
        for r in report.results
    ] + [runs.ChangeRecord(u.tenant, u.provider, f"{u.provider}[{u.tenant}]", "observe", "failed",
                           hidden_text(u.error, u.hidden))
         for u in report.unobserved])
    applied = any(r.outcome in DONE for r in report.results)
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
    "hidden_text",
    "last_verified",
    "make_context",
    "make_plan",
    "plan_tenant",
    "read_back",
    "record_plan",
    "start_apply",
    "tenant_locks",
    "tenant_order",
]
