"""Platform-level resources in a plan (one per platform, not per tenant): the Meta app's subscription.

They ride in the plan as items of the pseudo-tenant `(platform)` (reconciler.providers.meta_app.PLATFORM),
so plan output, plan files, checksums and stale-plan checks treat them like any other item. The engine
applies tenants' items; `apply_platform` applies these, and `merge_report` puts both in one report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reconciler.diff import sort_changes
from reconciler.engine import ApplyReport, ChangeResult, Outcome, ProviderFailure, describe_error
from reconciler.plan import Plan, ProviderPlan, live_digest
from reconciler.providers.base import Http, ProviderContext
from reconciler.providers.meta_app import PLATFORM, MetaAppSubscription


def plan_items(app: MetaAppSubscription, ctx: ProviderContext, http: Http) -> list[ProviderPlan]:
    """The platform's plan items; none when the feature is off (no app ID configured)."""
    if not app.enabled:
        return []
    try:
        live = app.observe(ctx, http)
        changes = sort_changes(app.plan(ctx, live))
    except Exception as e:  # reported like a tenant's provider that could not be observed
        return [ProviderPlan(PLATFORM, app.name, error=describe_error(e))]
    return [ProviderPlan(PLATFORM, app.name, tuple(changes), live_digest(live, b""), len(live))]


def with_platform(plan: Plan, items: Sequence[ProviderPlan]) -> Plan:
    return dataclasses.replace(plan, items=(*items, *plan.items))


def tenants_part(plan: Plan) -> Plan:
    """The plan without its platform items: what the per-tenant engine applies."""
    return dataclasses.replace(plan, items=tuple(i for i in plan.items if i.tenant != PLATFORM))


def apply_platform(plan: Plan, app: MetaAppSubscription, ctx: ProviderContext, http: Http) -> list[ChangeResult]:
    results: list[ChangeResult] = []
    for item in plan.items:
        if item.tenant != PLATFORM or item.error is not None:
            continue
        for change in item.writes:
            try:
                done = app.apply(ctx, change, http)
            except Exception as e:
                results.append(ChangeResult(change, Outcome.FAILED, describe_error(e)))
                continue
            results.append(ChangeResult(change, Outcome.APPLIED, None, done.detail))
    return results


def merge_report(report: ApplyReport, platform: Sequence[ChangeResult], plan: Plan) -> ApplyReport:
    unobserved = tuple(ProviderFailure(i.tenant, i.provider, i.error)
                       for i in plan.items if i.tenant == PLATFORM and i.error is not None)
    return ApplyReport((*platform, *report.results), (*unobserved, *report.unobserved), plan)
