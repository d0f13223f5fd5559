"""2N: the host is the device the file names, and its directory holds exactly our teammates' PINs."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from reconciler.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PermanentError,
    PermissionDenied,
    ProviderError,
)
from reconciler.model import Action, Change, Resource
from reconciler.providers.base import ProviderContext
from reconciler.providers.twon import (
    OWNER,
    TwoNProvider,
    device_error,
    from_device_time,
    live_user_attrs,
    to_device_time,
    user_body,
    user_uuid,
)
from sandbox.transport import sandbox_transport
from sandbox.twon import DirUser
from sandbox.world import World
from tenancy.model import Tenant
from tests.reconciler.conftest import NoHttp, SimpleHttp
from tests.reconciler.providers.helpers import (
    DOMAIN,
    SANDBOX,
    SLUG,
    actions,
    apply_all,
    plan_live,
    tenant_data,
    writes,
)

PASSWORD = "2n-admin-secret"
DEVICES = {"p1": "54-0000-0001", "p2": "54-0000-0002"}
MARIA_PIN = "20481632"
TOM_PIN = "55667788"
PINS = (MARIA_PIN, TOM_PIN)


def intercom_tenant(**changes: Any) -> Tenant:
    """Two properties with intercoms (p3 has none); Maria may enter all, Tom only p1, Lea has no PIN."""
    data = tenant_data()
    for prop in data["properties"]:
        if prop["key"] in DEVICES:
            prop["intercom"] = {"host": f"intercom-{prop['key']}.acme.example", "device_id": DEVICES[prop["key"]],
                                "username": "admin", "password": PASSWORD}
    data["teammates"] = [
        {"key": "maria", "name": "Maria Lopez", "role": "cleaner", "properties": ["p1", "p2", "p3"],
         "access": {"intercom_pin": MARIA_PIN}},
        {"key": "tom", "name": "Tom Berg", "role": "maintenance", "properties": ["p1"],
         "access": {"intercom_pin": TOM_PIN, "valid_from": "2025-01-01", "valid_until": "2036-12-31"}},
        {"key": "lea", "name": "Lea Kim", "role": "host", "properties": ["p1", "p2"]},
    ]
    data.update(changes)
    return Tenant.model_validate(data)


def make_ctx() -> ProviderContext:
    return ProviderContext(domain=DOMAIN, base_urls={"twon": f"{SANDBOX}/2n/{{device_id}}"})


def make_world(password: str = PASSWORD) -> World:
    world = World()
    for device_id in DEVICES.values():
        world.twon.add_device(device_id, "admin", password, serial_number=device_id)
    return world


def http_for(world: World) -> SimpleHttp:
    return SimpleHttp(sandbox_transport(world))


def users(world: World, prop: str) -> dict[str, DirUser]:
    return {u.name: u for u in world.twon.devices[DEVICES[prop]].users.values()}


def user_addr(prop: str, who: str) -> str:
    return f"twon.dir_user[{SLUG}/{prop}/{who}]"


def converged(world: World, tenant: Tenant | None = None) -> tuple[TwoNProvider, Tenant, SimpleHttp]:
    provider, tenant, http = TwoNProvider(), tenant or intercom_tenant(), http_for(world)
    apply_all(provider, tenant, make_ctx(), plan_live(provider, tenant, make_ctx(), http), http)
    return provider, tenant, http


def assert_no_pin(changes: list[Change]) -> None:
    for c in changes:
        for text in (repr(c), str(c), c.note):
            assert not any(pin in text for pin in (*PINS, PASSWORD)), c.address


def test_converges_with_one_query_per_device_and_no_write_when_in_sync() -> None:
    world, tenant, ctx = make_world(), intercom_tenant(), make_ctx()
    provider, http = TwoNProvider(), http_for(world)

    first = plan_live(provider, tenant, ctx, http)
    assert {a: x for a, x in actions(first).items() if x is not Action.NOOP} == {
        user_addr("p1", "maria"): Action.CREATE, user_addr("p2", "maria"): Action.CREATE,
        user_addr("p1", "tom"): Action.CREATE}
    assert actions(first)[f"twon.device[{SLUG}/p1]"] is Action.NOOP
    assert_no_pin(first)

    world.calls.clear()
    apply_all(provider, tenant, ctx, first, http)
    assert [c.method for c in world.calls.calls("2n")] == ["PUT"] * 3  # one write per change, nonce reused
    tom = users(world, "p1")["Tom Berg"]
    assert (tom.uuid, tom.owner, tom.access.pin, tom.access.validFrom, tom.access.validTo) == (
        user_uuid(SLUG, "p1", "tom"), OWNER, TOM_PIN, "1735689600", "2114380799")  # 2025-01-01Z, 2036-12-31Z
    assert users(world, "p2")["Maria Lopez"].access.validTo == "0"

    world.calls.clear()
    second = plan_live(provider, tenant, ctx, http)
    assert {c.action for c in second} == {Action.NOOP}
    apply_all(provider, tenant, ctx, second, http)
    assert world.calls.writes() == []
    assert [(c.method, c.path.split("/api/")[1]) for c in world.calls.calls("2n")] == \
        [("GET", "system/info"), ("POST", "dir/query")] * 2  # per device, a no-op plan


def test_a_changed_pin_is_an_update_of_that_user_alone_and_never_shown() -> None:
    world = make_world()
    provider, _, http = converged(world)
    new_pin = "99887766"
    maria, tom, lea = tenant_teammates(intercom_tenant())
    tom["access"]["intercom_pin"] = new_pin
    rotated = intercom_tenant(teammates=[maria, tom, lea])
    plan = plan_live(provider, rotated, make_ctx(), http)
    [change] = writes(plan)
    assert (change.action, change.address, [f.field for f in change.fields]) == \
        (Action.UPDATE, user_addr("p1", "tom"), ["pin"])
    assert change.fields[0].sensitive
    assert all(new_pin not in text for c in plan for text in (repr(c), str(c)))
    before = users(world, "p1")["Tom Berg"].uuid
    apply_all(provider, rotated, make_ctx(), plan, http)
    after = users(world, "p1")["Tom Berg"]
    assert (after.uuid, after.access.pin) == (before, new_pin)
    assert writes(plan_live(provider, rotated, make_ctx(), http)) == []


def test_users_of_other_owners_are_never_touched_nor_listed() -> None:
    world = make_world()
    world.twon.add_user(DEVICES["p1"], "Front desk", owner="My2N", pin="4321")
    world.twon.add_user(DEVICES["p1"], "Janitor (by hand)", pin="1111")
    provider, tenant, http = converged(world)
    plan = plan_live(provider, tenant, make_ctx(), http)
    assert writes(plan) == []
    assert not [c for c in plan if "Front desk" in repr(c.live) or "Janitor" in repr(c.live)]
    assert {"Front desk", "Janitor (by hand)"} <= set(users(world, "p1"))


def test_a_managed_user_of_a_removed_teammate_is_deleted_and_nothing_else() -> None:
    world = make_world()
    world.twon.add_user(DEVICES["p1"], "Front desk", owner="My2N", pin="4321")
    provider, tenant, http = converged(world)
    without_tom = intercom_tenant(teammates=[t for t in tenant_teammates(tenant) if t["key"] != "tom"])
    plan = plan_live(provider, without_tom, make_ctx(), http)
    [change] = writes(plan)
    assert (change.action, change.address) == (Action.DELETE, user_addr("p1", f"~{user_uuid(SLUG, 'p1', 'tom')}"))
    world.calls.clear()
    apply_all(provider, without_tom, make_ctx(), plan, http)
    assert [c.path.split("/api/")[1] for c in world.calls.writes("2n")] == ["dir/delete"]
    assert set(users(world, "p1")) == {"Maria Lopez", "Front desk"}


def test_a_managed_user_the_file_never_knew_is_deleted() -> None:
    world = make_world()
    stray = world.twon.add_user(DEVICES["p2"], "Old helper", owner=OWNER, pin="777777")
    provider, tenant, http = converged(world)
    assert "Old helper" not in users(world, "p2")
    assert writes(plan_live(provider, tenant, make_ctx(), http)) == []
    assert stray.uuid not in world.twon.devices[DEVICES["p2"]].users


def test_a_hand_made_user_holding_a_teammates_pin_blocks_the_create_with_an_error() -> None:
    world = make_world()
    world.twon.add_user(DEVICES["p2"], "Spare", owner="", pin=MARIA_PIN)
    plan = plan_live(TwoNProvider(), intercom_tenant(), make_ctx(), http_for(world))
    [report] = [c for c in plan if c.address == user_addr("p2", "maria")]
    assert report.action is Action.REPORT
    assert report.severity == "error" and "'Spare'" in report.note
    assert actions(plan)[user_addr("p1", "maria")] is Action.CREATE


def test_a_host_that_answers_with_another_serial_is_an_error_and_its_directory_is_left_alone() -> None:
    world = make_world()
    world.twon.devices[DEVICES["p2"]].serial_number = "54-9999-9999"
    world.calls.clear()
    plan = plan_live(TwoNProvider(), intercom_tenant(), make_ctx(), http_for(world))
    [report] = [c for c in plan if c.address == f"twon.device[{SLUG}/p2]"]
    assert report.action is Action.REPORT
    assert report.severity == "error" and "another device" in report.note and "54-9999-9999" in report.note
    assert not [c for c in plan if c.address.startswith(f"twon.dir_user[{SLUG}/p2/")]
    assert not [c for c in world.calls.calls("2n") if c.path.startswith(f"/2n/{DEVICES['p2']}/api/dir")]


def test_a_wrong_password_is_an_auth_error_and_a_failed_health_check() -> None:
    world = make_world(password="another-password")
    provider, tenant, http = TwoNProvider(), intercom_tenant(), http_for(world)
    with pytest.raises(AuthError) as caught:
        provider.observe(tenant, make_ctx(), http)
    assert PASSWORD not in f"{caught.value}{caught.value!r}"
    checks = provider.health(tenant, make_ctx(), http)
    assert [(c.name, c.ok) for c in checks] == [(f"twon.device[{SLUG}/p1]", False), (f"twon.device[{SLUG}/p2]", False)]
    assert all(PASSWORD not in c.detail for c in checks)


def test_health_says_the_device_answers_and_how_many_users_are_in_sync() -> None:
    world = make_world()
    provider, tenant, http = converged(world)
    checks = provider.health(tenant, make_ctx(), http)
    assert all(c.ok for c in checks)
    assert [c.detail for c in checks if c.name == f"twon.dir_users[{SLUG}/p1]"] == ["2/2 managed users in sync"]
    world.twon.devices[DEVICES["p1"]].users.clear()
    [drift] = [c for c in provider.health(tenant, make_ctx(), http) if c.name == f"twon.dir_users[{SLUG}/p1]"]
    assert (drift.ok, drift.detail) == (False, "0/2 managed users in sync; 2 pending")


def test_writes_are_sets_by_uuid_so_a_retried_or_raced_write_converges() -> None:
    world, tenant, ctx = make_world(), intercom_tenant(), make_ctx()
    provider, http = TwoNProvider(), http_for(world)
    plan = plan_live(provider, tenant, ctx, http)
    # The first answer of a create was lost: the entry exists when the create is sent again.
    world.twon.add_user(DEVICES["p1"], "Tom (half made)", owner=OWNER, user_uuid=user_uuid(SLUG, "p1", "tom"))
    # Someone removed a user between plan and apply of an update.
    apply_all(provider, tenant, ctx, plan, http)
    assert users(world, "p1")["Tom Berg"].access.pin == TOM_PIN
    update = next(c for c in plan if c.address == user_addr("p1", "maria"))
    world.twon.devices[DEVICES["p1"]].users.pop(user_uuid(SLUG, "p1", "maria"))
    provider.apply(tenant, ctx, replace(update, action=Action.UPDATE), http)
    assert users(world, "p1")["Maria Lopez"].access.pin == MARIA_PIN
    assert writes(plan_live(provider, tenant, ctx, http)) == []


def test_a_pin_the_device_rejects_is_an_invalid_request_that_does_not_echo_it() -> None:
    world = make_world()
    long_pin = "1234567890123456"  # the file allows 16 digits; this device takes at most 15
    tenant = intercom_tenant(teammates=[{"key": "max", "name": "Max", "role": "host", "properties": ["p1"],
                                         "access": {"intercom_pin": long_pin}}])
    provider, http = TwoNProvider(), http_for(world)
    [create] = writes(plan_live(provider, tenant, make_ctx(), http))
    with pytest.raises(InvalidRequest) as caught:
        provider.apply(tenant, make_ctx(), create, http)
    assert "users[0].access.pin" in str(caught.value)
    assert long_pin not in f"{caught.value}{caught.value!r}"


def test_weekdays_and_hours_the_intercom_cannot_enforce_are_reported() -> None:
    tenant = intercom_tenant(teammates=[{"key": "ana", "name": "Ana", "role": "cleaner", "properties": ["p1"],
                                         "access": {"intercom_pin": "3141592", "weekdays": ["mon", "tue"]}}])
    plan = TwoNProvider().plan(tenant, make_ctx(), [])
    [report] = [c for c in plan if c.kind == "schedule"]
    assert (report.address, report.severity) == (f"twon.schedule[{SLUG}/ana]", "info")


def test_plan_is_pure_and_works_from_live_resources_alone(no_http: NoHttp) -> None:
    tenant, ctx = intercom_tenant(), make_ctx()
    provider = TwoNProvider()
    desired = {r.address: r for r in provider.desired(tenant, ctx)}
    tom = desired[user_addr("p1", "tom")]
    live = [Resource("twon", "device", SLUG, p, {"serial": d}) for p, d in DEVICES.items()]
    live.append(Resource("twon", "dir_user", SLUG, "p1/tom",
                         {k: v for k, v in tom.attrs.items() if k != "pin"}, remote_id=tom.remote_id))
    plan = provider.plan(tenant, ctx, live)
    assert actions(plan)[user_addr("p1", "tom")] is Action.NOOP  # the PIN hidden: compared without it
    assert actions(plan)[user_addr("p2", "maria")] is Action.CREATE
    assert actions(provider.plan(tenant, ctx, []))[f"twon.device[{SLUG}/p1]"] is Action.REPORT
    assert_no_pin(plan)


@pytest.mark.parametrize(("code", "error"), [
    (9, AuthError), (8, AuthError), (10, PermissionDenied), (5, PermissionDenied), (11, InvalidRequest),
    (12, InvalidRequest), (14, NotFound), (99, PermanentError), (None, PermanentError),
])
def test_device_errors_map_by_code_without_echoing_secrets(code: int | None, error: type[ProviderError]) -> None:
    err = device_error("PUT /api/dir/create", {"code": code, "param": "users[0].access.pin",
                                               "description": f"bad value {MARIA_PIN}"}, [MARIA_PIN])
    assert type(err) is error
    assert MARIA_PIN not in f"{err}{err!r}"
    assert "users[0].access.pin" in str(err)


@pytest.mark.parametrize(("day", "end", "device"), [
    (None, False, "0"), (None, True, "0"), (date(2025, 1, 1), False, "1735689600"),
    (date(2025, 1, 1), True, "1735775999"),
])
def test_dates_map_to_the_devices_unix_times(day: date | None, end: bool, device: str) -> None:
    assert to_device_time(day, end=end) == device


@pytest.mark.parametrize("attrs", [
    {"name": "A", "valid_from": "2025-01-01T00:00:00+00:00[UTC]", "valid_until": "2026-12-31T23:59:59+00:00[UTC]"},
    {"name": "B", "valid_from": None, "valid_until": None},
])
def test_the_user_body_reads_back_as_the_same_attributes(attrs: dict[str, Any]) -> None:
    body = user_body("U", {**attrs, "pin": None})
    assert live_user_attrs(body) == {**attrs, "pin": None}
    assert from_device_time(body["access"]["validFrom"]) == (
        attrs["valid_from"].replace("+00:00[UTC]", "Z") if attrs["valid_from"] else None)


def tenant_teammates(tenant: Tenant) -> list[dict[str, Any]]:
    """The teammates as plain data with their secrets revealed, to build a changed tenant."""
    out = []
    for tm in tenant.teammates:
        data = tm.model_dump(mode="json", exclude_none=True)
        if tm.access is not None and tm.access.intercom_pin is not None:
            data["access"]["intercom_pin"] = tm.access.intercom_pin.get_secret_value()
        out.append(data)
    return out
