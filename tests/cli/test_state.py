"""`tenantctl state list | show`: the inventory of owned and foreign live resources, read-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli._sandbox_cli import SandboxCli, make_sandbox_cli


@pytest.fixture
def sb(tmp_path: Path) -> SandboxCli:
    return make_sandbox_cli(tmp_path)


def _entry(tenant: str, provider: str, kind: str, name: str, rid: str, reason: str | None = None) -> dict[str, object]:
    address = f"{provider}.{kind}[{tenant}/{name}]" if name else f"{provider}.{kind}[{tenant}]"
    return {"tenant": tenant, "provider": provider, "kind": kind, "address": address, "id": rid,
            "owned": reason is None, "reason": reason}


def test_state_list_json_is_exactly_the_seeded_sandbox(sb: SandboxCli) -> None:
    by_name = {a["name"]: a["id"] for a in sb.nuki_auths(17010001)}
    maria2 = next(a["id"] for a in sb.nuki_auths(17010002) if a["name"] == "tc:Maria Lopez")
    maria3 = next(a["id"] for a in sb.nuki_auths(17010003) if a["name"] == "tc:Maria Lopez")
    tom3 = next(a["id"] for a in sb.nuki_auths(17010003) if a["name"].startswith("tc:Tom"))
    ana1 = next(a["id"] for a in sb.nuki_auths(17020001))
    ana2 = next(a["id"] for a in sb.nuki_auths(17020002))
    unmapped = "00000000-0000-4000-8000-00000000beef"
    expected = [
        _entry("acme", "hospitable", "property", unmapped, unmapped,
               "Hospitable property 'Unmapped Cottage' is not mapped by any tenant property"),
        _entry("acme", "hospitable", "property", "6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70",
               "6a1c3f0e-8d2b-4c7a-9e1f-2b3c4d5e6f70"),
        _entry("acme", "hospitable", "property", "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81",
               "7b2d4e1f-9e3c-4d8b-8f2a-3c4d5e6f7a81"),
        _entry("acme", "nuki", "keypad_code", f"17010001/~{by_name['Front desk']}", by_name["Front desk"],
               "made by hand: its name lacks tenantctl's `tc:` prefix"),
        # The former teammate's code is ours (tc: prefix) and no longer declared: the plan deletes it.
        _entry("acme", "nuki", "keypad_code", f"17010001/~{by_name['tc:Former Cleaner']}",
               by_name["tc:Former Cleaner"]),
        _entry("acme", "nuki", "keypad_code", "17010002/maria", maria2),
        _entry("acme", "nuki", "keypad_code", "17010003/maria", maria3),
        _entry("acme", "nuki", "keypad_code", "17010003/tom", tom3),
        _entry("acme", "nuki", "lock", "17010001", "17010001"),
        _entry("acme", "nuki", "lock", "17010002", "17010002"),
        _entry("acme", "nuki", "lock", "17010003", "17010003"),
        _entry("acme", "twon", "device", "old-town-2", "54-0123-4567"),
        _entry("acme", "whatsapp", "phone_number", "106540352242922", "106540352242922"),
        _entry("acme", "whatsapp", "phone_webhook", "106540352242922", "106540352242922"),
        _entry("acme", "whatsapp", "waba_subscription", "", "900000000000001"),
        _entry("blue-harbor", "hospitable", "property", "8c3e5f2a-0f4d-4e9c-9a3b-4d5e6f7a8b92",
               "8c3e5f2a-0f4d-4e9c-9a3b-4d5e6f7a8b92"),
        _entry("blue-harbor", "nuki", "keypad_code", "17020001/ana", ana1),
        _entry("blue-harbor", "nuki", "keypad_code", "17020002/ana", ana2),
        _entry("blue-harbor", "nuki", "lock", "17020001", "17020001"),
        _entry("blue-harbor", "nuki", "lock", "17020002", "17020002"),
        _entry("blue-harbor", "whatsapp", "phone_number", "106540352242933", "106540352242933"),
        _entry("blue-harbor", "whatsapp", "phone_webhook", "106540352242933", "106540352242933"),
        _entry("casa-sol", "hospitable", "property", "9d4f6a3b-1a5e-4fad-8b4c-5e6f7a8b9ca3",
               "9d4f6a3b-1a5e-4fad-8b4c-5e6f7a8b9ca3"),
        _entry("casa-sol", "whatsapp", "waba_subscription", "", "900000000000001"),
    ]
    r = sb.run("state", "list", "--sandbox", "--format", "json")
    assert r.code == 0, r.all
    assert json.loads(r.out) == expected


def test_state_list_never_writes_to_a_provider(sb: SandboxCli) -> None:
    r = sb.run("state", "list", "--sandbox")
    assert r.code == 0, r.all
    calls = sb.calls()
    assert calls["calls"], "it observed the providers"
    assert calls["writes"] == {}
    assert "22 owned, 2 foreign" in r.out
    assert "foreign  nuki.keypad_code[acme/17010001/~" in r.out


def test_state_list_filters_by_tenant_and_provider(sb: SandboxCli) -> None:
    r = sb.run("state", "list", "--sandbox", "-t", "blue-harbor", "-p", "nuki", "--format", "json")
    assert r.code == 0, r.all
    got = json.loads(r.out)
    assert {(e["tenant"], e["provider"]) for e in got} == {("blue-harbor", "nuki")}
    assert len(got) == 4
    assert {c["provider"] for c in sb.calls()["calls"]} == {"nuki"}


def test_state_show_masks_the_code_as_plans_do(sb: SandboxCli) -> None:
    hand = next(a for a in sb.nuki_auths(17010001) if a["name"] == "Front desk")
    address = f"nuki.keypad_code[acme/17010001/~{hand['id']}]"
    r = sb.run("state", "show", address, "--sandbox", "--format", "json")
    assert r.code == 0, r.all
    shown = json.loads(r.out)
    assert shown["owned"] is False and shown["id"] == hand["id"]
    assert shown["attrs"]["name"] == "Front desk"
    assert shown["attrs"]["code"]["sensitive"] is True and len(shown["attrs"]["code"]["fingerprint"]) == 12
    assert str(hand["code"]) not in r.out
    text = sb.run("state", "show", address, "--sandbox")
    assert text.code == 0, text.all
    assert "code = (sensitive) #" in text.out and str(hand["code"]) not in text.out
    assert sb.calls()["writes"] == {}


def test_state_show_of_an_unknown_address_says_where_to_look(sb: SandboxCli) -> None:
    r = sb.run("state", "show", "nuki.keypad_code[acme/17010001/nobody]", "--sandbox")
    assert r.code == 1
    assert "no live resource nuki.keypad_code[acme/17010001/nobody]" in r.err
    assert "tenantctl state list -t acme" in r.err
    bad = sb.run("state", "show", "acme", "--sandbox")
    assert bad.code == 1 and "not a resource address" in bad.err
