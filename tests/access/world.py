"""A small tenant with Nuki locks and 2N intercoms in Bratislava, its sandbox world, and a converge loop.

Every request goes through SpecCheckingTransport (the repository's vendored specs); tests assert that no
exchange violated them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.model import Action, Change
from reconciler.plan import Plan, ProviderPlan
from reconciler.providers.base import Provider, ProviderContext
from reconciler.providers.nuki import NukiProvider
from reconciler.providers.twon import TwoNProvider
from sandbox.spec_check import SpecCheckingTransport, SpecRegistry
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tenancy.model import Tenant
from tests.reconciler.conftest import SimpleHttp

REPO = Path(__file__).resolve().parents[2]
SLUG = "acme"
NUKI_TOKEN = "nukitokenacme"
PASSWORD = "2n-admin-secret"
LOCKS = {"old-town": [17010001, 17010002], "river": [17010003]}
DEVICES = {"old-town": "54-0000-0001", "river": "54-0000-0002"}
MARIA = {"keypad_code": "345678", "intercom_pin": "20481632", "intercom_qr": "7340912658"}
TOM = {"keypad_code": "456789", "intercom_pin": "55667788"}
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def tenant(**overrides: Any) -> Tenant:
    data: dict[str, Any] = {
        "slug": SLUG, "display_name": "Acme Stays", "status": "active", "timezone": "Europe/Bratislava",
        "nuki": {"api_token": NUKI_TOKEN, "webhook_secret": "hook-secret"},
        "properties": [{"key": key, "name": f"Property {key}", "nuki_lock_ids": LOCKS[key],
                        "intercom": {"host": f"ic-{key}.acme.example", "device_id": DEVICES[key],
                                     "username": "admin", "password": PASSWORD}} for key in LOCKS],
        "teammates": [
            {"key": "maria", "name": "Maria Lopez", "role": "cleaner", "properties": ["old-town"],
             "access": {**MARIA, "weekdays": WEEKDAYS, "from_time": "08:00", "until_time": "18:00"}},
            {"key": "tom", "name": "Tom Berg", "role": "maintenance", "properties": ["old-town", "river"],
             "access": {**TOM, "valid_from": "2026-01-01", "valid_until": "2027-03-28"}},
        ],
    }
    data.update(overrides)
    return Tenant.model_validate(data)


def ctx() -> ProviderContext:
    return ProviderContext(domain="ops.example.com", base_urls={
        "nuki": "http://sandbox.local/nuki", "twon": "http://sandbox.local/2n/{device_id}"})


class Rig:
    """The sandbox world for `tenant()`, providers and a spec-checking client."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now
        self.world = World()
        for locks in LOCKS.values():
            for lock in locks:
                self.world.nuki.add_smartlock(NUKI_TOKEN, lock, f"Lock {lock}")
        for device in DEVICES.values():
            self.world.twon.add_device(device, "admin", PASSWORD, serial_number=device)
        self.checking = SpecCheckingTransport(sandbox_transport(self.world), SpecRegistry(REPO / "specs"))
        self.http = SimpleHttp(self.checking)
        clock = lambda: self.now  # noqa: E731  (moved by tests: expiry is a matter of time)
        self.providers: list[Provider] = [NukiProvider(readback_delays=(0.0,), now=clock), TwoNProvider(now=clock)]
        self.ctx = ctx()

    def plan(self, t: Tenant) -> Plan:
        items = []
        for p in self.providers:
            changes = [c for c in p.plan(t, self.ctx, p.observe(t, self.ctx, self.http))
                       if c.kind != "decentral_webhook"]  # the webhook is not what these tests are about
            items.append(ProviderPlan(t.slug, p.name, tuple(changes)))
        return Plan(tuple(items), sandbox=True)

    def apply(self, t: Tenant, plan: Plan) -> None:
        for item in plan.items:
            p = next(p for p in self.providers if p.name == item.provider)
            for c in item.changes:
                if c.is_write:
                    p.apply(t, self.ctx, c, self.http)

    def converge(self, t: Tenant) -> Plan:
        """plan → apply → the plan that follows (which must have no writes)."""
        first = self.plan(t)
        self.apply(t, first)
        return first

    def writes(self, t: Tenant) -> list[Change]:
        return self.plan(t).writes

    def keypad_codes(self, lock: int) -> dict[str, Any]:
        return {a.name: a for acc in self.world.nuki.accounts.values() for sl in acc.smartlocks.values()
                if sl.smartlock_id == lock for a in sl.auths.values()}

    def users(self, prop: str) -> dict[str, Any]:
        return {u.name: u for u in self.world.twon.devices[DEVICES[prop]].users.values()}


def actions(changes: Sequence[Change]) -> dict[str, Action]:
    return {c.address: c.action for c in changes if c.action is not Action.NOOP}
