"""Beds24: read-only health checks; the plan never calls it (it charges credits)."""

from __future__ import annotations

from reconciler.providers.beds24 import Beds24Provider
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tenancy.model import Tenant
from tests.reconciler.conftest import SimpleHttp
from tests.reconciler.providers.helpers import SLUG, make_ctx, make_tenant

TOKEN = "beds24tokenacme"
provider = Beds24Provider()


def tenant_with(property_ids: list[int], token: str = TOKEN) -> Tenant:
    return make_tenant(beds24={"token": token, "property_ids": property_ids, "webhook_secret": "s"})


def test_health_checks_the_token_and_each_declared_property() -> None:
    world = World()
    world.beds24.add_property(TOKEN, 101, "Old Town")
    checks = provider.health(tenant_with([101, 202]), make_ctx(), SimpleHttp(sandbox_transport(world)))
    assert [(c.name, c.ok) for c in checks] == [
        ("beds24.token[acme]", True), (f"beds24.property[{SLUG}/101]", True), (f"beds24.property[{SLUG}/202]", False)]
    assert len(world.calls.calls("beds24")) == 1


def test_a_wrong_token_fails_health_and_the_plan_makes_no_call() -> None:
    world = World()
    world.beds24.add_property(TOKEN, 101, "Old Town")
    tenant = tenant_with([101], token="wrong")
    [check] = provider.health(tenant, make_ctx(), SimpleHttp(sandbox_transport(world)))
    assert not check.ok
    world.calls.clear()
    assert provider.plan(tenant, make_ctx(), provider.observe(tenant, make_ctx(), SimpleHttp(
        sandbox_transport(world)))) == []
    assert world.calls.calls() == []
