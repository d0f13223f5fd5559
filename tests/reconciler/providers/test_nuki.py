"""Nuki: locks exist, teammates' keypad codes match the file, hand-made codes stay, the webhook is ours."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.errors import OutcomeUnknown
from reconciler.model import Action, Resource, Sensitive
from reconciler.providers.nuki import (
    NukiProvider,
    auth_body,
    live_code_attrs,
    mask_to_weekdays,
    weekdays_to_mask,
)
from sandbox.nuki import Webhook
from sandbox.spec_check import SpecCheckingTransport
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tenancy.model import Tenant
from tests.reconciler.conftest import SimpleHttp
from tests.reconciler.providers.helpers import (
    LOCKS,
    MARIA_CODE,
    NUKI_TOKEN,
    SLUG,
    TOM_CODE,
    actions,
    apply_all,
    make_ctx,
    make_tenant,
    make_world,
    plan_live,
    spec_checked_http,
    tenant_data,
    with_nuki_secret,
    writes,
)

URL = "https://ops.example.com/api/webhooks/nuki/t/acme"
LOCK = LOCKS["p1"][0]
HOOK = f"nuki.decentral_webhook[{SLUG}]"
provider = NukiProvider(readback_delays=(0.0, 0.0, 0.0, 0.0))  # the sandbox settles by reads, not time


def http_for(world: World) -> SimpleHttp:
    return spec_checked_http(world)  # every call of every test conforms to the vendored spec


def code_addr(lock: int, who: str) -> str:
    return f"nuki.keypad_code[{SLUG}/{lock}/{who}]"


def auths(world: World, lock: int) -> dict[str, Any]:
    return {a.name: a for a in world.nuki.accounts[NUKI_TOKEN].smartlocks[lock].auths.values()}


def converged(world: World) -> tuple[Tenant, SimpleHttp]:
    """Apply the first plan, store the written-back secret as the lead would; return the new tenant."""
    tenant, ctx, http = make_tenant(), make_ctx(), http_for(world)
    results = apply_all(provider, tenant, ctx, plan_live(provider, tenant, ctx, http), http)
    [secret] = [r.write_back[("nuki", "webhook_secret")] for r in results if r.write_back]
    return with_nuki_secret(tenant, secret), http


def test_converges_and_speaks_the_nuki_spec() -> None:
    world, tenant, ctx = make_world(), make_tenant(), make_ctx()
    checking = SpecCheckingTransport(sandbox_transport(world))
    http = SimpleHttp(checking)

    first = plan_live(provider, tenant, ctx, http)
    made = [c for c in first if c.action is Action.CREATE]
    assert len([c for c in made if c.kind == "keypad_code"]) == 10 + 4  # Maria: 10 locks, Tom: 4
    assert [c.address for c in made if c.kind == "decentral_webhook"] == [HOOK]
    assert {c.action for c in first if c.kind == "lock"} == {Action.NOOP}
    [hook_change] = [c for c in made if c.kind == "decentral_webhook"]
    assert "stored encrypted (provider state store)" in hook_change.note

    world.calls.clear()
    results = apply_all(provider, tenant, ctx, first, http)
    first_apply_calls = len(world.calls.calls("nuki"))
    [secret] = [r.write_back[("nuki", "webhook_secret")] for r in results if r.write_back]
    assert secret == next(iter(world.nuki.accounts[NUKI_TOKEN].webhooks.values())).secret
    maria = auths(world, LOCK)["tc:Maria Lopez"]
    assert (maria.code, maria.allowed_week_days, maria.allowed_from_time, maria.allowed_until_time) == \
        (int(MARIA_CODE), 64 + 32 + 16 + 8 + 4, 8 * 60, 18 * 60)
    tom = auths(world, LOCK)["tc:Tom Berg"]
    assert (tom.allowed_from_date, tom.allowed_until_date) == \
        ("2025-01-01T00:00:00.000Z", "2036-12-31T23:59:59.000Z")

    tenant = with_nuki_secret(tenant, secret)
    world.calls.clear()
    second = plan_live(provider, tenant, ctx, http)
    assert {c.action for c in second} == {Action.NOOP}
    apply_all(provider, tenant, ctx, second, http)
    assert world.calls.writes() == []
    assert len(world.calls.calls("nuki")) == 3  # the whole cost of a no-op plan
    assert first_apply_calls <= 15 * 3  # one write and at most two reads per change
    assert checking.violations == []


def test_a_missing_code_is_recreated_and_nothing_else_is_written() -> None:
    world = make_world()
    tenant, http = converged(world)
    lock = world.nuki.accounts[NUKI_TOKEN].smartlocks[LOCKS["p3"][1]]
    [key] = [k for k, a in lock.auths.items() if a.name == "tc:Maria Lopez"]
    del lock.auths[key]
    plan = plan_live(provider, tenant, make_ctx(), http)
    assert [(c.address, c.action) for c in writes(plan)] == \
        [(code_addr(LOCKS["p3"][1], "maria"), Action.CREATE)]
    apply_all(provider, tenant, make_ctx(), plan, http)
    assert "tc:Maria Lopez" in auths(world, LOCKS["p3"][1])


def test_hand_made_codes_are_never_touched_nor_listed() -> None:
    world = make_world()
    world.nuki.add_keypad_code(NUKI_TOKEN, LOCK, "Cleaner Anna", 987654)
    tenant, http = converged(world)
    plan = plan_live(provider, tenant, make_ctx(), http)
    assert writes(plan) == []
    assert not [c for c in plan if "Anna" in repr(c.live)]
    assert auths(world, LOCK)["Cleaner Anna"].code == 987654


def test_a_managed_code_no_longer_declared_is_deleted() -> None:
    world = make_world()
    tenant, http = converged(world)
    gone = world.nuki.add_keypad_code(NUKI_TOKEN, LOCK, "tc:Former Helper", 765432)
    plan = plan_live(provider, tenant, make_ctx(), http)
    [change] = writes(plan)
    assert (change.action, change.address) == (Action.DELETE, code_addr(LOCK, f"~{gone.id}"))
    apply_all(provider, tenant, make_ctx(), plan, http)
    assert "tc:Former Helper" not in auths(world, LOCK)


def test_a_missing_lock_is_an_error_report_and_gets_no_codes() -> None:
    world = make_world()
    del world.nuki.accounts[NUKI_TOKEN].smartlocks[LOCK]
    tenant, ctx = make_tenant(), make_ctx()
    plan = plan_live(provider, tenant, ctx, http_for(world))
    [report] = [c for c in plan if c.action is Action.REPORT]
    assert report.address == f"nuki.lock[{SLUG}/{LOCK}]"
    assert report.severity == "error"
    assert not [c for c in plan if c.address.startswith(f"nuki.keypad_code[{SLUG}/{LOCK}/")]


def test_a_lock_no_property_lists_is_reported_as_info() -> None:
    world = make_world()
    world.nuki.add_smartlock(NUKI_TOKEN, 99, "Garage")
    plan = plan_live(provider, make_tenant(), make_ctx(), http_for(world))
    [report] = [c for c in plan if c.action is Action.REPORT]
    assert (report.address, report.severity) == (f"nuki.lock[{SLUG}/99]", "info")


def test_a_changed_window_is_updated_with_the_whole_object() -> None:
    world = make_world()
    tenant, http = converged(world)
    maria = auths(world, LOCK)["tc:Maria Lopez"]
    maria.allowed_week_days = 127
    plan = plan_live(provider, tenant, make_ctx(), http)
    [change] = writes(plan)
    assert (change.action, [f.field for f in change.fields]) == (Action.UPDATE, ["weekdays"])
    apply_all(provider, tenant, make_ctx(), plan, http)
    after = auths(world, LOCK)["tc:Maria Lopez"]
    # The windows survive: a partial update would have reset them.
    assert (after.allowed_week_days, after.allowed_from_time, after.allowed_until_time) == (124, 480, 1080)


def test_a_rotated_code_is_an_update_of_the_same_authorisation() -> None:
    world = make_world()
    tenant, http = converged(world)
    before = auths(world, LOCK)["tc:Tom Berg"].id
    data = tenant.model_dump(mode="python")
    data["teammates"][1]["access"]["keypad_code"] = "567891"
    rotated = Tenant.model_validate(_reveal(data))
    plan = plan_live(provider, rotated, make_ctx(), http)
    changed = writes(plan)
    assert {(c.action, c.kind) for c in changed} == {(Action.UPDATE, "keypad_code")}
    assert len(changed) == 4
    assert all(f.sensitive and "567891" not in repr(f) for c in changed for f in c.fields)
    apply_all(provider, rotated, make_ctx(), plan, http)
    tom = auths(world, LOCK)["tc:Tom Berg"]
    assert (tom.id, tom.code) == (before, 567891)


def test_a_hand_made_code_that_blocks_ours_is_an_error_report() -> None:
    world = make_world()
    world.nuki.add_keypad_code(NUKI_TOKEN, LOCK, "Spare", int(TOM_CODE))
    plan = plan_live(provider, make_tenant(), make_ctx(), http_for(world))
    [report] = [c for c in plan if c.address == code_addr(LOCK, "tom")]
    assert report.action is Action.REPORT
    assert "'Spare' already uses this code" in report.note


def test_a_webhook_without_a_stored_secret_is_replaced_and_its_secret_written_back() -> None:
    world = make_world()
    tenant, http = converged(world)
    old = next(iter(world.nuki.accounts[NUKI_TOKEN].webhooks))
    plan = plan_live(provider, make_tenant(), make_ctx(), http)  # the file lost its secret
    assert [(c.action, c.address) for c in writes(plan)] == [
        (Action.CREATE, HOOK), (Action.DELETE, f"nuki.decentral_webhook[{SLUG}/#{old}]")]
    results = apply_all(provider, make_tenant(), make_ctx(), plan, http)
    [secret] = [r.write_back[("nuki", "webhook_secret")] for r in results if r.write_back]
    hooks = world.nuki.accounts[NUKI_TOKEN].webhooks
    assert old not in hooks
    assert [h.secret for h in hooks.values()] == [secret]
    assert writes(plan_live(provider, with_nuki_secret(tenant, secret), make_ctx(), http)) == []


def test_a_webhook_elsewhere_is_reported_not_deleted() -> None:
    world = make_world()
    tenant, http = converged(world)
    hooks = world.nuki.accounts[NUKI_TOKEN].webhooks
    hooks[77] = Webhook(77, "https://other.example/hook", ["DEVICE_LOGS"], "s")
    plan = plan_live(provider, tenant, make_ctx(), http)
    assert writes(plan) == []
    assert actions(plan)[f"nuki.decentral_webhook[{SLUG}/#77]"] is Action.REPORT


def test_a_write_the_lock_never_shows_is_unknown_after_bounded_reads() -> None:
    world = make_world()
    world.nuki.apply_after_reads = 100
    tenant, ctx, http = make_tenant(), make_ctx(), http_for(world)
    [create] = [c for c in plan_live(provider, tenant, ctx, http) if c.kind == "keypad_code"][:1]
    world.calls.clear()
    with pytest.raises(OutcomeUnknown, match="did not show it") as caught:
        provider.apply(tenant, ctx, create, http)
    assert "check the keypad codes of lock" in caught.value.check
    assert len(world.calls.calls("nuki")) == 1 + 5  # the write, then one read per delay and the first


def test_plan_is_pure_and_works_from_live_resources_alone() -> None:
    tenant = make_tenant(teammates=[tenant_data()["teammates"][1]])
    ctx = make_ctx()
    desired = provider.desired(tenant, ctx)
    tom_on_lock = next(r for r in desired if r.address == code_addr(LOCK, "tom"))
    live = [Resource("nuki", "lock", SLUG, str(lock), {"name": "x"}) for locks in LOCKS.values()
            for lock in locks]
    live.append(Resource("nuki", "keypad_code", SLUG, f"{LOCK}/tom", {
        k: v for k, v in tom_on_lock.attrs.items() if k != "code"}, remote_id="a1"))  # code hidden by the API
    plan = provider.plan(tenant, ctx, live)
    assert actions(plan)[code_addr(LOCK, "tom")] is Action.NOOP
    assert actions(plan)[code_addr(LOCKS["p2"][0], "tom")] is Action.CREATE
    assert actions(plan)[HOOK] is Action.CREATE


@pytest.mark.parametrize(("days", "mask"), [
    (["mon"], 64), (["sun"], 1), (["sat", "sun"], 3), (["mon", "tue", "wed", "thu", "fri"], 124),
    (["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 127), ([], 0),
])
def test_weekdays_map_to_nukis_bitmask(days: list[str], mask: int) -> None:
    assert weekdays_to_mask(days) == mask
    assert mask_to_weekdays(mask) == days


@pytest.mark.parametrize("attrs", [
    {"name": "tc:A", "code": Sensitive("345678"), "weekdays": ["mon"], "from_time": "08:30 UTC",
     "until_time": "17:15 UTC", "valid_from": "2025-01-01T00:00:00+00:00[UTC]",
     "valid_until": "2025-02-01T23:59:59+00:00[UTC]", "enabled": True,
     "remote_allowed": False},
    {"name": "tc:B", "code": Sensitive("987654"), "weekdays": ["sat", "sun"], "from_time": None,
     "until_time": None, "valid_from": None, "valid_until": None, "enabled": True, "remote_allowed": False},
])
def test_the_auth_body_reads_back_as_the_same_attributes(attrs: dict[str, Any]) -> None:
    assert live_code_attrs(auth_body(attrs)) == attrs


def _reveal(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _reveal(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_reveal(v) for v in data]
    return data.get_secret_value() if hasattr(data, "get_secret_value") else data
