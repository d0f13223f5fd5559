"""`tenantctl adopt ADDRESS`: a hand-made resource that matches the file is taken over through the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.world import World
from tenancy.loader import load_tenants
from tests.cli._sandbox_cli import SandboxCli, make_sandbox_cli
from tests.conftest import DEMO_KEY

LOCK = 17010001  # the seed leaves Maria's code on this lock missing (a CREATE)


@pytest.fixture
def sb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SandboxCli:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))
    return make_sandbox_cli(tmp_path)


def _hand_made(sb: SandboxCli, name: str, code: int) -> str:
    """An admin makes a keypad code in the Nuki app; returns its address as tenantctl names it."""
    acme = next(lt.tenant for lt in load_tenants([sb.root / "examples"]).tenants if lt.tenant.slug == "acme")
    assert acme.nuki is not None
    world = World.from_json(sb.world_file.read_text())
    auth = world.nuki.add_keypad_code(acme.nuki.api_token.get_secret_value(), LOCK, name, code)
    sb.world_file.write_text(world.to_json())
    return f"nuki.keypad_code[acme/{LOCK}/~{auth.id}]"


def _maria_code(sb: SandboxCli) -> int:
    acme = next(lt.tenant for lt in load_tenants([sb.root / "examples"]).tenants if lt.tenant.slug == "acme")
    maria = next(tm for tm in acme.teammates if tm.key == "maria")
    assert maria.access is not None and maria.access.keypad_code is not None
    return int(maria.access.keypad_code.get_secret_value())


def _changes(plan_json: str) -> list[dict[str, object]]:
    return [ch for item in json.loads(plan_json)["items"] for ch in item["changes"]]


def test_adopting_a_matching_hand_made_code_goes_through_plan_and_apply(sb: SandboxCli) -> None:
    address = _hand_made(sb, "Maria (by hand)", _maria_code(sb))
    before = sb.run("plan", "--sandbox", "-t", "acme", "-p", "nuki", "--format", "json")
    clash = next(ch for ch in _changes(before.out) if ch["address"] == f"nuki.keypad_code[acme/{LOCK}/maria]")
    assert clash["action"] == "report" and "already uses this code" in str(clash["note"])

    adopted = sb.run("adopt", address, "--sandbox")
    assert adopted.code == 0, adopted.all
    assert f"~ nuki.keypad_code[acme/{LOCK}/maria]" in adopted.out
    assert 'name: "Maria (by hand)" → "tc:Maria Lopez"' in adopted.out
    assert "Nothing was written yet" in adopted.out
    assert sb.calls()["writes"] == {}  # adopt itself only observes
    assert str(_maria_code(sb)) not in adopted.all

    planned = sb.run("plan", "--sandbox", "-t", "acme", "-p", "nuki", "--format", "json")
    assert planned.code == 2, planned.all
    adoption = next(ch for ch in _changes(planned.out) if ch.get("adoption"))
    assert adoption["action"] == "update" and adoption["address"] == f"nuki.keypad_code[acme/{LOCK}/maria]"
    assert sb.calls()["writes"] == {}  # the plan showed it before anything was written

    applied = sb.run("apply", "--sandbox", "-t", "acme", "-p", "nuki", "--auto-approve")
    assert applied.code == 0, applied.all
    assert f"done          update nuki.keypad_code[acme/{LOCK}/maria]" in applied.out
    hand_id = address.split("~")[1].rstrip("]")
    auth = next(a for a in sb.nuki_auths(LOCK) if a["id"] == hand_id)
    assert auth["name"] == "tc:Maria Lopez"  # the same authorisation, now ours
    assert not any(a["name"] == "Maria (by hand)" for a in sb.nuki_auths(LOCK))

    after = sb.run("plan", "--sandbox", "-t", "acme", "-p", "nuki")
    assert after.code == 0, after.all
    owned = sb.run("state", "list", "--sandbox", "-t", "acme", "-p", "nuki", "--format", "json")
    entry = next(e for e in json.loads(owned.out) if e["id"] == hand_id)
    assert entry["owned"] is True and entry["address"] == f"nuki.keypad_code[acme/{LOCK}/maria]"


def test_adopting_a_code_that_matches_nothing_declared_is_refused(sb: SandboxCli) -> None:
    address = _hand_made(sb, "Plumber", 135792)
    r = sb.run("adopt", address, "--sandbox")
    assert r.code == 1
    assert f"refused: {address} does not match what acme's tenant file declares" in r.err
    assert "its code is the keypad code the tenant file declares" in r.err
    assert not (sb.root / "state" / "adoptions.json").exists()
    planned = sb.run("plan", "--sandbox", "-t", "acme", "-p", "nuki", "--format", "json")
    assert not any(ch.get("adoption") for ch in _changes(planned.out))
    assert sb.calls()["writes"] == {}


def test_adopt_refuses_what_is_ours_or_absent_and_import_is_an_alias(sb: SandboxCli) -> None:
    ours = sb.run("import", "nuki.keypad_code[acme/17010002/maria]", "--sandbox")
    assert ours.code == 1 and "already managed by tenantctl" in ours.err
    gone = sb.run("adopt", f"nuki.keypad_code[acme/{LOCK}/~nope]", "--sandbox")
    assert gone.code == 1 and "no live resource" in gone.err


def test_a_recorded_adoption_can_be_cancelled(sb: SandboxCli) -> None:
    address = _hand_made(sb, "Maria (by hand)", _maria_code(sb))
    assert sb.run("adopt", address, "--sandbox").code == 0
    assert sb.run("adopt", "--cancel", address).out.startswith("forgot the adoption")
    planned = sb.run("plan", "--sandbox", "-t", "acme", "-p", "nuki", "--format", "json")
    assert not any(ch.get("adoption") for ch in _changes(planned.out))
