"""`tenantctl access rotate`: new codes the providers accept, written encrypted, never shown unasked."""

from __future__ import annotations

from pathlib import Path

from tenancy.access_codes import new_code
from tenancy.loader import load_tenants
from tenancy.model import Tenant
from tests.access.terminal import run_on_tty
from tests.access.world import tenant
from tests.conftest import RunCli


def _acme(d: Path) -> Tenant:
    result = load_tenants([d / "acme.yaml"])
    assert result.ok, result.findings
    return result.tenants[0].tenant


def _secrets(t: Tenant) -> set[str]:
    return {s.get_secret_value() for tm in t.teammates if tm.access is not None
            for s in (tm.access.keypad_code, tm.access.intercom_pin, tm.access.intercom_qr) if s is not None}


def test_generated_codes_follow_the_providers_rules_and_never_collide() -> None:
    t = tenant()
    for _ in range(300):
        _one_draw(t)


def _one_draw(t: Tenant) -> None:
    keypad = new_code(t, "maria", "keypad")
    assert len(keypad) == 6 and set(keypad) <= set("123456789") and not keypad.startswith("12")
    assert keypad not in {"345678", "456789"}  # her old code; Tom's, on the same locks
    pin, qr = new_code(t, "maria", "pin"), new_code(t, "maria", "qr")
    assert len(pin) == 8 and pin.isdigit() and len(qr) == 12 and qr.isdigit()
    assert not {pin, qr} & {"20481632", "7340912658", "55667788"}  # hers and Tom's, on the same intercom


def test_rotate_writes_new_encrypted_codes_and_shows_the_plan_without_values(cli: RunCli,
                                                                              examples_copy: Path) -> None:
    before = _acme(examples_copy)
    r = cli("--tenants", str(examples_copy), "access", "rotate", "acme", "maria")
    assert r.code == 0, r.all
    after = _acme(examples_copy)
    old, new = before.teammates[0].access, after.teammates[0].access
    assert old is not None and new is not None and new.keypad_code is not None and new.intercom_pin is not None
    assert new.keypad_code.get_secret_value() != old.keypad_code.get_secret_value()  # type: ignore[union-attr]
    assert new.intercom_pin.get_secret_value() != old.intercom_pin.get_secret_value()  # type: ignore[union-attr]
    assert after.teammates[1].access == before.teammates[1].access  # Tom untouched
    text = (examples_copy / "acme.yaml").read_text()
    assert "keypad_code: ENC[" in text and "intercom_pin: ENC[" in text
    for secret in _secrets(before) | _secrets(after):
        assert secret not in r.all and secret not in text
    assert "~ nuki.keypad_code[acme/17010003/maria]" in r.out
    assert "~ twon.dir_user[acme/old-town-2/maria]" in r.out
    assert "code: (sensitive) #" in r.out
    assert "maria: lock 17010001: new keypad code" in r.out


def test_reveal_is_refused_when_stdout_is_not_a_terminal_and_nothing_changes(cli: RunCli,
                                                                              examples_copy: Path) -> None:
    path = examples_copy / "acme.yaml"
    before = path.read_bytes()
    r = cli("--tenants", str(examples_copy), "access", "rotate", "acme", "maria", "--keypad", "--reveal")
    assert r.code == 1 and "terminal only" in r.err
    assert path.read_bytes() == before


def test_reveal_prints_the_new_code_once_on_a_terminal(examples_copy: Path) -> None:
    code_, out, err = run_on_tty("--tenants", str(examples_copy), "access", "rotate", "acme", "tom", "--keypad",
                                 "--reveal", env={"TENANTCTL_STATE_DIR": str(examples_copy.parent / "state")})
    assert code_ == 0, err
    code = _acme(examples_copy).teammates[1].access.keypad_code.get_secret_value()  # type: ignore[union-attr]
    assert out.count(code) == 1
    assert f"keypad code: {code}" in out


def test_a_code_for_a_door_the_teammate_cannot_reach_is_refused(cli: RunCli, examples_copy: Path) -> None:
    r = cli("--tenants", str(examples_copy), "access", "rotate", "acme", "tom", "--qr")
    assert r.code == 1 and "opens no 2N intercom" in r.err
    r = cli("--tenants", str(examples_copy), "access", "rotate", "acme", "nobody")
    assert r.code == 1 and "no teammate 'nobody'" in r.err
