"""Plans: checksums, secrets kept out, safety limits, plan files and stale detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.errors import StalePlan
from reconciler.model import Action, Change, FieldChange, Resource, Sensitive
from reconciler.plan import (
    Plan,
    PlanFileError,
    ProviderPlan,
    check_fresh,
    live_digest,
    load_plan,
    safety_violations,
    save_plan,
)
from reconciler.render import plan_document, render_json, render_markdown, render_text
from tenancy.fingerprint import tenant_key
from tenancy.model import Nuki, Tenant

CODE = "456789"
TENANT = Tenant(slug="acme", display_name="Acme", nuki=Nuki(api_token=SecretStr("api-token-abcdef")))
KEY = tenant_key(TENANT)


def change(action: Action, res: str, /, **fields: tuple[object, object]) -> Change:
    return Change(action, "nuki", "keypad_code", "acme", f"nuki.keypad_code[acme/{res}]",
                  tuple(FieldChange(k, old, new) for k, (old, new) in fields.items()))


def plan(*changes: Change, live_count: int = 10, digest: str = "sha256:live") -> Plan:
    return Plan(items=(ProviderPlan("acme", "nuki", changes, digest, live_count),), keys={"acme": KEY})


SECRET_PLAN = plan(change(Action.CREATE, "1/maria", code=(None, Sensitive(CODE)), name=(None, "tc:Maria")),
                   change(Action.UPDATE, "1/tom", code=(Sensitive("987654"), Sensitive(CODE))))


@pytest.mark.parametrize("render", [render_text, render_json, render_markdown])
def test_no_secret_in_any_rendering(render: object) -> None:
    text = render(SECRET_PLAN)  # type: ignore[operator]
    assert CODE not in text and "987654" not in text
    assert "sensitive" in text


def test_a_changed_secret_shows_two_fingerprints() -> None:
    text = render_text(SECRET_PLAN)
    line = next(li for li in text.splitlines() if li.strip().startswith("code:"))
    old, new = line.split("→")
    assert "(sensitive) #" in old and "(sensitive) #" in new and old.strip()[-12:] != new.strip()[-12:]


def test_fingerprints_are_keyed_so_a_short_code_cannot_be_looked_up() -> None:
    import hashlib

    doc = json.dumps(plan_document(SECRET_PLAN))
    assert hashlib.sha256(CODE.encode()).hexdigest()[:12] not in doc


def test_checksum_is_stable_and_depends_on_changes_and_live_state() -> None:
    a = plan(change(Action.UPDATE, "1/tom", name=("a", "b")))
    assert a.checksum == plan(change(Action.UPDATE, "1/tom", name=("a", "b"))).checksum
    assert a.checksum != plan(change(Action.UPDATE, "1/tom", name=("a", "c"))).checksum
    assert a.checksum != plan(change(Action.UPDATE, "1/tom", name=("a", "b")), digest="sha256:other").checksum


def test_live_digest_ignores_order_but_not_values() -> None:
    r1 = Resource("nuki", "keypad_code", "acme", "1/a", {"code": Sensitive(CODE)}, remote_id="x")
    r2 = Resource("nuki", "lock", "acme", "1", {"name": "Door"}, remote_id="1")
    assert live_digest([r1, r2], KEY) == live_digest([r2, r1], KEY)
    r1b = Resource("nuki", "keypad_code", "acme", "1/a", {"code": Sensitive("456788")}, remote_id="x")
    assert live_digest([r1, r2], KEY) != live_digest([r1b, r2], KEY)


@pytest.mark.parametrize(("updates", "deletes", "existing", "unsafe"), [
    (3, 0, 4, False),    # not more than 3 rewrites: always fine
    (2, 2, 20, False),   # 4 of 20 = 20 %
    (2, 2, 10, True),    # 4 of 10 = 40 %
    (0, 4, 12, True),    # 33 %
    (0, 4, 14, False),   # 29 %
    (5, 0, 0, True),     # nothing live, 5 rewrites
])
def test_safety_share(updates: int, deletes: int, existing: int, unsafe: bool) -> None:
    changes = [change(Action.UPDATE, f"u{i}") for i in range(updates)]
    changes += [change(Action.DELETE, f"d{i}") for i in range(deletes)]
    changes += [change(Action.CREATE, f"c{i}") for i in range(10)]  # creations never count
    found = safety_violations(plan(*changes, live_count=existing), share=0.30, min_changes=3)
    assert bool(found) is unsafe


def test_plan_file_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(plan_document(SECRET_PLAN), path)
    saved = load_plan(path)
    assert saved.checksum == SECRET_PLAN.checksum and saved.targets == [("acme", "nuki")]
    doc = json.loads(path.read_text())
    doc["items"][0]["changes"][0]["action"] = "delete"
    path.write_text(json.dumps(doc))
    with pytest.raises(PlanFileError, match="edited"):
        load_plan(path)


def test_check_fresh(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(plan_document(SECRET_PLAN), path)
    saved = load_plan(path)
    check_fresh(saved, SECRET_PLAN)  # the same situation: fine
    moved = Plan(items=(ProviderPlan("acme", "nuki", SECRET_PLAN.items[0].changes, "sha256:moved", 10),),
                 keys={"acme": KEY})
    with pytest.raises(StalePlan, match=r"live state changed.*acme/nuki"):
        check_fresh(saved, moved)
    with pytest.raises(StalePlan, match="tenant files"):
        check_fresh(saved, plan(change(Action.CREATE, "1/other", name=(None, "x"))))


def test_markdown_stays_under_the_comment_limit_and_says_what_it_left_out() -> None:
    items = tuple(ProviderPlan(f"t{i:04d}", "nuki", tuple(
        Change(Action.UPDATE, "nuki", "keypad_code", f"t{i:04d}", f"nuki.keypad_code[t{i:04d}/{j}]",
               (FieldChange("name", "x" * 40, "y" * 40),)) for j in range(5)), "sha256:x", 50)
                  for i in range(400))
    md = render_markdown(Plan(items=items))
    assert len(md) <= 65_536
    assert "<details>" in md and "more tenant(s)" in md and "not shown" in md
