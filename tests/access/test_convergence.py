"""Against the sandbox, per provider: QR codes, rotations, maintenance codes and offboarding converge
(plan → apply → a plan with no writes), and every Nuki request and answer meets the vendored spec."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler import engine
from reconciler.model import Action
from reconciler.providers.nuki import NukiProvider
from reconciler.render import render_report
from tests.access.world import MARIA, TOM, WEEKDAYS, Rig, actions, tenant

MARIA_ROW = {"key": "maria", "name": "Maria Lopez", "role": "cleaner", "properties": ["old-town"],
             "access": {**MARIA, "weekdays": WEEKDAYS, "from_time": "08:00", "until_time": "18:00"}}
TOM_ROW = {"key": "tom", "name": "Tom Berg", "role": "maintenance", "properties": ["old-town", "river"],
           "access": {**TOM, "valid_from": "2026-01-01", "valid_until": "2027-03-28"}}


def with_access(row: dict[str, Any], **access: Any) -> dict[str, Any]:
    return {**row, "access": {**row["access"], **access}}


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    r.converge(tenant())
    assert r.writes(tenant()) == []
    yield r
    assert r.checking.violations == [], r.checking.violations
    assert r.checking.checked > 0


def test_a_qr_code_is_the_2n_users_switch_code_and_converges(rig: Rig) -> None:
    [maria] = [u for u in rig.users("old-town").values() if u.name == "Maria Lopez"]
    assert maria.access.code == [MARIA["intercom_qr"]] and maria.access.pin == MARIA["intercom_pin"]
    after = tenant(teammates=[with_access(MARIA_ROW, intercom_qr="5550001112223"), TOM_ROW])
    plan = rig.plan(after)
    [change] = plan.writes
    assert change.address == "twon.dir_user[acme/old-town/maria]" and [f.field for f in change.fields] == ["qr"]
    rig.apply(after, plan)
    assert rig.users("old-town")["Maria Lopez"].access.code == ["5550001112223"]
    assert rig.writes(after) == []
    # Dropping the QR code clears the switch code and keeps the PIN.
    no_qr = tenant(teammates=[with_access(MARIA_ROW, intercom_qr=None), TOM_ROW])
    rig.converge(no_qr)
    assert rig.users("old-town")["Maria Lopez"].access.code == []
    assert rig.users("old-town")["Maria Lopez"].access.pin == MARIA["intercom_pin"]
    assert rig.writes(no_qr) == []


def test_a_rotated_keypad_code_and_pin_are_updates_in_place_and_converge(rig: Rig) -> None:
    after = tenant(teammates=[with_access(MARIA_ROW, keypad_code="918273", intercom_pin="66554433"), TOM_ROW])
    plan = rig.plan(after)
    assert actions(plan.writes) == {"nuki.keypad_code[acme/17010001/maria]": Action.UPDATE,
                                    "nuki.keypad_code[acme/17010002/maria]": Action.UPDATE,
                                    "twon.dir_user[acme/old-town/maria]": Action.UPDATE}
    rig.apply(after, plan)
    assert rig.keypad_codes(17010001)["tc:Maria Lopez"].code == 918273
    assert rig.users("old-town")["Maria Lopez"].access.pin == "66554433"
    assert rig.writes(after) == []


def test_a_maintenance_code_stays_until_it_expires_then_the_next_apply_removes_it(rig: Rig) -> None:
    nuki = next(p for p in rig.providers if isinstance(p, NukiProvider))
    t = tenant()
    nuki.issue_maintenance_code(t, rig.ctx, rig.http, 17010001, "plumber", "777111", rig.now + timedelta(hours=2))
    assert rig.keypad_codes(17010001)["tc:mnt:plumber"].code == 777111
    plan = rig.plan(t)
    assert plan.writes == []
    [info] = [c for c in plan.changes if c.action is Action.REPORT and "tc:mnt:plumber" in c.note]
    assert "valid until 2026-12-01T15:00:00+01:00[Europe/Bratislava]" in info.note
    rig.now += timedelta(hours=3)
    plan = rig.plan(t)
    [gone] = plan.writes
    assert gone.action is Action.DELETE and "expired" in gone.note
    rig.apply(t, plan)
    assert "tc:mnt:plumber" not in rig.keypad_codes(17010001)
    assert rig.writes(t) == []


def test_removing_a_teammate_removes_every_code_pin_and_qr_of_theirs(rig: Rig) -> None:
    after = tenant(teammates=[TOM_ROW])
    plan = rig.plan(after)
    assert {c.action for c in plan.writes} == {Action.DELETE}
    assert len(plan.writes) == 3  # 2 keypad codes, 1 directory user (with her PIN and QR code)
    rig.apply(after, plan)
    assert all("tc:Maria Lopez" not in rig.keypad_codes(lock) for lock in (17010001, 17010002))
    assert "Maria Lopez" not in rig.users("old-town")
    assert rig.writes(after) == []


def test_removing_a_property_from_a_teammates_list_removes_only_those_doors(rig: Rig) -> None:
    after = tenant(teammates=[MARIA_ROW, {**TOM_ROW, "properties": ["old-town"]}])
    plan = rig.plan(after)
    assert {c.address.split("/")[1] for c in plan.writes} == {"17010003", "river"}
    assert {c.action for c in plan.writes} == {Action.DELETE}
    rig.apply(after, plan)
    assert "tc:Tom Berg" not in rig.keypad_codes(17010003) and "tc:Tom Berg" in rig.keypad_codes(17010001)
    assert "Tom Berg" not in rig.users("river") and "Tom Berg" in rig.users("old-town")
    assert rig.writes(after) == []


@pytest.mark.parametrize(("now", "revoked"), [
    # Tom's last day is 2027-03-28 in Bratislava, the day the clocks go forward: it ends at 21:59:59Z.
    (datetime(2027, 3, 28, 21, 59, tzinfo=UTC), False),
    (datetime(2027, 3, 28, 22, 0, tzinfo=UTC), True),
])
def test_a_valid_until_in_the_past_offboards_at_the_end_of_that_local_day(rig: Rig, now: datetime,
                                                                          revoked: bool) -> None:
    rig.now = now
    plan = rig.plan(tenant())
    if not revoked:
        assert plan.writes == []
        return
    assert {c.action for c in plan.writes} == {Action.DELETE} and len(plan.writes) == 5  # 3 locks, 2 intercoms
    rig.apply(tenant(), plan)
    assert rig.writes(tenant()) == []
    assert all("tc:Tom Berg" not in rig.keypad_codes(lock) for lock in (17010001, 17010002, 17010003))


def test_offboarding_goes_first_and_one_failing_device_does_not_stop_the_others(rig: Rig) -> None:
    after = tenant(teammates=[{**MARIA_ROW, "properties": ["old-town", "river"]}])  # Tom leaves, Maria grows
    plan = rig.plan(after)
    rig.world.twon.devices["54-0000-0002"].password = "changed-on-site"  # the river intercom refuses us
    report = engine.apply_plan(plan, {"acme": after}, {p.name: p for p in rig.providers}, rig.ctx, rig.http,
                               workers=1)
    order = [r.change for r in report.results]
    deletes = [i for i, c in enumerate(order) if c.action is Action.DELETE]
    assert deletes == list(range(len(deletes))) and len(deletes) == 5  # every revocation before any grant
    failed = [r.change for r in report.results if r.outcome is engine.Outcome.FAILED]
    # Every change is attempted (none depends on another): on the refusing intercom both Tom's revocation
    # and Maria's new user fail; Tom is no longer in the file, so his user is known by its uuid.
    assert {c.action for c in failed} <= {Action.DELETE, Action.CREATE}
    assert all(c.address.startswith("twon.dir_user[acme/river/") for c in failed)
    assert any(c.action is Action.DELETE and c.address.startswith("twon.dir_user[acme/river/~") for c in failed)
    applied = [r.change.address for r in report.results if r.outcome is engine.Outcome.APPLIED]
    assert any(a.startswith("twon.dir_user[acme/old-town/~") for a in applied)
    assert "Tom Berg" not in rig.users("old-town")
    assert all("tc:Tom Berg" not in rig.keypad_codes(lock) for lock in (17010001, 17010002, 17010003))
    text = render_report(report)
    assert "ACCESS STILL OPEN" in text and "Tom Berg: still opens the intercom of river" in text
