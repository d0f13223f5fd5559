"""`tenantctl keygen --out FILE`: an age key without age-keygen, ready for tenants/.sops.yaml."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.conftest import RunCli, write_sops_config


def test_keygen_writes_a_0600_key_and_prints_its_recipient_which_new_and_show_then_use(
        cli: RunCli, tmp_path: Path) -> None:
    key = tmp_path / "ops.agekey"
    r = cli("keygen", "--out", str(key))
    assert r.code == 0, r.all
    recipient = r.out.strip()
    assert recipient.startswith("age1") and len(recipient.splitlines()) == 1
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f"# public key: {recipient}" in key.read_text()
    assert "AGE-SECRET-KEY-1" not in r.all  # the private half stays in the file
    assert "tenants/.sops.yaml" in r.err and f"SOPS_AGE_KEY_FILE={key}" in r.err

    tenants = tmp_path / "tenants"
    tenants.mkdir()
    write_sops_config(tenants, recipient)
    env = {"SOPS_AGE_KEY_FILE": str(key), "SOPS_AGE_KEY": ""}
    assert cli("--tenants", str(tenants), "new", "sunny-flats", env=env).code == 0
    shown = cli("--tenants", str(tenants), "show", "sunny-flats", env=env)
    assert shown.code == 0 and "sunny-flats" in shown.out, shown.all


def test_keygen_never_overwrites_a_key(cli: RunCli, tmp_path: Path) -> None:
    key = tmp_path / "ops.agekey"
    key.write_text("precious\n")
    r = cli("keygen", "--out", str(key))
    assert r.code == 1 and "already exists" in r.err
    assert key.read_text() == "precious\n"


def test_the_placeholder_recipient_points_to_keygen(cli: RunCli, tmp_path: Path) -> None:
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    write_sops_config(tenants, "REPLACE-WITH-YOUR-TEAMS-AGE-RECIPIENTS")
    r = cli("--tenants", str(tenants), "validate")
    assert r.code == 1 and "tenantctl keygen --out FILE" in r.all, r.all
