"""Wording a new user trips on: the checklist, placeholder hints, option names in errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunCli


def test_the_new_checklist_names_no_field_the_scaffold_does_not_have(cli: RunCli, tenant_dir: Path) -> None:
    r = cli("--tenants", str(tenant_dir), "new", "sunny-flats")
    assert r.code == 0, r.all
    assert "<beds24.webhook_secret>" not in r.all
    assert "add a `beds24:` block" in r.all


def test_a_plain_placeholder_is_not_called_a_secret(cli: RunCli, tenant_dir: Path) -> None:
    assert cli("--tenants", str(tenant_dir), "new", "sunny-flats").code == 0
    r = cli("--tenants", str(tenant_dir), "validate", "--format", "json")
    findings = [f for f in json.loads(r.out)["findings"] if f["rule"] == "placeholder"]
    plain = [f for f in findings if f["field"] == "properties[0].name"]
    assert plain, findings
    assert "secret" not in plain[0]["hint"] and "encrypted" not in plain[0]["hint"]
    secret = [f for f in findings if f["field"].endswith("api_key")]
    assert secret and "sops" in secret[0]["hint"]


def test_a_bad_since_names_the_option(cli: RunCli, tmp_path: Path) -> None:
    r = cli("webhooks", "log", "--since", "yesterday", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert r.code == 1
    assert "--since" in r.err and "yesterday" in r.err
