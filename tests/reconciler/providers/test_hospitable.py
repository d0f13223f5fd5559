"""Hospitable: the key works, properties map both ways, the webhook is a manual step until one arrives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.errors import AuthError, InvalidRequest
from reconciler.model import Action, Resource
from reconciler.providers.hospitable import HospitableProvider
from sandbox.spec_check import SpecCheckingTransport
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.reconciler.conftest import SimpleHttp
from tests.reconciler.providers.helpers import (
    HOSP_IDS,
    HOSP_SECRET,
    HOSP_TOKEN,
    SLUG,
    actions,
    make_ctx,
    make_tenant,
    make_world,
    plan_live,
    spec_checked_http,
    writes,
)

URL = "https://ops.example.com/api/webhooks/hospitable/t/acme"
HOOK = f"hospitable.webhook[{SLUG}]"
provider = HospitableProvider()


def http_for(world: World) -> SimpleHttp:
    return spec_checked_http(world)  # every call of every test conforms to the vendored spec


def test_a_mapped_account_plans_only_the_manual_webhook_step_and_speaks_the_spec() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    checking = SpecCheckingTransport(sandbox_transport(world))
    plan = plan_live(provider, tenant, ctx, SimpleHttp(checking))
    assert writes(plan) == []
    [manual] = [c for c in plan if c.action is Action.MANUAL]
    assert manual.address == HOOK and not manual.done
    assert URL in manual.note and "reservation.created" in manual.note and "message.created" in manual.note
    assert HOSP_SECRET not in manual.note and "fingerprint #" in manual.note
    assert {c.action for c in plan if c.kind == "property"} == {Action.NOOP}
    assert len(world.calls.calls("hospitable")) == 1  # the whole cost of a no-op plan
    assert checking.violations == []


def test_the_manual_step_is_done_once_a_verified_webhook_arrived() -> None:
    world, tenant = make_world(), make_tenant()
    ctx = make_ctx(last_verified_event={(SLUG, "hospitable"): datetime(2026, 1, 1, tzinfo=UTC)})
    [manual] = [c for c in plan_live(provider, tenant, ctx, http_for(world)) if c.action is Action.MANUAL]
    assert manual.done


def test_a_missing_property_is_an_error_and_an_unmapped_one_is_info() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    del world.hospitable.accounts[HOSP_TOKEN].properties[HOSP_IDS["p2"]]
    world.hospitable.add_property(HOSP_TOKEN, "0f0f0f0f-0000-4000-8000-000000000001", "Beach House")
    plan = plan_live(provider, tenant, ctx, http_for(world))
    reports = {c.address: c.severity for c in plan if c.action is Action.REPORT}
    assert reports[f"hospitable.property[{SLUG}/{HOSP_IDS['p2']}]"] == "error"
    assert reports[f"hospitable.property[{SLUG}/0f0f0f0f-0000-4000-8000-000000000001]"] == "info"


def test_every_page_is_read_with_urls_we_build() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    for i in range(230):
        world.hospitable.add_property(HOSP_TOKEN, f"00000000-0000-4000-8000-{i:012d}", f"Other {i}")
    plan = plan_live(provider, tenant, ctx, http_for(world))
    calls = world.calls.calls("hospitable")
    assert len(calls) == 3  # 235 properties, 100 a page
    assert all(c.path == "/hospitable/v2/properties" for c in calls)
    assert len([c for c in plan if c.action is Action.REPORT]) == 230
    ours = {f"hospitable.property[{SLUG}/{pid}]" for pid in HOSP_IDS.values()}
    assert {c.action for c in plan if c.address in ours} == {Action.NOOP}


def test_a_wrong_key_is_an_auth_error_and_a_failed_health_check() -> None:
    world, ctx = make_world(), make_ctx()
    tenant = make_tenant(hospitable={"api_key": "nope", "webhook_secret": "x"})
    with pytest.raises(AuthError):
        provider.observe(tenant, ctx, http_for(world))
    [check] = provider.health(tenant, ctx, http_for(world))
    assert not check.ok


def test_health_names_each_property_and_the_webhook() -> None:
    checks = provider.health(make_tenant(), make_ctx(), http_for(make_world()))
    assert all(c.ok for c in checks if c.name != HOOK)
    assert [c.ok for c in checks if c.name == HOOK] == [False]
    assert len([c for c in checks if c.name.startswith("hospitable.property")]) == 5


def test_plan_is_pure_and_apply_refuses() -> None:
    tenant, ctx = make_tenant(), make_ctx()
    live = [Resource("hospitable", "property", SLUG, pid, {"name": "x"}) for pid in HOSP_IDS.values()]
    plan = provider.plan(tenant, ctx, live)
    assert actions(plan)[HOOK] is Action.MANUAL
    assert {a for addr, a in actions(plan).items() if addr != HOOK} == {Action.NOOP}
    with pytest.raises(InvalidRequest):
        provider.apply(tenant, ctx, plan[0], SimpleHttp(sandbox_transport(make_world())))
