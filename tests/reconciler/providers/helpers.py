"""Shared builders for the provider tests: a tenant, its sandbox world, a context, an apply loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.model import Action, Change
from reconciler.providers.base import ApplyResult, Http, Provider, ProviderContext
from sandbox.spec_check import SpecCheckingTransport, SpecRegistry
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tenancy.model import Tenant
from tests.reconciler.conftest import SimpleHttp

SLUG = "acme"
DOMAIN = "ops.example.com"
META_TOKEN = "EAAmetatokenacme"
WABA = "102290129340398"
PHONE = "106540352242922"
VERIFY = "verify-acme-1"
NUKI_TOKEN = "nukitokenacme"
HOSP_TOKEN = "hosptokenacme"
HOSP_SECRET = "hosp-webhook-secret"
SANDBOX = "http://sandbox.local"

# 5 properties x 2 locks; Maria on every property, Tom on two.
LOCKS = {f"p{i}": [17010000 + 2 * i, 17010001 + 2 * i] for i in range(1, 6)}
HOSP_IDS = {f"p{i}": f"6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f7{i}" for i in range(1, 6)}
MARIA_CODE = "345678"
TOM_CODE = "456789"


def tenant_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "slug": SLUG, "display_name": "Acme Stays", "status": "active",
        "hospitable": {"api_key": HOSP_TOKEN, "webhook_secret": HOSP_SECRET},
        "whatsapp": {"phone_number_id": PHONE, "business_account_id": WABA, "verify_token": VERIFY,
                     "access_token": META_TOKEN},
        "nuki": {"api_token": NUKI_TOKEN},
        "properties": [{"key": key, "name": f"Property {key}", "hospitable_property_id": HOSP_IDS[key],
                        "nuki_lock_ids": LOCKS[key]} for key in LOCKS],
        "teammates": [
            {"key": "maria", "name": "Maria Lopez", "role": "cleaner", "properties": list(LOCKS),
             "access": {"keypad_code": MARIA_CODE, "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                        "from_time": "08:00", "until_time": "18:00"}},
            {"key": "tom", "name": "Tom Berg", "role": "maintenance", "properties": ["p1", "p2"],
             "access": {"keypad_code": TOM_CODE, "valid_from": "2025-01-01", "valid_until": "2036-12-31"}},
        ],
    }
    data.update(overrides)
    return data


def make_tenant(**overrides: Any) -> Tenant:
    return Tenant.model_validate(tenant_data(**overrides))


def with_nuki_secret(tenant: Tenant, secret: str) -> Tenant:
    data = tenant_data()
    data["nuki"] = {"api_token": NUKI_TOKEN, "webhook_secret": secret}
    return Tenant.model_validate(data)


def make_world() -> World:
    world = World()
    world.meta.add_waba(META_TOKEN, WABA, "Acme Rentals")
    world.meta.add_phone_number(WABA, "106540352242900", "+49 30 1111111")
    world.meta.add_phone_number(WABA, "106540352242901", "+49 30 1111112")
    world.meta.add_phone_number(WABA, PHONE, "+49 30 1234567")
    for locks in LOCKS.values():
        for lock in locks:
            world.nuki.add_smartlock(NUKI_TOKEN, lock, f"Lock {lock}")
    for key, pid in HOSP_IDS.items():
        world.hospitable.add_property(HOSP_TOKEN, pid, f"Hospitable {key}")
    return world


def make_ctx(**kwargs: Any) -> ProviderContext:
    return ProviderContext(domain=DOMAIN, base_urls={
        "whatsapp": f"{SANDBOX}/meta/v23.0", "nuki": f"{SANDBOX}/nuki",
        "hospitable": f"{SANDBOX}/hospitable/v2", "beds24": f"{SANDBOX}/beds24/v2"}, **kwargs)


SPECS = SpecRegistry()  # the vendored specs, loaded once per test process


def spec_checked_http(world: World) -> SimpleHttp:
    """HTTP to the sandbox where every exchange must conform to the provider's spec (else it raises)."""
    return SimpleHttp(SpecCheckingTransport(sandbox_transport(world), SPECS, strict=True,
                                            node_kind=world.meta.node_kind))


def plan_live(provider: Provider, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Change]:
    return provider.plan(tenant, ctx, provider.observe(tenant, ctx, http))


def apply_all(provider: Provider, tenant: Tenant, ctx: ProviderContext, changes: Sequence[Change],
              http: Http) -> list[ApplyResult]:
    return [provider.apply(tenant, ctx, c, http) for c in changes if c.is_write]


def actions(changes: Sequence[Change]) -> dict[str, Action]:
    return {c.address: c.action for c in changes}


def writes(changes: Sequence[Change]) -> list[Change]:
    return [c for c in changes if c.is_write]
