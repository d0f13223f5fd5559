"""The plan says, in words and local time, who gains and who loses which door."""

from __future__ import annotations

from reconciler.access import access_diff
from reconciler.render import render_markdown, render_text
from tests.access.world import MARIA, WEEKDAYS, Rig, tenant

WINDOW = "Mon\u2013Fri 08:00\u201318:00 Europe/Bratislava"


def test_gaining_a_property_and_offboarding_read_as_sentences_in_the_markdown_plan() -> None:
    rig = Rig()
    rig.converge(tenant())
    after = tenant(teammates=[
        {"key": "maria", "name": "Maria Lopez", "role": "cleaner", "properties": ["old-town", "river"],
         "access": {**MARIA, "weekdays": WEEKDAYS, "from_time": "08:00", "until_time": "18:00"}},
    ])
    plan = rig.plan(after)
    lines = access_diff(plan.changes)
    assert lines == [
        # The intercom enforces dates only: Maria's PIN and QR work there any day and hour.
        f"maria: gains lock 17010003, {WINDOW}; gains the intercom of river, any time",
        "Tom Berg: loses all access",  # no longer in the file: named as the lock and intercom show him
    ]
    md = render_markdown(plan)
    assert "**Access changes**" in md
    assert f"- maria: gains lock 17010003, {WINDOW}; gains the intercom of river, any time" in md
    assert "- Tom Berg: loses all access" in md
    assert md.index("**Access changes**") < md.index("```diff")
    assert "Tom Berg: loses all access" in render_text(plan)
    for secret in MARIA.values():
        assert secret not in md


def test_a_changed_window_and_a_rotated_code_are_named_without_the_code() -> None:
    rig = Rig()
    rig.converge(tenant())
    after = tenant(teammates=[
        {"key": "maria", "name": "Maria Lopez", "role": "cleaner", "properties": ["old-town"],
         "access": {**MARIA, "keypad_code": "987654", "weekdays": ["sat", "sun"]}},
        {"key": "tom", "name": "Tom Berg", "role": "maintenance", "properties": ["old-town"],
         "access": {"keypad_code": "456789", "intercom_pin": "55667788", "valid_from": "2026-01-01",
                    "valid_until": "2027-03-28"}},
    ])
    lines = access_diff(rig.plan(after).changes)
    assert lines[0] == ("maria: lock 17010001: window now Sat,Sun, new keypad code; "
                        "lock 17010002: window now Sat,Sun, new keypad code")
    assert lines[1] == "tom: loses lock 17010003, the intercom of river"
    assert "987654" not in "\n".join(lines)


def test_a_converged_tenant_has_no_access_changes() -> None:
    rig = Rig()
    rig.converge(tenant())
    plan = rig.plan(tenant())
    assert plan.writes == []
    assert access_diff(plan.changes) == []
    assert "Access changes" not in render_markdown(plan)
