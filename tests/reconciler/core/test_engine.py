"""The engine: tenants in parallel, a failure stops only its own tenant, the report is exact."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.config import ReconcileConfig
from reconciler.diff import diff
from reconciler.engine import Outcome, apply_plan, make_context, make_plan
from reconciler.errors import TemporaryError
from reconciler.model import Change, Resource
from reconciler.providers.base import ApplyResult, HealthCheck, Http, ProviderContext
from tenancy.model import Tenant

TENANTS = [Tenant(slug=s, display_name=s) for s in ("a", "b", "c")]


class Fake:
    """Wants resources x1..x3 per tenant; tenant `b`'s x2 fails; tenant `c` cannot be observed."""

    name = "fake"

    def __init__(self) -> None:
        self.applied: list[str] = []

    def applies_to(self, tenant: Tenant) -> bool:
        return True

    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]:
        return [Resource("fake", "thing", tenant.slug, f"x{i}", {"v": i}) for i in (1, 2, 3)]

    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]:
        if tenant.slug == "c":
            raise TemporaryError("fake", "down")
        return []

    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        return diff(self.desired(tenant, ctx), live)

    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        if change.address == "fake.thing[b/x2]":
            raise TemporaryError("fake", "boom", status=503)
        self.applied.append(change.address)
        return ApplyResult(change, write_back={("fake", "secret"): "s3cret-value"} if tenant.slug == "a"
                           and change.address.endswith("x1]") else {})

    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        return []


def test_one_tenants_failure_stops_only_its_later_changes(config: ReconcileConfig) -> None:
    fake = Fake()
    ctx = make_context(config)
    plan = make_plan(TENANTS, [fake], ctx, http=None, workers=3, sandbox=False)  # type: ignore[arg-type]
    assert [(i.tenant, bool(i.error)) for i in plan.items] == [("a", False), ("b", False), ("c", True)]
    stored: list[tuple[str, tuple[str | int, ...]]] = []

    def write_back(slug: str, path: tuple[str | int, ...], value: str) -> str:
        stored.append((slug, path))
        return f"{path} in {slug}.yaml"

    report = apply_plan(plan, {t.slug: t for t in TENANTS}, {"fake": fake}, ctx, None,  # type: ignore[arg-type]
                        workers=3, write_back=write_back)
    outcome = {r.change.address: r.outcome for r in report.results}
    assert outcome == {
        "fake.thing[a/x1]": Outcome.APPLIED, "fake.thing[a/x2]": Outcome.APPLIED,
        "fake.thing[a/x3]": Outcome.APPLIED,
        "fake.thing[b/x1]": Outcome.APPLIED, "fake.thing[b/x2]": Outcome.FAILED,
        "fake.thing[b/x3]": Outcome.NOT_ATTEMPTED,
    }
    assert sorted(fake.applied) == sorted(a for a, o in outcome.items() if o is Outcome.APPLIED)
    assert [(u.tenant, u.provider) for u in report.unobserved] == [("c", "fake")]
    assert not report.ok
    assert stored == [("a", ("fake", "secret"))]
    assert report.counts() == {"applied": 4, "failed": 1, "not_attempted": 1, "unobserved": 1}
