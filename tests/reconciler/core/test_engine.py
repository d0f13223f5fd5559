"""The engine: tenants in parallel; a change that fails stops only what depends on it; a lost answer is
read back before going on; deletions revoking access run first; the report is exact."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from reconciler.config import ReconcileConfig
from reconciler.diff import diff
from reconciler.engine import Outcome, apply_plan, make_context, make_plan
from reconciler.errors import AnswerLost, InvalidRequest, TemporaryError
from reconciler.model import Action, Change, Resource
from reconciler.providers.base import ApplyResult, HealthCheck, Http, ProviderContext
from tenancy.model import Tenant

TENANTS = [Tenant(slug=s, display_name=s) for s in ("a", "b", "c")]


class Fake:
    """A stateful fake provider. Wants x1..x3 per tenant (and `gone` deleted); tenant `c` cannot be
    observed. `fail` maps an address to the error its write raises; `lose` maps an address to how many
    answers to lose, and whether the write happens before its answer is lost (`after`)."""

    name = "fake"

    def __init__(self, *, fail: dict[str, Exception] | None = None,
                 lose: dict[str, tuple[int, bool]] | None = None,
                 deps: dict[str, str] | None = None) -> None:
        self.fail = fail or {}
        self.lose = dict(lose or {})
        self.deps = deps or {}
        self.live: dict[str, set[str]] = {t.slug: {"gone"} for t in TENANTS}
        self.order: list[str] = []

    def applies_to(self, tenant: Tenant) -> bool:
        return True

    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]:
        return [Resource("fake", "thing", tenant.slug, f"x{i}") for i in (1, 2, 3)]

    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]:
        if tenant.slug == "c":
            raise TemporaryError("fake", "down")
        return [Resource("fake", "thing", tenant.slug, n) for n in sorted(self.live[tenant.slug])]

    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        return diff(self.desired(tenant, ctx), live)

    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        self.order.append(change.address)
        if change.address in self.fail:
            raise self.fail[change.address]
        left, after = self.lose.get(change.address, (0, False))
        if left and not after:
            self.lose[change.address] = (left - 1, after)
            raise AnswerLost("fake", "no answer (ReadTimeout)")
        name = change.address.split("/")[1].rstrip("]")
        if change.action is Action.DELETE:
            self.live[tenant.slug].discard(name)
        else:
            self.live[tenant.slug].add(name)
        if left:
            self.lose[change.address] = (left - 1, after)
            raise AnswerLost("fake", "no answer (ReadTimeout)")
        return ApplyResult(change, write_back={("fake", "secret"): "s3cret-value"} if tenant.slug == "a"
                           and change.address.endswith("x1]") else {})

    def depends_on(self, change: Change, earlier: Change) -> bool:
        return self.deps.get(change.address) == earlier.address

    def revokes_access(self, change: Change) -> bool:
        return change.action is Action.DELETE

    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        return []


def _run(fake: Fake, config: ReconcileConfig) -> dict[str, Outcome]:
    ctx = make_context(config)
    plan = make_plan(TENANTS, [fake], ctx, http=None, workers=3, sandbox=False)  # type: ignore[arg-type]
    report = apply_plan(plan, {t.slug: t for t in TENANTS}, {"fake": fake}, ctx, None,  # type: ignore[arg-type]
                        workers=3, write_back=lambda slug, path, value: f"{path} in {slug}.yaml")
    return {r.change.address: r.outcome for r in report.results}


def test_a_conflict_fails_only_its_change_and_what_depends_on_it(config: ReconcileConfig) -> None:
    fake = Fake(fail={"fake.thing[b/x2]": InvalidRequest("fake", "conflict", status=409)},
                deps={"fake.thing[b/x3]": "fake.thing[b/x2]"})
    outcome = _run(fake, config)
    assert outcome["fake.thing[b/x2]"] is Outcome.FAILED
    assert outcome["fake.thing[b/x3]"] is Outcome.NOT_ATTEMPTED  # declared dependent
    assert outcome["fake.thing[b/x1]"] is outcome["fake.thing[b/gone]"] is Outcome.APPLIED
    assert all(o is Outcome.APPLIED for a, o in outcome.items() if "[a/" in a)


def test_without_a_dependency_the_tenants_other_changes_still_run(config: ReconcileConfig) -> None:
    fake = Fake(fail={"fake.thing[b/x1]": InvalidRequest("fake", "conflict", status=409)})
    outcome = _run(fake, config)
    assert outcome["fake.thing[b/x1]"] is Outcome.FAILED
    assert outcome["fake.thing[b/x2]"] is outcome["fake.thing[b/x3]"] is Outcome.APPLIED


def test_deletions_that_revoke_access_run_first(config: ReconcileConfig) -> None:
    fake = Fake()
    _run(fake, config)
    assert next(a for a in fake.order if "[a/" in a) == "fake.thing[a/gone]"


@pytest.mark.parametrize(("lose", "expected"), [
    ((1, True), Outcome.CONFIRMED),  # applied, answer lost: the read-back confirms it
    ((1, False), Outcome.APPLIED),  # not applied, answer lost: read back, sent again, answered
    ((9, False), Outcome.NOT_APPLIED),  # never applied: after the bounded retries, "not applied"
])
def test_a_lost_answer_is_read_back_before_going_on(config: ReconcileConfig, lose: tuple[int, bool],
                                                     expected: Outcome) -> None:
    fake = Fake(lose={"fake.thing[a/x2]": lose})
    outcome = _run(fake, config)
    assert outcome["fake.thing[a/x2]"] is expected
    assert ("x2" in fake.live["a"]) == (expected is not Outcome.NOT_APPLIED)
    writes = [a for a in fake.order if a == "fake.thing[a/x2]"]
    assert len(writes) == {Outcome.CONFIRMED: 1, Outcome.APPLIED: 2, Outcome.NOT_APPLIED: 5}[expected]
    assert outcome["fake.thing[a/x3]"] is Outcome.APPLIED


def test_a_read_back_that_cannot_tell_says_unknown_and_what_to_check(config: ReconcileConfig) -> None:
    fake = Fake(lose={"fake.thing[a/x2]": (1, True)})
    ctx = make_context(config)
    plan = make_plan(TENANTS, [fake], ctx, http=None, workers=3, sandbox=False)  # type: ignore[arg-type]
    fake.observe = lambda *a: (_ for _ in ()).throw(TemporaryError("fake", "down"))  # type: ignore[method-assign]
    report = apply_plan(plan, {t.slug: t for t in TENANTS}, {"fake": fake}, ctx, None,  # type: ignore[arg-type]
                        workers=3, write_back=lambda slug, path, value: "x")
    r = next(r for r in report.results if r.change.address == "fake.thing[a/x2]")
    assert r.outcome is Outcome.UNKNOWN and r.error is not None
    assert "check fake.thing[a/x2]" in r.error and "tenantctl plan" in r.error
    assert not report.ok


def test_an_unobserved_provider_lists_the_changes_it_hides(config: ReconcileConfig) -> None:
    fake = Fake()
    ctx = make_context(config)
    plan = make_plan(TENANTS, [fake], ctx, http=None, workers=3, sandbox=False)  # type: ignore[arg-type]
    report = apply_plan(plan, {t.slug: t for t in TENANTS}, {"fake": fake}, ctx, None,  # type: ignore[arg-type]
                        workers=3, write_back=lambda slug, path, value: "x")
    (u,) = report.unobserved
    assert (u.tenant, u.hidden) == ("c", ("fake.thing[c/x1]", "fake.thing[c/x2]", "fake.thing[c/x3]"))
    assert report.counts()["unobserved"] == 1 and not report.ok
